//! Push and pull against an open registry: round trip, re-push, mounts, layers already in the
//! store, multi-platform indexes, and a missing tag.

use kiln_builder::image;

use super::Kiln;
use crate::support::registry::{Config, RegistryServer};
use crate::support::registry_image::{make_image, make_index};

fn registry() -> Option<RegistryServer> {
    RegistryServer::start(Config::default())
}

#[test]
fn push_then_pull_into_another_store_has_the_same_digest() {
    let Some(reg) = registry() else { return };
    let a = Kiln::new();
    let name = format!("{}/test/app:1", reg.addr);
    let desc = make_image(&a.root(), &name, "amd64", &[("hello.txt", b"hello\n")]);
    let (pushed, stderr) = a.ok(&["push", &name]);
    assert_eq!(pushed, desc.digest().to_string());
    assert!(stderr.contains("2 uploaded"), "{stderr}");

    let b = Kiln::new();
    let (pulled, stderr) = b.ok(&["pull", &name]);
    assert_eq!(pulled, pushed);
    assert!(stderr.contains("2 downloaded"), "{stderr}");
    assert_eq!(b.tagged(&name), Some(pushed.clone()));
    assert_eq!(b.store().verify().unwrap(), []);
    let store = b.store();
    let manifest = store
        .read_manifest(&store.resolve(&name).unwrap().unwrap())
        .unwrap();
    assert_eq!(store.read_config(&manifest).unwrap().architecture, "amd64");

    // Pulling by digest verifies the manifest against it and tags name@digest.
    let c = Kiln::new();
    let by_digest = format!("{}/test/app@{pushed}", reg.addr);
    let (pulled, _) = c.ok(&["pull", "-q", &by_digest]);
    assert_eq!(pulled, pushed);
    assert_eq!(c.tagged(&by_digest), Some(pushed));
}

#[test]
fn re_push_uploads_nothing_and_pull_skips_present_layers() {
    let Some(reg) = registry() else { return };
    let a = Kiln::new();
    let name = format!("{}/test/app:1", reg.addr);
    make_image(&a.root(), &name, "amd64", &[("a", b"a")]);
    a.ok(&["push", &name]);
    let uploads = reg.requests("PUT", "/v2/test/app/blobs/uploads/");
    assert_eq!(uploads, 2);
    let (_, stderr) = a.ok(&["push", &name]);
    assert!(
        stderr.contains("0 uploaded (0 B), 2 already in the registry"),
        "{stderr}"
    );
    assert_eq!(reg.requests("PUT", "/v2/test/app/blobs/uploads/"), uploads);
    assert_eq!(reg.requests("POST", "/v2/test/app/blobs/uploads/"), 2);

    // The pushing store has every blob: a pull downloads nothing.
    let gets = reg.requests("GET", "/v2/test/app/blobs/");
    let (_, stderr) = a.ok(&["pull", &name]);
    assert!(
        stderr.contains("0 downloaded (0 B), 2 already present"),
        "{stderr}"
    );
    assert_eq!(reg.requests("GET", "/v2/test/app/blobs/"), gets);
}

#[test]
fn push_to_another_repository_mounts_the_blobs() {
    let Some(reg) = registry() else { return };
    let a = Kiln::new();
    let first = format!("{}/test/a:1", reg.addr);
    let second = format!("{}/test/b:1", reg.addr);
    make_image(&a.root(), &first, "amd64", &[("a", b"shared")]);
    a.ok(&["push", &first]);
    let (digest, stderr) = a.ok(&["push", &first, &second]);
    assert!(stderr.contains("mounted from test/a"), "{stderr}");
    assert!(
        stderr.contains("0 uploaded (0 B), 0 already in the registry, 2 mounted"),
        "{stderr}"
    );
    assert_eq!(reg.requests("POST", "/v2/test/b/blobs/uploads/?mount="), 2);
    assert_eq!(reg.requests("PUT", "/v2/test/b/blobs/uploads/"), 0);
    let b = Kiln::new();
    assert_eq!(b.ok(&["pull", &second]).0, digest);
}

