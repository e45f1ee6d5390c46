//! BuildKit-compatible shell word expansion: the rules of `frontend/dockerfile/shell` (`lex.go`).
//!
//! A [`Lexer`] turns one Dockerfile word into its value: quotes are removed, the escape token
//! (`\` or `` ` ``) escapes the next character, and `$name` / `${name…}` are replaced from an
//! [`Env`]. [`Lexer::process_words`] additionally splits the result into words the way BuildKit
//! does for `EXPOSE` and for heredoc detection. Nothing here runs a shell: there is no command
//! substitution, no globbing and no positional or special parameters (they are always unset).
//!
//! Invariants: expansion is pure (`&str` and an environment in, a value out); the same input
//! always gives the same output; every error names the byte offset in the word where it was
//! found. Error texts are BuildKit's, without its `failed to process "<word>": ` prefix, which
//! the caller adds together with the Dockerfile position.
//!
//! Known deviations from upstream (each is deliberate and tested):
//! * BuildKit's current `ProcessWords` shares one word buffer between nested expansions, so a
//!   `${name:-word}`-style expansion drops the part of the word written before it (`a${X:-b}`
//!   gives `["b"]`). We keep the pre-optimisation behaviour, `["ab"]`.
//! * An unterminated `${name` is reported as `syntax error: missing '}'`; upstream reads the
//!   end of input as a modifier and says `unsupported modifier (\u{FFFD}) in substitution`.
//! * `${…}` nests at most [`MAX_NESTING`] deep (`${A:-${B:-…}}`); deeper is an error. Go's
//!   stacks grow, so upstream has no limit, but each level here is a few stack frames and a
//!   Dockerfile line, let alone a heredoc, can hold tens of thousands of levels.
//! * `${name//pattern/replacement}` may not grow its value past [`MAX_SUBSTITUTION_LEN`] bytes:
//!   every match inserts the replacement, which may itself be such a substitution, so a short
//!   word can ask for gigabytes (upstream builds them).
//! * Go classifies name characters with the Unicode categories L and Nd; we use Rust's
//!   `Alphabetic` and `Numeric` properties, which agree on every ASCII and common non-ASCII
//!   letter but also accept combining vowel signs, letter numbers and other numbers.

mod expand;
mod pattern;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use pattern::PatternError;

/// How deep `${…}` may nest inside the words of other `${…}`: far more than any real word
/// needs, and little enough for the smallest thread stack.
pub const MAX_NESTING: usize = 100;

/// The most bytes `${name//pattern/replacement}` may produce, unless the value alone is longer.
pub const MAX_SUBSTITUTION_LEN: usize = 1 << 20;

/// Variables a word is expanded against. Lookups are case-sensitive (BuildKit on Unix).
pub trait Env {
    /// The value of `name`, or `None` when it is unset (set-but-empty is `Some("")`).
    fn get(&self, name: &str) -> Option<&str>;
}

impl std::fmt::Debug for dyn Env + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

/// `K=V` strings as in a process environment; the last entry for a name wins, and an entry
/// without `=` sets the name to the empty string (BuildKit `EnvsFromSlice`).
impl Env for Vec<String> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find_map(|entry| match entry.split_once('=') {
                Some((key, value)) if key == name => Some(value),
                None if entry == name => Some(""),
                _ => None,
            })
    }
}

/// `(name, value)` pairs in declaration order; the last pair for a name wins.
impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// An environment with nothing set.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyEnv;

impl Env for EmptyEnv {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// BuildKit's `shell.Lex`: an escape token plus the switches the Dockerfile front end uses.
///
/// The defaults (all switches off) are what instruction arguments are expanded with. The parser
/// splits heredoc lines with `raw_quotes`, `raw_escapes` and `skip_unset_env` on, and heredoc
/// bodies are expanded with `skip_process_quotes`.
#[derive(Debug, Clone)]
pub struct Lexer {
    escape: char,
    /// Keep quote characters in the output (their meaning is still applied).
    pub raw_quotes: bool,
    /// Keep escape tokens in the output (the escaped character is still taken literally).
    pub raw_escapes: bool,
    /// Leave `$VAR` / `${VAR…}` text as written when `VAR` is unset.
    pub skip_unset_env: bool,
    /// Treat `'` and `"` as ordinary characters (used for heredoc bodies).
    pub skip_process_quotes: bool,
}

/// The result of [`Lexer::process_word_with_matches`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    /// The expanded word.
    pub value: String,
    /// Names that were looked up and found (set, possibly empty).
    pub matched: BTreeSet<String>,
    /// Names that were looked up and not found.
    pub unmatched: BTreeSet<String>,
}

