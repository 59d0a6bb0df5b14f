//! # paas-core
//!
//! The core of the paas SDK: a domain model with Heroku's vocabulary ([`model`]), the six stage
//! traits ([`SourceStore`], [`Builder`], [`ReleaseStore`], [`Scheduler`], [`Router`],
//! [`LogSink`]), one error type ([`Error`]), the [`Platform`] pipeline that composes them
//! (deploy, config, scale, rollback, restart, one-off runs, logs), in-memory backends
//! ([`memory`]) and, behind the `testkit` feature, conformance suites any backend can run.
//!
//! ```no_run
//! use std::sync::Arc;
//! use paas_core::{memory, Platform, PlatformSettings};
//!
//! # async fn demo() -> paas_core::Result<()> {
//! let platform = Platform::new(
//!     Arc::new(memory::MemorySourceStore::new()),
//!     Arc::new(memory::MemoryBuilder::new()),
//!     Arc::new(memory::MemoryReleaseStore::new()),
//!     Arc::new(memory::MemoryScheduler::new()),
//!     Arc::new(memory::MemoryRouter::new()),
//!     Arc::new(memory::MemoryLogSink::new()),
//!     PlatformSettings::default(),
//! );
//! let app = "demo".parse()?;
//! platform.create_app(&app).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod error;
pub mod memory;
pub mod model;
pub mod platform;
pub mod stream;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod traits;

pub use error::{Error, ErrorBody, ErrorKind, Result};
pub use model::*;
pub use platform::{
    AppStatus, DeployRequest, DeploySource, Platform, PlatformSettings, Progress,
    HEALTHCHECK_PATH_VAR,
};
pub use traits::*;
