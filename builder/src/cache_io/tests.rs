//! Export to and import from an OCI layout directory through the library: the records come
//! back as they were, a second export writes nothing, other tags survive, and a record whose
//! layer is gone is an error for that record (and gives way to the next cache that has it).

use std::fs;
use std::path::Path;

use super::*;
use crate::image::{ImageConfig, descriptor};
use crate::solve::Built;

fn record(store: &Store, content: &[u8]) -> CacheRecord {
    let (digest, size) = store.put_blob(content).unwrap();
    CacheRecord {
        media_type: MEDIA_TYPE_TAR.to_owned(),
        digest: digest.clone(),
        size,
        diff_id: digest,
        created: "2024-01-01T00:00:00Z".to_owned(),
    }
}

fn built(steps: BTreeMap<Digest, CacheRecord>) -> Built {
    Built {
        // Only mode=min reads the image; these tests export with max.
        manifest: descriptor(
            oci_spec::image::MediaType::ImageManifest,
            &Digest::of(b"none"),
            4,
        ),
        config: ImageConfig::new("amd64", "linux"),
        steps,
        cache_mounts: BTreeMap::new(),
    }
}

fn to_dir(dir: &Path, tag: &str) -> CacheExport {
    CacheExport {
        target: ExportTarget::Local {
            dest: dir.to_owned(),
            tag: tag.to_owned(),
        },
        mode: ExportMode::Max,
        compression: Compression::Gzip,
        ignore_error: false,
        cache_mounts: false,
    }
}

/// A store that fetches remote blobs from layout directories (no registry in these tests).
fn new_store(dir: &Path, name: &str) -> Store {
    let fetcher = Fetcher::new(Box::new(|host: &str| {
        Err(format!("no registry {host}").into())
    }));
    Store::open(dir.join(name))
        .unwrap()
        .with_fetcher(std::sync::Arc::new(fetcher))
}

#[test]
fn local_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let a = new_store(tmp.path(), "a");
    let (k1, k2) = (Digest::of(b"key 1"), Digest::of(b"key 2"));
    let steps = BTreeMap::from([
        (k1.clone(), record(&a, &b"layer one ".repeat(100))),
        (k2.clone(), record(&a, &b"layer two ".repeat(100))),
    ]);
    let dir = tmp.path().join("cache");
    let first = export(&a, &built(steps.clone()), &to_dir(&dir, "latest"), None).unwrap();
    assert_eq!((first.records, first.layers), (2, 2));
    assert_eq!((first.uploaded, first.existed), (3, 0));
    let again = export(&a, &built(steps.clone()), &to_dir(&dir, "latest"), None).unwrap();
    assert_eq!((again.uploaded, again.existed), (0, 3));
    assert_eq!(again.manifest, first.manifest);
    // Another tag beside it: both are named in index.json.
    let one = BTreeMap::from([(k1.clone(), steps[&k1].clone())]);
    export(&a, &built(one), &to_dir(&dir, "other"), None).unwrap();
    let index = fs::read_to_string(dir.join("index.json")).unwrap();
    assert!(
        index.contains("\"latest\"") && index.contains("\"other\""),
        "{index}"
    );

    let b = new_store(tmp.path(), "b");
    let mut imports = Imports::new().unwrap();
    assert_eq!(imports.add_local(dir.clone(), "latest").unwrap(), 2);
    assert_eq!(imports.origins(&k1).len(), 1);
    for (key, want) in &steps {
        let got = imports
            .fetch(key, &b, Compression::None)
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(&got, want);
        // Lazy: known, not fetched, until something reads it; then fetched and verified.
        assert!(b.is_unfetched(&want.digest));
    }
    for want in steps.values() {
        let bytes = b.read_blob(&want.digest, 1 << 20).unwrap();
        assert_eq!(Digest::of(&bytes), want.digest);
        assert!(b.has_blob(&want.digest));
    }
    assert_eq!(
        imports
            .fetch(&Digest::of(b"unknown"), &b, Compression::None)
            .unwrap(),
        None
    );
    // A build that keeps gzip layers gets the blob as it is in the cache.
    let c = new_store(tmp.path(), "c");
    let gz = imports
        .fetch(&k1, &c, Compression::Gzip)
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(gz.media_type, crate::layer::MEDIA_TYPE_TAR_GZIP);
    assert_eq!(gz.diff_id, steps[&k1].diff_id);
    assert!(c.is_unfetched(&gz.digest));
    // The compressed form is remembered: exporting from b compresses nothing new.
    assert_eq!(
        b.compressed_layer(&steps[&k1].digest, Compression::Gzip)
            .unwrap(),
        (gz.digest.clone(), gz.size)
    );

    assert!(matches!(
        Imports::new().unwrap().add_local(dir.clone(), "missing"),
        Err(ImportError::Local { .. })
    ));
}

