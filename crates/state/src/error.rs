//! Errors of the service layer. Each variant has a stable code and a kind the
//! HTTP/gRPC edges map to a status once; messages name the thing and the fix.

use thiserror::Error;

/// What sort of failure this is, for the edges (HTTP status, gRPC code, CLI exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names an invalid value (400/422).
    Invalid,
    /// The thing does not exist (404).
    NotFound,
    /// It clashes with what exists (409).
    Conflict,
    /// The caller may not do this (403).
    Forbidden,
    /// Credentials were missing or wrong (401).
    Unauthorized,
    /// Storage or another internal failure (500).
    Internal,
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Store(crate::store::StoreError::Conflict(_)) => ErrorKind::Conflict,
            Error::Store(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A stable machine-readable code (`not_found`, `conflict`…).
    pub fn code(&self) -> &'static str {
        match self.kind() {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Internal => "internal",
        }
    }

    pub fn not_found(what: &'static str, key: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what,
            key: key.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
