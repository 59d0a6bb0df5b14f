//! The request path: route by host, pick an endpoint, rewrite headers, forward, stream back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::access::AccessRecord;
use crate::body::{BodyTooLarge, ProxyBody, RequestBody, StreamGuards};
use crate::conn::{ActiveGuard, ConnState};
use crate::router::Shared;
use crate::table::{normalize_host, now_ms, AppEntry, Endpoint, InFlight};
use crate::upstream::{self, SendError};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What a client connection's handler knows.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: ConnState,
    pub(crate) peer: SocketAddr,
    /// `X-Forwarded-For` value (the peer's IP), computed once per connection.
    pub(crate) xff: HeaderValue,
    /// `X-Forwarded-Port` value (the port the client connected to).
    pub(crate) port: Arc<HeaderValue>,
}

/// Whether `name` is a hop-by-hop header (besides those a `Connection` header names).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Removes hop-by-hop headers, including those named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (usually a handful) instead of a lookup per hop-by-hop name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                .unwrap_or(false)
        })
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    (1..=200).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for b in buf.iter_mut() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn page(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const NOT_ALLOWED: &str = "<!doctype html><title>Method not allowed</title><h1>Method not allowed</h1><p>CONNECT is not supported.</p>\n";
const NOT_FOUND: &str = "<!doctype html><title>No such app</title><h1>No such app</h1><p>No app is routed at this hostname.</p>\n";
const UNAVAILABLE: &str = "<!doctype html><title>Application unavailable</title><h1>Application unavailable</h1><p>The app has no healthy process right now. Try again shortly.</p>\n";
const BAD_GATEWAY: &str =
    "<!doctype html><title>Bad gateway</title><h1>Bad gateway</h1><p>The app did not answer.</p>\n";
const TOO_LARGE: &str = "<!doctype html><title>Payload too large</title><h1>Payload too large</h1><p>The request body is larger than this router accepts.</p>\n";
const AMBIGUOUS: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>A request must not carry both Content-Length and Transfer-Encoding.</p>\n";
const BAD_HOST: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The request has no valid Host.</p>\n";

/// A response made by the router itself for an app (counted and logged).
fn finish(
    entry: &AppEntry,
    access: Option<AccessRecord>,
    started: Instant,
    status: StatusCode,
    text: &'static str,
    note: &'static str,
) -> Response<ProxyBody> {
    entry.metrics.record(status.as_u16(), started.elapsed());
    if let Some(mut a) = access {
        a.status = status.as_u16();
        a.note = note;
        a.bytes = text.len() as u64;
        a.emit();
    }
    page(status, text)
}

/// Takes an in-flight slot on an endpoint of the app, picking again from a fresh table if the
/// chosen endpoint was removed meanwhile.
fn start_on_endpoint(
    shared: &Shared,
    host: &str,
    entry: &mut Arc<AppEntry>,
    avoid: Option<&Arc<Endpoint>>,
) -> Option<(Arc<Endpoint>, InFlight)> {
    for _ in 0..16 {
        let ep = entry.pick(avoid)?.clone();
        if let Some(g) = InFlight::start(&ep, &entry.metrics) {
            return Some((ep, g));
        }
        let table = shared.table.load();
        *entry = table.lookup(host)?.clone();
    }
    None
}

pub(crate) async fn handle(
    ctx: Arc<ConnCtx>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let shared = &ctx.shared;
    let started = Instant::now();
    let index = ctx.state.requests.fetch_add(1, Ordering::Relaxed);
    ctx.state.active.fetch_add(1, Ordering::Release);
    let active = ActiveGuard(ctx.clone());

    if index >= ctx.state.first_bad.load(Ordering::SeqCst) {
        shared
            .global
            .rejected_framing
            .fetch_add(1, Ordering::Relaxed);
        let mut r = page(StatusCode::BAD_REQUEST, AMBIGUOUS);
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(r);
    }

    // A reverse proxy tunnels nothing: CONNECT is refused and the connection closed (an
    // accepted CONNECT would leave the connection outside the request-framing tracker).
    if req.method() == Method::CONNECT {
        let mut r = page(StatusCode::METHOD_NOT_ALLOWED, NOT_ALLOWED);
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(r);
    }

    let raw_host = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| req.headers().get(header::HOST).cloned());
    let Some(host) = raw_host.as_ref().and_then(|h| normalize_host(h.as_bytes())) else {
        return Ok(page(StatusCode::BAD_REQUEST, BAD_HOST));
    };
    let found = shared.table.load().lookup(&host).cloned();
    let Some(mut entry) = found else {
        shared.global.unrouted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "paas_proxy::access", host = %host, "no app routed at host");
        return Ok(page(StatusCode::NOT_FOUND, NOT_FOUND));
    };

    let access_log = shared.access.load();
    let mut access = access_log.enabled().then(|| AccessRecord {
        log: arc_swap::Guard::into_inner(access_log),
        app: entry.route.app.clone(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        host: raw_host.clone(),
        request_id: None,
        client: ctx.peer.ip(),
        endpoint: None,
        status: 0,
        started,
        service_ms: 0,
        bytes: 0,
        aborted: false,
        note: "",
    });

    let limit = shared.settings.max_body_bytes;
    if let Some(limit) = limit {
        if req.body().size_hint().lower() > limit {
            return Ok(finish(
                &entry,
                access,
                started,
                StatusCode::PAYLOAD_TOO_LARGE,
                TOO_LARGE,
                "body too large",
            ));
        }
    }

    let is_upgrade = req.version() == Version::HTTP_11 && wants_upgrade(req.headers());
    let client_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let upgrade_proto = if is_upgrade {
        parts.headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(&mut parts.headers);
    if let Some(p) = upgrade_proto {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, p);
    }
    let headers = &mut parts.headers;
    headers.remove(&FORWARDED);
    headers.insert(X_FORWARDED_FOR.clone(), ctx.xff.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    match &raw_host {
        Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::clone(&ctx.port));
    let request_id = match headers.get(&X_REQUEST_ID) {
        Some(v) if valid_request_id(v) => v.clone(),
        _ => {
            let id = new_request_id();
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    if let Some(a) = access.as_mut() {
        a.request_id = Some(request_id);
    }

    let body_empty = body.is_end_stream();
    let retryable =
        shared.settings.retry_idempotent && body_empty && !is_upgrade && idempotent(&parts.method);
    let body = if body_empty {
        RequestBody::Empty
    } else {
        RequestBody::Stream {
            inner: body,
            limit,
            seen: 0,
        }
    };
    // Origin-form request target (an absolute-form one from the client loses its authority,
    // which the forwarded headers carry).
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = match parts.uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
    }
    parts.version = Version::HTTP_11;
    let mut up = Box::new(Request::from_parts(parts, body));

    let settings = &shared.settings;
    let mut avoid: Option<Arc<Endpoint>> = None;
    let mut attempt = 0;
    let (mut resp, conn, endpoint, in_flight) = loop {
        let Some((ep, in_flight)) = start_on_endpoint(shared, &host, &mut entry, avoid.as_ref())
        else {
            return Ok(finish(
                &entry,
                access,
                started,
                StatusCode::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                "no healthy endpoint",
            ));
        };
        let sent = if is_upgrade {
            upstream::send_upgrade(&ep, *up, settings.connect_timeout)
                .await
                .map(|r| (r, None))
        } else {
            upstream::send(
                &ep,
                *up,
                settings.connect_timeout,
                settings.pool_idle_timeout,
            )
            .await
            .map(|(r, c)| (r, Some(c)))
        };
        let e = match sent {
            Ok((resp, conn)) => break (resp, conn, ep, in_flight),
            Err(SendError::Connect(e, unsent)) => {
                drop(in_flight);
                entry
                    .metrics
                    .upstream_errors
                    .fetch_add(1, Ordering::Relaxed);
                ep.eject(now_ms() + settings.ejection_time.as_millis() as u64);
                tracing::warn!(app = %entry.route.app, endpoint = %ep.addr, error = %e, "endpoint refused a connection; ejected");
                if retryable && attempt == 0 {
                    attempt += 1;
                    entry.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    avoid = Some(ep);
                    up = unsent;
                    continue;
                }
                if let Some(a) = access.as_mut() {
                    a.endpoint = Some(ep.addr);
                }
                return Ok(finish(
                    &entry,
                    access,
                    started,
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    "connect failed",
                ));
            }
            Err(SendError::Failed(e)) => {
                drop(in_flight);
                entry
                    .metrics
                    .upstream_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(app = %entry.route.app, endpoint = %ep.addr, error = %e, "request to endpoint failed");
                if let Some(a) = access.as_mut() {
                    a.endpoint = Some(ep.addr);
                }
                e
            }
        };
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut too_large = false;
        while let Some(s) = src {
            if s.is::<BodyTooLarge>() {
                too_large = true;
                break;
            }
            src = s.source();
        }
        return Ok(if too_large {
            finish(
                &entry,
                access,
                started,
                StatusCode::PAYLOAD_TOO_LARGE,
                TOO_LARGE,
                "body too large",
            )
        } else {
            finish(
                &entry,
                access,
                started,
                StatusCode::BAD_GATEWAY,
                BAD_GATEWAY,
                "upstream error",
            )
        });
    };

    let status = resp.status();
    entry.metrics.record(status.as_u16(), started.elapsed());
    if let Some(a) = access.as_mut() {
        a.status = status.as_u16();
        a.endpoint = Some(endpoint.addr);
        a.service_ms = started.elapsed().as_millis();
    }

    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            ctx.state.upgraded.store(true, Ordering::Relaxed);
            tokio::spawn(tunnel(
                client_upgrade,
                upstream_upgrade,
                endpoint,
                in_flight,
                access,
            ));
            drop(active);
            let (mut rparts, _) = resp.into_parts();
            for name in [
                &KEEP_ALIVE,
                &PROXY_CONNECTION,
                &header::TE,
                &header::TRAILER,
                &header::TRANSFER_ENCODING,
                &header::CONTENT_LENGTH,
            ] {
                rparts.headers.remove(name);
            }
            return Ok(Response::from_parts(rparts, ProxyBody::empty()));
        }
    }

    let (mut rparts, rbody) = resp.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    rparts.version = Version::HTTP_11;
    let guards = StreamGuards {
        _in_flight: in_flight,
        _active: active,
        access,
    };
    Ok(Response::from_parts(
        rparts,
        ProxyBody::upstream(rbody, guards, conn),
    ))
}

/// Copies bytes both ways between an upgraded client connection and its endpoint, until one
/// side closes or the endpoint's drain timeout passes.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    endpoint: Arc<Endpoint>,
    in_flight: InFlight,
    access: Option<AccessRecord>,
) {
    let _in_flight = in_flight;
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let closing = endpoint.close_tunnels.notified();
    tokio::pin!(closing);
    closing.as_mut().enable();
    let mut bytes = 0;
    if !endpoint.closing.load(Ordering::SeqCst) {
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Ok((_, down)) = r {
                    bytes = down;
                }
            }
            _ = closing => {
                tracing::debug!(endpoint = %endpoint.addr, "closing upgraded connection after drain timeout");
            }
        }
    }
    if let Some(mut a) = access {
        a.bytes = bytes;
        a.emit();
    }
}
