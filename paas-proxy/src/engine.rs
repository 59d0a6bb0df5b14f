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

use std::fmt::Write as _;
use std::future::Future as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::access::AccessRecord;
use crate::router::{Shared, Stop};
use crate::table::{normalize_host, now_ms, parse_port, AppEntry, Endpoint, InFlight};
use crate::upstream::{self, UpstreamConn};

/// Most header lines in a request head.
const MAX_HEADERS: usize = 128;
/// Most header lines in a response head (apps that set many cookies need more than 128).
const MAX_RESPONSE_HEADERS: usize = 256;
/// Bytes asked for by one read.
const READ_CHUNK: usize = 16 * 1024;
/// Read size while relaying a response body: large bodies move in fewer system calls.
const BODY_CHUNK: usize = 64 * 1024;
/// Largest response head accepted from an app.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Longest chunk extension or trailer section accepted in a chunked body.
const MAX_CHUNK_META: usize = 16 * 1024;
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

/// Writes the forwarded headers for a request from a trusted proxy: its `x-forwarded-for`
/// values with the peer appended, and its `x-forwarded-proto`, `-host` and `-port` where valid
/// (else the proxy's own values, as for any client).
fn push_trusted_forwarded(
    up: &mut Vec<u8>,
    client: &Client,
    headers: &[httparse::Header<'_>],
    raw_host: &[u8],
) {
    let mut proto: Option<&[u8]> = None;
    let mut host: Option<&[u8]> = None;
    let mut port: Option<&[u8]> = None;
    up.extend_from_slice(b"x-forwarded-for: ");
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            let v = h.value.trim_ascii();
            if !v.is_empty() {
                up.extend_from_slice(v);
                up.extend_from_slice(b", ");
            }
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            proto = proto.or(Some(h.value.trim_ascii()));
        } else if name.eq_ignore_ascii_case("x-forwarded-host") {
            host = host.or(Some(h.value.trim_ascii()));
        } else if name.eq_ignore_ascii_case("x-forwarded-port") {
            port = port.or(Some(h.value.trim_ascii()));
        }
    }
    let _ = write!(Out(up), "{}\r\n", client.peer);
    let proto: &[u8] = match proto {
        Some(p) if p.eq_ignore_ascii_case(b"https") => b"https",
        _ => b"http",
    };
    up.extend_from_slice(b"x-forwarded-proto: ");
    up.extend_from_slice(proto);
    up.extend_from_slice(b"\r\nx-forwarded-port: ");
    let valid_port = port.filter(|p| parse_port(p).is_some_and(|n| n > 0));
    match valid_port {
        Some(p) => up.extend_from_slice(p),
        None => {
            let _ = write!(Out(up), "{}", client.port);
        }
    }
    up.extend_from_slice(b"\r\nx-forwarded-host: ");
    let host = host
        .filter(|h| normalize_host(h).is_some())
        .unwrap_or(raw_host);
    up.extend_from_slice(host);
    up.extend_from_slice(b"\r\n");
}

/// Bytes read from a socket and not used yet: `data[start..]`.
#[derive(Debug, Default)]
struct Buf {
    data: Vec<u8>,
    start: usize,
}

impl Buf {
    fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    fn is_empty(&self) -> bool {
        self.start == self.data.len()
    }

