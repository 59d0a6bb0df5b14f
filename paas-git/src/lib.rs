//! # paas-git
//!
//! The git stage of the paas SDK:
//!
//! - [`GitSourceStore`]: a [`paas_core::SourceStore`] keeping one bare git repository per app
//!   at `<root>/<app>.git`, on git2 (every call on tokio's blocking pool).
//! - [`GitHttpService`]: git's smart-HTTP protocol as a tower `Service` that hyper or axum can
//!   mount, so users deploy with `git push` as on Heroku: each request decided by a
//!   [`paas_core::Authorizer`] (the token as HTTP Basic password; clone needs `Read`, push
//!   `Deploy`), only `refs/heads/*` may be pushed, and after a push to a deploy branch a
//!   [`PushHook`] (the platform's deploy) runs while its progress streams back to the pusher as
//!   `remote:` lines.
//!
//! ```no_run
//! use std::sync::Arc;
//! use paas_core::StaticTokenAuthorizer;
//! use paas_git::{GitHttpService, GitHttpSettings, GitSourceStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = GitSourceStore::open("/var/lib/paas/git")?;
//! let hook = paas_git::push_hook_fn(|event, progress| async move {
//!     progress.line(format!("-----> Deploying {}", event.commit));
//!     Ok("Released v1".to_string())
//! });
//! let auth = Arc::new(StaticTokenAuthorizer::new("s3cret"));
//! let service = GitHttpService::new(store, auth, GitHttpSettings::default())
//!     .with_hook(hook);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! service.serve(listener).await?;
//! # Ok(()) }
//! ```

mod body;
mod hook;
mod http;
mod pktline;
mod receive;
mod refname;
mod store;

pub use hook::{push_hook_fn, FnPushHook, PushEvent, PushHook};
pub use http::{BoxError, GitBody, GitHttpService, GitHttpSettings};
pub use store::GitSourceStore;
