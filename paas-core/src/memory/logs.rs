use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use super::lock;
use crate::error::Result;
use crate::model::{AppName, LogLine};
use crate::traits::LogSink;

/// How much of the end of a log file is read to refill an app's ring: enough for the ring's
/// lines, never the whole file.
const TAIL_BYTES_PER_LINE: u64 = 2048;

#[derive(Debug)]
struct AppLog {
    ring: VecDeque<LogLine>,
    tx: broadcast::Sender<LogLine>,
    file: Option<LogFile>,
}

/// An app's open log file and how many bytes it holds.
#[derive(Debug)]
struct LogFile {
    file: File,
    len: u64,
}

/// Where and how much is kept on disk.
#[derive(Clone, Debug)]
struct Files {
    dir: PathBuf,
    max_bytes: u64,
    keep: usize,
}

impl Files {
    fn path(&self, app: &AppName, generation: usize) -> PathBuf {
        match generation {
            0 => self.dir.join(format!("{app}.log")),
            n => self.dir.join(format!("{app}.log.{n}")),
        }
    }

    /// `<app>.log` becomes `<app>.log.1`, `.1` becomes `.2`..., the oldest beyond `keep` is
    /// removed; a new empty `<app>.log` is opened.
    fn rotate(&self, app: &AppName) -> std::io::Result<LogFile> {
        let _ = std::fs::remove_file(self.path(app, self.keep.max(1)));
        for g in (1..self.keep.max(1)).rev() {
            let _ = std::fs::rename(self.path(app, g), self.path(app, g + 1));
        }
        if self.keep == 0 {
            let _ = std::fs::remove_file(self.path(app, 0));
        } else {
            let _ = std::fs::rename(self.path(app, 0), self.path(app, 1));
        }
        self.open(app)
    }

    fn open(&self, app: &AppName) -> std::io::Result<LogFile> {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(self.path(app, 0))?;
        let len = file.metadata()?.len();
        Ok(LogFile { file, len })
    }

    /// Opens (rotating first if it is over the limit) and reads the tail into a ring. Blocking.
    fn load(&self, app: &AppName, capacity: usize) -> (VecDeque<LogLine>, Option<LogFile>) {
        let mut file = self.open(app).ok();
        if file.as_ref().is_some_and(|f| f.len > self.max_bytes) {
            file = self.rotate(app).ok();
        }
        // Newest lines are at the end of `.log`, older ones at the end of `.log.1`...
        let mut ring = VecDeque::new();
        for g in 0..=self.keep {
            if ring.len() >= capacity {
                break;
            }
            let older = read_tail(&self.path(app, g), capacity - ring.len());
            for l in older.into_iter().rev() {
                ring.push_front(l);
            }
        }
        (ring, file)
    }
}

