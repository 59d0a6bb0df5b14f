//! # paas
//!
//! Build your own Heroku: a facade over the paas SDK crates. Compose a
//! [`SourceStore`](core::SourceStore), [`Builder`](core::Builder),
//! [`ReleaseStore`](core::ReleaseStore), [`Scheduler`](core::Scheduler),
//! [`Router`](core::Router) and [`LogSink`](core::LogSink) into a
//! [`Platform`](core::Platform), serve its HTTP API with [`api::ApiServer`] and drive it with
//! [`api::Client`].
//!
//! Each backend crate is a feature (all on by default): `git`, `docker`, `proxy`, `sqlite`,
//! `api` (the server), `client` (the typed client), `testkit` (the conformance suites).
//! [`prelude`] brings the traits and the main types into scope.
//!
//! The example binaries `paasd` (the daemon) and `paas` (the CLI) live in `examples/`;
//! end-to-end tests live in `tests/`.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use paas_core as core;

#[cfg(any(feature = "api", feature = "client"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "api", feature = "client"))))]
pub use paas_api as api;
#[cfg(feature = "docker")]
#[cfg_attr(docsrs, doc(cfg(feature = "docker")))]
pub use paas_docker as docker;
#[cfg(feature = "git")]
#[cfg_attr(docsrs, doc(cfg(feature = "git")))]
pub use paas_git as git;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use paas_proxy as proxy;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use paas_sqlite as sqlite;

/// The traits, the pipeline, the error and the main domain types.
pub mod prelude {
    pub use paas_core::prelude::*;
}
