//! The checks BuildKit runs on FROM lines and while it dispatches stages.
//!
//! Every stage's FROM is checked (UndefinedArgInFrom, RedundantTargetPlatform,
//! FromPlatformFlagConstDisallowed, and InvalidDefaultArgInFrom with the global ARGs' defaults
//! only). Then the stages the build needs (or all of them, for `--check`) are walked as BuildKit
//! dispatches them, each after the stage it is built FROM, carrying what the rules need: the
//! variables in scope (the base image's environment, then ARG and ENV, through the plan's own
//! [`Scope`]), whether a SHELL or a WORKDIR was set, and the last CMD, ENTRYPOINT and
//! HEALTHCHECK. Variables are expanded with the plan's [`ScopeExpander`], so a name is
//! "undefined" exactly when a build would expand it to nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    BaseFacts, COPY_IGNORED_FILE, CheckInput, Coverage, Diagnostic, EXPOSE_INVALID_FORMAT,
    EXPOSE_PROTO_CASING, FROM_PLATFORM_FLAG_CONST_DISALLOWED, Findings,
    INVALID_DEFAULT_ARG_IN_FROM, JSON_ARGS_RECOMMENDED, LEGACY_KEY_VALUE_FORMAT,
    MULTIPLE_INSTRUCTIONS_DISALLOWED, REDUNDANT_TARGET_PLATFORM, SECRETS_USED_IN_ARG_OR_ENV,
    UNDEFINED_ARG_IN_FROM, UNDEFINED_VAR, WORKDIR_RELATIVE_PATH,
};
use crate::dockerfile::instructions::{Instruction, suggest};
use crate::dockerfile::parser::go_quote;
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Args, Dockerfile, Location, Node};
use crate::ignore::PatternMatcher;
use crate::plan::{Base, MetaArg, Plan, Platform, Scope, ScopeExpander, predefined_args};

/// Words of secret names, and words that make such a name harmless (BuildKit's
/// `validateNoSecretKey`).
const SECRET_WORDS: [&str; 10] = [
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pword",
    "passwd",
    "secret",
    "token",
];
const ALLOW_WORDS: [&str; 3] = ["public", "file", "version"];

/// Build args BuildKit sets itself, which UndefinedVar never reports.
const BUILTIN_VARS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// Dispatches the covered stages of `plan` (see the module doc).
pub(super) fn dispatch(
    file: &Dockerfile,
    plan: &Plan,
    input: &CheckInput<'_>,
    out: &mut Findings<'_>,
) {
    let nodes = Nodes(
        file.instructions
            .iter()
            .map(|n| (n.location.start_line, n))
            .collect(),
    );
    let lexer = Lexer::new(plan.escape);

    let covered: Vec<usize> = match input.coverage {
        Coverage::Target => plan.order.clone(),
        Coverage::AllStages => (0..plan.stages.len()).collect(),
    };
    let mut walker = Walker {
        plan,
        input,
        lexer,
        done: BTreeMap::new(),
        active: BTreeSet::new(),
        covered: covered.iter().copied().collect(),
        lower: Vec::new(),
    };
    for index in covered {
        walker.stage(index, &nodes, out);
    }
    out.found.append(&mut walker.lower);
}

/// The AST nodes by first line: the plan's steps carry lines, the rules need what only the
/// nodes have (the keyword as written, comments, the legacy ENV form).
struct Nodes<'f>(BTreeMap<usize, &'f Node>);

impl<'f> Nodes<'f> {
    fn at(&self, location: Location) -> Option<&'f Node> {
        self.0.get(&location.start_line).copied()
    }
}

