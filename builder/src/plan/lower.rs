//! Lowering: a stage's steps, as the solver runs them. BuildKit's frontend turns a Dockerfile
//! into LLB before its solver sees anything; this is kiln's small version of that seam.
//!
//! Once a stage's base is known (its config carries the ONBUILD triggers and the environment
//! the stage starts from), [`Plan::lower_stage`] parses the triggers, expands every step with
//! the variables in scope at that step, and turns each into an [`Op`]: an ARG record, an
//! [`ExecOp`] (RUN, its `--mount`s parsed and their `from` resolved), a [`CopyOp`] (COPY or ADD,
//! `--from` resolved, the unpack rule decided) or a [`MetaOp`] (a config change, its ports,
//! signal and health check already validated). The solver, the sandbox and the file and
//! metadata ops see only these: never Dockerfile instruction types, never unparsed flags, and
//! they never call back into the parser.

use serde::Serialize;

/// The value types of the op vocabulary that the parser produces too, named from here by the
/// solver, the sandbox and the file ops.
pub use crate::dockerfile::instructions::{
    Command, FileFlags, Files, InlineSource, MountType, Network, RunMount, Sharing,
};

use super::{Plan, PlanError, Source, Step, onbuild_steps, plan_err};
use crate::dockerfile::Location;
use crate::dockerfile::instructions::{
    Add, Copy, Healthcheck as HealthInstruction, Instruction, KeyValue,
};
use crate::image::Healthcheck;
use crate::ops::chmod::Chmod;
use crate::ops::file::Unpack;
use crate::ops::meta::{MetaError, parse_port_spec, parse_signal};
use crate::plan::Scope;

/// One step of a stage, lowered.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// What it does.
    pub op: Op,
    /// Its place in the Dockerfile (an ONBUILD trigger's is its stage's FROM line).
    pub location: Location,
    /// The instruction as written, for progress.
    pub text: String,
    /// The variables in scope after the step: what a RUN sees.
    pub scope: Scope,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Op {
    /// `ARG`: the names declared, with the values they got, for the image's history.
    Arg(Vec<(String, Option<String>)>),
    /// `RUN`.
    Exec(ExecOp),
    /// `COPY` or `ADD`.
    Copy(CopyOp),
    /// A change to the image config (and for `WORKDIR`, a directory).
    Meta(MetaOp),
}

/// A command run in a sandbox over the stage's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecOp {
    /// The command: an argv, or a line for the stage's shell, with heredoc bodies.
    pub command: Command,
    /// Its `--mount`s, parsed.
    pub mounts: Vec<RunMount>,
    /// Where each mount with a `from` takes its files from, by mount index.
    #[serde(skip)]
    pub sources: Vec<Option<Source>>,
    /// `--network`.
    pub network: Network,
}

/// Which instruction a [`CopyOp`] came from: their rules differ in details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyKeyword {
    /// `COPY`.
    Copy,
    /// `ADD`: URLs, archive extraction, `--checksum`.
    Add,
}

impl CopyKeyword {
    /// The keyword as written.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyKeyword::Copy => "COPY",
            CopyKeyword::Add => "ADD",
        }
    }
}

/// Files from the context, URLs, another stage or an image into the stage's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyOp {
    /// COPY or ADD.
    pub keyword: CopyKeyword,
    /// Sources and destination, expanded.
    pub files: Files,
    /// `--chown`, `--chmod`, `--link`, `--exclude`.
    pub flags: FileFlags,
    /// `--from`, resolved (its identity reaches the key as the stage's key or the image's
    /// digest, not as a name).
    #[serde(skip)]
    pub from: Option<Source>,
    /// `--parents`.
    pub parents: bool,
    /// Which sources are extracted when they are archives.
    pub unpack: Unpack,
    /// `ADD --checksum`.
    pub checksum: Option<String>,
    /// `ADD --keep-git-dir` (for git sources, which kiln refuses so far).
    pub keep_git_dir: bool,
}

/// A shell-form or exec-form command of CMD or ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// The argv as given.
    Exec(Vec<String>),
    /// A line for the shell that is current when the instruction is applied.
    Shell(String),
}

/// A change to the image config.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaOp {
    /// `ENV`.
    Env(Vec<(String, String)>),
    /// `LABEL`.
    Label(Vec<(String, String)>),
    /// `MAINTAINER`.
    Maintainer(String),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `HEALTHCHECK`, as the config stores it.
    Healthcheck(Healthcheck),
    /// `EXPOSE`: `port/proto` keys, sorted, without duplicates.
    Expose(Vec<String>),
    /// `USER`.
    User(String),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `STOPSIGNAL`, validated.
    StopSignal(String),
    /// `SHELL`.
    Shell(Vec<String>),
    /// `ONBUILD`: a trigger for images built from this one.
    OnBuild(String),
    /// `WORKDIR`, as written (joined to the current one when applied).
    Workdir(String),
}

impl Plan {
    /// Lowers stage `index` as it starts from a base whose config has the ONBUILD triggers
    /// `on_build` and whose environment is `scope` (see the module doc).
    pub fn lower_stage(
        &self,
        index: usize,
        on_build: &[String],
        scope: Scope,
    ) -> Result<Vec<Lowered>, PlanError> {
        let stage = &self.stages[index];
        let mut steps: Vec<Step> = onbuild_steps(on_build, self.escape, stage.location)?;
        steps.extend(stage.steps.iter().cloned());
        let (expanded, _) = self.expand_steps(&steps, scope)?;
        expanded
            .into_iter()
            .map(|x| {
                let location = x.step.location;
                Ok(Lowered {
                    op: self.lower_op(index, x.step.instruction, &x.scope, location)?,
                    location,
                    text: x.step.original.trim().to_owned(),
                    scope: x.scope,
                })
            })
            .collect()
    }

