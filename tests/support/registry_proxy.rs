//! A fault-injecting HTTP/1.1 proxy in front of the real registry.
//!
//! Every client connection carries one request: the proxy reads its head, records it, and
//! either injects the first matching fault or forwards it with `Connection: close` (so the
//! registry, and then the client, close the connection after the response; the registry builds
//! its `Location`s from the `Host` header, which still names the proxy). Faults: an immediate
//! status (with `Retry-After`), a connection cut after N bytes of the request body or of the
//! response body, a stall (never answer), one flipped byte in the response body, and a redirect.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What to do to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After: secs`) without forwarding.
    Status(u16, Option<u32>),
    /// Forward the head and this many body bytes, then cut both connections (only requests
    /// with a longer body match).
    CutRequest(usize),
    /// Forward the request, then the response head and this many body bytes, then cut.
    CutResponse(usize),
    /// Read the request and never answer.
    Stall,
    /// Forward, flipping the first byte of the response body.
    Corrupt,
    /// Answer `307 Temporary Redirect` to this URL.
    Redirect(String),
    /// Read the request's body, then answer this status (307 or 308) with a `Location` of the
    /// same path and query at this origin (`http://host:port`): an upload redirected to
    /// storage.
    RedirectSamePath(u16, String),
}

/// A fault for the next `times` requests whose method is `method` and whose path contains
/// `path`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The method.
    pub method: &'static str,
    /// A substring of the path (query included).
    pub path: String,
    /// A header (lowercase name) whose value must start with the given text.
    pub header: Option<(&'static str, String)>,
    /// How many matching requests get the fault.
    pub times: usize,
    /// The fault.
    pub fault: Fault,
}

/// A request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st, up) = (
            rules.clone(),
            seen.clone(),
            stop.clone(),
            upstream.to_owned(),
        );
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, s, st, up) = (r.clone(), s.clone(), st.clone(), up.clone());
                thread::spawn(move || {
                    let _ = handle(conn, &up, &r, &s, &st);
                });
            }
        });
        Self {
            addr,
            rules,
            seen,
            stop,
        }
    }

    /// Adds a fault rule for the next `times` matching requests.
    pub fn fault(&self, method: &'static str, path: &str, times: usize, fault: Fault) {
        self.add(Rule {
            method,
            path: path.to_owned(),
            header: None,
            times,
            fault,
        });
    }

    /// Adds a rule.
    pub fn add(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests seen with `method` whose path contains `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.contains(path))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Reads up to the end of the head; returns it and whatever body bytes came with it.
fn read_head(conn: &mut TcpStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        // A TLS ClientHello (kiln tries https first on loopback): hang up at once, as the
        // registry itself does, rather than wait for a request that never comes.
        if buf[0] == 0x16 {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

fn handle(
    mut client: TcpStream,
    upstream: &str,
    rules: &Mutex<Vec<Rule>>,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let (head, early_body) = read_head(&mut client)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let content_length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let fault = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| {
                // A cut needs a body longer than the cut point.
                let fits = match r.fault {
                    Fault::CutRequest(n) => content_length > n,
                    _ => true,
                };
                let header_ok = r.header.as_ref().is_none_or(|(name, prefix)| {
                    headers
                        .iter()
                        .any(|(n, v)| n == name && v.starts_with(prefix.as_str()))
                });
                r.times > 0 && r.method == method && path.contains(&r.path) && fits && header_ok
            })
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            })
    };
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
    });
    match fault {
        Some(Fault::Status(code, retry_after)) => {
            // Consume the body first, so the client sees the answer rather than a reset.
            drain(&mut client, content_length.saturating_sub(early_body.len()))?;
            let retry = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let body =
                format!(r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected {code}"}}]}}"#);
            write!(
                client,
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        Some(Fault::RedirectSamePath(code, origin)) => {
            drain(&mut client, content_length.saturating_sub(early_body.len()))?;
            write!(
                client,
                "HTTP/1.1 {code} Redirect\r\nLocation: {origin}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        Some(Fault::Redirect(location)) => {
            write!(
                client,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        Some(Fault::Stall) => {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
            }
            return Ok(());
        }
        _ => {}
    }

    let mut up = TcpStream::connect(upstream)?;
    let mut forwarded = format!("{request_line}\r\n");
    for (name, value) in &headers {
        if name != "connection" {
            forwarded += &format!("{name}: {value}\r\n");
        }
    }
    forwarded += "connection: close\r\n\r\n";
    up.write_all(forwarded.as_bytes())?;

    // The request body.
    let cut_request = match fault {
        Some(Fault::CutRequest(n)) => Some(n),
        _ => None,
    };
    let mut sent = 0usize;
    let mut pending = early_body;
    let mut chunk = vec![0u8; 65536];
    loop {
        if let Some(limit) = cut_request
            && sent + pending.len() >= limit
        {
            up.write_all(&pending[..limit - sent])?;
            let _ = up.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        up.write_all(&pending)?;
        sent += pending.len();
        if sent >= content_length {
            break;
        }
        let n = client.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        pending = chunk[..n].to_vec();
    }

    // The response, until the registry closes the connection.
    let (head, mut body) = read_head(&mut up)?;
    client.write_all(&head)?;
    let mut relayed = 0usize;
    let mut corrupt = matches!(fault, Some(Fault::Corrupt));
    loop {
        if corrupt && !body.is_empty() {
            body[0] ^= 0xff;
            corrupt = false;
        }
        if let Some(Fault::CutResponse(limit)) = fault
            && relayed + body.len() >= limit
        {
            client.write_all(&body[..limit - relayed])?;
            client.flush()?;
            let _ = client.shutdown(Shutdown::Both);
            let _ = up.shutdown(Shutdown::Both);
            return Ok(());
        }
        client.write_all(&body)?;
        relayed += body.len();
        let n = up.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body = chunk[..n].to_vec();
    }
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// Reads and drops the `remaining` bytes of a request body.
fn drain(client: &mut TcpStream, mut remaining: usize) -> std::io::Result<()> {
    let mut sink = [0u8; 65536];
    while remaining > 0 {
        let n = client.read(&mut sink[..remaining.min(65536)])?;
        if n == 0 {
            break;
        }
        remaining -= n;
    }
    Ok(())
}
