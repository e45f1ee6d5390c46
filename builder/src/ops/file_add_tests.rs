//! ADD tests: URL sources against the loopback server in `test_http.rs` (names, modes, times,
//! checksums, failures that must write nothing), BuildKit's rules for remote sources and
//! `--checksum`, and archives carrying the T-TAR-03/04/05 attacks of reliability.md §4.3.

use crate::error_chain;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::ops::proxy::ProxyConfig;
use crate::ops::test_http::{Reply, Server};

const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const CREATED: i64 = 1_700_000_000;

struct Setup {
    _dir: tempfile::TempDir,
    ctx: std::path::PathBuf,
    dest: std::path::PathBuf,
    fetch: FetchOptions,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, dest, temp) = (
        dir.path().join("ctx"),
        dir.path().join("root"),
        dir.path().join("tmp"),
    );
    for d in [&ctx, &dest.join("exists"), &temp] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(ctx.join("foo"), "foo\n").unwrap();
    let fetch = FetchOptions {
        proxies: ProxyConfig::default(),
        user_agent: "kiln-test".to_owned(),
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        max_redirects: 3,
        temp_dir: Some(temp),
    };
    Setup {
        _dir: dir,
        ctx,
        dest,
        fetch,
    }
}

fn add<'a>(s: &'a Setup, sources: &'a [String], dest: &'a str) -> FileOp<'a> {
    FileOp {
        keyword: "ADD",
        sources,
        inline: &[],
        dest,
        workdir: "/",
        owner: None,
        chmod: None,
        excludes: &[],
        parents: false,
        unpack: Unpack::Local,
        checksum: None,
        link: false,
        fetch: Some(&s.fetch),
        downloaded: None,
        created: CREATED,
    }
}

fn run(s: &Setup, op: &FileOp<'_>) -> Result<(), FileError> {
    let source = Source {
        root: &s.ctx,
        visible: None,
        keep_owner: false,
    };
    copy(&source, &s.dest, op)
}

