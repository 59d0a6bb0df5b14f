//! Rollout: make a release live (start, health, route, drain, stop).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::{
    AppName, BuildId, DeployStatus, EventKind, Formation, Instance, PlatformEvent, ProcessType,
    Release, Route, Timestamp,
};
use crate::traits::{
    web_endpoints, Builder, DrainRequest, HealthCheck, HealthRequest, ListReleases, PruneRequest,
    ReleaseStore, Router, Scheduler, StartRequest, StopRequest,
};

use super::*;

/// What a rollout is for.
#[derive(Clone, Copy, Debug)]
pub(super) enum Rollout<'a> {
    /// A new release goes live; its deploy status is recorded (succeeded or failed).
    Release,
    /// The current release's processes are replaced (all, or those of one type): `ps:restart`.
    Restart {
        /// Only this process type.
        only: Option<&'a ProcessType>,
    },
}

impl<'a> Rollout<'a> {
    fn only(self) -> Option<&'a ProcessType> {
        match self {
            Rollout::Release => None,
            Rollout::Restart { only } => only,
        }
    }
    fn done(self) -> &'static str {
        match self {
            Rollout::Release => "Deployed",
            Rollout::Restart { .. } => "Restarted",
        }
    }
}

impl Platform {
    /// The formation for `release`: the stored one, plus Heroku's defaults for process types it
    /// does not mention (`web=1`, others 0). Stores the result when it changed.
    pub(super) async fn formation_for(&self, release: &Release) -> Result<Formation> {
        let app = &release.app;
        let mut formation = self.inner.store.get_formation(app).await?;
        let mut changed = false;
        for (ty, _) in release.build.procfile.entries() {
            if !ty.is_release() && !formation.contains(ty) {
                formation.set(ty.clone(), u32::from(ty.is_web()))?;
                changed = true;
            }
        }
        if changed {
            self.inner
                .store
                .set_formation(app, formation.clone())
                .await?;
        }
        Ok(formation)
    }

    /// Makes a new release live: its release phase, then a rollout that records its deploy
    /// status. The one path of deploy, config changes and rollbacks.
    pub(super) async fn make_live(&self, release: &Release, progress: &Progress) -> Result<()> {
        self.release_phase(release, progress).await?;
        self.rollout(release, Rollout::Release, progress).await
    }

    /// Replaces the app's processes with processes of `release`, without downtime: start the
    /// new ones, wait until they are healthy and switch the route to them, then drain and stop
    /// the old ones. A failure before the switch removes the new processes and leaves the old
    /// ones serving.
    pub(super) async fn rollout(
        &self,
        release: &Release,
        what: Rollout<'_>,
        progress: &Progress,
    ) -> Result<()> {
        let app = &release.app;
        let only = what.only();
        let formation = self.formation_for(release).await?;
        let old: Vec<Instance> = self
            .inner
            .scheduler
            .list(Some(app))
            .await?
            .into_iter()
            .filter(|i| only.is_none_or(|t| &i.process_type == t))
            .collect();
        self.record_event(
            app,
            EventKind::DeployStarted,
            Some(release.version),
            format!("Deploying {} ({formation})", release.version),
        )
        .await;
        let started = match self.start_new(release, &formation, only, progress).await {
            Ok(started) => started,
            Err((started, e)) => {
                self.remove_started(app, &started).await;
                return Err(self.rollout_failed(release, what, e, progress).await);
            }
        };
        if let Err(e) = self.switch_to(release, &started, what).await {
            self.remove_started(app, &started).await;
            return Err(self.rollout_failed(release, what, e, progress).await);
        }
        self.tell(
            app,
            progress,
            "deploy",
            &format!("-----> {} process(es) healthy and routed", started.len()),
        )
        .await;
        // The new release takes traffic from here on. What follows is cleanup: its failures are
        // logged (the next converge removes leftovers), not turned into a failed deploy.
        let status = match what {
            Rollout::Release => {
                self.inner
                    .store
                    .set_release_status(app, release.version, DeployStatus::Succeeded)
                    .await
            }
            Rollout::Restart { .. } => Ok(()),
        };
        self.retire(app, &old, &started).await;
        status?;
        let done = what.done();
        self.record_event(
            app,
            EventKind::DeploySucceeded,
            Some(release.version),
            format!("{done} {}", release.version),
        )
        .await;
        progress.line(format!("-----> {done} {}", release.version));
        Ok(())
    }

