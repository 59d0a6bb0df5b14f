//! The client connection: a TCP stream wrapper that follows HTTP/1 message framing on the
//! bytes hyper reads, to (1) flag requests that carry both `Content-Length` and
//! `Transfer-Encoding` (hyper would accept them; we answer 400 and close), (2) enforce the
//! header read timeout from the first byte of each request head, and (3) close keep-alive
//! connections idle for longer than the idle timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::proxy::ConnCtx;

/// State shared by a connection's stream wrapper and its request handler.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// Index of the first request whose head had ambiguous framing (`u64::MAX`: none).
    pub(crate) first_bad: AtomicU64,
    /// Set once the connection was upgraded: bytes are no longer HTTP/1.
    pub(crate) upgraded: AtomicBool,
    /// Requests whose response is not finished.
    pub(crate) active: AtomicUsize,
    /// Requests seen by the handler.
    pub(crate) requests: AtomicU64,
    /// `now_ms` when the last response finished.
    pub(crate) last_done_ms: AtomicU64,
}

impl ConnState {
    pub(crate) fn new() -> Self {
        ConnState {
            first_bad: AtomicU64::new(u64::MAX),
            upgraded: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_done_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn response_done(&self) {
        self.last_done_ms
            .store(crate::table::now_ms(), Ordering::Relaxed);
        self.active.fetch_sub(1, Ordering::Release);
    }
}

/// Marks a response finished when dropped.
#[derive(Debug)]
pub(crate) struct ActiveGuard(pub(crate) Arc<ConnCtx>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.state.response_done();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first byte of a request head.
    Start,
    /// Inside a request head.
    Head,
    /// Inside a body of known length: bytes left.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Reading chunk extensions up to the end of the size line.
    ChunkExt,
    /// Inside chunk data: bytes left.
    ChunkData(u64),
    /// After chunk data, up to its line end.
    ChunkDataEnd,
    /// Trailer section after the last chunk.
    Trailer,
    /// Framing unknown (upgrade, malformed input that hyper rejects anyway): stop following.
    Off,
}

/// A request head was completed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HeadDone {
    pub(crate) index: u64,
    pub(crate) ambiguous: bool,
}

/// Follows HTTP/1 request framing over a byte stream.
#[derive(Debug)]
pub(crate) struct Tracker {
    phase: Phase,
    line: Vec<u8>,
    head_bytes: usize,
    max_head: usize,
    heads: u64,
    seen_request_line: bool,
    cl: Option<u64>,
    cl_seen: bool,
    cl_invalid: bool,
    te_seen: bool,
    te_chunked: bool,
    chunk_size: u64,
    chunk_digits: u8,
    trailer_line_len: usize,
}

impl Tracker {
    pub(crate) fn new(max_head: usize) -> Self {
        Tracker {
            phase: Phase::Start,
            line: Vec::new(),
            head_bytes: 0,
            max_head,
            heads: 0,
            seen_request_line: false,
            cl: None,
            cl_seen: false,
            cl_invalid: false,
            te_seen: false,
            te_chunked: false,
            chunk_size: 0,
            chunk_digits: 0,
            trailer_line_len: 0,
        }
    }

    fn in_head(&self) -> bool {
        self.phase == Phase::Head
    }

    fn reset_head(&mut self) {
        self.line.clear();
        self.head_bytes = 0;
        self.seen_request_line = false;
        self.cl = None;
        self.cl_seen = false;
        self.cl_invalid = false;
        self.te_seen = false;
        self.te_chunked = false;
    }

    fn header_line(&mut self) -> Option<HeadDone> {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let mut done = None;
        if !self.seen_request_line {
            if !line.is_empty() {
                self.seen_request_line = true;
            }
        } else if line.is_empty() {
            done = Some(self.finish_head());
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = &line[..colon];
            let value = line[colon + 1..].trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") {
                self.cl_seen = true;
                let parsed = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok());
                match (parsed, self.cl) {
                    (Some(n), None) => self.cl = Some(n),
                    (Some(n), Some(prev)) if n == prev => {}
                    _ => self.cl_invalid = true,
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                self.te_seen = true;
                self.te_chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .map(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
                    .unwrap_or(false);
            }
        }
        line.clear();
        self.line = line;
        done
    }

