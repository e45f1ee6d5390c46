//! The differential suite, kaniko's own method: every case's Dockerfile is built by buildah
//! (`bud --storage-driver overlay --isolation chroot`, Debian's 1.28, in a private `--root`)
//! and by kiln on the same busybox base, and the two images are compared on their config and
//! on every file of their flattened root filesystems (see `differential/image.rs`).
//!
//! The cases (`differential/cases.rs`) are kiln's own, one per instruction family, plus every
//! kaniko integration Dockerfile that needs no network and whose base busybox can stand in
//! for. Where BuildKit's rules, which kiln follows, differ from buildah's, the case lists the
//! expected difference with its reason; any other difference fails the test with a readable
//! diff, and so does an expected difference that no longer shows. The results table is printed on every run
//! (`cargo test --test integration differential -- --nocapture`).
//!
//! The base: the busybox rootfs fixture imported into a kiln store with Docker Hub busybox's
//! `PATH`, saved as an oci-archive and pulled from it into buildah's storage once, tagged
//! `busybox:latest` and `busybox:1.31` in both so `FROM busybox` resolves without a registry
//! (`--pull=never`); `busybox-nopath` is the same without any Env. Both images are read back
//! from `docker save`-format archives (see `differential/image.rs`). Cases run on a few
//! threads; each gets its own kiln store, all share buildah's (it locks its own storage).
//! As everything that builds: root only. Under `CI=true` a missing buildah or root fails the
//! test; elsewhere it skips, saying so.

mod cases;
mod image;
mod tar;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use self::cases::{Case, Expect, KANIKO, Kaniko, OWN};
use self::image::{Difference, Image};
use crate::support::busybox::busybox_rootfs_tar;
use crate::support::{Kiln, root_or_skip, run, tool};

/// The base image's Env, as Docker Hub's busybox has it.
const BASE_PATH: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Threads building cases at once (buildah and kiln mostly wait on the disk and children).
const WORKERS: usize = 4;

/// The case data, relative to the repository.
fn data() -> PathBuf {
    crate::repo().join("tests/differential")
}

/// What the whole suite shares: the base image, buildah's private storage, the tools.
struct Env {
    /// Scratch space: buildah's root and runroot, the signature policy.
    dir: tempfile::TempDir,
    /// The busybox rootfs tarball every kiln store imports.
    rootfs: PathBuf,
    buildah: PathBuf,
}

impl Env {
    /// The tools and the base, or `None` (after saying so) outside CI when something is
    /// missing.
    fn new() -> Option<Env> {
        if !root_or_skip("the differential tests") {
            return None;
        }
        let buildah = tool("buildah")?;
        let rootfs = busybox_rootfs_tar()?;
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
            rootfs,
            buildah,
        };
        // Pulling from an archive checks signatures against a policy: a private, permissive
        // one, so the host's configuration plays no part.
        fs::write(
            env.policy(),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        let kiln = env.kiln_with_base();
        for name in ["busybox:latest", "busybox-nopath:latest"] {
            let archive = env
                .dir
                .path()
                .join(format!("{}.tar", name.replace(':', "-")));
            kiln.ok(&[
                "save",
                "--format",
                "oci-archive",
                "-o",
                archive.to_str().unwrap(),
                name,
            ]);
            let mut pull = env.buildah_cmd();
            pull.args(["pull", "-q", "--signature-policy"])
                .arg(env.policy())
                .arg(format!("oci-archive:{}", archive.display()));
            run(&mut pull);
        }
        run(env.buildah_cmd().args([
            "tag",
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox:1.31",
        ]));
        Some(env)
    }

    fn policy(&self) -> PathBuf {
        self.dir.path().join("policy.json")
    }

