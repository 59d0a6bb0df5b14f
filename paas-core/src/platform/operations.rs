//! Config, scale, rollback, restart and one-off runs.

use std::collections::BTreeSet;

use futures::StreamExt;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::model::{
    AppName, Config, ConfigUpdate, DeployStatus, EventKind, Formation, Instance, LogLine,
    LogSource, NewRelease, ProcessType, Release, Version,
};
use crate::traits::{
    web_endpoints, DrainRequest, ListReleases, LogSink, ReleaseStore, Router, RunHandle,
    RunRequest, Scheduler, StartRequest, StopRequest,
};

use super::rollout::Rollout;
use super::*;

impl Platform {
    // -----------------------------------------------------------------------------------------
    // Config, scale, rollback, restart

    /// The app's current config.
    pub async fn config(&self, app: &AppName) -> Result<Config> {
        self.inner.store.get_config(app).await
    }

    /// Changes config. When the app has a build, this makes a new release from the current
    /// build with the new config and rolls it out (a rolling restart); before the first build it
    /// only stores the config. An update that changes nothing makes no release.
    /// Returns the new release, if one was made.
    pub async fn set_config(
        &self,
        app: &AppName,
        update: ConfigUpdate,
        progress: Progress,
    ) -> Result<Option<Release>> {
        if update.is_empty() {
            return Err(Error::invalid("config update sets and unsets nothing"));
        }
        for (key, value) in &update.set {
            if key.as_str() == HEALTHCHECK_PATH_VAR {
                health_path_var(value.expose())?;
            }
        }
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("set_config", %app, release = tracing::field::Empty);
        async {
            let mut config = self.inner.store.get_config(app).await?;
            if config.apply(&update).is_empty() {
                return Ok(None);
            }
            config.check_size()?;
            let description = match (update.set.is_empty(), update.unset.is_empty()) {
                (false, true) => format!("Set {} config vars", keys_of(&update)),
                (true, false) => format!("Remove {} config vars", keys_of(&update)),
                _ => format!("Update {} config vars", keys_of(&update)),
            };
            let base = match self.inner.store.current_release(app).await? {
                Some(r) => Some(r),
                None => self
                    .inner
                    .store
                    .list_releases(app, ListReleases::newest(1))
                    .await?
                    .pop(),
            };
            let Some(base) = base else {
                self.inner.store.set_config(app, config).await?;
                self.record_event(app, EventKind::ConfigChanged, None, description)
                    .await;
                return Ok(None);
            };
            let new = NewRelease {
                app: app.clone(),
                build: base.build,
                config,
                description: description.clone(),
            };
            let release = self
                .append_release(new, EventKind::ConfigChanged, |r| {
                    format!("{description} ({})", r.version)
                })
                .await?;
            self.make_live(&release, &progress).await?;
            Ok(Some(
                self.inner.store.get_release(app, release.version).await?,
            ))
        }
        .instrument(span)
        .await
    }

