//! [`ProxyRouter`]: the route table, the `Router` trait, and the listeners.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use paas_core::{AppName, DrainReport, DrainRequest, Error, LogSink, Result, Route, Router};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::access::AccessLog;
use crate::clock::now_ms;
use crate::engine::{self, Client};
use crate::health;
use crate::metrics::{self, AppMetrics, EndpointSample};
use crate::settings::{Balance, ProxySettings};
use crate::shared::{lock, Shared, Stop, WriteState};
use crate::table::{AppEntry, Endpoint, Table};

const BACKEND: &str = "paas-proxy";

/// The reference [`Router`]: a reverse proxy (its own HTTP/1 engine on tokio and `httparse`)
/// with a route table swapped atomically (readers never block), least-in-flight (two random choices) or round-robin balancing per
/// app, pooled keep-alive upstream connections, passive and active health checks, retries of
/// idempotent requests that could not be sent, draining with in-flight tracking per endpoint
/// (upgraded connections included), WebSocket/`Upgrade`, streaming both ways, forwarded
/// headers, hardening against slow and malformed clients, and Prometheus metrics.
///
/// ```no_run
/// # async fn demo() -> paas_core::Result<()> {
/// use paas_proxy::{ProxyRouter, ProxySettings};
/// let router = ProxyRouter::new(ProxySettings::default())?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let admin = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
/// tokio::spawn(router.clone().serve_admin(admin, std::future::pending()));
/// router.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ProxyRouter {
    pub(crate) shared: Arc<Shared>,
}

impl ProxyRouter {
    /// A router with an empty table. Fails (`InvalidInput`, naming the field) on bad settings.
    pub fn new(settings: ProxySettings) -> Result<Self> {
        settings
            .validate()
            .map_err(|e| e.with_backend(BACKEND).with_operation("new"))?;
        Ok(ProxyRouter {
            shared: Arc::new(Shared::new(settings)),
        })
    }

    /// Also sends each access line of an app to `sink`, as a [`paas_core::LogSource::Router`]
    /// line of that app (besides `tracing`, target `paas_proxy::access`). Lines are queued and
    /// dropped if the sink falls far behind: the sink never slows requests.
    pub fn with_access_log(self, sink: Arc<dyn LogSink>) -> Self {
        self.set_access_log(sink);
        self
    }

    /// Like [`ProxyRouter::with_access_log`], on a shared router.
    pub fn set_access_log(&self, sink: Arc<dyn LogSink>) {
        let log = AccessLog::with_sink(sink);
        log.start();
        self.shared.access.store(Arc::new(log));
    }

    /// The settings.
    pub fn settings(&self) -> &ProxySettings {
        &self.shared.settings
    }

    /// Sets the balancing mode of one app (kept across route updates).
    pub fn set_balance(&self, app: &AppName, balance: Balance) {
        let mut ws = lock(&self.shared.write);
        ws.balance.insert(app.clone(), balance);
        let routes = ws.routes.clone();
        self.commit(&mut ws, routes);
    }

    /// Replaces the whole table in one atomic step (what a routes file reload does).
    ///
    /// Errors: `InvalidInput` if an app appears twice, `Conflict` if a hostname is listed by
    /// two apps; nothing changes then.
    pub fn replace_routes(&self, routes: Vec<Route>) -> Result<()> {
        let mut new = BTreeMap::new();
        let mut owners: HashMap<&str, &AppName> = HashMap::new();
        for route in &routes {
            for host in &route.hosts {
                if let Some(other) = owners.insert(host.as_str(), &route.app) {
                    if other != &route.app {
                        return Err(Error::conflict(format!(
                            "host \"{host}\" is listed by both app \"{other}\" and app \"{}\"",
                            route.app
                        ))
                        .with_backend(BACKEND)
                        .with_operation("replace_routes"));
                    }
                }
            }
        }
        for route in routes {
            let app = route.app.clone();
            if new.insert(app.clone(), route).is_some() {
                return Err(Error::invalid(format!("app \"{app}\" is listed twice"))
                    .with_backend(BACKEND)
                    .with_operation("replace_routes"));
            }
        }
        let mut ws = lock(&self.shared.write);
        self.commit(&mut ws, new);
        Ok(())
    }

    /// Requests and upgraded connections in flight to `endpoint` right now.
    pub fn in_flight(&self, endpoint: SocketAddr) -> usize {
        lock(&self.shared.registry)
            .get(&endpoint)
            .map_or(0, |e| e.in_flight.load(Ordering::SeqCst))
    }

    /// Whether `endpoint` currently gets requests (not ejected by passive health, not failing
    /// active health checks). `None` if the router does not know it.
    pub fn endpoint_healthy(&self, endpoint: SocketAddr) -> Option<bool> {
        lock(&self.shared.registry)
            .get(&endpoint)
            .map(|e| e.usable(now_ms()))
    }

