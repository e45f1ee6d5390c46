//! Builds for other platforms: RUN under QEMU, the error when no emulator is registered, and a
//! build of three platforms into one index, written to the store and every output type.

use super::*;

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
    let Some(out) = without_binfmt(
        &kiln,
        &["build", "--platform", "linux/arm64", ctx.to_str().unwrap()],
    ) else {
        return;
    };
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
    assert!(!stderr.contains(" [stage-0 "), "{stderr}");

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
    )
    .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        crate::support::inspect(&kiln, "copied:1")["Architecture"],
        "arm64"
    );
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
    // Each target platform's RUN has keys of its own (its base is that platform's image): none
    // is taken from another platform's.
    let target_run = "RUN echo \"$(uname -m) $TARGETPLATFORM $TARGETARCH/$TARGETVARIANT $BUILDPLATFORM\" > /arch";
    assert_eq!(runs_of(&stderr, target_run), (3, 0), "{stderr}");
    for platform in platforms {
        assert!(
            stderr.contains(&format!(" [{platform} stage-1 3/4] RUN echo")),
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
    assert_eq!(runs_of(&again_err, target_run), (0, 3), "{again_err}");

    // --no-cache runs every step, but a step the platforms share still once: the others take
    // what this build made.
    let out = kiln
        .cmd()
        .args(["build", "--progress=plain", "--no-cache", "--platform"])
        .arg(platforms.join(","))
        .arg(&ctx)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        runs_of(&stderr, "RUN echo \"tool made on $(uname -m)\" > /tool"),
        (1, 2),
        "{stderr}"
    );
    assert_eq!(runs_of(&stderr, target_run), (3, 0), "{stderr}");
}

#[test]
fn multiplatform_a_failing_platform_is_named_and_nothing_is_tagged() {
    let Some(kiln) = with_foreign_busybox() else {
        return;
    };
    let ctx = context(
        &kiln,
        "FROM busybox-multi\nARG TARGETARCH\nRUN test \"$TARGETARCH\" != arm64\n",
        &[],
    );
    let (_, stderr) = kiln.fails(&[
        "build",
        "--progress=plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        "failing:1",
        ctx.to_str().unwrap(),
    ]);
    assert!(
        stderr.contains(
            "Dockerfile:3:1: linux/arm64: process \"/bin/sh -c test \"$TARGETARCH\" != arm64\" \
             did not complete successfully: exit code 1"
        ),
        "{stderr}"
    );
    let (_, stderr) = kiln.fails(&["inspect", "failing:1"]);
    assert!(stderr.contains("No such image"), "{stderr}");
}
