//! The route table (an immutable snapshot swapped whole), endpoints with their live state, and
//! load balancing.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use paas_core::{AppName, Route};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::metrics::AppMetrics;
use crate::settings::Balance;
use crate::upstream::Pool;

/// One upstream address and its live state. Shared by every table that routes to it, so
/// in-flight counts survive route swaps.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    /// Requests (until their response body ends) and upgraded connections in flight.
    pub(crate) in_flight: AtomicUsize,
    /// Set when no route lists the endpoint any more: no new request may start on it.
    pub(crate) removed: AtomicBool,
    /// Bumped at each removal, so a stale tunnel-closing timer does nothing.
    pub(crate) removal_gen: AtomicU64,
    /// Passive health: no requests until this time (`now_ms`).
    pub(crate) ejected_until: AtomicU64,
    /// Active health.
    pub(crate) healthy: AtomicBool,
    pub(crate) probe_failures: AtomicU32,
    pub(crate) probe_successes: AtomicU32,
    /// Notified when `in_flight` drops to zero.
    pub(crate) idle: Notify,
    /// Set (and `close_tunnels` notified) when upgraded connections must end.
    pub(crate) closing: AtomicBool,
    pub(crate) close_tunnels: Notify,
    /// Idle keep-alive connections to this endpoint.
    pub(crate) pool: Pool,
}

impl Endpoint {
    pub(crate) fn new(addr: SocketAddr, max_idle: usize) -> Self {
        Endpoint {
            addr,
            in_flight: AtomicUsize::new(0),
            removed: AtomicBool::new(false),
            removal_gen: AtomicU64::new(0),
            ejected_until: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            probe_failures: AtomicU32::new(0),
            probe_successes: AtomicU32::new(0),
            idle: Notify::new(),
            closing: AtomicBool::new(false),
            close_tunnels: Notify::new(),
            pool: Pool::new(max_idle),
        }
    }

    pub(crate) fn usable(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.ejected_until.load(Ordering::Relaxed) <= now
    }

    pub(crate) fn eject(&self, until: u64) {
        self.ejected_until.store(until, Ordering::Relaxed);
    }
}

/// Counts one request (or upgraded connection) in flight on an endpoint and for an app until
/// dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) metrics: Arc<AppMetrics>,
}

impl InFlight {
    /// Counts a new request on `endpoint`, unless the endpoint was removed meanwhile (then
    /// `None`: pick again from a fresh table). The SeqCst pair (increment, then read `removed`)
    /// against (store `removed`, then read `in_flight` in `drain`) guarantees that a drain
    /// which saw zero is never followed by a request on a removed endpoint.
    pub(crate) fn start(endpoint: &Arc<Endpoint>, metrics: &Arc<AppMetrics>) -> Option<Self> {
        endpoint.in_flight.fetch_add(1, Ordering::SeqCst);
        if endpoint.removed.load(Ordering::SeqCst) {
            if endpoint.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                endpoint.idle.notify_waiters();
            }
            return None;
        }
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight {
            endpoint: endpoint.clone(),
            metrics: metrics.clone(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.endpoint.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.endpoint.idle.notify_waiters();
        }
    }
}

/// An app's entry in a table snapshot.
#[derive(Debug)]
pub(crate) struct AppEntry {
    pub(crate) route: Route,
    pub(crate) endpoints: Vec<Arc<Endpoint>>,
    pub(crate) balance: Balance,
    pub(crate) rr: AtomicUsize,
    pub(crate) metrics: Arc<AppMetrics>,
}

impl AppEntry {
    /// Picks an endpoint that is healthy and not ejected, avoiding `avoid` when another one
    /// is usable. When every endpoint is ejected (passive health), one of them is tried anyway
    /// (like nginx with a single server): a process that refused one connection while
    /// restarting must not turn into seconds of 503s once it is back.
    pub(crate) fn pick(&self, avoid: Option<&Arc<Endpoint>>) -> Option<&Arc<Endpoint>> {
        self.pick_usable(avoid).or_else(|| {
            let n = self.endpoints.len();
            let start = fastrand::usize(..n.max(1));
            (0..n).map(|i| &self.endpoints[(start + i) % n]).find(|e| {
                e.healthy.load(Ordering::Relaxed) && avoid.is_none_or(|a| !Arc::ptr_eq(a, e))
            })
        })
    }

