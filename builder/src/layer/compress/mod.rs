//! Layer compression (gzip and zstd on several cores, none) and decompression by magic bytes.
//!
//! Both compressors cut the uncompressed stream into fixed-size blocks and compress them on
//! worker threads ([`blocks`]); cut points and each block's input depend on the data alone, so
//! the bytes are identical whatever the number of workers or cores.
//!
//! gzip is written pigz-style: each [`GZIP_BLOCK`] is raw deflate primed with the previous
//! block's last 32 KiB as dictionary and ended with a full flush, so the pieces concatenate into
//! one valid deflate stream; then an empty final block and the gzip trailer (CRC-32 and length
//! of the uncompressed bytes, computed on the producer's thread).
//!
//! zstd compresses each [`ZSTD_BLOCK`] as an independent frame (content size and checksum
//! included) and concatenates the frames, which RFC 8878 §3 defines as a valid stream and every
//! zstd decoder reads (libzstd, Go's klauspost/compress in containerd, the `zstd` tool). libzstd's
//! own multithreading is not used: with a fixed worker count it still gave different bytes
//! pinned to one core than on two, so digests would depend on the machine. Independent frames
//! cost almost nothing in ratio at this block size (the window is the block).
//!
//! Decompression detects gzip (`1f 8b`) and zstd (`28 b5 2f fd`) by their magic; anything else is
//! read as a plain tar.

mod blocks;

use std::io::{self, BufRead, Read, Write};

use flate2::{Compress, Crc, FlushCompress, Status};

use self::blocks::{Blocks, Codec};
use super::Compression;

/// gzip compression level. Not gzip's and pigz's default 6: with zlib-rs, level 5 compresses
/// 1.4x (a Debian base) to 2.3x (text-heavy trees) faster for 0.2% to 2.8% more bytes, and its
/// layers are still smaller than buildah's (containers/image's pgzip at its default level):
/// measured with `examples/bench_layers` and pushes of the bench's images, see bench/README.md.
/// Changing it changes every gzip layer digest.
pub const GZIP_LEVEL: u32 = 5;
/// zstd compression level: zstd's default, what BuildKit uses for `compression=zstd`.
pub const ZSTD_LEVEL: i32 = 3;
/// Size of a gzip block compressed on its own. Larger blocks lose less ratio at the block
/// boundaries (pigz uses 128 KiB and primes with a dictionary as we do); 1 MiB keeps the loss
/// negligible, amortises the per-block hand-off and still bounds memory to a few MiB.
/// Changing it changes every gzip layer digest.
pub(crate) const GZIP_BLOCK: usize = 1 << 20;
/// Size of a zstd block, compressed as a frame of its own. 2 MiB is level 3's window, so a
/// frame boundary loses only back-references that reach into the previous block; measured on
/// the bench tree, the output is within 0.1% of one single frame. Changing it changes every
/// zstd layer digest.
pub(crate) const ZSTD_BLOCK: usize = 2 << 20;
/// deflate's window: the most history a back-reference can reach, so the useful dictionary.
const DEFLATE_WINDOW: usize = 32 * 1024;
/// At most this many workers, whatever the machine: more gain little over the tar and
/// hashing work of the single producer and cost blocks of memory each.
const MAX_WORKERS: usize = 8;
/// The gzip member header: magic, deflate, no flags, mtime 0, XFL 0 (a level between fast and
/// best), OS 255 ("unknown"). Byte-identical to what flate2's `GzBuilder` writes at levels 2–8.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The default number of workers: the available cores, capped.
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_WORKERS)
}

/// A writer that compresses what it is given into `W`; call [`CompressWriter::finish`] to end
/// the stream and get `W` back.
pub struct CompressWriter<W: Write> {
    inner: Inner<W>,
}

impl<W: Write> std::fmt::Debug for CompressWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::None(_) => Compression::None,
            Inner::Gzip(_) => Compression::Gzip,
            Inner::Zstd(_) => Compression::Zstd,
        };
        f.debug_struct("CompressWriter")
            .field("compression", &kind)
            .finish_non_exhaustive()
    }
}

enum Inner<W: Write> {
    None(W),
    Gzip(Box<Gzip<W>>),
    Zstd(Box<Blocks<W, ZstdCodec>>),
}

impl<W: Write> CompressWriter<W> {
    /// Compresses into `out` on as many workers as there are cores (up to 8).
    pub fn new(out: W, compression: Compression) -> io::Result<Self> {
        Self::with_workers(out, compression, default_workers())
    }

