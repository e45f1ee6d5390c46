//! Bearer-token auth against the registry in `auth: token` mode, with the test token issuer:
//! the right scopes (including `pull` on a mount's source), anonymous and wrong credentials,
//! and tokens requested once per scope set.

use std::sync::Arc;
use std::time::Duration;

use kiln_registry::{ClientOptions, Credentials, NoProgress, PushOptions, Registry};

use super::Kiln;
use super::library::StoreSource;
use crate::support::registry::{Auth, Config, RegistryServer};
use crate::support::registry_image::make_image;
use crate::support::registry_token::{ISSUER, SERVICE, TokenIssuer};

const PASSWORD: &str = "canary-TOKEN-PASS-456";

fn registry(issuer: &TokenIssuer) -> Option<RegistryServer> {
    RegistryServer::start(Config {
        auth: Auth::Token {
            realm: issuer.realm.clone(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            root_cert_pem: issuer.cert_pem.clone(),
        },
        tls: None,
        client_ca: None,
    })
}

#[test]
fn push_and_pull_with_tokens() {
    let issuer = TokenIssuer::start(&[("alice", PASSWORD)], 300);
    let Some(reg) = registry(&issuer) else { return };
    let k = Kiln::new();
    let name = format!("{}/tok/app:1", reg.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"token")]);
    let creds = format!("alice:{PASSWORD}");
    let (digest, stderr) = k.ok(&["push", "--creds", &creds, &name]);
    assert!(stderr.contains("2 uploaded"), "{stderr}");
    assert!(!stderr.contains(PASSWORD));

    let requests = issuer.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.user.as_deref(), Some("alice"), "{r:?}");
        assert!(
            r.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))
        );
    }
    // The whole push needed one scope set, so one token (the ping needs none).
    let push_scope = "repository:tok/app:pull,push".to_owned();
    let pull_scope = "repository:tok/app:pull".to_owned();
    let with_push = requests
        .iter()
        .filter(|r| r.scopes.contains(&push_scope))
        .count();
    assert_eq!(with_push, 1, "{requests:?}");
    let with_pull = requests
        .iter()
        .filter(|r| r.scopes == [pull_scope.clone()])
        .count();
    assert_eq!(with_pull, 1, "the HEADs use a pull token: {requests:?}");

    let other = Kiln::new();
    let (pulled, _) = other.ok(&["pull", "--creds", &creds, &name]);
    assert_eq!(pulled, digest);

    // Anonymous: the issuer grants nothing, the registry refuses; one re-authentication, no storm.
    let before = issuer.requests().len();
    let anon = Kiln::new();
    let (code, _, stderr) = anon.run(&["pull", &name]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("authentication required for {}", reg.addr)),
        "{stderr}"
    );
    let anonymous = &issuer.requests()[before..];
    assert!((1..=2).contains(&anonymous.len()), "{anonymous:?}");
    assert!(
        anonymous.iter().all(|r| r.authorization.is_none()),
        "{anonymous:?}"
    );
}

#[test]
fn wrong_password_is_rejected_by_the_token_server() {
    let issuer = TokenIssuer::start(&[("alice", PASSWORD)], 300);
    let Some(reg) = registry(&issuer) else { return };
    let k = Kiln::new();
    let name = format!("{}/tok/app:1", reg.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"a")]);
    let (code, stdout, stderr) = k.run(&["push", "--creds", "alice:canary-WRONG-123", &name]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "{}: token server {} rejected the request (401 Unauthorized): invalid credentials (UNAUTHORIZED)",
            reg.addr, issuer.realm
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("canary-WRONG-123") && !stdout.contains("canary-WRONG-123"));
    assert_eq!(
        issuer.requests().len(),
        1,
        "a refused password is not retried"
    );
}

