//! In-memory backends for all six traits: complete enough to run the whole [`Platform`]
//! pipeline in tests and demos, and the reference any other backend is compared with.
//!
//! [`Platform`]: crate::Platform

mod builder;
mod logs;
mod router;
mod scheduler;
mod source;
mod store;

pub use builder::MemoryBuilder;
pub use logs::MemoryLogSink;
pub use router::MemoryRouter;
pub use scheduler::{MemoryScheduler, SimFault};
pub use source::MemorySourceStore;
pub use store::MemoryReleaseStore;

use std::sync::{Mutex, MutexGuard};

/// Locks a std mutex, recovering from poisoning (the state is still consistent: every critical
/// section here leaves it so before anything can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
