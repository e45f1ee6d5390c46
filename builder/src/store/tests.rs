//! Tests for the store: layout, blob commits, tags under concurrency, gc, verify, and the
//! layout as other OCI tools read it.

mod concurrency;
mod fsck;
mod interop;
mod removal;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kiln_registry::Digest;
use oci_spec::image::{Descriptor, MediaType};

use super::*;
use crate::image::{self, History, ImageConfig, MediaTypes, canonical_json};

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    (dir, store)
}

fn tmp_entries(store: &Store) -> Vec<PathBuf> {
    fs::read_dir(store.tmp_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn blob_count(store: &Store) -> usize {
    fs::read_dir(store.blobs_dir()).unwrap().count()
}

/// A gzip layer holding one file; returns its descriptor and diffID.
fn make_layer(store: &Store, name: &str, content: &[u8]) -> (Descriptor, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_path(name).unwrap();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append(&header, content).unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let (digest, size) = store.put_blob(&gz).unwrap();
    (
        image::descriptor(MediaType::ImageLayerGzip, &digest, size),
        diff_id,
    )
}

/// A one-layer image (not tagged): its manifest descriptor and config.
fn make_image(store: &Store, content: &[u8], media: MediaTypes) -> (Descriptor, ImageConfig) {
    let (layer, diff_id) = make_layer(store, "hello.txt", content);
    let mut config = ImageConfig::new("amd64", "linux");
    config.created = Some("1970-01-01T00:00:00Z".into());
    config.config.cmd = Some(vec!["/hello".into()]);
    config.rootfs.diff_ids = vec![diff_id];
    config.history = vec![History {
        created_by: Some("COPY hello.txt / # buildkit".into()),
        ..History::default()
    }];
    let desc = store.write_image(&config, &[layer], media).unwrap();
    (desc, config)
}

fn digest_of(desc: &Descriptor) -> Digest {
    image::from_oci_digest(desc.digest()).unwrap()
}

#[test]
fn open_creates_a_private_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    let store = Store::open(&root).unwrap();

    let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    assert_eq!(
        fs::read_to_string(root.join("oci/oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(
        fs::read_to_string(root.join("oci/index.json")).unwrap(),
        r#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#
    );
    for sub in ["oci/blobs/sha256", "snapshots", "cache", "tmp"] {
        assert!(root.join(sub).is_dir(), "{sub}");
    }
    assert_eq!(store.list().unwrap(), vec![]);
    // Reopening keeps what is there.
    let (desc, _) = make_image(&store, b"x", MediaTypes::Oci);
    store.tag("a", &desc).unwrap();
    let again = Store::open(&root).unwrap();
    assert_eq!(
        again.resolve("a").unwrap().map(|d| digest_of(&d)),
        Some(digest_of(&desc))
    );

    // A layout of another version is refused.
    fs::write(
        root.join("oci/oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    assert!(matches!(
        Store::open(&root),
        Err(StoreError::UnsupportedLayout { found, .. }) if found == "2.0.0"
    ));
}

#[test]
fn default_root_table() {
    // (euid is root, XDG_DATA_HOME, HOME, expected root)
    type Case<'a> = (bool, Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let cases: &[Case] = &[
        (true, Some("/xdg"), Some("/home/u"), Some("/var/lib/kiln")),
        (false, Some("/xdg"), Some("/home/u"), Some("/xdg/kiln")),
        (
            false,
            Some("relative"),
            Some("/home/u"),
            Some("/home/u/.local/share/kiln"),
        ),
        (
            false,
            None,
            Some("/home/u"),
            Some("/home/u/.local/share/kiln"),
        ),
        (
            false,
            Some(""),
            Some("/home/u"),
            Some("/home/u/.local/share/kiln"),
        ),
        (false, None, Some(""), None),
        (false, None, None, None),
    ];
    for (root, xdg, home, want) in cases {
        let got = default_root_for(*root, xdg.map(Into::into), home.map(Into::into));
        assert_eq!(
            got.as_deref(),
            want.map(Path::new),
            "{root} {xdg:?} {home:?}"
        );
    }
}

#[test]
fn blob_writer_commits_atomically() {
    let (_dir, store) = new_store();
    let data = vec![7u8; 300 * 1024]; // larger than the write buffer
    let mut w = store.blob_writer().unwrap();
    w.write_all(&data).unwrap();
    assert_eq!(w.size(), data.len() as u64);
    assert_eq!(tmp_entries(&store).len(), 1, "writes go to tmp/");
    let (digest, size) = w.commit().unwrap();
    assert_eq!(digest, Digest::of(&data));
    assert_eq!(size, data.len() as u64);
    assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), data);
    assert!(tmp_entries(&store).is_empty());
    assert!(store.has_blob(&digest));
    assert_eq!(store.read_blob(&digest, size).unwrap(), data);
    assert!(matches!(
        store.read_blob(&digest, size - 1),
        Err(StoreError::TooLarge { limit, .. }) if limit == size - 1
    ));

    // The same content again (another build): success, one file.
    let mut w = store.blob_writer().unwrap();
    w.write_all(&data).unwrap();
    assert_eq!(w.commit().unwrap(), (digest.clone(), size));
    let mut w = store.blob_writer().unwrap();
    w.write_all(&data).unwrap();
    w.commit_verified(&digest, size).unwrap();
    assert_eq!(blob_count(&store), 1);
    assert!(tmp_entries(&store).is_empty());
}

