//! The sandbox from the inside: the helper process the builder spawns, the init that is pid 1
//! of the RUN's pid namespace, and the command it starts.
//!
//! ```text
//! builder ──spawn──▶ helper (`<exe> __kiln-run-helper`, outside the new pid namespace)
//!                      reads its config from stdin (a socket), unshares mount/pid/ipc/uts[/net]
//!                      └─fork─▶ init (pid 1): mounts, pivot_root, hostname, lo
//!                                 └─fork─▶ command (pid 2): user, capabilities, exec
//! ```
//!
//! The helper gets a clean environment and only stdin, stdout and stderr; it closes anything else
//! it might have inherited. It and the init die with their parent (`PR_SET_PDEATHSIG`), so
//! killing the helper (cancellation) takes the init with it, and the init's death makes the
//! kernel kill everything left in the namespace: daemons a RUN leaves behind never outlive it.
//! The init reaps orphans, forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT and SIGUSR1/2 to the
//! command, and ends as soon as the command does. It is not dumpable, so the command cannot open
//! `/proc/1/exe` (the host binary, CVE-2019-5736). The result (exit code, signal, or why setup or
//! exec failed) goes back as one JSON line on the stdin socket, which the command never holds.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

use super::mounts::InnerMount;
use super::sys::{self, Forked};

/// The argument that makes the binary the sandbox helper (see [`super::init_entry`]).
pub(super) const HELPER_ARG: &str = "__kiln-run-helper";

/// The largest config the helper reads.
const MAX_CONFIG: u64 = 16 << 20;

/// Device nodes bind-mounted from the host into the sandbox's `/dev`.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks in the sandbox's `/dev`.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Paths hidden from the command (containerd's default spec): directories get an empty
/// read-only tmpfs, files `/dev/null`.
const MASKED: [&str; 11] = [
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Paths made read-only (containerd's default spec).
const READ_ONLY: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// Everything the helper needs, sent by the builder as JSON.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct HelperConfig {
    /// The builder's pid: the helper exits if its parent is already someone else.
    pub parent: i32,
    /// The root filesystem (a mount point or a directory).
    pub rootfs: PathBuf,
    /// The hostname to set.
    pub hostname: String,
    /// Whether to run in a new, empty network namespace.
    pub network_none: bool,
    /// Files to bind-mount into the rootfs (resolved host paths inside it).
    pub binds: Vec<Bind>,
    /// `RUN --mount`s, parents first.
    pub mounts: Vec<InnerMount>,
    /// Scripts for `/dev/pipes/<name>`.
    pub pipes: Vec<super::Pipe>,
    /// The user to run as.
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The capability mask the command keeps.
    pub caps: u64,
    /// The command.
    pub args: Vec<String>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// Its working directory, inside the rootfs.
    pub cwd: String,
    /// The builder's privileges (the helper must not probe its own: it may not fork then).
    pub privileges: crate::privileges::Privileges,
}

/// A bind mount of a host file onto a path in the rootfs.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Bind {
    /// The host file.
    pub source: PathBuf,
    /// The mount point (a host path inside the rootfs).
    pub target: PathBuf,
    /// Whether the command may not write it.
    pub read_only: bool,
}

/// What the sandbox reports back.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Report {
    /// The command exited with this code.
    Exited(i32),
    /// The command was killed by this signal.
    Signaled(i32),
    /// Setting the sandbox up failed.
    Setup(String),
    /// The command could not be executed.
    Exec(String),
}

/// Writes `report` as one line on stdin (the socket to the builder).
fn report(report: &Report) {
    if let Ok(mut line) = serde_json::to_vec(report) {
        line.push(b'\n');
        // Nothing else can be done about a builder that stopped listening.
        let _ = rustix::io::write(std::io::stdin().as_fd(), &line);
    }
}

/// The helper's main: returns its exit code.
pub(super) fn helper_main() -> i32 {
    match helper() {
        Ok(code) => code,
        Err(message) => {
            report(&Report::Setup(message));
            1
        }
    }
}

