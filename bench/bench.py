#!/usr/bin/env python3
"""kiln against buildah on this machine: build, rebuild, push and memory, side by side.

Run through `bash bench/run.sh` (see bench/README.md). Standard library only.

What it does, in order:
  1. Checks the prerequisites and says what is missing (it installs nothing).
  2. Builds kiln and the layer benchmark from this checkout (`cargo build --release`) unless
     --kiln names a binary.
  3. Makes a Debian base with debootstrap once (cached under bench/.cache or
     $XDG_CACHE_HOME/kiln-bench), imports it into a fresh kiln store (`kiln import`) and, as the
     same OCI archive, into a private buildah store (--root/--runroot). Each store is on a
     filesystem of its own (--fs ext4, the default: a new ext4 image per tool, loop-mounted), so
     neither tool's deletions slow the other's file creation (see bench/README.md).
  4. Runs the workloads of bench/workloads with both tools, alternating them so a shared
     machine's load falls on both: no-cache build, cached rebuild, rebuild after changing one
     context file; then pushes every result to a new local docker-registry (a first push)
     and pushes it again.
  5. Runs examples/bench_layers on the workload's bytes (layer compression against pigz/zstd).
  6. Prints one table: medians of N runs, kiln/buildah ratios, the budget of issue 7.

Times are wall-clock seconds around each command; peak memory is GNU time's maximum resident
set (%M: the largest single process of the command's tree, kiln's own or buildah's).
"""

import argparse
import os
import random
import re
import shutil
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
    "buildah": "buildah",
    "debootstrap": "debootstrap",
    "docker-registry": "docker-registry",
    "pigz": "pigz",
    "zstd": "zstd",
    "tar": "tar",
}
# With --fs ext4.
EXT4_PREREQUISITES = {"mkfs.ext4": "e2fsprogs", "mount": "mount"}
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

    def run(self, name, cmd, env=None, cwd=None):
        """Runs `cmd`; returns (seconds, peak RSS in KiB). Raises Failed on a non-zero exit."""
        self.count += 1
        logfile = self.logs / f"{self.count:04d}-{name}.log"
        timefile = self.logs / f"{self.count:04d}-{name}.time"
        full_env = dict(os.environ)
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


