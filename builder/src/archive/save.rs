//! Saving images to an archive file (`kiln save`), atomically.
//!
//! An `oci-archive` is the image layout itself: every blob of every image's closure, deduplicated,
//! under `blobs/sha256/`, and an `index.json` with one entry per name. A `docker-archive` is the
//! form `docker save` wrote before Docker 25 and that every loader reads (Docker, podman,
//! containers/image's `docker-archive:`, containerd): `manifest.json`, the config blob as
//! `<hex>.json`, and each layer decompressed to `<diffID hex>.tar`, so that a layer file hashes
//! to its diffID. Images with the same manifest share one `manifest.json` entry.
//!
//! A multi-platform image (an index) has no place in that form. A `docker-archive` holding one
//! is written as containerd's exporter writes it (Docker 25's `docker save`): the OCI layout
//! with every platform, plus a `manifest.json` whose entry for the index is one platform's
//! image (the host's when the index has it, else the first), its files named by their paths
//! in the layout (`blobs/sha256/<hex>`), so a docker-archive reader loads that platform.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_registry::{Digest, Reference};
use oci_spec::image::{ANNOTATION_REF_NAME, Descriptor};
use serde::Serialize;

use super::tarout::TarOut;
use super::{ANNOTATION_CONTAINERD_NAME, ArchiveError, Format, is_non_distributable};
use crate::image::{self, ImageConfig, ImageError, MediaTypes, canonical_json};
use crate::layer::decompress;
use crate::store::{LAYOUT_VERSION, MAX_CONFIG_BYTES, Store, StoreError};

/// How deep indexes may nest in an image being saved.
const MAX_INDEX_DEPTH: usize = 8;
/// Output buffer.
const WRITE_BUFFER: usize = 256 * 1024;
/// Read buffer for layer blobs.
const READ_BUFFER: usize = 128 * 1024;

/// One image to save: what it points at, and the name to record (none for an image given by
/// ID, as `docker save` does).
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// The name the archive records.
    pub name: Option<Reference>,
    /// The manifest (or, for `oci-archive` only, index) descriptor.
    pub descriptor: Descriptor,
}

/// Writes `images` from `store` to `dest` in `format`. The file appears complete or not at all.
///
/// The caller should hold a [`Lease`](crate::store::Lease) so that no image being saved is
/// removed meanwhile (a removal would make the save fail, not corrupt it).
pub fn save(
    store: &Store,
    images: &[SaveImage],
    format: Format,
    dest: &Path,
) -> Result<(), ArchiveError> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-save-")
        .tempfile_in(dir)
        .map_err(ArchiveError::io("create a temporary file in", dir))?;
    let out = TarOut::new(BufWriter::with_capacity(WRITE_BUFFER, tmp.as_file()));
    let out = match format {
        Format::OciArchive => write_oci(store, images, out)?,
        Format::DockerArchive => write_docker(store, images, out)?,
    };
    let written = |e| ArchiveError::io("write", tmp.path())(e);
    let buffered = out.finish().map_err(written)?;
    buffered.into_inner().map_err(|e| written(e.into_error()))?;
    let file = tmp.as_file();
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .and_then(|()| file.sync_all())
        .map_err(written)?;
    tmp.persist(dest)
        .map_err(|e| ArchiveError::io("rename into", dest)(e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ArchiveError::io("sync directory", dir))
}

/// The OCI image layout of `images`, as a tar.
fn write_oci<W: Write + Seek>(
    store: &Store,
    images: &[SaveImage],
    out: TarOut<W>,
) -> Result<TarOut<W>, ArchiveError> {
    write_layout(store, images, None, out)
}

/// The OCI image layout of `images`, as a tar, with `manifest_json` (a docker-archive's
/// `manifest.json`) among its files when given.
fn write_layout<W: Write + Seek>(
    store: &Store,
    images: &[SaveImage],
    manifest_json: Option<&[u8]>,
    mut out: TarOut<W>,
) -> Result<TarOut<W>, ArchiveError> {
    let mut blobs = BTreeMap::new();
    let mut entries: Vec<Descriptor> = Vec::new();
    for image in images {
        closure(store, &image.descriptor, &mut blobs, 0)?;
        let mut entry = image.descriptor.clone();
        let mut annotations: HashMap<String, String> =
            entry.annotations().clone().unwrap_or_default();
        annotations.remove(ANNOTATION_REF_NAME);
        if let Some(name) = &image.name {
            annotations.insert(ANNOTATION_REF_NAME.to_owned(), name.to_string());
            annotations.insert(ANNOTATION_CONTAINERD_NAME.to_owned(), name.to_string());
        }
        entry.set_annotations((!annotations.is_empty()).then_some(annotations));
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    let index = canonical_json(&image::build_index(&entries, MediaTypes::Oci)?)?;
    let layout = format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#);

    let tar_err = |e| ArchiveError::io("write", "the archive")(e);
    out.dir("blobs/").map_err(tar_err)?;
    out.dir("blobs/sha256/").map_err(tar_err)?;
    for (digest, size) in &blobs {
        let file = store.open_blob(digest)?;
        let path = format!("blobs/sha256/{}", digest.hex());
        let found = out
            .file(&path, *size, BufReader::with_capacity(READ_BUFFER, file))
            .map_err(|source| ArchiveError::SaveBlob {
                digest: digest.clone(),
                source,
            })?;
        if &found != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                found,
            }
            .into());
        }
    }
    out.bytes("index.json", &index).map_err(tar_err)?;
    if let Some(bytes) = manifest_json {
        out.bytes("manifest.json", bytes).map_err(tar_err)?;
    }
    out.bytes("oci-layout", layout.as_bytes())
        .map_err(tar_err)?;
    Ok(out)
}