#[test]
fn a_lost_layer_fails_its_record_only_and_the_next_cache_is_tried() {
    let tmp = tempfile::tempdir().unwrap();
    let a = new_store(tmp.path(), "a");
    let key = Digest::of(b"key");
    let steps = BTreeMap::from([(key.clone(), record(&a, b"a layer"))]);
    let (lost, kept) = (tmp.path().join("lost"), tmp.path().join("kept"));
    for dir in [&lost, &kept] {
        export(&a, &built(steps.clone()), &to_dir(dir, "latest"), None).unwrap();
    }
    let gz = a
        .compressed_layer(&steps[&key].digest, Compression::Gzip)
        .unwrap()
        .0;
    fs::remove_file(lost.join("blobs/sha256").join(gz.hex())).unwrap();

    let mut only_lost = Imports::new().unwrap();
    only_lost.add_local(lost.clone(), "latest").unwrap();
    let b = new_store(tmp.path(), "b");
    let err = only_lost.fetch(&key, &b, Compression::None).unwrap_err();
    assert!(
        crate::error_chain(&*err).contains(&lost.display().to_string()),
        "{err}"
    );
    assert!(!b.has_blob(&steps[&key].digest));

    let mut both = Imports::new().unwrap();
    both.add_local(lost, "latest").unwrap();
    both.add_local(kept.clone(), "latest").unwrap();
    assert_eq!(both.origins(&key).len(), 2);
    let (got, origin) = both.fetch(&key, &b, Compression::None).unwrap().unwrap();
    assert_eq!(got, steps[&key]);
    assert_eq!(origin, format!("{}:latest", kept.display()));
    // Taken from the cache that has it, when it is read.
    b.read_blob(&got.digest, 1 << 20).unwrap();
}

#[test]
fn a_version_1_cache_is_imported_eagerly() {
    let tmp = tempfile::tempdir().unwrap();
    let a = new_store(tmp.path(), "a");
    let key = Digest::of(b"key");
    let steps = BTreeMap::from([(key.clone(), record(&a, b"an old layer"))]);
    let dir = tmp.path().join("cache");
    export(&a, &built(steps.clone()), &to_dir(&dir, "latest"), None).unwrap();
    // Rewrite the config as version 1 (no diffSize), and the manifest naming it.
    let layout = local::Layout::new(dir.clone());
    let origin = Origin::Local(dir.clone(), "latest".to_owned());
    let manifest =
        format::read_manifest(&layout.read_manifest("latest", &origin).unwrap()).unwrap();
    let config = layout
        .read_small(&manifest.config, MAX_CONFIG_BYTES, &origin)
        .unwrap();
    let mut records = format::read_config(&config, &manifest).unwrap().records;
    assert!(records[&key].diff_size.is_some());
    for r in records.values_mut() {
        r.diff_size = None;
    }
    let (v2, manifest) =
        format::write(&records, &BTreeMap::new(), format::CONFIG_MEDIA_TYPE).unwrap();
    let config = String::from_utf8(v2.clone())
        .unwrap()
        .replace("\"version\":2", "\"version\":1");
    // The same length: only the config's digest changes in the manifest.
    let manifest = String::from_utf8(manifest).unwrap().replace(
        &Digest::of(&v2).to_string(),
        &Digest::of(config.as_bytes()).to_string(),
    );
    for bytes in [config.as_bytes(), manifest.as_bytes()] {
        layout
            .put_blob(&Digest::of(bytes), &mut &bytes[..])
            .unwrap();
    }
    let blob = format::Blob {
        media_type: kiln_registry::manifest::OCI_MANIFEST.to_owned(),
        digest: Digest::of(manifest.as_bytes()),
        size: manifest.len() as u64,
    };
    layout.tag("v1", &blob).unwrap();

    let b = new_store(tmp.path(), "b");
    let mut imports = Imports::new().unwrap();
    assert_eq!(imports.add_local(dir, "v1").unwrap(), 1);
    let got = imports
        .fetch(&key, &b, Compression::None)
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(got, steps[&key]);
    assert!(b.has_blob(&got.digest) && !b.is_unfetched(&got.digest));
}

