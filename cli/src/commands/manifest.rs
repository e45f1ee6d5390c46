//! `kiln manifest create` and `kiln manifest inspect`: multi-platform images made of images
//! already in a registry, and what a reference there is, as `docker buildx imagetools create`
//! and `inspect` do.
//!
//! `create` is for builds on native runners: each runner builds and pushes its platform's image
//! (`-t app:1-amd64`, `-t app:1-arm64`), then one job joins them under one tag. Each source is
//! an image manifest (its platform read from its config) or an index (all its entries). Nothing
//! is downloaded but those documents: every blob a manifest needs is found in the target
//! repository or mounted there from the source's (cross-repository mount), and each manifest is
//! copied by digest, byte for byte, before the new index is pushed under the target's tag. The
//! index is a Docker manifest list when every entry is a Docker manifest, else an OCI index.
//! Sources on another registry than the target are refused: kiln copies no blobs between
//! registries. Two sources giving the same platform are refused too, rather than one being
//! dropped.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use kiln_builder::image::{self, MediaTypes, canonical_json};
use kiln_builder::oci_spec::image::Descriptor;
use kiln_registry::manifest::{self, Document};
use kiln_registry::{Digest, Manifest, Outcome, Platform, Reference, Registry};

use super::pull::{RegistryArgs, runtime};

/// The largest image config read to learn a source's platform.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// `kiln manifest` arguments.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    command: ManifestCommand,
}

#[derive(Debug, Subcommand)]
enum ManifestCommand {
    /// Create a multi-platform image from images and indexes in a registry, without
    /// downloading them (buildx's `imagetools create`).
    Create(CreateArgs),
    /// Show what a reference in a registry is: an index and its platforms, or a manifest
    /// (buildx's `imagetools inspect`).
    Inspect(InspectArgs),
}

/// `kiln manifest create` arguments.
#[derive(Debug, Args)]
struct CreateArgs {
    /// Push the index to TARGET.
    #[arg(long)]
    push: bool,
    /// Print the index that would be pushed, and push nothing.
    #[arg(long, conflicts_with = "push")]
    dry_run: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Where the index goes: NAME:TAG.
    #[arg(value_name = "TARGET")]
    target: String,
    /// The images and indexes it lists: NAME[:TAG|@DIGEST], on TARGET's registry.
    #[arg(value_name = "SOURCE", required = true)]
    sources: Vec<String>,
}

/// `kiln manifest inspect` arguments.
#[derive(Debug, Args)]
struct InspectArgs {
    /// Print the document exactly as the registry serves it.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image: NAME[:TAG|@DIGEST].
    #[arg(value_name = "NAME")]
    reference: String,
}

/// Runs `kiln manifest`.
pub fn run(args: ManifestArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ManifestCommand::Create(args) => create(args),
        ManifestCommand::Inspect(args) => inspect(args),
    }
}

/// One manifest the new index lists: its entry, its document, and the repository it is in.
struct Entry {
    descriptor: Descriptor,
    manifest: Manifest,
    repository: String,
    /// The source it came from, as given.
    source: String,
}

fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    if !args.push && !args.dry_run {
        bail!(
            "give --push to push the index to {}, or --dry-run to print it",
            args.target
        );
    }
    let target = Reference::parse(&args.target).context("TARGET")?;
    if target.digest().is_some() {
        bail!("{target}: the index is pushed under a tag, not a digest");
    }
    let registry = args.registry.connect(target.registry())?;
    let runtime = runtime()?;
    let mut entries: Vec<Entry> = Vec::new();
    for source in &args.sources {
        let reference = Reference::parse(source).with_context(|| format!("source {source}"))?;
        if reference.registry() != target.registry() {
            bail!(
                "{source} is on {}, {target} on {}: kiln manifest create mounts blobs within one \
                 registry and copies none between registries; push {source} to {} first",
                reference.registry(),
                target.registry(),
                target.registry()
            );
        }
        let found = runtime
            .block_on(source_entries(&registry, &reference, source))
            .with_context(|| format!("reading {source}"))?;
        for entry in found {
            add(&mut entries, entry)?;
        }
    }
    let descriptors: Vec<Descriptor> = entries.iter().map(|e| e.descriptor.clone()).collect();
    let media = if descriptors
        .iter()
        .all(|d| d.media_type().to_string() == manifest::DOCKER_MANIFEST)
    {
        MediaTypes::Docker
    } else {
        MediaTypes::Oci
    };
    let index = canonical_json(&image::build_index(&descriptors, media)?)?;
    if args.dry_run {
        let pretty: serde_json::Value = serde_json::from_slice(&index)?;
        println!("{}", serde_json::to_string_pretty(&pretty)?);
        return Ok(ExitCode::SUCCESS);
    }
    let index = Manifest {
        media_type: media.index().to_string(),
        digest: Digest::of(&index),
        bytes: index,
    };
    let tag = target.tag().unwrap_or("latest");
    let (mounted, existed) =
        runtime.block_on(push_index(&registry, &target, &entries, &index, tag))?;
    if !args.registry.quiet() {
        eprintln!(
            "created {target}: {} platforms, {mounted} blobs mounted, {existed} already there",
            entries.len()
        );
    }
    println!("{}", index.digest);
    Ok(ExitCode::SUCCESS)
}

/// Adds `entry` unless the same manifest is there already; the same platform from another
/// manifest is an error.
fn add(entries: &mut Vec<Entry>, entry: Entry) -> anyhow::Result<()> {
    if entries
        .iter()
        .any(|e| e.manifest.digest == entry.manifest.digest)
    {
        return Ok(());
    }
    if let Some(platform) = entry.descriptor.platform().as_ref().map(Platform::of)
        && let Some(other) = entries
            .iter()
            .find(|e| e.descriptor.platform().as_ref().map(Platform::of) == Some(platform.clone()))
    {
        bail!(
            "{platform} is in both {} and {}: give each platform once",
            other.source,
            entry.source
        );
    }
    entries.push(entry);
    Ok(())
}

/// The manifests `reference` stands for: itself with the platform its config says, or every
/// entry of an index, each fetched by digest and checked against its entry.
async fn source_entries(
    registry: &Registry,
    reference: &Reference,
    source: &str,
) -> anyhow::Result<Vec<Entry>> {
    let repository = reference.repository().to_owned();
    let root = registry
        .get_manifest(&repository, &wanted(reference))
        .await?;
    let entry = |descriptor, manifest| Entry {
        descriptor,
        manifest,
        repository: repository.clone(),
        source: source.to_owned(),
    };
    // A registry that names no media type serves what the document says it is.
    let root = match root.media_type.as_str() {
        "" => Manifest {
            media_type: match parse(&root)? {
                Document::Manifest(_) => manifest::OCI_MANIFEST,
                Document::Index(_) => manifest::OCI_INDEX,
            }
            .to_owned(),
            ..root
        },
        _ => root,
    };
    match parse(&root)? {
        Document::Manifest(m) => {
            let config = m.config();
            if config.size() > MAX_CONFIG_BYTES {
                bail!("the config of {source} is larger than {MAX_CONFIG_BYTES} bytes");
            }
            let digest = image::from_oci_digest(config.digest())?;
            let mut bytes = Vec::new();
            registry
                .get_blob(&repository, &digest, config.size(), &mut bytes)
                .await?;
            let config = image::ImageConfig::from_json(&bytes)
                .with_context(|| format!("the config of {source}"))?;
            let mut descriptor = image::descriptor(
                root.media_type.as_str().into(),
                &root.digest,
                root.bytes.len() as u64,
            );
            descriptor.set_platform(Some(config.platform()));
            Ok(vec![entry(descriptor, root)])
        }
        Document::Index(index) => {
            let mut out = Vec::new();
            for descriptor in index.manifests() {
                let digest = image::from_oci_digest(descriptor.digest())?;
                let child = registry
                    .get_manifest(&repository, &digest.to_string())
                    .await?;
                if child.bytes.len() as u64 != descriptor.size() {
                    bail!(
                        "{source}: manifest {digest} is {} bytes, its entry says {}",
                        child.bytes.len(),
                        descriptor.size()
                    );
                }
                let child = Manifest {
                    media_type: descriptor.media_type().to_string(),
                    ..child
                };
                if let Document::Index(_) = parse(&child)? {
                    bail!("{source}: {digest} is an index in an index, which kiln does not follow");
                }
                out.push(entry(descriptor.clone(), child));
            }
            Ok(out)
        }
    }
}

