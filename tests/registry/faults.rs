//! Faults injected by a proxy in front of the real registry: 5xx then success, persistent 5xx,
//! 429 with Retry-After, a connection cut mid-upload and mid-download, altered bytes, a stalled
//! connection, a redirect to another host (which must not receive the credentials), and an
//! upload refused while the other layers are still being compressed.

use std::time::{Duration, Instant};

use kiln_builder::image;
use oci_spec::image::Descriptor;

use super::Kiln;
use crate::support::registry::{Auth, Config, RegistryServer};
use crate::support::registry_image::{make_image, noise};
use crate::support::registry_proxy::{Fault, Proxy, Rule, Seen};

fn registry() -> Option<RegistryServer> {
    RegistryServer::start(Config::default())
}

/// Pulls `path` straight from the registry (not through the proxy) into a new store; asserts
/// it is the image that was pushed (`digest`) and that the store verifies.
fn pulls_back_directly(reg: &RegistryServer, path: &str, digest: &str) -> Kiln {
    let direct = Kiln::new();
    assert_eq!(
        direct.ok(&["pull", &format!("{}/{path}", reg.addr)]).0,
        digest
    );
    assert_eq!(direct.store().verify().unwrap(), []);
    direct
}

/// The digest of the (only) layer of the image `desc` in `k`'s store.
fn layer_of(k: &Kiln, desc: &Descriptor) -> String {
    let manifest = k.store().read_manifest(desc).unwrap();
    manifest.layers()[0].digest().to_string()
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    let a = Kiln::new();
    let name = format!("{}/faults/app:1", proxy.addr);
    make_image(&a.root(), &name, "amd64", &[("a", b"a")]);
    proxy.fault("PUT", "/blobs/uploads/", 1, Fault::Status(502, None));
    let (digest, stderr) = a.ok(&["push", &name]);
    assert!(stderr.contains("retrying upload of sha256:"), "{stderr}");

    proxy.fault("GET", "/manifests/1", 2, Fault::Status(503, None));
    let b = Kiln::new();
    let (pulled, stderr) = b.ok(&["pull", &name]);
    assert_eq!(pulled, digest);
    let request = format!("GET http://{}/v2/faults/app/manifests/1", proxy.addr);
    assert!(
        stderr.contains(&format!(
            "retrying {request}: 503 Service Unavailable (attempt 2/3)"
        )) && stderr.contains(&format!(
            "retrying {request}: 503 Service Unavailable (attempt 3/3)"
        )),
        "{stderr}"
    );
    assert_eq!(proxy.count("GET", "/manifests/1"), 3);
}

#[test]
fn persistent_server_errors_fail_after_three_attempts() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    let k = Kiln::new();
    let name = format!("{}/faults/app:1", proxy.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"a")]);
    proxy.fault("PUT", "/manifests/1", 100, Fault::Status(500, None));
    let (code, stdout, stderr) = k.run(&["push", &name]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(&format!(
            "PUT http://{}/v2/faults/app/manifests/1: 500 Internal Server Error: injected 500 (UNAVAILABLE) (after 3 attempts)",
            proxy.addr
        )),
        "{stderr}"
    );
    assert_eq!(proxy.count("PUT", "/manifests/1"), 3);
    // A 4xx is not retried: no blob is asked about twice (the other blob's HEAD may or may
    // not have gone out before the push stopped).
    let before = proxy.seen().len();
    proxy.fault("HEAD", "/blobs/", 1, Fault::Status(400, None));
    let (code, _, stderr) = k.run(&["push", &name]);
    assert_eq!(code, 1);
    assert!(stderr.contains("400 Bad Request"), "{stderr}");
    let heads: Vec<String> = proxy.seen()[before..]
        .iter()
        .filter(|s| s.method == "HEAD")
        .map(|s| s.path.clone())
        .collect();
    let mut distinct = heads.clone();
    distinct.dedup();
    distinct.sort();
    distinct.dedup();
    assert!(
        !heads.is_empty() && distinct.len() == heads.len(),
        "{heads:?}"
    );
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    let k = Kiln::new();
    let name = format!("{}/faults/app:1", proxy.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"a")]);
    k.ok(&["push", &name]);
    proxy.fault("GET", "/manifests/1", 1, Fault::Status(429, Some(2)));
    let other = Kiln::new();
    let start = Instant::now();
    let (_, stderr) = other.ok(&["pull", &name]);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        stderr.contains("429 Too Many Requests (attempt 2/3)"),
        "{stderr}"
    );
}

