//! Layers: change sets to deterministic tar blobs, and the safe applier (being written).
