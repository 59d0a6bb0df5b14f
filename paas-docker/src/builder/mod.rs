//! [`DockerBuilder`]: the reference [`Builder`] on the Docker Engine API.
//!
//! [`Builder::build`] picks, in order:
//!
//! 1. **Dockerfile** at the source root: the exported source (without `.git`) is the build
//!    context of an Engine API build (classic builder; `.dockerignore` patterns apply); the engine's output streams as build
//!    lines. The image's `ENTRYPOINT`/`CMD` is the `web` process unless the Procfile has one.
//! 2. **Classic buildpacks** (Heroku's API) in a build container from the stack image: the
//!    app's `BUILDPACK_URL` config var (an `https://`, `http://` or `git://` URL of a public
//!    host, optionally with `#ref`; cloned on the host with `git clone --depth 1`, no shell,
//!    with a scrubbed environment and no git configuration; local paths and private hosts
//!    only when [`DockerBuilderSettings::allow_local_buildpack_urls`]) or else every buildpack
//!    directory of [`DockerBuilderSettings::buildpacks_dir`] in name order. The first whose
//!    `bin/detect /app` exits 0 runs `bin/compile /app /cache /tmp/paas/env` and
//!    `bin/release /app`; `ENV_DIR` holds the config as files (deleted before the image is
//!    committed, never in the image or the environment); `CACHE_DIR` is a per-app volume
//!    (`<prefix>-<platform>-cache-<app>`) kept between builds. The container is committed as the image,
//!    the app at `/app`; the Procfile's entries are merged over `default_process_types`.
//! 3. **Procfile only**: no buildpack detects but a Procfile exists: the same container commits
//!    the source as-is at `/app` on the stack image (the built-in "procfile" buildpack).
//!
//! Images are named `<prefix>/<platform>/<app>:<build-id>`. Failures are `BuildFailed` with the tail of
//! the output; a build past [`DockerBuilderSettings::build_timeout`] is stopped and fails with
//! `Timeout`. Build containers run as the unprivileged stack user with all capabilities
//! dropped and `no-new-privileges`.

mod buildpack_url;
mod container;
mod dockerfile;
mod image;
mod prune;
mod release;
mod script;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::query_parameters::{DownloadFromContainerOptions, RemoveContainerOptions};
use bollard::Docker;
use futures::StreamExt;
use paas_core::{
    AppName, Build, BuildRequest, Builder, Error, ImageRequest, OutputSender, ProcessType,
    Procfile, PruneRequest, Result,
};

use crate::common::{docker_error, is_not_found, labels, Tail, BACKEND};
use crate::logs::lock;
use crate::stack;
use crate::tarball::Owner;

/// Configuration of a [`DockerBuilder`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DockerBuilderSettings {
    /// Images are named `<image_prefix>/<platform_id>/<app>:<build-id>`; the cache volume is
    /// `<image_prefix>-<platform_id>-cache-<app>` (`/` replaced by `-`). Default `paas`.
    pub image_prefix: String,
    /// Identifies this platform's images, build containers and cache volumes on a shared
    /// engine (the `paas.platform` label): pruning and orphan removal touch only these.
    /// Default `paasd`, as the scheduler's.
    pub platform_id: String,
    /// The stack image build containers run on. Default [`stack::DEFAULT_STACK_IMAGE`]
    /// (created on first use if missing).
    pub stack_image: String,
    /// A directory of classic buildpacks (one per subdirectory, tried in name order).
    pub buildpacks_dir: Option<PathBuf>,
    /// The longest a build may take. Default 15 min.
    pub build_timeout: Duration,
    /// Numeric `uid[:gid]` build containers run as (not root). Default `1000:1000`.
    pub build_user: String,
    /// Memory limit of build containers in bytes. Default 2 GiB.
    pub build_memory_bytes: Option<i64>,
    /// Pids limit of build containers. Default 1024.
    pub build_pids: Option<i64>,
    /// Network of build containers (`None`: the engine's default bridge; `"none"` isolates).
    pub build_network: Option<String>,
    /// How many output lines a `BuildFailed` message carries. Default 30.
    pub output_tail: usize,
    /// The git program used to fetch `BUILDPACK_URL`. Default `git`.
    pub git_program: PathBuf,
    /// Whether `BUILDPACK_URL` may name something only this host reaches: a local path, a
    /// `file://` URL, or a host that is (or resolves to) a loopback, private, link-local or
    /// unspecified address. Default `false`: an app's config must not make the daemon clone
    /// another app's repository or reach loopback-only services. `https://`, `http://` and
    /// `git://` URLs of public hosts are always allowed; ssh and git's `ext::` never are (they
    /// would use the daemon's credentials or run commands).
    pub allow_local_buildpack_urls: bool,
}

