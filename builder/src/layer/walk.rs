//! The change-set walk: the entries of a layer in their fixed order, whiteouts included.
//!
//! Order: depth first, a directory before its contents; inside a directory, first the opaque
//! marker (`.wh..wh..opq`, right after the directory's own entry), then the whiteouts, then the
//! other entries, each group sorted by name bytes. (OCI `layer.md`: producers should put
//! whiteouts before their sibling entries.) The walk keeps an explicit stack, one sorted listing
//! per open directory, so neither deep trees nor large layers grow the call stack or hold file
//! contents. Sockets are skipped (they cannot be archived; containerd and BuildKit skip them).
//!
//! For an overlayfs upperdir, a 0/0 character device is a deletion (`.wh.<name>`) and a
//! directory with `trusted.overlay.opaque=y` or `user.overlay.opaque=y` is opaque. A renamed
//! directory (`overlay.redirect`) or a metadata-only copy-up (`overlay.metacopy`) cannot be
//! expressed as a layer and is an error; kiln mounts overlays with those features off.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::{ChangeKind, LayerError};

/// The whiteout name prefix (OCI `layer.md`).
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The opaque-directory marker's name.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The xattr namespaces overlayfs keeps its own metadata in (root and userxattr mounts).
pub(crate) const OVERLAY_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// One thing the layer will contain.
#[derive(Debug)]
pub(crate) enum Item {
    /// A whiteout or opaque marker: an empty file at `tar_path`.
    Whiteout { tar_path: Vec<u8> },
    /// A file, directory, link or device from the change set.
    Entry {
        fs_path: PathBuf,
        tar_path: Vec<u8>,
        meta: Box<Metadata>,
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    },
}

/// A walk over a change set.
pub(crate) struct Walk {
    kind: ChangeKind,
    /// One sorted listing per directory being walked, innermost last.
    stack: Vec<std::vec::IntoIter<Item>>,
}

impl Walk {
    /// Starts a walk of the change set at `root`.
    pub fn new(root: &Path, kind: ChangeKind) -> Result<Self, LayerError> {
        let xattrs = read_xattrs(root).map_err(|source| read_error(root, source))?;
        let opaque = kind == ChangeKind::OverlayUpper && check_overlay(root, &xattrs)?;
        let listing = list_dir(root, b"", kind, opaque)?;
        Ok(Self {
            kind,
            stack: vec![listing.into_iter()],
        })
    }

    /// The next item, or `None` at the end.
    pub fn next_item(&mut self) -> Option<Result<Item, LayerError>> {
        loop {
            let top = self.stack.last_mut()?;
            let Some(item) = top.next() else {
                self.stack.pop();
                continue;
            };
            if let Item::Entry {
                fs_path,
                tar_path,
                meta,
                xattrs,
            } = &item
                && meta.is_dir()
            {
                let listing = self.is_opaque_dir(fs_path, xattrs).and_then(|opaque| {
                    let mut prefix = tar_path.clone();
                    prefix.push(b'/');
                    list_dir(fs_path, &prefix, self.kind, opaque)
                });
                match listing {
                    Ok(listing) => self.stack.push(listing.into_iter()),
                    Err(e) => return Some(Err(e)),
                }
            }
            return Some(Ok(item));
        }
    }

