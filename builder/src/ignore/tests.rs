//! Upstream vectors (patterns.tsv, patternmatcher-misc.json, ignorefile-readall) and table tests.

use super::*;
use crate::testutil;

/// Go's deprecated package function `Matches(path, patterns)`: the path is cleaned, `.` never
/// matches, and only the one parent prefix with as many components as the pattern is tried. Kept
/// here, not in the library, because nothing should use it; its vectors pin pattern semantics.
fn legacy_matches(path: &str, patterns: &[&str]) -> Result<bool, IgnoreError> {
    let pm = PatternMatcher::new(patterns)?;
    let file = glob::clean(path);
    if file == "." {
        return Ok(false);
    }
    let parent = glob::dir(&file);
    let parent_dirs: Vec<&str> = parent.split('/').collect();
    let mut matched = false;
    for pattern in pm.patterns() {
        if pattern.exclusion != matched {
            continue;
        }
        let mut hit = pattern.matches(&file)?;
        let depth = pattern.cleaned.split('/').count();
        if !hit && parent != "." && depth <= parent_dirs.len() {
            hit = pattern
                .matches(&parent_dirs[..depth].join("/"))
                .unwrap_or(false);
        }
        if hit {
            matched = !pattern.exclusion;
        }
    }
    Ok(matched)
}

/// Go's deprecated `MatchesUsingParentResult(path, parentMatched bool)`.
fn using_parent_result(pm: &PatternMatcher, path: &str, parent_matched: bool) -> bool {
    let mut matched = parent_matched;
    for pattern in pm.patterns() {
        if pattern.exclusion != matched {
            continue;
        }
        if pattern.matches(path).unwrap() {
            matched = !pattern.exclusion;
        }
    }
    matched
}

/// The parent prefixes upstream's tests feed to the incremental APIs, in order.
fn parent_prefixes(path: &str) -> Vec<String> {
    let parent = glob::dir(path);
    if parent == "." {
        return Vec::new();
    }
    let dirs: Vec<&str> = parent.split('/').collect();
    (1..=dirs.len()).map(|n| dirs[..n].join("/")).collect()
}

#[test]
fn patterns_tsv() {
    let Some(dir) = testutil::conformance_dir() else {
        return;
    };
    let text = String::from_utf8(testutil::read(&dir, "dockerignore/patterns.tsv")).unwrap();
    let (mut matcher, mut multi, mut legacy, mut unix) = (0, 0, 0, 0);
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with("test\t") {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [test, api, os, expected, path, patterns @ ..] = fields.as_slice() else {
            panic!("short row: {line:?}");
        };
        let case = format!("{test} {api} path={path:?} patterns={patterns:?}");
        if *os == "unix" {
            unix += 1;
        }
        match *api {
            "matcher" | "matcher-multi" => {
                let want = match *expected {
                    "true" => true,
                    "false" => false,
                    other => panic!("{case}: matcher rows expect true/false, got {other}"),
                };
                let pm = PatternMatcher::new(patterns).unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(
                    pm.matches_or_parent_matches(path).unwrap(),
                    want,
                    "{case}: MatchesOrParentMatches"
                );

                let mut info = MatchInfo::default();
                let mut parent_matched = false;
                for prefix in parent_prefixes(path) {
                    info = pm.matches_using_parent_results(&prefix, &info).unwrap().1;
                    parent_matched = using_parent_result(&pm, &prefix, parent_matched);
                }
                let (got, _) = pm.matches_using_parent_results(path, &info).unwrap();
                assert_eq!(got, want, "{case}: MatchesUsingParentResults");
                let (got, _) = pm
                    .matches_using_parent_results(path, &MatchInfo::default())
                    .unwrap();
                assert_eq!(
                    got, want,
                    "{case}: MatchesUsingParentResults(MatchInfo{{}})"
                );
                if *api == "matcher" {
                    matcher += 1;
                    let got = using_parent_result(&pm, path, parent_matched);
                    assert_eq!(got, want, "{case}: MatchesUsingParentResult");
                } else {
                    multi += 1;
                }
            }
            "legacy" => {
                legacy += 1;
                let got = legacy_matches(path, patterns);
                match *expected {
                    "error" => assert!(
                        matches!(
                            got,
                            Err(IgnoreError::BadPattern { .. } | IgnoreError::LoneExclamation)
                        ),
                        "{case}: got {got:?}"
                    ),
                    want => assert_eq!(got, Ok(want == "true"), "{case}"),
                }
            }
            other => panic!("{case}: unknown api {other}"),
        }
    }
    assert_eq!((matcher, multi, legacy, unix), (68, 4, 65, 12));
}

