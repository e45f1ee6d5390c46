//! Test helpers: hand-made (and deliberately malformed) tar archives, a host-sentinel fixture
//! and the root-privilege gate.
//!
//! `tar::Header::set_path` refuses `..` and normalises names, so attack archives are written by
//! copying name bytes straight into the header fields.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whether the tests run as root.
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `true` when a root-only test may run; otherwise says why it skips. Under `CI=true` a
/// missing privilege fails instead: nothing is skipped silently there.
pub(crate) fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    crate::testutil::skip(&format!("{test} needs root"));
    false
}

/// A tar archive written entry by entry.
#[derive(Default)]
pub(crate) struct Tar {
    bytes: Vec<u8>,
}

impl Tar {
    pub fn new() -> Self {
        Self::default()
    }

    /// An entry with the raw `name` and `link` bytes and a fixed mtime; `edit` may change the
    /// header before the checksum is computed.
    pub fn raw(
        &mut self,
        name: &[u8],
        typeflag: u8,
        link: &[u8],
        data: &[u8],
        edit: impl FnOnce(&mut tar::Header),
    ) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        put(&mut h.as_old_mut().name, name);
        put(&mut h.as_old_mut().linkname, link);
        h.as_old_mut().linkflag = [typeflag];
        h.set_mode(if typeflag == b'5' { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        h.set_size(data.len() as u64);
        edit(&mut h);
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        super::header::pad(&mut self.bytes);
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name.as_bytes(), b'0', b"", data, |_| {})
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name.as_bytes(), b'5', b"", b"", |_| {})
    }

    pub fn dir_mode(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(name.as_bytes(), b'5', b"", b"", |h| h.set_mode(mode))
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name.as_bytes(), b'2', target.as_bytes(), b"", |h| {
            h.set_mode(0o777)
        })
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name.as_bytes(), b'1', target.as_bytes(), b"", |_| {})
    }

    /// A PAX extended header for the next entry, with records in the order given.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let rest = 3 + key.len() + value.len();
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(b"PaxHeaders.0/x", b'x', b"", &data, |_| {})
    }

    /// Raw bytes appended as they are.
    pub fn bytes(&mut self, raw: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(raw);
        self
    }

    /// The archive with its end marker.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.extend_from_slice(&[0; 1024]);
        out
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    assert!(value.len() <= field.len(), "name too long for a raw header");
    field[..value.len()].copy_from_slice(value);
}

/// A destination root next to a "host" directory of sentinels that no archive may touch.
pub(crate) struct Host {
    _base: tempfile::TempDir,
    pub root: PathBuf,
    pub host: PathBuf,
}

/// What a host file looks like, to prove it unchanged.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    kind: &'static str,
    mode: u32,
    uid: u32,
    nlink: u64,
    content: Vec<u8>,
}

impl Host {
    /// `root/` (empty) and `host/` with `sentinel` (0644), `perm0400` (0400) and `hostdir/`
    /// (0755, holding `inner`).
    pub fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let host = base.path().join("host");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("sentinel"), b"host sentinel").unwrap();
        std::fs::write(host.join("perm0400"), b"secret").unwrap();
        std::fs::set_permissions(host.join("perm0400"), PermissionsExt::from_mode(0o400)).unwrap();
        std::fs::create_dir(host.join("hostdir")).unwrap();
        std::fs::set_permissions(host.join("hostdir"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(host.join("hostdir/inner"), b"inner").unwrap();
        Self {
            _base: base,
            root,
            host,
        }
    }

    /// The host directory's absolute path as a string (for link targets and names).
    pub fn host_str(&self) -> String {
        self.host.to_str().unwrap().to_owned()
    }

    /// Where an absolute host path lands when clamped into the root.
    pub fn clamped(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn snapshot(&self) -> BTreeMap<PathBuf, Snapshot> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.host.clone()];
        while let Some(dir) = stack.pop() {
            let meta = std::fs::symlink_metadata(&dir).unwrap();
            out.insert(dir.clone(), describe(&dir, &meta));
            for child in std::fs::read_dir(&dir).unwrap() {
                let path = child.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path);
                } else {
                    out.insert(path.clone(), describe(&path, &meta));
                }
            }
        }
        out
    }

    /// Runs `f` and asserts that nothing under `host/` changed.
    pub fn untouched<T>(&self, what: &str, f: impl FnOnce() -> T) -> T {
        let before = self.snapshot();
        let result = f();
        assert_eq!(before, self.snapshot(), "{what}: host sentinels changed");
        result
    }
}

fn describe(path: &Path, meta: &std::fs::Metadata) -> Snapshot {
    let kind = if meta.is_dir() {
        "dir"
    } else if meta.file_type().is_symlink() {
        "symlink"
    } else {
        "file"
    };
    Snapshot {
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        nlink: meta.nlink(),
        content: if meta.is_file() {
            std::fs::read(path).unwrap()
        } else {
            Vec::new()
        },
    }
}

/// GNU `tar -tf` of an uncompressed archive: a reader kiln did not write, to compare listings
/// with. `None` (after saying so) when `tar` is not installed, which CI does not allow.
pub(crate) fn gnu_tar_list(tar: &[u8]) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.tar");
    std::fs::write(&path, tar).unwrap();
    let Ok(out) = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&path)
        .output()
    else {
        crate::testutil::skip("the GNU tar comparison needs a tar binary");
        return None;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}
