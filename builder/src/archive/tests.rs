//! Tests for the archive module: the tar check, importing rootfs tarballs, and saving and
//! loading both archive formats, including archives that lie.

use std::fs;
use std::io::Write;
use std::path::Path;

use kiln_registry::{Digest, Reference};
use oci_spec::image::Descriptor;

use super::*;
use crate::image::{self, History, ImageConfig, MediaTypes};
use crate::layer::Compression;
use crate::store::{Store, StoreError};

fn new_store(dir: &Path, name: &str) -> Store {
    Store::open(dir.join(name)).unwrap()
}

fn file_header(path: &str, size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// A small rootfs: a directory, files (one with a long name) and a symlink.
fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_path("etc/").unwrap();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_cksum();
    b.append(&dir, &[][..]).unwrap();
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    b.append(&file_header("etc/passwd", passwd.len()), &passwd[..])
        .unwrap();
    let long = format!("usr/share/{}/file", "d".repeat(120));
    let data = vec![7u8; 3000];
    b.append_data(&mut file_header("x", data.len()), &long, &data[..])
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    b.append_link(&mut link, "bin/sh", "busybox").unwrap();
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Imports `tar` as a one-layer image tagged `name`; returns its manifest descriptor.
fn import_image(store: &Store, tar: &[u8], name: &str, cmd: &str) -> Descriptor {
    let info = import_layer(store, tar, Compression::Gzip).unwrap();
    let mut config = ImageConfig::new("amd64", "linux");
    config.created = Some("2024-01-01T00:00:00Z".into());
    config.config.cmd = Some(vec![cmd.into()]);
    config.rootfs.diff_ids = vec![info.diff_id.clone()];
    config.history = vec![History {
        created_by: Some("kiln import".into()),
        ..History::default()
    }];
    let layer = image::descriptor(info.media_type.into(), &info.digest, info.size);
    let desc = store
        .write_image(&config, &[layer], MediaTypes::Oci)
        .unwrap();
    store.tag(name, &desc).unwrap();
    desc
}

fn reference(name: &str) -> Reference {
    Reference::parse(name).unwrap()
}

// ---- the tar check ----------------------------------------------------------------------

/// Runs the check over `bytes` fed in chunks of `chunk` bytes.
fn check(bytes: &[u8], chunk: usize) -> Result<(), TarCheckError> {
    let mut c = TarCheck::new();
    for piece in bytes.chunks(chunk.max(1)) {
        c.feed(piece)?;
    }
    c.finish()
}

fn raw_header(name: &str, typeflag: u8, size_field: &[u8; 12]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(size_field);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    fix_checksum(&mut h);
    h
}

fn fix_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn octal(n: u64) -> [u8; 12] {
    let mut f = [0u8; 12];
    f[..11].copy_from_slice(format!("{n:011o}").as_bytes());
    f
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

#[test]
fn tar_check_accepts_and_rejects_like_go() {
    let valid = rootfs_tar();
    let mut pax_size = Vec::new();
    {
        let record = b"11 size=20\n";
        pax_size.extend(raw_header("pax", b'x', &octal(record.len() as u64)));
        pax_size.extend(padded(record));
        // The header says 0 bytes; the PAX record says 20, which wins.
        pax_size.extend(raw_header("f", b'0', &octal(0)));
        pax_size.extend(padded(&[1; 20]));
        pax_size.extend([0; 1024]);
    }
    let mut symlink_with_size = raw_header("l", b'2', &octal(700)).to_vec();
    symlink_with_size.extend(raw_header("f", b'0', &octal(1)));
    symlink_with_size.extend(padded(&[1]));
    let mut base256 = [0u8; 12];
    base256[0] = 0x80;
    base256[11] = 3;
    let mut binary_size = raw_header("b", b'0', &base256).to_vec();
    binary_size.extend(padded(b"abc"));
    let mut sparse = raw_header("s", b'S', &octal(10)).to_vec();
    sparse[482] = 1;
    let mut sparse_header: [u8; 512] = sparse.clone().try_into().unwrap();
    fix_checksum(&mut sparse_header);
    sparse = sparse_header.to_vec();
    sparse.extend([0u8; 512]); // one extension block, byte 504 = 0: the last
    sparse.extend(padded(&[2; 10]));
    let mut signed = raw_header("é", b'0', &octal(0));
    signed[0] = 0xc3; // a byte with the high bit set, checksummed as a signed sum
    signed[148..156].copy_from_slice(b"        ");
    let sum: i64 = signed.iter().map(|&b| i64::from(b as i8)).sum();
    signed[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut after_two_zero_blocks = valid.clone();
    after_two_zero_blocks.extend([0; 1024]);
    after_two_zero_blocks.extend(b"trailing garbage is ignored");
    let mut one_zero_block = raw_header("f", b'0', &octal(0)).to_vec();
    one_zero_block.extend([0; 512]);
    let mut zero_then_data = one_zero_block.clone();
    zero_then_data.extend(raw_header("g", b'0', &octal(0)));
    let mut bad_second = raw_header("f", b'0', &octal(0)).to_vec();
    let mut corrupt = raw_header("g", b'0', &octal(0));
    corrupt[0] = b'h';
    bad_second.extend(corrupt);
    let mut bad_size = raw_header("f", b'0', b"12x45678901\0");
    fix_checksum(&mut bad_size);
    let mut huge_pax = raw_header("pax", b'x', &octal(MAX_PAX_BYTES + 1)).to_vec();
    huge_pax.extend([0; 512]);
    let mut bad_pax = raw_header("pax", b'x', &octal(9)).to_vec();
    bad_pax.extend(padded(b"9 size=x\n"));
    bad_pax.extend(raw_header("f", b'0', &octal(0)));

    let table: Vec<(&str, Vec<u8>, Result<(), TarCheckError>)> = vec![
        ("empty input", Vec::new(), Ok(())),
        ("tar-rs archive", valid.clone(), Ok(())),
        ("PAX size override", pax_size, Ok(())),
        ("symlink size ignored", symlink_with_size, Ok(())),
        ("base-256 size", binary_size, Ok(())),
        ("old GNU sparse", sparse, Ok(())),
        ("signed checksum", signed.to_vec(), Ok(())),
        ("after two zero blocks", after_two_zero_blocks, Ok(())),
        ("one zero block", one_zero_block, Ok(())),
        (
            "text",
            b"hello, this is not a tar\n".repeat(40),
            Err(TarCheckError::Checksum { offset: 0 }),
        ),
        (
            "zero block then data",
            zero_then_data,
            Err(TarCheckError::AfterEnd { offset: 1024 }),
        ),
        (
            "bad second header",
            bad_second,
            Err(TarCheckError::Checksum { offset: 512 }),
        ),
        (
            "bad size field",
            bad_size.to_vec(),
            Err(TarCheckError::Size { offset: 0 }),
        ),
        (
            "PAX header too large",
            huge_pax,
            Err(TarCheckError::Pax { offset: 0 }),
        ),
        (
            "malformed PAX",
            bad_pax,
            Err(TarCheckError::Pax { offset: 0 }),
        ),
        (
            "cut inside data",
            valid[..1100].to_vec(),
            Err(TarCheckError::Truncated { offset: 1100 }),
        ),
        (
            "cut inside a header",
            valid[..300].to_vec(),
            Err(TarCheckError::Truncated { offset: 300 }),
        ),
    ];
    let mut ran = 0;
    for (what, bytes, expected) in &table {
        for chunk in [1, 7, 512, 4096, usize::MAX] {
            assert_eq!(&check(bytes, chunk), expected, "{what}, chunks of {chunk}");
        }
        ran += 1;
    }
    assert_eq!(ran, 17);
}

// ---- import -----------------------------------------------------------------------------

#[test]
fn import_passes_the_tar_through_whatever_its_compression() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "store");
    let tar = rootfs_tar();
    let zst = zstd::encode_all(&tar[..], 1).unwrap();
    let plain = import_layer(&store, &tar[..], Compression::Gzip).unwrap();
    assert_eq!(
        plain.diff_id,
        Digest::of(&tar),
        "the layer is the tar, byte for byte"
    );
    assert_eq!(plain.media_type, crate::layer::MEDIA_TYPE_TAR_GZIP);
    assert!(store.has_blob(&plain.digest));
    for input in [gzip(&tar), zst] {
        assert_eq!(
            import_layer(&store, &input[..], Compression::Gzip).unwrap(),
            plain
        );
    }
    let zstd_layer = import_layer(&store, &tar[..], Compression::Zstd).unwrap();
    assert_eq!(zstd_layer.diff_id, plain.diff_id);
    assert_ne!(zstd_layer.digest, plain.digest);
}

#[test]
fn import_refuses_what_is_not_a_tar() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "store");
    let tar = rootfs_tar();
    let mut bzip2 = b"BZh9".to_vec();
    bzip2.extend([0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0, 0]);
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 4];
    let text = b"just text, not an archive\n".repeat(30);
    let cases: [(&[u8], &str); 5] = [
        (&bzip2, "bzip2"),
        (&xz, "xz"),
        (&text, "checksum"),
        (&tar[..1500], "truncated"),
        (&gzip(&text), "checksum"),
    ];
    for (input, expected) in cases {
        let err = import_layer(&store, input, Compression::Gzip).unwrap_err();
        let found = match &err {
            ArchiveError::UnsupportedCompression { compression } => *compression,
            ArchiveError::NotATar(TarCheckError::Checksum { .. }) => "checksum",
            ArchiveError::NotATar(TarCheckError::Truncated { .. }) => "truncated",
            other => panic!("unexpected error {other:?}"),
        };
        assert_eq!(found, expected);
    }
    // Nothing half-written stays behind, and nothing was stored.
    assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    assert!(store.verify().unwrap().is_empty());
}

