//! What callers hand the pipeline and what it reports.

use crate::model::{App, AppName, CommitId, Domain, Formation, Instance, Release};

use super::*;

/// What to deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploySource {
    /// A ref of the app's repository (`main`, a commit id).
    Ref(String),
    /// A commit of the app's repository.
    Commit(CommitId),
    /// A prebuilt artifact (image reference), deployed without a build.
    Image(String),
}

/// A deploy request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeployRequest {
    /// The app.
    pub app: AppName,
    /// What to deploy.
    pub source: DeploySource,
    /// Progress lines (build output, rollout steps) for the user.
    pub progress: Progress,
}

impl DeployRequest {
    /// Deploy `source` to `app`, discarding progress.
    pub fn new(app: AppName, source: DeploySource) -> Self {
        DeployRequest {
            app,
            source,
            progress: Progress::discard(),
        }
    }
    /// Sends progress lines to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// An app's state, for `apps:info` and `ps`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct AppStatus {
    /// The app record.
    pub app: App,
    /// The release that serves, if any.
    pub current: Option<Release>,
    /// The newest release (may be pending or failed).
    pub latest: Option<Release>,
    /// The formation.
    pub formation: Formation,
    /// Running instances.
    pub instances: Vec<Instance>,
    /// Custom domains.
    pub domains: Vec<Domain>,
    /// Hostnames that route to it (default first).
    pub hosts: Vec<Domain>,
}
