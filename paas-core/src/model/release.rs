//! Apps, builds, releases and formations.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

use super::*;

/// An app's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct App {
    /// Its name.
    pub name: AppName,
    /// When it was created.
    pub created_at: Timestamp,
}

impl App {
    /// A new app record created now.
    pub fn new(name: AppName) -> Self {
        App {
            name,
            created_at: Timestamp::now(),
        }
    }
}

/// What a build produced: something a scheduler can run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// An image reference or id (Docker), or another backend's handle (`memory://...`).
    pub image: String,
}

/// Source turned into a runnable artifact plus its process types. Builds never change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// Unique id.
    pub id: BuildId,
    /// The app it belongs to.
    pub app: AppName,
    /// The commit it was built from (absent for a deployed image).
    pub commit: Option<CommitId>,
    /// The runnable artifact.
    pub artifact: Artifact,
    /// Process types and their commands.
    pub procfile: Procfile,
    /// What built it (`dockerfile`, `buildpack:python`, `image`...).
    pub strategy: String,
    /// When it finished.
    pub created_at: Timestamp,
}

/// A release number, `vN`, N ≥ 1. Displayed and parsed as `v3` (`3` is accepted too).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version after this one.
    pub fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let digits = s.strip_prefix('v').unwrap_or(s);
        match digits.parse::<u64>() {
            Ok(n) if n > 0 && !digits.starts_with('+') => Ok(Version(n)),
            _ => Err(Error::invalid(format!(
                "invalid release version \"{}\": expected vN with N ≥ 1",
                shown(s)
            ))),
        }
    }
}

/// Whether a release's deploy went through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeployStatus {
    /// Created; its processes are being started.
    Pending,
    /// Its processes were healthy and it took traffic.
    Succeeded,
    /// It never took traffic; the reason says why.
    Failed(String),
    /// A state this version does not know (a newer server's), whatever its reason. Never made
    /// by the SDK itself.
    Unknown,
}

impl<'de> Deserialize<'de> for DeployStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            state: String,
            #[serde(default)]
            reason: Option<serde_json::Value>,
        }
        let w = Wire::deserialize(d)?;
        Ok(match w.state.as_str() {
            "pending" => DeployStatus::Pending,
            "succeeded" => DeployStatus::Succeeded,
            "failed" => DeployStatus::Failed(
                w.reason
                    .as_ref()
                    .and_then(|r| r.as_str())
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => DeployStatus::Unknown,
        })
    }
}

impl fmt::Display for DeployStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployStatus::Pending => f.write_str("pending"),
            DeployStatus::Succeeded => f.write_str("succeeded"),
            DeployStatus::Failed(r) => write!(f, "failed: {r}"),
            DeployStatus::Unknown => f.write_str("unknown"),
        }
    }
}

/// `vN` of an app: one build plus one config snapshot. Immutable but for its deploy status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The app.
    pub app: AppName,
    /// Its number.
    pub version: Version,
    /// The build it runs.
    pub build: Build,
    /// The config snapshot.
    pub config: Config,
    /// What made it (`Deploy 1a2b3c4`, `Set FOO config vars`, `Rollback to v1`).
    pub description: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Deploy status.
    pub status: DeployStatus,
}

/// A release to append; the store allocates the version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRelease {
    /// The app.
    pub app: AppName,
    /// The build (must have been stored with `put_build`).
    pub build: Build,
    /// The config snapshot; it also becomes the app's current config.
    pub config: Config,
    /// What made it.
    pub description: String,
}

/// How many processes of each type run. Mutable; not part of a release.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Formation(BTreeMap<ProcessType, u32>);

impl Formation {
    /// The most processes of one type.
    pub const MAX_PER_TYPE: u32 = 100;

    /// An empty formation.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the count of a type (checked against [`Formation::MAX_PER_TYPE`]).
    pub fn set(&mut self, ty: ProcessType, count: u32) -> Result<()> {
        if count > Self::MAX_PER_TYPE {
            return Err(Error::invalid(format!(
                "process type \"{ty}\": at most {} processes per type",
                Self::MAX_PER_TYPE
            )));
        }
        self.0.insert(ty, count);
        Ok(())
    }
    /// The count of a type (0 when absent).
    pub fn get(&self, ty: &ProcessType) -> u32 {
        self.0.get(ty).copied().unwrap_or(0)
    }
    /// Whether the type has an entry (even 0).
    pub fn contains(&self, ty: &ProcessType) -> bool {
        self.0.contains_key(ty)
    }
    /// Entries.
    pub fn iter(&self) -> impl Iterator<Item = (&ProcessType, u32)> {
        self.0.iter().map(|(t, n)| (t, *n))
    }
    /// Parses `TYPE=N` pairs.
    pub fn parse_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut f = Formation::new();
        for pair in pairs {
            let Some((t, n)) = pair.split_once('=') else {
                return Err(Error::invalid("scale pairs must look like TYPE=N"));
            };
            let ty = ProcessType::new(t)?;
            let n: u32 = n.parse().map_err(|_| {
                Error::invalid(format!(
                    "process type \"{ty}\": count must be a whole number from 0 to {}",
                    Self::MAX_PER_TYPE
                ))
            })?;
            f.set(ty, n)?;
        }
        Ok(f)
    }
}

impl fmt::Debug for Formation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl fmt::Display for Formation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(t, n)| format!("{t}={n}")).collect();
        f.write_str(&parts.join(" "))
    }
}