    /// `buildah` on the suite's private storage.
    fn buildah_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.buildah);
        cmd.arg("--root")
            .arg(self.dir.path().join("buildah-root"))
            .arg("--runroot")
            .arg(self.dir.path().join("buildah-runroot"))
            .args(["--storage-driver", "overlay"]);
        cmd
    }

    /// A fresh kiln store holding the base as `busybox:latest` and `busybox:1.31` (with the
    /// PATH of Docker Hub's busybox in its config, as real bases have) and, without any Env, as
    /// `busybox-nopath:latest`.
    fn kiln_with_base(&self) -> Kiln {
        let kiln = Kiln::new();
        let rootfs = self.rootfs.to_str().unwrap();
        kiln.ok(&["import", "-c", BASE_PATH, rootfs, "busybox:latest"]);
        kiln.ok(&["tag", "busybox:latest", "busybox:1.31"]);
        kiln.ok(&["import", rootfs, "busybox-nopath:latest"]);
        kiln
    }
}

impl Drop for Env {
    /// buildah's overlay storage stays mounted after it exits; a test leaves no mount behind.
    fn drop(&mut self) {
        let _ = self.buildah_cmd().args(["umount", "--all"]).output();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("buildah-root/overlay"))
            .output();
    }
}

/// How one build went: the image, read back, or the failure's last lines.
enum Built {
    Image(Image),
    Failed(String),
}

impl Built {
    fn describe(&self) -> String {
        match self {
            Built::Image(_) => "built".to_owned(),
            Built::Failed(tail) => format!("failed: {tail}"),
        }
    }
}

/// The last lines of a failed command's output, on one line.
fn failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// The `--build-arg`, `--target` and `-f` arguments both tools take.
fn build_args(case: &Case, dockerfile: &Path) -> Vec<String> {
    let mut args = vec!["-f".to_owned(), dockerfile.to_str().unwrap().to_owned()];
    for arg in case.build_args {
        args.push("--build-arg".to_owned());
        args.push((*arg).to_owned());
    }
    if let Some(target) = case.target {
        args.push("--target".to_owned());
        args.push(target.to_owned());
    }
    args
}

/// Builds a case's parent (if any) and then the case with the build command `tool` gives
/// (its fixed arguments, ending with `-t TAG`), with `dockerfile` for the case itself; `None`
/// when both built, else why not.
fn build_with(
    case: &Case,
    tag: &str,
    dockerfile: &str,
    tool: &dyn Fn(&str) -> Command,
) -> Option<Built> {
    let context = data().join(case.context);
    let build = |dockerfile: &str, tag: &str, args: bool| {
        let mut cmd = tool(tag);
        let dockerfile = context.join(dockerfile);
        if args {
            cmd.args(build_args(case, &dockerfile));
        } else {
            cmd.arg("-f").arg(&dockerfile);
        }
        cmd.envs(case.env.iter().copied()).arg(&context);
        cmd.output().unwrap()
    };
    if let Some((dockerfile, parent)) = case.parent {
        let out = build(dockerfile, parent, false);
        if !out.status.success() {
            return Some(Built::Failed(format!("parent: {}", failure(&out))));
        }
    }
    let out = build(dockerfile, tag, true);
    (!out.status.success()).then(|| Built::Failed(failure(&out)))
}

