//! Go's path helpers and patternmatcher's pattern compiler, ported for Unix separators.
//!
//! * [`clean`] and [`dir`] are `filepath.Clean` and `filepath.Dir`: the matcher cleans every
//!   pattern and walks the parents of a path exactly as Go does, so `docs/` and `./docs` mean
//!   `docs`, and `/` and `a/` have the parents Go gives them.
//! * [`check_syntax`] is the error half of `filepath.Match(pattern, ".")`, which `New` uses to
//!   reject malformed patterns up front (`[`, `[a-b-c]`, a trailing `\`).
//! * [`compile`] is `Pattern.compile`: it classifies a cleaned pattern as an exact, prefix or suffix
//!   match, or produces the RE2 expression Go would build, byte for byte. The expression is what
//!   decides matching, even where it differs from `filepath.Match` (see `re2.rs`).

/// `filepath.Clean` for `/` separators: lexical `.`/`..` processing, no trailing slash, `.` for
/// an empty result.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                // `..` above the root is the root; above a relative start it is kept.
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// `filepath.Dir`: everything before the last `/`, cleaned (`.` when there is no `/`).
pub(super) fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean(&path[..=i]),
        None => ".".to_owned(),
    }
}

/// Whether `filepath.Match(pattern, name)` would fail with `ErrBadPattern` for any name.
///
/// Go validates every chunk of the pattern whatever the name, so this only parses: the pattern is
/// split into chunks at unbracketed `*`s, and each chunk is checked as `matchChunk` would.
pub(super) fn check_syntax(pattern: &str) -> Result<(), ()> {
    let mut rest = pattern.as_bytes();
    while !rest.is_empty() {
        let (chunk, after) = scan_chunk(rest);
        check_chunk(chunk)?;
        rest = after;
    }
    Ok(())
}

/// Go's `scanChunk`: skips leading stars, then takes everything up to the next `*` outside
/// brackets.
fn scan_chunk(pattern: &[u8]) -> (&[u8], &[u8]) {
    let start = pattern.iter().take_while(|&&b| b == b'*').count();
    let pattern = &pattern[start..];
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    pattern.split_at(i)
}

/// The syntax checks of Go's `matchChunk`.
fn check_chunk(mut chunk: &[u8]) -> Result<(), ()> {
    while let Some(&b) = chunk.first() {
        match b {
            b'[' => {
                chunk = &chunk[1..];
                if chunk.first() == Some(&b'^') {
                    chunk = &chunk[1..];
                }
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    chunk = class_char(chunk)?;
                    // `class_char` guarantees a byte follows.
                    if chunk.first() == Some(&b'-') {
                        chunk = class_char(&chunk[1..])?;
                    }
                    ranges += 1;
                }
            }
            b'\\' => {
                // An escape needs something to escape; the escaped byte is then a literal.
                if chunk.len() < 2 {
                    return Err(());
                }
                chunk = &chunk[2..];
            }
            _ => chunk = &chunk[1..],
        }
    }
    Ok(())
}

/// Go's `getEsc`: one (possibly escaped) class character, which must not be the last byte.
fn class_char(chunk: &[u8]) -> Result<&[u8], ()> {
    let mut chunk = match chunk.first() {
        None | Some(b'-' | b']') => return Err(()),
        Some(b'\\') => &chunk[1..],
        Some(_) => chunk,
    };
    let width = chunk.first().map_or(0, |&b| utf8_width(b));
    if width == 0 || chunk.len() < width {
        return Err(());
    }
    chunk = &chunk[width..];
    if chunk.is_empty() {
        return Err(());
    }
    Ok(chunk)
}

/// The length of the UTF-8 sequence a leading byte starts (the input is valid UTF-8, and class
/// characters always start on a boundary).
fn utf8_width(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 0,
    }
}

/// How a compiled pattern is matched (patternmatcher's `matchType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MatchKind {
    /// No wildcard, class or escape: string equality.
    Exact,
    /// The only wildcard is a trailing `**` (not at the start): a prefix test.
    Prefix,
    /// A leading `**` and no other wildcard, class or escape: a suffix test.
    Suffix,
    /// Everything else: the RE2 expression.
    Regexp(String),
}

/// Characters RE2 treats specially but `filepath.Match` does not; they are escaped.
const REGEXP_SPECIAL: &str = ".+()|{}$";

/// patternmatcher's `Pattern.compile` with separator `/`: the match kind, with the expression
/// for [`MatchKind::Regexp`].
pub(super) fn compile(cleaned: &str) -> MatchKind {
    // Go reads the pattern with text/scanner, which drops a byte-order mark at the very start.
    let body = cleaned.strip_prefix('\u{feff}').unwrap_or(cleaned);
    let mut chars = body.chars().peekable();
    let mut re = String::from("^");
    // Go's `detectedType`; the expression is only kept when it ends up as `Regexp`.
    let mut kind = Kind::Exact;
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is `**`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    // A trailing `**` matches everything below (as .gitignore does).
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regexp;
                    }
                } else {
                    // Any number of leading directories, including none.
                    re.push_str("(.*/)?");
                    kind = Kind::Regexp;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regexp;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regexp;
            }
            c if REGEXP_SPECIAL.contains(c) => {
                re.push('\\');
                re.push(c);
            }
            '\\' => {
                // The escape is passed through to RE2; a trailing `\` stays as it is.
                re.push('\\');
                if let Some(next) = chars.next() {
                    re.push(next);
                    kind = Kind::Regexp;
                }
            }
            '[' | ']' => {
                re.push(c);
                kind = Kind::Regexp;
            }
            c => re.push(c),
        }
        first = false;
    }
    match kind {
        Kind::Exact => MatchKind::Exact,
        Kind::Prefix => MatchKind::Prefix,
        Kind::Suffix => MatchKind::Suffix,
        Kind::Regexp => {
            re.push('$');
            MatchKind::Regexp(re)
        }
    }
}

/// [`MatchKind`] without the expression, while it is being built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        let cases = [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//", "/"),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("./a", "a"),
            ("a/./b/", "a/b"),
            ("a/../b", "b"),
            ("a/..", "."),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("/../a", "/a"),
            ("/a/b/../../..", "/"),
            ("!docs/../x", "x"),
            ("**/", "**"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "Clean({input:?})");
        }
    }

    #[test]
    fn dir_like_go() {
        let cases = [
            ("file", "."),
            ("file/", "file"),
            ("/", "/"),
            ("/a", "/"),
            ("dir/file/", "dir/file"),
            ("a/b/c", "a/b"),
        ];
        for (input, want) in cases {
            assert_eq!(dir(input), want, "Dir({input:?})");
        }
    }

    #[test]
    fn syntax_check_like_filepath_match() {
        let good = [
            "abc",
            "*",
            "a\\*b",
            "[\\]a]",
            "[x\\-]",
            "[a-ζ]*",
            "[Local-Only]",
            "[*]",
            "a]",
        ];
        let bad = [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "*a\\", "[a*",
        ];
        for p in good {
            assert_eq!(check_syntax(p), Ok(()), "{p:?}");
        }
        for p in bad {
            assert_eq!(check_syntax(p), Err(()), "{p:?}");
        }
    }
}
