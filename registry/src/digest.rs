//! Content digests (`sha256:<64 lowercase hex>`) and a writer that hashes while it writes.
//!
//! A [`Digest`] is only ever built from a validated string or from bytes that were hashed, so a
//! store can form `blobs/sha256/<hex>` from it without fear of `..` or `/` in the name. Only
//! sha256 is accepted: it is what every registry and OCI layout uses, and accepting an algorithm
//! we cannot verify would mean trusting content we cannot check.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// The length of a sha256 digest in lowercase hex.
const SHA256_HEX_LEN: usize = 64;

/// A validated `sha256:` content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// Why a string is not a digest kiln accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The string has no `algorithm:` prefix.
    #[error("invalid digest {0:?}: expected sha256:<64 hex characters>")]
    Malformed(String),
    /// The algorithm is not sha256.
    #[error("unsupported digest algorithm {0:?}: only sha256 is supported")]
    UnsupportedAlgorithm(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        Self {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The algorithm name, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The 64 lowercase hex characters after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// As `oci-spec`'s digest type, for descriptors.
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        // 64 lowercase hex characters by construction, which is exactly what Sha256Digest
        // accepts, so this cannot fail.
        let sha: oci_spec::image::Sha256Digest = self
            .hex
            .parse()
            .expect("a validated sha256 digest is a valid OCI sha256 digest");
        sha.into()
    }

    /// From `oci-spec`'s digest type (a descriptor's), validated as [`FromStr`] does: other
    /// algorithms are refused.
    pub fn from_oci(digest: &oci_spec::image::Digest) -> Result<Self, DigestError> {
        digest.as_ref().parse()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_owned()))?;
        if algorithm != "sha256" {
            if algorithm.is_empty() || hex.is_empty() {
                return Err(DigestError::Malformed(s.to_owned()));
            }
            return Err(DigestError::UnsupportedAlgorithm(algorithm.to_owned()));
        }
        let valid = hex.len() == SHA256_HEX_LEN
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(DigestError::Malformed(s.to_owned()));
        }
        Ok(Self {
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that passes bytes through to `inner` while hashing and counting them.
#[derive(Debug)]
pub struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Ends hashing: the inner writer, the digest and the size of everything written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.size)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_table() {
        let cases: &[(&str, bool)] = &[
            (EMPTY, true),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                false,
            ),
            ("sha256:e3b0", false),
            ("sha256:../../../../etc/passwd", false),
            (
                "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                false,
            ),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                false,
            ),
            ("", false),
        ];
        for (input, ok) in cases {
            assert_eq!(input.parse::<Digest>().is_ok(), *ok, "{input}");
        }
    }

    #[test]
    fn oci_spec_digests_convert_both_ways() {
        let d = Digest::of(b"x");
        let oci = d.to_oci();
        assert_eq!(oci.to_string(), d.to_string());
        assert_eq!(Digest::from_oci(&oci), Ok(d));
        let sha512: oci_spec::image::Digest =
            format!("sha512:{}", "c".repeat(128)).parse().unwrap();
        assert!(matches!(
            Digest::from_oci(&sha512),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn writer_hashes_what_passes_through() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (bytes, digest, size) = w.finish();
        assert_eq!(bytes, b"hello world");
        assert_eq!(size, 11);
        assert_eq!(digest, Digest::of(b"hello world"));
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(
            "sha512:x".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm("sha512".into()))
        );
    }
}
