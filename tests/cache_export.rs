//! `--cache-to` and `--cache-from` end to end: two stores on one machine stand for two CI
//! runners sharing the real registry (or a directory). Runner A exports, runner B (a fresh
//! store) imports: its steps come from the cache and its image is A's, byte for byte. Then what
//! a change re-runs, `mode=min` against `mode=max`, `type=local`, a second export that sends no
//! blob, and the faults (a missing cache, a layer the registry lost, a corrupt manifest, a
//! registry that refuses the export): warnings and correct builds, or a clear error. Imports are
//! lazy: the fault proxy counts the layer GETs a fresh runner makes (none for a fully cached
//! build or its push to the same registry; only what a RUN, `--output`, `kiln run` or a push
//! elsewhere reads). `cache-mounts=true` carries `RUN --mount=type=cache` contents along.

use std::fs;
use std::path::Path;

use crate::support::registry::{Config, RegistryServer};
use crate::support::registry_proxy::{Fault, Proxy};
use crate::support::{Kiln, context, with_busybox};
use crate::text;

const DOCKERFILE: &str = "FROM busybox AS deps\n\
    RUN echo deps > /deps\n\
    COPY lib.txt /lib.txt\n\
    \n\
    FROM busybox\n\
    RUN echo early > /early\n\
    COPY --from=deps /deps /deps-copy\n\
    COPY app.txt /app.txt\n\
    RUN cat /app.txt /deps-copy > /out\n\
    CMD cat /out\n";

const FILES: &[(&str, &str)] = &[("lib.txt", "lib\n"), ("app.txt", "app one\n")];

/// Every filesystem step of [`DOCKERFILE`], in the order a build reports them.
const ALL: &[&str] = &[
    "RUN echo deps > /deps",
    "COPY lib.txt /lib.txt",
    "RUN echo early > /early",
    "COPY --from=deps /deps /deps-copy",
    "COPY app.txt /app.txt",
    "RUN cat /app.txt /deps-copy > /out",
];

/// What one build did.
struct Build {
    /// The manifest digest.
    manifest: String,
    /// `(cached, instruction)` of every filesystem step, sorted by instruction (stages run in
    /// parallel, so their lines interleave).
    steps: Vec<(bool, String)>,
    stderr: String,
}

impl Build {
    /// The filesystem steps that ran, sorted.
    fn ran(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|(cached, _)| !cached)
            .map(|(_, i)| i.as_str())
            .collect()
    }

    fn cached(&self) -> usize {
        self.steps.iter().filter(|(cached, _)| *cached).count()
    }
}

fn sorted(steps: &[&str]) -> Vec<String> {
    let mut steps: Vec<String> = steps.iter().map(|s| (*s).to_owned()).collect();
    steps.sort();
    steps
}

/// Builds the context with plain progress and `extra` flags; asserts success.
fn build(kiln: &Kiln, ctx: &Path, extra: &[&str]) -> Build {
    let metadata = kiln.path("metadata.json");
    let out = kiln
        .cmd()
        .args(["build", "--progress=plain", "--metadata-file"])
        .arg(&metadata)
        .args(extra)
        .arg(ctx)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "build failed:\n{stderr}");
    let meta: serde_json::Value = serde_json::from_slice(&fs::read(&metadata).unwrap()).unwrap();
    let mut steps: Vec<(bool, String)> = crate::support::plain_steps(&stderr)
        .into_iter()
        .filter(|(_, instruction)| ALL.contains(&instruction.as_str()))
        .collect();
    steps.sort_by(|a, b| a.1.cmp(&b.1));
    Build {
        manifest: meta["containerimage.digest"].as_str().unwrap().to_owned(),
        steps,
        stderr,
    }
}

/// Two runners with busybox and the same context, or `None` when the fixtures are missing
/// outside CI.
fn runners() -> Option<(Kiln, Kiln)> {
    let a = with_busybox()?;
    let b = with_busybox()?;
    Some((a, b))
}

