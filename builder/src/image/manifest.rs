//! Manifests, indexes and descriptors: building them (OCI or Docker media types) and reading
//! them strictly.
//!
//! The types are `oci-spec`'s; bytes always go through [`canonical_json`](super::canonical_json),
//! because `oci-spec` keeps annotations in `HashMap`s. Invariants:
//!
//! - Platforms are always set field by field from values we were given, never from `oci-spec`'s
//!   defaults (which describe the host).
//! - Reading is the registry crate's reader ([`kiln_registry::manifest::parse_described`]), the
//!   one copy of the rules: OCI and Docker schema 2 manifests and indexes, refusing what would
//!   let the same bytes mean two things (both `manifests` and `layers`/`config`, a `mediaType`
//!   that contradicts the descriptor's, duplicate keys, trailing bytes) and digests other than
//!   sha256 (kiln cannot verify them, and must never turn them into paths).

use kiln_registry::Digest;
pub use kiln_registry::manifest::{
    DOCKER_LAYER_FOREIGN_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1_SIGNED,
    Document, is_index_media_type, is_manifest_media_type,
};
use oci_spec::image::{
    Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType,
    Platform,
};
use std::collections::BTreeMap;

use super::ImageError;

/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip-compressed layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (as `docker save` and containerd use it).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Which family of media types kiln writes: OCI by default, Docker schema 2 on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaTypes {
    /// `application/vnd.oci.*`.
    #[default]
    Oci,
    /// `application/vnd.docker.*` (Docker image manifest v2, schema 2).
    Docker,
}

impl MediaTypes {
    /// The image manifest media type.
    pub fn manifest(self) -> MediaType {
        match self {
            Self::Oci => MediaType::ImageManifest,
            Self::Docker => MediaType::Other(DOCKER_MANIFEST.to_owned()),
        }
    }

    /// The index (manifest list) media type.
    pub fn index(self) -> MediaType {
        match self {
            Self::Oci => MediaType::ImageIndex,
            Self::Docker => MediaType::Other(DOCKER_MANIFEST_LIST.to_owned()),
        }
    }

    /// The image config media type.
    pub fn config(self) -> MediaType {
        match self {
            Self::Oci => MediaType::ImageConfig,
            Self::Docker => MediaType::Other(DOCKER_CONFIG.to_owned()),
        }
    }

    /// The media type of `layer` in this family: the bytes are the same, only the label changes.
    ///
    /// Docker schema 2 has no zstd layer type, so a zstd layer cannot be written with Docker
    /// media types; that is an error rather than a mislabelled blob.
    pub fn convert_layer(self, layer: &MediaType) -> Result<MediaType, ImageError> {
        let kind = LayerKind::of(layer).ok_or_else(|| ImageError::NotALayer {
            media_type: layer.to_string(),
        })?;
        Ok(match (self, kind) {
            (Self::Oci, LayerKind::Tar) => MediaType::ImageLayer,
            (Self::Oci, LayerKind::Gzip) => MediaType::ImageLayerGzip,
            (Self::Oci, LayerKind::Zstd) => MediaType::ImageLayerZstd,
            (Self::Oci, LayerKind::ForeignGzip) => MediaType::ImageLayerNonDistributableGzip,
            (Self::Docker, LayerKind::Tar) => MediaType::Other(DOCKER_LAYER_TAR.to_owned()),
            (Self::Docker, LayerKind::Gzip) => MediaType::Other(DOCKER_LAYER_GZIP.to_owned()),
            (Self::Docker, LayerKind::ForeignGzip) => {
                MediaType::Other(DOCKER_LAYER_FOREIGN_GZIP.to_owned())
            }
            (Self::Docker, LayerKind::Zstd) => {
                return Err(ImageError::UnsupportedMediaType {
                    media_type: layer.to_string(),
                    reason: "Docker media types have no zstd layer; use OCI media types",
                });
            }
        })
    }
}

/// What a layer's bytes are, whatever family labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerKind {
    Tar,
    Gzip,
    Zstd,
    ForeignGzip,
}

