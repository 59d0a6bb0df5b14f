//! [`PushHook`]: what runs after a push to a deploy branch (the platform's deploy).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use paas_core::{AppName, CommitId, OutputSender, Result};

/// A successful push to a deploy branch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushEvent {
    /// The app pushed to.
    pub app: AppName,
    /// The branch (short name: `main`).
    pub branch: String,
    /// The commit the branch now points at.
    pub commit: CommitId,
    /// The commit it pointed at before, if it existed.
    pub previous: Option<CommitId>,
}

impl PushEvent {
    /// An event for `commit` on `branch` of `app`.
    pub fn new(app: AppName, branch: impl Into<String>, commit: CommitId) -> Self {
        PushEvent {
            app,
            branch: branch.into(),
            commit,
            previous: None,
        }
    }
}

/// Called by [`crate::GitHttpService`] once a push to a deploy branch is stored.
///
/// Each line sent to `progress` reaches the pusher as a `remote:` line while the hook runs; the
/// returned message (`Released v3`) is the last such line, or, on error, the error is. The push
/// stays stored whatever the hook returns; an error turns the branch's report-status line into
/// `ng` (`! [remote rejected] main -> main (deploy of abc1234 failed ...)`), so `git push` exits
/// non-zero, as it does on Heroku when a deploy fails. The hook keeps running if the client disconnects.
#[async_trait]
pub trait PushHook: Send + Sync + fmt::Debug + 'static {
    /// Deploys (or otherwise handles) the pushed commit.
    async fn on_push(&self, event: PushEvent, progress: OutputSender) -> Result<String>;
}

/// A [`PushHook`] made from an async closure; see [`push_hook_fn`].
pub struct FnPushHook<F>(F);

impl<F> fmt::Debug for FnPushHook<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnPushHook")
    }
}

#[async_trait]
impl<F, Fut> PushHook for FnPushHook<F>
where
    F: Fn(PushEvent, OutputSender) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String>> + Send + 'static,
{
    async fn on_push(&self, event: PushEvent, progress: OutputSender) -> Result<String> {
        (self.0)(event, progress).await
    }
}

/// Wraps an async closure as a [`PushHook`]:
///
/// ```
/// let hook = paas_git::push_hook_fn(|event, progress| async move {
///     progress.line(format!("deploying {}", event.commit));
///     Ok("Released v1".to_string())
/// });
/// ```
pub fn push_hook_fn<F, Fut>(f: F) -> Arc<dyn PushHook>
where
    F: Fn(PushEvent, OutputSender) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String>> + Send + 'static,
{
    Arc::new(FnPushHook(f))
}