/// Builds a case (and its parent) with kiln and reads the image back.
fn build_kiln(env: &Env, case: &Case, tag: &str, scratch: &Path) -> Built {
    let kiln = env.kiln_with_base();
    let tool = |tag: &str| {
        let mut cmd = kiln.cmd();
        cmd.args(["build", "-q", "--pull", "never", "-t", tag]);
        cmd
    };
    if let Some(failed) = build_with(case, tag, case.dockerfile, &tool) {
        return failed;
    }
    let archive = scratch.join("kiln.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), tag]);
    Built::Image(image::from_docker_archive(&archive))
}

/// Builds a case (and its parent) with buildah and reads the image back.
fn build_buildah(env: &Env, case: &Case, tag: &str, scratch: &Path) -> Built {
    let tool = |tag: &str| {
        let mut cmd = env.buildah_cmd();
        // Docker format keeps SHELL, HEALTHCHECK and ONBUILD, which OCI configs cannot hold.
        cmd.args(["bud", "-q", "--isolation", "chroot", "--pull=never"]);
        cmd.args(["--format", "docker", "-t", tag]);
        cmd
    };
    let dockerfile = case.buildah_dockerfile.unwrap_or(case.dockerfile);
    if let Some(failed) = build_with(case, tag, dockerfile, &tool) {
        return failed;
    }
    let archive = scratch.join("buildah.tar");
    run(env
        .buildah_cmd()
        .args(["push", "-q", tag])
        .arg(format!("docker-archive:{}", archive.display())));
    Built::Image(image::from_docker_archive(&archive))
}

/// One case's result.
struct Outcome {
    name: &'static str,
    /// Differences no expectation explains.
    unexplained: Vec<Difference>,
    /// Expected differences seen: (pattern, reason, the differences it explained).
    expected: Vec<(&'static str, &'static str, usize)>,
    /// `Differs` expectations that did not show (stale: the case fails).
    missing: Vec<&'static str>,
    /// A build that should have failed and did not, or a harness failure.
    error: Option<String>,
}

impl Outcome {
    fn failed(&self) -> bool {
        self.error.is_some() || !self.unexplained.is_empty() || !self.missing.is_empty()
    }
}

fn run_case(env: &Env, index: usize, case: &Case) -> Outcome {
    let scratch = tempfile::tempdir().unwrap();
    let tag = format!("diff-case-{index}");
    let kiln = build_kiln(env, case, &tag, scratch.path());
    let buildah = build_buildah(env, case, &tag, scratch.path());
    let mut outcome = Outcome {
        name: case.name,
        unexplained: Vec::new(),
        expected: Vec::new(),
        missing: Vec::new(),
        error: None,
    };
    let differences = match (&kiln, &buildah) {
        (Built::Image(k), Built::Image(b)) if !case.both_fail => image::compare(k, b),
        (Built::Failed(_), Built::Failed(_)) if case.both_fail => Vec::new(),
        (Built::Failed(_), Built::Failed(_)) => {
            outcome.error = Some(format!(
                "both builds failed: kiln {}, buildah {}",
                kiln.describe(),
                buildah.describe()
            ));
            Vec::new()
        }
        _ if case.both_fail => {
            outcome.error = Some(format!(
                "both builds should fail: kiln {}, buildah {}",
                kiln.describe(),
                buildah.describe()
            ));
            Vec::new()
        }
        _ => vec![Difference {
            what: "build".to_owned(),
            kiln: kiln.describe(),
            buildah: buildah.describe(),
        }],
    };
    let pattern = |e: &Expect| match *e {
        Expect::Differs(p, _) => p,
    };
    let mut seen = vec![0usize; case.expect.len()];
    for d in differences {
        match case
            .expect
            .iter()
            .position(|e| image::matches(pattern(e), &d.what))
        {
            Some(i) => seen[i] += 1,
            None => outcome.unexplained.push(d),
        }
    }
    for (e, &n) in case.expect.iter().zip(&seen) {
        match (*e, n) {
            (Expect::Differs(p, reason), n) if n > 0 => outcome.expected.push((p, reason, n)),
            (Expect::Differs(p, _), _) => outcome.missing.push(p),
        }
    }
    outcome
}

/// Every case: kiln's own, then the included kaniko Dockerfiles.
fn all_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = OWN.to_vec();
    cases.extend(KANIKO.iter().filter_map(|(_, k)| match k {
        Kaniko::Included(case) => Some(*case),
        Kaniko::Excluded(_) => None,
    }));
    cases
}