#[test]
fn failed_verification_leaves_nothing_behind() {
    let (_dir, store) = new_store();
    let good = Digest::of(b"expected");

    let mut w = store.blob_writer().unwrap();
    w.write_all(b"tampered").unwrap();
    match w.commit_verified(&good, 8) {
        Err(StoreError::DigestMismatch { expected, found }) => {
            assert_eq!(expected, good);
            assert_eq!(found, Digest::of(b"tampered"));
        }
        other => panic!("{other:?}"),
    }

    let mut w = store.blob_writer().unwrap();
    w.write_all(b"expected!").unwrap();
    match w.commit_verified(&good, 8) {
        Err(StoreError::SizeMismatch {
            digest,
            expected,
            found,
        }) => assert_eq!((digest, expected, found), (good.clone(), 8, 9)),
        other => panic!("{other:?}"),
    }
    assert!(tmp_entries(&store).is_empty());
    assert_eq!(blob_count(&store), 0);
    assert!(!store.has_blob(&good));
    assert!(!store.has_blob(&Digest::of(b"tampered")));

    // A writer dropped without commit removes its file too.
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"abandoned").unwrap();
    assert_eq!(tmp_entries(&store).len(), 1);
    drop(w);
    assert!(tmp_entries(&store).is_empty());
    assert_eq!(blob_count(&store), 0);

    assert!(matches!(
        store.open_blob(&good),
        Err(StoreError::MissingBlob { digest }) if digest == good
    ));
}

#[test]
fn images_round_trip_in_both_media_families() {
    let (_dir, store) = new_store();
    for media in [MediaTypes::Oci, MediaTypes::Docker] {
        let (desc, config) = make_image(&store, b"hi", media);
        assert_eq!(desc.media_type(), &media.manifest());
        assert_eq!(
            canonical_json(desc.platform()).unwrap(),
            br#"{"architecture":"amd64","os":"linux"}"#
        );
        let manifest = store.read_manifest(&desc).unwrap();
        assert_eq!(manifest.media_type().as_ref(), Some(&media.manifest()));
        assert_eq!(manifest.config().media_type(), &media.config());
        assert_eq!(
            manifest.layers()[0].media_type(),
            &media.convert_layer(&MediaType::ImageLayerGzip).unwrap()
        );
        assert_eq!(store.read_config(&manifest).unwrap(), config);
        // The image ID is the config digest, i.e. the digest of the canonical config bytes.
        assert_eq!(
            image::image_id(&manifest).unwrap(),
            Digest::of(&config.to_canonical_json().unwrap())
        );
        // The manifest blob is exactly the canonical bytes.
        let bytes = store
            .read_blob(&digest_of(&desc), MAX_MANIFEST_BYTES)
            .unwrap();
        assert_eq!(bytes, canonical_json(&manifest).unwrap());
    }

    // Writing the same image twice gives the same manifest.
    let (a, _) = make_image(&store, b"same", MediaTypes::Oci);
    let (b, _) = make_image(&store, b"same", MediaTypes::Oci);
    assert_eq!(a, b);

    // A layer count that disagrees with the config, or a layer not in the store, is refused.
    let (layer, _) = make_layer(&store, "f", b"f");
    let config = ImageConfig::new("amd64", "linux");
    assert!(matches!(
        store.write_image(&config, &[layer], MediaTypes::Oci),
        Err(StoreError::LayerCountMismatch {
            layers: 1,
            diff_ids: 0
        })
    ));
    let mut config = ImageConfig::new("amd64", "linux");
    config.rootfs.diff_ids = vec![Digest::of(b"x")];
    let ghost = image::descriptor(MediaType::ImageLayerGzip, &Digest::of(b"ghost"), 5);
    assert!(matches!(
        store.write_image(&config, &[ghost], MediaTypes::Oci),
        Err(StoreError::MissingBlob { digest }) if digest == Digest::of(b"ghost")
    ));
}

