//! How `kiln build` reports its steps (`--progress`): `plain` lines for logs and CI, a live
//! `tty` view ([`live`]), or `json` lines for machines. `auto` is `tty` when standard error is
//! a terminal and `plain` otherwise. Everything goes to standard error; standard output
//! carries only the image ID.
//!
//! Steps are numbered in the order they start, as buildx numbers them, and every line about a
//! step carries its number, so the lines of stages running side by side can be told apart:
//!
//! ```text
//! #3 [build 2/5] RUN make
//! #3 cache miss: build-arg VERSION changed ("1.0" → "1.1")
//! #3 compiling…
//! #3 DONE 1.2s
//! #4 [build 3/5] COPY app /bin/app
//! #4 CACHED
//! SKIPPED [test 2/3] RUN make test (another step failed)
//! ```
//!
//! The `tty` view shows the same steps as buildx does: a live region at the bottom, redrawn in
//! place, with `[+] Building 12.3s (7/15)` (steps done of the steps the plan has, a total that
//! grows when a base's ONBUILD triggers add steps) and each running step with its timer, its
//! cache-miss explanation and the last lines of its output; a step that ends becomes one
//! permanent line above it (`#3 [build 2/5] RUN make   DONE 1.2s`, its explanation dim
//! under it) and its output tail goes (a failed step's output is printed by the command).
//!
//! A step ends `DONE`, `CACHED` (`CACHED (from REF)` for an imported cache), `ERROR` or
//! `CANCELED`; a step that never started is `SKIPPED`, with why; a stage the target does not
//! need is one `SKIPPED stage …` line. The build ends with a summary line (time, steps run and
//! cached, warnings). `warning: …` lines are printed even with `-q`.
//!
//! JSON lines: `{"type":"step","id":…,"stage":…,"step":n,"total":…,"instruction":…,"line":…,
//! "state":"run"|"cached"|"config","cached":…}` (with `"from"` for a cached step and `"why"`,
//! the structured explanation with its `"message"`, for a step that missed), `{"type":
//! "step-done","id":…,"state":"done"|"cached"|"error"|"canceled","duration":seconds}`,
//! `{"type":"step-skipped",…,"reason":"earlier-step-failed"|"cancelled"}`, `{"type":
//! "stage-skipped","stage":…,"steps":…,"reason":"not-needed"}`, `{"type":"output","id":…,
//! "stage":…,"stream":"stdout"|"stderr","line":…}`, `{"type":"warning","message":…}` and, for
//! `--explain LINE`, `{"type":"inputs","id":…,"key":…,"inputs":[{"name","value","label"}…],
//! "files":{checksum:[[path,{"kind","mode","content"}]…]}}`; the command adds
//! `{"type":"done",…}` or `{"type":"error",…}` at the end.

mod live;
mod view;

pub use live::{Status, note};

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_builder::exec::Stream;
use kiln_builder::plan::Plan;
use kiln_builder::solve::explain::{KeyInputs, Label};
use kiln_builder::solve::{CacheSource, Event, SkipReason, StepEnd, StepStart};

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
    started: Instant,
    steps: Mutex<Steps>,
    live: Option<live::Live>,
}

/// The steps seen so far: their numbers, and what became of them.
#[derive(Debug, Default)]
struct Steps {
    /// Each started step's number, by stage and step.
    ids: BTreeMap<(String, usize), usize>,
    /// The step each stage runs now.
    current: BTreeMap<String, usize>,
    /// How many steps ended each way.
    ran: usize,
    cached: usize,
    config: usize,
    failed: usize,
    cancelled: usize,
    skipped: usize,
    warnings: usize,
    /// Whether each started step only changes the config.
    config_steps: BTreeMap<usize, bool>,
    /// The imported cache each step taken from one came from.
    imported: BTreeMap<usize, String>,
    /// Each stage's steps as planned, and as its events count them (ONBUILD triggers of its
    /// base add steps the plan cannot know).
    planned: BTreeMap<String, usize>,
    reported: BTreeMap<String, usize>,
}

impl Steps {
    /// The number of step `n` of `stage`, given when it starts.
    fn start(&mut self, stage: &str, n: usize, config: bool) -> usize {
        let id = self.ids.len() + 1;
        let id = *self.ids.entry((stage.to_owned(), n)).or_insert(id);
        self.current.insert(stage.to_owned(), id);
        self.config_steps.insert(id, config);
        id
    }

