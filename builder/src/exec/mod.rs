//! RUN: a command in a sandbox kiln builds itself (DESIGN decision 2), as a library operation.
//!
//! [`run`] takes a root filesystem (a [`crate::snapshot::Mutable`] root, or any directory), a
//! [`RunSpec`] (argv, environment, working directory, USER, hostname, network) and a callback
//! for output lines, and returns how the command ended. Inside: new mount, pid, ipc and uts
//! namespaces (and network with `--network=none`, then only `lo`, up), `pivot_root` into the
//! rootfs, a fresh `/proc` with the usual paths masked or read-only, a tmpfs `/dev` with the
//! host's null, zero, full, random, urandom and tty bound in plus devpts, shm and mqueue, a
//! read-only `/sys`, the host's `resolv.conf` and generated `hosts` and `hostname` bound over
//! `/etc` without reaching the layer, Docker's default capability set, the user resolved from
//! the rootfs' own files, no descriptor of the builder, and a pid 1 that reaps and forwards
//! signals. `RUN --mount`s (binds, discarded writable views, tmpfs, cache directories, secrets)
//! are in `mounts.rs`; heredoc RUNs become argv and `/dev/pipes` scripts by [`heredoc_command`].
//! How the pieces run is in `init.rs`; what the builder prepares and tidies in the rootfs is in
//! `rootfs.rs`; the only `unsafe` code is in `sys.rs`. Whether another platform's binaries can
//! run here (natively, or under QEMU registered in `binfmt_misc`) is [`binfmt`]'s question.
//!
//! The sandbox is set up by a helper process: the running binary re-executed with a hidden
//! argument. A program using this module must call [`init_entry`] first thing in `main`, before
//! any thread exists (the `kiln` binary does). [`Canceller::cancel`] kills the whole process tree
//! at once (the helper, hence its pid namespace), whatever the command does with SIGTERM.

pub mod binfmt;
pub mod image;
mod init;
mod mounts;
mod rootfs;
mod ssh;
pub(crate) mod sys;

#[cfg(test)]
mod mount_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::user::{ExecUser, UserError};

use crate::plan::ExecOp;
use crate::plan::lower::{Command, Network};
use crate::plan::scope::Scope;

pub use mounts::{CacheDir, CacheMounts, CacheOwner, Mount, MountKind};
pub use ssh::AgentProxy;

/// PATH when the environment has none (Docker's default for Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The SHELL shell-form commands run with when the image sets none.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The sandbox's hostname unless the caller sets one.
pub const DEFAULT_HOSTNAME: &str = "kiln";

/// Docker's default capability set, as a mask of capability numbers: CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD,
/// AUDIT_WRITE, SETFCAP.
pub const DEFAULT_CAPABILITIES: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 10)
    | (1 << 13)
    | (1 << 18)
    | (1 << 27)
    | (1 << 29)
    | (1 << 31);

/// The longest line handed to the output callback; longer ones arrive in pieces.
const MAX_LINE: usize = 64 * 1024;
/// The most the sandbox's report may hold.
const MAX_REPORT: u64 = 1 << 20;

/// The sandbox helper's entry point. Call it first thing in `main`: when the process was started
/// as the helper it does the helper's work and returns its exit code (exit with it at once);
/// otherwise it returns `None` and costs nothing.
pub fn init_entry() -> Option<i32> {
    let arg = std::env::args_os().nth(1)?;
    if arg != init::HELPER_ARG {
        return None;
    }
    Some(init::helper_main())
}

/// Network of a RUN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network namespace (what `docker build` gives a RUN).
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// A script at `/dev/pipes/<name>` inside the RUN (a heredoc with a shebang).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pipe {
    /// The file name (the heredoc's terminator word).
    pub name: String,
    /// The script.
    pub content: String,
}

/// What to run and how.
#[derive(Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The argv (see [`command_argv`] for shell form).
    pub args: Vec<String>,
    /// The environment, in order (a later duplicate wins, as in the image config).
    pub env: Vec<(String, String)>,
    /// The working directory, absolute inside the rootfs; created when missing.
    pub cwd: String,
    /// USER: `name`, `uid`, `name:group`, `uid:gid`, or empty for root.
    pub user: String,
    /// The hostname.
    pub hostname: String,
    /// The network.
    pub network: NetworkMode,
    /// `RUN --mount`s, resolved by the caller.
    pub mounts: Vec<Mount>,
    /// Scripts made available executable at `/dev/pipes/<name>` (heredocs with a shebang).
    pub pipes: Vec<Pipe>,
    /// Secrets exposed as environment variables (`type=secret,env=…`): given to the command
    /// only, never shown by `Debug`.
    pub secret_env: Vec<(String, String)>,
    /// `--add-host`: lines added to the command's `/etc/hosts`, in order.
    pub extra_hosts: Vec<ExtraHost>,
}

