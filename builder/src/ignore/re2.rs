//! The RE2 expressions patternmatcher compiles, run with Go's `regexp` semantics on the `regex`
//! crate.
//!
//! Both engines implement RE2 syntax in linear time, and Go compiles these expressions with its
//! `Perl` flags, which are also the crate's defaults: `^`/`$` anchor the whole text, `.` excludes
//! `\n`, negated classes include it, and matching is by Unicode scalar value. Where the two
//! *syntaxes* read the same text differently, [`Regex::new`] rewrites the Go expression into a
//! crate expression that means what Go means, so no Go syntax is handed to the crate raw:
//!
//! * `\d`, `\s`, `\w`, `\b` and their negations are ASCII in Go, Unicode in the crate; they become
//!   explicit ASCII classes (Go's `\s` has no `\v`, unlike the crate's `(?-u:\s)`) and
//!   `(?-u:\b)`;
//! * inside a class, Go reads `[` (other than `[:name:]`), `&&`, `--` and `~~` as literals, the
//!   crate as nested classes and set operations; every class member is written as `\x{…}`;
//! * Go's octal escapes (`\0`, `\12`, `\123`), `\Q…\E` and `\p{^Name}` do not exist in the crate;
//!   Go's `\<`, `\>` are literals but word boundaries in the crate; `\e`, `\C`, `\Z` and other
//!   letters are errors in Go — all are translated or rejected here with Go's rules;
//! * Go's one-letter `\pC` holds only assigned code points; the crate's also holds unassigned
//!   ones, so it is written as its assigned categories.
//!
//! What still differs: Unicode classes use the crate's Unicode version, which may be newer than
//! the Go toolchain's. A braced `\p{Name}` is passed to the crate, which knows more names than Go
//! (binary properties such as `Alphabetic`, case-insensitive names, but not `Cs`); only raw
//! braces reach that form, and [`super::glob::compile`] always
//! escapes braces, so from a `.dockerignore` only the one-letter `\pL` form is possible, and that
//! is checked against Go's list. And an expression past the crate's 10 MiB compiled-size limit
//! (some 40,000 wildcards in one pattern) is an error where Go's larger limit accepts it.

use thiserror::Error;

/// Why an expression compiled from a pattern was rejected (Go reports all of these as
/// `filepath.ErrBadPattern` when the pattern is first matched).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegexError {
    /// A `[` class without its closing `]`.
    #[error("missing closing ]")]
    MissingBracket,
    /// A class range whose ends are reversed (`[l-O]`), or an unknown `[:name:]` or `\pX` class.
    #[error("invalid character class range {0:?}")]
    InvalidCharRange(String),
    /// A `\` escape RE2 does not define, or a trailing `\`.
    #[error("invalid escape sequence {0:?}")]
    InvalidEscape(String),
    /// What the `regex` crate rejected (an unknown `\p{Name}`, or an expression over its size
    /// limit), in its words.
    #[error("{0}")]
    Rejected(String),
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub(super) struct Regex(regex::Regex);

impl Regex {
    /// Compiles a Go `regexp` expression (as [`super::glob::compile`] builds it) with Go's
    /// meaning.
    pub(super) fn new(go: &str) -> Result<Regex, RegexError> {
        let translated = translate(go)?;
        regex::Regex::new(&translated).map(Regex).map_err(|e| {
            // The crate's message quotes the translated expression; keep only its verdict.
            let message = e.to_string();
            let last = message.lines().last().unwrap_or_default();
            RegexError::Rejected(last.trim_start_matches("error: ").to_owned())
        })
    }

