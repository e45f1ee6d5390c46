//! Tar header encoding for layer entries: one ustar header, preceded by a PAX extended header
//! when a value does not fit ustar.
//!
//! Every field is set explicitly so the bytes depend only on the entry: numeric uid/gid, empty
//! user and group names, whole-second mtime, no atime/ctime, device numbers only on devices.
//! PAX records carry long paths and link targets, ids and sizes beyond the octal fields, times
//! before 1970, and extended attributes (`SCHILY.xattr.<name>`); records are sorted by key. When
//! PAX carries a path, the ustar field holds its first 100 bytes for readers that ignore PAX
//! (as Go's `archive/tar` does); numbers too large for octal are also written base-256 in the
//! ustar field so both agree.

use std::collections::BTreeMap;

/// The ustar `name` and `linkname` field width.
const USTAR_NAME_LEN: usize = 100;
/// The largest value the 8-byte octal fields (uid, gid) hold.
const MAX_OCTAL_ID: u64 = 0o7_777_777;
/// The largest value the 12-byte octal fields (size, mtime) hold.
const MAX_OCTAL_BIG: u64 = 0o77_777_777_777;
/// Tar's block size.
pub(crate) const BLOCK: usize = 512;

/// The kind of a tar entry, as kiln writes and reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    fn typeflag(self) -> u8 {
        match self {
            Kind::Regular => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// Everything a layer entry's header records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    /// Relative path without a leading `./` or `/`, and without the trailing `/` of a directory
    /// (added when encoding).
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch (already clamped by the caller).
    pub mtime: i64,
    /// Content size; zero for everything but regular files.
    pub size: u64,
    /// Symlink target or hardlink target path.
    pub link: Vec<u8>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes by name (sorted, so the PAX records are).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl EntryHeader {
    /// A header with zero metadata for `path` of `kind`.
    pub fn new(path: Vec<u8>, kind: Kind) -> Self {
        Self {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: BTreeMap::new(),
        }
    }
}

/// Appends the header blocks for `h` (PAX header and data if needed, then the ustar header) to
/// `out`. The entry's content, if any, follows them.
pub(crate) fn encode(h: &EntryHeader, out: &mut Vec<u8>) {
    let mut name = h.path.clone();
    if h.kind == Kind::Dir {
        name.push(b'/');
    }

    let mut pax: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if name.len() > USTAR_NAME_LEN {
        pax.insert("path".into(), name.clone());
    }
    if h.link.len() > USTAR_NAME_LEN {
        pax.insert("linkpath".into(), h.link.clone());
    }
    if h.uid > MAX_OCTAL_ID {
        pax.insert("uid".into(), h.uid.to_string().into_bytes());
    }
    if h.gid > MAX_OCTAL_ID {
        pax.insert("gid".into(), h.gid.to_string().into_bytes());
    }
    if h.size > MAX_OCTAL_BIG {
        pax.insert("size".into(), h.size.to_string().into_bytes());
    }
    if h.mtime < 0 || h.mtime as u64 > MAX_OCTAL_BIG {
        pax.insert("mtime".into(), h.mtime.to_string().into_bytes());
    }
    for (key, value) in &h.xattrs {
        pax.insert(format!("SCHILY.xattr.{key}"), value.clone());
    }

    if !pax.is_empty() {
        let mut data = Vec::new();
        for (key, value) in &pax {
            pax_record(key.as_bytes(), value, &mut data);
        }
        let mut x = tar::Header::new_ustar();
        set_bytes(&mut x.as_old_mut().name, &pax_header_name(&name));
        x.set_mode(0);
        x.set_uid(0);
        x.set_gid(0);
        x.set_mtime(0);
        x.set_size(data.len() as u64);
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_cksum();
        out.extend_from_slice(x.as_bytes());
        out.extend_from_slice(&data);
        pad(out);
    }

    let mut u = tar::Header::new_ustar();
    set_bytes(&mut u.as_old_mut().name, &name);
    u.set_mode(h.mode & 0o7777);
    u.set_uid(h.uid);
    u.set_gid(h.gid);
    u.set_size(h.size);
    u.set_mtime(h.mtime.max(0) as u64);
    u.as_old_mut().linkflag = [h.kind.typeflag()];
    set_bytes(&mut u.as_old_mut().linkname, &h.link);
    if matches!(h.kind, Kind::Char | Kind::Block)
        && let Some(ustar) = u.as_ustar_mut()
    {
        ustar.set_device_major(h.dev_major);
        ustar.set_device_minor(h.dev_minor);
    }
    u.set_cksum();
    out.extend_from_slice(u.as_bytes());
}

/// Zero bytes that bring `out` to a multiple of the block size.
pub(crate) fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

/// Copies as much of `value` as fits into `field`; the rest of the field stays zero.
fn set_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// One PAX record: `"<len> <key>=<value>\n"` where `<len>` counts the whole record, itself
/// included.
fn pax_record(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let rest = 3 + key.len() + value.len(); // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The name of a PAX extended header, Go's convention: `<dir>/PaxHeaders.0/<base>`, cut to
/// the ustar field width. Readers ignore it; it only has to be deterministic.
fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut out = dir.to_vec();
    out.extend_from_slice(b"PaxHeaders.0/");
    out.extend_from_slice(base);
    out.truncate(USTAR_NAME_LEN);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// An entry as tar-rs reads it back: path, link, uid, size, mode, PAX records.
    type ReadBack = (
        Vec<u8>,
        Option<Vec<u8>>,
        u64,
        u64,
        u32,
        Vec<(String, Vec<u8>)>,
    );

    fn read_back(h: &EntryHeader) -> ReadBack {
        let mut bytes = Vec::new();
        encode(h, &mut bytes);
        assert_eq!(bytes.len() % BLOCK, 0);
        bytes.resize(bytes.len() + h.size as usize, b'x');
        pad(&mut bytes);
        bytes.extend_from_slice(&[0; 1024]);
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut entries = archive.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        let path = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let uid = e.header().uid().unwrap();
        let size = e.size();
        let mode = e.header().mode().unwrap();
        let pax = e
            .pax_extensions()
            .unwrap()
            .map(|exts| {
                exts.map(|x| {
                    let x = x.unwrap();
                    (x.key().unwrap().to_owned(), x.value_bytes().to_vec())
                })
                .collect()
            })
            .unwrap_or_default();
        let mut content = Vec::new();
        e.read_to_end(&mut content).unwrap();
        assert_eq!(content.len() as u64, size);
        drop(e);
        assert!(entries.next().is_none());
        (path, link, uid, size, mode, pax)
    }

    #[test]
    fn encode_round_trips_through_tar_rs() {
        let long: Vec<u8> = "d/".repeat(60).into_bytes();
        let mut long_file = long.clone();
        long_file.extend_from_slice(b"file");
        let cases: Vec<(&str, EntryHeader, &[u8], Vec<&str>)> = vec![
            (
                "short file",
                {
                    let mut h = EntryHeader::new(b"a/b".to_vec(), Kind::Regular);
                    h.size = 3;
                    h.mode = 0o4755;
                    h
                },
                b"a/b",
                vec![],
            ),
            (
                "dir gets slash",
                EntryHeader::new(b"a".to_vec(), Kind::Dir),
                b"a/",
                vec![],
            ),
            (
                "long path",
                EntryHeader::new(long_file.clone(), Kind::Regular),
                &long_file,
                vec!["path"],
            ),
            (
                "long link",
                {
                    let mut h = EntryHeader::new(b"l".to_vec(), Kind::Symlink);
                    h.link = long.clone();
                    h
                },
                b"l",
                vec!["linkpath"],
            ),
            (
                "big uid",
                {
                    let mut h = EntryHeader::new(b"u".to_vec(), Kind::Regular);
                    h.uid = 3_000_000;
                    h
                },
                b"u",
                vec!["uid"],
            ),
            (
                "old mtime",
                {
                    let mut h = EntryHeader::new(b"t".to_vec(), Kind::Regular);
                    h.mtime = -5;
                    h
                },
                b"t",
                vec!["mtime"],
            ),
            (
                "xattrs sorted",
                {
                    let mut h = EntryHeader::new(b"x".to_vec(), Kind::Regular);
                    h.xattrs.insert("user.b".into(), b"2".to_vec());
                    h.xattrs
                        .insert("security.capability".into(), vec![1, 0, 0, 2]);
                    h
                },
                b"x",
                vec!["SCHILY.xattr.security.capability", "SCHILY.xattr.user.b"],
            ),
        ];
        for (name, h, want_path, want_pax) in cases {
            let (path, link, uid, size, mode, pax) = read_back(&h);
            let dir_slash = usize::from(h.kind == Kind::Dir);
            assert_eq!(path, want_path, "{name}");
            assert_eq!(path.len(), h.path.len() + dir_slash, "{name}");
            assert_eq!(link.unwrap_or_default(), h.link, "{name}");
            assert_eq!(uid, h.uid, "{name}");
            assert_eq!(size, h.size, "{name}");
            assert_eq!(mode, h.mode, "{name}");
            let keys: Vec<&str> = pax.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, want_pax, "{name}");
        }
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"", 0, "5 k=\n"),
            (b"v", 5, "11 k=vvvvv\n"),
            (b"v", 93, "99 k="),
            (b"v", 94, "101 k="),
        ];
        for (fill, n, prefix) in cases {
            let value = fill.repeat(*n);
            let mut out = Vec::new();
            pax_record(b"k", &value, &mut out);
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(text.starts_with(prefix), "{text:?}");
            let declared: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(declared, out.len(), "{text:?}");
        }
    }

    #[test]
    fn pax_header_names() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"file", b"PaxHeaders.0/file"),
            (b"a/b/file", b"a/b/PaxHeaders.0/file"),
            (b"a/dir/", b"a/PaxHeaders.0/dir"),
        ];
        for (input, want) in cases {
            assert_eq!(pax_header_name(input), *want);
        }
        assert_eq!(pax_header_name(&[b'x'; 300]).len(), USTAR_NAME_LEN);
    }

    #[test]
    fn header_fields_are_explicit() {
        let mut h = EntryHeader::new(b"dev/null".to_vec(), Kind::Char);
        h.mode = 0o666;
        h.dev_major = 1;
        h.dev_minor = 3;
        h.mtime = 1_700_000_000;
        let mut bytes = Vec::new();
        encode(&h, &mut bytes);
        assert_eq!(bytes.len(), BLOCK);
        let parsed = tar::Header::from_byte_slice(&bytes);
        assert_eq!(parsed.entry_type(), tar::EntryType::Char);
        assert_eq!(parsed.device_major().unwrap(), Some(1));
        assert_eq!(parsed.device_minor().unwrap(), Some(3));
        assert_eq!(parsed.mtime().unwrap(), 1_700_000_000);
        assert_eq!(parsed.username_bytes(), Some(&b""[..]));
        assert_eq!(parsed.groupname_bytes(), Some(&b""[..]));
        let ustar = parsed.as_ustar().unwrap();
        assert_eq!(&ustar.magic, b"ustar\0");
        assert_eq!(&ustar.version, b"00");
    }
}