#[test]
fn read_manifest_checks_size_and_kind() {
    let (_dir, store) = new_store();
    let (desc, _) = make_image(&store, b"k", MediaTypes::Oci);
    let mut wrong_size = desc.clone();
    wrong_size.set_size(desc.size() + 1);
    assert!(matches!(
        store.read_manifest(&wrong_size),
        Err(StoreError::SizeMismatch { .. })
    ));
    let mut as_docker = desc.clone();
    as_docker.set_media_type(MediaTypes::Docker.manifest());
    assert!(matches!(
        store.read_manifest(&as_docker),
        Err(StoreError::BadDocument {
            source: image::ImageError::Manifest(
                kiln_registry::manifest::ManifestError::MediaTypeMismatch { .. }
            ),
            ..
        })
    ));
    let index = image::build_index(std::slice::from_ref(&desc), MediaTypes::Oci).unwrap();
    let (d, s) = store.put_blob(&canonical_json(&index).unwrap()).unwrap();
    let index_desc = image::descriptor(MediaType::ImageIndex, &d, s);
    assert!(matches!(
        store.read_manifest(&index_desc),
        Err(StoreError::BadDocument {
            source: image::ImageError::UnexpectedIndex,
            ..
        })
    ));
    assert_eq!(store.read_index_blob(&index_desc).unwrap(), index);
}

#[test]
fn tags_move_and_go() {
    let (_dir, store) = new_store();
    let (a, _) = make_image(&store, b"a", MediaTypes::Oci);
    let (b, _) = make_image(&store, b"b", MediaTypes::Docker);
    let name = "docker.io/library/busybox:latest";
    store.tag(name, &a).unwrap();
    store.tag("localhost:5000/x/y:1", &a).unwrap();
    assert_eq!(
        digest_of(&store.resolve(name).unwrap().unwrap()),
        digest_of(&a)
    );
    store.tag(name, &b).unwrap();
    let resolved = store.resolve(name).unwrap().unwrap();
    assert_eq!(digest_of(&resolved), digest_of(&b));
    assert_eq!(resolved.media_type(), b.media_type());
    assert_eq!(resolved.platform(), b.platform());
    let names: Vec<String> = store.list().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [name, "localhost:5000/x/y:1"]);

    assert!(store.untag(name).unwrap());
    assert!(!store.untag(name).unwrap());
    assert_eq!(store.resolve(name).unwrap(), None);
    assert_eq!(store.list().unwrap().len(), 1);

    for bad in ["", "a\nb"] {
        assert!(matches!(
            store.tag(bad, &a),
            Err(StoreError::InvalidName { .. })
        ));
    }
    let layer = store.read_manifest(&a).unwrap().layers()[0].clone();
    assert!(matches!(
        store.tag("layer", &layer),
        Err(StoreError::Image(image::ImageError::NotAManifest { .. }))
    ));
}

#[test]
fn tag_refuses_an_incomplete_image() {
    let (_dir, store) = new_store();
    let index_before = fs::read(store.index_path()).unwrap();

    // The manifest itself is missing.
    let ghost = image::descriptor(MediaType::ImageManifest, &Digest::of(b"nothing"), 7);
    match store.tag("ghost", &ghost) {
        Err(StoreError::Incomplete { name, missing }) => {
            assert_eq!(name, "ghost");
            assert_eq!(missing, Digest::of(b"nothing"));
        }
        other => panic!("{other:?}"),
    }

    // A layer is missing.
    let (desc, _) = make_image(&store, b"l", MediaTypes::Oci);
    let layer = digest_of(&store.read_manifest(&desc).unwrap().layers()[0]);
    fs::remove_file(store.blob_path(&layer)).unwrap();
    assert!(matches!(
        store.tag("l", &desc),
        Err(StoreError::Incomplete { missing, .. }) if missing == layer
    ));

    // The config is missing.
    let (desc, _) = make_image(&store, b"c", MediaTypes::Docker);
    let config = digest_of(store.read_manifest(&desc).unwrap().config());
    fs::remove_file(store.blob_path(&config)).unwrap();
    assert!(matches!(
        store.tag("c", &desc),
        Err(StoreError::Incomplete { missing, .. }) if missing == config
    ));

    // An index with one complete and one missing manifest.
    let (ok, _) = make_image(&store, b"ok", MediaTypes::Oci);
    let index = image::build_index(&[ok, ghost], MediaTypes::Oci).unwrap();
    let (d, s) = store.put_blob(&canonical_json(&index).unwrap()).unwrap();
    let index_desc = image::descriptor(MediaType::ImageIndex, &d, s);
    assert!(matches!(
        store.tag("multi", &index_desc),
        Err(StoreError::Incomplete { missing, .. }) if missing == Digest::of(b"nothing")
    ));

    // A corrupt manifest blob.
    let (desc, _) = make_image(&store, b"m", MediaTypes::Oci);
    flip_byte(&store.blob_path(&digest_of(&desc)));
    assert!(matches!(
        store.tag("m", &desc),
        Err(StoreError::DigestMismatch { .. })
    ));

    assert_eq!(fs::read(store.index_path()).unwrap(), index_before);
}

fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

#[test]
fn gc_keeps_what_is_reachable() {
    let (_dir, store) = new_store();
    let (kept, _) = make_image(&store, b"kept", MediaTypes::Oci);
    let (docker, _) = make_image(&store, b"docker", MediaTypes::Docker);
    let (gone, _) = make_image(&store, b"gone", MediaTypes::Oci);
    let (cached_layer, _) = make_layer(&store, "cache", b"cached");
    let (orphan_layer, _) = make_layer(&store, "orphan", b"orphan");
    // A multi-platform index whose manifests are only reachable through it.
    let (arm, _) = make_image(&store, b"arm", MediaTypes::Oci);
    let index = image::build_index(std::slice::from_ref(&arm), MediaTypes::Oci).unwrap();
    let (d, s) = store.put_blob(&canonical_json(&index).unwrap()).unwrap();
    let index_desc = image::descriptor(MediaType::ImageIndex, &d, s);

    store.tag("kept", &kept).unwrap();
    store.tag("docker", &docker).unwrap();
    store.tag("multi", &index_desc).unwrap();
    store.tag("gone", &gone).unwrap();
    assert!(store.untag("gone").unwrap());

    // A blob writer's file left by a process killed a moment ago: no lease protects it.
    let crashed = store.tmp_dir().join("blob-crashed");
    fs::write(&crashed, b"left by a crash").unwrap();
    // A layer half unpacked, with a directory that denies access (an overlay workdir's).
    let unpack = store.tmp_dir().join("unpack-killed");
    fs::create_dir_all(unpack.join("layer/work")).unwrap();
    fs::write(unpack.join("layer/f"), b"x").unwrap();
    fs::set_permissions(unpack.join("layer/work"), fs::Permissions::from_mode(0o000)).unwrap();

    let reachable = |store: &Store, desc: &Descriptor| -> Vec<Digest> {
        let m = store.read_manifest(desc).unwrap();
        let mut v = vec![digest_of(desc), digest_of(m.config())];
        v.extend(m.layers().iter().map(digest_of));
        v
    };
    let kept_blobs: Vec<Digest> = [&kept, &docker, &arm]
        .into_iter()
        .flat_map(|d| reachable(&store, d))
        .chain([d.clone(), digest_of(&cached_layer)])
        .collect();
    let gone_blobs = {
        let mut v = reachable(&store, &gone);
        v.push(digest_of(&orphan_layer));
        v
    };
    let before = blob_count(&store);

    let report = store.gc(&[digest_of(&cached_layer)]).unwrap();
    let mut expected_removed = gone_blobs.clone();
    expected_removed.sort();
    assert_eq!(report.removed_blobs, expected_removed);
    assert_eq!(report.kept_blobs, before - gone_blobs.len());
    assert_eq!(report.kept_blobs, kept_blobs.len());
    assert!(report.freed_bytes > 0);
    assert_eq!(report.removed_tmp, vec![crashed.clone(), unpack.clone()]);
    for d in &kept_blobs {
        assert!(store.has_blob(d), "kept {d}");
    }
    for d in &gone_blobs {
        assert!(!store.has_blob(d), "removed {d}");
    }
    assert_eq!(tmp_entries(&store), Vec::<PathBuf>::new());
    assert_eq!(store.verify().unwrap(), vec![]);

    // Idempotent: nothing more to remove.
    let again = store.gc(&[digest_of(&cached_layer)]).unwrap();
    assert_eq!(again.removed_blobs, vec![]);
    // Without the extra root, the cached layer goes.
    let last = store.gc(&[]).unwrap();
    assert_eq!(last.removed_blobs, vec![digest_of(&cached_layer)]);
}

