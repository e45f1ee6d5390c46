//! Progress events: what a pull or push is doing, for the caller to render.
//!
//! The library never prints; it reports to a [`Progress`] sink. Events carry digests and byte
//! counts, never URLs with queries, headers or credentials. `BlobProgress` comes once per chunk
//! received or sent (tens of KiB), so a renderer should throttle what it draws.

use std::fmt;

use crate::digest::Digest;

/// What happened to one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Pull: it was already in the local store.
    Present,
    /// Pull: it was downloaded and verified.
    Downloaded,
    /// Push: the registry already had it.
    Existed,
    /// Push: the registry linked it from another repository.
    Mounted {
        /// The repository it came from.
        from: String,
    },
    /// Push: it was uploaded.
    Uploaded,
}

/// One thing a transfer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The blobs a pull or push is about to consider, and their total size.
    Plan {
        /// How many blobs.
        blobs: usize,
        /// Their total size in bytes.
        bytes: u64,
    },
    /// A blob transfer begins.
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob have been received or sent.
    BlobProgress {
        /// The blob.
        digest: Digest,
        /// Bytes done so far (after a restart, counting again from the restart's offset).
        done: u64,
        /// Its size.
        size: u64,
    },
    /// A blob is done.
    BlobFinished {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// What happened.
        outcome: Outcome,
    },
    /// A transfer broke and continues from an offset: a download with an HTTP Range request,
    /// or a chunked upload from what the registry says it holds.
    Resuming {
        /// The blob.
        digest: Digest,
        /// The offset it continues from.
        offset: u64,
    },
    /// A request failed in a way that may pass, and is tried again.
    Retrying {
        /// `METHOD URL` without the query.
        request: String,
        /// The attempt about to be made (2 for the first retry).
        attempt: u32,
        /// Attempts in all.
        attempts: u32,
        /// What went wrong (a status line or a transport error).
        reason: String,
    },
    /// A manifest was pushed.
    ManifestPushed {
        /// The repository.
        repository: String,
        /// The tag or digest it was pushed as.
        reference: String,
        /// Its digest.
        digest: Digest,
    },
}

/// Receives progress events; called from the transfer's tasks, so it must be cheap.
pub trait Progress: Send + Sync {
    /// Handles one event.
    fn event(&self, event: &Event);
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: &Event) {}
}

impl fmt::Debug for dyn Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress")
    }
}