#[test]
fn upload_cut_mid_body_is_restarted_and_lands_intact() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    let k = Kiln::new();
    let name = format!("{}/faults/big:1", proxy.addr);
    let desc = make_image(
        &k.root(),
        &name,
        "amd64",
        &[("noise", &noise(3_000_000, 7))],
    );
    let layer = layer_of(&k, &desc);
    let put_of_layer = format!("digest={}", layer.replace(':', "%3A"));
    proxy.fault("PUT", &put_of_layer, 1, Fault::CutRequest(1_000_000));
    let (digest, stderr) = k.ok(&["push", &name]);
    assert!(stderr.contains("retrying upload of sha256:"), "{stderr}");
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        3,
        "a new session after the cut"
    );
    assert_eq!(proxy.count("PUT", &put_of_layer), 2);

    // Straight from the registry: every blob is exactly right.
    let direct = pulls_back_directly(&reg, "faults/big:1", &digest);
    let layer: kiln_registry::Digest = layer.parse().unwrap();
    assert!(direct.store().has_blob(&layer));
}

#[test]
fn chunked_upload_resumes_from_the_registry_offset() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    let k = Kiln::new();
    let name = format!("{}/faults/chunks:1", proxy.addr);
    make_image(
        &k.root(),
        &name,
        "amd64",
        &[("noise", &noise(3_000_000, 11))],
    );
    // The second 1 MiB chunk of the layer fails; the registry still holds the first.
    proxy.add(Rule {
        method: "PATCH",
        path: "/blobs/uploads/".into(),
        header: Some(("content-range", "1048576-".into())),
        times: 1,
        fault: Fault::Status(503, None),
    });
    let (digest, stderr) = k.ok(&["push", "--chunk-size", "1048576", &name]);
    assert!(stderr.contains("resuming at byte 1048576"), "{stderr}");
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        2,
        "the session was kept"
    );
    assert_eq!(
        proxy.count("GET", "/blobs/uploads/"),
        1,
        "its status was asked"
    );
    let ranges: Vec<String> = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PATCH")
        .filter_map(|s| s.header("content-range").map(str::to_owned))
        .collect();
    let resent = ranges
        .iter()
        .filter(|r| r.starts_with("1048576-2097151"))
        .count();
    assert_eq!(resent, 2, "{ranges:?}");
    assert!(ranges.iter().all(|r| !r.starts_with("bytes")), "{ranges:?}");

    pulls_back_directly(&reg, "faults/chunks:1", &digest);
}

#[test]
fn chunk_cut_mid_body_resumes_or_restarts_the_session() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    let k = Kiln::new();
    let name = format!("{}/faults/chunks:1", proxy.addr);
    make_image(
        &k.root(),
        &name,
        "amd64",
        &[("noise", &noise(3_000_000, 13))],
    );
    // distribution 2.8 keeps the partial body of a cut chunk, then refuses (and cancels) the
    // session whose size no longer matches its state: kiln asks, and starts over. A registry
    // that answers the status query gets the upload resumed in the same session instead.
    proxy.fault("PATCH", "/blobs/uploads/", 1, Fault::CutRequest(600_000));
    let (digest, stderr) = k.ok(&["push", "--chunk-size", "1048576", &name]);
    assert_eq!(
        proxy.count("GET", "/blobs/uploads/"),
        1,
        "its status was asked"
    );
    let restarted =
        stderr.contains("BLOB_UPLOAD_INVALID") && proxy.count("POST", "/blobs/uploads/") == 3;
    let resumed =
        stderr.contains("resuming at byte") && proxy.count("POST", "/blobs/uploads/") == 2;
    assert!(restarted || resumed, "{stderr}");
    pulls_back_directly(&reg, "faults/chunks:1", &digest);
}

#[test]
fn a_registry_refusing_big_bodies_gets_chunks() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    let k = Kiln::new();
    let name = format!("{}/faults/413:1", proxy.addr);
    let desc = make_image(&k.root(), &name, "amd64", &[("noise", &noise(200_000, 5))]);
    let layer = layer_of(&k, &desc);
    let put_of_layer = format!("digest={}", layer.replace(':', "%3A"));
    proxy.fault("PUT", &put_of_layer, 1, Fault::Status(413, None));
    let (digest, _) = k.ok(&["push", &name]);
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 1);
    assert_eq!(
        proxy.count("DELETE", "/blobs/uploads/"),
        1,
        "the refused session is cancelled"
    );
    let direct = Kiln::new();
    assert_eq!(
        direct
            .ok(&["pull", &format!("{}/faults/413:1", reg.addr)])
            .0,
        digest
    );
}