#[test]
fn identity_tokens_use_the_oauth2_refresh_grant() {
    let issuer = TokenIssuer::with_refresh_tokens(&[], &[("canary-REFRESH-321", "alice")], 300);
    let Some(reg) = registry(&issuer) else { return };
    let k = Kiln::new();
    std::fs::write(
        k.docker_config().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"identitytoken":"canary-REFRESH-321"}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let name = format!("{}/tok/app:1", reg.addr);
    make_image(&k.root(), &name, "amd64", &[("a", b"identity")]);
    let (_, stderr) = k.ok(&["push", &name]);
    assert!(!stderr.contains("canary-REFRESH-321"));
    let requests = issuer.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.user.as_deref()),
            ("POST", Some("alice")),
            "{r:?}"
        );
        assert_eq!(
            r.authorization, None,
            "the refresh token travels in the form only"
        );
    }
    assert!(
        requests
            .iter()
            .any(|r| r.scopes == ["repository:tok/app:pull,push"])
    );
}

#[test]
fn an_expired_token_is_renewed_once_and_the_transfer_goes_on() {
    // Tokens the registry accepts for a few seconds (distribution allows 60 s of clock skew
    // past `exp`), advertised as good for 5 minutes: kiln keeps using one until the registry
    // says 401, then asks for a new one.
    let issuer = TokenIssuer::new(&[("alice", PASSWORD)], &[], -54, 300);
    let Some(reg) = registry(&issuer) else { return };
    let k = Kiln::new();
    let first = format!("{}/tok/app:1", reg.addr);
    let second = format!("{}/tok/app:2", reg.addr);
    let a = make_image(&k.root(), &first, "amd64", &[("a", b"first")]);
    let b = make_image(&k.root(), &second, "amd64", &[("b", b"second")]);
    let registry = Registry::new(
        &reg.addr,
        Credentials::from_user_pass(&format!("alice:{PASSWORD}")),
        &ClientOptions::default(),
        Arc::new(NoProgress),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let source = StoreSource(k.store());
    let push = |desc, tag: &str| {
        let options = PushOptions {
            tags: vec![tag.to_owned()],
            ..PushOptions::default()
        };
        runtime.block_on(kiln_registry::push(
            &registry, "tok/app", desc, &source, &options,
        ))
    };
    push(&a, "1").unwrap();
    // (pull-scope tokens, push-scope tokens) requested so far.
    let tokens = |issuer: &TokenIssuer| {
        let requests = issuer.requests();
        let count = |scope: &str| requests.iter().filter(|r| r.scopes == [scope]).count();
        (
            count("repository:tok/app:pull"),
            count("repository:tok/app:pull,push"),
        )
    };
    assert_eq!(tokens(&issuer), (1, 1));
    std::thread::sleep(Duration::from_secs(7));
    push(&b, "2").unwrap();
    // Both blobs' HEADs, then both uploads, were refused at once: one renewal each, merged
    // with the challenge's `push,pull` into the same scope.
    assert_eq!(tokens(&issuer), (2, 2), "{:?}", issuer.requests());
    let other = Kiln::new();
    let creds = format!("alice:{PASSWORD}");
    assert_eq!(
        other.ok(&["pull", "--creds", &creds, &second]).0,
        b.digest().to_string()
    );
}

#[test]
fn mounts_ask_for_pull_on_the_source_repository() {
    let issuer = TokenIssuer::start(&[("alice", PASSWORD)], 300);
    let Some(reg) = registry(&issuer) else { return };
    let k = Kiln::new();
    let first = format!("{}/tok/a:1", reg.addr);
    let second = format!("{}/tok/b:1", reg.addr);
    make_image(&k.root(), &first, "amd64", &[("a", b"mount me")]);
    let creds = format!("alice:{PASSWORD}");
    k.ok(&["push", "--creds", &creds, &first]);
    let (_, stderr) = k.ok(&["push", "--creds", &creds, &first, &second]);
    assert!(stderr.contains("2 mounted"), "{stderr}");
    assert_eq!(reg.requests("PUT", "/v2/tok/b/blobs/uploads/"), 0);
    let mount_token = issuer.requests().into_iter().find(|r| {
        r.scopes.contains(&"repository:tok/b:pull,push".to_owned())
            && r.scopes.contains(&"repository:tok/a:pull".to_owned())
    });
    assert!(mount_token.is_some(), "{:?}", issuer.requests());
}
