//! The client's error type, and the registry's error envelope.
//!
//! Every error names the request it came from as `METHOD scheme://host/path`, without the query
//! string: upload locations carry opaque state there (distribution's HMAC'd `_state`), and a
//! query is where a careless server would echo a secret. Credentials and tokens are never part of
//! an error. Text that comes from the registry (the envelope's `message`) is attacker-controlled:
//! it is truncated and stripped of control characters before it is kept.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};

use crate::credentials::CredentialsError;
use crate::digest::Digest;
use crate::manifest::ManifestError;

/// A boxed error from a caller-supplied store or source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How much of a registry's error message is kept.
const MESSAGE_MAX_CHARS: usize = 200;

/// How many of a registry's errors are kept.
const ERRORS_MAX: usize = 4;

/// A request as errors and progress name it: method and URL without its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The HTTP method.
    pub method: Method,
    /// `scheme://host[:port]/path`.
    pub url: String,
}

impl RequestInfo {
    /// Describes a request to `url`, dropping its query, fragment and any user info.
    pub fn new(method: Method, url: &Url) -> Self {
        let mut shown = url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        // Only fails for URLs that cannot have a host, which registry URLs always have.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        Self {
            method,
            url: shown.to_string(),
        }
    }
}

impl fmt::Display for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)
    }
}

/// One entry of the distribution error envelope, `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The error code, e.g. `MANIFEST_UNKNOWN` (`UNKNOWN` when the registry gave none).
    pub code: String,
    /// The registry's message, truncated and with control characters removed.
    pub message: String,
}

/// The errors a registry returned with a failed response (possibly none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorList(pub Vec<ErrorInfo>);

impl ErrorList {
    /// Reads the envelope from a response body; anything else (HTML, plain text, nothing)
    /// gives an empty list, as the spec allows any body on a 4xx.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Envelope {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            code: Option<String>,
            message: Option<String>,
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
            return Self::default();
        };
        Self(
            envelope
                .errors
                .into_iter()
                .take(ERRORS_MAX)
                .map(|e| ErrorInfo {
                    code: sanitize(e.code.as_deref().unwrap_or("UNKNOWN")),
                    message: sanitize(e.message.as_deref().unwrap_or_default()),
                })
                .collect(),
        )
    }

    /// Whether the registry reported `code`.
    pub fn has(&self, code: &str) -> bool {
        self.0.iter().any(|e| e.code == code)
    }
}

impl fmt::Display for ErrorList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            if e.message.is_empty() {
                write!(f, "{}", e.code)?;
            } else {
                write!(f, "{} ({})", e.message, e.code)?;
            }
        }
        Ok(())
    }
}

/// Keeps registry text printable and short.
fn sanitize(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MESSAGE_MAX_CHARS)
        .collect();
    if text.chars().count() > MESSAGE_MAX_CHARS {
        out.push('…');
    }
    out
}

