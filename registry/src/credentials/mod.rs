//! Registry credentials the way the docker CLI keeps them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`) with `auths`, `credsStore` and `credHelpers`.
//!
//! Lookup follows docker: a `credHelpers` entry for the server wins, then `credsStore`, then
//! `auths` (matched exactly, then by host name, so `https://host:5000/v1/` matches `host:5000`).
//! Docker Hub's key is `https://index.docker.io/v1/`, not `docker.io`. Writing keeps every other
//! key of the file (it belongs to docker too), writes with mode 0600 by rename, and sends
//! secrets to the helper when one is configured, leaving only an empty `auths` entry, as docker
//! does.

mod helper;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::auth::Credentials;

/// The `auths` key docker uses for Docker Hub.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Why credentials could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The config file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The config file is not valid JSON.
    #[error("cannot parse {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// An `auths` entry cannot be decoded.
    #[error("invalid auth entry for {server} in {}", path.display())]
    InvalidEntry {
        /// The file.
        path: PathBuf,
        /// The entry's key.
        server: String,
    },
    /// The config file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A credential helper could not be run.
    #[error("cannot run {helper}")]
    HelperSpawn {
        /// The helper program.
        helper: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A credential helper failed.
    #[error("{helper} {action} failed: {message}")]
    HelperFailed {
        /// The helper program.
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// What it printed (truncated).
        message: String,
    },
    /// A credential helper printed something that is not credentials.
    #[error("{helper} printed an invalid answer")]
    HelperOutput {
        /// The helper program.
        helper: String,
    },
    /// Neither `DOCKER_CONFIG` nor `HOME` is set.
    #[error("cannot find the docker config: set DOCKER_CONFIG or HOME")]
    NoHome,
}

/// The key docker files a registry's credentials under: Docker Hub's legacy URL, or the
/// registry host as written (`host:port`).
pub fn server_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_owned(),
        other => other.to_owned(),
    }
}

/// Docker's `ConvertToHostname`: drops a scheme and any path.
fn hostname(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// A docker `config.json`, loaded (or empty when the file does not exist).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> Result<PathBuf, CredentialsError> {
        Self::path_from(
            std::env::var_os("DOCKER_CONFIG").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
    }

    /// [`default_path`](Self::default_path) with its inputs given.
    pub fn path_from(
        docker_config: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> Result<PathBuf, CredentialsError> {
        match (docker_config, home) {
            (Some(dir), _) if !dir.as_os_str().is_empty() => Ok(dir.join("config.json")),
            (_, Some(home)) if !home.as_os_str().is_empty() => {
                Ok(home.join(".docker").join("config.json"))
            }
            _ => Err(CredentialsError::NoHome),
        }
    }

    /// Loads the file at `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let doc = match fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| CredentialsError::Parse {
                    path: path.to_owned(),
                    source,
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Map::new(),
            Err(source) => {
                return Err(CredentialsError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(Self {
            path: path.to_owned(),
            doc,
        })
    }

    /// The file this config was loaded from and is saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper that holds `registry`'s credentials, if any: its `credHelpers`
    /// entry, else `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        let key = server_key(registry);
        let helpers = self.doc.get("credHelpers").and_then(Value::as_object);
        helpers
            .and_then(|h| h.get(&key).or_else(|| h.get(hostname(&key))))
            .or_else(|| self.doc.get("credsStore"))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
    }

    /// The credentials for `registry` (as written in a reference: `docker.io`, `host:port`).
    /// Runs a credential helper if one is configured for it.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, CredentialsError> {
        let key = server_key(registry);
        if let Some(h) = self.helper_for(registry) {
            return helper::get(h, &key);
        }
        self.file_entry(&key)
    }

    /// The `auths` entry for `key`, decoded.
    fn file_entry(&self, key: &str) -> Result<Option<Credentials>, CredentialsError> {
        let Some(auths) = self.doc.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let entry = auths.get(key).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| hostname(k) == hostname(key))
                .map(|(_, v)| v)
        });
        let Some(entry) = entry.and_then(Value::as_object) else {
            return Ok(None);
        };
        let invalid = || CredentialsError::InvalidEntry {
            path: self.path.clone(),
            server: key.to_owned(),
        };
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        if let Some(token) = field("identitytoken") {
            return Ok(Some(Credentials::IdentityToken {
                token: token.to_owned(),
            }));
        }
        if let Some(auth) = field("auth") {
            let decoded = BASE64.decode(auth.trim()).map_err(|_| invalid())?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (username, password) = decoded.split_once(':').ok_or_else(invalid)?;
            return Ok(Some(Credentials::Basic {
                username: username.to_owned(),
                password: password.trim_end_matches('\n').to_owned(),
            }));
        }
        match (field("username"), field("password")) {
            (Some(username), Some(password)) => Ok(Some(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            })),
            _ => Ok(None),
        }
    }

    /// Records `credentials` for `registry`: in its helper if it has one (leaving an empty
    /// `auths` entry, as docker does), else base64 in `auths`. Call [`save`](Self::save) after.
    pub fn store(
        &mut self,
        registry: &str,
        credentials: &Credentials,
    ) -> Result<(), CredentialsError> {
        let key = server_key(registry);
        let entry = match self.helper_for(registry) {
            Some(h) => {
                helper::store(h, &key, credentials)?;
                Map::new()
            }
            None => {
                let mut entry = Map::new();
                match credentials {
                    Credentials::Basic { username, password } => {
                        let auth = BASE64.encode(format!("{username}:{password}"));
                        entry.insert("auth".into(), Value::String(auth));
                    }
                    Credentials::IdentityToken { token } => {
                        entry.insert("identitytoken".into(), Value::String(token.clone()));
                    }
                }
                entry
            }
        };
        self.remove_entries(&key);
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Some(auths) = auths.as_object_mut() {
            auths.insert(key, Value::Object(entry));
        }
        Ok(())
    }

    /// Forgets `registry`'s credentials (helper and `auths`); whether anything was recorded.
    /// Call [`save`](Self::save) after.
    pub fn erase(&mut self, registry: &str) -> Result<bool, CredentialsError> {
        let key = server_key(registry);
        let had_entry = self.remove_entries(&key);
        if let Some(h) = self.helper_for(registry) {
            helper::erase(h, &key)?;
            return Ok(true);
        }
        Ok(had_entry)
    }

    /// Removes every `auths` entry for the host of `key`; whether there was one.
    fn remove_entries(&mut self, key: &str) -> bool {
        let Some(auths) = self.doc.get_mut("auths").and_then(Value::as_object_mut) else {
            return false;
        };
        let before = auths.len();
        auths.retain(|k, _| k != key && hostname(k) != hostname(key));
        auths.len() != before
    }

    /// Writes the file: its directory made 0700 if new, the file 0600, replaced by rename.
    pub fn save(&self) -> Result<(), CredentialsError> {
        let write_error = |source| CredentialsError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(write_error)?;
        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        serde::Serialize::serialize(&self.doc, &mut ser)
            .map_err(|e| write_error(io::Error::other(e)))?;
        bytes.push(b'\n');
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config.json".into());
        let tmp = dir.join(format!(".{name}.kiln-{}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(write_error(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
