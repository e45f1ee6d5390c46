//! Loading an `oci-archive` or `docker-archive` into the store (`kiln load`).
//!
//! The archive is indexed in one pass (path → where its data lies in the file) and then read
//! at those offsets, so entries may come in any order and nothing is extracted to disk. A
//! compressed archive, or one read from a pipe, is first spooled (decompressed) into the
//! store's `tmp/`. Every name is checked before anything is stored; every blob is hashed as it
//! is copied in and must match its digest and size; a docker archive's layers are recompressed
//! with kiln's deterministic gzip and each must hash to its config's diffID. Tags are made last,
//! by [`Store::tag`], which checks the whole closure is present. The format is told by the
//! files: `index.json` makes an OCI archive (Docker ≥ 25 writes both; the OCI side keeps the
//! manifests' digests), else `manifest.json` a docker archive.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use kiln_registry::{Digest, Reference};
use oci_spec::image::{ANNOTATION_REF_NAME, Descriptor, MediaType};
use serde::Deserialize;

use super::{
    ANNOTATION_CONTAINERD_NAME, ArchiveError, MAGIC_LEN, is_compressed, is_non_distributable,
    read_head, refuse_unsupported_compression,
};
use crate::image::{self, Document, ImageConfig, ImageError, MediaTypes, canonical_json};
use crate::layer::{Compression, decompress, layer_from_tar};
use crate::store::{LAYOUT_VERSION, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Store, StoreError};

/// How many links in a row are followed inside an archive.
const MAX_LINKS: usize = 16;
/// How deep indexes may nest.
const MAX_INDEX_DEPTH: usize = 8;
/// Read buffer.
const READ_BUFFER: usize = 128 * 1024;

/// An image `load` tagged.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The name it was tagged with.
    pub name: Reference,
    /// What the name points at.
    pub descriptor: Descriptor,
}

/// Loads the archive at `path` (plain, gzip or zstd) and tags its images.
pub fn load_path(store: &Store, path: &Path) -> Result<Vec<Loaded>, ArchiveError> {
    let _lease = store.lease()?;
    let mut file = File::open(path).map_err(ArchiveError::io("open", path))?;
    let head = read_head(&mut file, MAGIC_LEN).map_err(ArchiveError::io("read", path))?;
    refuse_unsupported_compression(&head)?;
    file.seek(SeekFrom::Start(0))
        .map_err(ArchiveError::io("read", path))?;
    if !is_compressed(&head) {
        return load_file(store, &file);
    }
    let spooled = spool(store, file)?;
    load_file(store, &spooled)
}

/// Loads an archive read from a stream (plain, gzip or zstd) and tags its images.
pub fn load_reader(store: &Store, reader: impl Read) -> Result<Vec<Loaded>, ArchiveError> {
    let _lease = store.lease()?;
    let spooled = spool(store, reader)?;
    load_file(store, &spooled)
}

/// Copies `reader`, decompressed, into an anonymous file in the store's `tmp/`.
fn spool(store: &Store, mut reader: impl Read) -> Result<File, ArchiveError> {
    let tmp_dir = store.tmp_dir();
    let head = read_head(&mut reader, MAGIC_LEN).map_err(ArchiveError::io("read", "the input"))?;
    refuse_unsupported_compression(&head)?;
    let input = BufReader::with_capacity(READ_BUFFER, io::Cursor::new(head).chain(reader));
    let mut plain = decompress(input).map_err(ArchiveError::io("read", "the input"))?;
    let mut file = tempfile::tempfile_in(&tmp_dir)
        .map_err(ArchiveError::io("create a temporary file in", &tmp_dir))?;
    io::copy(&mut plain, &mut file).map_err(ArchiveError::io("read", "the input"))?;
    file.seek(SeekFrom::Start(0))
        .map_err(ArchiveError::io("read", &tmp_dir))?;
    Ok(file)
}

/// What a path in the archive is.
#[derive(Debug, Clone)]
enum Entry {
    /// A regular file: where its data starts, and its size.
    File { offset: u64, size: u64 },
    /// A symbolic or hard link, as the (cleaned) archive path it points at.
    Link(String),
    /// Anything else (directories, devices …).
    Other,
}

/// An indexed archive.
struct Archive<'a> {
    file: &'a File,
    entries: HashMap<String, Entry>,
}

/// A byte range of the archive file, read by offset.
struct Slice<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Cleans a path lexically: no empty or `.` components, `..` resolved, no leading `/`.
fn clean(path: &str) -> Result<String, ArchiveError> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ArchiveError::PathEscapes {
                        path: path.to_owned(),
                    });
                }
            }
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

