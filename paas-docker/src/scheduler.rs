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

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum,
    HostConfig, HostConfigLogConfig, NetworkCreateRequest, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, RenameContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures::stream::BoxStream;
use futures::StreamExt;
use paas_core::{
    AppName, ConvergeReport, ConvergeRequest, Error, HealthCheck, HealthRequest, Instance,
    InstanceEvent, InstanceState, LogSink, OutputStream, ProcessType, Release, Result, RunHandle,
    RunOutput, RunRequest, Scheduler, StartRequest, StopRequest, Timestamp, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

use crate::common::{
    docker_error, image_default_command, is_not_found, is_status, labels, parse_rfc3339_nanos,
    short_suffix, BACKEND,
};
use crate::logs::{lock, LogFollowers, LogTarget};

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

#[derive(Debug, Default)]
struct RestartState {
    crashes: u32,
    pending: bool,
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

    /// Removes the one-off run containers this platform id left behind (a daemon that died
    /// during `paas run` leaves its container running, without its time limit). Call it at
    /// start, before anything runs. Returns how many it removed.
    pub async fn remove_orphaned_runs(&self) -> Result<usize> {
        let runs = self.inner.list_containers(None, labels::KIND_RUN).await?;
        let mut removed = 0;
        for id in runs.into_iter().filter_map(|c| c.id) {
            self.inner.remove_now(&id).await;
            removed += 1;
        }
        Ok(removed)
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

fn target_of_labels(id: &str, l: &HashMap<String, String>) -> Option<LogTarget> {
    Some(LogTarget {
        id: id.to_string(),
        app: AppName::new(l.get(labels::APP)?.as_str()).ok()?,
        process_type: ProcessType::new(l.get(labels::PROCESS_TYPE)?.as_str()).ok()?,
        index: l.get(labels::INDEX)?.parse().ok()?,
    })
}

fn target_of_summary(c: &ContainerSummary) -> Option<LogTarget> {
    target_of_labels(c.id.as_deref()?, c.labels.as_ref()?)
}

const STOPPING_SUFFIX: &str = "-stopping";
const CREATED_MS_LABEL: &str = "paas.created-ms";

/// Sourced before every Procfile command (Heroku's `.profile.d` convention); `$0` is the
/// command, run by a fresh shell that replaces this one.
const PROFILE_WRAPPER: &str = "for f in /app/.profile.d/*.sh; do if [ -r \"$f\" ]; then . \"$f\"; fi; done; exec /bin/sh -c \"$0\"";

impl Inner {
    fn base_filters(&self, kind: &str, app: Option<&AppName>) -> HashMap<String, Vec<String>> {
        let mut label = vec![
            format!("{}={}", labels::PLATFORM, self.settings.platform_id),
            format!("{}={kind}", labels::KIND),
        ];
        if let Some(app) = app {
            label.push(format!("{}={app}", labels::APP));
        }
        HashMap::from([("label".to_string(), label)])
    }

    async fn list_containers(
        &self,
        app: Option<&AppName>,
        kind: &str,
    ) -> Result<Vec<ContainerSummary>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(self.base_filters(kind, app)),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| docker_error(e, "list"))
    }

    fn instance_from_summary(&self, c: &ContainerSummary) -> Option<Instance> {
        let l = c.labels.as_ref()?;
        let t = target_of_labels(c.id.as_deref()?, l)?;
        let release = Version(l.get(labels::RELEASE)?.parse().ok()?);
        let stopping = c
            .names
            .as_ref()
            .is_some_and(|n| n.iter().any(|n| n.ends_with(STOPPING_SUFFIX)));
        let state = if stopping {
            InstanceState::Stopping
        } else {
            match c.state {
                Some(ContainerSummaryStateEnum::RUNNING)
                | Some(ContainerSummaryStateEnum::PAUSED) => InstanceState::Running,
                Some(ContainerSummaryStateEnum::CREATED)
                | Some(ContainerSummaryStateEnum::RESTARTING) => InstanceState::Starting,
                Some(ContainerSummaryStateEnum::REMOVING)
                | Some(ContainerSummaryStateEnum::STOPPING) => InstanceState::Stopping,
                _ => InstanceState::Crashed,
            }
        };
        let address = if t.process_type.is_web() && state == InstanceState::Running {
            match self.settings.address_mode {
                AddressMode::ContainerIp => c
                    .network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref())
                    .and_then(|n| n.get(&self.settings.network))
                    .and_then(|e| e.ip_address.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, self.port_of(l))),
                AddressMode::PublishedLoopback => c.ports.as_ref().and_then(|ports| {
                    ports
                        .iter()
                        .find(|p| {
                            p.private_port == self.port_of(l)
                                && p.public_port.is_some()
                                && p.ip.as_deref().is_none_or(|ip| ip == "127.0.0.1")
                        })
                        .and_then(|p| p.public_port)
                        .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
                }),
            }
        } else {
            None
        };
        Some(Instance {
            id: t.id,
            app: t.app,
            release,
            process_type: t.process_type,
            index: t.index,
            address,
            state,
            started_at: started_at_of(l, c.created),
        })
    }

    fn instance_from_inspect(&self, c: &ContainerInspectResponse) -> Option<Instance> {
        let l = c.config.as_ref()?.labels.as_ref()?;
        let t = target_of_labels(c.id.as_deref()?, l)?;
        let release = Version(l.get(labels::RELEASE)?.parse().ok()?);
        let st = c.state.as_ref();
        let running = st.and_then(|s| s.running).unwrap_or(false);
        let stopping = c
            .name
            .as_deref()
            .is_some_and(|n| n.ends_with(STOPPING_SUFFIX));
        let state = if stopping {
            InstanceState::Stopping
        } else if running {
            InstanceState::Running
        } else if st
            .and_then(|s| s.started_at.as_deref())
            .is_some_and(|s| !s.starts_with("0001"))
        {
            InstanceState::Crashed
        } else {
            InstanceState::Starting
        };
        let address = if t.process_type.is_web() && running {
            let ns = c.network_settings.as_ref();
            match self.settings.address_mode {
                AddressMode::ContainerIp => ns
                    .and_then(|n| n.networks.as_ref())
                    .and_then(|n| n.get(&self.settings.network))
                    .and_then(|e| e.ip_address.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, self.port_of(l))),
                AddressMode::PublishedLoopback => ns
                    .and_then(|n| n.ports.as_ref())
                    .and_then(|p| p.get(&format!("{}/tcp", self.port_of(l))))
                    .and_then(|b| b.as_ref())
                    .and_then(|b| b.iter().find_map(|b| b.host_port.as_deref()?.parse().ok()))
                    .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            }
        } else {
            None
        };
        Some(Instance {
            id: t.id,
            app: t.app,
            release,
            process_type: t.process_type,
            index: t.index,
            address,
            state,
            started_at: started_at_of(l, None),
        })
    }

    fn port_of(&self, l: &HashMap<String, String>) -> u16 {
        l.get(labels::PORT)
            .and_then(|p| p.parse().ok())
            .unwrap_or(self.settings.web_port)
    }

    fn is_ours(&self, l: Option<&HashMap<String, String>>) -> bool {
        l.is_some_and(|l| {
            l.get(labels::PLATFORM) == Some(&self.settings.platform_id)
                && l.get(labels::KIND).map(String::as_str) == Some(labels::KIND_INSTANCE)
        })
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(docker_error(e, "inspect")),
        }
    }

    /// The image's default command string, cached per image reference.
    async fn image_default(&self, image: &str) -> Option<String> {
        if let Some(v) = lock(&self.image_defaults).get(image) {
            return v.clone();
        }
        let v = match self.docker.inspect_image(image).await {
            Ok(img) => img
                .config
                .and_then(|c| image_default_command(c.entrypoint.as_deref(), c.cmd.as_deref())),
            Err(_) => return None,
        };
        lock(&self.image_defaults).insert(image.to_string(), v.clone());
        v
    }

    fn security(&self, limits: &ProcessLimits) -> HostConfig {
        HostConfig {
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: if self.settings.cap_add.is_empty() {
                None
            } else {
                Some(self.settings.cap_add.clone())
            },
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            memory: limits.memory_bytes,
            memory_swap: limits.memory_bytes,
            cpu_shares: limits.cpu_shares,
            cpu_period: limits.cpu_quota_us.map(|_| 100_000),
            cpu_quota: limits.cpu_quota_us,
            pids_limit: limits.pids,
            init: Some(self.settings.init),
            network_mode: Some(self.settings.network.clone()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), self.settings.log_max_size.clone()),
                    ("max-file".to_string(), "2".to_string()),
                ])),
            }),
            binds: None,
            mounts: None,
            ..Default::default()
        }
    }

    fn container_labels(
        &self,
        kind: &str,
        release: &Release,
        ty: &ProcessType,
        index: u32,
    ) -> HashMap<String, String> {
        HashMap::from([
            (labels::PLATFORM.into(), self.settings.platform_id.clone()),
            (labels::KIND.into(), kind.into()),
            (labels::APP.into(), release.app.to_string()),
            (labels::RELEASE.into(), release.version.0.to_string()),
            (labels::PROCESS_TYPE.into(), ty.to_string()),
            (labels::INDEX.into(), index.to_string()),
            (labels::PORT.into(), self.settings.web_port.to_string()),
            (labels::BUILD.into(), release.build.id.to_string()),
            (CREATED_MS_LABEL.into(), Timestamp::now().0.to_string()),
        ])
    }

    async fn create_instance(
        &self,
        release: &Release,
        ty: &ProcessType,
        index: u32,
    ) -> Result<String> {
        let command = release.build.procfile.command(ty).ok_or_else(|| {
            Error::invalid(format!(
                "release {} of app \"{}\" has no process type \"{ty}\"",
                release.version, release.app
            ))
        })?;
        let image = release.build.artifact.image.clone();
        let (entrypoint, cmd) = if self.image_default(&image).await.as_deref() == Some(command) {
            (None, None)
        } else {
            (
                Some(vec!["/bin/sh".to_string(), "-c".to_string()]),
                Some(vec![PROFILE_WRAPPER.to_string(), command.to_string()]),
            )
        };
        let mut env: Vec<String> = release
            .config
            .to_env()
            .into_iter()
            .filter(|(k, _)| k != "PORT" && k != "DYNO")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("DYNO={ty}.{index}"));
        let port = self.settings.web_port;
        let mut host = self.security(self.settings.limits_for(ty));
        let mut exposed = None;
        if ty.is_web() {
            env.push(format!("PORT={port}"));
            exposed = Some(vec![format!("{port}/tcp")]);
            if self.settings.address_mode == AddressMode::PublishedLoopback {
                host.port_bindings = Some(HashMap::from([(
                    format!("{port}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )]));
            }
        }
        let name = format!(
            "{}-{}-{ty}.{index}-v{}-{}",
            self.settings.platform_id,
            release.app,
            release.version.0,
            short_suffix()
        );
        let body = ContainerCreateBody {
            image: Some(image),
            entrypoint,
            cmd,
            env: Some(env),
            user: Some(self.settings.user.clone()),
            labels: Some(self.container_labels(labels::KIND_INSTANCE, release, ty, index)),
            exposed_ports: exposed,
            host_config: Some(host),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| docker_error(e, "start"))?;
        Ok(created.id)
    }

    async fn start_one(
        self: &Arc<Self>,
        release: &Release,
        ty: &ProcessType,
        index: u32,
    ) -> Result<Instance> {
        let id = self.create_instance(release, ty, index).await?;
        let started = async {
            self.docker
                .start_container(&id, None)
                .await
                .map_err(|e| docker_error(e, "start"))?;
            let c = self.inspect(&id).await?.ok_or_else(|| {
                Error::internal("container vanished after start").with_backend(BACKEND)
            })?;
            self.instance_from_inspect(&c).ok_or_else(|| {
                Error::internal("started container lacks labels").with_backend(BACKEND)
            })
        }
        .await;
        match started {
            Ok(instance) => {
                self.logs.follow(
                    LogTarget {
                        id: id.clone(),
                        app: instance.app.clone(),
                        process_type: instance.process_type.clone(),
                        index,
                    },
                    None,
                );
                Ok(instance)
            }
            Err(e) => {
                self.remove_now(&id).await;
                Err(e)
            }
        }
    }

    async fn remove_now(&self, id: &str) {
        let _ = self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
        lock(&self.restarts).remove(id);
        self.logs.forget(id);
    }

    async fn stop_one(&self, id: &str, grace: Duration) -> Result<()> {
        let Some(c) = self.inspect(id).await? else {
            return Ok(());
        };
        if !self.is_ours(c.config.as_ref().and_then(|c| c.labels.as_ref())) {
            return Ok(());
        }
        let full_id = c.id.clone().unwrap_or_else(|| id.to_string());
        let name = c.name.clone().unwrap_or_default();
        let name = name.trim_start_matches('/');
        if !name.ends_with(STOPPING_SUFFIX) {
            let renamed = self
                .docker
                .rename_container(
                    &full_id,
                    RenameContainerOptions {
                        name: format!("{name}{STOPPING_SUFFIX}"),
                    },
                )
                .await;
            if let Err(e) = renamed {
                if is_not_found(&e) {
                    return Ok(());
                }
            }
        }
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if running && !grace.is_zero() {
            let term = self
                .docker
                .kill_container(
                    &full_id,
                    Some(KillContainerOptions {
                        signal: "SIGTERM".into(),
                    }),
                )
                .await;
            if term.is_ok() {
                let mut wait = self.docker.wait_container(
                    &full_id,
                    Some(WaitContainerOptions {
                        condition: "not-running".into(),
                    }),
                );
                if tokio::time::timeout(grace, wait.next()).await.is_ok() {
                    self.logs.settle(&full_id, Duration::from_secs(2)).await;
                }
            }
        }
        match self
            .docker
            .remove_container(
                &full_id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) || is_status(&e, 409) => {}
            Err(e) => return Err(docker_error(e, "stop")),
        }
        lock(&self.restarts).remove(&full_id);
        self.logs.forget(&full_id);
        Ok(())
    }

    fn backoff(&self, crashes: u32) -> Duration {
        let base = self.settings.restart_backoff_base;
        let factor = 1u32.checked_shl(crashes.min(20)).unwrap_or(u32::MAX);
        base.saturating_mul(factor)
            .min(self.settings.restart_backoff_max)
    }

    /// Handles an exited instance: emits `Crashed`, waits the backoff, restarts it, emits
    /// `Restarted`. Deduplicated per container.
    async fn handle_exit(self: Arc<Self>, id: String) {
        {
            let mut r = lock(&self.restarts);
            let st = r.entry(id.clone()).or_default();
            if st.pending {
                return;
            }
            st.pending = true;
        }
        let clear = |this: &Arc<Self>| {
            if let Some(st) = lock(&this.restarts).get_mut(&id) {
                st.pending = false;
            }
        };
        let Ok(Some(c)) = self.inspect(&id).await else {
            lock(&self.restarts).remove(&id);
            return;
        };
        if !self.is_ours(c.config.as_ref().and_then(|c| c.labels.as_ref()))
            || c.name
                .as_deref()
                .is_some_and(|n| n.ends_with(STOPPING_SUFFIX))
            || c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
        {
            clear(&self);
            return;
        }
        let st = c.state.as_ref();
        let ran_for = match (
            st.and_then(|s| s.started_at.as_deref())
                .and_then(parse_rfc3339_nanos),
            st.and_then(|s| s.finished_at.as_deref())
                .and_then(parse_rfc3339_nanos),
        ) {
            (Some(a), Some(b)) if b >= a => {
                Duration::from_nanos((b - a).min(u64::MAX as i128) as u64)
            }
            _ => Duration::ZERO,
        };
        let delay = {
            let mut r = lock(&self.restarts);
            let st = r.entry(id.clone()).or_default();
            if ran_for >= self.settings.restart_stable_after {
                st.crashes = 0;
            }
            let d = self.backoff(st.crashes);
            st.crashes = st.crashes.saturating_add(1);
            d
        };
        let Some(mut instance) = self.instance_from_inspect(&c) else {
            clear(&self);
            return;
        };
        instance.state = InstanceState::Crashed;
        instance.address = None;
        let exit_code = st.and_then(|s| s.exit_code);
        tracing::info!(app = %instance.app, instance = %instance.name(), ?exit_code, ?delay, "instance crashed; restarting after backoff");
        let _ = self.events.send(InstanceEvent::Crashed {
            instance: instance.clone(),
            exit_code,
            restart_in: Some(delay),
            at: Timestamp::now(),
        });
        tokio::time::sleep(delay).await;
        if self.closed.load(Ordering::SeqCst) {
            clear(&self);
            return;
        }
        let Ok(Some(c)) = self.inspect(&id).await else {
            lock(&self.restarts).remove(&id);
            return;
        };
        if c.name
            .as_deref()
            .is_some_and(|n| n.ends_with(STOPPING_SUFFIX))
            || c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
        {
            clear(&self);
            return;
        }
        let restarted_at = now_ns();
        let result = self.docker.start_container(&id, None).await;
        clear(&self);
        if let Err(e) = result {
            tracing::warn!(container = %id, error = %e, "restarting a crashed instance failed");
            return;
        }
        if let Ok(Some(c)) = self.inspect(&id).await {
            if let Some(instance) = self.instance_from_inspect(&c) {
                self.logs.follow(
                    LogTarget {
                        id: id.clone(),
                        app: instance.app.clone(),
                        process_type: instance.process_type.clone(),
                        index: instance.index,
                    },
                    Some(restarted_at - 1_000_000_000),
                );
                let _ = self.events.send(InstanceEvent::Restarted {
                    instance,
                    at: Timestamp::now(),
                });
            }
        }
    }

    /// Looks for exited instances (missed events, containers adopted from an earlier run).
    async fn sweep(self: &Arc<Self>) {
        let Ok(all) = self.list_containers(None, labels::KIND_INSTANCE).await else {
            return;
        };
        for c in all {
            let exited = matches!(
                c.state,
                Some(ContainerSummaryStateEnum::EXITED) | Some(ContainerSummaryStateEnum::DEAD)
            );
            let stopping = c
                .names
                .as_ref()
                .is_some_and(|n| n.iter().any(|n| n.ends_with(STOPPING_SUFFIX)));
            if let Some(id) = c.id.clone() {
                if exited && !stopping {
                    tokio::spawn(self.clone().handle_exit(id));
                } else if c.state == Some(ContainerSummaryStateEnum::RUNNING) {
                    if let Some(t) = target_of_summary(&c) {
                        self.logs.follow(t, Some(now_ns()));
                    }
                }
            }
        }
    }
}

fn started_at_of(l: &HashMap<String, String>, created_secs: Option<i64>) -> Timestamp {
    l.get(CREATED_MS_LABEL)
        .and_then(|v| v.parse().ok())
        .map(Timestamp)
        .or_else(|| created_secs.map(|s| Timestamp(s.max(0) as u64 * 1000)))
        .unwrap_or_default()
}

/// The background watcher: engine `die` events plus a periodic sweep.
async fn watch(inner: Arc<Inner>) {
    loop {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(1))
            .unwrap_or(0);
        let mut filters = inner.base_filters(labels::KIND_INSTANCE, None);
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert("event".into(), vec!["die".into()]);
        let mut events = inner.docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }));
        inner.sweep().await;
        let mut sweep = tokio::time::interval(inner.settings.sweep_interval);
        sweep.tick().await;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        if let Some(id) = ev.actor.and_then(|a| a.id) {
                            tokio::spawn(inner.clone().handle_exit(id));
                        }
                    }
                    Some(Err(_)) | None => break,
                },
                _ = sweep.tick() => inner.sweep().await,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn probe(addr: SocketAddr, check: &HealthCheck) -> bool {
    let connect =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await;
    let Ok(Ok(mut sock)) = connect else {
        return false;
    };
    let path = match check {
        HealthCheck::Running | HealthCheck::Tcp => return true,
        HealthCheck::Http { path } => path,
    };
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return false;
    }
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: paas-health\r\nConnection: close\r\n\r\n"
    );
    if sock.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = Vec::with_capacity(64);
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = [0u8; 64];
        while head.len() < 12 {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() || head.len() < 12 || !head.starts_with(b"HTTP/") {
        return false;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .is_some_and(|code| (100..400).contains(&code))
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
        let deadline = Instant::now() + req.deadline;
        let check = req.check.clone();
        let one = |id: String| {
            let inner = self.inner.clone();
            let check = check.clone();
            async move {
                loop {
                    let c = inner
                        .inspect(&id)
                        .await?
                        .ok_or_else(|| Error::not_found(format!("no instance with id \"{id}\"")))?;
                    let instance = inner
                        .instance_from_inspect(&c)
                        .ok_or_else(|| Error::not_found(format!("no instance with id \"{id}\"")))?;
                    let st = c.state.as_ref();
                    let running = st.and_then(|s| s.running).unwrap_or(false);
                    let exited = !running
                        && st
                            .and_then(|s| s.finished_at.as_deref())
                            .is_some_and(|f| !f.starts_with("0001"));
                    if exited {
                        return Err(Error::deploy_failed(format!(
                            "instance {} exited with code {} before becoming healthy",
                            instance.name(),
                            st.and_then(|s| s.exit_code).unwrap_or(-1)
                        ))
                        .with_backend(BACKEND)
                        .with_operation("wait_healthy"));
                    }
                    if running {
                        let healthy = match (&check, instance.address) {
                            (HealthCheck::Running, _) => true,
                            // A web process without an address cannot be routed: not healthy
                            // (yet). Other processes have nothing to probe.
                            (_, None) => !instance.process_type.is_web(),
                            (c, Some(addr)) => probe(addr, c).await,
                        };
                        if healthy {
                            return Ok(None);
                        }
                    }
                    if Instant::now() >= deadline {
                        return Ok(Some(instance.name()));
                    }
                    tokio::time::sleep(inner.settings.health_interval).await;
                }
            }
        };
        let results = futures::future::join_all(req.instances.iter().cloned().map(one)).await;
        let mut late = Vec::new();
        for r in results {
            if let Some(name) = r? {
                late.push(name);
            }
        }
        if late.is_empty() {
            Ok(())
        } else {
            Err(Error::timeout(format!(
                "instances never became healthy within {:?}: {}",
                req.deadline,
                late.join(", ")
            ))
            .with_backend(BACKEND)
            .with_operation("wait_healthy"))
        }
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
        if req.command.is_empty() || req.command[0].is_empty() {
            return Err(Error::invalid("command must not be empty"));
        }
        if req.command.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid(
                "command arguments must not contain NUL bytes",
            ));
        }
        for k in req.env.keys() {
            paas_core::ConfigKey::new(k.as_str())?;
        }
        let inner = self.inner.clone();
        let release = &req.release;
        let ty = &req.process_type;
        let mut env: BTreeMap<String, String> = release.config.to_env().into_iter().collect();
        env.extend(req.env.clone());
        env.insert("DYNO".into(), format!("{ty}.0"));
        let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut lbl = inner.container_labels(labels::KIND_RUN, release, ty, 0);
        lbl.remove(labels::PORT);
        let body = ContainerCreateBody {
            image: Some(release.build.artifact.image.clone()),
            entrypoint: Some(vec![req.command[0].clone()]),
            cmd: Some(req.command[1..].to_vec()),
            env: Some(env),
            user: Some(inner.settings.user.clone()),
            labels: Some(lbl),
            host_config: Some(inner.security(inner.settings.limits_for(ty))),
            ..Default::default()
        };
        let name = format!(
            "{}-{}-{ty}.0-v{}-{}",
            inner.settings.platform_id,
            release.app,
            release.version.0,
            short_suffix()
        );
        let created = inner
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| docker_error(e, "run_once"))?;
        let id = created.id;
        if let Err(e) = inner.docker.start_container(&id, None).await {
            inner.remove_now(&id).await;
            return Err(docker_error(e, "run_once"));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = {
            let docker = inner.docker.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let mut logs = docker.logs(
                    &id,
                    Some(LogsOptions {
                        follow: true,
                        stdout: true,
                        stderr: true,
                        ..Default::default()
                    }),
                );
                while let Some(item) = logs.next().await {
                    let (stream, message) = match item {
                        Ok(bollard::container::LogOutput::StdOut { message })
                        | Ok(bollard::container::LogOutput::Console { message }) => {
                            (OutputStream::Stdout, message)
                        }
                        Ok(bollard::container::LogOutput::StdErr { message }) => {
                            (OutputStream::Stderr, message)
                        }
                        Ok(_) => continue,
                        Err(_) => break,
                    };
                    let _ = tx.send(RunOutput {
                        stream,
                        text: String::from_utf8_lossy(&message).to_string(),
                    });
                }
            })
        };
        let timeout = req.timeout;
        let exit = async move {
            let wait = async {
                let mut w = inner.docker.wait_container(
                    &id,
                    Some(WaitContainerOptions {
                        condition: "not-running".into(),
                    }),
                );
                match w.next().await {
                    Some(Ok(r)) => Ok(r.status_code),
                    Some(Err(bollard::errors::Error::DockerContainerWaitError {
                        code, ..
                    })) => Ok(code),
                    Some(Err(e)) => Err(docker_error(e, "run_once")),
                    None => Err(Error::internal("engine closed the wait stream")
                        .with_backend(BACKEND)
                        .with_operation("run_once")),
                }
            };
            let outcome = match timeout {
                Some(t) => match tokio::time::timeout(t, wait).await {
                    Ok(r) => r,
                    Err(_) => {
                        let _ = inner
                            .docker
                            .kill_container(
                                &id,
                                Some(KillContainerOptions {
                                    signal: "SIGKILL".into(),
                                }),
                            )
                            .await;
                        Err(
                            Error::timeout(format!("command did not finish within {t:?}"))
                                .with_backend(BACKEND)
                                .with_operation("run_once"),
                        )
                    }
                },
                None => wait.await,
            };
            // All output is read before the container goes away.
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
            inner.remove_now(&id).await;
            outcome.map(|code| i32::try_from(code).unwrap_or(i32::MAX))
        };
        // The wait, the timeout and the removal run in their own task, so they hold whether or
        // not the caller polls `exit` (or drops the handle).
        let exit = tokio::spawn(exit);
        let exit = async move {
            exit.await.unwrap_or_else(|e| {
                Err(Error::internal(format!("one-off run task failed: {e}"))
                    .with_backend(BACKEND)
                    .with_operation("run_once"))
            })
        };
        let output =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) })
                .boxed();
        Ok(RunHandle {
            output,
            exit: Box::pin(exit),
        })
    }

    async fn converge(&self, req: ConvergeRequest) -> Result<ConvergeReport> {
        let release = &req.release;
        let current = self.list(Some(&release.app)).await?;
        let wanted = |i: &Instance| {
            i.release == release.version
                && !i.process_type.is_release()
                && i.index >= 1
                && i.index <= req.formation.get(&i.process_type)
                && release.build.procfile.command(&i.process_type).is_some()
                && i.state != InstanceState::Stopping
        };
        // One keeper per (type, index), preferring a running instance.
        let mut keep: BTreeMap<(ProcessType, u32), &Instance> = BTreeMap::new();
        for i in current.iter().filter(|i| wanted(i)) {
            let key = (i.process_type.clone(), i.index);
            let better = match keep.get(&key) {
                None => true,
                Some(k) => k.state != InstanceState::Running && i.state == InstanceState::Running,
            };
            if better {
                keep.insert(key, i);
            }
        }
        // A kept container that was created but never started (the owner died in between)
        // is started here, or it would hold its slot forever.
        for k in keep.values().filter(|k| k.state == InstanceState::Starting) {
            if let Err(e) = self.inner.docker.start_container(&k.id, None).await {
                tracing::debug!(id = %k.id, error = %e, "converge: start of a created container");
            }
        }
        let mut stop: Vec<&Instance> = current
            .iter()
            .filter(|i| {
                keep.get(&(i.process_type.clone(), i.index))
                    .is_none_or(|k| k.id != i.id)
            })
            .collect();
        let mut report = ConvergeReport::default();
        for (ty, n) in req.formation.iter() {
            if ty.is_release() || release.build.procfile.command(ty).is_none() {
                continue;
            }
            let missing: Vec<u32> = (1..=n)
                .filter(|i| !keep.contains_key(&(ty.clone(), *i)))
                .collect();
            if !missing.is_empty() {
                let started = self
                    .start(StartRequest::new(release.clone(), ty.clone(), missing))
                    .await?;
                report.started.extend(started);
            }
        }
        // Highest indexes first.
        stop.sort_by(|a, b| b.index.cmp(&a.index).then_with(|| a.id.cmp(&b.id)));
        for i in stop {
            self.inner.stop_one(&i.id, req.grace).await?;
            report.stopped.push(i.id.clone());
        }
        Ok(report)
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

    #[tokio::test]
    async fn backoff_is_capped() {
        let docker = Docker::connect_with_local_defaults().unwrap();
        let inner = Inner {
            logs: Arc::new(LogFollowers::new(docker.clone())),
            docker,
            settings: DockerSchedulerSettings {
                restart_backoff_base: Duration::from_secs(1),
                restart_backoff_max: Duration::from_secs(10),
                ..Default::default()
            },
            events: broadcast::channel(1).0,
            restarts: Mutex::new(HashMap::new()),
            image_defaults: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        };
        let d: Vec<u64> = (0..6).map(|c| inner.backoff(c).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(inner.backoff(1000).as_secs(), 10);
    }
}
