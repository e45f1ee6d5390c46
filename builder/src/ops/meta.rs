//! Metadata operations: what ENV, LABEL, CMD, ENTRYPOINT, USER, WORKDIR, EXPOSE, VOLUME,
//! STOPSIGNAL, SHELL, HEALTHCHECK, MAINTAINER, ONBUILD and ARG do to the image config, and the
//! history entry each one writes, as BuildKit's `dockerfile2llb` dispatch does.
//!
//! Instructions arrive lowered ([`MetaOp`], see [`crate::plan::lower`]): expanded, and their
//! ports, signal and health check validated. The rules people
//! trip over are kept on purpose: ENTRYPOINT clears an inherited CMD unless this stage set one;
//! CMD sets `ArgsEscaped`; shell forms run through the image's SHELL (default `/bin/sh -c`);
//! WORKDIR is joined to the previous one and cleaned; ONBUILD adds a trigger and no history.
//! History strings are BuildKit's, Go formatting included (`CMD ["/bin/sh" "-c" "x"]`).

use std::fmt::Write as _;

use crate::dockerfile::parser::go_quote;
use crate::image::{Healthcheck, History, ImageConfig};
use crate::plan::{CommandLine, MetaOp};

/// The comment BuildKit puts on every history entry of a Dockerfile build.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// A metadata instruction with a value the image cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// `EXPOSE` of something that is not `port[/proto]` or a range.
    #[error("invalid containerPort: {0}")]
    InvalidPort(String),
    /// `EXPOSE 80/icmp`.
    #[error("invalid proto: {0}")]
    InvalidProto(String),
    /// `STOPSIGNAL SIGFOO`.
    #[error("Invalid signal: {0}")]
    InvalidSignal(String),
    /// `WORKDIR` with nothing left after expansion.
    #[error("WORKDIR requires a non-empty path")]
    EmptyWorkdir,
    /// An instruction that changes the filesystem was given to the metadata op.
    #[error("{0} is not a metadata instruction")]
    NotMetadata(&'static str),
}

/// What a metadata instruction did besides changing the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The history entry it records (ONBUILD records none).
    pub created_by: Option<String>,
    /// For WORKDIR other than `/`: the directory to create (a layer).
    pub workdir: Option<String>,
}

/// A stage's image config while its instructions are applied.
#[derive(Debug, Clone)]
pub struct ImageState {
    /// The config being built.
    pub config: ImageConfig,
    /// Whether this stage set CMD (then a later ENTRYPOINT keeps it).
    cmd_set: bool,
    /// The `created` time of new history entries (`SOURCE_DATE_EPOCH` or the build's start).
    created: Option<String>,
}

impl ImageState {
    /// Starts from a base image's config (or an empty one for `scratch`).
    pub fn new(config: ImageConfig, created: Option<String>) -> Self {
        ImageState {
            config,
            cmd_set: false,
            created,
        }
    }

    /// The shell that shell-form commands run under.
    pub fn shell(&self) -> Vec<String> {
        crate::exec::shell_or_default(&self.config.config.shell)
    }

    /// A shell-form command line: the shell followed by the command text.
    pub fn with_shell(&self, args: &[String]) -> Vec<String> {
        let mut argv = self.shell();
        argv.push(args.join(" "));
        argv
    }

    /// Appends a history entry. Steps that ran in the build (RUN, COPY, ADD) get BuildKit's
    /// ` # buildkit` suffix.
    pub fn commit(&mut self, created_by: String, with_layer: bool, buildkit_step: bool) {
        let created_by = if buildkit_step {
            format!("{created_by} # buildkit")
        } else {
            created_by
        };
        self.config.history.push(History {
            created: self.created.clone(),
            created_by: Some(created_by),
            comment: Some(HISTORY_COMMENT.to_owned()),
            empty_layer: !with_layer,
            ..History::default()
        });
    }

    /// Records `ARG` in history with the values it got (`ARG a=1 b`).
    pub fn commit_arg(&mut self, resolved: &[(String, Option<String>)]) {
        let parts: Vec<String> = resolved
            .iter()
            .map(|(name, value)| match value {
                Some(v) => format!("{name}={v}"),
                None => name.clone(),
            })
            .collect();
        self.commit(format!("ARG {}", parts.join(" ")), false, false);
    }

    /// Applies a metadata op to the config and records its history entry. WORKDIR returns the
    /// directory the caller must create (a layer, unless it is `/`).
    pub fn apply(&mut self, op: &MetaOp) -> Option<String> {
        let change = self.change(op);
        if let Some(created_by) = change.created_by {
            let with_layer = change.workdir.is_some();
            self.commit(created_by, with_layer, false);
        }
        change.workdir
    }

