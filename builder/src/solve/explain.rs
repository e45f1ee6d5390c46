//! Why a step was not cached: each build remembers the key inputs of its steps, and a step that
//! misses is explained by the first of its inputs that differs from the last build of the same
//! Dockerfile and target, in the user's terms (`build-arg VERSION changed ("1.0" → "1.1")`,
//! `src/main.rs changed (content sha256:ab12… → sha256:9f3e…), 2 files added`, `parent changed
//! (COPY at Dockerfile:4 re-ran)`).
//!
//! The inputs are the ones the key is computed from ([`super::cache::KeyBuilder`]), each with
//! an optional [`Label`] saying what it refers to (a source pattern, a stage, an image), which
//! is not part of the key. A build's [`BuildTrace`] is kept in `cache/explain/builds/` under
//! the sha256 of the Dockerfile's path, the target and the platform; the listings of the
//! context trees COPY and bind mounts read, whose sha256 is the checksum in the key, are kept
//! in `cache/explain/trees/` under that checksum, so a changed file can be named. Both are
//! written only when they change: a cached rebuild writes nothing. At most [`MAX_TRACES`]
//! builds are remembered (the least recently written go first), and listings only while a
//! trace names them. `kiln prune --all` forgets the cache records but not the traces, so the
//! next build says its records were pruned.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use kiln_registry::Digest;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// How many builds (Dockerfile, target, platform) are remembered per store.
pub const MAX_TRACES: usize = 64;

/// What a key input refers to, for a reader (never part of the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Label {
    /// The checksum of the context files a source pattern reads (COPY, ADD, a bind mount).
    Files(String),
    /// The key of a stage's filesystem (`--from=NAME`).
    Stage(String),
    /// An image's manifest digest (`--from=IMAGE`).
    Image(String),
    /// The URL a downloaded file's digest is of.
    Url(String),
}

/// One input of a step's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// The input's name in the key (`parent`, `env`, `source` …).
    pub name: String,
    /// Its value, as hashed.
    pub value: serde_json::Value,
    /// What it refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
}

/// A keyed step as one build saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTrace {
    /// The instruction as written.
    pub text: String,
    /// Its key.
    pub key: Digest,
    /// The inputs of the key, in order.
    pub inputs: Vec<Input>,
}

/// The keyed steps of one build of a Dockerfile and target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildTrace {
    /// Each stage's base (an image's manifest digest, `scratch`, or another stage), by stage
    /// name.
    pub bases: BTreeMap<String, String>,
    /// Each stage's keyed steps by step number (1-based), by stage name.
    pub stages: BTreeMap<String, BTreeMap<usize, StepTrace>>,
}

impl BuildTrace {
    /// The step of `stage` this build's step `n` (with instruction `text`) is a later build
    /// of: the one with the same instruction (the nearest to `n` if several), else the one at
    /// `n` when its instruction is not another step of the stage now (an edited line).
    pub fn matching(
        &self,
        stage: &str,
        n: usize,
        text: &str,
        texts: &[&str],
    ) -> Option<&StepTrace> {
        let steps = self.stages.get(stage)?;
        let same = steps
            .iter()
            .filter(|(_, s)| s.text == text)
            .min_by_key(|(m, _)| m.abs_diff(n))
            .map(|(_, s)| s);
        same.or_else(|| steps.get(&n).filter(|s| !texts.contains(&s.text.as_str())))
    }
}

/// The whole input tree of one step's key (`kiln build --explain LINE`): every input, and the
/// files behind each checksum of context files, with their digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInputs {
    /// The key.
    pub key: Digest,
    /// Its inputs, in order.
    pub inputs: Vec<Input>,
    /// The listing behind each checksum of context files (by checksum), when kept.
    pub files: BTreeMap<String, Vec<(String, Entry)>>,
}

/// What changed first in a stage, for the steps after it: their parent changed because of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// A step whose key is not the one the last build had.
    Step {
        /// Its instruction keyword.
        keyword: String,
        /// `Dockerfile:LINE`.
        at: String,
        /// Whether it ran (else a cache had it under its new key).
        ran: bool,
    },
    /// The stage's base image is another one.
    Base {
        /// The last build's manifest digest.
        was: String,
        /// This build's.
        now: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Step { keyword, at, ran } => {
                let how = if *ran { "re-ran" } else { "changed" };
                write!(f, "{keyword} at {at} {how}")
            }
            Change::Base { was, now } => {
                write!(f, "base image changed ({} → {})", short(was), short(now))
            }
        }
    }
}

