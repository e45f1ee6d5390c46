//! Image references (`[registry/]repository[:tag][@digest]`), parsed and normalised the way
//! Docker does it: distribution/reference's `ParseNormalizedNamed`, then `TagNameOnly`.
//!
//! A familiar name is expanded (`busybox` → `docker.io/library/busybox:latest`,
//! `user/repo` → `docker.io/user/repo:latest`, `index.docker.io` → `docker.io`). The first
//! path component is a registry only if it contains `.` or `:`, is `localhost`, or holds an
//! uppercase letter (repository paths are lowercase, host names need not be). Invariants of
//! every [`Reference`]: the registry matches the domain grammar (host name, IPv4 or bracketed
//! IPv6, optional port); the repository is 1–255 bytes of lowercase path components; the tag
//! matches `[\w][\w.-]{0,127}`; the digest is a validated sha256 [`Digest`]; and there is a tag
//! or a digest (`latest` is added only when the input had neither). The grammar is written out
//! by hand below, one function per production, with the names upstream uses.
//!
//! Where kiln differs from upstream, on purpose: only sha256 digests are accepted (kiln cannot
//! verify others); `name:tag@digest` keeps the tag (`ParseDockerRef` would drop it); a first
//! component that looks like a host but is not a valid one (`foo_bar.com/app`) is an error
//! rather than a reference with no registry; and a bad tag or digest is reported as such
//! instead of as a general format error. Which strings are accepted is otherwise the same.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry that familiar names belong to.
const DEFAULT_REGISTRY: &str = "docker.io";
/// Docker Hub's old "index" name, folded into [`DEFAULT_REGISTRY`].
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// Where Docker Hub's registry API actually lives; `docker.io` itself only redirects.
const DEFAULT_REGISTRY_API_HOST: &str = "registry-1.docker.io";
/// The Docker Hub namespace of official images.
const OFFICIAL_REPOSITORY_PREFIX: &str = "library/";
/// The tag implied when a reference names neither a tag nor a digest.
const DEFAULT_TAG: &str = "latest";
/// Upstream's `RepositoryNameTotalLengthMax`; it bounds the path after the registry.
const REPOSITORY_MAX_LEN: usize = 255;
/// `[\w][\w.-]{0,127}`.
const TAG_MAX_LEN: usize = 128;
/// The fewest hex digits upstream's digest pattern accepts (a 128-bit hash).
const DIGEST_MIN_HEX: usize = 32;

/// A normalised image reference: registry, repository, and a tag and/or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is the empty string.
    #[error("invalid reference format: empty image reference")]
    Empty,
    /// The whole reference is 64 lowercase hex characters, which Docker reserves for image ids.
    #[error("invalid repository name {reference:?}: cannot specify 64-byte hexadecimal strings")]
    HexRepositoryName {
        /// The input.
        reference: String,
    },
    /// The repository path has uppercase letters.
    #[error("invalid reference format {reference:?}: repository name must be lowercase")]
    Uppercase {
        /// The input.
        reference: String,
    },
    /// The reference does not match the grammar (registry or repository path).
    #[error("invalid reference format {reference:?}")]
    InvalidFormat {
        /// The input.
        reference: String,
    },
    /// The repository path is longer than 255 bytes.
    #[error(
        "invalid reference {reference:?}: repository name is {length} characters, more than 255"
    )]
    NameTooLong {
        /// The input.
        reference: String,
        /// The length of the repository path after normalisation.
        length: usize,
    },
    /// The tag does not match `[\w][\w.-]{0,127}`.
    #[error("invalid tag {tag:?}: expected 1 to 128 of [A-Za-z0-9_.-], not starting with . or -")]
    InvalidTag {
        /// The offending tag.
        tag: String,
    },
    /// The part after `@` is not a digest kiln accepts (malformed, or not sha256).
    #[error("invalid digest in reference {reference:?}")]
    InvalidDigest {
        /// The input.
        reference: String,
        /// What is wrong with the digest.
        #[source]
        source: DigestError,
    },
}

