//! `RUN --mount` as the sandbox sees it: what may be mounted at a path inside a RUN, and the
//! persistent cache directories `type=cache` mounts come from.
//!
//! The build resolves a `--mount` into a [`Mount`]: a host path to bind (a cache directory, or
//! a directory or file of the context or a stage, already resolved inside its own root by the
//! caller), a view of one whose writes are discarded (`type=bind,rw`), a tmpfs, or a secret's
//! bytes. Targets are created as stubs in the rootfs when missing and removed afterwards like
//! every other stub (`rootfs.rs`); they are resolved inside the rootfs, so a RUN that replaces a
//! target's parent with a symlink cannot make the cleanup touch the host (CVE-2024-23652).
//! Secrets travel to the sandbox in memory (the config socket), are written into the sandbox's
//! own tmpfs `/dev`, bound read-only onto the target and unlinked from `/dev`: they never touch
//! a disk, a layer or the build's logs, and their `Debug` output is redacted.
//!
//! Cache directories live under one root, named by the sha256 of their id, so an id like
//! `../../etc` cannot name anything outside it (CVE-2024-9675). Sharing follows BuildKit:
//! `shared` uses the directory concurrently, `locked` waits for exclusive use, `private` uses a
//! fresh temporary directory when another RUN holds it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use kiln_registry::Digest;
use rustix::fs::{CWD, FlockOperation, Gid, Mode, RenameFlags, Uid};
use rustix::io::Errno;

use super::ExecError;
use crate::plan::lower::Sharing;

/// Something mounted at a path inside the RUN.
#[derive(Clone, PartialEq, Eq)]
pub struct Mount {
    /// The absolute path inside the RUN (relative paths are taken from `/`).
    pub target: String,
    /// What is mounted there.
    pub kind: MountKind,
}

/// What a [`Mount`] mounts.
#[derive(Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A host directory or file. Writes, when allowed, reach it (a cache directory).
    Bind {
        /// The host path.
        source: PathBuf,
        /// Whether the RUN may not write.
        read_only: bool,
    },
    /// A writable view of a host directory or file whose writes are discarded after the RUN
    /// (`type=bind,rw`).
    Discarded {
        /// The host path.
        source: PathBuf,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Its size limit in bytes (the kernel's default when `None`).
        size: Option<u64>,
    },
    /// A secret, as a read-only file.
    Secret {
        /// The secret's bytes.
        data: Vec<u8>,
        /// The file's owner.
        uid: u32,
        /// The file's group.
        gid: u32,
        /// The file's mode.
        mode: u32,
    },
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("target", &self.target)
            .field("kind", &self.kind)
            .finish()
    }
}

impl std::fmt::Debug for MountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountKind::Bind { source, read_only } => f
                .debug_struct("Bind")
                .field("source", source)
                .field("read_only", read_only)
                .finish(),
            MountKind::Discarded { source } => {
                f.debug_struct("Discarded").field("source", source).finish()
            }
            MountKind::Tmpfs { size } => f.debug_struct("Tmpfs").field("size", size).finish(),
            MountKind::Secret { uid, gid, mode, .. } => f
                .debug_struct("Secret")
                .field("data", &"<redacted>")
                .field("uid", uid)
                .field("gid", gid)
                .field("mode", &format_args!("{mode:o}"))
                .finish(),
        }
    }
}

/// The persistent directories of `type=cache` mounts.
#[derive(Debug, Clone)]
pub struct CacheMounts {
    root: PathBuf,
}

/// One cache directory in use; the lock (if any) is released and a private fallback directory
/// removed when it is dropped.
#[derive(Debug)]
pub struct CacheDir {
    path: PathBuf,
    _lock: Option<File>,
    temporary: bool,
}

impl CacheDir {
    /// The directory to bind.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        if self.temporary {
            // Nothing to report to; a leftover is garbage in the cache root.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExecError {
    let path = path.to_owned();
    move |source| ExecError::Io { op, path, source }
}

