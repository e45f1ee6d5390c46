//! `kiln import --change`: Dockerfile instructions applied to an image config, as
//! `docker import --change` (Docker's `BuildFromConfig`) applies them.
//!
//! The changes are joined with newlines and parsed as one Dockerfile by kiln's own front end,
//! so the syntax (JSON and shell forms, quoting, line continuations) is exactly the
//! Dockerfile's. The instructions docker accepts here are applied in order: CMD, ENTRYPOINT,
//! ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR; any other is an
//! error naming it. Words are expanded with the config's ENV as it stands at that change, as a
//! Dockerfile would expand them; CMD and ENTRYPOINT are not expanded (their shell does that).

use anyhow::{anyhow, bail};
use kiln_builder::dockerfile::instructions::{
    Command, Expander, Healthcheck, Instruction, InstructionError,
};
use kiln_builder::dockerfile::shell::Lexer;
use kiln_builder::dockerfile::{Location, parse};
use kiln_builder::image::ContainerConfig;
use kiln_builder::image::config::Healthcheck as ConfigHealthcheck;

/// The instructions `--change` accepts, as docker lists them.
const ALLOWED: &str =
    "CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// The shell that shell-form CMD and ENTRYPOINT run under when SHELL never said otherwise.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Parses the `--change` values into instructions, refusing those docker refuses.
pub fn parse_changes(changes: &[String]) -> anyhow::Result<Vec<Instruction>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let text = changes.join("\n");
    let file = parse(&text).map_err(|e| anyhow!("invalid --change: {}", e.message))?;
    let mut out = Vec::new();
    for node in &file.instructions {
        let instruction =
            Instruction::from_node(node).map_err(|e| anyhow!("invalid --change: {}", e.message))?;
        match instruction {
            Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Env(_)
            | Instruction::Expose(_)
            | Instruction::Healthcheck(_)
            | Instruction::Label(_)
            | Instruction::OnBuild(_)
            | Instruction::StopSignal(_)
            | Instruction::User(_)
            | Instruction::Volume(_)
            | Instruction::Workdir(_) => out.push(instruction),
            other => bail!(
                "{} is not a valid --change instruction (allowed: {ALLOWED})",
                other.keyword()
            ),
        }
    }
    Ok(out)
}

/// Expands words against the config's `Env` (`KEY=value` entries).
struct EnvExpander<'a> {
    lexer: Lexer,
    env: &'a Vec<String>,
}

impl Expander for EnvExpander<'_> {
    fn word(&mut self, word: &str) -> Result<String, InstructionError> {
        self.lexer
            .process_word(word, self.env)
            .map_err(|e| instruction_error(e.to_string()))
    }

    fn words(&mut self, word: &str) -> Result<Vec<String>, InstructionError> {
        self.lexer
            .process_words(word, self.env)
            .map_err(|e| instruction_error(e.to_string()))
    }
}

fn instruction_error(message: String) -> InstructionError {
    InstructionError {
        message,
        location: Location::default(),
    }
}

/// Applies `changes` in order to `config`.
pub fn apply(config: &mut ContainerConfig, changes: &[Instruction]) -> anyhow::Result<()> {
    // ENTRYPOINT clears a CMD unless a CMD came earlier in these same changes.
    let mut cmd_set = false;
    for change in changes {
        let mut change = change.clone();
        let env = config.env.clone();
        let mut expander = EnvExpander {
            lexer: Lexer::new('\\'),
            env: &env,
        };
        change
            .expand(&mut expander)
            .map_err(|e| anyhow!("--change {}: {}", change.keyword(), e.message))?;
        match change {
            Instruction::Cmd(command) => {
                config.cmd = Some(command_line(config, &command));
                cmd_set = true;
            }
            Instruction::Entrypoint(command) => {
                config.entrypoint = Some(command_line(config, &command));
                if !cmd_set {
                    config.cmd = None;
                }
            }
            Instruction::Env(pairs) => {
                for kv in pairs {
                    set_env(&mut config.env, &kv.key, &kv.value);
                }
            }
            Instruction::Label(pairs) => {
                for kv in pairs {
                    config.labels.insert(kv.key, kv.value);
                }
            }
            Instruction::Expose(ports) => {
                for port in ports {
                    config.exposed_ports.extend(port_spec(&port)?);
                }
            }
            Instruction::Volume(paths) => config.volumes.extend(paths),
            Instruction::User(user) => config.user = user,
            Instruction::Workdir(dir) => config.working_dir = workdir(&config.working_dir, &dir),
            Instruction::StopSignal(signal) => {
                if !is_signal(&signal) {
                    bail!("--change STOPSIGNAL: invalid signal: {signal}");
                }
                config.stop_signal = signal;
            }
            Instruction::Healthcheck(check) => config.healthcheck = Some(healthcheck(check)?),
            Instruction::OnBuild(trigger) => config.on_build.push(trigger),
            other => bail!("{} is not a valid --change instruction", other.keyword()),
        }
    }
    Ok(())
}

