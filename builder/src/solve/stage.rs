//! One stage of a build: its starting state, then its steps in order, each filesystem step
//! through the build cache ([`Solver::layer_step`]).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use kiln_registry::{Digest, Reference};
use oci_spec::image::MediaType;

use super::cache::{CacheRecord, KeyBuilder, UrlRecord, base_key};
use super::explain::Label;
use super::from::FromView;
use super::{
    BuildError, CacheSource, Event, SkipReason, Solver, StageState, StepEnd, StepStart, step_err,
};
use crate::dockerfile::Location;
use crate::error_chain;
use crate::image::{ImageConfig, descriptor};
use crate::layer::{Compression, Root};
use crate::ops::fetch::{self, FetchError, FetchOptions};
use crate::ops::file::{FileError, FileOp, Source as FileSource, Unpack, copy, is_remote};
use crate::ops::meta::ImageState;
use crate::plan::{Base, CopyOp, Op, Platform, Scope, Source};
use crate::snapshot::{CommitOptions, Mutable, chain_id};
use crate::user::{UserError, chown_in_root};

/// The key inputs every filesystem step shares: the key of the filesystem it runs on, and
/// what else decides the layer's bytes.
pub(super) fn key_on(
    parent: &Digest,
    source_date_epoch: Option<i64>,
    compression: Compression,
) -> KeyBuilder {
    KeyBuilder::on(parent)
        .with("source_date_epoch", source_date_epoch)
        .with("compression", compression.media_type())
}

/// A COPY's or ADD's key inputs besides the content of its sources: the op (instruction,
/// flags, unpack rule) and the working directory its relative paths start from.
pub(super) fn copy_key(on: KeyBuilder, op: &CopyOp, workdir: &str) -> KeyBuilder {
    on.with("copy", op).with("workdir", workdir)
}

/// The step being run, as the progress reader and the explanations name it.
pub(super) struct StepRef<'a> {
    /// The stage as progress names it (after the platform in a build of several).
    pub stage: &'a str,
    /// The stage's own name, as the build's trace keeps it.
    pub name: &'a str,
    /// 1-based step number within the stage.
    pub n: usize,
    /// The instruction as written.
    pub text: &'a str,
    /// Every step's instruction in the stage (to match a step with the last build's).
    pub texts: &'a [&'a str],
    /// Tells the progress reader the step starts, once it is known how.
    pub announce: &'a dyn Fn(StepStart<'_>),
}

impl StepRef<'_> {
    /// The instruction's keyword (`COPY`), for naming the step elsewhere.
    pub fn keyword(&self) -> String {
        self.text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_uppercase()
    }
}

