//! The image model kiln writes and reads: config, history, manifest, index, and the clock.
//!
//! - [`config`]: our own image config type, a superset of Docker's (DESIGN decision 5).
//! - [`manifest`]: manifests, indexes and descriptors (`oci-spec` types), OCI or Docker media
//!   types, and strict reading of pulled documents.
//! - [`clock`]: the one clock, honouring `SOURCE_DATE_EPOCH`.
//!
//! Everything kiln writes and hashes goes through [`canonical_json`]: compact JSON with every
//! object's keys sorted, so the same value always has the same digest whatever map type (or
//! `HashMap` iteration order) produced it.

pub mod annotation;
pub mod clock;
pub mod config;
pub mod manifest;

#[cfg(test)]
mod tests;

use serde::Serialize;

pub use clock::{ClockError, Timestamp};
pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs, chain_id, chain_ids};
pub use manifest::{
    Document, MediaTypes, build_index, build_manifest, descriptor, from_oci_digest, image_id,
    is_index_media_type, is_manifest_media_type, parse_document, parse_index, parse_manifest,
    platform,
};

/// Why an image document could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A manifest or index that cannot be read (the registry crate's reader, the one copy of
    /// the rules).
    #[error(transparent)]
    Manifest(#[from] kiln_registry::manifest::ManifestError),
    /// The bytes are not valid JSON for the document (this includes duplicate keys and
    /// trailing data).
    #[error("invalid {what} JSON")]
    Json {
        /// Which document was being read.
        what: &'static str,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be turned into JSON.
    #[error("cannot serialise to JSON")]
    Serialize(#[source] serde_json::Error),
    /// A media type kiln recognises but will not handle.
    #[error("unsupported media type {media_type}: {reason}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A media type that is neither a manifest nor an index where one was needed.
    #[error("{media_type} is not a manifest or index media type")]
    NotAManifest {
        /// The media type.
        media_type: String,
    },
    /// A media type that is not a layer where a layer was needed.
    #[error("{media_type} is not a layer media type")]
    NotALayer {
        /// The media type.
        media_type: String,
    },
    /// An index was found where an image manifest was needed.
    #[error("expected an image manifest, found an index")]
    UnexpectedIndex,
    /// An image manifest was found where an index was needed.
    #[error("expected an index, found an image manifest")]
    UnexpectedManifest,
    /// A digest kiln cannot verify (not sha256) or that is malformed.
    #[error("unusable digest")]
    Digest(#[source] kiln_registry::DigestError),
    /// `oci-spec` refused to build a document.
    #[error("cannot build OCI document")]
    Build(#[source] oci_spec::OciSpecError),
}

/// The one serialisation kiln writes and hashes: compact JSON, object keys sorted.
///
/// Going through `serde_json::Value` sorts keys because `serde_json`'s map is a `BTreeMap` as
/// long as its `preserve_order` feature is off in the whole dependency graph; the tests pin a
/// digest so turning it on would be caught.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ImageError> {
    let value = serde_json::to_value(value).map_err(ImageError::Serialize)?;
    serde_json::to_vec(&value).map_err(ImageError::Serialize)
}
