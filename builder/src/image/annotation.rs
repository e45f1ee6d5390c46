//! `--annotation`, as buildx spells it: `[TYPE[,TYPE…][\[PLATFORM\]]:]KEY=VALUE`, where a TYPE is
//! `manifest` (the default), `manifest-descriptor`, `index` or `index-descriptor`, and a
//! platform limits it to the manifest of that platform (or its descriptor).
//!
//! A build of one platform writes one manifest, so `manifest` is what it takes
//! ([`manifest_annotations`]); a multi-platform build writes an index too, and takes `index`
//! (the index's own annotations) and `manifest-descriptor` (those of a manifest's entry in the
//! index) as well ([`index_annotations`]). `index-descriptor` (an OCI layout's entry for the
//! index) is refused by name, as are the index types in a build of one platform, rather than
//! dropped. An annotation for a platform the build does not make applies to nothing, as in
//! buildx.

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
    /// A type that needs an image index, which a build of one platform does not write.
    #[error(
        "--annotation {spec:?}: {kind} annotations need an image index, which kiln writes for \
         builds of several platforms (--platform A,B); use manifest:"
    )]
    NeedsIndex {
        /// The flag's value.
        spec: String,
        /// The type.
        kind: String,
    },
    /// `index-descriptor`: kiln keeps no descriptor of the index to put it on.
    #[error(
        "--annotation {spec:?}: index-descriptor annotations (an OCI layout's entry for the \
         index) are not supported by kiln; use index:"
    )]
    IndexDescriptor {
        /// The flag's value.
        spec: String,
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

/// The annotations of a multi-platform build's documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexAnnotations {
    /// Each platform's manifest's, in the order of the platforms given.
    pub manifests: Vec<BTreeMap<String, String>>,
    /// Each platform's entry in the index, in the same order.
    pub descriptors: Vec<BTreeMap<String, String>>,
    /// The index's own.
    pub index: BTreeMap<String, String>,
}

/// The manifest annotations of `specs` for a build for `platform`, in key order; a later value
/// of a key wins, as in buildx.
pub fn manifest_annotations(
    specs: &[String],
    platform: &Platform,
) -> Result<BTreeMap<String, String>, AnnotationError> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let parsed = parse(spec)?;
        if let Some(kind) = parsed.kinds.iter().find(|k| **k != Kind::Manifest) {
            return Err(AnnotationError::NeedsIndex {
                spec: spec.clone(),
                kind: kind.name().to_owned(),
            });
        }
        if parsed.applies_to(platform) {
            out.insert(parsed.key, parsed.value);
        }
    }
    Ok(out)
}

/// The annotations of `specs` for a build of `platforms` into one index.
pub fn index_annotations(
    specs: &[String],
    platforms: &[Platform],
) -> Result<IndexAnnotations, AnnotationError> {
    let mut out = IndexAnnotations {
        manifests: vec![BTreeMap::new(); platforms.len()],
        descriptors: vec![BTreeMap::new(); platforms.len()],
        index: BTreeMap::new(),
    };
    for spec in specs {
        let parsed = parse(spec)?;
        for kind in &parsed.kinds {
            let per_platform = match kind {
                Kind::IndexDescriptor => {
                    return Err(AnnotationError::IndexDescriptor { spec: spec.clone() });
                }
                Kind::Index => {
                    out.index.insert(parsed.key.clone(), parsed.value.clone());
                    continue;
                }
                Kind::Manifest => &mut out.manifests,
                Kind::ManifestDescriptor => &mut out.descriptors,
            };
            for (platform, map) in platforms.iter().zip(per_platform.iter_mut()) {
                if parsed.applies_to(platform) {
                    map.insert(parsed.key.clone(), parsed.value.clone());
                }
            }
        }
    }
    Ok(out)
}

/// What an annotation goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    ManifestDescriptor,
    Index,
    IndexDescriptor,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::ManifestDescriptor => "manifest-descriptor",
            Kind::Index => "index",
            Kind::IndexDescriptor => "index-descriptor",
        }
    }
}

/// One `--annotation`, parsed.
#[derive(Debug)]
struct Parsed {
    kinds: Vec<Kind>,
    /// `[PLATFORM]`: only that platform's manifest (or descriptor).
    only: Option<Platform>,
    key: String,
    value: String,
}

impl Parsed {
    fn applies_to(&self, platform: &Platform) -> bool {
        self.only.as_ref().is_none_or(|p| p == platform)
    }
}

fn parse(spec: &str) -> Result<Parsed, AnnotationError> {
    let (head, pair) = match spec.split_once('=') {
        Some((left, value)) => match left.rsplit_once(':') {
            // `type:key=value`; a key may itself hold no colon before the `=`.
            Some((types, key)) => (Some(types), (key, value)),
            None => (None, (left, value)),
        },
        None => return Err(AnnotationError::Syntax(spec.to_owned())),
    };
    let (key, value) = (pair.0.to_owned(), pair.1.to_owned());
    if key.is_empty() {
        return Err(AnnotationError::Syntax(spec.to_owned()));
    }
    let Some(head) = head else {
        return Ok(Parsed {
            kinds: vec![Kind::Manifest],
            only: None,
            key,
            value,
        });
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
    let kinds = types
        .split(',')
        .map(str::trim)
        .map(|kind| match kind {
            "manifest" => Ok(Kind::Manifest),
            "manifest-descriptor" => Ok(Kind::ManifestDescriptor),
            "index" => Ok(Kind::Index),
            "index-descriptor" => Ok(Kind::IndexDescriptor),
            _ => Err(AnnotationError::UnknownType {
                spec: spec.to_owned(),
                kind: kind.to_owned(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Parsed {
        kinds,
        only,
        key,
        value,
    })
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

    #[test]
    fn a_multi_platform_build_annotates_its_index_and_entries() {
        let platforms = [amd64(), "linux/arm64".parse().unwrap()];
        let specs: Vec<String> = [
            "all=1",
            "manifest[linux/arm64]:arm=yes",
            "index:org.opencontainers.image.title=app",
            "manifest-descriptor[linux/amd64]:entry=amd",
            "manifest,manifest-descriptor:both=2",
        ]
        .map(str::to_owned)
        .into();
        let got = index_annotations(&specs, &platforms).unwrap();
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            got,
            IndexAnnotations {
                manifests: vec![
                    map(&[("all", "1"), ("both", "2")]),
                    map(&[("all", "1"), ("arm", "yes"), ("both", "2")]),
                ],
                descriptors: vec![
                    map(&[("both", "2"), ("entry", "amd")]),
                    map(&[("both", "2")])
                ],
                index: map(&[("org.opencontainers.image.title", "app")]),
            }
        );
        let err = index_annotations(&["index-descriptor:k=v".to_owned()], &platforms)
            .unwrap_err()
            .to_string();
        assert!(err.contains("index-descriptor annotations"), "{err}");
    }
}