impl Lexer {
    /// A lexer with the given escape token (`\` by default, `` ` `` after `# escape=``).
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// The escape token.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands one word: quotes removed, whitespace kept (BuildKit `ProcessWord`).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ShellError> {
        Ok(expand::run(self, word, env)?.value)
    }

    /// Expands one word and reports which names were found and which were not
    /// (BuildKit `ProcessWordWithMatches`).
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expansion, ShellError> {
        let out = expand::run(self, word, env)?;
        Ok(Expansion {
            value: out.value,
            matched: out.matched,
            unmatched: out.unmatched,
        })
    }

    /// Expands, then splits into words at whitespace that is neither quoted nor escaped
    /// (BuildKit `ProcessWords`). Whitespace produced by an unquoted expansion splits too.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ShellError> {
        Ok(expand::run(self, word, env)?.words)
    }
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

/// Why a word could not be expanded. `offset` is the byte offset in the word where the
/// offending quote, `$` or modifier starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// A `'` without its closing quote.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote {
        /// Offset of the opening quote.
        offset: usize,
    },
    /// A `"` without its closing quote.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote {
        /// Offset of the opening quote.
        offset: usize,
    },
    /// `${` without its closing `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace {
        /// Offset of the `$`.
        offset: usize,
    },
    /// `${name/pattern` without the `/` that ends the pattern.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash {
        /// Offset of the `$`.
        offset: usize,
    },
    /// `${}`, `${{…}` or `${:…}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution {
        /// Offset of the `$`.
        offset: usize,
    },
    /// A modifier BuildKit does not support, such as `:=`, `=`, `:#` or `:%`.
    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier {
        /// The modifier as written (`=`, `:=`, `:#` …).
        modifier: String,
        /// Offset of the modifier.
        offset: usize,
    },
    /// `${name?word}` with `name` unset, or `${name:?word}` with `name` unset or empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The expanded `word`, or BuildKit's default text when it is empty.
        message: String,
        /// Offset of the `$`.
        offset: usize,
    },
    /// `${…}` nested more than [`MAX_NESTING`] deep.
    #[error("syntax error: substitutions nested more than {} deep", MAX_NESTING)]
    TooDeep {
        /// Offset of the `$` whose word would go deeper.
        offset: usize,
    },
    /// `${name//pattern/replacement}` would produce more than [`MAX_SUBSTITUTION_LEN`] bytes.
    #[error("substitution result is longer than {} bytes", MAX_SUBSTITUTION_LEN)]
    TooLong {
        /// Offset of the `$`.
        offset: usize,
    },
    /// A `#`, `%` or `/` pattern with an invalid escape.
    #[error("invalid pattern ({pattern}) in substitution")]
    InvalidPattern {
        /// The pattern after expansion, as written.
        pattern: String,
        /// Offset of the `$`.
        offset: usize,
        /// What is wrong with it.
        #[source]
        source: PatternError,
    },
}

impl ShellError {
    /// The byte offset in the word where the error was found.
    pub fn offset(&self) -> usize {
        match self {
            ShellError::UnterminatedSingleQuote { offset }
            | ShellError::UnterminatedDoubleQuote { offset }
            | ShellError::MissingBrace { offset }
            | ShellError::MissingSlash { offset }
            | ShellError::BadSubstitution { offset }
            | ShellError::UnsupportedModifier { offset, .. }
            | ShellError::Required { offset, .. }
            | ShellError::TooDeep { offset }
            | ShellError::TooLong { offset }
            | ShellError::InvalidPattern { offset, .. } => *offset,
        }
    }
}
