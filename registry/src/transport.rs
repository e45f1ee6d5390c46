//! The HTTP layer under the client: options, trusted CAs, which registries may use plain HTTP,
//! the redirect policy, and the idle watchdog.
//!
//! TLS is rustls with ring, verifying against the system roots (Mozilla's, built in, on a system
//! without any, such as a `FROM scratch` CI image) plus the CAs docker would add for the host
//! (`<certs.d>/<host[:port]>/*.crt`) and any `--tls-ca` files. A registry that asks for a client
//! certificate (mutual TLS) gets the `--tls-cert`/`--tls-key` pair, else docker's
//! `<certs.d>/<host[:port]>/<name>.cert` with `<name>.key`. Plain HTTP (and
//! https without verification) is allowed only for loopback registries and those listed as
//! insecure, as docker's daemon does. Redirects are followed up to ten hops, never from https
//! to http, never to an internal IP literal on another host from a registry that is not itself
//! internal (SSRF), and reqwest drops `Authorization` whenever scheme, host or port change. An
//! upload's streamed body cannot be replayed by reqwest, so the client follows a 307 or 308 to a
//! `PUT` or `PATCH` itself, under the same rules ([`redirect_verdict`]).
//!
//! Timeouts are about progress, not totals: a transfer of any size may take as long as it
//! needs, but [`watched`] fails a request once nothing has been sent or received for the idle
//! timeout.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::redirect::{Attempt, Policy};
use reqwest::{Certificate, Identity, Url};

use crate::auth::token::{ip_literal, is_internal};
use crate::error::Error;
use crate::retry::RetryPolicy;

/// Where docker keeps per-registry CAs.
pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";

/// The chunk size used when a registry refuses a monolithic upload as too large: under
/// GHCR's 4 MiB request cap (reliability.md §2.7).
pub const FALLBACK_CHUNK_SIZE: u64 = 4 << 20;

/// The most redirects one request follows.
const MAX_REDIRECTS: usize = 10;

/// How the client behaves; shared by every registry it talks to.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (`host[:port]`, or `host` for any port) that may use plain HTTP or
    /// unverified TLS, besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Extra trusted CA certificates (PEM files) for every registry.
    pub ca_files: Vec<PathBuf>,
    /// Docker's per-registry certificate directory (`/etc/docker/certs.d`).
    pub certs_dir: PathBuf,
    /// A client certificate and its key (PEM files) for every registry, over certs.d's.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
    /// How long a request may go without sending or receiving anything.
    pub idle_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How many blobs are transferred at once.
    pub concurrency: usize,
    /// Upload blobs in chunks of this many bytes (`PATCH`) instead of one `PUT`. Uploads
    /// switch to chunks of [`FALLBACK_CHUNK_SIZE`] by themselves when a registry refuses a
    /// whole blob as too large (413).
    pub chunk_size: Option<u64>,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            ca_files: Vec::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            client_cert: None,
            retry: RetryPolicy::default(),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            concurrency: 3,
            chunk_size: None,
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Installs ring as rustls's process-wide crypto provider (once; later calls do nothing).
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all this wants.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP clients for one registry.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    /// Verifies certificates (system roots + extra CAs).
    pub(crate) verified: reqwest::Client,
    /// Accepts any certificate: only for registries listed as insecure.
    pub(crate) unverified: Option<reqwest::Client>,
    /// Whether plain HTTP may be tried.
    pub(crate) allow_http: bool,
}

impl Transport {
    pub(crate) fn new(registry: &str, options: &ClientOptions) -> Result<Self, Error> {
        install_crypto_provider();
        let insecure = is_listed(registry, &options.insecure_registries);
        let certs = load_cas(registry, options)?;
        let identity = load_identity(registry, options)?;
        let base = || {
            let builder = reqwest::Client::builder()
                .user_agent(options.user_agent.clone())
                .connect_timeout(options.connect_timeout)
                .redirect(redirect_policy());
            match &identity {
                Some(identity) => builder.identity(identity.clone()),
                None => builder,
            }
        };
        let verified = if system_has_roots() {
            base().tls_certs_merge(certs)
        } else {
            base().tls_certs_only(bundled_roots().chain(certs))
        }
        .build()
        .map_err(Error::Client)?;
        let unverified = insecure
            .then(|| base().tls_danger_accept_invalid_certs(true).build())
            .transpose()
            .map_err(Error::Client)?;
        Ok(Self {
            verified,
            unverified,
            allow_http: insecure || crate::reference::is_loopback_registry(registry),
        })
    }
}

