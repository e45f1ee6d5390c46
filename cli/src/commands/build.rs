//! `kiln build`: docker build's arguments. It parses and plans the Dockerfile, then runs the
//! plan (the builder's solver) into the store and tags the image with every `-t`; then writes
//! the `--output`s and, with `--push`, pushes every `-t`. `--call` (see [`super::check`]) stops
//! after planning to run the build checks, outline the target or list the stages; kiln's own
//! `--call=plan` prints the stages and steps the target needs. A build runs the checks first and
//! prints their findings after it. Errors point at their Dockerfile line; a failed step tags
//! nothing.
//!
//! `--platform A,B,…` builds one image per platform into one image index
//! ([`platforms`]); with one platform the image is a manifest, as before.
//!
//! `--cache-from` caches are read before the build (a cache that cannot be read is a warning,
//! never a failure) and offered to the solver; `--cache-to` exports run last, after the
//! outputs and `--push`. A failed export fails the command unless it says
//! `ignore-error=true` (buildx's rule), in which case it is a warning.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_builder::build::{Failure, Prepared, Request};
use kiln_builder::cache_io::{self, CacheExport, CacheImport, ExportTarget, Imports};
use kiln_builder::dockerfile::Location;
use kiln_builder::dockerfile::instructions::{Instruction, KeyValue};
use kiln_builder::exec::{Canceller, NetworkMode};
use kiln_builder::image::clock;
use kiln_builder::layer::Compression;
use kiln_builder::plan::{Base, NamedContext, Plan, PlanOptions, Platform, Scope};
use kiln_builder::solve::{BuildError, BuildOptions, Built, CacheImports, LayerWatcher};
use kiln_builder::store::Store;
use kiln_registry::Reference;

use super::Global;
use super::check::Call;
use crate::diagnostics::Diagnostic;
use crate::progress::{self, Reporter};

mod bases;
mod platforms;
mod precompress;

use bases::Bases;
use platforms::Made;

