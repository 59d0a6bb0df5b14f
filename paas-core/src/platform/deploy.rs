//! Deploy: build, release, release phase.

use std::time::Duration;

use futures::StreamExt;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::model::{
    AppName, Build, BuildId, DeployStatus, EventKind, LogLine, LogSource, NewRelease, ProcessType,
    Release,
};
use crate::traits::{
    BuildRequest, Builder, ExportRequest, ImageRequest, LogSink, OutputSender, ReleaseStore,
    RunHandle, RunRequest, Scheduler, SourceStore,
};

use super::*;

impl Platform {
    // -----------------------------------------------------------------------------------------
    // Deploy

    /// Deploys: export → build → release → release phase → start new processes → wait healthy →
    /// switch the route → drain → stop the old processes.
    ///
    /// A failed build creates no release (`BuildFailed`). Processes that never become healthy,
    /// or a failing release phase, mark the release failed, remove the new processes, leave the
    /// old release serving, and return `DeployFailed`.
    pub async fn deploy(&self, req: DeployRequest) -> Result<Release> {
        let app = req.app.clone();
        let span = tracing::info_span!("deploy", %app, release = tracing::field::Empty);
        let _g = self.lock_app(&app).await;
        async move {
            self.inner.store.get_app(&app).await?;
            let progress = req.progress.clone();
            let build = self.build(&app, &req.source, &progress).await?;
            let config = self.inner.store.get_config(&app).await?;
            let description = match &build.commit {
                Some(c) => format!("Deploy {}", short(c)),
                None => format!("Deploy {}", build.artifact.image),
            };
            let new = NewRelease {
                app: app.clone(),
                build,
                config,
                description,
            };
            let release = self
                .append_release(new, EventKind::ReleaseCreated, |r| {
                    format!("Release {} created ({})", r.version, r.description)
                })
                .await?;
            self.make_live(&release, &progress).await?;
            self.prune(&app).await;
            self.inner.store.get_release(&app, release.version).await
        }
        .instrument(span)
        .await
    }

