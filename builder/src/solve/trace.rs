//! The solver's side of explanations ([`super::explain`]): what each keyed step's inputs
//! were, recorded as the build goes, the reason a step misses, and the build's trace saved
//! for the next one. The last build's steps are matched by stage name and instruction, so a
//! line added above a step does not make it look changed.

use std::path::Path;

use kiln_registry::Digest;

use super::explain::{self, Change, Input, Label, Miss, StepTrace, Why};
use super::stage::StepRef;
use super::{Solver, StageState};
use crate::dockerfile::Location;
use crate::plan::Plan;

/// The name a build's trace is kept under: the Dockerfile's absolute path, the target stage
/// and the platform.
pub(super) fn identity(dockerfile: &Path, plan: &Plan) -> String {
    let path = std::fs::canonicalize(dockerfile).unwrap_or_else(|_| dockerfile.to_owned());
    format!(
        "{}\n{}\n{}",
        path.display(),
        plan.stages[plan.target].display_name(),
        plan.options.platform
    )
}

impl Solver<'_> {
    /// Records what stage `name` starts from.
    pub(super) fn trace_base(&self, name: &str, base: String) {
        if let Ok(mut trace) = self.trace.lock() {
            trace.0.bases.insert(name.to_owned(), base);
        }
    }

    /// The change of stage `name`'s base image since the last build, if it is another one.
    pub(super) fn base_change(&self, name: &str, digest: &str) -> Option<Change> {
        let was = self.last.as_ref()?.bases.get(name)?;
        (was.starts_with("sha256:") && was != digest).then(|| Change::Base {
            was: was.clone(),
            now: digest.to_owned(),
        })
    }

    /// Records a keyed step of this build, and notes it as the stage's first change when its
    /// key is not the last build's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn trace_step(
        &self,
        state: &mut StageState,
        step: &StepRef<'_>,
        last: Option<&StepTrace>,
        key: &Digest,
        inputs: &[Input],
        location: Location,
        ran: bool,
    ) {
        if state.changed.is_none() && last.is_none_or(|l| &l.key != key) {
            state.changed = Some(Change::Step {
                keyword: step.keyword(),
                at: format!("{}:{}", self.file_name(), location.start_line),
                ran,
            });
        }
        if let Ok(mut trace) = self.trace.lock() {
            trace
                .0
                .stages
                .entry(step.name.to_owned())
                .or_default()
                .insert(
                    step.n,
                    StepTrace {
                        text: step.text.to_owned(),
                        key: key.clone(),
                        inputs: inputs.to_vec(),
                    },
                );
        }
    }

    /// Notes that stage `name` ran to its end: its steps in the saved trace are this build's
    /// only.
    pub(super) fn trace_done(&self, name: &str) {
        if let Ok(mut trace) = self.trace.lock() {
            trace.1.insert(name.to_owned());
        }
    }

    /// Why the step about to run had no cache record.
    pub(super) fn explain(
        &self,
        state: &StageState,
        step: &StepRef<'_>,
        last: Option<&StepTrace>,
        inputs: &[Input],
    ) -> Miss {
        let why = if self.options.no_cache {
            Why::NoCache
        } else {
            explain::explain(
                last,
                step.text,
                inputs,
                state.changed.as_ref(),
                &|label| self.label_why(label),
                &|was, now| self.traces.diff_trees(was, now),
            )
        };
        Miss {
            why,
            imports: self.options.imports.map(|i| i.names()).unwrap_or_default(),
        }
    }

    /// What a changed input with `label` means, when the label knows more than the values.
    fn label_why(&self, label: &Label) -> Option<Why> {
        let Label::Stage(stage) = label else {
            return None;
        };
        let index = self
            .plan
            .stages
            .iter()
            .position(|s| &s.display_name() == stage)?;
        let change = self
            .results
            .lock()
            .ok()
            .and_then(|r| r.get(&index).and_then(|s| s.changed.clone()));
        Some(Why::Stage {
            stage: stage.clone(),
            change,
        })
    }

    /// How explanations name the Dockerfile.
    fn file_name(&self) -> String {
        self.options
            .dockerfile
            .and_then(|p| p.file_name())
            .map_or_else(
                || "Dockerfile".to_owned(),
                |n| n.to_string_lossy().into_owned(),
            )
    }

    /// Saves this build's trace over the last one: a stage that finished replaces its steps,
    /// one that stopped early only those it reached.
    pub(super) fn save_trace(&self) -> Result<(), crate::store::StoreError> {
        let Some(identity) = &self.identity else {
            return Ok(());
        };
        let Ok(trace) = self.trace.lock() else {
            return Ok(());
        };
        let (fresh, finished) = &*trace;
        let mut merged = self.last.clone().unwrap_or_default();
        merged.bases.extend(fresh.bases.clone());
        for name in finished {
            merged.stages.remove(name);
        }
        for (name, steps) in &fresh.stages {
            merged
                .stages
                .entry(name.clone())
                .or_default()
                .extend(steps.clone());
        }
        self.traces.save(identity, &merged, self.last.as_ref())
    }
}
