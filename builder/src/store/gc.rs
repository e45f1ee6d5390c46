//! Reachability: the closure of an image (used by tag, gc, rmi and fsck), and garbage
//! collection.
//!
//! The closure of a manifest is its config and layers; of an index, its manifests and their
//! closures. gc keeps every blob reachable from `index.json` or from the extra roots the caller
//! gives (the build cache's entries), holds the store lock while it deletes (so no tag can move
//! onto a blob being deleted), and refuses to run while a build or a blob writer holds a
//! [`Lease`](super::Lease) (so blobs written but not yet tagged survive, and everything it finds
//! in `tmp/` is left over from a process that died). If a reachable manifest cannot be read, gc deletes
//! nothing: it cannot know what that manifest needs.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use kiln_registry::Digest;
use oci_spec::image::{Descriptor, MediaType};
use rustix::fs::FlockOperation;

use super::{MAX_MANIFEST_BYTES, Store, StoreError, crash, sorted_entries};
use crate::image::manifest::DOCKER_LAYER_FOREIGN_GZIP;
use crate::image::{self, Document};

/// A starting point of a walk.
#[derive(Debug, Clone)]
pub(super) struct Root {
    digest: Digest,
    /// `None` for a bare digest (a cache entry): the blob is sniffed.
    media_type: Option<MediaType>,
    size: Option<u64>,
    /// Non-distributable layers (and bare digests) may legitimately be absent.
    optional: bool,
}

impl Root {
    pub(super) fn from_descriptor(desc: &Descriptor) -> Result<Self, StoreError> {
        let media_type = desc.media_type().clone();
        let optional = matches!(
            &media_type,
            MediaType::ImageLayerNonDistributable
                | MediaType::ImageLayerNonDistributableGzip
                | MediaType::ImageLayerNonDistributableZstd
        ) || matches!(&media_type, MediaType::Other(s) if s == DOCKER_LAYER_FOREIGN_GZIP);
        Ok(Self {
            digest: image::from_oci_digest(desc.digest())?,
            media_type: Some(media_type),
            size: Some(desc.size()),
            optional,
        })
    }

    pub(super) fn bare(digest: &Digest) -> Self {
        Self {
            digest: digest.clone(),
            media_type: None,
            size: None,
            optional: true,
        }
    }
}

/// What a walk found.
#[derive(Debug, Default)]
pub(super) struct Walk {
    /// Every digest reached, present or not.
    pub(super) reached: BTreeSet<Digest>,
    /// The same digests in the order first reached (depth first: a manifest, its config, its
    /// layers), for reports that list them as an image references them.
    pub(super) order: Vec<Digest>,
    /// Blobs needed and absent, in the order met.
    pub(super) missing: Vec<Digest>,
    /// Blobs needed, absent, and known remote ([`super::remote`]): not yet fetched.
    pub(super) unfetched: Vec<Digest>,
    /// Blobs present but unusable: wrong size, wrong digest, unparsable document.
    pub(super) broken: Vec<(Digest, StoreError)>,
}

/// What [`Store::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted, in digest order.
    pub removed_blobs: Vec<Digest>,
    /// Their total size.
    pub freed_bytes: u64,
    /// Blobs kept.
    pub kept_blobs: usize,
    /// Files and directories left by dead processes, removed from `tmp/`.
    pub removed_tmp: Vec<PathBuf>,
}