    /// Whether the expression matches anywhere in `text` (Go's `MatchString`).
    pub(super) fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

/// Go's `[:name:]` classes; the crate defines the same names with the same ASCII members.
const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Go's one-letter Unicode classes (`\pL`): the one-letter general categories.
const ONE_LETTER_CATEGORIES: &str = "CLMNPSZ";

/// Rewrites a Go expression into the crate's syntax, following Go's `regexp/syntax` parser.
///
/// Operators, groups and anchors (`^ $ . * + ? ( ) |`) mean the same in both and pass through:
/// glob::compile emits them only in its own fragments (`[^/]*`, `(.*/)?`, `.*`) or escaped. It
/// always escapes `{` and `}`, so raw braces (counted repetition in Go) are read as literals.
fn translate(go: &str) -> Result<String, RegexError> {
    let mut out = String::with_capacity(go.len() * 2);
    let mut rest = go;
    while let Some(c) = rest.chars().next() {
        match c {
            '[' => rest = class(&rest[1..], &mut out)?,
            '\\' => rest = escape_outside(rest, &mut out)?,
            '^' | '$' | '.' | '*' | '+' | '?' | '(' | ')' | '|' => {
                out.push(c);
                rest = &rest[1..];
            }
            _ => {
                out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Ok(out)
}

/// An escape outside a class, `rest` at the `\`; returns what follows it.
fn escape_outside<'a>(rest: &'a str, out: &mut String) -> Result<&'a str, RegexError> {
    let after = &rest[1..];
    let assertion = match after.chars().next() {
        Some('A') => Some("\\A"),
        Some('z') => Some("\\z"),
        Some('b') => Some("(?-u:\\b)"),
        Some('B') => Some("(?-u:\\B)"),
        Some('Q') => {
            // \Q…\E: everything up to \E, or to the end, is literal.
            let (literal, tail) = after[1..].split_once("\\E").unwrap_or((&after[1..], ""));
            out.push_str(&regex::escape(literal));
            return Ok(tail);
        }
        _ => None,
    };
    if let Some(assertion) = assertion {
        out.push_str(assertion);
        return Ok(&after[1..]);
    }
    if let Some(tail) = class_escape(rest, out)? {
        return Ok(tail);
    }
    let (c, tail) = escaped_char(rest)?;
    out.push_str(&format!("\\x{{{:x}}}", u32::from(c)));
    Ok(tail)
}

/// `\d \D \s \S \w \W` as Go's ASCII sets, or `\pX`/`\p{Name}`, `rest` at the `\`; `None` if
/// `rest` starts with neither. The output is a class the crate accepts inside a class too.
fn class_escape<'a>(rest: &'a str, out: &mut String) -> Result<Option<&'a str>, RegexError> {
    let mut chars = rest.chars();
    chars.next();
    let Some(kind) = chars.next() else {
        return Ok(None);
    };
    let members = match kind.to_ascii_lowercase() {
        'd' => "0-9",
        's' => "\\t\\n\\f\\r ",
        'w' => "0-9A-Za-z_",
        'p' => return unicode_class(rest, out).map(Some),
        _ => return Ok(None),
    };
    let negate = if kind.is_ascii_uppercase() { "^" } else { "" };
    out.push_str(&format!("[{negate}{members}]"));
    Ok(Some(&rest[2..]))
}

/// `\pX`, `\PX`, `\p{Name}`, `\p{^Name}` (Go's `parseUnicodeClass`), `rest` at the `\`.
fn unicode_class<'a>(rest: &'a str, out: &mut String) -> Result<&'a str, RegexError> {
    let mut negate = rest[1..].starts_with('P');
    let after = &rest[2..];
    let (seq, name, tail) = match after.chars().next() {
        None => return Err(RegexError::InvalidCharRange(rest.to_owned())),
        Some('{') => {
            let Some(end) = after.find('}') else {
                return Err(RegexError::InvalidCharRange(rest.to_owned()));
            };
            (&rest[..end + 3], &after[1..end], &after[end + 1..])
        }
        Some(c) => {
            let len = 2 + c.len_utf8();
            let name = &rest[2..len];
            if !ONE_LETTER_CATEGORIES.contains(name) {
                return Err(RegexError::InvalidCharRange(rest[..len].to_owned()));
            }
            (&rest[..len], name, &rest[len..])
        }
    };
    let name = match name.strip_prefix('^') {
        Some(name) => {
            negate = !negate;
            name
        }
        None => name,
    };
    if name.is_empty() {
        return Err(RegexError::InvalidCharRange(seq.to_owned()));
    }
    if name == "C" {
        // Go's `C` holds the assigned code points of Cc, Cf, Co and Cs; the crate's also holds
        // the unassigned ones (Cn), which Go has no table for. (Surrogates, Cs, never occur in a
        // `str`, and the crate has no table for them.)
        let negate = if negate { "^" } else { "" };
        out.push_str(&format!("[{negate}\\p{{Cc}}\\p{{Cf}}\\p{{Co}}]"));
    } else {
        out.push_str(&format!("\\{}{{{name}}}", if negate { 'P' } else { 'p' }));
    }
    Ok(tail)
}

