//! File operations: COPY and ADD onto a root filesystem, with BuildKit's semantics.
//!
//! Local sources are resolved inside their own root (see `sources.rs`): a directory source
//! copies its contents, wildcards match one component each, a wildcard that matches nothing is
//! not an error, and `--parents` keeps each path below the source's pivot (`a/./b`), with `**`
//! spanning directories. Context files become 0:0 unless `--chown` says otherwise; files from a
//! stage keep their owners. Missing directories on the way to the destination (the
//! destination directory itself included) are made as BuildKit's `MkdirAll(dest, 0755, chown)`
//! makes them: mode 0755 whatever `--chmod` says, owned by the `--chown` owner or 0:0. Modes, setuid bits, fifos, symlinks (as links, never followed) and
//! hard links within one copied directory are kept. `ADD` extracts local tar archives (plain,
//! gzip, bzip2, xz or zstd, detected by content; see `unpack.rs`) into the destination
//! directory, and downloads `http(s)://` sources (see `fetch.rs`) as files of mode 0600 (unless
//! `--chmod`) named after the URL, timed by `Last-Modified`, never extracted unless
//! `--unpack=true`, and checked against `--checksum`. Every source is resolved and every URL
//! downloaded and verified before anything is written, so a missing source, an HTTP error or a
//! checksum mismatch leaves the destination as it was.
//!
//! The destination is relative to WORKDIR unless absolute; it is a directory when it ends with
//! `/` (or is `.`), already is one, or receives several sources. Symlinks on the way to it are
//! followed inside the destination root. With `--link` (and no `--chmod`, which makes BuildKit
//! ignore `--link`) BuildKit copies into an empty directory and merges that on top as its own
//! layer; kiln writes the same files in place and reproduces what that merge makes visible:
//! nothing in the destination is read, so every directory on the way is (re)written as a
//! directory of mode 0755 owned by the `--chown` owner (or 0:0) with the step's time — a
//! symlink there is replaced, not followed, and an existing directory's mode and owner are
//! overwritten — and the destination counts as a directory only when written as one, so
//! `COPY --link f /existing-dir` replaces that directory with the file. What `--link` is
//! for, the independent cache-reusable layer, is not a difference in the files: kiln's layer
//! is the diff of this step in either case.
//!
//! The selected entries are streamed as a tar into the layer applier, so every write into the
//! destination goes through the code that is hardened against hostile archives: paths are
//! resolved inside the destination root, never following a symlink out of it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use kiln_registry::{Digest, DigestError};

use crate::context::Visible;
use crate::ignore::{IgnoreError, PatternMatcher, clean};
use crate::layer::{
    ApplyError, ApplyMode, ApplyOptions, EntryHeader, EntryKind, LayerError, Root, TarBuilder,
    apply_layer,
};
use crate::plan::lower::InlineSource;

use super::chmod::Chmod;
use super::fetch::{self, Download, FetchError, FetchOptions};
use super::sources::{
    Match, ParentsWalk, has_wildcard, is_visible, join, literal_prefix, not_found, resolve_in,
    resolve_source, split_pivot,
};
use super::unpack::{extract, is_archive};

#[cfg(test)]
pub(crate) use super::sources::go_match;

/// Where COPY or ADD takes files from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The build context directory, or a stage's or image's root filesystem.
    pub root: &'a Path,
    /// For the build context: what `.dockerignore` lets through. `None` shows everything.
    pub visible: Option<&'a Visible>,
    /// Whether entries keep their owners (a stage or image); context files become 0:0.
    pub keep_owner: bool,
}

/// Which sources are extracted when they are tar archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unpack {
    /// Nothing: COPY, and `ADD --unpack=false`.
    Never,
    /// Local sources (context, stage or image) but not downloads: ADD's default.
    Local,
    /// Downloads too: `ADD --unpack=true` (Dockerfile 1.17).
    All,
}

impl Unpack {
    /// ADD's setting for its `--unpack` flag (`None` when the flag is absent).
    pub fn for_add(flag: Option<bool>) -> Self {
        match flag {
            None => Unpack::Local,
            Some(true) => Unpack::All,
            Some(false) => Unpack::Never,
        }
    }
}