    fn len(&self) -> usize {
        self.data.len() - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Drops the CR and LF bytes at the front (blank lines between requests); how many.
    fn skip_blank_lines(&mut self) -> usize {
        let n = self
            .pending()
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        self.consume(n);
        n
    }

    /// Frees the memory of an empty buffer (an idle connection keeps none).
    fn release(&mut self) {
        if self.is_empty() {
            self.data = Vec::new();
            self.start = 0;
        }
    }

    /// Makes room for a read of `chunk` bytes.
    fn reserve(&mut self, chunk: usize) {
        if self.start > 0 && self.data.capacity() - self.data.len() < chunk {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.reserve(chunk);
    }

    /// Reads once; the number of bytes read (0 at EOF).
    async fn read_from(&mut self, r: &mut ReadHalf<'_>) -> io::Result<usize> {
        self.reserve(READ_CHUNK);
        r.read_buf(&mut self.data).await
    }

    /// Reads once, up to `BODY_CHUNK` bytes (fewer system calls for large bodies).
    async fn read_body_from(&mut self, r: &mut ReadHalf<'_>) -> io::Result<usize> {
        self.reserve(BODY_CHUNK);
        r.read_buf(&mut self.data).await
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

/// A response made by the router itself.
fn page(status: u16, reason: &str, text: &str, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + text.len());
    let _ = write!(
        Out(&mut out),
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: {}\r\n{}\r\n",
        text.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    out.extend_from_slice(text.as_bytes());
    out
}

/// `fmt::Write` into a byte vector.
struct Out<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

const BAD_ASTERISK: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The request target * is for OPTIONS only.</p>\n";
const NOT_ALLOWED: &str = "<!doctype html><title>Method not allowed</title><h1>Method not allowed</h1><p>CONNECT is not supported.</p>\n";
const NOT_FOUND: &str = "<!doctype html><title>No such app</title><h1>No such app</h1><p>No app is routed at this hostname.</p>\n";
const UNAVAILABLE: &str = "<!doctype html><title>Application unavailable</title><h1>Application unavailable</h1><p>The app has no healthy process right now. Try again shortly.</p>\n";
const TIMED_OUT: &str = "<!doctype html><title>Gateway timeout</title><h1>Gateway timeout</h1><p>The app did not answer in time.</p>\n";
const BAD_GATEWAY: &str =
    "<!doctype html><title>Bad gateway</title><h1>Bad gateway</h1><p>The app did not answer.</p>\n";
const TOO_LARGE: &str = "<!doctype html><title>Payload too large</title><h1>Payload too large</h1><p>The request body is larger than this router accepts.</p>\n";
const AMBIGUOUS: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>A request must not carry both Content-Length and Transfer-Encoding.</p>\n";
const BAD_LENGTH: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>Content-Length must be one decimal number.</p>\n";
const BAD_CODING: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The only transfer coding accepted is chunked, last.</p>\n";
const BAD_HOST: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The request has no valid Host.</p>\n";
const BAD_REQUEST: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The request is not valid HTTP/1.</p>\n";
const BAD_CHUNK: &str = "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>The chunked request body is malformed.</p>\n";
const TOO_LONG_URI: &str = "<!doctype html><title>URI too long</title><h1>URI too long</h1><p>The request line must fit in the header size limit.</p>\n";
const TOO_BIG_HEAD: &str = "<!doctype html><title>Request header fields too large</title><h1>Request header fields too large</h1><p>The request line and headers must fit in the limit.</p>\n";

/// Whether `name` is hop-by-hop (besides those a `Connection` header names).
fn hop_by_hop(name: &str) -> bool {
    const NAMES: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// The `Connection` header tokens of a head, and the flags among them.
#[derive(Default)]
struct ConnTokens<'a> {
    named: Vec<&'a [u8]>,
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

impl<'a> ConnTokens<'a> {
    fn of(headers: &[httparse::Header<'a>]) -> Self {
        let mut t = ConnTokens::default();
        for h in headers {
            if h.name.eq_ignore_ascii_case("connection") {
                for tok in tokens(h.value) {
                    if tok.eq_ignore_ascii_case(b"close") {
                        t.close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        t.keep_alive = true;
                    } else if tok.eq_ignore_ascii_case(b"upgrade") {
                        t.upgrade = true;
                    }
                    t.named.push(tok);
                }
            }
        }
        t
    }

    /// Whether a `Connection` header names `name` (never the framing or host headers, which
    /// the proxy sets itself).
    fn names(&self, name: &str) -> bool {
        !self.named.is_empty()
            && !name.eq_ignore_ascii_case("host")
            && !name.eq_ignore_ascii_case("content-length")
            && self
                .named
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Why a head's framing headers are refused.
enum FramingError {
    Ambiguous,
    BadLength,
    BadCoding,
}

/// The framing a head's `Content-Length` / `Transfer-Encoding` headers give, checked.
fn framing_of(headers: &[httparse::Header<'_>], request: bool) -> Result<Framing, FramingError> {
    let mut length: Option<u64> = None;
    let mut chunked_last = false;
    let mut chunked_seen = false;
    let mut te = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Err(FramingError::BadLength);
            }
            let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            match length {
                Some(prev) if prev != n => return Err(FramingError::BadLength),
                _ => length = Some(n),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            for tok in tokens(h.value) {
                if chunked_last && request {
                    // Chunked applied twice, or another coding after it.
                    return Err(FramingError::BadCoding);
                }
                chunked_last = tok.eq_ignore_ascii_case(b"chunked");
                if chunked_last && chunked_seen {
                    // A sender must not apply chunked twice (RFC 9112 6.1).
                    return Err(FramingError::BadCoding);
                }
                chunked_seen |= chunked_last;
                if request && !chunked_last {
                    return Err(FramingError::BadCoding);
                }
            }
        }
    }
    match (te, length) {
        (true, Some(_)) if request => Err(FramingError::Ambiguous),
        (true, _) if chunked_last => Ok(Framing::Chunked),
        (true, _) if request => Err(FramingError::BadCoding),
        // A response with another final coding ends when the connection does.
        (true, _) => Ok(Framing::Close),
        (false, Some(0)) => Ok(Framing::None),
        (false, Some(n)) => Ok(Framing::Length(n)),
        (false, None) if request => Ok(Framing::None),
        (false, None) => Ok(Framing::Close),
    }
}

/// Whether header name `a` is `b` (lowercase, dashes) in any case and with `_` for `-` (some
/// frameworks map both spellings to the same name).
fn same_header_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let x = if *x == b'_' {
                b'-'
            } else {
                x.to_ascii_lowercase()
            };
            x == *y
        })
}

/// Other headers that frameworks read the client's address from (`X-Real-IP`,
/// `True-Client-IP`, `X-Client-IP`, `Client-IP`, `CF-Connecting-IP`, `Fastly-Client-IP`,
/// `X-Cluster-Client-IP`, `X-Forwarded`, also spelled with underscores): passed on only from
/// trusted proxies. The name's length picks the candidates, and a comparison stops at the first
/// byte that differs, so most names cost one length match at most.
fn client_address_header(name: &str) -> bool {
    let n = name.as_bytes();
    let candidates: &[&[u8]] = match n.len() {
        9 => &[b"x-real-ip", b"client-ip"],
        11 => &[b"x-client-ip", b"x-forwarded"],
        14 => &[b"true-client-ip"],
        16 => &[b"cf-connecting-ip", b"fastly-client-ip"],
        19 => &[b"x-cluster-client-ip"],
        _ => return false,
    };
    candidates.iter().any(|c| same_header_name(n, c))
}

/// `Content-Length` or `Transfer-Encoding`, also spelled with underscores (`Content_Length`):
/// the framing headers are set by the proxy itself, and the underscore spellings are never
/// passed on (from any client), since app servers that fold `_` into `-` (CGI, WSGI, Rack,
/// PHP) would take them for framing headers the proxy never checked.
fn framing_header(name: &str) -> bool {
    let n = name.as_bytes();
    match n.len() {
        14 => same_header_name(n, b"content-length"),
        17 => same_header_name(n, b"transfer-encoding"),
        _ => false,
    }
}

/// `Forwarded` and `X-Forwarded-*`, also spelled with underscores: only the proxy sets them.
fn forwarded_family(name: &str) -> bool {
    let n = name.as_bytes();
    same_header_name(n, b"forwarded")
        || (n.len() > 12 && same_header_name(&n[..12], b"x-forwarded-"))
}

fn idempotent(m: &str) -> bool {
    matches!(m, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

fn valid_request_id(b: &[u8]) -> bool {
    (1..=200).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic())
}

fn push_request_id(out: &mut Vec<u8>) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    out.extend_from_slice(b"x-request-id: ");
    let at = out.len();
    for _ in 0..32 {
        out.push(HEX[(n & 0xf) as usize]);
        n >>= 4;
    }
    out.extend_from_slice(b"\r\n");
    at
}

/// A parsed, checked and routed request, with the head to send upstream.
struct Prepared {
    entry: Arc<AppEntry>,
    host: String,
    up_head: Vec<u8>,
    body: Framing,
    client_keep_alive: bool,
    http10: bool,
    is_head: bool,
    retryable: bool,
    /// The protocols an upgrade request asked for (its `Upgrade` value).
    upgrade: Option<Box<[u8]>>,
    access: Option<AccessRecord>,
}

/// What parsing the buffered bytes gave.
enum Parsed {
    /// More bytes are needed.
    Partial,
    /// Answer this and close the connection.
    Refuse(Vec<u8>),
    /// Answer this to a request without a body (head length given), then keep the connection
    /// if the flag says so.
    Answer(Vec<u8>, usize, bool),
    Ready(Box<Prepared>, usize),
}

fn refuse(status: u16, reason: &str, text: &str) -> Parsed {
    Parsed::Refuse(page(status, reason, text, true))
}

/// The answer to a request head over the limit: 414 when the request line alone is, else 431.
fn too_big(data: &[u8], limit: usize) -> Parsed {
    let line = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    if line > limit {
        refuse(414, "URI Too Long", TOO_LONG_URI)
    } else {
        refuse(431, "Request Header Fields Too Large", TOO_BIG_HEAD)
    }
}

/// Parses and prepares the request at the front of `data`.
fn prepare(shared: &Shared, client: &Client, data: &[u8], started: Instant) -> Parsed {
    // Left uninitialized: httparse writes the headers it finds (no 4 KiB fill per request).
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(data, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if data.len() > shared.settings.max_header_bytes {
                too_big(data, shared.settings.max_header_bytes)
            } else {
                Parsed::Partial
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return refuse(431, "Request Header Fields Too Large", TOO_BIG_HEAD)
        }
        Err(_) => return refuse(400, "Bad Request", BAD_REQUEST),
    };
    if head_len > shared.settings.max_header_bytes {
        return too_big(data, shared.settings.max_header_bytes);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return refuse(400, "Bad Request", BAD_REQUEST);
    };
    let headers = req.headers;
    if method == "CONNECT" {
        // A reverse proxy tunnels nothing.
        return refuse(405, "Method Not Allowed", NOT_ALLOWED);
    }
    let body = match framing_of(headers, true) {
        Ok(f) => f,
        Err(e) => {
            shared
                .global
                .rejected_framing
                .fetch_add(1, Ordering::Relaxed);
            return match e {
                FramingError::Ambiguous => refuse(400, "Bad Request", AMBIGUOUS),
                FramingError::BadLength => refuse(400, "Bad Request", BAD_LENGTH),
                FramingError::BadCoding => refuse(400, "Bad Request", BAD_CODING),
            };
        }
    };
    if version == 0 && body == Framing::Chunked {
        return refuse(400, "Bad Request", BAD_CODING);
    }

    // `*` (asterisk-form) exists for OPTIONS only (RFC 9112 3.2.4).
    if target == "*" && method != "OPTIONS" {
        return refuse(400, "Bad Request", BAD_ASTERISK);
    }
    // The request target: origin-form, `*`, or absolute-form (whose authority is the host).
    let (path, authority) = if target.starts_with('/') || target == "*" {
        (target, None)
    } else {
        let lower = target.get(..8).unwrap_or("").to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return refuse(400, "Bad Request", BAD_REQUEST);
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        (&rest[end..], Some(&rest[..end]))
    };
    let mut host_header: Option<&[u8]> = None;
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            if host_header.is_some() {
                return refuse(400, "Bad Request", BAD_HOST);
            }
            host_header = Some(h.value);
        }
    }
    let raw_host: &[u8] = match (authority, host_header) {
        (Some(a), _) => a.as_bytes(),
        (None, Some(h)) => h,
        (None, None) => return refuse(400, "Bad Request", BAD_HOST),
    };
    let Some(host) = normalize_host(raw_host) else {
        return refuse(400, "Bad Request", BAD_HOST);
    };
    let conn = ConnTokens::of(headers);
    let client_keep_alive = if version == 0 {
        conn.keep_alive && !conn.close
    } else {
        !conn.close
    };
    let answer = |status: u16, reason: &str, text: &str| {
        // Without a body to skip, the connection can stay.
        if body == Framing::None {
            Parsed::Answer(
                page(status, reason, text, !client_keep_alive),
                head_len,
                client_keep_alive,
            )
        } else {
            refuse(status, reason, text)
        }
    };
    let found = shared.table.load().lookup(&host).cloned();
    let Some(entry) = found else {
        shared.global.unrouted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "paas_proxy::access", host = %host, "no app routed at host");
        return answer(404, "Not Found", NOT_FOUND);
    };
    let access_log = shared.access.load();
    let mut access = access_log.enabled().then(|| AccessRecord {
        log: arc_swap::Guard::into_inner(access_log),
        app: entry.route.app.clone(),
        method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
        path: path.chars().take(512).collect(),
        host: Some(String::from_utf8_lossy(raw_host).into_owned()),
        request_id: None,
        client: client.peer,
        endpoint: None,
        status: 0,
        started,
        service_ms: 0,
        bytes: 0,
        aborted: false,
        note: "",
    });
    if let (Some(limit), Framing::Length(n)) = (shared.settings.max_body_bytes, body) {
        if n > limit {
            entry.metrics.record(413, started.elapsed());
            if let Some(mut a) = access {
                a.status = 413;
                a.note = "body too large";
                a.emit();
            }
            return refuse(413, "Payload Too Large", TOO_LARGE);
        }
    }
    let upgrade = version == 1 && conn.upgrade;
    // `h2c` is not passed on: an app that speaks HTTP/2 over the upgraded connection would be
    // out of the proxy's sight (a known way to smuggle requests past a proxy's rules).
    let upgrade_proto = if upgrade {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
            .map(|h| h.value)
            .filter(|v| !tokens(v).any(|t| t.eq_ignore_ascii_case(b"h2c")))
    } else {
        None
    };
    let upgrade = upgrade_proto.map(Box::<[u8]>::from);

    // The upstream head, written from the parsed slices.
    let mut up = Vec::with_capacity(head_len + 256);
    up.extend_from_slice(method.as_bytes());
    up.push(b' ');
    if !path.starts_with('/') && path != "*" {
        // Absolute-form without a path (`http://host` or `http://host?q`).
        up.push(b'/');
    }
    up.extend_from_slice(path.as_bytes());
    up.extend_from_slice(b" HTTP/1.1\r\n");
    let mut request_id_at = None;
    for h in headers.iter() {
        let name = h.name;
        if hop_by_hop(name)
            || conn.names(name)
            || framing_header(name)
            || forwarded_family(name)
            || (!client.trusted && client_address_header(name))
            || (authority.is_some() && name.eq_ignore_ascii_case("host"))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("x-request-id") {
            if request_id_at.is_some() || !valid_request_id(h.value) {
                continue;
            }
            request_id_at = Some((up.len() + name.len() + 2, h.value.len()));
        }
        up.extend_from_slice(name.as_bytes());
        up.extend_from_slice(b": ");
        up.extend_from_slice(h.value);
        up.extend_from_slice(b"\r\n");
    }
    if authority.is_some() {
        up.extend_from_slice(b"host: ");
        up.extend_from_slice(raw_host);
        up.extend_from_slice(b"\r\n");
    }
    match body {
        Framing::Length(n) => {
            let _ = write!(Out(&mut up), "content-length: {n}\r\n");
        }
        Framing::Chunked => up.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {
            if headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("content-length"))
            {
                up.extend_from_slice(b"content-length: 0\r\n");
            }
        }
        Framing::Close => {}
    }
    if let Some(p) = upgrade_proto {
        up.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        up.extend_from_slice(p);
        up.extend_from_slice(b"\r\n");
    }
    if client.trusted {
        push_trusted_forwarded(&mut up, client, headers, raw_host);
    } else {
        up.extend_from_slice(&client.forwarded);
        up.extend_from_slice(b"x-forwarded-host: ");
        up.extend_from_slice(raw_host);
        up.extend_from_slice(b"\r\n");
    }
    let (id_at, id_len) = match request_id_at {
        Some(at) => at,
        None => (push_request_id(&mut up), 32),
    };
    up.extend_from_slice(b"\r\n");
    if let Some(a) = access.as_mut() {
        a.request_id = Some(String::from_utf8_lossy(&up[id_at..id_at + id_len]).into_owned());
    }
    Parsed::Ready(
        Box::new(Prepared {
            entry,
            host: host.into_owned(),
            up_head: up,
            body,
            client_keep_alive,
            http10: version == 0,
            is_head: method == "HEAD",
            retryable: shared.settings.retry_idempotent
                && body == Framing::None
                && upgrade.is_none()
                && idempotent(method),
            upgrade,
            access,
        }),
        head_len,
    )
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

/// Writes `data` to the client; a client that stops reading for the idle timeout is cut.
async fn write_client(w: &mut WriteHalf<'_>, data: &[u8], idle: Duration) -> io::Result<()> {
    match tokio::time::timeout(idle, w.write_all(data)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading",
        )),
    }
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
    let (mut cr, mut cw) = stream.split();

    // The head.
    let mut read_any = false;
    // Bytes of the buffer known not to hold the end of a head: a head trickling in is parsed
    // once it is complete (or too large), not again at every read.
    let mut scanned = 0usize;
    let (mut prep, head_len) = loop {
        // Blank lines before a request line are ignored.
        let blank = buf.skip_blank_lines();
        if blank > 0 {
            scanned = 0;
        }
        if buf.is_empty() && read_any && blank > 0 {
            // Nothing but blank lines (some clients send CRLF after a body): the connection
            // is idle again, not inside a request head.
            return Next::Idle;
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
                Parsed::Ready(p, n) => break (p, n),
                Parsed::Partial => {}
                Parsed::Refuse(resp) => {
                    let _ = write_client(&mut cw, &resp, settings.idle_timeout).await;
                    return Next::Linger;
                }
                Parsed::Answer(resp, head_len, keep) => {
                    buf.consume(head_len);
                    let sent = write_client(&mut cw, &resp, settings.idle_timeout).await;
                    return if sent.is_ok() && keep && !stop.is_set() {
                        Next::KeepAlive
                    } else {
                        Next::Close
                    };
                }
            }
        }
        match tokio::time::timeout_at(head_deadline, buf.read_from(&mut cr)).await {
            Ok(Ok(n)) if n > 0 => read_any = true,
            Ok(_) => return Next::Close,
            Err(_) => {
                shared
                    .global
                    .header_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %client.peer, "closing client connection: header read timeout");
                return Next::Close;
            }
        }
    };
    buf.consume(head_len);

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
                upstream_failed(&entry, &mut prep, ctx.endpoint.addr);
                tracing::warn!(app = %entry.route.app, endpoint = %ctx.endpoint.addr, timeout = ?settings.response_timeout, "endpoint did not answer in time");
                // The request may still be running in the app: the connection is not reused.
                prep.client_keep_alive = false;
                finish(
                    &mut cw,
                    &entry,
                    &mut prep,
                    started,
                    &RESPONSE_TIMEOUT,
                    settings.idle_timeout,
                )
                .await;
                return if prep.body == Framing::None {
                    Next::Close
                } else {
                    Next::Linger
                };
            }
            Forwarded::NoResponse(e) if was_pooled && prep.retryable && pool_retries < 2 => {
                // The app closed the idle connection as the request went out: nothing was
                // answered, and the request is safe to send again.
                tracing::debug!(endpoint = %ctx.endpoint.addr, error = %e, "pooled connection closed; trying a new one");
                pool_retries += 1;
                entry.metrics.retries.fetch_add(1, Ordering::Relaxed);
            }
            Forwarded::NoResponse(e) | Forwarded::BadResponse(e) => {
                upstream_failed(&entry, &mut prep, ctx.endpoint.addr);
                tracing::warn!(app = %entry.route.app, endpoint = %ctx.endpoint.addr, error = %e, "request to endpoint failed");
                let close_after = prep.body != Framing::None;
                if close_after {
                    prep.client_keep_alive = false;
                }
                let next = finish(
                    &mut cw,
                    &entry,
                    &mut prep,
                    started,
                    &UPSTREAM_ERROR,
                    settings.idle_timeout,
                )
                .await;
                return if close_after { Next::Linger } else { next };
            }
        }
    }
}