/// One escaped character (Go's `parseEscape`), `rest` at the `\`: the character and what follows.
fn escaped_char(rest: &str) -> Result<(char, &str), RegexError> {
    let mut chars = rest[1..].char_indices();
    let Some((_, c)) = chars.next() else {
        return Err(RegexError::InvalidEscape("\\".to_owned()));
    };
    let consumed = |n: usize| -> &str { &rest[(1 + n).min(rest.len())..] };
    let invalid = |n: usize| RegexError::InvalidEscape(rest[..(1 + n).min(rest.len())].to_owned());
    let octal = |i: usize| rest.as_bytes().get(i).filter(|b| (b'0'..=b'7').contains(b));
    let value = match c {
        // Escaped punctuation is always itself (Go's `c < RuneSelf && !isalnum(c)`).
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => c,
        // A lone `\1`…`\7` would be a backreference, which RE2 does not have.
        '1'..='7' if octal(2).is_none() => return Err(invalid(1)),
        '0'..='7' => {
            // Up to two more octal digits after the first.
            let mut value = u32::from(c) - u32::from('0');
            let mut len = 1;
            while len < 3
                && let Some(&d) = octal(1 + len)
            {
                value = value * 8 + u32::from(d - b'0');
                len += 1;
            }
            let c = char::from_u32(value).ok_or_else(|| invalid(len))?;
            return Ok((c, consumed(len)));
        }
        'x' => {
            // Two hex digits; glob::compile escapes braces, so `\x{…}` cannot occur.
            let digits: Vec<char> = rest[2..].chars().take(2).collect();
            let len = 1 + digits.iter().map(|d| d.len_utf8()).sum::<usize>();
            let [hi, lo] = digits[..] else {
                return Err(invalid(len));
            };
            let c = (hi.to_digit(16).zip(lo.to_digit(16)))
                .and_then(|(hi, lo)| char::from_u32(hi * 16 + lo))
                .ok_or_else(|| invalid(len))?;
            return Ok((c, consumed(len)));
        }
        'a' => '\x07',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        _ => return Err(invalid(c.len_utf8())),
    };
    Ok((value, consumed(c.len_utf8())))
}

/// A `[…]` class (Go's `parseClass`), `rest` just past the `[`; returns what follows the `]`.
fn class<'a>(mut rest: &'a str, out: &mut String) -> Result<&'a str, RegexError> {
    out.push('[');
    if let Some(tail) = rest.strip_prefix('^') {
        out.push('^');
        rest = tail;
    }
    // `]` right after `[` or `[^` is a member, not the end.
    let mut first = true;
    loop {
        if rest.is_empty() {
            return Err(RegexError::MissingBracket);
        }
        if !first && let Some(tail) = rest.strip_prefix(']') {
            out.push(']');
            return Ok(tail);
        }
        first = false;
        if rest.len() > 2
            && rest.starts_with("[:")
            && let Some(end) = rest[2..].find(":]")
        {
            let name = &rest[..end + 4];
            let inner = &name[2..name.len() - 2];
            if !POSIX_CLASSES.contains(&inner.strip_prefix('^').unwrap_or(inner)) {
                return Err(RegexError::InvalidCharRange(name.to_owned()));
            }
            out.push_str(name);
            rest = &rest[name.len()..];
            continue;
        }
        if rest.starts_with('\\')
            && let Some(tail) = class_escape(rest, out)?
        {
            rest = tail;
            continue;
        }
        let range_start = rest;
        let (lo, tail) = class_char(rest)?;
        rest = tail;
        let mut hi = lo;
        // `[a-]` is `a` and `-`.
        if rest.len() >= 2 && rest.starts_with('-') && !rest[1..].starts_with(']') {
            let (end, tail) = class_char(&rest[1..])?;
            rest = tail;
            if end < lo {
                let text = &range_start[..range_start.len() - rest.len()];
                return Err(RegexError::InvalidCharRange(text.to_owned()));
            }
            hi = end;
        }
        out.push_str(&format!(
            "\\x{{{:x}}}-\\x{{{:x}}}",
            u32::from(lo),
            u32::from(hi)
        ));
    }
}

