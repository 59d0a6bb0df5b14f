//! # paas-sqlite
//!
//! A durable [`ReleaseStore`](paas_core::ReleaseStore) on SQLite, the default store of a paas
//! platform: apps, config, formation, domains, builds and the release history survive a crash
//! of the daemon and a power loss.
//!
//! ```no_run
//! use std::sync::Arc;
//! use paas_core::ReleaseStore;
//! use paas_sqlite::SqliteReleaseStore;
//!
//! # async fn demo() -> paas_core::Result<()> {
//! let store: Arc<dyn ReleaseStore> =
//!     Arc::new(SqliteReleaseStore::open("/var/lib/paas/records.db").await?);
//! # Ok(()) }
//! ```
//!
//! SQLite is compiled in (sqlx's bundled `libsqlite3-sys`): nothing needs installing.
//!
//! ## Durability
//!
//! * **WAL journal, `synchronous = FULL`.** A commit appends to the write-ahead log and fsyncs
//!   it before [`ReleaseStore`](paas_core::ReleaseStore) methods return `Ok`. A kill -9 at any
//!   moment leaves either the whole transaction or none of it (the log is replayed or ignored
//!   at the next open), and because the log was fsynced an acknowledged write also survives a
//!   power loss or kernel panic. `synchronous = NORMAL` (available as [`SyncMode::Normal`] for
//!   fixtures and benchmarks) would still be safe against kill -9 but may lose the last commits
//!   on power loss, which breaks "an acknowledged release is never lost". `fullfsync` is on so
//!   that macOS flushes the drive cache too. The directories holding a newly created database
//!   and key file are fsynced as well.
//! * **One write transaction per operation.** Every write runs in `BEGIN IMMEDIATE ... COMMIT`
//!   on the store's single write connection: writes of one process queue on that connection,
//!   and other processes opening the same file wait on SQLite's write lock (busy timeout,
//!   default 5 s) instead of failing with a lock-upgrade deadlock. Reads use a separate pool
//!   (WAL lets them proceed during a write) and see every acknowledged write.
//! * **Versions from a counter.** `apps.last_version` is the app's release counter.
//!   `append_release` increments it with `UPDATE ... RETURNING`, inserts the release and sets
//!   the app's current config, all in one transaction: N concurrent appends get 1..N with no
//!   gap or duplicate, a release never exists without its config change (or the reverse), and
//!   versions are never reused. `delete_app` deletes the app row and with it the counter.
//! * **Immutable releases.** Release rows are only ever updated in their deploy status; a
//!   trigger makes SQLite refuse any other update.
//! * **Foreign keys on**, so no build, domain or release can outlive its app.
//!
//! ## Schema migrations
//!
//! Numbered migrations are applied at open, in the same `BEGIN IMMEDIATE` transaction that
//! checks them, and recorded in `schema_migrations`. Opening a database whose schema is newer
//! than this code ([`SCHEMA_VERSION`]) fails with `Unsupported` and changes nothing; a SQLite
//! file that is not a paas-sqlite database is refused with `InvalidInput`.
//!
//! ## Config values at rest
//!
//! Config values are secrets. They never appear in logs, errors or `Debug` output (SQL
//! statements carry only placeholders, statement logging is off, and decode errors that could
//! quote a value are replaced by a fixed message). In the database, every config snapshot (the
//! app's current config and each release's) is stored **sealed**: serialized, then encrypted
//! and authenticated with XChaCha20-Poly1305 under a random 256-bit key, with a fresh random
//! nonce per write and the row's identity (`app` and version) as associated data.
//!
//! The key lives in a key file, by default next to the database (`<db>.key`), created with
//! mode 0600 on first open (see [`SqliteStoreOptions::key_file`] to put it elsewhere). A key
//! check value in the database makes a wrong or missing key file a clear error at open.
//!
//! What this protects against, honestly:
//!
//! * a dump or copy of the database file (`sqlite3 records.db .dump`, a backup of the
//!   database alone, a support bundle, a database file that leaks) is **not** a list of
//!   secrets;
//! * a sealed value moved to another app's or release's row does not open (tamper evidence).
//!
//! What it does **not** protect against: anyone who can read the key file too, which includes
//! the user the daemon runs as, root, and a backup of the whole directory when the key sits
//! next to the database. Keep the key on another volume (a secrets mount) and out of database
//! backups for the protection to matter. Config keys (variable names), build metadata and
//! release descriptions are stored in clear. There is no key rotation yet. Losing the key
//! file makes every stored config unreadable: back it up separately.
//!
//! ## Performance
//!
//! `cargo bench -p paas-sqlite --bench store` (one run on the 2-core development VM, database
//! on its virtio disk; fsync is cheap there, expect fewer appends per second on a disk with a
//! real flush): about 2,500 appends/s from one task with `synchronous = FULL` (1,500/s from 8
//! tasks contending for the single writer), 9,000/s with `NORMAL`; with 10,000 releases in
//! one app, listing the newest 20 takes about 0.14 ms, the newest 100 about 0.7 ms, a page
//! further back the same as the newest (primary-key range scan), the whole history about
//! 85 ms (every snapshot is decrypted and decoded), and the database is about 5.6 MiB.
//!
//! ## A PostgreSQL backend
//!
//! sqlx speaks PostgreSQL with the same API, and this crate's queries were written for both:
//! `$1` placeholders, `INSERT ... ON CONFLICT DO NOTHING`, `UPDATE ... RETURNING`, standard
//! `ORDER BY ... LIMIT`. A `paas-postgres` crate for platforms that run several control-plane
//! nodes would
//!
//! * take a `sqlx::PgPool` (many connections; no single-writer pool is needed);
//! * keep the same tables with PostgreSQL DDL (`BIGINT` for versions and times, `BYTEA` for
//!   sealed config, `JSONB` for builds and formations, no `WITHOUT ROWID`) as its own numbered
//!   migrations in the same `schema_migrations` scheme, applied under
//!   `pg_advisory_xact_lock` so that two nodes starting together do not both migrate;
//! * reuse the DML of this crate verbatim. `BEGIN IMMEDIATE` becomes a plain `BEGIN`: the
//!   version counter's `UPDATE apps ... RETURNING last_version` takes the app row's lock, which
//!   serializes concurrent appends to one app across every node while appends to different
//!   apps proceed in parallel (READ COMMITTED suffices; `add_domain` would rely on the
//!   `domains` primary key and map a unique violation to `Conflict`);
//! * get durability from PostgreSQL's own WAL (`synchronous_commit = on`, plus a synchronous
//!   standby for node loss), and keep the sealing of config values, with the key file or a KMS
//!   shared by the nodes.
//!
//! The same conformance suite (`paas_core::testkit`) would then check it.

mod error;
mod options;
mod schema;
mod seal;
mod store;

pub use options::{SqliteStoreOptions, SyncMode};
pub use schema::SCHEMA_VERSION;
pub use store::SqliteReleaseStore;
