//! The store's error type: every I/O failure names its path and what kiln was doing.

use std::io;
use std::path::{Path, PathBuf};

use kiln_registry::Digest;

use crate::image::ImageError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What kiln was doing, e.g. `create directory`.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Content did not hash to the digest it was expected to have.
    #[error("digest mismatch: expected {expected}, got {found}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes actually seen.
        found: Digest,
    },
    /// Content did not have the size it was expected to have.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {found}")]
    SizeMismatch {
        /// The digest of the content concerned.
        digest: Digest,
        /// The size asked for.
        expected: u64,
        /// The size actually seen.
        found: u64,
    },
    /// A blob is not in the store.
    #[error("blob {digest} is not in the store")]
    MissingBlob {
        /// The blob's digest.
        digest: Digest,
    },
    /// A remote blob (one the store knows but does not hold) could not be fetched.
    #[error("blob {digest} is not fetched yet and cannot be fetched from {from}")]
    Fetch {
        /// The blob's digest.
        digest: Digest,
        /// Where it was to come from.
        from: String,
        /// Why it could not be fetched.
        #[source]
        error: kiln_registry::error::BoxError,
    },
    /// Indexes nest deeper than kiln follows.
    #[error("indexes nest more than {limit} deep under {digest}")]
    TooDeep {
        /// The index where kiln stopped.
        digest: Digest,
        /// How deep kiln follows.
        limit: usize,
    },
    /// A tag would point at an image whose content is not all in the store.
    #[error("cannot tag {name}: blob {missing} is missing")]
    Incomplete {
        /// The tag.
        name: String,
        /// The first missing blob.
        missing: Digest,
    },
    /// A blob is larger than kiln reads into memory for its kind.
    #[error("blob {digest} is larger than {limit} bytes")]
    TooLarge {
        /// The blob's digest.
        digest: Digest,
        /// The limit for that kind of blob.
        limit: u64,
    },
    /// A manifest, index or config blob in the store does not parse.
    #[error("blob {digest} is not a valid document")]
    BadDocument {
        /// The blob's digest.
        digest: Digest,
        /// The parser's complaint.
        #[source]
        source: ImageError,
    },
    /// `index.json` does not parse.
    #[error("corrupt store index {}", path.display())]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: ImageError,
    },
    /// The directory is an OCI layout of a version kiln does not know.
    #[error("unsupported OCI layout in {}: imageLayoutVersion {found:?}", path.display())]
    UnsupportedLayout {
        /// The `oci-layout` file.
        path: PathBuf,
        /// The version found.
        found: String,
    },
    /// A tag name kiln refuses to store.
    #[error("invalid tag name {name:?}")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The config's diffIDs and the layers given do not correspond one to one.
    #[error("image has {layers} layers but its config lists {diff_ids} diff_ids")]
    LayerCountMismatch {
        /// How many layer descriptors were given.
        layers: usize,
        /// How many diffIDs the config has.
        diff_ids: usize,
    },
    /// Garbage collection cannot run while a build holds a lease on the store.
    #[error("the store is in use by a running build; try again when it has finished")]
    Busy,
    /// Neither `XDG_DATA_HOME` nor `HOME` says where a user's store goes.
    #[error("cannot find a default store root: set KILN_ROOT, XDG_DATA_HOME or HOME")]
    NoHome,
    /// Building or reading an image document failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl StoreError {
    /// An [`StoreError::Io`] for `path`.
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
