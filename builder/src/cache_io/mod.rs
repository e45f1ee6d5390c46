//! Build caches shared between machines: `--cache-from` (import) and `--cache-to` (export), in
//! a registry or an OCI image layout directory, in the format of [`mod@format`] (version 1).
//!
//! Import reads only the small documents up front (the manifest and the config of records) and
//! offers their records to the solver through [`CacheImports`]: every keyed step that misses the
//! local cache is looked up, so a stage whose inputs did not change hits even after an earlier
//! unrelated step missed. A hit is lazy when the record says how large the uncompressed layer
//! is (format version 2's `diffSize`): nothing is downloaded; the store learns the compressed
//! blob as a remote blob of this cache ([`crate::store::remote`]) and the uncompressed tar the
//! build keeps as its decompression, and remembers the compressed blob as that layer's
//! compressed form and the cache's repository as a place the blob is, so a push to the same
//! registry skips or mounts it without downloading it. The bytes are fetched (verified, renamed
//! into place) only when something reads them: a RUN or COPY on top of the layer, a
//! `COPY --from` of its stage, an `--output`, `kiln run`, a push to another registry. Without
//! `diffSize` (version 1 caches, inline caches) the hit downloads the layer then and there,
//! unpacks it to its uncompressed form (verified against the record's diffID) and records it.
//! A record whose blob cannot be fetched during the lookup is an error for that step only: the
//! solver warns and runs the step, so an import never causes a wrong hit or a failed build; a
//! lazy layer the registry lost by the time its bytes are needed fails the step that needs them,
//! naming the blob and the cache (see [`crate::solve`]).
//!
//! Export ([`export()`]) writes the records the build used or made (all of them with
//! `mode=max`; with `mode=min` those whose layers are in the image) with their layers
//! compressed, sending only the blobs the destination does not have, then the manifest. With
//! `type=inline` the solver writes the records of the image's own layers into its config
//! instead ([`format::INLINE_KEY`]); an image pushed with them is read back by `--cache-from`
//! like a cache, its layers taken from the image's manifest.

pub mod export;
mod fetch;
pub mod format;
mod local;
pub mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufReader, Read as _};
use std::path::{Path, PathBuf};

use kiln_registry::manifest::{Document, parse_described};
use kiln_registry::{Digest, Reference, Registry};

use crate::layer::{Compression, MEDIA_TYPE_TAR, MEDIA_TYPE_TAR_GZIP, MEDIA_TYPE_TAR_ZSTD};
use crate::solve::cache::CacheRecord;
use crate::solve::{BoxError, CacheImports};
use crate::store::registry::remember_locations;
use crate::store::{RemoteBlob, RemoteSource, Store, StoreError};
use format::{CacheConfig, FormatError, MAX_CONFIG_BYTES, MountRecord, Record};

pub use export::{ExportError, Exported, export};
pub use fetch::{Connect, Fetcher};
pub use spec::{CacheExport, CacheImport, ExportMode, ExportTarget, SpecError};

/// Where a cache came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A registry reference.
    Registry(Box<Reference>),
    /// An OCI image layout directory and the tag in it.
    Local(PathBuf, String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Registry(reference) => write!(f, "{reference}"),
            Origin::Local(dir, tag) => write!(f, "{}:{tag}", dir.display()),
        }
    }
}

/// Why a cache could not be imported, or one of its records used.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The registry refused or could not be reached (a missing tag included).
    #[error("{origin}")]
    Registry {
        /// The cache.
        origin: Origin,
        /// Why.
        #[source]
        source: Box<kiln_registry::Error>,
    },
    /// The directory could not be read.
    #[error("{origin}: {what}")]
    Local {
        /// The cache.
        origin: Origin,
        /// What was being read.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The documents are not a cache kiln reads.
    #[error("{origin}")]
    Format {
        /// The cache.
        origin: Origin,
        /// Why.
        #[source]
        source: FormatError,
    },
    /// A downloaded layer could not be stored, or is not what its record says.
    #[error("{origin}: layer {layer}")]
    Store {
        /// The cache.
        origin: Origin,
        /// The layer.
        layer: Digest,
        /// Why.
        #[source]
        source: Box<StoreError>,
    },
    /// The cache no longer has a layer a record names (or has another size of it).
    #[error("{origin}: layer {layer} is {}", match found {
        None => "gone".to_owned(),
        Some(size) => format!("{size} bytes, not the size its record says"),
    })]
    Gone {
        /// The cache.
        origin: Origin,
        /// The layer.
        layer: Digest,
        /// The size it has, if it is there.
        found: Option<u64>,
    },
    /// A layer whose form the build cannot use.
    #[error("{origin}: layer {layer} is {media_type}, which this build cannot use")]
    MediaType {
        /// The cache.
        origin: Origin,
        /// The layer.
        layer: Digest,
        /// Its media type.
        media_type: String,
    },
}