impl<'a> Archive<'a> {
    /// Indexes every entry of the tar in `file`.
    fn read(file: &'a File) -> Result<Self, ArchiveError> {
        let io_err = |e| ArchiveError::io("read", "the archive")(e);
        let mut entries = HashMap::new();
        let mut tar = tar::Archive::new(file);
        for entry in tar.entries_with_seek().map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            // Paths are looked up by the names JSON gives, which are UTF-8: others can never
            // be referred to.
            let Ok(raw) = String::from_utf8(entry.path_bytes().into_owned()) else {
                continue;
            };
            let path = clean(&raw)?;
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Entry::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .and_then(|t| String::from_utf8(t.into_owned()).ok())
                        .unwrap_or_default();
                    // A symlink is relative to its directory; a hard link names an archive
                    // path. Either way an absolute target is taken from the archive's root.
                    let joined = if header.entry_type() == tar::EntryType::Symlink
                        && !target.starts_with('/')
                    {
                        match path.rsplit_once('/') {
                            Some((dir, _)) => format!("{dir}/{target}"),
                            None => target,
                        }
                    } else {
                        target
                    };
                    Entry::Link(clean(&joined)?)
                }
                _ => Entry::Other,
            };
            entries.insert(path, kind);
        }
        Ok(Self { file, entries })
    }

    /// The data of the regular file at `path`, following links.
    fn open(&self, path: &str) -> Result<Slice<'a>, ArchiveError> {
        let mut current = clean(path)?;
        for _ in 0..=MAX_LINKS {
            match self.entries.get(&current) {
                None => {
                    return Err(ArchiveError::MissingEntry {
                        path: path.to_owned(),
                    });
                }
                Some(Entry::File { offset, size }) => {
                    return Ok(Slice {
                        file: self.file,
                        pos: *offset,
                        end: offset + size,
                    });
                }
                Some(Entry::Link(target)) => current = target.clone(),
                Some(Entry::Other) => {
                    return Err(ArchiveError::NotAFile {
                        path: path.to_owned(),
                    });
                }
            }
        }
        Err(ArchiveError::LinkLoop {
            path: path.to_owned(),
        })
    }

    /// Whether `path` names anything.
    fn has(&self, path: &str) -> bool {
        clean(path).is_ok_and(|p| self.entries.contains_key(&p))
    }

    /// Reads a small file whole, refusing one over `limit` bytes.
    fn read_small(&self, path: &str, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        let slice = self.open(path)?;
        if slice.end - slice.pos > limit {
            return Err(ArchiveError::TooLarge {
                path: path.to_owned(),
                limit,
            });
        }
        let mut bytes = Vec::new();
        { slice }
            .read_to_end(&mut bytes)
            .map_err(ArchiveError::io("read", "the archive"))?;
        Ok(bytes)
    }
}

/// Indexes the archive in `file` and loads it.
fn load_file(store: &Store, file: &File) -> Result<Vec<Loaded>, ArchiveError> {
    let archive = Archive::read(file)?;
    let docker = if archive.has("manifest.json") {
        let bytes = archive.read_small("manifest.json", MAX_CONFIG_BYTES)?;
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(&bytes).map_err(|source| ArchiveError::Json {
                path: "manifest.json".to_owned(),
                source,
            })?;
        Some(entries)
    } else {
        None
    };
    if archive.has("index.json") {
        load_oci(store, &archive, docker.as_deref())
    } else if let Some(docker) = docker {
        load_docker(store, &archive, &docker)
    } else {
        Err(ArchiveError::UnknownFormat)
    }
}

/// One `manifest.json` entry of a docker archive.
#[derive(Debug, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Parses the names an archive gives an image.
fn parse_names<'s>(
    names: impl IntoIterator<Item = &'s str>,
) -> Result<Vec<Reference>, ArchiveError> {
    names
        .into_iter()
        .map(|name| {
            Reference::parse(name).map_err(|source| ArchiveError::BadName {
                name: name.to_owned(),
                source,
            })
        })
        .collect()
}

