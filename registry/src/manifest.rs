//! Manifests and indexes as they travel: media types, the `Accept` list, and strict reading of
//! exactly the bytes whose digest was verified.
//!
//! The client needs to know what a document references (an index's manifests, a manifest's
//! config and layers) to pull or push it, and it must not be fooled into reading the same bytes
//! two ways (CVE-2021-41190). So a document is refused when it has both `manifests` and
//! `layers`/`config`, when its own `mediaType` contradicts the one it was served or described
//! as, when a key kiln relies on appears twice, when its `schemaVersion` is not 2, when it is
//! Docker schema 1, or when it names a digest kiln cannot verify. This is the one reader: the
//! builder reads its store, archives and pulled documents through [`parse_described`], the wire
//! through [`parse`] (which is only more lenient about a `Content-Type`).

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::digest::{Digest, DigestError};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 (obsolete; refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Signed Docker schema 1 (obsolete; refused).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker "foreign" (non-distributable) gzip layer.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The `Accept` header for manifest requests: every type kiln reads, preferred first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest kiln reads or pushes: registries must accept 4 MiB, and distribution
/// refuses to serve more (distribution#4636), so a bigger push would be unpullable.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Media types of layers that must not be pushed (their content lives elsewhere).
const NON_DISTRIBUTABLE: &[&str] = &[
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    DOCKER_LAYER_FOREIGN_GZIP,
];

/// Why a document cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not valid JSON for the document (duplicate keys and trailing data included).
    #[error("invalid {what} JSON")]
    Json {
        /// `manifest` or `index`.
        what: &'static str,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// Both `manifests` and `layers`/`config`, or a shape that contradicts the media type.
    #[error("ambiguous document: it could be read both as a manifest and as an index")]
    Ambiguous,
    /// The document's `mediaType` differs from the one it was served or described as.
    #[error("media type mismatch: expected {expected}, document says {found}")]
    MediaTypeMismatch {
        /// The served or described media type.
        expected: String,
        /// The document's own.
        found: String,
    },
    /// A media type that is not a manifest or index kiln reads.
    #[error("unsupported manifest media type {0}")]
    Unsupported(String),
    /// Docker schema 1, which kiln refuses.
    #[error("unsupported media type {0}: Docker schema 1 manifests are obsolete")]
    Schema1(String),
    /// Neither a media type nor the shape says what the document is.
    #[error("document is neither a manifest nor an index")]
    Unrecognised,
    /// `schemaVersion` is missing or not 2.
    #[error("unsupported schemaVersion {0:?}: expected 2")]
    SchemaVersion(Option<u32>),
    /// A descriptor names a digest kiln cannot verify.
    #[error("unusable digest in document")]
    Digest(#[source] DigestError),
}

/// What a manifest or index document is, read from verified bytes (boxed: the two differ a lot
/// in size).
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// An image manifest (OCI or Docker schema 2).
    Manifest(Box<ImageManifest>),
    /// An index or Docker manifest list.
    Index(Box<ImageIndex>),
}

impl Document {
    /// The blobs an image manifest needs (config first, then layers, skipping layers that must
    /// not be distributed); an index's manifests.
    pub fn children(&self) -> Vec<Descriptor> {
        match self {
            Self::Manifest(m) => std::iter::once(m.config().clone())
                .chain(
                    m.layers()
                        .iter()
                        .filter(|l| !is_non_distributable(l.media_type()))
                        .cloned(),
                )
                .collect(),
            Self::Index(i) => i.manifests().clone(),
        }
    }

    /// Every descriptor in the document: config and layers, or an index's manifests.
    fn descriptors(&self) -> Vec<&Descriptor> {
        match self {
            Self::Manifest(m) => std::iter::once(m.config()).chain(m.layers()).collect(),
            Self::Index(i) => i.manifests().iter().collect(),
        }
    }
}

/// Whether a layer media type is one that registries do not store (Windows "foreign" layers).
pub fn is_non_distributable(media_type: &MediaType) -> bool {
    NON_DISTRIBUTABLE.contains(&media_type.as_ref())
}

/// Whether a media type (a `str` or `oci-spec`'s `MediaType`) names an image manifest, OCI or
/// Docker schema 2.
pub fn is_manifest_media_type(media_type: &(impl AsRef<str> + ?Sized)) -> bool {
    let m = media_type.as_ref();
    m == OCI_MANIFEST || m == DOCKER_MANIFEST
}

/// Whether a media type names an index (OCI index or Docker manifest list).
pub fn is_index_media_type(media_type: &(impl AsRef<str> + ?Sized)) -> bool {
    let m = media_type.as_ref();
    m == OCI_INDEX || m == DOCKER_MANIFEST_LIST
}

fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED
}

