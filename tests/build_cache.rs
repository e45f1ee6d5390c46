//! `kiln build`'s solver end to end: the build cache (hits, misses, `--build-arg`,
//! `--no-cache`, `kiln prune --all`, `ADD <url>`), reproducible images under
//! `SOURCE_DATE_EPOCH`, stages running in parallel, Ctrl-C during a RUN, and the
//! machine-readable outputs.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{
    Kiln, context, inspect, mounts_under, plain_steps, processes_with, spawn_until_sleeping,
    with_busybox,
};
use crate::text;

/// Builds `ctx` with plain progress; returns the image ID and the steps.
fn build(kiln: &Kiln, ctx: &Path, extra: &[&str]) -> (String, Vec<(bool, String)>) {
    let out = kiln
        .cmd()
        .args(["build", "--progress=plain"])
        .args(extra)
        .arg(ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "build failed:\n{stderr}");
    (stdout.trim().to_owned(), plain_steps(&stderr))
}

/// Which steps ran (not cached), by instruction.
fn ran(steps: &[(bool, String)]) -> Vec<&str> {
    steps
        .iter()
        .filter(|(cached, i)| !cached && !is_metadata(i))
        .map(|(_, i)| i.as_str())
        .collect()
}

fn is_metadata(instruction: &str) -> bool {
    ["ARG", "ENV", "LABEL", "CMD", "USER"]
        .iter()
        .any(|k| instruction.starts_with(k))
}

const DOCKERFILE: &str = "FROM busybox\n\
    RUN echo early > /early\n\
    ARG V=1\n\
    COPY web/ /web/\n\
    RUN cat /web/index.html > /copy; echo $V > /v\n\
    COPY other.txt /\n\
    CMD cat /v\n";

#[test]
fn the_cache_reruns_exactly_the_steps_a_change_reaches() {
    let Some(kiln) = with_busybox() else { return };
    let ctx = context(
        &kiln,
        DOCKERFILE,
        &[
            ("web/index.html", "one\n"),
            ("web-notes.txt", "not read\n"),
            ("other.txt", "other\n"),
            ("ignored.log", "noise\n"),
            (".dockerignore", "*.log\n"),
        ],
    );
    let all = [
        "RUN echo early > /early",
        "COPY web/ /web/",
        "RUN cat /web/index.html > /copy; echo $V > /v",
        "COPY other.txt /",
    ];
    let (first, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), all);

    // Nothing changed: every step is cached and the image is the same one.
    let (again, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), Vec::<&str>::new(), "{s:?}");
    assert_eq!(s.iter().filter(|(c, _)| *c).count(), 4);
    assert_eq!(again, first);

    // New mtimes, an ignored file and a file no COPY reads change nothing.
    for name in ["web/index.html", "other.txt"] {
        let f = fs::File::options()
            .write(true)
            .open(ctx.join(name))
            .unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
    }
    fs::write(ctx.join("ignored.log"), "more noise\n").unwrap();
    fs::write(ctx.join("web-notes.txt"), "still not read\n").unwrap();
    let (same, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), Vec::<&str>::new(), "{s:?}");
    assert_eq!(same, first);

    // A file the first COPY reads: that COPY and what follows run again, nothing before it.
    fs::write(ctx.join("web/index.html"), "two\n").unwrap();
    let (changed, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), all[1..]);
    assert_ne!(changed, first);

    // A build-arg: only the steps that see it (the RUN after its ARG) run, and what follows.
    let (_, s) = build(&kiln, &ctx, &["--build-arg", "V=2"]);
    assert_eq!(ran(&s), all[2..]);
    // A proxy build-arg reaches RUN but is not part of the cache key.
    let (_, s) = build(
        &kiln,
        &ctx,
        &[
            "--build-arg",
            "V=2",
            "--build-arg",
            "HTTP_PROXY=http://p:3128",
        ],
    );
    assert_eq!(ran(&s), Vec::<&str>::new(), "{s:?}");

    // --no-cache runs everything, and what it made is cached for the next build.
    let (_, s) = build(&kiln, &ctx, &["--no-cache"]);
    assert_eq!(ran(&s), all);
    let (_, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), Vec::<&str>::new(), "{s:?}");

    // The cache survives `kiln prune` and `kiln rmi`; `kiln prune --all` forgets it.
    kiln.ok(&["build", "-q", "-t", "cached:latest", ctx.to_str().unwrap()]);
    kiln.ok(&["rmi", "cached:latest"]);
    kiln.ok(&["prune"]);
    let (_, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), Vec::<&str>::new(), "{s:?}");
    let pruned = kiln.ok(&["prune", "--all"]);
    assert!(pruned.contains("build cache entries"), "{pruned}");
    let (_, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), all);
    assert!(kiln.store().verify().unwrap().is_empty());
}

