//! Upgraded connections: bytes copied both ways between the client and the endpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};

use super::exchange::Exchange;

/// How a tunnel ended, for the access log.
pub(super) struct TunnelEnd {
    /// Bytes sent to the client after the `101` head.
    pub(super) bytes: u64,
    /// Why the proxy closed it, when it did (empty when the peers closed it).
    pub(super) note: &'static str,
}

/// Copies bytes both ways between an upgraded client connection and its endpoint, until both
/// sides close, or the tunnel stays silent both ways for `tunnel_idle_timeout` (once one side
/// has closed, for the shorter of that and `idle`: a peer that vanished without a FIN would
/// otherwise hold the tunnel forever), or the endpoint's drain timeout passes.
pub(super) async fn tunnel(
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