    /// The metrics in Prometheus text format (what the admin listener serves at `/metrics`).
    pub fn metrics_text(&self) -> String {
        let mut apps: Vec<(String, Arc<AppMetrics>)> = lock(&self.shared.app_metrics)
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        let now = now_ms();
        let mut endpoints: Vec<EndpointSample> = lock(&self.shared.registry)
            .values()
            .map(|e| EndpointSample {
                addr: e.addr.to_string(),
                in_flight: e.in_flight.load(Ordering::Relaxed) as u64,
                healthy: e.usable(now),
            })
            .collect();
        endpoints.sort_by(|a, b| a.addr.cmp(&b.addr));
        metrics::render(&self.shared.global, &apps, &endpoints)
    }

    /// Builds and swaps in a new table from `routes`, then marks the endpoints that left it.
    fn commit(&self, ws: &mut WriteState, routes: BTreeMap<AppName, Route>) {
        let shared = &self.shared;
        let mut registry = lock(&shared.registry);
        let mut app_metrics = lock(&shared.app_metrics);
        let mut live = HashSet::new();
        let mut apps = BTreeMap::new();
        for (name, route) in &routes {
            let mut endpoints = Vec::with_capacity(route.endpoints.len());
            for addr in &route.endpoints {
                if !live.insert((name.clone(), *addr)) {
                    continue;
                }
                let ep = registry
                    .entry(*addr)
                    .or_insert_with(|| {
                        Arc::new(Endpoint::new(
                            *addr,
                            shared.settings.pool_max_idle_per_endpoint,
                        ))
                    })
                    .clone();
                ep.closing.store(false, Ordering::SeqCst);
                ep.removed.store(false, Ordering::SeqCst);
                endpoints.push(ep);
            }
            let metrics = app_metrics.entry(name.clone()).or_default().clone();
            let balance = ws
                .balance
                .get(name)
                .or_else(|| shared.settings.app_balance.get(name))
                .copied()
                .unwrap_or(shared.settings.balance);
            apps.insert(
                name.clone(),
                Arc::new(AppEntry {
                    route: route.clone(),
                    endpoints,
                    balance,
                    rr: AtomicUsize::new(fastrand::usize(..)),
                    metrics,
                }),
            );
        }
        app_metrics.retain(|k, _| routes.contains_key(k));
        shared.table.store(Arc::new(Table::build(
            apps,
            shared.settings.base_domain.as_deref(),
        )));
        let routed: HashSet<SocketAddr> = live.iter().map(|(_, a)| *a).collect();
        for (addr, ep) in registry.iter() {
            if routed.contains(addr) || ep.removed.load(Ordering::SeqCst) {
                continue;
            }
            ep.removed.store(true, Ordering::SeqCst);
            // Its idle connections are of no more use (responses in flight close theirs).
            ep.pool.clear();
            let gen = ep.removal_gen.fetch_add(1, Ordering::SeqCst) + 1;
            tracing::debug!(endpoint = %addr, "endpoint removed from routes; draining");
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let ep = ep.clone();
                let timeout = shared.settings.drain_timeout;
                handle.spawn(async move {
                    tokio::time::sleep(timeout).await;
                    if ep.removed.load(Ordering::SeqCst)
                        && ep.removal_gen.load(Ordering::SeqCst) == gen
                    {
                        ep.closing.store(true, Ordering::SeqCst);
                        ep.close_tunnels.notify_waiters();
                    }
                });
            }
        }
        registry
            .retain(|addr, ep| routed.contains(addr) || ep.in_flight.load(Ordering::SeqCst) > 0);
        ws.routes = routes;
    }

    fn start_background(&self) {
        self.shared.access.load().start();
        if !self.shared.sweeper_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(sweep_pools(Arc::downgrade(&self.shared)));
        }
        if let Some(hc) = self.shared.settings.health_check.clone() {
            if !self.shared.health_started.swap(true, Ordering::SeqCst) {
                tokio::spawn(health::run(Arc::downgrade(&self.shared), hc));
            }
        }
    }

    /// Serves proxied traffic on `listener` until `shutdown` completes; then stops accepting,
    /// lets open connections finish their requests (up to `drain_timeout`) and returns.
    /// Also starts the active health checks, if configured.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        self.start_background();
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let stop = Arc::new(Stop::default());
        let open = Arc::new((AtomicUsize::new(0), Notify::new()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = self.shared.clone();
                        let stop = stop.clone();
                        let open = open.clone();
                        // An accepted connection's local port is the listener's
                        // (`X-Forwarded-Port`): one value shared by all, no getsockname.
                        open.0.fetch_add(1, Ordering::SeqCst);
                        spawn_connection(shared, stream, peer, port, stop, open);
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
        drop(listener);
        stop.set();
        let deadline = Instant::now() + self.shared.settings.drain_timeout;
        loop {
            let notified = open.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if open.0.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                tracing::warn!(
                    open = open.0.load(Ordering::SeqCst),
                    "connections still open at the end of the drain timeout"
                );
                break;
            }
        }
        Ok(())
    }

    /// Serves the admin endpoints on `listener` until `shutdown` completes: `GET /metrics`
    /// (Prometheus text), `GET /routes` (the table as JSON) and `GET /healthz`.
    pub async fn serve_admin(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let router = self.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let router = router.clone();
                            async move { Ok::<_, Infallible>(router.admin(req)) }
                        });
                        let _ = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10))
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    }

    fn admin(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
            ("GET", "/metrics") => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics_text(),
            ),
            ("GET", "/routes") => {
                let routes: Vec<Route> = self
                    .shared
                    .table
                    .load()
                    .apps
                    .values()
                    .map(|e| e.route.clone())
                    .collect();
                (
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_string(&routes).unwrap_or_default(),
                )
            }
            ("GET", "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_string(),
            ),
        };
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        r
    }
}

