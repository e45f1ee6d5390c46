//! The local store: an OCI image layout on disk, with atomic commits (DESIGN decision 1).
//!
//! ```text
//! $KILN_ROOT/            mode 0700: images may hold setuid binaries (CVE-2021-41091)
//!   oci/oci-layout       {"imageLayoutVersion":"1.0.0"}
//!   oci/index.json       tags: manifests annotated org.opencontainers.image.ref.name
//!   oci/blobs/sha256/    content, named by digest
//!   snapshots/ cache/    for the snapshotter and the build cache; cache/remote/: blobs known
//!                        but not yet fetched ([`remote`]: a lazy cache import)
//!   tmp/                 blobs being written (blob-*), index.json being replaced (replace-*),
//!                        layers being unpacked, RUN roots: only ever under a lease or the lock
//!   lock                 flock: every index.json change, and gc
//!   lease.lock           flock: shared by running builds, exclusive by gc
//! ```
//!
//! Invariants, which hold after a crash or Ctrl-C at any point:
//!
//! - A file under `blobs/sha256/` is complete and hashes to its name: it is written in `tmp/`,
//!   fsynced, verified, renamed into place, and the directory fsynced.
//! - `index.json` always parses: it is replaced by rename, under the lock.
//! - Every tag's closure (manifest → config and layers, index → manifests) is in `blobs/`: a tag
//!   moves only after that is checked, under the same lock that gc holds while deleting.
//! - Digests are validated before any path is formed from them, so no name escapes `blobs/`.
//!
//! Anything a crash leaves behind is garbage in `tmp/` or an unreferenced blob. The first lease
//! taken on an idle store sweeps `tmp/` (so the next build, pull or push cleans up after a
//! crash), and [`Store::gc`] removes both. Two kiln processes may share one store.
//! [`Store::remove`] (`kiln rmi`) and [`Store::prune`] (`kiln prune`) delete under the same
//! guards as gc. [`Store::fsck`] (`kiln fsck`) checks all of this, and repairs what a failing
//! disk or a hand in the directory broke. The `crash` module's points let the tests kill kiln
//! between any two steps of a commit.

mod blob;
mod compress;
pub(crate) mod crash;
mod error;
mod fsck;
mod gc;
mod images;
mod index;
mod prune;
pub mod registry;
pub mod remote;
mod remove;
mod tmp;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

pub use blob::BlobWriter;
pub use error::StoreError;
pub use fsck::{FsckReport, Problem, Repair};
pub use gc::GcReport;
pub use prune::PruneReport;
pub use remote::{Fetch, RemoteBlob, RemoteSource};
pub use remove::Removal;

/// The OCI image-layout version kiln writes and reads.
pub const LAYOUT_VERSION: &str = "1.0.0";

/// The largest manifest or index kiln reads (reliability rule 7): the registry client's limit.
pub const MAX_MANIFEST_BYTES: u64 = kiln_registry::manifest::MAX_MANIFEST_BYTES;

/// The largest image config kiln reads; configs carry the whole history, so more room.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Temporary files of blob writers in `tmp/`.
const TMP_BLOB_PREFIX: &str = "blob-";

/// Temporary files of atomic replacements in `tmp/`.
const TMP_REPLACE_PREFIX: &str = "replace-";

/// The mode of the store root and of every directory kiln creates in it.
const DIR_MODE: u32 = 0o700;

/// A handle on a store directory. Cheap to clone; every handle (in any process) sees the same
/// store, and all of them may write at once.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Brings remote blobs in when they are opened ([`remote`]); `None`: they stay remote.
    fetcher: Option<std::sync::Arc<dyn Fetch>>,
}

/// A running build's claim on the store: while any lease is held, [`Store::gc`] refuses to run,
/// so blobs a build has written but not yet tagged are not collected. Every [`BlobWriter`]
/// holds one too. The kernel drops a dead process's leases.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