/// Where an imported cache's blobs are read from.
#[derive(Debug)]
enum Backend {
    /// A connection to the registry, and the repository the cache is in.
    Registry(Registry, String),
    Local(local::Layout),
}

/// One imported cache.
#[derive(Debug)]
struct Source {
    origin: Origin,
    backend: Backend,
}

/// The records of every `--cache-from`, in the order given: for a key, the first cache whose
/// record of it can be used wins (one whose layer is gone gives way to the next).
#[derive(Debug)]
pub struct Imports {
    sources: Vec<Source>,
    /// Every record, with the index of the source it came from, in the order of the sources.
    records: BTreeMap<Digest, Vec<(usize, Record)>>,
    /// Every cache mount's contents, by id, likewise.
    mounts: BTreeMap<String, Vec<(usize, MountRecord)>>,
    runtime: tokio::runtime::Runtime,
}

impl Imports {
    /// No caches yet.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            sources: Vec::new(),
            records: BTreeMap::new(),
            mounts: BTreeMap::new(),
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?,
        })
    }

    /// How many keys the caches have records of, together.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no cache gave any record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Reads the cache at `reference` of `registry` (its manifest and config: a cache artifact,
    /// or an image built with an inline cache); returns how many records it adds.
    pub fn add_registry(
        &mut self,
        registry: Registry,
        reference: &Reference,
    ) -> Result<usize, ImportError> {
        let origin = Origin::Registry(Box::new(reference.clone()));
        let registry_err = |source| ImportError::Registry {
            origin: origin.clone(),
            source: Box::new(source),
        };
        let name = reference
            .digest()
            .map(ToString::to_string)
            .or_else(|| reference.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".to_owned());
        let repository = reference.repository();
        let manifest = self
            .runtime
            .block_on(registry.get_manifest(repository, &name))
            .map_err(registry_err)?;
        let served = Some(manifest.media_type.as_str()).filter(|m| !m.is_empty());
        let runtime = &self.runtime;
        let records = records_of(&manifest.bytes, served, &origin, &mut |blob| {
            check_config_size(blob, &origin)?;
            let mut bytes = Vec::new();
            runtime
                .block_on(registry.get_blob(repository, &blob.digest, blob.size, &mut bytes))
                .map_err(registry_err)?;
            Ok(bytes)
        })?;
        let backend = Backend::Registry(registry, repository.to_owned());
        Ok(self.add(origin, backend, records))
    }

    /// Reads the cache tagged `tag` in the OCI image layout directory `dir`; returns how many
    /// records it adds.
    pub fn add_local(&mut self, dir: PathBuf, tag: &str) -> Result<usize, ImportError> {
        let origin = Origin::Local(dir.clone(), tag.to_owned());
        let layout = local::Layout::new(dir);
        let manifest = layout.read_manifest(tag, &origin)?;
        let records = records_of(&manifest, None, &origin, &mut |blob| {
            check_config_size(blob, &origin)?;
            layout.read_small(blob, MAX_CONFIG_BYTES, &origin)
        })?;
        Ok(self.add(origin, Backend::Local(layout), records))
    }

    fn add(&mut self, origin: Origin, backend: Backend, config: CacheConfig) -> usize {
        let index = self.sources.len();
        self.sources.push(Source { origin, backend });
        let added = config.records.len();
        for (key, record) in config.records {
            self.records.entry(key).or_default().push((index, record));
        }
        for (id, mount) in config.mounts {
            self.mounts.entry(id).or_default().push((index, mount));
        }
        added
    }

    /// How many cache mounts the caches have contents of, together.
    pub fn mounts(&self) -> usize {
        self.mounts.len()
    }

    /// The source of a blob of `source`, for the store's remote-blob records.
    fn remote_source(source: &Source) -> RemoteSource {
        match &source.origin {
            Origin::Registry(reference) => RemoteSource::Registry {
                registry: reference.registry().to_owned(),
                repository: reference.repository().to_owned(),
            },
            Origin::Local(dir, _) => RemoteSource::Layout { dir: dir.clone() },
        }
    }

    /// The caches that have a record of `key`, in the order they are tried.
    pub fn origins(&self, key: &Digest) -> Vec<&Origin> {
        self.records
            .get(key)
            .into_iter()
            .flatten()
            .map(|(i, _)| &self.sources[*i].origin)
            .collect()
    }

    /// The layer of `record` from `source` into the store, as the build keeps layers.
    fn materialise(
        &self,
        source: &Source,
        record: &Record,
        store: &Store,
        compression: Compression,
    ) -> Result<CacheRecord, ImportError> {
        let origin = &source.origin;
        let layer = &record.layer;
        let store_err = |source| ImportError::Store {
            origin: origin.clone(),
            layer: layer.digest.clone(),
            source: Box::new(source),
        };
        let wanted = compression.media_type();
        let compressed_with = match layer.media_type.as_str() {
            MEDIA_TYPE_TAR_GZIP => Some(Compression::Gzip),
            MEDIA_TYPE_TAR_ZSTD => Some(Compression::Zstd),
            _ => None,
        };
        let usable = layer.media_type == wanted
            || (compression == Compression::None && compressed_with.is_some());
        if !usable {
            return Err(ImportError::MediaType {
                origin: origin.clone(),
                layer: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            });
        }
        let as_is = CacheRecord {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: record.diff_id.clone(),
            created: record.created.clone(),
        };
        // An uncompressed layer this store already has (another import, or its own build).
        if compression == Compression::None
            && store.has_blob(&record.diff_id)
            && let Ok(file) = store.open_blob(&record.diff_id)
            && let Ok(meta) = file.metadata()
        {
            return Ok(CacheRecord {
                media_type: MEDIA_TYPE_TAR.to_owned(),
                digest: record.diff_id.clone(),
                size: meta.len(),
                ..as_is
            });
        }
        if !store.has_blob(&layer.digest) {
            if let Some(lazy) = self.lazily(source, record, store, compression, compressed_with) {
                return lazy;
            }
            self.download(source, layer, store)?;
        }
        let Some(with) = compressed_with.filter(|_| compression == Compression::None) else {
            return Ok(as_is);
        };
        // Unpacked to the tar the build keeps, which must hash to the record's diffID.
        let blob = store.open_blob(&layer.digest).map_err(store_err)?;
        let mut writer = store.blob_writer().map_err(store_err)?;
        let path = store.blob_path(&layer.digest);
        crate::layer::decompress(BufReader::new(blob))
            .and_then(|mut tar| io::copy(&mut tar, &mut writer))
            .map_err(|e| store_err(StoreError::io("decompress", &path)(e)))?;
        let size = writer.size();
        writer
            .commit_verified(&record.diff_id, size)
            .map_err(store_err)?;
        store.remember_compressed_layer(&record.diff_id, with, &layer.digest, layer.size);
        Ok(CacheRecord {
            media_type: MEDIA_TYPE_TAR.to_owned(),
            digest: record.diff_id.clone(),
            size,
            ..as_is
        })
    }

    /// The record of a hit whose layer stays where it is (a lazy import): the store learns the
    /// compressed blob as remote (from this cache), and the uncompressed tar the build keeps as
    /// its decompression, so the image names the layer now and [`Store::open_blob`] fetches it
    /// when something reads it. `None` when the layer must be fetched now: the record has no
    /// `diffSize` (a version 1 cache, an inline cache) and the build keeps uncompressed layers.
    fn lazily(
        &self,
        source: &Source,
        record: &Record,
        store: &Store,
        compression: Compression,
        compressed_with: Option<Compression>,
    ) -> Option<Result<CacheRecord, ImportError>> {
        let layer = &record.layer;
        let compressed = RemoteBlob {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
            source: Self::remote_source(source),
        };
        let plain = match (compression, compressed_with, record.diff_size) {
            (Compression::None, Some(with), Some(size)) => Some((with, size)),
            (Compression::None, ..) => return None,
            _ => None,
        };
        // The cache must still have the blob (a HEAD, no download): one it lost is a miss now,
        // and the next cache or a run of the step takes over, rather than a failure later.
        if let Err(e) = self.check_present(source, layer) {
            return Some(Err(e));
        }
        let result = (|| {
            store.remember_remote(&compressed)?;
            if let Origin::Registry(reference) = &source.origin {
                // A push of an image with this layer to the same registry mounts it from here.
                let _ = remember_locations(store, reference, std::slice::from_ref(&layer.digest));
            }
            let Some((with, size)) = plain else {
                return Ok(CacheRecord {
                    media_type: layer.media_type.clone(),
                    digest: layer.digest.clone(),
                    size: layer.size,
                    diff_id: record.diff_id.clone(),
                    created: record.created.clone(),
                });
            };
            store.remember_remote(&RemoteBlob {
                media_type: MEDIA_TYPE_TAR.to_owned(),
                digest: record.diff_id.clone(),
                size,
                source: RemoteSource::Decompressed {
                    from: layer.digest.clone(),
                },
            })?;
            store.remember_compressed_layer(&record.diff_id, with, &layer.digest, layer.size);
            Ok(CacheRecord {
                media_type: MEDIA_TYPE_TAR.to_owned(),
                digest: record.diff_id.clone(),
                size,
                diff_id: record.diff_id.clone(),
                created: record.created.clone(),
            })
        })();
        Some(result.map_err(|e| ImportError::Store {
            origin: source.origin.clone(),
            layer: layer.digest.clone(),
            source: Box::new(e),
        }))
    }

    /// Whether `source` has the blob `layer`, with its size, without reading it.
    fn check_present(&self, source: &Source, layer: &format::Blob) -> Result<(), ImportError> {
        let origin = &source.origin;
        let found = match &source.backend {
            Backend::Registry(registry, repository) => self
                .runtime
                .block_on(registry.head_blob(repository, &layer.digest))
                .map_err(|e| ImportError::Registry {
                    origin: origin.clone(),
                    source: Box::new(e),
                })?,
            Backend::Local(layout) => layout
                .open_blob(&layer.digest, origin)?
                .metadata()
                .ok()
                .map(|m| m.len()),
        };
        match found {
            Some(size) if size == layer.size => Ok(()),
            found => Err(ImportError::Gone {
                origin: origin.clone(),
                layer: layer.digest.clone(),
                found,
            }),
        }
    }

    /// Downloads a layer blob into the store, verified against its digest and size.
    fn download(
        &self,
        source: &Source,
        layer: &format::Blob,
        store: &Store,
    ) -> Result<(), ImportError> {
        let origin = &source.origin;
        let store_err = |source| ImportError::Store {
            origin: origin.clone(),
            layer: layer.digest.clone(),
            source: Box::new(source),
        };
        let mut writer = store.blob_writer().map_err(store_err)?;
        match &source.backend {
            Backend::Registry(registry, repository) => {
                self.runtime
                    .block_on(registry.get_blob(repository, &layer.digest, layer.size, &mut writer))
                    .map_err(|source| ImportError::Registry {
                        origin: origin.clone(),
                        source: Box::new(source),
                    })?;
                writer
                    .commit_verified(&layer.digest, layer.size)
                    .map_err(store_err)?;
                // A push of an image with this layer to the same registry mounts it from here.
                if let Origin::Registry(reference) = origin {
                    let _ =
                        remember_locations(store, reference, std::slice::from_ref(&layer.digest));
                }
                return Ok(());
            }
            Backend::Local(layout) => {
                let mut file = layout.open_blob(&layer.digest, origin)?;
                io::copy(&mut (&mut file).take(layer.size + 1), &mut writer).map_err(|e| {
                    ImportError::Local {
                        origin: origin.clone(),
                        what: format!("reading blob {}", layer.digest),
                        source: e,
                    }
                })?;
            }
        }
        writer
            .commit_verified(&layer.digest, layer.size)
            .map_err(store_err)
    }
}

