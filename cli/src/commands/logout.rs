//! `kiln logout [SERVER]`: forget a registry's credentials in the docker config (and its
//! credential helper), as `docker logout` does.

use std::process::ExitCode;

use clap::Args;
use kiln_registry::DockerConfig;
use kiln_registry::credentials::server_key;

use super::Global;
use super::login::server_name;

/// `kiln logout` arguments.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (default: Docker Hub).
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

/// Runs `kiln logout`.
pub fn run(_global: &Global, args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let server = server_name(args.server.as_deref())?;
    let path = DockerConfig::default_path()?;
    let mut config = DockerConfig::load(&path)?;
    if config.erase(&server)? {
        config.save()?;
        println!("Removing login credentials for {}", server_key(&server));
    } else {
        println!("Not logged in to {}", server_key(&server));
    }
    Ok(ExitCode::SUCCESS)
}
