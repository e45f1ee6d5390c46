//! Build checks: BuildKit's Dockerfile linter rules, with their names, messages and
//! documentation URLs, and the one diagnostic type every warning of kiln is told with.
//!
//! [`check`] is pure: the parsed Dockerfile, its plan when it plans, the build args, the
//! `.dockerignore` matcher and what is known of base images go in; a [`Report`] comes out, its
//! [`Diagnostic`]s sorted by line. Which rules run is decided by [`CheckConfig`] (the
//! `# check=` directive, or the `BUILDKIT_DOCKERFILE_CHECK` build-arg that replaces it, plus the
//! per-instruction `# check=` comments). The rules live in [`syntax`] (those BuildKit runs while
//! parsing, over every stage) and [`stages`] (FROM lines, and those it runs while dispatching the
//! stages a build needs, or all stages for `--check`). The table [`RULES`] is the one place a
//! rule's name, description and URL are written.
//!
//! Parser and planner warnings are [`Diagnostic`]s too (without a rule), so the CLI renders
//! every warning in one place.

pub mod config;
mod stages;
mod syntax;

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::{Dockerfile, Location};
use crate::ignore::PatternMatcher;
use crate::plan::{Plan, PlanOptions, Platform};

pub use config::{CheckConfig, ConfigError};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Accepted, but worth changing.
    Warning,
    /// The build cannot go on.
    Error,
}

impl Severity {
    /// `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A build check rule, as BuildKit's `linter/ruleset.go` defines it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Its name (`FromAsCasing`), which `# check=skip=` uses.
    pub name: &'static str,
    /// What it is about.
    pub description: &'static str,
    /// Its documentation page (`None` for InvalidBaseImagePlatform, which has none).
    pub url: Option<&'static str>,
    /// Runs only when `# check=experimental=` names it.
    pub experimental: bool,
}

macro_rules! rules {
    ($($id:ident = $name:literal, $url:expr, $experimental:literal, $description:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $description)]
            pub const $id: Rule = Rule {
                name: $name,
                description: $description,
                url: $url,
                experimental: $experimental,
            };
        )*
        /// Every rule, in BuildKit's order.
        pub const RULES: &[&Rule] = &[$(&$id),*];
    };
}

/// The documentation URL of a rule: `https://docs.docker.com/go/dockerfile/rule/<kebab-name>/`.
macro_rules! doc {
    ($kebab:literal) => {
        Some(concat!(
            "https://docs.docker.com/go/dockerfile/rule/",
            $kebab,
            "/"
        ))
    };
}

rules! {
    STAGE_NAME_CASING = "StageNameCasing", doc!("stage-name-casing"), false,
        "Stage names should be lowercase";
    FROM_AS_CASING = "FromAsCasing", doc!("from-as-casing"), false,
        "The 'as' keyword should match the case of the 'from' keyword";
    NO_EMPTY_CONTINUATION = "NoEmptyContinuation", doc!("no-empty-continuation"), false,
        "Empty continuation lines will become errors in a future release";
    CONSISTENT_INSTRUCTION_CASING = "ConsistentInstructionCasing",
        doc!("consistent-instruction-casing"), false,
        "All commands within the Dockerfile should use the same casing (either upper or lower)";
    DUPLICATE_STAGE_NAME = "DuplicateStageName", doc!("duplicate-stage-name"), false,
        "Stage names should be unique";
    RESERVED_STAGE_NAME = "ReservedStageName", doc!("reserved-stage-name"), false,
        "Reserved words should not be used as stage names";
    JSON_ARGS_RECOMMENDED = "JSONArgsRecommended", doc!("json-args-recommended"), false,
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals";
    MAINTAINER_DEPRECATED = "MaintainerDeprecated", doc!("maintainer-deprecated"), false,
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author";
    UNDEFINED_ARG_IN_FROM = "UndefinedArgInFrom", doc!("undefined-arg-in-from"), false,
        "FROM command must use declared ARGs";
    WORKDIR_RELATIVE_PATH = "WorkdirRelativePath", doc!("workdir-relative-path"), false,
        "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes";
    UNDEFINED_VAR = "UndefinedVar", doc!("undefined-var"), false,
        "Variables should be defined before their use";
    MULTIPLE_INSTRUCTIONS_DISALLOWED = "MultipleInstructionsDisallowed",
        doc!("multiple-instructions-disallowed"), false,
        "Multiple instructions of the same type should not be used in the same stage";
    LEGACY_KEY_VALUE_FORMAT = "LegacyKeyValueFormat", doc!("legacy-key-value-format"), false,
        "Legacy key/value format with whitespace separator should not be used";
    INVALID_BASE_IMAGE_PLATFORM = "InvalidBaseImagePlatform", None, false,
        "Base image platform does not match expected target platform";
    REDUNDANT_TARGET_PLATFORM = "RedundantTargetPlatform", doc!("redundant-target-platform"), false,
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior";
    SECRETS_USED_IN_ARG_OR_ENV = "SecretsUsedInArgOrEnv", doc!("secrets-used-in-arg-or-env"), false,
        "Sensitive data should not be used in the ARG or ENV commands";
    INVALID_DEFAULT_ARG_IN_FROM = "InvalidDefaultArgInFrom", doc!("invalid-default-arg-in-from"), false,
        "Default value for global ARG results in an empty or invalid base image name";
    FROM_PLATFORM_FLAG_CONST_DISALLOWED = "FromPlatformFlagConstDisallowed",
        doc!("from-platform-flag-const-disallowed"), false,
        "FROM --platform flag should not use a constant value";
    COPY_IGNORED_FILE = "CopyIgnoredFile", doc!("copy-ignored-file"), false,
        "Attempting to Copy file that is excluded by .dockerignore";
    INVALID_DEFINITION_DESCRIPTION = "InvalidDefinitionDescription",
        doc!("invalid-definition-description"), true,
        "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.";
    EXPOSE_PROTO_CASING = "ExposeProtoCasing", doc!("expose-proto-casing"), false,
        "Protocol in EXPOSE instruction should be lowercase";
    EXPOSE_INVALID_FORMAT = "ExposeInvalidFormat", doc!("expose-invalid-format"), false,
        "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release";
}