/// `" (after N attempts)"` when a request was tried more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts(pub u32);

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 > 1 {
            write!(f, " (after {} attempts)", self.0)?;
        }
        Ok(())
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry answered with a status the operation cannot use.
    #[error("{request}: {status}{errors}{attempts}")]
    Status {
        /// The request.
        request: RequestInfo,
        /// The final status.
        status: StatusCode,
        /// The registry's error envelope.
        errors: ErrorList,
        /// How many times the request was sent.
        attempts: Attempts,
    },
    /// The registry wants credentials and has none, or refused the ones it got.
    #[error("{}{errors}", unauthorized_text(registry, *had_credentials))]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// Whether credentials were sent.
        had_credentials: bool,
        /// The registry's error envelope.
        errors: ErrorList,
    },
    /// The registry refused the operation for these credentials (403).
    #[error("{request}: access denied by {registry}{errors}")]
    Denied {
        /// The registry host.
        registry: String,
        /// The request.
        request: RequestInfo,
        /// The registry's error envelope.
        errors: ErrorList,
    },
    /// The token server refused to issue a token.
    #[error("{registry}: token server {realm} rejected the request ({status}){errors}")]
    TokenRejected {
        /// The registry host.
        registry: String,
        /// The token realm, without its query.
        realm: String,
        /// The token server's status.
        status: StatusCode,
        /// Its error envelope, if any.
        errors: ErrorList,
    },
    /// The token server's answer is not a token.
    #[error("{registry}: token server {realm} sent an invalid token response")]
    BadToken {
        /// The registry host.
        registry: String,
        /// The token realm, without its query.
        realm: String,
    },
    /// A challenge names a token realm kiln will not send requests to.
    #[error("{registry}: refusing token realm {realm}: {reason}")]
    Realm {
        /// The registry host.
        registry: String,
        /// The realm as given.
        realm: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The connection failed, or broke before the response was complete.
    #[error("{request}: connection failed{attempts}")]
    Transport {
        /// The request.
        request: RequestInfo,
        /// How many times the request was sent.
        attempts: Attempts,
        /// The transport's error (its URL removed).
        #[source]
        source: reqwest::Error,
    },
    /// A redirect of an upload was not followed (the query of a storage URL may hold a
    /// signature, so only the host is named).
    #[error("{request}: redirect to {host} refused: {reason}")]
    RedirectRefused {
        /// The request.
        request: RequestInfo,
        /// The host it was sent to.
        host: String,
        /// Why.
        reason: String,
    },
    /// Nothing was received (or sent) for longer than the idle timeout.
    #[error("{request}: timed out (no data for {}s){attempts}", idle.as_secs())]
    Timeout {
        /// The request.
        request: RequestInfo,
        /// The idle timeout.
        idle: Duration,
        /// How many times the request was sent.
        attempts: Attempts,
    },
    /// A required header is missing or malformed (`Location`, `Content-Range`, …).
    #[error("{request}: bad or missing {header} header in the response")]
    BadHeader {
        /// The request.
        request: RequestInfo,
        /// The header.
        header: &'static str,
    },
    /// A `Location` the registry sent cannot be used.
    #[error("{request}: refusing location {location:?}: {reason}")]
    Location {
        /// The request.
        request: RequestInfo,
        /// The location, without its query.
        location: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Content does not hash to the digest it was fetched or pushed as.
    #[error("{what} {expected} from {registry} failed verification: got {found}")]
    DigestMismatch {
        /// `blob` or `manifest`.
        what: &'static str,
        /// The registry host.
        registry: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes received.
        found: Digest,
    },
    /// The registry's `Docker-Content-Digest` contradicts the content.
    #[error("{what} {expected} from {registry}: Docker-Content-Digest says {header:?}")]
    HeaderDigestMismatch {
        /// `blob` or `manifest`.
        what: &'static str,
        /// The registry host.
        registry: String,
        /// The digest of the content.
        expected: Digest,
        /// The header's value (truncated).
        header: String,
    },
    /// Content is not the size its descriptor says.
    #[error("blob {digest} from {registry}: expected {expected} bytes, got {found}")]
    SizeMismatch {
        /// The registry host.
        registry: String,
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// What was received (at most one byte past `expected`).
        found: u64,
    },
    /// A manifest is larger than kiln reads or pushes.
    #[error("{what} exceeds the {limit} byte limit")]
    TooLarge {
        /// What it is.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A manifest or index is malformed or ambiguous.
    #[error("{what}")]
    Manifest {
        /// Which document.
        what: String,
        /// What is wrong with it.
        #[source]
        source: ManifestError,
    },
    /// An index has no image for the wanted platform.
    #[error("{reference}: no image for platform {wanted} (available: {})", available.join(", "))]
    NoPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: Vec<String>,
    },
    /// The caller's store refused a blob (disk full, I/O error, …).
    #[error("storing {digest}")]
    Store {
        /// The blob.
        digest: Digest,
        /// The store's error.
        #[source]
        source: BoxError,
    },
    /// The caller's source could not supply a blob.
    #[error("reading {digest} to push")]
    Source {
        /// The blob.
        digest: Digest,
        /// The source's error.
        #[source]
        source: BoxError,
    },
    /// A CA certificate could not be loaded.
    #[error("loading CA certificate {}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// A client certificate and its key could not be loaded.
    #[error("loading client certificate {} with key {}", cert.display(), key.display())]
    ClientCertificate {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// A client certificate in a certs.d directory has no key beside it.
    #[error(
        "missing key {} for client certificate {} (CA certificates must use the extension .crt)",
        key.display(),
        cert.display()
    )]
    MissingClientKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file that should be beside it.
        key: PathBuf,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A registry name that cannot form a URL.
    #[error("invalid registry host {0:?}")]
    InvalidHost(String),
    /// Looking up or storing credentials failed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

fn unauthorized_text(registry: &str, had_credentials: bool) -> String {
    if had_credentials {
        format!("{registry} rejected the credentials (401 Unauthorized)")
    } else {
        format!("authentication required for {registry} (no credentials configured for this host)")
    }
}

impl Error {
    /// Whether trying again later might succeed: connection failures, timeouts, and the
    /// statuses registries use for overload (see [`crate::retry::is_retryable_status`]).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Status { status, .. } => crate::retry::is_retryable_status(*status),
            _ => false,
        }
    }

    /// The registry's status for a failed request, if there was one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            Self::Denied { .. } => Some(StatusCode::FORBIDDEN),
            _ => None,
        }
    }

    /// The registry's error envelope for a failed request.
    pub fn errors(&self) -> Option<&ErrorList> {
        match self {
            Self::Status { errors, .. }
            | Self::Unauthorized { errors, .. }
            | Self::Denied { errors, .. }
            | Self::TokenRejected { errors, .. } => Some(errors),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_table() {
        let long = "x".repeat(300);
        let long_body = format!(r#"{{"errors":[{{"code":"DENIED","message":"{long}"}}]}}"#);
        let cases: &[(&str, &str)] = &[
            (
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#,
                ": manifest unknown (MANIFEST_UNKNOWN)",
            ),
            (
                r#"{"errors":[{"code":"A"},{"code":"B","message":"m\n\u001b[31mred"}]}"#,
                ": A; m  [31mred (B)",
            ),
            (
                r#"{"errors":[{"message":"no code"}]}"#,
                ": no code (UNKNOWN)",
            ),
            ("<html>502 Bad Gateway</html>", ""),
            ("", ""),
            (r#"{"errors":"nope"}"#, ""),
        ];
        for (body, shown) in cases {
            assert_eq!(
                ErrorList::parse(body.as_bytes()).to_string(),
                *shown,
                "{body}"
            );
        }
        let list = ErrorList::parse(long_body.as_bytes());
        assert_eq!(list.0[0].message.chars().count(), MESSAGE_MAX_CHARS + 1);
        assert!(list.has("DENIED") && !list.has("UNKNOWN"));
    }

    #[test]
    fn request_info_hides_query_and_userinfo() {
        let url = Url::parse(
            "https://u:secret@reg.test:5000/v2/a/blobs/uploads/x?_state=abc&digest=sha256:1",
        )
        .unwrap();
        let info = RequestInfo::new(Method::PUT, &url);
        assert_eq!(
            info.to_string(),
            "PUT https://reg.test:5000/v2/a/blobs/uploads/x"
        );
    }

    #[test]
    fn messages_read_well() {
        let request = RequestInfo::new(
            Method::PUT,
            &Url::parse("https://r.test/v2/app/manifests/1").unwrap(),
        );
        let err = Error::Status {
            request,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            errors: ErrorList::default(),
            attempts: Attempts(3),
        };
        assert_eq!(
            err.to_string(),
            "PUT https://r.test/v2/app/manifests/1: 500 Internal Server Error (after 3 attempts)"
        );
        assert!(err.is_transient());
        let err = Error::Unauthorized {
            registry: "r.test".into(),
            had_credentials: false,
            errors: ErrorList::default(),
        };
        assert_eq!(
            err.to_string(),
            "authentication required for r.test (no credentials configured for this host)"
        );
        assert!(!err.is_transient());
    }
}
