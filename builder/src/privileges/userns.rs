//! Entering kiln's own user namespace: how a non-root user becomes "root" for a build.
//!
//! The process (single-threaded: the binary calls this first thing in `main`) forks a helper,
//! then unshares a user and a mount namespace itself; the helper, still in the parent
//! namespace, runs the setuid `newuidmap` and `newgidmap` on the process's pid to map
//! container id 0 to the user's own uid and 1 and up to the user's subordinate ranges from
//! `/etc/subuid` and `/etc/subgid` (util-linux `unshare --map-users` and rootlesskit do the
//! same). The process then is uid 0 with every capability in its namespace, and the rest of
//! kiln runs unchanged; its mounts (overlays) live in its own mount namespace and vanish with
//! it, whatever way it exits.
//!
//! Root without `CAP_SYS_ADMIN` (root in a container with the runtime's default capabilities)
//! cannot mount either, and enters a namespace the same way; its helper, holding `CAP_SETUID`
//! and `CAP_SETGID` outside, writes the maps itself, each id root has mapped to itself, so
//! files keep the same ids as they would for root on a host.
//!
//! Without subordinate ranges, without `newuidmap`/`newgidmap`, or when they fail, the process
//! writes a single-id map itself (0 → the user; `setgroups` denied, as the kernel requires
//! then) and the caller shows [`Entered::warning`]: images keep every file owned by 0, and
//! any other owner is an error naming the fix (see [`super::PrivilegeError`]).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rustix::thread::UnshareFlags;

use super::IdMap;
use super::subid::{SubIdRange, subid_ranges};
use crate::exec::sys::{self, Forked};

/// What [`enter_user_namespace`] set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entered {
    /// The user's uid outside (container uid 0).
    pub host_uid: u32,
    /// The user's gid outside (container gid 0).
    pub host_gid: u32,
    /// The user's name, from the host's `/etc/passwd`.
    pub user_name: Option<String>,
    /// Whether more ids than the user's own are mapped, for users and for groups: the user's
    /// subordinate ids, or for root every id root has outside.
    pub multiple_ids: bool,
    /// Why the map is a single id, and what that breaks and how to fix it: one line for the
    /// user.
    pub warning: Option<String>,
}

/// Why kiln's user namespace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// The kernel refused `unshare(CLONE_NEWUSER | CLONE_NEWNS)`.
    #[error(
        "creating a user namespace: {source} (allow unprivileged user namespaces: \
         `sysctl user.max_user_namespaces=15000`, on Debian kernels \
         `sysctl kernel.unprivileged_userns_clone=1`, on Ubuntu \
         `sysctl kernel.apparmor_restrict_unprivileged_userns=0`; or run kiln as root)"
    )]
    Unshare {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The id-mapping helper could not be started.
    #[error("starting the id-mapping helper")]
    Fork(#[source] io::Error),
    /// An id map could not be written.
    #[error("writing {}", path.display())]
    WriteMap {
        /// The `/proc/self` file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Root could not map itself into the namespace.
    #[error(
        "mapping root into kiln's user namespace ({why}): that needs CAP_SETUID, CAP_SETGID \
         and CAP_SETFCAP, which container runtimes grant root by default (do not drop them), \
         or CAP_SYS_ADMIN"
    )]
    RootMap {
        /// Why neither the helper nor the process could.
        why: String,
    },
    /// The namespace was made but the process is not root in it.
    #[error("not uid 0 in the new user namespace (uid {uid})")]
    NotRoot {
        /// The uid seen.
        uid: u32,
    },
}

static ENTERED: OnceLock<Entered> = OnceLock::new();

/// What [`enter_user_namespace`] set up, if it ran and succeeded.
pub fn entered() -> Option<&'static Entered> {
    ENTERED.get()
}

/// Moves this process into a new user and mount namespace where it is uid 0 with every
/// capability (see the module documentation). Must be called while the process has one thread.
pub fn enter_user_namespace() -> Result<&'static Entered, UsernsError> {
    let host_uid = rustix::process::getuid().as_raw();
    let host_gid = rustix::process::getgid().as_raw();
    let user_name = host_user_name(host_uid);
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let (jobs, mut problem) = if host_uid == 0 {
        (Some(root_jobs(pid)), None)
    } else {
        user_jobs(pid, host_uid, host_gid, user_name.as_deref())
    };
    let mapper = jobs.map(spawn_mapper).transpose()?;
    if let Err(e) = sys::unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) {
        // The mapper sees its pipe close and exits without mapping anything.
        if let Some(mapper) = mapper {
            mapper.finish();
        }
        return Err(UsernsError::Unshare { source: e });
    }
    let mut mapped = (false, false);
    if let Some(mut mapper) = mapper {
        mapper.go();
        let result = mapper.finish();
        mapped = (result.uid, result.gid);
        if let Some(message) = result.error {
            problem = Some(message);
        }
    }
    let single = || -> Result<(), UsernsError> {
        if !mapped.0 {
            write_map("uid_map", &format!("0 {host_uid} 1\n"))?;
        }
        if !mapped.1 {
            write_map("setgroups", "deny")?;
            write_map("gid_map", &format!("0 {host_gid} 1\n"))?;
        }
        Ok(())
    };
    match single() {
        // Mapping the parent's root needs CAP_SETFCAP even for a single id.
        Err(e) if host_uid == 0 => {
            let why = problem.unwrap_or_else(|| crate::error_chain(&e));
            return Err(UsernsError::RootMap { why });
        }
        result => result?,
    }
    let uid = rustix::process::getuid().as_raw();
    if uid != 0 {
        return Err(UsernsError::NotRoot { uid });
    }
    let entered = Entered {
        host_uid,
        host_gid,
        user_name,
        multiple_ids: mapped == (true, true),
        warning: problem.map(|why| {
            format!(
                "a user namespace with a single id: {why}; images can only hold files owned by \
                 0:0 and run as root, so USER, chown, useradd and COPY --chown to other ids fail"
            )
        }),
    };
    Ok(ENTERED.get_or_init(|| entered))
}

