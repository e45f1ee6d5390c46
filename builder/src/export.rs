//! Exporting an image's flattened root filesystem: as files in a directory (`kiln build
//! --output type=local`) or as one tar stream (`type=tar`); a multi-platform image's as one
//! directory per platform ([`write_image_rootfs`]). The image formats (`type=oci`,
//! `type=docker`) are [`crate::archive::save`]'s.
//!
//! The root filesystem is made by applying the image's layers, bottom first, with the safe
//! applier in [`ApplyMode::Merge`]: whiteouts delete what lower layers wrote and opaque
//! directories hide it, so the result is what a container of the image sees. The applier
//! resolves every path inside the destination, so no symlink in the image (or already in the
//! destination) leads a write outside it. A tar export flattens into a scratch directory in the
//! store's `tmp/` (removed afterwards) and streams it with the layer writer's tar builder: entries
//! sorted by path bytes, explicit numeric headers, PAX where ustar cannot hold a field, hard links
//! kept. The same image gives the same bytes.
//!
//! Owners are the image's when running as root; otherwise every file belongs to the caller (the
//! applier cannot chown) and device nodes are skipped, as [`ExportStats`] reports.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use kiln_registry::Digest;
use oci_spec::image::Descriptor;

use crate::image::{self, ImageError};
use crate::layer::{
    ApplyError, ApplyMode, ApplyOptions, EntryHeader, EntryKind, LayerError, TarBuilder, apply_blob,
};
use crate::store::{Store, StoreError};

/// Prefix of the scratch directories tar exports flatten into, in the store's `tmp/`.
const SCRATCH_PREFIX: &str = "export-";

/// What an export did, for the caller to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Layers applied.
    pub layers: usize,
    /// Device nodes not created because the process may not create them (paths inside the
    /// root filesystem).
    pub skipped_devices: Vec<PathBuf>,
}

/// Why an image's root filesystem could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The image could not be read from the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer descriptor's digest is malformed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The destination directory (or the scratch directory) could not be created.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A layer could not be applied.
    #[error("applying layer {digest}")]
    Apply {
        /// The layer blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: ApplyError,
    },
    /// The flattened tree could not be written as a tar.
    #[error("writing the root filesystem tar")]
    Tar(#[source] LayerError),
}

/// Writes the root filesystem of the image whose manifest is `manifest` (in `store`) into the
/// directory `dest`, creating it when missing. Files already in `dest` stay unless the image
/// replaces them (or a whiteout deletes them).
pub fn write_rootfs(
    store: &Store,
    manifest: &Descriptor,
    dest: &Path,
) -> Result<ExportStats, ExportError> {
    // Keeps the image's blobs from being collected while they are read.
    let _lease = store.lease()?;
    std::fs::create_dir_all(dest).map_err(|source| ExportError::CreateDir {
        path: dest.to_owned(),
        source,
    })?;
    flatten(store, manifest, dest)
}

/// Streams the root filesystem of the image whose manifest is `manifest` (in `store`) into
/// `out` as one deterministic tar; returns `out` and what was done.
pub fn write_rootfs_tar<W: Write>(
    store: &Store,
    manifest: &Descriptor,
    out: W,
) -> Result<(W, ExportStats), ExportError> {
    let _lease = store.lease()?;
    let scratch = scratch_dir(store)?;
    let stats = flatten(store, manifest, scratch.path())?;
    let mut tar = TarBuilder::new(out);
    tar.append_contents(scratch.path(), b"", &mut |_| true, &mut |_| {})
        .map_err(ExportError::Tar)?;
    let out = tar.finish().map_err(ExportError::Tar)?;
    Ok((out, stats))
}

/// [`write_rootfs`] for what a tag points at: a manifest's root filesystem in `dest`, or each
/// platform's of an index in its own subdirectory named after the platform (`linux_arm64`,
/// `linux_arm_v7`: buildx's layout for a multi-platform `type=local`).
pub fn write_image_rootfs(
    store: &Store,
    root: &Descriptor,
    dest: &Path,
) -> Result<ExportStats, ExportError> {
    if !image::is_index_media_type(root.media_type()) {
        return write_rootfs(store, root, dest);
    }
    let mut stats = ExportStats::default();
    for (platform, manifest) in store.platform_manifests(root)? {
        let dir = platform.dir_name();
        let done = write_rootfs(store, &manifest, &dest.join(&dir))?;
        stats.add(done, &dir);
    }
    Ok(stats)
}

/// [`write_rootfs_tar`] for what a tag points at: an index's platforms each under a top
/// directory named after the platform, as [`write_image_rootfs`] lays them out.
pub fn write_image_rootfs_tar<W: Write>(
    store: &Store,
    root: &Descriptor,
    out: W,
) -> Result<(W, ExportStats), ExportError> {
    if !image::is_index_media_type(root.media_type()) {
        return write_rootfs_tar(store, root, out);
    }
    let _lease = store.lease()?;
    let mut tar = TarBuilder::new(out);
    let mut stats = ExportStats::default();
    for (platform, manifest) in store.platform_manifests(root)? {
        let dir = platform.dir_name();
        let mut header = EntryHeader::new(dir.clone().into_bytes(), EntryKind::Dir);
        header.mode = 0o755;
        tar.append_header(header, &[]).map_err(ExportError::Tar)?;
        // One platform flattened at a time: the scratch space is one root filesystem's.
        let scratch = scratch_dir(store)?;
        let done = flatten(store, &manifest, scratch.path())?;
        tar.append_contents(scratch.path(), dir.as_bytes(), &mut |_| true, &mut |_| {})
            .map_err(ExportError::Tar)?;
        stats.add(done, &dir);
    }
    let out = tar.finish().map_err(ExportError::Tar)?;
    Ok((out, stats))
}

impl ExportStats {
    /// Adds what exporting one platform into `dir` did.
    fn add(&mut self, other: ExportStats, dir: &str) {
        self.layers += other.layers;
        self.skipped_devices.extend(
            other
                .skipped_devices
                .into_iter()
                .map(|p| Path::new(dir).join(p)),
        );
    }
}

/// A scratch directory in the store's `tmp/` (removed when dropped).
fn scratch_dir(store: &Store) -> Result<tempfile::TempDir, ExportError> {
    let tmp = store.tmp_dir();
    let create_err = |source| ExportError::CreateDir {
        path: tmp.clone(),
        source,
    };
    std::fs::create_dir_all(&tmp).map_err(create_err)?;
    tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempdir_in(&tmp)
        .map_err(create_err)
}

/// Applies the image's layers, bottom first, onto `root`.
fn flatten(store: &Store, manifest: &Descriptor, root: &Path) -> Result<ExportStats, ExportError> {
    let manifest = store.read_manifest(manifest)?;
    let options = ApplyOptions::new(ApplyMode::Merge);
    let mut stats = ExportStats::default();
    for layer in manifest.layers() {
        let digest = image::from_oci_digest(layer.digest())?;
        let blob = store.open_blob(&digest)?;
        let applied = apply_blob(root, BufReader::new(blob), &options)
            .map_err(|source| ExportError::Apply { digest, source })?;
        stats.layers += 1;
        stats.skipped_devices.extend(applied.skipped_devices);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests;
