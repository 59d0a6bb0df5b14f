//! Mapping sqlx/SQLite failures into [`paas_core::Error`].
//!
//! SQLite's messages name tables, columns and constraints, never bound values, and every
//! config value is sealed before it is bound, so a database error cannot carry a secret.

use paas_core::{Error, ErrorKind};

/// The backend name recorded on every error of this crate.
pub(crate) const BACKEND: &str = "sqlite";

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;
const SQLITE_PERM: i64 = 3;

/// Maps a sqlx error of operation `op` into the SDK's error.
pub(crate) fn map_db_err(op: &'static str, e: sqlx::Error) -> Error {
    let (kind, message, retryable) = match &e {
        sqlx::Error::PoolTimedOut => (
            ErrorKind::Timeout,
            "timed out waiting for a database connection",
            true,
        ),
        sqlx::Error::PoolClosed => (ErrorKind::Unavailable, "the store was closed", false),
        sqlx::Error::WorkerCrashed => (
            ErrorKind::Unavailable,
            "the database connection's worker thread stopped",
            true,
        ),
        sqlx::Error::Io(_) => (ErrorKind::Unavailable, "database I/O failed", true),
        sqlx::Error::Database(db) => {
            let code = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff)
                .unwrap_or(-1);
            match code {
                SQLITE_BUSY | SQLITE_LOCKED => (
                    ErrorKind::Unavailable,
                    "the database is locked by another writer",
                    true,
                ),
                SQLITE_FULL => (ErrorKind::Unavailable, "the disk is full", false),
                SQLITE_IOERR => (ErrorKind::Unavailable, "database I/O failed", false),
                SQLITE_CANTOPEN => (
                    ErrorKind::Unavailable,
                    "the database file cannot be opened",
                    false,
                ),
                SQLITE_PERM | SQLITE_READONLY => (
                    ErrorKind::PermissionDenied,
                    "the database file is not writable",
                    false,
                ),
                SQLITE_CORRUPT | SQLITE_NOTADB => (
                    ErrorKind::Internal,
                    "the database file is corrupt or is not a SQLite database",
                    false,
                ),
                _ => match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation => {
                        (ErrorKind::Conflict, "a record with that key exists", false)
                    }
                    sqlx::error::ErrorKind::ForeignKeyViolation => (
                        ErrorKind::NotFound,
                        "a referenced record does not exist",
                        false,
                    ),
                    _ => (ErrorKind::Internal, "database error", false),
                },
            }
        }
        _ => (ErrorKind::Internal, "database error", false),
    };
    Error::new(kind, message)
        .with_retryable(retryable)
        .with_backend(BACKEND)
        .with_operation(op)
        .with_source(e)
}

/// `map_err` adapter: `.map_err(db_err("get_app"))`.
pub(crate) fn db_err(op: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| map_db_err(op, e)
}

/// Decorates an error made by this crate with backend and operation.
pub(crate) fn tag(op: &'static str) -> impl Fn(Error) -> Error {
    move |e| {
        let e = if e.backend().is_none() {
            e.with_backend(BACKEND)
        } else {
            e
        };
        if e.operation().is_none() {
            e.with_operation(op)
        } else {
            e
        }
    }
}
