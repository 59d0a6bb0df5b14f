//! `paasd`: the platform daemon. It composes `GitSourceStore`, `DockerBuilder`,
//! `SqliteReleaseStore`, `DockerScheduler`, `ProxyRouter` and a `MemoryLogSink` (with log files)
//! into one [`Platform`] and serves:
//!
//! - the HTTP JSON API (documented in README.md) and the git endpoint on `--api-addr`
//!   (`git push http://ANY:TOKEN@127.0.0.1:7070/APP.git main` deploys);
//! - the router on `--http-addr`: each app at `http://APP.localhost:8080` plus its domains.
//!
//! ```text
//! cargo run --release --example paasd -- [--data-dir DIR] [--api-addr ADDR] [--http-addr ADDR]
//!     [--token TOKEN] [--stack IMAGE]
//! ```

/// mimalloc, as the standalone router uses: the in-process router's per-connection memory is
/// a quarter smaller than with glibc's allocator (see `crates/paas-proxy/bench/run.sh`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use clap::Parser;
use futures::{Stream, StreamExt};
use paas::core::api::{
    AddDomain, AppInfo, ConfigPatch, CreateApp, DeployBody, ReleaseView, RestartRequest,
    RollbackRequest, RunCommand, StreamEvent,
};
use paas::core::memory::MemoryLogSink;
use paas::core::{
    AppName, ConfigKey, ConfigUpdate, ConfigValue, DeployRequest, DeploySource, Domain, Error,
    ErrorBody, ErrorKind, Formation, HealthCheck, Platform, PlatformSettings, ProcessType,
    Progress, Version,
};
use paas::docker::DockerSchedulerSettings;
use paas::docker::{stack, DockerBuilder, DockerBuilderSettings, DockerScheduler};
use paas::git::{push_hook_fn, GitHttpService, GitHttpSettings, GitSourceStore, TokenAuth};
use paas::proxy::{IpNet, ProxyRouter, ProxySettings};
use paas::sqlite::SqliteReleaseStore;
use serde::Deserialize;
use tokio::sync::mpsc;

/// The platform daemon: API + git on one address, the router on another.
#[derive(Parser, Debug)]
#[command(name = "paasd", version, about)]
struct Args {
    /// Where repositories, the database, logs and the token live.
    #[arg(long, default_value = "./.paas")]
    data_dir: PathBuf,
    /// The API and git endpoint address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    api_addr: SocketAddr,
    /// The router (app traffic) address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// The API token (default: $PAAS_TOKEN, else one stored in DATA_DIR/token, generated once).
    #[arg(long, env = "PAAS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The stack image apps run on (default: a busybox stack, created if missing).
    #[arg(long)]
    stack: Option<String>,
    /// Apps answer at APP.BASE_DOMAIN on the router.
    #[arg(long, default_value = "localhost")]
    base_domain: String,
    /// Health check of new web processes: an HTTP path (`/up`) that must answer below 400;
    /// without it, a TCP connect to `PORT`. An app's PAAS_HEALTHCHECK_PATH config var
    /// overrides it for that app.
    #[arg(long)]
    health_path: Option<String>,
    /// Seconds new processes have to become healthy before a deploy fails.
    #[arg(long, default_value_t = 60)]
    health_timeout: u64,
    /// Seconds between SIGTERM and SIGKILL when stopping processes.
    #[arg(long, default_value_t = 10)]
    stop_grace: u64,
    /// Seconds old endpoints may finish in-flight requests during a deploy.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// A directory of classic buildpacks (each a directory with bin/detect and bin/compile).
    #[arg(long)]
    buildpacks: Option<PathBuf>,
    /// Identifies this platform's containers on a shared engine.
    #[arg(long, default_value = "paasd")]
    platform_id: String,
    /// A network of proxies in front of the router (e.g. a TLS load balancer: `10.0.0.0/8`)
    /// whose X-Forwarded-For/-Proto/-Host/-Port reach apps; repeatable. From any other client
    /// these headers are replaced.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_net)]
    trusted_proxies: Vec<IpNet>,
}

