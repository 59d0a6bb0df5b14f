//! paas-core's ReleaseStore conformance suite against SqliteReleaseStore, on a file (the real
//! configuration) and in memory.

use std::sync::Arc;

use paas_core::ReleaseStore;
use paas_sqlite::SqliteReleaseStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ReleaseStore> = Arc::new(
        SqliteReleaseStore::open(dir.path().join("records.db"))
            .await
            .unwrap(),
    );
    paas_core::testkit::release_store::run_all_arc(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_in_memory() {
    let store: Arc<dyn ReleaseStore> =
        Arc::new(SqliteReleaseStore::open_in_memory().await.unwrap());
    paas_core::testkit::release_store::run_all_arc(store).await;
}