/// Adds the blobs `desc` needs (itself included) to `blobs`, with their sizes.
fn closure(
    store: &Store,
    desc: &Descriptor,
    blobs: &mut BTreeMap<Digest, u64>,
    depth: usize,
) -> Result<(), ArchiveError> {
    let digest = image::from_oci_digest(desc.digest())?;
    if blobs.insert(digest, desc.size()).is_some() {
        return Ok(());
    }
    if image::is_index_media_type(desc.media_type()) {
        if depth >= MAX_INDEX_DEPTH {
            return Ok(());
        }
        for child in store.read_index_blob(desc)?.manifests() {
            closure(store, child, blobs, depth + 1)?;
        }
    } else if image::is_manifest_media_type(desc.media_type()) {
        let manifest = store.read_manifest(desc)?;
        let config = manifest.config();
        blobs.insert(image::from_oci_digest(config.digest())?, config.size());
        for layer in manifest.layers() {
            let digest = image::from_oci_digest(layer.digest())?;
            // Non-distributable layers may legitimately be absent; they stay absent.
            if is_non_distributable(layer.media_type()) && !store.has_blob(&digest) {
                continue;
            }
            blobs.insert(digest, layer.size());
        }
    }
    Ok(())
}

/// One `manifest.json` entry of a docker archive.
#[derive(Debug, Serialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// An image's files in a docker archive.
struct DockerImage {
    manifest: Digest,
    config: Digest,
    config_bytes: Vec<u8>,
    /// Layer blob descriptors and the diffIDs the config gives them.
    layers: Vec<(Descriptor, Digest)>,
    repo_tags: Vec<String>,
}

