//! [`SqliteReleaseStore`]: the [`ReleaseStore`] on SQLite.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use async_trait::async_trait;
use paas_core::{
    App, AppName, Build, BuildId, Config, DeployStatus, Domain, Error, Formation, ListReleases,
    NewRelease, Release, ReleaseStore, Result, Timestamp, Version,
};
use sqlx::pool::PoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{ConnectOptions, Row, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::error::{db_err, tag, BACKEND};
use crate::options::SqliteStoreOptions;
use crate::schema;
use crate::seal::{self, Sealer, Slot, KEY_CHECK_PLAINTEXT};

/// A durable [`ReleaseStore`] in one SQLite database file (plus its `-wal`/`-shm` files and a
/// key file that seals config values).
///
/// * Writes go through one connection and each runs in a `BEGIN IMMEDIATE` transaction, so
///   they are serialized inside the process and, through SQLite's lock, across processes that
///   share the file.
/// * Reads use a separate pool of connections (WAL lets them run during a write); each sees
///   every write acknowledged before it started.
/// * Every acknowledged write has been fsynced ([`SyncMode::Full`](crate::SyncMode::Full),
///   the default).
///
/// Cheap to share: wrap it in an `Arc` (it is used as `Arc<dyn ReleaseStore>`).
pub struct SqliteReleaseStore {
    writer: SqlitePool,
    reader: SqlitePool,
    sealer: Sealer,
    location: String,
    key_file: Option<PathBuf>,
}

impl fmt::Debug for SqliteReleaseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteReleaseStore")
            .field("location", &self.location)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// The SELECT list of a release row.
macro_rules! release_cols {
    () => {
        "version, build, config, description, created_at, status, status_reason"
    };
}

fn no_app(name: &AppName) -> Error {
    Error::not_found(format!("app \"{name}\" not found")).with_backend(BACKEND)
}

fn no_release(app: &AppName, v: Version) -> Error {
    Error::not_found(format!("release {v} of app \"{app}\" not found")).with_backend(BACKEND)
}

fn ts(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn from_ts(t: i64) -> Timestamp {
    Timestamp(u64::try_from(t).unwrap_or(0))
}

/// A version as a column value; versions beyond `i64` cannot exist in the table.
fn ver(v: Version) -> i64 {
    i64::try_from(v.0).unwrap_or(i64::MAX)
}

fn status_cols(s: &DeployStatus) -> (&'static str, Option<&str>) {
    match s {
        DeployStatus::Pending => ("pending", None),
        DeployStatus::Succeeded => ("succeeded", None),
        DeployStatus::Failed(reason) => ("failed", Some(reason.as_str())),
        // Only a newer peer's state reads as unknown; storing it keeps it unknown.
        _ => ("unknown", None),
    }
}

fn corrupt(what: &str) -> Error {
    Error::internal(format!("stored {what} is not valid")).with_backend(BACKEND)
}

async fn app_exists(conn: &mut SqliteConnection, name: &AppName, op: &'static str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM apps WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err(op))?;
    Ok(found.is_some())
}

async fn require_app(conn: &mut SqliteConnection, name: &AppName, op: &'static str) -> Result<()> {
    if app_exists(conn, name, op).await? {
        Ok(())
    } else {
        Err(no_app(name))
    }
}

impl SqliteReleaseStore {
    /// Opens (creating if missing) the database at `path` with default options: WAL,
    /// `synchronous = FULL`, key file `<path>.key`. Applies pending schema migrations.
    ///
    /// Errors: `Unsupported` if the database has a newer schema than this code knows;
    /// `InvalidInput` if the file is not a paas-sqlite database; `NotFound` if the database has
    /// sealed config but its key file is missing; `InvalidInput` if the key file is not this
    /// database's key or is malformed. In every error case the database is left unchanged.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::open_with(SqliteStoreOptions::new(path)).await
    }

    /// Opens with explicit [`SqliteStoreOptions`]. Errors as [`SqliteReleaseStore::open`].
    pub async fn open_with(options: SqliteStoreOptions) -> Result<Self> {
        const OP: &str = "open";
        let location = options.path.display().to_string();
        let key_path = options.key_path();
        let connect = SqliteConnectOptions::new()
            .filename(&options.path)
            .create_if_missing(options.create_if_missing)
            // The journal mode is switched to WAL only once the schema check passed (see
            // below): opening a database this code must refuse leaves it untouched.
            .synchronous(options.sync.pragma())
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            // macOS: make fsync reach the platter (F_FULLFSYNC); a no-op elsewhere.
            .pragma("fullfsync", "ON")
            .pragma("checkpoint_fullfsync", "ON")
            // Statements only carry placeholders, but keep the log quiet anyway.
            .disable_statement_logging();
        if !options.create_if_missing && !options.path.exists() {
            return Err(Error::not_found(format!(
                "database {location} does not exist (create_if_missing is off)"
            ))
            .with_backend(BACKEND)
            .with_operation(OP));
        }

        let writer = PoolOptions::<Sqlite>::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(db_err(OP))?;

        let sealer = match Self::prepare(&writer, &location, Some(key_path.clone())).await {
            Ok(s) => s,
            Err(e) => {
                writer.close().await;
                return Err(e);
            }
        };
        if let Err(e) = Self::enable_wal(&writer, &location).await {
            writer.close().await;
            return Err(e);
        }
        seal::sync_parent_dir(&options.path).map_err(tag(OP))?;

        let reader = PoolOptions::<Sqlite>::new()
            .max_connections(options.read_connections.max(1))
            .min_connections(0)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.pragma("query_only", "ON"));

        Ok(SqliteReleaseStore {
            writer,
            reader,
            sealer,
            location,
            key_file: Some(key_path),
        })
    }

    /// A store in memory (same schema and code paths, no durability), with a random key. For
    /// tests and demos.
    pub async fn open_in_memory() -> Result<Self> {
        const OP: &str = "open";
        let connect = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db_err(OP))?
            .foreign_keys(true)
            .disable_statement_logging();
        // One connection that is never closed: the in-memory database lives as long as it.
        let writer = PoolOptions::<Sqlite>::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(db_err(OP))?;
        let location = ":memory:".to_string();
        let sealer = Self::prepare(&writer, &location, None).await?;
        Ok(SqliteReleaseStore {
            reader: writer.clone(),
            writer,
            sealer,
            location,
            key_file: None,
        })
    }

    /// Migrates the schema and loads (or creates) the config key, checking it against the key
    /// check value stored in the database. One write transaction: on error nothing changed.
    async fn prepare(
        writer: &SqlitePool,
        location: &str,
        key_path: Option<PathBuf>,
    ) -> Result<Sealer> {
        const OP: &str = "open";
        let mut tx = writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err(OP))?;
        schema::migrate(&mut tx, location).await?;
        let check: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err(OP))?;
        let sealer = match &key_path {
            None => Sealer::ephemeral()?,
            Some(p) => {
                let p = p.clone();
                let create = check.is_none();
                let (sealer, _created) =
                    tokio::task::spawn_blocking(move || seal::load_or_create_key(&p, create))
                        .await
                        .map_err(|e| {
                            Error::internal(format!("loading the config key panicked: {e}"))
                        })?
                        .map_err(|e| {
                            if e.kind() == paas_core::ErrorKind::NotFound {
                                Error::not_found(format!(
                                    "{} (database {location} holds config sealed with that key: restore the key file, or point key_file at it)",
                                    e.message()
                                ))
                                .with_backend(BACKEND)
                            } else {
                                e
                            }
                        })
                        .map_err(tag(OP))?;
                sealer
            }
        };
        match check {
            Some(blob) => {
                let ok = sealer
                    .open_bytes(Slot::KeyCheck, &blob)
                    .map(|p| p == KEY_CHECK_PLAINTEXT)
                    .unwrap_or(false);
                if !ok {
                    return Err(Error::invalid(format!(
                        "the config key file {} is not the key of database {location}",
                        key_path
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ))
                    .with_backend(BACKEND)
                    .with_operation(OP));
                }
            }
            None => {
                let blob = sealer.seal_bytes(Slot::KeyCheck, KEY_CHECK_PLAINTEXT)?;
                sqlx::query("INSERT INTO meta (key, value) VALUES ('key_check', $1)")
                    .bind(blob)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err(OP))?;
            }
        }
        tx.commit().await.map_err(db_err(OP))?;
        Ok(sealer)
    }

    /// Switches the database to WAL (a persistent property of the file) and checks it took.
    async fn enable_wal(writer: &SqlitePool, location: &str) -> Result<()> {
        const OP: &str = "open";
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
            .fetch_one(writer)
            .await
            .map_err(db_err(OP))?;
        if mode.eq_ignore_ascii_case("wal") {
            Ok(())
        } else {
            Err(Error::unavailable(format!(
                "database {location} cannot use write-ahead logging (journal mode stayed \"{mode}\"); \
                 put it on a local filesystem that supports shared memory"
            ))
            .with_retryable(false)
            .with_backend(BACKEND)
            .with_operation(OP))
        }
    }

    /// Where the database is (a path, or `:memory:`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The key file sealing config values (`None` in memory).
    pub fn key_file(&self) -> Option<&std::path::Path> {
        self.key_file.as_deref()
    }

    /// The schema version of the database (this code's [`SCHEMA_VERSION`](crate::SCHEMA_VERSION)
    /// once opened).
    pub async fn schema_version(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&self.reader)
            .await
            .map_err(db_err("schema_version"))
    }

    /// Closes every connection (checkpointing the log). Later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn write_tx(&self, op: &'static str) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err(op))
    }

    async fn read_tx(&self, op: &'static str) -> Result<Transaction<'static, Sqlite>> {
        self.reader.begin().await.map_err(db_err(op))
    }

    fn release_from_row(
        &self,
        app: &AppName,
        row: &SqliteRow,
        op: &'static str,
    ) -> Result<Release> {
        let version: i64 = row.try_get("version").map_err(db_err(op))?;
        let version = u64::try_from(version)
            .ok()
            .filter(|v| *v >= 1)
            .map(Version)
            .ok_or_else(|| corrupt("release version"))?;
        let build: String = row.try_get("build").map_err(db_err(op))?;
        let build: Build = serde_json::from_str(&build)
            .map_err(|_| corrupt(&format!("build of release {version}")))?;
        let sealed: Vec<u8> = row.try_get("config").map_err(db_err(op))?;
        let config = self
            .sealer
            .open_config(Slot::Release(app.as_str(), version.0), &sealed)?;
        let status: String = row.try_get("status").map_err(db_err(op))?;
        let reason: Option<String> = row.try_get("status_reason").map_err(db_err(op))?;
        let status = match status.as_str() {
            "pending" => DeployStatus::Pending,
            "succeeded" => DeployStatus::Succeeded,
            "failed" => DeployStatus::Failed(reason.unwrap_or_default()),
            "unknown" => DeployStatus::Unknown,
            _ => return Err(corrupt(&format!("status of release {version}"))),
        };
        Ok(Release {
            app: app.clone(),
            version,
            build,
            config,
            description: row.try_get("description").map_err(db_err(op))?,
            created_at: from_ts(row.try_get("created_at").map_err(db_err(op))?),
            status,
        })
    }

    fn app_from_row(row: &SqliteRow, op: &'static str) -> Result<App> {
        let name: String = row.try_get("name").map_err(db_err(op))?;
        Ok(App {
            name: AppName::new(name).map_err(|_| corrupt("app name"))?,
            created_at: from_ts(row.try_get("created_at").map_err(db_err(op))?),
        })
    }
}

