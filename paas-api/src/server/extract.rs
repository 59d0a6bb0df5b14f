//! Request parsing whose failures are JSON errors like every other (axum's own rejections are
//! plain text).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::Query;
use axum::http::StatusCode;
use paas_core::{AppName, Error, ErrorKind};
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};

/// A JSON body (an empty body reads as `{}`); too large is 413, malformed 400.
pub(crate) fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let body = body.map_err(|r| {
        let status = r.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body is larger than the server's limit".to_string()
        } else {
            format!("the request body could not be read: {r}")
        };
        ApiError::with_status(status, ErrorKind::InvalidInput, message)
    })?;
    let body: &[u8] = if body.is_empty() { b"{}" } else { &body };
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("invalid JSON body: {e}")).into())
}

/// A query string; malformed is 400.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(v)| v)
        .map_err(|r| Error::invalid(format!("invalid query string: {}", r.body_text())).into())
}

/// The `{app}` of a path.
pub(crate) fn app_name(s: &str) -> ApiResult<AppName> {
    Ok(AppName::new(s)?)
}
