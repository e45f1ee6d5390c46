//! The exported cache format, version 2: an OCI artifact that any OCI registry or image layout
//! directory stores.
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json, schemaVersion 2
//!           artifactType  application/vnd.kiln.cache.v1+json
//!           config        application/vnd.kiln.cache.config.v1+json (the records below)
//!           layers        every layer blob a record names, once, sorted by digest, with the
//!                         standard layer media types (…layer.v1.tar+gzip / +zstd), so that
//!                         registries keep them and their garbage collection does not take them
//! config    {"records": {"sha256:<cache key>": {"created": RFC 3339,
//!                                               "diffID": "sha256:<uncompressed tar>",
//!                                               "diffSize": bytes of the uncompressed tar,
//!                                               "layer": {"digest", "mediaType", "size"}}, …},
//!            "mounts": {"<cache mount id>": {"diffID", "layer": {…}}, …},
//!            "version": 2}
//! ```
//!
//! Both documents are canonical JSON (keys sorted, no whitespace) and hold nothing about the
//! export itself (no time, no host), so the same records always give the same bytes and the same
//! manifest digest: exporting an unchanged cache again changes nothing in the registry. A
//! registry that refuses the config media type gets the same document with the config typed
//! `application/vnd.oci.image.config.v1+json`, which every registry accepts (BuildKit's
//! fallback); the reader takes both, recognising the artifact by its `artifactType`. A reader
//! refuses a `version` it does not know and a record whose layer the manifest does not list:
//! a cache it cannot read is a miss, never a wrong hit.
//!
//! Version 2 added `diffSize` (optional: written when the exporter keeps the uncompressed tar,
//! which is what lets an importer name the layer in its image without fetching it, a lazy
//! import); version 1 documents are version 2 documents without it and are still read (their
//! records are imported eagerly). Version 2 also added `mounts` (only with `cache-mounts=true`,
//! absent otherwise): the contents of each `RUN --mount=type=cache` directory the build used,
//! by id, as a layer of a plain tree (listed in the manifest's layers like the records'), which
//! an importer unpacks into a cache directory it does not have before the first RUN that mounts
//! it. The artifact and config media types did not change.
//!
//! The inline form (`--cache-to type=inline`) puts the records in the built image's config,
//! under [`INLINE_KEY`]: `{"records": {"sha256:<key>": {"created", "diffID", "layer": <index
//! of the image's layer>}}, "version": 1}`. A layer is named by its place in the image, not by
//! digest, because a push compresses the layers the store keeps uncompressed; a reader takes the
//! descriptor at that place in the manifest it fetched and checks the config's `rootfs.diff_ids`
//! there against the record's diffID.

use std::collections::{BTreeMap, BTreeSet};

use kiln_registry::Digest;
use kiln_registry::manifest::{Document, OCI_MANIFEST, parse_described};
use serde::{Deserialize, Serialize};

use crate::image::canonical_json;

/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.cache.v1+json";
/// The config blob's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.cache.config.v1+json";
/// The config media type every registry accepts, used when one refuses [`CONFIG_MEDIA_TYPE`].
pub const FALLBACK_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The format version this code writes.
pub const VERSION: u32 = 2;
/// The format versions this code reads: version 1 is version 2 without `diffSize`.
pub const READS: [u32; 2] = [1, 2];
/// The version of the inline form (unchanged by version 2: an image's records have no sizes).
pub const INLINE_VERSION: u32 = 1;
/// The image config field holding an inline cache.
pub const INLINE_KEY: &str = "kiln.cache.v1";

/// The largest config kiln reads (a record is ~300 bytes: tens of thousands of steps).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A blob as a manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Blob {
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// One cached step: the layer its key produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The layer blob, as stored in the cache (compressed).
    pub layer: Blob,
    /// The sha256 of the uncompressed tar.
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
    /// When the step ran (RFC 3339), which a hit keeps so the image is the same.
    pub created: String,
    /// The size of the uncompressed tar (version 2; absent in version 1 and when the exporter
    /// did not keep the tar): with it, an importer that keeps layers uncompressed can name the
    /// layer in its image before fetching it (a lazy import).
    #[serde(rename = "diffSize", default, skip_serializing_if = "Option::is_none")]
    pub diff_size: Option<u64>,
}

