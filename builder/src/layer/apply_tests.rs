//! Tests of the applier: the tar attack corpus (reliability.md §4.3, T-TAR-01..15), whiteouts in
//! both modes, replace semantics, parser differentials, and kaniko's test archives.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::tarcraft::{Host, Tar, gnu_tar_list, is_root, require_root};
use super::{ApplyError, ApplyMode, ApplyOptions, ApplyStats, EntryError, apply_blob, apply_layer};

fn merge(root: &Path, tar: &[u8]) -> Result<ApplyStats, ApplyError> {
    apply_layer(root, tar, &ApplyOptions::new(ApplyMode::Merge))
}

fn lower(root: &Path, tar: &[u8]) -> Result<ApplyStats, ApplyError> {
    apply_layer(root, tar, &ApplyOptions::new(ApplyMode::OverlayLower))
}

fn read(path: impl AsRef<Path>) -> String {
    String::from_utf8(std::fs::read(path).unwrap()).unwrap()
}

fn lmeta(path: impl AsRef<Path>) -> std::fs::Metadata {
    std::fs::symlink_metadata(path).unwrap()
}

fn exists(path: impl AsRef<Path>) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// The entry error of a failed apply, with its 1-based index.
fn entry_error(result: Result<ApplyStats, ApplyError>) -> (u64, EntryError) {
    match result {
        Err(ApplyError::Entry { index, source, .. }) => (index, source),
        other => panic!("expected an entry error, got {other:?}"),
    }
}

type Check = fn(&Host);
type Predicate = fn(&EntryError) -> bool;

/// One attack: what the root holds first, the archive, and what must happen.
struct Attack {
    id: &'static str,
    setup: fn(&Host),
    tar: fn(&Host) -> Vec<u8>,
    /// `None`: applies cleanly; `Some((index, predicate))`: entry `index` is rejected.
    reject: Option<(u64, Predicate)>,
    check: Check,
}

fn nothing(_: &Host) {}

