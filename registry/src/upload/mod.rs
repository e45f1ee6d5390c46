//! Blob uploads: `HEAD` first, then a cross-repository mount when the blob is known to be in
//! another repository of the registry, else a monolithic upload (`POST` for a session, then one
//! streaming `PUT <location>?digest=`), or a chunked one ([`chunked`]) when asked, or when the
//! registry refuses the whole blob as too large (413).
//!
//! A mount answered 201 is done; 202 opens an upload session that the upload then uses (it is
//! not re-requested); any error falls back to a plain upload. The `Location` may be relative
//! and may carry a query (distribution's `_state`), so it is resolved against the request and
//! `digest` is appended to whatever query it has. A broken or failed `PUT` is never replayed on
//! the same session (the registry may hold part of the body): kiln checks whether the blob
//! arrived after all (the answer may be what was lost), and otherwise starts a new session. The
//! body is streamed from the caller's source, reopened for every attempt; the idle watchdog
//! sees every chunk leave. A session given up on is cancelled (`DELETE`, best effort).

mod chunked;

use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::auth::token::{pull_scope, push_scope};
use crate::client::{Registry, Req, ReqBody, content_digest, location};
use crate::digest::Digest;
use crate::error::Error;
use crate::progress::{Event, Outcome};
use crate::push::BlobSource;
use crate::transport::{FALLBACK_CHUNK_SIZE, Watch};

/// The size of the chunks a body is read and sent in.
const CHUNK: usize = 256 * 1024;

/// How many mount sources are tried for one blob.
const MAX_MOUNT_SOURCES: usize = 3;

/// What a mount request did.
enum Mount {
    Mounted,
    Session(Session),
}

/// An upload session: where to send the blob, and the smallest chunk the registry takes
/// (`OCI-Chunk-Min-Length`, 0 when it did not say).
#[derive(Debug, Clone)]
struct Session {
    location: Url,
    min_chunk: u64,
}

