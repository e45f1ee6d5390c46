//! Snapshots: image layers unpacked once per chainID, stacked into a writable root for a RUN,
//! and the change that RUN made turned back into a layer (DESIGN decision 3).
//!
//! `snapshots/<chainID hex>/` holds one layer unpacked by the safe applier in
//! [`ApplyMode::OverlayLower`] form (deletions as 0/0 character devices, opaque directories
//! marked), so it can serve directly as an overlayfs lowerdir. A snapshot is unpacked into a
//! temporary directory, synced and renamed into place without replacing, so a crash never
//! leaves half a snapshot and two builds unpacking the same chainID both succeed with one copy.
//! Snapshots are never written after that.
//!
//! [`Snapshots::mutable`] stacks the snapshots of a chain into a [`Mutable`] root. With
//! overlayfs (the default) that is a mount with a fresh upperdir: the RUN's cost is the size of
//! its change, and the upperdir afterwards *is* the change. Where overlayfs cannot be mounted
//! (detected when the store is opened, or forced for tests) a merged private copy is made and
//! compared with a manifest afterwards; both produce the change in the same upperdir form, so
//! [`Mutable::commit`] writes identical layers from either. A committed change can be kept as
//! the snapshot of its own chainID ([`Committed::keep`]), so the next RUN stacks on it without
//! unpacking anything.
//!
//! Chain IDs follow the OCI image spec: `chainID(L0) = diffID(L0)`,
//! `chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln))`.

mod copy;
mod fsutil;
mod merge;
mod overlay;

#[cfg(test)]
mod tests;

use crate::error_chain;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use kiln_registry::Digest;
use rustix::fs::{CWD, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::layer::{
    ApplyError, ApplyMode, ApplyOptions, ChangeKind, Compression, LayerError, LayerInfo,
    LayerOptions, apply_blob, write_layer,
};
use crate::store::Store;

pub use crate::image::{chain_id, chain_ids};
pub use overlay::{MountApi, detach_all};

/// The mount points at or below a directory, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) use fsutil::mounts_under as test_mounts_under;

/// The mount points in this process's mount namespace at or below `dir`, deepest first: what
/// a process killed while a RUN's overlay was mounted leaves in the store's `tmp/`.
pub(crate) fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fsutil::mounts_under(dir)
}

/// Detaches the mount at `point` (one [`mounts_under`] found); one already gone is fine.
pub(crate) fn detach_mount(point: &Path) -> io::Result<()> {
    match rustix::mount::unmount(
        point,
        rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW,
    ) {
        Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Prefix of the scratch directories of mutable roots in the store's `tmp/`.
const SCRATCH_PREFIX: &str = "snapshot-";
/// Prefix of the directories layers are unpacked into before being renamed into place.
const UNPACK_PREFIX: &str = "unpack-";

/// How mutable roots are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An overlayfs mount over the snapshot directories.
    Overlay,
    /// A merged copy, compared with a manifest afterwards.
    Copy,
}

/// How to open the snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Use this backend instead of detecting one.
    pub backend: Option<Backend>,
    /// How overlays are mounted.
    pub mount_api: MountApi,
}

/// How to write a committed change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitOptions {
    /// How to compress the layer blob.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: later modification times are written as it.
    pub source_date_epoch: Option<i64>,
}

