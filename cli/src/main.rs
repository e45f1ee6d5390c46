//! The `kiln` binary: command-line arguments, one module per command, and error rendering.
//!
//! Exit codes follow docker's: 0 success, 1 when a command fails, 2 for usage errors (clap).
//! Errors print once, at the top, as `error: …` with their chain of causes.

mod commands;
mod diagnostics;
mod interrupt;
mod progress;
mod rootless;

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
    Build(Box<commands::build::BuildArgs>),
    /// Import a rootfs tarball as a one-layer image.
    Import(commands::import::ImportArgs),
    /// List images.
    Images(commands::images::ImagesArgs),
    /// Give an image another name.
    Tag(commands::tag::TagArgs),
    /// Remove images.
    Rmi(commands::rmi::RmiArgs),
    /// Run a command in an image (always removed afterwards: kiln keeps no containers).
    Run(commands::run::RunArgs),
    /// Show images' details as JSON.
    Inspect(commands::inspect::InspectArgs),
    /// Save images to a tar archive.
    Save(commands::save::SaveArgs),
    /// Load images from a tar archive.
    Load(commands::load::LoadArgs),
    /// Remove blobs and snapshots no image needs.
    Prune(commands::prune::PruneArgs),
    /// Check the store (every blob and tag, leftovers of crashes) and optionally repair it.
    Fsck(commands::fsck::FsckArgs),
    /// Download an image from a registry into the store.
    Pull(commands::pull::PullArgs),
    /// Upload an image from the store to a registry.
    Push(commands::push::PushArgs),
    /// Log in to a registry (credentials go to the docker config).
    Login(commands::login::LoginArgs),
    /// Log out from a registry.
    Logout(commands::logout::LogoutArgs),
    /// Make and show multi-platform images in a registry (buildx's imagetools).
    Manifest(commands::manifest::ManifestArgs),
}

fn main() -> ExitCode {
    // The RUN sandbox re-executes this binary as its helper: dispatch before anything else runs.
    if let Some(code) = kiln_builder::exec::init_entry() {
        std::process::exit(code);
    }
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    // Still one thread: a non-root user's kiln enters its user namespace here.
    let need = match cli.command {
        Command::Login(_) | Command::Logout(_) | Command::Manifest(_) => rootless::Need::Nothing,
        Command::Build(_) | Command::Run(_) => rootless::Need::Sandbox,
        _ => rootless::Need::Files,
    };
    if let Err(err) = rootless::setup(need) {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    let global = commands::Global { root: cli.root };
    let result = match cli.command {
        Command::Build(args) => commands::build::run(&global, *args),
        Command::Import(args) => commands::import::run(&global, args),
        Command::Images(args) => commands::images::run(&global, args),
        Command::Tag(args) => commands::tag::run(&global, args),
        Command::Rmi(args) => commands::rmi::run(&global, args),
        Command::Run(args) => commands::run::run(&global, args),
        Command::Inspect(args) => commands::inspect::run(&global, args),
        Command::Save(args) => commands::save::run(&global, args),
        Command::Load(args) => commands::load::run(&global, args),
        Command::Prune(args) => commands::prune::run(&global, args),
        Command::Fsck(args) => commands::fsck::run(&global, args),
        Command::Pull(args) => commands::pull::run(&global, args),
        Command::Push(args) => commands::push::run(&global, args),
        Command::Login(args) => commands::login::run(&global, args),
        Command::Logout(args) => commands::logout::run(&global, args),
        Command::Manifest(args) => commands::manifest::run(args),
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`kiln … | head`) is not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `kiln images | head -1`: when the reader goes away, `println!` panics on EPIPE. A closed
/// stdout is the reader's choice, not an error, so exit quietly as other Unix tools do.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
