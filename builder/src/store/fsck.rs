//! Checking the store (`kiln fsck`), and repairing it.
//!
//! [`Store::verify`] re-hashes every blob against its name (streaming) and walks every
//! `index.json` entry's closure (index → manifests → config and layers), checking that each blob
//! is present, of its descriptor's size, and, for manifests and indexes, readable. It takes no
//! lock and changes nothing, so it may run at any time (the tests run it after commands).
//!
//! [`Store::fsck`] adds what only an idle store can tell. It holds the lease exclusively and the
//! lock (so it fails with [`StoreError::Busy`] while a build runs), which makes every entry of
//! `tmp/` a leftover of a process that died (with a RUN's overlay perhaps still mounted), and
//! it finds records in `cache/compressed/` that name absent blobs. Snapshots need no check of
//! their own: one appears under its chainID only complete (it is renamed into place), so a half
//! unpacked layer is a leftover in `tmp/`. Leftovers and stale records are harmless (the next
//! lease sweeps `tmp/`; a stale record reads as a miss); everything else is damage that the
//! commit protocol never leaves, from a failing disk or a hand in the directory.
//!
//! With `repair`, fsck deletes corrupt and unreadable blobs and stray files, untags every entry
//! whose image is then incomplete or unreadable (an `index.json` that does not parse is set aside
//! as `index.json.corrupt` in the store root and replaced by an empty one), sweeps `tmp/` and
//! removes stale records. Afterwards the store is consistent and a second check finds nothing;
//! blobs that only the untagged images used are left for `kiln prune`. The build cache's records
//! are checked by [`BuildCache::fsck`](crate::solve::cache::BuildCache::fsck), after this, so
//! that it sees the blobs this deleted.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use kiln_registry::{Digest, DigestWriter};
use oci_spec::image::Descriptor;

use super::gc::Root;
use super::index::ref_name;
use super::tmp::Leftover;
use super::{Store, StoreError, sorted_entries};
use crate::error_chain;

/// The read buffer for re-hashing blobs.
const HASH_BUF: usize = 128 * 1024;

/// One thing [`Store::verify`] or [`Store::fsck`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `index.json` does not parse, or an entry in it is not a usable descriptor.
    BadIndex {
        /// Why.
        reason: String,
    },
    /// A blob's content does not hash to its name.
    CorruptBlob {
        /// The blob's name.
        digest: Digest,
        /// What it hashes to.
        found: Digest,
    },
    /// A blob cannot be read to the end (an I/O error: a failing disk).
    UnreadableBlob {
        /// The blob's name.
        digest: Digest,
        /// The error.
        reason: String,
    },
    /// A blob a tag needs is absent.
    MissingBlob {
        /// The absent blob.
        digest: Digest,
        /// The tag (or, for untagged entries, the entry's digest) that needs it.
        tag: String,
    },
    /// A blob's size differs from its descriptor's.
    WrongSize {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// The file's size.
        found: u64,
    },
    /// A manifest or index a tag needs does not parse, or cannot be read.
    BadDocument {
        /// The blob.
        digest: Digest,
        /// Why.
        reason: String,
    },
    /// An entry in `blobs/sha256/` that is not a regular file named by a digest.
    StrayFile {
        /// The entry.
        path: PathBuf,
    },
    /// An entry of `tmp/` left by a process that died (harmless).
    Leftover {
        /// The entry.
        path: PathBuf,
        /// What is still mounted at or below it (a killed RUN's overlay), deepest first.
        mounts: Vec<PathBuf>,
    },
    /// A cache record naming a blob that is absent, or that does not parse (harmless: it reads
    /// as a miss).
    StaleRecord {
        /// The record.
        path: PathBuf,
        /// The absent blob; `None` when the record does not parse.
        missing: Option<Digest>,
    },
}

impl Problem {
    /// Whether this is only something left behind (in `tmp/`, the caches), which costs space
    /// but cannot make kiln read wrong content.
    pub fn is_harmless(&self) -> bool {
        matches!(self, Self::Leftover { .. } | Self::StaleRecord { .. })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadIndex { reason } => write!(f, "index.json is corrupt: {reason}"),
            Self::CorruptBlob { digest, found } => {
                write!(f, "blob {digest} corrupt (expected {digest}, got {found})")
            }
            Self::UnreadableBlob { digest, reason } => {
                write!(f, "blob {digest} unreadable: {reason}")
            }
            Self::MissingBlob { digest, tag } => {
                write!(f, "blob {digest} missing (needed by {tag})")
            }
            Self::WrongSize {
                digest,
                expected,
                found,
            } => write!(
                f,
                "blob {digest} has {found} bytes, its descriptor says {expected}"
            ),
            Self::BadDocument { digest, reason } => write!(f, "blob {digest} unusable: {reason}"),
            Self::StrayFile { path } => write!(f, "stray file {}", path.display()),
            Self::Leftover { path, mounts } if mounts.is_empty() => {
                write!(f, "leftover {}", path.display())
            }
            Self::Leftover { path, mounts } => write!(
                f,
                "leftover {} (still mounted: {})",
                path.display(),
                mounts
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::StaleRecord {
                path,
                missing: Some(digest),
            } => write!(
                f,
                "stale cache record {} (blob {digest} is absent)",
                path.display()
            ),
            Self::StaleRecord {
                path,
                missing: None,
            } => write!(f, "unreadable cache record {}", path.display()),
        }
    }
}