#[test]
fn gc_waits_for_builds_and_refuses_unreadable_manifests() {
    let (_dir, store) = new_store();
    let (desc, _) = make_image(&store, b"lease", MediaTypes::Oci);
    {
        let _lease = store.lease().unwrap();
        let other = Store::open(store.root()).unwrap();
        assert!(matches!(other.gc(&[]), Err(StoreError::Busy)));
        // Two builds may hold leases at once.
        let _second = other.lease().unwrap();
    }
    // Not tagged and no lease: collected (manifest, config, layer).
    assert_eq!(store.gc(&[]).unwrap().removed_blobs.len(), 3);
    assert!(!store.has_blob(&digest_of(&desc)));

    // A blob being written holds a lease of its own until it is in place.
    let mut writer = store.blob_writer().unwrap();
    writer.write_all(b"in flight").unwrap();
    assert!(matches!(store.gc(&[]), Err(StoreError::Busy)));
    let (in_flight, _) = writer.commit().unwrap();
    assert_eq!(store.gc(&[]).unwrap().removed_blobs, vec![in_flight]);

    let (desc2, _) = make_image(&store, b"corrupt", MediaTypes::Oci);
    let (orphan, _) = make_layer(&store, "o", b"o");
    store.tag("c", &desc2).unwrap();
    fs::write(store.blob_path(&digest_of(&desc2)), b"{not json").unwrap();
    let count = blob_count(&store);
    assert!(store.gc(&[]).is_err());
    assert_eq!(blob_count(&store), count, "nothing deleted");
    assert!(store.has_blob(&digest_of(&orphan)));
}

#[test]
fn verify_finds_corruption() {
    let (_dir, store) = new_store();
    let (a, _) = make_image(&store, b"a", MediaTypes::Oci);
    let (b, _) = make_image(&store, b"b", MediaTypes::Oci);
    store.tag("a", &a).unwrap();
    store.tag("b", &b).unwrap();
    assert_eq!(store.verify().unwrap(), vec![]);

    let layer_a = digest_of(&store.read_manifest(&a).unwrap().layers()[0]);
    let config_b = digest_of(store.read_manifest(&b).unwrap().config());
    flip_byte(&store.blob_path(&layer_a));
    fs::remove_file(store.blob_path(&config_b)).unwrap();
    fs::write(store.blobs_dir().join("not-a-digest"), b"?").unwrap();

    let problems = store.verify().unwrap();
    let found = Digest::of(&fs::read(store.blob_path(&layer_a)).unwrap());
    // Blobs are re-hashed in file-name order (hex digests sort before "not-…"), then each
    // tag's closure is checked.
    assert_eq!(
        problems,
        vec![
            Problem::CorruptBlob {
                digest: layer_a.clone(),
                found: found.clone()
            },
            Problem::StrayFile {
                path: store.blobs_dir().join("not-a-digest")
            },
            Problem::MissingBlob {
                digest: config_b.clone(),
                tag: "b".into()
            },
        ]
    );
    assert_eq!(
        problems
            .iter()
            .find(|p| matches!(p, Problem::CorruptBlob { .. }))
            .unwrap()
            .to_string(),
        format!("blob {layer_a} corrupt (expected {layer_a}, got {found})")
    );

    // A truncated layer.
    let (c, _) = make_image(&store, b"c", MediaTypes::Oci);
    store.tag("c", &c).unwrap();
    let layer_c = store.read_manifest(&c).unwrap().layers()[0].clone();
    fs::write(store.blob_path(&digest_of(&layer_c)), b"short").unwrap();
    let problems = store.verify().unwrap();
    assert!(problems.contains(&Problem::CorruptBlob {
        digest: digest_of(&layer_c),
        found: Digest::of(b"short"),
    }));

    // Garbage in the index.
    fs::write(store.index_path(), b"{\"schemaVersion\":2,").unwrap();
    let problems = store.verify().unwrap();
    assert!(
        matches!(problems.last(), Some(Problem::BadIndex { .. })),
        "{problems:?}"
    );
    assert!(matches!(store.list(), Err(StoreError::CorruptIndex { .. })));
}
