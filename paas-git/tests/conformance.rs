//! paas-core's SourceStore conformance suite against `GitSourceStore`.

use paas_git::GitSourceStore;

#[tokio::test]
async fn source_store_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = GitSourceStore::open(dir.path()).unwrap();
    paas_core::testkit::source_store::run_all(&store).await;
}
