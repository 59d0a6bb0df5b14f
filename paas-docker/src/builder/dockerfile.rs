//! The Dockerfile strategy: an Engine API build of the exported source.

use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;
use paas_core::{Artifact, Build, BuildRequest, Error, ErrorKind, Procfile, Result, Timestamp};

use super::{default_procfile, BuildOutput, DockerBuilder};
use crate::common::{docker_error, image_default_command, LineSplitter};
use crate::tarball::{self, Owner, TarWriter};

impl DockerBuilder {
    pub(super) async fn dockerfile_build(
        &self,
        req: &BuildRequest,
        procfile: Option<Procfile>,
        progress: &BuildOutput,
    ) -> Result<Build> {
        progress.line("-----> Building from Dockerfile");
        let tag = format!(
            "{}:{}",
            self.repository(&req.app),
            self.tag_of(&req.build_id)?
        );
        let src = req.source_dir.clone();
        let context = tokio::task::spawn_blocking(move || {
            let ignore = match std::fs::read_to_string(src.join(".dockerignore")) {
                Ok(text) => tarball::IgnoreRules::parse(&text),
                Err(_) => tarball::IgnoreRules::default(),
            };
            let mut w = TarWriter::new();
            w.tree_filtered(&src, "", Owner::ROOT, true, &ignore)?;
            // The engine needs the Dockerfile even when .dockerignore lists it.
            if ignore.excludes("Dockerfile") {
                let f = std::fs::File::open(src.join("Dockerfile"))?;
                let len = f.metadata()?.len();
                w.file("Dockerfile", 0o644, Owner::ROOT, f, len)?;
            }
            w.finish()
        })
        .await
        .map_err(|e| Error::internal(format!("build context task failed: {e}")))??;
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.clone()),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let mut stream = self.docker.build_image(
            options,
            None,
            Some(bollard::body_try_stream(context.into_stream())),
        );
        let mut lines = LineSplitter::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = info.stream {
                        for l in lines.feed(s.as_bytes()) {
                            progress.line(&l);
                        }
                    }
                    if let Some(s) = info.status {
                        progress.line(&s);
                    }
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        progress.line(&err);
                        return Err(progress.failed("Dockerfile build failed"));
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    if let Some(l) = lines.finish() {
                        progress.line(&l);
                    }
                    progress.line(&error);
                    return Err(progress.failed("Dockerfile build failed"));
                }
                Err(e) => {
                    let err = docker_error(e, "build");
                    if err.kind() == ErrorKind::InvalidInput || err.kind() == ErrorKind::Internal {
                        progress.line(&err.to_string());
                        return Err(progress.failed("Dockerfile build failed"));
                    }
                    return Err(err);
                }
            }
        }
        if let Some(l) = lines.finish() {
            progress.line(&l);
        }
        let img = self
            .docker
            .inspect_image(&tag)
            .await
            .map_err(|e| docker_error(e, "build"))?;
        let defaults = default_procfile(
            img.config
                .as_ref()
                .and_then(|c| image_default_command(c.entrypoint.as_deref(), c.cmd.as_deref())),
        )?;
        let procfile = procfile.unwrap_or_default().merged_over(&defaults);
        progress.line(&format!("-----> Built image {tag}"));
        Ok(Build {
            id: req.build_id.clone(),
            app: req.app.clone(),
            commit: req.commit.clone(),
            artifact: Artifact { image: tag },
            procfile,
            strategy: "dockerfile".into(),
            created_at: Timestamp::now(),
        })
    }
}
