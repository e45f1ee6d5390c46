//! Vectors from distribution/reference's own tests (reference_test.go, normalize_test.go,
//! regexp_test.go), run through the normalising parser. Where upstream's raw `Parse` is tested,
//! the expectation here is what `ParseNormalizedNamed` + `TagNameOnly` gives for the same input;
//! rows marked "kiln" are deliberate differences explained in the module docs and the report.

use super::*;

/// 64 hex digits, the digest upstream's tests use most.
macro_rules! ff {
    () => {
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    };
}
macro_rules! e66 {
    () => {
        "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"
    };
}
macro_rules! be1 {
    () => {
        "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912"
    };
}
macro_rules! dbc {
    () => {
        "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
    };
}
macro_rules! hexname {
    () => {
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    Hex,
    Upper,
    Format,
    TooLong,
    Tag,
    BadDigest,
    Unsupported,
}

fn kind(err: &ReferenceError) -> Kind {
    match err {
        ReferenceError::Empty => Kind::Empty,
        ReferenceError::HexRepositoryName { .. } => Kind::Hex,
        ReferenceError::Uppercase { .. } => Kind::Upper,
        ReferenceError::InvalidFormat { .. } => Kind::Format,
        ReferenceError::NameTooLong { .. } => Kind::TooLong,
        ReferenceError::InvalidTag { .. } => Kind::Tag,
        ReferenceError::InvalidDigest {
            source: DigestError::UnsupportedAlgorithm(_),
            ..
        } => Kind::Unsupported,
        ReferenceError::InvalidDigest { .. } => Kind::BadDigest,
    }
}

use Kind::*;

/// Input → normalised form, or the kind of error.
#[rustfmt::skip]
const TABLE: &[(&str, Result<&str, Kind>)] = &[
    // reference_test.go TestReferenceParse
    ("test_com", Ok("docker.io/library/test_com:latest")),
    ("test.com:tag", Ok("docker.io/library/test.com:tag")),
    ("test.com:5000", Ok("docker.io/library/test.com:5000")),
    ("test.com/repo:tag", Ok("test.com/repo:tag")),
    ("test:5000/repo", Ok("test:5000/repo:latest")),
    ("test:5000/repo:tag", Ok("test:5000/repo:tag")),
    (concat!("test:5000/repo@sha256:", ff!()), Ok(concat!("test:5000/repo@sha256:", ff!()))),
    (concat!("test:5000/repo:tag@sha256:", ff!()), Ok(concat!("test:5000/repo:tag@sha256:", ff!()))),
    ("", Err(Empty)),
    (":justtag", Err(Format)),
    (concat!("@sha256:", ff!()), Err(Format)),
    ("repo@sha256:ffffffffffffffffffffffffffffffffff", Err(BadDigest)),
    (concat!("validname@invaliddigest:", ff!()), Err(Unsupported)),
    ("Uppercase:tag", Err(Upper)),
    // Upstream's FIXME: an uppercase first component is taken for a host name.
    ("Uppercase/lowercase:tag", Ok("Uppercase/lowercase:tag")),
    ("test:5000/Uppercase/lowercase:tag", Err(Upper)),
    ("lowercase:Uppercase", Ok("docker.io/library/lowercase:Uppercase")),
    ("aa/asdf$$^/aa", Err(Format)),
    ("sub-dom1.foo.com/bar/baz/quux", Ok("sub-dom1.foo.com/bar/baz/quux:latest")),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", Ok("sub-dom1.foo.com/bar/baz/quux:some-long-tag")),
    ("b.gcr.io/test.example.com/my-app:test.example.com", Ok("b.gcr.io/test.example.com/my-app:test.example.com")),
    ("xn--n3h.com/myimage:xn--n3h.com", Ok("xn--n3h.com/myimage:xn--n3h.com")),
    // kiln: only sha256 digests (upstream also accepts sha384 and sha512).
    (concat!("xn--7o8h.com/myimage:xn--7o8h.com@sha512:", ff!(), ff!()), Err(Unsupported)),
    ("foo_bar.com:8080", Ok("docker.io/library/foo_bar.com:8080")),
    ("foo/foo_bar.com:8080", Ok("docker.io/foo/foo_bar.com:8080")),
    ("192.168.1.1", Ok("docker.io/library/192.168.1.1:latest")),
    ("192.168.1.1:tag", Ok("docker.io/library/192.168.1.1:tag")),
    ("192.168.1.1:5000", Ok("docker.io/library/192.168.1.1:5000")),
    ("192.168.1.1/repo", Ok("192.168.1.1/repo:latest")),
    ("192.168.1.1:5000/repo", Ok("192.168.1.1:5000/repo:latest")),
    ("192.168.1.1:5000/repo:5050", Ok("192.168.1.1:5000/repo:5050")),
    ("[2001:db8::1]", Err(Format)),
    ("[2001:db8::1]:5000", Err(Format)),
    ("[2001:db8::1]:tag", Err(Format)),
    ("[2001:db8::1]/repo", Ok("[2001:db8::1]/repo:latest")),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", Ok("[2001:db8:1:2:3:4:5:6]/repo:tag")),
    ("[2001:db8::1]:5000/repo", Ok("[2001:db8::1]:5000/repo:latest")),
    ("[2001:db8::1]:5000/repo:tag", Ok("[2001:db8::1]:5000/repo:tag")),
    (concat!("[2001:db8::1]:5000/repo@sha256:", ff!()), Ok(concat!("[2001:db8::1]:5000/repo@sha256:", ff!()))),
    (concat!("[2001:db8::1]:5000/repo:tag@sha256:", ff!()), Ok(concat!("[2001:db8::1]:5000/repo:tag@sha256:", ff!()))),
    ("[2001:db8::]:5000/repo", Ok("[2001:db8::]:5000/repo:latest")),
    ("[::1]:5000/repo", Ok("[::1]:5000/repo:latest")),
    ("[fe80::1%eth0]:5000/repo", Err(Format)),
    ("[fe80::1%@invalidzone]:5000/repo", Err(Format)),
    // normalize_test.go TestValidateReferenceName
    ("docker/docker", Ok("docker.io/docker/docker:latest")),
    ("library/debian", Ok("docker.io/library/debian:latest")),
    ("debian", Ok("docker.io/library/debian:latest")),
    ("docker.io/docker/docker", Ok("docker.io/docker/docker:latest")),
    ("docker.io/library/debian", Ok("docker.io/library/debian:latest")),
    ("docker.io/debian", Ok("docker.io/library/debian:latest")),
    ("index.docker.io/docker/docker", Ok("docker.io/docker/docker:latest")),
    ("index.docker.io/library/debian", Ok("docker.io/library/debian:latest")),
    ("index.docker.io/debian", Ok("docker.io/library/debian:latest")),
    ("127.0.0.1:5000/docker/docker", Ok("127.0.0.1:5000/docker/docker:latest")),
    ("127.0.0.1:5000/library/debian", Ok("127.0.0.1:5000/library/debian:latest")),
    ("127.0.0.1:5000/debian", Ok("127.0.0.1:5000/debian:latest")),
    ("192.168.0.1", Ok("docker.io/library/192.168.0.1:latest")),
    ("192.168.0.1:80", Ok("docker.io/library/192.168.0.1:80")),
    ("192.168.0.1:8/debian", Ok("192.168.0.1:8/debian:latest")),
    ("192.168.0.2:25000/debian", Ok("192.168.0.2:25000/debian:latest")),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", Ok( "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest"),
    ),
    ("[fc00::1]:5000/docker", Ok("[fc00::1]:5000/docker:latest")),
    ("[fc00::1]:5000/docker/docker", Ok("[fc00::1]:5000/docker/docker:latest")),
    ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", Ok("[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest")),
    (concat!("docker.io/", hexname!()), Ok(concat!("docker.io/library/", hexname!(), ":latest"))),
    ("Docker/docker", Ok("Docker/docker:latest")),
    ("DOCKER/docker", Ok("DOCKER/docker:latest")),
    ("https://github.com/docker/docker", Err(Format)),
    ("docker/Docker", Err(Upper)),
    ("-docker", Err(Format)),
    ("-docker/docker", Err(Format)),
    ("-docker.io/docker/docker", Err(Format)),
    ("docker///docker", Err(Format)),
    ("docker.io/docker/Docker", Err(Upper)),
    ("docker.io/docker///docker", Err(Format)),
    ("[fc00::1]", Err(Format)),
    ("[fc00::1]:5000", Err(Format)),
    ("fc00::1:5000/debian", Err(Format)),
    ("[fe80::1%eth0]:5000/debian", Err(Format)),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", Err(Format)),
    (hexname!(), Err(Hex)),
    // normalize_test.go TestValidateRemoteName
    ("docker-rules/docker", Ok("docker.io/docker-rules/docker:latest")),
    ("docker---rules/docker", Ok("docker.io/docker---rules/docker:latest")),
    ("doc/docker", Ok("docker.io/doc/docker:latest")),
    ("d/docker", Ok("docker.io/d/docker:latest")),
    ("jess/t", Ok("docker.io/jess/t:latest")),
    ("dock__er/docker", Ok("docker.io/dock__er/docker:latest")),
    ("docker-/docker", Err(Format)),
    ("-docker-/docker", Err(Format)),
    ("____/____", Err(Format)),
    ("_docker/_docker", Err(Format)),
    ("dock..er/docker", Err(Format)),
    ("dock_.er/docker", Err(Format)),
    ("dock-.er/docker", Err(Format)),
    ("docker/", Err(Format)),
    // normalize_test.go TestParseDockerRef (kiln keeps the tag next to a digest, as
    // ParseNormalizedNamed does; ParseDockerRef would drop it).
    ("busybox", Ok("docker.io/library/busybox:latest")),
    ("busybox:latest", Ok("docker.io/library/busybox:latest")),
    (concat!("busybox@", e66!()), Ok(concat!("docker.io/library/busybox@", e66!()))),
    ("library/busybox", Ok("docker.io/library/busybox:latest")),
    ("docker.io/busybox", Ok("docker.io/library/busybox:latest")),
    ("docker.io/library/busybox", Ok("docker.io/library/busybox:latest")),
    ("docker.io/busybox:latest", Ok("docker.io/library/busybox:latest")),
    ("library/busybox:latest", Ok("docker.io/library/busybox:latest")),
    ("gcr.io/library/busybox", Ok("gcr.io/library/busybox:latest")),
    (concat!("gcr.io/library/busybox:latest@", e66!()), Ok(concat!("gcr.io/library/busybox:latest@", e66!()))),
    // normalize_test.go TestParseReferenceWithTagAndDigest and TestParseAnyReference
    ("busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa", Ok( "docker.io/library/busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"),
    ),
    ("redis:latest", Ok("docker.io/library/redis:latest")),
    (concat!("dmcgowan/myapp@sha256:", dbc!()), Ok(concat!("docker.io/dmcgowan/myapp@sha256:", dbc!()))),
    ("docker.io/mcgowan/myapp:latest", Ok("docker.io/mcgowan/myapp:latest")),
    ("dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9", Ok( "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9:latest"),
    ),
    ("dbcc1", Ok("docker.io/library/dbcc1:latest")),
    // A bare digest is not a name: normalised, `sha256` is the repository and the hex a tag.
    (concat!("sha256:", dbc!()), Ok(concat!("docker.io/library/sha256:", dbc!()))),
    // regexp_test.go TestReferenceRegexp and TestFullNameRegexp
    ("registry.com:8080/myapp:tag", Ok("registry.com:8080/myapp:tag")),
    ("registry.com:8080/myapp@sha256:badbadbadbad", Err(BadDigest)),
    ("registry.com:8080/myapp:invalid~tag", Err(Tag)),
    ("bad_hostname.com:8080/myapp:tag", Err(Format)),
    (concat!("localhost:8080@", be1!()), Ok(concat!("docker.io/library/localhost:8080@", be1!()))),
    (concat!("localhost:8080/name@", be1!()), Ok(concat!("localhost:8080/name@", be1!()))),
    (concat!("localhost:http/name@", be1!()), Err(Format)),
    (concat!("localhost@", be1!()), Ok(concat!("docker.io/library/localhost@", be1!()))),
    ("registry.com:8080/myapp@bad", Err(BadDigest)),
    ("registry.com:8080/myapp@2bad", Err(BadDigest)),
    ("registry.io/foo/project--id.module--name.ver---sion--name", Ok("registry.io/foo/project--id.module--name.ver---sion--name:latest")),
    ("Asdf.com/foo/bar", Ok("Asdf.com/foo/bar:latest")),
    ("Foo/FarB", Err(Upper)),
    ("example.com/some_separator__underscore/myimage", Ok("example.com/some_separator__underscore/myimage:latest")),
    ("example.com/__underscore/myimage", Err(Format)),
    ("example.com/..dots/myimage", Err(Format)),
    ("example.com/.dots/myimage", Err(Format)),
    ("example.com/nodouble..dots/myimage", Err(Format)),
    ("foo.com:http/bar", Err(Format)),
    ("foo.com/", Err(Format)),
    ("a-/a/a/a", Err(Format)),
    ("foo/bar-", Err(Format)),
    ("foo/-bar", Err(Format)),
    ("docker./docker", Err(Format)),
    (".docker/docker", Err(Format)),
    ("do__cker:8080/docker", Err(Format)),
    ("aa-a/a", Ok("docker.io/aa-a/a:latest")),
    ("localhost:8080/bar", Ok("localhost:8080/bar:latest")),
    ("localhost/foo", Ok("localhost/foo:latest")),
    ("localhost", Ok("docker.io/library/localhost:latest")),
    // Quirks kept from upstream: case is checked up to the first `:`, so an uppercase digest
    // algorithm reads as an uppercase name; a registry-looking first component that only
    // parses lowercased is reported as uppercase.
    (concat!("repo@SHA256:", ff!()), Err(Upper)),
    ("Foo_bar/baz", Err(Upper)),
    ("Docker.io/foo", Ok("Docker.io/foo:latest")),
    // kiln: upstream returns a reference with an empty registry for these.
    ("foo_bar.com/app", Err(Format)),
    ("foo__bar.io/app:tag", Err(Format)),
    // Edges of the tag, digest and domain grammars.
    ("repo@sha256:FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", Err(BadDigest)),
    ("repo:-tag", Err(Tag)),
    ("repo:.tag", Err(Tag)),
    ("repo:_t.A-g", Ok("docker.io/library/repo:_t.A-g")),
    ("repo:", Err(Tag)),
    ("repo:a:b", Err(Tag)),
    ("busybox:latest@", Err(BadDigest)),
    (concat!("busybox@sha256:", ff!(), "@x"), Err(BadDigest)),
    ("example.com:0/x", Ok("example.com:0/x:latest")),
    ("example.com:/x", Err(Format)),
    ("[]:5000/x", Err(Format)),
    ("[::1/x", Err(Format)),
    ("[::1]5000/x", Err(Format)),
];

/// Rows built at run time: lengths at the 255-byte path limit and the 128-byte tag limit.
fn generated() -> Vec<(String, Result<String, Kind>)> {
    let long_namespace =
        ["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"; 4].join("_");
    let a255 = format!("{}a", "a/".repeat(127));
    vec![
        (format!("{long_namespace}/docker"), Err(TooLong)),
        (format!("domain/{}:tag", "a".repeat(256)), Err(TooLong)),
        (
            format!("example.com/{}:tag", "a".repeat(255)),
            Ok(format!("example.com/{}:tag", "a".repeat(255))),
        ),
        (
            format!("{a255}:tag-puts-this-over-max"),
            Ok(format!("docker.io/{a255}:tag-puts-this-over-max")),
        ),
        // Normalised, the first `a` is a path component, so this is 257 bytes.
        (format!("{}a:tag", "a/".repeat(128)), Err(TooLong)),
        // `library/` counts towards the limit.
        (
            "a".repeat(247),
            Ok(format!("docker.io/library/{}:latest", "a".repeat(247))),
        ),
        ("a".repeat(248), Err(TooLong)),
        (
            format!("repo:{}", "t".repeat(128)),
            Ok(format!("docker.io/library/repo:{}", "t".repeat(128))),
        ),
        (format!("repo:{}", "t".repeat(129)), Err(Tag)),
    ]
}

fn all_rows() -> Vec<(String, Result<String, Kind>)> {
    let fixed = TABLE
        .iter()
        .map(|(input, want)| (input.to_string(), want.map(str::to_owned)));
    fixed.chain(generated()).collect()
}

#[test]
fn upstream_vectors() {
    let rows = all_rows();
    let mut ran = 0;
    for (input, want) in &rows {
        let got = Reference::parse(input);
        match (want, &got) {
            (Ok(normalised), Ok(reference)) => {
                assert_eq!(&reference.to_string(), normalised, "{input}");
                // The normalised form is a fixed point.
                assert_eq!(
                    Reference::parse(normalised).as_ref(),
                    Ok(reference),
                    "{input}"
                );
                assert_eq!(
                    input.parse::<Reference>().as_ref(),
                    Ok(reference),
                    "{input}"
                );
                assert!(
                    reference.tag().is_some() || reference.digest().is_some(),
                    "{input}"
                );
            }
            (Err(want), Err(err)) => assert_eq!(kind(err), *want, "{input}: {err}"),
            _ => panic!("{input}: expected {want:?}, got {got:?}"),
        }
        ran += 1;
    }
    assert_eq!(ran, 169);
    assert_eq!(rows.iter().filter(|(_, want)| want.is_ok()).count(), 94);
}

/// Input, registry, repository, tag, digest.
type Parts = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

#[test]
fn parts() {
    // normalize_test.go TestNormalizedSplitHostname, plus tag and digest.
    let digest = concat!("sha256:", ff!());
    let cases: &[Parts] = &[
        ("test.com/foo", "test.com", "foo", Some("latest"), None),
        (
            "test_com/foo",
            "docker.io",
            "test_com/foo",
            Some("latest"),
            None,
        ),
        (
            "docker/migrator",
            "docker.io",
            "docker/migrator",
            Some("latest"),
            None,
        ),
        (
            "test.com:8080/foo",
            "test.com:8080",
            "foo",
            Some("latest"),
            None,
        ),
        (
            "test-com:8080/foo",
            "test-com:8080",
            "foo",
            Some("latest"),
            None,
        ),
        ("foo", "docker.io", "library/foo", Some("latest"), None),
        (
            "xn--n3h.com/foo",
            "xn--n3h.com",
            "foo",
            Some("latest"),
            None,
        ),
        (
            "xn--n3h.com:18080/foo",
            "xn--n3h.com:18080",
            "foo",
            Some("latest"),
            None,
        ),
        (
            "docker.io/foo",
            "docker.io",
            "library/foo",
            Some("latest"),
            None,
        ),
        (
            "docker.io/library/foo",
            "docker.io",
            "library/foo",
            Some("latest"),
            None,
        ),
        (
            "docker.io/library/foo/bar",
            "docker.io",
            "library/foo/bar",
            Some("latest"),
            None,
        ),
        (
            "localhost:8080/foo:v1",
            "localhost:8080",
            "foo",
            Some("v1"),
            None,
        ),
        (
            concat!("busybox@sha256:", ff!()),
            "docker.io",
            "library/busybox",
            None,
            Some(digest),
        ),
        (
            concat!("[::1]:5000/a/b:t@sha256:", ff!()),
            "[::1]:5000",
            "a/b",
            Some("t"),
            Some(digest),
        ),
    ];
    for (input, registry, repository, tag, want_digest) in cases {
        let r = Reference::parse(input).unwrap();
        assert_eq!(r.registry(), *registry, "{input}");
        assert_eq!(r.repository(), *repository, "{input}");
        assert_eq!(r.tag(), *tag, "{input}");
        assert_eq!(
            r.digest().map(Digest::to_string).as_deref(),
            *want_digest,
            "{input}"
        );
    }
    assert_eq!(cases.len(), 14);
}

#[test]
fn familiar_names() {
    // normalize_test.go TestParseRepositoryInfo: remote, familiar, full, ambiguous, domain.
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
        ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
        ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
        ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
        ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "", "127.0.0.1:8000"),
        ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "", "127.0.0.1:8000"),
        ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "", "example.com"),
        ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
        ("private/moonbase", "example.com:8000/private/moonbase", "example.com:8000/private/moonbase", "", "example.com:8000"),
        ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "", "example.com:8000"),
        ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base", "index.docker.io/library/ubuntu-12.04-base", "docker.io"),
        ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
        ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
        ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
        ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
        ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
    ];
    let mut ran = 0;
    for (remote, familiar, full, ambiguous, domain) in cases {
        for input in [familiar, full, ambiguous]
            .into_iter()
            .filter(|s| !s.is_empty())
        {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.familiar_name(), *familiar, "{input}");
            assert_eq!(r.to_string(), format!("{full}:latest"), "{input}");
            assert_eq!(r.registry(), *domain, "{input}");
            assert_eq!(r.repository(), *remote, "{input}");
            ran += 1;
        }
    }
    assert_eq!(ran, 36);
}

