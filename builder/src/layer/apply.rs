//! The safe applier: a layer tar (or an `ADD` archive) onto a root directory, treating the tar
//! as hostile.
//!
//! Every entry name is normalised lexically (`.` and empty components dropped, a leading `/`
//! clamped to the root, a `..` that climbs above the root rejected). Its parent directory is
//! then resolved *inside* the root by [`Root`] (symlinks in the image resolve against the root,
//! so `var/run -> /run` keeps working and `l -> /tmp` writes to `<root>/tmp`), and the final
//! component is created with `*at` calls that never follow it. Replacing follows Docker: a
//! directory over a directory merges attributes, anything else is removed and recreated, so a
//! file is never written through an existing symlink or hard link. Hard links must name an
//! existing entry inside the root and link it without following it. Modes are set with
//! `fchmod` on an fd opened `O_NOFOLLOW` (after `fchown`, which clears setuid bits), device nodes
//! are created only where [`Privileges::mknod`] allows (others are skipped and reported), an owner
//! that does not exist in kiln's user namespace is an error (never a wrong owner), overlayfs xattrs from the archive
//! are never applied, and directory times are restored after everything inside them.
//!
//! Whiteouts: in [`ApplyMode::Merge`] `.wh.<name>` deletes `<name>` (unless this same layer
//! created it: a whiteout only hides lower layers) and `.wh..wh..opq` empties its directory of
//! everything this layer did not create; in [`ApplyMode::OverlayLower`] they become what
//! overlayfs reads in a lowerdir: a 0/0 character device and `trusted.overlay.opaque=y` (or
//! `user.overlay.opaque=y` where trusted attributes are out of reach, read by a `userxattr`
//! mount).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::apply_fs::{self, Root, display_path, file_type, lstat_at, remove_all};
use super::compress::decompress;
use super::entry::{Kind, Meta, device_of, kind_of, meta_of, normalize};
use super::walk::{OPAQUE_MARKER, OVERLAY_XATTR_PREFIXES, WHITEOUT_PREFIX};
use crate::privileges::{self, PrivilegeError, Privileges};

/// aufs's own metadata files (`.wh..wh.plnk`, `.wh..wh.aufs`): not whiteouts, skipped as Docker
/// does.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
/// The xattr that makes a lowerdir directory opaque to overlayfs.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The same for an overlay mounted with `userxattr` (in a user namespace).
const USER_OVERLAY_OPAQUE_XATTR: &str = "user.overlay.opaque";
/// Read size when copying file contents out of the archive.
const COPY_BUFFER: usize = 128 * 1024;

/// What a root directory is being filled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Whiteouts delete from the root: a flattened rootfs, `ADD` of an archive, a local export.
    Merge,
    /// The root is a fresh directory that will be an overlayfs lowerdir: whiteouts become
    /// 0/0 character devices and opaque markers `trusted.overlay.opaque=y`.
    OverlayLower,
}

/// How to apply a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOptions {
    /// What the root is for.
    pub mode: ApplyMode,
    /// Set each entry's owner from the archive's numeric uid/gid (needs privilege).
    pub preserve_ownership: bool,
    /// With `preserve_ownership`, give every entry this uid/gid instead (`ADD --chown`).
    pub owner: Option<(u32, u32)>,
}

impl ApplyOptions {
    /// Options for `mode`, preserving ownership when the process may ([`Privileges::chown`]).
    pub fn new(mode: ApplyMode) -> Self {
        Self {
            mode,
            preserve_ownership: privileges::current().chown,
            owner: None,
        }
    }

    /// The owner an entry gets: the override, else the archive's.
    fn owner_of(&self, meta: &Meta) -> (Uid, Gid) {
        let (uid, gid) = self.owner.unwrap_or((meta.uid, meta.gid));
        (Uid::from_raw(uid), Gid::from_raw(gid))
    }
}