// ---- save and load ----------------------------------------------------------------------

#[test]
fn both_formats_round_trip_to_the_same_digests() {
    let dir = tempfile::tempdir().unwrap();
    let source = new_store(dir.path(), "source");
    let tar = rootfs_tar();
    let busybox = import_image(&source, &tar, "docker.io/library/busybox:latest", "sh");
    let other = import_image(&source, &tar, "docker.io/library/other:1", "other");
    let images = [
        SaveImage {
            name: Some(reference("busybox")),
            descriptor: busybox.clone(),
        },
        SaveImage {
            name: Some(reference("busybox:again")),
            descriptor: busybox.clone(),
        },
        SaveImage {
            name: Some(reference("other:1")),
            descriptor: other.clone(),
        },
    ];
    for format in [Format::OciArchive, Format::DockerArchive] {
        let path = dir.path().join(format!("{format:?}.tar"));
        save(&source, &images, format, &path).unwrap();
        // Deterministic: saving again gives the same bytes.
        let again = dir.path().join("again.tar");
        save(&source, &images, format, &again).unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            fs::read(&again).unwrap(),
            "{format:?}"
        );

        let target = new_store(dir.path(), &format!("target-{format:?}"));
        let loaded = load_path(&target, &path).unwrap();
        let names: Vec<String> = loaded.iter().map(|l| l.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:again",
                "docker.io/library/other:1",
            ],
            "{format:?}"
        );
        // A docker archive has no manifest, but kiln's deterministic gzip recreates the same
        // layer blob, so the manifest digests agree in both formats.
        assert_eq!(
            loaded[0].descriptor.digest(),
            busybox.digest(),
            "{format:?}"
        );
        assert_eq!(loaded[2].descriptor.digest(), other.digest(), "{format:?}");
        let found = target
            .resolve("docker.io/library/other:1")
            .unwrap()
            .unwrap();
        assert_eq!(found.digest(), other.digest());
        assert!(target.verify().unwrap().is_empty());
        // Loading twice is harmless.
        assert_eq!(load_path(&target, &path).unwrap().len(), 3);
    }
}