/// The contents of a `RUN --mount=type=cache` directory (version 2, `cache-mounts=true`): the
/// directory as a layer (a plain tree, every entry an addition), by the mount's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRecord {
    /// The layer blob (compressed).
    pub layer: Blob,
    /// The sha256 of the uncompressed tar.
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
}

/// The config blob: the records, by cache key, and the cache mounts, by id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheConfig {
    /// The format version ([`VERSION`]).
    pub version: u32,
    /// The records, by cache key.
    pub records: BTreeMap<Digest, Record>,
    /// The cache mounts' contents, by id (absent when there are none: the bytes of a cache
    /// without them are what they were before mounts existed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mounts: BTreeMap<String, MountRecord>,
}

/// The manifest as kiln writes it (field names are the OCI spec's).
#[derive(Debug, Serialize)]
struct ManifestOut<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    #[serde(rename = "artifactType")]
    artifact_type: &'static str,
    config: &'a Blob,
    layers: &'a [Blob],
}

/// Why a cache artifact cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The manifest is not a readable OCI image manifest.
    #[error("the cache manifest is not a valid image manifest")]
    Manifest(#[source] kiln_registry::manifest::ManifestError),
    /// The manifest is an image manifest, but not of a kiln cache.
    #[error("not a kiln cache (artifactType {found:?}, config {config})")]
    NotACache {
        /// Its `artifactType`.
        found: Option<String>,
        /// Its config media type.
        config: String,
    },
    /// The config is not the JSON of this format.
    #[error("the cache config is not valid")]
    Config(#[source] serde_json::Error),
    /// A version this code does not read.
    #[error("cache format version {found} is not supported (kiln reads versions 1 and 2)")]
    Version {
        /// The version found.
        found: u32,
    },
    /// A record names a layer the manifest does not list.
    #[error("the record of {key} names layer {layer}, which the cache manifest does not list")]
    Unlisted {
        /// The record's key (or cache mount).
        key: String,
        /// Its layer.
        layer: Digest,
    },
    /// A manifest digest the registry client cannot verify.
    #[error("the cache manifest names an unusable digest")]
    Digest(#[source] kiln_registry::DigestError),
    /// An inline record names a layer the image does not have, or another diffID.
    #[error("the inline record of {key} names layer {index}, which the image does not have")]
    InlineLayer {
        /// The record's key.
        key: Digest,
        /// The layer's place in the image.
        index: usize,
    },
    /// Serialising failed.
    #[error("encoding the cache")]
    Encode(#[source] crate::image::ImageError),
}

/// The config blob and manifest of `records`, as bytes: canonical and deterministic.
/// `config_media_type` is [`CONFIG_MEDIA_TYPE`] or [`FALLBACK_CONFIG_MEDIA_TYPE`].
pub fn write(
    records: &BTreeMap<Digest, Record>,
    mounts: &BTreeMap<String, MountRecord>,
    config_media_type: &str,
) -> Result<(Vec<u8>, Vec<u8>), FormatError> {
    let config = CacheConfig {
        version: VERSION,
        records: records.clone(),
        mounts: mounts.clone(),
    };
    let config_bytes = canonical_json(&config).map_err(FormatError::Encode)?;
    let layers: BTreeSet<Blob> = records
        .values()
        .map(|r| r.layer.clone())
        .chain(mounts.values().map(|m| m.layer.clone()))
        .collect();
    let layers: Vec<Blob> = layers.into_iter().collect();
    let config_blob = Blob {
        media_type: config_media_type.to_owned(),
        digest: Digest::of(&config_bytes),
        size: config_bytes.len() as u64,
    };
    let manifest = ManifestOut {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        artifact_type: ARTIFACT_TYPE,
        config: &config_blob,
        layers: &layers,
    };
    let manifest_bytes = canonical_json(&manifest).map_err(FormatError::Encode)?;
    Ok((config_bytes, manifest_bytes))
}

/// One inline record: the layer is the image's `layer`-th.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineRecord {
    /// The layer's place in the image (0: the bottom layer).
    pub layer: usize,
    /// The sha256 of the uncompressed tar.
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
    /// When the step ran (RFC 3339).
    pub created: String,
}

/// The inline cache in an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InlineCache {
    version: u32,
    records: BTreeMap<Digest, InlineRecord>,
}

/// The value to put under [`INLINE_KEY`] in an image config.
pub fn inline_value(
    records: &BTreeMap<Digest, InlineRecord>,
) -> Result<serde_json::Value, FormatError> {
    let cache = InlineCache {
        version: INLINE_VERSION,
        records: records.clone(),
    };
    serde_json::to_value(cache)
        .map_err(|e| FormatError::Encode(crate::image::ImageError::Serialize(e)))
}

/// The inline records of an image config (bytes verified against their digest), with their
/// layers taken from the image manifest's `layers`; `None` when the config has none.
pub fn read_inline(
    config: &[u8],
    layers: &[Blob],
) -> Result<Option<BTreeMap<Digest, Record>>, FormatError> {
    #[derive(Deserialize)]
    struct Rootfs {
        #[serde(default)]
        diff_ids: Vec<Digest>,
    }
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "kiln.cache.v1")]
        inline: Option<serde_json::Value>,
        rootfs: Rootfs,
    }
    let config: Config = serde_json::from_slice(config).map_err(FormatError::Config)?;
    let Some(inline) = config.inline else {
        return Ok(None);
    };
    let version = inline.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(INLINE_VERSION)) {
        return Err(FormatError::Version {
            found: version.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        });
    }
    let cache: InlineCache = serde_json::from_value(inline).map_err(FormatError::Config)?;
    let mut records = BTreeMap::new();
    for (key, record) in cache.records {
        let (Some(layer), Some(diff_id)) = (
            layers.get(record.layer),
            config.rootfs.diff_ids.get(record.layer),
        ) else {
            return Err(FormatError::InlineLayer {
                key,
                index: record.layer,
            });
        };
        if *diff_id != record.diff_id {
            return Err(FormatError::InlineLayer {
                key,
                index: record.layer,
            });
        }
        records.insert(
            key,
            Record {
                layer: layer.clone(),
                diff_id: record.diff_id,
                created: record.created,
                diff_size: None,
            },
        );
    }
    Ok(Some(records))
}

