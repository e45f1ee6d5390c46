//! `kiln images`: one row per tag, newest image first, in docker's columns and formats.
//!
//! IMAGE ID is the config digest (12 hex digits, all of it with `--no-trunc`); CREATED is the
//! config's `created` relative to now (`N/A` when absent); SIZE is the sum of the image's
//! compressed layer blobs, which kiln knows without reading them (docker shows the unpacked
//! size, which kiln would have to decompress every layer to learn). `--digests` adds the
//! manifest digest, which is what the store holds for a local image.
//!
//! A multi-platform image (a tag on an index) is one row: its ID and CREATED are the host's
//! platform's image (or the first's), its SIZE the layers of all its platforms, and a
//! PLATFORMS column, shown when any row has several, lists them.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use kiln_builder::image::clock;
use kiln_registry::Reference;

use super::lookup::{self, Tagged};
use super::{Global, human};

/// `kiln images` arguments (docker images' names).
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show digests.
    #[arg(long)]
    digests: bool,
    /// Don't truncate image IDs.
    #[arg(long)]
    no_trunc: bool,
    /// Only images of this repository (and tag).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    repository: Option<String>,
}

/// One row before formatting.
struct Row {
    repository: String,
    tag: String,
    digest: String,
    id: String,
    created: Option<i64>,
    size: u64,
    /// The platforms of an index (empty for a single image).
    platforms: Vec<String>,
}

/// Runs `kiln images`.
pub fn run(global: &Global, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let filter = args.repository.as_deref().map(Filter::parse).transpose()?;
    let store = global.store()?;
    let mut rows = Vec::new();
    for tagged in lookup::tags(&store)? {
        if filter.as_ref().is_some_and(|f| !f.matches(&tagged)) {
            continue;
        }
        let image = match lookup::describe(&store, &tagged.descriptor) {
            Ok(image) => image,
            Err(err) => {
                // One broken image must not hide the others.
                eprintln!("warning: cannot read {}: {err:#}", tagged.familiar());
                continue;
            }
        };
        let (repository, tag) = tagged.repository_and_tag();
        let (platforms, size) = match platforms_and_size(&store, &tagged) {
            Ok(Some(found)) => found,
            Ok(None) => (Vec::new(), image.size()),
            Err(err) => {
                eprintln!("warning: cannot read {}: {err:#}", tagged.familiar());
                continue;
            }
        };
        rows.push(Row {
            repository,
            tag,
            digest: tagged.descriptor.digest().to_string(),
            id: if args.no_trunc {
                image.id.to_string()
            } else {
                lookup::short_id(&image.id).to_owned()
            },
            created: image
                .config
                .created
                .as_deref()
                .and_then(clock::parse_rfc3339),
            size,
            platforms,
        });
    }
    // Newest first, as docker sorts; ties by name so the order is stable.
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)))
    });

    if args.quiet {
        for row in &rows {
            println!("{}", row.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let with_platforms = rows.iter().any(|r| !r.platforms.is_empty());
    let mut table = vec![header(args.digests, with_platforms)];
    for row in rows {
        let created = match row.created {
            Some(t) => format!(
                "{} ago",
                human::duration(now.saturating_sub(t).max(0) as u64)
            ),
            None => "N/A".to_owned(),
        };
        let mut cells = vec![row.repository, row.tag];
        if args.digests {
            cells.push(row.digest);
        }
        cells.extend([row.id, created, human::size(row.size)]);
        if with_platforms {
            cells.push(row.platforms.join(","));
        }
        table.push(cells);
    }
    print!("{}", human::table(&table));
    Ok(ExitCode::SUCCESS)
}

fn header(digests: bool, platforms: bool) -> Vec<String> {
    let mut h = vec!["REPOSITORY", "TAG"];
    if digests {
        h.push("DIGEST");
    }
    h.extend(["IMAGE ID", "CREATED", "SIZE"]);
    if platforms {
        h.push("PLATFORMS");
    }
    h.into_iter().map(str::to_owned).collect()
}

/// For a tag on an index: its platforms, and the size of the layers of all of them (each
/// layer once). `None` for a single image.
fn platforms_and_size(
    store: &kiln_builder::store::Store,
    tagged: &Tagged,
) -> anyhow::Result<Option<(Vec<String>, u64)>> {
    if !kiln_builder::image::is_index_media_type(tagged.descriptor.media_type()) {
        return Ok(None);
    }
    let mut platforms = Vec::new();
    let mut layers = std::collections::BTreeMap::new();
    for (platform, desc) in store.platform_manifests(&tagged.descriptor)? {
        platforms.push(platform.to_string());
        for layer in store.read_manifest(&desc)?.layers() {
            layers.insert(layer.digest().to_string(), layer.size());
        }
    }
    Ok(Some((platforms, layers.values().sum())))
}

/// `kiln images busybox` (every tag of the repository) or `busybox:1.36` (that tag).
struct Filter {
    reference: Reference,
    tag_given: bool,
}

impl Filter {
    fn parse(arg: &str) -> anyhow::Result<Self> {
        let last = arg.rsplit('/').next().unwrap_or(arg);
        Ok(Self {
            reference: lookup::parse_name(arg)?,
            tag_given: last.contains(':'),
        })
    }

    fn matches(&self, tagged: &Tagged) -> bool {
        let Some(r) = &tagged.reference else {
            return false;
        };
        r.registry() == self.reference.registry()
            && r.repository() == self.reference.repository()
            && (!self.tag_given || r.tag() == self.reference.tag())
    }
}
