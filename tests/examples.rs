//! The examples end to end, as root on the busybox base: every seed example builds with
//! `kiln build` and `kiln run` shows what the seed chapter shows; the multi-stage example builds
//! whole and with `--target`; `examples/busybox-base.sh` makes the same base as the test fixture.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Kiln, inspect, with_busybox};
use crate::{repo, text};

/// Builds `examples/NAME` as `tag`.
fn build_example(kiln: &Kiln, name: &str, tag: &str, extra: &[&str]) {
    let dir = repo().join("examples").join(name);
    let mut args = vec!["build", "-q", "-t", tag];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    kiln.ok(&args);
}

/// `kiln run ARGS`: exit code and standard output.
fn run(kiln: &Kiln, args: &[&str]) -> (i32, String) {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    let out = kiln.output(&all);
    let (stdout, stderr) = text(&out);
    let code = out.status.code().unwrap();
    if code != 0 {
        eprintln!("kiln run {args:?} exited with {code}: {stderr}");
    }
    (code, stdout)
}

fn run_ok(kiln: &Kiln, args: &[&str]) -> String {
    let (code, stdout) = run(kiln, args);
    assert_eq!(code, 0, "kiln run {args:?}");
    stdout
}

#[test]
fn env_cmd_prints_what_the_seed_shows() {
    let Some(kiln) = with_busybox() else { return };
    build_example(&kiln, "seed/env-cmd", "centos:env-cmd", &[]);
    assert_eq!(
        run_ok(&kiln, &["centos:env-cmd"]),
        "envir:test version:1.0\n"
    );
    // Its two RUNs: the user and the directory.
    assert_eq!(
        run_ok(
            &kiln,
            &[
                "centos:env-cmd",
                "sh",
                "-c",
                "id dot; test -d /dot && echo dir"
            ]
        ),
        "uid=1000(dot) gid=1000(dot) groups=1000(dot)\ndir\n"
    );
    let image = inspect(&kiln, "centos:env-cmd");
    assert_eq!(image["Author"], "dot");
    assert_eq!(
        image["Config"]["Env"],
        // The base sets no PATH, so the stage starts with BuildKit's default one.
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "envir=test",
            "version=1.0"
        ])
    );
}

#[test]
fn useradd_creates_a_user_that_can_run() {
    let Some(kiln) = with_busybox() else { return };
    build_example(&kiln, "seed/useradd", "centos:user", &[]);
    assert_eq!(
        run_ok(&kiln, &["centos:user", "id", "dot"]),
        "uid=1000(dot) gid=1000(dot) groups=1000(dot)\n"
    );
    assert_eq!(
        run_ok(
            &kiln,
            &[
                "--user",
                "dot",
                "centos:user",
                "sh",
                "-c",
                "echo $HOME; id -un; touch ~/ok && echo wrote"
            ]
        ),
        "/home/dot\ndot\nwrote\n"
    );
}

#[test]
fn add_workdir_unpacks_the_tarball_where_the_image_starts() {
    let Some(kiln) = with_busybox() else { return };
    build_example(&kiln, "seed/add-workdir", "nginx:add", &[]);
    assert_eq!(
        run_ok(&kiln, &["nginx:add", "sh", "-c", "pwd; ls"]),
        "/usr/share/nginx/html\n50x.html\nindex.html\n"
    );
    assert!(run_ok(&kiln, &["nginx:add", "cat", "index.html"]).contains("Hello from index.tar.gz"));
    let image = inspect(&kiln, "nginx:add");
    assert_eq!(
        image["Config"]["Cmd"],
        serde_json::json!(["httpd", "-f", "-v", "-p", "8080"])
    );
    assert_eq!(image["Config"]["WorkingDir"], "/usr/share/nginx/html");
}

#[test]
fn copy_dir_copies_the_contents_and_httpd_serves_them() {
    let Some(kiln) = with_busybox() else { return };
    build_example(&kiln, "seed/copy-dir", "nginx:copy", &[]);
    assert_eq!(
        run_ok(&kiln, &["nginx:copy", "ls", "-1"]),
        "50x.html\ncss\nindex.html\n",
        "webroot's contents, not webroot itself"
    );
    // webroot/index.html replaced the tarball's.
    assert!(run_ok(&kiln, &["nginx:copy", "cat", "index.html"]).contains("Hello from webroot"));
    // What the CMD's httpd serves, fetched inside the run's own network.
    let served = run_ok(
        &kiln,
        &[
            "--network=none",
            "nginx:copy",
            "sh",
            "-c",
            "httpd -p 127.0.0.1:8080 && wget -qO- http://127.0.0.1:8080/css/site.css",
        ],
    );
    assert_eq!(served, "h1 { font-family: sans-serif; }\n");
}