    /// Starts the formation's processes of `release` (of `only`'s type, if given). On failure,
    /// returns what did start with the error, for [`remove_started`](Self::remove_started).
    async fn start_new(
        &self,
        release: &Release,
        formation: &Formation,
        only: Option<&ProcessType>,
        progress: &Progress,
    ) -> std::result::Result<Vec<Instance>, (Vec<Instance>, Error)> {
        let app = &release.app;
        let mut started: Vec<Instance> = Vec::new();
        for (ty, n) in formation.iter() {
            if n == 0
                || ty.is_release()
                || only.is_some_and(|t| t != ty)
                || release.build.procfile.command(ty).is_none()
            {
                continue;
            }
            self.tell(
                app,
                progress,
                "deploy",
                &format!(
                    "-----> Starting {n} {ty} process(es) of {}",
                    release.version
                ),
            )
            .await;
            let req = StartRequest::new(release.clone(), ty.clone(), (1..=n).collect());
            match self.inner.scheduler.start(req).await {
                Ok(v) => started.extend(v),
                Err(e) => return Err((started, e)),
            }
        }
        Ok(started)
    }

    /// Waits until `started` is healthy, then (when the rollout concerns web processes) points
    /// the route at the new web processes in one atomic swap.
    async fn switch_to(
        &self,
        release: &Release,
        started: &[Instance],
        what: Rollout<'_>,
    ) -> Result<()> {
        self.wait_healthy(release, started).await?;
        if what.only().is_none_or(|t| t.is_web()) {
            self.set_route(&release.app, web_endpoints(started, release.version))
                .await?;
        }
        Ok(())
    }

    /// Removes processes that were started but will not serve (quickly: they never had
    /// traffic). A failure is logged: the next converge removes leftovers.
    pub(super) async fn remove_started(&self, app: &AppName, started: &[Instance]) {
        if started.is_empty() {
            return;
        }
        let ids = started.iter().map(|i| i.id.clone()).collect();
        if let Err(e) = self
            .inner
            .scheduler
            .stop(StopRequest::new(ids, Duration::from_secs(1)))
            .await
        {
            tracing::error!(%app, error = %e, "could not remove the new processes");
            self.log_line(
                app,
                "deploy",
                format!("Removing the new processes failed: {e}"),
            )
            .await;
        }
    }

    /// Records a failed rollout (the release's status, or a failed restart) and returns the
    /// `DeployFailed` error the caller gets.
    async fn rollout_failed(
        &self,
        release: &Release,
        what: Rollout<'_>,
        e: Error,
        progress: &Progress,
    ) -> Error {
        let app = &release.app;
        let previous = self.inner.store.current_release(app).await.ok().flatten();
        let keeps = match &previous {
            Some(p) if p.version != release.version => format!("; {} keeps serving", p.version),
            _ => String::new(),
        };
        let reason = format!("{}{keeps}", e.message());
        match what {
            Rollout::Release => self.fail_release(release, &reason, progress).await,
            Rollout::Restart { .. } => {
                let msg = format!("Restart of {} failed: {reason}", release.version);
                progress.line(format!(" !     {msg}"));
                self.record_event(app, EventKind::DeployFailed, Some(release.version), msg)
                    .await;
            }
        }
        Error::deploy_failed(format!("deploy of {} failed: {reason}", release.version))
    }

