//! The library's entry point for a build: Dockerfile text, a context and options in; an image
//! in the store, tagged, out. The `kiln` binary only turns flags into a [`Request`] and
//! [`BuildOptions`], renders [`Event`]s, warnings and [`Failure`]s, and writes outputs.
//!
//! Two calls, so that `kiln build --check` can stop half-way:
//! - [`prepare`] parses and plans the Dockerfile, reads the `.dockerignore` that applies once
//!   (its patterns are checked even when nothing is built), and refuses a RUN in a stage whose
//!   platform the host can run neither natively nor under QEMU ([`crate::exec::binfmt`]),
//!   before anything is pulled or run;
//! - [`build`] runs the prepared plan with the solver and tags the image with every name while
//!   it still holds a lease on the store, so no concurrent prune collects the new blobs between
//!   the last write and the tag. A build that fails tags nothing.
//!
//! A build of several platforms prepares one plan per platform (each its own [`Request`], the
//! platform in [`PlanOptions::platform`]) and [`build_index`] runs them together
//! ([`solve::build_all`]), writes an OCI image index over the platforms' manifests and tags
//! that.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::image::Descriptor;

use crate::check::Diagnostic;
use crate::context::{ContextError, load_ignore};
use crate::dockerfile::Dockerfile;
use crate::dockerfile::instructions::Instruction;
use crate::dockerfile::{Location, parse};
use crate::exec::binfmt;
use crate::ignore::{IgnoreError, PatternMatcher};
use crate::plan::{Plan, PlanOptions, Platform};
use crate::solve::{self, BaseImages, BuildError, BuildOptions, Built, Event, PlatformPlan};
use crate::store::{Store, StoreError};

/// What to build.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The Dockerfile's text.
    pub dockerfile: &'a str,
    /// The Dockerfile's path: a `<name>.dockerignore` beside it wins over the context's.
    pub dockerfile_path: &'a Path,
    /// The build context directory.
    pub context: &'a Path,
    /// Build args, target and platform.
    pub plan: PlanOptions,
}

/// A Dockerfile parsed and planned, with the context's ignore patterns: ready to build.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The parsed Dockerfile (the build checks read it).
    pub file: Dockerfile,
    /// The stages the target needs.
    pub plan: Plan,
    /// Planner warnings that are not build checks (see [`crate::check`] for those).
    pub warnings: Vec<Diagnostic>,
    /// The `.dockerignore` patterns that filter the context.
    pub ignore: Vec<String>,
    /// The ignore file they come from, if there is one.
    pub ignore_file: Option<std::path::PathBuf>,
}