/// Every blob of every entry into the target repository (found or mounted), each manifest by
/// digest, then the index under `tag`. Returns how many blobs were mounted and how many were
/// there already.
async fn push_index(
    registry: &Registry,
    target: &Reference,
    entries: &[Entry],
    index: &Manifest,
    tag: &str,
) -> anyhow::Result<(usize, usize)> {
    let repository = target.repository();
    let (mut mounted, mut existed) = (0, 0);
    let mut seen = std::collections::BTreeSet::new();
    for entry in entries {
        for blob in parse(&entry.manifest)?.children() {
            let digest = image::from_oci_digest(blob.digest())?;
            if !seen.insert(digest.clone()) {
                continue;
            }
            let from = [entry.repository.clone()];
            match registry.mount_or_find(repository, &digest, &from).await? {
                Some(Outcome::Mounted { .. }) => mounted += 1,
                Some(_) => existed += 1,
                None => bail!(
                    "blob {digest} of {} is not in {repository} and {} could not mount it from \
                     {}: kiln manifest create uploads no blobs",
                    entry.source,
                    target.registry(),
                    entry.repository
                ),
            }
        }
        registry
            .put_manifest(
                repository,
                &entry.manifest.digest.to_string(),
                &entry.manifest,
            )
            .await
            .with_context(|| format!("copying the manifest of {}", entry.source))?;
    }
    registry
        .put_manifest(repository, tag, index)
        .await
        .with_context(|| format!("pushing the index to {target}"))?;
    Ok((mounted, existed))
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&args.reference)?;
    let registry = args.registry.connect(reference.registry())?;
    let runtime = runtime()?;
    let repository = reference.repository();
    let root = runtime
        .block_on(registry.get_manifest(repository, &wanted(&reference)))
        .with_context(|| format!("reading {reference}"))?;
    let mut out = std::io::stdout().lock();
    if args.raw {
        out.write_all(&root.bytes)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{:<10} {reference}", "Name:")?;
    writeln!(out, "{:<10} {}", "MediaType:", root.media_type)?;
    writeln!(out, "{:<10} {}", "Digest:", root.digest)?;
    let name = format!("{}/{repository}", reference.registry());
    match parse(&root)? {
        Document::Manifest(m) => {
            let digest = image::from_oci_digest(m.config().digest())?;
            let mut bytes = Vec::new();
            if m.config().size() <= MAX_CONFIG_BYTES {
                runtime.block_on(registry.get_blob(
                    repository,
                    &digest,
                    m.config().size(),
                    &mut bytes,
                ))?;
            }
            if let Ok(config) = image::ImageConfig::from_json(&bytes) {
                let platform =
                    Platform::new(&config.os, &config.architecture, config.variant.as_deref());
                writeln!(out, "{:<10} {platform}", "Platform:")?;
            }
        }
        Document::Index(index) => {
            writeln!(out)?;
            writeln!(out, "Manifests:")?;
            for (n, entry) in index.manifests().iter().enumerate() {
                if n > 0 {
                    writeln!(out)?;
                }
                writeln!(out, "  {:<10} {name}@{}", "Name:", entry.digest())?;
                writeln!(out, "  {:<10} {}", "MediaType:", entry.media_type())?;
                if let Some(platform) = entry.platform() {
                    writeln!(out, "  {:<10} {}", "Platform:", Platform::of(platform))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What to ask the registry for: the digest, else the tag, else `latest`.
fn wanted(reference: &Reference) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    }
}

fn parse(m: &Manifest) -> anyhow::Result<Document> {
    manifest::parse(&m.bytes, Some(&m.media_type))
        .with_context(|| format!("reading manifest {}", m.digest))
}
