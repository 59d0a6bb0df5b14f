//! One exchange with an endpoint: picking it, the router's answers for the app's requests,
//! and the request body pumped upstream.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{ReadHalf, WriteHalf};

use crate::settings::ProxySettings;
use crate::shared::{Shared, Stop};
use crate::table::{AppEntry, Endpoint, InFlight};

use super::buffer::Buf;
use super::chunked::Chunked;
use super::framing::Framing;
use super::pages::{page, Answer, Out, RESPONSE_TIMEOUT, UPSTREAM_ERROR};
use super::request::Prepared;
use super::{Client, Next};

/// Takes an in-flight slot on an endpoint of the app, picking again from a fresh table if the
/// chosen endpoint was removed meanwhile.
pub(super) fn start_on_endpoint(
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

/// Writes `data` to the client; a client that stops reading for the idle timeout is cut.
pub(super) async fn write_client(
    w: &mut WriteHalf<'_>,
    data: &[u8],
    idle: Duration,
) -> io::Result<()> {
    match tokio::time::timeout(idle, w.write_all(data)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading",
        )),
    }
}

/// Counts a failed exchange with an endpoint and notes the endpoint for the access line.
pub(super) fn upstream_failed(entry: &AppEntry, prep: &mut Prepared, endpoint: SocketAddr) {
    entry
        .metrics
        .upstream_errors
        .fetch_add(1, Ordering::Relaxed);
    if let Some(a) = prep.access.as_mut() {
        a.endpoint = Some(endpoint);
    }
}

/// Sends an answer made by the router for an app's request (counted and logged).
pub(super) async fn finish(
    cw: &mut WriteHalf<'_>,
    entry: &AppEntry,
    prep: &mut Prepared,
    started: Instant,
    answer: &Answer,
    idle: Duration,
) -> Next {
    entry.metrics.record(answer.status, started.elapsed());
    if let Some(mut a) = prep.access.take() {
        a.status = answer.status;
        a.note = answer.note;
        a.bytes = answer.text.len() as u64;
        a.emit();
    }
    let keep = prep.client_keep_alive && prep.body == Framing::None;
    let resp = page(answer.status, answer.reason, answer.text, !keep);
    if prep.body != Framing::None {
        let _ = write_client(cw, &resp, idle).await;
        Next::Linger
    } else if write_client(cw, &resp, idle).await.is_err() || !keep {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Answers a request the endpoint did not answer within the response timeout (504).
pub(super) async fn timed_out(
    cw: &mut WriteHalf<'_>,
    entry: &AppEntry,
    prep: &mut Prepared,
    started: Instant,
    endpoint: SocketAddr,
    settings: &ProxySettings,
) -> Next {
    upstream_failed(entry, prep, endpoint);
    tracing::warn!(app = %entry.route.app, endpoint = %endpoint, timeout = ?settings.response_timeout, "endpoint did not answer in time");
    // The request may still be running in the app: the connection is not reused.
    prep.client_keep_alive = false;
    finish(
        cw,
        entry,
        prep,
        started,
        &RESPONSE_TIMEOUT,
        settings.idle_timeout,
    )
    .await;
    if prep.body == Framing::None {
        Next::Close
    } else {
        Next::Linger
    }
}

/// Answers a request the endpoint failed before any of its response reached the client (502).
pub(super) async fn failed(
    cw: &mut WriteHalf<'_>,
    entry: &AppEntry,
    prep: &mut Prepared,
    started: Instant,
    endpoint: SocketAddr,
    e: io::Error,
    idle: Duration,
) -> Next {
    upstream_failed(entry, prep, endpoint);
    tracing::warn!(app = %entry.route.app, endpoint = %endpoint, error = %e, "request to endpoint failed");
    let close_after = prep.body != Framing::None;
    if close_after {
        prep.client_keep_alive = false;
    }
    let next = finish(cw, entry, prep, started, &UPSTREAM_ERROR, idle).await;
    if close_after {
        Next::Linger
    } else {
        next
    }
}

/// What one exchange with an endpoint knows.
pub(super) struct Exchange<'a> {
    pub(super) shared: &'a Shared,
    pub(super) client: &'a Client,
    pub(super) stop: &'a Stop,
    pub(super) started: Instant,
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) entry: Arc<AppEntry>,
}

