//! [`DockerScheduler`]: the reference [`Scheduler`], one container per instance.
//!
//! Every instance container:
//!
//! - carries the labels of [`crate::labels`] (platform id, app, release, process type, index),
//!   so that a scheduler created later on the same engine with the same platform id adopts it
//!   ([`Scheduler::list`] and [`Scheduler::converge`] see it; crash handling and log following
//!   resume) instead of starting a duplicate, and platforms with other ids ignore it;
//! - is named `<platform>-<app>-<type>.<index>-v<release>-<6 hex>` from the validated app name,
//!   so several containers of one (release, type, index) can coexist during a restart;
//! - gets the release's config, `DYNO=web.1`, and for `web` `PORT` (see [`AddressMode`] for how
//!   the router reaches it);
//! - runs with the security defaults: not privileged, all capabilities dropped (the allow-list
//!   [`DockerSchedulerSettings::cap_add`] is empty by default: `PORT` is above 1024 so no
//!   capability is needed), `no-new-privileges`, a non-root user, memory (no swap), CPU shares
//!   and quota and pids limits per process type ([`ProcessLimits`]), nothing mounted from the
//!   host, never the Docker socket, `docker-init` as PID 1 so signals reach the process;
//! - runs its Procfile command as `/bin/sh -c` after sourcing `/app/.profile.d/*.sh` (Heroku's
//!   convention); a `web` command equal to the image's own `ENTRYPOINT`/`CMD` (a Dockerfile
//!   build without a Procfile) runs the image's default unchanged.
//!
//! A background task watches the engine's `die` events (and sweeps periodically, in case an
//! event was missed) and restarts exited instances with capped exponential backoff, reset after
//! a stable run, emitting [`InstanceEvent`]s. Stopping renames a container with a `-stopping`
//! suffix first, so no scheduler mistakes a requested stop for a crash.
mod containers;
mod health;
mod lifecycle;
mod run;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{ContainerSummaryStateEnum, NetworkCreateRequest};
use bollard::Docker;
use futures::stream::BoxStream;
use paas_core::{
    AppName, ConvergeReport, ConvergeRequest, Error, HealthRequest, Instance, InstanceEvent,
    LogSink, ProcessType, Result, RunHandle, RunRequest, Scheduler, StartRequest, StopRequest,
};
use tokio::sync::broadcast;

use crate::common::{docker_error, is_not_found, is_status, labels};
use crate::logs::LogFollowers;
use containers::target_of_summary;
use watch::{watch, RestartState};

/// How the router reaches a web instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AddressMode {
    /// The container's IP on the scheduler's bridge network, port
    /// [`DockerSchedulerSettings::web_port`]. Reachable from the host on Linux; the default.
    #[default]
    ContainerIp,
    /// `web_port` published on `127.0.0.1` with an engine-chosen port (for engines whose
    /// container network is not routable from the host, e.g. Docker Desktop). The port changes
    /// when a crashed instance is restarted; [`InstanceEvent::Restarted`] carries the new one.
    PublishedLoopback,
}

/// Resource limits of one process type's containers. `None` leaves the engine's default
/// (unlimited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Memory limit in bytes (swap is disabled: memory+swap = memory).
    pub memory_bytes: Option<i64>,
    /// Relative CPU weight (`--cpu-shares`, 1024 = one default share).
    pub cpu_shares: Option<i64>,
    /// CPU time per 100 ms period in microseconds (`100_000` = one CPU).
    pub cpu_quota_us: Option<i64>,
    /// Maximum number of processes/threads.
    pub pids: Option<i64>,
}

impl Default for ProcessLimits {
    /// 512 MiB, 1024 shares, one CPU, 256 pids.
    fn default() -> Self {
        ProcessLimits {
            memory_bytes: Some(512 * 1024 * 1024),
            cpu_shares: Some(1024),
            cpu_quota_us: Some(100_000),
            pids: Some(256),
        }
    }
}

/// Configuration of a [`DockerScheduler`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DockerSchedulerSettings {
    /// This platform's id (`^[a-z0-9][a-z0-9_.-]{0,39}$`): a label value on every container and
    /// the first part of container names. Schedulers with the same id on one engine adopt each
    /// other's containers; different ids never touch each other's. Default `paas`.
    pub platform_id: String,
    /// The user-defined bridge network instances join (created if missing). Default `paas`.
    pub network: String,
    /// How web instances are addressed.
    pub address_mode: AddressMode,
    /// `PORT` inside web containers. Default 5000.
    pub web_port: u16,
    /// `user[:group]` processes run as; never root. Default `1000:1000` (the stack's `app`).
    pub user: String,
    /// Limits of process types without an entry in [`DockerSchedulerSettings::limits`].
    pub default_limits: ProcessLimits,
    /// Limits per process type.
    pub limits: BTreeMap<ProcessType, ProcessLimits>,
    /// Capabilities added back after dropping all (`NET_BIND_SERVICE`...). Default none.
    pub cap_add: Vec<String>,
    /// Run `docker-init` as PID 1 (forwards signals, reaps zombies). Default true.
    pub init: bool,
    /// Grace between SIGTERM and SIGKILL when the scheduler itself stops a one-off run past its
    /// timeout. Default 30 s ([`StopRequest`] carries its own grace).
    pub stop_grace: Duration,
    /// Time between health probes. Default 200 ms.
    pub health_interval: Duration,
    /// First restart delay after a crash. Default 1 s.
    pub restart_backoff_base: Duration,
    /// Longest restart delay. Default 5 min.
    pub restart_backoff_max: Duration,
    /// A run at least this long resets the backoff. Default 60 s.
    pub restart_stable_after: Duration,
    /// How often exited instances are looked for besides engine events. Default 15 s.
    pub sweep_interval: Duration,
    /// Log rotation of the engine's json-file driver (`max-size`). Default `10m`.
    pub log_max_size: String,
}

