//! # paas-docker
//!
//! The reference [`paas_core::Builder`] and [`paas_core::Scheduler`] on the Docker Engine API
//! (through [`bollard`]), plus the offline stack images they run on.
//!
//! - [`stack`]: creates the default stack image (`FROM scratch` + the static busybox binary of
//!   Debian's `busybox-static` package) on a machine that cannot reach a registry;
//!   `scripts/make-debian-stack.sh` makes a realistic Debian stack with `debootstrap`.
//! - [`DockerBuilder`]: a prebuilt image, a `Dockerfile`, classic (Heroku) buildpacks run in a
//!   build container, or the source as-is on the stack image when only a Procfile exists.
//! - [`DockerScheduler`]: one labelled, unprivileged container per instance on a user-defined
//!   bridge network; health checks, graceful stop, crash restarts with capped exponential
//!   backoff, one-off runs, idempotent converge, adoption of running containers, and container
//!   logs streamed into a [`paas_core::LogSink`].
//!
//! ```no_run
//! # async fn demo() -> paas_core::Result<()> {
//! use paas_docker::{connect, stack, DockerBuilder, DockerBuilderSettings};
//! use paas_docker::{DockerScheduler, DockerSchedulerSettings};
//!
//! let docker = connect().await?;
//! stack::ensure_busybox_stack(&docker, stack::DEFAULT_STACK_IMAGE).await?;
//! let builder = DockerBuilder::new(docker.clone(), DockerBuilderSettings::default());
//! let scheduler = DockerScheduler::new(docker, DockerSchedulerSettings::default()).await?;
//! # let _ = (builder, scheduler); Ok(()) }
//! ```

mod builder;
mod common;
mod logs;
mod scheduler;
pub mod stack;
mod tarball;

pub use bollard::Docker;
pub use builder::{DockerBuilder, DockerBuilderSettings};
pub use common::labels;
pub use scheduler::{AddressMode, DockerScheduler, DockerSchedulerSettings, ProcessLimits};

/// Connects to the local engine (`DOCKER_HOST` or the default socket) and negotiates the API
/// version down to what the engine speaks (1.41 for Docker 20.10).
///
/// Errors: `Unavailable` when the engine cannot be reached.
pub async fn connect() -> paas_core::Result<Docker> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(|e| common::docker_error(e, "connect"))?
        // Stops with long grace periods and builds wait on the engine: the per-request limit
        // only guards against a hung engine, the operations have their own deadlines.
        .with_timeout(std::time::Duration::from_secs(3600));
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| common::docker_error(e, "connect"))?;
    docker
        .ping()
        .await
        .map_err(|e| common::docker_error(e, "connect"))?;
    Ok(docker)
}
