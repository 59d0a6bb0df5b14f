//! Helpers: loopback upstreams (axum on 127.0.0.1:0), a proxy on 127.0.0.1:0, HTTP clients.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::routing::{any, get as route_get};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use paas_core::{AppName, Domain, Route};
use paas_proxy::{ProxyRouter, ProxySettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

#[derive(Clone)]
struct UpState {
    name: String,
    hits: Arc<AtomicUsize>,
    gate: Arc<Notify>,
}

/// A loopback upstream app process.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub hits: Arc<AtomicUsize>,
    /// Releases the second SSE event.
    pub gate: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

async fn root(State(s): State<UpState>) -> String {
    s.hits.fetch_add(1, Ordering::SeqCst);
    s.name.clone()
}

async fn headers(State(s): State<UpState>, h: HeaderMap) -> axum::Json<BTreeMap<String, String>> {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let mut out = BTreeMap::new();
    for (k, v) in h.iter() {
        let v = v.to_str().unwrap_or("?").to_string();
        out.entry(k.as_str().to_string())
            .and_modify(|e: &mut String| {
                e.push_str(", ");
                e.push_str(&v)
            })
            .or_insert(v);
    }
    axum::Json(out)
}

async fn slow(State(s): State<UpState>, Path(ms): Path<u64>) -> String {
    s.hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    s.name.clone()
}

async fn sse(State(s): State<UpState>) -> impl IntoResponse {
    let gate = s.gate.clone();
    let stream = futures::stream::once(async {
        Ok::<_, std::convert::Infallible>(Event::default().data("one"))
    })
    .chain(futures::stream::once(async move {
        gate.notified().await;
        Ok(Event::default().data("two"))
    }));
    Sse::new(stream)
}

async fn hop() -> impl IntoResponse {
    (
        [
            ("connection", "x-internal"),
            ("x-internal", "secret"),
            ("keep-alive", "timeout=5"),
            ("x-public", "yes"),
        ],
        "hop",
    )
}

async fn echo_len(body: Bytes) -> String {
    body.len().to_string()
}

async fn ws(upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                Message::Text(_) | Message::Binary(_) => msg,
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = UpState {
            name: name.to_string(),
            hits: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(Notify::new()),
        };
        let app = axum::Router::new()
            .route("/", route_get(root))
            .route("/headers", any(headers))
            .route("/slow/{ms}", route_get(slow))
            .route("/sse", route_get(sse))
            .route("/hop", route_get(hop))
            .route("/echo", any(echo_len))
            .route("/ws", route_get(ws))
            .with_state(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Upstream {
            addr,
            name: name.to_string(),
            hits: state.hits,
            gate: state.gate,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Graceful shutdown: stops accepting, finishes in-flight requests, closes connections.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A proxy serving on 127.0.0.1:0.
pub struct Proxy {
    pub router: ProxyRouter,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(settings: ProxySettings) -> Proxy {
        Self::start_router(ProxyRouter::new(settings).unwrap()).await
    }

    pub async fn start_router(router: ProxyRouter) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let r = router.clone();
        let task = tokio::spawn(async move {
            r.serve(listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Proxy {
            router,
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

pub fn app(name: &str) -> AppName {
    AppName::new(name).unwrap()
}

pub fn route(name: &str, hosts: &[&str], endpoints: &[SocketAddr]) -> Route {
    Route {
        app: app(name),
        hosts: hosts.iter().map(|h| Domain::new(*h).unwrap()).collect(),
        endpoints: endpoints.to_vec(),
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// A request through the proxy with `Host: host`.
pub async fn send(
    client: &HttpClient,
    proxy: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"))
        .header("host", host);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(body)).unwrap())
        .await
        .expect("request through proxy");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &HttpClient, proxy: SocketAddr, host: &str, path: &str) -> Reply {
    send(client, proxy, "GET", host, path, &[], Bytes::new()).await
}

/// Writes `bytes` on a fresh connection and reads until the proxy closes it (at most 10 s).
/// Returns what was read and whether the connection was closed.
pub async fn raw(proxy: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Writes `bytes` on a fresh connection, half-closes it (the client has nothing more to say)
/// and reads until the proxy closes its side; panics with `why` if that takes over 10 s.
pub async fn raw_half_closed(proxy: SocketAddr, bytes: &[u8], why: &str) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect(why)
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `f` every 20 ms until it is true (at most `secs` seconds); returns its last value.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