#[test]
fn a_push_remembers_where_it_sent_blobs_and_later_pushes_mount_them() {
    let Some(reg) = registry() else { return };
    let a = Kiln::new();
    // A local name in no registry: only the first push can tell where the blobs went.
    make_image(
        &a.root(),
        "docker.io/local/app:1",
        "amd64",
        &[("a", b"shared base")],
    );
    let first = format!("{}/test/c:1", reg.addr);
    let second = format!("{}/test/d:1", reg.addr);
    a.ok(&["push", "local/app:1", &first]);
    let (_, stderr) = a.ok(&["push", "local/app:1", &second]);
    assert!(stderr.contains("mounted from test/c"), "{stderr}");
    assert!(
        stderr.contains("0 uploaded (0 B), 0 already in the registry, 2 mounted"),
        "{stderr}"
    );
    assert_eq!(reg.requests("PUT", "/v2/test/d/blobs/uploads/"), 0);
}

#[test]
fn pull_chooses_a_platform_from_an_index() {
    let Some(reg) = registry() else { return };
    let a = Kiln::new();
    let single = format!("{}/multi/amd:1", reg.addr);
    let amd = make_image(&a.root(), &single, "amd64", &[("arch", b"amd64")]);
    let arm = make_image(&a.root(), "arm", "arm64", &[("arch", b"arm64")]);
    let name = format!("{}/multi/app:1", reg.addr);
    let index = make_index(&a.root(), &name, &[amd.clone(), arm.clone()]);
    let (pushed, _) = a.ok(&["push", &name]);
    assert_eq!(pushed, index.digest().to_string());

    let b = Kiln::new();
    let (pulled, stderr) = b.ok(&["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(
        pulled, pushed,
        "a pull prints what the reference resolved to"
    );
    assert!(stderr.contains("(linux/arm64)"), "{stderr}");
    assert_eq!(b.tagged(&name), Some(arm.digest().to_string()));
    let store = b.store();
    let manifest = store
        .read_manifest(&store.resolve(&name).unwrap().unwrap())
        .unwrap();
    assert_eq!(store.read_config(&manifest).unwrap().architecture, "arm64");
    assert!(!store.has_blob(&image::from_oci_digest(amd.digest()).unwrap()));

    let (code, _, stderr) = b.run(&["pull", "--platform", "linux/s390x", &name]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no image for platform linux/s390x (available: linux/amd64, linux/arm64)"),
        "{stderr}"
    );
    // A single-platform image is pulled whatever the platform asked, with a warning.
    a.ok(&["push", &single]);
    let (_, stderr) = b.ok(&["pull", "--platform", "linux/arm64", &single]);
    assert!(
        stderr.contains(&format!(
            "warning: {single} is a linux/amd64 image; linux/arm64 was requested"
        )),
        "{stderr}"
    );

    let (code, _, stderr) = b.run(&["pull", "--platform", "linux", &name]);
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid platform \"linux\""), "{stderr}");
}

#[test]
fn missing_images_are_clear_errors() {
    let Some(reg) = registry() else { return };
    let k = Kiln::new();
    let name = format!("{}/nothing/here:1", reg.addr);
    let (code, stdout, stderr) = k.run(&["pull", &name]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(&format!(
            "error: pulling {name}: GET http://{}/v2/nothing/here/manifests/1: 404 Not Found: manifest unknown (MANIFEST_UNKNOWN)",
            reg.addr
        )),
        "{stderr}"
    );
    assert!(k.store().list().unwrap().is_empty());
    let (code, _, stderr) = k.run(&["push", &name]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("error: no such image in the store: {name}")),
        "{stderr}"
    );
    let (code, _, stderr) = k.run(&["pull", "Bad/Name"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("repository name must be lowercase"),
        "{stderr}"
    );
}
