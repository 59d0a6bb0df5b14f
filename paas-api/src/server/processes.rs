//! Formation, processes, restarts, one-off runs and logs.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use futures::StreamExt;
use paas_core::{Error, ErrorBody, Formation, Instance, LogLine, ProcessType};

use super::error::ApiResult;
use super::extract::{app_name, json_body, query};
use super::ndjson::{ndjson, stream_op};
use super::Ctx;
use crate::wire::{LogsQuery, RestartRequest, RunCommand, StreamEvent};

/// How many past log lines one request may ask for.
const MAX_LOG_LINES: usize = 1500;

/// How many processes of each type run.
#[utoipa::path(get, path = "/v1/apps/{app}/formation", tag = "processes",
    params(("app" = String, Path, description = "The app's name")),
    responses((status = 200, body = Formation), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn get_formation(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<Formation>> {
    let app = app_name(&app)?;
    Ok(Json(ctx.platform.status(&app).await?.formation))
}

/// Scales process types (`{"web": 3}`; NDJSON; result the new [`Formation`]).
#[utoipa::path(patch, path = "/v1/apps/{app}/formation", tag = "processes",
    params(("app" = String, Path, description = "The app's name")), request_body = Formation,
    responses((status = 200, description = "NDJSON StreamEvents; result: Formation",
            content_type = "application/x-ndjson", body = StreamEvent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn patch_formation(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let raw: BTreeMap<String, i64> = json_body(body)?;
    if raw.is_empty() {
        return Err(Error::invalid("formation patch names no process type").into());
    }
    let mut changes = Formation::new();
    for (t, n) in raw {
        let ty = ProcessType::new(t)?;
        let n = u32::try_from(n).map_err(|_| {
            Error::invalid(format!(
                "process type \"{ty}\": count must be a whole number from 0 to {}",
                Formation::MAX_PER_TYPE
            ))
        })?;
        changes.set(ty, n)?;
    }
    ctx.platform.release_store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        platform.scale(&app, changes, progress).await
    }))
}

/// The app's processes.
#[utoipa::path(get, path = "/v1/apps/{app}/ps", tag = "processes",
    params(("app" = String, Path, description = "The app's name")),
    responses((status = 200, body = Vec<Instance>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn ps(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Instance>>> {
    let app = app_name(&app)?;
    Ok(Json(ctx.platform.instances(&app).await?))
}

/// Restarts every process, or those of one type (NDJSON; result `null`).
#[utoipa::path(post, path = "/v1/apps/{app}/restart", tag = "processes",
    params(("app" = String, Path, description = "The app's name")), request_body = RestartRequest,
    responses((status = 200, description = "NDJSON StreamEvents; result: null",
            content_type = "application/x-ndjson", body = StreamEvent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn restart(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: RestartRequest = json_body(body)?;
    let only = req.process_type.map(ProcessType::new).transpose()?;
    ctx.platform.release_store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        platform.restart(&app, only, progress).await
    }))
}

/// Past log lines, then (with `follow=true`) new ones as they are written: NDJSON [`LogLine`]s.
#[utoipa::path(get, path = "/v1/apps/{app}/logs", tag = "logs",
    params(("app" = String, Path, description = "The app's name"), LogsQuery),
    responses((status = 200, description = "NDJSON LogLines", content_type = "application/x-ndjson",
            body = LogLine),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn logs(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let q = query(q)?;
    let n = q.lines.unwrap_or(100).min(MAX_LOG_LINES);
    let follow = if q.follow.unwrap_or(false) {
        Some(ctx.platform.follow_logs(&app).await?)
    } else {
        None
    };
    let tail = ctx.platform.logs(&app, n).await?;
    let first = futures::stream::iter(tail);
    let lines = match follow {
        Some(rest) => first.chain(rest).boxed(),
        None => first.boxed(),
    };
    Ok(ndjson(lines))
}

/// Runs a one-off command in a new process of the current release: NDJSON `output` events,
/// then one `exit` (or `error`).
#[utoipa::path(post, path = "/v1/apps/{app}/run", tag = "processes",
    params(("app" = String, Path, description = "The app's name")), request_body = RunCommand,
    responses((status = 200, description = "NDJSON StreamEvents: output..., then exit",
            content_type = "application/x-ndjson", body = StreamEvent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn run_command(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: RunCommand = json_body(body)?;
    let handle = ctx.platform.run(&app, req.command).await?;
    let exit = handle.exit;
    let events = handle
        .output
        .map(|chunk| StreamEvent::Output {
            stream: chunk.stream,
            text: chunk.text,
        })
        .chain(futures::stream::once(async move {
            match exit.await {
                Ok(code) => StreamEvent::Exit { code },
                Err(e) => StreamEvent::Error { error: (&e).into() },
            }
        }));
    Ok(ndjson(events))
}
