//! `RUN --mount=type=ssh`: the step gets a socket of its own that forwards every connection to
//! the user's SSH agent, so no key ever enters the sandbox, a layer or a cache key.
//!
//! The socket is made in a private directory under the system's temporary directory (a socket
//! path must stay under 108 bytes, which a store's path may not), with the mount's owner and mode
//! (BuildKit's defaults: 0:0, 0600, so a RUN under another USER can be given access), then
//! bind-mounted at the mount's target. A thread accepts connections and copies bytes both ways between each one
//! and a new connection to the agent; dropping the [`AgentProxy`] stops it and removes the
//! socket.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::ExecError;

/// A forwarding socket for one ssh mount of one RUN.
#[derive(Debug)]
pub struct AgentProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl AgentProxy {
    /// Listens on a new socket owned by `uid:gid` with `mode`, forwarding to the agent
    /// listening at `agent`.
    pub fn start(agent: &Path, uid: u32, gid: u32, mode: u32) -> Result<Self, ExecError> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-ssh-")
            .tempdir()
            .map_err(|source| ExecError::Io {
                op: "create",
                path: std::env::temp_dir(),
                source,
            })?;
        let path = dir.path().join("agent.sock");
        let io_err = |op: &'static str| {
            let path = path.clone();
            move |source| ExecError::Io { op, path, source }
        };
        // Refuse early, with the agent's path, rather than in the step.
        UnixStream::connect(agent).map_err(|source| ExecError::Io {
            op: "connect to the SSH agent at",
            path: agent.to_owned(),
            source,
        })?;
        let listener = UnixListener::bind(&path).map_err(io_err("bind"))?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(io_err("chown"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let agent = agent.to_owned();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let agent = agent.clone();
                    // One thread per connection: ssh opens one or two per command.
                    std::thread::spawn(move || {
                        let _ = forward(client, &agent);
                    });
                }
            })
        };
        Ok(Self {
            path,
            stop,
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// The socket to mount.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop, which then sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies bytes between `client` and a new connection to the agent until either side closes.
fn forward(client: UnixStream, agent: &Path) -> io::Result<()> {
    let upstream = UnixStream::connect(agent)?;
    let (mut client_r, mut upstream_w) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut client_r, &mut upstream_w);
        let _ = upstream_w.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_r, mut client_w) = (upstream, client);
    let _ = io::copy(&mut upstream_r, &mut client_w);
    let _ = client_w.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}
