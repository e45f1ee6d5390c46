//! Tests for the shell lexer: BuildKit's own vectors (`envVarTest`, `wordsTest`,
//! `lex-vectors.json`, read with BuildKit's harness rules) and tables for what they do not
//! cover: the backtick escape, the raw/skip switches, errors and their offsets, environments.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;
use crate::testutil;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// `TestShellParser4EnvVars`: every `A` and `U` row (Linux), `W` rows skipped.
#[test]
fn buildkit_env_var_test() {
    let Some(dir) = testutil::conformance_dir() else {
        return;
    };
    let text = String::from_utf8(testutil::read(&dir, "buildkit-shell/envVarTest")).unwrap();
    let envs: Vec<String> = ["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]
        .map(String::from)
        .to_vec();
    let lexer = Lexer::new('\\');
    let (mut ran, mut errors, mut skipped) = (0, 0, 0);
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        let [platform, input, expected] = fields[..] else {
            panic!("line {}: not three fields: {line:?}", n + 1);
        };
        match platform {
            "A" | "U" => {}
            "W" => {
                skipped += 1;
                continue;
            }
            other => panic!("line {}: bad platform {other:?}", n + 1),
        }
        ran += 1;
        let got = lexer.process_word(input, &envs);
        if expected == "error" {
            errors += 1;
            assert!(got.is_err(), "line {}: {input:?} gave {got:?}", n + 1);
        } else {
            assert_eq!(got.as_deref(), Ok(expected), "line {}: {input:?}", n + 1);
        }
    }
    assert_eq!((ran, errors, skipped), (228, 36, 2));
}

/// `TestShellParser4Words` (default mode; see SOURCES.md for why only that mode is valid).
#[test]
fn buildkit_words_test() {
    let Some(dir) = testutil::conformance_dir() else {
        return;
    };
    let text = String::from_utf8(testutil::read(&dir, "buildkit-shell/wordsTest")).unwrap();
    let lexer = Lexer::new('\\');
    let mut envs: Vec<String> = Vec::new();
    let mut ran = 0;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(entry) = line.strip_prefix("ENV ") {
            envs.push(entry.trim_start_matches(' ').to_owned());
            continue;
        }
        let [input, expected] = line.split('|').collect::<Vec<_>>()[..] else {
            panic!("line {}: not exactly one '|': {line:?}", n + 1);
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let got = lexer
            .process_words(input, &envs)
            .unwrap_or_else(|_| vec!["error".to_owned()]);
        assert_eq!(got, expected, "line {}: {input:?}", n + 1);
        ran += 1;
    }
    assert_eq!((ran, envs.len()), (24, 4));
}

fn lex_vectors(section: &str) -> Option<Vec<Value>> {
    let dir = testutil::conformance_dir()?;
    let bytes = testutil::read(&dir, "buildkit-shell/lex-vectors.json");
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    Some(doc[section]["cases"].as_array().unwrap().clone())
}

