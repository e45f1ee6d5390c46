//! `kiln push NAME [DEST]`: send an image from the local store to a registry.
//!
//! NAME is a tag in the store (normalised like any reference: `app` is
//! `docker.io/library/app:latest`); DEST, the registry reference to push it as, defaults to
//! NAME. Blobs that other local tags of the same registry also contain are offered to the
//! registry as cross-repository mounts: those tags record where the blobs came from (a pull, or
//! an earlier push), so the registry can link them instead of receiving them again.

use std::collections::BTreeMap;
use std::io::{Read, Seek as _, SeekFrom};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_builder::image;
use kiln_builder::store::Store;
use kiln_registry::error::BoxError;
use kiln_registry::{BlobSource, Digest, PushOptions, Reference};
use oci_spec::image::Descriptor;

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
    let store = global.store()?;
    let Some(root) = store.resolve(&local.to_string())? else {
        bail!("no such image in the store: {local}");
    };
    let local_digest = image::from_oci_digest(root.digest())?;
    if let Some(d) = dest.digest()
        && d != &local_digest
    {
        bail!("{dest} names digest {d}, but {local} is {local_digest}");
    }
    let options = PushOptions {
        tags: dest.tag().map(str::to_owned).into_iter().collect(),
        mount_from: mount_sources(&store, &dest)?,
    };
    let mut client_options = args.registry.options();
    client_options.chunk_size = args.chunk_size;
    let registry = args
        .registry
        .connect_with(dest.registry(), client_options)?;
    if !args.registry.quiet() {
        eprintln!("pushing {local} to {dest}");
    }
    let source = StoreSource(store);
    let pushed = runtime()?
        .block_on(kiln_registry::push(
            &registry,
            dest.repository(),
            &root,
            &source,
            &options,
        ))
        .with_context(|| format!("pushing {dest}"))?;
    if !args.registry.quiet() {
        eprintln!(
            "pushed {dest}: {} uploaded ({}), {} already in the registry, {} mounted",
            pushed.uploaded,
            size(pushed.bytes_uploaded),
            pushed.existed,
            pushed.mounted
        );
    }
    println!("{}", pushed.digest);
    Ok(ExitCode::SUCCESS)
}

/// For every blob of the store's images tagged in `dest`'s registry (other repositories), the
/// repositories that have it.
fn mount_sources(store: &Store, dest: &Reference) -> anyhow::Result<BTreeMap<Digest, Vec<String>>> {
    let mut sources: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for (name, desc) in store.list()? {
        let Ok(reference) = Reference::parse(&name) else {
            continue;
        };
        if reference.registry() != dest.registry() || reference.repository() == dest.repository() {
            continue;
        }
        // An image that cannot be read offers no mounts; pushing it would fail on its own.
        for digest in blobs_of(store, &desc).unwrap_or_default() {
            let repos = sources.entry(digest).or_default();
            if !repos.iter().any(|r| r == reference.repository()) {
                repos.push(reference.repository().to_owned());
            }
        }
    }
    Ok(sources)
}

/// The config and layer digests of an image (every platform of an index).
fn blobs_of(store: &Store, desc: &Descriptor) -> anyhow::Result<Vec<Digest>> {
    let manifests = if image::is_index_media_type(desc.media_type()) {
        store.read_index_blob(desc)?.manifests().clone()
    } else {
        vec![desc.clone()]
    };
    let mut out = Vec::new();
    for m in &manifests {
        let manifest = store.read_manifest(m)?;
        out.push(image::from_oci_digest(manifest.config().digest())?);
        for layer in manifest.layers() {
            out.push(image::from_oci_digest(layer.digest())?);
        }
    }
    Ok(out)
}

/// The store as a push source.
#[derive(Debug)]
struct StoreSource(Store);

impl BlobSource for StoreSource {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError> {
        Ok(Box::new(self.0.open_blob(digest)?))
    }

    fn open_at(&self, digest: &Digest, offset: u64) -> Result<Box<dyn Read + Send>, BoxError> {
        let mut file = self.0.open_blob(digest)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(file))
    }
}