/// One `--add-host HOST:IP`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExtraHost {
    /// The name.
    pub host: String,
    /// Its address.
    pub ip: std::net::IpAddr,
}

impl std::str::FromStr for ExtraHost {
    type Err = String;

    /// docker's `HOST:IP` (split at the first colon, so `HOST:::1` is IPv6) or `HOST=IP`.
    /// `host-gateway` is refused: it names a daemon's bridge gateway, which kiln has not.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, ip) = s
            .split_once('=')
            .or_else(|| s.split_once(':'))
            .ok_or_else(|| format!("{s:?} is not HOST:IP"))?;
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(format!("{s:?}: {host:?} is not a host name"));
        }
        if ip == "host-gateway" {
            return Err(format!(
                "{s:?}: host-gateway is the docker daemon's bridge gateway and kiln has no \
                 daemon; give the address (RUN uses the host's network: 127.0.0.1 is the host)"
            ));
        }
        let ip = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IP address"))?;
        Ok(Self {
            host: host.to_owned(),
            ip,
        })
    }
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret_names: Vec<&str> = self.secret_env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("RunSpec")
            .field("args", &self.args)
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field("user", &self.user)
            .field("hostname", &self.hostname)
            .field("network", &self.network)
            .field("mounts", &self.mounts)
            .field("pipes", &self.pipes)
            .field("secret_env", &secret_names)
            .field("extra_hosts", &self.extra_hosts)
            .finish()
    }
}

impl RunSpec {
    /// A spec for `args` with defaults: no environment, `/`, root, [`DEFAULT_HOSTNAME`], host
    /// network.
    pub fn new(args: Vec<String>) -> Self {
        Self {
            args,
            env: Vec::new(),
            cwd: "/".to_owned(),
            user: String::new(),
            hostname: DEFAULT_HOSTNAME.to_owned(),
            network: NetworkMode::Host,
            mounts: Vec::new(),
            pipes: Vec::new(),
            secret_env: Vec::new(),
            extra_hosts: Vec::new(),
        }
    }

    /// The spec of a lowered RUN in `scope` (ENV and the ARGs in
    /// scope), with the stage's SHELL (empty for the default), WORKDIR and USER, and its
    /// `--mount`s as the caller resolved them, one per `run.mounts` entry.
    pub fn for_run(
        run: &ExecOp,
        scope: &Scope,
        shell: &[String],
        workdir: &str,
        user: &str,
        mounts: Vec<Mount>,
    ) -> Result<Self, ExecError> {
        if run.mounts.len() != mounts.len() {
            return Err(ExecError::UnresolvedMounts {
                declared: run.mounts.len(),
                given: mounts.len(),
            });
        }
        let (args, pipes) = heredoc_command(&run.command, shell)?;
        let mut spec = Self::new(args);
        spec.pipes = pipes;
        spec.mounts = mounts;
        spec.env = scope.env().to_vec();
        spec.cwd = if workdir.is_empty() {
            "/".to_owned()
        } else {
            workdir.to_owned()
        };
        spec.user = user.to_owned();
        spec.network = match run.network {
            Network::None => NetworkMode::None,
            Network::Default | Network::Host => NetworkMode::Host,
        };
        Ok(spec)
    }
}

/// The argv (and `/dev/pipes` scripts) of a RUN command with heredocs, as BuildKit's
/// `dispatchRun` builds them: a command that is a single heredoc runs its body (chomped for
/// `<<-`) as a script, executed directly from `/dev/pipes/<name>` when it starts with `#!`;
/// any other command is given to the shell with each body and terminator appended, for the
/// shell to read as its own heredocs. Without heredocs, [`command_argv`].
pub fn heredoc_command(
    command: &Command,
    shell: &[String],
) -> Result<(Vec<String>, Vec<Pipe>), ExecError> {
    let Some(first) = command.files.first() else {
        return Ok((command_argv(command, shell), Vec::new()));
    };
    if command.args.len() != 1 || !command.prepend_shell {
        return Err(ExecError::InvalidHeredoc {
            reason: "a heredoc RUN must be one shell-form command",
        });
    }
    let line = &command.args[0];
    let bare = crate::dockerfile::heredoc::parse_heredoc(line.trim())
        .ok()
        .flatten()
        .is_some();
    let mut pipes = Vec::new();
    let script = if bare {
        let body = first.chomped_content();
        if body.starts_with("#!") {
            let name = &first.name;
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(ExecError::InvalidHeredoc {
                    reason: "the heredoc name cannot be a file name",
                });
            }
            pipes.push(Pipe {
                name: name.clone(),
                content: body,
            });
            format!("/dev/pipes/{name}")
        } else {
            body
        }
    } else {
        let mut full = line.clone();
        for file in &command.files {
            full.push('\n');
            full.push_str(&file.content);
            full.push_str(&file.name);
        }
        full
    };
    let shell_form = Command {
        args: vec![script],
        prepend_shell: true,
        files: Vec::new(),
    };
    Ok((command_argv(&shell_form, shell), pipes))
}

