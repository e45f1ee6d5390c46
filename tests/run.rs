//! `kiln run` end to end, as root on the busybox base: the command docker would run, its
//! environment, user, directory and network, its output on the right streams, docker's exit
//! codes, a root that is thrown away, and Ctrl-C leaving no process and no mount behind.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_builder::snapshot::{Backend, Snapshots};

use crate::support::{Kiln, context, mounts_under, wait_until, with_busybox};
use crate::text;

/// Runs `kiln run ARGS`, returning the exit code and both streams.
fn run(kiln: &Kiln, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let out: Output = kiln.output(&all);
    let (stdout, stderr) = text(&out);
    (out.status.code().expect("kiln exited"), stdout, stderr)
}

/// Runs `kiln run ARGS`, asserting exit code 0; returns standard output.
fn run_ok(kiln: &Kiln, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(kiln, args);
    assert_eq!(code, 0, "kiln run {args:?}:\n{stdout}\n{stderr}");
    stdout
}

/// Builds `dockerfile` as `name`.
fn build(kiln: &Kiln, name: &str, dockerfile: &str) {
    let ctx = context(kiln, dockerfile, &[]);
    kiln.ok(&["build", "-q", "-t", name, ctx.to_str().unwrap()]);
}

#[test]
fn exit_codes_are_dockers() {
    let Some(kiln) = with_busybox() else { return };
    let table: [(&[&str], i32, &str); 8] = [
        (&["busybox", "true"], 0, ""),
        (&["busybox", "sh", "-c", "exit 3"], 3, ""),
        (&["busybox", "sh", "-c", "kill -9 $$"], 137, ""),
        (&["busybox", "no-such-command"], 127, "no-such-command"),
        (&["busybox", "/etc/passwd"], 126, "Permission denied"),
        (&["busybox", "/tmp"], 126, "/tmp: Permission denied"),
        (
            &["no-such-image:1", "true"],
            125,
            "No such image: no-such-image:1",
        ),
        // The seed's `docker run -ti --rm -v …:/data centos:volume bash`: refused, not run
        // with a shell that would read /dev/null and exit at once.
        (
            &["-ti", "--rm", "busybox", "sh"],
            125,
            "-i/-t (an interactive terminal) is not supported yet",
        ),
    ];
    for (args, want, message) in table {
        let (code, stdout, stderr) = run(&kiln, args);
        assert_eq!(code, want, "{args:?}:\n{stdout}\n{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        if want < 125 {
            assert_eq!(stderr, "", "{args:?}");
        }
    }
    // An image with nothing to run is an error of kiln's.
    let (code, _, stderr) = run(&kiln, &["busybox"]);
    assert_eq!(
        (code, stderr.contains("empty command")),
        (125, true),
        "{stderr}"
    );
}

