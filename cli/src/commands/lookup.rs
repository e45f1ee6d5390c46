//! Finding images in the store the way docker does: by name first (`busybox` is
//! `docker.io/library/busybox:latest`), then by image ID (the config digest, `sha256:` optional,
//! any unambiguous prefix); and describing an image (its platform manifest and config).
//!
//! Store tags are full normalised references. A tag another tool wrote that is not one (umoci's
//! plain `kiln-test`) is still found by its exact text and listed as it is.

use anyhow::{Context as _, anyhow, bail};
use kiln_builder::image::{self, ImageConfig};
use kiln_builder::oci_spec::image::{Descriptor, ImageManifest};
use kiln_builder::plan::Platform;
use kiln_builder::store::Store;
use kiln_registry::{Digest, Reference};

/// A tag in the store.
#[derive(Debug, Clone)]
pub struct Tagged {
    /// The tag as stored.
    pub name: String,
    /// The tag as a reference, when it is one in normalised form.
    pub reference: Option<Reference>,
    /// What it points at (a manifest or an index).
    pub descriptor: Descriptor,
}

impl Tagged {
    fn new(name: String, descriptor: Descriptor) -> Self {
        let reference = Reference::parse(&name)
            .ok()
            .filter(|r| r.to_string() == name && r.digest().is_none());
        Self {
            name,
            reference,
            descriptor,
        }
    }

    /// Repository and tag as docker shows them (`busybox`, `latest`); a tag that is not a
    /// reference is its own repository, with tag `<none>`.
    pub fn repository_and_tag(&self) -> (String, String) {
        match &self.reference {
            Some(r) => (r.familiar_name(), r.tag().unwrap_or("latest").to_owned()),
            None => (self.name.clone(), "<none>".to_owned()),
        }
    }

    /// `busybox:latest`, as docker prints names in `Untagged:` lines and `RepoTags`.
    pub fn familiar(&self) -> String {
        match &self.reference {
            Some(_) => {
                let (repository, tag) = self.repository_and_tag();
                format!("{repository}:{tag}")
            }
            None => self.name.clone(),
        }
    }
}

/// An image as the commands show it.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image manifest for this platform (the tag's own descriptor when it is one).
    pub manifest_descriptor: Descriptor,
    /// That manifest.
    pub manifest: ImageManifest,
    /// Its config.
    pub config: ImageConfig,
    /// The image ID: the config's digest.
    pub id: Digest,
}

impl Image {
    /// The sum of the compressed layer blobs: what `kiln images` shows as SIZE.
    pub fn size(&self) -> u64 {
        self.manifest.layers().iter().map(|l| l.size()).sum()
    }
}

/// What a command-line argument names.
#[derive(Debug)]
pub enum Target {
    /// One tag.
    Name(Box<Tagged>),
    /// An image ID, with every tag whose image has it (at least one).
    Id {
        /// The image ID.
        id: Digest,
        /// The tags, sorted.
        tags: Vec<Tagged>,
    },
}

impl Target {
    /// A tag the target stands for: itself, or the first of the image's tags.
    pub fn first_tag(&self) -> &Tagged {
        match self {
            Target::Name(t) => t,
            Target::Id { tags, .. } => &tags[0],
        }
    }
}

/// Every tag in the store, sorted by name.
pub fn tags(store: &Store) -> anyhow::Result<Vec<Tagged>> {
    Ok(store
        .list()
        .context("reading the store's tags")?
        .into_iter()
        .map(|(name, desc)| Tagged::new(name, desc))
        .collect())
}

/// Reads the image a tag points at, choosing the host's platform in an index (or its first
/// manifest when none runs here).
pub fn describe(store: &Store, descriptor: &Descriptor) -> anyhow::Result<Image> {
    describe_for(store, descriptor, None)
}

