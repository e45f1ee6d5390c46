//! What the differential suite compares: an image's config (the keys a Dockerfile sets) and
//! every file of its flattened root filesystem (type, mode, owner, content digest, link
//! target), and the differences between kiln's image and buildah's.
//!
//! Both images are saved in `docker save` format (uncompressed layers) and flattened the same
//! way, here, in memory, by the OCI layer rules, with a tar reader of the suite's own
//! (`tar.rs`), so kiln's tar and layer code is not the judge of kiln's output. Modification
//! times are never compared, nor the root directory itself (the unpacker's), nor what the
//! runtimes create for a RUN (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, `/run`) or
//! mount over (the contents of `/proc`, `/sys`, `/dev`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use kiln_registry::Digest;
use serde_json::Value;

use super::tar;

/// The config keys compared: what Dockerfile instructions set (Shell, Healthcheck and OnBuild
/// are Docker-format extensions, compared when either image has them).
pub const CONFIG_KEYS: [&str; 12] = [
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Shell",
    "Healthcheck",
    "OnBuild",
];

/// Paths the build runtimes create or mount for RUN, never compared.
const RUNTIME_FILES: [&str; 5] = [
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/hostname",
    "/run",
    "/run/.containerenv",
];

/// Directories whose contents are the runtime's mounts, never compared (the directories
/// themselves are).
const MOUNTED_DIRS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The label buildah stamps on every image it builds: its own version, not the Dockerfile's.
pub const BUILDAH_VERSION_LABEL: &str = "io.buildah.version";

/// One file of a flattened image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `file`, `dir`, `symlink`, `fifo`, `char`, `block` or `socket`.
    pub kind: &'static str,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A regular file's content digest.
    pub content: Option<Digest>,
    /// A symlink's target.
    pub target: Option<String>,
    /// A small text file's content, to show in a report (derived from `content`).
    pub text: Option<String>,
}

impl Entry {
    /// One line for a report: `file 0644 0:0`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} {:04o} {}:{}", self.kind, self.mode, self.uid, self.gid);
        if let Some(t) = &self.target {
            s.push_str(&format!(" -> {t}"));
        }
        s
    }
}

/// A built image, read back.
#[derive(Debug)]
pub struct Image {
    /// The compared config keys that have a value (null, empty lists, maps and strings are
    /// absent: the two tools spell "unset" differently).
    pub config: BTreeMap<&'static str, Value>,
    /// Every file by absolute path (`/` itself included).
    pub files: BTreeMap<String, Entry>,
}

/// The compared keys of an image's `config` object.
pub fn config_of(config: &Value) -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    for key in CONFIG_KEYS {
        let mut value = config.get(key).cloned().unwrap_or(Value::Null);
        if key == "Labels"
            && let Some(labels) = value.as_object_mut()
        {
            labels.remove(BUILDAH_VERSION_LABEL);
        }
        let empty = match &value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !empty {
            out.insert(key, value);
        }
    }
    out
}

/// Reads a `docker save`-format archive (what `kiln save` and `buildah push
/// docker-archive:` write, layers uncompressed): its config and its layers applied in order.
pub fn from_docker_archive(path: &Path) -> Image {
    let outer = tar::members(&fs::read(path).unwrap());
    let by_path: BTreeMap<String, &tar::Member> =
        outer.iter().map(|m| (clean(&m.path), m)).collect();
    // Writers may store a layer once and point at it with symlinks.
    let read = |name: &str| -> &[u8] {
        let mut name = clean(name);
        for _ in 0..8 {
            let member = by_path
                .get(&name)
                .unwrap_or_else(|| panic!("{}: no {name}", path.display()));
            if member.kind != b'2' {
                return &member.data;
            }
            let base = name.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned();
            name = clean(&format!("{base}/{}", member.link));
        }
        panic!("{}: symlink loop at {name}", path.display())
    };
    let manifest: Value = serde_json::from_slice(read("manifest.json")).unwrap();
    let manifest = &manifest[0];
    let config: Value = serde_json::from_slice(read(manifest["Config"].as_str().unwrap())).unwrap();
    let mut files = BTreeMap::new();
    for layer in manifest["Layers"].as_array().unwrap() {
        apply(&mut files, read(layer.as_str().unwrap()));
    }
    files.retain(|path, _| !ignored(path));
    Image {
        config: config_of(&config["config"]),
        files,
    }
}

