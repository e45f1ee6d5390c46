//! The copy-based snapshotter, for where overlayfs cannot be mounted: a RUN gets a private
//! merged copy of the stack, and its change is found by comparing that copy with a manifest
//! taken before the RUN.
//!
//! The change is written out as an overlayfs upperdir would hold it (0/0 character devices for
//! deletions, the opaque xattr on replaced directories, every ancestor of a change present), so
//! the one layer writer produces the same layer bytes from either snapshotter. The rules follow
//! overlayfs's copy-up:
//!
//! - a directory at the same inode is recursed into, and present in the change when anything
//!   below it is, or when its mode, owner, mtime or extended attributes changed;
//! - a directory at a new inode, or born after the manifest (filesystems such as ext4 hand a
//!   freed inode number straight back to the next `mkdir`), where something existed before was
//!   removed and recreated: it is opaque, with everything in it;
//! - a non-directory is changed when its inode, type, mode, owner, size, mtime or device number
//!   differ, or its ctime differs while its link count does not (a link count change alone is
//!   another name being added or removed, which overlayfs does not copy up for); a changed or
//!   new entry with more than one link brings its other names along, as overlayfs's copy-up of
//!   a hard link does;
//! - a name present before and missing after is a whiteout, unless its directory was replaced.
//!
//! Detection relies on ctime, which no unprivileged call can set: after the manifest is taken
//! the snapshotter waits until the filesystem's clock has moved past every recorded ctime, so a
//! change in the same clock tick cannot go unseen. Differences from overlayfs: opening a file
//! for writing without writing is not a change here, and modifying a file that has hard links
//! in the lower layers changes all its names (overlayfs breaks the link on copy-up).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{AtFlags, CWD, FileType, Mode, Stat, StatxFlags, statx};
use rustix::io::Errno;

use super::SnapshotError;
use super::fsutil::{
    S_IFDIR, S_IFLNK, S_IFREG, S_IFSOCK, content_xattrs, copy_meta, lstat, set_opaque, type_bits,
    write_xattrs,
};
use super::merge::merge_into;

/// How long to wait at most for the filesystem clock to tick past the manifest.
const TICK_WAIT: Duration = Duration::from_secs(2);

/// What is recorded of one entry before the RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    nlink: u64,
    rdev: u64,
}

impl State {
    fn of(st: &Stat) -> Self {
        State {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime, st.st_ctime_nsec as i64),
            nlink: st.st_nlink,
            rdev: st.st_rdev,
        }
    }

    fn is_dir(&self) -> bool {
        self.mode & 0o170_000 == S_IFDIR
    }

    fn same_inode(&self, other: &State) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// The tree before the RUN: every directory's children, and directories' extended attributes.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    dirs: HashMap<PathBuf, BTreeMap<OsString, State>>,
    dir_xattrs: HashMap<PathBuf, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Inode → names, built when first needed (a new hard link to an old file).
    inodes: Option<HashMap<(u64, u64), Vec<PathBuf>>>,
    max_ctime: (i64, i64),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_owned();
    move |source| SnapshotError::Io { op, path, source }
}

fn stat_err(op: &'static str, path: &Path) -> impl FnOnce(Errno) -> SnapshotError {
    let path = path.to_owned();
    move |e| SnapshotError::Io {
        op,
        path,
        source: e.into(),
    }
}

fn must_lstat(path: &Path) -> Result<Stat, SnapshotError> {
    lstat(path)
        .map_err(io_err("stat", path))?
        .ok_or_else(|| io_err("stat", path)(Errno::NOENT.into()))
}

/// The names in a directory, sorted.
fn sorted_names(dir: &Path) -> Result<Vec<OsString>, SnapshotError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        names.push(entry.map_err(io_err("read directory", dir))?.file_name());
    }
    names.sort();
    Ok(names)
}

