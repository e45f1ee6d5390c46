//! The slice of Go's RE2 syntax that patternmatcher's compiled expressions can contain, and a
//! Thompson-NFA matcher for it (no regex crate is available to the workspace).
//!
//! patternmatcher turns a pattern into an RE2 expression and lets Go's `regexp` decide both whether
//! it compiles and what it matches. Those expressions are not always the glob the user meant:
//! characters such as `^`, `[`, `]` and `\x` escapes pass through raw, so `[[:alpha:]]`, `\d` or a
//! reversed range `[l-O]` mean (or reject) what RE2 says. This module therefore parses RE2 syntax
//! with Go's rules and flags (`Perl`: `^`/`$` anchor the whole text, `.` excludes `\n`, negated
//! classes include `\n`), not glob syntax. Everything patternmatcher can emit is supported, plus
//! the rest of RE2's escapes a user can smuggle through `\`; the exceptions are Unicode classes
//! (`\pL`, `\p{Greek}`), which would need Unicode tables and are reported as
//! [`RegexError::UnicodeClass`], and counted repetition, which patternmatcher cannot emit
//! because it escapes `{`. Matching is a set-of-states simulation, linear in the path length, so
//! no pattern can make it backtrack exponentially.

use thiserror::Error;

/// Why an expression compiled from a pattern was rejected (Go reports all of these as
/// `filepath.ErrBadPattern` when the pattern is first matched).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegexError {
    /// A `[` class without its closing `]`.
    #[error("missing closing ]")]
    MissingBracket,
    /// A class range whose ends are reversed (`[l-O]`), or an unknown `[:name:]` class.
    #[error("invalid character class range {0:?}")]
    InvalidCharRange(String),
    /// A `\` escape RE2 does not define, or a trailing `\`.
    #[error("invalid escape sequence {0:?}")]
    InvalidEscape(String),
    /// A `(` without `)`.
    #[error("missing closing )")]
    MissingParen,
    /// A `)` without `(`.
    #[error("unexpected )")]
    UnexpectedParen,
    /// `*`, `+` or `?` with nothing to repeat.
    #[error("missing argument to repetition operator")]
    MissingRepeatArgument,
    /// Two repetition operators in a row (`a**`).
    #[error("invalid nested repetition operator")]
    NestedRepetition,
    /// A Unicode class (`\pL`, `\p{Greek}`); valid RE2, but not implemented here.
    #[error("unicode character class {0:?} is not supported")]
    UnicodeClass(String),
    /// Flags or counted repetition; valid RE2, but never produced from a pattern.
    #[error("unsupported regexp syntax {0:?}")]
    Unsupported(String),
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub(super) struct Regex {
    program: Vec<Inst>,
}

impl Regex {
    /// Parses `source` with RE2's Perl-mode rules.
    pub(super) fn new(source: &str) -> Result<Regex, RegexError> {
        let mut parser = Parser {
            chars: source.chars().collect(),
            pos: 0,
        };
        let node = parser.alternation(0)?;
        if parser.pos < parser.chars.len() {
            // `alternation` only stops early at a `)` with no group open.
            return Err(RegexError::UnexpectedParen);
        }
        let mut program = Vec::new();
        emit(&node, &mut program);
        program.push(Inst::Match);
        Ok(Regex { program })
    }

    /// Whether the expression matches anywhere in `text` (Go's `MatchString`).
    pub(super) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut current = StateSet::new(self.program.len());
        let mut next = StateSet::new(self.program.len());
        for pos in 0..=chars.len() {
            // An unanchored search: a new thread may start at every position.
            self.add(&mut current, 0, &chars, pos);
            if current
                .states
                .iter()
                .any(|&pc| matches!(self.program[pc], Inst::Match))
            {
                return true;
            }
            let Some(&c) = chars.get(pos) else { break };
            next.clear();
            for &pc in &current.states {
                if let Inst::Class(ranges) = &self.program[pc]
                    && class_contains(ranges, c)
                {
                    self.add(&mut next, pc + 1, &chars, pos + 1);
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        false
    }

    /// Adds `pc` and everything reachable from it without consuming input.
    fn add(&self, set: &mut StateSet, pc: usize, chars: &[char], pos: usize) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if !set.insert(pc) {
                continue;
            }
            match &self.program[pc] {
                Inst::Jmp(to) => stack.push(*to),
                Inst::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Inst::Assert(look) => {
                    if look.holds(chars, pos) {
                        stack.push(pc + 1);
                    }
                }
                Inst::Class(_) | Inst::Match => {}
            }
        }
    }
}