impl Default for DockerSchedulerSettings {
    fn default() -> Self {
        DockerSchedulerSettings {
            platform_id: "paas".into(),
            network: "paas".into(),
            address_mode: AddressMode::default(),
            web_port: 5000,
            user: "1000:1000".into(),
            default_limits: ProcessLimits::default(),
            limits: BTreeMap::new(),
            cap_add: Vec::new(),
            init: true,
            stop_grace: Duration::from_secs(30),
            health_interval: Duration::from_millis(200),
            restart_backoff_base: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(300),
            restart_stable_after: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(15),
            log_max_size: "10m".into(),
        }
    }
}

impl DockerSchedulerSettings {
    /// Settings with `platform_id` and defaults otherwise.
    pub fn new(platform_id: impl Into<String>) -> Self {
        DockerSchedulerSettings {
            platform_id: platform_id.into(),
            ..Default::default()
        }
    }

    /// Takes the values this scheduler shares with the platform (the stop grace) from its
    /// settings, so they are set in one place.
    pub fn for_platform(mut self, platform: &paas_core::PlatformSettings) -> Self {
        self.stop_grace = platform.stop_grace;
        self
    }

    fn validate(&self) -> Result<()> {
        let id = self.platform_id.as_bytes();
        let ok = !id.is_empty()
            && id.len() <= 40
            && (id[0].is_ascii_lowercase() || id[0].is_ascii_digit())
            && id
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b));
        if !ok {
            return Err(Error::invalid(format!(
                "invalid platform_id \"{}\": must match ^[a-z0-9][a-z0-9_.-]{{0,39}}$",
                self.platform_id.escape_debug()
            )));
        }
        let net_ok = !self.network.is_empty()
            && self.network.len() <= 64
            && self
                .network
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !net_ok {
            return Err(Error::invalid(
                "invalid network: must be 1-64 letters, digits, '_', '.' or '-'",
            ));
        }
        let user = self.user.split(':').next().unwrap_or("");
        if user.is_empty() || user == "0" || user == "root" {
            return Err(Error::invalid(
                "invalid user: app processes must not run as root (uid 0)",
            ));
        }
        if self.web_port == 0 {
            return Err(Error::invalid("invalid web_port: must be 1-65535"));
        }
        for cap in &self.cap_add {
            if cap.is_empty() || !cap.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                return Err(Error::invalid(format!(
                    "invalid capability \"{}\": expected a name like NET_BIND_SERVICE",
                    cap.escape_debug()
                )));
            }
            if matches!(cap.trim_start_matches("CAP_"), "SYS_ADMIN" | "ALL") {
                return Err(Error::invalid(format!(
                    "capability \"{cap}\" is not allowed for app containers"
                )));
            }
        }
        Ok(())
    }

    fn limits_for(&self, ty: &ProcessType) -> &ProcessLimits {
        self.limits.get(ty).unwrap_or(&self.default_limits)
    }
}

struct Inner {
    docker: Docker,
    settings: DockerSchedulerSettings,
    events: broadcast::Sender<InstanceEvent>,
    logs: Arc<LogFollowers>,
    restarts: Mutex<HashMap<String, RestartState>>,
    /// image ref -> its default command string (see `image_default_command`).
    image_defaults: Mutex<HashMap<String, Option<String>>>,
    closed: AtomicBool,
}

/// Aborts the background tasks when the last clone of the scheduler is dropped.
struct Guard {
    inner: Arc<Inner>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.logs.close();
        self.watcher.abort();
    }
}

/// The reference [`Scheduler`] on the Docker Engine API. Cheap to clone; background tasks
/// stop when the last clone is dropped (containers keep running and are adopted by the next
/// scheduler with the same platform id).
#[derive(Clone)]
pub struct DockerScheduler {
    inner: Arc<Inner>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for DockerScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerScheduler")
            .field("platform_id", &self.inner.settings.platform_id)
            .field("network", &self.inner.settings.network)
            .finish()
    }
}

