//! RUN: its cache key, its `--mount`s resolved into what the sandbox mounts, and the command
//! run on a writable root whose change becomes the layer.
//!
//! The key covers what decides the command's effect: the expanded instruction (command,
//! mounts as written, network), the environment it sees (ENV and the ARGs declared so far with
//! their values — but not the proxy build-args, which BuildKit keeps out of the cache too),
//! the working directory, user and shell, and the content behind bind mounts (context files,
//! or the key of the stage or image mounted). Secrets and cache mounts are not in it: their
//! content must not decide whether a step runs again, as in BuildKit.

use std::collections::VecDeque;

use super::cache::KeyBuilder;
use super::explain::Label;
use super::from::FromView;
use super::stage::StepRef;
use super::{BoxError, BuildError, Event, Solver, StageState, step_err};
use crate::dockerfile::Location;
use crate::exec::{
    AgentProxy, CacheDir, CacheOwner, ExecError, ExecOptions, Mount, MountKind, NetworkMode,
    RunSpec,
};
use crate::plan::lower::{MountType, Network, Sharing};
use crate::plan::{ExecOp, PROXY_ARGS, Scope};
use crate::snapshot::Mutable;

/// How many output lines a failed RUN's error keeps.
const TAIL_LINES: usize = 10;

impl Solver<'_> {
    pub(super) fn run(
        &self,
        state: &mut StageState,
        run: &ExecOp,
        location: Location,
        step: &StepRef<'_>,
    ) -> Result<(), BuildError> {
        // The plan was checked before the build; an ONBUILD trigger's RUN only now.
        crate::exec::binfmt::check(&state.platform)
            .map_err(|e| BuildError::at(location, e.to_string()))?;
        // The mounts are resolved when the step runs (their sources may need building or
        // pulling); the spec starts without them.
        let bare = ExecOp {
            mounts: Vec::new(),
            sources: Vec::new(),
            ..run.clone()
        };
        let shell = state.image.shell();
        let config = &state.image.config.config;
        let mut spec = RunSpec::for_run(
            &bare,
            &state.scope,
            &shell,
            &config.working_dir,
            &config.user,
            Vec::new(),
        )
        .map_err(step_err(location, "preparing RUN"))?;
        if run.network == Network::Default {
            spec.network = self.options.network;
        }
        spec.extra_hosts = self.options.extra_hosts.clone();
        let created_by = format!("RUN {}", run_command_string(&spec.args, &state.scope));

        let mut key = run_key(self.key_on(state), run, &spec, state.scope.args(), &shell);
        for (m, from) in run.mounts.iter().zip(&run.sources) {
            if m.kind != MountType::Bind {
                continue;
            }
            let source = m.source.clone().unwrap_or_default();
            let (content, label) = match from {
                None => (
                    self.sums
                        .of_source(&source)
                        .map_err(step_err(
                            location,
                            format!("reading {source} in the context"),
                        ))?
                        .to_string(),
                    Label::Files(source),
                ),
                Some(from) => (self.key_of_from(from, location)?, self.label_of_from(from)),
            };
            key = key.labelled("bind", &content, label);
        }

        // Proxy build args reach RUN without being declared (and stay out of history and the
        // cache key).
        for name in PROXY_ARGS {
            if let Some(v) = self.plan.options.build_args.get(name)
                && !spec.env.iter().any(|(k, _)| k == name)
            {
                spec.env.push((name.to_owned(), v.clone()));
            }
        }
        self.layer_step(state, Some(key), location, step, |root| {
            self.execute(root, spec, run, location, step.stage)
        })?;
        state.image.commit(created_by, true, true);
        Ok(())
    }

    /// Before the first RUN that mounts cache `id` on a store that has no directory for it:
    /// its contents from an imported cache (`--cache-from` of a cache exported with
    /// `cache-mounts=true`), if one has them. Failing that is a warning: the RUN starts with an
    /// empty cache, as it would have without the import.
    fn restore_cache_mount(&self, id: &str, owner: CacheOwner, location: Location) {
        let Some(imports) = self.options.imports else {
            return;
        };
        let restored = self
            .caches
            .seed(id, owner, |dir| -> Result<bool, BoxError> {
                imports.restore_mount(id, self.store, dir)
            });
        if let Err(e) = restored {
            let message = format!(
                "line {}: cache mount {id:?} not restored from the imported cache, starting empty: {}",
                location.start_line,
                crate::error_chain(&*e)
            );
            (self.progress)(Event::Warning { message: &message });
        }
    }

    /// Runs the command on `root` with its mounts; a non-zero exit is an error.
    fn execute(
        &self,
        root: &Mutable,
        mut spec: RunSpec,
        run: &ExecOp,
        location: Location,
        stage: &str,
    ) -> Result<(), BuildError> {
        let mut holds: Vec<CacheDir> = Vec::new();
        let mut views: Vec<FromView<'_>> = Vec::new();
        let mut agents: Vec<AgentProxy> = Vec::new();
        for (m, from) in run.mounts.iter().zip(&run.sources) {
            let target = m.target.clone().unwrap_or_default();
            let kind = match m.kind {
                MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let owner = CacheOwner {
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        mode: m.mode.unwrap_or(0o755),
                    };
                    self.restore_cache_mount(&id, owner, location);
                    let dir = self
                        .caches
                        .acquire(&id, m.sharing.unwrap_or(Sharing::Shared), owner)
                        .map_err(step_err(location, format!("opening cache {id:?}")))?;
                    if let Ok(mut used) = self.mounts_used.lock() {
                        used.insert(id.clone(), self.caches.dir_of(&id));
                    }
                    let kind = MountKind::Bind {
                        source: dir.path().to_owned(),
                        read_only: m.read_only,
                    };
                    holds.push(dir);
                    kind
                }
                MountType::Secret => {
                    let id =
                        m.id.clone()
                            .or_else(|| target.rsplit('/').next().map(str::to_owned))
                            .unwrap_or_default();
                    let Some(data) = self.options.secrets.get(&id) else {
                        if m.required {
                            return Err(BuildError::at(location, format!("secret {id} not found")));
                        }
                        continue;
                    };
                    if let Some(var) = &m.env {
                        spec.secret_env
                            .push((var.clone(), String::from_utf8_lossy(data).into_owned()));
                        if m.target.is_none() {
                            continue;
                        }
                    }
                    let target = if target.is_empty() {
                        format!("/run/secrets/{id}")
                    } else {
                        target.clone()
                    };
                    spec.mounts.push(Mount {
                        target,
                        kind: MountKind::Secret {
                            data: data.clone(),
                            uid: m.uid.unwrap_or(0),
                            gid: m.gid.unwrap_or(0),
                            mode: m.mode.unwrap_or(0o400),
                        },
                    });
                    continue;
                }
                MountType::Bind => {
                    let source_root = match from {
                        None => self.options.context.to_owned(),
                        Some(from) => {
                            let view = self.view_of(from, location)?;
                            let path = view.root().to_owned();
                            views.push(view);
                            path
                        }
                    };
                    let rel =
                        crate::ignore::clean(&format!("/{}", m.source.clone().unwrap_or_default()));
                    let source = source_root.join(rel.trim_start_matches('/'));
                    if m.read_only {
                        MountKind::Bind {
                            source,
                            read_only: true,
                        }
                    } else {
                        MountKind::Discarded { source }
                    }
                }
                MountType::Ssh => {
                    // BuildKit's rules: id `default`, target /run/buildkit/ssh_agent.N, owner
                    // 0:0, mode 0600, SSH_AUTH_SOCK naming the first one unless already set.
                    let id = m.id.clone().unwrap_or_else(|| "default".to_owned());
                    let Some(agent) = self.options.ssh.get(&id) else {
                        if m.required {
                            return Err(BuildError::at(
                                location,
                                format!(
                                    "no SSH agent for --mount=type=ssh,id={id}: give one with \
                                     --ssh {id}[=SOCKET|KEY…]"
                                ),
                            ));
                        }
                        continue;
                    };
                    let target = if target.is_empty() {
                        format!("/run/buildkit/ssh_agent.{}", agents.len())
                    } else {
                        target.clone()
                    };
                    let proxy = AgentProxy::start(
                        agent,
                        m.uid.unwrap_or(0),
                        m.gid.unwrap_or(0),
                        m.mode.unwrap_or(0o600),
                    )
                    .map_err(step_err(location, format!("forwarding SSH agent {id:?}")))?;
                    if !spec.env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK") {
                        spec.env.push(("SSH_AUTH_SOCK".to_owned(), target.clone()));
                    }
                    spec.mounts.push(Mount {
                        target,
                        kind: MountKind::Bind {
                            source: proxy.path().to_owned(),
                            read_only: false,
                        },
                    });
                    agents.push(proxy);
                    continue;
                }
            };
            spec.mounts.push(Mount { target, kind });
        }
        let mut tail: VecDeque<String> = VecDeque::new();
        let options = ExecOptions::new(self.store.tmp_dir());
        let status = crate::exec::run(
            root.root(),
            &spec,
            &options,
            &mut |stream, line| {
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(String::from_utf8_lossy(line).into_owned());
                (self.progress)(Event::Output {
                    stage,
                    stream,
                    line,
                });
            },
            &self.options.cancel,
        )
        .map_err(|e| match e {
            ExecError::Cancelled => BuildError::Cancelled { location },
            e => step_err(location, "running RUN")(e),
        })?;
        drop(views);
        drop(holds);
        drop(agents);
        if !status.success() {
            return Err(BuildError::RunFailed {
                location,
                command: spec.args.join(" "),
                status,
                output: tail.into(),
            });
        }
        Ok(())
    }
}

