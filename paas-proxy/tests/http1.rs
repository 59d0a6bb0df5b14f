//! HTTP/1 details of the data plane, against scripted loopback endpoints: interim responses,
//! chunked request bodies re-encoded canonically (and refused unless they follow RFC 9112 7.1
//! strictly), client-address headers kept from the app, retries of idempotent requests whose
//! pooled connection the app had closed, HTTP/1.0 clients, absolute-form targets, and
//! responses delimited by the connection's end.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use paas_core::Router;
use paas_proxy::ProxySettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An endpoint running `f(connection, index)` for each accepted connection.
async fn scripted<F, Fut>(f: F) -> SocketAddr
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = Arc::new(f);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(f(s, n));
            n += 1;
        }
    });
    addr
}

/// Reads one request head (up to the blank line); empty at EOF.
async fn read_head(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(1) => out.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `s` until `needle` appears (at most 5 s).
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&out).contains(needle) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn expect_100_continue_is_relayed_before_the_body() {
    let up = Upstream::start("cont").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("cont", &[], &[up.addr]))
        .await
        .unwrap();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: cont.localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    let interim = read_until(&mut s, "\r\n\r\n").await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    s.write_all(b"hello").await.unwrap();
    let rest = read_until(&mut s, "\r\n\r\n5").await;
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(rest.ends_with("\r\n\r\n5"), "{rest}");
}

#[tokio::test]
async fn chunked_request_bodies_reach_the_app_re_encoded() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let addr = scripted(move |mut s, _| {
        let log = log.clone();
        async move {
            let head = read_head(&mut s).await;
            let body = read_until(&mut s, "0\r\n\r\n").await;
            log.lock().unwrap().push(format!("{head}{body}"));
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            let _ = read_head(&mut s).await;
        }
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("chunk", &[], &[addr]))
        .await
        .unwrap();
    let (out, _) = raw(
        p.addr,
        b"POST /x HTTP/1.1\r\nHost: chunk.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;ext=\"1\"\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let got = seen.lock().unwrap().join("");
    assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
    assert!(
        got.ends_with("\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"),
        "canonical chunks, no extension, no trailer: {got:?}"
    );
    // A malformed chunk size is refused and the connection closed.
    let (out, closed) = raw(
        p.addr,
        b"POST /x HTTP/1.1\r\nHost: chunk.localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(closed);
    // So is a transfer coding other than chunked.
    let (out, closed) = raw(
        p.addr,
        b"POST /x HTTP/1.1\r\nHost: chunk.localhost\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(closed);
}

/// An endpoint that answers the first request on each connection with keep-alive, then closes
/// the connection without answering when the next request arrives (the race between an app's
/// keep-alive timeout and a proxy reusing the connection).
async fn closes_after_one() -> (SocketAddr, Arc<AtomicUsize>) {
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    let addr = scripted(move |mut s, _| {
        let count = count.clone();
        async move {
            let head = read_head(&mut s).await;
            if head.is_empty() {
                return;
            }
            count.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            let _ = read_head(&mut s).await;
            // Closed without an answer.
        }
    })
    .await;
    (addr, answered)
}

#[tokio::test]
async fn idempotent_requests_are_retried_when_the_app_closed_the_pooled_connection() {
    let (addr, answered) = closes_after_one().await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("race", &[], &[addr]))
        .await
        .unwrap();
    let cl = client();
    for i in 0..4 {
        let r = get(&cl, p.addr, "race.localhost", "/").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "request {i}");
    }
    assert_eq!(answered.load(Ordering::SeqCst), 4);
    // A POST is not replayed: the app may have acted on it.
    let r = send(
        &cl,
        p.addr,
        "POST",
        "race.localhost",
        "/",
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 502);
}

#[tokio::test]
async fn http10_clients_and_absolute_form_targets() {
    let up = Upstream::start("old").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("old", &[], &[up.addr]))
        .await
        .unwrap();
    // HTTP/1.0 without keep-alive: answered, then closed.
    let (out, closed) = raw(p.addr, b"GET / HTTP/1.0\r\nHost: old.localhost\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("\r\n\r\nold"), "{out}");
    assert!(closed);
    // HTTP/1.0 with keep-alive: the connection stays for a second request.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: old.localhost\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let first = read_until(&mut s, "\r\n\r\nold").await;
    assert!(
        first
            .to_ascii_lowercase()
            .contains("connection: keep-alive"),
        "{first}"
    );
    s.write_all(b"GET / HTTP/1.0\r\nHost: old.localhost\r\n\r\n")
        .await
        .unwrap();
    let second = read_until(&mut s, "\r\n\r\nold").await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    // Absolute-form: the authority is the host, whatever `Host` says.
    let (out, _) = raw(
        p.addr,
        b"GET http://old.localhost/headers HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"host\":\"old.localhost\""), "{out}");
    assert!(
        out.contains("\"x-forwarded-host\":\"old.localhost\""),
        "{out}"
    );
}

