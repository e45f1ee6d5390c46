//! Layer-writing throughput: kiln's layer writer (gzip and zstd) against `tar -c | pigz -p 2`
//! and `tar -c | zstd -T2` at kiln's levels on the same ~500 MB tree, and kiln's peak memory.
//!
//! ```text
//! cargo run --release --example bench_layers [-- --size-mb 500 --runs 3 --dir DIR]
//!     [--tree DIR | --source DIR] [--only kiln|tools] [--compression gzip|zstd] [-v]
//! ```
//!
//! `--tree DIR` keeps the generated tree in `DIR` and reuses it on later runs (for profiling);
//! `--source DIR` measures an existing directory instead (`bench/run.sh` passes a workload's
//! context and the Debian base); `--only` and `--compression` narrow what runs. The tree is
//! generated deterministically (a fixed xorshift seed): many small text-like files (about a
//! quarter of the bytes), a few large compressible files (log-like text) and a few large
//! incompressible ones (random bytes). Every tool writes to a sink (`/dev/null` for the
//! pipelines, `io::sink()` for kiln), so the numbers compare reading, archiving, hashing and
//! compressing. kiln and the tool runs alternate, so a shared machine's load falls on both; each
//! line reports the median of `--runs` and their range, the ratio is of the medians, and the load
//! average is printed before and after (the page cache is warm for all). Peak memory is the
//! process's `VmHWM`, reset through `/proc/self/clear_refs` before each kiln run.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_builder::layer::{
    ChangeKind, Compression, GZIP_LEVEL, LayerOptions, ZSTD_LEVEL, write_layer,
};

/// Options from the command line.
struct Options {
    size_mb: u64,
    runs: usize,
    dir: Option<PathBuf>,
    tree: Option<PathBuf>,
    source: Option<PathBuf>,
    kiln: bool,
    tools: bool,
    gzip: bool,
    zstd: bool,
    verbose: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        size_mb: 500,
        runs: 3,
        dir: None,
        tree: None,
        source: None,
        kiln: true,
        tools: true,
        gzip: true,
        zstd: true,
        verbose: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--size-mb" => o.size_mb = value()?.parse().map_err(|e| format!("--size-mb: {e}"))?,
            "--runs" => o.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--dir" => o.dir = Some(PathBuf::from(value()?)),
            "--verbose" | "-v" => o.verbose = true,
            "--tree" => o.tree = Some(PathBuf::from(value()?)),
            "--source" => o.source = Some(PathBuf::from(value()?)),
            "--only" => match value()?.as_str() {
                "kiln" => o.tools = false,
                "tools" => o.kiln = false,
                other => return Err(format!("--only: kiln or tools, not {other}")),
            },
            "--compression" => match value()?.as_str() {
                "gzip" => o.zstd = false,
                "zstd" => o.gzip = false,
                other => return Err(format!("--compression: gzip or zstd, not {other}")),
            },
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

/// xorshift64*: deterministic and fast; quality is irrelevant here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const WORDS: [&str; 24] = [
    "layer", "digest", "config", "manifest", "kiln", "build", "image", "error", "warning",
    "request", "response", "user", "cache", "blob", "tar", "gzip", "zstd", "store", "index", "tag",
    "push", "pull", "registry", "snapshot",
];

/// Text-like bytes: words, numbers and newlines, compressible about 3–4×.
fn text(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    out.clear();
    while out.len() < len {
        match rng.below(10) {
            0 => out.extend_from_slice(format!("{} ", rng.below(100_000)).as_bytes()),
            1 => out.push(b'\n'),
            _ => {
                out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                out.push(b' ');
            }
        }
    }
    out.truncate(len);
}

/// Writes the tree; returns its total file bytes and file count.
fn generate(root: &Path, size_mb: u64) -> io::Result<(u64, u64)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let total = size_mb << 20;
    let small_budget = total / 4;
    let compressible_budget = total * 3 / 8;
    let (mut bytes, mut files) = (0u64, 0u64);
    let mut buf = Vec::new();

    // Small files: 0.1–8 KiB, 100 per directory.
    let mut written = 0;
    let mut n = 0;
    while written < small_budget {
        let dir = root.join(format!("src/d{:04}", n / 100));
        if n % 100 == 0 {
            fs::create_dir_all(&dir)?;
        }
        let len = 100 + rng.below(8 * 1024 - 100) as usize;
        text(&mut rng, len, &mut buf);
        fs::write(dir.join(format!("f{n:05}.txt")), &buf)?;
        written += len as u64;
        n += 1;
    }
    bytes += written;
    files += n;

    // Large files, written in 1 MiB chunks: compressible logs, then random data.
    fs::create_dir_all(root.join("data"))?;
    let chunk = 1 << 20;
    let mut large = |name: &str, len: u64, random: bool, rng: &mut Rng| -> io::Result<()> {
        let mut f = io::BufWriter::new(fs::File::create(root.join("data").join(name))?);
        let mut left = len;
        let mut block = vec![0u8; chunk];
        while left > 0 {
            let n = left.min(chunk as u64) as usize;
            if random {
                rng.fill(&mut block[..n]);
                f.write_all(&block[..n])?;
            } else {
                text(rng, n, &mut buf);
                f.write_all(&buf)?;
            }
            left -= n as u64;
        }
        f.flush()
    };
    let per_log = compressible_budget / 4;
    for i in 0..4 {
        large(&format!("log{i}.txt"), per_log, false, &mut rng)?;
    }
    let random_budget = total - small_budget - 4 * per_log;
    let per_random = random_budget / 3;
    for i in 0..3 {
        large(&format!("blob{i}.bin"), per_random, true, &mut rng)?;
    }
    bytes += 4 * per_log + 3 * per_random;
    files += 7;
    Ok((bytes, files))
}

