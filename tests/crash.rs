//! Crash safety of the store: `kiln build`, `pull`, `push`, `tag`, `rmi` and `prune` killed
//! (SIGKILL) at every crash point of the store's commits (`KILN_CRASH_AT`, see
//! `builder/src/store/crash.rs`), and at measured moments from outside; and `kiln fsck`, which
//! judges what they leave.
//!
//! Each attempt starts from a copy of the same store, runs the command with one point armed,
//! and, when it was killed there, checks the store as the crash left it: `kiln fsck` finds
//! nothing but harmless leftovers, every tag is the one it was before or the one the command
//! makes, and every snapshot directory is whole. Then it runs the command again, which must
//! succeed and leave the store exactly as a run that never crashed: `kiln fsck` silent, `tmp/`
//! empty, nothing mounted, the same tags, and after `kiln prune` the same blobs. Points are
//! visited 1, 2, … times until the command no longer reaches the point that often, so a change
//! in how many blobs or records a command writes is followed without editing the test.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_builder::image::{self, ImageConfig, MediaTypes};
use kiln_builder::layer::{ChangeKind, Compression, LayerOptions, write_layer};
use kiln_builder::store::Store;
use kiln_registry::Digest;
use oci_spec::image::{Descriptor, MediaType};

use crate::support::registry::{Config, RegistryServer};
use crate::support::registry_image::noise;
use crate::support::{EPOCH, context, mounts_under, run, wait_until, with_busybox};

/// How often each point is visited before the command is killed there.
#[derive(Debug, Clone, Copy)]
enum Visits {
    /// 1, 2, … up to this many, stopping at the first the command does not reach.
    Each(u64),
    /// Only these (a point visited thousands of times, like each write into a blob).
    Only(&'static [u64]),
}

/// The signal a crash point kills with.
const SIGKILL: i32 = 9;

/// Every crash point, with how its visits are chosen.
const POINTS: [(&str, Visits); 11] = [
    ("blob-write", Visits::Only(&[1, 3, 40])),
    ("blob-synced", Visits::Each(8)),
    ("blob-renamed", Visits::Each(8)),
    ("replace-partial", Visits::Each(8)),
    ("replace-synced", Visits::Each(8)),
    ("replace-renamed", Visits::Each(8)),
    ("untagged", Visits::Each(1)),
    ("blob-deleted", Visits::Each(8)),
    ("snapshot-unpacked", Visits::Each(4)),
    ("snapshot-moved", Visits::Each(4)),
    ("tree-entry-removed", Visits::Only(&[1, 2, 5, 30])),
];

/// A command to crash, and the store it starts from.
struct Scenario<'a> {
    /// The store every attempt starts from (copied).
    template: PathBuf,
    /// The command of attempt `i` (0 is the run that never crashes).
    args: &'a dyn Fn(usize) -> Vec<String>,
    /// Whether the command can be run again after a crash left the store as it did (`kiln rmi`
    /// of a tag the crashed run already removed cannot).
    repeatable: &'a dyn Fn(&Path) -> bool,
    /// More checks once the command has run again (the registry has the image, …).
    recovered: &'a dyn Fn(usize, &Path),
    /// Points the command must reach (so the test cannot pass by never crashing).
    must_reach: &'a [&'a str],
}