#[test]
fn a_corrupt_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = new_store(tmp.path(), "a");
    let steps = BTreeMap::from([(Digest::of(b"key"), record(&a, b"a layer"))]);
    let dir = tmp.path().join("cache");
    let done = export(&a, &built(steps), &to_dir(&dir, "latest"), None).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.join("blobs/sha256").join(done.manifest.hex())).unwrap(),
    )
    .unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap();
    let path = dir
        .join("blobs/sha256")
        .join(config.strip_prefix("sha256:").unwrap());
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        Imports::new().unwrap().add_local(dir, "latest"),
        Err(ImportError::Local { .. })
    ));
}

#[test]
fn zstd_layers_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let a = new_store(tmp.path(), "a");
    let key = Digest::of(b"key");
    let steps = BTreeMap::from([(key.clone(), record(&a, &b"zstd layer ".repeat(50)))]);
    let dir = tmp.path().join("cache");
    let spec = CacheExport {
        compression: Compression::Zstd,
        ..to_dir(&dir, "latest")
    };
    let done = export(&a, &built(steps.clone()), &spec, None).unwrap();
    let manifest = fs::read_to_string(dir.join("blobs/sha256").join(done.manifest.hex())).unwrap();
    assert!(
        manifest.contains(crate::layer::MEDIA_TYPE_TAR_ZSTD),
        "{manifest}"
    );

    let b = new_store(tmp.path(), "b");
    let mut imports = Imports::new().unwrap();
    imports.add_local(dir, "latest").unwrap();
    let got = imports
        .fetch(&key, &b, Compression::None)
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(got, steps[&key]);
    // A build keeping gzip layers cannot use a zstd one: an error, so the step runs.
    let c = new_store(tmp.path(), "c");
    assert!(imports.fetch(&key, &c, Compression::Gzip).is_err());
}

#[test]
fn cache_mounts_export_and_restore_through_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let a = new_store(tmp.path(), "a");
    let pip = tmp.path().join("pip-cache");
    fs::create_dir_all(pip.join("wheels")).unwrap();
    fs::write(pip.join("wheels/one.whl"), "wheel").unwrap();
    let mut built = built(BTreeMap::new());
    built.cache_mounts = BTreeMap::from([("pip".to_owned(), pip)]);
    let dir = tmp.path().join("cache");
    let spec = CacheExport {
        cache_mounts: true,
        ..to_dir(&dir, "latest")
    };
    let done = export(&a, &built, &spec, None).unwrap();
    assert_eq!((done.records, done.mounts, done.layers), (0, 1, 1));
    // Without cache-mounts=true they stay home.
    let plain = export(&a, &built, &to_dir(&dir, "plain"), None).unwrap();
    assert_eq!((plain.mounts, plain.layers), (0, 0));

    let b = new_store(tmp.path(), "b");
    let mut imports = Imports::new().unwrap();
    imports.add_local(dir, "latest").unwrap();
    assert_eq!(imports.mounts(), 1);
    let into = tmp.path().join("restored");
    fs::create_dir(&into).unwrap();
    assert!(!imports.restore_mount("npm", &b, &into).unwrap());
    assert!(imports.restore_mount("pip", &b, &into).unwrap());
    assert_eq!(
        fs::read_to_string(into.join("wheels/one.whl")).unwrap(),
        "wheel"
    );
}
