//! Tests of the layer writer: golden digests, entry order, determinism, `SOURCE_DATE_EPOCH`,
//! overlay upperdir conversion, and round trips through the applier.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kiln_registry::Digest;
use rustix::fs::{AtFlags, Mode, Timespec, Timestamps, XattrFlags};

use super::tarcraft::{is_root, require_root};
use super::{
    ApplyMode, ApplyOptions, ChangeKind, Compression, LayerError, LayerOptions, apply_blob,
    decompress, diff_id_of, layer_from_tar, write_layer,
};

/// sha256 of 1024 zero bytes: the diffID of an empty layer (anchors-features.md §2 item 13).
const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

fn opts(kind: ChangeKind, compression: Compression) -> LayerOptions {
    LayerOptions {
        kind,
        compression,
        source_date_epoch: None,
    }
}

fn write(root: &Path, options: &LayerOptions) -> (super::LayerInfo, Vec<u8>) {
    let mut blob = Vec::new();
    let info = write_layer(root, options, &mut blob).unwrap();
    (info, blob)
}

fn untar(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decompress(blob).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// One tar entry as seen by a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    mtime: u64,
    size: u64,
    link: String,
    pax: Vec<String>,
}

fn list(tar: &[u8]) -> Vec<Listed> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let pax = e
            .pax_extensions()
            .unwrap()
            .map(|x| x.map(|r| r.unwrap().key().unwrap().to_owned()).collect())
            .unwrap_or_default();
        let h = e.header();
        out.push(Listed {
            path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
            kind: char::from(h.as_bytes()[156]),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            mtime: h.mtime().unwrap(),
            size: e.size(),
            link: e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap())
                .unwrap_or_default(),
            pax,
        });
    }
    out
}

fn paths(tar: &[u8]) -> Vec<String> {
    list(tar).into_iter().map(|e| e.path).collect()
}

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

/// Deterministic, compressible bytes (several gzip blocks of them exercise the parallel path).
fn sample(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let word = (state >> 33) % 16;
        out.extend_from_slice(format!("word{word} ").as_bytes());
    }
    out.truncate(len);
    out
}

/// The golden fixture: every kind of entry, fixed modes and times, owned by 0:0.
fn golden_fixture(root: &Path) {
    let long_dir = "a-directory-with-a-rather-long-name-to-need-pax";
    let long_file = format!("file-{}", "x".repeat(70));
    for d in ["bin", "etc", "tmp", "data", long_dir] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    let files: &[(&str, &[u8], u32)] = &[
        ("bin/tool", b"#!/bin/sh\necho kiln\n", 0o4755),
        ("etc/hosts", b"127.0.0.1 localhost\n", 0o644),
        ("etc/shadow", b"root:*:19000::::::\n", 0o640),
    ];
    for (path, content, _) in files {
        std::fs::write(root.join(path), content).unwrap();
    }
    std::fs::write(root.join("data/blob.bin"), sample(2_500_000)).unwrap();
    std::fs::write(root.join(long_dir).join(&long_file), b"long").unwrap();
    std::fs::hard_link(root.join("etc/hosts"), root.join("etc/hosts.hard")).unwrap();
    std::os::unix::fs::symlink("etc/hosts", root.join("link")).unwrap();
    mkfifo(&root.join("pipe"));
    let mut all = Vec::new();
    collect(root, &mut all);
    // Owners first: chown clears setuid bits.
    for p in &all {
        lchown(p, 0, 0);
    }
    for (path, _, mode) in files {
        chmod(&root.join(path), *mode);
    }
    for (d, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("data", 0o755),
        (long_dir, 0o700),
    ] {
        chmod(&root.join(d), mode);
    }
    chmod(&root.join("data/blob.bin"), 0o644);
    chmod(&root.join(long_dir).join(&long_file), 0o600);
    // Deepest first, so setting a child's time cannot disturb its directory's.
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in all {
        set_mtime(&p, 1_700_000_000);
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            collect(&p, out);
        }
        out.push(p);
    }
}