#[test]
fn a_cached_layer_whose_snapshot_was_pruned_is_unpacked_again() {
    let Some(kiln) = with_busybox() else { return };
    let ctx = context(
        &kiln,
        "FROM busybox\nRUN echo cached > /f\nRUN test \"$(cat /f)\" = cached && echo ok > /g\n",
        &[],
    );
    build(&kiln, &ctx, &["-t", "x:1"]);
    // Untagged, the layers' snapshots go with prune; the cache keeps their blobs.
    kiln.ok(&["rmi", "x:1"]);
    kiln.ok(&["prune"]);
    let (_, s) = build(&kiln, &ctx, &["--build-arg", "UNUSED=1"]);
    assert!(
        s.iter()
            .filter(|(_, i)| i.starts_with("RUN"))
            .all(|(c, _)| *c),
        "{s:?}"
    );
    // A later step runs on the cached layers' files.
    let ctx = context(
        &kiln,
        "FROM busybox\nRUN echo cached > /f\nRUN test \"$(cat /f)\" = cached && echo ok > /g\nRUN test \"$(cat /g)\" = ok\n",
        &[],
    );
    let (_, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), ["RUN test \"$(cat /g)\" = ok"]);
}

/// A file served over HTTP on loopback, one connection at a time, with an `ETag` (its
/// version) that `If-None-Match` is answered against; counts full and not-modified answers.
struct Served {
    addr: SocketAddr,
    /// The body and its version.
    file: Arc<Mutex<(Vec<u8>, u32)>>,
    /// 200 answers, 304 answers.
    answers: Arc<Mutex<(usize, usize)>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn start(body: &[u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let file = Arc::new(Mutex::new((body.to_vec(), 1)));
        let answers = Arc::new(Mutex::new((0, 0)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (file, answers, stop) = (file.clone(), answers.clone(), stop.clone());
            move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let (body, version) = file.lock().unwrap().clone();
                    let etag = format!("\"v{version}\"");
                    let reply = if head.contains(&format!("if-none-match: {etag}")) {
                        answers.lock().unwrap().1 += 1;
                        format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n\r\n").into_bytes()
                    } else {
                        answers.lock().unwrap().0 += 1;
                        let mut reply = format!(
                            "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        reply.extend_from_slice(&body);
                        reply
                    };
                    let _ = conn.write_all(&reply);
                }
            }
        });
        Served {
            addr,
            file,
            answers,
            stop,
            thread: Some(thread),
        }
    }

    /// Serves `body` from now on, as a new version, or (a broken server) as the same one.
    fn replace(&self, body: &[u8], new_version: bool) {
        let mut file = self.file.lock().unwrap();
        *file = (body.to_vec(), file.1 + u32::from(new_version));
    }

