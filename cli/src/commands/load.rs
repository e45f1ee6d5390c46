//! `kiln load`: images from a `docker-archive` or `oci-archive` (told apart by their files;
//! plain, gzip or zstd), every blob verified, each name tagged and printed as docker prints it
//! (`Loaded image: busybox:latest`).

use std::io::{self, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_builder::archive;

use super::Global;

/// `kiln load` arguments.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive to read (default: standard input).
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Print nothing.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `kiln load`.
pub fn run(global: &Global, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let store = global.store()?;
    let loaded = match &args.input {
        Some(path) if path.as_os_str() != "-" => archive::load_path(&store, path)
            .with_context(|| format!("loading {}", path.display()))?,
        _ => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                bail!(
                    "requested load from standard input, but it is a terminal: use -i FILE or pipe an archive in"
                );
            }
            archive::load_reader(&store, stdin.lock()).context("loading from standard input")?
        }
    };
    if !args.quiet {
        for image in &loaded {
            let name = &image.name;
            println!(
                "Loaded image: {}:{}",
                name.familiar_name(),
                name.tag().unwrap_or("latest")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
