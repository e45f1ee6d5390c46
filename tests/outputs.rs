//! `kiln build --output` and `--push`, read back by tools kiln did not write: the root
//! filesystem as files (`type=local`) and as a tar (`type=tar`, listed by GNU tar), the OCI
//! archive (`skopeo inspect`, `skopeo copy` + `umoci unpack`), the docker archive (`skopeo
//! inspect`, `podman load` and `podman run`), and a push to the real registry server (`skopeo
//! inspect`, `podman run` of the pulled image). The image deletes a base file and an applet link
//! (so whiteouts matter), writes files with their own mode and owner, and adds a symlink.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_registry::Digest;
use serde_json::Value;

use crate::support::busybox::busybox_rootfs;
use crate::support::podman::Podman;
use crate::support::registry::{Config, RegistryServer};
use crate::support::{Kiln, context, run, tool, with_busybox};

const DOCKERFILE: &str = "FROM busybox\n\
     COPY app.conf /etc/app.conf\n\
     RUN rm /etc/group /usr/bin/awk && mkdir -p /data \
     && echo 'hello from kiln' > /data/hello.txt && chmod 0640 /data/hello.txt \
     && chown 1000:1001 /data/hello.txt && ln -s hello.txt /data/link\n\
     CMD [\"cat\", \"/data/hello.txt\"]\n";

/// What the image's CMD prints.
const CMD_OUTPUT: &str = "hello from kiln\n";

/// A store with the busybox base and the test's build context.
fn fixture() -> Option<(Kiln, PathBuf)> {
    let kiln = with_busybox()?;
    let ctx = context(&kiln, DOCKERFILE, &[("app.conf", "key = value\n")]);
    Some((kiln, ctx))
}

/// One entry of a root filesystem as a tool shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `ls -l`'s mode string (`drwxr-xr-x`, `-rw-r-----`, `lrwxrwxrwx`).
    mode: String,
    /// `uid/gid`.
    owner: String,
    /// The content's digest (regular files) or the link target (symlinks).
    data: String,
}

