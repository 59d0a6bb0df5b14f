//! Wire types of the platform's HTTP JSON API (served by the `paasd` example, used by the
//! `paas` CLI). Kept here so that every client and server agrees on them.
//!
//! Conventions: every call needs the token (`Authorization: Bearer TOKEN`, or HTTP Basic with
//! the token as password). Errors are [`ErrorBody`] JSON with a 4xx/5xx
//! status. Long operations answer `200` with `application/x-ndjson`: a sequence of
//! [`StreamEvent`] lines ending with exactly one `result`, `error` or `exit` event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;
use crate::model::{
    AppName, BuildId, CommitId, ConfigKey, DeployStatus, Domain, Formation, Instance, Release,
    Timestamp, Version,
};
use crate::traits::OutputStream;

/// `POST /v1/apps`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateApp {
    /// The new app's name.
    pub name: AppName,
}

/// A release as the API shows it: config keys only, never values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseView {
    /// The app.
    pub app: AppName,
    /// `vN`.
    pub version: Version,
    /// What made it.
    pub description: String,
    /// Deploy status.
    pub status: DeployStatus,
    /// Its build.
    pub build_id: BuildId,
    /// The build's commit.
    pub commit: Option<CommitId>,
    /// The build's artifact.
    pub image: String,
    /// How it was built.
    pub strategy: String,
    /// Process types and commands.
    pub process_types: BTreeMap<String, String>,
    /// Config keys of the snapshot.
    pub config_keys: Vec<ConfigKey>,
    /// When.
    pub created_at: Timestamp,
}

impl From<&Release> for ReleaseView {
    fn from(r: &Release) -> Self {
        ReleaseView {
            app: r.app.clone(),
            version: r.version,
            description: r.description.clone(),
            status: r.status.clone(),
            build_id: r.build.id.clone(),
            commit: r.build.commit.clone(),
            image: r.build.artifact.image.clone(),
            strategy: r.build.strategy.clone(),
            process_types: r
                .build
                .procfile
                .entries()
                .map(|(t, c)| (t.to_string(), c.to_string()))
                .collect(),
            config_keys: r.config.keys().cloned().collect(),
            created_at: r.created_at,
        }
    }
}

/// `GET /v1/apps/{app}`: `apps:info`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppInfo {
    /// Name.
    pub name: AppName,
    /// Created.
    pub created_at: Timestamp,
    /// The release that serves.
    pub current: Option<ReleaseView>,
    /// The newest release.
    pub latest: Option<ReleaseView>,
    /// Formation.
    pub formation: Formation,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Custom domains.
    pub domains: Vec<Domain>,
    /// Web URLs (`http://APP.localhost:8080`).
    pub web_urls: Vec<String>,
    /// The git URL to push to (without credentials).
    pub git_url: String,
}

/// `PATCH /v1/apps/{app}/config`: values to set (strings) and keys to remove.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConfigPatch {
    /// Vars to set.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Keys to remove.
    #[serde(default)]
    pub unset: Vec<String>,
}

/// `POST /v1/apps/{app}/rollback`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Target release; default: the one before the current.
    pub version: Option<Version>,
}

/// `POST /v1/apps/{app}/restart`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RestartRequest {
    /// Only this process type.
    pub process_type: Option<String>,
}

/// `POST /v1/apps/{app}/run`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunCommand {
    /// argv.
    pub command: Vec<String>,
}

/// `POST /v1/apps/{app}/domains`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddDomain {
    /// The hostname.
    pub host: String,
}

/// `POST /v1/apps/{app}/deploys`: deploy a ref of the app's repository or a prebuilt image.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeployBody {
    /// A ref (`main`, a commit id).
    pub git_ref: Option<String>,
    /// An image reference.
    pub image: Option<String>,
}

/// One line of an NDJSON stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A progress line for the user.
    Progress {
        /// The line.
        line: String,
    },
    /// Output of a one-off command.
    Output {
        /// Which stream.
        stream: OutputStream,
        /// The text.
        text: String,
    },
    /// A one-off command exited.
    Exit {
        /// Its exit code.
        code: i32,
    },
    /// The operation succeeded; its JSON result.
    Result {
        /// The result (a [`ReleaseView`], a [`Formation`], `null`...).
        value: serde_json::Value,
    },
    /// The operation failed.
    Error {
        /// Why.
        error: ErrorBody,
    },
}
