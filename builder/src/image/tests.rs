//! Tests for the image model: canonical bytes, Docker field names, strict document reading.

use std::collections::HashMap;

use kiln_registry::Digest;
use oci_spec::image::{Descriptor, MediaType};
use serde_json::{Value, json};

use super::manifest::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
};
use super::*;

fn digest(n: u8) -> Digest {
    Digest::of(&[n])
}

fn sample_config() -> ImageConfig {
    let mut c = ImageConfig::new("amd64", "linux");
    c.created = Some("1970-01-01T00:00:00Z".into());
    c.config.env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
    c.config.cmd = Some(vec!["sh".into()]);
    c.config.working_dir = "/app".into();
    c.rootfs.diff_ids = vec![digest(1)];
    c.history = vec![History {
        created: Some("1970-01-01T00:00:00Z".into()),
        created_by: Some("COPY . /app # buildkit".into()),
        comment: Some("buildkit.dockerfile.v0".into()),
        ..History::default()
    }];
    c
}

#[test]
fn canonical_json_is_independent_of_insertion_order() {
    let labels = [("z", "1"), ("a", "2"), ("m", "3"), ("b", "4"), ("y", "5")];
    let ports = ["8080/tcp", "53/udp", "80/tcp", "443/tcp"];
    let volumes = ["/var/lib/x", "/data", "/cache"];

    let build = |order: &[usize]| {
        let mut c = sample_config();
        for &i in order {
            let (k, v) = labels[i % labels.len()];
            c.config.labels.insert(k.into(), v.into());
            c.config.exposed_ports.insert(ports[i % ports.len()].into());
            c.config.volumes.insert(volumes[i % volumes.len()].into());
            c.extra.insert(format!("x-{k}"), json!({"k": k, "a": [i]}));
        }
        canonical_json(&c).unwrap()
    };
    let forward = build(&[0, 1, 2, 3, 4]);
    let backward = build(&[4, 3, 2, 1, 0]);
    let shuffled = build(&[2, 4, 0, 3, 1]);
    assert_eq!(forward, backward);
    assert_eq!(forward, shuffled);
    // Keys inside `extra` values are sorted too, and the output is compact.
    let text = String::from_utf8(forward).unwrap();
    assert!(text.contains(r#""x-a":{"a":["#), "{text}");
    assert!(!text.contains(": ") && !text.contains('\n'));
}

#[test]
fn canonical_json_of_a_fixed_config_is_pinned() {
    let mut c = sample_config();
    c.config
        .labels
        .insert("org.opencontainers.image.title".into(), "kiln".into());
    c.config.exposed_ports.insert("80/tcp".into());
    let bytes = canonical_json(&c).unwrap();
    let expected = concat!(
        r#"{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"#,
        r#""ExposedPorts":{"80/tcp":{}},"Labels":{"org.opencontainers.image.title":"kiln"},"WorkingDir":"/app"},"#,
        r#""created":"1970-01-01T00:00:00Z","history":[{"comment":"buildkit.dockerfile.v0","created":"1970-01-01T00:00:00Z","#,
        r#""created_by":"COPY . /app # buildkit"}],"os":"linux","rootfs":{"diff_ids":["sha256:4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"],"type":"layers"}}"#,
    );
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
    assert_eq!(
        Digest::of(&bytes).to_string(),
        "sha256:284aab0b2c8061655bed460122e5d4d9343249a264a68f9d00130cb6663d6809"
    );
}

#[test]
fn oci_spec_hashmaps_serialise_sorted() {
    let keys = [
        "org.b", "org.a", "org.z", "org.c", "org.y", "org.m", "org.d",
    ];
    let mut outputs = Vec::new();
    for rotate in 0..keys.len() {
        let mut annotations = HashMap::new();
        for i in 0..keys.len() {
            let k = keys[(i + rotate) % keys.len()];
            annotations.insert(k.to_owned(), k.to_uppercase());
        }
        let mut d = descriptor(MediaType::ImageManifest, &digest(2), 42);
        d.set_annotations(Some(annotations));
        outputs.push(canonical_json(&d).unwrap());
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    let text = String::from_utf8(outputs.remove(0)).unwrap();
    let positions: Vec<usize> = [
        "org.a", "org.b", "org.c", "org.d", "org.m", "org.y", "org.z",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\"")).unwrap())
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn docker_field_names_round_trip_with_unknown_fields() {
    // A legacy `docker inspect`-style config: every Docker field, nulls, and fields kiln does
    // not model at both levels.
    let input = json!({
        "architecture": "arm",
        "variant": "v7",
        "os": "linux",
        "os.version": "6.1",
        "author": "someone",
        "created": "2024-02-29T12:00:00.123456789Z",
        "docker_version": "24.0.7",
        "container": "deadbeef",
        "container_config": {"Hostname": "deadbeef", "Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"sh\"]"]},
        "config": {
            "Hostname": "",
            "Tty": false,
            "User": "1000:1000",
            "ExposedPorts": {"443/tcp": {}, "80/tcp": {}},
            "Env": ["A=1", "B=2"],
            "Entrypoint": ["/entry.sh"],
            "Cmd": ["serve", "--port", "80"],
            "Volumes": {"/data": {}},
            "WorkingDir": "/srv",
            "Labels": {"b": "2", "a": "1"},
            "StopSignal": "SIGQUIT",
            "ArgsEscaped": true,
            "Healthcheck": {
                "Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                "Interval": 30_000_000_000i64,
                "Timeout": 5_000_000_000i64,
                "StartPeriod": 1_000_000_000i64,
                "StartInterval": 2_000_000_000i64,
                "Retries": 3,
                "FutureKnob": "kept"
            },
            "OnBuild": ["RUN echo onbuild", "COPY . /src"],
            "Shell": ["/bin/bash", "-o", "pipefail", "-c"],
            "Image": "sha256:0000",
            "MacAddress": "02:42:ac:11:00:02"
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(3).to_string()]},
        "history": [
            {"created": "2024-02-29T12:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:x in /", "empty_layer": false},
            {"created_by": "CMD [\"sh\"]", "empty_layer": true, "comment": "buildkit.dockerfile.v0", "x-extra": 1}
        ]
    });
    let bytes = serde_json::to_vec(&input).unwrap();
    let c = ImageConfig::from_json(&bytes).unwrap();

    assert_eq!(c.architecture, "arm");
    assert_eq!(c.variant.as_deref(), Some("v7"));
    assert_eq!(c.os_version.as_deref(), Some("6.1"));
    assert_eq!(c.config.user, "1000:1000");
    assert_eq!(
        c.config.exposed_ports.iter().collect::<Vec<_>>(),
        ["443/tcp", "80/tcp"]
    );
    assert_eq!(c.config.entrypoint, Some(vec!["/entry.sh".to_owned()]));
    assert_eq!(c.config.stop_signal, "SIGQUIT");
    assert!(c.config.args_escaped);
    let hc = c.config.healthcheck.as_ref().unwrap();
    assert_eq!(hc.interval, 30_000_000_000);
    assert_eq!(hc.start_interval, 2_000_000_000);
    assert_eq!(hc.retries, 3);
    assert_eq!(hc.extra["FutureKnob"], json!("kept"));
    assert_eq!(c.config.on_build, ["RUN echo onbuild", "COPY . /src"]);
    assert_eq!(c.config.shell[0], "/bin/bash");
    assert_eq!(c.config.extra["MacAddress"], json!("02:42:ac:11:00:02"));
    assert_eq!(c.config.extra["Hostname"], json!(""));
    assert_eq!(c.extra["docker_version"], json!("24.0.7"));
    assert_eq!(c.rootfs.diff_ids, [digest(3)]);
    assert!(!c.history[0].empty_layer);
    assert!(c.history[1].empty_layer);
    assert_eq!(c.history[1].extra["x-extra"], json!(1));

    // Writing it back gives the same JSON value, except that `"empty_layer": false` is omitted
    // (Go's omitempty).
    let mut expected = input.clone();
    expected["history"][0]
        .as_object_mut()
        .unwrap()
        .remove("empty_layer");
    let written: Value = serde_json::from_slice(&canonical_json(&c).unwrap()).unwrap();
    assert_eq!(written, expected);
    // And reading the written bytes gives the same value.
    assert_eq!(
        ImageConfig::from_json(&canonical_json(&c).unwrap()).unwrap(),
        c
    );
}

