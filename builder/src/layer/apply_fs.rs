//! The applier's filesystem seam: resolving paths inside a root without ever leaving it, and
//! removing trees without following symlinks.
//!
//! [`Root`] holds a directory fd. Directories are looked up with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..` and absolute symlinks (`var/run ->
//! /run`) resolve against the root as if it were `/` (containerd's semantics), and the kernel
//! rather than a string check keeps the walk inside. Missing directories are created by a
//! resolver that applies the same rules one component at a time (`openat(O_NOFOLLOW)`, reading
//! symlinks itself, `..` by its own stack of canonical names, never the kernel's `..`); it also
//! serves kernels without `openat2`. Final components are always handled by the caller with
//! `*at` calls that do not follow symlinks. Removal descends with `O_NOFOLLOW | O_DIRECTORY`
//! and unlinks relative to the fds it holds.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// Symlinks followed while resolving one path (Linux's own limit).
const MAX_SYMLINKS: usize = 40;
/// `openat2` may fail with `EAGAIN` when a rename races with `..` resolution; retry this often.
const OPENAT2_RETRIES: usize = 8;
/// The mode of directories created because an entry's parent was missing (containerd's).
const IMPLIED_DIR_MODE: u32 = 0o755;

/// A directory that every operation stays inside.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens the directory at `path` as a root.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd })
    }

    /// The root's own fd (opened `O_PATH`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The directory at `comps` (relative to the root, symlinks resolved inside it), or `None`
    /// if a component is missing or not a directory.
    pub fn dir(&self, comps: &[Vec<u8>]) -> io::Result<Option<OwnedFd>> {
        match self.lookup(comps) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e == Errno::NOENT || e == Errno::NOTDIR => Ok(None),
            Err(e) if openat2_unavailable(e) => self.resolve(comps, false),
            Err(e) => Err(e.into()),
        }
    }

    /// The directory at `comps`, creating missing components (mode 0755).
    pub fn dir_creating(&self, comps: &[Vec<u8>]) -> io::Result<OwnedFd> {
        match self.lookup(comps) {
            Ok(fd) => Ok(fd),
            Err(e) if e == Errno::NOENT || openat2_unavailable(e) => {
                match self.resolve(comps, true)? {
                    Some(fd) => Ok(fd),
                    None => Err(Errno::NOENT.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn reopen_root(&self) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// `openat2(RESOLVE_IN_ROOT)` of a directory.
    fn lookup(&self, comps: &[Vec<u8>]) -> Result<OwnedFd, Errno> {
        if comps.is_empty() {
            return rustix::fs::openat(
                &self.fd,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            );
        }
        open_in_root(
            self.fd.as_fd(),
            Path::new(OsStr::from_bytes(&join(comps))),
            OFlags::PATH | OFlags::DIRECTORY,
        )
    }

    /// The bytes of the regular file at `path` inside the root, `None` when it does not exist;
    /// see [`read_file_in_root`].
    pub fn read_file(&self, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, RootFileError> {
        read_file_in_root(self.fd.as_fd(), path, limit)
    }

    /// Resolves `comps` component by component with `RESOLVE_IN_ROOT` rules, creating missing
    /// directories when `create` is set. `None` when a component is missing and `create` is not.
    fn resolve(&self, comps: &[Vec<u8>], create: bool) -> io::Result<Option<OwnedFd>> {
        let mut queue: VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        // The canonical path of `cur` below the root: real directories only.
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut cur = self.reopen_root()?;
        let mut links = 0;
        while let Some(comp) = queue.pop_front() {
            if comp.is_empty() || comp == b"." {
                continue;
            }
            if comp == b".." {
                if names.pop().is_some() {
                    cur = self.open_canonical(&names)?;
                }
                continue;
            }
            let found = rustix::fs::openat(
                &cur,
                comp.as_slice(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            match found {
                Ok(fd) => match FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
                    FileType::Directory => {
                        names.push(comp);
                        cur = fd;
                    }
                    FileType::Symlink => {
                        links += 1;
                        if links > MAX_SYMLINKS {
                            return Err(Errno::LOOP.into());
                        }
                        let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
                        let target = target.as_bytes();
                        if target.starts_with(b"/") {
                            names.clear();
                            cur = self.reopen_root()?;
                        }
                        for part in target.split(|&b| b == b'/').rev() {
                            queue.push_front(part.to_vec());
                        }
                    }
                    _ => return Err(Errno::NOTDIR.into()),
                },
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, comp.as_slice(), Mode::from_raw_mode(0o700)) {
                        Ok(()) => {
                            // Set the mode explicitly: mkdir's is filtered by the umask.
                            let made = rustix::fs::openat(
                                &cur,
                                comp.as_slice(),
                                OFlags::RDONLY
                                    | OFlags::DIRECTORY
                                    | OFlags::NOFOLLOW
                                    | OFlags::CLOEXEC,
                                Mode::empty(),
                            )?;
                            rustix::fs::fchmod(&made, Mode::from_raw_mode(IMPLIED_DIR_MODE))?;
                        }
                        // Created meanwhile by someone else: look at it again.
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    queue.push_front(comp);
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(cur))
    }

    /// Reopens a canonical directory path (one known to contain no symlinks).
    fn open_canonical(&self, names: &[Vec<u8>]) -> io::Result<OwnedFd> {
        if names.is_empty() {
            return self.reopen_root();
        }
        match rustix::fs::openat2(
            &self.fd,
            join(names),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(e) if openat2_unavailable(e) => {}
            other => return Ok(other?),
        }
        let mut cur = self.reopen_root()?;
        for name in names {
            cur = rustix::fs::openat(
                &cur,
                name.as_slice(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
        }
        Ok(cur)
    }
}

/// Opens `rel` inside the directory `root` as if `root` were `/`: `openat2(RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS)`, retried while a concurrent rename makes the kernel answer `EAGAIN`.
/// An empty `rel` is the root itself. The one place kiln calls `openat2`.
pub(crate) fn open_in_root(
    root: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < OPENAT2_RETRIES => tries += 1,
            other => return other,
        }
    }
}

/// Why a file inside an image root was not read.
#[derive(Debug, thiserror::Error)]
pub enum RootFileError {
    /// A FIFO, device, socket or directory: opening one could block or act on the host.
    #[error("is not a regular file")]
    NotRegular,
    /// Larger than the caller's limit.
    #[error("is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// Opening or reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<Errno> for RootFileError {
    fn from(e: Errno) -> Self {
        Self::Io(e.into())
    }
}

/// The one reader of files inside an image root (`/etc/passwd`, `/etc/group`): `path` resolved
/// inside `root` (symlinks followed, but never out of it), regular files only, at most `limit`
/// bytes; `None` when it does not exist or its path leads nowhere.
///
/// The type is checked on an `O_PATH` descriptor before anything is opened for reading, so a
/// FIFO (which would block), a device (opening a watchdog or a tape acts on the host) or a
/// socket planted by an image is never opened; the read itself is `O_NONBLOCK | O_NOCTTY` and
/// must reach the same inode. Where `openat2` is refused (kernels before 5.6, old seccomp
/// profiles) the directory is resolved by [`Root::dir`]'s own walk and a symlink as the final
/// component is refused rather than followed.
fn read_file_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    limit: u64,
) -> Result<Option<Vec<u8>>, RootFileError> {
    use std::io::Read as _;
    let read_flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    let (st, file) = match open_in_root(root, path, OFlags::PATH) {
        Ok(fd) => {
            let st = rustix::fs::fstat(&fd)?;
            check_readable(&st, limit)?;
            (st, open_in_root(root, path, read_flags)?)
        }
        // A symlink loop (`etc -> /etc`) leads nowhere, like a missing file.
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
        Err(e) if openat2_unavailable(e) => {
            let mut comps: Vec<Vec<u8>> = path
                .as_os_str()
                .as_bytes()
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            let name = comps.pop().ok_or(RootFileError::NotRegular)?;
            let root = Root {
                fd: rustix::fs::openat(
                    root,
                    ".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?,
            };
            let Some(dir) = root.dir(&comps)? else {
                return Ok(None);
            };
            let Some(st) = lstat_at(dir.as_fd(), &name)? else {
                return Ok(None);
            };
            check_readable(&st, limit)?;
            let flags = read_flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            (
                st,
                rustix::fs::openat(&dir, name.as_slice(), flags, Mode::empty())?,
            )
        }
        Err(e) => return Err(e.into()),
    };
    let opened = rustix::fs::fstat(&file)?;
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) {
        // Replaced between the check and the open: what was checked is not what would be read.
        return Err(RootFileError::NotRegular);
    }
    let mut bytes = Vec::new();
    std::fs::File::from(file)
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(RootFileError::TooLarge { limit });
    }
    Ok(Some(bytes))
}

/// Refuses what [`read_file_in_root`] must not open: anything but a regular file, or too large.
fn check_readable(st: &Stat, limit: u64) -> Result<(), RootFileError> {
    if file_type(st) != FileType::RegularFile {
        return Err(RootFileError::NotRegular);
    }
    if st.st_size as u64 > limit {
        return Err(RootFileError::TooLarge { limit });
    }
    Ok(())
}

/// Whether `openat2` failed because the kernel (before 5.6) or a seccomp filter refuses it;
/// opening an `O_PATH` directory has no other reason to give `EPERM`.
fn openat2_unavailable(e: Errno) -> bool {
    e == Errno::NOSYS || e == Errno::PERM
}

/// Path components joined with `/`.
pub(crate) fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    out
}

/// `comps` as a display path.
pub(crate) fn display_path(comps: &[Vec<u8>]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&join(comps)))
}

/// `lstat` of `name` in `dir`, `None` if it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The type of a `stat` result.
pub(crate) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// A path naming `name` in the directory `dir` through `/proc/self/fd`, for the calls that
/// have no fd-relative form (`lsetxattr`). The directory part is the fd itself, so nothing is
/// re-resolved; the caller uses a call that does not follow the final component.
pub(crate) fn proc_path_at(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut path = proc_path(dir).into_os_string().into_vec();
    path.push(b'/');
    path.extend_from_slice(name);
    PathBuf::from(std::ffi::OsString::from_vec(path))
}

/// `/proc/self/fd/<fd>`: following it reaches exactly the inode `fd` refers to.
pub(crate) fn proc_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Removes `name` in `parent` and, if it is a directory, everything below it. Never follows a
/// symlink: a symlink is removed, not its target. A missing `name` is not an error.
pub(crate) fn remove_all(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let top = match open_dir_nofollow(parent, name)? {
        Some(fd) => fd,
        None => return Ok(()),
    };
    let pending = clear_files(&top)?;
    // One level per open directory: its fd and the subdirectories still to remove.
    let mut stack = vec![(name.to_vec(), top, pending)];
    while let Some((_, fd, pending)) = stack.last_mut() {
        if let Some(sub) = pending.pop() {
            if let Some(child) = open_dir_nofollow(fd.as_fd(), &sub)? {
                let child_pending = clear_files(&child)?;
                stack.push((sub, child, child_pending));
            }
            continue;
        }
        let Some((done, _fd, _)) = stack.pop() else {
            break;
        };
        let holder = stack.last().map_or(parent, |(_, fd, _)| fd.as_fd());
        match rustix::fs::unlinkat(holder, done.as_slice(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Opens `name` in `dir` as a readable directory without following a symlink; `None` if it is
/// missing or not a directory (anymore), in which case a plain unlink is tried.
fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<OwnedFd>> {
    match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
            match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The names in the directory `dir`, without `.` and `..`. Listed in full before anything is
/// changed: removing entries while reading a directory may skip others.
pub(crate) fn list(dir: &OwnedFd) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let mut kind = entry.file_type();
        if kind == FileType::Unknown {
            kind = match lstat_at(dir.as_fd(), name)? {
                Some(st) => file_type(&st),
                None => continue,
            };
        }
        out.push((name.to_vec(), kind));
    }
    Ok(out)
}

/// Unlinks every non-directory in `dir` and returns the subdirectories' names.
fn clear_files(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut subdirs = Vec::new();
    for (name, kind) in list(dir)? {
        if kind == FileType::Directory {
            subdirs.push(name);
            continue;
        }
        match rustix::fs::unlinkat(dir, name.as_slice(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) => subdirs.push(name),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(subdirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn comps(path: &str) -> Vec<Vec<u8>> {
        path.split('/').map(|c| c.as_bytes().to_vec()).collect()
    }

    fn ino(fd: &OwnedFd) -> u64 {
        rustix::fs::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn manual_resolution_matches_openat2_in_root() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        for d in ["root/usr/lib", "root/run", "root/a/b", "outside/lib"] {
            std::fs::create_dir_all(base.path().join(d)).unwrap();
        }
        std::fs::write(root.join("file"), b"").unwrap();
        symlink("/run", root.join("var-run")).unwrap();
        symlink("../../../../usr", root.join("a/up")).unwrap();
        symlink(&outside, root.join("abs-out")).unwrap();
        symlink("b/../../usr/lib", root.join("a/rel")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let r = Root::open(&root).unwrap();
        let cases: &[(&str, Option<&str>)] = &[
            ("usr/lib", Some("usr/lib")),
            ("var-run", Some("run")),
            ("a/up/lib", Some("usr/lib")),
            ("a/rel", Some("usr/lib")),
            ("a/b/../../usr", Some("usr")),
            ("..", Some("")),
            ("abs-out", None),
            ("abs-out/lib", None),
            ("missing/x", None),
            ("file", None),
        ];
        for (path, want) in cases {
            let by_kernel = r.dir(&comps(path)).unwrap();
            let by_hand = r.resolve(&comps(path), false);
            match want {
                Some(want) => {
                    let want_ino = std::fs::metadata(root.join(want)).unwrap().ino();
                    assert_eq!(ino(&by_kernel.expect(path)), want_ino, "{path} kernel");
                    assert_eq!(
                        ino(&by_hand.unwrap().expect(path)),
                        want_ino,
                        "{path} by hand"
                    );
                }
                None => {
                    assert!(by_kernel.is_none(), "{path} kernel");
                    assert!(!matches!(by_hand, Ok(Some(_))), "{path} by hand");
                }
            }
        }
        let err = r.resolve(&comps("loop1/x"), true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(Errno::LOOP.raw_os_error()));
        assert!(r.dir_creating(&comps("file/x")).is_err());
        assert!(!outside.join("lib/x").exists());
    }

    #[test]
    fn creating_resolution_stays_inside() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../outside", root.join("rel")).unwrap();
        let r = Root::open(&root).unwrap();
        for (path, lands) in [
            (
                "abs/new/deeper",
                format!("{}/new/deeper", outside.display()),
            ),
            ("rel/new2", "outside/new2".to_owned()),
            ("plain/dirs", "plain/dirs".to_owned()),
        ] {
            let fd = r.dir_creating(&comps(path)).unwrap();
            let want = root.join(lands.trim_start_matches('/'));
            assert_eq!(ino(&fd), std::fs::metadata(&want).unwrap().ino(), "{path}");
            let mode = std::fs::metadata(&want).unwrap().mode() & 0o7777;
            assert_eq!(mode, IMPLIED_DIR_MODE, "{path}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn remove_all_never_follows_symlinks() {
        let base = tempfile::tempdir().unwrap();
        let victim = base.path().join("victim");
        std::fs::create_dir_all(victim.join("a/b/c")).unwrap();
        std::fs::write(victim.join("a/b/c/f"), b"x").unwrap();
        std::fs::write(victim.join("a/f"), b"x").unwrap();
        let keep = base.path().join("keep");
        std::fs::create_dir(&keep).unwrap();
        std::fs::write(keep.join("precious"), b"p").unwrap();
        symlink(&keep, victim.join("a/b/link")).unwrap();
        let parent = Root::open(base.path()).unwrap();
        remove_all(parent.fd(), b"victim").unwrap();
        assert!(!victim.exists());
        assert_eq!(std::fs::read(keep.join("precious")).unwrap(), b"p");
        // A symlink named as the target is removed itself; a missing name is fine.
        symlink(&keep, base.path().join("l")).unwrap();
        remove_all(parent.fd(), b"l").unwrap();
        assert!(keep.join("precious").exists());
        remove_all(parent.fd(), b"missing").unwrap();
    }
}