/// Every entry below `root` (the root itself excluded), by relative path.
fn tree(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let data = if meta.file_type().is_symlink() {
                fs::read_link(&path).unwrap().to_str().unwrap().to_owned()
            } else if meta.is_file() {
                Digest::of(&fs::read(&path).unwrap()).to_string()
            } else {
                String::new()
            };
            out.insert(
                rel,
                Entry {
                    mode: mode_string(&meta),
                    owner: format!("{}/{}", meta.uid(), meta.gid()),
                    data,
                },
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `ls -l`'s mode string.
fn mode_string(meta: &fs::Metadata) -> String {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        '-'
    };
    let mode = meta.mode();
    let mut s = String::from(kind);
    for (shift, special, set, unset) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `tar --numeric-owner -tvf FILE` as path → (mode, owner, link target), directories without
/// their trailing slash.
fn tar_listing(tar: &Path, file: &Path) -> BTreeMap<String, (String, String, String)> {
    let out = run(Command::new(tar)
        .args(["--numeric-owner", "-tvf"])
        .arg(file));
    let mut listing = BTreeMap::new();
    for line in out.lines() {
        // mode owner size date time name [-> target]
        let fields: Vec<&str> = line.split_whitespace().collect();
        let rest = fields[5..].join(" ");
        let (name, link) = match rest.split_once(" -> ") {
            Some((name, link)) => (name.to_owned(), link.to_owned()),
            None => (rest.clone(), String::new()),
        };
        assert!(
            !name.contains(" link to "),
            "unexpected hard link in the tar: {line}"
        );
        let name = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        listing.insert(name, (fields[0].to_owned(), fields[1].to_owned(), link));
    }
    listing
}

/// The listing `tar -tvf` would give of `tree`.
fn as_listing(tree: &BTreeMap<String, Entry>) -> BTreeMap<String, (String, String, String)> {
    tree.iter()
        .map(|(path, e)| {
            let link = if e.mode.starts_with('l') {
                e.data.clone()
            } else {
                String::new()
            };
            (path.clone(), (e.mode.clone(), e.owner.clone(), link))
        })
        .collect()
}

/// The manifest digest and config of a tagged image in the store.
fn stored(kiln: &Kiln, name: &str) -> (String, kiln_builder::image::ImageConfig) {
    let store = kiln.store();
    let desc = store.resolve(name).unwrap().unwrap();
    let config = store
        .read_config(&store.read_manifest(&desc).unwrap())
        .unwrap();
    (desc.digest().to_string(), config)
}

fn skopeo_json(skopeo: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&run(Command::new(skopeo).args(args))).unwrap()
}

#[test]
fn every_output_type_reads_back_with_tools_kiln_did_not_write() {
    let Some((kiln, ctx)) = fixture() else { return };
    let (Some(skopeo), Some(umoci), Some(tar)) = (tool("skopeo"), tool("umoci"), tool("tar"))
    else {
        return;
    };
    let Some(podman) = Podman::new() else { return };
    let local = kiln.path("rootfs");
    let tarball = kiln.path("rootfs.tar");
    let oci = kiln.path("image-oci.tar");
    let docker = kiln.path("image-docker.tar");
    let spec = |kind: &str, dest: &Path| format!("type={kind},dest={}", dest.display());
    let stdout = kiln.ok(&[
        "build",
        "-t",
        "outputs:test",
        "-o",
        local.to_str().unwrap(),
        "--output",
        &spec("tar", &tarball),
        "-o",
        &spec("oci", &oci),
        "-o",
        &spec("docker", &docker),
        ctx.to_str().unwrap(),
    ]);
    let (manifest_digest, config) = stored(&kiln, "docker.io/library/outputs:test");
    let config_digest = Digest::of(&config.to_canonical_json().unwrap());
    assert_eq!(
        stdout.trim(),
        config_digest.to_string(),
        "the image ID only"
    );

    // type=local: the files, their modes and owners, the symlink; the deleted files absent.
    let files = tree(&local);
    let entry = |path: &str| files.get(path).unwrap_or_else(|| panic!("{path} missing"));
    assert_eq!(
        fs::read_to_string(local.join("data/hello.txt")).unwrap(),
        CMD_OUTPUT
    );
    assert_eq!(
        (
            entry("data/hello.txt").mode.as_str(),
            entry("data/hello.txt").owner.as_str()
        ),
        ("-rw-r-----", "1000/1001")
    );
    assert_eq!(
        fs::read_to_string(local.join("etc/app.conf")).unwrap(),
        "key = value\n"
    );
    assert_eq!(
        (
            entry("data/link").mode.as_str(),
            entry("data/link").data.as_str()
        ),
        ("lrwxrwxrwx", "hello.txt")
    );
    assert_eq!(entry("tmp").mode, "drwxrwxrwt");
    // Exactly the base, less what RUN deleted, plus what COPY and RUN added.
    let mut expected = tree(&busybox_rootfs().unwrap().dir);
    for deleted in ["etc/group", "usr/bin/awk"] {
        assert!(
            expected.remove(deleted).is_some(),
            "{deleted} is in the base"
        );
    }
    let copied = fs::metadata(ctx.join("app.conf")).unwrap();
    for (path, mode, owner, data) in [
        (
            "etc/app.conf",
            mode_string(&copied),
            "0/0",
            Digest::of(b"key = value\n").to_string(),
        ),
        ("data", "drwxr-xr-x".into(), "0/0", String::new()),
        (
            "data/hello.txt",
            "-rw-r-----".into(),
            "1000/1001",
            Digest::of(CMD_OUTPUT.as_bytes()).to_string(),
        ),
        ("data/link", "lrwxrwxrwx".into(), "0/0", "hello.txt".into()),
    ] {
        let owner = owner.to_owned();
        expected.insert(path.to_owned(), Entry { mode, owner, data });
    }
    assert_eq!(files, expected);

    // type=tar: GNU tar lists exactly the same entries, modes, owners and links.
    assert_eq!(tar_listing(&tar, &tarball), as_listing(&files));

    // type=oci: skopeo reads the archive as kiln's image; umoci unpacks the same files.
    let inspected = skopeo_json(
        &skopeo,
        &["inspect", &format!("oci-archive:{}", oci.display())],
    );
    assert_eq!(inspected["Digest"], manifest_digest.as_str());
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        config.rootfs.diff_ids.len()
    );
    let layout = kiln.path("layout");
    run(Command::new(&skopeo).args([
        "copy",
        &format!("oci-archive:{}", oci.display()),
        &format!("oci:{}:copied", layout.display()),
    ]));
    let bundle = kiln.path("bundle");
    run(Command::new(&umoci)
        .args(["unpack", "--image"])
        .arg(format!("{}:copied", layout.display()))
        .arg(&bundle));
    assert_eq!(tree(&bundle.join("rootfs")), files);

    // type=docker: skopeo reads the config kiln wrote; podman loads it under the -t name,
    // with the same image ID, and runs it.
    let docker_ref = format!("docker-archive:{}", docker.display());
    let docker_config = skopeo_json(&skopeo, &["inspect", "--config", &docker_ref]);
    assert_eq!(
        docker_config["config"]["Cmd"],
        serde_json::json!(["cat", "/data/hello.txt"])
    );
    let diff_ids: Vec<String> = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        docker_config["rootfs"]["diff_ids"],
        serde_json::json!(diff_ids)
    );
    let loaded = podman.ok(&["load", "-i", docker.to_str().unwrap()]);
    // The archive's RepoTags are docker's short form (`outputs:test`), which podman 4 qualifies
    // with `localhost/` (docker load with `docker.io/library/`).
    assert!(
        [
            "Loaded image: localhost/outputs:test",
            "Loaded image: docker.io/library/outputs:test"
        ]
        .contains(&loaded.trim()),
        "{loaded}"
    );
    let id = podman.ok(&["image", "inspect", "--format", "{{.Id}}", "outputs:test"]);
    assert_eq!(id.trim(), config_digest.hex());
    let printed = podman.ok(&["run", "--rm", "--network=none", "outputs:test"]);
    assert_eq!(printed, CMD_OUTPUT);
}