fn helper() -> Result<i32, String> {
    // Nothing outside the sandbox may be ptraced or read through a /proc the command sees.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("making the helper non-dumpable: {e}"))?;
    sys::close_from(3, false).map_err(|e| format!("closing inherited descriptors: {e}"))?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_CONFIG)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the sandbox config: {e}"))?;
    let config: HelperConfig =
        serde_json::from_slice(&bytes).map_err(|e| format!("parsing the sandbox config: {e}"))?;
    crate::privileges::install(config.privileges.clone());
    // Out of the builder's session: a terminal's Ctrl-C reaches the builder, which cancels.
    rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("setting the parent death signal: {e}"))?;
    if rustix::process::getppid()
        .map(Pid::as_raw_nonzero)
        .map(|p| p.get())
        != Some(config.parent)
    {
        return Ok(1);
    }
    let mut flags =
        UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    if config.network_none {
        flags |= UnshareFlags::NEWNET;
    }
    sys::unshare(flags).map_err(|e| format!("creating namespaces: {e}"))?;
    sys::install_forwarders().map_err(|e| format!("installing signal handlers: {e}"))?;
    let (alive_r, alive_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| e.to_string())?;
    match sys::fork().map_err(|e| format!("fork: {e}"))? {
        Forked::Child => {
            drop(alive_w);
            init_main(&config, alive_r)
        }
        Forked::Parent(pid) => {
            drop(alive_r);
            sys::forward_to(pid);
            let status = wait_for(pid).map_err(|e| format!("waiting for the sandbox init: {e}"))?;
            drop(alive_w);
            if let Some(sig) = status.terminating_signal() {
                report(&Report::Setup(format!(
                    "the sandbox init was killed by signal {sig}"
                )));
            }
            Ok(0)
        }
    }
}

/// Waits for `pid` to end, through interruptions.
fn wait_for(pid: Pid) -> Result<rustix::process::WaitStatus, Errno> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) if status.exited() || status.signaled() => return Ok(status),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Pid 1 of the sandbox. Never returns.
fn init_main(config: &HelperConfig, alive: OwnedFd) -> ! {
    let last_cap = match init_setup(config, &alive) {
        Ok(last_cap) => last_cap,
        Err(message) => {
            report(&Report::Setup(message));
            sys::exit_now(1)
        }
    };
    drop(alive);
    let (exec_r, exec_w) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            report(&Report::Setup(format!("pipe: {e}")));
            sys::exit_now(1)
        }
    };
    let child = match sys::fork() {
        Ok(Forked::Child) => {
            drop(exec_r);
            command_main(config, last_cap, exec_w)
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => {
            report(&Report::Setup(format!("fork: {e}")));
            sys::exit_now(1)
        }
    };
    sys::forward_to(child);
    drop(exec_w);
    let mut exec_error = Vec::new();
    // EOF when the command execs (the pipe is close-on-exec) or dies trying.
    let _ = File::from(exec_r).read_to_end(&mut exec_error);
    let status = loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == child && (status.exited() || status.signaled()) => {
                break status;
            }
            // An orphan reaped, or an interruption.
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => {
                report(&Report::Setup(format!("waiting for the command: {e}")));
                sys::exit_now(1)
            }
        }
    };
    if !exec_error.is_empty() {
        report(&Report::Exec(
            String::from_utf8_lossy(&exec_error).into_owned(),
        ));
    } else if let Some(sig) = status.terminating_signal() {
        report(&Report::Signaled(sig));
    } else {
        report(&Report::Exited(status.exit_status().unwrap_or(0)));
    }
    // Pid 1 exiting makes the kernel kill whatever the command left running.
    sys::exit_now(0)
}

fn errno(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> String {
    move |e| format!("{what}: {e}")
}

/// The init's setup; returns the highest capability number the kernel knows.
fn init_setup(config: &HelperConfig, alive: &OwnedFd) -> Result<u32, String> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(errno("setting the parent death signal"))?;
    // The helper may have died before the line above: then the pipe is at EOF.
    rustix::fs::fcntl_setfl(alive, OFlags::NONBLOCK).map_err(errno("fcntl"))?;
    let mut probe = [0u8; 1];
    if let Ok(0) = rustix::io::read(alive, &mut probe) {
        return Err("the sandbox helper died".to_owned());
    }
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(errno("making the init non-dumpable"))?;
    mount_root(config)?;
    match rustix::system::sethostname(config.hostname.as_bytes()) {
        // A container's seccomp profile refuses sethostname without CAP_SYS_ADMIN in the
        // container: the command keeps the container's name, in a UTS namespace of its own.
        Ok(()) | Err(Errno::PERM) => {}
        result => result.map_err(errno(format_args!(
            "setting the hostname {:?}",
            config.hostname
        )))?,
    }
    if config.network_none {
        sys::loopback_up().map_err(|e| format!("bringing up lo: {e}"))?;
    }
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(|e| format!("reading /proc/sys/kernel/cap_last_cap: {e}"))?;
    last.trim()
        .parse()
        .map_err(|e| format!("parsing cap_last_cap {last:?}: {e}"))
}

