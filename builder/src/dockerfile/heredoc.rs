//! Heredocs (`RUN <<EOF`, `COPY <<-'EOF' /dst`): recognising the words that open them.
//!
//! BuildKit splits the instruction line into words with its shell lexer (quotes, escapes and
//! unset variables kept raw), and a word matching `^(\d*)<<(-?)\s*([^<]*)$` whose rest is one
//! shell word opens a heredoc. Quoting any part of the name turns expansion of the body off;
//! `<<-` strips leading tabs from the body (when it is used, not when it is parsed: bodies are
//! stored raw). The parser reads the bodies; this file only knows the words.

use super::shell::{Lexer, ShellError};
use std::collections::BTreeMap;

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The terminator word, unquoted (`EOF`).
    pub name: String,
    /// The file descriptor before `<<` (`3<<EOF`), 0 when none is given.
    pub file_descriptor: u32,
    /// Whether `$VAR` in the body is expanded (false when the name was quoted).
    pub expand: bool,
    /// Whether leading tabs are stripped from body lines (`<<-`).
    pub chomp: bool,
    /// The raw body: every line up to the terminator, each with its line ending.
    pub content: String,
}

impl Heredoc {
    /// The body as the instruction uses it: with `<<-`, leading tabs removed from every line.
    pub fn chomped_content(&self) -> String {
        if self.chomp {
            chomp(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// Removes the leading tabs of every line (BuildKit's `ChompHeredocContent`).
pub fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// Why a word that looks like a heredoc cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeredocError {
    /// The name could not be lexed (an unterminated quote, most often).
    #[error("invalid heredoc name")]
    Lex(#[source] ShellError),
}

/// The heredoc a single word opens, if any (BuildKit's `ParseHeredoc`).
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, HeredocError> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    // Blanks may separate the opener from the name (`<< EOF`, BuildKit's `\s*`).
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\u{c}', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let env = BTreeMap::new();
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let words = lexer.process_words(rest, &env).map_err(HeredocError::Lex)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    lexer.raw_quotes = true;
    let raw = lexer.process_words(rest, &env).map_err(HeredocError::Lex)?;
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: name.clone(),
        // More digits than fit are not a descriptor anyone can use; BuildKit's ParseUint gives 0.
        file_descriptor: word[..digits].parse().unwrap_or(0),
        expand,
        chomp,
        content: String::new(),
    }))
}

/// The heredocs an instruction line opens, in order (BuildKit's `heredocsFromLine`).
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, HeredocError> {
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    lexer.skip_unset_env = true;
    // BuildKit ignores a lexing error here: such a line simply opens no heredoc.
    let words = lexer
        .process_words(line, &BTreeMap::new())
        .unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}