/// `kiln build` arguments (docker build's names).
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Name and optionally tag the image (`name:tag`); may repeat.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// Set a build-time variable; `KEY` alone takes its value from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Run the build checks and report without building (short for `--call=check`).
    #[arg(long)]
    check: bool,
    /// What to do: `build` (default), `check` (the build checks), `outline` (the target's build
    /// args, secrets and SSH agents), `targets` (the stages), or kiln's own `plan` (the stages
    /// and steps the target needs, expanded).
    #[arg(long, value_name = "CALL", value_enum)]
    call: Option<super::check::Call>,
    /// Print the whole input tree of the cache key of the step at this Dockerfile line (the
    /// instruction, the environment and build-args it sees, its files with their digests, the
    /// key below it), repeatable; `--progress=json` carries it as an `inputs` event.
    #[arg(long, value_name = "LINE")]
    explain: Vec<usize>,
    /// When to pull base images: `missing` (default), `always` (check the registry), `never`.
    #[arg(long, value_name = "POLICY", default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// Add a label to the image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR` (repeatable).
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// Run every step, ignoring the build cache (results are still cached for later builds).
    #[arg(long)]
    no_cache: bool,
    /// How to show progress: `auto` (a live view on a terminal, else plain), `tty`, `plain`,
    /// `json`.
    #[arg(long, value_name = "TYPE", value_enum, default_value = "auto")]
    progress: progress::Mode,
    /// The network RUN steps get unless they say `RUN --network=…`: `host` (default) or `none`.
    #[arg(long, value_name = "MODE", default_value = "host", value_parser = ["host", "none", "default"])]
    network: String,
    /// What `FROM NAME` and `--from=NAME` mean instead, stage names included:
    /// `NAME=docker-image://REF`, or `NAME=DIR` for `--from` (repeatable).
    #[arg(long = "build-context", value_name = "NAME=docker-image://REF|DIR")]
    build_contexts: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` or `ID` ($SSH_AUTH_SOCK's agent),
    /// `ID=SOCKET`, or `ID=KEY[,KEY…]` (an agent holding those keys) (repeatable).
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY,…]")]
    ssh: Vec<String>,
    /// An annotation of the image manifest: `[manifest[PLATFORM]:]KEY=VALUE` (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// A line for every RUN's /etc/hosts: `HOST:IP` or `HOST=IP` (repeatable).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_hosts: Vec<kiln_builder::exec::ExtraHost>,
    /// The platform to build for, `os/arch[/variant]` (default: the host's), or a
    /// comma-separated list of them: one image per platform under one image index. RUN for
    /// another CPU runs under QEMU user emulation registered in binfmt_misc.
    #[arg(long, value_name = "PLATFORM[,PLATFORM…]")]
    platform: Option<String>,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Write the build's result as JSON to this file (`containerimage.digest`, …).
    #[arg(long, value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// Also write the result: `type=local,dest=DIR` (the root filesystem), `type=tar,dest=FILE`,
    /// `type=oci,dest=FILE`, `type=docker,dest=FILE[,name=NAME]`, `type=image[,name=NAME]
    /// [,push=true]` (more names in the store), `type=registry[,name=NAME]` (pushed); `DIR` alone
    /// is local, `-` a tar on standard output, as is `dest=-` (repeatable).
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH", value_parser = super::output::parse_spec)]
    outputs: Vec<super::output::OutputSpec>,
    /// Use a build cache: `type=registry,ref=REF`, `type=local,src=DIR[,tag=TAG]`, or `REF`
    /// alone; REF is a cache or an image built with an inline cache (repeatable: for each step
    /// the first cache that has it wins).
    #[arg(long = "cache-from", value_name = "type=TYPE,…", value_parser = cache_io::spec::parse_import)]
    cache_from: Vec<CacheImport>,
    /// Export the build cache: `type=registry,ref=REF` or `type=local,dest=DIR[,tag=TAG]`, with
    /// `mode=min|max` (min), `compression=gzip|zstd` (gzip), `ignore-error=true|false` (false),
    /// `cache-mounts=true|false` (false: with true, the RUN --mount=type=cache directories too);
    /// or `type=inline` (into the image's config, for `--push`) (repeatable).
    #[arg(long = "cache-to", value_name = "type=TYPE,…", value_parser = cache_io::spec::parse_export)]
    cache_to: Vec<CacheExport>,
    /// Push every `-t` name to its registry after the build.
    #[arg(long)]
    push: bool,
    #[command(flatten)]
    registry: super::pull::RegistryArgs,
    /// The build context directory.
    #[arg(value_name = "CONTEXT")]
    context: PathBuf,
}

