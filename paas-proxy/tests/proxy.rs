//! The data plane against real loopback upstreams.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use paas_core::{DrainRequest, LogSink, LogSource, Router};
use paas_proxy::{ActiveHealthCheck, Balance, ProxyRouter, ProxySettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn routes_by_exact_wildcard_and_default_host() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let c = Upstream::start("c").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("a", &["www.example.com"], &[a.addr]))
        .await
        .unwrap();
    p.router
        .set_route(route("b", &["*.example.com"], &[b.addr]))
        .await
        .unwrap();
    p.router
        .set_route(route("c", &[], &[c.addr]))
        .await
        .unwrap();
    p.router
        .set_route(route("empty", &["empty.test"], &[]))
        .await
        .unwrap();
    let cl = client();

    assert_eq!(get(&cl, p.addr, "www.example.com", "/").await.body, "a");
    assert_eq!(
        get(&cl, p.addr, "WWW.Example.com:8080", "/").await.body,
        "a"
    );
    assert_eq!(get(&cl, p.addr, "api.example.com", "/").await.body, "b");
    assert_eq!(get(&cl, p.addr, "x.y.example.com", "/").await.body, "b");
    assert_eq!(get(&cl, p.addr, "c.localhost", "/").await.body, "c");
    assert_eq!(get(&cl, p.addr, "c.localhost:1234", "/").await.body, "c");
    assert_eq!(get(&cl, p.addr, "a.localhost", "/").await.body, "a");

    let r = get(&cl, p.addr, "example.com", "/").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("No such app"));
    assert_eq!(get(&cl, p.addr, "nope.localhost", "/").await.status, 404);
    assert_eq!(get(&cl, p.addr, "empty.test", "/").await.status, 503);

    // Updates take effect for the next request; removal gives 404.
    p.router
        .set_route(route("a", &["www.example.com"], &[c.addr]))
        .await
        .unwrap();
    assert_eq!(get(&cl, p.addr, "www.example.com", "/").await.body, "c");
    p.router.remove_route(&app("a")).await.unwrap();
    assert_eq!(
        get(&cl, p.addr, "www.example.com", "/").await.body,
        "b",
        "wildcard catches it now"
    );
}

#[tokio::test]
async fn both_balancing_modes_spread_load() {
    for mode in [Balance::RoundRobin, Balance::LeastInFlight] {
        let ups = [
            Upstream::start("u0").await,
            Upstream::start("u1").await,
            Upstream::start("u2").await,
        ];
        let mut settings = ProxySettings::default();
        settings.balance = mode;
        let p = Proxy::start(settings).await;
        let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
        p.router.set_route(route("lb", &[], &addrs)).await.unwrap();
        let cl = client();
        for _ in 0..60 {
            assert_eq!(get(&cl, p.addr, "lb.localhost", "/").await.status, 200);
        }
        let hits: Vec<usize> = ups.iter().map(|u| u.hits()).collect();
        assert_eq!(hits.iter().sum::<usize>(), 60);
        match mode {
            Balance::RoundRobin => assert_eq!(hits, vec![20, 20, 20], "round robin takes turns"),
            Balance::LeastInFlight => assert!(hits.iter().all(|h| *h > 0), "all used: {hits:?}"),
        }
    }
}

#[tokio::test]
async fn least_in_flight_avoids_a_busy_endpoint() {
    let busy = Upstream::start("busy").await;
    let free = Upstream::start("free").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("lif", &[], &[busy.addr]))
        .await
        .unwrap();
    // Three slow requests pin the busy endpoint.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let addr = p.addr;
        slow.push(tokio::spawn(async move {
            get(&client(), addr, "lif.localhost", "/slow/1500")
                .await
                .status
        }));
    }
    assert!(eventually(10, || p.router.in_flight(busy.addr) == 3).await);
    p.router
        .set_route(route("lif", &[], &[busy.addr, free.addr]))
        .await
        .unwrap();
    let cl = client();
    for _ in 0..10 {
        assert_eq!(get(&cl, p.addr, "lif.localhost", "/").await.body, "free");
    }
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn dead_endpoint_is_ejected_and_requests_are_retried() {
    let live = Upstream::start("live").await;
    let dead = Upstream::start("dead").await;
    let dead_addr = dead.addr;
    dead.shutdown().await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("ej", &[], &[live.addr, dead_addr]))
        .await
        .unwrap();
    let cl = client();
    for _ in 0..20 {
        let r = get(&cl, p.addr, "ej.localhost", "/").await;
        assert_eq!(
            r.status, 200,
            "idempotent request retried on the live endpoint"
        );
        assert_eq!(r.body, "live");
    }
    assert_eq!(p.router.endpoint_healthy(dead_addr), Some(false), "ejected");
    assert_eq!(p.router.endpoint_healthy(live.addr), Some(true));
    let m = p.router.metrics_text();
    assert!(
        m.contains("paas_proxy_upstream_errors_total{app=\"ej\"} 1"),
        "{m}"
    );
    assert!(m.contains("paas_proxy_retries_total{app=\"ej\"} 1"), "{m}");
}

