//! `--chmod` values: octal (`0755`) or symbolic (`u=rwX,go=rX`, Dockerfile 1.14), and how they
//! change a mode.

use std::str::FromStr;

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Octal: the new permission bits, 0 to 07777.
    Octal(u32),
    /// Symbolic clauses, applied in order.
    Symbolic(Vec<Clause>),
}

/// One symbolic clause: who, then operations (`ug+rw-x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    ops: Vec<(char, String)>,
}

/// A `--chmod` kiln cannot read, in BuildKit's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
pub struct ChmodError(pub String);

/// Permission bits of user, group and other.
const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl FromStr for Chmod {
    type Err = ChmodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ChmodError(s.to_owned());
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(s, 8).map_err(|_| bad())?;
            return if mode <= 0o7777 {
                Ok(Chmod::Octal(mode))
            } else {
                Err(bad())
            };
        }
        let clauses = s
            .split(',')
            .map(|clause| {
                let who_len = clause
                    .find(|c: char| !matches!(c, 'u' | 'g' | 'o' | 'a'))
                    .unwrap_or(clause.len());
                let who = clause[..who_len].chars().fold(0, |m, c| {
                    m | match c {
                        'u' => USER,
                        'g' => GROUP,
                        'o' => OTHER,
                        _ => USER | GROUP | OTHER,
                    }
                });
                let mut ops = Vec::new();
                let mut rest = &clause[who_len..];
                while let Some(op) = rest.chars().next().filter(|c| matches!(c, '+' | '-' | '=')) {
                    rest = &rest[1..];
                    let perms_len = rest
                        .find(|c: char| !matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't'))
                        .unwrap_or(rest.len());
                    ops.push((op, rest[..perms_len].to_owned()));
                    rest = &rest[perms_len..];
                }
                if ops.is_empty() || !rest.is_empty() {
                    return Err(bad());
                }
                Ok(Clause {
                    who: if who == 0 { USER | GROUP | OTHER } else { who },
                    ops,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Chmod::Symbolic(clauses))
    }
}

impl Chmod {
    /// The new permission bits for an entry with `mode` (file type bits not included).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for clause in clauses {
            for (op, perms) in &clause.ops {
                let mut bits = 0;
                for p in perms.chars() {
                    bits |= match p {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' if is_dir || mode & 0o111 != 0 => 0o111,
                        's' => 0o6000,
                        't' => 0o1000,
                        _ => 0,
                    };
                }
                bits &= clause.who;
                match op {
                    '+' => mode |= bits,
                    '-' => mode &= !bits,
                    _ => mode = (mode & !clause.who) | bits,
                }
            }
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, u32, bool, u32)] = &[
            ("755", 0o600, false, 0o755),
            ("0644", 0o777, true, 0o644),
            ("4755", 0, false, 0o4755),
            ("u=rwX,go=rX", 0o644, false, 0o644),
            ("u=rwX,go=rX", 0o700, true, 0o755),
            ("u=rwX,go=rX", 0o744, false, 0o755),
            ("go-w", 0o777, false, 0o755),
            ("a+X", 0o644, true, 0o755),
            ("+x", 0o600, false, 0o711),
            ("u+s,o+t", 0o755, true, 0o5755),
            ("o=", 0o777, false, 0o770),
        ];
        for &(spec, mode, is_dir, want) in cases {
            let chmod: Chmod = spec.parse().unwrap();
            assert_eq!(chmod.apply(mode, is_dir), want, "{spec} on {mode:o}");
        }
        for bad in ["64a", "10000", "u+q", "", "z=r", "u"] {
            assert_eq!(
                bad.parse::<Chmod>(),
                Err(ChmodError(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
