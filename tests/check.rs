//! `kiln build --check`: the examples plan, and errors name the Dockerfile line with a caret.

use std::io::Write as _;
use std::process::Stdio;

use crate::{kiln, repo, text};

fn check_dir(dockerfile: &str, extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = kiln(dir.path())
        .args(["build", "--check"])
        .args(extra)
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    (
        out.status.code().unwrap_or(-1),
        stdout,
        stderr.replace(&dir.path().display().to_string(), "CTX"),
    )
}

#[test]
fn every_example_plans() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("examples/seed")).unwrap() {
        let dir = entry.unwrap().path();
        let out = kiln(&dir)
            .args(["build", "--check"])
            .arg(&dir)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{}: {stderr}", dir.display());
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
    let (code, stdout, _) = check_dir(dockerfile, &[]);
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
    let (code, stdout, _) = check_dir(dockerfile, &["--target", "test", "--build-arg", "V=1.37"]);
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
        .args(["build", "--check", "-f", "-", "--build-arg", "TAG"])
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
    let (code, _, stderr) = check_dir(
        "FROM busybox\nRUN a \\\n\n b\n",
        &["--build-arg", "UNUSED=1"],
    );
    assert_eq!(code, 0);
    assert!(
        stderr.contains("warning: CTX/Dockerfile:2:1: empty continuation line"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: build-arg \"UNUSED\" was not consumed"),
        "{stderr}"
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
        .args(["build", "--check"])
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
