//! Builder flags (`--from=build`, `--link`, `--mount=…`) with BuildKit's `BFlags` rules.
//!
//! Each instruction declares the flags it knows; anything else is an error naming the flag, so a
//! flag kiln does not implement is never silently ignored. A string flag needs a value, a boolean
//! flag takes none or `true`/`false`, a list flag may repeat, and no other flag may repeat.

use std::collections::BTreeMap;

use super::InstructionError;

/// What a declared flag accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--name=value`, once.
    String,
    /// `--name`, `--name=true|false`, once.
    Bool,
    /// `--name=value`, any number of times.
    List,
}

/// The flags given to one instruction, checked against the ones it declares.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Flags {
    /// Checks `given` (as the parser found them, e.g. `--from=a`) against `declared`.
    pub(crate) fn parse(
        keyword: &str,
        given: &[String],
        declared: &[(&'static str, Kind)],
    ) -> Result<Self, InstructionError> {
        let mut flags = Flags::default();
        for arg in given {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(InstructionError::new(format!(
                    "arg should start with -- : {arg}"
                )));
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(&(name, kind)) = declared.iter().find(|(n, _)| *n == name) else {
                return Err(unknown_flag(keyword, name, declared));
            };
            let values = flags.values.entry(name).or_default();
            if kind != Kind::List && !values.is_empty() {
                return Err(InstructionError::new(format!(
                    "Duplicate flag specified: {name}"
                )));
            }
            let value = match (kind, value) {
                (Kind::Bool, None) => "true".to_owned(),
                (Kind::Bool, Some(v)) if v.eq_ignore_ascii_case("true") => "true".to_owned(),
                (Kind::Bool, Some(v)) if v.eq_ignore_ascii_case("false") => "false".to_owned(),
                (Kind::Bool, Some(v)) => {
                    return Err(InstructionError::new(format!(
                        "expecting boolean value for flag {name}, not: {v}"
                    )));
                }
                (_, None) => {
                    return Err(InstructionError::new(format!(
                        "Missing a value on flag: {name}"
                    )));
                }
                (_, Some(v)) => v.to_owned(),
            };
            values.push(value);
        }
        Ok(flags)
    }

    /// The value of a string flag, if given.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.first().cloned())
    }

    /// A boolean flag (absent means false).
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.string(name).is_some_and(|v| v == "true")
    }

    /// Every value of a list flag, in order.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
}

/// Flags BuildKit has but kiln does not implement yet: naming them says so instead of calling
/// them unknown.
const NOT_IMPLEMENTED: &[(&str, &str)] = &[("run", "device")];

fn unknown_flag(keyword: &str, name: &str, declared: &[(&'static str, Kind)]) -> InstructionError {
    let upper = keyword.to_ascii_uppercase();
    if NOT_IMPLEMENTED
        .iter()
        .any(|&(k, n)| k.eq_ignore_ascii_case(keyword) && n == name)
    {
        return InstructionError::new(format!("{upper} --{name} is not supported by kiln yet"));
    }
    let mut message = format!("unknown flag: --{name}");
    if let Some(close) = super::suggest(name, declared.iter().map(|(n, _)| *n)) {
        message.push_str(&format!(" (did you mean --{close}?)"));
    }
    InstructionError::new(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARED: &[(&str, Kind)] = &[
        ("from", Kind::String),
        ("link", Kind::Bool),
        ("exclude", Kind::List),
    ];

    fn parse(given: &[&str]) -> Result<Flags, String> {
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        Flags::parse("COPY", &given, DECLARED).map_err(|e| e.message)
    }

    #[test]
    fn table() {
        let f = parse(&["--from=a", "--link", "--exclude=x", "--exclude=y"]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.list("exclude"), ["x", "y"]);
        assert!(!parse(&["--link=FALSE"]).unwrap().bool("link"));
        let errors = [
            (
                &["--frm=a"][..],
                "unknown flag: --frm (did you mean --from?)",
            ),
            (&["--boo"], "unknown flag: --boo"),
            (&["--from"], "Missing a value on flag: from"),
            (&["--from=a", "--from=b"], "Duplicate flag specified: from"),
            (
                &["--link=yes"],
                "expecting boolean value for flag link, not: yes",
            ),
        ];
        for (given, want) in errors {
            assert_eq!(parse(given).err().as_deref(), Some(want), "{given:?}");
        }
    }
}
