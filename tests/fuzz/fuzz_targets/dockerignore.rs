//! `.dockerignore` patterns (`kiln_builder::ignore`): any file text is read into patterns, which
//! compile or fail with a typed error, and matching any path either answers or fails with one.
//! Where no `!` pattern exists, the walker's incremental form (`matches_using_parent_results`,
//! fed each parent directory's result) answers exactly what matching the whole path from scratch
//! does. (With `!` patterns the two legitimately differ, as upstream's do: the incremental form
//! skips patterns that cannot change a directory's own outcome.)
//!
//! Input: the `.dockerignore` text, then a NUL byte and the paths to match, one per line.

#![no_main]

use kiln_builder::ignore::{MatchInfo, PatternMatcher, parse_ignore_file};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 6] = [
    "a",
    "a/b",
    "a/b/c.txt",
    ".git/config",
    "docs/x.md",
    "x y/z\\w",
];

fuzz_target!(|input: &str| {
    let (text, paths) = match input.split_once('\0') {
        Some((text, paths)) => (text, paths.lines().collect()),
        None => (input, PATHS.to_vec()),
    };
    let patterns = parse_ignore_file(text);
    let Ok(matcher) = PatternMatcher::new(&patterns) else {
        return;
    };
    assert!(matcher.patterns().len() <= patterns.len());
    for path in paths {
        let whole = matcher.matches_or_parent_matches(path);
        let components: Vec<&str> = path
            .split('/')
            .filter(|c| !matches!(*c, "" | "." | ".."))
            .collect();
        let mut info = MatchInfo::default();
        let mut incremental = Ok(false);
        for end in 1..=components.len() {
            let prefix = components[..end].join("/");
            match matcher.matches_using_parent_results(&prefix, &info) {
                Ok((matched, next)) => {
                    incremental = Ok(matched);
                    info = next;
                }
                Err(e) => {
                    incremental = Err(e);
                    break;
                }
            }
        }
        let clean = components.join("/");
        if matcher.exclusions() || path.is_empty() || clean != path {
            continue;
        }
        if let (Ok(whole), Ok(incremental)) = (whole, incremental) {
            assert_eq!(whole, incremental, "{path:?} against {patterns:?}");
        }
    }
});
