//! A canned HTTP/1.1 server on 127.0.0.1 for the download tests: each request target (a path,
//! or an absolute URL when the server plays a proxy) maps to a fixed response, every request
//! line is recorded, and each connection is closed after one answer. Loopback only.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One canned answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send this many more bytes in `Content-Length` than the body has (a cut-off transfer).
    pub short_by: usize,
    /// Keep the connection open this long after the body (a stalled transfer).
    pub stall: std::time::Duration,
}

impl Reply {
    pub fn ok(body: &[u8]) -> Self {
        Self {
            status: "200 OK",
            headers: Vec::new(),
            body: body.to_vec(),
            short_by: 0,
            stall: std::time::Duration::ZERO,
        }
    }

    pub fn status(status: &'static str) -> Self {
        Self {
            status,
            ..Self::ok(status.as_bytes())
        }
    }

    pub fn redirect(location: &str) -> Self {
        Self::status("302 Found").header("Location", location)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The running server; stopped when dropped.
pub(crate) struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `routes` (request target → reply); anything else is a 404.
    pub fn start(routes: Vec<(String, Reply)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    answer(stream, &routes, &log);
                }
            }
        });
        Self {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(stream: TcpStream, routes: &[(String, Reply)], log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let request_line = request_line.trim_end().to_owned();
    log.lock().unwrap().push(request_line.clone());
    let target = request_line.split(' ').nth(1).unwrap_or_default();
    let reply = routes
        .iter()
        .find(|(t, _)| t == target)
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| Reply::status("404 Not Found"));
    let mut head = format!(
        "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len() + reply.short_by
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = &stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&reply.body);
    let _ = stream.flush();
    std::thread::sleep(reply.stall);
}