    /// Steps ended or skipped, and the steps the build will report as far as is known.
    fn progress(&self) -> (usize, usize) {
        let done = self.ran + self.cached + self.config + self.failed + self.cancelled;
        let total = self
            .planned
            .iter()
            .chain(&self.reported)
            .fold(BTreeMap::<&str, usize>::new(), |mut totals, (stage, n)| {
                let t = totals.entry(stage).or_default();
                *t = (*t).max(*n);
                totals
            })
            .values()
            .sum();
        (done + self.skipped, total)
    }

    fn id(&self, stage: &str, n: usize) -> usize {
        self.ids
            .get(&(stage.to_owned(), n))
            .copied()
            .unwrap_or_default()
    }

    fn end(&mut self, id: usize, end: StepEnd) {
        match end {
            StepEnd::Done if self.config_steps.get(&id) == Some(&true) => self.config += 1,
            StepEnd::Done => self.ran += 1,
            StepEnd::Cached => self.cached += 1,
            StepEnd::Failed => self.failed += 1,
            StepEnd::Cancelled => self.cancelled += 1,
        }
    }

    /// `12 steps: 3 run, 7 cached, 2 config; 1 warning`, saying only what happened.
    fn summary(&self, elapsed: Duration) -> String {
        let counts: Vec<String> = [
            (self.ran, "run"),
            (self.cached, "cached"),
            (self.config, "config"),
            (self.failed, "failed"),
            (self.cancelled, "canceled"),
            (self.skipped, "skipped"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        let total = self.ids.len() + self.skipped;
        let mut line = format!("{} in {}", plural(total, "step"), seconds(elapsed));
        if !counts.is_empty() {
            line.push_str(&format!(": {}", counts.join(", ")));
        }
        if self.warnings > 0 {
            line.push_str(&format!("; {}", plural(self.warnings, "warning")));
        }
        line
    }
}

impl Reporter {
    /// A reporter for `mode`, for a build of `plan`.
    pub fn new(mode: Mode, plans: &[&Plan]) -> Self {
        let mode = match mode {
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Tty,
            Mode::Auto => Mode::Plain,
            other => other,
        };
        // The solver names a stage after its platform when it builds several.
        let label = |plan: &Plan, stage: &kiln_builder::plan::Stage| match plans {
            [_] => stage.display_name(),
            _ => format!("{} {}", plan.options.platform, stage.display_name()),
        };
        let planned: BTreeMap<String, usize> = plans
            .iter()
            .flat_map(|plan| {
                plan.order
                    .iter()
                    .filter_map(|&i| plan.stages.get(i))
                    .map(|stage| (label(plan, stage), stage.steps.len()))
            })
            .collect();
        let total = planned.values().sum();
        Self {
            mode,
            started: Instant::now(),
            steps: Mutex::new(Steps {
                planned,
                ..Steps::default()
            }),
            live: (mode == Mode::Tty).then(|| live::Live::new(total)),
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
            (Some(live), _) => live.println(text),
            (None, _) => eprintln!("{text}"),
        }
    }

    /// Takes the live view down and prints the summary, so what follows prints normally.
    pub fn finish(&self) {
        if let Some(live) = &self.live {
            live.finish();
        }
        let Ok(steps) = self.steps.lock() else {
            return;
        };
        let summary = steps.summary(self.started.elapsed());
        match self.mode {
            Mode::Plain | Mode::Tty => eprintln!("{summary}"),
            Mode::Json => eprintln!(
                "{}",
                serde_json::json!({
                    "type": "summary", "message": summary, "steps": steps.ids.len() + steps.skipped,
                    "run": steps.ran, "cached": steps.cached, "config": steps.config,
                    "failed": steps.failed, "canceled": steps.cancelled,
                    "skipped": steps.skipped, "warnings": steps.warnings,
                    "duration": self.started.elapsed().as_secs_f64(),
                })
            ),
            Mode::Quiet | Mode::Auto => {}
        }
    }

    /// Reports one event.
    pub fn event(&self, event: Event<'_>) {
        let Ok(mut steps) = self.steps.lock() else {
            return;
        };
        let id = match &event {
            Event::Step {
                stage,
                n,
                total,
                start,
                ..
            } => {
                let reported = steps.reported.entry((*stage).to_owned()).or_default();
                *reported = (*reported).max(*total);
                let id = steps.start(stage, *n, matches!(start, StepStart::Config));
                if let StepStart::Cached {
                    from: CacheSource::Import(name),
                } = start
                {
                    steps.imported.insert(id, (*name).to_owned());
                }
                id
            }
            Event::StepDone { stage, n, end, .. } => {
                let id = steps.id(stage, *n);
                steps.end(id, *end);
                id
            }
            Event::Output { stage, .. } => steps.current.get(*stage).copied().unwrap_or_default(),
            Event::Skipped { stage, total, .. } => {
                let reported = steps.reported.entry((*stage).to_owned()).or_default();
                *reported = (*reported).max(*total);
                steps.skipped += 1;
                0
            }
            Event::Warning { .. } => {
                steps.warnings += 1;
                0
            }
            Event::NotNeeded { .. } => 0,
            Event::Inputs { stage, n, .. } => steps.id(stage, *n),
        };
        let imported = steps.imported.get(&id).cloned();
        let progress = steps.progress();
        drop(steps);
        match self.mode {
            Mode::Quiet | Mode::Auto => {
                if let Event::Warning { message } = event {
                    eprintln!("warning: {message}");
                }
            }
            Mode::Plain => {
                for line in plain(id, imported.as_deref(), &event) {
                    eprintln!("{line}");
                }
            }
            Mode::Json => eprintln!("{}", json(id, &event)),
            Mode::Tty => {
                if let Some(live) = &self.live {
                    live.event(id, &event, imported.as_deref(), progress);
                }
            }
        }
    }
}

/// The plain lines of an event (the step with number `id`, taken from the `imported` cache
/// if it was).
fn plain(id: usize, imported: Option<&str>, event: &Event<'_>) -> Vec<String> {
    match event {
        Event::Step {
            stage,
            n,
            total,
            text,
            start,
            ..
        } => {
            let mut lines = vec![format!("#{id} [{stage} {n}/{total}] {}", first_line(text))];
            if let StepStart::Run { why: Some(miss) } = start {
                lines.push(format!("#{id} cache miss: {miss}"));
            }
            lines
        }
        Event::StepDone {
            end: StepEnd::Cached,
            ..
        } if imported.is_some() => {
            vec![format!(
                "#{id} CACHED (from {})",
                imported.unwrap_or_default()
            )]
        }
        Event::StepDone { end, elapsed, .. } => vec![format!("#{id} {}", end_text(*end, *elapsed))],
        Event::Skipped {
            stage,
            n,
            total,
            text,
            reason,
        } => vec![format!(
            "SKIPPED [{stage} {n}/{total}] {} ({})",
            first_line(text),
            skip_text(*reason)
        )],
        Event::NotNeeded { stage, steps } => vec![format!(
            "SKIPPED stage {stage} ({}): not needed by the target",
            plural(*steps, "step")
        )],
        Event::Warning { message } => vec![format!("warning: {message}")],
        Event::Output { line, .. } => vec![format!("#{id} {}", String::from_utf8_lossy(line))],
        Event::Inputs { inputs, .. } => input_tree(inputs)
            .into_iter()
            .map(|line| format!("#{id} {line}"))
            .collect(),
    }
}

/// The lines of a key's input tree: the key, each input with what it refers to, and the files
/// behind a checksum of context files.
fn input_tree(tree: &KeyInputs) -> Vec<String> {
    let mut lines = vec![format!("cache key {}:", tree.key)];
    for input in &tree.inputs {
        let label = match &input.label {
            Some(Label::Files(source)) => format!(" (files of {source})"),
            Some(Label::Stage(stage)) => format!(" (stage {stage})"),
            Some(Label::Image(image)) => format!(" (image {image})"),
            Some(Label::Url(url)) => format!(" ({url})"),
            None => String::new(),
        };
        lines.push(format!("  {}{label}: {}", input.name, render(&input.value)));
        if let Some(files) = input.value.as_str().and_then(|sum| tree.files.get(sum)) {
            for (path, entry) in files {
                let content = if entry.content.is_empty() {
                    String::new()
                } else {
                    format!(" {}", entry.content)
                };
                lines.push(format!("    {path} {}{content}", entry.mode));
            }
        }
    }
    lines
}

/// An input's value for a reader: a string as it is, `[name, value]` pairs as `name=value`.
fn render(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items)
            if items
                .iter()
                .all(|i| i.as_array().is_some_and(|p| p.len() == 2)) =>
        {
            let pairs: Vec<String> = items
                .iter()
                .filter_map(|p| p.as_array())
                .map(|p| match &p[1] {
                    serde_json::Value::String(v) => {
                        format!("{}={v}", p[0].as_str().unwrap_or_default())
                    }
                    serde_json::Value::Null => p[0].as_str().unwrap_or_default().to_owned(),
                    other => format!("{}={other}", p[0].as_str().unwrap_or_default()),
                })
                .collect();
            if pairs.is_empty() {
                "(none)".to_owned()
            } else {
                pairs.join(", ")
            }
        }
        other => other.to_string(),
    }
}

