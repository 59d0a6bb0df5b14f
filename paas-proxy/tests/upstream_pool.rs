//! The upstream connection pool: keep-alive connections are reused, connections the endpoint
//! closed while idle are skipped (no failed request), idle ones are closed after the pool idle
//! timeout, and `pool_max_idle_per_endpoint` bounds what is kept.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use paas_core::Router;
use paas_proxy::ProxySettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A bare HTTP/1.1 endpoint answering `GET`s with keep-alive; with `close_idle`, it closes each
/// connection 20 ms after answering on it.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Connections on which the proxy sent EOF.
    closed_by_proxy: Arc<AtomicUsize>,
}

/// Reads from `s` into `buf` until a request head is there and takes it out of `buf`; false
/// at EOF or on an error.
async fn next_head(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    buf.drain(..end);
    true
}

async fn raw_upstream(close_idle: bool) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed_by_proxy = Arc::new(AtomicUsize::new(0));
    let (acc, closed) = (accepted.clone(), closed_by_proxy.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            acc.fetch_add(1, Ordering::SeqCst);
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    if !next_head(&mut s, &mut buf).await {
                        closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if close_idle {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        return;
                    }
                }
            });
        }
    });
    RawUpstream {
        addr,
        accepted,
        closed_by_proxy,
    }
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let p = Proxy::start(ProxySettings::default()).await;
    let up = raw_upstream(false).await;
    p.router
        .set_route(route("pool", &[], &[up.addr]))
        .await
        .unwrap();
    let cl = client();
    for _ in 0..10 {
        let r = get(&cl, p.addr, "pool.localhost", "/").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "one pooled connection"
    );
}

#[tokio::test]
async fn connections_closed_by_the_endpoint_while_idle_are_not_used() {
    let p = Proxy::start(ProxySettings::default()).await;
    let up = raw_upstream(true).await;
    p.router
        .set_route(route("pool", &[], &[up.addr]))
        .await
        .unwrap();
    let cl = client();
    for i in 0..5 {
        let r = get(&cl, p.addr, "pool.localhost", "/").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "request {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_pool_idle_timeout() {
    let mut settings = ProxySettings::default();
    settings.pool_idle_timeout = Duration::from_millis(200);
    let p = Proxy::start(settings).await;
    let up = raw_upstream(false).await;
    p.router
        .set_route(route("pool", &[], &[up.addr]))
        .await
        .unwrap();
    let r = get(&client(), p.addr, "pool.localhost", "/").await;
    assert_eq!(r.status, 200);
    let closed = up.closed_by_proxy.clone();
    assert!(
        eventually(5, || closed.load(Ordering::SeqCst) == 1).await,
        "the idle connection is closed"
    );
}

#[tokio::test]
async fn pool_keeps_at_most_max_idle_connections() {
    let mut settings = ProxySettings::default();
    settings.pool_max_idle_per_endpoint = 2;
    let p = Proxy::start(settings).await;
    let up = raw_upstream(false).await;
    p.router
        .set_route(route("pool", &[], &[up.addr]))
        .await
        .unwrap();
    // Eight concurrent requests need eight connections; six are closed once they end.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            get(&client(), addr, "pool.localhost", "/").await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (accepted, closed) = (up.accepted.clone(), up.closed_by_proxy.clone());
    assert!(
        eventually(5, || closed.load(Ordering::SeqCst)
            >= accepted.load(Ordering::SeqCst).saturating_sub(2))
        .await,
        "at most two idle connections kept ({} accepted, {} closed)",
        accepted.load(Ordering::SeqCst),
        closed.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn many_concurrent_requests_reuse_their_connections_by_default() {
    // 300 requests at a time: each wave needs 300 connections to the app, and the next wave
    // finds them all in the pool (a pool capped below the concurrency would close and reopen
    // connections for every request above the cap).
    const AT_ONCE: usize = 300;
    paas_proxy::raise_open_files_limit(); // 4 descriptors per request in this one process
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acc = accepted.clone();
    // Answers once a whole wave is in flight, so a wave's requests need a connection each.
    let wave = Arc::new(tokio::sync::Barrier::new(AT_ONCE));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let wave = wave.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    if !next_head(&mut s, &mut buf).await {
                        return;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(20), wave.wait()).await;
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("many", &[], &[addr]))
        .await
        .unwrap();
    for wave in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..AT_ONCE {
            let addr = p.addr;
            tasks.push(tokio::spawn(async move {
                get(&client(), addr, "many.localhost", "/").await.status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200, "wave {wave}");
        }
    }
    let opened = accepted.load(Ordering::SeqCst);
    assert!(
        opened <= AT_ONCE + AT_ONCE / 10,
        "3 waves of {AT_ONCE} concurrent requests opened {opened} connections to the app"
    );
}
