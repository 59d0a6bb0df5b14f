//! Config, releases, rollback and deploys: everything that makes a new release.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use paas_core::{
    check_ref_name, ConfigKey, ConfigUpdate, ConfigValue, DeployRequest, DeploySource, Error,
    ErrorBody, ListReleases, Version,
};

use super::apps::MAX_PAGE;
use super::error::ApiResult;
use super::extract::{app_name, json_body, query};
use super::ndjson::stream_op;
use super::Ctx;
use crate::wire::{
    ConfigChanged, ConfigPatch, DeployBody, Page, PageRequest, ReleaseView, RollbackRequest,
};

/// The app's config vars (`{"KEY": "VALUE"}`).
#[utoipa::path(get, path = "/v1/apps/{app}/config", tag = "config",
    params(("app" = String, Path, description = "The app's name")),
    responses((status = 200, body = BTreeMap<String, String>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn get_config(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    let app = app_name(&app)?;
    let config = ctx.platform.config(&app).await?;
    Ok(Json(config.to_env().into_iter().collect()))
}

/// Sets and unsets config vars: a new release, rolled out (NDJSON; result [`ConfigChanged`]).
#[utoipa::path(patch, path = "/v1/apps/{app}/config", tag = "config",
    params(("app" = String, Path, description = "The app's name")), request_body = ConfigPatch,
    responses((status = 200, description = "NDJSON StreamEvents; result: ConfigChanged",
            content_type = "application/x-ndjson", body = crate::StreamEvent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn patch_config(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let patch: ConfigPatch = json_body(body)?;
    let mut update = ConfigUpdate::default();
    for (k, v) in patch.set {
        update.set.insert(ConfigKey::new(k)?, ConfigValue::new(v)?);
    }
    for k in patch.unset {
        update.unset.push(ConfigKey::new(k)?);
    }
    if update.is_empty() {
        return Err(Error::invalid("config patch sets and unsets nothing").into());
    }
    ctx.platform.release_store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        let release = platform.set_config(&app, update, progress).await?;
        Ok(ConfigChanged {
            release: release.as_ref().map(ReleaseView::from),
        })
    }))
}

/// Releases, newest first, a page at a time (`cursor`: the previous page's last version).
#[utoipa::path(get, path = "/v1/apps/{app}/releases", tag = "releases",
    params(("app" = String, Path, description = "The app's name"), PageRequest),
    responses((status = 200, body = Page<ReleaseView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_releases(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    q: Result<Query<PageRequest>, QueryRejection>,
) -> ApiResult<Json<Page<ReleaseView>>> {
    let app = app_name(&app)?;
    let q = query(q)?;
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_PAGE);
    let mut list = ListReleases::newest(limit + 1);
    if let Some(cursor) = &q.cursor {
        let v: Version = cursor
            .parse()
            .map_err(|_| Error::invalid(format!("cursor: \"{cursor}\" is not a release cursor")))?;
        list = list.before(v);
    }
    let mut releases = ctx.platform.list_releases(&app, list).await?;
    let more = releases.len() > limit;
    releases.truncate(limit);
    let items: Vec<ReleaseView> = releases.iter().map(ReleaseView::from).collect();
    let next_cursor = more
        .then(|| items.last().map(|r| r.version.to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// One release (`3` or `v3`).
#[utoipa::path(get, path = "/v1/apps/{app}/releases/{version}", tag = "releases",
    params(("app" = String, Path, description = "The app's name"),
        ("version" = String, Path, description = "`v3` or `3`")),
    responses((status = 200, body = ReleaseView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn release_info(
    State(ctx): State<Ctx>,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Json<ReleaseView>> {
    let app = app_name(&app)?;
    let version: Version = version.parse()?;
    let r = ctx.platform.release(&app, version).await?;
    Ok(Json(ReleaseView::from(&r)))
}

/// Rolls back to a release (default: the one before the current): a new release with its
/// build and config (NDJSON; result [`ReleaseView`]).
#[utoipa::path(post, path = "/v1/apps/{app}/rollback", tag = "releases",
    params(("app" = String, Path, description = "The app's name")), request_body = RollbackRequest,
    responses((status = 200, description = "NDJSON StreamEvents; result: ReleaseView",
            content_type = "application/x-ndjson", body = crate::StreamEvent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn rollback(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: RollbackRequest = json_body(body)?;
    ctx.platform.release_store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        let r = platform.rollback(&app, req.version, progress).await?;
        Ok(ReleaseView::from(&r))
    }))
}

/// Deploys a ref of the app's repository or a prebuilt image (NDJSON; result
/// [`ReleaseView`]).
#[utoipa::path(post, path = "/v1/apps/{app}/deploys", tag = "releases",
    params(("app" = String, Path, description = "The app's name")), request_body = DeployBody,
    responses((status = 200, description = "NDJSON StreamEvents; result: ReleaseView",
            content_type = "application/x-ndjson", body = crate::StreamEvent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn deploy(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: DeployBody = json_body(body)?;
    let source = match (req.git_ref, req.image) {
        (Some(r), None) => {
            check_ref_name(&r)?;
            DeploySource::Ref(r)
        }
        (None, Some(image)) => DeploySource::Image(image),
        _ => {
            return Err(
                Error::invalid("deploy needs exactly one of \"git_ref\" or \"image\"").into(),
            )
        }
    };
    ctx.platform.release_store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        let r = platform
            .deploy(DeployRequest::new(app, source).with_progress(progress))
            .await?;
        Ok(ReleaseView::from(&r))
    }))
}
