//! `kiln login [SERVER]`: check credentials against a registry and record them in the docker
//! config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), in its credential helper
//! when one is configured, the way `docker login` does; so docker, podman, skopeo and kiln
//! share them.
//!
//! The password comes from `--password-stdin` (preferred) or `--password`; kiln never echoes
//! it, and the check happens before anything is written.

use std::io::Read as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_registry::{Credentials, DockerConfig, NoProgress, Reference, Registry};

use super::Global;
use super::pull::{ConnectArgs, runtime};

/// `kiln login` arguments (docker login's names).
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user name.
    #[arg(short, long)]
    username: Option<String>,
    /// The password (visible to other users of this machine: prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,
    #[command(flatten)]
    connect: ConnectArgs,
    /// The registry (default: Docker Hub).
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

/// Runs `kiln login`.
pub fn run(_global: &Global, args: LoginArgs) -> anyhow::Result<ExitCode> {
    let server = server_name(args.server.as_deref())?;
    let Some(username) = args.username.filter(|u| !u.is_empty()) else {
        bail!("a user name is required: use --username");
    };
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(p) = args.password {
        eprintln!("warning: --password is visible to other users; use --password-stdin");
        p
    } else {
        bail!("a password is required: use --password-stdin");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let credentials = Credentials::Basic { username, password };
    let registry = Registry::new(
        &server,
        Some(credentials.clone()),
        &args.connect.options(),
        Arc::new(NoProgress),
    )?;
    runtime()?
        .block_on(registry.check_login())
        .with_context(|| format!("logging in to {server}"))?;
    let path = DockerConfig::default_path()?;
    let mut config = DockerConfig::load(&path)?;
    config.store(&server, &credentials)?;
    config.save()?;
    if config.helper_for(&server).is_none() {
        eprintln!(
            "warning: the password is stored unencrypted in {}",
            path.display()
        );
    }
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// The registry a login or logout names, as references write it: a scheme and path are
/// dropped (`https://index.docker.io/v1/` is Docker Hub), and Docker Hub's aliases are
/// `docker.io`.
pub fn server_name(server: Option<&str>) -> anyhow::Result<String> {
    let Some(server) = server else {
        return Ok("docker.io".to_owned());
    };
    let bare = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = bare.split('/').next().unwrap_or_default();
    if matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        return Ok("docker.io".to_owned());
    }
    match Reference::parse(&format!("{host}/x")) {
        Ok(r) if r.registry() == host => Ok(host.to_owned()),
        _ => bail!("invalid registry name {server:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (None, Some("docker.io")),
            (Some("https://index.docker.io/v1/"), Some("docker.io")),
            (Some("registry-1.docker.io"), Some("docker.io")),
            (Some("localhost:5000"), Some("localhost:5000")),
            (Some("http://127.0.0.1:5000/"), Some("127.0.0.1:5000")),
            (Some("reg.example.com"), Some("reg.example.com")),
            (Some("not a host"), None),
            (Some("Nope_x"), None),
        ];
        for (input, expected) in cases {
            assert_eq!(server_name(*input).ok().as_deref(), *expected, "{input:?}");
        }
    }
}
