//! `--annotation`, as buildx spells it: `[TYPE[,TYPE…][\[PLATFORM\]]:]KEY=VALUE`, where a TYPE is
//! `manifest` (the default), `manifest-descriptor`, `index` or `index-descriptor`, and a
//! platform limits it to the manifest of that platform.
//!
//! kiln writes one manifest per build (no image index yet), so `manifest` is what it takes; the
//! other types are refused by name rather than dropped. An annotation for another platform than
//! the build's applies to nothing, as in buildx.

use std::collections::BTreeMap;

use kiln_registry::Platform;

/// Why an `--annotation` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// No `KEY=VALUE`, or an empty key.
    #[error("--annotation {0:?}: give [TYPE[PLATFORM]:]KEY=VALUE")]
    Syntax(String),
    /// A type that is not one of buildx's four.
    #[error(
        "--annotation {spec:?}: unknown type {kind:?} (manifest, manifest-descriptor, index or \
         index-descriptor)"
    )]
    UnknownType {
        /// The flag's value.
        spec: String,
        /// The type.
        kind: String,
    },
    /// A type that needs an image index, which kiln does not write yet.
    #[error(
        "--annotation {spec:?}: {kind} annotations need an image index, which kiln writes only \
         for multi-platform builds (not supported yet); use manifest:"
    )]
    NeedsIndex {
        /// The flag's value.
        spec: String,
        /// The type.
        kind: String,
    },
    /// A platform qualifier that does not parse.
    #[error("--annotation {spec:?}: {reason}")]
    Platform {
        /// The flag's value.
        spec: String,
        /// Why.
        reason: String,
    },
}

/// The manifest annotations of `specs` for a build for `platform`, in key order; a later value
/// of a key wins, as in buildx.
pub fn manifest_annotations(
    specs: &[String],
    platform: &Platform,
) -> Result<BTreeMap<String, String>, AnnotationError> {
    let mut out = BTreeMap::new();
    for spec in specs {
        if let Some((key, value)) = parse(spec, platform)? {
            out.insert(key, value);
        }
    }
    Ok(out)
}

/// One `--annotation`: its key and value when it applies to the manifest built for `platform`.
fn parse(spec: &str, platform: &Platform) -> Result<Option<(String, String)>, AnnotationError> {
    let (head, pair) = match spec.split_once('=') {
        Some((left, value)) => match left.rsplit_once(':') {
            // `type:key=value`; a key may itself hold no colon before the `=`.
            Some((types, key)) => (Some(types), (key, value)),
            None => (None, (left, value)),
        },
        None => return Err(AnnotationError::Syntax(spec.to_owned())),
    };
    let (key, value) = pair;
    if key.is_empty() {
        return Err(AnnotationError::Syntax(spec.to_owned()));
    }
    let Some(head) = head else {
        return Ok(Some((key.to_owned(), value.to_owned())));
    };
    let (types, only) = match head.split_once('[') {
        Some((types, rest)) => {
            let wanted = rest
                .strip_suffix(']')
                .ok_or_else(|| AnnotationError::Syntax(spec.to_owned()))?;
            let wanted: Platform =
                wanted
                    .parse()
                    .map_err(|e: kiln_registry::platform::PlatformError| {
                        AnnotationError::Platform {
                            spec: spec.to_owned(),
                            reason: e.to_string(),
                        }
                    })?;
            (types, Some(wanted))
        }
        None => (head, None),
    };
    let mut manifest = false;
    for kind in types.split(',').map(str::trim) {
        match kind {
            "manifest" => manifest = true,
            "manifest-descriptor" | "index" | "index-descriptor" => {
                return Err(AnnotationError::NeedsIndex {
                    spec: spec.to_owned(),
                    kind: kind.to_owned(),
                });
            }
            _ => {
                return Err(AnnotationError::UnknownType {
                    spec: spec.to_owned(),
                    kind: kind.to_owned(),
                });
            }
        }
    }
    let applies = manifest && only.is_none_or(|p| p == *platform);
    Ok(applies.then(|| (key.to_owned(), value.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Platform {
        "linux/amd64".parse().unwrap()
    }

    #[test]
    fn annotations_parse_as_buildx_spells_them() {
        let specs: Vec<String> = [
            "org.opencontainers.image.source=https://example.com/repo",
            "manifest:org.opencontainers.image.title=app",
            "manifest[linux/amd64]:only.here=yes",
            "manifest[linux/arm64]:not.here=no",
            "a=first",
            "a=second=with equals",
        ]
        .map(str::to_owned)
        .into();
        let got = manifest_annotations(&specs, &amd64()).unwrap();
        let want: BTreeMap<String, String> = [
            ("a", "second=with equals"),
            ("only.here", "yes"),
            (
                "org.opencontainers.image.source",
                "https://example.com/repo",
            ),
            ("org.opencontainers.image.title", "app"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn what_kiln_cannot_write_is_refused_by_name() {
        let err = |spec: &str| {
            manifest_annotations(&[spec.to_owned()], &amd64())
                .unwrap_err()
                .to_string()
        };
        assert!(err("novalue").contains("give [TYPE[PLATFORM]:]KEY=VALUE"));
        assert!(err("=v").contains("give [TYPE[PLATFORM]:]KEY=VALUE"));
        assert!(err("index:k=v").contains("index annotations need an image index"));
        assert!(err("manifest,index-descriptor:k=v").contains("index-descriptor annotations"));
        assert!(err("layer:k=v").contains("unknown type \"layer\""));
        assert!(err("manifest[notaplatform]:k=v").starts_with("--annotation"));
    }
}
