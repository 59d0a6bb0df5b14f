use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::error::{Error, Result};
use crate::model::{AppName, Route};
use crate::traits::{DrainReport, DrainRequest, Router};

/// A [`Router`] that only keeps the table (no data plane): drains complete at once.
#[derive(Debug, Default)]
pub struct MemoryRouter {
    table: Mutex<BTreeMap<AppName, Route>>,
}

impl MemoryRouter {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Checks that no host of `route` is routed to another app in `table`.
pub(crate) fn check_host_conflicts<'a>(
    table: impl IntoIterator<Item = &'a Route>,
    route: &Route,
) -> Result<()> {
    for other in table {
        if other.app == route.app {
            continue;
        }
        if let Some(h) = route.hosts.iter().find(|h| other.hosts.contains(h)) {
            return Err(Error::conflict(format!(
                "host \"{h}\" is already routed to app \"{}\"",
                other.app
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl Router for MemoryRouter {
    async fn set_route(&self, route: Route) -> Result<()> {
        let mut table = lock(&self.table);
        check_host_conflicts(table.values(), &route)?;
        table.insert(route.app.clone(), route);
        Ok(())
    }

    async fn remove_route(&self, app: &AppName) -> Result<()> {
        lock(&self.table).remove(app);
        Ok(())
    }

    async fn drain(&self, req: DrainRequest) -> Result<DrainReport> {
        Ok(DrainReport {
            drained: req.endpoints,
            pending: Vec::new(),
        })
    }

    async fn routes(&self) -> Result<Vec<Route>> {
        Ok(lock(&self.table).values().cloned().collect())
    }
}
