//! Custom domains.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use paas_core::{Domain, ErrorBody};

use super::error::ApiResult;
use super::extract::{app_name, json_body};
use super::Ctx;
use crate::wire::AddDomain;

/// The app's custom domains.
#[utoipa::path(get, path = "/v1/apps/{app}/domains", tag = "domains",
    params(("app" = String, Path, description = "The app's name")),
    responses((status = 200, body = Vec<Domain>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn list_domains(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Domain>>> {
    let app = app_name(&app)?;
    Ok(Json(ctx.platform.domains(&app).await?))
}

/// Routes a hostname (or `*.example.com`) to the app; answers `{"host": ...}`.
#[utoipa::path(post, path = "/v1/apps/{app}/domains", tag = "domains",
    params(("app" = String, Path, description = "The app's name")), request_body = AddDomain,
    responses((status = 201, body = AddDomain), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn add_domain(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: AddDomain = json_body(body)?;
    let domain = Domain::new(req.host.to_ascii_lowercase())?;
    ctx.platform.add_domain(&app, domain.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(AddDomain {
            host: domain.to_string(),
        }),
    )
        .into_response())
}

/// Stops routing a hostname to the app.
#[utoipa::path(delete, path = "/v1/apps/{app}/domains/{host}", tag = "domains",
    params(("app" = String, Path, description = "The app's name"),
        ("host" = String, Path, description = "The hostname")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn remove_domain(
    State(ctx): State<Ctx>,
    Path((app, host)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = app_name(&app)?;
    let domain = Domain::new(host.to_ascii_lowercase())?;
    ctx.platform.remove_domain(&app, &domain).await?;
    Ok(StatusCode::NO_CONTENT)
}
