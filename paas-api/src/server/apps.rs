//! `/v1/info` and `/v1/apps[/{app}]`: list, create, show, destroy.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use paas_core::{App, ErrorBody};

use super::error::ApiResult;
use super::extract::{app_name, json_body, query};
use super::Ctx;
use crate::wire::{ApiInfo, AppInfo, CreateApp, Page, PageRequest, ReleaseView};

/// The most items one page holds.
pub(crate) const MAX_PAGE: usize = 1000;

/// What this server is.
#[utoipa::path(get, path = "/v1/info", tag = "platform",
    responses((status = 200, body = ApiInfo), (status = 401, body = ErrorBody)))]
pub(crate) async fn info(State(ctx): State<Ctx>) -> Json<ApiInfo> {
    Json(ApiInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        api_url: ctx.settings.api_url.clone(),
        router_url: ctx.settings.router_url.clone(),
        base_domain: ctx.platform.settings().base_domain.clone(),
    })
}

/// Apps, by name, a page at a time (`cursor` is the last name of the previous page).
#[utoipa::path(get, path = "/v1/apps", tag = "apps", params(PageRequest),
    responses((status = 200, body = Page<App>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub(crate) async fn list_apps(
    State(ctx): State<Ctx>,
    q: Result<Query<PageRequest>, QueryRejection>,
) -> ApiResult<Json<Page<App>>> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let mut apps = ctx.platform.list_apps().await?;
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let start = match &q.cursor {
        Some(c) => apps.partition_point(|a| a.name.as_str() <= c.as_str()),
        None => 0,
    };
    let rest = &apps[start..];
    let items: Vec<App> = rest.iter().take(limit).cloned().collect();
    let next_cursor = (rest.len() > limit)
        .then(|| items.last().map(|a| a.name.to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// Creates an app (and its repository).
#[utoipa::path(post, path = "/v1/apps", tag = "apps", request_body = CreateApp,
    responses((status = 201, body = App), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn create_app(
    State(ctx): State<Ctx>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let req: CreateApp = json_body(body)?;
    let app = ctx.platform.create_app(&req.name).await?;
    Ok((StatusCode::CREATED, Json(app)).into_response())
}

/// `apps:info`: releases, formation, processes, domains and URLs.
#[utoipa::path(get, path = "/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "The app's name")),
    responses((status = 200, body = AppInfo), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn app_info(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<AppInfo>> {
    let app = app_name(&app)?;
    let s = ctx.platform.status(&app).await?;
    Ok(Json(AppInfo {
        name: s.app.name.clone(),
        created_at: s.app.created_at,
        current: s.current.as_ref().map(ReleaseView::from),
        latest: s.latest.as_ref().map(ReleaseView::from),
        formation: s.formation,
        instances: s.instances,
        domains: s.domains,
        web_urls: s
            .hosts
            .iter()
            .map(|h| ctx.settings.web_url(h.as_str()))
            .collect(),
        git_url: format!("{}/{}.git", ctx.settings.api_url, s.app.name),
    }))
}

/// Destroys an app: processes, images, repository, routes, records and logs.
#[utoipa::path(delete, path = "/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "The app's name")),
    responses((status = 204), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn destroy_app(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    let app = app_name(&app)?;
    ctx.platform.destroy_app(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}
