//! Builds for other platforms and for several at once: RUN under QEMU user emulation
//! (registered in binfmt_misc), the clear error when no emulator is registered, the platform
//! ARGs, and stages on `$BUILDPLATFORM` (`build`); multi-platform images pushed, pulled and run
//! by platform, and joined with `kiln manifest create` (`registry`). This file holds their
//! fixtures.
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
use kiln_builder::oci_spec::image::Descriptor;
use kiln_builder::plan::Platform;

use crate::support::busybox::foreign_busybox_rootfs;
use crate::support::registry::{Config, RegistryServer};
use crate::support::registry_image::{make_image_for, make_index};
use crate::support::{Kiln, context, tool, with_busybox};
use crate::text;

// RUN under QEMU, the missing-emulator error, and builds of several platforms into one index.
mod build;
// Pushing an index, pulling and running by platform, and `kiln manifest`.
mod registry;

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
/// `busybox:arm64` and `busybox:armhf`, imported for their platforms; each also under its
/// platform's `TARGETARCH` (`busybox:amd64`, `busybox:arm`), and all three in one local index,
/// `busybox-multi`. `None` when a fixture or an emulator is missing outside CI.
fn with_foreign_busybox() -> Option<Kiln> {
    if !runs_here("linux/arm64") || !runs_here("linux/arm/v7") {
        return None;
    }
    let kiln = with_busybox()?;
    let host = Platform::host();
    kiln.ok(&[
        "tag",
        "busybox:latest",
        &format!("busybox:{}", host.architecture),
    ]);
    for (debian, platform, arch) in [
        ("arm64", "linux/arm64", "arm64"),
        ("armhf", "linux/arm/v7", "arm"),
    ] {
        let rootfs = foreign_busybox_rootfs(debian)?;
        kiln.ok(&[
            "import",
            "--platform",
            platform,
            rootfs.tar.to_str().unwrap(),
            &format!("busybox:{debian}"),
        ]);
        if arch != host.architecture {
            kiln.ok(&[
                "tag",
                &format!("busybox:{debian}"),
                &format!("busybox:{arch}"),
            ]);
        }
    }
    let store = kiln.store();
    let manifests: Vec<_> = ["latest", "arm64", "armhf"]
        .iter()
        .map(|tag| {
            let name = format!("docker.io/library/busybox:{tag}");
            let mut desc = store.resolve(&name).unwrap().unwrap();
            desc.set_annotations(None);
            desc
        })
        .collect();
    make_index(
        &kiln.root,
        "docker.io/library/busybox-multi:latest",
        &manifests,
    );
    Some(kiln)
}

/// Runs kiln with `args` in a private mount namespace whose binfmt_misc directory shows no
/// handler (a tmpfs with only an `enabled` status).
fn without_binfmt(kiln: &Kiln, args: &[&str]) -> Option<Output> {
    let unshare = tool("unshare")?;
    let template = kiln.cmd();
    let mut cmd = Command::new(unshare);
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
        .ok()
}

/// The cross-compilation pattern: a tool made once on the build platform, copied into each
/// target platform's image, which runs a command of its own.
const CROSS: &str = "FROM --platform=$BUILDPLATFORM busybox AS tools\n\
     RUN echo \"tool made on $(uname -m)\" > /tool\n\
     FROM busybox-multi\n\
     ARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDPLATFORM\n\
     COPY --from=tools /tool /tool\n\
     RUN echo \"$(uname -m) $TARGETPLATFORM $TARGETARCH/$TARGETVARIANT $BUILDPLATFORM\" > /arch\n\
     CMD [\"cat\", \"/arch\"]\n";

/// What each target platform's image says in `/arch`: `uname -m`, then the platform ARGs.
fn arch_line(platform: &str) -> String {
    let machine = match platform {
        "linux/amd64" => "x86_64",
        "linux/arm64" => "aarch64",
        "linux/arm/v7" => "armv7l",
        other => panic!("no machine for {other}"),
    };
    let parsed: Platform = platform.parse().unwrap();
    format!(
        "{machine} {platform} {}/{} {}\n",
        parsed.architecture,
        parsed.variant.unwrap_or_default(),
        Platform::host()
    )
}

/// How often a build's plain progress ran the step `step` (`RUN echo …`), and how often it
/// took it from the cache.
fn runs_of(stderr: &str, step: &str) -> (usize, usize) {
    let steps: Vec<bool> = crate::support::plain_steps(stderr)
        .into_iter()
        .filter(|(_, instruction)| instruction == step)
        .map(|(cached, _)| cached)
        .collect();
    let cached = steps.iter().filter(|&&c| c).count();
    (steps.len() - cached, cached)
}

/// `uname -m` of the host.
fn host_machine() -> String {
    crate::support::run(Command::new("uname").arg("-m"))
        .trim()
        .to_owned()
}

fn skopeo_json(skopeo: &std::path::Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&crate::support::run(Command::new(skopeo).args(args))).unwrap()
}
