//! The live view of `--progress=tty`, as buildx draws it: finished steps become permanent
//! lines scrolling above a live region ([`View`]) of the header and the running steps with
//! their output tails, which a ticker thread redraws in place ten times a second.
//!
//! Invariant: between two writes the cursor is at the start of the line below the region, and
//! `drawn` holds the columns of each line of the region, so the next write moves up exactly the
//! rows the region takes (recounted at the current width, should the terminal have narrowed),
//! clears to the end of the screen, prints any permanent lines, and draws the region again.
//! Every write to standard error while the view is up goes through here, under one lock: a base
//! image pulled during the build reports through [`note`] and [`Status`], never by printing
//! over the region. [`Live::finish`] clears the region and leaves the cursor where a plain
//! line can follow; an abandoned process (a second Ctrl-C) leaves the last frame and a cursor
//! below it, never inside it.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kiln_builder::solve::{Event, StepEnd, StepStart};

use super::view::{self, Line, Running, Style, View};

/// How often the region is redrawn (the timers move in tenths of a second).
const TICK: Duration = Duration::from_millis(100);

/// The size assumed when standard error is not a terminal (`--progress=tty` into a pipe).
const FALLBACK: (usize, usize) = (80, 25);

/// The live view on the terminal.
#[derive(Debug)]
pub(super) struct Live {
    shared: Arc<Shared>,
    /// Stops the ticker (by being dropped) and waits for it.
    ticker: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

/// What the ticker and the reporting threads share.
#[derive(Debug)]
struct Shared {
    started: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    view: View,
    /// The columns of each line of the region on screen.
    drawn: Vec<usize>,
    /// The view is down: lines print plainly.
    finished: bool,
}

/// The view drawing now, for output from outside the build's events.
static CURRENT: Mutex<Weak<Shared>> = Mutex::new(Weak::new());

impl Live {
    /// Puts the view up, expecting `total` steps.
    pub(super) fn new(total: usize) -> Self {
        let shared = Arc::new(Shared {
            started: Instant::now(),
            state: Mutex::new(State {
                view: View {
                    total,
                    ..View::default()
                },
                ..State::default()
            }),
        });
        if let Ok(mut current) = CURRENT.lock() {
            *current = Arc::downgrade(&shared);
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let ticking = shared.clone();
        // Without a ticker the view still changes with every event, only its timers stand.
        let ticker = std::thread::Builder::new()
            .name("progress".to_owned())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    ticking.draw(&[]);
                }
            })
            .ok()
            .map(|handle| (stop, handle));
        Self {
            shared,
            ticker: Mutex::new(ticker),
        }
    }

    /// Prints a line above the region.
    pub(super) fn println(&self, text: &str) {
        self.shared
            .draw(&[Line::new(text.to_owned(), Style::Plain)]);
    }

    /// Takes the region down for good: later lines print plainly.
    pub(super) fn finish(&self) {
        if let Ok(mut ticker) = self.ticker.lock()
            && let Some((stop, handle)) = ticker.take()
        {
            drop(stop);
            let _ = handle.join();
        }
        if let Ok(mut state) = self.shared.state.lock() {
            state.finished = true;
            state.view.running.clear();
        }
        self.shared.draw(&[]);
    }

    /// Shows `event` (of step `id`, which came from the `imported` cache if it did), with
    /// `done` of `total` steps reported.
    pub(super) fn event(
        &self,
        id: usize,
        event: &Event<'_>,
        imported: Option<&str>,
        (done, total): (usize, usize),
    ) {
        let (width, _) = size();
        let above = {
            let Ok(mut state) = self.shared.state.lock() else {
                return;
            };
            state.view.done = done;
            state.view.total = total;
            match event {
                Event::Step {
                    stage,
                    n,
                    total,
                    text,
                    start,
                    ..
                } => {
                    let label = format!("#{id} [{stage} {n}/{total}] {}", super::first_line(text));
                    let miss = match start {
                        StepStart::Run { why: Some(miss) } => Some(miss.to_string()),
                        _ => None,
                    };
                    state.view.running.insert(id, Running::new(label, miss));
                    // The region shows it at the next tick; a cached step has ended by then.
                    return;
                }
                Event::Output { line, .. } => {
                    if let Some(step) = state.view.running.get_mut(&id) {
                        step.output(line);
                    }
                    return;
                }
                Event::StepDone { end, elapsed, .. } => {
                    let Some(step) = state.view.running.remove(&id) else {
                        return;
                    };
                    let mut ended = super::end_text(*end, *elapsed);
                    if let (StepEnd::Cached, Some(from)) = (end, imported) {
                        ended = format!("CACHED (from {from})");
                    }
                    let style = match end {
                        StepEnd::Failed => Style::Red,
                        _ => Style::Plain,
                    };
                    let mut lines = vec![Line::new(
                        view::step_line(&step.label, &ended, width),
                        style,
                    )];
                    lines.extend(step.miss.map(|why| view::miss_line(&why, width)));
                    lines
                }
                Event::Skipped {
                    stage,
                    n,
                    total,
                    text,
                    reason,
                } => {
                    let label = format!(
                        "[{stage} {n}/{total}] {} ({})",
                        super::first_line(text),
                        super::skip_text(*reason)
                    );
                    vec![Line::new(
                        view::step_line(&label, "SKIPPED", width),
                        Style::Plain,
                    )]
                }
                Event::NotNeeded { .. } | Event::Warning { .. } | Event::Inputs { .. } => {
                    super::plain(id, None, event)
                        .into_iter()
                        .map(|text| Line::new(text, Style::Plain))
                        .collect()
                }
            }
        };
        self.shared.draw(&above);
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Shared {
    /// Clears the region, prints `above`, and draws the region again (unless the view is down).
    fn draw(&self, above: &[Line]) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (width, height) = size();
        let mut out = String::new();
        let rows: usize = state
            .drawn
            .iter()
            .map(|&cols| cols.max(1).div_ceil(width.max(1)))
            .sum();
        if rows > 0 {
            out.push_str(&format!("\r\x1b[{rows}A\x1b[J"));
        }
        for line in above {
            out.push_str(&line.paint());
            out.push('\n');
        }
        state.drawn.clear();
        if !state.finished {
            let frame = state
                .view
                .frame(self.started.elapsed(), Instant::now(), width, height);
            for line in &frame {
                out.push_str(&line.paint());
                out.push('\n');
                state.drawn.push(view::columns(&line.text));
            }
        }
        // Nothing to say if standard error is gone.
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(out.as_bytes());
        let _ = stderr.flush();
    }
}