    fn finish_head(&mut self) -> HeadDone {
        let index = self.heads;
        self.heads += 1;
        let ambiguous = self.cl_seen && self.te_seen;
        // A CONNECT head has no body; the proxy refuses it and closes, so the tracker stays
        // armed (header and idle timeouts keep applying) instead of switching off.
        self.phase = if ambiguous || self.cl_invalid {
            Phase::Off
        } else if self.te_seen {
            if self.te_chunked {
                self.chunk_size = 0;
                self.chunk_digits = 0;
                Phase::ChunkSize
            } else {
                Phase::Off
            }
        } else {
            match self.cl {
                Some(n) if n > 0 => Phase::Body(n),
                _ => Phase::Start,
            }
        };
        self.reset_head();
        HeadDone { index, ambiguous }
    }

    /// Feeds bytes read from the client; returns the heads completed by them.
    pub(crate) fn feed(&mut self, mut data: &[u8], mut on_head: impl FnMut(HeadDone)) {
        while !data.is_empty() {
            match self.phase {
                Phase::Off => return,
                Phase::Start | Phase::Head => {
                    self.phase = Phase::Head;
                    match data.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            self.head_bytes += i + 1;
                            if self.head_bytes > self.max_head {
                                self.phase = Phase::Off;
                                return;
                            }
                            self.line.extend_from_slice(&data[..i]);
                            data = &data[i + 1..];
                            if let Some(done) = self.header_line() {
                                on_head(done);
                            } else if !self.seen_request_line {
                                // Blank lines before a request line are ignored.
                                self.phase = Phase::Start;
                                self.head_bytes = 0;
                            }
                        }
                        None => {
                            self.head_bytes += data.len();
                            if self.head_bytes > self.max_head {
                                self.phase = Phase::Off;
                                return;
                            }
                            self.line.extend_from_slice(data);
                            return;
                        }
                    }
                }
                Phase::Body(left) => {
                    let n = (data.len() as u64).min(left);
                    data = &data[n as usize..];
                    self.phase = if n == left {
                        Phase::Start
                    } else {
                        Phase::Body(left - n)
                    };
                }
                Phase::ChunkSize => {
                    let b = data[0];
                    data = &data[1..];
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                            self.chunk_digits += 1;
                            if self.chunk_digits > 15 {
                                self.phase = Phase::Off;
                                return;
                            }
                            self.chunk_size = self.chunk_size * 16 + d;
                        }
                        b'\n' => self.end_size_line(),
                        b';' | b' ' | b'\t' | b'\r' if self.chunk_digits > 0 => {
                            self.phase = Phase::ChunkExt
                        }
                        _ => {
                            self.phase = Phase::Off;
                            return;
                        }
                    }
                }
                Phase::ChunkExt => match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        data = &data[i + 1..];
                        self.end_size_line();
                    }
                    None => return,
                },
                Phase::ChunkData(left) => {
                    let n = (data.len() as u64).min(left);
                    data = &data[n as usize..];
                    self.phase = if n == left {
                        Phase::ChunkDataEnd
                    } else {
                        Phase::ChunkData(left - n)
                    };
                }
                Phase::ChunkDataEnd => match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        data = &data[i + 1..];
                        self.chunk_size = 0;
                        self.chunk_digits = 0;
                        self.phase = Phase::ChunkSize;
                    }
                    None => return,
                },
                Phase::Trailer => {
                    let b = data[0];
                    data = &data[1..];
                    match b {
                        b'\n' if self.trailer_line_len == 0 => self.phase = Phase::Start,
                        b'\n' => self.trailer_line_len = 0,
                        b'\r' => {}
                        _ => self.trailer_line_len += 1,
                    }
                }
            }
        }
    }

    fn end_size_line(&mut self) {
        if self.chunk_digits == 0 {
            self.phase = Phase::Off;
        } else if self.chunk_size == 0 {
            self.trailer_line_len = 0;
            self.phase = Phase::Trailer;
        } else {
            self.phase = Phase::ChunkData(self.chunk_size);
        }
    }
}

