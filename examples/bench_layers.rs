//! Layer-writing throughput: kiln's layer writer (gzip and zstd) against `tar -c | pigz -p 2`
//! and `tar -c | zstd -T2` on the same ~500 MB tree, and kiln's peak memory.
//!
//! ```text
//! cargo run --release --example bench_layers [-- --size-mb 500 --runs 3 --dir DIR]
//! ```
//!
//! The tree is generated deterministically (a fixed xorshift seed): many small text-like files
//! (about a quarter of the bytes), a few large compressible files (log-like text) and a few
//! large incompressible ones (random bytes). Every tool writes to a sink (`/dev/null` for the
//! pipelines, `io::sink()` for kiln), so the numbers compare reading, archiving, hashing and
//! compressing. Each measurement is the best of `--runs` (the page cache is warm for all). Peak
//! memory is the process's `VmHWM`, reset through `/proc/self/clear_refs` before each kiln run.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_builder::layer::{ChangeKind, Compression, LayerOptions, write_layer};

/// Options from the command line.
struct Options {
    size_mb: u64,
    runs: usize,
    dir: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        size_mb: 500,
        runs: 3,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--size-mb" => o.size_mb = value()?.parse().map_err(|e| format!("--size-mb: {e}"))?,
            "--runs" => o.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--dir" => o.dir = Some(PathBuf::from(value()?)),
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

/// One kiln run: (time, compressed size, peak RSS in KiB).
fn kiln(root: &Path, compression: Compression) -> io::Result<(Duration, u64, Option<u64>)> {
    reset_peak_rss();
    let options = LayerOptions {
        kind: ChangeKind::Tree,
        compression,
        source_date_epoch: None,
    };
    let start = Instant::now();
    let info = write_layer(root, &options, io::sink()).map_err(io::Error::other)?;
    Ok((start.elapsed(), info.size, peak_rss_kib()))
}

/// One shell pipeline run: (time, compressed size).
fn pipeline(script: &str, root: &Path) -> io::Result<(Duration, u64)> {
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("DIR", root)
        .stderr(Stdio::inherit())
        .output()?;
    let elapsed = start.elapsed();
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
    Ok((elapsed, size))
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    for tool in ["tar", "pigz", "zstd"] {
        if !have(tool) {
            return Err(format!("{tool} is needed for the comparison").into());
        }
    }
    let scratch = tempfile::Builder::new()
        .prefix("kiln-bench-")
        .tempdir_in(o.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let root = scratch.path().join("tree");
    fs::create_dir(&root)?;
    let start = Instant::now();
    let (bytes, files) = generate(&root, o.size_mb)?;
    println!(
        "tree: {files} files, {:.0} MB, generated in {:.1}s; {} cores",
        bytes as f64 / 1e6,
        start.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // Warm the page cache for everyone.
    pipeline("tar -cf - -C \"$DIR\" . | wc -c", &root)?;
    let baseline_rss = peak_rss_kib();

    let gzip_cmd = "tar -cf - -C \"$DIR\" . | pigz -6 -p 2 | wc -c";
    let zstd_cmd = "tar -cf - -C \"$DIR\" . | zstd -3 -T2 -q -c | wc -c";
    println!(
        "{:<28} {:>9} {:>10} {:>11} {:>10}",
        "", "time", "MB/s", "output MB", "peak RSS"
    );
    let mut ratios = Vec::new();
    for (name, compression, script) in [
        ("gzip", Compression::Gzip, gzip_cmd),
        ("zstd", Compression::Zstd, zstd_cmd),
    ] {
        let mut best_kiln: Option<(Duration, u64, Option<u64>)> = None;
        let mut best_tool: Option<(Duration, u64)> = None;
        for _ in 0..o.runs.max(1) {
            let k = kiln(&root, compression)?;
            if best_kiln.as_ref().is_none_or(|b| k.0 < b.0) {
                best_kiln = Some(k);
            }
            let t = pipeline(script, &root)?;
            if best_tool.as_ref().is_none_or(|b| t.0 < b.0) {
                best_tool = Some(t);
            }
        }
        let (kt, ksize, krss) = best_kiln.ok_or("no run")?;
        let (tt, tsize) = best_tool.ok_or("no run")?;
        let rss = krss.map_or("?".to_owned(), |k| format!("{:.1} MB", k as f64 / 1024.0));
        println!(
            "{:<28} {:>8.2}s {:>10.1} {:>11.1} {:>10}",
            format!("kiln write_layer ({name})"),
            kt.as_secs_f64(),
            mb_per_s(bytes, kt),
            ksize as f64 / 1e6,
            rss
        );
        let label = if name == "gzip" {
            "tar -c | pigz -p 2"
        } else {
            "tar -c | zstd -T2"
        };
        println!(
            "{:<28} {:>8.2}s {:>10.1} {:>11.1}",
            label,
            tt.as_secs_f64(),
            mb_per_s(bytes, tt),
            tsize as f64 / 1e6
        );
        ratios.push((name, tt.as_secs_f64() / kt.as_secs_f64()));
    }
    for (name, ratio) in ratios {
        println!("{name}: kiln throughput is {ratio:.2}x the baseline's (target ≥ 0.9x)");
    }
    if let Some(base) = baseline_rss {
        println!(
            "(VmHWM before the kiln runs, tree generation included: {:.1} MB)",
            base as f64 / 1024.0
        );
    }
    Ok(())
}
