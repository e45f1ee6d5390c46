//! The image configuration: our own type, a superset of Docker's.
//!
//! Field names in JSON are Docker's (`User`, `ExposedPorts`, `Healthcheck`, …, and lowercase at
//! the top level), so images kiln writes read the same in `docker inspect`, and configs of pulled
//! base images parse without loss. Invariants:
//!
//! - Every map is ordered (`BTreeMap`/`BTreeSet`), so serialisation is deterministic.
//! - Unknown fields, at the top level, in `config`, in `Healthcheck` and in history entries,
//!   survive a read–write round trip through `extra`.
//! - Empty values are omitted as BuildKit omits them (Go `omitempty`), with one deliberate
//!   exception: `Entrypoint` and `Cmd` are `Option`s, so "unset" (`None`, omitted; `null` reads as
//!   unset) stays distinct from "set to empty" (`Some(vec![])`, written `[]`). ENTRYPOINT clears
//!   an inherited CMD to unset, while `CMD []` sets it to empty.
//! - `null` where Go would write `null` for an empty slice or map (legacy Docker configs have
//!   `"OnBuild": null`, `"Labels": null`) reads as empty.

use std::collections::{BTreeMap, BTreeSet};

use kiln_registry::Digest;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::ImageError;

/// The only `rootfs.type` the specs define.
pub const ROOTFS_LAYERS: &str = "layers";

/// An image configuration (`application/vnd.oci.image.config.v1+json` or Docker's
/// `application/vnd.docker.container.image.v1+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// When the image was created, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who created the image (`MAINTAINER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture, Go's `GOARCH` names (`amd64`, `arm64`, …).
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    /// Operating system, Go's `GOOS` names (`linux`).
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    /// Operating system version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// CPU variant (`v7` for `arm/v7`, `v8` for `arm64/v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The execution parameters a container of this image gets.
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
    /// The layers' uncompressed digests, base first.
    pub rootfs: RootFs,
    /// One entry per instruction, with or without a layer.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    /// Fields this type does not know (Docker's `container_config`, `docker_version`, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The container execution parameters, with Docker's field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// `USER`: a name or uid, optionally `:group`.
    #[serde(
        rename = "User",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub user: String,
    /// `EXPOSE`: `"80/tcp"`-style keys, written as a map to `{}`.
    #[serde(
        rename = "ExposedPorts",
        default,
        with = "set_as_map",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub exposed_ports: BTreeSet<String>,
    /// `ENV`: `KEY=value` entries in order.
    #[serde(
        rename = "Env",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// `ENTRYPOINT`: `None` when unset, `Some(vec![])` when set to empty.
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`: `None` when unset (e.g. cleared by ENTRYPOINT), `Some(vec![])` when set to empty.
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`: paths, written as a map to `{}`.
    #[serde(
        rename = "Volumes",
        default,
        with = "set_as_map",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub volumes: BTreeSet<String>,
    /// `WORKDIR`.
    #[serde(
        rename = "WorkingDir",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    /// `LABEL`.
    #[serde(
        rename = "Labels",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// `STOPSIGNAL`.
    #[serde(
        rename = "StopSignal",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    /// Whether CMD/ENTRYPOINT are already escaped (BuildKit sets it; Windows only uses it).
    #[serde(
        rename = "ArgsEscaped",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub args_escaped: bool,
    /// `HEALTHCHECK`.
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Healthcheck>,
    /// `ONBUILD` triggers, each the instruction text as written.
    #[serde(
        rename = "OnBuild",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    /// `SHELL` for shell-form RUN, CMD and ENTRYPOINT; empty means
    /// [`DEFAULT_SHELL`](crate::exec::DEFAULT_SHELL), `["/bin/sh", "-c"]`.
    #[serde(
        rename = "Shell",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub shell: Vec<String>,
    /// Fields this type does not know (legacy Docker's `Hostname`, `Tty`, `Image`, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `HEALTHCHECK`, as Docker stores it: durations are integer nanoseconds (Go's
/// `time.Duration`), and zero means "inherit the default".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `[]` inherits, `["NONE"]` disables, `["CMD", …]` or `["CMD-SHELL", "…"]` runs.
    #[serde(
        rename = "Test",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    /// Time between checks, nanoseconds.
    #[serde(
        rename = "Interval",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub interval: i64,
    /// Time one check may take, nanoseconds.
    #[serde(
        rename = "Timeout",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub timeout: i64,
    /// Start-up time during which failures do not count, nanoseconds.
    #[serde(
        rename = "StartPeriod",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub start_period: i64,
    /// Time between checks during the start period, nanoseconds.
    #[serde(
        rename = "StartInterval",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub start_interval: i64,
    /// Consecutive failures before the container is unhealthy.
    #[serde(
        rename = "Retries",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub retries: i64,
    /// Fields this type does not know.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `rootfs`: the layers' diffIDs (digests of the uncompressed tars), base first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub typ: String,
    /// One per layer, in order; written as `[]` even when empty.
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        Self {
            typ: ROOTFS_LAYERS.to_owned(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry: an instruction, and whether it made a layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// When the step ran, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction, e.g. `RUN /bin/sh -c make # buildkit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// `MAINTAINER` at that point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free text; BuildKit writes `buildkit.dockerfile.v0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer (ENV, LABEL, CMD, …); omitted when false.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub empty_layer: bool,
    /// Fields this type does not know.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl ImageConfig {
    /// An empty configuration for a platform: no layers, no history, nothing set.
    pub fn new(architecture: &str, os: &str) -> Self {
        Self {
            created: None,
            author: None,
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            os_version: None,
            variant: None,
            config: ContainerConfig::default(),
            rootfs: RootFs::default(),
            history: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Parses a config blob (OCI or Docker).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ImageError> {
        serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
            what: "image config",
            source,
        })
    }

    /// The canonical bytes kiln writes and hashes for this config.
    pub fn to_canonical_json(&self) -> Result<Vec<u8>, ImageError> {
        super::canonical_json(self)
    }

    /// The platform these settings describe, set explicitly from the config's own fields
    /// (without `os.version`; see [`platform`](super::platform)).
    pub fn platform(&self) -> oci_spec::image::Platform {
        super::platform(&self.architecture, &self.os, self.variant.as_deref())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Reads `null` as the type's default, as Go does for slices, maps and strings.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Go's `map[string]struct{}` as a set: written `{"k": {}}`, values ignored on read.
mod set_as_map {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::de::IgnoredAny;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct Empty {}

    pub(super) fn serialize<S: Serializer>(
        set: &BTreeSet<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(set.len()))?;
        for key in set {
            map.serialize_entry(key, &Empty {})?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeSet<String>, D::Error> {
        let map = Option::<BTreeMap<String, IgnoredAny>>::deserialize(deserializer)?;
        Ok(map.map(|m| m.into_keys().collect()).unwrap_or_default())
    }
}

/// The chainID of a layer whose parent chain is `parent` (OCI image spec, "Layer ChainID").
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
    }
}

/// The chainIDs of every prefix of a stack of layers, given their diffIDs bottom first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = chain_id(out.last(), diff_id);
        out.push(next);
    }
    out
}
