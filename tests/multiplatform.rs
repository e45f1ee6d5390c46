//! Builds for other platforms and for several at once: RUN under QEMU user emulation
//! (registered in binfmt_misc), the clear error when no emulator is registered, the platform
//! ARGs, and stages on `$BUILDPLATFORM`.
//!
//! The bases are Debian's `busybox-static` for the host, arm64 and armhf (see
//! `support::busybox`), each imported with `kiln import --platform`. A test that needs an
//! emulator asks the kernel's binfmt_misc through the library's own check: outside CI a missing
//! one skips the test, under `CI=true` it fails (tests/run.sh installs qemu-user-static).
//! A missing handler is simulated in a private mount namespace whose binfmt_misc directory is
//! an empty tmpfs: the kernel still has its handlers, but kiln, which reads that directory,
//! sees none.

use std::fs;
use std::process::{Command, Output};

use kiln_builder::exec::binfmt;
use kiln_builder::plan::Platform;

use crate::support::busybox::foreign_busybox_rootfs;
use crate::support::{Kiln, context, with_busybox};
use crate::text;

/// Whether `platform`'s binaries run here (natively or emulated); outside CI, when not, says
/// the test is skipped; under `CI=true` it fails.
fn runs_here(platform: &str) -> bool {
    match binfmt::check(&platform.parse::<Platform>().unwrap()) {
        Ok(_) => true,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{e} (tests/run.sh installs and registers QEMU)")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

/// A store with the host's busybox as `busybox:latest` and the arm64 and armhf ones as
/// `busybox:arm64` and `busybox:armhf`, imported for their platforms; `None` when a fixture or
/// an emulator is missing outside CI.
fn with_foreign_busybox() -> Option<Kiln> {
    if !runs_here("linux/arm64") || !runs_here("linux/arm/v7") {
        return None;
    }
    let kiln = with_busybox()?;
    for (debian, platform) in [("arm64", "linux/arm64"), ("armhf", "linux/arm/v7")] {
        let rootfs = foreign_busybox_rootfs(debian)?;
        kiln.ok(&[
            "import",
            "--platform",
            platform,
            rootfs.tar.to_str().unwrap(),
            &format!("busybox:{debian}"),
        ]);
    }
    Some(kiln)
}

/// Runs kiln with `args` in a private mount namespace whose binfmt_misc directory shows no
/// handler (a tmpfs with only an `enabled` status).
fn without_binfmt(kiln: &Kiln, args: &[&str]) -> Output {
    let template = kiln.cmd();
    let mut cmd = Command::new("unshare");
    for (key, value) in template.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none {dir} && echo enabled > {dir}/status && exec \"$0\" \"$@\"",
            dir = binfmt::BINFMT_DIR
        ))
        .arg(template.get_program())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn multiplatform_run_for_another_cpu_runs_under_qemu() {
    let Some(kiln) = with_foreign_busybox() else {
        return;
    };
    for (base, platform, machine) in [
        ("busybox:arm64", "linux/arm64", "aarch64"),
        ("busybox:armhf", "linux/arm/v7", "armv7l"),
    ] {
        let ctx = context(
            &kiln,
            &format!(
                "FROM {base}\nARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDPLATFORM\n\
                 RUN echo \"$(uname -m) $TARGETPLATFORM $TARGETARCH/$TARGETVARIANT \
                 $BUILDPLATFORM\" > /arch\n"
            ),
            &[],
        );
        let out = kiln.path(&format!("out-{machine}"));
        kiln.ok(&[
            "build",
            "-q",
            "--platform",
            platform,
            "-t",
            &format!("uname:{machine}"),
            "--output",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ]);
        let arch = platform.split('/').nth(1).unwrap();
        let variant = platform.split('/').nth(2).unwrap_or("");
        assert_eq!(
            fs::read_to_string(out.join("arch")).unwrap(),
            format!(
                "{machine} {platform} {arch}/{variant} {}\n",
                Platform::host()
            )
        );
        let config = crate::support::inspect(&kiln, &format!("uname:{machine}"));
        assert_eq!(config["Architecture"], arch);
    }
}

#[test]
fn multiplatform_missing_binfmt_handler_is_a_clear_error() {
    let Some(kiln) = with_foreign_busybox() else {
        return;
    };
    let ctx = context(
        &kiln,
        "FROM busybox:arm64\nCOPY f /f\nRUN uname -m\n",
        &[("f", "x")],
    );
    let out = without_binfmt(
        &kiln,
        &["build", "--platform", "linux/arm64", ctx.to_str().unwrap()],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let host = Platform::host();
    for expected in [
        "Dockerfile:3:1".to_owned(),
        format!(
            "cannot RUN for linux/arm64 on a {host} host: no QEMU emulator for linux/arm64 is \
             registered in binfmt_misc (/proc/sys/fs/binfmt_misc); install one: apt-get install \
             qemu-user-static binfmt-support && update-binfmts --enable qemu-aarch64\n"
        ),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} in:\n{stderr}");
    }
    // Nothing ran: the check comes before the build.
    assert!(!stderr.contains("[stage-0 "), "{stderr}");

    // No emulator is needed without RUN, nor for a stage on $BUILDPLATFORM.
    let ctx = context(
        &kiln,
        "FROM --platform=$BUILDPLATFORM busybox AS tools\n\
         RUN echo native > /made\n\
         FROM busybox:arm64\n\
         COPY --from=tools /made /made\n",
        &[],
    );
    let out = without_binfmt(
        &kiln,
        &[
            "build",
            "-q",
            "--platform",
            "linux/arm64",
            "-t",
            "copied:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        crate::support::inspect(&kiln, "copied:1")["Architecture"],
        "arm64"
    );
}
