//! The live view of `--progress=tty`: the lines of finished steps scroll above one spinner
//! per running stage, which shows the stage's current step and its latest output line.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_builder::solve::Event;

/// The bars on the terminal.
#[derive(Debug)]
pub(super) struct Live {
    bars: MultiProgress,
    stages: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Live {
    pub(super) fn new() -> Self {
        Self {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            stages: Mutex::default(),
        }
    }

    /// Prints a line above the bars.
    pub(super) fn println(&self, text: &str) {
        let _ = self.bars.println(text);
    }

    /// Takes the bars down.
    pub(super) fn finish(&self) {
        if let Ok(mut stages) = self.stages.lock() {
            for (_, bar) in std::mem::take(&mut *stages) {
                bar.finish_and_clear();
            }
        }
    }

    /// Shows event (of step `id`).
    pub(super) fn event(&self, id: usize, event: &Event<'_>, imported: Option<&str>) {
        let Ok(mut stages) = self.stages.lock() else {
            return;
        };
        match event {
            Event::Output { stage, line, .. } => {
                if let Some(bar) = stages.get(*stage) {
                    let line = String::from_utf8_lossy(line);
                    let line: String = line.chars().take(120).collect();
                    bar.set_message(format!("#{id} {line}"));
                }
            }
            Event::Step { stage, .. } => {
                let lines = super::plain(id, imported, event);
                for line in &lines {
                    let _ = self.bars.println(line);
                }
                let bar = stages.entry((*stage).to_owned()).or_insert_with(|| {
                    let bar = self.bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(lines.first().cloned().unwrap_or_default());
            }
            _ => {
                for line in super::plain(id, imported, event) {
                    let _ = self.bars.println(line);
                }
            }
        }
    }
}
