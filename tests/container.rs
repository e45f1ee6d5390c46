//! kiln inside an unprivileged container, as a CI runner runs it: `podman run` with podman's
//! default seccomp profile and capabilities, no `--privileged`, no `--security-opt`, no devices,
//! `--network host` to reach the test registry. The container's root filesystem holds busybox,
//! the kiln binary and a user `builder` with subordinate ids (as a runner image would). As that
//! user and as root (uid 0 without `CAP_SYS_ADMIN`) kiln builds a Dockerfile with RUN, `COPY
//! --chown` and a multi-stage `COPY --from`, leaves no process a RUN started, and pushes an image
//! that skopeo reads and `podman run` runs; the container's masked `/proc` is said once. One
//! Dockerfile built as root on the host, rootless on the host, and as the user and root in the
//! container gives one manifest digest. kiln's own `FROM scratch` image
//! (`examples/kubernetes/scratch.Dockerfile`, with the static binary `tests/run.sh` builds)
//! builds and pushes as root with nothing else in it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::rootless::{
    IDS_DOCKERFILE, IDS_FILES, manifest_digest, root_digest, rootless_ids_digest,
};
use crate::support::podman::{BUILDER_HOME, BUILDER_ID, Podman, kiln_rootfs};
use crate::support::registry::{Config, RegistryServer};
use crate::support::{EPOCH, processes_with, root_or_skip, run, tool, with_busybox, write_context};
use crate::text;

/// Who kiln runs as in the container.
#[derive(Debug, Clone, Copy)]
enum As {
    /// `builder` (1000:1000).
    Builder,
    /// Root, with podman's default capabilities (no `CAP_SYS_ADMIN`).
    Root,
}

/// A container root filesystem with kiln in it, and podman to run it.
struct Container {
    podman: Podman,
    _dir: tempfile::TempDir,
    rootfs: PathBuf,
}

impl Container {
    /// `None` (after saying so) when a prerequisite is missing outside CI.
    fn new() -> Option<Self> {
        if !root_or_skip("container tests (podman runs as root)") {
            return None;
        }
        let podman = Podman::new()?;
        let dir = tempfile::tempdir().unwrap();
        let rootfs = kiln_rootfs(dir.path())?;
        Some(Self {
            podman,
            _dir: dir,
            rootfs,
        })
    }

    /// Runs `script` under `/bin/sh -e` in a new container, in `builder`'s home.
    fn sh(&self, user: As, script: &str) -> Output {
        self.sh_with(&[], user, script)
    }

    /// [`Container::sh`] with more `podman run` options.
    fn sh_with(&self, options: &[&str], user: As, script: &str) -> Output {
        let (user, home) = match user {
            As::Builder => ("1000:1000", "/home/builder"),
            As::Root => ("0:0", "/root"),
        };
        self.podman
            .cmd()
            .args(["run", "--rm", "--network", "host", "--user", user])
            .args(["-e", &format!("HOME={home}")])
            .args(["-e", &format!("SOURCE_DATE_EPOCH={EPOCH}")])
            .args(options)
            .args(["-w", "/home/builder", "--rootfs"])
            .arg(&self.rootfs)
            .args(["/bin/sh", "-ec", script])
            .output()
            .unwrap()
    }

    /// Like [`Container::sh`], but panics unless the script succeeds; its standard error.
    fn ok(&self, user: As, script: &str) -> String {
        let out = self.sh(user, script);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "{script}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        stderr
    }

