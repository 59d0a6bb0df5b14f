//! The router alone, fed by a JSON routes file: the same program as the workspace's `proxy`
//! example, kept in this crate so that the benchmark builds only paas-proxy.
//!
//! ```text
//! cargo run --release -p paas-proxy --example standalone -- \
//!     --listen 127.0.0.1:8080 --routes routes.json [--admin 127.0.0.1:9090] [--threads 1]
//! ```
//!
//! `routes.json`: `{"apps": {"NAME": {"hosts": ["..."], "endpoints": ["127.0.0.1:9001"]}}}`,
//! reloaded on SIGHUP and when it changes; a bad file is rejected with a message naming the
//! field, and the current table stays.

include!("shared/standalone_main.rs");
