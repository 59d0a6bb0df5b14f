//! Versioned schema migrations, applied in one `BEGIN IMMEDIATE` transaction at open.
//!
//! Each migration is a numbered SQL script; `schema_migrations` records which ones were
//! applied. A database that records a migration this code does not know (a newer paas-sqlite
//! wrote it) is refused before anything is changed. Migrations are append-only: never edit a
//! released one, add the next number.

use paas_core::{Error, Result};
use sqlx::{Row, SqliteConnection};

use crate::error::db_err;

/// One schema migration.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) description: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration this code knows, in order. The DML queries of the store are written in the
/// SQL subset shared with PostgreSQL (`$1` placeholders, `ON CONFLICT`, `RETURNING`); only these
/// DDL scripts are SQLite-specific (`WITHOUT ROWID`, `BLOB`, `INTEGER`).
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "apps, domains, builds, releases",
    sql: r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- One row per app. last_version is the app's release counter: the highest version ever
-- allocated. It only grows and is never reset while the app exists, so versions are never
-- reused; deleting the app deletes the row (and with it the counter).
-- config is the current config, sealed (see seal.rs); formation is JSON.
CREATE TABLE apps (
    name         TEXT PRIMARY KEY,
    created_at   INTEGER NOT NULL,
    config       BLOB NOT NULL,
    formation    TEXT NOT NULL,
    last_version INTEGER NOT NULL DEFAULT 0 CHECK (last_version >= 0)
) WITHOUT ROWID;

CREATE TABLE domains (
    domain TEXT PRIMARY KEY,
    app    TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX domains_by_app ON domains (app, domain);

-- body is the JSON of paas_core::Build. Builds never change.
CREATE TABLE builds (
    app  TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    id   TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (app, id)
) WITHOUT ROWID;

-- build is the JSON of the release's paas_core::Build; config is its sealed config snapshot.
CREATE TABLE releases (
    app           TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    version       INTEGER NOT NULL CHECK (version >= 1),
    build_id      TEXT NOT NULL,
    build         TEXT NOT NULL,
    config        BLOB NOT NULL,
    description   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    status_reason TEXT,
    PRIMARY KEY (app, version),
    FOREIGN KEY (app, build_id) REFERENCES builds (app, id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX releases_succeeded ON releases (app, version) WHERE status = 'succeeded';

-- A release is immutable but for its deploy status: enforce it below the application too.
CREATE TRIGGER releases_immutable
BEFORE UPDATE OF app, version, build_id, build, config, description, created_at ON releases
BEGIN
    SELECT RAISE(ABORT, 'releases are immutable except their deploy status');
END;
"#,
}];

/// The schema version this code writes: the number of the last known migration.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Brings the database to [`SCHEMA_VERSION`] inside the caller's transaction. Returns the
/// version found before migrating (0 for a new database).
///
/// Errors, all without changing anything (the caller rolls back): `Unsupported` for a schema
/// newer than this code knows, `InvalidInput` for a database that is not a paas-sqlite one or
/// whose recorded migrations differ from this code's.
pub(crate) async fn migrate(conn: &mut SqliteConnection, location: &str) -> Result<i64> {
    const OP: &str = "open";
    let has_table: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err(OP))?;
    if has_table == 0 {
        let other: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err(OP))?;
        if other > 0 {
            return Err(Error::invalid(format!(
                "{location} is not a paas-sqlite database: it has tables but no schema_migrations table; refusing to touch it"
            ))
            .with_backend("sqlite")
            .with_operation(OP));
        }
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (
                version     INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at  INTEGER NOT NULL
            )",
        )
        .execute(&mut *conn)
        .await
        .map_err(db_err(OP))?;
    }

    let rows = sqlx::query("SELECT version, description FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err(OP))?;
    let mut found = 0i64;
    for row in &rows {
        let version: i64 = row.try_get("version").map_err(db_err(OP))?;
        let description: String = row.try_get("description").map_err(db_err(OP))?;
        if version > SCHEMA_VERSION {
            return Err(Error::unsupported(format!(
                "{location} has schema version {version}, newer than the {SCHEMA_VERSION} this paas-sqlite knows; \
                 upgrade paas-sqlite (nothing was changed)"
            ))
            .with_backend("sqlite")
            .with_operation(OP));
        }
        let known = MIGRATIONS.iter().find(|m| m.version == version);
        if known.map(|m| m.description) != Some(description.as_str()) {
            return Err(Error::invalid(format!(
                "{location} records schema migration {version} (\"{description}\") that this paas-sqlite does not know; refusing to touch it"
            ))
            .with_backend("sqlite")
            .with_operation(OP));
        }
        found = found.max(version);
    }
    if rows.len() as i64 != found {
        return Err(Error::invalid(format!(
            "{location} has gaps in its schema_migrations table; refusing to touch it"
        ))
        .with_backend("sqlite")
        .with_operation(OP));
    }

    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        sqlx::raw_sql(m.sql)
            .execute(&mut *conn)
            .await
            .map_err(db_err(OP))?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.description)
        .bind(paas_core::Timestamp::now().0 as i64)
        .execute(&mut *conn)
        .await
        .map_err(db_err(OP))?;
        tracing::info!(
            version = m.version,
            description = m.description,
            "applied schema migration"
        );
    }
    Ok(found)
}
