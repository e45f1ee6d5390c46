//! Tests of the RUN sandbox on a busybox rootfs made from the host's static busybox (Debian's
//! `busybox-static`): output and exit status, USER, environment, WORKDIR, the pid namespace and
//! its init, hostname, descriptors, network none, capabilities, `/dev`, cancellation, hostile
//! rootfs layouts, and that nothing stays mounted or stubbed afterwards.

use crate::error_chain;
use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::testutil::skip;
use kiln_registry::Digest;

/// Where Debian's busybox-static puts the binary.
const BUSYBOX: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// Docker's default effective capability set as `/proc/self/status` shows it.
const DOCKER_CAP_EFF: &str = "00000000a80425fb";

/// Whether an ELF file has no interpreter (is statically linked).
fn is_static_elf(bytes: &[u8]) -> bool {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let at = phoff + i * size;
        // PT_INTERP = 3.
        bytes.get(at..at + 4) != Some(&3u32.to_le_bytes()[..])
    })
}

/// A busybox rootfs in `dir/rootfs`, or `None` (after [`skip`]) when this machine cannot run the
/// sandbox tests.
pub(super) fn rootfs(dir: &Path) -> Option<PathBuf> {
    if !rustix::process::geteuid().is_root() {
        skip("sandbox tests need root");
        return None;
    }
    let Some(busybox) = BUSYBOX.iter().map(Path::new).find(|p| p.is_file()) else {
        skip("no static busybox (apt-get install busybox-static)");
        return None;
    };
    let bytes = std::fs::read(busybox).unwrap();
    if !is_static_elf(&bytes) {
        skip(&format!("{} is not statically linked", busybox.display()));
        return None;
    }
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "root", "home/alice", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), PermissionsExt::from_mode(0o1777)).unwrap();
    std::fs::write(root.join("bin/busybox"), &bytes).unwrap();
    std::fs::set_permissions(root.join("bin/busybox"), PermissionsExt::from_mode(0o755)).unwrap();
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap();
    let applets = String::from_utf8(list.stdout).unwrap();
    for applet in applets.lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
         bob:x:1001:1001::/home/bob:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nwheel:x:10:alice\nstaff:x:50:alice,bob\nalice:x:1000:\nbob:x:1001:\n",
    )
    .unwrap();
    Some(root)
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub(super) struct Ran {
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    pub result: Result<ExitStatus, ExecError>,
}

pub(super) fn run_in(root: &Path, spec: &RunSpec) -> Ran {
    run_cancellable(root, spec, &Canceller::new())
}

pub(super) fn run_cancellable(root: &Path, spec: &RunSpec, cancel: &Canceller) -> Ran {
    let scratch = root.parent().unwrap().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let result = run(
        root,
        spec,
        &ExecOptions::new(&scratch),
        &mut |stream, line| {
            let line = String::from_utf8_lossy(line).into_owned();
            match stream {
                Stream::Stdout => stdout.push(line),
                Stream::Stderr => stderr.push(line),
            }
        },
        cancel,
    );
    assert_clean(root);
    Ran {
        stdout,
        stderr,
        result,
    }
}

/// Nothing mounted under the test directory, no stub left in the rootfs, no scratch left.
pub(super) fn assert_clean(root: &Path) {
    let base = root.parent().unwrap();
    assert_eq!(
        crate::snapshot::test_mounts_under(base).unwrap(),
        Vec::<PathBuf>::new(),
        "mounts left behind"
    );
    for stub in [
        "proc",
        "dev",
        "sys",
        "etc/resolv.conf",
        "etc/hosts",
        "etc/hostname",
    ] {
        assert!(
            std::fs::symlink_metadata(root.join(stub)).is_err(),
            "stub {stub} left in the rootfs"
        );
    }
    let scratch = base.join("scratch");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "scratch left"
    );
}

pub(super) fn sh(script: &str) -> RunSpec {
    RunSpec::new(vec!["/bin/sh".into(), "-c".into(), script.into()])
}