fn attacks() -> Vec<Attack> {
    vec![
        Attack {
            id: "T-TAR-01 ../ escape",
            setup: nothing,
            tar: |_| {
                Tar::new()
                    .file("../../../../tmp/SENTINEL-a", b"pwned")
                    .finish()
            },
            reject: Some((1, |e| matches!(e, EntryError::PathEscapes))),
            check: |h| assert_eq!(std::fs::read_dir(&h.root).unwrap().count(), 0),
        },
        Attack {
            id: "T-TAR-01 relative sibling escape",
            setup: nothing,
            tar: |_| Tar::new().file("../host/sentinel", b"pwned").finish(),
            reject: Some((1, |e| matches!(e, EntryError::PathEscapes))),
            check: nothing,
        },
        Attack {
            id: "T-TAR-02 absolute path clamps",
            setup: nothing,
            tar: |h| {
                Tar::new()
                    .file(&format!("{}/sentinel", h.host_str()), b"clamped")
                    .file("/tmp/SENTINEL-a", b"a")
                    .finish()
            },
            reject: None,
            check: |h| {
                assert_eq!(
                    read(h.clamped(&format!("{}/sentinel", h.host_str()))),
                    "clamped"
                );
                assert_eq!(read(h.root.join("tmp/SENTINEL-a")), "a");
            },
        },
        Attack {
            id: "T-TAR-03 absolute symlink then file through it",
            setup: nothing,
            tar: |h| {
                Tar::new()
                    .symlink("l", &h.host_str())
                    .file("l/sentinel", b"through link")
                    .finish()
            },
            reject: None,
            check: |h| {
                assert!(lmeta(h.root.join("l")).file_type().is_symlink());
                assert_eq!(
                    read(h.clamped(&format!("{}/sentinel", h.host_str()))),
                    "through link"
                );
            },
        },
        Attack {
            id: "T-TAR-04 relative up-and-out symlink",
            setup: nothing,
            tar: |h| {
                let target = format!("../../../../../..{}", h.host_str());
                Tar::new()
                    .symlink("l", &target)
                    .file("l/sentinel", b"up and out")
                    .finish()
            },
            reject: None,
            check: |h| {
                assert_eq!(
                    read(h.clamped(&format!("{}/sentinel", h.host_str()))),
                    "up and out"
                );
            },
        },
        Attack {
            id: "T-TAR-05 hardlink up and out",
            setup: nothing,
            tar: |h| {
                let target = format!("../../../..{}/sentinel", h.host_str());
                Tar::new()
                    .hardlink("h", &target)
                    .file("h", b"written through")
                    .finish()
            },
            reject: Some((1, |e| matches!(e, EntryError::HardlinkEscapes))),
            check: |h| assert!(!exists(h.root.join("h"))),
        },
        Attack {
            id: "T-TAR-05 absolute hardlink clamps to a missing target",
            setup: nothing,
            tar: |h| {
                Tar::new()
                    .hardlink("h", &format!("{}/sentinel", h.host_str()))
                    .file("h", b"written through")
                    .finish()
            },
            reject: Some((1, |e| matches!(e, EntryError::HardlinkTargetMissing { .. }))),
            check: |h| assert!(!exists(h.root.join("h"))),
        },
        Attack {
            id: "T-TAR-06 dir through a dangling up-and-out symlink",
            setup: nothing,
            tar: |_| {
                Tar::new()
                    .symlink("d", "../host/newdir")
                    .dir("d/sub/")
                    .finish()
            },
            reject: None,
            check: |h| {
                assert!(lmeta(h.root.join("host/newdir/sub")).is_dir());
                assert!(!exists(h.host.join("newdir")));
            },
        },
        Attack {
            id: "T-TAR-07 symlink named . replaces the root",
            setup: nothing,
            tar: |h| {
                Tar::new()
                    .symlink(".", &h.host_str())
                    .file("etc/x", b"x")
                    .finish()
            },
            reject: Some((1, |e| matches!(e, EntryError::ReplacesRoot))),
            check: |h| assert!(!exists(h.host.join("etc"))),
        },
        Attack {
            id: "T-TAR-07 symlink named ./",
            setup: nothing,
            tar: |h| {
                Tar::new()
                    .symlink("./", &h.host_str())
                    .file("etc/x", b"x")
                    .finish()
            },
            reject: Some((1, |e| matches!(e, EntryError::ReplacesRoot))),
            check: nothing,
        },
        Attack {
            id: "T-TAR-08 hardlink to a symlink links the symlink",
            setup: nothing,
            tar: |h| {
                Tar::new()
                    .symlink("passwdlink", &format!("{}/sentinel", h.host_str()))
                    .hardlink("localpasswd", "passwdlink")
                    .finish()
            },
            reject: None,
            check: |h| {
                let link = lmeta(h.root.join("localpasswd"));
                assert!(link.file_type().is_symlink());
                assert_eq!(link.ino(), lmeta(h.root.join("passwdlink")).ino());
                assert_eq!(link.nlink(), 2);
                assert_eq!(lmeta(h.host.join("sentinel")).nlink(), 1);
            },
        },
        Attack {
            id: "T-TAR-09 CVE-2021-32760 chmod through hardlinked symlink",
            setup: nothing,
            tar: |h| {
                let mut t = Tar::new();
                t.symlink("x", &format!("{}/perm0400", h.host_str()));
                t.raw(b"y", b'1', b"x", b"", |hd| hd.set_mode(0o777));
                t.finish()
            },
            reject: None,
            check: |h| {
                assert_eq!(lmeta(h.host.join("perm0400")).mode() & 0o7777, 0o400);
                assert!(lmeta(h.root.join("y")).file_type().is_symlink());
            },
        },
        Attack {
            id: "T-TAR-10 dir foo/. over a symlink to a host dir",
            setup: nothing,
            tar: |h| {
                Tar::new()
                    .symlink("foo", &format!("{}/hostdir", h.host_str()))
                    .dir_mode("foo/.", 0o777)
                    .finish()
            },
            reject: None,
            check: |h| {
                let foo = lmeta(h.root.join("foo"));
                assert!(foo.is_dir());
                assert_eq!(foo.mode() & 0o7777, 0o777);
            },
        },
        Attack {
            id: "T-TAR-11 name ..",
            setup: nothing,
            tar: |_| Tar::new().dir("..").finish(),
            reject: Some((1, |e| matches!(e, EntryError::PathEscapes))),
            check: nothing,
        },
        Attack {
            id: "T-TAR-11 a/../../b",
            setup: nothing,
            tar: |_| Tar::new().file("a/../../b", b"x").finish(),
            reject: Some((1, |e| matches!(e, EntryError::PathEscapes))),
            check: nothing,
        },
        Attack {
            id: "T-TAR-11 empty name for a file",
            setup: nothing,
            tar: |_| Tar::new().file("", b"x").finish(),
            reject: Some((1, |e| matches!(e, EntryError::ReplacesRoot))),
            check: nothing,
        },
        Attack {
            id: "T-TAR-11 regular file with a trailing slash",
            setup: nothing,
            tar: |_| Tar::new().file("x/", b"x").finish(),
            reject: Some((1, |e| matches!(e, EntryError::TrailingSlash))),
            check: nothing,
        },
        Attack {
            id: "T-TAR-11 names that normalise",
            setup: nothing,
            tar: |_| {
                Tar::new()
                    .dir_mode(".", 0o750)
                    .dir_mode("./", 0o751)
                    .file("a/./b", b"ab")
                    .file("a//c", b"ac")
                    .file("./d", b"d")
                    .file("e/../f", b"f")
                    .finish()
            },
            reject: None,
            check: |h| {
                assert_eq!(lmeta(&h.root).mode() & 0o7777, 0o751);
                assert_eq!(read(h.root.join("a/b")), "ab");
                assert_eq!(read(h.root.join("a/c")), "ac");
                assert_eq!(read(h.root.join("d")), "d");
                assert_eq!(read(h.root.join("f")), "f");
            },
        },
        Attack {
            id: "T-TAR-13 whiteout .wh..",
            setup: nothing,
            tar: |_| Tar::new().file(".wh..", b"").finish(),
            reject: Some((1, |e| matches!(e, EntryError::InvalidWhiteout))),
            check: nothing,
        },
        Attack {
            id: "T-TAR-13 whiteout .wh...",
            setup: nothing,
            tar: |_| Tar::new().file(".wh...", b"").finish(),
            reject: Some((1, |e| matches!(e, EntryError::InvalidWhiteout))),
            check: nothing,
        },
        Attack {
            id: "T-TAR-13 whiteout etc/.wh..",
            setup: |h| std::fs::create_dir(h.root.join("etc")).unwrap(),
            tar: |_| Tar::new().file("etc/.wh..", b"").finish(),
            reject: Some((1, |e| matches!(e, EntryError::InvalidWhiteout))),
            check: |h| assert!(exists(h.root.join("etc"))),
        },
        Attack {
            id: "T-TAR-13 whiteout etc/.wh...",
            setup: |h| std::fs::create_dir(h.root.join("etc")).unwrap(),
            tar: |_| Tar::new().file("etc/.wh...", b"").finish(),
            reject: Some((1, |e| matches!(e, EntryError::InvalidWhiteout))),
            check: |h| assert!(exists(h.root.join("etc"))),
        },
        Attack {
            id: "T-TAR-14 whiteout of a symlink removes the link only",
            setup: setup_localetc,
            tar: |_| Tar::new().file(".wh.localetc", b"").finish(),
            reject: None,
            check: |h| {
                assert!(!exists(h.root.join("localetc")));
                assert_eq!(read(h.root.join("etc/passwd")), "root:x:0:0");
            },
        },
        Attack {
            id: "T-TAR-14 whiteout through a symlinked parent stays in the root",
            setup: setup_localetc,
            tar: |_| {
                Tar::new()
                    .file("localetc/.wh.passwd", b"")
                    .file("hostlink/.wh.sentinel", b"")
                    .finish()
            },
            reject: None,
            check: |h| {
                assert!(lmeta(h.root.join("localetc")).file_type().is_symlink());
                assert!(!exists(h.root.join("etc/passwd")));
                assert!(lmeta(h.root.join("hostlink")).file_type().is_symlink());
            },
        },
        Attack {
            id: "T-TAR-15 replace semantics",
            setup: |h| {
                let r = &h.root;
                std::fs::create_dir_all(r.join("d/sub")).unwrap();
                std::fs::write(r.join("d/sub/f"), b"old").unwrap();
                std::fs::write(r.join("f"), b"old").unwrap();
                std::fs::create_dir_all(r.join("s/deep")).unwrap();
                std::fs::write(r.join("s/deep/x"), b"old").unwrap();
                std::os::unix::fs::symlink(h.host.join("hostdir"), r.join("l")).unwrap();
                std::fs::write(r.join("a"), b"orig").unwrap();
                std::fs::hard_link(r.join("a"), r.join("b")).unwrap();
                std::fs::create_dir(r.join("m")).unwrap();
                std::fs::set_permissions(r.join("m"), PermissionsExt::from_mode(0o700)).unwrap();
                std::fs::write(r.join("m/keep"), b"keep").unwrap();
            },
            tar: |h| {
                Tar::new()
                    .file("d", b"file over dir")
                    .dir("f/")
                    .symlink("s", &h.host_str())
                    .dir_mode("l/", 0o700)
                    .file("b", b"new")
                    .dir_mode("m/", 0o755)
                    .file("l/inner", b"inside")
                    .finish()
            },
            reject: None,
            check: |h| {
                let r = &h.root;
                assert_eq!(read(r.join("d")), "file over dir");
                assert!(lmeta(r.join("f")).is_dir());
                assert!(lmeta(r.join("s")).file_type().is_symlink());
                assert!(lmeta(r.join("l")).is_dir());
                assert_eq!(read(r.join("l/inner")), "inside");
                assert_eq!(read(r.join("a")), "orig");
                assert_eq!(read(r.join("b")), "new");
                assert_eq!(lmeta(r.join("m")).mode() & 0o7777, 0o755);
                assert_eq!(read(r.join("m/keep")), "keep");
            },
        },
    ]
}

