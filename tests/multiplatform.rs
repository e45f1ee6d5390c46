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
use kiln_builder::oci_spec::image::Descriptor;
use kiln_builder::plan::Platform;

use crate::support::busybox::foreign_busybox_rootfs;
use crate::support::registry::{Config, RegistryServer};
use crate::support::registry_image::{make_image_for, make_index};
use crate::support::{Kiln, context, tool, with_busybox};
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

/// `out` of a build: the lines of the progress that start the step `step` (`RUN echo …`),
/// and how many of them say CACHED.
fn runs_of(stderr: &str, step: &str) -> (usize, usize) {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("] ") && l.ends_with(step))
        .collect();
    let cached = lines.iter().filter(|l| l.starts_with("CACHED ")).count();
    (lines.len() - cached, cached)
}

#[test]
fn multiplatform_build_makes_one_index_and_runs_the_build_platform_stage_once() {
    let Some(kiln) = with_foreign_busybox() else {
        return;
    };
    let (Some(skopeo), Some(tar)) = (tool("skopeo"), tool("tar")) else {
        return;
    };
    let platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"];
    let ctx = context(&kiln, CROSS, &[]);
    let (out_dir, out_tar, oci, docker, iid) = (
        kiln.path("out"),
        kiln.path("rootfs.tar"),
        kiln.path("oci.tar"),
        kiln.path("docker.tar"),
        kiln.path("iid"),
    );
    let out = kiln
        .cmd()
        .args([
            "build",
            "--progress=plain",
            "--platform",
            &platforms.join(","),
        ])
        .args(["-t", "multi:1", "--iidfile"])
        .arg(&iid)
        .arg(format!("--output=type=local,dest={}", out_dir.display()))
        .arg(format!("--output=type=tar,dest={}", out_tar.display()))
        .arg(format!("--output=type=oci,dest={}", oci.display()))
        .arg(format!("--output=type=docker,dest={}", docker.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // The $BUILDPLATFORM stage is the same for every platform: it ran once, the other
    // platforms took its layer; the target stage ran for each, under its own platform.
    assert_eq!(
        runs_of(&stderr, "RUN echo \"tool made on $(uname -m)\" > /tool"),
        (1, 2),
        "{stderr}"
    );
    for platform in platforms {
        assert!(
            stderr.contains(&format!("[{platform} stage-1 3/4] RUN echo")),
            "{platform}: {stderr}"
        );
    }
    let index_digest = stdout.trim();
    assert_eq!(fs::read_to_string(&iid).unwrap(), index_digest);

    // The store: one name, an index of the three platforms.
    let images = kiln.ok(&["images", "multi"]);
    let mut rows = images.lines();
    assert!(rows.next().unwrap().ends_with("PLATFORMS"), "{images}");
    assert!(
        rows.next()
            .unwrap()
            .ends_with("linux/amd64,linux/arm64,linux/arm/v7"),
        "{images}"
    );
    let layout = format!("oci:{}:docker.io/library/multi:1", kiln.oci_dir().display());
    let raw = skopeo_json(&skopeo, &["inspect", "--raw", &layout]);
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let listed: Vec<String> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s.push_str(&format!("/{v}"));
            }
            s
        })
        .collect();
    assert_eq!(listed, platforms);
    let arm = skopeo_json(&skopeo, &["inspect", "--override-arch", "arm64", &layout]);
    assert_eq!(arm["Architecture"], "arm64");

    // type=local and type=tar: one directory per platform, named as buildx names them.
    for platform in platforms {
        let dir = platform.replace('/', "_");
        assert_eq!(
            fs::read_to_string(out_dir.join(&dir).join("arch")).unwrap(),
            arch_line(platform),
            "{platform}"
        );
        assert_eq!(
            fs::read_to_string(out_dir.join(&dir).join("tool")).unwrap(),
            format!("tool made on {}\n", host_machine())
        );
    }
    let listing = crate::support::run(Command::new(&tar).arg("-tf").arg(&out_tar));
    for entry in [
        "linux_amd64/",
        "linux_arm64/arch",
        "linux_arm_v7/arch",
        "linux_arm_v7/bin/busybox",
    ] {
        assert!(listing.lines().any(|l| l == entry), "{entry} in {listing}");
    }
    // type=oci: the index; type=docker: containerd's layout, with the host's image in
    // manifest.json for docker-archive readers.
    let oci_raw = skopeo_json(
        &skopeo,
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}", oci.display()),
        ],
    );
    assert_eq!(oci_raw, raw);
    let docker_config = skopeo_json(
        &skopeo,
        &[
            "inspect",
            "--config",
            &format!("docker-archive:{}", docker.display()),
        ],
    );
    assert_eq!(docker_config["architecture"], Platform::host().architecture);
    let docker_listing = crate::support::run(Command::new(&tar).arg("-tf").arg(&docker));
    for entry in ["index.json", "manifest.json", "oci-layout"] {
        assert!(
            docker_listing.lines().any(|l| l == entry),
            "{entry} in {docker_listing}"
        );
    }

    // Again: everything from the cache, the same index.
    let again = kiln
        .cmd()
        .args([
            "build",
            "--progress=plain",
            "--platform",
            &platforms.join(","),
        ])
        .args(["-t", "multi:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    let (again_out, again_err) = text(&again);
    assert!(again.status.success(), "{again_err}");
    assert_eq!(again_out.trim(), index_digest, "{again_err}");
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

#[test]
fn multiplatform_push_sends_an_index_and_each_blob_once() {
    let Some(kiln) = with_foreign_busybox() else {
        return;
    };
    let Some(skopeo) = tool("skopeo") else { return };
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let name = format!("{}/multi/app:1", registry.addr);
    let ctx = context(&kiln, CROSS, &[]);
    let out = kiln
        .cmd()
        .args([
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--push",
            "-t",
            &name,
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let url = format!("docker://{name}");
    let raw = skopeo_json(&skopeo, &["inspect", "--raw", "--tls-verify=false", &url]);
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let mut blobs = std::collections::BTreeSet::new();
    let mut platforms = Vec::new();
    for entry in raw["manifests"].as_array().unwrap() {
        platforms.push(
            entry["platform"]["architecture"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        let child = format!(
            "docker://{}/multi/app@{}",
            registry.addr,
            entry["digest"].as_str().unwrap()
        );
        let manifest = skopeo_json(&skopeo, &["inspect", "--raw", "--tls-verify=false", &child]);
        blobs.insert(manifest["config"]["digest"].as_str().unwrap().to_owned());
        for layer in manifest["layers"].as_array().unwrap() {
            // Pushed layers are compressed on the way out.
            assert_eq!(
                layer["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            blobs.insert(layer["digest"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(platforms, ["amd64", "arm64"]);
    // The tool's layer is in both images and was sent once, as was every other blob.
    assert_eq!(
        registry.requests("PUT", "/v2/multi/app/blobs/uploads/"),
        blobs.len(),
        "{stderr}"
    );
    let arm = skopeo_json(
        &skopeo,
        &[
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            "arm64",
            &url,
        ],
    );
    assert_eq!(arm["Architecture"], "arm64");
    // What the build prints is the local index's digest (the store keeps layers uncompressed,
    // so the pushed index, over compressed ones, has another).
    let local = kiln.store().resolve(&name).unwrap().unwrap();
    assert_eq!(local.digest().to_string(), stdout.trim());
    assert_ne!(
        Some(local.digest().to_string()),
        skopeo_json(&skopeo, &["inspect", "--tls-verify=false", &url])["Digest"]
            .as_str()
            .map(str::to_owned)
    );
}

#[test]
fn multiplatform_pull_chooses_platforms_and_variants_as_containerd_does() {
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let a = Kiln::new();
    let image = |name: &str, platform: &str| {
        let content = platform.as_bytes();
        make_image_for(&a.root, name, platform, &[("platform", content)])
    };
    let v6 = image("v6", "linux/arm/v6");
    let v7 = image("v7", "linux/arm/v7");
    let arm64 = image("arm64", "linux/arm64");
    let amd64 = image("amd64", "linux/amd64");
    let repo = format!("{}/variants", registry.addr);
    let push = |name: &str, manifests: &[&Descriptor]| {
        let list: Vec<Descriptor> = manifests.iter().map(|&d| d.clone()).collect();
        let local = format!("docker.io/library/{name}:latest");
        make_index(&a.root, &local, &list);
        a.ok(&["push", "-q", &local, &format!("{repo}:{name}")]);
    };
    push("all", &[&amd64, &v6, &v7, &arm64]);
    push("arm32", &[&v6, &v7]);
    push("only-v6", &[&v6]);
    push("only-v7", &[&v7]);

    let b = Kiln::new();
    let pulled = |name: &str, platform: &str| -> Result<String, String> {
        let out = b.output(&["pull", "--platform", platform, &format!("{repo}:{name}")]);
        let (_, stderr) = text(&out);
        if !out.status.success() {
            return Err(stderr);
        }
        let store = b.store();
        let tagged = store.resolve(&format!("{repo}:{name}")).unwrap().unwrap();
        let chosen = store
            .manifest_for(&tagged, &platform.parse().unwrap())
            .unwrap()
            .unwrap();
        let manifest = store.read_manifest(&chosen).unwrap();
        let config = store.read_config(&manifest).unwrap();
        Ok(format!(
            "{}/{}{}",
            config.os,
            config.architecture,
            config.variant.map(|v| format!("/{v}")).unwrap_or_default()
        ))
    };
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("all", "linux/arm/v7", Some("linux/arm/v7")),
        ("all", "linux/arm/v6", Some("linux/arm/v6")),
        ("all", "linux/arm", Some("linux/arm/v7")),
        ("all", "linux/arm64/v8", Some("linux/arm64")),
        // An arm64 CPU runs 32-bit arm: v7 is preferred to v6.
        ("arm32", "linux/arm64", Some("linux/arm/v7")),
        // A v7 CPU runs v6 images; a v6 one does not run v7 images.
        ("only-v6", "linux/arm/v7", Some("linux/arm/v6")),
        ("only-v7", "linux/arm/v6", None),
        ("only-v7", "linux/amd64", None),
    ];
    for (name, platform, expected) in cases {
        let got = pulled(name, platform);
        match expected {
            Some(e) => assert_eq!(got.as_deref(), Ok(*e), "{name} for {platform}"),
            None => {
                let err = got.unwrap_err();
                assert!(
                    err.contains(&format!("no image for platform {platform}")),
                    "{name} for {platform}: {err}"
                );
            }
        }
    }

    // Several platforms at once, and one more later: the tag is a local index of the pulled
    // platforms, in the registry index's order.
    let c = Kiln::new();
    let all = format!("{repo}:all");
    c.ok(&["pull", "-q", "--platform", "linux/arm64,linux/amd64", &all]);
    let platforms_of = |kiln: &Kiln, name: &str| -> String {
        let images = kiln.ok(&["images", name]);
        images
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    };
    assert_eq!(platforms_of(&c, &all), "linux/amd64,linux/arm64");
    c.ok(&["pull", "-q", "--platform", "linux/arm/v7", &all]);
    assert_eq!(
        platforms_of(&c, &all),
        "linux/amd64,linux/arm/v7,linux/arm64"
    );
    // One platform of a single-platform image stays a manifest.
    let d = Kiln::new();
    d.ok(&["pull", "-q", "--platform", "linux/arm64", &all]);
    let tagged = d.store().resolve(&all).unwrap().unwrap();
    assert_eq!(tagged.digest(), arm64.digest());
}

#[test]
fn multiplatform_run_by_platform_and_build_from_a_registry_index() {
    let Some(kiln) = with_foreign_busybox() else {
        return;
    };
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    // The bases as users meet them: one multi-platform image in a registry.
    let base = format!("{}/library/busybox:multi", registry.addr);
    kiln.ok(&["push", "-q", "busybox-multi", &base]);

    let other = Kiln::new();
    let platforms = "linux/amd64,linux/arm64,linux/arm/v7";
    other.ok(&["pull", "-q", "--platform", platforms, &base]);
    for (platform, machine) in [
        ("linux/amd64", "x86_64"),
        ("linux/arm64", "aarch64"),
        ("linux/arm/v7", "armv7l"),
    ] {
        let out = other.ok(&["run", "--platform", platform, &base, "uname", "-m"]);
        assert_eq!(out, format!("{machine}\n"), "{platform}");
    }
    let out = other.output(&["run", "--platform", "linux/s390x", &base, "true"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains(
            "has no image for linux/s390x (it has linux/amd64, linux/arm64, linux/arm/v7)"
        ),
        "{stderr}"
    );

    // A two-platform build FROM it uses what the store has: no manifest is fetched again.
    let manifests_before = registry.requests("GET", "/manifests/");
    let ctx = context(
        &other,
        &format!("FROM {base}\nRUN uname -m > /machine\nCMD [\"cat\", \"/machine\"]\n"),
        &[],
    );
    other.ok(&[
        "build",
        "-q",
        "--platform",
        "linux/arm64,linux/arm/v7",
        "-t",
        "two:1",
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(registry.requests("GET", "/manifests/"), manifests_before);
    assert_eq!(
        other.ok(&["run", "--platform", "linux/arm64", "two:1"]),
        "aarch64\n"
    );
    assert_eq!(
        other.ok(&["run", "--platform", "linux/arm/v7", "two:1"]),
        "armv7l\n"
    );
    let images = other.ok(&["images", "two"]);
    assert!(
        images
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("linux/arm64,linux/arm/v7"),
        "{images}"
    );
    // Without --platform: the host's image, or when the index has none, its first.
    assert_eq!(other.ok(&["run", "two:1"]), "aarch64\n");

    // A missing platform is pulled for the build; the tag then has it too.
    let fresh = Kiln::new();
    let ctx_fresh = context(&fresh, &format!("FROM {base}\nCOPY f /f\n"), &[("f", "x")]);
    fresh.ok(&["pull", "-q", "--platform", "linux/arm64", &base]);
    fresh.ok(&[
        "build",
        "-q",
        "--platform",
        "linux/amd64,linux/arm64",
        ctx_fresh.to_str().unwrap(),
    ]);
    let images = fresh.ok(&["images", &base]);
    assert!(
        images
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("linux/amd64,linux/arm64"),
        "{images}"
    );
}