#[test]
fn golden_digests() {
    if !require_root("golden_digests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    golden_fixture(dir.path());
    let (gz, gz_blob) = write(dir.path(), &opts(ChangeKind::Tree, Compression::Gzip));
    let (zst, _) = write(dir.path(), &opts(ChangeKind::Tree, Compression::Zstd));
    let (plain, plain_blob) = write(dir.path(), &opts(ChangeKind::Tree, Compression::None));
    let got = (
        gz.diff_id.to_string(),
        gz.digest.to_string(),
        gz.size,
        zst.digest.to_string(),
    );
    // The zstd digest changed when zstd became independent 2 MiB frames compressed in
    // parallel (compress/mod.rs): the fixture's 2.5 MB file makes the tar two frames. The gzip
    // digest changed when the level went from 6 to 5 (compress/mod.rs, `GZIP_LEVEL`).
    let want = (
        "sha256:af777a352d67fdfcd96fb7ddea5d7a54aedfa70ee308772db79f1f9bd0771b12".to_owned(),
        "sha256:1d1b8508e3c2ed6914dadd6fc7bc07b0e0cb3868f7cfbcdae4e5d970aec2c349".to_owned(),
        344_989,
        "sha256:da49000038729eeb894ce15fa52ac0a9e044a1958bfe8c96acb0e6af91b9c208".to_owned(),
    );
    assert_eq!(got, want, "golden layer digests changed");
    assert_eq!(zst.diff_id, gz.diff_id);
    assert_eq!(plain.diff_id, gz.diff_id);
    assert_eq!(plain.digest, gz.diff_id);
    assert_eq!(plain.size, plain_blob.len() as u64);
    // An uncompressed blob's digest is not hashed twice but must still be its bytes' digest.
    assert_eq!(plain.digest, kiln_registry::Digest::of(&plain_blob));
    assert_eq!(gz.digest, kiln_registry::Digest::of(&gz_blob));
    assert_eq!(gz.size, gz_blob.len() as u64);
    assert_eq!(untar(&gz_blob), plain_blob);

    let listed = list(&plain_blob);
    let names: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "a-directory-with-a-rather-long-name-to-need-pax/",
            &format!(
                "a-directory-with-a-rather-long-name-to-need-pax/file-{}",
                "x".repeat(70)
            ),
            "bin/",
            "bin/tool",
            "data/",
            "data/blob.bin",
            "etc/",
            "etc/hosts",
            "etc/hosts.hard",
            "etc/shadow",
            "link",
            "pipe",
            "tmp/",
        ]
    );
    let by_name: BTreeMap<&str, &Listed> = listed.iter().map(|e| (e.path.as_str(), e)).collect();
    assert_eq!(by_name["bin/tool"].mode, 0o4755);
    assert_eq!(by_name["tmp/"].mode, 0o1777);
    assert_eq!(by_name["etc/shadow"].mode, 0o640);
    assert_eq!(
        (
            by_name["etc/hosts.hard"].kind,
            by_name["etc/hosts.hard"].link.as_str()
        ),
        ('1', "etc/hosts")
    );
    assert_eq!(
        (by_name["link"].kind, by_name["link"].link.as_str()),
        ('2', "etc/hosts")
    );
    assert_eq!(by_name["pipe"].kind, '6');
    assert!(
        listed
            .iter()
            .all(|e| e.uid == 0 && e.mtime == 1_700_000_000)
    );
    assert_eq!(listed[1].pax, ["path"]);
    assert_eq!(by_name["data/blob.bin"].size, 2_500_000);
    if let Some(gnu) = super::tarcraft::gnu_tar_list(&plain_blob) {
        assert_eq!(gnu, names);
    }
}

#[test]
fn empty_layer_has_the_well_known_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (info, blob) = write(dir.path(), &opts(ChangeKind::Tree, compression));
        assert_eq!(
            info.diff_id.to_string(),
            EMPTY_LAYER_DIFF_ID,
            "{compression:?}"
        );
        assert_eq!(info.digest, Digest::of(&blob), "{compression:?}");
        assert_eq!(info.size, blob.len() as u64);
        assert_eq!(info.media_type, compression.media_type());
        assert_eq!(
            diff_id_of(&blob[..]).unwrap(),
            info.diff_id,
            "{compression:?}"
        );
    }
}

