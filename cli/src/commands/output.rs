//! `kiln build --output`: docker buildx's output specs, parsed and performed.
//!
//! A spec is one CSV record of `key=value` fields (Go's `encoding/csv` rules, as buildx reads
//! it: a field may be quoted, `""` inside quotes is a quote, so `"name=a,b"` carries a comma).
//! `type` is `local` (the final root filesystem as files in `dest`), `tar` (that filesystem as
//! one tar), `oci` (an OCI image layout archive), `docker` (a docker-archive), `image` (the
//! image in kiln's store under `name=`, pushed too with `push=true`) or `registry` (`image` with
//! `push=true`); `name=` gives the image names an archive records or the store and registry get
//! (default: the `-t` tags). A spec that is one
//! plain field without `type=` is buildx's shorthand: `DIR` is `type=local,dest=DIR` and `-` is
//! `type=tar,dest=-`. `dest=-` is standard output, for the tar types only, and never a
//! terminal. Everything is checked before the build starts: an unknown type or key, a missing
//! `dest`, two outputs on standard output are errors, never ignored.
//!
//! Files appear complete or not at all: archives and tars are written beside their destination
//! and renamed into place. The image itself is in the store before any output is written.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal as _, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_builder::archive::{self, Format, SaveImage};
use kiln_builder::export::{self, ExportStats};
use kiln_builder::oci_spec::image::Descriptor;
use kiln_builder::store::Store;
use kiln_registry::Reference;

/// What an output writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The root filesystem as files in a directory.
    Local,
    /// The root filesystem as one tar.
    Tar,
    /// An OCI image layout archive.
    Oci,
    /// A docker-archive.
    Docker,
    /// The image in the store, under names (and pushed with `push=true`).
    Image,
    /// The image in the store and pushed.
    Registry,
}

impl Kind {
    /// The name in a spec.
    fn name(self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::Tar => "tar",
            Kind::Oci => "oci",
            Kind::Docker => "docker",
            Kind::Image => "image",
            Kind::Registry => "registry",
        }
    }

    /// The keys besides `type` a spec of this kind may have.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Local | Kind::Tar => &["dest"],
            Kind::Oci | Kind::Docker => &["dest", "name"],
            Kind::Image => &["name", "push"],
            Kind::Registry => &["name"],
        }
    }

    /// Whether the output is the image itself (in the store, maybe in a registry), not a file.
    fn is_image(self) -> bool {
        matches!(self, Kind::Image | Kind::Registry)
    }
}

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dest {
    /// A path (a directory for `local`, a file otherwise).
    Path(PathBuf),
    /// Standard output (`dest=-`).
    Stdout,
    /// The store, and the registry when pushed (`type=image|registry`).
    Store,
}

/// One parsed `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutputSpec {
    /// What to write.
    pub kind: Kind,
    /// Where.
    pub dest: Dest,
    /// The names an image archive records or the image gets (`name=`); empty means the `-t`
    /// tags.
    pub names: Vec<Reference>,
    /// Whether the names are pushed (`type=registry`, `type=image,push=true`).
    pub push: bool,
}

/// Why an `--output` spec is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SpecError {
    /// The CSV record is malformed (a stray or unterminated quote).
    Csv(&'static str),
    /// A field is not `key=value`.
    NotKeyValue(String),
    /// No `type=` field.
    MissingType,
    /// A type kiln does not write.
    UnknownType(String),
    /// A key the type does not take.
    UnknownKey {
        /// The output type.
        kind: Kind,
        /// The key.
        key: String,
    },
    /// A key given twice.
    DuplicateKey(String),
    /// No `dest=`, or an empty one.
    MissingDest(Kind),
    /// `type=local,dest=-`.
    LocalToStdout,
    /// `push=` that is not `true` or `false`.
    BadPush(String),
    /// A `name=` that is not an image reference.
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Csv(why) => write!(f, "{why}"),
            SpecError::NotKeyValue(field) => write!(f, "{field:?} is not KEY=VALUE"),
            SpecError::MissingType => write!(
                f,
                "type=… is required (local, tar, oci, docker, image or registry)"
            ),
            SpecError::UnknownType(t) => write!(
                f,
                "unknown output type {t:?}: kiln writes local, tar, oci, docker, image and \
                 registry"
            ),
            SpecError::BadPush(value) => write!(f, "push={value:?}: give true or false"),
            SpecError::UnknownKey { kind, key } => write!(
                f,
                "type={} does not take {key:?} (it takes {})",
                kind.name(),
                kind.keys().join(", ")
            ),
            SpecError::DuplicateKey(key) => write!(f, "{key:?} is given twice"),
            SpecError::MissingDest(kind) => {
                write!(f, "type={} needs dest=PATH", kind.name())
            }
            SpecError::LocalToStdout => write!(
                f,
                "type=local cannot write to standard output (type=tar,dest=- can)"
            ),
            SpecError::BadName { name, reason } => {
                write!(f, "name {name:?} is not an image reference: {reason}")
            }
        }
    }
}

