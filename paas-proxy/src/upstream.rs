//! Upstream connections: plain TCP connections to endpoints that carry HTTP/1.1 exchanges,
//! pooled per endpoint while idle.
//!
//! A pooled connection holds no buffer and no task: it is a socket registered with the
//! runtime's reactor. Whether it is still usable is read from the reactor's readiness without a
//! system call: an idle HTTP/1 connection that became readable has either been closed by the
//! endpoint or carries bytes nobody asked for, and is dropped either way. (The exchange that
//! parked it ended with a short read, which leaves the readiness cleared.)

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::clock::now_ms;

/// One connection to an endpoint.
#[derive(Debug)]
pub(crate) struct UpstreamConn {
    pub(crate) stream: TcpStream,
    /// `now_ms` when it was parked in the pool.
    idle_since: u64,
}

impl UpstreamConn {
    /// True if nothing arrived on the idle connection (no EOF, no stray bytes).
    fn quiet(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_pending()
    }
}

/// Opens a connection to `addr` within `timeout`.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<UpstreamConn> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(UpstreamConn {
        stream,
        idle_since: 0,
    })
}

/// The idle connections of one endpoint, most recently used last.
pub(crate) struct Pool {
    idle: Mutex<Vec<UpstreamConn>>,
    max_idle: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.lock().len())
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<UpstreamConn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently parked connection that is still usable, if any.
    pub(crate) fn take(&self, idle_timeout: Duration) -> Option<UpstreamConn> {
        let oldest_ok = now_ms().saturating_sub(idle_timeout.as_millis() as u64);
        loop {
            let c = self.lock().pop()?;
            if c.idle_since < oldest_ok {
                // The others are older still.
                let stale = std::mem::take(&mut *self.lock());
                drop(stale);
                return None;
            }
            if c.quiet() {
                return Some(c);
            }
        }
    }

    /// Parks a connection whose exchange is complete (dropped, hence closed, if something
    /// arrived on it or the pool is full).
    pub(crate) fn put(&self, mut c: UpstreamConn) {
        if self.max_idle == 0 || !c.quiet() {
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
        idle.retain(|c| c.idle_since >= oldest_ok && c.quiet());
        let mut pool = self.lock();
        // Connections parked meanwhile are newer: keep them last.
        idle.append(&mut pool);
        *pool = idle;
    }
}
