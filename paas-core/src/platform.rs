//! [`Platform`]: the pipeline that composes the six stages into a PaaS.
//!
//! Every operation on one app is serialized (a per-app lock); operations on different apps run
//! concurrently. Each step runs in a tracing span with the app (and release) as fields, emits a
//! [`PlatformEvent`] and writes a `platform[...]` line to the app's log.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::error::{Error, ErrorKind, Result};
use crate::memory::lock;
use crate::model::{
    App, AppName, Build, BuildId, CommitId, Config, ConfigUpdate, DeployStatus, Domain, EventKind,
    Formation, Instance, InstanceState, LogLine, LogSource, NewRelease, PlatformEvent, ProcessType,
    Release, Route, Timestamp, Version,
};
use crate::traits::{
    web_endpoints, BuildRequest, Builder, DrainRequest, ExportRequest, HealthCheck, HealthRequest,
    ImageRequest, InstanceEvent, ListReleases, LogSink, OutputSender, PruneRequest, ReleaseStore,
    Router, RunHandle, RunRequest, Scheduler, SourceStore, StartRequest, StopRequest,
};

/// At most this many lines of one build's output go to the app's log (the user who deploys
/// sees all of them).
pub const BUILD_LOG_LINES: usize = 2000;

/// Where an operation's progress lines go (shown to the user: CLI output, `remote:` lines).
pub type Progress = OutputSender;

/// Config var that gives an app's web processes their own health check: an HTTP path (`/up`)
/// that must answer below 400 before they get traffic, instead of
/// [`PlatformSettings::health_check`] (like Deis's `HEALTHCHECK_URL`).
pub const HEALTHCHECK_PATH_VAR: &str = "PAAS_HEALTHCHECK_PATH";

/// The rule for a health check path, named after the config var (the value is not echoed:
/// config values stay out of messages).
fn check_health_path(path: &str) -> Result<()> {
    crate::traits::check_health_path(path)
        .map_err(|e| Error::invalid(format!("{HEALTHCHECK_PATH_VAR}: {}", e.message())))
}

/// Tunables of the pipeline.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PlatformSettings {
    /// Each app answers at `<app>.<base_domain>` (default `localhost`).
    pub base_domain: String,
    /// How new web processes are checked before they get traffic (default: TCP connect). An
    /// app's [`HEALTHCHECK_PATH_VAR`] config var overrides it for that app.
    pub health_check: HealthCheck,
    /// How long new processes have to become healthy (default 60 s).
    pub health_timeout: Duration,
    /// How long old endpoints may finish in-flight requests (default 30 s).
    pub drain_timeout: Duration,
    /// SIGTERM-to-SIGKILL grace for stopped processes (default 30 s).
    pub stop_grace: Duration,
    /// Time limit of a build (default 15 min).
    pub build_timeout: Duration,
    /// Time limit of the release phase (default 10 min).
    pub release_phase_timeout: Duration,
    /// Time limit of a one-off run (default 1 h).
    pub run_timeout: Duration,
    /// Artifacts of this many newest releases are kept for rollbacks (default 5).
    pub keep_releases: usize,
    /// Where source is exported for builds (default: the system temp dir).
    pub work_dir: PathBuf,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        PlatformSettings {
            base_domain: "localhost".into(),
            health_check: HealthCheck::Tcp,
            health_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(30),
            build_timeout: Duration::from_secs(15 * 60),
            release_phase_timeout: Duration::from_secs(10 * 60),
            run_timeout: Duration::from_secs(3600),
            keep_releases: 5,
            work_dir: std::env::temp_dir().join("paas-work"),
        }
    }
}

impl PlatformSettings {
    /// Sets the base domain.
    pub fn with_base_domain(mut self, d: impl Into<String>) -> Self {
        self.base_domain = d.into();
        self
    }
    /// Sets the health check.
    pub fn with_health_check(mut self, c: HealthCheck) -> Self {
        self.health_check = c;
        self
    }
    /// Sets the health timeout.
    pub fn with_health_timeout(mut self, t: Duration) -> Self {
        self.health_timeout = t;
        self
    }
    /// Sets the drain timeout.
    pub fn with_drain_timeout(mut self, t: Duration) -> Self {
        self.drain_timeout = t;
        self
    }
    /// Sets the stop grace.
    pub fn with_stop_grace(mut self, t: Duration) -> Self {
        self.stop_grace = t;
        self
    }
    /// Sets the build timeout.
    pub fn with_build_timeout(mut self, t: Duration) -> Self {
        self.build_timeout = t;
        self
    }
    /// Sets the work dir.
    pub fn with_work_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.work_dir = d.into();
        self
    }

    /// Checks every rule: the base domain is a hostname (not a wildcard), timeouts are not
    /// zero, at least one release is kept. The error names the field.
    pub fn validate(&self) -> Result<()> {
        let domain = Domain::new(self.base_domain.clone())
            .map_err(|e| Error::invalid(format!("base_domain: {}", e.message())))?;
        if domain.as_str().starts_with('*') {
            return Err(Error::invalid("base_domain must not be a wildcard"));
        }
        for (name, d) in [
            ("health_timeout", self.health_timeout),
            ("build_timeout", self.build_timeout),
            ("release_phase_timeout", self.release_phase_timeout),
            ("run_timeout", self.run_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::invalid(format!("{name} must be longer than zero")));
            }
        }
        if self.keep_releases == 0 {
            return Err(Error::invalid("keep_releases must be at least 1"));
        }
        Ok(())
    }
}

/// What to deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploySource {
    /// A ref of the app's repository (`main`, a commit id).
    Ref(String),
    /// A commit of the app's repository.
    Commit(CommitId),
    /// A prebuilt artifact (image reference), deployed without a build.
    Image(String),
}

/// A deploy request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeployRequest {
    /// The app.
    pub app: AppName,
    /// What to deploy.
    pub source: DeploySource,
    /// Progress lines (build output, rollout steps) for the user.
    pub progress: Progress,
}