/// Why a step's layer was not in any cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Why {
    /// `--no-cache`.
    NoCache,
    /// No earlier build of this Dockerfile and target made this step.
    NewStep,
    /// The inputs are those of the last build, whose record is gone.
    Pruned,
    /// The instruction's text changed.
    Instruction {
        /// The last build's text.
        was: String,
    },
    /// A step before it in the stage, or the stage's base, changed.
    Parent {
        /// The first change (`None` when it cannot be told).
        change: Option<Change>,
    },
    /// A stage it reads with `--from` (or mounts) changed.
    Stage {
        /// The stage's name.
        stage: String,
        /// The first change in it.
        change: Option<Change>,
    },
    /// A build-arg's value changed (or it was set or unset).
    BuildArg {
        /// The ARG's name.
        name: String,
        /// The last build's value.
        was: Option<String>,
        /// This build's.
        now: Option<String>,
    },
    /// An environment variable's value changed.
    Env {
        /// The variable.
        name: String,
        /// The last build's value.
        was: Option<String>,
        /// This build's.
        now: Option<String>,
    },
    /// Context files it reads changed.
    Files {
        /// The source pattern.
        source: String,
        /// What changed in them.
        diff: FilesDiff,
    },
    /// Another input changed: the instruction's expanded form, the working directory, the
    /// user, a downloaded file …
    Input {
        /// The input, in the user's terms.
        what: String,
        /// The last build's value, short.
        was: String,
        /// This build's.
        now: String,
    },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value =
            |v: &Option<String>| v.as_ref().map_or("unset".to_owned(), |v| format!("{v:?}"));
        match self {
            Why::NoCache => write!(f, "--no-cache"),
            Why::NewStep => write!(f, "no earlier build of this step"),
            Why::Pruned => write!(f, "cache record pruned"),
            Why::Instruction { was } => {
                write!(f, "instruction changed (was `{}`)", first_line(was))
            }
            Why::Parent { change: None } => write!(f, "parent changed"),
            Why::Parent {
                change: Some(c @ Change::Base { .. }),
            } => write!(f, "{c}"),
            Why::Parent { change: Some(c) } => write!(f, "parent changed ({c})"),
            Why::Stage { stage, change } => match change {
                Some(c) => write!(f, "stage {stage} changed ({c})"),
                None => write!(f, "stage {stage} changed"),
            },
            Why::BuildArg { name, was, now } => {
                write!(
                    f,
                    "build-arg {name} changed ({} → {})",
                    value(was),
                    value(now)
                )
            }
            Why::Env { name, was, now } => {
                write!(f, "ENV {name} changed ({} → {})", value(was), value(now))
            }
            Why::Files { diff, .. } => write!(f, "{diff}"),
            Why::Input { what, was, now } => write!(f, "{what} changed ({was} → {now})"),
        }
    }
}

/// A cache miss explained: why, and the imported caches that did not have the step either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Miss {
    /// Why the local cache did not have it.
    #[serde(flatten)]
    pub why: Why,
    /// The `--cache-from` caches asked too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.why)?;
        if !self.imports.is_empty() && self.why != Why::NoCache {
            write!(f, "; not in {} either", self.imports.join(", "))?;
        }
        Ok(())
    }
}

/// What changed between two listings of a context tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilesDiff {
    /// The first change, by path.
    pub first: Option<FileChange>,
    /// Files whose content, mode or type changed.
    pub changed: usize,
    /// Files that are new.
    pub added: usize,
    /// Files that are gone.
    pub removed: usize,
}

/// One file's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    /// The path in the context.
    pub path: String,
    /// Its entry in the last build (`None`: added).
    pub was: Option<Entry>,
    /// Its entry now (`None`: removed).
    pub now: Option<Entry>,
}

/// A file as a listing has it: type bits and permissions (octal) and content (a file's
/// sha256, a symlink's target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `S_IFMT` bits, octal.
    pub kind: String,
    /// Permission bits, octal.
    pub mode: String,
    /// The content's digest or the link target; empty for directories.
    pub content: String,
}