#[test]
fn familiar_name_round_trips() {
    // The familiar name plus the tag and digest parses back to the same reference, for every
    // valid upstream vector.
    let mut ran = 0;
    for (input, want) in all_rows() {
        if want.is_err() {
            continue;
        }
        let r = Reference::parse(&input).unwrap();
        let mut familiar = r.familiar_name();
        if let Some(tag) = r.tag() {
            familiar = format!("{familiar}:{tag}");
        }
        if let Some(digest) = r.digest() {
            familiar = format!("{familiar}@{digest}");
        }
        assert_eq!(Reference::parse(&familiar), Ok(r), "{input} → {familiar}");
        ran += 1;
    }
    assert_eq!(ran, 94);

    // As upstream: a Docker Hub namespace that looks like a host has an ambiguous short form.
    let hub = Reference::parse("docker.io/localhost/x").unwrap();
    assert_eq!(hub.familiar_name(), "localhost/x");
    assert_eq!(
        Reference::parse("localhost/x").unwrap().registry(),
        "localhost"
    );
}

#[test]
fn with_tag() {
    let digest = concat!("sha256:", ff!());
    let cases: &[(&str, &str, Result<&str, Kind>)] = &[
        ("test.com/foo", "tag", Ok("test.com/foo:tag")),
        ("foo", "tag2", Ok("docker.io/library/foo:tag2")),
        ("test.com:8000/foo", "TAG5", Ok("test.com:8000/foo:TAG5")),
        (
            concat!("test.com:8000/foo@sha256:", ff!()),
            "TAG5",
            Ok(concat!("test.com:8000/foo:TAG5@sha256:", ff!())),
        ),
        (
            concat!("test.com:8000/foo:old@sha256:", ff!()),
            "latest",
            Ok(concat!("test.com:8000/foo:latest@sha256:", ff!())),
        ),
        ("busybox", "-foo", Err(Tag)),
        ("busybox", "", Err(Tag)),
        ("busybox", "a/b", Err(Tag)),
        ("busybox", "a@b", Err(Tag)),
    ];
    for (name, tag, want) in cases {
        let r = Reference::parse(name).unwrap();
        match (want, r.with_tag(tag)) {
            (Ok(want), Ok(tagged)) => {
                assert_eq!(tagged.to_string(), *want);
                assert_eq!(tagged.tag(), Some(*tag));
                assert_eq!(tagged.digest(), r.digest());
                assert_eq!(tagged.digest().is_some(), want.contains(digest));
            }
            (Err(want), Err(err)) => {
                assert_eq!(kind(&err), *want);
                assert_eq!(
                    err,
                    ReferenceError::InvalidTag {
                        tag: tag.to_string()
                    }
                );
            }
            (want, got) => panic!("{name} + {tag}: expected {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn api_host_and_loopback() {
    let cases: &[(&str, &str, bool)] = &[
        ("busybox", "registry-1.docker.io", false),
        ("index.docker.io/user/repo", "registry-1.docker.io", false),
        ("ghcr.io/o/r", "ghcr.io", false),
        ("localhost/x", "localhost", true),
        ("localhost:5000/x", "localhost:5000", true),
        ("LOCALHOST:5000/x", "LOCALHOST:5000", true),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", true),
        ("127.1.2.3/x", "127.1.2.3", true),
        ("128.0.0.1:5000/x", "128.0.0.1:5000", false),
        ("[::1]:5000/x", "[::1]:5000", true),
        ("[::1]/x", "[::1]", true),
        ("[0:0:0:0:0:0:0:1]:5000/x", "[0:0:0:0:0:0:0:1]:5000", true),
        ("[::ffff:7f00:1]:5000/x", "[::ffff:7f00:1]:5000", true),
        ("[::2]:5000/x", "[::2]:5000", false),
        ("[fffff]:5000/x", "[fffff]:5000", false),
        ("localhost.example.com/x", "localhost.example.com", false),
        ("127.0.0.1.nip.io/x", "127.0.0.1.nip.io", false),
        // A single component is a Docker Hub image, not a host.
        ("localhost:5000", "registry-1.docker.io", false),
    ];
    for (input, host, loopback) in cases {
        let r = Reference::parse(input).unwrap();
        assert_eq!(r.api_host(), *host, "{input}");
        assert_eq!(r.is_loopback(), *loopback, "{input}");
    }
    assert_eq!(cases.len(), 18);
}

#[test]
fn error_messages() {
    use std::error::Error as _;

    let err = Reference::parse("docker/Docker").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid reference format \"docker/Docker\": repository name must be lowercase"
    );
    let err = Reference::parse("registry.com:8080/myapp:invalid~tag").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid tag \"invalid~tag\": expected 1 to 128 of [A-Za-z0-9_.-], not starting with . or -"
    );
    let err = Reference::parse(concat!("r@md5:", ff!())).unwrap_err();
    assert_eq!(
        err.to_string(),
        concat!("invalid digest in reference \"r@md5:", ff!(), "\"")
    );
    let source = err.source().map(ToString::to_string);
    assert_eq!(
        source.as_deref(),
        Some("unsupported digest algorithm \"md5\": only sha256 is supported")
    );
    let err = Reference::parse(&"a".repeat(250)).unwrap_err();
    assert!(
        matches!(err, ReferenceError::NameTooLong { length: 258, .. }),
        "{err:?}"
    );
    assert_eq!(Reference::parse("").unwrap_err(), ReferenceError::Empty);
}
