//! Pushing an image (a manifest or an index of manifests) from a caller's blob source.
//!
//! Order is what registries require: every blob first (in parallel, each checked with `HEAD`,
//! mounted or uploaded), then each platform manifest of an index by digest, then the root
//! manifest under each tag (or by digest when there is none). Documents are read from the
//! source with a size limit and verified against their descriptors before anything is sent, so
//! a corrupt store cannot push a manifest that differs from its digest.

use std::collections::BTreeMap;
use std::io::Read;

use futures_util::{StreamExt as _, TryStreamExt as _};
use oci_spec::image::Descriptor;

use crate::client::Registry;
use crate::digest::Digest;
use crate::error::{BoxError, Error};
use crate::manifest::{self, Document, MAX_MANIFEST_BYTES};
use crate::manifests::Manifest;
use crate::progress::{Event, Outcome};

/// Where a push reads blobs from (the local store).
pub trait BlobSource: Send + Sync {
    /// Opens a blob for reading from its start. Called again for every upload attempt.
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError>;

    /// Opens a blob for reading from byte `offset` (a resumed chunked upload). The default
    /// reads and discards the bytes before it; a file-backed source should seek instead.
    fn open_at(&self, digest: &Digest, offset: u64) -> Result<Box<dyn Read + Send>, BoxError> {
        let mut reader = self.open(digest)?;
        let skipped = std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink())?;
        if skipped != offset {
            return Err(format!("blob is shorter than {offset} bytes").into());
        }
        Ok(reader)
    }
}

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Tags to put the root manifest under; by digest only when empty.
    pub tags: Vec<String>,
    /// Other repositories of the same registry known to hold a blob: mount candidates.
    pub mount_from: BTreeMap<Digest, Vec<String>>,
    /// Blobs the caller has already sent to the repository (with [`Registry::upload_blob`],
    /// while it was still preparing the others), with what happened to them: not checked again.
    pub sent: BTreeMap<Digest, Outcome>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The root manifest's digest.
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub existed: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
}

/// Pushes the image `root` describes to `repository` of `registry`.
pub async fn push(
    registry: &Registry,
    repository: &str,
    root: &Descriptor,
    source: &dyn BlobSource,
    options: &PushOptions,
) -> Result<Pushed, Error> {
    let root_manifest = read_document(source, root)?;
    let mut children: Vec<Manifest> = Vec::new();
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    match parse(&root_manifest)? {
        Document::Manifest(m) => collect_blobs(&Document::Manifest(m), &mut blobs)?,
        Document::Index(index) => {
            for desc in index.manifests() {
                let child = read_document(source, desc)?;
                match parse(&child)? {
                    doc @ Document::Manifest(_) => collect_blobs(&doc, &mut blobs)?,
                    Document::Index(_) => {
                        return Err(Error::Manifest {
                            what: format!("index {}", root_manifest.digest),
                            source: manifest::ManifestError::Unsupported("nested index".to_owned()),
                        });
                    }
                }
                children.push(child);
            }
        }
    }

    registry.progress().event(&Event::Plan {
        blobs: blobs.len(),
        bytes: blobs.values().sum(),
    });
    let no_hints = Vec::new();
    let outcomes: Vec<(u64, Outcome)> = futures_util::stream::iter(blobs.iter())
        .map(|(digest, &size)| {
            let hints = options.mount_from.get(digest).unwrap_or(&no_hints);
            async move {
                let outcome = match options.sent.get(digest) {
                    Some(sent) => sent.clone(),
                    None => {
                        registry
                            .upload_blob(repository, digest, size, source, hints)
                            .await?
                    }
                };
                registry.progress().event(&Event::BlobFinished {
                    digest: digest.clone(),
                    size,
                    outcome: outcome.clone(),
                });
                Ok::<_, Error>((size, outcome))
            }
        })
        .buffer_unordered(registry.options().concurrency.max(1))
        .try_collect()
        .await?;

    for child in &children {
        registry
            .put_manifest(repository, &child.digest.to_string(), child)
            .await?;
    }
    if options.tags.is_empty() {
        registry
            .put_manifest(
                repository,
                &root_manifest.digest.to_string(),
                &root_manifest,
            )
            .await?;
    }
    for tag in &options.tags {
        registry
            .put_manifest(repository, tag, &root_manifest)
            .await?;
    }

    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count();
    Ok(Pushed {
        digest: root_manifest.digest,
        uploaded: count(|o| *o == Outcome::Uploaded),
        existed: count(|o| *o == Outcome::Existed),
        mounted: count(|o| matches!(o, Outcome::Mounted { .. })),
        bytes_uploaded: outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::Uploaded)
            .map(|(s, _)| s)
            .sum(),
    })
}

/// Reads a manifest or index named by `desc` from the source: bounded, size- and
/// digest-checked.
fn read_document(source: &dyn BlobSource, desc: &Descriptor) -> Result<Manifest, Error> {
    let digest = Digest::from_oci(desc.digest()).map_err(|e| Error::Manifest {
        what: format!("descriptor {}", desc.digest()),
        source: manifest::ManifestError::Digest(e),
    })?;
    if desc.size() > MAX_MANIFEST_BYTES {
        return Err(Error::TooLarge {
            what: format!("manifest {digest}"),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let source_error = |source: BoxError| Error::Source {
        digest: digest.clone(),
        source,
    };
    let mut bytes = Vec::new();
    source
        .open(&digest)
        .map_err(source_error)?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| source_error(e.into()))?;
    let found = Digest::of(&bytes);
    if found != digest || bytes.len() as u64 != desc.size() {
        return Err(source_error(
            format!(
                "content is {} bytes with digest {found}, descriptor says {} bytes",
                bytes.len(),
                desc.size()
            )
            .into(),
        ));
    }
    Ok(Manifest {
        media_type: desc.media_type().to_string(),
        bytes,
        digest,
    })
}

fn parse(m: &Manifest) -> Result<Document, Error> {
    manifest::parse(&m.bytes, Some(&m.media_type)).map_err(|source| Error::Manifest {
        what: format!("manifest {}", m.digest),
        source,
    })
}

/// Adds a manifest's config and layers (with their sizes) to `blobs`.
fn collect_blobs(doc: &Document, blobs: &mut BTreeMap<Digest, u64>) -> Result<(), Error> {
    for desc in doc.children() {
        let digest = Digest::from_oci(desc.digest()).map_err(|e| Error::Manifest {
            what: format!("descriptor {}", desc.digest()),
            source: manifest::ManifestError::Digest(e),
        })?;
        blobs.insert(digest, desc.size());
    }
    Ok(())
}