    /// (200 answers, 304 answers) so far.
    fn answers(&self) -> (usize, usize) {
        *self.answers.lock().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An unpinned `ADD <url>` is keyed on the body the URL serves, as BuildKit's HTTP source: asked
/// again with `If-None-Match`, an unchanged file leaves the step (and the ones after it) cached
/// without being downloaded; a step that must run anyway downloads it; a new body re-runs it.
#[test]
fn add_of_an_unchanged_url_is_cached_without_downloading_it_again() {
    let kiln = Kiln::new();
    let served = Served::start(b"first\n");
    let add = format!("ADD http://{}/data.txt /data.txt", served.addr);
    let dockerfile = format!("FROM scratch\nCOPY before.txt /\n{add}\nCOPY after.txt /\n");
    let ctx = context(
        &kiln,
        &dockerfile,
        &[("before.txt", "1\n"), ("after.txt", "a\n")],
    );
    let (first, s) = build(&kiln, &ctx, &[]);
    assert_eq!(
        ran(&s),
        ["COPY before.txt /", add.as_str(), "COPY after.txt /"]
    );
    assert_eq!(served.answers(), (1, 0));

    let (again, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), Vec::<&str>::new(), "{s:?}");
    assert_eq!(again, first);
    assert_eq!(served.answers(), (1, 1), "asked, not downloaded");

    // A change before the ADD makes it run: still unchanged, now downloaded.
    fs::write(ctx.join("before.txt"), "2\n").unwrap();
    let (_, s) = build(&kiln, &ctx, &[]);
    assert_eq!(
        ran(&s),
        ["COPY before.txt /", add.as_str(), "COPY after.txt /"]
    );
    assert_eq!(served.answers(), (2, 2));

    served.replace(b"second\n", true);
    let (_, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), [add.as_str(), "COPY after.txt /"]);
    assert_eq!(served.answers(), (3, 2));

    // A server that calls a new body unchanged: caught when the step downloads it, and the
    // next build keys on the new body.
    served.replace(b"third\n", false);
    fs::write(ctx.join("before.txt"), "3\n").unwrap();
    let (_, stderr) = kiln.fails(&["build", "-q", ctx.to_str().unwrap()]);
    assert!(stderr.contains("changed while building"), "{stderr}");
    let (_, s) = build(&kiln, &ctx, &[]);
    assert_eq!(ran(&s), [add.as_str(), "COPY after.txt /"]);

    // Gone: the build fails at the ADD's line and names the URL.
    let addr = served.addr;
    drop(served);
    let (_, stderr) = kiln.fails(&["build", "-q", ctx.to_str().unwrap()]);
    assert!(
        stderr.contains(":3:") && stderr.contains(&format!("downloading http://{addr}/data.txt")),
        "{stderr}"
    );
}