/// One thing [`Store::fsck`] did to repair the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Deleted a corrupt or unreadable blob.
    DeletedBlob {
        /// The blob.
        digest: Digest,
    },
    /// Removed a stray entry from `blobs/sha256/`.
    RemovedStray {
        /// The entry.
        path: PathBuf,
    },
    /// Removed a tag (or an untagged entry) whose image is not complete and readable.
    Untagged {
        /// The tag, or the entry's digest.
        tag: String,
        /// What its image lacks.
        reason: String,
    },
    /// Set aside an `index.json` that does not parse, and started an empty one.
    ResetIndex {
        /// Where the old one is now.
        saved_as: PathBuf,
    },
    /// Removed a leftover from `tmp/` (detaching what was mounted in it).
    RemovedLeftover {
        /// The entry.
        path: PathBuf,
    },
    /// Removed a stale cache record.
    RemovedRecord {
        /// The record.
        path: PathBuf,
    },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeletedBlob { digest } => write!(f, "deleted blob {digest}"),
            Self::RemovedStray { path } => write!(f, "removed stray file {}", path.display()),
            Self::Untagged { tag, reason } => write!(f, "untagged {tag}: {reason}"),
            Self::ResetIndex { saved_as } => write!(
                f,
                "replaced index.json by an empty one (every tag is lost; the old one is {})",
                saved_as.display()
            ),
            Self::RemovedLeftover { path } => write!(f, "removed leftover {}", path.display()),
            Self::RemovedRecord { path } => write!(f, "removed cache record {}", path.display()),
        }
    }
}

/// What [`Store::fsck`] checked, found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
    /// `index.json` entries whose closure was walked.
    pub tags: usize,
    /// Layers the tags need that are remote: known by digest and source, not yet fetched (a
    /// lazy cache import; fetched when something reads them). Not damage.
    pub unfetched: usize,
    /// What was found, in the order checked: blobs, tags, `tmp/`, records.
    pub problems: Vec<Problem>,
    /// What was done about it (empty unless repairing).
    pub repairs: Vec<Repair>,
}

impl FsckReport {
    /// Whether anything other than harmless leftovers was found.
    pub fn is_damaged(&self) -> bool {
        self.problems.iter().any(|p| !p.is_harmless())
    }
}

/// The sha256 and size of a file, streamed.
fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = DigestWriter::new(io::sink());
    let mut buf = vec![0; HASH_BUF];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        io::Write::write_all(&mut hasher, &buf[..n])?;
    }
    let (_, digest, size) = hasher.finish();
    Ok((digest, size))
}

/// The tag an `index.json` entry is reported by: its name, or for an untagged one its digest.
fn entry_name(entry: &Descriptor) -> String {
    ref_name(entry)
        .map(str::to_owned)
        .unwrap_or_else(|| entry.digest().to_string())
}

impl Store {
    /// Checks the store: re-hashes every blob, and checks that every tag's closure is present,
    /// the right size and readable. Returns the problems found (none for a healthy store);
    /// fails only when the store cannot be read at all.
    pub fn verify(&self) -> Result<Vec<Problem>, StoreError> {
        Ok(self.check_blobs_and_tags()?.problems)
    }

