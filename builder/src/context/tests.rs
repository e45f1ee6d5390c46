//! The context vectors (fsutil-walk.json, buildkit-integration) and table tests.

use super::*;
use crate::testutil;
use std::os::unix::fs::PermissionsExt;

/// Builds a fsutil test tree (`dir P` with mode 0700, `file P` empty with mode 0644).
fn build_tree(root: &Path, tree: &[serde_json::Value]) {
    for line in tree {
        let line = line.as_str().unwrap();
        let (kind, path) = line.split_once(' ').unwrap();
        let path = root.join(path);
        match kind {
            "dir" => {
                fs::create_dir(&path).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
            }
            "file" => {
                fs::write(&path, b"").unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            }
            other => panic!("unknown tree entry kind {other}"),
        }
    }
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().map_or_else(Vec::new, |a| {
        a.iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    })
}

fn filter_of(value: &serde_json::Value) -> WalkFilter {
    WalkFilter {
        include_patterns: strings(&value["include_patterns"]),
        exclude_patterns: strings(&value["exclude_patterns"]),
    }
}

fn render(entries: &[WalkEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match e.file_type {
            FileType::Dir => format!("dir {}", e.path),
            FileType::File => format!("file {}", e.path),
            other => format!("{other:?} {}", e.path),
        })
        .collect()
}

/// Runs `f` in a thread whose credentials are an unprivileged user owning `root`'s tree, so
/// that mode 0000 directories are really unreadable. Linux credentials are per thread, and
/// rustix changes only the calling thread's. `None` when the switch is not permitted.
fn unprivileged<T: Send>(root: &Path, f: impl FnOnce() -> T + Send) -> Option<T> {
    use rustix::fs::{Gid, Uid};
    if !rustix::process::geteuid().is_root() {
        return Some(f());
    }
    const NOBODY: u32 = 65534;
    chown_tree(root, NOBODY);
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::set_thread_groups(&[]).ok()?;
            rustix::thread::set_thread_gid(Gid::from_raw(NOBODY)).ok()?;
            rustix::thread::set_thread_uid(Uid::from_raw(NOBODY)).ok()?;
            Some(f())
        })
        .join()
        .unwrap()
    })
}

fn chown_tree(path: &Path, id: u32) {
    std::os::unix::fs::lchown(path, Some(id), Some(id)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), id);
        }
    }
}

#[test]
fn fsutil_walk_vectors() {
    let Some(dir) = testutil::conformance_dir() else {
        return;
    };
    let json: serde_json::Value =
        serde_json::from_slice(&testutil::read(&dir, "dockerignore/fsutil-walk.json")).unwrap();
    let cases = json["cases"].as_array().unwrap();
    let (mut walks, mut opens, mut stacked, mut errors, mut unprivileged_runs) = (0, 0, 0, 0, 0);
    for case in cases {
        let test = case["test"].as_str().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        build_tree(root, case["tree"].as_array().unwrap());
        let filter = filter_of(case);
        let desc = format!("{test} {filter:?}");

        let result = if case.get("requires").is_some() {
            // TestWalkerPermissionDenied: foo/bar is unreadable to an unprivileged user.
            fs::set_permissions(root.join("foo/bar"), fs::Permissions::from_mode(0o000)).unwrap();
            let Some(result) = unprivileged(root, || walk(root, &filter)) else {
                crate::testutil::skip(&format!("{desc}: cannot switch to an unprivileged user"));
                continue;
            };
            unprivileged_runs += 1;
            result
        } else if let Some(layers) = case.get("stacked_filters") {
            stacked += 1;
            let layers: Vec<WalkFilter> =
                layers.as_array().unwrap().iter().map(filter_of).collect();
            walk_layered(root, &layers)
        } else {
            walk(root, &filter)
        };

        if let Some(expected) = case["expect_error"].as_str() {
            errors += 1;
            let err = result.expect_err(&desc);
            if expected.contains("permission denied") {
                assert!(
                    matches!(&err, ContextError::ReadDir { path, source }
                        if path == "foo/bar" && source.kind() == io::ErrorKind::PermissionDenied),
                    "{desc}: {err:?}"
                );
            } else {
                assert!(
                    matches!(
                        err,
                        ContextError::InvalidPatterns {
                            kind: PatternKind::Exclude,
                            source: IgnoreError::LoneExclamation
                        }
                    ),
                    "{desc}: {err:?}"
                );
                assert!(filter.admits("foo").is_err(), "{desc}");
            }
            continue;
        }
        let entries = result.unwrap_or_else(|e| panic!("{desc}: {e:?}"));
        if case.get("expected_walk").is_some() {
            walks += 1;
            assert_eq!(render(&entries), strings(&case["expected_walk"]), "{desc}");
        }
        for path in strings(&case["open_ok"]) {
            opens += 1;
            assert!(filter.admits(&path).unwrap(), "{desc}: open {path}");
            assert!(root.join(&path).is_file(), "{desc}: {path} exists");
        }
        for path in strings(&case["open_not_exist"]) {
            opens += 1;
            assert!(!filter.admits(&path).unwrap(), "{desc}: open {path}");
        }
    }
    assert_eq!(cases.len(), 34);
    assert_eq!((stacked, opens), (2, 7));
    // The five permission cases (three walks, two errors) run together or not at all.
    match unprivileged_runs {
        5 => assert_eq!((walks, errors), (29, 3)),
        0 => assert_eq!((walks, errors), (26, 1)),
        n => panic!("{n} of 5 unprivileged cases ran"),
    }
}

