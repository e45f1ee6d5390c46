//! Chunked uploads: `PATCH <location>` with `Content-Range: <start>-<end>` (inclusive, no
//! `bytes ` prefix, as ACR insists), each chunk's answer giving the next location and the
//! range received, then `PUT <location>?digest=` with no body to close.
//!
//! A chunk that fails (connection cut, stall, 5xx, or 416 out of order) is not resent blindly:
//! `GET <location>` asks the registry how much it holds (`Range: 0-<end>`), and the upload
//! resumes from there, with a fresh location. What the registry reports is checked against
//! kiln's own accounting: a range that goes backwards past what was already confirmed means the
//! session lost data and is given up (the caller starts a new one); a range that did not
//! advance after a successful chunk (ECR's bug) is overruled by the bytes actually sent.
//! distribution reports `0-0` both for nothing and for one byte; kiln reads it as nothing.

use std::io::Read as _;
use std::sync::Arc;
use std::time::SystemTime;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::{body_stream, empty};
use crate::auth::token::push_scope;
use crate::client::{Registry, Req, ReqBody, location};
use crate::digest::Digest;
use crate::error::Error;
use crate::progress::Event;
use crate::push::BlobSource;
use crate::transport::Watch;

impl Registry {
    /// Uploads a blob to the session at `location` in chunks of `chunk` bytes, resuming
    /// from the registry's offset after a failed chunk.
    pub(super) async fn put_chunked(
        &self,
        mut location: Url,
        repository: &str,
        digest: &Digest,
        size: u64,
        source: &dyn BlobSource,
        chunk: u64,
    ) -> Result<(), Error> {
        let scopes = [push_scope(repository)];
        let policy = self.options().retry.clone();
        let mut offset = 0u64;
        let mut failures = 0;
        self.progress().event(&Event::BlobStarted {
            digest: digest.clone(),
            size,
        });
        while offset < size {
            let len = chunk.min(size - offset);
            let err = match self
                .patch(&location, &scopes, digest, source, (offset, len, size))
                .await
            {
                Ok((next, end)) => {
                    location = next;
                    offset = advanced(offset, len, end);
                    failures = 0;
                    continue;
                }
                Err(e) => e,
            };
            failures += 1;
            let recoverable =
                err.is_transient() || err.status() == Some(StatusCode::RANGE_NOT_SATISFIABLE);
            if !recoverable || failures >= policy.attempts {
                return Err(err);
            }
            if !matches!(err, Error::Transport { .. } | Error::Timeout { .. }) {
                let wait = policy.wait_for(failures, None, SystemTime::now());
                tokio::time::sleep(wait).await;
            }
            let (next, received) = self.upload_status(&location, &scopes).await?;
            if received < offset || received > size {
                // The registry lost what it had confirmed, or claims more than exists.
                return Err(err);
            }
            self.progress().event(&Event::Resuming {
                digest: digest.clone(),
                offset: received,
            });
            location = next;
            offset = received;
        }
        location
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut req = empty(Method::PUT, location, &scopes);
        req.retry = false;
        let sent = self.send(req).await?;
        self.committed(sent, digest).await
    }

    /// Sends bytes `[offset, offset + len)` of the blob; returns the next location and the
    /// last byte the registry says it holds.
    async fn patch(
        &self,
        location: &Url,
        scopes: &[String],
        digest: &Digest,
        source: &dyn BlobSource,
        (offset, len, size): (u64, u64, u64),
    ) -> Result<(Url, Option<u64>), Error> {
        let watch = Arc::new(Watch::new());
        let make = || -> Result<reqwest::Body, Error> {
            let reader = source
                .open_at(digest, offset)
                .map_err(|source| Error::Source {
                    digest: digest.clone(),
                    source,
                })?;
            Ok(body_stream(
                reader.take(len),
                self.clone(),
                digest.clone(),
                (offset, size),
                watch.clone(),
            ))
        };
        let range = HeaderValue::from_str(&format!("{offset}-{}", offset + len - 1))
            .map_err(|_| Error::InvalidHost(self.name().to_owned()))?;
        let mut req = Req::new(Method::PATCH, location.clone(), scopes)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .header(header::CONTENT_LENGTH, HeaderValue::from(len))
            .header(header::CONTENT_RANGE, range);
        req.body = ReqBody::Stream(&make);
        req.retry = false;
        req.watch = Some(watch.clone());
        let sent = self.send(req).await?;
        // 202 per the spec; ECR answers 201 and pulp 204.
        if !matches!(
            sent.response.status(),
            StatusCode::ACCEPTED | StatusCode::CREATED | StatusCode::NO_CONTENT
        ) {
            return Err(self.fail(sent).await);
        }
        let end = range_end(sent.response.headers());
        Ok((next_location(&sent, location)?, end))
    }

    /// `GET <location>`: how many bytes the session holds, and where to continue.
    async fn upload_status(&self, location: &Url, scopes: &[String]) -> Result<(Url, u64), Error> {
        let sent = self
            .send(Req::new(Method::GET, location.clone(), scopes))
            .await?;
        if !matches!(
            sent.response.status(),
            StatusCode::NO_CONTENT | StatusCode::OK
        ) {
            return Err(self.fail(sent).await);
        }
        let received = match range_end(sent.response.headers()) {
            Some(0) | None => 0,
            Some(end) => end + 1,
        };
        Ok((next_location(&sent, location)?, received))
    }
}

/// The answer's `Location`, or the current one when it sent none.
fn next_location(sent: &crate::client::Sent, current: &Url) -> Result<Url, Error> {
    if sent.response.headers().contains_key(header::LOCATION) {
        location(sent)
    } else {
        Ok(current.clone())
    }
}

/// The end of `Range: 0-<end>` (a `bytes=` prefix tolerated).
fn range_end(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::RANGE)?.to_str().ok()?.trim();
    let value = value.strip_prefix("bytes=").unwrap_or(value);
    let (start, end) = value.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    end.trim().parse().ok()
}

/// Where the next chunk starts after `[offset, offset + len)` was accepted with the registry
/// reporting `end`: its word when it is within what was sent, else kiln's own count.
fn advanced(offset: u64, len: u64, end: Option<u64>) -> u64 {
    match end {
        Some(end) if end + 1 > offset && end < offset + len => end + 1,
        _ => offset + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0-1023", Some(1023)),
            ("bytes=0-9", Some(9)),
            ("0-0", Some(0)),
            ("5-9", None),
            ("0-", None),
            ("junk", None),
        ];
        for (value, expected) in cases {
            let mut h = HeaderMap::new();
            h.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
            assert_eq!(range_end(&h), *expected, "{value}");
        }
        assert_eq!(range_end(&HeaderMap::new()), None);
    }

    #[test]
    fn offsets_follow_the_registry_within_reason() {
        let cases: &[(u64, u64, Option<u64>, u64)] = &[
            (0, 100, Some(99), 100),
            (100, 100, Some(199), 200),
            (100, 100, Some(149), 150),
            (100, 100, Some(99), 200),
            (100, 100, Some(0), 200),
            (100, 100, Some(500), 200),
            (100, 100, None, 200),
        ];
        for &(offset, len, end, next) in cases {
            assert_eq!(
                advanced(offset, len, end),
                next,
                "{offset}+{len} end {end:?}"
            );
        }
    }
}
