//! Dockerfile text → AST, with BuildKit's line rules.
//!
//! This is the line-level stage of the front end (BuildKit's `frontend/dockerfile/parser`): parser
//! directives at the top, comments, line continuations with the escape token, heredoc bodies,
//! builder flags, and the per-keyword argument shapes (JSON or shell form, words, key=value
//! pairs). It knows nothing of what an instruction means; [`super::instructions`] does that.
//!
//! Invariants: every [`Node`] carries its line range (1-based, inclusive) and its byte [`Span`] in
//! the source, so later stages can point at the text an error comes from. Parsing is pure: `&str`
//! in, values out. Where BuildKit's behaviour is quirky (a continuation regex that cannot see an
//! escaped escape token, unknown keywords accepted here and rejected later) we keep the quirk,
//! because the contract is "what `docker build` accepts".

use std::fmt::Write as _;

use super::heredoc::{self, Heredoc};
use super::{Location, Span};

/// The longest physical line BuildKit accepts (`bufio.MaxScanTokenSize - 1`).
pub const MAX_LINE_LEN: usize = 65535;

/// The escape token when no `# escape=` directive says otherwise.
pub const DEFAULT_ESCAPE: char = '\\';

/// A parsed Dockerfile: its directives and its instructions in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives (`# syntax=`, `# escape=`, `# check=`) found at the top.
    pub directives: Vec<Directive>,
    /// The escape token in force (`\` or `` ` ``).
    pub escape: char,
    /// One node per instruction.
    pub instructions: Vec<Node>,
    /// Things accepted but worth telling the user (e.g. empty continuation lines).
    pub warnings: Vec<Warning>,
}

/// A parser directive such as `# escape=\``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The directive's name, lowercased (`syntax`, `escape` or `check`).
    pub name: String,
    /// Its value as written, trimmed.
    pub value: String,
    /// The 1-based line it is on.
    pub line: usize,
}

/// A warning: accepted input that BuildKit also warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Which kind of accepted oddity it is.
    pub kind: WarningKind,
    /// What to tell the user.
    pub message: String,
    /// Where.
    pub location: Location,
}

/// The things the parser accepts but BuildKit warns about (the build check
/// `NoEmptyContinuation` reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// A line continuation swallowed blank lines.
    EmptyContinuation,
}

/// One instruction: keyword, flags, arguments and heredoc bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `Copy` …); compare it case-insensitively.
    pub keyword: String,
    /// Builder flags (`--from=build`), quotes removed, in order.
    pub flags: Vec<String>,
    /// The argument values in the keyword's shape.
    pub args: Args,
    /// Heredoc bodies attached to a RUN/COPY/ADD in shell form, in order.
    pub heredocs: Vec<Heredoc>,
    /// The instruction text after continuations were joined (comments dropped).
    pub original: String,
    /// Where the instruction is: its lines and bytes, heredoc bodies included.
    pub location: Location,
    /// The comment lines directly before the instruction, each without its `#` and trimmed
    /// (BuildKit's `PrevComment`): a bare `#` line clears them, blank lines do not, and
    /// top-of-file parser directives are not among them. Build checks read `# check=` and
    /// descriptions from here.
    pub comments: Vec<String>,
}

/// The argument values of an instruction, in the shape its keyword gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// No values at all (`CMD`, `HEALTHCHECK`, `RUN []`-free empty forms).
    Empty,
    /// JSON (exec) form: `["a", "b"]`.
    Json(Vec<String>),
    /// One verbatim string: shell form of RUN/CMD/ENTRYPOINT/SHELL, and MAINTAINER, USER,
    /// WORKDIR, STOPSIGNAL.
    Text(String),
    /// Whitespace-separated words: FROM, EXPOSE, non-JSON ADD/COPY/VOLUME, and ARG.
    Words(Vec<String>),
    /// ENV and LABEL pairs; `legacy` for the old `KEY value` form.
    KeyValues {
        /// `(key, value)` with the value's quotes and escapes kept verbatim.
        pairs: Vec<(String, String)>,
        /// Whether the pair came from the legacy `KEY value` form.
        legacy: bool,
    },
    /// HEALTHCHECK: its type word (`CMD`, `NONE`, …) and what follows it.
    Healthcheck {
        /// The first word, as written.
        kind: String,
        /// The rest, parsed like CMD.
        command: Box<Args>,
    },
    /// ONBUILD: the instruction it wraps.
    OnBuild(Box<Node>),
    /// An unknown keyword: kept so the instruction stage can name it with its line.
    Unknown,
}

