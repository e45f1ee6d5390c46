//! Tests of heredoc RUNs and `RUN --mount`: BuildKit's argv rules, scripts in `/dev/pipes`,
//! tmpfs, cache directories that persist and stay inside their root, secrets that leave no
//! trace, read-only and discarded binds, and a mount-stub cleanup that a RUN cannot turn
//! against the host.

use std::path::Path;

use super::tests::{Ran, ok, rootfs, run_in, sh};
use super::*;
use crate::dockerfile::instructions::Sharing;

/// The RUN of a `FROM scratch` Dockerfile with one more line, lowered.
fn run_of(line: &str) -> ExecOp {
    let file = crate::dockerfile::parse(&format!("FROM scratch\n{line}")).unwrap();
    let plan = crate::plan::Plan::new(&file, Default::default()).unwrap();
    match plan
        .lower_stage(0, &[], Scope::new(Vec::new()))
        .unwrap()
        .remove(0)
        .op
    {
        crate::plan::Op::Exec(run) => run,
        other => panic!("not a RUN: {other:?}"),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn heredoc_argv_follows_buildkit() {
    let bash = strings(&["/bin/bash", "-eu", "-c"]);
    // Dockerfile, SHELL, argv, scripts.
    type Case<'a> = (&'a str, &'a [String], Vec<String>, Vec<Pipe>);
    let cases: &[Case] = &[
        (
            "RUN <<EOF\necho hi\nEOF\n",
            &[],
            strings(&["/bin/sh", "-c", "echo hi\n"]),
            vec![],
        ),
        (
            "RUN <<-EOF\n\techo hi\n\tEOF\n",
            &[],
            strings(&["/bin/sh", "-c", "echo hi\n"]),
            vec![],
        ),
        (
            "RUN <<EOF\n#!/bin/sh\necho $0\nEOF\n",
            &bash,
            strings(&["/bin/bash", "-eu", "-c", "/dev/pipes/EOF"]),
            vec![Pipe {
                name: "EOF".to_owned(),
                content: "#!/bin/sh\necho $0\n".to_owned(),
            }],
        ),
        (
            "RUN cat <<'EOT' > /x\n$HOME\nEOT\n",
            &[],
            strings(&["/bin/sh", "-c", "cat <<'EOT' > /x\n$HOME\nEOT"]),
            vec![],
        ),
        (
            "RUN cat <<A <<-B\na\nA\n\tb\n\tB\n",
            &[],
            // The terminator is the bare name, as BuildKit appends it.
            strings(&["/bin/sh", "-c", "cat <<A <<-B\na\nA\n\tb\nB"]),
            vec![],
        ),
        (
            "RUN [\"echo\", \"exec form\"]\n",
            &[],
            strings(&["echo", "exec form"]),
            vec![],
        ),
        (
            "RUN echo plain\n",
            &bash,
            strings(&["/bin/bash", "-eu", "-c", "echo plain"]),
            vec![],
        ),
    ];
    for (dockerfile, shell, want_args, want_pipes) in cases {
        let run = run_of(dockerfile);
        let (args, pipes) = heredoc_command(&run.command, shell).unwrap();
        assert_eq!(&args, want_args, "{dockerfile:?}");
        assert_eq!(&pipes, want_pipes, "{dockerfile:?}");
    }
    assert_eq!(cases.len(), 7);
}

#[test]
fn for_run_refuses_unresolved_mounts() {
    let run = run_of("RUN --mount=type=tmpfs,target=/t true\n");
    let scope = crate::plan::scope::Scope::new(vec![("A".into(), "1".into())]);
    match RunSpec::for_run(&run, &scope, &[], "/", "", Vec::new()) {
        Err(ExecError::UnresolvedMounts { declared, given }) => {
            assert_eq!((declared, given), (1, 0))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let tmpfs = Mount {
        target: "/t".into(),
        kind: MountKind::Tmpfs { size: None },
    };
    let spec = RunSpec::for_run(&run, &scope, &[], "/app", "alice", vec![tmpfs.clone()]).unwrap();
    assert_eq!(spec.mounts, vec![tmpfs]);
    assert_eq!(spec.env, vec![("A".to_owned(), "1".to_owned())]);
    assert_eq!((spec.cwd.as_str(), spec.user.as_str()), ("/app", "alice"));
    assert_eq!(spec.args, strings(&["/bin/sh", "-c", "true"]));
}

#[test]
fn heredoc_runs_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let cases: &[(&str, &[&str])] = &[
        (
            "RUN <<EOF\n#!/bin/sh\necho \"$0\"\nls -l /dev/pipes | tail -1 | cut -c1-10\nEOF\n",
            &["/dev/pipes/EOF", "-rwxr-xr-x"],
        ),
        ("RUN <<EOF\necho one\necho two\nEOF\n", &["one", "two"]),
        ("RUN cat <<'EOF'\n$HOME\nEOF\n", &["$HOME"]),
        ("RUN cat <<EOF\n$HOME\nEOF\n", &["/root"]),
    ];
    for (dockerfile, want) in cases {
        let run = run_of(dockerfile);
        let (args, pipes) = heredoc_command(&run.command, &[]).unwrap();
        let mut spec = RunSpec::new(args);
        spec.pipes = pipes;
        assert_eq!(ok(&run_in(&root, &spec)), *want, "{dockerfile:?}");
    }
}

fn with_mounts(script: &str, mounts: Vec<Mount>) -> RunSpec {
    let mut spec = sh(script);
    spec.mounts = mounts;
    spec
}

fn bind(target: &str, source: &Path, read_only: bool) -> Mount {
    Mount {
        target: target.into(),
        kind: MountKind::Bind {
            source: source.to_owned(),
            read_only,
        },
    }
}

#[test]
fn tmpfs_and_cache_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let ran = run_in(
        &root,
        &with_mounts(
            "echo x > /scratch/t/file && grep -c ' /scratch/t tmpfs ' /proc/mounts",
            vec![Mount {
                target: "/scratch/t".into(),
                kind: MountKind::Tmpfs {
                    size: Some(1 << 20),
                },
            }],
        ),
    );
    assert_eq!(ok(&ran), ["1"]);
    assert!(
        !root.join("scratch").exists(),
        "the tmpfs target stub stays"
    );

    let caches = CacheMounts::new(dir.path().join("cache"));
    let owner = CacheOwner {
        uid: 1000,
        gid: 1000,
        mode: 0o750,
    };
    for round in 1..=2 {
        let cache = caches
            .acquire("/root/.cache/go-build", Sharing::Shared, owner)
            .unwrap();
        let ran = run_in(
            &root,
            &with_mounts(
                "echo run >> /root/.cache/go-build/log; wc -l < /root/.cache/go-build/log; \
                 stat -c '%u:%g %a' /root/.cache/go-build",
                vec![bind("/root/.cache/go-build", cache.path(), false)],
            ),
        );
        assert_eq!(ok(&ran), [round.to_string().as_str(), "1000:1000 750"]);
    }
    assert!(!root.join("root/.cache").exists());
    // An id is only ever a name under the cache root.
    let sneaky = caches
        .acquire("../../../../etc", Sharing::Shared, owner)
        .unwrap();
    assert_eq!(sneaky.path().parent().unwrap(), dir.path().join("cache"));
    // Private: a busy cache gives a fresh directory, removed afterwards.
    let held = caches.acquire("shared-id", Sharing::Locked, owner).unwrap();
    let private = caches
        .acquire("shared-id", Sharing::Private, owner)
        .unwrap();
    assert_ne!(held.path(), private.path());
    let private_path = private.path().to_owned();
    drop(private);
    assert!(!private_path.exists());
    drop(held);
    let again = caches
        .acquire("shared-id", Sharing::Private, owner)
        .unwrap();
    assert_eq!(
        again.path(),
        dir.path()
            .join("cache")
            .join(Digest::of(b"shared-id").hex())
    );
}

use kiln_registry::Digest;

/// Every file under `dir` whose content contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let bytes = std::fs::read(e.path()).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(e.path().display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn secrets_are_readable_and_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let secret = b"s3cr3t-value-7781".to_vec();
    let mut spec = with_mounts(
        "cat /run/secrets/token; echo; stat -c '%a %u' /run/secrets/token; \
         ls -a /dev | grep -c kiln-secret; echo \"$API_TOKEN\"",
        vec![Mount {
            target: "/run/secrets/token".into(),
            kind: MountKind::Secret {
                data: secret.clone(),
                uid: 1000,
                gid: 0,
                mode: 0o400,
            },
        }],
    );
    spec.secret_env = vec![("API_TOKEN".into(), "env-secret-5521".into())];
    let debug = format!("{spec:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("env-secret"),
        "{debug}"
    );
    let ran: Ran = run_in(&root, &spec);
    assert_eq!(
        ok(&ran),
        ["s3cr3t-value-7781", "400 1000", "0", "env-secret-5521"]
    );
    assert!(!root.join("run").exists());
    assert_eq!(
        files_containing(dir.path(), b"s3cr3t"),
        Vec::<String>::new()
    );
    assert_eq!(
        files_containing(dir.path(), b"env-secret"),
        Vec::<String>::new()
    );
}

#[test]
fn binds_read_only_discarded_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    let src = dir.path().join("context");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/f"), "from the context").unwrap();
    std::fs::write(dir.path().join("app.conf"), "conf").unwrap();
    let ran = run_in(
        &root,
        &with_mounts(
            "cat /src/sub/f; echo; touch /src/new 2>/dev/null && echo writable || echo read-only; \
             cat /etc/app.conf; echo",
            vec![
                bind("/src", &src, true),
                bind("/etc/app.conf", &dir.path().join("app.conf"), true),
            ],
        ),
    );
    assert_eq!(ok(&ran), ["from the context", "read-only", "conf"]);
    assert!(!root.join("etc/app.conf").exists());
    let ran = run_in(
        &root,
        &with_mounts(
            "echo changed > /src/sub/f && touch /src/new && cat /src/sub/f",
            vec![Mount {
                target: "src".into(),
                kind: MountKind::Discarded {
                    source: src.clone(),
                },
            }],
        ),
    );
    assert_eq!(ok(&ran), ["changed"]);
    assert_eq!(
        std::fs::read_to_string(src.join("sub/f")).unwrap(),
        "from the context"
    );
    assert!(!src.join("new").exists());
    // Targets that cannot be mount points are refused.
    for target in ["/", "/proc/x", "/dev/shm2"] {
        let result = run_in(&root, &with_mounts("true", vec![bind(target, &src, true)])).result;
        assert!(
            matches!(result, Err(ExecError::MountTarget { .. })),
            "{target}: {result:?}"
        );
    }
}

