//! Builds from a prebuilt image ([`paas_core::Builder::from_image`]).

use std::collections::HashMap;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions, TagImageOptions};
use paas_core::{Artifact, Build, Error, ImageRequest, Procfile, Result, Timestamp};

use super::{default_procfile, DockerBuilder};
use crate::common::{docker_error, image_default_command, is_not_found, labels, BACKEND};
use crate::tarball;

impl DockerBuilder {
    /// Tags an existing image as the app's build; its Procfile (if any) is merged over the
    /// image's default command as `web`.
    pub(super) async fn build_from_image(&self, req: ImageRequest) -> Result<Build> {
        let img = match self.docker.inspect_image(&req.image).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => {
                return Err(Error::not_found(format!(
                    "image \"{}\" does not exist on the engine",
                    req.image.escape_debug()
                ))
                .with_backend(BACKEND)
                .with_operation("from_image"))
            }
            Err(e) => return Err(docker_error(e, "from_image")),
        };
        let repo = self.repository(&req.app);
        let tag = self.tag_of(&req.build_id)?;
        self.docker
            .tag_image(
                &req.image,
                Some(TagImageOptions {
                    repo: Some(repo.clone()),
                    tag: Some(tag.clone()),
                }),
            )
            .await
            .map_err(|e| docker_error(e, "from_image"))?;
        let config = img.config.as_ref();
        let defaults = default_procfile(
            config.and_then(|c| image_default_command(c.entrypoint.as_deref(), c.cmd.as_deref())),
        )?;
        let in_image = self
            .procfile_in_image(&req.image, config.and_then(|c| c.working_dir.as_deref()))
            .await?;
        let procfile = in_image.unwrap_or_default().merged_over(&defaults);
        let image = format!("{repo}:{tag}");
        req.output
            .line(format!("-----> Using image {} as {image}", req.image));
        Ok(Build {
            id: req.build_id.clone(),
            app: req.app.clone(),
            commit: None,
            artifact: Artifact { image },
            procfile,
            strategy: "image".into(),
            created_at: Timestamp::now(),
        })
    }

    /// Reads `/app/Procfile` (or `<WorkingDir>/Procfile`) from an image without starting it.
    async fn procfile_in_image(
        &self,
        image: &str,
        workdir: Option<&str>,
    ) -> Result<Option<Procfile>> {
        let created = self
            .docker
            .create_container(
                None::<CreateContainerOptions>,
                ContainerCreateBody {
                    image: Some(image.to_string()),
                    entrypoint: Some(vec!["/nonexistent".into()]),
                    labels: Some(HashMap::from([
                        (labels::KIND.to_string(), labels::KIND_BUILD.to_string()),
                        (
                            labels::PLATFORM.to_string(),
                            self.settings.platform_id.clone(),
                        ),
                    ])),
                    network_disabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| docker_error(e, "from_image"))?;
        let mut found = None;
        let mut paths = Vec::new();
        if let Some(w) = workdir.filter(|w| w.starts_with('/') && *w != "/app") {
            paths.push(format!("{}/Procfile", w.trim_end_matches('/')));
        }
        paths.push("/app/Procfile".into());
        for p in paths {
            let archive = self.download(&created.id, &p).await;
            if let Ok(archive) = archive {
                if let Ok(Some(bytes)) = tarball::read_file(&archive, "Procfile") {
                    found = Some(bytes);
                    break;
                }
            }
        }
        let _ = self
            .docker
            .remove_container(
                &created.id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        match found {
            Some(b) => Ok(Some(Procfile::parse(&String::from_utf8_lossy(&b))?)),
            None => Ok(None),
        }
    }
}