impl fmt::Display for FilesDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = &self.first else {
            return write!(f, "the files it reads changed");
        };
        let (mut changed, mut added, mut removed) = (self.changed, self.added, self.removed);
        let more = match (&first.was, &first.now) {
            (None, _) => {
                added -= 1;
                write!(f, "{} added", first.path)?;
                "added"
            }
            (_, None) => {
                removed -= 1;
                write!(f, "{} removed", first.path)?;
                "removed"
            }
            (Some(was), Some(now)) => {
                changed -= 1;
                write!(f, "{} changed (", first.path)?;
                if was.kind != now.kind {
                    write!(f, "type {} → {}", was.kind, now.kind)?;
                } else if was.content != now.content {
                    let what = if was.kind == "100000" {
                        "content"
                    } else {
                        "target"
                    };
                    write!(
                        f,
                        "{what} {} → {}",
                        short(&was.content),
                        short(&now.content)
                    )?;
                    if was.mode != now.mode {
                        write!(f, ", mode {} → {}", was.mode, now.mode)?;
                    }
                } else {
                    write!(f, "mode {} → {}", was.mode, now.mode)?;
                }
                write!(f, ")")?;
                "changed"
            }
        };
        for (n, what) in [(changed, "changed"), (added, "added"), (removed, "removed")] {
            let more = if what == more { " more" } else { "" };
            match n {
                0 => {}
                1 => write!(f, ", 1{more} file {what}")?,
                n => write!(f, ", {n}{more} files {what}")?,
            }
        }
        Ok(())
    }
}

/// Explains a miss: the first input of `now` that differs from the last build's step (`None`:
/// there was none). The parent comes first (the steps before are the cause), then the
/// build-args and environment (an ARG's value reaches the expanded command too, and the
/// variable is the news), then the rest in key order.
pub fn explain(
    last: Option<&StepTrace>,
    text: &str,
    now: &[Input],
    parent: Option<&Change>,
    context: &dyn Fn(&Label) -> Option<Why>,
    trees: &dyn Fn(&str, &str) -> Option<FilesDiff>,
) -> Why {
    let Some(last) = last else {
        return Why::NewStep;
    };
    if last.inputs == now {
        return Why::Pruned;
    }
    let was = |name: &str| last.inputs.iter().find(|i| i.name == name);
    if let Some(p) = now.iter().find(|i| i.name == "parent")
        && was("parent").is_none_or(|w| w.value != p.value)
    {
        return Why::Parent {
            change: parent.cloned(),
        };
    }
    if let Some(why) = variables(
        was("declared"),
        now.iter().find(|i| i.name == "declared"),
        true,
    )
    .or_else(|| variables(was("env"), now.iter().find(|i| i.name == "env"), false))
    {
        return why;
    }
    if last.text != text {
        return Why::Instruction {
            was: last.text.clone(),
        };
    }
    // Inputs of the same name (one `source` per COPY source) pair up in order.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for input in now {
        let nth = seen.entry(input.name.as_str()).or_default();
        let before = last
            .inputs
            .iter()
            .filter(|i| i.name == input.name)
            .nth(*nth);
        *nth += 1;
        if before.is_some_and(|b| b.value == input.value) {
            continue;
        }
        let (was, now_value) = (before.map(|b| &b.value), &input.value);
        if let (
            Some(Label::Files(source)),
            Some(serde_json::Value::String(old)),
            serde_json::Value::String(new),
        ) = (&input.label, was, now_value)
        {
            let diff = trees(old, new).unwrap_or_default();
            return Why::Files {
                source: source.clone(),
                diff,
            };
        }
        if let Some(why) = input.label.as_ref().and_then(context) {
            return why;
        }
        let what = match &input.label {
            Some(Label::Image(image)) => format!("image {image}"),
            Some(Label::Url(url)) => url.clone(),
            _ => user_term(&input.name).to_owned(),
        };
        return Why::Input {
            what,
            was: was.map_or("none".to_owned(), render),
            now: render(now_value),
        };
    }
    // Only inputs the last build had and this one does not.
    Why::Instruction {
        was: last.text.clone(),
    }
}

/// The first variable of a `[[name, value], …]` list whose value changed.
fn variables(was: Option<&Input>, now: Option<&Input>, build_args: bool) -> Option<Why> {
    let pairs = |i: Option<&Input>| -> BTreeMap<String, Option<String>> {
        let Some(serde_json::Value::Array(items)) = i.map(|i| &i.value) else {
            return BTreeMap::new();
        };
        items
            .iter()
            .filter_map(|pair| {
                let pair = pair.as_array()?;
                let name = pair.first()?.as_str()?.to_owned();
                let value = pair.get(1).and_then(|v| v.as_str()).map(str::to_owned);
                Some((name, value))
            })
            .collect()
    };
    let (was, now) = (pairs(was), pairs(now));
    let names: BTreeSet<&String> = was.keys().chain(now.keys()).collect();
    names.into_iter().find_map(|name| {
        let (w, n) = (
            was.get(name).cloned().flatten(),
            now.get(name).cloned().flatten(),
        );
        if w == n && was.contains_key(name) == now.contains_key(name) {
            return None;
        }
        let name = name.clone();
        Some(if build_args {
            Why::BuildArg {
                name,
                was: w,
                now: n,
            }
        } else {
            Why::Env {
                name,
                was: w,
                now: n,
            }
        })
    })
}

