//! File operations: COPY and ADD onto a root filesystem, with BuildKit's semantics.
//!
//! Sources are resolved inside their own root (the build context, or a stage's or image's root
//! filesystem): leading `/` and `..` are clamped, a top-level symlink is followed inside that root
//! only, wildcards match one path component each (Go's `filepath.Match`), and a wildcard that
//! matches nothing is not an error (BuildKit's `AllowEmptyWildcard`). A directory source copies
//! its contents; `--parents` keeps the path. Context files become 0:0 unless `--chown` says
//! otherwise; files from a stage keep their owners. `ADD` extracts a local tar archive (plain,
//! gzip, bzip2, xz or zstd, detected by content) into the destination directory.
//!
//! The selected entries are streamed as a tar into the layer applier, so every write into the
//! destination goes through the code that is hardened against hostile archives: paths are
//! resolved inside the destination root, never following a symlink out of it.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::dockerfile::instructions::InlineSource;
use crate::ignore::{IgnoreError, PatternMatcher, clean};
use crate::layer::{
    ApplyError, ApplyMode, ApplyOptions, EntryHeader, EntryKind, LayerError, Root, TarBuilder,
    apply_layer,
};

use super::chmod::Chmod;

/// Links followed while resolving a top-level source (Linux's own limit).
const MAX_SYMLINKS: usize = 40;
/// How much of a file is read to decide whether ADD extracts it.
const SNIFF_BYTES: usize = 512;

/// Where COPY or ADD takes files from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The build context directory, or a stage's or image's root filesystem.
    pub root: &'a Path,
    /// For the build context: the paths `.dockerignore` lets through (relative, `/`-separated,
    /// as [`crate::context::walk`] lists them). `None` shows everything.
    pub visible: Option<&'a BTreeSet<String>>,
    /// Whether entries keep their owners (a stage or image); context files become 0:0.
    pub keep_owner: bool,
}

/// One COPY or ADD, its values already expanded.
#[derive(Debug, Clone)]
pub struct FileOp<'a> {
    /// `COPY` or `ADD`, for messages.
    pub keyword: &'static str,
    /// Source paths or patterns, relative to the source root.
    pub sources: &'a [String],
    /// Heredoc sources (`COPY <<EOF /dst`), contents final.
    pub inline: &'a [InlineSource],
    /// The destination as written (relative to `workdir` unless absolute).
    pub dest: &'a str,
    /// The stage's WORKDIR.
    pub workdir: &'a str,
    /// `--chown`, resolved to numbers against the destination's user database.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// `--exclude` patterns, relative to each source.
    pub excludes: &'a [String],
    /// `--parents`: keep each source's path below the destination.
    pub parents: bool,
    /// ADD: extract local archives.
    pub unpack: bool,
    /// Modification time of entries the operation creates (heredoc files, the destination
    /// directory), from the build clock.
    pub created: i64,
}