/// Root without `CAP_SYS_ADMIN` (root in a container): every id root has outside is mapped to
/// itself, written by the helper, which keeps `CAP_SETUID` and `CAP_SETGID` there.
fn root_jobs(pid: i32) -> [MapJob; 2] {
    ["uid_map", "gid_map"].map(|file| {
        let own = std::fs::read_to_string(format!("/proc/self/{file}"))
            .map_or_else(|_| IdMap::identity(), |t| IdMap::parse(&t));
        MapJob::Write(PathBuf::from(format!("/proc/{pid}/{file}")), same_ids(&own))
    })
}

/// The map text that maps every id of `own` to itself.
fn same_ids(own: &IdMap) -> String {
    own.ranges
        .iter()
        .map(|r| format!("{0} {0} {1}\n", r.inside, r.count))
        .collect()
}

/// A non-root user: its own id as 0 and its subordinate ids from 1 up, through `newuidmap` and
/// `newgidmap`; `None` and the reason when that cannot be done.
fn user_jobs(
    pid: i32,
    host_uid: u32,
    host_gid: u32,
    name: Option<&str>,
) -> (Option<[MapJob; 2]>, Option<String>) {
    let uid_ranges = subid_ranges(Path::new("/etc/subuid"), name, host_uid);
    let gid_ranges = subid_ranges(Path::new("/etc/subgid"), name, host_uid);
    let who = name.map_or_else(|| format!("uid {host_uid}"), str::to_owned);
    if uid_ranges.is_empty() || gid_ranges.is_empty() {
        let why = format!(
            "{who} has no subordinate ids in /etc/subuid and /etc/subgid (add them: `usermod \
             --add-subuids 100000-165535 --add-subgids 100000-165535 {who}`)"
        );
        return (None, Some(why));
    }
    let (Some(uidmap), Some(gidmap)) = (find_tool("newuidmap"), find_tool("newgidmap")) else {
        let why = "newuidmap/newgidmap are not installed (install the package uidmap)";
        return (None, Some(why.to_owned()));
    };
    let target = pid.to_string();
    let jobs = [
        MapJob::Tool(uidmap, map_args(&target, host_uid, &uid_ranges)),
        MapJob::Tool(gidmap, map_args(&target, host_gid, &gid_ranges)),
    ];
    (Some(jobs), None)
}

/// Writes `/proc/self/<file>`.
fn write_map(file: &str, content: &str) -> Result<(), UsernsError> {
    let path = PathBuf::from(format!("/proc/self/{file}"));
    std::fs::write(&path, content).map_err(|source| UsernsError::WriteMap { path, source })
}

/// The host user's name, from `/etc/passwd` (never NSS: the lookup must not load libraries).
fn host_user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    crate::user::parse_passwd(&text)
        .into_iter()
        .find(|e| e.uid == uid)
        .map(|e| e.name)
}

/// `name` on `PATH`, else in `/usr/bin` (where Debian's uidmap puts it).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The forked helper that maps ids once told to.
struct Mapper {
    pid: rustix::process::Pid,
    go: Option<std::fs::File>,
    result: std::fs::File,
}

/// What the helper managed.
struct MapResult {
    uid: bool,
    gid: bool,
    error: Option<String>,
}

impl Mapper {
    /// Tells the helper the namespace exists: map it now.
    fn go(&mut self) {
        if let Some(mut go) = self.go.take() {
            // Nothing to do if the helper is gone: its status says so.
            let _ = go.write_all(b"1");
        }
    }

