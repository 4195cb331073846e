//! The one error type of the crate: why a policy was refused, where, and how to fix it.
//!
//! Every refusal carries a stable [`ErrorKind`] (for callers that branch on
//! it), Tailscale's wording of the problem (so operators can search for it),
//! and — when the problem is in the policy text — the JSON path of the
//! offending value (`acls[0].dst[1]`) and its line and column.

use std::fmt;

/// Line and column (both 1-based, column counted in characters) of a value
/// in the policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What kind of problem made the policy unusable. Stable: callers may match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not HuJSON (unbalanced brackets, bad escape, …).
    Syntax,
    /// A field the policy language does not have (often a typo).
    UnknownField,
    /// A value of the wrong JSON type (a string where a list is expected, …).
    InvalidType,
    /// A value of the right type that is not acceptable (bad port, bad CIDR, bad action…).
    InvalidValue,
    /// A reference to a group, tag, host or user that is not defined.
    Undefined,
    /// A combination of selectors the language forbids (autogroup:self from a tag, …).
    InvalidCombination,
    /// The policy's own `tests` or `sshTests` failed.
    TestsFailed,
    /// The topology handed to [`crate::explain`] is malformed (not a policy problem).
    Topology,
}

impl ErrorKind {
    /// A short stable code, e.g. for an API's problem type.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::UnknownField => "unknown_field",
            ErrorKind::InvalidType => "invalid_type",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::Undefined => "undefined",
            ErrorKind::InvalidCombination => "invalid_combination",
            ErrorKind::TestsFailed => "tests_failed",
            ErrorKind::Topology => "topology",
        }
    }
}

/// A refused policy (or a malformed explain topology).
///
/// `Display` renders `<path> (<line, column>): <message>`, leaving out the
/// parts that are unknown, e.g.
/// `acls[0].src[1] (line 7, column 14): src=tag not found: "tag:nonexistent"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub kind: ErrorKind,
    /// Tailscale's wording of the problem, plus a hint how to fix it where useful.
    pub message: String,
    /// JSON path of the offending value, e.g. `acls[0].dst[1]`; empty when global.
    pub path: String,
    /// Where the offending value starts in the policy text.
    pub position: Option<Position>,
}

impl PolicyError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PolicyError {
            kind,
            message: message.into(),
            path: String::new(),
            position: None,
        }
    }

    pub(crate) fn at(mut self, path: &str, position: Option<Position>) -> Self {
        if self.path.is_empty() {
            self.path = path.to_owned();
        }
        if self.position.is_none() {
            self.position = position;
        }
        self
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.position) {
            (false, Some(p)) => write!(f, "{} ({p}): {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
            (true, Some(p)) => write!(f, "{p}: {}", self.message),
            (true, None) => f.write_str(&self.message),
        }
    }
}

pub type Result<T, E = PolicyError> = std::result::Result<T, E>;