/// What a cache manifest says: its config blob and its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheManifest {
    /// The config blob.
    pub config: Blob,
    /// The layer blobs, by digest.
    pub layers: BTreeMap<Digest, Blob>,
}

/// Reads a cache manifest (bytes already verified against their digest).
pub fn read_manifest(bytes: &[u8]) -> Result<CacheManifest, FormatError> {
    let Document::Manifest(manifest) =
        parse_described(bytes, Some(OCI_MANIFEST)).map_err(FormatError::Manifest)?
    else {
        return Err(FormatError::NotACache {
            found: None,
            config: "(an index)".to_owned(),
        });
    };
    let artifact = manifest.artifact_type().as_ref().map(ToString::to_string);
    let config_type = manifest.config().media_type().to_string();
    if artifact.as_deref() != Some(ARTIFACT_TYPE)
        || ![CONFIG_MEDIA_TYPE, FALLBACK_CONFIG_MEDIA_TYPE].contains(&config_type.as_str())
    {
        return Err(FormatError::NotACache {
            found: artifact,
            config: config_type,
        });
    }
    let blob = |d: &oci_spec::image::Descriptor| -> Result<Blob, FormatError> {
        Ok(Blob {
            media_type: d.media_type().to_string(),
            digest: Digest::from_oci(d.digest()).map_err(FormatError::Digest)?,
            size: d.size(),
        })
    };
    let mut layers = BTreeMap::new();
    for layer in manifest.layers() {
        let layer = blob(layer)?;
        layers.insert(layer.digest.clone(), layer);
    }
    Ok(CacheManifest {
        config: blob(manifest.config())?,
        layers,
    })
}