/// The threads alive at one position: an ordered list plus a membership bitmap.
struct StateSet {
    states: Vec<usize>,
    member: Vec<bool>,
}

impl StateSet {
    fn new(size: usize) -> StateSet {
        StateSet {
            states: Vec::with_capacity(size),
            member: vec![false; size],
        }
    }

    fn insert(&mut self, pc: usize) -> bool {
        if self.member[pc] {
            return false;
        }
        self.member[pc] = true;
        self.states.push(pc);
        true
    }

    fn clear(&mut self) {
        for &pc in &self.states {
            self.member[pc] = false;
        }
        self.states.clear();
    }
}

/// Sorted, inclusive code-point ranges.
type Ranges = Vec<(u32, u32)>;

const MAX_RUNE: u32 = 0x10_FFFF;

fn class_contains(ranges: &Ranges, c: char) -> bool {
    let c = u32::from(c);
    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

/// Sorts and merges ranges, then complements them when `negate` is set.
fn normalize(mut ranges: Ranges, negate: bool) -> Ranges {
    ranges.sort_unstable();
    let mut merged: Ranges = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    if !negate {
        return merged;
    }
    let mut complement = Vec::with_capacity(merged.len() + 1);
    let mut next = 0u32;
    for (lo, hi) in merged {
        if lo > next {
            complement.push((next, lo - 1));
        }
        next = hi + 1;
    }
    if next <= MAX_RUNE {
        complement.push((next, MAX_RUNE));
    }
    complement
}

/// Zero-width assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

impl Look {
    fn holds(self, chars: &[char], pos: usize) -> bool {
        // RE2's \b is ASCII-only.
        let word = |c: Option<&char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_');
        let boundary = || {
            let before = pos.checked_sub(1).and_then(|p| chars.get(p));
            word(before) != word(chars.get(pos))
        };
        match self {
            Look::BeginText => pos == 0,
            Look::EndText => pos == chars.len(),
            Look::WordBoundary => boundary(),
            Look::NotWordBoundary => !boundary(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Empty,
    Class(Ranges),
    Look(Look),
    Concat(Vec<Node>),
    Alternate(Vec<Node>),
    Star(Box<Node>),
    Plus(Box<Node>),
    Quest(Box<Node>),
}

#[derive(Debug, Clone)]
enum Inst {
    Class(Ranges),
    Assert(Look),
    Jmp(usize),
    Split(usize, usize),
    Match,
}

/// Thompson construction.
fn emit(node: &Node, program: &mut Vec<Inst>) {
    match node {
        Node::Empty => {}
        Node::Class(ranges) => program.push(Inst::Class(ranges.clone())),
        Node::Look(look) => program.push(Inst::Assert(*look)),
        Node::Concat(nodes) => nodes.iter().for_each(|n| emit(n, program)),
        Node::Alternate(branches) => {
            let mut jumps = Vec::new();
            let (last, init) = branches.split_last().unwrap_or((&Node::Empty, &[]));
            for branch in init {
                let split = program.len();
                program.push(Inst::Split(split + 1, 0));
                emit(branch, program);
                jumps.push(program.len());
                program.push(Inst::Jmp(0));
                program[split] = Inst::Split(split + 1, program.len());
            }
            emit(last, program);
            let end = program.len();
            for jump in jumps {
                program[jump] = Inst::Jmp(end);
            }
        }
        Node::Star(sub) => {
            let split = program.len();
            program.push(Inst::Split(split + 1, 0));
            emit(sub, program);
            program.push(Inst::Jmp(split));
            program[split] = Inst::Split(split + 1, program.len());
        }
        Node::Plus(sub) => {
            let start = program.len();
            emit(sub, program);
            program.push(Inst::Split(start, program.len() + 1));
        }
        Node::Quest(sub) => {
            let split = program.len();
            program.push(Inst::Split(split + 1, 0));
            emit(sub, program);
            program[split] = Inst::Split(split + 1, program.len());
        }
    }
}

/// A recursive-descent parser following Go's `regexp/syntax` with the `Perl` flags.
struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn rest(&self) -> String {
        self.chars[self.pos..].iter().collect()
    }

    /// `a|b|…` up to a `)` or the end.
    fn alternation(&mut self, depth: usize) -> Result<Node, RegexError> {
        let mut branches = vec![self.concatenation(depth)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concatenation(depth)?);
        }
        Ok(if branches.len() == 1 {
            branches.remove(0)
        } else {
            Node::Alternate(branches)
        })
    }

    fn concatenation(&mut self, depth: usize) -> Result<Node, RegexError> {
        let mut items: Vec<Node> = Vec::new();
        // Whether the last item is a repetition, which another operator may not follow.
        let mut repeated = false;
        while let Some(c) = self.peek() {
            match c {
                '|' => break,
                ')' if depth > 0 => break,
                ')' => return Err(RegexError::UnexpectedParen),
                '*' | '+' | '?' => {
                    self.pos += 1;
                    // A trailing `?` makes the operator non-greedy, which changes nothing for a
                    // yes/no match.
                    if self.peek() == Some('?') {
                        self.pos += 1;
                    }
                    if repeated {
                        return Err(RegexError::NestedRepetition);
                    }
                    let sub = Box::new(items.pop().ok_or(RegexError::MissingRepeatArgument)?);
                    items.push(match c {
                        '*' => Node::Star(sub),
                        '+' => Node::Plus(sub),
                        _ => Node::Quest(sub),
                    });
                    repeated = true;
                    continue;
                }
                '{' if self.counted_repetition() => {
                    return Err(RegexError::Unsupported(self.rest()));
                }
                '(' => {
                    if self.peek_at(1) == Some('?') {
                        return Err(RegexError::Unsupported(self.rest()));
                    }
                    self.pos += 1;
                    let group = self.alternation(depth + 1)?;
                    if self.peek() != Some(')') {
                        return Err(RegexError::MissingParen);
                    }
                    self.pos += 1;
                    items.push(group);
                }
                '[' => items.push(Node::Class(self.class()?)),
                '.' => {
                    self.pos += 1;
                    items.push(Node::Class(normalize(vec![(10, 10)], true)));
                }
                '^' => {
                    self.pos += 1;
                    items.push(Node::Look(Look::BeginText));
                }
                '$' => {
                    self.pos += 1;
                    items.push(Node::Look(Look::EndText));
                }
                '\\' => self.top_level_escape(&mut items)?,
                _ => {
                    self.pos += 1;
                    items.push(literal(c));
                }
            }
            repeated = false;
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.remove(0),
            _ => Node::Concat(items),
        })
    }

    /// Whether the `{` at the cursor starts `{n}`, `{n,}` or `{n,m}` (otherwise it is a literal).
    fn counted_repetition(&self) -> bool {
        let rest = self.rest();
        let Some(end) = rest.find('}') else {
            return false;
        };
        let inner = &rest[1..end];
        let (min, max) = inner.split_once(',').unwrap_or((inner, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits(min) && (max.is_empty() || digits(max))
    }

    fn top_level_escape(&mut self, items: &mut Vec<Node>) -> Result<(), RegexError> {
        match self.peek_at(1) {
            Some('A') => items.push(Node::Look(Look::BeginText)),
            Some('z') => items.push(Node::Look(Look::EndText)),
            Some('b') => items.push(Node::Look(Look::WordBoundary)),
            Some('B') => items.push(Node::Look(Look::NotWordBoundary)),
            Some('C') => return Err(RegexError::InvalidEscape("\\C".to_owned())),
            Some('Q') => {
                // \Q…\E: everything up to \E (or the end) is literal.
                self.pos += 2;
                while self.pos < self.chars.len() {
                    if self.peek() == Some('\\') && self.peek_at(1) == Some('E') {
                        self.pos += 2;
                        return Ok(());
                    }
                    items.push(literal(self.chars[self.pos]));
                    self.pos += 1;
                }
                return Ok(());
            }
            _ => {
                if let Some(ranges) = self.class_escape()? {
                    items.push(Node::Class(ranges));
                } else {
                    let c = self.escape()?;
                    items.push(literal(c));
                }
                return Ok(());
            }
        }
        self.pos += 2;
        Ok(())
    }

    /// `\d`, `\s`, `\w` and their negations; `\p` and `\P` are rejected as unsupported.
    fn class_escape(&mut self) -> Result<Option<Ranges>, RegexError> {
        let (negate, group): (bool, &[(u32, u32)]) = match self.peek_at(1) {
            Some('p' | 'P') => {
                // `\pL` or `\p{Name}`: report the class as written.
                let rest = &self.chars[self.pos..];
                let len = match rest.get(2) {
                    Some('{') => rest
                        .iter()
                        .position(|&c| c == '}')
                        .map_or(rest.len(), |i| i + 1),
                    _ => rest.len().min(3),
                };
                return Err(RegexError::UnicodeClass(rest[..len].iter().collect()));
            }
            Some('d') => (false, DIGIT),
            Some('D') => (true, DIGIT),
            Some('s') => (false, PERL_SPACE),
            Some('S') => (true, PERL_SPACE),
            Some('w') => (false, WORD),
            Some('W') => (true, WORD),
            _ => return Ok(None),
        };
        self.pos += 2;
        Ok(Some(normalize(group.to_vec(), negate)))
    }

    /// One escaped character (Go's `parseEscape`), the cursor on the `\`.
    fn escape(&mut self) -> Result<char, RegexError> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(RegexError::InvalidEscape("\\".to_owned()));
        };
        self.pos += 1;
        let invalid = |p: &Parser| {
            let text: String = p.chars[start..p.pos.min(p.chars.len())].iter().collect();
            RegexError::InvalidEscape(text)
        };
        let octal = |c: Option<char>| c.filter(|c| ('0'..='7').contains(c));
        match c {
            // Escaped punctuation is always itself.
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c),
            '1'..='7' if octal(self.peek()).is_none() => Err(invalid(self)),
            '0'..='7' => {
                // Up to two more octal digits after the first.
                let mut value = c as u32 - '0' as u32;
                for _ in 0..2 {
                    let Some(d) = octal(self.peek()) else { break };
                    value = value * 8 + (d as u32 - '0' as u32);
                    self.pos += 1;
                }
                char::from_u32(value).ok_or_else(|| invalid(self))
            }
            'x' => {
                // `\x{…}` cannot occur (patternmatcher escapes braces); two hex digits can.
                let hi = self.peek().and_then(|c| c.to_digit(16));
                let lo = self.peek_at(1).and_then(|c| c.to_digit(16));
                self.pos = (self.pos + 2).min(self.chars.len());
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        char::from_u32(hi * 16 + lo).ok_or_else(|| invalid(self))
                    }
                    _ => Err(invalid(self)),
                }
            }
            'a' => Ok('\x07'),
            'f' => Ok('\x0c'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\x0b'),
            _ => Err(invalid(self)),
        }
    }

    /// A `[…]` class (Go's `parseClass`), the cursor on the `[`.
    fn class(&mut self) -> Result<Ranges, RegexError> {
        self.pos += 1;
        let mut negate = false;
        if self.peek() == Some('^') {
            negate = true;
            self.pos += 1;
        }
        let mut ranges = Ranges::new();
        // `]` right after `[` or `[^` is a member, not the end.
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err(RegexError::MissingBracket),
                Some(']') if !first => break,
                _ => {}
            }
            first = false;
            if self.peek() == Some('[') && self.peek_at(1) == Some(':') {
                let rest = self.rest();
                if let Some(end) = rest[2..].find(":]") {
                    let name = &rest[..end + 4];
                    let (negated, group) = posix_group(name)
                        .ok_or_else(|| RegexError::InvalidCharRange(name.to_owned()))?;
                    ranges.extend(normalize(group.to_vec(), negated));
                    self.pos += name.chars().count();
                    continue;
                }
            }
            if self.peek() == Some('\\')
                && let Some(group) = self.class_escape()?
            {
                ranges.extend(group);
                continue;
            }
            let range_start = self.pos;
            let lo = self.class_char()?;
            let mut hi = lo;
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.pos += 1;
                hi = self.class_char()?;
                if hi < lo {
                    let text = self.chars[range_start..self.pos].iter().collect();
                    return Err(RegexError::InvalidCharRange(text));
                }
            }
            ranges.push((u32::from(lo), u32::from(hi)));
        }
        self.pos += 1;
        Ok(normalize(ranges, negate))
    }

    fn class_char(&mut self) -> Result<char, RegexError> {
        match self.peek() {
            None => Err(RegexError::MissingBracket),
            Some('\\') => self.escape(),
            Some(c) => {
                self.pos += 1;
                Ok(c)
            }
        }
    }
}

