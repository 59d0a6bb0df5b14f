//! [`Scheduler`]: runs instances of releases and reports their state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::model::{
    AppName, Formation, HealthPath, Instance, ProcessType, Release, Timestamp, Version,
};

/// How to tell that a process is ready for traffic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HealthCheck {
    /// The process is running (non-web processes).
    Running,
    /// A TCP connect to its address succeeds.
    Tcp,
    /// An HTTP GET of `path` answers with a status from 200 to 399 (redirects count as
    /// healthy); see [`probe`](crate::probe).
    Http {
        /// The path.
        path: HealthPath,
    },
}

impl HealthCheck {
    /// An HTTP check of `path` (see [`HealthPath`] for the rule).
    ///
    /// Errors: `InvalidInput` naming the rule (the value itself is not echoed).
    pub fn http(path: impl Into<String>) -> Result<HealthCheck> {
        Ok(HealthCheck::Http {
            path: HealthPath::new(path)?,
        })
    }
}

/// A request to start instances of one process type of a release.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StartRequest {
    /// The release to run.
    pub release: Release,
    /// The process type; its command comes from the release's build.
    pub process_type: ProcessType,
    /// Indexes to start (`web.1` is index 1).
    pub indexes: Vec<u32>,
}

impl StartRequest {
    /// Start `indexes` of `process_type` of `release`.
    pub fn new(release: Release, process_type: ProcessType, indexes: Vec<u32>) -> Self {
        StartRequest {
            release,
            process_type,
            indexes,
        }
    }
}

/// A request to wait until instances are healthy.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HealthRequest {
    /// Instance ids.
    pub instances: Vec<String>,
    /// The check.
    pub check: HealthCheck,
    /// Give up after this long.
    pub deadline: Duration,
}

impl HealthRequest {
    /// Wait for `instances` to pass `check` within `deadline`.
    pub fn new(instances: Vec<String>, check: HealthCheck, deadline: Duration) -> Self {
        HealthRequest {
            instances,
            check,
            deadline,
        }
    }
}

/// A request to stop instances.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StopRequest {
    /// Instance ids.
    pub instances: Vec<String>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl StopRequest {
    /// Stop `instances` with `grace`.
    pub fn new(instances: Vec<String>, grace: Duration) -> Self {
        StopRequest { instances, grace }
    }
}

/// A request to run a one-off command in a release's environment.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunRequest {
    /// The release (its artifact and config).
    pub release: Release,
    /// The command, as argv (never passed through a shell by the scheduler itself).
    pub command: Vec<String>,
    /// Extra environment on top of the release's config.
    pub env: BTreeMap<String, String>,
    /// Process type used for naming (`run`, or `release` for the release phase).
    pub process_type: ProcessType,
    /// Kill it after this long.
    pub timeout: Option<Duration>,
}

impl RunRequest {
    /// Run `command` in `release`, named `run`.
    pub fn new(release: Release, command: Vec<String>) -> Self {
        RunRequest {
            release,
            command,
            env: BTreeMap::new(),
            process_type: ProcessType::new("run").expect("valid"),
            timeout: None,
        }
    }
    /// Names it as another process type.
    pub fn with_process_type(mut self, ty: ProcessType) -> Self {
        self.process_type = ty;
        self
    }
    /// Sets a timeout.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

/// Which stream a line of a one-off run came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A chunk of a one-off run's output.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunOutput {
    /// Which stream.
    pub stream: OutputStream,
    /// Bytes as text (lossy UTF-8).
    pub text: String,
}

/// A running one-off command: its output as a stream and its exit code as a future.
pub struct RunHandle {
    /// Output as produced. Ends when the process exits.
    pub output: BoxStream<'static, RunOutput>,
    /// The exit code (128+signal if killed; `Timeout` error past the timeout).
    pub exit: BoxFuture<'static, Result<i32>>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunHandle { .. }")
    }
}

/// Desired state for one app.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConvergeRequest {
    /// The release that should run.
    pub release: Release,
    /// How many of each type. Types absent or 0 run nothing; `release` never runs here.
    pub formation: Formation,
    /// Grace for instances that are stopped.
    pub grace: Duration,
}

impl ConvergeRequest {
    /// Converge `release` to `formation`.
    pub fn new(release: Release, formation: Formation, grace: Duration) -> Self {
        ConvergeRequest {
            release,
            formation,
            grace,
        }
    }
}

/// What [`Scheduler::converge`] did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ConvergeReport {
    /// Instances it started.
    pub started: Vec<Instance>,
    /// Ids of instances it stopped.
    pub stopped: Vec<String>,
}

