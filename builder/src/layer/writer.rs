//! The layer writer: change set → tar → diffID, compressed blob → digest, in one pass.
//!
//! Bytes flow `tar entries → sha256 (diffID) → compressor → sha256 + byte count (digest, size)
//! → output`; [`write_layer`] produces the tar entries on a thread of its own, the compressor
//! has its workers, and the two hashes run on the caller's thread. Every header is built by [`super::header`] from the entry's metadata alone;
//! file contents are streamed with exactly the size recorded in the header, and a file that
//! grows, shrinks or is replaced meanwhile is an error rather than a tar whose digest describes
//! other bytes than the header promised. Hard links (same device and inode within the layer)
//! become `Link` entries to the first path written. Extended attributes are carried except
//! overlayfs's own (`trusted.overlay.*`, `user.overlay.*`) and `security.selinux` (a label of the
//! build host, which the runtime assigns anew; carrying it would make layers host-dependent).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};

use kiln_registry::{Digest, DigestWriter};
use rustix::fs::{Mode, OFlags};

use super::compress::{CompressWriter, decompress};
use super::header::{self, EntryHeader, Kind};
use super::walk::{Item, OVERLAY_XATTR_PREFIXES, Walk};
use super::{Compression, LayerError, LayerInfo, LayerOptions};

/// Buffer between the hashing compressor and the caller's writer.
const OUT_BUFFER: usize = 256 * 1024;
/// Read size when copying file contents and streams.
const COPY_BUFFER: usize = 128 * 1024;
/// Size of the pieces the tar producer hands to the hashing and compressing thread.
const CHUNK: usize = 256 * 1024;
/// Chunks produced but not yet consumed: enough to ride out a slow file or a busy consumer
/// while bounding memory to about a megabyte.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The end of a tar archive: two zero blocks.
const END_OF_ARCHIVE: [u8; 1024] = [0; 1024];
/// Extended attributes never written to a layer besides overlayfs's own (see the module doc).
const DROPPED_XATTRS: [&[u8]; 1] = [b"security.selinux"];

/// The hashing pipeline: what the tar is written into, and how to close it.
struct Pipeline<W: Write> {
    tar: DigestWriter<CompressWriter<Blob<BufWriter<W>>>>,
    compression: Compression,
}

/// The blob's end of the pipeline. An uncompressed blob is the tar itself, so its digest is the
/// diffID already computed and hashing it a second time would only cost time: it is counted.
enum Blob<W: Write> {
    Hashed(DigestWriter<W>),
    Counted(W, u64),
}

impl<W: Write> Write for Blob<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Blob::Hashed(w) => w.write(buf),
            Blob::Counted(w, size) => {
                let n = w.write(buf)?;
                *size += n as u64;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Blob::Hashed(w) => w.flush(),
            Blob::Counted(w, _) => w.flush(),
        }
    }
}

impl<W: Write> Pipeline<W> {
    fn new(out: W, compression: Compression) -> Result<Self, LayerError> {
        let buffered = BufWriter::with_capacity(OUT_BUFFER, out);
        let blob = match compression {
            Compression::None => Blob::Counted(buffered, 0),
            Compression::Gzip | Compression::Zstd => Blob::Hashed(DigestWriter::new(buffered)),
        };
        let compressor = CompressWriter::new(blob, compression).map_err(LayerError::Write)?;
        Ok(Self {
            tar: DigestWriter::new(compressor),
            compression,
        })
    }

    fn finish(self) -> Result<LayerInfo, LayerError> {
        let (compressor, diff_id, _) = self.tar.finish();
        let blob = compressor.finish().map_err(LayerError::Write)?;
        let (buffered, digest, size) = match blob {
            Blob::Hashed(w) => w.finish(),
            Blob::Counted(w, size) => (w, diff_id.clone(), size),
        };
        let mut out = buffered
            .into_inner()
            .map_err(|e| LayerError::Write(e.into_error()))?;
        out.flush().map_err(LayerError::Write)?;
        Ok(LayerInfo {
            diff_id,
            digest,
            size,
            media_type: self.compression.media_type(),
        })
    }
}