/// An input's name in the user's terms.
fn user_term(name: &str) -> &str {
    match name {
        "command" | "args" => "the expanded command",
        "copy" => "the expanded instruction",
        "mounts" => "the mounts",
        "workdir" | "cwd" => "the working directory",
        "user" => "the user",
        "shell" => "the shell",
        "network" => "the network",
        "extra_hosts" => "--add-host",
        "source_date_epoch" => "SOURCE_DATE_EPOCH",
        "compression" => "the compression",
        "version" => "kiln's cache format",
        "checksum" => "the checksum",
        "download" => "the downloaded file",
        "last_modified" => "the download's Last-Modified",
        "from" => "the --from source",
        "bind" => "a bind mount's source",
        "source" => "the source files",
        other => other,
    }
}

/// A value, short enough for a progress line.
fn render(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) if s.starts_with("sha256:") => short(s),
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(59).collect::<String>())
    } else {
        text
    }
}

/// `sha256:` and the first 12 hex digits of a digest; anything else as it is.
pub fn short(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}…", &hex[..12]),
        _ => digest.to_owned(),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Compares two listings (lines of `path\0type\0perm\0content`, sorted by path), as
/// [`crate::solve::checksum`] writes them.
pub fn diff_listings(was: impl BufRead, now: impl BufRead) -> io::Result<FilesDiff> {
    let (mut old, mut new) = (was.split(b'\n'), now.split(b'\n'));
    let mut a = old.next().transpose()?.map(parse_entry);
    let mut b = new.next().transpose()?.map(parse_entry);
    let mut diff = FilesDiff::default();
    loop {
        let (path, was, now) = match (&a, &b) {
            (None, None) => break,
            (Some((pa, ea)), Some((pb, eb))) if pa == pb => {
                let change = (ea != eb).then(|| (pa.clone(), Some(ea.clone()), Some(eb.clone())));
                a = old.next().transpose()?.map(parse_entry);
                b = new.next().transpose()?.map(parse_entry);
                match change {
                    Some(change) => {
                        diff.changed += 1;
                        change
                    }
                    None => continue,
                }
            }
            (Some((pa, ea)), Some((pb, _))) if pa.as_bytes() < pb.as_bytes() => {
                let change = (pa.clone(), Some(ea.clone()), None);
                a = old.next().transpose()?.map(parse_entry);
                diff.removed += 1;
                change
            }
            (Some((pa, ea)), None) => {
                let change = (pa.clone(), Some(ea.clone()), None);
                a = old.next().transpose()?.map(parse_entry);
                diff.removed += 1;
                change
            }
            (_, Some((pb, eb))) => {
                let change = (pb.clone(), None, Some(eb.clone()));
                b = new.next().transpose()?.map(parse_entry);
                diff.added += 1;
                change
            }
        };
        diff.first.get_or_insert(FileChange { path, was, now });
    }
    Ok(diff)
}