impl LayerKind {
    fn of(media_type: &MediaType) -> Option<Self> {
        match media_type {
            MediaType::ImageLayer => Some(Self::Tar),
            MediaType::ImageLayerGzip => Some(Self::Gzip),
            MediaType::ImageLayerZstd => Some(Self::Zstd),
            MediaType::ImageLayerNonDistributableGzip => Some(Self::ForeignGzip),
            MediaType::Other(s) => match s.as_str() {
                DOCKER_LAYER_TAR => Some(Self::Tar),
                DOCKER_LAYER_GZIP => Some(Self::Gzip),
                DOCKER_LAYER_FOREIGN_GZIP => Some(Self::ForeignGzip),
                _ => None,
            },
            _ => None,
        }
    }
}

/// [`Digest::from_oci`] with the builder's error: refuses algorithms other than sha256.
pub fn from_oci_digest(digest: &oci_spec::image::Digest) -> Result<Digest, ImageError> {
    Digest::from_oci(digest).map_err(ImageError::Digest)
}

/// A descriptor with exactly these three fields.
pub fn descriptor(media_type: MediaType, digest: &Digest, size: u64) -> Descriptor {
    Descriptor::new(media_type, size, digest.to_oci())
}

/// A platform with every field given, nothing taken from the host.
///
/// There is deliberately no `os.version`: `oci-spec` 0.10 serialises that field as
/// `os_version` (and `os.features` as `os_features`), which no other tool reads, so kiln leaves
/// both unset. They only matter for Windows images.
pub fn platform(architecture: &str, os: &str, variant: Option<&str>) -> Platform {
    // Platform::default() reads the host; every field is overwritten below.
    let mut p = Platform::default();
    p.set_architecture(architecture.into());
    p.set_os(os.into());
    p.set_variant(variant.map(str::to_owned));
    p.set_os_version(None);
    p.set_os_features(None);
    p.set_features(None);
    p
}

/// An image manifest over a config and layers, labelled in the `media` family, with
/// `annotations` (none: no `annotations` field).
///
/// The config and layer descriptors are relabelled to match (see
/// [`MediaTypes::convert_layer`]).
pub fn build_manifest(
    config: &Descriptor,
    layers: &[Descriptor],
    media: MediaTypes,
    annotations: &BTreeMap<String, String>,
) -> Result<ImageManifest, ImageError> {
    let mut config = config.clone();
    config.set_media_type(media.config());
    let layers = layers
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l.set_media_type(media.convert_layer(l.media_type())?);
            Ok(l)
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(media.manifest())
        .config(config)
        .layers(layers)
        .build()
        .map_err(ImageError::Build)?;
    if !annotations.is_empty() {
        manifest.set_annotations(Some(annotations.clone().into_iter().collect()));
    }
    Ok(manifest)
}

/// An index over manifest descriptors (each should carry its platform).
pub fn build_index(manifests: &[Descriptor], media: MediaTypes) -> Result<ImageIndex, ImageError> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(media.index())
        .manifests(manifests.to_vec())
        .build()
        .map_err(ImageError::Build)
}

/// Reads a manifest or index from exactly these bytes.
///
/// `expected` is the media type the bytes were fetched as (the descriptor's); `None` when
/// unknown, in which case the document's own `mediaType` or, for old OCI documents without one,
/// its shape decides.
pub fn parse_document(bytes: &[u8], expected: Option<&MediaType>) -> Result<Document, ImageError> {
    let expected = expected.map(MediaType::as_ref);
    Ok(kiln_registry::manifest::parse_described(bytes, expected)?)
}

/// Reads an image manifest; an index is an error.
pub fn parse_manifest(
    bytes: &[u8],
    expected: Option<&MediaType>,
) -> Result<ImageManifest, ImageError> {
    match parse_document(bytes, expected)? {
        Document::Manifest(m) => Ok(*m),
        Document::Index(_) => Err(ImageError::UnexpectedIndex),
    }
}

/// Reads an index; an image manifest is an error.
pub fn parse_index(bytes: &[u8], expected: Option<&MediaType>) -> Result<ImageIndex, ImageError> {
    match parse_document(bytes, expected)? {
        Document::Index(i) => Ok(*i),
        Document::Manifest(_) => Err(ImageError::UnexpectedManifest),
    }
}

/// The image ID as `docker images` shows it: the config digest.
pub fn image_id(manifest: &ImageManifest) -> Result<Digest, ImageError> {
    from_oci_digest(manifest.config().digest())
}