#[test]
fn cmd_unset_and_cmd_empty_stay_distinct() {
    type Argv = Option<Vec<String>>;
    // (config JSON, expected Cmd, expected Entrypoint, JSON written back)
    let cases: &[(Value, Argv, Argv, Value)] = &[
        (json!({}), None, None, json!({})),
        (json!({"Cmd": null}), None, None, json!({})),
        (json!({"Cmd": []}), Some(vec![]), None, json!({"Cmd": []})),
        (
            json!({"Cmd": ["a"], "Entrypoint": null}),
            Some(vec!["a".into()]),
            None,
            json!({"Cmd": ["a"]}),
        ),
        (
            json!({"Entrypoint": []}),
            None,
            Some(vec![]),
            json!({"Entrypoint": []}),
        ),
    ];
    for (config, cmd, entrypoint, written) in cases {
        let doc = json!({"architecture": "amd64", "os": "linux", "config": config,
                         "rootfs": {"type": "layers", "diff_ids": []}});
        let c = ImageConfig::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(&c.config.cmd, cmd, "{config}");
        assert_eq!(&c.config.entrypoint, entrypoint, "{config}");
        let back: Value = serde_json::from_slice(&canonical_json(&c).unwrap()).unwrap();
        assert_eq!(&back["config"], written, "{config}");
    }
}