/// The argv of a command: exec form as given, shell form through `shell` (the image's SHELL, or
/// [`DEFAULT_SHELL`] when empty) with the command text as its last argument.
pub fn command_argv(command: &Command, shell: &[String]) -> Vec<String> {
    if !command.prepend_shell {
        return command.args.clone();
    }
    let mut argv = shell_or_default(shell);
    argv.push(command.args.join(" "));
    argv
}

/// The shell that shell-form commands run under: `shell` (an image's SHELL), or
/// [`DEFAULT_SHELL`] when it is empty.
pub fn shell_or_default(shell: &[String]) -> Vec<String> {
    if shell.is_empty() {
        DEFAULT_SHELL.map(str::to_owned).to_vec()
    } else {
        shell.to_vec()
    }
}

/// Which stream an output line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Where the sandbox gets its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// A directory for the per-RUN `hosts`, `hostname` and `resolv.conf` (the store's `tmp/`).
    pub scratch: PathBuf,
    /// The host's resolver configuration, copied for the RUN.
    pub resolv_conf: PathBuf,
    /// The binary that becomes the sandbox helper (it must call [`init_entry`]).
    pub helper: PathBuf,
}

impl ExecOptions {
    /// Options with scratch space in `scratch`, `/etc/resolv.conf` and this very binary.
    pub fn new(scratch: impl Into<PathBuf>) -> Self {
        Self {
            scratch: scratch.into(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            helper: PathBuf::from("/proc/self/exe"),
        }
    }
}

/// Cancels running [`run`]s from another thread: their process trees are killed at once. One
/// handle may serve several runs at the same time (a build's parallel stages share one).
#[derive(Debug, Clone, Default)]
pub struct Canceller {
    inner: Arc<CancelState>,
}

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    /// Pidfds of the running helpers, by run: signalling one can never hit a recycled pid.
    helpers: Mutex<BTreeMap<u64, OwnedFd>>,
    next: AtomicU64,
}

impl Canceller {
    /// A handle that has not been cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Kills the running commands and everything they started; a later [`run`] with this
    /// handle does not start.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.signal(rustix::process::Signal::KILL);
    }

    /// Asks the commands to stop: SIGTERM, passed on by the helper and the sandbox's init to the
    /// command, which may handle it (unlike [`Canceller::cancel`], a run then ends normally).
    pub fn terminate(&self) {
        self.signal(rustix::process::Signal::TERM);
    }

    /// Whether [`Canceller::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    fn signal(&self, signal: rustix::process::Signal) {
        if let Ok(helpers) = self.inner.helpers.lock() {
            for fd in helpers.values() {
                // It may have ended already; then there is nothing to kill.
                let _ = rustix::process::pidfd_send_signal(fd, signal);
            }
        }
    }

    /// Registers a run's helper; the returned id unregisters it.
    fn add_helper(&self, fd: Option<OwnedFd>) -> u64 {
        let id = self.inner.next.fetch_add(1, Ordering::SeqCst);
        if let (Ok(mut helpers), Some(fd)) = (self.inner.helpers.lock(), fd) {
            helpers.insert(id, fd);
        }
        if self.is_cancelled() {
            self.cancel();
        }
        id
    }

    fn remove_helper(&self, id: u64) {
        if let Ok(mut helpers) = self.inner.helpers.lock() {
            helpers.remove(&id);
        }
    }
}

