//! AST nodes → typed instructions, with BuildKit's argument checks and flag sets.
//!
//! This is BuildKit's `frontend/dockerfile/instructions` stage: each keyword gets its argument
//! count rules, its declared flags ([`flags`]) and its value shape. Nothing is expanded here;
//! [`Instruction::expand`] does that later, once the plan knows which variables are in scope,
//! because the same instruction expands differently in different stages.
//!
//! An unknown instruction or flag is an error naming it (with a suggestion when one is close),
//! never a silent ignore.

mod flags;
pub mod run_mount;

use self::flags::{Flags, Kind};
use super::Location;
use super::heredoc::{Heredoc, parse_heredoc};
use super::parser::{Args, Node};

pub use run_mount::{MountType, RunMount, Sharing};

/// An instruction that is not valid, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InstructionError {
    /// What is wrong, in BuildKit's words where BuildKit has them.
    pub message: String,
    /// The instruction's location (default until [`InstructionError::at`] sets it).
    pub location: Location,
}

impl InstructionError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            location: Location::default(),
        }
    }

    /// Sets the location, unless a more precise one is already known.
    pub fn at(mut self, location: Location) -> Self {
        if self.location == Location::default() {
            self.location = location;
        }
        self
    }
}

/// A command for RUN, CMD, ENTRYPOINT or HEALTHCHECK: exec form, or shell form to be run by the
/// image's SHELL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Command {
    /// Exec form: the argv. Shell form: one element, the whole command text.
    pub args: Vec<String>,
    /// Whether this is shell form (the SHELL is put in front when it runs).
    pub prepend_shell: bool,
    /// Heredoc bodies (RUN only), raw, with their chomp flags.
    pub files: Vec<Heredoc>,
}

/// A `key=value` pair of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value, unexpanded until [`Instruction::expand`].
    pub value: String,
}

/// One `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The argument's name.
    pub name: String,
    /// Its default, unexpanded (`None` for `ARG name`).
    pub default: Option<String>,
}

/// A source given inline as a heredoc (`COPY <<EOF /dst`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InlineSource {
    /// The heredoc's name, which is also the file name.
    pub name: String,
    /// The content, with `<<-` tab chomping applied.
    pub data: String,
    /// Whether `$VAR` in the content is expanded.
    pub expand: bool,
}

/// Sources and destination of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Files {
    /// Paths (or URLs, for ADD) as written.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub inline: Vec<InlineSource>,
    /// The destination.
    pub dest: String,
    /// The JSON form was used (no word splitting on spaces).
    pub json: bool,
}

/// Flags shared by COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct FileFlags {
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=mode` (octal or symbolic).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude=pattern`, repeatable.
    pub excludes: Vec<String>,
}

/// COPY.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Copy {
    /// What to copy where.
    pub files: Files,
    /// Common flags.
    pub flags: FileFlags,
    /// `--from=stage|index|image`.
    pub from: Option<String>,
    /// `--parents`.
    pub parents: bool,
}

/// ADD.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Add {
    /// What to add where.
    pub files: Files,
    /// Common flags.
    pub flags: FileFlags,
    /// `--checksum=sha256:…` for a remote source.
    pub checksum: Option<String>,
    /// `--keep-git-dir` for a git source.
    pub keep_git_dir: bool,
    /// `--unpack=bool`: whether archives are extracted (default: local archives yes, URLs no).
    pub unpack: Option<bool>,
}

