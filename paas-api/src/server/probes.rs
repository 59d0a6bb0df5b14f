//! `GET /healthz` (the process answers) and `GET /readyz` (its store and scheduler answer), for
//! load balancers and supervisors: no credentials, nothing secret in the answers.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::Ctx;

/// How long a dependency has to answer a readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of both probes.
#[derive(Serialize)]
struct Health {
    /// `ok`, `ready` or `unavailable`.
    status: &'static str,
    /// The dependencies that did not answer (readiness only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failing: Vec<&'static str>,
}

/// Alive: the process answers.
pub(crate) async fn healthz() -> Json<impl Serialize> {
    Json(Health {
        status: "ok",
        failing: Vec::new(),
    })
}

/// Ready: the release store and the scheduler answer within 2 s (503 naming the ones that do
/// not).
pub(crate) async fn readyz(State(ctx): State<Ctx>) -> Response {
    let platform = &ctx.platform;
    let store = tokio::time::timeout(READY_TIMEOUT, platform.release_store().list_apps());
    let scheduler = tokio::time::timeout(READY_TIMEOUT, platform.scheduler().list(None));
    let (store, scheduler) = tokio::join!(store, scheduler);
    let mut failing = Vec::new();
    if !matches!(store, Ok(Ok(_))) {
        failing.push("store");
    }
    if !matches!(scheduler, Ok(Ok(_))) {
        failing.push("scheduler");
    }
    if failing.is_empty() {
        Json(Health {
            status: "ready",
            failing,
        })
        .into_response()
    } else {
        let body = Health {
            status: "unavailable",
            failing,
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}