/// This process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets `VmHWM` to the current resident set.
fn reset_peak_rss() {
    // "5" resets the peak RSS counters (Linux ≥ 4.0); failing just means a less precise number.
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// CPU time used so far by this process (`self`) and by its waited-for children, from
/// `/proc/self/stat` (utime + stime, cutime + cstime; clock ticks of 10 ms).
fn cpu_times() -> Option<(Duration, Duration)> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<u64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let tick = |t: u64| Duration::from_millis(t * 10);
    match fields[..] {
        [utime, stime, cutime, cstime] => Some((tick(utime + stime), tick(cutime + cstime))),
        _ => None,
    }
}

/// A measured run: wall time and the CPU time it used.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
}

/// One kiln run: (time, compressed size, peak RSS in KiB).
fn kiln(root: &Path, compression: Compression) -> io::Result<(Run, u64, Option<u64>)> {
    reset_peak_rss();
    let cpu_before = cpu_times().map_or(Duration::ZERO, |c| c.0);
    let options = LayerOptions {
        kind: ChangeKind::Tree,
        compression,
        source_date_epoch: None,
    };
    let start = Instant::now();
    let info = write_layer(root, &options, io::sink()).map_err(io::Error::other)?;
    let wall = start.elapsed();
    let cpu = cpu_times().map_or(Duration::ZERO, |c| c.0.saturating_sub(cpu_before));
    Ok((Run { wall, cpu }, info.size, peak_rss_kib()))
}