    /// Changes the formation (`web=3 worker=1`); no release is made. Scaling up starts and
    /// health-checks the new processes before they get traffic; scaling down takes processes
    /// out of the route, drains them and stops the highest indexes.
    ///
    /// Errors: `InvalidInput` for a process type the current release does not have.
    pub async fn scale(
        &self,
        app: &AppName,
        changes: Formation,
        progress: Progress,
    ) -> Result<Formation> {
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("scale", %app);
        async {
            let current = self.inner.store.current_release(app).await?;
            let mut formation = match &current {
                Some(r) => self.formation_for(r).await?,
                None => self.inner.store.get_formation(app).await?,
            };
            for (ty, n) in changes.iter() {
                if ty.is_release() {
                    return Err(Error::invalid(
                        "the release process type runs once per release and cannot be scaled",
                    ));
                }
                if let Some(r) = &current {
                    if r.build.procfile.command(ty).is_none() {
                        let types: Vec<String> = r
                            .build
                            .procfile
                            .entries()
                            .map(|(t, _)| t.to_string())
                            .collect();
                        return Err(Error::invalid(format!(
                            "no process type \"{ty}\" in {} (its Procfile has: {})",
                            r.version,
                            types.join(", ")
                        )));
                    }
                }
                formation.set(ty.clone(), n)?;
            }
            match &current {
                // Type by type: the stored formation records each change once it runs, so a
                // failure part-way leaves the formation saying what actually runs.
                Some(release) => {
                    let mut stored = self.inner.store.get_formation(app).await?;
                    for (ty, n) in changes.iter() {
                        let mut one = Formation::new();
                        one.set(ty.clone(), n)?;
                        self.apply_scale(release, &one, &progress).await?;
                        stored.set(ty.clone(), n)?;
                        self.inner.store.set_formation(app, stored.clone()).await?;
                    }
                }
                None => {
                    self.inner
                        .store
                        .set_formation(app, formation.clone())
                        .await?
                }
            }
            self.record_event(
                app,
                EventKind::Scaled,
                current.as_ref().map(|r| r.version),
                format!("Scaled to {formation}"),
            )
            .await;
            Ok(formation)
        }
        .instrument(span)
        .await
    }

    pub(super) async fn apply_scale(
        &self,
        release: &Release,
        changes: &Formation,
        progress: &Progress,
    ) -> Result<()> {
        let app = &release.app;
        let s = &self.inner.settings;
        for (ty, n) in changes.iter() {
            let running: Vec<Instance> = self
                .inner
                .scheduler
                .list(Some(app))
                .await?
                .into_iter()
                .filter(|i| &i.process_type == ty && i.release == release.version)
                .collect();
            let have: BTreeSet<u32> = running.iter().map(|i| i.index).collect();
            let missing: Vec<u32> = (1..=n).filter(|i| !have.contains(i)).collect();
            if !missing.is_empty() {
                self.tell(
                    app,
                    progress,
                    "scale",
                    &format!("-----> Starting {} {ty} process(es)", missing.len()),
                )
                .await;
                let started = self
                    .inner
                    .scheduler
                    .start(StartRequest::new(release.clone(), ty.clone(), missing))
                    .await?;
                if let Err(e) = self.wait_healthy(release, &started).await {
                    self.remove_started(app, &started).await;
                    return Err(Error::deploy_failed(format!(
                        "scaling {ty} failed: {}",
                        e.message()
                    )));
                }
            }
            let mut seen = BTreeSet::new();
            let mut extra: Vec<Instance> = running
                .into_iter()
                .filter(|i| i.index > n || !seen.insert(i.index))
                .collect();
            extra.sort_by_key(|i| std::cmp::Reverse(i.index));
            if ty.is_web() {
                let leaving: BTreeSet<_> = extra.iter().map(|i| i.id.clone()).collect();
                let mut instances = self.inner.scheduler.list(Some(app)).await?;
                instances.retain(|i| !leaving.contains(&i.id));
                self.set_route(app, web_endpoints(&instances, release.version))
                    .await?;
            }
            if !extra.is_empty() {
                self.tell(
                    app,
                    progress,
                    "scale",
                    &format!("-----> Stopping {} {ty} process(es)", extra.len()),
                )
                .await;
                if ty.is_web() {
                    let addrs = extra.iter().filter_map(|i| i.address).collect();
                    self.inner
                        .router
                        .drain(DrainRequest::new(addrs, s.drain_timeout))
                        .await?;
                }
                let ids = extra.iter().map(|i| i.id.clone()).collect();
                self.inner
                    .scheduler
                    .stop(StopRequest::new(ids, s.stop_grace))
                    .await?;
            }
        }
        Ok(())
    }

