//! Image reference parsing (`kiln_registry::Reference`): any string either fails with a typed
//! error or gives a reference that keeps its invariants (a tag or a digest, a repository of at
//! most 255 bytes) and survives the round trip `parse → to_string → parse` unchanged. The input's
//! first line is the reference; a second line, if any, is a tag given to `with_tag`, whose result
//! must round-trip too.

#![no_main]

use kiln_registry::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let (text, tag) = match input.split_once('\n') {
        Some((text, tag)) => (text, Some(tag)),
        None => (input, None),
    };
    let Ok(reference) = Reference::parse(text) else {
        return;
    };
    check(&reference);
    if let Some(Ok(tagged)) = tag.map(|tag| reference.with_tag(tag)) {
        assert_eq!(tagged.tag(), tag);
        check(&tagged);
    }
});

fn check(reference: &Reference) {
    assert!(reference.tag().is_some() || reference.digest().is_some());
    assert!(!reference.repository().is_empty() && reference.repository().len() <= 255);
    assert!(!reference.familiar_name().is_empty());
    let _ = reference.api_host();
    let _ = reference.is_loopback();
    let shown = reference.to_string();
    let again = Reference::parse(&shown)
        .unwrap_or_else(|e| panic!("{shown:?} (from {reference:?}) does not parse again: {e}"));
    assert_eq!(&again, reference, "{shown:?} parses to something else");
    assert_eq!(again.to_string(), shown);
}