    /// Applies a metadata op to the config only (`kiln import --change` records no history),
    /// returning what [`ImageState::apply`] records.
    pub fn change(&mut self, op: &MetaOp) -> Change {
        let line = |state: &Self, line: &CommandLine| match line {
            CommandLine::Exec(args) => args.clone(),
            CommandLine::Shell(text) => state.with_shell(std::slice::from_ref(text)),
        };
        let created_by = match op {
            MetaOp::Env(pairs) => {
                let mut message = String::from("ENV");
                for (key, value) in pairs {
                    let _ = write!(message, " {key}={value}");
                    set_env(&mut self.config.config.env, key, value);
                }
                message
            }
            MetaOp::Label(pairs) => {
                let mut message = String::from("LABEL");
                for (key, value) in pairs {
                    let _ = write!(message, " {key}={value}");
                    self.config.config.labels.insert(key.clone(), value.clone());
                }
                message
            }
            MetaOp::Maintainer(name) => {
                self.config.author = Some(name.clone());
                format!("MAINTAINER {name}")
            }
            MetaOp::Cmd(command) => {
                let args = line(self, command);
                let cfg = &mut self.config.config;
                cfg.cmd = Some(args.clone());
                cfg.args_escaped = true;
                self.cmd_set = true;
                format!("CMD {}", go_list(&args))
            }
            MetaOp::Entrypoint(command) => {
                let args = line(self, command);
                let cfg = &mut self.config.config;
                cfg.entrypoint = Some(args.clone());
                if !self.cmd_set {
                    cfg.cmd = None;
                }
                format!("ENTRYPOINT {}", go_list(&args))
            }
            MetaOp::Healthcheck(health) => {
                self.config.config.healthcheck = Some(health.clone());
                format!("HEALTHCHECK {}", go_health(health))
            }
            MetaOp::Expose(ports) => {
                let cfg = &mut self.config.config;
                cfg.exposed_ports.extend(ports.iter().cloned());
                let shown: Vec<String> = ports.iter().map(|p| format!("{p}:{{}}")).collect();
                format!("EXPOSE map[{}]", shown.join(" "))
            }
            MetaOp::User(user) => {
                self.config.config.user = user.clone();
                format!("USER {user}")
            }
            MetaOp::Volume(paths) => {
                self.config.config.volumes.extend(paths.iter().cloned());
                format!("VOLUME [{}]", paths.join(" "))
            }
            MetaOp::StopSignal(signal) => {
                self.config.config.stop_signal = signal.clone();
                format!("STOPSIGNAL {signal}")
            }
            MetaOp::Shell(shell) => {
                self.config.config.shell = shell.clone();
                format!("SHELL [{}]", shell.join(" "))
            }
            MetaOp::OnBuild(expression) => {
                self.config.config.on_build.push(expression.clone());
                return Change {
                    created_by: None,
                    workdir: None,
                };
            }
            MetaOp::Workdir(path) => {
                let cfg = &mut self.config.config;
                let joined = if path.starts_with('/') {
                    path.clone()
                } else {
                    format!("/{}/{path}", cfg.working_dir)
                };
                let dir = crate::ignore::clean(&joined);
                cfg.working_dir = dir.clone();
                // BuildKit creates the directory (a layer) unless it is the root; the entry has
                // no ` # buildkit` suffix because it is committed without a state.
                return Change {
                    created_by: Some(format!("WORKDIR {dir}")),
                    workdir: (dir != "/").then_some(dir),
                };
            }
        };
        Change {
            created_by: Some(created_by),
            workdir: None,
        }
    }
}

/// Docker's `addEnv`: replaces the variable in place, or appends it.
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%q` of the healthcheck struct pointer BuildKit formats: test list, the durations as
/// quoted `time.Duration` strings, and the retry count as a quoted character.
fn go_health(h: &Healthcheck) -> String {
    let d = |n: i64| go_quote(&go_duration(n));
    let retries = u32::try_from(h.retries)
        .ok()
        .and_then(char::from_u32)
        .map_or_else(
            || format!("%!q(int={})", h.retries),
            |c| match c {
                '\'' => "'\\''".to_owned(),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("'\\x{:02x}'", c as u32),
                c => format!("'{c}'"),
            },
        );
    format!(
        "&{{{} {} {} {} {} {retries}}}",
        go_list(&h.test),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
        d(h.start_interval)
    )
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `2h0m0s`, `300ms`, `10µs`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let fraction = |value: u64, unit: u64| -> String {
        let whole = value / unit;
        let mut frac = format!("{:0width$}", value % unit, width = unit.ilog10() as usize);
        while frac.ends_with('0') {
            frac.pop();
        }
        if frac.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{frac}")
        }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", fraction(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", fraction(n, 1_000_000));
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let seconds = fraction((secs % 60) * 1_000_000_000 + sub, 1_000_000_000);
    let (hours, minutes) = (secs / 3600, (secs / 60) % 60);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// docker's `nat.ParsePortSpec` for EXPOSE: `port[/proto]` or `start-end[/proto]` (an
/// `ip:host:` prefix is allowed and ignored), giving `port/proto` keys.
pub fn parse_port_spec(spec: &str) -> Result<Vec<String>, MetaError> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(MetaError::InvalidProto(proto));
    }
    let container = port.rsplit(':').next().unwrap_or(port);
    let invalid = || MetaError::InvalidPort(container.to_owned());
    let number = |s: &str| s.parse::<u16>().map_err(|_| invalid());
    let (start, end) = match container.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let p = number(container)?;
            (p, p)
        }
    };
    if start > end {
        return Err(invalid());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// The signal names Linux knows (docker's `SignalMap`), without the `SIG` prefix.
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// docker's `signal.ParseSignal`: a non-zero number, or a name with or without `SIG`
/// (`RTMIN+3` and `RTMAX-2` included).
pub fn parse_signal(signal: &str) -> Result<(), MetaError> {
    let invalid = || MetaError::InvalidSignal(signal.to_owned());
    if let Ok(n) = signal.parse::<i64>() {
        return if n == 0 { Err(invalid()) } else { Ok(()) };
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |prefix: &str, sep: char| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(sep))
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=15).contains(&n) && !(prefix == "RTMAX" && n == 15))
    };
    if SIGNALS.contains(&name) || realtime("RTMIN", '+') || realtime("RTMAX", '-') {
        Ok(())
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
