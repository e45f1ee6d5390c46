//! `kiln rmi`: remove images, with docker's semantics and output.
//!
//! A name is untagged (`Untagged: busybox:latest`); when no tag is left on the image, the
//! blobs only it used are deleted and listed (`Deleted: sha256:…`): the config first (the image
//! ID, as docker lists the image before its layers), then the manifest and the layers. An image
//! ID removes every tag of that image, but only with `--force` when there are several. Each
//! argument is handled on its own; a failure is reported and the others still run.
//!
//! A running build holds a lease on the store and may be using any image, so removal refuses
//! while a lease is held; `--force` then untags anyway and leaves the blobs for `kiln prune`,
//! which nothing can corrupt.

use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::Args;
use kiln_builder::store::{Store, StoreError};

use super::Global;
use super::lookup::{self, Tagged, Target};

/// `kiln rmi` arguments.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove an image ID that several tags share, and untag even while a build runs.
    #[arg(short, long)]
    force: bool,
    /// Names or image IDs.
    #[arg(value_name = "NAME|ID", required = true)]
    images: Vec<String>,
}

/// Runs `kiln rmi`.
pub fn run(global: &Global, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let store = global.store()?;
    let mut code = ExitCode::SUCCESS;
    for arg in &args.images {
        if let Err(err) = remove_one(&store, arg, args.force) {
            eprintln!("error: {err:#}");
            code = ExitCode::FAILURE;
        }
    }
    Ok(code)
}

fn remove_one(store: &Store, arg: &str, force: bool) -> anyhow::Result<()> {
    let tags: Vec<Tagged> = match lookup::find(store, arg)? {
        None => return Err(lookup::no_such_image(arg)),
        Some(Target::Name(tagged)) => vec![*tagged],
        Some(Target::Id { id, tags }) => {
            if tags.len() > 1 && !force {
                let names: Vec<String> = tags.iter().map(Tagged::familiar).collect();
                return Err(anyhow!(
                    "conflict: unable to delete {} (must be forced) - image is referenced by {} tags: {}",
                    lookup::short_id(&id),
                    tags.len(),
                    names.join(", ")
                ));
            }
            tags
        }
    };
    // The image ID, read before anything is removed, to list the config first.
    let id = lookup::describe(store, &tags[0].descriptor)
        .ok()
        .map(|i| i.id);
    let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    // Layers the build cache holds stay, as `docker rmi` leaves the builder's cache alone.
    let roots = kiln_builder::solve::cache::BuildCache::open(store)
        .blob_roots()
        .context("reading the build cache")?;
    match store.remove(&names, &roots) {
        Ok(removal) => {
            for name in &removal.untagged {
                if let Some(t) = tags.iter().find(|t| &t.name == name) {
                    println!("Untagged: {}", t.familiar());
                }
            }
            let config_first = removal
                .deleted
                .iter()
                .filter(|d| Some(*d) == id.as_ref())
                .chain(removal.deleted.iter().filter(|d| Some(*d) != id.as_ref()));
            for digest in config_first {
                println!("Deleted: {digest}");
            }
            Ok(())
        }
        Err(StoreError::Busy) if force => {
            for t in &tags {
                if store.untag(&t.name)? {
                    println!("Untagged: {}", t.familiar());
                }
            }
            eprintln!(
                "warning: the store is in use by a running build: blobs are kept until `kiln prune`"
            );
            Ok(())
        }
        Err(StoreError::Busy) => Err(anyhow!(
            "cannot remove {arg}: the store is in use by a running build; retry when it has finished, or use --force to untag it now and leave its blobs to `kiln prune`"
        )),
        Err(e) => Err(anyhow::Error::new(e).context(format!("removing {arg}"))),
    }
}
