//! `Arc<T>` and `Box<T>` implement each stage trait by forwarding every method, defaulted ones
//! included (guarded by `clippy::missing_trait_methods`), so a wrapper never silently falls
//! back to a default.

#![deny(clippy::missing_trait_methods)]

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::*;
use crate::error::Result;
use crate::model::{
    App, AppName, Build, BuildId, CommitId, Config, DeployStatus, Domain, Formation, Instance,
    LogLine, NewRelease, Release, Route, Version,
};

macro_rules! forward {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: SourceStore + ?Sized> SourceStore for $ptr<T> {
            async fn create_repo(&self, app: &AppName) -> Result<()> {
                (**self).create_repo(app).await
            }
            async fn delete_repo(&self, app: &AppName) -> Result<()> {
                (**self).delete_repo(app).await
            }
            async fn repo_exists(&self, app: &AppName) -> Result<bool> {
                (**self).repo_exists(app).await
            }
            async fn resolve(&self, app: &AppName, reference: &str) -> Result<CommitId> {
                (**self).resolve(app, reference).await
            }
            async fn recent_commits(
                &self,
                app: &AppName,
                reference: &str,
                limit: usize,
            ) -> Result<Vec<CommitInfo>> {
                (**self).recent_commits(app, reference, limit).await
            }
            async fn commit_files(&self, req: CommitFilesRequest) -> Result<CommitId> {
                (**self).commit_files(req).await
            }
            async fn export(&self, req: ExportRequest) -> Result<()> {
                (**self).export(req).await
            }
        }

        #[async_trait]
        impl<T: Builder + ?Sized> Builder for $ptr<T> {
            async fn build(&self, req: BuildRequest) -> Result<Build> {
                (**self).build(req).await
            }
            async fn from_image(&self, req: ImageRequest) -> Result<Build> {
                (**self).from_image(req).await
            }
            async fn prune(&self, req: PruneRequest) -> Result<()> {
                (**self).prune(req).await
            }
        }

        #[async_trait]
        impl<T: ReleaseStore + ?Sized> ReleaseStore for $ptr<T> {
            async fn create_app(&self, app: App) -> Result<()> {
                (**self).create_app(app).await
            }
            async fn get_app(&self, name: &AppName) -> Result<App> {
                (**self).get_app(name).await
            }
            async fn list_apps(&self) -> Result<Vec<App>> {
                (**self).list_apps().await
            }
            async fn delete_app(&self, name: &AppName) -> Result<()> {
                (**self).delete_app(name).await
            }
            async fn get_config(&self, app: &AppName) -> Result<Config> {
                (**self).get_config(app).await
            }
            async fn set_config(&self, app: &AppName, config: Config) -> Result<()> {
                (**self).set_config(app, config).await
            }
            async fn get_formation(&self, app: &AppName) -> Result<Formation> {
                (**self).get_formation(app).await
            }
            async fn set_formation(&self, app: &AppName, formation: Formation) -> Result<()> {
                (**self).set_formation(app, formation).await
            }
            async fn list_domains(&self, app: &AppName) -> Result<Vec<Domain>> {
                (**self).list_domains(app).await
            }
            async fn add_domain(&self, app: &AppName, domain: Domain) -> Result<()> {
                (**self).add_domain(app, domain).await
            }
            async fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
                (**self).remove_domain(app, domain).await
            }
            async fn put_build(&self, build: Build) -> Result<()> {
                (**self).put_build(build).await
            }
            async fn get_build(&self, app: &AppName, id: &BuildId) -> Result<Build> {
                (**self).get_build(app, id).await
            }
            async fn append_release(&self, release: NewRelease) -> Result<Release> {
                (**self).append_release(release).await
            }
            async fn get_release(&self, app: &AppName, version: Version) -> Result<Release> {
                (**self).get_release(app, version).await
            }
            async fn list_releases(
                &self,
                app: &AppName,
                query: ListReleases,
            ) -> Result<Vec<Release>> {
                (**self).list_releases(app, query).await
            }
            async fn current_release(&self, app: &AppName) -> Result<Option<Release>> {
                (**self).current_release(app).await
            }
            async fn set_release_status(
                &self,
                app: &AppName,
                version: Version,
                status: DeployStatus,
            ) -> Result<()> {
                (**self).set_release_status(app, version, status).await
            }
        }

        #[async_trait]
        impl<T: Scheduler + ?Sized> Scheduler for $ptr<T> {
            async fn start(&self, req: StartRequest) -> Result<Vec<Instance>> {
                (**self).start(req).await
            }
            async fn wait_healthy(&self, req: HealthRequest) -> Result<()> {
                (**self).wait_healthy(req).await
            }
            async fn stop(&self, req: StopRequest) -> Result<()> {
                (**self).stop(req).await
            }
            async fn list(&self, app: Option<&AppName>) -> Result<Vec<Instance>> {
                (**self).list(app).await
            }
            async fn run_once(&self, req: RunRequest) -> Result<RunHandle> {
                (**self).run_once(req).await
            }
            async fn converge(&self, req: ConvergeRequest) -> Result<ConvergeReport> {
                (**self).converge(req).await
            }
            fn events(&self) -> BoxStream<'static, InstanceEvent> {
                (**self).events()
            }
            async fn remove_app(&self, app: &AppName, grace: Duration) -> Result<()> {
                (**self).remove_app(app, grace).await
            }
        }

        #[async_trait]
        impl<T: Router + ?Sized> Router for $ptr<T> {
            async fn set_route(&self, route: Route) -> Result<()> {
                (**self).set_route(route).await
            }
            async fn remove_route(&self, app: &AppName) -> Result<()> {
                (**self).remove_route(app).await
            }
            async fn drain(&self, req: DrainRequest) -> Result<DrainReport> {
                (**self).drain(req).await
            }
            async fn routes(&self) -> Result<Vec<Route>> {
                (**self).routes().await
            }
        }

        #[async_trait]
        impl<T: LogSink + ?Sized> LogSink for $ptr<T> {
            async fn append(&self, line: LogLine) -> Result<()> {
                (**self).append(line).await
            }
            async fn tail(&self, app: &AppName, n: usize) -> Result<Vec<LogLine>> {
                (**self).tail(app, n).await
            }
            async fn follow(&self, app: &AppName) -> Result<BoxStream<'static, LogLine>> {
                (**self).follow(app).await
            }
            async fn remove_app(&self, app: &AppName) -> Result<()> {
                (**self).remove_app(app).await
            }
        }
    )*};
}

use std::sync::Arc;
forward!(Arc, Box);