impl Default for CommitOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Gzip,
            source_date_epoch: None,
        }
    }
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A filesystem operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A layer blob could not be unpacked.
    #[error("unpacking layer {chain_id}")]
    Unpack {
        /// The chainID being unpacked.
        chain_id: Digest,
        /// The cause.
        #[source]
        source: ApplyError,
    },
    /// A snapshot directory could not be merged into a copy.
    #[error("merging snapshot {}", layer.display())]
    Merge {
        /// The snapshot directory.
        layer: PathBuf,
        /// The cause.
        #[source]
        source: Box<ApplyError>,
    },
    /// A change set could not be written as a layer.
    #[error("writing the layer of {}", path.display())]
    Layer {
        /// The change set.
        path: PathBuf,
        /// The cause.
        #[source]
        source: LayerError,
    },
    /// A layer blob could not be read from the store.
    #[error("reading layer {digest}")]
    Blob {
        /// The layer's digest.
        digest: String,
        /// The cause.
        #[source]
        source: Box<crate::store::StoreError>,
    },
    /// An image's manifest and config disagree on how many layers it has.
    #[error("the manifest lists {layers} layers but the config {diff_ids} diff_ids")]
    LayerCount {
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A chain names a snapshot that has not been unpacked.
    #[error("snapshot {chain_id} is not unpacked")]
    Missing {
        /// Its chainID.
        chain_id: Digest,
    },
    /// overlayfs could not be mounted.
    #[error("mounting overlayfs on {}{}", target.display(), detail_suffix(detail))]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// What the kernel logged about it, if anything.
        detail: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An overlay could not be unmounted.
    #[error("unmounting {}", target.display())]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A path cannot be written into `mount(2)` overlay options.
    #[error("{}: path cannot be used in overlay mount options (contains ':', ',' or '\\')", path.display())]
    OptionPath {
        /// The path.
        path: PathBuf,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_owned();
    move |source| SnapshotError::Io { op, path, source }
}

/// The snapshot directories of a store and the backend that stacks them.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    tmp: PathBuf,
    backend: Backend,
    mount_api: MountApi,
    overlay_unavailable: Option<String>,
}

impl Snapshots {
    /// The snapshots of `store`, detecting the backend unless `options` forces one.
    pub fn open(store: &Store, options: &SnapshotOptions) -> Result<Self, SnapshotError> {
        Self::at(store.snapshots_dir(), store.tmp_dir(), options)
    }