/// The terminal's columns and rows (of standard error), or [`FALLBACK`].
fn size() -> (usize, usize) {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(ws) if ws.ws_col > 0 && ws.ws_row > 0 => {
            (usize::from(ws.ws_col), usize::from(ws.ws_row))
        }
        _ => FALLBACK,
    }
}

/// Prints a line of a command's own on standard error: above the live view when a build draws
/// one, else as is.
pub fn note(text: &str) {
    match CURRENT.lock().ok().and_then(|c| c.upgrade()) {
        Some(shared) => shared.draw(&[Line::new(text.to_owned(), Style::Plain)]),
        None => eprintln!("{text}"),
    }
}

/// A status line in the live view (a transfer's progress), removed when dropped.
#[derive(Debug)]
pub struct Status {
    shared: Weak<Shared>,
    id: u64,
}

impl Status {
    /// A status line, if a live view is drawing (else the caller shows its progress itself).
    pub fn new() -> Option<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shared = CURRENT.lock().ok()?.clone();
        let live = shared.upgrade()?;
        if live.state.lock().ok()?.finished {
            return None;
        }
        Some(Self {
            shared,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Shows `text` (the ticker draws it).
    pub fn set(&self, text: String) {
        if let Some(shared) = self.shared.upgrade()
            && let Ok(mut state) = shared.state.lock()
        {
            state.view.transfers.insert(self.id, text);
        }
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade()
            && let Ok(mut state) = shared.state.lock()
        {
            state.view.transfers.remove(&self.id);
        }
    }
}
