//! The build checks against BuildKit's own test cases (`buildkit-lint/vectors.json` in the
//! conformance corpus, read at test time) and its rule table (`rules.json`), plus one table of
//! cases per rule for what the vectors do not cover.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::dockerfile::parse;
use crate::ignore::parse_ignore_file;
use crate::plan::{PlanOptions, Platform};
use crate::testutil::{conformance_dir, read};

/// Vectors, or parts of them, that a pure check cannot decide, with the reason.
const SKIPPED: &[(&str, &str)] = &[(
    "testBaseImagePlatformMismatch/0",
    "needs an image pushed for another platform and pulled from a registry; the rule runs when \
     `kiln build` resolves a base (check::base_image_platform, tested below)",
)];

/// Vectors whose expected *build* error only a real build produces (a COPY of a file the
/// `.dockerignore` keeps out of the context): their warnings are checked, the error is not.
const BUILD_ERROR_AT_RUN_TIME: &[&str] = &[
    "testCopyIgnoredFiles/0",
    "testCopyIgnoredFiles/1",
    "testCopyIgnoredFiles/2",
];

/// Vectors whose error kiln words differently, with the reason.
const ERROR_TEXT_DIFFERS: &[(&str, &str)] = &[(
    "testUndeclaredArg/7",
    "kiln's platform parser words its error its own way (containerd's text names the regexp)",
)];

/// What upstream knows of the base images the vectors use: their config's environment.
fn base_facts(name: &str) -> Option<BaseFacts> {
    matches!(
        name,
        "alpine" | "busybox" | "busybox:latest" | "busybox:stable"
    )
    .then(|| BaseFacts {
        env: vec![("PATH".to_owned(), crate::exec::DEFAULT_PATH.to_owned())],
        has_shell: false,
    })
}

struct Outcome {
    diagnostics: Vec<Diagnostic>,
    /// A Dockerfile error or a lint violation, as the build or the check would fail, with its
    /// line (0 when it has none).
    error: Option<(String, usize)>,
}

/// Whether kiln's error is upstream's: the same text, or for a parse error, BuildKit's
/// `dockerfile parse error on line N: X` as kiln's `X` located at line N (kiln puts the line in
/// the location, which the CLI prints as `Dockerfile:N:col:`).
fn same_error((message, line): &(String, usize), want: &str, exact: bool) -> bool {
    if let Some(rest) = want.strip_prefix("dockerfile parse error on line ")
        && let Some((n, text)) = rest.split_once(": ")
    {
        return n.parse() == Ok(*line) && message == text;
    }
    if exact {
        message == want
    } else {
        message.contains(want)
    }
}

/// Parses, plans and checks a Dockerfile as `kiln build` (Target) or `--check` (AllStages) does.
fn run(
    dockerfile: &str,
    dockerignore: Option<&str>,
    build_args: &BTreeMap<String, String>,
    coverage: Coverage,
) -> Outcome {
    let file = parse(dockerfile).expect("the vectors parse");
    let platform = "linux/amd64".parse::<Platform>().unwrap();
    let options = PlanOptions {
        build_args: build_args.clone(),
        target: None,
        platform: platform.clone(),
        ..PlanOptions::default()
    };
    let plan = Plan::new(&file, options);
    let matcher = dockerignore.map(|text| PatternMatcher::new(&parse_ignore_file(text)).unwrap());
    let input = CheckInput {
        build_args,
        coverage,
        platform: &platform,
        ignore: matcher.as_ref(),
        base: &base_facts,
        lower: coverage == Coverage::AllStages,
    };
    let report = check(&file, plan.as_ref().ok(), &input).expect("the configuration parses");
    let error = match &plan {
        Err(e) => Some((e.message.clone(), e.location.start_line)),
        Ok(_) => report.violation().map(|v| (v, 0)),
    };
    let (errors, diagnostics): (Vec<Diagnostic>, Vec<Diagnostic>) = report
        .diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    Outcome {
        diagnostics,
        error: errors
            .first()
            .map(|e| (e.message.clone(), e.line()))
            .or(error),
    }
}