#[tokio::test]
async fn a_host_that_is_not_a_hostname_gets_400() {
    let up = Upstream::start("h").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("h", &[], &[up.addr]))
        .await
        .unwrap();
    for host in [
        "user@h.localhost",
        "h.localhost/x",
        "h.localhost:99999",
        "h.localhost:",
        "[::1]junk",
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (out, closed) = raw(p.addr, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{host}: {out}");
        assert!(out.contains("no valid Host"), "{host}: {out}");
        assert!(closed, "{host}");
    }
    let (out, _) = raw(
        p.addr,
        b"GET http://user@h.localhost/ HTTP/1.1\r\nHost: h.localhost\r\n\r\n",
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 400"),
        "user info in the target: {out}"
    );
    let (out, _) = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: H.Localhost.:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn a_response_without_length_ends_with_the_connection() {
    let addr = scripted(|mut s, _| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
            .await;
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("eof", &[], &[addr]))
        .await
        .unwrap();
    let (out, closed) = raw(p.addr, b"GET / HTTP/1.1\r\nHost: eof.localhost\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nuntil the end"), "{out}");
    assert!(closed);
}

#[tokio::test]
async fn an_app_that_does_not_answer_in_time_gives_504() {
    let addr = scripted(|mut s, _| async move {
        let _ = read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let mut settings = ProxySettings::default();
    settings.response_timeout = Duration::from_millis(300);
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("mute", &[], &[addr]))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (out, closed) = raw(p.addr, b"GET / HTTP/1.1\r\nHost: mute.localhost\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 504"), "{out}");
    assert!(closed);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(p.router.in_flight(addr), 0, "the request no longer counts");
}

#[tokio::test]
async fn an_app_streaming_its_answer_while_reading_the_upload_gets_all_of_it() {
    // Like `req.pipe(res)`: the response head goes out after the first body bytes, and each
    // body piece read is echoed back at once, as a chunk.
    let addr = scripted(|mut s, _| async move {
        let head = read_head(&mut s).await;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut buf = vec![0u8; 8192];
        let mut first = true;
        let mut left = len;
        while left > 0 {
            let n = s.read(&mut buf[..left.min(8192)]).await.unwrap();
            if n == 0 {
                return;
            }
            left -= n;
            if first {
                s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await
                    .unwrap();
                first = false;
            }
            let mut chunk = format!("{n:x}\r\n").into_bytes();
            chunk.extend_from_slice(&buf[..n]);
            chunk.extend_from_slice(b"\r\n");
            s.write_all(&chunk).await.unwrap();
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
        let _ = read_head(&mut s).await;
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("pipe", &[], &[addr]))
        .await
        .unwrap();
    let body = vec![b'x'; 4 << 20];
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: pipe.localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        w.write_all(head.as_bytes()).await.unwrap();
        w.write_all(&body).await.unwrap();
        w
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        while !got.ends_with(b"\r\n0\r\n\r\n") {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(done.is_ok(), "stalled after {} bytes", got.len());
    let _w = writer.await.unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..100.min(text.len())]
    );
    let echoed = text.bytes().filter(|b| *b == b'x').count();
    assert_eq!(echoed, 4 << 20, "the whole upload came back");
}

#[tokio::test]
async fn forwarded_headers_spelled_with_underscores_are_dropped_too() {
    let up = Upstream::start("fwd").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("fwd", &[], &[up.addr]))
        .await
        .unwrap();
    let (out, _) = raw(
        p.addr,
        b"GET /headers HTTP/1.1\r\nHost: fwd.localhost\r\nX_Forwarded_For: 6.6.6.6\r\nx_forwarded_proto: https\r\nForwarded: for=6.6.6.6\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(!out.contains("6.6.6.6"), "{out}");
    assert!(!out.contains("https"), "{out}");
    assert!(out.contains("\"x-forwarded-for\":\"127.0.0.1\""), "{out}");
}

#[tokio::test]
async fn a_slow_upload_is_not_cut_by_the_response_timeout() {
    let up = Upstream::start("upl").await;
    let mut settings = ProxySettings::default();
    settings.response_timeout = Duration::from_millis(300);
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("upl", &[], &[up.addr]))
        .await
        .unwrap();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: upl.localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // One byte every 100 ms: the upload takes three response timeouts.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"x").await.unwrap();
    }
    let out = read_until(&mut s, "\r\n\r\n10").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("\r\n\r\n10"), "{out}");
}

