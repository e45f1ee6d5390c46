//! Running an image (`kiln run`): the [`RunSpec`] of an image's config with docker run's
//! overrides, the exit code docker would give, and the output passed through as bytes.
//!
//! The command is docker's: the Entrypoint followed by the Cmd, where command-line arguments
//! replace the Cmd and `--entrypoint` replaces the Entrypoint and drops the image's Cmd (an empty
//! `--entrypoint` leaves only the arguments). Shell-form CMD and ENTRYPOINT are already stored
//! as `/bin/sh -c …`, so nothing is parsed here. The environment is `HOSTNAME`, then the image's
//! Env, then `-e` (which may also remove a variable, as docker's `-e NAME` does when the host has
//! no `NAME`); PATH and HOME are added by [`super::run`] when still missing. User and working
//! directory come from the image unless overridden. Declared VOLUMEs that no `-v` covers are
//! created as directories in the (throwaway) root, where docker would put an anonymous volume.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::rootfs::clean_path;
use super::{
    DEFAULT_HOSTNAME, ExecError, ExitStatus, MAX_LINE, Mount, NetworkMode, RunSpec, Stream,
};
use crate::image::ContainerConfig;
use crate::layer::open_in_root;

/// What `kiln run` changes about an image's config (docker run's flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRun {
    /// The arguments after the image name: they replace the image's Cmd when given.
    pub args: Vec<String>,
    /// `--entrypoint`: replaces the image's Entrypoint (an empty one removes it) and drops the
    /// image's Cmd.
    pub entrypoint: Option<String>,
    /// `-e`, in order: `Some` sets the variable, `None` removes it.
    pub env: Vec<(String, Option<String>)>,
    /// `--user`, over the image's User.
    pub user: Option<String>,
    /// `-w`, over the image's WorkingDir; must be absolute.
    pub workdir: Option<String>,
    /// `--network`.
    pub network: NetworkMode,
    /// `-v`: host paths mounted into the run.
    pub mounts: Vec<Mount>,
    /// `--add-host`.
    pub extra_hosts: Vec<super::ExtraHost>,
}

impl RunSpec {
    /// The spec that runs an image whose config is `config`, changed by `run`.
    pub fn for_image(config: &ContainerConfig, run: &ImageRun) -> Result<Self, ExecError> {
        let args = image_argv(config, run);
        if args.is_empty() {
            return Err(ExecError::EmptyCommand);
        }
        let mut spec = Self::new(args);
        spec.hostname = DEFAULT_HOSTNAME.to_owned();
        spec.env = image_env(&config.env, &run.env, &spec.hostname);
        spec.user = run.user.clone().unwrap_or_else(|| config.user.clone());
        spec.cwd = match &run.workdir {
            Some(dir) if !dir.starts_with('/') => {
                return Err(ExecError::Workdir {
                    path: dir.clone(),
                    reason: "must be an absolute path",
                });
            }
            Some(dir) => dir.clone(),
            None if config.working_dir.is_empty() => "/".to_owned(),
            None => config.working_dir.clone(),
        };
        spec.network = run.network;
        spec.extra_hosts = run.extra_hosts.clone();
        spec.mounts = run.mounts.clone();
        Ok(spec)
    }
}

/// The command docker runs for an image: Entrypoint then Cmd, with `run`'s overrides.
pub fn image_argv(config: &ContainerConfig, run: &ImageRun) -> Vec<String> {
    let (entrypoint, cmd): (Vec<String>, &[String]) = match &run.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), &run.args),
        Some(e) => (vec![e.clone()], &run.args),
        None if run.args.is_empty() => (
            config.entrypoint.clone().unwrap_or_default(),
            config.cmd.as_deref().unwrap_or_default(),
        ),
        None => (config.entrypoint.clone().unwrap_or_default(), &run.args),
    };
    let mut argv = entrypoint;
    argv.extend(cmd.iter().cloned());
    argv
}