#[async_trait]
impl ReleaseStore for SqliteReleaseStore {
    async fn create_app(&self, app: App) -> Result<()> {
        const OP: &str = "create_app";
        let config = self
            .sealer
            .seal_config(Slot::Current(app.name.as_str()), &Config::new())
            .map_err(tag(OP))?;
        let formation =
            serde_json::to_string(&Formation::new()).map_err(|_| corrupt("formation"))?;
        let done = sqlx::query(
            "INSERT INTO apps (name, created_at, config, formation, last_version)
             VALUES ($1, $2, $3, $4, 0)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(app.name.as_str())
        .bind(ts(app.created_at))
        .bind(config)
        .bind(formation)
        .execute(&self.writer)
        .await
        .map_err(db_err(OP))?;
        if done.rows_affected() == 0 {
            return Err(
                Error::already_exists(format!("app \"{}\" already exists", app.name))
                    .with_backend(BACKEND)
                    .with_operation(OP),
            );
        }
        tracing::debug!(app = %app.name, "created app");
        Ok(())
    }

    async fn get_app(&self, name: &AppName) -> Result<App> {
        const OP: &str = "get_app";
        let row = sqlx::query("SELECT name, created_at FROM apps WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err(OP))?;
        match row {
            Some(row) => Self::app_from_row(&row, OP),
            None => Err(no_app(name).with_operation(OP)),
        }
    }

    async fn list_apps(&self) -> Result<Vec<App>> {
        const OP: &str = "list_apps";
        let rows = sqlx::query("SELECT name, created_at FROM apps ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err(OP))?;
        rows.iter().map(|r| Self::app_from_row(r, OP)).collect()
    }

    async fn delete_app(&self, name: &AppName) -> Result<()> {
        const OP: &str = "delete_app";
        let mut tx = self.write_tx(OP).await?;
        for sql in [
            "DELETE FROM releases WHERE app = $1",
            "DELETE FROM builds WHERE app = $1",
            "DELETE FROM domains WHERE app = $1",
        ] {
            sqlx::query(sql)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err(OP))?;
        }
        // The app row carries the version counter: it goes too.
        let done = sqlx::query("DELETE FROM apps WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err(OP))?;
        if done.rows_affected() == 0 {
            return Err(no_app(name).with_operation(OP));
        }
        tx.commit().await.map_err(db_err(OP))?;
        tracing::debug!(app = %name, "deleted app");
        Ok(())
    }

    async fn get_config(&self, app: &AppName) -> Result<Config> {
        const OP: &str = "get_config";
        let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT config FROM apps WHERE name = $1")
            .bind(app.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err(OP))?;
        let sealed = sealed.ok_or_else(|| no_app(app).with_operation(OP))?;
        self.sealer
            .open_config(Slot::Current(app.as_str()), &sealed)
            .map_err(tag(OP))
    }

    async fn set_config(&self, app: &AppName, config: Config) -> Result<()> {
        const OP: &str = "set_config";
        let sealed = self
            .sealer
            .seal_config(Slot::Current(app.as_str()), &config)
            .map_err(tag(OP))?;
        let done = sqlx::query("UPDATE apps SET config = $2 WHERE name = $1")
            .bind(app.as_str())
            .bind(sealed)
            .execute(&self.writer)
            .await
            .map_err(db_err(OP))?;
        if done.rows_affected() == 0 {
            return Err(no_app(app).with_operation(OP));
        }
        tracing::debug!(app = %app, vars = config.len(), "set config");
        Ok(())
    }

    async fn get_formation(&self, app: &AppName) -> Result<Formation> {
        const OP: &str = "get_formation";
        let json: Option<String> = sqlx::query_scalar("SELECT formation FROM apps WHERE name = $1")
            .bind(app.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err(OP))?;
        let json = json.ok_or_else(|| no_app(app).with_operation(OP))?;
        serde_json::from_str(&json).map_err(|_| corrupt("formation").with_operation(OP))
    }

    async fn set_formation(&self, app: &AppName, formation: Formation) -> Result<()> {
        const OP: &str = "set_formation";
        let json = serde_json::to_string(&formation).map_err(|_| corrupt("formation"))?;
        let done = sqlx::query("UPDATE apps SET formation = $2 WHERE name = $1")
            .bind(app.as_str())
            .bind(json)
            .execute(&self.writer)
            .await
            .map_err(db_err(OP))?;
        if done.rows_affected() == 0 {
            return Err(no_app(app).with_operation(OP));
        }
        Ok(())
    }

    async fn list_domains(&self, app: &AppName) -> Result<Vec<Domain>> {
        const OP: &str = "list_domains";
        let mut tx = self.read_tx(OP).await?;
        require_app(&mut tx, app, OP).await.map_err(tag(OP))?;
        let names: Vec<String> =
            sqlx::query_scalar("SELECT domain FROM domains WHERE app = $1 ORDER BY domain")
                .bind(app.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err(OP))?;
        tx.commit().await.map_err(db_err(OP))?;
        names
            .into_iter()
            .map(|d| Domain::new(d).map_err(|_| corrupt("domain").with_operation(OP)))
            .collect()
    }

    async fn add_domain(&self, app: &AppName, domain: Domain) -> Result<()> {
        const OP: &str = "add_domain";
        let mut tx = self.write_tx(OP).await?;
        require_app(&mut tx, app, OP).await.map_err(tag(OP))?;
        let owner: Option<String> = sqlx::query_scalar("SELECT app FROM domains WHERE domain = $1")
            .bind(domain.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err(OP))?;
        match owner {
            Some(owner) if owner == app.as_str() => return Ok(()),
            Some(owner) => {
                return Err(Error::conflict(format!(
                    "domain \"{domain}\" is already used by app \"{owner}\""
                ))
                .with_backend(BACKEND)
                .with_operation(OP))
            }
            None => {}
        }
        sqlx::query("INSERT INTO domains (domain, app) VALUES ($1, $2)")
            .bind(domain.as_str())
            .bind(app.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err(OP))?;
        tx.commit().await.map_err(db_err(OP))?;
        Ok(())
    }

    async fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        const OP: &str = "remove_domain";
        let mut tx = self.write_tx(OP).await?;
        require_app(&mut tx, app, OP).await.map_err(tag(OP))?;
        let done = sqlx::query("DELETE FROM domains WHERE domain = $1 AND app = $2")
            .bind(domain.as_str())
            .bind(app.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err(OP))?;
        if done.rows_affected() == 0 {
            return Err(
                Error::not_found(format!("app \"{app}\" has no domain \"{domain}\""))
                    .with_backend(BACKEND)
                    .with_operation(OP),
            );
        }
        tx.commit().await.map_err(db_err(OP))?;
        Ok(())
    }

    async fn put_build(&self, build: Build) -> Result<()> {
        const OP: &str = "put_build";
        let body = serde_json::to_string(&build).map_err(|_| corrupt("build"))?;
        let mut tx = self.write_tx(OP).await?;
        require_app(&mut tx, &build.app, OP)
            .await
            .map_err(tag(OP))?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT body FROM builds WHERE app = $1 AND id = $2")
                .bind(build.app.as_str())
                .bind(build.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err(OP))?;
        if let Some(existing) = existing {
            let same = serde_json::from_str::<Build>(&existing).is_ok_and(|b| b == build);
            return if same {
                Ok(())
            } else {
                Err(Error::already_exists(format!(
                    "build {} already exists with different contents",
                    build.id
                ))
                .with_backend(BACKEND)
                .with_operation(OP))
            };
        }
        sqlx::query("INSERT INTO builds (app, id, body) VALUES ($1, $2, $3)")
            .bind(build.app.as_str())
            .bind(build.id.as_str())
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(db_err(OP))?;
        tx.commit().await.map_err(db_err(OP))?;
        tracing::debug!(app = %build.app, build = %build.id, "stored build");
        Ok(())
    }

    async fn get_build(&self, app: &AppName, id: &BuildId) -> Result<Build> {
        const OP: &str = "get_build";
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM builds WHERE app = $1 AND id = $2")
                .bind(app.as_str())
                .bind(id.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err(OP))?;
        match body {
            Some(body) => serde_json::from_str(&body)
                .map_err(|_| corrupt(&format!("build {id}")).with_operation(OP)),
            None => {
                let mut conn = self.reader.acquire().await.map_err(db_err(OP))?;
                require_app(&mut conn, app, OP).await.map_err(tag(OP))?;
                Err(
                    Error::not_found(format!("build {id} not found in app \"{app}\""))
                        .with_backend(BACKEND)
                        .with_operation(OP),
                )
            }
        }
    }

    async fn append_release(&self, release: NewRelease) -> Result<Release> {
        const OP: &str = "append_release";
        if release.build.app != release.app {
            return Err(Error::invalid(format!(
                "build {} belongs to app \"{}\", not \"{}\"",
                release.build.id, release.build.app, release.app
            ))
            .with_backend(BACKEND)
            .with_operation(OP));
        }
        let app = &release.app;
        let build_json = serde_json::to_string(&release.build).map_err(|_| corrupt("build"))?;
        let current = self
            .sealer
            .seal_config(Slot::Current(app.as_str()), &release.config)
            .map_err(tag(OP))?;

        let mut tx = self.write_tx(OP).await?;
        // Allocate the version from the app's counter. The write lock taken by BEGIN IMMEDIATE
        // (a row lock on PostgreSQL) serializes concurrent appends.
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE apps SET last_version = last_version + 1, config = $2
             WHERE name = $1
             RETURNING last_version",
        )
        .bind(app.as_str())
        .bind(current)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err(OP))?;
        let version = version.ok_or_else(|| no_app(app).with_operation(OP))?;
        let version = Version(u64::try_from(version).map_err(|_| corrupt("version counter"))?);

        let stored: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM builds WHERE app = $1 AND id = $2")
                .bind(app.as_str())
                .bind(release.build.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err(OP))?;
        if stored.is_none() {
            return Err(Error::not_found(format!(
                "build {} was not stored for app \"{app}\"",
                release.build.id
            ))
            .with_backend(BACKEND)
            .with_operation(OP));
        }

        let sealed = self
            .sealer
            .seal_config(Slot::Release(app.as_str(), version.0), &release.config)
            .map_err(tag(OP))?;
        let created_at = Timestamp::now();
        sqlx::query(
            "INSERT INTO releases
                (app, version, build_id, build, config, description, created_at, status, status_reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', NULL)",
        )
        .bind(app.as_str())
        .bind(ver(version))
        .bind(release.build.id.as_str())
        .bind(build_json)
        .bind(sealed)
        .bind(release.description.as_str())
        .bind(ts(created_at))
        .execute(&mut *tx)
        .await
        .map_err(db_err(OP))?;
        tx.commit().await.map_err(db_err(OP))?;
        tracing::debug!(app = %app, version = %version, build = %release.build.id, "appended release");

        Ok(Release {
            app: release.app,
            version,
            build: release.build,
            config: release.config,
            description: release.description,
            created_at,
            status: DeployStatus::Pending,
        })
    }

    async fn get_release(&self, app: &AppName, version: Version) -> Result<Release> {
        const OP: &str = "get_release";
        let row = sqlx::query(concat!(
            "SELECT ",
            release_cols!(),
            " FROM releases WHERE app = $1 AND version = $2"
        ))
        .bind(app.as_str())
        .bind(ver(version))
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err(OP))?;
        match row {
            Some(row) => self.release_from_row(app, &row, OP).map_err(tag(OP)),
            None => {
                let mut conn = self.reader.acquire().await.map_err(db_err(OP))?;
                require_app(&mut conn, app, OP).await.map_err(tag(OP))?;
                Err(no_release(app, version).with_operation(OP))
            }
        }
    }

