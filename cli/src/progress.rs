//! How `kiln build` reports its steps (`--progress`): `plain` lines for logs and CI, a live
//! `tty` view of the running stages, or `json` lines for machines. `auto` is `tty` when
//! standard error is a terminal and `plain` otherwise. Everything goes to standard error;
//! standard output carries only the image ID.
//!
//! Plain lines: `[stage n/total] INSTRUCTION` when a step starts, `CACHED [stage n/total] …`
//! when it comes from the cache, and the step's output indented below it (prefixed with the
//! stage's name when several stages run, since their lines interleave), and `warning: …` lines
//! (printed even with `-q`: an imported cache record that could not be used).
//! JSON lines: `{"type":"step","stage":…,"step":n,"total":…,"instruction":…,"cached":…}` and
//! `{"type":"output","stage":…,"stream":"stdout"|"stderr","line":…}` and
//! `{"type":"warning","message":…}`; the command adds
//! `{"type":"done",…}` or `{"type":"error",…}` at the end.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_builder::exec::Stream;
use kiln_builder::solve::Event;

/// `--progress` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `tty` on a terminal, else `plain`.
    Auto,
    /// A live view of the running steps.
    Tty,
    /// One line per event.
    Plain,
    /// One JSON object per line.
    Json,
    /// Nothing but errors (`-q`).
    Quiet,
}

/// Reports build events; shared by the threads of parallel stages.
#[derive(Debug)]
pub struct Reporter {
    mode: Mode,
    /// Whether to name the stage on output lines (several stages run).
    stage_names: bool,
    live: Option<Live>,
}

/// The live view: one spinner per running stage.
#[derive(Debug)]
struct Live {
    bars: MultiProgress,
    stages: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Reporter {
    /// A reporter for `mode`, naming stages on output lines when `stages` > 1.
    pub fn new(mode: Mode, stages: usize) -> Self {
        let mode = match mode {
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Tty,
            Mode::Auto => Mode::Plain,
            other => other,
        };
        let live = (mode == Mode::Tty).then(|| Live {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            stages: Mutex::default(),
        });
        Self {
            mode,
            stage_names: stages > 1,
            live,
        }
    }

    /// Whether events are JSON (the command then reports its end as JSON too).
    pub fn is_json(&self) -> bool {
        self.mode == Mode::Json
    }

    /// Prints a line of the command's own (not while the live view is drawing over it).
    pub fn line(&self, text: &str) {
        match (&self.live, self.mode) {
            (_, Mode::Quiet | Mode::Json) => {}
            (Some(live), _) => {
                let _ = live.bars.println(text);
            }
            (None, _) => eprintln!("{text}"),
        }
    }

    /// Takes the live view down, so what follows prints normally.
    pub fn finish(&self) {
        if let Some(live) = &self.live
            && let Ok(mut stages) = live.stages.lock()
        {
            for (_, bar) in std::mem::take(&mut *stages) {
                bar.finish_and_clear();
            }
        }
    }

    /// Reports one event.
    pub fn event(&self, event: Event<'_>) {
        match self.mode {
            Mode::Quiet | Mode::Auto => {
                if let Event::Warning { message } = event {
                    eprintln!("warning: {message}");
                }
            }
            Mode::Plain => eprintln!("{}", self.plain(&event)),
            Mode::Json => eprintln!("{}", json(&event)),
            Mode::Tty => {
                if let Some(live) = &self.live {
                    self.live_event(live, &event);
                }
            }
        }
    }

    fn plain(&self, event: &Event<'_>) -> String {
        match event {
            Event::Step {
                stage,
                n,
                total,
                text,
                cached,
            } => {
                let cached = if *cached { "CACHED " } else { "" };
                format!("{cached}[{stage} {n}/{total}] {}", first_line(text))
            }
            Event::Warning { message } => format!("warning: {message}"),
            Event::Output { stage, line, .. } => {
                let line = String::from_utf8_lossy(line);
                if self.stage_names {
                    format!("  {stage} | {line}")
                } else {
                    format!("  {line}")
                }
            }
        }
    }

    fn live_event(&self, live: &Live, event: &Event<'_>) {
        let Ok(mut stages) = live.stages.lock() else {
            return;
        };
        match event {
            Event::Step { stage, .. } => {
                // The step line stays above the spinners; the spinner shows what runs now.
                let _ = live.bars.println(self.plain(event));
                let bar = stages.entry((*stage).to_owned()).or_insert_with(|| {
                    let bar = live.bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(self.plain(event));
            }
            Event::Warning { .. } => {
                let _ = live.bars.println(self.plain(event));
            }
            Event::Output { stage, line, .. } => {
                if let Some(bar) = stages.get(*stage) {
                    let line = String::from_utf8_lossy(line);
                    let line: String = line.chars().take(120).collect();
                    bar.set_message(format!("[{stage}] {line}"));
                }
            }
        }
    }
}

/// The first line of an instruction (a heredoc's body is not part of the step line).
fn first_line(text: &str) -> String {
    match text.split_once('\n') {
        Some((first, _)) => format!("{first} …"),
        None => text.to_owned(),
    }
}

fn json(event: &Event<'_>) -> serde_json::Value {
    match event {
        Event::Step {
            stage,
            n,
            total,
            text,
            cached,
        } => serde_json::json!({
            "type": "step", "stage": stage, "step": n, "total": total,
            "instruction": text, "cached": cached,
        }),
        Event::Warning { message } => serde_json::json!({
            "type": "warning", "message": message,
        }),
        Event::Output {
            stage,
            stream,
            line,
        } => serde_json::json!({
            "type": "output", "stage": stage,
            "stream": match stream { Stream::Stdout => "stdout", Stream::Stderr => "stderr" },
            "line": String::from_utf8_lossy(line),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_where_a_step_is_and_whether_it_ran() {
        let one = Reporter::new(Mode::Plain, 1);
        let two = Reporter::new(Mode::Plain, 2);
        let step = |cached| Event::Step {
            stage: "build",
            n: 2,
            total: 5,
            text: "RUN <<EOF\necho hi\nEOF",
            cached,
        };
        assert_eq!(one.plain(&step(false)), "[build 2/5] RUN <<EOF …");
        assert_eq!(one.plain(&step(true)), "CACHED [build 2/5] RUN <<EOF …");
        let output = Event::Output {
            stage: "build",
            stream: Stream::Stdout,
            line: b"hi",
        };
        assert_eq!(one.plain(&output), "  hi");
        assert_eq!(two.plain(&output), "  build | hi");
    }

    #[test]
    fn json_lines_carry_every_field() {
        let v = json(&Event::Step {
            stage: "s",
            n: 1,
            total: 3,
            text: "COPY . /app",
            cached: true,
        });
        assert_eq!(
            v.to_string(),
            r#"{"cached":true,"instruction":"COPY . /app","stage":"s","step":1,"total":3,"type":"step"}"#
        );
        let v = json(&Event::Output {
            stage: "s",
            stream: Stream::Stderr,
            line: b"oops \xff",
        });
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["line"], "oops \u{fffd}");
    }
}