#[tokio::test]
async fn active_health_checks_take_dead_endpoints_out() {
    let live = Upstream::start("live").await;
    let dead = Upstream::start("dead").await;
    let dead_addr = dead.addr;
    let mut settings = ProxySettings::default();
    settings.health_check = Some(
        ActiveHealthCheck::http("/")
            .unwrap()
            .with_interval(Duration::from_millis(50))
            .with_timeout(Duration::from_millis(500))
            .with_thresholds(2, 1),
    );
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("hc", &[], &[live.addr, dead_addr]))
        .await
        .unwrap();
    dead.shutdown().await;
    assert!(eventually(10, || p.router.endpoint_healthy(dead_addr) == Some(false)).await);
    assert_eq!(p.router.endpoint_healthy(live.addr), Some(true));
    let cl = client();
    for _ in 0..10 {
        assert_eq!(get(&cl, p.addr, "hc.localhost", "/").await.body, "live");
    }
    assert_eq!(
        p.router
            .metrics_text()
            .matches("paas_proxy_upstream_errors_total{app=\"hc\"} 0")
            .count(),
        1,
        "no request was sent to the dead endpoint"
    );
}

type WebSocket = tokio_tungstenite::WebSocketStream<TcpStream>;
use tokio_tungstenite::tungstenite::Message;

/// Opens a WebSocket to the upstream's `/ws` echo through the proxy at `proxy`.
async fn websocket(proxy: std::net::SocketAddr, host: &str) -> WebSocket {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let request = http::Request::builder()
        .uri(format!("ws://{host}/ws"))
        .header("host", host)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (socket, resp) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    socket
}

#[tokio::test]
async fn websocket_echo_through_the_proxy_counts_as_in_flight() {
    let up = Upstream::start("ws").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("ws", &[], &[up.addr]))
        .await
        .unwrap();
    let mut socket = websocket(p.addr, "ws.localhost").await;
    for i in 0..5 {
        socket
            .send(Message::Text(format!("hello {i}").into()))
            .await
            .unwrap();
        let back = socket.next().await.unwrap().unwrap();
        assert_eq!(back, Message::Text(format!("hello {i}").into()));
    }
    assert_eq!(
        p.router.in_flight(up.addr),
        1,
        "the open upgraded connection is in flight"
    );
    // A drain while the socket is open reports it pending.
    let report = p
        .router
        .drain(DrainRequest::new(vec![up.addr], Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(report.pending, vec![up.addr]);
    socket.close(None).await.unwrap();
    drop(socket);
    let report = p
        .router
        .drain(DrainRequest::new(vec![up.addr], Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(
        report.drained,
        vec![up.addr],
        "drained once the socket closed"
    );
}

#[tokio::test]
async fn a_websocket_silent_both_ways_is_closed_after_the_tunnel_idle_timeout() {
    let up = Upstream::start("ws").await;
    let mut settings = ProxySettings::default();
    settings.tunnel_idle_timeout = Duration::from_millis(500);
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("ws", &[], &[up.addr]))
        .await
        .unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(p.router.clone().serve_admin(admin, std::future::pending()));

    // Traffic keeps it open well past the timeout: a message every 150 ms for 1.5 s.
    let mut socket = websocket(p.addr, "ws.localhost").await;
    for i in 0..10 {
        socket
            .send(Message::Text(format!("ping {i}").into()))
            .await
            .unwrap();
        let back = socket.next().await.unwrap().unwrap();
        assert_eq!(back, Message::Text(format!("ping {i}").into()));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(p.router.in_flight(up.addr), 1);

    // Silence both ways: the proxy closes it, and the endpoint has nothing in flight.
    let end = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("the silent tunnel is closed by the proxy");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_)))),
        "no message came, the connection ended: {end:?}"
    );
    assert!(eventually(5, || p.router.in_flight(up.addr) == 0).await);
    let text = get(&client(), admin_addr, "admin", "/metrics").await.body;
    assert!(
        text.contains("paas_proxy_tunnel_timeouts_total 1"),
        "{text}"
    );

    // The rule is checked: zero is refused, naming the field.
    let mut bad = ProxySettings::default();
    bad.tunnel_idle_timeout = Duration::ZERO;
    let err = ProxyRouter::new(bad).unwrap_err();
    assert!(err.to_string().contains("tunnel_idle_timeout"), "{err}");
}

