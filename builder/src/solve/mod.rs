//! The solver: runs a [`Plan`] and writes the target's image into the store.
//!
//! Every stage the target needs runs on its own thread as soon as the stages it needs are done,
//! so independent stages run in parallel; the first failure cancels the others. A stage starts from
//! `scratch`, another stage's result, or an image the caller's [`BaseImages`] resolves (it may
//! pull); an image's layers are unpacked once per chainID into snapshots, and its ONBUILD
//! triggers run first. Each step then acts on the stage's state: metadata steps change the
//! config ([`ImageState`]); RUN runs in the sandbox on a writable snapshot; COPY and ADD write
//! into one; WORKDIR creates its directory. A changing step's snapshot becomes a layer blob in
//! the store and the next step's lower layer. Nothing is tagged here: the caller tags the
//! returned manifest, so a failed build leaves no tag behind.
//!
//! Filesystem steps go through the build cache ([`cache`]): a step whose key has a record
//! reuses its layer (reported as cached) and only the metadata is applied again, so a rebuild
//! produces the same image as the first build. A key the local cache misses is looked up in the
//! imported caches ([`CacheImports`], `--cache-from`), every step independently, so one miss
//! does not stop later steps from hitting. The key and record of every keyed step the build
//! used or made are in [`Built::steps`], for `--cache-to`.
//!
//! [`build_all`] solves one plan per platform in one build ([`platforms`]): every stage runs for
//! its own platform ([`Plan::stage_platform`]), and the platforms share what does not differ
//! between them, so a step they all have runs once.

pub mod cache;
mod checksum;
pub mod explain;
mod flight;
mod from;
mod platforms;
mod run;
mod stage;
mod trace;

#[cfg(test)]
mod key_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};

use kiln_registry::{Digest, Reference};
use oci_spec::image::Descriptor;

use crate::dockerfile::Location;
use crate::exec::{CacheMounts, Canceller, ExitStatus, NetworkMode, Stream};
use crate::image::ImageConfig;
use crate::layer::Compression;
use crate::ops::meta::ImageState;
use crate::plan::{Plan, Platform, Scope};
use crate::snapshot::Snapshots;
use crate::store::Store;

use cache::{BuildCache, CacheRecord};
use checksum::ContextSums;
use explain::{BuildTrace, Change, KeyInputs, Miss, Traces};
use flight::Flights;

pub use platforms::{PlatformPlan, PlatformsError, build_all};

/// An error from outside the builder (a pull, say), boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How the solver gets base images: by reference and platform, as a manifest descriptor in the
/// store (the caller looks it up and pulls it as its `--pull` policy says). Stages resolve in
/// parallel.
pub trait BaseImages: Sync {
    /// The manifest of `reference` for `platform`, present in the store with all its blobs.
    fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<Descriptor, BoxError>;
}

/// What the solver reports while it works (the library never prints). Stages run in
/// parallel, so events of different stages interleave; each names its stage, and a stage runs
/// one step at a time.
///
/// Every step of a stage that starts is announced by [`Event::Step`] and ends with
/// [`Event::StepDone`], or is reported [`Event::Skipped`] when a failure or a cancel stops the
/// build before it; a stage the target does not need is [`Event::NotNeeded`].
#[derive(Debug)]
pub enum Event<'a> {
    /// A step starts: `[stage n/total] INSTRUCTION`, saying whether it runs or comes from a
    /// cache.
    Step {
        /// The stage's display name.
        stage: &'a str,
        /// 1-based step number within the stage.
        n: usize,
        /// Steps in the stage.
        total: usize,
        /// The instruction as written.
        text: &'a str,
        /// Its first line in the Dockerfile (1-based).
        line: usize,
        /// How it starts.
        start: StepStart<'a>,
    },
    /// The step `n` of `stage` (announced by [`Event::Step`]) ended.
    StepDone {
        /// The stage's display name.
        stage: &'a str,
        /// 1-based step number within the stage.
        n: usize,
        /// How it ended.
        end: StepEnd,
        /// How long it took.
        elapsed: std::time::Duration,
    },
    /// A step that never started because the build stopped first.
    Skipped {
        /// The stage's display name.
        stage: &'a str,
        /// 1-based step number within the stage.
        n: usize,
        /// Steps in the stage.
        total: usize,
        /// The instruction as written.
        text: &'a str,
        /// Why it did not run.
        reason: SkipReason,
    },
    /// A stage the target does not need: none of its steps run.
    NotNeeded {
        /// The stage's display name.
        stage: &'a str,
        /// How many steps it has.
        steps: usize,
    },
    /// Something the user should know that does not stop the build (an imported cache record
    /// that could not be used: the step runs instead).
    Warning {
        /// The message, one line.
        message: &'a str,
    },
    /// The whole input tree of a keyed step's key, for a step `--explain` asked about.
    Inputs {
        /// The stage's display name.
        stage: &'a str,
        /// 1-based step number within the stage.
        n: usize,
        /// The key and its inputs.
        inputs: &'a KeyInputs,
    },
    /// A line of RUN output.
    Output {
        /// The stage's display name.
        stage: &'a str,
        /// stdout or stderr.
        stream: Stream,
        /// The line, without its newline.
        line: &'a [u8],
    },
}

