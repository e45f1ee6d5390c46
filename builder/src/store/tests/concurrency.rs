//! Several writers on one store: threads with their own handles, and separate processes (the
//! test binary re-running itself), while a lock-free reader keeps reading.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use oci_spec::image::Descriptor;

use super::{make_image, new_store};
use crate::image::{MediaTypes, canonical_json};
use crate::store::Store;

#[test]
fn concurrent_tagging_from_threads_keeps_every_tag() {
    const THREADS: usize = 8;
    const TAGS: usize = 12;
    let (_dir, store) = new_store();
    let images: Arc<Vec<Descriptor>> = Arc::new(
        (0..3)
            .map(|i| make_image(&store, &[i], MediaTypes::Oci).0)
            .collect(),
    );
    let root = store.root().to_owned();
    let stop = Arc::new(AtomicBool::new(false));

    // A reader that never takes the lock: every read must see a whole index.
    let reader = {
        let store = Store::open(&root).unwrap();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                store.list().unwrap();
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let root = root.clone();
            let images = Arc::clone(&images);
            thread::spawn(move || {
                let store = Store::open(&root).unwrap(); // its own handle, its own lock fd
                for i in 0..TAGS {
                    store
                        .tag(&format!("t{t}/img:{i}"), &images[(t + i) % 3])
                        .unwrap();
                    store.tag("shared:latest", &images[i % 3]).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);

    let tags = store.list().unwrap();
    assert_eq!(tags.len(), THREADS * TAGS + 1);
    for t in 0..THREADS {
        for i in 0..TAGS {
            let d = store.resolve(&format!("t{t}/img:{i}")).unwrap().unwrap();
            assert_eq!(d.digest(), images[(t + i) % 3].digest());
        }
    }
    assert_eq!(store.verify().unwrap(), vec![]);
}

/// The environment variable through which `concurrent_tagging_across_processes` hands its
/// child processes their job: `<root>\n<prefix>\n<descriptor JSON>`.
const CHILD_JOB: &str = "KILN_STORE_TEST_CHILD_JOB";
const CHILD_TAGS: usize = 25;

#[test]
#[ignore = "run as a child process by concurrent_tagging_across_processes"]
fn child_tagger() {
    let Ok(job) = std::env::var(CHILD_JOB) else {
        return; // run by hand with --ignored: nothing to do
    };
    let mut parts = job.splitn(3, '\n');
    let (root, prefix, desc) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let desc: Descriptor = serde_json::from_str(desc).unwrap();
    let store = Store::open(root).unwrap();
    for i in 0..CHILD_TAGS {
        store.tag(&format!("{prefix}:{i}"), &desc).unwrap();
        store.tag("shared:latest", &desc).unwrap();
    }
    println!("child {prefix} tagged {CHILD_TAGS}");
}

#[test]
fn concurrent_tagging_across_processes() {
    let (_dir, store) = new_store();
    let (desc, _) = make_image(&store, b"proc", MediaTypes::Oci);
    let desc_json = String::from_utf8(canonical_json(&desc).unwrap()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["p1", "p2", "p3"]
        .iter()
        .map(|prefix| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "store::tests::concurrency::child_tagger",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(
                    CHILD_JOB,
                    format!("{}\n{prefix}\n{desc_json}", store.root().display()),
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Tag from this process at the same time.
    for i in 0..CHILD_TAGS {
        store.tag(&format!("parent:{i}"), &desc).unwrap();
    }
    for (child, prefix) in children.into_iter().zip(["p1", "p2", "p3"]) {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The child really ran the helper (a filter typo would run nothing and succeed).
        assert!(
            stdout.contains(&format!("child {prefix} tagged {CHILD_TAGS}")),
            "{stdout}"
        );
    }
    let tags = store.list().unwrap();
    assert_eq!(tags.len(), 4 * CHILD_TAGS + 1);
    for prefix in ["p1", "p2", "p3", "parent"] {
        for i in 0..CHILD_TAGS {
            assert!(store.resolve(&format!("{prefix}:{i}")).unwrap().is_some());
        }
    }
    assert_eq!(store.verify().unwrap(), vec![]);
}
