//! A streaming check that bytes form a tar archive, applied while a rootfs tarball is imported
//! as a layer: the bytes pass through unchanged, and a reader that is not a tar, or a tar cut
//! short, is an error instead of a layer nothing can unpack.
//!
//! The rules are those of Go's `archive/tar` reader, which Docker and containerd unpack layers
//! with: every header's checksum must match (the unsigned or the historical signed sum); sizes
//! are octal or base-256; link, symlink, device, directory and fifo entries have no data
//! whatever their size field says; a PAX `size` record overrides the next entry's size; old GNU
//! sparse headers may be followed by extension blocks. The archive ends at end of input on a
//! header boundary, after one zero block, or after two zero blocks (anything after those is
//! ignored); a zero block followed by a non-zero block, or input that ends inside a header or
//! an entry's data, is an error. Only a PAX header's data is held in memory, and at most
//! [`MAX_PAX_BYTES`] of it.

use std::io::{self, Read};

/// A tar block.
const BLOCK: usize = 512;
/// The most PAX header data kept to look for a `size` record (Go's reader allows 1 MiB).
pub const MAX_PAX_BYTES: u64 = 1 << 20;

/// Why the bytes are not a tar archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarCheckError {
    /// A header block's checksum does not match its contents: not a tar, or corrupt.
    #[error("bad tar header checksum at byte {offset}")]
    Checksum {
        /// Where the header starts.
        offset: u64,
    },
    /// A size field is neither octal nor base-256, or is negative.
    #[error("invalid size in the tar header at byte {offset}")]
    Size {
        /// Where the header starts.
        offset: u64,
    },
    /// A PAX extended header is malformed or too large.
    #[error("invalid PAX header at byte {offset}")]
    Pax {
        /// Where the header starts.
        offset: u64,
    },
    /// A zero block is followed by a non-zero block.
    #[error("data after the end-of-archive block at byte {offset}")]
    AfterEnd {
        /// Where the non-zero block starts.
        offset: u64,
    },
    /// The input ends inside a header or inside an entry's data.
    #[error("the tar archive is truncated at byte {offset}")]
    Truncated {
        /// How many bytes there were.
        offset: u64,
    },
}

/// Where the checker is in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Collecting a header block; `zeros` is how many zero blocks came just before.
    Header { zeros: u8 },
    /// Skipping `remaining` bytes of data and padding.
    Data { remaining: u64 },
    /// Collecting a PAX header's `data` bytes, then skipping `padding`.
    Pax { data: u64, padding: u64 },
    /// Collecting old GNU sparse extension blocks.
    SparseExtension,
    /// After the end of the archive: everything is ignored.
    End,
}

/// The checker: feed it every byte of the stream in order, then [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct TarCheck {
    state: State,
    /// Bytes fed so far.
    offset: u64,
    /// The block being collected (headers and sparse extensions).
    block: Vec<u8>,
    /// Where the block being collected starts.
    block_start: u64,
    /// The PAX data being collected.
    pax: Vec<u8>,
    /// A size from a PAX record, for the next entry.
    pax_size: Option<u64>,
    /// The data size of an old GNU sparse entry whose extension blocks are being read.
    pending_sparse_size: u64,
}

impl Default for TarCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl TarCheck {
    /// A checker at the start of an archive.
    pub fn new() -> Self {
        Self {
            state: State::Header { zeros: 0 },
            offset: 0,
            block: Vec::with_capacity(BLOCK),
            block_start: 0,
            pax: Vec::new(),
            pax_size: None,
            pending_sparse_size: 0,
        }
    }

