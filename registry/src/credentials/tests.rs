use std::os::unix::fs::PermissionsExt;

use super::*;

fn config(json: &str) -> (tempfile::TempDir, DockerConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    fs::write(&path, json).unwrap();
    let config = DockerConfig::load(&path).unwrap();
    (dir, config)
}

fn show(found: Result<Option<Credentials>, CredentialsError>) -> String {
    match found {
        Ok(Some(Credentials::Basic { username, password })) => format!("{username}:{password}"),
        Ok(Some(Credentials::IdentityToken { token })) => format!("token {token}"),
        Ok(None) => "none".into(),
        Err(CredentialsError::InvalidEntry { server, .. }) => format!("invalid {server}"),
        Err(e) => format!("error {e}"),
    }
}

#[test]
fn lookup_table() {
    let json = r#"{
        "auths": {
            "https://index.docker.io/v1/": {"auth": "aHViOmh1YnBhc3M="},
            "reg.test:5000": {"auth": "dTpwOmFzcw=="},
            "https://other.test/v1/": {"auth": "bzpw"},
            "plain.test": {"username": "pu", "password": "pp"},
            "tok.test": {"auth": "", "identitytoken": "refresh-me"},
            "bad.test": {"auth": "!!!"},
            "nocolon.test": {"auth": "bm9jb2xvbg=="},
            "empty.test": {}
        },
        "psFormat": "keep me"
    }"#;
    let (_dir, config) = config(json);
    let cases: &[(&str, &str)] = &[
        ("docker.io", "hub:hubpass"),
        ("reg.test:5000", "u:p:ass"),
        ("reg.test", "none"),
        ("other.test", "o:p"),
        ("plain.test", "pu:pp"),
        ("tok.test", "token refresh-me"),
        ("bad.test", "invalid bad.test"),
        ("nocolon.test", "invalid nocolon.test"),
        ("empty.test", "none"),
        ("unknown.test", "none"),
    ];
    for (registry, expected) in cases {
        assert_eq!(show(config.lookup(registry)), *expected, "{registry}");
    }
    assert_eq!(config.helper_for("reg.test:5000"), None);
}

#[test]
fn helpers_are_chosen_like_docker() {
    let (_dir, config) = config(
        r#"{"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud", "https://index.docker.io/v1/": "hub"}, "auths": {}}"#,
    );
    assert_eq!(config.helper_for("gcr.io"), Some("gcloud"));
    assert_eq!(config.helper_for("docker.io"), Some("hub"));
    assert_eq!(config.helper_for("reg.test"), Some("desktop"));
    let (_dir, config) = config_without_store();
    assert_eq!(config.helper_for("reg.test"), None);
}

fn config_without_store() -> (tempfile::TempDir, DockerConfig) {
    config(r#"{"credsStore": ""}"#)
}

#[test]
fn store_save_erase_round_trip() {
    let (dir, mut config) = config(
        r#"{"auths": {"https://reg.test/v1/": {"auth": "b2xkOm9sZA=="}}, "psFormat": "keep me"}"#,
    );
    config
        .store(
            "reg.test",
            &Credentials::Basic {
                username: "alice".into(),
                password: "s3cr:et".into(),
            },
        )
        .unwrap();
    config
        .store(
            "tok.test",
            &Credentials::IdentityToken {
                token: "t0k".into(),
            },
        )
        .unwrap();
    config.save().unwrap();
    let path = dir.path().join("config.json");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = fs::read_to_string(&path).unwrap();
    let saved: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved["psFormat"], "keep me");
    assert_eq!(
        saved["auths"]["reg.test"]["auth"],
        BASE64.encode("alice:s3cr:et")
    );
    assert!(saved["auths"].get("https://reg.test/v1/").is_none());
    assert!(text.contains("\n\t\"auths\""), "{text}");

    let reloaded = DockerConfig::load(&path).unwrap();
    assert_eq!(show(reloaded.lookup("reg.test")), "alice:s3cr:et");
    assert_eq!(show(reloaded.lookup("tok.test")), "token t0k");

    let mut reloaded = reloaded;
    assert!(reloaded.erase("reg.test").unwrap());
    assert!(!reloaded.erase("reg.test").unwrap());
    reloaded.save().unwrap();
    assert_eq!(
        show(DockerConfig::load(&path).unwrap().lookup("reg.test")),
        "none"
    );
}

#[test]
fn save_creates_a_private_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/.docker/config.json");
    let mut config = DockerConfig::load(&path).unwrap();
    assert_eq!(show(config.lookup("reg.test")), "none");
    config
        .store(
            "reg.test",
            &Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        )
        .unwrap();
    config.save().unwrap();
    let mode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn bad_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    fs::write(&path, "{not json").unwrap();
    assert!(matches!(
        DockerConfig::load(&path),
        Err(CredentialsError::Parse { .. })
    ));
    fs::write(&path, "  \n").unwrap();
    assert!(DockerConfig::load(&path).is_ok());
}

#[test]
fn paths_and_keys() {
    let p = |dc: Option<&str>, home: Option<&str>| {
        DockerConfig::path_from(dc.map(PathBuf::from), home.map(PathBuf::from))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| e.to_string())
    };
    assert_eq!(p(Some("/cfg"), Some("/home/u")), "/cfg/config.json");
    assert_eq!(p(None, Some("/home/u")), "/home/u/.docker/config.json");
    assert_eq!(p(Some(""), Some("/h")), "/h/.docker/config.json");
    assert!(p(None, None).contains("DOCKER_CONFIG"));
    assert_eq!(server_key("docker.io"), DOCKER_HUB_KEY);
    assert_eq!(server_key("localhost:5000"), "localhost:5000");
    assert_eq!(hostname("https://reg.test:5000/v1/"), "reg.test:5000");
    assert_eq!(hostname("reg.test"), "reg.test");
}
