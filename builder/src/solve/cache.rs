//! The build cache: which layer a filesystem step produced, by cache key (DESIGN decision 7).
//!
//! A key is the sha256 of the step's inputs written out in order: the key of the filesystem it
//! runs on (a chain of keys back to the base image's manifest digest, or `scratch`), the
//! expanded instruction, and whatever else reaches it — RUN's environment, user, working
//! directory and shell, the content of the context files a COPY reads (never their mtimes), the
//! key of a stage it copies from, `SOURCE_DATE_EPOCH` and the compression. Metadata steps
//! (ENV, LABEL, USER, …) have no key of their own: they reach the filesystem steps only through
//! those inputs, which is BuildKit's rule, so changing a build-arg re-runs exactly the steps
//! that see its value.
//!
//! Records live in `cache/build/<key hex>` as small JSON documents, written to `tmp/` and
//! renamed into place, so a crash leaves no half record. A record is only trusted while its
//! layer blob is in the store; [`BuildCache::blob_roots`] lets gc keep those blobs, and
//! [`BuildCache::clear`] (`kiln prune --all`) forgets everything. A record imported from another
//! machine's cache ([`crate::cache_io`]) is written here when a step first hits it, with its
//! layer or (a lazy import) with the store knowing where to fetch the layer
//! ([`crate::store::remote`]): a record counts while its layer is available either way. Beside them, keyed by URL,
//! what an unpinned `ADD <url>` downloaded last (digest and validators), so the next build can
//! ask the server whether it changed instead of downloading it again.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kiln_registry::Digest;
use serde::{Deserialize, Serialize};

use super::explain::{Input, Label};
use crate::ops::fetch::{Download, Validators};
use crate::store::{Problem, Repair, Store, StoreError};

/// The key format: changes whenever what a key covers or how it is written changes, so old
/// records stop matching. It is the same for every kiln build that writes this format, on every
/// machine, so a cache exported by one runner is hit by another.
const KEY_VERSION: &str = "kiln build cache 2";

/// The layer a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The compressed blob's media type.
    pub media_type: String,
    /// The compressed blob's digest.
    pub digest: Digest,
    /// The compressed blob's size.
    pub size: u64,
    /// The sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// When the step ran (RFC 3339): a rebuild from the cache keeps the image's times, so it
    /// gives the same image.
    pub created: String,
}

/// The inputs of one step, in order, hashed into its key.
///
/// Each input is an explicit serialised structure (strings, numbers and the instruction types'
/// `Serialize` forms: field names and enum spellings are part of the format), written as
/// canonical JSON: object keys sorted, no whitespace. Never `Debug` output, which may change
/// with a compiler or a refactoring; the pinned keys in the tests below fail if a key moves.
#[derive(Debug, Clone)]
pub(crate) struct KeyBuilder {
    parts: Vec<(&'static str, serde_json::Value)>,
    /// What some parts refer to (by index), for explanations; not hashed.
    labels: BTreeMap<usize, Label>,
}

impl KeyBuilder {
    /// A key computed on top of the filesystem whose key is `parent`.
    pub fn on(parent: &Digest) -> Self {
        Self {
            parts: vec![
                ("version", KEY_VERSION.into()),
                ("parent", parent.to_string().into()),
            ],
            labels: BTreeMap::new(),
        }
    }

    /// Adds a named input.
    pub fn with(mut self, name: &'static str, value: impl Serialize) -> Self {
        // Serialising plain data into a `Value` cannot fail (no maps with non-string keys).
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.parts.push((name, value));
        self
    }

    /// Adds a named input and what it refers to.
    pub fn labelled(mut self, name: &'static str, value: impl Serialize, label: Label) -> Self {
        self.labels.insert(self.parts.len(), label);
        self.with(name, value)
    }

    /// The inputs with their labels, for [`super::explain`].
    pub fn inputs(&self) -> Vec<Input> {
        self.parts
            .iter()
            .enumerate()
            .map(|(i, (name, value))| Input {
                name: (*name).to_owned(),
                value: value.clone(),
                label: self.labels.get(&i).cloned(),
            })
            .collect()
    }

    /// The key: the sha256 of the inputs as a JSON array of `[name, value]` pairs. A
    /// `serde_json::Value` object keeps its keys sorted, so the text is canonical.
    pub fn finish(&self) -> Digest {
        Digest::of(self.text().as_bytes())
    }

    /// The canonical JSON text the key is the sha256 of.
    pub fn text(&self) -> String {
        serde_json::to_string(&self.parts).unwrap_or_default()
    }
}

/// The key of a root filesystem no step has touched yet.
pub(crate) fn base_key(what: &str) -> Digest {
    Digest::of(format!("{KEY_VERSION}\nbase {what}").as_bytes())
}

/// Where the record of `url` is kept among the step records.
fn url_key(url: &str) -> Digest {
    Digest::of(format!("{KEY_VERSION}\nurl {url}").as_bytes())
}

/// What a URL's body was when last downloaded: what the step is keyed on, and what makes the
/// next request conditional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlRecord {
    /// The body's sha256.
    pub digest: Digest,
    /// Its `Last-Modified`, parsed (the file's mtime).
    pub last_modified: Option<i64>,
    /// The response's validators.
    pub validators: Validators,
}

impl UrlRecord {
    /// The record of a body just downloaded.
    pub fn of(body: &Download) -> Self {
        Self {
            digest: body.digest.clone(),
            last_modified: body.last_modified,
            validators: body.validators.clone(),
        }
    }
}

/// The build cache of a store.
#[derive(Debug, Clone)]
pub struct BuildCache {
    store: Store,
    dir: PathBuf,
}

