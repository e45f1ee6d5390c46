//! BuildKit-compatible shell word expansion (being written).