/// One thing to tell the user about a Dockerfile: a check rule's finding, a parser or planner
/// warning, or an error found without building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The check rule, when it is one.
    pub rule: Option<&'static Rule>,
    /// Warning or error.
    pub severity: Severity,
    /// What is wrong (BuildKit's detail text for a rule).
    pub message: String,
    /// Where, when it is in the Dockerfile.
    pub location: Option<Location>,
}

impl Diagnostic {
    /// A finding of `rule` at `location`.
    pub fn rule(rule: &'static Rule, message: String, location: Location) -> Self {
        Diagnostic {
            rule: Some(rule),
            severity: Severity::Warning,
            message,
            location: Some(location),
        }
    }

    /// A warning that is not a check rule.
    pub fn warning(message: impl Into<String>, location: Option<Location>) -> Self {
        Diagnostic {
            rule: None,
            severity: Severity::Warning,
            message: message.into(),
            location,
        }
    }

    /// An error found without building.
    pub fn error(message: impl Into<String>, location: Option<Location>) -> Self {
        Diagnostic {
            rule: None,
            severity: Severity::Error,
            message: message.into(),
            location,
        }
    }

    /// The rule's documentation page, if it has one.
    pub fn url(&self) -> Option<&'static str> {
        self.rule.and_then(|r| r.url)
    }

    /// The first line, for sorting (0 when the diagnostic is not in the file).
    pub fn line(&self) -> usize {
        self.location.map_or(0, |l| l.start_line)
    }

    /// BuildKit's short text of a rule's warning: `Rule: detail (line N)`.
    pub fn short(&self) -> String {
        let mut out = match self.rule {
            Some(rule) => format!("{}: {}", rule.name, self.message),
            None => self.message.clone(),
        };
        if let Some(location) = self.location {
            out.push_str(&format!(" (line {})", location.start_line));
        }
        out
    }
}

/// Sorts diagnostics as they are shown: those without a line first, then by line, rule and
/// message.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (a.line(), a.rule.map(|r| r.name), &a.message).cmp(&(
            b.line(),
            b.rule.map(|r| r.name),
            &b.message,
        ))
    });
}

/// Which stages the dispatch-time rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// The stages the plan's target needs (a build).
    Target,
    /// Every stage (`--check` without `--target`, BuildKit's lint request).
    AllStages,
}

/// What is known of a base image: its environment and whether its config sets a SHELL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseFacts {
    /// The config's `Env`, as `KEY=VALUE` split.
    pub env: Vec<(String, String)>,
    /// Whether the config has a `Shell`.
    pub has_shell: bool,
}

/// What a check needs besides the Dockerfile.
#[derive(Clone, Copy)]
pub struct CheckInput<'a> {
    /// `--build-arg` values (`BUILDKIT_DOCKERFILE_CHECK` among them configures the checks).
    pub build_args: &'a BTreeMap<String, String>,
    /// Which stages the dispatch-time rules look at.
    pub coverage: Coverage,
    /// The platform built for (the predefined platform ARGs).
    pub platform: &'a Platform,
    /// The `.dockerignore` matcher, `None` when there is no ignore file.
    pub ignore: Option<&'a PatternMatcher>,
    /// What is known of a base image by its FROM text (after ARG expansion); `None` when it is
    /// unknown, and then UndefinedVar is not checked in stages built on it, since any name may
    /// come from its environment.
    pub base: &'a dyn Fn(&str) -> Option<BaseFacts>,
    /// Also lower every covered stage and report what lowering refuses (a bad EXPOSE,
    /// STOPSIGNAL or `--chmod` …) as errors: `--check` does, a build finds them as it runs.
    pub lower: bool,
}