    /// Drains the old web endpoints that left the route, then stops the old processes.
    /// Failures are logged, never returned: the new release already serves.
    async fn retire(&self, app: &AppName, old: &[Instance], started: &[Instance]) {
        let s = &self.inner.settings;
        let new_addrs: BTreeSet<_> = started.iter().filter_map(|i| i.address).collect();
        let old_web: Vec<_> = old
            .iter()
            .filter(|i| i.process_type.is_web())
            .filter_map(|i| i.address)
            .filter(|a| !new_addrs.contains(a))
            .collect();
        if !old_web.is_empty() {
            match self
                .inner
                .router
                .drain(DrainRequest::new(old_web, s.drain_timeout))
                .await
            {
                Ok(report) if !report.pending.is_empty() => {
                    let n = report.pending.len();
                    self.log_line(
                        app,
                        "deploy",
                        format!("{n} endpoint(s) still busy after the drain timeout"),
                    )
                    .await;
                }
                Ok(_) => {}
                Err(e) => {
                    self.log_line(app, "deploy", format!("Draining old endpoints failed: {e}"))
                        .await
                }
            }
        }
        if !old.is_empty() {
            let ids = old.iter().map(|i| i.id.clone()).collect();
            match self
                .inner
                .scheduler
                .stop(StopRequest::new(ids, s.stop_grace))
                .await
            {
                Ok(()) => {
                    self.log_line(
                        app,
                        "deploy",
                        format!("Stopped {} old process(es)", old.len()),
                    )
                    .await
                }
                Err(e) => {
                    self.log_line(app, "deploy", format!("Stopping old processes failed: {e}"))
                        .await
                }
            }
        }
    }

    /// How web processes of `release` are checked: the app's `PAAS_HEALTHCHECK_PATH` config
    /// var if set, else the platform's [`PlatformSettings::health_check`].
    pub(super) fn web_check(&self, release: &Release) -> Result<HealthCheck> {
        match release.config.get(HEALTHCHECK_PATH_VAR) {
            Some(v) => Ok(HealthCheck::Http {
                path: health_path_var(v.expose())?,
            }),
            None => Ok(self.inner.settings.health_check.clone()),
        }
    }

    pub(super) async fn wait_healthy(
        &self,
        release: &Release,
        instances: &[Instance],
    ) -> Result<()> {
        let s = &self.inner.settings;
        let (web, other): (Vec<&Instance>, Vec<&Instance>) =
            instances.iter().partition(|i| i.process_type.is_web());
        let web_check = if web.is_empty() {
            s.health_check.clone()
        } else {
            self.web_check(release)?
        };
        for (group, check) in [(web, web_check), (other, HealthCheck::Running)] {
            if group.is_empty() {
                continue;
            }
            let ids = group.iter().map(|i| i.id.clone()).collect();
            self.inner
                .scheduler
                .wait_healthy(HealthRequest::new(ids, check, s.health_timeout))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn set_route(
        &self,
        app: &AppName,
        endpoints: Vec<std::net::SocketAddr>,
    ) -> Result<()> {
        let route = Route {
            app: app.clone(),
            hosts: self.hosts(app).await?,
            endpoints,
        };
        let n = route.endpoints.len();
        self.inner.router.set_route(route).await?;
        let _ = self.inner.events.send(PlatformEvent {
            timestamp: Timestamp::now(),
            app: app.clone(),
            kind: EventKind::RouteUpdated,
            release: None,
            message: format!("Route of {app} has {n} endpoint(s)"),
        });
        Ok(())
    }

    /// Points the route at the running web processes of the current release (nothing when
    /// there is none).
    pub(super) async fn sync_route(&self, app: &AppName) -> Result<()> {
        let Some(current) = self.inner.store.current_release(app).await? else {
            return Ok(());
        };
        let instances = self.inner.scheduler.list(Some(app)).await?;
        self.set_route(app, web_endpoints(&instances, current.version))
            .await
    }

    /// Removes artifacts no rollback is likely to need: it keeps the builds of the newest
    /// `keep_releases` releases and of the newest `keep_releases` succeeded ones (the default
    /// rollback target is always among them).
    pub(super) async fn prune(&self, app: &AppName) {
        let n = self.inner.settings.keep_releases.max(1);
        let releases = match self
            .inner
            .store
            .list_releases(app, ListReleases::newest(n.max(100)))
            .await
        {
            Ok(r) => r,
            Err(_) => return,
        };
        let mut keep: Vec<BuildId> = releases
            .iter()
            .take(n)
            .map(|r| r.build.id.clone())
            .collect();
        keep.extend(
            releases
                .iter()
                .filter(|r| r.status == DeployStatus::Succeeded)
                .take(n)
                .map(|r| r.build.id.clone()),
        );
        keep.sort();
        keep.dedup();
        if let Err(e) = self
            .inner
            .builder
            .prune(PruneRequest::new(app.clone(), keep))
            .await
        {
            tracing::warn!(%app, error = %e, "pruning old artifacts failed");
        }
    }
}
