//! Whole images: writing a config and manifest over committed layers, and reading them back
//! verified; and finding the manifest for a platform under a tag that may be an index.
//!
//! Every JSON document read here is read from a blob whose digest is re-checked and whose size
//! must equal its descriptor's, with a size bound, so a corrupt or swapped blob is an error,
//! never a silently different image.

use std::collections::BTreeMap;

use kiln_registry::{Digest, Platform};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Store, StoreError};

/// How deep indexes may nest before the store stops following them.
const MAX_INDEX_DEPTH: usize = 8;
use crate::image::{self, ImageConfig, MediaTypes, canonical_json};

impl Store {
    /// Writes the config and manifest blobs of an image whose layers are already committed, and
    /// returns the manifest's descriptor (with the config's platform). Does not tag.
    ///
    /// `layers` are relabelled to the `media` family; their order must match
    /// `config.rootfs.diff_ids`.
    pub fn write_image(
        &self,
        config: &ImageConfig,
        layers: &[Descriptor],
        media: MediaTypes,
    ) -> Result<Descriptor, StoreError> {
        self.write_image_with(config, layers, media, &BTreeMap::new())
    }

    /// [`Store::write_image`] with the manifest's `annotations` (`--annotation`).
    pub fn write_image_with(
        &self,
        config: &ImageConfig,
        layers: &[Descriptor],
        media: MediaTypes,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Descriptor, StoreError> {
        if layers.len() != config.rootfs.diff_ids.len() {
            return Err(StoreError::LayerCountMismatch {
                layers: layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        for layer in layers {
            let digest = image::from_oci_digest(layer.digest())?;
            // A remote layer (a lazy cache import) is part of the image, fetched when read.
            if !self.is_available(&digest) {
                return Err(StoreError::MissingBlob { digest });
            }
        }
        let config_bytes = config.to_canonical_json()?;
        let (config_digest, config_size) = self.put_blob(&config_bytes)?;
        let config_desc = image::descriptor(media.config(), &config_digest, config_size);
        let manifest = image::build_manifest(&config_desc, layers, media, annotations)?;
        let manifest_bytes = canonical_json(&manifest)?;
        let (digest, size) = self.put_blob(&manifest_bytes)?;
        let mut desc = image::descriptor(media.manifest(), &digest, size);
        desc.set_platform(Some(config.platform()));
        Ok(desc)
    }

    /// Writes an image index of the `media` family over `manifests` (each in the store, with
    /// its platform) with the index's own `annotations`, and returns its descriptor. Does not
    /// tag.
    pub fn write_image_index(
        &self,
        manifests: &[Descriptor],
        media: MediaTypes,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Descriptor, StoreError> {
        for manifest in manifests {
            let digest = image::from_oci_digest(manifest.digest())?;
            if !self.has_blob(&digest) {
                return Err(StoreError::MissingBlob { digest });
            }
        }
        let mut index = image::build_index(manifests, media)?;
        if !annotations.is_empty() {
            index.set_annotations(Some(annotations.clone().into_iter().collect()));
        }
        let (digest, size) = self.put_blob(&canonical_json(&index)?)?;
        Ok(image::descriptor(media.index(), &digest, size))
    }

    /// Reads and verifies the bytes a descriptor names, up to `limit`.
    fn read_described(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, StoreError> {
        let digest = image::from_oci_digest(desc.digest())?;
        if desc.size() > limit {
            return Err(StoreError::TooLarge { digest, limit });
        }
        let bytes = self.read_blob(&digest, limit)?;
        if bytes.len() as u64 != desc.size() {
            return Err(StoreError::SizeMismatch {
                digest,
                expected: desc.size(),
                found: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Reads the image manifest a descriptor names (OCI or Docker); an index is an error.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<ImageManifest, StoreError> {
        let bytes = self.read_described(desc, MAX_MANIFEST_BYTES)?;
        image::parse_manifest(&bytes, Some(desc.media_type())).map_err(|source| {
            StoreError::BadDocument {
                digest: Digest::of(&bytes),
                source,
            }
        })
    }

    /// Reads the index a descriptor names (OCI index or Docker manifest list).
    pub fn read_index_blob(&self, desc: &Descriptor) -> Result<ImageIndex, StoreError> {
        let bytes = self.read_described(desc, MAX_MANIFEST_BYTES)?;
        image::parse_index(&bytes, Some(desc.media_type())).map_err(|source| {
            StoreError::BadDocument {
                digest: Digest::of(&bytes),
                source,
            }
        })
    }

    /// The image manifests `desc` stands for, with their platforms: itself when it is a
    /// manifest (its platform from the descriptor, else from its config), else every manifest
    /// of the index, nested indexes followed.
    pub fn platform_manifests(
        &self,
        desc: &Descriptor,
    ) -> Result<Vec<(Platform, Descriptor)>, StoreError> {
        let mut out = Vec::new();
        let mut pending = vec![(desc.clone(), 0)];
        while let Some((desc, depth)) = pending.pop() {
            if image::is_index_media_type(desc.media_type()) {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(StoreError::TooDeep {
                        digest: image::from_oci_digest(desc.digest())?,
                        limit: MAX_INDEX_DEPTH,
                    });
                }
                let index = self.read_index_blob(&desc)?;
                // Pushed in reverse so they come out in the index's order.
                pending.extend(
                    index
                        .manifests()
                        .iter()
                        .rev()
                        .map(|m| (m.clone(), depth + 1)),
                );
                continue;
            }
            if !image::is_manifest_media_type(desc.media_type()) {
                // An attestation or another artifact: no image to run.
                continue;
            }
            let platform = match desc.platform() {
                Some(p) => Platform::of(p),
                None => {
                    let config = self.read_config(&self.read_manifest(&desc)?)?;
                    Platform::new(&config.os, &config.architecture, config.variant.as_deref())
                }
            };
            out.push((platform, desc));
        }
        Ok(out)
    }

    /// The manifest of `desc` (a tag's manifest or index) for `platform`: the entry containerd's
    /// matcher chooses ([`Platform::choose`]); `None` when no image of `desc` runs there.
    pub fn manifest_for(
        &self,
        desc: &Descriptor,
        platform: &Platform,
    ) -> Result<Option<Descriptor>, StoreError> {
        Ok(platform.choose_by(self.platform_manifests(desc)?))
    }

    /// Reads the config of a manifest.
    pub fn read_config(&self, manifest: &ImageManifest) -> Result<ImageConfig, StoreError> {
        let bytes = self.read_described(manifest.config(), MAX_CONFIG_BYTES)?;
        ImageConfig::from_json(&bytes).map_err(|source| StoreError::BadDocument {
            digest: Digest::of(&bytes),
            source,
        })
    }
}