fn expected(list: &Value, lines: bool) -> Vec<(usize, String, String)> {
    let mut out: Vec<(usize, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let line = if lines {
                w["line"].as_u64().unwrap() as usize
            } else {
                0
            };
            (
                line,
                w["detail"].as_str().unwrap().to_owned(),
                w["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn found(diagnostics: &[Diagnostic], lines: bool) -> Vec<(usize, String, String)> {
    let mut out: Vec<(usize, String, String)> = diagnostics
        .iter()
        .map(|d| {
            (
                if lines { d.line() } else { 0 },
                d.message.clone(),
                d.rule.map_or("", |r| r.name).to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn buildkit_vectors() {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let vectors: Vec<Value> =
        serde_json::from_slice(&read(&dir, "buildkit-lint/vectors.json")).unwrap();
    assert_eq!(
        vectors.len(),
        88,
        "the corpus changed: review the skip lists"
    );
    let mut checked = 0;
    let mut failures = Vec::new();
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        if SKIPPED.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let dockerfile = v["dockerfile"].as_str().unwrap();
        let dockerignore = v.get("dockerignore").and_then(Value::as_str);
        let build_args: BTreeMap<String, String> = v
            .get("build_args")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let text_differs = ERROR_TEXT_DIFFERS.iter().any(|(n, _)| *n == name);

        // Build mode: the default target's stages, lines asserted.
        let build = run(dockerfile, dockerignore, &build_args, Coverage::Target);
        let want = expected(&v["warnings"], true);
        let got = found(&build.diagnostics, true);
        if got != want {
            failures.push(format!("{name} (build): want {want:#?}\n got {got:#?}"));
        }
        let build_error = v["expect_build_error"].as_bool().unwrap();
        if BUILD_ERROR_AT_RUN_TIME.contains(&name) {
            // Listed because nothing static fails; an entry that starts failing must leave.
            if build.error.is_some() || !build_error {
                failures.push(format!(
                    "{name}: listed as a run-time error, got {:?}",
                    build.error
                ));
            }
        } else {
            match (
                &build.error,
                build_error,
                v.get("build_err").and_then(Value::as_str),
            ) {
                (None, false, _) => {}
                (Some(got), true, Some(want)) if same_error(got, want, false) || text_differs => {}
                (got, _, want) => failures.push(format!(
                    "{name} (build): error {got:?}, want {want:?} (expected: {build_error})"
                )),
            }
        }

        // Lint mode: every stage, lines not asserted (upstream does not).
        let lint = run(dockerfile, dockerignore, &build_args, Coverage::AllStages);
        let list = v.get("unmarshal_warnings").unwrap_or(&v["warnings"]);
        let want = expected(list, false);
        let got = found(&lint.diagnostics, false);
        if got != want {
            failures.push(format!("{name} (lint): want {want:#?}\n got {got:#?}"));
        }
        if text_differs {
            // The list stays honest: an entry whose text came to agree must leave it.
            let want = v["lint_err"].as_str().unwrap();
            match &build.error {
                Some(got) if !same_error(got, want, true) => {}
                got => failures.push(format!("{name}: listed as differing, got {got:?}")),
            }
        }
        let lint_error = v["expect_lint_error"].as_bool().unwrap();
        match (
            &lint.error,
            lint_error,
            v.get("lint_err").and_then(Value::as_str),
        ) {
            (None, false, _) => {}
            (Some(got), true, Some(want)) if same_error(got, want, true) || text_differs => {}
            (got, _, want) => failures.push(format!(
                "{name} (lint): error {got:?}, want {want:?} (expected: {lint_error})"
            )),
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, vectors.len() - SKIPPED.len());
}

#[test]
fn the_rule_table_is_buildkits() {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let rules: Vec<Value> =
        serde_json::from_slice(&read(&dir, "buildkit-lint/rules.json")).unwrap();
    assert_eq!(rules.len(), RULES.len());
    for (upstream, ours) in rules.iter().zip(RULES) {
        assert_eq!(upstream["name"], ours.name);
        assert_eq!(upstream["description"], ours.description, "{}", ours.name);
        assert_eq!(upstream["url"], ours.url.unwrap_or(""), "{}", ours.name);
        assert_eq!(upstream["experimental"], ours.experimental, "{}", ours.name);
    }
}

/// Lint mode with no build args and no ignore file: `(line, rule, message)` of each warning.
fn lint(dockerfile: &str) -> Vec<(usize, &'static str, String)> {
    lint_with(dockerfile, &BTreeMap::new(), None)
}

fn lint_with(
    dockerfile: &str,
    build_args: &BTreeMap<String, String>,
    ignore: Option<&str>,
) -> Vec<(usize, &'static str, String)> {
    run(dockerfile, ignore, build_args, Coverage::AllStages)
        .diagnostics
        .into_iter()
        .map(|d| (d.line(), d.rule.map_or("", |r| r.name), d.message))
        .collect()
}

fn rules_of(dockerfile: &str) -> Vec<(usize, &'static str)> {
    lint(dockerfile)
        .into_iter()
        .map(|(l, r, _)| (l, r))
        .collect()
}

#[test]
fn stage_names_and_keywords() {
    let cases: &[(&str, &[(usize, &str)])] = &[
        ("FROM scratch AS Build\n", &[(1, "StageNameCasing")]),
        ("FROM scratch as build\n", &[(1, "FromAsCasing")]),
        ("from scratch AS build\n", &[(1, "FromAsCasing")]),
        // A mixed-case FROM is only a casing inconsistency.
        (
            "From scratch as build\n",
            &[(1, "ConsistentInstructionCasing")],
        ),
        ("FROM scratch AS scratch\n", &[(1, "ReservedStageName")]),
        (
            "FROM scratch AS a\nFROM scratch AS A\n",
            &[(2, "DuplicateStageName"), (2, "StageNameCasing")],
        ),
        // Global ARGs are not part of a stage's casing count.
        ("arg x\nFROM scratch\n", &[]),
        (
            "FROM scratch\nrun x\nrun y\n",
            &[(1, "ConsistentInstructionCasing")],
        ),
        (
            "FROM scratch\nMAINTAINER me\n",
            &[(2, "MaintainerDeprecated")],
        ),
    ];
    for (dockerfile, want) in cases {
        assert_eq!(&rules_of(dockerfile), want, "{dockerfile:?}");
    }
}

#[test]
fn from_lines() {
    let cases: &[(&str, &[(usize, &str)])] = &[
        ("FROM scratch$NOPE\n", &[(1, "UndefinedArgInFrom")]),
        ("ARG A\nFROM scratch$A\n", &[]),
        (
            "FROM --platform=$TARGETPLATFORM scratch\n",
            &[(1, "RedundantTargetPlatform")],
        ),
        ("FROM --platform=$BUILDPLATFORM scratch\n", &[]),
        (
            "FROM --platform=linux/arm64 scratch\n",
            &[(1, "FromPlatformFlagConstDisallowed")],
        ),
        ("FROM --platform=linux/arm64 scratch AS arm64-build\n", &[]),
        ("ARG TAG=1\nFROM busybox:$TAG\n", &[]),
    ];
    for (dockerfile, want) in cases {
        assert_eq!(&rules_of(dockerfile), want, "{dockerfile:?}");
    }
    // The default, not the build-arg, decides (without the build-arg the plan fails).
    let args = BTreeMap::from([("TAG".to_owned(), "1".to_owned())]);
    assert_eq!(
        lint_with("ARG TAG=\nFROM busybox:$TAG\n", &args, None),
        [(
            2,
            "InvalidDefaultArgInFrom",
            "Default value for ARG busybox:$TAG results in empty or invalid base image name"
                .to_owned()
        )]
    );
    assert_eq!(
        lint("ARG VERSION=1\nFROM busybox$VERSOIN\n")[0].2,
        "FROM argument 'VERSOIN' is not declared (did you mean VERSION?)"
    );
}

#[test]
fn dispatch_rules() {
    let cases: &[(&str, &[(usize, &str)])] = &[
        ("FROM scratch\nCOPY $X /\n", &[(2, "UndefinedVar")]),
        ("FROM scratch\nARG X\nCOPY $X /\n", &[]),
        ("FROM scratch\nENV X=1\nCOPY $X /\n", &[]),
        // An ARG default is expanded too, and so is EXPOSE.
        ("FROM scratch\nARG X=$Y\n", &[(2, "UndefinedVar")]),
        ("FROM scratch\nEXPOSE $PORT\n", &[(2, "UndefinedVar")]),
        // Shell-form RUN is the shell's business.
        ("FROM scratch\nRUN echo $X\n", &[]),
        // An unknown base image may define anything.
        ("FROM example.com/unknown\nCOPY $X /\n", &[]),
        ("FROM scratch\nENV a b\n", &[(2, "LegacyKeyValueFormat")]),
        ("FROM scratch\nLABEL a b\n", &[(2, "LegacyKeyValueFormat")]),
        (
            "FROM scratch\nWORKDIR a\nWORKDIR b\n",
            &[(2, "WorkdirRelativePath")],
        ),
        ("FROM scratch\nWORKDIR /a\nWORKDIR b\n", &[]),
        ("FROM scratch\nCMD a\n", &[(2, "JSONArgsRecommended")]),
        ("FROM scratch\nCMD [\"a\"]\n", &[]),
        (
            "FROM scratch\nCMD [\"a\"]\nRUN x\nCMD [\"b\"]\n",
            &[(2, "MultipleInstructionsDisallowed")],
        ),
        (
            "FROM scratch\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n",
            &[(2, "MultipleInstructionsDisallowed")],
        ),
        (
            "FROM scratch\nARG GITHUB_TOKEN\n",
            &[(2, "SecretsUsedInArgOrEnv")],
        ),
        ("FROM scratch\nARG TOKEN_FILE\n", &[]),
        ("FROM scratch\nARG TOKENS\n", &[]),
        // Global ARGs are not checked for secrets.
        ("ARG PASSWORD\nFROM scratch\n", &[]),
        ("FROM scratch\nEXPOSE 80/UDP\n", &[(2, "ExposeProtoCasing")]),
        (
            "FROM scratch\nEXPOSE 8080:80\n",
            &[(2, "ExposeInvalidFormat")],
        ),
        ("FROM scratch\nEXPOSE 80 443/tcp\n", &[]),
    ];
    for (dockerfile, want) in cases {
        assert_eq!(&rules_of(dockerfile), want, "{dockerfile:?}");
    }
    assert_eq!(
        lint("FROM scratch\nENV HOME_DIR=/h\nCOPY $HOME_DIRS /\n")[0].2,
        "Usage of undefined variable '$HOME_DIRS' (did you mean $HOME_DIR?)"
    );
}

#[test]
fn copy_ignored_file() {
    let none = BTreeMap::new();
    let lint = |dockerfile: &str, ignore: Option<&str>| {
        lint_with(dockerfile, &none, ignore)
            .into_iter()
            .map(|(l, _, m)| (l, m))
            .collect::<Vec<_>>()
    };
    let dockerfile = "FROM scratch\nCOPY a/b.txt ./c.txt /\nADD https://example.com/a /\n\
                      COPY --from=x a /\nADD --chmod=644 ./a /\n";
    assert_eq!(
        lint(dockerfile, Some("a\n")),
        [
            (
                2,
                "Attempting to Copy file \"a/b.txt\" that is excluded by .dockerignore".to_owned()
            ),
            (
                5,
                "Attempting to Add file \"a\" that is excluded by .dockerignore".to_owned()
            ),
        ]
    );
    assert_eq!(lint(dockerfile, None), []);
    assert_eq!(lint(dockerfile, Some("a\n!a/keep\n")), []);
    assert_eq!(lint("FROM scratch\nCOPY . /\n", Some("**\n")).len(), 1);
    assert_eq!(lint("FROM scratch\nCOPY . /\n", Some("*.md\n")), []);
}

#[test]
fn per_instruction_comments_and_the_build_arg() {
    // The comment covers the next instruction only.
    assert_eq!(
        rules_of("FROM scratch\n# check=skip=JSONArgsRecommended\nCMD a\nENTRYPOINT b\n"),
        [(4, "JSONArgsRecommended")]
    );
    // A bare `#` line clears the comments before it.
    assert_eq!(
        rules_of("FROM scratch\n# check=skip=JSONArgsRecommended\n#\nCMD a\n"),
        [(4, "JSONArgsRecommended")]
    );
    // The build-arg replaces the directive.
    let args = BTreeMap::from([(CHECK_BUILD_ARG.to_owned(), "skip=all".to_owned())]);
    assert_eq!(
        lint_with("# check=error=true\nFROM scratch\nCMD a\n", &args, None),
        []
    );
    let file = parse("# check=skip=all;error=maybe\nFROM scratch\n").unwrap();
    let input = CheckInput {
        build_args: &BTreeMap::new(),
        coverage: Coverage::Target,
        platform: &Platform::host(),
        ignore: None,
        base: &|_| None,
        lower: false,
    };
    assert_eq!(
        check(&file, None, &input).unwrap_err().message,
        "failed to parse check options: failed to parse check option \"error=maybe\": strconv.ParseBool: parsing \"maybe\": invalid syntax"
    );
}

#[test]
fn violations_name_the_rules_once() {
    let out = run(
        "# check=error=true\nFROM scratch as a\nCMD x\nCMD y\n",
        None,
        &BTreeMap::new(),
        Coverage::Target,
    );
    assert_eq!(
        out.error.unwrap().0,
        "lint violation found for rules: FromAsCasing, JSONArgsRecommended, MultipleInstructionsDisallowed"
    );
}

#[test]
fn static_errors_come_from_lowering() {
    let cases = [
        ("FROM scratch\nEXPOSE notaport\n", 2),
        ("FROM scratch\nSTOPSIGNAL SIGNOPE\n", 2),
        ("FROM scratch\nCOPY --chmod=999 a /\n", 2),
    ];
    for (dockerfile, line) in cases {
        let report = {
            let file = parse(dockerfile).unwrap();
            let plan = Plan::new(&file, PlanOptions::default()).unwrap();
            let input = CheckInput {
                build_args: &BTreeMap::new(),
                coverage: Coverage::AllStages,
                platform: &Platform::host(),
                ignore: None,
                base: &|_| None,
                lower: true,
            };
            check(&file, Some(&plan), &input).unwrap()
        };
        let errors: Vec<&Diagnostic> = report
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(errors.len(), 1, "{dockerfile:?}: {report:?}");
        assert_eq!(errors[0].line(), line);
        assert!(errors[0].rule.is_none());
    }
}

#[test]
fn every_static_error_is_reported() {
    let file =
        parse("FROM scratch\nEXPOSE notaport\nENV A=1\nSTOPSIGNAL NOPE\nCOPY $A /\n").unwrap();
    let plan = Plan::new(&file, PlanOptions::default()).unwrap();
    let input = CheckInput {
        build_args: &BTreeMap::new(),
        coverage: Coverage::AllStages,
        platform: &Platform::host(),
        ignore: None,
        base: &|_| None,
        lower: true,
    };
    let report = check(&file, Some(&plan), &input).unwrap();
    let errors: Vec<usize> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(Diagnostic::line)
        .collect();
    assert_eq!(errors, [2, 4]);
    // A build leaves them to the steps that meet them.
    let input = CheckInput {
        lower: false,
        ..input
    };
    let report = check(&file, Some(&plan), &input).unwrap();
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| d.severity == Severity::Warning)
    );
}

#[test]
fn base_image_platform() {
    let config = CheckConfig::default();
    let d = super::base_image_platform(
        &config,
        "example.com/x",
        "linux/arm64",
        "linux/amd64",
        Location::line(2),
    )
    .unwrap();
    assert_eq!(
        d.message,
        "Base image example.com/x was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for current build"
    );
    assert_eq!(d.url(), None);
    assert!(
        super::base_image_platform(
            &config,
            "x",
            "linux/amd64",
            "linux/amd64",
            Location::line(2)
        )
        .is_none()
    );
    let skip = CheckConfig::parse("skip=InvalidBaseImagePlatform").unwrap();
    assert!(
        super::base_image_platform(&skip, "x", "linux/arm64", "linux/amd64", Location::line(2))
            .is_none()
    );
}