fn setup_localetc(h: &Host) {
    std::fs::create_dir(h.root.join("etc")).unwrap();
    std::fs::write(h.root.join("etc/passwd"), b"root:x:0:0").unwrap();
    std::os::unix::fs::symlink("/etc", h.root.join("localetc")).unwrap();
    std::os::unix::fs::symlink(&h.host, h.root.join("hostlink")).unwrap();
}

#[test]
fn tar_attack_corpus() {
    let mut ran = 0;
    for attack in attacks() {
        let h = Host::new();
        (attack.setup)(&h);
        let tar = (attack.tar)(&h);
        let result = h.untouched(attack.id, || merge(&h.root, &tar));
        match attack.reject {
            None => {
                if let Err(e) = result {
                    panic!("{}: {e:?}", attack.id);
                }
            }
            Some((index, predicate)) => {
                let (at, err) = entry_error(result);
                assert_eq!(at, index, "{}", attack.id);
                assert!(predicate(&err), "{}: {err:?}", attack.id);
            }
        }
        (attack.check)(&h);
        ran += 1;
    }
    assert_eq!(ran, 25);
}

#[test]
fn tarmageddon_pax_size_wins_like_gnu_tar() {
    // T-TAR-12 / T-ADD-05: a ustar size that disagrees with the PAX size must not let the
    // "content" of file_a be read as a smuggled file_b header.
    let mut inner = Tar::new();
    inner.file("file_b", b"smuggled");
    let inner = inner.finish();
    let hidden = &inner[..1024]; // file_b's header and data block
    let cases: Vec<(&str, u64)> = vec![("ustar size 0", 0), ("ustar size 512", 512)];
    for (name, ustar_size) in cases {
        let mut t = Tar::new();
        t.pax(&[("size", b"1024")]);
        t.raw(b"file_a", b'0', b"", b"", |h| h.set_size(ustar_size));
        t.bytes(hidden);
        t.file("file_c", b"c");
        let tar = t.finish();

        let mut listing = Vec::new();
        let mut archive = tar::Archive::new(&tar[..]);
        for e in archive.entries().unwrap() {
            listing.push(String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap());
        }
        assert_eq!(listing, ["file_a", "file_c"], "{name}");
        if let Some(gnu) = gnu_tar_list(&tar) {
            assert_eq!(gnu, listing, "{name}: GNU tar disagrees");
        }

        let h = Host::new();
        h.untouched(name, || merge(&h.root, &tar)).unwrap();
        assert_eq!(
            std::fs::read(h.root.join("file_a")).unwrap(),
            hidden,
            "{name}"
        );
        assert!(!exists(h.root.join("file_b")), "{name}");
        assert_eq!(read(h.root.join("file_c")), "c");
    }
}