    /// Writes a build context into `builder`'s home, owned by `builder`; its path inside.
    fn context(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> String {
        let dir = self.home().join(name);
        write_context(&dir, dockerfile, files);
        run(std::process::Command::new("chown")
            .arg("-R")
            .arg(format!("{BUILDER_ID}:{BUILDER_ID}"))
            .arg(&dir));
        format!("/home/builder/{name}")
    }

    /// `builder`'s home, from outside.
    fn home(&self) -> PathBuf {
        self.rootfs.join(BUILDER_HOME)
    }
}

/// Imports the busybox base, then builds with `args` (one shell line).
fn build_script(args: &str) -> String {
    format!("kiln import busybox.tar busybox:latest >/dev/null\nkiln build {args}")
}

/// The warning for the container's masked `/proc`.
const PROC_WARNING: &str = "this container's /proc has masked paths";

/// A RUN that leaves a process behind, a chown to ids of the image, `COPY --chown` and a
/// multi-stage `COPY --from`.
const APP_DOCKERFILE: &str = "FROM busybox AS build
RUN echo compiled > /artifact && chown 1001:1001 /artifact && (sleep 1017 &) && echo started
FROM busybox
COPY --chown=1001:1002 app.txt /app/
COPY --from=build /artifact /app/artifact
CMD [\"sh\", \"-c\", \"cat /app/app.txt /app/artifact; stat -c '%u:%g %n' /app/app.txt /app/artifact\"]
";

const APP_OUTPUT: &str = "hello\ncompiled\n1001:1002 /app/app.txt\n1001:1001 /app/artifact\n";

/// Builds [`APP_DOCKERFILE`] in a container run with `options` as `user` and pushes it;
/// checks the image with skopeo and `podman run`, and that no process of the build is left.
fn build_and_push(options: &[&str], user: As, repo: &str) {
    let Some(container) = Container::new() else {
        return;
    };
    let Some(skopeo) = tool("skopeo") else { return };
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    let ctx = container.context("app", APP_DOCKERFILE, &[("app.txt", "hello\n")]);
    let name = format!("{}/{repo}:1", registry.addr);
    let script = build_script(&format!("--push -t {name} {ctx}"));
    let out = container.sh_with(options, user, &script);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches(PROC_WARNING).count(), 1, "{stderr}");
    assert!(!stderr.contains("single id"), "{stderr}");
    assert!(stderr.contains("started"), "{stderr}");
    // The pid namespace took the RUN's daemon with it.
    assert_eq!(processes_with("sleep 1017"), Vec::<String>::new());
    let raw = run(std::process::Command::new(&skopeo).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]));
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3, "{raw}");
    let printed =
        container
            .podman
            .ok(&["run", "--rm", "--network=none", "--tls-verify=false", &name]);
    assert_eq!(printed, APP_OUTPUT);
}

/// The capabilities `examples/kubernetes/job.yaml` leaves a user: only what the file
/// capabilities of newuidmap/newgidmap need in the bounding set.
const JOB_CAPABILITIES: [&str; 2] = ["--cap-drop=all", "--cap-add=setuid,setgid"];

#[test]
fn a_user_in_an_unprivileged_container_builds_and_pushes() {
    build_and_push(&JOB_CAPABILITIES, As::Builder, "container/user");
}

#[test]
fn root_without_cap_sys_admin_in_a_container_builds_and_pushes() {
    build_and_push(&[], As::Root, "container/root");
}

#[test]
fn root_without_cap_setfcap_fails_naming_it() {
    let Some(container) = Container::new() else {
        return;
    };
    let ctx = container.context("plain", "FROM busybox\nRUN true\n", &[]);
    let out = container.sh_with(&JOB_CAPABILITIES, As::Root, &build_script(&ctx));
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "kiln needs a user namespace of its own to run as root without CAP_SYS_ADMIN"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("CAP_SETFCAP"), "{stderr}");
}

/// Builds [`IDS_DOCKERFILE`] in the container as `user`; the manifest digest.
fn container_ids_digest(container: &Container, user: As, name: &str) -> String {
    let ctx = container.context(name, IDS_DOCKERFILE, &IDS_FILES);
    let metadata = format!("/home/builder/{name}.json");
    container.ok(
        user,
        &build_script(&format!("-q --metadata-file {metadata} {ctx}")),
    );
    manifest_digest(&container.home().join(format!("{name}.json")))
}

