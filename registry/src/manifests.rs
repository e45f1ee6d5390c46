//! Manifest requests: `GET`/`HEAD`/`PUT /v2/<name>/manifests/<reference>`.
//!
//! A fetched manifest is kept as the exact bytes served, hashed as they are (never
//! re-serialised), and checked three ways before anyone parses it: against the digest asked
//! for (moby#13360: a registry must not swap the image behind a digest), against
//! `Docker-Content-Digest` when the registry sends it, and against the 4 MiB limit. A pushed
//! manifest goes up with its own media type as `Content-Type`, and the digest the registry
//! answers with must be ours.

use bytes::Bytes;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::auth::token::{pull_scope, push_scope};
use crate::client::{Registry, Req, ReqBody, content_digest};
use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::{ACCEPT, MAX_MANIFEST_BYTES};
use crate::progress::Event;

/// A manifest or index exactly as stored in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its media type (the `Content-Type` it was served with, without parameters).
    pub media_type: String,
    /// The bytes, as served.
    pub bytes: Vec<u8>,
    /// The digest of `bytes`.
    pub digest: Digest,
}

/// What a `HEAD` on a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// Its digest (`Docker-Content-Digest`), if the registry says.
    pub digest: Option<Digest>,
    /// Its media type, if the registry says.
    pub media_type: Option<String>,
    /// Its size, if the registry says.
    pub size: Option<u64>,
}

impl Registry {
    /// Fetches a manifest by tag or digest and verifies it. When `reference` is a digest the
    /// bytes must hash to it.
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<Manifest, Error> {
        let url = self
            .url(&format!("{repository}/manifests/{reference}"))
            .await?;
        let scopes = [pull_scope(repository)];
        let sent = self
            .send(
                Req::new(Method::GET, url, &scopes)
                    .header(header::ACCEPT, HeaderValue::from_static(ACCEPT)),
            )
            .await?;
        if sent.response.status() != StatusCode::OK {
            return Err(self.fail(sent).await);
        }
        let media_type = media_type_of(sent.response.headers());
        let header_digest = content_digest(sent.response.headers()).map(str::to_owned);
        let what = format!("manifest {repository}:{reference}");
        let bytes = self.read_body(sent, MAX_MANIFEST_BYTES, &what).await?;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>()
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                what: "manifest",
                registry: self.name().to_owned(),
                expected,
                found: digest,
            });
        }
        if let Some(h) = header_digest
            && h != digest.to_string()
        {
            return Err(Error::HeaderDigestMismatch {
                what: "manifest",
                registry: self.name().to_owned(),
                expected: digest,
                header: h.chars().take(80).collect(),
            });
        }
        Ok(Manifest {
            media_type: media_type.unwrap_or_default(),
            bytes,
            digest,
        })
    }

    /// Asks whether a manifest exists (`None` on 404) and what the registry says of it.
    pub async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>, Error> {
        let url = self
            .url(&format!("{repository}/manifests/{reference}"))
            .await?;
        let scopes = [pull_scope(repository)];
        let sent = self
            .send(
                Req::new(Method::HEAD, url, &scopes)
                    .header(header::ACCEPT, HeaderValue::from_static(ACCEPT)),
            )
            .await?;
        match sent.response.status() {
            StatusCode::OK => {
                let headers = sent.response.headers();
                Ok(Some(ManifestHead {
                    digest: content_digest(headers).and_then(|d| d.parse().ok()),
                    media_type: media_type_of(headers),
                    size: headers
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok()),
                }))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.fail(sent).await),
        }
    }

    /// Pushes a manifest as `reference` (a tag, or its digest) and checks the digest the
    /// registry reports. Returns the digest.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest, Error> {
        let size = manifest.bytes.len() as u64;
        if size > MAX_MANIFEST_BYTES {
            return Err(Error::TooLarge {
                what: format!("manifest {}", manifest.digest),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let digest = Digest::of(&manifest.bytes);
        if digest != manifest.digest {
            return Err(Error::DigestMismatch {
                what: "manifest",
                registry: self.name().to_owned(),
                expected: manifest.digest.clone(),
                found: digest,
            });
        }
        let content_type =
            HeaderValue::from_str(&manifest.media_type).map_err(|_| Error::Manifest {
                what: format!("manifest {digest}"),
                source: crate::manifest::ManifestError::Unsupported(manifest.media_type.clone()),
            })?;
        let url = self
            .url(&format!("{repository}/manifests/{reference}"))
            .await?;
        let scopes = [push_scope(repository)];
        let mut req =
            Req::new(Method::PUT, url, &scopes).header(header::CONTENT_TYPE, content_type);
        req.body = ReqBody::Bytes(Bytes::from(manifest.bytes.clone()));
        let sent = self.send(req).await?;
        if !matches!(
            sent.response.status(),
            StatusCode::CREATED | StatusCode::OK | StatusCode::ACCEPTED
        ) {
            return Err(self.fail(sent).await);
        }
        if let Some(h) = content_digest(sent.response.headers())
            && h != digest.to_string()
        {
            return Err(Error::HeaderDigestMismatch {
                what: "manifest",
                registry: self.name().to_owned(),
                expected: digest,
                header: h.chars().take(80).collect(),
            });
        }
        self.progress().event(&Event::ManifestPushed {
            repository: repository.to_owned(),
            reference: reference.to_owned(),
            digest: digest.clone(),
        });
        Ok(digest)
    }
}

/// The `Content-Type` without parameters.
fn media_type_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
        .filter(|v| !v.is_empty())
}