static NETWORK_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl DockerScheduler {
    /// Validates `settings`, creates the bridge network if missing, adopts the platform's
    /// running containers (crash handling resumes for them) and starts the event watcher.
    ///
    /// Errors: `InvalidInput` for bad settings (the message names the field); `Unavailable`.
    pub async fn new(docker: Docker, settings: DockerSchedulerSettings) -> Result<Self> {
        settings.validate()?;
        ensure_network(&docker, &settings).await?;
        let inner = Arc::new(Inner {
            logs: Arc::new(LogFollowers::new(docker.clone())),
            docker,
            settings,
            events: broadcast::channel(1024).0,
            restarts: Mutex::new(HashMap::new()),
            image_defaults: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        let watcher = tokio::spawn(watch(inner.clone()));
        Ok(DockerScheduler {
            _guard: Arc::new(Guard {
                inner: inner.clone(),
                watcher,
            }),
            inner,
        })
    }

    /// Connects to the local engine ([`crate::connect`]) and creates a scheduler.
    pub async fn connect(settings: DockerSchedulerSettings) -> Result<Self> {
        Self::new(crate::connect().await?, settings).await
    }

    /// Streams every instance's stdout/stderr into `sink` as `app[TYPE.N]` lines: instances
    /// running now (adopted ones from now on), and every instance started or restarted later.
    pub fn with_log_sink(self, sink: Arc<dyn LogSink>) -> Self {
        self.inner.logs.set_sink(sink);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Ok(all) = inner.list_containers(None, labels::KIND_INSTANCE).await {
                let now = now_ns();
                for c in all {
                    if c.state == Some(ContainerSummaryStateEnum::RUNNING) {
                        if let Some(t) = target_of_summary(&c) {
                            inner.logs.follow(t, Some(now));
                        }
                    }
                }
            }
        });
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &DockerSchedulerSettings {
        &self.inner.settings
    }

    /// The engine client.
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }
}

async fn ensure_network(docker: &Docker, settings: &DockerSchedulerSettings) -> Result<()> {
    let _guard = NETWORK_LOCK.lock().await;
    match docker.inspect_network(&settings.network, None).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(docker_error(e, "ensure_network")),
    }
    let req = NetworkCreateRequest {
        name: settings.network.clone(),
        driver: Some("bridge".into()),
        labels: Some(HashMap::from([(
            labels::PLATFORM.to_string(),
            settings.platform_id.clone(),
        )])),
        ..Default::default()
    };
    match docker.create_network(req).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(docker_error(e, "ensure_network")),
    }
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[async_trait]
impl Scheduler for DockerScheduler {
    async fn start(&self, req: StartRequest) -> Result<Vec<Instance>> {
        let release = &req.release;
        if release.build.procfile.command(&req.process_type).is_none() {
            return Err(Error::invalid(format!(
                "release {} of app \"{}\" has no process type \"{}\"",
                release.version, release.app, req.process_type
            )));
        }
        let results = futures::future::join_all(
            req.indexes
                .iter()
                .map(|&i| self.inner.start_one(release, &req.process_type, i)),
        )
        .await;
        let mut started = Vec::new();
        let mut failure = None;
        for r in results {
            match r {
                Ok(i) => started.push(i),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            for i in &started {
                self.inner.remove_now(&i.id).await;
            }
            return Err(e);
        }
        Ok(started)
    }

    async fn wait_healthy(&self, req: HealthRequest) -> Result<()> {
        health::wait_healthy(&self.inner, req).await
    }

    async fn stop(&self, req: StopRequest) -> Result<()> {
        let results = futures::future::join_all(
            req.instances
                .iter()
                .map(|id| self.inner.stop_one(id, req.grace)),
        )
        .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    async fn remove_app(&self, app: &AppName, grace: Duration) -> Result<()> {
        let ids = self
            .list(Some(app))
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        self.stop(StopRequest::new(ids, grace)).await?;
        // One-off runs of the app go too: a destroyed app leaves no container behind.
        for c in self
            .inner
            .list_containers(Some(app), labels::KIND_RUN)
            .await?
        {
            if let Some(id) = c.id {
                self.inner.remove_now(&id).await;
            }
        }
        Ok(())
    }

    async fn list(&self, app: Option<&AppName>) -> Result<Vec<Instance>> {
        let all = self
            .inner
            .list_containers(app, labels::KIND_INSTANCE)
            .await?;
        let mut v: Vec<Instance> = all
            .iter()
            .filter_map(|c| self.inner.instance_from_summary(c))
            .collect();
        paas_core::sort_instances(&mut v);
        Ok(v)
    }

    async fn run_once(&self, req: RunRequest) -> Result<RunHandle> {
        self.inner.run_one_off(req).await
    }

    async fn converge(&self, req: ConvergeRequest) -> Result<ConvergeReport> {
        self.converge_release(req).await
    }

    fn events(&self) -> BoxStream<'static, InstanceEvent> {
        let rx = self.inner.events.subscribe();
        paas_core::stream::broadcast_stream(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_validation() {
        DockerSchedulerSettings::default().validate().unwrap();
        let mut s = DockerSchedulerSettings::new("Bad Id");
        assert!(s.validate().unwrap_err().message().contains("platform_id"));
        s = DockerSchedulerSettings {
            user: "0:0".into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().message().contains("root"));
        s = DockerSchedulerSettings {
            cap_add: vec!["SYS_ADMIN".into()],
            ..Default::default()
        };
        assert!(s.validate().is_err());
    }
}