#[test]
fn new_pattern_matcher_vectors() {
    let Some(dir) = testutil::conformance_dir() else {
        return;
    };
    let json: serde_json::Value = serde_json::from_slice(&testutil::read(
        &dir,
        "dockerignore/patternmatcher-misc.json",
    ))
    .unwrap();
    let cases = json["newPatternMatcher"]["cases"].as_array().unwrap();
    let mut then_checked = 0;
    for case in cases {
        let patterns: Vec<&str> = case["patterns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let result = PatternMatcher::new(&patterns);
        if case["expect_error"].as_bool().unwrap() {
            assert_eq!(
                result.err(),
                Some(IgnoreError::LoneExclamation),
                "{patterns:?}"
            );
            continue;
        }
        let pm = result.unwrap_or_else(|e| panic!("{patterns:?}: {e}"));
        assert_eq!(
            pm.patterns().len() as u64,
            case["expect_count"].as_u64().unwrap(),
            "{patterns:?}"
        );
        assert_eq!(
            pm.exclusions(),
            case["expect_exclusions"].as_bool().unwrap(),
            "{patterns:?}"
        );
        if case.get("then").is_some() {
            // `[Local-Only]/` passes the syntax check but compiles to the invalid range `l-O`:
            // every match fails, and keeps failing.
            for _ in 0..2 {
                let err = pm.matches_or_parent_matches("x").unwrap_err();
                assert!(
                    matches!(
                        err,
                        IgnoreError::InvalidRegexp {
                            source: RegexError::InvalidCharRange(_),
                            ..
                        }
                    ),
                    "{err:?}"
                );
            }
            then_checked += 1;
        }
    }
    assert_eq!((cases.len(), then_checked), (7, 1));
}

/// The `compile` vectors are an optional implementation detail upstream; kiln builds the same
/// expressions, so they are checked too (Unix separator only).
#[test]
fn compile_vectors() {
    let Some(dir) = testutil::conformance_dir() else {
        return;
    };
    let json: serde_json::Value = serde_json::from_slice(&testutil::read(
        &dir,
        "dockerignore/patternmatcher-misc.json",
    ))
    .unwrap();
    let cases = json["compile"]["cases"].as_array().unwrap();
    for case in cases {
        let pattern = case["pattern"].as_str().unwrap();
        let got = glob::compile(&glob::clean(pattern));
        let want = match case["match_type"].as_str().unwrap() {
            "exact" => MatchKind::Exact,
            "prefix" => MatchKind::Prefix,
            "suffix" => MatchKind::Suffix,
            "regexp" => MatchKind::Regexp(case["regexp_unix"].as_str().unwrap().to_owned()),
            other => panic!("unknown match type {other}"),
        };
        assert_eq!(got, want, "{pattern}");
    }
    assert_eq!(cases.len(), 21);
}

#[test]
fn ignorefile_readall() {
    let Some(dir) = testutil::conformance_dir() else {
        return;
    };
    let input = testutil::read(&dir, "dockerignore/ignorefile-readall/input.dockerignore");
    let expected = testutil::read(
        &dir,
        "dockerignore/ignorefile-readall/expected-patterns.txt",
    );
    let expected: Vec<String> = String::from_utf8(expected)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let got = parse_ignore_file(std::str::from_utf8(&input).unwrap());
    assert_eq!(got, expected);
    assert_eq!(got.len(), 7);
}

#[test]
fn parse_ignore_file_lines() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("\u{feff}a\n\u{feff}b", &["a", "\u{feff}b"]),
        ("a\r\nb\r\n\r\n", &["a", "b"]),
        ("# comment\n  # not a comment\n", &["# not a comment"]),
        ("/\n//a//b/\n./c\n", &["/", "a/b", "c"]),
        ("!  /x/../y\n!\n!/\n", &["!y", "!", "!/"]),
        ("../a\n/../a\n", &["../a", "a"]),
        ("\t*.md \u{a0}\n", &["*.md"]),
    ];
    for (text, want) in cases {
        assert_eq!(parse_ignore_file(text), *want, "{text:?}");
    }
}

#[test]
fn matching_table() {
    // (patterns, path, excluded)
    let cases: &[(&[&str], &str, bool)] = &[
        // Anchored at the root.
        (&["*.md"], "README.md", true),
        (&["*.md"], "docs/x.md", false),
        (&["**/*.md"], "docs/x.md", true),
        // A matching parent excludes everything below it; an exception re-includes.
        (&["docs"], "docs/a/b", true),
        (&["docs", "!docs/keep"], "docs/keep/x", false),
        (&["docs", "!docs/keep", "docs/keep/x"], "docs/keep/x", true),
        // Cleaned patterns: a trailing slash still matches files.
        (&["./build/"], "build", true),
        // The regexp, not filepath.Match, decides: a raw `[[:alpha:]]` is a POSIX class.
        (&["[[:alpha:]]"], "q", true),
        (&["[[:alpha:]]"], "[", false),
        // `\d` reaches RE2 as a digit class (ASCII, as in Go); `\pL` as a Unicode class.
        (&["v\\d"], "v1", true),
        (&["v\\d"], "vd", false),
        (&["\\pL"], "é", true),
        // A suffix pattern compares bytes: `**o` matches any name ending in `o`.
        (&["**o"], "a/foo", true),
        (&[".*"], ".git/config", true),
        (&["."], "x", false),
    ];
    for (patterns, path, want) in cases {
        let pm = PatternMatcher::new(patterns).unwrap();
        assert_eq!(
            pm.matches_or_parent_matches(path),
            Ok(*want),
            "{patterns:?} {path}"
        );
    }
}

#[test]
fn errors() {
    assert_eq!(
        PatternMatcher::new(&["ok", "a[", "!"]).err(),
        Some(IgnoreError::BadPattern {
            pattern: "a[".into()
        })
    );
    assert_eq!(
        PatternMatcher::new(&["  !  "]).err(),
        Some(IgnoreError::LoneExclamation)
    );
    let pm = PatternMatcher::new(&["a", "b"]).unwrap();
    let other = PatternMatcher::new(&["a"]).unwrap();
    let (_, info) = other
        .matches_using_parent_results("a", &MatchInfo::default())
        .unwrap();
    assert_eq!(
        pm.matches_using_parent_results("a/b", &info).err(),
        Some(IgnoreError::MatchInfoMismatch {
            expected: 2,
            got: 1
        })
    );
    // An invalid expression is only reported when its pattern is evaluated.
    let pm = PatternMatcher::new(&["x", "!\\pX"]).unwrap();
    assert_eq!(pm.matches_or_parent_matches("y"), Ok(false));
    assert!(matches!(
        pm.matches_or_parent_matches("x"),
        Err(IgnoreError::InvalidRegexp {
            source: RegexError::InvalidCharRange(_),
            ..
        })
    ));
}