/// The rules of every stage's FROM line, given the global ARGs (predefined ones included) with
/// their values.
pub(super) fn from_lines(
    file: &Dockerfile,
    meta_args: &[MetaArg],
    platform: &Platform,
    out: &mut Findings<'_>,
) {
    let lexer = &Lexer::new(file.escape);
    let declared: Vec<&str> = meta_args.iter().map(|m| m.name.as_str()).collect();
    let values: BTreeMap<String, String> = meta_args
        .iter()
        .filter_map(|m| Some((m.name.clone(), m.value.clone()?)))
        .collect();
    let defaults = global_defaults(file, platform, lexer);
    for node in &file.instructions {
        let Ok(Instruction::From(from)) = Instruction::from_node(node) else {
            continue;
        };
        let location = node.location;

        let mut x = ScopeExpander::new(lexer, &values);
        let _ = x.word_at(&from.image, location);
        let platform = from.platform.as_deref().map(|p| {
            let mut px = ScopeExpander::new(lexer, &values);
            let value = px.word_at(p, location).unwrap_or_default();
            (p, value, px.matched, px.unmatched)
        });
        let mut unmatched = x.unmatched;
        if let Some((_, _, _, u)) = &platform {
            unmatched.extend(u.iter().cloned());
        }
        for name in unmatched.iter().filter(|n| !declared.contains(&n.as_str())) {
            let mut message = format!("FROM argument '{name}' is not declared");
            if let Some(close) = suggest(name, declared.iter().copied()) {
                message.push_str(&format!(" (did you mean {close}?)"));
            }
            out.at(&node.comments, &UNDEFINED_ARG_IN_FROM, message, location);
        }

        if let Some((written, value, matched, unmatched)) = &platform {
            let target = values.get("TARGETPLATFORM");
            if unmatched.is_empty()
                && matched.len() == 1
                && matched.contains("TARGETPLATFORM")
                && target == Some(value)
            {
                out.at(
                    &node.comments,
                    &REDUNDANT_TARGET_PLATFORM,
                    format!(
                        "Setting platform to predefined {written} in FROM is redundant as this is the default behavior"
                    ),
                    location,
                );
            }
            if matched.is_empty()
                && unmatched.is_empty()
                && let Ok(parsed) = value.parse::<Platform>()
            {
                let named_for_it = from.stage_name.as_deref().is_some_and(|name| {
                    name.contains(&parsed.os) || name.contains(&parsed.architecture)
                });
                if !named_for_it {
                    out.at(
                        &node.comments,
                        &FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                        format!(
                            "FROM --platform flag should not use constant value {}",
                            go_quote(value)
                        ),
                        location,
                    );
                }
            }
        }

        // Only a name that reads ARGs: a plain invalid name is the plan's error.
        let mut dx = ScopeExpander::new(lexer, &defaults);
        let base = dx.word_at(&from.image, location).unwrap_or_default();
        let reads_args = !(dx.matched.is_empty() && dx.unmatched.is_empty());
        if reads_args && (base.is_empty() || kiln_registry::Reference::parse(&base).is_err()) {
            out.file_level(
                &INVALID_DEFAULT_ARG_IN_FROM,
                format!(
                    "Default value for ARG {} results in empty or invalid base image name",
                    from.image
                ),
                location,
            );
        }
    }
}

/// The predefined platform ARGs and the global ARGs' defaults (build-args ignored), as
/// InvalidDefaultArgInFrom expands a FROM.
fn global_defaults(
    file: &Dockerfile,
    platform: &Platform,
    lexer: &Lexer,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = predefined_args(&Platform::host(), platform)
        .into_iter()
        .filter_map(|m| Some((m.name, m.value?)))
        .collect();
    for node in &file.instructions {
        match Instruction::from_node(node) {
            Ok(Instruction::Arg(decls)) => {
                for decl in decls {
                    match &decl.default {
                        Some(default) => {
                            let value = ScopeExpander::new(lexer, &env)
                                .word_at(default, node.location)
                                .unwrap_or_default();
                            env.insert(decl.name, value);
                        }
                        None => {
                            env.remove(&decl.name);
                        }
                    }
                }
            }
            _ => break,
        }
    }
    env
}

/// What a stage hands to a stage built FROM it.
#[derive(Debug, Clone)]
struct StageState {
    scope: Scope,
    /// The environment is fully known (the base image's is, or the base is scratch/a stage).
    env_known: bool,
    shell_set: bool,
    workdir_set: bool,
}

struct Walker<'a> {
    plan: &'a Plan,
    input: &'a CheckInput<'a>,
    lexer: Lexer,
    done: BTreeMap<usize, StageState>,
    active: BTreeSet<usize>,
    covered: BTreeSet<usize>,
    /// Errors lowering found (with `CheckInput::lower`).
    lower: Vec<Diagnostic>,
}

