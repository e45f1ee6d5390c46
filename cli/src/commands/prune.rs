//! `kiln prune`: remove the blobs and snapshots no tag reaches, and stale temporary files,
//! then say what was freed (in `docker image prune`'s words). Nothing a tag needs is touched,
//! so it asks no confirmation. While a build runs (holding a lease) it refuses.

use std::process::ExitCode;

use clap::Args;

use super::{Global, human};

/// `kiln prune` arguments (none yet).
#[derive(Debug, Args)]
pub struct PruneArgs {}

/// Runs `kiln prune`.
pub fn run(global: &Global, _args: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = global.store()?;
    let report = store.prune(&[])?;
    if !report.gc.removed_blobs.is_empty() {
        println!("Deleted blobs:");
        for digest in &report.gc.removed_blobs {
            println!("deleted: {digest}");
        }
        println!();
    }
    if !report.removed_snapshots.is_empty() {
        println!("Deleted snapshots:");
        for path in &report.removed_snapshots {
            let name = path.file_name().unwrap_or(path.as_os_str());
            println!("deleted: {}", name.to_string_lossy());
        }
        println!();
    }
    if !report.gc.removed_tmp.is_empty() {
        println!(
            "Removed {} stale temporary file(s)",
            report.gc.removed_tmp.len()
        );
    }
    let total = report.gc.freed_bytes + report.snapshot_bytes;
    println!("Total reclaimed space: {}", human::size(total));
    Ok(ExitCode::SUCCESS)
}