#[tokio::test]
async fn server_sent_events_arrive_incrementally() {
    let up = Upstream::start("sse").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("sse", &[], &[up.addr]))
        .await
        .unwrap();
    let req = http::Request::builder()
        .uri(format!("http://{}/sse", p.addr))
        .header("host", "sse.localhost")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // The first event arrives while the upstream is still holding the second one back.
    let mut seen = String::new();
    while !seen.contains("data: one") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("first event not held back")
            .unwrap()
            .unwrap();
        if let Ok(d) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&d));
        }
    }
    assert!(!seen.contains("two"));
    up.gate.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("data: two"));
}

#[tokio::test]
async fn forwarded_headers_are_set_by_the_proxy_and_request_ids_added() {
    let up = Upstream::start("h").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("h", &[], &[up.addr]))
        .await
        .unwrap();
    let cl = client();
    let r = send(
        &cl,
        p.addr,
        "GET",
        "h.localhost:8443",
        "/headers",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "1"),
            ("forwarded", "for=6.6.6.6"),
        ],
        Bytes::new(),
    )
    .await;
    let h: HashMap<String, String> = serde_json::from_str(&r.body).unwrap();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "h.localhost:8443");
    assert_eq!(h["x-forwarded-port"], p.addr.port().to_string());
    assert_eq!(h["host"], "h.localhost:8443", "Host passed through");
    assert!(!h.contains_key("forwarded"));
    let id = &h["x-request-id"];
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));

    let r = send(
        &cl,
        p.addr,
        "GET",
        "h.localhost",
        "/headers",
        &[("x-request-id", "abc-123")],
        Bytes::new(),
    )
    .await;
    let h: HashMap<String, String> = serde_json::from_str(&r.body).unwrap();
    assert_eq!(h["x-request-id"], "abc-123", "a valid client id is kept");
}

#[tokio::test]
async fn a_trusted_proxy_in_front_passes_its_forwarded_headers_on() {
    let up = Upstream::start("t").await;
    let mut settings = ProxySettings::default();
    settings.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("t", &[], &[up.addr]))
        .await
        .unwrap();
    let cl = client();
    let headers_for = |extra: &'static [(&'static str, &'static str)]| {
        let cl = cl.clone();
        let addr = p.addr;
        async move {
            let r = send(
                &cl,
                addr,
                "GET",
                "t.localhost",
                "/headers",
                extra,
                Bytes::new(),
            )
            .await;
            serde_json::from_str::<HashMap<String, String>>(&r.body).unwrap()
        }
    };

    // A TLS load balancer in front: the client chain is kept and this hop appended; the
    // scheme, host and port the client used reach the app.
    let h = headers_for(&[
        ("x-forwarded-for", "203.0.113.7, 198.51.100.2"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "shop.example.com"),
        ("x-forwarded-port", "443"),
        ("forwarded", "for=203.0.113.7"),
        ("x-real-ip", "203.0.113.7"),
    ])
    .await;
    assert_eq!(h["x-real-ip"], "203.0.113.7", "kept from a trusted proxy");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 198.51.100.2, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "shop.example.com");
    assert_eq!(h["x-forwarded-port"], "443");
    assert!(!h.contains_key("forwarded"), "{h:?}");

    // Invalid values, even from a trusted proxy, are replaced by the proxy's own.
    let h = headers_for(&[
        ("x-forwarded-proto", "javascript"),
        ("x-forwarded-host", "a b"),
        ("x-forwarded-port", "99999"),
    ])
    .await;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "t.localhost");
    assert_eq!(h["x-forwarded-port"], p.addr.port().to_string());

    // Nothing forwarded: as from any client.
    let h = headers_for(&[]).await;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "t.localhost");
}

