//! `ADD <url>`: downloading a remote file as BuildKit's HTTP source does.
//!
//! The body is streamed into a temporary file (mode 0600) and hashed on the way, never held in
//! memory; the file is deleted when the [`Download`] is dropped. A status outside 2xx is an
//! error that names the status. Redirects are followed up to [`FetchOptions::max_redirects`]
//! (Go's default client allows ten). Proxies come from the environment as docker's do
//! ([`ProxyConfig`]). `--checksum` is checked once the body is complete: on a mismatch the file
//! is deleted and nothing reaches the destination. `Last-Modified`, when it parses as one of the
//! three HTTP date formats Go's `http.ParseTime` reads, becomes the file's mtime. A download
//! keeps the response's validators (`ETag`, `Last-Modified`); given back to
//! [`download_if_changed`], they make the request conditional, and a `304 Not Modified` answer
//! means the body is the one seen before.
//!
//! The builder is synchronous and may itself be called from inside an async runtime, where
//! blocking on another runtime panics, so each download runs on a thread of its own with a
//! single-threaded tokio runtime. Timeouts are about progress, not totals: connecting may take
//! [`FetchOptions::connect_timeout`], and a transfer fails only once nothing has arrived for
//! [`FetchOptions::idle_timeout`].

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_registry::http_date::parse_http_date;
use kiln_registry::{Digest, DigestWriter};
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::redirect::Policy;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use super::proxy::ProxyConfig;

/// The file name BuildKit gives a download whose URL path has no last element.
pub const UNNAMED: &str = "__unnamed__";

/// How downloads are made.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Which proxy each request goes through.
    pub proxies: ProxyConfig,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a transfer may go without receiving anything.
    pub idle_timeout: Duration,
    /// The most redirects one download follows.
    pub max_redirects: usize,
    /// Where the temporary file is written (`None`: the system's temporary directory).
    pub temp_dir: Option<PathBuf>,
}

impl FetchOptions {
    /// Defaults, with proxies from this process's environment.
    pub fn from_env() -> Self {
        Self {
            proxies: ProxyConfig::from_env(),
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_redirects: 10,
            temp_dir: None,
        }
    }
}

/// A downloaded file, deleted when this is dropped.
#[derive(Debug)]
pub struct Download {
    file: NamedTempFile,
    /// The sha256 of the body.
    pub digest: Digest,
    /// The body's length in bytes.
    pub size: u64,
    /// The `Last-Modified` time in seconds since the epoch, when the server sent one that parses.
    pub last_modified: Option<i64>,
    /// What identifies this response for a conditional request.
    pub validators: Validators,
}

/// A response's validators, as the server sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
}

impl Validators {
    /// Whether there is anything to make a request conditional on.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

impl Download {
    /// Where the body is on disk.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not a URL.
    #[error("invalid URL")]
    Url(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A URL kiln does not download.
    #[error("unsupported URL scheme {0:?}")]
    Scheme(String),
    /// The server's final answer was not a success.
    #[error("server answered {status}")]
    Status {
        /// The status, e.g. `404 Not Found`.
        status: StatusCode,
    },
    /// Connecting, sending or receiving failed (or too many redirects).
    #[error("request failed")]
    Transport(#[source] reqwest::Error),
    /// Writing the temporary file.
    #[error("writing {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `--checksum` does not match the body.
    #[error("checksum mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// The `--checksum` value.
        expected: Digest,
        /// The body's digest.
        actual: Digest,
    },
    /// The download thread could not start or crashed.
    #[error("running the download")]
    Runtime(#[source] io::Error),
}

/// Downloads `url` into a temporary file, verifying `expected` when given.
pub fn download(
    url: &str,
    expected: Option<&Digest>,
    options: &FetchOptions,
) -> Result<Download, FetchError> {
    download_if_changed(url, expected, &Validators::default(), options)?.ok_or(FetchError::Status {
        status: StatusCode::NOT_MODIFIED,
    })
}

/// [`download`], conditional on `seen` (`If-None-Match`, `If-Modified-Since`): `None` when
/// the server answers that the body has not changed.
pub fn download_if_changed(
    url: &str,
    expected: Option<&Digest>,
    seen: &Validators,
    options: &FetchOptions,
) -> Result<Option<Download>, FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::Url(Box::new(e)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::Scheme(parsed.scheme().to_owned()));
    }
    let temp_dir = options.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let file = tempfile::Builder::new()
        .prefix(".kiln-add-")
        .tempfile_in(&temp_dir)
        .map_err(|source| FetchError::Write {
            path: temp_dir.clone(),
            source,
        })?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(FetchError::Runtime)?;
            runtime.block_on(fetch(parsed, file, expected, seen, options))
        });
        worker.join().unwrap_or_else(|_| {
            Err(FetchError::Runtime(io::Error::other(
                "the download thread panicked",
            )))
        })
    })
}

async fn fetch(
    url: Url,
    file: NamedTempFile,
    expected: Option<&Digest>,
    seen: &Validators,
    options: &FetchOptions,
) -> Result<Option<Download>, FetchError> {
    kiln_registry::transport::install_crypto_provider();
    let proxies = options.proxies.clone();
    let client = reqwest::Client::builder()
        .user_agent(options.user_agent.clone())
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.idle_timeout)
        .redirect(Policy::limited(options.max_redirects))
        .proxy(reqwest::Proxy::custom(move |url| proxies.proxy_for(url)))
        .build()
        .map_err(FetchError::Transport)?;
    // The URL is in the caller's message already.
    let transport = |e: reqwest::Error| FetchError::Transport(e.without_url());
    let mut request = client.get(url);
    if let Some(etag) = &seen.etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    if let Some(date) = &seen.last_modified {
        request = request.header(IF_MODIFIED_SINCE, date);
    }
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && !seen.is_empty() {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(FetchError::Status { status });
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let validators = Validators {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    let last_modified = validators
        .last_modified
        .as_deref()
        .and_then(parse_http_date);
    let path = file.path().to_owned();
    let write = |source| FetchError::Write {
        path: path.clone(),
        source,
    };
    let mut out = DigestWriter::new(BufWriter::new(file));
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        out.write_all(&chunk).map_err(write)?;
    }
    let (buffered, digest, size) = out.finish();
    let file = buffered.into_inner().map_err(|e| write(e.into_error()))?;
    if let Some(expected) = expected
        && *expected != digest
    {
        return Err(FetchError::Mismatch {
            expected: expected.clone(),
            actual: digest,
        });
    }
    Ok(Some(Download {
        file,
        digest,
        size,
        last_modified,
        validators,
    }))
}

/// The name BuildKit's Dockerfile frontend gives a download: the last element of the URL's
/// (percent-decoded) path, or [`UNNAMED`] when there is none.
pub fn file_name(url: &str) -> String {
    let Ok(parsed) = Url::parse(url) else {
        return UNNAMED.to_owned();
    };
    let path = percent_decode(parsed.path());
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    // `.` and `..` would name the directory itself or its parent, and NUL no file at all.
    if base.is_empty() || base == "." || base == ".." || base.contains('\0') {
        return UNNAMED.to_owned();
    }
    base.to_owned()
}

/// `url` with any password replaced by `xxxxx` (Go's `URL.Redacted`), for messages.
pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only URLs that cannot have credentials refuse them, and this one has some.
            let _ = parsed.set_password(Some("xxxxx"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// `%xx` escapes decoded (invalid ones kept as written), as Go's `url.URL.Path` holds the path.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
