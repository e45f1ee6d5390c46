//! Manifest and index parsing, both copies: `kiln_registry::manifest::parse` (what a pull
//! reads) and `kiln_builder::image::parse_document` (what the store reads). Any bytes, served as
//! any media type, either fail with a typed error or give a document whose every descriptor names
//! a usable digest; a document that parsed is written out again with `serde_json` and must parse
//! again, as the same kind and the same value.
//!
//! Input: the first byte picks the media type the bytes were served as, the rest is the body.

#![no_main]

use kiln_builder::image::{self, parse_document};
use kiln_builder::oci_spec::image::MediaType;
use kiln_registry::manifest::{self, Document};
use libfuzzer_sys::fuzz_target;

const SERVED: [Option<&str>; 8] = [
    None,
    Some(manifest::OCI_MANIFEST),
    Some(manifest::OCI_INDEX),
    Some(manifest::DOCKER_MANIFEST),
    Some(manifest::DOCKER_MANIFEST_LIST),
    Some("application/json"),
    Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
];

fuzz_target!(|input: &[u8]| {
    let Some((&pick, body)) = input.split_first() else {
        return;
    };
    let served = SERVED[usize::from(pick) % SERVED.len()];

    if let Ok(doc) = manifest::parse(body, served) {
        for child in doc.children() {
            kiln_registry::Digest::from_oci(child.digest())
                .expect("a parsed document names usable digests");
        }
        let again = match &doc {
            Document::Manifest(m) => serde_json::to_vec(m),
            Document::Index(i) => serde_json::to_vec(i),
        }
        .expect("a parsed document serialises");
        let reparsed = manifest::parse(&again, served)
            .unwrap_or_else(|e| panic!("re-serialised document does not parse: {e}"));
        assert_eq!(reparsed, doc);
    }

    let expected = served.map(|s| MediaType::from(s.split(';').next().unwrap_or_default()));
    if let Ok(doc) = parse_document(body, expected.as_ref()) {
        let again = match &doc {
            image::Document::Manifest(m) => serde_json::to_vec(m),
            image::Document::Index(i) => serde_json::to_vec(i),
        }
        .expect("a parsed document serialises");
        let reparsed = parse_document(&again, expected.as_ref())
            .unwrap_or_else(|e| panic!("re-serialised document does not parse: {e}"));
        assert_eq!(reparsed, doc);
    }
});
