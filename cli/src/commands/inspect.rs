//! `kiln inspect`: images as a JSON array in `docker inspect`'s shape and order, pretty-printed
//! with docker's four-space indent.
//!
//! `Id` is the config digest; `RepoTags` every tag of that image; `RepoDigests` is empty (a
//! local image has no registry digest); `Size` is the sum of the compressed layer blobs (see
//! `kiln images`); `Descriptor` is the image manifest's, as Docker ≥ 26 with the containerd
//! store shows it. Images not found are reported after the array, and the exit code is 1.

use std::process::ExitCode;

use clap::Args;
use kiln_builder::store::Store;
use serde_json::{Value, json};

use super::Global;
use super::lookup::{self, Image, Target};

/// `kiln inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Names or image IDs.
    #[arg(value_name = "NAME|ID", required = true)]
    images: Vec<String>,
}

/// Runs `kiln inspect`.
pub fn run(global: &Global, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let store = global.store()?;
    let mut objects = Vec::new();
    let mut missing = Vec::new();
    for arg in &args.images {
        match lookup::find(&store, arg)? {
            None => missing.push(lookup::no_such_image(arg)),
            Some(target) => {
                let image = lookup::describe(&store, &target.first_tag().descriptor)?;
                objects.push(fields(&store, &target, &image)?);
            }
        }
    }
    print!("{}", render(&objects));
    for err in &missing {
        eprintln!("error: {err}");
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One image's fields, in docker's order.
fn fields(
    store: &Store,
    target: &Target,
    image: &Image,
) -> anyhow::Result<Vec<(&'static str, Value)>> {
    let mut repo_tags = Vec::new();
    for t in lookup::tags(store)? {
        let same = match target {
            Target::Id { tags, .. } => tags.iter().any(|o| o.name == t.name),
            Target::Name(_) => {
                lookup::describe(store, &t.descriptor).is_ok_and(|i| i.id == image.id)
            }
        };
        if same {
            repo_tags.push(t.familiar());
        }
    }
    let config = &image.config;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut out: Vec<(&'static str, Value)> = vec![
        ("Id", json!(image.id.to_string())),
        ("RepoTags", json!(repo_tags)),
        ("RepoDigests", json!([])),
        ("Parent", json!("")),
        ("Comment", json!(text(config.extra.get("comment")))),
        ("Created", json!(config.created.clone().unwrap_or_default())),
        (
            "DockerVersion",
            json!(text(config.extra.get("docker_version"))),
        ),
        ("Author", json!(config.author.clone().unwrap_or_default())),
        ("Config", serde_json::to_value(&config.config)?),
        ("Architecture", json!(config.architecture)),
    ];
    if let Some(variant) = &config.variant {
        out.push(("Variant", json!(variant)));
    }
    out.push(("Os", json!(config.os)));
    if let Some(version) = &config.os_version {
        out.push(("OsVersion", json!(version)));
    }
    let desc = &image.manifest_descriptor;
    out.extend([
        ("Size", json!(image.size())),
        (
            "RootFS",
            json!({"Type": config.rootfs.typ, "Layers": config.rootfs.diff_ids}),
        ),
        (
            "Descriptor",
            json!({
                "mediaType": desc.media_type().to_string(),
                "digest": desc.digest().to_string(),
                "size": desc.size(),
            }),
        ),
    ]);
    Ok(out)
}

/// The array, pretty-printed with four-space indents and each object's keys in the given
/// order (serde_json's own map would sort them).
fn render(objects: &[Vec<(&'static str, Value)>]) -> String {
    if objects.is_empty() {
        return "[]\n".to_owned();
    }
    let mut out = String::from("[\n");
    for (i, fields) in objects.iter().enumerate() {
        out.push_str("    {\n");
        for (j, (key, value)) in fields.iter().enumerate() {
            let comma = if j + 1 < fields.len() { "," } else { "" };
            out.push_str(&format!(
                "        {}: {}{comma}\n",
                json!(key),
                pretty(value, 8)
            ));
        }
        out.push_str(if i + 1 < objects.len() {
            "    },\n"
        } else {
            "    }\n"
        });
    }
    out.push_str("]\n");
    out
}

/// `value` pretty-printed with four-space indents, continuation lines indented by `base`.
/// (serde_json indents by two; JSON text has no raw newlines inside strings, so indentation
/// can be rewritten line by line.)
fn pretty(value: &Value, base: usize) -> String {
    let two = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut out = String::new();
    for (n, line) in two.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        let depth = (line.len() - content.len()) / 2;
        if n > 0 {
            out.push('\n');
            out.push_str(&" ".repeat(base + 4 * depth));
        }
        out.push_str(content);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_docker_inspect() {
        let objects = vec![vec![
            ("Id", json!("sha256:abc")),
            ("RepoDigests", json!([])),
            ("Config", json!({"Cmd": ["/bin/sh"], "Env": []})),
            ("Size", json!(12)),
        ]];
        assert_eq!(
            render(&objects),
            r#"[
    {
        "Id": "sha256:abc",
        "RepoDigests": [],
        "Config": {
            "Cmd": [
                "/bin/sh"
            ],
            "Env": []
        },
        "Size": 12
    }
]
"#
        );
        assert_eq!(render(&[]), "[]\n");
    }
}