pub(super) fn ok(ran: &Ran) -> &[String] {
    match &ran.result {
        Ok(ExitStatus::Code(0)) => &ran.stdout,
        other => panic!(
            "run failed: {other:?}\nstdout: {:?}\nstderr: {:?}",
            ran.stdout, ran.stderr
        ),
    }
}

#[test]
fn output_lines_and_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let ran = run_in(
        &root,
        &sh("echo hello; echo world; echo oops >&2; printf 'no newline'"),
    );
    assert_eq!(ok(&ran), ["hello", "world", "no newline"]);
    assert_eq!(ran.stderr, ["oops"]);
    let cases: &[(&str, ExitStatus)] = &[
        ("exit 3", ExitStatus::Code(3)),
        ("exit 0", ExitStatus::Code(0)),
        ("kill -KILL $$", ExitStatus::Signal(9)),
        ("kill -SEGV $$", ExitStatus::Signal(11)),
        ("false", ExitStatus::Code(1)),
    ];
    for (script, want) in cases {
        assert_eq!(
            run_in(&root, &sh(script)).result.unwrap(),
            *want,
            "{script}"
        );
    }
    // Exec form: argv as given, looked up in PATH.
    let ran = run_in(&root, &RunSpec::new(vec!["echo".into(), "a  b".into()]));
    assert_eq!(ok(&ran), ["a  b"]);
    match run_in(&root, &RunSpec::new(vec!["no-such-program".into()])).result {
        Err(ExecError::Exec(message)) => assert!(message.contains("no-such-program"), "{message}"),
        other => panic!("expected an exec error, got {other:?}"),
    }
    assert!(matches!(
        run_in(&root, &RunSpec::new(Vec::new())).result,
        Err(ExecError::EmptyCommand)
    ));
}

#[test]
fn user_groups_and_home() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let cases: &[(&str, &str)] = &[
        ("", "0 0 0 /root"),
        ("root", "0 0 0 /root"),
        ("alice", "1000 1000 10 50 1000 /home/alice"),
        ("1000", "1000 1000 10 50 1000 /home/alice"),
        ("alice:staff", "1000 50 50 /home/alice"),
        ("bob:1234", "1001 1234 1234 /home/bob"),
        ("1001:1001", "1001 1001 1001 /home/bob"),
        ("4242", "4242 0 0 /"),
    ];
    for (user, want) in cases {
        let mut spec = sh("echo $(id -u) $(id -g) $(id -G | tr ' ' '\\n' | sort -n) $HOME");
        spec.user = (*user).to_owned();
        let ran = run_in(&root, &spec);
        assert_eq!(ok(&ran), [*want], "USER {user}");
    }
    let mut spec = sh("true");
    spec.user = "carol".into();
    match run_in(&root, &spec).result {
        Err(ExecError::User { user, source }) => {
            assert_eq!(user, "carol");
            assert_eq!(source, UserError::NoUser("carol".into()));
        }
        other => panic!("expected an unknown-user error, got {other:?}"),
    }
}

#[test]
fn environment_workdir_and_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let mut spec = sh(
        "echo \"$FOO|$EMPTY|$PATH|$HOME\"; pwd; hostname; cat /etc/hostname; \
                       grep -c sandbox-7 /etc/hosts; env | grep -c '^'",
    );
    spec.env = vec![
        ("FOO".into(), "first".into()),
        ("EMPTY".into(), String::new()),
        ("FOO".into(), "bar baz".into()),
    ];
    spec.cwd = "/work/./deep/../dir".into();
    spec.user = "alice".into();
    spec.hostname = "sandbox-7".into();
    let ran = run_in(&root, &spec);
    assert_eq!(
        ok(&ran),
        [
            &format!("bar baz||{DEFAULT_PATH}|/home/alice"),
            "/work/dir",
            "sandbox-7",
            "sandbox-7",
            "1",
            // FOO EMPTY PATH HOME, and PWD and SHLVL which sh sets.
            "6",
        ]
    );
    let created = std::fs::metadata(root.join("work/dir")).unwrap();
    assert_eq!((created.uid(), created.gid()), (1000, 1000));
    assert!(!root.join("work/deep").exists());
    // An explicit PATH is kept.
    let mut spec = RunSpec::new(vec!["sh".into(), "-c".into(), "echo $PATH".into()]);
    spec.env = vec![("PATH".into(), "/bin".into())];
    assert_eq!(ok(&run_in(&root, &spec)), ["/bin"]);
}