impl ConvergeReport {
    /// A report of what a converge started and stopped.
    pub fn new(started: Vec<Instance>, stopped: Vec<String>) -> Self {
        ConvergeReport { started, stopped }
    }
}

/// Something that happened to an instance without being asked for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum InstanceEvent {
    /// The process exited by itself.
    Crashed {
        /// The instance as it was.
        instance: Instance,
        /// Exit code, if known.
        exit_code: Option<i64>,
        /// When the scheduler will restart it.
        restart_in: Option<Duration>,
        /// When.
        at: Timestamp,
    },
    /// A crashed instance runs again (its address may have changed).
    Restarted {
        /// The instance now.
        instance: Instance,
        /// When.
        at: Timestamp,
    },
}

/// Runs processes: starts instances of releases, checks their health, stops them gracefully,
/// restarts crashed ones, runs one-off commands, and converges to a desired formation.
///
/// Instances carry their app, release, process type and index; a backend that survives a
/// restart of its owner (containers) adopts what runs instead of starting duplicates.
///
/// Implementations: `MemoryScheduler` (paas-core), `DockerScheduler` (paas-docker).
/// Conformance: `paas_core::testkit::scheduler`.
#[async_trait]
pub trait Scheduler: Send + Sync + std::fmt::Debug + 'static {
    /// Starts one instance per index of `req.process_type` of `req.release`. Web instances get
    /// `PORT` and listen on it; every instance gets the release's config plus `DYNO`
    /// (`web.1`). Returns the instances (web ones with an address) once their processes were
    /// started; they need not be healthy yet. Several instances may share (release, type,
    /// index) during a restart; each has its own id.
    ///
    /// Errors: `InvalidInput` if the build has no such process type; `Unavailable`. On error,
    /// instances already started by this call are removed.
    async fn start(&self, req: StartRequest) -> Result<Vec<Instance>>;

    /// Waits until every instance passes `req.check`, or the deadline passes.
    ///
    /// Errors: `Timeout` naming the instances that never became healthy; `DeployFailed` if
    /// one exited; `NotFound` for an unknown id.
    async fn wait_healthy(&self, req: HealthRequest) -> Result<()>;

    /// Stops instances: SIGTERM, up to `grace` for them to exit, then SIGKILL; then removes
    /// them. Idempotent: unknown or already stopped ids are skipped.
    async fn stop(&self, req: StopRequest) -> Result<()>;

    /// Lists instances (all apps when `app` is `None`), sorted by app, release, type, index.
    async fn list(&self, app: Option<&AppName>) -> Result<Vec<Instance>>;

    /// Runs a one-off command in the release's environment. Output streams as produced; the
    /// instance is removed once it exits. The run does not depend on how the handle is used:
    /// its timeout applies and its instance is removed even if `exit` is never polled or the
    /// handle is dropped.
    ///
    /// Errors: `InvalidInput` for an empty command; `Unavailable`.
    async fn run_once(&self, req: RunRequest) -> Result<RunHandle>;

    /// Makes the app's instances match the desired state: for each process type, indexes
    /// `1..=n` of `req.release` run (missing ones are started); higher indexes, and instances of
    /// other releases of the app, are stopped. Idempotent: converging twice to the same state
    /// starts and stops nothing the second time. Does not wait for health.
    async fn converge(&self, req: ConvergeRequest) -> Result<ConvergeReport>;

    /// Instance events (crashes and restarts) from now on, for all apps. Each call returns an
    /// independent stream.
    fn events(&self) -> BoxStream<'static, InstanceEvent>;

    /// Stops and removes every instance of the app (graceful, like [`Scheduler::stop`]).
    /// Idempotent.
    async fn remove_app(&self, app: &AppName, grace: Duration) -> Result<()> {
        let ids = self
            .list(Some(app))
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        self.stop(StopRequest::new(ids, grace)).await
    }
}

/// Sorts instances the way [`Scheduler::list`] returns them: by app, release, process type,
/// index, then id.
pub fn sort_instances(v: &mut [Instance]) {
    v.sort_by(|a, b| {
        (&a.app, a.release, &a.process_type, a.index, &a.id).cmp(&(
            &b.app,
            b.release,
            &b.process_type,
            b.index,
            &b.id,
        ))
    });
}

/// The web addresses of the running instances of `release` in `instances`.
pub fn web_endpoints(instances: &[Instance], release: Version) -> Vec<SocketAddr> {
    instances
        .iter()
        .filter(|i| {
            i.release == release
                && i.process_type.is_web()
                && i.state == crate::model::InstanceState::Running
        })
        .filter_map(|i| i.address)
        .collect()
}
