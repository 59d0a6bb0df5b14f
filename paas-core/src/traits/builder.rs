//! [`Builder`]: turns exported source into a runnable artifact plus its process types.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::model::{AppName, Build, BuildId, CommitId, Config};

/// Where a builder writes its output, line by line. Cloneable; sending never blocks and never
/// fails (a dropped receiver discards output).
#[derive(Clone, Debug)]
pub struct OutputSender(Option<mpsc::UnboundedSender<String>>);

impl OutputSender {
    /// A sender and the receiving end of its lines.
    pub fn channel() -> (OutputSender, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (OutputSender(Some(tx)), rx)
    }
    /// A sender that discards everything.
    pub fn discard() -> OutputSender {
        OutputSender(None)
    }
    /// Sends text; each line of it (split on `\n`) becomes one output line.
    pub fn line(&self, text: impl AsRef<str>) {
        if let Some(tx) = &self.0 {
            for l in text.as_ref().trim_end_matches('\n').split('\n') {
                let _ = tx.send(l.trim_end_matches('\r').to_string());
            }
        }
    }
}

/// A request to build one app's source.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuildRequest {
    /// The app.
    pub app: AppName,
    /// The id the resulting [`Build`] must carry.
    pub build_id: BuildId,
    /// Where the source tree was exported. The builder may read it and must not assume it lives
    /// past `build`.
    pub source_dir: PathBuf,
    /// The commit the source came from.
    pub commit: Option<CommitId>,
    /// The app's config: build-time env for buildpacks (`ENV_DIR`), `BUILDPACK_URL`.
    pub config: Config,
    /// Build output goes here, line by line, as it is produced.
    pub output: OutputSender,
}

impl BuildRequest {
    /// A request with empty config and discarded output.
    pub fn new(app: AppName, build_id: BuildId, source_dir: impl Into<PathBuf>) -> Self {
        BuildRequest {
            app,
            build_id,
            source_dir: source_dir.into(),
            commit: None,
            config: Config::new(),
            output: OutputSender::discard(),
        }
    }
    /// Sets the commit.
    pub fn with_commit(mut self, commit: CommitId) -> Self {
        self.commit = Some(commit);
        self
    }
    /// Sets the config.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// Sets the output sender.
    pub fn with_output(mut self, output: OutputSender) -> Self {
        self.output = output;
        self
    }
}

/// A request to deploy an existing artifact (an image reference) without building.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImageRequest {
    /// The app.
    pub app: AppName,
    /// The id the resulting [`Build`] must carry.
    pub build_id: BuildId,
    /// The image reference.
    pub image: String,
    /// Output lines.
    pub output: OutputSender,
}

impl ImageRequest {
    /// A request for `image`.
    pub fn new(app: AppName, build_id: BuildId, image: impl Into<String>) -> Self {
        ImageRequest {
            app,
            build_id,
            image: image.into(),
            output: OutputSender::discard(),
        }
    }
}

/// Which artifacts to keep when pruning.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PruneRequest {
    /// The app.
    pub app: AppName,
    /// Builds whose artifacts must survive (the last N releases'). Empty: remove all (app
    /// destroyed).
    pub keep: Vec<BuildId>,
}

impl PruneRequest {
    /// Keep `keep`, remove the app's other artifacts.
    pub fn new(app: AppName, keep: Vec<BuildId>) -> Self {
        PruneRequest { app, keep }
    }
}

/// Turns source into a runnable artifact plus the process types of its Procfile.
///
/// Implementations: `MemoryBuilder` (paas-core), `DockerBuilder` (paas-docker).
/// Conformance: `paas_core::testkit::builder`.
#[async_trait]
pub trait Builder: Send + Sync + std::fmt::Debug + 'static {
    /// Builds `req.source_dir`, streaming output to `req.output` as it is produced.
    ///
    /// Returns a [`Build`] with `req.build_id`, the artifact and the process types (Procfile
    /// entries override a build strategy's defaults). Not idempotent: each call builds.
    ///
    /// Errors: `BuildFailed` when the build ran and failed, with the tail of the output in the
    /// message; `InvalidInput` for an invalid Procfile (the message gives the line);
    /// `Timeout` past the builder's time limit; `Unavailable` when the engine is unreachable.
    async fn build(&self, req: BuildRequest) -> Result<Build>;

    /// Makes a build from an existing artifact (`req.image`), reading its process types from
    /// the artifact where it carries them.
    ///
    /// Errors: `NotFound` if the artifact does not exist; `Unsupported` if the builder cannot
    /// deploy artifacts directly.
    #[allow(clippy::wrong_self_convention)]
    async fn from_image(&self, req: ImageRequest) -> Result<Build> {
        let _ = req;
        Err(crate::Error::unsupported(
            "this builder cannot deploy a prebuilt image",
        ))
    }

    /// Removes the app's artifacts except those of `req.keep`. Idempotent; artifacts in use by
    /// running processes may be kept by the backend.
    async fn prune(&self, req: PruneRequest) -> Result<()> {
        let _ = req;
        Ok(())
    }
}
