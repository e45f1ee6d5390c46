//! `Store::fsck`: what it finds in a damaged store, what `repair` does about it, that a repaired
//! store checks clean; and the sweep of `tmp/` that the next lease does after a crash.

use std::fs;
use std::path::PathBuf;

use oci_spec::image::MediaType;

use super::{digest_of, flip_byte, make_image, make_layer, new_store, tmp_entries};
use crate::image::MediaTypes;
use crate::store::{Problem, Repair, StoreError};

#[test]
fn a_healthy_store_checks_clean() {
    let (_dir, store) = new_store();
    let (a, _) = make_image(&store, b"a", MediaTypes::Oci);
    store.tag("a", &a).unwrap();
    store.tag("also-a", &a).unwrap();
    let report = store.fsck(false).unwrap();
    assert_eq!(report.problems, vec![]);
    assert_eq!((report.blobs, report.tags), (3, 2));
    assert!(report.bytes > 0);
    assert!(!report.is_damaged());
    assert_eq!(store.fsck(true).unwrap().repairs, vec![]);
}

#[test]
fn repair_deletes_what_is_corrupt_and_untags_what_is_incomplete() {
    let (_dir, store) = new_store();
    let (a, _) = make_image(&store, b"a", MediaTypes::Oci);
    let (b, _) = make_image(&store, b"b", MediaTypes::Docker);
    let (c, _) = make_image(&store, b"c", MediaTypes::Oci);
    for (name, desc) in [("a", &a), ("b", &b), ("c", &c)] {
        store.tag(name, desc).unwrap();
    }
    let layer_a = digest_of(&store.read_manifest(&a).unwrap().layers()[0]);
    let config_b = digest_of(store.read_manifest(&b).unwrap().config());
    flip_byte(&store.blob_path(&layer_a));
    fs::remove_file(store.blob_path(&config_b)).unwrap();
    let stray = store.blobs_dir().join("not-a-digest");
    fs::write(&stray, b"?").unwrap();
    // A record naming a blob that is gone, and what a killed process leaves in tmp/.
    let (gone, _) = make_layer(&store, "gone", b"gone");
    let gone = digest_of(&gone);
    let record = store.cache_dir().join("compressed").join("abc.gzip");
    fs::create_dir_all(record.parent().unwrap()).unwrap();
    fs::write(&record, format!(r#"{{"digest":"{gone}","size":1}}"#)).unwrap();
    fs::remove_file(store.blob_path(&gone)).unwrap();
    let blob_tmp = store.tmp_dir().join("blob-killed");
    fs::write(&blob_tmp, b"half a blob").unwrap();
    let unpack = store.tmp_dir().join("unpack-killed");
    fs::create_dir_all(unpack.join("layer/bin")).unwrap();

    let found = store.fsck(false).unwrap();
    assert!(found.is_damaged());
    assert_eq!(
        found.problems[1..],
        [
            Problem::StrayFile {
                path: stray.clone()
            },
            Problem::MissingBlob {
                digest: config_b.clone(),
                tag: "b".into()
            },
            Problem::Leftover {
                path: blob_tmp.clone(),
                mounts: vec![]
            },
            Problem::Leftover {
                path: unpack.clone(),
                mounts: vec![]
            },
            Problem::StaleRecord {
                path: record.clone(),
                missing: Some(gone)
            },
        ]
    );
    assert!(
        matches!(&found.problems[0], Problem::CorruptBlob { digest, .. } if *digest == layer_a)
    );
    assert_eq!(found.repairs, vec![]);
    assert!(
        stray.exists() && blob_tmp.exists(),
        "checking changes nothing"
    );

    let repaired = store.fsck(true).unwrap();
    assert_eq!(repaired.problems, found.problems);
    assert_eq!(
        repaired.repairs,
        vec![
            Repair::DeletedBlob {
                digest: layer_a.clone()
            },
            Repair::RemovedStray { path: stray },
            Repair::Untagged {
                tag: "a".into(),
                reason: format!("blob {layer_a} is missing"),
            },
            Repair::Untagged {
                tag: "b".into(),
                reason: format!("blob {config_b} is missing"),
            },
            Repair::RemovedLeftover { path: blob_tmp },
            Repair::RemovedLeftover { path: unpack },
            Repair::RemovedRecord { path: record },
        ]
    );
    assert_eq!(
        repaired.repairs[2].to_string(),
        format!("untagged a: blob {layer_a} is missing")
    );
    let after = store.fsck(false).unwrap();
    assert_eq!(after.problems, vec![]);
    assert_eq!(after.tags, 1);
    assert_eq!(store.resolve("c").unwrap().unwrap().digest(), c.digest());
    assert_eq!(tmp_entries(&store), Vec::<PathBuf>::new());
}

#[test]
fn repair_sets_a_corrupt_index_aside() {
    let (_dir, store) = new_store();
    let (a, _) = make_image(&store, b"a", MediaTypes::Oci);
    store.tag("a", &a).unwrap();
    fs::write(store.index_path(), b"{\"schemaVersion\":2,").unwrap();
    let found = store.fsck(false).unwrap();
    assert!(
        matches!(found.problems[..], [Problem::BadIndex { .. }]),
        "{:?}",
        found.problems
    );
    let repaired = store.fsck(true).unwrap();
    let saved_as = store.root().join("index.json.corrupt");
    assert_eq!(
        repaired.repairs,
        vec![Repair::ResetIndex {
            saved_as: saved_as.clone()
        }]
    );
    assert_eq!(fs::read(&saved_as).unwrap(), b"{\"schemaVersion\":2,");
    assert_eq!(store.fsck(false).unwrap().problems, vec![]);
    assert_eq!(store.list().unwrap(), vec![]);
}

#[test]
fn an_entry_with_a_wrong_size_is_untagged_and_its_blob_kept() {
    let (_dir, store) = new_store();
    let (a, _) = make_image(&store, b"a", MediaTypes::Oci);
    let mut wrong = a.clone();
    wrong.set_size(a.size() + 1);
    // Written past tag(), which would refuse it: as another tool might have.
    let mut index = store.read_index().unwrap();
    let mut entry = wrong.clone();
    entry.set_annotations(Some(
        [(
            oci_spec::image::ANNOTATION_REF_NAME.to_owned(),
            "w".to_owned(),
        )]
        .into(),
    ));
    index.set_manifests(vec![entry]);
    store.write_index(&index).unwrap();
    let found = store.fsck(false).unwrap();
    assert_eq!(
        found.problems,
        vec![Problem::WrongSize {
            digest: digest_of(&a),
            expected: a.size() + 1,
            found: a.size(),
        }]
    );
    let repaired = store.fsck(true).unwrap();
    assert!(
        matches!(&repaired.repairs[..], [Repair::Untagged { tag, .. }] if tag == "w"),
        "{:?}",
        repaired.repairs
    );
    assert!(store.has_blob(&digest_of(&a)), "its content was right");
    assert_eq!(store.fsck(false).unwrap().problems, vec![]);
    assert_eq!(*a.media_type(), MediaType::ImageManifest);
}

#[test]
fn fsck_waits_for_no_build_and_leases_sweep_an_idle_store() {
    let (_dir, store) = new_store();
    let left = store.tmp_dir().join("blob-killed");
    fs::write(&left, b"x").unwrap();
    {
        let _build = store.lease().unwrap();
        assert!(matches!(store.fsck(false), Err(StoreError::Busy)));
        // Another lease while one is held does not sweep: the file might be the build's.
        fs::write(&left, b"x").unwrap();
        let _second = store.lease().unwrap();
        assert!(left.exists());
    }
    // The first lease on an idle store does.
    let _lease = store.lease().unwrap();
    assert!(!left.exists());
}
