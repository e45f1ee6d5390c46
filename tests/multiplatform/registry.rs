//! Multi-platform images and registries: an index pushed with each blob once, platforms and
//! variants chosen on pull as containerd chooses them, `kiln run --platform`, builds from a
//! registry's index, and `kiln manifest create` / `inspect` joining images built on separate
//! runners.

use super::*;

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
    // The bases as users meet them: one multi-platform image in a registry, made of the
    // per-platform images pushed one by one.
    let base = format!("{}/library/busybox:multi", registry.addr);
    let mut create = vec![
        "manifest".to_owned(),
        "create".into(),
        "--push".into(),
        base.clone(),
    ];
    for tag in ["latest", "arm64", "armhf"] {
        let pushed = format!("{}/library/busybox:{tag}", registry.addr);
        kiln.ok(&["push", "-q", &format!("busybox:{tag}"), &pushed]);
        create.push(pushed);
    }
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    kiln.ok(&create);

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

#[test]
fn multiplatform_manifest_create_joins_images_built_on_separate_runners() {
    let Some(kiln) = with_foreign_busybox() else {
        return;
    };
    let Some(skopeo) = tool("skopeo") else { return };
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let reg = &registry.addr;
    // One job per platform, each pushing its own tag (here: one store, two builds).
    let ctx = context(
        &kiln,
        "FROM busybox-multi\nRUN uname -m > /machine\nCMD [\"cat\", \"/machine\"]\n",
        &[],
    );
    for (platform, suffix) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        let tag = format!("{reg}/app:1-{suffix}");
        kiln.ok(&[
            "build",
            "-q",
            "--platform",
            platform,
            "--push",
            "-t",
            &tag,
            ctx.to_str().unwrap(),
        ]);
    }
    let sources = [format!("{reg}/app:1-amd64"), format!("{reg}/app:1-arm64")];
    let blob_gets = registry.requests("GET", "/blobs/");
    let uploads = registry.requests("POST", "/blobs/uploads/");
    let target = format!("{reg}/release:1");
    let created = kiln.ok(&[
        "manifest",
        "create",
        "--push",
        &target,
        &sources[0],
        &sources[1],
    ]);
    // Only the two configs were read (for the platforms); nothing was uploaded: every blob was
    // mounted from app into release.
    assert_eq!(registry.requests("GET", "/blobs/"), blob_gets + 2);
    let mounts = registry.requests("POST", "/blobs/uploads/") - uploads;
    assert!(mounts > 0);
    assert_eq!(registry.requests("PATCH", "/blobs/uploads/"), 0);
    assert_eq!(
        registry.requests("PUT", "/v2/release/blobs/uploads/"),
        0,
        "nothing uploaded"
    );

    let url = format!("docker://{target}");
    let raw_text = crate::support::run(Command::new(&skopeo).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &url,
    ]));
    assert_eq!(
        created.trim(),
        kiln_registry::Digest::of(raw_text.as_bytes()).to_string()
    );
    let raw: serde_json::Value = serde_json::from_str(&raw_text).unwrap();
    let manifests = raw["manifests"].as_array().unwrap();
    let archs: Vec<&str> = manifests
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    // Each entry is the source's manifest, by digest.
    for (entry, source) in manifests.iter().zip(&sources) {
        let digest = skopeo_json(
            &skopeo,
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{source}"),
            ],
        )["Digest"]
            .clone();
        assert_eq!(entry["digest"], digest);
    }
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

    // inspect: text, and --raw as served.
    let shown = kiln.ok(&["manifest", "inspect", &target]);
    assert!(
        shown.starts_with(&format!("Name:      {target}\n")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("Digest:    {}\n", created.trim())),
        "{shown}"
    );
    assert!(shown.contains("  Platform:  linux/arm64\n"), "{shown}");
    assert_eq!(
        kiln.ok(&["manifest", "inspect", "--raw", &target]),
        raw_text
    );
    let single = kiln.ok(&["manifest", "inspect", &sources[1]]);
    assert!(single.contains("Platform:  linux/arm64\n"), "{single}");

    // The joined image runs on each platform after a pull.
    let other = Kiln::new();
    other.ok(&[
        "pull",
        "-q",
        "--platform",
        "linux/amd64,linux/arm64",
        &target,
    ]);
    assert_eq!(
        other.ok(&["run", "--platform", "linux/arm64", &target]),
        "aarch64\n"
    );

    // Indexes join too; a platform given twice (by two images), another registry, and no
    // --push are refused.
    let base = format!("{reg}/app:base");
    kiln.ok(&["push", "-q", "busybox:latest", &base]);
    let twice = format!("{} is in both", Platform::host());
    let dry = kiln.ok(&[
        "manifest",
        "create",
        "--dry-run",
        &format!("{reg}/again:1"),
        &target,
    ]);
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(dry["manifests"], raw["manifests"]);
    for (args, expected) in [
        (
            vec!["manifest", "create", "--push", &target, &base, &target],
            twice.as_str(),
        ),
        (
            vec![
                "manifest",
                "create",
                "--push",
                &target,
                "other.example/app:1",
            ],
            "copies none between registries",
        ),
        (
            vec!["manifest", "create", &target, &sources[0]],
            "give --push",
        ),
    ] {
        let (_, stderr) = kiln.fails(&args);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
