//! The build plan: a parsed Dockerfile → stages, their dependencies, and the ones a target needs.
//!
//! This is the first half of BuildKit's `dockerfile2llb`: global ARGs (before the first FROM)
//! are resolved against `--build-arg` values and the predefined platform ARGs and are visible
//! only in FROM lines; every stage's base is expanded and resolved to `scratch`, an earlier or
//! later stage, or an image reference; `COPY --from` and `RUN --mount=from=` add edges; the
//! target's dependencies are walked so unused stages are skipped; a cycle or an unknown stage is
//! an error with the line. Per-stage variable scoping lives in [`scope`].

pub mod lower;
pub mod outline;
pub mod scope;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kiln_registry::Reference;

use crate::check::Diagnostic;
use crate::dockerfile::instructions::{Instruction, InstructionError, RunMount, suggest};
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Dockerfile, Location};

pub use kiln_registry::Platform;
pub use lower::{CommandLine, CopyKeyword, CopyOp, ExecOp, Lowered, MetaOp, Op, lower_meta};
pub use scope::{Scope, ScopeExpander};

/// What the caller chooses for a build.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// `--build-arg` values (a name with no value takes it from the environment in the CLI).
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last one).
    pub target: Option<String>,
    /// The platform built for (`linux/arm64`): `TARGETPLATFORM` and the stages without a
    /// `FROM --platform`.
    pub platform: Platform,
    /// The platform built on: `BUILDPLATFORM` (the host's).
    pub build_platform: Platform,
    /// `--build-context NAME=…`: what a `FROM NAME` or `--from=NAME` means instead, stage
    /// names included (see [`named_context`]).
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// What a `--build-context` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// `docker-image://REF`: an image.
    Image(Reference),
    /// A local directory: files for `COPY --from` and `RUN --mount=from=`, with its own
    /// `.dockerignore`.
    Local(PathBuf),
}

impl Default for PlanOptions {
    /// No build-args, the last stage, the host's platform (built on the host).
    fn default() -> Self {
        Self {
            build_args: BTreeMap::new(),
            target: None,
            platform: Platform::host(),
            build_platform: Platform::host(),
            named_contexts: BTreeMap::new(),
        }
    }
}

/// ARGs anyone may pass with `--build-arg` without declaring them; they reach RUN but are kept
/// out of history and cache keys (BuildKit's proxy-args rule).
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// Another stage of this Dockerfile, by index.
    Stage(usize),
    /// An image from a registry or the local store.
    Image(Reference),
}

/// Where `COPY --from` or `RUN --mount=from=` takes files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A stage of this Dockerfile, by index.
    Stage(usize),
    /// An image.
    Image(Reference),
    /// A local directory given by `--build-context NAME=DIR`.
    Local(PathBuf),
}

/// One instruction after FROM, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The typed instruction, unexpanded.
    pub instruction: Instruction,
    /// Its place in the Dockerfile.
    pub location: Location,
    /// The instruction text as written (continuations joined).
    pub original: String,
}

/// A build stage: one FROM and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// 0-based position in the Dockerfile.
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// The FROM argument as written.
    pub base_text: String,
    /// What it starts from, after expanding global ARGs.
    pub base: Base,
    /// `FROM --platform=…`, expanded.
    pub platform: Option<String>,
    /// The FROM line.
    pub location: Location,
    /// Everything after FROM up to the next FROM.
    pub steps: Vec<Step>,
    /// Other stages and images it reads files from, per step index.
    pub sources: BTreeMap<usize, Vec<Source>>,
}

impl Stage {
    /// A human name: `name` or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }

    /// The stages this one needs built first.
    pub fn stage_deps(&self) -> BTreeSet<usize> {
        let mut deps: BTreeSet<usize> = self
            .sources
            .values()
            .flatten()
            .filter_map(|s| {
                if let Source::Stage(i) = s {
                    Some(*i)
                } else {
                    None
                }
            })
            .collect();
        if let Base::Stage(i) = self.base {
            deps.insert(i);
        }
        deps
    }
}

/// A global `ARG` (before the first FROM) with its resolved value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArg {
    /// The name.
    pub name: String,
    /// Its value: `--build-arg`, else the expanded default, else none.
    pub value: Option<String>,
}

