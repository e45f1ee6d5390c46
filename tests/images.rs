//! The docker-style image workflow end to end, through the real `kiln` binary: import a busybox
//! rootfs, list, tag, inspect, save, load, rmi and prune; and what kiln writes read back by tools
//! kiln did not write (skopeo, umoci).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use kiln_registry::Digest;
use serde_json::Value;

use crate::support::busybox::{busybox_rootfs, busybox_rootfs_tar};
use crate::support::{Kiln, dir_names, run, tool};

/// `kiln inspect NAME`, parsed: the one object of the array.
fn inspect(kiln: &Kiln, name: &str) -> Value {
    let out: Value = serde_json::from_str(&kiln.ok(&["inspect", name])).unwrap();
    assert_eq!(out.as_array().map(Vec::len), Some(1), "{out}");
    out[0].clone()
}

/// The manifest digest a name points at.
fn manifest_digest(kiln: &Kiln, name: &str) -> String {
    inspect(kiln, name)["Descriptor"]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Imports `tar` as `name` and returns the printed image ID.
fn import(kiln: &Kiln, tar: &Path, name: &str) -> String {
    let out = kiln.ok(&["import", tar.to_str().unwrap(), name]);
    let id = out.trim().to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out:?}");
    id
}

/// Compresses a file with a command-line compressor (`gzip`, `zstd`) into `dest`.
fn compress(tool_path: &Path, src: &Path, dest: &Path) {
    let out = Command::new(tool_path)
        .args(["-c"])
        .arg(src)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::write(dest, out.stdout).unwrap();
}

#[test]
fn import_is_reproducible_whatever_the_compression() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let (Some(gzip), Some(zstd)) = (tool("gzip"), tool("zstd")) else {
        return;
    };
    let kiln = Kiln::new();
    let id = import(&kiln, &tar, "busybox");
    let digest = manifest_digest(&kiln, "busybox");
    // The same name again, another name, and other stores: the same image every time.
    assert_eq!(import(&kiln, &tar, "busybox"), id);
    assert_eq!(import(&kiln, &tar, "again:1"), id);
    assert_eq!(manifest_digest(&kiln, "again:1"), digest);
    let gz = kiln.path("rootfs.tar.gz");
    compress(&gzip, &tar, &gz);
    let zst = kiln.path("rootfs.tar.zst");
    compress(&zstd, &tar, &zst);
    for input in [&gz, &zst] {
        let other = Kiln::new();
        assert_eq!(import(&other, input, "busybox"), id, "{}", input.display());
        assert_eq!(manifest_digest(&other, "busybox"), digest);
    }
    // From standard input.
    let other = Kiln::new();
    let out = run(other
        .cmd()
        .args(["import", "-", "busybox"])
        .stdin(fs::File::open(&tar).unwrap()));
    assert_eq!(out.trim(), id);
    // The layer is the tarball itself: its diffID is the tarball's digest.
    let image = inspect(&kiln, "busybox");
    let tar_digest = Digest::of(&fs::read(&tar).unwrap()).to_string();
    assert_eq!(image["RootFS"]["Layers"], serde_json::json!([tar_digest]));
    // Another epoch, another image.
    let later = run(kiln.cmd().env("SOURCE_DATE_EPOCH", "1700000001").args([
        "import",
        tar.to_str().unwrap(),
        "later",
    ]));
    assert_ne!(later.trim(), id);
}

#[test]
fn import_refuses_what_it_cannot_use() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let kiln = Kiln::new();
    let text = kiln.path("notes.txt");
    fs::write(&text, "not a tarball\n".repeat(100)).unwrap();
    let truncated = kiln.path("cut.tar");
    fs::write(&truncated, &fs::read(&tar).unwrap()[..100_000]).unwrap();
    let tar = tar.to_str().unwrap();
    let table: [(&[&str], &str); 6] = [
        (
            &["import", text.to_str().unwrap(), "x"],
            "not a valid tar archive: bad tar header checksum at byte 0",
        ),
        (
            &["import", truncated.to_str().unwrap(), "x"],
            "the tar archive is truncated at byte 100000",
        ),
        (
            &["import", tar, "Bad:name"],
            "invalid reference format \"Bad:name\"",
        ),
        (
            &["import", "--change", "RUN echo hi", tar, "x"],
            "RUN is not a valid --change instruction",
        ),
        (
            &["import", "--change", "EXPOSE 80/tcpx", tar, "x"],
            "--change EXPOSE: invalid proto: tcpx",
        ),
        (
            &["import", "http://example.com/x.tar", "x"],
            "URL is not supported",
        ),
    ];
    for (args, expected) in table {
        let (_, stderr) = kiln.fails(args);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // Nothing was tagged, and the store is sound.
    assert_eq!(kiln.ok(&["images", "-q"]), "");
    assert!(kiln.store().verify().unwrap().is_empty());
}

