//! Tags: `index.json` entries annotated `org.opencontainers.image.ref.name`.
//!
//! A tag name is an opaque string here (the caller normalises references, e.g.
//! `docker.io/library/busybox:latest`). Every change happens under the store lock and replaces
//! `index.json` by rename, so concurrent readers, which take no lock, always see a whole file,
//! and concurrent writers never lose each other's tags. A tag moves only after the image's
//! whole closure is checked to be in the store, under the same lock gc holds.

use std::collections::HashMap;
use std::fs;

use oci_spec::image::{ANNOTATION_REF_NAME, Descriptor, ImageIndex};

use super::gc::Root;
use super::{Store, StoreError};
use crate::image::{self, ImageError, canonical_json};

/// The tag a descriptor in `index.json` carries, if any.
pub(super) fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

impl Store {
    /// Reads `index.json`. Takes no lock: it is only ever replaced whole.
    pub(super) fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(StoreError::io("read", &path))?;
        image::parse_index(&bytes, None).map_err(|source| StoreError::CorruptIndex {
            path: path.clone(),
            source,
        })
    }

    /// Replaces `index.json`. The caller holds the lock.
    pub(super) fn write_index(&self, index: &ImageIndex) -> Result<(), StoreError> {
        let bytes = canonical_json(index)?;
        self.replace_file(&self.index_path(), &bytes)
    }

    /// Points `name` at `desc` (a manifest or index), replacing where it pointed before.
    ///
    /// Refuses with [`StoreError::Incomplete`] if the manifest blob or anything it references
    /// is missing, and with the blob's own error if a manifest in the closure is corrupt.
    pub fn tag(&self, name: &str, desc: &Descriptor) -> Result<(), StoreError> {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(StoreError::InvalidName {
                name: name.to_owned(),
            });
        }
        let media_type = desc.media_type();
        if !image::is_manifest_media_type(media_type) && !image::is_index_media_type(media_type) {
            return Err(ImageError::NotAManifest {
                media_type: media_type.to_string(),
            }
            .into());
        }
        // A tag is the last step of a build, a pull or a load: the moment to clean up after
        // one that was killed.
        self.sweep_if_idle();
        let _lock = self.lock()?;
        let walk = self.walk([Root::from_descriptor(desc)?]);
        if let Some(missing) = walk.missing.into_iter().next() {
            return Err(StoreError::Incomplete {
                name: name.to_owned(),
                missing,
            });
        }
        if let Some((_, err)) = walk.broken.into_iter().next() {
            return Err(err);
        }

        let mut index = self.read_index()?;
        let mut entry = desc.clone();
        let mut annotations: HashMap<String, String> =
            entry.annotations().clone().unwrap_or_default();
        annotations.insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
        entry.set_annotations(Some(annotations));
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        manifests.push(entry);
        sort_entries(&mut manifests);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Removes the tag `name`; returns whether it existed. Blobs stay until [`Store::gc`].
    pub fn untag(&self, name: &str) -> Result<bool, StoreError> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests().len();
        let manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        if manifests.len() == before {
            return Ok(false);
        }
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(true)
    }

    /// The descriptor `name` points at, if it is tagged.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>, StoreError> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(name))
            .cloned())
    }

    /// Every tag and its descriptor, sorted by name. Untagged entries (other tools may add
    /// them) are not listed, but are kept and protect their blobs from gc.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>, StoreError> {
        let mut tags: Vec<(String, Descriptor)> = self
            .read_index()?
            .manifests()
            .iter()
            .filter_map(|d| ref_name(d).map(|n| (n.to_owned(), d.clone())))
            .collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(tags)
    }
}

/// Orders `index.json` entries by tag, then digest, so the file does not depend on the order
/// in which tags were made.
fn sort_entries(entries: &mut [Descriptor]) {
    entries.sort_by(|a, b| {
        (ref_name(a), a.digest().as_ref()).cmp(&(ref_name(b), b.digest().as_ref()))
    });
}
