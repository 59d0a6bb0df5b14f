//! [`Router`]: maps hostnames to the healthy web processes of each app.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{AppName, Route};

/// A request to wait for endpoints to drain.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DrainRequest {
    /// Endpoints that were removed from routes.
    pub endpoints: Vec<SocketAddr>,
    /// Give up waiting after this long.
    pub timeout: Duration,
}

impl DrainRequest {
    /// Drain `endpoints` within `timeout`.
    pub fn new(endpoints: Vec<SocketAddr>, timeout: Duration) -> Self {
        DrainRequest { endpoints, timeout }
    }
}

/// What [`Router::drain`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Endpoints with nothing in flight any more.
    pub drained: Vec<SocketAddr>,
    /// Endpoints that still had requests or upgraded connections at the timeout.
    pub pending: Vec<SocketAddr>,
}

impl DrainReport {
    /// A report: which endpoints drained and which were still busy at the timeout.
    pub fn new(drained: Vec<SocketAddr>, pending: Vec<SocketAddr>) -> Self {
        DrainReport { drained, pending }
    }
}

/// The routing table: hostnames to endpoints, per app.
///
/// Implementations: `MemoryRouter` (paas-core, a table without a data plane), `ProxyRouter`
/// (paas-proxy). Conformance: `paas_core::testkit::router`.
#[async_trait]
pub trait Router: Send + Sync + std::fmt::Debug + 'static {
    /// Replaces the app's hostnames and endpoints in one atomic step: requests see the old
    /// entry or the new one, never a mix. Takes effect for the next request. Endpoints that
    /// left the entry get no new requests (their in-flight ones finish). Idempotent.
    ///
    /// Errors: `Conflict` if a hostname is routed to another app (nothing changes).
    async fn set_route(&self, route: Route) -> Result<()>;

    /// Removes the app's entry. Idempotent.
    async fn remove_route(&self, app: &AppName) -> Result<()>;

    /// Waits until no request or upgraded connection is in flight to any of `req.endpoints`, or
    /// until the timeout. Never fails because of a timeout: the report says what is pending.
    async fn drain(&self, req: DrainRequest) -> Result<DrainReport>;

    /// The whole table, sorted by app.
    async fn routes(&self) -> Result<Vec<Route>>;
}