impl Store {
    /// Walks from `roots` in order, depth first. Typed roots should come before bare ones, so
    /// that a manifest is read as what its descriptor says before any sniffing.
    pub(super) fn walk(&self, roots: impl IntoIterator<Item = Root>) -> Walk {
        let mut walk = Walk::default();
        let mut stack: Vec<Root> = roots.into_iter().collect();
        stack.reverse();
        while let Some(node) = stack.pop() {
            if !walk.reached.insert(node.digest.clone()) {
                continue;
            }
            walk.order.push(node.digest.clone());
            let path = self.blob_path(&node.digest);
            let len = match fs::metadata(&path) {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => {
                    walk.missing.push(node.digest);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if self.remote(&node.digest).is_some() {
                        walk.unfetched.push(node.digest);
                    } else if !node.optional {
                        walk.missing.push(node.digest);
                    }
                    continue;
                }
                Err(e) => {
                    let err = StoreError::io("stat", &path)(e);
                    walk.broken.push((node.digest, err));
                    continue;
                }
            };
            if let Some(expected) = node.size
                && expected != len
            {
                let err = StoreError::SizeMismatch {
                    digest: node.digest.clone(),
                    expected,
                    found: len,
                };
                walk.broken.push((node.digest, err));
                continue;
            }
            let typed_document = node
                .media_type
                .as_ref()
                .is_some_and(|m| image::is_manifest_media_type(m) || image::is_index_media_type(m));
            let sniff = node.media_type.is_none() && len <= MAX_MANIFEST_BYTES;
            if !typed_document && !sniff {
                continue;
            }
            let parsed = self
                .read_blob(&node.digest, MAX_MANIFEST_BYTES)
                .and_then(|bytes| {
                    image::parse_document(&bytes, node.media_type.as_ref()).map_err(|source| {
                        StoreError::BadDocument {
                            digest: node.digest.clone(),
                            source,
                        }
                    })
                });
            let children: Vec<Descriptor> = match parsed {
                Ok(Document::Manifest(m)) => std::iter::once(m.config())
                    .chain(m.layers())
                    .cloned()
                    .collect(),
                Ok(Document::Index(i)) => i.manifests().clone(),
                // A sniffed blob that is not a manifest is a leaf (a config, a layer).
                Err(_) if sniff => continue,
                Err(err) => {
                    walk.broken.push((node.digest, err));
                    continue;
                }
            };
            for child in children.into_iter().rev() {
                match Root::from_descriptor(&child) {
                    Ok(root) => stack.push(root),
                    Err(err) => walk.broken.push((node.digest.clone(), err)),
                }
            }
        }
        walk
    }

    /// Deletes every blob not reachable from a tag or from `extra_roots` (the hook for the
    /// build cache: pass the digests its entries hold), and everything in `tmp/` (nothing
    /// there can be in use: see below), detaching what a killed RUN left mounted.
    ///
    /// Fails with [`StoreError::Busy`] while a build or a blob writer holds a lease, and
    /// deletes nothing if a reachable manifest or index is unreadable.
    pub fn gc(&self, extra_roots: &[Digest]) -> Result<GcReport, StoreError> {
        let _lease = self.exclusive_lease()?;
        self.gc_leased(extra_roots)
    }

    /// Takes the lease lock exclusively, without waiting: [`StoreError::Busy`] while any build
    /// or blob writer holds a lease. Whoever holds it may delete blobs no tag reaches.
    pub(super) fn exclusive_lease(&self) -> Result<fs::File, StoreError> {
        let lease_path = self.root.join("lease.lock");
        match super::flock(&lease_path, FlockOperation::NonBlockingLockExclusive) {
            Ok(file) => Ok(file),
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::WouldBlock => {
                Err(StoreError::Busy)
            }
            Err(e) => Err(e),
        }
    }

    /// [`Store::gc`] for a caller that holds [`Store::exclusive_lease`].
    pub(super) fn gc_leased(&self, extra_roots: &[Digest]) -> Result<GcReport, StoreError> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        let mut roots = index
            .manifests()
            .iter()
            .map(Root::from_descriptor)
            .collect::<Result<Vec<_>, _>>()?;
        roots.extend(extra_roots.iter().map(Root::bare));
        let walk = self.walk(roots);
        if let Some((_, err)) = walk.broken.into_iter().next() {
            return Err(err);
        }

        let mut report = GcReport::default();
        let blobs_dir = self.blobs_dir();
        for entry in sorted_entries(&blobs_dir)? {
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
            else {
                continue; // not ours; verify reports it
            };
            if walk.reached.contains(&digest) {
                report.kept_blobs += 1;
                continue;
            }
            let path = entry.path();
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("remove", &path)(e)),
            }
            crash::point(crash::BLOB_DELETED);
            report.freed_bytes += len;
            report.removed_blobs.push(digest);
        }

        report.removed_tmp = self.sweep_locked()?;
        Ok(report)
    }
}