/// The records of a cache artifact, or of an image whose config has an inline cache, from its
/// manifest (`bytes`, verified, served as `served`) and a reader of its config blob.
fn records_of(
    bytes: &[u8],
    served: Option<&str>,
    origin: &Origin,
    read_config: &mut dyn FnMut(&format::Blob) -> Result<Vec<u8>, ImportError>,
) -> Result<CacheConfig, ImportError> {
    let format_err = |source| ImportError::Format {
        origin: origin.clone(),
        source,
    };
    let document =
        parse_described(bytes, served).map_err(|e| format_err(FormatError::Manifest(e)))?;
    let manifest = match document {
        Document::Manifest(m) => m,
        Document::Index(_) => {
            return Err(format_err(FormatError::NotACache {
                found: None,
                config: "(an index: inline caches are read from one platform's image)".to_owned(),
            }));
        }
    };
    if manifest
        .artifact_type()
        .as_ref()
        .map(ToString::to_string)
        .as_deref()
        == Some(format::ARTIFACT_TYPE)
    {
        let manifest = format::read_manifest(bytes).map_err(format_err)?;
        let config = read_config(&manifest.config)?;
        return format::read_config(&config, &manifest).map_err(format_err);
    }
    // An image: its config may carry an inline cache.
    let blob = |d: &oci_spec::image::Descriptor| -> Result<format::Blob, ImportError> {
        Ok(format::Blob {
            media_type: d.media_type().to_string(),
            digest: Digest::from_oci(d.digest()).map_err(|e| format_err(FormatError::Digest(e)))?,
            size: d.size(),
        })
    };
    let layers = manifest
        .layers()
        .iter()
        .map(blob)
        .collect::<Result<Vec<_>, _>>()?;
    let config = read_config(&blob(manifest.config())?)?;
    match format::read_inline(&config, &layers).map_err(format_err)? {
        Some(records) => Ok(CacheConfig {
            version: format::INLINE_VERSION,
            records,
            mounts: BTreeMap::new(),
        }),
        None => Err(format_err(FormatError::NotACache {
            found: manifest.artifact_type().as_ref().map(ToString::to_string),
            config: format!("{}, with no inline cache", manifest.config().media_type()),
        })),
    }
}