/// The environment: `HOSTNAME`, the image's `KEY=value` entries, then the overrides.
fn image_env(
    image: &[String],
    overrides: &[(String, Option<String>)],
    hostname: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![("HOSTNAME".to_owned(), hostname.to_owned())];
    let set = |env: &mut Vec<(String, String)>, key: &str, value: Option<&str>| {
        let at = env.iter().position(|(k, _)| k == key);
        match (at, value) {
            (Some(i), Some(v)) => env[i].1 = v.to_owned(),
            (None, Some(v)) => env.push((key.to_owned(), v.to_owned())),
            (Some(i), None) => {
                env.remove(i);
            }
            (None, None) => {}
        }
    };
    for entry in image {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        set(&mut env, k, Some(v));
    }
    for (k, v) in overrides {
        set(&mut env, k, v.as_deref());
    }
    env
}

impl ExitStatus {
    /// The exit code a shell (and docker) reports: the code, or 128 + the signal's number.
    pub fn exit_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

impl ExecError {
    /// The exit code `docker run` gives for this error: 127 when the command does not exist,
    /// 126 when it cannot be executed (permission denied, a directory), 125 for anything else
    /// (an error of kiln itself). Like the docker CLI, this reads the error's text: the reason
    /// comes back from the sandbox as a message.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecError::Exec(message) if message.contains("No such file or directory") => 127,
            ExecError::Exec(message)
                if message.contains("Permission denied") || message.contains("Is a directory") =>
            {
                126
            }
            _ => 125,
        }
    }
}

/// Creates the directories of `volumes` that no mount in `mounts` covers, inside `rootfs`
/// (owned by root, 0755), resolving every path inside the root so an image's symlinks cannot
/// lead out of it.
pub fn create_volume_dirs(
    rootfs: &Path,
    volumes: &BTreeSet<String>,
    mounts: &[Mount],
) -> Result<(), ExecError> {
    let io_err = |op: &'static str, path: PathBuf| {
        move |e: Errno| ExecError::Io {
            op,
            path,
            source: e.into(),
        }
    };
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open", rootfs.to_owned()))?;
    let covered: BTreeSet<String> = mounts.iter().map(|m| clean_path(&m.target)).collect();
    for volume in volumes {
        if covered.contains(&clean_path(volume)) {
            continue;
        }
        let mut rel = PathBuf::new();
        for comp in clean_path(volume).split('/').filter(|c| !c.is_empty()) {
            let parent = open_in_root(root.as_fd(), &rel, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(io_err("open", rootfs.join(&rel)))?;
            rel.push(comp);
            match rustix::fs::mkdirat(&parent, comp, Mode::from_raw_mode(0o755)) {
                // An existing entry (or a symlink) is resolved by the next open.
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io_err("create", rootfs.join(&rel))(e)),
            }
        }
        open_in_root(root.as_fd(), &rel, OFlags::PATH | OFlags::DIRECTORY).map_err(|_| {
            ExecError::MountTarget {
                target: volume.clone(),
                reason: "the volume path is not a directory",
            }
        })?;
    }
    Ok(())
}

/// Writes the output [`super::run`] hands over in lines back out as the byte streams it came
/// from. A piece of [`MAX_LINE`] bytes is part of a longer line and gets no newline; every other
/// piece ended at one. (Only a last line without a newline gains one.)
#[derive(Debug)]
pub struct Passthrough<O, E> {
    out: O,
    err: E,
}

impl<O: Write, E: Write> Passthrough<O, E> {
    /// Output to `out` and `err`.
    pub fn new(out: O, err: E) -> Self {
        Self { out, err }
    }

    /// Writes one piece of `stream` and flushes, so the output appears as it comes.
    pub fn write(&mut self, stream: Stream, piece: &[u8]) -> io::Result<()> {
        let to: &mut dyn Write = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        to.write_all(piece)?;
        if piece.len() != MAX_LINE {
            to.write_all(b"\n")?;
        }
        to.flush()
    }