    pub(super) async fn build(
        &self,
        app: &AppName,
        source: &DeploySource,
        progress: &Progress,
    ) -> Result<Build> {
        let build_id = BuildId::generate();
        let (out, mut rx) = OutputSender::channel();
        let forward = {
            let me = self.clone();
            let app = app.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                // The user sees every line; the app's log keeps the first
                // BUILD_LOG_LINES (a build that prints without end must not flood it).
                let mut logged = 0usize;
                let mut dropped = 0usize;
                while let Some(line) = rx.recv().await {
                    progress.line(&line);
                    if logged < BUILD_LOG_LINES {
                        logged += 1;
                        me.log_line(&app, "build", &line).await;
                    } else {
                        dropped += 1;
                    }
                }
                if dropped > 0 {
                    let note = format!("({dropped} more lines of build output were not logged)");
                    me.log_line(&app, "build", note).await;
                }
            })
        };
        self.record_event(
            app,
            EventKind::BuildStarted,
            None,
            format!("Build {build_id} started"),
        )
        .await;
        let result = match source {
            DeploySource::Image(image) => {
                let mut r = ImageRequest::new(app.clone(), build_id.clone(), image.clone());
                r.output = out;
                self.inner.builder.from_image(r).await
            }
            DeploySource::Ref(_) | DeploySource::Commit(_) => {
                self.build_source(app, &build_id, source, out).await
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), forward).await;
        match result {
            Ok(build) => {
                self.inner.store.put_build(build.clone()).await?;
                let types: Vec<String> = build
                    .procfile
                    .entries()
                    .map(|(t, _)| t.to_string())
                    .collect();
                self.record_event(
                    app,
                    EventKind::BuildSucceeded,
                    None,
                    format!(
                        "Build {} succeeded ({}; process types: {})",
                        build.id,
                        build.strategy,
                        types.join(", ")
                    ),
                )
                .await;
                Ok(build)
            }
            Err(e) => {
                self.record_event(
                    app,
                    EventKind::BuildFailed,
                    None,
                    format!("Build {build_id} failed: {e}"),
                )
                .await;
                progress.line(format!("Build failed: {e}"));
                Err(e)
            }
        }
    }

    pub(super) async fn build_source(
        &self,
        app: &AppName,
        build_id: &BuildId,
        source: &DeploySource,
        out: OutputSender,
    ) -> Result<Build> {
        let commit = match source {
            DeploySource::Ref(r) => self.inner.sources.resolve(app, r).await?,
            DeploySource::Commit(c) => c.clone(),
            DeploySource::Image(_) => unreachable!("handled by the caller"),
        };
        out.line(format!(
            "-----> Building {app} from commit {}",
            short(&commit)
        ));
        let dir = self
            .inner
            .settings
            .work_dir
            .join(format!("{app}-{build_id}"));
        tokio::fs::create_dir_all(&dir).await?;
        let result = async {
            self.inner
                .sources
                .export(ExportRequest::new(app.clone(), commit.clone(), &dir))
                .await?;
            let config = self.inner.store.get_config(app).await?;
            let req = BuildRequest::new(app.clone(), build_id.clone(), &dir)
                .with_commit(commit)
                .with_config(config)
                .with_output(out);
            let limit = self.inner.settings.build_timeout;
            match tokio::time::timeout(limit, self.inner.builder.build(req)).await {
                Ok(r) => r,
                Err(_) => Err(Error::timeout(format!(
                    "build did not finish within {limit:?}"
                ))),
            }
        }
        .await;
        let cleanup = dir.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(cleanup)).await;
        result
    }

    pub(super) async fn release_phase(&self, release: &Release, progress: &Progress) -> Result<()> {
        let Some(cmd) = release.build.procfile.command(&ProcessType::release()) else {
            return Ok(());
        };
        let app = &release.app;
        self.tell(
            app,
            progress,
            "deploy",
            &format!("-----> Running release command for {}", release.version),
        )
        .await;
        let req = RunRequest::new(release.clone(), vec!["sh".into(), "-c".into(), cmd.into()])
            .with_process_type(ProcessType::release())
            .with_timeout(self.inner.settings.release_phase_timeout);
        let outcome = match self.inner.scheduler.run_once(req).await {
            Ok(handle) => {
                self.pump_run(app, &ProcessType::release(), handle, progress)
                    .await
            }
            Err(e) => Err(e),
        };
        let failure = match outcome {
            Ok(0) => None,
            Ok(code) => Some(format!("release command exited with code {code}")),
            Err(e) => Some(format!("release command failed: {e}")),
        };
        match failure {
            None => {
                self.record_event(
                    app,
                    EventKind::ReleasePhase,
                    Some(release.version),
                    format!("Release command of {} succeeded", release.version),
                )
                .await;
                Ok(())
            }
            Some(reason) => {
                self.fail_release(release, &reason, progress).await;
                Err(Error::deploy_failed(format!(
                    "deploy of {} failed: {reason}",
                    release.version
                )))
            }
        }
    }

    /// Streams a run's output into the log (as `app[TYPE.0]`) and progress; returns its exit.
    pub(super) async fn pump_run(
        &self,
        app: &AppName,
        ty: &ProcessType,
        handle: RunHandle,
        progress: &Progress,
    ) -> Result<i32> {
        let RunHandle { mut output, exit } = handle;
        let pump = async {
            while let Some(chunk) = output.next().await {
                for l in chunk.text.lines() {
                    progress.line(l);
                    let line = LogLine::new(
                        app.clone(),
                        LogSource::App {
                            process_type: ty.clone(),
                            index: 0,
                        },
                        l,
                    );
                    let _ = self.inner.logs.append(line).await;
                }
            }
        };
        // The exit (and with it the run's timeout) is awaited alongside the output: a command
        // that never ends is cut off by the timeout even if its output stream stays open.
        let (code, ()) = tokio::join!(exit, async {
            let _ = tokio::time::timeout(Duration::from_secs(24 * 3600), pump).await;
        });
        code
    }

    /// Appends a release, records it on the current span and emits `event` with the message
    /// `describe` makes of it.
    pub(super) async fn append_release(
        &self,
        new: NewRelease,
        event: EventKind,
        describe: impl FnOnce(&Release) -> String,
    ) -> Result<Release> {
        let app = new.app.clone();
        let release = self.inner.store.append_release(new).await?;
        tracing::Span::current().record("release", tracing::field::display(release.version));
        self.record_event(&app, event, Some(release.version), describe(&release))
            .await;
        Ok(release)
    }

    pub(super) async fn fail_release(&self, release: &Release, reason: &str, progress: &Progress) {
        let app = &release.app;
        if let Err(e) = self
            .inner
            .store
            .set_release_status(app, release.version, DeployStatus::Failed(reason.into()))
            .await
        {
            tracing::error!(%app, error = %e, "could not record the failed release");
        }
        let msg = format!("Deploy of {} failed: {reason}", release.version);
        progress.line(format!(" !     {msg}"));
        self.record_event(app, EventKind::DeployFailed, Some(release.version), msg)
            .await;
    }
}
