//! kiln's OCI distribution client.
//!
//! It speaks the registry's language (references, digests, descriptors and byte streams) and
//! knows nothing of Dockerfiles or builds: `kiln-builder` depends on it, never the other way.
//! Everything that names content does it through [`Digest`], which is validated before any
//! path or URL is formed from it.
//!
//! The pieces, bottom up:
//!
//! ```text
//! reference, digest   names of images and content
//! http_date           HTTP dates as Go reads them (Retry-After; the builder's Last-Modified)
//! retry, transport    when to retry; TLS roots, plain-HTTP policy, redirects, idle watchdog
//! auth, credentials   challenges, bearer tokens per scope; docker's config.json and helpers
//! client              Registry: the request loop (auth, re-auth once on 401, retries)
//! manifests, blob,    manifest GET/HEAD/PUT verified; blob HEAD and resumable verified GET;
//!   upload            HEAD → mount → monolithic upload
//! manifest, platform  what a document references; which index entry a platform wants
//! pull, push          whole images, into a caller's BlobStore / from a caller's BlobSource
//! ```
//!
//! The API is async (tokio). Callers' stores and sources are local files and are read and
//! written inline from the transfer tasks. Nothing here prints: progress goes to a
//! [`Progress`] sink, and no error or event carries a credential, a token or a URL query.

#![deny(missing_docs)]
// Nothing here prints (see above), and clippy holds us to it.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod auth;
mod blob;
mod client;
pub mod credentials;
pub mod digest;
pub mod error;
pub mod http_date;
pub mod manifest;
mod manifests;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod retry;
pub mod transport;
mod upload;

pub use auth::Credentials;
pub use client::Registry;
pub use credentials::{CredentialsError, DockerConfig};
pub use digest::{Digest, DigestError, DigestWriter};
pub use error::Error;
pub use manifests::{Manifest, ManifestHead};
pub use platform::Platform;
pub use progress::{Event, NoProgress, Outcome, Progress};
pub use pull::{BlobSink, BlobStore, Pulled, pull};
pub use push::{BlobSource, PushOptions, Pushed, push};
pub use reference::{Reference, ReferenceError};
pub use retry::RetryPolicy;
pub use transport::ClientOptions;