/// A [`LogSink`] keeping the last N lines of each app in memory (default 1,500), streaming new
/// lines to followers, and optionally appending every line to `<dir>/<app>.log`, rotated by
/// size as it grows.
#[derive(Debug)]
pub struct MemoryLogSink {
    capacity: usize,
    files: Option<Files>,
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
            files: None,
            apps: Mutex::new(HashMap::new()),
        }
    }
    /// Also appends every line to `<dir>/<app>.log` (JSON lines, mode 0600). When the file
    /// passes 8 MiB it is rotated to `<app>.log.1` (and `.1` to `.2`; two rotated files are
    /// kept): see [`with_rotation`](Self::with_rotation). Each app's ring starts from the end
    /// of its files, read on the blocking pool and never whole, so a restarted process keeps
    /// showing recent lines. The directory is created.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        self.files = Some(Files {
            dir,
            max_bytes: 8 * 1024 * 1024,
            keep: 2,
        });
        Ok(self)
    }
    /// With [`with_dir`](Self::with_dir): rotate a log file once it holds more than
    /// `max_bytes`, and keep `keep` rotated files (so an app's logs take at most about
    /// `(keep + 1) * max_bytes` on disk).
    pub fn with_rotation(mut self, max_bytes: u64, keep: usize) -> Self {
        if let Some(f) = &mut self.files {
            f.max_bytes = max_bytes.max(1024);
            f.keep = keep;
        }
        self
    }

    /// Appends to an app whose entry exists (one lock); gives the line back otherwise.
    fn append_loaded(&self, line: LogLine) -> std::result::Result<(), LogLine> {
        let mut apps = lock(&self.apps);
        let Some(log) = apps.get_mut(&line.app) else {
            return Err(line);
        };
        let capacity = self.capacity;
        if let (Some(files), Some(f)) = (&self.files, &mut log.file) {
            if let Ok(mut json) = serde_json::to_vec(&line) {
                json.push(b'\n');
                if f.len > 0 && f.len + json.len() as u64 > files.max_bytes {
                    match files.rotate(&line.app) {
                        Ok(new) => *f = new,
                        Err(e) => {
                            tracing::warn!(app = %line.app, error = %e, "could not rotate log file")
                        }
                    }
                }
                match f.file.write_all(&json) {
                    Ok(()) => f.len += json.len() as u64,
                    Err(e) => {
                        tracing::warn!(app = %line.app, error = %e, "could not append to log file")
                    }
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

    /// Makes sure the app's entry exists, loading its files' tail off the runtime's threads.
    async fn ensure(&self, app: &AppName) {
        if lock(&self.apps).contains_key(app) {
            return;
        }
        let loaded = match &self.files {
            Some(files) => {
                let (files, app2, capacity) = (files.clone(), app.clone(), self.capacity);
                tokio::task::spawn_blocking(move || files.load(&app2, capacity))
                    .await
                    .unwrap_or_default()
            }
            None => (VecDeque::new(), None),
        };
        lock(&self.apps)
            .entry(app.clone())
            .or_insert_with(|| AppLog {
                ring: loaded.0,
                tx: broadcast::channel(4096).0,
                file: loaded.1,
            });
    }
}

/// The last `n` lines of a JSON-lines log file (lines that do not parse are skipped), reading
/// at most about `n * 2 KiB` from its end.
fn read_tail(path: &Path, n: usize) -> VecDeque<LogLine> {
    let mut ring = VecDeque::new();
    let Ok(mut f) = File::open(path) else {
        return ring;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let want = (n as u64).saturating_mul(TAIL_BYTES_PER_LINE);
    let start = len.saturating_sub(want);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return ring;
    }
    let mut bytes = Vec::new();
    if f.take(want).read_to_end(&mut bytes).is_err() {
        return ring;
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // The first line is probably cut.
        let cut = text.find('\n').map_or(text.len(), |i| i + 1);
        text.drain(..cut);
    }
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
        if let Err(line) = self.append_loaded(line) {
            // First line of this app since start: load its files' tail (off the runtime).
            self.ensure(&line.app).await;
            // Dropped only if the app was removed meanwhile.
            let _ = self.append_loaded(line);
        }
        Ok(())
    }

    async fn tail(&self, app: &AppName, n: usize) -> Result<Vec<LogLine>> {
        if self.files.is_some() {
            self.ensure(app).await;
        }
        let apps = lock(&self.apps);
        let Some(log) = apps.get(app) else {
            return Ok(Vec::new());
        };
        let skip = log.ring.len().saturating_sub(n);
        Ok(log.ring.iter().skip(skip).cloned().collect())
    }

    async fn follow(&self, app: &AppName) -> Result<BoxStream<'static, LogLine>> {
        self.ensure(app).await;
        let rx = match lock(&self.apps).get(app) {
            Some(log) => log.tx.subscribe(),
            None => broadcast::channel(1).1,
        };
        Ok(crate::stream::broadcast_stream(rx))
    }

    async fn remove_app(&self, app: &AppName) -> Result<()> {
        lock(&self.apps).remove(app);
        if let Some(files) = &self.files {
            for g in 0..=files.keep.max(1) {
                let _ = std::fs::remove_file(files.path(app, g));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogSource;

    fn dir_size(dir: &Path, app: &str) -> (u64, usize) {
        let mut total = 0;
        let mut files = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{app}.log"))
            {
                total += e.metadata().unwrap().len();
                files += 1;
            }
        }
        (total, files)
    }

    #[tokio::test]
    async fn files_rotate_by_size_while_running() {
        let dir = tempfile_dir();
        let max = 64 * 1024;
        let sink = MemoryLogSink::new()
            .with_dir(&dir)
            .unwrap()
            .with_rotation(max, 2);
        let app = AppName::new("busy").unwrap();
        for i in 0..200_000 {
            sink.append(LogLine::new(
                app.clone(),
                LogSource::Router,
                format!("GET /{i} 200"),
            ))
            .await
            .unwrap();
        }
        let (total, files) = dir_size(&dir, "busy");
        assert_eq!(files, 3, "the file and two rotated ones");
        assert!(total <= 3 * max, "{total} bytes kept, bound {}", 3 * max);
        // The newest line is in the ring and in the file.
        let last = sink.tail(&app, 1).await.unwrap();
        assert_eq!(last[0].text, "GET /199999 200");
        let fresh = MemoryLogSink::new().with_dir(&dir).unwrap();
        let tail = fresh.tail(&app, 3).await.unwrap();
        let texts: Vec<&str> = tail.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            ["GET /199997 200", "GET /199998 200", "GET /199999 200"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_huge_file_is_not_read_whole_at_start() {
        let dir = tempfile_dir();
        let app = AppName::new("huge").unwrap();
        // A 2 GiB rotated file (sparse: no disk used) whose last lines are real.
        let path = dir.join("huge.log.1");
        let f = File::create(&path).unwrap();
        f.set_len(2 * 1024 * 1024 * 1024).unwrap();
        drop(f);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for i in 0..10 {
            let l = LogLine::new(app.clone(), LogSource::Router, format!("old {i}"));
            writeln!(f, "{}", serde_json::to_string(&l).unwrap()).unwrap();
        }
        drop(f);
        let before = peak_rss_kib();
        let sink = MemoryLogSink::with_capacity(100).with_dir(&dir).unwrap();
        let tail = sink.tail(&app, 5).await.unwrap();
        let texts: Vec<&str> = tail.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["old 5", "old 6", "old 7", "old 8", "old 9"]);
        let grew = peak_rss_kib().saturating_sub(before);
        assert!(
            grew < 64 * 1024,
            "reading the tail of a 2 GiB file raised peak memory by {grew} KiB"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let p = std::env::temp_dir().join(format!("paas-logs-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// VmHWM of this process (0 where /proc is absent).
    fn peak_rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }
}
