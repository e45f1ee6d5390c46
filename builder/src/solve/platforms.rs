//! Solving one plan per platform in one build, and writing each platform's image.
//!
//! A multi-platform build has one [`Plan`] per target platform (the predefined `TARGET*` ARGs
//! differ, so FROM lines, stage platforms and expansions may too). The platforms share what
//! does not depend on them: the context's checksums, the snapshots, the build cache, the cache
//! mounts, the images resolved so far (by reference and platform), the keyed steps made so far
//! and the steps in flight ([`super::flight`]). So a stage every platform builds alike (one on
//! `$BUILDPLATFORM` that reads no `TARGET*` ARG, the cross-compilation pattern) has the same
//! keys for all: it runs once, and the other platforms wait for it and take its layers from
//! the cache (or, under `--no-cache`, from this build's own records). Steps whose results
//! differ by platform have different keys, since their chain of keys starts at a base image's
//! platform manifest or at `scratch` of the platform.
//!
//! Platforms build in parallel, as many at once as the machine has cores and memory for
//! ([`jobs`]); the first failure cancels the others and is the one reported, with its platform.
//! Each platform's progress names its stages after the platform (`linux/arm64 build`).

use std::collections::BTreeMap;
use std::num::NonZero;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::cache::BuildCache;
use super::checksum::ContextSums;
use super::explain::Traces;
use super::flight::Flights;
use super::trace;
use super::{BaseImages, BuildError, BuildOptions, Built, Event, Solver, inline_records, step_err};
use crate::context::Visible;
use crate::dockerfile::Location;
use crate::exec::CacheMounts;
use crate::image::MediaTypes;
use crate::plan::{NamedContext, Plan, Platform};
use crate::snapshot::Snapshots;
use crate::store::Store;

/// How much memory one platform's build is given room for when choosing how many run at once.
const MEMORY_PER_PLATFORM: u64 = 1 << 30;

/// One platform of a build: its plan (for `plan.options.platform`) and the annotations of its
/// manifest.
#[derive(Debug, Clone, Copy)]
pub struct PlatformPlan<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The manifest's annotations (`--annotation manifest[PLATFORM]:…` for this one).
    pub annotations: &'a BTreeMap<String, String>,
}

/// Why a build of one or more platforms failed.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct PlatformsError {
    /// The platform whose build failed; `None` when the build is of one platform, or for what
    /// every platform shares (reading the context, taking a lease).
    pub platform: Option<Platform>,
    /// What failed.
    pub error: Box<BuildError>,
}

