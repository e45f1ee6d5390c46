//! Mounting a stack of snapshot directories as one writable overlayfs, and turning the
//! upperdir back into a clean change set afterwards.
//!
//! Options: `lowerdir` top first, `redirect_dir=off` (`nofollow` with `userxattr`) and
//! `metacopy=off` (a renamed directory or a
//! metadata-only copy-up cannot be expressed as a layer), `index=off` and `xino=off` (no state
//! outside the upperdir that a later mount could trip over), `userxattr` inside a user
//! namespace. Lowerdirs are passed one by one with the new mount API (`fsconfig` `lowerdir+`,
//! Linux 6.8), which has no length limit; older kernels get `mount(2)`, whose options must fit
//! in one page, so lowerdirs are named through short symlinks in the mount's scratch directory,
//! and whatever still does not fit (or exceeds overlayfs's 500 layers) is flattened into one
//! merged copy at the bottom of the stack. The mount is detached when dropped; every mount that
//! is up is also listed process-wide, so a process that has to exit while a step still holds
//! one (a forced exit after Ctrl-C) takes them all down with [`detach_all`].
//!
//! After a RUN, the upperdir holds the change: whiteouts (0/0 character devices), opaque
//! directories, copied-up and new entries. Directories that were copied up only because
//! something was created in them and removed again (a mount point stub) are pruned when they
//! are empty and their metadata equals the lower directory's (BuildKit's `sameDirent`), so the
//! layer does not carry them.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{CWD, Stat};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use super::SnapshotError;
use super::fsutil::{
    S_IFDIR, content_xattrs, is_opaque, is_overlay_xattr, is_whiteout, lstat, read_xattrs,
    type_bits,
};
use super::merge::merge_into;

/// overlayfs's limit on lower layers (`OVL_MAX_STACK`).
const MAX_STACK: usize = 500;
/// `mount(2)` copies at most one page of option data, terminating NUL included.
const MOUNT_DATA_MAX: usize = 4095;
/// The fixed options: see the module documentation.
const FIXED_OPTIONS: [(&str, &str); 4] = [
    ("redirect_dir", "off"),
    ("metacopy", "off"),
    ("index", "off"),
    ("xino", "off"),
];

/// [`FIXED_OPTIONS`] for a mount with or without `userxattr`. With it, `redirect_dir=off` is
/// refused where the kernel is built to always follow redirects (`off` then means `follow`:
/// "conflicting options: userxattr,redirect_dir=follow"); `nofollow` creates no redirect
/// either, and is what `userxattr` implies.
fn fixed_options(userxattr: bool) -> [(&'static str, &'static str); 4] {
    let mut options = FIXED_OPTIONS;
    if userxattr {
        options[0] = ("redirect_dir", "nofollow");
    }
    options
}
/// How often a busy unmount is retried before detaching (the RUN's mount namespace may still
/// be going away).
const UNMOUNT_RETRIES: usize = 50;

/// The merged directories of every overlay this process has mounted and not yet unmounted.
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Detaches every overlay this process still has mounted, for a process about to exit with
/// steps still running (their own guards will not run). Safe to call at any time: a later
/// unmount by a guard finds nothing and is not an error.
pub fn detach_all() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for merged in live {
        // Nothing to report to: the process is going away either way.
        let _ = rustix::mount::unmount(&merged, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
    }
}

/// Records `merged` as mounted (`up`) or not, for [`detach_all`].
fn track(merged: &Path, up: bool) {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if up {
        live.insert(merged.to_owned());
    } else {
        live.remove(merged);
    }
}

/// Which interface mounts the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountApi {
    /// The new mount API where the kernel has `lowerdir+`, else `mount(2)`.
    #[default]
    Auto,
    /// Always `mount(2)` with a one-page option string (what kernels before 6.8 get); for
    /// testing the deep-stack handling.
    Legacy,
}

/// A mounted overlay; detached on drop.
#[derive(Debug)]
pub(crate) struct OverlayMount {
    merged: PathBuf,
    /// The lowerdirs as mounted, bottom first (after any flattening).
    lowers: Vec<PathBuf>,
    mounted: bool,
}

