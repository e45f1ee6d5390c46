//! `RUN --mount=type=…,…` specifications, parsed with BuildKit's rules.
//!
//! A mount is a CSV list of `key=value` fields (and a few bare keys like `ro`). The defaults follow
//! BuildKit: type `bind`; bind and secret mounts read-only unless `rw`; cache and tmpfs writable.
//! Values (except `from`) may contain `$VAR`; the caller expands them before parsing, which is why
//! parsing takes an expander.

use super::InstructionError;

/// The kinds of `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A directory or file from the context or a stage, read-only by default.
    Bind,
    /// A persistent cache directory shared across builds.
    Cache,
    /// An empty in-memory filesystem.
    Tmpfs,
    /// A build secret, as a file or an environment variable.
    Secret,
    /// The SSH agent socket (not supported by kiln yet).
    Ssh,
}

impl MountType {
    const ALL: [(&'static str, MountType); 5] = [
        ("bind", MountType::Bind),
        ("cache", MountType::Cache),
        ("tmpfs", MountType::Tmpfs),
        ("secret", MountType::Secret),
        ("ssh", MountType::Ssh),
    ];

    /// The name as written in a Dockerfile.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("bind", |(n, _)| n)
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Everyone uses the same directory at once (the default).
    Shared,
    /// A build that finds the cache busy gets a fresh one.
    Private,
    /// A build waits until the cache is free.
    Locked,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunMount {
    /// The kind of mount.
    pub kind: MountType,
    /// Where it appears inside the RUN (`target`, `dst`, `destination`).
    pub target: Option<String>,
    /// What is mounted (`source`, `src`): a path in `from`, or a secret's source.
    pub source: Option<String>,
    /// A stage name or index, or an image, to take the source from.
    pub from: Option<String>,
    /// Whether the mount is read-only (after BuildKit's per-type default).
    pub read_only: bool,
    /// The cache or secret id.
    pub id: Option<String>,
    /// Cache sharing mode.
    pub sharing: Option<Sharing>,
    /// File mode for cache, secret and ssh mounts.
    pub mode: Option<u32>,
    /// Owner uid for cache, secret and ssh mounts.
    pub uid: Option<u32>,
    /// Owner gid for cache, secret and ssh mounts.
    pub gid: Option<u32>,
    /// For secrets and ssh: fail when the secret is not provided.
    pub required: bool,
    /// For secrets: expose as this environment variable instead of a file.
    pub env: Option<String>,
    /// For tmpfs: size limit in bytes.
    pub size: Option<u64>,
}

const ALL_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

fn err(message: String) -> InstructionError {
    InstructionError::new(message)
}

impl RunMount {
    /// Parses one `--mount` value; `expand` is applied to every value except `from`'s.
    pub fn parse(
        spec: &str,
        expand: &mut dyn FnMut(&str) -> Result<String, InstructionError>,
    ) -> Result<Self, InstructionError> {
        let mut m = RunMount {
            kind: MountType::Bind,
            target: None,
            source: None,
            from: None,
            read_only: true,
            id: None,
            sharing: None,
            mode: None,
            uid: None,
            gid: None,
            required: false,
            env: None,
            size: None,
        };
        let mut ro_auto = true;
        for field in csv_fields(spec)? {
            let Some((key, value)) = field.split_once('=') else {
                match field.to_ascii_lowercase().as_str() {
                    "readonly" | "ro" => (m.read_only, ro_auto) = (true, false),
                    "readwrite" | "rw" => (m.read_only, ro_auto) = (false, false),
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                        m.required = true
                    }
                    "required" => {
                        return Err(err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            m.kind.as_str()
                        )));
                    }
                    _ => {
                        return Err(err(format!(
                            "invalid field '{field}' must be a key=value pair"
                        )));
                    }
                }
                continue;
            };
            let key = key.to_ascii_lowercase();
            let value = if key == "from" {
                value.to_owned()
            } else {
                expand(value)?
            };
            match key.as_str() {
                "type" => {
                    let lower = value.to_ascii_lowercase();
                    m.kind = MountType::ALL
                        .iter()
                        .find(|(n, _)| *n == lower)
                        .map(|(_, t)| *t)
                        .ok_or_else(|| err(format!("unsupported mount type {value:?}")))?;
                }
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "readonly" | "ro" => (m.read_only, ro_auto) = (parse_bool(&key, &value)?, false),
                "readwrite" | "rw" => (m.read_only, ro_auto) = (!parse_bool(&key, &value)?, false),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = parse_bool(&key, &value)?;
                }
                "id" => m.id = Some(value),
                "sharing" if m.kind == MountType::Cache => {
                    m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => Sharing::Shared,
                        "private" => Sharing::Private,
                        "locked" => Sharing::Locked,
                        _ => return Err(err(format!("unsupported sharing value {value:?}"))),
                    });
                }
                "from" => m.from = Some(value),
                "mode" => {
                    m.mode = Some(
                        u32::from_str_radix(&value, 8)
                            .map_err(|_| err(format!("invalid value {value} for mode")))?,
                    );
                }
                "uid" => {
                    m.uid = Some(
                        value
                            .parse()
                            .map_err(|_| err(format!("invalid value {value} for uid")))?,
                    )
                }
                "gid" => {
                    m.gid = Some(
                        value
                            .parse()
                            .map_err(|_| err(format!("invalid value {value} for gid")))?,
                    )
                }
                "env" => m.env = Some(value),
                "size" if m.kind == MountType::Tmpfs => m.size = Some(parse_size(&value)?),
                "required" | "sharing" | "size" => {
                    return Err(err(format!(
                        "invalid key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    )));
                }
                _ => {
                    let mut message = format!("unexpected key '{key}' in '{field}'");
                    if let Some(close) = super::suggest(&key, ALL_KEYS.iter().copied()) {
                        message.push_str(&format!(" (did you mean {close}?)"));
                    }
                    return Err(err(message));
                }
            }
        }
        m.validate(ro_auto)?;
        Ok(m)
    }

    /// The id of a secret mount: `id=`, else `source=`, else the target's file name.
    pub fn secret_id(&self) -> String {
        self.id
            .clone()
            .or_else(|| self.source.clone())
            .or_else(|| {
                self.target
                    .as_deref()
                    .and_then(|t| t.rsplit('/').next())
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }

    fn validate(&mut self, ro_auto: bool) -> Result<(), InstructionError> {
        let kind = self.kind.as_str();
        if !matches!(
            self.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        ) {
            for (name, set) in [
                ("mode", self.mode.is_some()),
                ("uid", self.uid.is_some()),
                ("gid", self.gid.is_some()),
            ] {
                if set {
                    return Err(err(format!("{name} not allowed for {kind:?} type mounts")));
                }
            }
        }
        if ro_auto {
            self.read_only = !matches!(self.kind, MountType::Cache | MountType::Tmpfs);
        }
        match self.kind {
            MountType::Secret => {
                if self.from.is_some() {
                    return Err(err("secret mount should not have a from".into()));
                }
                if self.source.is_none()
                    && self.target.is_none()
                    && self.id.is_none()
                    && self.env.is_none()
                {
                    return Err(err(
                        "invalid secret mount. one of source, target required".into()
                    ));
                }
                if self.source.is_some() && self.id.is_some() {
                    return Err(err("both source and id can't be set".into()));
                }
            }
            MountType::Ssh => {}
            MountType::Bind | MountType::Cache | MountType::Tmpfs => {
                if self.target.as_deref().is_none_or(str::is_empty) {
                    return Err(err("mount target is required".into()));
                }
            }
        }
        if self.env.is_some() && self.kind != MountType::Secret {
            return Err(err(format!("invalid key 'env' for mount type '{kind}'")));
        }
        Ok(())
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, InstructionError> {
    // Go's strconv.ParseBool.
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(err(format!("invalid value for {key}: {value}"))),
    }
}

/// A size like `64m` or `1g` (docker's `RAMInBytes`: binary units, optional `b`/`ib`).
fn parse_size(value: &str) -> Result<u64, InstructionError> {
    let invalid = || err(format!("invalid size: {value:?}"));
    let lower = value.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let number: f64 = lower[..digits_end].parse().map_err(|_| invalid())?;
    let unit = lower[digits_end..]
        .trim_end_matches('b')
        .trim_end_matches('i');
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(invalid()),
    };
    // Sizes are whole bytes; the product of a finite non-negative float is truncated as docker does.
    Ok((number * multiplier as f64) as u64)
}

/// Splits a CSV record (Go's `encoding/csv` rules for one line: `"` quotes, `""` inside quotes).
fn csv_fields(spec: &str) -> Result<Vec<String>, InstructionError> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = spec.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(err(format!("invalid mount {spec:?}: unterminated quote")));
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<RunMount, String> {
        RunMount::parse(spec, &mut |v| Ok(v.replace("$DIR", "/expanded"))).map_err(|e| e.message)
    }

    #[test]
    fn defaults_and_fields() {
        let m = parse("type=cache,target=/root/.cache,id=go,sharing=locked,mode=0755,uid=1000")
            .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert!(!m.read_only);
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert_eq!((m.mode, m.uid), (Some(0o755), Some(1000)));
        let m = parse("target=/src,source=.,from=build").unwrap();
        assert_eq!((m.kind, m.read_only), (MountType::Bind, true));
        assert!(!parse("type=bind,target=/src,rw").unwrap().read_only);
        assert_eq!(
            parse("type=tmpfs,dst=/t,size=64m").unwrap().size,
            Some(64 << 20)
        );
        let m = parse("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert_eq!((m.env.as_deref(), m.required), (Some("TOKEN"), true));
        assert_eq!(
            parse("target=$DIR,from=$X").unwrap().target.as_deref(),
            Some("/expanded")
        );
        assert_eq!(
            parse("target=$DIR,from=$X").unwrap().from.as_deref(),
            Some("$X")
        );
        assert_eq!(
            parse("\"type=bind\",target=/a").unwrap().kind,
            MountType::Bind
        );
    }

    #[test]
    fn errors() {
        let cases = [
            ("type=nfs,target=/a", "unsupported mount type \"nfs\""),
            ("type=bind", "mount target is required"),
            (
                "type=bind,target=/a,mode=0700",
                "mode not allowed for \"bind\" type mounts",
            ),
            (
                "type=cache,target=/a,sharing=weird",
                "unsupported sharing value \"weird\"",
            ),
            (
                "type=bind,target=/a,sharing=locked",
                "invalid key 'sharing' for mount type 'bind'",
            ),
            (
                "type=bind,target=/a,tagret=/b",
                "unexpected key 'tagret' in 'tagret=/b' (did you mean target?)",
            ),
            (
                "type=bind,target=/a,required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "type=secret",
                "invalid secret mount. one of source, target required",
            ),
            (
                "type=secret,id=a,source=b",
                "both source and id can't be set",
            ),
            ("type=cache,target=/a,uid=x", "invalid value x for uid"),
            (
                "type=cache,target=/a,bogus",
                "invalid field 'bogus' must be a key=value pair",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec).err().as_deref(), Some(want), "{spec}");
        }
    }
}