/// Just enough of a document to decide what it is. Deriving `Deserialize` makes a repeated key
/// among these an error.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
    config: Option<IgnoredAny>,
    fs_layers: Option<IgnoredAny>,
}

/// Reads a manifest or index from exactly these bytes, as a registry served them. `served` is the
/// `Content-Type`: its parameters are dropped, and a type that is not a manifest type (some
/// registries say `application/json`) is ignored, so the document's own `mediaType` or shape
/// decides. Otherwise as [`parse_described`].
pub fn parse(bytes: &[u8], served: Option<&str>) -> Result<Document, ManifestError> {
    let served = served
        .map(|s| s.split(';').next().unwrap_or_default().trim())
        .filter(|s| is_manifest_media_type(*s) || is_index_media_type(*s) || is_schema1(s));
    parse_described(bytes, served)
}

/// Reads a manifest or index from exactly these bytes, described as `media_type` (a descriptor's,
/// taken as written: a type that is not a manifest or index type is an error). With `None` the
/// document's own `mediaType` or, for old OCI documents without one, its shape decides.
pub fn parse_described(bytes: &[u8], media_type: Option<&str>) -> Result<Document, ManifestError> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "manifest",
        source,
    })?;
    let has_manifest_fields = probe.layers.is_some() || probe.config.is_some();
    if probe.manifests.is_some() && has_manifest_fields {
        return Err(ManifestError::Ambiguous);
    }
    let declared = probe.media_type.as_deref();
    if let Some(m) = [media_type, declared]
        .into_iter()
        .flatten()
        .find(|m| is_schema1(m))
    {
        return Err(ManifestError::Schema1(m.to_owned()));
    }
    if probe.fs_layers.is_some() {
        return Err(ManifestError::Schema1(DOCKER_SCHEMA1.to_owned()));
    }
    if let (Some(e), Some(d)) = (media_type, declared)
        && e != d
    {
        return Err(ManifestError::MediaTypeMismatch {
            expected: e.to_owned(),
            found: d.to_owned(),
        });
    }
    let is_index = match media_type.or(declared) {
        Some(m) if is_index_media_type(m) => true,
        Some(m) if is_manifest_media_type(m) => false,
        Some(m) => return Err(ManifestError::Unsupported(m.to_owned())),
        None if probe.manifests.is_some() => true,
        None if has_manifest_fields => false,
        None => return Err(ManifestError::Unrecognised),
    };
    // The shape must agree with the name: a "manifest" with a manifests list, or an "index" with
    // layers or a config, is the ambiguity CVE-2021-41190 is about. (A document merely missing
    // its required fields fails the typed parse below.)
    if (is_index && has_manifest_fields) || (!is_index && probe.manifests.is_some()) {
        return Err(ManifestError::Ambiguous);
    }
    if probe.schema_version != Some(2) {
        return Err(ManifestError::SchemaVersion(probe.schema_version));
    }
    let doc = if is_index {
        let index: ImageIndex =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
                what: "index",
                source,
            })?;
        Document::Index(Box::new(index))
    } else {
        let manifest: ImageManifest =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
                what: "manifest",
                source,
            })?;
        Document::Manifest(Box::new(manifest))
    };
    // Every digest, non-distributable layers' too: none may become a path unverified.
    for desc in doc.descriptors() {
        Digest::from_oci(desc.digest()).map_err(ManifestError::Digest)?;
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn manifest(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D}","size":0}},{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D}","size":0,"urls":["https://x"]}}]}}"#
        )
    }

    fn index(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        )
    }

    #[test]
    fn parse_table() {
        let m = manifest(Some(OCI_MANIFEST));
        let dm = manifest(Some(DOCKER_MANIFEST));
        let bare = manifest(None);
        let i = index(Some(OCI_INDEX));
        let bare_index = index(None);
        let both = format!(
            r#"{{"schemaVersion":2,"manifests":[],"layers":[],"config":{{"mediaType":"x","digest":"{D}","size":0}}}}"#
        );
        let dup = m.replacen(
            "\"schemaVersion\":2,",
            "\"schemaVersion\":2,\"schemaVersion\":2,",
            1,
        );
        let v1 = m.replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        let sha512 = m.replace(
            D,
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
        );
        let trailing = format!("{m} x");
        let cases: &[(&str, Option<&str>, &str)] = &[
            (&m, Some(OCI_MANIFEST), "manifest 1"),
            (&m, None, "manifest 1"),
            (&m, Some("application/json"), "manifest 1"),
            (
                &m,
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                "manifest 1",
            ),
            (&dm, Some(DOCKER_MANIFEST), "manifest 1"),
            (&bare, Some(OCI_MANIFEST), "manifest 1"),
            (&bare, None, "manifest 1"),
            (&i, Some(OCI_INDEX), "index 1"),
            (&bare_index, None, "index 1"),
            (&m, Some(OCI_INDEX), "mismatch"),
            (&dm, Some(OCI_MANIFEST), "mismatch"),
            (&bare, Some(OCI_INDEX), "ambiguous"),
            (&bare_index, Some(OCI_MANIFEST), "ambiguous"),
            (&both, None, "ambiguous"),
            (&dup, None, "json"),
            (&trailing, None, "json"),
            (&v1, None, "schema"),
            (&sha512, None, "digest"),
            (r#"{"schemaVersion":1,"fsLayers":[]}"#, None, "schema 1"),
            (&m, Some(DOCKER_SCHEMA1_SIGNED), "schema 1"),
            (
                &m.replace(OCI_MANIFEST, "text/plain"),
                None,
                "not a manifest",
            ),
            (r#"{"schemaVersion":2}"#, None, "unrecognised"),
            ("[]", None, "json"),
        ];
        for (bytes, served, expected) in cases {
            let got = match parse(bytes.as_bytes(), *served) {
                Ok(doc @ Document::Manifest(_)) => format!("manifest {}", doc.children().len() - 1),
                Ok(doc @ Document::Index(_)) => format!("index {}", doc.children().len()),
                Err(ManifestError::MediaTypeMismatch { .. }) => "mismatch".into(),
                Err(ManifestError::Ambiguous) => "ambiguous".into(),
                Err(ManifestError::Json { .. }) => "json".into(),
                Err(ManifestError::SchemaVersion(_)) => "schema".into(),
                Err(ManifestError::Digest(_)) => "digest".into(),
                Err(ManifestError::Unsupported(_)) => "not a manifest".into(),
                Err(ManifestError::Schema1(_)) => "schema 1".into(),
                Err(ManifestError::Unrecognised) => "unrecognised".into(),
            };
            assert_eq!(got, *expected, "{bytes} as {served:?}");
        }
        // A descriptor's media type is taken as written.
        assert!(matches!(
            parse_described(m.as_bytes(), Some("application/json")),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            parse_described(bare.as_bytes(), Some("application/json")),
            Err(ManifestError::Unsupported(_))
        ));
    }
}
