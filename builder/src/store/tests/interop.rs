//! The layout as tools kiln did not write read it: skopeo and umoci. Each test skips itself
//! when its tool is absent, except under `CI=true`, where the tool is required.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::{make_image, new_store};
use crate::image::{MediaTypes, canonical_json};

/// Finds an external tool; outside CI a missing tool skips the caller, under `CI=true` it fails.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        crate::testutil::skip(&format!("{name} not found on PATH"));
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn skopeo_reads_the_layout() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let name = "docker.io/library/kiln-test:latest";
    for media in [MediaTypes::Oci, MediaTypes::Docker] {
        let (dir, store) = new_store();
        let (desc, config) = make_image(&store, b"skopeo", media);
        store.tag(name, &desc).unwrap();
        let oci_dir = store.oci_dir();
        // OCI entries are addressed by their full reference name. containers/image before
        // the container-libs move (e.g. skopeo 1.9 in Debian 12) skips index.json entries
        // with Docker media types when looking a name up, so the Docker image is addressed
        // as the only image in its layout, which every version reads.
        let reference = match media {
            MediaTypes::Oci => format!("oci:{}:{name}", oci_dir.display()),
            MediaTypes::Docker => format!("oci:{}", oci_dir.display()),
        };

        let inspect: serde_json::Value =
            serde_json::from_str(&run(Command::new(&skopeo).args(["inspect", &reference])))
                .unwrap();
        assert_eq!(inspect["Digest"], desc.digest().to_string(), "{inspect}");
        assert_eq!(inspect["Architecture"], "amd64");
        assert_eq!(inspect["Os"], "linux");
        let manifest = store.read_manifest(&desc).unwrap();
        assert_eq!(
            inspect["Layers"][0],
            manifest.layers()[0].digest().to_string()
        );

        let raw = run(Command::new(&skopeo).args(["inspect", "--raw", &reference]));
        assert_eq!(raw.as_bytes(), canonical_json(&manifest).unwrap());
        let raw_config =
            run(Command::new(&skopeo).args(["inspect", "--raw", "--config", &reference]));
        assert_eq!(raw_config.as_bytes(), config.to_canonical_json().unwrap());

        // Copying reads and verifies every blob.
        let out = dir.path().join("copy");
        run(Command::new(&skopeo).args([
            "copy",
            "--insecure-policy",
            &reference,
            &format!("dir:{}", out.display()),
        ]));
        assert!(out.join("manifest.json").is_file());
    }
}

#[test]
fn umoci_unpacks_the_layout() {
    let Some(umoci) = tool("umoci") else {
        return;
    };
    let (dir, store) = new_store();
    let (desc, _) = make_image(&store, b"hello from kiln\n", MediaTypes::Oci);
    // umoci's CLI only accepts tags matching [A-Za-z0-9._-]+, so a full reference name
    // cannot be addressed through it; a second, plain tag can.
    store.tag("docker.io/library/kiln:latest", &desc).unwrap();
    store.tag("kiln-test", &desc).unwrap();
    let bundle = dir.path().join("bundle");
    let mut cmd = Command::new(&umoci);
    cmd.arg("unpack");
    if !rustix::process::geteuid().is_root() {
        cmd.arg("--rootless");
    }
    cmd.arg("--image")
        .arg(format!("{}:kiln-test", store.oci_dir().display()))
        .arg(&bundle);
    run(&mut cmd);
    assert_eq!(
        fs::read(bundle.join("rootfs/hello.txt")).unwrap(),
        b"hello from kiln\n"
    );
    let listed = run(Command::new(&umoci)
        .arg("ls")
        .arg("--layout")
        .arg(store.oci_dir()));
    let mut tags: Vec<&str> = listed.lines().collect();
    tags.sort();
    assert_eq!(tags, ["docker.io/library/kiln:latest", "kiln-test"]);
}
