//! Removal of an app's old images and of build containers left behind.

use std::collections::HashMap;

use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, RemoveContainerOptions, RemoveImageOptions,
    RemoveVolumeOptions,
};
use paas_core::{AppName, PruneRequest, Result};

use super::DockerBuilder;
use crate::common::{docker_error, is_not_found, is_status, labels};

impl DockerBuilder {
    /// Removes every build container this platform id left behind: a daemon killed during a
    /// build leaves its build container (and that container keeps the app's cache volume in
    /// use). Call it at start, while no build of this platform id runs. Returns the app and
    /// build id of each one removed, so the caller can record that those builds failed.
    pub async fn remove_orphaned_builds(&self) -> Result<Vec<(AppName, String)>> {
        self.remove_build_containers(None).await
    }

    async fn remove_build_containers(
        &self,
        app: Option<&AppName>,
    ) -> Result<Vec<(AppName, String)>> {
        let mut label = vec![
            format!("{}={}", labels::PLATFORM, self.settings.platform_id),
            format!("{}={}", labels::KIND, labels::KIND_BUILD),
        ];
        if let Some(app) = app {
            label.push(format!("{}={app}", labels::APP));
        }
        let found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([("label".to_string(), label)])),
                ..Default::default()
            }))
            .await
            .map_err(|e| docker_error(e, "remove build containers"))?;
        let mut removed = Vec::new();
        for c in found {
            let Some(id) = c.id else { continue };
            let label = |k: &str| c.labels.as_ref().and_then(|l| l.get(k)).cloned();
            let owner = label(labels::APP).and_then(|a| AppName::new(a).ok());
            let build = label(labels::BUILD).unwrap_or_else(|| "?".into());
            let gone = self
                .docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await;
            match gone {
                Ok(()) => removed.extend(owner.map(|a| (a, build))),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(docker_error(e, "remove build containers")),
            }
        }
        Ok(removed)
    }

    /// Removes the app's images except the kept builds and those a container uses; with
    /// nothing kept, also its build containers and cache volume.
    pub(super) async fn prune_app(&self, req: PruneRequest) -> Result<()> {
        let repo = self.repository(&req.app);
        let images = self
            .docker
            .list_images(Some(ListImagesOptions {
                all: false,
                filters: Some(HashMap::from([(
                    "reference".to_string(),
                    vec![repo.clone()],
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| docker_error(e, "prune"))?;
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|e| docker_error(e, "prune"))?;
        let mut in_use = std::collections::HashSet::new();
        for c in &containers {
            if let Some(i) = &c.image_id {
                in_use.insert(i.clone());
            }
            if let Some(i) = &c.image {
                in_use.insert(i.clone());
            }
        }
        let keep: std::collections::HashSet<&str> = req.keep.iter().map(|b| b.as_str()).collect();
        let prefix = format!("{repo}:");
        for img in images {
            for name in &img.repo_tags {
                let Some(tag) = name.strip_prefix(&prefix) else {
                    continue;
                };
                if keep.contains(tag) || in_use.contains(&img.id) || in_use.contains(name) {
                    continue;
                }
                match self
                    .docker
                    .remove_image(
                        name,
                        Some(RemoveImageOptions {
                            force: false,
                            noprune: false,
                            ..Default::default()
                        }),
                        None,
                    )
                    .await
                {
                    Ok(_) => tracing::debug!(image = %name, "pruned"),
                    Err(e) if is_not_found(&e) || is_status(&e, 409) => {}
                    Err(e) => return Err(docker_error(e, "prune")),
                }
            }
        }
        if req.keep.is_empty() {
            // The app is going: its build containers (one left by a daemon that died during a
            // build holds the cache volume) go first.
            self.remove_build_containers(Some(&req.app)).await?;
            match self
                .docker
                .remove_volume(&self.cache_volume(&req.app), None::<RemoveVolumeOptions>)
                .await
            {
                Ok(()) => {}
                Err(e) if is_not_found(&e) || is_status(&e, 409) => {}
                Err(e) => return Err(docker_error(e, "prune")),
            }
        }
        Ok(())
    }
}
