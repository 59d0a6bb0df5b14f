//! `proxy`: the paas router alone (like kamal-proxy), fed by a JSON routes file.
//!
//! ```text
//! cargo run --release --example proxy -- --listen 127.0.0.1:8080 --routes routes.json \
//!     [--admin 127.0.0.1:9090] [--threads N]
//! ```
//!
//! `routes.json` is `{"apps": {"NAME": {"hosts": ["..."], "endpoints": ["127.0.0.1:9001", ...]}}}`
//! (`hosts` optional: app `NAME` always answers at `NAME.localhost`; an optional `"balance"` is
//! `"least_in_flight"` or `"round_robin"`). The file is re-read on SIGHUP and when it changes
//! (checked every second) and swapped in without dropping a request; a bad file is rejected
//! with a message naming the field, and the current table stays. `--admin` serves Prometheus
//! metrics at `/metrics`. `--threads` sets the runtime's worker threads.
//!
//! The program body lives in paas-proxy (`examples/shared/standalone_main.rs`), shared with
//! that crate's `standalone` example, which its benchmark builds.

include!("../paas-proxy/examples/shared/standalone_main.rs");