/// Why a RUN could not be run (a command that runs and fails is an [`ExitStatus`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// There is nothing to run.
    #[error("empty command")]
    EmptyCommand,
    /// `/proc`, `/dev` or `/sys` in the rootfs is a symlink.
    #[error("rootfs {path} is a symlink; refusing to mount")]
    RootfsSymlink {
        /// The path inside the rootfs.
        path: String,
    },
    /// `/proc`, `/dev` or `/sys` in the rootfs is not a directory.
    #[error("rootfs {path} is not a directory")]
    RootfsNotDirectory {
        /// The path inside the rootfs.
        path: String,
    },
    /// USER does not resolve.
    #[error("USER {user:?}")]
    User {
        /// The USER value.
        user: String,
        /// The cause.
        #[source]
        source: UserError,
    },
    /// USER's ids do not exist in kiln's user namespace.
    #[error("USER {user:?}")]
    Unmapped {
        /// The USER value.
        user: String,
        /// What is missing and how to map it.
        #[source]
        source: crate::privileges::PrivilegeError,
    },
    /// A mount target cannot be used.
    #[error("mount target {target}: {reason}")]
    MountTarget {
        /// The target as given.
        target: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A RUN declares `--mount`s the caller did not resolve.
    #[error("RUN declares {declared} --mount(s) but {given} were resolved")]
    UnresolvedMounts {
        /// `--mount` flags on the instruction.
        declared: usize,
        /// Mounts given.
        given: usize,
    },
    /// A heredoc RUN that cannot be run.
    #[error("heredoc RUN: {reason}")]
    InvalidHeredoc {
        /// What is wrong.
        reason: &'static str,
    },
    /// The working directory cannot be created.
    #[error("WORKDIR {path}: {reason}")]
    Workdir {
        /// The working directory.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A filesystem operation of the builder failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The sandbox helper could not be started or talked to.
    #[error("starting the sandbox helper")]
    Spawn(#[source] io::Error),
    /// Setting up the sandbox failed (the helper's message).
    #[error("setting up the sandbox: {0}")]
    Setup(String),
    /// The command could not be executed (e.g. not found).
    #[error("cannot execute the command: {0}")]
    Exec(String),
    /// The helper ended without saying how the command ended.
    #[error("the sandbox helper ended without a result ({0})")]
    HelperDied(std::process::ExitStatus),
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// Runs `spec` in a sandbox on `rootfs`, passing each line of output (without its newline) to
/// `output`, and returns how the command ended. Nothing the sandbox mounts outlives the call;
/// mount-point stubs it made in the rootfs are removed.
pub fn run(
    rootfs: &Path,
    spec: &RunSpec,
    options: &ExecOptions,
    output: &mut dyn FnMut(Stream, &[u8]),
    cancel: &Canceller,
) -> Result<ExitStatus, ExecError> {
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    if spec.args.is_empty() {
        return Err(ExecError::EmptyCommand);
    }
    let files = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&options.scratch)
        .map_err(|source| ExecError::Io {
            op: "create a directory in",
            path: options.scratch.clone(),
            source,
        })?;
    let file_paths = write_files(files.path(), spec, &options.resolv_conf)?;
    let file_refs: Vec<(&str, PathBuf)> = file_paths.iter().map(|(n, p)| (*n, p.clone())).collect();
    let prepared = rootfs::prepare(rootfs, spec, &file_refs)?;
    let result = run_prepared(
        rootfs,
        spec,
        options,
        &prepared,
        files.path(),
        output,
        cancel,
    );
    let cleaned = rootfs::cleanup(rootfs, &prepared);
    let status = result?;
    cleaned?;
    Ok(status)
}

/// Writes `hosts`, `hostname` and `resolv.conf` for the RUN into `dir`.
fn write_files(
    dir: &Path,
    spec: &RunSpec,
    resolv_conf: &Path,
) -> Result<Vec<(&'static str, PathBuf)>, ExecError> {
    let resolv = match std::fs::read(resolv_conf) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(ExecError::Io {
                op: "read",
                path: resolv_conf.to_owned(),
                source,
            });
        }
    };
    let contents: [(&'static str, Vec<u8>); 3] = [
        ("resolv.conf", resolv),
        (
            "hosts",
            spec.extra_hosts
                .iter()
                .fold(
                    format!(
                        "127.0.0.1\tlocalhost {}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                        spec.hostname
                    ),
                    |hosts, extra| hosts + &format!("{}\t{}\n", extra.ip, extra.host),
                )
                .into_bytes(),
        ),
        ("hostname", format!("{}\n", spec.hostname).into_bytes()),
    ];
    let mut out = Vec::new();
    for (name, bytes) in contents {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| ExecError::Io {
            op: "write",
            path: path.clone(),
            source,
        })?;
        out.push((name, path));
    }
    Ok(out)
}

