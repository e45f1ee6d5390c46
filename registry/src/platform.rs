//! Platforms (`os/arch[/variant]`): parsing `--platform` (one or a comma-separated list), the
//! host's, and choosing an index entry the way containerd's `platforms.Only` matcher does.
//!
//! Names are normalised before comparing (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` →
//! `arm/v7`), and so are variants: `arm64` is `v8` unless said otherwise, and a bare `arm` means
//! `v7`. A platform also accepts what its CPU runs besides its own binaries, best first
//! ([`Platform::compatible`]): `arm/v7` takes `v6` and `v5` images when there is no `v7` one,
//! `arm64` takes 32-bit `arm` ones, `amd64/v3` takes `v2` and `v1`, and `amd64` takes `386`;
//! never the other way (an `arm/v6` request does not take a `v7` image). Entries whose platform
//! is `unknown/unknown` (BuildKit's attestation manifests) never match.

use std::fmt;
use std::str::FromStr;

/// An image platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, `arm`, …
    pub architecture: String,
    /// `v7`, `v8`, … (normalised: absent where it is the default).
    pub variant: Option<String>,
}

/// Why a `--platform` value is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64")]
pub struct PlatformError(pub String);

impl Platform {
    /// A platform from its parts, normalised.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let os = os.to_ascii_lowercase();
        let (architecture, implied) = normalize_arch(&architecture.to_ascii_lowercase());
        let variant = variant
            .map(str::to_ascii_lowercase)
            .filter(|v| !v.is_empty())
            .or(implied.map(str::to_owned));
        let variant = normalize_variant(&architecture, variant);
        Self {
            os,
            architecture,
            variant,
        }
    }

    /// The platform kiln runs on (always `linux`).
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Self::new("linux", arch, None)
    }

    /// An index entry's platform, normalised.
    pub fn of(other: &oci_spec::image::Platform) -> Self {
        Self::new(
            &other.os().to_string(),
            &other.architecture().to_string(),
            other.variant().as_deref(),
        )
    }

    /// Whether an index entry's platform is this one.
    pub fn matches(&self, other: &oci_spec::image::Platform) -> bool {
        self == &Self::of(other)
    }

    /// The platforms whose images this one runs, itself first and then in containerd's order
    /// of preference (its `platformVector`): older `arm` variants down to `v5`, for `arm64`
    /// the 32-bit `arm` variants from `v8` down, older `amd64` variants, then `386` for
    /// `amd64`.
    pub fn compatible(&self) -> Vec<Platform> {
        let mut out = vec![self.clone()];
        let with = |architecture: &str, variant: Option<String>| Platform {
            os: self.os.clone(),
            architecture: architecture.to_owned(),
            variant,
        };
        let level = |variant: Option<&str>, default: u32| -> Option<u32> {
            match variant {
                None => Some(default),
                Some(v) => v.strip_prefix('v').unwrap_or(v).parse().ok(),
            }
        };
        match self.architecture.as_str() {
            "amd64" => {
                if let Some(n) = level(self.variant.as_deref(), 1) {
                    out.extend(
                        (1..n)
                            .rev()
                            .map(|v| Platform::new(&self.os, "amd64", Some(&format!("v{v}")))),
                    );
                }
                out.push(with("386", None));
            }
            "arm" => {
                if let Some(n) = level(self.variant.as_deref(), 7) {
                    out.extend((5..n).rev().map(|v| with("arm", Some(format!("v{v}")))));
                }
            }
            "arm64" => {
                // Every arm64 CPU variant runs what a v8 one does in 32-bit mode.
                out.extend((5..=8).rev().map(|v| with("arm", Some(format!("v{v}")))));
            }
            _ => {}
        }
        out
    }

    /// How well an index entry's platform suits this one: `Some(0)` for this platform itself,
    /// higher for the fallbacks of [`Platform::compatible`], `None` when it does not run here.
    pub fn rank(&self, other: &oci_spec::image::Platform) -> Option<usize> {
        let other = Self::of(other);
        self.compatible().iter().position(|p| *p == other)
    }

    /// The index entry for this platform: the best [`rank`](Self::rank), the first of equals
    /// (containerd's `platforms.Only` with a stable sort). Entries without a platform never
    /// match.
    pub fn choose<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a oci_spec::image::Descriptor>,
    ) -> Option<&'a oci_spec::image::Descriptor> {
        self.choose_by(
            entries
                .into_iter()
                .filter_map(|d| Some((Self::of(d.platform().as_ref()?), d))),
        )
    }

    /// [`choose`](Self::choose) over anything that has a platform: the best candidate for
    /// this one, the first of equals.
    pub fn choose_by<T>(&self, candidates: impl IntoIterator<Item = (Platform, T)>) -> Option<T> {
        let order = self.compatible();
        candidates
            .into_iter()
            .filter_map(|(p, t)| Some((order.iter().position(|c| *c == p)?, t)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, t)| t)
    }

    /// A `--platform` value: one platform or a comma-separated list (buildx's form), `local`
    /// meaning the host's; a platform given twice counts once.
    pub fn parse_list(s: &str) -> Result<Vec<Platform>, PlatformError> {
        let mut out: Vec<Platform> = Vec::new();
        for part in s.split(',').map(str::trim) {
            let platform = if part == "local" {
                Self::host()
            } else {
                part.parse()?
            };
            if !out.contains(&platform) {
                out.push(platform);
            }
        }
        Ok(out)
    }

    /// The platform as a file name, as buildx names the per-platform directories of a
    /// multi-platform `--output type=local`: `linux_arm_v7`.
    pub fn dir_name(&self) -> String {
        self.to_string().replace('/', "_")
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid_part = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !parts.iter().all(valid_part) {
            return Err(PlatformError(s.to_owned()));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Self::new(os, arch, None)),
            [os, arch, variant] => Ok(Self::new(os, arch, Some(variant))),
            _ => Err(PlatformError(s.to_owned())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The canonical architecture name, and the variant an alias implies.
fn normalize_arch(arch: &str) -> (String, Option<&'static str>) {
    match arch {
        "x86_64" | "x86-64" => ("amd64".into(), None),
        "i386" | "i686" => ("386".into(), None),
        "aarch64" => ("arm64".into(), None),
        "armhf" => ("arm".into(), Some("v7")),
        "armel" => ("arm".into(), Some("v6")),
        other => (other.into(), None),
    }
}

/// Drops default variants so that `arm64` and `arm64/v8` compare equal, and gives `arm` its
/// default `v7`.
fn normalize_variant(arch: &str, variant: Option<String>) -> Option<String> {
    match (arch, variant.as_deref()) {
        ("arm64", Some("v8" | "8")) => None,
        ("amd64", Some("v1")) => None,
        ("arm", None) => Some("v7".into()),
        ("arm", Some(v)) if v.len() == 1 => Some(format!("v{v}")),
        _ => variant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_show() {
        let cases: &[(&str, Option<&str>)] = &[
            ("linux/amd64", Some("linux/amd64")),
            ("linux/x86_64", Some("linux/amd64")),
            ("Linux/ARM64", Some("linux/arm64")),
            ("linux/arm64/v8", Some("linux/arm64")),
            ("linux/aarch64", Some("linux/arm64")),
            ("linux/arm", Some("linux/arm/v7")),
            ("linux/arm/v6", Some("linux/arm/v6")),
            ("linux/arm/6", Some("linux/arm/v6")),
            ("linux/armhf", Some("linux/arm/v7")),
            ("linux/amd64/v3", Some("linux/amd64/v3")),
            ("windows/amd64", Some("windows/amd64")),
            ("linux", None),
            ("linux/", None),
            ("linux/amd64/v1/x", None),
            ("linux/am d64", None),
            ("", None),
        ];
        for (input, shown) in cases {
            let got = input.parse::<Platform>().ok().map(|p| p.to_string());
            assert_eq!(got.as_deref(), *shown, "{input}");
        }
    }

    #[test]
    fn matching() {
        let entry = |os: &str, arch: &str, variant: Option<&str>| {
            let mut p = oci_spec::image::Platform::default();
            p.set_os(os.into());
            p.set_architecture(arch.into());
            p.set_variant(variant.map(str::to_owned));
            p
        };
        let arm64: Platform = "linux/arm64".parse().unwrap();
        assert!(arm64.matches(&entry("linux", "arm64", Some("v8"))));
        assert!(arm64.matches(&entry("linux", "arm64", None)));
        assert!(!arm64.matches(&entry("linux", "amd64", None)));
        assert!(!arm64.matches(&entry("unknown", "unknown", None)));
        let arm: Platform = "linux/arm".parse().unwrap();
        assert!(arm.matches(&entry("linux", "arm", Some("v7"))));
        assert!(!arm.matches(&entry("linux", "arm", Some("v6"))));
        assert_eq!(Platform::host().os, "linux");
        assert!(!Platform::host().architecture.is_empty());
    }

    #[test]
    fn compatible_platforms_follow_containerd() {
        let cases: &[(&str, &[&str])] = &[
            ("linux/amd64", &["linux/amd64", "linux/386"]),
            (
                "linux/amd64/v3",
                &[
                    "linux/amd64/v3",
                    "linux/amd64/v2",
                    "linux/amd64",
                    "linux/386",
                ],
            ),
            (
                "linux/arm64",
                &[
                    "linux/arm64",
                    "linux/arm/v8",
                    "linux/arm/v7",
                    "linux/arm/v6",
                    "linux/arm/v5",
                ],
            ),
            (
                "linux/arm",
                &["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"],
            ),
            ("linux/arm/v6", &["linux/arm/v6", "linux/arm/v5"]),
            ("linux/arm/v5", &["linux/arm/v5"]),
            ("linux/s390x", &["linux/s390x"]),
            ("linux/riscv64", &["linux/riscv64"]),
        ];
        for (platform, expected) in cases {
            let got: Vec<String> = platform
                .parse::<Platform>()
                .unwrap()
                .compatible()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, *expected, "{platform}");
        }
    }

    #[test]
    fn choosing_an_entry_prefers_the_exact_platform_then_the_nearest() {
        let entry = |p: &'static str| {
            let parsed: Platform = p.parse().unwrap();
            let mut platform = oci_spec::image::Platform::default();
            platform.set_os(parsed.os.as_str().into());
            platform.set_architecture(parsed.architecture.as_str().into());
            platform.set_variant(parsed.variant.clone());
            let digest = crate::Digest::of(p.as_bytes()).to_oci();
            let mut d = oci_spec::image::Descriptor::new(
                oci_spec::image::MediaType::ImageManifest,
                1,
                digest,
            );
            d.set_platform(Some(platform));
            (p, d)
        };
        let index: Vec<(&str, oci_spec::image::Descriptor)> = [
            "unknown/unknown",
            "linux/386",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/amd64",
        ]
        .into_iter()
        .map(entry)
        .collect();
        let chosen = |wanted: &str| {
            let wanted: Platform = wanted.parse().unwrap();
            let d = wanted.choose(index.iter().map(|(_, d)| d))?;
            index.iter().find(|(_, e)| e == d).map(|(p, _)| *p)
        };
        let cases: &[(&str, Option<&str>)] = &[
            ("linux/amd64", Some("linux/amd64")),
            ("linux/386", Some("linux/386")),
            ("linux/arm/v7", Some("linux/arm/v7")),
            ("linux/arm", Some("linux/arm/v7")),
            ("linux/armhf", Some("linux/arm/v7")),
            ("linux/arm/v6", Some("linux/arm/v6")),
            ("linux/arm/v8", Some("linux/arm/v7")),
            // No arm64 image: its 32-bit fallback, v7 before v6.
            ("linux/arm64", Some("linux/arm/v7")),
            ("linux/arm/v5", None),
            ("linux/s390x", None),
            ("windows/amd64", None),
        ];
        for (wanted, expected) in cases {
            assert_eq!(chosen(wanted), *expected, "{wanted}");
        }
        let only_v6: Vec<_> = ["linux/arm/v6"].into_iter().map(entry).collect();
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(v7.choose(only_v6.iter().map(|(_, d)| d)).is_some());
    }

    #[test]
    fn platform_lists() {
        let list = |s: &str| -> Result<Vec<String>, PlatformError> {
            Ok(Platform::parse_list(s)?
                .iter()
                .map(ToString::to_string)
                .collect())
        };
        assert_eq!(list("linux/amd64").unwrap(), ["linux/amd64"]);
        assert_eq!(
            list("linux/amd64, linux/arm64,linux/arm/v7").unwrap(),
            ["linux/amd64", "linux/arm64", "linux/arm/v7"]
        );
        assert_eq!(list("linux/arm64,linux/aarch64").unwrap(), ["linux/arm64"]);
        assert_eq!(list("local").unwrap(), [Platform::host().to_string()]);
        assert!(list("linux/amd64,").is_err());
        assert!(list("").is_err());
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(v7.dir_name(), "linux_arm_v7");
    }
}
