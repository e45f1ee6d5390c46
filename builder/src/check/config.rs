//! Which build checks run: BuildKit's `ParseLintOptions` grammar
//! (`skip=<rules|all>;error=<bool>;experimental=<rules|all>`), used by the `# check=` parser
//! directive, the `BUILDKIT_DOCKERFILE_CHECK` build-arg, and the `# check=` comment directly
//! before an instruction (which adds skips and experimental rules for that instruction only and
//! never changes `error`).
//!
//! Quirks kept from BuildKit: at most three `;`-separated options (a fourth stays inside the third
//! one's value), keys are exact and case-sensitive, unknown rule names are accepted and do
//! nothing, `skip` never switches off an experimental rule, and only the text up to the first
//! space of a directive is read (`# check=skip=all // why` means `skip=all`).

use std::collections::BTreeSet;

use super::Rule;

/// A parsed check configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// `skip=all`.
    pub skip_all: bool,
    /// `skip=A,B`.
    pub skip: BTreeSet<String>,
    /// `experimental=all`.
    pub experimental_all: bool,
    /// `experimental=A,B`.
    pub experimental: BTreeSet<String>,
    /// `error=true`: a reported rule fails the build.
    pub error: bool,
}

/// A check configuration that does not parse, in BuildKit's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(message: String) -> Self {
        ConfigError { message }
    }

    /// The error as the directive reports it.
    pub(crate) fn in_directive(self) -> Self {
        Self::new(format!("failed to parse check options: {}", self.message))
    }

    /// The error as the build-arg reports it.
    pub(crate) fn in_build_arg(self) -> Self {
        Self::new(format!(
            "failed to parse build-arg:{}: {}",
            super::CHECK_BUILD_ARG,
            self.message
        ))
    }
}

impl CheckConfig {
    /// Parses `skip=…;error=…;experimental=…` (empty or blank text is the default).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config = CheckConfig::default();
        if text.trim().is_empty() {
            return Ok(config);
        }
        for part in text.splitn(3, ';') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(ConfigError::new(format!("invalid check option {part:?}")));
            };
            match key.trim() {
                "skip" => rule_list(value, &mut config.skip_all, &mut config.skip),
                "experimental" => rule_list(
                    value,
                    &mut config.experimental_all,
                    &mut config.experimental,
                ),
                "error" => {
                    config.error = parse_go_bool(value).ok_or_else(|| {
                        ConfigError::new(format!(
                            "failed to parse check option {part:?}: strconv.ParseBool: parsing {value:?}: invalid syntax"
                        ))
                    })?;
                }
                other => return Err(ConfigError::new(format!("invalid check option {other:?}"))),
            }
        }
        Ok(config)
    }

    /// Whether `rule` runs under this configuration.
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.contains(rule.name)
        } else {
            !(self.skip_all || self.skip.contains(rule.name))
        }
    }

    /// This configuration with the first `check=` line of an instruction's comments merged in:
    /// its skips and experimental rules are added, its `error` is ignored, and a line that does
    /// not parse is ignored silently (BuildKit's `WithMergedConfigFromComments`).
    pub fn merged_with_comments(&self, comments: &[String]) -> CheckConfig {
        let mut merged = self.clone();
        let Some(value) = comments.iter().find_map(|c| comment_directive(c)) else {
            return merged;
        };
        if let Ok(extra) = CheckConfig::parse(first_word(value)) {
            merged.skip_all |= extra.skip_all;
            merged.skip.extend(extra.skip);
            merged.experimental_all |= extra.experimental_all;
            merged.experimental.extend(extra.experimental);
        }
        merged
    }
}

