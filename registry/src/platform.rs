//! Platforms (`os/arch[/variant]`): parsing `--platform`, the host's, and choosing an index
//! entry the way containerd's default matcher does.
//!
//! Names are normalised before comparing (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` →
//! `arm/v7`), and so are variants: `arm64` is `v8` unless said otherwise, and a bare `arm` means
//! `v7`. Entries whose platform is `unknown/unknown` (BuildKit's attestation manifests) never
//! match.

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

    /// Whether an index entry's platform is this one.
    pub fn matches(&self, other: &oci_spec::image::Platform) -> bool {
        let other = Self::new(
            &other.os().to_string(),
            &other.architecture().to_string(),
            other.variant().as_deref(),
        );
        self == &other
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
}
