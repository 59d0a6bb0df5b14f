//! Conformance suite for [`SourceStore`].

use crate::error::ErrorKind;
use crate::traits::{CommitFilesRequest, ExportRequest, SourceFile, SourceStore};

use super::{unique_app, TempDir};

fn file(path: &str, contents: &str, executable: bool) -> SourceFile {
    SourceFile {
        path: path.into(),
        contents: contents.as_bytes().to_vec(),
        executable,
    }
}

/// Runs every SourceStore contract.
pub async fn run_all(store: &dyn SourceStore) {
    create_and_delete(store).await;
    commit_resolve_export(store).await;
    history(store).await;
    bad_input_changes_nothing(store).await;
}

/// create_repo, AlreadyExists, repo_exists, idempotent delete, NotFound after delete.
pub async fn create_and_delete(store: &dyn SourceStore) {
    let app = unique_app("src-create");
    assert!(
        !store.repo_exists(&app).await.unwrap(),
        "new app must not have a repo"
    );
    store.create_repo(&app).await.expect("create_repo");
    assert!(
        store.repo_exists(&app).await.unwrap(),
        "repo_exists after create"
    );
    let e = store
        .create_repo(&app)
        .await
        .expect_err("second create_repo must fail");
    assert_eq!(
        e.kind(),
        ErrorKind::AlreadyExists,
        "second create_repo: {e}"
    );
    let e = store
        .resolve(&app, "main")
        .await
        .expect_err("empty repo has no main");
    assert_eq!(e.kind(), ErrorKind::NotFound, "resolve on empty repo: {e}");
    store.delete_repo(&app).await.expect("delete_repo");
    store
        .delete_repo(&app)
        .await
        .expect("delete_repo is idempotent");
    assert!(
        !store.repo_exists(&app).await.unwrap(),
        "repo gone after delete"
    );
    let e = store
        .resolve(&app, "main")
        .await
        .expect_err("resolve after delete");
    assert_eq!(e.kind(), ErrorKind::NotFound, "resolve after delete: {e}");
}

/// commit_files then resolve by branch, full ref and abbreviated id; export writes the tree.
pub async fn commit_resolve_export(store: &dyn SourceStore) {
    let app = unique_app("src-export");
    store.create_repo(&app).await.unwrap();
    let files = vec![
        file("Procfile", "web: ./run.sh\n", false),
        file("run.sh", "#!/bin/sh\necho hi\n", true),
        file("public/deep/index.html", "<h1>hello</h1>\n", false),
    ];
    let id = store
        .commit_files(CommitFilesRequest::new(app.clone(), "main", files))
        .await
        .expect("commit_files");
    assert_eq!(
        store.resolve(&app, "main").await.unwrap(),
        id,
        "resolve main"
    );
    assert_eq!(
        store.resolve(&app, "refs/heads/main").await.unwrap(),
        id,
        "resolve refs/heads/main"
    );
    assert_eq!(
        store.resolve(&app, id.as_str()).await.unwrap(),
        id,
        "resolve full id"
    );
    assert_eq!(
        store.resolve(&app, &id.as_str()[..12]).await.unwrap(),
        id,
        "resolve abbreviated id"
    );
    let e = store
        .resolve(&app, "nope")
        .await
        .expect_err("unknown branch");
    assert_eq!(e.kind(), ErrorKind::NotFound, "unknown branch: {e}");

    let dir = TempDir::new();
    store
        .export(ExportRequest::new(app.clone(), id.clone(), dir.path()))
        .await
        .expect("export");
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
    assert_eq!(read("Procfile"), "web: ./run.sh\n");
    assert_eq!(read("public/deep/index.html"), "<h1>hello</h1>\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert!(
            mode & 0o100 != 0,
            "executable bit kept on export (mode {mode:o})"
        );
        let mode = std::fs::metadata(dir.path().join("Procfile"))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 == 0, "non-executable stays so (mode {mode:o})");
    }
    assert!(!dir.path().join(".git").exists(), "export contains no .git");
    let missing = crate::model::CommitId::new("0123456789abcdef0123456789abcdef01234567").unwrap();
    let dir2 = TempDir::new();
    let e = store
        .export(ExportRequest::new(app.clone(), missing, dir2.path()))
        .await
        .expect_err("export of unknown commit");
    assert_eq!(e.kind(), ErrorKind::NotFound, "export unknown commit: {e}");
    store.delete_repo(&app).await.unwrap();
}

/// recent_commits lists newest first with parents linked.
pub async fn history(store: &dyn SourceStore) {
    let app = unique_app("src-history");
    store.create_repo(&app).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut req =
            CommitFilesRequest::new(app.clone(), "main", vec![file("n", &i.to_string(), false)]);
        req.message = format!("commit {i}\n\nbody");
        ids.push(store.commit_files(req).await.unwrap());
    }
    let log = store
        .recent_commits(&app, "main", 10)
        .await
        .expect("recent_commits");
    let got: Vec<_> = log.iter().map(|c| c.id.clone()).collect();
    let want: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(got, want, "recent_commits newest first");
    assert_eq!(
        log[0].summary, "commit 2",
        "summary is the first message line"
    );
    assert_eq!(
        store.recent_commits(&app, "main", 2).await.unwrap().len(),
        2,
        "limit honoured"
    );
    store.delete_repo(&app).await.unwrap();
}

/// Malformed refs and escaping paths are InvalidInput and change nothing.
pub async fn bad_input_changes_nothing(store: &dyn SourceStore) {
    let app = unique_app("src-bad");
    store.create_repo(&app).await.unwrap();
    let id = store
        .commit_files(CommitFilesRequest::new(
            app.clone(),
            "main",
            vec![file("a", "1", false)],
        ))
        .await
        .unwrap();
    for bad in ["..", "a..b", "-x", "a b", "x\u{7}", "refs/heads/../x", ""] {
        let e = store
            .resolve(&app, bad)
            .await
            .expect_err("bad ref must fail");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "resolve({bad:?}): {e}");
    }
    for bad in ["../evil", "/abs", "a/../../b", ".git/config", "a//b"] {
        let e = store
            .commit_files(CommitFilesRequest::new(
                app.clone(),
                "main",
                vec![file(bad, "x", false)],
            ))
            .await
            .expect_err("escaping path must fail");
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidInput,
            "commit_files({bad:?}): {e}"
        );
    }
    let e = store
        .commit_files(CommitFilesRequest::new(
            app.clone(),
            "-bad",
            vec![file("a", "1", false)],
        ))
        .await
        .expect_err("bad branch must fail");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "bad branch: {e}");
    assert_eq!(
        store.resolve(&app, "main").await.unwrap(),
        id,
        "main unchanged by rejected input"
    );
    let other = unique_app("src-none");
    let e = store
        .commit_files(CommitFilesRequest::new(
            other.clone(),
            "main",
            vec![file("a", "1", false)],
        ))
        .await
        .expect_err("unknown app");
    assert_eq!(e.kind(), ErrorKind::NotFound, "commit to unknown app: {e}");
    store.delete_repo(&app).await.unwrap();
}
