//! The one error type of the SDK.
//!
//! Every backend maps its own failures into [`Error`]: a [`ErrorKind`] that callers branch on, a
//! human message (never containing config values or tokens), the operation and backend that
//! failed, an optional source, and whether retrying may help.

use std::borrow::Cow;
use std::fmt;

/// Result alias used throughout the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarsely: the part of an error that callers branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named thing (app, release, commit, instance...) does not exist.
    NotFound,
    /// The thing to create exists already.
    AlreadyExists,
    /// The request conflicts with the current state (a lost race, a host owned by another app).
    Conflict,
    /// The input broke a rule; the message names the field and the rule.
    InvalidInput,
    /// The backend does not support this operation.
    Unsupported,
    /// Missing or wrong credentials.
    Unauthenticated,
    /// The caller is known but not allowed to do this.
    PermissionDenied,
    /// A dependency (engine, database, network) is not reachable right now.
    Unavailable,
    /// A deadline passed.
    Timeout,
    /// A build ran and failed; the message carries the tail of its output.
    BuildFailed,
    /// Processes started but never became healthy, or a release phase failed.
    DeployFailed,
    /// A bug or an unexpected state.
    Internal,
    /// A kind this version does not know, sent by a newer server or backend (its message still
    /// says what went wrong). Never constructed by the SDK itself; treat it like [`Internal`].
    ///
    /// [`Internal`]: ErrorKind::Internal
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// A stable snake_case name (`not_found`, `build_failed`...), used in JSON errors.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BuildFailed => "build_failed",
            ErrorKind::DeployFailed => "deploy_failed",
            ErrorKind::Internal => "internal",
            ErrorKind::Unknown => "unknown",
        }
    }

    /// Whether errors of this kind are, by default, worth retrying.
    pub fn default_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SDK's error: kind, message, operation, backend, source and retryability.
///
/// The message is written for humans and must never contain a secret (config value, token).
/// Displayed as `message (operation on backend): source`.
#[derive(thiserror::Error)]
#[error("{message}{}{}", Context(.operation, .backend), SourceSuffix(.source))]
pub struct Error {
    kind: ErrorKind,
    message: String,
    operation: Option<Cow<'static, str>>,
    backend: Option<Cow<'static, str>>,
    retryable: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// ` (operation on backend)`, ` (operation)`, ` (backend)` or nothing.
struct Context<'a>(&'a Option<Cow<'static, str>>, &'a Option<Cow<'static, str>>);

impl fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(op), Some(b)) => write!(f, " ({op} on {b})"),
            (Some(op), None) => write!(f, " ({op})"),
            (None, Some(b)) => write!(f, " ({b})"),
            (None, None) => Ok(()),
        }
    }
}

/// `: source` or nothing.
struct SourceSuffix<'a>(&'a Option<Box<dyn std::error::Error + Send + Sync + 'static>>);

impl fmt::Display for SourceSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }
}

impl Error {
    /// A new error of `kind` with a human message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            operation: None,
            backend: None,
            retryable: kind.default_retryable(),
            source: None,
        }
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// [`ErrorKind::AlreadyExists`].
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// [`ErrorKind::Timeout`].
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// [`ErrorKind::BuildFailed`].
    pub fn build_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BuildFailed, message)
    }
    /// [`ErrorKind::DeployFailed`].
    pub fn deploy_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::DeployFailed, message)
    }
    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Names the operation that failed (`deploy`, `append_release`...).
    pub fn with_operation(mut self, operation: impl Into<Cow<'static, str>>) -> Self {
        self.operation = Some(operation.into());
        self
    }
    /// Names the backend that failed (`docker`, `git`, `sqlite`...).
    pub fn with_backend(mut self, backend: impl Into<Cow<'static, str>>) -> Self {
        self.backend = Some(backend.into());
        self
    }
    /// Attaches the underlying error. Its `Display` must not contain secrets.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    /// Overrides whether a retry may help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The human message (without operation/backend decoration).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The operation, if recorded.
    pub fn operation(&self) -> Option<&str> {
        self.operation.as_deref()
    }
    /// The backend, if recorded.
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("operation", &self.operation)
            .field("backend", &self.backend)
            .field("retryable", &self.retryable)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                ErrorKind::InvalidInput
            }
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, "I/O error").with_source(e)
    }
}

/// The JSON shape of an error on the wire: `{"kind": "...", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// [`ErrorKind`] as its snake_case name.
    pub kind: ErrorKind,
    /// The error's message (and source), for the user.
    pub message: String,
}

impl From<&Error> for ErrorBody {
    /// The message and its source, without the operation and backend (those are for logs).
    fn from(e: &Error) -> Self {
        let message = match &e.source {
            Some(source) => format!("{}: {source}", e.message),
            None => e.message.clone(),
        };
        ErrorBody {
            kind: e.kind(),
            message,
        }
    }
}

impl From<ErrorBody> for Error {
    fn from(b: ErrorBody) -> Self {
        Error::new(b.kind, b.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_context_and_source() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::unavailable("store down")
            .with_operation("append_release")
            .with_backend("sqlite")
            .with_source(io);
        assert_eq!(
            e.to_string(),
            "store down (append_release on sqlite): disk on fire"
        );
        assert_eq!(
            std::error::Error::source(&e).map(|s| s.to_string()),
            Some("disk on fire".to_string())
        );
        assert_eq!(
            Error::invalid("bad").with_backend("x").to_string(),
            "bad (x)"
        );
        assert_eq!(Error::invalid("bad").to_string(), "bad");
        assert!(e.is_retryable());
        let wire: ErrorKind = serde_json::from_str("\"quota_exceeded\"").unwrap();
        assert_eq!(wire, ErrorKind::Unknown);
    }
}