    /// Compresses into `out` with exactly `workers` threads (1 compresses inline). The bytes
    /// written do not depend on `workers`.
    pub fn with_workers(mut out: W, compression: Compression, workers: usize) -> io::Result<Self> {
        let inner = match compression {
            Compression::None => Inner::None(out),
            Compression::Gzip => {
                out.write_all(&GZIP_HEADER)?;
                let blocks = Blocks::new(out, GZIP_BLOCK, DEFLATE_WINDOW, workers, GzipCodec::new)?;
                Inner::Gzip(Box::new(Gzip {
                    blocks,
                    crc: Crc::new(),
                }))
            }
            Compression::Zstd => Inner::Zstd(Box::new(Blocks::new(
                out,
                ZSTD_BLOCK,
                0,
                workers,
                ZstdCodec::new,
            )?)),
        };
        Ok(Self { inner })
    }

    /// Ends the compressed stream and returns the output writer.
    pub fn finish(self) -> io::Result<W> {
        let mut out = match self.inner {
            Inner::None(out) => out,
            Inner::Gzip(gz) => gz.finish()?,
            Inner::Zstd(blocks) => {
                let (mut out, frames) = blocks.finish()?;
                if frames == 0 {
                    // An empty stream is still one (empty) frame.
                    let mut frame = Vec::new();
                    ZstdCodec::new()?.compress(&[], &[], &mut frame)?;
                    out.write_all(&frame)?;
                }
                out
            }
        };
        out.flush()?;
        Ok(out)
    }
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::None(out) => out.write(buf),
            Inner::Gzip(gz) => {
                let n = gz.blocks.write(buf)?;
                gz.crc.update(&buf[..n]);
                Ok(n)
            }
            Inner::Zstd(blocks) => blocks.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Compressed streams are flushed by `finish`; flushing mid-stream would change the
        // bytes (a gzip sync point, a zstd block end) and so the digest.
        match &mut self.inner {
            Inner::None(out) => out.flush(),
            Inner::Gzip(_) | Inner::Zstd(_) => Ok(()),
        }
    }
}

/// pigz-style gzip: see the module documentation. The header is written on creation.
struct Gzip<W: Write> {
    blocks: Blocks<W, GzipCodec>,
    crc: Crc,
}

impl<W: Write> Gzip<W> {
    fn finish(self) -> io::Result<W> {
        let (mut out, _) = self.blocks.finish()?;
        out.write_all(&final_empty_block()?)?;
        out.write_all(&self.crc.sum().to_le_bytes())?;
        out.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(out)
    }
}

/// A gzip block: raw deflate, primed with the history, ending in a full flush.
struct GzipCodec {
    deflate: Compress,
}

impl GzipCodec {
    fn new() -> io::Result<Self> {
        Ok(Self {
            deflate: Compress::new(flate2::Compression::new(GZIP_LEVEL), false),
        })
    }
}

impl Codec for GzipCodec {
    fn compress(&mut self, history: &[u8], block: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        // A reset compressor is a fresh one: each block's bytes depend on its input alone.
        self.deflate.reset();
        if !history.is_empty() {
            self.deflate
                .set_dictionary(history)
                .map_err(deflate_error)?;
        }
        run_deflate(&mut self.deflate, block, FlushCompress::Full, out)
    }
}

/// A zstd block: one complete frame with its content size and checksum.
struct ZstdCodec {
    zstd: zstd::bulk::Compressor<'static>,
}

impl ZstdCodec {
    fn new() -> io::Result<Self> {
        let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
        zstd.include_checksum(true)?;
        zstd.include_contentsize(true)?;
        Ok(Self { zstd })
    }
}

impl Codec for ZstdCodec {
    fn compress(&mut self, _history: &[u8], block: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        out.reserve(zstd::compress_bound(block.len()));
        self.zstd.compress_to_buffer(block, out)?;
        Ok(())
    }
}

fn deflate_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("deflate: {e}"))
}

/// The deflate bytes of an empty final block, which ends the stream.
fn final_empty_block() -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    let mut out = Vec::new();
    run_deflate(&mut c, &[], FlushCompress::Finish, &mut out)?;
    Ok(out)
}

