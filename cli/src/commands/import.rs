//! `kiln import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image, like
//! `docker import`.
//!
//! The tar is stored as the layer byte for byte (gzip-compressed by kiln), so the same tarball
//! with the same `SOURCE_DATE_EPOCH` always gives the same image ID and manifest digest. The
//! config has the host's platform (or `--platform`'s) in OCI names, `created` from kiln's clock,
//! `--change`
//! settings, and one history entry, `created_by: "kiln import"` with `-m` as its comment (and,
//! as docker has it, as the config's top-level `comment`).
//! (Docker writes no `created_by` and a default comment `Imported from <source>`; kiln keeps the
//! source out of the image so that importing a file or the same bytes from a pipe agree.)
//! Prints the image ID, as docker does.

use std::fs::File;
use std::io::{self, IsTerminal as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_builder::archive::import_layer;
use kiln_builder::image::{self, History, ImageConfig, MediaTypes, clock};
use kiln_builder::layer::Compression;
use kiln_builder::oci_spec::image::MediaType;
use kiln_builder::plan::Platform;
use kiln_registry::Digest;

use super::{Global, change, lookup};

/// `kiln import` arguments (docker import's names).
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image config: CMD, ENTRYPOINT, ENV, EXPOSE,
    /// HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR; may repeat.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// A comment for the image's history entry.
    #[arg(short = 'm', long = "message", value_name = "MESSAGE")]
    message: Option<String>,
    /// The platform the image is for, `os/arch[/variant]` (default: the host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// The tarball (plain, gzip or zstd); `-` reads standard input.
    #[arg(value_name = "FILE|-")]
    file: String,
    /// The name to tag the image with.
    #[arg(value_name = "NAME[:TAG]")]
    name: String,
}

/// Runs `kiln import`.
pub fn run(global: &Global, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = lookup::parse_name(&args.name)?;
    if name.digest().is_some() {
        bail!("cannot tag an image with a digest reference: {}", args.name);
    }
    let changes = change::parse_changes(&args.changes)?;
    let platform = match &args.platform {
        Some(p) => p.parse::<Platform>().context("--platform")?,
        None => Platform::host(),
    };
    if args.file.contains("://") {
        bail!("importing from a URL is not supported: {}", args.file);
    }
    let store = global.store()?;
    // Held until the image is tagged: without it, gc could take the new blobs first.
    let _lease = store.lease().context("taking a lease on the store")?;

    let layer = if args.file == "-" {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            bail!("refusing to read a tarball from a terminal: pipe it in, or give a FILE");
        }
        import_layer(&store, stdin.lock(), Compression::Gzip)
            .context("importing the tarball from standard input")?
    } else {
        let path = Path::new(&args.file);
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        import_layer(&store, file, Compression::Gzip)
            .with_context(|| format!("importing {}", path.display()))?
    };

    let mut config = ImageConfig::new(&platform.architecture, &platform.os);
    config.variant = platform.variant;
    let created = clock::now().context("reading the clock")?.to_rfc3339();
    config.created = Some(created.clone());
    config.rootfs.diff_ids = vec![layer.diff_id.clone()];
    config.history = vec![History {
        created: Some(created),
        created_by: Some("kiln import".to_owned()),
        comment: args.message.clone(),
        ..History::default()
    }];
    if let Some(message) = &args.message {
        // Docker's image config has a top-level `comment` too; `inspect` shows it.
        config
            .extra
            .insert("comment".to_owned(), message.clone().into());
    }
    change::apply(&mut config, &changes)?;

    let layer_desc =
        image::descriptor(MediaType::from(layer.media_type), &layer.digest, layer.size);
    let manifest = store.write_image(&config, &[layer_desc], MediaTypes::Oci)?;
    store.tag(&name.to_string(), &manifest)?;
    let id = Digest::of(&config.to_canonical_json()?);
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}