fn parse_net(s: &str) -> std::result::Result<IpNet, String> {
    s.parse::<IpNet>().map_err(|e| e.to_string())
}

#[derive(Clone)]
struct Ctx {
    platform: Platform,
    token: Arc<str>,
    api_url: String,
    router_addr: SocketAddr,
    base_domain: String,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAAS_LOG")
                .unwrap_or_else(|_| "info,hyper=warn,bollard=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Every routed connection holds two descriptors (client and app).
    let open_files = paas::proxy::raise_open_files_limit();
    tracing::debug!(?open_files, "open files limit");
    if let Err(e) = run(args).await {
        eprintln!("paasd: error: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> paas::core::Result<()> {
    let data = args.data_dir.clone();
    std::fs::create_dir_all(&data)?;
    let token = load_token(&data, args.token.clone())?;

    let docker = paas::docker::connect().await?;
    let stack_image = match &args.stack {
        Some(image) => {
            docker.inspect_image(image).await.map_err(|_| {
                Error::not_found(format!(
                    "stack image \"{image}\" does not exist on the Docker engine (build or load it first)"
                ))
            })?;
            image.clone()
        }
        None => {
            stack::ensure_busybox_stack(&docker, stack::DEFAULT_STACK_IMAGE).await?;
            stack::DEFAULT_STACK_IMAGE.to_string()
        }
    };

    let logs: Arc<MemoryLogSink> = Arc::new(MemoryLogSink::new().with_dir(data.join("logs"))?);
    let sources = GitSourceStore::open(data.join("repos"))?;
    let mut builder_settings = DockerBuilderSettings::default();
    builder_settings.stack_image = stack_image.clone();
    builder_settings.buildpacks_dir = args.buildpacks.clone();
    let builder = DockerBuilder::new(docker.clone(), builder_settings)?;
    let store = SqliteReleaseStore::open(data.join("paas.db")).await?;
    let mut sched_settings = DockerSchedulerSettings::new(args.platform_id.clone());
    sched_settings.stop_grace = Duration::from_secs(args.stop_grace);
    let scheduler = DockerScheduler::new(docker.clone(), sched_settings)
        .await?
        .with_log_sink(logs.clone());
    let mut proxy_settings = ProxySettings::default();
    proxy_settings.base_domain = Some(args.base_domain.clone());
    proxy_settings.drain_timeout = Duration::from_secs(args.drain_timeout);
    proxy_settings.trusted_proxies = args.trusted_proxies.clone();
    let router = ProxyRouter::new(proxy_settings)?.with_access_log(logs.clone());

    let health_check = match &args.health_path {
        Some(path)
            if path.starts_with('/') && !path.chars().any(|c| c.is_control() || c == ' ') =>
        {
            HealthCheck::Http { path: path.clone() }
        }
        Some(_) => {
            return Err(Error::invalid(
                "--health-path must start with '/' and contain no spaces or control characters",
            ))
        }
        None => HealthCheck::Tcp,
    };
    let settings = PlatformSettings::default()
        .with_health_check(health_check)
        .with_base_domain(args.base_domain.clone())
        .with_health_timeout(Duration::from_secs(args.health_timeout))
        .with_stop_grace(Duration::from_secs(args.stop_grace))
        .with_drain_timeout(Duration::from_secs(args.drain_timeout))
        .with_work_dir(data.join("work"));
    let platform = Platform::new(
        Arc::new(sources.clone()),
        Arc::new(builder),
        Arc::new(store),
        Arc::new(scheduler),
        Arc::new(router.clone()),
        logs.clone(),
        settings,
    );
    let _watcher = platform.spawn_instance_watcher();

    let router_listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    let api_listener = tokio::net::TcpListener::bind(args.api_addr).await?;
    let router_addr = router_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let router_task = {
        let router = router.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { router.serve(router_listener, stop).await })
    };

    // Adopt running containers and rebuild the route table before answering the API.
    platform.recover().await?;

    let ctx = Ctx {
        platform: platform.clone(),
        token: token.into(),
        api_url: format!("http://{api_addr}"),
        router_addr,
        base_domain: args.base_domain.clone(),
    };
    let git = git_service(&ctx, sources);
    let app = api_router(ctx.clone()).fallback_service(git);
    let api_task = {
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            axum::serve(api_listener, app)
                .with_graceful_shutdown(stop)
                .await
        })
    };
    eprintln!(
        "paasd listening api=http://{api_addr} router=http://{router_addr} stack={stack_image} data={}",
        data.display()
    );

