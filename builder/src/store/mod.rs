//! The local store: an OCI image layout with atomic commits (being written).
