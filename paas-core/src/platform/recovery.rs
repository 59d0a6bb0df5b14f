//! Recovery after a restart.

use crate::error::Result;
use crate::model::{AppName, DeployStatus};
use crate::traits::{ListReleases, ReleaseStore, Scheduler};

use super::*;

impl Platform {
    // -----------------------------------------------------------------------------------------
    // Recovery and crash handling

    /// Brings every app back to its desired state, e.g. after a restart of the daemon: adopts
    /// running processes, starts missing ones (health-checked), stops strays, marks releases
    /// left pending by a crash as failed, and rebuilds the route table. Errors of one app are
    /// logged and do not stop the others.
    pub async fn recover(&self) -> Result<()> {
        for app in self.inner.store.list_apps().await? {
            let name = app.name.clone();
            if let Err(e) = self.recover_app(&name).await {
                tracing::error!(app = %name, error = %e, "recovery failed");
                self.log_line(&name, "api", format!("Recovery failed: {e}"))
                    .await;
            }
        }
        Ok(())
    }

    /// Puts every app's route back from what runs now (the web processes of its current
    /// release that the scheduler adopted), without starting, stopping or probing anything.
    /// Fast: call it before the router starts serving after a restart, so running apps never
    /// answer 404 while [`recover`](Self::recover) converges and checks them.
    pub async fn restore_routes(&self) -> Result<()> {
        for app in self.inner.store.list_apps().await? {
            if let Err(e) = self.sync_route(&app.name).await {
                tracing::warn!(app = %app.name, error = %e, "could not restore the route");
            }
        }
        Ok(())
    }

    pub(super) async fn recover_app(&self, app: &AppName) -> Result<()> {
        let _g = self.lock_app(app).await;
        let s = &self.inner.settings;
        for r in self
            .inner
            .store
            .list_releases(app, ListReleases::newest(20))
            .await?
        {
            if r.status == DeployStatus::Pending {
                self.inner
                    .store
                    .set_release_status(
                        app,
                        r.version,
                        DeployStatus::Failed("interrupted by a platform restart".into()),
                    )
                    .await?;
            }
        }
        let Some(current) = self.inner.store.current_release(app).await? else {
            // Processes of a first deploy that was interrupted: nothing may serve them.
            return self.inner.scheduler.remove_app(app, s.stop_grace).await;
        };
        let formation = self.formation_for(&current).await?;
        let report = self
            .inner
            .scheduler
            .converge(crate::traits::ConvergeRequest::new(
                current.clone(),
                formation,
                s.stop_grace,
            ))
            .await?;
        if !report.started.is_empty() {
            if let Err(e) = self.wait_healthy(&current, &report.started).await {
                self.log_line(
                    app,
                    "api",
                    format!("Recovered processes are not healthy yet: {}", e.message()),
                )
                .await;
            }
        }
        self.sync_route(app).await
    }
}