/// A `skip`/`experimental` value: `all`, or rule names; the last list wins, `all` stays set.
fn rule_list(value: &str, all: &mut bool, list: &mut BTreeSet<String>) {
    let value = value.trim();
    if value == "all" {
        *all = true;
    } else {
        *list = value
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The text up to the first space: all BuildKit reads of a `check` directive's value.
pub(crate) fn first_word(value: &str) -> &str {
    value.split(char::is_whitespace).next().unwrap_or_default()
}

/// The value of a comment line (already without `#`) that is a `check=` directive: a key of
/// `[a-zA-Z][a-zA-Z0-9]*` equal to `check` in any case, `=`, a non-empty value.
fn comment_directive(comment: &str) -> Option<&str> {
    let key_len = comment
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(comment.len(), |(i, _)| i);
    let (key, rest) = comment.split_at(key_len);
    if !key.eq_ignore_ascii_case("check") {
        return None;
    }
    let value = rest.trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{FROM_AS_CASING, INVALID_DEFINITION_DESCRIPTION};

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn grammar() {
        let cases: &[(&str, CheckConfig)] = &[
            ("", CheckConfig::default()),
            ("  ", CheckConfig::default()),
            (
                "skip=all",
                CheckConfig {
                    skip_all: true,
                    ..CheckConfig::default()
                },
            ),
            (
                "skip=A, B ;error=true",
                CheckConfig {
                    skip: set(&["A", "B"]),
                    error: true,
                    ..CheckConfig::default()
                },
            ),
            (
                " experimental = all;error=1",
                CheckConfig {
                    experimental_all: true,
                    error: true,
                    ..CheckConfig::default()
                },
            ),
            // The last list wins; `all` once set stays set.
            (
                "skip=A;skip=B;skip=all",
                CheckConfig {
                    skip_all: true,
                    skip: set(&["B"]),
                    ..CheckConfig::default()
                },
            ),
            ("error=True;error=F", CheckConfig::default()),
        ];
        for (text, want) in cases {
            assert_eq!(&CheckConfig::parse(text).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn errors_in_buildkits_words() {
        let cases = [
            ("skip", "invalid check option \"skip\""),
            ("Skip=all", "invalid check option \"Skip\""),
            ("bogus=1", "invalid check option \"bogus\""),
            (
                "error=yes",
                "failed to parse check option \"error=yes\": strconv.ParseBool: parsing \"yes\": invalid syntax",
            ),
            // A fourth option stays inside the third one's value.
            (
                "skip=A;skip=B;error=true;skip=C",
                "failed to parse check option \"error=true;skip=C\": strconv.ParseBool: parsing \"true;skip=C\": invalid syntax",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                CheckConfig::parse(text).unwrap_err().message,
                want,
                "{text:?}"
            );
        }
        assert_eq!(
            CheckConfig::parse("x").unwrap_err().in_directive().message,
            "failed to parse check options: invalid check option \"x\""
        );
        assert_eq!(
            CheckConfig::parse("x").unwrap_err().in_build_arg().message,
            "failed to parse build-arg:BUILDKIT_DOCKERFILE_CHECK: invalid check option \"x\""
        );
    }

    #[test]
    fn skip_never_covers_experimental_rules() {
        let config =
            CheckConfig::parse("skip=all;experimental=InvalidDefinitionDescription").unwrap();
        assert!(config.enabled(&INVALID_DEFINITION_DESCRIPTION));
        assert!(!config.enabled(&FROM_AS_CASING));
        assert!(!CheckConfig::default().enabled(&INVALID_DEFINITION_DESCRIPTION));
        assert!(CheckConfig::default().enabled(&FROM_AS_CASING));
    }

    #[test]
    fn comments_add_skips_but_never_error() {
        let base = CheckConfig::parse("skip=A;error=true").unwrap();
        let comments =
            |lines: &[&str]| -> Vec<String> { lines.iter().map(|s| (*s).to_owned()).collect() };
        let merged = base.merged_with_comments(&comments(&[
            "some words",
            "CHECK = skip=FromAsCasing;error=false // why",
            "check=skip=all",
        ]));
        assert_eq!(merged.skip, set(&["A", "FromAsCasing"]));
        assert!(merged.error && !merged.skip_all);
        // Only the first check= line counts, even when it does not parse.
        let merged = base.merged_with_comments(&comments(&["check=bogus", "check=skip=all"]));
        assert_eq!(merged, base);
        assert_eq!(
            base.merged_with_comments(&comments(&["checks=skip=all"])),
            base
        );
    }
}
