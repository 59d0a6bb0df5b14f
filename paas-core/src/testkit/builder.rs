//! Conformance suite for [`Builder`].

use crate::error::ErrorKind;
use crate::model::{AppName, BuildId, ProcessType};
use crate::traits::{BuildRequest, Builder, OutputSender, PruneRequest};

use super::TempDir;

/// What a backend needs to build a Procfile-only source.
#[derive(Clone, Debug)]
pub struct BuilderFixture {
    /// The app to build for (the backend may need it to exist, e.g. for a cache).
    pub app: AppName,
    /// The `web` command of the Procfile to build (runnable on the backend's stack).
    pub web_command: String,
}

/// Runs every Builder contract.
pub async fn run_all(builder: &dyn Builder, fixture: &BuilderFixture) {
    builds_procfile_source(builder, fixture).await;
    invalid_procfile_is_rejected(builder, fixture).await;
    prune_is_idempotent(builder, fixture).await;
}

/// A source with a Procfile builds: the result carries the request's id and app, the Procfile's
/// process types, and output was streamed.
pub async fn builds_procfile_source(builder: &dyn Builder, f: &BuilderFixture) {
    let dir = TempDir::new();
    std::fs::write(
        dir.path().join("Procfile"),
        format!("web: {}\nworker: sleep 1000\n", f.web_command),
    )
    .unwrap();
    std::fs::write(dir.path().join("index.html"), "hello\n").unwrap();
    let (out, mut rx) = OutputSender::channel();
    let id = BuildId::generate();
    let build = builder
        .build(BuildRequest::new(f.app.clone(), id.clone(), dir.path()).with_output(out))
        .await
        .expect("build of a Procfile source");
    assert_eq!(build.id, id, "build carries the requested id");
    assert_eq!(build.app, f.app, "build carries the app");
    assert_eq!(
        build.procfile.command(&ProcessType::web()),
        Some(f.web_command.as_str()),
        "web command from the Procfile"
    );
    assert!(
        build
            .procfile
            .command(&ProcessType::new("worker").unwrap())
            .is_some(),
        "worker type from the Procfile"
    );
    assert!(!build.artifact.image.is_empty(), "an artifact is named");
    let mut lines = 0;
    while rx.try_recv().is_ok() {
        lines += 1;
    }
    assert!(lines > 0, "build output was streamed");
}

/// An invalid Procfile fails the build with an error that gives the line.
pub async fn invalid_procfile_is_rejected(builder: &dyn Builder, f: &BuilderFixture) {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("Procfile"), "web: a\nweb: b\n").unwrap();
    let e = builder
        .build(BuildRequest::new(
            f.app.clone(),
            BuildId::generate(),
            dir.path(),
        ))
        .await
        .expect_err("duplicate process types must fail");
    assert!(
        matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::BuildFailed),
        "invalid Procfile error kind: {e}"
    );
    assert!(
        e.to_string().contains("line 2"),
        "error names the line: {e}"
    );
}

/// prune keeping nothing succeeds twice.
pub async fn prune_is_idempotent(builder: &dyn Builder, f: &BuilderFixture) {
    builder
        .prune(PruneRequest::new(f.app.clone(), Vec::new()))
        .await
        .expect("prune");
    builder
        .prune(PruneRequest::new(f.app.clone(), Vec::new()))
        .await
        .expect("prune again");
}
