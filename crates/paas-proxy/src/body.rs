//! Body types: the request body sent upstream (streamed, with an optional size limit) and the
//! response body sent to the client (streamed, holding the in-flight guard until it ends).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::access::AccessRecord;
use crate::conn::ActiveGuard;
use crate::table::InFlight;
use crate::upstream::UpstreamConn;

/// Boxed error of the proxy's bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body grew past `max_body_bytes`.
#[derive(Debug)]
pub(crate) struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body larger than the limit")
    }
}

impl std::error::Error for BodyTooLarge {}

/// The body of a request sent to an endpoint.
#[derive(Debug)]
pub(crate) enum RequestBody {
    Empty,
    Stream {
        inner: Incoming,
        limit: Option<u64>,
        seen: u64,
    },
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Stream { inner, limit, seen } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(limit), Some(data)) = (limit, frame.data_ref()) {
                        *seen += data.len() as u64;
                        if *seen > *limit {
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// What a streamed response holds until it ends: the in-flight count of its endpoint, the
/// connection's active count, and the access record (emitted on drop, with the byte count).
#[derive(Debug)]
pub(crate) struct StreamGuards {
    pub(crate) _in_flight: InFlight,
    pub(crate) _active: ActiveGuard,
    pub(crate) access: Option<AccessRecord>,
}

impl Drop for StreamGuards {
    fn drop(&mut self) {
        if let Some(record) = self.access.take() {
            record.emit();
        }
    }
}

/// The body of a response sent to a client.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: Incoming,
        guards: Option<Box<StreamGuards>>,
        /// The connection the body comes on: driven while the body is read, then given back
        /// to its endpoint's pool.
        conn: Option<Box<UpstreamConn>>,
    },
}

/// Gives `conn` back to the pool of the endpoint of `guards` (unless that endpoint left the
/// routes: then it is closed).
fn release(conn: &mut Option<Box<UpstreamConn>>, guards: &Option<Box<StreamGuards>>) {
    if let (Some(c), Some(g)) = (conn.take(), guards.as_ref()) {
        let ep = &g._in_flight.endpoint;
        if !ep.removed.load(std::sync::atomic::Ordering::SeqCst) {
            ep.pool.put(c);
        }
    }
}

impl ProxyBody {
    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        ProxyBody {
            kind: Kind::Full((!data.is_empty()).then_some(data)),
        }
    }

    pub(crate) fn empty() -> Self {
        ProxyBody {
            kind: Kind::Full(None),
        }
    }

    pub(crate) fn upstream(
        inner: Incoming,
        guards: StreamGuards,
        mut conn: Option<Box<UpstreamConn>>,
    ) -> Self {
        let mut guards = Some(Box::new(guards));
        if inner.is_end_stream() {
            // Nothing will be polled: release now.
            if let Some(a) = guards.as_mut().and_then(|g| g.access.as_mut()) {
                a.bytes = 0;
            }
            release(&mut conn, &guards);
            return ProxyBody {
                kind: Kind::Upstream {
                    inner,
                    guards: None,
                    conn: None,
                },
            };
        }
        ProxyBody {
            kind: Kind::Upstream {
                inner,
                guards,
                conn,
            },
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Upstream {
                inner,
                guards,
                conn,
            } => {
                if let Some(c) = conn.as_mut() {
                    // The connection reads the body into `inner`.
                    c.drive(cx);
                }
                match Pin::new(&mut *inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let (Some(g), Some(d)) = (guards.as_mut(), frame.data_ref()) {
                            if let Some(a) = g.access.as_mut() {
                                a.bytes += d.len() as u64;
                            }
                        }
                        if inner.is_end_stream() {
                            // hyper does not poll a body past its announced end.
                            if let Some(c) = conn.as_mut() {
                                c.drive(cx);
                            }
                            release(conn, guards);
                            *guards = None;
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        if let Some(a) = guards.as_mut().and_then(|g| g.access.as_mut()) {
                            a.aborted = true;
                        }
                        *conn = None;
                        *guards = None;
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                    Poll::Ready(None) => {
                        if let Some(c) = conn.as_mut() {
                            // Lets the connection see the end of the exchange.
                            c.drive(cx);
                        }
                        release(conn, guards);
                        *guards = None;
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(d) => d.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
