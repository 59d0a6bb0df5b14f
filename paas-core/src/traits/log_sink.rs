//! [`LogSink`]: where build output, app output, router lines and platform events go.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::model::{AppName, LogLine};

/// Collects log lines per app, keeps the recent ones and streams new ones to followers.
///
/// Implementations: `MemoryLogSink` (paas-core; a bounded ring per app, optionally appended to
/// files). Conformance: `paas_core::testkit::log_sink`.
#[async_trait]
pub trait LogSink: Send + Sync + std::fmt::Debug + 'static {
    /// Appends a line. Lines of one app keep the order of `append` calls. Never blocks on slow
    /// followers (a lagging follower loses lines, not the writer).
    async fn append(&self, line: LogLine) -> Result<()>;

    /// The last `n` lines of the app, oldest first (fewer if fewer are kept). An app without
    /// lines gives an empty list.
    async fn tail(&self, app: &AppName, n: usize) -> Result<Vec<LogLine>>;

    /// Lines appended from now on, in order, until the stream is dropped.
    async fn follow(&self, app: &AppName) -> Result<BoxStream<'static, LogLine>>;

    /// Forgets the app's lines. Idempotent.
    async fn remove_app(&self, app: &AppName) -> Result<()>;
}
