//! A busybox root filesystem, built from Debian's `busybox-static`, as a tarball: the base image
//! the integration tests import (and later build tests build FROM). The host's comes from the
//! installed package; other architectures' (`arm64`, `armhf`) from their `.deb`s, downloaded
//! with `apt-get download busybox-static:ARCH` (tests/run.sh adds the architectures to dpkg)
//! and unpacked with `dpkg-deb -x`, with the host busybox's applet list (the same version).
//!
//! The tree: `/bin/busybox` (the static binary), a symlink to it for every applet at the path
//! `busybox --list-full` gives (`bin/sh`, `usr/bin/awk`, …), `/etc/passwd` and `/etc/group`
//! with root and nobody, and the usual empty directories (`/tmp` 1777, `/root` 0700, `/dev`,
//! `/proc`, `/sys`, `/home`, `/var`). The tarball is made by GNU tar with sorted names, owner
//! 0:0 and mtime 0, so its bytes (and every digest derived from it) are the same on every run.
//! It is built once per test process, under the target directory.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{run, tool};

/// The rootfs directory and the tarball made from it.
#[derive(Debug)]
pub struct BusyboxRootfs {
    /// The tree itself.
    pub dir: PathBuf,
    /// The uncompressed tarball of `dir`.
    pub tar: PathBuf,
}

/// The busybox rootfs of this test run, or `None` (after saying so) when `busybox` or GNU
/// `tar` is missing outside CI.
pub fn busybox_rootfs() -> Option<&'static BusyboxRootfs> {
    static ROOTFS: OnceLock<Option<BusyboxRootfs>> = OnceLock::new();
    ROOTFS.get_or_init(build).as_ref()
}

/// The tarball alone (see [`busybox_rootfs`]).
pub fn busybox_rootfs_tar() -> Option<PathBuf> {
    busybox_rootfs().map(|r| r.tar.clone())
}

/// The busybox rootfs for a Debian architecture (`arm64` or `armhf`), or `None` (after saying
/// so) when its package cannot be downloaded outside CI; under `CI=true` that fails.
pub fn foreign_busybox_rootfs(debian_arch: &str) -> Option<&'static BusyboxRootfs> {
    static ROOTFS: [(&str, OnceLock<Option<BusyboxRootfs>>); 2] =
        [("arm64", OnceLock::new()), ("armhf", OnceLock::new())];
    let (_, cell) = ROOTFS
        .iter()
        .find(|(arch, _)| *arch == debian_arch)
        .unwrap_or_else(|| panic!("no busybox fixture for {debian_arch}"));
    cell.get_or_init(|| {
        // The tree and tarball are the same on every run: made once per target directory.
        let kept =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("busybox-rootfs-{debian_arch}"));
        let done = BusyboxRootfs {
            dir: kept.join("rootfs"),
            tar: kept.join("busybox-rootfs.tar"),
        };
        if done.tar.is_file() {
            return Some(done);
        }
        let made = build_from(foreign_binary(debian_arch)?, debian_arch)?;
        let scratch = made.dir.parent().unwrap().to_owned();
        // Another test process may have kept one meanwhile: then this one is dropped.
        if fs::rename(&scratch, &kept).is_err() {
            let _ = fs::remove_dir_all(&scratch);
        }
        Some(done)
    })
    .as_ref()
}

/// `bin/busybox` of `busybox-static:ARCH`, downloaded once into the target directory.
fn foreign_binary(debian_arch: &str) -> Option<Vec<u8>> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("busybox-static-{debian_arch}"));
    let binary = dir.join("bin/busybox");
    if let Ok(bytes) = fs::read(&binary) {
        return Some(bytes);
    }
    let (apt, dpkg_deb) = (tool("apt-get")?, tool("dpkg-deb")?);
    let download = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = Command::new(apt)
        .args(["download", &format!("busybox-static:{debian_arch}")])
        .current_dir(download.path())
        .output()
        .unwrap();
    if !out.status.success() {
        let why = format!(
            "apt-get download busybox-static:{debian_arch} failed (tests/run.sh adds the \
             architecture: dpkg --add-architecture {debian_arch} && apt-get update): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("skipping: {why}");
        return None;
    }
    let deb = fs::read_dir(download.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download left a .deb");
    let unpacked = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    run(Command::new(dpkg_deb)
        .arg("-x")
        .arg(&deb)
        .arg(unpacked.path()));
    let bytes = fs::read(unpacked.path().join("bin/busybox")).unwrap();
    fs::create_dir_all(binary.parent().unwrap()).unwrap();
    // Another test process may be doing the same: the rename makes the binary whole or absent.
    let tmp = binary.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, &bytes).unwrap();
    fs::rename(&tmp, &binary).unwrap();
    Some(bytes)
}

fn build() -> Option<BusyboxRootfs> {
    let busybox = tool("busybox")?;
    let binary = fs::read(&busybox).unwrap();
    assert!(
        is_static_elf(&binary),
        "{} is dynamically linked: install busybox-static",
        busybox.display()
    );
    build_from(binary, "host")
}

/// The rootfs around `binary` (a static busybox), its applet links as the host busybox lists
/// them.
fn build_from(binary: Vec<u8>, label: &str) -> Option<BusyboxRootfs> {
    let busybox = tool("busybox")?;
    let tar = tool("tar")?;
    // Statics are never dropped: the directory lives under the target directory, not /tmp.
    let scratch = tempfile::Builder::new()
        .prefix(&format!("busybox-rootfs-{label}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    let dir = scratch.join("rootfs");
    for (sub, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("home", 0o755),
        ("var", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
    ] {
        let path = dir.join(sub);
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.join("bin/busybox");
    fs::write(&target, &binary).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let list = run(Command::new(&busybox).arg("--list-full"));
    let mut applets = 0;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if applet == "bin/busybox" || applet.contains("..") || applet.starts_with('/') {
            continue;
        }
        let link = dir.join(applet);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink("/bin/busybox", &link).unwrap();
        applets += 1;
    }
    assert!(
        applets > 100,
        "busybox --list-full gave only {applets} applets"
    );
    write(
        &dir,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    );
    write(&dir, "etc/group", "root:x:0:\nnobody:x:65534:\n");

    let tarball = scratch.join("busybox-rootfs.tar");
    run(Command::new(tar)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
        ])
        .args(["--format=gnu", "-C"])
        .arg(&dir)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));
    Some(BusyboxRootfs { dir, tar: tarball })
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// Whether an ELF file has no program interpreter (`PT_INTERP`), i.e. is statically linked.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        // Not a little-endian 64-bit ELF: let running it decide.
        return true;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        at + 4 > bytes.len() || u32_at(at) != PT_INTERP
    })
}
