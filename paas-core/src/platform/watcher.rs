//! The instance watcher: crashes and restarts become log lines, events and route updates.

use futures::StreamExt;

use crate::model::{AppName, EventKind, PlatformEvent, Timestamp};
use crate::traits::{HealthRequest, InstanceEvent, ReleaseStore, Scheduler};

use super::*;

impl Platform {
    /// Spawns the task that turns scheduler instance events (crashes, restarts) into log lines,
    /// platform events and route updates. Run it once per platform.
    pub fn spawn_instance_watcher(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let mut events = self.inner.scheduler.events();
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                let (inst, kind, msg) = match &ev {
                    InstanceEvent::Crashed {
                        instance,
                        exit_code,
                        restart_in,
                        ..
                    } => {
                        let code = exit_code
                            .map(|c| format!(" with code {c}"))
                            .unwrap_or_default();
                        let when = restart_in
                            .map(|d| format!(", restarting in {:.1}s", d.as_secs_f64()))
                            .unwrap_or_default();
                        (
                            instance.clone(),
                            EventKind::InstanceCrashed,
                            format!(
                                "{} exited{code}{when}: state changed from up to crashed",
                                instance.name()
                            ),
                        )
                    }
                    InstanceEvent::Restarted { instance, .. } => (
                        instance.clone(),
                        EventKind::InstanceRestarted,
                        format!(
                            "{} restarted: state changed from crashed to up",
                            instance.name()
                        ),
                    ),
                };
                if me.inner.store.get_app(&inst.app).await.is_err() {
                    continue;
                }
                me.log_line(&inst.app, "scheduler", &msg).await;
                let _ = me.inner.events.send(PlatformEvent {
                    timestamp: Timestamp::now(),
                    app: inst.app.clone(),
                    kind,
                    release: Some(inst.release),
                    message: msg,
                });
                if inst.process_type.is_web() {
                    let me = me.clone();
                    let restarted = (kind == EventKind::InstanceRestarted).then(|| inst.id.clone());
                    tokio::spawn(async move { me.resync_when_idle(inst.app, restarted).await });
                }
            }
        })
    }

    /// Re-syncs an app's route once no operation holds its lock (operations hold it for as long
    /// as they take; the re-sync waits, it is never dropped). A restarted web instance is
    /// health-checked first, so it gets traffic only once it answers.
    pub(super) async fn resync_when_idle(&self, app: AppName, restarted: Option<String>) {
        if let Some(id) = restarted {
            let s = &self.inner.settings;
            let web_check = match self.inner.store.current_release(&app).await {
                Ok(Some(r)) => self
                    .web_check(&r)
                    .unwrap_or_else(|_| s.health_check.clone()),
                _ => s.health_check.clone(),
            };
            let check = HealthRequest::new(vec![id], web_check, s.health_timeout);
            if let Err(e) = self.inner.scheduler.wait_healthy(check).await {
                self.log_line(
                    &app,
                    "scheduler",
                    format!("Restarted process is not healthy: {}", e.message()),
                )
                .await;
            }
        }
        let _g = self.lock_app(&app).await;
        if let Err(e) = self.sync_route(&app).await {
            tracing::warn!(%app, error = %e, "route re-sync failed");
        }
    }
}
