//! Response relay: the request sent to an endpoint, the response head read and rewritten for
//! the client, and the response body relayed.

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{ReadHalf, WriteHalf};

use crate::table::InFlight;
use crate::upstream::UpstreamConn;

use super::buffer::Buf;
use super::chunked::Chunked;
use super::exchange::{
    finish, pump, take_body, write_client, Exchange, Forwarded, PumpError, ReqBody,
};
use super::framing::{framing_of, hop_by_hop, tokens, ConnTokens, Framing};
use super::pages::{Out, BODY_MALFORMED, BODY_TOO_LARGE, UPSTREAM_ERROR};
use super::request::Prepared;
use super::tunnel::tunnel;
use super::Next;

/// Most header lines in a response head (apps that set many cookies need more than 128).
const MAX_RESPONSE_HEADERS: usize = 256;

/// Largest response head accepted from an app.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A parsed final response head.
struct RespHead {
    status: u16,
    len: usize,
    framing: Framing,
    /// HTTP/1.1 without `Connection: close`: the endpoint keeps the connection open after a
    /// response whose end it can mark.
    keep_alive: bool,
    /// A chunked response's `Transfer-Encoding` when it has codings besides chunked (`gzip,
    /// chunked`): the client is told about them.
    codings: Option<Vec<u8>>,
    /// A 101's `Upgrade` value: the protocols the app switches to.
    upgrade_to: Option<Vec<u8>>,
}

/// Reads the response head into `rbuf`, relaying interim (1xx) responses to the client.
async fn read_response_head(
    ur: &mut ReadHalf<'_>,
    rbuf: &mut Buf,
    cw: &mut WriteHalf<'_>,
    relay_interim: bool,
    idle: Duration,
) -> Result<(RespHead, Vec<u8>), io::Error> {
    let mut got_any = false;
    loop {
        if !rbuf.is_empty() {
            match parse_response(rbuf.pending())? {
                Some((head, mut client_head))
                    if (100..200).contains(&head.status) && head.status != 101 =>
                {
                    if relay_interim {
                        client_head.extend_from_slice(b"\r\n");
                        write_client(cw, &client_head, idle).await?;
                    }
                    rbuf.consume(head.len);
                    got_any = true;
                    continue;
                }
                Some(pair) => return Ok(pair),
                None => {
                    if rbuf.len() > MAX_RESPONSE_HEAD {
                        return Err(io::Error::other("response head too large"));
                    }
                }
            }
        }
        let n = match rbuf.read_from(ur).await {
            Ok(n) => n,
            Err(e) if rbuf.is_empty() && !got_any => {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, e))
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("response cut short: {e}"),
                ))
            }
        };
        if n == 0 {
            return Err(if rbuf.is_empty() && !got_any {
                io::Error::new(io::ErrorKind::ConnectionAborted, "no response")
            } else {
                io::Error::new(io::ErrorKind::UnexpectedEof, "response head cut short")
            });
        }
    }
}

