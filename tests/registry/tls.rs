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
