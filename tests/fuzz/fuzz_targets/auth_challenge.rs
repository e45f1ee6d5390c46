//! The `WWW-Authenticate` challenge parser and the bearer-token flow's pure parts
//! (`kiln_registry::auth`), run the way the client runs them on a 401: every challenge has a
//! non-empty lowercase token for a scheme and lowercase parameter names; a bearer realm that
//! parses as a URL is checked against the registry, and one that passes is never a link-local
//! address (cloud metadata); merged scopes are stable under merging again and end up in the token
//! URL's query exactly once each. The same input is also read as a token response, which must
//! not panic whatever `expires_in` says.
//!
//! Input: the first byte picks the registry URL, the rest is the header value.

#![no_main]

use std::net::IpAddr;
use std::time::Instant;

use kiln_registry::auth::challenge::{self, MAX_HEADER_LEN};
use kiln_registry::auth::token;
use libfuzzer_sys::fuzz_target;
use url::Url;

const REGISTRIES: [&str; 4] = [
    "https://registry.example.com",
    "http://localhost:5000",
    "http://10.1.2.3:5000",
    "https://[::1]:5000",
];

fuzz_target!(|input: &[u8]| {
    let Some((&pick, rest)) = input.split_first() else {
        return;
    };
    let _ = token::Token::parse(rest, Instant::now());
    let Ok(header) = std::str::from_utf8(rest) else {
        return;
    };
    let registry = Url::parse(REGISTRIES[usize::from(pick) % REGISTRIES.len()]).unwrap();

    let challenges = challenge::parse(header);
    if header.len() > MAX_HEADER_LEN {
        assert!(challenges.is_empty());
    }
    for c in &challenges {
        assert!(is_lower_token(&c.scheme), "scheme {:?}", c.scheme);
        for name in c.params.keys() {
            assert!(is_lower_token(name), "parameter name {name:?}");
        }
    }

    let Some(bearer) = challenges
        .iter()
        .find(|c| c.scheme == "bearer" && c.param("realm").is_some())
    else {
        return;
    };
    let requested = vec![
        token::pull_scope("library/busybox"),
        token::push_scope("localhost:5000/a/b"),
    ];
    let scopes = token::merge_scopes(bearer.param("scope"), &requested);
    assert_eq!(
        token::merge_scopes(None, &scopes),
        scopes,
        "merging is not stable"
    );
    let mut reversed = scopes.clone();
    reversed.reverse();
    assert_eq!(token::scope_key(&scopes), token::scope_key(&reversed));

    let Ok(realm) = Url::parse(bearer.param("realm").unwrap()) else {
        return;
    };
    if token::check_realm(&realm, &registry).is_ok() {
        assert!(matches!(realm.scheme(), "http" | "https"));
        if let Some(ip) = token::ip_literal(&realm) {
            assert!(!is_link_local(ip), "link-local realm {realm} accepted");
        }
    }
    let service = bearer.param("service");
    let url = token::token_url(&realm, service, &scopes);
    let sent: Vec<String> = url
        .query_pairs()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    // The realm's own query may name scopes too; ours come after it, in order.
    assert!(sent.ends_with(&scopes), "{url} does not carry {scopes:?}");
    let _ = token::refresh_form("refresh", service, &scopes);
});

fn is_lower_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_graphic() && !b.is_ascii_uppercase() && !b"\"(),/:;<=>?@[\\]{}".contains(&b)
        })
}

/// Link-local in any spelling, an IPv4-mapped IPv6 address included.
fn is_link_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}
