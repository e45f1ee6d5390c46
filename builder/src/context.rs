//! The build context as BuildKit sends it: which `.dockerignore` applies, and the filtered walk
//! (tonistiigi/fsutil's `FilterFS`) that COPY, ADD and cache keys see.
//!
//! The walk is depth-first and pre-order, with each directory's entries sorted by name bytes, and
//! yields slash-separated paths relative to the context root; symlinks are reported, never
//! followed. A [`WalkFilter`] holds include patterns (a path must match one) and exclude patterns
//! (the `.dockerignore` lines; a path must not match), both with [`crate::ignore`] semantics.
//! As in fsutil, an excluded directory is not descended into unless a `!` pattern could
//! re-include something below it, and a directory is only sent when something under it is: its
//! entry is emitted lazily, just before the first entry below it that passes the filter (so the
//! parents of a re-included file are still sent). Matching is incremental: each directory hands
//! its per-pattern results to its children.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ignore::{IgnoreError, MatchInfo, Pattern, PatternMatcher, parse_ignore_file};

/// Which list of a [`WalkFilter`] an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    /// `include_patterns`.
    Include,
    /// `exclude_patterns`.
    Exclude,
}

impl fmt::Display for PatternKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternKind::Include => "include",
            PatternKind::Exclude => "exclude",
        })
    }
}

/// A build context that cannot be read or filtered.
#[derive(Debug, Error)]
pub enum ContextError {
    /// An ignore file exists but cannot be read.
    #[error("reading ignore file {}", path.display())]
    ReadIgnoreFile {
        /// The ignore file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// An ignore file that is not UTF-8 text.
    #[error("ignore file {} is not valid UTF-8", path.display())]
    IgnoreFileNotUtf8 {
        /// The ignore file.
        path: PathBuf,
    },
    /// A pattern list [`PatternMatcher::new`] rejects.
    #[error("invalid {kind} patterns")]
    InvalidPatterns {
        /// Which list.
        kind: PatternKind,
        /// Why.
        #[source]
        source: IgnoreError,
    },
    /// A pattern that fails when matched against a path.
    #[error("matching {path:?} against the {kind} patterns")]
    Match {
        /// Which list.
        kind: PatternKind,
        /// The context path.
        path: String,
        /// Why.
        #[source]
        source: IgnoreError,
    },
    /// The context directory cannot be resolved.
    #[error("resolving build context {}", path.display())]
    Resolve {
        /// The context as given.
        path: PathBuf,
        /// The resolution error.
        #[source]
        source: io::Error,
    },
    /// The context is not a directory.
    #[error("build context {} is not a directory", path.display())]
    NotADirectory {
        /// The resolved context.
        path: PathBuf,
    },
    /// A directory of the context cannot be listed (`.` is the root).
    #[error("reading directory {path:?} of the build context")]
    ReadDir {
        /// The directory, relative to the context root.
        path: String,
        /// The listing error.
        #[source]
        source: io::Error,
    },
    /// The type of an entry cannot be determined.
    #[error("reading the file type of {}", path.display())]
    FileType {
        /// The entry.
        path: PathBuf,
        /// The stat error.
        #[source]
        source: io::Error,
    },
    /// A file name that is not UTF-8 (patterns and context paths are strings).
    #[error("file name {} in the build context is not valid UTF-8", path.display())]
    NonUtf8Name {
        /// The entry.
        path: PathBuf,
    },
}

/// Which ignore file applies: `<dockerfile path>.dockerignore` next to the Dockerfile wins over
/// `<context>/.dockerignore`; none → no patterns. Returns the patterns and the file used.
///
/// The Dockerfile-specific file replaces the root one rather than adding to it, as BuildKit does.
pub fn load_ignore(
    context: &Path,
    dockerfile: &Path,
) -> Result<(Vec<String>, Option<PathBuf>), ContextError> {
    let per_dockerfile = dockerfile.file_name().map(|name| {
        let mut name = name.to_owned();
        name.push(".dockerignore");
        dockerfile.with_file_name(name)
    });
    first_ignore_file(
        per_dockerfile
            .into_iter()
            .chain([context.join(".dockerignore")]),
    )
}

/// The patterns of `<dir>/.dockerignore` alone (a named `--build-context` directory has no
/// Dockerfile of its own).
pub fn load_dir_ignore(dir: &Path) -> Result<Vec<String>, ContextError> {
    Ok(first_ignore_file([dir.join(".dockerignore")])?.0)
}

/// The patterns of the first of `candidates` that exists, and its path.
fn first_ignore_file(
    candidates: impl IntoIterator<Item = PathBuf>,
) -> Result<(Vec<String>, Option<PathBuf>), ContextError> {
    for candidate in candidates {
        let bytes = match fs::read(&candidate) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ContextError::ReadIgnoreFile {
                    path: candidate,
                    source,
                });
            }
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return Err(ContextError::IgnoreFileNotUtf8 { path: candidate });
        };
        return Ok((parse_ignore_file(&text), Some(candidate)));
    }
    Ok((Vec::new(), None))
}