    /// Checks the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), TarCheckError> {
        while !bytes.is_empty() {
            let used = match self.state.clone() {
                State::End => bytes.len(),
                State::Data { remaining } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::Header { zeros: 0 }
                    } else {
                        State::Data { remaining: left }
                    };
                    n
                }
                State::Pax { data, padding } => {
                    let n = usize::try_from(data).unwrap_or(usize::MAX).min(bytes.len());
                    self.pax.extend_from_slice(&bytes[..n]);
                    let left = data - n as u64;
                    if left == 0 {
                        self.pax_size = pax_size(&self.pax).map_err(|()| TarCheckError::Pax {
                            offset: self.block_start,
                        })?;
                        self.pax.clear();
                        self.state = if padding == 0 {
                            State::Header { zeros: 0 }
                        } else {
                            State::Data { remaining: padding }
                        };
                    } else {
                        self.state = State::Pax {
                            data: left,
                            padding,
                        };
                    }
                    n
                }
                State::Header { .. } | State::SparseExtension => {
                    if self.block.is_empty() {
                        self.block_start = self.offset;
                    }
                    let n = (BLOCK - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..n]);
                    if self.block.len() == BLOCK {
                        let block = std::mem::take(&mut self.block);
                        self.block_done(&block)?;
                        self.block = block;
                        self.block.clear();
                    }
                    n
                }
            };
            self.offset += used as u64;
            bytes = &bytes[used..];
        }
        Ok(())
    }

    /// Checks that the stream ended where an archive may end.
    pub fn finish(&self) -> Result<(), TarCheckError> {
        match self.state {
            State::End => Ok(()),
            State::Header { .. } if self.block.is_empty() => Ok(()),
            _ => Err(TarCheckError::Truncated {
                offset: self.offset,
            }),
        }
    }

    /// A whole block was collected.
    fn block_done(&mut self, block: &[u8]) -> Result<(), TarCheckError> {
        let offset = self.block_start;
        if self.state == State::SparseExtension {
            // Byte 504 of an extension block says whether another one follows.
            self.state = if block[504] != 0 {
                State::SparseExtension
            } else {
                self.data_state(self.pending_sparse_size)
            };
            return Ok(());
        }
        let State::Header { zeros } = self.state else {
            return Ok(());
        };
        if block.iter().all(|&b| b == 0) {
            self.state = if zeros == 0 {
                State::Header { zeros: 1 }
            } else {
                State::End
            };
            return Ok(());
        }
        if zeros > 0 {
            return Err(TarCheckError::AfterEnd { offset });
        }
        if !checksum_matches(block) {
            return Err(TarCheckError::Checksum { offset });
        }
        let field_size = parse_size(&block[124..136]).ok_or(TarCheckError::Size { offset })?;
        let typeflag = block[156];
        match typeflag {
            b'x' => {
                if field_size > MAX_PAX_BYTES {
                    return Err(TarCheckError::Pax { offset });
                }
                self.state = State::Pax {
                    data: field_size,
                    padding: padding(field_size),
                };
            }
            // Global PAX headers, GNU long names and long link names: data to skip, and the
            // pending PAX size is for the entry after them.
            b'g' | b'L' | b'K' => self.state = self.data_state(field_size),
            _ => {
                let size = self.pax_size.take().unwrap_or(field_size);
                let size = if matches!(typeflag, b'1'..=b'6') {
                    0
                } else {
                    size
                };
                if typeflag == b'S' && block[482] != 0 {
                    self.pending_sparse_size = size;
                    self.state = State::SparseExtension;
                } else {
                    self.state = self.data_state(size);
                }
            }
        }
        Ok(())
    }

    /// The state that skips `size` bytes of data and their padding.
    fn data_state(&self, size: u64) -> State {
        match size.saturating_add(padding(size)) {
            0 => State::Header { zeros: 0 },
            remaining => State::Data { remaining },
        }
    }
}

/// The zero bytes after `size` bytes of data up to the next block boundary.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Whether the checksum field (bytes 148..156) matches the header, counted with the field as
/// spaces, as an unsigned or (as some old tars wrote it) a signed byte sum.
fn checksum_matches(block: &[u8]) -> bool {
    let Some(stored) = parse_octal(&block[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// A numeric field: base-256 when the first byte's high bit is set, else octal.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        // Base-256, big-endian two's complement; a negative size is invalid.
        if field[0] & 0x40 != 0 {
            return None;
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    parse_octal(field)
}

/// An octal field: leading spaces and NULs skipped, digits up to a space or NUL; all blank is 0.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let trimmed: &[u8] = {
        let start = field
            .iter()
            .position(|&b| b != b' ' && b != 0)
            .unwrap_or(field.len());
        let rest = &field[start..];
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == 0)
            .unwrap_or(rest.len());
        // Only spaces and NULs may follow the digits.
        if rest[end..].iter().any(|&b| b != b' ' && b != 0) {
            return None;
        }
        &rest[..end]
    };
    let mut value: u64 = 0;
    for &b in trimmed {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

/// The `size` record of PAX data (`"<len> <key>=<value>\n"` records), if any.
fn pax_size(mut data: &[u8]) -> Result<Option<u64>, ()> {
    let mut size = None;
    // Go's reader treats trailing NUL padding after the records as the end.
    while !data.is_empty() && data[0] != 0 {
        let space = data.iter().position(|&b| b == b' ').ok_or(())?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(())?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(());
        }
        let record = &data[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or(())?;
        if &record[..eq] == b"size" {
            let value = std::str::from_utf8(&record[eq + 1..]).map_err(|_| ())?;
            size = Some(value.parse::<u64>().map_err(|_| ())?);
        }
        data = &data[len..];
    }
    Ok(size)
}

/// A reader that passes bytes through unchanged while checking that they form a tar archive;
/// a violation is an [`io::ErrorKind::InvalidData`] error wrapping a [`TarCheckError`].
#[derive(Debug)]
pub struct TarCheckReader<R> {
    inner: R,
    check: TarCheck,
    done: bool,
}

impl<R: Read> TarCheckReader<R> {
    /// Checks what is read from `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            check: TarCheck::new(),
            done: false,
        }
    }
}

impl<R: Read> Read for TarCheckReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        let checked = if n == 0 {
            self.done = true;
            self.check.finish()
        } else {
            self.check.feed(&buf[..n])
        };
        checked.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }
}