#[test]
fn extra_hosts_follow_the_defaults_in_etc_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let mut spec = sh("tail -n 2 /etc/hosts");
    spec.extra_hosts = vec![
        "registry.test:10.1.2.3".parse().unwrap(),
        "v6.test=[fd00::1]".parse().unwrap(),
    ];
    assert_eq!(
        ok(&run_in(&root, &spec)),
        ["10.1.2.3\tregistry.test", "fd00::1\tv6.test"]
    );
}

#[test]
fn add_host_parses_as_docker_reads_it() {
    let parsed = |s: &str| s.parse::<ExtraHost>().map(|h| (h.host, h.ip.to_string()));
    assert_eq!(parsed("a:1.2.3.4"), Ok(("a".into(), "1.2.3.4".into())));
    assert_eq!(parsed("a=1.2.3.4"), Ok(("a".into(), "1.2.3.4".into())));
    assert_eq!(parsed("v6:::1"), Ok(("v6".into(), "::1".into())));
    assert_eq!(parsed("v6=[::1]"), Ok(("v6".into(), "::1".into())));
    for (bad, why) in [
        ("nocolon", "is not HOST:IP"),
        (":1.2.3.4", "is not a host name"),
        ("a:not-an-ip", "is not an IP address"),
        ("a:host-gateway", "kiln has no daemon"),
    ] {
        let err = parsed(bad).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn the_pid_namespace_init_and_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let ran = run_in(
        &root,
        &sh("echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; \
             readlink /proc/1/exe || echo denied; ls /proc/self/fd | tr '\\n' ' '"),
    );
    let out = ok(&ran);
    assert_eq!(out[0], "2", "the command is pid 2 under our init");
    assert!(
        out[1].contains("__kiln-run-helper"),
        "pid 1 is our init: {}",
        out[1]
    );
    assert_eq!(out[2], "denied", "/proc/1/exe must not be readable");
    // 0-2, and 3: the directory ls itself is reading.
    assert_eq!(out[3].trim(), "0 1 2 3");
    // Orphans are reaped: no zombie after a short-lived background child.
    let ran = run_in(
        &root,
        &sh(
            "(sleep 0.1 &); sleep 0.5; cat /proc/[0-9]*/stat | cut -d' ' -f3 | sort | uniq -c | tr -s ' '",
        ),
    );
    assert!(
        ok(&ran).iter().all(|l| !l.ends_with(" Z")),
        "zombies: {:?}",
        ran.stdout
    );
}

#[test]
fn dev_sys_proc_and_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let ran = run_in(
        &root,
        &sh("ls /dev | tr '\\n' ' '; echo; \
             grep CapEff /proc/self/status | cut -f2; \
             grep CapBnd /proc/self/status | cut -f2; \
             touch /sys/x 2>/dev/null && echo sys-writable || echo sys-ro; \
             echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo proc-sys-writable || echo proc-sys-ro; \
             head -c1 /proc/kcore | wc -c; \
             head -c 8 /dev/urandom | wc -c; echo x > /dev/null && echo null-ok; \
             mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo no-mount"),
    );
    let out = ok(&ran);
    assert_eq!(
        out[0].trim(),
        "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
    assert_eq!(format!("{DEFAULT_CAPABILITIES:016x}"), DOCKER_CAP_EFF);
    assert_eq!(out[1], DOCKER_CAP_EFF);
    assert_eq!(out[2], DOCKER_CAP_EFF);
    assert_eq!(
        &out[3..],
        ["sys-ro", "proc-sys-ro", "0", "8", "null-ok", "no-mount"]
    );
    let mut spec = sh("grep -E 'Cap(Eff|Bnd)' /proc/self/status | cut -f2");
    spec.user = "alice".into();
    assert_eq!(
        ok(&run_in(&root, &spec)),
        ["0000000000000000", DOCKER_CAP_EFF]
    );
}

#[test]
fn network_none_has_only_loopback_up() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let mut spec = sh("ls /sys/class/net; cat /sys/class/net/lo/flags");
    spec.network = NetworkMode::None;
    let out = ok(&run_in(&root, &spec)).to_vec();
    assert_eq!(out[0], "lo");
    assert_eq!(out.len(), 2, "{out:?}");
    let flags = u32::from_str_radix(out[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is up");
}

/// Host processes whose command line has `marker` as an argument.
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| c.split(|&b| b == 0).any(|a| a == marker.as_bytes()))
        .count()
}