#[tokio::test]
async fn a_client_outside_the_trusted_networks_gets_its_forwarded_headers_replaced() {
    let up = Upstream::start("u").await;
    let mut settings = ProxySettings::default();
    settings.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("u", &[], &[up.addr]))
        .await
        .unwrap();
    let r = send(
        &client(),
        p.addr,
        "GET",
        "u.localhost",
        "/headers",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-real-ip", "6.6.6.6"),
            ("true-client-ip", "6.6.6.6"),
        ],
        Bytes::new(),
    )
    .await;
    let h: HashMap<String, String> = serde_json::from_str(&r.body).unwrap();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "u.localhost");
    assert!(
        !h.contains_key("x-real-ip") && !h.contains_key("true-client-ip"),
        "{h:?}"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let up = Upstream::start("hop").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("hop", &[], &[up.addr]))
        .await
        .unwrap();
    let cl = client();
    let r = send(
        &cl,
        p.addr,
        "GET",
        "hop.localhost",
        "/headers",
        &[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eDp5"),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ],
        Bytes::new(),
    )
    .await;
    let h: HashMap<String, String> = serde_json::from_str(&r.body).unwrap();
    for gone in ["x-private", "keep-alive", "proxy-authorization", "te"] {
        assert!(!h.contains_key(gone), "{gone} forwarded: {h:?}");
    }
    assert_eq!(h["x-kept"], "yes");
    if let Some(c) = h.get("connection") {
        assert!(!c.contains("x-private"));
    }
    let r = get(&cl, p.addr, "hop.localhost", "/hop").await;
    assert_eq!(r.body, "hop");
    assert!(r.headers.get("x-internal").is_none(), "{:?}", r.headers);
    assert!(r.headers.get("keep-alive").is_none());
    assert_eq!(r.headers.get("x-public").unwrap(), "yes");
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_rejected_and_closed() {
    let up = Upstream::start("smug").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("smug", &[], &[up.addr]))
        .await
        .unwrap();
    for req in [
        &b"POST /echo HTTP/1.1\r\nHost: smug.localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: smug.localhost\r\n\r\n"[..],
        b"POST /echo HTTP/1.1\r\nHost: smug.localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: smug.localhost\r\n\r\nPOST /echo HTTP/1.1\r\nHost: smug.localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let (out, closed) = raw(p.addr, req).await;
        assert!(out.contains("HTTP/1.1 400"), "{out}");
        assert!(closed, "connection closed after the 400");
    }
    // An invalid Content-Length is a 400 too (from hyper's parser).
    let (out, closed) = raw(
        p.addr,
        b"POST /echo HTTP/1.1\r\nHost: smug.localhost\r\nContent-Length: 1x\r\n\r\nx",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(closed);
    assert_eq!(up.hits(), 1, "only the well-formed GET reached the app");
    // Pipelined well-formed requests with bodies keep working.
    let (out, _) = raw(
        p.addr,
        b"POST /echo HTTP/1.1\r\nHost: smug.localhost\r\nContent-Length: 3\r\n\r\nabcPOST /echo HTTP/1.1\r\nHost: smug.localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: smug.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let up = Upstream::start("big").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("big", &[], &[up.addr]))
        .await
        .unwrap();
    let big = "x".repeat(20 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: big.localhost\r\nX-Big: {big}\r\n\r\n");
    let (out, closed) = raw(p.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert!(closed);
    // A request line over the limit is a URI too long.
    let req = format!("GET /{big} HTTP/1.1\r\nHost: big.localhost\r\n\r\n");
    let (out, closed) = raw(p.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 414"), "{out}");
    assert!(closed);
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn body_limit_gives_413() {
    let up = Upstream::start("lim").await;
    let mut settings = ProxySettings::default();
    settings.max_body_bytes = Some(1000);
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("lim", &[], &[up.addr]))
        .await
        .unwrap();
    let cl = client();
    let r = send(
        &cl,
        p.addr,
        "POST",
        "lim.localhost",
        "/echo",
        &[],
        Bytes::from(vec![b'a'; 2000]),
    )
    .await;
    assert_eq!(r.status, 413);
    let r = send(
        &cl,
        p.addr,
        "POST",
        "lim.localhost",
        "/echo",
        &[],
        Bytes::from(vec![b'a'; 500]),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "500"));
    // Chunked: the limit is enforced while streaming.
    let chunk = format!("{:x}\r\n{}\r\n", 1500, "b".repeat(1500));
    let req = format!("POST /echo HTTP/1.1\r\nHost: lim.localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}0\r\n\r\n");
    let (out, _) = raw(p.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
}

#[tokio::test]
async fn a_slow_client_is_cut_off_by_the_header_timeout() {
    let up = Upstream::start("slow").await;
    let mut settings = ProxySettings::default();
    settings.header_read_timeout = Duration::from_millis(300);
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("slow", &[], &[up.addr]))
        .await
        .unwrap();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: slow.localhost\r\n")
        .await
        .unwrap();
    // Dribble a header line every 100 ms, for up to 20 s: the proxy must hang up first.
    let mut cut = false;
    for i in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(format!("X-{i}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            if matches!(r, Ok(0) | Err(_)) {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "slowloris connection was not cut");
    assert_eq!(up.hits(), 0);
    assert!(p
        .router
        .metrics_text()
        .contains("paas_proxy_header_timeouts_total 1"));
    // A silent connection is cut too.
    let (out, closed) = raw(p.addr, b"").await;
    assert!(closed && out.is_empty());
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let up = Upstream::start("idle").await;
    let mut settings = ProxySettings::default();
    settings.idle_timeout = Duration::from_millis(300);
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("idle", &[], &[up.addr]))
        .await
        .unwrap();
    let (out, closed) = raw(p.addr, b"GET / HTTP/1.1\r\nHost: idle.localhost\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(closed, "idle keep-alive connection closed");
    // A response longer than the idle timeout is not cut.
    let (out, _) = raw(
        p.addr,
        b"GET /slow/800 HTTP/1.1\r\nHost: idle.localhost\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn drain_waits_for_in_flight_requests() {
    let old = Upstream::start("old").await;
    let new = Upstream::start("new").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("dr", &[], &[old.addr]))
        .await
        .unwrap();
    let addr = p.addr;
    let slow =
        tokio::spawn(async move { get(&client(), addr, "dr.localhost", "/slow/1000").await });
    assert!(eventually(10, || p.router.in_flight(old.addr) == 1).await);
    p.router
        .set_route(route("dr", &[], &[new.addr]))
        .await
        .unwrap();
    assert_eq!(
        get(&client(), p.addr, "dr.localhost", "/").await.body,
        "new"
    );
    let r = p
        .router
        .drain(DrainRequest::new(vec![old.addr], Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(r.pending, vec![old.addr], "still in flight");
    let r = p
        .router
        .drain(DrainRequest::new(vec![old.addr], Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(r.drained, vec![old.addr]);
    let reply = slow.await.unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "old"),
        "in-flight request finished"
    );
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener() {
    let up = Upstream::start("m").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("m", &[], &[up.addr]))
        .await
        .unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(p.router.clone().serve_admin(admin, std::future::pending()));
    let cl = client();
    for _ in 0..3 {
        get(&cl, p.addr, "m.localhost", "/").await;
    }
    get(&cl, p.addr, "zzz.localhost", "/").await;
    let text = get(&cl, admin_addr, "admin", "/metrics").await.body;
    assert!(
        text.contains("paas_proxy_requests_total{app=\"m\",class=\"2xx\"} 3"),
        "{text}"
    );
    assert!(text.contains("paas_proxy_request_duration_seconds_count{app=\"m\"} 3"));
    assert!(text.contains("paas_proxy_in_flight{app=\"m\"} 0"));
    assert!(text.contains("paas_proxy_unrouted_requests_total 1"));
    let routes = get(&cl, admin_addr, "admin", "/routes").await.body;
    assert!(routes.contains(&up.addr.to_string()));
}

#[tokio::test]
async fn access_lines_go_to_the_log_sink() {
    let up = Upstream::start("log").await;
    let sink = std::sync::Arc::new(paas_core::memory::MemoryLogSink::new());
    let router = ProxyRouter::new(ProxySettings::default())
        .unwrap()
        .with_access_log(sink.clone());
    let p = Proxy::start_router(router).await;
    p.router
        .set_route(route("log", &[], &[up.addr]))
        .await
        .unwrap();
    get(&client(), p.addr, "log.localhost", "/?q=1").await;
    let mut lines = Vec::new();
    assert!(
        eventually(10, || {
            lines = futures::executor::block_on(sink.tail(&app("log"), 10)).unwrap();
            !lines.is_empty()
        })
        .await
    );
    assert_eq!(lines[0].source, LogSource::Router);
    let t = &lines[0].text;
    assert!(
        t.contains("method=GET") && t.contains("path=\"/?q=1\"") && t.contains("status=200"),
        "{t}"
    );
    assert!(t.contains(&format!("endpoint={}", up.addr)), "{t}");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let up = Upstream::start("sd").await;
    let router = ProxyRouter::new(ProxySettings::default()).unwrap();
    router
        .set_route(route("sd", &[], &[up.addr]))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let r = router.clone();
    let server = tokio::spawn(async move {
        r.serve(listener, async {
            let _ = rx.await;
        })
        .await
    });
    let slow = tokio::spawn(async move { get(&client(), addr, "sd.localhost", "/slow/500").await });
    assert!(eventually(10, || router.in_flight(up.addr) == 1).await);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(slow.await.unwrap().status, 200);
}

#[tokio::test]
async fn connect_is_refused_and_closed() {
    let up = Upstream::start("tun").await;
    let mut settings = ProxySettings::default();
    settings.header_read_timeout = Duration::from_millis(300);
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("tun", &[], &[up.addr]))
        .await
        .unwrap();
    let (out, closed) = raw(
        p.addr,
        b"CONNECT tun.localhost:443 HTTP/1.1\r\nHost: tun.localhost:443\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(closed, "the connection is closed after a refused CONNECT");
    assert_eq!(up.hits(), 0, "nothing reached the app");
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_response() {
    let up = Upstream::start("half").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("half", &[], &[up.addr]))
        .await
        .unwrap();
    let out = raw_half_closed(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: half.localhost\r\n\r\n",
        "the proxy answers and closes",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_half_closed_tunnel_lives_while_the_other_side_talks_and_its_bytes_are_logged() {
    // An endpoint that switches to a one-way stream: ten ticks 150 ms apart (1.5 s in all),
    // then silence without closing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "the request head arrives");
            head.extend_from_slice(&b[..n]);
        }
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-ticks\r\n\r\n",
        )
        .await
        .unwrap();
        for i in 0..10 {
            s.write_all(format!("tick {i}\n").as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        // Hold the connection open and silent (the proxy's FIN for the client's half-close
        // arrives, but this end never closes) until the proxy gives up on it.
        let _ = s.read_to_end(&mut Vec::new()).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let sink = std::sync::Arc::new(paas_core::memory::MemoryLogSink::new());
    let mut settings = ProxySettings::default();
    settings.idle_timeout = Duration::from_millis(500);
    settings.tunnel_idle_timeout = Duration::from_millis(500);
    let router = ProxyRouter::new(settings)
        .unwrap()
        .with_access_log(sink.clone());
    let p = Proxy::start_router(router).await;
    p.router
        .set_route(route("ticks", &[], &[up_addr]))
        .await
        .unwrap();

    // The client has nothing to say: it half-closes at once and only listens.
    let out = raw_half_closed(
        p.addr,
        b"GET /ticks HTTP/1.1\r\nHost: ticks.localhost\r\nConnection: Upgrade\r\nUpgrade: x-ticks\r\n\r\n",
        "the proxy closes the tunnel once it is silent",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let ticks: String = (0..10).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(
        body, ticks,
        "every tick arrives though the stream outlives the idle timeout three times"
    );

    let mut lines = Vec::new();
    assert!(
        eventually(10, || {
            lines = futures::executor::block_on(sink.tail(&app("ticks"), 10)).unwrap();
            !lines.is_empty()
        })
        .await
    );
    let t = &lines[0].text;
    assert!(
        t.contains("status=101") && t.contains(&format!("bytes={}", ticks.len())),
        "the access line counts the tunnelled bytes: {t}"
    );
    assert!(t.contains("desc=\"closed after idle timeout\""), "{t}");
}
