//! Layers compressed for distribution.
//!
//! Builds keep the layers they make uncompressed in the store, as buildah and BuildKit do:
//! compressing every layer while building would cost more than anything else a build does, and
//! most layers never leave the machine. What leaves it is compressed on the way out:
//! [`Store::for_distribution`] gives a manifest whose uncompressed layers are replaced by
//! compressed blobs (the config, hence the image ID, is the same). Each compressed blob is made
//! once: `cache/compressed/<uncompressed hex>.<gzip|zstd>` records which blob it became, so a
//! second push of the same image compresses nothing. Compression is deterministic, so the
//! pushed manifest's digest is too. [`Store::for_distribution_with`] reports each layer as soon
//! as its blob is ready, so a push can send it while the next one is being compressed.

use std::fs;
use std::io::{self, BufReader};
use std::path::PathBuf;

use kiln_registry::Digest;
use oci_spec::image::{Descriptor, MediaType};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, sorted_entries};
use crate::image::{self, MediaTypes, canonical_json};
use crate::layer::{CompressWriter, Compression};

/// Where an uncompressed layer's compressed form is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Variant {
    digest: Digest,
    size: u64,
}

impl Store {
    /// `desc` (a manifest in this store) with its uncompressed layers compressed with
    /// `compression`: the same descriptor when there are none, else a new manifest blob (not
    /// tagged) over the same config. For an index, the same for each of its manifests, and a
    /// new index over them when one changed. Compressed layers are left as they are.
    pub fn for_distribution(
        &self,
        desc: &Descriptor,
        compression: Compression,
    ) -> Result<Descriptor, StoreError> {
        self.for_distribution_with(desc, compression, &mut |_, _| {})
    }

    /// [`Store::for_distribution`], calling `ready` with the digest and size of each layer of
    /// the new manifest, in order, as soon as its blob is in the store. When nothing needs
    /// compressing, `ready` is not called and `desc` comes back as it is.
    pub fn for_distribution_with(
        &self,
        desc: &Descriptor,
        compression: Compression,
        ready: &mut dyn FnMut(&Digest, u64),
    ) -> Result<Descriptor, StoreError> {
        if compression == Compression::None {
            return Ok(desc.clone());
        }
        if image::is_index_media_type(desc.media_type()) {
            return self.index_for_distribution(desc, compression, ready);
        }
        if !image::is_manifest_media_type(desc.media_type()) {
            return Ok(desc.clone());
        }
        let manifest = self.read_manifest(desc)?;
        let media = match desc.media_type() {
            MediaType::ImageManifest => MediaTypes::Oci,
            _ => MediaTypes::Docker,
        };
        let plain = [
            MediaTypes::Oci.convert_layer(&MediaType::ImageLayer)?,
            MediaTypes::Docker.convert_layer(&MediaType::ImageLayer)?,
        ];
        if !manifest
            .layers()
            .iter()
            .any(|l| plain.contains(l.media_type()))
        {
            return Ok(desc.clone());
        }
        let mut layers = Vec::with_capacity(manifest.layers().len());
        for layer in manifest.layers() {
            let digest = image::from_oci_digest(layer.digest())?;
            if !plain.contains(layer.media_type()) {
                ready(&digest, layer.size());
                layers.push(layer.clone());
                continue;
            }
            let variant = self.compressed_variant(&digest, compression)?;
            ready(&variant.digest, variant.size);
            layers.push(image::descriptor(
                MediaType::from(compression.media_type()),
                &variant.digest,
                variant.size,
            ));
        }
        // Annotations stay: a push is the same image, its layers compressed.
        let annotations = manifest
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let manifest = image::build_manifest(manifest.config(), &layers, media, &annotations)?;
        let (digest, size) = self.put_blob(&canonical_json(&manifest)?)?;
        let mut out = image::descriptor(desc.media_type().clone(), &digest, size);
        out.set_platform(desc.platform().clone());
        Ok(out)
    }

    /// [`Store::for_distribution_with`] for an index: each manifest (platforms and
    /// annotations kept), and a new index blob (not tagged) over them when any changed.
    fn index_for_distribution(
        &self,
        desc: &Descriptor,
        compression: Compression,
        ready: &mut dyn FnMut(&Digest, u64),
    ) -> Result<Descriptor, StoreError> {
        let mut index = self.read_index_blob(desc)?;
        let mut changed = false;
        let mut manifests = Vec::with_capacity(index.manifests().len());
        for child in index.manifests() {
            let mut out = if image::is_manifest_media_type(child.media_type()) {
                self.for_distribution_with(child, compression, ready)?
            } else {
                // Nested indexes and artifacts go as they are.
                child.clone()
            };
            out.set_annotations(child.annotations().clone());
            changed |= out.digest() != child.digest();
            manifests.push(out);
        }
        if !changed {
            return Ok(desc.clone());
        }
        index.set_manifests(manifests);
        let (digest, size) = self.put_blob(&canonical_json(&index)?)?;
        Ok(image::descriptor(desc.media_type().clone(), &digest, size))
    }