    fn is_opaque_dir(
        &self,
        path: &Path,
        xattrs: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<bool, LayerError> {
        match self.kind {
            ChangeKind::Tree => Ok(false),
            ChangeKind::OverlayUpper => check_overlay(path, xattrs),
        }
    }
}

fn read_error(path: &Path, source: std::io::Error) -> LayerError {
    LayerError::Read {
        path: path.to_owned(),
        source,
    }
}

/// Whether an upperdir entry is an opaque directory, after rejecting the overlay features a
/// layer cannot express (a renamed directory, a metadata-only copy-up).
fn check_overlay(path: &Path, xattrs: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<bool, LayerError> {
    for prefix in OVERLAY_XATTR_PREFIXES {
        for unsupported in [&b"redirect"[..], b"metacopy"] {
            let mut name = prefix.to_vec();
            name.extend_from_slice(unsupported);
            if xattrs.contains_key(&name) {
                return Err(LayerError::UnsupportedOverlay {
                    path: path.to_owned(),
                    xattr: String::from_utf8_lossy(&name).into_owned(),
                });
            }
        }
    }
    Ok(OVERLAY_XATTR_PREFIXES.iter().any(|prefix| {
        let mut name = prefix.to_vec();
        name.extend_from_slice(b"opaque");
        xattrs.get(&name).is_some_and(|v| v == b"y")
    }))
}

/// The sorted items of one directory (see the module documentation for the order).
fn list_dir(
    dir: &Path,
    prefix: &[u8],
    kind: ChangeKind,
    opaque: bool,
) -> Result<Vec<Item>, LayerError> {
    let mut whiteouts = Vec::new();
    let mut entries = Vec::new();
    let read = std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    for child in read {
        let child = child.map_err(|e| read_error(dir, e))?;
        let name = child.file_name();
        let fs_path = child.path();
        let meta = std::fs::symlink_metadata(&fs_path).map_err(|e| read_error(&fs_path, e))?;
        if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
            return Err(LayerError::ReservedName { path: fs_path });
        }
        let file_type = meta.file_type();
        if file_type.is_socket() {
            continue;
        }
        let mut tar_path = prefix.to_vec();
        if kind == ChangeKind::OverlayUpper && file_type.is_char_device() && meta.rdev() == 0 {
            tar_path.extend_from_slice(WHITEOUT_PREFIX);
            tar_path.extend_from_slice(name.as_bytes());
            whiteouts.push(Item::Whiteout { tar_path });
            continue;
        }
        tar_path.extend_from_slice(name.as_bytes());
        let xattrs = read_xattrs(&fs_path).map_err(|e| read_error(&fs_path, e))?;
        if kind == ChangeKind::OverlayUpper && !file_type.is_dir() {
            // A regular file carrying metacopy has its data in a lower layer.
            check_overlay(&fs_path, &xattrs)?;
        }
        entries.push(Item::Entry {
            fs_path,
            tar_path,
            meta: Box::new(meta),
            xattrs,
        });
    }
    whiteouts.sort_by(|a, b| tar_path_of(a).cmp(tar_path_of(b)));
    entries.sort_by(|a, b| tar_path_of(a).cmp(tar_path_of(b)));
    let mut items = Vec::with_capacity(whiteouts.len() + entries.len() + 1);
    if opaque {
        let mut tar_path = prefix.to_vec();
        tar_path.extend_from_slice(OPAQUE_MARKER);
        items.push(Item::Whiteout { tar_path });
    }
    items.extend(whiteouts);
    items.extend(entries);
    Ok(items)
}

fn tar_path_of(item: &Item) -> &[u8] {
    match item {
        Item::Whiteout { tar_path } | Item::Entry { tar_path, .. } => tar_path,
    }
}

/// All extended attributes of `path` itself (not following a symlink). A filesystem without
/// xattr support has none.
pub(crate) fn read_xattrs(path: &Path) -> std::io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let names = loop {
        let size = match rustix::fs::llistxattr_query(path) {
            Ok(size) => size,
            Err(e) if e == Errno::NOTSUP || e == Errno::OPNOTSUPP => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        if size == 0 {
            return Ok(out);
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            // The list grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = OsStr::from_bytes(name);
        let value = loop {
            let size = match rustix::fs::lgetxattr_query(path, name_os) {
                Ok(size) => size,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            };
            let mut buf = vec![0u8; size];
            if size == 0 {
                break Some(buf);
            }
            match rustix::fs::lgetxattr(path, name_os, &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    break Some(buf);
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(value) = value {
            out.insert(name.to_vec(), value);
        }
    }
    Ok(out)
}
