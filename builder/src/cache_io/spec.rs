//! `--cache-from` and `--cache-to` values, as docker buildx spells them, parsed purely.
//!
//! A value is comma-separated `key=value` fields with a `type`: `type=registry,ref=HOST/REPO:TAG`
//! or `type=local,src=DIR` / `type=local,dest=DIR` (an OCI image layout directory), and for
//! `--cache-to` `type=inline` (the records ride in the image's config; `mode=min` only, as in
//! buildx; an image pushed with them is a `--cache-from` for the next build). A value with
//! no `=` at all is a registry reference (`--cache-from REF` means `type=registry,ref=REF`, as
//! in buildx). Export options: `mode=min|max` (min, the default, exports the steps whose layers
//! are in the image; max every step of every stage built), `compression=gzip|zstd` (gzip),
//! `ignore-error=true|false` (false: a failed export fails the build), `cache-mounts=true|false`
//! (false: with true, the contents of the build's `RUN --mount=type=cache` directories go too;
//! not for `type=inline`), and for local
//! directories `tag=` (the name in `index.json`, `latest` by default). `oci-mediatypes=true`
//! and `image-manifest=true` are accepted because they describe what kiln always writes. Every
//! other type, key or value is an error naming it: nothing is silently ignored.

use std::path::PathBuf;

use kiln_registry::Reference;

use crate::layer::Compression;

/// Where `--cache-from` reads a cache from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheImport {
    /// A cache artifact in a registry.
    Registry {
        /// Its reference (a tag or a digest).
        reference: Reference,
    },
    /// A cache artifact in an OCI image layout directory.
    Local {
        /// The directory.
        src: PathBuf,
        /// The name of the artifact in the directory's `index.json`.
        tag: String,
    },
}

/// Where `--cache-to` writes the cache, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    /// Where.
    pub target: ExportTarget,
    /// Which steps.
    pub mode: ExportMode,
    /// How the layers are compressed.
    pub compression: Compression,
    /// Whether a failed export is only a warning.
    pub ignore_error: bool,
    /// `cache-mounts=true`: the contents of the build's cache mounts go too.
    pub cache_mounts: bool,
}

/// The destination of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// A registry tag.
    Registry {
        /// The reference to push the cache artifact as.
        reference: Reference,
    },
    /// An OCI image layout directory (created when missing).
    Local {
        /// The directory.
        dest: PathBuf,
        /// The name of the artifact in its `index.json`.
        tag: String,
    },
    /// The built image's own config ([`super::format::INLINE_KEY`]).
    Inline,
}

/// Which steps an export records (buildx's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportMode {
    /// The steps whose layers are in the built image.
    Min,
    /// Every keyed step of every stage built.
    Max,
}

