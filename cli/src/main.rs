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
    /// Download an image from a registry into the store.
    Pull(commands::pull::PullArgs),
    /// Upload an image from the store to a registry.
    Push(commands::push::PushArgs),
    /// Log in to a registry (credentials go to the docker config).
    Login(commands::login::LoginArgs),
    /// Log out from a registry.
    Logout(commands::logout::LogoutArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = commands::Global { root: cli.root };
    let result = match cli.command {
        Command::Build(args) => commands::build::run(&global, args),
        Command::Pull(args) => commands::pull::run(&global, args),
        Command::Push(args) => commands::push::run(&global, args),
        Command::Login(args) => commands::login::run(&global, args),
        Command::Logout(args) => commands::logout::run(&global, args),
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

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
