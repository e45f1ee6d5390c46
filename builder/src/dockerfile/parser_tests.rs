//! Parser tests: BuildKit's parser corpus (`testfiles/` dumps, negative cases, line numbers,
//! heredoc and JSON vectors) and our own table of edge cases.

use super::*;
use crate::dockerfile::heredoc::{chomp, parse_heredoc};
use crate::testutil::{conformance_dir, read};
use serde_json::Value;

fn corpus_json(rel: &str) -> Option<Value> {
    let dir = conformance_dir()?;
    Some(serde_json::from_slice(&read(&dir, rel)).unwrap())
}

#[test]
fn buildkit_testfiles_dump_exactly() {
    let Some(dir) = conformance_dir() else { return };
    let mut cases: Vec<_> = std::fs::read_dir(dir.join("buildkit-parser/testfiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        let source = String::from_utf8(std::fs::read(case.join("Dockerfile")).unwrap()).unwrap();
        let expected = String::from_utf8(std::fs::read(case.join("result")).unwrap()).unwrap();
        match parse(&source) {
            Ok(file) if file.dump() + "\n" == expected => {}
            Ok(file) => failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{}\n",
                case.display(),
                file.dump()
            )),
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(cases.len(), 33);
}

#[test]
fn buildkit_negative_cases_fail_with_upstream_messages() {
    let Some(dir) = conformance_dir() else { return };
    let cases = [
        ("empty_dockerfile", "file with no instructions"),
        ("only_comments", "file with no instructions"),
        ("env_no_value", "ENV must have two arguments"),
        ("shykes-nested-json", NOT_STRING_ARRAY),
    ];
    for (case, message) in cases {
        let source = String::from_utf8(read(
            &dir,
            &format!("buildkit-parser/testfiles-negative/{case}/Dockerfile"),
        ))
        .unwrap();
        let err = parse(&source).expect_err(case);
        assert_eq!(err.message, message, "{case}");
    }
    let negative = std::fs::read_dir(dir.join("buildkit-parser/testfiles-negative"))
        .unwrap()
        .count();
    assert_eq!(negative, cases.len());
}

#[test]
fn buildkit_line_numbers() {
    let Some(dir) = conformance_dir() else { return };
    let expected = corpus_json("buildkit-parser/testfile-line/expected-lines.json").unwrap();
    let source = String::from_utf8(read(&dir, "buildkit-parser/testfile-line/Dockerfile")).unwrap();
    let file = parse(&source).unwrap();
    let children = expected["children"].as_array().unwrap();
    assert_eq!(file.instructions.len(), children.len());
    for (node, want) in file.instructions.iter().zip(children) {
        assert_eq!(node.keyword, want["instruction"].as_str().unwrap());
        assert_eq!(
            node.location.start_line as u64,
            want["start_line"].as_u64().unwrap()
        );
        assert_eq!(
            node.location.end_line as u64,
            want["end_line"].as_u64().unwrap()
        );
    }
    let root = &expected["root"];
    assert_eq!(
        file.instructions[0].location.start_line as u64,
        root["start_line"].as_u64().unwrap()
    );
    assert_eq!(
        file.instructions.last().unwrap().location.end_line as u64,
        root["end_line"].as_u64().unwrap()
    );
}

fn heredocs_json(node: &Node) -> Value {
    if node.heredocs.is_empty() {
        return Value::Null;
    }
    node.heredocs
        .iter()
        .map(|h| {
            serde_json::json!({
                "Name": h.name, "FileDescriptor": h.file_descriptor, "Expand": h.expand,
                "Chomp": h.chomp, "Content": h.content,
            })
        })
        .collect()
}

#[test]
fn buildkit_heredoc_extraction() {
    let Some(dir) = conformance_dir() else { return };
    let mut checked = 0;
    for case in ["extracts-heredoc", "json-form-no-heredoc"] {
        let base = format!("buildkit-parser/heredoc/{case}");
        let source = String::from_utf8(read(&dir, &format!("{base}/Dockerfile"))).unwrap();
        let file = parse(&source).unwrap();
        let expected = corpus_json(&format!("{base}/expected-heredocs.json")).unwrap();
        for child in expected["children"].as_array().unwrap() {
            let index = child["child_index"].as_u64().unwrap() as usize;
            let node = &file.instructions[index];
            assert_eq!(
                heredocs_json(node),
                child["heredocs"],
                "{case} child {index}: {}",
                node.original
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 31);
}

#[test]
fn buildkit_heredoc_words() {
    let words = corpus_json("buildkit-parser/heredoc/heredoc-words.json");
    let Some(words) = words else { return };
    let mut checked = 0;
    for word in words["parseHeredoc"]["valid"].as_array().unwrap() {
        let doc = parse_heredoc(word.as_str().unwrap())
            .unwrap()
            .expect("a heredoc");
        assert_eq!(doc.name, "EOF", "{word}");
        checked += 1;
    }
    for word in words["parseHeredoc"]["invalid"].as_array().unwrap() {
        assert!(parse_heredoc(word.as_str().unwrap()).is_err(), "{word}");
        checked += 1;
    }
    for word in words["parseHeredoc"]["not_heredoc"].as_array().unwrap() {
        assert_eq!(
            parse_heredoc(word.as_str().unwrap()).unwrap(),
            None,
            "{word}"
        );
        checked += 1;
    }
    for case in words["heredocsFromLine"]["cases"].as_array().unwrap() {
        let names: Vec<String> = heredoc::heredocs_from_line(case["line"].as_str().unwrap())
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect();
        let want: Vec<String> = serde_json::from_value(case["heredoc_names"].clone()).unwrap();
        assert_eq!(names, want, "{}", case["line"]);
        checked += 1;
    }
    for case in words["chompHeredocContent"]["cases"].as_array().unwrap() {
        assert_eq!(
            chomp(case["input"].as_str().unwrap()),
            case["expected"].as_str().unwrap()
        );
        checked += 1;
    }
    assert_eq!(checked, 9 + 4 + 7 + 10 + 1);
}

#[test]
fn buildkit_json_arrays() {
    let Some(vectors) = corpus_json("buildkit-parser/json-arrays.json") else {
        return;
    };
    let mut checked = 0;
    for case in vectors["valid"].as_array().unwrap() {
        let want: Vec<String> = serde_json::from_value(case["expected"].clone()).unwrap();
        assert_eq!(
            parse_json(case["input"].as_str().unwrap()),
            Ok(Some(want)),
            "{case}"
        );
        checked += 1;
    }
    for input in vectors["invalid_not_string_array"].as_array().unwrap() {
        assert_eq!(
            parse_json(input.as_str().unwrap()),
            Err(NOT_STRING_ARRAY.to_owned())
        );
        let err = parse(&format!("CMD {}", input.as_str().unwrap())).unwrap_err();
        assert_eq!(err.message, NOT_STRING_ARRAY);
        checked += 1;
    }
    assert_eq!(checked, 16);
}

/// Our own table: (source, dump or `Err(message)`).
#[test]
fn edge_cases() {
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("FROM a\r\nRUN b\r\n", Ok("(from \"a\")\n(run \"b\")")),
        ("\u{feff}FROM a", Ok("(from \"a\")")),
        ("  # comment\n\tFROM a", Ok("(from \"a\")")),
        ("RUN a \\\n  # inner comment\n\n  b", Ok("(run \"a   b\")")),
        ("RUN a \\", Ok("(run \"a\")")),
        ("RUN a\\\\\nRUN b", Ok("(run \"a\\\\\\\\\")\n(run \"b\")")),
        ("# escape=`\nRUN a `\n b", Ok("(run \"a  b\")")),
        ("# ESCAPE = ` \nRUN a `\n b", Ok("(run \"a  b\")")),
        (
            "# escape=x\nFROM a",
            Err("invalid escape token 'x' does not match ` or \\"),
        ),
        (
            "# escape=\\\n# escape=`\nFROM a",
            Err("only one escape parser directive can be used"),
        ),
        (
            "# syntax=docker/dockerfile:1\n# check=skip=all\nFROM a",
            Ok("(from \"a\")"),
        ),
        (
            "FROM a\n# escape=`\nRUN a `",
            Ok("(from \"a\")\n(run \"a `\")"),
        ),
        ("runn foo", Ok("(runn \"\")")),
        ("RUN <<EOF\n", Err("unterminated heredoc \"EOF\"")),
        (
            "ONBUILD ONBUILD RUN x",
            Ok("(onbuild (onbuild (run \"x\")))"),
        ),
        (
            "ONBUILD ONBUILD --x ONBUILD RUN x",
            Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ),
        (
            "ONBUILD RUN <<EOF\nhi\nEOF",
            Ok("(onbuild (run \"<<EOF\"))"),
        ),
        (
            "COPY --from=a --chown=\"x y\" a b",
            Ok("(copy [\"--from=a\" \"--chown=x y\"] \"a\" \"b\")"),
        ),
        (
            "LABEL a=\"b c\" d=e",
            Ok("(label \"a\" \"\\\"b c\\\"\" \"=\" \"d\" \"e\" \"=\")"),
        ),
        (
            "ENV a=b c",
            Err("Syntax error - can't find = in \"c\". Must be of the form: name=value"),
        ),
        ("", Err("file with no instructions")),
        ("\n\n# only\n", Err("file with no instructions")),
    ];
    for (source, want) in cases {
        let got = parse(source).map(|f| f.dump()).map_err(|e| e.message);
        assert_eq!(got.as_deref().map_err(String::as_str), *want, "{source:?}");
    }
}

#[test]
fn locations_cover_continuations_and_heredocs() {
    let source = "FROM a\n\nRUN x \\\n  y\nCOPY <<EOF /f\nbody\nEOF\nUSER me\n";
    let file = parse(source).unwrap();
    let lines: Vec<(usize, usize)> = file
        .instructions
        .iter()
        .map(|n| (n.location.start_line, n.location.end_line))
        .collect();
    assert_eq!(lines, [(1, 1), (3, 4), (5, 7), (8, 8)]);
    let spans: Vec<&str> = file
        .instructions
        .iter()
        .map(|n| &source[n.location.span.start..n.location.span.end])
        .collect();
    assert_eq!(
        spans,
        [
            "FROM a\n",
            "RUN x \\\n  y\n",
            "COPY <<EOF /f\nbody\nEOF\n",
            "USER me\n"
        ]
    );
    assert_eq!(file.instructions[2].heredocs[0].content, "body\n");
}

/// Found while fuzzing: parsing recursed once per ONBUILD, and continuation lines join any number
/// of them, so a long enough chain overflowed the stack.
#[test]
fn onbuild_chains_do_not_recurse() {
    let source = format!("FROM a\n{}RUN x", "ONBUILD \\\n".repeat(100_000));
    let err = parse(&source).unwrap_err();
    assert_eq!(
        err.message,
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(err.location.start_line, 2);
}

#[test]
fn long_lines_and_warnings() {
    let long = format!("RUN {}", "x".repeat(MAX_LINE_LEN));
    let err = parse(&long).unwrap_err();
    assert_eq!(
        err.message,
        "dockerfile line greater than max allowed size of 65535"
    );
    assert_eq!(err.location.start_line, 1);
    let file = parse("FROM a\nRUN a \\\n\n b").unwrap();
    assert_eq!(file.warnings.len(), 1);
    assert_eq!(file.warnings[0].location.start_line, 2);
}

#[test]
fn go_quote_table() {
    let cases = [
        ("a b", r#""a b""#),
        ("\"\\", r#""\"\\""#),
        ("\u{0}\u{7f}", r#""\x00\x7f""#),
        ("♥☃", "\"♥☃\""),
        ("\u{200b}\u{feff}", r#""\u200b\ufeff""#),
        ("\t\n\r\u{b}\u{c}\u{8}\u{7}", r#""\t\n\r\v\f\b\a""#),
    ];
    for (input, want) in cases {
        assert_eq!(go_quote(input), want, "{input:?}");
    }
}

#[test]
fn comments_before_an_instruction() {
    let file = parse(
        "# check=skip=all\n# about a\n\n  # a the stage\nFROM x AS a\nRUN a \\\n# inside\n b\n# x\n#\n# y\nARG y\nRUN z\n",
    )
    .unwrap();
    let comments: Vec<Vec<&str>> = file
        .instructions
        .iter()
        .map(|n| n.comments.iter().map(String::as_str).collect())
        .collect();
    // The directive is not a comment; a blank line keeps them; a bare `#` clears them; comments
    // inside a continuation belong to nothing; each instruction takes them.
    assert_eq!(
        comments,
        [vec!["about a", "a the stage"], vec![], vec!["y"], vec![]]
    );
    assert_eq!(file.directives[0].name, "check");
}
