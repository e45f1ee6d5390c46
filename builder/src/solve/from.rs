//! What `--from` reads (COPY --from, RUN --mount from a stage or an image, a named
//! context): the key that identifies its files, what an explanation calls it, and a read-only
//! view of them while a step reads them.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::checksum::ContextSums;
use super::explain::Label;
use super::{BuildError, Report, Solver, StageState, step_err};
use crate::dockerfile::Location;
use crate::plan::Source;
use crate::snapshot::Mutable;

impl Solver<'_> {
    /// What identifies the files a `--from` reads: a stage's key, an image's manifest, or the
    /// checksum of a local context's whole visible tree.
    pub(super) fn key_of_from(
        &self,
        from: &Source,
        location: Location,
    ) -> Result<String, BuildError> {
        match from {
            Source::Stage(i) => Ok(self.built_stage(*i, location)?.key.to_string()),
            Source::Image(reference) => Ok(self
                .resolve(reference, &self.plan.options.platform, location)?
                .digest()
                .to_string()),
            Source::Local(dir) => {
                let sum = self
                    .local(dir, location)?
                    .1
                    .of_source("/")
                    .map_err(step_err(
                        location,
                        format!("reading the build context {}", dir.display()),
                    ))?;
                Ok(sum.to_string())
            }
        }
    }

    /// What a `--from` refers to, for explanations.
    pub(super) fn label_of_from(&self, from: &Source) -> Label {
        match from {
            Source::Stage(i) => Label::Stage(self.plan.stages[*i].display_name()),
            Source::Image(reference) => Label::Image(reference.to_string()),
            Source::Local(dir) => Label::Files(dir.display().to_string()),
        }
    }

    /// A `--build-context NAME=DIR` directory and its checksums.
    fn local(&self, dir: &Path, location: Location) -> Result<(&Path, &ContextSums), BuildError> {
        self.locals
            .get_key_value(dir)
            .map(|(dir, sums)| (dir.as_path(), sums))
            .ok_or_else(|| {
                BuildError::at(
                    location,
                    format!("{} is not a build context", dir.display()),
                )
            })
    }

    /// A stage that a `--from` needs, which the plan's order has built already.
    fn built_stage(&self, index: usize, location: Location) -> Result<StageState, BuildError> {
        self.stage_result(index, location)?.ok_or_else(|| {
            BuildError::at(
                location,
                format!(
                    "stage {:?} has not been built before this step",
                    self.plan.stages[index].display_name()
                ),
            )
        })
    }

    /// Waits for stage `index`, which stage `current`'s ONBUILD triggers read: the scheduler
    /// is asked for it (the plan's order may not have it) and the wait lasts until it lands or
    /// the build is cancelled (its failure cancels the build).
    pub(super) fn await_stage(
        &self,
        current: usize,
        index: usize,
        location: Location,
    ) -> Result<(), BuildError> {
        if self.depends_on(index, current) {
            return Err(BuildError::at(
                location,
                format!(
                    "stage {:?} cannot run before stage {:?}: it needs it, and an ONBUILD \
                     trigger of {:?} reads it",
                    self.plan.stages[index].display_name(),
                    self.plan.stages[current].display_name(),
                    self.plan.stages[current].display_name(),
                ),
            ));
        }
        if let Ok(scheduler) = self.scheduler.lock()
            && let Some(scheduler) = scheduler.as_ref()
        {
            let _ = scheduler.send(Report::Needs(index));
        }
        let lost = |_| BuildError::at(location, "another stage panicked");
        let mut results = self.results.lock().map_err(lost)?;
        loop {
            if results.contains_key(&index) {
                return Ok(());
            }
            if self.options.cancel.is_cancelled() {
                return Err(BuildError::Cancelled { location });
            }
            results = self
                .landed
                .wait_timeout(results, Duration::from_millis(100))
                .map_err(|_| BuildError::at(location, "another stage panicked"))?
                .0;
        }
    }

    /// Whether stage `index` needs stage `other` (through its base or its `--from`s, however
    /// far down).
    fn depends_on(&self, index: usize, other: usize) -> bool {
        let mut seen = BTreeSet::new();
        let mut next = vec![index];
        while let Some(i) = next.pop() {
            if i == other {
                return true;
            }
            if seen.insert(i) {
                next.extend(self.plan.stages[i].stage_deps());
            }
        }
        false
    }

    /// What a `--from` reads: a read-only view of a stage's or an image's filesystem, or a
    /// local context directory.
    pub(super) fn view_of(
        &self,
        from: &Source,
        location: Location,
    ) -> Result<FromView<'_>, BuildError> {
        let state = match from {
            Source::Stage(i) => self.built_stage(*i, location)?,
            // An image `--from` is for the platform built for, as BuildKit resolves it.
            Source::Image(reference) => {
                self.image_state(reference, &self.plan.options.platform, location)?
                    .0
            }
            Source::Local(dir) => {
                let (dir, sums) = self.local(dir, location)?;
                return Ok(FromView::Local { dir, sums });
            }
        };
        Ok(FromView::Snapshot(Box::new(
            self.mutable(&state, location)?,
        )))
    }
}

/// What a `--from` reads (see [`Solver::view_of`]): a read-only snapshot view, held while the
/// step reads it, or a `--build-context` directory with what its `.dockerignore` lets through.
pub(super) enum FromView<'a> {
    /// A stage's or an image's filesystem.
    Snapshot(Box<Mutable>),
    /// A local context.
    Local {
        /// The directory.
        dir: &'a Path,
        /// Its checksums and visible paths.
        sums: &'a ContextSums,
    },
}

impl FromView<'_> {
    /// The directory the files are read from.
    pub(super) fn root(&self) -> &Path {
        match self {
            FromView::Snapshot(view) => view.root(),
            FromView::Local { dir, .. } => dir,
        }
    }
}
