//! kiln's one integration-test binary: it drives the real `kiln` binary end to end.

mod images;
mod support;

/// The `kiln` binary under test.
fn kiln() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
}

#[test]
fn version_prints() {
    let out = kiln().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("kiln "));
}
