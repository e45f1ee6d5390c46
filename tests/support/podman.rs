//! podman for the tests: private storage in a temporary directory, usable without systemd or a
//! configured cgroup manager, and root filesystems for containers that run kiln itself (the
//! busybox tree plus the kiln binary, `newuidmap`/`newgidmap` with file capabilities, the
//! libraries they link, and a user `builder` (1000) with subordinate ids, as a CI runner image
//! would have).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::busybox::busybox_rootfs;
use super::{run, tool};

/// podman with storage of its own.
#[derive(Debug)]
pub struct Podman {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Podman {
    /// `None` (after saying so) when podman or runc is missing outside CI.
    pub fn new() -> Option<Self> {
        let bin = tool("podman")?;
        tool("runc")?;
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n",
        )
        .unwrap();
        Some(Self { bin, dir })
    }

    /// podman with the test's storage and configuration.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .arg("--cgroup-manager=cgroupfs")
            .args(["--runtime", "runc", "--storage-driver", "vfs"])
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .arg("--events-backend=file");
        cmd
    }

    /// Runs podman with `args`; panics unless it succeeds; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        run(self.cmd().args(args))
    }
}

/// The uid and gid of the user `builder` in a [`kiln_rootfs`].
pub const BUILDER_ID: u32 = 1000;

/// The directory inside a [`kiln_rootfs`] that is `builder`'s home (owned by it).
pub const BUILDER_HOME: &str = "home/builder";

/// Makes a root filesystem in `parent` for a container that runs kiln: busybox, `kiln` in
/// `/usr/local/bin`, `newuidmap`/`newgidmap` with the file capabilities `cap_setuid`/`cap_setgid`
/// (setuid root does not work where the container has no `CAP_SYS_ADMIN`: see
/// `builder/src/privileges/userns.rs`), the shared libraries they need, and `builder` (uid and gid 1000, home `/home/builder`, holding `busybox.tar`) with
/// the subordinate ids 100000-165535. Returns its path; `None` (after saying so) when a tool is
/// missing outside CI.
pub fn kiln_rootfs(parent: &Path) -> Option<PathBuf> {
    let dir = parent.join("rootfs");
    let busybox = busybox_rootfs()?;
    let kiln = PathBuf::from(env!("CARGO_BIN_EXE_kiln"));
    let uidmap = tool("newuidmap")?;
    let gidmap = tool("newgidmap")?;
    let setcap = tool("setcap")?;
    tool("ldd")?;
    run(Command::new("cp").arg("-a").arg(&busybox.dir).arg(&dir));
    for (binary, dest, caps) in [
        (&kiln, "usr/local/bin/kiln", None),
        (&uidmap, "usr/bin/newuidmap", Some("cap_setuid=ep")),
        (&gidmap, "usr/bin/newgidmap", Some("cap_setgid=ep")),
    ] {
        copy_file(binary, &dir.join(dest), 0o755);
        if let Some(caps) = caps {
            run(Command::new(&setcap).arg(caps).arg(dir.join(dest)));
        }
        for lib in linked_libraries(binary) {
            copy_file(&lib, &dir.join(lib.strip_prefix("/").unwrap()), 0o755);
        }
    }
    let append = |rel: &str, line: &str| {
        let path = dir.join(rel);
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(line);
        fs::write(path, text).unwrap();
    };
    append("etc/passwd", "builder:x:1000:1000::/home/builder:/bin/sh\n");
    append("etc/group", "builder:x:1000:\n");
    append("etc/subuid", "builder:100000:65536\n");
    append("etc/subgid", "builder:100000:65536\n");
    let home = dir.join(BUILDER_HOME);
    fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(BUILDER_ID), Some(BUILDER_ID)).unwrap();
    fs::copy(&busybox.tar, home.join("busybox.tar")).unwrap();
    Some(dir)
}

/// Copies `from` to `to` (parents made), with `mode`.
fn copy_file(from: &Path, to: &Path, mode: u32) {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(from, to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).unwrap();
}

/// The shared libraries `ldd` says `binary` loads (the dynamic loader included).
pub fn linked_libraries(binary: &Path) -> Vec<PathBuf> {
    run(Command::new("ldd").arg(binary))
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}
