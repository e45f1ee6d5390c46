//! Helpers shared by the integration tests: finding external tools (skipping outside CI,
//! failing under `CI=true`), running `kiln` against a private store, and fixtures.

pub mod busybox;
pub mod podman;
pub mod registry;
pub mod registry_image;
pub mod registry_proxy;
pub mod registry_token;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `SOURCE_DATE_EPOCH` for every kiln the tests run, so image digests are reproducible.
pub const EPOCH: &str = "1700000000";

/// Finds an external tool on `PATH`. Outside CI a missing tool skips the caller (with a
/// message); under `CI=true` it fails the test, so nothing is skipped silently there.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{name} is required under CI=true but is not on PATH");
        }
        eprintln!("skipping: {name} not found on PATH");
    }
    found
}

/// Runs a command, asserting it succeeds; returns its standard output.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A private kiln store in a temporary directory.
pub struct Kiln {
    /// Scratch space for the test, holding the store.
    pub dir: tempfile::TempDir,
    /// The store root (`--root`).
    pub root: PathBuf,
}

impl Kiln {
    /// A new, empty store.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        Self { dir, root }
    }

    /// A `kiln` command on this store, with a pinned `SOURCE_DATE_EPOCH`.
    pub fn cmd(&self) -> Command {
        let mut cmd = crate::kiln(&self.root);
        cmd.env("SOURCE_DATE_EPOCH", EPOCH);
        cmd
    }

    /// Runs kiln with `args`.
    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs kiln with `args`, asserting success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        run(self.cmd().args(args))
    }

    /// Runs kiln with `args`, asserting exit code 1; returns standard output and error.
    pub fn fails(&self, args: &[&str]) -> (String, String) {
        let out = self.output(args);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "kiln {args:?} should fail with 1:\n{stdout}\n{stderr}"
        );
        (stdout, stderr)
    }

    /// A path in the test's scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The store's OCI layout directory.
    pub fn oci_dir(&self) -> PathBuf {
        self.root.join("oci")
    }

    /// The store, opened through the library.
    pub fn store(&self) -> kiln_builder::store::Store {
        kiln_builder::store::Store::open(&self.root).unwrap()
    }

    /// How many blobs the store holds.
    pub fn blob_count(&self) -> usize {
        fs::read_dir(self.oci_dir().join("blobs/sha256"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// The names in a directory, sorted (a failed write must leave no temporary file behind).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Whether this runs as root; outside CI, when not, says that `what` is skipped; under
/// `CI=true` a missing root fails the test instead.
pub fn root_or_skip(what: &str) -> bool {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} need root under CI"
        );
        eprintln!("skipping: {what} need root");
        return false;
    }
    true
}

/// A store with `busybox:latest` imported, or `None` (after saying so) when the fixture or the
/// privileges are missing outside CI.
pub fn with_busybox() -> Option<Kiln> {
    if !root_or_skip("build tests") {
        return None;
    }
    let tar = busybox::busybox_rootfs_tar()?;
    let kiln = Kiln::new();
    kiln.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    Some(kiln)
}

/// Whether the tests run as root (the sandbox and overlay snapshots need it).
pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        == Some("0")
}

/// Writes a build context `ctx` in the test's directory: the Dockerfile and `files` (path,
/// content).
pub fn context(kiln: &Kiln, dockerfile: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = kiln.path("ctx");
    write_context(&dir, dockerfile, files);
    dir
}

/// Writes the Dockerfile and `files` (path, content) into the directory `dir`.
pub fn write_context(dir: &Path, dockerfile: &str, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (path, body) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }
}

/// `kiln inspect NAME`, parsed: the image's object.
pub fn inspect(kiln: &Kiln, name: &str) -> serde_json::Value {
    let out = kiln.ok(&["inspect", name]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

/// The mount points at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap();
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(dir))
        .map(str::to_owned)
        .collect()
}

/// Waits (20 s at most, else the test fails) until `done`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Processes whose command line (arguments joined by NULs) contains `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// A child process that a failing test does not leave running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SIGINT lets kiln take its mounts down; then reap it.
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}

/// Starts `build` (a `kiln build --progress=plain` of a Dockerfile whose RUN prints `started`,
/// then sleeps with `marker` in its command line) and returns once the sleep runs, with the
/// rest of kiln's standard error to read.
pub fn spawn_until_sleeping(
    mut build: Command,
    marker: &str,
) -> (
    KillOnDrop,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead as _;
    let mut child = KillOnDrop(build.stderr(std::process::Stdio::piped()).spawn().unwrap());
    let mut lines = std::io::BufReader::new(child.0.stderr.take().unwrap()).lines();
    // The RUN's output line: `#N started` in plain progress.
    for line in lines.by_ref() {
        if line.unwrap().split(' ').nth(1) == Some("started") {
            break;
        }
    }
    // `started` is printed just before the sleep begins.
    wait_until("the RUN to sleep", || !processes_with(marker).is_empty());
    (child, lines)
}

/// The steps a build printed with `--progress=plain`, in the order they started, as
/// `(cached, instruction)`: `#N [stage n/total] INSTRUCTION` starts step N and `#N CACHED`
/// ends it from the cache.
pub fn plain_steps(stderr: &str) -> Vec<(bool, String)> {
    let mut steps: Vec<(String, bool, String)> = Vec::new();
    for line in stderr.lines() {
        let Some((id, rest)) = line.strip_prefix('#').and_then(|l| l.split_once(' ')) else {
            continue;
        };
        if let Some((_, instruction)) = rest.strip_prefix('[').and_then(|r| r.split_once("] ")) {
            steps.push((id.to_owned(), false, instruction.to_owned()));
        } else if (rest == "CACHED" || rest.starts_with("CACHED (from "))
            && let Some(step) = steps.iter_mut().find(|(i, ..)| i == id)
        {
            step.1 = true;
        }
    }
    steps.into_iter().map(|(_, c, i)| (c, i)).collect()
}
