//! The token flow's pure parts: scopes, the token request URL and form, the token response, and
//! which realms kiln will talk to.
//!
//! Scopes are `repository:<name>:<actions>`; a name may contain a port (`host:5000/repo`), so the
//! actions are what follows the last colon (distribution `scope.md`). A token response carries
//! `token` and/or `access_token`; `expires_in` defaults to 60 seconds and, as docker does, is
//! never taken as less than that; nor as more than a day.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::Url;

/// The shortest lifetime kiln assumes for a token (docker's `minimumTokenLifetimeSeconds`).
const MIN_LIFETIME: Duration = Duration::from_secs(60);

/// The longest lifetime kiln believes: a token is renewed at least daily, and an absurd
/// `expires_in` cannot overflow the clock.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A token is renewed this long before it expires, so that it does not expire in flight.
const RENEW_BEFORE: Duration = Duration::from_secs(10);

/// The client id kiln sends in OAuth2 requests (required by the spec, any value accepted).
pub const CLIENT_ID: &str = "kiln";

/// `repository:<name>:pull`.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// `repository:<name>:pull,push`.
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// Merges a challenge's `scope` parameter (space-separated scopes) into what a request asked
/// for. Scopes naming the same resource become one, with the union of their actions
/// (distribution says `push,pull` where kiln says `pull,push`); the registry's resources come
/// first, since some token servers only read the first scope.
pub fn merge_scopes(challenge_scope: Option<&str>, requested: &[String]) -> Vec<String> {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    let from_challenge = challenge_scope.into_iter().flat_map(str::split_whitespace);
    for scope in from_challenge.chain(requested.iter().map(String::as_str)) {
        // The resource name may hold a port: the actions follow the last colon.
        let (resource, actions) = scope.rsplit_once(':').unwrap_or((scope, ""));
        let index = match merged.iter().position(|(r, _)| r == resource) {
            Some(i) => i,
            None => {
                merged.push((resource.to_owned(), Vec::new()));
                merged.len() - 1
            }
        };
        let known = &mut merged[index].1;
        for action in actions.split(',').filter(|a| !a.is_empty()) {
            if !known.iter().any(|k| k == action) {
                known.push(action.to_owned());
            }
        }
    }
    merged
        .into_iter()
        .map(|(resource, mut actions)| {
            actions.sort();
            format!("{resource}:{}", actions.join(","))
        })
        .collect()
}

/// The cache key of a set of scopes: order and duplicates do not matter.
pub fn scope_key(scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(" ")
}

/// `GET <realm>?service=<s>&scope=<a>&scope=<b>`, keeping any query the realm has.
pub fn token_url(realm: &Url, service: Option<&str>, scopes: &[String]) -> Url {
    let mut url = realm.clone();
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
    }
    url
}

/// The OAuth2 refresh-token form (distribution `oauth.md`), url-encoded.
pub fn refresh_form(refresh_token: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut form = Url::parse("http://form/").expect("a constant URL parses");
    {
        let mut query = form.query_pairs_mut();
        query
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token)
            .append_pair("client_id", CLIENT_ID)
            .append_pair("access_type", "offline");
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        if !scopes.is_empty() {
            query.append_pair("scope", &scopes.join(" "));
        }
    }
    form.query().unwrap_or_default().to_owned()
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    /// The token itself (secret).
    pub value: String,
    /// When it should be renewed.
    pub renew_at: Instant,
    /// Which fetch it came from: a request refused with generation N asks for a new token only
    /// if no other request already replaced N.
    pub generation: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("renew_at", &self.renew_at)
            .finish()
    }
}

impl Token {
    /// Reads a token response received at `now`; `None` if it carries no token.
    pub fn parse(body: &[u8], now: Instant) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Response {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let r: Response = serde_json::from_slice(body).ok()?;
        let value = r
            .token
            .filter(|t| !t.is_empty())
            .or(r.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = r
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(MIN_LIFETIME)
            .clamp(MIN_LIFETIME, MAX_LIFETIME);
        Some(Self {
            value,
            renew_at: now + lifetime - RENEW_BEFORE,
            generation: 0,
        })
    }

    /// Whether it is still good to send at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.renew_at
    }
}

/// Checks a realm before any request (let alone credentials) goes to it: it must be http(s);
/// https when the registry is (no downgrade); and an IP literal must not be link-local (cloud
/// metadata services live there), nor loopback or private unless the registry itself is on
/// such an address.
pub fn check_realm(realm: &Url, registry: &Url) -> Result<(), &'static str> {
    match realm.scheme() {
        "https" => {}
        "http" if registry.scheme() == "http" => {}
        "http" => return Err("plain http realm for an https registry"),
        _ => return Err("not an http(s) URL"),
    }
    let Some(ip) = ip_literal(realm) else {
        return Ok(());
    };
    if is_link_local(ip) {
        return Err("link-local address");
    }
    let registry_internal = ip_literal(registry).is_some_and(is_internal)
        || registry
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost"));
    if is_internal(ip) && !registry_internal {
        return Err("internal address for a public registry");
    }
    Ok(())
}