/// The argv of CMD or ENTRYPOINT: shell form runs under the config's SHELL.
fn command_line(config: &ContainerConfig, command: &Command) -> Vec<String> {
    if !command.prepend_shell {
        return command.args.clone();
    }
    let mut argv: Vec<String> = if config.shell.is_empty() {
        DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect()
    } else {
        config.shell.clone()
    };
    argv.extend(command.args.iter().cloned());
    argv
}

/// Sets `key` in `KEY=value` entries, in place if present, else at the end.
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

/// One EXPOSE word as docker's `nat.ParsePortSpecs` reads it: `80`, `80/udp`, `8000-8002`.
fn port_spec(spec: &str) -> anyhow::Result<Vec<String>> {
    let invalid = || anyhow!("--change EXPOSE: invalid port {spec:?}");
    let (ports, proto) = match spec.split_once('/') {
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid());
    }
    if ports.contains(':') {
        bail!("--change EXPOSE: {spec:?}: EXPOSE does not support an IP address or host port");
    }
    let parse = |p: &str| p.parse::<u16>().map_err(|_| invalid());
    let (low, high) = match ports.split_once('-') {
        Some((low, high)) => (parse(low)?, parse(high)?),
        None => (parse(ports)?, parse(ports)?),
    };
    if high < low {
        return Err(invalid());
    }
    Ok((low..=high).map(|p| format!("{p}/{proto}")).collect())
}

