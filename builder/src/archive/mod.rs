//! Tar archives at the edges of the store: rootfs tarballs imported as one-layer images
//! ([`import_layer`]), and whole images saved to and loaded from `oci-archive` and
//! `docker-archive` files ([`save`], [`load_path`], [`load_reader`]).
//!
//! Invariants:
//!
//! - Nothing is half-written: a saved archive is written to a temporary file beside its
//!   destination and renamed into place only when complete, and every blob it holds is re-hashed
//!   on the way out. Loading verifies every blob's digest (and, for docker archives, every
//!   layer's diffID against the config) before anything is tagged.
//! - Saved archives are deterministic: entries sorted by path, numeric owner 0, mode 0644 (0755
//!   for directories), mtime 0. The same images give the same bytes.
//! - Paths inside archives being loaded are never used on the filesystem: they are map keys,
//!   cleaned lexically, and one that climbs out of the archive (`..`) is an error. JSON files
//!   read into memory are size-bounded.

mod load;
mod rootfs;
mod save;
mod tarcheck;
mod tarout;

#[cfg(test)]
mod tests;

use std::io::{self, Read};
use std::path::PathBuf;

use kiln_registry::{Digest, ReferenceError};
use oci_spec::image::MediaType;

use crate::image::ImageError;
use crate::layer::LayerError;
use crate::store::StoreError;

pub use load::{Loaded, load_path, load_reader};
pub use rootfs::import_layer;
pub use save::{SaveImage, save};
pub use tarcheck::{MAX_PAX_BYTES, TarCheck, TarCheckError, TarCheckReader};

/// The annotation containerd and BuildKit put the full image name in.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The two archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A tar of an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`), with each
    /// image's name in `org.opencontainers.image.ref.name` and `io.containerd.image.name`.
    OciArchive,
    /// `docker save`'s format: `manifest.json` (`Config`, `RepoTags`, `Layers`), the config as
    /// `<hex>.json`, and each layer as an uncompressed `<diffID hex>.tar`.
    DockerArchive,
}

/// Why an archive could not be imported, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A filesystem operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An image document could not be built or read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Writing or reading a layer failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The input is compressed in a format kiln does not decompress.
    #[error("the input is {compression}-compressed, which kiln does not read; decompress it first")]
    UnsupportedCompression {
        /// `bzip2` or `xz`.
        compression: &'static str,
    },
    /// A rootfs tarball is not a tar archive (or is cut short).
    #[error("the input is not a valid tar archive")]
    NotATar(#[source] TarCheckError),
    /// An archive to load is neither format.
    #[error(
        "not an image archive: it has neither index.json (oci-archive) nor manifest.json (docker-archive)"
    )]
    UnknownFormat,
    /// An entry the archive refers to is not in it.
    #[error("the archive has no entry {path:?}")]
    MissingEntry {
        /// The path, as referred to.
        path: String,
    },
    /// An entry path climbs out of the archive.
    #[error("archive path {path:?} leaves the archive")]
    PathEscapes {
        /// The path.
        path: String,
    },
    /// Symbolic or hard links inside the archive nest too deeply or loop.
    #[error("archive links starting at {path:?} nest too deeply")]
    LinkLoop {
        /// The first link.
        path: String,
    },
    /// An entry is not a regular file where one is needed.
    #[error("archive entry {path:?} is not a regular file")]
    NotAFile {
        /// The entry.
        path: String,
    },
    /// A metadata file is larger than kiln reads into memory.
    #[error("archive entry {path:?} is larger than {limit} bytes")]
    TooLarge {
        /// The entry.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// A JSON file in the archive does not parse.
    #[error("invalid JSON in archive entry {path:?}")]
    Json {
        /// The entry.
        path: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// `oci-layout` names a version kiln does not know.
    #[error("unsupported OCI layout version {found:?} in the archive")]
    LayoutVersion {
        /// What the archive says.
        found: String,
    },
    /// A blob in an OCI archive does not hash to its name.
    #[error("archive blob {path:?} does not match its digest")]
    BlobMismatch {
        /// The entry.
        path: String,
        /// What it hashes to.
        #[source]
        source: StoreError,
    },
    /// A docker-archive layer's uncompressed digest differs from the config's diffID.
    #[error("layer {path:?} has diffID {found}, but the image config says {expected}")]
    DiffIdMismatch {
        /// The layer entry.
        path: String,
        /// The config's diffID.
        expected: Digest,
        /// The layer's.
        found: Digest,
    },
    /// A docker-archive image lists a different number of layers than its config.
    #[error("image {config:?} lists {layers} layers but its config has {diff_ids} diff_ids")]
    LayerCount {
        /// The config entry.
        config: String,
        /// Layers in `manifest.json`.
        layers: usize,
        /// diffIDs in the config.
        diff_ids: usize,
    },
    /// An image in the archive has no name to tag it with.
    #[error(
        "image {digest} in the archive has no name (no RepoTags, io.containerd.image.name or org.opencontainers.image.ref.name); kiln loads named images only"
    )]
    Unnamed {
        /// Its manifest (OCI) or config (docker) digest.
        digest: Digest,
    },
    /// A name in the archive is not a valid image reference.
    #[error("invalid image name {name:?} in the archive")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: ReferenceError,
    },
    /// An image in a docker archive must be an image manifest or an index with one.
    #[error("{name}: a docker-archive holds images, and this has no image manifest")]
    IndexInDockerArchive {
        /// The image.
        name: String,
    },
    /// A blob the image needs could not be written to the archive.
    #[error("cannot save blob {digest}")]
    SaveBlob {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    /// An [`ArchiveError::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// How many bytes [`refuse_unsupported_compression`] looks at.
const MAGIC_LEN: usize = 10;

/// Reads up to `n` bytes from the start of `reader` (fewer only at end of input).
fn read_head(reader: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    reader.by_ref().take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Refuses the compressions kiln does not decompress, by magic bytes.
fn refuse_unsupported_compression(head: &[u8]) -> Result<(), ArchiveError> {
    const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
    // "BZh", the block size digit, then the block magic (BCD pi): ten bytes, so a tar whose
    // first file is named "BZh…" is not mistaken for bzip2.
    const BZIP2_BLOCK: &[u8] = &[0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
    if head.starts_with(XZ) {
        return Err(ArchiveError::UnsupportedCompression { compression: "xz" });
    }
    if head.len() >= 10
        && head.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && &head[4..10] == BZIP2_BLOCK
    {
        return Err(ArchiveError::UnsupportedCompression {
            compression: "bzip2",
        });
    }
    Ok(())
}

/// Whether `head` starts with gzip's or zstd's magic bytes.
fn is_compressed(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// Whether a layer media type is non-distributable ("foreign"): such a layer may be absent
/// from a store or an archive, and stays absent.
fn is_non_distributable(media_type: &MediaType) -> bool {
    matches!(
        media_type,
        MediaType::ImageLayerNonDistributable
            | MediaType::ImageLayerNonDistributableGzip
            | MediaType::ImageLayerNonDistributableZstd
    ) || matches!(media_type, MediaType::Other(s) if s == crate::image::manifest::DOCKER_LAYER_FOREIGN_GZIP)
}