#[test]
fn changes_reach_the_config() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let kiln = Kiln::new();
    kiln.ok(&[
        "import",
        "--change",
        r#"CMD ["/bin/sh"]"#,
        "-c",
        "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin GREETING=hi",
        "-c",
        "WORKDIR /root",
        "-c",
        "EXPOSE 8080",
        "-c",
        "LABEL org.opencontainers.image.title=\"busy box\"",
        "-c",
        "USER nobody",
        "-m",
        "imported for tests",
        tar.to_str().unwrap(),
        "busybox:configured",
    ]);
    let image = inspect(&kiln, "busybox:configured");
    let config = &image["Config"];
    assert_eq!(config["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(
        config["Env"],
        serde_json::json!(["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi"])
    );
    assert_eq!(config["WorkingDir"], "/root");
    assert_eq!(config["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(
        config["Labels"],
        serde_json::json!({"org.opencontainers.image.title": "busy box"})
    );
    assert_eq!(config["User"], "nobody");
    assert_eq!(image["Comment"], "imported for tests");
}

#[test]
fn images_lists_newest_first_in_docker_columns() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let kiln = Kiln::new();
    let tar = tar.to_str().unwrap();
    let old = run(kiln
        .cmd()
        .env("SOURCE_DATE_EPOCH", "1600000000")
        .args(["import", tar, "old:1"]))
    .trim()
    .to_owned();
    let new = import(&kiln, Path::new(tar), "busybox");
    kiln.ok(&["tag", "busybox", "registry.example.com:5000/team/app:v2"]);
    let size = inspect(&kiln, "busybox")["Size"].as_u64().unwrap();
    assert!(size > 500_000, "the compressed busybox layer: {size}");

    let out = kiln.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    // Columns as wide as their widest cell plus 3 (at least 10), as docker's tabwriter.
    let repository_width = "registry.example.com:5000/team/app".len() + 3;
    assert_eq!(
        lines[0],
        format!(
            "{:repository_width$}{:10}{:15}{:14}SIZE",
            "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
        ),
        "{out}"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    // Newest first; the two tags of the newer image by name; the old one last.
    assert_eq!(rows[0][..3], ["busybox", "latest", &new[7..19]]);
    assert_eq!(
        rows[1][..3],
        ["registry.example.com:5000/team/app", "v2", &new[7..19]]
    );
    assert_eq!(rows[2][..3], ["old", "1", &old[7..19]]);
    for row in &rows {
        assert!(row[3].ends_with(" years ago"), "{row:?}");
        assert!(row[4].ends_with("MB") || row[4].ends_with("kB"), "{row:?}");
    }
    assert_eq!(
        kiln.ok(&["images", "-q"]),
        format!("{}\n{}\n{}\n", &new[7..19], &new[7..19], &old[7..19])
    );
    assert_eq!(
        kiln.ok(&["images", "-q", "--no-trunc", "old"]),
        format!("{old}\n")
    );
    let digests = kiln.ok(&["images", "--digests", "busybox:latest"]);
    assert!(digests.lines().next().unwrap().contains("DIGEST"));
    assert!(
        digests.contains(&manifest_digest(&kiln, "busybox")),
        "{digests}"
    );
    assert_eq!(digests.lines().count(), 2);
}

#[test]
fn inspect_shows_docker_fields() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let kiln = Kiln::new();
    let id = import(&kiln, &tar, "busybox");
    kiln.ok(&["tag", "busybox", "mine/busybox:1"]);
    let text = kiln.ok(&["inspect", &id[7..19]]);
    assert!(
        text.starts_with("[\n    {\n        \"Id\": \"sha256:"),
        "{text}"
    );
    let image: Value = serde_json::from_str(&text).unwrap();
    let image = &image[0];
    assert_eq!(image["Id"], id);
    assert_eq!(
        image["RepoTags"],
        serde_json::json!(["busybox:latest", "mine/busybox:1"])
    );
    assert_eq!(image["RepoDigests"], serde_json::json!([]));
    assert_eq!(image["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(image["Os"], "linux");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(image["Architecture"], arch);
    assert_eq!(image["RootFS"]["Type"], "layers");
    let desc = kiln
        .store()
        .resolve("docker.io/library/busybox:latest")
        .unwrap()
        .unwrap();
    assert_eq!(image["Descriptor"]["digest"], desc.digest().to_string());
    assert_eq!(
        image["Descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    // Several at once; a missing one is reported after the array.
    let (stdout, stderr) = kiln.fails(&["inspect", "busybox", "nope"]);
    let found: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(stderr, "error: No such image: nope:latest\n");
}

#[test]
fn tag_and_rmi_like_docker() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let kiln = Kiln::new();
    let id = import(&kiln, &tar, "busybox");
    let manifest = manifest_digest(&kiln, "busybox");
    let layer = kiln
        .store()
        .read_manifest(
            &kiln
                .store()
                .resolve("docker.io/library/busybox:latest")
                .unwrap()
                .unwrap(),
        )
        .unwrap()
        .layers()[0]
        .digest()
        .to_string();
    assert_eq!(kiln.ok(&["tag", &id[7..19], "other/name:v1"]), "");
    assert_eq!(kiln.blob_count(), 3);

    // Untagging one of two names deletes nothing.
    assert_eq!(
        kiln.ok(&["rmi", "other/name:v1"]),
        "Untagged: other/name:v1\n"
    );
    assert_eq!(kiln.blob_count(), 3);

    // An ID with several tags needs --force.
    kiln.ok(&["tag", "busybox", "other/name:v1"]);
    let (_, stderr) = kiln.fails(&["rmi", &id[7..19]]);
    assert_eq!(
        stderr,
        format!(
            "error: conflict: unable to delete {} (must be forced) - image is referenced by 2 tags: busybox:latest, other/name:v1\n",
            &id[7..19]
        )
    );
    let out = kiln.ok(&["rmi", "-f", &id[7..19]]);
    assert_eq!(
        out,
        format!(
            "Untagged: busybox:latest\nUntagged: other/name:v1\nDeleted: {id}\nDeleted: {manifest}\nDeleted: {layer}\n"
        )
    );
    assert_eq!(kiln.blob_count(), 0);
    assert!(kiln.store().verify().unwrap().is_empty());
    assert_eq!(kiln.ok(&["images", "-q"]), "");

    // Two images sharing a layer: removing one keeps the layer.
    import(&kiln, &tar, "a:1");
    kiln.ok(&["import", "-c", "CMD [\"sh\"]", tar.to_str().unwrap(), "b:1"]);
    let out = kiln.ok(&["rmi", "a:1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Untagged: a:1");
    assert_eq!(lines.len(), 3, "config and manifest only: {out}");
    assert!(lines[1..].iter().all(|l| l.starts_with("Deleted: sha256:")));
    assert!(kiln.store().verify().unwrap().is_empty());
    assert!(kiln.ok(&["inspect", "b:1"]).contains("\"Id\""));

    // Errors per argument; the others still run.
    let (stdout, stderr) = kiln.fails(&["rmi", "nope", "b:1"]);
    assert_eq!(stderr, "error: No such image: nope:latest\n");
    assert!(
        stdout.starts_with("Untagged: b:1\nDeleted: sha256:"),
        "{stdout}"
    );
    let (_, stderr) = kiln.fails(&["tag", "b:1", "x"]);
    assert_eq!(stderr, "error: No such image: b:1\n");
    import(&kiln, &tar, "c");
    let (_, stderr) = kiln.fails(&["tag", "c", "Bad:x"]);
    assert_eq!(
        stderr,
        "error: invalid reference format \"Bad:x\": repository name must be lowercase\n"
    );
}

#[test]
fn rmi_and_prune_wait_for_running_builds() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let kiln = Kiln::new();
    import(&kiln, &tar, "busybox");
    let store = kiln.store();
    let lease = store.lease().unwrap();
    let (_, stderr) = kiln.fails(&["rmi", "busybox"]);
    assert!(
        stderr.contains("the store is in use by a running build"),
        "{stderr}"
    );
    let (_, stderr) = kiln.fails(&["prune"]);
    assert!(stderr.contains("in use by a running build"), "{stderr}");
    assert_eq!(kiln.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(kiln.blob_count(), 3);

    // --force untags and leaves the blobs to prune.
    let out = kiln.output(&["rmi", "--force", "busybox"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Untagged: busybox:latest\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("blobs are kept until `kiln prune`"));
    assert_eq!(kiln.blob_count(), 3);
    drop(lease);

    let out = kiln.ok(&["prune"]);
    assert!(out.starts_with("Deleted blobs:\n"), "{out}");
    assert_eq!(out.matches("deleted: sha256:").count(), 3, "{out}");
    assert!(out.ends_with("MB\n") || out.ends_with("kB\n"), "{out}");
    assert_eq!(kiln.blob_count(), 0);
    assert!(kiln.store().verify().unwrap().is_empty());
    assert_eq!(kiln.ok(&["prune"]), "Total reclaimed space: 0B\n");
}

#[test]
fn prune_keeps_what_tags_reach() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let kiln = Kiln::new();
    import(&kiln, &tar, "busybox");
    let store = kiln.store();
    let (garbage, _) = store.put_blob(&vec![1u8; 2000]).unwrap();
    // The image's one layer: its chainID is its diffID.
    let chain = Digest::of(&fs::read(&tar).unwrap());
    let snapshots = kiln.root.join("snapshots");
    fs::create_dir_all(snapshots.join(chain.hex()).join("fs")).unwrap();
    let stale = Digest::of(b"a stack of layers no image has");
    fs::create_dir_all(snapshots.join(stale.hex()).join("fs")).unwrap();
    fs::write(snapshots.join(stale.hex()).join("fs/file"), vec![0u8; 3000]).unwrap();

    let out = kiln.ok(&["prune"]);
    assert_eq!(
        out,
        format!(
            "Deleted blobs:\ndeleted: {garbage}\n\nDeleted snapshots:\ndeleted: {}\n\nTotal reclaimed space: 5kB\n",
            stale.hex()
        )
    );
    assert_eq!(dir_names(&snapshots), [chain.hex()]);
    assert_eq!(kiln.blob_count(), 3);
    assert!(kiln.store().verify().unwrap().is_empty());
}

#[test]
fn save_and_load_keep_every_digest() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let kiln = Kiln::new();
    let id = import(&kiln, &tar, "busybox");
    kiln.ok(&["tag", "busybox", "localhost:5000/tools/busybox:1.35"]);
    let digest = manifest_digest(&kiln, "busybox");
    for format in ["oci-archive", "docker-archive"] {
        let file = kiln.path(&format!("{format}.tar"));
        let file = file.to_str().unwrap();
        let args = ["save", "--format", format, "-o", file];
        kiln.ok(&[&args[..], &["busybox", "localhost:5000/tools/busybox:1.35"]].concat());
        let first = fs::read(file).unwrap();
        assert_eq!(
            fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o644
        );
        kiln.ok(&[&args[..], &["busybox", "localhost:5000/tools/busybox:1.35"]].concat());
        assert_eq!(
            fs::read(file).unwrap(),
            first,
            "{format}: saving is deterministic"
        );

        let other = Kiln::new();
        assert_eq!(
            other.ok(&["load", "-i", file]),
            "Loaded image: busybox:latest\nLoaded image: localhost:5000/tools/busybox:1.35\n",
            "{format}"
        );
        assert_eq!(inspect(&other, "busybox")["Id"], id, "{format}");
        assert_eq!(manifest_digest(&other, "busybox"), digest, "{format}");
        assert_eq!(
            manifest_digest(&other, "localhost:5000/tools/busybox:1.35"),
            digest
        );
        assert!(other.store().verify().unwrap().is_empty());
        // From standard input too.
        let third = Kiln::new();
        run(third.cmd().arg("load").stdin(fs::File::open(file).unwrap()));
        assert_eq!(manifest_digest(&third, "busybox"), digest, "{format}");
    }

    // A save that fails writes nothing, not even a temporary file.
    let out_dir = kiln.path("out");
    fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("x.tar");
    let (_, stderr) = kiln.fails(&["save", "-o", dest.to_str().unwrap(), "busybox", "nope"]);
    assert_eq!(stderr, "error: No such image: nope:latest\n");
    assert!(dir_names(&out_dir).is_empty());

    // A load of a corrupt archive tags nothing.
    let mut bytes = fs::read(kiln.path("docker-archive.tar")).unwrap();
    let layer_at = bytes.len() / 2;
    bytes[layer_at] ^= 0x55;
    let bad = kiln.path("bad.tar");
    fs::write(&bad, bytes).unwrap();
    let other = Kiln::new();
    let (_, stderr) = other.fails(&["load", "-i", bad.to_str().unwrap()]);
    assert!(stderr.contains("diffID"), "{stderr}");
    assert_eq!(other.ok(&["images", "-q"]), "");
}

#[test]
fn skopeo_reads_what_kiln_writes() {
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let kiln = Kiln::new();
    let id = import(&kiln, &tar, "busybox");
    let digest = manifest_digest(&kiln, "busybox");
    let tar_digest = Digest::of(&fs::read(&tar).unwrap()).to_string();
    let skopeo_json = |reference: &str, config: bool| -> Value {
        let mut cmd = Command::new(&skopeo);
        cmd.arg("inspect");
        if config {
            cmd.args(["--raw", "--config"]);
        }
        serde_json::from_str(&run(cmd.arg(reference))).unwrap()
    };

    // The store itself is an OCI layout.
    let store_ref = format!(
        "oci:{}:docker.io/library/busybox:latest",
        kiln.oci_dir().display()
    );
    assert_eq!(skopeo_json(&store_ref, false)["Digest"], digest);

    // oci-archive.
    let oci = kiln.path("busybox-oci.tar");
    kiln.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci.to_str().unwrap(),
        "busybox",
    ]);
    let inspected = skopeo_json(&format!("oci-archive:{}", oci.display()), false);
    assert_eq!(inspected["Digest"], digest);
    let named = format!(
        "oci-archive:{}:docker.io/library/busybox:latest",
        oci.display()
    );
    assert_eq!(skopeo_json(&named, false)["Digest"], digest);

    // docker-archive: skopeo copies it (reading and verifying every layer) into an OCI layout.
    let docker = kiln.path("busybox-docker.tar");
    kiln.ok(&["save", "-o", docker.to_str().unwrap(), "busybox"]);
    let copied = kiln.path("copied");
    run(Command::new(&skopeo).args([
        "copy",
        "--insecure-policy",
        &format!("docker-archive:{}", docker.display()),
        &format!("oci:{}:x", copied.display()),
    ]));
    let config = skopeo_json(&format!("oci:{}:x", copied.display()), true);
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([tar_digest])
    );

    // And kiln loads what skopeo writes, keeping the image ID.
    let from_skopeo = kiln.path("from-skopeo.tar");
    run(Command::new(&skopeo).args([
        "copy",
        "--insecure-policy",
        &store_ref,
        &format!(
            "docker-archive:{}:skopeo/busybox:copied",
            from_skopeo.display()
        ),
    ]));
    let other = Kiln::new();
    assert_eq!(
        other.ok(&["load", "-i", from_skopeo.to_str().unwrap()]),
        "Loaded image: skopeo/busybox:copied\n"
    );
    assert_eq!(inspect(&other, "skopeo/busybox:copied")["Id"], id);
}

