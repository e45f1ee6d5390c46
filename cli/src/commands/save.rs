//! `kiln save`: images to a tar archive, `docker-archive` (the default, as docker and podman)
//! or `oci-archive`, written atomically: the file appears complete or not at all.
//!
//! A name saves under that name; an image ID saves the image with no name, as docker does.
//! A docker archive holds one platform per image, so an index is saved as the host's image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kiln_builder::archive::{self, Format, SaveImage};

use super::Global;
use super::lookup::{self, Target};

/// The archive formats `--format` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ArchiveFormat {
    /// `docker save`'s format: manifest.json, configs and uncompressed layer tars.
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
}

/// `kiln save` arguments.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The file to write.
    #[arg(short, long, value_name = "FILE", required = true)]
    output: PathBuf,
    /// The archive format.
    #[arg(long, value_enum, default_value = "docker-archive")]
    format: ArchiveFormat,
    /// Names or image IDs.
    #[arg(value_name = "NAME|ID", required = true)]
    images: Vec<String>,
}

/// Runs `kiln save`.
pub fn run(global: &Global, args: SaveArgs) -> anyhow::Result<ExitCode> {
    let store = global.store()?;
    // Keeps the images from being removed while they are read.
    let _lease = store.lease().context("taking a lease on the store")?;
    let format = match args.format {
        ArchiveFormat::DockerArchive => Format::DockerArchive,
        ArchiveFormat::OciArchive => Format::OciArchive,
    };
    let mut images = Vec::new();
    for arg in &args.images {
        let Some(target) = lookup::find(&store, arg)? else {
            return Err(lookup::no_such_image(arg));
        };
        let name = match &target {
            Target::Name(t) => t.reference.clone(),
            Target::Id { .. } => None,
        };
        let mut descriptor = target.first_tag().descriptor.clone();
        if format == Format::DockerArchive || name.is_none() {
            descriptor = lookup::describe(&store, &descriptor)?.manifest_descriptor;
        }
        images.push(SaveImage { name, descriptor });
    }
    archive::save(&store, &images, format, &args.output)
        .with_context(|| format!("saving to {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
