//! Instances and routes.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::*;

/// The lifecycle state of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum InstanceState {
    /// Created, not yet known to be running.
    Starting,
    /// Its process runs.
    Running,
    /// Its process exited unexpectedly; a restart may be pending.
    Crashed,
    /// Being stopped.
    Stopping,
    /// Stopped.
    Stopped,
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "up",
            InstanceState::Crashed => "crashed",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// One running replica of one process type of one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    /// The backend's unique id for it (a container id, ...).
    pub id: String,
    /// The app.
    pub app: AppName,
    /// The release it runs.
    pub release: Version,
    /// Its process type.
    pub process_type: ProcessType,
    /// Its index within the type, from 1 (`web.1`).
    pub index: u32,
    /// Where it listens (web processes), reachable by the router.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "172.17.0.5:5000"))]
    pub address: Option<SocketAddr>,
    /// Lifecycle state.
    pub state: InstanceState,
    /// When it was started.
    pub started_at: Timestamp,
}

impl Instance {
    /// `web.1`-style name (Heroku's `DYNO`).
    pub fn name(&self) -> String {
        format!("{}.{}", self.process_type, self.index)
    }
}

/// An app's entry in the routing table: hostnames to the addresses of its healthy web processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The app.
    pub app: AppName,
    /// Hostnames (exact or wildcard) that reach it.
    pub hosts: Vec<Domain>,
    /// Healthy web process addresses.
    pub endpoints: Vec<SocketAddr>,
}