fn load_oci(
    store: &Store,
    archive: &Archive<'_>,
    docker: Option<&[DockerEntry]>,
) -> Result<Vec<Loaded>, ArchiveError> {
    if archive.has("oci-layout") {
        #[derive(Deserialize)]
        struct Layout {
            #[serde(rename = "imageLayoutVersion")]
            version: String,
        }
        let bytes = archive.read_small("oci-layout", 4096)?;
        let layout: Layout =
            serde_json::from_slice(&bytes).map_err(|source| ArchiveError::Json {
                path: "oci-layout".to_owned(),
                source,
            })?;
        if layout.version != LAYOUT_VERSION {
            return Err(ArchiveError::LayoutVersion {
                found: layout.version,
            });
        }
    }
    let index_bytes = archive.read_small("index.json", MAX_MANIFEST_BYTES)?;
    let index = image::parse_index(&index_bytes, None)?;

    let mut plan: Vec<(Descriptor, Vec<Reference>)> = Vec::new();
    for desc in index.manifests() {
        let media_type = desc.media_type();
        if !image::is_manifest_media_type(media_type) && !image::is_index_media_type(media_type) {
            return Err(ImageError::NotAManifest {
                media_type: media_type.to_string(),
            }
            .into());
        }
        let names = oci_names(archive, desc, docker)?;
        if names.is_empty() {
            return Err(ArchiveError::Unnamed {
                digest: image::from_oci_digest(desc.digest())?,
            });
        }
        let mut entry = desc.clone();
        if let Some(mut annotations) = entry.annotations().clone() {
            annotations.remove(ANNOTATION_REF_NAME);
            annotations.remove(ANNOTATION_CONTAINERD_NAME);
            entry.set_annotations((!annotations.is_empty()).then_some(annotations));
        }
        plan.push((entry, names));
    }

    let mut done = HashSet::new();
    for (desc, _) in &plan {
        import_closure(store, archive, desc, &mut done, 0)?;
    }
    tag_all(store, plan)
}

/// The names of an OCI archive's index entry: `io.containerd.image.name`; else
/// `org.opencontainers.image.ref.name` when it is a full name (a bare word there is a tag,
/// per the image-layout spec, and names nothing by itself); else the `RepoTags` a Docker ≥ 25
/// `manifest.json` gives the same config.
fn oci_names(
    archive: &Archive<'_>,
    desc: &Descriptor,
    docker: Option<&[DockerEntry]>,
) -> Result<Vec<Reference>, ArchiveError> {
    let annotations = desc.annotations().clone().unwrap_or_default();
    if let Some(name) = annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return parse_names([name.as_str()]);
    }
    if let Some(name) = annotations.get(ANNOTATION_REF_NAME)
        && name.contains(['/', ':'])
    {
        return parse_names([name.as_str()]);
    }
    let Some(docker) = docker else {
        return Ok(Vec::new());
    };
    if !image::is_manifest_media_type(desc.media_type()) {
        return Ok(Vec::new());
    }
    let digest = image::from_oci_digest(desc.digest())?;
    let bytes = archive.read_small(&blob_path(&digest), MAX_MANIFEST_BYTES)?;
    let manifest = image::parse_manifest(&bytes, Some(desc.media_type()))?;
    let config = image::from_oci_digest(manifest.config().digest())?;
    let mut names = Vec::new();
    for entry in docker {
        if clean(&entry.config)? == blob_path(&config) {
            let tags = entry.repo_tags.iter().flatten().map(String::as_str);
            names.extend(parse_names(tags)?);
        }
    }
    Ok(names)
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Copies `desc` and everything it references from the archive into the store, verified.
fn import_closure(
    store: &Store,
    archive: &Archive<'_>,
    desc: &Descriptor,
    done: &mut HashSet<Digest>,
    depth: usize,
) -> Result<(), ArchiveError> {
    let digest = image::from_oci_digest(desc.digest())?;
    if !done.insert(digest.clone()) {
        return Ok(());
    }
    let media_type = desc.media_type();
    let document =
        image::is_manifest_media_type(media_type) || image::is_index_media_type(media_type);
    if !document {
        if store.has_blob(&digest) {
            return Ok(());
        }
        let path = blob_path(&digest);
        if is_non_distributable(media_type) && !archive.has(&path) {
            return Ok(());
        }
        return copy_blob(store, archive, &path, &digest, desc.size());
    }

    let path = blob_path(&digest);
    let bytes = if store.has_blob(&digest) {
        store.read_blob(&digest, MAX_MANIFEST_BYTES)?
    } else {
        let bytes = archive.read_small(&path, MAX_MANIFEST_BYTES)?;
        verify_bytes(&path, &bytes, &digest, desc.size())?;
        store.put_blob(&bytes)?;
        bytes
    };
    match image::parse_document(&bytes, Some(media_type))? {
        Document::Manifest(manifest) => {
            import_closure(store, archive, manifest.config(), done, depth)?;
            for layer in manifest.layers() {
                import_closure(store, archive, layer, done, depth)?;
            }
        }
        Document::Index(index) if depth < MAX_INDEX_DEPTH => {
            for child in index.manifests() {
                import_closure(store, archive, child, done, depth + 1)?;
            }
        }
        Document::Index(_) => {}
    }
    Ok(())
}

/// Checks in-memory bytes against a descriptor's digest and size.
fn verify_bytes(path: &str, bytes: &[u8], digest: &Digest, size: u64) -> Result<(), ArchiveError> {
    let mismatch = |source| ArchiveError::BlobMismatch {
        path: path.to_owned(),
        source,
    };
    if bytes.len() as u64 != size {
        return Err(mismatch(StoreError::SizeMismatch {
            digest: digest.clone(),
            expected: size,
            found: bytes.len() as u64,
        }));
    }
    let found = Digest::of(bytes);
    if &found != digest {
        return Err(mismatch(StoreError::DigestMismatch {
            expected: digest.clone(),
            found,
        }));
    }
    Ok(())
}

