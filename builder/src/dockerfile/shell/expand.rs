//! The expansion walk: one pass over a word that removes quotes, applies escapes, expands
//! `$name` / `${name…}` and collects both the joined value and the split words.
//!
//! The walk mirrors BuildKit's `shellWord` step for step, because the observable quirks live in
//! its order of operations: the word after a modifier is expanded (and its names looked up)
//! before the modifier is checked, `skip_unset_env` returns the text before a bad modifier is
//! reported, and `#`, `%` and `/` patterns are read with escape tokens kept so that the pattern
//! compiler can see `\*`. Nested words are walked with a fresh word collector (see the module
//! docs for the upstream buffer-sharing bug this avoids).

use std::collections::BTreeSet;

use super::pattern::{self, Pattern};
use super::{Env, Lexer, MAX_NESTING, MAX_SUBSTITUTION_LEN, ShellError};

/// What one walk over a word produced.
pub(super) struct Output {
    pub(super) value: String,
    pub(super) words: Vec<String>,
    pub(super) matched: BTreeSet<String>,
    pub(super) unmatched: BTreeSet<String>,
}

/// Expands `word` with `lexer`'s settings against `env`.
pub(super) fn run(lexer: &Lexer, word: &str, env: &dyn Env) -> Result<Output, ShellError> {
    let mut walker = Walker {
        lexer,
        env,
        src: word,
        // Go's text/scanner silently drops a byte order mark at the very start of its input.
        pos: if word.starts_with('\u{FEFF}') { 3 } else { 0 },
        raw_escapes: lexer.raw_escapes,
        depth: 0,
        matched: BTreeSet::new(),
        unmatched: BTreeSet::new(),
    };
    let (value, words) = walker
        .process_until(None, lexer.raw_escapes)?
        .unwrap_or_default();
    Ok(Output {
        value,
        words,
        matched: walker.matched,
        unmatched: walker.unmatched,
    })
}

/// Splits text into words the way BuildKit's `wordsStruct` does.
///
/// `in_word` can be true while the buffer is empty (after `""`), which is why an empty quoted
/// string never yields an empty word.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    buf: String,
    in_word: bool,
}

impl Words {
    /// A character that splits words when it is whitespace.
    fn add_char(&mut self, c: char) {
        if !c.is_whitespace() {
            self.add_raw_char(c);
        } else if self.in_word && !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
            self.in_word = false;
        }
    }

    /// A character that is part of the word even when it is whitespace (quoted or escaped).
    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

