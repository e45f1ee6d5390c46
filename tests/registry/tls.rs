//! TLS with a test CA: refused without it, trusted with `--tls-ca`, with the docker-style
//! `certs.d/<host:port>/ca.crt`, or skipped with `--insecure-registry`; a registry that requires
//! a client certificate (mutual TLS) gets the `--tls-cert`/`--tls-key` pair or certs.d's
//! `client.cert` and `client.key`.

use std::fs;

use super::Kiln;
use crate::support::registry::{Auth, Config, RegistryServer};
use crate::support::registry_image::make_image;
use crate::support::registry_token::{test_ca, test_ca_with_client};

#[test]
fn registry_with_a_test_ca() {
    let (ca, cert, key) = test_ca();
    let Some(reg) = RegistryServer::start(Config {
        auth: Auth::None,
        tls: Some((cert, key)),
        client_ca: None,
    }) else {
        return;
    };
    let k = Kiln::new();
    let name = format!("{}/tls/app:1", reg.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"tls")]);

    let (code, _, stderr) = k.run(&["push", &name]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("GET https://{}/v2/: connection failed", reg.addr))
            && stderr.contains("certificate"),
        "{stderr}"
    );
    assert_eq!(reg.requests("PUT", "/blobs/uploads/"), 0);

    let ca_file = k.path().join("ca.pem");
    fs::write(&ca_file, &ca).unwrap();
    let (digest, _) = k.ok(&["push", "--tls-ca", ca_file.to_str().unwrap(), &name]);

    // certs.d/<host:port>/ca.crt, as docker reads it.
    let other = Kiln::new();
    let dir = other.certs_d().join(&reg.addr);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("ca.crt"), &ca).unwrap();
    assert_eq!(other.ok(&["pull", &name]).0, digest);

    let insecure = Kiln::new();
    let (pulled, _) = insecure.ok(&["pull", "--insecure-registry", &reg.addr, &name]);
    assert_eq!(pulled, digest);
}

#[test]
fn a_system_without_ca_certificates_uses_the_built_in_roots() {
    // A `FROM scratch` CI image has no CA bundle; here, `SSL_CERT_FILE` naming an empty file
    // stands for one (the system's roots are then read from it alone).
    let (ca, cert, key) = test_ca();
    let Some(tls) = RegistryServer::start(Config {
        auth: Auth::None,
        tls: Some((cert, key)),
        client_ca: None,
    }) else {
        return;
    };
    let Some(plain) = RegistryServer::start(Config::default()) else {
        return;
    };
    let k = Kiln::new();
    let no_roots = k.path().join("no-roots.pem");
    fs::write(&no_roots, "").unwrap();
    let run = |args: &[&str]| {
        let out = k
            .cmd()
            .env("SSL_CERT_FILE", &no_roots)
            .env_remove("SSL_CERT_DIR")
            .args(args)
            .output()
            .unwrap();
        super::outcome(&out)
    };
    // Plain HTTP to a loopback registry needs no roots at all.
    let name = format!("{}/minimal/app:1", plain.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"plain")]);
    let (code, _, stderr) = run(&["push", &name]);
    assert_eq!(code, 0, "{stderr}");
    // TLS is verified against Mozilla's roots, which do not include the test CA…
    let name = format!("{}/minimal/app:1", tls.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"tls")]);
    let (code, _, stderr) = run(&["push", &name]);
    assert_eq!(code, 1);
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(!stderr.contains("No CA certificates"), "{stderr}");
    // …and `--tls-ca` adds to them.
    let ca_file = k.path().join("ca.pem");
    fs::write(&ca_file, &ca).unwrap();
    let (code, _, stderr) = run(&["push", "--tls-ca", ca_file.to_str().unwrap(), &name]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_registry_that_asks_for_a_client_certificate_gets_one() {
    let (ca, cert, key, (client_cert, client_key)) = test_ca_with_client();
    let Some(reg) = RegistryServer::start(Config {
        auth: Auth::None,
        tls: Some((cert, key)),
        client_ca: Some(ca.clone()),
    }) else {
        return;
    };
    let name = format!("{}/mtls/app:1", reg.addr);
    let ca_file = |k: &Kiln| {
        let file = k.path().join("ca.pem");
        fs::write(&file, &ca).unwrap();
        file.to_str().unwrap().to_owned()
    };
    // Without a client certificate the handshake fails, and nothing is uploaded.
    let k = Kiln::new();
    make_image(&k.root(), &name, "amd64", &[("a", b"mtls")]);
    let (code, _, stderr) = k.run(&["push", "--tls-ca", &ca_file(&k), &name]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("connection failed"), "{stderr}");
    assert_eq!(reg.requests("PUT", "/blobs/uploads/"), 0);
    // --tls-cert and --tls-key.
    let (cert_file, key_file) = (k.path().join("client.pem"), k.path().join("client-key.pem"));
    fs::write(&cert_file, &client_cert).unwrap();
    fs::write(&key_file, &client_key).unwrap();
    let (digest, _) = k.ok(&[
        "push",
        "--tls-ca",
        &ca_file(&k),
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
        &name,
    ]);
    // Docker's certs.d/<host:port>/: ca.crt, client.cert and client.key.
    let other = Kiln::new();
    let dir = other.certs_d().join(&reg.addr);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("ca.crt"), &ca).unwrap();
    fs::write(dir.join("client.cert"), &client_cert).unwrap();
    fs::write(dir.join("client.key"), &client_key).unwrap();
    assert_eq!(other.ok(&["pull", &name]).0, digest);
    // A certificate without its key is an error naming both, before anything is sent.
    fs::remove_file(dir.join("client.key")).unwrap();
    let (code, _, stderr) = other.run(&["pull", &name]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("missing key") && stderr.contains("client.key"),
        "{stderr}"
    );
}
