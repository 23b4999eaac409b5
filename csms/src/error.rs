//! The csms error type, grouped by whose fault it is (as rustls groups its
//! errors): the caller's (operator input, configuration), the station's, or
//! ours (storage, keys, the environment). Each converts explicitly: into an HTTP
//! problem for the REST API ([`api::service::ServiceError`]) and into a message
//! naming the field for the command line. A cause that is ours is logged where
//! it happens; the caller learns only that it failed.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- the caller's fault ----------------------------------------------------
    /// A field of the request is invalid; `field` is a JSON pointer into the
    /// request body (`/password`) or the name of a parameter (`cursor`).
    #[error("invalid {field}: {detail}")]
    Invalid { field: String, detail: String },
    #[error("{what} '{id}' not found")]
    NotFound { what: &'static str, id: String },
    /// The request conflicts with the current state (exists already, changed meanwhile).
    #[error("{0}")]
    Conflict(String),
    /// The configuration or the command line is wrong.
    #[error("{0}")]
    Config(String),

    // ---- the station's ---------------------------------------------------------
    #[error("station '{0}' is not connected")]
    NotConnected(String),
    /// A call reached the station but its answer never came (timeout, or the
    /// connection closed): the station may have acted on it.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The station answered with a CALLERROR, an invalid payload, or a refusal.
    #[error("{0}")]
    Station(String),

    // ---- ours --------------------------------------------------------------------
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// Something else of ours failed; the text is for the log.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: &str, detail: impl Into<String>) -> Error {
        Error::Invalid { field: field.to_owned(), detail: detail.into() }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    pub fn internal(what: impl std::fmt::Display) -> Error {
        Error::Internal(what.to_string())
    }
}

impl From<Error> for api::service::ServiceError {
    fn from(e: Error) -> Self {
        use api::service::ServiceError as S;
        match e {
            Error::Invalid { field, detail } => S::Invalid { field, detail },
            Error::NotFound { what, id } => S::NotFound { what, id },
            Error::Conflict(d) => S::Conflict(d),
            Error::NotConnected(id) => S::NotConnected(id),
            Error::OutcomeUnknown(d) => S::OutcomeUnknown(d),
            Error::Station(d) => S::Station(d),
            Error::Unavailable(d) => S::Unavailable(d),
            Error::Store(StoreError::Unavailable) => S::Unavailable("the storage writer has stopped".into()),
            other => {
                tracing::error!(error = %other, "request failed");
                S::Internal
            }
        }
    }
}

/// Adds what was being done to a failure of ours, as [`Error::Internal`]. For
/// the caller's faults use the specific variants instead.
pub trait Context<T> {
    fn context(self, doing: &str) -> Result<T>;
    fn with_context<S: std::fmt::Display>(self, doing: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, doing: &str) -> Result<T> {
        self.map_err(|e| Error::Internal(format!("{doing}: {e}")))
    }

    fn with_context<S: std::fmt::Display>(self, doing: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Internal(format!("{}: {e}", doing())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, missing: &str) -> Result<T> {
        self.ok_or_else(|| Error::Internal(missing.to_owned()))
    }

    fn with_context<S: std::fmt::Display>(self, missing: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| Error::Internal(missing().to_string()))
    }
}