/// Checks that `path` is a real directory (never a symlink an image planted).
fn real_dir(path: &Path) -> Result<(), String> {
    let st = rustix::fs::lstat(path).map_err(errno(path.display()))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return Err(format!("{} is not a directory", path.display()));
    }
    Ok(())
}

fn mount_fs(
    fstype: &str,
    target: &Path,
    flags: MountFlags,
    data: Option<&std::ffi::CStr>,
) -> Result<(), String> {
    rustix::mount::mount(fstype, target, fstype, flags, data).map_err(errno(format_args!(
        "mounting {fstype} on {}",
        target.display()
    )))
}

fn bind(source: &Path, target: &Path, recursive: bool) -> Result<(), String> {
    let r = if recursive {
        rustix::mount::mount_bind_recursive(source, target)
    } else {
        rustix::mount::mount_bind(source, target)
    };
    r.map_err(errno(format_args!(
        "bind-mounting {} on {}",
        source.display(),
        target.display()
    )))
}

fn remount_read_only(target: &Path, extra: MountFlags) -> Result<(), String> {
    let flags = MountFlags::BIND | MountFlags::RDONLY | extra | locked_flags(target);
    rustix::mount::mount_remount(target, flags, "")
        .map_err(errno(format_args!("making {} read-only", target.display())))
}

/// The flags `target`'s mount already has that a remount must keep: in a user namespace
/// (rootless kiln) the kernel locks a host mount's nosuid, nodev, noexec and atime flags, and
/// refuses a remount that would clear them.
fn locked_flags(target: &Path) -> MountFlags {
    use rustix::fs::StatVfsMountFlags as S;
    let Ok(st) = rustix::fs::statvfs(target) else {
        return MountFlags::empty();
    };
    [
        (S::NOSUID, MountFlags::NOSUID),
        (S::NODEV, MountFlags::NODEV),
        (S::NOEXEC, MountFlags::NOEXEC),
        (S::NOATIME, MountFlags::NOATIME),
        (S::NODIRATIME, MountFlags::NODIRATIME),
        (S::RELATIME, MountFlags::RELATIME),
    ]
    .into_iter()
    .filter(|(have, _)| st.f_flag.contains(*have))
    .fold(MountFlags::empty(), |all, (_, flag)| all | flag)
}

/// Mounts the rootfs and everything in it, then makes it `/`.
fn mount_root(config: &HelperConfig) -> Result<(), String> {
    let root = &config.rootfs;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(errno("making mounts private"))?;
    // pivot_root needs a mount point; a copied rootfs is a plain directory.
    bind(root, root, true)?;
    let hardened = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    for dir in ["proc", "dev", "sys"] {
        real_dir(&root.join(dir))?;
    }
    if config.privileges.fresh_proc {
        mount_fs("proc", &root.join("proc"), hardened, None)?;
    } else {
        // The masked paths below are mounted over the bound ones again.
        bind(Path::new("/proc"), &root.join("proc"), true)?;
    }
    let sys_dir = root.join("sys");
    if mount_fs("sysfs", &sys_dir, hardened | MountFlags::RDONLY, None).is_err() {
        bind(Path::new("/sys"), &sys_dir, true)?;
        remount_read_only(&sys_dir, hardened)?;
    }
    mount_dev(&root.join("dev"))?;
    for b in &config.binds {
        bind(&b.source, &b.target, false)?;
        if b.read_only {
            remount_read_only(&b.target, MountFlags::NOSUID | MountFlags::NODEV)?;
        }
    }
    write_pipes(&root.join("dev"), &config.pipes)?;
    for (i, m) in config.mounts.iter().enumerate() {
        run_mount(&root.join("dev"), i, m)?;
    }
    let null = root.join("dev/null");
    for rel in MASKED {
        let path = root.join(rel);
        match rustix::fs::lstat(&path) {
            Ok(st)
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::Directory =>
            {
                mount_fs("tmpfs", &path, MountFlags::RDONLY | hardened, None)?;
            }
            Ok(_) => bind(&null, &path, false)?,
            Err(_) => {}
        }
    }
    for rel in READ_ONLY {
        let path = root.join(rel);
        if rustix::fs::lstat(&path).is_ok() {
            bind(&path, &path, true)?;
            remount_read_only(&path, hardened)?;
        }
    }
    rustix::process::chdir(root).map_err(errno(root.display()))?;
    rustix::process::pivot_root(".", ".").map_err(errno("pivot_root"))?;
    // The old root is stacked on the new one: detach it, leaving only the sandbox.
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(errno("detaching the old root"))?;
    rustix::process::chdir("/").map_err(errno("chdir /"))
}

