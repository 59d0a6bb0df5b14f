//! Domains, releases and logs.

use futures::stream::BoxStream;

use crate::error::{Error, Result};
use crate::model::{
    AppName, Domain, EventKind, Instance, InstanceState, LogLine, Release, Version,
};
use crate::traits::{ListReleases, LogSink, ReleaseStore, Scheduler};

use super::*;

impl Platform {
    // -----------------------------------------------------------------------------------------
    // Domains, releases, logs

    /// Adds a custom domain and routes it.
    ///
    /// Errors: `Conflict` if another app has it (or it is another app's default host).
    pub async fn add_domain(&self, app: &AppName, domain: Domain) -> Result<()> {
        let _g = self.lock_app(app).await;
        let base = self.inner.settings.base_domain.as_str();
        let suffix = format!(".{base}");
        if let Some(owner) = domain.as_str().strip_suffix(&suffix) {
            if owner != app.as_str() && AppName::new(owner).is_ok() {
                return Err(Error::conflict(format!(
                    "domain \"{domain}\" is the default hostname of app \"{owner}\""
                )));
            }
        }
        // Names under the base domain belong to the platform (every app's default host lives
        // there), and a wildcard over it would take the hosts of apps yet to come.
        let covers_base = match domain.as_str().strip_prefix("*.") {
            Some(parent) => base == parent || base.ends_with(&format!(".{parent}")),
            None => false,
        };
        if domain.as_str() == base || domain.as_str().ends_with(&suffix) || covers_base {
            return Err(Error::invalid(format!(
                "domain \"{domain}\" is under the platform's base domain \"{base}\": apps answer at APP.{base} already; add a domain outside it"
            )));
        }
        self.inner.store.add_domain(app, domain.clone()).await?;
        if let Err(e) = self.sync_route(app).await {
            let _ = self.inner.store.remove_domain(app, &domain).await;
            let _ = self.sync_route(app).await;
            return Err(e);
        }
        self.record_event(
            app,
            EventKind::DomainsChanged,
            None,
            format!("Added domain {domain}"),
        )
        .await;
        Ok(())
    }

    /// Removes a custom domain from the app and its route.
    pub async fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        let _g = self.lock_app(app).await;
        self.inner.store.remove_domain(app, domain).await?;
        self.sync_route(app).await?;
        self.record_event(
            app,
            EventKind::DomainsChanged,
            None,
            format!("Removed domain {domain}"),
        )
        .await;
        Ok(())
    }

    /// The app's custom domains.
    pub async fn domains(&self, app: &AppName) -> Result<Vec<Domain>> {
        self.inner.store.list_domains(app).await
    }

    /// Releases, newest first.
    pub async fn releases(&self, app: &AppName, limit: usize) -> Result<Vec<Release>> {
        self.list_releases(app, ListReleases::newest(limit)).await
    }

    /// Releases as `query` asks (newest first; `before` pages through older ones).
    pub async fn list_releases(&self, app: &AppName, query: ListReleases) -> Result<Vec<Release>> {
        self.inner.store.list_releases(app, query).await
    }

    /// One release.
    pub async fn release(&self, app: &AppName, version: Version) -> Result<Release> {
        self.inner.store.get_release(app, version).await
    }

    /// The last `n` log lines of the app.
    pub async fn logs(&self, app: &AppName, n: usize) -> Result<Vec<LogLine>> {
        self.inner.store.get_app(app).await?;
        self.inner.logs.tail(app, n).await
    }

    /// New log lines of the app as they arrive.
    pub async fn follow_logs(&self, app: &AppName) -> Result<BoxStream<'static, LogLine>> {
        self.inner.store.get_app(app).await?;
        self.inner.logs.follow(app).await
    }

    /// Instances of the app in a given state (helper for status displays).
    pub async fn instances(&self, app: &AppName) -> Result<Vec<Instance>> {
        self.inner.store.get_app(app).await?;
        let mut v = self.inner.scheduler.list(Some(app)).await?;
        v.retain(|i| i.state != InstanceState::Stopped);
        Ok(v)
    }
}