struct Walker<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Env,
    src: &'a str,
    /// Byte offset of the next unread character.
    pos: usize,
    /// Whether escape tokens are kept; patterns switch it on for their nested walk.
    raw_escapes: bool,
    /// How many modifier words the walk is inside (each is a recursion).
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<'a> Walker<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// Walks until `stop` (consumed, not included) or the end of the word. Returns `None` when
    /// a `stop` was asked for and the word ended first.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<Option<(String, Vec<String>)>, ShellError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.process_until_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_until_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<Option<(String, Vec<String>)>, ShellError> {
        let escape = self.lexer.escape;
        let quotes = !self.lexer.skip_process_quotes;
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok(Some((result, words.finish())));
            }
            match c {
                '$' => {
                    let value = self.process_dollar()?;
                    // An unquoted expansion is split at its whitespace.
                    words.add_string(&value);
                    result.push_str(&value);
                }
                '\'' if quotes => {
                    let value = self.process_single_quote()?;
                    words.add_raw_string(&value);
                    result.push_str(&value);
                }
                '"' if quotes => {
                    let value = self.process_double_quote()?;
                    words.add_raw_string(&value);
                    result.push_str(&value);
                }
                '<' if self.src[self.pos..].starts_with("<<") => {
                    // A heredoc opener keeps the blanks after it in the same word, so
                    // `<<  EOF` and `<<- EOF` are one word (BuildKit's `processPossibleHeredoc`).
                    let start = self.pos;
                    self.pos += 2;
                    if self.peek() == Some('-') {
                        self.next();
                    }
                    while self.peek().is_some_and(char::is_whitespace) {
                        self.next();
                    }
                    let value = &self.src[start..self.pos];
                    words.add_raw_string(value);
                    result.push_str(value);
                }
                _ => {
                    self.next();
                    if c != escape {
                        words.add_char(c);
                        result.push(c);
                        continue;
                    }
                    if self.raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    // An escape token at the very end is dropped.
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                }
            }
        }
        if stop.is_some() {
            return Ok(None);
        }
        Ok(Some((result, words.finish())))
    }

    /// `'…'`: everything literal up to the next `'`; there is no way to escape a `'`.
    fn process_single_quote(&mut self) -> Result<String, ShellError> {
        let offset = self.pos;
        let mut result = String::new();
        let quote = self.next();
        if self.lexer.raw_quotes {
            result.extend(quote);
        }
        loop {
            match self.next() {
                None => return Err(ShellError::UnterminatedSingleQuote { offset }),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// `"…"`: `$` expands, and the escape token escapes only `"`, `$` and itself; before any
    /// other character it stays literal.
    fn process_double_quote(&mut self) -> Result<String, ShellError> {
        let offset = self.pos;
        let escape = self.lexer.escape;
        let mut result = String::new();
        let quote = self.next();
        if self.lexer.raw_quotes {
            result.extend(quote);
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedDoubleQuote { offset }),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut c) => {
                    self.next();
                    if c == escape {
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            // Dropped; the loop then reports the missing closing quote.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == escape => {
                                self.next();
                                c = n;
                            }
                            // Upstream writes the token again here, so with `raw_escapes` a
                            // literal `\x` inside quotes comes out as `\\x`.
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    /// `$name`, `${name}` and `${name<modifier>…}`, with the scanner on the `$`.
    fn process_dollar(&mut self) -> Result<String, ShellError> {
        let offset = self.pos;
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ShellError::MissingBrace { offset }),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution { offset }),
            Some(_) => {}
        }
        let name = self.process_name();
        let modifier_at = self.pos;
        match self.next() {
            None => Err(ShellError::MissingBrace { offset }),
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let op = self.next();
                let mut modifier = String::from(':');
                modifier.extend(op);
                if matches!(op, Some('#' | '%')) {
                    return Err(ShellError::UnsupportedModifier {
                        modifier,
                        offset: modifier_at,
                    });
                }
                self.modifier(name, op, modifier, true, offset, modifier_at)
            }
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => {
                self.modifier(name, Some(op), op.to_string(), false, offset, modifier_at)
            }
            Some('/') => self.substitute(name, offset),
            Some(other) => Err(ShellError::UnsupportedModifier {
                modifier: other.to_string(),
                offset: modifier_at,
            }),
        }
    }

    /// `${name[:]op word}` for `-`, `+`, `?`, `#`, `##`, `%`, `%%` (and, after a `:`, any
    /// other character, which is rejected only once the word has been read).
    fn modifier(
        &mut self,
        name: String,
        op: Option<char>,
        modifier: String,
        null_is_unset: bool,
        offset: usize,
        modifier_at: usize,
    ) -> Result<String, ShellError> {
        let is_pattern = matches!(op, Some('#' | '%'));
        let word = self.nested_word('}', is_pattern, ShellError::MissingBrace { offset })?;
        let found = self.lookup(&name);
        if found.is_none() && self.lexer.skip_unset_env {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let value = found.unwrap_or("");
        let null = found.is_none() || (null_is_unset && value.is_empty());
        match op {
            Some('-') => Ok(if null { word } else { value.to_owned() }),
            Some('+') => Ok(if null { String::new() } else { word }),
            Some('?') if null => {
                let default = if found.is_none() {
                    "is not allowed to be unset"
                } else {
                    "is not allowed to be empty"
                };
                Err(ShellError::Required {
                    name,
                    message: if word.is_empty() {
                        default.to_owned()
                    } else {
                        word
                    },
                    offset,
                })
            }
            Some('?') => Ok(value.to_owned()),
            Some('#' | '%') => trim(op, word, value, offset),
            _ => Err(ShellError::UnsupportedModifier {
                modifier,
                offset: modifier_at,
            }),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn substitute(&mut self, name: String, offset: usize) -> Result<String, ShellError> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern_text = self.nested_word('/', true, ShellError::MissingSlash { offset })?;
        let replacement = self.nested_word('}', true, ShellError::MissingBrace { offset })?;
        let found = self.lookup(&name);
        if found.is_none() && self.lexer.skip_unset_env {
            return Ok(format!("${{{name}/{pattern_text}/{replacement}}}"));
        }
        // An unset name substitutes into the empty string: `${UNSET/$EMPTY/x}` gives `x`.
        let value = found.unwrap_or("");
        let pattern = compile(&pattern_text, true, false, offset)?;
        Ok(if all {
            let limit = MAX_SUBSTITUTION_LEN.max(value.len());
            pattern
                .replace_all(value, &replacement, limit)
                .ok_or(ShellError::TooLong { offset })?
        } else {
            pattern.replace_first(value, &replacement)
        })
    }

    /// Walks the word of a modifier up to `stop`. Running out of input, even through an error
    /// inside the word (an open quote, a nested `${`), is reported as `missing`.
    fn nested_word(
        &mut self,
        stop: char,
        raw_escapes: bool,
        missing: ShellError,
    ) -> Result<String, ShellError> {
        if self.depth == MAX_NESTING {
            return Err(ShellError::TooDeep {
                offset: missing.offset(),
            });
        }
        self.depth += 1;
        let word = self.process_until(Some(stop), raw_escapes);
        self.depth -= 1;
        match word {
            Ok(Some((word, _))) => Ok(word),
            Ok(None) => Err(missing),
            Err(_) if self.at_end() => Err(missing),
            Err(e) => Err(e),
        }
    }

    /// A name: a run of digits, one special parameter character, or letters, digits and `_`.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(d) = self.peek().filter(|&d| is_digit(d)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(c) {
                self.next();
                return c.to_string();
            }
            if !is_letter(c) && !is_digit(c) && c != '_' {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }

    /// Looks `name` up and records whether it was found.
    fn lookup(&mut self, name: &str) -> Option<&'a str> {
        let value = self.env.get(name);
        let seen = if value.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        seen.insert(name.to_owned());
        value
    }
}