/// The patterns a walk is filtered by (fsutil's `FilterOpt`). Empty lists filter nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkFilter {
    /// A path is kept only if it (or a parent directory) matches these.
    pub include_patterns: Vec<String>,
    /// A path is dropped if it (or a parent directory) matches these: the `.dockerignore` lines.
    pub exclude_patterns: Vec<String>,
}

impl WalkFilter {
    /// A filter with only exclude patterns, e.g. from [`load_ignore`].
    pub fn excluding(patterns: Vec<String>) -> WalkFilter {
        WalkFilter {
            include_patterns: Vec::new(),
            exclude_patterns: patterns,
        }
    }

    /// Whether the filter lets `path` through when it is opened directly (fsutil's
    /// `filterFS.Open`): it matches the include patterns, if any, and not the exclude patterns.
    /// The patterns are compiled on each call; walk instead when testing many paths.
    pub fn admits(&self, path: &str) -> Result<bool, ContextError> {
        let layer = Layer::new(self)?;
        if let Some(include) = &layer.include
            && !matches(include, PatternKind::Include, path)?
        {
            return Ok(false);
        }
        if let Some(exclude) = &layer.exclude
            && matches(exclude, PatternKind::Exclude, path)?
        {
            return Ok(false);
        }
        Ok(true)
    }
}

fn matches(matcher: &PatternMatcher, kind: PatternKind, path: &str) -> Result<bool, ContextError> {
    matcher
        .matches_or_parent_matches(path)
        .map_err(|source| ContextError::Match {
            kind,
            path: path.to_owned(),
            source,
        })
}

/// What a walk entry is (symlinks are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl From<fs::FileType> for FileType {
    fn from(t: fs::FileType) -> FileType {
        if t.is_dir() {
            FileType::Dir
        } else if t.is_file() {
            FileType::File
        } else if t.is_symlink() {
            FileType::Symlink
        } else {
            FileType::Other
        }
    }
}

/// The build context as `.dockerignore` lets it through: the paths a filtered walk kept, and
/// the patterns, so a source that is not there can be told apart from one a pattern excluded.
#[derive(Debug, Clone)]
pub struct Visible {
    root: PathBuf,
    paths: BTreeSet<String>,
    matcher: PatternMatcher,
}

impl Visible {
    /// Walks `root`, leaving out what `patterns` (`.dockerignore` lines) exclude.
    pub fn walk(root: &Path, patterns: &[String]) -> Result<Self, ContextError> {
        let matcher =
            PatternMatcher::new(patterns).map_err(|source| ContextError::InvalidPatterns {
                kind: PatternKind::Exclude,
                source,
            })?;
        let paths = walk(root, &WalkFilter::excluding(patterns.to_vec()))?
            .into_iter()
            .map(|e| e.path)
            .collect();
        Ok(Self {
            root: root.to_owned(),
            paths,
            matcher,
        })
    }

    /// Whether the walk kept `rel` (slash-separated, relative to the context root).
    pub fn contains(&self, rel: &str) -> bool {
        self.paths.contains(rel)
    }