/// Why COPY or ADD failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A literal source that does not exist (or is hidden by `.dockerignore`).
    #[error("{keyword} failed: \"{path}\" not found{hint}")]
    NotFound {
        /// COPY or ADD.
        keyword: &'static str,
        /// The source as written.
        path: String,
        /// Extra help (e.g. it is excluded by `.dockerignore`).
        hint: &'static str,
    },
    /// Several sources onto one destination that is not a directory.
    #[error(
        "When using {keyword} with more than one source file, the destination must be a directory and end with a /"
    )]
    NotADirectory {
        /// COPY or ADD.
        keyword: &'static str,
    },
    /// Something kiln does not do (yet), named.
    #[error("{0} is not supported by kiln yet")]
    Unsupported(String),
    /// A source name OCI layers cannot carry.
    #[error(
        "{keyword} failed: \"{path}\": names starting with .wh. are reserved by the OCI layer format"
    )]
    ReservedName {
        /// COPY or ADD.
        keyword: &'static str,
        /// The offending path.
        path: String,
    },
    /// A symlink loop while resolving a source.
    #[error("{keyword} failed: too many levels of symbolic links resolving \"{path}\"")]
    Loop {
        /// COPY or ADD.
        keyword: &'static str,
        /// The source as written.
        path: String,
    },
    /// An `--exclude` pattern that is not valid.
    #[error("invalid --exclude pattern")]
    Exclude(#[source] IgnoreError),
    /// Reading a source.
    #[error("reading {}", path.display())]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Producing the stream of entries.
    #[error("reading the sources")]
    Stream(#[source] LayerError),
    /// Writing into the destination.
    #[error("writing into the destination")]
    Apply(#[source] ApplyError),
}

/// Runs a COPY or ADD from `source` onto the root filesystem at `dest_root`.
pub fn copy(source: &Source<'_>, dest_root: &Path, op: &FileOp<'_>) -> Result<(), FileError> {
    let keyword = op.keyword;
    for s in op.sources {
        if s.starts_with("http://") || s.starts_with("https://") {
            return Err(match keyword {
                "ADD" => FileError::Unsupported(format!("ADD from a URL ({s})")),
                _ => FileError::Unsupported(format!("COPY from a URL ({s}); use ADD")),
            });
        }
        if s.starts_with("git@")
            || (s.contains("://") && s.split('#').next().is_some_and(|u| u.ends_with(".git")))
        {
            return Err(FileError::Unsupported(format!(
                "{keyword} from a git repository ({s})"
            )));
        }
    }
    let excludes = PatternMatcher::new(op.excludes).map_err(FileError::Exclude)?;
    let mut matches = Vec::new();
    for pattern in op.sources {
        matches.extend(resolve_source(source, pattern, keyword)?);
    }

    let dest_abs = clean(&if op.dest.starts_with('/') {
        op.dest.to_owned()
    } else {
        format!("/{}/{}", op.workdir, op.dest)
    });
    let dir_syntax =
        op.dest.is_empty() || op.dest == "." || op.dest.ends_with('/') || op.dest.ends_with("/.");
    let root = Root::open(dest_root).map_err(|source| FileError::Read {
        path: dest_root.to_owned(),
        source,
    })?;
    // Symlinks on the way to the destination are followed, inside the root: `COPY f /app/` with
    // `/app -> /etc` writes the image's `/etc/f`.
    let (resolved, meta) = resolve_in(dest_root, &dest_abs, keyword)?;
    let dest_exists_as_dir = meta.as_ref().is_some_and(|m| m.is_dir());
    let dest_rel = if dest_exists_as_dir || dir_syntax {
        resolved
    } else {
        // A file destination: its directory is resolved, the name itself is replaced.
        let (parent, name) = dest_abs.rsplit_once('/').unwrap_or(("", &dest_abs));
        join(&resolve_in(dest_root, parent, keyword)?.0, name)
    };
    let total = matches.len() + op.inline.len();
    if total > 1 && !dir_syntax && !dest_exists_as_dir && !op.parents {
        return Err(FileError::NotADirectory { keyword });
    }
    let into_dir = dir_syntax || dest_exists_as_dir || total > 1 || op.parents;

    let owner_of = |uid: u32, gid: u32| match op.owner {
        Some(owner) => owner,
        None if source.keep_owner => (uid, gid),
        None => (0, 0),
    };
    let adjust = |h: &mut EntryHeader| {
        let (uid, gid) = owner_of(h.uid as u32, h.gid as u32);
        (h.uid, h.gid) = (u64::from(uid), u64::from(gid));
        if let Some(chmod) = &op.chmod
            && h.kind != EntryKind::Symlink
            && h.kind != EntryKind::Hardlink
        {
            h.mode = chmod.apply(h.mode, h.kind == EntryKind::Dir);
        }
    };

    // A destination directory that does not exist yet is created with the operation's owner.
    if !dest_exists_as_dir && (into_dir || matches.iter().any(|m| m.is_dir)) {
        apply_stream(&root, |tar| {
            let mut h = EntryHeader::new(dest_rel.clone().into_bytes(), EntryKind::Dir);
            h.mode = 0o755;
            h.mtime = op.created;
            adjust(&mut h);
            tar.append_header(h, &[])
        })?;
    }

    for m in &matches {
        let target = |rel_name: &str| -> String {
            let place = if op.parents {
                m.rel.clone()
            } else {
                rel_name.to_owned()
            };
            join(&dest_rel, &place)
        };
        if m.is_dir {
            let prefix = if op.parents {
                join(&dest_rel, &m.rel)
            } else {
                dest_rel.clone()
            };
            check_reserved(keyword, &m.rel)?;
            apply_stream(&root, |tar| {
                if op.parents && !m.rel.is_empty() {
                    tar.append_path(&m.fs_path, prefix.clone().into_bytes(), &mut |h| adjust(h))?;
                }
                let mut reserved = None;
                let mut include = |rel: &[u8]| {
                    let rel = String::from_utf8_lossy(rel);
                    if rel
                        .rsplit('/')
                        .next()
                        .is_some_and(|n| n.starts_with(".wh."))
                    {
                        reserved.get_or_insert_with(|| rel.to_string());
                        return false;
                    }
                    let full = join(&m.rel, &rel);
                    source.visible.is_none_or(|v| v.contains(&full))
                        && !excludes.matches_or_parent_matches(&rel).unwrap_or(false)
                };
                tar.append_contents(&m.fs_path, prefix.as_bytes(), &mut include, &mut |h| {
                    adjust(h)
                })?;
                match reserved {
                    Some(path) => Err(LayerError::ReservedName { path: path.into() }),
                    None => Ok(()),
                }
            })
            .map_err(|e| reserved_to_file_error(e, keyword))?;
            continue;
        }
        let name = m.rel.rsplit('/').next().unwrap_or_default();
        check_reserved(keyword, name)?;
        if !m.rel.is_empty() && excludes.matches_or_parent_matches(name).unwrap_or(false) {
            continue;
        }
        if op.unpack && m.is_file && is_archive(&m.fs_path)? {
            extract(&root, &dest_rel, &m.fs_path, op)?;
            continue;
        }
        let path = if into_dir {
            target(name)
        } else {
            dest_rel.clone()
        };
        apply_stream(&root, |tar| {
            tar.append_path(&m.fs_path, path.clone().into_bytes(), &mut |h| adjust(h))
        })?;
    }

    for inline in op.inline {
        check_reserved(keyword, &inline.name)?;
        let path = if into_dir {
            join(&dest_rel, &inline.name)
        } else {
            dest_rel.clone()
        };
        apply_stream(&root, |tar| {
            let mut h = EntryHeader::new(path.clone().into_bytes(), EntryKind::Regular);
            // BuildKit writes heredoc files 0644.
            h.mode = 0o644;
            h.mtime = op.created;
            adjust(&mut h);
            tar.append_header(h, inline.data.as_bytes())
        })?;
    }
    Ok(())
}

/// A source that exists, resolved inside its root.
#[derive(Debug)]
struct Match {
    /// Its path relative to the source root, cleaned (`""` is the root).
    rel: String,
    /// Where to read it (top-level symlinks followed inside the root).
    fs_path: PathBuf,
    is_dir: bool,
    is_file: bool,
}

/// The existing paths a source pattern names, in order.
fn resolve_source(
    source: &Source<'_>,
    pattern: &str,
    keyword: &'static str,
) -> Result<Vec<Match>, FileError> {
    let rel = clean(&format!("/{pattern}"))
        .trim_start_matches('/')
        .to_owned();
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
        let visible = rel.is_empty() || source.visible.is_none_or(|v| v.contains(&rel));
        match visible
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
            _ => {
                let hint = if visible {
                    ""
                } else {
                    " (it is excluded by .dockerignore)"
                };
                return Err(FileError::NotFound {
                    keyword,
                    path: pattern.to_owned(),
                    hint,
                });
            }
        }
    }
    Ok(out)
}