/// The environment the command gets: the spec's, with PATH and HOME added when missing.
fn command_env(spec: &RunSpec, user: &ExecUser) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(spec.env.len() + 2);
    for (k, v) in &spec.env {
        match env.iter_mut().find(|(key, _)| key == k) {
            Some(entry) => entry.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_owned(), user.home.clone()));
    }
    for (k, v) in &spec.secret_env {
        match env.iter_mut().find(|(key, _)| key == k) {
            Some(entry) => entry.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

fn run_prepared(
    rootfs: &Path,
    spec: &RunSpec,
    options: &ExecOptions,
    prepared: &rootfs::Prepared,
    scratch: &Path,
    output: &mut dyn FnMut(Stream, &[u8]),
    cancel: &Canceller,
) -> Result<ExitStatus, ExecError> {
    let mut mounts = Vec::with_capacity(spec.mounts.len());
    for (i, (mount, target)) in spec.mounts.iter().zip(&prepared.mount_targets).enumerate() {
        mounts.push(mounts::inner(mount, target.clone(), scratch, i)?);
    }
    // Parents before children, whatever order the Dockerfile gave.
    let depth = |m: &mounts::InnerMount| match m {
        mounts::InnerMount::Bind { target, .. }
        | mounts::InnerMount::Overlay { target, .. }
        | mounts::InnerMount::Tmpfs { target, .. }
        | mounts::InnerMount::Secret { target, .. } => target.components().count(),
    };
    mounts.sort_by_key(depth);
    let config = init::HelperConfig {
        parent: rustix::process::getpid().as_raw_nonzero().get(),
        rootfs: std::fs::canonicalize(rootfs).map_err(|source| ExecError::Io {
            op: "resolve",
            path: rootfs.to_owned(),
            source,
        })?,
        hostname: spec.hostname.clone(),
        network_none: spec.network == NetworkMode::None,
        binds: prepared
            .binds
            .iter()
            .map(|(source, target)| init::Bind {
                source: source.clone(),
                target: target.clone(),
                read_only: false,
            })
            .collect(),
        mounts,
        pipes: spec.pipes.clone(),
        uid: prepared.user.uid,
        gid: prepared.user.gid,
        groups: prepared.user.groups.clone(),
        caps: DEFAULT_CAPABILITIES,
        args: spec.args.clone(),
        env: command_env(spec, &prepared.user),
        cwd: rootfs::clean_path(&spec.cwd),
        privileges: crate::privileges::current().clone(),
    };
    let config = serde_json::to_vec(&config).map_err(|e| ExecError::Spawn(e.into()))?;
    let (mut ours, theirs) = UnixStream::pair().map_err(ExecError::Spawn)?;
    let mut child = std::process::Command::new(&options.helper)
        .arg(init::HELPER_ARG)
        .env_clear()
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ExecError::Spawn)?;
    let pid = rustix::process::Pid::from_child(&child);
    let helper_id = cancel
        .add_helper(rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok());
    // A helper that died early closes its end: the write fails and the report says why.
    let _ = ours
        .write_all(&config)
        .and_then(|()| ours.shutdown(std::net::Shutdown::Write));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(Stream, Vec<u8>)>();
        if let Some(out) = stdout {
            let tx = tx.clone();
            scope.spawn(move || read_lines(out, Stream::Stdout, &tx));
        }
        if let Some(err) = stderr {
            let tx = tx.clone();
            scope.spawn(move || read_lines(err, Stream::Stderr, &tx));
        }
        drop(tx);
        for (stream, line) in rx {
            output(stream, &line);
        }
    });
    let status = child.wait().map_err(ExecError::Spawn);
    cancel.remove_helper(helper_id);
    let status = status?;
    let mut report = Vec::new();
    // Every writer (helper, init) has exited: this reads to EOF.
    let _ = (&mut ours).take(MAX_REPORT).read_to_end(&mut report);
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    let first = report.split(|&b| b == b'\n').next().unwrap_or_default();
    match serde_json::from_slice::<init::Report>(first) {
        Ok(init::Report::Exited(code)) => Ok(ExitStatus::Code(code)),
        Ok(init::Report::Signaled(sig)) => Ok(ExitStatus::Signal(sig)),
        Ok(init::Report::Setup(message)) => Err(ExecError::Setup(message)),
        Ok(init::Report::Exec(message)) => Err(ExecError::Exec(message)),
        Err(_) => Err(ExecError::HelperDied(status)),
    }
}

/// Reads `from` and sends it line by line (lines over [`MAX_LINE`] in pieces).
fn read_lines(
    mut from: impl Read,
    stream: Stream,
    to: &std::sync::mpsc::Sender<(Stream, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if to.send((stream, std::mem::take(&mut line))).is_err() {
                    return;
                }
            } else {
                line.push(b);
                if line.len() >= MAX_LINE && to.send((stream, std::mem::take(&mut line))).is_err() {
                    return;
                }
            }
        }
    }
    if !line.is_empty() {
        let _ = to.send((stream, line));
    }
}