/// Streams an archive file into the store as the blob `digest`, which it must match.
fn copy_blob(
    store: &Store,
    archive: &Archive<'_>,
    path: &str,
    digest: &Digest,
    size: u64,
) -> Result<(), ArchiveError> {
    let mut data = archive.open(path)?;
    let mut writer = store.blob_writer()?;
    io::copy(&mut data, &mut writer).map_err(ArchiveError::io("copy", path))?;
    writer
        .commit_verified(digest, size)
        .map_err(|source| match source {
            e @ (StoreError::SizeMismatch { .. } | StoreError::DigestMismatch { .. }) => {
                ArchiveError::BlobMismatch {
                    path: path.to_owned(),
                    source: e,
                }
            }
            other => other.into(),
        })
}

fn load_docker(
    store: &Store,
    archive: &Archive<'_>,
    docker: &[DockerEntry],
) -> Result<Vec<Loaded>, ArchiveError> {
    // Everything that can be checked without storing anything: names, configs, layer counts.
    struct Image<'e> {
        entry: &'e DockerEntry,
        config_bytes: Vec<u8>,
        config: ImageConfig,
        names: Vec<Reference>,
    }
    let mut images = Vec::new();
    for entry in docker {
        let config_bytes = archive.read_small(&entry.config, MAX_CONFIG_BYTES)?;
        let config = ImageConfig::from_json(&config_bytes)?;
        let names = parse_names(entry.repo_tags.iter().flatten().map(String::as_str))?;
        if names.is_empty() {
            return Err(ArchiveError::Unnamed {
                digest: Digest::of(&config_bytes),
            });
        }
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ArchiveError::LayerCount {
                config: entry.config.clone(),
                layers: entry.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        images.push(Image {
            entry,
            config_bytes,
            config,
            names,
        });
    }

    let mut layers_by_diff_id: HashMap<Digest, Descriptor> = HashMap::new();
    let mut plan = Vec::new();
    for image in images {
        let mut layers = Vec::new();
        for (path, diff_id) in image.entry.layers.iter().zip(&image.config.rootfs.diff_ids) {
            if let Some(desc) = layers_by_diff_id.get(diff_id) {
                layers.push(desc.clone());
                continue;
            }
            let desc = import_docker_layer(store, archive, path, diff_id)?;
            layers_by_diff_id.insert(diff_id.clone(), desc.clone());
            layers.push(desc);
        }
        // The config is stored byte for byte: its digest is the image ID.
        let (config_digest, config_size) = store.put_blob(&image.config_bytes)?;
        let config_desc = image::descriptor(MediaTypes::Oci.config(), &config_digest, config_size);
        let manifest =
            image::build_manifest(&config_desc, &layers, MediaTypes::Oci, &Default::default())?;
        let (digest, size) = store.put_blob(&canonical_json(&manifest)?)?;
        let mut desc = image::descriptor(MediaTypes::Oci.manifest(), &digest, size);
        desc.set_platform(Some(image.config.platform()));
        plan.push((desc, image.names));
    }
    tag_all(store, plan)
}

/// Recompresses a docker-archive layer into the store and checks its diffID.
fn import_docker_layer(
    store: &Store,
    archive: &Archive<'_>,
    path: &str,
    diff_id: &Digest,
) -> Result<Descriptor, ArchiveError> {
    let data = archive.open(path)?;
    let tar = decompress(BufReader::with_capacity(READ_BUFFER, data))
        .map_err(ArchiveError::io("read", path))?;
    let mut writer = store.blob_writer()?;
    let info = layer_from_tar(tar, Compression::Gzip, &mut writer)?;
    if &info.diff_id != diff_id {
        return Err(ArchiveError::DiffIdMismatch {
            path: path.to_owned(),
            expected: diff_id.clone(),
            found: info.diff_id,
        });
    }
    writer.commit_verified(&info.digest, info.size)?;
    Ok(image::descriptor(
        MediaType::from(info.media_type),
        &info.digest,
        info.size,
    ))
}

/// Tags every image with every name, in order.
fn tag_all(
    store: &Store,
    plan: Vec<(Descriptor, Vec<Reference>)>,
) -> Result<Vec<Loaded>, ArchiveError> {
    let mut loaded = Vec::new();
    for (descriptor, names) in plan {
        for name in names {
            store.tag(&name.to_string(), &descriptor)?;
            loaded.push(Loaded {
                name,
                descriptor: descriptor.clone(),
            });
        }
    }
    Ok(loaded)
}