/// Writes the change set at `root` as a layer blob into `out` and returns its identifiers.
///
/// The tar is produced on a thread of its own (walking, reading files, building headers) and
/// handed over in [`CHUNK`]-sized pieces, so its system calls overlap with the hashing on this
/// thread and the compression on the workers; with many small files the producer would
/// otherwise leave the compression workers waiting.
pub fn write_layer<W: Write>(
    root: &Path,
    options: &LayerOptions,
    out: W,
) -> Result<LayerInfo, LayerError> {
    let mut pipeline = Pipeline::new(out, options.compression)?;
    let mut walk = Walk::new(root, options.kind)?;
    let epoch = options.source_date_epoch;
    std::thread::scope(|scope| {
        let (chunks, received) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        let (spare, spares) = mpsc::channel();
        let producer = std::thread::Builder::new()
            .name("kiln-tar".into())
            .spawn_scoped(scope, move || {
                let mut sink = ChunkSender {
                    chunk: Vec::with_capacity(CHUNK),
                    chunks,
                    spares,
                };
                let mut entries = EntryWriter::new(&mut sink, epoch);
                while let Some(item) = walk.next_item() {
                    entries.write_item(item?)?;
                }
                sink.write_all(&END_OF_ARCHIVE)
                    .and_then(|()| sink.send())
                    .map_err(LayerError::Write)
            })
            .map_err(LayerError::Write)?;
        // Stops at the producer's end (it drops its sender), whether it finished or failed.
        let mut written = Ok(());
        for chunk in received {
            written = pipeline.tar.write_all(&chunk).map_err(LayerError::Write);
            if written.is_err() {
                // Dropping the receiver makes the producer's next send fail, ending it.
                break;
            }
            // The producer may have finished and gone: then the buffer is simply dropped.
            let _ = spare.send(chunk);
        }
        let produced = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // Our write error explains the producer's (a closed channel), not the reverse.
        written?;
        produced
    })?;
    pipeline.finish()
}

/// The producer's end of the tar hand-over: bytes are gathered into chunks and sent, and the
/// consumer's emptied chunks come back for reuse.
struct ChunkSender {
    chunk: Vec<u8>,
    chunks: SyncSender<Vec<u8>>,
    spares: Receiver<Vec<u8>>,
}

impl ChunkSender {
    /// Sends the chunk being filled, if any.
    fn send(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let next = match self.spares.try_recv() {
            Ok(mut spare) => {
                spare.clear();
                spare
            }
            Err(_) => Vec::with_capacity(CHUNK),
        };
        let full = std::mem::replace(&mut self.chunk, next);
        self.chunks
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the layer writer stopped"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Turns an existing uncompressed tar stream (e.g. from `kiln import`) into a layer blob: the
/// bytes are kept as they are, hashed for the diffID, compressed and hashed again.
pub fn layer_from_tar<R: Read, W: Write>(
    mut tar: R,
    compression: Compression,
    out: W,
) -> Result<LayerInfo, LayerError> {
    let mut pipeline = Pipeline::new(out, compression)?;
    copy_stream(&mut tar, &mut pipeline.tar)?;
    pipeline.finish()
}

/// Recomputes the diffID of a layer blob (gzip, zstd or plain tar, detected by magic bytes).
pub fn diff_id_of<R: BufRead>(blob: R) -> Result<Digest, LayerError> {
    let mut reader = decompress(blob).map_err(LayerError::Stream)?;
    let mut hasher = DigestWriter::new(io::sink());
    copy_stream(&mut reader, &mut hasher)?;
    Ok(hasher.finish().1)
}

/// Copies `from` to `to`, telling read errors (the stream) from write errors (the output).
fn copy_stream(from: &mut dyn Read, to: &mut dyn Write) -> Result<(), LayerError> {
    let mut buf = vec![0; COPY_BUFFER];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LayerError::Stream(e)),
        };
        to.write_all(&buf[..n]).map_err(LayerError::Write)?;
    }
}

/// Writes walk items as tar entries.
struct EntryWriter<W: Write> {
    out: W,
    epoch: Option<i64>,
    /// First tar path written for each (device, inode) with more than one link.
    links: HashMap<(u64, u64), Vec<u8>>,
    header: Vec<u8>,
    copy: Vec<u8>,
}

impl<W: Write> EntryWriter<W> {
    fn new(out: W, epoch: Option<i64>) -> Self {
        EntryWriter {
            out,
            epoch,
            links: HashMap::new(),
            header: Vec::with_capacity(2 * header::BLOCK),
            copy: vec![0; COPY_BUFFER],
        }
    }