/// A RUN's key inputs besides what its bind mounts read (see the module doc): the command as
/// written and expanded, its parsed mounts, the argv the shell makes of it, the environment,
/// the ARGs declared so far, the working directory, user, shell and network, and the extra
/// hosts when there are any (BuildKit keys them too; none keeps older keys).
pub(super) fn run_key(
    on: KeyBuilder,
    run: &ExecOp,
    spec: &RunSpec,
    declared: &[(String, Option<String>)],
    shell: &[String],
) -> KeyBuilder {
    let on = match spec.extra_hosts.as_slice() {
        [] => on,
        hosts => on.with("extra_hosts", hosts),
    };
    on.with("command", &run.command)
        .with("mounts", &run.mounts)
        .with("args", &spec.args)
        .with("env", &spec.env)
        .with("declared", declared)
        .with("cwd", &spec.cwd)
        .with("user", &spec.user)
        .with("shell", shell)
        .with(
            "network",
            match spec.network {
                NetworkMode::Host => "host",
                NetworkMode::None => "none",
            },
        )
}

/// BuildKit's `runCommandString`: the declared ARGs with their values (`|2 A=1 B=2`), then
/// the command line.
fn run_command_string(args: &[String], scope: &Scope) -> String {
    let env = scope.env_map();
    let declared: Vec<String> = scope
        .args()
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                env.get(k)
                    .cloned()
                    .or_else(|| v.clone())
                    .unwrap_or_default()
            )
        })
        .collect();
    let mut parts = Vec::new();
    if !declared.is_empty() {
        parts.push(format!("|{}", declared.len()));
        parts.extend(declared);
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}