/// Scratch space: the registry's client configuration (empty) and the stores.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["docker", "certs.d"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `kiln` on the store `root`, with nothing of the machine's registry configuration and no
    /// crash point armed.
    fn kiln(&self, root: &Path) -> Command {
        let mut cmd = crate::kiln(root);
        cmd.env("SOURCE_DATE_EPOCH", EPOCH)
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("KILN_CERTS_D", self.path("certs.d"))
            .env_remove("KILN_CRASH_AT")
            .stdin(Stdio::null());
        cmd
    }

    fn ok(&self, root: &Path, args: &[String]) -> String {
        run(self.kiln(root).args(args))
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// `cp -a`: a store copied with its modes, owners, device nodes and xattrs (snapshots).
fn copy_store(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Tag → digest.
fn tags(root: &Path) -> BTreeMap<String, String> {
    Store::open(root)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|(name, desc)| (name, desc.digest().to_string()))
        .collect()
}

fn blobs(root: &Path) -> BTreeSet<String> {
    fs::read_dir(root.join("oci/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn tmp_entries(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every snapshot directory, as a listing of what is in it (paths, types, modes, contents).
fn snapshots(root: &Path) -> BTreeMap<String, Vec<String>> {
    let dir = root.join("snapshots");
    let Ok(entries) = fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            let mut listing = Vec::new();
            list_tree(&e.path(), "", &mut listing);
            (e.file_name().into_string().unwrap(), listing)
        })
        .collect()
}

fn list_tree(path: &Path, rel: &str, out: &mut Vec<String>) {
    let meta = fs::symlink_metadata(path).unwrap();
    let kind = meta.file_type();
    let what = if kind.is_dir() {
        "dir".to_owned()
    } else if kind.is_symlink() {
        format!("-> {}", fs::read_link(path).unwrap().display())
    } else if kind.is_file() {
        Digest::of(&fs::read(path).unwrap()).to_string()
    } else if kind.is_char_device() {
        format!("char {}", meta.rdev())
    } else {
        "other".to_owned()
    };
    out.push(format!("{rel} {:o} {what}", meta.mode()));
    if kind.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path).unwrap().map(|e| e.unwrap()).collect();
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let name = child.file_name().into_string().unwrap();
            list_tree(&child.path(), &format!("{rel}/{name}"), out);
        }
    }
}

/// `kiln fsck`: exit code and its lines.
fn fsck(s: &Scratch, root: &Path) -> (Option<i32>, Vec<String>) {
    let out = s.kiln(root).arg("fsck").output().unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.code(), lines)
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What the store must look like after a crash: only harmless leftovers, every tag as it was
/// or as the command makes it, every snapshot whole.
struct Expected {
    before_tags: BTreeMap<String, String>,
    after_tags: BTreeMap<String, String>,
    before_snapshots: BTreeMap<String, Vec<String>>,
    after_snapshots: BTreeMap<String, Vec<String>>,
    /// The blobs after the command and `kiln prune`.
    after_blobs: BTreeSet<String>,
}

fn check_crashed(s: &Scratch, root: &Path, expected: &Expected, what: &str) {
    let (code, lines) = fsck(s, root);
    assert_eq!(code, Some(0), "{what}: fsck after the crash: {lines:#?}");
    for line in &lines {
        assert!(line.ends_with("(harmless)"), "{what}: {line}");
    }
    let now = tags(root);
    for name in now.keys().chain(expected.after_tags.keys()) {
        let (was, will, is) = (
            expected.before_tags.get(name),
            expected.after_tags.get(name),
            now.get(name),
        );
        assert!(
            is == was || is == will,
            "{what}: tag {name} is {is:?}, neither {was:?} (before) nor {will:?} (after)"
        );
    }
    for (name, listing) in snapshots(root) {
        assert!(
            expected.before_snapshots.get(&name) == Some(&listing)
                || expected.after_snapshots.get(&name) == Some(&listing),
            "{what}: snapshot {name} is not whole"
        );
    }
}

fn check_recovered(s: &Scratch, root: &Path, expected: &Expected, what: &str) {
    assert_eq!(
        fsck(s, root),
        (Some(0), vec![]),
        "{what}: fsck after recovery"
    );
    assert_eq!(tmp_entries(root), Vec::<String>::new(), "{what}: tmp/");
    assert_eq!(mounts_under(root), Vec::<String>::new(), "{what}: mounts");
    assert_eq!(tags(root), expected.after_tags, "{what}: tags");
    s.ok(root, &strings(&["prune"]));
    assert_eq!(
        blobs(root),
        expected.after_blobs,
        "{what}: blobs after prune"
    );
}

