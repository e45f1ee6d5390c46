//! `kiln pull`: fetch an image from a registry into the local store and tag it with its full
//! reference; and what every registry command shares (connection flags, credentials, the
//! runtime, and progress lines on stderr).
//!
//! The registry crate does the transfer; this file glues it to the store: blobs stream into
//! store blob writers, which commit only verified content, and the tag moves last, so an
//! interrupted or failed pull leaves the previous tag and no partial blob behind.
//!
//! A multi-platform image is pulled for each platform asked (`--platform A,B`; a build asks for
//! each platform its stages run for), each chosen as containerd chooses. The tag then points at
//! the platform's manifest when there is one, or at a local index of the platforms the store
//! has of that image: those just pulled, and those the tag had already that the registry's
//! index lists too (so pulling arm64 after amd64 keeps both, and a tag whose image moved on
//! upstream keeps only what was pulled now).

use std::collections::BTreeMap;
use std::io::{self, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_builder::cache_io::Fetcher;
use kiln_builder::image::MediaTypes;
use kiln_builder::oci_spec::image::Descriptor;
use kiln_builder::store::{Fetch, Store};
use kiln_registry::{
    ClientOptions, Credentials, Digest, DockerConfig, Event, Outcome, Platform, Progress,
    Reference, Registry,
};

use super::Global;
use crate::progress;

/// How to reach registries: flags of every command that talks to one.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Allow plain HTTP and unverified TLS for this registry (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// Trust this CA certificate (PEM) for registries, besides the system roots (repeatable).
    #[arg(long = "tls-ca", value_name = "FILE")]
    tls_ca: Vec<PathBuf>,
    /// Present this client certificate (PEM) to registries that ask for one (mutual TLS),
    /// instead of docker's certs.d/HOST/*.cert; needs --tls-key.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Fail a request after this many seconds without any data moving.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,
}

impl ConnectArgs {
    /// The client options these flags give. Docker's per-registry CA directory is
    /// `/etc/docker/certs.d`, or `KILN_CERTS_D` when set.
    pub fn options(&self) -> ClientOptions {
        let mut options = ClientOptions {
            insecure_registries: self.insecure_registries.clone(),
            ca_files: self.tls_ca.clone(),
            client_cert: self.tls_cert.clone().zip(self.tls_key.clone()),
            idle_timeout: Duration::from_secs(self.timeout.max(1)),
            ..ClientOptions::default()
        };
        if let Some(dir) = std::env::var_os("KILN_CERTS_D").filter(|d| !d.is_empty()) {
            options.certs_dir = dir.into();
        }
        options
    }
}

/// Flags of the commands that move images: connection, credentials, verbosity.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Credentials as USER:PASSWORD (default: from the docker config and its helpers).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// Print only the digest (no progress).
    #[arg(short, long)]
    quiet: bool,
}

impl RegistryArgs {
    /// `--creds`, else what the docker config holds for `registry`.
    pub fn credentials(&self, registry: &str) -> anyhow::Result<Option<Credentials>> {
        if let Some(creds) = &self.creds {
            return match Credentials::from_user_pass(creds) {
                Some(c) => Ok(Some(c)),
                None => bail!("--creds must be USER:PASSWORD"),
            };
        }
        let path = DockerConfig::default_path()?;
        let config = DockerConfig::load(&path)?;
        config
            .lookup(registry)
            .with_context(|| format!("looking up credentials for {registry}"))
    }

    /// A connection to `registry` with these flags, reporting progress on stderr.
    pub fn connect(&self, registry: &str) -> anyhow::Result<Registry> {
        self.connect_with(registry, self.connect.options())
    }

    /// [`connect`](Self::connect) with options the command adjusted.
    pub fn connect_with(&self, registry: &str, options: ClientOptions) -> anyhow::Result<Registry> {
        let credentials = self.credentials(registry)?;
        let progress: Arc<dyn Progress> = Arc::new(Lines::new(self.quiet));
        Ok(Registry::new(registry, credentials, &options, progress)?)
    }