impl BuildCache {
    /// The build cache of `store` (its directory is created on the first write).
    pub fn open(store: &Store) -> Self {
        Self {
            store: store.clone(),
            dir: store.cache_dir().join("build"),
        }
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(key.hex())
    }

    /// The record of `key`, if there is a readable one. A damaged record reads as a miss.
    pub fn get(&self, key: &Digest) -> Option<CacheRecord> {
        self.read(key)
    }

    /// Records `record` under `key`, atomically.
    pub fn put(&self, key: &Digest, record: &CacheRecord) -> Result<(), StoreError> {
        self.write(key, record)
    }

    /// What `url` was the last time it was downloaded in full, if recorded.
    pub fn url(&self, url: &str) -> Option<UrlRecord> {
        self.read(&url_key(url))
    }

    /// Records what `url` was, atomically.
    pub fn put_url(&self, url: &str, record: &UrlRecord) -> Result<(), StoreError> {
        self.write(&url_key(url), record)
    }

    fn read<T: serde::de::DeserializeOwned>(&self, key: &Digest) -> Option<T> {
        let bytes = fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write(&self, key: &Digest, record: &impl Serialize) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(StoreError::io("create", &self.dir))?;
        let bytes = serde_json::to_vec(record)
            .map_err(|e| StoreError::io("encode", &self.dir)(e.into()))?;
        self.store.replace_file(&self.path(key), &bytes)
    }

    /// The layer blobs the records name, for gc to keep.
    pub fn blob_roots(&self) -> io::Result<Vec<Digest>> {
        let mut roots: Vec<Digest> = self
            .records()?
            .into_iter()
            .filter_map(|path| fs::read(path).ok())
            .filter_map(|bytes| serde_json::from_slice::<CacheRecord>(&bytes).ok())
            .map(|record| record.digest)
            .collect();
        roots.sort();
        roots.dedup();
        Ok(roots)
    }

    /// Checks every step record (`kiln fsck`, after [`Store::fsck`], which may have deleted
    /// blobs): one naming an absent layer blob, or that parses as no kind of record, is stale
    /// (harmless: it reads as a miss). With `repair`, stale records are removed.
    pub fn fsck(&self, repair: bool) -> Result<(Vec<Problem>, Vec<Repair>), StoreError> {
        let records = self
            .records()
            .map_err(StoreError::io("read directory", &self.dir))?;
        let (mut problems, mut repairs) = (Vec::new(), Vec::new());
        for path in records {
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("read", &path)(e)),
            };
            let missing = match serde_json::from_slice::<CacheRecord>(&bytes) {
                // A remote layer (a lazy import) is not stale: it is fetched when needed.
                Ok(record) if self.store.is_available(&record.digest) => continue,
                Ok(record) => Some(record.digest),
                Err(_) if serde_json::from_slice::<UrlRecord>(&bytes).is_ok() => continue,
                Err(_) => None,
            };
            if repair {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(StoreError::io("remove", &path)(e));
                    }
                    _ => repairs.push(Repair::RemovedRecord { path: path.clone() }),
                }
            }
            problems.push(Problem::StaleRecord { path, missing });
        }
        Ok((problems, repairs))
    }

    /// Forgets every record; returns how many there were.
    pub fn clear(&self) -> io::Result<usize> {
        let records = self.records()?;
        for path in &records {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(records.len())
    }

    fn records(&self) -> io::Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if is_record_name(&path) {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths)
    }
}

/// Record files are named by 64 lowercase hex digits; anything else is not ours.
fn is_record_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.len() == 64 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> CacheRecord {
        CacheRecord {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
            digest: Digest::of(&[n]),
            size: u64::from(n),
            diff_id: Digest::of(&[n, n]),
            created: "2024-01-01T00:00:00Z".to_owned(),
        }
    }

    #[test]
    fn records_round_trip_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = BuildCache::open(&store);
        let (a, b) = (base_key("a"), base_key("b"));
        assert_eq!(cache.get(&a), None);
        cache.put(&a, &record(1)).unwrap();
        cache.put(&b, &record(2)).unwrap();
        cache.put(&b, &record(1)).unwrap();
        assert_eq!(cache.get(&a), Some(record(1)));
        assert_eq!(cache.get(&b), Some(record(1)));
        assert_eq!(cache.blob_roots().unwrap(), vec![record(1).digest]);
        fs::write(cache.dir.join("README"), "not a record").unwrap();
        assert_eq!(cache.clear().unwrap(), 2);
        assert_eq!(cache.get(&a), None);
        assert!(cache.dir.join("README").exists());
    }

    #[test]
    fn a_damaged_record_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = BuildCache::open(&store);
        let key = base_key("x");
        fs::create_dir_all(&cache.dir).unwrap();
        fs::write(cache.path(&key), b"{\"digest\":").unwrap();
        assert_eq!(cache.get(&key), None);
    }

    #[test]
    fn keys_depend_on_every_input_and_its_name() {
        let parent = base_key("scratch");
        let key = |parts: &[(&'static str, &str)]| {
            parts
                .iter()
                .fold(KeyBuilder::on(&parent), |k, (n, v)| k.with(n, *v))
                .finish()
        };
        let one = key(&[("instruction", "RUN a"), ("env", "A=1")]);
        assert_eq!(one, key(&[("instruction", "RUN a"), ("env", "A=1")]));
        assert_ne!(one, key(&[("instruction", "RUN a"), ("env", "A=2")]));
        assert_ne!(one, key(&[("instruction", "RUN a"), ("user", "A=1")]));
        assert_ne!(one, key(&[("instruction", "RUN a")]));
        assert_ne!(
            one,
            KeyBuilder::on(&base_key("other"))
                .with("instruction", "RUN a")
                .with("env", "A=1")
                .finish()
        );
    }
}