#[test]
fn user_runs_as_1001() {
    let Some(kiln) = with_busybox() else { return };
    build_example(&kiln, "seed/user", "centos:user-1001", &[]);
    let id = run_ok(&kiln, &["centos:user-1001", "id"]);
    assert!(id.starts_with("uid=1001(tomcat) gid=1001(tomcat)"), "{id}");
    assert_eq!(
        run_ok(
            &kiln,
            &["centos:user-1001", "sh", "-c", "pwd; echo $HOME; ls"]
        ),
        "/usr/share/nginx/html\n/home/tomcat\n50x.html\nindex.html\n"
    );
    assert!(
        run_ok(&kiln, &["centos:user-1001", "cat", "index.html"]).contains("Hello from webroot")
    );
    // The content is root's: the user cannot change it.
    let (code, _) = run(&kiln, &["centos:user-1001", "touch", "index.html"]);
    assert_eq!(code, 1);
    assert_eq!(inspect(&kiln, "centos:user-1001")["Config"]["User"], "1001");
}

#[test]
fn volume_is_declared_and_takes_a_host_directory() {
    let Some(kiln) = with_busybox() else { return };
    build_example(&kiln, "seed/volume", "centos:volume", &[]);
    assert_eq!(
        inspect(&kiln, "centos:volume")["Config"]["Volumes"],
        serde_json::json!({"/data": {}})
    );
    // Without -v, /data is an empty directory, as an anonymous volume would be.
    assert_eq!(
        run_ok(
            &kiln,
            &[
                "centos:volume",
                "sh",
                "-c",
                "test -d /data && ls -A /data | wc -l"
            ]
        ),
        "0\n"
    );
    // The seed's `-v $(pwd)/web:/data`.
    let web = repo().join("examples/seed/copy-dir/webroot");
    let volume = format!("{}:/data", web.display());
    assert_eq!(
        run_ok(&kiln, &["-v", &volume, "centos:volume", "ls", "/data"]),
        "css\nindex.html\n"
    );
}

#[test]
fn multi_stage_builds_whole_and_with_target() {
    let Some(kiln) = with_busybox() else { return };
    build_example(&kiln, "multi-stage", "greet:latest", &[]);
    assert_eq!(
        run_ok(&kiln, &["greet"]),
        "hello from a program made in the build stage\n"
    );
    // Only the program came over: nothing else of the build stage.
    assert_eq!(run(&kiln, &["greet", "test", "-e", "/src"]).0, 1);
    let layers = inspect(&kiln, "greet:latest")["RootFS"]["Layers"].clone();
    assert_eq!(layers.as_array().unwrap().len(), 2, "busybox + the COPY");

    build_example(&kiln, "multi-stage", "greet:build", &["--target", "build"]);
    assert_eq!(
        run_ok(&kiln, &["greet:build", "sh", "-c", "pwd; ls /src /out"]),
        "/src\n/out:\ngreet\n\n/src:\ngreet.in\n"
    );
    assert_eq!(
        inspect(&kiln, "greet:build")["Config"]["Cmd"],
        serde_json::Value::Null,
        "the build stage has the base's (no) CMD"
    );
}

/// The directory holding the `kiln` binary under test, first on a PATH.
fn path_with_kiln() -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_kiln"));
    let dir = bin.parent().unwrap().to_str().unwrap().to_owned();
    match std::env::var("PATH") {
        Ok(path) => format!("{dir}:{path}"),
        Err(_) => dir,
    }
}

#[test]
fn busybox_base_script_makes_the_fixtures_base() {
    let Some(fixture) = with_busybox() else {
        return;
    };
    if crate::support::tool("readelf").is_none() {
        return;
    }
    let script = repo().join("examples/busybox-base.sh");
    let kiln = Kiln::new();
    let out = Command::new("bash")
        .arg(&script)
        .env("KILN_ROOT", &kiln.root)
        .env("SOURCE_DATE_EPOCH", crate::support::EPOCH)
        .env("PATH", path_with_kiln())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.trim().starts_with("sha256:"), "{stdout}");
    let made = inspect(&kiln, "busybox:latest");
    assert_eq!(made["Config"]["Cmd"], serde_json::json!(["sh"]));
    // The same tree, byte for byte: the same layer as the fixture's.
    assert_eq!(
        made["RootFS"]["Layers"],
        inspect(&fixture, "busybox:latest")["RootFS"]["Layers"]
    );
    let (code, stdout) = run(&kiln, &["busybox"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, ""),
        "sh with no input ends at once"
    );
    assert_eq!(run_ok(&kiln, &["busybox", "echo", "hi"]), "hi\n");

    // A dynamically linked busybox is refused, and nothing is imported.
    let other = Kiln::new();
    let out = Command::new("bash")
        .arg(&script)
        .env("KILN_ROOT", &other.root)
        .env("BUSYBOX", "/bin/bash")
        .env("PATH", path_with_kiln())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("dynamically linked"), "{stderr}");
    assert!(!other.root.join("oci").exists(), "the store was written");
}
