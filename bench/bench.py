#!/usr/bin/env python3
"""kiln against buildah and BuildKit on this machine: build, rebuild, push and memory, side by
side, with kiln also run rootless, and kiln's registry cache on a fresh runner.

Run through `bash bench/run.sh` (see bench/README.md). Standard library only.

What it does, in order:
  1. Checks the prerequisites and says what is missing (it installs nothing; it creates the
     rootless column's user, with subordinate ids, if missing).
  2. Builds kiln and the layer benchmark from this checkout (`cargo build --release`) unless
     --kiln names a binary.
  3. Makes a Debian base with debootstrap once (cached under bench/.cache or
     $XDG_CACHE_HOME/kiln-bench), imports it into a fresh kiln store (`kiln import`), into the
     rootless user's store, as the same OCI archive into a private buildah store
     (--root/--runroot) and as a docker archive into a dockerd started here on a private socket
     and data root (BuildKit). Each store is on a filesystem of its own (--fs ext4, the default:
     a new ext4 image per tool, loop-mounted), so no tool's deletions slow another's file
     creation (see bench/README.md).
  4. Runs the workloads of bench/workloads with every tool, alternating them so a shared
     machine's load falls on all: no-cache build, cached rebuild, rebuild after changing one
     context file; then pushes every result to a new local docker-registry (a first push)
     and pushes it again.
  5. The registry cache (issue 11): kiln exports its cache (--cache-to type=registry,mode=max)
     against a plain push of the same new layers, and a fresh store builds with --cache-from
     against a cold build; BuildKit's inline cache beside it.
  6. Runs examples/bench_layers on the workload's bytes (layer compression against pigz/zstd).
  7. Prints two tables: medians of N runs, ratios to the best peer and rootless to root, the
     budgets of issues 14, 15 and 11.

Times are wall-clock seconds around each command; peak memory is GNU time's maximum resident
set (%M: the largest single process of the command's tree, kiln's own or buildah's), and for
BuildKit dockerd's own peak (VmHWM).
"""

import argparse
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORKLOADS = BENCH / "workloads"
GNU_TIME = "/usr/bin/time"
BASE = "bench-debian:latest"

# Tool → Debian package, for the message when something is missing.
PREREQUISITES = {
    "debootstrap": "debootstrap",
    "docker-registry": "docker-registry",
    "pigz": "pigz",
    "zstd": "zstd",
    "tar": "tar",
}
# With --fs ext4.
EXT4_PREREQUISITES = {"mkfs.ext4": "e2fsprogs", "mount": "mount"}
# Each peer and the rootless column, unless left out with --without.
OPTIONAL_PREREQUISITES = {
    "buildah": {"buildah": "buildah"},
    # Debian's docker.io: dockerd 20.10 with BuildKit built in, and its own CLI in /usr/bin
    # (another `docker` earlier in PATH is not used).
    "buildkit": {"dockerd": "docker.io", "/usr/bin/docker": "docker.io"},
    "rootless": {
        "setpriv": "util-linux",
        "newuidmap": "uidmap",
        "newgidmap": "uidmap",
        "useradd": "passwd",
        "usermod": "passwd",
    },
}
DOCKER = "/usr/bin/docker"
# The user the rootless column runs kiln as (created with subordinate ids if missing).
ROOTLESS_USER = "kilnbench"
# The size of each tool's ext4 image (sparse: only what is written takes space).
EXT4_IMAGE_BYTES = 16 << 30

# The peer, as issue 7 names it.
BUILDAH_BUD = ["bud", "--isolation", "chroot", "--layers", "--pull=never"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load_average():
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


class Failed(Exception):
    """A measured command failed; the message names its log."""


class Runner:
    """Runs commands with their output in a log file, timing them and reading their peak RSS."""

    def __init__(self, logs):
        self.logs = logs
        self.count = 0

    def run(self, name, cmd, env=None, cwd=None, clean_env=False):
        """Runs `cmd`; returns (seconds, peak RSS in KiB). Raises Failed on a non-zero exit.
        With `clean_env`, the command sees `env` alone, not this process's environment."""
        self.count += 1
        name = name.replace(" ", "-")
        logfile = self.logs / f"{self.count:04d}-{name}.log"
        timefile = self.logs / f"{self.count:04d}-{name}.time"
        full_env = {} if clean_env else dict(os.environ)
        if env:
            full_env.update(env)
        with open(logfile, "w") as out:
            out.write("$ " + " ".join(str(c) for c in cmd) + "\n")
            out.flush()
            start = time.monotonic()
            status = subprocess.call(
                [GNU_TIME, "-f", "%M", "-o", str(timefile)] + [str(c) for c in cmd],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
            )
            elapsed = time.monotonic() - start
        rss = 0
        try:
            lines = timefile.read_text().strip().splitlines()
            rss = int(lines[-1]) if lines else 0
        except (OSError, ValueError):
            pass
        if status != 0:
            raise Failed(f"{name} exited with {status}; see {logfile}")
        return elapsed, rss

    def output(self, cmd, env=None):
        """Runs a setup command and returns its stdout (failing loudly)."""
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        done = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, env=full_env
        )
        if done.returncode != 0:
            raise Failed(f"{' '.join(map(str, cmd))} failed:\n{done.stderr.strip()}")
        return done.stdout


# --- prerequisites and setup -------------------------------------------------------------


def check_prerequisites(fs, without):
    needed = dict(PREREQUISITES, **(EXT4_PREREQUISITES if fs == "ext4" else {}))
    for part, tools in OPTIONAL_PREREQUISITES.items():
        if part not in without:
            needed.update(tools)
    missing = [pkg for tool, pkg in needed.items() if shutil.which(tool) is None]
    if not os.access(GNU_TIME, os.X_OK):
        missing.append("time")
    problems = []
    if missing:
        problems.append(
            "missing: " + ", ".join(sorted(set(missing)))
            + "\n  install them with: apt-get install " + " ".join(sorted(set(missing)))
            + "\n  (or leave a column out: --without buildah|buildkit|rootless)"
        )
    if os.geteuid() != 0:
        problems.append(
            "run as root: debootstrap, buildah's chroot isolation, dockerd, kiln's RUN sandbox "
            "and creating the rootless column's user need it"
        )
    if problems:
        log("bench: cannot run:\n" + "\n".join("- " + p for p in problems))
        sys.exit(1)