/// `RUN --network=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The builder's default (the host's network, as `docker build` has).
    Default,
    /// An empty network namespace.
    None,
    /// The host's network.
    Host,
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// What to run.
    pub command: Command,
    /// `--mount` specifications, raw: they are parsed after expansion, see [`RunMount::parse`].
    pub mounts: Vec<String>,
    /// `--network`.
    pub network: Network,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD …`.
    Check {
        /// `["CMD", …]` for exec form, `["CMD-SHELL", cmd]` for shell form, as Docker stores it.
        test: Vec<String>,
        /// `--interval`, nanoseconds (0 = inherit the default).
        interval: u64,
        /// `--timeout`, nanoseconds.
        timeout: u64,
        /// `--start-period`, nanoseconds.
        start_period: u64,
        /// `--start-interval`, nanoseconds.
        start_interval: u64,
        /// `--retries`.
        retries: u64,
    },
}

/// FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The image, stage name or `scratch`, unexpanded.
    pub image: String,
    /// `AS name`, lowercased.
    pub stage_name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// A typed Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM [--platform=p] image [AS name]`.
    From(From),
    /// `RUN [--mount=…] [--network=…] command`.
    Run(Run),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL ["exe", "arg"]`.
    Shell(Vec<String>),
    /// `ENV k=v …`.
    Env(Vec<KeyValue>),
    /// `LABEL k=v …`.
    Label(Vec<KeyValue>),
    /// `ARG name[=default] …`.
    Arg(Vec<ArgDecl>),
    /// `COPY`.
    Copy(Copy),
    /// `ADD`.
    Add(Add),
    /// `EXPOSE port[/proto] …`, unexpanded.
    Expose(Vec<String>),
    /// `VOLUME path …`.
    Volume(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR path`.
    Workdir(String),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `MAINTAINER name`.
    Maintainer(String),
    /// `ONBUILD instruction`: the trigger text, run when a child image builds FROM this one.
    OnBuild(String),
}

/// Every instruction keyword, as suggestions print them.
pub const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Expands words for [`Instruction::expand`]: the plan provides one with the variables in scope.
pub trait Expander {
    /// One word, quotes processed, whitespace kept (BuildKit `ProcessWord`).
    fn word(&mut self, word: &str) -> Result<String, InstructionError>;
    /// Expansion then splitting into words (BuildKit `ProcessWords`), used by EXPOSE.
    fn words(&mut self, word: &str) -> Result<Vec<String>, InstructionError>;
    /// Text whose quotes are plain characters, with variables and escapes processed, as
    /// BuildKit expands the content of an unquoted COPY/ADD heredoc.
    fn raw(&mut self, text: &str) -> Result<String, InstructionError>;
}

impl Instruction {
    /// Converts an AST node (BuildKit's `ParseInstruction`).
    pub fn from_node(node: &Node) -> Result<Self, InstructionError> {
        parse(node).map_err(|e| e.at(node.location))
    }

    /// The keyword, upper-case (`COPY`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Arg(_) => "ARG",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::OnBuild(_) => "ONBUILD",
        }
    }

    /// Expands `$VAR`s where BuildKit does (ADD, COPY, ENV, EXPOSE, LABEL, STOPSIGNAL, USER,
    /// VOLUME, WORKDIR, and RUN's mount specs); RUN/CMD/ENTRYPOINT commands are left to the shell.
    /// FROM and ARG defaults are expanded by the plan, which owns their special scopes.
    pub fn expand(&mut self, x: &mut dyn Expander) -> Result<(), InstructionError> {
        let opt = |x: &mut dyn Expander, v: &mut Option<String>| -> Result<(), InstructionError> {
            if let Some(s) = v {
                *s = x.word(s)?;
            }
            Ok(())
        };
        match self {
            Instruction::Env(pairs) | Instruction::Label(pairs) => {
                // Every substitution sees the values from before this instruction, so expand all
                // first and assign after (the caller's environment is not touched here).
                for kv in pairs.iter_mut() {
                    kv.key = x.word(&kv.key)?;
                    kv.value = x.word(&kv.value)?;
                }
            }
            Instruction::Copy(c) => {
                expand_files(x, &mut c.files, &mut c.flags)?;
                opt(x, &mut c.from)?;
            }
            Instruction::Add(a) => {
                expand_files(x, &mut a.files, &mut a.flags)?;
                opt(x, &mut a.checksum)?;
            }
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for port in ports.iter() {
                    out.extend(x.words(port)?);
                }
                *ports = out;
            }
            Instruction::Volume(paths) => {
                for path in paths.iter_mut() {
                    *path = x.word(path)?;
                    if path.trim().is_empty() {
                        return Err(InstructionError::new(
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                }
            }
            Instruction::User(s) | Instruction::Workdir(s) | Instruction::StopSignal(s) => {
                *s = x.word(s)?
            }
            Instruction::Run(run) => {
                for spec in &mut run.mounts {
                    // Parse once with expansion to validate, keeping the expanded text.
                    let mut expanded = Vec::new();
                    for field in spec.split(',') {
                        match field.split_once('=') {
                            Some((k, v)) if !k.eq_ignore_ascii_case("from") => {
                                expanded.push(format!("{k}={}", x.word(v)?));
                            }
                            _ => expanded.push(field.to_owned()),
                        }
                    }
                    *spec = expanded.join(",");
                    RunMount::parse(spec, &mut |v| Ok(v.to_owned()))?;
                }
            }
            Instruction::From(_)
            | Instruction::Arg(_)
            | Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Healthcheck(_)
            | Instruction::Shell(_)
            | Instruction::Maintainer(_)
            | Instruction::OnBuild(_) => {}
        }
        Ok(())
    }
}

fn expand_files(
    x: &mut dyn Expander,
    files: &mut Files,
    flags: &mut FileFlags,
) -> Result<(), InstructionError> {
    for source in &mut files.sources {
        *source = x.word(source)?;
    }
    files.dest = x.word(&files.dest)?;
    for inline in files.inline.iter_mut().filter(|i| i.expand) {
        inline.data = x.raw(&inline.data)?;
    }
    for exclude in &mut flags.excludes {
        *exclude = x.word(exclude)?;
    }
    for flag in [&mut flags.chown, &mut flags.chmod].into_iter().flatten() {
        *flag = x.word(flag)?;
    }
    Ok(())
}

/// The closest candidate within an edit distance of two, compared case-insensitively.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|&(d, _)| d <= 2 && d > 0)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn err(message: impl Into<String>) -> InstructionError {
    InstructionError::new(message)
}