/// How a step starts.
#[derive(Debug, Clone, Copy)]
pub enum StepStart<'a> {
    /// Its layer is made now (or, for a step without a layer, it changes the config).
    Run {
        /// Why no cache had its layer (`None` for a step that has no key).
        why: Option<&'a Miss>,
    },
    /// Its layer comes from a cache: nothing runs.
    Cached {
        /// Which cache had it.
        from: CacheSource<'a>,
    },
    /// It only changes the image's config (ENV, LABEL, ARG …): there is no layer to cache.
    Config,
}

/// Where a cached step's layer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSource<'a> {
    /// This store's build cache.
    Local,
    /// An imported cache (`--cache-from`), by its name.
    Import(&'a str),
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// It ran (or changed the config) and succeeded.
    Done,
    /// Its layer came from a cache.
    Cached,
    /// It failed: the build fails with its error.
    Failed,
    /// It was stopped: another step failed or the build was cancelled.
    Cancelled,
}

/// Why a step was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// An earlier step of the same stage failed.
    EarlierStepFailed,
    /// Another stage failed, or the build was cancelled (Ctrl-C), before it started.
    Cancelled,
}

/// Inputs of one build besides the plan.
#[derive(Debug)]
pub struct BuildOptions<'a> {
    /// The build context directory.
    pub context: &'a Path,
    /// `--secret id=…` values.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--label` values for the final image.
    pub labels: BTreeMap<String, String>,
    /// `SOURCE_DATE_EPOCH`, for file times and `created`.
    pub source_date_epoch: Option<i64>,
    /// The `created` time of the image and its history (RFC 3339).
    pub created: String,
    /// Layer compression.
    pub compression: Compression,
    /// The network of RUN steps that do not choose one (`--network`).
    pub network: NetworkMode,
    /// `--ssh`: the agent socket for each id `RUN --mount=type=ssh` may name (never part of a
    /// key).
    pub ssh: BTreeMap<String, std::path::PathBuf>,
    /// `--annotation`s of the image manifest.
    pub annotations: BTreeMap<String, String>,
    /// `--add-host`: lines every RUN's `/etc/hosts` gets.
    pub extra_hosts: Vec<crate::exec::ExtraHost>,
    /// `--no-cache`: run every step (the results are still recorded for later builds).
    pub no_cache: bool,
    /// Cancels the build: running commands are killed and the build stops before its next step.
    pub cancel: Canceller,
    /// Caches imported from elsewhere (`--cache-from`), asked after the local cache misses.
    pub imports: Option<&'a dyn CacheImports>,
    /// `--cache-to type=inline`: the records of the image's own layers go into its config.
    pub inline_cache: bool,
    /// The Dockerfile's path: with the target and platform it names the build whose steps
    /// the next build's misses are explained against, and its file name is how explanations
    /// name it (`COPY at Dockerfile:4`). `None`: nothing is remembered.
    pub dockerfile: Option<&'a Path>,
    /// `--explain LINE`: the Dockerfile lines whose steps report their key's input tree
    /// ([`Event::Inputs`]).
    pub explain: BTreeSet<usize>,
    /// Told of each layer the build writes, as soon as it is in the store (a build that
    /// pushes compresses it meanwhile).
    pub layers: Option<&'a dyn LayerWatcher>,
}

