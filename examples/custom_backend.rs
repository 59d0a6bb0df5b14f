//! A backend of your own, proven with the testkit: a `LogSink` that keeps each app's last lines
//! in a `VecDeque` and fans new ones out on a broadcast channel, then runs paas-core's
//! conformance suite against it and composes it into a platform.
//!
//! ```text
//! cargo run --example custom_backend
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use futures::stream::BoxStream;
use paas::core::memory::*;
use paas::core::{async_trait, stream::broadcast_stream, AppName, LogLine, LogSink, Platform};
use tokio::sync::broadcast;

/// Keeps the last `keep` lines of each app.
#[derive(Debug)]
struct RingLogSink {
    keep: usize,
    lines: Mutex<HashMap<AppName, VecDeque<LogLine>>>,
    new_lines: broadcast::Sender<LogLine>,
}

impl RingLogSink {
    fn new(keep: usize) -> Self {
        RingLogSink {
            keep,
            lines: Mutex::default(),
            new_lines: broadcast::channel(1024).0,
        }
    }
}

#[async_trait]
impl LogSink for RingLogSink {
    async fn append(&self, line: LogLine) -> paas::core::Result<()> {
        let mut all = self.lines.lock().unwrap();
        let ring = all.entry(line.app.clone()).or_default();
        if ring.len() == self.keep {
            ring.pop_front();
        }
        ring.push_back(line.clone());
        // Nobody following is fine: the send fails and the line is only kept.
        let _ = self.new_lines.send(line);
        Ok(())
    }

    async fn tail(&self, app: &AppName, n: usize) -> paas::core::Result<Vec<LogLine>> {
        let all = self.lines.lock().unwrap();
        let ring = all.get(app).cloned().unwrap_or_default();
        Ok(ring.into_iter().rev().take(n).rev().collect())
    }

    async fn follow(&self, app: &AppName) -> paas::core::Result<BoxStream<'static, LogLine>> {
        use futures::StreamExt;
        let app = app.clone();
        Ok(broadcast_stream(self.new_lines.subscribe())
            .filter(move |l| futures::future::ready(l.app == app))
            .boxed())
    }

    async fn remove_app(&self, app: &AppName) -> paas::core::Result<()> {
        self.lines.lock().unwrap().remove(app);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> paas::core::Result<()> {
    // 1. The contract: every function of the suite panics, naming the rule, if it is broken.
    paas::core::testkit::log_sink::run_all(&RingLogSink::new(1000)).await;
    println!("RingLogSink passes paas-core's LogSink conformance suite");

    // 2. The composition: it replaces MemoryLogSink, nothing else changes.
    let platform = Platform::composer()
        .sources(MemorySourceStore::new())
        .builder(MemoryBuilder::new())
        .store(MemoryReleaseStore::new())
        .scheduler(MemoryScheduler::new())
        .router(MemoryRouter::new())
        .log_sink(RingLogSink::new(1000))
        .compose()?;
    let app: AppName = "ring".parse()?;
    platform.create_app(&app).await?;
    for line in platform.logs(&app, 10).await? {
        println!("{line}");
    }
    Ok(())
}
