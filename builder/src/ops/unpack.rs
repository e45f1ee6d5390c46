//! ADD's archive extraction: which files are archives, and unpacking one into a directory.
//!
//! Detection is BuildKit's: by content, never by name. A file is an archive when it decompresses
//! (none, gzip, bzip2, xz or zstd, recognised by magic bytes) and a tar header with a valid
//! checksum parses at its start; anything else is copied as it is. Decompression is in-process,
//! never a helper binary from the host or the image. The archive is applied by the hardened
//! layer applier rooted at the destination directory, so its paths (symlinks included) resolve
//! inside that directory, as docker's `Untar` does, and nothing it holds can reach outside.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::layer::{ApplyMode, ApplyOptions, Root, apply_layer};

use super::file::FileError;

/// How much of a file is read to decide whether ADD extracts it.
const SNIFF_BYTES: usize = 512;

/// Whether the file at `path` is an archive ADD extracts.
pub(crate) fn is_archive(path: &Path) -> Result<bool, FileError> {
    let read = |source| FileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut reader = decompressing(BufReader::new(file)).map_err(read)?;
    let mut block = [0u8; SNIFF_BYTES];
    let mut filled = 0;
    while filled < block.len() {
        match reader.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            // Not decompressible: a plain file, copied as it is.
            Err(_) => return Ok(false),
        }
    }
    Ok(filled == SNIFF_BYTES && tar_header_ok(&block))
}

/// A ustar/GNU/v7 header whose checksum is right (what Go's `tar.Reader.Next` checks first).
fn tar_header_ok(block: &[u8; SNIFF_BYTES]) -> bool {
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == sum
}

/// A reader that decompresses gzip, bzip2, xz or zstd by their magic bytes, or passes through.
fn decompressing<R: BufRead + Send + 'static>(mut reader: R) -> io::Result<Box<dyn Read + Send>> {
    let head = reader.fill_buf()?;
    Ok(if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(reader))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(reader))
    } else {
        Box::new(crate::layer::decompress(reader)?)
    })
}

/// Extracts the archive at `archive` into the directory `dest_rel` of `root` (created if
/// missing), giving every entry `owner` when set (`--chown`).
pub(crate) fn extract(
    root: &Root,
    dest_rel: &str,
    archive: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), FileError> {
    let read = |source| FileError::Read {
        path: archive.to_owned(),
        source,
    };
    let comps: Vec<Vec<u8>> = dest_rel
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let dest = root.dir_creating(&comps).map_err(read)?;
    let dest_path = crate::layer::proc_path(std::os::fd::AsFd::as_fd(&dest));
    let file = std::fs::File::open(archive).map_err(read)?;
    let reader = decompressing(BufReader::new(file)).map_err(read)?;
    let mut options = ApplyOptions::new(ApplyMode::Merge);
    options.owner = owner;
    apply_layer(&dest_path, reader, &options)
        .map(drop)
        .map_err(FileError::Apply)
}
