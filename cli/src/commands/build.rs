//! `kiln build`: docker build's arguments, and (for now) `--check`, which parses and plans a
//! Dockerfile without building: it prints the stages and steps the target needs, or the errors
//! with their Dockerfile lines.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_builder::context::load_ignore;
use kiln_builder::dockerfile::instructions::{Instruction, KeyValue};
use kiln_builder::dockerfile::{Location, parse};
use kiln_builder::ignore::PatternMatcher;
use kiln_builder::plan::{Base, Plan, PlanOptions, Scope};

use super::Global;
use crate::diagnostics::Diagnostic;

/// `kiln build` arguments (docker build's names).
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Name and optionally tag the image (`name:tag`); may repeat.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// Set a build-time variable; `KEY` alone takes its value from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Parse and plan only: print the stages and steps that would run, or the errors.
    #[arg(long)]
    check: bool,
    /// The build context directory.
    #[arg(value_name = "CONTEXT")]
    context: PathBuf,
}

/// Runs `kiln build`.
pub fn run(_global: &Global, args: BuildArgs) -> anyhow::Result<ExitCode> {
    if !args.check {
        bail!(
            "building images is not implemented yet: `kiln build --check` parses and plans a Dockerfile"
        );
    }
    let (file_name, source) = read_dockerfile(&args)?;
    let dockerfile_path = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let located = |message: &str, location: Location| {
        Diagnostic {
            file: &file_name,
            source: &source,
            message,
            location,
        }
        .render()
    };

    let file = match parse(&source) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: {}", located(&e.message, e.location));
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &file.warnings {
        eprintln!("warning: {}", located(&w.message, w.location));
    }
    let options = PlanOptions {
        build_args: build_args(&args.build_args),
        target: args.target.clone(),
        ..Default::default()
    };
    let plan = match Plan::new(&file, options) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {}", located(&e.message, e.location));
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &plan.warnings {
        match w.location {
            Some(location) => eprintln!("warning: {}", located(&w.message, location)),
            None => eprintln!("warning: {}", w.message),
        }
    }
    check_ignore_file(&args.context, &dockerfile_path)?;
    print_plan(&plan, &file_name, &located)
}

/// The Dockerfile's display name and text.
fn read_dockerfile(args: &BuildArgs) -> anyhow::Result<(String, String)> {
    let (name, bytes) = match &args.file {
        Some(path) if path == Path::new("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the Dockerfile from standard input")?;
            ("Dockerfile".to_owned(), bytes)
        }
        path => {
            let path = path
                .clone()
                .unwrap_or_else(|| args.context.join("Dockerfile"));
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            (path.display().to_string(), bytes)
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok((name, text)),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            bail!("{name}:{line}: the Dockerfile is not valid UTF-8")
        }
    }
}

/// `KEY=VALUE`, or `KEY` alone taking its value from the environment (docker's rule: an unset
/// variable leaves the argument out).
fn build_args(given: &[String]) -> BTreeMap<String, String> {
    given
        .iter()
        .filter_map(|arg| match arg.split_once('=') {
            Some((k, v)) => Some((k.to_owned(), v.to_owned())),
            None => std::env::var(arg).ok().map(|v| (arg.clone(), v)),
        })
        .collect()
}

/// The `.dockerignore` that applies must be valid even when only checking.
fn check_ignore_file(context: &Path, dockerfile: &Path) -> anyhow::Result<()> {
    let (patterns, file) = load_ignore(context, dockerfile)?;
    if let Err(e) = PatternMatcher::new(&patterns) {
        let file = file.map_or_else(|| ".dockerignore".to_owned(), |f| f.display().to_string());
        bail!("{file}: {e}");
    }
    Ok(())
}

fn print_plan(
    plan: &Plan,
    file_name: &str,
    located: &dyn Fn(&str, Location) -> String,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut scopes: BTreeMap<usize, Scope> = BTreeMap::new();
    let total_steps: usize = plan.order.iter().map(|&i| plan.stages[i].steps.len()).sum();
    writeln!(
        out,
        "{file_name}: target {:?} needs {} of {}, {}",
        plan.stages[plan.target].display_name(),
        plan.order.len(),
        count(plan.stages.len(), "stage"),
        count(total_steps, "step"),
    )?;
    for (n, &index) in plan.order.iter().enumerate() {
        let stage = &plan.stages[index];
        let base = match &stage.base {
            Base::Scratch => "scratch".to_owned(),
            Base::Stage(i) => format!("stage {:?}", plan.stages[*i].display_name()),
            Base::Image(reference) => reference.to_string(),
        };
        writeln!(
            out,
            "[{}/{}] stage {:?} FROM {base} ({file_name}:{})",
            n + 1,
            plan.order.len(),
            stage.display_name(),
            stage.location.start_line
        )?;
        // The base image's own environment is only known once it is pulled; a parent stage's is.
        let base_env = match stage.base {
            Base::Stage(i) => scopes.get(&i).map(|s| s.env().to_vec()).unwrap_or_default(),
            _ => Vec::new(),
        };
        let (steps, scope) = match plan.expand_stage(index, base_env) {
            Ok(done) => done,
            Err(e) => {
                eprintln!("error: {}", located(&e.message, e.location));
                return Ok(ExitCode::FAILURE);
            }
        };
        for (k, expanded) in steps.iter().enumerate() {
            let original = &stage.steps[k];
            writeln!(
                out,
                "  {:>3} {file_name}:{:<4} {}",
                k + 1,
                original.location.start_line,
                one_line(&original.original)
            )?;
            let (before, after) = (
                describe(&original.instruction),
                describe(&expanded.step.instruction),
            );
            if after != before {
                writeln!(out, "      = {after}")?;
            }
        }
        scopes.insert(index, scope);
    }
    for stage in plan
        .stages
        .iter()
        .filter(|s| !plan.order.contains(&s.index))
    {
        writeln!(
            out,
            "skipped: stage {:?} (the target does not need it)",
            stage.display_name()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `1 stage`, `3 stages`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn one_line(text: &str) -> String {
    let text = text.trim();
    let first = text.lines().next().unwrap_or_default();
    if first.len() < text.len() {
        format!("{first} …")
    } else {
        first.to_owned()
    }
}

/// A short rendering of the values an instruction expands, to show what `$VAR`s became.
fn describe(instruction: &Instruction) -> String {
    let pairs = |kvs: &[KeyValue]| {
        kvs.iter()
            .map(|kv| format!("{}={:?}", kv.key, kv.value))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let keyword = instruction.keyword();
    match instruction {
        Instruction::Env(kvs) | Instruction::Label(kvs) => format!("{keyword} {}", pairs(kvs)),
        Instruction::Copy(c) => {
            format!(
                "{keyword} {:?} -> {:?}{}",
                c.files.sources,
                c.files.dest,
                c.from
                    .as_ref()
                    .map(|f| format!(" from {f:?}"))
                    .unwrap_or_default()
            )
        }
        Instruction::Add(a) => format!("{keyword} {:?} -> {:?}", a.files.sources, a.files.dest),
        Instruction::Expose(v) | Instruction::Volume(v) => format!("{keyword} {v:?}"),
        Instruction::User(s) | Instruction::Workdir(s) | Instruction::StopSignal(s) => {
            format!("{keyword} {s:?}")
        }
        Instruction::Run(r) => format!("{keyword} mounts {:?}", r.mounts),
        _ => keyword.to_owned(),
    }
}
