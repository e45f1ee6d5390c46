//! Crash points: a deterministic fault-injection hook for kiln's own crash-safety tests.
//!
//! `KILN_CRASH_AT=<point>[:<n>]` makes the process SIGKILL itself the `n`th time (1 by default)
//! it reaches the named point, exactly as if it had been killed there from outside: no
//! destructor runs, no buffer is flushed, no lock is released except by the kernel. The points
//! sit in the store's commit paths, between the steps whose order makes a commit atomic, so the
//! integration tests can stop `kiln build`, `pull`, `push`, `tag`, `rmi` and `prune` at every
//! one of them and check that what is left is consistent (see `tests/crash.rs`). The variable
//! is for those tests only; unset (or naming no point) it costs one atomic load per point.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// After each write into a blob's temporary file (data possibly still buffered).
pub(crate) const BLOB_WRITE: &str = "blob-write";
/// A blob's temporary file is complete and fsynced; it is not yet renamed into `blobs/`.
pub(crate) const BLOB_SYNCED: &str = "blob-synced";
/// A blob has just been renamed into `blobs/`; the directory is not yet fsynced.
pub(crate) const BLOB_RENAMED: &str = "blob-renamed";
/// Half of a small file being replaced (`index.json`, a cache record) is in its temporary file.
pub(crate) const REPLACE_PARTIAL: &str = "replace-partial";
/// The replacement is complete and fsynced in `tmp/`, not yet renamed over the file.
pub(crate) const REPLACE_SYNCED: &str = "replace-synced";
/// The replacement has just been renamed over the file.
pub(crate) const REPLACE_RENAMED: &str = "replace-renamed";
/// `kiln rmi` has written the new `index.json` and deleted no blob yet.
pub(crate) const UNTAGGED: &str = "untagged";
/// `kiln rmi` or gc has just deleted a blob.
pub(crate) const BLOB_DELETED: &str = "blob-deleted";
/// A layer is unpacked (or a RUN's change kept) in `tmp/`, not yet renamed into `snapshots/`.
pub(crate) const SNAPSHOT_UNPACKED: &str = "snapshot-unpacked";
/// `kiln prune` has moved a snapshot out of `snapshots/` and not yet deleted it.
pub(crate) const SNAPSHOT_MOVED: &str = "snapshot-moved";
/// Removing a directory tree (a leftover in `tmp/`, a pruned snapshot) has removed one entry.
pub(crate) const TREE_ENTRY_REMOVED: &str = "tree-entry-removed";

/// The environment variable that arms a point.
const ENV: &str = "KILN_CRASH_AT";

/// The armed point and at which visit it fires.
struct Armed {
    point: String,
    at: u64,
    visits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(ENV).ok()?;
            let (point, at) = match value.rsplit_once(':') {
                Some((point, n)) => (point, n.parse().ok()?),
                None => (value.as_str(), 1),
            };
            Some(Armed {
                point: point.to_owned(),
                at,
                visits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Marks that the process has reached `point`: kills it there if `KILN_CRASH_AT` says so.
pub(crate) fn point(point: &str) {
    let Some(armed) = armed() else { return };
    if armed.point != point {
        return;
    }
    if armed.visits.fetch_add(1, Ordering::SeqCst) + 1 == armed.at {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; this only runs if the kill itself failed.
        std::process::abort();
    }
}