/// An answer the router makes itself for an app's request.
struct Answer {
    status: u16,
    reason: &'static str,
    text: &'static str,
    /// Why, for the access line.
    note: &'static str,
}

const NO_ENDPOINT: Answer = Answer {
    status: 503,
    reason: "Service Unavailable",
    text: UNAVAILABLE,
    note: "no healthy endpoint",
};
const CONNECT_FAILED: Answer = Answer {
    note: "connect failed",
    ..NO_ENDPOINT
};
const RESPONSE_TIMEOUT: Answer = Answer {
    status: 504,
    reason: "Gateway Timeout",
    text: TIMED_OUT,
    note: "response timeout",
};
const UPSTREAM_ERROR: Answer = Answer {
    status: 502,
    reason: "Bad Gateway",
    text: BAD_GATEWAY,
    note: "upstream error",
};
const BODY_TOO_LARGE: Answer = Answer {
    status: 413,
    reason: "Payload Too Large",
    text: TOO_LARGE,
    note: "body too large",
};
const BODY_MALFORMED: Answer = Answer {
    status: 400,
    reason: "Bad Request",
    text: BAD_CHUNK,
    note: "malformed chunked body",
};

/// Counts a failed exchange with an endpoint and notes the endpoint for the access line.
fn upstream_failed(entry: &AppEntry, prep: &mut Prepared, endpoint: SocketAddr) {
    entry
        .metrics
        .upstream_errors
        .fetch_add(1, Ordering::Relaxed);
    if let Some(a) = prep.access.as_mut() {
        a.endpoint = Some(endpoint);
    }
}

