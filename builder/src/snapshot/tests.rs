//! Tests of the snapshotter: chainIDs, unpacking once, the overlay and copy backends producing
//! the same layer for a RUN-like change, deep stacks, the cost of a small change over a large
//! base, keeping a change as a snapshot, and no mount left behind.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_registry::Digest;
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};
use sha2::Digest as _;

use super::fsutil::mounts_under;
use super::*;
use crate::layer::{ChangeKind, Compression, LayerOptions, decompress, write_layer};
use crate::testutil::skip;

/// Modification time of every lower-layer entry the tests make.
const OLD: i64 = 1_000_000;
/// The `SOURCE_DATE_EPOCH` the comparison tests clamp new times to.
const EPOCH: i64 = 1_600_000_000;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Snapshots in a fresh directory with `backend` forced, or `None` (after [`skip`]) when this
/// machine cannot run the test.
fn snapshots(base: &Path, backend: Backend, api: MountApi) -> Option<Snapshots> {
    if !is_root() {
        skip("snapshot tests need root (overlay mounts, whiteout devices)");
        return None;
    }
    let detected = Snapshots::at(
        base.join("snapshots"),
        base.join("tmp"),
        &SnapshotOptions {
            backend: None,
            mount_api: api,
        },
    )
    .unwrap();
    if backend == Backend::Overlay && detected.backend() != Backend::Overlay {
        skip(&format!(
            "overlayfs unavailable: {}",
            detected.overlay_unavailable().unwrap_or("?")
        ));
        return None;
    }
    Some(
        Snapshots::at(
            base.join("snapshots"),
            base.join("tmp"),
            &SnapshotOptions {
                backend: Some(backend),
                mount_api: api,
            },
        )
        .unwrap(),
    )
}

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Sets every mtime under `root` (not `root` itself) to `secs`, children first.
fn set_times(root: &Path, secs: i64) {
    let mut paths = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            paths.push(e.path());
        }
    }
    paths.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in paths {
        set_mtime(&p, secs);
    }
}

fn whiteout(path: &Path) {
    rustix::fs::mknodat(CWD, path, FileType::CharacterDevice, Mode::empty(), 0).unwrap();
}

/// The tree at `dir` (an upperdir-form change set) as an uncompressed layer.
fn layer_of(dir: &Path) -> (Vec<u8>, Digest) {
    let mut tar = Vec::new();
    let info = write_layer(
        dir,
        &LayerOptions {
            kind: ChangeKind::OverlayUpper,
            compression: Compression::None,
            source_date_epoch: None,
        },
        &mut tar,
    )
    .unwrap();
    (tar, info.diff_id)
}

/// Unpacks the trees `dirs` (bottom first) as a stack; returns the chainIDs.
fn stack(snaps: &Snapshots, dirs: &[PathBuf]) -> Vec<Digest> {
    let mut diff_ids = Vec::new();
    let mut tars = Vec::new();
    for dir in dirs {
        let (tar, diff_id) = layer_of(dir);
        diff_ids.push(diff_id);
        tars.push(tar);
    }
    let chain = chain_ids(&diff_ids);
    for (id, tar) in chain.iter().zip(&tars) {
        snaps.prepare_layer(id, &tar[..]).unwrap();
    }
    chain
}

/// `kind path [-> link]` per tar entry.
fn listing(blob: &[u8]) -> Vec<String> {
    let mut tar = Vec::new();
    decompress(blob).unwrap().read_to_end(&mut tar).unwrap();
    let mut out = Vec::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let e = e.unwrap();
        let kind = char::from(e.header().as_bytes()[156]);
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| format!(" -> {}", String::from_utf8_lossy(&l)))
            .unwrap_or_default();
        out.push(format!("{kind} {path}{link}"));
    }
    out
}

fn assert_no_mounts(base: &Path) {
    assert_eq!(mounts_under(base).unwrap(), Vec::<PathBuf>::new());
}

#[test]
fn chain_ids_follow_the_oci_definition() {
    let a = Digest::of(b"a");
    let b = Digest::of(b"b");
    let c = Digest::of(b"c");
    let ab = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(format!("{a} {b}").as_bytes()))
    );
    let abc = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(format!("{ab} {c}").as_bytes()))
    );
    let got: Vec<String> = chain_ids(&[a.clone(), b, c])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, vec![a.to_string(), ab, abc]);
    assert!(chain_ids(&[]).is_empty());
    assert_eq!(chain_id(None, &a), a);
}