    /// Every path the walk kept, sorted.
    pub fn paths(&self) -> &BTreeSet<String> {
        &self.paths
    }

    /// The pattern that leaves `rel` out, as cleaned: the last one that decides, as
    /// [`PatternMatcher::excluded_by`] tells. `None` when `rel` is visible, does not exist, or
    /// no pattern excludes it.
    pub fn excluded_by(&self, rel: &str) -> Option<&str> {
        if self.contains(rel) || fs::symlink_metadata(self.root.join(rel)).is_err() {
            return None;
        }
        self.matcher
            .excluded_by(rel)
            .ok()
            .flatten()
            .map(Pattern::as_str)
    }
}

/// One entry of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// Slash-separated, relative to the context root.
    pub path: String,
    /// What it is.
    pub file_type: FileType,
}

/// Depth-first pre-order walk of `root`, names sorted by bytes within each directory, slash-separated
/// relative paths, honouring the filter like fsutil (parents of re-included files are still visited; an
/// excluded directory is not descended into unless a later `!` pattern could re-include something under it).
pub fn walk(root: &Path, filter: &WalkFilter) -> Result<Vec<WalkEntry>, ContextError> {
    walk_layered(root, std::slice::from_ref(filter))
}

/// [`walk`] through several filters stacked like fsutil `FilterFS`es: the first is applied to
/// the directory, each next one to what the previous lets through. A later layer cannot bring
/// back what an earlier one dropped.
pub fn walk_layered(root: &Path, filters: &[WalkFilter]) -> Result<Vec<WalkEntry>, ContextError> {
    let mut layers = filters
        .iter()
        .map(Layer::new)
        .collect::<Result<Vec<_>, _>>()?;
    let root = fs::canonicalize(root).map_err(|source| ContextError::Resolve {
        path: root.to_owned(),
        source,
    })?;
    if !root.is_dir() {
        return Err(ContextError::NotADirectory { path: root });
    }
    let (entries, error) = read_dir_sorted(&root);
    if let Some(source) = error {
        // fsutil drops this error and sends an empty context; an unreadable context is a
        // mistake worth reporting.
        return Err(ContextError::ReadDir {
            path: ".".to_owned(),
            source,
        });
    }
    let mut out = Vec::new();
    walk_children(&root, "", entries, &mut |entry, error| {
        visit_layers(&mut layers, entry, error, &mut out)
    })?;
    Ok(out)
}

/// A visitor's answer (Go's `filepath.SkipDir`): on a directory, do not descend; on anything
/// else, skip the rest of its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    SkipDir,
}

/// Called once per entry, and a second time with the error when a directory cannot be listed.
type Visit<'a> = dyn FnMut(&WalkEntry, Option<io::Error>) -> Result<Flow, ContextError> + 'a;

/// A directory's entries sorted by name, and the error that cut the listing short, if any.
fn read_dir_sorted(dir: &Path) -> (Vec<fs::DirEntry>, Option<io::Error>) {
    let mut entries = Vec::new();
    let mut error = None;
    match fs::read_dir(dir) {
        Ok(iter) => {
            for entry in iter {
                match entry {
                    Ok(entry) => entries.push(entry),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        Err(e) => error = Some(e),
    }
    // `OsString` orders by bytes on Unix, as Go's `os.ReadDir` does.
    entries.sort_by_key(fs::DirEntry::file_name);
    (entries, error)
}

/// Go's `filepath.WalkDir` below `dir`, whose context path is `rel`.
fn walk_children(
    dir: &Path,
    rel: &str,
    entries: Vec<fs::DirEntry>,
    visit: &mut Visit<'_>,
) -> Result<(), ContextError> {
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(ContextError::NonUtf8Name {
                path: dir.join(&name),
            });
        };
        let file_type = match entry.file_type() {
            Ok(t) => FileType::from(t),
            // Removed while walking.
            Err(e) if is_not_exist(&e) => continue,
            Err(source) => {
                return Err(ContextError::FileType {
                    path: dir.join(name),
                    source,
                });
            }
        };
        let item = WalkEntry {
            path: if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            },
            file_type,
        };
        match visit(&item, None)? {
            Flow::SkipDir if file_type == FileType::Dir => continue,
            Flow::SkipDir => break,
            Flow::Continue => {}
        }
        if file_type != FileType::Dir {
            continue;
        }
        let abs = dir.join(name);
        let (children, error) = read_dir_sorted(&abs);
        if let Some(error) = error
            && visit(&item, Some(error))? == Flow::SkipDir
        {
            continue;
        }
        walk_children(&abs, &item.path, children, visit)?;
    }
    Ok(())
}