/// Runs `kiln build`.
pub fn run(global: &Global, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("-t {t}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    super::output::check(&args.outputs)?;
    if args.push && tags.is_empty() {
        bail!("--push needs a name to push to: give -t NAME[:TAG]");
    }
    // `-t` names and those of `--output type=image|registry`; `--push` and those outputs push.
    let (named, pushed) = super::output::image_names(&args.outputs, &tags, args.push)?;
    let (file_name, source) = read_dockerfile(&args)?;
    let dockerfile_path = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let located = |message: &str, location: Location| {
        Diagnostic {
            file: &file_name,
            source: &source,
            message,
            location,
        }
        .render()
    };

    let platforms = match &args.platform {
        Some(p) => Platform::parse_list(p).context("--platform")?,
        None => vec![Platform::host()],
    };
    // The checks and `--call` read the first platform's plan.
    let platform = platforms[0].clone();
    let call = match (args.check, args.call) {
        (false, call) => call.unwrap_or(Call::Build),
        (true, None | Some(Call::Check)) => Call::Check,
        (true, Some(other)) => {
            bail!("--check means --call=check: it cannot go with --call={other:?}")
        }
    };
    let build_args = build_args(&args.build_args);
    let checks = super::check::Checks {
        file_name: &file_name,
        source: &source,
        build_args: &build_args,
        platform: &platform,
        target: args.target.as_deref(),
        json: args.progress == progress::Mode::Json,
        quiet: args.registry.quiet(),
        store: global.existing_store(),
        resolved_bases: Default::default(),
    };
    let request = Request {
        dockerfile: &source,
        dockerfile_path: &dockerfile_path,
        context: &args.context,
        plan: PlanOptions {
            build_args: build_args.clone(),
            target: args.target.clone(),
            platform: platform.clone(),
            build_platform: Platform::host(),
            named_contexts: named_contexts(&args.build_contexts)?,
        },
    };
    let mut prepared_all = match platforms::prepare_all(&request, &platforms) {
        Ok(prepared) => prepared,
        Err(Failure::Dockerfile { message, location }) => {
            return Ok(checks.failed(&message, location));
        }
        Err(e) => return Err(e.into()),
    };
    // The first platform's is the one the checks and `--call` read.
    let prepared = prepared_all.remove(0);
    match call {
        Call::Build => {}
        Call::Plan => return print_plan(&prepared.plan, &file_name, &located),
        call => return checks.call(call, &prepared),
    }
    let found = match checks.before_build(&prepared) {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let store = global.store()?.with_fetcher(args.registry.fetcher());
    let mode = if args.registry.quiet() {
        progress::Mode::Quiet
    } else {
        args.progress
    };
    let plans: Vec<&kiln_builder::plan::Plan> = std::iter::once(&prepared)
        .chain(&prepared_all)
        .map(|p| &p.plan)
        .collect();
    let reporter = Reporter::new(mode, &plans);
    // `--no-cache` uses no cache, imported ones included (its results are still exported).
    let imports = if args.no_cache {
        None
    } else {
        import_caches(&args.cache_from, &args.registry, &reporter)?
    };
    // Started agents stop when the build is done.
    let agents = super::ssh::agents(&args.ssh)?;
    // A build that pushes compresses its layers while it runs (build::precompress).
    let precompress = (!pushed.is_empty()).then(|| precompress::Precompressor::start(&store));
    let options = BuildOptions {
        context: &args.context,
        secrets: secrets(&args.secrets)?,
        labels: args
            .labels
            .iter()
            .map(|l| {
                l.split_once('=')
                    .map_or((l.clone(), String::new()), |(k, v)| (k.into(), v.into()))
            })
            .collect(),
        source_date_epoch: clock::source_date_epoch()?.map(|t| t.unix_secs() as i64),
        created: clock::now()?.to_rfc3339(),
        // Layers stay uncompressed in the store; a push compresses them (store::compress).
        compression: Compression::None,
        no_cache: args.no_cache,
        network: if args.network == "none" {
            NetworkMode::None
        } else {
            NetworkMode::Host
        },
        ssh: agents.sockets.clone(),
        // A multi-platform build's are each platform's (platforms::build_index).
        annotations: match platforms.as_slice() {
            [only] => {
                kiln_builder::image::annotation::manifest_annotations(&args.annotations, only)?
            }
            _ => BTreeMap::new(),
        },
        extra_hosts: args.add_hosts.clone(),
        cancel: Canceller::new(),
        imports: imports.as_ref().map(|i| i as &dyn CacheImports),
        dockerfile: Some(&dockerfile_path),
        explain: explained_lines(&args.explain, &prepared.plan, &file_name)?,
        layers: precompress.as_ref().map(|p| p as &dyn LayerWatcher),
        inline_cache: args
            .cache_to
            .iter()
            .any(|spec| spec.target == ExportTarget::Inline),
    };
    let interrupts = crate::interrupt::cancel_on_signals(&options.cancel)?;
    let bases = Bases {
        store: &store,
        pull: &args.pull,
        registry: &args.registry,
        checks: &checks,
        prepared: &prepared,
        pulling: Default::default(),
    };
    let names: Vec<String> = named.iter().map(ToString::to_string).collect();
    let events = |e: kiln_builder::solve::Event<'_>| reporter.event(e);
    let built = if prepared_all.is_empty() {
        kiln_builder::build::build(&prepared, &store, &bases, &options, &names, &events)
            .map(|built| Made::Image(Box::new(built)))
    } else {
        let all: Vec<&Prepared> = std::iter::once(&prepared).chain(&prepared_all).collect();
        platforms::build_index(
            &all,
            &args.annotations,
            &store,
            &bases,
            &options,
            &names,
            &events,
        )?
    };
    reporter.finish();
    if let Some(precompress) = &precompress {
        precompress.finish(built.is_err());
    }
    // A platform's failure is reported as the build's, naming the platform.
    let (failed_platform, built) = match built {
        Err(Failure::Platform { platform, source }) => {
            (Some(platform), Err(Failure::Build(*source)))
        }
        built => (None, built),
    };
    let made = match built {
        Ok(made) => made,
        Err(Failure::Build(e)) => {
            checks.after_build(&found, &prepared, &store);
            let message = match &e {
                BuildError::Cancelled { .. } => {
                    "the build was cancelled; nothing was tagged".into()
                }
                e => build_error_message(e),
            };
            let message = match &failed_platform {
                Some(platform) => format!("{platform}: {message}"),
                None => message,
            };
            if reporter.is_json() {
                let location = e.location();
                let error = serde_json::json!({
                    "type": "error", "file": file_name, "line": location.start_line,
                    "message": message,
                    "output": match &e { BuildError::RunFailed { output, .. } => output.clone(), _ => Vec::new() },
                });
                eprintln!("{error}");
            }
            if let BuildError::Cancelled { .. } = e {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(interrupts.exit_code()));
            }
            eprintln!("error: {}", located(&message, e.location()));
            if let BuildError::RunFailed { output, .. } = &e
                && !output.is_empty()
            {
                eprintln!("the last lines of output:");
                for line in output {
                    eprintln!("  {line}");
                }
            }
            if let BuildError::RunFailed { output, .. } = &e
                && let Some(note) = crate::rootless::note_for_failed_run(output)
            {
                eprintln!("note: {note}");
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let root = made.root().clone();
    let id = kiln_builder::image::from_oci_digest(root.digest())?;
    // What the build prints and `--iidfile` gets: the image ID (the config's digest), or for
    // a multi-platform image the index's digest, as buildx writes it.
    let config_digest = match &made {
        Made::Image(built) => {
            kiln_builder::image::image_id(&store.read_manifest(&built.manifest)?)?
        }
        Made::Index(_) => id.clone(),
    };
    for name in &names {
        reporter.line(&format!("naming to {name}"));
    }
    if let Some(file) = &args.iidfile {
        std::fs::write(file, config_digest.to_string())
            .with_context(|| format!("writing {}", file.display()))?;
    }
    if let Some(file) = &args.metadata_file {
        let mut metadata = serde_json::json!({
            "containerimage.digest": id.to_string(),
            "containerimage.descriptor": &root,
            "image.name": names.join(","),
        });
        if let Made::Image(_) = made {
            metadata["containerimage.config.digest"] = config_digest.to_string().into();
        }
        std::fs::write(file, serde_json::to_vec_pretty(&metadata)?)
            .with_context(|| format!("writing {}", file.display()))?;
    }
    match &made {
        Made::Image(_) => {
            reporter.line(&format!("writing image {config_digest} (manifest {id})"));
        }
        Made::Index(made) => {
            for (image, platform) in made.index.images.iter().zip(&platforms) {
                reporter.line(&format!(
                    "writing image for {platform}: manifest {}",
                    image.manifest.digest()
                ));
            }
            reporter.line(&format!("writing image index {id}"));
        }
    }
    super::output::write_all(&store, &args.outputs, &root, &tags, args.registry.quiet())?;
    for name in &pushed {
        super::push::push_to(&store, &args.registry, None, name, &root, name)?;
    }
    // After the image's outputs and pushes, as buildx does: a failed export fails the command
    // but takes nothing already written back.
    for spec in &args.cache_to {
        export_cache(&store, made.built(), spec, &args.registry, &reporter)?;
    }
    checks.after_build(&found, &prepared, &store);
    if reporter.is_json() {
        let done = serde_json::json!({
            "type": "done", "image": config_digest.to_string(), "manifest": id.to_string(),
        });
        eprintln!("{done}");
    }
    // An output on standard output owns it: the ID would corrupt the stream.
    if !super::output::uses_stdout(&args.outputs) {
        println!("{config_digest}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--explain` lines, each checked to start a step of the target that has a cache key.
fn explained_lines(
    lines: &[usize],
    plan: &kiln_builder::plan::Plan,
    file_name: &str,
) -> anyhow::Result<std::collections::BTreeSet<usize>> {
    use kiln_builder::dockerfile::instructions::Instruction;
    for &line in lines {
        let step = plan
            .order
            .iter()
            .flat_map(|&i| &plan.stages[i].steps)
            .find(|s| s.location.start_line == line);
        match step {
            None => bail!("--explain {line}: no step of the target starts at {file_name}:{line}"),
            Some(step) => match &step.instruction {
                Instruction::Run(_)
                | Instruction::Copy(_)
                | Instruction::Add(_)
                | Instruction::Workdir(_) => {}
                _ => bail!(
                    "--explain {line}: {} has no cache key of its own: it changes the image's \
                     config, which reaches the steps after it through their inputs",
                    step.original.split_whitespace().next().unwrap_or_default()
                ),
            },
        }
    }
    Ok(lines.iter().copied().collect())
}

/// Reads every `--cache-from` cache, in order; one that cannot be read is a warning.
fn import_caches(
    specs: &[CacheImport],
    registry_args: &super::pull::RegistryArgs,
    reporter: &Reporter,
) -> anyhow::Result<Option<Imports>> {
    if specs.is_empty() {
        return Ok(None);
    }
    let mut imports = Imports::new().context("starting the async runtime")?;
    for spec in specs {
        let added = match spec {
            CacheImport::Registry { reference } => registry_args
                .connect_silently(reference.registry())
                .and_then(|registry| Ok(imports.add_registry(registry, reference)?)),
            CacheImport::Local { src, tag } => imports
                .add_local(src.clone(), tag)
                .map_err(anyhow::Error::from),
        };
        let name = match spec {
            CacheImport::Registry { reference } => reference.to_string(),
            CacheImport::Local { src, tag } => format!("{}:{tag}", src.display()),
        };
        match added {
            Ok(n) => reporter.line(&format!("importing cache from {name}: {n} records")),
            // The error names the cache.
            Err(e) => eprintln!("warning: --cache-from not used: {e:#}"),
        }
    }
    Ok(Some(imports))
}

/// Writes one `--cache-to`; a failure fails the build unless the spec says `ignore-error=true`.
fn export_cache(
    store: &Store,
    built: &Built,
    spec: &CacheExport,
    registry_args: &super::pull::RegistryArgs,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let (name, registry) = match &spec.target {
        ExportTarget::Registry { reference } => (
            reference.to_string(),
            Some(
                registry_args
                    .connect(reference.registry())
                    .with_context(|| format!("exporting the cache to {reference}")),
            ),
        ),
        ExportTarget::Local { dest, tag } => (format!("{}:{tag}", dest.display()), None),
        ExportTarget::Inline => {
            let done = cache_io::export(store, built, spec, None)?;
            reporter.line(&format!(
                "inline cache: {} records in the image's config",
                done.records
            ));
            return Ok(());
        }
    };
    let result = match registry {
        Some(Err(e)) => Err(e),
        Some(Ok(registry)) => {
            cache_io::export(store, built, spec, Some(&registry)).map_err(anyhow::Error::from)
        }
        None => cache_io::export(store, built, spec, None).map_err(anyhow::Error::from),
    };
    // The errors name the destination.
    match result {
        Ok(done) => {
            if done.fallback_config {
                reporter.line(&format!(
                    "{name} refused the cache config's media type: it was sent as {}",
                    cache_io::format::FALLBACK_CONFIG_MEDIA_TYPE
                ));
            }
            let mounts = match done.mounts {
                0 => String::new(),
                1 => ", 1 cache mount".to_owned(),
                n => format!(", {n} cache mounts"),
            };
            reporter.line(&format!(
                "exported cache to {name}: {} records{mounts}, {} layers ({} sent, {} already there, {} mounted), manifest {}",
                done.records, done.layers, done.uploaded, done.existed, done.mounted, done.manifest
            ));
            Ok(())
        }
        Err(e) if spec.ignore_error => {
            eprintln!("warning: {e:#} (ignore-error=true: the build goes on)");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The error's message with its causes (the first line of the report).
fn build_error_message(e: &BuildError) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

/// `--build-context NAME=VALUE`: buildx's forms, of which kiln takes `docker-image://REF` and a
/// local directory; the others are refused by name until they are implemented.
fn named_contexts(given: &[String]) -> anyhow::Result<BTreeMap<String, NamedContext>> {
    let mut contexts = BTreeMap::new();
    for spec in given {
        let Some((name, value)) = spec.split_once('=') else {
            bail!("--build-context {spec:?}: give NAME=docker-image://REF or NAME=DIR");
        };
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            bail!("--build-context {spec:?}: the name is empty");
        }
        let context = match value.split_once("://") {
            Some(("docker-image", image)) => NamedContext::Image(
                Reference::parse(image)
                    .with_context(|| format!("--build-context {name}={value}"))?,
            ),
            Some((scheme, _)) => bail!(
                "--build-context {name}={value}: {scheme}:// is not supported by kiln yet \
                 (docker-image://REF and a local directory are)"
            ),
            None => {
                let dir = std::fs::canonicalize(value)
                    .with_context(|| format!("--build-context {name}={value}"))?;
                if !dir.is_dir() {
                    bail!("--build-context {name}={value}: not a directory");
                }
                NamedContext::Local(dir)
            }
        };
        if contexts.insert(name.clone(), context).is_some() {
            bail!("--build-context {name} is given twice");
        }
    }
    Ok(contexts)
}

/// `--secret id=ID,src=FILE` or `id=ID,env=VAR`.
fn secrets(given: &[String]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for spec in given {
        let fields: BTreeMap<&str, &str> =
            spec.split(',').filter_map(|f| f.split_once('=')).collect();
        let Some(id) = fields.get("id") else {
            bail!("--secret {spec:?}: an id=… is required")
        };
        let data = match (
            fields.get("src").or_else(|| fields.get("source")),
            fields.get("env"),
        ) {
            (Some(path), _) => {
                std::fs::read(path).with_context(|| format!("reading secret {id} from {path}"))?
            }
            (None, Some(var)) => std::env::var(var)
                .with_context(|| format!("secret {id}: environment variable {var}"))?
                .into_bytes(),
            (None, None) => bail!("--secret {spec:?}: give src=FILE or env=VAR"),
        };
        out.insert((*id).to_owned(), data);
    }
    Ok(out)
}

/// The Dockerfile's display name and text.
fn read_dockerfile(args: &BuildArgs) -> anyhow::Result<(String, String)> {
    let (name, bytes) = match &args.file {
        Some(path) if path == Path::new("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the Dockerfile from standard input")?;
            ("Dockerfile".to_owned(), bytes)
        }
        path => {
            let path = path
                .clone()
                .unwrap_or_else(|| args.context.join("Dockerfile"));
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            (path.display().to_string(), bytes)
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok((name, text)),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            bail!("{name}:{line}: the Dockerfile is not valid UTF-8")
        }
    }
}

/// `KEY=VALUE`, or `KEY` alone taking its value from the environment (docker's rule: an unset
/// variable leaves the argument out).
fn build_args(given: &[String]) -> BTreeMap<String, String> {
    given
        .iter()
        .filter_map(|arg| match arg.split_once('=') {
            Some((k, v)) => Some((k.to_owned(), v.to_owned())),
            None => std::env::var(arg).ok().map(|v| (arg.clone(), v)),
        })
        .collect()
}

fn print_plan(
    plan: &Plan,
    file_name: &str,
    located: &dyn Fn(&str, Location) -> String,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut scopes: BTreeMap<usize, Scope> = BTreeMap::new();
    let total_steps: usize = plan.order.iter().map(|&i| plan.stages[i].steps.len()).sum();
    writeln!(
        out,
        "{file_name}: target {:?} needs {} of {}, {}",
        plan.stages[plan.target].display_name(),
        plan.order.len(),
        count(plan.stages.len(), "stage"),
        count(total_steps, "step"),
    )?;
    for (n, &index) in plan.order.iter().enumerate() {
        let stage = &plan.stages[index];
        let base = match &stage.base {
            Base::Scratch => "scratch".to_owned(),
            Base::Stage(i) => format!("stage {:?}", plan.stages[*i].display_name()),
            Base::Image(reference) => reference.to_string(),
        };
        writeln!(
            out,
            "[{}/{}] stage {:?} FROM {base} ({file_name}:{})",
            n + 1,
            plan.order.len(),
            stage.display_name(),
            stage.location.start_line
        )?;
        // The base image's own environment is only known once it is pulled; a parent stage's is.
        let base_env = match stage.base {
            Base::Stage(i) => scopes.get(&i).map(|s| s.env().to_vec()).unwrap_or_default(),
            _ => Vec::new(),
        };
        let (steps, scope) = match plan.expand_stage(index, base_env) {
            Ok(done) => done,
            Err(e) => {
                eprintln!("error: {}", located(&e.message, e.location));
                return Ok(ExitCode::FAILURE);
            }
        };
        for (k, expanded) in steps.iter().enumerate() {
            let original = &stage.steps[k];
            writeln!(
                out,
                "  {:>3} {file_name}:{:<4} {}",
                k + 1,
                original.location.start_line,
                one_line(&original.original)
            )?;
            let (before, after) = (
                describe(&original.instruction),
                describe(&expanded.step.instruction),
            );
            if after != before {
                writeln!(out, "      = {after}")?;
            }
        }
        scopes.insert(index, scope);
    }
    for stage in plan
        .stages
        .iter()
        .filter(|s| !plan.order.contains(&s.index))
    {
        writeln!(
            out,
            "skipped: stage {:?} (the target does not need it)",
            stage.display_name()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `1 stage`, `3 stages`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn one_line(text: &str) -> String {
    let text = text.trim();
    let first = text.lines().next().unwrap_or_default();
    if first.len() < text.len() {
        format!("{first} …")
    } else {
        first.to_owned()
    }
}

/// A short rendering of the values an instruction expands, to show what `$VAR`s became.
fn describe(instruction: &Instruction) -> String {
    let pairs = |kvs: &[KeyValue]| {
        kvs.iter()
            .map(|kv| format!("{}={:?}", kv.key, kv.value))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let keyword = instruction.keyword();
    match instruction {
        Instruction::Env(kvs) | Instruction::Label(kvs) => format!("{keyword} {}", pairs(kvs)),
        Instruction::Copy(c) => {
            format!(
                "{keyword} {:?} -> {:?}{}",
                c.files.sources,
                c.files.dest,
                c.from
                    .as_ref()
                    .map(|f| format!(" from {f:?}"))
                    .unwrap_or_default()
            )
        }
        Instruction::Add(a) => format!("{keyword} {:?} -> {:?}", a.files.sources, a.files.dest),
        Instruction::Expose(v) | Instruction::Volume(v) => format!("{keyword} {v:?}"),
        Instruction::User(s) | Instruction::Workdir(s) | Instruction::StopSignal(s) => {
            format!("{keyword} {s:?}")
        }
        Instruction::Run(r) => format!("{keyword} mounts {:?}", r.mounts),
        _ => keyword.to_owned(),
    }
}