/// Refuses a config blob over [`MAX_CONFIG_BYTES`] before it is fetched.
fn check_config_size(blob: &format::Blob, origin: &Origin) -> Result<(), ImportError> {
    if blob.size <= MAX_CONFIG_BYTES {
        return Ok(());
    }
    Err(ImportError::Format {
        origin: origin.clone(),
        source: FormatError::Config(serde::de::Error::custom(format!(
            "{} bytes is over the {MAX_CONFIG_BYTES} byte limit",
            blob.size
        ))),
    })
}

impl CacheImports for Imports {
    fn fetch(
        &self,
        key: &Digest,
        store: &Store,
        compression: Compression,
    ) -> Result<Option<(CacheRecord, String)>, BoxError> {
        let Some(candidates) = self.records.get(key) else {
            return Ok(None);
        };
        // The first usable record; if none is, the first cache's reason.
        let mut first_error = None;
        for (index, record) in candidates {
            let source = &self.sources[*index];
            match self.materialise(source, record, store, compression) {
                Ok(record) => return Ok(Some((record, source.origin.to_string()))),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(None),
        }
    }

    fn names(&self) -> Vec<String> {
        self.sources.iter().map(|s| s.origin.to_string()).collect()
    }

    fn restore_mount(&self, id: &str, store: &Store, into: &Path) -> Result<bool, BoxError> {
        // The first cache that has the mount; its layer comes through the store, so it is
        // fetched with the same credentials and verified like any other.
        let Some((index, mount)) = self.mounts.get(id).and_then(|m| m.first()) else {
            return Ok(false);
        };
        let source = &self.sources[*index];
        let layer = &mount.layer;
        let err = |e: StoreError| ImportError::Store {
            origin: source.origin.clone(),
            layer: layer.digest.clone(),
            source: Box::new(e),
        };
        store
            .remember_remote(&RemoteBlob {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size,
                source: Self::remote_source(source),
            })
            .map_err(err)?;
        let blob = store.open_blob(&layer.digest).map_err(err)?;
        crate::layer::apply_blob(
            into,
            BufReader::new(blob),
            &crate::layer::ApplyOptions::new(crate::layer::ApplyMode::Merge),
        )?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