#[test]
fn entries_are_ordered_by_name_bytes_depth_first() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for name in ["b", "a.txt", "a-b", "A", ".hidden", "\u{e9}t\u{e9}"] {
        std::fs::write(r.join(name), name).unwrap();
    }
    std::fs::create_dir(r.join("a")).unwrap();
    std::fs::write(r.join("a/x"), b"x").unwrap();
    std::fs::create_dir(r.join("a/0")).unwrap();
    std::os::unix::net::UnixListener::bind(r.join("socket")).unwrap();
    let (_, blob) = write(r, &opts(ChangeKind::Tree, Compression::None));
    assert_eq!(
        paths(&blob),
        [
            ".hidden",
            "A",
            "a/",
            "a/0/",
            "a/x",
            "a-b",
            "a.txt",
            "b",
            "\u{e9}t\u{e9}"
        ]
    );
}

#[test]
fn layers_are_deterministic() {
    // The same tree built in two creation orders, and written twice: identical bytes.
    let build = |order: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        for name in order {
            let content = sample(300_000 + name.len());
            std::fs::write(dir.path().join(name), content).unwrap();
            set_mtime(&dir.path().join(name), 1_600_000_000);
        }
        chmod(dir.path(), 0o755);
        chmod(&dir.path().join("d"), 0o755);
        set_mtime(&dir.path().join("d"), 1_600_000_000);
        dir
    };
    let one = build(&["z", "d/m", "a", "d/b"]);
    let two = build(&["d/b", "a", "d/m", "z"]);
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let o = opts(ChangeKind::Tree, compression);
        let (info1, blob1) = write(one.path(), &o);
        let (info1b, blob1b) = write(one.path(), &o);
        let (info2, blob2) = write(two.path(), &o);
        assert_eq!(blob1, blob1b, "{compression:?}");
        assert_eq!(blob1, blob2, "{compression:?}");
        assert_eq!(info1, info1b);
        assert_eq!(info1, info2);
    }
}

#[test]
fn source_date_epoch_clamps_later_times_only() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    std::fs::create_dir(r.join("new-dir")).unwrap();
    std::fs::write(r.join("old"), b"o").unwrap();
    std::fs::write(r.join("new-dir/new"), b"n").unwrap();
    std::os::unix::fs::symlink("old", r.join("new-link")).unwrap();
    set_mtime(&r.join("old"), 1_000);
    set_mtime(&r.join("new-dir/new"), 2_000_000_000);
    set_mtime(&r.join("new-link"), 2_000_000_001);
    set_mtime(&r.join("new-dir"), 2_000_000_002);
    let cases: &[(Option<i64>, [u64; 4])] = &[
        (None, [2_000_000_002, 2_000_000_000, 2_000_000_001, 1_000]),
        (
            Some(1_500_000_000),
            [1_500_000_000, 1_500_000_000, 1_500_000_000, 1_000],
        ),
        (Some(0), [0, 0, 0, 0]),
    ];
    for (epoch, want) in cases {
        let mut o = opts(ChangeKind::Tree, Compression::None);
        o.source_date_epoch = *epoch;
        let (_, blob) = write(r, &o);
        let listed = list(&blob);
        let names: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["new-dir/", "new-dir/new", "new-link", "old"]);
        let times: Vec<u64> = listed.iter().map(|e| e.mtime).collect();
        assert_eq!(times, want, "{epoch:?}");
    }
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

