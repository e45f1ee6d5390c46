//! Getting a rootfs ready for a RUN, from the builder's side, and tidying it afterwards.
//!
//! Every path is resolved inside the rootfs with `openat2(RESOLVE_IN_ROOT)` and final
//! components are handled with `*at` calls that do not follow them, so an image's symlinks
//! (`etc/resolv.conf -> /etc/shadow`, `etc -> /`) never reach the host.
//!
//! - `/proc`, `/dev`, `/sys` must be real directories: a symlink there is refused (runc's
//!   CVE-2019-16884 class); a missing one is created as a mount-point stub.
//! - `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname` get the builder's files bind-mounted over
//!   them. A missing one gets an empty stub; a symlink is followed inside the root to the file
//!   it names; anything else (a FIFO, a directory, a dangling link) is left alone, so the RUN
//!   sees the image's own.
//! - USER is resolved from the rootfs' `/etc/passwd` and `/etc/group` by [`crate::user`], which
//!   reads them only if they are regular files of at most 16 MiB (T-SBX-11).
//! - WORKDIR is created when missing, owned by the user (BuildKit does the same).
//!
//! Stubs are removed after the RUN if they are still what was created (an empty file or an
//! empty directory), and their directory's mtime is put back: to its value before the stubs if
//! the RUN did not change it, else to what the RUN left. So a RUN that does nothing leaves no
//! trace, and the overlay snapshotter can drop the directories it copied up for the stubs.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, Stat, Timespec, Uid};
use rustix::io::Errno;

use super::{ExecError, RunSpec};
use crate::layer::open_in_root;
use crate::user::{ExecUser, exec_user_in_root};

/// What kind of stub was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StubKind {
    File,
    Dir,
}

/// Stubs made in one directory, and that directory's mtime around their creation.
#[derive(Debug)]
struct StubDir {
    /// The directory, relative to the root.
    rel: PathBuf,
    names: Vec<(Vec<u8>, StubKind)>,
    before: Timespec,
    after: Timespec,
}

/// A rootfs made ready for a RUN.
#[derive(Debug)]
pub(super) struct Prepared {
    /// Host files to bind-mount: (source, target inside the rootfs).
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// The resolved user.
    pub user: ExecUser,
    /// Where each of the spec's mounts goes (host paths inside the rootfs), in spec order.
    pub mount_targets: Vec<PathBuf>,
    stubs: Vec<StubDir>,
}

fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(Errno) -> ExecError {
    let path = path.into();
    move |e| ExecError::Io {
        op,
        path,
        source: e.into(),
    }
}

/// Where an fd really is, relative to the root's real path.
fn rel_path(root_real: &Path, fd: BorrowedFd<'_>) -> Result<PathBuf, ExecError> {
    let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let real = std::fs::read_link(&proc).map_err(|source| ExecError::Io {
        op: "read",
        path: proc.into(),
        source,
    })?;
    real.strip_prefix(root_real)
        .map(Path::to_owned)
        .map_err(|_| ExecError::Io {
            op: "resolve inside the rootfs",
            path: real.clone(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })
}

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn mtime(st: &Stat) -> Timespec {
    Timespec {
        tv_sec: st.st_mtime,
        tv_nsec: st.st_mtime_nsec as _,
    }
}

/// Records the stubs made while preparing.
struct Stubs<'a> {
    root: BorrowedFd<'a>,
    root_real: &'a Path,
    dirs: Vec<StubDir>,
}

impl Stubs<'_> {
    /// Creates `name` in `dir` (resolved at `rel`) as a stub of `kind`.
    fn create(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &Path,
        name: &str,
        kind: StubKind,
    ) -> Result<(), ExecError> {
        let path = self.root_real.join(rel).join(name);
        if !self.dirs.iter().any(|d| d.rel == rel) {
            let st = rustix::fs::fstat(dir).map_err(io_err("stat", self.root_real.join(rel)))?;
            self.dirs.push(StubDir {
                rel: rel.to_owned(),
                names: Vec::new(),
                before: mtime(&st),
                after: mtime(&st),
            });
        }
        match kind {
            StubKind::Dir => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))
                .map_err(io_err("create", &path))?,
            StubKind::File => {
                rustix::fs::openat(
                    dir,
                    name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .map_err(io_err("create", &path))?;
            }
        }
        let st = rustix::fs::fstat(dir).map_err(io_err("stat", self.root_real.join(rel)))?;
        if let Some(d) = self.dirs.iter_mut().find(|d| d.rel == rel) {
            d.names.push((name.as_bytes().to_vec(), kind));
            d.after = mtime(&st);
        }
        Ok(())
    }
}