/// The owner and mode a new cache directory gets (BuildKit: 0:0, 0755).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOwner {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode.
    pub mode: u32,
}

impl Default for CacheOwner {
    fn default() -> Self {
        Self {
            uid: 0,
            gid: 0,
            mode: 0o755,
        }
    }
}

impl CacheMounts {
    /// Cache directories under `root` (e.g. the store's `cache/mounts`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory of cache `id` for one RUN, created with `owner` the first time.
    pub fn acquire(
        &self,
        id: &str,
        sharing: Sharing,
        owner: CacheOwner,
    ) -> Result<CacheDir, ExecError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io_err("create", &self.root))?;
        let name = Digest::of(id.as_bytes()).hex().to_owned();
        let path = self.dir_of(id);
        if !path.is_dir() {
            self.create(&path, owner)?;
        }
        let lock_path = self.root.join(format!("{name}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let op = match sharing {
            Sharing::Shared => FlockOperation::LockShared,
            Sharing::Locked => FlockOperation::LockExclusive,
            Sharing::Private => FlockOperation::NonBlockingLockExclusive,
        };
        loop {
            match rustix::fs::flock(&lock, op) {
                Ok(()) => {
                    return Ok(CacheDir {
                        path,
                        _lock: Some(lock),
                        temporary: false,
                    });
                }
                Err(Errno::INTR) => continue,
                Err(Errno::WOULDBLOCK) => {
                    // Busy and private: a fresh directory just for this RUN.
                    let dir = tempfile::Builder::new()
                        .prefix("private-")
                        .tempdir_in(&self.root)
                        .map_err(io_err("create a directory in", &self.root))?
                        .keep();
                    set_owner(&dir, owner)?;
                    return Ok(CacheDir {
                        path: dir,
                        _lock: None,
                        temporary: true,
                    });
                }
                Err(e) => return Err(io_err("lock", &lock_path)(e.into())),
            }
        }
    }

    /// The persistent directory of cache `id` (whether or not it exists yet).
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.root.join(Digest::of(id.as_bytes()).hex())
    }

    /// When cache `id` has no directory yet, makes one with `owner` and has `fill` put its
    /// first contents in (a fresh runner restoring an exported cache) before it takes the
    /// directory's place, so a RUN sees all of them or none. `Ok(false)` when the directory
    /// exists, `fill` had nothing, or another process made it first.
    pub fn seed<E: From<ExecError>>(
        &self,
        id: &str,
        owner: CacheOwner,
        fill: impl FnOnce(&Path) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let path = self.dir_of(id);
        if path.is_dir() {
            return Ok(false);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io_err("create", &self.root))?;
        let tmp = tempfile::Builder::new()
            .prefix("new-")
            .tempdir_in(&self.root)
            .map_err(io_err("create a directory in", &self.root))?;
        if !fill(tmp.path())? {
            return Ok(false);
        }
        set_owner(tmp.path(), owner)?;
        match rustix::fs::renameat_with(CWD, tmp.path(), CWD, &path, RenameFlags::NOREPLACE) {
            Ok(()) => {
                let _ = tmp.keep();
                Ok(true)
            }
            Err(Errno::EXIST) | Err(Errno::NOTEMPTY) => Ok(false),
            Err(e) => Err(io_err("create", &path)(e.into()).into()),
        }
    }

    /// Creates the cache directory at `path` atomically, so concurrent first users agree.
    fn create(&self, path: &Path, owner: CacheOwner) -> Result<(), ExecError> {
        let tmp = tempfile::Builder::new()
            .prefix("new-")
            .tempdir_in(&self.root)
            .map_err(io_err("create a directory in", &self.root))?;
        set_owner(tmp.path(), owner)?;
        match rustix::fs::renameat_with(CWD, tmp.path(), CWD, path, RenameFlags::NOREPLACE) {
            Ok(()) => {
                // Renamed away: nothing left for the guard to remove.
                let _ = tmp.keep();
                Ok(())
            }
            Err(Errno::EXIST) | Err(Errno::NOTEMPTY) => Ok(()),
            Err(e) => Err(io_err("create", path)(e.into())),
        }
    }
}