/// Resolves `rel` inside `root`, following symlinks (also the last one) without leaving the
/// root: an absolute target is taken from the root, `..` stops at it. Returns the resolved path
/// relative to the root, and its metadata when it exists. Past a missing component the rest is
/// taken as written (a destination may not exist yet).
fn resolve_in(
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

/// Streams what `fill` writes as a tar into the applier at `root`.
fn apply_stream(
    root: &Root,
    fill: impl FnOnce(&mut TarBuilder<io::PipeWriter>) -> Result<(), LayerError> + Send,
) -> Result<(), FileError> {
    let (reader, writer) = io::pipe().map_err(|source| FileError::Read {
        path: "pipe".into(),
        source,
    })?;
    let root_path = crate::layer::proc_path(root.fd());
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut tar = TarBuilder::new(writer);
            fill(&mut tar)?;
            tar.finish().map(drop)
        });
        let applied = apply_layer(&root_path, reader, &ApplyOptions::new(ApplyMode::Merge));
        let produced = producer.join().unwrap_or_else(|_| {
            Err(LayerError::Stream(io::Error::other(
                "the copy thread panicked",
            )))
        });
        // A failed producer explains a truncated stream better than the applier's complaint.
        produced.map_err(FileError::Stream)?;
        applied.map(drop).map_err(FileError::Apply)
    })
}

