//! Build operations: what each kind of step does to a stage's image.
//!
//! BuildKit's ops are source (resolve, pull and unpack a base), exec (RUN), file (COPY, ADD,
//! WORKDIR's mkdir) and meta (everything that only changes the config). [`meta`] applies the
//! metadata instructions and writes every step's history entry; [`file`] runs COPY and ADD,
//! with [`fetch`] downloading ADD's URLs through the proxies [`proxy`] picks.

pub mod chmod;
pub mod fetch;
pub mod file;
pub mod meta;
pub mod proxy;
pub(crate) mod sources;
#[cfg(test)]
mod test_http;
mod unpack;

pub use meta::{ImageState, MetaError};