#[test]
fn empty_fields_are_omitted_and_nulls_read_as_empty() {
    let c = ImageConfig::new("amd64", "linux");
    assert_eq!(
        String::from_utf8(canonical_json(&c).unwrap()).unwrap(),
        r#"{"architecture":"amd64","config":{},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#
    );
    let legacy = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"User": "", "Env": null, "Labels": null, "OnBuild": null, "Volumes": null,
                   "ExposedPorts": null, "Shell": null, "Healthcheck": null, "WorkingDir": ""},
        "rootfs": {"type": "layers", "diff_ids": null},
        "history": null
    });
    let parsed = ImageConfig::from_json(&serde_json::to_vec(&legacy).unwrap()).unwrap();
    assert_eq!(parsed, c);
}

#[test]
fn bad_configs_are_errors() {
    let cases: &[&str] = &[
        "",
        "[]",
        r#"{"architecture":"amd64","os":"linux"}"#,
        r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha512:00"]}}"#,
        r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}} x"#,
        r#"{"architecture":"amd64","os":"linux","config":{"Cmd":"sh"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
    ];
    for input in cases {
        let err = ImageConfig::from_json(input.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::Json {
                    what: "image config",
                    ..
                }
            ),
            "{input}: {err:?}"
        );
    }
}

#[test]
fn platform_is_explicit() {
    let p = platform("arm64", "linux", Some("v8"));
    assert_eq!(
        String::from_utf8(canonical_json(&p).unwrap()).unwrap(),
        r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#
    );
    let p = platform("s390x", "linux", None);
    assert_eq!(
        String::from_utf8(canonical_json(&p).unwrap()).unwrap(),
        r#"{"architecture":"s390x","os":"linux"}"#
    );
    let mut c = ImageConfig::new("riscv64", "linux");
    c.os_version = Some("1".into());
    assert_eq!(
        canonical_json(&c.platform()).unwrap(),
        br#"{"architecture":"riscv64","os":"linux"}"#
    );
}

