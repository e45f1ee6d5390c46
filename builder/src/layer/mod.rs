//! Layers: a change set on disk → a deterministic OCI layer tar, compressed and hashed in one
//! streaming pass; and the reverse, applying a (possibly hostile) layer tar onto a root.
//!
//! The writer ([`write_layer`]) walks a change set in a fixed order, builds every tar header
//! explicitly (numeric ids, no user names, no atime/ctime, PAX for what ustar cannot hold) and
//! streams the bytes through `sha256` (the diffID), the compressor and `sha256` again (the blob
//! digest). Nothing is buffered beyond a few compression blocks, so a layer is never held in
//! memory. The same bytes come out on every machine, whatever the directory order on disk or the
//! number of cores, as long as the compression backend is the pinned one (see
//! `shared/research/ecosystem.md` §3.2: compressed digests depend on the backend; cache keys must
//! use the diffID).
//!
//! The applier ([`apply_layer`]) resolves every path inside the root with
//! `openat2(RESOLVE_IN_ROOT)` and `*at` calls that never follow the final component, so a tar
//! cannot write, chmod, link or delete outside the root, whatever symlinks it or the root holds.

mod apply;
mod apply_fs;
mod compress;
mod entry;
mod header;
mod walk;
mod writer;

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod tarcraft;
#[cfg(test)]
mod writer_tests;

use std::io;
use std::path::PathBuf;

pub use apply::{
    ApplyError, ApplyMode, ApplyOptions, ApplyStats, EntryError, apply_blob, apply_layer,
};
pub use compress::{CompressWriter, Decompressor, GZIP_LEVEL, ZSTD_LEVEL, decompress};
pub use writer::{diff_id_of, layer_from_tar, write_layer};

pub use apply_fs::RootFileError;
pub(crate) use apply_fs::{Root, open_in_root, proc_path};
pub(crate) use header::{EntryHeader, Kind as EntryKind};
pub(crate) use walk::read_xattrs;
pub(crate) use writer::TarBuilder;

/// Media type of an uncompressed OCI layer.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Media type of a gzip-compressed OCI layer.
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of a zstd-compressed OCI layer.
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// gzip (the default: every runtime can pull it).
    Gzip,
    /// zstd (smaller and faster; needs containerd ≥ 1.5 / Docker ≥ 23 to pull).
    Zstd,
    /// No compression: the blob is the tar itself.
    None,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => MEDIA_TYPE_TAR_GZIP,
            Compression::Zstd => MEDIA_TYPE_TAR_ZSTD,
            Compression::None => MEDIA_TYPE_TAR,
        }
    }
}

/// What kind of directory a change set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A plain directory: every entry is an addition.
    Tree,
    /// An overlayfs upperdir: 0/0 character devices are deletions and directories marked
    /// `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`) hide everything below them.
    OverlayUpper,
}

/// How to write a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    /// What the change set directory is.
    pub kind: ChangeKind,
    /// How to compress the blob.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: modification times after it are written as it.
    pub source_date_epoch: Option<i64>,
}

/// What a written layer is: the identifiers an image config and manifest need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (the image config's `rootfs.diff_ids`).
    pub diff_id: kiln_registry::Digest,
    /// sha256 of the blob as stored and pushed (the manifest's layer descriptor).
    pub digest: kiln_registry::Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// The OCI media type of the blob.
    pub media_type: &'static str,
}

/// Why a layer could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A change-set entry could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The entry on disk.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file's size or identity changed while it was being archived.
    #[error("{} changed while it was being archived", path.display())]
    Changed {
        /// The entry on disk.
        path: PathBuf,
    },
    /// A change-set entry is named like a whiteout, which an image cannot contain.
    #[error("{}: names starting with .wh. are reserved for whiteouts", path.display())]
    ReservedName {
        /// The entry on disk.
        path: PathBuf,
    },
    /// An overlay upperdir uses a feature whose changes cannot be expressed as a layer
    /// (a renamed directory or a metadata-only copy-up).
    #[error("{}: overlay attribute {xattr} is not supported (mount with redirect_dir=off, metacopy=off)", path.display())]
    UnsupportedOverlay {
        /// The entry on disk.
        path: PathBuf,
        /// The overlay attribute found.
        xattr: String,
    },
    /// An extended attribute name cannot be carried in a PAX record.
    #[error("{}: extended attribute name {name:?} cannot be stored in a tar", path.display())]
    XattrName {
        /// The entry on disk.
        path: PathBuf,
        /// The name, lossily decoded.
        name: String,
    },
    /// Writing the tar, the compressor or the output failed.
    #[error("writing the layer")]
    Write(#[source] io::Error),
    /// Reading or decompressing a tar or blob failed.
    #[error("reading the layer stream")]
    Stream(#[source] io::Error),
}
