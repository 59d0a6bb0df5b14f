//! Starting and stopping instances, and converging an app to a release's formation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{
    KillContainerOptions, RemoveContainerOptions, RenameContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use paas_core::{
    ConvergeReport, ConvergeRequest, Error, Instance, InstanceState, ProcessType, Release, Result,
    Scheduler, StartRequest,
};

use super::containers::STOPPING_SUFFIX;
use super::{DockerScheduler, Inner};
use crate::common::{docker_error, is_not_found, is_status, BACKEND};
use crate::logs::{lock, LogTarget};

impl Inner {
    pub(super) async fn start_one(
        self: &Arc<Self>,
        release: &Release,
        ty: &ProcessType,
        index: u32,
    ) -> Result<Instance> {
        let id = self.create_instance(release, ty, index).await?;
        let started = async {
            self.docker
                .start_container(&id, None)
                .await
                .map_err(|e| docker_error(e, "start"))?;
            let c = self.inspect(&id).await?.ok_or_else(|| {
                Error::internal("container vanished after start").with_backend(BACKEND)
            })?;
            self.instance_from_inspect(&c).ok_or_else(|| {
                Error::internal("started container lacks labels").with_backend(BACKEND)
            })
        }
        .await;
        match started {
            Ok(instance) => {
                self.logs.follow(
                    LogTarget {
                        id: id.clone(),
                        app: instance.app.clone(),
                        process_type: instance.process_type.clone(),
                        index,
                    },
                    None,
                );
                Ok(instance)
            }
            Err(e) => {
                self.remove_now(&id).await;
                Err(e)
            }
        }
    }

    pub(super) async fn remove_now(&self, id: &str) {
        let _ = self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
        lock(&self.restarts).remove(id);
        self.logs.forget(id);
    }

    pub(super) async fn stop_one(&self, id: &str, grace: Duration) -> Result<()> {
        let Some(c) = self.inspect(id).await? else {
            return Ok(());
        };
        if !self.is_ours(c.config.as_ref().and_then(|c| c.labels.as_ref())) {
            return Ok(());
        }
        let full_id = c.id.clone().unwrap_or_else(|| id.to_string());
        let name = c.name.clone().unwrap_or_default();
        let name = name.trim_start_matches('/');
        if !name.ends_with(STOPPING_SUFFIX) {
            let renamed = self
                .docker
                .rename_container(
                    &full_id,
                    RenameContainerOptions {
                        name: format!("{name}{STOPPING_SUFFIX}"),
                    },
                )
                .await;
            if let Err(e) = renamed {
                if is_not_found(&e) {
                    return Ok(());
                }
            }
        }
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if running && !grace.is_zero() {
            let term = self
                .docker
                .kill_container(
                    &full_id,
                    Some(KillContainerOptions {
                        signal: "SIGTERM".into(),
                    }),
                )
                .await;
            if term.is_ok() {
                let mut wait = self.docker.wait_container(
                    &full_id,
                    Some(WaitContainerOptions {
                        condition: "not-running".into(),
                    }),
                );
                if tokio::time::timeout(grace, wait.next()).await.is_ok() {
                    self.logs.settle(&full_id, Duration::from_secs(2)).await;
                }
            }
        }
        match self
            .docker
            .remove_container(
                &full_id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) || is_status(&e, 409) => {}
            Err(e) => return Err(docker_error(e, "stop")),
        }
        lock(&self.restarts).remove(&full_id);
        self.logs.forget(&full_id);
        Ok(())
    }
}

impl DockerScheduler {
    /// Brings the app to the release's formation: keeps one instance per (type, index),
    /// starts the missing ones and stops the rest, highest indexes first.
    pub(super) async fn converge_release(&self, req: ConvergeRequest) -> Result<ConvergeReport> {
        let release = &req.release;
        let current = self.list(Some(&release.app)).await?;
        let wanted = |i: &Instance| {
            i.release == release.version
                && !i.process_type.is_release()
                && i.index >= 1
                && i.index <= req.formation.get(&i.process_type)
                && release.build.procfile.command(&i.process_type).is_some()
                && i.state != InstanceState::Stopping
        };
        // One keeper per (type, index), preferring a running instance.
        let mut keep: BTreeMap<(ProcessType, u32), &Instance> = BTreeMap::new();
        for i in current.iter().filter(|i| wanted(i)) {
            let key = (i.process_type.clone(), i.index);
            let better = match keep.get(&key) {
                None => true,
                Some(k) => k.state != InstanceState::Running && i.state == InstanceState::Running,
            };
            if better {
                keep.insert(key, i);
            }
        }
        // A kept container that was created but never started (the owner died in between)
        // is started here, or it would hold its slot forever.
        for k in keep.values().filter(|k| k.state == InstanceState::Starting) {
            if let Err(e) = self.inner.docker.start_container(&k.id, None).await {
                tracing::debug!(id = %k.id, error = %e, "converge: start of a created container");
            }
        }
        let mut stop: Vec<&Instance> = current
            .iter()
            .filter(|i| {
                keep.get(&(i.process_type.clone(), i.index))
                    .is_none_or(|k| k.id != i.id)
            })
            .collect();
        let mut report = ConvergeReport::default();
        for (ty, n) in req.formation.iter() {
            if ty.is_release() || release.build.procfile.command(ty).is_none() {
                continue;
            }
            let missing: Vec<u32> = (1..=n)
                .filter(|i| !keep.contains_key(&(ty.clone(), *i)))
                .collect();
            if !missing.is_empty() {
                let started = self
                    .start(StartRequest::new(release.clone(), ty.clone(), missing))
                    .await?;
                report.started.extend(started);
            }
        }
        // Highest indexes first.
        stop.sort_by(|a, b| b.index.cmp(&a.index).then_with(|| a.id.cmp(&b.id)));
        for i in stop {
            self.inner.stop_one(&i.id, req.grace).await?;
            report.stopped.push(i.id.clone());
        }
        Ok(report)
    }
}
