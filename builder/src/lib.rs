//! kiln's builder: everything from Dockerfile text to an image in the local store.
//!
//! The modules follow the flow of a build (see DESIGN.md):
//!
//! ```text
//! Dockerfile + context
//!   └─ dockerfile  text → AST with spans → typed instructions; ${VAR} expansion
//!   └─ check       BuildKit's build checks (lint rules) and the one diagnostic type
//!   └─ ignore      .dockerignore patterns, anchored at the context root
//!   └─ context     the build context as BuildKit sends it: the filtered, sorted walk
//!   └─ plan        stages, ARG/ENV scoping, FROM <stage>, COPY --from → the stages a target needs;
//!                  lowering: each stage's steps (ONBUILD first), expanded → ops (exec, copy, meta)
//!   └─ ops         what steps do: metadata and history (meta), COPY and ADD (file)
//!   └─ solve       runs the ops: stages in order, each step on snapshots, layers into the store
//!   └─ cache_io    build caches shared between machines: --cache-from / --cache-to
//!   └─ user        the image's /etc/passwd and /etc/group: USER and --chown resolution
//!   └─ exec        RUN in a sandbox of namespaces over a snapshot: mounts, user, process tree
//!   └─ snapshot    layers unpacked once per chainID; overlayfs (or copy) roots; change → layer
//!   └─ layer       a change set → deterministic tar → diffID and compressed blob in one pass
//!   └─ image       config (a Docker superset), history, manifest, index
//!   └─ store       OCI image layout on disk with atomic commits
//!   └─ privileges  what the process may do (root, or rootless in its own user namespace)
//!   └─ archive     rootfs tarballs in (import); oci-archive and docker-archive files out and in
//!   └─ export      an image's flattened root filesystem, as files or one tar
//! ```
//!
//! [`build::prepare`] and [`build::build`] are the entry point that runs this flow for one
//! Dockerfile. The library never prints: it returns values and typed errors, and the `kiln`
//! binary renders them.

#![deny(missing_docs)]
// The rule above, enforced by clippy. Unit tests may print (skips, timings) to the harness.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod archive;
pub mod build;
pub mod cache_io;
pub mod check;
pub mod context;
pub mod dockerfile;
pub mod exec;
pub mod export;
pub mod ignore;
pub mod image;
pub mod layer;
pub mod ops;
pub mod plan;
pub mod privileges;
pub mod snapshot;
pub mod solve;
pub mod store;
pub mod user;

#[cfg(test)]
mod testutil;

/// An error and its causes on one line, `: `-separated, as the CLI prints them.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The OCI types this crate's API speaks (descriptors, manifests, indexes), re-exported so
/// callers use the same version.
pub use oci_spec;
