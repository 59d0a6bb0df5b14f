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
/// a quarter smaller than with glibc's allocator (see `paas-proxy/bench/run.sh`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use paas::api::{ApiServer, ApiSettings, ServeSettings};
use paas::core::memory::MemoryLogSink;
use paas::core::{
    Authorizer, DeployRequest, DeploySource, Error, HealthCheck, LogLine, LogSink, LogSource,
    Platform, PlatformSettings, Progress, StaticTokenAuthorizer, Token,
};
use paas::docker::DockerSchedulerSettings;
use paas::docker::{stack, DockerBuilder, DockerBuilderSettings, DockerScheduler};
use paas::git::{push_hook_fn, GitHttpService, GitHttpSettings, GitSourceStore};
use paas::proxy::{IpNet, ProxyRouter, ProxySettings};
use paas::sqlite::SqliteReleaseStore;

/// The platform daemon: API + git on one address, the router on another.
#[derive(Parser, Debug)]
#[command(name = "paasd", version, about)]
struct Args {
    /// Where repositories, the database, logs and the token live.
    #[arg(long, default_value = "./.paas", env = "PAAS_DATA_DIR")]
    data_dir: PathBuf,
    /// The API and git endpoint address.
    #[arg(long, default_value = "127.0.0.1:7070", env = "PAAS_API_ADDR")]
    api_addr: SocketAddr,
    /// The router (app traffic) address.
    #[arg(long, default_value = "127.0.0.1:8080", env = "PAAS_HTTP_ADDR")]
    http_addr: SocketAddr,
    /// The API token (default: $PAAS_TOKEN, else one stored in DATA_DIR/token, generated once).
    #[arg(long, env = "PAAS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The stack image apps run on (default: a busybox stack, created if missing).
    #[arg(long, env = "PAAS_STACK")]
    stack: Option<String>,
    /// Apps answer at APP.BASE_DOMAIN on the router.
    #[arg(long, default_value = "localhost", env = "PAAS_BASE_DOMAIN")]
    base_domain: String,
    /// Health check of new web processes: an HTTP path (`/up`) that must answer below 400;
    /// without it, a TCP connect to `PORT`. An app's PAAS_HEALTHCHECK_PATH config var
    /// overrides it for that app.
    #[arg(long, env = "PAAS_HEALTH_PATH")]
    health_path: Option<String>,
    /// Seconds new processes have to become healthy before a deploy fails.
    #[arg(long, default_value_t = 60, env = "PAAS_HEALTH_TIMEOUT")]
    health_timeout: u64,
    /// Seconds between SIGTERM and SIGKILL when stopping processes.
    #[arg(long, default_value_t = 10, env = "PAAS_STOP_GRACE")]
    stop_grace: u64,
    /// Seconds old endpoints may finish in-flight requests during a deploy.
    #[arg(long, default_value_t = 30, env = "PAAS_DRAIN_TIMEOUT")]
    drain_timeout: u64,
    /// A directory of classic buildpacks (each a directory with bin/detect and bin/compile).
    #[arg(long, env = "PAAS_BUILDPACKS")]
    buildpacks: Option<PathBuf>,
    /// Let apps' BUILDPACK_URL name local paths, file:// URLs and private or loopback hosts
    /// (off: only https/http/git URLs of public hosts, so an app cannot clone another app's
    /// repository or reach loopback-only services).
    #[arg(long, env = "PAAS_ALLOW_LOCAL_BUILDPACK_URLS")]
    allow_local_buildpack_urls: bool,
    /// Identifies this platform's containers on a shared engine.
    #[arg(long, default_value = "paasd", env = "PAAS_PLATFORM_ID")]
    platform_id: String,
    /// A network of proxies in front of the router (e.g. a TLS load balancer: `10.0.0.0/8`)
    /// whose X-Forwarded-For/-Proto/-Host/-Port reach apps; repeatable. From any other client
    /// these headers are replaced.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_net, env = "PAAS_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<IpNet>,
    /// At most this many open connections to the API and git endpoint; more wait in the
    /// kernel's backlog (they hold no descriptor the router needs).
    #[arg(long, default_value_t = 512, env = "PAAS_API_MAX_CONNECTIONS")]
    api_max_connections: usize,
    /// Seconds a client has to send a whole request head to the API (then it is closed).
    #[arg(long, default_value_t = 10, env = "PAAS_API_HEADER_TIMEOUT")]
    api_header_timeout: u64,
    /// How the daemon's own log lines are written: `text` for people, `json` (one object per
    /// line) for log collectors.
    #[arg(long, env = "PAAS_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn parse_net(s: &str) -> std::result::Result<IpNet, String> {
    s.parse::<IpNet>().map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAAS_LOG")
        .unwrap_or_else(|_| "info,hyper=warn,bollard=warn,sqlx=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
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
    prepare_data_dir(&data)?;
    let token = load_token(&data, args.token.clone())?;
    let docker = paas::docker::connect().await?;
    let stack_image = stack_image(&docker, args.stack.as_deref()).await?;
    let (platform, router, sources) = compose(&args, &data, docker, &stack_image).await?;
    let _watcher = platform.spawn_instance_watcher();

    let router_listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    let api_listener = bind_with_backlog(args.api_addr, 4096)?;
    let router_addr = router_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    // The last known table first (what runs now, adopted by label), so that apps that kept
    // running while the daemon was away never answer 404; then serve.
    platform.restore_routes().await?;
    let router_task = {
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { router.serve(router_listener, stop).await })
    };
    // Then converge each app (restart what died, health-check, re-route) in the background;
    // an API call on an app waits for that app's recovery (operations on one app are
    // serialized).
    let recovering = platform.clone();
    tokio::spawn(async move {
        if let Err(e) = recovering.recover().await {
            tracing::error!(error = %e, "recovery failed");
        }
    });