    fn write_item(&mut self, item: Item) -> Result<(), LayerError> {
        self.write_item_with(item, &mut |_| {})
    }

    /// Writes one item, letting `adjust` change its header (path, owner, mode) first.
    fn write_item_with(
        &mut self,
        item: Item,
        adjust: &mut dyn FnMut(&mut EntryHeader),
    ) -> Result<(), LayerError> {
        let (fs_path, tar_path, meta, xattrs) = match item {
            Item::Whiteout { tar_path } => {
                // Whiteouts carry no metadata of their own; zero times keep them reproducible.
                return self.write_header(&EntryHeader::new(tar_path, Kind::Regular));
            }
            Item::Entry {
                fs_path,
                tar_path,
                meta,
                xattrs,
            } => (fs_path, tar_path, meta, xattrs),
        };
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_symlink() {
            Kind::Symlink
        } else if file_type.is_char_device() {
            Kind::Char
        } else if file_type.is_block_device() {
            Kind::Block
        } else if file_type.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Regular
        };
        let mut h = EntryHeader::new(tar_path, kind);
        h.mode = meta.mode() & 0o7777;
        h.uid = u64::from(meta.uid());
        h.gid = u64::from(meta.gid());
        h.mtime = clamp(meta.mtime(), self.epoch);
        h.xattrs = layer_xattrs(&fs_path, xattrs)?;
        adjust(&mut h);

        if kind != Kind::Dir && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                h.kind = Kind::Hardlink;
                h.link = first.clone();
                return self.write_header(&h);
            }
            self.links.insert(key, h.path.clone());
        }

        match kind {
            Kind::Symlink => {
                let target = std::fs::read_link(&fs_path).map_err(|e| read_error(&fs_path, e))?;
                h.link = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()).to_vec();
            }
            Kind::Char | Kind::Block => {
                h.dev_major = rustix::fs::major(meta.rdev());
                h.dev_minor = rustix::fs::minor(meta.rdev());
            }
            Kind::Regular => {
                h.size = meta.len();
                let file = open_same_file(&fs_path, &meta)?;
                self.write_header(&h)?;
                return self.write_content(&fs_path, file, h.size);
            }
            Kind::Dir | Kind::Fifo | Kind::Hardlink => {}
        }
        self.write_header(&h)
    }

    fn write_header(&mut self, h: &EntryHeader) -> Result<(), LayerError> {
        self.header.clear();
        header::encode(h, &mut self.header);
        self.out.write_all(&self.header).map_err(LayerError::Write)
    }

    /// Streams exactly `size` bytes of `file` and the padding to the next block.
    fn write_content(&mut self, path: &Path, mut file: File, size: u64) -> Result<(), LayerError> {
        let mut left = size;
        while left > 0 {
            let want = self
                .copy
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.copy[..want]) {
                Ok(0) => return Err(changed(path)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(path, e)),
            };
            self.out
                .write_all(&self.copy[..n])
                .map_err(LayerError::Write)?;
            left -= n as u64;
        }
        // A file that grew after its size was recorded would be cut short silently.
        let mut probe = [0u8; 1];
        match file.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => return Err(changed(path)),
            Err(e) => return Err(read_error(path, e)),
        }
        let rem = (size % header::BLOCK as u64) as usize;
        if rem != 0 {
            let zeros = [0u8; header::BLOCK];
            self.out
                .write_all(&zeros[..header::BLOCK - rem])
                .map_err(LayerError::Write)?;
        }
        Ok(())
    }
}

/// A tar stream for file operations (COPY, ADD): entries read from disk and placed at any path,
/// headers adjustable by the caller, with the layer writer's header rules (explicit fields, PAX,
/// hardlinks within the stream). The stream is meant for [`super::apply_layer`].
pub(crate) struct TarBuilder<W: Write> {
    entries: EntryWriter<W>,
}

impl<W: Write> TarBuilder<W> {
    /// A builder writing to `out`.
    pub fn new(out: W) -> Self {
        TarBuilder {
            entries: EntryWriter::new(out, None),
        }
    }

