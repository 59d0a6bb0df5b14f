//! Counters kept with atomics on the request path and rendered as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
pub(crate) const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Per-app counters.
#[derive(Debug, Default)]
pub(crate) struct AppMetrics {
    /// Responses by status class (index 0 = 1xx ... 4 = 5xx).
    pub(crate) responses: [AtomicU64; 5],
    /// Non-cumulative bucket counts; the last one is +Inf.
    pub(crate) latency: [AtomicU64; BUCKETS.len() + 1],
    pub(crate) latency_sum_us: AtomicU64,
    pub(crate) in_flight: AtomicI64,
    pub(crate) upstream_errors: AtomicU64,
    pub(crate) retries: AtomicU64,
}

impl AppMetrics {
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        let idx = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[idx].fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }
}

/// Counters not tied to an app.
#[derive(Debug, Default)]
pub(crate) struct GlobalMetrics {
    pub(crate) unrouted: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_open: AtomicI64,
    pub(crate) header_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) tunnel_timeouts: AtomicU64,
    pub(crate) rejected_framing: AtomicU64,
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) struct EndpointSample {
    pub(crate) addr: String,
    pub(crate) in_flight: u64,
    pub(crate) healthy: bool,
}

pub(crate) fn render(
    global: &GlobalMetrics,
    apps: &[(String, std::sync::Arc<AppMetrics>)],
    endpoints: &[EndpointSample],
) -> String {
    let mut out = String::with_capacity(4096);
    write_requests(&mut out, apps);
    write_latency(&mut out, apps);
    write_per_app(&mut out, apps);
    write_endpoints(&mut out, endpoints);
    write_globals(&mut out, global);
    out
}

/// Responses by app and status class.
fn write_requests(out: &mut String, apps: &[(String, std::sync::Arc<AppMetrics>)]) {
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    let _ = writeln!(
        *out,
        "# HELP paas_proxy_requests_total Responses sent, by app and status class.\n# TYPE paas_proxy_requests_total counter"
    );
    for (app, m) in apps {
        let app = escape_label(app);
        for (i, c) in classes.iter().enumerate() {
            let _ = writeln!(
                *out,
                "paas_proxy_requests_total{{app=\"{app}\",class=\"{c}\"}} {}",
                m.responses[i].load(Relaxed)
            );
        }
    }
}

/// The request duration histogram of each app.
fn write_latency(out: &mut String, apps: &[(String, std::sync::Arc<AppMetrics>)]) {
    let _ = writeln!(
        *out,
        "# HELP paas_proxy_request_duration_seconds Time from request head to response head.\n# TYPE paas_proxy_request_duration_seconds histogram"
    );
    for (app, m) in apps {
        let app = escape_label(app);
        let mut cumulative = 0u64;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += m.latency[i].load(Relaxed);
            let _ = writeln!(
                *out,
                "paas_proxy_request_duration_seconds_bucket{{app=\"{app}\",le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += m.latency[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            *out,
            "paas_proxy_request_duration_seconds_bucket{{app=\"{app}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            *out,
            "paas_proxy_request_duration_seconds_sum{{app=\"{app}\"}} {}",
            m.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            *out,
            "paas_proxy_request_duration_seconds_count{{app=\"{app}\"}} {cumulative}"
        );
    }
}

/// Per-app gauges and counters: in flight, upstream errors, retries.
fn write_per_app(out: &mut String, apps: &[(String, std::sync::Arc<AppMetrics>)]) {
    type PerApp = (
        &'static str,
        &'static str,
        &'static str,
        fn(&AppMetrics) -> i64,
    );
    let per_app: [PerApp; 3] = [
        (
            "paas_proxy_in_flight",
            "gauge",
            "Requests and upgraded connections in flight.",
            |m| m.in_flight.load(Relaxed),
        ),
        (
            "paas_proxy_upstream_errors_total",
            "counter",
            "Failures to connect to or talk with an endpoint.",
            |m| m.upstream_errors.load(Relaxed) as i64,
        ),
        (
            "paas_proxy_retries_total",
            "counter",
            "Idempotent requests retried on another endpoint.",
            |m| m.retries.load(Relaxed) as i64,
        ),
    ];
    for (name, kind, help, get) in per_app {
        let _ = writeln!(*out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (app, m) in apps {
            let _ = writeln!(*out, "{name}{{app=\"{}\"}} {}", escape_label(app), get(m));
        }
    }
}

/// Per-endpoint in-flight counts and health.
fn write_endpoints(out: &mut String, endpoints: &[EndpointSample]) {
    let _ = writeln!(
        *out,
        "# HELP paas_proxy_endpoint_in_flight Requests and upgraded connections in flight per endpoint.\n# TYPE paas_proxy_endpoint_in_flight gauge"
    );
    for e in endpoints {
        let _ = writeln!(
            *out,
            "paas_proxy_endpoint_in_flight{{endpoint=\"{}\"}} {}",
            e.addr, e.in_flight
        );
    }
    let _ = writeln!(
        *out,
        "# HELP paas_proxy_endpoint_healthy Whether the endpoint gets requests (1) or is ejected (0).\n# TYPE paas_proxy_endpoint_healthy gauge"
    );
    for e in endpoints {
        let _ = writeln!(
            *out,
            "paas_proxy_endpoint_healthy{{endpoint=\"{}\"}} {}",
            e.addr, e.healthy as u8
        );
    }
}

/// Router-wide counters and gauges.
fn write_globals(out: &mut String, global: &GlobalMetrics) {
    let globals: [(&str, &str, &str, i64); 7] = [
        (
            "paas_proxy_unrouted_requests_total",
            "counter",
            "Requests for a host no app is routed at (404).",
            global.unrouted.load(Relaxed) as i64,
        ),
        (
            "paas_proxy_connections_total",
            "counter",
            "Client connections accepted.",
            global.connections_total.load(Relaxed) as i64,
        ),
        (
            "paas_proxy_connections_open",
            "gauge",
            "Client connections open.",
            global.connections_open.load(Relaxed),
        ),
        (
            "paas_proxy_header_timeouts_total",
            "counter",
            "Connections cut because a request head was too slow.",
            global.header_timeouts.load(Relaxed) as i64,
        ),
        (
            "paas_proxy_idle_timeouts_total",
            "counter",
            "Connections closed after the idle timeout.",
            global.idle_timeouts.load(Relaxed) as i64,
        ),
        (
            "paas_proxy_tunnel_timeouts_total",
            "counter",
            "Upgraded connections (WebSocket) closed after being silent both ways for the tunnel idle timeout.",
            global.tunnel_timeouts.load(Relaxed) as i64,
        ),
        (
            "paas_proxy_rejected_framing_total",
            "counter",
            "Requests rejected for ambiguous framing (Content-Length with Transfer-Encoding).",
            global.rejected_framing.load(Relaxed) as i64,
        ),
    ];
    for (name, kind, help, v) in globals {
        let _ = writeln!(
            *out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}