/// One COPY or ADD, its values already expanded.
#[derive(Debug, Clone)]
pub struct FileOp<'a> {
    /// `COPY` or `ADD`.
    pub keyword: &'static str,
    /// Source paths or patterns, relative to the source root, and (ADD) URLs.
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
    /// `--exclude` patterns, relative to each source (to the pivot with `--parents`).
    pub excludes: &'a [String],
    /// `--parents`: keep each source's path (below its `/./` pivot) under the destination.
    pub parents: bool,
    /// Which archives are extracted: [`Unpack::Never`] for COPY, [`Unpack::for_add`] for ADD.
    pub unpack: Unpack,
    /// `ADD --checksum=sha256:<hex>`: the digest the (single, URL) source must have.
    pub checksum: Option<&'a str>,
    /// `--link` (see the module documentation for what changes).
    pub link: bool,
    /// How URLs are downloaded (`None`: defaults, with proxies from the environment).
    pub fetch: Option<&'a FetchOptions>,
    /// URLs downloaded already (the build keys an unpinned download on its content), used
    /// instead of fetching them again.
    pub downloaded: Option<&'a BTreeMap<String, Download>>,
    /// Modification time of entries the operation creates (heredoc files, directories it
    /// makes, downloads without `Last-Modified`), from the build clock.
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
        /// Extra help (e.g. the `.dockerignore` pattern that excludes it).
        hint: String,
    },
    /// Several sources onto one destination that is not a directory.
    #[error(
        "When using {keyword} with more than one source file, the destination must be a directory and end with a /"
    )]
    NotADirectory {
        /// COPY or ADD.
        keyword: &'static str,
    },
    /// A URL given to COPY.
    #[error("source can't be a URL for COPY")]
    UrlForCopy,
    /// A git repository given to COPY.
    #[error("source can't be a git ref for COPY")]
    GitForCopy,
    /// `--checksum` on COPY.
    #[error("checksum can't be specified for COPY")]
    ChecksumForCopy,
    /// `--checksum` with more than one source.
    #[error("checksum can't be specified for multiple sources")]
    ChecksumForSources,
    /// `--checksum` on a source that is not a URL.
    #[error("checksum can't be specified for non-HTTP sources")]
    ChecksumForLocal,
    /// A `--checksum` that is not a `sha256:` digest.
    #[error("invalid checksum {value:?}")]
    Checksum {
        /// The value as written.
        value: String,
        /// Why it is not a digest.
        #[source]
        source: DigestError,
    },
    /// Downloading a URL source.
    #[error("downloading {url}")]
    Download {
        /// The URL, its password redacted.
        url: String,
        /// Why it failed.
        #[source]
        source: FetchError,
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
    /// A `--parents` source that is not a valid pattern.
    #[error("invalid source pattern {pattern:?}")]
    Pattern {
        /// The source as written.
        pattern: String,
        /// Why it is not valid.
        #[source]
        source: IgnoreError,
    },
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

/// One source, resolved (and downloaded) before anything is written.
enum Planned<'a> {
    /// Paths a local source names.
    Local(Vec<Match>),
    /// A `--parents` source: its pivot directories and what to take below them.
    Parents {
        bases: Vec<Match>,
        include: Option<PatternMatcher>,
        literal: Vec<String>,
    },
    /// A downloaded URL and the file name it gets in a directory.
    Url { name: String, file: Fetched<'a> },
}

/// A download made for this operation, or one the caller made before.
enum Fetched<'a> {
    Now(Download),
    Before(&'a Download),
}

impl std::ops::Deref for Fetched<'_> {
    type Target = Download;

    fn deref(&self) -> &Download {
        match self {
            Fetched::Now(d) => d,
            Fetched::Before(d) => d,
        }
    }
}