/// Sends an answer made by the router for an app's request (counted and logged).
async fn finish(
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

/// What one exchange with an endpoint knows.
struct Exchange<'a> {
    shared: &'a Shared,
    client: &'a Client,
    stop: &'a Stop,
    started: Instant,
    endpoint: Arc<Endpoint>,
    entry: Arc<AppEntry>,
}

/// How forwarding a request to one endpoint ended.
enum Forwarded {
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

/// Decodes a chunked body incrementally.
///
/// Request bodies are held to the grammar of RFC 9112 7.1: every line ends with CRLF, a chunk
/// extension is `BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ]`, and a trailer line
/// is a field name (a token), a colon and a value of visible characters, spaces and tabs. Any
/// other byte (a bare LF, a control character, junk after the size, a trailer line without a
/// colon) makes the body malformed, so that a proxy in front, which may read such bytes
/// differently, never disagrees with this one on where the body ends. Response bodies
/// (`Chunked::lenient`) are read as before: bare LFs accepted, extensions and trailers skipped
/// unchecked.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
    /// Bytes of the current chunk's extensions, or of the trailer section.
    meta: usize,
    /// Bytes of the current trailer line (lenient decoding).
    line: usize,
    /// Bare LFs accepted, extensions and trailers not checked (response bodies).
    lenient: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Lenient: the rest of a chunk-size line, skipped.
    Ext,
    /// Whitespace after the size or an extension: a `;` must follow.
    ExtWs,
    /// After a `;`: whitespace, then an extension name.
    ExtNameStart,
    ExtName,
    /// Whitespace after an extension name: `=` or `;` must follow.
    ExtNameWs,
    /// After `=`: whitespace, then a token or a quoted string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    /// After a backslash in a quoted string.
    ExtQuotedPair,
    /// After the closing quote of a quoted string.
    ExtQuotedEnd,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// Lenient: the trailer section, skipped.
    Trailer,
    /// The start of a trailer line, or of the CRLF ending the body.
    TrailerLine,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// The LF ending the body.
    EndLf,
    Done,
}

