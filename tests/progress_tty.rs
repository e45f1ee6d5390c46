//! `kiln build --progress=tty` in a real terminal (tmux): the live region while a step runs
//! (header with steps done of the total, the running step with its timer and output tail),
//! and what stays when the build ends (one line per step with how it ended, the summary, no
//! tail and no stray escape codes).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{EPOCH, Kiln, context, tool, with_busybox};

/// A tmux server of the test's own (its own socket), killed with its sessions when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Self {
        Self {
            socket: format!("kiln-{name}-{}", std::process::id()),
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]);
        cmd
    }

    /// Runs `kiln ARGS` in a new 100×30 session `name`; the shell then prints `EXIT=<code>`
    /// and waits, so the screen can be read after the build.
    fn build(&self, name: &str, kiln: &Kiln, args: &str) {
        let shell = format!(
            "{} {args}; echo EXIT=$?; sleep 60",
            env!("CARGO_BIN_EXE_kiln")
        );
        let status = self
            .cmd()
            .args(["new-session", "-d", "-s", name, "-x", "100", "-y", "30"])
            .arg("-e")
            .arg(format!("KILN_ROOT={}", kiln.root.display()))
            .arg("-e")
            .arg(format!("SOURCE_DATE_EPOCH={EPOCH}"))
            .arg(shell)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
    }

    /// The visible screen of session `name`, as text.
    fn screen(&self, name: &str) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen of `name` (30 s at most) until `done` holds; returns that screen.
    fn wait(&self, name: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen(name);
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// Whether a line of the screen is exactly `text` (give or take indentation).
fn has_line(screen: &str, text: &str) -> bool {
    screen.lines().any(|l| l.trim() == text)
}

/// The screen's line that contains all of `parts`.
fn line_with<'a>(screen: &'a str, parts: &[&str]) -> Option<&'a str> {
    screen.lines().find(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn the_tty_view_shows_running_steps_and_leaves_one_line_per_step() {
    let Some(kiln) = with_busybox() else {
        return;
    };
    if tool("tmux").is_none() {
        return;
    }
    let ctx = context(
        &kiln,
        "FROM busybox\nCOPY a /a\nRUN echo tick; sleep 3; echo tock\nENV X=1\n",
        &[("a", "a")],
    );
    let tmux = Tmux::new("tty");
    let args = format!("build --progress=tty -t tty:1 {}", ctx.display());
    tmux.build("first", &kiln, &args);

    // While the RUN sleeps: the header, the step with its timer, its output under it.
    let running = tmux.wait("first", "the RUN's output in the live view", |s| {
        has_line(s, "tick")
    });
    eprintln!("while running:\n{}", running.trim_end());
    let header = line_with(&running, &["[+] Building "]).expect("a header");
    assert!(header.ends_with("s (1/3)"), "{header:?}");
    let step = line_with(
        &running,
        &["#2 [stage-0 2/3] RUN echo tick; sleep 3; echo tock"],
    )
    .expect("the running step");
    assert!(step.trim_end().ends_with('s'), "a timer: {step:?}");
    assert!(!has_line(&running, "tock"), "{running}");
    // The ticker redraws: the step's timer moves while it sleeps.
    tmux.wait("first", "the running step's timer to pass 1s", |s| {
        line_with(s, &["#2 [stage-0 2/3] RUN echo tick"])
            .and_then(|l| l.split_whitespace().last()?.strip_suffix('s')?.parse().ok())
            .is_some_and(|t: f64| t >= 1.0)
    });

    let done = tmux.wait("first", "the build to end", |s| s.contains("EXIT="));
    eprintln!("at the end:\n{}", done.trim_end());
    assert!(has_line(&done, "EXIT=0"), "{done}");
    let step = line_with(&done, &["#2 [stage-0 2/3] RUN echo tick", " DONE "]).expect("DONE");
    assert!(step.trim_end().ends_with('s'), "{step:?}");
    assert!(line_with(&done, &["#1 [stage-0 1/3] COPY a /a", " DONE "]).is_some());
    assert!(line_with(&done, &["#3 [stage-0 3/3] ENV X=1", " DONE "]).is_some());
    // The tail collapsed with the step; the live region is gone.
    assert!(
        !has_line(&done, "tick") && !has_line(&done, "tock"),
        "{done}"
    );
    assert!(!done.contains("[+] Building"), "{done}");
    assert!(line_with(&done, &["3 steps in ", "2 run, 1 config"]).is_some());
    for garbage in ["\x1b", "[2m", "[0m", "[J", "[1A"] {
        assert!(!done.contains(garbage), "{garbage:?} on screen:\n{done}");
    }

    // A rebuild: every layer step comes from the cache.
    tmux.build("again", &kiln, &args);
    let again = tmux.wait("again", "the rebuild to end", |s| s.contains("EXIT="));
    eprintln!("the rebuild:\n{}", again.trim_end());
    assert!(has_line(&again, "EXIT=0"), "{again}");
    let step = line_with(&again, &["#2 [stage-0 2/3] RUN echo tick"]).expect("the RUN");
    assert!(step.trim_end().ends_with(" CACHED"), "{step:?}");
    assert!(line_with(&again, &["3 steps in ", "2 cached"]).is_some());
}