/// Parses a response head; `None` when incomplete. Also returns the head for the client: the
/// status line and headers minus hop-by-hop ones (framing and `Connection` are added later).
fn parse_response(data: &[u8]) -> io::Result<Option<(RespHead, Vec<u8>)>> {
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        data,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let status = resp.code.unwrap_or(502);
    let version = resp.version.unwrap_or(1);
    let headers = resp.headers;
    let conn = ConnTokens::of(headers);
    let framing = framing_of(headers, false)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad response framing"))?;
    let codings = (framing == Framing::Chunked)
        .then(|| {
            let mut all = Vec::new();
            for h in headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
            {
                for t in tokens(h.value) {
                    if !all.is_empty() {
                        all.extend_from_slice(b", ");
                    }
                    all.extend_from_slice(t);
                }
            }
            all
        })
        .filter(|all| !all.eq_ignore_ascii_case(b"chunked"));
    let mut out = Vec::with_capacity(len + 64);
    out.extend_from_slice(b"HTTP/1.1 ");
    let _ = write!(Out(&mut out), "{status} ");
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let upgrade = status == 101;
    let has_te = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    // A response with a transfer coding, or one that never has a body (1xx, 204), passes no
    // Content-Length on (RFC 9112 6.3, RFC 9110 8.6).
    let drop_length = has_te || status < 200 || status == 204;
    for h in headers.iter() {
        let name = h.name;
        let keep = if upgrade {
            name.eq_ignore_ascii_case("upgrade")
                || !(hop_by_hop(name) || name.eq_ignore_ascii_case("content-length"))
        } else {
            // A coding other than chunked stays visible to the client (the body is relayed
            // as is, until the connection ends).
            (framing == Framing::Close
                && status != 204
                && name.eq_ignore_ascii_case("transfer-encoding"))
                || !(hop_by_hop(name)
                    || conn.names(name)
                    || (drop_length && name.eq_ignore_ascii_case("content-length")))
        };
        if keep {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    Ok(Some((
        RespHead {
            status,
            len,
            framing,
            keep_alive: version == 1 && !conn.close,
            codings,
            upgrade_to: upgrade
                .then(|| {
                    headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
                        .map(|h| h.value.to_vec())
                })
                .flatten(),
        },
        out,
    )))
}

/// Sends the prepared request to the endpoint on `up` and relays the response.
pub(super) async fn forward(
    x: &Exchange<'_>,
    cr: &mut ReadHalf<'_>,
    cw: &mut WriteHalf<'_>,
    buf: &mut Buf,
    mut up: UpstreamConn,
    prep: &mut Prepared,
    in_flight: InFlight,
) -> Forwarded {
    let settings = &x.shared.settings;
    let idle = settings.idle_timeout;
    let limit = settings.max_body_bytes;
    let mut body = ReqBody::new(prep.body);
    let (mut ur, mut uw) = up.stream.split();
    // The head and whatever part of the body is already here, in one write.
    let mut out = std::mem::take(&mut prep.up_head);
    let head_len = out.len();
    if let Err(e) = take_body(&mut body, buf, &mut out, limit) {
        drop(in_flight);
        return Forwarded::Done(body_refused(x, cw, prep, e).await);
    }
    let written = match tokio::time::timeout(idle, uw.write_all(&out)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the app does not read the request",
        )),
    };
    // Only a request without a body is retried: keep its head.
    out.truncate(head_len);
    prep.up_head = out;
    if let Err(e) = written {
        return Forwarded::NoResponse(e);
    }

    let mut rbuf = Buf::default();
    let mut body_complete = matches!(body, ReqBody::Done);
    // The body streams up while the response head is awaited (and, if the app answers early,
    // while the response streams down): an app may answer before it has read the whole body.
    let mut pumping =
        (!body_complete).then(|| Box::pin(pump(cr, buf, &mut uw, &mut body, limit, idle)));
    let relay_interim = !prep.http10;
    let waited = await_head(
        x,
        &mut ur,
        &mut rbuf,
        cw,
        relay_interim,
        &mut pumping,
        &mut body_complete,
    );
    let (head, mut client_head) = match waited.await {
        Ok(h) => h,
        Err(e) => {
            drop(pumping);
            drop(in_flight);
            return match e {
                NoHead::Failed(e) => no_head(e),
                NoHead::TimedOut => Forwarded::TimedOut,
                NoHead::Body(e) => Forwarded::Done(body_refused(x, cw, prep, e).await),
            };
        }
    };
    rbuf.consume(head.len);
    let status = head.status;
    if let Some(e) = bad_upgrade(prep, &head) {
        drop(pumping);
        drop(in_flight);
        return Forwarded::BadResponse(e);
    }
    record_response(x, prep, status);

    if status == 101 {
        drop(pumping);
        client_head.extend_from_slice(b"\r\n");
        // Bytes the endpoint sent right after its `101` head go out with it.
        let tunnelled_early = rbuf.pending().len() as u64;
        client_head.extend_from_slice(rbuf.pending());
        if write_client(cw, &client_head, idle).await.is_err() {
            return Forwarded::Done(Next::Close);
        }
        let early = buf.pending().to_vec();
        buf.consume(buf.len());
        let end = tunnel(cr, cw, &mut ur, &mut uw, &early, x, idle).await;
        drop(in_flight);
        if let Some(mut a) = prep.access.take() {
            a.bytes = tunnelled_early + end.bytes;
            a.note = end.note;
            a.emit();
        }
        return Forwarded::Done(Next::Close);
    }

    // Whether the body is complete is known now unless the app answered early (then the
    // connection closes: the rest of the body is forwarded but not awaited).
    let body_sent = pumping.is_none() && body_complete;
    let (framing, dechunk, client_keep) =
        end_client_head(x, prep, &head, &mut client_head, body_sent);
    let relayed = {
        // Pinned here, not moved into the helper (the relay's state is large).
        let relay = relay_body(cw, &mut ur, &mut rbuf, framing, dechunk, client_head, idle);
        tokio::pin!(relay);
        relay_while_pumping(relay, &mut pumping, &mut body_complete).await
    };
    drop(pumping);
    drop(in_flight);
    if let Some(mut a) = prep.access.take() {
        a.bytes = relayed.sent;
        a.aborted = !relayed.complete;
        a.emit();
    }
    if relayed.complete {
        park(x, up, &head, framing, body_complete && rbuf.is_empty());
    }
    Forwarded::Done(if relayed.complete && client_keep {
        Next::KeepAlive
    } else if body_complete {
        Next::Close
    } else {
        Next::Linger
    })
}

