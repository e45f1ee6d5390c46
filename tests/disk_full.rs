//! A full disk: the store on a small tmpfs, and a pull, a build and a tag that do not fit.
//!
//! Each must fail within seconds with an error that says the device is full, and leave the
//! store as it was: no partial blob in `blobs/`, no tag to a missing image, nothing in `tmp/`,
//! nothing mounted, `kiln fsck` silent. Once there is room again, the same command works. The
//! tmpfs is unmounted when the test ends, however it ends. Mounting needs root.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kiln_builder::store::Store;

use crate::support::busybox::busybox_rootfs_tar;
use crate::support::registry::{Config, RegistryServer};
use crate::support::registry_image::{make_image, noise};
use crate::support::{EPOCH, mounts_under, root_or_skip, run};

/// How fast a full disk must be reported.
const PROMPTLY: Duration = Duration::from_secs(30);

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("kiln-disk-full")
            .arg(dir));
        Self {
            dir: dir.to_owned(),
        }
    }

    fn resize(&self, size: &str) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir));
    }

    /// Bytes free for an unprivileged writer (tmpfs reserves none).
    fn free(&self) -> u64 {
        let out = run(Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.dir));
        let (blocks, size) = out.trim().split_once(' ').unwrap();
        blocks.parse::<u64>().unwrap() * size.parse::<u64>().unwrap()
    }

    /// Writes `filler` until only `leave` bytes are free (0: until the device is full).
    fn fill(&self, filler: &str, leave: u64) {
        let mut file = fs::File::create(self.dir.join(filler)).unwrap();
        let chunk = vec![0xa5u8; 64 * 1024];
        loop {
            let free = self.free();
            if free <= leave {
                break;
            }
            let n = (free - leave).min(chunk.len() as u64) as usize;
            if file.write_all(&chunk[..n]).is_err() {
                break;
            }
            file.sync_all().unwrap();
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn kiln(root: &Path, scratch: &Path) -> Command {
    let mut cmd = crate::kiln(root);
    cmd.env("SOURCE_DATE_EPOCH", EPOCH)
        .env("DOCKER_CONFIG", scratch)
        .env("KILN_CERTS_D", scratch)
        .env_remove("KILN_CRASH_AT");
    cmd
}

/// Runs kiln, which must fail promptly saying the device is full; returns its output.
fn fails_full(mut cmd: Command) -> Output {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{cmd:?} should fail:\n{stderr}");
    assert!(took < PROMPTLY, "{cmd:?} took {took:?}");
    assert!(
        stderr.contains("No space left on device"),
        "{cmd:?} should say the disk is full:\n{stderr}"
    );
    out
}

/// The store is as consistent as before: `kiln fsck` silent, `tmp/` empty, nothing mounted,
/// every blob whole.
fn assert_clean(root: &Path, scratch: &Path) {
    let out = kiln(root, scratch).arg("fsck").output().unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), ""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0, "tmp/");
    assert_eq!(mounts_under(root), Vec::<String>::new());
    assert_eq!(Store::open(root).unwrap().verify().unwrap(), []);
}

#[test]
fn a_pull_that_does_not_fit_fails_and_leaves_no_partial_blob_or_tag() {
    if !root_or_skip("disk-full tests") {
        return;
    }
    let Some(reg) = RegistryServer::start(Config::default()) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let name = format!("{}/test/big:1", reg.addr);
    let seed = scratch.path().join("seed");
    let big = noise(12 << 20, 11);
    let pushed = make_image(&seed, &name, "amd64", &[("big", &big)]);
    run(kiln(&seed, scratch.path()).args(["push", "-q", &name]));

    let disk = Tmpfs::mount(&scratch.path().join("disk"), "6m");
    let root = disk.dir.join("root");
    let out = fails_full({
        let mut cmd = kiln(&root, scratch.path());
        cmd.args(["pull", "-q", &name]);
        cmd
    });
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_clean(&root, scratch.path());
    let store = Store::open(&root).unwrap();
    assert_eq!(store.list().unwrap(), vec![]);
    let layer = Store::open(&seed)
        .unwrap()
        .read_manifest(&pushed)
        .unwrap()
        .layers()[0]
        .clone();
    let layer = kiln_builder::image::from_oci_digest(layer.digest()).unwrap();
    assert!(!store.has_blob(&layer), "no partial layer");

    disk.resize("64m");
    let digest = run(kiln(&root, scratch.path()).args(["pull", "-q", &name]));
    assert_eq!(digest.trim(), pushed.digest().to_string());
    assert_clean(&root, scratch.path());
}

#[test]
fn a_build_and_a_tag_on_a_full_disk_fail_and_leave_the_store_as_it_was() {
    if !root_or_skip("disk-full tests") {
        return;
    }
    let Some(tar) = busybox_rootfs_tar() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&scratch.path().join("disk"), "64m");
    let root = disk.dir.join("root");
    let sc = scratch.path();
    run(kiln(&root, sc).arg("import").arg(&tar).arg("busybox"));
    let ctx = scratch.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    // A first build unpacks busybox, so what follows needs room only for the new layer.
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN true\n").unwrap();
    run(kiln(&root, sc).args(["build", "-q"]).arg(&ctx));

    // Room for the RUN's 2 MB, not for the layer made of them as well.
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN head -c 2000000 /dev/urandom > /big\n",
    )
    .unwrap();
    disk.fill("filler-1", 3 << 20);
    let out = fails_full({
        let mut cmd = kiln(&root, sc);
        cmd.args(["build", "-q", "-t", "big"]).arg(&ctx);
        cmd
    });
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_clean(&root, sc);
    let store = Store::open(&root).unwrap();
    assert!(
        store
            .resolve("docker.io/library/big:latest")
            .unwrap()
            .is_none()
    );

    // Not a byte left: tagging cannot write index.json, and leaves the old one.
    let index = fs::read(root.join("oci/index.json")).unwrap();
    disk.fill("filler-2", 0);
    let out = fails_full({
        let mut cmd = kiln(&root, sc);
        cmd.args(["tag", "busybox", "other"]);
        cmd
    });
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(root.join("oci/index.json")).unwrap(), index);
    assert_clean(&root, sc);

    for filler in ["filler-1", "filler-2"] {
        fs::remove_file(disk.dir.join(filler)).unwrap();
    }
    run(kiln(&root, sc).args(["build", "-q", "-t", "big"]).arg(&ctx));
    run(kiln(&root, sc).args(["tag", "busybox", "other"]));
    assert_clean(&root, sc);
}
