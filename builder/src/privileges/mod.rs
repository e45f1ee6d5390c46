//! The privilege model: what this process may do, decided once and read everywhere.
//!
//! kiln runs in one of three ways. As root with `CAP_SYS_ADMIN` ([`Mode::Root`]) it may do
//! everything. As a non-root user the `kiln` binary first enters a user namespace of its own
//! ([`enter_user_namespace`], before any thread starts) where the user's uid is 0 and the user's
//! subordinate ids (`/etc/subuid`, `/etc/subgid`, mapped by `newuidmap`/`newgidmap`) are 1 and
//! up ([`Mode::Rootless`]): the same code then runs as "root", and what that root cannot do is
//! listed here. Root without `CAP_SYS_ADMIN` (root in an unprivileged container) does the same
//! with every id it has mapped to itself. In an unprivileged container the sandbox cannot mount
//! a fresh `/proc` and binds the container's instead ([`Privileges::fresh_proc`]). Without a user namespace ([`Mode::Unprivileged`]: a library caller, a unit test)
//! files keep the caller's ids and nothing that needs privilege works.
//!
//! [`Privileges::probe`] reads the answer from the process's own state (`/proc/self/uid_map`,
//! `gid_map`, `setgroups`, the effective capabilities); the binary installs it once
//! ([`install`]) and the layer applier, the snapshotter, the store and the sandbox read it with
//! [`current`], so every decision about privilege is made from this one value. Each field says
//! how it is probed, what needs it and what would enable it; [`PrivilegeError`] carries that fix
//! into the error a user sees.

mod subid;
mod userns;

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use subid::{SubIdRange, parse_subid, subid_ranges};
pub use userns::{Entered, UsernsError, enter_user_namespace, entered};

/// How the process holds its privileges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// uid 0 in the initial user namespace.
    Root,
    /// uid 0 in a user namespace kiln made for a non-root user.
    Rootless {
        /// The user's own uid, outside.
        host_uid: u32,
        /// The user's own gid, outside.
        host_gid: u32,
        /// Whether more ids than 0 are mapped: the user's subordinate ids, or for root every id
        /// it has outside (else only id 0 exists).
        multiple_ids: bool,
    },
    /// Not root, in no user namespace kiln made.
    Unprivileged {
        /// The effective uid.
        uid: u32,
    },
}

/// One line of `/proc/self/uid_map` or `gid_map`: `count` ids from `inside` in this namespace
/// are `outside` and up in the parent namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First id in this namespace.
    pub inside: u32,
    /// First id in the parent namespace.
    pub outside: u32,
    /// How many.
    pub count: u32,
}

/// The ids that exist in this process's user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// The map's lines.
    pub ranges: Vec<IdRange>,
}

impl IdMap {
    /// The initial namespace's map: every id.
    pub fn identity() -> Self {
        Self {
            ranges: vec![IdRange {
                inside: 0,
                outside: 0,
                count: u32::MAX,
            }],
        }
    }

    /// Parses the text of a `uid_map` or `gid_map` file (malformed lines are skipped).
    pub fn parse(text: &str) -> Self {
        let ranges = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace().map(str::parse::<u32>);
                let (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return None;
                };
                Some(IdRange {
                    inside,
                    outside,
                    count,
                })
            })
            .collect();
        Self { ranges }
    }

    /// Whether `id` exists (can own a file, be switched to).
    pub fn contains(&self, id: u32) -> bool {
        self.ranges
            .iter()
            .any(|r| id >= r.inside && u64::from(id) < u64::from(r.inside) + u64::from(r.count))
    }

    /// Whether this is the initial namespace's map.
    pub fn is_identity(&self) -> bool {
        *self == Self::identity()
    }

    /// The ids that exist, as `0-65536` ranges for messages (adjacent lines merged).
    pub fn describe(&self) -> String {
        let mut spans: Vec<(u64, u64)> = self
            .ranges
            .iter()
            .map(|r| {
                (
                    u64::from(r.inside),
                    u64::from(r.inside) + u64::from(r.count),
                )
            })
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        if merged.is_empty() {
            return "none".to_owned();
        }
        let parts: Vec<String> = merged
            .iter()
            .map(|&(start, end)| match end - start {
                1 => start.to_string(),
                _ => format!("{start}-{}", end - 1),
            })
            .collect();
        parts.join(",")
    }
}

/// Whether an id is a user or a group id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A uid.
    User,
    /// A gid.
    Group,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::User => "uid",
            IdKind::Group => "gid",
        })
    }
}