/// Prepares `rootfs` for `spec`: mount points, the files to bind (written into `files`), the
/// user, the working directory. Stubs made are undone by [`cleanup`], also on error.
pub(super) fn prepare(
    rootfs: &Path,
    spec: &RunSpec,
    files: &[(&str, PathBuf)],
) -> Result<Prepared, ExecError> {
    let root_real = std::fs::canonicalize(rootfs).map_err(|source| ExecError::Io {
        op: "resolve",
        path: rootfs.to_owned(),
        source,
    })?;
    let root = rustix::fs::open(
        &root_real,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open", &root_real))?;
    let mut stubs = Stubs {
        root: root.as_fd(),
        root_real: &root_real,
        dirs: Vec::new(),
    };
    let mut prepared = Prepared {
        binds: Vec::new(),
        user: ExecUser {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: "/".to_owned(),
        },
        mount_targets: Vec::new(),
        stubs: Vec::new(),
    };
    let result = prepare_inner(&mut stubs, &mut prepared, spec, files);
    prepared.stubs = std::mem::take(&mut stubs.dirs);
    match result {
        Ok(()) => Ok(prepared),
        Err(e) => {
            // Best effort: the error at hand is the one to report.
            let _ = cleanup(rootfs, &prepared);
            Err(e)
        }
    }
}

fn prepare_inner(
    stubs: &mut Stubs<'_>,
    prepared: &mut Prepared,
    spec: &RunSpec,
    files: &[(&str, PathBuf)],
) -> Result<(), ExecError> {
    let root = stubs.root;
    let root_real = stubs.root_real;
    for name in ["proc", "dev", "sys"] {
        match rustix::fs::statat(root, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if file_type(&st) == FileType::Directory => {}
            Ok(st) if file_type(&st) == FileType::Symlink => {
                return Err(ExecError::RootfsSymlink {
                    path: format!("/{name}"),
                });
            }
            Ok(_) => {
                return Err(ExecError::RootfsNotDirectory {
                    path: format!("/{name}"),
                });
            }
            Err(Errno::NOENT) => stubs.create(root, Path::new(""), name, StubKind::Dir)?,
            Err(e) => return Err(io_err("stat", root_real.join(name))(e)),
        }
    }
    if let Some((etc, etc_rel)) = etc_dir(stubs)? {
        for (name, source) in files {
            if let Some(target) = bind_target(stubs, etc.as_fd(), &etc_rel, name)? {
                prepared.binds.push((source.clone(), target));
            }
        }
    }
    for mount in &spec.mounts {
        let is_file = super::mounts::target_is_file(&mount.kind)?;
        let target = mount_target(stubs, &mount.target, is_file)?;
        prepared.mount_targets.push(target);
    }
    let user_err = |source| ExecError::User {
        user: spec.user.clone(),
        source,
    };
    prepared.user = exec_user_in_root(root_real, &spec.user).map_err(user_err)?;
    check_mapped(&spec.user, &prepared.user)?;
    make_workdir(root, root_real, &spec.cwd, &prepared.user)
}

/// Fails when USER's ids do not exist in kiln's user namespace (rootless), before anything runs;
/// without `setgroups` the supplementary groups are dropped (the sandbox cannot set them).
fn check_mapped(spec: &str, user: &ExecUser) -> Result<(), ExecError> {
    let privileges = crate::privileges::current();
    let mut check = privileges.check_owner(user.uid, user.gid);
    if privileges.setgroups {
        for &g in &user.groups {
            check = check.and_then(|()| privileges.check_id(crate::privileges::IdKind::Group, g));
        }
    }
    check.map_err(|source| ExecError::Unmapped {
        user: spec.to_owned(),
        source,
    })
}

/// The rootfs' `/etc` (created as a stub when missing), or `None` when it is not a directory.
fn etc_dir(stubs: &mut Stubs<'_>) -> Result<Option<(OwnedFd, PathBuf)>, ExecError> {
    let root = stubs.root;
    match rustix::fs::statat(root, "etc", AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => stubs.create(root, Path::new(""), "etc", StubKind::Dir)?,
        Err(e) => return Err(io_err("stat", stubs.root_real.join("etc"))(e)),
        Ok(_) => {}
    }
    match open_in_root(root, Path::new("etc"), OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => {
            let rel = rel_path(stubs.root_real, fd.as_fd())?;
            Ok(Some((fd, rel)))
        }
        Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => Ok(None),
        Err(e) => Err(io_err("open", stubs.root_real.join("etc"))(e)),
    }
}

/// Where to bind the builder's `/etc/<name>`, making a stub if needed (see the module doc).
fn bind_target(
    stubs: &mut Stubs<'_>,
    etc: BorrowedFd<'_>,
    etc_rel: &Path,
    name: &str,
) -> Result<Option<PathBuf>, ExecError> {
    let root_real = stubs.root_real;
    let here = root_real.join(etc_rel).join(name);
    match rustix::fs::statat(etc, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => {
            stubs.create(etc, etc_rel, name, StubKind::File)?;
            Ok(Some(here))
        }
        Err(e) => Err(io_err("stat", here)(e)),
        Ok(st) if file_type(&st) == FileType::RegularFile => Ok(Some(here)),
        Ok(st) if file_type(&st) == FileType::Symlink => {
            match open_in_root(stubs.root, &etc_rel.join(name), OFlags::PATH) {
                Ok(fd) => {
                    let st = rustix::fs::fstat(&fd).map_err(io_err("stat", here.clone()))?;
                    if file_type(&st) != FileType::RegularFile {
                        return Ok(None);
                    }
                    Ok(Some(root_real.join(rel_path(root_real, fd.as_fd())?)))
                }
                Err(_) => Ok(None),
            }
        }
        Ok(_) => Ok(None),
    }
}

/// Resolves a mount target inside the root, creating it (and missing parents) as stubs; returns
/// its host path.
fn mount_target(stubs: &mut Stubs<'_>, target: &str, is_file: bool) -> Result<PathBuf, ExecError> {
    let refuse = |reason| ExecError::MountTarget {
        target: target.to_owned(),
        reason,
    };
    let comps = clean_components(target);
    match comps.first() {
        None => return Err(refuse("is the root")),
        Some(&("proc" | "sys" | "dev")) => return Err(refuse("is inside /proc, /sys or /dev")),
        Some(_) => {}
    }
    let root = stubs.root;
    let root_real = stubs.root_real.to_owned();
    let mut parent = open_in_root(root, Path::new(""), OFlags::PATH | OFlags::DIRECTORY)
        .map_err(io_err("open", &root_real))?;
    let mut rel = PathBuf::new();
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        rel.push(comp);
        let want_file = last && is_file;
        let flags = if want_file {
            OFlags::PATH
        } else {
            OFlags::PATH | OFlags::DIRECTORY
        };
        match open_in_root(root, &rel, flags) {
            Ok(fd) => {
                if last {
                    let st =
                        rustix::fs::fstat(&fd).map_err(io_err("stat", root_real.join(&rel)))?;
                    if want_file == (file_type(&st) == FileType::Directory) {
                        return Err(refuse(if want_file {
                            "is a directory but the source is a file"
                        } else {
                            "is not a directory"
                        }));
                    }
                    return Ok(root_real.join(rel_path(&root_real, fd.as_fd())?));
                }
                parent = fd;
            }
            Err(Errno::NOENT) => {
                let parent_rel = rel_path(&root_real, parent.as_fd())?;
                let kind = if want_file {
                    StubKind::File
                } else {
                    StubKind::Dir
                };
                match stubs.create(parent.as_fd(), &parent_rel, comp, kind) {
                    Ok(()) => {}
                    Err(ExecError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        return Err(refuse("has a dangling symlink on its path"));
                    }
                    Err(e) => return Err(e),
                }
                if last {
                    return Ok(root_real.join(parent_rel).join(comp));
                }
                parent = open_in_root(root, &rel, OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(io_err("open", root_real.join(&rel)))?;
            }
            Err(Errno::NOTDIR) => return Err(refuse("has a non-directory on its path")),
            Err(e) => return Err(io_err("open", root_real.join(&rel))(e)),
        }
    }
    Err(refuse("is the root"))
}

/// `cwd` split into normal components, `..` resolved lexically (as `filepath.Clean` would).
fn clean_components(cwd: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for comp in cwd.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// `path` as an absolute, clean path (the command's working directory, a volume).
pub(super) fn clean_path(path: &str) -> String {
    format!("/{}", clean_components(path).join("/"))
}

/// Creates the working directory inside the root when missing, owned by the user.
fn make_workdir(
    root: BorrowedFd<'_>,
    root_real: &Path,
    cwd: &str,
    user: &ExecUser,
) -> Result<(), ExecError> {
    let comps = clean_components(cwd);
    let mut rel = PathBuf::new();
    let mut parent = open_in_root(root, &rel, OFlags::PATH | OFlags::DIRECTORY)
        .map_err(io_err("open", root_real))?;
    for comp in comps {
        rel.push(comp);
        let path = root_real.join(&rel);
        match open_in_root(root, &rel, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => parent = fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&parent, comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    // A dangling symlink: BuildKit would create its target; kiln refuses.
                    Err(Errno::EXIST) => {
                        return Err(ExecError::Workdir {
                            path: cwd.to_owned(),
                            reason: "a component is a dangling symlink",
                        });
                    }
                    Err(e) => return Err(io_err("create", path)(e)),
                }
                rustix::fs::chownat(
                    &parent,
                    comp,
                    Some(Uid::from_raw(user.uid)),
                    Some(Gid::from_raw(user.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io_err("chown", path.clone()))?;
                parent = open_in_root(root, &rel, OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(io_err("open", path))?;
            }
            Err(Errno::NOTDIR) => {
                return Err(ExecError::Workdir {
                    path: cwd.to_owned(),
                    reason: "a component is not a directory",
                });
            }
            Err(e) => return Err(io_err("open", path)(e)),
        }
    }
    Ok(())
}

/// Removes the stubs `prepared` made in `rootfs`, where they are still untouched stubs.
pub(super) fn cleanup(rootfs: &Path, prepared: &Prepared) -> Result<(), ExecError> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open", rootfs))?;
    // Innermost directories first: /etc's stubs before /etc itself.
    for dir in prepared.stubs.iter().rev() {
        let fd = match open_in_root(root.as_fd(), &dir.rel, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            // The RUN removed or replaced it: nothing of ours is left there.
            Err(_) => continue,
        };
        let now = mtime(&rustix::fs::fstat(&fd).map_err(io_err("stat", rootfs.join(&dir.rel)))?);
        let mut removed = false;
        for (name, kind) in &dir.names {
            let name = OsStr::from_bytes(name);
            if still_stub(fd.as_fd(), name, *kind) {
                let flags = match kind {
                    StubKind::Dir => AtFlags::REMOVEDIR,
                    StubKind::File => AtFlags::empty(),
                };
                match rustix::fs::unlinkat(&fd, name, flags) {
                    Ok(()) => removed = true,
                    Err(Errno::NOENT) | Err(Errno::NOTEMPTY) | Err(Errno::BUSY) => {}
                    Err(e) => return Err(io_err("remove", rootfs.join(&dir.rel).join(name))(e)),
                }
            }
        }
        if removed {
            let restore = if now == dir.after { dir.before } else { now };
            let times = rustix::fs::Timestamps {
                last_access: Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                last_modification: restore,
            };
            rustix::fs::futimens(&fd, &times)
                .map_err(io_err("set times of", rootfs.join(&dir.rel)))?;
        }
    }
    Ok(())
}

/// Whether `name` in `dir` is still an empty file or directory of the stub's kind.
fn still_stub(dir: BorrowedFd<'_>, name: &OsStr, kind: StubKind) -> bool {
    let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return false;
    };
    match kind {
        StubKind::File => file_type(&st) == FileType::RegularFile && st.st_size == 0,
        StubKind::Dir => {
            if file_type(&st) != FileType::Directory {
                return false;
            }
            let Ok(fd) = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                return false;
            };
            let Ok(entries) = Dir::read_from(&fd) else {
                return false;
            };
            entries
                .filter_map(Result::ok)
                .all(|e| matches!(e.file_name().to_bytes(), b"." | b".."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdirs_are_cleaned_lexically() {
        let cases: &[(&str, &[&str])] = &[
            ("/", &[]),
            ("", &[]),
            ("/app", &["app"]),
            ("/a/./b//c/", &["a", "b", "c"]),
            ("/a/../../b", &["b"]),
            ("relative/x", &["relative", "x"]),
        ];
        for (cwd, want) in cases {
            assert_eq!(clean_components(cwd), *want, "{cwd}");
            assert_eq!(clean_path(cwd), format!("/{}", want.join("/")), "{cwd}");
        }
    }
}