#[test]
fn output_goes_to_the_right_stream_byte_for_byte() {
    let Some(kiln) = with_busybox() else { return };
    let (code, stdout, stderr) = run(
        &kiln,
        &[
            "busybox",
            "sh",
            "-c",
            "echo out1; echo err1 >&2; echo; echo out2; echo err2 >&2",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(stdout, "out1\n\nout2\n");
    assert_eq!(stderr, "err1\nerr2\n");
    // A line longer than the sandbox's 64 KiB output pieces comes out whole.
    let long = run_ok(
        &kiln,
        &[
            "busybox",
            "sh",
            "-c",
            "head -c 200000 /dev/zero | tr '\\0' x; echo; echo end",
        ],
    );
    assert_eq!(long, format!("{}\nend\n", "x".repeat(200_000)));
}

#[test]
fn entrypoint_cmd_and_their_overrides() {
    let Some(kiln) = with_busybox() else { return };
    build(
        &kiln,
        "ep:latest",
        "FROM busybox\nENTRYPOINT [\"echo\", \"ep\"]\nCMD [\"default\"]\n",
    );
    build(
        &kiln,
        "shell:latest",
        "FROM busybox\nCMD echo \"shell $0\"\n",
    );
    let table: [(&[&str], &str); 7] = [
        (&["ep"], "ep default\n"),
        (&["ep", "given", "args"], "ep given args\n"),
        (&["--entrypoint", "echo", "ep"], "\n"),
        (&["--entrypoint", "echo", "ep", "x"], "x\n"),
        (&["--entrypoint", "", "ep", "echo", "y"], "y\n"),
        (&["shell"], "shell /bin/sh\n"),
        (&["shell", "echo", "other"], "other\n"),
    ];
    for (args, want) in table {
        assert_eq!(run_ok(&kiln, args), want, "{args:?}");
    }
    let (code, _, stderr) = run(&kiln, &["--entrypoint", "", "ep"]);
    assert_eq!(code, 125, "{stderr}");
}

#[test]
fn environment_user_workdir_and_network() {
    let Some(kiln) = with_busybox() else { return };
    build(
        &kiln,
        "env:latest",
        "FROM busybox\nENV A=image B=image C=kept\nUSER nobody\nWORKDIR /srv\n",
    );
    let env = kiln
        .cmd()
        .env("FROM_HOST", "host value")
        .env_remove("B")
        .args(["run", "-e", "A=cli", "-e", "FROM_HOST", "-e", "B"])
        .args(["-e", "D=x=y", "env:latest", "env"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&env);
    assert!(env.status.success(), "{stderr}");
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "A=cli",
            "C=kept",
            "D=x=y",
            "FROM_HOST=host value",
            "HOME=/nonexistent",
            "HOSTNAME=kiln",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    );
    // The image's USER and WORKDIR, then overridden.
    assert_eq!(
        run_ok(&kiln, &["env:latest", "sh", "-c", "id -u; pwd"]),
        "65534\n/srv\n"
    );
    assert_eq!(
        run_ok(
            &kiln,
            &[
                "--user",
                "0:0",
                "-w",
                "/made/here",
                "env:latest",
                "sh",
                "-c",
                "id -u; pwd"
            ]
        ),
        "0\n/made/here\n"
    );
    // The primary gid is a supplementary group too, as docker run sets it since CVE-2023-25173.
    assert_eq!(
        run_ok(&kiln, &["--user", "1234:5678", "busybox", "id"]),
        "uid=1234 gid=5678 groups=5678\n"
    );
    let (code, _, stderr) = run(&kiln, &["-w", "relative", "busybox", "pwd"]);
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("must be an absolute path"), "{stderr}");
    let (code, _, stderr) = run(&kiln, &["--user", "nosuchuser", "busybox", "true"]);
    assert_eq!(code, 125, "{stderr}");

    // --network=none: only loopback, up.
    let dev = run_ok(
        &kiln,
        &["--network=none", "busybox", "cat", "/proc/net/dev"],
    );
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{dev}");
    let host = run_ok(&kiln, &["busybox", "cat", "/proc/net/dev"]);
    let ours = std::fs::read_to_string("/proc/net/dev").unwrap();
    assert_eq!(
        host.lines().count(),
        ours.lines().count(),
        "the default network is the host's"
    );
}

#[test]
fn the_root_is_thrown_away_and_binds_reach_the_host() {
    let Some(kiln) = with_busybox() else { return };
    run_ok(
        &kiln,
        &["busybox", "sh", "-c", "echo x > /made && rm /bin/ls"],
    );
    assert_eq!(
        run(&kiln, &["busybox", "test", "-e", "/made"]).0,
        1,
        "a write reached the image"
    );
    run_ok(&kiln, &["busybox", "test", "-e", "/bin/ls"]);

    let shared = kiln.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("in"), "from the host\n").unwrap();
    let rw = format!("{}:/data", shared.display());
    assert_eq!(
        run_ok(
            &kiln,
            &[
                "-v",
                &rw,
                "busybox",
                "sh",
                "-c",
                "cat /data/in; echo back > /data/out"
            ]
        ),
        "from the host\n"
    );
    assert_eq!(
        std::fs::read_to_string(shared.join("out")).unwrap(),
        "back\n"
    );
    let ro = format!("{}:/data:ro", shared.display());
    let (code, _, stderr) = run(&kiln, &["-v", &ro, "busybox", "touch", "/data/x"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    let (code, _, stderr) = run(&kiln, &["-v", "named:/data", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(stderr.contains("must be absolute"), "{stderr}");
}

/// The pids of processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == want) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn sigint_kills_the_command_and_leaves_no_mount() {
    let Some(kiln) = with_busybox() else { return };
    let Some(kill) = crate::support::tool("kill") else {
        return;
    };
    let argv = ["sleep", "3141"];
    assert!(
        processes(&argv).is_empty(),
        "a sleep 3141 is already running"
    );
    // Ignored by the command's shell and by sleep itself: only killing the tree ends it.
    let child = kiln
        .cmd()
        .args([
            "run",
            "busybox",
            "sh",
            "-c",
            "trap '' INT TERM; sleep 3141; echo after",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the sleep to start", || !processes(&argv).is_empty());
    let overlay = Snapshots::open(&kiln.store(), &Default::default())
        .unwrap()
        .backend()
        == Backend::Overlay;
    if overlay {
        assert!(
            !mounts_under(&kiln.root).is_empty(),
            "the run's root is not a mount under the store"
        );
    }
    let status = Command::new(kill)
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(!stdout.contains("after"), "{stdout}");
    wait_until("the sleep to go", || processes(&argv).is_empty());
    assert_eq!(mounts_under(&kiln.root), Vec::<String>::new());
    assert_eq!(
        crate::support::dir_names(&kiln.root.join("tmp")),
        Vec::<String>::new(),
        "scratch left in the store"
    );
    // SIGTERM does the same, with 143.
    let mut child = kiln
        .cmd()
        .args(["run", "busybox", "sleep", "3141"])
        .spawn()
        .unwrap();
    wait_until("the sleep to start", || !processes(&argv).is_empty());
    std::thread::sleep(Duration::from_millis(100));
    let status = Command::new(crate::support::tool("kill").unwrap())
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
    wait_until("the sleep to go", || processes(&argv).is_empty());
    assert_eq!(mounts_under(&kiln.root), Vec::<String>::new());
}