/// The results table: one line per case, then the details of every difference.
fn report(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    writeln!(out, "{:width$}  result", "case").unwrap();
    for o in outcomes {
        let expected: usize = o.expected.iter().map(|(_, _, n)| n).sum();
        let result = if o.failed() {
            "FAIL".to_owned()
        } else if expected == 0 {
            "same".to_owned()
        } else {
            format!("{expected} expected difference(s)")
        };
        writeln!(out, "{:width$}  {result}", o.name).unwrap();
    }
    writeln!(out, "\nkaniko Dockerfiles left out:").unwrap();
    for (name, k) in KANIKO {
        if let Kaniko::Excluded(reason) = k {
            writeln!(out, "  {name}: {reason}").unwrap();
        }
    }
    for o in outcomes {
        if !o.failed() && o.expected.is_empty() {
            continue;
        }
        writeln!(out, "\n{}:", o.name).unwrap();
        if let Some(e) = &o.error {
            writeln!(out, "  ERROR {e}").unwrap();
        }
        for d in &o.unexplained {
            writeln!(
                out,
                "  UNEXPECTED {}\n    kiln:    {}\n    buildah: {}",
                d.what, d.kiln, d.buildah
            )
            .unwrap();
        }
        for p in &o.missing {
            writeln!(out, "  EXPECTED BUT NOT SEEN {p}").unwrap();
        }
        for (p, reason, n) in &o.expected {
            writeln!(out, "  expected {p} ({n}): {reason}").unwrap();
        }
    }
    out
}

#[test]
fn the_kaniko_table_lists_every_kaniko_dockerfile() {
    let names: BTreeSet<&str> = KANIKO.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names.len(),
        KANIKO.len(),
        "a kaniko Dockerfile is listed twice"
    );
    assert_eq!(
        KANIKO.len(),
        98,
        "90 + 6 with their own context + 2 testdata"
    );
    for (name, k) in KANIKO {
        if let Kaniko::Included(case) = k {
            let dockerfile = data().join(case.context).join(case.dockerfile);
            assert!(
                dockerfile.is_file(),
                "{name}: {} is missing",
                dockerfile.display()
            );
        }
    }
    // Beside the checkout, the upstream copy: the table must name exactly its Dockerfiles.
    let upstream = crate::repo().join("../shared/conformance/kaniko-dockerfiles");
    if !upstream.is_dir() {
        eprintln!(
            "note: {} not found; the table is not checked against it",
            upstream.display()
        );
        return;
    }
    let mut found = BTreeSet::new();
    for entry in fs::read_dir(&upstream).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let path = upstream.join(&name);
        if path.is_file() && name != "test-config.json" && !name.ends_with(".dockerignore") {
            found.insert(name);
        }
    }
    for entry in fs::read_dir(upstream.join("dockerfiles-with-context")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        found.insert(format!("dockerfiles-with-context/{name}/Dockerfile"));
    }
    found.insert("testdata/Dockerfile.trivial".to_owned());
    found.insert("testdata/exit-code-propagation/Dockerfile_exit_code_propagation".to_owned());
    let listed: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(listed, found);
}

#[test]
fn kiln_and_buildah_build_the_same_images() {
    let Some(env) = Env::new() else { return };
    let started = Instant::now();
    let cases = all_cases();
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(cases.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let outcome = std::panic::catch_unwind(|| run_case(&env, i, case))
                        .unwrap_or_else(|panic| {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_default();
                            Outcome {
                                name: case.name,
                                unexplained: Vec::new(),
                                expected: Vec::new(),
                                missing: Vec::new(),
                                error: Some(format!("the harness failed: {message}")),
                            }
                        });
                    outcomes.lock().unwrap()[i] = Some(outcome);
                }
            });
        }
    });
    let outcomes: Vec<Outcome> = outcomes
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let table = report(&outcomes);
    println!(
        "differential suite: {} cases in {:.0?}\n\n{table}",
        outcomes.len(),
        started.elapsed()
    );
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.failed())
        .map(|o| o.name)
        .collect();
    assert!(
        failed.is_empty(),
        "kiln and buildah differ unexpectedly in {failed:?}:\n\n{table}"
    );
    assert_eq!(
        outcomes.len(),
        OWN.len()
            + KANIKO
                .iter()
                .filter(|(_, k)| matches!(k, Kaniko::Included(_)))
                .count()
    );
}
