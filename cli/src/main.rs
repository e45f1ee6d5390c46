//! The `kiln` binary: command-line arguments, one module per command, and error rendering.

use clap::Parser;

/// kiln: build OCI images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "kiln", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
