//! Ordered block compression on a pool of worker threads, with bytes independent of the pool.
//!
//! The uncompressed stream is cut into blocks of a fixed size (the last one may be shorter);
//! each block is compressed on its own by a [`Codec`], given the end of the block before it as
//! history, and the outputs are written in input order. Cut points, history and codec settings
//! depend on the data alone, so the output is byte-identical whatever the number of workers
//! (one worker compresses inline, on the caller's thread).
//!
//! Workers are started once per stream and take blocks from a shared queue, so a worker that
//! finishes early starts the next block instead of waiting behind a slower one (head-of-line
//! blocking kept one of two cores idle when each block had its own thread and the oldest was
//! joined first). At most [`IN_FLIGHT_PER_WORKER`] blocks per worker are submitted but not yet
//! written, which bounds memory; finished blocks wait in a reorder buffer until their turn.
//! Input and output buffers are recycled, so a long stream allocates a handful of blocks in all.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Blocks submitted but not yet written, per worker: one being compressed and one queued, so
/// no worker waits for the producer or for a slower sibling.
const IN_FLIGHT_PER_WORKER: usize = 2;

/// Compresses one block; a codec lives on one worker and is reused for its blocks.
pub(super) trait Codec: Send + 'static {
    /// Appends the compressed form of `block` to the empty `out`. `history` is the end of the
    /// block before (at most the stream's history length, empty for the first block).
    fn compress(&mut self, history: &[u8], block: &[u8], out: &mut Vec<u8>) -> io::Result<()>;
}

/// One block for a worker, with the buffer to compress it into.
struct Job {
    seq: u64,
    history: Vec<u8>,
    block: Vec<u8>,
    out: Vec<u8>,
}

/// A worker's answer: the job's buffers back, and the output or the error.
struct Done {
    seq: u64,
    history: Vec<u8>,
    block: Vec<u8>,
    out: io::Result<Vec<u8>>,
}

/// Where blocks are compressed.
enum Mode<C: Codec> {
    /// On the caller's thread.
    Inline { codec: C, out: Vec<u8> },
    /// On worker threads.
    Pool(Pool),
}

/// The worker threads and their queues.
struct Pool {
    /// `None` once closed, which ends the workers.
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends each worker after its current block; joining here means no
        // thread outlives the stream. A worker's panic was already reported as an error.
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A stream of blocks compressed by `C` into `W`; see the module documentation.
pub(super) struct Blocks<W: Write, C: Codec> {
    out: W,
    block_size: usize,
    history_len: usize,
    /// The block being filled.
    block: Vec<u8>,
    /// The last `history_len` bytes of the previous block.
    history: Vec<u8>,
    mode: Mode<C>,
    submitted: u64,
    written: u64,
    /// Compressed blocks that finished before an older one, by sequence number.
    ready: BTreeMap<u64, Vec<u8>>,
    /// Emptied block-sized buffers (inputs and outputs) for reuse.
    spare: Vec<Vec<u8>>,
    /// Emptied history buffers for reuse (a list of their own: they are small).
    spare_history: Vec<Vec<u8>>,
    /// The most blocks submitted and not yet written.
    max_in_flight: u64,
}

impl<W: Write, C: Codec> Blocks<W, C> {
    /// A stream into `out` of `block_size`-byte blocks, each given the previous block's last
    /// `history_len` bytes, compressed on `workers` threads made by `codec` (1: inline).
    pub fn new(
        out: W,
        block_size: usize,
        history_len: usize,
        workers: usize,
        mut codec: impl FnMut() -> io::Result<C>,
    ) -> io::Result<Self> {
        let mode = if workers <= 1 {
            Mode::Inline {
                codec: codec()?,
                out: Vec::new(),
            }
        } else {
            let (jobs, job_queue) = mpsc::channel::<Job>();
            let job_queue = Arc::new(Mutex::new(job_queue));
            let (done_tx, done) = mpsc::channel();
            let mut pool = Pool {
                jobs: Some(jobs),
                done,
                threads: Vec::with_capacity(workers),
            };
            for _ in 0..workers {
                let codec = codec()?;
                let queue = Arc::clone(&job_queue);
                let done = done_tx.clone();
                let thread = std::thread::Builder::new()
                    .name("kiln-compress".into())
                    .spawn(move || work(codec, &queue, &done))?;
                pool.threads.push(thread);
            }
            Mode::Pool(pool)
        };
        Ok(Self {
            out,
            block_size,
            history_len,
            block: Vec::with_capacity(block_size),
            history: Vec::new(),
            mode,
            submitted: 0,
            written: 0,
            ready: BTreeMap::new(),
            spare: Vec::new(),
            spare_history: Vec::new(),
            max_in_flight: (workers.max(1) * IN_FLIGHT_PER_WORKER) as u64,
        })
    }