#[test]
fn docker_archive_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "store");
    let tar = rootfs_tar();
    let desc = import_image(&store, &tar, "docker.io/library/busybox:latest", "sh");
    let path = dir.path().join("docker.tar");
    let image = SaveImage {
        name: Some(reference("busybox")),
        descriptor: desc.clone(),
    };
    save(&store, &[image], Format::DockerArchive, &path).unwrap();
    let manifest = store.read_manifest(&desc).unwrap();
    let config_hex = image::from_oci_digest(manifest.config().digest())
        .unwrap()
        .hex()
        .to_owned();
    let layer = format!("{}.tar", Digest::of(&tar).hex());
    let mut archive = tar::Archive::new(fs::File::open(&path).unwrap());
    let mut files = Vec::new();
    let mut manifest_json = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(entry.header().mtime().unwrap(), 0);
        assert_eq!(entry.header().uid().unwrap(), 0);
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if name == layer {
            assert_eq!(data, tar, "the layer is stored uncompressed");
        }
        if name == "manifest.json" {
            manifest_json = data;
        }
        files.push(name);
    }
    // Sorted by path, manifest.json last.
    let mut expected = vec![format!("{config_hex}.json"), layer.clone()];
    expected.sort();
    expected.push("manifest.json".into());
    assert_eq!(files, expected);
    let json: serde_json::Value = serde_json::from_slice(&manifest_json).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": ["busybox:latest"],
            "Layers": [layer],
        }])
    );
}