#[test]
fn download_cut_mid_body_resumes_with_range() {
    let Some(reg) = registry() else { return };
    let k = Kiln::new();
    let direct_name = format!("{}/faults/big:1", reg.addr);
    let desc = make_image(
        &k.root(),
        &direct_name,
        "amd64",
        &[("noise", &noise(3_000_000, 9))],
    );
    let layer = layer_of(&k, &desc);
    let (digest, _) = k.ok(&["push", &direct_name]);

    let proxy = Proxy::start(&reg.addr);
    proxy.fault(
        "GET",
        &format!("/blobs/{layer}"),
        1,
        Fault::CutResponse(1_200_000),
    );
    let other = Kiln::new();
    let (pulled, stderr) = other.ok(&["pull", &format!("{}/faults/big:1", proxy.addr)]);
    assert_eq!(pulled, digest);
    assert!(
        stderr.contains("connection lost, resuming at byte"),
        "{stderr}"
    );
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.contains(&layer))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    let range = gets[1].header("range").unwrap_or_default().to_owned();
    let offset: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("resumed without a byte range: {range:?}"));
    assert!(offset > 0 && offset <= 1_200_000, "{offset}");
    assert_eq!(other.store().verify().unwrap(), []);
}

#[test]
fn altered_bytes_are_rejected_and_nothing_is_stored() {
    let Some(reg) = registry() else { return };
    let k = Kiln::new();
    let direct_name = format!("{}/faults/app:1", reg.addr);
    let desc = make_image(
        &k.root(),
        &direct_name,
        "amd64",
        &[("a", &noise(10_000, 3))],
    );
    let layer = layer_of(&k, &desc);
    k.ok(&["push", &direct_name]);

    let proxy = Proxy::start(&reg.addr);
    proxy.fault("GET", &format!("/blobs/{layer}"), 1, Fault::Corrupt);
    let other = Kiln::new();
    let name = format!("{}/faults/app:1", proxy.addr);
    let (code, stdout, stderr) = other.run(&["pull", &name]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(&format!(
            "blob {layer} from {} failed verification: got sha256:",
            proxy.addr
        )),
        "{stderr}"
    );
    let store = other.store();
    assert!(store.list().unwrap().is_empty(), "no tag");
    assert!(!store.has_blob(&layer.parse().unwrap()));
    let manifest = image::from_oci_digest(desc.digest()).unwrap();
    assert!(!store.has_blob(&manifest), "no manifest without its layers");
    assert_eq!(
        store.gc(&[]).unwrap().removed_tmp,
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn altered_manifests_are_rejected() {
    let Some(reg) = registry() else { return };
    let k = Kiln::new();
    let direct_name = format!("{}/faults/app:1", reg.addr);
    make_image(&k.root(), &direct_name, "amd64", &[("a", b"m")]);
    let (digest, _) = k.ok(&["push", &direct_name]);
    let proxy = Proxy::start(&reg.addr);
    let other = Kiln::new();

    // By digest: the bytes must hash to the digest asked for (moby#13360).
    proxy.fault("GET", "/manifests/", 1, Fault::Corrupt);
    let by_digest = format!("{}/faults/app@{digest}", proxy.addr);
    let (code, _, stderr) = other.run(&["pull", &by_digest]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "manifest {digest} from {} failed verification: got sha256:",
            proxy.addr
        )),
        "{stderr}"
    );
    // By tag: the registry's Docker-Content-Digest must match what arrived.
    proxy.fault("GET", "/manifests/", 1, Fault::Corrupt);
    let (code, _, stderr) = other.run(&["pull", &format!("{}/faults/app:1", proxy.addr)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("Docker-Content-Digest says \"{digest}\"")),
        "{stderr}"
    );
    assert!(other.store().list().unwrap().is_empty());
    assert!(!other.store().has_blob(&digest.parse().unwrap()));
}

#[test]
fn a_stalled_registry_times_out_with_a_clear_error() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    proxy.fault("GET", "/manifests/", 100, Fault::Stall);
    let k = Kiln::new();
    let name = format!("{}/faults/app:1", proxy.addr);
    let start = Instant::now();
    let (code, _, stderr) = k.run(&["pull", "--timeout", "1", &name]);
    assert_eq!(code, 1);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert!(
        stderr.contains(&format!(
            "GET http://{}/v2/faults/app/manifests/1: timed out (no data for 1s) (after 3 attempts)",
            proxy.addr
        )),
        "{stderr}"
    );
}

