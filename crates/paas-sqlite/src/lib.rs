//! Durable ReleaseStore for the paas SDK on SQLite (sqlx), the default store of a paas platform.
