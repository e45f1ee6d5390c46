//! COPY/ADD tests over a real context and destination root (BuildKit's semantics, the
//! anchors-features §2 rules, and the symlink attacks of reliability §4.2).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    ctx: PathBuf,
    dest: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    let dest = dir.path().join("root");
    for d in ["dir/sub", "empty", "bar"] {
        fs::create_dir_all(ctx.join(d)).unwrap();
    }
    for (f, body) in [
        ("foo", "foo\n"),
        ("dir/a.txt", "a\n"),
        ("dir/sub/b.txt", "b\n"),
        ("bar/bat", "bat\n"),
        ("bar/baz", "baz\n"),
        ("arr[0].txt", "arr\n"),
        ("notes.md", "md\n"),
    ] {
        fs::write(ctx.join(f), body).unwrap();
    }
    symlink("a.txt", ctx.join("dir/link")).unwrap();
    symlink("/etc/passwd", ctx.join("escape")).unwrap();
    fs::create_dir_all(dest.join("exists")).unwrap();
    Fixture {
        _dir: dir,
        ctx,
        dest,
    }
}

fn op<'a>(sources: &'a [String], dest: &'a str) -> FileOp<'a> {
    FileOp {
        keyword: "COPY",
        sources,
        inline: &[],
        dest,
        workdir: "/",
        owner: None,
        chmod: None,
        excludes: &[],
        parents: false,
        unpack: Unpack::Never,
        checksum: None,
        link: false,
        fetch: None,
        downloaded: None,
        created: 0,
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn context(f: &Fixture) -> Source<'_> {
    Source {
        root: &f.ctx,
        visible: None,
        keep_owner: false,
    }
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

#[test]
fn destinations_and_directory_contents() {
    let cases: &[(&[&str], &str, &[&str])] = &[
        (&["foo"], "/abs", &["abs"]),
        (&["foo"], "/abs/", &["abs", "abs/foo"]),
        (&["foo"], "/exists", &["exists/foo"]),
        (
            &["dir"],
            "/d",
            &["d", "d/a.txt", "d/link", "d/sub", "d/sub/b.txt"],
        ),
        (
            &["dir/"],
            "/d/",
            &["d", "d/a.txt", "d/link", "d/sub", "d/sub/b.txt"],
        ),
        (&["bar/b*"], "/w/", &["w", "w/bat", "w/baz"]),
        (&["fo?"], "/foo2", &["foo2"]),
        (&["arr[[]0].txt"], "/mydir/", &["mydir", "mydir/arr[0].txt"]),
        (&["bar/doesnotexist*", "foo"], "/hello", &["hello"]),
        // BuildKit creates the destination even when a wildcard matched nothing.
        (&["nothing*"], "/none/", &["none"]),
        (&["../../foo"], "/clamped", &["clamped"]),
        (&["foo"], "rel", &["srv", "srv/rel"]),
    ];
    for (sources, dest, want) in cases {
        let f = fixture();
        let sources = strings(sources);
        let mut o = op(&sources, dest);
        o.workdir = "/srv";
        copy(&context(&f), &f.dest, &o).unwrap_or_else(|e| panic!("{sources:?} {dest}: {e}"));
        let mut got = tree(&f.dest);
        got.retain(|p| p != "exists");
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{sources:?} -> {dest}");
    }
    // A directory's symlinks are copied as symlinks.
    let f = fixture();
    copy(&context(&f), &f.dest, &op(&strings(&["dir"]), "/d")).unwrap();
    assert_eq!(
        fs::read_link(f.dest.join("d/link")).unwrap(),
        Path::new("a.txt")
    );
}

#[test]
fn errors() {
    let f = fixture();
    let visible = Visible::walk(&f.ctx, &strings(&["*", "!foo"])).unwrap();
    let hidden = || Source {
        visible: Some(&visible),
        ..context(&f)
    };
    let cases: Vec<(Source<'_>, Vec<String>, &str, &str)> = vec![
        (
            context(&f),
            strings(&["missing.txt"]),
            "/x",
            "COPY failed: \"missing.txt\" not found",
        ),
        (
            hidden(),
            strings(&["notes.md"]),
            "/x",
            "COPY failed: \"notes.md\" not found (it is excluded by the .dockerignore pattern \"*\")",
        ),
        // Missing, not excluded: no word of .dockerignore.
        (
            hidden(),
            strings(&["missing.txt"]),
            "/x",
            "COPY failed: \"missing.txt\" not found",
        ),
        (
            context(&f),
            strings(&["foo", "notes.md"]),
            "/x",
            "When using COPY with more than one source file, the destination must be a directory and end with a /",
        ),
        // A context symlink to a host file is followed inside the context only.
        (
            context(&f),
            strings(&["escape"]),
            "/x",
            "COPY failed: \"escape\" not found",
        ),
        (
            context(&f),
            strings(&["http://example.invalid/a"]),
            "/x",
            "source can't be a URL for COPY",
        ),
    ];
    for (source, sources, dest, want) in cases {
        let err = copy(&source, &f.dest, &op(&sources, dest)).unwrap_err();
        assert_eq!(err.to_string(), want, "{sources:?}");
    }
    fs::write(f.ctx.join(".wh.evil"), "").unwrap();
    let err = copy(&context(&f), &f.dest, &op(&strings(&["."]), "/all/")).unwrap_err();
    assert!(
        err.to_string().contains("reserved by the OCI layer format"),
        "{err}"
    );
}

#[test]
fn ownership_and_modes() {
    if !rustix::process::geteuid().is_root() {
        crate::testutil::skip("ownership tests need root");
        return;
    }
    let f = fixture();
    std::os::unix::fs::chown(f.ctx.join("foo"), Some(1234), Some(1234)).unwrap();
    copy(&context(&f), &f.dest, &op(&strings(&["foo"]), "/ctx-file")).unwrap();
    let m = fs::metadata(f.dest.join("ctx-file")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "context files become 0:0");

    let stage = Source {
        keep_owner: true,
        ..context(&f)
    };
    copy(&stage, &f.dest, &op(&strings(&["foo"]), "/stage-file")).unwrap();
    let m = fs::metadata(f.dest.join("stage-file")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 1234), "COPY --from keeps owners");

    let sources = strings(&["dir"]);
    let mut o = op(&sources, "/owned/");
    o.owner = Some((1001, 1002));
    o.chmod = Some("777".parse().unwrap());
    copy(&context(&f), &f.dest, &o).unwrap();
    for p in ["owned/a.txt", "owned/sub", "owned/sub/b.txt"] {
        let m = fs::metadata(f.dest.join(p)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
            (1001, 1002, 0o777),
            "{p}"
        );
    }
}

/// Missing directories on the way to the destination are made as BuildKit's
/// `MkdirAll(dest, 0755, chown)` makes them: owned by `--chown` (parents included), mode 0755
/// whatever `--chmod` says; an existing directory keeps its own mode and owner.
#[test]
fn missing_directories_are_made_0755_and_owned_by_chown() {
    // (source, dest, --chown, --chmod, [(path, uid, gid, mode)])
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<(u32, u32)>,
        Option<&'a str>,
        &'a [(&'a str, u32, u32, u32)],
    );
    let cases: &[Case] = &[
        // (source, dest, --chown, --chmod, [(path, uid, gid, mode)])
        (
            "foo",
            "/p/q/file",
            Some((1001, 1002)),
            None,
            &[
                ("p", 1001, 1002, 0o755),
                ("p/q", 1001, 1002, 0o755),
                ("p/q/file", 1001, 1002, 0o644),
            ],
        ),
        (
            "foo",
            "/p/q/",
            Some((7, 8)),
            Some("600"),
            &[
                ("p", 7, 8, 0o755),
                ("p/q", 7, 8, 0o755),
                ("p/q/foo", 7, 8, 0o600),
            ],
        ),
        (
            "dir",
            "/d/e",
            None,
            Some("751"),
            &[
                ("d", 0, 0, 0o755),
                ("d/e", 0, 0, 0o755),
                ("d/e/sub", 0, 0, 0o751),
                ("d/e/a.txt", 0, 0, 0o751),
            ],
        ),
        (
            "dir",
            "/exists/in",
            Some((5, 6)),
            None,
            &[
                ("exists", 0, 0, 0o700),
                ("exists/in", 5, 6, 0o755),
                ("exists/in/sub", 5, 6, 0o755),
            ],
        ),
    ];
    for (source, dest, owner, chmod, want) in cases {
        let f = fixture();
        fs::set_permissions(f.dest.join("exists"), fs::Permissions::from_mode(0o700)).unwrap();
        for p in ["foo", "dir/a.txt", "dir/sub/b.txt"] {
            fs::set_permissions(f.ctx.join(p), fs::Permissions::from_mode(0o644)).unwrap();
        }
        for p in ["dir", "dir/sub"] {
            fs::set_permissions(f.ctx.join(p), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let sources = strings(&[source]);
        let mut o = op(&sources, dest);
        o.owner = *owner;
        o.chmod = chmod.map(|c| c.parse().unwrap());
        copy(&context(&f), &f.dest, &o).unwrap();
        for (p, uid, gid, mode) in *want {
            let m = fs::symlink_metadata(f.dest.join(p)).unwrap();
            assert_eq!(
                (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
                (*uid, *gid, *mode),
                "COPY {source} {dest}: {p}"
            );
        }
    }
}

#[test]
fn destination_symlinks_stay_inside_the_root() {
    let f = fixture();
    symlink("/etc", f.dest.join("app")).unwrap();
    symlink("../../../../etc", f.dest.join("deep")).unwrap();
    copy(&context(&f), &f.dest, &op(&strings(&["foo"]), "/app/")).unwrap();
    copy(
        &context(&f),
        &f.dest,
        &op(&strings(&["notes.md"]), "/deep/"),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(f.dest.join("etc/foo")).unwrap(), "foo\n");
    assert_eq!(
        fs::read_to_string(f.dest.join("etc/notes.md")).unwrap(),
        "md\n"
    );
    assert!(!Path::new("/etc/foo").exists() && !Path::new("/etc/notes.md").exists());
}

#[test]
fn heredocs_excludes_parents_and_dockerignore() {
    let f = fixture();
    let inline = [InlineSource {
        name: "greeting".into(),
        data: "hi\n".into(),
        expand: true,
    }];
    let mut o = op(&[], "/etc/motd.d/");
    o.inline = &inline;
    copy(&context(&f), &f.dest, &o).unwrap();
    let path = f.dest.join("etc/motd.d/greeting");
    assert_eq!(fs::read_to_string(&path).unwrap(), "hi\n");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );

    let sources = strings(&["dir"]);
    let excludes = strings(&["*.txt"]);
    let mut o = op(&sources, "/x/");
    o.excludes = &excludes;
    copy(&context(&f), &f.dest, &o).unwrap();
    assert_eq!(tree(&f.dest.join("x")), ["link", "sub", "sub/b.txt"]);

    let sources = strings(&["dir/sub/b.txt", "bar/bat"]);
    let mut o = op(&sources, "/p/");
    o.parents = true;
    copy(&context(&f), &f.dest, &o).unwrap();
    assert_eq!(
        tree(&f.dest.join("p")),
        ["bar", "bar/bat", "dir", "dir/sub", "dir/sub/b.txt"]
    );

    let visible = Visible::walk(&f.ctx, &strings(&["*", "!dir/a.txt"])).unwrap();
    let source = Source {
        visible: Some(&visible),
        ..context(&f)
    };
    copy(&source, &f.dest, &op(&strings(&["."]), "/ctx/")).unwrap();
    assert_eq!(tree(&f.dest.join("ctx")), ["dir", "dir/a.txt"]);
}

#[test]
fn add_extracts_local_archives_by_content() {
    let f = fixture();
    let make = |name: &str, mode: &str| {
        let script = format!(
            "import tarfile,io\nt=tarfile.open('{}', '{mode}')\ni=tarfile.TarInfo('inside/file.txt')\nd=b'packed\\n'\ni.size=len(d)\nt.addfile(i, io.BytesIO(d))\nt.close()\n",
            f.ctx.join(name).display()
        );
        let ok = std::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            crate::testutil::skip("python3 is needed to write test archives");
        }
        ok
    };
    let archives = [
        ("a.tar", "w"),
        ("a.tar.gz", "w:gz"),
        ("a.tar.bz2", "w:bz2"),
        ("a.tar.xz", "w:xz"),
    ];
    for (name, mode) in archives {
        if !make(name, mode) {
            return;
        }
        let sources = vec![name.to_owned()];
        let dest = format!("/out-{name}/");
        let mut o = op(&sources, &dest);
        o.keyword = "ADD";
        o.unpack = Unpack::Local;
        copy(&context(&f), &f.dest, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
        let extracted = f.dest.join(format!("out-{name}/inside/file.txt"));
        assert_eq!(
            fs::read_to_string(&extracted).unwrap(),
            "packed\n",
            "{name}"
        );
    }
    // A file named like an archive that is not one is copied as it is; COPY never extracts.
    fs::write(f.ctx.join("fake.tar.gz"), "not gzip").unwrap();
    let sources = strings(&["fake.tar.gz", "a.tar.gz"]);
    let mut o = op(&sources, "/plain/");
    o.keyword = "COPY";
    copy(&context(&f), &f.dest, &o).unwrap();
    assert_eq!(tree(&f.dest.join("plain")), ["a.tar.gz", "fake.tar.gz"]);
}

#[test]
fn kaniko_context_archives_extract() {
    let Some(dir) = crate::testutil::conformance_dir() else {
        return;
    };
    let ctx = dir.join("kaniko-dockerfiles");
    let dest = tempfile::tempdir().unwrap();
    let source = Source {
        root: &ctx,
        visible: None,
        keep_owner: false,
    };
    let mut extracted = 0;
    for archive in [
        "context/tars/file.tar",
        "context/tars/file.tar.gz",
        "context/tars/file.bz2",
    ] {
        let sources = vec![archive.to_owned()];
        let target = format!("/{}/", archive.replace('/', "_"));
        let mut o = op(&sources, &target);
        o.keyword = "ADD";
        o.unpack = Unpack::Local;
        copy(&source, dest.path(), &o).unwrap_or_else(|e| panic!("{archive}: {e}"));
        let listing = tree(&dest.path().join(target.trim_matches('/')));
        assert!(!listing.is_empty(), "{archive}");
        // Extracted, not copied: the archive's own name is not in the destination.
        assert!(
            !listing.iter().any(|p| archive.ends_with(p.as_str())),
            "{archive}: {listing:?}"
        );
        extracted += 1;
    }
    assert_eq!(extracted, 3);
}

#[test]
fn go_match_table() {
    let cases = [
        ("*.txt", "a.txt", true),
        ("*.txt", ".txt", true),
        ("fo?", "foo", true),
        ("fo?", "fooo", false),
        ("[[]0]", "[0]", true),
        ("b[a-c]t", "bat", true),
        ("b[^a]t", "bat", false),
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("[", "[", false),
    ];
    for (p, n, want) in cases {
        assert_eq!(go_match(p, n), want, "{p} {n}");
    }
}

/// A context for `--parents`: nested text and Go files, and the reference's pivot examples.
fn parents_fixture() -> Fixture {
    let f = fixture();
    for (path, body) in [
        ("src/a.txt", "a"),
        ("src/x/b.txt", "b"),
        ("src/x/y/c.txt", "c"),
        ("src/x/y/d.go", "d"),
        ("src/z.go", "z"),
        ("x/y/a.txt", "xa"),
        ("x/y/b.txt", "xb"),
        ("x/y/c.md", "xc"),
        ("a/b/c.txt", "abc"),
    ] {
        let path = f.ctx.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }
    f
}

#[test]
fn parents_with_double_star_and_pivots() {
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        // `**` spans any number of directories, none included.
        (
            &["./src/**/*.txt"],
            &[],
            &[
                "src",
                "src/a.txt",
                "src/x",
                "src/x/b.txt",
                "src/x/y",
                "src/x/y/c.txt",
            ],
        ),
        // The reference's pivot examples: only what follows `/./` is kept.
        (&["./x/./y/*.txt"], &[], &["y", "y/a.txt", "y/b.txt"]),
        (&["./a/./b/c.txt"], &[], &["b", "b/c.txt"]),
        (&["src/./**/*.go"], &[], &["x", "x/y", "x/y/d.go", "z.go"]),
        // A wildcard pivot: every directory it matches is one.
        (&["*/./y/*.md"], &[], &["y", "y/c.md"]),
        // A matched directory comes with everything in it.
        (
            &["src/x"],
            &[],
            &[
                "src",
                "src/x",
                "src/x/b.txt",
                "src/x/y",
                "src/x/y/c.txt",
                "src/x/y/d.go",
            ],
        ),
        // --exclude applies below the pivot.
        (
            &["./src/**/*.txt"],
            &["**/b.txt"],
            &["src", "src/a.txt", "src/x", "src/x/y", "src/x/y/c.txt"],
        ),
        (&["./x/./y/*"], &["y/c.*"], &["y", "y/a.txt", "y/b.txt"]),
        // Patterns are anchored there, as in .dockerignore.
        (
            &["./x/./y/*"],
            &["c.*"],
            &["y", "y/a.txt", "y/b.txt", "y/c.md"],
        ),
        // A wildcard that matches nothing is not an error.
        (&["nothing/**/*.txt"], &[], &[]),
        // Several sources, each keeping its own path.
        (
            &["dir/sub/b.txt", "bar/bat"],
            &[],
            &["bar", "bar/bat", "dir", "dir/sub", "dir/sub/b.txt"],
        ),
    ];
    for (sources, excludes, want) in cases {
        let f = parents_fixture();
        let sources = strings(sources);
        let excludes = strings(excludes);
        let mut o = op(&sources, "/p/");
        o.parents = true;
        o.excludes = &excludes;
        copy(&context(&f), &f.dest, &o).unwrap_or_else(|e| panic!("{sources:?}: {e}"));
        assert_eq!(tree(&f.dest.join("p")), *want, "{sources:?} {excludes:?}");
    }

    // .dockerignore hides paths from the walk, and a hidden literal source is not found.
    let f = parents_fixture();
    let patterns = ["*", "!src", "src/x/b.txt", "src/x/y/d.go", "src/z.go"];
    let visible = Visible::walk(&f.ctx, &strings(&patterns)).unwrap();
    assert_eq!(
        visible.paths().iter().collect::<Vec<_>>(),
        ["src", "src/a.txt", "src/x", "src/x/y", "src/x/y/c.txt"]
    );
    let ignoring = Source {
        visible: Some(&visible),
        ..context(&f)
    };
    for (pattern, want) in [
        (
            "./src/**/*.txt",
            Ok(vec![
                "src",
                "src/a.txt",
                "src/x",
                "src/x/y",
                "src/x/y/c.txt",
            ]),
        ),
        (
            "src/x/b.txt",
            Err(
                "COPY failed: \"src/x/b.txt\" not found (it is excluded by the .dockerignore pattern \"src/x/b.txt\")",
            ),
        ),
    ] {
        let sources = strings(&[pattern]);
        let mut o = op(&sources, "/ign/");
        o.parents = true;
        match (copy(&ignoring, &f.dest, &o), want) {
            (Ok(()), Ok(want)) => assert_eq!(tree(&f.dest.join("ign")), want),
            (Err(e), Err(want)) => assert_eq!(e.to_string(), want),
            (got, want) => panic!("{pattern}: {got:?}, want {want:?}"),
        }
    }

    // Without --parents `**` is `*`: one component, contents flattened.
    let f = parents_fixture();
    copy(
        &context(&f),
        &f.dest,
        &op(&strings(&["src/**/*.txt"]), "/flat/"),
    )
    .unwrap();
    assert_eq!(tree(&f.dest.join("flat")), ["b.txt"]);

    // A literal --parents source must exist; a pivot does not change that.
    let f = parents_fixture();
    let sources = strings(&["./a/./b/missing.txt"]);
    let mut o = op(&sources, "/p/");
    o.parents = true;
    let err = copy(&context(&f), &f.dest, &o).unwrap_err();
    assert_eq!(
        err.to_string(),
        "COPY failed: \"./a/./b/missing.txt\" not found"
    );
}