/// Applies `#`/`##` (prefix) or `%`/`%%` (suffix) removal; a doubled operator at the start of
/// `word` selects the longest match.
fn trim(op: Option<char>, word: String, value: &str, offset: usize) -> Result<String, ShellError> {
    let op = if op == Some('%') { '%' } else { '#' };
    let (greedy, pat) = match word.strip_prefix(op) {
        Some(rest) => (true, rest),
        None => (false, word.as_str()),
    };
    let trimmed = if op == '%' {
        pattern::trim_suffix(pat, value, greedy)
    } else {
        pattern::trim_prefix(pat, value, greedy)
    };
    trimmed.map_err(|source| ShellError::InvalidPattern {
        pattern: pat.to_owned(),
        offset,
        source,
    })
}

fn compile(text: &str, greedy: bool, anchored: bool, offset: usize) -> Result<Pattern, ShellError> {
    Pattern::compile(text, greedy, anchored).map_err(|source| ShellError::InvalidPattern {
        pattern: text.to_owned(),
        offset,
        source,
    })
}

/// POSIX special parameters; they are never set in a Dockerfile, but they are names.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Go `unicode.IsDigit` (category Nd), approximated by Rust's `Numeric` property.
pub(super) fn is_digit(c: char) -> bool {
    c.is_numeric()
}

/// Go `unicode.IsLetter` (category L), approximated by Rust's `Alphabetic` property.
pub(super) fn is_letter(c: char) -> bool {
    c.is_alphabetic()
}