#[test]
fn redirects_to_another_host_get_no_credentials() {
    let Some(private) = RegistryServer::start(Config {
        auth: Auth::Htpasswd(vec![("alice".into(), "canary-REDIRECT-1".into())]),
        tls: None,
        client_ca: None,
    }) else {
        return;
    };
    let Some(public) = registry() else { return };
    let k = Kiln::new();
    let private_name = format!("{}/app:1", private.addr);
    let desc = make_image(&k.root(), &private_name, "amd64", &[("a", b"cdn")]);
    let layer = layer_of(&k, &desc);
    let creds = "alice:canary-REDIRECT-1";
    k.ok(&["push", "--creds", creds, &private_name]);
    // The "CDN": another host:port serving the same blob, anonymously.
    k.ok(&["push", &private_name, &format!("{}/app:1", public.addr)]);

    let front = Proxy::start(&private.addr);
    let cdn = Proxy::start(&public.addr);
    front.fault(
        "GET",
        &format!("/blobs/{layer}"),
        1,
        Fault::Redirect(format!("http://{}/v2/app/blobs/{layer}", cdn.addr)),
    );
    let other = Kiln::new();
    let (pulled, _) = other.ok(&["pull", "--creds", creds, &format!("{}/app:1", front.addr)]);
    assert_eq!(pulled, desc.digest().to_string());
    let at_cdn = cdn.seen();
    assert_eq!(at_cdn.len(), 1, "{at_cdn:?}");
    assert_eq!(at_cdn[0].header("authorization"), None);
    assert!(
        front
            .seen()
            .iter()
            .any(|s| s.path.contains("/manifests/") && s.header("authorization").is_some()),
        "the registry itself does get the credentials"
    );
}

/// A registry behind object storage answers an upload's `PUT` (or chunk `PATCH`) with a 307
/// or 308: the blob is sent again, whole, to the new place, without the registry's
/// credentials there; a redirect from https to plain http is refused by name.
#[test]
fn uploads_follow_307_and_308_redirects() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    let storage = Proxy::start(&reg.addr);
    let k = Kiln::new();
    let name = format!("{}/redirected/app:1", proxy.addr);
    let desc = make_image(&k.root(), &name, "amd64", &[("a", &noise(300_000, 7))]);
    let layer = layer_of(&k, &desc);
    proxy.add(Rule {
        method: "PUT",
        path: "/blobs/uploads/".into(),
        header: None,
        times: 2,
        fault: Fault::RedirectSamePath(307, format!("http://{}", storage.addr)),
    });
    let (pushed, _) = k.ok(&["push", &name]);
    let puts: Vec<Seen> = storage
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert!(puts.iter().all(|s| s.header("authorization").is_none()));
    let other = Kiln::new();
    assert_eq!(other.ok(&["pull", &name]).0, pushed);
    assert!(other.store().has_blob(&layer.parse().unwrap()));

    // Chunked uploads: a PATCH redirected with 308.
    let chunked = Kiln::new();
    let name = format!("{}/redirected/chunked:1", proxy.addr);
    make_image(
        &chunked.root(),
        &name,
        "amd64",
        &[("b", &noise(300_000, 8))],
    );
    proxy.add(Rule {
        method: "PATCH",
        path: "/blobs/uploads/".into(),
        header: None,
        times: 1,
        fault: Fault::RedirectSamePath(308, format!("http://{}", storage.addr)),
    });
    chunked.ok(&["push", "--chunk-size", "65536", &name]);
    assert!(storage.count("PATCH", "/blobs/uploads/") >= 1);
}

/// A built image's layers are compressed one by one and each is sent as soon as it is ready.
/// When the registry refuses one, the push fails with the registry's error and puts no
/// manifest; the layers compressed by then are kept, so the next push compresses nothing.
#[test]
fn a_refused_layer_stops_the_push_and_the_next_push_compresses_nothing() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg.addr);
    let k = Kiln::new();
    let ctx = k.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    for (file, text) in [
        ("Dockerfile", "FROM scratch\nCOPY a /a\nCOPY b /b\n"),
        ("a", "the first layer"),
        ("b", "the second layer"),
    ] {
        std::fs::write(ctx.join(file), text).unwrap();
    }
    let name = format!("{}/faults/built:1", proxy.addr);
    k.ok(&["build", "-t", &name, ctx.to_str().unwrap()]);
    let blobs = || {
        std::fs::read_dir(k.store().oci_dir().join("blobs/sha256"))
            .unwrap()
            .count()
    };
    proxy.fault("POST", "/blobs/uploads/", 1, Fault::Status(403, None));
    let (code, stdout, stderr) = k.run(&["push", &name]);
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert!(stderr.contains("access denied"), "{stderr}");
    assert_eq!(proxy.count("PUT", "/manifests/"), 0);
    let after_failure = blobs();

    let (digest, stderr) = k.ok(&["push", &name]);
    assert!(stderr.contains("pushed"), "{stderr}");
    assert_eq!(blobs(), after_failure, "the second push compressed again");
    pulls_back_directly(&reg, "faults/built:1", &digest);
}
