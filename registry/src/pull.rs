//! Pulling an image into a caller's blob store.
//!
//! Resolve the reference (by digest when it has one) to a verified manifest; if that is an
//! index, choose the manifest for the wanted platform as containerd does ([`Platform::choose`]:
//! the platform itself, else the nearest it runs, such as `arm/v6` for `arm/v7`) and fetch it
//! by digest (verified against the index's descriptor: digest, size, media type). Then download the config and layers the
//! store does not have, in parallel, each verified before the store commits it. The manifest
//! is stored last, so a store never holds a manifest whose blobs are missing. The index itself
//! is not stored (the caller tags the platform manifest, as docker does), but its digest is
//! returned: it is what the reference resolved to.

use std::io::Write;

use futures_util::{StreamExt as _, TryStreamExt as _};
use oci_spec::image::{Descriptor, MediaType};

use crate::client::Registry;
use crate::digest::Digest;
use crate::error::{BoxError, Error};
use crate::manifest::{self, Document};
use crate::manifests::Manifest;
use crate::platform::Platform;
use crate::progress::{Event, Outcome};
use crate::reference::Reference;

/// Where a pull stores blobs (the local store).
pub trait BlobStore: Send + Sync {
    /// Whether the store already has a blob (it is then not downloaded).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// A writer for a new blob.
    fn writer(&self) -> Result<Box<dyn BlobSink>, BoxError>;
}

/// A blob being written into a [`BlobStore`]; dropping it without committing discards it.
pub trait BlobSink: Write + Send {
    /// Keeps the blob if it is exactly `size` bytes with `digest` (the store checks again).
    fn commit(self: Box<Self>, digest: &Digest, size: u64) -> Result<(), BoxError>;
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// What the reference resolved to: the index's digest for a multi-platform image, else the
    /// manifest's.
    pub digest: Digest,
    /// The image manifest now in the store (with its platform when an index named one).
    pub manifest: Descriptor,
    /// The entries of the index the reference resolved to (empty for a single manifest): the
    /// caller can tell which of its local manifests are of the same image.
    pub index: Vec<Descriptor>,
    /// Blobs downloaded.
    pub downloaded: usize,
    /// Blobs the store already had.
    pub present: usize,
    /// Bytes downloaded.
    pub bytes_downloaded: u64,
}

/// Pulls `reference` for `platform` into `store`.
pub async fn pull(
    registry: &Registry,
    reference: &Reference,
    platform: &Platform,
    store: &dyn BlobStore,
) -> Result<Pulled, Error> {
    let repository = reference.repository();
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    };
    let root = registry.get_manifest(repository, &wanted).await?;
    let mut entries = Vec::new();
    let (manifest, doc, platform_of_entry) = match parse(&root, None)? {
        doc @ Document::Manifest(_) => (root.clone(), doc, None),
        Document::Index(index) => {
            entries = index.manifests().clone();
            let entry = platform
                .choose(
                    index
                        .manifests()
                        .iter()
                        .filter(|d| manifest::is_manifest_media_type(d.media_type())),
                )
                .ok_or_else(|| Error::NoPlatform {
                    reference: reference.to_string(),
                    wanted: platform.to_string(),
                    available: index
                        .manifests()
                        .iter()
                        .filter_map(|d| d.platform().as_ref())
                        .map(|p| {
                            Platform::new(
                                &p.os().to_string(),
                                &p.architecture().to_string(),
                                p.variant().as_deref(),
                            )
                            .to_string()
                        })
                        .collect(),
                })?
                .clone();
            let digest = Digest::from_oci(entry.digest()).map_err(|e| Error::Manifest {
                what: format!("index {}", root.digest),
                source: manifest::ManifestError::Digest(e),
            })?;
            let child = registry
                .get_manifest(repository, &digest.to_string())
                .await?;
            if child.bytes.len() as u64 != entry.size() {
                return Err(Error::SizeMismatch {
                    registry: registry.name().to_owned(),
                    digest,
                    expected: entry.size(),
                    found: child.bytes.len() as u64,
                });
            }
            let child = Manifest {
                media_type: entry.media_type().to_string(),
                ..child
            };
            match parse(&child, Some(entry.media_type()))? {
                doc @ Document::Manifest(_) => (child, doc, entry.platform().clone()),
                Document::Index(_) => {
                    return Err(Error::Manifest {
                        what: format!("manifest {digest}"),
                        source: manifest::ManifestError::Unsupported("nested index".into()),
                    });
                }
            }
        }
    };

    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for desc in doc.children() {
        let digest = Digest::from_oci(desc.digest()).map_err(|e| Error::Manifest {
            what: format!("manifest {}", manifest.digest),
            source: manifest::ManifestError::Digest(e),
        })?;
        if !blobs.iter().any(|(d, _)| d == &digest) {
            blobs.push((digest, desc.size()));
        }
    }
    let (present, missing): (Vec<_>, Vec<_>) = blobs
        .into_iter()
        .partition(|(digest, _)| store.has_blob(digest));
    registry.progress().event(&Event::Plan {
        blobs: missing.len(),
        bytes: missing.iter().map(|(_, s)| s).sum(),
    });
    for (digest, size) in &present {
        registry.progress().event(&Event::BlobFinished {
            digest: digest.clone(),
            size: *size,
            outcome: Outcome::Present,
        });
    }
    futures_util::stream::iter(missing.iter())
        .map(|(digest, size)| download(registry, repository, digest, *size, store))
        .buffer_unordered(registry.options().concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;

    let manifest_size = manifest.bytes.len() as u64;
    store_bytes(store, &manifest.digest, &manifest.bytes)?;
    let mut desc = Descriptor::new(
        MediaType::from(manifest.media_type.as_str()),
        manifest_size,
        manifest.digest.to_oci(),
    );
    desc.set_platform(platform_of_entry);
    Ok(Pulled {
        digest: root.digest,
        manifest: desc,
        index: entries,
        downloaded: missing.len(),
        present: present.len(),
        bytes_downloaded: missing.iter().map(|(_, s)| s).sum(),
    })
}

/// Downloads one blob into a new sink and commits it.
async fn download(
    registry: &Registry,
    repository: &str,
    digest: &Digest,
    size: u64,
    store: &dyn BlobStore,
) -> Result<(), Error> {
    let store_error = |source: BoxError| Error::Store {
        digest: digest.clone(),
        source,
    };
    let mut sink = store.writer().map_err(store_error)?;
    registry
        .get_blob(repository, digest, size, &mut *sink)
        .await?;
    sink.commit(digest, size).map_err(store_error)?;
    registry.progress().event(&Event::BlobFinished {
        digest: digest.clone(),
        size,
        outcome: Outcome::Downloaded,
    });
    Ok(())
}

/// Stores a small, already verified document.
fn store_bytes(store: &dyn BlobStore, digest: &Digest, bytes: &[u8]) -> Result<(), Error> {
    let store_error = |source: BoxError| Error::Store {
        digest: digest.clone(),
        source,
    };
    if store.has_blob(digest) {
        return Ok(());
    }
    let mut sink = store.writer().map_err(store_error)?;
    sink.write_all(bytes).map_err(|e| store_error(e.into()))?;
    sink.commit(digest, bytes.len() as u64).map_err(store_error)
}

fn parse(m: &Manifest, described: Option<&MediaType>) -> Result<Document, Error> {
    let served = described.map(MediaType::as_ref).unwrap_or(&m.media_type);
    manifest::parse(&m.bytes, Some(served)).map_err(|source| Error::Manifest {
        what: format!("manifest {}", m.digest),
        source,
    })
}
