use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use super::lock;
use crate::error::Result;
use crate::model::{AppName, LogLine};
use crate::traits::LogSink;

/// A log file larger than this when an app's log is first opened is rotated to `<app>.log.1`.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug)]
struct AppLog {
    ring: VecDeque<LogLine>,
    tx: broadcast::Sender<LogLine>,
    file: Option<std::fs::File>,
}

/// A [`LogSink`] keeping the last N lines of each app in memory (default 1,500), streaming new
/// lines to followers, and optionally appending every line to `<dir>/<app>.log`.
#[derive(Debug)]
pub struct MemoryLogSink {
    capacity: usize,
    dir: Option<PathBuf>,
    apps: Mutex<HashMap<AppName, AppLog>>,
}

impl Default for MemoryLogSink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLogSink {
    /// Keeps 1,500 lines per app, in memory only.
    pub fn new() -> Self {
        Self::with_capacity(1500)
    }
    /// Keeps `capacity` lines per app.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryLogSink {
            capacity: capacity.max(1),
            dir: None,
            apps: Mutex::new(HashMap::new()),
        }
    }
    /// Also appends every line to `<dir>/<app>.log` (JSON lines), and starts each app's ring
    /// from the end of its file, so a restarted process keeps showing recent lines. The
    /// directory is created.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        self.dir = Some(dir);
        Ok(self)
    }

    fn entry<'a>(&self, apps: &'a mut HashMap<AppName, AppLog>, app: &AppName) -> &'a mut AppLog {
        apps.entry(app.clone()).or_insert_with(|| {
            let file = self.dir.as_ref().and_then(|d| {
                let path = d.join(format!("{app}.log"));
                if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE_BYTES) {
                    let _ = std::fs::rename(&path, d.join(format!("{app}.log.1")));
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(d.join(format!("{app}.log")))
                    .ok()
            });
            let ring = self
                .dir
                .as_ref()
                .map(|d| {
                    let mut ring = read_tail(&d.join(format!("{app}.log.1")), self.capacity);
                    ring.extend(read_tail(&d.join(format!("{app}.log")), self.capacity));
                    while ring.len() > self.capacity {
                        ring.pop_front();
                    }
                    ring
                })
                .unwrap_or_default();
            AppLog {
                ring,
                tx: broadcast::channel(4096).0,
                file,
            }
        })
    }
}

/// The last `n` lines of a JSON-lines log file (lines that do not parse are skipped).
fn read_tail(path: &std::path::Path, n: usize) -> VecDeque<LogLine> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return VecDeque::new();
    };
    let mut ring = VecDeque::with_capacity(n.min(4096));
    for line in text.lines() {
        if let Ok(l) = serde_json::from_str::<LogLine>(line) {
            if ring.len() == n {
                ring.pop_front();
            }
            ring.push_back(l);
        }
    }
    ring
}

#[async_trait]
impl LogSink for MemoryLogSink {
    async fn append(&self, line: LogLine) -> Result<()> {
        let mut apps = lock(&self.apps);
        let capacity = self.capacity;
        let log = self.entry(&mut apps, &line.app);
        if let Some(f) = &mut log.file {
            if let Ok(mut json) = serde_json::to_vec(&line) {
                json.push(b'\n');
                if let Err(e) = f.write_all(&json) {
                    tracing::warn!(app = %line.app, error = %e, "could not append to log file");
                }
            }
        }
        if log.ring.len() == capacity {
            log.ring.pop_front();
        }
        log.ring.push_back(line.clone());
        let _ = log.tx.send(line);
        Ok(())
    }

    async fn tail(&self, app: &AppName, n: usize) -> Result<Vec<LogLine>> {
        let mut apps = lock(&self.apps);
        let log = match (apps.contains_key(app), &self.dir) {
            (false, None) => return Ok(Vec::new()),
            _ => self.entry(&mut apps, app),
        };
        let skip = log.ring.len().saturating_sub(n);
        Ok(log.ring.iter().skip(skip).cloned().collect())
    }

    async fn follow(&self, app: &AppName) -> Result<BoxStream<'static, LogLine>> {
        let rx = {
            let mut apps = lock(&self.apps);
            self.entry(&mut apps, app).tx.subscribe()
        };
        Ok(crate::stream::broadcast_stream(rx))
    }

    async fn remove_app(&self, app: &AppName) -> Result<()> {
        lock(&self.apps).remove(app);
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_file(d.join(format!("{app}.log")));
            let _ = std::fs::remove_file(d.join(format!("{app}.log.1")));
        }
        Ok(())
    }
}