impl Args {
    /// Whether the arguments were given in JSON (exec) form.
    pub fn is_json(&self) -> bool {
        match self {
            Args::Json(_) => true,
            Args::Healthcheck { command, .. } => command.is_json(),
            _ => false,
        }
    }
}

/// A Dockerfile that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What is wrong, in BuildKit's words where BuildKit has them.
    pub message: String,
    /// Where.
    pub location: Location,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>, location: Location) -> Self {
        Self {
            message: message.into(),
            location,
        }
    }
}

/// Parses a whole Dockerfile.
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    Parser::new(source).run()
}

/// One physical line: its text without the line ending, where it starts, and where the next
/// line starts.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    /// Content without the trailing `\r`/`\n` characters.
    text: &'a str,
    /// Content including its line ending (heredoc bodies keep it).
    raw: &'a str,
    start: usize,
    end: usize,
}

struct Parser<'a> {
    source: &'a str,
    lines: Vec<Line<'a>>,
    next: usize,
    escape: char,
    directives: Directives,
    warnings: Vec<Warning>,
}

/// BuildKit's directive scanner: directives are accepted only until the first line that is not
/// one, and each at most once.
#[derive(Default)]
struct Directives {
    done: bool,
    found: Vec<Directive>,
}

const DIRECTIVE_NAMES: [&str; 3] = ["syntax", "escape", "check"];

impl Directives {
    /// Looks at a line (already stripped of its ending and leading whitespace).
    fn scan(&mut self, text: &str, line: usize) -> Result<Option<&Directive>, ParseError> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = directive_parts(text) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !DIRECTIVE_NAMES.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.found.iter().any(|d| d.name == name) {
            return Err(ParseError::new(
                format!("only one {name} parser directive can be used"),
                Location::line(line),
            ));
        }
        self.found.push(Directive {
            name,
            value: value.to_owned(),
            line,
        });
        Ok(self.found.last())
    }
}

