//! Step states and cache-miss explanations end to end: build, change one thing, rebuild, and
//! read exactly what each step says about itself (`--progress=plain` and `json`).

use std::fs;
use std::path::Path;

use kiln_registry::Digest;

use crate::support::{Kiln, context, inspect, with_busybox, write_context};
use crate::text;

/// Each step of a plain build as `(instruction, how it ended, why it missed)`, in start order.
fn states(stderr: &str) -> Vec<(String, String, String)> {
    let mut steps: Vec<(String, String, String, String)> = Vec::new();
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("SKIPPED [") {
            let (_, rest) = rest.split_once("] ").unwrap();
            let (instruction, why) = rest.rsplit_once(" (").unwrap();
            let why = why.trim_end_matches(')');
            steps.push((
                String::new(),
                instruction.into(),
                "SKIPPED".into(),
                why.into(),
            ));
            continue;
        }
        let Some((id, rest)) = line.strip_prefix('#').and_then(|l| l.split_once(' ')) else {
            continue;
        };
        if let Some((_, instruction)) = rest.strip_prefix('[').and_then(|r| r.split_once("] ")) {
            steps.push((id.into(), instruction.into(), String::new(), String::new()));
        } else if let Some(step) = steps.iter_mut().find(|s| s.0 == id) {
            if let Some(why) = rest.strip_prefix("cache miss: ") {
                step.3 = why.into();
            } else if let Some(end) = ["DONE", "CACHED", "ERROR", "CANCELED"]
                .into_iter()
                .find(|e| rest.starts_with(e))
            {
                step.2 = end.into();
            }
        }
    }
    steps.into_iter().map(|(_, i, e, w)| (i, e, w)).collect()
}

fn build(kiln: &Kiln, ctx: &Path, extra: &[&str]) -> Vec<(String, String, String)> {
    let out = kiln
        .cmd()
        .args(["build", "--progress=plain", "-t", "explained:latest"])
        .args(extra)
        .arg(ctx)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    states(&stderr)
}

fn row(instruction: &str, end: &str, why: &str) -> (String, String, String) {
    (instruction.into(), end.into(), why.into())
}

/// `sha256:` and the first 12 hex digits of the digest of `content`, as explanations print it.
fn short(content: &str) -> String {
    format!("{}…", &Digest::of(content.as_bytes()).to_string()[..19])
}

const DOCKERFILE: &str = "FROM busybox\n\
    ARG VERSION=1.0\n\
    ENV MODE=fast\n\
    COPY src/ /app/\n\
    RUN echo $VERSION > /version\n\
    RUN echo one > /one\n";

#[test]
fn every_miss_says_which_input_changed() {
    let Some(kiln) = with_busybox() else { return };
    let files = [
        ("src/main.rs", "fn main() {}\n"),
        (".dockerignore", "src/ignored\n"),
    ];
    let ctx = context(&kiln, DOCKERFILE, &files);
    let first = build(&kiln, &ctx, &[]);
    let new = "no earlier build of this step";
    assert_eq!(
        first,
        [
            row("ARG VERSION=1.0", "DONE", ""),
            row("ENV MODE=fast", "DONE", ""),
            row("COPY src/ /app/", "DONE", new),
            row("RUN echo $VERSION > /version", "DONE", new),
            row("RUN echo one > /one", "DONE", new),
        ]
    );
    let cached = |instruction: &str| row(instruction, "CACHED", "");
    let all_cached = [
        row("ARG VERSION=1.0", "DONE", ""),
        row("ENV MODE=fast", "DONE", ""),
        cached("COPY src/ /app/"),
        cached("RUN echo $VERSION > /version"),
        cached("RUN echo one > /one"),
    ];
    assert_eq!(build(&kiln, &ctx, &[]), all_cached);

    // An ignored file changes nothing.
    fs::write(ctx.join("src/ignored"), "x").unwrap();
    assert_eq!(build(&kiln, &ctx, &[]), all_cached);

    // A file: the COPY names it, the steps after name the COPY.
    fs::write(ctx.join("src/main.rs"), "fn main() { run() }\n").unwrap();
    fs::write(ctx.join("src/lib.rs"), "").unwrap();
    let parent = "parent changed (COPY at Dockerfile:4 re-ran)";
    assert_eq!(
        build(&kiln, &ctx, &[])[2..],
        [
            row(
                "COPY src/ /app/",
                "DONE",
                "src/lib.rs added, 1 file changed"
            ),
            row("RUN echo $VERSION > /version", "DONE", parent),
            row("RUN echo one > /one", "DONE", parent),
        ]
    );
    fs::remove_file(ctx.join("src/lib.rs")).unwrap();
    fs::write(ctx.join("src/main.rs"), "fn main() {}\n").unwrap();
    // Back as it was first: the first build's record is still there.
    assert_eq!(build(&kiln, &ctx, &[])[2], cached("COPY src/ /app/"));
    fs::write(ctx.join("src/main.rs"), "fn main() { v3() }\n").unwrap();
    let (was, now) = (short("fn main() {}\n"), short("fn main() { v3() }\n"));
    assert_eq!(
        build(&kiln, &ctx, &[])[2],
        row(
            "COPY src/ /app/",
            "DONE",
            &format!("src/main.rs changed (content {was} → {now})"),
        )
    );

    // A build-arg: the RUN that sees it says which and how; the one before it is cached.
    let rows = build(&kiln, &ctx, &["--build-arg", "VERSION=1.1"]);
    assert_eq!(
        rows[3..],
        [
            row(
                "RUN echo $VERSION > /version",
                "DONE",
                r#"build-arg VERSION changed ("1.0" → "1.1")"#
            ),
            row(
                "RUN echo one > /one",
                "DONE",
                "parent changed (RUN at Dockerfile:5 re-ran)"
            ),
        ]
    );
    assert_eq!(rows[2], cached("COPY src/ /app/"));

    // --no-cache.
    let rows = build(&kiln, &ctx, &["--no-cache", "--build-arg", "VERSION=1.1"]);
    assert_eq!(rows[2], row("COPY src/ /app/", "DONE", "--no-cache"));

    // The records are gone, the inputs are the same: the cache was pruned.
    kiln.ok(&["prune", "--all"]);
    let rows = build(&kiln, &ctx, &["--build-arg", "VERSION=1.1"]);
    assert_eq!(
        rows[2],
        row("COPY src/ /app/", "DONE", "cache record pruned")
    );
}