impl Session {
    /// The session a 202 answer opened.
    fn from_answer(sent: &crate::client::Sent) -> Result<Self, Error> {
        Ok(Self {
            location: location(sent)?,
            min_chunk: sent
                .response
                .headers()
                .get("oci-chunk-min-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        })
    }
}

impl Registry {
    /// Makes sure the registry has the blob in `repository`: already there, mounted from one of
    /// `mount_from`, or uploaded from `source`.
    pub async fn upload_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        source: &dyn BlobSource,
        mount_from: &[String],
    ) -> Result<Outcome, Error> {
        if self.head_blob(repository, digest).await?.is_some() {
            return Ok(Outcome::Existed);
        }
        let mut session = None;
        for from in mount_from
            .iter()
            .filter(|f| f.as_str() != repository)
            .take(MAX_MOUNT_SOURCES)
        {
            match self.mount_blob(repository, digest, from).await {
                Ok(Mount::Mounted) => return Ok(Outcome::Mounted { from: from.clone() }),
                Ok(Mount::Session(opened)) => {
                    session = Some(opened);
                    break;
                }
                // Registries differ in how they refuse mounts; a plain upload always works.
                Err(_) => continue,
            }
        }
        let attempts = self.options().retry.attempts;
        let mut chunk_size = self.options().chunk_size;
        let mut attempt = 1;
        loop {
            let Session {
                location,
                min_chunk,
            } = match session.take() {
                Some(opened) => opened,
                None => self.start_upload(repository).await?,
            };
            let result = match chunk_size {
                Some(chunk) => {
                    let chunk = chunk.max(min_chunk).max(1);
                    self.put_chunked(location.clone(), repository, digest, size, source, chunk)
                        .await
                }
                None => {
                    self.put_blob(location.clone(), repository, digest, size, source)
                        .await
                }
            };
            let err = match result {
                Ok(()) => return Ok(Outcome::Uploaded),
                Err(e) => e,
            };
            self.cancel_upload(&location, repository).await;
            if chunk_size.is_none() && err.status() == Some(StatusCode::PAYLOAD_TOO_LARGE) {
                // The registry, or a proxy in front of it, caps request bodies: go in chunks.
                chunk_size = Some(FALLBACK_CHUNK_SIZE);
                continue;
            }
            let restartable = err.is_transient()
                || err
                    .errors()
                    .is_some_and(|e| e.has("BLOB_UPLOAD_UNKNOWN") || e.has("BLOB_UPLOAD_INVALID"));
            if !restartable || attempt >= attempts {
                return Err(err);
            }
            if let Ok(Some(_)) = self.head_blob(repository, digest).await {
                return Ok(Outcome::Uploaded);
            }
            self.progress().event(&Event::Retrying {
                request: format!("upload of {digest}"),
                attempt: attempt + 1,
                attempts,
                reason: err.to_string(),
            });
            let wait = self
                .options()
                .retry
                .wait_for(attempt, None, SystemTime::now());
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Makes sure the registry has the blob in `repository` without sending it: already there,
    /// or mounted from one of `mount_from`. `None` when neither works (a mount refused, its
    /// session cancelled): the caller has no content to upload, only a reference.
    pub async fn mount_or_find(
        &self,
        repository: &str,
        digest: &Digest,
        mount_from: &[String],
    ) -> Result<Option<Outcome>, Error> {
        if self.head_blob(repository, digest).await?.is_some() {
            return Ok(Some(Outcome::Existed));
        }
        for from in mount_from.iter().filter(|f| f.as_str() != repository) {
            match self.mount_blob(repository, digest, from).await {
                Ok(Mount::Mounted) => return Ok(Some(Outcome::Mounted { from: from.clone() })),
                Ok(Mount::Session(opened)) => {
                    self.cancel_upload(&opened.location, repository).await;
                }
                Err(_) => {}
            }
        }
        Ok(None)
    }

    /// `POST .../blobs/uploads/?mount=<digest>&from=<repo>`.
    async fn mount_blob(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<Mount, Error> {
        let mut url = self.url(&format!("{repository}/blobs/uploads/")).await?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let scopes = [push_scope(repository), pull_scope(from)];
        let sent = self.send(empty_post(url, &scopes)).await?;
        match sent.response.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Session(Session::from_answer(&sent)?)),
            _ => Err(self.fail(sent).await),
        }
    }

    /// `POST .../blobs/uploads/`: a new upload session.
    async fn start_upload(&self, repository: &str) -> Result<Session, Error> {
        let url = self.url(&format!("{repository}/blobs/uploads/")).await?;
        let scopes = [push_scope(repository)];
        let sent = self.send(empty_post(url, &scopes)).await?;
        if sent.response.status() != StatusCode::ACCEPTED {
            return Err(self.fail(sent).await);
        }
        Session::from_answer(&sent)
    }

    /// `DELETE <location>`: tells the registry a session is abandoned. Failures are ignored
    /// (the spec says so; registries expire sessions anyway).
    async fn cancel_upload(&self, location: &Url, repository: &str) {
        let scopes = [push_scope(repository)];
        let mut req = Req::new(Method::DELETE, location.clone(), &scopes);
        req.retry = false;
        let _ = self.send(req).await;
    }

    /// `PUT <location>&digest=<digest>` with the whole blob; not replayed on failure.
    async fn put_blob(
        &self,
        mut url: Url,
        repository: &str,
        digest: &Digest,
        size: u64,
        source: &dyn BlobSource,
    ) -> Result<(), Error> {
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let scopes = [push_scope(repository)];
        let watch = Arc::new(Watch::new());
        let make = || -> Result<reqwest::Body, Error> {
            let reader = source.open(digest).map_err(|source| Error::Source {
                digest: digest.clone(),
                source,
            })?;
            Ok(body_stream(
                reader.take(size),
                self.clone(),
                digest.clone(),
                (0, size),
                watch.clone(),
            ))
        };
        let mut req = Req::new(Method::PUT, url, &scopes)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .header(header::CONTENT_LENGTH, HeaderValue::from(size));
        req.body = ReqBody::Stream(&make);
        req.retry = false;
        req.watch = Some(watch.clone());
        self.progress().event(&Event::BlobStarted {
            digest: digest.clone(),
            size,
        });
        let sent = self.send(req).await?;
        self.committed(sent, digest).await
    }

    /// Checks the answer to the request that completed an upload: 201 (or 204), and a
    /// `Docker-Content-Digest`, if any, that is ours.
    async fn committed(&self, sent: crate::client::Sent, digest: &Digest) -> Result<(), Error> {
        if !matches!(
            sent.response.status(),
            StatusCode::CREATED | StatusCode::NO_CONTENT
        ) {
            return Err(self.fail(sent).await);
        }
        if let Some(h) = content_digest(sent.response.headers())
            && h != digest.to_string()
        {
            return Err(Error::HeaderDigestMismatch {
                what: "blob",
                registry: self.name().to_owned(),
                expected: digest.clone(),
                header: h.chars().take(80).collect(),
            });
        }
        Ok(())
    }
}

/// A `POST` with an explicit empty body (some registries answer 411 without `Content-Length`).
fn empty_post(url: Url, scopes: &[String]) -> Req<'_> {
    empty(Method::POST, url, scopes)
}

/// A request with an explicit empty body.
fn empty(method: Method, url: Url, scopes: &[String]) -> Req<'_> {
    let mut req =
        Req::new(method, url, scopes).header(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    req.body = ReqBody::Bytes(Bytes::new());
    req
}

/// Streams `reader` as a request body in chunks, touching `watch` and reporting progress as
/// each chunk is handed to the connection. `(start, size)`: where in the blob the body starts,
/// and the blob's size, for progress.
///
/// The reader is a local file, read inline: a read from the page cache or a local disk is
/// shorter than the network write it feeds.
fn body_stream(
    reader: impl Read + Send + 'static,
    registry: Registry,
    digest: Digest,
    (start, size): (u64, u64),
    watch: Arc<Watch>,
) -> reqwest::Body {
    let stream = futures_util::stream::unfold((reader, start), move |(mut reader, done)| {
        let registry = registry.clone();
        let digest = digest.clone();
        let watch = watch.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            match reader.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let done = done + n as u64;
                    watch.touch();
                    registry
                        .progress()
                        .event(&Event::BlobProgress { digest, done, size });
                    Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(buf)),
                        (reader, done),
                    ))
                }
                Err(e) => Some((Err(e), (reader, done))),
            }
        }
    });
    reqwest::Body::wrap_stream(stream)
}