impl Default for DockerBuilderSettings {
    fn default() -> Self {
        DockerBuilderSettings {
            image_prefix: "paas".into(),
            platform_id: "paasd".into(),
            stack_image: stack::DEFAULT_STACK_IMAGE.into(),
            buildpacks_dir: None,
            build_timeout: Duration::from_secs(15 * 60),
            build_user: format!("{}:{}", stack::APP_UID, stack::APP_UID),
            build_memory_bytes: Some(2 * 1024 * 1024 * 1024),
            build_pids: Some(1024),
            build_network: None,
            output_tail: 30,
            git_program: PathBuf::from("git"),
            allow_local_buildpack_urls: false,
        }
    }
}

impl DockerBuilderSettings {
    fn validate(&self) -> Result<Owner> {
        let id = &self.platform_id;
        let id_ok = !id.is_empty()
            && id.len() <= 63
            && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !id_ok {
            return Err(Error::invalid(format!(
                "invalid platform_id \"{}\": 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit (it names image repositories)",
                id.escape_debug()
            )));
        }
        let p = &self.image_prefix;
        let ok = !p.is_empty()
            && p.len() <= 100
            && !p.starts_with(['/', '.', '-', '_'])
            && !p.ends_with('/')
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/-".contains(&b));
        if !ok {
            return Err(Error::invalid(format!(
                "invalid image_prefix \"{}\": lowercase letters, digits, '.', '_', '-', '/' (a docker repository prefix)",
                p.escape_debug()
            )));
        }
        if self.stack_image.is_empty() {
            return Err(Error::invalid("invalid stack_image: must not be empty"));
        }
        let mut parts = self.build_user.splitn(2, ':');
        let uid: Option<u64> = parts.next().and_then(|u| u.parse().ok());
        let gid: Option<u64> = match parts.next() {
            Some(g) => g.parse().ok(),
            None => uid,
        };
        match (uid, gid) {
            (Some(0), _) => Err(Error::invalid(
                "invalid build_user: build containers must not run as root (uid 0)",
            )),
            (Some(uid), Some(gid)) => Ok(Owner { uid, gid }),
            _ => Err(Error::invalid(
                "invalid build_user: expected a numeric uid[:gid] such as 1000:1000",
            )),
        }
    }
}

/// The reference [`Builder`] on the Docker Engine API (see the module docs for the strategy).
#[derive(Clone)]
pub struct DockerBuilder {
    docker: Docker,
    settings: DockerBuilderSettings,
    owner: Owner,
}

impl std::fmt::Debug for DockerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerBuilder")
            .field("image_prefix", &self.settings.image_prefix)
            .field("stack_image", &self.settings.stack_image)
            .finish()
    }
}

/// A build's output: each line goes to the caller and into the tail a `BuildFailed` quotes.
struct BuildOutput {
    out: OutputSender,
    tail: Mutex<Tail>,
}

impl BuildOutput {
    fn line(&self, l: &str) {
        self.out.line(l);
        lock(&self.tail).push(l);
    }
    fn failed(&self, what: &str) -> Error {
        let tail = lock(&self.tail).render();
        Error::build_failed(if tail.is_empty() {
            what.to_string()
        } else {
            format!("{what}; last output:\n{tail}")
        })
        .with_backend(BACKEND)
        .with_operation("build")
    }
}