    /// A connection to `registry` with these flags that reports no progress (for requests made
    /// while something else reports, such as a build's cache imports).
    pub fn connect_silently(&self, registry: &str) -> anyhow::Result<Registry> {
        let credentials = self.credentials(registry)?;
        let progress: Arc<dyn Progress> = Arc::new(kiln_registry::NoProgress);
        Ok(Registry::new(
            registry,
            credentials,
            &self.connect.options(),
            progress,
        )?)
    }

    /// What fetches the store's remote blobs (a lazy cache import's layers) with these flags'
    /// connections and credentials, quietly.
    pub fn fetcher(&self) -> Arc<dyn Fetch> {
        let (creds, options) = (self.creds.clone(), self.connect.options());
        Arc::new(Fetcher::new(Box::new(move |registry: &str| {
            let credentials = match &creds {
                Some(c) => {
                    Some(Credentials::from_user_pass(c).ok_or("--creds must be USER:PASSWORD")?)
                }
                None => DockerConfig::load(&DockerConfig::default_path()?)?.lookup(registry)?,
            };
            let progress: Arc<dyn Progress> = Arc::new(kiln_registry::NoProgress);
            Ok(Registry::new(registry, credentials, &options, progress)?)
        })))
    }

    /// The client options the flags give.
    pub fn options(&self) -> ClientOptions {
        self.connect.options()
    }

    /// Whether progress is silenced.
    pub fn quiet(&self) -> bool {
        self.quiet
    }
}

/// What fetches remote blobs for commands without registry flags (`kiln run`, `save`): the
/// docker config's credentials and the default connection options.
pub fn default_fetcher() -> Arc<dyn Fetch> {
    RegistryArgs {
        connect: ConnectArgs {
            insecure_registries: Vec::new(),
            tls_ca: Vec::new(),
            tls_cert: None,
            tls_key: None,
            timeout: 60,
        },
        creds: None,
        quiet: true,
    }
    .fetcher()
}

/// The async runtime registry commands run on: two workers, enough to overlap network and disk.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Progress on stderr: one line per finished blob, retry and resumption, and on a terminal a
/// bar of the bytes transferred. During a build's live view (a base image pulled), the lines go
/// above the view and the bytes and rate are a status line in it: a bar of our own would draw
/// over the view.
#[derive(Debug)]
struct Lines {
    quiet: bool,
    /// The byte bar and each blob's bytes so far (terminal only).
    bytes: Option<(ProgressBar, Mutex<BTreeMap<Digest, u64>>)>,
    /// The status line in a build's live view, with the bytes to move, each blob's bytes so
    /// far and when the transfer started.
    status: Option<(progress::Status, Mutex<Transfer>)>,
}

/// A transfer's bytes, for a status line.
#[derive(Debug)]
struct Transfer {
    total: u64,
    blobs: BTreeMap<Digest, u64>,
    started: Instant,
}