/// Why a build did not produce a tagged image.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The Dockerfile does not parse, does not plan, or asks what kiln cannot do.
    #[error("{message}")]
    Dockerfile {
        /// What is wrong.
        message: String,
        /// Where.
        location: Location,
    },
    /// The ignore file cannot be read.
    #[error("reading .dockerignore")]
    ReadIgnore(#[source] ContextError),
    /// The ignore file has a pattern that does not compile.
    #[error("{file}")]
    Ignore {
        /// The ignore file.
        file: String,
        /// Why.
        #[source]
        source: IgnoreError,
    },
    /// A step failed, or the build was cancelled.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// One platform of a multi-platform build failed (the others were stopped).
    #[error("building for {platform}")]
    Platform {
        /// The platform.
        platform: Platform,
        /// Why.
        #[source]
        source: Box<BuildError>,
    },
    /// The platforms' images were built but the index over them could not be written.
    #[error("writing the image index")]
    Index(#[source] StoreError),
    /// The image was built but a name could not be given to it.
    #[error("tagging {name}")]
    Tag {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// Parses and plans `request`, and reads the ignore file that applies (see the module doc).
pub fn prepare(request: &Request<'_>) -> Result<Prepared, Failure> {
    let dockerfile = |message: String, location| Failure::Dockerfile { message, location };
    let file = parse(request.dockerfile).map_err(|e| dockerfile(e.message, e.location))?;
    let plan =
        Plan::new(&file, request.plan.clone()).map_err(|e| dockerfile(e.message, e.location))?;
    let warnings = plan.warnings.clone();
    let (ignore, ignore_file) =
        load_ignore(request.context, request.dockerfile_path).map_err(Failure::ReadIgnore)?;
    if let Err(source) = PatternMatcher::new(&ignore) {
        let file = ignore_file
            .clone()
            .map_or_else(|| ".dockerignore".to_owned(), |f| f.display().to_string());
        return Err(Failure::Ignore { file, source });
    }
    for (index, location) in first_runs(&plan) {
        binfmt::check(&plan.stage_platform(index))
            .map_err(|e| dockerfile(e.to_string(), location))?;
    }
    Ok(Prepared {
        file,
        plan,
        warnings,
        ignore,
        ignore_file,
    })
}

/// Builds `prepared` into `store` and tags the image with every name in `tags`.
pub fn build(
    prepared: &Prepared,
    store: &Store,
    images: &dyn BaseImages,
    options: &BuildOptions<'_>,
    tags: &[String],
    events: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Built, Failure> {
    let _lease = store.lease().map_err(solve::step_err(
        Location::default(),
        "taking a lease on the store",
    ))?;
    let built = solve::build(
        &prepared.plan,
        &prepared.ignore,
        store,
        images,
        options,
        events,
    )?;
    for name in tags {
        store
            .tag(name, &built.manifest)
            .map_err(|source| Failure::Tag {
                name: name.clone(),
                source,
            })?;
    }
    Ok(built)
}

/// One platform of a multi-platform build.
#[derive(Debug, Clone, Copy)]
pub struct PlatformBuild<'a> {
    /// Its prepared plan (built for `prepared.plan.options.platform`).
    pub prepared: &'a Prepared,
    /// Its manifest's annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// The annotations of its manifest's entry in the index.
    pub descriptor_annotations: &'a BTreeMap<String, String>,
}

/// A multi-platform image, written and tagged.
#[derive(Debug)]
pub struct BuiltIndex {
    /// The image index.
    pub index: Descriptor,
    /// Each platform's image, in the order given.
    pub images: Vec<Built>,
}

/// Builds every platform of `platforms` into `store` together (see the module doc), writes an
/// image index over their manifests with `index_annotations`, and tags it with every name in
/// `tags`. The platforms share the ignore patterns of the first.
pub fn build_index(
    platforms: &[PlatformBuild<'_>],
    index_annotations: &BTreeMap<String, String>,
    store: &Store,
    images: &dyn BaseImages,
    options: &BuildOptions<'_>,
    tags: &[String],
    events: &(dyn Fn(Event<'_>) + Sync),
) -> Result<BuiltIndex, Failure> {
    let _lease = store.lease().map_err(solve::step_err(
        Location::default(),
        "taking a lease on the store",
    ))?;
    let targets: Vec<PlatformPlan<'_>> = platforms
        .iter()
        .map(|p| PlatformPlan {
            plan: &p.prepared.plan,
            annotations: p.annotations,
        })
        .collect();
    let ignore = platforms.first().map_or(&[][..], |p| &p.prepared.ignore);
    let built =
        solve::build_all(&targets, ignore, store, images, options, events).map_err(|e| match e
            .platform
        {
            Some(platform) => Failure::Platform {
                platform,
                source: e.error,
            },
            None => Failure::Build(*e.error),
        })?;
    let manifests: Vec<Descriptor> = built
        .iter()
        .zip(platforms)
        .map(|(image, platform)| {
            let mut desc = image.manifest.clone();
            if !platform.descriptor_annotations.is_empty() {
                let annotations = platform.descriptor_annotations.clone().into_iter();
                desc.set_annotations(Some(annotations.collect()));
            }
            desc
        })
        .collect();
    let index = store
        .write_image_index(&manifests, crate::image::MediaTypes::Oci, index_annotations)
        .map_err(Failure::Index)?;
    for name in tags {
        store.tag(name, &index).map_err(|source| Failure::Tag {
            name: name.clone(),
            source,
        })?;
    }
    Ok(BuiltIndex {
        index,
        images: built,
    })
}

/// The first RUN of each stage the target needs that has one, by stage, in build order.
fn first_runs(plan: &Plan) -> Vec<(usize, Location)> {
    plan.order
        .iter()
        .filter_map(|&i| {
            let step = plan.stages[i]
                .steps
                .iter()
                .find(|step| matches!(step.instruction, Instruction::Run(_)))?;
            Some((i, step.location))
        })
        .collect()
}