/// Whether the system has CA roots (a CA bundle, or `SSL_CERT_FILE`/`SSL_CERT_DIR` naming
/// some). Looked at once per process.
fn system_has_roots() -> bool {
    static HAS_ROOTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS_ROOTS.get_or_init(|| !rustls_native_certs::load_native_certs().certs.is_empty())
}

/// Mozilla's roots, built into kiln: what a minimal image without a CA bundle verifies against.
fn bundled_roots() -> impl Iterator<Item = Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| Certificate::from_der(der).ok())
}

/// Whether `registry` (`host[:port]`) is on the list, exactly or by host name alone.
pub(crate) fn is_listed(registry: &str, list: &[String]) -> bool {
    list.iter()
        .any(|entry| entry == registry || entry == host_without_port(registry))
}

/// `host` of `host[:port]`, keeping IPv6 brackets.
fn host_without_port(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.split_inclusive(']').next().unwrap_or(registry);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// The extra CAs for `registry`: `--tls-ca` files, then `<certs_dir>/<registry>/*.crt` sorted.
fn load_cas(registry: &str, options: &ClientOptions) -> Result<Vec<Certificate>, Error> {
    let mut files = options.ca_files.clone();
    let dir = options.certs_dir.join(registry);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        found.sort();
        files.extend(found);
    }
    let mut certs = Vec::new();
    for path in &files {
        certs.extend(load_pem(path)?);
    }
    Ok(certs)
}

/// The client certificate for `registry`: the flags' pair, else the first `<name>.cert` (sorted)
/// in `<certs_dir>/<registry>` with its `<name>.key`, as docker pairs them; `None` without one.
fn load_identity(registry: &str, options: &ClientOptions) -> Result<Option<Identity>, Error> {
    let pair = match &options.client_cert {
        Some(pair) => Some(pair.clone()),
        None => {
            let mut certs: Vec<PathBuf> = std::fs::read_dir(options.certs_dir.join(registry))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cert"))
                .collect();
            certs.sort();
            match certs.into_iter().next() {
                None => None,
                Some(cert) => {
                    let key = cert.with_extension("key");
                    if !key.is_file() {
                        return Err(Error::MissingClientKey { cert, key });
                    }
                    Some((cert, key))
                }
            }
        }
    };
    let Some((cert, key)) = pair else {
        return Ok(None);
    };
    let read = |path: &Path| std::fs::read(path).map_err(crate::error::BoxError::from);
    let identity = read(&cert)
        .and_then(|mut pem| {
            pem.push(b'\n');
            pem.extend(read(&key)?);
            Identity::from_pem(&pem).map_err(Into::into)
        })
        .map_err(|source| Error::ClientCertificate {
            cert: cert.clone(),
            key: key.clone(),
            source,
        })?;
    Ok(Some(identity))
}

fn load_pem(path: &Path) -> Result<Vec<Certificate>, Error> {
    let cert_error = |source: crate::error::BoxError| Error::Certificate {
        path: path.to_owned(),
        source,
    };
    let bytes = std::fs::read(path).map_err(|e| cert_error(e.into()))?;
    let certs = Certificate::from_pem_bundle(&bytes).map_err(|e| cert_error(e.into()))?;
    if certs.is_empty() {
        return Err(cert_error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Why a redirect was refused.
#[derive(Debug)]
pub(crate) enum RedirectRefused {
    TooMany,
    Downgrade,
    Internal,
}

impl fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooMany => "too many redirects",
            Self::Downgrade => "refusing redirect from https to http",
            Self::Internal => "refusing redirect to an internal address",
        })
    }
}

impl std::error::Error for RedirectRefused {}

fn redirect_policy() -> Policy {
    Policy::custom(|attempt: Attempt<'_>| {
        match redirect_verdict(attempt.url(), attempt.previous()) {
            Some(refused) => attempt.error(refused),
            None => attempt.follow(),
        }
    })
}

/// The pure part of the redirect policy: `None` to follow.
pub(crate) fn redirect_verdict(next: &Url, previous: &[Url]) -> Option<RedirectRefused> {
    if previous.len() >= MAX_REDIRECTS {
        return Some(RedirectRefused::TooMany);
    }
    if previous.iter().any(|u| u.scheme() == "https") && next.scheme() != "https" {
        return Some(RedirectRefused::Downgrade);
    }
    let origin = previous.first()?;
    let origin_internal = ip_literal(origin).is_some_and(is_internal)
        || origin
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost"));
    let next_internal = ip_literal(next).is_some_and(is_internal);
    if next_internal && !origin_internal && next.host_str() != origin.host_str() {
        return Some(RedirectRefused::Internal);
    }
    None
}