#[test]
fn overlay_upperdir_becomes_whiteouts() {
    if !require_root("overlay_upperdir_becomes_whiteouts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path();
    let whiteout = |p: &Path| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap()
    };
    whiteout(&up.join("gone"));
    std::fs::write(up.join("!bang"), b"!").unwrap();
    for d in ["opq", "uopq", "plain"] {
        std::fs::create_dir(up.join(d)).unwrap();
    }
    set_xattr(&up.join("opq"), "trusted.overlay.opaque", b"y");
    set_xattr(&up.join("uopq"), "user.overlay.opaque", b"y");
    set_xattr(&up.join("plain"), "trusted.overlay.origin", b"\0\xfb");
    std::fs::write(up.join("opq/new"), b"new").unwrap();
    whiteout(&up.join("opq/gone2"));
    std::fs::write(up.join("plain/f"), b"f").unwrap();
    set_xattr(&up.join("plain/f"), "trusted.overlay.origin", b"x");
    set_xattr(&up.join("plain/f"), "user.keep", b"1");
    // overlayfs shares one whiteout inode between deletions: not a hard link in the layer.
    std::fs::hard_link(up.join("gone"), up.join("plain/gone3")).unwrap();

    let (_, blob) = write(up, &opts(ChangeKind::OverlayUpper, Compression::Gzip));
    let tar = untar(&blob);
    let listed = list(&tar);
    let names: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            ".wh.gone",
            "!bang",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/.wh.gone2",
            "opq/new",
            "plain/",
            "plain/.wh.gone3",
            "plain/f",
            "uopq/",
            "uopq/.wh..wh..opq",
        ]
    );
    for e in listed.iter().filter(|e| e.path.contains(".wh.")) {
        assert_eq!(
            (e.kind, e.mode, e.uid, e.mtime, e.size),
            ('0', 0, 0, 0, 0),
            "{}",
            e.path
        );
    }
    let by_name: BTreeMap<&str, &Listed> = listed.iter().map(|e| (e.path.as_str(), e)).collect();
    assert_eq!(by_name["plain/f"].pax, ["SCHILY.xattr.user.keep"]);
    assert!(by_name["plain/"].pax.is_empty());
    assert!(by_name["opq/"].pax.is_empty());

    // Applied as a lowerdir, it reads back as the same upperdir.
    let lower = tempfile::tempdir().unwrap();
    apply_blob(
        lower.path(),
        &blob[..],
        &ApplyOptions::new(ApplyMode::OverlayLower),
    )
    .unwrap();
    let gone = std::fs::symlink_metadata(lower.path().join("gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    let opq = super::walk::read_xattrs(&lower.path().join("opq")).unwrap();
    assert_eq!(
        opq.get(b"trusted.overlay.opaque".as_slice()),
        Some(&b"y".to_vec())
    );
    let (_, again) = write(
        lower.path(),
        &opts(ChangeKind::OverlayUpper, Compression::None),
    );
    // The user.overlay marker comes back as the trusted one; both emit the same entry.
    assert_eq!(paths(&again), names);

    // Merged onto a lower tree, whiteouts delete and the opaque dir keeps only new content.
    let merged = tempfile::tempdir().unwrap();
    let m = merged.path();
    for d in ["opq/sub", "plain"] {
        std::fs::create_dir_all(m.join(d)).unwrap();
    }
    for f in [
        "gone",
        "opq/old",
        "opq/sub/old",
        "plain/gone3",
        "plain/stays",
    ] {
        std::fs::write(m.join(f), b"lower").unwrap();
    }
    apply_blob(m, &blob[..], &ApplyOptions::new(ApplyMode::Merge)).unwrap();
    assert!(!m.join("gone").exists());
    assert!(!m.join("plain/gone3").exists());
    assert!(m.join("plain/stays").exists());
    let mut opq: Vec<String> = std::fs::read_dir(m.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    opq.sort();
    assert_eq!(opq, ["new"]);
}

#[test]
fn change_set_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".wh.sneaky"), b"").unwrap();
    for kind in [ChangeKind::Tree, ChangeKind::OverlayUpper] {
        let err = write_layer(dir.path(), &opts(kind, Compression::None), Vec::new()).unwrap_err();
        assert!(matches!(err, LayerError::ReservedName { .. }), "{err:?}");
    }
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("moved")).unwrap();
    set_xattr(
        &dir.path().join("moved"),
        "trusted.overlay.redirect",
        b"/old",
    );
    let err = write_layer(
        dir.path(),
        &opts(ChangeKind::OverlayUpper, Compression::None),
        Vec::new(),
    )
    .unwrap_err();
    match err {
        LayerError::UnsupportedOverlay { xattr, .. } => {
            assert_eq!(xattr, "trusted.overlay.redirect")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn changed_files_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"before").unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    std::fs::write(&path, b"before, and after").unwrap();
    let err = super::writer::open_same_file(&path, &meta).unwrap_err();
    assert!(matches!(err, LayerError::Changed { .. }), "{err:?}");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("elsewhere", &path).unwrap();
    assert!(super::writer::open_same_file(&path, &meta).is_err());
}

