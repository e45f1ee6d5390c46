//! The Dockerfile front end: text → AST with spans ([`parser`], [`heredoc`]) → typed
//! instructions ([`instructions`]), with BuildKit's word expansion ([`shell`]).
//!
//! Parsing is pure: functions take `&str` and return values that carry byte [`Span`]s and line
//! numbers, so any later stage can point at the Dockerfile line an error comes from.

pub mod heredoc;
pub mod instructions;
pub mod parser;
pub mod shell;

pub use heredoc::Heredoc;
pub use instructions::{Instruction, InstructionError};
pub use parser::{Args, Dockerfile, Node, ParseError, Warning, WarningKind, parse};

/// A byte range in the Dockerfile source. An empty span at 0 means only the lines are known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// Where something is in the Dockerfile: 1-based inclusive lines, and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Location {
    /// The line it starts on.
    pub start_line: usize,
    /// The last line it covers (continuations and heredoc bodies included).
    pub end_line: usize,
    /// The bytes it covers.
    pub span: Span,
}

impl Location {
    /// A location known only by its line.
    pub fn line(line: usize) -> Self {
        Self {
            start_line: line,
            end_line: line,
            span: Span::default(),
        }
    }
}
