//! Content-addressed blobs: streamed into `tmp/` while hashing, verified, fsynced and renamed
//! into `blobs/sha256/<hex>`.
//!
//! A blob file only ever appears under its final name complete and correct. A writer dropped
//! without committing, or a commit that fails verification, removes its temporary file. If the
//! blob is already present (another build, another process), committing keeps the existing file
//! and discards ours: the content is the same by definition. Every writer holds a [`Lease`]
//! until its blob is in place, so gc never runs while a blob is being written, and any
//! `blob-*` file gc finds in `tmp/` belongs to a process that died.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use kiln_registry::{Digest, DigestWriter};
use tempfile::NamedTempFile;

use super::{Lease, Store, StoreError, TMP_BLOB_PREFIX, crash, sync_parent};

/// The write buffer: large enough that hashing and writing run in big chunks (ocidir uses the
/// same size), small enough to be irrelevant in memory.
const BUF_SIZE: usize = 128 * 1024;

/// A blob being written. Write to it, then [`commit`](Self::commit) or
/// [`commit_verified`](Self::commit_verified); dropping it discards what was written.
#[derive(Debug)]
pub struct BlobWriter {
    // Declared before the lease so that, when dropped, the file goes before the lease does.
    inner: DigestWriter<BufWriter<NamedTempFile>>,
    blobs_dir: PathBuf,
    lease: Lease,
}

/// A finished, fsynced temporary file, still under its writer's lease.
struct Finished {
    tmp: NamedTempFile,
    digest: Digest,
    size: u64,
    dest: PathBuf,
    _lease: Lease,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        crash::point(crash::BLOB_WRITE);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.inner.size()
    }

    /// Stores the blob under the digest of what was written; returns the digest and size.
    pub fn commit(self) -> Result<(Digest, u64), StoreError> {
        let done = self.finish()?;
        persist(done.tmp, &done.dest)?;
        Ok((done.digest, done.size))
    }

    /// Stores the blob only if it has exactly the expected size and digest; otherwise returns
    /// [`StoreError::SizeMismatch`] or [`StoreError::DigestMismatch`] and keeps nothing.
    pub fn commit_verified(self, expected: &Digest, size: u64) -> Result<(), StoreError> {
        let done = self.finish()?;
        // On either mismatch `done.tmp` is dropped on return, which deletes it.
        if done.size != size {
            return Err(StoreError::SizeMismatch {
                digest: expected.clone(),
                expected: size,
                found: done.size,
            });
        }
        if &done.digest != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                found: done.digest,
            });
        }
        persist(done.tmp, &done.dest)
    }

    /// Flushes and fsyncs the temporary file; returns it with what it hashed to.
    fn finish(self) -> Result<Finished, StoreError> {
        let (buffered, digest, size) = self.inner.finish();
        let tmp = buffered.into_inner().map_err(|e| {
            // Dropping the writer after taking its path deletes the temporary file.
            let (err, writer) = e.into_parts();
            StoreError::io("write", writer.get_ref().path())(err)
        })?;
        tmp.as_file()
            .sync_all()
            .map_err(StoreError::io("sync", tmp.path()))?;
        crash::point(crash::BLOB_SYNCED);
        Ok(Finished {
            tmp,
            dest: self.blobs_dir.join(digest.hex()),
            digest,
            size,
            _lease: self.lease,
        })
    }
}

/// Renames a verified, fsynced temporary file to `dest`, keeping an existing `dest`.
fn persist(tmp: NamedTempFile, dest: &Path) -> Result<(), StoreError> {
    match tmp.persist_noclobber(dest) {
        Ok(_) => {
            crash::point(crash::BLOB_RENAMED);
            sync_parent(dest)
        }
        // Already stored: same digest, same bytes. Dropping `e.file` removes ours.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::io("rename into", dest)(e.error)),
    }
}

impl Store {
    /// A writer for a new blob, streaming into a temporary file in `tmp/`. Waits while gc runs.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let lease = self.lease()?;
        let tmp_dir = self.tmp_dir();
        let file = tempfile::Builder::new()
            .prefix(TMP_BLOB_PREFIX)
            .tempfile_in(&tmp_dir)
            .map_err(StoreError::io("create a temporary file in", &tmp_dir))?;
        Ok(BlobWriter {
            inner: DigestWriter::new(BufWriter::with_capacity(BUF_SIZE, file)),
            blobs_dir: self.blobs_dir(),
            lease,
        })
    }

    /// Stores a small blob held in memory (a config, a manifest); returns its digest and size.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<(Digest, u64), StoreError> {
        let digest = Digest::of(bytes);
        if self.has_blob(&digest) {
            return Ok((digest, bytes.len() as u64));
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(StoreError::io("write", &self.tmp_dir()))?;
        w.commit_verified(&digest, bytes.len() as u64)?;
        Ok((digest, bytes.len() as u64))
    }

    /// Where the blob with this digest lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Whether the blob is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading. The caller streams it; [`Store::verify`] re-hashes blobs, and
    /// readers that need certainty hash what they read (see [`Store::read_blob`]).
    ///
    /// A remote blob ([`super::remote`]) is fetched first, verified, and then opened.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        let opened = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.remote(digest).is_some() => {
                self.fetch_remote(digest)?;
                File::open(&path)
            }
            opened => opened,
        };
        opened.map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob {
                    digest: digest.clone(),
                }
            } else {
                StoreError::io("open", &path)(e)
            }
        })
    }

    /// Reads a small blob into memory, refusing one over `limit` bytes, and verifies its digest.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, StoreError> {
        let file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(StoreError::io("read", &self.blob_path(digest)))?;
        if bytes.len() as u64 > limit {
            return Err(StoreError::TooLarge {
                digest: digest.clone(),
                limit,
            });
        }
        let found = Digest::of(&bytes);
        if &found != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                found,
            });
        }
        Ok(bytes)
    }
}
