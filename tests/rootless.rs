//! Rootless kiln: a slice of the suite run as an unprivileged user. The harness (as root)
//! creates the users once, idempotently across test processes — `kilntest` with subordinate
//! id ranges in /etc/subuid and /etc/subgid, `kilnnosub` without — copies the kiln binary
//! where they can run it, and runs it as them through `setpriv` with a home of their own. Seed
//! examples build and run with their output, ids from USER, `chown` and `COPY --chown` stay,
//! a rebuild hits the cache, Ctrl-C leaves no process or tag, and what a user namespace cannot
//! do fails with a message that names the fix. The same context built as root and rootless
//! gives the same manifest digest (tested with the container modes, in `container.rs`). Outside CI a missing prerequisite skips (saying so);
//! under `CI=true` it fails.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::{
    EPOCH, Kiln, busybox, processes_with, root_or_skip, run, spawn_until_sleeping, tool,
    with_busybox, write_context,
};
use crate::{repo, text};

/// The user with subordinate ids.
const USER: &str = "kilntest";
/// The user without.
const NO_SUBIDS_USER: &str = "kilnnosub";

/// A host user the tests run kiln as.
#[derive(Debug)]
struct HostUser {
    uid: u32,
    gid: u32,
}

/// What every rootless test needs: the users, and the kiln binary and busybox tarball where
/// they can read them.
#[derive(Debug)]
struct Harness {
    user: HostUser,
    no_subids: HostUser,
    bin: PathBuf,
    busybox_tar: PathBuf,
}

/// The harness, or `None` (after saying so) when the prerequisites are missing outside CI.
fn harness() -> Option<&'static Harness> {
    static HARNESS: OnceLock<Option<Harness>> = OnceLock::new();
    HARNESS.get_or_init(set_up).as_ref()
}