/// Two runners sharing a registry cache, through a fault proxy in front of the real registry.
struct Shared {
    _registry: RegistryServer,
    proxy: Proxy,
    a: Kiln,
    b: Kiln,
    /// The cache's ref, through the proxy.
    cache: String,
}

impl Shared {
    /// The runners, and `cache/app:TAG` as the cache; `None` (after saying so) when a
    /// prerequisite is missing outside CI.
    fn new(tag: &str) -> Option<Self> {
        let registry = RegistryServer::start(Config::default())?;
        let (a, b) = runners()?;
        let proxy = Proxy::start(&registry.addr);
        let cache = format!("{}/cache/app:{tag}", proxy.addr);
        Some(Self {
            _registry: registry,
            proxy,
            a,
            b,
            cache,
        })
    }

    /// Runner A builds [`DOCKERFILE`] and exports every step of it (`mode=max`).
    fn export_from_a(&self) -> Build {
        let ctx = context(&self.a, DOCKERFILE, FILES);
        let to = format!("type=registry,ref={},mode=max", self.cache);
        build(&self.a, &ctx, &["--cache-to", &to])
    }
}

/// The line `exported cache to …` of a build's output.
fn exported<'a>(stderr: &'a str, name: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.starts_with(&format!("exported cache to {name}")))
        .unwrap_or_else(|| panic!("no export line for {name}:\n{stderr}"))
}

#[test]
fn a_second_runner_builds_from_the_registry_cache() {
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let Some((a, b)) = runners() else { return };
    let cache = format!("{}/cache/app:buildcache", registry.addr);
    let to = format!("type=registry,ref={cache},mode=max");
    let from = format!("type=registry,ref={cache}");

    let ctx_a = context(&a, DOCKERFILE, FILES);
    let first = build(&a, &ctx_a, &["--cache-to", &to]);
    assert_eq!(first.ran(), sorted(ALL));
    assert!(
        exported(&first.stderr, &cache).contains(": 6 records, 6 layers (7 sent, 0 already there"),
        "{}",
        first.stderr
    );

    // A tool kiln did not write reads the artifact as kiln describes it.
    if let Some(skopeo) = crate::support::tool("skopeo") {
        let raw = crate::support::run(std::process::Command::new(skopeo).args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{cache}"),
        ]));
        let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            manifest["artifactType"],
            "application/vnd.kiln.cache.v1+json"
        );
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.kiln.cache.config.v1+json"
        );
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), ALL.len());
        assert!(
            layers
                .iter()
                .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip")
        );
    }

    // A fresh store: every filesystem step from the cache, and the same image.
    let ctx_b = context(&b, DOCKERFILE, FILES);
    let second = build(&b, &ctx_b, &["--cache-from", &from]);
    assert_eq!(second.ran(), Vec::<&str>::new(), "{}", second.stderr);
    assert_eq!(second.cached(), ALL.len());
    assert_eq!(second.manifest, first.manifest);
    assert!(
        second
            .stderr
            .contains(&format!("importing cache from {cache}: 6 records"))
    );
    // The layers are in B's store now: a plain rebuild needs no import. Pushed to another
    // repository of the registry, the image's layers from the cache are mounted, not sent.
    let image = format!("{}/team/app:1", registry.addr);
    let third = build(&b, &ctx_b, &["--push", "-t", &image]);
    assert_eq!(third.ran(), Vec::<&str>::new(), "{}", third.stderr);
    assert!(
        third
            .stderr
            .contains(&format!("pushed {image}: 2 uploaded")),
        "{}",
        third.stderr
    );
    assert!(third.stderr.contains(", 4 mounted"), "{}", third.stderr);

    // The bare reference means type=registry (buildx's shorthand); B's own records would hit,
    // so it is a third runner that checks it.
    let Some(c) = with_busybox() else { return };
    let ctx_c = context(&c, DOCKERFILE, FILES);
    let shorthand = build(&c, &ctx_c, &["--cache-from", &cache]);
    assert_eq!(shorthand.ran(), Vec::<&str>::new(), "{}", shorthand.stderr);
    assert_eq!(shorthand.manifest, first.manifest);

    // One file changes on B: only what reads it runs again, and what follows it.
    fs::write(ctx_b.join("app.txt"), "app two\n").unwrap();
    // Importing from and exporting to the same ref, as CI does: only the new layers (and the
    // new config) are sent, and the cache is now this build's.
    let changed = build(&b, &ctx_b, &["--cache-from", &from, "--cache-to", &to]);
    assert!(
        exported(&changed.stderr, &cache)
            .contains(": 6 records, 6 layers (3 sent, 4 already there"),
        "{}",
        changed.stderr
    );
    assert_eq!(
        changed.ran(),
        sorted(&[
            "COPY app.txt /app.txt",
            "RUN cat /app.txt /deps-copy > /out"
        ]),
        "{}",
        changed.stderr
    );
    assert_ne!(changed.manifest, first.manifest);
    // The miss names the file and the cache that did not have the step either.
    assert!(
        changed.stderr.contains(&format!(
            " cache miss: app.txt changed (content {} → {}); not in {cache} either\n",
            short("app one\n"),
            short("app two\n")
        )),
        "{}",
        changed.stderr
    );
}

