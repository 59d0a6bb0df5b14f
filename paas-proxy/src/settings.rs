//! [`ProxySettings`]: everything a [`ProxyRouter`](crate::ProxyRouter) can be tuned with.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use paas_core::{AppName, Domain, Error, HealthCheck, Result};
use serde::{Deserialize, Serialize};

/// How requests are spread over an app's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Pick two endpoints at random and send to the one with fewer requests in flight
    /// ("power of two choices"): adapts to slow endpoints without global coordination.
    #[default]
    LeastInFlight,
    /// Take the endpoints in turn.
    RoundRobin,
}

impl std::str::FromStr for Balance {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "least_in_flight" => Ok(Balance::LeastInFlight),
            "round_robin" => Ok(Balance::RoundRobin),
            other => Err(Error::invalid(format!(
                "invalid balance \"{}\": must be \"least_in_flight\" or \"round_robin\"",
                other.escape_debug()
            ))),
        }
    }
}

/// Active health checks: every `interval`, each routed endpoint is probed; after
/// `unhealthy_threshold` failures in a row it gets no requests, after `healthy_threshold`
/// successes in a row it gets them again.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ActiveHealthCheck {
    /// The probe: paas-core's [`HealthCheck`] (`Tcp`, or `Http` with a path; `Running` probes
    /// like `Tcp`), run by [`paas_core::probe`], as the schedulers run it.
    pub probe: HealthCheck,
    /// Time between probes of one endpoint.
    pub interval: Duration,
    /// A probe slower than this fails.
    pub timeout: Duration,
    /// Failures in a row that take an endpoint out.
    pub unhealthy_threshold: u32,
    /// Successes in a row that bring it back.
    pub healthy_threshold: u32,
}

impl ActiveHealthCheck {
    /// TCP connect checks every 2 s (1 s timeout, out after 2 failures, back after 1 success).
    pub fn tcp() -> Self {
        ActiveHealthCheck {
            probe: HealthCheck::Tcp,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }

    /// HTTP `GET path` checks, with the same timings as [`ActiveHealthCheck::tcp`].
    ///
    /// Errors: `InvalidInput` when `path` is not a valid health check path.
    pub fn http(path: impl Into<String>) -> Result<Self> {
        Ok(ActiveHealthCheck {
            probe: HealthCheck::http(path)?,
            ..Self::tcp()
        })
    }

    /// Sets the interval.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the probe timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the thresholds (failures to go out, successes to come back).
    pub fn with_thresholds(mut self, unhealthy: u32, healthy: u32) -> Self {
        self.unhealthy_threshold = unhealthy;
        self.healthy_threshold = healthy;
        self
    }
}

/// An IP network in CIDR notation: `10.0.0.0/8`, `fd00::/8`; a bare address is one host
/// (`/32` or `/128`). IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`) match IPv4 networks.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    /// The network `addr/prefix`. The prefix is at most 32 (IPv4) or 128 (IPv6), and `addr`
    /// has no bits set past it (`10.0.0.0/8`, not `10.1.2.3/8`).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self> {
        let addr = addr.to_canonical();
        let net = ipnet::IpNet::new(addr, prefix).map_err(|_| {
            let (family, max) = if addr.is_ipv4() { ("IPv4", 32) } else { ("IPv6", 128) };
            Error::invalid(format!(
                "invalid network \"{addr}/{prefix}\": the prefix length of an {family} network is at most {max}"
            ))
        })?;
        if net.trunc() != net {
            return Err(Error::invalid(format!(
                "invalid network \"{addr}/{prefix}\": the address has bits set past the /{prefix} prefix"
            )));
        }
        Ok(IpNet(net))
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix())
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for IpNet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "invalid network \"{}\": {why}",
                s.chars().take(64).collect::<String>().escape_debug()
            ))
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad("expected an IP address or a network like 10.0.0.0/8"))?;
        let prefix = match prefix {
            None => {
                if addr.to_canonical().is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("the prefix length after '/' must be a number"));
                }
                p.parse::<u8>()
                    .map_err(|_| bad("the prefix length after '/' must be a number"))?
            }
        };
        IpNet::new(addr, prefix)
    }
}

