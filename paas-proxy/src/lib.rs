//! # paas-proxy
//!
//! The reference [`paas_core::Router`]: [`ProxyRouter`], a reverse proxy with a hot-swappable
//! route table, load balancing, passive and active health checks, draining,
//! WebSocket/`Upgrade` support, streaming, hardening against slow or malformed clients and
//! Prometheus metrics.
//!
//! The data plane is its own HTTP/1 engine on tokio and `httparse` (the parser hyper uses):
//! a client connection is one task that parses each request head in place, writes the upstream
//! head straight from the parsed slices and relays the response the same way, on pooled
//! upstream connections driven by that task. This halves the CPU a request costs in user space
//! compared with the same proxy built on hyper's server and client (2.8 µs instead of 5.3 µs,
//! read from /proc under `bench/run.sh`'s keep-alive load); hyper serves the admin listener. Framing is checked and chunked request
//! bodies are re-encoded, so the proxy and the app always agree on where a request ends.
//!
//! - Routing by `Host`: exact hostnames and wildcards (`*.example.com`, most specific wins),
//!   plus the default scheme `<app>.<base domain>` ([`ProxySettings::base_domain`], any port
//!   ignored). Unknown host: 404; known app without a usable endpoint: 503.
//! - The table is an immutable snapshot in an `ArcSwap`: requests never block on updates and
//!   never see half a table; [`Router::set_route`](paas_core::Router::set_route) takes effect
//!   for the next request.
//! - [`Router::drain`](paas_core::Router::drain) waits for the requests and upgraded
//!   connections in flight to removed endpoints, so processes are stopped only once idle.
//! - `X-Forwarded-For`, `-Proto`, `-Host` and `-Port` are set by the proxy, replacing the
//!   client's, except from the networks in [`ProxySettings::trusted_proxies`] (a load balancer
//!   in front), whose values are passed on. Other client-address headers (`X-Real-IP`,
//!   `True-Client-IP`, `X-Client-IP`, `Client-IP`, `CF-Connecting-IP`, `Fastly-Client-IP`,
//!   `X-Cluster-Client-IP`, `X-Forwarded`) reach the app only from those networks; underscore
//!   spellings of the framing headers (`Content_Length`, `Transfer_Encoding`) never do.
//! - Request framing is checked strictly: ambiguous or invalid `Content-Length` /
//!   `Transfer-Encoding`, and chunked bodies that do not follow RFC 9112 7.1 (bare LFs, control
//!   characters or junk in chunk extensions, malformed trailers), get 400 and the connection is
//!   closed.
//! - Access lines go to `tracing` (target `paas_proxy::access`) and, with
//!   [`ProxyRouter::with_access_log`], into a [`paas_core::LogSink`] as the app's `router`
//!   lines.
//! - [`RoutesFile`] parses the JSON routes file of the standalone `proxy` binary.
//! - Memory: an idle keep-alive client connection holds its task and its socket's readiness
//!   record (no buffers). Tokio aligns both to 128 bytes, which glibc's allocator pads; the
//!   example binaries use mimalloc (`#[global_allocator]`), which brings an idle connection
//!   from 1.38 KiB to 1.06 KiB in `bench/run.sh`. A program embedding the router can do the
//!   same.

mod access;
mod clock;
mod engine;
mod health;
mod limits;
mod metrics;
mod router;
mod routes_file;
mod settings;
mod shared;
mod table;
mod upstream;

pub use limits::raise_open_files_limit;
pub use router::ProxyRouter;
pub use routes_file::{load_routes_file, watch_routes_file, RoutesFile};
pub use settings::{ActiveHealthCheck, Balance, IpNet, ProxySettings};
