//! Exporting an image's flattened root filesystem: as files in a directory (`kiln build
//! --output type=local`) or as one tar stream (`type=tar`). The image formats (`type=oci`,
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
use crate::layer::{ApplyError, ApplyMode, ApplyOptions, LayerError, TarBuilder, apply_blob};
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
    let tmp = store.tmp_dir();
    let create_err = |source| ExportError::CreateDir {
        path: tmp.clone(),
        source,
    };
    std::fs::create_dir_all(&tmp).map_err(create_err)?;
    let scratch = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempdir_in(&tmp)
        .map_err(create_err)?;
    let stats = flatten(store, manifest, scratch.path())?;
    let mut tar = TarBuilder::new(out);
    tar.append_contents(scratch.path(), b"", &mut |_| true, &mut |_| {})
        .map_err(ExportError::Tar)?;
    let out = tar.finish().map_err(ExportError::Tar)?;
    Ok((out, stats))
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
