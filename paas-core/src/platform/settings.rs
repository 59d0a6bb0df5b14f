//! Tunables of the pipeline and the values its stages share.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::{Domain, HealthPath};
use crate::traits::{HealthCheck, OutputSender};

/// At most this many lines of one build's output go to the app's log (the user who deploys
/// sees all of them).
pub const BUILD_LOG_LINES: usize = 2000;

/// Where an operation's progress lines go (shown to the user: CLI output, `remote:` lines).
pub type Progress = OutputSender;

/// Config var that gives an app's web processes their own health check: an HTTP path (`/up`)
/// that must answer below 400 before they get traffic, instead of
/// [`PlatformSettings::health_check`] (like Deis's `HEALTHCHECK_URL`).
pub const HEALTHCHECK_PATH_VAR: &str = "PAAS_HEALTHCHECK_PATH";

/// The app's health check path from its config var, checked; the error names the var and the
/// rule (never the value: config values stay out of messages).
pub(crate) fn health_path_var(value: &str) -> Result<HealthPath> {
    HealthPath::new(value)
        .map_err(|e| Error::invalid(format!("{HEALTHCHECK_PATH_VAR}: {}", e.message())))
}

/// Tunables of the pipeline.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PlatformSettings {
    /// Each app answers at `<app>.<base_domain>` (default `localhost`).
    pub base_domain: String,
    /// How new web processes are checked before they get traffic (default: TCP connect). An
    /// app's [`HEALTHCHECK_PATH_VAR`] config var overrides it for that app.
    pub health_check: HealthCheck,
    /// How long new processes have to become healthy (default 60 s).
    pub health_timeout: Duration,
    /// How long old endpoints may finish in-flight requests (default 30 s).
    pub drain_timeout: Duration,
    /// SIGTERM-to-SIGKILL grace for stopped processes (default 30 s).
    pub stop_grace: Duration,
    /// Time limit of a build (default 15 min).
    pub build_timeout: Duration,
    /// Time limit of the release phase (default 10 min).
    pub release_phase_timeout: Duration,
    /// Time limit of a one-off run (default 1 h).
    pub run_timeout: Duration,
    /// Artifacts of this many newest releases are kept for rollbacks (default 5).
    pub keep_releases: usize,
    /// Where source is exported for builds (default: the system temp dir).
    pub work_dir: PathBuf,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        PlatformSettings {
            base_domain: "localhost".into(),
            health_check: HealthCheck::Tcp,
            health_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(30),
            build_timeout: Duration::from_secs(15 * 60),
            release_phase_timeout: Duration::from_secs(10 * 60),
            run_timeout: Duration::from_secs(3600),
            keep_releases: 5,
            work_dir: std::env::temp_dir().join("paas-work"),
        }
    }
}

impl PlatformSettings {
    /// Sets the base domain.
    pub fn with_base_domain(mut self, d: impl Into<String>) -> Self {
        self.base_domain = d.into();
        self
    }
    /// Sets the health check.
    pub fn with_health_check(mut self, c: HealthCheck) -> Self {
        self.health_check = c;
        self
    }
    /// Sets the health timeout.
    pub fn with_health_timeout(mut self, t: Duration) -> Self {
        self.health_timeout = t;
        self
    }
    /// Sets the drain timeout.
    pub fn with_drain_timeout(mut self, t: Duration) -> Self {
        self.drain_timeout = t;
        self
    }
    /// Sets the stop grace.
    pub fn with_stop_grace(mut self, t: Duration) -> Self {
        self.stop_grace = t;
        self
    }
    /// Sets the build timeout.
    pub fn with_build_timeout(mut self, t: Duration) -> Self {
        self.build_timeout = t;
        self
    }
    /// Sets the work dir.
    pub fn with_work_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.work_dir = d.into();
        self
    }

    /// Checks every rule: the base domain is a hostname (not a wildcard), timeouts are not
    /// zero, at least one release is kept. The error names the field.
    pub fn validate(&self) -> Result<()> {
        let domain = Domain::new(self.base_domain.clone())
            .map_err(|e| Error::invalid(format!("base_domain: {}", e.message())))?;
        if domain.as_str().starts_with('*') {
            return Err(Error::invalid("base_domain must not be a wildcard"));
        }
        for (name, d) in [
            ("health_timeout", self.health_timeout),
            ("build_timeout", self.build_timeout),
            ("release_phase_timeout", self.release_phase_timeout),
            ("run_timeout", self.run_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::invalid(format!("{name} must be longer than zero")));
            }
        }
        if self.keep_releases == 0 {
            return Err(Error::invalid("keep_releases must be at least 1"));
        }
        Ok(())
    }
}
