//! Wire types of the HTTP JSON API, shared by [`ApiServer`](crate::ApiServer) and
//! [`Client`](crate::Client) so that both agree on them.
//!
//! Conventions:
//! - Every `/v1` call needs credentials (`Authorization: Bearer TOKEN`, or HTTP Basic with the
//!   token as password), decided by the server's [`Authorizer`](paas_core::Authorizer).
//! - Errors are [`ErrorBody`] JSON with a 4xx/5xx status.
//! - Timestamps are RFC 3339 strings (`2024-02-29T23:59:59.123Z`).
//! - Lists that grow without bound are paginated: `?limit=N&cursor=C` answers a [`Page`] whose
//!   `next_cursor` (opaque) fetches the next page; no `next_cursor` means the last page.
//! - Long operations answer `200` with `application/x-ndjson`: a sequence of [`StreamEvent`]
//!   lines ending with exactly one `result`, `error` or `exit` event.
//!
//! Evolving safely: structs may gain fields (clients ignore unknown fields); [`StreamEvent`] and
//! [`ErrorKind`](paas_core::ErrorKind) may gain variants, which older clients read as
//! `Unknown` (events are skipped, error kinds keep their message).

use std::collections::BTreeMap;

use paas_core::{
    App, AppName, BuildId, CommitId, ConfigKey, DeployStatus, Domain, ErrorBody, Formation,
    Instance, OutputStream, Release, Timestamp, Version,
};
use serde::{Deserialize, Serialize};

#[cfg(feature = "server")]
use utoipa::ToSchema;

/// `GET /v1/info`: what this server is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct ApiInfo {
    /// The server's version.
    pub version: String,
    /// The API's own URL, as configured.
    pub api_url: String,
    /// Where apps are served, if the server knows (`http://127.0.0.1:8080`).
    pub router_url: Option<String>,
    /// Apps answer at `APP.BASE_DOMAIN`.
    pub base_domain: String,
}

/// One page of a list, oldest-to-newest or by name as the route says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `?limit=N&cursor=C` of a paginated list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "server", into_params(parameter_in = Query))]
pub struct PageRequest {
    /// At most this many items (1 to 1000; default 100 for apps, 20 for releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl PageRequest {
    /// The first page of at most `limit` items.
    pub fn first(limit: usize) -> Self {
        PageRequest {
            limit: Some(limit),
            cursor: None,
        }
    }
    /// The page after `cursor`.
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }
}

/// `POST /v1/apps`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct CreateApp {
    /// The new app's name.
    pub name: AppName,
}

/// A release as the API shows it: config keys only, never values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
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
#[cfg_attr(feature = "server", derive(ToSchema))]
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
#[derive(Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct ConfigPatch {
    /// Vars to set.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Keys to remove.
    #[serde(default)]
    pub unset: Vec<String>,
}

impl std::fmt::Debug for ConfigPatch {
    /// Keys only: config values are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigPatch")
            .field("set", &self.set.keys().collect::<Vec<_>>())
            .field("unset", &self.unset)
            .finish()
    }
}

/// The result of `PATCH /v1/apps/{app}/config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct ConfigChanged {
    /// The new release, or `None` when the app has no build yet (the config is stored and
    /// takes effect with the first deploy).
    pub release: Option<ReleaseView>,
}

/// `POST /v1/apps/{app}/rollback`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct RollbackRequest {
    /// Target release; default: the one before the current.
    pub version: Option<Version>,
}

/// `POST /v1/apps/{app}/restart`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct RestartRequest {
    /// Only this process type.
    pub process_type: Option<String>,
}

/// `POST /v1/apps/{app}/run`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct RunCommand {
    /// argv.
    pub command: Vec<String>,
}

/// `POST /v1/apps/{app}/domains`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct AddDomain {
    /// The hostname.
    pub host: String,
}

/// `POST /v1/apps/{app}/deploys`: deploy a ref of the app's repository or a prebuilt image.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct DeployBody {
    /// A ref (`main`, a commit id).
    pub git_ref: Option<String>,
    /// An image reference.
    pub image: Option<String>,
}

/// `?lines=N&follow=true` of `GET /v1/apps/{app}/logs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "server", into_params(parameter_in = Query))]
pub struct LogsQuery {
    /// How many past lines (default 100, at most 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
    /// Keep the stream open and send new lines as they are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<bool>,
}

/// One line of an NDJSON stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
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
        /// Its exit code (128 + N when killed by signal N).
        code: i32,
    },
    /// The operation succeeded; its JSON result.
    Result {
        /// The result (a [`ReleaseView`], a [`Formation`], [`ConfigChanged`], `null`...).
        value: serde_json::Value,
    },
    /// The operation failed.
    Error {
        /// Why.
        error: ErrorBody,
    },
    /// An event kind this version does not know (a newer server's): skipped by clients.
    #[serde(other)]
    Unknown,
}

/// The body of `GET /v1/apps`: apps, by name.
pub type AppPage = Page<App>;
/// The body of `GET /v1/apps/{app}/releases`: releases, newest first.
pub type ReleasePage = Page<ReleaseView>;
