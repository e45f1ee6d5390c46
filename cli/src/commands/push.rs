//! `kiln push NAME [DEST]`: send an image from the local store to a registry.
//!
//! NAME is a tag in the store (normalised like any reference: `app` is
//! `docker.io/library/app:latest`); DEST, the registry reference to push it as, defaults to
//! NAME. Blobs that other local tags of the same registry also contain are offered to the
//! registry as cross-repository mounts: those tags record where the blobs came from (a pull, or
//! an earlier push), so the registry can link them instead of receiving them again.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_builder::image;
use kiln_builder::layer::Compression;
use kiln_builder::oci_spec::image::Descriptor;
use kiln_builder::store::Store;
use kiln_builder::store::registry::push_image;
use kiln_registry::{Pushed, Reference};

use super::Global;
use super::pull::{RegistryArgs, runtime, size};

/// `kiln push` arguments.
#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Upload blobs in chunks of this many bytes instead of whole (for registries or proxies
    /// that limit request sizes).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: Option<u64>,
    /// The local image: NAME[:TAG].
    #[arg(value_name = "NAME")]
    name: String,
    /// Where to push it (default: NAME).
    #[arg(value_name = "DEST")]
    dest: Option<String>,
}

/// Runs `kiln push`.
pub fn run(global: &Global, args: PushArgs) -> anyhow::Result<ExitCode> {
    let local = Reference::parse(&args.name)?;
    let dest = match &args.dest {
        Some(d) => Reference::parse(d)?,
        None => local.clone(),
    };
    let store = global.store()?.with_fetcher(args.registry.fetcher());
    let Some(root) = store.resolve(&local.to_string())? else {
        bail!("no such image in the store: {local}");
    };
    let local_digest = image::from_oci_digest(root.digest())?;
    if let Some(d) = dest.digest()
        && d != &local_digest
    {
        bail!("{dest} names digest {d}, but {local} is {local_digest}");
    }
    let pushed = push_to(
        &store,
        &args.registry,
        args.chunk_size,
        &local,
        &root,
        &dest,
    )?;
    println!("{}", pushed.digest);
    Ok(ExitCode::SUCCESS)
}

/// Pushes the store's image `root` (known locally as `local`) to `dest`, reporting on stderr
/// unless `--quiet`: what `kiln push` does, and `kiln build --push` for each `-t`.
pub(crate) fn push_to(
    store: &Store,
    registry_args: &RegistryArgs,
    chunk_size: Option<u64>,
    local: &Reference,
    root: &Descriptor,
    dest: &Reference,
) -> anyhow::Result<Pushed> {
    let mut client_options = registry_args.options();
    client_options.chunk_size = chunk_size;
    let registry = registry_args.connect_with(dest.registry(), client_options)?;
    if !registry_args.quiet() {
        eprintln!("pushing {local} to {dest}");
    }
    // Layers a build left uncompressed are compressed on the way out.
    let pushed = runtime()?
        .block_on(push_image(store, &registry, root, dest, Compression::Gzip))
        .with_context(|| format!("pushing {dest}"))?;
    if !registry_args.quiet() {
        eprintln!(
            "pushed {dest}: {} uploaded ({}), {} already in the registry, {} mounted",
            pushed.uploaded,
            size(pushed.bytes_uploaded),
            pushed.existed,
            pushed.mounted
        );
    }
    Ok(pushed)
}