impl std::error::Error for SpecError {}

/// Parses one `--output` value.
pub(crate) fn parse_spec(spec: &str) -> Result<OutputSpec, SpecError> {
    let fields = csv_fields(spec)?;
    // buildx's shorthand: one plain field (no quotes, no commas) that does not start `type=`.
    if let [only] = fields.as_slice()
        && only == spec
        && !spec.starts_with("type=")
    {
        return Ok(if spec == "-" {
            OutputSpec {
                kind: Kind::Tar,
                dest: Dest::Stdout,
                names: Vec::new(),
                push: false,
            }
        } else {
            OutputSpec {
                kind: Kind::Local,
                dest: Dest::Path(PathBuf::from(spec)),
                names: Vec::new(),
                push: false,
            }
        });
    }
    let mut kind = None;
    let mut attrs: Vec<(String, String)> = Vec::new();
    for field in &fields {
        let Some((key, value)) = field.split_once('=') else {
            return Err(SpecError::NotKeyValue(field.clone()));
        };
        let key = key.trim().to_ascii_lowercase();
        if key == "type" {
            if kind.is_some() {
                return Err(SpecError::DuplicateKey(key));
            }
            kind = Some(value.to_owned());
        } else if attrs.iter().any(|(k, _)| *k == key) {
            return Err(SpecError::DuplicateKey(key));
        } else {
            attrs.push((key, value.to_owned()));
        }
    }
    let kind = match kind.as_deref() {
        None => return Err(SpecError::MissingType),
        Some("local") => Kind::Local,
        Some("tar") => Kind::Tar,
        Some("oci") => Kind::Oci,
        Some("docker") => Kind::Docker,
        Some("image") => Kind::Image,
        Some("registry") => Kind::Registry,
        Some(other) => return Err(SpecError::UnknownType(other.to_owned())),
    };
    let mut dest = None;
    let mut names = Vec::new();
    let mut push = kind == Kind::Registry;
    for (key, value) in attrs {
        if !kind.keys().contains(&key.as_str()) {
            return Err(SpecError::UnknownKey { kind, key });
        }
        match key.as_str() {
            "dest" => dest = Some(value),
            "push" => {
                push = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(SpecError::BadPush(value)),
                }
            }
            _ => {
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let reference = Reference::parse(name).map_err(|e| SpecError::BadName {
                        name: name.to_owned(),
                        reason: e.to_string(),
                    })?;
                    names.push(reference);
                }
            }
        }
    }
    let dest = match dest.as_deref() {
        None if kind.is_image() => Dest::Store,
        None | Some("") => return Err(SpecError::MissingDest(kind)),
        Some("-") if kind == Kind::Local => return Err(SpecError::LocalToStdout),
        Some("-") => Dest::Stdout,
        Some(path) => Dest::Path(PathBuf::from(path)),
    };
    Ok(OutputSpec {
        kind,
        dest,
        names,
        push,
    })
}