impl DeployRequest {
    /// Deploy `source` to `app`, discarding progress.
    pub fn new(app: AppName, source: DeploySource) -> Self {
        DeployRequest {
            app,
            source,
            progress: Progress::discard(),
        }
    }
    /// Sends progress lines to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// An app's state, for `apps:info` and `ps`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct AppStatus {
    /// The app record.
    pub app: App,
    /// The release that serves, if any.
    pub current: Option<Release>,
    /// The newest release (may be pending or failed).
    pub latest: Option<Release>,
    /// The formation.
    pub formation: Formation,
    /// Running instances.
    pub instances: Vec<Instance>,
    /// Custom domains.
    pub domains: Vec<Domain>,
    /// Hostnames that route to it (default first).
    pub hosts: Vec<Domain>,
}

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
    /// Starts composing a platform: name each backend, set shared values, then
    /// [`compose`](crate::PlatformComposer::compose).
    pub fn composer() -> crate::PlatformComposer {
        crate::PlatformComposer::new()
    }

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
    pub fn store(&self) -> &Arc<dyn ReleaseStore> {
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

    async fn lock_app(&self, app: &AppName) -> tokio::sync::OwnedMutexGuard<()> {
        let m = lock(&self.inner.locks)
            .entry(app.clone())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    async fn log(&self, app: &AppName, component: &str, text: impl AsRef<str>) {
        let line = LogLine::new(app.clone(), LogSource::Platform(component.into()), text);
        if let Err(e) = self.inner.logs.append(line).await {
            tracing::warn!(%app, error = %e, "log sink refused a line");
        }
    }

    async fn emit(
        &self,
        app: &AppName,
        kind: EventKind,
        release: Option<Version>,
        message: impl Into<String>,
    ) {
        let message = message.into();
        tracing::info!(%app, ?kind, release = ?release, "{message}");
        self.log(app, "api", &message).await;
        let _ = self.inner.events.send(PlatformEvent {
            timestamp: Timestamp::now(),
            app: app.clone(),
            kind,
            release,
            message,
        });
    }

    /// Sends a line to the user and the app's log.
    async fn say(&self, app: &AppName, progress: &Progress, component: &str, text: &str) {
        progress.line(text);
        self.log(app, component, text).await;
    }

    // -----------------------------------------------------------------------------------------
    // Apps

    /// Creates an app: its record and its repository.
    ///
    /// Errors: `AlreadyExists` (nothing changes).
    pub async fn create_app(&self, app: &AppName) -> Result<App> {
        let _g = self.lock_app(app).await;
        let record = App::new(app.clone());
        self.inner.store.create_app(record.clone()).await?;
        if let Err(e) = self.inner.sources.create_repo(app).await {
            if e.kind() != ErrorKind::AlreadyExists {
                let _ = self.inner.store.delete_app(app).await;
                return Err(e);
            }
        }
        self.emit(
            app,
            EventKind::AppCreated,
            None,
            format!("Created app {app}"),
        )
        .await;
        Ok(record)
    }

    /// All apps.
    pub async fn list_apps(&self) -> Result<Vec<App>> {
        self.inner.store.list_apps().await
    }

    /// Destroys an app: its processes, route, artifacts, repository, records and logs.
    ///
    /// Errors: `NotFound`.
    pub async fn destroy_app(&self, app: &AppName) -> Result<()> {
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("destroy", %app);
        async {
            self.inner.store.get_app(app).await?;
            self.inner.router.remove_route(app).await?;
            self.inner
                .scheduler
                .remove_app(app, self.inner.settings.stop_grace)
                .await?;
            self.inner
                .builder
                .prune(PruneRequest::new(app.clone(), Vec::new()))
                .await?;
            self.inner.sources.delete_repo(app).await?;
            self.inner.store.delete_app(app).await?;
            self.inner.logs.remove_app(app).await?;
            let _ = self.inner.events.send(PlatformEvent {
                timestamp: Timestamp::now(),
                app: app.clone(),
                kind: EventKind::AppDestroyed,
                release: None,
                message: format!("Destroyed app {app}"),
            });
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// An app's status: releases, formation, instances, domains.
    pub async fn status(&self, app: &AppName) -> Result<AppStatus> {
        let record = self.inner.store.get_app(app).await?;
        let current = self.inner.store.current_release(app).await?;
        let latest = self
            .inner
            .store
            .list_releases(app, ListReleases::newest(1))
            .await?
            .pop();
        let formation = self.inner.store.get_formation(app).await?;
        let instances = self.inner.scheduler.list(Some(app)).await?;
        let domains = self.inner.store.list_domains(app).await?;
        let hosts = self.hosts(app).await?;
        Ok(AppStatus {
            app: record,
            current,
            latest,
            formation,
            instances,
            domains,
            hosts,
        })
    }

    async fn hosts(&self, app: &AppName) -> Result<Vec<Domain>> {
        let mut hosts = vec![self.default_host(app)?];
        hosts.extend(self.inner.store.list_domains(app).await?);
        Ok(hosts)
    }

    // -----------------------------------------------------------------------------------------
    // Deploy

    /// Deploys: export → build → release → release phase → start new processes → wait healthy →
    /// switch the route → drain → stop the old processes.
    ///
    /// A failed build creates no release (`BuildFailed`). Processes that never become healthy,
    /// or a failing release phase, mark the release failed, remove the new processes, leave the
    /// old release serving, and return `DeployFailed`.
    pub async fn deploy(&self, req: DeployRequest) -> Result<Release> {
        let app = req.app.clone();
        let span = tracing::info_span!("deploy", %app, release = tracing::field::Empty);
        let _g = self.lock_app(&app).await;
        async move {
            self.inner.store.get_app(&app).await?;
            let progress = req.progress.clone();
            let build = self.build(&app, &req.source, &progress).await?;
            let config = self.inner.store.get_config(&app).await?;
            let description = match &build.commit {
                Some(c) => format!("Deploy {}", short(c)),
                None => format!("Deploy {}", build.artifact.image),
            };
            let release = self
                .inner
                .store
                .append_release(NewRelease {
                    app: app.clone(),
                    build,
                    config,
                    description,
                })
                .await?;
            tracing::Span::current().record("release", tracing::field::display(release.version));
            self.emit(
                &app,
                EventKind::ReleaseCreated,
                Some(release.version),
                format!(
                    "Release {} created ({})",
                    release.version, release.description
                ),
            )
            .await;
            self.release_phase(&release, &progress).await?;
            self.rollout(&release, None, true, &progress).await?;
            self.prune(&app).await;
            self.inner.store.get_release(&app, release.version).await
        }
        .instrument(span)
        .await
    }

    async fn build(
        &self,
        app: &AppName,
        source: &DeploySource,
        progress: &Progress,
    ) -> Result<Build> {
        let build_id = BuildId::generate();
        let (out, mut rx) = OutputSender::channel();
        let forward = {
            let me = self.clone();
            let app = app.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                // The user sees every line; the app's log keeps the first
                // BUILD_LOG_LINES (a build that prints without end must not flood it).
                let mut logged = 0usize;
                let mut dropped = 0usize;
                while let Some(line) = rx.recv().await {
                    progress.line(&line);
                    if logged < BUILD_LOG_LINES {
                        logged += 1;
                        me.log(&app, "build", &line).await;
                    } else {
                        dropped += 1;
                    }
                }
                if dropped > 0 {
                    let note = format!("({dropped} more lines of build output were not logged)");
                    me.log(&app, "build", note).await;
                }
            })
        };
        self.emit(
            app,
            EventKind::BuildStarted,
            None,
            format!("Build {build_id} started"),
        )
        .await;
        let result = match source {
            DeploySource::Image(image) => {
                let mut r = ImageRequest::new(app.clone(), build_id.clone(), image.clone());
                r.output = out;
                self.inner.builder.from_image(r).await
            }
            DeploySource::Ref(_) | DeploySource::Commit(_) => {
                self.build_source(app, &build_id, source, out).await
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), forward).await;
        match result {
            Ok(build) => {
                self.inner.store.put_build(build.clone()).await?;
                let types: Vec<String> = build
                    .procfile
                    .entries()
                    .map(|(t, _)| t.to_string())
                    .collect();
                self.emit(
                    app,
                    EventKind::BuildSucceeded,
                    None,
                    format!(
                        "Build {} succeeded ({}; process types: {})",
                        build.id,
                        build.strategy,
                        types.join(", ")
                    ),
                )
                .await;
                Ok(build)
            }
            Err(e) => {
                self.emit(
                    app,
                    EventKind::BuildFailed,
                    None,
                    format!("Build {build_id} failed: {e}"),
                )
                .await;
                progress.line(format!("Build failed: {e}"));
                Err(e)
            }
        }
    }

    async fn build_source(
        &self,
        app: &AppName,
        build_id: &BuildId,
        source: &DeploySource,
        out: OutputSender,
    ) -> Result<Build> {
        let commit = match source {
            DeploySource::Ref(r) => self.inner.sources.resolve(app, r).await?,
            DeploySource::Commit(c) => c.clone(),
            DeploySource::Image(_) => unreachable!("handled by the caller"),
        };
        out.line(format!(
            "-----> Building {app} from commit {}",
            short(&commit)
        ));
        let dir = self
            .inner
            .settings
            .work_dir
            .join(format!("{app}-{build_id}"));
        tokio::fs::create_dir_all(&dir).await?;
        let result = async {
            self.inner
                .sources
                .export(ExportRequest::new(app.clone(), commit.clone(), &dir))
                .await?;
            let config = self.inner.store.get_config(app).await?;
            let req = BuildRequest::new(app.clone(), build_id.clone(), &dir)
                .with_commit(commit)
                .with_config(config)
                .with_output(out);
            let limit = self.inner.settings.build_timeout;
            match tokio::time::timeout(limit, self.inner.builder.build(req)).await {
                Ok(r) => r,
                Err(_) => Err(Error::timeout(format!(
                    "build did not finish within {limit:?}"
                ))),
            }
        }
        .await;
        let cleanup = dir.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(cleanup)).await;
        result
    }

    async fn release_phase(&self, release: &Release, progress: &Progress) -> Result<()> {
        let Some(cmd) = release.build.procfile.command(&ProcessType::release()) else {
            return Ok(());
        };
        let app = &release.app;
        self.say(
            app,
            progress,
            "deploy",
            &format!("-----> Running release command for {}", release.version),
        )
        .await;
        let req = RunRequest::new(release.clone(), vec!["sh".into(), "-c".into(), cmd.into()])
            .with_process_type(ProcessType::release())
            .with_timeout(self.inner.settings.release_phase_timeout);
        let outcome = match self.inner.scheduler.run_once(req).await {
            Ok(handle) => {
                self.pump_run(app, &ProcessType::release(), handle, progress)
                    .await
            }
            Err(e) => Err(e),
        };
        let failure = match outcome {
            Ok(0) => None,
            Ok(code) => Some(format!("release command exited with code {code}")),
            Err(e) => Some(format!("release command failed: {e}")),
        };
        match failure {
            None => {
                self.emit(
                    app,
                    EventKind::ReleasePhase,
                    Some(release.version),
                    format!("Release command of {} succeeded", release.version),
                )
                .await;
                Ok(())
            }
            Some(reason) => {
                self.fail_release(release, &reason, progress).await;
                Err(Error::deploy_failed(format!(
                    "deploy of {} failed: {reason}",
                    release.version
                )))
            }
        }
    }

    /// Streams a run's output into the log (as `app[TYPE.0]`) and progress; returns its exit.
    async fn pump_run(
        &self,
        app: &AppName,
        ty: &ProcessType,
        handle: RunHandle,
        progress: &Progress,
    ) -> Result<i32> {
        let RunHandle { mut output, exit } = handle;
        let pump = async {
            while let Some(chunk) = output.next().await {
                for l in chunk.text.lines() {
                    progress.line(l);
                    let line = LogLine::new(
                        app.clone(),
                        LogSource::App {
                            process_type: ty.clone(),
                            index: 0,
                        },
                        l,
                    );
                    let _ = self.inner.logs.append(line).await;
                }
            }
        };
        // The exit (and with it the run's timeout) is awaited alongside the output: a command
        // that never ends is cut off by the timeout even if its output stream stays open.
        let (code, ()) = tokio::join!(exit, async {
            let _ = tokio::time::timeout(Duration::from_secs(24 * 3600), pump).await;
        });
        code
    }

    async fn fail_release(&self, release: &Release, reason: &str, progress: &Progress) {
        let app = &release.app;
        if let Err(e) = self
            .inner
            .store
            .set_release_status(app, release.version, DeployStatus::Failed(reason.into()))
            .await
        {
            tracing::error!(%app, error = %e, "could not record the failed release");
        }
        let msg = format!("Deploy of {} failed: {reason}", release.version);
        progress.line(format!(" !     {msg}"));
        self.emit(app, EventKind::DeployFailed, Some(release.version), msg)
            .await;
    }

    /// The formation for `release`: the stored one, plus Heroku's defaults for process types it
    /// does not mention (`web=1`, others 0). Stores the result when it changed.
    async fn formation_for(&self, release: &Release) -> Result<Formation> {
        let app = &release.app;
        let mut formation = self.inner.store.get_formation(app).await?;
        let mut changed = false;
        for (ty, _) in release.build.procfile.entries() {
            if !ty.is_release() && !formation.contains(ty) {
                formation.set(ty.clone(), u32::from(ty.is_web()))?;
                changed = true;
            }
        }
        if changed {
            self.inner
                .store
                .set_formation(app, formation.clone())
                .await?;
        }
        Ok(formation)
    }

    /// Replaces the app's processes (all of them, or those of `only`) with processes of
    /// `release`, without downtime. With `mark`, records the release's deploy status.
    async fn rollout(
        &self,
        release: &Release,
        only: Option<&ProcessType>,
        mark: bool,
        progress: &Progress,
    ) -> Result<()> {
        let app = &release.app;
        let s = &self.inner.settings;
        let formation = self.formation_for(release).await?;
        let old: Vec<Instance> = self
            .inner
            .scheduler
            .list(Some(app))
            .await?
            .into_iter()
            .filter(|i| only.is_none_or(|t| &i.process_type == t))
            .collect();
        self.emit(
            app,
            EventKind::DeployStarted,
            Some(release.version),
            format!("Deploying {} ({formation})", release.version),
        )
        .await;

        // 1. Start the new processes.
        let mut started: Vec<Instance> = Vec::new();
        let mut start_err = None;
        for (ty, n) in formation.iter() {
            if n == 0
                || ty.is_release()
                || only.is_some_and(|t| t != ty)
                || release.build.procfile.command(ty).is_none()
            {
                continue;
            }
            self.say(
                app,
                progress,
                "deploy",
                &format!(
                    "-----> Starting {n} {ty} process(es) of {}",
                    release.version
                ),
            )
            .await;
            let req = StartRequest::new(release.clone(), ty.clone(), (1..=n).collect());
            match self.inner.scheduler.start(req).await {
                Ok(v) => started.extend(v),
                Err(e) => {
                    start_err = Some(e);
                    break;
                }
            }
        }

        // 2. Wait until they are healthy, then 3. switch the route to the new web processes
        //    (one atomic swap). A failure of either leaves the old route and processes alone.
        let routes_web = only.is_none_or(|t| t.is_web());
        let mut outcome = match start_err {
            Some(e) => Err(e),
            None => self.wait_healthy(release, &started).await,
        };
        if outcome.is_ok() && routes_web {
            outcome = self
                .set_route(app, web_endpoints(&started, release.version))
                .await;
        }
        if let Err(e) = outcome {
            let ids = started.iter().map(|i| i.id.clone()).collect();
            if let Err(stop_err) = self
                .inner
                .scheduler
                .stop(StopRequest::new(ids, Duration::from_secs(1)))
                .await
            {
                tracing::error!(%app, error = %stop_err, "could not remove the new processes");
            }
            let previous = self.inner.store.current_release(app).await.ok().flatten();
            let keeps = match &previous {
                Some(p) if p.version != release.version => format!("; {} keeps serving", p.version),
                _ => String::new(),
            };
            let reason = format!("{}{keeps}", e.message());
            if mark {
                self.fail_release(release, &reason, progress).await;
            } else {
                let msg = format!("Restart of {} failed: {reason}", release.version);
                progress.line(format!(" !     {msg}"));
                self.emit(app, EventKind::DeployFailed, Some(release.version), msg)
                    .await;
            }
            return Err(Error::deploy_failed(format!(
                "deploy of {} failed: {reason}",
                release.version
            )));
        }
        self.say(
            app,
            progress,
            "deploy",
            &format!("-----> {} process(es) healthy and routed", started.len()),
        )
        .await;
        // The new release takes traffic from here on. What follows is cleanup: its failures are
        // logged (the next converge removes leftovers), not turned into a failed deploy.
        let status = if mark {
            self.inner
                .store
                .set_release_status(app, release.version, DeployStatus::Succeeded)
                .await
        } else {
            Ok(())
        };

        // 4. Drain and stop the old processes.
        let new_addrs: BTreeSet<_> = started.iter().filter_map(|i| i.address).collect();
        let old_web: Vec<_> = old
            .iter()
            .filter(|i| i.process_type.is_web())
            .filter_map(|i| i.address)
            .filter(|a| !new_addrs.contains(a))
            .collect();
        if !old_web.is_empty() {
            match self
                .inner
                .router
                .drain(DrainRequest::new(old_web, s.drain_timeout))
                .await
            {
                Ok(report) if !report.pending.is_empty() => {
                    let n = report.pending.len();
                    self.log(
                        app,
                        "deploy",
                        format!("{n} endpoint(s) still busy after the drain timeout"),
                    )
                    .await;
                }
                Ok(_) => {}
                Err(e) => {
                    self.log(app, "deploy", format!("Draining old endpoints failed: {e}"))
                        .await
                }
            }
        }
        if !old.is_empty() {
            let ids = old.iter().map(|i| i.id.clone()).collect();
            match self
                .inner
                .scheduler
                .stop(StopRequest::new(ids, s.stop_grace))
                .await
            {
                Ok(()) => {
                    self.log(
                        app,
                        "deploy",
                        format!("Stopped {} old process(es)", old.len()),
                    )
                    .await
                }
                Err(e) => {
                    self.log(app, "deploy", format!("Stopping old processes failed: {e}"))
                        .await
                }
            }
        }
        status?;
        let what = if mark { "Deployed" } else { "Restarted" };
        self.emit(
            app,
            EventKind::DeploySucceeded,
            Some(release.version),
            format!("{what} {}", release.version),
        )
        .await;
        progress.line(format!("-----> {what} {}", release.version));
        Ok(())
    }

    /// How web processes of `release` are checked: the app's `PAAS_HEALTHCHECK_PATH` config
    /// var if set, else the platform's [`PlatformSettings::health_check`].
    fn web_check(&self, release: &Release) -> Result<HealthCheck> {
        match release.config.get(HEALTHCHECK_PATH_VAR) {
            Some(v) => {
                check_health_path(v.expose())?;
                Ok(HealthCheck::Http {
                    path: v.expose().to_string(),
                })
            }
            None => Ok(self.inner.settings.health_check.clone()),
        }
    }

    async fn wait_healthy(&self, release: &Release, instances: &[Instance]) -> Result<()> {
        let s = &self.inner.settings;
        let (web, other): (Vec<&Instance>, Vec<&Instance>) =
            instances.iter().partition(|i| i.process_type.is_web());
        let web_check = if web.is_empty() {
            s.health_check.clone()
        } else {
            self.web_check(release)?
        };
        for (group, check) in [(web, web_check), (other, HealthCheck::Running)] {
            if group.is_empty() {
                continue;
            }
            let ids = group.iter().map(|i| i.id.clone()).collect();
            self.inner
                .scheduler
                .wait_healthy(HealthRequest::new(ids, check, s.health_timeout))
                .await?;
        }
        Ok(())
    }

    async fn set_route(&self, app: &AppName, endpoints: Vec<std::net::SocketAddr>) -> Result<()> {
        let route = Route {
            app: app.clone(),
            hosts: self.hosts(app).await?,
            endpoints,
        };
        let n = route.endpoints.len();
        self.inner.router.set_route(route).await?;
        let _ = self.inner.events.send(PlatformEvent {
            timestamp: Timestamp::now(),
            app: app.clone(),
            kind: EventKind::RouteUpdated,
            release: None,
            message: format!("Route of {app} has {n} endpoint(s)"),
        });
        Ok(())
    }

    /// Points the route at the running web processes of the current release (nothing when
    /// there is none).
    async fn sync_route(&self, app: &AppName) -> Result<()> {
        let Some(current) = self.inner.store.current_release(app).await? else {
            return Ok(());
        };
        let instances = self.inner.scheduler.list(Some(app)).await?;
        self.set_route(app, web_endpoints(&instances, current.version))
            .await
    }

    /// Removes artifacts no rollback is likely to need: it keeps the builds of the newest
    /// `keep_releases` releases and of the newest `keep_releases` succeeded ones (the default
    /// rollback target is always among them).
    async fn prune(&self, app: &AppName) {
        let n = self.inner.settings.keep_releases.max(1);
        let releases = match self
            .inner
            .store
            .list_releases(app, ListReleases::newest(n.max(100)))
            .await
        {
            Ok(r) => r,
            Err(_) => return,
        };
        let mut keep: Vec<BuildId> = releases
            .iter()
            .take(n)
            .map(|r| r.build.id.clone())
            .collect();
        keep.extend(
            releases
                .iter()
                .filter(|r| r.status == DeployStatus::Succeeded)
                .take(n)
                .map(|r| r.build.id.clone()),
        );
        keep.sort();
        keep.dedup();
        if let Err(e) = self
            .inner
            .builder
            .prune(PruneRequest::new(app.clone(), keep))
            .await
        {
            tracing::warn!(%app, error = %e, "pruning old artifacts failed");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Config, scale, rollback, restart

    /// The app's current config.
    pub async fn config(&self, app: &AppName) -> Result<Config> {
        self.inner.store.get_config(app).await
    }

    /// Changes config. When the app has a build, this makes a new release from the current
    /// build with the new config and rolls it out (a rolling restart); before the first build it
    /// only stores the config. An update that changes nothing makes no release.
    /// Returns the new release, if one was made.
    pub async fn set_config(
        &self,
        app: &AppName,
        update: ConfigUpdate,
        progress: Progress,
    ) -> Result<Option<Release>> {
        if update.is_empty() {
            return Err(Error::invalid("config update sets and unsets nothing"));
        }
        for (key, value) in &update.set {
            if key.as_str() == HEALTHCHECK_PATH_VAR {
                check_health_path(value.expose())?;
            }
        }
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("set_config", %app, release = tracing::field::Empty);
        async {
            let mut config = self.inner.store.get_config(app).await?;
            if config.apply(&update).is_empty() {
                return Ok(None);
            }
            config.check_size()?;
            let description = match (update.set.is_empty(), update.unset.is_empty()) {
                (false, true) => format!("Set {} config vars", keys_of(&update)),
                (true, false) => format!("Remove {} config vars", keys_of(&update)),
                _ => format!("Update {} config vars", keys_of(&update)),
            };
            let base = match self.inner.store.current_release(app).await? {
                Some(r) => Some(r),
                None => self
                    .inner
                    .store
                    .list_releases(app, ListReleases::newest(1))
                    .await?
                    .pop(),
            };
            let Some(base) = base else {
                self.inner.store.set_config(app, config).await?;
                self.emit(app, EventKind::ConfigChanged, None, description)
                    .await;
                return Ok(None);
            };
            let release = self
                .inner
                .store
                .append_release(NewRelease {
                    app: app.clone(),
                    build: base.build,
                    config,
                    description: description.clone(),
                })
                .await?;
            tracing::Span::current().record("release", tracing::field::display(release.version));
            self.emit(
                app,
                EventKind::ConfigChanged,
                Some(release.version),
                format!("{description} ({})", release.version),
            )
            .await;
            self.release_phase(&release, &progress).await?;
            self.rollout(&release, None, true, &progress).await?;
            Ok(Some(
                self.inner.store.get_release(app, release.version).await?,
            ))
        }
        .instrument(span)
        .await
    }

    /// Changes the formation (`web=3 worker=1`); no release is made. Scaling up starts and
    /// health-checks the new processes before they get traffic; scaling down takes processes
    /// out of the route, drains them and stops the highest indexes.
    ///
    /// Errors: `InvalidInput` for a process type the current release does not have.
    pub async fn scale(
        &self,
        app: &AppName,
        changes: Formation,
        progress: Progress,
    ) -> Result<Formation> {
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("scale", %app);
        async {
            let current = self.inner.store.current_release(app).await?;
            let mut formation = match &current {
                Some(r) => self.formation_for(r).await?,
                None => self.inner.store.get_formation(app).await?,
            };
            for (ty, n) in changes.iter() {
                if ty.is_release() {
                    return Err(Error::invalid(
                        "the release process type runs once per release and cannot be scaled",
                    ));
                }
                if let Some(r) = &current {
                    if r.build.procfile.command(ty).is_none() {
                        let types: Vec<String> = r
                            .build
                            .procfile
                            .entries()
                            .map(|(t, _)| t.to_string())
                            .collect();
                        return Err(Error::invalid(format!(
                            "no process type \"{ty}\" in {} (its Procfile has: {})",
                            r.version,
                            types.join(", ")
                        )));
                    }
                }
                formation.set(ty.clone(), n)?;
            }
            match &current {
                // Type by type: the stored formation records each change once it runs, so a
                // failure part-way leaves the formation saying what actually runs.
                Some(release) => {
                    let mut stored = self.inner.store.get_formation(app).await?;
                    for (ty, n) in changes.iter() {
                        let mut one = Formation::new();
                        one.set(ty.clone(), n)?;
                        self.apply_scale(release, &one, &progress).await?;
                        stored.set(ty.clone(), n)?;
                        self.inner.store.set_formation(app, stored.clone()).await?;
                    }
                }
                None => {
                    self.inner
                        .store
                        .set_formation(app, formation.clone())
                        .await?
                }
            }
            self.emit(
                app,
                EventKind::Scaled,
                current.as_ref().map(|r| r.version),
                format!("Scaled to {formation}"),
            )
            .await;
            Ok(formation)
        }
        .instrument(span)
        .await
    }

    async fn apply_scale(
        &self,
        release: &Release,
        changes: &Formation,
        progress: &Progress,
    ) -> Result<()> {
        let app = &release.app;
        let s = &self.inner.settings;
        for (ty, n) in changes.iter() {
            let running: Vec<Instance> = self
                .inner
                .scheduler
                .list(Some(app))
                .await?
                .into_iter()
                .filter(|i| &i.process_type == ty && i.release == release.version)
                .collect();
            let have: BTreeSet<u32> = running.iter().map(|i| i.index).collect();
            let missing: Vec<u32> = (1..=n).filter(|i| !have.contains(i)).collect();
            if !missing.is_empty() {
                self.say(
                    app,
                    progress,
                    "scale",
                    &format!("-----> Starting {} {ty} process(es)", missing.len()),
                )
                .await;
                let started = self
                    .inner
                    .scheduler
                    .start(StartRequest::new(release.clone(), ty.clone(), missing))
                    .await?;
                if let Err(e) = self.wait_healthy(release, &started).await {
                    let ids = started.iter().map(|i| i.id.clone()).collect();
                    let _ = self
                        .inner
                        .scheduler
                        .stop(StopRequest::new(ids, Duration::from_secs(1)))
                        .await;
                    return Err(Error::deploy_failed(format!(
                        "scaling {ty} failed: {}",
                        e.message()
                    )));
                }
            }
            let mut seen = BTreeSet::new();
            let mut extra: Vec<Instance> = running
                .into_iter()
                .filter(|i| i.index > n || !seen.insert(i.index))
                .collect();
            extra.sort_by_key(|i| std::cmp::Reverse(i.index));
            if ty.is_web() {
                let leaving: BTreeSet<_> = extra.iter().map(|i| i.id.clone()).collect();
                let mut instances = self.inner.scheduler.list(Some(app)).await?;
                instances.retain(|i| !leaving.contains(&i.id));
                self.set_route(app, web_endpoints(&instances, release.version))
                    .await?;
            }
            if !extra.is_empty() {
                self.say(
                    app,
                    progress,
                    "scale",
                    &format!("-----> Stopping {} {ty} process(es)", extra.len()),
                )
                .await;
                if ty.is_web() {
                    let addrs = extra.iter().filter_map(|i| i.address).collect();
                    self.inner
                        .router
                        .drain(DrainRequest::new(addrs, s.drain_timeout))
                        .await?;
                }
                let ids = extra.iter().map(|i| i.id.clone()).collect();
                self.inner
                    .scheduler
                    .stop(StopRequest::new(ids, s.stop_grace))
                    .await?;
            }
        }
        Ok(())
    }

    /// Rolls back to `target` (default: the newest succeeded release before the current one)
    /// by making a new release with the target's build and config (history only grows).
    ///
    /// Errors: `NotFound` (no such release), `Conflict` (nothing to roll back to).
    pub async fn rollback(
        &self,
        app: &AppName,
        target: Option<Version>,
        progress: Progress,
    ) -> Result<Release> {
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("rollback", %app, release = tracing::field::Empty);
        async {
            let current = self.inner.store.current_release(app).await?;
            let target = match target {
                Some(v) => self.inner.store.get_release(app, v).await?,
                None => {
                    let Some(cur) = &current else {
                        return Err(Error::conflict(format!(
                            "app \"{app}\" has no release to roll back from"
                        )));
                    };
                    let older = self
                        .inner
                        .store
                        .list_releases(app, ListReleases::newest(100).before(cur.version))
                        .await?;
                    older
                        .into_iter()
                        .find(|r| r.status == DeployStatus::Succeeded)
                        .ok_or_else(|| {
                            Error::conflict(format!(
                                "app \"{app}\" has no earlier successful release to roll back to"
                            ))
                        })?
                }
            };
            let release = self
                .inner
                .store
                .append_release(NewRelease {
                    app: app.clone(),
                    build: target.build.clone(),
                    config: target.config.clone(),
                    description: format!("Rollback to {}", target.version),
                })
                .await?;
            tracing::Span::current().record("release", tracing::field::display(release.version));
            self.emit(
                app,
                EventKind::ReleaseCreated,
                Some(release.version),
                format!(
                    "Release {} created (rollback to {})",
                    release.version, target.version
                ),
            )
            .await;
            let outcome = match self.release_phase(&release, &progress).await {
                Ok(()) => self.rollout(&release, None, true, &progress).await,
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                // The failed rollback must not leave the app with the target's config: the
                // next deploy would silently lose the vars set since.
                if let Some(cur) = &current {
                    self.inner.store.set_config(app, cur.config.clone()).await?;
                }
                return Err(e);
            }
            self.prune(app).await;
            self.inner.store.get_release(app, release.version).await
        }
        .instrument(span)
        .await
    }

    /// Restarts the current release's processes (all, or one type) without downtime: new
    /// processes start and pass health checks before the old ones are drained and stopped.
    pub async fn restart(
        &self,
        app: &AppName,
        only: Option<ProcessType>,
        progress: Progress,
    ) -> Result<()> {
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("restart", %app);
        async {
            let current = self
                .inner
                .store
                .current_release(app)
                .await?
                .ok_or_else(|| Error::conflict(format!("app \"{app}\" has no running release")))?;
            self.rollout(&current, only.as_ref(), false, &progress)
                .await
        }
        .instrument(span)
        .await
    }

    /// Runs a one-off command in the current release's environment (`heroku run`). Its output
    /// streams through the returned handle and is also written to the app's log, line by line,
    /// as `app[run.0]`.
    pub async fn run(&self, app: &AppName, command: Vec<String>) -> Result<RunHandle> {
        if command.is_empty() || command[0].is_empty() {
            return Err(Error::invalid("command must not be empty"));
        }
        let current = self
            .inner
            .store
            .current_release(app)
            .await?
            .ok_or_else(|| {
                Error::conflict(format!(
                    "app \"{app}\" has no running release to run a command in"
                ))
            })?;
        self.log(
            app,
            "api",
            format!("Starting one-off process with {}", current.version),
        )
        .await;
        let mut handle = self
            .inner
            .scheduler
            .run_once(
                RunRequest::new(current, command).with_timeout(self.inner.settings.run_timeout),
            )
            .await?;
        // The run's output also reaches the app's log, as `app[run.0]` lines.
        let logs = self.inner.logs.clone();
        let run_app = app.clone();
        handle.output = handle
            .output
            .then(move |chunk| {
                let logs = logs.clone();
                let app = run_app.clone();
                async move {
                    for l in chunk.text.lines() {
                        let source = LogSource::App {
                            process_type: ProcessType::run(),
                            index: 0,
                        };
                        let _ = logs.append(LogLine::new(app.clone(), source, l)).await;
                    }
                    chunk
                }
            })
            .boxed();
        Ok(handle)
    }

    // -----------------------------------------------------------------------------------------
    // Domains, releases, logs

    /// Adds a custom domain and routes it.
    ///
    /// Errors: `Conflict` if another app has it (or it is another app's default host).
    pub async fn add_domain(&self, app: &AppName, domain: Domain) -> Result<()> {
        let _g = self.lock_app(app).await;
        let base = self.inner.settings.base_domain.as_str();
        let suffix = format!(".{base}");
        if let Some(owner) = domain.as_str().strip_suffix(&suffix) {
            if owner != app.as_str() && AppName::new(owner).is_ok() {
                return Err(Error::conflict(format!(
                    "domain \"{domain}\" is the default hostname of app \"{owner}\""
                )));
            }
        }
        // Names under the base domain belong to the platform (every app's default host lives
        // there), and a wildcard over it would take the hosts of apps yet to come.
        let covers_base = match domain.as_str().strip_prefix("*.") {
            Some(parent) => base == parent || base.ends_with(&format!(".{parent}")),
            None => false,
        };
        if domain.as_str() == base || domain.as_str().ends_with(&suffix) || covers_base {
            return Err(Error::invalid(format!(
                "domain \"{domain}\" is under the platform's base domain \"{base}\": apps answer at APP.{base} already; add a domain outside it"
            )));
        }
        self.inner.store.add_domain(app, domain.clone()).await?;
        if let Err(e) = self.sync_route(app).await {
            let _ = self.inner.store.remove_domain(app, &domain).await;
            let _ = self.sync_route(app).await;
            return Err(e);
        }
        self.emit(
            app,
            EventKind::DomainsChanged,
            None,
            format!("Added domain {domain}"),
        )
        .await;
        Ok(())
    }

    /// Removes a custom domain from the app and its route.
    pub async fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        let _g = self.lock_app(app).await;
        self.inner.store.remove_domain(app, domain).await?;
        self.sync_route(app).await?;
        self.emit(
            app,
            EventKind::DomainsChanged,
            None,
            format!("Removed domain {domain}"),
        )
        .await;
        Ok(())
    }

    /// The app's custom domains.
    pub async fn domains(&self, app: &AppName) -> Result<Vec<Domain>> {
        self.inner.store.list_domains(app).await
    }

    /// Releases, newest first.
    pub async fn releases(&self, app: &AppName, limit: usize) -> Result<Vec<Release>> {
        self.list_releases(app, ListReleases::newest(limit)).await
    }

    /// Releases as `query` asks (newest first; `before` pages through older ones).
    pub async fn list_releases(&self, app: &AppName, query: ListReleases) -> Result<Vec<Release>> {
        self.inner.store.list_releases(app, query).await
    }

    /// One release.
    pub async fn release(&self, app: &AppName, version: Version) -> Result<Release> {
        self.inner.store.get_release(app, version).await
    }

    /// The last `n` log lines of the app.
    pub async fn logs(&self, app: &AppName, n: usize) -> Result<Vec<LogLine>> {
        self.inner.store.get_app(app).await?;
        self.inner.logs.tail(app, n).await
    }

    /// New log lines of the app as they arrive.
    pub async fn follow_logs(&self, app: &AppName) -> Result<BoxStream<'static, LogLine>> {
        self.inner.store.get_app(app).await?;
        self.inner.logs.follow(app).await
    }

    // -----------------------------------------------------------------------------------------
    // Recovery and crash handling

    /// Brings every app back to its desired state, e.g. after a restart of the daemon: adopts
    /// running processes, starts missing ones (health-checked), stops strays, marks releases
    /// left pending by a crash as failed, and rebuilds the route table. Errors of one app are
    /// logged and do not stop the others.
    pub async fn recover(&self) -> Result<()> {
        for app in self.inner.store.list_apps().await? {
            let name = app.name.clone();
            if let Err(e) = self.recover_app(&name).await {
                tracing::error!(app = %name, error = %e, "recovery failed");
                self.log(&name, "api", format!("Recovery failed: {e}"))
                    .await;
            }
        }
        Ok(())
    }

    /// Puts every app's route back from what runs now (the web processes of its current
    /// release that the scheduler adopted), without starting, stopping or probing anything.
    /// Fast: call it before the router starts serving after a restart, so running apps never
    /// answer 404 while [`recover`](Self::recover) converges and checks them.
    pub async fn restore_routes(&self) -> Result<()> {
        for app in self.inner.store.list_apps().await? {
            if let Err(e) = self.sync_route(&app.name).await {
                tracing::warn!(app = %app.name, error = %e, "could not restore the route");
            }
        }
        Ok(())
    }

    async fn recover_app(&self, app: &AppName) -> Result<()> {
        let _g = self.lock_app(app).await;
        let s = &self.inner.settings;
        for r in self
            .inner
            .store
            .list_releases(app, ListReleases::newest(20))
            .await?
        {
            if r.status == DeployStatus::Pending {
                self.inner
                    .store
                    .set_release_status(
                        app,
                        r.version,
                        DeployStatus::Failed("interrupted by a platform restart".into()),
                    )
                    .await?;
            }
        }
        let Some(current) = self.inner.store.current_release(app).await? else {
            // Processes of a first deploy that was interrupted: nothing may serve them.
            return self.inner.scheduler.remove_app(app, s.stop_grace).await;
        };
        let formation = self.formation_for(&current).await?;
        let report = self
            .inner
            .scheduler
            .converge(crate::traits::ConvergeRequest::new(
                current.clone(),
                formation,
                s.stop_grace,
            ))
            .await?;
        if !report.started.is_empty() {
            if let Err(e) = self.wait_healthy(&current, &report.started).await {
                self.log(
                    app,
                    "api",
                    format!("Recovered processes are not healthy yet: {}", e.message()),
                )
                .await;
            }
        }
        self.sync_route(app).await
    }

    /// Spawns the task that turns scheduler instance events (crashes, restarts) into log lines,
    /// platform events and route updates. Run it once per platform.
    pub fn spawn_instance_watcher(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let mut events = self.inner.scheduler.events();
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                let (inst, kind, msg) = match &ev {
                    InstanceEvent::Crashed {
                        instance,
                        exit_code,
                        restart_in,
                        ..
                    } => {
                        let code = exit_code
                            .map(|c| format!(" with code {c}"))
                            .unwrap_or_default();
                        let when = restart_in
                            .map(|d| format!(", restarting in {:.1}s", d.as_secs_f64()))
                            .unwrap_or_default();
                        (
                            instance.clone(),
                            EventKind::InstanceCrashed,
                            format!(
                                "{} exited{code}{when}: state changed from up to crashed",
                                instance.name()
                            ),
                        )
                    }
                    InstanceEvent::Restarted { instance, .. } => (
                        instance.clone(),
                        EventKind::InstanceRestarted,
                        format!(
                            "{} restarted: state changed from crashed to up",
                            instance.name()
                        ),
                    ),
                };
                if me.inner.store.get_app(&inst.app).await.is_err() {
                    continue;
                }
                me.log(&inst.app, "scheduler", &msg).await;
                let _ = me.inner.events.send(PlatformEvent {
                    timestamp: Timestamp::now(),
                    app: inst.app.clone(),
                    kind,
                    release: Some(inst.release),
                    message: msg,
                });
                if inst.process_type.is_web() {
                    let me = me.clone();
                    let restarted = (kind == EventKind::InstanceRestarted).then(|| inst.id.clone());
                    tokio::spawn(async move { me.resync_when_idle(inst.app, restarted).await });
                }
            }
        })
    }

    /// Re-syncs an app's route once no operation holds its lock (operations hold it for as long
    /// as they take; the re-sync waits, it is never dropped). A restarted web instance is
    /// health-checked first, so it gets traffic only once it answers.
    async fn resync_when_idle(&self, app: AppName, restarted: Option<String>) {
        if let Some(id) = restarted {
            let s = &self.inner.settings;
            let web_check = match self.inner.store.current_release(&app).await {
                Ok(Some(r)) => self
                    .web_check(&r)
                    .unwrap_or_else(|_| s.health_check.clone()),
                _ => s.health_check.clone(),
            };
            let check = HealthRequest::new(vec![id], web_check, s.health_timeout);
            if let Err(e) = self.inner.scheduler.wait_healthy(check).await {
                self.log(
                    &app,
                    "scheduler",
                    format!("Restarted process is not healthy: {}", e.message()),
                )
                .await;
            }
        }
        let _g = self.lock_app(&app).await;
        if let Err(e) = self.sync_route(&app).await {
            tracing::warn!(%app, error = %e, "route re-sync failed");
        }
    }

    /// Instances of the app in a given state (helper for status displays).
    pub async fn instances(&self, app: &AppName) -> Result<Vec<Instance>> {
        self.inner.store.get_app(app).await?;
        let mut v = self.inner.scheduler.list(Some(app)).await?;
        v.retain(|i| i.state != InstanceState::Stopped);
        Ok(v)
    }
}