#[test]
fn pax_then_gnu_longname_applies_to_the_file() {
    // GHSA-3cv2-h65g-fgmm: PAX attributes belong to the next file, not to an `L` header.
    let mut t = Tar::new();
    t.pax(&[("mtime", b"1234567890"), ("SCHILY.xattr.user.k", b"v")]);
    t.raw(b"././@LongLink", b'L', b"", b"long/name/file_a\0", |_| {});
    t.file("file_a", b"a");
    t.file("file_b", b"b");
    let tar = t.finish();
    let h = Host::new();
    merge(&h.root, &tar).unwrap();
    let a = lmeta(h.root.join("long/name/file_a"));
    assert_eq!(a.mtime(), 1_234_567_890);
    assert_eq!(lmeta(h.root.join("file_b")).mtime(), 1_000_000_000);
    assert!(!exists(h.root.join("file_a")));
}

#[test]
fn overlay_xattrs_in_the_archive_are_never_applied() {
    // reliability.md §1.D (umoci): overlay metadata inside a layer must not reach a lowerdir.
    let mut t = Tar::new();
    t.pax(&[
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("SCHILY.xattr.user.overlay.opaque", b"y"),
        ("SCHILY.xattr.user.overlay.redirect", b"/root"),
        ("SCHILY.xattr.user.kept", b"yes"),
    ]);
    t.dir("etc/");
    let tar = t.finish();
    for mode in [ApplyMode::Merge, ApplyMode::OverlayLower] {
        let h = Host::new();
        let stats = apply_layer(&h.root, &tar[..], &ApplyOptions::new(mode)).unwrap();
        let names: Vec<&str> = stats
            .ignored_xattrs
            .iter()
            .map(|(_, n)| n.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "trusted.overlay.opaque",
                "user.overlay.opaque",
                "user.overlay.redirect"
            ],
            "{mode:?}"
        );
        let etc = h.root.join("etc");
        let xattrs = super::walk::read_xattrs(&etc).unwrap();
        let keys: Vec<&[u8]> = xattrs.keys().map(Vec::as_slice).collect();
        assert_eq!(keys, [&b"user.kept"[..]], "{mode:?}");
    }
}