fn exactly_one(keyword: &str) -> InstructionError {
    err(format!("{keyword} requires exactly one argument"))
}

fn at_least_one(keyword: &str) -> InstructionError {
    err(format!("{keyword} requires at least one argument"))
}

/// The flat list of argument values (BuildKit's `req.args`).
fn values(args: &Args) -> Vec<String> {
    match args {
        Args::Empty | Args::Unknown | Args::OnBuild(_) => Vec::new(),
        Args::Json(v) | Args::Words(v) => v.clone(),
        Args::Text(t) => vec![t.clone()],
        Args::KeyValues { pairs, .. } => pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect(),
        Args::Healthcheck { kind, command } => {
            let mut v = vec![kind.clone()];
            v.extend(values(command));
            v
        }
    }
}

fn parse(node: &Node) -> Result<Instruction, InstructionError> {
    let keyword = node.keyword.to_ascii_uppercase();
    let flags = |declared: &[(&'static str, Kind)]| Flags::parse(&keyword, &node.flags, declared);
    let one_value = |node: &Node| -> Result<String, InstructionError> {
        flags(&[])?;
        match &node.args {
            Args::Text(t) => Ok(t.clone()),
            _ => Err(exactly_one(&keyword)),
        }
    };
    Ok(match keyword.as_str() {
        "FROM" => {
            let f = flags(&[("platform", Kind::String)])?;
            let args = values(&node.args);
            let stage_name = match args.as_slice() {
                [_] => None,
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    Some(validate_stage_name(name)?)
                }
                _ => return Err(err("FROM requires either one or three arguments")),
            };
            Instruction::From(From {
                image: args[0].clone(),
                stage_name,
                platform: f.string("platform"),
            })
        }
        "RUN" => {
            let f = flags(&[
                ("mount", Kind::List),
                ("network", Kind::String),
                ("security", Kind::String),
            ])?;
            if let Some(security) = f.string("security") {
                return Err(err(format!(
                    "RUN --security={security} is not supported by kiln (it needs a privileged sandbox)"
                )));
            }
            let network = match f.string("network").as_deref() {
                None | Some("default") => Network::Default,
                Some("none") => Network::None,
                Some("host") => Network::Host,
                Some(other) => return Err(err(format!("unsupported network mode {other:?}"))),
            };
            let command = command(node);
            if command.args.is_empty() {
                return Err(at_least_one(&keyword));
            }
            Instruction::Run(Run {
                command,
                mounts: f.list("mount"),
                network,
            })
        }
        "CMD" => {
            flags(&[])?;
            Instruction::Cmd(command(node))
        }
        "ENTRYPOINT" => {
            flags(&[])?;
            Instruction::Entrypoint(command(node))
        }
        "SHELL" => {
            flags(&[])?;
            match &node.args {
                Args::Json(v) if !v.is_empty() => Instruction::Shell(v.clone()),
                Args::Empty | Args::Json(_) => return Err(at_least_one(&keyword)),
                _ => return Err(err("SHELL requires the arguments to be in JSON form")),
            }
        }
        "ENV" | "LABEL" => {
            flags(&[])?;
            let Args::KeyValues { pairs, .. } = &node.args else {
                return Err(at_least_one(&keyword));
            };
            if pairs.iter().any(|(k, _)| k.is_empty()) {
                return Err(err(format!("{keyword} names can not be blank")));
            }
            let pairs = pairs
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            if keyword == "ENV" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "ARG" => {
            flags(&[])?;
            let args = values(&node.args);
            if args.is_empty() {
                return Err(at_least_one(&keyword));
            }
            let decls = args
                .iter()
                .map(|a| {
                    let (name, default) = match a.split_once('=') {
                        Some((n, v)) => (n, Some(v.to_owned())),
                        None => (a.as_str(), None),
                    };
                    if name.is_empty() {
                        return Err(err("ARG names can not be blank"));
                    }
                    Ok(ArgDecl {
                        name: name.to_owned(),
                        default,
                    })
                })
                .collect::<Result<_, _>>()?;
            Instruction::Arg(decls)
        }
        "COPY" => {
            let f = flags(&[
                ("chown", Kind::String),
                ("chmod", Kind::String),
                ("from", Kind::String),
                ("link", Kind::Bool),
                ("parents", Kind::Bool),
                ("exclude", Kind::List),
            ])?;
            Instruction::Copy(Copy {
                files: files(node, &keyword)?,
                flags: file_flags(&f),
                from: f.string("from"),
                parents: f.bool("parents"),
            })
        }
        "ADD" => {
            let f = flags(&[
                ("chown", Kind::String),
                ("chmod", Kind::String),
                ("link", Kind::Bool),
                ("exclude", Kind::List),
                ("checksum", Kind::String),
                ("keep-git-dir", Kind::Bool),
                ("unpack", Kind::Bool),
            ])?;
            Instruction::Add(Add {
                files: files(node, &keyword)?,
                flags: file_flags(&f),
                checksum: f.string("checksum"),
                keep_git_dir: f.bool("keep-git-dir"),
                unpack: f.string("unpack").map(|v| v == "true"),
            })
        }
        "EXPOSE" => {
            flags(&[])?;
            let ports = values(&node.args);
            if ports.is_empty() {
                return Err(at_least_one(&keyword));
            }
            Instruction::Expose(ports)
        }
        "VOLUME" => {
            flags(&[])?;
            let paths = values(&node.args);
            if paths.is_empty() {
                return Err(at_least_one(&keyword));
            }
            if paths.iter().any(|p| p.trim().is_empty()) {
                return Err(err("VOLUME specified can not be an empty string"));
            }
            Instruction::Volume(paths)
        }
        "USER" => Instruction::User(one_value(node)?),
        "WORKDIR" => Instruction::Workdir(one_value(node)?),
        "STOPSIGNAL" => Instruction::StopSignal(one_value(node)?),
        "MAINTAINER" => Instruction::Maintainer(one_value(node)?),
        "HEALTHCHECK" => healthcheck(node)?,
        "ONBUILD" => {
            flags(&[])?;
            let Args::OnBuild(inner) = &node.args else {
                return Err(at_least_one(&keyword));
            };
            match inner.keyword.to_ascii_uppercase().as_str() {
                "ONBUILD" => {
                    return Err(err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
                }
                k @ ("MAINTAINER" | "FROM") => {
                    return Err(err(format!("{k} isn't allowed as an ONBUILD trigger")));
                }
                _ => {}
            }
            let mut expression = inner.original.trim().to_owned();
            for doc in &inner.heredocs {
                expression.push('\n');
                expression.push_str(&doc.content);
                expression.push_str(&doc.name);
            }
            Instruction::OnBuild(expression)
        }
        _ => {
            let mut message = format!("unknown instruction: {}", node.keyword);
            if let Some(close) = suggest(&node.keyword, KEYWORDS.iter().copied()) {
                message.push_str(&format!(" (did you mean {close}?)"));
            }
            return Err(err(message));
        }
    })
}

/// BuildKit's stage-name rule: `^[a-z][a-z0-9-_.]*$` after lowercasing.
fn validate_stage_name(name: &str) -> Result<String, InstructionError> {
    let lower = name.to_ascii_lowercase();
    let mut chars = lower.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(err(format!(
            "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
        )));
    }
    Ok(lower)
}

fn command(node: &Node) -> Command {
    let (args, prepend_shell) = match &node.args {
        Args::Json(v) => (v.clone(), false),
        Args::Text(t) => (vec![t.clone()], true),
        _ => (Vec::new(), true),
    };
    Command {
        args,
        prepend_shell,
        files: node.heredocs.clone(),
    }
}

fn file_flags(f: &Flags) -> FileFlags {
    FileFlags {
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.bool("link"),
        excludes: f.list("exclude"),
    }
}

/// BuildKit's `parseSourcesAndDest`, with heredoc sources split out.
fn files(node: &Node, keyword: &str) -> Result<Files, InstructionError> {
    let args = values(&node.args);
    let Some((dest, sources)) = args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(err(format!(
            "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
        )));
    };
    if parse_heredoc(dest).ok().flatten().is_some() {
        return Err(err(format!(
            "{keyword} cannot accept a heredoc as a destination"
        )));
    }
    let mut out = Files {
        sources: Vec::new(),
        inline: Vec::new(),
        dest: dest.clone(),
        json: node.args.is_json(),
    };
    for source in sources {
        let doc = if node.heredocs.is_empty() {
            None
        } else {
            parse_heredoc(source).ok().flatten()
        };
        match doc.and_then(|d| node.heredocs.iter().find(|h| h.name == d.name)) {
            Some(doc) => out.inline.push(InlineSource {
                name: doc.name.clone(),
                data: doc.chomped_content(),
                expand: doc.expand,
            }),
            None => out.sources.push(source.clone()),
        }
    }
    Ok(out)
}

fn healthcheck(node: &Node) -> Result<Instruction, InstructionError> {
    let flags =
        |declared: &[(&'static str, Kind)]| Flags::parse("HEALTHCHECK", &node.flags, declared);
    let Args::Healthcheck { kind, command } = &node.args else {
        return Err(at_least_one("HEALTHCHECK"));
    };
    let kind = kind.to_ascii_uppercase();
    if kind == "NONE" {
        flags(&[])?;
        if !matches!(**command, Args::Empty) {
            return Err(err("HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(Instruction::Healthcheck(Healthcheck::None));
    }
    let f = flags(&[
        ("interval", Kind::String),
        ("timeout", Kind::String),
        ("start-period", Kind::String),
        ("start-interval", Kind::String),
        ("retries", Kind::String),
    ])?;
    if kind != "CMD" {
        return Err(err(format!(
            "Unknown type {kind:?} in HEALTHCHECK (try CMD)"
        )));
    }
    let mut test = match &**command {
        Args::Json(v) => {
            let mut t = vec!["CMD".to_owned()];
            t.extend(v.iter().cloned());
            t
        }
        Args::Text(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
        _ => Vec::new(),
    };
    if test.len() < 2 {
        return Err(err("Missing command after HEALTHCHECK CMD"));
    }
    test.shrink_to_fit();
    let duration = |name: &str| -> Result<u64, InstructionError> {
        let Some(value) = f.string(name) else {
            return Ok(0);
        };
        let nanos = parse_go_duration(&value)
            .ok_or_else(|| err(format!("time: invalid duration {value:?}")))?;
        if nanos < 0 {
            return Err(err(format!("Interval {name:?} cannot be negative")));
        }
        // Docker's minimum is one millisecond; zero means "use the default".
        if nanos != 0 && nanos < 1_000_000 {
            return Err(err(format!("Interval {name:?} cannot be less than 1ms")));
        }
        Ok(nanos as u64)
    };
    let retries = match f.string("retries") {
        None => 0,
        Some(r) => {
            let n: i64 = r
                .parse()
                .map_err(|_| err(format!("invalid --retries value {r:?}")))?;
            u64::try_from(n).map_err(|_| err(format!("--retries cannot be negative ({n})")))?
        }
    };
    Ok(Instruction::Healthcheck(Healthcheck::Check {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    }))
}

/// Go's `time.ParseDuration`: `[-+]?(\d*\.?\d+(ns|us|µs|ms|s|m|h))+` or `0`, in nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    // Whole nanoseconds, as Go's integer arithmetic gives.
    let nanos = total.round() as i64;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests;
