//! `--cache-to`: the records of a build written as a cache artifact ([`super::format`]) to a
//! registry or an OCI image layout directory.
//!
//! Which records: with `mode=max` every keyed step of every stage the build ran or took from a
//! cache; with `mode=min` those whose layers are in the built image. Layers the store keeps
//! uncompressed are compressed once (the store remembers the compressed blob, as for a push).
//! Only what the destination lacks is sent: a registry is asked (`HEAD`) for every blob, and
//! offered cross-repository mounts for blobs the store knows are in another of its
//! repositories; a directory is checked for each file. Then one manifest. The documents are
//! deterministic, so exporting an unchanged cache again sends no blob and the same manifest.
//! With `cache-mounts=true` the directories of the build's `RUN --mount=type=cache` mounts go
//! with them, each written as a layer (a plain tree) by id.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Cursor, Read};

use kiln_registry::error::BoxError;
use kiln_registry::manifest::OCI_MANIFEST;
use kiln_registry::{BlobSource, Digest, PushOptions, Reference, Registry};
use reqwest::StatusCode;

use super::format::{
    self, Blob, CONFIG_MEDIA_TYPE, FALLBACK_CONFIG_MEDIA_TYPE, FormatError, MountRecord, Record,
};
use super::local::Layout;
use super::spec::{CacheExport, ExportMode, ExportTarget};
use crate::image;
use crate::layer::{ChangeKind, Compression, LayerOptions, MEDIA_TYPE_TAR, write_layer};
use crate::solve::Built;
use crate::solve::cache::CacheRecord;
use crate::store::registry::{mount_sources, remember_locations};
use crate::store::{Store, StoreError};

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Records written.
    pub records: usize,
    /// Layer blobs the cache lists (cache mounts' included).
    pub layers: usize,
    /// Cache mounts exported (`cache-mounts=true`).
    pub mounts: usize,
    /// Blobs sent (layers and config).
    pub uploaded: usize,
    /// Blobs the destination had already.
    pub existed: usize,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
    /// The cache manifest's digest.
    pub manifest: Digest,
    /// Whether the registry refused the config media type and got the fallback one.
    pub fallback_config: bool,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A record's layer could not be read or compressed.
    #[error("preparing the cache layers")]
    Store(#[from] StoreError),
    /// A cache mount's directory could not be written as a layer.
    #[error("exporting cache mount {id:?}")]
    Mount {
        /// The mount's id.
        id: String,
        /// Why.
        #[source]
        source: crate::layer::LayerError,
    },
    /// The documents could not be written.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The registry refused or could not be reached.
    #[error("exporting the cache to {reference}")]
    Registry {
        /// The destination.
        reference: Reference,
        /// Why.
        #[source]
        source: Box<kiln_registry::Error>,
    },
    /// A registry destination without a connection to it.
    #[error("exporting the cache to {0}: no connection to its registry was given")]
    NotConnected(Reference),
    /// The async runtime the registry client needs could not start.
    #[error("starting the async runtime")]
    Runtime(#[source] io::Error),
    /// The directory could not be written.
    #[error("exporting the cache to {}", .dir.display())]
    Local {
        /// The destination.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The records `mode` exports from `built`.
pub fn select(
    store: &Store,
    built: &Built,
    mode: ExportMode,
) -> Result<BTreeMap<Digest, CacheRecord>, ExportError> {
    match mode {
        ExportMode::Max => Ok(built.steps.clone()),
        ExportMode::Min => {
            // Every platform's layers, when the build made an index.
            let mut layers = BTreeSet::new();
            for (_, desc) in store.platform_manifests(&built.manifest)? {
                for layer in store.read_manifest(&desc)?.layers() {
                    let digest =
                        image::from_oci_digest(layer.digest()).map_err(StoreError::from)?;
                    layers.insert(digest);
                }
            }
            Ok(built
                .steps
                .iter()
                .filter(|(_, r)| layers.contains(&r.digest))
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect())
        }
    }
}

/// The exported form of `records`: each layer compressed with `compression` (made once).
fn prepare(
    store: &Store,
    records: &BTreeMap<Digest, CacheRecord>,
    compression: Compression,
) -> Result<BTreeMap<Digest, Record>, ExportError> {
    let mut out = BTreeMap::new();
    for (key, record) in records {
        let layer = if record.media_type == MEDIA_TYPE_TAR && compression != Compression::None {
            let (digest, size) = store.compressed_layer(&record.digest, compression)?;
            Blob {
                media_type: compression.media_type().to_owned(),
                digest,
                size,
            }
        } else {
            Blob {
                media_type: record.media_type.clone(),
                digest: record.digest.clone(),
                size: record.size,
            }
        };
        out.insert(
            key.clone(),
            Record {
                layer,
                diff_id: record.diff_id.clone(),
                created: record.created.clone(),
                // The store's uncompressed layer is the diff: its size lets an importer be lazy.
                diff_size: (record.media_type == MEDIA_TYPE_TAR).then_some(record.size),
            },
        );
    }
    Ok(out)
}

/// Exports the records of `built` as `spec` says. A registry destination needs `registry`, a
/// connection to its registry.
pub fn export(
    store: &Store,
    built: &Built,
    spec: &CacheExport,
    registry: Option<&Registry>,
) -> Result<Exported, ExportError> {
    // Held to the end: the compressed layers are in no tag.
    let _lease = store.lease()?;
    let selected = select(store, built, spec.mode)?;
    match &spec.target {
        ExportTarget::Registry { reference } => {
            let registry = registry.ok_or_else(|| ExportError::NotConnected(reference.clone()))?;
            let records = prepare(store, &selected, spec.compression)?;
            let mounts = mounts(store, built, spec)?;
            to_registry(store, registry, reference, &records, &mounts)
        }
        ExportTarget::Local { dest, tag } => {
            let records = prepare(store, &selected, spec.compression)?;
            let mounts = mounts(store, built, spec)?;
            to_local(store, &Layout::new(dest.clone()), tag, &records, &mounts).map_err(|source| {
                ExportError::Local {
                    dir: dest.clone(),
                    source,
                }
            })
        }
        // Written into the image's config by the build (`BuildOptions::inline_cache`): the
        // image's push sends it. Nothing to compress or send here.
        ExportTarget::Inline => {
            let distinct: BTreeSet<&Digest> = selected.values().map(|r| &r.digest).collect();
            Ok(Exported {
                records: selected.len(),
                layers: distinct.len(),
                mounts: 0,
                uploaded: 0,
                existed: 0,
                mounted: 0,
                manifest: image::from_oci_digest(built.manifest.digest())
                    .map_err(StoreError::from)?,
                fallback_config: false,
            })
        }
    }
}

/// The store, with the cache's config and manifest beside its blobs, as a push source.
struct Overlay {
    store: Store,
    documents: BTreeMap<Digest, Vec<u8>>,
}

impl BlobSource for Overlay {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError> {
        match self.documents.get(digest) {
            Some(bytes) => Ok(Box::new(Cursor::new(bytes.clone()))),
            None => Ok(Box::new(self.store.open_blob(digest)?)),
        }
    }
}

fn to_registry(
    store: &Store,
    registry: &Registry,
    reference: &Reference,
    records: &BTreeMap<Digest, Record>,
    mounts: &BTreeMap<String, MountRecord>,
) -> Result<Exported, ExportError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ExportError::Runtime)?;
    let mount_from = mount_sources(store, reference);
    let push =
        |config_media_type: &str| -> Result<(kiln_registry::Pushed, Vec<Digest>), ExportError> {
            let (config, manifest) = format::write(records, mounts, config_media_type)?;
            let config_digest = Digest::of(&config);
            let manifest_digest = Digest::of(&manifest);
            let root = image::descriptor(
                oci_spec::image::MediaType::ImageManifest,
                &manifest_digest,
                manifest.len() as u64,
            );
            let source = Overlay {
                store: store.clone(),
                documents: BTreeMap::from([
                    (config_digest.clone(), config),
                    (manifest_digest, manifest),
                ]),
            };
            let options = PushOptions {
                tags: reference.tag().map(str::to_owned).into_iter().collect(),
                mount_from: mount_from.clone(),
                sent: BTreeMap::new(),
            };
            let pushed = runtime
                .block_on(kiln_registry::push(
                    registry,
                    reference.repository(),
                    &root,
                    &source,
                    &options,
                ))
                .map_err(|source| ExportError::Registry {
                    reference: reference.clone(),
                    source: Box::new(source),
                })?;
            Ok((pushed, vec![config_digest]))
        };
    let (pushed, documents, fallback_config) = match push(CONFIG_MEDIA_TYPE) {
        Ok((pushed, documents)) => (pushed, documents, false),
        // A registry that refuses the config's media type takes the image config's (BuildKit's
        // fallback); the blobs are there now, so this costs only the checks and a manifest.
        // Nothing remembers the refusal: each export to such a registry tries kiln's type first.
        Err(ExportError::Registry { source, .. }) if refuses_manifest(&source) => {
            let (pushed, documents) = push(FALLBACK_CONFIG_MEDIA_TYPE)?;
            (pushed, documents, true)
        }
        Err(e) => return Err(e),
    };
    let mut blobs: Vec<Digest> = layer_digests(records, mounts).into_iter().collect();
    blobs.extend(documents);
    // Only a hint for later pushes: failing to remember costs an upload, nothing more.
    let _ = remember_locations(store, reference, &blobs);
    Ok(Exported {
        records: records.len(),
        layers: layer_digests(records, mounts).len(),
        mounts: mounts.len(),
        uploaded: pushed.uploaded,
        existed: pushed.existed,
        mounted: pushed.mounted,
        manifest: pushed.digest,
        fallback_config,
    })
}

/// Whether the registry refused the manifest as such (a 400 or 415 to its `PUT`), not the
/// connection, the credentials or a blob.
fn refuses_manifest(e: &kiln_registry::Error) -> bool {
    match e {
        kiln_registry::Error::Status {
            request, status, ..
        } => {
            request.method == reqwest::Method::PUT
                && request.url.contains("/manifests/")
                && matches!(
                    *status,
                    StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE
                )
        }
        _ => false,
    }
}

/// The distinct layer blobs of the records and the cache mounts.
fn layer_digests(
    records: &BTreeMap<Digest, Record>,
    mounts: &BTreeMap<String, MountRecord>,
) -> BTreeSet<Digest> {
    records
        .values()
        .map(|r| r.layer.digest.clone())
        .chain(mounts.values().map(|m| m.layer.digest.clone()))
        .collect()
}

/// With `cache-mounts=true`, the directory of every cache mount the build used as a layer (a
/// plain tree), compressed as the spec says, in the store (a blob in no tag: the caller holds a
/// lease until it is sent).
fn mounts(
    store: &Store,
    built: &Built,
    spec: &CacheExport,
) -> Result<BTreeMap<String, MountRecord>, ExportError> {
    let mut out = BTreeMap::new();
    if !spec.cache_mounts {
        return Ok(out);
    }
    for (id, dir) in &built.cache_mounts {
        let err = |source| ExportError::Mount {
            id: id.clone(),
            source,
        };
        let mut writer = store.blob_writer()?;
        let options = LayerOptions {
            kind: ChangeKind::Tree,
            compression: spec.compression,
            source_date_epoch: None,
        };
        let layer = write_layer(dir, &options, &mut writer).map_err(err)?;
        writer.commit_verified(&layer.digest, layer.size)?;
        out.insert(
            id.clone(),
            MountRecord {
                layer: Blob {
                    media_type: layer.media_type.to_owned(),
                    digest: layer.digest,
                    size: layer.size,
                },
                diff_id: layer.diff_id,
            },
        );
    }
    Ok(out)
}

fn to_local(
    store: &Store,
    layout: &Layout,
    tag: &str,
    records: &BTreeMap<Digest, Record>,
    mounts: &BTreeMap<String, MountRecord>,
) -> io::Result<Exported> {
    layout.create()?;
    let (config, manifest) = format::write(records, mounts, CONFIG_MEDIA_TYPE)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let (mut uploaded, mut existed) = (0, 0);
    let mut count = |present: bool| {
        if present {
            existed += 1;
        } else {
            uploaded += 1;
        }
    };
    let digests = layer_digests(records, mounts);
    for digest in &digests {
        count(layout.has_blob(digest));
        let mut blob = store
            .open_blob(digest)
            .map_err(|e| io::Error::other(crate::error_chain(&e)))?;
        layout.put_blob(digest, &mut blob)?;
    }
    let config_digest = Digest::of(&config);
    count(layout.has_blob(&config_digest));
    layout.put_blob(&config_digest, &mut &config[..])?;
    let manifest_digest = Digest::of(&manifest);
    layout.put_blob(&manifest_digest, &mut &manifest[..])?;
    layout.tag(
        tag,
        &Blob {
            media_type: OCI_MANIFEST.to_owned(),
            digest: manifest_digest.clone(),
            size: manifest.len() as u64,
        },
    )?;
    Ok(Exported {
        records: records.len(),
        layers: digests.len(),
        mounts: mounts.len(),
        uploaded,
        existed,
        mounted: 0,
        manifest: manifest_digest,
        fallback_config: false,
    })
}