impl Reference {
    /// Parses and normalises `s` (docker.io/library, default tag `latest` only when there is no
    /// digest). A reference with both a tag and a digest keeps both.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let reference = || s.to_owned();
        if is_identifier(s) {
            return Err(ReferenceError::HexRepositoryName {
                reference: reference(),
            });
        }
        let (registry, remainder) = split_registry(s);
        // Upstream checks case on everything up to the first `:`, before the grammar: so
        // `repo@SHA256:...` is reported as an uppercase name, as Docker reports it.
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase {
                reference: reference(),
            });
        }
        let (path, tag, digest) = split_suffixes(&remainder);
        let suffixes_valid = tag.is_none_or(is_tag) && digest.is_none_or(is_digest_syntax);

        if !is_domain(&registry) {
            // Upstream's regex would then read the first component as a path component. If
            // that only works once lowercased, upstream reports the case; if it works as is
            // (`foo_bar.com/app`), upstream returns a reference with no registry at all, which
            // nothing can pull from, so kiln rejects it as malformed.
            let lowered = registry.to_lowercase();
            if lowered != registry && is_path_component(&lowered) && is_path(path) && suffixes_valid
            {
                return Err(ReferenceError::Uppercase {
                    reference: reference(),
                });
            }
            return Err(ReferenceError::InvalidFormat {
                reference: reference(),
            });
        }
        if !is_path(path) {
            return Err(ReferenceError::InvalidFormat {
                reference: reference(),
            });
        }
        if let Some(tag) = tag.filter(|t| !is_tag(t)) {
            return Err(ReferenceError::InvalidTag {
                tag: tag.to_owned(),
            });
        }
        if let Some(digest) = digest.filter(|d| !is_digest_syntax(d)) {
            return Err(ReferenceError::InvalidDigest {
                reference: reference(),
                source: DigestError::Malformed(digest.to_owned()),
            });
        }
        // Length and the digest algorithm are checked only once the grammar matched, as upstream.
        if path.len() > REPOSITORY_MAX_LEN {
            return Err(ReferenceError::NameTooLong {
                reference: reference(),
                length: path.len(),
            });
        }
        let digest = digest.map(Digest::from_str).transpose().map_err(|source| {
            ReferenceError::InvalidDigest {
                reference: reference(),
                source,
            }
        })?;
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository: path.to_owned(),
            tag,
            digest,
        })
    }

    /// The registry as written in the normalised name: `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (always present when there is no digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same reference with its tag replaced by `tag`; a digest is kept, as upstream's `WithTag`.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !is_tag(tag) {
            return Err(ReferenceError::InvalidTag {
                tag: tag.to_owned(),
            });
        }
        Ok(Self {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// The API host for the registry: `docker.io` → `registry-1.docker.io`, others unchanged.
    pub fn api_host(&self) -> &str {
        api_host_for(&self.registry)
    }

    /// Short form as `docker images` shows it: `busybox`, `user/repo`, `localhost:5000/x` (no
    /// tag). Like upstream's `FamiliarName`, it is ambiguous for Docker Hub paths whose first
    /// component looks like a registry (`docker.io/localhost/x` → `localhost/x`).
    pub fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return format!("{}/{}", self.registry, self.repository);
        }
        match self.repository.strip_prefix(OFFICIAL_REPOSITORY_PREFIX) {
            Some(official) if !official.contains('/') => official.to_owned(),
            _ => self.repository.clone(),
        }
    }

    /// Whether the registry is a loopback host (`localhost`, 127.0.0.0/8, `[::1]`, or an
    /// IPv4-mapped loopback address), where plain HTTP is allowed.
    pub fn is_loopback(&self) -> bool {
        is_loopback_registry(&self.registry)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The API host for a registry name: `docker.io` → `registry-1.docker.io`, others unchanged.
pub(crate) fn api_host_for(registry: &str) -> &str {
    if registry == DEFAULT_REGISTRY || registry == LEGACY_DEFAULT_REGISTRY {
        DEFAULT_REGISTRY_API_HOST
    } else {
        registry
    }
}

/// [`Reference::is_loopback`] for a registry name (`host[:port]`).
pub(crate) fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => {
            let inner = bracketed.split(']').next().unwrap_or_default();
            return inner
                .parse::<Ipv6Addr>()
                .is_ok_and(|ip| match ip.to_ipv4_mapped() {
                    Some(v4) => v4.is_loopback(),
                    None => ip.is_loopback(),
                });
        }
        None => registry.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Upstream's `splitDockerDomain`: the registry, and the rest of the input after it (path, tag
/// and digest), with Docker Hub names expanded. Only the first `/` matters, and neither a tag
/// nor a digest can contain one.
fn split_registry(s: &str) -> (String, String) {
    let Some((first, rest)) = s.split_once('/') else {
        // A single component is always a Docker Hub official image, even `localhost` or
        // `example.com` (upstream keeps this for compatibility): `localhost:5000` is the image
        // `library/localhost` with tag `5000`.
        return (
            DEFAULT_REGISTRY.to_owned(),
            format!("{OFFICIAL_REPOSITORY_PREFIX}{s}"),
        );
    };
    let (registry, remainder) = if first == "localhost" {
        (first, rest)
    } else if first == LEGACY_DEFAULT_REGISTRY {
        (DEFAULT_REGISTRY, rest)
    } else if first.contains(['.', ':']) || first.to_lowercase() != first {
        // A dot or colon means a host name, IP or port; uppercase cannot be a path component.
        (first, rest)
    } else {
        (DEFAULT_REGISTRY, s)
    };
    let remainder = if registry == DEFAULT_REGISTRY && !remainder.contains('/') {
        format!("{OFFICIAL_REPOSITORY_PREFIX}{remainder}")
    } else {
        remainder.to_owned()
    };
    (registry.to_owned(), remainder)
}

/// Splits `path[:tag][@digest]`. Path components contain neither `:` nor `@`, and a tag
/// contains no `@`, so the first of each ends the part before it.
fn split_suffixes(remainder: &str) -> (&str, Option<&str>, Option<&str>) {
    let Some(end) = remainder.find([':', '@']) else {
        return (remainder, None, None);
    };
    let path = &remainder[..end];
    let rest = &remainder[end..];
    if let Some(digest) = rest.strip_prefix('@') {
        return (path, None, Some(digest));
    }
    let rest = &rest[1..];
    match rest.split_once('@') {
        Some((tag, digest)) => (path, Some(tag), Some(digest)),
        None => (path, Some(rest), None),
    }
}

/// `identifier := /[a-f0-9]{64}/`: an image id, which can never be a repository name.
fn is_identifier(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `domain := host [':' port-number]`, `host := domain-name | '[' IPv6address ']'`.
fn is_domain(domain: &str) -> bool {
    let (host_ok, port) = match domain.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            // Only hex digits and colons: no zone ids (`%eth0`) and no dotted IPv4 tail.
            Some((ipv6, after)) => (
                !ipv6.is_empty() && ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
                after,
            ),
            None => return false,
        },
        None => match domain.find(':') {
            Some(colon) => (is_domain_name(&domain[..colon]), &domain[colon..]),
            None => (is_domain_name(domain), ""),
        },
    };
    host_ok
        && (port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
}

/// `domain-name := domain-component ['.' domain-component]*`; an IPv4 address is one too.
fn is_domain_name(name: &str) -> bool {
    name.split('.').all(is_domain_component)
}

/// `domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/`.
fn is_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `path := path-component ['/' path-component]*`.
fn is_path(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

/// `path-component := alpha-numeric [separator alpha-numeric]*` with `alpha-numeric := [a-z0-9]+`
/// and `separator := [_.] | __ | [-]+`: one dot, one or two underscores, or any run of dashes.
fn is_path_component(component: &str) -> bool {
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if !bytes.first().is_some_and(is_alnum) || !bytes.last().is_some_and(is_alnum) {
        return false;
    }
    // First and last are alphanumeric, so every separator run sits between two alphanumerics.
    bytes
        .split(is_alnum)
        .filter(|separator| !separator.is_empty())
        .all(|separator| {
            matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|b| *b == b'-')
        })
}

/// `tag := /[\w][\w.-]{0,127}/` (ASCII word characters, as in Go's regexp).
fn is_tag(tag: &str) -> bool {
    let is_word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    bytes.len() <= TAG_MAX_LEN
        && bytes.first().is_some_and(is_word)
        && bytes.iter().all(|b| is_word(b) || *b == b'.' || *b == b'-')
}

/// Upstream's digest pattern, `algorithm ':' hex{32,}` with
/// `algorithm := /[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*/`. Passing it is what makes
/// a reference well-formed; whether kiln supports the digest is [`Digest`]'s decision.
fn is_digest_syntax(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let component_ok = |c: &str| {
        c.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && c.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    algorithm.split(['-', '_', '+', '.']).all(component_ok)
        && hex.len() >= DIGEST_MIN_HEX
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests;