/// The lower layers of the RUN-like change: returns their trees.
fn make_lowers(base: &Path) -> Vec<PathBuf> {
    let l1 = base.join("l1");
    for d in ["etc", "dir_replace", "opaque_dir", "deep/a/b", "untouched"] {
        std::fs::create_dir_all(l1.join(d)).unwrap();
    }
    for (f, data) in [
        ("etc/keep", "keep"),
        ("etc/modify", "old"),
        ("etc/delete", "bye"),
        ("etc/gone_in_l2", "x"),
        ("dir_replace/a", "a"),
        ("dir_replace/b", "b"),
        ("opaque_dir/x", "x"),
        ("opaque_dir/y", "y"),
        ("filedir", "file"),
        ("deep/a/b/c", "c"),
        ("untouched/u", "u"),
    ] {
        std::fs::write(l1.join(f), data).unwrap();
    }
    std::fs::set_permissions(l1.join("deep/a/b/c"), PermissionsExt::from_mode(0o644)).unwrap();
    set_times(&l1, OLD);
    let l2 = base.join("l2");
    std::fs::create_dir_all(l2.join("etc")).unwrap();
    std::fs::create_dir_all(l2.join("l2dir")).unwrap();
    std::fs::write(l2.join("l2dir/new"), "l2").unwrap();
    whiteout(&l2.join("etc/gone_in_l2"));
    set_times(&l2, OLD);
    vec![l1, l2]
}