fn literal(c: char) -> Node {
    Node::Class(vec![(u32::from(c), u32::from(c))])
}

const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const PERL_SPACE: &[(u32, u32)] = &[(0x09, 0x0a), (0x0c, 0x0d), (0x20, 0x20)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)];

/// The ASCII classes `[:name:]` and `[:^name:]` (Go's `posixGroup`).
fn posix_group(name: &str) -> Option<(bool, &'static [(u32, u32)])> {
    let inner = name.strip_prefix("[:")?.strip_suffix(":]")?;
    let (negated, inner) = match inner.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, inner),
    };
    let group: &'static [(u32, u32)] = match inner {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a)],
        "alpha" => &[(0x41, 0x5a), (0x61, 0x7a)],
        "ascii" => &[(0x00, 0x7f)],
        "blank" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl" => &[(0x00, 0x1f), (0x7f, 0x7f)],
        "digit" => DIGIT,
        "graph" => &[(0x21, 0x7e)],
        "lower" => &[(0x61, 0x7a)],
        "print" => &[(0x20, 0x7e)],
        "punct" => &[(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
        "space" => &[(0x09, 0x0d), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5a)],
        "word" => WORD,
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    };
    Some((negated, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_go_regexp() {
        // (expression, text, matches) — expected values are Go's regexp.MatchString results.
        let cases: &[(&str, &str, bool)] = &[
            ("^[^/]*$", "abc", true),
            ("^[^/]*$", "a/c", false),
            ("^(.*/)?dir2/.*$", "a/b/dir2/x", true),
            ("^(.*/)?dir2/.*$", "dir2/x", true),
            ("^(.*/)?dir2/.*$", "xdir2/x", false),
            // `.` stops at a newline; a negated class does not.
            ("^(.*/)?x$", "a\nb/x", false),
            ("^[^/]*x$", "a\nbx", true),
            ("^a\\\\$", "a\\", true),
            ("^a\\*b$", "a*b", true),
            ("^[\\]a]$", "]", true),
            ("^[a-ζ][^/]*$", "α", true),
            ("^[[:alpha:]]$", "q", true),
            ("^[[:alpha:]]$", "[", false),
            ("^[[:^digit:]]$", "x", true),
            ("^[[^/]*]$", "^/]", true),
            ("^[]a]$", "]", true),
            ("^a^b$", "a^b", false),
            ("^\\d+$", "123", true),
            ("^[\\w.]+$", "a_b.c", true),
            ("^\\Q.*\\E$", ".*", true),
            ("^\\Q.*\\E$", "ab", false),
            ("^\\x41\\101\\0$", "AA\0", true),
            ("^a\\b", "a b", true),
            ("^a\\B", "ab", true),
            ("^(a|bc)+$", "abca", true),
            ("^(a|bc)+$", "abcb", false),
            ("b", "abc", true),
            ("^[^\\n]$", "\n", false),
            ("^(a*)*$", "aaa", true),
            ("^x{$", "x{", true),
        ];
        for (source, text, want) in cases {
            let re = Regex::new(source).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(re.is_match(text), *want, "{source} on {text:?}");
        }
        assert_eq!(cases.len(), 30);
    }

    #[test]
    fn rejects_what_go_rejects() {
        let cases: &[(&str, RegexError)] = &[
            ("^[l-O]/$", RegexError::InvalidCharRange("l-O".into())),
            ("^[a", RegexError::MissingBracket),
            (
                "^[[:nope:]]$",
                RegexError::InvalidCharRange("[:nope:]".into()),
            ),
            ("^\\e$", RegexError::InvalidEscape("\\e".into())),
            ("^\\1$", RegexError::InvalidEscape("\\1".into())),
            ("^\\xg1$", RegexError::InvalidEscape("\\xg1".into())),
            ("^a\\", RegexError::InvalidEscape("\\".into())),
            ("^a**$", RegexError::NestedRepetition),
            ("*a", RegexError::MissingRepeatArgument),
            ("(a", RegexError::MissingParen),
            ("a)", RegexError::UnexpectedParen),
            ("^\\pL$", RegexError::UnicodeClass("\\pL".into())),
            (
                "^\\p{Greek}$",
                RegexError::UnicodeClass("\\p{Greek}".into()),
            ),
            ("^a{2}$", RegexError::Unsupported("{2}$".into())),
            ("(?i)a", RegexError::Unsupported("(?i)a".into())),
        ];
        for (source, want) in cases {
            assert_eq!(Regex::new(source).err().as_ref(), Some(want), "{source}");
        }
    }

    #[test]
    fn no_exponential_backtracking() {
        let re = Regex::new("^[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*b$").unwrap();
        let text = "a".repeat(5000);
        assert!(!re.is_match(&text));
    }
}
