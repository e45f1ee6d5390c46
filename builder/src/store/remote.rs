//! Remote blobs: blobs the store knows by digest, size and media type, and where to fetch them
//! from, without holding their bytes (a lazy `--cache-from` import: an image can be built,
//! tagged, listed, inspected and pushed while its layers are still in the registry).
//!
//! A record is `cache/remote/<hex>` (JSON, written atomically), one per blob, naming a
//! [`RemoteSource`]: a registry repository (credentials come from whoever fetches: the
//! [`Fetch`] the caller installed with [`Store::with_fetcher`], which knows the registry flags
//! and the docker config), an OCI layout directory, or another blob (present or remote) whose
//! decompression this blob is (an uncompressed layer the build keeps, imported as its
//! compressed form). This module holds the one rule of what "remote" means:
//!
//! - [`Store::open_blob`] of an absent blob with a record fetches it first, into a blob writer
//!   verified against the record's digest and size and renamed into place, so a fetched blob is
//!   an ordinary blob; every reader (snapshots, push, export, archives) goes through it.
//! - [`Store::is_available`] is what "the store can supply this blob" means for the build
//!   cache, the compressed-variant records and tagging.
//! - A tag's walk counts remote layers as neither missing nor broken: `kiln fsck` reports them
//!   as not yet fetched, never as damage. gc deletes no record (they are a few hundred bytes,
//!   and a blob gc removed can be fetched again from the same record).
//! - A record is kept after its blob is fetched, so a blob gc removes can be fetched again.

use std::fmt;
use std::fs;
use std::io::{self, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;

use kiln_registry::Digest;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Where a remote blob's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RemoteSource {
    /// A repository of a registry.
    Registry {
        /// The registry host (`host[:port]`, as a reference names it).
        registry: String,
        /// The repository.
        repository: String,
    },
    /// An OCI image layout directory (`blobs/sha256/<hex>`).
    Layout {
        /// The directory.
        dir: PathBuf,
    },
    /// The decompression of another blob (gzip or zstd), itself present or remote.
    Decompressed {
        /// The compressed blob.
        from: Digest,
    },
}

impl fmt::Display for RemoteSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteSource::Registry {
                registry,
                repository,
            } => write!(f, "{registry}/{repository}"),
            RemoteSource::Layout { dir } => write!(f, "{}", dir.display()),
            RemoteSource::Decompressed { from } => write!(f, "decompressing {from}"),
        }
    }
}

/// A blob the store knows but does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBlob {
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Where its bytes are.
    pub source: RemoteSource,
}

/// Brings the bytes of remote blobs from registries and directories (the store only knows
/// where they are; credentials and connections are the fetcher's).
pub trait Fetch: Send + Sync + fmt::Debug {
    /// Writes the bytes of `blob` (whose source is a registry or a directory) to `into`. The
    /// store verifies them; a fetcher need not.
    fn fetch(
        &self,
        blob: &RemoteBlob,
        into: &mut (dyn Write + Send),
    ) -> Result<(), kiln_registry::error::BoxError>;
}

impl Store {
    /// This handle, fetching remote blobs with `fetcher` when they are opened.
    pub fn with_fetcher(mut self, fetcher: Arc<dyn Fetch>) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    fn remote_dir(&self) -> PathBuf {
        self.cache_dir().join("remote")
    }

    /// Records that `blob` can be fetched from its source (atomically; replaces what was known).
    pub fn remember_remote(&self, blob: &RemoteBlob) -> Result<(), StoreError> {
        let dir = self.remote_dir();
        fs::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
        let bytes = serde_json::to_vec(blob)
            .map_err(|e| StoreError::io("encode", &dir)(io::Error::from(e)))?;
        self.replace_file(&dir.join(blob.digest.hex()), &bytes)
    }

    /// What the store knows of the remote blob `digest` (a record that does not parse, or
    /// names another digest, is no record).
    pub fn remote(&self, digest: &Digest) -> Option<RemoteBlob> {
        let bytes = fs::read(self.remote_dir().join(digest.hex())).ok()?;
        serde_json::from_slice::<RemoteBlob>(&bytes)
            .ok()
            .filter(|b| &b.digest == digest)
    }

    /// Whether the store holds `digest` or knows where to fetch it.
    pub fn is_available(&self, digest: &Digest) -> bool {
        self.has_blob(digest) || self.remote(digest).is_some()
    }

    /// Whether `digest` is absent but has a record: a layer not yet fetched.
    pub fn is_unfetched(&self, digest: &Digest) -> bool {
        !self.has_blob(digest) && self.remote(digest).is_some()
    }

