//! Active health checks: a background task probing every routed endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::settings::ActiveHealthCheck;
use crate::shared::Shared;
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

/// One probe, as the schedulers probe ([`paas_core::probe`]).
pub(crate) async fn probe(addr: SocketAddr, hc: &ActiveHealthCheck) -> bool {
    paas_core::probe(addr, &hc.probe, hc.timeout).await
}
