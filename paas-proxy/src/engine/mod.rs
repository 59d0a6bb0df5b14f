//! The data plane: HTTP/1 client connections proxied to pooled upstream connections.
//!
//! Each client connection is one task that reads a request head into a buffer, parses it in
//! place (`httparse`), checks it, routes it, writes the upstream request head (the client's
//! headers minus hop-by-hop ones, plus the forwarded ones) straight from the parsed slices,
//! streams the body both ways following HTTP/1 framing, and copies the response head back the
//! same way. No header map is built, nothing crosses a task boundary, and a small exchange costs
//! one read and one write on each side. While a keep-alive connection is idle it holds no buffer
//! (a few hundred bytes of task state), and the exchange's state is boxed for the time of one
//! request only.
//!
//! Framing is decided here, not forwarded blindly: a request with both `Content-Length` and
//! `Transfer-Encoding`, an invalid or repeated-and-different `Content-Length`, or a transfer
//! coding other than `chunked` gets 400 and the connection is closed; chunked request bodies are
//! checked against the strict grammar of RFC 9112 7.1 (CRLF line ends, well-formed extensions
//! and trailer lines, else 400 and the connection is closed) and re-encoded canonically, so the
//! app, the proxy and any proxy in front always agree on where a request ends (no request
//! smuggling through extensions, bare line feeds or trailers).

mod buffer;
mod chunked;
mod exchange;
mod framing;
mod pages;
mod request;
mod response;
mod tunnel;

use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clock::now_ms;
use crate::shared::{Shared, Stop};
use crate::table::Endpoint;
use crate::upstream;

use buffer::Buf;
use exchange::{
    failed, finish, start_on_endpoint, timed_out, upstream_failed, write_client, Exchange,
    Forwarded,
};
use pages::{CONNECT_FAILED, NO_ENDPOINT};
use request::{prepare, Parsed, Prepared};
use response::forward;

/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so that the last response is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(2);

/// Per-connection constants.
#[derive(Debug)]
pub(crate) struct Client {
    /// The client's address (the port is left out: it is not logged, and an idle
    /// connection's task is kept small).
    pub(crate) peer: IpAddr,
    /// The client is a trusted proxy (`ProxySettings::trusted_proxies`): its forwarded headers
    /// are passed on.
    trusted: bool,
    /// The port the client connected to.
    port: u16,
    /// `x-forwarded-for`, `-proto` and `-port` lines, computed once per connection.
    forwarded: Box<[u8]>,
}

impl Client {
    pub(crate) fn new(peer: SocketAddr, port: u16, trusted: bool) -> Self {
        let forwarded = format!(
            "x-forwarded-for: {}\r\nx-forwarded-proto: http\r\nx-forwarded-port: {port}\r\n",
            peer.ip().to_canonical()
        );
        Client {
            peer: peer.ip().to_canonical(),
            trusted,
            port,
            forwarded: forwarded.into_bytes().into_boxed_slice(),
        }
    }
}

/// What the connection does after an exchange.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    KeepAlive,
    /// Only blank lines came: wait again, as before the exchange.
    Idle,
    /// Close: the request was read whole, nothing more is expected from the client.
    Close,
    /// Close, but the client may still be sending (a refused request, a body not read to its
    /// end): read and drop its bytes for a moment first, so that the answer is not destroyed
    /// by a reset.
    Linger,
}

/// Why an idle connection's wait ended.
enum Wake {
    Readable,
    Stop,
    Timeout,
}

