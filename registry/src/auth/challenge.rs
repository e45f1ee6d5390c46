//! `WWW-Authenticate` parsing (RFC 7235 §4.1 and §2.1): pure, `&str` in, challenges out.
//!
//! A header may hold several challenges (`Basic realm="r", Bearer realm="t",service="s"`) and a
//! response may carry several headers; parameter values are tokens or quoted strings, which may
//! contain commas (`scope="repository:a:pull,push"`) and backslash escapes. Schemes and parameter
//! names are case-insensitive and are lowercased here; values are kept as sent. A challenge that
//! uses the token68 form (`Negotiate abc==`) keeps no parameters. Anything unparsable after a
//! valid prefix ends parsing: the challenges read so far are kept, as a browser would.

use std::collections::BTreeMap;

/// The longest header kiln parses; registries send a few hundred bytes.
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased: `basic`, `bearer`.
    pub scheme: String,
    /// The parameters, names lowercased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lowercase) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses one `WWW-Authenticate` header value into its challenges.
pub fn parse(header: &str) -> Vec<Challenge> {
    if header.len() > MAX_HEADER_LEN {
        return Vec::new();
    }
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_list_separators();
        let Some(scheme) = p.token() else { break };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        // Parameters follow after whitespace, separated by commas, until a token that is not
        // followed by `=` (the next challenge's scheme) or the end.
        loop {
            p.skip_list_separators();
            let start = p.i;
            let Some(name) = p.token() else { break };
            p.skip_ws();
            if p.peek() != Some(b'=') {
                p.i = start;
                break;
            }
            p.i += 1;
            // token68 (`Negotiate abc==`) reads as a parameter `abc` with an empty value.
            p.skip_ws();
            let value = if p.peek() == Some(b'"') {
                match p.quoted() {
                    Some(v) => v,
                    None => {
                        out.push(challenge);
                        return out;
                    }
                }
            } else {
                p.token().unwrap_or_default().to_owned()
            };
            challenge.params.insert(name.to_ascii_lowercase(), value);
        }
        out.push(challenge);
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// RFC 7230 `token`: visible ASCII except delimiters.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.i;
        while let Some(b) = self.peek() {
            let delimiter = b"\"(),/:;<=>?@[\\]{} \t".contains(&b);
            if !b.is_ascii_graphic() || delimiter {
                break;
            }
            self.i += 1;
        }
        // Only ASCII was consumed, so this is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .filter(|t| !t.is_empty())
    }

    /// A quoted string at the cursor, unescaped; `None` if it is not closed.
    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut value = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => return Some(String::from_utf8_lossy(&value).into_owned()),
                b'\\' => {
                    let escaped = self.peek()?;
                    self.i += 1;
                    value.push(escaped);
                }
                _ => value.push(b),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(challenges: &[Challenge]) -> Vec<String> {
        challenges
            .iter()
            .map(|c| {
                let params: Vec<String> =
                    c.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} [{}]", c.scheme, params.join(" "))
            })
            .collect()
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, &[&str])] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
                &[
                    "bearer [realm=https://auth.docker.io/token scope=repository:samalba/my-app:pull,push service=registry.docker.io]",
                ],
            ),
            (
                r#"Basic realm="Registry Realm""#,
                &["basic [realm=Registry Realm]"],
            ),
            (
                r#"Basic realm="b", Bearer realm="https://t/x",service="s""#,
                &["basic [realm=b]", "bearer [realm=https://t/x service=s]"],
            ),
            (
                r#"bearer REALM="r" , Service=s,  error="insufficient_scope""#,
                &["bearer [error=insufficient_scope realm=r service=s]"],
            ),
            (
                r#"Bearer realm="a\"b\\c",scope="repository:host:5000/repo:pull""#,
                &[r#"bearer [realm=a"b\c scope=repository:host:5000/repo:pull]"#],
            ),
            ("Bearer", &["bearer []"]),
            ("Negotiate abc==", &["negotiate [abc=]"]),
            (r#"Bearer realm="unterminated"#, &["bearer []"]),
            ("", &[]),
            (", ,", &[]),
        ];
        for (header, expected) in cases {
            assert_eq!(show(&parse(header)), *expected, "{header}");
        }
        assert_eq!(
            parse(&format!("Bearer realm=\"{}\"", "a".repeat(MAX_HEADER_LEN))),
            []
        );
        let c = &parse(r#"Bearer realm="r",service="s""#)[0];
        assert_eq!(
            (c.param("realm"), c.param("service"), c.param("scope")),
            (Some("r"), Some("s"), None)
        );
    }
}