#[test]
fn cancel_kills_the_whole_tree_even_if_it_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let marker = format!("{}.25", 4000 + std::process::id() % 1000);
    let cancel = Canceller::new();
    let started = Instant::now();
    let ran = std::thread::scope(|s| {
        let c = cancel.clone();
        let m = marker.clone();
        s.spawn(move || {
            while processes_with(&m) < 2 {
                std::thread::sleep(Duration::from_millis(20));
            }
            c.cancel();
        });
        run_cancellable(
            &root,
            &sh(&format!(
                "trap '' TERM; sleep {marker} & sleep {marker}; echo survived"
            )),
            &cancel,
        )
    });
    assert!(
        matches!(ran.result, Err(ExecError::Cancelled)),
        "{:?}",
        ran.result
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(ran.stdout.is_empty());
    assert_eq!(processes_with(&marker), 0, "processes survived the cancel");
    // A cancelled handle does not start anything.
    assert!(matches!(run_in_cancelled(&root), Err(ExecError::Cancelled)));
}

#[test]
fn sigterm_is_forwarded_through_helper_and_init_to_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let marker = format!("{}.75", 6000 + std::process::id() % 1000);
    let cancel = Canceller::new();
    let ran = std::thread::scope(|s| {
        let c = cancel.clone();
        let m = marker.clone();
        s.spawn(move || {
            while processes_with(&m) < 1 {
                std::thread::sleep(Duration::from_millis(20));
            }
            c.terminate();
        });
        run_cancellable(
            &root,
            &sh(&format!(
                "trap 'echo got TERM; exit 7' TERM; sleep {marker} & wait"
            )),
            &cancel,
        )
    });
    assert_eq!(ran.result.unwrap(), ExitStatus::Code(7));
    assert_eq!(ran.stdout, ["got TERM"]);
    assert_eq!(processes_with(&marker), 0);
}

fn run_in_cancelled(root: &Path) -> Result<ExitStatus, ExecError> {
    let cancel = Canceller::new();
    cancel.cancel();
    run_cancellable(root, &sh("echo never"), &cancel).result
}

#[test]
fn background_processes_die_with_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let marker = format!("{}.5", 5000 + std::process::id() % 1000);
    let started = Instant::now();
    let ran = run_in(&root, &sh(&format!("sleep {marker} & echo started")));
    assert_eq!(ok(&ran), ["started"]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(processes_with(&marker), 0);
}

#[test]
fn hostile_rootfs_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    // /proc (or /dev, /sys) as a symlink is refused before anything is mounted.
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    for name in ["proc", "dev", "sys"] {
        std::os::unix::fs::symlink("/", root.join(name)).unwrap();
        match run(
            &root,
            &sh("true"),
            &ExecOptions::new(&scratch),
            &mut |_, _| {},
            &Canceller::new(),
        ) {
            Err(ExecError::RootfsSymlink { path }) => assert_eq!(path, format!("/{name}")),
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
        std::fs::remove_file(root.join(name)).unwrap();
    }
    assert_clean(&root);
    // resolv.conf pointing at the host's /etc/shadow resolves inside the root (to nothing):
    // the image's link stays, and no host file is mounted.
    std::os::unix::fs::symlink("/etc/shadow", root.join("etc/resolv.conf")).unwrap();
    let ran = run_in_keeping(&root, &sh("cat /etc/resolv.conf 2>&1 | head -c 100; echo"));
    assert!(ok(&ran)[0].contains("No such file"), "{:?}", ran.stdout);
    std::fs::remove_file(root.join("etc/resolv.conf")).unwrap();
    // A FIFO as /etc/passwd fails at once instead of hanging.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("etc/passwd.fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::fs::rename(root.join("etc/passwd"), root.join("etc/passwd.real")).unwrap();
    std::fs::rename(root.join("etc/passwd.fifo"), root.join("etc/passwd")).unwrap();
    let mut spec = sh("true");
    spec.user = "alice".into();
    match run_in(&root, &spec).result {
        Err(e @ ExecError::User { .. }) => {
            assert_eq!(
                error_chain(&e),
                "USER \"alice\": reading /etc/passwd of the image: is not a regular file"
            );
        }
        other => panic!("expected a refusal of the FIFO, got {other:?}"),
    }
}