impl Store {
    /// Opens the store at `root`, creating the layout if needed and forcing the root to 0700.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = Self {
            root: root.into(),
            fetcher: None,
        };
        create_dir(&store.root, true)?;
        fs::set_permissions(&store.root, fs::Permissions::from_mode(DIR_MODE))
            .map_err(StoreError::io("set permissions of", &store.root))?;
        for dir in [
            store.oci_dir(),
            store.oci_dir().join("blobs"),
            store.blobs_dir(),
            store.snapshots_dir(),
            store.cache_dir(),
            store.tmp_dir(),
        ] {
            create_dir(&dir, false)?;
        }
        let layout = store.oci_dir().join("oci-layout");
        if !layout.exists() || !store.index_path().exists() {
            // Created under the lock: two processes opening a new store at once must not both
            // write an empty index.json, the second over a tag the first just made.
            let _lock = store.lock()?;
            if !layout.exists() {
                let bytes = format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#);
                store.replace_file(&layout, bytes.as_bytes())?;
            }
            if !store.index_path().exists() {
                let empty = crate::image::build_index(&[], crate::image::MediaTypes::Oci)?;
                store.write_index(&empty)?;
            }
        }
        store.check_layout(&layout)?;
        Ok(store)
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI image layout directory (what `skopeo inspect oci:<dir>:<name>` reads).
    pub fn oci_dir(&self) -> PathBuf {
        self.root.join("oci")
    }

    /// Where unpacked layers live, one directory per chainID.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Where the build cache keeps its index.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Scratch space on the store's filesystem, so that renames out of it are atomic.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.oci_dir().join("blobs").join("sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.oci_dir().join("index.json")
    }

    /// Takes a lease for the duration of a build (see [`Lease`]). Blocks while gc runs. When
    /// nobody else holds a lease or the lock, first sweeps what dead processes left in `tmp/`.
    pub fn lease(&self) -> Result<Lease, StoreError> {
        self.sweep_if_idle();
        let file = flock(&self.root.join("lease.lock"), FlockOperation::LockShared)?;
        Ok(Lease { _file: file })
    }

    /// Takes the store lock: held for every index.json change and for gc.
    fn lock(&self) -> Result<File, StoreError> {
        flock(&self.root.join("lock"), FlockOperation::LockExclusive)
    }

    fn check_layout(&self, layout: &Path) -> Result<(), StoreError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct OciLayout {
            image_layout_version: String,
        }
        let bytes = fs::read(layout).map_err(StoreError::io("read", layout))?;
        let found = serde_json::from_slice::<OciLayout>(&bytes)
            .map(|l| l.image_layout_version)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        if found != LAYOUT_VERSION {
            return Err(StoreError::UnsupportedLayout {
                path: layout.to_owned(),
                found,
            });
        }
        Ok(())
    }

    /// Replaces `dest` (a file in the store) with `bytes` atomically: temp file in `tmp/`,
    /// fsync, rename, fsync the destination directory.
    pub(crate) fn replace_file(&self, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp_dir = self.tmp_dir();
        let mut tmp = tempfile::Builder::new()
            .prefix(TMP_REPLACE_PREFIX)
            .tempfile_in(&tmp_dir)
            .map_err(StoreError::io("create a temporary file in", &tmp_dir))?;
        let (first, second) = bytes.split_at(bytes.len() / 2);
        tmp.write_all(first)
            .and_then(|()| {
                crash::point(crash::REPLACE_PARTIAL);
                tmp.write_all(second)
            })
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(StoreError::io("write", tmp.path()))?;
        crash::point(crash::REPLACE_SYNCED);
        tmp.persist(dest)
            .map_err(|e| StoreError::io("rename into", dest)(e.error))?;
        crash::point(crash::REPLACE_RENAMED);
        sync_parent(dest)
    }
}

/// Where the store lives when neither `--root` nor `KILN_ROOT` says: `/var/lib/kiln` when
/// started by root (in a container too), else (rootless kiln included: root only in its own user
/// namespace) `$XDG_DATA_HOME/kiln` or `~/.local/share/kiln`.
pub fn default_root() -> Result<PathBuf, StoreError> {
    default_root_for(
        crate::privileges::current().started_as_root(),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    )
    .ok_or(StoreError::NoHome)
}

/// [`default_root`] with its inputs given.
///
/// As the XDG base directory spec says, a relative `XDG_DATA_HOME` is ignored.
pub fn default_root_for(
    is_root: bool,
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if is_root {
        return Some(PathBuf::from("/var/lib/kiln"));
    }
    if let Some(xdg) = xdg_data_home.map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Some(xdg.join("kiln"));
    }
    let home = home.filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".local/share/kiln"))
}

/// Creates a directory with mode 0700 (before umask); an existing one is fine.
fn create_dir(path: &Path, recursive: bool) -> Result<(), StoreError> {
    match DirBuilder::new()
        .mode(DIR_MODE)
        .recursive(recursive)
        .create(path)
    {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        r => r.map_err(StoreError::io("create directory", path)),
    }
}

/// Opens (creating) a lock file and takes `op` on it, retrying when a signal interrupts the wait.
fn flock(path: &Path, op: FlockOperation) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(StoreError::io("open lock file", path))?;
    loop {
        match rustix::fs::flock(&file, op) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(StoreError::io("lock", path)(e.into())),
        }
    }
}

/// Fsyncs the directory holding `path`, so a rename into it survives a crash.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync directory", dir))
}

/// The entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    let mut entries = fs::read_dir(dir)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(StoreError::io("read directory", dir))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}
