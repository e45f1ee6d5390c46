//! `kiln run`: runs an image from the store in the RUN sandbox, on a writable root that is thrown
//! away afterwards, the way `docker run --rm` does.
//!
//! The image's layers are unpacked as snapshots (shared with builds) and stacked into a
//! throwaway root, which is never committed. The command is the image's Entrypoint and Cmd as
//! docker combines them (see `kiln_builder::exec::image`). Its standard output and error go to
//! kiln's, line by line as they come; standard input is `/dev/null`: `-i` and `-t` (docker's
//! interactive terminal) are refused with an error rather than ignored.
//! The exit code is the command's (128 + N when killed by signal N); errors of kiln itself exit
//! with 125, a command that does not exist with 127 and one that cannot be executed with 126,
//! as docker's. SIGINT, SIGTERM and SIGHUP kill the command's whole process tree, remove the
//! root and exit with 128 + the signal, so Ctrl-C leaves no process and no mount behind.
//! kiln keeps no containers: every run is `--rm`. Of a multi-platform image, `--platform`'s
//! image runs (the host's by default); one for another CPU runs under QEMU, and without an
//! emulator registered kiln says which to install rather than failing to exec.

use std::io;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, ValueEnum};
use kiln_builder::exec::binfmt;
use kiln_builder::exec::image::{ImageRun, Passthrough, create_volume_dirs};
use kiln_builder::exec::{self, Canceller, ExecError, ExecOptions, Mount, MountKind, RunSpec};
use kiln_builder::plan::Platform;
use kiln_builder::snapshot::Snapshots;

use super::{Global, lookup};

/// The exit code of errors of kiln itself (docker's for errors of its daemon).
const KILN_ERROR: u8 = 125;

/// `kiln run` arguments (docker run's names).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Accepted for docker compatibility: kiln keeps no containers, every run is removed.
    #[arg(long)]
    rm: bool,
    /// Set an environment variable; `NAME` alone takes the host's value (or removes it).
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// Run as this user (`name`, `uid`, `name:group` or `uid:gid`) instead of the image's.
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,
    /// Start in this directory (absolute; created when missing) instead of the image's.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// The network: the host's, or none (only loopback).
    #[arg(long, value_enum, default_value_t = Network::Host)]
    network: Network,
    /// A line for /etc/hosts: `HOST:IP` or `HOST=IP` (repeatable).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_hosts: Vec<kiln_builder::exec::ExtraHost>,
    /// Run this instead of the image's entrypoint (and without its CMD); "" for none.
    #[arg(long, value_name = "COMMAND")]
    entrypoint: Option<String>,
    /// Keep standard input open: not supported yet, refused (standard input is `/dev/null`).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a terminal: not supported yet, refused (the output goes to kiln's streams).
    #[arg(short = 't', long)]
    tty: bool,
    /// The platform's image of a multi-platform image, `os/arch[/variant]` (default: the
    /// host's, else the first); another CPU's runs under QEMU registered in binfmt_misc.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Bind-mount a host directory or file: `/host/path:/path[:ro|rw]`.
    #[arg(short = 'v', long = "volume", value_name = "HOST:PATH[:ro]")]
    volumes: Vec<String>,
    /// The image: a name or an image ID.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The command and its arguments, replacing the image's CMD.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Network {
    /// The host's network namespace (what RUN gets during a build).
    Host,
    /// A network namespace of its own with only `lo`.
    None,
}

/// Runs `kiln run`. Its own errors are printed here, to exit with 125 as docker does.
pub fn run(global: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    match run_image(global, args) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(err) => {
            eprintln!("error: {err:#}");
            let code = err.downcast_ref::<ExecError>().map_or(KILN_ERROR, |e| {
                u8::try_from(e.exit_code()).unwrap_or(KILN_ERROR)
            });
            Ok(ExitCode::from(code))
        }
    }
}