/// `#` + space + `key` + `\s*=\s*` + value (BuildKit's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
fn directive_parts(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('#')?.trim_start();
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let value = rest.trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((key, value))
}

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        while start < source.len() {
            let end = source[start..]
                .find('\n')
                .map_or(source.len(), |i| start + i + 1);
            let raw = &source[start..end];
            lines.push(Line {
                text: raw.trim_end_matches(['\r', '\n']),
                raw,
                start,
                end,
            });
            start = end;
        }
        if let Some(first) = lines.first_mut() {
            // A UTF-8 byte-order mark is not part of the first line.
            if let Some(text) = first.text.strip_prefix('\u{feff}') {
                first.text = text;
                first.start += '\u{feff}'.len_utf8();
            }
        }
        Self {
            source,
            lines,
            next: 0,
            escape: DEFAULT_ESCAPE,
            directives: Directives::default(),
            warnings: Vec::new(),
        }
    }

    /// The next physical line and its 1-based number.
    fn next_line(&mut self) -> Result<Option<(Line<'a>, usize)>, ParseError> {
        let Some(&line) = self.lines.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        if line.text.len() > MAX_LINE_LEN {
            return Err(ParseError::new(
                format!("dockerfile line greater than max allowed size of {MAX_LINE_LEN}"),
                Location::line(self.next),
            ));
        }
        Ok(Some((line, self.next)))
    }

    /// BuildKit's `processLine`: strips the ending (and leading whitespace on a first line), lets
    /// the directive scanner see the line, and blanks comments.
    fn process_line(
        &mut self,
        text: &'a str,
        first: bool,
        number: usize,
    ) -> Result<&'a str, ParseError> {
        let text = if first { text.trim_start() } else { text };
        if let Some(directive) = self.directives.scan(text, number)?
            && directive.name == "escape"
        {
            self.escape = match directive.value.as_str() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(ParseError::new(
                        format!("invalid escape token '{other}' does not match ` or \\"),
                        Location::line(number),
                    ));
                }
            };
        }
        Ok(if is_comment(text) { "" } else { text })
    }

    fn run(mut self) -> Result<Dockerfile, ParseError> {
        let mut instructions = Vec::new();
        let mut comments: Vec<String> = Vec::new();
        while let Some((line, number)) = self.next_line()? {
            let directives = self.directives.found.len();
            let text = self.process_line(line.text, true, number)?;
            if is_comment(line.text) && self.directives.found.len() == directives {
                match line.text.trim_start()[1..].trim() {
                    "" => comments.clear(),
                    comment => comments.push(comment.to_owned()),
                }
            }
            let (first, mut ended) = trim_continuation(text, self.escape);
            if ended && first.is_empty() {
                continue;
            }
            let start_line = number;
            let start = line.start + (line.text.len() - line.text.trim_start().len());
            let mut end = line.end;
            let mut end_line = number;
            let mut joined = first.to_owned();
            let mut empty_continuation = false;
            while !ended {
                let Some((line, number)) = self.next_line()? else {
                    break;
                };
                let text = self.process_line(line.text, false, number)?;
                end_line = number;
                end = line.end;
                if is_comment(line.text) {
                    continue;
                }
                if text.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (part, part_ended) = trim_continuation(text, self.escape);
                joined.push_str(part);
                ended = part_ended;
            }
            let mut location = Location {
                start_line,
                end_line,
                span: Span { start, end },
            };
            if empty_continuation {
                self.warnings.push(Warning {
                    kind: WarningKind::EmptyContinuation,
                    message: format!(
                        "empty continuation line found in: {joined} (empty continuation lines will become errors in a future release)"
                    ),
                    location,
                });
            }
            let mut node = node_from_line(&joined, self.escape, location)?;
            node.comments = std::mem::take(&mut comments);
            if can_contain_heredoc(&node) && joined.contains("<<") {
                let found = heredoc::heredocs_from_line(&joined)
                    .map_err(|e| ParseError::new(e.to_string(), location))?;
                for mut doc in found {
                    let mut terminated = false;
                    while let Some((line, number)) = self.next_line()? {
                        location.end_line = number;
                        location.span.end = line.end;
                        let candidate = if doc.chomp {
                            line.text.trim_start_matches('\t')
                        } else {
                            line.text
                        };
                        if candidate == doc.name {
                            terminated = true;
                            break;
                        }
                        doc.content.push_str(line.raw);
                    }
                    if !terminated {
                        return Err(ParseError::new(
                            format!("unterminated heredoc {:?}", doc.name),
                            location,
                        ));
                    }
                    node.heredocs.push(doc);
                }
                set_location(&mut node, location);
            }
            instructions.push(node);
        }
        if instructions.is_empty() {
            let last = self.lines.len().max(1);
            return Err(ParseError::new(
                "file with no instructions",
                Location::line(last),
            ));
        }
        debug_assert!(
            instructions
                .iter()
                .all(|n| n.location.span.end <= self.source.len())
        );
        Ok(Dockerfile {
            directives: self.directives.found,
            escape: self.escape,
            instructions,
            warnings: self.warnings,
        })
    }
}

/// Sets the location of a node and of the instruction an ONBUILD wraps.
fn set_location(node: &mut Node, location: Location) {
    node.location = location;
    if let Args::OnBuild(inner) = &mut node.args {
        set_location(inner, location);
    }
}

fn is_comment(text: &str) -> bool {
    text.trim_start().starts_with('#')
}

/// BuildKit's continuation rule: the escape token as the last non-blank character (`[ \t]*`
/// after it), not itself preceded by the escape token, continues the instruction. Returns the
/// text without the token and whether the instruction ended.
fn trim_continuation(text: &str, escape: char) -> (&str, bool) {
    let trimmed = text.trim_end_matches([' ', '\t']);
    let Some(before) = trimmed.strip_suffix(escape) else {
        return (text, true);
    };
    match before.chars().next_back() {
        None => ("", false),
        Some(c) if c != escape => (before, false),
        Some(_) => (text, true),
    }
}

/// Go's `unicode.IsSpace`, which is Unicode's White_Space property, as Rust's.
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `[\t\v\f\r ]` token separator.
fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn split_tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_token_space).filter(|s| !s.is_empty())
}

/// Splits a joined line into keyword, flags and argument text, then parses the arguments in the
/// keyword's shape.
fn node_from_line(line: &str, escape: char, location: Location) -> Result<Node, ParseError> {
    let (keyword, rest) = split_keyword(line);
    let (args_text, flags) = extract_flags(rest);
    let args_text = args_text.trim();
    let args = parse_args(keyword, args_text, escape, location)?;
    Ok(Node {
        keyword: keyword.to_owned(),
        flags,
        args,
        heredocs: Vec::new(),
        original: line.to_owned(),
        location,
        comments: Vec::new(),
    })
}