/// A chunked body broke the rules.
#[derive(Debug)]
struct BadChunk;

/// A `tchar` of RFC 9110 5.6.2 (the bytes of a token: header names, extension names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, a visible character or obs-text: what a field value or a quoted string may hold
/// (no control character).
fn is_text(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

impl Chunked {
    /// A decoder for response bodies: bare LFs accepted, extensions and trailers skipped.
    fn lenient() -> Self {
        Chunked {
            lenient: true,
            ..Chunked::default()
        }
    }

    /// Feeds `input`; data bytes go to `on_data`. Returns how many bytes were consumed (the
    /// body ends there once `done()`).
    fn feed(&mut self, input: &[u8], mut on_data: impl FnMut(&[u8])) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Done => return Ok(i),
                ChunkState::Data(left) => {
                    let n = ((input.len() - i) as u64).min(left) as usize;
                    on_data(&input[i..i + n]);
                    i += n;
                    self.state = if n as u64 == left {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left - n as u64)
                    };
                    continue;
                }
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(BadChunk);
                        }
                        self.size = self.size * 16 + (b as char).to_digit(16).unwrap_or(0) as u64;
                    }
                    b'\r' if self.digits > 0 => self.state = ChunkState::SizeLf,
                    b';' | b' ' | b'\t' if self.digits > 0 && self.lenient => {
                        self.state = ChunkState::Ext
                    }
                    b'\n' if self.digits > 0 && self.lenient => self.end_size_line(),
                    b';' if self.digits > 0 => self.state = ChunkState::ExtNameStart,
                    b' ' | b'\t' if self.digits > 0 => self.state = ChunkState::ExtWs,
                    _ => return Err(BadChunk),
                },
                ChunkState::Ext => match b {
                    b'\n' => self.end_size_line(),
                    _ => self.count_meta()?,
                },
                ChunkState::SizeLf => match b {
                    b'\n' => self.end_size_line(),
                    _ => return Err(BadChunk),
                },
                ChunkState::DataCr => match b {
                    b'\r' => self.state = ChunkState::DataLf,
                    b'\n' if self.lenient => self.next_chunk(),
                    _ => return Err(BadChunk),
                },
                ChunkState::DataLf => match b {
                    b'\n' => self.next_chunk(),
                    _ => return Err(BadChunk),
                },
                ChunkState::Trailer => {
                    self.count_meta()?;
                    match b {
                        b'\n' if self.line == 0 => {
                            self.state = ChunkState::Done;
                            return Ok(i + 1);
                        }
                        b'\n' => self.line = 0,
                        b'\r' => {}
                        _ => self.line += 1,
                    }
                }
                state => {
                    self.count_meta()?;
                    self.state = strict_step(state, b)?;
                    if self.state == ChunkState::Done {
                        return Ok(i + 1);
                    }
                }
            }
            i += 1;
        }
        Ok(i)
    }

    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Counts a byte of extensions or trailers against `MAX_CHUNK_META`.
    fn count_meta(&mut self) -> Result<(), BadChunk> {
        self.meta += 1;
        if self.meta > MAX_CHUNK_META {
            return Err(BadChunk);
        }
        Ok(())
    }

    fn end_size_line(&mut self) {
        self.state = if self.size > 0 {
            ChunkState::Data(self.size)
        } else if self.lenient {
            self.line = 0;
            ChunkState::Trailer
        } else {
            ChunkState::TrailerLine
        };
    }

    fn next_chunk(&mut self) {
        self.meta = 0;
        self.size = 0;
        self.digits = 0;
        self.state = ChunkState::Size;
    }
}