/// Watches the layers a build writes ([`BuildOptions::layers`]).
pub trait LayerWatcher: Sync + std::fmt::Debug {
    /// The uncompressed layer blob `digest` is in the store now.
    fn layer_made(&self, digest: &Digest);
}

/// Cache records from elsewhere (`--cache-from`): the solver asks for every keyed step the local
/// cache does not have.
pub trait CacheImports: Sync + std::fmt::Debug {
    /// The record of `key`, with its layer brought into `store` in the form a build with
    /// `compression` keeps, and the name of the cache it came from (`None` when no imported
    /// cache has the key). An error (the layer cannot be fetched or is not what its record
    /// says) makes the solver warn and run the step.
    fn fetch(
        &self,
        key: &Digest,
        store: &Store,
        compression: crate::layer::Compression,
    ) -> Result<Option<(CacheRecord, String)>, BoxError>;

    /// The names of the imported caches, in the order they are asked (for a miss's
    /// explanation).
    fn names(&self) -> Vec<String>;

    /// Fills the empty directory `into` with the contents an imported cache has of the cache
    /// mount `id` (its layer fetched into `store`, verified); `false` when no cache has them.
    /// The solver asks before the first RUN that mounts `id` when the store has no directory
    /// for it yet; an error makes it warn and start with an empty one.
    fn restore_mount(&self, id: &str, store: &Store, into: &Path) -> Result<bool, BoxError>;
}

/// The built image, written to the store but not tagged.
#[derive(Debug)]
pub struct Built {
    /// The manifest (for a `--cache-to` of a multi-platform build, the index over them).
    pub manifest: Descriptor,
    /// Its config.
    pub config: ImageConfig,
    /// Every keyed filesystem step of every stage built, run or taken from a cache: its key and
    /// the record of its layer (what `--cache-to` exports).
    pub steps: BTreeMap<Digest, CacheRecord>,
    /// The directory of every `RUN --mount=type=cache` id the build mounted (what
    /// `--cache-to …,cache-mounts=true` exports).
    pub cache_mounts: BTreeMap<String, std::path::PathBuf>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A step failed.
    #[error("{message}")]
    Step {
        /// The step's place in the Dockerfile.
        location: Location,
        /// What went wrong.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// A RUN's command failed (BuildKit's wording).
    #[error("process \"{command}\" did not complete successfully: {status}")]
    RunFailed {
        /// The RUN's place in the Dockerfile.
        location: Location,
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// Its last lines of output.
        output: Vec<String>,
    },
    /// The build was cancelled ([`BuildOptions::cancel`]).
    #[error("cancelled")]
    Cancelled {
        /// The step that was running or about to run.
        location: Location,
    },
}

impl BuildError {
    /// Where in the Dockerfile the failure is.
    pub fn location(&self) -> Location {
        match self {
            BuildError::Step { location, .. }
            | BuildError::RunFailed { location, .. }
            | BuildError::Cancelled { location } => *location,
        }
    }