/// One shell pipeline run: (time, compressed size).
fn pipeline(script: &str, root: &Path) -> io::Result<(Run, u64)> {
    let cpu_before = cpu_times().map_or(Duration::ZERO, |c| c.1);
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("DIR", root)
        .stderr(Stdio::inherit())
        .output()?;
    let wall = start.elapsed();
    let cpu = cpu_times().map_or(Duration::ZERO, |c| c.1.saturating_sub(cpu_before));
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{script}` failed: {}",
            out.status
        )));
    }
    let size = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Ok((Run { wall, cpu }, size))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

/// The 1-minute load average, for the report (the machine may be shared).
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Median and range of some run times.
struct Spread {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn spread(times: &[Duration]) -> Option<Spread> {
    let mut sorted = times.to_vec();
    sorted.sort();
    let n = sorted.len();
    let median = match n {
        0 => return None,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    };
    Some(Spread {
        median,
        min: sorted[0],
        max: sorted[n - 1],
    })
}

fn print_line(label: &str, bytes: u64, runs: &[Run], size: u64, extra: &str) {
    let walls: Vec<Duration> = runs.iter().map(|r| r.wall).collect();
    let cpus: Vec<Duration> = runs.iter().map(|r| r.cpu).collect();
    let (Some(wall), Some(cpu)) = (spread(&walls), spread(&cpus)) else {
        return;
    };
    println!(
        "{label:<24} {:>7.2}s {:>7.1} {:>11} {:>7.2}s {:>9.1} {:>10.1} {extra:>9}",
        wall.median.as_secs_f64(),
        mb_per_s(bytes, wall.median),
        format!(
            "{:.0}–{:.0}",
            mb_per_s(bytes, wall.max),
            mb_per_s(bytes, wall.min)
        ),
        cpu.median.as_secs_f64(),
        mb_per_s(bytes, cpu.median),
        size as f64 / 1e6,
    );
}

/// The tree to measure: `--tree DIR` (generated there once, then reused) or a fresh one in a
/// temporary directory that lives as long as the returned guard.
fn tree(o: &Options) -> io::Result<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(dir) = &o.source {
        return Ok((dir.clone(), None));
    }
    if let Some(dir) = &o.tree {
        let done = dir.join(".generated");
        if !done.exists() {
            let root = dir.join("tree");
            if root.exists() {
                fs::remove_dir_all(&root)?;
            }
            fs::create_dir_all(&root)?;
            generate(&root, o.size_mb)?;
            fs::write(&done, o.size_mb.to_string())?;
        }
        return Ok((dir.join("tree"), None));
    }
    let scratch = tempfile::Builder::new()
        .prefix("kiln-bench-")
        .tempdir_in(o.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let root = scratch.path().join("tree");
    fs::create_dir(&root)?;
    generate(&root, o.size_mb)?;
    Ok((root, Some(scratch)))
}

/// Counts the files and bytes below `root`.
fn measure(root: &Path) -> io::Result<(u64, u64)> {
    let (mut bytes, mut files) = (0, 0);
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (b, f) = measure(&entry.path())?;
            bytes += b;
            files += f;
        } else {
            // Other entries count as files; only regular files have bytes worth counting.
            if meta.is_file() {
                bytes += meta.len();
            }
            files += 1;
        }
    }
    Ok((bytes, files))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    if o.tools {
        for tool in ["tar", "pigz", "zstd"] {
            if !have(tool) {
                return Err(format!("{tool} is needed for the comparison").into());
            }
        }
    }
    let start = Instant::now();
    let (root, _scratch) = tree(&o)?;
    let (bytes, files) = measure(&root)?;
    println!(
        "tree: {files} files, {:.0} MB, ready in {:.1}s; {} cores; load average {}",
        bytes as f64 / 1e6,
        start.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    // Warm the page cache for everyone.
    pipeline("tar -cf - -C \"$DIR\" . | wc -c", &root)?;
    let baseline_rss = peak_rss_kib();

    // The tools at kiln's levels: the same work, so the ratio compares implementations.
    let gzip_cmd = format!("tar -cf - -C \"$DIR\" . | pigz -{GZIP_LEVEL} -p 2 | wc -c");
    let zstd_cmd = format!("tar -cf - -C \"$DIR\" . | zstd -{ZSTD_LEVEL} -T2 -q -c | wc -c");
    let gzip_label = format!("tar -c | pigz -{GZIP_LEVEL} -p 2");
    let zstd_label = format!("tar -c | zstd -{ZSTD_LEVEL} -T2");
    println!(
        "{:<24} {:>8} {:>7} {:>11} {:>8} {:>9} {:>10} {:>9}",
        "", "wall", "MB/s", "MB/s range", "CPU", "MB/CPU-s", "output MB", "peak RSS"
    );
    let mut ratios = Vec::new();
    let mut cases = Vec::new();
    if o.gzip {
        cases.push(("gzip", Compression::Gzip, &gzip_cmd, &gzip_label));
    }
    if o.zstd {
        cases.push(("zstd", Compression::Zstd, &zstd_cmd, &zstd_label));
    }
    for (name, compression, script, label) in cases {
        let (mut kiln_runs, mut tool_runs) = (Vec::new(), Vec::new());
        let (mut ksize, mut tsize, mut krss) = (0, 0, None::<u64>);
        for _ in 0..o.runs.max(1) {
            if o.kiln {
                let (run, size, rss) = kiln(&root, compression)?;
                if o.verbose {
                    eprintln!(
                        "  kiln {name}: {:.2}s wall, {:.2}s CPU, load {}",
                        run.wall.as_secs_f64(),
                        run.cpu.as_secs_f64(),
                        load_average()
                    );
                }
                kiln_runs.push(run);
                ksize = size;
                krss = krss.max(rss);
            }
            if o.tools {
                let (run, size) = pipeline(script, &root)?;
                if o.verbose {
                    eprintln!(
                        "  {label}: {:.2}s wall, {:.2}s CPU, load {}",
                        run.wall.as_secs_f64(),
                        run.cpu.as_secs_f64(),
                        load_average()
                    );
                }
                tool_runs.push(run);
                tsize = size;
            }
        }
        let rss = krss.map_or("?".to_owned(), |k| format!("{:.1} MB", k as f64 / 1024.0));
        print_line(&format!("kiln ({name})"), bytes, &kiln_runs, ksize, &rss);
        print_line(label, bytes, &tool_runs, tsize, "");
        let walls = |runs: &[Run]| runs.iter().map(|r| r.wall).collect::<Vec<_>>();
        if let (Some(k), Some(t)) = (spread(&walls(&kiln_runs)), spread(&walls(&tool_runs))) {
            ratios.push((name, t.median.as_secs_f64() / k.median.as_secs_f64()));
        }
    }
    for (name, ratio) in ratios {
        println!("{name}: kiln throughput is {ratio:.2}x the baseline's (target ≥ 0.9x)");
    }
    println!("load average after: {}", load_average());
    if let Some(base) = baseline_rss {
        println!(
            "(VmHWM before the kiln runs, tree generation included: {:.1} MB)",
            base as f64 / 1024.0
        );
    }
    Ok(())
}
