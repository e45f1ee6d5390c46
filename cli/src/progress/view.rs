//! What the live region of `--progress=tty` says, as lines of text: a pure function of the
//! running steps, the clock and the terminal's size, so its layout is tested without a
//! terminal ([`super::live`] draws it).
//!
//! The region is a header (`[+] Building 12.3s (7/15)`), a status line per transfer (a base
//! image being pulled), then each running step in the order they started: its line with a live
//! timer, the cache-miss explanation dim under it, and the last [`TAIL`] lines of its output.
//! It never has more lines than the terminal has rows less one, so it never scrolls (a region
//! that scrolled could not be found again to redraw it): tails shrink first, then explanations
//! go, then steps fold into a `… N more running` line. No line reaches the last column, so no
//! terminal wraps one; widths count wide (CJK, emoji) characters as two columns.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Output lines kept under a running step.
pub(super) const TAIL: usize = 6;

/// How a line is painted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    Plain,
    /// Explanations and output: secondary to the step lines.
    Dim,
    /// A step that failed.
    Red,
}

/// One line of the terminal, already fit to its width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    pub text: String,
    pub style: Style,
}

impl Line {
    pub(super) fn new(text: String, style: Style) -> Self {
        Self { text, style }
    }

    /// The line with its escape codes, as written to the terminal.
    pub(super) fn paint(&self) -> String {
        match self.style {
            Style::Plain => self.text.clone(),
            Style::Dim => format!("\x1b[2m{}\x1b[0m", self.text),
            Style::Red => format!("\x1b[31m{}\x1b[0m", self.text),
        }
    }
}

/// A step that has started and not ended.
#[derive(Debug)]
pub(super) struct Running {
    /// `#3 [build 2/5] RUN make`.
    pub label: String,
    pub started: Instant,
    /// Why it missed the cache.
    pub miss: Option<String>,
    /// Its latest output lines, cleaned.
    pub tail: VecDeque<String>,
}

impl Running {
    pub(super) fn new(label: String, miss: Option<String>) -> Self {
        Self {
            label,
            started: Instant::now(),
            miss,
            tail: VecDeque::new(),
        }
    }

    /// Keeps `line` of output, forgetting what scrolled past the tail.
    pub(super) fn output(&mut self, line: &[u8]) {
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(clean(line));
    }
}

/// Everything the region shows.
#[derive(Debug, Default)]
pub(super) struct View {
    /// Running steps by number (the order they started).
    pub running: BTreeMap<usize, Running>,
    /// Steps ended or skipped.
    pub done: usize,
    /// Steps the build will report, as far as is known.
    pub total: usize,
    /// Status lines of transfers, by the transfer's number.
    pub transfers: BTreeMap<u64, String>,
}

impl View {
    /// The region `elapsed` into the build at `now`, for a terminal of `width` columns and
    /// `height` rows.
    pub(super) fn frame(
        &self,
        elapsed: Duration,
        now: Instant,
        width: usize,
        height: usize,
    ) -> Vec<Line> {
        let room = height.saturating_sub(1).max(1);
        let header = format!(
            "[+] Building {} ({}/{})",
            super::seconds(elapsed),
            self.done,
            self.total.max(self.done)
        );
        let mut lines = vec![Line::new(fit(&header, width), Style::Plain)];
        for status in self.transfers.values().take(room - 1) {
            lines.push(Line::new(fit(status, width), Style::Plain));
        }
        let budget = room - lines.len();
        let steps: Vec<&Running> = self.running.values().collect();
        // The most detail that fits: full tails, then shorter ones, then no explanations.
        let detail = (0..=TAIL)
            .rev()
            .map(|tail| (true, tail))
            .chain([(false, 0)])
            .find(|&(miss, tail)| {
                let need: usize = steps
                    .iter()
                    .map(|s| 1 + usize::from(miss && s.miss.is_some()) + s.tail.len().min(tail))
                    .sum();
                need <= budget
            });
        let (miss, tail, shown) = match detail {
            Some((miss, tail)) => (miss, tail, steps.len()),
            None => (false, 0, budget.saturating_sub(1)),
        };
        for step in &steps[..shown] {
            let timer = super::seconds(now.saturating_duration_since(step.started));
            lines.push(Line::new(
                step_line(&step.label, &timer, width),
                Style::Plain,
            ));
            if miss && let Some(why) = &step.miss {
                lines.push(miss_line(why, width));
            }
            let skip = step.tail.len().saturating_sub(tail);
            for out in step.tail.iter().skip(skip) {
                lines.push(Line::new(fit(&format!("    {out}"), width), Style::Dim));
            }
        }
        if shown < steps.len() && budget > 0 {
            let more = format!("… {} more running", steps.len() - shown);
            lines.push(Line::new(fit(&more, width), Style::Plain));
        }
        lines
    }
}