    shutdown_signal().await;
    eprintln!("paasd: shutting down (app containers keep running)");
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(30);
    let _ = tokio::time::timeout(grace, api_task).await;
    let _ = tokio::time::timeout(grace, router_task).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The token: given, or stored in `DATA_DIR/token`, or generated, stored with mode 0600 and
/// printed once.
fn load_token(data: &Path, given: Option<String>) -> paas::core::Result<String> {
    if let Some(t) = given {
        if t.len() < 8 || t.chars().any(|c| c.is_control() || c == ' ' || c == ':') {
            return Err(Error::invalid(
                "token must be at least 8 characters, without spaces, ':' or control characters",
            ));
        }
        return Ok(t);
    }
    let path = data.join("token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            eprintln!("paasd: using the API token stored in {}", path.display());
            return Ok(t);
        }
    }
    let mut bytes = [0u8; 24];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(&path)?.write_all(token.as_bytes())?;
    // Printed once, on purpose: this is how the operator learns it.
    println!(
        "paasd: generated API token (stored in {}): {token}",
        path.display()
    );
    Ok(token)
}

// ---------------------------------------------------------------------------------------------
// git

fn git_service(ctx: &Ctx, sources: GitSourceStore) -> GitHttpService {
    let platform = ctx.platform.clone();
    let port = ctx.router_addr.port();
    let hook = push_hook_fn(move |event, progress: Progress| {
        let platform = platform.clone();
        async move {
            let req = DeployRequest::new(event.app.clone(), DeploySource::Commit(event.commit))
                .with_progress(progress);
            let release = platform.deploy(req).await?;
            let host = platform.default_host(&event.app)?;
            Ok(format!(
                "Released {} of {} (http://{host}:{port})",
                release.version, event.app
            ))
        }
    });
    GitHttpService::new(
        sources,
        TokenAuth::fixed(ctx.token.to_string()),
        GitHttpSettings::default(),
    )
    .with_hook(hook)
}

// ---------------------------------------------------------------------------------------------
// API plumbing: auth, errors, NDJSON streams

struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::BuildFailed | ErrorKind::DeployFailed => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind());
        let mut resp = (status, Json(ErrorBody::from(&self.0))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"paas\""),
            );
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn token_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(t) = value.strip_prefix("Bearer ") {
        return Some(t.trim().to_string());
    }
    let b64 = value.strip_prefix("Basic ")?;
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    pair.split_once(':').map(|(_, p)| p.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    match token_of(req.headers()) {
        Some(t) if constant_time_eq(t.as_bytes(), ctx.token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError(Error::new(ErrorKind::Unauthenticated, "invalid token")).into_response(),
        None => ApiError(Error::new(
            ErrorKind::Unauthenticated,
            "missing credentials: send the token as `Authorization: Bearer TOKEN` (or as the HTTP Basic password)",
        ))
        .into_response(),
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body)
        .map_err(|e| ApiError(Error::invalid(format!("invalid JSON body: {e}"))))
}

fn app_name(s: &str) -> ApiResult<AppName> {
    Ok(AppName::new(s)?)
}

fn ndjson<S>(events: S) -> Response
where
    S: Stream<Item = String> + Send + 'static,
{
    let body = Body::from_stream(events.map(|mut line| {
        line.push('\n');
        Ok::<_, Infallible>(line)
    }));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("valid response")
}

fn event_json(e: &StreamEvent) -> String {
    serde_json::to_string(e).unwrap_or_else(|_| "{\"type\":\"error\"}".into())
}

/// Runs a long operation in its own task (it finishes even if the client goes away) and
/// streams its progress lines, then its result or error, as NDJSON.
fn stream_op<F, Fut>(op: F) -> Response
where
    F: FnOnce(Progress) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = paas::core::Result<serde_json::Value>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<StreamEvent>();
    let (progress, mut lines) = Progress::channel();
    tokio::spawn(async move {
        let fwd_tx = tx.clone();
        let forward = tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                let _ = fwd_tx.send(StreamEvent::Progress { line });
            }
        });
        let result = op(progress).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), forward).await;
        let last = match result {
            Ok(value) => StreamEvent::Result { value },
            Err(e) => StreamEvent::Error { error: (&e).into() },
        };
        let _ = tx.send(last);
    });
    ndjson(receiver_stream(rx).map(|e| event_json(&e)))
}

