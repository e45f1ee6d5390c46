//! The Dockerfile front end: text → AST with spans ([`parser`], [`heredoc`]) → typed
//! instructions ([`instructions`]), with BuildKit's word expansion ([`shell`]).
//!
//! Parsing is pure: functions take `&str` and return values that carry byte [`Span`]s and line
//! numbers, so any later stage can point at the Dockerfile line an error comes from.

pub mod shell;
