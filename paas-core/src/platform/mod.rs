//! [`Platform`]: the pipeline that composes the six stages into a PaaS.
//!
//! Every operation on one app is serialized (a per-app lock); operations on different apps run
//! concurrently. Each step runs in a tracing span with the app (and release) as fields, emits a
//! [`PlatformEvent`] and writes a `platform[...]` line to the app's log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use tokio::sync::broadcast;

use crate::error::Result;
use crate::memory::lock;
use crate::model::{
    AppName, CommitId, ConfigUpdate, Domain, EventKind, LogLine, LogSource, PlatformEvent,
    Timestamp, Version,
};
use crate::traits::{Builder, LogSink, ReleaseStore, Router, Scheduler, SourceStore};

mod apps;
mod deploy;
mod domains;
mod operations;
mod recovery;
mod request;
mod rollout;
mod settings;
mod watcher;

pub use request::{AppStatus, DeployRequest, DeploySource};
pub(crate) use settings::health_path_var;
pub use settings::{PlatformSettings, Progress, BUILD_LOG_LINES, HEALTHCHECK_PATH_VAR};

struct Inner {
    sources: Arc<dyn SourceStore>,
    builder: Arc<dyn Builder>,
    store: Arc<dyn ReleaseStore>,
    scheduler: Arc<dyn Scheduler>,
    router: Arc<dyn Router>,
    logs: Arc<dyn LogSink>,
    settings: PlatformSettings,
    locks: Mutex<HashMap<AppName, Arc<tokio::sync::Mutex<()>>>>,
    events: broadcast::Sender<PlatformEvent>,
}

/// The pipeline: composes a [`SourceStore`], [`Builder`], [`ReleaseStore`], [`Scheduler`],
/// [`Router`] and [`LogSink`] into create/destroy, deploy, config, scale, rollback, restart,
/// one-off runs, logs and status. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("sources", &self.inner.sources)
            .field("builder", &self.inner.builder)
            .field("store", &self.inner.store)
            .field("scheduler", &self.inner.scheduler)
            .field("router", &self.inner.router)
            .field("logs", &self.inner.logs)
            .field("settings", &self.inner.settings)
            .finish()
    }
}

/// The short form of a commit id, for humans.
fn short(c: &CommitId) -> &str {
    &c.as_str()[..c.as_str().len().min(7)]
}

fn keys_of(update: &ConfigUpdate) -> String {
    let mut keys: Vec<String> = update.set.keys().map(|k| k.to_string()).collect();
    keys.extend(update.unset.iter().map(|k| k.to_string()));
    keys.join(", ")
}

impl Platform {
    /// The six backends and settings, checked by [`PlatformComposer::compose`].
    ///
    /// [`PlatformComposer::compose`]: crate::PlatformComposer::compose
    pub(crate) fn from_parts(
        sources: Arc<dyn SourceStore>,
        builder: Arc<dyn Builder>,
        store: Arc<dyn ReleaseStore>,
        scheduler: Arc<dyn Scheduler>,
        router: Arc<dyn Router>,
        logs: Arc<dyn LogSink>,
        settings: PlatformSettings,
    ) -> Self {
        Platform {
            inner: Arc::new(Inner {
                sources,
                builder,
                store,
                scheduler,
                router,
                logs,
                settings,
                locks: Mutex::new(HashMap::new()),
                events: broadcast::channel(1024).0,
            }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &PlatformSettings {
        &self.inner.settings
    }
    /// The source store.
    pub fn sources(&self) -> &Arc<dyn SourceStore> {
        &self.inner.sources
    }
    /// The release store.
    pub fn release_store(&self) -> &Arc<dyn ReleaseStore> {
        &self.inner.store
    }
    /// The scheduler.
    pub fn scheduler(&self) -> &Arc<dyn Scheduler> {
        &self.inner.scheduler
    }
    /// The router.
    pub fn router(&self) -> &Arc<dyn Router> {
        &self.inner.router
    }
    /// The log sink.
    pub fn log_sink(&self) -> &Arc<dyn LogSink> {
        &self.inner.logs
    }

    /// Platform events from now on (a lagging subscriber skips events).
    pub fn subscribe(&self) -> BoxStream<'static, PlatformEvent> {
        let rx = self.inner.events.subscribe();
        crate::stream::broadcast_stream(rx)
    }

    /// The default hostname of an app: `<app>.<base_domain>`.
    pub fn default_host(&self, app: &AppName) -> Result<Domain> {
        Domain::new(format!("{app}.{}", self.inner.settings.base_domain))
    }

    pub(super) async fn lock_app(&self, app: &AppName) -> tokio::sync::OwnedMutexGuard<()> {
        let m = lock(&self.inner.locks)
            .entry(app.clone())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    /// Writes a `platform[component]` line to the app's log (only there).
    pub(super) async fn log_line(&self, app: &AppName, component: &str, text: impl AsRef<str>) {
        let line = LogLine::new(app.clone(), LogSource::Platform(component.into()), text);
        if let Err(e) = self.inner.logs.append(line).await {
            tracing::warn!(%app, error = %e, "log sink refused a line");
        }
    }

    /// Records something that happened: a tracing event, a `platform[api]` line in the app's
    /// log, and a [`PlatformEvent`] for subscribers.
    pub(super) async fn record_event(
        &self,
        app: &AppName,
        kind: EventKind,
        release: Option<Version>,
        message: impl Into<String>,
    ) {
        let message = message.into();
        tracing::info!(%app, ?kind, release = ?release, "{message}");
        self.log_line(app, "api", &message).await;
        let _ = self.inner.events.send(PlatformEvent {
            timestamp: Timestamp::now(),
            app: app.clone(),
            kind,
            release,
            message,
        });
    }

    /// Tells the user (the operation's progress) and writes the same line to the app's log.
    pub(super) async fn tell(
        &self,
        app: &AppName,
        progress: &Progress,
        component: &str,
        text: &str,
    ) {
        progress.line(text);
        self.log_line(app, component, text).await;
    }
}
