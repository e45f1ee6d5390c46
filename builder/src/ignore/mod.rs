//! `.dockerignore` patterns with the semantics of moby/patternmatcher and its `ignorefile` reader,
//! which is what `docker build` (BuildKit) applies to a build context.
//!
//! [`parse_ignore_file`] turns the file's text into patterns; [`PatternMatcher`] decides whether a
//! context path is excluded. Paths are slash-separated and relative to the context root, and every
//! pattern is anchored there: `*.md` matches `README.md` but not `docs/x.md` (that needs
//! `**/*.md`). Patterns apply in order and the last one that matches a path, or one of its parent
//! directories, decides; a `!` pattern re-includes. `*` and `?` never cross a `/`, `**` spans any
//! number of directories, `[…]` is a class (negated with `^`) and `\` escapes.
//!
//! This is a port of the algorithm, not a reimplementation of its intent: patterns are cleaned,
//! checked with `filepath.Match`'s syntax rules, classified as exact, prefix, suffix or regexp
//! matches, and regexp patterns are compiled to the same RE2 expression Go builds (`glob.rs`) and
//! run with Go's `regexp` semantics on the `regex` crate (`re2.rs`), so odd patterns behave as they
//! do in Docker.

mod glob;
mod re2;

use glob::MatchKind;
pub(crate) use glob::clean;
use re2::Regex;
pub use re2::RegexError;
use thiserror::Error;

/// A pattern list that cannot be built or used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IgnoreError {
    /// A pattern that is only `!`.
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    /// A pattern `filepath.Match` rejects (`[`, `[a-b-c]`, a trailing `\`, …).
    #[error("syntax error in pattern {pattern:?}")]
    BadPattern {
        /// The cleaned pattern, without its `!`.
        pattern: String,
    },
    /// A pattern that passed the syntax check but whose compiled expression is invalid (Go
    /// reports this as `ErrBadPattern` from the first match).
    #[error("pattern {pattern:?} cannot be matched")]
    InvalidRegexp {
        /// The cleaned pattern, without its `!`.
        pattern: String,
        /// What the expression compiler rejected.
        #[source]
        source: RegexError,
    },
    /// A [`MatchInfo`] that came from a matcher with a different number of patterns.
    #[error("parent match info has {got} entries, the matcher has {expected} patterns")]
    MatchInfoMismatch {
        /// The matcher's pattern count.
        expected: usize,
        /// The length of the info given.
        got: usize,
    },
}

/// The patterns of a `.dockerignore` text (moby's `ignorefile.ReadAll`).
///
/// A UTF-8 byte-order mark is dropped; lines that *start* with `#` are comments; every line is
/// trimmed and blank ones are skipped. A leading `!` is split off and the rest trimmed again, then
/// cleaned (`filepath.Clean`) with one leading `/` removed, so `/a/./b/` becomes `a/b`; the `!`
/// is put back. A lone `!` is returned as `!`, which [`PatternMatcher::new`] rejects.
pub fn parse_ignore_file(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<&str> = text.split('\n').collect();
    // Go's line scanner yields no empty token after a final newline.
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut patterns = Vec::new();
    for line in lines {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut out = String::new();
        if invert {
            out.push('!');
        }
        if !pattern.is_empty() {
            let cleaned = glob::clean(pattern);
            match cleaned.strip_prefix('/') {
                Some(relative) if !relative.is_empty() => out.push_str(relative),
                _ => out.push_str(&cleaned),
            }
        }
        patterns.push(out);
    }
    patterns
}

/// One cleaned pattern of a [`PatternMatcher`].
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    matcher: Matcher,
}

/// How a pattern is tested (patternmatcher's `matchType`).
#[derive(Debug, Clone)]
enum Matcher {
    Exact,
    Prefix,
    Suffix,
    /// A compile error is kept and reported by every match, as Go does.
    Regexp(Result<Regex, RegexError>),
}

impl Pattern {
    fn new(cleaned: String, exclusion: bool) -> Pattern {
        let matcher = match glob::compile(&cleaned) {
            MatchKind::Exact => Matcher::Exact,
            MatchKind::Prefix => Matcher::Prefix,
            MatchKind::Suffix => Matcher::Suffix,
            MatchKind::Regexp(source) => Matcher::Regexp(Regex::new(&source)),
        };
        Pattern {
            cleaned,
            exclusion,
            matcher,
        }
    }

    /// The cleaned pattern without its `!` (Go's `Pattern.String`).
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether this is a `!` pattern, which re-includes what it matches.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// Whether `path` itself (not its parents) matches.
    fn matches(&self, path: &str) -> Result<bool, IgnoreError> {
        // Go slices these strings by bytes, and so does this: a prefix pattern ends in `**` and a
        // suffix pattern starts with it, so dropping two bytes never splits a character.
        let pattern = self.cleaned.as_bytes();
        let path_bytes = path.as_bytes();
        Ok(match &self.matcher {
            Matcher::Exact => path == self.cleaned,
            Matcher::Prefix => path_bytes.starts_with(&pattern[..pattern.len() - 2]),
            Matcher::Suffix => {
                let suffix = &pattern[2..];
                // `**/foo` also matches `foo` itself.
                path_bytes.ends_with(suffix)
                    || (suffix.first() == Some(&b'/') && path_bytes == &suffix[1..])
            }
            Matcher::Regexp(Ok(re)) => re.is_match(path),
            Matcher::Regexp(Err(e)) => {
                return Err(IgnoreError::InvalidRegexp {
                    pattern: self.cleaned.clone(),
                    source: e.clone(),
                });
            }
        })
    }