/// What the process may do. See each field for its probe, its users and its fix. The sandbox
/// helper gets the builder's value in its config instead of probing again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileges {
    /// How the process holds its privileges. Probed: effective uid, `/proc/self/uid_map`, and
    /// whether [`enter_user_namespace`] ran. Needed by the store's default place
    /// (`/var/lib/kiln` only for [`Mode::Root`]) and by every message below.
    pub mode: Mode,
    /// The uids that can own files and run commands. Probed: `/proc/self/uid_map`. Needed by
    /// the layer applier (owners from layers and `--chown`), USER and `chown` in a RUN. Enabled
    /// by root, or by subordinate uids in `/etc/subuid` and `newuidmap` (package `uidmap`).
    pub uid_map: IdMap,
    /// The gids, likewise (`/proc/self/gid_map`, `/etc/subgid`, `newgidmap`).
    pub gid_map: IdMap,
    /// Whether entries keep the owners layers give them. Probed: effective uid 0 (in any user
    /// namespace). Without it every file belongs to the caller.
    pub chown: bool,
    /// Whether device nodes can be created (overlayfs whiteouts, 0/0 character devices, need
    /// no privilege since Linux 5.8). Probed: `CAP_MKNOD` in the initial user namespace, which
    /// only root has. Devices in base layers are skipped without it (and reported); `mknod` in
    /// a RUN fails.
    pub mknod: bool,
    /// Whether `trusted.*` extended attributes can be set and read (`CAP_SYS_ADMIN` in the
    /// initial user namespace, root only). Decides how opaque directories are marked in
    /// snapshots: `trusted.overlay.opaque`, else `user.overlay.opaque`.
    pub trusted_xattrs: bool,
    /// Whether overlayfs must be mounted with `userxattr` (inside a user namespace, Linux ≥
    /// 5.11; the snapshotter falls back to copying where the kernel refuses the mount).
    pub overlay_userxattr: bool,
    /// Whether `setgroups(2)` is allowed. Probed: `/proc/self/setgroups`; denied in a user
    /// namespace whose gid map was written without `newgidmap`. Without it a RUN keeps no
    /// supplementary groups.
    pub setgroups: bool,
    /// Whether the sandbox can mount a fresh procfs for its pid namespace. Probed (outside the
    /// initial user namespace, where it is always allowed): a child in new pid and mount
    /// namespaces mounts one. The kernel refuses it where the `/proc` kiln sees has paths
    /// masked by a container runtime (Docker, podman and Kubernetes do by default). Without it
    /// the sandbox binds that `/proc` instead: a RUN still has a pid namespace of its own (its
    /// processes all die with the step) but sees the container's processes, as BuildKit's
    /// `--oci-worker-no-process-sandbox` does; kiln's own processes are then undumpable, so a
    /// RUN cannot ptrace them or open their files through `/proc`. Enabled by an unmasked
    /// `/proc`: `procMount: Unmasked` in Kubernetes (with `hostUsers: false`), `--security-opt
    /// unmask=ALL` in podman.
    pub fresh_proc: bool,
}

impl Privileges {
    /// Reads the privileges of this process.
    pub fn probe() -> Self {
        let euid = rustix::process::geteuid().as_raw();
        let read = |name: &str| std::fs::read_to_string(format!("/proc/self/{name}")).ok();
        let uid_map = read("uid_map").map_or_else(IdMap::identity, |t| IdMap::parse(&t));
        let gid_map = read("gid_map").map_or_else(IdMap::identity, |t| IdMap::parse(&t));
        // Root of a container entered a namespace of its own whose map looks like the initial one.
        let initial = uid_map.is_identity() && entered().is_none();
        let mode = match (euid, entered()) {
            (0, _) if initial => Mode::Root,
            (0, Some(e)) => Mode::Rootless {
                host_uid: e.host_uid,
                host_gid: e.host_gid,
                multiple_ids: e.multiple_ids,
            },
            // Root of a user namespace someone else made (a rootless container): kiln's own
            // store default and messages as for root there.
            (0, None) => Mode::Root,
            (uid, _) => Mode::Unprivileged { uid },
        };
        let root_of_initial = euid == 0 && initial;
        Self {
            mode,
            uid_map,
            gid_map,
            chown: euid == 0,
            mknod: root_of_initial && has_effective_cap(CAP_MKNOD),
            trusted_xattrs: root_of_initial && has_effective_cap(CAP_SYS_ADMIN),
            overlay_userxattr: !initial,
            setgroups: read("setgroups").is_none_or(|s| s.trim() == "allow"),
            fresh_proc: root_of_initial || can_mount_fresh_proc(),
        }
    }