/// Writes the heredoc scripts into `/dev/pipes` (the sandbox's tmpfs), executable.
fn write_pipes(dev: &Path, pipes: &[super::Pipe]) -> Result<(), String> {
    if pipes.is_empty() {
        return Ok(());
    }
    let dir = dev.join("pipes");
    rustix::fs::mkdirat(CWD, &dir, Mode::from_raw_mode(0o755))
        .map_err(errno(format_args!("creating {}", dir.display())))?;
    for pipe in pipes {
        let path = dir.join(&pipe.name);
        std::fs::write(&path, &pipe.content)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        rustix::fs::chmod(&path, Mode::from_raw_mode(0o755))
            .map_err(errno(format_args!("chmod {}", path.display())))?;
    }
    Ok(())
}

/// Performs one `RUN --mount`.
fn run_mount(dev: &Path, index: usize, mount: &InnerMount) -> Result<(), String> {
    match mount {
        InnerMount::Bind {
            source,
            target,
            read_only,
        } => {
            bind(source, target, true)?;
            if *read_only {
                remount_read_only(target, MountFlags::empty())?;
            }
        }
        InnerMount::Overlay {
            lower,
            upper,
            work,
            target,
        } => {
            let mut data = Vec::new();
            for (key, path) in [("lowerdir", lower), ("upperdir", upper), ("workdir", work)] {
                let bytes = path.as_os_str().as_encoded_bytes();
                if bytes.iter().any(|b| matches!(b, b':' | b',' | b'\\' | 0)) {
                    return Err(format!(
                        "{}: path cannot be used in overlay options",
                        path.display()
                    ));
                }
                if !data.is_empty() {
                    data.push(b',');
                }
                data.extend_from_slice(key.as_bytes());
                data.push(b'=');
                data.extend_from_slice(bytes);
            }
            let data = std::ffi::CString::new(data).map_err(|e| e.to_string())?;
            mount_fs("overlay", target, MountFlags::empty(), Some(&data))?;
        }
        InnerMount::Tmpfs { target, size } => {
            let data = size
                .map(|s| std::ffi::CString::new(format!("size={s}")))
                .transpose()
                .map_err(|e| e.to_string())?;
            mount_fs(
                "tmpfs",
                target,
                MountFlags::NOSUID | MountFlags::NODEV,
                data.as_deref(),
            )?;
        }
        InnerMount::Secret {
            target,
            data,
            uid,
            gid,
            mode,
        } => {
            // Written in the sandbox's own tmpfs, bound, then unlinked: only the mount keeps it.
            let staged = dev.join(format!(".kiln-secret-{index}"));
            let fd = rustix::fs::openat(
                CWD,
                &staged,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(errno(format_args!("creating {}", staged.display())))?;
            let mut file = File::from(fd);
            file.write_all(data)
                .map_err(|e| format!("writing {}: {e}", staged.display()))?;
            rustix::fs::fchown(&file, Some(Uid::from_raw(*uid)), Some(Gid::from_raw(*gid)))
                .map_err(errno("chown of a secret"))?;
            rustix::fs::fchmod(&file, Mode::from_raw_mode(*mode & 0o7777))
                .map_err(errno("chmod of a secret"))?;
            drop(file);
            bind(&staged, target, false)?;
            remount_read_only(target, MountFlags::NOSUID | MountFlags::NODEV)?;
            std::fs::remove_file(&staged)
                .map_err(|e| format!("removing {}: {e}", staged.display()))?;
        }
    }
    Ok(())
}

/// A tmpfs `/dev` with the host's harmless device nodes, devpts, shm, mqueue and the links.
fn mount_dev(dev: &Path) -> Result<(), String> {
    mount_fs(
        "tmpfs",
        dev,
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        Some(c"mode=755,size=65536k"),
    )?;
    for name in DEV_NODES {
        let host = Path::new("/dev").join(name);
        let st = rustix::fs::lstat(&host).map_err(errno(host.display()))?;
        // Only a real character device is bound: never whatever a symlink points to.
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::CharacterDevice
        {
            return Err(format!("{} is not a character device", host.display()));
        }
        let target = dev.join(name);
        File::create(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
        bind(&host, &target, false)?;
    }
    let mkdir = |name: &str, mode: u32| {
        let path = dev.join(name);
        rustix::fs::mkdirat(CWD, &path, Mode::from_raw_mode(mode))
            .map_err(errno(format_args!("creating {}", path.display())))?;
        Ok::<_, String>(path)
    };
    let pts = mkdir("pts", 0o755)?;
    // Terminals belong to group tty (5), unless a single-id user namespace has no such group.
    let pts_options = if crate::privileges::current().gid_map.contains(5) {
        c"newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        c"newinstance,ptmxmode=0666,mode=0620"
    };
    mount_fs(
        "devpts",
        &pts,
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(pts_options),
    )?;
    let shm = mkdir("shm", 0o1777)?;
    mount_fs(
        "tmpfs",
        &shm,
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some(c"mode=1777,size=65536k"),
    )?;
    let mqueue = mkdir("mqueue", 0o755)?;
    mount_fs(
        "mqueue",
        &mqueue,
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )?;
    for (name, target) in DEV_LINKS {
        let link = dev.join(name);
        rustix::fs::symlinkat(target, CWD, &link)
            .map_err(errno(format_args!("creating {}", link.display())))?;
    }
    Ok(())
}

/// The command: pid 2. Never returns.
fn command_main(config: &HelperConfig, last_cap: u32, exec_w: OwnedFd) -> ! {
    let mut exec_w = File::from(exec_w);
    let error = match become_user(config, last_cap) {
        Err(e) => e,
        Ok(()) => exec(config),
    };
    let _ = exec_w.write_all(error.as_bytes());
    sys::exit_now(127)
}

/// Capabilities, groups and ids, in the order that keeps the privilege to set each.
fn become_user(config: &HelperConfig, last_cap: u32) -> Result<(), String> {
    sys::reset_forwarders().map_err(|e| format!("resetting signal handlers: {e}"))?;
    // Needs CAP_SETPCAP, so before giving up root.
    sys::drop_bounding_caps(config.caps, last_cap)
        .map_err(|e| format!("dropping capabilities: {e}"))?;
    let groups: Vec<Gid> = config.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    // Denied in a single-id user namespace: the builder then checked that the user needs no
    // group but its own.
    if crate::privileges::current().setgroups {
        rustix::thread::set_thread_groups(&groups).map_err(errno("setgroups"))?;
    }
    let gid = Gid::from_raw(config.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(errno("setresgid"))?;
    let uid = Uid::from_raw(config.uid);
    // For a non-root uid the kernel clears the permitted and effective sets here.
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(errno("setresuid"))?;
    if config.uid == 0 {
        let caps = CapabilitySet::from_bits_retain(config.caps);
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: caps,
                permitted: caps,
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(errno("setting capabilities"))?;
    }
    Ok(())
}

/// Execs the command; returns only the reason it could not.
fn exec(config: &HelperConfig) -> String {
    let Some((program, args)) = config.args.split_first() else {
        return "no command".to_owned();
    };
    let stdin = match File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => return format!("opening /dev/null: {e}"),
    };
    if let Err(e) = sys::close_from(3, true) {
        return format!("closing descriptors: {e}");
    }
    let error = std::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&config.cwd)
        .stdin(stdin)
        .exec();
    format!("{program}: {error}")
}
