//! `kiln import`'s layer: a rootfs tarball (plain, gzip or zstd, told apart by magic bytes)
//! becomes one layer blob in the store.
//!
//! The tar bytes are passed through exactly as they are (decompressed, checked to be a tar by
//! [`TarCheckReader`], hashed for the diffID, recompressed with kiln's deterministic compressor),
//! never unpacked and re-created, so the layer holds what the tarball holds and the same tarball
//! always gives the same layer digest, whatever compression it came in.

use std::io::{self, BufReader, Read};

use super::tarcheck::{TarCheckError, TarCheckReader};
use super::{ArchiveError, MAGIC_LEN, read_head, refuse_unsupported_compression};
use crate::layer::{Compression, LayerError, LayerInfo, decompress, layer_from_tar};
use crate::store::Store;

/// Read buffer for the tarball.
const READ_BUFFER: usize = 128 * 1024;

/// Stores the tarball read from `input` as a layer blob compressed with `compression`, and
/// returns its identifiers. The blob is committed but not referenced by anything: the caller
/// holds a [`Lease`](crate::store::Lease) until an image that uses it is tagged.
pub fn import_layer(
    store: &Store,
    input: impl Read,
    compression: Compression,
) -> Result<LayerInfo, ArchiveError> {
    let mut input = input;
    let head = read_head(&mut input, MAGIC_LEN).map_err(stream_error)?;
    refuse_unsupported_compression(&head)?;
    let input = BufReader::with_capacity(READ_BUFFER, io::Cursor::new(head).chain(input));
    let tar = decompress(input).map_err(stream_error)?;
    let mut blob = store.blob_writer()?;
    let info =
        layer_from_tar(TarCheckReader::new(tar), compression, &mut blob).map_err(|e| match e {
            LayerError::Stream(io) => stream_error(io),
            other => ArchiveError::Layer(other),
        })?;
    blob.commit_verified(&info.digest, info.size)?;
    Ok(info)
}

/// A read error of the tarball: the tar check's verdict when that is what it is.
fn stream_error(err: io::Error) -> ArchiveError {
    if let Some(check) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TarCheckError>())
    {
        return ArchiveError::NotATar(check.clone());
    }
    ArchiveError::Layer(LayerError::Stream(err))
}