/// Kills the scenario's command at every point; returns the `point:visit`s it was killed at.
fn crash_everywhere(s: &Scratch, scenario: &Scenario<'_>) -> Vec<String> {
    let reference = s.path("reference");
    copy_store(&scenario.template, &reference);
    s.ok(&reference, &(scenario.args)(0));
    let after_tags = tags(&reference);
    let after_snapshots = snapshots(&reference);
    s.ok(&reference, &strings(&["prune"]));
    let expected = Expected {
        before_tags: tags(&scenario.template),
        after_tags,
        before_snapshots: snapshots(&scenario.template),
        after_snapshots,
        after_blobs: blobs(&reference),
    };

    let mut crashes = Vec::new();
    let mut attempt = 0;
    for (point, visits) in POINTS {
        let ns: Vec<u64> = match visits {
            Visits::Each(max) => (1..=max).collect(),
            Visits::Only(ns) => ns.to_vec(),
        };
        for n in ns {
            attempt += 1;
            let what = format!("{point}:{n}");
            let root = s.path(&format!("attempt-{attempt}"));
            copy_store(&scenario.template, &root);
            let args = (scenario.args)(attempt);
            let out = s
                .kiln(&root)
                .args(&args)
                .env("KILN_CRASH_AT", &what)
                .output()
                .unwrap();
            if out.status.signal() != Some(SIGKILL) {
                // The command reached the point fewer than n times: it must have succeeded.
                assert!(out.status.success(), "{what}: {}", describe(&out));
                fs::remove_dir_all(&root).unwrap();
                match visits {
                    Visits::Each(_) => break,
                    Visits::Only(_) => continue,
                }
            }
            crashes.push(what.clone());
            check_crashed(s, &root, &expected, &what);
            if (scenario.repeatable)(&root) {
                s.ok(&root, &args);
            }
            (scenario.recovered)(attempt, &root);
            check_recovered(s, &root, &expected, &what);
            fs::remove_dir_all(&root).unwrap();
        }
    }
    for point in scenario.must_reach {
        assert!(
            crashes.iter().any(|c| c.starts_with(&format!("{point}:"))),
            "never killed at {point}: {crashes:?}"
        );
    }
    crashes
}

/// Writes an image of one layer per entry of `layers` (uncompressed, as builds leave them, or
/// gzip) into the store at `root`, tags it `name`, and returns its descriptor.
fn write_image(
    root: &Path,
    name: &str,
    layers: &[&[(&str, &[u8])]],
    compression: Compression,
) -> Descriptor {
    let store = Store::open(root).unwrap();
    let mut config = ImageConfig::new("amd64", "linux");
    let mut descs = Vec::new();
    for files in layers {
        let tree = tempfile::tempdir().unwrap();
        for (path, content) in *files {
            fs::write(tree.path().join(path), content).unwrap();
        }
        let options = LayerOptions {
            kind: ChangeKind::Tree,
            compression,
            source_date_epoch: Some(0),
        };
        let mut writer = store.blob_writer().unwrap();
        let info = write_layer(tree.path(), &options, &mut writer).unwrap();
        writer.commit_verified(&info.digest, info.size).unwrap();
        config.rootfs.diff_ids.push(info.diff_id.clone());
        descs.push(image::descriptor(
            MediaType::from(info.media_type),
            &info.digest,
            info.size,
        ));
    }
    config.history = vec![Default::default(); layers.len()];
    let desc = store.write_image(&config, &descs, MediaTypes::Oci).unwrap();
    store.tag(name, &desc).unwrap();
    desc
}

/// The name `kiln` gives a short one.
fn full(short: &str) -> String {
    format!("docker.io/library/{short}:latest")
}

#[test]
fn crashes_during_tag_leave_the_old_tag_or_the_new() {
    let s = Scratch::new();
    let template = s.path("template");
    write_image(&template, &full("x"), &[&[("x", b"x")]], Compression::Gzip);
    let y = write_image(&template, &full("y"), &[&[("y", b"y")]], Compression::Gzip);
    Store::open(&template).unwrap().tag(&full("t"), &y).unwrap();
    let crashes = crash_everywhere(
        &s,
        &Scenario {
            template,
            args: &|_| strings(&["tag", "x", "t"]),
            repeatable: &|_| true,
            recovered: &|_, _| {},
            must_reach: &["replace-partial", "replace-synced", "replace-renamed"],
        },
    );
    eprintln!("tag killed at {crashes:?}");
}

#[test]
fn crashes_during_rmi_leave_the_image_whole_or_untagged() {
    let s = Scratch::new();
    let template = s.path("template");
    let base: &[(&str, &[u8])] = &[("base", b"shared by both images")];
    let (x, y) = (full("x"), full("y"));
    write_image(
        &template,
        &x,
        &[base, &[("x", b"only x")]],
        Compression::Gzip,
    );
    write_image(
        &template,
        &y,
        &[base, &[("y", b"only y")]],
        Compression::Gzip,
    );
    let crashes = crash_everywhere(
        &s,
        &Scenario {
            template,
            args: &|_| strings(&["rmi", "x"]),
            // Once x is untagged, `kiln rmi x` is "No such image"; prune takes the rest.
            repeatable: &|root| tags(root).contains_key(&x),
            recovered: &|_, _| {},
            must_reach: &["replace-synced", "untagged", "blob-deleted"],
        },
    );
    assert!(
        crashes.contains(&"blob-deleted:3".to_owned()),
        "{crashes:?}"
    );
}