#[test]
fn merge_whiteouts_and_opaque_dirs() {
    let h = Host::new();
    let r = &h.root;
    for d in ["a", "b/deep", "o/sub", "p"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    for f in ["a/x", "a/y", "b/deep/f", "o/old", "o/sub/old", "p/old"] {
        std::fs::write(r.join(f), b"lower").unwrap();
    }
    let tar = Tar::new()
        .file(".wh.b", b"")
        .file("a/.wh.x", b"")
        .file("a/.wh.missing", b"")
        .file("nodir/.wh.x", b"")
        .dir("o/")
        .file("o/.wh..wh..opq", b"")
        .file("o/new", b"upper")
        // Marker after a sibling from this layer: the sibling stays (containerd semantics).
        .dir("p/")
        .file("p/new", b"upper")
        .file("p/.wh..wh..opq", b"")
        // A whiteout for a path this same layer created does not delete it.
        .file("c", b"same layer")
        .file(".wh.c", b"")
        .file(".wh..wh.plnk", b"")
        .finish();
    let stats = merge(r, &tar).unwrap();
    assert_eq!(stats.entries, 13);
    assert!(!exists(r.join("b")));
    assert!(!exists(r.join("a/x")));
    assert_eq!(read(r.join("a/y")), "lower");
    let mut o: Vec<String> = std::fs::read_dir(r.join("o"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    o.sort();
    assert_eq!(o, ["new"]);
    let mut p: Vec<String> = std::fs::read_dir(r.join("p"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    p.sort();
    assert_eq!(p, ["new"]);
    assert_eq!(read(r.join("c")), "same layer");
    assert!(!exists(r.join("nodir")));
    assert!(!exists(r.join(".wh..wh.plnk")));
}

#[test]
fn overlay_lower_whiteouts_become_devices_and_xattrs() {
    if !require_root("overlay_lower_whiteouts_become_devices_and_xattrs") {
        return;
    }
    let h = Host::new();
    let r = &h.root;
    let tar = Tar::new()
        .file(".wh.gone", b"")
        .dir("o/")
        .file("o/.wh..wh..opq", b"")
        .file("o/f", b"upper")
        .file("kept", b"same layer")
        .file(".wh.kept", b"")
        .file("implied/.wh.x", b"")
        .finish();
    lower(r, &tar).unwrap();
    for gone in ["gone", "implied/x"] {
        let m = lmeta(r.join(gone));
        assert!(m.file_type().is_char_device(), "{gone}");
        assert_eq!(m.rdev(), 0, "{gone}");
    }
    let xattrs = super::walk::read_xattrs(&r.join("o")).unwrap();
    assert_eq!(
        xattrs.get(&b"trusted.overlay.opaque"[..]),
        Some(&b"y".to_vec())
    );
    assert_eq!(read(r.join("o/f")), "upper");
    assert_eq!(read(r.join("kept")), "same layer");
}

#[test]
fn devices_only_as_root() {
    let tar = Tar::new()
        .raw(b"dev/null", b'3', b"", b"", |h| {
            h.set_mode(0o666);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        })
        .raw(b"dev/sda", b'4', b"", b"", |h| {
            h.set_mode(0o660);
            h.set_device_major(8).unwrap();
            h.set_device_minor(0).unwrap();
        })
        .raw(b"dev/fifo", b'6', b"", b"", |h| h.set_mode(0o640))
        .finish();
    let h = Host::new();
    let stats = merge(&h.root, &tar).unwrap();
    let fifo = lmeta(h.root.join("dev/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o640);
    if is_root() {
        assert!(stats.skipped_devices.is_empty(), "{stats:?}");
        let null = lmeta(h.root.join("dev/null"));
        assert!(null.file_type().is_char_device());
        assert_eq!(null.mode() & 0o7777, 0o666);
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        let sda = lmeta(h.root.join("dev/sda"));
        assert!(sda.file_type().is_block_device());
        assert_eq!(sda.mode() & 0o7777, 0o660);
    } else {
        assert_eq!(
            stats.skipped_devices,
            [Path::new("dev/null"), Path::new("dev/sda")]
        );
        assert!(!exists(h.root.join("dev/null")));
    }
}

#[test]
fn archive_format_edge_cases() {
    // T-ADD-04: forward hardlink, duplicates, dir after its children, sparse, unknown type.
    let forward = Tar::new().hardlink("a", "b").file("b", b"b").finish();
    let h = Host::new();
    let (index, err) = entry_error(merge(&h.root, &forward));
    assert_eq!(index, 1);
    assert!(
        matches!(err, EntryError::HardlinkTargetMissing { .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "hardlink target \"b\" not yet extracted");

    let h = Host::new();
    let tar = Tar::new()
        .file("dup", b"first")
        .file("dup", b"second")
        .file("d/child", b"c")
        .raw(b"d/", b'5', b"", b"", |hd| hd.set_mtime(12345))
        .raw(b"d/late", b'0', b"", b"late", |_| {})
        .finish();
    merge(&h.root, &tar).unwrap();
    assert_eq!(read(h.root.join("dup")), "second");
    assert_eq!(
        lmeta(h.root.join("d")).mtime(),
        12345,
        "dir time restored last"
    );

    // A GNU sparse entry declaring a 1 TiB file in a few blocks (reliability.md §1.K).
    let sparse = Tar::new()
        .raw(b"s", b'S', b"", b"", |h| {
            h.as_mut_bytes()[257..265].copy_from_slice(b"ustar  \0");
            let gnu = h.as_gnu_mut().unwrap();
            gnu.set_real_size(1 << 40);
            gnu.sparse[0].set_offset(1 << 40);
            gnu.sparse[0].set_length(0);
        })
        .finish();
    let h = Host::new();
    assert!(matches!(
        entry_error(merge(&h.root, &sparse)).1,
        EntryError::Sparse
    ));
    let weird = Tar::new().raw(b"v", b'V', b"", b"", |_| {}).finish();
    assert!(matches!(
        entry_error(merge(&h.root, &weird)).1,
        EntryError::UnsupportedType('V')
    ));
}

#[test]
fn corrupt_and_truncated_archives_fail() {
    // T-ADD-02: a corrupt second header, and a gzip stream cut short.
    let mut tar = Tar::new().file("one", b"1").file("two", b"2").finish();
    tar[1024 + 10] ^= 0x55; // inside the second header's name: checksum no longer matches
    let h = Host::new();
    match merge(&h.root, &tar) {
        Err(ApplyError::Read { index, .. }) => assert_eq!(index, 2),
        other => panic!("expected a read error, got {other:?}"),
    }

    let tar = Tar::new().file("f", &[7u8; 5000]).finish();
    let mut gz = super::CompressWriter::new(Vec::new(), super::Compression::Gzip).unwrap();
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let h = Host::new();
    let opts = ApplyOptions::new(ApplyMode::Merge);
    apply_blob(&h.root, &gz[..], &opts).unwrap();
    assert_eq!(std::fs::read(h.root.join("f")).unwrap(), vec![7u8; 5000]);
    let h = Host::new();
    assert!(apply_blob(&h.root, &gz[..gz.len() - 4], &opts).is_err());
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 1;
    let h = Host::new();
    assert!(
        apply_blob(&h.root, &bad_crc[..], &opts).is_err(),
        "trailer checked after the tar end"
    );
}

#[test]
fn kaniko_archives_apply() {
    // Upstream vectors: kaniko's ADD test archives (plain tar and gzip, with `./` entries).
    let Some(dir) = crate::testutil::conformance_dir() else {
        return;
    };
    let tars = dir.join("kaniko-dockerfiles/context/tars");
    let cases: &[(&str, &str, &[u8], u64)] = &[
        ("file.tar", "uncompressedFile", b"", 2),
        ("file.tar.gz", "compressedFile", b"compressed\n", 2),
        ("sys.tar.gz", "sys/fs/foo", b"", 3),
    ];
    let mut ran = 0;
    for (archive, path, content, entries) in cases {
        let blob = crate::testutil::read(&tars, archive);
        let h = Host::new();
        let stats = apply_blob(&h.root, &blob[..], &ApplyOptions::new(ApplyMode::Merge)).unwrap();
        assert_eq!(stats.entries, *entries, "{archive}");
        assert_eq!(
            std::fs::read(h.root.join(path)).unwrap(),
            *content,
            "{archive}"
        );
        ran += 1;
    }
    assert_eq!(ran, 3);
}
