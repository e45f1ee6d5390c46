//! The library API without the CLI (what `kiln build --push` will call): push from a blob
//! source and pull into a blob store, with the progress events a renderer gets (per-blob bytes
//! and totals).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use kiln_builder::store::Store;
use kiln_registry::error::BoxError;
use kiln_registry::{
    BlobSink, BlobSource, BlobStore, ClientOptions, Digest, Event, NoProgress, Outcome, Platform,
    Progress, PushOptions, Reference, Registry,
};

use super::Kiln;
use crate::support::registry::{Config, RegistryServer};
use crate::support::registry_image::{make_image, noise};

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Progress for Recorder {
    fn event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// The store as a push source (the CLI has the same adaptor).
pub(super) struct StoreSource(pub(super) Store);

impl BlobSource for StoreSource {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError> {
        Ok(Box::new(self.0.open_blob(digest)?))
    }
}

/// A blob store in memory: what the library needs from any store.
#[derive(Default)]
struct Memory(Arc<Mutex<BTreeMap<Digest, Vec<u8>>>>);

struct MemorySink(Vec<u8>, Arc<Mutex<BTreeMap<Digest, Vec<u8>>>>);

impl Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobSink for MemorySink {
    fn commit(self: Box<Self>, digest: &Digest, size: u64) -> Result<(), BoxError> {
        if Digest::of(&self.0) != *digest || self.0.len() as u64 != size {
            return Err("wrong content".into());
        }
        self.1.lock().unwrap().insert(digest.clone(), self.0);
        Ok(())
    }
}

impl BlobStore for Memory {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.0.lock().unwrap().contains_key(digest)
    }
    fn writer(&self) -> Result<Box<dyn BlobSink>, BoxError> {
        Ok(Box::new(MemorySink(Vec::new(), self.0.clone())))
    }
}

/// Checks that every blob's progress rises to its size and the plan's totals add up.
fn check_progress(events: &[Event], blobs: &BTreeMap<Digest, u64>, finished: Outcome) {
    let plans: Vec<(usize, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Plan { blobs, bytes } => Some((*blobs, *bytes)),
            _ => None,
        })
        .collect();
    assert_eq!(plans, [(blobs.len(), blobs.values().sum())]);
    for (digest, size) in blobs {
        let done: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::BlobProgress {
                    digest: d,
                    done,
                    size: s,
                } if d == digest => {
                    assert_eq!(s, size);
                    Some(*done)
                }
                _ => None,
            })
            .collect();
        assert!(done.windows(2).all(|w| w[0] < w[1]), "{done:?}");
        assert_eq!(done.last(), Some(size), "{digest}");
        assert!(events.contains(&Event::BlobFinished {
            digest: digest.clone(),
            size: *size,
            outcome: finished.clone(),
        }));
    }
}

#[test]
fn push_and_pull_through_the_library_report_progress() {
    let Some(reg) = RegistryServer::start(Config::default()) else {
        return;
    };
    let k = Kiln::new();
    let name = format!("{}/lib/app:1", reg.addr);
    let desc = make_image(
        &k.root(),
        &name,
        "arm64",
        &[("noise", &noise(1_500_000, 21))],
    );
    let store = k.store();
    let manifest = store.read_manifest(&desc).unwrap();
    let blobs: BTreeMap<Digest, u64> = std::iter::once(manifest.config())
        .chain(manifest.layers())
        .map(|d| (d.digest().to_string().parse().unwrap(), d.size()))
        .collect();
    let reference = Reference::parse(&name).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let recorder = Arc::new(Recorder::default());
    let registry = Registry::new(
        reference.registry(),
        None,
        &ClientOptions::default(),
        recorder.clone(),
    )
    .unwrap();
    let options = PushOptions {
        tags: vec!["1".into()],
        ..PushOptions::default()
    };
    let pushed = runtime
        .block_on(kiln_registry::push(
            &registry,
            reference.repository(),
            &desc,
            &StoreSource(store),
            &options,
        ))
        .unwrap();
    assert_eq!(pushed.digest.to_string(), desc.digest().to_string());
    assert_eq!((pushed.uploaded, pushed.existed, pushed.mounted), (2, 0, 0));
    assert_eq!(pushed.bytes_uploaded, blobs.values().sum::<u64>());
    let events = recorder.0.lock().unwrap().clone();
    check_progress(&events, &blobs, Outcome::Uploaded);
    assert!(events.contains(&Event::ManifestPushed {
        repository: "lib/app".into(),
        reference: "1".into(),
        digest: pushed.digest.clone(),
    }));

    let recorder = Arc::new(Recorder::default());
    let registry = Registry::new(
        reference.registry(),
        None,
        &ClientOptions::default(),
        recorder.clone(),
    )
    .unwrap();
    let memory = Memory::default();
    let pulled = runtime
        .block_on(kiln_registry::pull(
            &registry,
            &reference,
            &Platform::host(),
            &memory,
        ))
        .unwrap();
    assert_eq!(pulled.digest, pushed.digest);
    assert_eq!(
        pulled.manifest.digest().to_string(),
        desc.digest().to_string()
    );
    assert_eq!((pulled.downloaded, pulled.present), (2, 0));
    check_progress(&recorder.0.lock().unwrap(), &blobs, Outcome::Downloaded);
    let held = memory.0.lock().unwrap();
    assert_eq!(held.len(), 3, "config, layer and manifest");
    assert!(held.contains_key(&pushed.digest));

    // HEAD requests through the library, with a registry handle that reports nothing.
    let quiet = Registry::new(
        reference.registry(),
        None,
        &ClientOptions::default(),
        Arc::new(NoProgress),
    )
    .unwrap();
    let (layer, size) = blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let head = runtime.block_on(quiet.head_blob("lib/app", layer)).unwrap();
    assert_eq!(head, Some(*size));
    let manifest_head = runtime
        .block_on(quiet.head_manifest("lib/app", "1"))
        .unwrap()
        .unwrap();
    assert_eq!(manifest_head.digest, Some(pushed.digest));
    assert_eq!(
        runtime
            .block_on(quiet.head_manifest("lib/app", "2"))
            .unwrap(),
        None
    );
}
