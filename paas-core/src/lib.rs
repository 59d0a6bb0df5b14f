//! # paas-core
//!
//! The core of the paas SDK: a domain model with Heroku's vocabulary ([`AppName`], [`Release`],
//! [`Formation`]...), the six stage traits ([`SourceStore`], [`Builder`], [`ReleaseStore`],
//! [`Scheduler`], [`Router`], [`LogSink`]), one error type ([`Error`]), the [`Platform`]
//! pipeline that composes them (deploy, config, scale, rollback, restart, one-off runs, logs),
//! the [`Authorizer`] that the API and git endpoints ask, in-memory backends ([`memory`]) and,
//! behind the `testkit` feature, conformance suites any backend can run.
//!
//! ```no_run
//! use paas_core::{memory::*, Platform};
//!
//! # async fn demo() -> paas_core::Result<()> {
//! let platform = Platform::composer()
//!     .sources(MemorySourceStore::new())
//!     .builder(MemoryBuilder::new())
//!     .store(MemoryReleaseStore::new())
//!     .scheduler(MemoryScheduler::new())
//!     .router(MemoryRouter::new())
//!     .log_sink(MemoryLogSink::new())
//!     .compose()?;
//! let app = "demo".parse()?;
//! platform.create_app(&app).await?;
//! # Ok(()) }
//! ```
//!
//! ## Writing a backend
//!
//! Implement one trait with [`async_trait`](macro@async_trait) (re-exported here), map your
//! failures into [`Error`] with the [`ErrorKind`] the trait's docs name, and run the trait's
//! suite from `paas_core::testkit` (feature `testkit`) in your tests. `Arc<T>` and `Box<T>`
//! implement every trait, so a backend can be shared between the platform and your own code.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod compose;
mod error;
pub mod memory;
mod model;
#[cfg(feature = "openapi")]
mod openapi;
mod platform;
mod probe;
pub mod stream;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
mod traits;

pub use async_trait::async_trait;
pub use auth::{
    missing_credentials, Action, AuthRequest, Authorizer, Credentials, Principal,
    StaticTokenAuthorizer, Token,
};
pub use compose::PlatformComposer;
pub use error::{Error, ErrorBody, ErrorKind, Result};
pub use model::*;
pub use platform::{
    AppStatus, DeployRequest, DeploySource, Platform, PlatformSettings, Progress, BUILD_LOG_LINES,
    HEALTHCHECK_PATH_VAR,
};
pub use probe::probe;
pub use traits::*;

/// What most users of the SDK need in scope: the traits, the pipeline, the error and the
/// main domain types.
pub mod prelude {
    pub use crate::{
        AppName, Authorizer, Builder, ConfigKey, ConfigValue, DeployRequest, DeploySource, Error,
        ErrorKind, Formation, LogSink, Platform, PlatformSettings, ProcessType, ReleaseStore,
        Result, Router, Scheduler, SourceStore, Version,
    };
}