/// The plan for one build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The escape token of the Dockerfile (used again when expanding).
    pub escape: char,
    /// Global ARGs and predefined platform ARGs, in declaration order.
    pub meta_args: Vec<MetaArg>,
    /// Every stage of the Dockerfile.
    pub stages: Vec<Stage>,
    /// The stage to build.
    pub target: usize,
    /// The stages the target needs, each after its dependencies; the target is last.
    pub order: Vec<usize>,
    /// `--build-arg` values and other inputs.
    pub options: PlanOptions,
    /// Warnings that are not build checks (build args nothing declares).
    pub warnings: Vec<Diagnostic>,
}

/// A Dockerfile that cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub location: Location,
}

impl From<InstructionError> for PlanError {
    fn from(e: InstructionError) -> Self {
        PlanError {
            message: e.message,
            location: e.location,
        }
    }
}

fn plan_err(message: impl Into<String>, location: Location) -> PlanError {
    PlanError {
        message: message.into(),
        location,
    }
}

impl Plan {
    /// Plans a parsed Dockerfile.
    pub fn new(file: &Dockerfile, options: PlanOptions) -> Result<Self, PlanError> {
        let mut warnings = Vec::new();
        let mut meta_args = predefined_args(&options.build_platform, &options.platform);
        let mut stages: Vec<Stage> = Vec::new();
        let lexer = Lexer::new(file.escape);
        let mut declared: BTreeSet<String> = BTreeSet::new();

        for node in &file.instructions {
            let instruction = Instruction::from_node(node)?;
            let location = node.location;
            match instruction {
                Instruction::From(from) => {
                    let env = meta_env(&meta_args);
                    let mut x = ScopeExpander::new(&lexer, &env);
                    let base_text = x.word_at(&from.image, location)?;
                    let platform = from
                        .platform
                        .as_deref()
                        .map(|p| x.word_at(p, location))
                        .transpose()?;
                    // Undefined names in FROM are the UndefinedArgInFrom check's (crate::check);
                    // a platform they leave empty or invalid is an error, with their suggestion.
                    if let (Some(written), Some(value)) = (&from.platform, &platform) {
                        let hint = x
                            .unmatched
                            .iter()
                            .find_map(|name| {
                                suggest(name, meta_args.iter().map(|m| m.name.as_str()))
                            })
                            .map(|close| format!(" (did you mean {close}?)"))
                            .unwrap_or_default();
                        if value.is_empty() {
                            return Err(plan_err(
                                format!("empty platform value from expression {written}{hint}"),
                                location,
                            ));
                        }
                        if let Err(e) = value.parse::<Platform>() {
                            return Err(plan_err(
                                format!("failed to parse platform {written}: {e}{hint}"),
                                location,
                            ));
                        }
                    }
                    if base_text.is_empty() {
                        return Err(plan_err(
                            format!("base name ({}) should not be blank", from.image),
                            location,
                        ));
                    }
                    // Reused and reserved stage names are the DuplicateStageName and
                    // ReservedStageName checks' (crate::check).
                    stages.push(Stage {
                        index: stages.len(),
                        name: from.stage_name,
                        base_text,
                        base: Base::Scratch,
                        platform,
                        location,
                        steps: Vec::new(),
                        sources: BTreeMap::new(),
                    });
                }
                Instruction::Arg(decls) if stages.is_empty() => {
                    declared.extend(decls.iter().map(|d| d.name.clone()));
                    declare_global(&mut meta_args, decls, &options, &lexer, location)?;
                }
                other if stages.is_empty() => {
                    return Err(plan_err(
                        format!(
                            "{} must come after FROM: only ARG may come before the first FROM",
                            other.keyword()
                        ),
                        location,
                    ));
                }
                instruction => {
                    if let Instruction::Arg(decls) = &instruction {
                        declared.extend(decls.iter().map(|d| d.name.clone()));
                    }
                    let stage = stages.last_mut().expect("a stage exists after FROM");
                    stage.steps.push(Step {
                        instruction,
                        location,
                        original: node.original.clone(),
                    });
                }
            }
        }

        // Only ARGs (or nothing but comments and directives): there is no stage to build.
        if stages.is_empty() {
            return Err(plan_err(
                "dockerfile contains no stages to build",
                Location::default(),
            ));
        }
        resolve_bases(&mut stages, &options.named_contexts)?;
        resolve_sources(&mut stages, &lexer, &meta_args, &options)?;
        let target = match &options.target {
            None => stages.len() - 1,
            Some(t) => {
                let t = t.to_ascii_lowercase();
                stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(t.as_str()))
                    .ok_or_else(|| {
                        plan_err(
                            format!("target stage {t:?} could not be found"),
                            Location::default(),
                        )
                    })?
            }
        };
        let order = build_order(&stages, target)?;
        for name in options.build_args.keys() {
            if !declared.contains(name)
                && !PROXY_ARGS.contains(&name.as_str())
                && name != "SOURCE_DATE_EPOCH"
                && name != crate::check::CHECK_BUILD_ARG
            {
                warnings.push(Diagnostic::warning(
                    format!("build-arg {name:?} was not consumed"),
                    None,
                ));
            }
        }
        Ok(Plan {
            escape: file.escape,
            meta_args,
            stages,
            target,
            order,
            options,
            warnings,
        })
    }
}