impl std::fmt::Debug for CheckInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckInput")
            .field("build_args", &self.build_args)
            .field("coverage", &self.coverage)
            .field("ignore", &self.ignore.is_some())
            .field("lower", &self.lower)
            .finish_non_exhaustive()
    }
}

/// The build-arg that configures checks, replacing the `# check=` directive.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The findings, sorted (see [`sort`]).
    pub diagnostics: Vec<Diagnostic>,
    /// The file-level configuration in force.
    pub config: CheckConfig,
}

impl Report {
    /// With `error=true`, the error a reported rule makes: BuildKit's
    /// `lint violation found for rules: A, B` (names sorted here, so the text is stable).
    pub fn violation(&self) -> Option<String> {
        if !self.config.error {
            return None;
        }
        let names: BTreeSet<&str> = self
            .diagnostics
            .iter()
            .filter_map(|d| d.rule.map(|r| r.name))
            .collect();
        if names.is_empty() {
            return None;
        }
        let names: Vec<&str> = names.into_iter().collect();
        Some(format!(
            "lint violation found for rules: {}",
            names.join(", ")
        ))
    }
}

/// The check configuration in force for `file`: the `BUILDKIT_DOCKERFILE_CHECK` build-arg when
/// it is given (even empty), else the `# check=` directive, else the defaults.
pub fn file_config(
    file: &Dockerfile,
    build_args: &BTreeMap<String, String>,
) -> Result<CheckConfig, ConfigError> {
    if let Some(value) = build_args.get(CHECK_BUILD_ARG) {
        return CheckConfig::parse(value).map_err(|e| e.in_build_arg());
    }
    match file.directives.iter().find(|d| d.name == "check") {
        Some(directive) => {
            CheckConfig::parse(config::first_word(&directive.value)).map_err(|e| e.in_directive())
        }
        None => Ok(CheckConfig::default()),
    }
}

/// Runs the build checks on `file` (see the module doc). `plan` is the file's plan when it
/// plans: without it only the rules BuildKit applies while parsing run. A configuration that does
/// not parse is an error.
pub fn check(
    file: &Dockerfile,
    plan: Option<&Plan>,
    input: &CheckInput<'_>,
) -> Result<Report, ConfigError> {
    let config = file_config(file, input.build_args)?;
    let mut out = Findings {
        config: &config,
        found: Vec::new(),
    };
    if syntax::check(file, &mut out) {
        // FROM lines are checked even when the file does not plan (the plan's error says
        // what is wrong; these say why, e.g. a misspelt ARG).
        let meta_args = match plan {
            Some(plan) => Some(plan.meta_args.clone()),
            None => {
                let options = PlanOptions {
                    build_args: input.build_args.clone(),
                    target: None,
                    platform: input.platform.clone(),
                    ..PlanOptions::default()
                };
                crate::plan::global_args(file, &options).ok()
            }
        };
        if let Some(meta_args) = meta_args {
            stages::from_lines(file, &meta_args, input.platform, &mut out);
        }
        if let Some(plan) = plan {
            stages::dispatch(file, plan, input, &mut out);
        }
    }
    let mut diagnostics = out.found;
    sort(&mut diagnostics);
    Ok(Report {
        diagnostics,
        config,
    })
}

/// The diagnostics found so far, and the configuration that filters them.
struct Findings<'a> {
    config: &'a CheckConfig,
    found: Vec<Diagnostic>,
}

impl Findings<'_> {
    /// Reports `rule` unless the file-level configuration switches it off.
    fn file_level(&mut self, rule: &'static Rule, message: String, location: Location) {
        if self.config.enabled(rule) {
            self.found.push(Diagnostic::rule(rule, message, location));
        }
    }

    /// Reports `rule` unless the configuration, with the instruction's own `# check=` comment
    /// merged in, switches it off.
    fn at(
        &mut self,
        comments: &[String],
        rule: &'static Rule,
        message: String,
        location: Location,
    ) {
        if self.config.merged_with_comments(comments).enabled(rule) {
            self.found.push(Diagnostic::rule(rule, message, location));
        }
    }
}

/// Reports InvalidBaseImagePlatform for a base image whose config says `actual` where the build
/// wants `expected` (the check runs when the base is resolved during a build).
pub fn base_image_platform(
    config: &CheckConfig,
    image: &str,
    actual: &str,
    expected: &str,
    location: Location,
) -> Option<Diagnostic> {
    (actual != expected && config.enabled(&INVALID_BASE_IMAGE_PLATFORM)).then(|| {
        Diagnostic::rule(
            &INVALID_BASE_IMAGE_PLATFORM,
            format!(
                "Base image {image} was pulled with platform {}, expected {} for current build",
                crate::dockerfile::parser::go_quote(actual),
                crate::dockerfile::parser::go_quote(expected)
            ),
            location,
        )
    })
}

#[cfg(test)]
mod tests;
