//! `tmp/` after a crash: what a dead process left there, and sweeping it away.
//!
//! Everything kiln makes in `tmp/` is made under a [`Lease`](super::Lease) (blob writers,
//! builds, runs, exports, loads, pushes) or under the store lock (replacements of
//! `index.json`). So a process holding the lease exclusively and the lock knows that every entry
//! in `tmp/` belongs to a process that died: a half-written blob, a layer half unpacked, the
//! scratch directory of a RUN. gc and `kiln rmi` sweep them; so does every lease taken while
//! nobody else holds one or the lock ([`Store::sweep_if_idle`]), which makes the next build,
//! pull or push after a crash clean up after it. A RUN killed together with its kiln leaves its
//! overlay mounted in `tmp/`: mounts under an entry are detached before it is removed, so no
//! removal ever descends into a mounted snapshot. Trees are removed without following symlinks,
//! opening up directories that deny access (an overlay workdir's `work/` is mode 000).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use super::{Store, StoreError, crash, flock, sorted_entries};

/// An entry of `tmp/` left by a process that died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Leftover {
    /// The entry.
    pub(super) path: PathBuf,
    /// Mount points at or below it, deepest first.
    pub(super) mounts: Vec<PathBuf>,
}

impl Store {
    /// The entries of `tmp/`, sorted. Only leftovers when the caller holds the lease
    /// exclusively and the lock.
    pub(super) fn leftovers(&self) -> Result<Vec<Leftover>, StoreError> {
        let mut out = Vec::new();
        let mut canonical = None;
        for entry in sorted_entries(&self.tmp_dir())? {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let mounts = if is_dir {
                if canonical.is_none() {
                    canonical = Some(self.canonical_tmp()?);
                }
                let at = canonical
                    .as_deref()
                    .unwrap_or(&path)
                    .join(entry.file_name());
                crate::snapshot::mounts_under(&at)
                    .map_err(StoreError::io("read the mount table for", &path))?
            } else {
                Vec::new()
            };
            out.push(Leftover { path, mounts });
        }
        Ok(out)
    }

    /// Removes every entry of `tmp/`, detaching mounts first; returns what was removed. The
    /// caller holds the lease exclusively and the lock.
    pub(super) fn sweep_locked(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut removed = Vec::new();
        for leftover in self.leftovers()? {
            let path = leftover.path;
            for point in &leftover.mounts {
                crate::snapshot::detach_mount(point).map_err(StoreError::io("unmount", point))?;
            }
            match remove_tree(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path)(e)),
            }
        }
        Ok(removed)
    }

    /// Sweeps `tmp/` if, right now, no process holds a lease or the lock; never waits. Best
    /// effort: what cannot be removed stays for gc or `kiln fsck --repair` to report.
    pub(super) fn sweep_if_idle(&self) {
        let idle = flock(
            &self.root.join("lease.lock"),
            FlockOperation::NonBlockingLockExclusive,
        )
        .and_then(|lease| {
            let lock = flock(
                &self.root.join("lock"),
                FlockOperation::NonBlockingLockExclusive,
            )?;
            Ok((lease, lock))
        });
        if let Ok(_held) = idle
            && fs::read_dir(self.tmp_dir()).is_ok_and(|mut d| d.next().is_some())
        {
            let _ = self.sweep_locked();
        }
    }

    /// `tmp/` by its canonical path, as the mount table names it.
    fn canonical_tmp(&self) -> Result<PathBuf, StoreError> {
        let tmp = self.tmp_dir();
        fs::canonicalize(&tmp).map_err(StoreError::io("resolve", &tmp))
    }
}

/// Removes `path` and everything below it, depth first, without following symlinks. A
/// directory that denies its owner access is opened up first.
pub(super) fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    let mut entries = fs::read_dir(path)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        remove_tree(&entry.path())?;
        crash::point(crash::TREE_ENTRY_REMOVED);
    }
    fs::remove_dir(path)
}