/// The paths one overlay mount uses.
#[derive(Debug)]
pub(crate) struct OverlayDirs<'a> {
    /// Snapshot directories, bottom first.
    pub lowers: &'a [PathBuf],
    /// The (empty) upperdir.
    pub upper: &'a Path,
    /// The (empty) workdir, on the upperdir's filesystem.
    pub work: &'a Path,
    /// Where to mount.
    pub merged: &'a Path,
    /// A directory for symlinks, an empty lower and a flattened bottom, removed by the caller.
    pub scratch: &'a Path,
}

impl OverlayMount {
    /// Mounts the overlay described by `dirs`.
    pub fn mount(dirs: &OverlayDirs<'_>, api: MountApi) -> Result<Self, SnapshotError> {
        let mut lowers = dirs.lowers.to_vec();
        if lowers.is_empty() {
            // overlayfs needs a lowerdir; a build from scratch gets an empty one.
            let empty = dirs.scratch.join("empty");
            std::fs::create_dir_all(&empty).map_err(io_err("create", &empty))?;
            lowers.push(empty);
        }
        if lowers.len() > MAX_STACK {
            lowers = flatten_bottom(&lowers, lowers.len() - MAX_STACK + 1, dirs.scratch)?;
        }
        let userxattr = crate::privileges::current().overlay_userxattr;
        if api == MountApi::Auto {
            match mount_new_api(dirs, &lowers, userxattr) {
                Ok(()) => {
                    track(dirs.merged, true);
                    return Ok(Self {
                        merged: dirs.merged.to_owned(),
                        lowers,
                        mounted: true,
                    });
                }
                Err(NewApiError::Unsupported) => {}
                Err(NewApiError::Failed { source, log }) => {
                    return Err(SnapshotError::Mount {
                        target: dirs.merged.to_owned(),
                        detail: log,
                        source,
                    });
                }
            }
        }
        let (data, lowers) = legacy_options(dirs, lowers, userxattr)?;
        rustix::mount::mount(
            "overlay",
            dirs.merged,
            "overlay",
            MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(|e| SnapshotError::Mount {
            target: dirs.merged.to_owned(),
            detail: String::new(),
            source: e.into(),
        })?;
        track(dirs.merged, true);
        Ok(Self {
            merged: dirs.merged.to_owned(),
            lowers,
            mounted: true,
        })
    }

    /// The lowerdirs as mounted, bottom first.
    pub fn lowers(&self) -> &[PathBuf] {
        &self.lowers
    }

    /// Unmounts, waiting for other holders (the RUN's namespace) to go first; detaches if they
    /// do not.
    pub fn unmount(&mut self) -> Result<(), SnapshotError> {
        if !self.mounted {
            return Ok(());
        }
        let mut tries = 0;
        loop {
            match rustix::mount::unmount(&self.merged, UnmountFlags::NOFOLLOW) {
                Ok(()) => break,
                Err(Errno::BUSY) if tries < UNMOUNT_RETRIES => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(Errno::BUSY) => {
                    rustix::mount::unmount(
                        &self.merged,
                        UnmountFlags::DETACH | UnmountFlags::NOFOLLOW,
                    )
                    .map_err(|e| SnapshotError::Unmount {
                        target: self.merged.clone(),
                        source: e.into(),
                    })?;
                    break;
                }
                Err(e) => {
                    return Err(SnapshotError::Unmount {
                        target: self.merged.clone(),
                        source: e.into(),
                    });
                }
            }
        }
        self.mounted = false;
        track(&self.merged, false);
        Ok(())
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if self.mounted {
            // Nothing to report to in a destructor; a detach cannot be refused for being busy.
            let _ =
                rustix::mount::unmount(&self.merged, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
            track(&self.merged, false);
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_owned();
    move |source| SnapshotError::Io { op, path, source }
}

enum NewApiError {
    /// No `fsopen`, or no `lowerdir+`: use `mount(2)`.
    Unsupported,
    Failed {
        source: io::Error,
        log: String,
    },
}

fn mount_new_api(
    dirs: &OverlayDirs<'_>,
    lowers: &[PathBuf],
    userxattr: bool,
) -> Result<(), NewApiError> {
    let fs = match rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) if e == Errno::NOSYS || e == Errno::PERM => return Err(NewApiError::Unsupported),
        Err(e) => {
            return Err(NewApiError::Failed {
                source: e.into(),
                log: String::new(),
            });
        }
    };
    let failed = |e: Errno| NewApiError::Failed {
        source: e.into(),
        log: fs_log(&fs),
    };
    for (i, lower) in lowers.iter().rev().enumerate() {
        match rustix::mount::fsconfig_set_string(&fs, "lowerdir+", lower.as_path()) {
            Ok(()) => {}
            // Before 6.8 the key is unknown.
            Err(Errno::INVAL) if i == 0 => return Err(NewApiError::Unsupported),
            Err(e) => return Err(failed(e)),
        }
    }
    rustix::mount::fsconfig_set_string(&fs, "upperdir", dirs.upper).map_err(failed)?;
    rustix::mount::fsconfig_set_string(&fs, "workdir", dirs.work).map_err(failed)?;
    for (key, value) in fixed_options(userxattr) {
        rustix::mount::fsconfig_set_string(&fs, key, value).map_err(failed)?;
    }
    if userxattr {
        rustix::mount::fsconfig_set_flag(&fs, "userxattr").map_err(failed)?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(failed)?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(failed)?;
    rustix::mount::move_mount(
        mnt.as_fd(),
        "",
        CWD,
        dirs.merged,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(failed)
}

/// The messages the kernel left in an fs context (`e overlay: ...` lines), for the error.
fn fs_log(fs: &impl AsFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    // Each read returns one message; a handful is plenty.
    for _ in 0..8 {
        match rustix::io::read(fs, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !out.is_empty() {
                    out.push(b';');
                    out.push(b' ');
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
    String::from_utf8_lossy(&out).trim().to_owned()
}

/// The `mount(2)` option string, after shortening lowerdir paths through symlinks and
/// flattening the bottom of the stack as far as needed to fit one page.
fn legacy_options(
    dirs: &OverlayDirs<'_>,
    mut lowers: Vec<PathBuf>,
    userxattr: bool,
) -> Result<(std::ffi::CString, Vec<PathBuf>), SnapshotError> {
    let tail = legacy_tail(dirs, userxattr)?;
    let fits = |names: &[Vec<u8>]| {
        let len: usize = names.iter().map(|n| n.len() + 1).sum();
        "lowerdir=".len() + len + tail.len() <= MOUNT_DATA_MAX
    };
    let direct: Vec<Vec<u8>> = lowers
        .iter()
        .map(|l| option_path(l))
        .collect::<Result<_, _>>()?;
    let names = if direct.iter().all(|n| !n.is_empty()) && fits(&direct) {
        direct
    } else {
        let links = dirs.scratch.join("l");
        std::fs::create_dir_all(&links).map_err(io_err("create", &links))?;
        let link_len = option_path(&links)?.len() + 1 + digits(lowers.len());
        // How many symlinked lowers fit beside the other options.
        let room = MOUNT_DATA_MAX.saturating_sub("lowerdir=".len() + tail.len());
        let max_layers = (room / (link_len + 1)).max(1);
        if lowers.len() > max_layers {
            lowers = flatten_bottom(&lowers, lowers.len() - max_layers + 1, dirs.scratch)?;
        }
        let mut names = Vec::with_capacity(lowers.len());
        for (i, lower) in lowers.iter().enumerate() {
            let link = links.join(i.to_string());
            std::os::unix::fs::symlink(lower, &link).map_err(io_err("create symlink", &link))?;
            names.push(option_path(&link)?);
        }
        names
    };
    let mut data = b"lowerdir=".to_vec();
    for (i, name) in names.iter().rev().enumerate() {
        if i > 0 {
            data.push(b':');
        }
        data.extend_from_slice(name);
    }
    data.extend_from_slice(&tail);
    let data = std::ffi::CString::new(data).map_err(|_| SnapshotError::OptionPath {
        path: dirs.merged.to_owned(),
    })?;
    Ok((data, lowers))
}

/// `,upperdir=…,workdir=…` and the fixed options.
fn legacy_tail(dirs: &OverlayDirs<'_>, userxattr: bool) -> Result<Vec<u8>, SnapshotError> {
    let mut tail = b",upperdir=".to_vec();
    tail.extend_from_slice(&option_path(dirs.upper)?);
    tail.extend_from_slice(b",workdir=");
    tail.extend_from_slice(&option_path(dirs.work)?);
    for (key, value) in fixed_options(userxattr) {
        tail.extend_from_slice(format!(",{key}={value}").as_bytes());
    }
    if userxattr {
        tail.extend_from_slice(b",userxattr");
    }
    Ok(tail)
}

/// A path as it may appear in `mount(2)` overlay options: `:` `,` `\` and NUL have meanings
/// there, so a path with them is refused (store paths never have them; symlinks avoid them).
fn option_path(path: &Path) -> Result<Vec<u8>, SnapshotError> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.iter().any(|b| matches!(b, b':' | b',' | b'\\' | 0)) {
        return Err(SnapshotError::OptionPath {
            path: path.to_owned(),
        });
    }
    Ok(bytes.to_vec())
}

fn digits(n: usize) -> usize {
    n.max(1).ilog10() as usize + 1
}

/// Merges the bottom `count` layers of `lowers` into one directory in `scratch` and returns the
/// new stack.
fn flatten_bottom(
    lowers: &[PathBuf],
    count: usize,
    scratch: &Path,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let flat = scratch.join("flat");
    std::fs::create_dir_all(&flat).map_err(io_err("create", &flat))?;
    merge_into(&flat, &lowers[..count])?;
    let mut out = vec![flat];
    out.extend_from_slice(&lowers[count..]);
    Ok(out)
}

/// Where a path is in a stack of lowerdirs.
enum Lookup {
    /// The topmost layer holding the path has this entry.
    Found(PathBuf, Stat),
    /// A whiteout, a non-directory parent or an opaque directory hides it.
    Hidden,
    /// No layer has it.
    Absent,
}

/// Finds `rel` in `lowers` (bottom first) the way overlayfs does.
fn lookup(lowers: &[PathBuf], rel: &Path) -> io::Result<Lookup> {
    let comps: Vec<&std::ffi::OsStr> = rel.iter().collect();
    for lower in lowers.iter().rev() {
        let mut opaque_above = false;
        let mut missing = false;
        let mut prefix = lower.clone();
        for comp in &comps[..comps.len().saturating_sub(1)] {
            prefix.push(comp);
            match lstat(&prefix)? {
                None => {
                    missing = true;
                    break;
                }
                Some(st) if type_bits(&st) != S_IFDIR => return Ok(Lookup::Hidden),
                Some(_) => {
                    if is_opaque(&prefix)? {
                        opaque_above = true;
                    }
                }
            }
        }
        if !missing {
            let path = lower.join(rel);
            match lstat(&path)? {
                Some(st) if is_whiteout(&st) => return Ok(Lookup::Hidden),
                Some(st) => return Ok(Lookup::Found(path, st)),
                None => {}
            }
        }
        if opaque_above {
            return Ok(Lookup::Hidden);
        }
    }
    Ok(Lookup::Absent)
}

/// Removes from `upper` the directories that are empty, not opaque, and equal in metadata to
/// the lower directory they were copied up from. `lowers` bottom first.
pub(crate) fn prune_upper(upper: &Path, lowers: &[PathBuf]) -> Result<(), SnapshotError> {
    prune_dir(upper, Path::new(""), lowers).map(|_| ())
}

/// Prunes below `upper/rel`; returns whether `rel` itself was removed.
fn prune_dir(upper: &Path, rel: &Path, lowers: &[PathBuf]) -> Result<bool, SnapshotError> {
    let dir = upper.join(rel);
    let mut entries = 0usize;
    let mut removed = 0usize;
    let read = std::fs::read_dir(&dir).map_err(io_err("read directory", &dir))?;
    let mut subdirs = Vec::new();
    for entry in read {
        let entry = entry.map_err(io_err("read directory", &dir))?;
        entries += 1;
        let ft = entry.file_type().map_err(io_err("stat", &entry.path()))?;
        if ft.is_dir() {
            subdirs.push(entry.file_name());
        }
    }
    for name in subdirs {
        if prune_dir(upper, &rel.join(&name), lowers)? {
            removed += 1;
        }
    }
    if rel.as_os_str().is_empty() || entries != removed {
        return Ok(false);
    }
    if is_opaque(&dir).map_err(io_err("read attributes of", &dir))? {
        return Ok(false);
    }
    let same = match lookup(lowers, rel).map_err(io_err("look up in the lower layers", &dir))? {
        Lookup::Found(lower, st) if type_bits(&st) == S_IFDIR => {
            let up = lstat(&dir)
                .map_err(io_err("stat", &dir))?
                .ok_or_else(|| io_err("stat", &dir)(Errno::NOENT.into()))?;
            same_meta(&up, &st)
                && content_xattrs(&dir).map_err(io_err("read attributes of", &dir))?
                    == content_xattrs(&lower).map_err(io_err("read attributes of", &lower))?
        }
        _ => false,
    };
    if !same {
        return Ok(false);
    }
    std::fs::remove_dir(&dir).map_err(io_err("remove", &dir))?;
    Ok(true)
}

/// Mode, owner and modification time: what a directory entry in a layer carries.
pub(crate) fn same_meta(a: &Stat, b: &Stat) -> bool {
    a.st_mode == b.st_mode
        && a.st_uid == b.st_uid
        && a.st_gid == b.st_gid
        && a.st_mtime == b.st_mtime
        && a.st_mtime_nsec == b.st_mtime_nsec
}

/// Removes overlayfs's bookkeeping attributes (`origin`, `impure`, …) from everything in an
/// unmounted upperdir, keeping the opaque markers, so it can serve as a lowerdir itself.
pub(crate) fn strip_bookkeeping(upper: &Path) -> Result<(), SnapshotError> {
    let mut stack = vec![upper.to_owned()];
    while let Some(path) = stack.pop() {
        let xattrs = read_xattrs(&path).map_err(io_err("read attributes of", &path))?;
        for name in xattrs.keys() {
            if is_overlay_xattr(name) && !name.ends_with(b".opaque") {
                let name = OsString::from_vec(name.clone());
                match rustix::fs::lremovexattr(&path, name.as_os_str()) {
                    Ok(()) | Err(Errno::NODATA) => {}
                    Err(e) => return Err(io_err("remove an attribute of", &path)(e.into())),
                }
            }
        }
        let st = lstat(&path)
            .map_err(io_err("stat", &path))?
            .ok_or_else(|| io_err("stat", &path)(Errno::NOENT.into()))?;
        if type_bits(&st) == S_IFDIR {
            for entry in std::fs::read_dir(&path).map_err(io_err("read directory", &path))? {
                let entry = entry.map_err(io_err("read directory", &path))?;
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Tries an overlay mount in `scratch` and reports why it failed, if it did.
pub(crate) fn probe(scratch: &Path, api: MountApi) -> Result<(), SnapshotError> {
    let lower = scratch.join("lower");
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    let merged = scratch.join("merged");
    for dir in [&lower, &upper, &work, &merged] {
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    }
    // A whiteout in the lower checks the kernel reads it (and that we may make one).
    rustix::fs::mknodat(
        CWD,
        lower.join("gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .map_err(|e| io_err("create a whiteout in", &lower)(e.into()))?;
    let lowers = [lower];
    let mut mount = OverlayMount::mount(
        &OverlayDirs {
            lowers: &lowers,
            upper: &upper,
            work: &work,
            merged: &merged,
            scratch,
        },
        api,
    )?;
    let visible = lstat(&merged.join("gone")).map_err(io_err("stat", &merged))?;
    mount.unmount()?;
    if visible.is_some() {
        return Err(SnapshotError::Mount {
            target: merged,
            detail: "overlay does not honour whiteouts".to_owned(),
            source: io::Error::from(io::ErrorKind::Unsupported),
        });
    }
    Ok(())
}

/// Makes the overlay workdir's private `work/` removable (overlayfs leaves it mode 000) and
/// removes the scratch tree.
pub(crate) fn remove_scratch(scratch: &Path) -> io::Result<()> {
    for work in [scratch.join("work/work"), scratch.join("work/index")] {
        if let Ok(Some(_)) = lstat(&work) {
            let _ = std::fs::set_permissions(
                &work,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            );
        }
    }
    match std::fs::remove_dir_all(scratch) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
