use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::error::{Error, Result};
use crate::model::{AppName, Artifact, Build, BuildId, Procfile, Timestamp};
use crate::traits::{BuildRequest, Builder, ImageRequest, PruneRequest};

/// A [`Builder`] that "builds" by reading the source's `Procfile`: the artifact is a
/// `memory://APP/BUILD` handle that [`MemoryScheduler`](super::MemoryScheduler) can run.
///
/// A source without a Procfile fails with `BuildFailed`, an invalid Procfile with
/// `InvalidInput` naming the line.
#[derive(Debug, Default)]
pub struct MemoryBuilder {
    artifacts: Mutex<HashMap<AppName, HashMap<String, Procfile>>>,
}

impl MemoryBuilder {
    /// A new builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Artifacts currently kept for the app.
    pub fn artifacts(&self, app: &AppName) -> HashSet<String> {
        lock(&self.artifacts)
            .get(app)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Builder for MemoryBuilder {
    async fn build(&self, req: BuildRequest) -> Result<Build> {
        let out = &req.output;
        out.line(format!("-----> Building {} (memory builder)", req.app));
        let path = req.source_dir.join("Procfile");
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.line(" !     No Procfile found at the source root");
                return Err(Error::build_failed(
                    "build failed: no Procfile found at the source root (the memory builder runs Procfile apps only)",
                )
                .with_backend("memory"));
            }
            Err(e) => return Err(Error::from(e).with_operation("build")),
        };
        let procfile = Procfile::parse(&text).inspect_err(|e| {
            out.line(format!(" !     {}", e.message()));
        })?;
        if procfile.is_empty() {
            out.line(" !     The Procfile declares no process types");
            return Err(Error::build_failed(
                "build failed: the Procfile declares no process types",
            ));
        }
        let types: Vec<String> = procfile.entries().map(|(t, _)| t.to_string()).collect();
        out.line(format!(
            "-----> Procfile declares types -> {}",
            types.join(", ")
        ));
        let image = format!("memory://{}/{}", req.app, req.build_id);
        lock(&self.artifacts)
            .entry(req.app.clone())
            .or_default()
            .insert(image.clone(), procfile.clone());
        out.line(format!("-----> Built {image}"));
        Ok(Build {
            id: req.build_id,
            app: req.app,
            commit: req.commit,
            artifact: Artifact { image },
            procfile,
            strategy: "procfile".into(),
            created_at: Timestamp::now(),
        })
    }

    async fn from_image(&self, req: ImageRequest) -> Result<Build> {
        let procfile = lock(&self.artifacts)
            .values()
            .find_map(|m| m.get(&req.image).cloned())
            .ok_or_else(|| Error::not_found(format!("image \"{}\" not found", req.image)))?;
        lock(&self.artifacts)
            .entry(req.app.clone())
            .or_default()
            .insert(req.image.clone(), procfile.clone());
        Ok(Build {
            id: req.build_id,
            app: req.app,
            commit: None,
            artifact: Artifact { image: req.image },
            procfile,
            strategy: "image".into(),
            created_at: Timestamp::now(),
        })
    }

    async fn prune(&self, req: PruneRequest) -> Result<()> {
        let keep: HashSet<String> = req
            .keep
            .iter()
            .map(|b: &BuildId| format!("memory://{}/{}", req.app, b))
            .collect();
        let mut all = lock(&self.artifacts);
        if let Some(m) = all.get_mut(&req.app) {
            m.retain(|image, _| {
                keep.contains(image) || !image.starts_with(&format!("memory://{}/", req.app))
            });
            if req.keep.is_empty() {
                all.remove(&req.app);
            }
        }
        Ok(())
    }
}
