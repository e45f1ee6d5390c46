//! The real registry under test: Debian's `docker-registry` (CNCF distribution) started on a
//! free loopback port with its storage in a temporary directory, optionally with htpasswd or
//! token auth and TLS, and killed when dropped.
//!
//! A test that needs it calls [`RegistryServer::start`]; when the binary is missing that
//! returns `None` after printing why (the test then returns early), except under `CI=true`,
//! where a missing prerequisite fails the test instead of silently skipping it.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where Debian installs the server.
const BINARY: &str = "/usr/bin/docker-registry";

/// How the registry authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Anyone may pull and push.
    None,
    /// HTTP Basic against an htpasswd file of `(user, password)` pairs (bcrypt).
    Htpasswd(Vec<(String, String)>),
    /// Bearer tokens from `realm`, signed by the key whose certificate is `root_cert_pem`.
    Token {
        /// The token endpoint.
        realm: String,
        /// The registry's service name (the tokens' audience).
        service: String,
        /// The tokens' issuer.
        issuer: String,
        /// The certificate tokens are signed under.
        root_cert_pem: String,
    },
}

/// How to run the registry.
#[derive(Debug, Clone)]
pub struct Config {
    /// Authentication.
    pub auth: Auth,
    /// Certificate chain and key (PEM) to serve https with.
    pub tls: Option<(String, String)>,
    /// With `tls`: a CA (PEM) whose client certificates are required (mutual TLS).
    pub client_ca: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            auth: Auth::None,
            tls: None,
            client_ca: None,
        }
    }
}

/// Whether a tool the tests need is present; outside CI a missing one skips (with a message),
/// under `CI=true` it fails.
pub fn require(path: &str, what: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} ({path}) is required under CI=true; tests/run.sh installs it");
    }
    eprintln!("skipping: {what} ({path}) is not installed; tests/run.sh installs it");
    false
}

/// A running registry.
#[derive(Debug)]
pub struct RegistryServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: TempDir,
}

impl RegistryServer {
    /// Starts a registry; `None` when the binary is missing outside CI.
    pub fn start(config: Config) -> Option<Self> {
        if !require(BINARY, "docker-registry") {
            return None;
        }
        // A port picked by binding :0 can be taken again before the registry binds it.
        for _ in 0..5 {
            if let Some(server) = Self::try_start(&config) {
                return Some(server);
            }
        }
        panic!("docker-registry did not start");
    }

    fn try_start(config: &Config) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let yaml = write_config(dir.path(), &addr, config);
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&yaml)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning docker-registry");
        let mut server = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                if server.log().contains("address already in use") {
                    return None;
                }
                panic!("docker-registry exited:\n{}", server.log());
            }
            // Only our own "listening on" line proves the port is ours: a connect alone can
            // reach another test's registry that took the port while this one was starting.
            if server.log().contains("listening on ") && TcpStream::connect(&server.addr).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry not ready after 15s:\n{}", server.log());
    }

    /// The server's log (its access log included).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many access-log lines show `METHOD` requests whose path contains `path`. The
    /// registry logs a request just after answering it, so this waits for the count to settle.
    pub fn requests(&self, method: &str, path: &str) -> usize {
        let needle = format!("\"{method} ");
        let count = || {
            self.log()
                .lines()
                .filter(|l| {
                    l.find(&needle).is_some_and(|i| {
                        let rest = &l[i + needle.len()..];
                        rest.split(' ').next().is_some_and(|p| p.contains(path))
                    })
                })
                .count()
        };
        let mut last = count();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            let now = count();
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, addr: &str, config: &Config) -> PathBuf {
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: kiln-test-secret\n",
        data = dir.join("data").display()
    );
    if let Some((cert, key)) = &config.tls {
        fs::write(dir.join("tls.crt"), cert).unwrap();
        fs::write(dir.join("tls.key"), key).unwrap();
        yaml += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("tls.crt").display(),
            dir.join("tls.key").display()
        );
        if let Some(ca) = &config.client_ca {
            fs::write(dir.join("client-ca.crt"), ca).unwrap();
            yaml += &format!(
                "    clientcas:\n      - {}\n",
                dir.join("client-ca.crt").display()
            );
        }
    }
    match &config.auth {
        Auth::None => {}
        Auth::Htpasswd(users) => {
            let mut lines = String::new();
            for (user, password) in users {
                let hash = bcrypt::hash(password, 4).unwrap();
                lines += &format!("{user}:{hash}\n");
            }
            fs::write(dir.join("htpasswd"), lines).unwrap();
            yaml += &format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        Auth::Token {
            realm,
            service,
            issuer,
            root_cert_pem,
        } => {
            fs::write(dir.join("token-root.crt"), root_cert_pem).unwrap();
            yaml += &format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                dir.join("token-root.crt").display()
            );
        }
    }
    let path = dir.join("config.yml");
    fs::write(&path, yaml).unwrap();
    path
}
