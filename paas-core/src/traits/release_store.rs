//! [`ReleaseStore`]: the platform's records — apps, config, formation, domains, builds and the
//! release history.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    App, AppName, Build, BuildId, Config, DeployStatus, Domain, Formation, NewRelease, Release,
    Version,
};

/// Which releases to list.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListReleases {
    /// At most this many, newest first.
    pub limit: usize,
    /// Only versions strictly below this one (paging).
    pub before: Option<Version>,
}

impl ListReleases {
    /// The newest `limit` releases.
    pub fn newest(limit: usize) -> Self {
        ListReleases {
            limit,
            before: None,
        }
    }
    /// Only versions strictly below `v`.
    pub fn before(mut self, v: Version) -> Self {
        self.before = Some(v);
        self
    }
}

/// Durable (or not) records of every app.
///
/// Every write is atomic: it happens whole or not at all, and a durable backend has made it
/// durable before returning `Ok`. Reads see all acknowledged writes.
///
/// Implementations: `MemoryReleaseStore` (paas-core), `SqliteReleaseStore` (paas-sqlite).
/// Conformance: `paas_core::testkit::release_store`.
#[async_trait]
pub trait ReleaseStore: Send + Sync + std::fmt::Debug + 'static {
    /// Records a new app with empty config, formation, domains and history.
    ///
    /// Errors: `AlreadyExists` (nothing changes).
    async fn create_app(&self, app: App) -> Result<()>;

    /// Reads an app. Errors: `NotFound`.
    async fn get_app(&self, name: &AppName) -> Result<App>;

    /// All apps, sorted by name.
    async fn list_apps(&self) -> Result<Vec<App>>;

    /// Deletes an app and all its records (config, formation, domains, builds, releases).
    /// Its version counter is gone too: an app created again later starts at v1.
    ///
    /// Errors: `NotFound`.
    async fn delete_app(&self, name: &AppName) -> Result<()>;

    /// The app's current config (the last release's snapshot, or what was set before any
    /// release). Errors: `NotFound` (app).
    async fn get_config(&self, app: &AppName) -> Result<Config>;

    /// Replaces the app's current config without making a release (used before the first
    /// build exists). Errors: `NotFound` (app).
    async fn set_config(&self, app: &AppName, config: Config) -> Result<()>;

    /// The app's formation (empty for a new app). Errors: `NotFound` (app).
    async fn get_formation(&self, app: &AppName) -> Result<Formation>;

    /// Replaces the app's formation. Idempotent. Errors: `NotFound` (app).
    async fn set_formation(&self, app: &AppName, formation: Formation) -> Result<()>;

    /// The app's custom domains, sorted. Errors: `NotFound` (app).
    async fn list_domains(&self, app: &AppName) -> Result<Vec<Domain>>;

    /// Adds a custom domain. Idempotent for the same app.
    ///
    /// Errors: `NotFound` (app); `Conflict` if another app has the domain.
    async fn add_domain(&self, app: &AppName, domain: Domain) -> Result<()>;

    /// Removes a custom domain. Errors: `NotFound` (app, or the app does not have it).
    async fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()>;

    /// Stores a build. Builds never change.
    ///
    /// Errors: `NotFound` (app); `AlreadyExists` if the id is taken by a different build
    /// (storing the identical build again is `Ok`).
    async fn put_build(&self, build: Build) -> Result<()>;

    /// Reads a build. Errors: `NotFound`.
    async fn get_build(&self, app: &AppName, id: &BuildId) -> Result<Build>;

    /// Appends a release and allocates its version: one more than the app's highest version
    /// ever (versions are never reused, even across deleted releases). Atomic under
    /// concurrency: N concurrent appends give N distinct, contiguous versions. The release's
    /// config becomes the app's current config in the same write. Status starts `Pending`.
    ///
    /// Errors: `NotFound` (app, or the build was not stored); `InvalidInput` if the build
    /// belongs to another app.
    async fn append_release(&self, release: NewRelease) -> Result<Release>;

    /// Reads one release. Errors: `NotFound`.
    async fn get_release(&self, app: &AppName, version: Version) -> Result<Release>;

    /// Releases newest first. Errors: `NotFound` (app).
    async fn list_releases(&self, app: &AppName, query: ListReleases) -> Result<Vec<Release>>;

    /// The newest release whose deploy succeeded: the one that serves. `Ok(None)` when there is
    /// none. Errors: `NotFound` (app).
    async fn current_release(&self, app: &AppName) -> Result<Option<Release>>;

    /// Records a release's deploy status — the only change a release ever sees.
    ///
    /// Errors: `NotFound`.
    async fn set_release_status(
        &self,
        app: &AppName,
        version: Version,
        status: DeployStatus,
    ) -> Result<()>;
}