#[test]
fn umoci_unpacks_the_files_that_went_in() {
    let Some(rootfs) = busybox_rootfs() else {
        return;
    };
    let Some(umoci) = tool("umoci") else {
        return;
    };
    let kiln = Kiln::new();
    import(&kiln, &rootfs.tar, "busybox");
    // umoci's CLI only accepts tags matching [A-Za-z0-9._-]+, so the image also gets a plain
    // tag through the library (kiln's own names are full references).
    let store = kiln.store();
    let desc = store
        .resolve("docker.io/library/busybox:latest")
        .unwrap()
        .unwrap();
    store.tag("kiln-busybox", &desc).unwrap();
    let bundle = kiln.path("bundle");
    let mut cmd = Command::new(&umoci);
    cmd.arg("unpack");
    if !is_root() {
        cmd.arg("--rootless");
    }
    run(cmd
        .arg("--image")
        .arg(format!("{}:kiln-busybox", kiln.oci_dir().display()))
        .arg(&bundle));
    let unpacked = tree(&bundle.join("rootfs"));
    let original = tree(&rootfs.dir);
    assert!(original.len() > 100, "{}", original.len());
    assert_eq!(unpacked, original);
    // kiln lists umoci-style plain tags as they are.
    assert!(kiln.ok(&["images"]).contains("kiln-busybox   <none>"));
}

/// Whether the tests run as root (`/proc/self` belongs to the process's effective user).
fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Every entry under `root`: path, kind, permission bits, and content or link target.
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("symlink -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o}")
            } else {
                let digest = Digest::of(&fs::read(&path).unwrap());
                format!("file {mode:o} {digest}")
            };
            out.push((rel, what));
        }
    }
    out.sort();
    out
}