/// How forwarding a request to one endpoint ended.
pub(super) enum Forwarded {
    /// The exchange is over (answered, or failed after the response started).
    Done(Next),
    /// The endpoint gave no response at all (nothing was answered to the client yet).
    NoResponse(io::Error),
    /// The endpoint answered something that is not a valid response (nothing was relayed to
    /// the client yet besides interim responses); the request is not sent again.
    BadResponse(io::Error),
    /// The endpoint did not answer within the response timeout.
    TimedOut,
}

/// The state of a request body on its way upstream.
pub(super) enum ReqBody {
    Length(u64),
    Chunked { dec: Chunked, seen: u64 },
    Done,
}

impl ReqBody {
    /// The state of a request body with this framing before any of it is forwarded.
    pub(super) fn new(framing: Framing) -> Self {
        match framing {
            Framing::Length(n) => ReqBody::Length(n),
            Framing::Chunked => ReqBody::Chunked {
                dec: Chunked::default(),
                seen: 0,
            },
            _ => ReqBody::Done,
        }
    }
}

/// Why a request body could not be forwarded.
pub(super) enum PumpError {
    TooLarge,
    BadChunk,
    Client(io::Error),
    Upstream(io::Error),
}

/// Moves what `buf` holds of the request body into `out` (re-encoded when chunked).
pub(super) fn take_body(
    body: &mut ReqBody,
    buf: &mut Buf,
    out: &mut Vec<u8>,
    limit: Option<u64>,
) -> Result<(), PumpError> {
    match body {
        ReqBody::Done => {}
        ReqBody::Length(left) => {
            let n = (buf.len() as u64).min(*left) as usize;
            out.extend_from_slice(&buf.pending()[..n]);
            buf.consume(n);
            *left -= n as u64;
            if *left == 0 {
                *body = ReqBody::Done;
            }
        }
        ReqBody::Chunked { dec, seen } => {
            let mut total = *seen;
            let n = dec
                .feed(buf.pending(), |data| {
                    total += data.len() as u64;
                    let _ = write!(Out(out), "{:x}\r\n", data.len());
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                })
                .map_err(|_| PumpError::BadChunk)?;
            buf.consume(n);
            *seen = total;
            if limit.is_some_and(|l| total > l) {
                return Err(PumpError::TooLarge);
            }
            if dec.done() {
                out.extend_from_slice(b"0\r\n\r\n");
                *body = ReqBody::Done;
            }
        }
    }
    Ok(())
}

/// Forwards the rest of the request body from the client to the endpoint.
pub(super) async fn pump(
    cr: &mut ReadHalf<'_>,
    buf: &mut Buf,
    uw: &mut WriteHalf<'_>,
    body: &mut ReqBody,
    limit: Option<u64>,
    idle: Duration,
) -> Result<(), PumpError> {
    let mut out = Vec::new();
    loop {
        out.clear();
        take_body(body, buf, &mut out, limit)?;
        if !out.is_empty() {
            match tokio::time::timeout(idle, uw.write_all(&out)).await {
                Ok(r) => r.map_err(PumpError::Upstream)?,
                Err(_) => {
                    return Err(PumpError::Upstream(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the app stopped reading the request body",
                    )))
                }
            }
        }
        if matches!(body, ReqBody::Done) {
            return Ok(());
        }
        match tokio::time::timeout(idle, buf.read_from(cr)).await {
            Ok(Ok(0)) => {
                return Err(PumpError::Client(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed during the request body",
                )))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(PumpError::Client(e)),
            Err(_) => {
                return Err(PumpError::Client(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request body stalled",
                )))
            }
        }
    }
}