/// A base image's `ONBUILD` triggers as steps that run first in a stage built FROM it
/// (BuildKit's `dispatchOnBuildTriggers`). They are reported at the stage's FROM line, since the
/// text comes from the image, not the Dockerfile.
pub fn onbuild_steps(
    triggers: &[String],
    escape: char,
    from: Location,
) -> Result<Vec<Step>, PlanError> {
    triggers
        .iter()
        .map(|trigger| {
            let bad =
                |message: String| plan_err(format!("ONBUILD trigger {trigger:?}: {message}"), from);
            let file = crate::dockerfile::parse(&with_escape_directive(trigger, escape))
                .map_err(|e| bad(e.message))?;
            let [node] = file.instructions.as_slice() else {
                return Err(bad(
                    "onbuild trigger should be a single expression".to_owned()
                ));
            };
            let instruction = Instruction::from_node(node).map_err(|e| bad(e.message))?;
            if let Instruction::From(_) | Instruction::OnBuild(_) | Instruction::Maintainer(_) =
                instruction
            {
                return Err(bad(format!(
                    "{} isn't allowed as an ONBUILD trigger",
                    instruction.keyword()
                )));
            }
            Ok(Step {
                instruction,
                location: from,
                original: trigger.clone(),
            })
        })
        .collect()
}

/// Triggers are parsed with the escape token of the Dockerfile that uses them.
fn with_escape_directive(trigger: &str, escape: char) -> String {
    if escape == '\\' {
        trigger.to_owned()
    } else {
        format!("# escape={escape}\n{trigger}")
    }
}

/// Declares global ARGs (before the first FROM): the `--build-arg` value wins, else the default
/// expanded with the global ARGs before it; a later declaration replaces an earlier one.
fn declare_global(
    meta_args: &mut Vec<MetaArg>,
    decls: Vec<crate::dockerfile::instructions::ArgDecl>,
    options: &PlanOptions,
    lexer: &Lexer,
    location: Location,
) -> Result<(), PlanError> {
    for decl in decls {
        let value = match options.build_args.get(&decl.name) {
            Some(v) => Some(v.clone()),
            None => decl
                .default
                .as_deref()
                .map(|d| ScopeExpander::new(lexer, &meta_env(meta_args)).word_at(d, location))
                .transpose()?,
        };
        meta_args.retain(|m| m.name != decl.name);
        meta_args.push(MetaArg {
            name: decl.name,
            value,
        });
    }
    Ok(())
}

/// The predefined platform ARGs and the global ARGs of `file` with their values, as
/// [`Plan::new`] computes them (the build checks use this when the file does not plan).
pub fn global_args(file: &Dockerfile, options: &PlanOptions) -> Result<Vec<MetaArg>, PlanError> {
    let lexer = Lexer::new(file.escape);
    let mut meta_args = predefined_args(&options.build_platform, &options.platform);
    for node in &file.instructions {
        match Instruction::from_node(node)? {
            Instruction::Arg(decls) => {
                declare_global(&mut meta_args, decls, options, &lexer, node.location)?
            }
            _ => break,
        }
    }
    Ok(meta_args)
}