    fn at(location: Location, message: impl Into<String>) -> Self {
        BuildError::Step {
            location,
            message: message.into(),
            source: None,
        }
    }
}

/// `BuildError::Step` with a cause, for `map_err`.
pub(crate) fn step_err<E: Into<BoxError>>(
    location: Location,
    message: impl Into<String>,
) -> impl FnOnce(E) -> BuildError {
    let message = message.into();
    move |e| BuildError::Step {
        location,
        message,
        source: Some(e.into()),
    }
}

/// A stage's state between steps.
#[derive(Debug, Clone)]
struct StageState {
    /// The platform the stage runs for ([`Plan::stage_platform`]).
    platform: Platform,
    image: ImageState,
    layers: Vec<Descriptor>,
    /// The chainIDs of the snapshots below the next step, bottom first.
    chain: Vec<Digest>,
    /// The cache key of the filesystem so far.
    key: Digest,
    scope: Scope,
    /// Where this build's own entries start in the config's history.
    own_history: usize,
    /// When the newest layer this build stacked was made (RFC 3339): the image's time.
    newest: Option<String>,
    /// The first thing in the stage (or the stages it starts from) that differs from the
    /// last build: what a later step's parent-changed explanation names.
    changed: Option<Change>,
}

/// Runs `plan` over the context filtered by the `ignore` patterns and writes the target's image
/// into `store`, untagged ([`crate::build::build`] tags it). [`build_all`] builds several
/// platforms at once.
pub fn build(
    plan: &Plan,
    ignore: &[String],
    store: &Store,
    images: &dyn BaseImages,
    options: &BuildOptions<'_>,
    progress: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Built, BuildError> {
    let target = PlatformPlan {
        plan,
        annotations: &options.annotations,
    };
    let mut built =
        build_all(&[target], ignore, store, images, options, progress).map_err(|e| *e.error)?;
    Ok(built.remove(0))
}

/// The inline cache of an image whose layers are `layers`: the records of `steps` whose layers
/// it has, each naming its layer's place.
fn inline_records(
    layers: &[Descriptor],
    steps: &BTreeMap<Digest, CacheRecord>,
) -> Result<serde_json::Value, crate::cache_io::format::FormatError> {
    use crate::cache_io::format::{InlineRecord, inline_value};
    let records = steps
        .iter()
        .filter_map(|(key, record)| {
            let index = layers
                .iter()
                .position(|l| l.digest().as_ref() == record.digest.to_string())?;
            Some((
                key.clone(),
                InlineRecord {
                    layer: index,
                    diff_id: record.diff_id.clone(),
                    created: record.created.clone(),
                },
            ))
        })
        .collect();
    inline_value(&records)
}

/// One platform's solve. What is not the plan's own is shared by every platform of a build
/// ([`platforms::Shared`]).
struct Solver<'a> {
    plan: &'a Plan,
    store: &'a Store,
    images: &'a dyn BaseImages,
    options: &'a BuildOptions<'a>,
    progress: &'a (dyn Fn(Event<'_>) + Sync),
    /// What progress calls a stage: its name, after the platform in a multi-platform build
    /// (`linux/arm64 build`, as BuildKit shows it).
    platform_label: Option<String>,
    snapshots: &'a Snapshots,
    /// The context's visible paths and their checksums.
    sums: &'a ContextSums,
    /// The same for each `--build-context NAME=DIR` directory, by directory.
    locals: &'a BTreeMap<PathBuf, ContextSums>,
    caches: &'a CacheMounts,
    cache: &'a BuildCache,
    /// Images resolved so far, by reference and platform: each is resolved (and pulled) once
    /// per build.
    resolved: &'a Mutex<BTreeMap<String, Descriptor>>,
    /// The final state of every stage that has finished, and a signal when one lands.
    results: Mutex<BTreeMap<usize, StageState>>,
    landed: std::sync::Condvar,
    /// While the stages run: how a stage asks for another one its ONBUILD triggers read.
    scheduler: Mutex<Option<mpsc::Sender<Report>>>,
    /// The keyed steps so far, with their records.
    steps: &'a Mutex<BTreeMap<Digest, CacheRecord>>,
    /// The cache mounts RUNs used so far, by id, with their directories.
    mounts_used: &'a Mutex<BTreeMap<String, std::path::PathBuf>>,
    /// The keyed steps running now, so no two platforms run the same one at once.
    flights: &'a Flights,
    /// The remembered builds, this build's name among them, and its last trace.
    traces: Traces,
    identity: Option<String>,
    last: Option<BuildTrace>,
    /// This build's steps so far, and the stages that finished.
    trace: Mutex<(BuildTrace, BTreeSet<String>)>,
}

/// What a stage's thread tells the scheduler.
enum Report {
    /// The stage ended.
    Finished(usize, Box<Result<StageState, BuildError>>),
    /// A running stage needs this one (its ONBUILD triggers read it with `--from`), which the
    /// plan's order may not have.
    Needs(usize),
}