fn is_not_exist(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Runs an entry through the filter layers in order; what passes them all is collected.
fn visit_layers(
    layers: &mut [Layer],
    entry: &WalkEntry,
    error: Option<io::Error>,
    out: &mut Vec<WalkEntry>,
) -> Result<Flow, ContextError> {
    match layers.split_first_mut() {
        Some((layer, rest)) => layer.visit(entry, error, &mut |e| visit_layers(rest, e, None, out)),
        None => match error {
            Some(source) => Err(ContextError::ReadDir {
                path: entry.path.clone(),
                source,
            }),
            None => {
                out.push(entry.clone());
                Ok(Flow::Continue)
            }
        },
    }
}

/// Characters that make a pattern more than a literal path prefix (fsutil's `patternChars`).
const PATTERN_CHARS: &[char] = &['*', '[', ']', '?', '^', '\\'];

/// The pattern without one trailing `/**` and then one trailing `/*`.
fn without_trailing_glob(pattern: &Pattern) -> &str {
    let s = pattern.as_str();
    let s = s.strip_suffix("/**").unwrap_or(s);
    s.strip_suffix("/*").unwrap_or(s)
}

/// Whether some pattern of the given polarity is a literal path below `dir`, so the walk must
/// descend into `dir` to find what it names.
fn names_something_below(matcher: &PatternMatcher, exclusion: bool, dir: &str) -> bool {
    let dir_slash = format!("{dir}/");
    matcher
        .patterns()
        .iter()
        .filter(|p| p.is_exclusion() == exclusion)
        .any(|p| format!("{}/", without_trailing_glob(p)).starts_with(&dir_slash))
}

/// A directory on the current path of the walk.
#[derive(Debug)]
struct VisitedDir {
    entry: WalkEntry,
    path_with_sep: String,
    include_info: MatchInfo,
    exclude_info: MatchInfo,
    /// Already handed to the next layer.
    called: bool,
    /// The next layer asked to skip it.
    skipped: bool,
}

/// One fsutil `filterFS`: compiled patterns plus the directories of the current path.
#[derive(Debug)]
struct Layer {
    include: Option<PatternMatcher>,
    exclude: Option<PatternMatcher>,
    /// Every include pattern is a literal path (plus a trailing glob): a directory that no
    /// pattern names anything below can be skipped.
    only_prefix_includes: bool,
    /// Likewise for the `!` exceptions of the exclude patterns.
    only_prefix_exclude_exceptions: bool,
    parents: Vec<VisitedDir>,
}

impl Layer {
    fn new(filter: &WalkFilter) -> Result<Layer, ContextError> {
        let compile = |patterns: &[String], kind| {
            if patterns.is_empty() {
                return Ok(None);
            }
            PatternMatcher::new(patterns)
                .map(Some)
                .map_err(|source| ContextError::InvalidPatterns { kind, source })
        };
        let include = compile(&filter.include_patterns, PatternKind::Include)?;
        let exclude = compile(&filter.exclude_patterns, PatternKind::Exclude)?;
        let only_literals = |matcher: &Option<PatternMatcher>, exclusion: bool| {
            matcher.as_ref().is_none_or(|m| {
                !m.patterns().iter().any(|p| {
                    p.is_exclusion() == exclusion
                        && without_trailing_glob(p).contains(PATTERN_CHARS)
                })
            })
        };
        Ok(Layer {
            only_prefix_includes: only_literals(&include, false),
            only_prefix_exclude_exceptions: only_literals(&exclude, true),
            include,
            exclude,
            parents: Vec::new(),
        })
    }

    /// fsutil's `filterFS.Walk` callback for one entry; `next` receives what passes.
    fn visit(
        &mut self,
        entry: &WalkEntry,
        walk_error: Option<io::Error>,
        next: &mut dyn FnMut(&WalkEntry) -> Result<Flow, ContextError>,
    ) -> Result<Flow, ContextError> {
        let tracking = self.include.is_some() || self.exclude.is_some();
        let is_dir = entry.file_type == FileType::Dir;
        let mut dir = None;
        if tracking {
            while let Some(last) = self.parents.last() {
                if entry.path.starts_with(&last.path_with_sep) {
                    break;
                }
                self.parents.pop();
            }
            if is_dir {
                dir = Some(VisitedDir {
                    entry: entry.clone(),
                    path_with_sep: format!("{}/", entry.path),
                    include_info: MatchInfo::default(),
                    exclude_info: MatchInfo::default(),
                    called: false,
                    skipped: false,
                });
            }
        }

        let no_info = MatchInfo::default();
        let mut skip = false;
        if let Some(include) = &self.include {
            let parent = self.parents.last().map_or(&no_info, |d| &d.include_info);
            let (included, info) = include
                .matches_using_parent_results(&entry.path, parent)
                .map_err(|source| ContextError::Match {
                    kind: PatternKind::Include,
                    path: entry.path.clone(),
                    source,
                })?;
            if let Some(dir) = &mut dir {
                dir.include_info = info;
            }
            if !included {
                if is_dir
                    && self.only_prefix_includes
                    && !names_something_below(include, false, &entry.path)
                {
                    return Ok(Flow::SkipDir);
                }
                skip = true;
            }
        }
        if let Some(exclude) = &self.exclude {
            let parent = self.parents.last().map_or(&no_info, |d| &d.exclude_info);
            let (excluded, info) = exclude
                .matches_using_parent_results(&entry.path, parent)
                .map_err(|source| ContextError::Match {
                    kind: PatternKind::Exclude,
                    path: entry.path.clone(),
                    source,
                })?;
            if let Some(dir) = &mut dir {
                dir.exclude_info = info;
            }
            if excluded {
                if is_dir
                    && self.only_prefix_exclude_exceptions
                    && (!exclude.exclusions() || !names_something_below(exclude, true, &entry.path))
                {
                    return Ok(Flow::SkipDir);
                }
                skip = true;
            }
        }

        if let Some(source) = walk_error {
            // An unreadable directory that is filtered out anyway does not matter.
            if skip && source.kind() == io::ErrorKind::PermissionDenied {
                return Ok(Flow::Continue);
            }
            if is_not_exist(&source) {
                return Ok(Flow::SkipDir);
            }
            return Err(ContextError::ReadDir {
                path: entry.path.clone(),
                source,
            });
        }

        let flow = self.emit(entry, skip, dir.as_mut(), next);
        // Pushed even when skipped: its children may still be re-included.
        if let Some(dir) = dir {
            self.parents.push(dir);
        }
        flow
    }

    /// Hands `entry` to the next layer, preceded by any parent directory not handed on yet.
    fn emit(
        &mut self,
        entry: &WalkEntry,
        skip: bool,
        dir: Option<&mut VisitedDir>,
        next: &mut dyn FnMut(&WalkEntry) -> Result<Flow, ContextError>,
    ) -> Result<Flow, ContextError> {
        if skip {
            return Ok(Flow::Continue);
        }
        for parent in &mut self.parents {
            if parent.skipped {
                return Ok(Flow::SkipDir);
            }
            if parent.called {
                continue;
            }
            parent.called = true;
            if next(&parent.entry)? == Flow::SkipDir {
                parent.skipped = true;
                return Ok(Flow::SkipDir);
            }
        }
        if let Some(dir) = dir {
            dir.called = true;
        }
        next(entry)
    }
}

#[cfg(test)]
mod tests;