fn receiver_stream<T: Send + 'static>(rx: mpsc::UnboundedReceiver<T>) -> impl Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

// ---------------------------------------------------------------------------------------------
// API routes

fn api_router(ctx: Ctx) -> axum::Router {
    let api = axum::Router::new()
        .route("/v1/info", get(info))
        .route("/v1/apps", get(list_apps).post(create_app))
        .route("/v1/apps/{app}", get(app_info).delete(destroy_app))
        .route("/v1/apps/{app}/config", get(get_config).patch(patch_config))
        .route("/v1/apps/{app}/releases", get(list_releases))
        .route("/v1/apps/{app}/releases/{version}", get(release_info))
        .route("/v1/apps/{app}/rollback", post(rollback))
        .route(
            "/v1/apps/{app}/formation",
            get(get_formation).patch(patch_formation),
        )
        .route("/v1/apps/{app}/ps", get(ps))
        .route("/v1/apps/{app}/restart", post(restart))
        .route("/v1/apps/{app}/logs", get(logs))
        .route("/v1/apps/{app}/run", post(run_command))
        .route("/v1/apps/{app}/domains", get(list_domains).post(add_domain))
        .route(
            "/v1/apps/{app}/domains/{host}",
            axum::routing::delete(remove_domain),
        )
        .route("/v1/apps/{app}/deploys", post(deploy))
        .layer(middleware::from_fn_with_state(ctx.clone(), auth))
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024));
    api.with_state(ctx)
}

async fn info(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "api_url": ctx.api_url,
        "router_url": format!("http://{}", ctx.router_addr),
        "base_domain": ctx.base_domain,
    }))
}

async fn list_apps(State(ctx): State<Ctx>) -> ApiResult<Response> {
    Ok(Json(ctx.platform.list_apps().await?).into_response())
}

async fn create_app(State(ctx): State<Ctx>, body: Bytes) -> ApiResult<Response> {
    let req: CreateApp = parse_body(&body)?;
    let app = ctx.platform.create_app(&req.name).await?;
    Ok((StatusCode::CREATED, Json(app)).into_response())
}

async fn app_info(State(ctx): State<Ctx>, UrlPath(app): UrlPath<String>) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let s = ctx.platform.status(&app).await?;
    let port = ctx.router_addr.port();
    let info = AppInfo {
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
            .map(|h| format!("http://{h}:{port}"))
            .collect(),
        git_url: format!("{}/{}.git", ctx.api_url, s.app.name),
    };
    Ok(Json(info).into_response())
}

async fn destroy_app(State(ctx): State<Ctx>, UrlPath(app): UrlPath<String>) -> ApiResult<Response> {
    let app = app_name(&app)?;
    ctx.platform.destroy_app(&app).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_config(State(ctx): State<Ctx>, UrlPath(app): UrlPath<String>) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let config = ctx.platform.config(&app).await?;
    let map: BTreeMap<String, String> = config.to_env().into_iter().collect();
    Ok(Json(map).into_response())
}

async fn patch_config(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let patch: ConfigPatch = parse_body(&body)?;
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
    ctx.platform.store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        let release = platform.set_config(&app, update, progress).await?;
        Ok(serde_json::json!({ "release": release.as_ref().map(ReleaseView::from) }))
    }))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn list_releases(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let releases = ctx.platform.releases(&app, limit).await?;
    let views: Vec<ReleaseView> = releases.iter().map(ReleaseView::from).collect();
    Ok(Json(views).into_response())
}