    async fn list_releases(&self, app: &AppName, query: ListReleases) -> Result<Vec<Release>> {
        const OP: &str = "list_releases";
        let mut tx = self.read_tx(OP).await?;
        require_app(&mut tx, app, OP).await.map_err(tag(OP))?;
        let before = query.before.map(ver).unwrap_or(i64::MAX);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(concat!(
            "SELECT ",
            release_cols!(),
            " FROM releases WHERE app = $1 AND version < $2 ORDER BY version DESC LIMIT $3"
        ))
        .bind(app.as_str())
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err(OP))?;
        tx.commit().await.map_err(db_err(OP))?;
        rows.iter()
            .map(|r| self.release_from_row(app, r, OP).map_err(tag(OP)))
            .collect()
    }

    async fn current_release(&self, app: &AppName) -> Result<Option<Release>> {
        const OP: &str = "current_release";
        let mut tx = self.read_tx(OP).await?;
        require_app(&mut tx, app, OP).await.map_err(tag(OP))?;
        let row = sqlx::query(concat!(
            "SELECT ",
            release_cols!(),
            " FROM releases WHERE app = $1 AND status = 'succeeded' ORDER BY version DESC LIMIT 1"
        ))
        .bind(app.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err(OP))?;
        tx.commit().await.map_err(db_err(OP))?;
        row.map(|r| self.release_from_row(app, &r, OP).map_err(tag(OP)))
            .transpose()
    }

    async fn set_release_status(
        &self,
        app: &AppName,
        version: Version,
        status: DeployStatus,
    ) -> Result<()> {
        const OP: &str = "set_release_status";
        let (state, reason) = status_cols(&status);
        let mut tx = self.write_tx(OP).await?;
        let done = sqlx::query(
            "UPDATE releases SET status = $3, status_reason = $4 WHERE app = $1 AND version = $2",
        )
        .bind(app.as_str())
        .bind(ver(version))
        .bind(state)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(db_err(OP))?;
        if done.rows_affected() == 0 {
            require_app(&mut tx, app, OP).await.map_err(tag(OP))?;
            return Err(no_release(app, version).with_operation(OP));
        }
        tx.commit().await.map_err(db_err(OP))?;
        tracing::debug!(app = %app, version = %version, status = state, "set release status");
        Ok(())
    }
}
