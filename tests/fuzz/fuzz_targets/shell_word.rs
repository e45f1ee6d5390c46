//! BuildKit's shell-word expansion (`kiln_builder::dockerfile::shell::Lexer`) with every switch
//! the Dockerfile front end uses. Any word either fails with an error whose offset lies inside
//! the word, or expands; the three entry points (`process_word`, `process_word_with_matches`,
//! `process_words`) agree on whether it fails and on the error; no name is both matched and
//! unmatched; and a word without `$`, quotes, the escape token or a leading BOM expands to
//! itself.
//!
//! Input: the first byte picks the escape token and the lexer switches, the rest is the word.

#![no_main]

use std::collections::BTreeMap;

use kiln_builder::dockerfile::shell::Lexer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let Ok(word) = std::str::from_utf8(rest) else {
        return;
    };
    let mut lexer = Lexer::new(if flags & 1 == 0 { '\\' } else { '`' });
    lexer.raw_quotes = flags & 2 != 0;
    lexer.raw_escapes = flags & 4 != 0;
    lexer.skip_unset_env = flags & 8 != 0;
    lexer.skip_process_quotes = flags & 16 != 0;
    let env: BTreeMap<String, String> = [
        ("A", "a"),
        ("EMPTY", ""),
        ("SPACES", " x  y "),
        ("QUOTES", r#"'"\`"#),
        ("GLOB", "*?[a-z]/}"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("UNI", "héllo wörld ✓"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    let with_matches = lexer.process_word_with_matches(word, &env);
    let plain = lexer.process_word(word, &env);
    let words = lexer.process_words(word, &env);
    match &with_matches {
        Ok(expansion) => {
            assert_eq!(plain.as_deref(), Ok(expansion.value.as_str()));
            assert!(
                words.is_ok(),
                "process_words fails where process_word does not"
            );
            assert!(
                expansion.matched.is_disjoint(&expansion.unmatched),
                "a name both matched and unmatched: {expansion:?}"
            );
            // Go's text/scanner, which BuildKit reads words with, drops a leading BOM.
            let plain_text = !word.starts_with('\u{feff}')
                && !word
                    .chars()
                    .any(|c| matches!(c, '$' | '\'' | '"') || c == lexer.escape());
            if plain_text {
                assert_eq!(expansion.value, word);
            }
        }
        Err(e) => {
            assert!(e.offset() <= word.len(), "{e:?} is outside the word");
            assert_eq!(plain.as_ref().err(), Some(e));
            assert_eq!(words.as_ref().err(), Some(e));
            let _ = e.to_string();
        }
    }
});
