//! The `kiln` binary: command-line arguments, one module per command, and error rendering.
//!
//! Exit codes follow docker's: 0 success, 1 when a command fails, 2 for usage errors (clap).
//! Errors print once, at the top, as `error: …` with their chain of causes.

mod commands;
mod diagnostics;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kiln: build OCI images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about)]
struct Cli {
    /// The store directory (default: /var/lib/kiln as root, $XDG_DATA_HOME/kiln otherwise).
    #[arg(long, global = true, env = "KILN_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile.
    Build(commands::build::BuildArgs),
    /// Import a rootfs tarball as a one-layer image.
    Import(commands::import::ImportArgs),
    /// List images.
    Images(commands::images::ImagesArgs),
    /// Give an image another name.
    Tag(commands::tag::TagArgs),
    /// Remove images.
    Rmi(commands::rmi::RmiArgs),
    /// Show images' details as JSON.
    Inspect(commands::inspect::InspectArgs),
    /// Save images to a tar archive.
    Save(commands::save::SaveArgs),
    /// Load images from a tar archive.
    Load(commands::load::LoadArgs),
    /// Remove blobs and snapshots no image needs.
    Prune(commands::prune::PruneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = commands::Global { root: cli.root };
    let result = match cli.command {
        Command::Build(args) => commands::build::run(&global, args),
        Command::Import(args) => commands::import::run(&global, args),
        Command::Images(args) => commands::images::run(&global, args),
        Command::Tag(args) => commands::tag::run(&global, args),
        Command::Rmi(args) => commands::rmi::run(&global, args),
        Command::Inspect(args) => commands::inspect::run(&global, args),
        Command::Save(args) => commands::save::run(&global, args),
        Command::Load(args) => commands::load::run(&global, args),
        Command::Prune(args) => commands::prune::run(&global, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