/// The platform ARGs BuildKit defines in the global scope: `BUILD*` for the platform built on,
/// `TARGET*` for the one built for (`BUILDVARIANT` and `TARGETVARIANT` empty when there is no
/// variant).
pub(crate) fn predefined_args(build: &Platform, target: &Platform) -> Vec<MetaArg> {
    let arg = |name: &str, value: String| MetaArg {
        name: name.to_owned(),
        value: Some(value),
    };
    let mut args = Vec::new();
    for (prefix, platform) in [("BUILD", build), ("TARGET", target)] {
        let variant = platform.variant.clone().unwrap_or_default();
        args.push(arg(&format!("{prefix}PLATFORM"), platform.to_string()));
        args.push(arg(&format!("{prefix}OS"), platform.os.clone()));
        args.push(arg(&format!("{prefix}ARCH"), platform.architecture.clone()));
        args.push(arg(&format!("{prefix}VARIANT"), variant));
    }
    args
}

fn meta_env(meta_args: &[MetaArg]) -> BTreeMap<String, String> {
    meta_args
        .iter()
        .filter_map(|m| Some((m.name.clone(), m.value.clone()?)))
        .collect()
}

/// The image a named context gives for `name` (a FROM or `--from` as written), as BuildKit
/// looks it up: by the name, lowercased, with a `:latest` tag or none alike. A named context
/// comes before a stage of that name.
pub fn named_context<'a>(
    contexts: &'a BTreeMap<String, NamedContext>,
    name: &str,
) -> Option<&'a NamedContext> {
    let lower = name.to_ascii_lowercase();
    let untagged = lower.strip_suffix(":latest").unwrap_or(&lower);
    contexts
        .get(&lower)
        .or_else(|| contexts.get(untagged))
        .or_else(|| contexts.get(&format!("{untagged}:latest")))
}

/// Resolves each stage's base: a named context, a stage name (of any stage but itself),
/// `scratch`, or an image.
fn resolve_bases(
    stages: &mut [Stage],
    named: &BTreeMap<String, NamedContext>,
) -> Result<(), PlanError> {
    let names: Vec<Option<String>> = stages
        .iter()
        .map(|s| s.name.clone().filter(|n| named_context(named, n).is_none()))
        .collect();
    for stage in stages.iter_mut() {
        let lower = stage.base_text.to_ascii_lowercase();
        let by_name = names
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()));
        stage.base = match by_name {
            _ if let Some(context) = named_context(named, &stage.base_text) => match context {
                NamedContext::Image(image) => Base::Image(image.clone()),
                NamedContext::Local(dir) => {
                    return Err(plan_err(
                        format!(
                            "FROM {}: a local directory ({}) as a base is not supported by kiln \
                             yet (COPY --from and RUN --mount=from= can read it)",
                            stage.base_text,
                            dir.display()
                        ),
                        stage.location,
                    ));
                }
            },
            Some(i) if i != stage.index => Base::Stage(i),
            _ if lower == "scratch" => Base::Scratch,
            _ => Base::Image(parse_reference(&stage.base_text, stage.location)?),
        };
    }
    Ok(())
}

fn parse_reference(text: &str, location: Location) -> Result<Reference, PlanError> {
    Reference::parse(text).map_err(|e| plan_err(e.to_string(), location))
}

/// Resolves `COPY --from` and `RUN --mount=from=` to stages or images. They are expanded with the
/// global ARGs and the stage's own ARG defaults, which is all that is known before building.
fn resolve_sources(
    stages: &mut [Stage],
    lexer: &Lexer,
    meta_args: &[MetaArg],
    options: &PlanOptions,
) -> Result<(), PlanError> {
    let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
    for stage in stages.iter_mut() {
        let mut scope = Scope::new(Vec::new());
        let named = &options.named_contexts;
        let mut sources = BTreeMap::new();
        for (i, step) in stage.steps.iter().enumerate() {
            let froms: Vec<String> = match &step.instruction {
                Instruction::Copy(c) => c.from.iter().cloned().collect(),
                Instruction::Run(r) => r
                    .mounts
                    .iter()
                    .map(|spec| RunMount::parse(spec, &mut |v| Ok(v.to_owned())))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| PlanError::from(e.at(step.location)))?
                    .into_iter()
                    .filter_map(|m| m.from)
                    .collect(),
                Instruction::Arg(decls) => {
                    scope.declare_args(
                        decls,
                        lexer,
                        &options.build_args,
                        meta_args,
                        step.location,
                    )?;
                    Vec::new()
                }
                _ => Vec::new(),
            };
            for from in froms {
                let from =
                    ScopeExpander::new(lexer, &scope.env_map()).word_at(&from, step.location)?;
                let source = source_of(&names, named, stage, &from, step.location)?;
                sources.entry(i).or_insert_with(Vec::new).push(source);
            }
        }
        stage.sources = sources;
    }
    Ok(())
}