/// [`describe`] for `platform` (`kiln run --platform`): an index's entry for it, as
/// containerd's matcher chooses; `None` means the host's, falling back to the first manifest.
/// A platform no image of the tag runs on is an error naming the ones there are.
pub fn describe_for(
    store: &Store,
    descriptor: &Descriptor,
    platform: Option<&Platform>,
) -> anyhow::Result<Image> {
    let manifests = store.platform_manifests(descriptor)?;
    let available = || {
        manifests
            .iter()
            .map(|(p, _)| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let desc = match platform {
        Some(wanted) => wanted
            .choose_by(manifests.iter().map(|(p, d)| (p.clone(), d)))
            .ok_or_else(|| {
                anyhow!(
                    "{} has no image for {wanted} (it has {})",
                    descriptor.digest(),
                    available()
                )
            })?,
        None => Platform::host()
            .choose_by(manifests.iter().map(|(p, d)| (p.clone(), d)))
            .or_else(|| manifests.first().map(|(_, d)| d))
            .ok_or_else(|| anyhow!("index {} lists no images", descriptor.digest()))?,
    };
    let manifest = store.read_manifest(desc)?;
    let config = store.read_config(&manifest)?;
    let id = image::image_id(&manifest)?;
    Ok(Image {
        manifest_descriptor: desc.clone(),
        manifest,
        config,
        id,
    })
}

/// `No such image: NAME`, with NAME as docker prints it (`busybox:latest`).
pub fn no_such_image(arg: &str) -> anyhow::Error {
    let shown = match Reference::parse(arg) {
        Ok(r) if r.digest().is_none() => {
            format!("{}:{}", r.familiar_name(), r.tag().unwrap_or("latest"))
        }
        _ => arg.to_owned(),
    };
    anyhow!("No such image: {shown}")
}

/// Parses a name to create or look up, naming it when it is not a valid reference.
pub fn parse_name(arg: &str) -> anyhow::Result<Reference> {
    Reference::parse(arg).map_err(anyhow::Error::from)
}

/// Finds what `arg` names: a tag (normalised, or stored as written), else an image ID.
/// `Ok(None)` when nothing matches; an error for an ambiguous ID or an invalid name.
pub fn find(store: &Store, arg: &str) -> anyhow::Result<Option<Target>> {
    let all = tags(store)?;
    let parsed = Reference::parse(arg);
    if let Ok(reference) = &parsed {
        let full = reference.to_string();
        if let Some(t) = all.iter().find(|t| t.name == full) {
            return Ok(Some(Target::Name(Box::new(t.clone()))));
        }
    }
    if let Some(t) = all.iter().find(|t| t.name == arg) {
        return Ok(Some(Target::Name(Box::new(t.clone()))));
    }
    let Some(prefix) = id_prefix(arg) else {
        // Not a name in the store and not an ID: an invalid name is reported as such.
        return match parsed {
            Ok(_) => Ok(None),
            Err(e) => Err(e.into()),
        };
    };
    let mut ids: Vec<(Digest, Tagged)> = Vec::new();
    for t in all {
        // An image that cannot be read has no ID to match (`kiln images` reports it).
        // A multi-platform image is also found by its index's digest (what `kiln build
        // --iidfile` writes for one, as buildx does).
        if image::is_index_media_type(t.descriptor.media_type())
            && let Ok(digest) = image::from_oci_digest(t.descriptor.digest())
            && digest.hex().starts_with(prefix)
        {
            ids.push((digest, t));
            continue;
        }
        let Ok(image) = describe(store, &t.descriptor) else {
            continue;
        };
        if image.id.hex().starts_with(prefix) {
            ids.push((image.id, t));
        }
    }
    let Some((id, _)) = ids.first() else {
        return Ok(None);
    };
    let id = id.clone();
    if ids.iter().any(|(other, _)| other != &id) {
        bail!("multiple IDs found with provided prefix: {prefix}");
    }
    Ok(Some(Target::Id {
        id,
        tags: ids.into_iter().map(|(_, t)| t).collect(),
    }))
}

/// The hex digits of an image ID or ID prefix (`sha256:` optional), if `arg` is one.
fn id_prefix(arg: &str) -> Option<&str> {
    let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
    let valid = !hex.is_empty()
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    valid.then_some(hex)
}

/// The short image ID docker shows: 12 hex digits.
pub fn short_id(id: &Digest) -> &str {
    &id.hex()[..12]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_prefixes() {
        let hex = "0123456789abcdef".repeat(4);
        let sha = format!("sha256:{hex}");
        let long = format!("{hex}0");
        let table: [(&str, Option<&str>); 7] = [
            ("abc", Some("abc")),
            (&hex, Some(&hex)),
            (&sha, Some(&hex)),
            ("sha256:", None),
            ("busybox", None),
            ("ABC", None),
            (&long, None),
        ];
        for (arg, expected) in table {
            assert_eq!(id_prefix(arg), expected, "{arg}");
        }
    }

    #[test]
    fn names_as_docker_prints_them() {
        let desc = || {
            image::descriptor(
                kiln_builder::oci_spec::image::MediaType::ImageManifest,
                &Digest::of(b"m"),
                1,
            )
        };
        let table = [
            ("docker.io/library/busybox:latest", "busybox", "latest"),
            ("docker.io/user/app:1.0", "user/app", "1.0"),
            ("localhost:5000/x:y", "localhost:5000/x", "y"),
            ("kiln-test", "kiln-test", "<none>"),
            // Not normalised: shown as stored.
            ("busybox:latest", "busybox:latest", "<none>"),
        ];
        for (name, repository, tag) in table {
            let t = Tagged::new(name.to_owned(), desc());
            assert_eq!(
                t.repository_and_tag(),
                (repository.to_owned(), tag.to_owned()),
                "{name}"
            );
        }
        assert_eq!(
            no_such_image("busybox").to_string(),
            "No such image: busybox:latest"
        );
        assert_eq!(
            no_such_image("0123abcd").to_string(),
            "No such image: 0123abcd:latest"
        );
        assert_eq!(no_such_image("Bad").to_string(), "No such image: Bad");
    }
}
