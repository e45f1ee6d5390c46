//! kiln's OCI distribution client.
//!
//! It speaks the registry's language (references, digests, descriptors and byte streams) and
//! knows nothing of Dockerfiles or builds: `kiln-builder` depends on it, never the other way.
//! Everything that names content does it through [`Digest`], which is validated before any
//! path or URL is formed from it.

#![deny(missing_docs)]

pub mod digest;
pub mod reference;

pub use digest::{Digest, DigestError, DigestWriter};
pub use reference::{Reference, ReferenceError};