#[test]
fn parents_keep_the_source_directories_metadata() {
    let f = parents_fixture();
    fs::set_permissions(f.ctx.join("src/x"), fs::Permissions::from_mode(0o700)).unwrap();
    set_mtime(&f.ctx.join("src/x"), 1_000_000_000);
    let sources = strings(&["./src/**/c.txt"]);
    let mut o = op(&sources, "/p/");
    o.parents = true;
    copy(&context(&f), &f.dest, &o).unwrap();
    let m = fs::metadata(f.dest.join("p/src/x")).unwrap();
    assert_eq!(
        (m.permissions().mode() & 0o7777, m.mtime()),
        (0o700, 1_000_000_000)
    );
    assert_eq!(
        fs::read_to_string(f.dest.join("p/src/x/y/c.txt")).unwrap(),
        "c"
    );
}

#[test]
fn parents_write_names_that_are_not_utf8_exactly() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let f = parents_fixture();
    let odd = OsStr::from_bytes(b"\xff-odd.txt");
    fs::write(f.ctx.join("src/x").join(odd), "odd").unwrap();
    let sources = strings(&["./src/**/*.txt"]);
    let mut o = op(&sources, "/p/");
    o.parents = true;
    copy(&context(&f), &f.dest, &o).unwrap();
    assert_eq!(
        fs::read_to_string(f.dest.join("p/src/x").join(odd)).unwrap(),
        "odd"
    );
}

fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A destination with `app -> /etc`, a sticky `/tmp` and a populated `/exists`.
fn link_fixture() -> Fixture {
    let f = fixture();
    fs::create_dir_all(f.dest.join("etc")).unwrap();
    fs::create_dir_all(f.dest.join("tmp")).unwrap();
    fs::set_permissions(f.dest.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(f.dest.join("exists/inside"), "old").unwrap();
    symlink("/etc", f.dest.join("app")).unwrap();
    f
}

#[test]
fn link_writes_the_destination_path_as_directories() {
    let run = |f: &Fixture, dest: &str, link: bool, chmod: Option<&str>| {
        let sources = strings(&["foo"]);
        let mut o = op(&sources, dest);
        o.link = link;
        o.chmod = chmod.map(|c| c.parse().unwrap());
        o.created = 1_234_567_890;
        copy(&context(f), &f.dest, &o).unwrap();
    };
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;

    // Without --link the symlink is followed and existing directories keep their modes.
    let f = link_fixture();
    run(&f, "/app/", false, None);
    run(&f, "/tmp/sub/", false, None);
    run(&f, "/exists", false, None);
    assert!(f.dest.join("app").is_symlink());
    assert_eq!(fs::read_to_string(f.dest.join("etc/foo")).unwrap(), "foo\n");
    assert_eq!(mode(&f.dest.join("tmp")), 0o1777);
    assert_eq!(
        fs::read_to_string(f.dest.join("exists/foo")).unwrap(),
        "foo\n"
    );

    // With --link nothing in the destination is read: the symlink becomes a directory, the
    // parents are rewritten 0755 with the step's time, and a file replaces the directory.
    let f = link_fixture();
    run(&f, "/app/", true, None);
    run(&f, "/tmp/sub/", true, None);
    run(&f, "/exists", true, None);
    let app = fs::symlink_metadata(f.dest.join("app")).unwrap();
    assert!(app.is_dir(), "app is a directory now");
    assert_eq!(fs::read_to_string(f.dest.join("app/foo")).unwrap(), "foo\n");
    assert!(!f.dest.join("etc/foo").exists());
    let tmp = fs::metadata(f.dest.join("tmp")).unwrap();
    assert_eq!(
        (tmp.permissions().mode() & 0o7777, tmp.mtime()),
        (0o755, 1_234_567_890)
    );
    assert_eq!(
        fs::read_to_string(f.dest.join("tmp/sub/foo")).unwrap(),
        "foo\n"
    );
    assert_eq!(fs::read_to_string(f.dest.join("exists")).unwrap(), "foo\n");

    // BuildKit ignores --link when --chmod is given.
    let f = link_fixture();
    run(&f, "/app/", true, Some("600"));
    assert!(f.dest.join("app").is_symlink());
    assert_eq!(mode(&f.dest.join("etc/foo")), 0o600);
}

#[test]
fn metadata_hardlinks_setuid_and_fifos_are_kept() {
    let f = fixture();
    let src = f.ctx.join("meta");
    fs::create_dir_all(src.join("private")).unwrap();
    for (name, mode) in [("suid", 0o4755), ("plain", 0o640), ("h1", 0o644)] {
        fs::write(src.join(name), name).unwrap();
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::hard_link(src.join("h1"), src.join("private/h2")).unwrap();
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o620),
        0,
    )
    .unwrap();
    // mknod's mode is masked by the umask.
    fs::set_permissions(src.join("pipe"), fs::Permissions::from_mode(0o620)).unwrap();

    copy(&context(&f), &f.dest, &op(&strings(&["meta"]), "/m/")).unwrap();
    let meta = |p: &str| fs::symlink_metadata(f.dest.join(p)).unwrap();
    for (path, want) in [
        ("m/suid", 0o4755),
        ("m/plain", 0o640),
        ("m/private", 0o700),
        ("m/pipe", 0o620),
    ] {
        assert_eq!(meta(path).permissions().mode() & 0o7777, want, "{path}");
    }
    assert!(meta("m/pipe").file_type().is_fifo());
    let (h1, h2) = (meta("m/h1"), meta("m/private/h2"));
    assert_eq!(
        (h1.ino(), h1.nlink()),
        (h2.ino(), 2),
        "one inode, two names"
    );

    // A single file keeps its mode too.
    copy(
        &context(&f),
        &f.dest,
        &op(&strings(&["meta/plain"]), "/single"),
    )
    .unwrap();
    assert_eq!(meta("single").permissions().mode() & 0o7777, 0o640);
}

