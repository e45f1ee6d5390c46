//! Removing images (`kiln rmi`): untag, then delete exactly the blobs that only the removed
//! images used, in one step.
//!
//! Unlike [`Store::gc`], which deletes everything unreachable, removal deletes only blobs in the
//! closure of the tags it removes, so garbage of unrelated origin stays for `kiln prune`. It
//! runs under the same guards as gc: an exclusive lease (so it fails with
//! [`StoreError::Busy`], untagging nothing, while a build holds a lease and may be using the
//! image or have written blobs not yet tagged), and the store lock (so no tag can move onto a
//! blob while it is deleted). The tags go first, by rename of `index.json`; a crash after that
//! leaves only unreferenced blobs, which gc collects.

use std::fs;
use std::io;

use kiln_registry::Digest;
use oci_spec::image::Descriptor;

use super::gc::Root;
use super::index::ref_name;
use super::{Store, StoreError, crash};

/// What [`Store::remove`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// The tags removed, in the order they were asked for; names that were not tagged are
    /// left out.
    pub untagged: Vec<String>,
    /// The blobs deleted, in the order the removed images reference them (depth first: a
    /// manifest, its config, its layers).
    pub deleted: Vec<Digest>,
    /// Their total size in bytes.
    pub freed_bytes: u64,
}

impl Store {
    /// Removes the tags `names` and deletes the blobs of their images that nothing else
    /// reaches: no remaining tag, no untagged `index.json` entry, and none of `extra_roots`
    /// (the build cache's digests, as for [`Store::gc`]).
    ///
    /// Fails with [`StoreError::Busy`], changing nothing, while a build or a blob writer holds
    /// a lease; and fails, changing nothing, if an image that stays cannot be read (what it
    /// needs is then unknown).
    pub fn remove(&self, names: &[&str], extra_roots: &[Digest]) -> Result<Removal, StoreError> {
        let _lease = self.exclusive_lease()?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let is_removed = |d: &Descriptor| ref_name(d).is_some_and(|n| names.contains(&n));
        let (removed, kept): (Vec<Descriptor>, Vec<Descriptor>) =
            index.manifests().iter().cloned().partition(is_removed);
        if removed.is_empty() {
            return Ok(Removal::default());
        }

        let mut kept_roots = kept
            .iter()
            .map(Root::from_descriptor)
            .collect::<Result<Vec<_>, _>>()?;
        kept_roots.extend(extra_roots.iter().map(Root::bare));
        let kept_walk = self.walk(kept_roots);
        if let Some((_, err)) = kept_walk.broken.into_iter().next() {
            return Err(err);
        }
        let removed_roots = removed
            .iter()
            .map(Root::from_descriptor)
            .collect::<Result<Vec<_>, _>>()?;
        // A removed image that cannot be read is still untagged; only the blobs the walk
        // could reach are deleted, and gc can take the rest once it is readable or gone.
        let removed_walk = self.walk(removed_roots);

        let mut untagged: Vec<String> = Vec::new();
        for name in names {
            if !untagged.iter().any(|u| u == name)
                && removed.iter().any(|d| ref_name(d) == Some(name))
            {
                untagged.push((*name).to_owned());
            }
        }
        index.set_manifests(kept);
        self.write_index(&index)?;
        crash::point(crash::UNTAGGED);

        let mut removal = Removal {
            untagged,
            ..Removal::default()
        };
        for digest in removed_walk.order {
            if kept_walk.reached.contains(&digest) {
                continue;
            }
            let path = self.blob_path(&digest);
            let len = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => meta.len(),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("stat", &path)(e)),
            };
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("remove", &path)(e)),
            }
            crash::point(crash::BLOB_DELETED);
            removal.freed_bytes += len;
            removal.deleted.push(digest);
        }
        // Under these guards, whatever is in tmp/ is left by a dead process. Sweeping it is a
        // courtesy here (gc does it for real), so failing to does not fail the removal.
        let _ = self.sweep_locked();
        Ok(removal)
    }
}