/// One listing line: the path and its entry.
fn parse_entry(line: Vec<u8>) -> (String, Entry) {
    let mut fields = line
        .split(|&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let path = fields.next().unwrap_or_default();
    let entry = Entry {
        kind: fields.next().unwrap_or_default(),
        mode: fields.next().unwrap_or_default(),
        content: fields.next().unwrap_or_default(),
    };
    (path, entry)
}

/// The remembered builds and tree listings of a store.
#[derive(Debug, Clone)]
pub struct Traces {
    store: Store,
    dir: PathBuf,
}

impl Traces {
    /// The traces of `store` (created on the first write).
    pub fn open(store: &Store) -> Self {
        Self {
            store: store.clone(),
            dir: store.cache_dir().join("explain"),
        }
    }

    /// Where the trace of the build named `identity` is kept.
    fn build_path(&self, identity: &str) -> PathBuf {
        self.dir
            .join("builds")
            .join(format!("{}.json", Digest::of(identity.as_bytes()).hex()))
    }

    /// Where the listing whose sha256 is `sum` is kept.
    pub fn tree_path(&self, sum: &Digest) -> PathBuf {
        self.dir.join("trees").join(sum.hex())
    }

    /// The last trace of `identity`, if there is a readable one.
    pub fn load(&self, identity: &str) -> Option<BuildTrace> {
        let bytes = fs::read(self.build_path(identity)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps `trace` as the last build of `identity` (when it changed), then forgets the
    /// oldest builds past [`MAX_TRACES`] and the listings no trace names.
    pub fn save(
        &self,
        identity: &str,
        trace: &BuildTrace,
        was: Option<&BuildTrace>,
    ) -> Result<(), StoreError> {
        if was == Some(trace) {
            return Ok(());
        }
        let path = self.build_path(identity);
        let dir = self.dir.join("builds");
        fs::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
        let bytes =
            serde_json::to_vec(trace).map_err(|e| StoreError::io("encode", &path)(e.into()))?;
        self.store.replace_file(&path, &bytes)?;
        self.collect()
            .map_err(StoreError::io("clean up", &self.dir))
    }

    /// Writes the listing of a tree whose sha256 is `sum`, unless it is kept already; `write`
    /// writes the listing (the same bytes that hash to `sum`).
    pub fn keep_tree(
        &self,
        sum: &Digest,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let path = self.tree_path(sum);
        if path.exists() {
            return Ok(());
        }
        let dir = self.dir.join("trees");
        fs::create_dir_all(&dir)?;
        let mut file = tempfile::NamedTempFile::new_in(&dir)?;
        {
            let mut out = io::BufWriter::new(file.as_file_mut());
            write(&mut out)?;
            out.flush()?;
        }
        file.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// What changed between the listings whose sha256s are `was` and `now` (`None` when
    /// either is not kept).
    pub fn diff_trees(&self, was: &str, now: &str) -> Option<FilesDiff> {
        let open = |sum: &str| -> Option<BufReader<File>> {
            let digest: Digest = sum.parse().ok()?;
            File::open(self.tree_path(&digest)).ok().map(BufReader::new)
        };
        diff_listings(open(was)?, open(now)?).ok()
    }

    /// The entries of the listing whose sha256 is `sum`, when kept.
    pub fn listing(&self, sum: &str) -> Option<Vec<(String, Entry)>> {
        let digest: Digest = sum.parse().ok()?;
        let file = BufReader::new(File::open(self.tree_path(&digest)).ok()?);
        file.split(b'\n')
            .map(|line| line.map(parse_entry).ok())
            .collect()
    }

    /// The input tree of a step with `key` and `inputs`, with the listings it names.
    pub fn key_inputs(&self, key: &Digest, inputs: &[Input]) -> KeyInputs {
        let files = inputs
            .iter()
            .filter(|i| matches!(i.label, Some(Label::Files(_))))
            .filter_map(|i| {
                let sum = i.value.as_str()?;
                Some((sum.to_owned(), self.listing(sum)?))
            })
            .collect();
        KeyInputs {
            key: key.clone(),
            inputs: inputs.to_vec(),
            files,
        }
    }

    /// Keeps the newest [`MAX_TRACES`] traces and the listings they name.
    fn collect(&self) -> io::Result<()> {
        let mut builds: Vec<(std::time::SystemTime, PathBuf)> = read_dir(&self.dir.join("builds"))?
            .into_iter()
            .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        builds.sort();
        let excess = builds.len().saturating_sub(MAX_TRACES);
        for (_, path) in builds.drain(..excess) {
            let _ = fs::remove_file(path);
        }
        let mut named = BTreeSet::new();
        for (_, path) in &builds {
            let Some(trace) = fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<BuildTrace>(&b).ok())
            else {
                continue;
            };
            for step in trace.stages.values().flat_map(BTreeMap::values) {
                for input in &step.inputs {
                    if let (Some(Label::Files(_)), serde_json::Value::String(sum)) =
                        (&input.label, &input.value)
                        && let Some(hex) = sum.strip_prefix("sha256:")
                    {
                        named.insert(hex.to_owned());
                    }
                }
            }
        }
        for path in read_dir(&self.dir.join("trees"))? {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            // Temporary files of a listing being written are not ours to remove.
            if name.len() == 64 && !named.contains(name) {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

/// The entries of `dir`, sorted (none when it does not exist).
fn read_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
