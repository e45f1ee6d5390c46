//! Where COPY and ADD read from: source patterns resolved inside their root, and the
//! `--parents` walk.
//!
//! A source is resolved inside its own root (the build context, or a stage's or image's root
//! filesystem): leading `/` and `..` are clamped, symlinks on the way (the last one too) are
//! followed inside that root only, and wildcards match one path component each with Go's
//! `filepath.Match` (so `**` is `*` there). A wildcard that matches nothing is not an error
//! (BuildKit's `AllowEmptyWildcard`); a literal path that does not exist is.
//!
//! `--parents` works as BuildKit's frontend makes it work: the source is split at its first
//! `/./` into a pivot directory (the root when there is none) and an include pattern below it,
//! with `.dockerignore` semantics, so `**` spans any number of directories. The walk from the
//! pivot never follows a symlink; every entry the pattern matches (a directory with everything
//! in it) lands at its path below the pivot, its parent directories are created with the
//! source's metadata, and `--exclude` patterns apply to paths below the pivot. A pattern
//! without wildcards must name something that exists.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::ignore::{PatternMatcher, clean};
use crate::layer::{EntryHeader, LayerError, TarBuilder};

use super::file::{FileError, Source};

/// Links followed while resolving a source (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// A source that exists, resolved inside its root.
#[derive(Debug)]
pub(crate) struct Match {
    /// Its path relative to the source root, cleaned (`""` is the root).
    pub rel: String,
    /// Where to read it (symlinks on the way followed inside the root).
    pub fs_path: PathBuf,
    pub is_dir: bool,
    pub is_file: bool,
}

/// A source path as written, clamped to its root: relative, `/`-separated, cleaned.
pub(crate) fn clamp(pattern: &str) -> String {
    clean(&format!("/{pattern}"))
        .trim_start_matches('/')
        .to_owned()
}

/// The existing paths a source pattern names, in order.
pub(crate) fn resolve_source(
    source: &Source<'_>,
    pattern: &str,
    keyword: &'static str,
) -> Result<Vec<Match>, FileError> {
    let rel = clamp(pattern);
    let comps: Vec<&str> = if rel.is_empty() {
        Vec::new()
    } else {
        rel.split('/').collect()
    };
    let wildcard = comps.iter().any(|c| has_wildcard(c));
    let mut candidates = vec![String::new()];
    for comp in &comps {
        let mut next = Vec::new();
        for parent in &candidates {
            if has_wildcard(comp) {
                let dir = source.root.join(parent);
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|n| go_match(comp, n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| join(parent, &n)));
            } else {
                next.push(join(parent, &unescape(comp)));
            }
        }
        candidates = next;
    }
    let mut out = Vec::new();
    for rel in candidates {
        match is_visible(source, &rel)
            .then(|| resolve_in(source.root, &rel, keyword))
            .transpose()?
        {
            Some((resolved, Some(meta))) => {
                out.push(Match {
                    rel,
                    fs_path: source.root.join(resolved),
                    is_dir: meta.is_dir(),
                    is_file: meta.is_file(),
                });
            }
            _ if wildcard => {}
            _ => return Err(not_found(keyword, pattern, source, &rel)),
        }
    }
    Ok(out)
}

/// Whether `.dockerignore` lets `rel` (relative to the source root) through.
pub(crate) fn is_visible(source: &Source<'_>, rel: &str) -> bool {
    rel.is_empty() || source.visible.is_none_or(|v| v.contains(rel))
}

/// `pattern` (the source as written, at `rel`) does not exist or `.dockerignore` hides it; the
/// message names the pattern that does.
pub(crate) fn not_found(
    keyword: &'static str,
    pattern: &str,
    source: &Source<'_>,
    rel: &str,
) -> FileError {
    FileError::NotFound {
        keyword,
        path: pattern.to_owned(),
        hint: source
            .visible
            .and_then(|v| v.excluded_by(rel))
            .map(|p| format!(" (it is excluded by the .dockerignore pattern {p:?})"))
            .unwrap_or_default(),
    }
}