    let auth: Arc<dyn Authorizer> = Arc::new(StaticTokenAuthorizer::new(token.expose()));
    let api_settings = ApiSettings::default()
        .with_api_url(format!("http://{api_addr}"))
        .with_router_url(format!("http://{router_addr}"));
    let git = git_service(&platform, router_addr, sources, auth.clone());
    let app = with_operator_layers(
        ApiServer::new(platform.clone(), auth)
            .settings(api_settings)
            .router()
            .fallback_service(git),
    );
    // The API port faces the same clients as the router: heads have a deadline and
    // connections a cap, so it can never take the descriptors the router needs.
    let limits = ServeSettings::default()
        .with_header_read_timeout(Duration::from_secs(args.api_header_timeout))
        .with_max_connections(args.api_max_connections);
    let api_task = {
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { paas::api::serve(api_listener, app, limits, stop).await })
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

/// The layers an operator expects around the API and git endpoint: a request id on every
/// request and answer (`x-request-id`, kept when a proxy in front set one), a tracing span per
/// request (method, path, status, latency; `PAAS_LOG=tower_http=debug` shows them), and a
/// panic in a handler answered as a JSON 500 instead of a dropped connection.
fn with_operator_layers(app: axum::Router) -> axum::Router {
    use tower_http::request_id::{
        MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
    };
    #[derive(Clone, Copy)]
    struct RandomIds;
    impl MakeRequestId for RandomIds {
        fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
            let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            axum::http::HeaderValue::from_str(&id)
                .ok()
                .map(RequestId::new)
        }
    }
    let panicked = |_: Box<dyn std::any::Any + Send>| {
        let body = r#"{"kind":"internal","message":"the server failed while answering (a bug; see the daemon's log)"}"#;
        axum::http::Response::builder()
            .status(500)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .expect("static response")
    };
    app.layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(RandomIds))
}