/// A registry holding `{addr}/test/crash:1`, a gzip image of `size` incompressible bytes, and
/// a store where that name is an older image: the template of the pull tests.
fn pull_setup(s: &Scratch, reg: &RegistryServer, size: usize) -> (PathBuf, String) {
    let name = format!("{}/test/crash:1", reg.addr);
    let seed = s.path("seed");
    let big = noise(size, 7);
    write_image(
        &seed,
        &name,
        &[&[("big", &big)], &[("small", b"small")]],
        Compression::Gzip,
    );
    s.ok(&seed, &strings(&["push", &name]));
    let template = s.path("template");
    write_image(&template, &name, &[&[("old", b"old")]], Compression::Gzip);
    (template, name)
}

#[test]
fn crashes_during_pull_leave_the_old_image_or_the_new() {
    let Some(reg) = RegistryServer::start(Config::default()) else {
        return;
    };
    let s = Scratch::new();
    let (template, name) = pull_setup(&s, &reg, 512 * 1024);
    let crashes = crash_everywhere(
        &s,
        &Scenario {
            template,
            args: &|_| strings(&["pull", "-q", &name]),
            repeatable: &|_| true,
            recovered: &|_, _| {},
            must_reach: &[
                "blob-write",
                "blob-synced",
                "blob-renamed",
                "replace-synced",
            ],
        },
    );
    eprintln!("pull killed at {crashes:?}");
}

#[test]
fn crashes_during_push_leave_the_store_whole_and_the_next_push_completes() {
    let Some(reg) = RegistryServer::start(Config::default()) else {
        return;
    };
    let s = Scratch::new();
    let template = s.path("template");
    let name = format!("{}/test/up:1", reg.addr);
    let big = noise(256 * 1024, 3);
    // Uncompressed layers, as a build leaves them: the push compresses them (blobs, records).
    write_image(
        &template,
        &name,
        &[&[("big", &big)], &[("small", b"small")]],
        Compression::None,
    );
    let dest = |i: usize| format!("{}/test/attempt{i}:1", reg.addr);
    let pushed = s.ok(&template, &strings(&["push", "-q", &name, &dest(1000)]));
    let pushed = pushed.trim().to_owned();
    // The template must not keep what that push compressed.
    fs::remove_dir_all(template.join("cache")).unwrap();
    s.ok(&template, &strings(&["prune"]));
    let crashes = crash_everywhere(
        &s,
        &Scenario {
            template,
            args: &|i| strings(&["push", "-q", &name, &dest(i)]),
            repeatable: &|_| true,
            recovered: &|i, _| {
                // What the registry has under the attempt's name is the whole image.
                let other = s.path("pulled");
                let _ = fs::remove_dir_all(&other);
                let digest = s.ok(&other, &strings(&["pull", "-q", &dest(i)]));
                assert_eq!(digest.trim(), pushed, "attempt {i}");
                assert_eq!(Store::open(&other).unwrap().verify().unwrap(), []);
            },
            must_reach: &["blob-write", "blob-synced", "replace-synced"],
        },
    );
    eprintln!("push killed at {crashes:?}");
}

