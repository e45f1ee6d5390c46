//! Small filesystem helpers of the snapshotter: `lstat` that maps "missing" to `None`,
//! extended attributes, copying one entry's metadata, and the mount table.
//!
//! Every call here acts on the entry itself and never follows a final symlink; the trees they
//! touch (snapshot directories, upperdirs, scratch copies) belong to kiln, but their contents come
//! from images and RUN steps, so a symlink in them is data, not a path to follow.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Stat, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

/// The xattr namespaces overlayfs keeps its own metadata in (root and `userxattr` mounts).
pub(crate) const OVERLAY_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// `lstat`, `None` when the path does not exist.
pub(crate) fn lstat(path: &Path) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The file-type bits of a `stat`.
pub(crate) fn type_bits(st: &Stat) -> u32 {
    st.st_mode & S_IFMT
}

/// `S_IFMT`: the file-type bits of `st_mode`.
const S_IFMT: u32 = 0o170_000;

/// `S_IFDIR`.
pub(crate) const S_IFDIR: u32 = 0o040_000;
/// `S_IFCHR`.
pub(crate) const S_IFCHR: u32 = 0o020_000;
/// `S_IFLNK`.
pub(crate) const S_IFLNK: u32 = 0o120_000;
/// `S_IFREG`.
pub(crate) const S_IFREG: u32 = 0o100_000;
/// `S_IFSOCK`.
pub(crate) const S_IFSOCK: u32 = 0o140_000;

/// Whether `st` is an overlayfs whiteout: a character device with device number 0/0.
pub(crate) fn is_whiteout(st: &Stat) -> bool {
    type_bits(st) == S_IFCHR && st.st_rdev == 0
}

pub(crate) use crate::layer::read_xattrs;

/// The extended attributes that describe content (overlayfs's own removed).
pub(crate) fn content_xattrs(path: &Path) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut xattrs = read_xattrs(path)?;
    xattrs.retain(|name, _| !is_overlay_xattr(name));
    Ok(xattrs)
}

/// Whether `name` is one of overlayfs's private attributes.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    OVERLAY_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether the directory at `path` is marked opaque for overlayfs.
pub(crate) fn is_opaque(path: &Path) -> io::Result<bool> {
    for prefix in OVERLAY_XATTR_PREFIXES {
        let mut name = prefix.to_vec();
        name.extend_from_slice(b"opaque");
        let mut value = [0u8; 2];
        match rustix::fs::lgetxattr(path, OsStr::from_bytes(&name), &mut value[..]) {
            Ok(1) if value[0] == b'y' => return Ok(true),
            Ok(_) | Err(Errno::NODATA) | Err(Errno::RANGE) => {}
            Err(e) if e == Errno::NOTSUP || e == Errno::OPNOTSUPP => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Marks the directory at `path` opaque: `trusted.overlay.opaque=y` where the process may set
/// trusted attributes (root), `user.overlay.opaque=y` otherwise (what a `userxattr` mount reads).
pub(crate) fn set_opaque(path: &Path) -> io::Result<()> {
    let name = if crate::privileges::current().trusted_xattrs {
        "trusted.overlay.opaque"
    } else {
        "user.overlay.opaque"
    };
    rustix::fs::lsetxattr(path, name, b"y", XattrFlags::empty()).map_err(Into::into)
}

/// Sets `xattrs` on `path` (not following a symlink). Attributes the filesystem or the
/// process's privileges refuse are skipped, as the layer applier does.
pub(crate) fn write_xattrs(path: &Path, xattrs: &BTreeMap<Vec<u8>, Vec<u8>>) -> io::Result<()> {
    for (name, value) in xattrs {
        match rustix::fs::lsetxattr(path, OsStr::from_bytes(name), value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(e) if e == Errno::NOTSUP || e == Errno::OPNOTSUPP || e == Errno::PERM => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sets the owner, then the mode (a chown clears setuid bits), of `path`, and its times; a
/// symlink's own owner and times, never its target's (a symlink has no mode of its own).
pub(crate) fn copy_meta(path: &Path, st: &Stat) -> io::Result<()> {
    let is_link = type_bits(st) == S_IFLNK;
    let uid = rustix::fs::Uid::from_raw(st.st_uid);
    let gid = rustix::fs::Gid::from_raw(st.st_gid);
    match rustix::fs::chownat(CWD, path, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW) {
        // Without privilege the entry keeps the caller's ids, as the applier does.
        Ok(()) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    if !is_link {
        rustix::fs::chmodat(
            CWD,
            path,
            rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777),
            AtFlags::empty(),
        )?;
    }
    set_mtime(path, st)
}

/// Sets the access and modification times of `path` (not following a symlink) to `st`'s.
pub(crate) fn set_mtime(path: &Path, st: &Stat) -> io::Result<()> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
}

/// The mount points in this process's mount namespace at or below `dir`, deepest first (the
/// order they can be unmounted in). Reads `/proc/self/mountinfo`.
pub(crate) fn mounts_under(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let info = std::fs::read("/proc/self/mountinfo")?;
    Ok(mounts_under_in(&info, dir.as_os_str().as_bytes()))
}

/// [`mounts_under`] over the text of a mountinfo file.
pub(crate) fn mounts_under_in(mountinfo: &[u8], dir: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.split(|&b| b == b'\n') {
        // Field 5 (1-based) is the mount point, with space, tab, newline and backslash octal
        // escaped.
        let Some(field) = line.split(|&b| b == b' ').nth(4) else {
            continue;
        };
        let point = unescape_mountinfo(field);
        let inside = point == dir
            || (point.starts_with(dir) && point.get(dir.len()) == Some(&b'/'))
            || dir == b"/";
        if inside {
            out.push(std::path::PathBuf::from(OsStr::from_bytes(&point)));
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out
}

/// Undoes mountinfo's `\ooo` octal escapes.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && field.len() >= i + 4
            && field[i + 1..i + 4]
                .iter()
                .all(|c| (b'0'..=b'7').contains(c))
        {
            let digit = |c: u8| u32::from(c - b'0');
            let v = digit(field[i + 1]) * 64 + digit(field[i + 2]) * 8 + digit(field[i + 3]);
            // `\ooo` above 0o377 is not something the kernel writes; keep the low byte.
            out.push((v & 0xff) as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn mountinfo_lines_are_filtered_and_unescaped() {
        let info = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
            90 27 0:50 / /tmp/k/run-1/merged rw - overlay overlay rw,lowerdir=/a\n\
            91 90 0:51 / /tmp/k/run-1/merged/proc rw - proc proc rw\n\
            92 27 0:52 / /tmp/k/run-10 rw - tmpfs tmpfs rw\n\
            93 27 0:53 / /tmp/k/run-1/with\\040space rw - tmpfs tmpfs rw\n";
        let got = mounts_under_in(info, b"/tmp/k/run-1");
        let want: Vec<PathBuf> = vec![
            "/tmp/k/run-1/merged/proc".into(),
            "/tmp/k/run-1/with space".into(),
            "/tmp/k/run-1/merged".into(),
        ];
        assert_eq!(got, want);
        assert!(mounts_under_in(info, b"/nowhere").is_empty());
    }

    #[test]
    fn opaque_and_xattr_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        assert!(!is_opaque(&d).unwrap());
        if set_opaque(&d).is_err() {
            // tmpfs before 6.6 has no user xattrs; nothing more to check there.
            return;
        }
        assert!(is_opaque(&d).unwrap());
        assert!(content_xattrs(&d).unwrap().is_empty());
        assert_eq!(read_xattrs(&d).unwrap().len(), 1);
    }
}