/// Like [`run_in`], for a rootfs whose `/etc/resolv.conf` is the image's own.
fn run_in_keeping(root: &Path, spec: &RunSpec) -> Ran {
    let scratch = root.parent().unwrap().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut stdout = Vec::new();
    let result = run(
        root,
        spec,
        &ExecOptions::new(&scratch),
        &mut |stream, line| {
            if stream == Stream::Stdout {
                stdout.push(String::from_utf8_lossy(line).into_owned());
            }
        },
        &Canceller::new(),
    );
    assert_eq!(
        crate::snapshot::test_mounts_under(root.parent().unwrap()).unwrap(),
        Vec::<PathBuf>::new()
    );
    Ran {
        stdout,
        stderr: Vec::new(),
        result,
    }
}

#[test]
fn a_run_on_an_overlay_snapshot_leaves_only_its_change_in_the_layer() {
    use crate::layer::{ChangeKind, Compression, LayerOptions, write_layer};
    use crate::snapshot::{Backend, CommitOptions, SnapshotOptions, Snapshots, chain_id};
    let dir = tempfile::tempdir().unwrap();
    let Some(tree) = rootfs(dir.path()) else {
        return;
    };
    std::fs::write(tree.join("etc/motd"), "old").unwrap();
    let mut tar = Vec::new();
    let base = write_layer(
        &tree,
        &LayerOptions {
            kind: ChangeKind::Tree,
            compression: Compression::None,
            source_date_epoch: None,
        },
        &mut tar,
    )
    .unwrap();
    let detected = Snapshots::at(
        dir.path().join("probe/snapshots"),
        dir.path().join("probe/tmp"),
        &SnapshotOptions::default(),
    )
    .unwrap();
    let mut backends = vec![Backend::Copy];
    match detected.overlay_unavailable() {
        None => backends.push(Backend::Overlay),
        Some(why) => skip(&format!("overlayfs unavailable: {why}")),
    }
    for backend in backends {
        let store = dir.path().join(format!("{backend:?}"));
        let snaps = Snapshots::at(
            store.join("snapshots"),
            store.join("tmp"),
            &SnapshotOptions {
                backend: Some(backend),
                ..SnapshotOptions::default()
            },
        )
        .unwrap();
        let id = chain_id(None, &base.diff_id);
        snaps.prepare_layer(&id, &tar[..]).unwrap();
        let mutable = snaps.mutable(std::slice::from_ref(&id)).unwrap();
        let mut lines = Vec::new();
        let status = run(
            mutable.root(),
            &sh("echo hi > /hello; rm /etc/motd; cat /etc/hostname"),
            &ExecOptions::new(store.join("tmp")),
            &mut |_, line| lines.push(String::from_utf8_lossy(line).into_owned()),
            &Canceller::new(),
        )
        .unwrap();
        assert_eq!(status, ExitStatus::Code(0));
        assert_eq!(lines, [DEFAULT_HOSTNAME]);
        let mut blob = Vec::new();
        mutable
            .commit(&CommitOptions::default(), &mut blob)
            .unwrap();
        let mut entries = Vec::new();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut crate::layer::decompress(&blob[..]).unwrap(), &mut raw)
            .unwrap();
        for e in tar::Archive::new(&raw[..]).entries().unwrap() {
            entries.push(String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap());
        }
        // No proc/dev/sys or /etc stubs, no copied-up /etc beyond the deletion.
        assert_eq!(entries, ["etc/", "etc/.wh.motd", "hello"], "{backend:?}");
        assert_eq!(
            crate::snapshot::test_mounts_under(&store).unwrap(),
            Vec::<PathBuf>::new()
        );
        let names: BTreeSet<_> = std::fs::read_dir(store.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.is_empty(), "{backend:?}: tmp left: {names:?}");
    }
}