impl Solver<'_> {
    pub(super) fn run_stage(&self, index: usize) -> Result<StageState, BuildError> {
        let stage = &self.plan.stages[index];
        let name = self.stage_name(index);
        let own = stage.display_name();
        let mut state = match &stage.base {
            Base::Scratch => {
                let platform = self.plan.stage_platform(index);
                let mut config = ImageConfig::new(&platform.architecture, &platform.os);
                config.variant = platform.variant.clone();
                with_default_path(&mut config);
                self.trace_base(&own, "scratch".to_owned());
                StageState {
                    // The key names no variant: an empty filesystem is the same for all, and
                    // keys made before variants were kept stay valid.
                    key: base_key(&format!(
                        "scratch {}/{}",
                        platform.os, platform.architecture
                    )),
                    platform,
                    scope: env_scope(&config),
                    image: ImageState::new(config, Some(self.options.created.clone())),
                    layers: Vec::new(),
                    chain: Vec::new(),
                    own_history: 0,
                    newest: None,
                    changed: None,
                }
            }
            Base::Stage(parent) => {
                let mut state = self.stage_result(*parent, stage.location)?.ok_or_else(|| {
                    BuildError::at(stage.location, "the parent stage has not run")
                })?;
                self.trace_base(
                    &own,
                    format!("stage {}", self.plan.stages[*parent].display_name()),
                );
                state.image =
                    ImageState::new(state.image.config, Some(self.options.created.clone()));
                state
            }
            Base::Image(reference) => {
                let platform = self.plan.stage_platform(index);
                let (mut state, digest) = self.image_state(reference, &platform, stage.location)?;
                state.changed = self.base_change(&own, &digest);
                self.trace_base(&own, digest);
                state
            }
        };
        let steps = self
            .plan
            .lower_stage(
                index,
                &state.image.config.config.on_build,
                state.scope.clone(),
            )
            .map_err(|e| BuildError::at(e.location, e.message))?;
        // Triggers run once: the child's image does not carry them on.
        state.image.config.config.on_build.clear();
        let total = steps.len();
        let texts: Vec<&str> = steps.iter().map(|s| s.text.as_str()).collect();
        let skip_from = |from: usize, reason: SkipReason| {
            for (n, step) in steps.iter().enumerate().skip(from) {
                (self.progress)(Event::Skipped {
                    stage: &name,
                    n: n + 1,
                    total,
                    text: &step.text,
                    reason,
                });
            }
        };
        // The stages ONBUILD triggers read (the plan knows only the stage's own `--from`s).
        let known = stage.stage_deps();
        let triggered: BTreeSet<usize> = steps
            .iter()
            .flat_map(|step| stage_sources(&step.op))
            .filter(|i| !known.contains(i) && *i != index)
            .collect();
        for needed in triggered {
            if let Err(e) = self.await_stage(index, needed, stage.location) {
                skip_from(0, SkipReason::Cancelled);
                return Err(e);
            }
        }
        for (n, step) in steps.iter().enumerate() {
            let location = step.location;
            if self.options.cancel.is_cancelled() {
                skip_from(n, SkipReason::Cancelled);
                return Err(BuildError::Cancelled { location });
            }
            let started = Instant::now();
            let how = Cell::new(None);
            let announce = |start: StepStart<'_>| {
                how.set(Some(matches!(start, StepStart::Cached { .. })));
                (self.progress)(Event::Step {
                    stage: &name,
                    n: n + 1,
                    total,
                    text: &step.text,
                    line: location.start_line,
                    start,
                })
            };
            let at = StepRef {
                stage: &name,
                name: &own,
                n: n + 1,
                text: &step.text,
                texts: &texts,
                announce: &announce,
            };
            state.scope = step.scope.clone();
            let result = match &step.op {
                Op::Arg(resolved) => {
                    announce(StepStart::Config);
                    state.image.commit_arg(resolved);
                    Ok(())
                }
                Op::Exec(exec) => self.run(&mut state, exec, location, &at),
                Op::Copy(copy) => self.copy(&mut state, copy, location, &at),
                Op::Meta(meta) => match state.image.apply(meta) {
                    Some(dir) => self.make_workdir(&mut state, &dir, location, &at),
                    None => {
                        announce(StepStart::Config);
                        Ok(())
                    }
                },
            };
            // A step that failed before it could say how it starts ran as far as it got.
            let cached = match how.get() {
                Some(cached) => cached,
                None => {
                    announce(StepStart::Run { why: None });
                    false
                }
            };
            let end = match &result {
                Ok(()) if cached => StepEnd::Cached,
                Ok(()) => StepEnd::Done,
                Err(BuildError::Cancelled { .. }) => StepEnd::Cancelled,
                Err(_) => StepEnd::Failed,
            };
            (self.progress)(Event::StepDone {
                stage: &name,
                n: n + 1,
                end,
                elapsed: started.elapsed(),
            });
            if let Err(e) = result {
                let reason = match e {
                    BuildError::Cancelled { .. } => SkipReason::Cancelled,
                    _ => SkipReason::EarlierStepFailed,
                };
                skip_from(n + 1, reason);
                return Err(e);
            }
        }
        self.trace_done(&own);
        Ok(state)
    }

    /// How progress names stage `index`: its name, after the platform's in a build of several.
    pub(super) fn stage_name(&self, index: usize) -> String {
        let name = self.plan.stages[index].display_name();
        match &self.platform_label {
            Some(platform) => format!("{platform} {name}"),
            None => name,
        }
    }

    /// A finished stage's final state.
    pub(super) fn stage_result(
        &self,
        index: usize,
        location: Location,
    ) -> Result<Option<StageState>, BuildError> {
        let results = self
            .results
            .lock()
            .map_err(|_| BuildError::at(location, "another stage panicked"))?;
        Ok(results.get(&index).cloned())
    }

    /// The state of a stage starting from an image for `platform` (its config, layers and
    /// snapshots), and the image's manifest digest.
    pub(super) fn image_state(
        &self,
        reference: &Reference,
        platform: &Platform,
        location: Location,
    ) -> Result<(StageState, String), BuildError> {
        let err =
            |m: &str| step_err::<crate::store::StoreError>(location, format!("{m} {reference}"));
        let desc = self.resolve(reference, platform, location)?;
        let manifest = self
            .store
            .read_manifest(&desc)
            .map_err(err("reading the manifest of"))?;
        let config = self
            .store
            .read_config(&manifest)
            .map_err(err("reading the config of"))?;
        // Its layers are unpacked when a step first needs the root ([`Solver::mutable`]), so a
        // base whose layers are not fetched yet (built from a lazy cache import) stays so
        // through steps that only change the config.
        if manifest.layers().len() != config.rootfs.diff_ids.len() {
            return Err(BuildError::at(
                location,
                format!(
                    "{reference} has {} layers but its config lists {} diff_ids",
                    manifest.layers().len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        let chain = crate::snapshot::chain_ids(&config.rootfs.diff_ids);
        let mut config = config;
        with_default_path(&mut config);
        // A base's inline cache describes the base's build, not this one's.
        config.extra.remove(crate::cache_io::format::INLINE_KEY);
        let state = StageState {
            platform: platform.clone(),
            layers: manifest.layers().clone(),
            chain,
            key: base_key(&format!("image {}", desc.digest())),
            own_history: config.history.len(),
            newest: None,
            scope: env_scope(&config),
            image: ImageState::new(config, Some(self.options.created.clone())),
            changed: None,
        };
        Ok((state, desc.digest().to_string()))
    }

    pub(super) fn mutable(
        &self,
        state: &StageState,
        location: Location,
    ) -> Result<Mutable, BuildError> {
        // Layers (a base's, and those taken from the cache) are unpacked here, when a root
        // first needs them (and one not fetched yet is fetched first).
        self.snapshots
            .prepare_chain(self.store, &state.layers, &state.chain)
            .map_err(step_err(location, "unpacking a layer"))?;
        self.snapshots
            .mutable(&state.chain)
            .map_err(step_err(location, "preparing a root filesystem"))
    }

    /// The key inputs every filesystem step shares: what else decides the layer's bytes.
    pub(super) fn key_on(&self, state: &StageState) -> KeyBuilder {
        key_on(
            &state.key,
            self.options.source_date_epoch,
            self.options.compression,
        )
    }

    /// A filesystem step through the cache: with a record for `key` (and `--no-cache` not
    /// given, or this build made it: another platform ran the step), the recorded layer is
    /// stacked on the stage; otherwise `work` changes a writable root, which becomes the layer,
    /// recorded under `key`, and the step is announced with the reason it missed. Without a
    /// key (a step whose inputs cannot be known beforehand) the step always runs, and what
    /// follows is keyed on the content of the layer it made. A step whose key another platform
    /// is running waits for it ([`super::flight`]).
    pub(super) fn layer_step(
        &self,
        state: &mut StageState,
        key: Option<KeyBuilder>,
        location: Location,
        step: &StepRef<'_>,
        work: impl FnOnce(&Mutable) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        let last = self
            .last
            .as_ref()
            .and_then(|t| t.matching(step.name, step.n, step.text, step.texts));
        let keyed = key.map(|k| (k.finish(), k.inputs()));
        // `--explain`: the key's input tree, right after the step's line.
        let explained = keyed
            .as_ref()
            .filter(|_| self.options.explain.contains(&location.start_line))
            .map(|(key, inputs)| self.traces.key_inputs(key, inputs));
        let announce = |start: StepStart<'_>| {
            (step.announce)(start);
            if let Some(inputs) = &explained {
                (self.progress)(Event::Inputs {
                    stage: step.stage,
                    n: step.n,
                    inputs,
                });
            }
        };
        let _claim = keyed.as_ref().map(|(key, _)| self.flights.claim(key));
        if self.options.cancel.is_cancelled() {
            return Err(BuildError::Cancelled { location });
        }
        if let Some((key, inputs)) = &keyed
            && (!self.options.no_cache || self.made_here(key))
            && let Some((record, from)) = self.cached(key, location)
        {
            announce(StepStart::Cached {
                from: match &from {
                    None => CacheSource::Local,
                    Some(name) => CacheSource::Import(name),
                },
            });
            // Its snapshot is made when a later step needs the root ([`Solver::mutable`]): a
            // stage that is cached to its end never reads its layers.
            let chain_id = chain_id(state.chain.last(), &record.diff_id);
            stack(state, chain_id, &record);
            self.keep_step(key, &record);
            self.trace_step(state, step, last, key, inputs, location, false);
            state.key = key.clone();
            return Ok(());
        }
        let miss = keyed
            .as_ref()
            .map(|(_, inputs)| self.explain(state, step, last, inputs));
        announce(StepStart::Run { why: miss.as_ref() });
        let root = self.mutable(state, location)?;
        work(&root)?;
        let record = self.commit(state, root, location)?;
        state.key = match keyed {
            Some((key, inputs)) => {
                self.cache
                    .put(&key, &record)
                    .map_err(step_err(location, "recording the step in the build cache"))?;
                self.keep_step(&key, &record);
                self.trace_step(state, step, last, &key, &inputs, location, true);
                key
            }
            None => KeyBuilder::on(&state.key)
                .with("layer", record.diff_id.to_string())
                .finish(),
        };
        Ok(())
    }

    /// The record of `key` with its layer in the store: the local cache's, else an imported
    /// cache's (its layer fetched now and recorded locally). An imported record that cannot be
    /// used is a warning and a miss, never a failed build.
    fn cached(&self, key: &Digest, location: Location) -> Option<(CacheRecord, Option<String>)> {
        if let Some(record) = self.cache.get(key)
            && self.store.is_available(&record.digest)
        {
            return Some((record, None));
        }
        match self
            .options
            .imports?
            .fetch(key, self.store, self.options.compression)
        {
            Ok(Some((record, origin))) => {
                // Only a shortcut for the next build: without it the import is asked again.
                let _ = self.cache.put(key, &record);
                Some((record, Some(origin)))
            }
            Ok(None) => None,
            Err(e) => {
                let message = format!(
                    "line {}: the imported cache record cannot be used, running the step: {}",
                    location.start_line,
                    error_chain(&*e)
                );
                (self.progress)(Event::Warning { message: &message });
                None
            }
        }
    }

    /// Whether this build (another platform of it) ran the step keyed `key`.
    fn made_here(&self, key: &Digest) -> bool {
        self.steps.lock().is_ok_and(|steps| steps.contains_key(key))
    }

    /// Remembers a keyed step's record for [`super::Built::steps`].
    fn keep_step(&self, key: &Digest, record: &CacheRecord) {
        if let Ok(mut steps) = self.steps.lock() {
            steps.insert(key.clone(), record.clone());
        }
    }

    /// Writes the change of `root` as a layer into the store and stacks it on the stage.
    fn commit(
        &self,
        state: &mut StageState,
        root: Mutable,
        location: Location,
    ) -> Result<CacheRecord, BuildError> {
        let mut writer = self
            .store
            .blob_writer()
            .map_err(step_err(location, "writing a layer"))?;
        let options = CommitOptions {
            compression: self.options.compression,
            source_date_epoch: self.options.source_date_epoch,
        };
        let committed = root
            .commit(&options, &mut writer)
            .map_err(step_err(location, "writing a layer"))?;
        let layer = committed.layer().clone();
        writer
            .commit_verified(&layer.digest, layer.size)
            .map_err(step_err(location, "storing a layer"))?;
        if let Some(watcher) = self.options.layers {
            watcher.layer_made(&layer.digest);
        }
        let chain_id = committed.chain_id().clone();
        committed
            .keep(self.snapshots)
            .map_err(step_err(location, "keeping a snapshot"))?;
        let record = CacheRecord {
            media_type: layer.media_type.to_owned(),
            digest: layer.digest,
            size: layer.size,
            diff_id: layer.diff_id,
            created: self.options.created.clone(),
        };
        stack(state, chain_id, &record);
        Ok(record)
    }

    fn make_workdir(
        &self,
        state: &mut StageState,
        dir: &str,
        location: Location,
        step: &StepRef<'_>,
    ) -> Result<(), BuildError> {
        let user = state.image.config.config.user.clone();
        let key = self
            .key_on(state)
            .with("workdir", dir)
            .with("user", user.as_str());
        let created = self.options.source_date_epoch.unwrap_or(0);
        self.layer_step(state, Some(key), location, step, |root| {
            let comps: Vec<Vec<u8>> = dir
                .split('/')
                .filter(|c| !c.is_empty())
                .map(|c| c.as_bytes().to_vec())
                .collect();
            let existing = Root::open(root.root())
                .and_then(|r| r.dir(&comps))
                .map_err(step_err(location, format!("resolving WORKDIR {dir}")))?;
            if existing.is_some() {
                return Ok(());
            }
            let owner = match chown_in_root(root.root(), &user) {
                Ok(owner) => owner,
                Err(e @ UserError::File { .. }) => {
                    return Err(BuildError::at(location, error_chain(&e)));
                }
                // No USER, or one the image does not know: root-owned; a RUN under it says why.
                Err(_) => (0, 0),
            };
            // The parents are resolved inside the root by the file op; WORKDIR's own directory
            // is created with the user as owner, as BuildKit does.
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
                downloaded: None,
                created,
            };
            let empty = tempfile::tempdir().map_err(step_err(location, "creating WORKDIR"))?;
            let source = FileSource {
                root: empty.path(),
                visible: None,
                keep_owner: false,
            };
            copy(&source, root.root(), &op)
                .map_err(step_err(location, format!("creating WORKDIR {dir}")))
        })
    }

    fn copy(
        &self,
        state: &mut StageState,
        op: &CopyOp,
        location: Location,
        step: &StepRef<'_>,
    ) -> Result<(), BuildError> {
        let CopyOp {
            files,
            flags,
            parents,
            unpack,
            ..
        } = op;
        let (parents, unpack) = (*parents, *unpack);
        let keyword = op.keyword.as_str();
        let (from, checksum) = (op.from.as_ref(), op.checksum.as_deref());
        let workdir = state.image.config.config.working_dir.clone();
        let mut key = Some(copy_key(self.key_on(state), op, &workdir));
        if let Some(from) = from {
            let key_of_from = self.key_of_from(from, location)?;
            key = key.map(|k| k.labelled("from", &key_of_from, self.label_of_from(from)));
        }
        // An unpinned URL is asked for now and the step keyed on its body (BuildKit's HTTP
        // source), so an unchanged file leaves this step and the next ones cached. The request
        // is conditional on what it answered last time; when nothing changed, the body is
        // fetched only if the step has to run.
        let fetch_options = FetchOptions::from_env();
        let mut downloaded = BTreeMap::new();
        let mut unchanged = BTreeMap::new();
        for source in &files.sources {
            key = match (from, is_remote(source), checksum) {
                (Some(_), ..) => key,
                (None, true, Some(sum)) => key.map(|k| k.with("checksum", sum)),
                (None, true, None) => {
                    let seen = self.cache.url(source);
                    let validators = seen.as_ref().map(|r| r.validators.clone());
                    let fetched = fetch::download_if_changed(
                        source,
                        None,
                        &validators.unwrap_or_default(),
                        &fetch_options,
                    )
                    .map_err(|e| download_err(location, source, e))?;
                    let record = match fetched {
                        Some(body) => {
                            let record = UrlRecord::of(&body);
                            // Only a shortcut for the next build: losing it costs a download.
                            let _ = self.cache.put_url(source, &record);
                            downloaded.insert(source.clone(), body);
                            record
                        }
                        None => {
                            let record = seen.expect("a conditional request had validators");
                            unchanged.insert(source.clone(), record.digest.clone());
                            record
                        }
                    };
                    key.map(|k| {
                        k.labelled(
                            "download",
                            record.digest.to_string(),
                            Label::Url(fetch::redacted(source)),
                        )
                        .with("last_modified", record.last_modified)
                    })
                }
                (None, false, _) => {
                    let sum = self.sums.of_source(source).map_err(step_err(
                        location,
                        format!("reading {source} in the context"),
                    ))?;
                    key.map(|k| k.labelled("source", sum.to_string(), Label::Files(source.clone())))
                }
            };
        }
        let created = self.options.source_date_epoch.unwrap_or(0);
        self.layer_step(state, key, location, step, |root| {
            let mut downloaded = downloaded;
            for (url, digest) in unchanged {
                let body = fetch::download(&url, None, &fetch_options)
                    .map_err(|e| download_err(location, &url, e))?;
                if body.digest != digest {
                    // Not what the server called unchanged a moment ago, so not what the step
                    // is keyed on: remember the new body, so the next build keys on it.
                    let _ = self.cache.put_url(&url, &UrlRecord::of(&body));
                    return Err(BuildError::at(
                        location,
                        format!(
                            "{} changed while building (its server said it had not): build again",
                            fetch::redacted(&url)
                        ),
                    ));
                }
                downloaded.insert(url, body);
            }
            let view = from.map(|f| self.view_of(f, location)).transpose()?;
            let source = match &view {
                Some(FromView::Snapshot(view)) => FileSource {
                    root: view.root(),
                    visible: None,
                    keep_owner: true,
                },
                Some(FromView::Local { dir, sums }) => FileSource {
                    root: dir,
                    visible: Some(sums.visible()),
                    keep_owner: false,
                },
                None => FileSource {
                    root: self.options.context,
                    visible: Some(self.sums.visible()),
                    keep_owner: false,
                },
            };
            let owner = match &flags.chown {
                None => None,
                Some(spec) => Some(
                    chown_in_root(root.root(), spec)
                        .map_err(|e| BuildError::at(location, error_chain(&e)))?,
                ),
            };
            let chmod = flags.chmod.as_deref().map(str::parse).transpose().map_err(
                |e: crate::ops::chmod::ChmodError| BuildError::at(location, e.to_string()),
            )?;
            let op = FileOp {
                keyword,
                sources: &files.sources,
                inline: &files.inline,
                dest: &files.dest,
                workdir: &workdir,
                owner,
                chmod,
                excludes: &flags.excludes,
                parents,
                unpack,
                checksum,
                link: flags.link,
                fetch: None,
                downloaded: Some(&downloaded),
                created,
            };
            copy(&source, root.root(), &op).map_err(|e| BuildError::Step {
                location,
                message: e.to_string(),
                source: causes(&e),
            })
        })?;
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

/// The stages an op reads files from.
fn stage_sources(op: &Op) -> Vec<usize> {
    let sources: Vec<&Source> = match op {
        Op::Copy(copy) => copy.from.iter().collect(),
        Op::Exec(exec) => exec.sources.iter().flatten().collect(),
        Op::Arg(_) | Op::Meta(_) => Vec::new(),
    };
    sources
        .into_iter()
        .filter_map(|s| match s {
            Source::Stage(i) => Some(*i),
            _ => None,
        })
        .collect()
}

/// Stacks a layer on the stage: its snapshot, its diffID, its descriptor and its time.
fn stack(state: &mut StageState, chain_id: Digest, record: &CacheRecord) {
    if state
        .newest
        .as_ref()
        .is_none_or(|t| crate::image::clock::is_later(&record.created, t))
    {
        state.newest = Some(record.created.clone());
    }
    state.chain.push(chain_id);
    state
        .image
        .config
        .rootfs
        .diff_ids
        .push(record.diff_id.clone());
    state.layers.push(descriptor(
        MediaType::from(record.media_type.as_str()),
        &record.digest,
        record.size,
    ));
}

/// Adds [`DEFAULT_PATH`](crate::exec::DEFAULT_PATH) to a base's environment when it has no
/// PATH, as BuildKit does at FROM (`scratch` included).
fn with_default_path(config: &mut ImageConfig) {
    let env = &mut config.config.env;
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={}", crate::exec::DEFAULT_PATH));
    }
}

/// The variables a stage starts with: its base's environment.
fn env_scope(config: &ImageConfig) -> Scope {
    Scope::new(
        config
            .config
            .env
            .iter()
            .map(|e| {
                e.split_once('=')
                    .map_or((e.clone(), String::new()), |(k, v)| {
                        (k.to_owned(), v.to_owned())
                    })
            })
            .collect(),
    )
}

/// A failed download of `url`, at the step's line.
fn download_err(location: Location, url: &str, cause: FetchError) -> BuildError {
    let e = FileError::Download {
        url: fetch::redacted(url),
        source: cause,
    };
    BuildError::Step {
        location,
        message: e.to_string(),
        source: causes(&e),
    }
}

/// The causes of `e` (its source chain) as one error, so a report keeps them all: a failed
/// download says why (`404 Not Found`, a checksum mismatch), not just which URL.
fn causes(e: &dyn std::error::Error) -> Option<super::BoxError> {
    let mut parts = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    (!parts.is_empty()).then(|| parts.join(": ").into())
}