    /// [`Store::verify`] with its counts.
    fn check_blobs_and_tags(&self) -> Result<FsckReport, StoreError> {
        let mut report = FsckReport::default();
        let problems = &mut report.problems;
        let mut reported = BTreeSet::new();
        for entry in sorted_entries(&self.blobs_dir())? {
            let path = entry.path();
            let digest = entry
                .file_name()
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok());
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            let Some(digest) = digest.filter(|_| is_file) else {
                problems.push(Problem::StrayFile { path });
                continue;
            };
            match hash_file(&path) {
                Ok((found, size)) => {
                    report.blobs += 1;
                    report.bytes += size;
                    if found != digest {
                        reported.insert(digest.clone());
                        problems.push(Problem::CorruptBlob { digest, found });
                    }
                }
                // Deleted since listed (gc in another process, if the caller holds nothing).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    reported.insert(digest.clone());
                    problems.push(Problem::UnreadableBlob {
                        digest,
                        reason: e.to_string(),
                    });
                }
            }
        }

        let index = match self.read_index() {
            Ok(index) => index,
            Err(e @ StoreError::CorruptIndex { .. }) => {
                problems.push(Problem::BadIndex {
                    reason: error_chain(&e),
                });
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        for entry in index.manifests() {
            report.tags += 1;
            let tag = entry_name(entry);
            let walk = match Root::from_descriptor(entry) {
                Ok(root) => self.walk([root]),
                Err(e) => {
                    problems.push(Problem::BadIndex {
                        reason: format!("entry {tag}: {}", error_chain(&e)),
                    });
                    continue;
                }
            };
            for digest in walk.unfetched {
                if reported.insert(digest) {
                    report.unfetched += 1;
                }
            }
            for digest in walk.missing {
                if reported.insert(digest.clone()) {
                    problems.push(Problem::MissingBlob {
                        digest,
                        tag: tag.clone(),
                    });
                }
            }
            for (digest, err) in walk.broken {
                if !reported.insert(digest.clone()) {
                    continue;
                }
                problems.push(match err {
                    StoreError::SizeMismatch {
                        expected, found, ..
                    } => Problem::WrongSize {
                        digest,
                        expected,
                        found,
                    },
                    StoreError::DigestMismatch { found, .. } => {
                        Problem::CorruptBlob { digest, found }
                    }
                    err => Problem::BadDocument {
                        digest,
                        reason: error_chain(&err),
                    },
                });
            }
        }
        Ok(report)
    }

    /// Checks the whole store (see the module documentation): [`Store::verify`]'s checks,
    /// leftovers in `tmp/`, and stale records of compressed layers; with `repair`, repairs
    /// everything found. Fails with [`StoreError::Busy`] while a build or a blob writer holds
    /// a lease.
    pub fn fsck(&self, repair: bool) -> Result<FsckReport, StoreError> {
        let _lease = self.exclusive_lease()?;
        let _lock = self.lock()?;
        let mut report = self.check_blobs_and_tags()?;
        for Leftover { path, mounts } in self.leftovers()? {
            report.problems.push(Problem::Leftover { path, mounts });
        }
        for (path, missing) in self.stale_variants()? {
            report.problems.push(Problem::StaleRecord { path, missing });
        }
        if repair {
            report.repairs = self.repair_locked(&report.problems)?;
        }
        Ok(report)
    }

    /// Repairs what [`Store::fsck`] found; the caller holds the lease exclusively and the lock.
    fn repair_locked(&self, problems: &[Problem]) -> Result<Vec<Repair>, StoreError> {
        let mut repairs = Vec::new();
        for problem in problems {
            match problem {
                Problem::CorruptBlob { digest, .. } | Problem::UnreadableBlob { digest, .. } => {
                    let path = self.blob_path(digest);
                    match fs::remove_file(&path) {
                        Ok(()) => repairs.push(Repair::DeletedBlob {
                            digest: digest.clone(),
                        }),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StoreError::io("remove", &path)(e)),
                    }
                }
                Problem::StrayFile { path } => match super::tmp::remove_tree(path) {
                    Ok(()) => repairs.push(Repair::RemovedStray { path: path.clone() }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("remove", path)(e)),
                },
                _ => {}
            }
        }
        if !repairs.is_empty() {
            super::sync_parent(&self.blobs_dir().join("x"))?;
        }

        match self.read_index() {
            Ok(mut index) => {
                let mut kept = Vec::new();
                for entry in index.manifests() {
                    match self.incomplete(entry) {
                        None => kept.push(entry.clone()),
                        Some(reason) => repairs.push(Repair::Untagged {
                            tag: entry_name(entry),
                            reason,
                        }),
                    }
                }
                if kept.len() != index.manifests().len() {
                    index.set_manifests(kept);
                    self.write_index(&index)?;
                }
            }
            Err(StoreError::CorruptIndex { path, .. }) => {
                let saved_as = self.root.join("index.json.corrupt");
                fs::rename(&path, &saved_as).map_err(StoreError::io("rename", &path))?;
                let empty = crate::image::build_index(&[], crate::image::MediaTypes::Oci)?;
                self.write_index(&empty)?;
                repairs.push(Repair::ResetIndex { saved_as });
            }
            Err(e) => return Err(e),
        }

        for path in self.sweep_locked()? {
            repairs.push(Repair::RemovedLeftover { path });
        }
        // After the blobs went: records naming them are stale now.
        for (path, _) in self.stale_variants()? {
            match fs::remove_file(&path) {
                Ok(()) => repairs.push(Repair::RemovedRecord { path }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path)(e)),
            }
        }
        Ok(repairs)
    }

    /// Why the image an `index.json` entry names is not complete and readable, if it is not.
    fn incomplete(&self, entry: &Descriptor) -> Option<String> {
        let root = match Root::from_descriptor(entry) {
            Ok(root) => root,
            Err(e) => return Some(error_chain(&e)),
        };
        let walk = self.walk([root]);
        if let Some(digest) = walk.missing.first() {
            return Some(format!("blob {digest} is missing"));
        }
        walk.broken.first().map(|(_, err)| error_chain(err))
    }
}