    /// Snapshots in `dir`, with scratch space in `tmp` (same filesystem), detecting the
    /// backend unless `options` forces one.
    pub fn at(
        dir: PathBuf,
        tmp: PathBuf,
        options: &SnapshotOptions,
    ) -> Result<Self, SnapshotError> {
        for d in [&dir, &tmp] {
            std::fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        let (backend, overlay_unavailable) = match options.backend {
            Some(backend) => (backend, None),
            None => {
                let scratch = Scratch::new(&tmp)?;
                match overlay::probe(scratch.path(), options.mount_api) {
                    Ok(()) => (Backend::Overlay, None),
                    Err(e) => (Backend::Copy, Some(error_chain(&e))),
                }
            }
        };
        Ok(Self {
            dir,
            tmp,
            backend,
            mount_api: options.mount_api,
            overlay_unavailable,
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why overlayfs is not used, when detection fell back to copying.
    pub fn overlay_unavailable(&self) -> Option<&str> {
        self.overlay_unavailable.as_deref()
    }

    /// The directory of the snapshot of `chain_id` (which may not exist yet).
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    /// Whether the snapshot of `chain_id` is unpacked.
    pub fn contains(&self, chain_id: &Digest) -> bool {
        self.path(chain_id).is_dir()
    }

    /// Unpacks the layer blob `blob` (gzip, zstd or plain tar) as the snapshot of `chain_id`,
    /// unless it already is; returns its directory. The blob is not read when the snapshot
    /// exists.
    pub fn prepare_layer<R: BufRead>(
        &self,
        chain_id: &Digest,
        blob: R,
    ) -> Result<PathBuf, SnapshotError> {
        let dest = self.path(chain_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let scratch = Scratch::with_prefix(&self.tmp, UNPACK_PREFIX)?;
        let root = scratch.path().join("layer");
        std::fs::create_dir(&root).map_err(io_err("create", &root))?;
        apply_blob(&root, blob, &ApplyOptions::new(ApplyMode::OverlayLower)).map_err(|source| {
            SnapshotError::Unpack {
                chain_id: chain_id.clone(),
                source,
            }
        })?;
        publish(&root, &dest)?;
        Ok(dest)
    }

    /// Unpacks every layer of `manifest` from `store` whose snapshot is missing (`diff_ids` are
    /// the config's, in the same order); returns the image's chain, bottom first, ready for
    /// [`Snapshots::mutable`].
    pub fn unpack_image(
        &self,
        store: &Store,
        manifest: &oci_spec::image::ImageManifest,
        diff_ids: &[Digest],
    ) -> Result<Vec<Digest>, SnapshotError> {
        if manifest.layers().len() != diff_ids.len() {
            return Err(SnapshotError::LayerCount {
                layers: manifest.layers().len(),
                diff_ids: diff_ids.len(),
            });
        }
        let chain = chain_ids(diff_ids);
        self.prepare_chain(store, manifest.layers(), &chain)?;
        Ok(chain)
    }

    /// Unpacks every layer of `layers` (descriptors of store blobs, bottom first) whose
    /// snapshot in `chain` (their chainIDs) is missing. Only those blobs are opened, so a layer
    /// not yet fetched ([`crate::store::remote`]) is fetched here, when a root needs it.
    pub fn prepare_chain(
        &self,
        store: &Store,
        layers: &[oci_spec::image::Descriptor],
        chain: &[Digest],
    ) -> Result<(), SnapshotError> {
        for (layer, chain_id) in layers.iter().zip(chain) {
            if self.contains(chain_id) {
                continue;
            }
            let blob_err = |source: crate::store::StoreError| SnapshotError::Blob {
                digest: layer.digest().to_string(),
                source: Box::new(source),
            };
            let digest = crate::image::from_oci_digest(layer.digest())
                .map_err(|e| blob_err(crate::store::StoreError::from(e)))?;
            let blob = store.open_blob(&digest).map_err(blob_err)?;
            self.prepare_layer(chain_id, io::BufReader::new(blob))?;
        }
        Ok(())
    }

    /// A writable root holding the stack of snapshots `chain` (chainIDs, bottom first; empty
    /// for `FROM scratch`).
    pub fn mutable(&self, chain: &[Digest]) -> Result<Mutable, SnapshotError> {
        let mut lowers = Vec::with_capacity(chain.len());
        for chain_id in chain {
            let path = self.path(chain_id);
            if !path.is_dir() {
                return Err(SnapshotError::Missing {
                    chain_id: chain_id.clone(),
                });
            }
            lowers.push(path);
        }
        let scratch = Scratch::new(&self.tmp)?;
        let parent = chain.last().cloned();
        let state = match self.backend {
            Backend::Overlay => {
                let upper = scratch.path().join("upper");
                let work = scratch.path().join("work");
                let merged = scratch.path().join("merged");
                for dir in [&upper, &work, &merged] {
                    std::fs::create_dir(dir).map_err(io_err("create", dir))?;
                }
                // The root directory of the RUN is the upperdir's: give it the stack's mode.
                if let Some(top) = lowers.last() {
                    let st = fsutil::lstat(top)
                        .map_err(io_err("stat", top))?
                        .ok_or_else(|| io_err("stat", top)(Errno::NOENT.into()))?;
                    fsutil::copy_meta(&upper, &st).map_err(io_err("set metadata of", &upper))?;
                }
                let mount = overlay::OverlayMount::mount(
                    &overlay::OverlayDirs {
                        lowers: &lowers,
                        upper: &upper,
                        work: &work,
                        merged: &merged,
                        scratch: scratch.path(),
                    },
                    self.mount_api,
                )?;
                State::Overlay {
                    mount,
                    upper,
                    merged,
                }
            }
            Backend::Copy => {
                let root = scratch.path().join("root");
                std::fs::create_dir(&root).map_err(io_err("create", &root))?;
                let manifest = copy::prepare(&root, &lowers, scratch.path())?;
                State::Copy { root, manifest }
            }
        };
        Ok(Mutable {
            state,
            parent,
            scratch,
        })
    }
}

/// Syncs the unpacked tree at `from` and renames it to `to` unless `to` exists.
fn publish(from: &Path, to: &Path) -> Result<(), SnapshotError> {
    let fd = rustix::fs::open(
        from,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open", from)(e.into()))?;
    // One syncfs instead of an fsync per file: the rename below must not become durable
    // before the contents.
    rustix::fs::syncfs(&fd).map_err(|e| io_err("sync", from)(e.into()))?;
    crate::store::crash::point(crate::store::crash::SNAPSHOT_UNPACKED);
    match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        // Another build unpacked the same chainID first: same content, keep theirs.
        Ok(()) | Err(Errno::EXIST) | Err(Errno::NOTEMPTY) => Ok(()),
        Err(e) => Err(io_err("rename into", to)(e.into())),
    }
}

/// A directory in the store's `tmp/`, removed with everything in it when dropped.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(tmp: &Path) -> Result<Self, SnapshotError> {
        Self::with_prefix(tmp, SCRATCH_PREFIX)
    }

    fn with_prefix(tmp: &Path, prefix: &str) -> Result<Self, SnapshotError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(tmp)
            .map_err(io_err("create a directory in", tmp))?;
        Ok(Self { path: dir.keep() })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Nothing to report to; gc removes what is left in tmp/.
        let _ = overlay::remove_scratch(&self.path);
    }
}

enum State {
    Overlay {
        mount: overlay::OverlayMount,
        upper: PathBuf,
        merged: PathBuf,
    },
    Copy {
        root: PathBuf,
        manifest: copy::Manifest,
    },
}

/// A writable root over a stack of snapshots, for one RUN. Dropping it without committing
/// unmounts and removes everything.
pub struct Mutable {
    // Declared before `scratch`: the overlay is unmounted before its directories are removed.
    state: State,
    parent: Option<Digest>,
    scratch: Scratch,
}

impl std::fmt::Debug for Mutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutable")
            .field("root", &self.root())
            .field("backend", &self.backend())
            .field("parent", &self.parent)
            .finish()
    }
}