    /// Whether the process is root of the initial user namespace.
    pub fn is_host_root(&self) -> bool {
        self.mode == Mode::Root && self.uid_map.is_identity()
    }

    /// Whether the process runs rootless in kiln's own user namespace.
    pub fn is_rootless(&self) -> bool {
        matches!(self.mode, Mode::Rootless { .. })
    }

    /// Whether kiln was started by root (of the host or of a container): its store is then
    /// the system's, `/var/lib/kiln`.
    pub fn started_as_root(&self) -> bool {
        matches!(self.mode, Mode::Root | Mode::Rootless { host_uid: 0, .. })
    }

    /// Checks that files can be owned by `uid:gid`.
    pub fn check_owner(&self, uid: u32, gid: u32) -> Result<(), PrivilegeError> {
        self.check_id(IdKind::User, uid)?;
        self.check_id(IdKind::Group, gid)
    }

    /// Checks that `id` exists in this namespace.
    pub fn check_id(&self, kind: IdKind, id: u32) -> Result<(), PrivilegeError> {
        let map = match kind {
            IdKind::User => &self.uid_map,
            IdKind::Group => &self.gid_map,
        };
        if map.contains(id) {
            return Ok(());
        }
        Err(PrivilegeError::Unmapped {
            kind,
            id,
            mapped: map.describe(),
            fix: self.map_fix(),
        })
    }

    /// How to get more ids mapped, for messages.
    pub fn map_fix(&self) -> String {
        match &self.mode {
            Mode::Rootless {
                multiple_ids: false,
                host_uid: 0,
                ..
            } => "kiln runs as root without CAP_SYS_ADMIN and could not map the container's \
                  ids (it needs CAP_SETUID and CAP_SETGID, which container runtimes grant root \
                  by default), or run it with CAP_SYS_ADMIN"
                .to_owned(),
            Mode::Rootless { host_uid: 0, .. } => "the container maps only these ids; run kiln \
                                                   in a container with more"
                .to_owned(),
            Mode::Rootless {
                multiple_ids: false,
                host_uid,
                ..
            } => format!(
                "kiln runs rootless without subordinate ids: give the user a range with \
                 `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {}` and \
                 install newuidmap/newgidmap (package uidmap), or run kiln as root",
                user_name(*host_uid)
            ),
            Mode::Rootless { host_uid, .. } => format!(
                "for more ids widen {}'s ranges in /etc/subuid and /etc/subgid, or run kiln \
                 as root",
                user_name(*host_uid)
            ),
            Mode::Unprivileged { .. } => "run kiln as root".to_owned(),
            Mode::Root => "this user namespace maps only these ids; run kiln as root of the \
                           initial user namespace"
                .to_owned(),
        }
    }

    /// What a RUN cannot do in this mode, for the note under a failed RUN; `None` as root.
    pub fn run_limits(&self) -> Option<String> {
        if self.is_host_root() {
            return None;
        }
        Some(format!(
            "kiln runs without root (uids {}, gids {} in its user namespace): a RUN cannot \
             create device nodes (mknod), set trusted.* attributes or use other ids; {}",
            self.uid_map.describe(),
            self.gid_map.describe(),
            self.map_fix()
        ))
    }
}

/// A privilege the process lacks, with what would give it.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// An id outside the user namespace's map.
    #[error("{kind} {id} does not exist in kiln's user namespace (mapped: {mapped}): {fix}")]
    Unmapped {
        /// uid or gid.
        kind: IdKind,
        /// The id.
        id: u32,
        /// The ids that are mapped.
        mapped: String,
        /// What would map it.
        fix: String,
    },
}

/// `CAP_MKNOD`.
const CAP_MKNOD: u32 = 27;
/// `CAP_SYS_ADMIN`.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether capability `cap` is in the effective set (`CapEff` of `/proc/self/status`).
fn has_effective_cap(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << cap) != 0)
}

/// The host user's name for messages (from `/etc/passwd`), or the uid.
fn user_name(uid: u32) -> String {
    entered()
        .and_then(|e| e.user_name.clone())
        .unwrap_or_else(|| uid.to_string())
}

/// Whether the process can mount filesystems where it is: effective uid 0 holding
/// `CAP_SYS_ADMIN` (in whatever user namespace). Otherwise kiln needs a user namespace of its own.
pub fn can_mount() -> bool {
    effective_uid_is_root() && has_effective_cap(CAP_SYS_ADMIN)
}