/// The host of `url` if it is an IP address.
pub fn ip_literal(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// Link-local in any spelling: an IPv4-mapped IPv6 address is the IPv4 address it maps.
fn is_link_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Loopback, private, link-local or unspecified.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || is_link_local(ip)
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let requested = vec![push_scope("a/b"), pull_scope("c")];
        assert_eq!(
            merge_scopes(
                Some("repository:a/b:pull,push repository:x:pull"),
                &requested
            ),
            [
                "repository:a/b:pull,push",
                "repository:x:pull",
                "repository:c:pull"
            ]
        );
        assert_eq!(merge_scopes(None, &requested), requested);
        assert_eq!(
            scope_key(&["b".into(), "a".into(), "b".into()]),
            scope_key(&["a".into(), "b".into()])
        );
    }

    #[test]
    fn token_requests() {
        let realm = Url::parse("https://auth.test/token?x=1").unwrap();
        let url = token_url(
            &realm,
            Some("reg test"),
            &[
                "repository:host:5000/a:pull,push".into(),
                "repository:b:pull".into(),
            ],
        );
        assert_eq!(
            url.as_str(),
            "https://auth.test/token?x=1&service=reg+test&scope=repository%3Ahost%3A5000%2Fa%3Apull%2Cpush&scope=repository%3Ab%3Apull"
        );
        assert_eq!(
            refresh_form(
                "r&t",
                Some("s"),
                &["repository:a:pull".into(), "repository:b:pull".into()]
            ),
            "grant_type=refresh_token&refresh_token=r%26t&client_id=kiln&access_type=offline&service=s&scope=repository%3Aa%3Apull+repository%3Ab%3Apull"
        );
    }

    #[test]
    fn token_responses() {
        let now = Instant::now();
        let cases: &[(&str, Option<(&str, u64)>)] = &[
            (r#"{"token":"t","expires_in":300}"#, Some(("t", 290))),
            (r#"{"access_token":"a"}"#, Some(("a", 50))),
            (
                r#"{"token":"","access_token":"a","expires_in":5}"#,
                Some(("a", 50)),
            ),
            (r#"{"token":"t","access_token":"a"}"#, Some(("t", 50))),
            // Found while fuzzing: `now + u64::MAX seconds` overflowed `Instant`.
            (
                r#"{"token":"t","expires_in":18446744073709551615}"#,
                Some(("t", 86_390)),
            ),
            (r#"{"expires_in":300}"#, None),
            ("not json", None),
        ];
        for (body, expected) in cases {
            let got = Token::parse(body.as_bytes(), now)
                .map(|t| (t.value.clone(), (t.renew_at - now).as_secs()));
            assert_eq!(got, expected.map(|(v, s)| (v.to_owned(), s)), "{body}");
        }
        let t = Token::parse(br#"{"token":"t"}"#, now).unwrap();
        assert!(t.is_fresh(now) && !t.is_fresh(now + Duration::from_secs(51)));
        assert!(!format!("{t:?}").contains("\"t\""));
    }

    #[test]
    fn realm_policy() {
        let https = Url::parse("https://registry.example").unwrap();
        let local = Url::parse("http://127.0.0.1:5000").unwrap();
        let cases: &[(&str, &Url, Result<(), &str>)] = &[
            ("https://auth.example/token", &https, Ok(())),
            (
                "http://auth.example/token",
                &https,
                Err("plain http realm for an https registry"),
            ),
            (
                "https://169.254.169.254/token",
                &https,
                Err("link-local address"),
            ),
            ("https://[fe80::1]/token", &https, Err("link-local address")),
            (
                "https://10.0.0.5/token",
                &https,
                Err("internal address for a public registry"),
            ),
            (
                "https://127.0.0.1:9/token",
                &https,
                Err("internal address for a public registry"),
            ),
            ("http://127.0.0.1:9/token", &local, Ok(())),
            (
                "http://169.254.169.254/token",
                &local,
                Err("link-local address"),
            ),
            // Found while fuzzing: the IPv4-mapped spelling of a link-local address passed for a
            // registry on an internal address.
            (
                "http://[::ffff:169.254.169.254]/token",
                &local,
                Err("link-local address"),
            ),
            (
                "ftp://auth.example/token",
                &https,
                Err("not an http(s) URL"),
            ),
        ];
        for (realm, registry, expected) in cases {
            assert_eq!(
                check_realm(&Url::parse(realm).unwrap(), registry),
                *expected,
                "{realm}"
            );
        }
    }
}