#[test]
fn env_above_later_text_and_the_base_image() {
    let Some(kiln) = with_busybox() else { return };
    let ctx = context(&kiln, DOCKERFILE, &[("src/main.rs", "x")]);
    build(&kiln, &ctx, &[]);
    // An ENV above the RUNs: the first RUN that sees it names it.
    write_context(&ctx, &DOCKERFILE.replace("MODE=fast", "MODE=slow"), &[]);
    let rows = build(&kiln, &ctx, &[]);
    assert_eq!(rows[1], row("ENV MODE=slow", "DONE", ""));
    assert_eq!(
        rows[3],
        row(
            "RUN echo $VERSION > /version",
            "DONE",
            r#"ENV MODE changed ("fast" → "slow")"#
        )
    );
    // The text of the last step: only it runs, and it says what it was.
    let edited = DOCKERFILE
        .replace("MODE=fast", "MODE=slow")
        .replace("echo one", "echo two");
    write_context(&ctx, &edited, &[]);
    let rows = build(&kiln, &ctx, &[]);
    assert_eq!(rows[3].1, "CACHED");
    assert_eq!(
        rows[4],
        row(
            "RUN echo two > /one",
            "DONE",
            "instruction changed (was `RUN echo one > /one`)"
        )
    );
    // A line added above a step does not make it look changed.
    write_context(
        &ctx,
        &edited.replace("COPY src/", "RUN true\nCOPY src/"),
        &[],
    );
    let rows = build(&kiln, &ctx, &[]);
    assert_eq!(
        rows[2],
        row("RUN true", "DONE", "no earlier build of this step")
    );
    assert_eq!(
        rows[3],
        row(
            "COPY src/ /app/",
            "DONE",
            "parent changed (RUN at Dockerfile:4 re-ran)"
        )
    );

    // Another image under the base's name.
    let digest = || {
        inspect(&kiln, "busybox")["Descriptor"]["digest"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = digest();
    let other = kiln.path("other");
    write_context(&other, "FROM busybox\nRUN touch /other\n", &[]);
    kiln.ok(&[
        "build",
        "-q",
        "-t",
        "busybox:latest",
        other.to_str().unwrap(),
    ]);
    let after = digest();
    assert_ne!(before, after);
    let rows = build(&kiln, &ctx, &[]);
    assert_eq!(
        rows[2],
        row(
            "RUN true",
            "DONE",
            &format!(
                "base image changed ({}… → {}…)",
                &before[..19],
                &after[..19]
            )
        )
    );
}

#[test]
fn a_failed_build_says_what_was_cancelled_and_never_cached() {
    let Some(kiln) = with_busybox() else { return };
    let dockerfile = "FROM busybox AS slow\n\
        RUN sleep 30\n\
        RUN echo after-slow\n\
        FROM busybox AS broken\n\
        RUN exit 3\n\
        RUN echo after-broken\n\
        FROM busybox AS unused\n\
        RUN echo unused\n\
        FROM busybox\n\
        COPY --from=slow / /slow\n\
        COPY --from=broken / /broken\n";
    let ctx = context(&kiln, dockerfile, &[]);
    let out = kiln
        .cmd()
        .args(["build", "--progress=plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("SKIPPED stage unused (1 step): not needed by the target"),
        "{stderr}"
    );
    let mut rows = states(&stderr);
    rows.sort();
    let stopped = "the build stopped before it";
    assert_eq!(
        rows,
        [
            row("COPY --from=broken / /broken", "SKIPPED", stopped),
            row("COPY --from=slow / /slow", "SKIPPED", stopped),
            row(
                "RUN echo after-broken",
                "SKIPPED",
                "an earlier step of its stage failed"
            ),
            row("RUN echo after-slow", "SKIPPED", stopped),
            row("RUN exit 3", "ERROR", "no earlier build of this step"),
            row("RUN sleep 30", "CANCELED", "no earlier build of this step"),
        ],
        "{stderr}"
    );
    assert!(!stderr.contains("CACHED"), "{stderr}");
}

#[test]
fn json_progress_carries_states_and_explanations() {
    let Some(kiln) = with_busybox() else { return };
    let ctx = context(&kiln, "FROM busybox\nARG V=1\nRUN echo $V\n", &[]);
    let events = |extra: &[&str]| -> Vec<serde_json::Value> {
        let out = kiln
            .cmd()
            .args(["build", "--progress=json"])
            .args(extra)
            .arg(&ctx)
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    events(&[]);
    let events = events(&["--build-arg", "V=2"]);
    let run = events
        .iter()
        .find(|e| e["type"] == "step" && e["instruction"] == "RUN echo $V")
        .unwrap();
    assert_eq!(run["state"], "run");
    assert_eq!(run["why"]["kind"], "build-arg");
    assert_eq!(run["why"]["name"], "V");
    assert_eq!(run["why"]["was"], "1");
    assert_eq!(run["why"]["now"], "2");
    assert_eq!(run["why"]["message"], r#"build-arg V changed ("1" → "2")"#);
    let done = events
        .iter()
        .find(|e| e["type"] == "step-done" && e["id"] == run["id"])
        .unwrap();
    assert_eq!(done["state"], "done");
    assert!(done["duration"].as_f64().unwrap() >= 0.0);
    let summary = events.iter().find(|e| e["type"] == "summary").unwrap();
    assert_eq!(summary["run"], 1);
    assert_eq!(summary["config"], 1);
}

#[test]
fn explain_prints_the_input_tree_of_a_step() {
    let Some(kiln) = with_busybox() else { return };
    let main = "fn main() {}\n";
    let ctx = context(&kiln, DOCKERFILE, &[("src/main.rs", main)]);
    let out = kiln
        .cmd()
        .args([
            "build",
            "--progress=plain",
            "--explain",
            "4",
            "--explain",
            "5",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // Every line of the tree carries its step's number.
    let tree = |instruction: &str| -> Vec<String> {
        let id = stderr
            .lines()
            .find_map(|l| l.strip_suffix(&format!("] {instruction}")))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("{instruction} in {stderr}"));
        stderr
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{id} ")))
            .map(str::to_owned)
            .collect()
    };
    let copy = tree("COPY src/ /app/");
    assert!(
        copy.iter().any(|l| l.starts_with("cache key sha256:")),
        "{copy:?}"
    );
    assert!(
        copy.contains(&format!(
            "    src/main.rs 644 {}",
            Digest::of(main.as_bytes())
        )),
        "{copy:?}"
    );
    assert!(
        copy.iter()
            .any(|l| l.starts_with("  source (files of src/): sha256:")),
        "{copy:?}"
    );
    let run = tree("RUN echo $VERSION > /version");
    assert!(
        run.contains(&"  declared: VERSION=1.0".to_owned()),
        "{run:?}"
    );
    assert!(
        run.iter()
            .any(|l| l.starts_with("  env: ") && l.contains("MODE=fast")),
        "{run:?}"
    );
    // A line with no keyed step is refused before anything is built.
    let (_, stderr) = kiln.fails(&["build", "--explain", "3", ctx.to_str().unwrap()]);
    assert!(
        stderr.contains("--explain 3: ENV has no cache key of its own"),
        "{stderr}"
    );
    let (_, stderr) = kiln.fails(&["build", "--explain", "40", ctx.to_str().unwrap()]);
    assert!(
        stderr.contains("--explain 40: no step of the target starts at"),
        "{stderr}"
    );
}

#[test]
fn each_platform_of_a_build_explains_its_own_misses() {
    let Some(kiln) = with_busybox() else { return };
    // The tools stage runs natively once; the final stages need no emulator (no RUN).
    let dockerfile = |tool: &str| {
        format!(
            "FROM --platform=$BUILDPLATFORM busybox AS tools\n\
             RUN echo {tool} > /tool\n\
             FROM scratch\n\
             ARG TARGETARCH\n\
             COPY --from=tools /tool /tool-$TARGETARCH\n"
        )
    };
    let ctx = context(&kiln, &dockerfile("one"), &[]);
    let platforms = "linux/amd64,linux/arm64";
    let build = || {
        let out = kiln
            .cmd()
            .args(["build", "--progress=plain", "--platform", platforms])
            .arg(&ctx)
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    build();
    write_context(&ctx, &dockerfile("two"), &[]);
    let stderr = build();
    assert_eq!(
        stderr
            .matches(" cache miss: instruction changed (was `RUN echo one > /tool`)\n")
            .count(),
        1,
        "the tools stage ran once: {stderr}"
    );
    assert_eq!(
        stderr
            .matches(" cache miss: stage tools changed (RUN at Dockerfile:2 ")
            .count(),
        2,
        "one COPY per platform: {stderr}"
    );
}
