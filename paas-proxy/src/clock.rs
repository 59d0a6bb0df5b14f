//! A cheap monotonic clock for timestamps kept in atomics.

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since a process-wide epoch: a cheap monotonic clock for atomics.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}
