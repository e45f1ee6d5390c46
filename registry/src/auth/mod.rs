//! Authentication: credentials, the challenge a registry answers with, and bearer tokens cached
//! per scope set.
//!
//! The registry says how it wants to be addressed: `GET /v2/` (or any request) answers 401 with
//! `WWW-Authenticate`. `Basic` means send the credentials with every request; `Bearer` means
//! fetch a token from the realm for the scopes a request needs (with the credentials, or
//! anonymously) and send that. Tokens are cached per set of scopes and renewed shortly before
//! they expire. A 401 on a request that carried a token means the token was not enough: the
//! caller asks for a fresh one, with the scopes the new challenge names first, and retries once.
//!
//! Secrets never leave this module except as `Authorization` header values marked sensitive
//! (so they are redacted from `Debug` output); [`Credentials`] prints without them.

pub mod challenge;
pub mod token;

use std::collections::HashMap;
use std::fmt;
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::error::{Error, ErrorList, RequestInfo};
use crate::retry::RetryPolicy;
use token::Token;

/// How a user proves who they are to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or personal access token).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`).
    IdentityToken {
        /// The token.
        token: String,
    },
}

impl Credentials {
    /// Reads `USER:PASSWORD` (the password may contain colons); `None` without a colon or user.
    pub fn from_user_pass(s: &str) -> Option<Self> {
        let (username, password) = s.split_once(':')?;
        (!username.is_empty()).then(|| Self::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    /// The user name, if there is one.
    pub fn username(&self) -> Option<&str> {
        match self {
            Self::Basic { username, .. } => Some(username),
            Self::IdentityToken { .. } => None,
        }
    }

    fn basic_header(username: &str, password: &str) -> HeaderValue {
        let encoded = BASE64.encode(format!("{username}:{password}"));
        sensitive(&format!("Basic {encoded}"))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::IdentityToken { .. } => f
                .debug_struct("IdentityToken")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// A header value marked sensitive. Base64 and tokens are visible ASCII, so this cannot fail
/// for the values built here; anything else becomes an empty (useless, harmless) value.
fn sensitive(value: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// What the registry asked for.
#[derive(Debug, Clone, Default)]
enum Scheme {
    /// Nothing yet (anonymous access, or no challenge seen).
    #[default]
    None,
    /// HTTP Basic.
    Basic,
    /// Bearer tokens from a realm.
    Bearer { realm: Url, service: Option<String> },
}

#[derive(Debug, Default)]
struct State {
    scheme: Scheme,
    tokens: HashMap<String, Token>,
    /// The last token generation handed out.
    generation: u64,
}

/// What to send with a request, and which token it was (to refresh it only once).
#[derive(Debug, Clone, Default)]
pub(crate) struct Authorization {
    /// The `Authorization` value, if any.
    pub(crate) header: Option<HeaderValue>,
    /// The token's generation (0 for none or Basic).
    pub(crate) generation: u64,
}

/// One registry's authentication state, shared by every request to it.
#[derive(Debug)]
pub(crate) struct Authenticator {
    registry: String,
    credentials: Option<Credentials>,
    state: tokio::sync::Mutex<State>,
}

/// What a challenge told the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenged {
    /// Retry with fresh authorization for these scopes.
    Retry(Vec<String>),
    /// Nothing kiln can answer (no challenge, or Basic without credentials).
    GiveUp,
}

impl Authenticator {
    pub(crate) fn new(registry: &str, credentials: Option<Credentials>) -> Self {
        Self {
            registry: registry.to_owned(),
            credentials,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    pub(crate) fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Learns from a 401's `WWW-Authenticate` headers; says whether to retry and with which
    /// scopes. `registry_url` is the registry's base URL (the realm is checked against it).
    pub(crate) async fn challenged(
        &self,
        headers: &HeaderMap,
        registry_url: &Url,
        scopes: &[String],
    ) -> Result<Challenged, Error> {
        let challenges: Vec<challenge::Challenge> = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(challenge::parse)
            .collect();
        let bearer = challenges
            .iter()
            .find(|c| c.scheme == "bearer" && c.param("realm").is_some());
        let mut state = self.state.lock().await;
        if let Some(c) = bearer {
            let realm_text = c.param("realm").unwrap_or_default();
            let realm = Url::parse(realm_text).map_err(|_| Error::Realm {
                registry: self.registry.clone(),
                realm: realm_text.to_owned(),
                reason: "not a URL",
            })?;
            token::check_realm(&realm, registry_url).map_err(|reason| Error::Realm {
                registry: self.registry.clone(),
                realm: realm_text.to_owned(),
                reason,
            })?;
            state.scheme = Scheme::Bearer {
                realm,
                service: c.param("service").map(str::to_owned),
            };
            return Ok(Challenged::Retry(token::merge_scopes(
                c.param("scope"),
                scopes,
            )));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let first_time = !matches!(state.scheme, Scheme::Basic);
            state.scheme = Scheme::Basic;
            if self.credentials.is_some() && first_time {
                return Ok(Challenged::Retry(scopes.to_vec()));
            }
        }
        Ok(Challenged::GiveUp)
    }

    /// What to send with a request needing `scopes`. A bearer token is cached under `scopes`
    /// and fetched for `fetch` (the same scopes, or more after a challenge). `stale` is the
    /// generation of a token the registry refused: it is replaced, once, however many
    /// concurrent requests were refused with it.
    pub(crate) async fn authorization(
        &self,
        http: &reqwest::Client,
        scopes: &[String],
        fetch: &[String],
        stale: Option<u64>,
        retry: &RetryPolicy,
    ) -> Result<Authorization, Error> {
        let mut state = self.state.lock().await;
        let (realm, service) = match &state.scheme {
            Scheme::None => return Ok(Authorization::default()),
            Scheme::Basic => {
                let header = match &self.credentials {
                    Some(Credentials::Basic { username, password }) => {
                        Some(Credentials::basic_header(username, password))
                    }
                    _ => None,
                };
                return Ok(Authorization {
                    header,
                    generation: 0,
                });
            }
            Scheme::Bearer { realm, service } => (realm.clone(), service.clone()),
        };
        let key = token::scope_key(scopes);
        if let Some(t) = state
            .tokens
            .get(&key)
            .filter(|t| t.is_fresh(Instant::now()) && stale.is_none_or(|g| g != t.generation))
        {
            return Ok(Authorization {
                header: Some(sensitive(&format!("Bearer {}", t.value))),
                generation: t.generation,
            });
        }
        let mut token = self
            .fetch_token(http, &realm, service.as_deref(), fetch, retry)
            .await?;
        state.generation += 1;
        token.generation = state.generation;
        let authorization = Authorization {
            header: Some(sensitive(&format!("Bearer {}", token.value))),
            generation: token.generation,
        };
        state.tokens.insert(key, token);
        Ok(authorization)
    }

    /// Asks the realm for a token: `GET` with Basic credentials (or anonymously), or the OAuth2
    /// refresh-token `POST` for identity tokens. Retries like any other request.
    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        realm: &Url,
        service: Option<&str>,
        scopes: &[String],
        retry: &RetryPolicy,
    ) -> Result<Token, Error> {
        let realm_shown = RequestInfo::new(Method::GET, realm).url;
        let mut attempt = 1;
        loop {
            let request = match &self.credentials {
                Some(Credentials::IdentityToken { token }) => http
                    .post(realm.clone())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(token::refresh_form(token, service, scopes)),
                Some(Credentials::Basic { username, password }) => {
                    http.get(token::token_url(realm, service, scopes)).header(
                        header::AUTHORIZATION,
                        Credentials::basic_header(username, password),
                    )
                }
                None => http.get(token::token_url(realm, service, scopes)),
            };
            let info = RequestInfo::new(Method::GET, realm);
            let outcome = request.send().await;
            let transient = match &outcome {
                Ok(r) => crate::retry::is_retryable_status(r.status()),
                Err(_) => true,
            };
            if transient && attempt < retry.attempts {
                let after = outcome
                    .as_ref()
                    .ok()
                    .and_then(|r| r.headers().get(header::RETRY_AFTER))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                tokio::time::sleep(retry.wait_for(attempt, after.as_deref(), SystemTime::now()))
                    .await;
                attempt += 1;
                continue;
            }
            let response = outcome.map_err(|source| Error::Transport {
                request: info,
                attempts: crate::error::Attempts(attempt),
                source: source.without_url(),
            })?;
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            if status != StatusCode::OK {
                return Err(Error::TokenRejected {
                    registry: self.registry.clone(),
                    realm: realm_shown,
                    status,
                    errors: ErrorList::parse(&body),
                });
            }
            return Token::parse(&body, Instant::now()).ok_or(Error::BadToken {
                registry: self.registry.clone(),
                realm: realm_shown,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_hide_secrets() {
        let c = Credentials::from_user_pass("alice:pa:ss").unwrap();
        assert_eq!(c.username(), Some("alice"));
        assert_eq!(
            c,
            Credentials::Basic {
                username: "alice".into(),
                password: "pa:ss".into()
            }
        );
        let shown = format!("{c:?}");
        assert!(
            shown.contains("alice") && !shown.contains("pa:ss"),
            "{shown}"
        );
        let t = Credentials::IdentityToken {
            token: "tok-123".into(),
        };
        assert!(!format!("{t:?}").contains("tok-123"));
        assert_eq!(Credentials::from_user_pass("nopass"), None);
        assert_eq!(Credentials::from_user_pass(":p"), None);
        let h = Credentials::basic_header("u", "p");
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic dTpw");
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[tokio::test]
    async fn challenges_decide_what_to_send() {
        let url = Url::parse("https://reg.test").unwrap();
        crate::transport::install_crypto_provider();
        let http = reqwest::Client::builder().build().unwrap();
        let retry = RetryPolicy::default();
        let scopes = vec![token::pull_scope("a")];

        let anon = Authenticator::new("reg.test", None);
        let auth = anon
            .authorization(&http, &scopes, &scopes, None, &retry)
            .await
            .unwrap();
        assert_eq!(auth.header, None);
        let got = anon
            .challenged(&headers(&[r#"Basic realm="r""#]), &url, &scopes)
            .await
            .unwrap();
        assert_eq!(got, Challenged::GiveUp);
        assert_eq!(
            anon.challenged(&HeaderMap::new(), &url, &scopes)
                .await
                .unwrap(),
            Challenged::GiveUp
        );

        let basic = Authenticator::new("reg.test", Credentials::from_user_pass("u:p"));
        let got = basic
            .challenged(&headers(&[r#"Basic realm="r""#]), &url, &scopes)
            .await
            .unwrap();
        assert_eq!(got, Challenged::Retry(scopes.clone()));
        let h = basic
            .authorization(&http, &scopes, &scopes, None, &retry)
            .await
            .unwrap()
            .header
            .unwrap();
        assert_eq!(h.to_str().unwrap(), "Basic dTpw");
        // A second Basic challenge means the credentials were refused: no retry loop.
        let got = basic
            .challenged(&headers(&[r#"Basic realm="r""#]), &url, &scopes)
            .await
            .unwrap();
        assert_eq!(got, Challenged::GiveUp);

        let bearer = Authenticator::new("reg.test", None);
        let got = bearer
            .challenged(
                &headers(&[
                    r#"Basic realm="b""#,
                    r#"Bearer realm="https://auth.test/t",service="s",scope="repository:a:pull""#,
                ]),
                &url,
                &scopes,
            )
            .await
            .unwrap();
        assert_eq!(got, Challenged::Retry(scopes.clone()));
        let err = bearer
            .challenged(
                &headers(&[r#"Bearer realm="https://169.254.169.254/t""#]),
                &url,
                &scopes,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "reg.test: refusing token realm https://169.254.169.254/t: link-local address"
        );
    }
}