/// Fills `root` with the merge of `layers` (bottom first) and records its manifest, then waits
/// for the clock to pass it (see the module documentation). `scratch` is on `root`'s
/// filesystem.
pub(crate) fn prepare(
    root: &Path,
    layers: &[PathBuf],
    scratch: &Path,
) -> Result<Manifest, SnapshotError> {
    merge_into(root, layers)?;
    let manifest = Manifest::take(root)?;
    wait_for_tick(scratch, manifest.max_ctime)?;
    Ok(manifest)
}

impl Manifest {
    fn take(root: &Path) -> Result<Self, SnapshotError> {
        let mut manifest = Manifest::default();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let st = must_lstat(&dir)?;
            manifest.note_ctime(&st);
            let xattrs = content_xattrs(&dir).map_err(io_err("read attributes of", &dir))?;
            if !xattrs.is_empty() {
                manifest.dir_xattrs.insert(rel.clone(), xattrs);
            }
            let mut children = BTreeMap::new();
            for name in sorted_names(&dir)? {
                let path = dir.join(&name);
                let st = must_lstat(&path)?;
                let state = State::of(&st);
                manifest.note_ctime(&st);
                if state.is_dir() {
                    stack.push(rel.join(&name));
                }
                children.insert(name, state);
            }
            manifest.dirs.insert(rel, children);
        }
        Ok(manifest)
    }

    fn note_ctime(&mut self, st: &Stat) {
        let c = (st.st_ctime, st.st_ctime_nsec as i64);
        if c > self.max_ctime {
            self.max_ctime = c;
        }
    }

    /// Every name an inode had before, for carrying hard links along.
    fn names_of(&mut self, key: (u64, u64)) -> &[PathBuf] {
        let inodes = self.inodes.get_or_insert_with(|| {
            let mut map: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
            for (dir, children) in &self.dirs {
                for (name, state) in children {
                    if !state.is_dir() {
                        map.entry((state.dev, state.ino))
                            .or_default()
                            .push(dir.join(name));
                    }
                }
            }
            map
        });
        inodes.get(&key).map_or(&[], Vec::as_slice)
    }

    fn state_of(&self, rel: &Path) -> Option<&State> {
        let parent = rel.parent()?;
        self.dirs.get(parent)?.get(rel.file_name()?)
    }
}

/// Waits until a file created in `scratch` gets a ctime after `after`.
fn wait_for_tick(scratch: &Path, after: (i64, i64)) -> Result<(), SnapshotError> {
    let probe = scratch.join("tick");
    let start = std::time::Instant::now();
    loop {
        std::fs::write(&probe, b"").map_err(io_err("write", &probe))?;
        let st = must_lstat(&probe)?;
        std::fs::remove_file(&probe).map_err(io_err("remove", &probe))?;
        if (st.st_ctime, st.st_ctime_nsec as i64) > after || start.elapsed() > TICK_WAIT {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes the change between `manifest` and the tree at `root` into the empty directory
/// `staging`, in overlay upperdir form.
pub(crate) fn diff(
    root: &Path,
    manifest: &mut Manifest,
    staging: &Path,
) -> Result<(), SnapshotError> {
    let mut differ = Differ {
        root,
        staging,
        manifest,
        staged: HashSet::new(),
        dirs: Vec::new(),
    };
    differ.same_dir(Path::new(""))?;
    // Directory metadata last, deepest first, so writing children does not change it.
    let mut dirs = std::mem::take(&mut differ.dirs);
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.as_os_str().len()));
    for (rel, opaque) in dirs {
        let src = root.join(&rel);
        let dst = staging.join(&rel);
        let st = must_lstat(&src)?;
        let xattrs = content_xattrs(&src).map_err(io_err("read attributes of", &src))?;
        write_xattrs(&dst, &xattrs).map_err(io_err("set attributes of", &dst))?;
        if opaque {
            set_opaque(&dst).map_err(io_err("mark opaque", &dst))?;
        }
        copy_meta(&dst, &st).map_err(io_err("set metadata of", &dst))?;
    }
    Ok(())
}

struct Differ<'a> {
    root: &'a Path,
    staging: &'a Path,
    manifest: &'a mut Manifest,
    /// Paths already in the staging tree.
    staged: HashSet<PathBuf>,
    /// Staged directories whose metadata is set at the end, with their opaque flag.
    dirs: Vec<(PathBuf, bool)>,
}

