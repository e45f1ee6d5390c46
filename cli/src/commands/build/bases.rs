//! Base images for `kiln build`: the solver asks for an image by reference and platform (each
//! stage's), and gets its manifest from the store, pulled as `--pull` says. The build checks
//! hear of every base resolved (InvalidBaseImagePlatform).

use kiln_builder::oci_spec::image::Descriptor;
use kiln_builder::plan::Platform;
use kiln_builder::solve::BaseImages;
use kiln_builder::store::Store;
use kiln_registry::Reference;

/// Base images from the store, pulled as `--pull` says, each for the platform its stage runs
/// for.
pub(super) struct Bases<'a> {
    pub(super) store: &'a Store,
    pub(super) pull: &'a str,
    pub(super) registry: &'a crate::commands::pull::RegistryArgs,
    /// Checks each resolved base's platform (InvalidBaseImagePlatform).
    pub(super) checks: &'a crate::commands::check::Checks<'a>,
    pub(super) prepared: &'a kiln_builder::build::Prepared,
    /// Held while pulling: two platforms pulling the same image each add their platform to
    /// its tag, one after the other.
    pub(super) pulling: std::sync::Mutex<()>,
}

impl BaseImages for Bases<'_> {
    /// A tagged image that has the platform (an index's entry for it, or a manifest of a
    /// platform that runs there) is used unless `--pull=always`; without one the image is
    /// pulled for the platform. With `--pull=never`, a tagged image of another platform is
    /// used as it is (InvalidBaseImagePlatform reports it), as before kiln chose platforms.
    fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Descriptor, kiln_builder::solve::BoxError> {
        let tagged = self.store.resolve(&reference.to_string())?;
        let local = match &tagged {
            Some(desc) => self.store.manifest_for(desc, platform)?,
            None => None,
        };
        let desc = match (local, tagged, self.pull) {
            (Some(desc), _, "missing" | "never") => desc,
            (None, Some(desc), "never")
                if kiln_builder::image::is_manifest_media_type(desc.media_type()) =>
            {
                desc
            }
            (None, Some(_), "never") => {
                return Err(format!(
                    "{reference} in the store has no image for {platform}, and --pull=never"
                )
                .into());
            }
            (None, None, "never") => {
                return Err(format!("{reference} is not in the store and --pull=never").into());
            }
            _ => {
                let _pulling = self.pulling.lock();
                crate::commands::pull::pull_to_store(self.store, self.registry, reference, platform)
                    .map(|(manifest, _)| manifest)
                    .map_err(|e| format!("{e:#}"))?
            }
        };
        self.checks
            .base_resolved(self.store, self.prepared, reference, &desc, platform);
        Ok(desc)
    }
}
