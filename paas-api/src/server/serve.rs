//! [`serve`]: the API's own listener loop, hardened for a port that faces untrusted clients: a
//! deadline on request heads, a cap on open connections (so the API can never use up the
//! process's descriptors, which the router in the same process needs), and accept errors that
//! back off instead of spinning.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Limits of [`serve`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeSettings {
    /// A client has this long to send a whole request head, the first one and each one after
    /// on a kept-alive connection (default 10 s, as the router); then the connection is closed.
    pub header_read_timeout: Duration,
    /// At most this many connections are open at once (default 512). Past it, new ones wait in
    /// the kernel's backlog until one closes: they hold no descriptor of this process.
    pub max_connections: usize,
    /// On shutdown, open connections get this long to finish (default 30 s).
    pub shutdown_grace: Duration,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl ServeSettings {
    /// Sets the head deadline.
    pub fn with_header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }
    /// Sets the connection cap (at least 1).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

/// Serves `router` (HTTP/1.1) on `listener` until `shutdown` completes, then lets open
/// connections finish for [`ServeSettings::shutdown_grace`].
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE, ENFILE, ECONNABORTED...: the listener stays; back off a little.
                    tracing::warn!(error = %e, "api: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let header_timeout = settings.header_read_timeout;
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "api: connection ended with an error");
                    }
                }
                _ = stopping => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit: all permits back means all connections closed.
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(settings.shutdown_grace, slots.acquire_many(all)).await;
    Ok(())
}