impl Differ<'_> {
    /// Whether the entry at `path` was created after the manifest was taken: its birth time is
    /// past every recorded ctime (the manifest waited for the clock to tick past them). Where
    /// the filesystem keeps no birth time, the inode number alone has to tell.
    fn born_after_manifest(&self, path: &Path) -> Result<bool, SnapshotError> {
        let stx = statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME)
            .map_err(stat_err("stat", path))?;
        let born = (stx.stx_btime.tv_sec, i64::from(stx.stx_btime.tv_nsec));
        Ok(stx.stx_mask & StatxFlags::BTIME.bits() != 0 && born > self.manifest.max_ctime)
    }

    /// Compares a directory that is the same inode as before; returns whether anything in it
    /// changed.
    fn same_dir(&mut self, rel: &Path) -> Result<bool, SnapshotError> {
        let before = self.manifest.dirs.get(rel).cloned().unwrap_or_default();
        let dir = self.root.join(rel);
        let mut changed = false;
        let names = sorted_names(&dir)?;
        for name in &names {
            let child = rel.join(name);
            let path = self.root.join(&child);
            let st = must_lstat(&path)?;
            let now = State::of(&st);
            match before.get(name) {
                Some(old)
                    if now.is_dir()
                        && old.is_dir()
                        && old.same_inode(&now)
                        && !self.born_after_manifest(&path)? =>
                {
                    let inner = self.same_dir(&child)?;
                    if inner || self.dir_changed(&child, old, &now)? {
                        self.stage_dir(&child, false)?;
                        changed = true;
                    }
                }
                Some(_) if now.is_dir() => {
                    self.stage_tree(&child, true)?;
                    changed = true;
                }
                None if now.is_dir() => {
                    self.stage_tree(&child, false)?;
                    changed = true;
                }
                Some(old) if !file_changed(old, &now) => {}
                _ => {
                    if type_bits(&st) != S_IFSOCK {
                        self.stage_file(&child, &st)?;
                        changed = true;
                    }
                }
            }
        }
        let present: HashSet<&OsString> = names.iter().collect();
        for name in before.keys() {
            if !present.contains(name) {
                self.stage_whiteout(&rel.join(name))?;
                changed = true;
            }
        }
        Ok(changed)
    }

    fn dir_changed(&self, rel: &Path, old: &State, now: &State) -> Result<bool, SnapshotError> {
        if old.mode != now.mode
            || old.uid != now.uid
            || old.gid != now.gid
            || old.mtime != now.mtime
        {
            return Ok(true);
        }
        if old.ctime == now.ctime {
            return Ok(false);
        }
        // The ctime also moves when entries come and go; only attributes matter here.
        let path = self.root.join(rel);
        let xattrs = content_xattrs(&path).map_err(io_err("read attributes of", &path))?;
        let before = self
            .manifest
            .dir_xattrs
            .get(rel)
            .cloned()
            .unwrap_or_default();
        Ok(xattrs != before)
    }

    /// Makes sure the staging directory for `rel`'s parent exists.
    fn ensure_parent(&mut self, rel: &Path) -> Result<(), SnapshotError> {
        if let Some(parent) = rel.parent()
            && !parent.as_os_str().is_empty()
        {
            self.stage_dir(parent, false)?;
        }
        Ok(())
    }

    /// Creates the staging directory `rel` (and its parents); metadata is set at the end.
    fn stage_dir(&mut self, rel: &Path, opaque: bool) -> Result<(), SnapshotError> {
        if self.staged.contains(rel) {
            if opaque && let Some(entry) = self.dirs.iter_mut().find(|(r, _)| r == rel) {
                entry.1 = true;
            }
            return Ok(());
        }
        self.ensure_parent(rel)?;
        let dst = self.staging.join(rel);
        std::fs::create_dir(&dst).map_err(io_err("create", &dst))?;
        self.staged.insert(rel.to_owned());
        self.dirs.push((rel.to_owned(), opaque));
        Ok(())
    }

    /// Stages the directory `rel` and everything in it as new.
    fn stage_tree(&mut self, rel: &Path, opaque: bool) -> Result<(), SnapshotError> {
        self.stage_dir(rel, opaque)?;
        let dir = self.root.join(rel);
        for name in sorted_names(&dir)? {
            let child = rel.join(&name);
            let st = must_lstat(&self.root.join(&child))?;
            match type_bits(&st) {
                S_IFDIR => self.stage_tree(&child, false)?,
                S_IFSOCK => {}
                _ => self.stage_file(&child, &st)?,
            }
        }
        Ok(())
    }

    fn stage_whiteout(&mut self, rel: &Path) -> Result<(), SnapshotError> {
        self.ensure_parent(rel)?;
        let dst = self.staging.join(rel);
        rustix::fs::mknodat(CWD, &dst, FileType::CharacterDevice, Mode::empty(), 0)
            .map_err(stat_err("create a whiteout", &dst))?;
        self.staged.insert(rel.to_owned());
        Ok(())
    }

    /// Stages a non-directory, and its other names if it has hard links.
    fn stage_file(&mut self, rel: &Path, st: &Stat) -> Result<(), SnapshotError> {
        if !self.staged.insert(rel.to_owned()) {
            return Ok(());
        }
        self.ensure_parent(rel)?;
        let src = self.root.join(rel);
        let dst = self.staging.join(rel);
        match type_bits(st) {
            S_IFREG => {
                // A hard link shares content and metadata; a copy where linking is refused.
                if std::fs::hard_link(&src, &dst).is_err() {
                    std::fs::copy(&src, &dst).map_err(io_err("copy", &src))?;
                    let xattrs =
                        content_xattrs(&src).map_err(io_err("read attributes of", &src))?;
                    write_xattrs(&dst, &xattrs).map_err(io_err("set attributes of", &dst))?;
                    copy_meta(&dst, st).map_err(io_err("set metadata of", &dst))?;
                }
            }
            S_IFLNK => {
                let target = std::fs::read_link(&src).map_err(io_err("read link", &src))?;
                std::os::unix::fs::symlink(&target, &dst).map_err(io_err("create", &dst))?;
                copy_meta(&dst, st).map_err(io_err("set metadata of", &dst))?;
            }
            _ => {
                rustix::fs::mknodat(
                    CWD,
                    &dst,
                    FileType::from_raw_mode(st.st_mode),
                    Mode::from_raw_mode(st.st_mode & 0o7777),
                    st.st_rdev,
                )
                .map_err(stat_err("create", &dst))?;
                let xattrs = content_xattrs(&src).map_err(io_err("read attributes of", &src))?;
                write_xattrs(&dst, &xattrs).map_err(io_err("set attributes of", &dst))?;
                copy_meta(&dst, st).map_err(io_err("set metadata of", &dst))?;
            }
        }
        if st.st_nlink > 1 && type_bits(st) != S_IFDIR {
            self.stage_link_partners(st)?;
        }
        Ok(())
    }

    /// Stages the other pre-existing names of a multiply linked inode that still name it.
    fn stage_link_partners(&mut self, st: &Stat) -> Result<(), SnapshotError> {
        let now = State::of(st);
        let names = self.manifest.names_of((now.dev, now.ino)).to_vec();
        for name in names {
            if self.staged.contains(&name) {
                continue;
            }
            let path = self.root.join(&name);
            if let Some(other) = lstat(&path).map_err(io_err("stat", &path))?
                && State::of(&other).same_inode(&now)
                && self.manifest.state_of(&name).is_some()
            {
                self.stage_file(&name, &other)?;
            }
        }
        Ok(())
    }
}

/// Whether a non-directory differs from its recorded state (see the module documentation).
fn file_changed(old: &State, now: &State) -> bool {
    if !old.same_inode(now)
        || old.mode != now.mode
        || old.uid != now.uid
        || old.gid != now.gid
        || old.size != now.size
        || old.mtime != now.mtime
        || old.rdev != now.rdev
    {
        return true;
    }
    old.ctime != now.ctime && old.nlink == now.nlink
}