/// WORKDIR: a relative path is joined to the current one; the result is cleaned.
fn workdir(current: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_owned()
    } else {
        format!("/{current}/{dir}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether docker's `signal.ParseSignal` accepts `s`: a non-zero number, or a Linux signal
/// name in any case, with or without `SIG` (`RTMIN+3` included).
fn is_signal(s: &str) -> bool {
    const NAMES: [&str; 34] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
    ];
    if let Ok(n) = s.parse::<i64>() {
        return n != 0;
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if NAMES.contains(&name) || name == "XFSZ" || name == "RTMIN" || name == "RTMAX" {
        return true;
    }
    let offset = |rest: &str| rest.parse::<u32>().is_ok_and(|n| (1..=15).contains(&n));
    name.strip_prefix("RTMIN+").is_some_and(offset)
        || name.strip_prefix("RTMAX-").is_some_and(offset)
}

/// HEALTHCHECK as the config stores it.
fn healthcheck(check: Healthcheck) -> anyhow::Result<ConfigHealthcheck> {
    let nanos =
        |n: u64| i64::try_from(n).map_err(|_| anyhow!("--change HEALTHCHECK: duration too long"));
    Ok(match check {
        Healthcheck::None => ConfigHealthcheck {
            test: vec!["NONE".to_owned()],
            ..ConfigHealthcheck::default()
        },
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => ConfigHealthcheck {
            test,
            interval: nanos(interval)?,
            timeout: nanos(timeout)?,
            start_period: nanos(start_period)?,
            start_interval: nanos(start_interval)?,
            retries: i64::try_from(retries)
                .map_err(|_| anyhow!("--change HEALTHCHECK: too many retries"))?,
            ..ConfigHealthcheck::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> anyhow::Result<ContainerConfig> {
        let changes: Vec<String> = changes.iter().map(|s| (*s).to_owned()).collect();
        let mut config = ContainerConfig::default();
        apply(&mut config, &parse_changes(&changes)?)?;
        Ok(config)
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn changes_apply_as_in_a_dockerfile() {
        let config = applied(&[
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "ENV A=1 B=\"two words\"",
            "ENV C=$A-${B}",
            "ENV A=3",
            "WORKDIR /app",
            "WORKDIR sub/../src",
            "USER 1000:1000",
            "EXPOSE 80 53/udp 8000-8002",
            "LABEL org.example.version=$A \"with space\"=yes",
            "VOLUME /data [\"/other\"]",
            "STOPSIGNAL SIGTERM",
            "HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost",
            "ONBUILD RUN echo triggered",
        ])
        .unwrap();
        assert_eq!(config.cmd, Some(strings(&["/bin/sh", "-c", "echo hi"])));
        assert_eq!(
            config.env,
            strings(&["A=3", "B=two words", "C=1-two words"])
        );
        assert_eq!(config.working_dir, "/app/src");
        assert_eq!(config.user, "1000:1000");
        assert_eq!(
            config.exposed_ports.iter().cloned().collect::<Vec<_>>(),
            strings(&["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"])
        );
        assert_eq!(
            config.labels["org.example.version"], "3",
            "expanded with ENV as it stands"
        );
        assert_eq!(config.labels["with space"], "yes");
        assert_eq!(config.volumes.len(), 2, "{:?}", config.volumes);
        assert_eq!(config.stop_signal, "SIGTERM");
        let check = config.healthcheck.unwrap();
        assert_eq!(check.test, strings(&["CMD-SHELL", "wget -q localhost"]));
        assert_eq!(check.interval, 5_000_000_000);
        assert_eq!(check.retries, 2);
        assert_eq!(config.on_build, strings(&["RUN echo triggered"]));
    }

    #[test]
    fn entrypoint_clears_cmd_unless_set_by_an_earlier_change() {
        let config = applied(&["ENTRYPOINT top -b"]).unwrap();
        assert_eq!(
            config.entrypoint,
            Some(strings(&["/bin/sh", "-c", "top -b"]))
        );
        assert_eq!(config.cmd, None);
        let config = applied(&["CMD [\"-b\"]", "ENTRYPOINT [\"top\"]"]).unwrap();
        assert_eq!(config.entrypoint, Some(strings(&["top"])));
        assert_eq!(config.cmd, Some(strings(&["-b"])));
        let config = applied(&["HEALTHCHECK NONE"]).unwrap();
        assert_eq!(config.healthcheck.unwrap().test, strings(&["NONE"]));
    }

    #[test]
    fn refused_changes_name_the_problem() {
        let table: [(&str, &str); 8] = [
            ("RUN echo hi", "RUN is not a valid --change instruction"),
            ("FROM busybox", "FROM is not a valid --change instruction"),
            (
                "SHELL [\"/bin/bash\"]",
                "SHELL is not a valid --change instruction",
            ),
            ("CMDD x", "invalid --change: "),
            ("EXPOSE 80/xyz", "invalid port \"80/xyz\""),
            ("EXPOSE 127.0.0.1:80:80", "EXPOSE does not support"),
            ("STOPSIGNAL SIGNOPE", "invalid signal: SIGNOPE"),
            ("ENV", "invalid --change: "),
        ];
        for (change, expected) in table {
            let err = applied(&[change]).unwrap_err().to_string();
            assert!(err.contains(expected), "{change}: {err}");
        }
    }

    #[test]
    fn signals_and_workdirs() {
        for ok in [
            "9",
            "65",
            "KILL",
            "kill",
            "SIGKILL",
            "SIGRTMIN+3",
            "RTMAX-1",
            "sigwinch",
        ] {
            assert!(is_signal(ok), "{ok}");
        }
        for bad in ["0", "SIGFOO", "RTMIN+16", "", "9x"] {
            assert!(!is_signal(bad), "{bad}");
        }
        let table = [
            ("", "/x", "/x"),
            ("", "x", "/x"),
            ("/a", "b/../c", "/a/c"),
            ("/a", "../../..", "/"),
            ("/a", "/b/./c/", "/b/c"),
        ];
        for (current, dir, expected) in table {
            assert_eq!(workdir(current, dir), expected, "{current} {dir}");
        }
    }
}