fn run_image(global: &Global, args: RunArgs) -> anyhow::Result<u8> {
    let _ = args.rm;
    if args.interactive || args.tty {
        bail!(
            "-i/-t (an interactive terminal) is not supported yet: the command's standard input \
             is /dev/null and its output goes to kiln's; give the command instead, \
             e.g. `kiln run {} sh -c '…'`",
            args.image
        );
    }
    let platform = args
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()
        .context("--platform")?;
    let env = args
        .env
        .iter()
        .map(|e| parse_env(e, |k| std::env::var(k).ok()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mounts = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let overrides = ImageRun {
        args: args.command,
        entrypoint: args.entrypoint,
        env,
        user: args.user,
        workdir: args.workdir,
        network: match args.network {
            Network::Host => exec::NetworkMode::Host,
            Network::None => exec::NetworkMode::None,
        },
        mounts,
        extra_hosts: args.add_hosts,
    };

    // First: from here on a stop signal unwinds through the cleanup below instead of ending
    // kiln with a mount in place.
    let cancel = Canceller::new();
    let stop = crate::interrupt::cancel_on_signals(&cancel).context("handling stop signals")?;
    let store = global.store()?;
    // Held while the image runs: gc must not take its snapshots from under it.
    let _lease = store.lease().context("taking a lease on the store")?;
    let target = lookup::find(&store, &args.image)?.ok_or_else(|| no_such_image(&args.image))?;
    let image = lookup::describe_for(&store, &target.first_tag().descriptor, platform.as_ref())
        .with_context(|| format!("choosing the image of {}", args.image))?;
    let config = &image.config;
    let image_platform = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
    binfmt::check(&image_platform)?;
    let spec = RunSpec::for_image(&image.config.config, &overrides)?;
    let snapshots =
        Snapshots::open(&store, &Default::default()).context("opening the snapshots")?;
    let chain = snapshots
        .unpack_image(&store, &image.manifest, &image.config.rootfs.diff_ids)
        .with_context(|| format!("unpacking {}", args.image))?;
    let root = snapshots
        .mutable(&chain)
        .context("preparing the root filesystem")?;
    create_volume_dirs(root.root(), &image.config.config.volumes, &spec.mounts)?;

    let mut output = Passthrough::new(io::stdout().lock(), io::stderr().lock());
    let mut reader_gone = false;
    let result = exec::run(
        root.root(),
        &spec,
        &ExecOptions::new(store.tmp_dir()),
        &mut |stream, piece| {
            // A reader that went away (`kiln run … | head`) ends the command, as SIGPIPE would.
            if output.write(stream, piece).is_err() && !reader_gone {
                reader_gone = true;
                cancel.cancel();
            }
        },
        &cancel,
    );
    drop(output);
    drop(root);
    let signal = stop.caught();
    match (result, signal) {
        (Err(ExecError::Cancelled), Some(sig)) => Ok(128 + u8::try_from(sig).unwrap_or(0)),
        (Err(ExecError::Cancelled), None) if reader_gone => Ok(128 + 13),
        (Ok(status), _) => Ok(u8::try_from(status.exit_code() & 0xff).unwrap_or(KILN_ERROR)),
        (Err(e), _) => Err(anyhow::Error::new(e).context(format!("running {}", args.image))),
    }
}

/// `No such image`, with a hint: kiln run never pulls.
fn no_such_image(arg: &str) -> anyhow::Error {
    anyhow!(
        "{} (kiln run does not pull: `kiln pull {arg}` first)",
        lookup::no_such_image(arg)
    )
}

/// `-e NAME=VALUE` sets, `-e NAME` takes the host's value (`host(NAME)`) or, when the host has
/// none, removes the variable (docker's rules).
fn parse_env(
    arg: &str,
    host: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, Option<String>)> {
    let (name, value) = match arg.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (arg, host(arg)),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("invalid environment variable: {arg}");
    }
    Ok((name.to_owned(), value))
}

/// `-v /host:/path[:ro|rw]`: a bind mount. Named volumes are not supported (kiln keeps none).
fn parse_volume(arg: &str) -> anyhow::Result<Mount> {
    let parts: Vec<&str> = arg.split(':').collect();
    let (host, target, read_only) = match parts.as_slice() {
        [host, target] => (*host, *target, false),
        [host, target, "ro"] => (*host, *target, true),
        [host, target, "rw"] => (*host, *target, false),
        [_, _, mode] => bail!("invalid mode {mode:?} in volume {arg}: use ro or rw"),
        _ => bail!("invalid volume {arg}: use /host/path:/path[:ro|rw]"),
    };
    if !host.starts_with('/') {
        bail!("invalid volume {arg}: the host path must be absolute (kiln has no named volumes)");
    }
    if !target.starts_with('/') {
        bail!("invalid volume {arg}: the path in the container must be absolute");
    }
    let source = std::fs::canonicalize(host).with_context(|| format!("volume {arg}: {host}"))?;
    Ok(Mount {
        target: target.to_owned(),
        kind: MountKind::Bind { source, read_only },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_flags() {
        let host = |k: &str| (k == "HOSTVAR").then(|| "from-host".to_owned());
        type Parsed = Option<(&'static str, Option<&'static str>)>;
        let table: [(&str, Parsed); 7] = [
            ("A=1", Some(("A", Some("1")))),
            ("A=", Some(("A", Some("")))),
            ("A=b=c", Some(("A", Some("b=c")))),
            ("HOSTVAR", Some(("HOSTVAR", Some("from-host")))),
            ("MISSING", Some(("MISSING", None))),
            ("=x", None),
            ("A B=1", None),
        ];
        for (arg, want) in table {
            let got = parse_env(arg, host).ok();
            let want = want.map(|(k, v)| (k.to_owned(), v.map(str::to_owned)));
            assert_eq!(got, want, "{arg}");
        }
    }

    #[test]
    fn volume_flags() {
        let tmp = std::env::temp_dir();
        let tmp = std::fs::canonicalize(tmp).unwrap();
        let t = tmp.to_str().unwrap();
        let table: [(String, Option<(&str, bool)>); 7] = [
            (format!("{t}:/data"), Some(("/data", false))),
            (format!("{t}:/data:ro"), Some(("/data", true))),
            (format!("{t}:/data:rw"), Some(("/data", false))),
            (format!("{t}:/data:xx"), None),
            (format!("{t}:data"), None),
            ("named:/data".to_owned(), None),
            (format!("{t}/does-not-exist-kiln:/data"), None),
        ];
        for (arg, want) in table {
            let got = parse_volume(&arg).ok().map(|m| match m.kind {
                MountKind::Bind { source, read_only } => {
                    assert_eq!(source, tmp, "{arg}");
                    (m.target, read_only)
                }
                other => panic!("{arg}: {other:?}"),
            });
            assert_eq!(got, want.map(|(t, ro)| (t.to_owned(), ro)), "{arg}");
        }
    }
}