#[test]
fn kills_at_measured_moments_of_a_pull_leave_the_store_whole() {
    let Some(reg) = RegistryServer::start(Config::default()) else {
        return;
    };
    let s = Scratch::new();
    let (template, name) = pull_setup(&s, &reg, 24 << 20);
    let reference = s.path("reference");
    copy_store(&template, &reference);
    let start = Instant::now();
    s.ok(&reference, &strings(&["pull", "-q", &name]));
    let took = start.elapsed();
    let new = tags(&reference)[&name].clone();
    let old = tags(&template)[&name].clone();
    let mut killed = 0;
    for k in 1..=6u32 {
        let root = s.path(&format!("kill-{k}"));
        copy_store(&template, &root);
        let mut child = s
            .kiln(&root)
            .args(["pull", "-q", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(took * k / 7);
        killed += usize::from(child.try_wait().unwrap().is_none());
        let _ = child.kill();
        child.wait().unwrap();
        let what = format!("killed after {:?}", took * k / 7);
        let (code, lines) = fsck(&s, &root);
        assert_eq!(code, Some(0), "{what}: {lines:#?}");
        assert!(
            lines.iter().all(|l| l.ends_with("(harmless)")),
            "{what}: {lines:#?}"
        );
        let tag = &tags(&root)[&name];
        assert!(*tag == old || *tag == new, "{what}: {tag}");
        s.ok(&root, &strings(&["pull", "-q", &name]));
        assert_eq!(fsck(&s, &root), (Some(0), vec![]), "{what}");
        assert_eq!(tmp_entries(&root), Vec::<String>::new(), "{what}");
        assert_eq!(tags(&root)[&name], new, "{what}");
        fs::remove_dir_all(&root).unwrap();
    }
    // A pull of this size takes long enough that most kills land while it runs.
    eprintln!("{killed} of 6 kills landed during a pull that takes {took:?}");
    assert!(
        killed >= 3,
        "only {killed} kills landed during the pull ({took:?})"
    );
}

const DOCKERFILE: &str = "FROM busybox\n\
    RUN echo built > /built && mkdir -p /d/e && echo x > /d/e/f && rm /bin/vi\n\
    COPY hello.txt /hello.txt\n\
    CMD [\"cat\", \"/built\"]\n";

#[test]
fn crashes_during_build_leave_no_half_image_snapshot_or_tag() {
    let Some(kiln) = with_busybox() else { return };
    let s = Scratch::new();
    let ctx = context(&kiln, DOCKERFILE, &[("hello.txt", "hello\n")]);
    // The tag exists before (on busybox): after a crash it is busybox or the new image.
    kiln.ok(&["tag", "busybox", "crash:latest"]);
    let args = vec![
        "build".to_owned(),
        "--progress=plain".to_owned(),
        "-t".to_owned(),
        "crash:latest".to_owned(),
        ctx.to_str().unwrap().to_owned(),
    ];
    let crashes = crash_everywhere(
        &s,
        &Scenario {
            template: kiln.root.clone(),
            args: &|_| args.clone(),
            repeatable: &|_| true,
            recovered: &|_, _| {},
            must_reach: &[
                "blob-write",
                "blob-synced",
                "blob-renamed",
                "replace-partial",
                "replace-synced",
                "replace-renamed",
                "snapshot-unpacked",
            ],
        },
    );
    eprintln!("build killed at {crashes:?}");
}

#[test]
fn crashes_during_prune_never_leave_half_a_snapshot() {
    let Some(kiln) = with_busybox() else { return };
    let s = Scratch::new();
    // "a" stays; "b" is removed, so prune takes its snapshots (and, with --all, its layers).
    let a = context(&kiln, "FROM busybox\nRUN echo a > /a\n", &[]);
    kiln.ok(&["build", "-q", "-t", "a", a.to_str().unwrap()]);
    fs::remove_dir_all(&a).unwrap();
    let b = context(
        &kiln,
        "FROM busybox\nRUN mkdir -p /b/c && echo b > /b/c/f && rm -r /usr\nRUN echo bb > /bb\n",
        &[],
    );
    kiln.ok(&["build", "-q", "-t", "b", b.to_str().unwrap()]);
    kiln.ok(&["rmi", "b"]);
    let before = snapshots(&kiln.root).len();
    assert!(
        before >= 4,
        "busybox, a and b's two RUNs: {before} snapshots"
    );
    let crashes = crash_everywhere(
        &s,
        &Scenario {
            template: kiln.root.clone(),
            args: &|_| strings(&["prune", "--all"]),
            repeatable: &|_| true,
            recovered: &|_, _| {},
            must_reach: &["blob-deleted", "snapshot-moved", "tree-entry-removed"],
        },
    );
    eprintln!("prune killed at {crashes:?}");
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .count()
}

/// Detaches whatever is still mounted under a store when a test ends, however it ends.
struct DetachOnDrop<'a>(&'a Path);

impl Drop for DetachOnDrop<'_> {
    fn drop(&mut self) {
        for point in mounts_under(self.0).iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
    }
}