/// Splits one CSV record into fields, as Go's `encoding/csv` reads it (no lazy quotes, spaces
/// kept): a quoted field ends at a quote followed by a comma or the end, `""` inside it is a
/// quote; a quote anywhere else is an error.
fn csv_fields(record: &str) -> Result<Vec<String>, SpecError> {
    if record.is_empty() {
        return Err(SpecError::Csv("the output spec is empty"));
    }
    let mut fields = Vec::new();
    let mut chars = record.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(SpecError::Csv("a quoted field is not closed")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => {
                    return Err(SpecError::Csv(
                        "a closing quote must end its field (use \"\" for a quote inside one)",
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(SpecError::Csv(
                            "a quote inside an unquoted field (quote the whole field)",
                        ));
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// Checks the outputs together and against the terminal, before the build: at most one goes
/// to standard output, and standard output is then not a terminal.
pub(crate) fn check(outputs: &[OutputSpec]) -> anyhow::Result<()> {
    let to_stdout = outputs.iter().filter(|o| o.dest == Dest::Stdout).count();
    if to_stdout > 1 {
        bail!("--output: only one output can go to standard output (dest=-)");
    }
    if to_stdout == 1 && io::stdout().is_terminal() {
        bail!("--output: refusing to write a tar to a terminal; redirect standard output");
    }
    Ok(())
}

/// Whether an output writes to standard output (which then carries nothing else).
pub(crate) fn uses_stdout(outputs: &[OutputSpec]) -> bool {
    outputs.iter().any(|o| o.dest == Dest::Stdout)
}

/// The names the image gets in the store and the ones pushed, from the `-t` tags, `--push`
/// and the `type=image|registry` outputs (each names its `name=`s, else the tags), in order
/// and without repeats.
pub(crate) fn image_names(
    outputs: &[OutputSpec],
    tags: &[Reference],
    push: bool,
) -> anyhow::Result<(Vec<Reference>, Vec<Reference>)> {
    let mut names: Vec<Reference> = tags.to_vec();
    let mut pushed: Vec<Reference> = if push { tags.to_vec() } else { Vec::new() };
    for output in outputs.iter().filter(|o| o.kind.is_image()) {
        let given = if output.names.is_empty() {
            if tags.is_empty() {
                bail!(
                    "--output type={} needs a name: give name=NAME[:TAG] or -t NAME[:TAG]",
                    output.kind.name()
                );
            }
            tags
        } else {
            &output.names
        };
        for name in given {
            if !names.contains(name) {
                names.push(name.clone());
            }
            if output.push && !pushed.contains(name) {
                pushed.push(name.clone());
            }
        }
    }
    Ok((names, pushed))
}

/// Writes every output of the built image (`manifest`, in `store`, tagged with `tags`; an
/// index for a multi-platform build: `local` and `tar` then write one directory per platform).
pub(crate) fn write_all(
    store: &Store,
    outputs: &[OutputSpec],
    manifest: &Descriptor,
    tags: &[Reference],
    quiet: bool,
) -> anyhow::Result<()> {
    for output in outputs {
        let shown = match &output.dest {
            Dest::Path(p) => p.display().to_string(),
            Dest::Stdout => "standard output".to_owned(),
            // Named by the build and pushed with `--push`'s pushes (see `image_names`).
            Dest::Store => continue,
        };
        if !quiet {
            eprintln!("exporting {} to {shown}", output.kind.name());
        }
        write_one(store, output, manifest, tags)
            .with_context(|| format!("--output type={} to {shown}", output.kind.name()))?;
    }
    Ok(())
}

fn write_one(
    store: &Store,
    output: &OutputSpec,
    manifest: &Descriptor,
    tags: &[Reference],
) -> anyhow::Result<()> {
    match (output.kind, &output.dest) {
        // The image itself: the build named it, the pushes push it. Only these kinds parse
        // to `Dest::Store`.
        (Kind::Image | Kind::Registry, _) | (_, Dest::Store) => {}
        (Kind::Local, Dest::Path(dir)) => {
            warn_skipped(&export::write_image_rootfs(store, manifest, dir)?);
        }
        (Kind::Local, Dest::Stdout) => bail!("{}", SpecError::LocalToStdout),
        (Kind::Tar, Dest::Path(file)) => {
            let stats = write_file(file, |out| {
                let (out, stats) = export::write_image_rootfs_tar(store, manifest, out)?;
                Ok((out, stats))
            })?;
            warn_skipped(&stats);
        }
        (Kind::Tar, Dest::Stdout) => {
            let out = BufWriter::new(io::stdout().lock());
            let (out, stats) = export::write_image_rootfs_tar(store, manifest, out)?;
            out.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|mut w| w.flush())
                .context("writing to standard output")?;
            warn_skipped(&stats);
        }
        (Kind::Oci | Kind::Docker, dest) => {
            let format = if output.kind == Kind::Oci {
                Format::OciArchive
            } else {
                Format::DockerArchive
            };
            let names = if output.names.is_empty() {
                tags
            } else {
                &output.names
            };
            let images: Vec<SaveImage> = if names.is_empty() {
                vec![SaveImage {
                    name: None,
                    descriptor: manifest.clone(),
                }]
            } else {
                names
                    .iter()
                    .map(|name| SaveImage {
                        name: Some(name.clone()),
                        descriptor: manifest.clone(),
                    })
                    .collect()
            };
            let _lease = store.lease().context("taking a lease on the store")?;
            match dest {
                Dest::Store => {}
                Dest::Path(file) => archive::save(store, &images, format, file)?,
                Dest::Stdout => {
                    // An archive is written whole before it is streamed: a failure midway must
                    // not leave a reader with half an archive that looks complete.
                    let tmp = Scratch::new(store.tmp_dir().join(format!(
                        "output-{}-{}.tar",
                        std::process::id(),
                        output.kind.name()
                    )));
                    archive::save(store, &images, format, &tmp.0)?;
                    let mut file = File::open(&tmp.0)
                        .with_context(|| format!("opening {}", tmp.0.display()))?;
                    let mut out = io::stdout().lock();
                    io::copy(&mut file, &mut out)
                        .and_then(|_| out.flush())
                        .context("writing to standard output")?;
                }
            }
        }
    }
    Ok(())
}

/// Device nodes a non-root export could not create are worth a warning, not a failure (an
/// unprivileged `tar x` skips them the same way).
fn warn_skipped(stats: &ExportStats) {
    if !stats.skipped_devices.is_empty() {
        eprintln!(
            "warning: {} device node(s) not created (creating them needs root), e.g. /{}",
            stats.skipped_devices.len(),
            stats.skipped_devices[0].display()
        );
    }
}

/// Writes `file` atomically: into a new file beside it, fsynced, mode 0644, renamed into place.
fn write_file<T>(
    file: &Path,
    write: impl FnOnce(BufWriter<File>) -> anyhow::Result<(BufWriter<File>, T)>,
) -> anyhow::Result<T> {
    let name = file
        .file_name()
        .with_context(|| format!("{} is not a file name", file.display()))?;
    let tmp = Scratch::new(file.with_file_name(format!(
        ".{}.kiln-{}",
        name.to_string_lossy(),
        std::process::id()
    )));
    let created = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp.0)
        .with_context(|| format!("creating {}", tmp.0.display()))?;
    let (out, value) = write(BufWriter::with_capacity(256 * 1024, created))?;
    let done = out.into_inner().map_err(|e| e.into_error()).and_then(|f| {
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.sync_all()
    });
    done.with_context(|| format!("writing {}", tmp.0.display()))?;
    fs::rename(&tmp.0, file).with_context(|| format!("renaming into {}", file.display()))?;
    tmp.disarm();
    Ok(value)
}

/// A temporary file removed when dropped, unless disarmed.
struct Scratch(PathBuf);

impl Scratch {
    fn new(path: PathBuf) -> Self {
        Self(path)
    }

    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Nothing to report a failed cleanup to; what is left in the store's tmp/ is gc's.
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dest: &str) -> OutputSpec {
        of(Kind::Local, path(dest), &[])
    }

    fn of(kind: Kind, dest: Dest, names: &[&str]) -> OutputSpec {
        OutputSpec {
            kind,
            dest,
            names: refs(names),
            push: kind == Kind::Registry,
        }
    }

    fn refs(names: &[&str]) -> Vec<Reference> {
        names.iter().map(|n| Reference::parse(n).unwrap()).collect()
    }

    fn path(p: &str) -> Dest {
        Dest::Path(p.into())
    }

    #[test]
    fn specs_parse_as_buildx_reads_them() {
        let cases: Vec<(&str, OutputSpec)> = vec![
            ("out", local("out")),
            ("./out/dir", local("./out/dir")),
            // A plain field with `=` that is not `type=` is still a directory (buildx's rule).
            ("a=b", local("a=b")),
            ("-", of(Kind::Tar, Dest::Stdout, &[])),
            ("type=local,dest=out", local("out")),
            ("dest=out,type=local", local("out")),
            (" TYPE=local, Dest=out", local("out")),
            (
                "type=tar,dest=rootfs.tar",
                of(Kind::Tar, path("rootfs.tar"), &[]),
            ),
            ("type=tar,dest=-", of(Kind::Tar, Dest::Stdout, &[])),
            ("type=oci,dest=img.tar", of(Kind::Oci, path("img.tar"), &[])),
            ("type=oci,dest=-", of(Kind::Oci, Dest::Stdout, &[])),
            (
                "type=docker,dest=img.tar,name=app:1",
                of(Kind::Docker, path("img.tar"), &["app:1"]),
            ),
            (
                r#"type=docker,"name=app:1,reg.example:5000/app:2",dest=d.tar"#,
                of(
                    Kind::Docker,
                    path("d.tar"),
                    &["app:1", "reg.example:5000/app:2"],
                ),
            ),
            (
                r#"type=local,"dest=a ""quoted"", dir""#,
                local(r#"a "quoted", dir"#),
            ),
            ("type=local,dest=a=b", local("a=b")),
            ("type=image", of(Kind::Image, Dest::Store, &[])),
            (
                "type=image,name=app:1,push=false",
                of(Kind::Image, Dest::Store, &["app:1"]),
            ),
            (
                "type=image,push=true",
                OutputSpec {
                    push: true,
                    ..of(Kind::Image, Dest::Store, &[])
                },
            ),
            (
                r#"type=registry,"name=r.example/a:1,r.example/b:2""#,
                of(
                    Kind::Registry,
                    Dest::Store,
                    &["r.example/a:1", "r.example/b:2"],
                ),
            ),
        ];
        let n = cases.len();
        for (spec, expected) in cases {
            assert_eq!(parse_spec(spec), Ok(expected), "{spec}");
        }
        assert_eq!(n, 19);
    }

    #[test]
    fn bad_specs_are_refused_with_their_reason() {
        let cases: Vec<(&str, SpecError, &str)> = vec![
            (
                "",
                SpecError::Csv("the output spec is empty"),
                "the output spec is empty",
            ),
            (
                "dest=out,local",
                SpecError::NotKeyValue("local".into()),
                "\"local\" is not KEY=VALUE",
            ),
            (
                "dest=out,x=y",
                SpecError::MissingType,
                "type=… is required (local, tar, oci, docker, image or registry)",
            ),
            (
                "type=image,push=yes",
                SpecError::BadPush("yes".into()),
                "push=\"yes\": give true or false",
            ),
            (
                "type=registry,name=x,push=false",
                SpecError::UnknownKey {
                    kind: Kind::Registry,
                    key: "push".into(),
                },
                "type=registry does not take \"push\" (it takes name)",
            ),
            (
                "type=cacheonly",
                SpecError::UnknownType("cacheonly".into()),
                "unknown output type \"cacheonly\": kiln writes local, tar, oci, docker, image and registry",
            ),
            (
                "type=local,dest=out,name=x",
                SpecError::UnknownKey {
                    kind: Kind::Local,
                    key: "name".into(),
                },
                "type=local does not take \"name\" (it takes dest)",
            ),
            (
                "type=oci,dest=x.tar,compression=zstd",
                SpecError::UnknownKey {
                    kind: Kind::Oci,
                    key: "compression".into(),
                },
                "type=oci does not take \"compression\" (it takes dest, name)",
            ),
            (
                "type=tar,dest=a,dest=b",
                SpecError::DuplicateKey("dest".into()),
                "\"dest\" is given twice",
            ),
            (
                "type=tar,type=local,dest=a",
                SpecError::DuplicateKey("type".into()),
                "\"type\" is given twice",
            ),
            (
                "type=tar",
                SpecError::MissingDest(Kind::Tar),
                "type=tar needs dest=PATH",
            ),
            (
                "type=docker,dest=",
                SpecError::MissingDest(Kind::Docker),
                "type=docker needs dest=PATH",
            ),
            (
                "type=local,dest=-",
                SpecError::LocalToStdout,
                "type=local cannot write to standard output (type=tar,dest=- can)",
            ),
            (
                r#"type=local,"dest=out"#,
                SpecError::Csv("a quoted field is not closed"),
                "a quoted field is not closed",
            ),
            (
                r#"type=local,dest="out""#,
                SpecError::Csv("a quote inside an unquoted field (quote the whole field)"),
                "a quote inside an unquoted field (quote the whole field)",
            ),
            (
                r#""type=local"x,dest=out"#,
                SpecError::Csv(
                    "a closing quote must end its field (use \"\" for a quote inside one)",
                ),
                "a closing quote must end its field (use \"\" for a quote inside one)",
            ),
        ];
        let n = cases.len();
        for (spec, error, message) in cases {
            let found = parse_spec(spec).unwrap_err();
            assert_eq!(found, error, "{spec}");
            assert_eq!(found.to_string(), message, "{spec}");
        }
        assert_eq!(n, 16);

        let bad_name = parse_spec("type=oci,dest=x.tar,name=UPPER:tag").unwrap_err();
        assert!(
            matches!(&bad_name, SpecError::BadName { name, .. } if name == "UPPER:tag"),
            "{bad_name:?}"
        );
    }

    #[test]
    fn image_outputs_add_names_and_pushes() {
        let tags = refs(&["app:1"]);
        let specs = |given: &[&str]| -> Vec<OutputSpec> {
            given.iter().map(|g| parse_spec(g).unwrap()).collect()
        };
        let (named, pushed) = image_names(&[], &tags, true).unwrap();
        assert_eq!((named, pushed), (tags.clone(), tags.clone()));
        let outputs = specs(&["type=image,name=extra:2", "type=registry", "out"]);
        let (named, pushed) = image_names(&outputs, &tags, false).unwrap();
        assert_eq!(named, refs(&["app:1", "extra:2"]));
        assert_eq!(pushed, refs(&["app:1"]));
        let outputs = specs(&["type=image,push=true,name=r.example/x:1"]);
        let (named, pushed) = image_names(&outputs, &tags, true).unwrap();
        assert_eq!(named, refs(&["app:1", "r.example/x:1"]));
        assert_eq!(pushed, refs(&["app:1", "r.example/x:1"]));
        let err = image_names(&specs(&["type=registry"]), &[], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--output type=registry needs a name: give name=NAME[:TAG] or -t NAME[:TAG]"
        );
    }

    #[test]
    fn csv_fields_follow_go_encoding_csv() {
        let cases: [(&str, &[&str]); 6] = [
            ("a", &["a"]),
            ("a,b", &["a", "b"]),
            ("a,,b,", &["a", "", "b", ""]),
            (r#""a,b",c"#, &["a,b", "c"]),
            (r#""""""#, &[r#"""#]),
            (r#"x,"""y""""#, &["x", r#""y""#]),
        ];
        for (record, fields) in cases {
            assert_eq!(csv_fields(record).unwrap(), fields, "{record}");
        }
    }

    #[test]
    fn at_most_one_output_goes_to_stdout() {
        let two = [
            of(Kind::Tar, Dest::Stdout, &[]),
            of(Kind::Oci, Dest::Stdout, &[]),
        ];
        let err = check(&two).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--output: only one output can go to standard output (dest=-)"
        );
        assert!(uses_stdout(&two));
        let files = [local("a"), of(Kind::Oci, path("b.tar"), &[])];
        check(&files).unwrap();
        assert!(!uses_stdout(&files));
    }
}