    /// The records of compressed layers that name an absent blob (with its digest), or that do
    /// not parse (`None`), sorted. Harmless (such a record reads as "not compressed yet"), but
    /// `kiln fsck` reports and removes them.
    pub(super) fn stale_variants(&self) -> Result<Vec<(PathBuf, Option<Digest>)>, StoreError> {
        let dir = self.variants_dir();
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut stale = Vec::new();
        for entry in sorted_entries(&dir)? {
            let path = entry.path();
            let variant = fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Variant>(&bytes).ok());
            match variant {
                Some(v) if self.is_available(&v.digest) => {}
                Some(v) => stale.push((path, Some(v.digest))),
                None => stale.push((path, None)),
            }
        }
        Ok(stale)
    }

    fn variants_dir(&self) -> PathBuf {
        self.cache_dir().join("compressed")
    }

    /// The compressed blob (digest and size) of the uncompressed layer blob `digest`, made now
    /// unless an earlier push, cache export or cache import left it in the store.
    pub fn compressed_layer(
        &self,
        digest: &Digest,
        compression: Compression,
    ) -> Result<(Digest, u64), StoreError> {
        let variant = self.compressed_variant(digest, compression)?;
        Ok((variant.digest, variant.size))
    }

    /// Records that the blob `compressed` (in the store) is the uncompressed blob `plain`
    /// compressed with `compression`, so a later push sends it instead of compressing again (a
    /// cache import downloads the compressed form and unpacks it). Only a shortcut: failing to
    /// record it costs a compression, so errors are not reported.
    pub fn remember_compressed_layer(
        &self,
        plain: &Digest,
        compression: Compression,
        compressed: &Digest,
        size: u64,
    ) {
        let variant = Variant {
            digest: compressed.clone(),
            size,
        };
        let dir = self.variants_dir();
        if fs::create_dir_all(&dir).is_ok()
            && let Ok(bytes) = serde_json::to_vec(&variant)
        {
            let _ = self.replace_file(&dir.join(variant_name(plain, compression)), &bytes);
        }
    }

    /// The compressed blob of the uncompressed blob `digest`, made now unless it exists.
    fn compressed_variant(
        &self,
        digest: &Digest,
        compression: Compression,
    ) -> Result<Variant, StoreError> {
        let dir = self.variants_dir();
        let record = dir.join(variant_name(digest, compression));
        if let Some(known) = fs::read(&record)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Variant>(&bytes).ok())
            .filter(|v| self.is_available(&v.digest))
        {
            return Ok(known);
        }
        let source = self.open_blob(digest)?;
        let writer = self.blob_writer()?;
        let mut compressor = CompressWriter::new(writer, compression)
            .map_err(StoreError::io("compress", &self.blob_path(digest)))?;
        io::copy(&mut BufReader::new(source), &mut compressor)
            .map_err(StoreError::io("compress", &self.blob_path(digest)))?;
        let writer = compressor
            .finish()
            .map_err(StoreError::io("compress", &self.blob_path(digest)))?;
        let (digest, size) = writer.commit()?;
        let variant = Variant { digest, size };
        // Only a shortcut for the next push: losing it costs a compression, nothing more.
        if fs::create_dir_all(&dir).is_ok()
            && let Ok(bytes) = serde_json::to_vec(&variant)
        {
            let _ = self.replace_file(&record, &bytes);
        }
        Ok(variant)
    }
}

/// The record of `plain`'s compressed form: `<uncompressed hex>.<gzip|zstd>`.
fn variant_name(plain: &Digest, compression: Compression) -> String {
    let suffix = match compression {
        Compression::Zstd => "zstd",
        _ => "gzip",
    };
    format!("{}.{suffix}", plain.hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageConfig;
    use crate::layer::decompress;

    #[test]
    fn uncompressed_layers_are_compressed_once_and_the_config_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = b"not really a tar, but bytes all the same".repeat(100);
        let (layer, size) = store.put_blob(&tar).unwrap();
        let mut config = ImageConfig::new("amd64", "linux");
        config.rootfs.diff_ids.push(layer.clone());
        let plain = image::descriptor(MediaType::ImageLayer, &layer, size);
        let local = store
            .write_image(&config, &[plain], MediaTypes::Oci)
            .unwrap();

        let pushed = store.for_distribution(&local, Compression::Gzip).unwrap();
        assert_ne!(pushed.digest(), local.digest());
        let manifest = store.read_manifest(&pushed).unwrap();
        assert_eq!(
            manifest.config(),
            store.read_manifest(&local).unwrap().config()
        );
        let compressed = &manifest.layers()[0];
        assert_eq!(compressed.media_type(), &MediaType::ImageLayerGzip);
        let blob = store
            .read_blob(
                &image::from_oci_digest(compressed.digest()).unwrap(),
                1 << 20,
            )
            .unwrap();
        let mut back = Vec::new();
        io::copy(&mut decompress(&blob[..]).unwrap(), &mut back).unwrap();
        assert_eq!(back, tar);

        // The second time, the recorded blob is used and the manifest is the same.
        let blobs = fs::read_dir(store.oci_dir().join("blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(
            store.for_distribution(&local, Compression::Gzip).unwrap(),
            pushed
        );
        let after = fs::read_dir(store.oci_dir().join("blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(after, blobs);
        // Already compressed: nothing to do.
        assert_eq!(
            store.for_distribution(&pushed, Compression::Gzip).unwrap(),
            pushed
        );
    }
}