def mount_ext4(image, mountpoint, runner):
    """A new, empty ext4 filesystem (with a journal, as mkfs makes it) on a sparse image file.
    Its inode tables are written now, not by the kernel in the background during the runs."""
    with open(image, "wb") as f:
        f.truncate(EXT4_IMAGE_BYTES)
    runner.output(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image])
    runner.output(["mount", "-o", "loop", image, mountpoint])


def unmount_under(path):
    """Unmounts everything mounted at or below `path`, the deepest first."""
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    for point in sorted((p for p in points if (p + "/").startswith(prefix)), reverse=True):
        subprocess.call(["umount", point])


def filesystem_of(path):
    """The type of the filesystem `path` is on, as findmnt says it."""
    try:
        return subprocess.check_output(
            ["findmnt", "-n", "-o", "FSTYPE", "--target", path], text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cache_dir(args):
    if args.cache:
        return Path(args.cache)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "kiln-bench" if xdg else BENCH / ".cache"


def build_kiln(args):
    """The kiln binary and the layer benchmark: built from this checkout unless given."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
    if args.kiln:
        kiln = Path(args.kiln).resolve()
    else:
        if shutil.which("cargo") is None:
            log("bench: cargo is missing: install Rust (rustup) or pass --kiln PATH")
            sys.exit(1)
        log("building kiln and examples/bench_layers (cargo build --release) ...")
        subprocess.check_call(
            ["cargo", "build", "--release", "--bin", "kiln", "--example", "bench_layers"],
            cwd=REPO,
        )
        kiln = target / "kiln"
    layers = Path(args.bench_layers) if args.bench_layers else target / "examples" / "bench_layers"
    if not kiln.exists():
        log(f"bench: no kiln binary at {kiln}")
        sys.exit(1)
    return kiln, (layers if layers.exists() else None)


def debian_base(cache, args):
    """The debootstrapped rootfs (directory and tar), made once and cached."""
    suite, mirror = args.suite, args.mirror
    rootfs = cache / f"debian-{suite}"
    tarball = cache / f"debian-{suite}.tar"
    if tarball.exists() and (rootfs / "etc" / "debian_version").exists():
        return rootfs, tarball
    cache.mkdir(parents=True, exist_ok=True)
    log(f"making the Debian base once: debootstrap --variant=minbase {suite} {mirror} ...")
    partial = cache / f"debian-{suite}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    subprocess.check_call(
        ["debootstrap", "--variant=minbase", suite, str(partial), mirror],
        stdout=subprocess.DEVNULL,
    )
    # Package caches and logs are noise in a base image.
    for sub in ["var/cache/apt/archives", "var/lib/apt/lists"]:
        for entry in (partial / sub).glob("*"):
            if entry.is_file():
                entry.unlink()
    if rootfs.exists():
        shutil.rmtree(rootfs)
    partial.rename(rootfs)
    subprocess.check_call(
        ["tar", "--numeric-owner", "--xattrs", "-cf", str(tarball), "-C", str(rootfs), "."]
    )
    return rootfs, tarball


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """Debian's docker-registry on a free loopback port, its storage in `directory` (new)."""

    def __init__(self, directory):
        self.dir = directory
        self.dir.mkdir(parents=True)
        for _ in range(5):
            port = free_port()
            self.addr = f"127.0.0.1:{port}"
            config = self.dir / "config.yml"
            config.write_text(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {self.dir / 'data'}\n  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.addr}\n  secret: kiln-bench\n"
            )
            self.log = open(self.dir / "registry.log", "w")
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdout=self.log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise Failed(f"docker-registry did not start; see {self.dir / 'registry.log'}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- the tools ---------------------------------------------------------------------------


class Kiln:
    name = "kiln"

    def __init__(self, binary, home, runner, store=None):
        self.binary = binary
        self.runner = runner
        self.home = home
        self.store = store or home / "kiln-store"

    def env(self):
        return {"KILN_ROOT": str(self.store)}

    def run(self, label, args):
        return self.runner.run(f"kiln-{label}", [self.binary] + args, self.env())

    def import_base(self, tarball):
        return self.run("import", ["import", tarball, BASE])

    def save_base(self, dest, fmt="oci-archive"):
        self.run("save", ["save", "-o", dest, "--format", fmt, BASE])

    def build(self, label, dockerfile, context, tag, no_cache=False, cache_from=None, cache_to=None,
              platforms=None):
        args = ["build", "--pull=never", "-f", dockerfile, "-t", tag]
        if no_cache:
            args.append("--no-cache")
        if platforms:
            args += ["--platform", ",".join(platforms)]
        if cache_from:
            args += ["--cache-from", cache_from]
        if cache_to:
            args += ["--cache-to", cache_to]
        return self.run(label, args + [context])

    def push(self, label, tag, dest):
        return self.run(label, ["push", tag, dest])

    def fresh(self, name):
        """The same kiln on a new, empty store beside this one's: a fresh CI runner."""
        store = self.home / name
        shutil.rmtree(store, ignore_errors=True)
        return Kiln(self.binary, self.home, self.runner, store)

    def remove(self):
        shutil.rmtree(self.store, ignore_errors=True)

    def forget_pushes(self):
        """Forgets the layers compressed for earlier pushes and where blobs were sent, so the
        next push compresses and uploads everything, as on a new machine."""
        shutil.rmtree(self.store / "cache" / "compressed", ignore_errors=True)
        (self.store / "cache" / "blob-locations.json").unlink(missing_ok=True)


class RootlessKiln(Kiln):
    """kiln run by an unprivileged user with subordinate ids (`setpriv`, as tests/rootless.rs
    does), with its store in that user's $XDG_DATA_HOME (kiln's default there) on `home`, which
    the user owns. The binary is copied there so the user can run it wherever the checkout is."""

    name = "kiln rootless"

    def __init__(self, binary, home, runner, user):
        self.uid, self.gid = ensure_rootless_user(user, runner)
        os.chown(home, self.uid, self.gid)
        os.chmod(home, 0o755)
        own = home / "kiln"
        shutil.copy(binary, own)
        os.chmod(own, 0o755)
        super().__init__(own, home, runner, home / ".local" / "share" / "kiln")

    def env(self):
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
        }

    def run(self, label, args):
        cmd = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--"]
        return self.runner.run(
            f"kiln-rootless-{label}", cmd + [self.binary] + args, self.env(),
            cwd=self.home, clean_env=True,
        )

    def fresh(self, name):
        raise NotImplementedError("the registry cache rows run root-mode kiln only")


