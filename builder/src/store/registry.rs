//! The store as the registry client's source and destination: pushing an image from the store
//! and pulling blobs into it (the registry crate knows nothing of stores; this is the glue).
//!
//! Pulled blobs go through store blob writers, which commit only verified content. A push
//! offers the registry cross-repository mounts for blobs that other local tags of the same
//! registry contain (they came from a pull or an earlier push), and for blobs an earlier push
//! sent to another repository there, which `cache/blob-locations.json` remembers (like
//! containers/image's blob info cache), so pushing an image that shares its base with one
//! already pushed uploads only what is new.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek as _, SeekFrom, Write};

use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_registry::error::BoxError;
use kiln_registry::{
    BlobSink, BlobSource, BlobStore, Digest, Outcome, PushOptions, Pushed, Reference, Registry,
};
use oci_spec::image::Descriptor;

use super::{BlobWriter, Store, StoreError};
use crate::image;
use crate::layer::Compression;

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Compressing a layer for distribution failed.
    #[error("compressing the layers: {0}")]
    Compress(#[from] StoreError),
    /// The registry refused or could not be reached.
    #[error(transparent)]
    Registry(#[from] kiln_registry::Error),
}

/// Pushes the image `root` (a manifest or index descriptor from this store) to `dest`, tagging
/// it with `dest`'s tag, under a lease; blobs the registry has in other repositories are
/// mounted. Layers the store keeps uncompressed are compressed with `compression` first (once:
/// later pushes reuse the blobs), on a blocking thread, and each is sent as soon as it is
/// ready, while the next is being compressed.
pub async fn push_image(
    store: &Store,
    registry: &Registry,
    root: &Descriptor,
    dest: &Reference,
    compression: Compression,
) -> Result<Pushed, PushError> {
    // Held to the end: the compressed layers are in no tag, and the records written beside
    // them go through `tmp/`; neither may be collected or swept while the push runs.
    let _lease = store.lease()?;
    let mount_from = mount_sources(store, dest);
    let source = StoreSource(store.clone());
    let (ready, mut layers) = tokio::sync::mpsc::unbounded_channel();
    let compressing = {
        let (store, root) = (store.clone(), root.clone());
        tokio::task::spawn_blocking(move || {
            let mut seen = BTreeSet::new();
            store.for_distribution_with(&root, compression, &mut |digest, size| {
                if seen.insert(digest.clone()) {
                    // A push that failed stops listening; the rest are still compressed, for
                    // the next attempt.
                    let _ = ready.send((digest.clone(), size));
                }
            })
        })
    };
    let no_hints = Vec::new();
    let sent: Result<BTreeMap<Digest, Outcome>, kiln_registry::Error> =
        futures_util::stream::poll_fn(|cx| layers.poll_recv(cx))
            .map(|(digest, size)| {
                let (source, hints) = (&source, mount_from.get(&digest).unwrap_or(&no_hints));
                async move {
                    let outcome = registry
                        .upload_blob(dest.repository(), &digest, size, source, hints)
                        .await?;
                    Ok((digest, outcome))
                }
            })
            .buffer_unordered(registry.options().concurrency.max(1))
            .try_collect()
            .await;
    drop(layers);
    // Waited for even when an upload failed, so nothing is left running.
    let root = match compressing.await {
        Ok(root) => root?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let options = PushOptions {
        tags: dest.tag().map(str::to_owned).into_iter().collect(),
        mount_from,
        sent: sent?,
    };
    let pushed = kiln_registry::push(registry, dest.repository(), &root, &source, &options).await?;
    // Only a hint for later pushes: failing to remember costs an upload, nothing more.
    let _ = remember_locations(store, dest, &blobs_of(store, &root).unwrap_or_default());
    Ok(pushed)
}

/// Repositories blobs were pushed to, by registry: `{registry: {digest: [repository]}}`.
type Locations = BTreeMap<String, BTreeMap<Digest, Vec<String>>>;

fn locations_path(store: &Store) -> std::path::PathBuf {
    store.cache_dir().join("blob-locations.json")
}

fn read_locations(store: &Store) -> Locations {
    std::fs::read(locations_path(store))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Records that `digests` are now in `dest`'s repository.
pub(crate) fn remember_locations(
    store: &Store,
    dest: &Reference,
    digests: &[Digest],
) -> Result<(), StoreError> {
    let mut locations = read_locations(store);
    let known = locations.entry(dest.registry().to_owned()).or_default();
    for digest in digests {
        let repos = known.entry(digest.clone()).or_default();
        if !repos.iter().any(|r| r == dest.repository()) {
            repos.push(dest.repository().to_owned());
        }
    }
    let path = locations_path(store);
    std::fs::create_dir_all(store.cache_dir()).map_err(StoreError::io("create", &path))?;
    let bytes =
        serde_json::to_vec(&locations).map_err(|e| StoreError::io("encode", &path)(e.into()))?;
    store.replace_file(&path, &bytes)
}

/// For every blob of the store's images tagged in `dest`'s registry, and every blob pushed
/// there before, the other repositories that have it.
pub(crate) fn mount_sources(store: &Store, dest: &Reference) -> BTreeMap<Digest, Vec<String>> {
    let mut sources: BTreeMap<Digest, Vec<String>> = read_locations(store)
        .remove(dest.registry())
        .unwrap_or_default();
    for repos in sources.values_mut() {
        repos.retain(|r| r != dest.repository());
    }
    sources.retain(|_, repos| !repos.is_empty());
    for (name, desc) in store.list().unwrap_or_default() {
        let Ok(reference) = Reference::parse(&name) else {
            continue;
        };
        if reference.registry() != dest.registry() || reference.repository() == dest.repository() {
            continue;
        }
        // An image that cannot be read offers no mounts; pushing it would fail on its own.
        for digest in blobs_of(store, &desc).unwrap_or_default() {
            let repos = sources.entry(digest).or_default();
            if !repos.iter().any(|r| r == reference.repository()) {
                repos.push(reference.repository().to_owned());
            }
        }
    }
    sources
}

/// The config and layer digests of an image (every platform of an index).
fn blobs_of(store: &Store, desc: &Descriptor) -> Result<Vec<Digest>, BoxError> {
    let manifests = if image::is_index_media_type(desc.media_type()) {
        store.read_index_blob(desc)?.manifests().clone()
    } else {
        vec![desc.clone()]
    };
    let mut out = Vec::new();
    for m in &manifests {
        let manifest = store.read_manifest(m)?;
        out.push(image::from_oci_digest(manifest.config().digest())?);
        for layer in manifest.layers() {
            out.push(image::from_oci_digest(layer.digest())?);
        }
    }
    Ok(out)
}

/// The store as a push source.
#[derive(Debug)]
pub struct StoreSource(pub Store);

impl BlobSource for StoreSource {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError> {
        Ok(Box::new(self.0.open_blob(digest)?))
    }

    fn open_at(&self, digest: &Digest, offset: u64) -> Result<Box<dyn Read + Send>, BoxError> {
        let mut file = self.0.open_blob(digest)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(file))
    }
}

/// The store as a pull destination.
#[derive(Debug)]
pub struct StoreTarget(pub Store);

impl BlobStore for StoreTarget {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.0.has_blob(digest)
    }

    fn writer(&self) -> Result<Box<dyn BlobSink>, BoxError> {
        Ok(Box::new(StoreSink(self.0.blob_writer()?)))
    }
}

/// A store blob writer as a pull sink: it commits only verified content.
#[derive(Debug)]
struct StoreSink(BlobWriter);

impl Write for StoreSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl BlobSink for StoreSink {
    fn commit(self: Box<Self>, digest: &Digest, size: u64) -> Result<(), BoxError> {
        Ok(self
            .0
            .commit_verified(digest, size)
            .map_err(Box::<StoreError>::new)?)
    }
}
