//! kiln against the real registry server (`docker-registry`, CNCF distribution): push, pull,
//! mounts and multi-platform indexes; basic auth, login/logout and credential helpers; bearer
//! tokens; TLS with a test CA; faults injected by a proxy; and interop with skopeo.
//!
//! Each test starts its own registry on a free loopback port (see `support::registry`), makes
//! its images with the library straight into a private store, and drives the `kiln` binary.

mod auth;
mod faults;
mod interop;
mod library;
mod push_pull;
mod tls;
mod token;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_builder::store::Store;
use tempfile::TempDir;

use crate::text;

/// A kiln with its own store, docker config and certs.d (empty), so nothing of the machine's
/// leaks in.
#[derive(Debug)]
pub struct Kiln {
    dir: TempDir,
}

impl Kiln {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::create_dir_all(dir.path().join("certs.d")).unwrap();
        Self { dir }
    }

    /// The store root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn store(&self) -> Store {
        Store::open(self.root()).unwrap()
    }

    /// `$DOCKER_CONFIG`.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    /// `$KILN_CERTS_D`.
    pub fn certs_d(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = crate::kiln(&self.root());
        cmd.env("DOCKER_CONFIG", self.docker_config())
            .env("KILN_CERTS_D", self.certs_d())
            .env_remove("KILN_LOG");
        cmd
    }

    /// Runs kiln with `args`: exit code, stdout, stderr.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        outcome(&out)
    }

    /// Runs kiln with `args`, which must succeed; returns stdout's first line (the digest for
    /// pull and push) and stderr.
    pub fn ok(&self, args: &[&str]) -> (String, String) {
        let (code, stdout, stderr) = self.run(args);
        assert_eq!(code, 0, "kiln {args:?} failed:\n{stderr}");
        (stdout.lines().next().unwrap_or_default().to_owned(), stderr)
    }

    /// The digest a tag points at in this kiln's store.
    pub fn tagged(&self, name: &str) -> Option<String> {
        self.store()
            .resolve(name)
            .unwrap()
            .map(|d| d.digest().to_string())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn outcome(out: &Output) -> (i32, String, String) {
    let (stdout, stderr) = text(out);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}
