//! Apps: create, list, destroy, status.

use tracing::Instrument;

use crate::error::{ErrorKind, Result};
use crate::model::{App, AppName, Domain, EventKind, PlatformEvent, Timestamp};
use crate::traits::{
    Builder, ListReleases, LogSink, PruneRequest, ReleaseStore, Router, Scheduler, SourceStore,
};

use super::*;

impl Platform {
    // -----------------------------------------------------------------------------------------
    // Apps

    /// Creates an app: its record and its repository.
    ///
    /// Errors: `AlreadyExists` (nothing changes).
    pub async fn create_app(&self, app: &AppName) -> Result<App> {
        let _g = self.lock_app(app).await;
        let record = App::new(app.clone());
        self.inner.store.create_app(record.clone()).await?;
        if let Err(e) = self.inner.sources.create_repo(app).await {
            if e.kind() != ErrorKind::AlreadyExists {
                let _ = self.inner.store.delete_app(app).await;
                return Err(e);
            }
        }
        self.record_event(
            app,
            EventKind::AppCreated,
            None,
            format!("Created app {app}"),
        )
        .await;
        Ok(record)
    }

    /// All apps.
    pub async fn list_apps(&self) -> Result<Vec<App>> {
        self.inner.store.list_apps().await
    }

    /// Destroys an app: its processes, route, artifacts, repository, records and logs.
    ///
    /// Errors: `NotFound`.
    pub async fn destroy_app(&self, app: &AppName) -> Result<()> {
        let _g = self.lock_app(app).await;
        let span = tracing::info_span!("destroy", %app);
        async {
            self.inner.store.get_app(app).await?;
            self.inner.router.remove_route(app).await?;
            self.inner
                .scheduler
                .remove_app(app, self.inner.settings.stop_grace)
                .await?;
            self.inner
                .builder
                .prune(PruneRequest::new(app.clone(), Vec::new()))
                .await?;
            self.inner.sources.delete_repo(app).await?;
            self.inner.store.delete_app(app).await?;
            self.inner.logs.remove_app(app).await?;
            let _ = self.inner.events.send(PlatformEvent {
                timestamp: Timestamp::now(),
                app: app.clone(),
                kind: EventKind::AppDestroyed,
                release: None,
                message: format!("Destroyed app {app}"),
            });
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// An app's status: releases, formation, instances, domains.
    pub async fn status(&self, app: &AppName) -> Result<AppStatus> {
        let record = self.inner.store.get_app(app).await?;
        let current = self.inner.store.current_release(app).await?;
        let latest = self
            .inner
            .store
            .list_releases(app, ListReleases::newest(1))
            .await?
            .pop();
        let formation = self.inner.store.get_formation(app).await?;
        let instances = self.inner.scheduler.list(Some(app)).await?;
        let domains = self.inner.store.list_domains(app).await?;
        let hosts = self.hosts(app).await?;
        Ok(AppStatus {
            app: record,
            current,
            latest,
            formation,
            instances,
            domains,
            hosts,
        })
    }

    pub(super) async fn hosts(&self, app: &AppName) -> Result<Vec<Domain>> {
        let mut hosts = vec![self.default_host(app)?];
        hosts.extend(self.inner.store.list_domains(app).await?);
        Ok(hosts)
    }
}