/// Resolves `rel` inside `root`, following symlinks (also the last one) without leaving the
/// root: an absolute target is taken from the root, `..` stops at it. Returns the resolved path
/// relative to the root, and its metadata when it exists. Past a missing component the rest is
/// taken as written (a destination may not exist yet).
pub(crate) fn resolve_in(
    root: &Path,
    rel: &str,
    keyword: &'static str,
) -> Result<(String, Option<std::fs::Metadata>), FileError> {
    let mut pending: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_owned)
        .collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        match comp.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let path = root.join(resolved.join("/")).join(&comp);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                resolved.push(comp);
                resolved.extend(pending.into_iter().rev().filter(|c| c != "." && c != ".."));
                return Ok((resolved.join("/"), None));
            }
            Err(source) => return Err(FileError::Read { path, source }),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(FileError::Loop {
                    keyword,
                    path: rel.to_owned(),
                });
            }
            let target = std::fs::read_link(&path).map_err(|source| FileError::Read {
                path: path.clone(),
                source,
            })?;
            let target = target.as_os_str().as_bytes();
            if target.starts_with(b"/") {
                resolved.clear();
            }
            let target = String::from_utf8_lossy(target);
            pending.extend(
                target
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .rev()
                    .map(str::to_owned),
            );
            continue;
        }
        resolved.push(comp);
    }
    let path = root.join(resolved.join("/"));
    let meta =
        std::fs::symlink_metadata(&path).map_err(|source| FileError::Read { path, source })?;
    Ok((resolved.join("/"), Some(meta)))
}

/// A `--parents` source split at its pivot: `a/./b/*.txt` → (`a`, `b/*.txt`), `b/*.txt` →
/// (``, `b/*.txt`). Both halves are clamped and cleaned.
pub(crate) fn split_pivot(pattern: &str) -> (String, String) {
    match pattern.split_once("/./") {
        Some((base, rest)) => (clamp(base), clamp(rest)),
        None => (String::new(), clamp(pattern)),
    }
}

/// The components of a cleaned pattern before its first wildcard, escapes removed.
pub(crate) fn literal_prefix(pattern: &str) -> Vec<String> {
    pattern
        .split('/')
        .filter(|c| !c.is_empty())
        .take_while(|c| !has_wildcard(c))
        .map(unescape)
        .collect()
}

/// What the `--parents` walk needs besides the tar it writes to.
pub(crate) struct ParentsWalk<'a> {
    /// The include pattern below the pivot, cleaned (`None`: everything below it).
    pub include: Option<&'a PatternMatcher>,
    /// The pattern's components before its first wildcard, escapes removed.
    pub literal: &'a [String],
    /// The pivot's path relative to the source root, for `.dockerignore`.
    pub base_rel: &'a str,
    pub source: &'a Source<'a>,
    pub excludes: &'a PatternMatcher,
    /// Where entries land: `<dest>/<path below the pivot>`.
    pub dest: &'a str,
}

