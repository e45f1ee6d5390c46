//! A small tar reader for the differential suite, independent of kiln's own tar code so the
//! comparison does not share kiln's blind spots: ustar and GNU headers, GNU long names and
//! link names (`L`, `K`), PAX extended headers (`x`; global `g` ones are skipped), octal and
//! base-256 numbers. It reads what `docker save`-style archives and their layers hold.

/// One archive member.
#[derive(Debug, Clone)]
pub struct Member {
    /// The path as written (no normalisation).
    pub path: String,
    /// The typeflag: `b'0'` file, `b'1'` hard link, `b'2'` symlink, `b'3'` char, `b'4'`
    /// block, `b'5'` directory, `b'6'` FIFO.
    pub kind: u8,
    /// Mode bits, setuid/setgid/sticky included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A link's target (symlink or hard link).
    pub link: String,
    /// A regular file's bytes.
    pub data: Vec<u8>,
}

/// A parsed number field: octal text, or base-256 when the high bit of the first byte is set.
fn number(field: &[u8]) -> u64 {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            n = (n << 8) | u64::from(*b);
        }
        return n;
    }
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        0
    } else {
        u64::from_str_radix(text, 8).unwrap_or_else(|_| panic!("bad tar number {text:?}"))
    }
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// PAX records: `<len> <key>=<value>\n`, repeated.
fn pax(mut data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').expect("pax length");
        let len: usize = std::str::from_utf8(&data[..space])
            .unwrap()
            .parse()
            .unwrap();
        let record = &data[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').expect("pax key");
        out.push((
            String::from_utf8_lossy(&record[..eq]).into_owned(),
            String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
        ));
        data = &data[len..];
    }
    out
}

/// Every member of an uncompressed tar archive, in order.
pub fn members(archive: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut at = 0;
    let (mut long_name, mut long_link) = (None::<String>, None::<String>);
    let mut overrides: Vec<(String, String)> = Vec::new();
    while at + 512 <= archive.len() {
        let header = &archive[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = number(&header[124..136]) as usize;
        let data = &archive[at + 512..at + 512 + size];
        at += 512 + size.div_ceil(512) * 512;
        let kind = header[156];
        match kind {
            b'L' => {
                long_name = Some(text(data));
                continue;
            }
            b'K' => {
                long_link = Some(text(data));
                continue;
            }
            b'x' => {
                overrides = pax(data);
                continue;
            }
            b'g' => continue,
            _ => {}
        }
        let mut path = text(&header[0..100]);
        if &header[257..263] == b"ustar\0" {
            let prefix = text(&header[345..500]);
            if !prefix.is_empty() {
                path = format!("{prefix}/{path}");
            }
        }
        let mut member = Member {
            path: long_name.take().unwrap_or(path),
            kind: if kind == 0 || kind == b'7' {
                b'0'
            } else {
                kind
            },
            mode: (number(&header[100..108]) & 0o7777) as u32,
            uid: number(&header[108..116]) as u32,
            gid: number(&header[116..124]) as u32,
            link: long_link.take().unwrap_or_else(|| text(&header[157..257])),
            data: Vec::new(),
        };
        for (key, value) in overrides.drain(..) {
            match key.as_str() {
                "path" => member.path = value,
                "linkpath" => member.link = value,
                "uid" => member.uid = value.parse().unwrap(),
                "gid" => member.gid = value.parse().unwrap(),
                _ => {}
            }
        }
        if member.kind == b'0' {
            member.data = data.to_vec();
        }
        out.push(member);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: usize, extra: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0004755");
        h[108..115].copy_from_slice(b"0000017");
        h[116..123].copy_from_slice(b"0000021");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        extra(&mut h);
        h
    }

    fn padded(data: &[u8]) -> Vec<u8> {
        let mut d = data.to_vec();
        d.resize(data.len().div_ceil(512) * 512, 0);
        d
    }

    #[test]
    fn reads_files_links_long_names_and_pax() {
        let mut archive = Vec::new();
        archive.extend(header("dir/file", b'0', 5, |_| {}));
        archive.extend(padded(b"hello"));
        archive.extend(header("link", b'2', 0, |h| {
            h[157..161].copy_from_slice(b"file")
        }));
        archive.extend(header("././@LongLink", b'L', 7, |_| {}));
        archive.extend(padded(b"a/long\0"));
        archive.extend(header("a/lo", b'5', 0, |_| {}));
        let record = "20 path=pax/renamed\n";
        archive.extend(header("pax", b'x', record.len(), |_| {}));
        archive.extend(padded(record.as_bytes()));
        archive.extend(header("big-uid", b'0', 0, |h| {
            h[108..116].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0x10, 0]);
        }));
        archive.extend(vec![0u8; 1024]);
        let got = members(&archive);
        type Summary<'a> = (&'a str, u8, u32, u32, &'a str, &'a [u8]);
        let summary: Vec<Summary> = got
            .iter()
            .map(|m| {
                (
                    m.path.as_str(),
                    m.kind,
                    m.mode,
                    m.uid,
                    m.link.as_str(),
                    m.data.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("dir/file", b'0', 0o4755, 15, "", &b"hello"[..]),
                ("link", b'2', 0o4755, 15, "file", &b""[..]),
                ("a/long", b'5', 0o4755, 15, "", &b""[..]),
                // The PAX path applies to the member after it (with a base-256 uid).
                ("pax/renamed", b'0', 0o4755, 4096, "", &b""[..]),
            ]
        );
        assert_eq!(got[0].gid, 17);
    }
}