/// A keep-alive connection idle for this long drops its HTTP state (see
/// [`ClientStream::parkable`]). Not at once: a busy connection would then pay for a new HTTP/1
/// connection state at every request.
const PARK_AFTER: Duration = Duration::from_millis(5);

/// The client TCP stream, wrapped.
#[derive(Debug)]
pub(crate) struct ClientStream {
    inner: TcpStream,
    tracker: Tracker,
    /// The connection's context (shared with its request handler).
    ctx: Arc<ConnCtx>,
    accepted: Instant,
    head_started: Option<Instant>,
    last_read: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The last read found no data (the reader waits for the client).
    read_pending: bool,
    /// The last write could not complete (the client is not reading).
    write_blocked: bool,
    /// The connection has been idle for `PARK_AFTER` (set by the read that found nothing).
    park_due: bool,
}

impl ClientStream {
    pub(crate) fn new(inner: TcpStream, ctx: Arc<ConnCtx>, max_head: usize) -> Self {
        let now = Instant::now();
        ClientStream {
            inner,
            // Heads larger than hyper's limit get 431 from hyper; stop following a bit later.
            tracker: Tracker::new(max_head + 1024),
            ctx,
            accepted: now,
            head_started: None,
            last_read: now,
            sleep: None,
            read_pending: false,
            write_blocked: false,
            park_due: false,
        }
    }

    /// When the connection must be cut if nothing happens, and whether that is a header
    /// timeout.
    /// When the connection became idle (between requests, nothing in flight): the later of
    /// the last read and the end of the last response. `None` when not idle.
    fn idle_since(&self, now: Instant) -> Option<Instant> {
        if self.tracker.phase != Phase::Start
            || self.tracker.heads == 0
            || self.ctx.state.upgraded.load(Ordering::Relaxed)
            || self.ctx.state.active.load(Ordering::Acquire) > 0
        {
            return None;
        }
        let done = self.ctx.state.last_done_ms.load(Ordering::Relaxed);
        let since_done = Duration::from_millis(crate::table::now_ms().saturating_sub(done));
        Some(
            self.last_read
                .max(now.checked_sub(since_done).unwrap_or(now)),
        )
    }

    fn deadline(&self, now: Instant) -> Option<(Instant, bool)> {
        if self.ctx.state.upgraded.load(Ordering::Relaxed) {
            return None;
        }
        match self.tracker.phase {
            Phase::Off => None,
            Phase::Head => Some((
                self.head_started.unwrap_or(self.last_read)
                    + self.ctx.shared.settings.header_read_timeout,
                true,
            )),
            Phase::Start if self.tracker.heads == 0 => Some((
                self.accepted + self.ctx.shared.settings.header_read_timeout,
                true,
            )),
            Phase::Start => match self.idle_since(now) {
                Some(last) => Some((last + self.ctx.shared.settings.idle_timeout, false)),
                // A response is still going out: check again later.
                None => Some((now + self.ctx.shared.settings.idle_timeout, false)),
            },
            _ => Some((
                self.last_read + self.ctx.shared.settings.idle_timeout,
                false,
            )),
        }
    }
}

impl ClientStream {
    /// Arms the timer for the current deadline; `Ready` with the error to end the connection
    /// with once it has passed.
    fn poll_timeout(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let now = Instant::now();
        let close = self.deadline(now);
        if let Some((deadline, is_header)) = close {
            if now >= deadline {
                let (counter, what) = if is_header {
                    (
                        &self.ctx.shared.global.header_timeouts,
                        "header read timeout",
                    )
                } else {
                    (&self.ctx.shared.global.idle_timeouts, "idle timeout")
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(what, "closing client connection");
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what));
            }
        }
        let mut wake = close.map(|(d, _)| d);
        self.park_due = false;
        if let Some(since) = self.idle_since(now) {
            // A connection that served one request is parked at once (clients that open a
            // connection, send one request and keep it idle are common); one in use again
            // keeps its state for `PARK_AFTER` between requests.
            let park_at = if self.tracker.heads <= 1 {
                since
            } else {
                since + PARK_AFTER
            };
            if now >= park_at {
                self.park_due = true;
            } else {
                wake = Some(wake.map_or(park_at, |w| w.min(park_at)));
            }
        }
        let Some(deadline) = wake else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let sleep = match &mut self.sleep {
            Some(s) => {
                // A timer that fires early is harmless (the deadline is recomputed);
                // only move it when it would fire too late.
                if s.deadline() > deadline || s.is_elapsed() {
                    s.as_mut().reset(deadline);
                }
                s
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if sleep.as_mut().poll(cx).is_ready() {
            // Fired before the (moved) deadline: arm for the real one and wait.
            sleep.as_mut().reset(deadline);
            let _ = sleep.as_mut().poll(cx);
        }
        Poll::Pending
    }

    /// Waits, without any HTTP state, until the client sends something (`Ok`) or a timeout
    /// passes (`Err`).
    pub(crate) fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.poll_read_ready(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => self.poll_timeout(cx).map(Err),
        }
    }

