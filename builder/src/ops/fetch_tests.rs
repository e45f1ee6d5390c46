//! Download tests against the loopback server in `test_http.rs`: bodies, statuses, redirects,
//! checksums, proxies and cut-off transfers; then the pure helpers (URL file names, HTTP dates).

use crate::error_chain;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;
use crate::ops::test_http::{Reply, Server};

fn options(temp: &Path) -> FetchOptions {
    FetchOptions {
        proxies: ProxyConfig::default(),
        user_agent: "kiln-test".to_owned(),
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        max_redirects: 3,
        temp_dir: Some(temp.to_owned()),
    }
}

fn routes(list: &[(&str, Reply)]) -> Vec<(String, Reply)> {
    list.iter()
        .map(|(t, r)| (t.to_string(), r.clone()))
        .collect()
}

#[test]
fn downloads_stream_to_a_private_temporary_file() {
    let body = b"hello from the server\n".repeat(10_000);
    let server = Server::start(routes(&[(
        "/dir/file.txt",
        Reply::ok(&body).header("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
    )]));
    let temp = tempfile::tempdir().unwrap();
    let got = download(&server.url("/dir/file.txt"), None, &options(temp.path())).unwrap();
    assert_eq!(std::fs::read(got.path()).unwrap(), body);
    assert_eq!(got.digest, Digest::of(&body));
    assert_eq!(got.size, body.len() as u64);
    assert_eq!(got.last_modified, Some(784_111_777));
    assert!(got.path().starts_with(temp.path()));
    let mode = std::fs::metadata(got.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let path = got.path().to_owned();
    drop(got);
    assert!(!path.exists(), "the temporary file is removed on drop");
    assert_eq!(server.requests(), ["GET /dir/file.txt HTTP/1.1"]);
}

#[test]
fn statuses_redirects_and_checksums() {
    let body = b"payload";
    let server = Server::start(routes(&[
        (
            "/file",
            Reply::ok(body).header("Last-Modified", "not a date"),
        ),
        ("/moved", Reply::redirect("/file")),
        ("/loop", Reply::redirect("/loop")),
        ("/broken", Reply::status("503 Service Unavailable")),
        (
            "/short",
            Reply {
                short_by: 100,
                ..Reply::ok(body)
            },
        ),
    ]));
    let temp = tempfile::tempdir().unwrap();
    let opts = options(temp.path());

    let moved = download(&server.url("/moved"), None, &opts).unwrap();
    assert_eq!(std::fs::read(moved.path()).unwrap(), body);
    assert_eq!(moved.last_modified, None, "an unparseable date is ignored");
    drop(moved);

    let good = Digest::of(body);
    assert!(download(&server.url("/file"), Some(&good), &opts).is_ok());

    let wrong = Digest::of(b"something else");
    let cases: Vec<(&str, Option<&Digest>, String)> = vec![
        ("/missing", None, "server answered 404 Not Found".to_owned()),
        (
            "/broken",
            None,
            "server answered 503 Service Unavailable".to_owned(),
        ),
        (
            "/file",
            Some(&wrong),
            format!("checksum mismatch: expected {wrong}, got {good}"),
        ),
    ];
    for (path, expected, want) in cases {
        let err = download(&server.url(path), expected, &opts).unwrap_err();
        assert_eq!(err.to_string(), want, "{path}");
    }
    let err = download(&server.url("/loop"), None, &opts).unwrap_err();
    assert!(
        error_chain(&err).contains("too many redirects"),
        "{}",
        error_chain(&err)
    );
    let err = download(&server.url("/short"), None, &opts).unwrap_err();
    assert!(
        matches!(err, FetchError::Transport(_)),
        "{}",
        error_chain(&err)
    );
    // Nothing is left behind by the failures.
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);

    for (url, want) in [
        ("ftp://example.invalid/x", "unsupported URL scheme \"ftp\""),
        ("not a url", "invalid URL"),
    ] {
        assert_eq!(download(url, None, &opts).unwrap_err().to_string(), want);
    }
}

#[test]
fn a_stalled_transfer_fails_after_the_idle_timeout() {
    let server = Server::start(routes(&[(
        "/slow",
        Reply {
            short_by: 10,
            stall: Duration::from_secs(3),
            ..Reply::ok(b"partial")
        },
    )]));
    let temp = tempfile::tempdir().unwrap();
    let mut opts = options(temp.path());
    opts.idle_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = download(&server.url("/slow"), None, &opts).unwrap_err();
    assert!(
        matches!(err, FetchError::Transport(_)),
        "{}",
        error_chain(&err)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn downloads_work_from_inside_an_async_runtime() {
    // The builder may be driven from async code; blocking on a second runtime there panics.
    let server = Server::start(routes(&[("/x", Reply::ok(b"x"))]));
    let temp = tempfile::tempdir().unwrap();
    let opts = options(temp.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = runtime.block_on(async { download(&server.url("/x"), None, &opts) });
    assert_eq!(got.unwrap().size, 1);
}

#[test]
fn proxies_come_from_the_configuration() {
    // The loopback server plays the proxy: a proxied request names the whole URL.
    let proxy = Server::start(routes(&[(
        "http://files.example.invalid/pkg.tgz",
        Reply::ok(b"via proxy"),
    )]));
    let temp = tempfile::tempdir().unwrap();
    let mut opts = options(temp.path());
    opts.proxies = ProxyConfig::from_vars(|name| {
        (name == "http_proxy").then(|| format!("127.0.0.1:{}", proxy.addr.port()))
    });
    let got = download("http://files.example.invalid/pkg.tgz", None, &opts).unwrap();
    assert_eq!(std::fs::read(got.path()).unwrap(), b"via proxy");
    assert_eq!(
        proxy.requests(),
        ["GET http://files.example.invalid/pkg.tgz HTTP/1.1"]
    );

    // Loopback goes direct even with a proxy configured.
    let direct = Server::start(routes(&[("/x", Reply::ok(b"direct"))]));
    let got = download(&direct.url("/x"), None, &opts).unwrap();
    assert_eq!(std::fs::read(got.path()).unwrap(), b"direct");
    assert_eq!(proxy.requests().len(), 1);
}

#[test]
fn file_names() {
    let cases = [
        ("https://example.com/dir/archive.tar.gz", "archive.tar.gz"),
        ("https://example.com/dir/", "dir"),
        ("https://example.com/a%20b.txt?x=1#frag", "a b.txt"),
        ("https://example.com/a%2Fb", "b"),
        ("https://example.com", UNNAMED),
        ("https://example.com/", UNNAMED),
        ("https://example.com/a/..", UNNAMED),
        ("https://example.com/%2e%2e", UNNAMED),
        ("https://example.com/nul%00", UNNAMED),
        ("::not a url::", UNNAMED),
    ];
    for (url, want) in cases {
        assert_eq!(file_name(url), want, "{url}");
    }
}

#[test]
fn passwords_are_redacted() {
    let cases = [
        (
            "https://user:secret@example.com/f",
            "https://user:xxxxx@example.com/f",
        ),
        ("https://user@example.com/f", "https://user@example.com/f"),
        ("https://example.com/f", "https://example.com/f"),
        ("not a url", "not a url"),
    ];
    for (url, want) in cases {
        assert_eq!(redacted(url), want);
    }
}