#[test]
fn context_symlinks_are_copied_as_links_and_never_read_from_the_host() {
    // T-CTX-04 (BuildKit's testLocalSymlinkEscape).
    let f = fixture();
    let ctx = f.ctx.join("links");
    fs::create_dir_all(ctx.join("sub")).unwrap();
    symlink("/etc/passwd", ctx.join("foo")).unwrap();
    symlink("../../../etc/group", ctx.join("sub/bar")).unwrap();
    symlink("bay", ctx.join("bax")).unwrap();
    let source = Source {
        root: &ctx,
        visible: None,
        keep_owner: false,
    };
    copy(&source, &f.dest, &op(&strings(&["."]), "/c")).unwrap();
    for (link, target) in [
        ("c/foo", "/etc/passwd"),
        ("c/sub/bar", "../../../etc/group"),
        ("c/bax", "bay"),
    ] {
        assert_eq!(
            fs::read_link(f.dest.join(link)).unwrap(),
            Path::new(target),
            "{link}"
        );
    }
    assert!(!f.dest.join("c/etc").exists());

    // A top-level link is followed inside the context only: nothing there, nothing copied.
    let err = copy(&source, &f.dest, &op(&strings(&["foo"]), "/x")).unwrap_err();
    assert_eq!(err.to_string(), "COPY failed: \"foo\" not found");
    // With the target present in the context it is that file, not the host's, that is copied.
    fs::create_dir_all(ctx.join("etc")).unwrap();
    fs::write(ctx.join("etc/passwd"), "context passwd\n").unwrap();
    copy(&source, &f.dest, &op(&strings(&["foo"]), "/x")).unwrap();
    assert_eq!(
        fs::read_to_string(f.dest.join("x")).unwrap(),
        "context passwd\n"
    );
}