/// The three BuildKit integration cases, at the level of this module: which ignore file is
/// picked, and what the walk of the context sends.
#[test]
fn buildkit_integration_vectors() {
    let Some(dir) = testutil::conformance_dir() else {
        return;
    };
    let base = dir.join("dockerignore/buildkit-integration");
    let expected = |case: &str| -> serde_json::Value {
        serde_json::from_slice(&testutil::read(&base, &format!("{case}/expected.json"))).unwrap()
    };
    let sent = |context: &Path, patterns: Vec<String>| -> Vec<String> {
        let entries = walk(context, &WalkFilter::excluding(patterns)).unwrap();
        entries.into_iter().map(|e| e.path).collect()
    };
    let mut checked = 0;

    // basic: the root .dockerignore applies, and excludes even itself and the Dockerfile.
    let context = base.join("basic/context");
    let (patterns, used) = load_ignore(&context, &context.join("Dockerfile")).unwrap();
    assert_eq!(used, Some(context.join(".dockerignore")));
    assert_eq!(patterns, ["ba*", "Dockerfile", "!bay", ".dockerignore"]);
    let files = sent(&context, patterns);
    let want = expected("basic");
    for (name, contents) in want["expect_files"].as_object().unwrap() {
        assert!(files.contains(name), "basic: {name} sent");
        assert_eq!(
            fs::read_to_string(context.join(name)).unwrap(),
            contents.as_str().unwrap()
        );
    }
    for name in strings(&want["expect_absent"]) {
        assert!(!files.contains(&name), "basic: {name} not sent");
    }
    assert_eq!(files, ["bay", "foo"]);
    checked += 1;

    // invalid: a lone `!` fails the build.
    let context = base.join("invalid/context");
    assert!(!expected("invalid")["expect_success"].as_bool().unwrap());
    let (patterns, _) = load_ignore(&context, &context.join("Dockerfile")).unwrap();
    assert_eq!(
        PatternMatcher::new(&patterns).err(),
        Some(IgnoreError::LoneExclamation)
    );
    assert!(matches!(
        walk(&context, &WalkFilter::excluding(patterns)),
        Err(ContextError::InvalidPatterns {
            kind: PatternKind::Exclude,
            ..
        })
    ));
    checked += 1;

    // per-dockerfile-override: each Dockerfile's own ignore file; its RUN line says which of
    // `foo` and `bar` must be present (`[ -f x ]`) or absent (`[ ! -f x ]`).
    let context = base.join("per-dockerfile-override/context");
    assert!(
        expected("per-dockerfile-override")["expect_success"]
            .as_bool()
            .unwrap()
    );
    for dockerfile in ["Dockerfile", "Dockerfile2"] {
        let path = context.join(dockerfile);
        let (patterns, used) = load_ignore(&context, &path).unwrap();
        assert_eq!(
            used,
            Some(context.join(format!("{dockerfile}.dockerignore")))
        );
        let files = sent(&context, patterns);
        let text = fs::read_to_string(&path).unwrap();
        let run = text.lines().find(|l| l.starts_with("RUN ")).unwrap();
        let mut assertions = 0;
        for test in run.split("&&") {
            let words: Vec<&str> = test
                .split_whitespace()
                .filter(|w| !["RUN", "[", "]"].contains(w))
                .collect();
            match words.as_slice() {
                ["-f", name] => {
                    assert!(files.iter().any(|f| f == name), "{dockerfile}: {name} sent")
                }
                ["!", "-f", name] => assert!(
                    !files.iter().any(|f| f == name),
                    "{dockerfile}: {name} not sent"
                ),
                other => panic!("unexpected test {other:?}"),
            }
            assertions += 1;
        }
        assert_eq!(assertions, 2);
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn ignore_file_selection() {
    /// (files present as (name, text), Dockerfile, ignore file expected, patterns expected)
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        &'a str,
        Option<&'a str>,
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (&[], "Dockerfile", None, &[]),
        (
            &[(".dockerignore", "a\n")],
            "Dockerfile",
            Some(".dockerignore"),
            &["a"],
        ),
        (
            &[(".dockerignore", "a\n"), ("Dockerfile.dockerignore", "b\n")],
            "Dockerfile",
            Some("Dockerfile.dockerignore"),
            &["b"],
        ),
        (
            &[("Dockerfile.dockerignore", "b\n")],
            "Dockerfile",
            Some("Dockerfile.dockerignore"),
            &["b"],
        ),
        (
            &[(".dockerignore", "a\n"), ("Dockerfile.dockerignore", "b\n")],
            "other.Dockerfile",
            Some(".dockerignore"),
            &["a"],
        ),
        (
            &[
                (".dockerignore", "a\n"),
                ("sub/app.Dockerfile.dockerignore", "/c/\n"),
            ],
            "sub/app.Dockerfile",
            Some("sub/app.Dockerfile.dockerignore"),
            &["c"],
        ),
        // An empty Dockerfile-specific file still replaces the root one.
        (
            &[(".dockerignore", "a\n"), ("Dockerfile.dockerignore", "")],
            "Dockerfile",
            Some("Dockerfile.dockerignore"),
            &[],
        ),
    ];
    for (files, dockerfile, want_used, want_patterns) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let context = tmp.path();
        fs::create_dir(context.join("sub")).unwrap();
        for (name, text) in *files {
            fs::write(context.join(name), text).unwrap();
        }
        let (patterns, used) = load_ignore(context, &context.join(dockerfile)).unwrap();
        assert_eq!(
            used,
            want_used.map(|u| context.join(u)),
            "{files:?} {dockerfile}"
        );
        assert_eq!(patterns, *want_patterns, "{files:?} {dockerfile}");
    }

    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(".dockerignore"), b"\xff\n").unwrap();
    assert!(matches!(
        load_ignore(tmp.path(), &tmp.path().join("Dockerfile")),
        Err(ContextError::IgnoreFileNotUtf8 { .. })
    ));
    fs::create_dir(tmp.path().join("Dockerfile.dockerignore")).unwrap();
    assert!(matches!(
        load_ignore(tmp.path(), &tmp.path().join("Dockerfile")),
        Err(ContextError::ReadIgnoreFile { .. })
    ));
}

