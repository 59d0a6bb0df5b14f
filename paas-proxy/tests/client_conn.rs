//! Client connections between requests: the HTTP/1 state is dropped while a keep-alive
//! connection is idle and started again when the client sends; pipelined requests, heads split
//! over several writes and pauses between requests all work.

mod common;

use std::time::Duration;

use common::*;
use paas_core::Router;
use paas_proxy::ProxySettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until `n` complete responses (`hello from` bodies) arrived or 5 s passed.
async fn read_responses(s: &mut TcpStream, n: usize) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while String::from_utf8_lossy(&out)
        .matches("HTTP/1.1 200")
        .count()
        < n
    {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(k)) => out.extend_from_slice(&buf[..k]),
        }
    }
    // Let the rest of the last body arrive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Ok(Ok(k)) = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
        out.extend_from_slice(&buf[..k]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn keep_alive_connection_survives_pauses_pipelining_and_split_heads() {
    let p = Proxy::start(ProxySettings::default()).await;
    let up = Upstream::start("cc").await;
    p.router
        .set_route(route("cc", &[], &[up.addr]))
        .await
        .unwrap();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: cc.localhost\r\n\r\n";

    s.write_all(req).await.unwrap();
    let r = read_responses(&mut s, 1).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    // Idle for a while, then again on the same connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(req).await.unwrap();
    let r = read_responses(&mut s, 1).await;
    assert!(r.starts_with("HTTP/1.1 200"), "after a pause: {r}");

    // Two pipelined requests in one write.
    let mut two = req.to_vec();
    two.extend_from_slice(req);
    s.write_all(&two).await.unwrap();
    let r = read_responses(&mut s, 2).await;
    assert_eq!(r.matches("HTTP/1.1 200").count(), 2, "pipelined: {r}");

    // A head split over writes with pauses in between.
    for part in [&req[..10], &req[10..25], &req[25..]] {
        s.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = read_responses(&mut s, 1).await;
    assert!(r.starts_with("HTTP/1.1 200"), "split head: {r}");

    // A request with a body, then another one in the same write.
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: cc.localhost\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: cc.localhost\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_responses(&mut s, 2).await;
    assert_eq!(
        r.matches("HTTP/1.1 200").count(),
        2,
        "body then request: {r}"
    );
}