fn set_up() -> Option<Harness> {
    if !root_or_skip("rootless tests (creating their users)") {
        return None;
    }
    for name in ["setpriv", "newuidmap", "newgidmap", "useradd", "usermod"] {
        tool(name)?;
    }
    let tar = busybox::busybox_rootfs_tar()?;
    // One process at a time edits /etc/passwd and /etc/subuid (test binaries run in parallel).
    let _guard = DirLock::take(Path::new("/run/kiln-rootless-test-users.lock"));
    let user = ensure_user(USER, true);
    let no_subids = ensure_user(NO_SUBIDS_USER, false);
    // Statics are never dropped: this directory outlives every test of the process.
    let shared = tempfile::Builder::new()
        .prefix("kiln-rootless-")
        .tempdir()
        .unwrap()
        .keep();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
    let bin = shared.join("kiln");
    fs::copy(env!("CARGO_BIN_EXE_kiln"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let busybox_tar = shared.join("busybox.tar");
    fs::copy(&tar, &busybox_tar).unwrap();
    fs::set_permissions(&busybox_tar, fs::Permissions::from_mode(0o644)).unwrap();
    Some(Harness {
        user,
        no_subids,
        bin,
        busybox_tar,
    })
}

/// A lock between processes: a directory that exists while the value lives (`mkdir` is
/// atomic). One left by a crashed run goes stale after a minute.
struct DirLock(PathBuf);

impl DirLock {
    fn take(path: &Path) -> Self {
        loop {
            match fs::create_dir(path) {
                Ok(()) => return Self(path.to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().unwrap_or_default().as_secs() > 60);
                    if stale {
                        let _ = fs::remove_dir(path);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// Creates `name` unless it exists; gives it a subordinate range of 65536 ids when `subids`
/// (unless it has one), or removes every range it has otherwise.
fn ensure_user(name: &'static str, subids: bool) -> HostUser {
    if Command::new("id")
        .arg("-u")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success()
    {
        // Exists.
    } else {
        run(Command::new("useradd").args([
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            name,
        ]));
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.split(':').next() == Some(name))
            .collect();
        if subids && mine.is_empty() {
            // After every range already given out, so nobody else's ids are shared.
            let start = text
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
                })
                .max()
                .unwrap_or(0)
                .max(100_000);
            let flag = if file.ends_with("subuid") {
                "--add-subuids"
            } else {
                "--add-subgids"
            };
            run(Command::new("usermod").args([flag, &format!("{start}-{}", start + 65_535), name]));
        } else if !subids && !mine.is_empty() {
            let kept: String = text
                .lines()
                .filter(|l| l.split(':').next() != Some(name))
                .map(|l| format!("{l}\n"))
                .collect();
            fs::write(file, kept).unwrap();
        }
    }
    let id = |flag: &str| -> u32 {
        run(Command::new("id").arg(flag).arg(name))
            .trim()
            .parse()
            .unwrap()
    };
    HostUser {
        uid: id("-u"),
        gid: id("-g"),
    }
}

/// kiln as a host user, with a home and scratch space of that user's own.
struct UserKiln {
    harness: &'static Harness,
    user: &'static HostUser,
    dir: tempfile::TempDir,
}

impl UserKiln {
    fn new(harness: &'static Harness, user: &'static HostUser) -> Self {
        let dir = tempfile::tempdir().unwrap();
        chown(dir.path(), user);
        fs::create_dir(dir.path().join("home")).unwrap();
        chown(&dir.path().join("home"), user);
        Self { harness, user, dir }
    }

    /// With busybox imported, as the tests' busybox:latest.
    fn with_busybox(harness: &'static Harness, user: &'static HostUser) -> Self {
        let kiln = Self::new(harness, user);
        kiln.ok(&[
            "import",
            harness.busybox_tar.to_str().unwrap(),
            "busybox:latest",
        ]);
        kiln
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The store: the default place, `$XDG_DATA_HOME/kiln` of the user.
    fn store(&self) -> PathBuf {
        self.home().join(".local/share/kiln")
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.user.uid))
            .arg(format!("--regid={}", self.user.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(&self.harness.bin)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", self.home())
            .env("XDG_DATA_HOME", self.home().join(".local/share"))
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .current_dir(self.dir.path());
        cmd
    }

    fn output(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        run(self.cmd().args(args))
    }

    /// A build context the user can read: `files` (path, content) and the Dockerfile.
    fn context(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.path().join(name);
        write_context(&dir, dockerfile, files);
        chown_tree(&dir, self.user);
        dir
    }

    /// A copy of `examples/NAME` the user can read.
    fn example(&self, name: &str) -> PathBuf {
        let dest = self.dir.path().join(name.replace('/', "-"));
        run(Command::new("cp")
            .arg("-r")
            .arg(repo().join("examples").join(name))
            .arg(&dest));
        chown_tree(&dest, self.user);
        dest
    }
}

fn chown(path: &Path, user: &HostUser) {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).unwrap();
}

fn chown_tree(path: &Path, user: &HostUser) {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(path));
}

/// The rootless harness and its user with subordinate ids.
fn rootless() -> Option<(&'static Harness, &'static HostUser)> {
    let harness = harness()?;
    Some((harness, &harness.user))
}

#[test]
fn seed_examples_build_and_run_as_a_user() {
    let Some((harness, user)) = rootless() else {
        return;
    };
    let kiln = UserKiln::with_busybox(harness, user);
    for (example, tag) in [
        ("seed/env-cmd", "centos:env-cmd"),
        ("seed/useradd", "centos:user"),
        ("seed/copy-dir", "nginx:copy"),
    ] {
        let ctx = kiln.example(example);
        kiln.ok(&["build", "-q", "-t", tag, ctx.to_str().unwrap()]);
    }
    assert_eq!(
        kiln.ok(&["run", "--rm", "centos:env-cmd"]),
        "envir:test version:1.0\n"
    );
    assert_eq!(
        kiln.ok(&["run", "--rm", "centos:user", "id", "dot"]),
        "uid=1000(dot) gid=1000(dot) groups=1000(dot)\n"
    );
    assert_eq!(
        kiln.ok(&[
            "run",
            "--rm",
            "--user",
            "dot",
            "centos:user",
            "sh",
            "-c",
            "echo $HOME; id -un; touch ~/ok && echo wrote"
        ]),
        "/home/dot\ndot\nwrote\n"
    );
    let served = kiln.ok(&[
        "run",
        "--rm",
        "--network=none",
        "nginx:copy",
        "sh",
        "-c",
        "httpd -p 127.0.0.1:8080 && wget -qO- http://127.0.0.1:8080/css/site.css",
    ]);
    assert_eq!(served, "h1 { font-family: sans-serif; }\n");
    // The store is the user's own, at the default place, and owned by the user.
    let oci = kiln.store().join("oci");
    assert_eq!(fs::metadata(&oci).unwrap().uid(), user.uid);
    assert!(oci.join("index.json").is_file());
}

/// A context whose layers hold other owners than root, whiteouts, an opaque directory,
/// setuid, hard and symbolic links and a fifo.
pub(crate) const IDS_DOCKERFILE: &str = "FROM busybox
RUN mkdir -p /data/keep /data/gone /opq && echo 1 > /data/gone/f && echo 2 > /opq/old \\
 && echo 'app:x:1001:1001::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1001:' >> /etc/group \\
 && echo 'grp:x:1002:app' >> /etc/group && mkdir -p /home/app && chown 1001:1001 /home/app \\
 && chown -R 1001:1001 /data/keep
COPY --chown=1001:1002 a.txt /data/keep/
COPY --chown=app d /home/app/d/
RUN rm -rf /data/gone && rm -rf /opq && mkdir /opq && echo new > /opq/new && chmod 4755 /opq/new \\
 && ln /opq/new /opq/hard && ln -s /opq/new /opq/sym && mkfifo /opq/fifo && chown 65534:65534 /opq/fifo
USER app
RUN touch /home/app/mine && id > /home/app/id
WORKDIR /home/app/work
";

pub(crate) const IDS_FILES: [(&str, &str); 2] = [("a.txt", "hello\n"), ("d/x", "x\n")];

#[test]
fn user_chown_and_copy_chown_keep_their_ids() {
    let Some((harness, user)) = rootless() else {
        return;
    };
    let kiln = UserKiln::with_busybox(harness, user);
    let ctx = kiln.context("ctx", IDS_DOCKERFILE, &IDS_FILES);
    kiln.ok(&["build", "-q", "-t", "ids:1", ctx.to_str().unwrap()]);
    let out = kiln.ok(&[
        "run",
        "--rm",
        "ids:1",
        "sh",
        "-c",
        "cat /home/app/id; stat -c '%u:%g %a %n' /data/keep /data/keep/a.txt /home/app/d/x \
         /home/app/mine /home/app/work /opq/new /opq/fifo; ls /data",
    ]);
    assert_eq!(
        out,
        "uid=1001(app) gid=1001(app) groups=1001(app),1002(grp)\n\
         1001:1001 755 /data/keep\n\
         1001:1002 644 /data/keep/a.txt\n\
         1001:1001 644 /home/app/d/x\n\
         1001:1001 644 /home/app/mine\n\
         1001:1001 755 /home/app/work\n\
         0:0 4755 /opq/new\n\
         65534:65534 644 /opq/fifo\n\
         keep\n"
    );
}

#[test]
fn a_rootless_rebuild_hits_the_cache() {
    let Some((harness, user)) = rootless() else {
        return;
    };
    let kiln = UserKiln::with_busybox(harness, user);
    let ctx = kiln.context("ctx", IDS_DOCKERFILE, &IDS_FILES);
    let build = || {
        let out = kiln
            .cmd()
            .args(["build", "--progress=plain"])
            .arg(&ctx)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        (stdout, stderr)
    };
    let (first, stderr) = build();
    assert!(!stderr.contains("CACHED"), "{stderr}");
    let (second, stderr) = build();
    assert_eq!(first, second);
    // Every step that makes a layer is a hit; only USER, which makes none, shows as run.
    let steps = crate::support::plain_steps(&stderr);
    let ran: Vec<&str> = steps
        .iter()
        .filter(|(cached, _)| !cached)
        .map(|(_, i)| i.as_str())
        .collect();
    assert_eq!(ran, ["USER app"], "{stderr}");
    assert_eq!(
        steps.iter().filter(|(cached, _)| *cached).count(),
        6,
        "{stderr}"
    );
}

#[test]
fn ctrl_c_in_a_rootless_run_leaves_no_process_or_tag() {
    let Some((harness, user)) = rootless() else {
        return;
    };
    let kiln = UserKiln::with_busybox(harness, user);
    let marker = format!("{}", 32_000_000 + std::process::id() % 1_000_000);
    let ctx = kiln.context(
        "ctx",
        &format!("FROM busybox\nRUN echo started && sleep {marker}\n"),
        &[],
    );
    let mut build = kiln.cmd();
    build
        .args(["build", "--progress=plain", "-t", "interrupted:latest"])
        .arg(&ctx);
    let (mut child, lines) = spawn_until_sleeping(build, &marker);
    // The RUN's root is an overlay (userxattr) in kiln's own mount namespace, not a copy.
    let mountinfo = fs::read_to_string(format!("/proc/{}/mountinfo", child.0.id())).unwrap();
    assert!(
        mountinfo
            .lines()
            .any(|l| l.contains(" - overlay ") && l.contains("userxattr")),
        "{mountinfo}"
    );
    // setpriv execs kiln: the child's pid is kiln's.
    let status = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("cancelled")), "{rest:?}");
    assert_eq!(
        processes_with(&format!("sleep {marker}")),
        Vec::<String>::new()
    );
    // kiln's mounts lived in its own mount namespace; none may be visible here either.
    let store = kiln.store();
    assert_eq!(crate::support::mounts_under(&store), Vec::<String>::new());
    let out = kiln.output(&["inspect", "interrupted:latest"]);
    assert!(text(&out).1.contains("No such image"), "{out:?}");
    let leftovers: Vec<String> = fs::read_dir(store.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot-") || n.starts_with("run-"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}

/// The manifest digest `kiln build --metadata-file` reports.
pub(crate) fn manifest_digest(metadata: &Path) -> String {
    let json: serde_json::Value = serde_json::from_slice(&fs::read(metadata).unwrap()).unwrap();
    json["containerimage.digest"].as_str().unwrap().to_owned()
}

/// The manifest digest of `ctx` built by `root` (kiln as root on the host).
pub(crate) fn root_digest(root: &Kiln, ctx: &Path) -> String {
    let metadata = root.path("root.json");
    root.ok(&[
        "build",
        "-q",
        "--metadata-file",
        metadata.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    manifest_digest(&metadata)
}

/// The manifest digest of [`IDS_DOCKERFILE`] built rootless by the user with subordinate ids;
/// `None` (after saying so) when the prerequisites are missing outside CI.
pub(crate) fn rootless_ids_digest() -> Option<String> {
    let (harness, user) = rootless()?;
    let kiln = UserKiln::with_busybox(harness, user);
    let ctx = kiln.context("ctx", IDS_DOCKERFILE, &IDS_FILES);
    let metadata = kiln.dir.path().join("user.json");
    kiln.ok(&[
        "build",
        "-q",
        "--metadata-file",
        metadata.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    Some(manifest_digest(&metadata))
}

#[test]
fn what_a_user_namespace_cannot_do_fails_saying_so() {
    let Some((harness, user)) = rootless() else {
        return;
    };
    let kiln = UserKiln::with_busybox(harness, user);
    let ctx = kiln.context("mknod", "FROM busybox\nRUN mknod /null c 1 3\n", &[]);
    let out = kiln.output(&["build", "-q", ctx.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert!(stderr.contains("note: kiln runs without root"), "{stderr}");
    assert!(stderr.contains("device nodes (mknod)"), "{stderr}");
    // An id beyond the subordinate range: an error naming the range and the fix, not a
    // wrong owner.
    let ctx = kiln.context("far", "FROM busybox\nUSER 70000\nRUN id\n", &[]);
    let out = kiln.output(&["build", "-q", ctx.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("uid 70000 does not exist in kiln's user namespace (mapped: 0-65536)"),
        "{stderr}"
    );
    assert!(stderr.contains("/etc/subuid"), "{stderr}");
}

#[test]
fn without_subordinate_ids_one_warning_and_root_owned_images_still_build() {
    let Some(harness) = harness() else { return };
    let kiln = UserKiln::with_busybox(harness, &harness.no_subids);
    let warning = |stderr: &str| {
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains("no subordinate ids"), "{stderr}");
        assert!(lines[0].contains("usermod --add-subuids"), "{stderr}");
        assert!(lines[0].contains(NO_SUBIDS_USER), "{stderr}");
    };
    // Everything owned by root: builds and gives root's digest.
    let ctx = kiln.example("seed/copy-dir");
    let metadata = kiln.dir.path().join("m.json");
    let out = kiln
        .cmd()
        .args(["build", "-q", "-t", "c:1", "--metadata-file"])
        .arg(&metadata)
        .arg(&ctx)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    warning(&stderr);
    if let Some(root) = with_busybox() {
        assert_eq!(manifest_digest(&metadata), root_digest(&root, &ctx));
    }
    assert_eq!(
        kiln.ok(&["run", "--rm", "c:1", "id"]),
        "uid=0(root) gid=0(root) groups=0(root)\n"
    );
    // Another owner is an error naming the fix, never a file silently owned by root.
    let ctx = kiln.context(
        "chown",
        "FROM busybox\nCOPY --chown=1001:1001 a.txt /a.txt\n",
        &[("a.txt", "a\n")],
    );
    let out = kiln.output(&["build", "-q", ctx.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    warning(&stderr);
    assert!(
        stderr.contains("uid 1001 does not exist in kiln's user namespace (mapped: 0)"),
        "{stderr}"
    );
    assert!(stderr.contains("usermod --add-subuids"), "{stderr}");
}
