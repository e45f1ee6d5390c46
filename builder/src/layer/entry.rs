//! What an archive entry says, decoded without touching the filesystem: its kind from the type
//! flag, its path as components inside the root, and its metadata (header fields, PAX `mtime`
//! and `SCHILY.xattr.*` records).
//!
//! The tar reader already applies PAX `path`, `linkpath`, `size`, `uid` and `gid` and GNU long
//! names. Names are normalised lexically: `.` and empty components are dropped, a leading `/` is
//! clamped to the root (Docker strips it), and a `..` that would climb above the root rejects the
//! entry. What the path then *resolves* to is the applier's business (inside the root).

use std::io::{self, Read};

use rustix::fs::Timespec;

use super::apply::EntryError;
pub(crate) use super::header::Kind;

/// The PAX record prefix of an extended attribute.
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// The metadata an entry carries.
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timespec,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The kind of an entry from its type flag and raw name; `None` for a PAX global header, which
/// changes nothing kiln applies.
pub(crate) fn kind_of(typeflag: u8, raw: &[u8]) -> Result<Option<Kind>, EntryError> {
    Ok(Some(match typeflag {
        b'g' => return Ok(None),
        b'0' | b'7' if raw.ends_with(b"/") => return Err(EntryError::TrailingSlash),
        // Pre-POSIX archives mark directories by a trailing slash on a type-0 entry.
        b'\0' if raw.ends_with(b"/") => Kind::Dir,
        b'0' | b'\0' | b'7' => Kind::Regular,
        b'1' => Kind::Hardlink,
        b'2' => Kind::Symlink,
        b'3' => Kind::Char,
        b'4' => Kind::Block,
        b'5' => Kind::Dir,
        b'6' => Kind::Fifo,
        b'S' => return Err(EntryError::Sparse),
        other => return Err(EntryError::UnsupportedType(char::from(other))),
    }))
}

/// The device numbers of a character or block device entry.
pub(crate) fn device_of(header: &tar::Header) -> Result<(u32, u32), EntryError> {
    let major = header
        .device_major()
        .map_err(header_err("devmajor"))?
        .unwrap_or(0);
    let minor = header
        .device_minor()
        .map_err(header_err("devminor"))?
        .unwrap_or(0);
    Ok((major, minor))
}

fn header_err(field: &'static str) -> impl FnOnce(io::Error) -> EntryError {
    move |source| EntryError::Header { field, source }
}

/// The components of an archive path inside the root, or `None` if `..` climbs above it.
/// Empty and `.` components are dropped and a leading `/` is ignored (clamped to the root).
pub(crate) fn normalize(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut comps: Vec<Vec<u8>> = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                comps.pop()?;
            }
            _ => comps.push(comp.to_vec()),
        }
    }
    Some(comps)
}

/// The metadata of an entry: header fields, PAX `mtime` and `SCHILY.xattr.*` records. The tar
/// reader already applies PAX `path`, `linkpath`, `size`, `uid` and `gid`.
pub(crate) fn meta_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, EntryError> {
    let header = entry.header();
    let mode = header.mode().map_err(header_err("mode"))? & 0o7777;
    let uid = header.uid().map_err(header_err("uid"))?;
    let gid = header.gid().map_err(header_err("gid"))?;
    let mtime = header.mtime().map_err(header_err("mtime"))?;
    let too_big = |field| EntryError::Header {
        field,
        source: io::Error::new(io::ErrorKind::InvalidData, "value out of range"),
    };
    let mut meta = Meta {
        mode,
        uid: u32::try_from(uid).map_err(|_| too_big("uid"))?,
        gid: u32::try_from(gid).map_err(|_| too_big("gid"))?,
        mtime: Timespec {
            tv_sec: i64::try_from(mtime).map_err(|_| too_big("mtime"))?,
            tv_nsec: 0,
        },
        xattrs: Vec::new(),
    };
    if let Some(pax) = entry.pax_extensions().map_err(header_err("pax"))? {
        for record in pax {
            let record = record.map_err(header_err("pax"))?;
            let key = record.key_bytes();
            if key == b"mtime" {
                meta.mtime =
                    parse_pax_time(record.value_bytes()).ok_or_else(|| EntryError::Header {
                        field: "pax mtime",
                        source: io::Error::new(io::ErrorKind::InvalidData, "not a decimal time"),
                    })?;
            } else if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                meta.xattrs
                    .push((name.to_vec(), record.value_bytes().to_vec()));
            }
        }
    }
    Ok(meta)
}

/// A PAX time, `[-]seconds[.fraction]`.
pub(crate) fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    let (sec, nsec) = match (negative, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    };
    Some(Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("a/b", Some(&["a", "b"])),
            ("/a/b/", Some(&["a", "b"])),
            ("./a//./b", Some(&["a", "b"])),
            ("a/../b", Some(&["b"])),
            ("", Some(&[])),
            (".", Some(&[])),
            ("./", Some(&[])),
            ("/", Some(&[])),
            ("..", None),
            ("a/../..", None),
            ("/../a", None),
            ("...", Some(&["..."])),
            (".wh..wh..opq", Some(&[".wh..wh..opq"])),
        ];
        for (input, want) in cases {
            let got = normalize(input.as_bytes());
            let want: Option<Vec<Vec<u8>>> =
                want.map(|w| w.iter().map(|c| c.as_bytes().to_vec()).collect());
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn pax_time_table() {
        let cases: &[(&str, Option<(i64, i64)>)] = &[
            ("1700000000", Some((1_700_000_000, 0))),
            ("1700000000.5", Some((1_700_000_000, 500_000_000))),
            ("1.0000000019", Some((1, 1))),
            ("-1.5", Some((-2, 500_000_000))),
            ("-3", Some((-3, 0))),
            ("", None),
            ("1e9", None),
            ("-", None),
            ("1.2.3", None),
        ];
        for (input, want) in cases {
            let got = parse_pax_time(input.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
            assert_eq!(got, *want, "{input:?}");
        }
    }

    #[test]
    fn kind_table() {
        let cases: &[(u8, &str, Option<Option<Kind>>)] = &[
            (b'0', "f", Some(Some(Kind::Regular))),
            (b'\0', "f", Some(Some(Kind::Regular))),
            (b'\0', "d/", Some(Some(Kind::Dir))),
            (b'7', "f", Some(Some(Kind::Regular))),
            (b'0', "f/", None),
            (b'5', "d/", Some(Some(Kind::Dir))),
            (b'5', "d", Some(Some(Kind::Dir))),
            (b'1', "h", Some(Some(Kind::Hardlink))),
            (b'2', "s", Some(Some(Kind::Symlink))),
            (b'3', "c", Some(Some(Kind::Char))),
            (b'4', "b", Some(Some(Kind::Block))),
            (b'6', "p", Some(Some(Kind::Fifo))),
            (b'g', "", Some(None)),
            (b'S', "s", None),
            (b'V', "v", None),
        ];
        for (flag, name, want) in cases {
            let got = kind_of(*flag, name.as_bytes()).ok();
            assert_eq!(got, *want, "{:?} {name}", char::from(*flag));
        }
    }
}
