//! The layer applier (`kiln_builder::layer::apply_blob`) on hostile archives, as root: the
//! archive is applied into `base/root/` while `base/` also holds a sentinel file and an
//! `outside/` directory, and whatever the archive does (`..` names, absolute names and link
//! targets naming `base/` itself, symlinks and hard links out of the root, writes through links,
//! whiteouts, PAX and GNU long names, xattrs, devices, fifos, garbage headers) the apply either
//! succeeds or fails with a typed error, `base/root` is still a directory, and nothing else in
//! `base/` changed: same entries, contents, modes, owners, link counts, times and xattrs.
//!
//! Input: a structured archive (`arbitrary`): entries whose names and link targets are built
//! from components that matter here (`..`, `.wh.`, the absolute path of `base/` …), each
//! written as ustar, PAX or GNU long-name headers, then raw bytes before the end marker.

#![no_main]

use std::collections::BTreeMap;
use std::io::BufReader;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use kiln_builder::layer::{ApplyMode, ApplyOptions, apply_blob};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    overlay_lower: bool,
    owner: Option<(u8, u8)>,
    entries: Vec<Entry>,
    /// Raw bytes after the entries and before the end marker.
    tail: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    name: Name,
    kind: Kind,
    mode: u16,
    uid: u8,
    gid: u8,
    mtime: u32,
    form: Form,
    /// PAX `SCHILY.xattr.*` records (written only in the PAX form).
    xattrs: Vec<(Xattr, Vec<u8>)>,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Name),
    Hardlink(Name),
    Fifo,
    Char(Device),
    Block(Device),
    /// Any type flag, with data.
    Other(u8, Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Device {
    Whiteout,
    Null,
    Zero,
}

#[derive(Arbitrary, Debug)]
enum Form {
    Ustar,
    Pax,
    GnuLong,
}

#[derive(Arbitrary, Debug)]
enum Xattr {
    User,
    OverlayOpaque,
    OverlayRedirect,
    Capability,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Name {
    absolute: bool,
    trailing_slash: bool,
    components: Vec<Component>,
}

#[derive(Arbitrary, Debug)]
enum Component {
    A,
    B,
    Etc,
    Dot,
    DotDot,
    Empty,
    Whiteout(Box<Component>),
    Opaque,
    /// The absolute path of `base/` (a component with slashes in it).
    Base,
    Outside,
    Sentinel,
    Bytes(Vec<u8>),
}

fuzz_target!(|input: Input| {
    let host = host();
    let root = host.join("root");
    if root.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(&root).expect("clearing the root");
    }
    std::fs::create_dir(&root).unwrap();
    let before = snapshot(host);

    let tar = write_tar(&input, host);
    let mut options = ApplyOptions::new(if input.overlay_lower {
        ApplyMode::OverlayLower
    } else {
        ApplyMode::Merge
    });
    options.owner = input.owner.map(|(u, g)| (u.into(), g.into()));
    let _ = apply_blob(&root, BufReader::new(tar.as_slice()), &options);

    assert!(
        root.symlink_metadata().unwrap().is_dir(),
        "the root was replaced"
    );
    let after = snapshot(host);
    if before != after {
        for (path, was) in &before {
            match after.get(path) {
                Some(is) if is != was => eprintln!("changed: {path:?}\n  {was:?}\n  {is:?}"),
                None => eprintln!("removed: {path:?}"),
                _ => {}
            }
        }
        for path in after.keys().filter(|p| !before.contains_key(*p)) {
            eprintln!("created: {path:?}");
        }
        panic!("the archive changed something outside the root");
    }
});

/// `base/` with `sentinel`, `outside/inner` and `outside/up -> ../sentinel`, made once per
/// process; `base/root/` is made fresh for every input.
fn host() -> &'static Path {
    static HOST: OnceLock<PathBuf> = OnceLock::new();
    HOST.get_or_init(|| {
        let base = tempfile::Builder::new()
            .prefix("kiln-fuzz-apply.")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::write(base.join("sentinel"), b"host sentinel").unwrap();
        std::fs::create_dir(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/inner"), b"inner").unwrap();
        std::fs::set_permissions(base.join("outside/inner"), PermissionsExt::from_mode(0o600))
            .unwrap();
        std::os::unix::fs::symlink("../sentinel", base.join("outside/up")).unwrap();
        base
    })
}

/// Everything under `base/` but `root/`, with what would show a change.
fn snapshot(base: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![base.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p != &base.join("root"))
                .collect();
            children.sort();
            let names = format!("{children:?}");
            stack.extend(children);
            names
        } else if meta.is_symlink() {
            format!("{:?}", std::fs::read_link(&path).unwrap())
        } else {
            format!("{:?}", std::fs::read(&path).unwrap())
        };
        let xattrs = xattrs(&path);
        out.insert(
            path,
            format!(
                "mode {:o} owner {}:{} nlink {} ino {} mtime {}.{} ctime {}.{} xattrs {xattrs:?} \
                 content {content}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.nlink(),
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec(),
            ),
        );
    }
    out
}

fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(len) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return Vec::new();
    };
    names[..len]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let mut value = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap_or(0);
            value.truncate(len);
            (name.to_vec(), value)
        })
        .collect()
}