/// The keyword of a joined line and the text after it.
fn split_keyword(line: &str) -> (&str, &str) {
    let line = line.trim();
    match line.find(is_token_space) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_token_space)),
        None => (line, ""),
    }
}

/// Whether the text after an `ONBUILD` is itself `ONBUILD [flags] ONBUILD …`.
fn chains_onbuild(rest: &str) -> bool {
    let (keyword, rest) = split_keyword(rest);
    let (inner, _) = split_keyword(extract_flags(rest).0);
    keyword.eq_ignore_ascii_case("onbuild") && inner.eq_ignore_ascii_case("onbuild")
}

/// BuildKit's `extractBuilderFlags`: leading words starting with `--` are flags; quotes in them are
/// removed and `\` escapes the next character; a bare `--` ends the flags.
///
/// Deviation: BuildKit scans bytes and re-encodes non-ASCII flag bytes as Latin-1; we keep
/// UTF-8 text as written.
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    let mut flags = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(is_space);
        if !rest.starts_with("--") {
            return (rest, flags);
        }
        let mut word = String::new();
        let mut quote = None;
        let mut blank_ok = false;
        let mut chars = rest.char_indices();
        let mut word_end = rest.len();
        while let Some((i, c)) = chars.next() {
            match quote {
                None if is_space(c) => {
                    word_end = i;
                    break;
                }
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    blank_ok = true;
                }
                Some(q) if c == q => quote = None,
                _ if c == '\\' => match chars.next() {
                    Some((_, next)) => word.push(next),
                    None => quote = None,
                },
                _ => word.push(c),
            }
        }
        rest = &rest[word_end..];
        if word == "--" {
            return (rest, flags);
        }
        if blank_ok || !word.is_empty() {
            flags.push(word);
        }
    }
}

fn parse_args(
    keyword: &str,
    rest: &str,
    escape: char,
    location: Location,
) -> Result<Args, ParseError> {
    let error = |message: String| ParseError::new(message, location);
    Ok(match keyword.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => match parse_json(rest).map_err(error)? {
            Some(values) => Args::Json(values),
            None => words_or_empty(split_tokens(rest).map(str::to_owned).collect()),
        },
        "from" | "expose" => words_or_empty(split_tokens(rest).map(str::to_owned).collect()),
        "run" | "cmd" | "entrypoint" | "shell" => parse_maybe_json(rest).map_err(error)?,
        "env" => parse_name_val(rest, "ENV", escape).map_err(error)?,
        "label" => parse_name_val(rest, "LABEL", escape).map_err(error)?,
        "arg" => words_or_empty(parse_words(rest, escape)),
        "maintainer" | "user" | "workdir" | "stopsignal" => {
            if rest.is_empty() {
                Args::Empty
            } else {
                Args::Text(rest.to_owned())
            }
        }
        "healthcheck" => {
            let kind_end = rest.find(is_space).unwrap_or(rest.len());
            if kind_end == 0 {
                Args::Empty
            } else {
                let command = parse_maybe_json(rest[kind_end..].trim_start_matches(is_space))
                    .map_err(error)?;
                Args::Healthcheck {
                    kind: rest[..kind_end].to_owned(),
                    command: Box::new(command),
                }
            }
        }
        "onbuild" => {
            if rest.is_empty() {
                Args::Empty
            } else if chains_onbuild(rest) {
                // BuildKit parses any chain and refuses `ONBUILD ONBUILD` when typing it (as
                // `Instruction::from_node` does); a longer chain is refused here, since parsing it
                // recurses once per ONBUILD and one line holds thousands.
                return Err(error(
                    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned(),
                ));
            } else {
                Args::OnBuild(Box::new(node_from_line(rest, escape, location)?))
            }
        }
        _ => Args::Unknown,
    })
}

fn words_or_empty(words: Vec<String>) -> Args {
    if words.is_empty() {
        Args::Empty
    } else {
        Args::Words(words)
    }
}