/// Builds every platform of `targets` (see the module doc) and writes each one's image into
/// `store`, untagged; the images come back in the order of `targets`.
pub fn build_all(
    targets: &[PlatformPlan<'_>],
    ignore: &[String],
    store: &Store,
    images: &dyn BaseImages,
    options: &BuildOptions<'_>,
    progress: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Vec<Built>, PlatformsError> {
    let here = Location::default();
    let shared = |error| PlatformsError {
        platform: None,
        error: Box::new(error),
    };
    let _lease = store
        .lease()
        .map_err(step_err(here, "taking a lease on the store"))
        .map_err(shared)?;
    let snapshots = Snapshots::open(store, &Default::default())
        .map_err(step_err(here, "opening the snapshots"))
        .map_err(shared)?;
    let visible = Visible::walk(options.context, ignore)
        .map_err(step_err(here, "reading the build context"))
        .map_err(shared)?;
    let mut locals = BTreeMap::new();
    for context in targets
        .iter()
        .flat_map(|t| t.plan.options.named_contexts.values())
    {
        if let NamedContext::Local(dir) = context
            && !locals.contains_key(dir)
        {
            let reading = format!("reading the build context {}", dir.display());
            let visible = crate::context::load_dir_ignore(dir)
                .and_then(|patterns| Visible::walk(dir, &patterns))
                .map_err(step_err(here, reading))
                .map_err(shared)?;
            locals.insert(dir.clone(), ContextSums::new(store, dir, visible));
        }
    }
    let sums = ContextSums::new(store, options.context, visible);
    let caches = CacheMounts::new(store.cache_dir().join("mounts"));
    let cache = BuildCache::open(store);
    let resolved = Mutex::default();
    let steps = Mutex::default();
    let mounts_used = Mutex::default();
    let flights = Flights::default();
    let several = targets.len() > 1;
    let solvers: Vec<Solver<'_>> = targets
        .iter()
        .map(|target| {
            let traces = Traces::open(store);
            let identity = options
                .dockerfile
                .map(|file| trace::identity(file, target.plan));
            let last = identity.as_deref().and_then(|i| traces.load(i));
            Solver {
                plan: target.plan,
                store,
                images,
                options,
                progress,
                platform_label: several.then(|| target.plan.options.platform.to_string()),
                snapshots: &snapshots,
                sums: &sums,
                locals: &locals,
                caches: &caches,
                cache: &cache,
                resolved: &resolved,
                results: Mutex::default(),
                landed: std::sync::Condvar::new(),
                scheduler: Mutex::default(),
                steps: &steps,
                mounts_used: &mounts_used,
                flights: &flights,
                traces,
                identity,
                last,
                trace: Mutex::default(),
            }
        })
        .collect();
    let solved = run_platforms(&solvers, options);
    // Only what explains the next build's misses: a build does not fail for want of it.
    for solver in &solvers {
        let _ = solver.save_trace();
    }
    // Remembered file digests only save time: a build does not fail for want of them.
    let _ = sums.save();
    for sums in locals.values() {
        let _ = sums.save();
    }
    solved?;
    solvers
        .into_iter()
        .zip(targets)
        .map(|(solver, target)| {
            let platform = several.then(|| target.plan.options.platform.clone());
            finish(solver, target.annotations).map_err(|error| PlatformsError {
                platform,
                error: Box::new(error),
            })
        })
        .collect()
}

/// Runs every platform's stages, [`jobs`] platforms at a time. The first failure cancels the
/// others (through the build's canceller) and is the one reported: a platform cancelled
/// because another failed is not the news.
fn run_platforms(solvers: &[Solver<'_>], options: &BuildOptions<'_>) -> Result<(), PlatformsError> {
    if let [only] = solvers {
        return only.run_stages().map_err(|error| PlatformsError {
            platform: None,
            error: Box::new(error),
        });
    }
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<(usize, BuildError)>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..jobs(solvers.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(solver) = solvers.get(index) else {
                        break;
                    };
                    if let Err(e) = solver.run_stages() {
                        options.cancel.cancel();
                        if let Ok(mut failures) = failures.lock() {
                            failures.push((index, e));
                        }
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_default();
    if failures.is_empty() {
        return Ok(());
    }
    let failed = failures
        .iter()
        .position(|(_, e)| !matches!(e, BuildError::Cancelled { .. }));
    Err(match failed {
        Some(i) => {
            let (index, error) = failures.swap_remove(i);
            PlatformsError {
                platform: Some(solvers[index].plan.options.platform.clone()),
                error: Box::new(error),
            }
        }
        // Every platform was cancelled: the build was, not one platform.
        None => PlatformsError {
            platform: None,
            error: Box::new(failures.swap_remove(0).1),
        },
    })
}

/// How many platforms build at once: no more than there are, one per core, and no more than
/// the available memory has [`MEMORY_PER_PLATFORM`] for (at least one).
fn jobs(platforms: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, NonZero::get);
    let memory = available_memory().map_or(usize::MAX, |bytes| {
        usize::try_from(bytes / MEMORY_PER_PLATFORM).unwrap_or(usize::MAX)
    });
    platforms.min(cores).min(memory).max(1)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The image of a solved plan: the target stage's config and layers, dated by its newest
/// layer, with the build's labels (and inline cache), written into the store with the
/// manifest's `annotations`.
fn finish(solver: Solver<'_>, annotations: &BTreeMap<String, String>) -> Result<Built, BuildError> {
    let here = Location::default();
    let (plan, options) = (solver.plan, solver.options);
    let mut state = solver
        .results
        .into_inner()
        .unwrap_or_default()
        .remove(&plan.target)
        .ok_or_else(|| BuildError::at(here, "the target stage did not run"))?;
    let steps = solver.steps.lock().map(|s| s.clone()).unwrap_or_default();
    // The image is as old as its newest layer, so a build from the cache reproduces it.
    let created = state
        .newest
        .take()
        .unwrap_or_else(|| options.created.clone());
    let config = &mut state.image.config;
    // A target stage FROM another platform (`FROM --platform=$BUILDPLATFORM …`) still makes
    // the image of the platform built for, as BuildKit does.
    let target = &plan.options.platform;
    if state.platform != *target {
        config.os = target.os.clone();
        config.architecture = target.architecture.clone();
        config.variant = target.variant.clone();
    }
    for entry in config.history.iter_mut().skip(state.own_history) {
        entry.created = Some(created.clone());
    }
    config.created = Some(created);
    config.config.labels.extend(options.labels.clone());
    if options.inline_cache {
        let value = inline_records(&state.layers, &steps)
            .map_err(step_err(here, "writing the inline cache"))?;
        config
            .extra
            .insert(crate::cache_io::format::INLINE_KEY.to_owned(), value);
    }
    let manifest = solver
        .store
        .write_image_with(config, &state.layers, MediaTypes::Oci, annotations)
        .map_err(step_err(here, "writing the image"))?;
    Ok(Built {
        manifest,
        config: state.image.config,
        steps,
        cache_mounts: solver
            .mounts_used
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
    })
}