def check_prerequisites(fs):
    needed = dict(PREREQUISITES, **(EXT4_PREREQUISITES if fs == "ext4" else {}))
    missing = [pkg for tool, pkg in needed.items() if shutil.which(tool) is None]
    if not os.access(GNU_TIME, os.X_OK):
        missing.append("time")
    problems = []
    if missing:
        problems.append(
            "missing: " + ", ".join(sorted(set(missing)))
            + "\n  install them with: apt-get install " + " ".join(sorted(set(missing)))
        )
    if os.geteuid() != 0:
        problems.append(
            "run as root: debootstrap, buildah's chroot isolation and kiln's RUN sandbox need it"
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


# --- the two tools -----------------------------------------------------------------------


class Kiln:
    name = "kiln"

    def __init__(self, binary, home, runner):
        self.binary = binary
        self.runner = runner
        self.store = home / "kiln-store"

    def env(self):
        return {"KILN_ROOT": str(self.store)}

    def import_base(self, tarball):
        return self.runner.run("kiln-import", [self.binary, "import", tarball, BASE], self.env())

    def save_base(self, dest):
        self.runner.run(
            "kiln-save",
            [self.binary, "save", "-o", dest, "--format", "oci-archive", BASE],
            self.env(),
        )

    def build(self, label, dockerfile, context, tag, no_cache=False):
        cmd = [self.binary, "build", "--pull=never", "-f", dockerfile, "-t", tag]
        if no_cache:
            cmd.append("--no-cache")
        return self.runner.run(f"kiln-{label}", cmd + [context], self.env())

    def push(self, label, tag, dest):
        return self.runner.run(f"kiln-{label}", [self.binary, "push", tag, dest], self.env())

    def forget_pushes(self):
        """Forgets the layers compressed for earlier pushes and where blobs were sent, so the
        next push compresses and uploads everything, as on a new machine."""
        shutil.rmtree(self.store / "cache" / "compressed", ignore_errors=True)
        (self.store / "cache" / "blob-locations.json").unlink(missing_ok=True)


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

    def build(self, label, dockerfile, context, tag, no_cache=False):
        args = BUILDAH_BUD + ["-f", dockerfile, "-t", tag]
        if no_cache:
            args.append("--no-cache")
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
        log(f"  {workload:<18} {metric:<16} {tool.name:<8} {took:7.2f}s  {rss / 1024:6.1f} MB")

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

BUDGETS = {
    "no-cache build": (0.5, None),
    "cached rebuild": (0.2, None),
    "one-file change": (0.3, None),
    "push": (1.0, None),
    "re-push": (None, 0.3),
}


def verdict(ok):
    return "ok" if ok else "OVER"


def table(results, workload_names, layer_rows, header):
    rows = []
    for w in workload_names:
        for metric in ["no-cache build", "cached rebuild", "one-file change", "push", "re-push"]:
            k = results.median(w, metric, "kiln")
            b = results.median(w, metric, "buildah")
            kf = results.failures.get((w, metric, "kiln"))
            bf = results.failures.get((w, metric, "buildah"))
            if k is None and b is None and not kf and not bf:
                continue
            ratio = k / b if k is not None and b else None
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
            rows.append([
                w, metric,
                "FAILED" if kf else (f"{k:.2f} s" if k is not None else "-"),
                "FAILED" if bf else (f"{b:.2f} s" if b is not None else "-"),
                f"{ratio:.2f}x" if ratio is not None else "-",
                " and ".join(budget) or "-",
                verdict(all(checks)) if checks and not kf else ("-" if not kf else "FAILED"),
            ])
        k_rss = results.rss.get((w, "kiln"))
        b_rss = results.rss.get((w, "buildah"))
        if k_rss or b_rss:
            rows.append([
                w, "peak RSS",
                f"{k_rss / 1024:.0f} MB" if k_rss else "-",
                f"{b_rss / 1024:.0f} MB" if b_rss else "-",
                f"{k_rss / b_rss:.2f}x" if k_rss and b_rss else "-",
                "kiln < 100 MB",
                verdict(k_rss < 100 * 1024) if k_rss else "-",
            ])
    par = results.median("multistage", "no-cache build", "kiln")
    ser = results.median("multistage-serial", "no-cache build", "kiln")
    if par and ser:
        rows.append([
            "multistage", "parallel/serial", f"{par / ser:.2f}x",
            "-", "-", "kiln ≤ 0.6x", verdict(par / ser <= 0.6),
        ])
        bpar = results.median("multistage", "no-cache build", "buildah")
        bser = results.median("multistage-serial", "no-cache build", "buildah")
        if bpar and bser:
            rows[-1][3] = f"{bpar / bser:.2f}x"
    for label, gz, zs, rss, _ in layer_rows:
        for name, ratio, peer in [("gzip", gz, "pigz -p 2"), ("zstd", zs, "zstd -T2")]:
            rows.append([
                f"layers: {label}", f"{name} MB/s vs {peer}", "-", "-",
                f"{ratio}x" if ratio else "FAILED", "≥ 0.9x (issue 3)",
                verdict(float(ratio) >= 0.9) if ratio else "FAILED",
            ])
        if rss:
            rows.append([f"layers: {label}", "peak RSS", rss, "-", "-", "kiln < 100 MB",
                         verdict(float(rss.split()[0]) < 100)])
    cols = ["workload", "metric", "kiln", "buildah", "kiln/buildah", "budget", ""]
    widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]
    lines = [header, ""]
    fmt = lambda r: "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip()
    lines.append(fmt(cols))
    lines.append(fmt(["-" * w for w in widths]))
    lines.extend(fmt(r) for r in rows)
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description="kiln against buildah (see bench/README.md)")
    p.add_argument("-n", "--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 3)),
                   help="runs per measurement; the table shows medians (default 3, or $BENCH_RUNS)")
    p.add_argument("--only", action="append", choices=["seed", "bigctx", "multistage", "layers"],
                   help="run only these workloads (repeatable)")
    p.add_argument("--kiln", help="a kiln binary to use instead of building this checkout")
    p.add_argument("--bench-layers", help="the bench_layers example binary (with --kiln)")
    p.add_argument("--cache", help="cache directory (default: $XDG_CACHE_HOME/kiln-bench or bench/.cache)")
    p.add_argument("--suite", default=os.environ.get("BENCH_DEBIAN_SUITE", "bookworm"))
    p.add_argument("--mirror", default=os.environ.get("BENCH_DEBIAN_MIRROR", "http://deb.debian.org/debian"))
    p.add_argument("--keep", action="store_true", help="keep the work directory (stores, logs)")
    p.add_argument("--fs", choices=["ext4", "disk"], default=os.environ.get("BENCH_FS", "ext4"),
                   help="where each tool's store is: a new ext4 image of its own, loop-mounted "
                        "(default), or the work directory's own filesystem")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")

    check_prerequisites(args.fs)
    kiln_bin, bench_layers = build_kiln(args)
    cache = cache_dir(args)
    rootfs, tarball = debian_base(cache, args)
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=cache))
    logs = work / "logs"
    logs.mkdir()
    runner = Runner(logs)
    load_before = load_average()
    started = time.monotonic()
    log(f"work directory {work} (logs in {logs}); {args.runs} runs; load average {load_before}")

    buildah = None
    results = Results()
    layer_rows = []
    names = []
    try:
        homes = {}
        for tool in ["kiln", "buildah"]:
            homes[tool] = work / f"{tool}-fs"
            homes[tool].mkdir()
            if args.fs == "ext4":
                mount_ext4(work / f"{tool}.ext4", homes[tool], runner)
        kiln = Kiln(kiln_bin, homes["kiln"], runner)
        buildah = Buildah(homes["buildah"], runner)
        only = set(args.only or [])
        layers_only = only == {"layers"}
        if not layers_only:
            # Base images: imported once by each tool, reported apart (like a pull).
            results.measure("base import", "import", kiln, lambda: kiln.import_base(tarball))
            archive = work / "base.oci.tar"
            kiln.save_base(archive)
            results.measure("base import", "import", buildah, lambda: buildah.import_base(archive))
            tools = [kiln, buildah]
            for w in workloads(work, only - {"layers"}):
                log(f"workload {w.name}:")
                names.append(w.name)
                run_workload(w, tools, results, args.runs, work)
        if bench_layers and (not only or "layers" in only):
            sources = [("Debian base", rootfs)]
            bigctx = work / "contexts" / "bigctx"
            if bigctx.exists():
                sources.append(("bigctx context", bigctx))
            layer_rows = layer_compression(bench_layers, sources, args.runs, results, logs)
        elif not bench_layers:
            log("no bench_layers binary: the layer compression rows are left out")
    finally:
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
    for tool in ["kiln", "buildah"]:
        t = results.median("base import", "import", tool)
        if t is not None:
            imports.append(f"{tool} {t:.2f} s")
    header = (
        f"kiln vs buildah ({' '.join(BUILDAH_BUD[:4])}): medians of {args.runs} runs; "
        f"load average {load_before} before, {load_average()} after; "
        f"{os.cpu_count()} CPUs; {time.monotonic() - started:.0f} s in all"
    )
    if imports:
        header += f"\nbase image import (not in the budget): {', '.join(imports)}"
    header += "\nstores: " + (
        "a new ext4 filesystem image per tool (--fs ext4)"
        if args.fs == "ext4"
        else f"the work directory's filesystem (--fs disk: {filesystem_of(work)})"
    )
    print(table(results, names, layer_rows, header))
    for (w, metric, tool), msg in sorted(results.failures.items()):
        print(f"failed: {w} {metric} {tool}: {msg}")
    if args.keep:
        print(f"work directory kept: {work}")
    return 1 if results.failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        log(f"bench: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