/// Why no response head came.
enum NoHead {
    /// Reading it failed.
    Failed(io::Error),
    /// The endpoint did not answer within the response timeout.
    TimedOut,
    /// The request body could not be forwarded.
    Body(PumpError),
}

/// The response head, read while the rest of the request body (if any) is pumped up.
async fn await_head<F>(
    x: &Exchange<'_>,
    ur: &mut ReadHalf<'_>,
    rbuf: &mut Buf,
    cw: &mut WriteHalf<'_>,
    relay_interim: bool,
    pumping: &mut Option<Pin<Box<F>>>,
    body_complete: &mut bool,
) -> Result<(RespHead, Vec<u8>), NoHead>
where
    F: Future<Output = Result<(), PumpError>>,
{
    let settings = &x.shared.settings;
    let heading = read_response_head(ur, rbuf, cw, relay_interim, settings.idle_timeout);
    // The response timeout runs once the request is sent whole (an upload may take
    // longer; a stalled one is cut by the pump's idle timeouts).
    let deadline = tokio::time::sleep(settings.response_timeout);
    tokio::pin!(heading, deadline);
    loop {
        let Some(p) = pumping.as_mut() else {
            break tokio::select! {
                biased;
                h = &mut heading => h.map_err(NoHead::Failed),
                _ = &mut deadline => Err(NoHead::TimedOut),
            };
        };
        tokio::select! {
            biased;
            h = &mut heading => break h.map_err(NoHead::Failed),
            r = p => {
                *pumping = None;
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + settings.response_timeout);
                match r {
                    Ok(()) => *body_complete = true,
                    Err(PumpError::Upstream(e)) => {
                        // The app may have answered and closed: read its response.
                        tracing::debug!(endpoint = %x.endpoint.addr, error = %e, "request body not fully sent");
                    }
                    Err(e) => break Err(NoHead::Body(e)),
                }
            }
        }
    }
}

/// How an exchange whose response head could not be read ended.
fn no_head(e: io::Error) -> Forwarded {
    // Only a connection that ended before any byte came back is a stale one whose
    // request may be sent again; anything else was an answer, even if invalid.
    if e.kind() == io::ErrorKind::ConnectionAborted {
        Forwarded::NoResponse(e)
    } else {
        Forwarded::BadResponse(e)
    }
}

/// Counts the status of the endpoint's answer and notes it for the access line.
#[inline(always)]
fn record_response(x: &Exchange<'_>, prep: &mut Prepared, status: u16) {
    x.entry.metrics.record(status, x.started.elapsed());
    if let Some(a) = prep.access.as_mut() {
        a.status = status;
        a.endpoint = Some(x.endpoint.addr);
        a.service_ms = x.started.elapsed().as_millis();
    }
}

/// The error of a `101` that switches to a protocol the client did not ask for.
#[inline(always)]
fn bad_upgrade(prep: &Prepared, head: &RespHead) -> Option<io::Error> {
    // The app may only switch to a protocol the client asked for (RFC 9110 7.8).
    (head.status == 101 && !upgrade_allowed(prep.upgrade.as_deref(), head.upgrade_to.as_deref()))
        .then(|| io::Error::other("101 switching to a protocol the client did not ask for"))
}

