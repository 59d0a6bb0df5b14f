//! Upstream connections: HTTP/1 connections to endpoints, pooled per endpoint and driven in the
//! task of the request that uses them.
//!
//! A pooled connection is not a task of its own: while a request is in flight, the request's
//! task (the client connection's task) polls the connection future together with the response
//! future, and then the response body polls it while streaming. Nothing crosses a task
//! boundary on the way (hyper-util's `Client` spawns a task per connection, which costs a
//! hand-off and a wakeup each way per request). Idle connections sit in a per-endpoint stack,
//! unpolled; a connection taken from it is polled once with a no-op waker first, which reads a
//! pending EOF (the endpoint closed it) and drops it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::table::{now_ms, Endpoint};

type Connection = http1::Connection<TokioIo<TcpStream>, RequestBody>;

/// One HTTP/1 connection to an endpoint.
pub(crate) struct UpstreamConn {
    sender: http1::SendRequest<RequestBody>,
    /// `None` once the connection future completed (closed).
    conn: Option<Connection>,
    /// `now_ms` when it was parked in the pool.
    idle_since: u64,
}

impl std::fmt::Debug for UpstreamConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConn")
            .field("open", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl UpstreamConn {
    /// Lets the connection make progress (write the request, read the response). Returns
    /// false once it has closed.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(conn) = self.conn.as_mut() {
            if Pin::new(conn).poll(cx).is_ready() {
                // Dropping the dispatcher hands an error to a request still waiting on it.
                self.conn = None;
            }
        }
        self.conn.is_some()
    }

    /// Polls without a waker to register: true if the connection is open and can take a
    /// request now.
    fn reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx) && !self.sender.is_closed() && self.sender.is_ready()
    }
}

/// The idle connections of one endpoint, most recently used last (boxed: they move between
/// the pool and response bodies).
#[allow(clippy::vec_box)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Box<UpstreamConn>>>,
    max_idle: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle.lock().map(|v| v.len()).unwrap_or(0))
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(max_idle: usize) -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    #[allow(clippy::vec_box)]
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<UpstreamConn>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently parked connection that is still usable, if any.
    fn take(&self, idle_timeout: Duration) -> Option<Box<UpstreamConn>> {
        let oldest_ok = now_ms().saturating_sub(idle_timeout.as_millis() as u64);
        loop {
            let mut c = self.lock().pop()?;
            if c.idle_since < oldest_ok {
                // The others are older still.
                let stale = std::mem::take(&mut *self.lock());
                drop(stale);
                return None;
            }
            if c.reusable() {
                return Some(c);
            }
        }
    }

    /// Parks a connection whose exchange is complete (dropped, hence closed, if it cannot take
    /// another request or the pool is full).
    pub(crate) fn put(&self, mut c: Box<UpstreamConn>) {
        if self.max_idle == 0 || !c.reusable() {
            return;
        }
        c.idle_since = now_ms();
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }

    /// Closes every idle connection.
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *self.lock());
        drop(all);
    }

    /// Closes idle connections parked for longer than `idle_timeout` or closed by the endpoint.
    pub(crate) fn sweep(&self, idle_timeout: Duration) {
        let oldest_ok = now_ms().saturating_sub(idle_timeout.as_millis() as u64);
        let mut idle = std::mem::take(&mut *self.lock());
        idle.retain_mut(|c| c.idle_since >= oldest_ok && c.reusable());
        let mut pool = self.lock();
        // Connections parked meanwhile are newer: keep them last.
        idle.append(&mut pool);
        *pool = idle;
    }
}

/// Why a request could not be exchanged with an endpoint.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made (refused, timed out): the request was not sent and comes
    /// back.
    Connect(io::Error, Box<Request<RequestBody>>),
    /// The exchange failed after the request was (maybe partly) sent.
    Failed(hyper::Error),
}

async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<UpstreamConn> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    Ok(UpstreamConn {
        sender,
        conn: Some(conn),
        idle_since: 0,
    })
}

/// Sends `req` (origin-form URI) to `ep` on a pooled or new connection, driving the connection
/// in this task until the response head arrives. Returns the response and the connection,
/// which must be driven (see [`UpstreamConn::drive`]) while the response body is read and then
/// given back with [`Pool::put`]. A pooled connection that turns out closed before the request
/// could be written is dropped and the request tried on another one.
pub(crate) async fn send(
    ep: &Endpoint,
    mut req: Request<RequestBody>,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<(Response<Incoming>, Box<UpstreamConn>), SendError> {
    loop {
        let (mut c, pooled) = match ep.pool.take(idle_timeout) {
            Some(c) => (c, true),
            None => match connect(ep.addr, connect_timeout).await {
                Ok(c) => (Box::new(c), false),
                Err(e) => return Err(SendError::Connect(e, Box::new(req))),
            },
        };
        let mut response = std::pin::pin!(c.sender.try_send_request(req));
        let result = std::future::poll_fn(|cx| {
            // The connection first: it writes the request and reads the response into the
            // response future.
            c.drive(cx);
            response.as_mut().poll(cx)
        })
        .await;
        match result {
            Ok(resp) => return Ok((resp, c)),
            Err(mut e) => match e.take_message() {
                Some(unsent) if pooled => {
                    tracing::debug!(endpoint = %ep.addr, error = %e.error(), "pooled connection closed; trying another");
                    req = unsent;
                }
                Some(unsent) => {
                    return Err(SendError::Connect(
                        io::Error::other(e.into_error()),
                        Box::new(unsent),
                    ))
                }
                None => return Err(SendError::Failed(e.into_error())),
            },
        }
    }
}

/// Sends an `Upgrade` request on a new connection of its own, driven by a task of its own
/// until the upgrade completes (upgraded connections are not pooled).
pub(crate) async fn send_upgrade(
    ep: &Endpoint,
    req: Request<RequestBody>,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, SendError> {
    let c = match connect(ep.addr, connect_timeout).await {
        Ok(c) => c,
        Err(e) => return Err(SendError::Connect(e, Box::new(req))),
    };
    let UpstreamConn {
        mut sender, conn, ..
    } = c;
    if let Some(conn) = conn {
        let addr = ep.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(endpoint = %addr, error = %e, "upgrade connection ended with an error");
            }
        });
    }
    match sender.try_send_request(req).await {
        Ok(resp) => Ok(resp),
        Err(mut e) => match e.take_message() {
            Some(unsent) => Err(SendError::Connect(
                io::Error::other(e.into_error()),
                Box::new(unsent),
            )),
            None => Err(SendError::Failed(e.into_error())),
        },
    }
}
