//! TLS with a test CA: refused without it, trusted with `--tls-ca`, with the docker-style
//! `certs.d/<host:port>/ca.crt`, or skipped with `--insecure-registry`.

use std::fs;

use super::Kiln;
use crate::support::registry::{Auth, Config, RegistryServer};
use crate::support::registry_image::make_image;
use crate::support::registry_token::test_ca;

#[test]
fn registry_with_a_test_ca() {
    let (ca, cert, key) = test_ca();
    let Some(reg) = RegistryServer::start(Config {
        auth: Auth::None,
        tls: Some((cert, key)),
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
