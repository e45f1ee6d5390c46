//! The solver: runs a [`Plan`] and writes the target's image into the store.
//!
//! Stages run in the plan's order (each after the stages it needs). A stage starts from
//! `scratch`, another stage's result, or an image the caller's [`BaseImages`] resolves (it may
//! pull); an image's layers are unpacked once per chainID into snapshots, and its ONBUILD
//! triggers run first. Each step then acts on the stage's state: metadata steps change the
//! config ([`ImageState`]); RUN runs in the sandbox on a writable snapshot; COPY and ADD write
//! into one; WORKDIR creates its directory. A changing step's snapshot becomes a layer blob in
//! the store and the next step's lower layer. Nothing is tagged here: the caller tags the
//! returned manifest, so a failed build leaves no tag behind.
//!
//! Not yet here (issue 6): the build cache and parallel stages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kiln_registry::{Digest, Reference};
use oci_spec::image::{Descriptor, MediaType};

use crate::context::{WalkFilter, load_ignore, walk};
use crate::dockerfile::Location;
use crate::dockerfile::instructions::{Add, Copy, Instruction, MountType, Run, RunMount, Sharing};
use crate::exec::{
    CacheDir, CacheMounts, CacheOwner, Canceller, ExecOptions, ExitStatus, Mount, MountKind,
    RunSpec, Stream,
};
use crate::image::{ImageConfig, MediaTypes, descriptor};
use crate::layer::Compression;
use crate::ops::file::{FileOp, Source as FileSource, Unpack, copy};
use crate::ops::meta::ImageState;
use crate::ops::user::UserDb;
use crate::plan::{Base, PROXY_ARGS, Plan, Scope, Step, onbuild_steps};
use crate::snapshot::{CommitOptions, Mutable, Snapshots};
use crate::store::Store;

/// An error from outside the builder (a pull, say), boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How the solver gets base images: by reference, as a manifest descriptor in the store (the
/// caller looks it up and pulls it as its `--pull` policy says).
pub trait BaseImages {
    /// The manifest of `reference`, present in the store with all its blobs.
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, BoxError>;
}

/// What the solver reports while it works (the library never prints).
#[derive(Debug)]
pub enum Event<'a> {
    /// A step starts: `[stage n/total] INSTRUCTION`.
    Step {
        /// The stage's display name.
        stage: &'a str,
        /// 1-based step number within the stage.
        n: usize,
        /// Steps in the stage.
        total: usize,
        /// The instruction as written.
        text: &'a str,
    },
    /// A line of RUN output.
    Output {
        /// stdout or stderr.
        stream: Stream,
        /// The line, without its newline.
        line: &'a [u8],
    },
}

/// Inputs of one build besides the plan.
#[derive(Debug)]
pub struct BuildOptions<'a> {
    /// The build context directory.
    pub context: &'a Path,
    /// The Dockerfile's path (its `<name>.dockerignore` wins over the context's).
    pub dockerfile: &'a Path,
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
    /// Cancels the build: running commands are killed and the build stops before its next step.
    pub cancel: Canceller,
}

/// The built image, written to the store but not tagged.
#[derive(Debug)]
pub struct Built {
    /// The manifest.
    pub manifest: Descriptor,
    /// Its config.
    pub config: ImageConfig,
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
}

/// How many output lines a failed RUN's error keeps.
const TAIL_LINES: usize = 10;

/// A stage's state between steps.
#[derive(Debug, Clone)]
struct StageState {
    image: ImageState,
    layers: Vec<Descriptor>,
    /// The chainIDs of the snapshots below the next step, bottom first.
    chain: Vec<Digest>,
    scope: Scope,
}

/// Runs `plan` and writes the target's image into `store`.
pub fn build(
    plan: &Plan,
    store: &Store,
    images: &dyn BaseImages,
    options: &BuildOptions<'_>,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Built, BuildError> {
    let no_location = Location::default();
    let fail = |message: &'static str, location: Location| Solver::err(location, message);
    let _lease = store
        .lease()
        .map_err(|e| fail("taking a lease on the store", no_location)(e.into()))?;
    let snapshots = Snapshots::open(store, &Default::default())
        .map_err(|e| fail("opening the snapshots", no_location)(e.into()))?;
    let (patterns, _) = load_ignore(options.context, options.dockerfile)
        .map_err(|e| fail("reading .dockerignore", no_location)(e.into()))?;
    let visible: BTreeSet<String> = walk(options.context, &WalkFilter::excluding(patterns))
        .map_err(|e| fail("reading the build context", no_location)(e.into()))?
        .into_iter()
        .map(|e| e.path)
        .collect();
    let mut solver = Solver {
        plan,
        store,
        images,
        options,
        snapshots,
        visible,
        caches: CacheMounts::new(store.cache_dir().join("mounts")),
        results: BTreeMap::new(),
    };
    for &index in &plan.order {
        let state = solver.run_stage(index, progress)?;
        solver.results.insert(index, state);
    }
    let mut state = solver
        .results
        .remove(&plan.target)
        .expect("the target stage ran");
    let config = &mut state.image.config;
    config.created = Some(options.created.clone());
    config.config.labels.extend(options.labels.clone());
    let manifest = store
        .write_image(config, &state.layers, MediaTypes::Oci)
        .map_err(|e| fail("writing the image", no_location)(e.into()))?;
    Ok(Built {
        manifest,
        config: state.image.config,
    })
}

