//! What a hostile base image or a CI system's signal must not do to a build: hang it, leave
//! mounts or processes behind, or run steps under the wrong groups.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{KillOnDrop, Kiln, context, mounts_under, with_busybox};

/// Runs `kiln` with `args`, failing the test (and killing kiln) if it has not ended within
/// `limit`: the point of these tests is that nothing hangs. Returns the exit code and stderr.
fn run_within(kiln: &Kiln, args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let log = kiln.path("stderr.log");
    let mut child = KillOnDrop(
        kiln.cmd()
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < limit,
            "kiln {args:?} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn a_fifo_as_etc_passwd_fails_workdir_copy_chown_and_run_at_once() {
    let Some(kiln) = with_busybox() else { return };
    let base = context(
        &kiln,
        "FROM busybox\nRUN rm /etc/passwd && mkfifo /etc/passwd\n",
        &[],
    );
    kiln.ok(&["build", "-q", "-t", "fifo-base", base.to_str().unwrap()]);
    let cases = [
        (
            "FROM fifo-base\nUSER app\nWORKDIR /work\n",
            "Dockerfile:3:1",
        ),
        ("FROM fifo-base\nCOPY --chown=app f /f\n", "Dockerfile:2:1"),
        ("FROM fifo-base\nUSER app\nRUN true\n", "Dockerfile:3:1"),
    ];
    for (dockerfile, line) in cases {
        let ctx = context(&kiln, dockerfile, &[("f", "x")]);
        let (code, stderr) = run_within(
            &kiln,
            &["build", "--progress=plain", ctx.to_str().unwrap()],
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(1), "{dockerfile}\n{stderr}");
        assert!(stderr.contains(line), "{dockerfile}\n{stderr}");
        assert!(
            stderr.contains("reading /etc/passwd of the image: is not a regular file"),
            "{dockerfile}\n{stderr}"
        );
    }
    // Numeric ids need no user database, as in BuildKit.
    let ctx = context(
        &kiln,
        "FROM fifo-base\nCOPY --chown=1000:1000 f /f\nUSER 1000:1000\nWORKDIR /w\n\
         RUN test \"$(stat -c %u:%g /f)\" = 1000:1000 && test \"$(stat -c %u:%g /w)\" = 1000:1000\n",
        &[("f", "x")],
    );
    let (code, stderr) = run_within(
        &kiln,
        &["build", "-q", ctx.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn sigterm_ends_a_build_blocked_in_a_download_within_seconds() {
    let Some(kiln) = with_busybox() else { return };
    // A server that accepts connections and never answers: the ADD blocks in a read that no
    // cancellation flag reaches (its idle timeout is a minute).
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let (accepted, connected) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in server.incoming().take(4) {
            open.push(conn);
            let _ = accepted.send(());
        }
        std::thread::sleep(Duration::from_secs(300));
    });
    let ctx = context(
        &kiln,
        &format!("FROM busybox\nRUN echo ran\nADD http://127.0.0.1:{port}/never /never\n"),
        &[],
    );
    let mut child = KillOnDrop(
        kiln.cmd()
            .args(["build", "--progress=plain", "-t", "hung:latest"])
            .arg(&ctx)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    connected.recv_timeout(Duration::from_secs(60)).unwrap();
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        // The grace is 5 s; before it existed, kiln waited out the download's idle timeout.
        assert!(
            sent.elapsed() < Duration::from_secs(30),
            "still running {:?} after SIGTERM",
            sent.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));
    assert_eq!(mounts_under(&kiln.root), Vec::<String>::new());
    let (_, stderr) = kiln.fails(&["inspect", "hung:latest"]);
    assert!(stderr.contains("No such image"), "{stderr}");
    // The store is usable at once.
    let ctx = context(&kiln, "FROM busybox\nRUN echo ran\n", &[]);
    kiln.ok(&["build", "-q", ctx.to_str().unwrap()]);
}