/// A digest as explanations shorten it: `sha256:` and 12 hex digits, of `content`.
fn short(content: &str) -> String {
    let digest = kiln_registry::Digest::of(content.as_bytes()).to_string();
    format!("{}…", &digest[..19])
}

/// How many of `layers` (digests) the registry behind `proxy` was asked for with a GET.
fn fetched(proxy: &Proxy, layers: &[String]) -> usize {
    layers
        .iter()
        .filter(|l| proxy.count("GET", &format!("/blobs/{l}")) > 0)
        .count()
}

/// The uploads the registry behind `proxy` received, mounts excepted (a mount is a POST with
/// `?mount=`, and no PUT follows it).
fn uploads(proxy: &Proxy) -> usize {
    proxy.count("PUT", "/blobs/uploads/")
}

#[test]
fn a_fresh_runner_imports_lazily_and_pushes_without_moving_layers() {
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let Some((a, b)) = runners() else { return };
    let proxy = Proxy::start(&registry.addr);
    let cache = format!("{}/cache/app:lazy", proxy.addr);
    let to = format!("type=registry,ref={cache},mode=max");
    let from = format!("type=registry,ref={cache}");

    // Runner A builds, exports the cache, and pushes its image.
    let ctx_a = context(&a, DOCKERFILE, FILES);
    let first = build(&a, &ctx_a, &["--cache-to", &to, "-t", "app:a"]);
    assert_eq!(first.ran(), sorted(ALL));
    let pushed_a = a.ok(&["push", "app:a", &format!("{}/team/app:a", proxy.addr)]);
    let layers = compressed_layers(&a);
    assert_eq!(layers.len(), ALL.len());

    // Runner B, a fresh store: every step CACHED and A's image, and no layer downloaded.
    let ctx_b = context(&b, DOCKERFILE, FILES);
    let second = build(&b, &ctx_b, &["--cache-from", &from, "-t", "app:b"]);
    assert_eq!(second.ran(), Vec::<&str>::new(), "{}", second.stderr);
    assert_eq!(second.cached(), ALL.len());
    assert_eq!(second.manifest, first.manifest);
    assert_eq!(fetched(&proxy, &layers), 0, "{}", second.stderr);
    // Nothing is broken: the image's four layers from the cache are not fetched yet.
    let fsck = b.output(&["fsck"]);
    let (_, fsck_err) = text(&fsck);
    assert!(fsck.status.success(), "{fsck_err}");
    assert!(
        fsck_err.contains("no problems; 4 layers not yet fetched"),
        "{fsck_err}"
    );
    let listed = b.ok(&["images"]);
    assert!(listed.contains("app"), "{listed}");
    let inspected = crate::support::inspect(&b, "app:b");
    assert!(inspected.to_string().contains("cat /out"), "{inspected}");
    // An image FROM it that only changes its config needs none of its bytes either.
    let labelled = b.path("labelled");
    crate::support::write_context(&labelled, "FROM app:b\nLABEL stage=two\n", &[]);
    b.ok(&[
        "build",
        "-q",
        "-t",
        "app:labelled",
        labelled.to_str().unwrap(),
    ]);
    assert_eq!(fetched(&proxy, &layers), 0);

    // Pushed to another repository of the same registry: the layers are mounted from the
    // cache's repository (or already there), never downloaded nor uploaded; the same manifest
    // as A's push, byte for byte.
    let uploads_before = uploads(&proxy);
    let out = b
        .cmd()
        .args(["push", "app:b", &format!("{}/team/app:b", proxy.addr)])
        .output()
        .unwrap();
    let (pushed_b, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(pushed_b, pushed_a);
    assert_eq!(fetched(&proxy, &layers), 0, "{stderr}");
    // Nothing is uploaded (the registry has every blob, the config from A's push; it answers
    // HEAD for blobs of other repositories, else they would be mounted).
    assert_eq!(uploads(&proxy), uploads_before, "{stderr}");
    assert!(stderr.contains(": 0 uploaded (0 B)"), "{stderr}");

    // `kiln run` needs the root: the layers are fetched first, verified, and it works.
    let out = b.cmd().args(["run", "--rm", "app:b"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "app one\ndeps\n");
    assert_eq!(fetched(&proxy, &layers), 4);

    // Another registry has none of it: a push fetches from the cache's registry what it
    // uploads (inside the push's async tasks), and the manifest is still A's.
    let Some(other) = RegistryServer::start(Config::default()) else {
        return;
    };
    let Some(c) = with_busybox() else { return };
    let ctx_c = context(&c, DOCKERFILE, FILES);
    let lazy = build(&c, &ctx_c, &["--cache-from", &from, "-t", "app:c"]);
    assert_eq!(lazy.ran(), Vec::<&str>::new(), "{}", lazy.stderr);
    let get_before: usize = layers
        .iter()
        .map(|l| proxy.count("GET", &format!("/blobs/{l}")))
        .sum();
    let pushed_c = c.ok(&["push", "app:c", &format!("{}/team/app:c", other.addr)]);
    assert_eq!(pushed_c, pushed_a);
    let get_after: usize = layers
        .iter()
        .map(|l| proxy.count("GET", &format!("/blobs/{l}")))
        .sum();
    assert_eq!(get_after - get_before, 4);
    let fsck = b.output(&["fsck"]);
    let (_, fsck_err) = text(&fsck);
    assert!(!fsck_err.contains("not yet fetched"), "{fsck_err}");
}

#[test]
fn a_lazy_import_fetches_only_what_a_step_needs() {
    let Some(shared) = Shared::new("partial") else {
        return;
    };
    shared.export_from_a();
    let Shared {
        proxy, a, b, cache, ..
    } = &shared;
    let layers = compressed_layers(a);

    // app.txt changes on B: its COPY and the last RUN run. The RUN's root is busybox, the
    // "early" layer and the copy from deps: those two layers are fetched, the deps stage's
    // own two are not (the copy from it is cached).
    let ctx_b = context(b, DOCKERFILE, FILES);
    fs::write(ctx_b.join("app.txt"), "app two\n").unwrap();
    let out = b.path("out");
    let built = build(
        b,
        &ctx_b,
        &[
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "--output",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    assert_eq!(
        built.ran(),
        sorted(&[
            "COPY app.txt /app.txt",
            "RUN cat /app.txt /deps-copy > /out"
        ]),
        "{}",
        built.stderr
    );
    assert_eq!(fetched(proxy, &layers), 2, "{}", built.stderr);
    // The output is the whole root filesystem, lazy layers fetched first.
    assert_eq!(
        fs::read_to_string(out.join("out")).unwrap(),
        "app two\ndeps\n"
    );
    assert_eq!(fs::read_to_string(out.join("early")).unwrap(), "early\n");
}

#[test]
fn a_lazy_layer_the_registry_lost_is_a_clear_error_when_needed() {
    let Some(shared) = Shared::new("lost") else {
        return;
    };
    shared.export_from_a();
    let Shared {
        proxy, a, b, cache, ..
    } = &shared;
    let ctx_b = context(b, DOCKERFILE, FILES);
    let built = build(
        b,
        &ctx_b,
        &[
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "-t",
            "app:b",
        ],
    );
    assert_eq!(built.ran(), Vec::<&str>::new(), "{}", built.stderr);
    // The registry loses the layers after the import looked at them.
    for layer in compressed_layers(a) {
        proxy.fault(
            "GET",
            &format!("/blobs/{layer}"),
            100,
            Fault::Status(404, None),
        );
    }
    let out = b.output(&["run", "--rm", "app:b"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is not fetched yet and cannot be fetched from")
            && stderr.contains("/cache/app")
            && stderr.contains("404"),
        "{stderr}"
    );
    // Nothing half-fetched: the store still calls them not yet fetched, and is not damaged.
    let fsck = b.output(&["fsck"]);
    let (_, fsck_err) = text(&fsck);
    assert!(fsck.status.success(), "{fsck_err}");
    assert!(fsck_err.contains("not yet fetched"), "{fsck_err}");
}

#[test]
fn cache_mounts_go_with_the_cache_and_are_warm_on_a_fresh_runner() {
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let Some((a, b)) = runners() else { return };
    // The RUN records what its cache held before it ran, then adds to it.
    const MOUNTS: &str = "FROM busybox\n\
        COPY app.txt /app.txt\n\
        RUN --mount=type=cache,id=pkgs,target=/var/cache/pkgs \
        sh -c 'ls /var/cache/pkgs > /seen; cp /app.txt /var/cache/pkgs/$(md5sum /app.txt | cut -c1-8)'\n";
    let cache = format!("{}/cache/mounts:latest", registry.addr);
    let ctx_a = context(&a, MOUNTS, FILES);
    let first = build(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max,cache-mounts=true"),
        ],
    );
    assert!(
        exported(&first.stderr, &cache).contains(": 2 records, 1 cache mount, 3 layers"),
        "{}",
        first.stderr
    );

    // B changes app.txt, so the RUN runs; its cache already holds what A's RUN put there.
    let ctx_b = context(&b, MOUNTS, FILES);
    fs::write(ctx_b.join("app.txt"), "app two\n").unwrap();
    let out = b.path("out");
    build(
        &b,
        &ctx_b,
        &[
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "--output",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    let seen = fs::read_to_string(out.join("seen")).unwrap();
    assert_eq!(seen.lines().count(), 1, "{seen}");
    // Without cache-mounts=true (the default), a runner's cache starts empty.
    let Some(c) = with_busybox() else { return };
    let plain = format!("{}/cache/mounts:plain", registry.addr);
    let ctx_c = context(&c, MOUNTS, FILES);
    build(
        &c,
        &ctx_c,
        &["--cache-to", &format!("type=registry,ref={plain},mode=max")],
    );
    let Some(d) = with_busybox() else { return };
    let ctx_d = context(&d, MOUNTS, FILES);
    fs::write(ctx_d.join("app.txt"), "app two\n").unwrap();
    let out = d.path("out");
    build(
        &d,
        &ctx_d,
        &[
            "--cache-from",
            &format!("type=registry,ref={plain}"),
            "--output",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    assert_eq!(fs::read_to_string(out.join("seen")).unwrap(), "");
}

#[test]
fn mode_min_exports_only_the_image_layers() {
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let Some((a, b)) = runners() else { return };
    let min = format!("{}/cache/app:min", registry.addr);
    let max = format!("{}/cache/app:max", registry.addr);
    let ctx_a = context(&a, DOCKERFILE, FILES);
    // Both at once (the flag repeats), min being the default.
    let first = build(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &format!("type=registry,ref={min}"),
            "--cache-to",
            &format!("type=registry,ref={max},mode=max"),
        ],
    );
    // The deps stage's two layers are not in the image.
    assert!(exported(&first.stderr, &min).contains(": 4 records, 4 layers"));
    assert!(exported(&first.stderr, &max).contains(": 6 records, 6 layers"));

    // From min: the deps stage runs, and every step of the final stage hits anyway (the
    // COPY --from is keyed on the deps stage's key, not on its layers), after the misses.
    let ctx_b = context(&b, DOCKERFILE, FILES);
    let from_min = build(
        &b,
        &ctx_b,
        &["--cache-from", &format!("type=registry,ref={min}")],
    );
    assert_eq!(
        from_min.ran(),
        sorted(&["RUN echo deps > /deps", "COPY lib.txt /lib.txt"]),
        "{}",
        from_min.stderr
    );
    assert_eq!(from_min.manifest, first.manifest);
}

#[test]
fn a_local_directory_cache_round_trips() {
    let Some((a, b)) = runners() else { return };
    let dir = a.path("cache-dir");
    let ctx_a = context(&a, DOCKERFILE, FILES);
    let to = format!("type=local,dest={},mode=max", dir.display());
    let first = build(&a, &ctx_a, &["--cache-to", &to]);
    assert!(dir.join("oci-layout").is_file());
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    let hex = entry["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.kiln.cache.v1+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 6);
    // The manifest, the config and six layers; no temporary file is left.
    assert_eq!(
        fs::read_dir(dir.join("blobs/sha256")).unwrap().count(),
        8,
        "{:?}",
        crate::support::dir_names(&dir.join("blobs/sha256"))
    );
    assert!(
        crate::support::dir_names(&dir)
            .iter()
            .all(|n| !n.starts_with(".tmp"))
    );

    // Exporting again writes nothing new.
    let again = build(&a, &ctx_a, &["--cache-to", &to]);
    assert!(
        exported(&again.stderr, &dir.display().to_string()).contains("(0 sent, 7 already there"),
        "{}",
        again.stderr
    );

    let ctx_b = context(&b, DOCKERFILE, FILES);
    let from = format!("type=local,src={}", dir.display());
    let second = build(&b, &ctx_b, &["--cache-from", &from]);
    assert_eq!(second.ran(), Vec::<&str>::new(), "{}", second.stderr);
    assert_eq!(second.manifest, first.manifest);
}

#[test]
fn exporting_an_unchanged_cache_again_uploads_no_blob() {
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let Some(a) = with_busybox() else { return };
    let cache = format!("{}/cache/app:again", registry.addr);
    let to = format!("type=registry,ref={cache},mode=max");
    let ctx = context(&a, DOCKERFILE, FILES);
    let first = build(&a, &ctx, &["--cache-to", &to]);
    let uploads = registry.requests("POST", "/blobs/uploads/");
    let manifests = registry.requests("PUT", "/manifests/");
    assert_eq!(uploads, 7, "six layers and the config");
    assert_eq!(manifests, 1);

    let second = build(&a, &ctx, &["--cache-to", &to]);
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), uploads);
    assert_eq!(registry.requests("PUT", "/blobs/uploads/"), uploads);
    assert_eq!(registry.requests("PUT", "/manifests/"), manifests + 1);
    let digest = |b: &Build| {
        exported(&b.stderr, &cache)
            .rsplit_once("manifest ")
            .unwrap()
            .1
            .to_owned()
    };
    assert_eq!(digest(&second), digest(&first));
    assert!(exported(&second.stderr, &cache).contains("(0 sent, 7 already there, 0 mounted)"));
}

#[test]
fn cache_faults_are_warnings_and_the_build_is_right() {
    let Some(shared) = Shared::new("faults") else {
        return;
    };
    let first = shared.export_from_a();
    let Shared {
        proxy, a, b, cache, ..
    } = &shared;
    let ctx_b = context(b, DOCKERFILE, FILES);

    // A tag that does not exist: one warning, every step runs, the same image.
    let missing = format!("{}/cache/app:nothing-here", proxy.addr);
    let built = build(b, &ctx_b, &["--cache-from", &missing]);
    assert_eq!(built.ran(), sorted(ALL));
    assert_eq!(built.manifest, first.manifest);
    let warnings: Vec<&str> = built
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", built.stderr);
    assert!(
        warnings[0].starts_with(&format!("warning: --cache-from not used: {missing}: GET ")),
        "{}",
        warnings[0]
    );

    // A corrupt manifest: not used.
    let Some(c) = with_busybox() else { return };
    let ctx_c = context(&c, DOCKERFILE, FILES);
    proxy.fault("GET", "/manifests/faults", 1, Fault::Corrupt);
    let built = build(&c, &ctx_c, &["--cache-from", cache]);
    assert_eq!(built.ran(), sorted(ALL), "{}", built.stderr);
    assert!(built.stderr.contains("not used"), "{}", built.stderr);
    assert_eq!(built.manifest, first.manifest);

    // A corrupt config (the first blob an import asks for): not used either.
    let Some(e) = with_busybox() else { return };
    let ctx_e = context(&e, DOCKERFILE, FILES);
    proxy.fault("GET", "/blobs/sha256:", 1, Fault::Corrupt);
    let built = build(&e, &ctx_e, &["--cache-from", cache]);
    assert_eq!(built.ran(), sorted(ALL), "{}", built.stderr);
    assert!(built.stderr.contains("not used"), "{}", built.stderr);
    assert_eq!(built.manifest, first.manifest);

    // The registry lost the layers (garbage-collected: HEAD and GET say 404). A lazy import
    // asks whether each layer is there (HEAD): each step warns and runs.
    let Some(d) = with_busybox() else { return };
    let ctx_d = context(&d, DOCKERFILE, FILES);
    for layer in compressed_layers(a) {
        for method in ["HEAD", "GET"] {
            proxy.fault(
                method,
                &format!("/blobs/{layer}"),
                100,
                Fault::Status(404, None),
            );
        }
    }
    let built = build(&d, &ctx_d, &["--cache-from", cache]);
    assert_eq!(built.ran(), sorted(ALL), "{}", built.stderr);
    assert_eq!(built.manifest, first.manifest);
    let lost = built
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains("running the step"))
        .count();
    assert_eq!(lost, ALL.len(), "{}", built.stderr);
}

#[test]
fn a_refused_export_fails_the_build_unless_ignore_error() {
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let Some(a) = with_busybox() else { return };
    let proxy = Proxy::start(&registry.addr);
    proxy.fault("PUT", "/manifests/", 100, Fault::Status(403, None));
    let ctx = context(&a, DOCKERFILE, FILES);
    let cache = format!("{}/cache/app:refused", proxy.addr);
    let out = a
        .cmd()
        .args(["build", "--progress=plain", "--cache-to"])
        .arg(format!("type=registry,ref={cache}"))
        .arg(&ctx)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: exporting the cache to {cache}: PUT ")),
        "{stderr}"
    );

    let built = build(
        &a,
        &ctx,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache},ignore-error=true"),
        ],
    );
    assert!(
        built.stderr.lines().any(|l| l
            .starts_with(&format!("warning: exporting the cache to {cache}: PUT "))
            && l.contains("ignore-error=true")),
        "{}",
        built.stderr
    );
}

#[test]
fn a_registry_refusing_the_config_media_type_gets_the_fallback() {
    let Some(shared) = Shared::new("fallback") else {
        return;
    };
    // As a registry that validates config media types answers kiln's own.
    shared
        .proxy
        .fault("PUT", "/manifests/", 1, Fault::Status(400, None));
    let first = shared.export_from_a();
    let Shared {
        proxy, b, cache, ..
    } = &shared;
    assert!(
        first.stderr.contains(&format!(
            "{cache} refused the cache config's media type: it was sent as application/vnd.oci.image.config.v1+json"
        )),
        "{}",
        first.stderr
    );
    // The blobs went up once; the second manifest only needed the checks.
    assert!(exported(&first.stderr, cache).contains("(0 sent, 7 already there"));
    assert_eq!(proxy.count("PUT", "/manifests/"), 2);

    let ctx_b = context(b, DOCKERFILE, FILES);
    let second = build(b, &ctx_b, &["--cache-from", cache]);
    assert_eq!(second.ran(), Vec::<&str>::new(), "{}", second.stderr);
    assert_eq!(second.manifest, first.manifest);
}

#[test]
fn an_image_pushed_with_an_inline_cache_is_a_cache_source() {
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let Some((a, b)) = runners() else { return };
    let image = format!("{}/team/inline:1", registry.addr);
    let ctx_a = context(&a, DOCKERFILE, FILES);
    let first = build(
        &a,
        &ctx_a,
        &["--cache-to", "type=inline", "--push", "-t", &image],
    );
    // mode=min: the records of the image's own layers, the final stage's four.
    assert!(
        first
            .stderr
            .contains("inline cache: 4 records in the image's config"),
        "{}",
        first.stderr
    );

    // B builds from the pushed image: the final stage hits, the deps stage (whose layers the
    // image does not have) runs; with an inline cache of its own, B's image is A's.
    let ctx_b = context(&b, DOCKERFILE, FILES);
    let second = build(
        &b,
        &ctx_b,
        &["--cache-from", &image, "--cache-to", "type=inline"],
    );
    assert_eq!(
        second.ran(),
        sorted(&["RUN echo deps > /deps", "COPY lib.txt /lib.txt"]),
        "{}",
        second.stderr
    );
    assert_eq!(second.manifest, first.manifest);

    // An image built on it does not carry its cache on.
    let child = a.path("child");
    crate::support::write_context(&child, &format!("FROM {image}\nRUN true\n"), &[]);
    let out = a.ok(&["build", "-q", "-t", "child:1", child.to_str().unwrap()]);
    assert!(out.starts_with("sha256:"));
    let store = a.store();
    let desc = store.resolve("docker.io/library/child:1").unwrap().unwrap();
    let config = store
        .read_config(&store.read_manifest(&desc).unwrap())
        .unwrap();
    assert!(!config.extra.contains_key("kiln.cache.v1"), "{config:?}");
    let desc = store.resolve(&image).unwrap().unwrap();
    let config = store
        .read_config(&store.read_manifest(&desc).unwrap())
        .unwrap();
    assert!(config.extra.contains_key("kiln.cache.v1"));
}

#[test]
fn bad_cache_flags_are_refused_by_name() {
    let kiln = Kiln::new();
    for (flag, value, message) in [
        (
            "--cache-from",
            "type=inline",
            "cache type \"inline\" is not supported",
        ),
        ("--cache-to", "type=inline,mode=max", "expected min"),
        (
            "--cache-to",
            "type=gha,url=x",
            "cache type \"gha\" is not supported",
        ),
        (
            "--cache-to",
            "type=registry,ref=r/x,mode=all",
            "mode=\"all\" is not valid",
        ),
        (
            "--cache-to",
            "type=registry,ref=r/x,flux=1",
            "unknown option \"flux\"",
        ),
        (
            "--cache-from",
            "type=local,dest=x",
            "unknown option \"dest\"",
        ),
    ] {
        let out = kiln
            .cmd()
            .args(["build", flag, value, "."])
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(message), "{flag} {value}: {stderr}");
    }
}

/// The compressed layer blobs a store made for its exports (`cache/compressed/*.gzip`).
fn compressed_layers(kiln: &Kiln) -> Vec<String> {
    let dir = kiln.root.join("cache/compressed");
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let record: serde_json::Value =
            serde_json::from_slice(&fs::read(entry.unwrap().path()).unwrap()).unwrap();
        out.push(record["digest"].as_str().unwrap().to_owned());
    }
    assert!(!out.is_empty());
    out
}