/// Closes idle upstream connections older than the pool idle timeout (or closed by their
/// endpoint) until the router is dropped.
async fn sweep_pools(shared: std::sync::Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => (s.settings.pool_idle_timeout / 2)
            .clamp(Duration::from_millis(50), Duration::from_secs(15)),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let endpoints: Vec<Arc<Endpoint>> = lock(&shared.registry).values().cloned().collect();
        for ep in endpoints {
            ep.pool.sweep(shared.settings.pool_idle_timeout);
        }
    }
}

/// Sets up an accepted connection and spawns its task.
fn spawn_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    port: u16,
    stop: Arc<Stop>,
    open: Arc<(AtomicUsize, Notify)>,
) {
    let _ = stream.set_nodelay(true);
    let global = &shared.global;
    global.connections_total.fetch_add(1, Ordering::Relaxed);
    global.connections_open.fetch_add(1, Ordering::Relaxed);
    let trusted = shared
        .settings
        .trusted_proxies
        .iter()
        .any(|net| net.contains(peer.ip()));
    let client = Client::new(peer, port, trusted);
    tokio::spawn(async move {
        let global = shared.global.clone();
        engine::serve(shared, stream, client, stop).await;
        global.connections_open.fetch_sub(1, Ordering::Relaxed);
        if open.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            open.1.notify_waiters();
        }
    });
}

#[async_trait]
impl Router for ProxyRouter {
    async fn set_route(&self, route: Route) -> Result<()> {
        let mut ws = lock(&self.shared.write);
        for host in &route.hosts {
            for (other, r) in &ws.routes {
                if other != &route.app && r.hosts.contains(host) {
                    return Err(Error::conflict(format!(
                        "host \"{host}\" is already routed to app \"{other}\""
                    ))
                    .with_backend(BACKEND)
                    .with_operation("set_route"));
                }
            }
        }
        let mut routes = ws.routes.clone();
        routes.insert(route.app.clone(), route);
        self.commit(&mut ws, routes);
        Ok(())
    }

    async fn remove_route(&self, app: &AppName) -> Result<()> {
        let mut ws = lock(&self.shared.write);
        if ws.routes.contains_key(app) {
            let mut routes = ws.routes.clone();
            routes.remove(app);
            self.commit(&mut ws, routes);
        }
        Ok(())
    }

    async fn drain(&self, req: DrainRequest) -> Result<DrainReport> {
        // A timeout too large to add is as good as none (capped at a year).
        let deadline =
            tokio::time::Instant::now() + req.timeout.min(Duration::from_secs(365 * 24 * 3600));
        let mut report = DrainReport::default();
        let mut seen = HashSet::new();
        for addr in req.endpoints {
            if !seen.insert(addr) {
                continue;
            }
            let ep = lock(&self.shared.registry).get(&addr).cloned();
            let Some(ep) = ep else {
                report.drained.push(addr);
                continue;
            };
            let drained = loop {
                let idle = ep.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if ep.in_flight.load(Ordering::SeqCst) == 0 {
                    break true;
                }
                if tokio::time::timeout_at(deadline, idle).await.is_err() {
                    break ep.in_flight.load(Ordering::SeqCst) == 0;
                }
            };
            if drained {
                report.drained.push(addr);
            } else {
                report.pending.push(addr);
            }
        }
        Ok(report)
    }

    async fn routes(&self) -> Result<Vec<Route>> {
        Ok(self
            .shared
            .table
            .load()
            .apps
            .values()
            .map(|e| e.route.clone())
            .collect())
    }
}