struct Solver<'a> {
    plan: &'a Plan,
    store: &'a Store,
    images: &'a dyn BaseImages,
    options: &'a BuildOptions<'a>,
    snapshots: Snapshots,
    /// Context paths `.dockerignore` lets through.
    visible: BTreeSet<String>,
    caches: CacheMounts,
    results: BTreeMap<usize, StageState>,
}

impl Solver<'_> {
    fn err(location: Location, message: impl Into<String>) -> impl FnOnce(BoxError) -> BuildError {
        let message = message.into();
        move |e| BuildError::Step {
            location,
            message,
            source: Some(e),
        }
    }

    fn run_stage(
        &mut self,
        index: usize,
        progress: &mut dyn FnMut(Event<'_>),
    ) -> Result<StageState, BuildError> {
        let stage = &self.plan.stages[index];
        let name = stage.display_name();
        let mut state = match &stage.base {
            Base::Scratch => {
                let platform = &self.plan.options.platform;
                StageState {
                    image: ImageState::new(
                        ImageConfig::new(&platform.architecture, &platform.os),
                        Some(self.options.created.clone()),
                    ),
                    layers: Vec::new(),
                    chain: Vec::new(),
                    scope: Scope::default(),
                }
            }
            Base::Stage(parent) => {
                let mut state = self.results[parent].clone();
                state.image =
                    ImageState::new(state.image.config, Some(self.options.created.clone()));
                state
            }
            Base::Image(reference) => self.image_state(reference, stage.location)?,
        };
        let mut steps: Vec<Step> = onbuild_steps(
            &state.image.config.config.on_build,
            self.plan.escape,
            stage.location,
        )
        .map_err(|e| BuildError::Step {
            location: e.location,
            message: e.message,
            source: None,
        })?;
        // Triggers run once: the child's image does not carry them on.
        state.image.config.config.on_build.clear();
        steps.extend(stage.steps.iter().cloned());
        let (expanded, _) = self
            .plan
            .expand_steps(&steps, state.scope.clone())
            .map_err(|e| BuildError::Step {
                location: e.location,
                message: e.message,
                source: None,
            })?;
        let total = expanded.len();
        for (n, step) in expanded.iter().enumerate() {
            if self.options.cancel.is_cancelled() {
                return Err(BuildError::Cancelled {
                    location: step.step.location,
                });
            }
            progress(Event::Step {
                stage: &name,
                n: n + 1,
                total,
                text: step.step.original.trim(),
            });
            let location = step.step.location;
            state.scope = step.scope.clone();
            match &step.step.instruction {
                Instruction::Arg(decls) => {
                    let resolved: Vec<_> = decls
                        .iter()
                        .map(|d| {
                            let value = state
                                .scope
                                .args()
                                .iter()
                                .find(|(n, _)| *n == d.name)
                                .and_then(|(_, v)| v.clone());
                            (d.name.clone(), value)
                        })
                        .collect();
                    state.image.commit_arg(&resolved);
                }
                Instruction::Run(run) => self.run(&mut state, run, location, progress)?,
                Instruction::Copy(c) => self.copy(&mut state, CopyKind::Copy(c), location)?,
                Instruction::Add(a) => self.copy(&mut state, CopyKind::Add(a), location)?,
                other => {
                    let workdir = state.image.apply(other).map_err(|e| BuildError::Step {
                        location,
                        message: e.to_string(),
                        source: None,
                    })?;
                    if let Some(dir) = workdir {
                        self.make_workdir(&mut state, &dir, location)?;
                    }
                }
            }
        }
        Ok(state)
    }

    /// The state of a stage starting from an image: its config, layers and snapshots.
    fn image_state(
        &self,
        reference: &Reference,
        location: Location,
    ) -> Result<StageState, BuildError> {
        let err = |m: &str| Self::err(location, format!("{m} {reference}"));
        let desc = self.images.resolve(reference).map_err(err("resolving"))?;
        let manifest = self
            .store
            .read_manifest(&desc)
            .map_err(|e| err("reading the manifest of")(e.into()))?;
        let config = self
            .store
            .read_config(&manifest)
            .map_err(|e| err("reading the config of")(e.into()))?;
        let chain = self
            .snapshots
            .unpack_image(self.store, &manifest, &config.rootfs.diff_ids)
            .map_err(|e| err("unpacking")(e.into()))?;
        let env = config
            .config
            .env
            .iter()
            .map(|e| {
                e.split_once('=')
                    .map_or((e.clone(), String::new()), |(k, v)| {
                        (k.to_owned(), v.to_owned())
                    })
            })
            .collect();
        Ok(StageState {
            layers: manifest.layers().clone(),
            chain,
            image: ImageState::new(config, Some(self.options.created.clone())),
            scope: Scope::new(env),
        })
    }

    fn mutable(&self, state: &StageState, location: Location) -> Result<Mutable, BuildError> {
        self.snapshots
            .mutable(&state.chain)
            .map_err(|e| Self::err(location, "preparing a root filesystem")(e.into()))
    }

    /// Writes the change of `root` as a layer into the store and stacks it on the stage.
    fn commit(
        &self,
        state: &mut StageState,
        root: Mutable,
        location: Location,
    ) -> Result<(), BuildError> {
        let err = |m: &'static str| Self::err(location, m);
        let mut writer = self
            .store
            .blob_writer()
            .map_err(|e| err("writing a layer")(e.into()))?;
        let options = CommitOptions {
            compression: self.options.compression,
            source_date_epoch: self.options.source_date_epoch,
        };
        let committed = root
            .commit(&options, &mut writer)
            .map_err(|e| err("writing a layer")(e.into()))?;
        let layer = committed.layer().clone();
        writer
            .commit_verified(&layer.digest, layer.size)
            .map_err(|e| err("storing a layer")(e.into()))?;
        let chain_id = committed.chain_id().clone();
        committed
            .keep(&self.snapshots)
            .map_err(|e| err("keeping a snapshot")(e.into()))?;
        state.chain.push(chain_id);
        state
            .image
            .config
            .rootfs
            .diff_ids
            .push(layer.diff_id.clone());
        state.layers.push(descriptor(
            MediaType::from(layer.media_type),
            &layer.digest,
            layer.size,
        ));
        Ok(())
    }

    fn make_workdir(
        &self,
        state: &mut StageState,
        dir: &str,
        location: Location,
    ) -> Result<(), BuildError> {
        let root = self.mutable(state, location)?;
        let users = UserDb::read(root.root())
            .map_err(|e| Self::err(location, "reading the image's users")(e.into()))?;
        let user = &state.image.config.config.user;
        let owner = if user.is_empty() {
            (0, 0)
        } else {
            users.resolve_chown(user).unwrap_or((0, 0))
        };
        let path = root.root().join(dir.trim_start_matches('/'));
        // The parents are resolved inside the root by the file op; WORKDIR's own directory is
        // created with the user as owner, as BuildKit does.
        let op = FileOp {
            keyword: "WORKDIR",
            sources: &[],
            inline: &[],
            dest: &format!("{dir}/"),
            workdir: "/",
            owner: Some(owner),
            chmod: None,
            excludes: &[],
            parents: false,
            unpack: Unpack::Never,
            checksum: None,
            link: false,
            fetch: None,
            created: self.options.source_date_epoch.unwrap_or(0),
        };
        if !path.is_dir() {
            let empty = tempfile::tempdir()
                .map_err(|e| Self::err(location, "creating WORKDIR")(e.into()))?;
            let source = FileSource {
                root: empty.path(),
                visible: None,
                keep_owner: false,
            };
            copy(&source, root.root(), &op)
                .map_err(|e| Self::err(location, format!("creating WORKDIR {dir}"))(e.into()))?;
        }
        self.commit(state, root, location)
    }

    fn run(
        &self,
        state: &mut StageState,
        run: &Run,
        location: Location,
        progress: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), BuildError> {
        let root = self.mutable(state, location)?;
        let mut holds: Vec<CacheDir> = Vec::new();
        let mut views: Vec<Mutable> = Vec::new();
        let mut mounts = Vec::new();
        let mut secret_env = Vec::new();
        for spec in &run.mounts {
            let m =
                RunMount::parse(spec, &mut |v| Ok(v.to_owned())).map_err(|e| BuildError::Step {
                    location,
                    message: e.message,
                    source: None,
                })?;
            let target = m.target.clone().unwrap_or_default();
            let kind = match m.kind {
                MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let owner = CacheOwner {
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        mode: m.mode.unwrap_or(0o755),
                    };
                    let dir = self
                        .caches
                        .acquire(&id, m.sharing.unwrap_or(Sharing::Shared), owner)
                        .map_err(|e| {
                            Self::err(location, format!("opening cache {id:?}"))(e.into())
                        })?;
                    let kind = MountKind::Bind {
                        source: dir.path().to_owned(),
                        read_only: m.read_only,
                    };
                    holds.push(dir);
                    kind
                }
                MountType::Secret => {
                    let id =
                        m.id.clone()
                            .or_else(|| target.rsplit('/').next().map(str::to_owned))
                            .unwrap_or_default();
                    let Some(data) = self.options.secrets.get(&id) else {
                        if m.required {
                            return Err(BuildError::Step {
                                location,
                                message: format!("secret {id} not found"),
                                source: None,
                            });
                        }
                        continue;
                    };
                    if let Some(var) = &m.env {
                        secret_env.push((var.clone(), String::from_utf8_lossy(data).into_owned()));
                        if m.target.is_none() {
                            continue;
                        }
                    }
                    let target = if target.is_empty() {
                        format!("/run/secrets/{id}")
                    } else {
                        target.clone()
                    };
                    mounts.push(Mount {
                        target,
                        kind: MountKind::Secret {
                            data: data.clone(),
                            uid: m.uid.unwrap_or(0),
                            gid: m.gid.unwrap_or(0),
                            mode: m.mode.unwrap_or(0o400),
                        },
                    });
                    continue;
                }
                MountType::Bind => {
                    let source_root = match &m.from {
                        None => self.options.context.to_owned(),
                        Some(from) => {
                            let view = self.view_of(from, location)?;
                            let path = view.root().to_owned();
                            views.push(view);
                            path
                        }
                    };
                    let rel =
                        crate::ignore::clean(&format!("/{}", m.source.clone().unwrap_or_default()));
                    let source = source_root.join(rel.trim_start_matches('/'));
                    if m.read_only {
                        MountKind::Bind {
                            source,
                            read_only: true,
                        }
                    } else {
                        MountKind::Discarded { source }
                    }
                }
                MountType::Ssh => {
                    return Err(BuildError::Step {
                        location,
                        message: "RUN --mount=type=ssh is not supported by kiln yet".to_owned(),
                        source: None,
                    });
                }
            };
            mounts.push(Mount { target, kind });
        }
        let mut bare = run.clone();
        bare.mounts.clear();
        let shell = state.image.shell();
        let config = &state.image.config.config;
        let mut spec = RunSpec::for_run(
            &bare,
            &state.scope,
            &shell,
            &config.working_dir,
            &config.user,
            Vec::new(),
        )
        .map_err(|e| Self::err(location, "preparing RUN")(e.into()))?;
        spec.mounts = mounts;
        spec.secret_env = secret_env;
        // Proxy build args reach RUN without being declared (and stay out of history).
        for name in PROXY_ARGS {
            if let Some(v) = self.plan.options.build_args.get(name)
                && !spec.env.iter().any(|(k, _)| k == name)
            {
                spec.env.push((name.to_owned(), v.clone()));
            }
        }
        let created_by = format!("RUN {}", run_command_string(&spec.args, &state.scope));
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let options = ExecOptions::new(self.store.tmp_dir());
        let status = crate::exec::run(
            root.root(),
            &spec,
            &options,
            &mut |stream, line| {
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(String::from_utf8_lossy(line).into_owned());
                progress(Event::Output { stream, line });
            },
            &self.options.cancel,
        )
        .map_err(|e| match e {
            crate::exec::ExecError::Cancelled => BuildError::Cancelled { location },
            e => Self::err(location, "running RUN")(e.into()),
        })?;
        drop(views);
        drop(holds);
        if !status.success() {
            return Err(BuildError::RunFailed {
                location,
                command: spec.args.join(" "),
                status,
                output: tail.into(),
            });
        }
        self.commit(state, root, location)?;
        state.image.commit(created_by, true, true);
        Ok(())
    }

    /// A read-only view of a stage's or an image's filesystem, for `--from`.
    fn view_of(&self, from: &str, location: Location) -> Result<Mutable, BuildError> {
        let lower = from.to_ascii_lowercase();
        let stages = &self.plan.stages;
        let stage = stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| from.parse::<usize>().ok().filter(|&i| i < stages.len()));
        let state = match stage {
            Some(i) => self
                .results
                .get(&i)
                .cloned()
                .ok_or_else(|| BuildError::Step {
                    location,
                    message: format!("stage {from:?} has not been built before this step"),
                    source: None,
                })?,
            None => {
                let reference = Reference::parse(from)
                    .map_err(|e| Self::err(location, format!("--from={from}"))(e.into()))?;
                self.image_state(&reference, location)?
            }
        };
        self.mutable(&state, location)
    }

    fn copy(
        &self,
        state: &mut StageState,
        kind: CopyKind<'_>,
        location: Location,
    ) -> Result<(), BuildError> {
        let (keyword, files, flags, from, parents, unpack, checksum) = match kind {
            CopyKind::Copy(c) => (
                "COPY",
                &c.files,
                &c.flags,
                c.from.as_deref(),
                c.parents,
                Unpack::Never,
                None,
            ),
            CopyKind::Add(a) => (
                "ADD",
                &a.files,
                &a.flags,
                None,
                false,
                Unpack::for_add(a.unpack),
                a.checksum.as_deref(),
            ),
        };
        let root = self.mutable(state, location)?;
        let view = from.map(|f| self.view_of(f, location)).transpose()?;
        let source = match &view {
            Some(view) => FileSource {
                root: view.root(),
                visible: None,
                keep_owner: true,
            },
            None => FileSource {
                root: self.options.context,
                visible: Some(&self.visible),
                keep_owner: false,
            },
        };
        let owner = match &flags.chown {
            None => None,
            Some(spec) => {
                let users = UserDb::read(root.root())
                    .map_err(|e| Self::err(location, "reading the image's users")(e.into()))?;
                Some(users.resolve_chown(spec).map_err(|e| BuildError::Step {
                    location,
                    message: e.to_string(),
                    source: None,
                })?)
            }
        };
        let chmod = flags.chmod.as_deref().map(str::parse).transpose().map_err(
            |e: crate::ops::chmod::ChmodError| BuildError::Step {
                location,
                message: e.to_string(),
                source: None,
            },
        )?;
        let op = FileOp {
            keyword,
            sources: &files.sources,
            inline: &files.inline,
            dest: &files.dest,
            workdir: &state.image.config.config.working_dir,
            owner,
            chmod,
            excludes: &flags.excludes,
            parents,
            unpack,
            checksum,
            link: flags.link,
            fetch: None,
            created: self.options.source_date_epoch.unwrap_or(0),
        };
        copy(&source, root.root(), &op).map_err(|e| BuildError::Step {
            location,
            message: e.to_string(),
            source: causes(&e),
        })?;
        drop(view);
        self.commit(state, root, location)?;
        let mut created_by = keyword.to_owned();
        if parents {
            created_by.push_str(" --parents");
        }
        if let Some(chown) = &flags.chown {
            created_by.push_str(&format!(" --chown={chown}"));
        }
        if let Some(chmod) = &flags.chmod {
            created_by.push_str(&format!(" --chmod={chmod}"));
        }
        for s in &files.sources {
            created_by.push_str(&format!(" {s}"));
        }
        for i in &files.inline {
            created_by.push_str(&format!(" <<{}", i.name));
        }
        created_by.push_str(&format!(" {}", files.dest));
        state.image.commit(created_by, true, true);
        Ok(())
    }
}

/// The causes of `e` (its source chain) as one error, so a report keeps them all: a failed
/// download says why (`404 Not Found`, a checksum mismatch), not just which URL.
fn causes(e: &dyn std::error::Error) -> Option<BoxError> {
    let mut parts = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    (!parts.is_empty()).then(|| parts.join(": ").into())
}

enum CopyKind<'a> {
    Copy(&'a Copy),
    Add(&'a Add),
}

/// BuildKit's `runCommandString`: the declared ARGs with their values (`|2 A=1 B=2`), then
/// the command line.
fn run_command_string(args: &[String], scope: &Scope) -> String {
    let env = scope.env_map();
    let declared: Vec<String> = scope
        .args()
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                env.get(k)
                    .cloned()
                    .or_else(|| v.clone())
                    .unwrap_or_default()
            )
        })
        .collect();
    let mut parts = Vec::new();
    if !declared.is_empty() {
        parts.push(format!("|{}", declared.len()));
        parts.extend(declared);
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}