/// Whether the protocols a `101` switches to were all asked for by the client.
fn upgrade_allowed(asked: Option<&[u8]>, to: Option<&[u8]>) -> bool {
    match (asked, to) {
        (Some(asked), Some(to)) => {
            let name = |t: &[u8]| t.split(|b| *b == b'/').next().unwrap_or(t).to_vec();
            let offered: Vec<Vec<u8>> = tokens(asked).map(name).collect();
            tokens(to).all(|t| offered.iter().any(|o| o.eq_ignore_ascii_case(&name(t))))
        }
        _ => false,
    }
}

/// Ends the response head for the client with the framing and `connection` headers; the
/// framing towards the client, whether a chunked body is decoded (HTTP/1.0 client), and
/// whether the client connection is kept (`body_sent`: the request body was forwarded whole
/// before the response came).
#[inline(always)]
fn end_client_head(
    x: &Exchange<'_>,
    prep: &Prepared,
    head: &RespHead,
    client_head: &mut Vec<u8>,
    body_sent: bool,
) -> (Framing, bool, bool) {
    let status = head.status;
    // Framing towards the client.
    let framing = if prep.is_head || status == 204 || status == 304 {
        Framing::None
    } else {
        head.framing
    };
    let dechunk = framing == Framing::Chunked && prep.http10;
    // A HEAD answer carries the headers a GET would get, `Transfer-Encoding` included (RFC
    // 9110 9.3.2), though no body follows.
    let head_of_chunked = prep.is_head
        && head.framing == Framing::Chunked
        && !prep.http10
        && status != 204
        && status != 304;
    if (framing == Framing::Chunked && !dechunk) || head_of_chunked {
        client_head.extend_from_slice(b"transfer-encoding: ");
        client_head.extend_from_slice(head.codings.as_deref().unwrap_or(b"chunked"));
        client_head.extend_from_slice(b"\r\n");
    }
    let keep_if_done =
        prep.client_keep_alive && !x.stop.is_set() && framing != Framing::Close && !dechunk;
    let client_keep = keep_if_done && body_sent;
    if !client_keep {
        client_head.extend_from_slice(b"connection: close\r\n");
    } else if prep.http10 {
        client_head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    client_head.extend_from_slice(b"\r\n");
    (framing, dechunk, client_keep)
}

/// Relays the response body; a request body still on its way up goes on meanwhile
/// (`body_complete` tells whether it got there whole).
async fn relay_while_pumping<R, F>(
    mut relay: Pin<&mut R>,
    pumping: &mut Option<Pin<Box<F>>>,
    body_complete: &mut bool,
) -> Relayed
where
    R: Future<Output = Relayed>,
    F: Future<Output = Result<(), PumpError>>,
{
    match pumping.as_mut() {
        None => relay.await,
        Some(p) => {
            let mut pump_done = false;
            loop {
                tokio::select! {
                    biased;
                    r = &mut relay => break r,
                    r = &mut *p, if !pump_done => {
                        pump_done = true;
                        *body_complete = r.is_ok();
                    }
                }
            }
        }
    }
}

/// Parks the upstream connection in the endpoint's pool after a complete exchange, if it can
/// carry another one (`drained`: the request body was sent whole and nothing unread came
/// after the response).
#[inline(always)]
fn park(x: &Exchange<'_>, up: UpstreamConn, head: &RespHead, framing: Framing, drained: bool) {
    // A body the app declared for a HEAD/204/304 answer is not read: if the app sends one
    // anyway (a common bug, and it may come a moment later), the bytes would be taken for the
    // next response, another client's. Not reused (nginx does reuse; the cost is a new
    // connection for such answers).
    let skipped_body =
        framing == Framing::None && matches!(head.framing, Framing::Length(_) | Framing::Chunked);
    let reusable = head.keep_alive && framing != Framing::Close && !skipped_body;
    if reusable && drained && !x.endpoint.removed.load(Ordering::Relaxed) {
        x.endpoint.pool.put(up);
    }
}

/// How relaying a response body went.
struct Relayed {
    /// Body bytes sent to the client.
    sent: u64,
    /// The whole body was relayed.
    complete: bool,
}

/// Sends `out` (the response head) and the response body to the client, following `framing`;
/// the body's first bytes may already be in `rbuf`. An endpoint silent for `idle` mid-body is
/// given up on.
async fn relay_body(
    cw: &mut WriteHalf<'_>,
    ur: &mut ReadHalf<'_>,
    rbuf: &mut Buf,
    framing: Framing,
    dechunk: bool,
    mut out: Vec<u8>,
    idle: Duration,
) -> Relayed {
    let mut sent = 0u64;
    let mut dec = Chunked::lenient();
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    loop {
        let mut complete = false;
        let mut failed = false;
        match framing {
            Framing::None => complete = true,
            Framing::Length(_) => {
                let n = (rbuf.len() as u64).min(left) as usize;
                if out.is_empty() && n > 0 {
                    // Past the head: straight from the read buffer, no copy.
                    if write_client(cw, &rbuf.pending()[..n], idle).await.is_err() {
                        failed = true;
                    }
                } else {
                    out.extend_from_slice(&rbuf.pending()[..n]);
                }
                rbuf.consume(n);
                left -= n as u64;
                sent += n as u64;
                complete = left == 0;
            }
            Framing::Chunked => {
                let data = rbuf.pending();
                let r = if dechunk {
                    let mut s = 0u64;
                    let r = dec.feed(data, |d| {
                        out.extend_from_slice(d);
                        s += d.len() as u64;
                    });
                    sent += s;
                    r
                } else {
                    // Re-encoded canonically, like request bodies: a client (or a proxy in
                    // front) never has to agree with this decoder's leniency.
                    let mut s = 0u64;
                    let r = dec.feed(data, |d| {
                        let _ = write!(Out(&mut out), "{:x}\r\n", d.len());
                        out.extend_from_slice(d);
                        out.extend_from_slice(b"\r\n");
                        s += d.len() as u64;
                    });
                    sent += s;
                    if dec.done() {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    r
                };
                match r {
                    Ok(n) => rbuf.consume(n),
                    Err(_) => failed = true,
                }
                complete = dec.done();
            }
            Framing::Close => {
                sent += rbuf.len() as u64;
                if out.is_empty() && !rbuf.is_empty() {
                    if write_client(cw, rbuf.pending(), idle).await.is_err() {
                        failed = true;
                    }
                } else {
                    out.extend_from_slice(rbuf.pending());
                }
                rbuf.consume(rbuf.len());
            }
        }
        if !out.is_empty() {
            if write_client(cw, &out, idle).await.is_err() {
                failed = true;
            }
            out.clear();
        }
        if complete || failed {
            return Relayed {
                sent,
                complete: complete && !failed,
            };
        }
        match tokio::time::timeout(idle, rbuf.read_body_from(ur)).await {
            Ok(Ok(0)) => {
                return Relayed {
                    sent,
                    complete: framing == Framing::Close,
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => {
                return Relayed {
                    sent,
                    complete: false,
                }
            }
        }
    }
}

/// Answers a request whose body was refused or lost (the connection closes).
async fn body_refused(
    x: &Exchange<'_>,
    cw: &mut WriteHalf<'_>,
    prep: &mut Prepared,
    e: PumpError,
) -> Next {
    let idle = x.shared.settings.idle_timeout;
    let answer = match e {
        PumpError::TooLarge => &BODY_TOO_LARGE,
        PumpError::BadChunk => &BODY_MALFORMED,
        PumpError::Client(e) => {
            tracing::debug!(peer = %x.client.peer, error = %e, "client request body ended early");
            x.entry.metrics.record(400, x.started.elapsed());
            if let Some(mut a) = prep.access.take() {
                a.status = 400;
                a.aborted = true;
                a.note = "client closed";
                a.emit();
            }
            return Next::Linger;
        }
        PumpError::Upstream(_) => &UPSTREAM_ERROR,
    };
    prep.client_keep_alive = false;
    finish(cw, &x.entry, prep, x.started, answer, idle).await;
    Next::Linger
}
