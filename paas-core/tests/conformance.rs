//! The in-memory backends run every conformance suite, directly and through `Arc<dyn _>`.

use std::sync::Arc;
use std::time::Duration;

use paas_core::memory::*;
use paas_core::testkit::{self, builder::BuilderFixture, scheduler::SchedulerFixture};
use paas_core::*;

#[tokio::test]
async fn memory_source_store() {
    testkit::source_store::run_all(&MemorySourceStore::new()).await;
    let dynamic: Arc<dyn SourceStore> = Arc::new(MemorySourceStore::new());
    testkit::source_store::run_all(dynamic.as_ref()).await;
}

#[tokio::test]
async fn memory_release_store() {
    testkit::release_store::run_all(&MemoryReleaseStore::new()).await;
    testkit::release_store::run_all_arc(Arc::new(MemoryReleaseStore::new())).await;
}

#[tokio::test]
async fn memory_router() {
    testkit::router::run_all(&MemoryRouter::new()).await;
    let dynamic: Arc<dyn Router> = Arc::new(MemoryRouter::new());
    testkit::router::run_all(dynamic.as_ref()).await;
}

#[tokio::test]
async fn memory_log_sink() {
    testkit::log_sink::run_all(&MemoryLogSink::new()).await;
    let dir = testkit::TempDir::new();
    let dynamic: Arc<dyn LogSink> = Arc::new(MemoryLogSink::new().with_dir(dir.path()).unwrap());
    testkit::log_sink::run_all(dynamic.as_ref()).await;
}

#[tokio::test]
async fn memory_builder() {
    let fixture = BuilderFixture {
        app: testkit::unique_app("mb"),
        web_command: "./server".into(),
    };
    testkit::builder::run_all(&MemoryBuilder::new(), &fixture).await;
    let dynamic: Arc<dyn Builder> = Arc::new(MemoryBuilder::new());
    testkit::builder::run_all(dynamic.as_ref(), &fixture).await;
}

#[tokio::test]
async fn memory_scheduler() {
    let builder = MemoryBuilder::new();
    let dir = testkit::TempDir::new();
    std::fs::write(
        dir.path().join("Procfile"),
        "web: ./server\nworker: ./work\n",
    )
    .unwrap();
    let app = testkit::unique_app("ms");
    let build = builder
        .build(BuildRequest::new(app, BuildId::generate(), dir.path()))
        .await
        .unwrap();
    let fixture = SchedulerFixture {
        build,
        health_timeout: Duration::from_secs(5),
    };
    testkit::scheduler::run_all(&MemoryScheduler::new(), &fixture).await;
    let dynamic: Arc<dyn Scheduler> = Arc::new(MemoryScheduler::new());
    testkit::scheduler::run_all(dynamic.as_ref(), &fixture).await;
}

#[tokio::test]
async fn memory_log_sink_with_dir_survives_a_restart() {
    let dir = testkit::TempDir::new();
    let app = testkit::unique_app("persist");
    {
        let sink = MemoryLogSink::with_capacity(3)
            .with_dir(dir.path())
            .unwrap();
        for i in 0..5 {
            sink.append(LogLine::new(
                app.clone(),
                LogSource::Router,
                format!("l{i}"),
            ))
            .await
            .unwrap();
        }
    }
    let sink = MemoryLogSink::with_capacity(3)
        .with_dir(dir.path())
        .unwrap();
    let texts: Vec<String> = sink
        .tail(&app, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(
        texts,
        ["l2", "l3", "l4"],
        "a new sink starts from the file's last lines"
    );
}