    /// Whether `path` or one of its parent directories matches. Errors for the parents are
    /// ignored, as upstream does: the path itself was already matched without error.
    fn matches_or_parent(&self, path: &str) -> Result<bool, IgnoreError> {
        if self.matches(path)? {
            return Ok(true);
        }
        let parent = glob::dir(path);
        if parent == "." {
            return Ok(false);
        }
        // Go splits `filepath.Dir(path)` at `/` and tries each prefix in turn: `a/b/c` → `a`,
        // `a/b`; `/` → ``, `/`.
        let ends = parent.match_indices('/').map(|(i, _)| i);
        Ok(ends
            .chain(std::iter::once(parent.len()))
            .any(|end| self.matches(&parent[..end]).unwrap_or(false)))
    }
}

/// Per-pattern match results of a directory, handed to its children by a walker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// An ordered list of `.dockerignore` patterns (moby/patternmatcher `PatternMatcher`).
#[derive(Debug, Clone)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Builds a matcher (Go's `New`): each pattern is trimmed, blank ones are dropped, the rest
    /// cleaned; a leading `!` marks a re-include. A lone `!` and patterns `filepath.Match` rejects
    /// are errors.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, IgnoreError> {
        let mut compiled = Vec::with_capacity(patterns.len());
        let mut exclusions = false;
        for pattern in patterns {
            let pattern = pattern.as_ref().trim();
            if pattern.is_empty() {
                continue;
            }
            let cleaned = glob::clean(pattern);
            let (exclusion, body) = match cleaned.strip_prefix('!') {
                Some("") => return Err(IgnoreError::LoneExclamation),
                Some(body) => (true, body),
                None => (false, cleaned.as_str()),
            };
            exclusions |= exclusion;
            if glob::check_syntax(body).is_err() {
                return Err(IgnoreError::BadPattern {
                    pattern: body.to_owned(),
                });
            }
            compiled.push(Pattern::new(body.to_owned(), exclusion));
        }
        Ok(PatternMatcher {
            patterns: compiled,
            exclusions,
        })
    }

    /// The patterns, cleaned, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any `!` pattern exists (a walker must then descend into excluded directories).
    pub fn exclusions(&self) -> bool {
        self.exclusions
    }

    /// true = excluded. Path is slash-separated, relative to the context root.
    ///
    /// The last pattern that matches the path or one of its parent directories decides. Patterns
    /// that cannot change the outcome are not evaluated, so an invalid pattern is only reported
    /// when it is reached.
    pub fn matches_or_parent_matches(&self, path: &str) -> Result<bool, IgnoreError> {
        Ok(self.excluded_by(path)?.is_some())
    }

    /// The pattern that excludes `path` ([`Self::matches_or_parent_matches`] is true): the
    /// last one that matched it or a parent and was not undone by a later `!` pattern.
    pub fn excluded_by(&self, path: &str) -> Result<Option<&Pattern>, IgnoreError> {
        let mut decided = None;
        for pattern in &self.patterns {
            if pattern.exclusion != decided.is_some() {
                continue;
            }
            if pattern.matches_or_parent(path)? {
                decided = (!pattern.exclusion).then_some(pattern);
            }
        }
        Ok(decided)
    }

    /// Incremental form for walkers: given the match info of the parent directory.
    ///
    /// `parent` must come from this matcher for the directory containing `path`, or be
    /// `MatchInfo::default()`, in which case the parents are matched from scratch as
    /// [`Self::matches_or_parent_matches`] does. The returned info is for `path`'s children.
    pub fn matches_using_parent_results(
        &self,
        path: &str,
        parent: &MatchInfo,
    ) -> Result<(bool, MatchInfo), IgnoreError> {
        let parent_matched = &parent.parent_matched;
        if !parent_matched.is_empty() && parent_matched.len() != self.patterns.len() {
            return Err(IgnoreError::MatchInfoMismatch {
                expected: self.patterns.len(),
                got: parent_matched.len(),
            });
        }
        let mut matched = false;
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        for (i, pattern) in self.patterns.iter().enumerate() {
            // A pattern that matched the parent matches everything below it.
            let mut hit = parent_matched.get(i).copied().unwrap_or(false);
            if !hit {
                if pattern.exclusion != matched {
                    continue;
                }
                hit = if parent_matched.is_empty() {
                    pattern.matches_or_parent(path)?
                } else {
                    pattern.matches(path)?
                };
            }
            info.parent_matched[i] = hit;
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok((matched, info))
    }
}

#[cfg(test)]
mod tests;
