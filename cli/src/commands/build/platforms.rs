//! `kiln build --platform A,B,…`: what differs when a build makes several platforms' images.
//!
//! Each platform gets its own plan (the `TARGET*` ARGs differ), prepared and checked before
//! anything runs, so a missing QEMU emulator for any platform stops the build first. The
//! builder then builds them together into one image index ([`build_index`]): that is what the
//! `-t` names point at, what `--push` pushes and what the outputs write. With one platform the
//! build is exactly the single-image one (a manifest, no index), as with buildx.

use std::collections::BTreeMap;

use kiln_builder::build::{self, BuiltIndex, Failure, PlatformBuild, Prepared, Request};
use kiln_builder::image::annotation::index_annotations;
use kiln_builder::oci_spec::image::Descriptor;
use kiln_builder::plan::Platform;
use kiln_builder::solve::{BaseImages, BuildOptions, Built, Event};
use kiln_builder::store::Store;

/// What a build made.
pub(super) enum Made {
    /// One platform's image.
    Image(Box<Built>),
    /// An index over several.
    Index(Box<MadeIndex>),
}

/// A multi-platform build's index and images.
pub(super) struct MadeIndex {
    /// The index and the images.
    pub index: BuiltIndex,
    /// The images merged for `--cache-to`: the steps and cache mounts of all, and the index
    /// as the manifest (a `mode=min` export takes every platform's layers).
    pub merged: Built,
}

impl Made {
    /// The manifest or index the names point at.
    pub(super) fn root(&self) -> &Descriptor {
        match self {
            Made::Image(built) => &built.manifest,
            Made::Index(made) => &made.index.index,
        }
    }

    /// What `--cache-to` exports from.
    pub(super) fn built(&self) -> &Built {
        match self {
            Made::Image(built) => built,
            Made::Index(made) => &made.merged,
        }
    }
}

/// Prepares `request` once per platform, in order (the request's own platform is ignored).
pub(super) fn prepare_all(
    request: &Request<'_>,
    platforms: &[Platform],
) -> Result<Vec<Prepared>, Failure> {
    platforms
        .iter()
        .map(|platform| {
            let mut request = request.clone();
            request.plan.platform = platform.clone();
            build::prepare(&request)
        })
        .collect()
}

/// Builds the `prepared` platforms into one index with the `--annotation`s `specs`, and tags it
/// with `tags`.
pub(super) fn build_index(
    prepared: &[&Prepared],
    specs: &[String],
    store: &Store,
    images: &dyn BaseImages,
    options: &BuildOptions<'_>,
    tags: &[String],
    events: &(dyn Fn(Event<'_>) + Sync),
) -> anyhow::Result<Result<Made, Failure>> {
    let platforms: Vec<Platform> = prepared
        .iter()
        .map(|p| p.plan.options.platform.clone())
        .collect();
    let annotations = index_annotations(specs, &platforms)?;
    let builds: Vec<PlatformBuild<'_>> = prepared
        .iter()
        .zip(&annotations.manifests)
        .zip(&annotations.descriptors)
        .map(|((&prepared, manifest), descriptor)| PlatformBuild {
            prepared,
            annotations: manifest,
            descriptor_annotations: descriptor,
        })
        .collect();
    let built = build::build_index(
        &builds,
        &annotations.index,
        store,
        images,
        options,
        tags,
        events,
    );
    Ok(built.map(|index| {
        let mut steps = BTreeMap::new();
        let mut cache_mounts = BTreeMap::new();
        for image in &index.images {
            steps.extend(image.steps.clone());
            cache_mounts.extend(image.cache_mounts.clone());
        }
        let merged = Built {
            manifest: index.index.clone(),
            config: index.images[0].config.clone(),
            steps,
            cache_mounts,
        };
        Made::Index(Box::new(MadeIndex { index, merged }))
    }))
}