#[test]
fn layer_media_types_convert_between_families() {
    let docker = |s: &str| MediaType::Other(s.to_owned());
    let cases: Vec<(MediaType, MediaTypes, Option<MediaType>)> = vec![
        (
            MediaType::ImageLayerGzip,
            MediaTypes::Docker,
            Some(docker(DOCKER_LAYER_GZIP)),
        ),
        (
            MediaType::ImageLayer,
            MediaTypes::Docker,
            Some(docker(DOCKER_LAYER_TAR)),
        ),
        (MediaType::ImageLayerZstd, MediaTypes::Docker, None),
        (
            MediaType::ImageLayerZstd,
            MediaTypes::Oci,
            Some(MediaType::ImageLayerZstd),
        ),
        (
            docker(DOCKER_LAYER_GZIP),
            MediaTypes::Oci,
            Some(MediaType::ImageLayerGzip),
        ),
        (
            docker(DOCKER_LAYER_GZIP),
            MediaTypes::Docker,
            Some(docker(DOCKER_LAYER_GZIP)),
        ),
        (MediaType::ImageConfig, MediaTypes::Oci, None),
        (docker("text/plain"), MediaTypes::Docker, None),
    ];
    for (input, family, want) in &cases {
        assert_eq!(
            family.convert_layer(input).ok().as_ref(),
            want.as_ref(),
            "{input} as {family:?}"
        );
    }
    assert_eq!(cases.len(), 8);
}

fn layer_desc(n: u8) -> Descriptor {
    descriptor(MediaType::ImageLayerGzip, &digest(n), 100 + u64::from(n))
}

#[test]
fn manifests_are_written_in_either_family() {
    let config = descriptor(MediaType::ImageConfig, &digest(9), 7);
    let layers = [layer_desc(1), layer_desc(2)];

    let oci = build_manifest(&config, &layers, MediaTypes::Oci, &Default::default()).unwrap();
    let oci: Value = serde_json::from_slice(&canonical_json(&oci).unwrap()).unwrap();
    assert_eq!(
        oci,
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(9).to_string(), "size": 7},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(1).to_string(), "size": 101},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(2).to_string(), "size": 102}
            ]
        })
    );

    let docker = build_manifest(&config, &layers, MediaTypes::Docker, &Default::default()).unwrap();
    let bytes = canonical_json(&docker).unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value["mediaType"], DOCKER_MANIFEST);
    assert_eq!(value["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(value["layers"][0]["mediaType"], DOCKER_LAYER_GZIP);
    assert_eq!(value["layers"][1]["mediaType"], DOCKER_LAYER_GZIP);
    // What we write, we read back, in both families.
    let back = parse_manifest(&bytes, Some(&MediaTypes::Docker.manifest())).unwrap();
    assert_eq!(back, docker);
    assert_eq!(image_id(&back).unwrap(), digest(9));

    let zstd = [descriptor(MediaType::ImageLayerZstd, &digest(1), 1)];
    assert!(matches!(
        build_manifest(&config, &zstd, MediaTypes::Docker, &Default::default()),
        Err(ImageError::UnsupportedMediaType { .. })
    ));

    let mut m = descriptor(MediaTypes::Docker.manifest(), &digest(5), 9);
    m.set_platform(Some(platform("amd64", "linux", None)));
    let list = build_index(&[m], MediaTypes::Docker).unwrap();
    let bytes = canonical_json(&list).unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value["mediaType"], DOCKER_MANIFEST_LIST);
    assert_eq!(
        value["manifests"][0]["platform"],
        json!({"architecture": "amd64", "os": "linux"})
    );
    assert_eq!(parse_index(&bytes, None).unwrap(), list);
}

/// The outcome `parse_document` should have for one input.
#[derive(Debug, PartialEq)]
enum Outcome {
    Manifest,
    Index,
    Ambiguous,
    Mismatch,
    Unsupported,
    NotAManifest,
    Unrecognised,
    SchemaVersion,
    Json,
    Digest,
}

