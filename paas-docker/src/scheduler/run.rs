//! One-off runs (`paas run`): a labelled container per command, its output streamed to the
//! caller, removed once it exits or passes its time limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, LogsOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use paas_core::{Error, OutputStream, Result, RunHandle, RunOutput, RunRequest};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::{DockerScheduler, Inner};
use crate::common::{docker_error, labels, short_suffix, BACKEND};

impl DockerScheduler {
    /// Removes the one-off run containers this platform id left behind (a daemon that died
    /// during `paas run` leaves its container running, without its time limit). Call it at
    /// start, before anything runs. Returns how many it removed.
    pub async fn remove_orphaned_runs(&self) -> Result<usize> {
        let runs = self.inner.list_containers(None, labels::KIND_RUN).await?;
        let mut removed = 0;
        for id in runs.into_iter().filter_map(|c| c.id) {
            self.inner.remove_now(&id).await;
            removed += 1;
        }
        Ok(removed)
    }
}

impl Inner {
    /// [`paas_core::Scheduler::run_once`]: creates and starts the run container, streams its
    /// output and waits for its exit in a task of its own.
    pub(super) async fn run_one_off(self: &Arc<Self>, req: RunRequest) -> Result<RunHandle> {
        validate_run(&req)?;
        let id = self.create_run_container(&req).await?;
        if let Err(e) = self.docker.start_container(&id, None).await {
            self.remove_now(&id).await;
            return Err(docker_error(e, "run_once"));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = spawn_output_reader(self.docker.clone(), id.clone(), tx);
        let exit = self.clone().finish_run(id, req.timeout, reader);
        // The wait, the timeout and the removal run in their own task, so they hold whether or
        // not the caller polls `exit` (or drops the handle).
        let exit = tokio::spawn(exit);
        let exit = async move {
            exit.await.unwrap_or_else(|e| {
                Err(Error::internal(format!("one-off run task failed: {e}"))
                    .with_backend(BACKEND)
                    .with_operation("run_once"))
            })
        };
        let output =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) })
                .boxed();
        Ok(RunHandle {
            output,
            exit: Box::pin(exit),
        })
    }

    /// Creates the (unstarted) run container: the release's image and config plus the
    /// request's environment, the command as entrypoint and arguments.
    async fn create_run_container(&self, req: &RunRequest) -> Result<String> {
        let release = &req.release;
        let ty = &req.process_type;
        let mut env: BTreeMap<String, String> = release.config.to_env().into_iter().collect();
        env.extend(req.env.clone());
        env.insert("DYNO".into(), format!("{ty}.0"));
        let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut lbl = self.container_labels(labels::KIND_RUN, release, ty, 0);
        lbl.remove(labels::PORT);
        let body = ContainerCreateBody {
            image: Some(release.build.artifact.image.clone()),
            entrypoint: Some(vec![req.command[0].clone()]),
            cmd: Some(req.command[1..].to_vec()),
            env: Some(env),
            user: Some(self.settings.user.clone()),
            labels: Some(lbl),
            host_config: Some(self.security(self.settings.limits_for(ty))),
            ..Default::default()
        };
        let name = format!(
            "{}-{}-{ty}.0-v{}-{}",
            self.settings.platform_id,
            release.app,
            release.version.0,
            short_suffix()
        );
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| docker_error(e, "run_once"))?;
        Ok(created.id)
    }

    /// Waits for the run's exit (killing it past `timeout`), lets the output reader finish
    /// and removes the container.
    async fn finish_run(
        self: Arc<Self>,
        id: String,
        timeout: Option<Duration>,
        reader: JoinHandle<()>,
    ) -> Result<i32> {
        let outcome = match timeout {
            Some(t) => match tokio::time::timeout(t, self.wait_run_exit(&id)).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = self
                        .docker
                        .kill_container(
                            &id,
                            Some(KillContainerOptions {
                                signal: "SIGKILL".into(),
                            }),
                        )
                        .await;
                    Err(
                        Error::timeout(format!("command did not finish within {t:?}"))
                            .with_backend(BACKEND)
                            .with_operation("run_once"),
                    )
                }
            },
            None => self.wait_run_exit(&id).await,
        };
        // All output is read before the container goes away.
        let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        self.remove_now(&id).await;
        outcome.map(|code| i32::try_from(code).unwrap_or(i32::MAX))
    }

    /// The run container's exit code.
    async fn wait_run_exit(&self, id: &str) -> Result<i64> {
        let mut w = self.docker.wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        match w.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(docker_error(e, "run_once")),
            None => Err(Error::internal("engine closed the wait stream")
                .with_backend(BACKEND)
                .with_operation("run_once")),
        }
    }
}

/// Rejects an empty command, NUL bytes in arguments and invalid environment names.
fn validate_run(req: &RunRequest) -> Result<()> {
    if req.command.is_empty() || req.command[0].is_empty() {
        return Err(Error::invalid("command must not be empty"));
    }
    if req.command.iter().any(|a| a.contains('\0')) {
        return Err(Error::invalid(
            "command arguments must not contain NUL bytes",
        ));
    }
    for k in req.env.keys() {
        paas_core::ConfigKey::new(k.as_str())?;
    }
    Ok(())
}

/// Follows the container's stdout and stderr into `tx` until it ends.
fn spawn_output_reader(
    docker: Docker,
    id: String,
    tx: UnboundedSender<RunOutput>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut logs = docker.logs(
            &id,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        while let Some(item) = logs.next().await {
            let (stream, message) = match item {
                Ok(bollard::container::LogOutput::StdOut { message })
                | Ok(bollard::container::LogOutput::Console { message }) => {
                    (OutputStream::Stdout, message)
                }
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    (OutputStream::Stderr, message)
                }
                Ok(_) => continue,
                Err(_) => break,
            };
            let _ = tx.send(RunOutput {
                stream,
                text: String::from_utf8_lossy(&message).to_string(),
            });
        }
    })
}
