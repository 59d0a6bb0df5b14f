//! Container log collection: follows instance containers' stdout/stderr into a [`LogSink`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures::StreamExt;
use paas_core::{AppName, LogLine, LogSink, LogSource, ProcessType};

use crate::common::parse_rfc3339_nanos;

/// Whose logs a follower reads.
#[derive(Clone, Debug)]
pub(crate) struct LogTarget {
    pub id: String,
    pub app: AppName,
    pub process_type: ProcessType,
    pub index: u32,
}

/// Followers of instance logs, one per container at most.
pub(crate) struct LogFollowers {
    docker: Docker,
    sink: RwLock<Option<Arc<dyn LogSink>>>,
    active: Mutex<HashSet<String>>,
    /// Timestamp (ns) of the last line forwarded per container, so that a follower restarted
    /// after a crash restart does not repeat lines.
    last_seen: Mutex<HashMap<String, i128>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for LogFollowers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollowers")
            .field("active", &lock(&self.active).len())
            .finish()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LogFollowers {
    pub(crate) fn new(docker: Docker) -> Self {
        LogFollowers {
            docker,
            sink: RwLock::new(None),
            active: Mutex::new(HashSet::new()),
            last_seen: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_sink(&self, sink: Arc<dyn LogSink>) {
        *self.sink.write().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    }

    pub(crate) fn has_sink(&self) -> bool {
        self.sink
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn sink(&self) -> Option<Arc<dyn LogSink>> {
        self.sink.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Waits (at most `max`) until the follower of a stopped container has forwarded its last
    /// lines, so that removing the container does not cut them off.
    pub(crate) async fn settle(&self, id: &str, max: std::time::Duration) {
        let deadline = std::time::Instant::now() + max;
        while lock(&self.active).contains(id) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Forgets a removed container.
    pub(crate) fn forget(&self, id: &str) {
        lock(&self.last_seen).remove(id);
    }

    /// Follows `target`'s output from `since_ns` (nanoseconds since the epoch; `None`: from the
    /// container's start) unless it is followed already. No-op without a sink.
    pub(crate) fn follow(self: &Arc<Self>, target: LogTarget, since_ns: Option<i128>) {
        if !self.has_sink() || self.closed.load(Ordering::SeqCst) {
            return;
        }
        if !lock(&self.active).insert(target.id.clone()) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.run(&target, since_ns).await;
            lock(&this.active).remove(&target.id);
        });
    }

    async fn run(&self, target: &LogTarget, since_ns: Option<i128>) {
        let Some(sink) = self.sink() else { return };
        let mut threshold = since_ns.unwrap_or(i128::MIN);
        if let Some(seen) = lock(&self.last_seen).get(&target.id) {
            threshold = threshold.max(*seen);
        }
        let since_secs = if threshold > 0 {
            i32::try_from(threshold / 1_000_000_000).unwrap_or(0)
        } else {
            0
        };
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: since_secs,
            ..Default::default()
        };
        let source = LogSource::App {
            process_type: target.process_type.clone(),
            index: target.index,
        };
        let mut stream = self.docker.logs(&target.id, Some(options));
        while let Some(item) = stream.next().await {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            let message = match item {
                Ok(LogOutput::StdOut { message })
                | Ok(LogOutput::StdErr { message })
                | Ok(LogOutput::Console { message }) => message,
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(_) => break,
            };
            let text = String::from_utf8_lossy(&message);
            for record in text.split_terminator('\n') {
                let (ts, body) = record.split_once(' ').unwrap_or((record, ""));
                let Some(ns) = parse_rfc3339_nanos(ts) else {
                    // Not a timestamped record: forward it as is.
                    let _ = sink
                        .append(LogLine::new(target.app.clone(), source.clone(), record))
                        .await;
                    continue;
                };
                if ns <= threshold {
                    continue;
                }
                threshold = ns;
                lock(&self.last_seen).insert(target.id.clone(), ns);
                // LogLine::new replaces control characters: one record is one line, and the
                // source is structured, so app output cannot pose as a platform line.
                let _ = sink
                    .append(LogLine::new(target.app.clone(), source.clone(), body))
                    .await;
            }
        }
    }
}