/// `DONE 1.2s`, `CACHED`, `ERROR 0.3s`, `CANCELED 2.0s`.
fn end_text(end: StepEnd, elapsed: Duration) -> String {
    match end {
        StepEnd::Done => format!("DONE {}", seconds(elapsed)),
        StepEnd::Cached => "CACHED".to_owned(),
        StepEnd::Failed => format!("ERROR {}", seconds(elapsed)),
        StepEnd::Cancelled => format!("CANCELED {}", seconds(elapsed)),
    }
}

fn skip_text(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::EarlierStepFailed => "an earlier step of its stage failed",
        SkipReason::Cancelled => "the build stopped before it",
    }
}

/// A duration as buildx prints it: seconds with one decimal.
fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The first line of an instruction (a heredoc's body is not part of the step line).
fn first_line(text: &str) -> String {
    match text.split_once('\n') {
        Some((first, _)) => format!("{first} …"),
        None => text.to_owned(),
    }
}

fn json(id: usize, event: &Event<'_>) -> serde_json::Value {
    match event {
        Event::Step {
            stage,
            n,
            total,
            text,
            line,
            start,
        } => {
            let mut v = serde_json::json!({
                "type": "step", "id": id, "stage": stage, "step": n, "total": total,
                "instruction": text, "line": line,
                "cached": matches!(start, StepStart::Cached { .. }),
            });
            match start {
                StepStart::Run { why } => {
                    v["state"] = "run".into();
                    if let Some(miss) = why {
                        let mut why = serde_json::to_value(miss).unwrap_or_default();
                        why["message"] = miss.to_string().into();
                        v["why"] = why;
                    }
                }
                StepStart::Cached { from } => {
                    v["state"] = "cached".into();
                    v["from"] = match from {
                        CacheSource::Local => "local".into(),
                        CacheSource::Import(name) => (*name).into(),
                    };
                }
                StepStart::Config => v["state"] = "config".into(),
            }
            v
        }
        Event::StepDone {
            stage,
            n,
            end,
            elapsed,
        } => serde_json::json!({
            "type": "step-done", "id": id, "stage": stage, "step": n,
            "state": match end {
                StepEnd::Done => "done",
                StepEnd::Cached => "cached",
                StepEnd::Failed => "error",
                StepEnd::Cancelled => "canceled",
            },
            "duration": elapsed.as_secs_f64(),
        }),
        Event::Skipped {
            stage,
            n,
            total,
            text,
            reason,
        } => serde_json::json!({
            "type": "step-skipped", "stage": stage, "step": n, "total": total,
            "instruction": text,
            "reason": match reason {
                SkipReason::EarlierStepFailed => "earlier-step-failed",
                SkipReason::Cancelled => "cancelled",
            },
        }),
        Event::NotNeeded { stage, steps } => serde_json::json!({
            "type": "stage-skipped", "stage": stage, "steps": steps, "reason": "not-needed",
        }),
        Event::Warning { message } => serde_json::json!({
            "type": "warning", "message": message,
        }),
        Event::Inputs { stage, n, inputs } => {
            let mut v = serde_json::to_value(inputs).unwrap_or_default();
            v["type"] = "inputs".into();
            v["id"] = id.into();
            v["stage"] = (*stage).into();
            v["step"] = (*n).into();
            v
        }
        Event::Output {
            stage,
            stream,
            line,
        } => serde_json::json!({
            "type": "output", "id": id, "stage": stage,
            "stream": match stream { Stream::Stdout => "stdout", Stream::Stderr => "stderr" },
            "line": String::from_utf8_lossy(line),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_builder::solve::explain::{Miss, Why};

    #[test]
    fn plain_lines_number_steps_and_say_how_each_ended() {
        let miss = Miss {
            why: Why::BuildArg {
                name: "V".into(),
                was: Some("1".into()),
                now: Some("2".into()),
            },
            imports: vec!["reg/cache:main".into()],
        };
        let step = Event::Step {
            stage: "build",
            n: 2,
            total: 5,
            text: "RUN <<EOF\necho hi\nEOF",
            line: 3,
            start: StepStart::Run { why: Some(&miss) },
        };
        assert_eq!(
            plain(7, None, &step),
            [
                "#7 [build 2/5] RUN <<EOF …",
                "#7 cache miss: build-arg V changed (\"1\" → \"2\"); not in reg/cache:main either"
            ]
        );
        let done = |end| Event::StepDone {
            stage: "build",
            n: 2,
            end,
            elapsed: Duration::from_millis(1250),
        };
        assert_eq!(plain(7, None, &done(StepEnd::Done)), ["#7 DONE 1.2s"]);
        assert_eq!(plain(7, None, &done(StepEnd::Cached)), ["#7 CACHED"]);
        assert_eq!(plain(7, None, &done(StepEnd::Failed)), ["#7 ERROR 1.2s"]);
        assert_eq!(
            plain(7, None, &done(StepEnd::Cancelled)),
            ["#7 CANCELED 1.2s"]
        );
        let output = Event::Output {
            stage: "build",
            stream: Stream::Stdout,
            line: b"hi",
        };
        assert_eq!(plain(7, None, &output), ["#7 hi"]);
        let skipped = Event::Skipped {
            stage: "test",
            n: 3,
            total: 3,
            text: "RUN make test",
            reason: SkipReason::EarlierStepFailed,
        };
        assert_eq!(
            plain(0, None, &skipped),
            ["SKIPPED [test 3/3] RUN make test (an earlier step of its stage failed)"]
        );
    }

    #[test]
    fn json_lines_carry_every_field() {
        let v = json(
            1,
            &Event::Step {
                stage: "s",
                n: 1,
                total: 3,
                text: "COPY . /app",
                line: 2,
                start: StepStart::Cached {
                    from: CacheSource::Import("reg/c:1"),
                },
            },
        );
        assert_eq!(
            v.to_string(),
            r#"{"cached":true,"from":"reg/c:1","id":1,"instruction":"COPY . /app","line":2,"stage":"s","state":"cached","step":1,"total":3,"type":"step"}"#
        );
        let miss = Miss {
            why: Why::NoCache,
            imports: vec![],
        };
        let v = json(
            2,
            &Event::Step {
                stage: "s",
                n: 2,
                total: 3,
                text: "RUN a",
                line: 3,
                start: StepStart::Run { why: Some(&miss) },
            },
        );
        assert_eq!(v["why"]["kind"], "no-cache");
        assert_eq!(v["why"]["message"], "--no-cache");
        let v = json(
            2,
            &Event::Output {
                stage: "s",
                stream: Stream::Stderr,
                line: b"oops \xff",
            },
        );
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["line"], "oops \u{fffd}");
        assert_eq!(v["id"], 2);
    }

    #[test]
    fn the_total_grows_when_onbuild_triggers_add_steps() {
        let mut steps = Steps {
            planned: [("base".to_owned(), 2), ("app".to_owned(), 3)].into(),
            ..Steps::default()
        };
        assert_eq!(steps.progress(), (0, 5));
        let a = steps.start("base", 1, false);
        steps.end(a, StepEnd::Done);
        steps.reported.insert("base".to_owned(), 2);
        assert_eq!(steps.progress(), (1, 5));
        // Two triggers of app's base run before its own three steps.
        steps.reported.insert("app".to_owned(), 5);
        steps.skipped = 1;
        assert_eq!(steps.progress(), (2, 7));
    }

    #[test]
    fn the_summary_says_only_what_happened() {
        let mut steps = Steps::default();
        let a = steps.start("s", 1, false);
        steps.end(a, StepEnd::Done);
        let b = steps.start("s", 2, true);
        steps.end(b, StepEnd::Done);
        let c = steps.start("s", 3, false);
        steps.end(c, StepEnd::Cached);
        steps.warnings = 1;
        assert_eq!(
            steps.summary(Duration::from_millis(2340)),
            "3 steps in 2.3s: 1 run, 1 cached, 1 config; 1 warning"
        );
    }
}
