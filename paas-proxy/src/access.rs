//! Access lines: one per request of a routed app, through `tracing` (target
//! `paas_proxy::access`) and, when set, into a [`LogSink`] as `router` lines of the app.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::Method;
use paas_core::{AppName, LogLine, LogSink, LogSource};
use tokio::sync::mpsc;

/// Lines waiting for the sink; beyond this, lines are dropped (the sink must never slow the
/// data plane).
const SINK_QUEUE: usize = 8192;

/// The queue's receiving end and the sink, until the forwarding task starts.
type SinkTask = (mpsc::Receiver<LogLine>, Arc<dyn LogSink>);

/// Where access lines go.
#[derive(Debug, Default)]
pub(crate) struct AccessLog {
    tx: Option<mpsc::Sender<LogLine>>,
    pending: Mutex<Option<SinkTask>>,
    started: AtomicBool,
}

impl AccessLog {
    pub(crate) fn with_sink(sink: Arc<dyn LogSink>) -> Self {
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        AccessLog {
            tx: Some(tx),
            pending: Mutex::new(Some((rx, sink))),
            started: AtomicBool::new(false),
        }
    }

    /// Whether a line would go anywhere.
    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some() || tracing::enabled!(target: "paas_proxy::access", tracing::Level::INFO)
    }

    /// Starts the task that forwards lines to the sink (needs a runtime; idempotent).
    pub(crate) fn start(&self) {
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let taken = self.pending.lock().ok().and_then(|mut p| p.take());
        if let Some((mut rx, sink)) = taken {
            self.started.store(true, Ordering::Relaxed);
            handle.spawn(async move {
                while let Some(line) = rx.recv().await {
                    if let Err(e) = sink.append(line).await {
                        tracing::warn!(error = %e, "access log sink refused a line");
                    }
                }
            });
        }
    }

    fn send(&self, line: LogLine) {
        if let Some(tx) = &self.tx {
            self.start();
            if tx.try_send(line).is_err() {
                tracing::debug!("access log queue full, line dropped");
            }
        }
    }
}

/// One request's access record, filled as the request goes and emitted once.
#[derive(Debug)]
pub(crate) struct AccessRecord {
    pub(crate) log: Arc<AccessLog>,
    pub(crate) app: AppName,
    pub(crate) method: Method,
    /// Path and query (at most 512 characters).
    pub(crate) path: String,
    pub(crate) host: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) client: IpAddr,
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) status: u16,
    pub(crate) started: Instant,
    pub(crate) service_ms: u128,
    pub(crate) bytes: u64,
    pub(crate) aborted: bool,
    pub(crate) note: &'static str,
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

impl AccessRecord {
    pub(crate) fn emit(self) {
        let total_ms = self.started.elapsed().as_millis();
        let endpoint = self
            .endpoint
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".to_string());
        let at = if self.status >= 500 || self.aborted {
            "error"
        } else {
            "info"
        };
        let line = format!(
            "at={at} method={} path=\"{}\" host={} request_id={} fwd=\"{}\" endpoint={} status={} service={}ms total={}ms bytes={}{}{}",
            self.method,
            self.path.escape_debug(),
            text(&self.host),
            text(&self.request_id),
            self.client,
            endpoint,
            self.status,
            self.service_ms,
            total_ms,
            self.bytes,
            if self.aborted { " aborted=true" } else { "" },
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" desc=\"{}\"", self.note)
            },
        );
        tracing::info!(target: "paas_proxy::access", app = %self.app, "{line}");
        self.log
            .send(LogLine::new(self.app, LogSource::Router, line));
    }
}
