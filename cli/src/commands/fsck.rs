//! `kiln fsck [--repair]`: check the store after a crash, a full disk or a failing one; print
//! one line per problem on standard output and a summary on standard error; exit 1 if anything
//! but harmless leftovers was found (and, with `--repair`, not repaired).
//!
//! The checks and repairs are the library's ([`Store::fsck`], then the build cache's
//! [`BuildCache::fsck`], which must see the blobs the first one deleted); this only renders
//! them. Leftovers of dead processes and stale cache records are marked `(harmless)`: they cost
//! space, never correctness, and the next build, pull or prune removes them. While a build runs,
//! fsck refuses, as prune does: what it would find in `tmp/` could be that build's.

use std::process::ExitCode;

use clap::Args;
use kiln_builder::solve::cache::BuildCache;
use kiln_builder::store::Problem;

use super::{Global, human};

/// `kiln fsck` arguments.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Delete corrupt blobs, untag images that are not complete, remove leftovers and stale
    /// cache records (say which), so that the store is consistent afterwards.
    #[arg(long)]
    repair: bool,
}

/// Runs `kiln fsck`.
pub fn run(global: &Global, args: FsckArgs) -> anyhow::Result<ExitCode> {
    let store = global.store()?;
    let mut report = store.fsck(args.repair)?;
    let (problems, repairs) = BuildCache::open(&store).fsck(args.repair)?;
    report.problems.extend(problems);
    report.repairs.extend(repairs);

    for problem in &report.problems {
        println!("{}", line(problem));
    }
    for repair in &report.repairs {
        println!("repaired: {repair}");
    }
    let harmless = report.problems.iter().filter(|p| p.is_harmless()).count();
    let damage = report.problems.len() - harmless;
    let mut summary = format!(
        "checked {} ({}) and {}: ",
        plural(report.blobs, "blob"),
        human::size(report.bytes),
        plural(report.tags, "tag")
    );
    summary += &match (damage, harmless) {
        (0, 0) => "no problems".to_owned(),
        (d, 0) => plural(d, "problem"),
        (0, h) => plural(h, "harmless leftover"),
        (d, h) => format!(
            "{}, {}",
            plural(d, "problem"),
            plural(h, "harmless leftover")
        ),
    };
    if report.unfetched > 0 {
        // Not damage: a lazy cache import's layers, fetched when something reads them.
        summary += &format!("; {} not yet fetched", plural(report.unfetched, "layer"));
    }
    if args.repair && !report.repairs.is_empty() {
        summary += "; repaired";
    } else if damage > 0 {
        summary += "; `kiln fsck --repair` fixes them";
    }
    eprintln!("{summary}");
    Ok(if damage > 0 && !args.repair {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A problem's line: the harmless ones say so.
fn line(problem: &Problem) -> String {
    if problem.is_harmless() {
        format!("{problem} (harmless)")
    } else {
        problem.to_string()
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
