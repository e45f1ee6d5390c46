//! `kiln build --call=check|outline|targets` (and `--check`, the short form of `--call=check`),
//! and the build checks of an ordinary `kiln build`, as docker buildx has them.
//!
//! - `check` runs every build check over all stages (or those `--target` needs) plus the errors
//!   lowering finds without building, prints `Check complete, …` and the findings on standard
//!   output (errors on standard error), and exits non-zero on an error, or on any finding under
//!   `# check=error=true`.
//! - `outline` prints the target's build args (value, description), secrets and SSH agents;
//!   `targets` the stages with their descriptions, marking the default.
//! - A build checks the stages it builds before building (failing at once under `error=true`)
//!   and prints the findings after it, as docker prints `N warnings found`.
//!
//! Base images are looked up in the local store only (nothing is pulled to check): a base that
//! is not there has an unknown environment, so UndefinedVar is not checked in its stage. A
//! build checks again after it has resolved its bases, and reports a base whose platform is not
//! the one built for (InvalidBaseImagePlatform).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;

use kiln_builder::build::Prepared;
use kiln_builder::check::{self, BaseFacts, CheckInput, Coverage, Diagnostic, Report, Severity};
use kiln_builder::dockerfile::Location;
use kiln_builder::ignore::PatternMatcher;
use kiln_builder::oci_spec::image::Descriptor;
use kiln_builder::plan::outline::Need;
use kiln_builder::plan::{Base, Plan, Platform};
use kiln_builder::store::Store;
use kiln_registry::Reference;

use super::human::tabwriter;
use crate::diagnostics;

/// `--call` values (buildx's, plus kiln's own `plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Call {
    /// Build the image (the default).
    Build,
    /// Run the build checks and report, without building.
    Check,
    /// The target's build args, secrets and SSH agents.
    Outline,
    /// The stages, with their descriptions.
    Targets,
    /// kiln's own: the stages and steps the target needs, with their expansions.
    Plan,
}

/// What the checks of one `kiln build` need to know.
pub struct Checks<'a> {
    /// The Dockerfile's name as the user gave it.
    pub file_name: &'a str,
    /// Its text.
    pub source: &'a str,
    /// `--build-arg` values.
    pub build_args: &'a BTreeMap<String, String>,
    /// `--platform`.
    pub platform: &'a Platform,
    /// `--target`, if given.
    pub target: Option<&'a str>,
    /// `--progress=json`.
    pub json: bool,
    /// `-q`: a build prints no findings (errors still print).
    pub quiet: bool,
    /// The store base images are looked up in, when it can be opened.
    pub store: Option<Store>,
    /// InvalidBaseImagePlatform findings, made as the build resolves its bases.
    pub resolved_bases: Mutex<Vec<Diagnostic>>,
}

