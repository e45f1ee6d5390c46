//! Flattening snapshot directories: a stack of overlay lowerdirs merged into one plain tree.
//!
//! The copy-based snapshotter starts every RUN from such a tree, and the overlay mount flattens
//! the bottom of a stack too deep for one mount. Each snapshot directory (in overlay-lowerdir
//! form: 0/0 character devices for deletions, the opaque xattr on replaced directories) is
//! streamed as a layer tar by [`write_layer`] and applied in [`ApplyMode::Merge`] by the safe
//! applier, on two threads joined by a pipe. Reusing the two tested halves keeps one definition
//! of whiteout semantics (a whiteout hides only lower layers; an opaque directory keeps only
//! what its own layer put in it) and of safe extraction, at the price of a serialisation, which
//! only the fallback paths pay.

use std::path::Path;

use crate::layer::{
    ApplyMode, ApplyOptions, ChangeKind, Compression, LayerOptions, apply_layer, write_layer,
};

use super::SnapshotError;

/// Applies the snapshot directories `layers` (bottom first) onto the tree at `root`.
pub(crate) fn merge_into(root: &Path, layers: &[impl AsRef<Path>]) -> Result<(), SnapshotError> {
    for layer in layers {
        merge_layer(root, layer.as_ref())?;
    }
    Ok(())
}

fn merge_layer(root: &Path, layer: &Path) -> Result<(), SnapshotError> {
    let (reader, writer) = std::io::pipe().map_err(|source| SnapshotError::Io {
        op: "create a pipe for",
        path: layer.to_owned(),
        source,
    })?;
    let options = LayerOptions {
        kind: ChangeKind::OverlayUpper,
        compression: Compression::None,
        source_date_epoch: None,
    };
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || write_layer(layer, &options, writer));
        let applied = apply_layer(root, reader, &ApplyOptions::new(ApplyMode::Merge));
        // A failed applier drops the pipe, so the writer ends with EPIPE: its error is then
        // a consequence, and the applier's is the one to report.
        let written = producer.join();
        match (applied, written) {
            (Err(source), _) => Err(SnapshotError::Merge {
                layer: layer.to_owned(),
                source: Box::new(source),
            }),
            (Ok(_), Ok(Err(source))) => Err(SnapshotError::Layer {
                path: layer.to_owned(),
                source,
            }),
            (Ok(_), Ok(Ok(_))) => Ok(()),
            (Ok(_), Err(panic)) => std::panic::resume_unwind(panic),
        }
    })
}