#[test]
fn every_mode_gives_the_same_manifest_digest() {
    let Some(root) = with_busybox() else { return };
    let Some(rootless) = rootless_ids_digest() else {
        return;
    };
    let Some(container) = Container::new() else {
        return;
    };
    let ctx = root.path("ids");
    write_context(&ctx, IDS_DOCKERFILE, &IDS_FILES);
    let host_root = root_digest(&root, &ctx);
    assert_eq!(rootless, host_root, "rootless on the host");
    let user = container_ids_digest(&container, As::Builder, "user");
    assert_eq!(user, host_root, "a user in a container");
    let container_root = container_ids_digest(&container, As::Root, "root");
    assert_eq!(container_root, host_root, "root in a container");
}

/// Whether `path` exists (from outside the container).
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[test]
fn root_in_a_container_keeps_the_system_store() {
    let Some(container) = Container::new() else {
        return;
    };
    // The build runs in kiln's own user namespace, the import does not need one.
    let ctx = container.context("plain", "FROM busybox\nRUN true\n", &[]);
    container.ok(As::Root, &build_script(&format!("-t plain {ctx}")));
    let index = fs::read_to_string(container.rootfs.join("var/lib/kiln/oci/index.json")).unwrap();
    assert!(index.contains("plain"), "{index}");
    assert!(exists(
        &container.rootfs.join("var/lib/kiln/oci/index.json")
    ));
    assert!(!exists(&container.rootfs.join("root/.local/share/kiln")));
}

#[test]
fn without_working_id_mapping_tools_one_warning_names_the_fix() {
    let Some(container) = Container::new() else {
        return;
    };
    let uidmap = container.rootfs.join("usr/bin/newuidmap");
    let gidmap = container.rootfs.join("usr/bin/newgidmap");
    // Setuid root, as Debian installs them: refused in a container without CAP_SYS_ADMIN.
    for tool in [&uidmap, &gidmap] {
        run(std::process::Command::new("setcap").arg("-r").arg(tool));
        fs::set_permissions(tool, fs::Permissions::from_mode(0o4755)).unwrap();
    }
    let stderr = container.ok(As::Builder, "kiln import busybox.tar busybox:latest");
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert!(
        stderr.contains("a user namespace with a single id"),
        "{stderr}"
    );
    assert!(
        stderr.contains("setcap cap_setuid=ep newuidmap"),
        "{stderr}"
    );
    // Not installed at all.
    fs::remove_file(&uidmap).unwrap();
    fs::remove_file(&gidmap).unwrap();
    let stderr = container.ok(As::Builder, "kiln import busybox.tar busybox:latest");
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert!(
        stderr.contains("newuidmap/newgidmap are not installed (install the package uidmap)"),
        "{stderr}"
    );
    // A build that needs other ids fails saying why; one owned by root still builds.
    let ctx = container.context("ids", IDS_DOCKERFILE, &IDS_FILES);
    let out = container.sh(As::Builder, &build_script(&ctx));
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("Invalid argument"), "{stderr}");
    assert!(
        stderr.contains("a RUN cannot create device nodes"),
        "{stderr}"
    );
    let ctx = container.context("plain", "FROM busybox\nRUN echo ok > /ok\n", &[]);
    container.ok(As::Builder, &build_script(&format!("-q {ctx}")));
}

