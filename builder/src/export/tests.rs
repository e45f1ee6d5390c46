//! Tests for exporting root filesystems: layers stacked with whiteouts and opaque directories,
//! symlinks that point out of the destination, and the tar stream read back entry by entry.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use oci_spec::image::Descriptor;

use super::*;
use crate::image::{ImageConfig, MediaTypes};
use crate::layer::{Compression, layer_from_tar};

/// One entry of a hand-made layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    /// A file owned by uid/gid.
    Owned(&'a str, u32, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A layer tar of `entries`, in the given order.
fn layer_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&str, &[u8]) = match e {
            E::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                (p, b"")
            }
            E::File(p, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (p, data)
            }
            E::Owned(p, uid, gid, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o640);
                h.set_uid(u64::from(*uid));
                h.set_gid(u64::from(*gid));
                (p, data)
            }
            E::Symlink(p, target) | E::Hardlink(p, target) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                h.set_entry_type(kind);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
                continue;
            }
        };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Stores an image of `layers` (bottom first, gzip blobs) and returns its manifest descriptor.
fn image_of(store: &Store, layers: &[Vec<u8>]) -> Descriptor {
    let mut config = ImageConfig::new("amd64", "linux");
    let mut descriptors = Vec::new();
    for tar in layers {
        let mut writer = store.blob_writer().unwrap();
        let info = layer_from_tar(&tar[..], Compression::Gzip, &mut writer).unwrap();
        let (digest, size) = writer.commit().unwrap();
        assert_eq!(digest, info.digest);
        config.rootfs.diff_ids.push(info.diff_id);
        descriptors.push(image::descriptor(
            oci_spec::image::MediaType::ImageLayerGzip,
            &digest,
            size,
        ));
    }
    store
        .write_image(&config, &descriptors, MediaTypes::Oci)
        .unwrap()
}

/// A base with a file a later layer deletes, a directory a later layer makes opaque, a symlink
/// and a hard link; then a layer that deletes, replaces and adds.
fn two_layers() -> Vec<Vec<u8>> {
    vec![
        layer_tar(&[
            E::Dir("bin", 0o755),
            E::File("bin/busybox", 0o755, b"#!busybox\n"),
            E::Symlink("bin/sh", "busybox"),
            E::Hardlink("bin/ls", "bin/busybox"),
            E::Dir("etc", 0o755),
            E::File("etc/gone", 0o644, b"deleted by layer 2\n"),
            E::File("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n"),
            E::Dir("opaque", 0o700),
            E::File("opaque/hidden", 0o644, b"hidden by the opaque marker\n"),
        ]),
        layer_tar(&[
            E::File("etc/.wh.gone", 0o644, b""),
            E::File(
                "etc/passwd",
                0o600,
                b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:\n",
            ),
            E::Owned("etc/owned", 1000, 1001, b"mine\n"),
            E::Dir("opaque", 0o750),
            E::File("opaque/.wh..wh..opq", 0o644, b""),
            E::File("opaque/new", 0o600, b"replaces the directory's contents\n"),
            E::Symlink("abs", "/etc/passwd"),
        ]),
    ]
}

/// What a test sees of an entry: kind (`d`, `f`, `l`, `h`), mode, content or link target.
type Seen = (char, u32, Vec<u8>);

/// Every entry below `root`: path → what it is, sorted.
fn tree(root: &Path) -> BTreeMap<String, Seen> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Seen>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.insert(rel, ('d', mode, Vec::new()));
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, ('l', 0, target.into_os_string().into_encoded_bytes()));
            } else {
                out.insert(rel, ('f', mode, fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The entries of a tar: path → what it is, in archive order.
fn tar_entries(bytes: &[u8]) -> Vec<(String, Seen)> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let path = path.trim_end_matches('/').to_owned();
        let header = entry.header().clone();
        let mode = header.mode().unwrap() & 0o7777;
        let value = match header.entry_type() {
            tar::EntryType::Directory => ('d', mode, Vec::new()),
            tar::EntryType::Symlink => ('l', 0, entry.link_name_bytes().unwrap().into_owned()),
            tar::EntryType::Link => ('h', 0, entry.link_name_bytes().unwrap().into_owned()),
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
                ('f', mode, data)
            }
            other => panic!("unexpected entry type {other:?} for {path}"),
        };
        out.push((path, value));
    }
    out
}

fn expected_tree() -> BTreeMap<String, Seen> {
    let entries: [(&str, char, u32, &[u8]); 10] = [
        ("abs", 'l', 0, b"/etc/passwd"),
        ("bin", 'd', 0o755, b""),
        ("bin/busybox", 'f', 0o755, b"#!busybox\n"),
        ("bin/ls", 'f', 0o755, b"#!busybox\n"),
        ("bin/sh", 'l', 0, b"busybox"),
        ("etc", 'd', 0o755, b""),
        ("etc/owned", 'f', 0o640, b"mine\n"),
        (
            "etc/passwd",
            'f',
            0o600,
            b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:\n",
        ),
        ("opaque", 'd', 0o750, b""),
        (
            "opaque/new",
            'f',
            0o600,
            b"replaces the directory's contents\n",
        ),
    ];
    entries
        .into_iter()
        .map(|(p, k, m, c)| (p.to_owned(), (k, m, c.to_vec())))
        .collect()
}

#[test]
fn write_rootfs_applies_layers_with_whiteouts_and_opaque_directories() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let manifest = image_of(&store, &two_layers());
    let dest = dir.path().join("out/rootfs");

    let stats = write_rootfs(&store, &manifest, &dest).unwrap();

    assert_eq!(stats.layers, 2);
    assert!(stats.skipped_devices.is_empty());
    assert_eq!(tree(&dest), expected_tree());
    let busybox = fs::metadata(dest.join("bin/busybox")).unwrap();
    assert_eq!(busybox.nlink(), 2, "bin/ls stays a hard link");
    if rustix::process::geteuid().is_root() {
        let owned = fs::metadata(dest.join("etc/owned")).unwrap();
        assert_eq!((owned.uid(), owned.gid()), (1000, 1001));
    }
}