/// Why a `--cache-from` or `--cache-to` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A `type` kiln does not know or does not implement.
    #[error("{flag}: cache type {ty:?} is not supported (kiln has {})", if *flag == FROM { "type=registry and type=local" } else { "type=registry, type=local and type=inline" })]
    UnknownType {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The type given.
        ty: String,
    },
    /// A key that this type does not take.
    #[error("{flag}: unknown option {key:?} for type={ty}")]
    UnknownOption {
        /// The flag.
        flag: &'static str,
        /// The type.
        ty: &'static str,
        /// The key given.
        key: String,
    },
    /// A required key is missing.
    #[error("{flag}: type={ty} needs {key}=…")]
    Missing {
        /// The flag.
        flag: &'static str,
        /// The type.
        ty: &'static str,
        /// The key.
        key: &'static str,
    },
    /// A value this key does not take.
    #[error("{flag}: {key}={value:?} is not valid: expected {expected}")]
    BadValue {
        /// The flag.
        flag: &'static str,
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// A field that is not `key=value`, or a key given twice.
    #[error("{flag}: {field:?} {problem}")]
    Field {
        /// The flag.
        flag: &'static str,
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A reference that does not parse.
    #[error("{flag}: ref={value:?} is not a valid image reference: {reason}")]
    Reference {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why.
        reason: String,
    },
}

const FROM: &str = "--cache-from";
const TO: &str = "--cache-to";

/// `key=value` fields, in order.
type Fields = Vec<(String, String)>;

/// The fields of one value: `key=value` pairs, each key once, in order.
fn fields(flag: &'static str, value: &str) -> Result<Fields, SpecError> {
    let mut out: Fields = Vec::new();
    for field in value.split(',') {
        let Some((key, val)) = field.split_once('=') else {
            return Err(SpecError::Field {
                flag,
                field: field.to_owned(),
                problem: "is not key=value",
            });
        };
        let key = key.trim().to_ascii_lowercase();
        if out.iter().any(|(k, _)| *k == key) {
            return Err(SpecError::Field {
                flag,
                field: field.to_owned(),
                problem: "repeats a key",
            });
        }
        out.push((key, val.trim().to_owned()));
    }
    Ok(out)
}

/// The type of a value's fields (removed from them); a value without `=` is a registry ref.
fn split_type(flag: &'static str, value: &str) -> Result<(&'static str, Fields), SpecError> {
    let value = value.trim();
    if !value.contains('=') {
        return Ok(("registry", vec![("ref".to_owned(), value.to_owned())]));
    }
    let mut fields = fields(flag, value)?;
    let ty = match fields.iter().position(|(k, _)| k == "type") {
        Some(i) => fields.remove(i).1,
        None => {
            return Err(SpecError::Field {
                flag,
                field: value.to_owned(),
                problem: "needs type=registry or type=local",
            });
        }
    };
    match ty.as_str() {
        "registry" => Ok(("registry", fields)),
        "local" => Ok(("local", fields)),
        "inline" if flag == TO => Ok(("inline", fields)),
        _ => Err(SpecError::UnknownType { flag, ty }),
    }
}

fn reference(flag: &'static str, value: &str) -> Result<Reference, SpecError> {
    Reference::parse(value).map_err(|e| SpecError::Reference {
        flag,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

fn boolean(flag: &'static str, key: &str, value: &str) -> Result<bool, SpecError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(SpecError::BadValue {
            flag,
            key: key.to_owned(),
            value: value.to_owned(),
            expected: "true or false",
        }),
    }
}

/// An option that only restates what kiln always does: `true` is accepted, `false` refused.
fn always_true(flag: &'static str, key: &str, value: &str) -> Result<(), SpecError> {
    if boolean(flag, key, value)? {
        return Ok(());
    }
    Err(SpecError::BadValue {
        flag,
        key: key.to_owned(),
        value: value.to_owned(),
        expected: "true (kiln always writes an OCI image manifest with OCI media types)",
    })
}

/// Parses one `--cache-from` value.
pub fn parse_import(value: &str) -> Result<CacheImport, SpecError> {
    let (ty, fields) = split_type(FROM, value)?;
    let (mut reference_value, mut src, mut tag) = (None, None, None);
    for (key, val) in fields {
        match (ty, key.as_str()) {
            ("registry", "ref") => reference_value = Some(val),
            ("local", "src") => src = Some(val),
            ("local", "tag") => tag = Some(val),
            _ => {
                return Err(SpecError::UnknownOption {
                    flag: FROM,
                    ty,
                    key,
                });
            }
        }
    }
    match ty {
        "registry" => {
            let value = non_empty(reference_value, FROM, ty, "ref")?;
            Ok(CacheImport::Registry {
                reference: reference(FROM, &value)?,
            })
        }
        _ => Ok(CacheImport::Local {
            src: non_empty(src, FROM, ty, "src")?.into(),
            tag: tag.unwrap_or_else(|| "latest".to_owned()),
        }),
    }
}

/// Parses one `--cache-to` value.
pub fn parse_export(value: &str) -> Result<CacheExport, SpecError> {
    let (ty, fields) = split_type(TO, value)?;
    let (mut reference_value, mut dest, mut tag) = (None, None, None);
    let mut export = CacheExport {
        // Replaced below; every arm sets the target.
        target: ExportTarget::Local {
            dest: PathBuf::new(),
            tag: String::new(),
        },
        mode: ExportMode::Min,
        compression: Compression::Gzip,
        ignore_error: false,
        cache_mounts: false,
    };
    for (key, val) in fields {
        match (ty, key.as_str()) {
            ("registry", "ref") => reference_value = Some(val),
            ("local", "dest") => dest = Some(val),
            ("local", "tag") => tag = Some(val),
            ("inline", "mode") if val != "min" => {
                return Err(SpecError::BadValue {
                    flag: TO,
                    key,
                    value: val,
                    expected: "min (an inline cache holds only the image's own layers)",
                });
            }
            ("inline", "compression" | "oci-mediatypes" | "image-manifest" | "cache-mounts") => {
                return Err(SpecError::UnknownOption { flag: TO, ty, key });
            }
            (_, "mode") => {
                export.mode = match val.as_str() {
                    "min" => ExportMode::Min,
                    "max" => ExportMode::Max,
                    _ => {
                        return Err(SpecError::BadValue {
                            flag: TO,
                            key,
                            value: val,
                            expected: "min or max",
                        });
                    }
                }
            }
            (_, "compression") => {
                export.compression = match val.as_str() {
                    "gzip" => Compression::Gzip,
                    "zstd" => Compression::Zstd,
                    _ => {
                        return Err(SpecError::BadValue {
                            flag: TO,
                            key,
                            value: val,
                            expected: "gzip or zstd",
                        });
                    }
                }
            }
            (_, "ignore-error") => export.ignore_error = boolean(TO, &key, &val)?,
            (_, "cache-mounts") => export.cache_mounts = boolean(TO, &key, &val)?,
            (_, "oci-mediatypes" | "image-manifest") => always_true(TO, &key, &val)?,
            _ => return Err(SpecError::UnknownOption { flag: TO, ty, key }),
        }
    }
    export.target = match ty {
        "registry" => ExportTarget::Registry {
            reference: reference(TO, &non_empty(reference_value, TO, ty, "ref")?)?,
        },
        "inline" => ExportTarget::Inline,
        _ => ExportTarget::Local {
            dest: non_empty(dest, TO, ty, "dest")?.into(),
            tag: tag.unwrap_or_else(|| "latest".to_owned()),
        },
    };
    Ok(export)
}

fn non_empty(
    value: Option<String>,
    flag: &'static str,
    ty: &'static str,
    key: &'static str,
) -> Result<String, SpecError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(SpecError::Missing { flag, ty, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(r: &str) -> Reference {
        Reference::parse(r).unwrap()
    }

    #[test]
    fn imports() {
        let cases: &[(&str, CacheImport)] = &[
            (
                "type=registry,ref=localhost:5000/app:cache",
                CacheImport::Registry {
                    reference: registry("localhost:5000/app:cache"),
                },
            ),
            (
                "localhost:5000/app:cache",
                CacheImport::Registry {
                    reference: registry("localhost:5000/app:cache"),
                },
            ),
            (
                "ref=localhost:5000/app:cache,type=registry",
                CacheImport::Registry {
                    reference: registry("localhost:5000/app:cache"),
                },
            ),
            (
                "type=local,src=/tmp/cache",
                CacheImport::Local {
                    src: "/tmp/cache".into(),
                    tag: "latest".into(),
                },
            ),
            (
                "type=local,src=dir,tag=v2",
                CacheImport::Local {
                    src: "dir".into(),
                    tag: "v2".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_import(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn exports() {
        let reference = registry("localhost:5000/app:cache");
        let cases: &[(&str, ExportTarget, ExportMode, Compression, bool)] = &[
            (
                "type=registry,ref=localhost:5000/app:cache",
                ExportTarget::Registry {
                    reference: reference.clone(),
                },
                ExportMode::Min,
                Compression::Gzip,
                false,
            ),
            (
                "type=registry,ref=localhost:5000/app:cache,mode=max,compression=zstd,ignore-error=true",
                ExportTarget::Registry {
                    reference: reference.clone(),
                },
                ExportMode::Max,
                Compression::Zstd,
                true,
            ),
            (
                "type=registry,ref=localhost:5000/app:cache,image-manifest=true,oci-mediatypes=true,mode=min",
                ExportTarget::Registry {
                    reference: reference.clone(),
                },
                ExportMode::Min,
                Compression::Gzip,
                false,
            ),
            (
                "type=inline",
                ExportTarget::Inline,
                ExportMode::Min,
                Compression::Gzip,
                false,
            ),
            (
                "type=inline,mode=min,ignore-error=true",
                ExportTarget::Inline,
                ExportMode::Min,
                Compression::Gzip,
                true,
            ),
            (
                "type=local,dest=/tmp/c,mode=max,ignore-error=false",
                ExportTarget::Local {
                    dest: "/tmp/c".into(),
                    tag: "latest".into(),
                },
                ExportMode::Max,
                Compression::Gzip,
                false,
            ),
        ];
        for (text, target, mode, compression, ignore_error) in cases {
            let want = CacheExport {
                target: target.clone(),
                mode: *mode,
                compression: *compression,
                ignore_error: *ignore_error,
                cache_mounts: false,
            };
            assert_eq!(parse_export(text).unwrap(), want, "{text}");
        }
        for (text, want) in [
            ("type=registry,ref=a/b,cache-mounts=true", true),
            ("type=local,dest=d,cache-mounts=false", false),
        ] {
            assert_eq!(parse_export(text).unwrap().cache_mounts, want, "{text}");
        }
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let cases: &[(&str, bool, &str)] = &[
            (
                "type=inline",
                true,
                "cache type \"inline\" is not supported",
            ),
            ("type=inline,mode=max", false, "expected min"),
            (
                "type=inline,compression=zstd",
                false,
                "unknown option \"compression\" for type=inline",
            ),
            (
                "type=inline,ref=a/b",
                false,
                "unknown option \"ref\" for type=inline",
            ),
            (
                "type=gha,url=x",
                false,
                "cache type \"gha\" is not supported",
            ),
            ("type=registry", true, "type=registry needs ref="),
            ("type=registry,ref=", false, "type=registry needs ref="),
            ("type=local", true, "type=local needs src="),
            ("type=local", false, "type=local needs dest="),
            (
                "type=local,dest=x",
                true,
                "unknown option \"dest\" for type=local",
            ),
            (
                "type=local,src=x",
                false,
                "unknown option \"src\" for type=local",
            ),
            (
                "type=registry,ref=a/b,mode=max",
                true,
                "unknown option \"mode\"",
            ),
            (
                "type=registry,ref=a/b,mode=all",
                false,
                "mode=\"all\" is not valid",
            ),
            (
                "type=registry,ref=a/b,compression=lz4",
                false,
                "expected gzip or zstd",
            ),
            (
                "type=registry,ref=a/b,cache-mounts=yes",
                false,
                "expected true or false",
            ),
            (
                "type=inline,cache-mounts=true",
                false,
                "unknown option \"cache-mounts\" for type=inline",
            ),
            (
                "type=registry,ref=a/b,ignore-error=maybe",
                false,
                "expected true or false",
            ),
            (
                "type=registry,ref=a/b,image-manifest=false",
                false,
                "kiln always writes",
            ),
            (
                "type=registry,ref=a/b,compression-level=3",
                false,
                "\"compression-level\"",
            ),
            ("type=registry,ref=a/b,ref=c/d", false, "repeats a key"),
            (
                "type=registry,ref=a/b,flag",
                false,
                "\"flag\" is not key=value",
            ),
            ("ref=a/b", false, "needs type="),
            (
                "type=registry,ref=UPPER/Case",
                true,
                "not a valid image reference",
            ),
        ];
        for (text, import, want) in cases {
            let err = if *import {
                parse_import(text).unwrap_err()
            } else {
                parse_export(text).unwrap_err()
            };
            let flag = if *import {
                "--cache-from: "
            } else {
                "--cache-to: "
            };
            let message = err.to_string();
            assert!(message.starts_with(flag), "{text}: {message}");
            assert!(message.contains(want), "{text}: {message} lacks {want}");
        }
    }
}