/// The next state after byte `b` of a chunk extension or of the trailer section, checked
/// against RFC 9112 7.1 (`chunk-ext`, `trailer-section`).
fn strict_step(state: ChunkState, b: u8) -> Result<ChunkState, BadChunk> {
    use ChunkState::*;
    Ok(match (state, b) {
        (ExtWs | ExtNameStart, b' ' | b'\t') => state,
        (ExtWs | ExtName | ExtNameWs | ExtToken | ExtQuotedEnd, b';') => ExtNameStart,
        (ExtNameStart | ExtName, _) if is_tchar(b) => ExtName,
        (ExtName | ExtNameWs, b' ' | b'\t') => ExtNameWs,
        (ExtName | ExtNameWs, b'=') => ExtValueStart,
        (ExtValueStart, b' ' | b'\t') => ExtValueStart,
        (ExtValueStart, b'"') => ExtQuoted,
        (ExtValueStart | ExtToken, _) if is_tchar(b) => ExtToken,
        (ExtToken | ExtQuotedEnd, b' ' | b'\t') => ExtWs,
        (ExtName | ExtToken | ExtQuotedEnd, b'\r') => SizeLf,
        (ExtQuoted, b'"') => ExtQuotedEnd,
        (ExtQuoted, b'\\') => ExtQuotedPair,
        (ExtQuoted | ExtQuotedPair, _) if is_text(b) => ExtQuoted,
        (TrailerLine, b'\r') => EndLf,
        (TrailerLine | TrailerName, _) if is_tchar(b) => TrailerName,
        (TrailerName, b':') => TrailerValue,
        (TrailerValue, b'\r') => TrailerLf,
        (TrailerValue, _) if is_text(b) => TrailerValue,
        (TrailerLf, b'\n') => TrailerLine,
        (EndLf, b'\n') => Done,
        _ => return Err(BadChunk),
    })
}

/// The state of a request body on its way upstream.
enum ReqBody {
    Length(u64),
    Chunked { dec: Chunked, seen: u64 },
    Done,
}

/// Why a request body could not be forwarded.
enum PumpError {
    TooLarge,
    BadChunk,
    Client(io::Error),
    Upstream(io::Error),
}