impl Lines {
    fn new(quiet: bool) -> Self {
        let status = progress::Status::new().filter(|_| !quiet).map(|status| {
            let transfer = Transfer {
                total: 0,
                blobs: BTreeMap::new(),
                started: Instant::now(),
            };
            (status, Mutex::new(transfer))
        });
        let bytes = (!quiet && status.is_none() && io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            (bar, Mutex::default())
        });
        Self {
            quiet,
            bytes,
            status,
        }
    }

    /// Moves the bar (or the status line) to the bytes done of every blob.
    fn advance(&self, digest: &Digest, done: u64) {
        if let Some((status, transfer)) = &self.status
            && let Ok(mut t) = transfer.lock()
        {
            t.blobs.insert(digest.clone(), done);
            let done: u64 = t.blobs.values().sum();
            let secs = t.started.elapsed().as_secs_f64();
            let rate = if secs > 0.0 {
                (done as f64 / secs) as u64
            } else {
                0
            };
            status.set(format!(
                "transferring {} / {} ({}/s)",
                size(done),
                size(t.total),
                size(rate)
            ));
        }
        if let Some((bar, blobs)) = &self.bytes
            && let Ok(mut blobs) = blobs.lock()
        {
            blobs.insert(digest.clone(), done);
            bar.set_position(blobs.values().sum());
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if let Some((bar, _)) = &self.bytes {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Lines {
    fn event(&self, event: &Event) {
        if self.quiet {
            return;
        }
        let line = match event {
            Event::BlobProgress { digest, done, .. } => return self.advance(digest, *done),
            Event::Plan { blobs, bytes } if self.status.is_some() => {
                if let Some((_, transfer)) = &self.status
                    && let Ok(mut t) = transfer.lock()
                {
                    t.total = *bytes;
                }
                format!("{blobs} blobs ({})", size(*bytes))
            }
            Event::Plan { blobs, bytes } if self.bytes.is_some() => {
                if let Some((bar, _)) = &self.bytes {
                    bar.set_length(*bytes);
                    bar.println(format!("{blobs} blobs ({})", size(*bytes)));
                }
                return;
            }
            Event::Plan { blobs, bytes } => format!("{blobs} blobs ({})", size(*bytes)),
            Event::BlobFinished {
                digest,
                size: n,
                outcome,
            } => {
                let what = match outcome {
                    Outcome::Present => "already present".to_owned(),
                    Outcome::Downloaded => format!("downloaded ({})", size(*n)),
                    Outcome::Existed => "already in the registry".to_owned(),
                    Outcome::Mounted { from } => format!("mounted from {from}"),
                    Outcome::Uploaded => format!("uploaded ({})", size(*n)),
                };
                format!("{}: {what}", short(digest))
            }
            Event::Resuming { digest, offset } => {
                format!(
                    "{}: connection lost, resuming at byte {offset}",
                    short(digest)
                )
            }
            Event::Retrying {
                request,
                attempt,
                attempts,
                reason,
            } => format!("retrying {request}: {reason} (attempt {attempt}/{attempts})"),
            Event::ManifestPushed {
                repository,
                reference,
                digest,
            } => {
                let sep = if reference.starts_with("sha256:") {
                    '@'
                } else {
                    ':'
                };
                format!(
                    "{repository}{sep}{reference}: manifest {} pushed",
                    short(digest)
                )
            }
            Event::BlobStarted { .. } => return,
        };
        if let Event::BlobFinished { digest, size, .. } = event {
            self.advance(digest, *size);
        }
        match &self.bytes {
            Some((bar, _)) => bar.println(line),
            None => progress::note(&line),
        }
    }
}

/// `sha256:` and the first 12 hex digits, as docker shows layers.
fn short(digest: &Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

/// Bytes for humans (decimal units, as docker).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `kiln pull` arguments.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The platform to pull from a multi-platform image, as os/arch[/variant] (default: this
    /// machine's), or a comma-separated list of them.
    #[arg(long, value_name = "OS/ARCH[/VARIANT][,…]")]
    platform: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image: NAME[:TAG|@DIGEST].
    #[arg(value_name = "NAME")]
    name: String,
}

/// Runs `kiln pull`.
pub fn run(global: &Global, args: PullArgs) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&args.name)?;
    let platforms = match &args.platform {
        Some(p) => Platform::parse_list(p)?,
        None => vec![Platform::host()],
    };
    let store = global.store()?;
    let (_, resolved) = pull_platforms(&store, &args.registry, &reference, &platforms)?;
    println!("{resolved}");
    Ok(ExitCode::SUCCESS)
}

/// Pulls `reference` for `platform` into `store` and tags it with its full reference (see the
/// module doc); returns the platform's manifest descriptor and the digest the reference
/// resolved to (an index's, for a multi-platform image). `kiln build` uses this for base images
/// it does not have.
pub fn pull_to_store(
    store: &Store,
    registry_args: &RegistryArgs,
    reference: &Reference,
    platform: &Platform,
) -> anyhow::Result<(kiln_builder::oci_spec::image::Descriptor, Digest)> {
    let (mut manifests, digest) = pull_platforms(
        store,
        registry_args,
        reference,
        std::slice::from_ref(platform),
    )?;
    Ok((manifests.remove(0), digest))
}

/// Pulls `reference` for each of `platforms` (see the module doc); returns each platform's
/// manifest descriptor, in order, and the digest the reference resolved to.
pub fn pull_platforms(
    store: &Store,
    registry_args: &RegistryArgs,
    reference: &Reference,
    platforms: &[Platform],
) -> anyhow::Result<(Vec<Descriptor>, Digest)> {
    let registry = registry_args.connect(reference.registry())?;
    let target = kiln_builder::store::registry::StoreTarget(store.clone());
    let runtime = runtime()?;
    let mut pulled_all: Vec<(Descriptor, kiln_registry::Pulled)> = Vec::new();
    for platform in platforms {
        if !registry_args.quiet() {
            progress::note(&format!("pulling {reference} ({platform})"));
        }
        let pulled = runtime
            .block_on(kiln_registry::pull(&registry, reference, platform, &target))
            .with_context(|| format!("pulling {reference}"))?;
        // The platform comes from the config, as for images kiln writes itself.
        let mut manifest = pulled.manifest.clone();
        let config = store
            .read_manifest(&manifest)
            .and_then(|m| store.read_config(&m))
            .with_context(|| format!("reading the pulled image {}", pulled.digest))?;
        let pulled_platform =
            Platform::new(&config.os, &config.architecture, config.variant.as_deref());
        if pulled_platform != *platform {
            progress::note(&format!(
                "warning: {reference} is a {pulled_platform} image; {platform} was requested"
            ));
        }
        manifest.set_platform(Some(config.platform()));
        if !registry_args.quiet() {
            let which = match platforms {
                [_] => String::new(),
                _ => format!(" ({pulled_platform})"),
            };
            progress::note(&format!(
                "pulled {reference}{which}: {} downloaded ({}), {} already present",
                pulled.downloaded,
                size(pulled.bytes_downloaded),
                pulled.present
            ));
        }
        pulled_all.push((manifest, pulled));
    }
    let (first, resolved) = match pulled_all.first() {
        Some((manifest, pulled)) => (manifest.clone(), pulled.digest.clone()),
        None => bail!("pulling {reference}: no platform asked for"),
    };
    let name = reference.to_string();
    let manifests: Vec<Descriptor> = pulled_all.iter().map(|(m, _)| m.clone()).collect();
    let entries = &pulled_all[0].1.index;
    let tagged = if entries.is_empty() {
        first
    } else {
        local_index(store, &name, entries, &manifests)?
    };
    store
        .tag(&name, &tagged)
        .with_context(|| format!("tagging {name}"))?;
    Ok((manifests, resolved))
}

/// What `name` should point at after pulling `pulled` from an index whose entries are
/// `entries`: the one manifest, or a local index of those and of the manifests `name` already
/// has that `entries` lists (for other platforms), in the registry index's order.
fn local_index(
    store: &Store,
    name: &str,
    entries: &[Descriptor],
    pulled: &[Descriptor],
) -> anyhow::Result<Descriptor> {
    let mut have: Vec<Descriptor> = pulled.to_vec();
    let existing = match store.resolve(name)? {
        // A tag that cannot be read is replaced, not merged.
        Some(desc) => store.platform_manifests(&desc).unwrap_or_default(),
        None => Vec::new(),
    };
    for (platform, desc) in existing {
        let listed = entries.iter().any(|e| e.digest() == desc.digest());
        let known = have.iter().any(|d| {
            d.digest() == desc.digest()
                || d.platform().as_ref().map(Platform::of) == Some(platform.clone())
        });
        if listed && !known {
            have.push(desc);
        }
    }
    let position = |d: &Descriptor| entries.iter().position(|e| e.digest() == d.digest());
    have.sort_by_key(position);
    have.dedup_by(|a, b| a.digest() == b.digest());
    if let [only] = have.as_slice() {
        return Ok(only.clone());
    }
    for desc in &mut have {
        desc.set_annotations(None);
    }
    // A Docker manifest list over Docker manifests, as registries serve them; else OCI.
    let docker = MediaTypes::Docker;
    let media = if have.iter().all(|d| *d.media_type() == docker.manifest()) {
        docker
    } else {
        MediaTypes::Oci
    };
    Ok(store.write_image_index(&have, media, &Default::default())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        let cases = [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1.0 kB"),
            (1_234_567, "1.2 MB"),
            (5_000_000_000, "5.0 GB"),
        ];
        for (bytes, shown) in cases {
            assert_eq!(size(bytes), shown);
        }
    }
}