/// Serves one client connection until it closes, times out, or `stop` is set.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    client: Client,
    stop: Arc<Stop>,
) {
    let mut buf = Buf::default();
    let mut first = true;
    let accepted = Instant::now();
    let mut linger = false;
    loop {
        // Blank lines between requests (some clients send CRLF after a body) are ignored.
        buf.skip_blank_lines();
        if buf.is_empty() {
            buf.release();
            if stop.is_set() {
                break;
            }
            let (wait, counter) = if first {
                (
                    shared.settings.header_read_timeout,
                    &shared.global.header_timeouts,
                )
            } else {
                (shared.settings.idle_timeout, &shared.global.idle_timeouts)
            };
            // One hand-written wait (no per-future waiter node for the socket: the reactor's
            // read-readiness slot is enough), so the idle task stays small.
            let sleep = tokio::time::sleep(wait);
            let stopped = stop.wait();
            tokio::pin!(sleep, stopped);
            let woke = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = stream.poll_read_ready(cx) {
                    return Poll::Ready(if r.is_ok() {
                        Wake::Readable
                    } else {
                        Wake::Stop
                    });
                }
                if stopped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Stop);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timeout);
                }
                Poll::Pending
            })
            .await;
            match woke {
                Wake::Readable => {}
                Wake::Stop => break,
                Wake::Timeout => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %client.peer, "closing client connection: {}", if first { "header read timeout" } else { "idle timeout" });
                    break;
                }
            }
        }
        // The header read timeout runs from the first byte of each request head, and for the
        // first request from the connection's start.
        let head_started = if first { accepted } else { Instant::now() };
        let next = Box::pin(exchange(
            &shared,
            &mut stream,
            &mut buf,
            &client,
            &stop,
            head_started,
        ))
        .await;
        if next != Next::Idle {
            first = false;
        }
        match next {
            Next::KeepAlive | Next::Idle => {}
            Next::Close => {
                // Pipelined requests after a `Connection: close` one are dropped: read the
                // rest, as for a refused request, so the answer is not reset away.
                linger = !buf.is_empty();
                break;
            }
            Next::Linger => {
                linger = true;
                break;
            }
        }
    }
    if linger {
        // Boxed: its read buffer would otherwise make every idle connection's task larger.
        Box::pin(close(stream)).await;
    }
}

/// Closes a client connection gracefully: FIN first, then what the client still sends is read
/// and dropped for a moment (closing with unread bytes would reset the connection and could
/// destroy the last response before the client read it).
async fn close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > 1 << 20 {
                break;
            }
        }
    })
    .await;
}

/// One request and its response.
async fn exchange(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut Buf,
    client: &Client,
    stop: &Stop,
    head_started: Instant,
) -> Next {
    let started = Instant::now();
    let settings = &shared.settings;
    let head_deadline = tokio::time::Instant::from_std(head_started + settings.header_read_timeout);
    let (mut prep, head_len) =
        match read_head(shared, stream, buf, client, stop, started, head_deadline).await {
            Ok(head) => head,
            Err(next) => return next,
        };
    buf.consume(head_len);
    let (mut cr, mut cw) = stream.split();

    let mut entry = prep.entry.clone();
    let mut avoid: Option<Arc<Endpoint>> = None;
    let mut connect_retried = false;
    let mut pool_retries = 0;
    loop {
        let Some((ep, in_flight)) =
            start_on_endpoint(shared, &prep.host, &mut entry, avoid.as_ref())
        else {
            return finish(
                &mut cw,
                &entry,
                &mut prep,
                started,
                &NO_ENDPOINT,
                settings.idle_timeout,
            )
            .await;
        };
        let pooled = if pool_retries == 0 {
            ep.pool.take(settings.pool_idle_timeout)
        } else {
            None
        };
        let (up, was_pooled) = match pooled {
            Some(c) => (c, true),
            None => match upstream::connect(ep.addr, settings.connect_timeout).await {
                Ok(c) => (c, false),
                Err(e) => {
                    drop(in_flight);
                    upstream_failed(&entry, &mut prep, ep.addr);
                    ep.eject(now_ms() + settings.ejection_time.as_millis() as u64);
                    tracing::warn!(app = %entry.route.app, endpoint = %ep.addr, error = %e, "endpoint refused a connection; ejected");
                    // Nothing reached the app: any request may go to another endpoint.
                    if settings.retry_idempotent && !connect_retried {
                        connect_retried = true;
                        entry.metrics.retries.fetch_add(1, Ordering::Relaxed);
                        avoid = Some(ep);
                        continue;
                    }
                    return finish(
                        &mut cw,
                        &entry,
                        &mut prep,
                        started,
                        &CONNECT_FAILED,
                        settings.idle_timeout,
                    )
                    .await;
                }
            },
        };
        let ctx = Exchange {
            shared,
            client,
            stop,
            started,
            endpoint: ep,
            entry: entry.clone(),
        };
        match forward(&ctx, &mut cr, &mut cw, buf, up, &mut prep, in_flight).await {
            Forwarded::Done(next) => return next,
            Forwarded::TimedOut => {
                let addr = ctx.endpoint.addr;
                return timed_out(&mut cw, &entry, &mut prep, started, addr, settings).await;
            }
            Forwarded::NoResponse(e) if was_pooled && prep.retryable && pool_retries < 2 => {
                // The app closed the idle connection as the request went out: nothing was
                // answered, and the request is safe to send again.
                tracing::debug!(endpoint = %ctx.endpoint.addr, error = %e, "pooled connection closed; trying a new one");
                pool_retries += 1;
                entry.metrics.retries.fetch_add(1, Ordering::Relaxed);
            }
            Forwarded::NoResponse(e) | Forwarded::BadResponse(e) => {
                let addr = ctx.endpoint.addr;
                let idle = settings.idle_timeout;
                return failed(&mut cw, &entry, &mut prep, started, addr, e, idle).await;
            }
        }
    }
}

