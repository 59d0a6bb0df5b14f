//! The paas-core conformance suites against the real engine (skipped without an engine unless
//! `PAAS_REQUIRE_DOCKER=1`).

mod support;

use std::time::Duration;

use paas_core::testkit;
use paas_core::{BuildId, BuildRequest, Builder};
use paas_docker::{DockerBuilder, DockerBuilderSettings, DockerScheduler, DockerSchedulerSettings};
use support::*;

fn builder(docker: &paas_docker::Docker) -> DockerBuilder {
    let mut s = DockerBuilderSettings::default();
    s.image_prefix = "paastest".into();
    DockerBuilder::new(docker.clone(), s).unwrap()
}

#[tokio::test]
async fn builder_conformance() {
    let Some(docker) = docker().await else { return };
    let app = testkit::unique_app("tkb");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let fixture = testkit::builder::BuilderFixture {
        app: app.clone(),
        web_command: "httpd -f -p $PORT -h /app".into(),
    };
    testkit::builder::run_all(&builder(&docker), &fixture).await;
}

#[tokio::test]
async fn scheduler_conformance() {
    let Some(docker) = docker().await else { return };
    let app = testkit::unique_app("tks");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "Procfile",
        "web: httpd -f -p $PORT -h /app\nworker: sleep 1000\n",
    );
    write(src.path(), "index.html", "hello\n");
    let build = builder(&docker)
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("conformance").unwrap(),
            src.path(),
        ))
        .await
        .unwrap();
    let scheduler = DockerScheduler::new(
        docker.clone(),
        DockerSchedulerSettings::new(platform_id(&app)),
    )
    .await
    .unwrap();
    let fixture = testkit::scheduler::SchedulerFixture {
        build,
        health_timeout: Duration::from_secs(30),
    };
    testkit::scheduler::run_all(&scheduler, &fixture).await;
}