#[test]
fn outputs_on_standard_output_carry_only_the_archive() {
    let Some((kiln, ctx)) = fixture() else { return };
    let Some(tar) = tool("tar") else { return };
    let tarball = kiln.path("rootfs.tar");
    let oci = kiln.path("image.tar");
    let ctx = ctx.to_str().unwrap();
    kiln.ok(&[
        "build",
        "-q",
        "-t",
        "app:1",
        "-o",
        &format!("type=tar,dest={}", tarball.display()),
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        ctx,
    ]);
    // Cached rebuilds: the same image, so the same bytes, and nothing else on stdout.
    let stdout_of = |spec: &str| {
        let out = kiln
            .cmd()
            .args(["build", "-t", "app:1", "-o", spec, ctx])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let bare = stdout_of("-");
    assert!(
        bare == fs::read(&tarball).unwrap(),
        "`-o -` is the rootfs tar"
    );
    let streamed = stdout_of("type=tar,dest=-");
    assert!(streamed == bare);
    let oci_stream = stdout_of("type=oci,dest=-");
    assert!(oci_stream == fs::read(&oci).unwrap(), "the OCI archive");
    // And tar reads what came through the pipe.
    let piped = kiln.path("piped.tar");
    fs::write(&piped, &bare).unwrap();
    let listed = run(Command::new(&tar).arg("-tf").arg(&piped));
    assert!(listed.lines().any(|l| l == "data/hello.txt"), "{listed}");
}

#[test]
fn push_sends_every_tag_and_podman_runs_the_image() {
    let Some((kiln, ctx)) = fixture() else { return };
    let Some(skopeo) = tool("skopeo") else { return };
    let Some(podman) = Podman::new() else { return };
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let first = format!("{}/outputs/app:1", registry.addr);
    let second = format!("{}/outputs/other:latest", registry.addr);
    kiln.ok(&[
        "build",
        "--push",
        "-t",
        &first,
        "-t",
        &second,
        ctx.to_str().unwrap(),
    ]);
    // The store keeps the layers uncompressed; what was pushed is the same image (same config)
    // with gzip layers, the manifest `for_distribution` gives.
    let store = kiln.store();
    let local = store.resolve(&first).unwrap().unwrap();
    let pushed = store
        .for_distribution(&local, kiln_builder::layer::Compression::Gzip)
        .unwrap();
    let local_config = store
        .read_manifest(&local)
        .unwrap()
        .config()
        .digest()
        .to_string();
    for name in [&first, &second] {
        let url = format!("docker://{name}");
        let inspected = skopeo_json(&skopeo, &["inspect", "--tls-verify=false", &url]);
        assert_eq!(inspected["Digest"], pushed.digest().to_string(), "{name}");
        let raw = skopeo_json(&skopeo, &["inspect", "--raw", "--tls-verify=false", &url]);
        assert_eq!(raw["config"]["digest"], local_config.as_str(), "{name}");
        let layers = raw["layers"].as_array().unwrap();
        assert!(!layers.is_empty());
        for layer in layers {
            assert_eq!(
                layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
                "{name}"
            );
        }
    }
    let printed = podman.ok(&[
        "run",
        "--rm",
        "--network=none",
        "--tls-verify=false",
        &first,
    ]);
    assert_eq!(printed, CMD_OUTPUT);
}

#[test]
fn image_and_registry_outputs_name_and_push_as_buildx_does() {
    let Some((kiln, ctx)) = fixture() else { return };
    let Some(skopeo) = tool("skopeo") else { return };
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let pushed = format!("{}/outputs/registry:1", registry.addr);
    kiln.ok(&[
        "build",
        "-q",
        "-t",
        "outputs:tag",
        "--output",
        "type=image,name=outputs:extra",
        "--output",
        &format!("type=registry,name={pushed}"),
        ctx.to_str().unwrap(),
    ]);
    let store = kiln.store();
    let image = store
        .resolve("docker.io/library/outputs:tag")
        .unwrap()
        .unwrap();
    for name in ["docker.io/library/outputs:extra", pushed.as_str()] {
        let named = store.resolve(name).unwrap().unwrap();
        assert_eq!(named.digest(), image.digest(), "{name}");
    }
    let raw = skopeo_json(
        &skopeo,
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{pushed}"),
        ],
    );
    assert_eq!(
        raw["config"]["digest"],
        store
            .read_manifest(&image)
            .unwrap()
            .config()
            .digest()
            .to_string()
    );
    // Only the outputs' names were pushed, not the -t one (no --push).
    assert_eq!(
        registry.requests("PUT", "/v2/outputs/registry/manifests/1"),
        1
    );
    assert_eq!(
        registry.requests("PUT", "/v2/library/outputs/manifests/tag"),
        0
    );
}