    /// Waits for the helper; its exit code says which maps it wrote, its pipe why not.
    fn finish(mut self) -> MapResult {
        // Closed unsent, the pipe tells the helper there is nothing to map.
        self.go = None;
        let mut message = String::new();
        let _ = self.result.read_to_string(&mut message);
        let code = loop {
            match rustix::process::waitpid(Some(self.pid), rustix::process::WaitOptions::empty()) {
                Ok(Some((_, status))) if status.exited() || status.signaled() => {
                    break status.exit_status().unwrap_or(-1);
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => break -1,
            }
        };
        MapResult {
            uid: code == 0 || code == 2,
            gid: code == 0,
            error: (code != 0).then(|| {
                let message = message.trim();
                if message.is_empty() {
                    format!("the id-mapping helper ended with {code}")
                } else {
                    message.to_owned()
                }
            }),
        }
    }
}

/// How the helper writes one id map of this process.
enum MapJob {
    /// Runs `newuidmap` or `newgidmap` with these arguments.
    Tool(PathBuf, Vec<String>),
    /// Writes this text to this `/proc/<pid>/uid_map` or `gid_map`.
    Write(PathBuf, String),
}

impl MapJob {
    fn run(&self) -> Result<(), String> {
        match self {
            MapJob::Tool(tool, args) => run_tool(tool, args),
            MapJob::Write(path, text) => {
                std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
            }
        }
    }
}

/// Forks the helper: it waits for a byte on its pipe (the namespace exists), does the uid job
/// then the gid job, and exits 0 (both mapped), 2 (only uids) or 1 (nothing), with the
/// failure on its result pipe.
fn spawn_mapper(jobs: [MapJob; 2]) -> Result<Mapper, UsernsError> {
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| UsernsError::Fork(e.into()))
    };
    let (go_r, go_w) = pipe()?;
    let (result_r, result_w) = pipe()?;
    match sys::fork().map_err(UsernsError::Fork)? {
        Forked::Child => {
            drop(go_w);
            drop(result_r);
            let mut go = std::fs::File::from(go_r);
            let mut result = std::fs::File::from(result_w);
            let mut byte = [0u8; 1];
            if !matches!(go.read(&mut byte), Ok(1)) {
                sys::exit_now(1);
            }
            for (job, failed) in jobs.iter().zip([1, 2]) {
                if let Err(message) = job.run() {
                    let _ = result.write_all(message.as_bytes());
                    sys::exit_now(failed);
                }
            }
            sys::exit_now(0)
        }
        Forked::Parent(pid) => Ok(Mapper {
            pid,
            go: Some(std::fs::File::from(go_w)),
            result: std::fs::File::from(result_r),
        }),
    }
}

/// `PID 0 OWN 1 1 START COUNT [next START COUNT…]`: the arguments of `newuidmap`/`newgidmap`.
fn map_args(target: &str, own: u32, ranges: &[SubIdRange]) -> Vec<String> {
    let mut args = vec![target.to_owned(), "0".into(), own.to_string(), "1".into()];
    let mut inside: u32 = 1;
    for range in ranges {
        args.extend([
            inside.to_string(),
            range.start.to_string(),
            range.count.to_string(),
        ]);
        inside = inside.saturating_add(range.count);
    }
    args
}

/// Runs a mapping tool; its stderr is the error, with the fix for the failure containers
/// cause.
fn run_tool(tool: &Path, args: &[String]) -> Result<(), String> {
    match Command::new(tool).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let mut message = format!(
                "{} failed ({}): {}",
                tool.display(),
                out.status,
                stderr.trim()
            );
            if stderr.contains("Operation not permitted") && is_setuid(tool) {
                message.push_str(SETUID_IN_A_CONTAINER);
            }
            Err(message)
        }
        Err(e) => Err(format!("running {}: {e}", tool.display())),
    }
}

/// Why a setuid-root `newuidmap` fails in a container, and the fix. Writing a map needs
/// `CAP_SYS_ADMIN` over the new namespace, which its owner (the user) has there but a setuid-root
/// process only has with `CAP_SYS_ADMIN` in the container, which runtimes drop by default.
/// With file capabilities instead, the tool keeps the user's uid and so the owner's rights.
const SETUID_IN_A_CONTAINER: &str = " (a setuid-root newuidmap/newgidmap cannot map ids in a \
     container without CAP_SYS_ADMIN; give them file capabilities instead: `chmod u-s \
     newuidmap newgidmap && setcap cap_setuid=ep newuidmap && setcap cap_setgid=ep newgidmap`)";

/// Whether `path` has the setuid bit.
fn is_setuid(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o4000 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_maps_every_id_it_has_to_itself() {
        assert_eq!(same_ids(&IdMap::identity()), "0 0 4294967295\n");
        // Root of a container with a user namespace of its own (podman --userns=auto).
        let container = IdMap::parse("0 100000 65536\n70000 300000 10\n");
        assert_eq!(same_ids(&container), "0 0 65536\n70000 70000 10\n");
    }

    #[test]
    fn mapping_tool_arguments_stack_ranges_after_id_zero() {
        let r = |start, count| SubIdRange { start, count };
        assert_eq!(
            map_args("42", 1000, &[r(100000, 65536), r(300000, 10)]),
            [
                "42", "0", "1000", "1", "1", "100000", "65536", "65537", "300000", "10"
            ]
        );
    }
}