#[test]
fn write_rootfs_keeps_writes_inside_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let outside_abs = outside.to_str().unwrap().to_owned();
    // Layer 1 plants links that point out of the root; layer 2 writes through them.
    let manifest = image_of(
        &store,
        &[
            layer_tar(&[
                E::Symlink("up", "../../outside"),
                E::Symlink("abs", &outside_abs),
            ]),
            layer_tar(&[
                E::File("up/escaped", 0o644, b"x"),
                E::File("abs/escaped-too", 0o644, b"x"),
            ]),
        ],
    );
    let dest = dir.path().join("out/rootfs");

    let result = write_rootfs(&store, &manifest, &dest);

    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "a write escaped the destination ({result:?})"
    );
    result.unwrap();
    // Symlinks resolve against the root: `up` (climbing above it) clamps to the root, and
    // `abs` (an absolute host path) names the same path inside the root.
    assert!(dest.join("outside/escaped").is_file());
    let inside = dest.join(outside.strip_prefix("/").unwrap());
    assert!(inside.join("escaped-too").is_file());
}

#[test]
fn write_rootfs_merges_into_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let manifest = image_of(&store, &two_layers());
    let dest = dir.path().join("rootfs");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("kept"), "from before").unwrap();
    fs::create_dir(dest.join("etc")).unwrap();
    fs::write(dest.join("etc/passwd"), "replaced").unwrap();

    write_rootfs(&store, &manifest, &dest).unwrap();

    let mut expected = expected_tree();
    expected.insert("kept".into(), ('f', 0o644, b"from before".to_vec()));
    let mut found = tree(&dest);
    // The umask decides the mode of a file the test made.
    found.get_mut("kept").unwrap().1 = 0o644;
    assert_eq!(found, expected);
}

#[test]
fn write_rootfs_tar_streams_the_flattened_tree_sorted_and_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let manifest = image_of(&store, &two_layers());

    let (bytes, stats) = write_rootfs_tar(&store, &manifest, Vec::new()).unwrap();
    assert_eq!(stats.layers, 2);
    let entries = tar_entries(&bytes);
    let paths: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "entries are sorted by path");

    // The hard link is kept as a link to the first name written; everything else is the tree.
    let mut expected = expected_tree();
    expected.insert("bin/ls".into(), ('h', 0, b"bin/busybox".to_vec()));
    let found: BTreeMap<_, _> = entries.into_iter().collect();
    assert_eq!(found, expected);

    // Owners are recorded as numbers (and are the image's when the applier could set them).
    let mut archive = tar::Archive::new(&bytes[..]);
    let owned = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().header().clone())
        .find(|h| h.path_bytes().as_ref() == b"etc/owned")
        .unwrap();
    assert_eq!(owned.username_bytes(), Some(&b""[..]));
    if rustix::process::geteuid().is_root() {
        assert_eq!((owned.uid().unwrap(), owned.gid().unwrap()), (1000, 1001));
    }

    let (again, _) = write_rootfs_tar(&store, &manifest, Vec::new()).unwrap();
    assert!(again == bytes, "the same image gives the same bytes");
    let scratch: Vec<_> = fs::read_dir(store.tmp_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.starts_with(SCRATCH_PREFIX).then_some(name)
        })
        .collect();
    assert!(scratch.is_empty(), "scratch directories left: {scratch:?}");
}

#[test]
fn an_empty_image_exports_an_empty_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let manifest = image_of(&store, &[]);
    let dest = dir.path().join("rootfs");
    assert_eq!(write_rootfs(&store, &manifest, &dest).unwrap().layers, 0);
    assert!(tree(&dest).is_empty());
    let (bytes, _) = write_rootfs_tar(&store, &manifest, Vec::new()).unwrap();
    assert_eq!(bytes, vec![0u8; 1024], "just the end-of-archive blocks");
}

#[test]
fn failures_name_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let manifest = image_of(&store, &two_layers());
    let layer = store.read_manifest(&manifest).unwrap().layers()[1].clone();
    let layer_digest = image::from_oci_digest(layer.digest()).unwrap();

    // A destination that is a file.
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let err = write_rootfs(&store, &manifest, &file).unwrap_err();
    assert!(matches!(err, ExportError::CreateDir { .. }), "{err:?}");

    // A layer blob that is not a layer.
    fs::remove_file(store.blob_path(&layer_digest)).unwrap();
    fs::write(
        store.blob_path(&layer_digest),
        b"not a tar, not compressed either",
    )
    .unwrap();
    let err = write_rootfs(&store, &manifest, &dir.path().join("a")).unwrap_err();
    match &err {
        ExportError::Apply { digest, .. } => assert_eq!(digest, &layer_digest),
        other => panic!("expected Apply, got {other:?}"),
    }
    assert_eq!(err.to_string(), format!("applying layer {layer_digest}"));

    // A missing layer blob.
    fs::remove_file(store.blob_path(&layer_digest)).unwrap();
    let err = write_rootfs_tar(&store, &manifest, Vec::new()).unwrap_err();
    assert!(matches!(err, ExportError::Store(_)), "{err:?}");

    // A descriptor that is not in the store.
    let mut missing = manifest.clone();
    missing.set_digest(Digest::of(b"no such manifest").to_oci());
    let err = write_rootfs(&store, &missing, &dir.path().join("b")).unwrap_err();
    assert!(matches!(err, ExportError::Store(_)), "{err:?}");
}