#[test]
fn annotations_reach_the_manifest_in_the_store_and_the_registry() {
    let Some((kiln, ctx)) = fixture() else { return };
    let Some(skopeo) = tool("skopeo") else { return };
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let name = format!("{}/outputs/annotated:1", registry.addr);
    let annotate = [
        "--annotation",
        "org.opencontainers.image.source=https://example.com/app",
        "--annotation",
        "manifest[linux/arm64]:elsewhere=1",
    ];
    kiln.ok(&[
        &["build", "-q", "--push", "-t", &name],
        &annotate[..],
        &[ctx.to_str().unwrap()],
    ]
    .concat());
    let expected =
        serde_json::json!({"org.opencontainers.image.source": "https://example.com/app"});
    let store = kiln.store();
    let local = store
        .read_manifest(&store.resolve(&name).unwrap().unwrap())
        .unwrap();
    assert_eq!(serde_json::to_value(local.annotations()).unwrap(), expected);
    let raw = skopeo_json(
        &skopeo,
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    );
    assert_eq!(raw["annotations"], expected);
    // What kiln cannot write yet is refused before the build.
    let out = kiln.output(&["build", "--annotation", "index:k=v", ctx.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("index annotations need an image index"),
        "{stderr}"
    );
}

#[test]
fn bad_outputs_and_push_without_a_tag_fail_before_the_build() {
    let kiln = Kiln::new();
    // The context does not exist: reaching the build would fail differently.
    let missing = kiln.path("no-such-context");
    let missing = missing.to_str().unwrap();
    let (_, stderr) = kiln.fails(&["build", "--push", missing]);
    assert!(
        stderr.contains("--push needs a name to push to: give -t NAME[:TAG]"),
        "{stderr}"
    );
    let (_, stderr) = kiln.fails(&[
        "build",
        "-o",
        "type=tar,dest=-",
        "-o",
        "type=oci,dest=-",
        missing,
    ]);
    assert!(
        stderr.contains("only one output can go to standard output"),
        "{stderr}"
    );
    // Spec errors are usage errors (exit code 2), with the reason.
    for (spec, reason) in [
        ("type=cacheonly", "unknown output type \"cacheonly\""),
        ("type=image,push=yes", "push=\"yes\": give true or false"),
        (
            "type=local,dest=out,compression=zstd",
            "type=local does not take \"compression\"",
        ),
        ("type=oci", "type=oci needs dest=PATH"),
        (
            "type=local,dest=-",
            "type=local cannot write to standard output",
        ),
    ] {
        let out = kiln.output(&["build", "-o", spec, missing]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(reason), "{spec}: {stderr}");
    }
    assert!(!kiln.root.join("oci").exists() || kiln.blob_count() == 0);
}

#[test]
fn a_tar_is_never_written_to_a_terminal() {
    // util-linux's `script` runs kiln with a pseudo-terminal as its standard output.
    let Some(script) = tool("script") else { return };
    let kiln = Kiln::new();
    let missing = kiln.path("no-such-context");
    for spec in ["-", "type=tar,dest=-", "type=docker,dest=-"] {
        let command = format!(
            "'{}' build -o '{spec}' '{}'",
            env!("CARGO_BIN_EXE_kiln"),
            missing.display()
        );
        let out = Command::new(&script)
            .args(["-qec", &command, "/dev/null"])
            .env("KILN_ROOT", &kiln.root)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{spec}: {shown}");
        assert!(
            shown.contains("refusing to write a tar to a terminal; redirect standard output"),
            "{spec}: {shown}"
        );
    }
}