impl Mutable {
    /// The root directory the RUN sees.
    pub fn root(&self) -> &Path {
        match &self.state {
            State::Overlay { merged, .. } => merged,
            State::Copy { root, .. } => root,
        }
    }

    /// How this root was made.
    pub fn backend(&self) -> Backend {
        match self.state {
            State::Overlay { .. } => Backend::Overlay,
            State::Copy { .. } => Backend::Copy,
        }
    }

    /// Ends the RUN: finds the change (the upperdir, or the comparison with the manifest) and
    /// writes it as a layer blob into `out`. Nothing may still be running in the root.
    pub fn commit<W: Write>(
        self,
        options: &CommitOptions,
        out: W,
    ) -> Result<Committed, SnapshotError> {
        let Mutable {
            state,
            parent,
            scratch,
        } = self;
        let diff = match state {
            State::Overlay {
                mut mount, upper, ..
            } => {
                mount.unmount()?;
                overlay::prune_upper(&upper, mount.lowers())?;
                upper
            }
            State::Copy { root, mut manifest } => {
                let staging = scratch.path().join("diff");
                std::fs::create_dir(&staging).map_err(io_err("create", &staging))?;
                copy::diff(&root, &mut manifest, &staging)?;
                staging
            }
        };
        let layer = write_layer(
            &diff,
            &LayerOptions {
                kind: ChangeKind::OverlayUpper,
                compression: options.compression,
                source_date_epoch: options.source_date_epoch,
            },
            out,
        )
        .map_err(|source| SnapshotError::Layer {
            path: diff.clone(),
            source,
        })?;
        let chain_id = chain_id(parent.as_ref(), &layer.diff_id);
        Ok(Committed {
            diff,
            layer,
            chain_id,
            scratch,
        })
    }
}

/// A change written as a layer; its change set can become the snapshot of its chainID.
#[derive(Debug)]
pub struct Committed {
    diff: PathBuf,
    layer: LayerInfo,
    chain_id: Digest,
    scratch: Scratch,
}

impl Committed {
    /// The layer written.
    pub fn layer(&self) -> &LayerInfo {
        &self.layer
    }

    /// The chainID of the stack with this layer on top.
    pub fn chain_id(&self) -> &Digest {
        &self.chain_id
    }

    /// The change set on disk (an upperdir), until the value is dropped.
    pub fn change_set(&self) -> &Path {
        &self.diff
    }

    /// Keeps the change set as the snapshot of [`Committed::chain_id`] (it is already in
    /// lowerdir form), so nothing needs unpacking to build on it; returns its directory.
    pub fn keep(self, snapshots: &Snapshots) -> Result<PathBuf, SnapshotError> {
        let dest = snapshots.path(&self.chain_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        overlay::strip_bookkeeping(&self.diff)?;
        publish(&self.diff, &dest)?;
        drop(self.scratch);
        Ok(dest)
    }
}