#[tokio::test]
async fn a_body_sent_after_a_head_answer_never_reaches_the_next_request() {
    // The app answers HEAD with a head and, a moment later, stray bytes (here a whole
    // response): the connection must not be reused for the next request.
    let addr = scripted(|mut s, _| async move {
        loop {
            let head = read_head(&mut s).await;
            if head.is_empty() {
                return;
            }
            if head.starts_with("HEAD") {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_millis(30)).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nSECRET")
                    .await;
            } else {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("stray", &[], &[addr]))
        .await
        .unwrap();
    let cl = client();
    for _ in 0..3 {
        let r = send(
            &cl,
            p.addr,
            "HEAD",
            "stray.localhost",
            "/",
            &[],
            bytes::Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 200);
        let r = send(
            &cl,
            p.addr,
            "POST",
            "stray.localhost",
            "/",
            &[],
            bytes::Bytes::new(),
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
}

/// 3 MB of a pattern that shows any lost, repeated or reordered stretch.
fn pattern() -> Vec<u8> {
    (0..3_000_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn large_bodies_arrive_intact_with_a_length_and_delimited_by_close() {
    // `/length` answers with Content-Length, `/close` with a body ended by closing; both are
    // written in uneven pieces.
    let addr = scripted(|mut s, _| async move {
        loop {
            let head = read_head(&mut s).await;
            if head.is_empty() {
                return;
            }
            let body = pattern();
            let close = head.starts_with("GET /close");
            let answer = if close {
                "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
            };
            if s.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            for piece in body.chunks(70_001) {
                if s.write_all(piece).await.is_err() {
                    return;
                }
            }
            if close {
                return;
            }
        }
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("large", &[], &[addr]))
        .await
        .unwrap();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    // Twice on one keep-alive connection, then the close-delimited one.
    for path in ["/length", "/length", "/close"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: large.localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        let mut body = Vec::new();
        if path == "/close" {
            assert!(head.contains("connection: close"), "{head}");
            s.read_to_end(&mut body).await.unwrap();
        } else {
            assert!(head.contains("content-length: 3000000"), "{head}");
            body.resize(3_000_000, 0);
            s.read_exact(&mut body).await.unwrap();
        }
        assert!(
            body == pattern(),
            "{path}: the body differs ({} bytes)",
            body.len()
        );
    }
}

#[tokio::test]
async fn a_head_answer_keeps_the_transfer_encoding_a_get_would_get() {
    let addr = scripted(|mut s, _| async move {
        loop {
            let head = read_head(&mut s).await;
            if head.is_empty() {
                return;
            }
            let answer: &[u8] = if head.starts_with("HEAD") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-kind: head\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nget\r\n0\r\n\r\n"
            };
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("headte", &[], &[addr]))
        .await
        .unwrap();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: headte.localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_until(&mut s, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(head.contains("x-kind: head\r\n"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "no body after a HEAD answer: {head}"
    );
    // The connection is still in step: the next request gets its own, chunked, answer.
    s.write_all(b"GET / HTTP/1.1\r\nHost: headte.localhost\r\n\r\n")
        .await
        .unwrap();
    let get = read_until(&mut s, "0\r\n\r\n").await;
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
    assert!(get.ends_with("3\r\nget\r\n0\r\n\r\n"), "{get}");
}

#[tokio::test]
async fn a_blank_line_after_a_body_leaves_the_connection_idle_not_in_a_head() {
    let up = Upstream::start("crlf").await;
    let mut settings = ProxySettings::default();
    settings.header_read_timeout = Duration::from_millis(300);
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("crlf", &[], &[up.addr]))
        .await
        .unwrap();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: crlf.localhost\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .unwrap();
    let first = read_until(&mut s, "\r\n\r\n3").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    s.write_all(b"\r\n").await.unwrap();
    // Longer than the header timeout, shorter than the idle timeout.
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: crlf.localhost\r\n\r\n")
        .await
        .unwrap();
    let second = read_until(&mut s, "\r\n\r\ncrlf").await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

#[tokio::test]
async fn a_lone_endpoint_back_from_a_restart_is_used_at_once() {
    // An address with nothing listening yet: the app's only process is restarting.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("back", &[], &[addr]))
        .await
        .unwrap();
    let cl = client();
    let r = get(&cl, p.addr, "back.localhost", "/").await;
    assert_eq!(r.status, 503, "nothing listens yet");
    // The process is back on its port, well within the ejection time (5 s).
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                while !read_head(&mut s).await.is_empty() {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nback")
                        .await;
                }
            });
        }
    });
    let r = get(&cl, p.addr, "back.localhost", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "back"));
}

#[tokio::test]
async fn transfer_codings_besides_chunked_reach_the_client() {
    let addr = scripted(|mut s, _| async move {
        while !read_head(&mut s).await.is_empty() {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                .await;
        }
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router.set_route(route("te", &[], &[addr])).await.unwrap();
    let (out, _) = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: te.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("transfer-encoding: gzip, chunked\r\n"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "{out}");
}

/// A loopback address nothing listens on.
async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

#[tokio::test]
async fn a_refused_connection_sends_any_request_to_another_endpoint() {
    let up = Upstream::start("live").await;
    let dead = refused_addr().await;
    let mut settings = ProxySettings::default();
    settings.balance = paas_proxy::Balance::RoundRobin;
    // No ejection: every other request is first sent to the dead endpoint.
    settings.ejection_time = Duration::ZERO;
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("half", &[], &[dead, up.addr]))
        .await
        .unwrap();
    for i in 0..6 {
        let (out, _) = raw(
            p.addr,
            format!(
                "POST /echo HTTP/1.1\r\nHost: half.localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\npost{i}"
            )
            .as_bytes(),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "POST {i}: {out}");
    }
}

#[tokio::test]
async fn an_invalid_answer_is_not_sent_to_the_app_again() {
    // The app answers the first request on a connection well and the second one with a
    // response the proxy refuses (two different lengths).
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let addr = scripted(move |mut s, _| {
        let seen = counter.clone();
        async move {
            let mut n = 0;
            loop {
                let head = read_head(&mut s).await;
                if head.is_empty() {
                    return;
                }
                seen.fetch_add(1, Ordering::SeqCst);
                n += 1;
                let answer: &[u8] = if n == 1 {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nbad"
                };
                let _ = s.write_all(answer).await;
            }
        }
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("bad", &[], &[addr]))
        .await
        .unwrap();
    let get = b"GET / HTTP/1.1\r\nHost: bad.localhost\r\nConnection: close\r\n\r\n";
    let (out, _) = raw(p.addr, get).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (out, _) = raw(p.addr, get).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "the GET the app answered (badly) was not sent again"
    );
}

#[tokio::test]
async fn response_framing_headers_the_client_must_not_get_are_dropped() {
    let addr = scripted(|mut s, _| async move {
        let head = read_head(&mut s).await;
        let answer: &[u8] = if head.starts_with("GET /gzip") {
            // A coding other than chunked, with a length: the body ends with the connection.
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 5\r\n\r\n0123456789"
        } else if head.starts_with("GET /twice") {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        } else {
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
        };
        let _ = s.write_all(answer).await;
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router.set_route(route("fr", &[], &[addr])).await.unwrap();
    let req = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: fr.localhost\r\nConnection: close\r\n\r\n")
    };
    let (out, closed) = raw(p.addr, req("/gzip").as_bytes()).await;
    let lower = out.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{out}");
    assert!(lower.contains("transfer-encoding: gzip"), "{out}");
    assert!(!lower.contains("content-length"), "RFC 9112 6.3: {out}");
    assert!(out.ends_with("\r\n\r\n0123456789") && closed, "{out}");
    let (out, _) = raw(p.addr, req("/twice").as_bytes()).await;
    assert!(
        out.starts_with("HTTP/1.1 502"),
        "chunked applied twice: {out}"
    );
    let (out, _) = raw(p.addr, req("/empty").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    assert!(
        !out.to_ascii_lowercase().contains("content-length"),
        "RFC 9110 8.6: {out}"
    );
}

#[tokio::test]
async fn an_h2c_upgrade_is_not_passed_to_the_app() {
    let up = Upstream::start("h2").await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("h2", &[], &[up.addr]))
        .await
        .unwrap();
    let (out, _) = raw(
        p.addr,
        b"GET /headers HTTP/1.1\r\nHost: h2.localhost\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nX-Real-IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(!lower.contains("\"upgrade\""), "{out}");
    assert!(!lower.contains("http2-settings"), "{out}");
    assert!(
        !lower.contains("6.6.6.6"),
        "client address headers dropped: {out}"
    );
}

#[tokio::test]
async fn a_response_with_many_cookies_is_relayed() {
    let addr = scripted(|mut s, _| async move {
        let _ = read_head(&mut s).await;
        let mut answer = String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
        for i in 0..200 {
            answer.push_str(&format!("set-cookie: c{i}=v{i}; Path=/\r\n"));
        }
        answer.push_str("\r\nok");
        let _ = s.write_all(answer.as_bytes()).await;
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("cookies", &[], &[addr]))
        .await
        .unwrap();
    let (out, _) = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: cookies.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(out.matches("set-cookie: ").count(), 200);
    assert!(out.ends_with("\r\n\r\nok"));
}

#[tokio::test]
async fn a_switch_to_a_protocol_the_client_did_not_ask_for_is_refused() {
    let addr = scripted(|mut s, _| async move {
        let head = read_head(&mut s).await;
        let to = if head.contains("/other") {
            "h2c"
        } else {
            "WebSocket"
        };
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {to}\r\n\r\nhello"
        );
        let _ = s.write_all(answer.as_bytes()).await;
        let _ = s.flush().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    })
    .await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router.set_route(route("sw", &[], &[addr])).await.unwrap();
    let req = |path: &str, connection: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: sw.localhost\r\nConnection: {connection}\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let (out, _) = raw(p.addr, req("/other", "Upgrade, close").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    let (out, _) = raw(p.addr, req("/ws", "Upgrade").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    assert!(out.ends_with("\r\n\r\nhello"), "{out}");
}

/// An endpoint that records the head of each request it reads (with the body, when chunked)
/// and answers with what it recorded as the body. A connection closed before a whole head records
/// nothing.
async fn records_requests() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let addr = scripted(move |mut s, _| {
        let log = log.clone();
        async move {
            loop {
                let head = read_head(&mut s).await;
                if !head.ends_with("\r\n\r\n") {
                    return;
                }
                let body = if head.contains("transfer-encoding: chunked\r\n") {
                    read_until(&mut s, "0\r\n\r\n").await
                } else {
                    String::new()
                };
                let request = format!("{head}{body}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{request}",
                    request.len()
                );
                log.lock().unwrap().push(request);
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, seen)
}

/// Sends each of `bodies` as a chunked request body (head and body in one write); each must
/// get 400 with the connection closed, and nothing of the request may reach the app. Then a
/// valid body must get through (the app was reachable all along).
async fn chunked_bodies_are_refused(app: &str, bodies: &[&[u8]]) {
    let (addr, seen) = records_requests().await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router.set_route(route(app, &[], &[addr])).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {app}.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for body in bodies {
        let shown = String::from_utf8_lossy(body);
        let mut req = head.clone().into_bytes();
        req.extend_from_slice(body);
        let (out, closed) = raw(p.addr, &req).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{shown:?}: {out}");
        assert!(
            out.contains("The chunked request body is malformed."),
            "{shown:?}: {out}"
        );
        assert!(
            out.to_ascii_lowercase().contains("connection: close\r\n"),
            "{shown:?}: {out}"
        );
        assert!(closed, "{shown:?}: the connection is closed");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[] as &[String],
        "no request reached the app"
    );
    let mut req = head.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    req.push_str("5\r\nhello\r\n0\r\n\r\n");
    let (out, _) = raw(p.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn chunked_bodies_with_bare_line_feeds_are_refused() {
    chunked_bodies_are_refused(
        "barelf",
        &[
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"3\nabc\n0\r\n\r\n",
            b"5;ext=1\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhello\r\n0\r\nX-Trailer: t\n\r\n",
        ],
    )
    .await;
}

#[tokio::test]
async fn chunked_bodies_with_control_characters_in_extensions_are_refused() {
    chunked_bodies_are_refused(
        "ctlext",
        &[
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            b"5;a=b\x01\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\x0bc\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\x7f\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\rc\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=b\rc\r\nhello\r\n0\r\n\r\n",
            b"5;a\x1b[31m\r\nhello\r\n0\r\n\r\n",
            b"0;a=\x00\r\n\r\n",
        ],
    )
    .await;
}

#[tokio::test]
async fn chunked_bodies_with_junk_after_the_size_are_refused() {
    chunked_bodies_are_refused(
        "junkext",
        &[
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;=v\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a b\r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
            b"5;a@b\r\nhello\r\n0\r\n\r\n",
            b"0 x\r\n\r\n",
        ],
    )
    .await;
}

#[tokio::test]
async fn chunked_bodies_with_malformed_trailers_are_refused() {
    chunked_bodies_are_refused(
        "badtrailer",
        &[
            b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n",
            b"5\r\nhello\r\n0\r\n: no name\r\n\r\n",
            b"5\r\nhello\r\n0\r\nBad Name: x\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX(T): x\r\n\r\n",
            b"5\r\nhello\r\n0\r\n folded: x\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX-T: 1\r\n continued\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n",
        ],
    )
    .await;
}

#[tokio::test]
async fn valid_chunk_extensions_and_trailers_are_accepted() {
    let (addr, seen) = records_requests().await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("goodext", &[], &[addr]))
        .await
        .unwrap();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    for (i, body) in [
        &b"5;name\r\nhello\r\n0\r\n\r\n"[..],
        b"5;a=b;c=\"d e\\\"f\"\r\nhello\r\n0\r\n\r\n",
        b"5 ; a = b\t;\tc=\"\x80\"\r\nhello\r\n0;last=1\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-Trailer: t\r\nEmpty:\r\nX-Tab:\tv a l \r\n\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        let mut req =
            b"POST /upload HTTP/1.1\r\nHost: goodext.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        req.extend_from_slice(body);
        s.write_all(&req).await.unwrap();
        let out = read_until(&mut s, "hello\r\n0\r\n\r\n").await;
        assert!(
            out.starts_with("HTTP/1.1 200"),
            "{:?}: {out}",
            String::from_utf8_lossy(body)
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), i + 1);
        assert!(
            seen[i].ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            "canonical chunks, no extension, no trailer: {:?}",
            seen[i]
        );
    }
}

/// The header names of a recorded request head, lowercase, with `_` folded into `-` (as some
/// app servers do).
fn folded_names(head: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, _)| n.to_ascii_lowercase().replace('_', "-"))
        .collect()
}

const CLIENT_ADDRESS_HEADERS: &str = "X-Client-IP: 6.6.6.1\r\nClient-IP: 6.6.6.2\r\nCF-Connecting-IP: 6.6.6.3\r\nFastly-Client-IP: 6.6.6.4\r\nX-Cluster-Client-IP: 6.6.6.5\r\nX-Forwarded: for=6.6.6.6\r\n";

const UNDERSCORE_HEADERS: &str = "x_client_ip: 6.6.6.7\r\nCLIENT_IP: 6.6.6.8\r\nCf_Connecting_Ip: 6.6.6.9\r\nFastly_Client_IP: 6.6.6.10\r\nX_Cluster_Client_IP: 6.6.6.11\r\nX_Forwarded: for=6.6.6.12\r\nX_Forwarded_For: 6.6.6.13\r\nX_Forwarded_Host: evil.example\r\nX_Real_IP: 6.6.6.14\r\nTrue_Client_IP: 6.6.6.15\r\nX-Real_IP: 6.6.6.16\r\n";

const FRAMING_ALIASES: &str = "Content_Length: 0\r\ncontent_length: 99\r\nTransfer_Encoding: chunked\r\nTRANSFER_ENCODING: identity\r\n";

#[tokio::test]
async fn client_address_headers_and_framing_aliases_from_untrusted_clients_never_reach_the_app() {
    let (addr, seen) = records_requests().await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("addrs", &[], &[addr]))
        .await
        .unwrap();
    let req = format!(
        "POST /h HTTP/1.1\r\nHost: addrs.localhost\r\n{CLIENT_ADDRESS_HEADERS}x-client-ip: 6.6.6.17\r\nX-Kept: yes\r\n{UNDERSCORE_HEADERS}{FRAMING_ALIASES}X_Kept_Too: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    );
    let (out, _) = raw(p.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = &seen[0];
    assert!(!head.contains("6.6.6."), "{head}");
    assert!(!head.contains("evil.example"), "{head}");
    let names = folded_names(head);
    for dropped in [
        "x-client-ip",
        "client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-cluster-client-ip",
        "x-forwarded",
        "x-real-ip",
        "true-client-ip",
    ] {
        assert!(!names.iter().any(|n| n == dropped), "{dropped}: {head}");
    }
    assert_eq!(
        names.iter().filter(|n| *n == "content-length").count(),
        1,
        "only the proxy's own Content-Length: {head}"
    );
    assert!(!names.iter().any(|n| n == "transfer-encoding"), "{head}");
    assert!(head.contains("\r\ncontent-length: 3\r\n"), "{head}");
    assert!(
        head.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nX-Kept: yes\r\n"), "{head}");
    assert!(head.contains("\r\nX_Kept_Too: yes\r\n"), "{head}");
}

#[tokio::test]
async fn a_trusted_proxy_keeps_client_address_headers_but_not_framing_aliases() {
    let (addr, seen) = records_requests().await;
    let mut settings = ProxySettings::default();
    settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let p = Proxy::start(settings).await;
    p.router
        .set_route(route("trustedaddrs", &[], &[addr]))
        .await
        .unwrap();
    let req = format!(
        "GET /h HTTP/1.1\r\nHost: trustedaddrs.localhost\r\n{CLIENT_ADDRESS_HEADERS}{FRAMING_ALIASES}Connection: close\r\n\r\n"
    );
    let (out, _) = raw(p.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = &seen[0];
    for kept in CLIENT_ADDRESS_HEADERS.split_terminator("\r\n") {
        assert!(head.contains(&format!("\r\n{kept}\r\n")), "{kept}: {head}");
    }
    let names = folded_names(head);
    assert!(
        !names
            .iter()
            .any(|n| n == "content-length" || n == "transfer-encoding"),
        "{head}"
    );
}

#[tokio::test]
async fn the_asterisk_target_is_for_options_only() {
    let (addr, seen) = records_requests().await;
    let p = Proxy::start(ProxySettings::default()).await;
    p.router
        .set_route(route("star", &[], &[addr]))
        .await
        .unwrap();
    for method in ["GET", "POST", "DELETE", "HEAD"] {
        let req =
            format!("{method} * HTTP/1.1\r\nHost: star.localhost\r\nConnection: close\r\n\r\n");
        let (out, _) = raw(p.addr, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{method} *: {out}");
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing reached the app");
    let (out, _) = raw(
        p.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: star.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = seen.lock().unwrap();
    assert!(seen[0].starts_with("OPTIONS * HTTP/1.1\r\n"), "{seen:?}");
}
