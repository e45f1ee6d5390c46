//! The sandbox's syscall seam: the only module of kiln with `unsafe` code.
//!
//! Everything here is a thin wrapper over one call that rustix does not offer safely: `fork`
//! (rustix has none by design), `unshare` (unsafe in rustix because of `CLONE_FILES`), signal
//! handlers that forward a signal to the sandboxed process, `close_range`, dropping a
//! capability from the bounding set, and bringing the loopback interface up with an ioctl. All of
//! it runs in the helper process (`init_entry`), which is single-threaded: it was just exec'd
//! and dispatches before anything could start a thread, and [`fork`] checks that before forking,
//! so the child may allocate and use std freely.
//!
//! In test builds an `.init_array` constructor runs `init_entry` before libtest's `main`, so a
//! unit-test binary can re-exec itself as the helper exactly as the `kiln` binary does.

#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::process::Pid;
use rustix::thread::UnshareFlags;

/// The result of [`fork`].
#[derive(Debug)]
pub(crate) enum Forked {
    /// In the new process.
    Child,
    /// In the caller; the child's pid.
    Parent(Pid),
}

/// Whether this process has exactly one thread.
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim() == "1"))
        })
        .unwrap_or(false)
}

/// `fork()`, refused unless the process is single-threaded.
pub(crate) fn fork() -> io::Result<Forked> {
    if !single_threaded() {
        return Err(io::Error::other(
            "refusing to fork a multi-threaded process",
        ));
    }
    // SAFETY: the process has one thread (checked above), so the child is an exact copy with no
    // lock held by a thread that does not exist in it; it may run any code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(
            Pid::from_raw(pid).ok_or_else(|| io::Error::other("fork returned pid 0"))?,
        )),
    }
}

/// `unshare(flags)`; `flags` must not contain `CLONE_FILES`.
pub(crate) fn unshare(flags: UnshareFlags) -> io::Result<()> {
    if flags.contains(UnshareFlags::FILES) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: rustix marks `unshare` unsafe only because `CLONE_FILES` could leave another
    // thread with file descriptors from a table it no longer shares; it is excluded above, and
    // the helper has a single thread anyway.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(Into::into)
}

/// Where forwarded signals go (0: nowhere yet).
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

/// The signals the helper and the sandbox's init pass on to their child.
pub(super) const FORWARDED: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes plain integers.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Installs handlers that forward [`FORWARDED`] signals to the pid set by [`forward_to`].
pub(super) fn install_forwarders() -> io::Result<()> {
    for sig in FORWARDED {
        set_handler(sig, forward as *const () as libc::sighandler_t)?;
    }
    Ok(())
}

/// Sets the pid forwarded signals go to.
pub(super) fn forward_to(pid: Pid) {
    FORWARD_TO.store(pid.as_raw_nonzero().get(), Ordering::SeqCst);
}

/// Restores the default action of the forwarded signals (in the child, before exec; exec
/// would, but a signal could arrive first).
pub(super) fn reset_forwarders() -> io::Result<()> {
    for sig in FORWARDED {
        set_handler(sig, libc::SIG_DFL)?;
    }
    Ok(())
}

fn set_handler(sig: i32, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid value (empty mask, no flags); the handler is either
    // SIG_DFL or `forward`, which only calls the async-signal-safe kill(2). SA_RESTART keeps
    // the waiting loops' blocking calls from failing with EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Closes every file descriptor from `first` up, or marks them close-on-exec when `cloexec`.
pub(super) fn close_from(first: u32, cloexec: bool) -> io::Result<()> {
    let flags = if cloexec {
        libc::CLOSE_RANGE_CLOEXEC as libc::c_int
    } else {
        0
    };
    // SAFETY: close_range only closes or flags descriptors; nothing in this process refers to
    // descriptors at or above `first` afterwards (the caller opens what it needs later).
    let r = unsafe { libc::close_range(first, u32::MAX, flags) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops from the bounding set every capability up to `last` that is not in `keep` (a mask of
/// capability numbers).
pub(super) fn drop_bounding_caps(keep: u64, last: u32) -> io::Result<()> {
    for cap in 0..=last.min(63) {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes an integer and changes only this process's bounding
        // set.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            // A number the kernel does not know.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Sets the `lo` interface of the current network namespace up (`SIOCSIFFLAGS`).
pub(super) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) returns a new descriptor or -1, which is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: ifreq is plain data, valid zeroed; the name fits IFNAMSIZ with its NUL; both
    // ioctls read and write exactly one ifreq, which lives for the calls.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            return Err(io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(raw, libc::SIOCSIFFLAGS, &ifr) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Ends a forked process at once: no destructors, no atexit handlers, no stdio flush of buffers
/// inherited from the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) never returns and touches no process state that could be inconsistent.
    unsafe { libc::_exit(code) }
}

/// Test builds: become the sandbox helper when exec'd as one, before libtest starts threads.
#[cfg(test)]
#[used]
#[unsafe(link_section = ".init_array")]
static RUN_HELPER_IN_TESTS: extern "C" fn() = {
    extern "C" fn helper() {
        if let Some(code) = super::init_entry() {
            std::process::exit(code);
        }
    }
    helper
};