/// Builds a tar from `(path, contents)` pairs and symlinks `(path, None, target)`.
fn tar_of(entries: &[(&str, Option<&[u8]>, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, target) in entries {
        match data {
            Some(data) => {
                let mut h = file_header("x", data.len());
                // Set the name through raw bytes so `..` survives (tar-rs refuses it).
                h.as_old_mut().name = [0; 100];
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            None => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// How a test rewrites one archive entry: new contents, or `None` to drop it.
type Change<'a> = &'a dyn Fn(&str, &[u8]) -> Option<Vec<u8>>;

/// The entries of a saved OCI archive, as owned pairs.
fn entries_of(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        out.push((name, data));
    }
    out
}

#[test]
fn load_refuses_lying_archives_and_tags_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = new_store(dir.path(), "source");
    let tar = rootfs_tar();
    let desc = import_image(&source, &tar, "docker.io/library/busybox:latest", "sh");
    let oci = dir.path().join("oci.tar");
    let image = SaveImage {
        name: Some(reference("busybox")),
        descriptor: desc.clone(),
    };
    save(
        &source,
        std::slice::from_ref(&image),
        Format::OciArchive,
        &oci,
    )
    .unwrap();
    let docker = dir.path().join("docker.tar");
    save(&source, &[image], Format::DockerArchive, &docker).unwrap();
    let oci_entries = entries_of(&oci);
    let docker_entries = entries_of(&docker);
    let layer_digest =
        image::from_oci_digest(source.read_manifest(&desc).unwrap().layers()[0].digest()).unwrap();
    let layer_path = format!("blobs/sha256/{}", layer_digest.hex());

    let rebuild = |entries: &[(String, Vec<u8>)], change: Change<'_>| {
        let owned: Vec<(String, Vec<u8>)> = entries
            .iter()
            .filter_map(|(p, d)| change(p, d).map(|d| (p.clone(), d)))
            .collect();
        let refs: Vec<(&str, Option<&[u8]>, &str)> = owned
            .iter()
            .map(|(p, d)| (p.as_str(), Some(d.as_slice()), ""))
            .collect();
        tar_of(&refs)
    };
    let flipped = rebuild(&oci_entries, &|p, d| {
        let mut d = d.to_vec();
        if p == layer_path {
            d[100] ^= 1;
        }
        Some(d)
    });
    let missing_blob = rebuild(&oci_entries, &|p, d| (p != layer_path).then(|| d.to_vec()));
    let unnamed = rebuild(&oci_entries, &|p, d| {
        if p != "index.json" {
            return Some(d.to_vec());
        }
        let mut index: serde_json::Value = serde_json::from_slice(d).unwrap();
        index["manifests"][0]["annotations"] = serde_json::json!({
            "org.opencontainers.image.ref.name": "latest"
        });
        Some(serde_json::to_vec(&index).unwrap())
    });
    let other_tar = tar_of(&[("etc/other", Some(b"x"), "")]);
    let wrong_layer = rebuild(&docker_entries, &|p, d| {
        Some(if p.ends_with(".tar") {
            other_tar.clone()
        } else {
            d.to_vec()
        })
    });
    let escaping = tar_of(&[("../manifest.json", Some(b"[]"), "")]);
    let looping = tar_of(&[
        ("manifest.json", None, "a.json"),
        ("a.json", None, "manifest.json"),
    ]);
    let neither = tar_of(&[("hello", Some(b"hi"), "")]);
    let bad_name = rebuild(&docker_entries, &|p, d| {
        Some(if p == "manifest.json" {
            String::from_utf8(d.to_vec())
                .unwrap()
                .replace("busybox:latest", "Busybox:latest")
                .into_bytes()
        } else {
            d.to_vec()
        })
    });

    type Check = fn(&ArchiveError) -> bool;
    let cases: [(&str, Vec<u8>, Check); 8] = [
        ("flipped byte", flipped, |e| {
            matches!(
                e,
                ArchiveError::BlobMismatch {
                    source: StoreError::DigestMismatch { .. },
                    ..
                }
            )
        }),
        ("missing blob", missing_blob, |e| {
            matches!(e, ArchiveError::MissingEntry { .. })
        }),
        ("unnamed", unnamed, |e| {
            matches!(e, ArchiveError::Unnamed { .. })
        }),
        ("wrong layer", wrong_layer, |e| {
            matches!(e, ArchiveError::DiffIdMismatch { .. })
        }),
        ("escaping path", escaping, |e| {
            matches!(e, ArchiveError::PathEscapes { .. })
        }),
        ("link loop", looping, |e| {
            matches!(e, ArchiveError::LinkLoop { .. })
        }),
        ("neither format", neither, |e| {
            matches!(e, ArchiveError::UnknownFormat)
        }),
        ("bad name", bad_name, |e| {
            matches!(e, ArchiveError::BadName { .. })
        }),
    ];
    let mut ran = 0;
    for (what, bytes, expected) in cases {
        let target = new_store(dir.path(), &format!("target-{ran}"));
        let err = load_reader(&target, &bytes[..]).unwrap_err();
        assert!(expected(&err), "{what}: {err:?}");
        assert!(
            target.list().unwrap().is_empty(),
            "{what}: nothing is tagged"
        );
        assert!(target.verify().unwrap().is_empty(), "{what}");
        assert_eq!(fs::read_dir(target.tmp_dir()).unwrap().count(), 0, "{what}");
        ran += 1;
    }
    assert_eq!(ran, 8);
}

#[test]
fn load_follows_links_and_reads_compressed_archives() {
    let dir = tempfile::tempdir().unwrap();
    let source = new_store(dir.path(), "source");
    let tar = rootfs_tar();
    let desc = import_image(&source, &tar, "docker.io/library/busybox:latest", "sh");
    let docker = dir.path().join("docker.tar");
    let image = SaveImage {
        name: Some(reference("busybox")),
        descriptor: desc.clone(),
    };
    save(&source, &[image], Format::DockerArchive, &docker).unwrap();
    // Rewrite as old `docker save` did: the layer in `<id>/layer.tar`, reached by a symlink
    // from where manifest.json points, in a gzip-compressed archive.
    let entries = entries_of(&docker);
    let layer_name = format!("{}.tar", Digest::of(&tar).hex());
    let mut owned: Vec<(String, Option<Vec<u8>>, String)> = Vec::new();
    for (path, data) in entries {
        if path == layer_name {
            owned.push(("legacy/layer.tar".into(), Some(data), String::new()));
            owned.push((path, None, "./legacy/../legacy/layer.tar".into()));
        } else {
            owned.push((path, Some(data), String::new()));
        }
    }
    let refs: Vec<(&str, Option<&[u8]>, &str)> = owned
        .iter()
        .map(|(p, d, t)| (p.as_str(), d.as_deref(), t.as_str()))
        .collect();
    let gz = dir.path().join("docker.tar.gz");
    fs::write(&gz, gzip(&tar_of(&refs))).unwrap();
    let target = new_store(dir.path(), "target");
    let loaded = load_path(&target, &gz).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].descriptor.digest(), desc.digest());
}

#[test]
fn save_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "store");
    let desc = import_image(
        &store,
        &rootfs_tar(),
        "docker.io/library/busybox:latest",
        "sh",
    );
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("image.tar");
    fs::write(&dest, b"previous contents").unwrap();
    // Break the image: its layer blob goes missing.
    let layer =
        image::from_oci_digest(store.read_manifest(&desc).unwrap().layers()[0].digest()).unwrap();
    fs::remove_file(store.blob_path(&layer)).unwrap();
    for format in [Format::OciArchive, Format::DockerArchive] {
        let image = SaveImage {
            name: Some(reference("busybox")),
            descriptor: desc.clone(),
        };
        let err = save(&store, &[image], format, &dest).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Store(StoreError::MissingBlob { .. })),
            "{err:?}"
        );
        assert_eq!(fs::read(&dest).unwrap(), b"previous contents");
        let names: Vec<_> = fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["image.tar"], "no temporary file is left");
    }
}