/// A member path as an absolute, clean path (`./a/b/` -> `/a/b`; the root is `/`).
fn clean(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Whether a path is the runtime's, not the image's (see the module doc).
fn ignored(path: &str) -> bool {
    path == "/"
        || RUNTIME_FILES.contains(&path)
        || MOUNTED_DIRS.iter().any(|dir| {
            path.strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// Removes `path` and everything beneath it, except what `keep` holds.
fn remove_tree(
    files: &mut BTreeMap<String, Entry>,
    path: &str,
    keep: &std::collections::BTreeSet<String>,
) {
    let below = format!("{path}/");
    files.retain(|p, _| keep.contains(p) || (p != path && !p.starts_with(&below)));
}

/// Applies one uncompressed layer as the OCI image spec says: whiteouts (`.wh.NAME`) and
/// opaque markers (`.wh..wh..opq`) hide what lower layers hold; a directory over a directory
/// takes the new attributes and keeps its children, anything else replaces what was there;
/// a hard link takes its target's attributes and content.
fn apply(files: &mut BTreeMap<String, Entry>, layer: &[u8]) {
    let mut added = std::collections::BTreeSet::new();
    for member in tar::members(layer) {
        let path = clean(&member.path);
        let (parent, name) = path.rsplit_once('/').unwrap();
        let parent = if parent.is_empty() { "/" } else { parent };
        if name == ".wh..wh..opq" {
            let below = if parent == "/" {
                String::from("/")
            } else {
                format!("{parent}/")
            };
            files.retain(|p, _| added.contains(p) || !p.starts_with(&below) || p == parent);
            continue;
        }
        if let Some(victim) = name.strip_prefix(".wh.") {
            let victim = if parent == "/" {
                format!("/{victim}")
            } else {
                format!("{parent}/{victim}")
            };
            remove_tree(files, &victim, &added);
            continue;
        }
        let entry = match member.kind {
            b'1' => {
                let target = clean(&member.link);
                files
                    .get(&target)
                    .unwrap_or_else(|| panic!("hard link {path} to missing {target}"))
                    .clone()
            }
            kind => Entry {
                kind: match kind {
                    b'0' => "file",
                    b'2' => "symlink",
                    b'3' => "char",
                    b'4' => "block",
                    b'5' => "dir",
                    b'6' => "fifo",
                    other => panic!("{path}: unknown tar typeflag {other}"),
                },
                mode: member.mode,
                uid: member.uid,
                gid: member.gid,
                content: (kind == b'0').then(|| Digest::of(&member.data)),
                target: (kind == b'2').then(|| member.link.clone()),
                text: (kind == b'0' && member.data.len() <= 200)
                    .then(|| String::from_utf8(member.data.clone()).ok())
                    .flatten(),
            },
        };
        let dir_over_dir =
            entry.kind == "dir" && files.get(&path).is_some_and(|old| old.kind == "dir");
        if !dir_over_dir {
            remove_tree(files, &path, &added);
        }
        files.insert(path.clone(), entry);
        added.insert(path);
    }
}

/// One way the two images differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What differs, as expectations name it: `build`, `config.Env`, or a path and an aspect
    /// (`/w owner`, `/x presence`, `/x type`, `/x mode`, `/x content`, `/x target`).
    pub what: String,
    /// kiln's side.
    pub kiln: String,
    /// buildah's side.
    pub buildah: String,
}

/// Every difference between kiln's image and buildah's: config first (Env and Labels per
/// variable and label, `config.Env.NAME`, `config.Labels.NAME`; the order of Env as
/// `config.Env order`), then files by path. A path only one side has is reported once, with
/// how many paths beneath it are also that side's alone.
pub fn compare(kiln: &Image, buildah: &Image) -> Vec<Difference> {
    let mut out = Vec::new();
    let show = |v: Option<&Value>| v.map_or_else(|| "(unset)".to_owned(), Value::to_string);
    for key in CONFIG_KEYS {
        let (k, b) = (kiln.config.get(key), buildah.config.get(key));
        match key {
            "Env" => out.extend(compare_env(k, b)),
            "Labels" => {
                let labels = |v: Option<&Value>| -> BTreeMap<String, Value> {
                    v.and_then(Value::as_object)
                        .map(|o| o.clone().into_iter().collect())
                        .unwrap_or_default()
                };
                let (k, b) = (labels(k), labels(b));
                let names: std::collections::BTreeSet<&String> = k.keys().chain(b.keys()).collect();
                for name in names {
                    if k.get(name) != b.get(name) {
                        out.push(Difference {
                            what: format!("config.Labels.{name}"),
                            kiln: show(k.get(name)),
                            buildah: show(b.get(name)),
                        });
                    }
                }
            }
            _ if k != b => out.push(Difference {
                what: format!("config.{key}"),
                kiln: show(k),
                buildah: show(b),
            }),
            _ => {}
        }
    }
    let paths: std::collections::BTreeSet<&String> =
        kiln.files.keys().chain(buildah.files.keys()).collect();
    // One-sided directories already reported, with the index of their difference.
    let mut one_sided: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for path in paths {
        let diff = |aspect: &str, k: String, b: String| Difference {
            what: format!("{path} {aspect}"),
            kiln: k,
            buildah: b,
        };
        let (k, b) = (kiln.files.get(path), buildah.files.get(path));
        if k.is_none() || b.is_none() {
            let ancestor = path
                .match_indices('/')
                .map(|(i, _)| &path[..i])
                .find(|a| one_sided.contains_key(a));
            if let Some(a) = ancestor {
                one_sided.get_mut(a).unwrap().1 += 1;
                continue;
            }
        }
        match (k, b) {
            (Some(k), Some(b)) => {
                if k.kind != b.kind {
                    out.push(diff("type", k.summary(), b.summary()));
                    continue;
                }
                if k.mode != b.mode {
                    out.push(diff(
                        "mode",
                        format!("{:04o}", k.mode),
                        format!("{:04o}", b.mode),
                    ));
                }
                if (k.uid, k.gid) != (b.uid, b.gid) {
                    out.push(diff(
                        "owner",
                        format!("{}:{}", k.uid, k.gid),
                        format!("{}:{}", b.uid, b.gid),
                    ));
                }
                if k.content != b.content {
                    let show = |e: &Entry| match (&e.text, &e.content) {
                        (Some(text), _) => format!("{text:?}"),
                        (None, Some(d)) => d.to_string(),
                        (None, None) => String::new(),
                    };
                    out.push(diff("content", show(k), show(b)));
                }
                if k.target != b.target {
                    out.push(diff(
                        "target",
                        k.target.clone().unwrap_or_default(),
                        b.target.clone().unwrap_or_default(),
                    ));
                }
            }
            (Some(e), None) | (None, Some(e)) => {
                let side = e.summary();
                let (k, b) = if k.is_some() {
                    (side, "absent".to_owned())
                } else {
                    ("absent".to_owned(), side)
                };
                if e.kind == "dir" {
                    one_sided.insert(path, (out.len(), 0));
                }
                out.push(diff("presence", k, b));
            }
            (None, None) => unreachable!("the path came from one of the two maps"),
        }
    }
    for (i, beneath) in one_sided.into_values() {
        if beneath > 0 {
            let d = &mut out[i];
            let side = if d.kiln == "absent" {
                &mut d.buildah
            } else {
                &mut d.kiln
            };
            side.push_str(&format!(" (and {beneath} path(s) beneath)"));
        }
    }
    out
}

/// Env compared per variable, then the order of the variables both have.
fn compare_env(kiln: Option<&Value>, buildah: Option<&Value>) -> Vec<Difference> {
    let vars = |v: Option<&Value>| -> Vec<(String, String)> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|e| {
                        let (k, v) = e.split_once('=').unwrap_or((e, ""));
                        (k.to_owned(), v.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (k, b) = (vars(kiln), vars(buildah));
    let get = |list: &[(String, String)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| "(unset)".to_owned(), |(_, v)| format!("{v:?}"))
    };
    let names: std::collections::BTreeSet<&String> =
        k.iter().chain(b.iter()).map(|(n, _)| n).collect();
    let mut out: Vec<Difference> = names
        .into_iter()
        .filter(|n| get(&k, n) != get(&b, n))
        .map(|n| Difference {
            what: format!("config.Env.{n}"),
            kiln: get(&k, n),
            buildah: get(&b, n),
        })
        .collect();
    let common = |list: &[(String, String)], other: &[(String, String)]| -> Vec<String> {
        list.iter()
            .filter(|(n, _)| other.iter().any(|(o, _)| o == n))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let (ko, bo) = (common(&k, &b), common(&b, &k));
    if ko != bo {
        out.push(Difference {
            what: "config.Env order".to_owned(),
            kiln: ko.join(" "),
            buildah: bo.join(" "),
        });
    }
    out
}

/// Whether an expectation's pattern names a difference: `*` matches any run of characters,
/// everything else itself.
pub fn matches(pattern: &str, what: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == what,
        Some((head, rest)) => {
            let Some(tail) = what.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| matches(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_globs() {
        for (pattern, what, expected) in [
            ("config.Env", "config.Env", true),
            ("config.Env", "config.Envs", false),
            ("/w owner", "/w owner", true),
            ("/home/* owner", "/home/a/b owner", true),
            ("/home/* owner", "/home/a mode", false),
            ("/x *", "/x presence", true),
            ("*", "anything", true),
            ("/a*b", "/ab", true),
            ("/a*b", "/a", false),
        ] {
            assert_eq!(matches(pattern, what), expected, "{pattern} ~ {what}");
        }
    }

    #[test]
    fn config_drops_empty_values_and_the_buildah_label() {
        let config = serde_json::json!({
            "Env": ["A=1"], "Cmd": null, "Volumes": {}, "WorkingDir": "",
            "Labels": {"io.buildah.version": "1.28.2"}, "User": "u", "ArgsEscaped": true,
        });
        let got = config_of(&config);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), ["Env", "User"]);
    }

    #[test]
    fn compare_reports_each_aspect() {
        let file = |mode, uid, body: &[u8]| Entry {
            kind: "file",
            mode,
            uid,
            gid: 0,
            content: Some(Digest::of(body)),
            target: None,
            text: None,
        };
        let kiln = Image {
            config: config_of(&serde_json::json!({"User": "a"})),
            files: [
                ("/same".to_owned(), file(0o644, 0, b"x")),
                ("/mode".to_owned(), file(0o600, 0, b"x")),
                ("/owner".to_owned(), file(0o644, 1, b"x")),
                ("/content".to_owned(), file(0o644, 0, b"x")),
                ("/only-kiln".to_owned(), file(0o644, 0, b"x")),
            ]
            .into(),
        };
        let buildah = Image {
            config: config_of(&serde_json::json!({"User": "b"})),
            files: [
                ("/same".to_owned(), file(0o644, 0, b"x")),
                ("/mode".to_owned(), file(0o644, 0, b"x")),
                ("/owner".to_owned(), file(0o644, 0, b"x")),
                ("/content".to_owned(), file(0o644, 0, b"y")),
            ]
            .into(),
        };
        let got: Vec<String> = compare(&kiln, &buildah)
            .into_iter()
            .map(|d| d.what)
            .collect();
        assert_eq!(
            got,
            [
                "config.User",
                "/content content",
                "/mode mode",
                "/only-kiln presence",
                "/owner owner"
            ]
        );
    }
}