/// Moves what `buf` holds of the request body into `out` (re-encoded when chunked).
fn take_body(
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
async fn pump(
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
async fn forward(
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
    let mut body = match prep.body {
        Framing::Length(n) => ReqBody::Length(n),
        Framing::Chunked => ReqBody::Chunked {
            dec: Chunked::default(),
            seen: 0,
        },
        _ => ReqBody::Done,
    };
    // The head and whatever part of the body is already here, in one write.
    let mut out = std::mem::take(&mut prep.up_head);
    let head_len = out.len();
    let taken = take_body(&mut body, buf, &mut out, limit);
    let (mut ur, mut uw) = up.stream.split();
    if let Err(e) = taken {
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
    if let Err(e) = written {
        // Only a request without a body is retried: keep its head.
        out.truncate(head_len);
        prep.up_head = out;
        return Forwarded::NoResponse(e);
    }
    out.truncate(head_len);
    prep.up_head = out;

    let mut rbuf = Buf::default();
    let relay_interim = !prep.http10;
    let mut body_complete = matches!(body, ReqBody::Done);
    // The body streams up while the response head is awaited (and, if the app answers early,
    // while the response streams down): an app may answer before it has read the whole body.
    let mut pumping =
        (!body_complete).then(|| Box::pin(pump(cr, buf, &mut uw, &mut body, limit, idle)));
    let waited = {
        let heading = read_response_head(&mut ur, &mut rbuf, cw, relay_interim, idle);
        // The response timeout runs once the request is sent whole (an upload may take
        // longer; a stalled one is cut by the pump's idle timeouts).
        let deadline = tokio::time::sleep(settings.response_timeout);
        tokio::pin!(heading, deadline);
        loop {
            let Some(p) = pumping.as_mut() else {
                break tokio::select! {
                    biased;
                    h = &mut heading => Ok(Ok(h)),
                    _ = &mut deadline => Ok(Err(())),
                };
            };
            tokio::select! {
                biased;
                h = &mut heading => break Ok(Ok(h)),
                r = p => {
                    pumping = None;
                    deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + settings.response_timeout);
                    match r {
                        Ok(()) => body_complete = true,
                        Err(PumpError::Upstream(e)) => {
                            // The app may have answered and closed: read its response.
                            tracing::debug!(endpoint = %x.endpoint.addr, error = %e, "request body not fully sent");
                        }
                        Err(e) => break Err(e),
                    }
                }
            }
        }
    };
    let head = match waited {
        Ok(Ok(h)) => h,
        Ok(Err(_)) => {
            drop(pumping);
            drop(in_flight);
            return Forwarded::TimedOut;
        }
        Err(e) => {
            drop(pumping);
            drop(in_flight);
            return Forwarded::Done(body_refused(x, cw, prep, e).await);
        }
    };
    let (head, mut client_head) = match head {
        Ok(h) => h,
        Err(e) => {
            drop(pumping);
            drop(in_flight);
            // Only a connection that ended before any byte came back is a stale one whose
            // request may be sent again; anything else was an answer, even if invalid.
            return if e.kind() == io::ErrorKind::ConnectionAborted {
                Forwarded::NoResponse(e)
            } else {
                Forwarded::BadResponse(e)
            };
        }
    };
    rbuf.consume(head.len);
    let status = head.status;
    if status == 101 {
        // The app may only switch to a protocol the client asked for (RFC 9110 7.8).
        let asked = prep.upgrade.as_deref();
        let allowed = match (asked, head.upgrade_to.as_deref()) {
            (Some(asked), Some(to)) => {
                let name = |t: &[u8]| t.split(|b| *b == b'/').next().unwrap_or(t).to_vec();
                let offered: Vec<Vec<u8>> = tokens(asked).map(name).collect();
                tokens(to).all(|t| offered.iter().any(|o| o.eq_ignore_ascii_case(&name(t))))
            }
            _ => false,
        };
        if !allowed {
            drop(pumping);
            drop(in_flight);
            return Forwarded::BadResponse(io::Error::other(
                "101 switching to a protocol the client did not ask for",
            ));
        }
    }
    x.entry.metrics.record(status, x.started.elapsed());
    if let Some(a) = prep.access.as_mut() {
        a.status = status;
        a.endpoint = Some(x.endpoint.addr);
        a.service_ms = x.started.elapsed().as_millis();
    }

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
    // Whether the body is complete is known now unless the app answered early (then the
    // connection closes: the rest of the body is forwarded but not awaited).
    let client_keep = keep_if_done && pumping.is_none() && body_complete;
    if !client_keep {
        client_head.extend_from_slice(b"connection: close\r\n");
    } else if prep.http10 {
        client_head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    client_head.extend_from_slice(b"\r\n");

    let relay = relay_body(cw, &mut ur, &mut rbuf, framing, dechunk, client_head, idle);
    let relayed = match pumping.as_mut() {
        None => relay.await,
        Some(p) => {
            tokio::pin!(relay);
            let mut pump_done = false;
            loop {
                tokio::select! {
                    biased;
                    r = &mut relay => break r,
                    r = &mut *p, if !pump_done => {
                        pump_done = true;
                        body_complete = r.is_ok();
                    }
                }
            }
        }
    };
    drop(pumping);
    drop(in_flight);
    if let Some(mut a) = prep.access.take() {
        a.bytes = relayed.sent;
        a.aborted = !relayed.complete;
        a.emit();
    }
    if !relayed.complete {
        return Forwarded::Done(if body_complete {
            Next::Close
        } else {
            Next::Linger
        });
    }
    // A body the app declared for a HEAD/204/304 answer is not read: if the app sends one
    // anyway (a common bug, and it may come a moment later), the bytes would be taken for the
    // next response, another client's. Not reused (nginx does reuse; the cost is a new
    // connection for such answers).
    let skipped_body =
        framing == Framing::None && matches!(head.framing, Framing::Length(_) | Framing::Chunked);
    let reusable = head.keep_alive && framing != Framing::Close && !skipped_body;
    if reusable && body_complete && rbuf.is_empty() && !x.endpoint.removed.load(Ordering::Relaxed) {
        x.endpoint.pool.put(up);
    }
    Forwarded::Done(if client_keep {
        Next::KeepAlive
    } else if body_complete {
        Next::Close
    } else {
        Next::Linger
    })
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

/// How a tunnel ended, for the access log.
struct TunnelEnd {
    /// Bytes sent to the client after the `101` head.
    bytes: u64,
    /// Why the proxy closed it, when it did (empty when the peers closed it).
    note: &'static str,
}

/// Copies bytes both ways between an upgraded client connection and its endpoint, until both
/// sides close, or the tunnel stays silent both ways for `tunnel_idle_timeout` (once one side
/// has closed, for the shorter of that and `idle`: a peer that vanished without a FIN would
/// otherwise hold the tunnel forever), or the endpoint's drain timeout passes.
async fn tunnel(
    cr: &mut ReadHalf<'_>,
    cw: &mut WriteHalf<'_>,
    ur: &mut ReadHalf<'_>,
    uw: &mut WriteHalf<'_>,
    early: &[u8],
    x: &Exchange<'_>,
    idle: Duration,
) -> TunnelEnd {
    let endpoint = &x.endpoint;
    let drained = TunnelEnd {
        bytes: 0,
        note: "closed after drain timeout",
    };
    if !early.is_empty() && uw.write_all(early).await.is_err() {
        return TunnelEnd { bytes: 0, note: "" };
    }
    let closing = endpoint.close_tunnels.notified();
    tokio::pin!(closing);
    closing.as_mut().enable();
    if endpoint.closing.load(Ordering::SeqCst) {
        return drained;
    }
    // Milliseconds from `start` to the last bytes read or written on either side.
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (up_bytes, down_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let up_copy = async {
        copy_marking(cr, uw, &last, start, &up_bytes).await;
        let _ = uw.shutdown().await;
    };
    let down_copy = async {
        copy_marking(ur, cw, &last, start, &down_bytes).await;
        let _ = cw.shutdown().await;
    };
    let silent_for = x.shared.settings.tunnel_idle_timeout;
    let silence = |limit: Duration| {
        let last = &last;
        async move {
            loop {
                let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + limit;
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep_until(deadline.into()).await;
            }
        }
    };
    let end = |note: &'static str| TunnelEnd {
        bytes: down_bytes.load(Ordering::Relaxed),
        note,
    };
    tokio::pin!(up_copy, down_copy);
    let mut up_done = false;
    tokio::select! {
        _ = &mut up_copy => up_done = true,
        _ = &mut down_copy => {}
        _ = &mut closing => {
            tracing::debug!(endpoint = %endpoint.addr, "closing upgraded connection after drain timeout");
            return end(drained.note);
        }
        _ = silence(silent_for) => {
            x.shared.global.tunnel_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(endpoint = %endpoint.addr, "closing upgraded connection: silent both ways for {silent_for:?}");
            return end("closed after idle timeout");
        }
    }
    // One side is done; the other goes on while it stays busy.
    let rest = async {
        if up_done {
            down_copy.await
        } else {
            up_copy.await
        }
    };
    let limit = silent_for.min(idle);
    tokio::select! {
        _ = rest => end(""),
        _ = &mut closing => end(drained.note),
        _ = silence(limit) => {
            x.shared.global.tunnel_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(endpoint = %endpoint.addr, "closing half-closed upgraded connection: silent for {limit:?}");
            end("closed after idle timeout")
        }
    }
}

/// Copies `r` to `w` until `r` ends or either fails, noting in `last` when bytes were last
/// read or written (milliseconds since `start`) and adding the bytes written to `copied`.
async fn copy_marking(
    r: &mut ReadHalf<'_>,
    w: &mut WriteHalf<'_>,
    last: &AtomicU64,
    start: Instant,
    copied: &AtomicU64,
) {
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        // Progress on writes counts too: a tunnel whose reader is slow is not silent.
        let mut done = 0;
        while done < n {
            match w.write(&buf[done..n]).await {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    done += k;
                    copied.fetch_add(k as u64, Ordering::Relaxed);
                }
            }
            last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_with(mut d: Chunked, parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), BadChunk> {
        let mut data = Vec::new();
        let mut used = 0;
        for p in parts {
            used += d.feed(p, |b| data.extend_from_slice(b))?;
            if d.done() {
                break;
            }
        }
        Ok((data, used, d.done()))
    }

    /// Decodes a request body (strict).
    fn decode(parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), BadChunk> {
        decode_with(Chunked::default(), parts)
    }

    /// Decodes a request body fed one byte at a time.
    fn decode_bytewise(msg: &[u8]) -> Result<(Vec<u8>, usize, bool), BadChunk> {
        let parts: Vec<&[u8]> = msg.chunks(1).collect();
        decode(&parts)
    }

    #[test]
    fn chunked_bodies_decode_split_anywhere() {
        let msg: &[u8] = b"5;x=y\r\nhello\r\n10 ; a ; b = \"q\\\"x\" ;c=d\r\n0123456789abcdef\r\n3\r\nabc\r\n0;last\r\nX-T: 1\r\nEmpty:\r\nTab:\tv a l\t\r\n\r\nGET / HTTP/1.1\r\n";
        let body_len = msg.len() - b"GET / HTTP/1.1\r\n".len();
        for split in 0..msg.len() {
            let (data, used, done) = decode(&[&msg[..split], &msg[split..]]).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(data, b"hello0123456789abcdefabc", "split at {split}");
            assert_eq!(
                used, body_len,
                "split at {split}: the next request is left alone"
            );
        }
        let (data, used, done) = decode_bytewise(msg).unwrap();
        assert!(done);
        assert_eq!(
            (data.as_slice(), used),
            (&b"hello0123456789abcdefabc"[..], body_len)
        );
    }

    #[test]
    fn response_bodies_are_decoded_leniently() {
        let msg: &[u8] =
            b"5;x=y\r\nhello\r\n10 junk\r\n0123456789abcdef\r\n3\nabc\n0\r\nX-T 1\r\n\r\nnext";
        let body_len = msg.len() - b"next".len();
        for split in 0..msg.len() {
            let (data, used, done) =
                decode_with(Chunked::lenient(), &[&msg[..split], &msg[split..]]).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(data, b"hello0123456789abcdefabc", "split at {split}");
            assert_eq!(used, body_len, "split at {split}");
        }
        assert!(
            decode(&[msg]).is_err(),
            "a request body is held to RFC 9112"
        );
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\rX",
            b"1111111111111111\r\n",
            // Bare LFs.
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5;a=b\nhello\r\n0\r\n\r\n",
            b"0\n\r\n",
            b"0\r\n\n",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\nX-T: 1\r\n\n",
            // Control characters in extensions.
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"5;a=b\x01\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\x7f\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\rc\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\\\x00\"\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            // Junk after the size that is not an extension.
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;=b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a b\r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"unterminated\r\nhello\r\n0\r\n\r\n",
            b"5;a=b;\r\nhello\r\n0\r\n\r\n",
            b"5;a@b\r\nhello\r\n0\r\n\r\n",
            b"0 x\r\n\r\n",
            // Malformed trailer lines.
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nBad Name: x\r\n\r\n",
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nX-T: 1\r\n continued\r\n\r\n",
            b"0\r\nX(T): 1\r\n\r\n",
            b"0\r\nX-T: a\x00b\r\n\r\n",
            b"0\r\nX-T: a\rb\r\n\r\n",
            b"0\r\n\rX",
        ] {
            let shown = String::from_utf8_lossy(bad);
            assert!(decode(&[bad]).is_err(), "{shown:?}");
            assert!(decode_bytewise(bad).is_err(), "byte by byte: {shown:?}");
        }
    }

    #[test]
    fn long_chunk_extensions_and_trailers_are_refused() {
        let mut ext = b"1;a=".to_vec();
        ext.resize(MAX_CHUNK_META + 8, b'x');
        ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(decode(&[&ext]).is_err());
        let mut trailer = b"0\r\nX-T: ".to_vec();
        trailer.resize(MAX_CHUNK_META + 8, b'x');
        trailer.extend_from_slice(b"\r\n\r\n");
        assert!(decode(&[&trailer]).is_err());
    }

    #[test]
    fn framing_and_client_address_header_names() {
        for name in [
            "Content-Length",
            "content_length",
            "Content_Length",
            "Transfer-Encoding",
            "TRANSFER_ENCODING",
            "Transfer_encoding",
        ] {
            assert!(framing_header(name), "{name}");
        }
        for name in ["Content-Type", "Content_Lengths", "Sec-Fetch-Mode", "te"] {
            assert!(!framing_header(name), "{name}");
        }
        for name in [
            "X-Real-IP",
            "x_real_ip",
            "True-Client-IP",
            "X-Client-IP",
            "X_Client_IP",
            "Client-IP",
            "client_ip",
            "CF-Connecting-IP",
            "Cf_Connecting_Ip",
            "Fastly-Client-IP",
            "X-Cluster-Client-IP",
            "X_CLUSTER_CLIENT_IP",
            "X-Forwarded",
            "x_forwarded",
        ] {
            assert!(client_address_header(name), "{name}");
        }
        for name in [
            "X-Forwarded-For",
            "X-Forwardedx",
            "X-Client-IPs",
            "Client-IP-Hint",
            "Sec-Fetch-Mode",
            "User-Agent",
            "Host",
        ] {
            assert!(!client_address_header(name), "{name}");
        }
    }

    fn head(lines: &[(&'static str, &'static str)]) -> Vec<httparse::Header<'static>> {
        lines
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn request_framing_rules() {
        let ok = |h: &[(&'static str, &'static str)]| framing_of(&head(h), true).ok();
        assert_eq!(ok(&[]), Some(Framing::None));
        assert_eq!(ok(&[("Content-Length", "12")]), Some(Framing::Length(12)));
        assert_eq!(
            ok(&[("content-length", "3"), ("Content-Length", "3")]),
            Some(Framing::Length(3))
        );
        assert_eq!(
            ok(&[("Transfer-Encoding", "chunked")]),
            Some(Framing::Chunked)
        );
        for bad in [
            &[("content-length", "3"), ("content-length", "4")][..],
            &[("content-length", "3, 3")],
            &[("content-length", "+3")],
            &[("content-length", "")],
            &[("content-length", "99999999999999999999")],
            &[("transfer-encoding", "gzip")],
            &[("transfer-encoding", "chunked, gzip")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
        ] {
            assert!(ok(bad).is_none(), "{bad:?}");
        }
        // Responses: a final coding other than chunked is read until the connection ends.
        let resp = |h: &[(&'static str, &'static str)]| framing_of(&head(h), false).ok();
        assert_eq!(resp(&[]), Some(Framing::Close));
        assert_eq!(resp(&[("transfer-encoding", "gzip")]), Some(Framing::Close));
        assert_eq!(
            resp(&[("transfer-encoding", "gzip, chunked")]),
            Some(Framing::Chunked)
        );
    }
}

#[cfg(test)]
mod footprint {
    use super::*;

    /// What an idle keep-alive connection costs is mostly its task's future: keep it small
    /// (the exchange and the closing linger are boxed, buffers are freed while idle).
    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let router = crate::ProxyRouter::new(crate::ProxySettings::default()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let fut = serve(
            router.shared.clone(),
            stream,
            Client::new(addr, addr.port(), false),
            Arc::new(Stop::default()),
        );
        let size = std::mem::size_of_val(&fut);
        eprintln!("serve future: {size} bytes");
        assert!(size <= 512, "serve future is {size} bytes");
    }
}