/// A step's line: its label, then `state` (a timer, `DONE 0.5s`, `CACHED` …) at the right edge;
/// the label is cut, never the state.
pub(super) fn step_line(label: &str, state: &str, width: usize) -> String {
    let usable = width.saturating_sub(1);
    let state_cols = columns(state);
    let room = usable.saturating_sub(state_cols + 1);
    let label = fit_to(label, room);
    let pad = usable.saturating_sub(columns(&label) + state_cols).max(1);
    fit(&format!("{label}{}{state}", " ".repeat(pad)), width)
}

/// The dim line under a step that missed the cache.
pub(super) fn miss_line(why: &str, width: usize) -> Line {
    Line::new(fit(&format!("  cache miss: {why}"), width), Style::Dim)
}

/// `text` cut to fit a terminal `width` columns wide, short of its last column.
pub(super) fn fit(text: &str, width: usize) -> String {
    fit_to(text, width.saturating_sub(1))
}

/// `text` in at most `cols` columns, ending `…` when cut.
fn fit_to(text: &str, cols: usize) -> String {
    if columns(text) <= cols {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_columns(c);
        if used + w + 1 > cols {
            break;
        }
        out.push(c);
        used += w;
    }
    if cols > 0 {
        out.push('…');
    }
    out
}

/// The columns `text` takes on a terminal.
pub(super) fn columns(text: &str) -> usize {
    text.chars().map(char_columns).sum()
}