impl Solver<'_> {
    /// Runs every stage of the plan, each on its own thread once the stages it needs are done.
    /// The first failure cancels the stages still running and is the one reported. A stage
    /// whose base image's ONBUILD triggers read another stage asks for it while it runs
    /// ([`Solver::await_stage`]): it is scheduled then, with what it needs, as Dockerfile 1.11
    /// resolves triggers' dependencies before the stage runs.
    fn run_stages(&self) -> Result<(), BuildError> {
        let mut pending: Vec<usize> = self.plan.order.clone();
        let mut scheduled: BTreeSet<usize> = pending.iter().copied().collect();
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let mut failure: Option<BuildError> = None;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel();
            if let Ok(mut scheduler) = self.scheduler.lock() {
                *scheduler = Some(tx.clone());
            }
            let mut running = 0;
            loop {
                if failure.is_none() {
                    let (ready, waiting): (Vec<usize>, Vec<usize>) =
                        pending.iter().partition(|&&i| {
                            self.plan.stages[i]
                                .stage_deps()
                                .iter()
                                .all(|d| done.contains(d) || !scheduled.contains(d))
                        });
                    pending = waiting;
                    for index in ready {
                        let tx = tx.clone();
                        running += 1;
                        scope.spawn(move || {
                            let result = Box::new(self.run_stage(index));
                            let _ = tx.send(Report::Finished(index, result));
                        });
                    }
                }
                if running == 0 {
                    break;
                }
                let Ok(report) = rx.recv() else {
                    break;
                };
                let (index, result) = match report {
                    Report::Needs(index) => {
                        let mut wanted = vec![index];
                        while let Some(i) = wanted.pop() {
                            if scheduled.insert(i) {
                                pending.push(i);
                                wanted.extend(self.plan.stages[i].stage_deps());
                            }
                        }
                        continue;
                    }
                    Report::Finished(index, result) => (index, *result),
                };
                running -= 1;
                match result {
                    Ok(state) => {
                        if let Ok(mut results) = self.results.lock() {
                            results.insert(index, state);
                        }
                        self.landed.notify_all();
                        done.insert(index);
                    }
                    // A stage cancelled because another failed is not the news.
                    Err(e) => {
                        if failure.is_none()
                            || matches!(failure, Some(BuildError::Cancelled { .. }))
                        {
                            if failure.is_none() {
                                self.options.cancel.cancel();
                            }
                            failure = Some(e);
                        }
                    }
                }
            }
            if let Ok(mut scheduler) = self.scheduler.lock() {
                scheduler.take();
            }
        });
        // Known only now: an ONBUILD trigger may have needed a stage the plan did not.
        for (index, stage) in self.plan.stages.iter().enumerate() {
            if !scheduled.contains(&index) {
                (self.progress)(Event::NotNeeded {
                    stage: &self.stage_name(index),
                    steps: stage.steps.len(),
                });
            }
        }
        if failure.is_some() {
            for &index in &pending {
                let stage = &self.plan.stages[index];
                let name = self.stage_name(index);
                for (n, step) in stage.steps.iter().enumerate() {
                    (self.progress)(Event::Skipped {
                        stage: &name,
                        n: n + 1,
                        total: stage.steps.len(),
                        text: step.original.trim(),
                        reason: SkipReason::Cancelled,
                    });
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None if !pending.is_empty() => Err(BuildError::at(
                self.plan.stages[pending[0]].location,
                "this stage's dependencies never finished",
            )),
            None => Ok(()),
        }
    }

    /// The manifest of an image reference for a platform, resolved once per build.
    fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
        location: Location,
    ) -> Result<Descriptor, BuildError> {
        let name = format!("{reference} {platform}");
        if let Some(desc) = self
            .resolved
            .lock()
            .ok()
            .and_then(|r| r.get(&name).cloned())
        {
            return Ok(desc);
        }
        let desc = self.images.resolve(reference, platform).map_err(step_err(
            location,
            format!("resolving {reference} ({platform})"),
        ))?;
        if let Ok(mut resolved) = self.resolved.lock() {
            resolved.insert(name, desc.clone());
        }
        Ok(desc)
    }
}