    /// The HTTP/1 connection was dropped: release what only it needed.
    pub(crate) fn parked(&mut self) {
        self.tracker.line = Vec::new();
        self.read_pending = false;
        self.park_due = false;
    }

    /// Whether the HTTP/1 connection serving this stream holds nothing worth keeping (and has
    /// been idle for `PARK_AFTER`): every
    /// request read was handed to the handler and answered, the answer is written, no partial
    /// request was read, and it waits for the client. It can then be dropped and a new one
    /// started when the client sends again (an idle keep-alive connection then costs no
    /// buffers).
    pub(crate) fn parkable(&self) -> bool {
        self.park_due
            && self.read_pending
            && !self.write_blocked
            && self.tracker.phase == Phase::Start
            && !self.ctx.state.upgraded.load(Ordering::Relaxed)
            && self.ctx.state.active.load(Ordering::Acquire) == 0
            && self.ctx.state.requests.load(Ordering::Relaxed) == self.tracker.heads
    }
}

/// A [`ClientStream`] shared between the connection's task and the HTTP/1 connection serving
/// it at the moment (which is dropped when idle, see [`ClientStream::parkable`]).
#[derive(Debug, Clone)]
pub(crate) struct SharedStream(pub(crate) Arc<std::sync::Mutex<ClientStream>>);

impl SharedStream {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ClientStream> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_shutdown(cx)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read_pending = false;
                let new = &buf.filled()[before..];
                if !new.is_empty() && !this.ctx.state.upgraded.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    this.last_read = now;
                    if !this.tracker.in_head() {
                        this.head_started = Some(now);
                    }
                    let state = &this.ctx.state;
                    this.tracker.feed(new, |done| {
                        if done.ambiguous {
                            state.first_bad.fetch_min(done.index, Ordering::SeqCst);
                        }
                    });
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.read_pending = true;
                this.poll_timeout(cx).map(Err)
            }
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.write_blocked = r.is_pending();
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.write_blocked = r.is_pending();
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(chunks: &[&[u8]]) -> Vec<HeadDone> {
        let mut t = Tracker::new(16 * 1024);
        let mut out = Vec::new();
        for c in chunks {
            t.feed(c, |d| out.push(d));
        }
        out
    }

    #[test]
    fn follows_keep_alive_requests() {
        let r = heads(&[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel",
            b"loGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        ]);
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|d| !d.ambiguous));
    }

    #[test]
    fn follows_chunked_bodies_split_anywhere() {
        let msg: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n10\r\nGET / HTTP/1.1\r\n\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for split in 0..msg.len() {
            let r = heads(&[&msg[..split], &msg[split..]]);
            assert_eq!(r.len(), 2, "split at {split}");
            assert!(!r[0].ambiguous);
            assert_eq!(
                r[1],
                HeadDone {
                    index: 1,
                    ambiguous: true
                }
            );
        }
    }

    #[test]
    fn flags_cl_and_te_in_any_order() {
        for head in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert!(heads(&[head])[0].ambiguous);
        }
    }

    #[test]
    fn oversized_heads_stop_following() {
        let mut t = Tracker::new(64);
        let mut n = 0;
        t.feed(&[b'a'; 100], |_| n += 1);
        assert_eq!(t.phase, Phase::Off);
    }
}