async fn release_info(
    State(ctx): State<Ctx>,
    UrlPath((app, version)): UrlPath<(String, String)>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let version: Version = version.parse()?;
    let r = ctx.platform.release(&app, version).await?;
    Ok(Json(ReleaseView::from(&r)).into_response())
}

async fn rollback(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: RollbackRequest = parse_body(&body)?;
    ctx.platform.store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        let r = platform.rollback(&app, req.version, progress).await?;
        Ok(to_value(&ReleaseView::from(&r)))
    }))
}

async fn get_formation(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    Ok(Json(ctx.platform.status(&app).await?.formation).into_response())
}

async fn patch_formation(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let raw: BTreeMap<String, i64> = parse_body(&body)?;
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
    ctx.platform.store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        let f = platform.scale(&app, changes, progress).await?;
        Ok(to_value(&f))
    }))
}

async fn ps(State(ctx): State<Ctx>, UrlPath(app): UrlPath<String>) -> ApiResult<Response> {
    let app = app_name(&app)?;
    Ok(Json(ctx.platform.instances(&app).await?).into_response())
}

async fn restart(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: RestartRequest = parse_body(&body)?;
    let only = req.process_type.map(ProcessType::new).transpose()?;
    ctx.platform.store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        platform.restart(&app, only, progress).await?;
        Ok(serde_json::Value::Null)
    }))
}

#[derive(Deserialize)]
struct LogsQuery {
    lines: Option<usize>,
    follow: Option<bool>,
}

async fn logs(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let n = q.lines.unwrap_or(100).min(1500);
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
    Ok(ndjson(
        lines.map(|l| serde_json::to_string(&l).unwrap_or_default()),
    ))
}

async fn run_command(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: RunCommand = parse_body(&body)?;
    let handle = ctx.platform.run(&app, req.command).await?;
    let logs = ctx.platform.log_sink().clone();
    let output = handle.output;
    let exit = handle.exit;
    let run_app = app.clone();
    let events = output
        .then(move |chunk| {
            let logs = logs.clone();
            let app = run_app.clone();
            async move {
                for l in chunk.text.lines() {
                    let source = paas::core::LogSource::App {
                        process_type: ProcessType::new("run").expect("valid"),
                        index: 0,
                    };
                    let _ = paas::core::LogSink::append(
                        logs.as_ref(),
                        paas::core::LogLine::new(app.clone(), source, l),
                    )
                    .await;
                }
                StreamEvent::Output {
                    stream: chunk.stream,
                    text: chunk.text,
                }
            }
        })
        .chain(futures::stream::once(async move {
            match exit.await {
                Ok(code) => StreamEvent::Exit { code },
                Err(e) => StreamEvent::Error { error: (&e).into() },
            }
        }));
    Ok(ndjson(events.map(|e| event_json(&e))))
}

async fn list_domains(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    Ok(Json(ctx.platform.domains(&app).await?).into_response())
}

async fn add_domain(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: AddDomain = parse_body(&body)?;
    let domain = Domain::new(req.host.to_ascii_lowercase())?;
    ctx.platform.add_domain(&app, domain.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "host": domain })),
    )
        .into_response())
}

async fn remove_domain(
    State(ctx): State<Ctx>,
    UrlPath((app, host)): UrlPath<(String, String)>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let domain = Domain::new(host.to_ascii_lowercase())?;
    ctx.platform.remove_domain(&app, &domain).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deploy(
    State(ctx): State<Ctx>,
    UrlPath(app): UrlPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    let req: DeployBody = parse_body(&body)?;
    let source = match (req.git_ref, req.image) {
        (Some(r), None) => {
            paas::core::check_ref_name(&r)?;
            DeploySource::Ref(r)
        }
        (None, Some(image)) => DeploySource::Image(image),
        _ => {
            return Err(
                Error::invalid("deploy needs exactly one of \"git_ref\" or \"image\"").into(),
            )
        }
    };
    ctx.platform.store().get_app(&app).await?;
    let platform = ctx.platform.clone();
    Ok(stream_op(move |progress| async move {
        let r = platform
            .deploy(DeployRequest::new(app, source).with_progress(progress))
            .await?;
        Ok(to_value(&ReleaseView::from(&r)))
    }))
}