#[test]
fn walk_order_types_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for d in ["a", "a/sub", "B"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    for f in ["a.b", "a-b", "ab", "a/sub/x", "B/y", "é"] {
        fs::write(root.join(f), b"x").unwrap();
    }
    std::os::unix::fs::symlink("a", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", root.join("dangling")).unwrap();

    let all = walk(root, &WalkFilter::default()).unwrap();
    let got: Vec<(&str, FileType)> = all.iter().map(|e| (e.path.as_str(), e.file_type)).collect();
    assert_eq!(
        got,
        [
            ("B", FileType::Dir),
            ("B/y", FileType::File),
            ("a", FileType::Dir),
            ("a/sub", FileType::Dir),
            ("a/sub/x", FileType::File),
            ("a-b", FileType::File),
            ("a.b", FileType::File),
            ("ab", FileType::File),
            ("dangling", FileType::Symlink),
            ("link", FileType::Symlink),
            ("é", FileType::File),
        ]
    );

    // Symlinks are matched by their own path, and never followed into.
    let filter = WalkFilter::excluding(vec!["a".into(), "!link/sub".into()]);
    let paths: Vec<String> = walk(root, &filter)
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(
        paths,
        ["B", "B/y", "a-b", "a.b", "ab", "dangling", "link", "é"]
    );

    // Include patterns: only what they name, with its parents.
    let filter = WalkFilter {
        include_patterns: vec!["a/sub/x".into(), "B".into()],
        exclude_patterns: vec!["B/y".into()],
    };
    let paths: Vec<String> = walk(root, &filter)
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["B", "a", "a/sub", "a/sub/x"]);

    assert!(matches!(
        walk(&root.join("ab"), &WalkFilter::default()),
        Err(ContextError::NotADirectory { .. })
    ));
    assert!(matches!(
        walk(&root.join("missing"), &WalkFilter::default()),
        Err(ContextError::Resolve { .. })
    ));
    let bad = WalkFilter {
        include_patterns: vec!["[".into()],
        exclude_patterns: Vec::new(),
    };
    assert!(matches!(
        walk(root, &bad),
        Err(ContextError::InvalidPatterns {
            kind: PatternKind::Include,
            source: IgnoreError::BadPattern { .. }
        })
    ));
    // A pattern that only fails when matched fails the walk when it is reached.
    let bad = WalkFilter::excluding(vec!["[Local-Only]".into()]);
    assert!(matches!(
        walk(root, &bad),
        Err(ContextError::Match {
            kind: PatternKind::Exclude,
            ..
        })
    ));
}

#[test]
fn non_utf8_names_are_errors() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(std::ffi::OsStr::from_bytes(b"\xff")), b"").unwrap();
    assert!(matches!(
        walk(tmp.path(), &WalkFilter::default()),
        Err(ContextError::NonUtf8Name { .. })
    ));
}