/// What applying a layer did, for the caller to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Archive entries processed (extension headers not counted).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Device nodes not created because the process may not create them.
    pub skipped_devices: Vec<PathBuf>,
    /// Extended attributes not applied: overlayfs's own, or ones the filesystem or the
    /// process's privileges do not allow (path, attribute name).
    pub ignored_xattrs: Vec<(PathBuf, String)>,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The root directory could not be opened.
    #[error("opening the destination {}", path.display())]
    Root {
        /// The root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The archive stream is corrupt or could not be read.
    #[error("corrupt or unreadable archive at entry #{index}")]
    Read {
        /// 1-based number of the entry being read.
        index: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry could not be applied.
    #[error("archive entry #{index} {path:?}")]
    Entry {
        /// 1-based number of the entry.
        index: u64,
        /// The entry's name as in the archive, lossily decoded.
        path: String,
        /// The cause.
        #[source]
        source: EntryError,
    },
    /// A directory's times could not be restored after its contents were written.
    #[error("restoring the times of {}", path.display())]
    DirTimes {
        /// The directory, relative to the root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Why one archive entry was rejected or failed.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The name climbs above the root with `..`.
    #[error("path escapes destination")]
    PathEscapes,
    /// A hard link's target climbs above the root with `..`.
    #[error("hardlink target outside destination")]
    HardlinkEscapes,
    /// A hard link names something that does not exist (yet) in the root.
    #[error("hardlink target {target:?} not yet extracted")]
    HardlinkTargetMissing {
        /// The target as in the archive, lossily decoded.
        target: String,
    },
    /// A non-directory entry names the root itself (`.`, `./`, `/`).
    #[error("cannot replace the destination root")]
    ReplacesRoot,
    /// A whiteout for `.`, `..` or an empty name.
    #[error("invalid whiteout")]
    InvalidWhiteout,
    /// A regular-file entry whose name ends with `/`.
    #[error("regular file name ends with a slash")]
    TrailingSlash,
    /// A link entry without a target.
    #[error("link entry without a target")]
    MissingLinkTarget,
    /// A GNU sparse entry (layers never need them, and they can declare terabytes).
    #[error("sparse entries are not supported")]
    Sparse,
    /// An entry type kiln does not apply.
    #[error("unsupported entry type {0:?}")]
    UnsupportedType(char),
    /// A header field or PAX record could not be decoded.
    #[error("invalid header field {field}")]
    Header {
        /// The field.
        field: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A filesystem operation failed.
    #[error("{op}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The entry's owner does not exist in kiln's user namespace.
    #[error("setting the owner")]
    Owner(#[source] PrivilegeError),
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> EntryError {
    move |source| EntryError::Io { op, source }
}

fn errno(op: &'static str) -> impl FnOnce(Errno) -> EntryError {
    move |e| EntryError::Io {
        op,
        source: e.into(),
    }
}

/// Applies the layer blob `blob` (gzip, zstd or plain tar, detected by magic bytes) onto
/// `root`.
pub fn apply_blob<R: BufRead>(
    root: &Path,
    blob: R,
    options: &ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    let reader = decompress(blob).map_err(|source| ApplyError::Read { index: 1, source })?;
    apply_layer(root, reader, options)
}

/// Applies the uncompressed layer tar `tar` onto `root`. The stream is read to its end, so a
/// decompressing reader verifies its checksum even past the tar's end marker.
pub fn apply_layer<R: Read>(
    root: &Path,
    tar: R,
    options: &ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    let root_dir = Root::open(root).map_err(|source| ApplyError::Root {
        path: root.to_owned(),
        source,
    })?;
    let mut applier = Applier {
        root: root_dir,
        options: *options,
        privileges: privileges::current(),
        unpacked: HashSet::new(),
        dir_times: Vec::new(),
        stats: ApplyStats::default(),
        copy: vec![0; COPY_BUFFER],
    };
    let mut archive = tar::Archive::new(tar);
    let mut index = 0;
    {
        let entries = archive
            .entries()
            .map_err(|source| ApplyError::Read { index: 1, source })?;
        for entry in entries {
            index += 1;
            let mut entry = entry.map_err(|source| ApplyError::Read { index, source })?;
            applier
                .apply_entry(&mut entry)
                .map_err(|source| ApplyError::Entry {
                    index,
                    path: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                    source,
                })?;
        }
    }
    applier.restore_dir_times()?;
    // Drain what follows the end marker so the decompressor checks its trailer and the caller's
    // digest covers every byte.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|source| ApplyError::Read {
        index: index + 1,
        source,
    })?;
    Ok(applier.stats)
}

/// A directory whose times are set once the whole archive is applied.
struct DirTime {
    comps: Vec<Vec<u8>>,
    dev: u64,
    ino: u64,
    mtime: Timespec,
}

struct Applier {
    root: Root,
    options: ApplyOptions,
    /// Which devices, owners and attributes may be created.
    privileges: &'static Privileges,
    /// Every path this layer created, for whiteout semantics (same-layer entries stay).
    unpacked: HashSet<Vec<u8>>,
    dir_times: Vec<DirTime>,
    stats: ApplyStats,
    copy: Vec<u8>,
}

impl Applier {
    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), EntryError> {
        let raw = entry.path_bytes().into_owned();
        let Some(kind) = kind_of(entry.header().as_bytes()[156], &raw)? else {
            return Ok(());
        };
        self.stats.entries += 1;
        let comps = normalize(&raw).ok_or(EntryError::PathEscapes)?;
        if comps.last().is_some_and(|c| c.starts_with(WHITEOUT_PREFIX)) {
            return self.whiteout(&comps);
        }
        let meta = meta_of(entry)?;
        let Some((name, parent_comps)) = comps.split_last() else {
            return match kind {
                Kind::Dir => self.root_dir(&meta),
                _ => Err(EntryError::ReplacesRoot),
            };
        };
        let parent = self
            .root
            .dir_creating(parent_comps)
            .map_err(io_err("resolving the parent directory"))?;
        let parent = parent.as_fd();
        match kind {
            Kind::Dir => self.dir(parent, name, &comps, &meta)?,
            Kind::Regular => self.regular(parent, name, &comps, &meta, entry)?,
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(EntryError::MissingLinkTarget)?
                    .into_owned();
                replace_slot(parent, name)?;
                rustix::fs::symlinkat(target.as_slice(), parent, name.as_slice())
                    .map_err(errno("creating a symlink"))?;
                self.finish_special(parent, name, &comps, &meta, None)?;
            }
            Kind::Hardlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(EntryError::MissingLinkTarget)?
                    .into_owned();
                self.hardlink(parent, name, &comps, &target)?;
            }
            Kind::Fifo => {
                replace_slot(parent, name)?;
                rustix::fs::mknodat(
                    parent,
                    name.as_slice(),
                    FileType::Fifo,
                    Mode::from_raw_mode(0o600),
                    0,
                )
                .map_err(errno("creating a fifo"))?;
                self.finish_special(parent, name, &comps, &meta, Some(FileType::Fifo))?;
            }
            Kind::Char | Kind::Block => {
                let file_type = if kind == Kind::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let (major, minor) = device_of(entry.header())?;
                if !self.privileges.mknod {
                    self.stats.skipped_devices.push(display_path(&comps));
                    return Ok(());
                }
                replace_slot(parent, name)?;
                let dev = rustix::fs::makedev(major, minor);
                match rustix::fs::mknodat(
                    parent,
                    name.as_slice(),
                    file_type,
                    Mode::from_raw_mode(0o600),
                    dev,
                ) {
                    Ok(()) => {}
                    // A container's seccomp or device cgroup may refuse even root.
                    Err(Errno::PERM) => {
                        self.stats.skipped_devices.push(display_path(&comps));
                        return Ok(());
                    }
                    Err(e) => return Err(errno("creating a device node")(e)),
                }
                self.finish_special(parent, name, &comps, &meta, Some(file_type))?;
            }
        }
        self.unpacked.insert(apply_fs::join(&comps));
        Ok(())
    }

    /// A directory entry for the root itself (`./`): its attributes apply to the root.
    fn root_dir(&mut self, meta: &Meta) -> Result<(), EntryError> {
        let fd = rustix::fs::openat(
            self.root.fd(),
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno("opening the root"))?;
        self.set_attributes(&fd, &[], meta)?;
        self.defer_dir_time(&fd, Vec::new(), meta)
    }

    fn dir(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        comps: &[Vec<u8>],
        meta: &Meta,
    ) -> Result<(), EntryError> {
        let existing = lstat_at(parent, name).map_err(io_err("inspecting the destination"))?;
        match existing {
            Some(st) if file_type(&st) == FileType::Directory => {}
            Some(_) => {
                remove_all(parent, name).map_err(io_err("removing the existing entry"))?;
                mkdir(parent, name)?;
            }
            None => mkdir(parent, name)?,
        }
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno("opening the directory"))?;
        self.set_attributes(&fd, comps, meta)?;
        self.defer_dir_time(&fd, comps.to_vec(), meta)
    }

    fn regular<R: Read>(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        comps: &[Vec<u8>],
        meta: &Meta,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), EntryError> {
        replace_slot(parent, name)?;
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(errno("creating the file"))?;
        let mut file = File::from(fd);
        let size = entry.size();
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.copy) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("reading the entry's data")(e)),
            };
            file.write_all(&self.copy[..n])
                .map_err(io_err("writing the file"))?;
            written += n as u64;
        }
        if written != size {
            return Err(io_err("reading the entry's data")(
                io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        self.stats.bytes += written;
        let fd = OwnedFd::from(file);
        self.set_attributes(&fd, comps, meta)?;
        rustix::fs::futimens(&fd, &times(meta.mtime)).map_err(errno("setting times"))
    }

    fn hardlink(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        comps: &[Vec<u8>],
        raw_target: &[u8],
    ) -> Result<(), EntryError> {
        let target = normalize(raw_target).ok_or(EntryError::HardlinkEscapes)?;
        let missing = || EntryError::HardlinkTargetMissing {
            target: String::from_utf8_lossy(raw_target).into_owned(),
        };
        if target == comps {
            // A link to itself is already what it asks for.
            return Ok(());
        }
        let Some((target_name, target_parent)) = target.split_last() else {
            return Err(missing());
        };
        let target_dir = self
            .root
            .dir(target_parent)
            .map_err(io_err("resolving the hardlink target"))?
            .ok_or_else(missing)?;
        if lstat_at(target_dir.as_fd(), target_name)
            .map_err(io_err("inspecting the hardlink target"))?
            .is_none()
        {
            return Err(missing());
        }
        replace_slot(parent, name)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink is a link to the symlink itself.
        match rustix::fs::linkat(
            &target_dir,
            target_name.as_slice(),
            parent,
            name,
            AtFlags::empty(),
        ) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(missing()),
            Err(e) => Err(errno("creating a hard link")(e)),
        }
    }

    /// Owner, mode, xattrs and times of a symlink, fifo or device node just created as `name`
    /// in `parent`. Fifos and devices get their mode through an `O_PATH` fd checked to be the
    /// node created (never a symlink swapped in); symlinks have no mode of their own.
    fn finish_special(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        comps: &[Vec<u8>],
        meta: &Meta,
        expect: Option<FileType>,
    ) -> Result<(), EntryError> {
        if self.options.preserve_ownership {
            let (uid, gid) = self.owner_of(meta)?;
            rustix::fs::chownat(
                parent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno("setting the owner"))?;
        }
        if let Some(expect) = expect {
            let fd = rustix::fs::openat(
                parent,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno("opening the node"))?;
            let st = rustix::fs::fstat(&fd).map_err(errno("inspecting the node"))?;
            if file_type(&st) != expect {
                return Err(errno("the node was replaced while being created")(
                    Errno::STALE,
                ));
            }
            rustix::fs::chmod(
                apply_fs::proc_path(fd.as_fd()),
                Mode::from_raw_mode(meta.mode),
            )
            .map_err(errno("setting the mode"))?;
        }
        for (key, value) in &meta.xattrs {
            if is_overlay_xattr(key) {
                self.ignore_xattr(comps, key);
                continue;
            }
            let path = apply_fs::proc_path_at(parent, name);
            let result = rustix::fs::lsetxattr(&path, key.as_slice(), value, XattrFlags::empty());
            self.xattr_result(comps, key, result)?;
        }
        rustix::fs::utimensat(parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno("setting times"))
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs (chown clears file
    /// capabilities) on an fd opened without following symlinks.
    fn set_attributes(
        &mut self,
        fd: &OwnedFd,
        comps: &[Vec<u8>],
        meta: &Meta,
    ) -> Result<(), EntryError> {
        if self.options.preserve_ownership {
            let (uid, gid) = self.owner_of(meta)?;
            rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(errno("setting the owner"))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
            .map_err(errno("setting the mode"))?;
        for (key, value) in &meta.xattrs {
            if is_overlay_xattr(key) {
                self.ignore_xattr(comps, key);
                continue;
            }
            let result = rustix::fs::fsetxattr(fd, key.as_slice(), value, XattrFlags::empty());
            self.xattr_result(comps, key, result)?;
        }
        Ok(())
    }

    /// The owner an entry gets, which must exist in this user namespace: a wrong owner is
    /// never written silently.
    fn owner_of(&self, meta: &Meta) -> Result<(Uid, Gid), EntryError> {
        let (uid, gid) = self.options.owner_of(meta);
        self.privileges
            .check_owner(uid.as_raw(), gid.as_raw())
            .map_err(EntryError::Owner)?;
        Ok((uid, gid))
    }

    /// Overlay xattrs are never applied; unsupported or unprivileged ones are reported.
    fn xattr_result(
        &mut self,
        comps: &[Vec<u8>],
        key: &[u8],
        result: rustix::io::Result<()>,
    ) -> Result<(), EntryError> {
        match result {
            Ok(()) => Ok(()),
            Err(e)
                if e == Errno::NOTSUP
                    || e == Errno::OPNOTSUPP
                    || e == Errno::PERM
                    || e == Errno::ACCESS =>
            {
                self.ignore_xattr(comps, key);
                Ok(())
            }
            Err(e) => Err(errno("setting an extended attribute")(e)),
        }
    }

    fn ignore_xattr(&mut self, comps: &[Vec<u8>], key: &[u8]) {
        self.stats.ignored_xattrs.push((
            display_path(comps),
            String::from_utf8_lossy(key).into_owned(),
        ));
    }

    fn defer_dir_time(
        &mut self,
        fd: &OwnedFd,
        comps: Vec<Vec<u8>>,
        meta: &Meta,
    ) -> Result<(), EntryError> {
        let st = rustix::fs::fstat(fd).map_err(errno("inspecting the directory"))?;
        self.dir_times.push(DirTime {
            comps,
            dev: st.st_dev,
            ino: st.st_ino,
            mtime: meta.mtime,
        });
        Ok(())
    }

    fn whiteout(&mut self, comps: &[Vec<u8>]) -> Result<(), EntryError> {
        let Some((last, parent_comps)) = comps.split_last() else {
            return Err(EntryError::InvalidWhiteout);
        };
        if last.as_slice() == OPAQUE_MARKER {
            return self.opaque(parent_comps);
        }
        if last.starts_with(AUFS_META_PREFIX) {
            return Ok(());
        }
        let target = &last[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(EntryError::InvalidWhiteout);
        }
        let mut target_comps = parent_comps.to_vec();
        target_comps.push(target.to_vec());
        match self.options.mode {
            ApplyMode::Merge => {
                if self.unpacked.contains(&apply_fs::join(&target_comps)) {
                    return Ok(());
                }
                let Some(parent) = self
                    .root
                    .dir(parent_comps)
                    .map_err(io_err("resolving the whiteout's directory"))?
                else {
                    return Ok(());
                };
                remove_all(parent.as_fd(), target).map_err(io_err("removing a whited-out entry"))
            }
            ApplyMode::OverlayLower => {
                let parent = self
                    .root
                    .dir_creating(parent_comps)
                    .map_err(io_err("resolving the whiteout's directory"))?;
                // Something this layer created already hides the lower entry.
                if lstat_at(parent.as_fd(), target)
                    .map_err(io_err("inspecting the destination"))?
                    .is_some()
                {
                    return Ok(());
                }
                rustix::fs::mknodat(&parent, target, FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(errno("creating an overlay whiteout"))
            }
        }
    }

    fn opaque(&mut self, dir_comps: &[Vec<u8>]) -> Result<(), EntryError> {
        match self.options.mode {
            ApplyMode::Merge => {
                let Some(dir) = self
                    .root
                    .dir(dir_comps)
                    .map_err(io_err("resolving the opaque directory"))?
                else {
                    return Ok(());
                };
                self.clear_except_unpacked(&dir, dir_comps)
                    .map_err(io_err("emptying an opaque directory"))
            }
            ApplyMode::OverlayLower => {
                let dir = self
                    .root
                    .dir_creating(dir_comps)
                    .map_err(io_err("resolving the opaque directory"))?;
                let fd = readable_dir(&dir).map_err(errno("opening the opaque directory"))?;
                // What the overlay mount will read: trusted.* as root, user.* with `userxattr`.
                let name = if self.privileges.trusted_xattrs {
                    OVERLAY_OPAQUE_XATTR
                } else {
                    USER_OVERLAY_OPAQUE_XATTR
                };
                rustix::fs::fsetxattr(&fd, name, b"y", XattrFlags::empty())
                    .map_err(errno("marking a directory opaque"))
            }
        }
    }

    /// Removes everything below `dir` that this layer did not create.
    fn clear_except_unpacked(&self, dir: &OwnedFd, dir_comps: &[Vec<u8>]) -> io::Result<()> {
        let mut stack = vec![(readable_dir(dir)?, dir_comps.to_vec())];
        while let Some((fd, comps)) = stack.pop() {
            for (name, kind) in apply_fs::list(&fd)? {
                let mut child = comps.clone();
                child.push(name.clone());
                if !self.unpacked.contains(&apply_fs::join(&child)) {
                    remove_all(fd.as_fd(), &name)?;
                } else if kind == FileType::Directory {
                    let sub = rustix::fs::openat(
                        &fd,
                        name.as_slice(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    stack.push((sub, child));
                }
            }
        }
        Ok(())
    }

    fn restore_dir_times(&mut self) -> Result<(), ApplyError> {
        for dir in std::mem::take(&mut self.dir_times) {
            let fail = |source: io::Error| ApplyError::DirTimes {
                path: display_path(&dir.comps),
                source,
            };
            let (parent, name): (OwnedFd, &[u8]) = match dir.comps.split_last() {
                None => (
                    rustix::fs::openat(
                        self.root.fd(),
                        ".",
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| fail(e.into()))?,
                    b".",
                ),
                Some((name, parent_comps)) => match self.root.dir(parent_comps).map_err(fail)? {
                    Some(parent) => (parent, name.as_slice()),
                    None => continue,
                },
            };
            // Only the directory that was applied: a later entry may have replaced it.
            match lstat_at(parent.as_fd(), name).map_err(fail)? {
                Some(st)
                    if file_type(&st) == FileType::Directory
                        && st.st_dev == dir.dev
                        && st.st_ino == dir.ino => {}
                _ => continue,
            }
            rustix::fs::utimensat(&parent, name, &times(dir.mtime), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| fail(e.into()))?;
        }
        Ok(())
    }
}

fn mkdir(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), EntryError> {
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
        .map_err(errno("creating the directory"))
}

/// A readable fd for the directory `dir` refers to (which may be an `O_PATH` fd).
fn readable_dir(dir: &OwnedFd) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Makes room for a non-directory entry: whatever is at `name` goes, never followed.
fn replace_slot(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), EntryError> {
    remove_all(parent, name).map_err(io_err("removing the existing entry"))
}

/// Overlayfs's own attributes would change what a lowerdir means: never applied from an archive.
fn is_overlay_xattr(key: &[u8]) -> bool {
    OVERLAY_XATTR_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Access and modification time both set to `mtime`.
fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}