impl Checks<'_> {
    /// What the local store knows of a base image.
    fn base_facts(store: Option<&Store>, text: &str) -> Option<BaseFacts> {
        let store = store?;
        let reference = Reference::parse(text).ok()?;
        let desc = store.resolve(&reference.to_string()).ok()??;
        let manifest = store.read_manifest(&desc).ok()?;
        let config = store.read_config(&manifest).ok()?;
        Some(BaseFacts {
            env: config
                .config
                .env
                .iter()
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (e.clone(), String::new()),
                })
                .collect(),
            has_shell: !config.config.shell.is_empty(),
        })
    }

    fn run(
        &self,
        prepared: &Prepared,
        store: Option<&Store>,
        coverage: Coverage,
        lower: bool,
    ) -> Result<Report, check::ConfigError> {
        let matcher = match &prepared.ignore_file {
            Some(_) => PatternMatcher::new(&prepared.ignore).ok(),
            None => None,
        };
        let base = |text: &str| Self::base_facts(store, text);
        let input = CheckInput {
            build_args: self.build_args,
            coverage,
            platform: self.platform,
            ignore: matcher.as_ref(),
            base: &base,
            lower,
        };
        let mut report = check::check(&prepared.file, Some(&prepared.plan), &input)?;
        report.diagnostics.extend(prepared.warnings.iter().cloned());
        check::sort(&mut report.diagnostics);
        Ok(report)
    }

    fn render(&self, d: &Diagnostic) -> String {
        diagnostics::render(self.file_name, self.source, d)
    }

    /// Prints diagnostics on standard error: JSON lines, or rendered text.
    fn eprint(&self, list: &[Diagnostic]) {
        for d in list {
            if self.json {
                eprintln!("{}", diagnostics::json(self.file_name, d));
            } else {
                eprintln!("{}", self.render(d));
            }
        }
    }

    /// The Dockerfile does not plan: what the checks found before the error, then the error.
    pub fn failed(&self, message: &str, location: Location) -> ExitCode {
        if let Ok(file) = kiln_builder::dockerfile::parse(self.source) {
            let base = |_: &str| None;
            let input = CheckInput {
                build_args: self.build_args,
                coverage: Coverage::Target,
                platform: self.platform,
                ignore: None,
                base: &base,
                lower: false,
            };
            if let Ok(report) = check::check(&file, None, &input) {
                self.eprint(&report.diagnostics);
            }
        }
        let error = Diagnostic::error(message, (location.start_line > 0).then_some(location));
        if self.json {
            self.eprint(std::slice::from_ref(&error));
        }
        eprintln!("error: {}", self.render_error(message, location));
        ExitCode::FAILURE
    }

    fn render_error(&self, message: &str, location: Location) -> String {
        diagnostics::Diagnostic {
            file: self.file_name,
            source: self.source,
            message,
            location,
        }
        .render()
    }

    /// Before a build: the checks of the stages it builds. `Err` with the exit code when the
    /// configuration does not parse or `error=true` makes a finding fatal (the findings and the
    /// error are printed); else the findings, to print after the build.
    pub fn before_build(&self, prepared: &Prepared) -> Result<Vec<Diagnostic>, ExitCode> {
        let report = match self.run(prepared, self.store.as_ref(), Coverage::Target, false) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::FAILURE);
            }
        };
        if let Some(violation) = report.violation() {
            self.eprint(&report.diagnostics);
            if self.json {
                self.eprint(&[Diagnostic::error(violation.as_str(), None)]);
            }
            eprintln!("error: {violation}");
            return Err(ExitCode::FAILURE);
        }
        Ok(report.diagnostics)
    }

    /// During a build, when a base image is resolved for `platform` (its stage's):
    /// InvalidBaseImagePlatform if its config's platform is not that one, reported at every
    /// FROM that names it.
    pub fn base_resolved(
        &self,
        store: &Store,
        prepared: &Prepared,
        reference: &Reference,
        desc: &Descriptor,
        platform: &Platform,
    ) {
        let Ok(config) = store
            .read_manifest(desc)
            .and_then(|m| store.read_config(&m))
        else {
            return;
        };
        let actual = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
        if actual == *platform {
            return;
        }
        let Ok(file_config) = check::file_config(&prepared.file, self.build_args) else {
            return;
        };
        let Ok(mut found) = self.resolved_bases.lock() else {
            return;
        };
        for stage in &prepared.plan.stages {
            if stage.base != Base::Image(reference.clone()) {
                continue;
            }
            found.extend(check::base_image_platform(
                &file_config,
                &stage.base_text,
                &actual.to_string(),
                &platform.to_string(),
                stage.location,
            ));
        }
    }

    /// After a build: docker's `N warnings found:` and the findings, on standard error. The
    /// checks run again with the build's store, whose base images are now known, so their
    /// environments decide UndefinedVar (`found`, from before the build, is what is printed if
    /// that fails).
    pub fn after_build(&self, found: &[Diagnostic], prepared: &Prepared, store: &Store) {
        if self.quiet {
            return;
        }
        let mut found = match self.run(prepared, Some(store), Coverage::Target, false) {
            Ok(report) => report.diagnostics,
            Err(_) => found.to_vec(),
        };
        if let Ok(mut bases) = self.resolved_bases.lock() {
            found.append(&mut bases);
        }
        check::sort(&mut found);
        if found.is_empty() {
            return;
        }
        if !self.json {
            eprintln!("\n{}:", count(found.len(), "warning", "warnings", "found"));
        }
        self.eprint(&found);
    }

    /// `--call=check|outline|targets`.
    pub fn call(&self, call: Call, prepared: &Prepared) -> anyhow::Result<ExitCode> {
        match call {
            Call::Check => self.check(prepared),
            Call::Outline => self.outline(&prepared.plan, prepared),
            Call::Targets => self.targets(&prepared.plan, prepared),
            Call::Build | Call::Plan => {
                anyhow::bail!("--call={call:?} is not a check call (kiln bug)")
            }
        }
    }

    fn check(&self, prepared: &Prepared) -> anyhow::Result<ExitCode> {
        let coverage = match self.target {
            Some(_) => Coverage::Target,
            None => Coverage::AllStages,
        };
        let report = match self.run(prepared, self.store.as_ref(), coverage, true) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) = report
            .diagnostics
            .iter()
            .cloned()
            .partition(|d| d.severity == Severity::Error);
        let mut out = std::io::stdout().lock();
        if self.json {
            for d in &warnings {
                writeln!(out, "{}", diagnostics::json(self.file_name, d))?;
            }
        } else if warnings.is_empty() {
            writeln!(out, "Check complete, no warnings found.")?;
        } else {
            let found = count(
                warnings.len(),
                "warning has",
                "warnings have",
                "been found!",
            );
            writeln!(out, "Check complete, {found}")?;
            for d in &warnings {
                writeln!(out, "\n{}", self.render(d))?;
            }
        }
        drop(out);
        let mut failures = errors;
        if let Some(violation) = report.violation() {
            failures.push(Diagnostic::error(violation, None));
        }
        if failures.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        if self.json {
            for d in &failures {
                println!("{}", diagnostics::json(self.file_name, d));
            }
        } else {
            for d in &failures {
                eprintln!("{}", self.render(d));
            }
        }
        Ok(ExitCode::FAILURE)
    }

    fn targets(&self, plan: &Plan, prepared: &Prepared) -> anyhow::Result<ExitCode> {
        let targets = plan.targets(&prepared.file);
        let mut out = std::io::stdout().lock();
        if self.json {
            let list: Vec<serde_json::Value> = targets
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t.name, "default": t.default, "description": t.description,
                        "base": t.base, "line": t.location.start_line,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::json!({ "targets": list }))?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut rows = vec![vec!["TARGET".to_owned(), "DESCRIPTION".to_owned()]];
        for t in &targets {
            let name = match (&t.name, t.default) {
                (None, true) => "(default)".to_owned(),
                (Some(name), true) => format!("{name} (default)"),
                (name, false) => name.clone().unwrap_or_default(),
            };
            rows.push(vec![name, t.description.clone()]);
        }
        write!(out, "{}", tabwriter(&rows, 0, 1))?;
        Ok(ExitCode::SUCCESS)
    }

    fn outline(&self, plan: &Plan, prepared: &Prepared) -> anyhow::Result<ExitCode> {
        let outline = plan.outline(&prepared.file);
        let mut out = std::io::stdout().lock();
        if self.json {
            let needs = |list: &[Need]| -> Vec<serde_json::Value> {
                list.iter()
                    .map(|n| serde_json::json!({"name": n.id, "required": n.required}))
                    .collect()
            };
            let args: Vec<serde_json::Value> = outline
                .args
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "name": a.name, "value": a.value, "description": a.description,
                        "line": a.location.start_line,
                    })
                })
                .collect();
            let value = serde_json::json!({
                "name": outline.target.name, "description": outline.target.description,
                "args": args, "secrets": needs(&outline.secrets), "ssh": needs(&outline.ssh),
            });
            writeln!(out, "{value}")?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut head = vec![vec![
            "TARGET:".to_owned(),
            outline
                .target
                .name
                .clone()
                .unwrap_or_else(|| "(default)".to_owned()),
        ]];
        if !outline.target.description.is_empty() {
            head.push(vec![
                "DESCRIPTION:".to_owned(),
                outline.target.description.clone(),
            ]);
        }
        writeln!(out, "{}", tabwriter(&head, 0, 1))?;
        if !outline.args.is_empty() {
            let mut rows = vec![vec![
                "BUILD ARG".to_owned(),
                "VALUE".to_owned(),
                "DESCRIPTION".to_owned(),
            ]];
            for a in &outline.args {
                rows.push(vec![
                    a.name.clone(),
                    a.value.clone().unwrap_or_default(),
                    a.description.clone(),
                ]);
            }
            writeln!(out, "{}", tabwriter(&rows, 0, 3))?;
        }
        for (title, list) in [("SECRET", &outline.secrets), ("SSH", &outline.ssh)] {
            if list.is_empty() {
                continue;
            }
            let mut rows = vec![vec![title.to_owned(), "REQUIRED".to_owned()]];
            for n in list {
                let required = if n.required { "true" } else { "" };
                rows.push(vec![n.id.clone(), required.to_owned()]);
            }
            writeln!(out, "{}", tabwriter(&rows, 0, 3))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `1 warning found`, `2 warnings found`.
fn count(n: usize, one: &str, many: &str, tail: &str) -> String {
    if n == 1 {
        format!("1 {one} {tail}")
    } else {
        format!("{n} {many} {tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_all_but_the_last_column() {
        let rows = vec![
            vec!["TARGET".to_owned(), "DESCRIPTION".to_owned()],
            vec!["build (default)".to_owned(), "compiles".to_owned()],
            vec!["x".to_owned(), String::new()],
        ];
        assert_eq!(
            tabwriter(&rows, 0, 1),
            "TARGET          DESCRIPTION\nbuild (default) compiles\nx\n"
        );
        assert_eq!(count(1, "warning", "warnings", "found"), "1 warning found");
        assert_eq!(
            count(3, "warning has", "warnings have", "been found!"),
            "3 warnings have been found!"
        );
    }
}