/// Feeds all of `input` to `c` with `flush`, appending to `out` until deflate is done.
fn run_deflate(
    c: &mut Compress,
    input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    // deflate's worst case is a little over the input size; start there and grow if needed.
    out.reserve(input.len() + input.len() / 64 + 64);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(64));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(&input[consumed..], out, flush)
            .map_err(deflate_error)?;
        consumed += (c.total_in() - before) as usize;
        let all_in = consumed == input.len();
        match (flush, status) {
            (FlushCompress::Finish, Status::StreamEnd) => return Ok(()),
            (FlushCompress::Finish, _) => {}
            // A flush is complete once all input is consumed and deflate left output space
            // unused (zlib's rule: avail_out != 0 means nothing is pending).
            (_, _) if all_in && out.len() < out.capacity() => return Ok(()),
            _ => {}
        }
    }
}

/// A reader of a layer blob's uncompressed bytes, whatever its compression.
pub struct Decompressor<R: BufRead> {
    compression: Compression,
    inner: DecompressorInner<R>,
}

type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

enum DecompressorInner<R: BufRead> {
    Plain(Peeked<R>),
    Gzip(GzipMembers<Peeked<R>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, Peeked<R>>>),
}

impl<R: BufRead> std::fmt::Debug for Decompressor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> Decompressor<R> {
    /// The compression detected from the magic bytes.
    pub fn compression(&self) -> Compression {
        self.compression
    }
}

impl<R: BufRead> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            DecompressorInner::Plain(r) => r.read(buf),
            DecompressorInner::Gzip(r) => r.read(buf),
            DecompressorInner::Zstd(r) => r.read(buf),
        }
    }
}

/// Detects the compression of `blob` from its first bytes and returns a reader of the
/// uncompressed stream.
pub fn decompress<R: BufRead>(mut blob: R) -> io::Result<Decompressor<R>> {
    // Read the magic with a loop, not one `fill_buf`: a reader may hand out fewer than four
    // bytes at a time.
    let mut magic = Vec::with_capacity(ZSTD_MAGIC.len());
    while magic.len() < ZSTD_MAGIC.len() {
        let available = blob.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let n = available.len().min(ZSTD_MAGIC.len() - magic.len());
        magic.extend_from_slice(&available[..n]);
        blob.consume(n);
    }
    let compression = if magic.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if magic.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let peeked = io::Cursor::new(magic).chain(blob);
    let inner = match compression {
        Compression::None => DecompressorInner::Plain(peeked),
        Compression::Gzip => DecompressorInner::Gzip(GzipMembers::new(peeked)),
        Compression::Zstd => {
            DecompressorInner::Zstd(Box::new(zstd::stream::read::Decoder::with_buffer(peeked)?))
        }
    };
    Ok(Decompressor { compression, inner })
}

/// A multi-member gzip reader (as `flate2::bufread::MultiGzDecoder`) that also accepts zero
/// padding after the last member: Go's reader and `MultiGzDecoder` reject it, but such blobs
/// exist and are digest-verified as a whole, so the padding is harmless (reliability.md
/// T-ADD-03). Any other trailing byte is an error.
struct GzipMembers<R: BufRead> {
    state: GzipState<R>,
}

enum GzipState<R: BufRead> {
    Member(Box<flate2::bufread::GzDecoder<R>>),
    Done,
    /// Transient, while moving the reader between states.
    Empty,
}

impl<R: BufRead> GzipMembers<R> {
    fn new(r: R) -> Self {
        Self {
            state: GzipState::Member(Box::new(flate2::bufread::GzDecoder::new(r))),
        }
    }
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let decoder = match &mut self.state {
                GzipState::Member(d) => d,
                GzipState::Done | GzipState::Empty => return Ok(0),
            };
            let n = decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            // The member ended: what follows decides whether another one starts.
            let GzipState::Member(decoder) = std::mem::replace(&mut self.state, GzipState::Empty)
            else {
                return Ok(0);
            };
            let mut r = decoder.into_inner();
            let next = r.fill_buf()?;
            if next.is_empty() {
                self.state = GzipState::Done;
                return Ok(0);
            }
            if next[0] == GZIP_MAGIC[0] {
                self.state = GzipState::Member(Box::new(flate2::bufread::GzDecoder::new(r)));
                continue;
            }
            loop {
                let rest = r.fill_buf()?;
                if rest.is_empty() {
                    break;
                }
                if rest.iter().any(|&b| b != 0) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "trailing data after the gzip stream",
                    ));
                }
                let n = rest.len();
                r.consume(n);
            }
            self.state = GzipState::Done;
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests;
