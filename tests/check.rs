//! `kiln build --check` / `--call=…`: the build checks with their exit codes and output in plain
//! and json progress, the outline and the targets, the warnings after a build, kiln's own
//! `--call=plan` (the examples plan), and errors that name the Dockerfile line with a caret.

use std::io::Write as _;
use std::process::Stdio;

use crate::{kiln, repo, text};

fn check_dir(dockerfile: &str, extra: &[&str]) -> (i32, String, String) {
    call_dir(dockerfile, &["--check"], extra)
}

/// Runs `kiln build <call> <extra> CTX` on a context holding `dockerfile` and a file `a`:
/// (exit code, stdout, stderr with the context's path as `CTX`).
fn call_dir(dockerfile: &str, call: &[&str], extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.path().join("a"), "a\n").unwrap();
    let out = kiln(dir.path())
        .arg("build")
        .args(call)
        .args(extra)
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let ctx = dir.path().display().to_string();
    (
        out.status.code().unwrap_or(-1),
        stdout.replace(&ctx, "CTX"),
        stderr.replace(&ctx, "CTX"),
    )
}

#[test]
fn every_example_plans() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("examples/seed")).unwrap() {
        let dir = entry.unwrap().path();
        let out = kiln(&dir)
            .args(["build", "--call=plan"])
            .arg(&dir)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{}: {stderr}", dir.display());
        let check = kiln(&dir)
            .arg("build")
            .arg("--check")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}: {}",
            dir.display(),
            text(&check).1
        );
        // Neither creates a store (KILN_ROOT is the example's own directory here).
        assert!(!dir.join("oci").exists(), "{}", dir.display());
        assert!(
            stdout.contains("[1/1] stage \"stage-0\" FROM docker.io/library/"),
            "{stdout}"
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn plan_shows_stages_expansions_and_skips() {
    let dockerfile = "ARG V=1.36\nFROM busybox:$V AS build\nARG V\nWORKDIR /src/$V\n\
                      FROM build AS test\nRUN make test\nFROM scratch\nCOPY --from=build /src /src\n";
    let plan = |extra: &[&str]| call_dir(dockerfile, &["--call=plan"], extra);
    let (code, stdout, _) = plan(&[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("[1/2] stage \"build\" FROM docker.io/library/busybox:1.36"),
        "{stdout}"
    );
    assert!(stdout.contains("= WORKDIR \"/src/1.36\""), "{stdout}");
    assert!(
        stdout.contains("skipped: stage \"test\" (the target does not need it)"),
        "{stdout}"
    );
    let (code, stdout, _) = plan(&["--target", "test", "--build-arg", "V=1.37"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("FROM docker.io/library/busybox:1.37"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[2/2] stage \"test\" FROM stage \"build\""),
        "{stdout}"
    );
}

#[test]
fn errors_read_like_a_compiler() {
    let (code, _, stderr) = check_dir("FROM busybox\n\nRUNN echo hi\n", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "error: CTX/Dockerfile:3:1: unknown instruction: RUNN (did you mean RUN?)\n  |\n3 | RUNN echo hi\n  | ^^^^\n"
    );
    let (code, _, stderr) = check_dir("FROM busybox\nCOPY --chwon=1 a b\n", &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(
            "error: CTX/Dockerfile:2:6: unknown flag: --chwon (did you mean --chown?)"
        ),
        "{stderr}"
    );
    let cases = [
        ("", "error: CTX/Dockerfile:1: file with no instructions"),
        (
            "FROM busybox\nRUN <<EOF\necho\n",
            "error: CTX/Dockerfile:2:7: unterminated heredoc \"EOF\"",
        ),
        (
            "ENV PATH\n",
            "error: CTX/Dockerfile:1:1: ENV must have two arguments",
        ),
        (
            "FROM a AS x\nFROM x AS a\n",
            "error: CTX/Dockerfile:2:1: circular dependency detected on stage: a",
        ),
        (
            "FROM Busybox\n",
            "error: CTX/Dockerfile:1:6: invalid reference format \"Busybox\": repository name must be lowercase\n  |\n1 | FROM Busybox\n  |      ^^^^^^^\n",
        ),
    ];
    for (dockerfile, want) in cases {
        let (code, _, stderr) = check_dir(dockerfile, &[]);
        assert_eq!(code, 1, "{dockerfile:?}");
        assert!(stderr.starts_with(want), "{dockerfile:?}:\n{stderr}");
    }
}

#[test]
fn dockerfile_from_stdin_and_build_args_from_env() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = kiln(dir.path())
        .args(["build", "--call=plan", "-f", "-", "--build-arg", "TAG"])
        .arg(dir.path())
        .env("TAG", "from-env")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"ARG TAG\nFROM busybox:$TAG\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("FROM docker.io/library/busybox:from-env"),
        "{stdout}"
    );
}

#[test]
fn warnings_and_refusals() {
    let (code, stdout, _) = check_dir(
        "FROM busybox\nRUN a \\\n\n b\n",
        &["--build-arg", "UNUSED=1"],
    );
    assert_eq!(code, 0);
    assert!(stdout.starts_with("Check complete, 2 warnings have been found!\n"));
    assert!(
        stdout.contains(
            "warning[NoEmptyContinuation]: CTX/Dockerfile:4:2: Empty continuation line\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: build-arg \"UNUSED\" was not consumed"),
        "{stdout}"
    );
    let (code, _, stderr) = check_dir("FROM busybox\n", &["--target", "nope"]);
    assert_eq!(
        (code, stderr.trim()),
        (1, "error: target stage \"nope\" could not be found")
    );
    // Without the base image and with --pull=never, the build says so at the FROM line (and no
    // test reaches a public registry).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\n").unwrap();
    let out = kiln(dir.path())
        .args(["build", "--pull=never"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(
        stderr.contains("Dockerfile:1:1: resolving docker.io/library/busybox:latest"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is not in the store and --pull=never"),
        "{stderr}"
    );
}

#[test]
fn invalid_dockerignore_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\nCOPY . /\n").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "a\n!\n").unwrap();
    let out = kiln(dir.path())
        .args(["build", "--check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(stderr.contains(".dockerignore: "), "{stderr}");
    assert!(stderr.contains('!'), "{stderr}");
}

#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    let dir = tempfile::tempdir().unwrap();
    let steps: String = (0..2000).map(|i| format!("RUN echo {i}\n")).collect();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM busybox\n{steps}"),
    )
    .unwrap();
    let mut child = kiln(dir.path())
        .args(["build", "--call=plan"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(out.stderr.is_empty(), "{}", text(&out).1);
    // Commands that print with println! exit the same way.
    let mut child = kiln(dir.path())
        .arg("images")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!((out.status.code(), text(&out).1), (Some(0), String::new()));
}

#[test]
fn check_reports_like_docker_and_exits_by_error_true() {
    // No findings.
    let (code, stdout, stderr) = check_dir("FROM scratch\nCOPY a /a\n", &[]);
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "Check complete, no warnings found.\n", "")
    );
    // Findings: docker's header, then each with its line, a caret and its page; exit 0.
    let dockerfile = "FROM scratch as base\nCMD run\n";
    let (code, stdout, _) = check_dir(dockerfile, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "Check complete, 2 warnings have been found!\n\n\
         warning[FromAsCasing]: CTX/Dockerfile:1:1: 'as' and 'FROM' keywords' casing do not match\n  |\n1 | FROM scratch as base\n  | ^^^^^^^^^^^^^^^^^^^^\n  = see https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n\n\
         warning[JSONArgsRecommended]: CTX/Dockerfile:2:1: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals\n  |\n2 | CMD run\n  | ^^^^^^^\n  = see https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n"
    );
    // --call=check is the same thing.
    assert_eq!(call_dir(dockerfile, &["--call=check"], &[]).1, stdout);
    // error=true: the same findings, then the violation, and a failure.
    let strict = format!("# check=error=true\n{dockerfile}");
    let (code, stdout, stderr) = check_dir(&strict, &[]);
    assert_eq!(code, 1);
    assert!(stdout.starts_with("Check complete, 2 warnings have been found!"));
    assert_eq!(
        stderr,
        "error: lint violation found for rules: FromAsCasing, JSONArgsRecommended\n"
    );
    // skip= in the directive, the per-instruction comment, and the build-arg that replaces the
    // directive.
    let (code, stdout, _) = check_dir(
        "# check=skip=FromAsCasing;error=true\nFROM scratch as base\n# check=skip=JSONArgsRecommended\nCMD run\n",
        &[],
    );
    assert_eq!(
        (code, stdout.as_str()),
        (0, "Check complete, no warnings found.\n")
    );
    let (code, stdout, _) = check_dir(
        &strict,
        &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all"],
    );
    assert_eq!(
        (code, stdout.as_str()),
        (0, "Check complete, no warnings found.\n")
    );
    // A configuration that does not parse is an error.
    let (code, _, stderr) = check_dir("# check=skip=all;error=maybe\nFROM scratch\n", &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(
            "error: failed to parse check options: failed to parse check option \"error=maybe\""
        ),
        "{stderr}"
    );
    // --check is --call=check.
    let (code, _, stderr) = call_dir("FROM scratch\n", &["--check", "--call=targets"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--check means --call=check"), "{stderr}");
}

#[test]
fn check_in_json_progress() {
    let (code, stdout, _) = check_dir(
        "# check=error=true\nFROM scratch as base\n",
        &["--progress=json"],
    );
    assert_eq!(code, 1);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["type"], "warning");
    assert_eq!(lines[0]["rule"], "FromAsCasing");
    assert_eq!(lines[0]["line"], 2);
    assert_eq!(
        lines[0]["url"],
        "https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
    );
    assert_eq!(lines[1]["type"], "error");
    assert_eq!(
        lines[1]["message"],
        "lint violation found for rules: FromAsCasing"
    );
    let (code, stdout, _) = check_dir("FROM scratch\n", &["--progress=json"]);
    assert_eq!((code, stdout.as_str()), (0, ""));
}

#[test]
fn check_reports_static_errors_with_their_line() {
    let cases = [
        (
            "FROM scratch\nEXPOSE notaport\n",
            "error: CTX/Dockerfile:2:1: invalid containerPort: notaport",
        ),
        (
            "FROM scratch\nSTOPSIGNAL SIGNOPE\n",
            "error: CTX/Dockerfile:2:1: ",
        ),
        (
            "FROM scratch\nCOPY --chmod=999 a /a\n",
            "error: CTX/Dockerfile:2:1: invalid chmod parameter: '999'",
        ),
    ];
    for (dockerfile, want) in cases {
        let (code, stdout, stderr) = check_dir(dockerfile, &[]);
        assert_eq!(code, 1, "{dockerfile:?}");
        assert_eq!(stdout, "Check complete, no warnings found.\n");
        assert!(stderr.starts_with(want), "{dockerfile:?}: {stderr}");
    }
    // Warnings found before an invalid instruction are still reported, then the error.
    let (code, _, stderr) = check_dir("FROM scratch AS Bad\nMAINTAINER me\nBADCMD\n", &[]);
    assert_eq!(code, 1);
    let rules: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.contains('|'))
        .collect();
    assert_eq!(
        rules,
        [
            "warning[StageNameCasing]: CTX/Dockerfile:1:1: Stage name 'Bad' should be lowercase",
            "warning[MaintainerDeprecated]: CTX/Dockerfile:2:1: Maintainer instruction is deprecated in favor of using label",
            "error: CTX/Dockerfile:3:1: unknown instruction: BADCMD",
        ],
        "{stderr}"
    );
}

#[test]
fn outline_and_targets() {
    let dockerfile = "ARG VERSION=1.36\n# base where everything starts\nFROM busybox:$VERSION AS base\n\
                      # MODE how to build\nARG MODE=release\n\
                      RUN --mount=type=secret,id=npmrc,required=true --mount=type=ssh true\n\
                      FROM base AS test\nRUN make test\n\
                      # app the image we ship\nFROM scratch AS app\nCOPY --from=base /a /a\n";
    let (code, stdout, _) = call_dir(dockerfile, &["--call=targets"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "TARGET        DESCRIPTION\nbase          where everything starts\ntest\napp (default) the image we ship\n"
    );
    let (code, stdout, _) = call_dir(dockerfile, &["--call=outline"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "TARGET:      app\nDESCRIPTION: the image we ship\n\n\
         BUILD ARG   VALUE     DESCRIPTION\nVERSION     1.36\nMODE        release   how to build\n\n\
         SECRET   REQUIRED\nnpmrc    true\n\n\
         SSH       REQUIRED\ndefault\n\n"
    );
    let (code, stdout, _) = call_dir(
        dockerfile,
        &["--call=outline", "--progress=json"],
        &["--target", "test", "--build-arg", "VERSION=1.37"],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["name"], "test");
    assert_eq!(v["args"][0]["value"], "1.37");
    assert_eq!(v["secrets"][0]["name"], "npmrc");
}

#[test]
fn a_build_prints_its_warnings_after_it_and_fails_first_under_error_true() {
    let dockerfile = "FROM scratch as x\nCOPY a /a\nCMD [\"x\"]\nCMD [\"y\"]\n";
    let (code, stdout, stderr) = call_dir(dockerfile, &["--progress=plain"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("sha256:"), "{stdout}");
    let (_, after) = stderr.split_once("writing image").unwrap();
    assert!(
        after.contains("\n2 warnings found:\nwarning[FromAsCasing]: CTX/Dockerfile:1:1: "),
        "{stderr}"
    );
    assert!(
        after.contains("warning[MultipleInstructionsDisallowed]: CTX/Dockerfile:3:1: Multiple CMD"),
        "{stderr}"
    );
    let (code, _, stderr) = call_dir(dockerfile, &["--progress=json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let types: Vec<String> = stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
        .collect();
    assert_eq!(
        types[types.len() - 3..],
        ["\"warning\"", "\"warning\"", "\"done\""],
        "{stderr}"
    );
    // error=true: nothing is built.
    let (code, stdout, stderr) = call_dir(
        &format!("# check=error=true\n{dockerfile}"),
        &["--progress=plain"],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(!stderr.contains("COPY a /a"), "{stderr}");
    assert!(
        stderr.ends_with(
            "error: lint violation found for rules: FromAsCasing, MultipleInstructionsDisallowed\n"
        ),
        "{stderr}"
    );
}

#[test]
fn a_base_for_another_platform_is_reported_when_the_build_resolves_it() {
    let (host, other) = match std::env::consts::ARCH {
        "x86_64" => ("linux/amd64", "linux/arm64"),
        "aarch64" => ("linux/arm64", "linux/amd64"),
        arch => panic!("no second platform chosen for {arch}"),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), "a\n").unwrap();
    std::fs::write(dir.path().join("Base"), "FROM scratch\nCOPY a /a\n").unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM other:tag\nCOPY a /b\n").unwrap();
    let out = kiln(dir.path())
        .args(["build", "-f"])
        .arg(dir.path().join("Base"))
        .args(["--platform", other, "-t", "other:tag"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let out = kiln(dir.path())
        .args(["build", "--pull=never", "--progress=plain"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "\n1 warning found:\nwarning[InvalidBaseImagePlatform]: {}:1:1: Base image other:tag was pulled with platform \"{other}\", expected \"{host}\" for current build\n",
            dir.path().join("Dockerfile").display()
        )),
        "{stderr}"
    );
    // The rule is skipped like any other.
    std::fs::write(
        dir.path().join("Dockerfile"),
        "# check=skip=InvalidBaseImagePlatform\nFROM other:tag\nCOPY a /b\n",
    )
    .unwrap();
    let out = kiln(dir.path())
        .args(["build", "--pull=never", "--progress=plain"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!text(&out).1.contains("warning"), "{}", text(&out).1);
}

#[test]
fn undefined_var_knows_the_base_images_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), "a\n").unwrap();
    std::fs::write(
        dir.path().join("Base"),
        "FROM scratch\nENV BASEVAR=1\nCOPY a /a\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM base:1\nENV A=$BASEVAR B=$BASEVRA\n",
    )
    .unwrap();
    let build = |extra: &[&str]| {
        let out = kiln(dir.path())
            .arg("build")
            .args(extra)
            .arg(dir.path())
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        (stdout, stderr)
    };
    // Before the base is in the store its environment is unknown: nothing is said.
    let (stdout, _) = build(&["--check"]);
    assert_eq!(stdout, "Check complete, no warnings found.\n");
    let base = dir.path().join("Base");
    build(&["-f", base.to_str().unwrap(), "-t", "base:1"]);
    let want = "warning[UndefinedVar]: ";
    let (_, stderr) = build(&["--pull=never", "--progress=plain"]);
    let found: Vec<&str> = stderr.lines().filter(|l| l.starts_with(want)).collect();
    assert_eq!(found.len(), 1, "{stderr}");
    assert!(
        found[0].ends_with(":2:1: Usage of undefined variable '$BASEVRA' (did you mean $BASEVAR?)"),
        "{stderr}"
    );
    let (stdout, _) = build(&["--check"]);
    assert!(stdout.contains(want), "{stdout}");
}
