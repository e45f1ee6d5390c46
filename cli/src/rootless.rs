//! Deciding kiln's privileges once, at the start of `main`: run by a non-root user, or by root
//! without `CAP_SYS_ADMIN` (in an unprivileged container), kiln first moves into a user
//! namespace of its own (see `kiln_builder::privileges`) so that builds run as root there, then
//! probes what it may do and installs that for the whole process.
//!
//! The store's default place (`$XDG_DATA_HOME/kiln`) is the user's own even inside the
//! namespace: the environment is unchanged, and the store reads the mode from the installed
//! privileges, not from the uid. Warnings and errors name what does not work and the fix.

use kiln_builder::privileges::{self, Privileges};

/// What a command needs from the user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (it only talks to a registry's credentials): stay as the user.
    Nothing,
    /// Files owned by the image's ids (the store's snapshots): enter it, or warn and go on.
    /// Root needs no namespace for that, with or without `CAP_SYS_ADMIN`.
    Files,
    /// A sandbox (RUN, `kiln run`): enter it, or fail.
    Sandbox,
}

/// Enters kiln's user namespace when `need` asks for what kiln cannot do as it is, then probes
/// and installs the privileges. Must run while the process has one thread.
pub fn setup(need: Need) -> anyhow::Result<&'static Privileges> {
    let root = privileges::effective_uid_is_root();
    let enter = match need {
        Need::Nothing => false,
        Need::Files => !root,
        Need::Sandbox => !privileges::can_mount(),
    };
    if enter {
        let who = match root {
            true => "as root without CAP_SYS_ADMIN",
            false => "as a non-root user",
        };
        match privileges::enter_user_namespace() {
            Ok(entered) => {
                if let Some(warning) = &entered.warning {
                    eprintln!("warning: {warning}");
                }
            }
            Err(e) if need == Need::Sandbox => {
                return Err(anyhow::Error::new(e).context(format!(
                    "kiln needs a user namespace of its own to run {who}"
                )));
            }
            Err(e) => eprintln!(
                "warning: {:#}; continuing as an unprivileged user: snapshots keep your own ids",
                anyhow::Error::new(e)
            ),
        }
    }
    let privileges = privileges::install(Privileges::probe());
    if !privileges.fresh_proc && need == Need::Sandbox {
        eprintln!(
            "warning: this container's /proc has masked paths, so RUN steps get it bound \
             instead of one of their own: they see the container's processes (their own still \
             end with the step); unmask /proc for full isolation (Kubernetes: `procMount: \
             Unmasked` with `hostUsers: false`; podman: `--security-opt unmask=ALL`)"
        );
    }
    Ok(privileges)
}

/// A note for a RUN that failed on something a user namespace does not allow, when kiln runs
/// without root; `None` otherwise.
pub fn note_for_failed_run(output: &[String]) -> Option<String> {
    let denied = output
        .iter()
        .any(|line| line.contains("Operation not permitted") || line.contains("Invalid argument"));
    if !denied {
        return None;
    }
    privileges::current().run_limits()
}
