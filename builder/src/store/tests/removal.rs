//! Removing images (`Store::remove`) and pruning (`Store::prune`): what goes, what stays, and
//! that a running build stops both.

use std::fs;

use kiln_registry::Digest;
use oci_spec::image::Descriptor;

use super::{blob_count, digest_of, make_layer, new_store};
use crate::image::chain_ids;
use crate::image::{History, ImageConfig, MediaTypes};
use crate::store::{Store, StoreError};

/// An image over `layers` whose config differs by `cmd`; returns its manifest descriptor and
/// config digest.
fn image_over(store: &Store, layers: &[(Descriptor, Digest)], cmd: &str) -> (Descriptor, Digest) {
    let mut config = ImageConfig::new("amd64", "linux");
    config.config.cmd = Some(vec![cmd.into()]);
    config.rootfs.diff_ids = layers.iter().map(|(_, d)| d.clone()).collect();
    config.history = vec![History::default(); layers.len()];
    let descs: Vec<Descriptor> = layers.iter().map(|(d, _)| d.clone()).collect();
    let desc = store.write_image(&config, &descs, MediaTypes::Oci).unwrap();
    let manifest = store.read_manifest(&desc).unwrap();
    let config_digest = crate::image::from_oci_digest(manifest.config().digest()).unwrap();
    (desc, config_digest)
}

#[test]
fn remove_deletes_only_what_nothing_else_uses() {
    let (_dir, store) = new_store();
    let shared = make_layer(&store, "base", b"shared base layer");
    let own = make_layer(&store, "top", b"only the first image has this");
    let (first, first_config) = image_over(&store, &[shared.clone(), own.clone()], "first");
    let (second, _) = image_over(&store, std::slice::from_ref(&shared), "second");
    store.tag("first:a", &first).unwrap();
    store.tag("first:b", &first).unwrap();
    store.tag("second", &second).unwrap();
    // A blob nothing references: removal leaves it for gc.
    let (garbage, _) = store.put_blob(b"garbage").unwrap();
    let before = blob_count(&store);

    // Another tag still needs the image: only the tag goes.
    let removal = store.remove(&["first:a", "not-there"], &[]).unwrap();
    assert_eq!(removal.untagged, ["first:a"]);
    assert!(removal.deleted.is_empty());
    assert_eq!(blob_count(&store), before);

    // The last tag: the manifest, config and own layer go, in reference order; the shared
    // layer stays.
    let removal = store.remove(&["first:b"], &[]).unwrap();
    assert_eq!(removal.untagged, ["first:b"]);
    assert_eq!(
        removal.deleted,
        [digest_of(&first), first_config, digest_of(&own.0)]
    );
    assert!(removal.freed_bytes > own.0.size());
    assert_eq!(blob_count(&store), before - 3);
    assert!(store.has_blob(&digest_of(&shared.0)));
    assert!(store.has_blob(&garbage));
    assert!(store.verify().unwrap().is_empty());
    assert_eq!(store.list().unwrap().len(), 1);

    // Extra roots (the build cache) protect blobs as they do for gc.
    let removal = store.remove(&["second"], &[digest_of(&shared.0)]).unwrap();
    assert_eq!(
        removal.deleted.len(),
        2,
        "manifest and config, not the cached layer"
    );
    assert!(store.has_blob(&digest_of(&shared.0)));
    assert!(store.verify().unwrap().is_empty());
}

#[test]
fn remove_waits_for_no_build() {
    let (_dir, store) = new_store();
    let layer = make_layer(&store, "f", b"content");
    let (desc, _) = image_over(&store, &[layer], "x");
    store.tag("x", &desc).unwrap();
    let count = blob_count(&store);
    {
        let _lease = Store::open(store.root()).unwrap().lease().unwrap();
        assert!(matches!(store.remove(&["x"], &[]), Err(StoreError::Busy)));
        assert!(matches!(store.prune(&[]), Err(StoreError::Busy)));
        // Nothing changed: still tagged, every blob there.
        assert!(store.resolve("x").unwrap().is_some());
        assert_eq!(blob_count(&store), count);
    }
    let removal = store.remove(&["x"], &[]).unwrap();
    assert_eq!(removal.deleted.len(), 3);
    assert_eq!(blob_count(&store), 0);
}

#[test]
fn prune_collects_blobs_and_unneeded_snapshots() {
    let (_dir, store) = new_store();
    let a = make_layer(&store, "a", b"layer a");
    let b = make_layer(&store, "b", b"layer b");
    let (desc, _) = image_over(&store, &[a.clone(), b.clone()], "x");
    store.tag("x", &desc).unwrap();
    let (garbage, garbage_size) = store.put_blob(b"garbage").unwrap();
    let needed = chain_ids(&[a.1.clone(), b.1.clone()]);
    let snapshots = store.snapshots_dir();
    // Both prefixes of the tagged image, once named by hex and once with the algorithm.
    fs::create_dir_all(snapshots.join(needed[0].hex()).join("fs")).unwrap();
    fs::create_dir_all(snapshots.join(needed[1].to_string())).unwrap();
    let stale = Digest::of(b"stale chain");
    fs::create_dir_all(snapshots.join(stale.hex()).join("fs/etc")).unwrap();
    fs::write(snapshots.join(stale.hex()).join("fs/etc/file"), b"12345").unwrap();
    fs::write(snapshots.join("not-a-snapshot"), b"left alone").unwrap();

    let report = store.prune(&[]).unwrap();
    assert_eq!(report.gc.removed_blobs, std::slice::from_ref(&garbage));
    assert_eq!(report.gc.freed_bytes, garbage_size);
    assert_eq!(report.removed_snapshots, [snapshots.join(stale.hex())]);
    assert_eq!(report.snapshot_bytes, 5);
    let mut left: Vec<String> = fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut expected = vec![
        needed[0].hex().to_owned(),
        needed[1].to_string(),
        "not-a-snapshot".to_owned(),
    ];
    expected.sort();
    assert_eq!(left, expected);
    assert!(store.verify().unwrap().is_empty());

    // Once the image is untagged, its snapshots go too.
    store.untag("x").unwrap();
    let report = store.prune(&[]).unwrap();
    assert_eq!(report.gc.removed_blobs.len(), 4);
    assert_eq!(report.removed_snapshots.len(), 2);
}