/// Every path below `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A tar archive with raw names, so attack paths are written exactly as given.
fn raw_tar(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, typeflag, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(tar::EntryType::new(*typeflag));
        h.set_mode(if *typeflag == b'2' { 0o777 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn server() -> Server {
    let tar = raw_tar(&[("inside/x.txt", b'0', "", b"packed\n")]);
    Server::start(vec![
        (
            "/dir/file.txt".into(),
            Reply::ok(b"downloaded\n").header("Last-Modified", LAST_MODIFIED),
        ),
        ("/".into(), Reply::ok(b"root\n")),
        ("/moved".into(), Reply::redirect("/dir/file.txt")),
        ("/pkg.tar".into(), Reply::ok(&tar)),
    ])
}

#[test]
fn add_downloads_urls() {
    let srv = server();
    let file = srv.url("/dir/file.txt");
    // (sources, destination, where the file lands, its content, its mtime)
    let cases: Vec<(Vec<String>, &str, &str, &str, i64)> = vec![
        (
            vec![file.clone()],
            "/dl/",
            "dl/file.txt",
            "downloaded\n",
            784_111_777,
        ),
        (
            vec![file.clone()],
            "/named",
            "named",
            "downloaded\n",
            784_111_777,
        ),
        (
            vec![file.clone()],
            "/exists",
            "exists/file.txt",
            "downloaded\n",
            784_111_777,
        ),
        (
            vec![file.clone()],
            "rel/",
            "srv/rel/file.txt",
            "downloaded\n",
            784_111_777,
        ),
        // No last path element: BuildKit's placeholder name; no Last-Modified: the step's time.
        (
            vec![srv.url("/")],
            "/d/",
            "d/__unnamed__",
            "root\n",
            CREATED,
        ),
        // Named after the URL as written, not where it redirects.
        (
            vec![srv.url("/moved")],
            "/r/",
            "r/moved",
            "downloaded\n",
            784_111_777,
        ),
        (
            vec!["foo".into(), file.clone()],
            "/mixed/",
            "mixed/foo",
            "foo\n",
            -1,
        ),
        (
            vec!["foo".into(), file.clone()],
            "/mixed/",
            "mixed/file.txt",
            "downloaded\n",
            -1,
        ),
    ];
    for (sources, dest, lands, content, mtime) in cases {
        let s = setup();
        let mut o = add(&s, &sources, dest);
        o.workdir = "/srv";
        run(&s, &o).unwrap_or_else(|e| panic!("{sources:?} {dest}: {}", error_chain(&e)));
        let path = s.dest.join(lands);
        assert_eq!(fs::read_to_string(&path).unwrap(), content, "{lands}");
        if mtime >= 0 {
            let m = fs::metadata(&path).unwrap();
            assert_eq!(
                (m.permissions().mode() & 0o7777, m.mtime()),
                (0o600, mtime),
                "{lands}"
            );
            if rustix::process::geteuid().is_root() {
                assert_eq!((m.uid(), m.gid()), (0, 0), "{lands}");
            }
        }
    }

    // --chmod and --chown replace the download's 0600 and 0:0.
    let s = setup();
    let sources = vec![file.clone()];
    let mut o = add(&s, &sources, "/x/");
    o.chmod = Some("755".parse().unwrap());
    o.owner = Some((1000, 1001));
    run(&s, &o).unwrap();
    let m = fs::metadata(s.dest.join("x/file.txt")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    if rustix::process::geteuid().is_root() {
        assert_eq!((m.uid(), m.gid()), (1000, 1001));
    }

    // A downloaded archive is a file unless --unpack=true.
    let s = setup();
    let sources = vec![srv.url("/pkg.tar")];
    run(&s, &add(&s, &sources, "/t/")).unwrap();
    assert_eq!(tree(&s.dest.join("t")), ["pkg.tar"]);
    let mut o = add(&s, &sources, "/u/");
    o.unpack = Unpack::for_add(Some(true));
    run(&s, &o).unwrap();
    assert_eq!(tree(&s.dest.join("u")), ["inside", "inside/x.txt"]);
    assert_eq!(
        fs::read_to_string(s.dest.join("u/inside/x.txt")).unwrap(),
        "packed\n"
    );
    // The temporary files are gone.
    assert_eq!(
        tree(s.fetch.temp_dir.as_ref().unwrap()),
        Vec::<String>::new()
    );
}

#[test]
fn add_url_failures_write_nothing() {
    let srv = server();
    let file = srv.url("/dir/file.txt");
    let missing = srv.url("/missing");
    let right = Digest::of(b"downloaded\n");
    let wrong = Digest::of(b"tampered\n");
    let (right_s, wrong_s) = (right.to_string(), wrong.to_string());
    let cases: Vec<(Vec<String>, Option<&str>, String)> = vec![
        (
            vec![file.clone()],
            Some(&wrong_s),
            format!("downloading {file}: checksum mismatch: expected {wrong}, got {right}"),
        ),
        (
            vec![missing.clone()],
            None,
            format!("downloading {missing}: server answered 404 Not Found"),
        ),
        // A later failure stops the whole step before anything is written.
        (
            vec!["foo".into(), file.clone(), missing.clone()],
            None,
            format!("downloading {missing}: server answered 404 Not Found"),
        ),
    ];
    for (sources, checksum, want) in cases {
        let s = setup();
        let mut o = add(&s, &sources, "/out/");
        o.checksum = checksum;
        let err = run(&s, &o).unwrap_err();
        assert_eq!(error_chain(&err), want);
        assert_eq!(tree(&s.dest), ["exists"], "{sources:?}: nothing written");
        assert_eq!(
            tree(s.fetch.temp_dir.as_ref().unwrap()),
            Vec::<String>::new()
        );
    }
    let s = setup();
    let sources = vec![file.clone()];
    let mut o = add(&s, &sources, "/out/");
    o.checksum = Some(&right_s);
    run(&s, &o).unwrap();
    assert_eq!(tree(&s.dest.join("out")), ["file.txt"]);
}

#[test]
fn remote_source_and_checksum_rules() {
    let url = "http://example.invalid/file".to_owned();
    let digest = Digest::of(b"x").to_string();
    let git = "https://github.com/moby/buildkit.git#v0.10".to_owned();
    let cases: Vec<(&str, Vec<String>, Option<&str>, String)> = vec![
        ("COPY", vec![url.clone()], None, "source can't be a URL for COPY".into()),
        (
            "COPY",
            vec!["foo".into()],
            Some(&digest),
            "checksum can't be specified for COPY".into(),
        ),
        (
            "ADD",
            vec!["foo".into()],
            Some(&digest),
            "checksum can't be specified for non-HTTP sources".into(),
        ),
        (
            "ADD",
            vec![url.clone(), url.clone()],
            Some(&digest),
            "checksum can't be specified for multiple sources".into(),
        ),
        (
            "ADD",
            vec![url.clone()],
            Some("md5:abc"),
            "invalid checksum \"md5:abc\"".into(),
        ),
        (
            "ADD",
            vec![git.clone()],
            None,
            format!("ADD from a git repository ({git}) is not supported by kiln yet"),
        ),
        (
            "ADD",
            vec!["git@github.com:moby/buildkit.git".into()],
            None,
            "ADD from a git repository (git@github.com:moby/buildkit.git) is not supported by kiln yet"
                .into(),
        ),
        ("COPY", vec![git.clone()], None, "source can't be a git ref for COPY".into()),
    ];
    for (keyword, sources, checksum, want) in cases {
        let s = setup();
        let mut o = add(&s, &sources, "/out/");
        o.keyword = keyword;
        o.checksum = checksum;
        let err = run(&s, &o).unwrap_err();
        assert_eq!(err.to_string(), want, "{keyword} {sources:?}");
        assert_eq!(tree(&s.dest), ["exists"]);
    }
}

#[test]
fn add_archives_cannot_reach_the_host() {
    let s = setup();
    let host = s.ctx.parent().unwrap().join("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("sentinel"), "host sentinel").unwrap();
    let host_str = host.to_str().unwrap().trim_start_matches('/').to_owned();
    let climb = format!("{}{host_str}", "../".repeat(12));
    let abs = format!("/{host_str}");
    let sentinel = format!("{climb}/sentinel");
    let snapshot = || {
        let meta = fs::metadata(host.join("sentinel")).unwrap();
        (
            tree(&host),
            fs::read(host.join("sentinel")).unwrap(),
            meta.nlink(),
            meta.permissions().mode(),
        )
    };
    let before = snapshot();
    // (name, archive, the error when ADD must fail)
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        // T-TAR-03: an absolute symlink, then a file through it: clamped into the destination.
        (
            "t-tar-03.tar",
            raw_tar(&[
                ("l", b'2', &abs, b""),
                ("l/SENTINEL-a", b'0', "", b"attack"),
            ]),
            None,
        ),
        // T-TAR-04: a climbing relative symlink: clamped the same way.
        (
            "t-tar-04.tar",
            raw_tar(&[
                ("l", b'2', &climb, b""),
                ("l/SENTINEL-a", b'0', "", b"attack"),
            ]),
            None,
        ),
        // T-TAR-05: a hard link to a host file, then content written "through" it: rejected.
        (
            "t-tar-05.tar",
            raw_tar(&[("h", b'1', &sentinel, b""), ("h", b'0', "", b"attack")]),
            Some("hardlink target outside destination"),
        ),
    ];
    let mut applied = 0;
    for (name, archive, error) in cases {
        fs::write(s.ctx.join(name), archive).unwrap();
        let sources = vec![name.to_owned()];
        let dest = format!("/{name}/");
        let result = run(&s, &add(&s, &sources, &dest));
        if let Some(want) = error {
            let err = result.unwrap_err();
            assert!(
                error_chain(&err).ends_with(want),
                "{name}: {}",
                error_chain(&err)
            );
        } else {
            result.unwrap_or_else(|e| panic!("{name}: {}", error_chain(&e)));
            let landed = s.dest.join(name).join(&host_str).join("SENTINEL-a");
            assert_eq!(fs::read(&landed).unwrap(), b"attack", "{name}");
            applied += 1;
        }
        assert_eq!(snapshot(), before, "{name}: the host changed");
    }
    assert_eq!(applied, 2);
}

#[test]
fn local_zstd_archives_extract_unless_unpack_is_false() {
    let s = setup();
    let tar = raw_tar(&[("inside/z.txt", b'0', "", b"zstd\n")]);
    fs::write(s.ctx.join("a.tzst"), zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
    let sources = vec!["a.tzst".to_owned()];
    run(&s, &add(&s, &sources, "/z/")).unwrap();
    assert_eq!(
        fs::read_to_string(s.dest.join("z/inside/z.txt")).unwrap(),
        "zstd\n"
    );
    let mut o = add(&s, &sources, "/kept/");
    o.unpack = Unpack::for_add(Some(false));
    run(&s, &o).unwrap();
    assert_eq!(tree(&s.dest.join("kept")), ["a.tzst"]);
}