def ensure_rootless_user(name, runner):
    """Creates `name` (no home, no login shell) unless it exists and gives it 65,536
    subordinate uids and gids after every range already given out, unless it has some; returns
    its (uid, gid). The user is left in place for the next run, as tests/rootless.rs leaves its."""
    if subprocess.call(["id", "-u", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        log(f"creating the user {name} for the rootless column (useradd, usermod --add-subuids)")
        runner.output([
            "useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
            "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name,
        ])
    for file, flag in [("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")]:
        try:
            lines = Path(file).read_text().splitlines()
        except FileNotFoundError:
            lines = []
        if any(line.split(":")[0] == name for line in lines):
            continue
        ends = [100_000]
        for line in lines:
            fields = line.split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                ends.append(int(fields[1]) + int(fields[2]))
        start = max(ends)
        runner.output(["usermod", flag, f"{start}-{start + 65_535}", name])
    uid = int(runner.output(["id", "-u", name]))
    gid = int(runner.output(["id", "-g", name]))
    return uid, gid


class BuildKit:
    """BuildKit as embedded in dockerd (Debian's docker.io, 20.10), on a private socket and data
    root: started here, stopped and removed at the end. Builds with the package's own CLI and
    DOCKER_BUILDKIT=1 (no buildx). Its peak memory is dockerd's own (VmHWM, reset before each
    command), not the CLI's: the build runs in the daemon."""

    name = "BuildKit"

    def __init__(self, home, runner):
        self.runner = runner
        self.data = home / "docker"
        # Sockets have a 108-byte path limit: the exec root and the socket go in /tmp.
        self.run_dir = Path(tempfile.mkdtemp(prefix="kiln-bench-dockerd-", dir="/tmp"))
        self.sock = self.run_dir / "docker.sock"
        self.log = open(runner.logs / "dockerd.log", "w")
        self.proc = subprocess.Popen(
            [
                "dockerd", "--data-root", self.data, "--exec-root", self.run_dir / "exec",
                "--pidfile", self.run_dir / "pid", "-H", f"unix://{self.sock}",
                "--iptables=false", "--ip-forward=false", "--bridge=none",
                "--storage-driver", "overlay2",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C reaches the benchmark, which stops it in order.
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Failed(f"dockerd did not start; see {runner.logs / 'dockerd.log'}")
            probe = subprocess.run(
                [DOCKER, "version"], env=dict(os.environ, **self.env()),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if probe.returncode == 0:
                break
            time.sleep(0.2)

    def env(self):
        return {
            "DOCKER_HOST": f"unix://{self.sock}",
            "DOCKER_BUILDKIT": "1",
            # A CLI configuration of its own: nothing from ~/.docker, nothing written there.
            "DOCKER_CONFIG": str(self.run_dir / "config"),
        }

    def run(self, label, args):
        """Runs the docker CLI; the peak RSS returned is dockerd's during the command."""
        clear_refs = Path(f"/proc/{self.proc.pid}/clear_refs")
        try:
            clear_refs.write_text("5")  # resets VmHWM
        except OSError:
            pass
        took, _ = self.runner.run(f"buildkit-{label}", [DOCKER] + args, self.env())
        rss = 0
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            rss = int(re.search(r"^VmHWM:\s*(\d+) kB", status, re.M).group(1))
        except (OSError, AttributeError):
            pass
        return took, rss

    def import_base(self, docker_archive):
        return self.run("load", ["load", "-i", docker_archive])

    def build(self, label, dockerfile, context, tag, no_cache=False, build_args=(), cache_from=None):
        args = ["build", "--network", "host", "--progress", "plain", "-f", dockerfile, "-t", tag]
        if no_cache:
            args.append("--no-cache")
        for arg in build_args:
            args += ["--build-arg", arg]
        if cache_from:
            args += ["--cache-from", cache_from]
        return self.run(label, args + [context])

    def push(self, label, tag, dest):
        self.runner.output([DOCKER, "tag", tag, dest], self.env())
        return self.run(label, ["push", dest])

    def forget_pushes(self):
        """Nothing to forget: dockerd compresses every push anew, and what it remembers of
        where layers went names a registry by host and port, so a new registry has none."""

    def forget_builds(self, keep):
        """A fresh runner's daemon: every image but `keep` removed and the build cache pruned."""
        images = self.runner.output(
            [DOCKER, "images", "--format", "{{.Repository}}:{{.Tag}}"], self.env()
        ).split()
        drop = [i for i in images if i not in keep and not i.endswith(":<none>")]
        if drop:
            self.runner.output([DOCKER, "rmi", "--force"] + drop, self.env())
        self.runner.output([DOCKER, "builder", "prune", "--all", "--force"], self.env())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        unmount_under(self.run_dir)
        unmount_under(self.data)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.data, ignore_errors=True)


class Buildah:
    name = "buildah"

    def __init__(self, home, runner):
        self.runner = runner
        self.root = home / "buildah" / "root"
        self.runroot = home / "buildah" / "runroot"
        self.root.mkdir(parents=True)
        self.runroot.mkdir(parents=True)

    def cmd(self, *args):
        return [
            "buildah",
            "--root",
            self.root,
            "--runroot",
            self.runroot,
            "--storage-driver",
            "overlay",
        ] + list(args)

    def import_base(self, oci_archive):
        took, rss = self.runner.run("buildah-pull-base", self.cmd("pull", f"oci-archive:{oci_archive}"))
        image = self.runner.output(self.cmd("images", "-q")).split()
        if not image:
            raise Failed("buildah pull of the base image left no image")
        self.runner.output(self.cmd("tag", image[0], f"localhost/{BASE}"))
        return took, rss

    def build(self, label, dockerfile, context, tag, no_cache=False, platforms=None):
        args = BUILDAH_BUD + ["-f", dockerfile]
        if no_cache:
            args.append("--no-cache")
        if platforms:
            # buildah 1.28 leaves BUILDPLATFORM undefined in a build for --platform (its warning
            # says to pass it), so `FROM --platform=$BUILDPLATFORM` would be the target's.
            args += ["--build-arg", f"BUILDPLATFORM={HOST_PLATFORM}"]
        if platforms and len(platforms) > 1:
            # Several platforms make a manifest list, which buildah adds to when it exists.
            subprocess.call(self.cmd("manifest", "rm", tag), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
            args += ["--platform", ",".join(platforms), "--manifest", tag]
        else:
            args += ["-t", tag] + (["--platform", platforms[0]] if platforms else [])
        return self.runner.run(f"buildah-{label}", self.cmd(*args, context))

    def push(self, label, tag, dest):
        return self.runner.run(
            f"buildah-{label}",
            self.cmd("push", "--tls-verify=false", tag, f"docker://{dest}"),
        )

    def forget_pushes(self):
        """Nothing to forget: buildah compresses every push anew, and its blob info cache
        knows nothing of a new registry."""

    def cleanup(self):
        subprocess.call(self.cmd("rm", "--all"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.call(
            self.cmd("rmi", "--all", "--force"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


# --- workloads ---------------------------------------------------------------------------

WORDS = (
    b"layer digest config manifest kiln build image error warning request response user cache "
    b"blob tar gzip zstd store index tag push pull registry snapshot"
).split()


def generate_bigctx(dest, files=20_000, total_mb=180, seed=7):
    """A deterministic context: 19,990 small text files and 10 large ones (half text, half
    random bytes), about `total_mb` MB in `files` files."""
    rng = random.Random(seed)
    # A pool of text to slice files from: words, numbers and newlines.
    parts = []
    size = 0
    while size < 4 << 20:
        word = WORDS[rng.randrange(len(WORDS))] if rng.random() < 0.85 else b"%d" % rng.randrange(10**6)
        sep = b"\n" if rng.random() < 0.1 else b" "
        parts.append(word + sep)
        size += len(word) + 1
    text = b"".join(parts)
    small = files - 10
    small_budget = total_mb * (1 << 20) * 45 // 100
    mean = small_budget // small
    written = 0
    for i in range(small):
        d = dest / "src" / f"d{i // 200:03d}"
        if i % 200 == 0:
            d.mkdir(parents=True)
        n = rng.randrange(mean // 4, mean * 7 // 4)
        start = rng.randrange(len(text) - n)
        (d / f"f{i:05d}.txt").write_bytes(text[start:start + n])
        written += n
    large = total_mb * (1 << 20) - written
    data = dest / "data"
    data.mkdir()
    for i in range(10):
        n = large // 10
        with open(data / f"large{i}.bin", "wb") as f:
            if i % 2 == 0:
                while n > 0:
                    chunk = min(n, len(text))
                    f.write(text[:chunk])
                    n -= chunk
            else:
                f.write(rng.randbytes(n))
    return dest / "src" / "d000" / "f00000.txt"


class Workload:
    def __init__(self, name, dockerfile, context, changed_file=None, push=True):
        self.name = name
        self.dockerfile = dockerfile
        self.context = context
        self.changed_file = changed_file
        self.push = push

    def change_one_file(self, run):
        with open(self.changed_file, "a") as f:
            f.write(f"changed by the benchmark, run {run}\n")


def workloads(work, only):
    contexts = work / "contexts"
    contexts.mkdir()
    out = []
    if not only or "seed" in only:
        ctx = contexts / "seed"
        shutil.copytree(WORKLOADS / "seed", ctx)
        out.append(Workload("seed", ctx / "Dockerfile", ctx, ctx / "webroot" / "index.html"))
    if not only or "bigctx" in only:
        ctx = contexts / "bigctx"
        ctx.mkdir()
        log("generating the 20,000-file context ...")
        changed = generate_bigctx(ctx)
        out.append(Workload("bigctx", WORKLOADS / "bigctx" / "Dockerfile", ctx, changed))
    if not only or "multiplatform" in only:
        ctx = contexts / "multiplatform"
        ctx.mkdir()
        out.append(
            Workload("multiplatform", WORKLOADS / "multiplatform" / "Dockerfile", ctx, push=False)
        )
    if not only or "multistage" in only:
        ctx = contexts / "empty"
        ctx.mkdir()
        out.append(Workload("multistage", WORKLOADS / "multistage" / "Dockerfile", ctx))
        out.append(
            Workload(
                "multistage-serial", WORKLOADS / "multistage-serial" / "Dockerfile", ctx, push=False
            )
        )
    return out


# --- measuring ---------------------------------------------------------------------------


class Results:
    def __init__(self):
        self.times = {}  # (workload, metric, tool) → [seconds]
        self.rss = {}  # (workload, tool) → KiB
        self.failures = {}  # (workload, metric, tool) → message

    def measure(self, workload, metric, tool, action):
        key = (workload, metric, tool.name)
        if key in self.failures:
            return
        try:
            took, rss = action()
        except Failed as e:
            self.failures[key] = str(e)
            log(f"  FAILED: {e}")
            return
        self.times.setdefault(key, []).append(took)
        self.rss[(workload, tool.name)] = max(self.rss.get((workload, tool.name), 0), rss)
        log(f"  {workload:<18} {metric:<17} {tool.name:<13} {took:7.2f}s  {rss / 1024:6.1f} MB")

    def median(self, workload, metric, tool):
        values = self.times.get((workload, metric, tool))
        return statistics.median(values) if values else None


def run_workload(w, tools, results, runs, work):
    tag = f"bench/{w.name}:latest"
    # One untimed build each: warms the page cache and gives the cached rebuilds a cache.
    for tool in tools:
        results.measure(w.name, "warm-up", tool, lambda: tool.build("warmup", w.dockerfile, w.context, tag))
    for i in range(runs):
        for tool in tools:
            results.measure(
                w.name, "no-cache build", tool,
                lambda: tool.build("nocache", w.dockerfile, w.context, tag, no_cache=True),
            )
        if w.name == "multistage-serial":
            continue
        for tool in tools:
            results.measure(
                w.name, "cached rebuild", tool,
                lambda: tool.build("cached", w.dockerfile, w.context, tag),
            )
        if w.changed_file:
            w.change_one_file(i)
            for tool in tools:
                results.measure(
                    w.name, "one-file change", tool,
                    lambda: tool.build("onefile", w.dockerfile, w.context, tag),
                )
    if not w.push:
        return
    for i in range(runs):
        for tool in tools:
            # Every push is a first push: to a registry of its own (nothing to mount from, no
            # blob there yet), with kiln's compressed layers forgotten (buildah keeps none).
            registry = Registry(work / "registries" / f"{w.name}-{i}-{tool.name}")
            try:
                tool.forget_pushes()
                dest = f"{registry.addr}/{w.name}:latest"
                results.measure(w.name, "push", tool, lambda: tool.push("push", tag, dest))
                results.measure(w.name, "re-push", tool, lambda: tool.push("repush", tag, dest))
            finally:
                registry.stop()
                shutil.rmtree(registry.dir, ignore_errors=True)


# The multiplatform workload's builds: the host's platform alone, then it and the other of
# amd64 and arm64.
HOST_PLATFORM = "linux/arm64" if platform.machine() == "aarch64" else "linux/amd64"
ONE_PLATFORM = [HOST_PLATFORM]
TWO_PLATFORMS = [HOST_PLATFORM, "linux/amd64" if HOST_PLATFORM == "linux/arm64" else "linux/arm64"]


def run_multiplatform(w, tools, results, runs):
    """No-cache builds of the cross-compiling workload for one platform and for two, by the
    tools that build several platforms at once (not dockerd 20.10's CLI: that needs buildx)."""
    # Apart: buildah's manifest list cannot take the name of an image.
    one, two = f"bench/{w.name}:one", f"bench/{w.name}:two"
    tools = [t for t in tools if isinstance(t, (Kiln, Buildah))]
    for tool in tools:
        results.measure(w.name, "warm-up", tool, lambda: tool.build(
            "warmup", w.dockerfile, w.context, two, platforms=TWO_PLATFORMS))
    for _ in range(runs):
        for metric, tag, platforms in [("1 platform", one, ONE_PLATFORM),
                                       ("2 platforms", two, TWO_PLATFORMS)]:
            for tool in tools:
                results.measure(w.name, metric, tool, lambda: tool.build(
                    "multi", w.dockerfile, w.context, tag, no_cache=True, platforms=platforms))


def registry_cache(w, kiln, buildkit, results, runs, work, base_archive):
    """The fresh-runner rows of issue 11: runner A exports its cache to a registry, a fresh
    store B builds from it. Every run gets a new registry already holding the base image (as a
    CI registry does), so the plain push and the export both send only the workload's new
    layers, with kiln's compressed layers forgotten before each."""
    tag = f"bench/{w.name}:latest"
    for i in range(runs):
        registry = Registry(work / "registries" / f"{w.name}-cache-{i}")
        repo = f"{registry.addr}/{w.name}"
        try:
            # Two repositories holding the base, so neither upload finds the other's layers.
            for name in ["push", "cache"]:
                kiln.forget_pushes()
                kiln.push("cache-base", BASE, f"{repo}-{name}:base")  # untimed
            kiln.forget_pushes()
            results.measure(w.name, "push new layers", kiln,
                            lambda: kiln.push("cache-push", tag, f"{repo}-push:latest"))
            kiln.forget_pushes()
            # A build with every step cached, so the time is the export's (plus that of a
            # cached rebuild, subtracted in the table).
            results.measure(
                w.name, "build + export", kiln,
                lambda: kiln.build("cache-to", w.dockerfile, w.context, tag,
                                   cache_to=f"type=registry,ref={repo}-cache:cache,mode=max"),
            )
            for metric, cache_from in [("fresh, no cache", None),
                                       ("fresh, cache-from", f"type=registry,ref={repo}-cache:cache")]:
                fresh = kiln.fresh("kiln-fresh-runner")
                try:
                    fresh.run("fresh-load", ["load", "-i", base_archive])  # untimed: a pull
                    results.measure(
                        w.name, metric, kiln,
                        lambda: fresh.build("fresh", w.dockerfile, w.context, tag,
                                            cache_from=cache_from),
                    )
                finally:
                    fresh.remove()
            if buildkit:
                buildkit_inline_cache(w, buildkit, results, repo, tag)
        except Failed as e:
            results.failures[(w.name, "registry cache", "kiln")] = str(e)
            log(f"  FAILED: {e}")
        finally:
            registry.stop()
            shutil.rmtree(registry.dir, ignore_errors=True)


def buildkit_inline_cache(w, buildkit, results, repo, tag):
    """BuildKit's nearest equivalent through dockerd 20.10's own CLI, which has no buildx and
    so no --cache-to: the inline cache (BUILDKIT_INLINE_CACHE=1, mode=min: cache records in the
    pushed image's config) read back with --cache-from IMAGE by a daemon whose images and build
    cache were removed. The export is the push of that image."""
    inline = ["BUILDKIT_INLINE_CACHE=1"]
    buildkit.build("inline-cache", w.dockerfile, w.context, tag, build_args=inline)  # untimed
    buildkit.push("cache-base", BASE, f"{repo}-buildkit:base")  # untimed: the registry's base
    results.measure(w.name, "build + export", buildkit,
                    lambda: buildkit.push("inline-push", tag, f"{repo}-buildkit:cache"))
    for metric, cache_from in [("fresh, no cache", None),
                               ("fresh, cache-from", f"{repo}-buildkit:cache")]:
        buildkit.forget_builds(keep={BASE})
        results.measure(
            w.name, metric, buildkit,
            lambda: buildkit.build("fresh", w.dockerfile, w.context, tag,
                                   build_args=inline, cache_from=cache_from),
        )


def layer_compression(bench_layers, sources, runs, results, logs):
    """examples/bench_layers on each source: (label, gzip ratio, zstd ratio, peak RSS, output)."""
    rows = []
    for label, source in sources:
        log(f"layer compression on {label} ...")
        done = subprocess.run(
            [bench_layers, "--source", source, "--runs", str(runs)],
            capture_output=True,
            text=True,
        )
        ratios = dict(re.findall(r"^(gzip|zstd): kiln throughput is ([0-9.]+)x", done.stdout, re.M))
        rss = re.search(r"^kiln \(gzip\).*?([0-9.]+ MB)\s*$", done.stdout, re.M)
        rows.append((label, ratios.get("gzip"), ratios.get("zstd"), rss.group(1) if rss else None, done.stdout))
        logfile = logs / f"bench_layers-{label.replace(' ', '-')}.log"
        logfile.write_text(done.stdout + done.stderr)
        log(done.stdout.rstrip())
        if done.returncode != 0 or len(ratios) != 2:
            results.failures[(f"layers: {label}", "compression", "kiln")] = (
                f"bench_layers exited with {done.returncode}; see {logfile}"
            )
    return rows


# --- the table ---------------------------------------------------------------------------

# Issue 14's budgets: kiln's median over the best peer's (the faster of buildah and BuildKit),
# and absolute times where a ratio says little.
BUDGETS = {
    "no-cache build": (0.5, None),
    "cached rebuild": (0.2, None),
    "one-file change": (0.3, None),
    "push": (0.5, None),
    "re-push": (None, 0.3),
}
PEERS = ["buildah", "BuildKit"]
ROOTLESS = "kiln rootless"
# Issue 15: rootless within 10% of root mode.
ROOTLESS_BUDGET = 1.1


def verdict(ok):
    return "ok" if ok else "OVER"


def seconds(results, w, metric, tool):
    if results.failures.get((w, metric, tool)):
        return "FAILED"
    t = results.median(w, metric, tool)
    return f"{t:.2f} s" if t is not None else "-"


def render(header, cols, rows):
    widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]
    fmt = lambda r: "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip()
    lines = [header, ""] if header else []
    lines.append(fmt(cols))
    lines.append(fmt(["-" * w for w in widths]))
    lines.extend(fmt(r) for r in rows)
    return "\n".join(lines)


def table(results, workload_names, layer_rows, header, columns):
    peers = [c for c in columns if c in PEERS]
    rootless = ROOTLESS in columns
    rows = []

    def best_peer(w, metric):
        """(seconds, name) of the fastest peer's median, or (None, None)."""
        times = [(results.median(w, metric, p), p) for p in peers]
        times = [(t, p) for t, p in times if t]
        return min(times) if times else (None, None)

    def row(w, metric, cells, ratio, rl_ratio, budget, checks, failed):
        return [w, metric] + cells + [ratio] + ([rl_ratio] if rootless else []) + [
            " and ".join(budget) or "-",
            "FAILED" if failed else (verdict(all(checks)) if checks else "-"),
        ]

    for w in workload_names:
        for metric in ["no-cache build", "cached rebuild", "one-file change", "push", "re-push"]:
            cells = [seconds(results, w, metric, c) for c in columns]
            if all(c == "-" for c in cells):
                continue
            k = results.median(w, metric, "kiln")
            best, best_name = best_peer(w, metric)
            ratio = k / best if k is not None and best else None
            rl = results.median(w, metric, ROOTLESS)
            rl_ratio = rl / k if rl is not None and k else None
            ratio_budget, abs_budget = BUDGETS[metric]
            if w == "seed" and metric == "cached rebuild":
                abs_budget = 0.3
            if w == "multistage-serial":
                ratio_budget = None
            budget, checks = [], []
            if ratio_budget is not None:
                budget.append(f"≤ {ratio_budget:g}x")
                if ratio is not None:
                    checks.append(ratio <= ratio_budget)
            if abs_budget is not None:
                budget.append(f"kiln < {abs_budget:g} s")
                if k is not None:
                    checks.append(k < abs_budget)
            if rootless and w != "multistage-serial":
                budget.append(f"rootless ≤ {ROOTLESS_BUDGET:g}x")
                if rl_ratio is not None:
                    checks.append(rl_ratio <= ROOTLESS_BUDGET)
            failed = any(c == "FAILED" for c in cells[:2 if rootless else 1])
            rows.append(row(
                w, metric, cells,
                f"{ratio:.2f}x {best_name}" if ratio is not None else "-",
                f"{rl_ratio:.2f}x" if rl_ratio is not None else "-",
                budget, checks, failed,
            ))
        rss = {c: results.rss.get((w, c)) for c in columns}
        if any(rss.values()):
            k_rss = rss["kiln"]
            peer_rss = [(rss[p], p) for p in peers if rss[p]]
            best_rss = min(peer_rss) if peer_rss else None
            rl_rss = rss.get(ROOTLESS)
            rows.append(row(
                w, "peak RSS",
                [f"{rss[c] / 1024:.0f} MB" if rss[c] else "-" for c in columns],
                f"{k_rss / best_rss[0]:.2f}x {best_rss[1]}" if k_rss and best_rss else "-",
                f"{rl_rss / k_rss:.2f}x" if rl_rss and k_rss else "-",
                ["kiln < 100 MB"], [k_rss < 100 * 1024] if k_rss else [], False,
            ))
    par = {c: results.median("multistage", "no-cache build", c) for c in columns}
    ser = {c: results.median("multistage-serial", "no-cache build", c) for c in columns}
    if par["kiln"] and ser["kiln"]:
        k = par["kiln"] / ser["kiln"]
        rows.append(row(
            "multistage", "parallel/serial",
            [f"{par[c] / ser[c]:.2f}x" if par[c] and ser[c] else "-" for c in columns],
            "-", "-", ["kiln ≤ 0.6x"], [k <= 0.6], False,
        ))
    one = {c: results.median("multiplatform", "1 platform", c) for c in columns}
    two = {c: results.median("multiplatform", "2 platforms", c) for c in columns}
    if one["kiln"] or two["kiln"]:
        for metric in ["1 platform", "2 platforms"]:
            k = results.median("multiplatform", metric, "kiln")
            best, best_name = best_peer("multiplatform", metric)
            rl = results.median("multiplatform", metric, ROOTLESS)
            rows.append(row(
                "multiplatform", metric,
                [seconds(results, "multiplatform", metric, c) for c in columns],
                f"{k / best:.2f}x {best_name}" if k and best else "-",
                f"{rl / k:.2f}x" if rl and k else "-", [], [], False,
            ))
        k = two["kiln"] / one["kiln"] if one["kiln"] and two["kiln"] else None
        rows.append(row(
            "multiplatform", "2 platforms/1",
            [f"{two[c] / one[c]:.2f}x" if one[c] and two[c] else "-" for c in columns],
            "-", "-", ["kiln ≤ 1.3x"], [k <= 1.3] if k else [], k is None,
        ))
    blank = ["-"] * len(columns)
    for label, gz, zs, rss, _ in layer_rows:
        for name, ratio, peer in [("gzip", gz, "pigz -p 2"), ("zstd", zs, "zstd -T2")]:
            rows.append(row(
                f"layers: {label}", f"{name} MB/s vs {peer}", blank,
                f"{ratio}x" if ratio else "FAILED", "-", ["≥ 0.9x (issue 3)"],
                [float(ratio) >= 0.9] if ratio else [], not ratio,
            ))
        if rss:
            rows.append(row(f"layers: {label}", "peak RSS", [rss] + blank[1:], "-", "-",
                            ["kiln < 100 MB"], [float(rss.split()[0]) < 100], False))
    cols = (["workload", "metric"] + columns + ["kiln/best peer"]
            + (["rootless/kiln"] if rootless else []) + ["budget", ""])
    return render(header, cols, rows)


def cache_table(results, workload_names):
    """The registry cache rows (issue 11): kiln's and BuildKit's fresh runner, and kiln's export
    against a plain push of the same new layers."""
    rows = []
    columns = [c for c in ["kiln", "BuildKit"]
               if any(results.median(w, "fresh, cache-from", c) for w in workload_names)
               or any(results.failures.get((w, "fresh, cache-from", c)) for w in workload_names)]
    if not columns:
        return ""
    for w in workload_names:
        if not any(results.median(w, "fresh, no cache", c) for c in columns):
            continue
        push = results.median(w, "push new layers", "kiln")
        export = results.median(w, "build + export", "kiln")
        cached = results.median(w, "cached rebuild", "kiln")
        rows.append([w, "push new layers"]
                    + [seconds(results, w, "push new layers", c) for c in columns]
                    + ["-", "-", ""])
        if export is not None and push and cached is not None:
            r = max(export - cached, 0) / push
            ratio, checks = f"{r:.2f}x", [r <= 1.1]
        else:
            ratio, checks = "-", []
        rows.append([w, "build + export"]
                    + [seconds(results, w, "build + export", c) for c in columns]
                    + [ratio, "(export − cached rebuild) ≤ 1.1x push", verdict(all(checks)) if checks else "-"])
        cold = results.median(w, "fresh, no cache", "kiln")
        rows.append([w, "fresh, no cache"]
                    + [seconds(results, w, "fresh, no cache", c) for c in columns]
                    + ["-", "-", ""])
        warm = results.median(w, "fresh, cache-from", "kiln")
        if warm is not None and cold:
            r = warm / cold
            ratio, checks = f"{r:.2f}x", [r <= 0.1] if w == "bigctx" else []
        else:
            ratio, checks = "-", []
        bk_cold = results.median(w, "fresh, no cache", "BuildKit")
        bk_warm = results.median(w, "fresh, cache-from", "BuildKit")
        if bk_cold and bk_warm:
            ratio += f" (BuildKit {bk_warm / bk_cold:.2f}x)"
        rows.append([w, "fresh, cache-from"]
                    + [seconds(results, w, "fresh, cache-from", c) for c in columns]
                    + [ratio, "≤ 0.1x no cache (bigctx)" if w == "bigctx" else "-",
                       verdict(all(checks)) if checks else "-"])
    header = ("registry cache (issue 11): kiln --cache-to type=registry,mode=max / --cache-from "
              "into a fresh store; BuildKit: inline cache (dockerd 20.10's CLI has no buildx)")
    return render(header, ["workload", "metric"] + columns + ["kiln ratio", "budget", ""], rows)


# --- main --------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description="kiln against buildah and BuildKit (see bench/README.md)")
    p.add_argument("-n", "--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 3)),
                   help="runs per measurement; the table shows medians (default 3, or $BENCH_RUNS)")
    p.add_argument("--only", action="append",
                   choices=["seed", "bigctx", "multistage", "multiplatform", "layers"],
                   help="run only these workloads (repeatable)")
    p.add_argument("--without", action="append", default=[],
                   choices=["buildah", "buildkit", "rootless", "cache"],
                   help="leave out a peer, the rootless column or the registry cache rows (repeatable)")
    p.add_argument("--kiln", help="a kiln binary to use instead of building this checkout")
    p.add_argument("--bench-layers", help="the bench_layers example binary (with --kiln)")
    p.add_argument("--cache", help="cache directory (default: $XDG_CACHE_HOME/kiln-bench or bench/.cache)")
    p.add_argument("--suite", default=os.environ.get("BENCH_DEBIAN_SUITE", "bookworm"))
    p.add_argument("--mirror", default=os.environ.get("BENCH_DEBIAN_MIRROR", "http://deb.debian.org/debian"))
    p.add_argument("--keep", action="store_true", help="keep the work directory (stores, logs)")
    p.add_argument("--fs", choices=["ext4", "disk"], default=os.environ.get("BENCH_FS", "ext4"),
                   help="where each tool's store is: a new ext4 image of its own, loop-mounted "
                        "(default), or the work directory's own filesystem")
    p.add_argument("--rootless-user", default=ROOTLESS_USER,
                   help=f"the user the rootless column runs as (default {ROOTLESS_USER}; created "
                        "with subordinate ids if missing)")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    without = set(args.without)

    check_prerequisites(args.fs, without)
    kiln_bin, bench_layers = build_kiln(args)
    cache = cache_dir(args)
    rootfs, tarball = debian_base(cache, args)
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=cache))
    # The rootless user reads the contexts and the base tarball from here.
    os.chmod(work, 0o755)
    logs = work / "logs"
    logs.mkdir()
    runner = Runner(logs)
    load_before = load_average()
    started = time.monotonic()
    log(f"work directory {work} (logs in {logs}); {args.runs} runs; load average {load_before}")

    buildah = None
    buildkit = None
    results = Results()
    layer_rows = []
    names = []
    columns = ["kiln"]
    try:
        homes = {}
        parts = ["kiln"] + [t for t in ["rootless", "buildah", "buildkit"] if t not in without]
        for tool in parts:
            homes[tool] = work / f"{tool}-fs"
            homes[tool].mkdir()
            if args.fs == "ext4":
                mount_ext4(work / f"{tool}.ext4", homes[tool], runner)
        kiln = Kiln(kiln_bin, homes["kiln"], runner)
        tools = [kiln]
        if "rootless" in homes:
            tools.append(RootlessKiln(kiln_bin, homes["rootless"], runner, args.rootless_user))
        if "buildah" in homes:
            buildah = Buildah(homes["buildah"], runner)
            tools.append(buildah)
        if "buildkit" in homes:
            log("starting dockerd (BuildKit) on a private socket and data root ...")
            buildkit = BuildKit(homes["buildkit"], runner)
            tools.append(buildkit)
        columns = [t.name for t in tools]
        only = set(args.only or [])
        layers_only = only == {"layers"}
        if not layers_only:
            # Base images: imported once by each tool, reported apart (like a pull).
            results.measure("base import", "import", kiln, lambda: kiln.import_base(tarball))
            archive = work / "base.oci.tar"
            kiln.save_base(archive)
            docker_archive = work / "base.docker.tar"
            kiln.save_base(docker_archive, "docker-archive")
            for tool in tools[1:]:
                source = {Kiln: tarball, RootlessKiln: tarball, Buildah: archive,
                          BuildKit: docker_archive}[type(tool)]
                results.measure("base import", "import", tool, lambda: tool.import_base(source))
            for w in workloads(work, only - {"layers"}):
                log(f"workload {w.name}:")
                names.append(w.name)
                if w.name == "multiplatform":
                    run_multiplatform(w, tools, results, args.runs)
                    continue
                run_workload(w, tools, results, args.runs, work)
                if w.push and "cache" not in without:
                    log(f"workload {w.name}: registry cache (fresh runner)")
                    registry_cache(w, kiln, buildkit, results, args.runs, work, archive)
        if bench_layers and (not only or "layers" in only):
            sources = [("Debian base", rootfs)]
            bigctx = work / "contexts" / "bigctx"
            if bigctx.exists():
                sources.append(("bigctx context", bigctx))
            layer_rows = layer_compression(bench_layers, sources, args.runs, results, logs)
        elif not bench_layers:
            log("no bench_layers binary: the layer compression rows are left out")
    finally:
        if buildkit:
            buildkit.stop()
        if buildah:
            buildah.cleanup()
        # buildah leaves its storage's own mounts behind; with --fs ext4, the images too.
        unmount_under(work)
        # A failure's log is worth keeping.
        if args.keep or results.failures:
            args.keep = True
        else:
            shutil.rmtree(work, ignore_errors=True)

    imports = []
    for tool in columns:
        t = results.median("base import", "import", tool)
        if t is not None:
            imports.append(f"{tool} {t:.2f} s")
    header = (
        f"kiln vs {', '.join(c for c in columns if c in PEERS) or 'nobody'}: medians of {args.runs} runs; "
        f"load average {load_before} before, {load_average()} after; "
        f"{os.cpu_count()} CPUs; {time.monotonic() - started:.0f} s in all"
        f"\nbuildah: {' '.join(BUILDAH_BUD[:4])}; BuildKit: dockerd {docker_version()} "
        "with DOCKER_BUILDKIT=1 docker build --network host"
    )
    if imports:
        header += f"\nbase image import (not in the budget): {', '.join(imports)}"
    header += "\nstores: " + (
        "a new ext4 filesystem image per tool (--fs ext4)"
        if args.fs == "ext4"
        else f"the work directory's filesystem (--fs disk: {filesystem_of(work)})"
    )
    print(table(results, names, layer_rows, header, columns))
    cache_rows = cache_table(results, names)
    if cache_rows:
        print()
        print(cache_rows)
    for (w, metric, tool), msg in sorted(results.failures.items()):
        print(f"failed: {w} {metric} {tool}: {msg}")
    if args.keep:
        print(f"work directory kept: {work}")
    return 1 if results.failures else 0


def docker_version():
    try:
        out = subprocess.run([DOCKER, "--version"], capture_output=True, text=True).stdout
        return out.split()[2].rstrip(",")
    except (OSError, IndexError):
        return "?"


def stop_on_sigterm():
    """A SIGTERM (a timeout, a CI cancel) stops the run as Ctrl-C does, so the cleanup in
    main's `finally` runs: dockerd stopped, filesystems unmounted."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    stop_on_sigterm()
    try:
        sys.exit(main())
    except Failed as e:
        log(f"bench: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
