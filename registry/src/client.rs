//! [`Registry`]: one registry's connection, authentication and the request loop every
//! operation goes through.
//!
//! The first request probes `GET /v2/` to choose the scheme (https; plain http only where
//! [`crate::transport`] allows it and https does not answer) and to learn the auth challenge.
//! Then each request: gets an `Authorization` for its scopes (only when it goes to the
//! registry's own origin: an upload location or redirect elsewhere never sees our
//! credentials), is sent under the idle watchdog, re-authenticates once on a 401 that carries a
//! challenge, and is retried with backoff on connection failures and 408/429/5xx when the
//! caller says it is safe to replay. Whatever status comes back is the caller's to judge.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};

use crate::auth::{Authenticator, Challenged, Credentials};
use crate::error::{Attempts, Error, ErrorList, RequestInfo};
use crate::progress::{Event, Progress};
use crate::retry::is_retryable_status;
use crate::transport::{ClientOptions, Transport, Watch, watched};

/// How much of an error response body is read.
const ERROR_BODY_MAX: u64 = 64 * 1024;

/// How long the https probe may take when plain http is the fallback: a plain-http server may
/// never answer a TLS hello, and the fallback should not wait for the connect timeout.
const HTTPS_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one registry: cheap to clone, shared by concurrent transfers.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    api_host: String,
    transport: Transport,
    base: tokio::sync::OnceCell<Base>,
    auth: Authenticator,
    options: ClientOptions,
    progress: Arc<dyn Progress>,
}

/// The scheme chosen for the registry and the client that goes with it.
#[derive(Debug, Clone)]
struct Base {
    url: Url,
    client: reqwest::Client,
}

/// A request body.
pub(crate) enum ReqBody<'a> {
    /// No body.
    Empty,
    /// Bytes, replayable.
    Bytes(Bytes),
    /// A stream, made afresh for each attempt.
    Stream(&'a (dyn Fn() -> Result<reqwest::Body, Error> + Sync)),
}

/// One request to make.
pub(crate) struct Req<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) scopes: &'a [String],
    pub(crate) headers: HeaderMap,
    pub(crate) body: ReqBody<'a>,
    /// Whether the request may be replayed on a transient failure.
    pub(crate) retry: bool,
    /// A watch the body stream touches as it is sent (uploads).
    pub(crate) watch: Option<Arc<Watch>>,
}

impl<'a> Req<'a> {
    pub(crate) fn new(method: Method, url: Url, scopes: &'a [String]) -> Self {
        Self {
            method,
            url,
            scopes,
            headers: HeaderMap::new(),
            body: ReqBody::Empty,
            retry: true,
            watch: None,
        }
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }
}

/// A response and what it took to get it.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) response: Response,
    pub(crate) info: RequestInfo,
    pub(crate) attempts: u32,
}

