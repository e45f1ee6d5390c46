//! Content checksums of the build context, for the cache keys of COPY, ADD and bind mounts.
//!
//! The checksum of a context path covers every visible entry at or below it (after
//! `.dockerignore`): its relative path, its type, its permission bits, and its content (the
//! sha256 of a file, the target of a symlink) — never its mtime, owner or inode, which a fresh
//! checkout changes without changing what COPY produces (context files land as 0:0).
//!
//! Hashing a large context on every build would cost as much as copying it, so file digests are
//! remembered in `cache/contexts/<sha256 of the context's path>.json`, keyed by what `lstat`
//! says (device, inode, size, mtime and ctime, to the nanosecond). A file changed within the
//! same clock tick as its `lstat` could keep those values, so a digest is only remembered when
//! the file's ctime is well before the moment it was looked at; such fresh files are hashed
//! again next time.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_registry::{Digest, DigestWriter};
use serde::{Deserialize, Serialize};

use super::explain::Traces;
use crate::context::Visible;
use crate::ops::sources::{clamp, literal_prefix};
use crate::store::Store;

/// How long before the `lstat` a file's ctime must be for its digest to be remembered.
const SETTLED_NANOS: i128 = 2_000_000_000;

/// What `lstat` said about a file whose digest is remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i128,
    ctime: i128,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        let nanos = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime: nanos(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remembered {
    stamp: Stamp,
    digest: Digest,
}

/// The checksums of one build's context.
#[derive(Debug)]
pub(crate) struct ContextSums {
    root: PathBuf,
    /// What `.dockerignore` lets through.
    visible: Visible,
    record: PathBuf,
    store: Store,
    /// Where listings are kept for explanations.
    traces: Traces,
    /// File digests by relative path: loaded from the record, refreshed as files are hashed.
    files: Mutex<BTreeMap<String, Remembered>>,
    /// Digests of files too fresh to remember, for this build only: a tree's listing is
    /// written in a second walk, which must not hash them again.
    fresh: Mutex<BTreeMap<String, Remembered>>,
    /// Whether `files` changed since it was loaded.
    dirty: AtomicBool,
}

impl ContextSums {
    /// The checksums of the context at `root`, remembering digests in `store`'s cache.
    pub fn new(store: &Store, root: &Path, visible: Visible) -> Self {
        let absolute = fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
        let name = Digest::of(absolute.as_os_str().as_encoded_bytes());
        let record = store
            .cache_dir()
            .join("contexts")
            .join(format!("{}.json", name.hex()));
        let files = fs::read(&record)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Self {
            root: root.to_owned(),
            visible,
            record,
            store: store.clone(),
            traces: Traces::open(store),
            files: Mutex::new(files),
            fresh: Mutex::default(),
            dirty: AtomicBool::new(false),
        }
    }

    /// What `.dockerignore` lets through.
    pub fn visible(&self) -> &Visible {
        &self.visible
    }

    /// The checksum of what a source pattern can read: everything below its part before the
    /// first wildcard, or the whole context when a symlink is on the way there (the source
    /// then follows it to wherever it points).
    pub fn of_source(&self, pattern: &str) -> io::Result<Digest> {
        let mut prefix = String::new();
        for component in literal_prefix(&clamp(pattern)) {
            let next = if prefix.is_empty() {
                component
            } else {
                format!("{prefix}/{component}")
            };
            match fs::symlink_metadata(self.root.join(&next)) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    prefix.clear();
                    break;
                }
                Ok(_) => prefix = next,
                // A missing source is the copy's error to report; its checksum is of nothing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    prefix = next;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.of_tree(&prefix)
    }

    /// The checksum of the visible entries at or below `prefix` (`""`: the whole context):
    /// the sha256 of their listing, which is kept for explaining a later miss (written again
    /// only when this checksum is new).
    fn of_tree(&self, prefix: &str) -> io::Result<Digest> {
        let mut out = DigestWriter::new(io::sink());
        self.list(prefix, &mut out)?;
        let sum = out.finish().1;
        // Only an explanation's detail: a build does not fail for want of it.
        let _ = self.traces.keep_tree(&sum, |out| self.list(prefix, out));
        Ok(sum)
    }

    /// Writes the listing of the visible entries at or below `prefix`: one line per entry,
    /// `path\0type\0permissions\0content`, sorted by path.
    fn list(&self, prefix: &str, out: &mut dyn Write) -> io::Result<()> {
        let below = format!("{prefix}/");
        let entries = self
            .visible
            .paths()
            .range(prefix.to_owned()..)
            // `web-x` sorts between `web` and `web/…`: stop only past every `web…`.
            .take_while(|p| p.starts_with(prefix))
            .filter(|p| prefix.is_empty() || *p == prefix || p.starts_with(&below));
        for rel in entries {
            let path = self.root.join(rel);
            let meta = fs::symlink_metadata(&path)?;
            let kind = meta.file_type();
            let content = if kind.is_file() {
                self.file_digest(rel, &path, &meta)?.to_string()
            } else if kind.is_symlink() {
                fs::read_link(&path)?.to_string_lossy().into_owned()
            } else {
                String::new()
            };
            let type_bits = meta.mode() & 0o170000;
            let perm = meta.mode() & 0o7777;
            writeln!(out, "{rel}\0{type_bits:o}\0{perm:o}\0{content}")?;
        }
        Ok(())
    }

    fn file_digest(&self, rel: &str, path: &Path, meta: &fs::Metadata) -> io::Result<Digest> {
        let looked = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let stamp = Stamp::of(meta);
        for known in [&self.files, &self.fresh] {
            if let Ok(files) = known.lock()
                && let Some(known) = files.get(rel)
                && known.stamp == stamp
            {
                return Ok(known.digest.clone());
            }
        }
        let mut writer = DigestWriter::new(io::sink());
        io::copy(&mut File::open(path)?, &mut writer)?;
        let digest = writer.finish().1;
        let settled = stamp.ctime + SETTLED_NANOS < looked;
        let remembered = Remembered {
            stamp,
            digest: digest.clone(),
        };
        if settled && let Ok(mut files) = self.files.lock() {
            files.insert(rel.to_owned(), remembered);
            self.dirty.store(true, Ordering::Relaxed);
        } else if let Ok(mut fresh) = self.fresh.lock() {
            fresh.insert(rel.to_owned(), remembered);
        }
        Ok(digest)
    }

    /// Writes the remembered digests back (atomically), keeping only visible paths.
    pub fn save(&self) -> Result<(), crate::store::StoreError> {
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Ok(files) = self.files.lock() else {
            return Ok(());
        };
        let kept: BTreeMap<&String, &Remembered> = files
            .iter()
            .filter(|(rel, _)| self.visible.contains(rel))
            .collect();
        let io_err = |op| crate::store::StoreError::io(op, &self.record);
        if let Some(dir) = self.record.parent() {
            fs::create_dir_all(dir).map_err(io_err("create the directory of"))?;
        }
        let bytes = serde_json::to_vec(&kept).map_err(|e| io_err("encode")(e.into()))?;
        self.store.replace_file(&self.record, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn sums(store: &Store, ctx: &Path) -> ContextSums {
        ContextSums::new(store, ctx, Visible::walk(ctx, &[]).unwrap())
    }

    #[test]
    fn a_checksum_follows_content_and_mode_but_not_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let ctx = dir.path().join("ctx");
        fs::create_dir_all(ctx.join("web/css")).unwrap();
        fs::write(ctx.join("web/index.html"), "hi").unwrap();
        fs::write(ctx.join("web/css/site.css"), "body{}").unwrap();
        fs::write(ctx.join("web-other"), "x").unwrap();
        fs::write(ctx.join("other"), "x").unwrap();
        let first = sums(&store, &ctx);
        let web = first.of_source("web/").unwrap();
        let all = first.of_source("*.txt").unwrap();
        first.save().unwrap();

        // An unrelated file, and the mtime of a read one, change nothing below web/.
        fs::write(ctx.join("other"), "y").unwrap();
        fs::write(ctx.join("web-other"), "y").unwrap();
        let f = File::options()
            .write(true)
            .open(ctx.join("web/index.html"))
            .unwrap();
        f.set_modified(UNIX_EPOCH).unwrap();
        let again = sums(&store, &ctx);
        assert_eq!(again.of_source("/web").unwrap(), web);
        assert_eq!(again.of_source("./web/../web/").unwrap(), web);
        assert_ne!(again.of_source("*.txt").unwrap(), all);

        fs::set_permissions(ctx.join("web/css"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(sums(&store, &ctx).of_source("web").unwrap(), web);
        fs::set_permissions(ctx.join("web/css"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(ctx.join("web/css/site.css"), "body{ }").unwrap();
        assert_ne!(sums(&store, &ctx).of_source("web").unwrap(), web);
    }

    #[test]
    fn a_symlink_on_the_way_widens_the_checksum_to_the_whole_context() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let ctx = dir.path().join("ctx");
        fs::create_dir_all(ctx.join("real")).unwrap();
        fs::write(ctx.join("real/f"), "1").unwrap();
        symlink("real", ctx.join("link")).unwrap();
        let before = sums(&store, &ctx).of_source("link/f").unwrap();
        fs::write(ctx.join("real/f"), "2").unwrap();
        assert_ne!(sums(&store, &ctx).of_source("link/f").unwrap(), before);
    }

    #[test]
    fn remembered_digests_are_used_only_while_the_stamp_matches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let ctx = dir.path().join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        fs::write(ctx.join("old"), "content").unwrap();
        fs::write(ctx.join("fresh"), "content").unwrap();
        let first = sums(&store, &ctx);
        let old_stamp = {
            // Pretend `old` was hashed long ago: its ctime is then well in the past.
            let stamp = Stamp::of(&fs::symlink_metadata(ctx.join("old")).unwrap());
            let mut files = first.files.lock().unwrap();
            let digest = Digest::of(b"remembered");
            files.insert(
                "old".to_owned(),
                Remembered {
                    stamp: stamp.clone(),
                    digest,
                },
            );
            first.dirty.store(true, Ordering::Relaxed);
            stamp
        };
        first.of_source("fresh").unwrap();
        first.save().unwrap();
        let loaded = sums(&store, &ctx);
        let files = loaded.files.lock().unwrap().clone();
        // Just written: too fresh to remember.
        assert!(!files.contains_key("fresh"));
        assert_eq!(files["old"].stamp, old_stamp);
        assert_eq!(
            loaded
                .file_digest(
                    "old",
                    &ctx.join("old"),
                    &fs::symlink_metadata(ctx.join("old")).unwrap()
                )
                .unwrap(),
            Digest::of(b"remembered")
        );
        // Any change to the file changes its stamp, and the digest is computed again.
        fs::write(ctx.join("old"), "changed").unwrap();
        let meta = fs::symlink_metadata(ctx.join("old")).unwrap();
        assert_eq!(
            loaded.file_digest("old", &ctx.join("old"), &meta).unwrap(),
            Digest::of(b"changed")
        );
    }
}