/// Creates the data directory: tokens, the database (sealed config), logs and repositories
/// are for the daemon's user only.
fn prepare_data_dir(data: &Path) -> paas::core::Result<()> {
    std::fs::create_dir_all(data)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The stack image: the one named (it must exist), or the busybox stack, made if missing.
async fn stack_image(
    docker: &paas::docker::Docker,
    named: Option<&str>,
) -> paas::core::Result<String> {
    match named {
        Some(image) => {
            docker.inspect_image(image).await.map_err(|_| {
                Error::not_found(format!(
                    "stack image \"{image}\" does not exist on the Docker engine (build or load it first)"
                ))
            })?;
            Ok(image.to_string())
        }
        None => {
            stack::ensure_busybox_stack(docker, stack::DEFAULT_STACK_IMAGE).await?;
            Ok(stack::DEFAULT_STACK_IMAGE.to_string())
        }
    }
}

/// The values the platform's stages share, set once, from the flags.
fn platform_settings(args: &Args, data: &Path) -> paas::core::Result<PlatformSettings> {
    let health_check = match &args.health_path {
        Some(path) => HealthCheck::http(path.clone())
            .map_err(|e| Error::invalid(format!("--health-path: {}", e.message())))?,
        None => HealthCheck::Tcp,
    };
    let settings = PlatformSettings::default()
        .with_health_check(health_check)
        .with_base_domain(args.base_domain.clone())
        .with_health_timeout(Duration::from_secs(args.health_timeout))
        .with_stop_grace(Duration::from_secs(args.stop_grace))
        .with_drain_timeout(Duration::from_secs(args.drain_timeout))
        .with_work_dir(data.join("work"));
    settings.validate()?;
    Ok(settings)
}

/// The composition: git repositories, the Docker builder and scheduler, the SQLite store, the
/// proxy router and a log sink with files, into one platform.
async fn compose(
    args: &Args,
    data: &Path,
    docker: paas::docker::Docker,
    stack_image: &str,
) -> paas::core::Result<(Platform, ProxyRouter, GitSourceStore)> {
    let settings = platform_settings(args, data)?;
    let logs: Arc<MemoryLogSink> = Arc::new(MemoryLogSink::new().with_dir(data.join("logs"))?);
    let sources = GitSourceStore::open(data.join("repos"))?;
    let mut builder_settings = DockerBuilderSettings::default();
    builder_settings.stack_image = stack_image.to_string();
    builder_settings.buildpacks_dir = args.buildpacks.clone();
    builder_settings.platform_id = args.platform_id.clone();
    builder_settings.allow_local_buildpack_urls = args.allow_local_buildpack_urls;
    let builder = DockerBuilder::new(docker.clone(), builder_settings)?;
    let store = SqliteReleaseStore::open(data.join("paas.db")).await?;
    let scheduler = DockerScheduler::new(
        docker,
        DockerSchedulerSettings::new(args.platform_id.clone()).for_platform(&settings),
    )
    .await?
    .with_log_sink(logs.clone());
    clean_up_after_previous_run(&builder, &scheduler, &logs, data).await?;
    let mut proxy_settings = ProxySettings::for_platform(&settings);
    proxy_settings.trusted_proxies = args.trusted_proxies.clone();
    let router = ProxyRouter::new(proxy_settings)?.with_access_log(logs.clone());
    let platform = Platform::composer()
        .sources(sources.clone())
        .builder(builder)
        .store(store)
        .scheduler(scheduler)
        .router(router.clone())
        .log_sink(logs)
        .settings(settings)
        .compose()?;
    Ok((platform, router, sources))
}

/// What a previous run of this daemon left mid-way (killed during a build or a one-off run):
/// nothing else owns it, so it goes before anything starts; an interrupted build says so in
/// its app's log.
async fn clean_up_after_previous_run(
    builder: &DockerBuilder,
    scheduler: &DockerScheduler,
    logs: &Arc<MemoryLogSink>,
    data: &Path,
) -> paas::core::Result<()> {
    let interrupted = builder.remove_orphaned_builds().await?;
    let runs = scheduler.remove_orphaned_runs().await?;
    let _ = std::fs::remove_dir_all(data.join("work"));
    if !interrupted.is_empty() || runs > 0 {
        tracing::info!(
            builds = interrupted.len(),
            runs,
            "removed containers left by a previous run"
        );
    }
    for (app, build) in interrupted {
        let line = LogLine::new(
            app,
            LogSource::Platform("build".into()),
            format!(
                "Build {build} failed: interrupted by a platform restart; push again to deploy"
            ),
        );
        let _ = LogSink::append(logs.as_ref(), line).await;
    }
    Ok(())
}

/// A listener whose accept queue holds `backlog` connections (the kernel caps it at
/// `net.core.somaxconn`): clients past the API's connection cap wait there, holding no
/// descriptor of this process, instead of being dropped.
fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
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
fn load_token(data: &Path, given: Option<String>) -> paas::core::Result<Token> {
    if let Some(t) = given {
        if t.len() < 8 || t.chars().any(|c| c.is_control() || c == ' ' || c == ':') {
            return Err(Error::invalid(
                "token must be at least 8 characters, without spaces, ':' or control characters",
            ));
        }
        return Ok(Token::new(t));
    }
    let path = data.join("token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            eprintln!("paasd: using the API token stored in {}", path.display());
            return Ok(Token::new(t));
        }
    }
    let token = Token::generate()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(&path)?.write_all(token.expose().as_bytes())?;
    // Printed once, on purpose: this is how the operator learns it.
    println!(
        "paasd: generated API token (stored in {}): {}",
        path.display(),
        token.expose()
    );
    Ok(token)
}

// ---------------------------------------------------------------------------------------------
// git

fn git_service(
    platform: &Platform,
    router_addr: SocketAddr,
    sources: GitSourceStore,
    auth: Arc<dyn Authorizer>,
) -> GitHttpService {
    let platform = platform.clone();
    let port = router_addr.port();
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
    GitHttpService::new(sources, auth, GitHttpSettings::default()).with_hook(hook)
}
