//! The buildpack and procfile strategies, in one build container on the stack image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, LogsOptions, RemoveContainerOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use paas_core::{Artifact, Build, BuildRequest, Error, Procfile, Result, Timestamp};

use super::release::parse_release_yaml;
use super::script::{BUILD_SCRIPT, EXIT_EXPLICIT_NOT_DETECTED, EXIT_NOT_DETECTED};
use super::{BuildOutput, DockerBuilder};
use crate::common::{docker_error, is_not_found, labels, LineSplitter, BACKEND};
use crate::logs::lock;
use crate::stack;
use crate::tarball::{self, TarWriter};

impl DockerBuilder {
    async fn ensure_stack(&self) -> Result<()> {
        match self.docker.inspect_image(&self.settings.stack_image).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => {
                if self.settings.stack_image == stack::DEFAULT_STACK_IMAGE {
                    stack::ensure_busybox_stack(&self.docker, &self.settings.stack_image)
                        .await
                        .map(|_| ())
                } else {
                    Err(Error::not_found(format!(
                        "stack image \"{}\" does not exist on the engine",
                        self.settings.stack_image
                    ))
                    .with_backend(BACKEND)
                    .with_operation("build"))
                }
            }
            Err(e) => Err(docker_error(e, "build")),
        }
    }

    /// Buildpack and procfile strategies, in one build container.
    pub(super) async fn container_build(
        &self,
        req: &BuildRequest,
        procfile: Option<Procfile>,
        progress: &BuildOutput,
        container_slot: &Mutex<Option<String>>,
    ) -> Result<Build> {
        let tag = self.tag_of(&req.build_id)?;
        let workdir = tempfile::tempdir()?;
        let explicit = req
            .config
            .get("BUILDPACK_URL")
            .map(|v| v.expose().to_string());
        let buildpacks = self
            .select_buildpacks(explicit.as_deref(), workdir.path(), progress)
            .await?;
        if buildpacks.is_empty() && procfile.is_none() {
            return Err(progress
                .failed("no Dockerfile, no buildpack applies and no Procfile: nothing to build"));
        }
        self.ensure_stack().await?;

        let explicit_flag = explicit.is_some();
        let upload = self.build_upload(req, buildpacks, explicit_flag).await?;
        let volume = self.ensure_cache_volume(req).await?;
        let id = self.create_build_container(req, &tag, volume).await?;
        *lock(container_slot) = Some(id.clone());
        let result = self
            .run_build_container(req, &id, upload, procfile, progress, explicit_flag)
            .await;
        let _ = self
            .docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        *lock(container_slot) = None;
        drop(workdir);
        result
    }

    /// The buildpacks to try: the one `BUILDPACK_URL` names (cloned into `workdir`), or else
    /// those of [`super::DockerBuilderSettings::buildpacks_dir`] in name order.
    async fn select_buildpacks(
        &self,
        explicit: Option<&str>,
        workdir: &Path,
        progress: &BuildOutput,
    ) -> Result<Vec<PathBuf>> {
        let mut buildpacks: Vec<PathBuf> = Vec::new();
        if let Some(url) = explicit {
            let dest = workdir.join("buildpack");
            self.clone_buildpack(url, &dest, progress).await?;
            buildpacks.push(dest);
        } else if let Some(dir) = &self.settings.buildpacks_dir {
            let dir = dir.clone();
            buildpacks = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<PathBuf>> {
                let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join("bin/detect").is_file() && p.join("bin/compile").is_file())
                    .collect();
                v.sort();
                Ok(v)
            })
            .await
            .map_err(|e| Error::internal(format!("buildpack listing failed: {e}")))??;
        }
        Ok(buildpacks)
    }

    /// What goes into the container, owned by the build user: the source at `/app`, the
    /// cache mount point, the config as files and the buildpacks under `/tmp/paas`.
    async fn build_upload(
        &self,
        req: &BuildRequest,
        buildpacks: Vec<PathBuf>,
        explicit: bool,
    ) -> Result<tarball::Archive> {
        let owner = self.owner;
        let src = req.source_dir.clone();
        let env: Vec<(String, String)> = req.config.to_env();
        let upload = tokio::task::spawn_blocking(move || -> std::io::Result<tarball::Archive> {
            let mut w = TarWriter::new();
            w.dir("app", 0o755, owner)?;
            w.tree(&src, "app", owner, true)?;
            w.dir("cache", 0o755, owner)?;
            w.dir("tmp/paas", 0o700, owner)?;
            w.dir("tmp/paas/env", 0o700, owner)?;
            for (k, v) in &env {
                w.file(
                    &format!("tmp/paas/env/{k}"),
                    0o600,
                    owner,
                    v.as_bytes(),
                    v.len() as u64,
                )?;
            }
            w.dir("tmp/paas/buildpacks", 0o755, owner)?;
            for (i, bp) in buildpacks.iter().enumerate() {
                let prefix = format!("tmp/paas/buildpacks/{i:03}");
                w.dir(&prefix, 0o755, owner)?;
                w.tree(bp, &prefix, owner, true)?;
            }
            if explicit {
                w.file("tmp/paas/explicit", 0o644, owner, &b""[..], 0)?;
            }
            w.finish()
        })
        .await
        .map_err(|e| Error::internal(format!("build upload task failed: {e}")))??;
        Ok(upload)
    }

    /// Creates (or keeps) the app's cache volume and returns its name.
    async fn ensure_cache_volume(&self, req: &BuildRequest) -> Result<String> {
        let volume = self.cache_volume(&req.app);
        self.docker
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(HashMap::from([
                    (labels::APP.to_string(), req.app.to_string()),
                    (
                        labels::PLATFORM.to_string(),
                        self.settings.platform_id.clone(),
                    ),
                ])),
                ..Default::default()
            })
            .await
            .map_err(|e| docker_error(e, "build"))?;
        Ok(volume)
    }

    /// Creates the (unstarted) build container and returns its id.
    async fn create_build_container(
        &self,
        req: &BuildRequest,
        tag: &str,
        volume: String,
    ) -> Result<String> {
        let body = ContainerCreateBody {
            image: Some(self.settings.stack_image.clone()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![BUILD_SCRIPT.into()]),
            user: Some(self.settings.build_user.clone()),
            working_dir: Some("/app".into()),
            env: Some(vec![
                format!("STACK={}", self.settings.stack_image),
                "HOME=/app".into(),
            ]),
            labels: Some(HashMap::from([
                (labels::KIND.to_string(), labels::KIND_BUILD.to_string()),
                (
                    labels::PLATFORM.to_string(),
                    self.settings.platform_id.clone(),
                ),
                (labels::APP.to_string(), req.app.to_string()),
                (labels::BUILD.to_string(), req.build_id.to_string()),
            ])),
            host_config: Some(HostConfig {
                privileged: Some(false),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                memory: self.settings.build_memory_bytes,
                memory_swap: self.settings.build_memory_bytes,
                pids_limit: self.settings.build_pids,
                init: Some(true),
                network_mode: self.settings.build_network.clone(),
                mounts: Some(vec![Mount {
                    target: Some("/cache".into()),
                    source: Some(volume),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(format!(
                        "{}-build-{}-{}",
                        self.settings.image_prefix.replace('/', "-"),
                        req.app,
                        tag
                    )),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| docker_error(e, "build"))?;
        Ok(created.id)
    }

    async fn run_build_container(
        &self,
        req: &BuildRequest,
        id: &str,
        upload: tarball::Archive,
        procfile: Option<Procfile>,
        progress: &BuildOutput,
        explicit: bool,
    ) -> Result<Build> {
        self.start_build_container(id, upload).await?;
        self.stream_build_logs(id, progress).await;
        let code = self.wait_build_exit(id).await?;
        let (strategy, defaults) = self
            .build_outcome(id, code, procfile.is_some(), explicit, progress)
            .await?;
        let procfile = procfile.unwrap_or_default().merged_over(&defaults);
        let image = self.commit_build_image(req, id, &strategy).await?;
        progress.line(&format!("-----> Built image {image}"));
        Ok(Build {
            id: req.build_id.clone(),
            app: req.app.clone(),
            commit: req.commit.clone(),
            artifact: Artifact { image },
            procfile,
            strategy,
            created_at: Timestamp::now(),
        })
    }

    /// Uploads the build's files into the container and starts it.
    async fn start_build_container(&self, id: &str, upload: tarball::Archive) -> Result<()> {
        self.docker
            .upload_to_container(
                id,
                Some(UploadToContainerOptions {
                    path: "/".into(),
                    ..Default::default()
                }),
                bollard::body_try_stream(upload.into_stream()),
            )
            .await
            .map_err(|e| docker_error(e, "build"))?;
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| docker_error(e, "build"))?;
        Ok(())
    }

    /// Follows the build container's stdout and stderr as build lines until it ends.
    async fn stream_build_logs(&self, id: &str, progress: &BuildOutput) {
        let mut logs = self.docker.logs(
            id,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let mut out_lines = LineSplitter::default();
        let mut err_lines = LineSplitter::default();
        while let Some(item) = logs.next().await {
            match item {
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    for l in err_lines.feed(&message) {
                        progress.line(&l);
                    }
                }
                Ok(o) => {
                    for l in out_lines.feed(o.as_ref()) {
                        progress.line(&l);
                    }
                }
                Err(_) => break,
            }
        }
        for l in [out_lines.finish(), err_lines.finish()]
            .into_iter()
            .flatten()
        {
            progress.line(&l);
        }
    }

    /// The build script's exit code.
    async fn wait_build_exit(&self, id: &str) -> Result<i64> {
        let mut wait = self.docker.wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        match wait.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(docker_error(e, "build")),
            None => Err(Error::internal("engine closed the wait stream").with_backend(BACKEND)),
        }
    }

    /// What the build script's exit code means: the strategy and the buildpack's default
    /// process types, or why the build failed.
    async fn build_outcome(
        &self,
        id: &str,
        code: i64,
        has_procfile: bool,
        explicit: bool,
        progress: &BuildOutput,
    ) -> Result<(String, Procfile)> {
        match code {
            0 => self.read_build_result(id, progress).await,
            EXIT_NOT_DETECTED if has_procfile && !explicit => {
                progress
                    .line("-----> No buildpack applies; using the Procfile with the source as-is");
                Ok(("procfile".into(), Procfile::default()))
            }
            EXIT_NOT_DETECTED => {
                Err(progress.failed("no buildpack applies to this app and it has no Procfile"))
            }
            EXIT_EXPLICIT_NOT_DETECTED => {
                Err(progress.failed("the buildpack from BUILDPACK_URL does not apply to this app"))
            }
            code => Err(progress.failed(&format!("buildpack build failed (exit code {code})"))),
        }
    }

    /// Reads the detected buildpack's name and `bin/release` output from a successful build.
    async fn read_build_result(
        &self,
        id: &str,
        progress: &BuildOutput,
    ) -> Result<(String, Procfile)> {
        let mut defaults = Procfile::default();
        let result = self.download(id, "/tmp/paas-result").await?;
        let name = tarball::read_file(&result, "paas-result/name")?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_else(|| "buildpack".into());
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let strategy = format!("buildpack:{name}");
        if let Some(yaml) = tarball::read_file(&result, "paas-result/release.yml")? {
            defaults = parse_release_yaml(&String::from_utf8_lossy(&yaml))
                .map_err(|e| progress.failed(&format!("bin/release output: {}", e.message())))?;
        }
        Ok((strategy, defaults))
    }

    /// Commits the build container as the build's image and returns the image reference.
    async fn commit_build_image(
        &self,
        req: &BuildRequest,
        id: &str,
        strategy: &str,
    ) -> Result<String> {
        let repo = self.repository(&req.app);
        let tag = self.tag_of(&req.build_id)?;
        let mut image_labels = self.image_labels(&req.app, req.build_id.as_str(), strategy);
        image_labels.insert(labels::KIND.into(), "image".into());
        self.docker
            .commit_container(
                CommitContainerOptions {
                    container: Some(id.to_string()),
                    repo: Some(repo.clone()),
                    tag: Some(tag.clone()),
                    comment: Some(format!("paas build {}", req.build_id)),
                    pause: false,
                    ..Default::default()
                },
                ContainerConfig {
                    cmd: Some(vec!["/bin/sh".into()]),
                    working_dir: Some("/app".into()),
                    user: Some(self.settings.build_user.clone()),
                    labels: Some(image_labels),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| docker_error(e, "build"))?;
        Ok(format!("{repo}:{tag}"))
    }
}