impl Registry {
    /// A connection to `name` (a registry as written in references: `docker.io`,
    /// `host:port`), with optional credentials. Nothing is sent until the first operation.
    pub fn new(
        name: &str,
        credentials: Option<Credentials>,
        options: &ClientOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Self, Error> {
        let api_host = crate::reference::api_host_for(name).to_owned();
        Url::parse(&format!("https://{api_host}/v2/"))
            .map_err(|_| Error::InvalidHost(name.to_owned()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                api_host,
                transport: Transport::new(name, options)?,
                base: tokio::sync::OnceCell::new(),
                auth: Authenticator::new(name, credentials),
                options: options.clone(),
                progress,
            }),
        })
    }

    /// The registry's name as given.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The options the client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    pub(crate) fn progress(&self) -> &dyn Progress {
        &*self.inner.progress
    }

    /// The registry's base URL (`https://host/`), probing it on first use.
    pub async fn base_url(&self) -> Result<Url, Error> {
        Ok(self.base().await?.url.clone())
    }

    /// `<base>/v2/<path>`.
    pub(crate) async fn url(&self, path: &str) -> Result<Url, Error> {
        let base = self.base().await?;
        base.url
            .join(&format!("v2/{path}"))
            .map_err(|_| Error::InvalidHost(self.inner.name.clone()))
    }

    /// Checks that the registry answers and that the credentials (if any) are accepted:
    /// `GET /v2/` authenticated the way the registry asks (a token with no scope for bearer).
    pub async fn check_login(&self) -> Result<(), Error> {
        let url = self.url("").await?;
        let sent = self.send(Req::new(Method::GET, url, &[])).await?;
        if sent.response.status() == StatusCode::OK {
            return Ok(());
        }
        Err(self.fail(sent).await)
    }

    async fn base(&self) -> Result<&Base, Error> {
        self.inner.base.get_or_try_init(|| self.probe()).await
    }

    /// Chooses the scheme with `GET /v2/` and learns the challenge.
    async fn probe(&self) -> Result<Base, Error> {
        let t = &self.inner.transport;
        let https = Url::parse(&format!("https://{}/", self.inner.api_host))
            .map_err(|_| Error::InvalidHost(self.inner.name.clone()))?;
        let https_client = t.unverified.clone().unwrap_or_else(|| t.verified.clone());
        // With http as a fallback, https gets one try: a plain-http registry fails it at once.
        let https_tries = if t.allow_http {
            1
        } else {
            self.inner.options.retry.attempts
        };
        let ping = self.ping(&https_client, &https, https_tries);
        let outcome = if t.allow_http {
            tokio::time::timeout(HTTPS_PROBE_TIMEOUT, ping)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Timeout {
                        request: RequestInfo::new(Method::GET, &https),
                        idle: HTTPS_PROBE_TIMEOUT,
                        attempts: Attempts(1),
                    })
                })
        } else {
            ping.await
        };
        let https_err = match outcome {
            Ok(response) => return self.probed(https, https_client, response).await,
            Err(e) => e,
        };
        if !t.allow_http {
            return Err(https_err);
        }
        let http = Url::parse(&format!("http://{}/", self.inner.api_host))
            .map_err(|_| Error::InvalidHost(self.inner.name.clone()))?;
        match self
            .ping(&t.verified, &http, self.inner.options.retry.attempts)
            .await
        {
            Ok(response)
                if response.status() == StatusCode::OK
                    || response.status() == StatusCode::UNAUTHORIZED =>
            {
                self.probed(http, t.verified.clone(), response).await
            }
            // Not a registry over http either: the https failure says more.
            _ => Err(https_err),
        }
    }

    async fn probed(
        &self,
        url: Url,
        client: reqwest::Client,
        response: Response,
    ) -> Result<Base, Error> {
        if response.status() == StatusCode::UNAUTHORIZED {
            self.inner
                .auth
                .challenged(response.headers(), &url, &[])
                .await?;
        }
        Ok(Base { url, client })
    }

    /// `GET <base>/v2/` without credentials, retried on transient failures.
    async fn ping(
        &self,
        client: &reqwest::Client,
        base: &Url,
        tries: u32,
    ) -> Result<Response, Error> {
        let url = base
            .join("v2/")
            .map_err(|_| Error::InvalidHost(self.inner.name.clone()))?;
        let info = RequestInfo::new(Method::GET, &url);
        let mut attempt = 1;
        loop {
            let watch = Watch::new();
            let outcome = watched(
                client.get(url.clone()).send(),
                &watch,
                self.inner.options.idle_timeout,
            )
            .await;
            let failure = match outcome {
                Some(Ok(r)) if !is_retryable_status(r.status()) || attempt >= tries => {
                    return Ok(r);
                }
                Some(Ok(r)) => r.status().to_string(),
                Some(Err(e)) if attempt >= tries => {
                    return Err(Error::Transport {
                        request: info,
                        attempts: Attempts(attempt),
                        source: e.without_url(),
                    });
                }
                Some(Err(e)) => transport_reason(&e),
                None if attempt >= tries => {
                    return Err(Error::Timeout {
                        request: info,
                        idle: self.inner.options.idle_timeout,
                        attempts: Attempts(attempt),
                    });
                }
                None => "timed out".to_owned(),
            };
            self.retry_wait(&info, attempt, failure, None).await;
            attempt += 1;
        }
    }

    /// Reports a retry and waits before it.
    async fn retry_wait(
        &self,
        info: &RequestInfo,
        attempt: u32,
        reason: String,
        retry_after: Option<&str>,
    ) {
        let policy = &self.inner.options.retry;
        self.inner.progress.event(&Event::Retrying {
            request: info.to_string(),
            attempt: attempt + 1,
            attempts: policy.attempts,
            reason,
        });
        tokio::time::sleep(policy.wait_for(attempt, retry_after, SystemTime::now())).await;
    }

    /// Sends a request: authorization, idle watchdog, one re-authentication on 401, retries.
    pub(crate) async fn send(&self, req: Req<'_>) -> Result<Sent, Error> {
        let base = self.base().await?;
        let info = RequestInfo::new(req.method.clone(), &req.url);
        let policy = &self.inner.options.retry;
        let idle = self.inner.options.idle_timeout;
        let mut fetch_scopes = req.scopes.to_vec();
        let mut attempt = 1;
        let mut stale = None;
        let mut reauthenticated = false;
        // Where the request goes: a 307/308 to a streamed upload moves it (see below).
        let mut url = req.url.clone();
        let mut visited: Vec<Url> = Vec::new();
        loop {
            let same_origin = url.origin() == base.url.origin();
            let mut builder = base
                .client
                .request(req.method.clone(), url.clone())
                .headers(req.headers.clone());
            let mut generation = 0;
            if same_origin {
                let auth = self
                    .inner
                    .auth
                    .authorization(&base.client, req.scopes, &fetch_scopes, stale, policy)
                    .await?;
                generation = auth.generation;
                if let Some(value) = auth.header {
                    builder = builder.header(header::AUTHORIZATION, value);
                }
            }
            builder = match &req.body {
                ReqBody::Empty => builder,
                ReqBody::Bytes(b) => builder.body(b.clone()),
                ReqBody::Stream(make) => builder.body(make()?),
            };
            let watch = req.watch.clone().unwrap_or_else(|| Arc::new(Watch::new()));
            watch.touch();
            let outcome = watched(builder.send(), &watch, idle).await;
            stale = None;
            let reason = match outcome {
                Some(Ok(response)) => {
                    let status = response.status();
                    // reqwest follows redirects itself, except with a body it cannot replay:
                    // an upload stream. A 307 or 308 keeps method and body (registries behind
                    // object storage redirect PATCH and PUT), so it is sent again, from the
                    // start, to the new place, under the same redirect rules.
                    if matches!(
                        status,
                        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
                    ) && matches!(req.body, ReqBody::Stream(_))
                    {
                        let next = response
                            .headers()
                            .get(header::LOCATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|l| url.join(l).ok());
                        if let Some(next) = next {
                            visited.push(url.clone());
                            if let Some(why) = crate::transport::redirect_verdict(&next, &visited) {
                                return Err(Error::RedirectRefused {
                                    request: info,
                                    host: next.host_str().unwrap_or_default().to_owned(),
                                    reason: why.to_string(),
                                });
                            }
                            url = next;
                            continue;
                        }
                    }
                    if status == StatusCode::UNAUTHORIZED && same_origin && !reauthenticated {
                        reauthenticated = true;
                        let challenged = self
                            .inner
                            .auth
                            .challenged(response.headers(), &base.url, req.scopes)
                            .await?;
                        if let Challenged::Retry(scopes) = challenged {
                            fetch_scopes = scopes;
                            stale = Some(generation);
                            continue;
                        }
                    }
                    if !(req.retry && is_retryable_status(status) && attempt < policy.attempts) {
                        return Ok(Sent {
                            response,
                            info,
                            attempts: attempt,
                        });
                    }
                    let after = response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    self.retry_wait(&info, attempt, status.to_string(), after.as_deref())
                        .await;
                    attempt += 1;
                    continue;
                }
                Some(Err(e)) if !req.retry || attempt >= policy.attempts => {
                    return Err(Error::Transport {
                        request: info,
                        attempts: Attempts(attempt),
                        source: e.without_url(),
                    });
                }
                Some(Err(e)) => transport_reason(&e),
                None if !req.retry || attempt >= policy.attempts => {
                    return Err(Error::Timeout {
                        request: info,
                        idle,
                        attempts: Attempts(attempt),
                    });
                }
                None => format!("no data for {}s", idle.as_secs()),
            };
            self.retry_wait(&info, attempt, reason, None).await;
            attempt += 1;
        }
    }

    /// The error for a response the operation cannot use, with the registry's envelope.
    pub(crate) async fn fail(&self, sent: Sent) -> Error {
        let status = sent.response.status();
        let body = read_limited(
            sent.response,
            ERROR_BODY_MAX,
            self.inner.options.idle_timeout,
        )
        .await
        .unwrap_or_default();
        let errors = ErrorList::parse(&body);
        match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized {
                registry: self.inner.name.clone(),
                had_credentials: self.inner.auth.has_credentials(),
                errors,
            },
            StatusCode::FORBIDDEN => Error::Denied {
                registry: self.inner.name.clone(),
                request: sent.info,
                errors,
            },
            _ => Error::Status {
                request: sent.info,
                status,
                errors,
                attempts: Attempts(sent.attempts),
            },
        }
    }

    /// Reads a whole (small) body, refusing more than `limit` bytes.
    pub(crate) async fn read_body(
        &self,
        sent: Sent,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, Error> {
        let info = sent.info.clone();
        let idle = self.inner.options.idle_timeout;
        match read_limited(sent.response, limit, idle).await {
            Ok(body) => Ok(body),
            Err(ReadError::TooLarge) => Err(Error::TooLarge {
                what: what.to_owned(),
                limit,
            }),
            Err(ReadError::Timeout) => Err(Error::Timeout {
                request: info,
                idle,
                attempts: Attempts(sent.attempts),
            }),
            Err(ReadError::Transport(source)) => Err(Error::Transport {
                request: info,
                attempts: Attempts(sent.attempts),
                source,
            }),
        }
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    TooLarge,
    Timeout,
    Transport(reqwest::Error),
}

/// Reads a response body up to `limit` bytes, under an idle timeout per chunk.
pub(crate) async fn read_limited(
    mut response: Response,
    limit: u64,
    idle: Duration,
) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(idle, response.chunk()).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(Err(e)) => return Err(ReadError::Transport(e.without_url())),
            Ok(Ok(None)) => return Ok(body),
            Ok(Ok(Some(chunk))) => {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(ReadError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

/// A short description of a transport failure for progress output (no URL).
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "connection broken"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

/// The `Docker-Content-Digest` header, if present.
pub(crate) fn content_digest(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Resolves a `Location` header against the URL of the request that returned it.
pub(crate) fn location(sent: &Sent) -> Result<Url, Error> {
    let value = sent
        .response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::BadHeader {
            request: sent.info.clone(),
            header: "Location",
        })?;
    let request_url = sent.response.url();
    let url = request_url.join(value).map_err(|_| Error::BadHeader {
        request: sent.info.clone(),
        header: "Location",
    })?;
    check_location(request_url, &url).map_err(|reason| Error::Location {
        request: sent.info.clone(),
        location: RequestInfo::new(Method::GET, &url).url,
        reason,
    })?;
    Ok(url)
}

/// A location may point anywhere public (presigned storage URLs), but not from https to http,
/// and not to an internal IP literal on another host when the registry is not internal.
fn check_location(from: &Url, to: &Url) -> Result<(), &'static str> {
    use crate::auth::token::{ip_literal, is_internal};
    if !matches!(to.scheme(), "http" | "https") {
        return Err("not an http(s) URL");
    }
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err("downgrade from https to http");
    }
    let from_internal = ip_literal(from).is_some_and(is_internal)
        || from
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost"));
    if ip_literal(to).is_some_and(is_internal) && !from_internal && to.host_str() != from.host_str()
    {
        return Err("internal address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_policy() {
        let u = |s: &str| Url::parse(s).unwrap();
        let cases: &[(&str, &str, Result<(), &str>)] = &[
            (
                "https://reg.test/v2/a/blobs/uploads/",
                "https://reg.test/v2/a/blobs/uploads/u?_state=x",
                Ok(()),
            ),
            (
                "https://reg.test/v2/a/blobs/uploads/",
                "https://s3.test/bucket/u?sig=1",
                Ok(()),
            ),
            (
                "https://reg.test/v2/a/blobs/uploads/",
                "http://reg.test/v2/a/blobs/uploads/u",
                Err("downgrade from https to http"),
            ),
            (
                "https://reg.test/v2/a/blobs/uploads/",
                "https://10.1.2.3/u",
                Err("internal address"),
            ),
            (
                "https://reg.test/v2/a/blobs/uploads/",
                "https://[::1]/u",
                Err("internal address"),
            ),
            (
                "http://127.0.0.1:5000/v2/a/blobs/uploads/",
                "http://127.0.0.1:5001/u",
                Ok(()),
            ),
            (
                "https://reg.test/v2/a/blobs/uploads/",
                "ftp://reg.test/u",
                Err("not an http(s) URL"),
            ),
        ];
        for (from, to, expected) in cases {
            assert_eq!(check_location(&u(from), &u(to)), *expected, "{to}");
        }
    }

    #[test]
    fn relative_locations_keep_their_query() {
        let base = Url::parse("http://127.0.0.1:5000/v2/a/blobs/uploads/").unwrap();
        let mut url = base.join("/v2/a/blobs/uploads/abc?_state=s%3D%3D").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/abc?_state=s%3D%3D"
        );
        url.query_pairs_mut().append_pair("digest", "sha256:00");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/abc?_state=s%3D%3D&digest=sha256%3A00"
        );
        let mut bare = base.join("abc").unwrap();
        bare.query_pairs_mut().append_pair("digest", "sha256:00");
        assert_eq!(
            bare.as_str(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/abc?digest=sha256%3A00"
        );
    }
}
