//! [`SourceStore`]: where an app's source lives (one repository per app).

use std::path::PathBuf;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{AppName, CommitId, Timestamp};

/// A commit's summary.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CommitInfo {
    /// Its id.
    pub id: CommitId,
    /// First line of its message.
    pub summary: String,
    /// Author name.
    pub author: String,
    /// Commit time.
    pub time: Timestamp,
}

impl CommitInfo {
    /// A commit's summary.
    pub fn new(id: CommitId, summary: String, author: String, time: Timestamp) -> Self {
        CommitInfo {
            id,
            summary,
            author,
            time,
        }
    }
}

/// A file to store with [`SourceStore::commit_files`].
#[derive(Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative path with `/` separators; no `..`, no absolute paths, no `.git` component.
    pub path: String,
    /// Contents.
    pub contents: Vec<u8>,
    /// Whether it is executable.
    pub executable: bool,
}

impl std::fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFile")
            .field("path", &self.path)
            .field("len", &self.contents.len())
            .field("executable", &self.executable)
            .finish()
    }
}

/// A request to store a snapshot of files as a new commit (deploys without `git push`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CommitFilesRequest {
    /// The app.
    pub app: AppName,
    /// Branch to advance (`main`): `refs/heads/<branch>`.
    pub branch: String,
    /// The complete tree of the new commit.
    pub files: Vec<SourceFile>,
    /// Commit message.
    pub message: String,
}

impl CommitFilesRequest {
    /// A request with the given files on `branch`.
    pub fn new(app: AppName, branch: impl Into<String>, files: Vec<SourceFile>) -> Self {
        CommitFilesRequest {
            app,
            branch: branch.into(),
            files,
            message: "paas: commit files".into(),
        }
    }
}

/// A request to write a commit's tree into a directory for a builder.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExportRequest {
    /// The app.
    pub app: AppName,
    /// The commit to export.
    pub commit: CommitId,
    /// An existing, empty directory to fill.
    pub dest: PathBuf,
}

impl ExportRequest {
    /// Export `commit` of `app` into `dest`.
    pub fn new(app: AppName, commit: CommitId, dest: impl Into<PathBuf>) -> Self {
        ExportRequest {
            app,
            commit,
            dest: dest.into(),
        }
    }
}

/// Stores each app's source (a repository per app) and hands commits to builders.
///
/// Implementations: `MemorySourceStore` (paas-core), `GitSourceStore` (paas-git).
/// Conformance: `paas_core::testkit::source_store`.
#[async_trait]
pub trait SourceStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates the app's empty repository.
    ///
    /// Errors: `AlreadyExists` if it exists (nothing changes).
    async fn create_repo(&self, app: &AppName) -> Result<()>;

    /// Deletes the app's repository and everything in it.
    ///
    /// Idempotent: deleting a missing repository is `Ok`.
    async fn delete_repo(&self, app: &AppName) -> Result<()>;

    /// Whether the app's repository exists.
    async fn repo_exists(&self, app: &AppName) -> Result<bool>;

    /// Resolves a reference (`main`, `refs/heads/main`, a full or abbreviated commit id) to a
    /// commit.
    ///
    /// Errors: `NotFound` for an unknown app or a ref that does not exist; `InvalidInput` for a
    /// malformed ref name (`..`, leading `-`, control characters), which is never looked up.
    async fn resolve(&self, app: &AppName, reference: &str) -> Result<CommitId>;

    /// The most recent commits reachable from `reference`, newest first, at most `limit`.
    ///
    /// Errors: as [`SourceStore::resolve`].
    async fn recent_commits(
        &self,
        app: &AppName,
        reference: &str,
        limit: usize,
    ) -> Result<Vec<CommitInfo>>;

    /// Stores `files` as the complete tree of a new commit on `branch` (parent: the branch's
    /// current commit, if any), and returns it. Atomic: the branch moves only once the commit is
    /// fully written.
    ///
    /// Errors: `NotFound` (app), `InvalidInput` (path escaping the root, `.git`, bad branch).
    async fn commit_files(&self, req: CommitFilesRequest) -> Result<CommitId>;

    /// Writes the tree of a commit into `req.dest` (regular files, executables keep their mode,
    /// symlinks that stay inside the tree). Nothing is written outside `dest`.
    ///
    /// Errors: `NotFound` for an unknown app or commit.
    async fn export(&self, req: ExportRequest) -> Result<()>;
}