/// One class member: a literal or an escaped character.
fn class_char(rest: &str) -> Result<(char, &str), RegexError> {
    match rest.chars().next() {
        None => Err(RegexError::MissingBracket),
        Some('\\') => escaped_char(rest),
        Some(c) => Ok((c, &rest[c.len_utf8()..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_go_regexp() {
        // (expression, text, matches) — expected values are Go's regexp.MatchString results.
        let cases: &[(&str, &str, bool)] = &[
            ("^[^/]*$", "abc", true),
            ("^[^/]*$", "a/c", false),
            ("^(.*/)?dir2/.*$", "a/b/dir2/x", true),
            ("^(.*/)?dir2/.*$", "dir2/x", true),
            ("^(.*/)?dir2/.*$", "xdir2/x", false),
            // `.` stops at a newline; a negated class does not.
            ("^(.*/)?x$", "a\nb/x", false),
            ("^[^/]*x$", "a\nbx", true),
            ("^a\\\\$", "a\\", true),
            ("^a\\*b$", "a*b", true),
            ("^[\\]a]$", "]", true),
            ("^[a-ζ][^/]*$", "α", true),
            ("^[^/]$", "é", true),
            ("^[[:alpha:]]$", "q", true),
            ("^[[:alpha:]]$", "[", false),
            ("^[[:^digit:]]$", "x", true),
            ("^[[^/]*]$", "^/]", true),
            ("^[[^/]*]$", "a", false),
            ("^[]a]$", "]", true),
            ("^[[:a]$", ":", true),
            ("^[a&&b]$", "&", true),
            ("^[--/]$", ".", true),
            ("^[a-]$", "-", true),
            ("^[~~]$", "~", true),
            ("^a^b$", "a^b", false),
            // Go's Perl classes are ASCII.
            ("^\\d+$", "123", true),
            ("^\\d$", "٣", false),
            ("^\\w$", "é", false),
            ("^\\W$", "é", true),
            ("^\\s$", "\x0b", false),
            ("^[\\w.]+$", "a_b.c", true),
            ("^[^\\d]$", "x", true),
            ("^\\pL$", "é", true),
            ("^\\PL$", "é", false),
            ("^[\\pN]$", "٣", true),
            // Go's `C` has no unassigned code points.
            ("^\\pC$", "\u{ad}", true),
            ("^\\pC$", "\u{378}", false),
            ("^\\PC$", "\u{378}", true),
            ("^\\Q.*\\E$", ".*", true),
            ("^\\Q.*\\E$", "ab", false),
            ("^\\Qa$", "a$", true),
            ("^\\x41\\101\\0$", "AA\0", true),
            ("^\\<\\>\\_$", "<>_", true),
            ("^a\\b", "a b", true),
            ("^a\\b", "aé", true),
            ("^a\\B", "ab", true),
            ("^(a|bc)+$", "abca", true),
            ("^(a|bc)+$", "abcb", false),
            ("b", "abc", true),
            ("^[^\\n]$", "\n", false),
            ("^(a*)*$", "aaa", true),
            ("^x\\{$", "x{", true),
            ("^#&-~ $", "#&-~ ", true),
        ];
        for (source, text, want) in cases {
            let re = Regex::new(source).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(re.is_match(text), *want, "{source} on {text:?}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        let cases: &[(&str, RegexError)] = &[
            ("^[l-O]/$", RegexError::InvalidCharRange("l-O".into())),
            (
                "^[\\x7a-a]$",
                RegexError::InvalidCharRange("\\x7a-a".into()),
            ),
            ("^[a--]$", RegexError::InvalidCharRange("a--".into())),
            ("^[a", RegexError::MissingBracket),
            ("^[a\\", RegexError::InvalidEscape("\\".into())),
            (
                "^[[:nope:]]$",
                RegexError::InvalidCharRange("[:nope:]".into()),
            ),
            ("^\\e$", RegexError::InvalidEscape("\\e".into())),
            ("^\\Z$", RegexError::InvalidEscape("\\Z".into())),
            ("^\\C$", RegexError::InvalidEscape("\\C".into())),
            ("^\\1$", RegexError::InvalidEscape("\\1".into())),
            ("^\\8$", RegexError::InvalidEscape("\\8".into())),
            ("^\\é$", RegexError::InvalidEscape("\\é".into())),
            ("^\\xg1$", RegexError::InvalidEscape("\\xg1".into())),
            ("^\\x1é$", RegexError::InvalidEscape("\\x1é".into())),
            ("^\\x1", RegexError::InvalidEscape("\\x1".into())),
            ("^a\\", RegexError::InvalidEscape("\\".into())),
            ("^\\pX$", RegexError::InvalidCharRange("\\pX".into())),
            ("^\\pé$", RegexError::InvalidCharRange("\\pé".into())),
            ("^\\p\\{L\\}$", RegexError::InvalidCharRange("\\p\\".into())),
            ("^\\p{^}$", RegexError::InvalidCharRange("\\p{^}".into())),
        ];
        for (source, want) in cases {
            assert_eq!(Regex::new(source).err().as_ref(), Some(want), "{source}");
        }
        assert!(matches!(
            Regex::new("^\\p{Nope}$"),
            Err(RegexError::Rejected(_))
        ));
    }

    #[test]
    fn braced_unicode_classes() {
        // Not reachable from a pattern (braces are escaped), but translated as Go reads them.
        let re = Regex::new("^\\p{^Greek}$").unwrap();
        assert!(re.is_match("a") && !re.is_match("α"));
        let re = Regex::new("^\\P{^Greek}$").unwrap();
        assert!(re.is_match("α"));
    }

    #[test]
    fn no_exponential_backtracking() {
        let re = Regex::new("^[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*b$").unwrap();
        let text = "a".repeat(5000);
        assert!(!re.is_match(&text));
    }
}