    /// Every error lowering stage `index` from `scope` finds, not only the first (for
    /// `--check`): each step is expanded and lowered on its own, and one that fails leaves the
    /// scope as it was for the next.
    pub fn lowering_errors(&self, index: usize, mut scope: Scope) -> Vec<PlanError> {
        let mut errors = Vec::new();
        for step in &self.stages[index].steps {
            match self.expand_steps(std::slice::from_ref(step), scope.clone()) {
                Ok((expanded, next)) => {
                    scope = next;
                    for x in expanded {
                        let location = x.step.location;
                        if let Err(e) = self.lower_op(index, x.step.instruction, &x.scope, location)
                        {
                            errors.push(e);
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    fn lower_op(
        &self,
        stage: usize,
        instruction: Instruction,
        scope: &Scope,
        location: Location,
    ) -> Result<Op, PlanError> {
        let source = |from: &str| self.source_named(stage, from, location);
        if let Instruction::Copy(Copy { flags, .. }) | Instruction::Add(Add { flags, .. }) =
            &instruction
            && let Some(chmod) = &flags.chmod
        {
            // Refused here, before anything runs, with the parser the file op uses.
            chmod
                .parse::<Chmod>()
                .map_err(|e| plan_err(e.to_string(), location))?;
        }
        Ok(match instruction {
            Instruction::Arg(decls) => Op::Arg(
                decls
                    .iter()
                    .map(|d| {
                        let value = scope
                            .args()
                            .iter()
                            .find(|(n, _)| *n == d.name)
                            .and_then(|(_, v)| v.clone());
                        (d.name.clone(), value)
                    })
                    .collect(),
            ),
            Instruction::Run(run) => {
                let mounts = run
                    .mounts
                    .iter()
                    .map(|spec| RunMount::parse(spec, &mut |v| Ok(v.to_owned())))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| PlanError::from(e.at(location)))?;
                let sources = mounts
                    .iter()
                    .map(|m| m.from.as_deref().map(source).transpose())
                    .collect::<Result<_, _>>()?;
                Op::Exec(ExecOp {
                    command: run.command,
                    mounts,
                    sources,
                    network: run.network,
                })
            }
            Instruction::Copy(Copy {
                files,
                flags,
                from,
                parents,
            }) => Op::Copy(CopyOp {
                keyword: CopyKeyword::Copy,
                files,
                flags,
                from: from.as_deref().map(source).transpose()?,
                parents,
                unpack: Unpack::Never,
                checksum: None,
                keep_git_dir: false,
            }),
            Instruction::Add(Add {
                files,
                flags,
                checksum,
                keep_git_dir,
                unpack,
            }) => Op::Copy(CopyOp {
                keyword: CopyKeyword::Add,
                files,
                flags,
                from: None,
                parents: false,
                unpack: Unpack::for_add(unpack),
                checksum,
                keep_git_dir,
            }),
            other => Op::Meta(lower_meta(other).map_err(|e| plan_err(e.to_string(), location))?),
        })
    }
}

/// A metadata instruction as the config change it makes; `kiln import --change` uses it too.
pub fn lower_meta(instruction: Instruction) -> Result<MetaOp, MetaError> {
    let pairs = |kvs: Vec<KeyValue>| kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    let line = |command: Command| {
        if command.prepend_shell {
            CommandLine::Shell(command.args.join(" "))
        } else {
            CommandLine::Exec(command.args)
        }
    };
    Ok(match instruction {
        Instruction::Env(kvs) => MetaOp::Env(pairs(kvs)),
        Instruction::Label(kvs) => MetaOp::Label(pairs(kvs)),
        Instruction::Maintainer(name) => MetaOp::Maintainer(name),
        Instruction::Cmd(command) => MetaOp::Cmd(line(command)),
        Instruction::Entrypoint(command) => MetaOp::Entrypoint(line(command)),
        Instruction::Healthcheck(check) => MetaOp::Healthcheck(match check {
            HealthInstruction::None => Healthcheck {
                test: vec!["NONE".to_owned()],
                ..Healthcheck::default()
            },
            HealthInstruction::Check {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => Healthcheck {
                test,
                interval: nanos(interval),
                timeout: nanos(timeout),
                start_period: nanos(start_period),
                start_interval: nanos(start_interval),
                retries: i64::try_from(retries).unwrap_or(i64::MAX),
                ..Healthcheck::default()
            },
        }),
        Instruction::Expose(ports) => {
            let mut parsed = std::collections::BTreeSet::new();
            for spec in &ports {
                parsed.extend(parse_port_spec(spec)?);
            }
            MetaOp::Expose(parsed.into_iter().collect())
        }
        Instruction::User(user) => MetaOp::User(user),
        Instruction::Volume(paths) => MetaOp::Volume(paths),
        Instruction::StopSignal(signal) => {
            parse_signal(&signal)?;
            MetaOp::StopSignal(signal)
        }
        Instruction::Shell(shell) => MetaOp::Shell(shell),
        Instruction::OnBuild(expression) => MetaOp::OnBuild(expression),
        Instruction::Workdir(path) => {
            if path.is_empty() {
                return Err(MetaError::EmptyWorkdir);
            }
            MetaOp::Workdir(path)
        }
        other @ (Instruction::From(_)
        | Instruction::Run(_)
        | Instruction::Copy(_)
        | Instruction::Add(_)
        | Instruction::Arg(_)) => return Err(MetaError::NotMetadata(other.keyword())),
    })
}

fn nanos(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