/// Reads a cache config (bytes already verified against their digest) and checks it against
/// its manifest.
pub fn read_config(bytes: &[u8], manifest: &CacheManifest) -> Result<CacheConfig, FormatError> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    // The version first: a later format may change everything else.
    let version: Version = serde_json::from_slice(bytes).map_err(FormatError::Config)?;
    if !READS.contains(&version.version) {
        return Err(FormatError::Version {
            found: version.version,
        });
    }
    let config: CacheConfig = serde_json::from_slice(bytes).map_err(FormatError::Config)?;
    let named = config
        .records
        .iter()
        .map(|(key, r)| (key.to_string(), &r.layer))
        .chain(
            config
                .mounts
                .iter()
                .map(|(id, m)| (format!("cache mount {id:?}"), &m.layer)),
        );
    for (key, layer) in named {
        if manifest.layers.get(&layer.digest) != Some(layer) {
            return Err(FormatError::Unlisted {
                key,
                layer: layer.digest.clone(),
            });
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> Record {
        Record {
            layer: Blob {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
                digest: Digest::of(&[n]),
                size: u64::from(n) + 100,
            },
            diff_id: Digest::of(&[n, n]),
            created: "2024-01-01T00:00:00Z".to_owned(),
            // Version 2's field, on some records only (an exporter may not know it).
            diff_size: (n % 2 == 1).then_some(u64::from(n) + 1000),
        }
    }

    fn records() -> BTreeMap<Digest, Record> {
        // Two keys share a layer (the same step on two stages): it is listed once.
        [(1, 1), (2, 2), (3, 1)]
            .into_iter()
            .map(|(k, n)| (Digest::of(&[k, 0, 0]), record(n)))
            .collect()
    }

    #[test]
    fn round_trip() {
        let records = records();
        let (config, manifest) = write(&records, &BTreeMap::new(), CONFIG_MEDIA_TYPE).unwrap();
        let read = read_manifest(&manifest).unwrap();
        assert_eq!(read.layers.len(), 2);
        assert_eq!(read.config.digest, Digest::of(&config));
        assert_eq!(read.config.media_type, CONFIG_MEDIA_TYPE);
        assert_eq!(read_config(&config, &read).unwrap().records, records);

        let (config, manifest) =
            write(&records, &BTreeMap::new(), FALLBACK_CONFIG_MEDIA_TYPE).unwrap();
        let read = read_manifest(&manifest).unwrap();
        assert_eq!(read_config(&config, &read).unwrap().records, records);
    }

    #[test]
    fn the_bytes_are_deterministic_and_pinned() {
        let (config, manifest) = write(&records(), &BTreeMap::new(), CONFIG_MEDIA_TYPE).unwrap();
        // Built in another order: the same bytes.
        let reversed: BTreeMap<Digest, Record> = records().into_iter().rev().collect();
        assert_eq!(
            write(&reversed, &BTreeMap::new(), CONFIG_MEDIA_TYPE).unwrap(),
            (config.clone(), manifest.clone())
        );
        let text = String::from_utf8(manifest).unwrap();
        assert!(
            text.starts_with(
                "{\"artifactType\":\"application/vnd.kiln.cache.v1+json\",\"config\":{\"digest\":"
            ),
            "{text}"
        );
        assert!(text.contains("\"schemaVersion\":2"));
        let config = String::from_utf8(config).unwrap();
        assert!(config.starts_with("{\"records\":{\"sha256:"), "{config}");
        assert!(config.ends_with(",\"version\":2}"), "{config}");
        assert!(config.contains("\"diffSize\":1001"), "{config}");
        assert!(!config.contains(' '));
        // Pinned: a change to the format's bytes must come with a new version.
        let (_, manifest) = write(&records(), &BTreeMap::new(), CONFIG_MEDIA_TYPE).unwrap();
        assert_eq!(
            Digest::of(&manifest).to_string(),
            "sha256:fddd29be5eed07a4465b183d9ee7e34fb32e58b1b5530e147d7735e8ece5fb52"
        );
    }

    #[test]
    fn inline_round_trip_and_refusals() {
        let layers: Vec<Blob> = (1..=3).map(|n| record(n).layer).collect();
        let diff_ids: Vec<Digest> = (1..=3).map(|n| record(n).diff_id).collect();
        let inline: BTreeMap<Digest, InlineRecord> =
            [(Digest::of(b"k1"), 0), (Digest::of(b"k3"), 2)]
                .into_iter()
                .map(|(key, i)| {
                    let record = InlineRecord {
                        layer: i,
                        diff_id: diff_ids[i].clone(),
                        created: "2024-01-01T00:00:00Z".to_owned(),
                    };
                    (key, record)
                })
                .collect();
        let config = |inline: serde_json::Value, diff_ids: &[Digest]| {
            serde_json::to_vec(&serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                INLINE_KEY: inline,
            }))
            .unwrap()
        };
        let value = inline_value(&inline).unwrap();
        let records = read_inline(&config(value.clone(), &diff_ids), &layers)
            .unwrap()
            .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[&Digest::of(b"k3")].layer, layers[2]);
        assert_eq!(records[&Digest::of(b"k3")].diff_id, diff_ids[2]);

        // An image without one; a layer the image does not have; another diffID there.
        let plain = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        assert_eq!(read_inline(&plain, &layers).unwrap(), None);
        assert!(matches!(
            read_inline(&config(value.clone(), &diff_ids), &layers[..2]),
            Err(FormatError::InlineLayer { index: 2, .. })
        ));
        let mut other = diff_ids.clone();
        other[0] = Digest::of(b"another");
        assert!(matches!(
            read_inline(&config(value.clone(), &other), &layers),
            Err(FormatError::InlineLayer { index: 0, .. })
        ));
        let mut later = value;
        later["version"] = 2.into();
        assert!(matches!(
            read_inline(&config(later, &diff_ids), &layers),
            Err(FormatError::Version { found: 2 })
        ));
    }

    #[test]
    fn cache_mounts_round_trip_and_are_listed() {
        let mounts = BTreeMap::from([(
            "pip".to_owned(),
            MountRecord {
                layer: Blob {
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
                    digest: Digest::of(b"pip cache"),
                    size: 9,
                },
                diff_id: Digest::of(b"pip tar"),
            },
        )]);
        let (config, manifest) = write(&records(), &mounts, CONFIG_MEDIA_TYPE).unwrap();
        let text = String::from_utf8(config.clone()).unwrap();
        assert!(text.contains("\"mounts\":{\"pip\":{"), "{text}");
        let read = read_manifest(&manifest).unwrap();
        assert_eq!(read.layers.len(), 3);
        let back = read_config(&config, &read).unwrap();
        assert_eq!((back.records, back.mounts), (records(), mounts));
        let mut fewer = read.clone();
        fewer.layers.remove(&Digest::of(b"pip cache"));
        assert!(matches!(
            read_config(&config, &fewer),
            Err(FormatError::Unlisted { key, .. }) if key.contains("pip")
        ));
    }

    #[test]
    fn version_1_is_still_read() {
        // A version 1 config, as kiln wrote it before sizes: no diffSize.
        let mut records = records();
        for record in records.values_mut() {
            record.diff_size = None;
        }
        let (config, manifest) = write(&records, &BTreeMap::new(), CONFIG_MEDIA_TYPE).unwrap();
        let v1 = String::from_utf8(config)
            .unwrap()
            .replace("\"version\":2", "\"version\":1");
        assert!(!v1.contains("diffSize"));
        let read = read_manifest(&manifest).unwrap();
        assert_eq!(read_config(v1.as_bytes(), &read).unwrap().records, records);
    }

    #[test]
    fn refusals() {
        let records = records();
        let (config, manifest) = write(&records, &BTreeMap::new(), CONFIG_MEDIA_TYPE).unwrap();
        let read = read_manifest(&manifest).unwrap();

        let other = String::from_utf8(config.clone())
            .unwrap()
            .replace("\"version\":2", "\"version\":3");
        assert!(matches!(
            read_config(other.as_bytes(), &read),
            Err(FormatError::Version { found: 3 })
        ));
        assert!(matches!(
            read_config(&config[..config.len() / 2], &read),
            Err(FormatError::Config(_))
        ));
        let mut fewer = read.clone();
        fewer.layers.pop_first();
        assert!(matches!(
            read_config(&config, &fewer),
            Err(FormatError::Unlisted { .. })
        ));

        let image = String::from_utf8(manifest.clone())
            .unwrap()
            .replace(ARTIFACT_TYPE, "application/vnd.example+json");
        assert!(matches!(
            read_manifest(image.as_bytes()),
            Err(FormatError::NotACache { .. })
        ));
        assert!(matches!(
            read_manifest(&manifest[..manifest.len() - 1]),
            Err(FormatError::Manifest(_))
        ));
    }
}
