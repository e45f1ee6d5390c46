//! Shell wildcard patterns for `${name#…}`, `${name%…}` and `${name/…/…}`, matched exactly as
//! BuildKit's translation to a Go regular expression matches them.
//!
//! A pattern is literal characters, `?` (one character) and `*` (any run). `\*`, `\?` and `\\`
//! are literals, `\}` and `\/` are `}` and `/`, and any other `\x` is an error. The escape here
//! is always `\`, whatever the Dockerfile's escape token. There are no bracket expressions.
//!
//! Matching follows Go's `regexp` (RE2, leftmost-first): the leftmost start wins, and at that
//! start the first match in backtracking priority order (`*` longest-first when greedy,
//! shortest-first when not). As in Go's default flags, `?` and `*` never match a newline. Like
//! Go, the matcher simulates all candidate matches at once, so its time is linear in the text.

use super::expand::{is_digit, is_letter};

/// Why a pattern could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `\` followed by a character it cannot escape; `None` when the pattern ends in `\`.
    #[error("invalid escape '\\{}'", .escaped.map(String::from).unwrap_or_default())]
    InvalidEscape {
        /// The character after the `\`.
        escaped: Option<char>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: one character other than a newline.
    Any,
    /// `*`: a run of characters without a newline.
    Star,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    tokens: Vec<Token>,
    /// `*` prefers the longest run (`##`, `%%`, `/`) rather than the shortest (`#`, `%`).
    greedy: bool,
    /// Matches only at the start of the text.
    anchored: bool,
}