impl Walker<'_> {
    /// Dispatches stage `index` (after its base stage), reporting only for covered stages.
    fn stage(&mut self, index: usize, nodes: &Nodes<'_>, out: &mut Findings<'_>) -> StageState {
        if let Some(state) = self.done.get(&index) {
            return state.clone();
        }
        let stage = &self.plan.stages[index];
        let start = match &stage.base {
            Base::Stage(parent) if self.active.insert(index) => {
                let state = self.stage(*parent, nodes, out);
                self.active.remove(&index);
                state
            }
            Base::Stage(_) | Base::Scratch => StageState {
                scope: Scope::new(vec![(
                    "PATH".to_owned(),
                    crate::exec::DEFAULT_PATH.to_owned(),
                )]),
                env_known: true,
                shell_set: false,
                workdir_set: false,
            },
            Base::Image(_) => {
                let facts = (self.input.base)(&stage.base_text);
                let known = facts.is_some();
                let BaseFacts { env, has_shell } = facts.unwrap_or_default();
                StageState {
                    scope: Scope::new(env),
                    env_known: known,
                    shell_set: has_shell,
                    workdir_set: false,
                }
            }
        };
        let report = self.covered.contains(&index);
        if report && self.input.lower {
            let scope = Scope::new(start.scope.env().to_vec());
            for e in self.plan.lowering_errors(index, scope) {
                self.lower
                    .push(Diagnostic::error(e.message, Some(e.location)));
            }
        }
        let mut state = start;
        let mut sink = Findings {
            config: out.config,
            found: Vec::new(),
        };
        let mut last: BTreeMap<&'static str, Location> = BTreeMap::new();
        for step in &stage.steps {
            let Some(node) = nodes.at(step.location) else {
                continue;
            };
            self.step(node, &step.instruction, &mut state, &mut last, &mut sink);
        }
        if report {
            out.found.append(&mut sink.found);
        }
        self.done.insert(index, state.clone());
        state
    }

    fn step(
        &self,
        node: &Node,
        instruction: &Instruction,
        state: &mut StageState,
        last: &mut BTreeMap<&'static str, Location>,
        out: &mut Findings<'_>,
    ) {
        let location = node.location;
        let comments = &node.comments;
        if let Instruction::Arg(decls) = instruction {
            for decl in decls {
                if let Some(default) = &decl.default {
                    let env = state.scope.env_map();
                    let mut x = ScopeExpander::new(&self.lexer, &env);
                    let _ = x.word_at(default, location);
                    self.undefined(&x.unmatched, state, comments, location, out);
                }
                secrets("ARG", &decl.name, comments, location, out);
            }
            let plan = self.plan;
            let _ = state.scope.declare_args(
                decls,
                &self.lexer,
                &plan.options.build_args,
                &plan.meta_args,
                location,
            );
            return;
        }
        let env = state.scope.env_map();
        let mut x = ScopeExpander::new(&self.lexer, &env);
        let mut expanded = instruction.clone();
        if expanded.expand(&mut x).is_err() {
            return;
        }
        self.undefined(&x.unmatched, state, comments, location, out);
        let keyword = &node.keyword;
        match &expanded {
            Instruction::Env(pairs) | Instruction::Label(pairs) => {
                if let Args::KeyValues { legacy: true, .. } = node.args {
                    out.at(
                        comments,
                        &LEGACY_KEY_VALUE_FORMAT,
                        format!(
                            "\"{keyword} key=value\" should be used instead of legacy \"{keyword} key value\" format"
                        ),
                        location,
                    );
                }
                if let Instruction::Env(written) = instruction {
                    for kv in written {
                        secrets("ENV", &kv.key, comments, location, out);
                    }
                    for kv in pairs {
                        state.scope.set(&kv.key, &kv.value);
                    }
                }
            }
            Instruction::Workdir(_) => {
                if let Instruction::Workdir(written) = instruction
                    && !state.workdir_set
                    && !written.starts_with('/')
                {
                    out.at(
                        comments,
                        &WORKDIR_RELATIVE_PATH,
                        format!(
                            "Relative workdir {} can have unexpected results if the base image changes",
                            go_quote(written)
                        ),
                        location,
                    );
                }
                state.workdir_set = true;
            }
            Instruction::Cmd(command) | Instruction::Entrypoint(command) => {
                if command.prepend_shell && !state.shell_set {
                    out.at(
                        comments,
                        &JSON_ARGS_RECOMMENDED,
                        format!(
                            "JSON arguments recommended for {keyword} to prevent unintended behavior related to OS signals"
                        ),
                        location,
                    );
                }
                repeated(expanded.keyword(), keyword, location, last, comments, out);
            }
            Instruction::Healthcheck(_) => {
                repeated(expanded.keyword(), keyword, location, last, comments, out);
            }
            Instruction::Shell(_) => state.shell_set = true,
            Instruction::Copy(copy) if copy.from.is_none() => {
                self.ignored("Copy", &copy.files.sources, comments, location, out);
            }
            Instruction::Add(add) => {
                self.ignored("Add", &add.files.sources, comments, location, out);
            }
            Instruction::Expose(ports) => {
                for port in ports {
                    if port.contains(':') {
                        out.at(
                            comments,
                            &EXPOSE_INVALID_FORMAT,
                            format!(
                                "EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"
                            ),
                            location,
                        );
                    }
                    if let Some((_, proto)) = port.split_once('/')
                        && proto != proto.to_lowercase()
                    {
                        out.at(
                            comments,
                            &EXPOSE_PROTO_CASING,
                            format!(
                                "Defined protocol '{port}' in EXPOSE instruction should be lowercase"
                            ),
                            location,
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// UndefinedVar for names an expansion did not find, unless the stage declared them as
    /// ARGs (with no value) or the base image's environment is unknown.
    fn undefined(
        &self,
        unmatched: &BTreeSet<String>,
        state: &StageState,
        comments: &[String],
        location: Location,
        out: &mut Findings<'_>,
    ) {
        if !state.env_known {
            return;
        }
        for name in unmatched {
            if BUILTIN_VARS.contains(&name.as_str())
                || state.scope.args().iter().any(|(n, _)| n == name)
            {
                continue;
            }
            let mut message = format!("Usage of undefined variable '${name}'");
            let keys = state.scope.env().iter().map(|(k, _)| k.as_str());
            if let Some(close) = suggest(name, keys) {
                message.push_str(&format!(" (did you mean ${close}?)"));
            }
            out.at(comments, &UNDEFINED_VAR, message, location);
        }
    }

    /// CopyIgnoredFile for local sources the `.dockerignore` excludes.
    fn ignored(
        &self,
        verb: &str,
        sources: &[String],
        comments: &[String],
        location: Location,
        out: &mut Findings<'_>,
    ) {
        let Some(matcher) = self.input.ignore else {
            return;
        };
        if matcher.exclusions() {
            return;
        }
        for source in sources {
            if is_remote(source) {
                continue;
            }
            let cleaned = crate::ignore::clean(source);
            if ignores(matcher, &cleaned) {
                out.at(
                    comments,
                    &COPY_IGNORED_FILE,
                    format!(
                        "Attempting to {verb} file {} that is excluded by .dockerignore",
                        go_quote(&cleaned)
                    ),
                    location,
                );
            }
        }
    }
}

/// Whether `path` (cleaned, as written) is excluded: the context root only by a pattern that
/// excludes everything (`*`, `**`, `**/*`), anything else when it or a parent matches.
fn ignores(matcher: &PatternMatcher, path: &str) -> bool {
    let relative = path.trim_start_matches('/');
    if relative.is_empty() || relative == "." {
        return matcher
            .patterns()
            .iter()
            .any(|p| !p.is_exclusion() && matches!(p.as_str(), "*" | "**" | "**/*"));
    }
    matcher.matches_or_parent_matches(relative).unwrap_or(false)
}

/// URLs and git sources, which are not read from the context.
fn is_remote(source: &str) -> bool {
    source.contains("://") || source.starts_with("git@")
}

/// MultipleInstructionsDisallowed: a second CMD, ENTRYPOINT or HEALTHCHECK in a stage reports
/// the earlier one, which it overrides.
fn repeated(
    kind: &'static str,
    keyword: &str,
    location: Location,
    last: &mut BTreeMap<&'static str, Location>,
    comments: &[String],
    out: &mut Findings<'_>,
) {
    if let Some(previous) = last.insert(kind, location) {
        out.at(
            comments,
            &MULTIPLE_INSTRUCTIONS_DISALLOWED,
            format!(
                "Multiple {keyword} instructions should not be used in the same stage because only the last one will be used"
            ),
            previous,
        );
    }
}

/// SecretsUsedInArgOrEnv: a `_`-separated word of the name is a secret word and none is an
/// allow word (case-insensitively).
fn secrets(
    instruction: &str,
    name: &str,
    comments: &[String],
    location: Location,
    out: &mut Findings<'_>,
) {
    let lower = name.to_lowercase();
    let words: Vec<&str> = lower.split('_').collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    if has(&SECRET_WORDS) && !has(&ALLOW_WORDS) {
        out.at(
            comments,
            &SECRETS_USED_IN_ARG_OR_ENV,
            format!(
                "Do not use ARG or ENV instructions for sensitive data ({instruction} {})",
                go_quote(name)
            ),
            location,
        );
    }
}
