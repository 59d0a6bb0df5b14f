//! `paas_api::serve` on a hostile port: half-sent request heads are cut at the deadline, open
//! connections never exceed the cap (the process keeps its descriptors), and real requests are
//! answered once the flood is gone.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use paas_api::{serve, ApiServer, ServeSettings};
use paas_core::memory::*;
use paas_core::{Platform, StaticTokenAuthorizer};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_heads_are_cut_and_connections_capped() {
    let platform = Platform::composer()
        .sources(MemorySourceStore::new())
        .builder(MemoryBuilder::new())
        .store(MemoryReleaseStore::new())
        .scheduler(MemoryScheduler::new())
        .router(MemoryRouter::new())
        .log_sink(MemoryLogSink::new())
        .compose()
        .unwrap();
    let router = ApiServer::new(platform, StaticTokenAuthorizer::new("tok-serve-test")).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cap = 50;
    let settings = ServeSettings::default()
        .with_header_read_timeout(Duration::from_secs(1))
        .with_max_connections(cap);
    tokio::spawn(serve(listener, router, settings, std::future::pending()));

    let baseline = open_fds();
    // 300 clients that send half a request head and then nothing.
    let flood = tokio::task::spawn_blocking(move || {
        let mut clients = Vec::new();
        for _ in 0..300 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            clients.push(s);
        }
        clients
    })
    .await
    .unwrap();
    // The server holds at most `cap` of them (plus its listener and the runtime's own).
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        // Each client socket is one descriptor of this (test) process too.
        peak = peak.max(open_fds().saturating_sub(baseline + flood.len()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        peak <= cap + 5,
        "the server held {peak} descriptors for half-sent heads (cap {cap})"
    );
    // Every one of them is closed by the server in the end (EOF, or a 408 then EOF).
    let closed = tokio::task::spawn_blocking(move || {
        let mut closed = 0;
        for mut s in flood {
            let mut buf = Vec::new();
            if s.read_to_end(&mut buf).is_ok() {
                closed += 1;
            }
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(closed, 300, "every half-sent head was cut off");
    // And a real client is answered.
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(
            b"GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-serve-test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A kept-alive connection that goes quiet after a request is closed too.
    let idle_closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).is_ok()
    })
    .await
    .unwrap();
    assert!(idle_closed, "an idle kept-alive connection stayed open");
}