fn write_tar(input: &Input, base: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in &input.entries {
        write_entry(&mut out, entry, base);
    }
    out.extend_from_slice(&input.tail);
    pad(&mut out);
    out.extend_from_slice(&[0; 1024]);
    out
}

fn write_entry(out: &mut Vec<u8>, entry: &Entry, base: &Path) {
    let name = entry.name.render(base);
    let (typeflag, link, data): (u8, Vec<u8>, &[u8]) = match &entry.kind {
        Kind::File(data) => (b'0', Vec::new(), data),
        Kind::Dir => (b'5', Vec::new(), &[]),
        Kind::Symlink(target) => (b'2', target.render(base), &[]),
        Kind::Hardlink(target) => (b'1', target.render(base), &[]),
        Kind::Fifo => (b'6', Vec::new(), &[]),
        Kind::Char(_) => (b'3', Vec::new(), &[]),
        Kind::Block(_) => (b'4', Vec::new(), &[]),
        Kind::Other(flag, data) => (*flag, Vec::new(), data),
    };
    let (major, minor) = match &entry.kind {
        Kind::Char(d) | Kind::Block(d) => match d {
            Device::Whiteout => (0, 0),
            Device::Null => (1, 3),
            Device::Zero => (1, 5),
        },
        _ => (0, 0),
    };
    let fits = name.len() <= 100 && link.len() <= 100;
    let (short_name, short_link): (&[u8], &[u8]) = match (&entry.form, fits) {
        (Form::Ustar, true) => (&name, &link),
        (Form::Pax, _) | (Form::Ustar, false) => {
            let mut records = Vec::new();
            record(&mut records, b"path", &name);
            if !link.is_empty() {
                record(&mut records, b"linkpath", &link);
            }
            for (xattr, value) in &entry.xattrs {
                let key = match xattr {
                    Xattr::User => "user.fuzz".to_owned(),
                    Xattr::OverlayOpaque => "trusted.overlay.opaque".to_owned(),
                    Xattr::OverlayRedirect => "trusted.overlay.redirect".to_owned(),
                    Xattr::Capability => "security.capability".to_owned(),
                    Xattr::Other(name) => name.clone(),
                };
                record(
                    &mut records,
                    format!("SCHILY.xattr.{key}").as_bytes(),
                    value,
                );
            }
            header(
                out,
                b"PaxHeaders.0/x",
                b'x',
                b"",
                &records,
                0,
                0,
                0,
                0o644,
                (0, 0),
            );
            (b"pax-name", b"pax-link")
        }
        (Form::GnuLong, _) => {
            let mut long = name.clone();
            long.push(0);
            header(
                out,
                b"././@LongLink",
                b'L',
                b"",
                &long,
                0,
                0,
                0,
                0o644,
                (0, 0),
            );
            if !link.is_empty() {
                let mut long = link.clone();
                long.push(0);
                header(
                    out,
                    b"././@LongLink",
                    b'K',
                    b"",
                    &long,
                    0,
                    0,
                    0,
                    0o644,
                    (0, 0),
                );
            }
            (b"gnu-name", b"gnu-link")
        }
    };
    let short_link = if link.is_empty() { &[][..] } else { short_link };
    header(
        out,
        short_name,
        typeflag,
        short_link,
        data,
        entry.uid.into(),
        entry.gid.into(),
        entry.mtime.into(),
        u32::from(entry.mode) & 0o7777,
        (major, minor),
    );
}

/// One header block (raw name bytes, truncated to the field) and its data, padded.
#[allow(clippy::too_many_arguments)]
fn header(
    out: &mut Vec<u8>,
    name: &[u8],
    typeflag: u8,
    link: &[u8],
    data: &[u8],
    uid: u64,
    gid: u64,
    mtime: u64,
    mode: u32,
    (major, minor): (u32, u32),
) {
    let mut h = tar::Header::new_ustar();
    put(&mut h.as_old_mut().name, name);
    put(&mut h.as_old_mut().linkname, link);
    h.as_old_mut().linkflag = [typeflag];
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(data.len() as u64);
    let _ = h.set_device_major(major);
    let _ = h.set_device_minor(minor);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    pad(out);
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// One PAX record: `<len> <key>=<value>\n`, where `len` counts itself.
fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 3 + key.len() + value.len();
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} ").as_bytes());
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

impl Name {
    fn render(&self, base: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        if self.absolute {
            out.push(b'/');
        }
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            c.render(&mut out, base);
        }
        if self.trailing_slash {
            out.push(b'/');
        }
        out
    }
}

impl Component {
    fn render(&self, out: &mut Vec<u8>, base: &Path) {
        match self {
            Component::A => out.push(b'a'),
            Component::B => out.push(b'b'),
            Component::Etc => out.extend_from_slice(b"etc"),
            Component::Dot => out.push(b'.'),
            Component::DotDot => out.extend_from_slice(b".."),
            Component::Empty => {}
            Component::Whiteout(c) => {
                out.extend_from_slice(b".wh.");
                c.render(out, base);
            }
            Component::Opaque => out.extend_from_slice(b".wh..wh..opq"),
            Component::Base => out.extend_from_slice(base.as_os_str().as_encoded_bytes()),
            Component::Outside => out.extend_from_slice(b"outside"),
            Component::Sentinel => out.extend_from_slice(b"sentinel"),
            Component::Bytes(b) => out.extend_from_slice(b),
        }
    }
}