impl Pattern {
    /// Compiles `text` (BuildKit `convertShellPatternToRegex`).
    pub(super) fn compile(text: &str, greedy: bool, anchored: bool) -> Result<Self, PatternError> {
        // Go's text/scanner, which upstream reads the pattern with, drops a leading BOM.
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Star,
                '?' => Token::Any,
                // `}` and `/` had to be escaped to get past the `${…}` walk; the escape is not
                // part of the pattern.
                '\\' if matches!(chars.peek(), Some('}' | '/')) => continue,
                '\\' => match chars.next() {
                    Some(e @ ('*' | '?' | '\\')) => Token::Literal(e),
                    escaped => return Err(PatternError::InvalidEscape { escaped }),
                },
                c => Token::Literal(c),
            });
        }
        Ok(Pattern {
            tokens,
            greedy,
            anchored,
        })
    }

    /// The first match at or after char index `from`, as char indices `(start, end)`.
    ///
    /// A Pike VM: all alive threads advance together over the text, kept in priority order, so
    /// the first thread to reach the end of the pattern cuts off every thread below it, and a
    /// later match of a thread above it replaces it. New starts enter at the lowest priority
    /// until something has matched. This is RE2's leftmost-first search; it runs in
    /// O(tokens × length) time and needs no recursion, however long the pattern.
    fn find(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        let mut current = Threads::new(self.tokens.len());
        let mut next = Threads::new(self.tokens.len());
        let mut best = None;
        for pos in from..=text.len() {
            if best.is_none() && (!self.anchored || pos == from) {
                self.add(&mut current, 0, pos);
            }
            if current.list.is_empty() {
                break;
            }
            let c = text.get(pos).copied();
            let consumable = c.is_some_and(|c| c != '\n');
            next.clear();
            for &Thread { pc, start } in &current.list {
                match self.tokens.get(pc) {
                    None => {
                        best = Some((start, pos));
                        break;
                    }
                    Some(Token::Literal(l)) if c == Some(*l) => self.add(&mut next, pc + 1, start),
                    Some(Token::Any) if consumable => self.add(&mut next, pc + 1, start),
                    Some(Token::Star) if consumable => self.add(&mut next, pc, start),
                    Some(_) => {}
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        best
    }

    /// Adds the thread at `pc` and everything reachable from it without reading a character,
    /// in priority order: a greedy `*` prefers taking another character over moving on, a lazy
    /// one the reverse. A `pc` already in the list is already there at a higher priority.
    fn add(&self, threads: &mut Threads, mut pc: usize, start: usize) {
        while !threads.seen[pc] {
            threads.seen[pc] = true;
            match self.tokens.get(pc) {
                Some(Token::Star) if !self.greedy => threads.lazy.push(pc),
                Some(Token::Star) => threads.list.push(Thread { pc, start }),
                _ => {
                    threads.list.push(Thread { pc, start });
                    break;
                }
            }
            pc += 1;
        }
        // Lazy stars rank below what follows them, so they go in after it, the last one first.
        let lazy = threads.lazy.drain(..).rev();
        threads.list.extend(lazy.map(|pc| Thread { pc, start }));
    }

    /// Replaces the first match (plain text, no `$` expansion: upstream splices strings here).
    pub(super) fn replace_first(&self, value: &str, replacement: &str) -> String {
        let text: Vec<char> = value.chars().collect();
        match self.find(&text, 0) {
            Some((start, end)) => {
                let mut out: String = text[..start].iter().collect();
                out.push_str(replacement);
                out.extend(&text[end..]);
                out
            }
            None => value.to_owned(),
        }
    }

    /// Replaces every match as Go's `Regexp.ReplaceAllString` does: the replacement is a
    /// template (`$0` is the match, `$$` a dollar, other `$name` empty), an empty match right
    /// after a match is not replaced, and the search always advances. `None` as soon as the
    /// result is longer than `limit` bytes.
    pub(super) fn replace_all(
        &self,
        value: &str,
        replacement: &str,
        limit: usize,
    ) -> Option<String> {
        let text: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut search = 0;
        let mut last_end = 0;
        while search <= text.len() {
            let Some((start, end)) = self.find(&text, search) else {
                break;
            };
            out.extend(&text[last_end..start]);
            if end > last_end || start == 0 {
                let matched: String = text[start..end].iter().collect();
                expand_template(&mut out, replacement, &matched);
            }
            if out.len() > limit {
                return None;
            }
            last_end = end;
            search = if search + 1 > end { search + 1 } else { end };
        }
        out.extend(&text[last_end.min(text.len())..]);
        (out.len() <= limit).then_some(out)
    }
}

/// Removes the prefix of `value` that `pattern` matches (BuildKit `trimPrefix`).
pub(super) fn trim_prefix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternError> {
    let pattern = Pattern::compile(pattern, greedy, true)?;
    let text: Vec<char> = value.chars().collect();
    Ok(match pattern.find(&text, 0) {
        Some((_, end)) => text[end..].iter().collect(),
        None => value.to_owned(),
    })
}

/// Removes the suffix of `value` that `pattern` matches (BuildKit `trimSuffix`): the shortest
/// or longest rightmost match is found as a prefix match of the reversed pattern on the
/// reversed value.
pub(super) fn trim_suffix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternError> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` pair in order (`a\*c` → `c\*a`). A trailing `\` is
/// reversed like an ordinary character.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            out.push([chars[i], chars[i + 1]]);
            i += 2;
        } else {
            out.push([chars[i], '\0']);
            i += 1;
        }
    }
    out.iter()
        .rev()
        .flat_map(|pair| pair.iter().copied().filter(|&c| c != '\0'))
        .collect()
}

/// Go's `Regexp.Expand` for a pattern without capture groups: `$$` is `$`, `$0` / `${0}` is
/// the whole match, any other well-formed `$name` / `${name}` is empty, and a malformed `$` is
/// kept as text.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_name(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// The `name` or `{name}` at the start of `s` and the text after it (Go `regexp.extract`).
/// Returns the name only when it means group 0; other names are reported as `""`.
fn template_name(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len: usize = body
        .chars()
        .take_while(|&c| is_letter(c) || is_digit(c) || c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let mut after = &body[len..];
    if braced {
        after = after.strip_prefix('}')?;
    }
    // Only the literal `0` names group 0; `00` or `0x` are names of groups that do not exist.
    Some((if name == "0" { "0" } else { "" }, after))
}

#[derive(Debug, Clone, Copy)]
struct Thread {
    /// The token it waits at (`tokens.len()` = the pattern has matched).
    pc: usize,
    /// Where its match started.
    start: usize,
}

/// One step's threads, highest priority first.
struct Threads {
    list: Vec<Thread>,
    seen: Vec<bool>,
    /// Scratch space for [`Pattern::add`].
    lazy: Vec<usize>,
}

impl Threads {
    fn new(tokens: usize) -> Self {
        Threads {
            list: Vec::new(),
            seen: vec![false; tokens + 1],
            lazy: Vec::new(),
        }
    }

    /// Empties the list in O(threads): every `seen` entry belongs to a thread in it.
    fn clear(&mut self) {
        for thread in self.list.drain(..) {
            self.seen[thread.pc] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_rejects_bad_escapes() {
        for (pattern, escaped) in [("\\", None), ("\\x", Some('x')), ("\\\\\\", None)] {
            let err = Pattern::compile(pattern, true, true).unwrap_err();
            assert_eq!(err, PatternError::InvalidEscape { escaped }, "{pattern:?}");
        }
        assert_eq!(
            PatternError::InvalidEscape { escaped: Some('x') }.to_string(),
            "invalid escape '\\x'"
        );
        let ok = Pattern::compile("()[]{\\}^$.\\*\\?|\\\\\\/", true, true).unwrap();
        let literal: Vec<Token> = "()[]{}^$.*?|\\/".chars().map(Token::Literal).collect();
        assert_eq!(ok.tokens, literal);
    }

    #[test]
    fn reverse_pattern_keeps_escape_pairs() {
        for (pattern, expected) in [
            ("a\\*c", "c\\*a"),
            ("\\\\\\ab", "b\\a\\\\"),
            ("ab\\", "\\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            ("\\\\b", "b\\\\"),
            ("", ""),
        ] {
            assert_eq!(reverse_pattern(pattern), expected, "{pattern:?}");
        }
    }

    #[test]
    fn trims_like_go_regexp() {
        let cases = [
            // (pattern, value, greedy, prefix result, suffix result)
            ("*", "abc", false, "abc", "abc"),
            ("*", "abc", true, "", ""),
            ("a*", "abab", false, "bab", "ab"),
            ("a*", "abab", true, "", ""),
            ("*b", "abab", false, "ab", "aba"),
            ("*b", "abab", true, "", ""),
            ("?", "xyz", false, "yz", "xy"),
            ("x", "abc", true, "abc", "abc"),
            // Wildcards stop at a newline, as Go's `.` does.
            ("*", "a\nb", true, "\nb", "a\n"),
            ("a?b", "a\nb", true, "a\nb", "a\nb"),
            ("한*", "한국어", true, "", ""),
        ];
        for (pattern, value, greedy, prefix, suffix) in cases {
            assert_eq!(
                trim_prefix(pattern, value, greedy).unwrap(),
                prefix,
                "#{pattern:?} on {value:?}"
            );
            assert_eq!(
                trim_suffix(pattern, value, greedy).unwrap(),
                suffix,
                "%{pattern:?} on {value:?}"
            );
        }
    }

    #[test]
    fn replaces_like_go_regexp() {
        let cases = [
            // (pattern, value, replacement, first, all)
            ("o", "foo", "0", "f0o", "f00"),
            ("", "ab", "-", "-ab", "-a-b-"),
            ("*", "ab", "-", "-", "-"),
            ("x*", "axxbx", "-", "a-", "a-"),
            ("x", "axxbx", "-", "a-xbx", "a--b-"),
            ("x?", "axxbx", "-", "a-bx", "a-bx"),
            ("?", "a\nb", "-", "-\nb", "-\n-"),
            // The all-form treats the replacement as a Go template; the first-form does not.
            ("o", "foo", "[$0]", "f[$0]o", "f[o][o]"),
            ("o", "foo", "${0}$$", "f${0}$$o", "fo$o$"),
            ("o", "foo", "$1$x${x}$", "f$1$x${x}$o", "f$$"),
            ("o", "foo", "${x", "f${xo", "f${x${x"),
        ];
        for (pattern, value, replacement, first, all) in cases {
            let compiled = Pattern::compile(pattern, true, false).unwrap();
            assert_eq!(
                compiled.replace_first(value, replacement),
                first,
                "/{pattern:?}"
            );
            assert_eq!(
                compiled
                    .replace_all(value, replacement, usize::MAX)
                    .unwrap(),
                all,
                "//{pattern:?}"
            );
        }
    }

    #[test]
    fn hard_patterns_stay_cheap() {
        // Naive backtracking would need about 5000^10 steps here.
        let pattern = "*a*a*a*a*a*a*a*a*a*a*b";
        let value = "a".repeat(5000);
        assert_eq!(trim_prefix(pattern, &value, false).unwrap(), value);
        assert_eq!(trim_suffix(pattern, &value, true).unwrap(), value);
        // A pattern as long as the longest Dockerfile line does not recurse per token.
        let long = "x".repeat(70_000);
        assert_eq!(trim_prefix(&long, &format!("{long}y"), false).unwrap(), "y");
        let stars = "*x".repeat(1_000);
        assert_eq!(trim_prefix(&stars, &long[..3_000], true).unwrap(), "");
        assert_eq!(
            trim_prefix(&stars, &long[..3_000], false).unwrap(),
            &long[..2_000]
        );
        assert_eq!(
            trim_suffix(&"*".repeat(70_000), &long, false).unwrap(),
            long
        );
    }
}
