//! The API server: [`ApiServer`] turns a [`Platform`] and an [`Authorizer`] into an
//! `axum::Router` holding every `/v1` route, ready to be served alone or nested under a prefix
//! of the embedder's own app, beside its routes and tower layers.

mod apps;
mod auth;
mod domains;
mod error;
mod extract;
mod ndjson;
mod openapi;
mod probes;
mod processes;
mod releases;
mod serve;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use paas_core::{Authorizer, Platform};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{status_of, ApiError, ApiResult};
pub use ndjson::NDJSON;
pub use serve::{serve, ServeSettings};

/// Settings of an [`ApiServer`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ApiSettings {
    /// The URL clients reach the API at, including any prefix it is mounted under
    /// (`https://paas.example.com/paas`); git URLs are `API_URL/APP.git`. Default
    /// `http://127.0.0.1:7070`.
    pub api_url: String,
    /// Where the router serves apps (`http://127.0.0.1:8080`): web URLs take its scheme and
    /// port. Default none: web URLs are `http://HOST`.
    pub router_url: Option<String>,
    /// The largest JSON request body (default 1 MiB); larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            api_url: "http://127.0.0.1:7070".into(),
            router_url: None,
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl ApiSettings {
    /// Sets the API's URL.
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into().trim_end_matches('/').to_string();
        self
    }
    /// Sets the router's URL.
    pub fn with_router_url(mut self, url: impl Into<String>) -> Self {
        self.router_url = Some(url.into().trim_end_matches('/').to_string());
        self
    }
    /// Sets the body limit.
    pub fn with_max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// The web URL of `host` on the router.
    fn web_url(&self, host: &str) -> String {
        let Some(router) = &self.router_url else {
            return format!("http://{host}");
        };
        let (scheme, rest) = router.split_once("://").unwrap_or(("http", router));
        let authority = rest.split('/').next().unwrap_or("");
        let port = match authority.strip_prefix('[') {
            Some(v6) => v6.split_once("]:").map(|(_, p)| p).unwrap_or(""),
            None => authority.rsplit_once(':').map(|(_, p)| p).unwrap_or(""),
        };
        let default_port = matches!((scheme, port), ("http", "80") | ("https", "443"));
        if port.is_empty() || default_port {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) platform: Platform,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) settings: Arc<ApiSettings>,
}

/// The HTTP API of a [`Platform`].
///
/// ```no_run
/// use paas_api::{ApiServer, ApiSettings};
/// use paas_core::StaticTokenAuthorizer;
/// # fn demo(platform: paas_core::Platform) {
/// let api = ApiServer::new(platform, StaticTokenAuthorizer::new("s3cret"))
///     .settings(ApiSettings::default().with_api_url("https://example.com/paas"));
/// let app = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "my platform" }))
///     .nest("/paas", api.router());
/// # let _ = app; }
/// ```
///
/// `GET /healthz` (alive) and `GET /readyz` (the store and the scheduler answer; 503 naming the
/// ones that do not) need no credentials: they are for load balancers and supervisors.
///
/// Every `/v1` route asks the authorizer first (401/403 as it decides), then answers JSON, an
/// [`ErrorBody`](paas_core::ErrorBody) with a matching status, or an NDJSON stream of
/// [`StreamEvent`](crate::StreamEvent)s. `GET /v1/openapi.json` describes them all and needs
/// no credentials.
#[derive(Clone)]
pub struct ApiServer {
    platform: Platform,
    authorizer: Arc<dyn Authorizer>,
    settings: ApiSettings,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("authorizer", &self.authorizer)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// The API of `platform`, asking `authorizer` about every request.
    pub fn new(platform: Platform, authorizer: impl Authorizer) -> Self {
        ApiServer {
            platform,
            authorizer: Arc::new(authorizer),
            settings: ApiSettings::default(),
        }
    }

    /// Sets the settings.
    pub fn settings(mut self, settings: ApiSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The routes, with their authorization and body limit, as an `axum::Router` to serve or to
    /// nest under a prefix.
    pub fn router(self) -> axum::Router {
        let ctx = Ctx {
            platform: self.platform,
            authorizer: self.authorizer,
            settings: Arc::new(self.settings),
        };
        let (router, _) = api_routes().split_for_parts();
        let limit = ctx.settings.max_body_bytes;
        let described = openapi::document();
        router
            .route_layer(axum::middleware::from_fn_with_state(
                ctx.clone(),
                auth::authorize,
            ))
            .route("/healthz", axum::routing::get(probes::healthz))
            .route("/readyz", axum::routing::get(probes::readyz))
            .route(
                "/v1/openapi.json",
                axum::routing::get(move || {
                    let doc = described.clone();
                    async move { axum::Json(doc) }
                }),
            )
            .layer(DefaultBodyLimit::max(limit))
            .with_state(ctx)
    }

    /// The OpenAPI 3.1 description of every route [`router`](Self::router) serves.
    pub fn openapi() -> utoipa::openapi::OpenApi {
        openapi::document()
    }
}

/// Every `/v1` route, each described by its handler's `#[utoipa::path]`: a route cannot be
/// served without being described.
fn api_routes() -> OpenApiRouter<Ctx> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(apps::info))
        .routes(routes!(apps::list_apps, apps::create_app))
        .routes(routes!(apps::app_info, apps::destroy_app))
        .routes(routes!(releases::get_config, releases::patch_config))
        .routes(routes!(releases::list_releases))
        .routes(routes!(releases::release_info))
        .routes(routes!(releases::rollback))
        .routes(routes!(releases::deploy))
        .routes(routes!(
            processes::get_formation,
            processes::patch_formation
        ))
        .routes(routes!(processes::ps))
        .routes(routes!(processes::restart))
        .routes(routes!(processes::logs))
        .routes(routes!(processes::run_command))
        .routes(routes!(domains::list_domains, domains::add_domain))
        .routes(routes!(domains::remove_domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_urls_take_the_routers_scheme_and_port() {
        let s = ApiSettings::default();
        assert_eq!(s.web_url("a.localhost"), "http://a.localhost");
        let s = s.with_router_url("http://127.0.0.1:8080");
        assert_eq!(s.web_url("a.localhost"), "http://a.localhost:8080");
        let s = ApiSettings::default().with_router_url("https://0.0.0.0:443/");
        assert_eq!(s.web_url("a.example.com"), "https://a.example.com");
        let s = ApiSettings::default().with_router_url("http://[::1]:8081");
        assert_eq!(s.web_url("a.localhost"), "http://a.localhost:8081");
    }
}