impl ParentsWalk<'_> {
    /// Writes every entry below the pivot directory `base` that the pattern selects, and the
    /// directories leading to each; returns how many entries matched.
    pub fn run<W: Write>(
        &self,
        tar: &mut TarBuilder<W>,
        base: &Path,
        adjust: &mut dyn FnMut(&mut EntryHeader),
    ) -> Result<usize, LayerError> {
        let mut state = WalkState {
            tar,
            parents: Vec::new(),
            matched: 0,
            adjust,
        };
        self.dir(&mut state, base, b"", 0)?;
        Ok(state.matched)
    }

    fn dir<W: Write>(
        &self,
        st: &mut WalkState<'_, W>,
        fs_dir: &Path,
        rel: &[u8],
        depth: usize,
    ) -> Result<(), LayerError> {
        let read = |e| LayerError::Read {
            path: fs_dir.to_owned(),
            source: e,
        };
        let mut names: Vec<_> = std::fs::read_dir(fs_dir)
            .map_err(read)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read)?;
        names.sort();
        for name in names {
            // Paths are matched as text (lossily for names that are not UTF-8) but written
            // with their exact bytes.
            let text = name.to_string_lossy();
            // Components before the first wildcard prune the walk: no other path can match.
            if self.literal.get(depth).is_some_and(|want| *want != text) {
                continue;
            }
            let child = join_bytes(rel, name.as_bytes());
            let child_text = String::from_utf8_lossy(&child).into_owned();
            let fs_path = fs_dir.join(&name);
            let meta = std::fs::symlink_metadata(&fs_path).map_err(|e| LayerError::Read {
                path: fs_path.clone(),
                source: e,
            })?;
            let excluded = self
                .excludes
                .matches_or_parent_matches(&child_text)
                .unwrap_or(false);
            if excluded && !self.excludes.exclusions() {
                continue;
            }
            let included = !excluded
                && self.include.is_none_or(|include| {
                    include
                        .matches_or_parent_matches(&child_text)
                        .unwrap_or(false)
                });
            if !included {
                if meta.is_dir() {
                    st.parents.push((child.clone(), fs_path.clone(), false));
                    self.dir(st, &fs_path, &child, depth + 1)?;
                    st.parents.pop();
                }
                continue;
            }
            if text.starts_with(".wh.") {
                return Err(LayerError::ReservedName {
                    path: child_text.into(),
                });
            }
            st.matched += 1;
            self.write_parents(st)?;
            if is_visible(self.source, &join(self.base_rel, &child_text)) {
                let place = join_bytes(self.dest.as_bytes(), &child);
                st.tar.append_path(&fs_path, place, st.adjust)?;
            }
            if meta.is_dir() {
                self.contents(st, &fs_path, &child)?;
            }
        }
        Ok(())
    }

    /// Everything inside an included directory, minus excluded and ignored paths.
    fn contents<W: Write>(
        &self,
        st: &mut WalkState<'_, W>,
        fs_dir: &Path,
        rel: &[u8],
    ) -> Result<(), LayerError> {
        let mut reserved = None;
        let mut include = |sub: &[u8]| {
            let path = String::from_utf8_lossy(&join_bytes(rel, sub)).into_owned();
            if path
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(".wh."))
            {
                reserved.get_or_insert_with(|| path.clone());
                return false;
            }
            is_visible(self.source, &join(self.base_rel, &path))
                && !self
                    .excludes
                    .matches_or_parent_matches(&path)
                    .unwrap_or(false)
        };
        let prefix = join_bytes(self.dest.as_bytes(), rel);
        st.tar
            .append_contents(fs_dir, &prefix, &mut include, st.adjust)?;
        match reserved {
            Some(path) => Err(LayerError::ReservedName { path: path.into() }),
            None => Ok(()),
        }
    }

    /// The directories above a match that are not written yet, with their source metadata.
    fn write_parents<W: Write>(&self, st: &mut WalkState<'_, W>) -> Result<(), LayerError> {
        for (rel, fs_path, written) in st.parents.iter_mut() {
            if !*written {
                let place = join_bytes(self.dest.as_bytes(), rel);
                st.tar.append_path(fs_path, place, st.adjust)?;
                *written = true;
            }
        }
        Ok(())
    }
}

struct WalkState<'t, W: Write> {
    tar: &'t mut TarBuilder<W>,
    /// Directories above the current one: path below the pivot, source path, written yet.
    parents: Vec<(Vec<u8>, PathBuf, bool)>,
    matched: usize,
    adjust: &'t mut dyn FnMut(&mut EntryHeader),
}

fn join_bytes(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => [a, b"/", b].concat(),
    }
}

pub(crate) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

/// Whether a path component has an unescaped `*`, `?` or `[`.
pub(crate) fn has_wildcard(comp: &str) -> bool {
    let mut escaped = false;
    for c in comp.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// A literal component with its escapes removed (`arr\[0\].txt` → `arr[0].txt`).
pub(crate) fn unescape(comp: &str) -> String {
    let mut out = String::with_capacity(comp.len());
    let mut chars = comp.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Go's `filepath.Match` for one path component (no `/` in `name`): `*`, `?`, `[...]` classes
/// with ranges and `^` negation, `\` escapes. A malformed pattern matches nothing.
pub(crate) fn go_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, length consumed including ']').
        let mut i = 0;
        let negate = p.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let lo = match p.get(i)? {
                ']' if !first => return Some((matched != negate, i + 1)),
                '\\' => {
                    i += 1;
                    *p.get(i)?
                }
                &ch => ch,
            };
            i += 1;
            first = false;
            let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&ch| ch != ']') {
                i += 1;
                let hi = match p[i] {
                    '\\' => {
                        i += 1;
                        *p.get(i)?
                    }
                    ch => ch,
                };
                i += 1;
                hi
            } else {
                lo
            };
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    fn at(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| at(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && at(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(&p[1..], *n.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, len))) => at(&p[1 + len..], &n[1..]),
                _ => false,
            },
            Some('\\') => p.len() > 1 && n.first() == Some(&p[1]) && at(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && at(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    at(&p, &n)
}