fn outcome(r: Result<Document, ImageError>) -> Outcome {
    use kiln_registry::manifest::ManifestError;
    match r {
        Ok(Document::Manifest(_)) => Outcome::Manifest,
        Ok(Document::Index(_)) => Outcome::Index,
        Err(ImageError::Manifest(e)) => match e {
            ManifestError::Ambiguous => Outcome::Ambiguous,
            ManifestError::MediaTypeMismatch { .. } => Outcome::Mismatch,
            ManifestError::Schema1(_) => Outcome::Unsupported,
            ManifestError::Unsupported(_) => Outcome::NotAManifest,
            ManifestError::Unrecognised => Outcome::Unrecognised,
            ManifestError::SchemaVersion(_) => Outcome::SchemaVersion,
            ManifestError::Json { .. } => Outcome::Json,
            ManifestError::Digest(_) => Outcome::Digest,
        },
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[test]
fn documents_are_read_strictly() {
    let d = digest(1).to_string();
    let cfg = format!(
        r#"{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":2}}"#
    );
    let dcfg = format!(r#"{{"mediaType":"{DOCKER_CONFIG}","digest":"{d}","size":2}}"#);
    let layer = format!(r#"{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{d}","size":3}}"#);
    let oci_m = "application/vnd.oci.image.manifest.v1+json";
    let oci_i = "application/vnd.oci.image.index.v1+json";
    let entry = format!(
        r#"{{"mediaType":"{oci_m}","digest":"{d}","size":5,"platform":{{"architecture":"amd64","os":"linux"}}}}"#
    );
    let oci = MediaType::ImageManifest;
    let dm = MediaType::Other(DOCKER_MANIFEST.to_owned());
    let idx = MediaType::ImageIndex;
    let signed = MediaType::Other(super::manifest::DOCKER_SCHEMA1_SIGNED.to_owned());

    let cases: Vec<(String, Option<&MediaType>, Outcome)> = vec![
        // Well-formed documents, with and without a descriptor media type.
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{oci_m}","config":{cfg},"layers":[]}}"#),
            Some(&oci),
            Outcome::Manifest,
        ),
        (
            format!(r#"{{"schemaVersion":2,"config":{cfg},"layers":[]}}"#),
            None,
            Outcome::Manifest,
        ),
        (
            format!(r#"{{"schemaVersion":2,"config":{cfg},"layers":[]}}"#),
            Some(&oci),
            Outcome::Manifest,
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{dcfg},"layers":[{layer}]}}"#
            ),
            Some(&dm),
            Outcome::Manifest,
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{dcfg},"layers":[{layer}]}}"#
            ),
            None,
            Outcome::Manifest,
        ),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{oci_i}","manifests":[{entry}]}}"#),
            Some(&idx),
            Outcome::Index,
        ),
        (
            r#"{"schemaVersion":2,"manifests":[]}"#.to_owned(),
            None,
            Outcome::Index,
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[{entry}]}}"#
            ),
            None,
            Outcome::Index,
        ),
        (
            format!("{{\"schemaVersion\":2,\"config\":{cfg},\"layers\":[]}}\n\t "),
            None,
            Outcome::Manifest,
        ),
        // Ambiguous documents (CVE-2021-41190).
        (
            r#"{"schemaVersion":2,"manifests":[],"layers":[]}"#.to_owned(),
            None,
            Outcome::Ambiguous,
        ),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{oci_m}","manifests":[],"config":{cfg}}}"#),
            None,
            Outcome::Ambiguous,
        ),
        (
            r#"{"schemaVersion":2,"manifests":[]}"#.to_owned(),
            Some(&oci),
            Outcome::Ambiguous,
        ),
        (
            format!(r#"{{"schemaVersion":2,"config":{cfg},"layers":[]}}"#),
            Some(&idx),
            Outcome::Ambiguous,
        ),
        // The document contradicts the descriptor.
        (
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{dcfg},"layers":[]}}"#
            ),
            Some(&oci),
            Outcome::Mismatch,
        ),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{oci_i}","manifests":[]}}"#),
            Some(&dm),
            Outcome::Mismatch,
        ),
        // Schema 1, unknown types, wrong versions.
        (
            r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[],"history":[]}"#.to_owned(),
            None,
            Outcome::Unsupported,
        ),
        (
            r#"{"schemaVersion":1,"fsLayers":[]}"#.to_owned(),
            Some(&signed),
            Outcome::Unsupported,
        ),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"text/plain","config":{cfg},"layers":[]}}"#),
            None,
            Outcome::NotAManifest,
        ),
        (
            format!(r#"{{"schemaVersion":2,"config":{cfg},"layers":[]}}"#),
            Some(&MediaType::ImageConfig),
            Outcome::NotAManifest,
        ),
        (
            r#"{"schemaVersion":2}"#.to_owned(),
            None,
            Outcome::Unrecognised,
        ),
        (
            format!(r#"{{"schemaVersion":1,"config":{cfg},"layers":[]}}"#),
            None,
            Outcome::SchemaVersion,
        ),
        (
            format!(r#"{{"config":{cfg},"layers":[]}}"#),
            None,
            Outcome::SchemaVersion,
        ),
        // Bytes that must not parse: duplicate keys, trailing data, bad sizes, not JSON.
        (
            format!(r#"{{"schemaVersion":2,"config":{cfg},"layers":[],"layers":[{layer}]}}"#),
            None,
            Outcome::Json,
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{oci_m}","mediaType":"{oci_m}","config":{cfg},"layers":[]}}"#
            ),
            None,
            Outcome::Json,
        ),
        (
            format!(r#"{{"schemaVersion":2,"config":{cfg},"layers":[]}} {{}}"#),
            None,
            Outcome::Json,
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"config":{cfg},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{d}","size":-1}}]}}"#
            ),
            None,
            Outcome::Json,
        ),
        (
            format!(r#"{{"schemaVersion":2,"config":{cfg}}}"#),
            None,
            Outcome::Json,
        ),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}"}}"#),
            None,
            Outcome::Json,
        ),
        (
            r#"{"schemaVersion":2,"layers":[]}"#.to_owned(),
            Some(&oci),
            Outcome::Json,
        ),
        ("not json".to_owned(), None, Outcome::Json),
        ("".to_owned(), None, Outcome::Json),
        // Digests kiln cannot verify.
        (
            format!(
                r#"{{"schemaVersion":2,"config":{cfg},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"sha512:{}","size":3}}]}}"#,
                "a".repeat(128)
            ),
            None,
            Outcome::Digest,
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{oci_m}","digest":"sha384:{}","size":3}}]}}"#,
                "b".repeat(96)
            ),
            None,
            Outcome::Digest,
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"config":{cfg},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"sha256:../../../../tmp/x","size":3}}]}}"#
            ),
            None,
            Outcome::Json,
        ),
    ];
    for (i, (input, expected, want)) in cases.iter().enumerate() {
        let got = outcome(parse_document(input.as_bytes(), *expected));
        assert_eq!(&got, want, "case {i}: {input}");
    }
    assert_eq!(cases.len(), 34);

    // parse_manifest / parse_index refuse the other kind.
    let index = r#"{"schemaVersion":2,"manifests":[]}"#;
    assert!(matches!(
        parse_manifest(index.as_bytes(), None),
        Err(ImageError::UnexpectedIndex)
    ));
    let manifest = format!(r#"{{"schemaVersion":2,"config":{cfg},"layers":[]}}"#);
    assert!(matches!(
        parse_index(manifest.as_bytes(), None),
        Err(ImageError::UnexpectedManifest)
    ));
}

#[test]
fn digests_convert_both_ways() {
    let d = digest(7);
    let oci = d.to_oci();
    assert_eq!(oci.to_string(), d.to_string());
    assert_eq!(from_oci_digest(&oci).unwrap(), d);
    let sha512: oci_spec::image::Digest = format!("sha512:{}", "c".repeat(128)).parse().unwrap();
    assert!(matches!(
        from_oci_digest(&sha512),
        Err(ImageError::Digest(_))
    ));
}