/// When a request last made progress (sent or received bytes).
#[derive(Debug)]
pub(crate) struct Watch {
    start: Instant,
    last_ms: AtomicU64,
}

impl Watch {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Records progress now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Runs `fut` until it finishes (`Some`) or `watch` sees no progress for `idle` (`None`).
pub(crate) async fn watched<F: Future>(fut: F, watch: &Watch, idle: Duration) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        let remaining = idle.saturating_sub(watch.idle_for());
        if remaining.is_zero() {
            return None;
        }
        tokio::select! {
            out = &mut fut => return Some(out),
            () = tokio::time::sleep(remaining) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_list_matching() {
        let list = vec![
            "reg.test:5000".to_owned(),
            "any.test".into(),
            "[::1]".into(),
        ];
        let cases = [
            ("reg.test:5000", true),
            ("reg.test:5001", false),
            ("reg.test", false),
            ("any.test:443", true),
            ("any.test", true),
            ("[::1]:5000", true),
            ("other.test", false),
        ];
        for (registry, expected) in cases {
            assert_eq!(is_listed(registry, &list), expected, "{registry}");
        }
    }

    #[test]
    fn redirect_table() {
        let u = |s: &str| Url::parse(s).unwrap();
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            (
                "https://cdn.test/blob",
                &["https://reg.test/v2/a/blobs/x"],
                None,
            ),
            (
                "https://reg.test:444/b",
                &["https://reg.test/v2/a/blobs/x"],
                None,
            ),
            (
                "http://reg.test/b",
                &["https://reg.test/v2/a/blobs/x"],
                Some("refusing redirect from https to http"),
            ),
            (
                "http://cdn.test/b",
                &["http://reg.test/v2/", "https://x.test/"],
                Some("refusing redirect from https to http"),
            ),
            (
                "https://10.0.0.5/b",
                &["https://reg.test/v2/a"],
                Some("refusing redirect to an internal address"),
            ),
            (
                "http://127.0.0.1:9/b",
                &["http://127.0.0.1:5000/v2/a"],
                None,
            ),
            ("http://127.0.0.2/b", &["http://localhost:5000/v2/a"], None),
            (
                "https://a.test/",
                &["https://a.test/"; 10],
                Some("too many redirects"),
            ),
        ];
        for (next, previous, expected) in cases {
            let previous: Vec<Url> = previous.iter().map(|p| u(p)).collect();
            let got = redirect_verdict(&u(next), &previous).map(|r| r.to_string());
            assert_eq!(got.as_deref(), *expected, "{next}");
        }
    }

    #[tokio::test]
    async fn watchdog_fires_only_without_progress() {
        let watch = Watch::new();
        let idle = Duration::from_millis(150);
        let done = watched(tokio::time::sleep(Duration::from_millis(20)), &watch, idle).await;
        assert!(done.is_some());
        let stalled = watched(std::future::pending::<()>(), &watch, idle).await;
        assert!(stalled.is_none());
        // Progress every 50 ms keeps a 400 ms operation alive under a 150 ms idle timeout.
        let watch = Watch::new();
        let work = async {
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                watch.touch();
            }
        };
        assert!(watched(work, &watch, idle).await.is_some());
    }

    #[test]
    fn missing_and_bad_ca_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.crt");
        std::fs::write(&bad, "not a certificate").unwrap();
        let options = ClientOptions {
            ca_files: vec![bad.clone()],
            certs_dir: dir.path().into(),
            ..ClientOptions::default()
        };
        let err = Transport::new("reg.test", &options).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("loading CA certificate {}", bad.display())
        );
        let options = ClientOptions {
            ca_files: vec![dir.path().join("missing.crt")],
            ..ClientOptions::default()
        };
        assert!(Transport::new("reg.test", &options).is_err());
        // A host without a certs.d directory simply has no extra CAs.
        let options = ClientOptions {
            certs_dir: dir.path().join("nope"),
            ..ClientOptions::default()
        };
        let t = Transport::new("127.0.0.1:5000", &options).unwrap();
        assert!(t.allow_http && t.unverified.is_none());
    }
}