impl DockerBuilder {
    /// A builder on `docker`.
    ///
    /// Errors: `InvalidInput` for bad settings (the message names the field).
    pub fn new(docker: Docker, settings: DockerBuilderSettings) -> Result<Self> {
        let owner = settings.validate()?;
        Ok(DockerBuilder {
            docker,
            settings,
            owner,
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &DockerBuilderSettings {
        &self.settings
    }

    /// The image repository of an app's builds: `<prefix>/<platform_id>/<app>`, so that
    /// two platforms sharing an engine never prune each other's images.
    pub fn repository(&self, app: &AppName) -> String {
        format!(
            "{}/{}/{app}",
            self.settings.image_prefix, self.settings.platform_id
        )
    }

    /// The per-app buildpack cache volume.
    pub fn cache_volume(&self, app: &AppName) -> String {
        format!(
            "{}-{}-cache-{app}",
            self.settings.image_prefix.replace('/', "-"),
            self.settings.platform_id
        )
    }

    fn tag_of(&self, build_id: &paas_core::BuildId) -> Result<String> {
        if build_id.as_str().starts_with('-') {
            return Err(Error::invalid(format!(
                "invalid build id \"{build_id}\": must not start with '-' (it becomes a docker tag)"
            )));
        }
        Ok(build_id.to_string())
    }

    fn image_labels(&self, app: &AppName, build: &str, strategy: &str) -> HashMap<String, String> {
        HashMap::from([
            (
                labels::PLATFORM.to_string(),
                self.settings.platform_id.clone(),
            ),
            (labels::APP.to_string(), app.to_string()),
            (labels::BUILD.to_string(), build.to_string()),
            (labels::STRATEGY.to_string(), strategy.to_string()),
            (labels::KIND.to_string(), "image".to_string()),
        ])
    }

    async fn read_procfile(dir: &Path) -> Result<Option<Procfile>> {
        match tokio::fs::read_to_string(dir.join("Procfile")).await {
            Ok(text) => Procfile::parse(&text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(
                Error::invalid("the Procfile could not be read as UTF-8 text")
                    .with_operation("build")
                    .with_source(e),
            ),
        }
    }

    async fn download(&self, id: &str, path: &str) -> Result<Vec<u8>> {
        let mut stream = self
            .docker
            .download_from_container(id, Some(DownloadFromContainerOptions { path: path.into() }));
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => {
                    buf.extend_from_slice(&b);
                    if buf.len() > 64 * 1024 * 1024 {
                        return Err(Error::internal("archive too large").with_backend(BACKEND));
                    }
                }
                Err(e) if is_not_found(&e) => return Ok(Vec::new()),
                Err(e) => return Err(docker_error(e, "download")),
            }
        }
        Ok(buf)
    }

    async fn build_inner(
        &self,
        req: &BuildRequest,
        progress: &BuildOutput,
        container_slot: &Mutex<Option<String>>,
    ) -> Result<Build> {
        let meta = tokio::fs::metadata(&req.source_dir).await.map_err(|e| {
            Error::invalid("source_dir does not exist or is not readable")
                .with_operation("build")
                .with_source(e)
        })?;
        if !meta.is_dir() {
            return Err(Error::invalid("source_dir must be a directory").with_operation("build"));
        }
        let procfile = Self::read_procfile(&req.source_dir).await?;
        let dockerfile = tokio::fs::metadata(req.source_dir.join("Dockerfile"))
            .await
            .is_ok_and(|m| m.is_file());
        if dockerfile {
            self.dockerfile_build(req, procfile, progress).await
        } else {
            self.container_build(req, procfile, progress, container_slot)
                .await
        }
    }
}

fn default_procfile(web: Option<String>) -> Result<Procfile> {
    match web {
        Some(cmd) if !cmd.contains(['\n', '\r', '\0']) => {
            Procfile::from_entries([(ProcessType::web(), cmd)])
        }
        _ => Ok(Procfile::default()),
    }
}

#[async_trait]
impl Builder for DockerBuilder {
    async fn build(&self, req: BuildRequest) -> Result<Build> {
        let progress = BuildOutput {
            out: req.output.clone(),
            tail: Mutex::new(Tail::new(self.settings.output_tail)),
        };
        let slot = Arc::new(Mutex::new(None::<String>));
        let limit = self.settings.build_timeout;
        let span = tracing::info_span!("docker_build", app = %req.app, build = %req.build_id);
        let work = tracing::Instrument::instrument(self.build_inner(&req, &progress, &slot), span);
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => {
                let leftover = lock(&slot).take();
                if let Some(id) = leftover {
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
                }
                progress.line(&format!(
                    " !     Build exceeded the time limit of {limit:?}"
                ));
                let tail = lock(&progress.tail).render();
                Err(Error::timeout(format!(
                    "build exceeded the time limit of {limit:?}; last output:\n{tail}"
                ))
                .with_backend(BACKEND)
                .with_operation("build"))
            }
        }
    }

    async fn from_image(&self, req: ImageRequest) -> Result<Build> {
        self.build_from_image(req).await
    }

    async fn prune(&self, req: PruneRequest) -> Result<()> {
        self.prune_app(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::buildpack_url::redact_url;
    use super::*;

    #[test]
    fn settings_and_urls() {
        let mut s = DockerBuilderSettings::default();
        assert_eq!(s.validate().unwrap().uid, 1000);
        s.build_user = "0".into();
        assert!(s.validate().unwrap_err().message().contains("root"));
        s.build_user = "app".into();
        assert!(s.validate().unwrap_err().message().contains("numeric"));
        let s = DockerBuilderSettings {
            image_prefix: "Bad".into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().message().contains("image_prefix"));
        assert_eq!(
            redact_url("https://user:tok@example.com/bp.git"),
            "https://***@example.com/bp.git"
        );
        assert_eq!(redact_url("/srv/bp"), "/srv/bp");
    }
}
