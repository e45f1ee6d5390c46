//! kiln's one integration-test binary: it drives the real `kiln` binary end to end.

// `kiln build` end to end: the sandbox, snapshots, COPY/ADD and the image it writes.
mod build;
// The solver: the build cache, reproducibility, parallel stages, Ctrl-C, progress and flags.
mod build_cache;
// `--cache-to` / `--cache-from`: two stores sharing a cache through the registry or a directory.
mod cache_export;
// Step states and cache-miss explanations: change one thing, rebuild, read why each step ran.
mod explain;
// Hostile bases and stop signals: nothing hangs, nothing is left behind.
mod hardening;
// kiln against buildah on the same Dockerfiles: configs and flattened filesystems compared.
mod differential;
// `kiln build --check`/`--call`: build checks, outline, targets, plans, and how errors read.
mod check;
// kiln inside an unprivileged container (podman, default seccomp and capabilities), as a user
// and as root; one digest in every mode.
mod container;
// Crash safety: every command killed at every crash point of the store, then `kiln fsck`.
mod crash;
// A full disk: a pull, a build and a tag that do not fit fail cleanly.
mod disk_full;
// The examples: the seed's Dockerfiles built and run, multi-stage, busybox-base.sh.
mod examples;
// The local image commands: import, images, tag, rmi, inspect, save, load, prune.
mod images;
// Other platforms: RUN under QEMU, multi-platform builds into one index, platform ARGs and
// $BUILDPLATFORM stages, pull and run by platform, `kiln manifest`.
mod multiplatform;
// `kiln build --output` of every type and `--push`, read back by skopeo, umoci, tar and podman.
mod outputs;
// `--progress=tty` in a real terminal (tmux): the live region, and what stays when it ends.
mod progress_tty;
// kiln against the real registry server: push, pull, auth, TLS, faults, interop.
mod registry;
// Rootless: a slice of the suite as an unprivileged user with subordinate ids; root vs rootless
// digests.
mod rootless;
// `kiln run`: the command, its environment, streams and exit codes, and Ctrl-C.
mod run;
// Shared fixtures and harnesses (busybox rootfs, registry server, token issuer, fault proxy).
mod support;

use std::path::Path;
use std::process::{Command, Output};

/// The `kiln` binary under test, with a private store so tests never touch the user's. Every
/// server the tests talk to is on loopback: a proxy from the environment must not intercept.
pub fn kiln(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.env("KILN_ROOT", root).env_remove("SOURCE_DATE_EPOCH");
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Standard output and error as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The repository root (examples live there).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn version_prints() {
    let root = tempfile::tempdir().unwrap();
    let out = kiln(root.path()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(text(&out).0.starts_with("kiln "));
}
