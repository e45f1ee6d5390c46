//! Blob requests: `HEAD` (does the registry have it?) and a verified, resumable `GET` into a
//! caller's sink.
//!
//! A download streams into the sink while hashing; it never holds the blob in memory. It stops
//! as soon as more than the descriptor's size arrives, and succeeds only if exactly that size
//! arrived and hashed to the digest asked for (and `Docker-Content-Digest`, when sent, agrees).
//! When the connection breaks or stalls, the download continues from the bytes already
//! received with `Range: bytes=N-`; a registry that ignores the range answers 200 and the
//! first N bytes are skipped. Rounds that make progress may repeat (bounded); rounds that make
//! none count against the retry policy. On any error the sink holds garbage and the caller must
//! discard it (the store's writers do that on drop).

use std::io::Write;

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::auth::token::pull_scope;
use crate::client::{Registry, Req, content_digest};
use crate::digest::{Digest, DigestWriter};
use crate::error::{Attempts, Error};
use crate::progress::Event;

/// The most rounds (first request and resumptions) one download makes.
const MAX_ROUNDS: u32 = 20;

impl Registry {
    /// The size of a blob if the registry has it (`None` on 404).
    pub async fn head_blob(&self, repository: &str, digest: &Digest) -> Result<Option<u64>, Error> {
        let url = self.url(&format!("{repository}/blobs/{digest}")).await?;
        let scopes = [pull_scope(repository)];
        let sent = self.send(Req::new(Method::HEAD, url, &scopes)).await?;
        match sent.response.status() {
            StatusCode::OK => Ok(Some(
                sent.response
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.fail(sent).await),
        }
    }

    /// Downloads a blob of `size` bytes into `sink`, verifying size and digest, resuming after
    /// breaks. Reports `BlobStarted`, `BlobProgress` and `Resuming` events.
    pub async fn get_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        sink: &mut (dyn Write + Send),
    ) -> Result<(), Error> {
        let url = self.url(&format!("{repository}/blobs/{digest}")).await?;
        let scopes = [pull_scope(repository)];
        let policy = self.options().retry.clone();
        let idle = self.options().idle_timeout;
        let registry = self.name().to_owned();
        let mut out = DigestWriter::new(sink);
        let mut stalls = 0;
        self.progress().event(&Event::BlobStarted {
            digest: digest.clone(),
            size,
        });
        let mut round = 0;
        loop {
            round += 1;
            let received = out.size();
            let mut req = Req::new(Method::GET, url.clone(), &scopes);
            if received > 0 {
                let range = HeaderValue::from_str(&format!("bytes={received}-"))
                    .map_err(|_| Error::InvalidHost(registry.clone()))?;
                req = req.header(header::RANGE, range);
            }
            let sent = self.send(req).await?;
            let mut skip = match sent.response.status() {
                StatusCode::OK => received,
                StatusCode::PARTIAL_CONTENT if received > 0 => {
                    if range_start(sent.response.headers()) != Some(received) {
                        return Err(Error::BadHeader {
                            request: sent.info,
                            header: "Content-Range",
                        });
                    }
                    0
                }
                _ => return Err(self.fail(sent).await),
            };
            if let Some(h) = content_digest(sent.response.headers())
                && h != digest.to_string()
            {
                return Err(Error::HeaderDigestMismatch {
                    what: "blob",
                    registry,
                    expected: digest.clone(),
                    header: h.chars().take(80).collect(),
                });
            }
            let info = sent.info;
            let attempts = Attempts(round);
            let mut response = sent.response;
            let broke = loop {
                let chunk = match tokio::time::timeout(idle, response.chunk()).await {
                    Err(_) => {
                        break Error::Timeout {
                            request: info.clone(),
                            idle,
                            attempts,
                        };
                    }
                    Ok(Err(e)) => {
                        break Error::Transport {
                            request: info.clone(),
                            attempts,
                            source: e.without_url(),
                        };
                    }
                    Ok(Ok(None)) => return self.finish_blob(out, digest, size),
                    Ok(Ok(Some(chunk))) => chunk,
                };
                let mut chunk = &chunk[..];
                let skipped = chunk.len().min(usize::try_from(skip).unwrap_or(usize::MAX));
                chunk = &chunk[skipped..];
                skip -= skipped as u64;
                if out.size() + chunk.len() as u64 > size {
                    return Err(Error::SizeMismatch {
                        registry,
                        digest: digest.clone(),
                        expected: size,
                        found: out.size() + chunk.len() as u64,
                    });
                }
                out.write_all(chunk).map_err(|e| Error::Store {
                    digest: digest.clone(),
                    source: e.into(),
                })?;
                self.progress().event(&Event::BlobProgress {
                    digest: digest.clone(),
                    done: out.size(),
                    size,
                });
            };
            if out.size() > received {
                stalls = 0;
            } else {
                stalls += 1;
            }
            if stalls >= policy.attempts || round >= MAX_ROUNDS {
                return Err(broke);
            }
            self.progress().event(&Event::Resuming {
                digest: digest.clone(),
                offset: out.size(),
            });
            if stalls > 0 {
                tokio::time::sleep(policy.delay(stalls)).await;
            }
        }
    }

    fn finish_blob(
        &self,
        out: DigestWriter<&mut (dyn Write + Send)>,
        digest: &Digest,
        size: u64,
    ) -> Result<(), Error> {
        let (sink, found, received) = out.finish();
        sink.flush().map_err(|e| Error::Store {
            digest: digest.clone(),
            source: e.into(),
        })?;
        if received != size {
            return Err(Error::SizeMismatch {
                registry: self.name().to_owned(),
                digest: digest.clone(),
                expected: size,
                found: received,
            });
        }
        if &found != digest {
            return Err(Error::DigestMismatch {
                what: "blob",
                registry: self.name().to_owned(),
                expected: digest.clone(),
                found,
            });
        }
        Ok(())
    }
}

/// The first byte position of `Content-Range: bytes START-END/TOTAL`.
fn range_start(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        let cases: &[(&str, Option<u64>)] = &[
            ("bytes 100-199/200", Some(100)),
            ("bytes 0-0/1", Some(0)),
            ("bytes */200", None),
            ("100-199/200", None),
            ("bytes x-1/2", None),
        ];
        for (value, expected) in cases {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(header::CONTENT_RANGE, HeaderValue::from_str(value).unwrap());
            assert_eq!(range_start(&h), *expected, "{value}");
        }
    }
}
