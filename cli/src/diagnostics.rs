//! Dockerfile errors rendered like a compiler's: `Dockerfile:7:1: message`, then the source
//! line(s) with a caret under the part that is wrong.
//!
//! [`render`] and [`json`] are the one place a builder diagnostic (a build check's finding, a
//! parser or planner warning, an error found without building) becomes text: every command and
//! every progress mode prints them through these.

use std::fmt::Write as _;

use kiln_builder::check;
use kiln_builder::dockerfile::Location;

/// A builder diagnostic as text: `warning[Rule]: Dockerfile:2:1: message`, the source excerpt
/// with a caret, and the rule's documentation page.
pub fn render(file: &str, source: &str, d: &check::Diagnostic) -> String {
    let head = match d.rule {
        Some(rule) => format!("{}[{}]", d.severity.as_str(), rule.name),
        None => d.severity.as_str().to_owned(),
    };
    let body = match d.location {
        Some(location) => Diagnostic {
            file,
            source,
            message: &d.message,
            location,
        }
        .render(),
        None => d.message.clone(),
    };
    let mut out = format!("{head}: {body}");
    if let Some(url) = d.url() {
        let _ = write!(out, "\n  = see {url}");
    }
    out
}

/// A builder diagnostic as one JSON object (`--progress=json`).
pub fn json(file: &str, d: &check::Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "type": d.severity.as_str(),
        "rule": d.rule.map(|r| r.name),
        "message": d.message,
        "file": file,
        "line": d.location.map(|l| l.start_line),
        "end_line": d.location.map(|l| l.end_line),
        "url": d.url(),
    })
}

/// How many source lines of a multi-line instruction are shown.
const MAX_SHOWN_LINES: usize = 3;

/// A located problem in a Dockerfile, ready to print.
#[derive(Debug)]
pub struct Diagnostic<'a> {
    /// The Dockerfile's name as the user gave it.
    pub file: &'a str,
    /// The Dockerfile's text.
    pub source: &'a str,
    /// What is wrong.
    pub message: &'a str,
    /// Where.
    pub location: Location,
}

impl Diagnostic<'_> {
    /// `file:line:col: message` followed by the source excerpt.
    pub fn render(&self) -> String {
        let lines: Vec<&str> = self
            .source
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .collect();
        let start = self.location.start_line;
        if start == 0 || start > lines.len() {
            // Not tied to a place in the file (e.g. an unknown --target).
            return self.message.to_owned();
        }
        let first = lines[start - 1];
        if first.trim().is_empty() {
            return format!("{}:{start}: {}", self.file, self.message);
        }
        let (column, width) = self.highlight(first);
        let mut out = format!("{}:{}:{}: {}", self.file, start, column, self.message);
        let end = self
            .location
            .end_line
            .clamp(start, lines.len())
            .min(start + MAX_SHOWN_LINES - 1);
        let gutter = end.to_string().len();
        let _ = write!(out, "\n{:gutter$} |", "");
        for (n, line) in lines.iter().enumerate().take(end).skip(start - 1) {
            let _ = write!(out, "\n{:>gutter$} | {line}", n + 1);
            if n + 1 == start {
                let pad: String = first
                    .chars()
                    .take(column - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = write!(out, "\n{:gutter$} | {pad}{}", "", "^".repeat(width.max(1)));
            }
        }
        if self.location.end_line > end {
            let _ = write!(out, "\n{:gutter$} | …", "");
        }
        out
    }

    /// The 1-based column and width to underline on the first line: the word the message names
    /// (an unknown instruction or flag, or the first quoted text) when the line has it, else the
    /// instruction's text.
    fn highlight(&self, line: &str) -> (usize, usize) {
        let named = ["unknown instruction: ", "unknown flag: "]
            .iter()
            .find_map(|prefix| {
                let rest = self.message.split_once(prefix)?.1;
                rest.split([' ', '(']).next()
            })
            .or_else(|| self.message.split('"').nth(1));
        if let Some(word) = named.filter(|w| !w.is_empty())
            && let Some(at) = line.find(word)
        {
            return (line[..at].chars().count() + 1, word.chars().count());
        }
        let indent = line.len() - line.trim_start().len();
        (
            line[..indent].chars().count() + 1,
            line.trim().chars().count(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, message: &str, start: usize, end: usize) -> String {
        let location = Location {
            start_line: start,
            end_line: end,
            ..Location::default()
        };
        Diagnostic {
            file: "Dockerfile",
            source,
            message,
            location,
        }
        .render()
    }

    #[test]
    fn points_at_the_named_word() {
        let out = render(
            "FROM a\n  RUNN echo\n",
            "unknown instruction: RUNN (did you mean RUN?)",
            2,
            2,
        );
        assert_eq!(
            out,
            "Dockerfile:2:3: unknown instruction: RUNN (did you mean RUN?)\n  |\n2 |   RUNN echo\n  |   ^^^^"
        );
        let out = render(
            "COPY --form=x a b",
            "unknown flag: --form (did you mean --from?)",
            1,
            1,
        );
        assert!(out.starts_with("Dockerfile:1:6: unknown flag"), "{out}");
        assert!(out.ends_with("|      ^^^^^^"), "{out}");
    }

    #[test]
    fn builder_diagnostics_name_their_rule_and_page() {
        let d = check::Diagnostic::rule(
            &check::FROM_AS_CASING,
            "'as' and 'FROM' keywords' casing do not match".to_owned(),
            Location::line(1),
        );
        assert_eq!(
            super::render("Dockerfile", "FROM a as b\n", &d),
            "warning[FromAsCasing]: Dockerfile:1:1: 'as' and 'FROM' keywords' casing do not match\n  |\n1 | FROM a as b\n  | ^^^^^^^^^^^\n  = see https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
        );
        let d = check::Diagnostic::warning("build-arg \"X\" was not consumed", None);
        assert_eq!(
            super::render("Dockerfile", "", &d),
            "warning: build-arg \"X\" was not consumed"
        );
        let v = super::json("Dockerfile", &d);
        assert_eq!(v["type"], "warning");
        assert!(v["rule"].is_null() && v["line"].is_null() && v["url"].is_null());
    }

    #[test]
    fn multi_line_and_unknown_locations() {
        let source = "FROM a\nRUN a \\\n  b \\\n  c \\\n  d\n";
        let out = render(source, "boom", 2, 5);
        assert_eq!(out.lines().count(), 1 + 1 + 3 + 1 + 1, "{out}");
        assert!(out.ends_with("| …"), "{out}");
        assert_eq!(render(source, "boom", 0, 0), "boom");
        assert_eq!(
            render("\n", "file with no instructions", 1, 1),
            "Dockerfile:1: file with no instructions"
        );
    }
}