/// The message BuildKit gives for `["a", 1]`.
const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// A JSON array of strings, `None` when the text is not a JSON array at all (so it is shell
/// form), and an error when it is an array with a non-string element.
pub(crate) fn parse_json(text: &str) -> Result<Option<Vec<String>>, String> {
    let text = text.trim_start_matches(is_space);
    if !text.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(text) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NOT_STRING_ARRAY.to_owned()),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn parse_maybe_json(rest: &str) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::Empty);
    }
    Ok(match parse_json(rest)? {
        Some(values) => Args::Json(values),
        None => Args::Text(rest.to_owned()),
    })
}

/// ENV and LABEL: the legacy `KEY value` form when the first word has no `=`, else `k=v` words.
fn parse_name_val(rest: &str, keyword: &str, escape: char) -> Result<Args, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Args::Empty);
    };
    if !first.contains('=') {
        let mut parts = rest.splitn(2, is_token_space);
        let key = parts.next().unwrap_or_default();
        let Some(value) = parts.next() else {
            return Err(format!("{keyword} must have two arguments"));
        };
        let value = value.trim_start_matches(is_token_space);
        return Ok(Args::KeyValues {
            pairs: vec![(key.to_owned(), value.to_owned())],
            legacy: true,
        });
    }
    let pairs =
        words
            .iter()
            .map(|word| {
                word.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| {
                format!("Syntax error - can't find = in {word:?}. Must be of the form: name=value")
            })
            })
            .collect::<Result<_, _>>()?;
    Ok(Args::KeyValues {
        pairs,
        legacy: false,
    })
}

/// BuildKit's `parseWords`: whitespace separates words outside quotes; quotes and escapes stay in
/// the word (outside single quotes the escape token keeps the next character with it).
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if !in_word {
            if is_space(c) {
                continue;
            }
            in_word = true;
        }
        match quote {
            None => {
                if is_space(c) {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    let Some(next) = chars.next() else { continue };
                    word.push(c);
                    word.push(next);
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                if c == escape && q != '\'' {
                    let Some(next) = chars.next() else {
                        quote = None;
                        continue;
                    };
                    word.push(c);
                    word.push(next);
                    continue;
                }
                word.push(c);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Whether an instruction may carry heredocs: RUN, COPY or ADD (also inside ONBUILD), shell form.
fn can_contain_heredoc(node: &Node) -> bool {
    let node = match &node.args {
        Args::OnBuild(inner) => inner,
        _ => node,
    };
    matches!(
        node.keyword.to_ascii_lowercase().as_str(),
        "run" | "copy" | "add"
    ) && !node.args.is_json()
}

impl Dockerfile {
    /// BuildKit's `Node.Dump()` of the whole file: one S-expression per instruction, each on its
    /// own line. Used to compare against upstream's expected parse results.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.instructions {
            let _ = writeln!(out, "({})", node.dump());
        }
        out.trim_end().to_owned()
    }
}

impl Node {
    /// BuildKit's S-expression dump of one instruction.
    pub fn dump(&self) -> String {
        let mut out = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            let _ = write!(out, " [{}]", flags.join(" "));
        }
        self.args.dump_into(&mut out);
        out.trim().to_owned()
    }
}

impl Args {
    fn dump_into(&self, out: &mut String) {
        let mut value = |v: &str| {
            out.push(' ');
            out.push_str(&go_quote(v));
        };
        match self {
            Args::Empty => {}
            Args::Json(values) | Args::Words(values) => values.iter().for_each(|v| value(v)),
            Args::Text(text) => value(text),
            Args::KeyValues { pairs, legacy } => {
                for (k, v) in pairs {
                    value(k);
                    value(v);
                    value(if *legacy { "" } else { "=" });
                }
            }
            Args::Healthcheck { kind, command } => {
                value(kind);
                command.dump_into(out);
            }
            Args::OnBuild(node) => {
                let _ = write!(out, " ({})", node.dump());
            }
            Args::Unknown => value(""),
        }
    }
}

/// Go's `strconv.Quote`, which the upstream dumps use.
///
/// Go keeps characters that `unicode.IsPrint` accepts; without Unicode category tables we treat
/// every non-control, non-format character other than non-ASCII white space as printable, which
/// agrees with Go on everything but unassigned code points.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // Format characters (Unicode category Cf), private use and noncharacters are not printable.
    !matches!(c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f
        | 0xe000..=0xf8ff | 0xfdd0..=0xfdef | 0xfeff | 0xfff9..=0xfffb | 0xfffe..=0xffff
        | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
        | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..)
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
