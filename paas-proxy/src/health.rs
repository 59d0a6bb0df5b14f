//! Active health checks: a background task probing every routed endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::router::Shared;
use crate::settings::{ActiveHealthCheck, HealthProbe};
use crate::table::Endpoint;

/// Probes until the router is dropped.
pub(crate) async fn run(shared: Weak<Shared>, hc: ActiveHealthCheck) {
    let mut tick = tokio::time::interval(hc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let endpoints: Vec<Arc<Endpoint>> = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let table = shared.table.load();
            let mut unique: HashMap<SocketAddr, Arc<Endpoint>> = HashMap::new();
            for entry in table.apps.values() {
                for ep in &entry.endpoints {
                    unique.entry(ep.addr).or_insert_with(|| ep.clone());
                }
            }
            unique.into_values().collect()
        };
        let results =
            futures::future::join_all(endpoints.iter().map(|ep| probe(ep.addr, &hc))).await;
        for (ep, ok) in endpoints.iter().zip(results) {
            record(ep, ok, &hc);
        }
    }
}

fn record(ep: &Endpoint, ok: bool, hc: &ActiveHealthCheck) {
    if ok {
        ep.probe_failures.store(0, Ordering::Relaxed);
        let n = ep.probe_successes.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= hc.healthy_threshold && !ep.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(endpoint = %ep.addr, "endpoint passes health checks again");
        }
    } else {
        ep.probe_successes.store(0, Ordering::Relaxed);
        let n = ep.probe_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= hc.unhealthy_threshold && ep.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(endpoint = %ep.addr, failures = n, "endpoint fails health checks; taken out");
        }
    }
}

/// One probe: a TCP connect, or `GET path` answered with a status below 400.
pub(crate) async fn probe(addr: SocketAddr, hc: &ActiveHealthCheck) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let HealthProbe::Http { path } = &hc.probe else {
            return Some(true);
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: paas-proxy-health\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buf = Vec::with_capacity(128);
        let mut chunk = [0u8; 128];
        while !buf.contains(&b'\n') && buf.len() < 1024 {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = std::str::from_utf8(&buf).ok()?.lines().next()?;
        let mut parts = line.split_ascii_whitespace();
        let version = parts.next()?;
        let status: u16 = parts.next()?.parse().ok()?;
        Some(version.starts_with("HTTP/1.") && (200..400).contains(&status))
    };
    matches!(
        tokio::time::timeout(hc.timeout, attempt).await,
        Ok(Some(true))
    )
}
