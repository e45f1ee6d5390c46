//! Helpers shared by the unit tests: where the upstream conformance vectors live, and how a
//! test skips when a prerequisite is missing.
//!
//! The vectors sit in `shared/conformance/` beside the checkout (they are upstream data, kept out
//! of the repository). Outside CI a checkout without them skips those tests with a message; under
//! `CI=true` a missing corpus fails the run, so nothing is skipped silently.

use std::path::PathBuf;

/// The conformance corpus directory, or `None` (after saying so) when it is absent outside CI.
///
/// `KILN_CONFORMANCE_DIR` overrides the default `../shared/conformance` next to the checkout.
pub(crate) fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    skip(&format!(
        "conformance corpus not found at {} (set KILN_CONFORMANCE_DIR)",
        dir.display()
    ));
    None
}

/// A test's prerequisite is missing: outside CI say so and let the test return; under `CI=true`
/// fail, because nothing may be skipped silently there.
pub(crate) fn skip(reason: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "required under CI=true: {reason}"
    );
    eprintln!("skipping: {reason}");
}

/// Reads a file of the conformance corpus as bytes, panicking with the path on failure.
pub(crate) fn read(dir: &std::path::Path, rel: &str) -> Vec<u8> {
    let path = dir.join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
