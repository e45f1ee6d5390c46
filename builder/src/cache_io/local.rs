//! `type=local` caches: an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`), as buildx writes it, the cache manifest named in `index.json` by the
//! `org.opencontainers.image.ref.name` annotation (`latest` unless `tag=` says otherwise).
//!
//! Reads verify every blob against its digest. Writes go to a temporary file in the directory
//! and are renamed into place, blobs first and `index.json` last, so an interrupted export
//! leaves the previous cache readable and no half-written blob under a blob's name. Blobs
//! already present are not written again; other tags' entries in `index.json` are kept.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use kiln_registry::Digest;
use serde::{Deserialize, Serialize};

use super::format::Blob;
use super::{ImportError, Origin};

/// The annotation naming a manifest in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The OCI image layout version written to `oci-layout`.
const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An entry of `index.json` (only the fields kiln reads; others are kept when rewriting).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// `index.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Entry>,
}

/// An OCI image layout directory holding caches.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    fn err(origin: &Origin, what: impl Into<String>) -> impl FnOnce(io::Error) -> ImportError {
        let (origin, what) = (origin.clone(), what.into());
        move |source| ImportError::Local {
            origin,
            what,
            source,
        }
    }

    /// The bytes of the manifest tagged `tag` (the only one, if none is tagged).
    pub(super) fn read_manifest(&self, tag: &str, origin: &Origin) -> Result<Vec<u8>, ImportError> {
        let index = self
            .read_index()
            .map_err(Self::err(origin, "reading index.json"))?;
        let tagged: Vec<&Entry> = index
            .manifests
            .iter()
            .filter(|e| e.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
            .collect();
        let entry = match (tagged.as_slice(), index.manifests.as_slice()) {
            ([one], _) => *one,
            ([], [only]) if !only.annotations.contains_key(REF_NAME) => only,
            _ => {
                return Err(Self::err(origin, "reading index.json")(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no manifest tagged {tag:?}"),
                )));
            }
        };
        let blob = Blob {
            media_type: entry.media_type.clone(),
            digest: entry.digest.clone(),
            size: entry.size,
        };
        self.read_small(&blob, kiln_registry::manifest::MAX_MANIFEST_BYTES, origin)
    }

    fn read_index(&self) -> io::Result<Index> {
        let bytes = fs::read(self.dir.join("index.json"))?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// A blob of at most `limit` bytes, verified.
    pub(super) fn read_small(
        &self,
        blob: &Blob,
        limit: u64,
        origin: &Origin,
    ) -> Result<Vec<u8>, ImportError> {
        let what = format!("reading blob {}", blob.digest);
        let invalid =
            |m: String| Self::err(origin, &what)(io::Error::new(io::ErrorKind::InvalidData, m));
        if blob.size > limit {
            return Err(invalid(format!(
                "{} bytes is over the {limit} byte limit",
                blob.size
            )));
        }
        let mut bytes = Vec::new();
        self.open_blob(&blob.digest, origin)?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(Self::err(origin, &what))?;
        let found = Digest::of(&bytes);
        if found != blob.digest || bytes.len() as u64 != blob.size {
            return Err(invalid(format!(
                "content is {} bytes with digest {found}, expected {} bytes",
                bytes.len(),
                blob.size
            )));
        }
        Ok(bytes)
    }

    /// Opens a blob for reading (the caller verifies what it reads).
    pub(super) fn open_blob(&self, digest: &Digest, origin: &Origin) -> Result<File, ImportError> {
        File::open(self.blob_path(digest))
            .map_err(Self::err(origin, format!("opening blob {digest}")))
    }

    /// Whether the directory has a blob.
    pub(super) fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Creates the layout's directories and `oci-layout` when missing.
    pub(super) fn create(&self) -> io::Result<()> {
        fs::create_dir_all(self.dir.join("blobs").join("sha256"))?;
        let layout = self.dir.join("oci-layout");
        if !layout.exists() {
            self.replace(&layout, &mut &LAYOUT[..])?;
        }
        Ok(())
    }

    /// Writes a blob from `content`, verified against `digest`, unless it is there already.
    pub(super) fn put_blob(&self, digest: &Digest, content: &mut dyn Read) -> io::Result<()> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let dest = self.blob_path(digest);
        let dir = dest.parent().unwrap_or(&self.dir);
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        let mut out = kiln_registry::DigestWriter::new(tmp);
        io::copy(content, &mut out)?;
        out.flush()?;
        let (tmp, found, _) = out.finish();
        if &found != digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {digest} read back as {found}"),
            ));
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        Ok(())
    }

    /// Names `manifest` `tag` in `index.json` (replacing what had that name), atomically.
    pub(super) fn tag(&self, tag: &str, manifest: &Blob) -> io::Result<()> {
        let mut index = match self.read_index() {
            Ok(index) => index,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index {
                schema_version: 2,
                media_type: Some(kiln_registry::manifest::OCI_INDEX.to_owned()),
                manifests: Vec::new(),
            },
            Err(e) => return Err(e),
        };
        index
            .manifests
            .retain(|e| e.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
        index.manifests.push(Entry {
            media_type: manifest.media_type.clone(),
            digest: manifest.digest.clone(),
            size: manifest.size,
            annotations: BTreeMap::from([(REF_NAME.to_owned(), tag.to_owned())]),
            rest: BTreeMap::new(),
        });
        index.manifests.sort_by(|a, b| {
            a.annotations
                .get(REF_NAME)
                .cmp(&b.annotations.get(REF_NAME))
        });
        let bytes = crate::image::canonical_json(&index)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.replace(&self.dir.join("index.json"), &mut &bytes[..])
    }

    /// Replaces `dest` with `content` by a temporary file and a rename.
    fn replace(&self, dest: &Path, content: &mut dyn Read) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        io::copy(content, &mut tmp)?;
        tmp.as_file().sync_all()?;
        tmp.persist(dest).map_err(|e| e.error)?;
        Ok(())
    }
}
