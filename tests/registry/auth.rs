//! Basic auth (htpasswd): `--creds`, `kiln login`/`logout` and the docker config, credential
//! helpers, clear 401 errors, and a canary password that must never be printed.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Kiln, outcome};
use crate::support::registry::{Auth, Config, RegistryServer};
use crate::support::registry_image::make_image;

const CANARY: &str = "canary-PASS-789";

fn registry() -> Option<RegistryServer> {
    RegistryServer::start(Config {
        auth: Auth::Htpasswd(vec![("alice".into(), CANARY.into())]),
        tls: None,
        client_ca: None,
    })
}

/// Asserts the password appears nowhere in what kiln printed, plain or base64-encoded.
fn no_canary(stdout: &str, stderr: &str) {
    let encoded = STANDARD.encode(format!("alice:{CANARY}"));
    for text in [stdout, stderr] {
        assert!(!text.contains(CANARY), "password leaked: {text}");
        assert!(!text.contains(&encoded), "credentials leaked: {text}");
    }
}

fn login(k: &Kiln, server: &str, password: &str) -> (i32, String, String) {
    let mut child = k
        .cmd()
        .args(["login", "--username", "alice", "--password-stdin", server])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    outcome(&child.wait_with_output().unwrap())
}

#[test]
fn creds_flag_and_clear_401s() {
    let Some(reg) = registry() else { return };
    let k = Kiln::new();
    let name = format!("{}/private/app:1", reg.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"a")]);

    let (code, stdout, stderr) = k.run(&["push", &name]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "authentication required for {} (no credentials configured for this host)",
            reg.addr
        )),
        "{stderr}"
    );
    no_canary(&stdout, &stderr);

    let (code, stdout, stderr) = k.run(&["push", "--creds", "alice:wrong-password", &name]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "{} rejected the credentials (401 Unauthorized)",
            reg.addr
        )),
        "{stderr}"
    );
    no_canary(&stdout, &stderr);

    let creds = format!("alice:{CANARY}");
    let (code, stdout, stderr) = k.run(&["push", "--creds", &creds, &name]);
    assert_eq!(code, 0, "{stderr}");
    no_canary(&stdout, &stderr);

    // An error after authentication succeeded must not show the credentials either.
    let missing = format!("{}/private/missing:1", reg.addr);
    let (code, stdout, stderr) = k.run(&["pull", "--creds", &creds, &missing]);
    assert_eq!(code, 1);
    assert!(stderr.contains("MANIFEST_UNKNOWN"), "{stderr}");
    no_canary(&stdout, &stderr);

    let other = Kiln::new();
    let (code, _, stderr) = other.run(&["pull", "--creds", &creds, &name]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn login_writes_the_docker_config_and_logout_removes_it() {
    let Some(reg) = registry() else { return };
    let k = Kiln::new();
    let name = format!("{}/private/app:1", reg.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"a")]);
    let config = k.docker_config().join("config.json");

    let (code, stdout, stderr) = login(&k, &reg.addr, "nope");
    assert_eq!(code, 1);
    assert!(stderr.contains("rejected the credentials"), "{stderr}");
    assert!(!config.exists(), "a failed login writes nothing");
    no_canary(&stdout, &stderr);

    let (code, stdout, stderr) = login(&k, &reg.addr, CANARY);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "Login Succeeded\n");
    no_canary(&stdout, &stderr);
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    assert_eq!(
        saved["auths"][&reg.addr]["auth"],
        STANDARD.encode(format!("alice:{CANARY}"))
    );

    let (code, stdout, stderr) = k.run(&["push", &name]);
    assert_eq!(code, 0, "{stderr}");
    no_canary(&stdout, &stderr);

    let (code, stdout, _) = k.run(&["logout", &reg.addr]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        format!("Removing login credentials for {}\n", reg.addr)
    );
    let (_, stdout, _) = k.run(&["logout", &reg.addr]);
    assert_eq!(stdout, format!("Not logged in to {}\n", reg.addr));
    let (code, _, stderr) = k.run(&["push", &name]);
    assert_eq!(code, 1);
    assert!(stderr.contains("authentication required"), "{stderr}");
}

/// A `docker-credential-test` helper keeping credentials in files next to it, and logging
/// each action it is asked to do.
fn install_helper(k: &Kiln) -> std::path::PathBuf {
    let bin = k.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let script = r#"#!/bin/sh
dir="$(dirname "$0")"
echo "$1" >> "$dir/actions"
case "$1" in
  get)
    server="$(cat)"
    if [ -f "$dir/secret" ] && [ "$server" = "$(cat "$dir/server")" ]; then
      printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}' "$server" "$(cat "$dir/user")" "$(cat "$dir/secret")"
    else
      echo "credentials not found in native keychain"; exit 1
    fi ;;
  store)
    input="$(cat)"
    echo "$input" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/' > "$dir/server"
    echo "$input" | sed 's/.*"Username":"\([^"]*\)".*/\1/' > "$dir/user"
    echo "$input" | sed 's/.*"Secret":"\([^"]*\)".*/\1/' > "$dir/secret" ;;
  erase)
    cat > /dev/null; rm -f "$dir/secret" ;;
esac
"#;
    let path = bin.join("docker-credential-test");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn credential_helpers_hold_the_secret() {
    let Some(reg) = registry() else { return };
    let k = Kiln::new();
    let bin = install_helper(&k);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config = k.docker_config().join("config.json");
    fs::write(&config, r#"{"credsStore": "test", "psFormat": "table"}"#).unwrap();
    let name = format!("{}/private/app:1", reg.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"a")]);

    let mut child = k
        .cmd()
        .env("PATH", &path)
        .args(["login", "-u", "alice", "--password-stdin", &reg.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(CANARY.as_bytes())
        .unwrap();
    let (code, stdout, stderr) = outcome(&child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{stderr}");
    no_canary(&stdout, &stderr);
    assert_eq!(
        fs::read_to_string(bin.join("secret")).unwrap().trim(),
        CANARY
    );
    assert_eq!(
        fs::read_to_string(bin.join("server")).unwrap().trim(),
        reg.addr
    );
    let text = fs::read_to_string(&config).unwrap();
    assert!(!text.contains(CANARY) && !text.contains(&STANDARD.encode(format!("alice:{CANARY}"))));
    let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved["auths"][&reg.addr], serde_json::json!({}));
    assert_eq!(saved["psFormat"], "table", "other settings are kept");

    let (code, stdout, stderr) = {
        let out = k
            .cmd()
            .env("PATH", &path)
            .args(["push", &name])
            .output()
            .unwrap();
        outcome(&out)
    };
    assert_eq!(code, 0, "{stderr}");
    no_canary(&stdout, &stderr);

    let out = k
        .cmd()
        .env("PATH", &path)
        .args(["logout", &reg.addr])
        .output()
        .unwrap();
    assert_eq!(outcome(&out).0, 0);
    assert!(!bin.join("secret").exists());
    let actions = fs::read_to_string(bin.join("actions")).unwrap();
    assert_eq!(
        actions.lines().collect::<Vec<_>>(),
        ["store", "get", "erase"]
    );
}