#[test]
fn stub_cleanup_never_follows_a_swapped_parent_to_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = rootfs(dir.path()) else {
        return;
    };
    // What the stub cleanup would hit if it followed /x to the host: an empty y/.
    let host = dir.path().join("host-sentinel");
    std::fs::create_dir_all(host.join("y")).unwrap();
    let cache = dir.path().join("c");
    std::fs::create_dir(&cache).unwrap();
    let script = format!(
        "mv /x /x.old && ln -s {} /x && echo swapped",
        host.display()
    );
    let ran = run_in(
        &root,
        &with_mounts(&script, vec![bind("/x/y", &cache, false)]),
    );
    assert_eq!(ok(&ran), ["swapped"]);
    assert!(host.join("y").is_dir(), "the host directory was removed");
    // The RUN's own changes stay: the symlink, and the moved directory with its stub.
    assert!(
        std::fs::symlink_metadata(root.join("x"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_cache_directory_is_seeded_once_whole_and_only_when_missing() {
    if !crate::privileges::current().chown {
        crate::testutil::skip("seeding a cache directory owned by 1000 needs CAP_CHOWN");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let caches = CacheMounts::new(dir.path().join("cache"));
    let owner = CacheOwner {
        uid: 1000,
        gid: 1000,
        mode: 0o750,
    };
    // Nothing to put in: no directory is made, so acquire makes the usual empty one.
    let seeded: Result<bool, ExecError> = caches.seed("pip", owner, |_| Ok(false));
    assert!(!seeded.unwrap());
    assert!(!caches.dir_of("pip").exists());
    // A failing fill leaves nothing half-filled behind.
    let failed: Result<bool, ExecError> = caches.seed("pip", owner, |d| {
        std::fs::write(d.join("half"), "x").unwrap();
        Err(ExecError::Io {
            op: "fill",
            path: d.to_owned(),
            source: std::io::Error::other("lost"),
        })
    });
    assert!(failed.is_err());
    assert!(!caches.dir_of("pip").exists());
    let seeded: Result<bool, ExecError> = caches.seed("pip", owner, |d| {
        std::fs::write(d.join("wheel"), "w").unwrap();
        Ok(true)
    });
    assert!(seeded.unwrap());
    let path = caches.dir_of("pip");
    assert_eq!(std::fs::read_to_string(path.join("wheel")).unwrap(), "w");
    let meta = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
    // Present now: not filled again.
    let again: Result<bool, ExecError> = caches.seed("pip", owner, |_| panic!("filled twice"));
    assert!(!again.unwrap());
    let held = caches.acquire("pip", Sharing::Shared, owner).unwrap();
    assert_eq!(held.path(), path);
}
