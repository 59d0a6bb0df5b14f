//! # paas-proxy
//!
//! The reference [`paas_core::Router`]: [`ProxyRouter`], a reverse proxy on hyper 1 with a
//! hot-swappable route table, load balancing, passive and active health checks, draining,
//! WebSocket/`Upgrade` support, streaming, hardening against slow or malformed clients and
//! Prometheus metrics.
//!
//! - Routing by `Host`: exact hostnames and wildcards (`*.example.com`, most specific wins),
//!   plus the default scheme `<app>.<base domain>` ([`ProxySettings::base_domain`], any port
//!   ignored). Unknown host: 404; known app without a usable endpoint: 503.
//! - The table is an immutable snapshot in an `ArcSwap`: requests never block on updates and
//!   never see half a table; [`Router::set_route`](paas_core::Router::set_route) takes effect
//!   for the next request.
//! - [`Router::drain`](paas_core::Router::drain) waits for the requests and upgraded
//!   connections in flight to removed endpoints, so processes are stopped only once idle.
//! - Access lines go to `tracing` (target `paas_proxy::access`) and, with
//!   [`ProxyRouter::with_access_log`], into a [`paas_core::LogSink`] as the app's `router`
//!   lines.
//! - [`RoutesFile`] parses the JSON routes file of the standalone `proxy` binary.

mod access;
mod body;
mod conn;
mod health;
mod metrics;
mod proxy;
mod router;
pub mod routes_file;
pub mod settings;
mod table;
mod upstream;

pub use body::{BoxError, ProxyBody};
pub use router::ProxyRouter;
pub use routes_file::{load_routes_file, watch_routes_file, RoutesFile};
pub use settings::{ActiveHealthCheck, Balance, HealthProbe, ProxySettings};
