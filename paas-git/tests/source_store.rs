//! `GitSourceStore` beyond the conformance suite: exports of what `git` itself made (symlinks,
//! modes), racing creates, odd input.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use paas_core::{
    AppName, CommitFilesRequest, CommitId, ErrorKind, ExportRequest, SourceFile, SourceStore,
};
use paas_git::GitSourceStore;

fn file(path: &str, contents: &str, executable: bool) -> SourceFile {
    SourceFile {
        path: path.into(),
        contents: contents.as_bytes().to_vec(),
        executable,
    }
}

#[tokio::test]
async fn export_of_a_pushed_tree_keeps_modes_and_safe_symlinks_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = GitSourceStore::open(dir.path().join("repos")).unwrap();
    let app = AppName::new("links").unwrap();
    store.create_repo(&app).await.unwrap();

    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(work.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(work.join("sub/data.txt"), "data\n").unwrap();
    std::os::unix::fs::symlink("sub/data.txt", work.join("inside")).unwrap();
    std::os::unix::fs::symlink("../data.txt", work.join("sub/up-inside")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", work.join("absolute")).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", work.join("sub/escape")).unwrap();
    std::os::unix::fs::symlink("sub/../..", work.join("sneaky")).unwrap();
    ok(&git(&work, &["init", "-q", "-b", "main"]));
    ok(&git(&work, &["add", "-A"]));
    ok(&git(&work, &["commit", "-q", "-m", "links"]));
    let repo = store.repo_path(&app);
    ok(&git(&work, &["push", "-q", repo.to_str().unwrap(), "main"]));

    let id = store.resolve(&app, "main").await.unwrap();
    assert_eq!(store.resolve(&app, "HEAD").await.unwrap(), id);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    store
        .export(ExportRequest::new(app.clone(), id, &out))
        .await
        .unwrap();
    let mode = std::fs::metadata(out.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        std::fs::read_to_string(out.join("inside")).unwrap(),
        "data\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("sub/up-inside"))
            .unwrap()
            .to_str(),
        Some("../data.txt")
    );
    for escaping in ["absolute", "sub/escape", "sneaky"] {
        assert!(
            std::fs::symlink_metadata(out.join(escaping)).is_err(),
            "{escaping} must not be exported"
        );
    }
}

#[tokio::test]
async fn racing_creates_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = GitSourceStore::open(dir.path()).unwrap();
    let app = AppName::new("race").unwrap();
    let (a, b) = tokio::join!(store.create_repo(&app), store.create_repo(&app));
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    let e = a.err().or(b.err()).unwrap();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    // Nothing but the repository is left in the root.
    let names: Vec<_> = std::fs::read_dir(store.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["race.git".to_string()]);
}

#[tokio::test]
async fn commit_files_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = GitSourceStore::open(dir.path()).unwrap();
    let app = AppName::new("files").unwrap();
    store.create_repo(&app).await.unwrap();
    let dup = store
        .commit_files(CommitFilesRequest::new(
            app.clone(),
            "main",
            vec![file("a", "1", false), file("a", "2", false)],
        ))
        .await
        .unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::InvalidInput);
    let both = store
        .commit_files(CommitFilesRequest::new(
            app.clone(),
            "main",
            vec![file("a", "1", false), file("a/b", "2", false)],
        ))
        .await
        .unwrap_err();
    assert_eq!(both.kind(), ErrorKind::InvalidInput);
    for bad in ["refs/heads/x", "a..b", "HEAD", "x.lock", "a b"] {
        let e = store
            .commit_files(CommitFilesRequest::new(app.clone(), bad, vec![]))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}: {e}");
    }
    assert_eq!(
        store.resolve(&app, "main").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A branch other than main, and an export into a non-directory.
    let id = store
        .commit_files(CommitFilesRequest::new(
            app.clone(),
            "feature/x",
            vec![file("a", "1", false)],
        ))
        .await
        .unwrap();
    assert_eq!(store.resolve(&app, "feature/x").await.unwrap(), id);
    let not_dir = dir.path().join("plain-file");
    std::fs::write(&not_dir, "x").unwrap();
    let e = store
        .export(ExportRequest::new(app.clone(), id.clone(), &not_dir))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // Abbreviated ids down to 4 digits; unknown ones are NotFound.
    assert_eq!(store.resolve(&app, &id.as_str()[..7]).await.unwrap(), id);
    let unknown = CommitId::new("ffffffffffffffffffffffffffffffffffffffff").unwrap();
    assert_eq!(
        store
            .resolve(&app, unknown.as_str())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // Unknown app.
    let other = AppName::new("other").unwrap();
    assert_eq!(
        store.resolve(&other, "main").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store
            .recent_commits(&other, "main", 5)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}
