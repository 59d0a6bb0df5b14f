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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    BuildImageOptions, CommitContainerOptions, CreateContainerOptions,
    DownloadFromContainerOptions, ListContainersOptions, ListImagesOptions, LogsOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions, TagImageOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use paas_core::{
    AppName, Artifact, Build, BuildRequest, Builder, Error, ErrorKind, ImageRequest, OutputSender,
    ProcessType, Procfile, PruneRequest, Result, Timestamp,
};

use crate::common::{
    docker_error, image_default_command, is_not_found, is_status, labels, LineSplitter, Tail,
    BACKEND,
};
use crate::logs::lock;
use crate::stack;
use crate::tarball::{self, Owner, TarWriter};

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

/// Exit codes of the build script.
const EXIT_NOT_DETECTED: i64 = 100;
const EXIT_EXPLICIT_NOT_DETECTED: i64 = 102;

/// Runs in the build container as the stack user. Fixed text: no user string is interpolated;
/// buildpacks and the config arrive as files.
const BUILD_SCRIPT: &str = r#"out=/tmp/paas-result
mkdir -p "$out" || exit 1
trap 'rm -rf /tmp/paas' EXIT
selected=
name=
for bp in /tmp/paas/buildpacks/*; do
  [ -d "$bp" ] || continue
  if [ -f "$bp/bin/detect" ] && name=$("$bp/bin/detect" /app); then
    selected=$bp
    break
  fi
done
if [ -z "$selected" ]; then
  if [ -f /tmp/paas/explicit ]; then
    echo " !     The buildpack from BUILDPACK_URL does not apply to this app (bin/detect failed)"
    exit 102
  fi
  exit 100
fi
name=$(printf '%s\n' "$name" | head -n 1)
[ -n "$name" ] || name=buildpack
printf '%s\n' "$name" > "$out/name"
echo "-----> $name app detected"
"$selected/bin/compile" /app /cache /tmp/paas/env || {
  code=$?
  echo " !     Buildpack compile failed (exit code $code)"
  exit 101
}
if [ -f "$selected/bin/release" ]; then
  "$selected/bin/release" /app > "$out/release.yml" || {
    echo " !     Buildpack bin/release failed"
    exit 103
  }
fi
echo "-----> Compiled slug"
exit 0
"#;

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

    async fn dockerfile_build(
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

    async fn clone_buildpack(&self, url: &str, dest: &Path, progress: &BuildOutput) -> Result<()> {
        let (repo, reference) = match url.rsplit_once('#') {
            Some((r, f)) if !f.is_empty() && !r.is_empty() => (r, Some(f)),
            _ => (url, None),
        };
        let repo = repo.trim();
        let bad = repo.is_empty()
            || repo.starts_with('-')
            || reference.is_some_and(|r| r.starts_with('-'))
            || repo.contains(['\n', '\r', '\0']);
        if bad {
            return Err(progress.failed(
                "BUILDPACK_URL must be a git URL, a file:// URL or a local path (optionally with #ref)",
            ));
        }
        if let Err(why) = check_buildpack_url(repo, self.settings.allow_local_buildpack_urls).await
        {
            return Err(progress.failed(&format!("BUILDPACK_URL refused: {why}")));
        }
        progress.line(&format!("-----> Fetching buildpack {}", redact_url(repo)));
        let home = tempfile::tempdir().map_err(|e| {
            Error::unavailable("could not make a home directory for git")
                .with_backend(BACKEND)
                .with_operation("build")
                .with_source(e)
        })?;
        let mut cmd = tokio::process::Command::new(&self.settings.git_program);
        // The daemon's environment and git configuration (credential helpers, proxies, ssh
        // keys, `url.*.insteadOf`) stay out of it; only the allowed protocols run.
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let protocols = if self.settings.allow_local_buildpack_urls {
            "https:http:git:file"
        } else {
            "https:http:git"
        };
        cmd.env("HOME", home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", protocols)
            .env("GIT_SSH_COMMAND", "false")
            .arg("-c")
            .arg("http.followRedirects=false")
            .arg("-c")
            .arg("credential.helper=")
            .arg("clone")
            .arg("--depth")
            .arg("1")
            .arg("--quiet");
        if let Some(r) = reference {
            cmd.arg("--branch").arg(r);
        }
        cmd.arg("--")
            .arg(repo)
            .arg(dest)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = cmd.output().await.map_err(|e| {
            Error::unavailable("could not run git to fetch BUILDPACK_URL")
                .with_backend(BACKEND)
                .with_operation("build")
                .with_source(e)
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).replace(repo, "<BUILDPACK_URL>");
            for l in stderr.lines().filter(|l| !l.trim().is_empty()) {
                progress.line(l);
            }
            return Err(progress.failed("fetching the buildpack from BUILDPACK_URL failed"));
        }
        Ok(())
    }

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
    async fn container_build(
        &self,
        req: &BuildRequest,
        procfile: Option<Procfile>,
        progress: &BuildOutput,
        container_slot: &Mutex<Option<String>>,
    ) -> Result<Build> {
        let tag = self.tag_of(&req.build_id)?;
        let workdir = tempfile::tempdir()?;
        let mut buildpacks: Vec<PathBuf> = Vec::new();
        let explicit = req
            .config
            .get("BUILDPACK_URL")
            .map(|v| v.expose().to_string());
        if let Some(url) = &explicit {
            let dest = workdir.path().join("buildpack");
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
        if buildpacks.is_empty() && procfile.is_none() {
            return Err(progress
                .failed("no Dockerfile, no buildpack applies and no Procfile: nothing to build"));
        }
        self.ensure_stack().await?;

        // What goes into the container, owned by the build user.
        let owner = self.owner;
        let src = req.source_dir.clone();
        let env: Vec<(String, String)> = req.config.to_env();
        let explicit_flag = explicit.is_some();
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
            if explicit_flag {
                w.file("tmp/paas/explicit", 0o644, owner, &b""[..], 0)?;
            }
            w.finish()
        })
        .await
        .map_err(|e| Error::internal(format!("build upload task failed: {e}")))??;

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
        let id = created.id;
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

    async fn run_build_container(
        &self,
        req: &BuildRequest,
        id: &str,
        upload: tarball::Archive,
        procfile: Option<Procfile>,
        progress: &BuildOutput,
        explicit: bool,
    ) -> Result<Build> {
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
        let mut wait = self.docker.wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        let code = match wait.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(docker_error(e, "build")),
            None => {
                return Err(Error::internal("engine closed the wait stream").with_backend(BACKEND))
            }
        };
        let strategy;
        let mut defaults = Procfile::default();
        match code {
            0 => {
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
                strategy = format!("buildpack:{name}");
                if let Some(yaml) = tarball::read_file(&result, "paas-result/release.yml")? {
                    defaults =
                        parse_release_yaml(&String::from_utf8_lossy(&yaml)).map_err(|e| {
                            progress.failed(&format!("bin/release output: {}", e.message()))
                        })?;
                }
            }
            EXIT_NOT_DETECTED if procfile.is_some() && !explicit => {
                progress
                    .line("-----> No buildpack applies; using the Procfile with the source as-is");
                strategy = "procfile".into();
            }
            EXIT_NOT_DETECTED => {
                return Err(
                    progress.failed("no buildpack applies to this app and it has no Procfile")
                );
            }
            EXIT_EXPLICIT_NOT_DETECTED => {
                return Err(
                    progress.failed("the buildpack from BUILDPACK_URL does not apply to this app")
                );
            }
            code => {
                return Err(progress.failed(&format!("buildpack build failed (exit code {code})")));
            }
        }
        let procfile = procfile.unwrap_or_default().merged_over(&defaults);
        let repo = self.repository(&req.app);
        let tag = self.tag_of(&req.build_id)?;
        let mut image_labels = self.image_labels(&req.app, req.build_id.as_str(), &strategy);
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
        let image = format!("{repo}:{tag}");
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

fn default_procfile(web: Option<String>) -> Result<Procfile> {
    match web {
        Some(cmd) if !cmd.contains(['\n', '\r', '\0']) => {
            Procfile::from_entries([(ProcessType::web(), cmd)])
        }
        _ => Ok(Procfile::default()),
    }
}

/// Hides credentials in a URL (`https://user:token@host/x` -> `https://***@host/x`).
/// Whether `BUILDPACK_URL` may be fetched: the error says which rule it breaks.
async fn check_buildpack_url(url: &str, allow_local: bool) -> std::result::Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        if lower.contains("::") || (lower.contains(':') && !lower.starts_with('/')) {
            return Err(
                "ssh and git transport helpers (`host:path`, `ext::`) are not allowed".into(),
            );
        }
        return if allow_local {
            Ok(())
        } else {
            Err("local paths are not allowed; use an https:// URL".into())
        };
    };
    match scheme {
        "https" | "http" | "git" => {}
        "file" if allow_local => return Ok(()),
        "file" => return Err("file:// URLs are not allowed; use an https:// URL".into()),
        _ => {
            return Err(format!(
                "the {scheme}:// scheme is not allowed; use https://"
            ))
        }
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err("malformed host".into()),
        },
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("the URL names no host".into());
    }
    if allow_local {
        return Ok(());
    }
    let port: u16 = match port {
        Some(p) => p.parse().map_err(|_| "malformed port".to_string())?,
        None => 443,
    };
    let addrs: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("the host does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err("the host does not resolve".into());
    }
    if let Some(ip) = addrs.iter().find(|ip| is_local(**ip)) {
        return Err(format!(
            "the host is a loopback, private or link-local address ({ip}); buildpacks come from public hosts"
        ));
    }
    Ok(())
}

/// Addresses only this host or its private networks reach.
fn is_local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_local(v4.into()))
        }
    }
}

fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://***@{host}/{path}");
        }
    }
    url.to_string()
}

/// Parses the `default_process_types` mapping of a `bin/release` YAML document (the subset
/// classic buildpacks print: a block mapping of `type: command` scalars, plain or quoted, or
/// `{}`). Other keys (`addons`, `config_vars`) are ignored.
pub(crate) fn parse_release_yaml(text: &str) -> Result<Procfile> {
    let mut entries = Vec::new();
    let mut in_block = false;
    let mut block_indent = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') || line.trim() == "---" {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_block = false;
            if let Some(rest) = line.strip_prefix("default_process_types:") {
                let rest = rest.trim();
                if rest.is_empty() {
                    in_block = true;
                    block_indent = None;
                } else if rest != "{}" && rest != "~" && rest != "null" {
                    return Err(Error::invalid(
                        "default_process_types must be a block mapping of type: command",
                    ));
                }
            }
            continue;
        }
        if !in_block {
            continue;
        }
        match block_indent {
            None => block_indent = Some(indent),
            Some(i) if i != indent => continue,
            _ => {}
        }
        let Some((key, value)) = line.trim().split_once(':') else {
            return Err(Error::invalid(format!(
                "default_process_types: expected \"type: command\", got \"{}\"",
                line.trim().escape_debug()
            )));
        };
        let key = unquote(key.trim());
        let ty = ProcessType::new(key)?;
        let value = unquote(value.trim());
        if !value.is_empty() {
            entries.push((ty, value));
        }
    }
    Procfile::from_entries(entries)
}

fn unquote(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].replace("''", "'")
    } else if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        let inner = &s[1..s.len() - 1];
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push(' '),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        s.to_string()
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

    async fn prune(&self, req: PruneRequest) -> Result<()> {
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

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn buildpack_urls_are_checked() {
        use super::check_buildpack_url as check;
        for ok in [
            "https://93.184.216.34/heroku/heroku-buildpack-ruby",
            "http://93.184.216.34:8080/bp.git",
            "git://93.184.216.34/bp",
        ] {
            assert!(check(ok, false).await.is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:7070/other-app.git",
            "https://localhost/bp",
            "https://10.1.2.3/bp",
            "https://[::1]/bp",
            "https://169.254.169.254/latest",
            "https://[::ffff:127.0.0.1]/bp",
            "file:///var/lib/paas/repos/other.git",
            "/var/lib/paas/repos/other.git",
            "git@github.com:heroku/bp.git",
            "ssh://git@github.com/heroku/bp.git",
            "ext::sh -c touch% /tmp/pwned",
            "https://",
        ] {
            let e = check(bad, false).await.unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(check("file:///srv/buildpacks/bp", true).await.is_ok());
        assert!(check("/srv/buildpacks/bp", true).await.is_ok());
        assert!(check("ext::sh -c x", true).await.is_err());
    }

    use super::*;

    #[test]
    fn release_yaml() {
        let p = parse_release_yaml(
            "---\naddons: []\nconfig_vars:\n  FOO: bar\ndefault_process_types:\n  web: 'httpd -f -p $PORT'\n  worker: \"sh -c \\\"x\\\"\"\n  clock: run clock\n",
        )
        .unwrap();
        assert_eq!(p.command(&ProcessType::web()), Some("httpd -f -p $PORT"));
        assert_eq!(
            p.command(&ProcessType::new("worker").unwrap()),
            Some("sh -c \"x\"")
        );
        assert_eq!(
            p.command(&ProcessType::new("clock").unwrap()),
            Some("run clock")
        );
        assert!(parse_release_yaml("default_process_types: {}\n")
            .unwrap()
            .is_empty());
        assert!(parse_release_yaml("--- {}\n").unwrap().is_empty());
        assert!(parse_release_yaml("default_process_types:\n  bad type: x\n").is_err());
    }

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