fn set_owner(path: &Path, owner: CacheOwner) -> Result<(), ExecError> {
    rustix::fs::chown(
        path,
        Some(Uid::from_raw(owner.uid)),
        Some(Gid::from_raw(owner.gid)),
    )
    .map_err(|e| io_err("chown", path)(e.into()))?;
    rustix::fs::chmod(path, Mode::from_raw_mode(owner.mode & 0o7777))
        .map_err(|e| io_err("chmod", path)(e.into()))
}

/// A mount as the sandbox's init performs it (targets resolved to host paths in the rootfs).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) enum InnerMount {
    /// `mount --rbind source target`, then read-only if asked.
    Bind {
        source: PathBuf,
        target: PathBuf,
        read_only: bool,
    },
    /// An overlay with a throwaway upper directory.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    /// A tmpfs.
    Tmpfs { target: PathBuf, size: Option<u64> },
    /// A secret file written into the sandbox's `/dev` and bound onto the target.
    Secret {
        target: PathBuf,
        data: Vec<u8>,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

impl std::fmt::Debug for InnerMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InnerMount::Bind { target, .. } => write!(f, "Bind({})", target.display()),
            InnerMount::Overlay { target, .. } => write!(f, "Overlay({})", target.display()),
            InnerMount::Tmpfs { target, .. } => write!(f, "Tmpfs({})", target.display()),
            InnerMount::Secret { target, .. } => write!(f, "Secret({})", target.display()),
        }
    }
}

/// Whether a mount's target must be a file (else a directory).
pub(super) fn target_is_file(kind: &MountKind) -> Result<bool, ExecError> {
    Ok(match kind {
        MountKind::Bind { source, .. } | MountKind::Discarded { source } => {
            let meta = std::fs::metadata(source).map_err(io_err("stat", source))?;
            !meta.is_dir()
        }
        MountKind::Tmpfs { .. } => false,
        MountKind::Secret { .. } => true,
    })
}

/// The init's form of `mount`, whose target was resolved to `target`; `scratch` holds upper and
/// work directories of discarded views.
pub(super) fn inner(
    mount: &Mount,
    target: PathBuf,
    scratch: &Path,
    index: usize,
) -> Result<InnerMount, ExecError> {
    Ok(match &mount.kind {
        MountKind::Bind { source, read_only } => InnerMount::Bind {
            source: source.clone(),
            target,
            read_only: *read_only,
        },
        MountKind::Discarded { source } => {
            let meta = std::fs::metadata(source).map_err(io_err("stat", source))?;
            if meta.is_dir() {
                let upper = scratch.join(format!("mount-{index}-upper"));
                let work = scratch.join(format!("mount-{index}-work"));
                for dir in [&upper, &work] {
                    std::fs::create_dir(dir).map_err(io_err("create", dir))?;
                }
                InnerMount::Overlay {
                    lower: source.clone(),
                    upper,
                    work,
                    target,
                }
            } else {
                // A file cannot be an overlay: a private copy takes the writes.
                let copy = scratch.join(format!("mount-{index}-file"));
                std::fs::copy(source, &copy).map_err(io_err("copy", source))?;
                InnerMount::Bind {
                    source: copy,
                    target,
                    read_only: false,
                }
            }
        }
        MountKind::Tmpfs { size } => InnerMount::Tmpfs {
            target,
            size: *size,
        },
        MountKind::Secret {
            data,
            uid,
            gid,
            mode,
        } => InnerMount::Secret {
            target,
            data: data.clone(),
            uid: *uid,
            gid: *gid,
            mode: *mode,
        },
    })
}