#[test]
fn layer_from_tar_keeps_the_bytes() {
    let tar = super::tarcraft::Tar::new()
        .file("imported/file", &sample(200_000))
        .dir("imported/")
        .finish();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let mut blob = Vec::new();
        let info = layer_from_tar(&tar[..], compression, &mut blob).unwrap();
        assert_eq!(info.diff_id, Digest::of(&tar), "{compression:?}");
        assert_eq!(info.digest, Digest::of(&blob));
        assert_eq!(info.size, blob.len() as u64);
        assert_eq!(untar(&blob), tar);
        assert_eq!(
            diff_id_of(std::io::BufReader::new(&blob[..])).unwrap(),
            info.diff_id
        );
    }
}

/// What a tree looks like, entry by entry, for round-trip comparison.
fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut all = Vec::new();
    collect(root, &mut all);
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    all.sort();
    for p in all {
        let rel = p.strip_prefix(root).unwrap().to_owned();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "dir".to_owned()
        } else if ft.is_symlink() {
            format!("symlink -> {}", std::fs::read_link(&p).unwrap().display())
        } else if ft.is_fifo() {
            "fifo".to_owned()
        } else {
            format!("file {:?}", Digest::of(&std::fs::read(&p).unwrap()))
        };
        let link_group = if !ft.is_dir() && m.nlink() > 1 {
            let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
            format!(" linked-with {}", first.display())
        } else {
            String::new()
        };
        let xattrs: Vec<String> = super::walk::read_xattrs(&p)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with(b"user."))
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect();
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        out.insert(
            rel,
            format!(
                "{what} mode={mode:o} owner={}:{} mtime={} xattrs={xattrs:?}{link_group}",
                m.uid(),
                m.gid(),
                m.mtime()
            ),
        );
    }
    out
}

#[test]
fn round_trip_preserves_metadata() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    for d in ["setgid", "sticky", "nested/deeper"] {
        std::fs::create_dir_all(s.join(d)).unwrap();
    }
    std::fs::write(s.join("suid"), b"#!/bin/sh\n").unwrap();
    std::fs::write(s.join("nested/deeper/empty"), b"").unwrap();
    std::fs::write(s.join("nested/data"), sample(1_500_000)).unwrap();
    std::fs::write(
        s.join(format!("nested/{}", "long-name-".repeat(12))),
        b"long",
    )
    .unwrap();
    std::fs::hard_link(s.join("nested/data"), s.join("data-link")).unwrap();
    std::os::unix::fs::symlink("nested/deeper", s.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/abs/target", s.join("abs-link")).unwrap();
    mkfifo(&s.join("fifo"));
    set_xattr(&s.join("suid"), "user.one", b"1");
    set_xattr(&s.join("setgid"), "user.dir", b"yes");
    set_xattr(&s.join("suid"), "user.binary", b"\0\x01\xff");
    chmod(&s.join("suid"), 0o4755);
    chmod(&s.join("setgid"), 0o2775);
    chmod(&s.join("sticky"), 0o1777);
    chmod(&s.join("fifo"), 0o620);
    if is_root() {
        lchown(&s.join("suid"), 1234, 5678);
        chmod(&s.join("suid"), 0o4755); // chown cleared it
        lchown(&s.join("rel-link"), 42, 43);
        lchown(&s.join("setgid"), 7, 8);
    }
    let mut all = Vec::new();
    collect(s, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_500_000_000 + i as i64 * 1000);
    }

    let (info, blob) = write(s, &opts(ChangeKind::Tree, Compression::Gzip));
    let dst = tempfile::tempdir().unwrap();
    let stats = apply_blob(dst.path(), &blob[..], &ApplyOptions::new(ApplyMode::Merge)).unwrap();
    assert!(
        stats.skipped_devices.is_empty() && stats.ignored_xattrs.is_empty(),
        "{stats:?}"
    );
    assert_eq!(stats.bytes, 1_500_000 + 10 + 4);
    let want = describe(s);
    assert_eq!(want.len(), 12);
    assert_eq!(describe(dst.path()), want);
    // And the applied tree writes the same layer again.
    let (again, _) = write(dst.path(), &opts(ChangeKind::Tree, Compression::Gzip));
    assert_eq!(again, info);
}
