//! [`SqliteStoreOptions`]: where the database and its key live, and how hard it syncs.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How SQLite makes a commit durable (`PRAGMA synchronous`, in WAL mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncMode {
    /// `synchronous = FULL`: every commit fsyncs the write-ahead log before it returns. An
    /// acknowledged write survives a crash of the process *and* a power loss or kernel panic.
    /// The default, and what the platform needs.
    #[default]
    Full,
    /// `synchronous = NORMAL`: the log is fsynced only at checkpoints. An acknowledged write
    /// survives a crash of the process (kill -9), and the database is never corrupted, but the
    /// last commits before a power loss may be rolled back. Much faster; for tests, benchmarks
    /// and fixtures, not for a platform's records.
    Normal,
}

impl SyncMode {
    pub(crate) fn pragma(self) -> sqlx::sqlite::SqliteSynchronous {
        match self {
            SyncMode::Full => sqlx::sqlite::SqliteSynchronous::Full,
            SyncMode::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
        }
    }
}

/// How to open a [`SqliteReleaseStore`](crate::SqliteReleaseStore).
///
/// ```
/// use paas_sqlite::{SqliteStoreOptions, SyncMode};
/// let opts = SqliteStoreOptions::new("/var/lib/paas/records.db")
///     .key_file("/run/secrets/paas-records.key")
///     .sync_mode(SyncMode::Full);
/// assert_eq!(opts.key_path().to_str(), Some("/run/secrets/paas-records.key"));
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStoreOptions {
    pub(crate) path: PathBuf,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) sync: SyncMode,
    pub(crate) busy_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) read_connections: u32,
    pub(crate) create_if_missing: bool,
}

impl SqliteStoreOptions {
    /// Options for the database file at `path`, with the defaults: key file `<path>.key`,
    /// [`SyncMode::Full`], a 5 s busy timeout, 4 read connections, created if missing.
    pub fn new(path: impl AsRef<Path>) -> Self {
        SqliteStoreOptions {
            path: path.as_ref().to_path_buf(),
            key_file: None,
            sync: SyncMode::Full,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(60),
            read_connections: 4,
            create_if_missing: true,
        }
    }

    /// Where the key that seals config values is kept (default: the database path plus
    /// `.key`). Keeping it on another volume (a secrets mount) means a copy of the database
    /// volume or its backups does not carry the key.
    pub fn key_file(mut self, path: impl AsRef<Path>) -> Self {
        self.key_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// The durability of a commit (default [`SyncMode::Full`]).
    pub fn sync_mode(mut self, mode: SyncMode) -> Self {
        self.sync = mode;
        self
    }

    /// How long a write waits for another process holding the database's write lock before
    /// failing with `Unavailable` (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long an operation waits for a free connection of this store before failing with
    /// `Timeout` (default 60 s). Writes of one store queue for its single write connection.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How many connections serve reads concurrently with the writer (default 4, at least 1).
    pub fn read_connections(mut self, n: u32) -> Self {
        self.read_connections = n.max(1);
        self
    }

    /// Whether a missing database file is created (default `true`). With `false`, opening a
    /// missing file is `NotFound`.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key file that will be used.
    pub fn key_path(&self) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| {
            let mut name = self.path.as_os_str().to_os_string();
            name.push(".key");
            PathBuf::from(name)
        })
    }
}
