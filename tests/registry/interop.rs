//! Interop with skopeo: it reads and copies what kiln pushed, and kiln pulls (with the same
//! digest) and re-pushes what skopeo pushed.

use std::process::Command;

use super::{Kiln, outcome};
use crate::support::registry::{Config, RegistryServer, require};
use crate::support::registry_image::make_image;

const SKOPEO: &str = "/usr/bin/skopeo";

fn skopeo(args: &[&str]) -> String {
    let out = Command::new(SKOPEO).args(args).output().unwrap();
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!(code, 0, "skopeo {args:?}: {stderr}");
    stdout
}

fn inspected_digest(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["Digest"].as_str().unwrap().to_owned()
}

#[test]
fn skopeo_reads_and_copies_what_kiln_pushed() {
    if !require(SKOPEO, "skopeo") {
        return;
    }
    let Some(reg) = RegistryServer::start(Config::default()) else {
        return;
    };
    let k = Kiln::new();
    let name = format!("{}/interop/kiln:1", reg.addr);
    make_image(
        &k.root(),
        &name,
        "amd64",
        &[("etc/motd", b"pushed by kiln\n")],
    );
    let (digest, _) = k.ok(&["push", &name]);

    let inspected = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{name}")]);
    assert_eq!(inspected_digest(&inspected), digest);
    let v: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);

    let layout = k.path().join("copied");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:copied", layout.display()),
    ]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:copied", layout.display()),
    ]);
    assert_eq!(
        kiln_registry::Digest::of(raw.as_bytes()).to_string(),
        digest,
        "skopeo copied the manifest byte for byte"
    );
}

#[test]
fn kiln_pulls_and_re_pushes_what_skopeo_pushed() {
    if !require(SKOPEO, "skopeo") {
        return;
    }
    let Some(reg) = RegistryServer::start(Config::default()) else {
        return;
    };
    let source = Kiln::new();
    make_image(&source.root(), "src", "arm64", &[("from", b"skopeo")]);
    let pushed_by_skopeo = format!("{}/interop/skopeo:1", reg.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:src", source.root().join("oci").display()),
        &format!("docker://{pushed_by_skopeo}"),
    ]);
    let expected = inspected_digest(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{pushed_by_skopeo}"),
    ]));

    let k = Kiln::new();
    let (pulled, _) = k.ok(&["pull", "--platform", "linux/arm64", &pushed_by_skopeo]);
    assert_eq!(pulled, expected);
    assert_eq!(k.store().verify().unwrap(), []);

    // Re-pushing it elsewhere in the registry mounts the blobs skopeo uploaded.
    let again = format!("{}/interop/again:1", reg.addr);
    let (digest, stderr) = k.ok(&["push", &pushed_by_skopeo, &again]);
    assert_eq!(digest, expected);
    assert!(stderr.contains("2 mounted"), "{stderr}");
    let inspected = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{again}"),
    ]);
    assert_eq!(inspected_digest(&inspected), expected);
}
