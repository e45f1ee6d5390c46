//! The fetcher of remote blobs ([`crate::store::remote`]): from a registry repository, through
//! a connection the caller makes (so credentials and TLS come from the same flags and docker
//! config as every other registry request), or from an OCI layout directory.
//!
//! A fetch may be asked for from inside an async task (a push reading a blob it must upload),
//! where blocking on another runtime is not allowed, so each registry fetch runs on a thread of
//! its own with its own small runtime and connection: lazy layers are fetched one at a time,
//! when a step needs them, so the cost of a connection per layer is small.

use std::fmt;
use std::io::{self, Read as _, Write};

use kiln_registry::Registry;
use kiln_registry::error::BoxError;

use super::local::Layout;
use super::{ImportError, Origin};
use crate::store::{Fetch, RemoteBlob, RemoteSource};

/// Makes a connection to a registry host (with the caller's credentials and options).
pub type Connect = dyn Fn(&str) -> Result<Registry, BoxError> + Send + Sync;

/// Fetches remote blobs from registries (through `connect`) and layout directories.
pub struct Fetcher {
    connect: Box<Connect>,
}

impl Fetcher {
    /// A fetcher connecting to registries with `connect`.
    pub fn new(connect: Box<Connect>) -> Self {
        Self { connect }
    }
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetch for Fetcher {
    fn fetch(&self, blob: &RemoteBlob, into: &mut (dyn Write + Send)) -> Result<(), BoxError> {
        match &blob.source {
            RemoteSource::Registry {
                registry,
                repository,
            } => {
                let registry = (self.connect)(registry)?;
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| -> Result<(), BoxError> {
                            let runtime = tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build()?;
                            runtime.block_on(registry.get_blob(
                                repository,
                                &blob.digest,
                                blob.size,
                                into,
                            ))?;
                            Ok(())
                        })
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
            }
            RemoteSource::Layout { dir } => {
                let origin = Origin::Local(dir.clone(), String::new());
                let mut file = Layout::new(dir.clone()).open_blob(&blob.digest, &origin)?;
                io::copy(&mut (&mut file).take(blob.size + 1), into).map_err(|e| {
                    ImportError::Local {
                        origin,
                        what: format!("reading blob {}", blob.digest),
                        source: e,
                    }
                })?;
                Ok(())
            }
            RemoteSource::Decompressed { from } => Err(format!(
                "{} is made by decompressing {from}, not fetched",
                blob.digest
            )
            .into()),
        }
    }
}