/// Two for the wide characters of East Asian scripts and emoji, one otherwise (close enough
/// for output lines: a miscount only costs a line that wraps).
fn char_columns(c: char) -> usize {
    match u32::from(c) {
        0x1100..=0x115F
        | 0x2E80..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

/// A line of a step's output made safe to draw: what a carriage return redrew last (a
/// progress bar's latest state), without escape sequences or control characters, which would
/// move the cursor or recolour the region, and tabs as spaces.
pub(super) fn clean(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text
        .split('\r')
        .rfind(|s| !s.trim().is_empty())
        .unwrap_or_default();
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (a title, a hyperlink): up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    fn view(now: Instant, steps: &[(usize, &str, Option<&str>, &[&str])]) -> View {
        let mut view = View {
            done: 3,
            total: 9,
            ..View::default()
        };
        for (id, label, miss, out) in steps {
            let mut step = Running::new((*label).to_owned(), miss.map(str::to_owned));
            step.started = now - Duration::from_millis(1500);
            for line in *out {
                step.output(line.as_bytes());
            }
            view.running.insert(*id, step);
        }
        view
    }

    #[test]
    fn steps_show_timers_explanations_and_tails() {
        let now = Instant::now();
        let out: Vec<String> = (1..=8).map(|i| format!("line {i}")).collect();
        let out: Vec<&str> = out.iter().map(String::as_str).collect();
        let v = view(
            now,
            &[(4, "#4 [build 2/5] RUN make", Some("--no-cache"), &out)],
        );
        let lines = v.frame(Duration::from_millis(12_340), now, 40, 30);
        assert_eq!(
            texts(&lines),
            [
                "[+] Building 12.3s (3/9)",
                "#4 [build 2/5] RUN make            1.5s",
                "  cache miss: --no-cache",
                "    line 3",
                "    line 4",
                "    line 5",
                "    line 6",
                "    line 7",
                "    line 8",
            ]
        );
        assert_eq!(lines[2].style, Style::Dim);
        assert_eq!(lines[3].style, Style::Dim);
    }

    #[test]
    fn lines_are_cut_to_the_width_but_keep_their_state() {
        let label = "#12 [stage-0 3/4] RUN apt-get update && apt-get install -y curl";
        assert_eq!(
            step_line(label, "DONE 12.5s", 40),
            "#12 [stage-0 3/4] RUN apt-g… DONE 12.5s"
        );
        assert_eq!(columns(&step_line(label, "DONE 12.5s", 40)), 39);
        assert_eq!(
            step_line("#1 [a 1/1] RUN x", "CACHED", 30),
            "#1 [a 1/1] RUN x       CACHED"
        );
        assert_eq!(fit("abcdef", 5), "abc…");
        assert_eq!(fit("日本語です", 7), "日本…");
        assert_eq!(fit("short", 80), "short");
        // A terminal too narrow for anything still gets no wrapped line.
        assert!(columns(&step_line(label, "DONE 1.0s", 5)) <= 4);
    }

    #[test]
    fn a_short_terminal_shrinks_tails_then_explanations_then_folds_steps() {
        let now = Instant::now();
        let out = ["a", "b", "c", "d", "e", "f"];
        let steps = [
            (1, "#1 one", Some("why 1"), &out[..]),
            (2, "#2 two", Some("why 2"), &out[..]),
        ];
        let v = view(now, &steps);
        let at = |height| texts(&v.frame(Duration::ZERO, now, 30, height)).len();
        // Full detail: header + 2 × (step + why + 6 output) = 17 lines.
        assert_eq!(at(30), 17);
        for height in 2..30 {
            assert!(at(height) < height, "{height} rows");
        }
        // 10 rows: header + 2 × (step + why + 2 lines of tail).
        assert_eq!(
            texts(&v.frame(Duration::ZERO, now, 30, 10)),
            [
                "[+] Building 0.0s (3/9)",
                "#1 one                   1.5s",
                "  cache miss: why 1",
                "    e",
                "    f",
                "#2 two                   1.5s",
                "  cache miss: why 2",
                "    e",
                "    f",
            ]
        );
        // 9 rows: a line of tail each.
        assert_eq!(
            texts(&v.frame(Duration::ZERO, now, 30, 9)),
            [
                "[+] Building 0.0s (3/9)",
                "#1 one                   1.5s",
                "  cache miss: why 1",
                "    f",
                "#2 two                   1.5s",
                "  cache miss: why 2",
                "    f",
            ]
        );
        assert_eq!(
            texts(&v.frame(Duration::ZERO, now, 30, 4)),
            [
                "[+] Building 0.0s (3/9)",
                "#1 one                   1.5s",
                "#2 two                   1.5s",
            ]
        );
        assert_eq!(
            texts(&v.frame(Duration::ZERO, now, 30, 3)),
            ["[+] Building 0.0s (3/9)", "… 2 more running"]
        );
    }

    #[test]
    fn transfers_show_under_the_header() {
        let now = Instant::now();
        let mut v = view(now, &[(1, "#1 [a 1/2] RUN x", None, &[])]);
        v.transfers
            .insert(0, "pulling: 1.0 MB / 4.0 MB, 2.0 MB/s".to_owned());
        assert_eq!(
            texts(&v.frame(Duration::ZERO, now, 50, 30)),
            [
                "[+] Building 0.0s (3/9)",
                "pulling: 1.0 MB / 4.0 MB, 2.0 MB/s",
                "#1 [a 1/2] RUN x                             1.5s",
            ]
        );
    }

    #[test]
    fn output_is_cleaned_of_what_would_move_the_cursor() {
        let cases: [(&[u8], &str); 7] = [
            (b"plain", "plain"),
            (b"\x1b[31mred\x1b[0m text", "red text"),
            (b"10%\r50%\r100%", "100%"),
            (b"done\r", "done"),
            (b"a\tb", "a    b"),
            (b"\x1b]0;title\x07after\x1b[2K\x08", "after"),
            (b"bad \xff byte", "bad \u{fffd} byte"),
        ];
        for (raw, shown) in cases {
            assert_eq!(clean(raw), shown, "{raw:?}");
        }
    }
}