/// `docker save`'s format; with an index among `images`, containerd's (see the module doc).
fn write_docker<W: Write + Seek>(
    store: &Store,
    images: &[SaveImage],
    mut out: TarOut<W>,
) -> Result<TarOut<W>, ArchiveError> {
    if images
        .iter()
        .any(|i| image::is_index_media_type(i.descriptor.media_type()))
    {
        return write_docker_layout(store, images, out);
    }
    let mut docker: Vec<DockerImage> = Vec::new();
    for image in images {
        let desc = &image.descriptor;
        if !image::is_manifest_media_type(desc.media_type()) {
            return Err(ArchiveError::IndexInDockerArchive {
                name: image
                    .name
                    .as_ref()
                    .map_or_else(|| desc.digest().to_string(), Reference::to_string),
            });
        }
        let manifest_digest = image::from_oci_digest(desc.digest())?;
        let tag = image
            .name
            .as_ref()
            .map(|n| format!("{}:{}", n.familiar_name(), n.tag().unwrap_or("latest")));
        if let Some(existing) = docker.iter_mut().find(|d| d.manifest == manifest_digest) {
            if let Some(tag) = tag.filter(|t| !existing.repo_tags.contains(t)) {
                existing.repo_tags.push(tag);
            }
            continue;
        }
        let manifest = store.read_manifest(desc)?;
        let config = image::from_oci_digest(manifest.config().digest())?;
        let config_bytes = store.read_blob(&config, MAX_CONFIG_BYTES)?;
        let parsed =
            ImageConfig::from_json(&config_bytes).map_err(|source| StoreError::BadDocument {
                digest: config.clone(),
                source,
            })?;
        if parsed.rootfs.diff_ids.len() != manifest.layers().len() {
            return Err(StoreError::LayerCountMismatch {
                layers: manifest.layers().len(),
                diff_ids: parsed.rootfs.diff_ids.len(),
            }
            .into());
        }
        docker.push(DockerImage {
            manifest: manifest_digest,
            config,
            config_bytes,
            layers: manifest
                .layers()
                .iter()
                .cloned()
                .zip(parsed.rootfs.diff_ids)
                .collect(),
            repo_tags: tag.into_iter().collect(),
        });
    }

    // Every file, sorted by path; a layer shared by several images is written once.
    enum File<'a> {
        Config(&'a [u8]),
        Layer(&'a Descriptor),
    }
    let mut files: BTreeMap<String, File> = BTreeMap::new();
    let mut manifest_json = Vec::new();
    for image in &docker {
        let config_path = format!("{}.json", image.config.hex());
        files.insert(config_path.clone(), File::Config(&image.config_bytes));
        let mut layers = Vec::new();
        for (desc, diff_id) in &image.layers {
            let path = format!("{}.tar", diff_id.hex());
            files.entry(path.clone()).or_insert(File::Layer(desc));
            layers.push(path);
        }
        manifest_json.push(DockerEntry {
            config: config_path,
            repo_tags: image.repo_tags.clone(),
            layers,
        });
    }
    let tar_err = |e| ArchiveError::io("write", "the archive")(e);
    for (path, file) in &files {
        match file {
            File::Config(bytes) => out.bytes(path, bytes).map_err(tar_err)?,
            File::Layer(desc) => write_docker_layer(store, &mut out, path, desc)?,
        }
    }
    let manifest_json = serde_json::to_vec(&manifest_json).map_err(ImageError::Serialize)?;
    out.bytes("manifest.json", &manifest_json)
        .map_err(tar_err)?;
    Ok(out)
}

/// A docker-archive as containerd writes one: the OCI layout of `images` and a `manifest.json`
/// naming, for each image, one platform's config and layers by their paths in the layout.
fn write_docker_layout<W: Write + Seek>(
    store: &Store,
    images: &[SaveImage],
    out: TarOut<W>,
) -> Result<TarOut<W>, ArchiveError> {
    let host = kiln_registry::Platform::host();
    let blob_path = |digest: &oci_spec::image::Digest| -> Result<String, ArchiveError> {
        Ok(format!(
            "blobs/sha256/{}",
            image::from_oci_digest(digest)?.hex()
        ))
    };
    let mut entries: Vec<(Digest, DockerEntry)> = Vec::new();
    for saved in images {
        let manifests = store.platform_manifests(&saved.descriptor)?;
        let first = manifests.first().map(|(_, d)| d.clone());
        let Some(desc) = host.choose_by(manifests).or(first) else {
            return Err(ArchiveError::IndexInDockerArchive {
                name: saved.name.as_ref().map_or_else(
                    || saved.descriptor.digest().to_string(),
                    Reference::to_string,
                ),
            });
        };
        let digest = image::from_oci_digest(desc.digest())?;
        let tag = saved
            .name
            .as_ref()
            .map(|n| format!("{}:{}", n.familiar_name(), n.tag().unwrap_or("latest")));
        if let Some((_, existing)) = entries.iter_mut().find(|(d, _)| *d == digest) {
            if let Some(tag) = tag.filter(|t| !existing.repo_tags.contains(t)) {
                existing.repo_tags.push(tag);
            }
            continue;
        }
        let manifest = store.read_manifest(&desc)?;
        let entry = DockerEntry {
            config: blob_path(manifest.config().digest())?,
            repo_tags: tag.into_iter().collect(),
            layers: manifest
                .layers()
                .iter()
                .map(|l| blob_path(l.digest()))
                .collect::<Result<_, _>>()?,
        };
        entries.push((digest, entry));
    }
    let entries: Vec<DockerEntry> = entries.into_iter().map(|(_, e)| e).collect();
    let manifest_json = serde_json::to_vec(&entries).map_err(ImageError::Serialize)?;
    write_layout(store, images, Some(&manifest_json), out)
}

/// Writes a layer blob decompressed, checking it hashes to the diffID its file is named by.
fn write_docker_layer<W: Write + Seek>(
    store: &Store,
    out: &mut TarOut<W>,
    path: &str,
    desc: &Descriptor,
) -> Result<(), ArchiveError> {
    let digest = image::from_oci_digest(desc.digest())?;
    let blob = store.open_blob(&digest)?;
    let save_err = |source| ArchiveError::SaveBlob {
        digest: digest.clone(),
        source,
    };
    let tar = decompress(BufReader::with_capacity(READ_BUFFER, blob)).map_err(save_err)?;
    let (found, _) = out.stream(path, tar).map_err(save_err)?;
    let expected_hex = path.trim_end_matches(".tar");
    if found.hex() != expected_hex {
        return Err(ArchiveError::DiffIdMismatch {
            path: path.to_owned(),
            expected: format!("sha256:{expected_hex}")
                .parse()
                .map_err(ImageError::Digest)?,
            found,
        });
    }
    Ok(())
}
