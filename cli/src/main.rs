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
}

fn main() -> ExitCode {
    // The RUN sandbox re-executes this binary as its helper: dispatch before anything else runs.
    if let Some(code) = kiln_builder::exec::init_entry() {
        std::process::exit(code);
    }
    let cli = Cli::parse();
    let global = commands::Global { root: cli.root };
    let result = match cli.command {
        Command::Build(args) => commands::build::run(&global, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