/// Settings of a [`ProxyRouter`](crate::ProxyRouter). Start from [`ProxySettings::default`] and
/// change fields; [`ProxySettings::validate`] (called by `ProxyRouter::new`) names any field
/// that breaks a rule.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProxySettings {
    /// Base domain of the default host scheme: app `foo` answers at `foo.<base_domain>` (any port
    /// in `Host` is ignored) besides its route's own hosts. `None` turns the scheme off.
    /// Default `localhost`.
    pub base_domain: Option<String>,
    /// Balancing mode of apps without their own. Default [`Balance::LeastInFlight`].
    pub balance: Balance,
    /// Balancing mode per app.
    pub app_balance: BTreeMap<AppName, Balance>,
    /// Timeout of a TCP connect to an endpoint. Default 3 s.
    pub connect_timeout: Duration,
    /// A request head must arrive within this time from its first byte (and a new connection
    /// must send one within this time): slow clients are cut off. Default 10 s.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with nothing in flight is closed after this long. Also the
    /// longest wait for progress once a request is under way: a request or response body that
    /// stalls, a client or app that stops reading, and the open side of an upgraded connection
    /// whose other side closed are cut after this long. Default 60 s.
    pub idle_timeout: Duration,
    /// An upgraded connection (WebSocket) silent in both directions for this long is closed,
    /// as Heroku's router does after 55 s and nginx after its 60 s `proxy_read_timeout`;
    /// WebSocket apps keep theirs open with pings. Default 60 s.
    pub tunnel_idle_timeout: Duration,
    /// An app must start its response (send the status line and headers) within this time after
    /// the request was sent, or the client gets 504 (like Heroku's 30 s router timeout). Once
    /// the response has started, each read may wait up to `idle_timeout`. Default 30 s.
    pub response_timeout: Duration,
    /// Largest request head (request line and headers) accepted; larger gets 431. Default
    /// 16 KiB.
    pub max_header_bytes: usize,
    /// Largest request body accepted; larger gets 413. Default `None` (no limit).
    pub max_body_bytes: Option<u64>,
    /// Upgraded connections (WebSocket) to a removed endpoint are closed this long after the
    /// removal. Also the time `serve` gives open connections at shutdown. Default 30 s.
    pub drain_timeout: Duration,
    /// An endpoint that refused a connection gets no requests for this long (passive health).
    /// Default 5 s.
    pub ejection_time: Duration,
    /// Retries: a request whose endpoint refused the connection goes once to another endpoint
    /// (nothing reached the app: any method), and an idempotent request without a body whose
    /// pooled connection the app had closed is sent again on a new one (a request the app
    /// answered, even with an invalid response, is never sent again). Default true.
    pub retry_idempotent: bool,
    /// Idle upstream connections are not reused, and are closed, after this long. Default 4 s:
    /// below the keep-alive timeout of common app servers (Node and uvicorn 5 s), so the proxy
    /// does not send a request on a connection the app is closing at that moment (which would be
    /// a 502 that cannot be retried safely).
    pub pool_idle_timeout: Duration,
    /// Idle upstream connections kept per endpoint. Default no limit (`usize::MAX`), as in
    /// HAProxy and hyper: the pool only ever holds connections that concurrent requests needed
    /// within `pool_idle_timeout`, and a lower cap makes a proxy under more concurrent requests
    /// than the cap close and reopen connections to the app for every request above it.
    pub pool_max_idle_per_endpoint: usize,
    /// Active health checks; `None` (default) relies on passive health only (the scheduler
    /// already checks processes before they are routed).
    pub health_check: Option<ActiveHealthCheck>,
    /// Networks of the proxies in front of this one (a TLS-terminating load balancer). A client
    /// connecting from one of them is trusted with the forwarded headers: its
    /// `X-Forwarded-For` is kept and the peer's address appended, and its `X-Forwarded-Proto`
    /// (`http` or `https`), `-Host` and `-Port` are passed on when valid. From any other client
    /// these headers are replaced, as are invalid values from a trusted one. `Forwarded` is
    /// always dropped. The other client-address headers (`X-Real-IP`, `True-Client-IP`,
    /// `X-Client-IP`, `Client-IP`, `CF-Connecting-IP`, `Fastly-Client-IP`,
    /// `X-Cluster-Client-IP`, `X-Forwarded`, also spelled with underscores) are passed on from
    /// trusted clients only. Default empty: no client is trusted.
    pub trusted_proxies: Vec<IpNet>,
}