    fn pick_usable(&self, avoid: Option<&Arc<Endpoint>>) -> Option<&Arc<Endpoint>> {
        let eps = &self.endpoints;
        let n = eps.len();
        if n == 0 {
            return None;
        }
        let now = now_ms();
        let ok = |i: usize| {
            let e = &eps[i];
            e.usable(now) && avoid.is_none_or(|a| !Arc::ptr_eq(a, e))
        };
        if n == 1 {
            return ok(0).then(|| &eps[0]);
        }
        match self.balance {
            Balance::LeastInFlight => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                match (ok(a), ok(b)) {
                    (true, true) => {
                        let la = eps[a].in_flight.load(Ordering::Relaxed);
                        let lb = eps[b].in_flight.load(Ordering::Relaxed);
                        Some(if lb < la { &eps[b] } else { &eps[a] })
                    }
                    (true, false) => Some(&eps[a]),
                    (false, true) => Some(&eps[b]),
                    (false, false) => {
                        let start = fastrand::usize(..n);
                        (0..n)
                            .map(|i| (start + i) % n)
                            .find(|&i| ok(i))
                            .map(|i| &eps[i])
                    }
                }
            }
            Balance::RoundRobin => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| (start.wrapping_add(i)) % n)
                    .find(|&i| ok(i))
                    .map(|i| &eps[i])
            }
        }
    }
}

/// An immutable snapshot of the whole table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub(crate) apps: BTreeMap<AppName, Arc<AppEntry>>,
    exact: HashMap<Box<str>, Arc<AppEntry>>,
    /// Wildcard suffixes (`example.com` for `*.example.com`).
    wildcards: HashMap<Box<str>, Arc<AppEntry>>,
}

impl Table {
    /// Builds a snapshot; explicit hosts win over default `<app>.<base>` hosts.
    pub(crate) fn build(apps: BTreeMap<AppName, Arc<AppEntry>>, base: Option<&str>) -> Self {
        let mut exact: HashMap<Box<str>, Arc<AppEntry>> = HashMap::new();
        let mut wildcards = HashMap::new();
        if let Some(base) = base {
            for (name, entry) in &apps {
                exact.insert(format!("{name}.{base}").into(), entry.clone());
            }
        }
        for entry in apps.values() {
            for host in &entry.route.hosts {
                match host.as_str().strip_prefix("*.") {
                    Some(suffix) => {
                        wildcards.insert(suffix.into(), entry.clone());
                    }
                    None => {
                        exact.insert(host.as_str().into(), entry.clone());
                    }
                }
            }
        }
        Table {
            apps,
            exact,
            wildcards,
        }
    }

    /// The app serving `host` (lowercase, without port or trailing dot): an exact host first,
    /// then the most specific wildcard.
    pub(crate) fn lookup(&self, host: &str) -> Option<&Arc<AppEntry>> {
        if let Some(e) = self.exact.get(host) {
            return Some(e);
        }
        if self.wildcards.is_empty() {
            return None;
        }
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if rest.is_empty() {
                break;
            }
            if let Some(e) = self.wildcards.get(rest) {
                return Some(e);
            }
        }
        None
    }
}

/// A port number written as 1 to 5 decimal digits (no sign, no spaces), at most 65535.
pub(crate) fn parse_port(p: &[u8]) -> Option<u16> {
    if !(1..=5).contains(&p.len()) || !p.iter().all(u8::is_ascii_digit) {
        return None;
    }
    p.iter()
        .try_fold(0u32, |n, d| Some(n * 10 + u32::from(d - b'0')))
        .and_then(|n| u16::try_from(n).ok())
}

/// Normalizes a `Host` value: strips the port and a trailing dot, lowercases. `None` when the
/// value is not a host: a name of letters, digits, `-`, `_` and `.`, or an IPv6 literal in
/// brackets, then optionally `:` and a port (0-65535) (no user info, no spaces).
pub(crate) fn normalize_host(raw: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let s = std::str::from_utf8(raw).ok()?;
    let port_ok = |p: &str| parse_port(p.as_bytes()).is_some();
    let host = if let Some(rest) = s.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        let end = rest.find(']')?;
        let (inner, after) = (&rest[..end], &rest[end + 1..]);
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port_ok))
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        inner
    } else {
        let name = match s.rfind(':') {
            Some(i) if port_ok(&s[i + 1..]) => &s[..i],
            Some(_) => return None,
            None => s,
        };
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return None;
        }
        name
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_normalize() {
        assert_eq!(
            normalize_host(b"Foo.Localhost:8080").unwrap(),
            "foo.localhost"
        );
        assert_eq!(normalize_host(b"foo.localhost.").unwrap(), "foo.localhost");
        assert_eq!(normalize_host(b"[::1]:80").unwrap(), "::1");
        assert_eq!(normalize_host(b"[fe80::1]").unwrap(), "fe80::1");
        assert_eq!(
            normalize_host(b"my_host.internal").unwrap(),
            "my_host.internal"
        );
        assert!(normalize_host(b"a:b").is_none());
        assert!(normalize_host(b":80").is_none());
        assert!(normalize_host(b"a:").is_none());
        assert!(normalize_host(b"a:123456").is_none());
        assert!(normalize_host(b"u@w.test").is_none(), "user info");
        assert!(normalize_host(b"a b").is_none());
        assert!(normalize_host(b"w.test/x").is_none());
        assert!(normalize_host(b"[::1]x").is_none());
        assert!(normalize_host(b"[::1]:").is_none());
        assert!(normalize_host(b"[g::1]").is_none());
    }
}
