//! Conformance suites: one public async function per contract, taking `&dyn Trait`. Every
//! backend runs the suite of its trait from its own tests; so can a third party's backend:
//!
//! ```no_run
//! # async fn demo(store: &dyn paas_core::ReleaseStore) {
//! paas_core::testkit::release_store::run_all(store).await;
//! # }
//! ```
//!
//! Functions panic with a message naming the broken contract. They use fresh, random app names,
//! so a backend with state from other tests can run them.

pub mod builder;
pub mod log_sink;
pub mod release_store;
pub mod router;
pub mod scheduler;
pub mod source_store;

use crate::model::AppName;

/// A fresh app name `<prefix>-<random>` (prefix at most 16 characters).
pub fn unique_app(prefix: &str) -> AppName {
    let prefix: String = prefix.chars().take(16).collect();
    AppName::new(format!("{prefix}-{:08x}", fastrand::u32(..))).expect("valid test app name")
}

/// A fresh empty temporary directory (removed by [`TempDir`]'s drop).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("paas-testkit-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