fn reserved_to_file_error(e: FileError, keyword: &'static str) -> FileError {
    match e {
        FileError::Stream(LayerError::ReservedName { path }) => FileError::ReservedName {
            keyword,
            path: path.display().to_string(),
        },
        other => other,
    }
}

fn check_reserved(keyword: &'static str, name: &str) -> Result<(), FileError> {
    if name
        .rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with(".wh."))
    {
        return Err(FileError::ReservedName {
            keyword,
            path: name.to_owned(),
        });
    }
    Ok(())
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

fn components(rel: &str) -> Vec<Vec<u8>> {
    rel.split('/')
        .filter(|c| !c.is_empty())
        .map(|c| c.as_bytes().to_vec())
        .collect()
}

/// Whether a path component has an unescaped `*`, `?` or `[`.
fn has_wildcard(comp: &str) -> bool {
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
fn unescape(comp: &str) -> String {
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

/// BuildKit's archive detection: the file decompresses (none, gzip, bzip2, xz, zstd) and a tar
/// header parses at its start.
fn is_archive(path: &Path) -> Result<bool, FileError> {
    let read = |source| FileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut reader = decompressing(BufReader::new(file)).map_err(read)?;
    let mut block = [0u8; SNIFF_BYTES];
    let mut filled = 0;
    while filled < block.len() {
        match reader.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            // Not decompressible: a plain file, copied as it is.
            Err(_) => return Ok(false),
        }
    }
    Ok(filled == SNIFF_BYTES && tar_header_ok(&block))
}

/// A ustar/GNU/v7 header whose checksum is right (what Go's `tar.Reader.Next` checks first).
fn tar_header_ok(block: &[u8; SNIFF_BYTES]) -> bool {
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == sum
}

/// A reader that decompresses gzip, bzip2, xz or zstd by their magic bytes, or passes through.
fn decompressing<R: BufRead + Send + 'static>(mut reader: R) -> io::Result<Box<dyn Read + Send>> {
    let head = reader.fill_buf()?;
    Ok(if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(reader))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(reader))
    } else {
        Box::new(crate::layer::decompress(reader)?)
    })
}

/// Extracts a local archive into the destination directory, which is created if missing. The
/// archive's paths (symlinks included) resolve inside that directory, as docker's `Untar` does.
fn extract(root: &Root, dest_rel: &str, archive: &Path, op: &FileOp<'_>) -> Result<(), FileError> {
    let read = |source| FileError::Read {
        path: archive.to_owned(),
        source,
    };
    let dest = root.dir_creating(&components(dest_rel)).map_err(read)?;
    let dest_path = crate::layer::proc_path(std::os::fd::AsFd::as_fd(&dest));
    let file = std::fs::File::open(archive).map_err(read)?;
    let reader = decompressing(BufReader::new(file)).map_err(read)?;
    let mut options = ApplyOptions::new(ApplyMode::Merge);
    options.owner = op.owner;
    apply_layer(&dest_path, reader, &options)
        .map(drop)
        .map_err(FileError::Apply)
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