    /// Brings the remote blob `digest` into the store: fetched (or decompressed from its
    /// compressed form, fetched first if need be), verified against the record, renamed into
    /// place. [`StoreError::MissingBlob`] when there is no record.
    pub(super) fn fetch_remote(&self, digest: &Digest) -> Result<(), StoreError> {
        let Some(blob) = self.remote(digest) else {
            return Err(StoreError::MissingBlob {
                digest: digest.clone(),
            });
        };
        let fetch_err = |source| StoreError::Fetch {
            digest: digest.clone(),
            from: blob.source.to_string(),
            error: source,
        };
        let mut writer = self.blob_writer()?;
        match &blob.source {
            RemoteSource::Decompressed { from } => {
                let compressed = self.open_blob(from)?;
                let path = self.blob_path(from);
                crate::layer::decompress(BufReader::new(compressed))
                    .and_then(|mut tar| io::copy(&mut tar, &mut writer))
                    .map_err(StoreError::io("decompress", &path))?;
            }
            _ => {
                let fetcher = self.fetcher.as_ref().ok_or_else(|| {
                    fetch_err("this command cannot fetch blobs from elsewhere".into())
                })?;
                fetcher.fetch(&blob, &mut writer).map_err(fetch_err)?;
            }
        }
        writer.commit_verified(digest, blob.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Serves blobs from memory and counts what it served.
    #[derive(Debug, Default)]
    struct Memory {
        blobs: Mutex<Vec<(Digest, Vec<u8>)>>,
        served: Mutex<usize>,
    }

    impl Fetch for Memory {
        fn fetch(
            &self,
            blob: &RemoteBlob,
            into: &mut (dyn Write + Send),
        ) -> Result<(), kiln_registry::error::BoxError> {
            *self.served.lock().unwrap() += 1;
            let blobs = self.blobs.lock().unwrap();
            let (_, bytes) = blobs
                .iter()
                .find(|(d, _)| d == &blob.digest)
                .ok_or("404 Not Found")?;
            into.write_all(bytes)?;
            Ok(())
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn registry_source() -> RemoteSource {
        RemoteSource::Registry {
            registry: "127.0.0.1:5000".to_owned(),
            repository: "cache".to_owned(),
        }
    }

    #[test]
    fn a_remote_blob_is_fetched_verified_once_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let plain = b"a layer's tar".to_vec();
        let compressed = gzip(&plain);
        let (plain_digest, gz_digest) = (Digest::of(&plain), Digest::of(&compressed));
        let memory = Arc::new(Memory::default());
        memory
            .blobs
            .lock()
            .unwrap()
            .push((gz_digest.clone(), compressed.clone()));
        let store = Store::open(dir.path())
            .unwrap()
            .with_fetcher(memory.clone());
        store
            .remember_remote(&RemoteBlob {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
                digest: gz_digest.clone(),
                size: compressed.len() as u64,
                source: registry_source(),
            })
            .unwrap();
        store
            .remember_remote(&RemoteBlob {
                media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
                digest: plain_digest.clone(),
                size: plain.len() as u64,
                source: RemoteSource::Decompressed {
                    from: gz_digest.clone(),
                },
            })
            .unwrap();
        assert!(store.is_available(&plain_digest) && store.is_unfetched(&plain_digest));
        assert_eq!(*memory.served.lock().unwrap(), 0);
        assert_eq!(store.read_blob(&plain_digest, 1 << 20).unwrap(), plain);
        assert!(store.has_blob(&gz_digest) && !store.is_unfetched(&plain_digest));
        store.read_blob(&plain_digest, 1 << 20).unwrap();
        assert_eq!(*memory.served.lock().unwrap(), 1);
    }

    #[test]
    fn a_wrong_or_lost_remote_blob_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(Memory::default());
        let lied = Digest::of(b"what the record says");
        memory
            .blobs
            .lock()
            .unwrap()
            .push((lied.clone(), b"something else".to_vec()));
        let store = Store::open(dir.path())
            .unwrap()
            .with_fetcher(memory.clone());
        let lost = Digest::of(b"gone");
        for digest in [&lied, &lost] {
            store
                .remember_remote(&RemoteBlob {
                    media_type: "application/octet-stream".to_owned(),
                    digest: digest.clone(),
                    size: 14,
                    source: registry_source(),
                })
                .unwrap();
        }
        assert!(matches!(
            store.open_blob(&lied),
            Err(StoreError::DigestMismatch { .. })
        ));
        let err = store.open_blob(&lost).unwrap_err();
        assert!(
            matches!(&err, StoreError::Fetch { .. }) && err.to_string().contains("127.0.0.1:5000"),
            "{err}"
        );
        assert!(!store.has_blob(&lied) && !store.has_blob(&lost));
        // Without a fetcher (a command that cannot reach registries) it is an error too.
        let bare = Store::open(dir.path()).unwrap();
        assert!(matches!(
            bare.open_blob(&lost),
            Err(StoreError::Fetch { .. })
        ));
        // No record: the blob is simply missing.
        assert!(matches!(
            bare.open_blob(&Digest::of(b"unknown")),
            Err(StoreError::MissingBlob { .. })
        ));
    }
}