    /// An empty buffer with room for a block, recycled when possible.
    fn buffer(&mut self) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.reserve(self.block_size);
        buf
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        // Every buffer comes back here; the count in use is bounded by the jobs in flight.
        self.spare.push(buf);
    }

    /// Compresses the block being filled (here, or by handing it to a worker).
    fn submit(&mut self) -> io::Result<()> {
        let fresh = self.buffer();
        let block = std::mem::replace(&mut self.block, fresh);
        let mut next_history = self.spare_history.pop().unwrap_or_default();
        next_history.clear();
        next_history.extend_from_slice(&block[block.len().saturating_sub(self.history_len)..]);
        let history = std::mem::replace(&mut self.history, next_history);
        if let Mode::Inline { codec, out } = &mut self.mode {
            out.clear();
            codec.compress(&history, &block, out)?;
            self.out.write_all(out)?;
            self.submitted += 1;
            self.written += 1;
            self.spare_history.push(history);
            self.recycle(block);
            return Ok(());
        }
        while self.submitted - self.written >= self.max_in_flight {
            self.collect()?;
        }
        let job = Job {
            seq: self.submitted,
            history,
            block,
            out: self.buffer(),
        };
        self.submitted += 1;
        let sent = match &self.mode {
            Mode::Pool(pool) => pool.jobs.as_ref().is_some_and(|q| q.send(job).is_ok()),
            Mode::Inline { .. } => false,
        };
        if sent { Ok(()) } else { Err(worker_gone()) }
    }

    /// Waits for one finished block, then writes every block whose turn has come.
    fn collect(&mut self) -> io::Result<()> {
        let Mode::Pool(pool) = &self.mode else {
            return Ok(());
        };
        let done = pool.done.recv().map_err(|_| worker_gone())?;
        self.spare_history.push(done.history);
        self.recycle(done.block);
        self.ready.insert(done.seq, done.out?);
        while let Some(out) = self.ready.remove(&self.written) {
            self.out.write_all(&out)?;
            self.written += 1;
            self.recycle(out);
        }
        Ok(())
    }

    /// Compresses what is left, writes every block and returns the output and the number of
    /// blocks written (0 for an empty stream).
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        if !self.block.is_empty() {
            self.submit()?;
        }
        while self.written < self.submitted {
            self.collect()?;
        }
        // Ends the workers before handing the output back.
        let Self { out, written, .. } = self;
        Ok((out, written))
    }
}

impl<W: Write, C: Codec> Write for Blocks<W, C> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.block_size - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == self.block_size {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A block boundary depends on the byte count alone, never on flushes.
        Ok(())
    }
}

fn worker_gone() -> io::Error {
    io::Error::other("a compression worker stopped")
}

/// A worker: compresses jobs from `queue` until it is closed.
fn work<C: Codec>(mut codec: C, queue: &Mutex<Receiver<Job>>, done: &Sender<Done>) {
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let Job {
            seq,
            history,
            block,
            mut out,
        } = job;
        out.clear();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            codec.compress(&history, &block, &mut out)
        }));
        let (out, stop) = match result {
            Ok(Ok(())) => (Ok(out), false),
            Ok(Err(e)) => (Err(e), false),
            // The codec's state is unknown after a panic: report it and stop this worker.
            Err(_) => (Err(io::Error::other("a compression worker panicked")), true),
        };
        let sent = done.send(Done {
            seq,
            history,
            block,
            out,
        });
        if sent.is_err() || stop {
            return;
        }
    }
}