/// Whether the effective uid is 0 (in whatever user namespace).
pub fn effective_uid_is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether a fresh procfs can be mounted for a new pid namespace: a child unshares pid and mount
/// namespaces, and its own child (pid 1 there) mounts one over `/proc` in that private mount
/// namespace; only the exit code comes back.
fn can_mount_fresh_proc() -> bool {
    use crate::exec::sys::{self, Forked};
    use rustix::mount::{MountFlags, MountPropagationFlags};
    use rustix::thread::UnshareFlags;
    let wait = |pid| loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) if status.exited() || status.signaled() => {
                break status.exit_status() == Some(0);
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => break false,
        }
    };
    match sys::fork() {
        Ok(Forked::Child) => {
            if sys::unshare(UnshareFlags::NEWPID | UnshareFlags::NEWNS).is_err() {
                sys::exit_now(1);
            }
            match sys::fork() {
                Ok(Forked::Child) => {
                    let private = MountPropagationFlags::REC | MountPropagationFlags::PRIVATE;
                    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
                    let mounted = rustix::mount::mount_change("/", private).is_ok()
                        && rustix::mount::mount("proc", "/proc", "proc", flags, None).is_ok();
                    sys::exit_now(if mounted { 0 } else { 1 })
                }
                Ok(Forked::Parent(pid)) => sys::exit_now(if wait(pid) { 0 } else { 1 }),
                Err(_) => sys::exit_now(1),
            }
        }
        Ok(Forked::Parent(pid)) => wait(pid),
        Err(_) => false,
    }
}

static CURRENT: OnceLock<Privileges> = OnceLock::new();

/// Installs the privileges the whole process uses (the binary does it once, after entering its
/// user namespace); later calls keep the first value. Without a fresh `/proc` for the sandbox
/// the process becomes undumpable: a RUN sees it in the `/proc` it gets, and must not ptrace it
/// or open its files there.
pub fn install(privileges: Privileges) -> &'static Privileges {
    let installed = CURRENT.get_or_init(|| privileges);
    if !installed.fresh_proc {
        // Fails only for an invalid argument.
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    }
    installed
}

/// The privileges of this process: the installed value, else probed once now.
pub fn current() -> &'static Privileges {
    CURRENT.get_or_init(Privileges::probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_parse_and_answer() {
        let map =
            IdMap::parse("         0       1000          1\n         1     100000      65536\n");
        for (id, inside) in [
            (0, true),
            (1, true),
            (1001, true),
            (65536, true),
            (65537, false),
            (u32::MAX, false),
        ] {
            assert_eq!(map.contains(id), inside, "{id}");
        }
        assert_eq!(map.describe(), "0-65536");
        assert_eq!(IdMap::parse("0 1000 1\n").describe(), "0");
        assert_eq!(IdMap::parse("0 1 1\n5 9 2\n").describe(), "0,5-6");
        assert!(!map.is_identity());
        assert!(IdMap::parse("0 0 4294967295\n").is_identity());
        assert!(IdMap::identity().contains(u32::MAX - 1));
        assert_eq!(IdMap::parse("garbage\n").ranges, vec![]);
    }

    fn rootless(multiple_ids: bool, map: &str) -> Privileges {
        Privileges {
            mode: Mode::Rootless {
                host_uid: 1000,
                host_gid: 1000,
                multiple_ids,
            },
            uid_map: IdMap::parse(map),
            gid_map: IdMap::parse(map),
            chown: true,
            mknod: false,
            trusted_xattrs: false,
            overlay_userxattr: true,
            setgroups: multiple_ids,
            fresh_proc: false,
        }
    }

    #[test]
    fn unmapped_ids_say_how_to_map_them() {
        let single = rootless(false, "0 1000 1\n");
        assert!(single.check_owner(0, 0).is_ok());
        let err = single.check_owner(1001, 0).unwrap_err().to_string();
        assert!(err.starts_with("uid 1001 does not exist"), "{err}");
        assert!(err.contains("(mapped: 0)"), "{err}");
        assert!(err.contains("usermod --add-subuids"), "{err}");
        let full = rootless(true, "0 1000 1\n1 100000 65536\n");
        assert!(full.check_owner(1001, 1001).is_ok());
        let err = full.check_id(IdKind::Group, 70000).unwrap_err().to_string();
        assert!(err.starts_with("gid 70000"), "{err}");
        assert!(err.contains("/etc/subgid"), "{err}");
        assert!(full.run_limits().unwrap().contains("mknod"));
    }
}