#[test]
fn with_proc_unmasked_a_run_gets_a_proc_of_its_own() {
    let Some(container) = Container::new() else {
        return;
    };
    let dockerfile = "FROM busybox\nRUN grep NSpid /proc/self/status\n";
    let ctx = container.context("pid", dockerfile, &[]);
    let script = build_script(&format!("--no-cache {ctx}"));
    // The RUN's pid as seen from each pid namespace it is in, innermost last.
    let pids = |out: &Output| -> usize {
        let (_, stderr) = text(out);
        assert!(out.status.success(), "{stderr}");
        let line = stderr
            .lines()
            .find_map(|l| l.split_once("NSpid:"))
            .unwrap()
            .1;
        line.split_whitespace().count()
    };
    let masked = container.sh(As::Builder, &script);
    assert!(text(&masked).1.contains(PROC_WARNING));
    assert_eq!(pids(&masked), 2, "the container's /proc, bound");
    // kiln is visible there, but a RUN cannot read it (it is undumpable, and holds
    // capabilities the RUN does not).
    let dockerfile = "FROM busybox\nRUN for p in $(pidof kiln); do \
                      cat /proc/$p/environ >/dev/null 2>&1 && echo kiln readable; \
                      echo kiln seen; done\n";
    let ctx = container.context("peek", dockerfile, &[]);
    let stderr = container.ok(As::Builder, &build_script(&format!("--no-cache {ctx}")));
    assert!(stderr.contains(" kiln seen\n"), "{stderr}");
    assert!(!stderr.contains(" kiln readable\n"), "{stderr}");
    let unmasked = container.sh_with(&["--security-opt", "unmask=ALL"], As::Builder, &script);
    assert!(!text(&unmasked).1.contains(PROC_WARNING));
    assert_eq!(
        pids(&unmasked),
        1,
        "a fresh /proc of the RUN's pid namespace"
    );
}

/// The static kiln binary `tests/run.sh` builds for the `FROM scratch` image, from
/// `KILN_STATIC_BIN`; `None` (after saying so) without it outside CI.
fn static_kiln() -> Option<PathBuf> {
    match std::env::var_os("KILN_STATIC_BIN") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "KILN_STATIC_BIN must name a static kiln under CI=true (tests/run.sh builds it)"
            );
            eprintln!("skipping: KILN_STATIC_BIN is not set (tests/run.sh builds a static kiln)");
            None
        }
    }
}

#[test]
fn the_scratch_image_of_kiln_builds_and_pushes_as_root() {
    let Some(bin) = static_kiln() else { return };
    let Some(kiln) = with_busybox() else { return };
    let Some(podman) = Podman::new() else { return };
    let Some(registry) = RegistryServer::start(Config::default()) else {
        return;
    };
    // kiln builds its own image from examples/kubernetes/scratch.Dockerfile.
    let image_ctx = kiln.path("image");
    fs::create_dir(&image_ctx).unwrap();
    fs::copy(&bin, image_ctx.join("kiln")).unwrap();
    let dockerfile = crate::repo().join("examples/kubernetes/scratch.Dockerfile");
    let image = format!("{}/tools/kiln:scratch", registry.addr);
    kiln.ok(&[
        "build",
        "-q",
        "--push",
        "-t",
        &image,
        "-f",
        dockerfile.to_str().unwrap(),
        image_ctx.to_str().unwrap(),
    ]);
    // Nothing but the binary: no shell, no /etc/passwd, no CA bundle. As root with the
    // runtime's default capabilities it imports a base, builds with a chown and pushes.
    let work = kiln.path("work");
    write_context(&work.join("app"), APP_DOCKERFILE, &[("app.txt", "hello\n")]);
    fs::copy(
        crate::support::busybox::busybox_rootfs_tar().unwrap(),
        work.join("busybox.tar"),
    )
    .unwrap();
    let store = kiln.path("store");
    fs::create_dir(&store).unwrap();
    let app = format!("{}/scratch/app:1", registry.addr);
    let volumes = [
        "-v".to_owned(),
        format!("{}:/var/lib/kiln", store.display()),
        "-v".to_owned(),
        format!("{}:/w", work.display()),
    ];
    let in_image = |args: &[&str]| -> String {
        let out = podman
            .cmd()
            .args(["run", "--rm", "--network", "host", "--tls-verify=false"])
            .args(&volumes)
            .args(["-e", &format!("SOURCE_DATE_EPOCH={EPOCH}")])
            .arg(&image)
            .args(args)
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        stderr
    };
    in_image(&["import", "/w/busybox.tar", "busybox:latest"]);
    let stderr = in_image(&["build", "--push", "-t", &app, "/w/app"]);
    assert_eq!(stderr.matches(PROC_WARNING).count(), 1, "{stderr}");
    let printed = podman.ok(&["run", "--rm", "--network=none", "--tls-verify=false", &app]);
    assert_eq!(printed, APP_OUTPUT);
}
