use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::error::{Error, Result};
use crate::model::{
    App, AppName, Build, BuildId, Config, DeployStatus, Domain, Formation, NewRelease, Release,
    Timestamp, Version,
};
use crate::traits::{ListReleases, ReleaseStore};

#[derive(Debug)]
struct AppRecord {
    app: App,
    config: Config,
    formation: Formation,
    domains: BTreeSet<Domain>,
    builds: BTreeMap<BuildId, Build>,
    releases: BTreeMap<Version, Release>,
    last_version: u64,
}

/// A [`ReleaseStore`] in memory: everything is lost when it is dropped.
#[derive(Debug, Default)]
pub struct MemoryReleaseStore {
    apps: Mutex<BTreeMap<AppName, AppRecord>>,
}

impl MemoryReleaseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn no_app(name: &AppName) -> Error {
    Error::not_found(format!("app \"{name}\" not found")).with_backend("memory")
}

impl MemoryReleaseStore {
    fn with_app<T>(
        &self,
        name: &AppName,
        f: impl FnOnce(&mut AppRecord) -> Result<T>,
    ) -> Result<T> {
        let mut apps = lock(&self.apps);
        let rec = apps.get_mut(name).ok_or_else(|| no_app(name))?;
        f(rec)
    }
}

#[async_trait]
impl ReleaseStore for MemoryReleaseStore {
    async fn create_app(&self, app: App) -> Result<()> {
        let mut apps = lock(&self.apps);
        if apps.contains_key(&app.name) {
            return Err(Error::already_exists(format!(
                "app \"{}\" already exists",
                app.name
            )));
        }
        apps.insert(
            app.name.clone(),
            AppRecord {
                app,
                config: Config::new(),
                formation: Formation::new(),
                domains: BTreeSet::new(),
                builds: BTreeMap::new(),
                releases: BTreeMap::new(),
                last_version: 0,
            },
        );
        Ok(())
    }

    async fn get_app(&self, name: &AppName) -> Result<App> {
        self.with_app(name, |r| Ok(r.app.clone()))
    }

    async fn list_apps(&self) -> Result<Vec<App>> {
        Ok(lock(&self.apps).values().map(|r| r.app.clone()).collect())
    }

    async fn delete_app(&self, name: &AppName) -> Result<()> {
        lock(&self.apps)
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| no_app(name))
    }

    async fn get_config(&self, app: &AppName) -> Result<Config> {
        self.with_app(app, |r| Ok(r.config.clone()))
    }

    async fn set_config(&self, app: &AppName, config: Config) -> Result<()> {
        self.with_app(app, |r| {
            r.config = config;
            Ok(())
        })
    }

    async fn get_formation(&self, app: &AppName) -> Result<Formation> {
        self.with_app(app, |r| Ok(r.formation.clone()))
    }

    async fn set_formation(&self, app: &AppName, formation: Formation) -> Result<()> {
        self.with_app(app, |r| {
            r.formation = formation;
            Ok(())
        })
    }

    async fn list_domains(&self, app: &AppName) -> Result<Vec<Domain>> {
        self.with_app(app, |r| Ok(r.domains.iter().cloned().collect()))
    }

    async fn add_domain(&self, app: &AppName, domain: Domain) -> Result<()> {
        let mut apps = lock(&self.apps);
        if !apps.contains_key(app) {
            return Err(no_app(app));
        }
        if let Some((owner, _)) = apps
            .iter()
            .find(|(name, r)| *name != app && r.domains.contains(&domain))
        {
            return Err(Error::conflict(format!(
                "domain \"{domain}\" is already used by app \"{owner}\""
            )));
        }
        apps.get_mut(app).expect("checked").domains.insert(domain);
        Ok(())
    }

    async fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        self.with_app(app, |r| {
            if r.domains.remove(domain) {
                Ok(())
            } else {
                Err(Error::not_found(format!(
                    "app \"{app}\" has no domain \"{domain}\""
                )))
            }
        })
    }

    async fn put_build(&self, build: Build) -> Result<()> {
        self.with_app(&build.app.clone(), |r| match r.builds.get(&build.id) {
            Some(existing) if *existing == build => Ok(()),
            Some(_) => Err(Error::already_exists(format!(
                "build {} already exists with different contents",
                build.id
            ))),
            None => {
                r.builds.insert(build.id.clone(), build);
                Ok(())
            }
        })
    }

    async fn get_build(&self, app: &AppName, id: &BuildId) -> Result<Build> {
        self.with_app(app, |r| {
            r.builds
                .get(id)
                .cloned()
                .ok_or_else(|| Error::not_found(format!("build {id} not found in app \"{app}\"")))
        })
    }

    async fn append_release(&self, release: NewRelease) -> Result<Release> {
        if release.build.app != release.app {
            return Err(Error::invalid(format!(
                "build {} belongs to app \"{}\", not \"{}\"",
                release.build.id, release.build.app, release.app
            )));
        }
        self.with_app(&release.app.clone(), |r| {
            if !r.builds.contains_key(&release.build.id) {
                return Err(Error::not_found(format!(
                    "build {} was not stored for app \"{}\"",
                    release.build.id, release.app
                )));
            }
            r.last_version += 1;
            let rel = Release {
                app: release.app,
                version: Version(r.last_version),
                build: release.build,
                config: release.config.clone(),
                description: release.description,
                created_at: Timestamp::now(),
                status: DeployStatus::Pending,
            };
            r.config = release.config;
            r.releases.insert(rel.version, rel.clone());
            Ok(rel)
        })
    }

    async fn get_release(&self, app: &AppName, version: Version) -> Result<Release> {
        self.with_app(app, |r| {
            r.releases.get(&version).cloned().ok_or_else(|| {
                Error::not_found(format!("release {version} of app \"{app}\" not found"))
            })
        })
    }

    async fn list_releases(&self, app: &AppName, query: ListReleases) -> Result<Vec<Release>> {
        self.with_app(app, |r| {
            let upper = query.before.map(|v| v.0).unwrap_or(u64::MAX);
            Ok(r.releases
                .range(..Version(upper))
                .rev()
                .take(query.limit)
                .map(|(_, rel)| rel.clone())
                .collect())
        })
    }

    async fn current_release(&self, app: &AppName) -> Result<Option<Release>> {
        self.with_app(app, |r| {
            Ok(r.releases
                .values()
                .rev()
                .find(|rel| rel.status == DeployStatus::Succeeded)
                .cloned())
        })
    }

    async fn set_release_status(
        &self,
        app: &AppName,
        version: Version,
        status: DeployStatus,
    ) -> Result<()> {
        self.with_app(app, |r| {
            let rel = r.releases.get_mut(&version).ok_or_else(|| {
                Error::not_found(format!("release {version} of app \"{app}\" not found"))
            })?;
            rel.status = status;
            Ok(())
        })
    }
}