/// Runs a COPY or ADD from `source` onto the root filesystem at `dest_root`.
pub fn copy(source: &Source<'_>, dest_root: &Path, op: &FileOp<'_>) -> Result<(), FileError> {
    let keyword = op.keyword;
    let excludes = PatternMatcher::new(op.excludes).map_err(FileError::Exclude)?;
    let planned = plan(source, op)?;
    let root = Root::open(dest_root).map_err(|source| FileError::Read {
        path: dest_root.to_owned(),
        source,
    })?;
    let dir_syntax =
        op.dest.is_empty() || op.dest == "." || op.dest.ends_with('/') || op.dest.ends_with("/.");
    // BuildKit ignores --link when --chmod is given.
    let link = op.link && op.chmod.is_none();
    let (dest_rel, dest_exists_as_dir) = destination(dest_root, op, link, dir_syntax)?;
    let total = op.inline.len()
        + planned
            .iter()
            .map(|p| match p {
                Planned::Local(matches) => matches.len(),
                _ => 1,
            })
            .sum::<usize>();
    if total > 1 && !dir_syntax && !dest_exists_as_dir && !op.parents {
        return Err(FileError::NotADirectory { keyword });
    }
    let into_dir = dir_syntax || dest_exists_as_dir || total > 1 || op.parents;
    let has_dir_source = planned
        .iter()
        .any(|p| matches!(p, Planned::Local(m) if m.iter().any(|m| m.is_dir)));
    let dest_is_dir = into_dir || has_dir_source;

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

    // Directories made before anything lands in them: every missing directory on the way to
    // the destination (the destination itself when it is a directory), and with --link every
    // directory on the way. As BuildKit's `MkdirAll(…, 0755, chown)` makes them: mode 0755
    // whatever --chmod says, owned by the --chown owner (else 0:0), parents included.
    let dir = match dest_is_dir {
        true => dest_rel.as_str(),
        false => dest_rel.rsplit_once('/').map_or("", |(parent, _)| parent),
    };
    let comps: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    // `dest_rel` is resolved up to its first missing component, so a prefix that exists is a
    // real directory (or a file, which the copy then reports) and never a symlink.
    let fresh_dirs: Vec<String> = (1..=comps.len())
        .map(|n| comps[..n].join("/"))
        .filter(|d| link || std::fs::symlink_metadata(dest_root.join(d)).is_err())
        .collect();
    if !fresh_dirs.is_empty() {
        apply_stream(&root, |tar| {
            for dir in &fresh_dirs {
                let mut h = EntryHeader::new(dir.clone().into_bytes(), EntryKind::Dir);
                h.mode = 0o755;
                h.mtime = op.created;
                let (uid, gid) = op.owner.unwrap_or((0, 0));
                (h.uid, h.gid) = (u64::from(uid), u64::from(gid));
                tar.append_header(h, &[])?;
            }
            Ok(())
        })?;
    }

    for item in &planned {
        match item {
            Planned::Local(matches) => {
                let target = Target {
                    root: &root,
                    dest_rel: &dest_rel,
                    into_dir,
                    excludes: &excludes,
                };
                for m in matches {
                    copy_match(m, &target, source, op, &adjust)?;
                }
            }
            Planned::Parents {
                bases,
                include,
                literal,
            } => {
                for base in bases {
                    let walk = ParentsWalk {
                        include: include.as_ref(),
                        literal,
                        base_rel: &base.rel,
                        source,
                        excludes: &excludes,
                        dest: &dest_rel,
                    };
                    apply_stream(&root, |tar| {
                        walk.run(tar, &base.fs_path, &mut |h| adjust(h)).map(drop)
                    })
                    .map_err(|e| reserved_to_file_error(e, keyword))?;
                }
            }
            Planned::Url { name, file } => {
                if op.unpack == Unpack::All && is_archive(file.path())? {
                    extract(&root, &dest_rel, file.path(), op.owner)?;
                    continue;
                }
                let path = if into_dir {
                    join(&dest_rel, name)
                } else {
                    dest_rel.clone()
                };
                let (uid, gid) = op.owner.unwrap_or((0, 0));
                apply_stream(&root, |tar| {
                    tar.append_path(file.path(), path.into_bytes(), &mut |h| {
                        // BuildKit's HTTP source writes 0600; --chmod replaces it.
                        h.mode = match &op.chmod {
                            Some(chmod) => chmod.apply(0o600, false),
                            None => 0o600,
                        };
                        (h.uid, h.gid) = (u64::from(uid), u64::from(gid));
                        h.mtime = file.last_modified.unwrap_or(op.created);
                        // Whatever the temporary file picked up (an SELinux label) is not the
                        // download's.
                        h.xattrs.clear();
                    })
                })?;
            }
        }
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

/// Every source resolved, and every URL downloaded and verified, before anything is written.
fn plan<'a>(source: &Source<'_>, op: &FileOp<'a>) -> Result<Vec<Planned<'a>>, FileError> {
    let expected = check_remote(op)?;
    let default_fetch;
    let fetch_options = match op.fetch {
        Some(options) => options,
        None => {
            default_fetch = FetchOptions::from_env();
            &default_fetch
        }
    };
    let mut planned = Vec::new();
    for pattern in op.sources {
        planned.push(if is_url(pattern) {
            let name = fetch::file_name(pattern);
            check_reserved(op.keyword, &name)?;
            let file = match op.downloaded.and_then(|d| d.get(pattern)) {
                Some(before) => Fetched::Before(before),
                None => fetch::download(pattern, expected.as_ref(), fetch_options)
                    .map(Fetched::Now)
                    .map_err(|source| FileError::Download {
                        url: fetch::redacted(pattern),
                        source,
                    })?,
            };
            Planned::Url { name, file }
        } else if op.parents {
            plan_parents(source, pattern, op.keyword)?
        } else {
            Planned::Local(resolve_source(source, pattern, op.keyword)?)
        });
    }
    Ok(planned)
}

/// The destination relative to the root, and whether it already is a directory.
///
/// Symlinks on the way are followed inside the root (`COPY f /app/` with `/app -> /etc` writes
/// the image's `/etc/f`), except with `--link`, where nothing in the destination is read and the
/// path is taken as written.
fn destination(
    dest_root: &Path,
    op: &FileOp<'_>,
    link: bool,
    dir_syntax: bool,
) -> Result<(String, bool), FileError> {
    let dest_abs = clean(&if op.dest.starts_with('/') {
        op.dest.to_owned()
    } else {
        format!("/{}/{}", op.workdir, op.dest)
    });
    if link {
        return Ok((dest_abs.trim_start_matches('/').to_owned(), false));
    }
    let (resolved, meta) = resolve_in(dest_root, &dest_abs, op.keyword)?;
    let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
    if is_dir || dir_syntax {
        return Ok((resolved, is_dir));
    }
    // A file destination: its directory is resolved, the name itself is replaced.
    let (parent, name) = dest_abs.rsplit_once('/').unwrap_or(("", &dest_abs));
    let parent = resolve_in(dest_root, parent, op.keyword)?.0;
    Ok((join(&parent, name), false))
}

/// Whether an ADD source is fetched (a URL or a git repository) rather than read from its root.
pub(crate) fn is_remote(source: &str) -> bool {
    is_url(source) || is_git(source)
}

/// BuildKit's `http://`/`https://` sources (a git repository URL is not one).
fn is_url(source: &str) -> bool {
    (source.starts_with("http://") || source.starts_with("https://")) && !is_git(source)
}

/// The git sources BuildKit recognises by their form: `git@host:…`, `git://…`, and a URL whose
/// path (before any `#ref`) ends in `.git`.
fn is_git(source: &str) -> bool {
    source.starts_with("git@")
        || source.starts_with("git://")
        || (source.contains("://")
            && source
                .split('#')
                .next()
                .is_some_and(|u| u.trim_end_matches('/').ends_with(".git")))
}

/// BuildKit's frontend rules for remote sources and `--checksum`; returns the checksum.
fn check_remote(op: &FileOp<'_>) -> Result<Option<Digest>, FileError> {
    let add = op.keyword == "ADD";
    for s in op.sources {
        if is_git(s) {
            return Err(match add {
                true => FileError::Unsupported(format!("ADD from a git repository ({s})")),
                false => FileError::GitForCopy,
            });
        }
        if is_url(s) && !add {
            return Err(FileError::UrlForCopy);
        }
    }
    let Some(value) = op.checksum else {
        return Ok(None);
    };
    if !add {
        return Err(FileError::ChecksumForCopy);
    }
    if op.sources.len() != 1 {
        return Err(FileError::ChecksumForSources);
    }
    if !is_url(&op.sources[0]) {
        return Err(FileError::ChecksumForLocal);
    }
    value
        .parse()
        .map(Some)
        .map_err(|source| FileError::Checksum {
            value: value.to_owned(),
            source,
        })
}

/// A `--parents` source: the pivot resolved (wildcards allowed), the pattern below it compiled.
/// A source without wildcards must exist.
fn plan_parents(
    source: &Source<'_>,
    pattern: &str,
    keyword: &'static str,
) -> Result<Planned<'static>, FileError> {
    let (base, rest) = split_pivot(pattern);
    if !has_wildcard(&base) && !rest.split('/').any(has_wildcard) {
        let full = join(&base, &rest);
        let exists =
            is_visible(source, &full) && resolve_in(source.root, &full, keyword)?.1.is_some();
        if !exists {
            return Err(not_found(keyword, pattern, source, &full));
        }
    }
    let include = match rest.is_empty() {
        true => None,
        false => Some(
            PatternMatcher::new(&[&rest]).map_err(|source| FileError::Pattern {
                pattern: pattern.to_owned(),
                source,
            })?,
        ),
    };
    let mut bases = resolve_source(source, &base, keyword)?;
    bases.retain(|b| b.is_dir);
    Ok(Planned::Parents {
        bases,
        include,
        literal: literal_prefix(&rest),
    })
}

/// Where one operation's sources go, and how.
struct Target<'a> {
    root: &'a Root,
    /// The destination, relative to the root, symlinks resolved (unless `--link`).
    dest_rel: &'a str,
    /// Whether each source lands inside `dest_rel` rather than at it.
    into_dir: bool,
    excludes: &'a PatternMatcher,
}