    /// Rolls back to `target` (default: the newest succeeded release before the current one)
    /// by making a new release with the target's build and config (history only grows).
    ///
    /// Errors: `NotFound` (no such release), `Conflict` (nothing to roll back to).
    pub async fn rollback(
        &self,
        app: &AppName,
        target: Option<Version>,
        progress: Progress,
    ) -> Result<Release> {
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("rollback", %app, release = tracing::field::Empty);
        async {
            let current = self.inner.store.current_release(app).await?;
            let target = match target {
                Some(v) => self.inner.store.get_release(app, v).await?,
                None => {
                    let Some(cur) = &current else {
                        return Err(Error::conflict(format!(
                            "app \"{app}\" has no release to roll back from"
                        )));
                    };
                    let older = self
                        .inner
                        .store
                        .list_releases(app, ListReleases::newest(100).before(cur.version))
                        .await?;
                    older
                        .into_iter()
                        .find(|r| r.status == DeployStatus::Succeeded)
                        .ok_or_else(|| {
                            Error::conflict(format!(
                                "app \"{app}\" has no earlier successful release to roll back to"
                            ))
                        })?
                }
            };
            let new = NewRelease {
                app: app.clone(),
                build: target.build.clone(),
                config: target.config.clone(),
                description: format!("Rollback to {}", target.version),
            };
            let release = self
                .append_release(new, EventKind::ReleaseCreated, |r| {
                    format!(
                        "Release {} created (rollback to {})",
                        r.version, target.version
                    )
                })
                .await?;
            if let Err(e) = self.make_live(&release, &progress).await {
                // The failed rollback must not leave the app with the target's config: the
                // next deploy would silently lose the vars set since.
                if let Some(cur) = &current {
                    self.inner.store.set_config(app, cur.config.clone()).await?;
                }
                return Err(e);
            }
            self.prune(app).await;
            self.inner.store.get_release(app, release.version).await
        }
        .instrument(span)
        .await
    }

    /// Restarts the current release's processes (all, or one type) without downtime: new
    /// processes start and pass health checks before the old ones are drained and stopped.
    pub async fn restart(
        &self,
        app: &AppName,
        only: Option<ProcessType>,
        progress: Progress,
    ) -> Result<()> {
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("restart", %app);
        async {
            let current = self
                .inner
                .store
                .current_release(app)
                .await?
                .ok_or_else(|| Error::conflict(format!("app \"{app}\" has no running release")))?;
            let what = Rollout::Restart {
                only: only.as_ref(),
            };
            self.rollout(&current, what, &progress).await
        }
        .instrument(span)
        .await
    }

    /// Runs a one-off command in the current release's environment (`heroku run`). Its output
    /// streams through the returned handle and is also written to the app's log, line by line,
    /// as `app[run.0]`.
    pub async fn run(&self, app: &AppName, command: Vec<String>) -> Result<RunHandle> {
        if command.is_empty() || command[0].is_empty() {
            return Err(Error::invalid("command must not be empty"));
        }
        let current = self
            .inner
            .store
            .current_release(app)
            .await?
            .ok_or_else(|| {
                Error::conflict(format!(
                    "app \"{app}\" has no running release to run a command in"
                ))
            })?;
        self.log_line(
            app,
            "api",
            format!("Starting one-off process with {}", current.version),
        )
        .await;
        let mut handle = self
            .inner
            .scheduler
            .run_once(
                RunRequest::new(current, command).with_timeout(self.inner.settings.run_timeout),
            )
            .await?;
        // The run's output also reaches the app's log, as `app[run.0]` lines.
        let logs = self.inner.logs.clone();
        let run_app = app.clone();
        handle.output = handle
            .output
            .then(move |chunk| {
                let logs = logs.clone();
                let app = run_app.clone();
                async move {
                    for l in chunk.text.lines() {
                        let source = LogSource::App {
                            process_type: ProcessType::run(),
                            index: 0,
                        };
                        let _ = logs.append(LogLine::new(app.clone(), source, l)).await;
                    }
                    chunk
                }
            })
            .boxed();
        Ok(handle)
    }
}
