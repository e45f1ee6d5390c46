//! `kiln prune`: remove the blobs and snapshots no tag or build-cache entry reaches, and stale
//! temporary files, then say what was freed (in `docker image prune`'s words); `--all` first
//! forgets the build cache (like `docker builder prune --all`), so only what tags need stays.
//! Nothing a tag needs is touched, so it asks no confirmation. While a build runs (holding a
//! lease) it refuses.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln_builder::solve::cache::BuildCache;

use super::{Global, human};

/// `kiln prune` arguments.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also clear the build cache (every later build runs every step once; what the last
    /// builds' steps were is kept, so their misses say the cache was pruned).
    #[arg(short, long)]
    all: bool,
}

/// Runs `kiln prune`.
pub fn run(global: &Global, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = global.store()?;
    let cache = BuildCache::open(&store);
    if args.all {
        let forgotten = cache.clear().context("clearing the build cache")?;
        println!("Forgot {forgotten} build cache entries");
    }
    let roots = cache.blob_roots().context("reading the build cache")?;
    let report = store.prune(&roots)?;
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
