//! Build and push as one pipeline: when a build will push, each layer it writes is
//! compressed (gzip, the push's compression) on a worker thread while the later steps run, so
//! the push finds it compressed ([`kiln_builder::store::Store::compressed_layer`] records it)
//! and only uploads. One worker: compression competes with the build's own steps for the
//! cores, and one layer at a time keeps the overlap without starving them.
//!
//! Only a head start: a layer the worker has not reached, or failed on, is compressed by the
//! push as before. When the build fails or is cancelled the worker stops after the layer it is
//! on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kiln_builder::layer::Compression;
use kiln_builder::solve::LayerWatcher;
use kiln_builder::store::Store;
use kiln_registry::Digest;

/// The worker and the queue of layers it compresses.
#[derive(Debug)]
pub struct Precompressor {
    queue: Mutex<Option<Sender<Digest>>>,
    stop: Arc<AtomicBool>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Precompressor {
    /// Starts the worker on `store`.
    pub fn start(store: &Store) -> Self {
        let (queue, layers) = channel::<Digest>();
        let stop = Arc::new(AtomicBool::new(false));
        let (store, stopped) = (store.clone(), Arc::clone(&stop));
        let worker = std::thread::spawn(move || {
            for digest in layers {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                // A failure here is the push's to report, when it compresses the layer itself.
                let _ = store.compressed_layer(&digest, Compression::Gzip);
            }
        });
        Self {
            queue: Mutex::new(Some(queue)),
            stop,
            worker: Mutex::new(Some(worker)),
        }
    }

    /// Waits for every queued layer (the build succeeded: the push needs them), or, with
    /// `abandon`, only for the one being compressed.
    pub fn finish(&self, abandon: bool) {
        self.stop.store(abandon, Ordering::Relaxed);
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
        if let Some(worker) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            let _ = worker.join();
        }
    }
}

impl LayerWatcher for Precompressor {
    fn layer_made(&self, digest: &Digest) {
        if let Ok(queue) = self.queue.lock()
            && let Some(queue) = queue.as_ref()
        {
            let _ = queue.send(digest.clone());
        }
    }
}

impl Drop for Precompressor {
    fn drop(&mut self) {
        self.finish(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queued_layer_is_compressed_once_the_build_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Compression reads a layer as bytes: any blob will do.
        let layers: Vec<Digest> = [b"layer one".as_slice(), b"layer two"]
            .iter()
            .map(|c| store.put_blob(c).unwrap().0)
            .collect();
        let precompress = Precompressor::start(&store);
        for digest in &layers {
            precompress.layer_made(digest);
        }
        precompress.finish(false);
        let records = dir.path().join("cache/compressed");
        for digest in &layers {
            assert!(
                records.join(format!("{}.gzip", digest.hex())).exists(),
                "{digest} compressed"
            );
        }
        // After the end, nothing more is queued, and nothing fails.
        precompress.layer_made(&layers[0]);
        precompress.finish(true);
    }
}
