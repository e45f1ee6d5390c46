//! The tar writer for saved archives: deterministic headers (ustar, owner 0:0, mtime 0, mode
//! 0644 or 0755, no user or group names), and entries whose size is only known once their data
//! has been streamed (a layer being decompressed), written with a placeholder header that is
//! patched afterwards, which is why the output must be seekable.

use std::io::{self, Read, Seek, SeekFrom, Write};

use kiln_registry::{Digest, DigestWriter};

/// A tar block.
const BLOCK: u64 = 512;
/// Copy buffer size.
const COPY_BUFFER: usize = 128 * 1024;

/// A tar archive being written to `W`.
#[derive(Debug)]
pub(super) struct TarOut<W: Write + Seek> {
    out: W,
    /// Bytes written so far (the position of the next header).
    pos: u64,
    copy: Vec<u8>,
}

impl<W: Write + Seek> TarOut<W> {
    pub(super) fn new(out: W) -> Self {
        Self {
            out,
            pos: 0,
            copy: vec![0; COPY_BUFFER],
        }
    }

    /// A directory entry (`path` ends with `/`).
    pub(super) fn dir(&mut self, path: &str) -> io::Result<()> {
        let header = header(path, tar::EntryType::Directory, 0o755, 0)?;
        self.write_raw(header.as_bytes())
    }

    /// A regular file holding `bytes`.
    pub(super) fn bytes(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let header = header(path, tar::EntryType::Regular, 0o644, bytes.len() as u64)?;
        self.write_raw(header.as_bytes())?;
        self.write_raw(bytes)?;
        self.pad(bytes.len() as u64)
    }

    /// A regular file of exactly `size` bytes read from `data`; returns their digest. Fewer
    /// bytes than `size` is an [`io::ErrorKind::UnexpectedEof`] error; more are not read.
    pub(super) fn file(&mut self, path: &str, size: u64, data: impl Read) -> io::Result<Digest> {
        let header = header(path, tar::EntryType::Regular, 0o644, size)?;
        self.write_raw(header.as_bytes())?;
        let (digest, n) = self.copy(data.take(size))?;
        if n != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes, read {n}"),
            ));
        }
        self.pad(size)?;
        Ok(digest)
    }

    /// A regular file holding everything `data` yields, whose size is not known in advance;
    /// returns its digest and size.
    pub(super) fn stream(&mut self, path: &str, data: impl Read) -> io::Result<(Digest, u64)> {
        let start = self.pos;
        let placeholder = header(path, tar::EntryType::Regular, 0o644, 0)?;
        self.write_raw(placeholder.as_bytes())?;
        let (digest, size) = self.copy(data)?;
        self.pad(size)?;
        let end = self.pos;
        let real = header(path, tar::EntryType::Regular, 0o644, size)?;
        self.out.seek(SeekFrom::Start(start))?;
        self.out.write_all(real.as_bytes())?;
        self.out.seek(SeekFrom::Start(end))?;
        Ok((digest, size))
    }

    /// Ends the archive (two zero blocks) and returns the output.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.write_raw(&[0; 2 * BLOCK as usize])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn copy(&mut self, mut data: impl Read) -> io::Result<(Digest, u64)> {
        let mut hashed = DigestWriter::new(&mut self.out);
        loop {
            let n = match data.read(&mut self.copy) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hashed.write_all(&self.copy[..n])?;
        }
        let (_, digest, size) = hashed.finish();
        self.pos += size;
        Ok((digest, size))
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let padding = (BLOCK - size % BLOCK) % BLOCK;
        self.write_raw(&[0; BLOCK as usize][..padding as usize])
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

/// A deterministic ustar header.
fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header.set_cksum();
    Ok(header)
}