/// Copies one resolved local source: a directory's contents, an archive's (ADD), or the entry.
fn copy_match(
    m: &Match,
    target: &Target<'_>,
    source: &Source<'_>,
    op: &FileOp<'_>,
    adjust: &(dyn Fn(&mut EntryHeader) + Sync),
) -> Result<(), FileError> {
    let Target {
        root,
        dest_rel,
        into_dir,
        excludes,
    } = *target;
    let keyword = op.keyword;
    if m.is_dir {
        check_reserved(keyword, &m.rel)?;
        return apply_stream(root, |tar| {
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
                is_visible(source, &join(&m.rel, &rel))
                    && !excludes.matches_or_parent_matches(&rel).unwrap_or(false)
            };
            tar.append_contents(&m.fs_path, dest_rel.as_bytes(), &mut include, &mut |h| {
                adjust(h)
            })?;
            match reserved {
                Some(path) => Err(LayerError::ReservedName { path: path.into() }),
                None => Ok(()),
            }
        })
        .map_err(|e| reserved_to_file_error(e, keyword));
    }
    let name = m.rel.rsplit('/').next().unwrap_or_default();
    check_reserved(keyword, name)?;
    if !m.rel.is_empty() && excludes.matches_or_parent_matches(name).unwrap_or(false) {
        return Ok(());
    }
    if op.unpack != Unpack::Never && m.is_file && is_archive(&m.fs_path)? {
        return extract(root, dest_rel, &m.fs_path, op.owner);
    }
    let path = if into_dir {
        join(dest_rel, name)
    } else {
        dest_rel.to_owned()
    };
    apply_stream(root, |tar| {
        tar.append_path(&m.fs_path, path.into_bytes(), &mut |h| adjust(h))
    })
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

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "file_add_tests.rs"]
mod add_tests;
