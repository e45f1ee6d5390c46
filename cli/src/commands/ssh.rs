//! `kiln build --ssh`: the SSH agents `RUN --mount=type=ssh` forwards, by id, as buildx spells
//! them: `default` or `ID` alone (the agent of `$SSH_AUTH_SOCK`), `ID=SOCKET` (that agent), or
//! `ID=KEY[,KEY…]` (a private `ssh-agent` kiln starts with those keys and stops after the
//! build). Keys stay in the agent: the sandbox only gets a socket (see
//! `kiln_builder::exec::AgentProxy`).

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The agents of one build; the ones kiln started stop when this is dropped.
#[derive(Debug, Default)]
pub struct Agents {
    /// The agent socket for each id.
    pub sockets: BTreeMap<String, PathBuf>,
    started: Vec<StartedAgent>,
}

/// An `ssh-agent` kiln runs in the foreground (`-D`) in a private directory.
#[derive(Debug)]
struct StartedAgent {
    child: Child,
    /// Holds the agent's socket; removed when the agent stops.
    dir: tempfile::TempDir,
}

impl Drop for StartedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resolves every `--ssh` value, starting agents for key files.
pub fn agents(specs: &[String]) -> anyhow::Result<Agents> {
    let mut agents = Agents::default();
    for spec in specs {
        let (id, paths) = match spec.split_once('=') {
            Some((id, paths)) => (id, paths.split(',').filter(|p| !p.is_empty()).collect()),
            None => (spec.as_str(), Vec::new()),
        };
        if id.is_empty() {
            bail!("--ssh {spec:?}: an id is required (default, or ID=SOCKET|KEY…)");
        }
        if agents.sockets.contains_key(id) {
            bail!("--ssh {id} is given twice");
        }
        let socket = match paths.as_slice() {
            [] => PathBuf::from(std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).with_context(
                || format!("--ssh {id}: SSH_AUTH_SOCK is not set; start an agent, or give a socket or key: --ssh {id}=~/.ssh/id_ed25519"),
            )?),
            [one] if is_socket(Path::new(one)) => PathBuf::from(one),
            keys => {
                let started = start_agent(id, keys)?;
                let socket = started.dir.path().join("agent.sock");
                agents.started.push(started);
                socket
            }
        };
        agents.sockets.insert(id.to_owned(), socket);
    }
    Ok(agents)
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Starts `ssh-agent -D -a SOCKET` and adds `keys` to it with `ssh-add`.
fn start_agent(id: &str, keys: &[&str]) -> anyhow::Result<StartedAgent> {
    let dir = tempfile::Builder::new()
        .prefix("kiln-ssh-agent-")
        .tempdir()
        .context("creating a directory for the SSH agent")?;
    let socket = dir.path().join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("--ssh {id}: starting ssh-agent for the keys (install openssh-client)")
        })?;
    let started = StartedAgent { child, dir };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_socket(&socket) {
        if Instant::now() > deadline {
            bail!("--ssh {id}: ssh-agent did not create its socket within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = Command::new("ssh-add")
        .args(keys)
        .env("SSH_AUTH_SOCK", &socket)
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("--ssh {id}: running ssh-add (install openssh-client)"))?;
    if !out.status.success() {
        bail!(
            "--ssh {id}: ssh-add {} failed: {} (a key with a passphrase needs an agent: \
             --ssh {id}=$SSH_AUTH_SOCK)",
            keys.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(started)
}