    /// The two writers back.
    pub fn into_inner(self) -> (O, E) {
        (self.out, self.err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::MountKind;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn config(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ContainerConfig {
        ContainerConfig {
            entrypoint: entrypoint.map(strings),
            cmd: cmd.map(strings),
            ..ContainerConfig::default()
        }
    }

    /// Entrypoint, Cmd, `--entrypoint`, arguments, and the argv they give.
    type Row = (
        Option<&'static [&'static str]>,
        Option<&'static [&'static str]>,
        Option<&'static str>,
        &'static [&'static str],
        &'static [&'static str],
    );

    #[test]
    fn entrypoint_and_cmd_combine_as_docker_does() {
        const SH: &[&str] = &["/bin/sh", "-c", "echo hi"];
        let table: [Row; 9] = [
            // Cmd alone, replaced by arguments.
            (None, Some(SH), None, &[], SH),
            (None, Some(SH), None, &["ls", "-l"], &["ls", "-l"]),
            // Entrypoint + Cmd; arguments replace only the Cmd.
            (
                Some(&["/ep", "a"]),
                Some(&["b"]),
                None,
                &[],
                &["/ep", "a", "b"],
            ),
            (
                Some(&["/ep"]),
                Some(&["b"]),
                None,
                &["c", "d"],
                &["/ep", "c", "d"],
            ),
            (Some(&["/ep"]), None, None, &[], &["/ep"]),
            // --entrypoint drops the image's Cmd, keeps the arguments.
            (
                Some(&["/ep"]),
                Some(&["b"]),
                Some("/other"),
                &[],
                &["/other"],
            ),
            (None, Some(&["b"]), Some("/other"), &["x"], &["/other", "x"]),
            // An empty --entrypoint leaves only the arguments.
            (Some(&["/ep"]), Some(&["b"]), Some(""), &["id"], &["id"]),
            (Some(&["/ep"]), Some(&["b"]), Some(""), &[], &[]),
        ];
        for (i, (ep, cmd, over, args, want)) in table.into_iter().enumerate() {
            let run = ImageRun {
                args: strings(args),
                entrypoint: over.map(str::to_owned),
                ..ImageRun::default()
            };
            assert_eq!(image_argv(&config(ep, cmd), &run), strings(want), "row {i}");
        }
    }

    #[test]
    fn the_spec_takes_the_config_and_the_overrides() {
        let mut cfg = config(None, Some(&["/bin/sh", "-c", "echo $A"]));
        cfg.env = strings(&["PATH=/bin", "A=1", "B=2", "C"]);
        cfg.user = "1001".to_owned();
        cfg.working_dir = "/srv".to_owned();
        let spec = RunSpec::for_image(&cfg, &ImageRun::default()).unwrap();
        assert_eq!(spec.args, strings(&["/bin/sh", "-c", "echo $A"]));
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            spec.env,
            env(&[
                ("HOSTNAME", "kiln"),
                ("PATH", "/bin"),
                ("A", "1"),
                ("B", "2"),
                ("C", "")
            ])
        );
        assert_eq!((spec.user.as_str(), spec.cwd.as_str()), ("1001", "/srv"));
        assert_eq!(spec.network, NetworkMode::Host);

        let run = ImageRun {
            env: vec![
                ("A".to_owned(), Some("x".to_owned())),
                ("B".to_owned(), None),
                ("D".to_owned(), Some("4".to_owned())),
                ("HOSTNAME".to_owned(), Some("h".to_owned())),
            ],
            user: Some("0:0".to_owned()),
            workdir: Some("/tmp/w".to_owned()),
            network: NetworkMode::None,
            mounts: vec![Mount {
                target: "/data".to_owned(),
                kind: MountKind::Bind {
                    source: "/srv/web".into(),
                    read_only: true,
                },
            }],
            ..ImageRun::default()
        };
        let spec = RunSpec::for_image(&cfg, &run).unwrap();
        assert_eq!(
            spec.env,
            env(&[
                ("HOSTNAME", "h"),
                ("PATH", "/bin"),
                ("A", "x"),
                ("C", ""),
                ("D", "4")
            ])
        );
        assert_eq!((spec.user.as_str(), spec.cwd.as_str()), ("0:0", "/tmp/w"));
        assert_eq!(spec.network, NetworkMode::None);
        assert_eq!(spec.mounts, run.mounts);
    }

    #[test]
    fn nothing_to_run_and_relative_workdirs_are_errors() {
        let none = RunSpec::for_image(&config(None, None), &ImageRun::default());
        assert!(matches!(none, Err(ExecError::EmptyCommand)), "{none:?}");
        let relative = ImageRun {
            args: strings(&["true"]),
            workdir: Some("srv".to_owned()),
            ..ImageRun::default()
        };
        let err = RunSpec::for_image(&config(None, None), &relative);
        assert!(
            matches!(&err, Err(ExecError::Workdir { path, .. }) if path == "srv"),
            "{err:?}"
        );
    }

    #[test]
    fn exit_codes_follow_docker() {
        let statuses = [
            (ExitStatus::Code(0), 0),
            (ExitStatus::Code(3), 3),
            (ExitStatus::Signal(9), 137),
            (ExitStatus::Signal(2), 130),
        ];
        for (status, code) in statuses {
            assert_eq!(status.exit_code(), code, "{status:?}");
        }
        let errors = [
            (
                ExecError::Exec("nope: No such file or directory (os error 2)".to_owned()),
                127,
            ),
            (
                ExecError::Exec("/etc/passwd: Permission denied (os error 13)".to_owned()),
                126,
            ),
            (
                ExecError::Exec("/tmp: Is a directory (os error 21)".to_owned()),
                126,
            ),
            (
                ExecError::Exec("/x: Exec format error (os error 8)".to_owned()),
                125,
            ),
            (ExecError::EmptyCommand, 125),
            (ExecError::Cancelled, 125),
            (ExecError::Setup("mount".to_owned()), 125),
        ];
        for (err, code) in errors {
            assert_eq!(err.exit_code(), code, "{err:?}");
        }
    }

    #[test]
    fn passthrough_restores_the_streams() {
        let mut p = Passthrough::new(Vec::new(), Vec::new());
        let long = vec![b'x'; MAX_LINE];
        let pieces: [(Stream, &[u8]); 6] = [
            (Stream::Stdout, b"one"),
            (Stream::Stderr, b"err"),
            (Stream::Stdout, b""),
            // A line of MAX_LINE + 2 bytes arrives as a full piece and the rest.
            (Stream::Stdout, &long),
            (Stream::Stdout, b"yz"),
            (Stream::Stderr, b"two"),
        ];
        for (stream, piece) in pieces {
            p.write(stream, piece).unwrap();
        }
        let (out, err) = p.into_inner();
        let mut want = b"one\n\n".to_vec();
        want.extend_from_slice(&long);
        want.extend_from_slice(b"yz\n");
        assert_eq!(out, want);
        assert_eq!(err, b"err\ntwo\n");
    }

    #[test]
    fn volume_dirs_are_made_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // An absolute symlink that would reach the host if followed there.
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        std::fs::write(root.join("file"), "").unwrap();
        let volumes: BTreeSet<String> =
            ["/data", "/var/lib/x/", "/escape/v", "/etc-link/v", "/bound"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        let mounts = [Mount {
            target: "/bound/".to_owned(),
            kind: MountKind::Tmpfs { size: None },
        }];
        // The symlink resolves inside the root, where its target does not exist.
        let err = create_volume_dirs(&root, &volumes, &mounts).unwrap_err();
        assert!(matches!(&err, ExecError::Io { op: "open", .. }), "{err:?}");
        assert!(!outside.join("v").exists(), "a symlink led out of the root");
        let volumes: BTreeSet<String> = volumes.into_iter().filter(|v| v != "/escape/v").collect();
        create_volume_dirs(&root, &volumes, &mounts).unwrap();
        for made in ["data", "var/lib/x", "etc/v"] {
            assert!(root.join(made).is_dir(), "{made}");
        }
        assert!(
            !root.join("bound").exists(),
            "a mount target is left to the mount"
        );
        let file = ["/file/v".to_owned()].into_iter().collect();
        let err = create_volume_dirs(&root, &file, &[]).unwrap_err();
        assert!(matches!(&err, ExecError::Io { op: "open", .. }), "{err:?}");
    }
}