/// What a RUN might do: create, modify, delete, replace a directory with a file, replace a
/// directory's contents (opaque), a file with a directory, chmod deep down, new trees, links;
/// and read a file, which must not appear.
fn run_like_change(root: &Path) {
    let mut s = String::new();
    std::fs::File::open(root.join("etc/keep"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "keep");
    assert!(!root.join("etc/gone_in_l2").exists());
    std::fs::write(root.join("etc/created"), "new").unwrap();
    std::fs::write(root.join("etc/modify"), "new content").unwrap();
    std::fs::remove_file(root.join("etc/delete")).unwrap();
    std::fs::remove_dir_all(root.join("dir_replace")).unwrap();
    std::fs::write(root.join("dir_replace"), "now a file").unwrap();
    std::fs::remove_dir_all(root.join("opaque_dir")).unwrap();
    std::fs::create_dir(root.join("opaque_dir")).unwrap();
    std::fs::write(root.join("opaque_dir/z"), "z").unwrap();
    std::fs::remove_file(root.join("filedir")).unwrap();
    std::fs::create_dir(root.join("filedir")).unwrap();
    std::fs::write(root.join("filedir/inner"), "i").unwrap();
    std::fs::set_permissions(root.join("deep/a/b/c"), PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(root.join("newdir/sub")).unwrap();
    std::fs::write(root.join("newdir/sub/f"), "f").unwrap();
    std::os::unix::fs::symlink("etc/created", root.join("link")).unwrap();
    std::fs::hard_link(root.join("etc/created"), root.join("etc/hard")).unwrap();
}

const EXPECTED_CHANGE: &[&str] = &[
    "5 deep/",
    "5 deep/a/",
    "5 deep/a/b/",
    "0 deep/a/b/c",
    "0 dir_replace",
    "5 etc/",
    "0 etc/.wh.delete",
    "0 etc/created",
    "1 etc/hard -> etc/created",
    "0 etc/modify",
    "5 filedir/",
    "0 filedir/.wh..wh..opq",
    "0 filedir/inner",
    "2 link -> etc/created",
    "5 newdir/",
    "5 newdir/sub/",
    "0 newdir/sub/f",
    "5 opaque_dir/",
    "0 opaque_dir/.wh..wh..opq",
    "0 opaque_dir/z",
];

/// Commits `mutable` as a gzip layer with clamped times: the result and the blob.
fn commit_gzip(mutable: Mutable) -> (Committed, Vec<u8>) {
    let mut blob = Vec::new();
    let options = CommitOptions {
        compression: Compression::Gzip,
        source_date_epoch: Some(EPOCH),
    };
    let committed = mutable.commit(&options, &mut blob).unwrap();
    (committed, blob)
}

/// Runs the change on `backend` and returns the layer blob (gzip, clamped times).
fn change_layer(backend: Backend) -> Option<Vec<u8>> {
    let base = tempfile::tempdir().unwrap();
    let snaps = snapshots(base.path(), backend, MountApi::Auto)?;
    let chain = stack(&snaps, &make_lowers(base.path()));
    let mutable = snaps.mutable(&chain).unwrap();
    assert_eq!(mutable.backend(), backend);
    run_like_change(mutable.root());
    let (committed, blob) = commit_gzip(mutable);
    assert_eq!(committed.layer().size, blob.len() as u64);
    assert_eq!(
        committed.chain_id(),
        &chain_id(chain.last(), &committed.layer().diff_id)
    );
    // Kept as a snapshot, the change stacks like any unpacked layer.
    let mut full = chain.clone();
    full.push(committed.chain_id().clone());
    let kept = committed.keep(&snaps).unwrap();
    assert!(kept.starts_with(base.path().join("snapshots")));
    let next = snaps.mutable(&full).unwrap();
    let root = next.root();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/modify")).unwrap(),
        "new content"
    );
    assert!(!root.join("etc/delete").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/keep")).unwrap(),
        "keep"
    );
    let names = |d: &str| {
        let mut v: Vec<String> = std::fs::read_dir(root.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("opaque_dir"), ["z"]);
    assert_eq!(names("filedir"), ["inner"]);
    assert_eq!(
        std::fs::read_to_string(root.join("dir_replace")).unwrap(),
        "now a file"
    );
    assert_eq!(
        std::fs::metadata(root.join("deep/a/b/c")).unwrap().mode() & 0o7777,
        0o600
    );
    drop(next);
    assert_no_mounts(base.path());
    // Nothing left in tmp/ once everything is dropped.
    assert_eq!(
        std::fs::read_dir(base.path().join("tmp")).unwrap().count(),
        0
    );
    Some(blob)
}

#[test]
fn overlay_change_is_the_expected_layer_and_copy_is_byte_identical() {
    let Some(overlay) = change_layer(Backend::Overlay) else {
        return;
    };
    assert_eq!(listing(&overlay), EXPECTED_CHANGE);
    let copy = change_layer(Backend::Copy).unwrap();
    assert_eq!(listing(&copy), EXPECTED_CHANGE);
    assert!(
        overlay == copy,
        "the copy snapshotter wrote different layer bytes"
    );
}

/// ext4 hands a freed inode number straight back to the next `mkdir`: a directory removed and
/// recreated at its old inode is still a new directory, opaque as overlayfs makes it.
#[test]
fn a_directory_recreated_at_its_old_inode_is_opaque_with_the_copy_backend() {
    let base = tempfile::tempdir().unwrap();
    let snaps = snapshots(base.path(), Backend::Copy, MountApi::Auto).unwrap();
    let chain = stack(&snaps, &make_lowers(base.path()));
    let mutable = snaps.mutable(&chain).unwrap();
    let dir = mutable.root().join("opaque_dir");
    let old = std::fs::symlink_metadata(&dir).unwrap().ino();
    let reused = (0..100).any(|_| {
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::symlink_metadata(&dir).unwrap().ino() == old
    });
    if !reused {
        eprintln!("this filesystem never reused the inode; checking a plain recreation");
    }
    std::fs::write(dir.join("z"), "z").unwrap();
    let (_, blob) = commit_gzip(mutable);
    assert_eq!(
        listing(&blob),
        [
            "5 opaque_dir/",
            "0 opaque_dir/.wh..wh..opq",
            "0 opaque_dir/z"
        ]
    );
}

#[test]
fn unchanged_root_gives_an_empty_layer_with_both_backends() {
    for backend in [Backend::Overlay, Backend::Copy] {
        let base = tempfile::tempdir().unwrap();
        let Some(snaps) = snapshots(base.path(), backend, MountApi::Auto) else {
            return;
        };
        let chain = stack(&snaps, &make_lowers(base.path()));
        let mutable = snaps.mutable(&chain).unwrap();
        // A stub created and removed with its parent's time restored (what the sandbox does
        // for mount points) leaves no trace.
        let etc = mutable.root().join("etc");
        let before = std::fs::symlink_metadata(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), "").unwrap();
        std::fs::remove_file(etc.join("resolv.conf")).unwrap();
        set_mtime(&etc, before.mtime());
        let mut blob = Vec::new();
        let committed = mutable
            .commit(&CommitOptions::default(), &mut blob)
            .unwrap();
        assert_eq!(listing(&blob), Vec::<String>::new(), "{backend:?}");
        assert_eq!(
            committed.layer().diff_id.to_string(),
            "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
        );
        drop(committed);
        assert_no_mounts(base.path());
    }
}

#[test]
fn a_layer_is_unpacked_once_even_by_concurrent_callers() {
    let base = tempfile::tempdir().unwrap();
    let Some(snaps) = snapshots(base.path(), Backend::Copy, MountApi::Auto) else {
        return;
    };
    let tree = base.path().join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    for i in 0..200 {
        std::fs::write(tree.join(format!("d/f{i}")), format!("{i}")).unwrap();
    }
    let (tar, diff_id) = layer_of(&tree);
    let id = chain_id(None, &diff_id);
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| snaps.prepare_layer(&id, &tar[..]).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.iter().all(|p| p == &snaps.path(&id)));
    assert!(snaps.contains(&id));
    assert_eq!(
        std::fs::read_dir(snaps.path(&id).join("d"))
            .unwrap()
            .count(),
        200
    );
    assert_eq!(
        std::fs::read_dir(base.path().join("snapshots"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_dir(base.path().join("tmp")).unwrap().count(),
        0
    );
    // Once there, the blob is not even read.
    let garbage: &[u8] = b"not a tar";
    assert_eq!(snaps.prepare_layer(&id, garbage).unwrap(), snaps.path(&id));
    // A missing chainID is a clear error.
    let missing = Digest::of(b"missing");
    match snaps.mutable(&[id.clone(), missing.clone()]) {
        Err(SnapshotError::Missing { chain_id }) => assert_eq!(chain_id, missing),
        other => panic!("expected Missing, got {other:?}"),
    }
}

/// Makes `n` snapshot directories directly: layer `i` has `f<i>` and overrides `common`;
/// layer 10 whites out `f3` and layer `n - 5` whites out `f5`.
fn many_layers(snaps: &Snapshots, n: usize) -> Vec<Digest> {
    let mut chain = Vec::new();
    for i in 0..n {
        let id = Digest::of(format!("layer {i}").as_bytes());
        let dir = snaps.path(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}")), i.to_string()).unwrap();
        std::fs::write(dir.join("common"), i.to_string()).unwrap();
        if i == 10 {
            whiteout(&dir.join("f3"));
        }
        if i == n - 5 {
            whiteout(&dir.join("f5"));
        }
        chain.push(id);
    }
    chain
}

fn check_deep_stack(api: MountApi, n: usize) {
    let base = tempfile::tempdir().unwrap();
    let Some(snaps) = snapshots(base.path(), Backend::Overlay, api) else {
        return;
    };
    let chain = many_layers(&snaps, n);
    let mutable = snaps.mutable(&chain).unwrap();
    let root = mutable.root();
    assert_eq!(
        std::fs::read_to_string(root.join("common")).unwrap(),
        (n - 1).to_string()
    );
    let mut seen = 0;
    for i in 0..n {
        let exists = root.join(format!("f{i}")).exists();
        assert_eq!(exists, i != 3 && i != 5, "f{i} with {n} layers, {api:?}");
        seen += usize::from(exists);
    }
    assert_eq!(seen, n - 2);
    std::fs::write(root.join("f0"), "changed").unwrap();
    let mut blob = Vec::new();
    mutable
        .commit(&CommitOptions::default(), &mut blob)
        .unwrap();
    assert_eq!(listing(&blob), ["0 f0"]);
    assert_no_mounts(base.path());
}

#[test]
fn a_stack_deeper_than_one_page_of_mount_options_is_mounted_with_mount2() {
    // ~90-byte lowerdir paths: 150 of them are three pages; symlinks and flattening fit them.
    check_deep_stack(MountApi::Legacy, 150);
}

#[test]
fn a_stack_deeper_than_overlayfs_allows_is_flattened() {
    check_deep_stack(MountApi::Auto, 520);
}

/// A tmpfs mounted on a test directory, unmounted on drop: creating 100,000 inodes on this
/// machine's ext4 takes minutes, on tmpfs a second or two, and the point is the commit's cost.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn one_file_changed_over_100000_files_commits_in_milliseconds() {
    let base = tempfile::tempdir().unwrap();
    if !is_root() {
        skip("the 100,000-file test needs root (tmpfs, overlay)");
        return;
    }
    let fs_root = base.path().join("fs");
    std::fs::create_dir(&fs_root).unwrap();
    rustix::mount::mount(
        "tmpfs",
        &fs_root,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    let tmpfs = Tmpfs(fs_root.clone());
    let Some(snaps) = snapshots(&fs_root, Backend::Overlay, MountApi::Auto) else {
        return;
    };
    let id = Digest::of(b"a base of 100000 files");
    let dir = snaps.path(&id);
    for d in 0..100 {
        let sub = dir.join(format!("d{d:03}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..1000 {
            std::fs::write(sub.join(format!("f{f:04}")), b"").unwrap();
        }
    }
    let mutable = snaps.mutable(std::slice::from_ref(&id)).unwrap();
    std::fs::write(mutable.root().join("d042/f0123"), b"changed").unwrap();
    std::fs::write(mutable.root().join("x"), b"new").unwrap();
    let start = Instant::now();
    let mut blob = Vec::new();
    let committed = mutable
        .commit(&CommitOptions::default(), &mut blob)
        .unwrap();
    let took = start.elapsed();
    eprintln!(
        "snapshot cost of a 2-file change over 100,000 files (overlay: unmount, prune, \
         write the layer): {:.2} ms",
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(listing(&blob), ["5 d042/", "0 d042/f0123", "0 x"]);
    drop(committed);
    assert_no_mounts(&fs_root.join("tmp"));
    drop(tmpfs);
    assert_no_mounts(base.path());
}
