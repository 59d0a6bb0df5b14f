//! # paas
//!
//! A facade over the paas SDK crates: build your own Heroku by composing a
//! [`SourceStore`](core::SourceStore), [`Builder`](core::Builder),
//! [`ReleaseStore`](core::ReleaseStore), [`Scheduler`](core::Scheduler),
//! [`Router`](core::Router) and [`LogSink`](core::LogSink) into a
//! [`Platform`](core::Platform).
//!
//! The example binaries `paasd` (the daemon) and `paas` (the CLI) live in
//! `examples/`; end-to-end tests live in `tests/`.

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use paas_core as core;
pub use paas_docker as docker;
pub use paas_git as git;
pub use paas_proxy as proxy;
pub use paas_sqlite as sqlite;
