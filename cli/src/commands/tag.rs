//! `kiln tag SOURCE TARGET`: point a new name at an image, as `docker tag`. SOURCE is a name or
//! an image ID; TARGET is normalised (`busybox` → `docker.io/library/busybox:latest`) and
//! replaces whatever that name pointed at. Prints nothing, as docker does.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;

use super::{Global, lookup};

/// `kiln tag` arguments.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image to tag: a name or an image ID.
    #[arg(value_name = "SOURCE")]
    source: String,
    /// The new name.
    #[arg(value_name = "TARGET[:TAG]")]
    target: String,
}

/// Runs `kiln tag`.
pub fn run(global: &Global, args: TagArgs) -> anyhow::Result<ExitCode> {
    let target = lookup::parse_name(&args.target)?;
    if target.digest().is_some() {
        bail!(
            "refusing to create a tag with a digest reference: {}",
            args.target
        );
    }
    let store = global.store()?;
    let Some(found) = lookup::find(&store, &args.source)? else {
        return Err(lookup::no_such_image(&args.source));
    };
    store
        .tag(&target.to_string(), &found.first_tag().descriptor)
        .with_context(|| format!("tagging {target}"))?;
    Ok(ExitCode::SUCCESS)
}