/// What `--from=from` names in `stage`: a named context's image, a stage by name or index,
/// else an image. A stage cannot take files from itself.
fn source_of(
    names: &[Option<String>],
    named: &BTreeMap<String, NamedContext>,
    stage: &Stage,
    from: &str,
    location: Location,
) -> Result<Source, PlanError> {
    let lower = from.to_ascii_lowercase();
    let count = names.len();
    let source = if let Some(context) = named_context(named, from) {
        match context {
            NamedContext::Image(image) => Source::Image(image.clone()),
            NamedContext::Local(dir) => Source::Local(dir.clone()),
        }
    } else if let Some(j) = names
        .iter()
        .position(|n| n.as_deref() == Some(lower.as_str()))
    {
        Source::Stage(j)
    } else if let Ok(j) = from.parse::<usize>() {
        if j >= count {
            return Err(plan_err(
                format!("invalid stage index {j}: the Dockerfile has {count} stages"),
                location,
            ));
        }
        Source::Stage(j)
    } else {
        Source::Image(parse_reference(from, location)?)
    };
    if source == Source::Stage(stage.index) {
        return Err(plan_err(
            format!(
                "circular dependency detected on stage: {}",
                stage.display_name()
            ),
            location,
        ));
    }
    Ok(source)
}

impl Plan {
    /// The platform stage `index` runs for (BuildKit's rule): a stage built FROM another stage
    /// has that stage's platform; otherwise its `FROM --platform`, else the target platform.
    pub fn stage_platform(&self, index: usize) -> Platform {
        let mut stage = &self.stages[index];
        // The plan has no cycles (build_order refuses them), but a chain is walked with a
        // bound anyway: this is called on plans made by hand too.
        for _ in 0..self.stages.len() {
            match stage.base {
                Base::Stage(parent) => stage = &self.stages[parent],
                _ => break,
            }
        }
        stage
            .platform
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| self.options.platform.clone())
    }

    /// What `--from=from` names in stage `index` (see [`source_of`]).
    pub(crate) fn source_named(
        &self,
        index: usize,
        from: &str,
        location: Location,
    ) -> Result<Source, PlanError> {
        let names: Vec<Option<String>> = self.stages.iter().map(|s| s.name.clone()).collect();
        let named = &self.options.named_contexts;
        source_of(&names, named, &self.stages[index], from, location)
    }
}

/// The stages `target` needs, dependencies first, by a depth-first walk that reports cycles.
fn build_order(stages: &[Stage], target: usize) -> Result<Vec<usize>, PlanError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    // Depth first, each stage after its dependencies, on an explicit stack: a chain of stages
    // is as deep as the Dockerfile is long, too deep to recurse.
    let mut marks = vec![Mark::New; stages.len()];
    let mut order = Vec::new();
    let mut stack = vec![(target, stages[target].stage_deps().into_iter())];
    marks[target] = Mark::Active;
    while let Some((i, deps)) = stack.last_mut() {
        let i = *i;
        let Some(dep) = deps.next() else {
            marks[i] = Mark::Done;
            order.push(i);
            stack.pop();
            continue;
        };
        match marks[dep] {
            Mark::Done => {}
            Mark::Active => {
                return Err(plan_err(
                    format!(
                        "circular dependency detected on stage: {}",
                        stages[dep].display_name()
                    ),
                    stages[dep].location,
                ));
            }
            Mark::New => {
                marks[dep] = Mark::Active;
                stack.push((dep, stages[dep].stage_deps().into_iter()));
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests;