/// A tmpfs on a test directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Snapshot costs of `RUN touch /x` over 100,000 files and `RUN cp -a /usr /usr2` over a
/// Debian-sized `/usr`, with both snapshotters, on tmpfs. A benchmark, not a test: run with
/// `cargo test -p kiln-builder --lib bench_ -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_snapshot_costs() {
    use crate::layer::{ChangeKind, Compression, LayerOptions, write_layer};
    use crate::snapshot::{Backend, CommitOptions, SnapshotOptions, Snapshots, chain_id};
    let dir = tempfile::tempdir().unwrap();
    let Some(tree) = rootfs(dir.path()) else {
        return;
    };
    let fs = dir.path().join("fs");
    std::fs::create_dir(&fs).unwrap();
    rustix::mount::mount(
        "tmpfs",
        &fs,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    let _tmpfs = Tmpfs(fs.clone());
    let mut tar = Vec::new();
    let busybox = write_layer(
        &tree,
        &LayerOptions {
            kind: ChangeKind::Tree,
            compression: Compression::None,
            source_date_epoch: None,
        },
        &mut tar,
    )
    .unwrap();
    let bases: [(&str, &str, usize, usize); 2] = [
        ("100,000 empty files", "touch /x", 100, 1000),
        // debian:bookworm's /usr: ~8,000 files, ~80 MB.
        (
            "a Debian-sized /usr (8,000 files, 80 MB)",
            "cp -a /usr /usr2",
            160,
            50,
        ),
    ];
    for (label, script, dirs, files) in bases {
        for backend in [Backend::Overlay, Backend::Copy] {
            let store = fs.join(format!("{backend:?}-{dirs}"));
            let snaps = Snapshots::at(
                store.join("snapshots"),
                store.join("tmp"),
                &SnapshotOptions {
                    backend: Some(backend),
                    ..SnapshotOptions::default()
                },
            )
            .unwrap();
            let base = Digest::of(label.as_bytes());
            let usr = snaps.path(&base).join("usr/share/data");
            let chunk = vec![7u8; if files == 1000 { 0 } else { 10_000 }];
            for d in 0..dirs {
                let sub = usr.join(format!("d{d:03}"));
                std::fs::create_dir_all(&sub).unwrap();
                for f in 0..files {
                    std::fs::write(sub.join(format!("f{f:04}")), &chunk).unwrap();
                }
            }
            let top = chain_id(Some(&base), &busybox.diff_id);
            snaps.prepare_layer(&top, &tar[..]).unwrap();
            let t0 = Instant::now();
            let mutable = snaps.mutable(&[base.clone(), top]).unwrap();
            let t1 = Instant::now();
            let status = run(
                mutable.root(),
                &sh(script),
                &ExecOptions::new(store.join("tmp")),
                &mut |_, _| {},
                &Canceller::new(),
            )
            .unwrap();
            assert!(status.success());
            let t2 = Instant::now();
            let mut blob = Vec::new();
            let committed = mutable
                .commit(&CommitOptions::default(), &mut blob)
                .unwrap();
            let t3 = Instant::now();
            eprintln!(
                "{backend:?}, RUN {script} over {label}: prepare {:.1} ms, run {:.1} ms, \
                 commit {:.1} ms (layer {} bytes)",
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3,
                (t3 - t2).as_secs_f64() * 1e3,
                committed.layer().size
            );
            drop(committed);
            std::fs::remove_dir_all(&store).unwrap();
        }
    }
}
