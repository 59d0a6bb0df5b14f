//! Zero loss: the endpoints of an app are replaced 20 times under load from keep-alive and
//! `Connection: close` clients (each replacement: route the new endpoints, drain the old ones,
//! shut them down); every request gets a 2xx.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use paas_core::{DrainRequest, Router};
use paas_proxy::ProxySettings;

const REPLACEMENTS: usize = 20;
const MAX_REQUESTS_PER_CLIENT: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_is_lost_while_endpoints_are_replaced() {
    let p = Proxy::start(ProxySettings::default()).await;
    let mut current = vec![Upstream::start("g0a").await, Upstream::start("g0b").await];
    p.router
        .set_route(route(
            "zl",
            &[],
            &current.iter().map(|u| u.addr).collect::<Vec<_>>(),
        ))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for i in 0..6 {
        let close = i >= 4;
        let (stop, ok, failures, addr) = (stop.clone(), ok.clone(), failures.clone(), p.addr);
        clients.push(tokio::spawn(async move {
            let cl = client();
            let extra: &[(&str, &str)] = if close {
                &[("connection", "close")]
            } else {
                &[]
            };
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < MAX_REQUESTS_PER_CLIENT {
                n += 1;
                let req = send(&cl, addr, "GET", "zl.localhost", "/", extra, Bytes::new());
                match tokio::time::timeout(Duration::from_secs(10), req).await {
                    Ok(r) if (200..300).contains(&r.status) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}: {}", r.status, r.body)),
                    Err(_) => failures.lock().unwrap().push("timed out".into()),
                }
            }
        }));
    }

    for generation in 1..=REPLACEMENTS {
        let next = vec![
            Upstream::start(&format!("g{generation}a")).await,
            Upstream::start(&format!("g{generation}b")).await,
        ];
        // Let the current generation take some traffic first.
        assert!(
            eventually(20, || current.iter().all(|u| u.hits() >= 20)).await,
            "no traffic reached generation {}",
            generation - 1
        );
        p.router
            .set_route(route(
                "zl",
                &[],
                &next.iter().map(|u| u.addr).collect::<Vec<_>>(),
            ))
            .await
            .unwrap();
        let old: Vec<_> = current.iter().map(|u| u.addr).collect();
        let report = p
            .router
            .drain(DrainRequest::new(old.clone(), Duration::from_secs(20)))
            .await
            .unwrap();
        assert!(
            report.pending.is_empty(),
            "generation {} did not drain: {report:?}",
            generation - 1
        );
        for u in std::mem::replace(&mut current, next) {
            u.shutdown().await;
        }
    }
    assert!(eventually(20, || current.iter().all(|u| u.hits() >= 20)).await);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    let ok = ok.load(Ordering::SeqCst);
    println!(
        "{ok} requests, {} failures over {REPLACEMENTS} replacements",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(ok > REPLACEMENTS * 2);
}