/// Reads the request head into `buf` and prepares it (its length is returned, not consumed
/// yet); `Err` with what the connection does next when no request is to be forwarded (the
/// router answered it, or the client sent nothing more, or too slowly).
async fn read_head(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut Buf,
    client: &Client,
    stop: &Stop,
    started: Instant,
    head_deadline: tokio::time::Instant,
) -> Result<(Box<Prepared>, usize), Next> {
    let settings = &shared.settings;
    let (mut cr, mut cw) = stream.split();
    let mut read_any = false;
    // Bytes of the buffer known not to hold the end of a head: a head trickling in is parsed
    // once it is complete (or too large), not again at every read.
    let mut scanned = 0usize;
    loop {
        // Blank lines before a request line are ignored.
        let blank = buf.skip_blank_lines();
        if blank > 0 {
            scanned = 0;
        }
        if buf.is_empty() && read_any && blank > 0 {
            // Nothing but blank lines (some clients send CRLF after a body): the connection
            // is idle again, not inside a request head.
            return Err(Next::Idle);
        }
        let data = buf.pending();
        let ends_head = |from: usize| {
            let tail = &data[from.saturating_sub(2)..];
            tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
        };
        let worth_parsing =
            !data.is_empty() && (data.len() > settings.max_header_bytes || ends_head(scanned));
        scanned = data.len();
        if worth_parsing {
            match prepare(shared, client, buf.pending(), started) {
                Parsed::Ready(p, n) => return Ok((p, n)),
                Parsed::Partial => {}
                Parsed::Refuse(resp) => {
                    let _ = write_client(&mut cw, &resp, settings.idle_timeout).await;
                    return Err(Next::Linger);
                }
                Parsed::Answer(resp, head_len, keep) => {
                    buf.consume(head_len);
                    let sent = write_client(&mut cw, &resp, settings.idle_timeout).await;
                    return Err(if sent.is_ok() && keep && !stop.is_set() {
                        Next::KeepAlive
                    } else {
                        Next::Close
                    });
                }
            }
        }
        match tokio::time::timeout_at(head_deadline, buf.read_from(&mut cr)).await {
            Ok(Ok(n)) if n > 0 => read_any = true,
            Ok(_) => return Err(Next::Close),
            Err(_) => {
                shared
                    .global
                    .header_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %client.peer, "closing client connection: header read timeout");
                return Err(Next::Close);
            }
        }
    }
}

#[cfg(test)]
mod footprint {
    use super::*;
    use crate::settings::ProxySettings;

    /// What an idle keep-alive connection costs is mostly its task's future: keep it small
    /// (the exchange and the closing linger are boxed, buffers are freed while idle).
    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let shared = Arc::new(Shared::new(ProxySettings::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let fut = serve(
            shared,
            stream,
            Client::new(addr, addr.port(), false),
            Arc::new(Stop::default()),
        );
        let size = std::mem::size_of_val(&fut);
        eprintln!("serve future: {size} bytes");
        assert!(size <= 512, "serve future is {size} bytes");
    }
}
