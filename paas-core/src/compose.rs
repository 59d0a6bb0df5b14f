//! [`PlatformComposer`]: names each backend of a [`Platform`] and sets the values the pipeline
//! shares (base domain, drain timeout, stop grace...) once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::platform::{Platform, PlatformSettings};
use crate::traits::{Builder, HealthCheck, LogSink, ReleaseStore, Router, Scheduler, SourceStore};

/// Composes a [`Platform`]: one call per backend, by name, then shared values, then
/// [`compose`](Self::compose).
///
/// ```
/// use paas_core::memory::*;
/// use paas_core::Platform;
/// use std::time::Duration;
///
/// let platform = Platform::composer()
///     .sources(MemorySourceStore::new())
///     .builder(MemoryBuilder::new())
///     .store(MemoryReleaseStore::new())
///     .scheduler(MemoryScheduler::new())
///     .router(MemoryRouter::new())
///     .log_sink(MemoryLogSink::new())
///     .base_domain("apps.example.com")
///     .drain_timeout(Duration::from_secs(10))
///     .compose()
///     .expect("every backend named");
/// assert_eq!(platform.settings().base_domain, "apps.example.com");
/// ```
///
/// Backends are taken by value (`MemoryRouter::new()`) or shared (`Arc<T>`, `Arc<dyn Trait>`:
/// both implement the traits), so the caller can keep a handle on a backend it also serves
/// (the router, the log sink).
#[derive(Debug, Default)]
#[must_use = "call .compose() to get the Platform"]
pub struct PlatformComposer {
    sources: Option<Arc<dyn SourceStore>>,
    builder: Option<Arc<dyn Builder>>,
    store: Option<Arc<dyn ReleaseStore>>,
    scheduler: Option<Arc<dyn Scheduler>>,
    router: Option<Arc<dyn Router>>,
    logs: Option<Arc<dyn LogSink>>,
    settings: PlatformSettings,
}

impl PlatformComposer {
    /// A composer with no backends and default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where source lives (a git `SourceStore`).
    pub fn sources(mut self, s: impl SourceStore) -> Self {
        self.sources = Some(Arc::new(s));
        self
    }
    /// What turns source into a build.
    pub fn builder(mut self, b: impl Builder) -> Self {
        self.builder = Some(Arc::new(b));
        self
    }
    /// Where apps, config, formation, domains, builds and releases are recorded.
    pub fn store(mut self, s: impl ReleaseStore) -> Self {
        self.store = Some(Arc::new(s));
        self
    }
    /// What runs processes.
    pub fn scheduler(mut self, s: impl Scheduler) -> Self {
        self.scheduler = Some(Arc::new(s));
        self
    }
    /// What routes HTTP to web processes.
    pub fn router(mut self, r: impl Router) -> Self {
        self.router = Some(Arc::new(r));
        self
    }
    /// Where build, app, router and platform log lines go.
    pub fn log_sink(mut self, l: impl LogSink) -> Self {
        self.logs = Some(Arc::new(l));
        self
    }

    /// Replaces every setting at once (values set before are overwritten).
    pub fn settings(mut self, settings: PlatformSettings) -> Self {
        self.settings = settings;
        self
    }
    /// Each app answers at `<app>.<base_domain>` (default `localhost`).
    pub fn base_domain(mut self, d: impl Into<String>) -> Self {
        self.settings.base_domain = d.into();
        self
    }
    /// How new web processes are checked before they get traffic (default: TCP connect).
    pub fn health_check(mut self, c: HealthCheck) -> Self {
        self.settings.health_check = c;
        self
    }
    /// How long new processes have to become healthy (default 60 s).
    pub fn health_timeout(mut self, t: Duration) -> Self {
        self.settings.health_timeout = t;
        self
    }
    /// How long old endpoints may finish in-flight requests (default 30 s).
    pub fn drain_timeout(mut self, t: Duration) -> Self {
        self.settings.drain_timeout = t;
        self
    }
    /// SIGTERM-to-SIGKILL grace for stopped processes (default 30 s).
    pub fn stop_grace(mut self, t: Duration) -> Self {
        self.settings.stop_grace = t;
        self
    }
    /// Time limit of a build (default 15 min).
    pub fn build_timeout(mut self, t: Duration) -> Self {
        self.settings.build_timeout = t;
        self
    }
    /// Where source is exported for builds (default: the system temp dir).
    pub fn work_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.settings.work_dir = d.into();
        self
    }

    /// The platform.
    ///
    /// Errors: `InvalidInput` naming the first backend that was not given, or a setting that
    /// breaks its rule (an invalid base domain, a zero timeout).
    pub fn compose(self) -> Result<Platform> {
        fn need<T: ?Sized>(v: Option<Arc<T>>, what: &str, call: &str) -> Result<Arc<T>> {
            v.ok_or_else(|| {
                Error::invalid(format!(
                    "the platform has no {what}: call .{call}(...) before .compose()"
                ))
            })
        }
        self.settings.validate()?;
        Ok(Platform::from_parts(
            need(self.sources, "source store", "sources")?,
            need(self.builder, "builder", "builder")?,
            need(self.store, "release store", "store")?,
            need(self.scheduler, "scheduler", "scheduler")?,
            need(self.router, "router", "router")?,
            need(self.logs, "log sink", "log_sink")?,
            self.settings,
        ))
    }
}

impl Platform {
    /// Starts composing a platform: name each backend, set shared values, then
    /// [`compose`](PlatformComposer::compose).
    pub fn composer() -> PlatformComposer {
        PlatformComposer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::*;

    #[test]
    fn missing_backends_are_named() {
        let e = Platform::composer()
            .sources(MemorySourceStore::new())
            .builder(MemoryBuilder::new())
            .store(MemoryReleaseStore::new())
            .router(MemoryRouter::new())
            .log_sink(MemoryLogSink::new())
            .compose()
            .unwrap_err();
        assert!(e.message().contains("no scheduler"), "{e}");
    }

    #[test]
    fn shared_backends_and_bad_settings() {
        let router = Arc::new(MemoryRouter::new());
        let compose = |domain: &str| {
            Platform::composer()
                .sources(MemorySourceStore::new())
                .builder(MemoryBuilder::new())
                .store(MemoryReleaseStore::new())
                .scheduler(MemoryScheduler::new())
                .router(router.clone())
                .log_sink(MemoryLogSink::new())
                .base_domain(domain)
                .compose()
        };
        assert!(compose("example.com").is_ok());
        let e = compose("*.example.com").unwrap_err();
        assert!(e.message().contains("base_domain"), "{e}");
    }
}
