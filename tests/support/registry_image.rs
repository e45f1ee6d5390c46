//! Test images written straight into a kiln store with the library (no registry involved):
//! one gzip layer of the given files over an empty config for a platform, tagged; and indexes
//! over such images.

use std::fs;
use std::path::Path;

use kiln_builder::image::{self, ImageConfig, MediaTypes, canonical_json};
use kiln_builder::layer::{ChangeKind, Compression, LayerOptions, write_layer};
use kiln_builder::store::Store;
use oci_spec::image::{Descriptor, MediaType};

/// Writes a one-layer image holding `files` for linux/`arch` into the store at `root`, tags it
/// `name`, and returns its manifest descriptor.
pub fn make_image(root: &Path, name: &str, arch: &str, files: &[(&str, &[u8])]) -> Descriptor {
    make_image_for(root, name, &format!("linux/{arch}"), files)
}

/// [`make_image`] for a platform given as `os/arch[/variant]`.
pub fn make_image_for(
    root: &Path,
    name: &str,
    platform: &str,
    files: &[(&str, &[u8])],
) -> Descriptor {
    let platform: kiln_registry::Platform = platform.parse().unwrap();
    let store = Store::open(root).unwrap();
    let tree = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let path = tree.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    let options = LayerOptions {
        kind: ChangeKind::Tree,
        compression: Compression::Gzip,
        source_date_epoch: Some(0),
    };
    let mut writer = store.blob_writer().unwrap();
    let info = write_layer(tree.path(), &options, &mut writer).unwrap();
    writer.commit_verified(&info.digest, info.size).unwrap();
    let mut config = ImageConfig::new(&platform.architecture, &platform.os);
    config.variant = platform.variant.clone();
    config.rootfs.diff_ids = vec![info.diff_id.clone()];
    let layer = image::descriptor(MediaType::from(info.media_type), &info.digest, info.size);
    let desc = store
        .write_image(&config, &[layer], MediaTypes::Oci)
        .unwrap();
    store.tag(name, &desc).unwrap();
    desc
}

/// Writes an index over `manifests` into the store at `root` and tags it `name`.
pub fn make_index(root: &Path, name: &str, manifests: &[Descriptor]) -> Descriptor {
    let store = Store::open(root).unwrap();
    let index = image::build_index(manifests, MediaTypes::Oci).unwrap();
    let bytes = canonical_json(&index).unwrap();
    let (digest, size) = store.put_blob(&bytes).unwrap();
    let desc = image::descriptor(MediaTypes::Oci.index(), &digest, size);
    store.tag(name, &desc).unwrap();
    desc
}

/// `n` bytes that gzip cannot shrink (xorshift), so a layer of them is about `n` bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