    /// Appends the entry at `fs_path` itself (a directory's contents are not included).
    pub fn append_path(
        &mut self,
        fs_path: &Path,
        tar_path: Vec<u8>,
        adjust: &mut dyn FnMut(&mut EntryHeader),
    ) -> Result<(), LayerError> {
        let meta = std::fs::symlink_metadata(fs_path).map_err(|e| read_error(fs_path, e))?;
        let xattrs = super::walk::read_xattrs(fs_path).map_err(|e| read_error(fs_path, e))?;
        let item = Item::Entry {
            fs_path: fs_path.to_owned(),
            tar_path,
            meta: Box::new(meta),
            xattrs,
        };
        self.entries.write_item_with(item, adjust)
    }

    /// Appends everything below the directory `fs_dir`, each at `tar_prefix/<relative path>`.
    /// `include` sees the path relative to `fs_dir` and decides; `adjust` sees each header.
    pub fn append_contents(
        &mut self,
        fs_dir: &Path,
        tar_prefix: &[u8],
        include: &mut dyn FnMut(&[u8]) -> bool,
        adjust: &mut dyn FnMut(&mut EntryHeader),
    ) -> Result<(), LayerError> {
        let mut walk = Walk::new(fs_dir, super::ChangeKind::Tree)?;
        while let Some(item) = walk.next_item() {
            let mut item = item?;
            let Item::Entry { tar_path, .. } = &mut item else {
                continue;
            };
            if !include(tar_path) {
                continue;
            }
            let mut placed = tar_prefix.to_vec();
            if !placed.is_empty() {
                placed.push(b'/');
            }
            placed.extend_from_slice(tar_path);
            *tar_path = placed;
            self.entries.write_item_with(item, adjust)?;
        }
        Ok(())
    }

    /// Appends a header with no content (a directory, say) or with `data` (a regular file).
    pub fn append_header(&mut self, mut h: EntryHeader, data: &[u8]) -> Result<(), LayerError> {
        h.size = data.len() as u64;
        self.entries.write_header(&h)?;
        self.entries
            .out
            .write_all(data)
            .map_err(LayerError::Write)?;
        let rem = data.len() % header::BLOCK;
        if rem != 0 {
            self.entries
                .out
                .write_all(&[0u8; header::BLOCK][..header::BLOCK - rem])
                .map_err(LayerError::Write)?;
        }
        Ok(())
    }

    /// Ends the archive and returns the output.
    pub fn finish(mut self) -> Result<W, LayerError> {
        self.entries
            .out
            .write_all(&END_OF_ARCHIVE)
            .map_err(LayerError::Write)?;
        Ok(self.entries.out)
    }
}

/// `mtime`, or `epoch` when it is later than `epoch` (BuildKit's `rewrite-timestamp` rule).
pub(crate) fn clamp(mtime: i64, epoch: Option<i64>) -> i64 {
    match epoch {
        Some(epoch) if mtime > epoch => epoch,
        _ => mtime,
    }
}

fn read_error(path: &Path, source: io::Error) -> LayerError {
    LayerError::Read {
        path: path.to_owned(),
        source,
    }
}

fn changed(path: &Path) -> LayerError {
    LayerError::Changed {
        path: path.to_owned(),
    }
}

/// Opens a regular file without following a symlink and checks it is still the file that
/// was listed.
pub(crate) fn open_same_file(path: &Path, meta: &std::fs::Metadata) -> Result<File, LayerError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| read_error(path, e.into()))?;
    let file = File::from(fd);
    let now = file.metadata().map_err(|e| read_error(path, e))?;
    if !now.is_file()
        || now.dev() != meta.dev()
        || now.ino() != meta.ino()
        || now.len() != meta.len()
    {
        return Err(changed(path));
    }
    Ok(file)
}

/// The extended attributes to write for an entry, as PAX-safe names.
fn layer_xattrs(
    path: &Path,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, LayerError> {
    let mut out = BTreeMap::new();
    for (name, value) in xattrs {
        if OVERLAY_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
            || DROPPED_XATTRS.contains(&name.as_slice())
        {
            continue;
        }
        let name = String::from_utf8(name).map_err(|e| LayerError::XattrName {
            path: path.to_owned(),
            name: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })?;
        // A PAX record is `key=value`: a key with `=` or a newline would be misread.
        if name.contains(['=', '\n']) {
            return Err(LayerError::XattrName {
                path: path.to_owned(),
                name,
            });
        }
        out.insert(name, value);
    }
    Ok(out)
}