fn case_env(case: &Value) -> BTreeMap<String, String> {
    case["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn string_set(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// `TestProcessWithMatches`: value and both name sets, or just "an error".
#[test]
fn buildkit_process_with_matches() {
    let Some(cases) = lex_vectors("processWordWithMatches") else {
        return;
    };
    let lexer = Lexer::new('\\');
    let (mut ok, mut failed) = (0, 0);
    for case in &cases {
        let input = case["input"].as_str().unwrap();
        let got = lexer.process_word_with_matches(input, &case_env(case));
        if case["expected_error"].as_bool().unwrap() {
            assert!(got.is_err(), "{input:?} gave {got:?}");
            failed += 1;
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(got.value, case["expected"].as_str().unwrap(), "{input:?}");
        assert_eq!(got.matched, string_set(&case["matched"]), "{input:?}");
        assert_eq!(got.unmatched, string_set(&case["unmatched"]), "{input:?}");
        ok += 1;
    }
    assert_eq!((ok, failed), (34, 13));
}

/// `TestProcessWithMatchesPlatform` (no Windows rows exist in this section).
#[test]
fn buildkit_process_with_matches_platform() {
    let Some(cases) = lex_vectors("processWordWithMatchesPlatform") else {
        return;
    };
    let lexer = Lexer::new('\\');
    for case in &cases {
        let input = case["input"].as_str().unwrap();
        let got = lexer.process_word_with_matches(input, &case_env(case));
        assert_eq!(
            got.map(|e| e.value).as_deref(),
            Ok(case["expected"].as_str().unwrap()),
            "{input:?}"
        );
    }
    assert_eq!(cases.len(), 3);
}

/// `TestShellParserMandatoryEnvVars`: `?` errors carry the expanded message.
#[test]
fn buildkit_mandatory_env_vars() {
    let Some(cases) = lex_vectors("mandatoryEnvVars") else {
        return;
    };
    let lexer = Lexer::new('\\');
    let mut errors = 0;
    for case in &cases {
        let input = case["input"].as_str().unwrap();
        let got = lexer.process_word(input, &case_env(case));
        if case["expected_error"].as_bool().unwrap() {
            let err = got.unwrap_err().to_string();
            let want = case["error_contains"].as_str().unwrap();
            assert!(err.contains(want), "{input:?}: {err:?} lacks {want:?}");
            errors += 1;
        } else {
            assert_eq!(got.as_deref(), Ok(case["expected"].as_str().unwrap()));
        }
    }
    assert_eq!((cases.len(), errors), (6, 3));
}

/// `(lexer switches, input, expected value)` with `A=a b`, `E=` set and nothing else.
type Row = (&'static str, &'static str, &'static str);

fn lexer_for(switches: &str) -> Lexer {
    let mut lexer = Lexer::new(if switches.contains('`') { '`' } else { '\\' });
    for switch in switches.split_whitespace() {
        match switch {
            "quotes" => lexer.raw_quotes = true,
            "escapes" => lexer.raw_escapes = true,
            "unset" => lexer.skip_unset_env = true,
            "noquotes" => lexer.skip_process_quotes = true,
            "`" => {}
            other => panic!("unknown switch {other}"),
        }
    }
    lexer
}

#[test]
fn switches_and_backtick_escape() {
    let rows: &[Row] = &[
        // Backtick escape token: backslash is an ordinary character.
        ("`", r"C:\path\file", r"C:\path\file"),
        ("`", "a`$A", "a$A"),
        ("`", "a``b", "a`b"),
        ("`", "a`", "a"),
        ("`", r#""a`"b""#, r#"a"b"#),
        ("`", r#""a\tb""#, r"a\tb"),
        ("`", r#""a`tb""#, "a`tb"),
        ("`", r#""`$A""#, "$A"),
        ("`", "'a`b'", "a`b"),
        ("`", "${X:-`}}", "}"),
        // raw_quotes: quotes stay, their meaning does not change.
        ("quotes", r#"'$A' "$A" x"#, r#"'$A' "a b" x"#),
        ("quotes", r#""\"""#, r#"""""#),
        ("quotes", "''", "''"),
        // raw_escapes: the token stays in front of what it escapes.
        ("escapes", r"a\ b\$A", r"a\ b\$A"),
        ("escapes", r"a\", r"a\"),
        ("escapes", r#""\$A\"""#, r#"\$A\""#),
        // Upstream writes a non-escaping `\` twice inside quotes when raw.
        ("escapes", r#""a\tb""#, r"a\\tb"),
        // `-`, `+` and `?` words are read without raw escapes, patterns with them.
        ("escapes", r"${X:-a\b}", "ab"),
        // skip_unset_env: unset names are left as written, set ones expand.
        ("unset", "$X ${X} $A", "$X ${X} a b"),
        (
            "unset",
            "${X:-d} ${X+y} ${X?m} ${X#p} ${X/p/r}",
            "${X:-d} ${X+y} ${X?m} ${X#p} ${X/p/r}",
        ),
        ("unset", "${X:-$A} ${E:-d}", "${X:-a b} d"),
        ("unset", "${X:=v}", "${X:=v}"),
        ("unset", "$1 $@", "$1 $@"),
        // skip_process_quotes (heredoc bodies): quotes are text, `$` and escapes still work.
        ("noquotes", r#"echo "$A" '$A'"#, r#"echo "a b" 'a b'"#),
        ("noquotes", r#"it's "$E""#, r#"it's """#),
        ("noquotes", r"\$A \\ a\b", r"$A \ ab"),
        // The heredoc-line splitter's combination.
        (
            "quotes escapes unset",
            r#"<<"EOF" $X\ y"#,
            r#"<<"EOF" $X\ y"#,
        ),
        // Defaults, for contrast and for corners not in the upstream vectors.
        ("", "\u{FEFF}$A", "a b"),
        ("", "a\u{FEFF}b", "a\u{FEFF}b"),
        ("", "$A$E$", "a b$"),
        ("", "${A:+x${A}x}", "xa bx"),
        ("", "${E-unset}${E:-empty}", "empty"),
        ("", r#"${X:-"a}b"}"#, "a}b"),
        ("", "${X:-'$A'}", "$A"),
        ("", "${A/ /_}", "a_b"),
        ("", "${X/$E/new}", "new"),
        ("", "${A##* }", "b"),
        ("", "${A%% *}", "a"),
        ("", "$A_x", ""),
        ("", "${A}_x", "a b_x"),
    ];
    let env = env(&[("A", "a b"), ("E", "")]);
    for &(switches, input, expected) in rows {
        let got = lexer_for(switches).process_word(input, &env);
        assert_eq!(got.as_deref(), Ok(expected), "[{switches}] {input:?}");
    }
    assert_eq!(rows.len(), 40);
}

#[test]
fn word_splitting() {
    let rows: &[(&str, &str, &[&str])] = &[
        ("", "  a  b  ", &["a", "b"]),
        ("", r#"a "" b"#, &["a", "b"]),
        ("", "x$A", &["xa", "b"]),
        ("", r#"x"$A""#, &["xa b"]),
        ("", "a\t\nb\u{a0}c", &["a", "b", "c"]),
        ("", r"a\ b", &["a b"]),
        ("", "$E", &[]),
        // Kept whole: the upstream shared-buffer bug would give ["b"] here (see module docs).
        ("", "a${X:-b}", &["ab"]),
        ("", "a${X:-b c}d", &["ab", "cd"]),
        ("", r#"a"${X:-b}""#, &["ab"]),
        // How the parser sees heredoc lines.
        (
            "quotes escapes unset",
            r#"cat <<'E O F' >$OUT"#,
            &["cat", "<<'E O F'", ">$OUT"],
        ),
        ("quotes escapes unset", r"cat <<E\ OF", &["cat", r"<<E\ OF"]),
        (
            "quotes escapes unset",
            "RUN 0<<-EOF $A",
            &["RUN", "0<<-EOF", "a", "b"],
        ),
        ("`", "a` b c", &["a b", "c"]),
    ];
    let env = env(&[("A", "a b"), ("E", "")]);
    for &(switches, input, expected) in rows {
        let got = lexer_for(switches).process_words(input, &env).unwrap();
        assert_eq!(got, expected, "[{switches}] {input:?}");
    }
}

#[test]
fn errors_carry_buildkit_text_and_offsets() {
    let rows: &[(&str, &str, usize)] = &[
        (
            "ab'cd",
            "unexpected end of statement while looking for matching single-quote",
            2,
        ),
        (
            "a \"b",
            "unexpected end of statement while looking for matching double-quote",
            2,
        ),
        ("x${", "syntax error: missing '}'", 1),
        ("x${A", "syntax error: missing '}'", 1),
        ("x${A:-b", "syntax error: missing '}'", 1),
        ("x${A:-\"b}", "syntax error: missing '}'", 1),
        ("x${A/b", "syntax error: missing '/' in ${}", 1),
        ("x${A/b/c", "syntax error: missing '}'", 1),
        ("x${}", "syntax error: bad substitution", 1),
        ("x${:-a}", "syntax error: bad substitution", 1),
        ("x${{A}", "syntax error: bad substitution", 1),
        ("x${A:-${}}", "syntax error: bad substitution", 6),
        ("x${A=b}", "unsupported modifier (=) in substitution", 4),
        ("x${A:=b}", "unsupported modifier (:=) in substitution", 4),
        ("x${A:#b}", "unsupported modifier (:#) in substitution", 4),
        ("x${A:%%b}", "unsupported modifier (:%) in substitution", 4),
        ("x${.}", "unsupported modifier (.) in substitution", 3),
        ("x${X?}", "X: is not allowed to be unset", 1),
        ("x${X:?}", "X: is not allowed to be unset", 1),
        ("x${E:?}", "E: is not allowed to be empty", 1),
        ("x${E:?no $A}", "E: no a b", 1),
        ("x${A#\\x}", "invalid pattern (\\x) in substitution", 1),
        // Patterns keep escape tokens even without `raw_escapes`, so `\ ` reaches the compiler.
        ("x${A#a\\ }", "invalid pattern (a\\ ) in substitution", 1),
        ("x${A/\\x/y}", "invalid pattern (\\x) in substitution", 1),
    ];
    let env = env(&[("A", "a b"), ("E", "")]);
    let lexer = Lexer::new('\\');
    for &(input, message, offset) in rows {
        let err = lexer.process_word(input, &env).unwrap_err();
        assert_eq!(err.to_string(), message, "{input:?}");
        assert_eq!(err.offset(), offset, "{input:?}");
    }
    let err = lexer.process_word("${A%\\x}", &env).unwrap_err();
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("invalid escape '\\x'"));
}

/// Found while fuzzing: each nested `${…}` is a recursion, and a long enough word overflowed the
/// stack.
#[test]
fn nesting_is_limited() {
    let nested = |depth: usize, (open, close): (&str, &str)| {
        format!("x{}v{}", open.repeat(depth), close.repeat(depth))
    };
    let forms = [
        ("${A:-", "}"),
        ("${A/b/", "}"),
        ("${A/", "/}"),
        ("\"${A#", "}\""),
    ];
    let lexer = Lexer::new('\\');
    for form in forms {
        let word = nested(MAX_NESTING, form);
        assert!(lexer.process_word(&word, &EmptyEnv).is_ok(), "{form:?}");
        let err = lexer
            .process_word(&nested(100_000, form), &EmptyEnv)
            .unwrap_err();
        assert!(matches!(err, ShellError::TooDeep { .. }), "{form:?}: {err}");
    }
    let err = lexer
        .process_word(&nested(MAX_NESTING + 1, forms[0]), &EmptyEnv)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "syntax error: substitutions nested more than 100 deep"
    );
    assert_eq!(err.offset(), 1 + 5 * MAX_NESTING);
}

/// Found while fuzzing: every match of `${X//pattern/…}` inserts the replacement, which can be
/// another such substitution, so a few hundred bytes asked for gigabytes and hung.
#[test]
fn substitutions_cannot_explode() {
    let env = env(&[
        ("P", &"x".repeat(30)),
        ("BIG", &"y".repeat(2 * MAX_SUBSTITUTION_LEN)),
    ]);
    let lexer = Lexer::new('\\');
    // 31 insertions of 31 insertions of … : 31^6 ≈ 900 million bytes.
    let word = format!("{}v{}", "${P///".repeat(6), "}".repeat(6));
    let err = lexer.process_word(&word, &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "substitution result is longer than 1048576 bytes"
    );
    // The third level from the outside is the first to pass the limit.
    assert_eq!(err.offset(), 2 * 6);
    // Growth is limited, not size: a value already longer than the limit may be rewritten.
    let value = lexer.process_word("${BIG//y/z}", &env).unwrap();
    assert_eq!(value.len(), 2 * MAX_SUBSTITUTION_LEN);
    assert_eq!(lexer.process_word("${P//x/ab}", &env).unwrap().len(), 60);
}

#[test]
fn matches_record_every_lookup() {
    let lexer = Lexer::new('\\');
    let env = env(&[("A", "a"), ("E", "")]);
    let got = lexer
        .process_word_with_matches("$A ${X:-$E} ${Y/$Z/$A} '$Q' \"$R\" $1", &env)
        .unwrap();
    assert_eq!(got.value, "a  a $Q  ");
    assert_eq!(got.matched, set(&["A", "E"]));
    assert_eq!(got.unmatched, set(&["1", "R", "X", "Y", "Z"]));
}

#[test]
fn environments_last_entry_wins() {
    let strings: Vec<String> = ["A=1", "B", "A=2", "C=x=y"].map(String::from).to_vec();
    assert_eq!(Env::get(&strings, "A"), Some("2"));
    assert_eq!(Env::get(&strings, "B"), Some(""));
    assert_eq!(Env::get(&strings, "C"), Some("x=y"));
    assert_eq!(Env::get(&strings, "a"), None);
    let pairs: Vec<(String, String)> = vec![("A".into(), "1".into()), ("A".into(), "2".into())];
    assert_eq!(Env::get(&pairs, "A"), Some("2"));
    assert_eq!(Env::get(&EmptyEnv, "A"), None);
    let map = env(&[("A", "1")]);
    let by_ref: &dyn Env = &&map;
    assert_eq!(by_ref.get("A"), Some("1"));
    let lexer = Lexer::default();
    assert_eq!(lexer.escape(), '\\');
    assert_eq!(lexer.process_word("$A$B$C", &strings).unwrap(), "2x=y");
}
