//! The image config, manifest and index kiln writes (being written).