/// A context with COPY, ADD (an archive with odd mtimes) and RUN, written at `dir`.
fn reproducible_context(dir: &Path) {
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nCOPY src/ /src/\nADD files.tar.gz /unpacked/\n\
         RUN mkdir -p /out && cat /src/* /unpacked/* > /out/all && date +%s > /out/when-ran-is-not-kept \
         && rm /out/when-ran-is-not-kept && touch /out/new\n\
         ENV A=1\nCMD [\"cat\", \"/out/all\"]\n",
    )
    .unwrap();
    fs::write(dir.join("src/a.txt"), "a\n").unwrap();
    fs::write(dir.join("src/b.txt"), "b\n").unwrap();
    let staging = tempfile::tempdir().unwrap();
    fs::write(staging.path().join("inside.txt"), "inside\n").unwrap();
    let status = Command::new("tar")
        .args(["--mtime=@1000000000", "-czf"])
        .arg(dir.join("files.tar.gz"))
        .arg("-C")
        .arg(staging.path())
        .arg("inside.txt")
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn source_date_epoch_makes_builds_reproducible_across_places_times_and_caches() {
    let Some(first) = with_busybox() else { return };
    let Some(second) = with_busybox() else { return };
    let epoch = "1700000000";
    let digest = |kiln: &Kiln, ctx: &Path| {
        let out = kiln
            .cmd()
            .env("SOURCE_DATE_EPOCH", epoch)
            .args(["build", "-q", "-t", "repro:latest"])
            .arg(ctx)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
        let image = inspect(kiln, "repro:latest");
        let manifest = kiln
            .store()
            .resolve("docker.io/library/repro:latest")
            .unwrap()
            .unwrap();
        (manifest.digest().to_string(), image)
    };
    let here = first.path("here");
    reproducible_context(&here);
    let (cold, image) = digest(&first, &here);
    assert_eq!(image["Created"], "2023-11-14T22:13:20Z");

    // Another directory, written later (new mtimes), another store: the same manifest.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let there = second.path("elsewhere/there");
    reproducible_context(&there);
    let (other_place, _) = digest(&second, &there);
    assert_eq!(other_place, cold);
    // Warm caches, whichever context they saw first.
    assert_eq!(digest(&second, &there).0, cold);
    assert_eq!(digest(&first, &there).0, cold);
    // And without the cache.
    let out = second
        .cmd()
        .env("SOURCE_DATE_EPOCH", epoch)
        .args(["build", "-q", "--no-cache"])
        .arg(&there)
        .output()
        .unwrap();
    assert!(out.status.success());
    let id = text(&out).0.trim().to_owned();
    assert_eq!(id, image["Id"].as_str().unwrap());
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let Some(kiln) = with_busybox() else { return };
    // Each stage leaves a mark in a shared cache mount and waits (up to 60 s) for the other's:
    // both can only finish if they run at once.
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=meet,target=/meet touch /meet/{me} && \
             i=0; while [ ! -e /meet/{other} ]; do i=$((i+1)); [ $i -lt 600 ] || exit 9; sleep 0.1; done; echo {me} > /{me}\n"
        )
    };
    let dockerfile = format!(
        "FROM busybox AS left\n{}FROM busybox AS right\n{}FROM busybox\n\
         COPY --from=left /left /\nCOPY --from=right /right /\nRUN cat /left /right\n",
        wait("left", "right"),
        wait("right", "left")
    );
    let ctx = context(&kiln, &dockerfile, &[]);
    let out = kiln
        .cmd()
        .args(["build", "--progress=plain", "-t", "both:latest"])
        .arg(&ctx)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // Output lines carry their step's number, which names the stage's step.
    let id = stderr
        .lines()
        .find_map(|l| l.strip_suffix(" [stage-2 3/3] RUN cat /left /right"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        stderr.contains(&format!("{id} left\n{id} right\n")),
        "{stderr}"
    );
}

#[test]
fn a_failing_stage_cancels_the_others() {
    let Some(kiln) = with_busybox() else { return };
    let dockerfile = "FROM busybox AS slow\nRUN sleep 600\n\
                      FROM busybox AS broken\nRUN exit 3\n\
                      FROM busybox\nCOPY --from=slow /etc/passwd /a\nCOPY --from=broken /etc/passwd /b\n";
    let ctx = context(&kiln, dockerfile, &[]);
    let (_, stderr) = kiln.fails(&["build", "-t", "never:latest", ctx.to_str().unwrap()]);
    assert!(stderr.contains("Dockerfile:4:1:"), "{stderr}");
    assert!(stderr.contains("exit code 3"), "{stderr}");
    let (_, stderr) = kiln.fails(&["inspect", "never:latest"]);
    assert!(stderr.contains("No such image"), "{stderr}");
}

#[test]
fn ctrl_c_during_a_run_leaves_no_mount_process_or_tag() {
    let Some(kiln) = with_busybox() else { return };
    let marker = format!("{}", 31_000_000 + std::process::id() % 1_000_000);
    let ctx = context(
        &kiln,
        &format!("FROM busybox\nRUN echo started && sleep {marker}\n"),
        &[],
    );
    let mut build = kiln.cmd();
    build
        .args(["build", "--progress=plain", "-t", "interrupted:latest"])
        .arg(&ctx);
    let (mut child, lines) = spawn_until_sleeping(build, &marker);
    let status = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("cancelled")), "{rest:?}");
    assert_eq!(mounts_under(&kiln.root), Vec::<String>::new());
    assert_eq!(
        processes_with(&format!("sleep {marker}")),
        Vec::<String>::new()
    );
    let (_, stderr) = kiln.fails(&["inspect", "interrupted:latest"]);
    assert!(stderr.contains("No such image"), "{stderr}");
}

#[test]
fn json_progress_metadata_file_network_and_platform() {
    let Some(kiln) = with_busybox() else { return };
    let ctx = context(
        &kiln,
        "FROM busybox\nRUN ls /sys/class/net > /nets && echo hello\n",
        &[],
    );
    let metadata = kiln.path("metadata.json");
    let out = kiln
        .cmd()
        .args(["build", "--progress=json", "--network=none", "-t", "j:1"])
        .arg("--metadata-file")
        .arg(&metadata)
        .arg(&ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(events[0]["type"], "step");
    assert_eq!(
        events[0]["instruction"],
        "RUN ls /sys/class/net > /nets && echo hello"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "output" && e["line"] == "hello")
    );
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done");
    assert_eq!(done["image"], stdout.trim());
    let meta: serde_json::Value = serde_json::from_slice(&fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(meta["containerimage.config.digest"], stdout.trim());
    assert_eq!(meta["image.name"], "docker.io/library/j:1");
    assert_eq!(meta["containerimage.digest"], done["manifest"]);
    // --network=none leaves the RUN only its loopback.
    let check = context(&kiln, "FROM j:1\nRUN test \"$(cat /nets)\" = lo\n", &[]);
    kiln.ok(&["build", "-q", check.to_str().unwrap()]);

    // Another platform: fine without RUN (RUN under QEMU, and the error without it, are
    // multiplatform.rs's).
    let other = if cfg!(target_arch = "aarch64") {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let scratch = context(&kiln, "FROM scratch\nCOPY f /f\n", &[("f", "x")]);
    kiln.ok(&[
        "build",
        "-q",
        "--platform",
        other,
        "-t",
        "cross:1",
        scratch.to_str().unwrap(),
    ]);
    assert_eq!(
        inspect(&kiln, "cross:1")["Architecture"],
        other.split('/').nth(1).unwrap()
    );
}

#[test]
fn add_host_reaches_every_run_and_its_key() {
    let Some(kiln) = with_busybox() else { return };
    let ctx = context(
        &kiln,
        "FROM busybox\nRUN grep registry.test /etc/hosts > /hosts\nCMD [\"cat\", \"/hosts\"]\n",
        &[],
    );
    let (_, first) = build(
        &kiln,
        &ctx,
        &["-t", "h:1", "--add-host", "registry.test:10.0.0.7"],
    );
    assert_eq!(ran(&first), ["RUN grep registry.test /etc/hosts > /hosts"]);
    assert_eq!(kiln.ok(&["run", "h:1"]), "10.0.0.7\tregistry.test\n");
    // The same hosts hit the cache; other ones re-run the step (BuildKit keys them too).
    let (_, same) = build(&kiln, &ctx, &["--add-host", "registry.test:10.0.0.7"]);
    assert_eq!(ran(&same), Vec::<&str>::new());
    let (_, other) = build(&kiln, &ctx, &["--add-host", "registry.test=10.0.0.8"]);
    assert_eq!(ran(&other).len(), 1);
    // `kiln run` takes it too; host-gateway needs a daemon and is refused by name.
    let hosts = kiln.ok(&[
        "run",
        "--add-host",
        "db:192.0.2.1",
        "h:1",
        "tail",
        "-n",
        "1",
        "/etc/hosts",
    ]);
    assert_eq!(hosts, "192.0.2.1\tdb\n");
    let out = kiln.output(&[
        "build",
        "--add-host",
        "gw:host-gateway",
        ctx.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kiln has no daemon"), "{stderr}");
}