#[test]
fn a_build_killed_during_a_run_leaves_a_mount_the_next_build_detaches() {
    let Some(kiln) = with_busybox() else { return };
    let _detach = DetachOnDrop(&kiln.root);
    let s = Scratch::new();
    let marker = format!("{}", 32_000_000 + std::process::id() % 1_000_000);
    let ctx = context(
        &kiln,
        "FROM busybox\nARG SLEEP=0\nRUN echo started > /started && sleep $SLEEP\n",
        &[],
    );
    let build = |sleep: &str| {
        let mut cmd = s.kiln(&kiln.root);
        cmd.args(["build", "-q", "-t", "slept", "--build-arg"])
            .arg(format!("SLEEP={sleep}"))
            .arg(&ctx);
        cmd
    };
    let mut child = build(&marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The sleep itself (kiln's own command line has `SLEEP=…`).
    let sleep = format!("sleep\0{marker}");
    wait_until("the RUN to sleep", || processes_with(&sleep) > 0);
    child.kill().unwrap();
    child.wait().unwrap();
    // The sandbox dies with its parent.
    wait_until("the RUN to die", || processes_with(&sleep) == 0);

    let left = mounts_under(&kiln.root);
    assert!(!left.is_empty(), "the RUN's overlay stays mounted");
    let (code, lines) = fsck(&s, &kiln.root);
    eprintln!("kiln fsck after the kill:\n{}", lines.join("\n"));
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.ends_with("(harmless)")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("still mounted")),
        "{lines:#?}"
    );
    assert!(tags(&kiln.root).keys().all(|t| !t.contains("slept")));

    let deadline = Instant::now() + Duration::from_secs(60);
    run(&mut build("0"));
    assert!(Instant::now() < deadline);
    assert_eq!(mounts_under(&kiln.root), Vec::<String>::new());
    assert_eq!(fsck(&s, &kiln.root), (Some(0), vec![]));
    assert_eq!(tmp_entries(&kiln.root), Vec::<String>::new());
    assert!(tags(&kiln.root).keys().any(|t| t.contains("slept")));
}

#[test]
fn fsck_reports_damage_and_repair_makes_the_store_consistent() {
    let s = Scratch::new();
    let root = s.path("store");
    let x = write_image(&root, &full("x"), &[&[("x", b"x")]], Compression::Gzip);
    write_image(&root, &full("y"), &[&[("y", b"y")]], Compression::Gzip);
    let fsck_out = |args: &[&str]| {
        let out = s.kiln(&root).args(args).output().unwrap();
        let (stdout, stderr) = crate::text(&out);
        (out.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = fsck_out(&["fsck"]);
    assert_eq!((code, stdout.as_str()), (Some(0), ""), "{stderr}");
    assert!(
        stderr.starts_with("checked 6 blobs (") && stderr.ends_with(" and 2 tags: no problems\n"),
        "{stderr}"
    );

    let layer = Store::open(&root)
        .unwrap()
        .read_manifest(&x)
        .unwrap()
        .layers()[0]
        .clone();
    let layer = image::from_oci_digest(layer.digest()).unwrap();
    let path = root.join("oci/blobs/sha256").join(layer.hex());
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let left = root.join("tmp/blob-killed");
    fs::write(&left, b"half").unwrap();

    let (code, stdout, stderr) = fsck_out(&["fsck"]);
    let found = Digest::of(&bytes);
    let left = left.display();
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "blob {layer} corrupt (expected {layer}, got {found})\n\
             leftover {left} (harmless)\n"
        )
    );
    assert!(
        stderr.ends_with("1 problem, 1 harmless leftover; `kiln fsck --repair` fixes them\n"),
        "{stderr}"
    );

    let (code, stdout, _) = fsck_out(&["fsck", "--repair"]);
    assert_eq!(code, Some(0), "{stdout}");
    let repairs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("repaired: "))
        .collect();
    assert_eq!(
        repairs,
        [
            format!("repaired: deleted blob {layer}"),
            format!("repaired: untagged docker.io/library/x:latest: blob {layer} is missing"),
            format!("repaired: removed leftover {left}"),
        ]
    );
    assert_eq!(fsck(&s, &root), (Some(0), vec![]));
    assert_eq!(tags(&root).keys().collect::<Vec<_>>(), [&full("y")]);
}
