//! `kiln prune`: garbage-collect blobs ([`Store::gc`]) and remove the snapshots no tag needs,
//! under one exclusive lease.
//!
//! A snapshot is an unpacked layer stack in `snapshots/`, named by its chainID (the hex digits,
//! or `sha256:` and the hex digits). A tagged image needs the snapshot of every prefix of its
//! layer stack, so the ones kept are the chainIDs of every prefix of every tagged (or untagged
//! but listed) image's `rootfs.diff_ids`. Entries not named like a chainID are not kiln's to
//! judge and are left alone. The exclusive lease guarantees no build is using a snapshot. A
//! snapshot directory is renamed into `tmp/` before it is deleted: a snapshot under its chainID
//! must be whole (builds stack it as the layer), and a crash midway then leaves only a leftover.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kiln_registry::Digest;
use oci_spec::image::Descriptor;

use super::tmp::remove_tree;
use super::{GcReport, Store, StoreError, crash, sorted_entries};
use crate::image::{self, chain_ids};

/// How deep indexes may nest before kiln stops following them.
const MAX_INDEX_DEPTH: usize = 8;

/// What [`Store::prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The blob collection.
    pub gc: GcReport,
    /// Snapshot directories removed, in name order.
    pub removed_snapshots: Vec<PathBuf>,
    /// The bytes of regular files they held.
    pub snapshot_bytes: u64,
}

/// The chainID a snapshot entry is named by, if it is named like one.
fn snapshot_chain_id(name: &str) -> Option<Digest> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    format!("sha256:{hex}").parse().ok()
}

impl Store {
    /// Removes every blob no tag or `extra_roots` reaches (as [`Store::gc`]) and every snapshot
    /// no tagged image needs. Fails with [`StoreError::Busy`] while a lease is held.
    pub fn prune(&self, extra_roots: &[Digest]) -> Result<PruneReport, StoreError> {
        let _lease = self.exclusive_lease()?;
        let gc = self.gc_leased(extra_roots)?;
        let _lock = self.lock()?;
        let needed = self.needed_chain_ids()?;
        let mut report = PruneReport {
            gc,
            ..PruneReport::default()
        };
        for entry in sorted_entries(&self.snapshots_dir())? {
            let name = entry.file_name();
            let Some(chain_id) = name.to_str().and_then(snapshot_chain_id) else {
                continue;
            };
            if needed.contains(&chain_id) {
                continue;
            }
            let path = entry.path();
            let bytes = tree_bytes(&path);
            match self.remove_snapshot(&path, &chain_id) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("remove", &path)(e)),
            }
            report.snapshot_bytes += bytes;
            report.removed_snapshots.push(path);
        }
        Ok(report)
    }

    /// Removes the snapshot at `path`. A directory is first renamed into `tmp/`, so that a
    /// crash midway leaves a leftover there, never half a snapshot under its chainID (which a
    /// build would take for the whole layer).
    fn remove_snapshot(&self, path: &Path, chain_id: &Digest) -> io::Result<()> {
        if !fs::symlink_metadata(path)?.is_dir() {
            return fs::remove_file(path);
        }
        let doomed = self.tmp_dir().join(format!("pruned-{}", chain_id.hex()));
        // Left by a prune that died (nothing else can be in tmp/ under the exclusive lease).
        match remove_tree(&doomed) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::rename(path, &doomed)?;
        crash::point(crash::SNAPSHOT_MOVED);
        remove_tree(&doomed)
    }

    /// The chainIDs of every prefix of every image `index.json` lists.
    fn needed_chain_ids(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let mut needed = BTreeSet::new();
        let mut stack: Vec<(Descriptor, usize)> = self
            .read_index()?
            .manifests()
            .iter()
            .map(|d| (d.clone(), 0))
            .collect();
        while let Some((desc, depth)) = stack.pop() {
            if image::is_index_media_type(desc.media_type()) {
                if depth < MAX_INDEX_DEPTH {
                    let index = self.read_index_blob(&desc)?;
                    stack.extend(index.manifests().iter().map(|d| (d.clone(), depth + 1)));
                }
                continue;
            }
            if !image::is_manifest_media_type(desc.media_type()) {
                continue;
            }
            let manifest = self.read_manifest(&desc)?;
            let config = self.read_config(&manifest)?;
            needed.extend(chain_ids(&config.rootfs.diff_ids));
        }
        Ok(needed)
    }
}

/// The bytes of the regular files under `path` (best effort: what cannot be read counts 0).
fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| tree_bytes(&e.path()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = Digest::of(b"c");
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        let ab = Digest::of(format!("{a} {b}").as_bytes());
        let abc = Digest::of(format!("{ab} {c}").as_bytes());
        assert_eq!(ids, [a, ab, abc]);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn snapshot_names() {
        let hex = "a".repeat(64);
        let digest: Digest = format!("sha256:{hex}").parse().unwrap();
        let table: [(&str, Option<&Digest>); 5] = [
            (&hex, Some(&digest)),
            (&format!("sha256:{hex}"), Some(&digest)),
            ("lock", None),
            (&"A".repeat(64), None),
            (&format!("{hex}.tmp"), None),
        ];
        for (name, expected) in table {
            assert_eq!(snapshot_chain_id(name).as_ref(), expected, "{name}");
        }
    }
}