impl ProxySettings {
    /// The defaults, with the values the router shares with the platform (base domain, drain
    /// timeout) taken from its settings, so they are set in one place.
    pub fn for_platform(platform: &paas_core::PlatformSettings) -> Self {
        ProxySettings {
            base_domain: Some(platform.base_domain.clone()),
            drain_timeout: platform.drain_timeout,
            ..ProxySettings::default()
        }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            base_domain: Some("localhost".to_string()),
            balance: Balance::LeastInFlight,
            app_balance: BTreeMap::new(),
            connect_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            response_timeout: Duration::from_secs(30),
            tunnel_idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_body_bytes: None,
            drain_timeout: Duration::from_secs(30),
            ejection_time: Duration::from_secs(5),
            retry_idempotent: true,
            pool_idle_timeout: Duration::from_secs(4),
            pool_max_idle_per_endpoint: usize::MAX,
            health_check: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ProxySettings {
    /// Checks every field; the error names the field and the rule.
    pub fn validate(&self) -> Result<()> {
        fn positive(name: &str, d: Duration) -> Result<()> {
            if d.is_zero() {
                Err(Error::invalid(format!("{name} must be greater than zero")))
            } else if d > Duration::from_secs(30 * 24 * 3600) {
                Err(Error::invalid(format!("{name} must be at most 30 days")))
            } else {
                Ok(())
            }
        }
        if let Some(base) = &self.base_domain {
            let d = Domain::new(base.clone())
                .map_err(|e| Error::invalid(format!("base_domain: {}", e.message())))?;
            if d.as_str().starts_with("*.") {
                return Err(Error::invalid("base_domain must not be a wildcard"));
            }
        }
        positive("connect_timeout", self.connect_timeout)?;
        positive("header_read_timeout", self.header_read_timeout)?;
        positive("idle_timeout", self.idle_timeout)?;
        positive("response_timeout", self.response_timeout)?;
        positive("tunnel_idle_timeout", self.tunnel_idle_timeout)?;
        positive("drain_timeout", self.drain_timeout)?;
        positive("pool_idle_timeout", self.pool_idle_timeout)?;
        if self.ejection_time > Duration::from_secs(30 * 24 * 3600) {
            return Err(Error::invalid("ejection_time must be at most 30 days"));
        }
        if !(1024..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err(Error::invalid(
                "max_header_bytes must be between 1024 and 1048576",
            ));
        }
        if let Some(hc) = &self.health_check {
            positive("health_check.interval", hc.interval)?;
            positive("health_check.timeout", hc.timeout)?;
            if hc.unhealthy_threshold == 0 || hc.healthy_threshold == 0 {
                return Err(Error::invalid("health_check thresholds must be at least 1"));
            }
            // The path was checked when the HealthCheck was made (HealthPath).
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_match() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.200.3.4".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.2.3".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let host: IpNet = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert!(!host.contains("192.0.2.8".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let all6: IpNet = "::/0".parse().unwrap();
        assert!(all6.contains("2001:db8::1".parse().unwrap()));
        assert_eq!("::1".parse::<IpNet>().unwrap().prefix(), 128);
    }

    #[test]
    fn bad_networks_name_the_rule() {
        for (input, rule) in [
            ("10.0.0.0/33", "at most 32"),
            ("fd00::/129", "at most 128"),
            ("10.1.2.3/8", "bits set past the /8 prefix"),
            ("10.0.0.0/", "must be a number"),
            ("10.0.0.0/+8", "must be a number"),
            ("example.com", "expected an IP address"),
            ("", "expected an IP address"),
        ] {
            let e = input.parse::<IpNet>().unwrap_err().to_string();
            assert!(e.contains(rule), "{input}: {e}");
        }
    }
}
