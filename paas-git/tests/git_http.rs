//! The git smart-HTTP service driven by the real `git` binary on a loopback port.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use paas_core::{Error, ErrorKind, SourceStore};
use paas_git::{push_hook_fn, GitHttpSettings, PushEvent, PushHook};

type Events = Arc<Mutex<Vec<PushEvent>>>;

/// A hook that records events, prints two progress lines and succeeds or fails.
fn recording_hook(fail: bool) -> (Arc<dyn PushHook>, Events) {
    let events: Events = Arc::default();
    let seen = events.clone();
    let hook = push_hook_fn(move |event: PushEvent, progress| {
        let seen = seen.clone();
        async move {
            progress.line(format!("-----> Building {} ({})", event.app, event.branch));
            progress.line("-----> Launching");
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(event);
                seen.len()
            };
            if fail {
                Err(Error::deploy_failed("release phase exited with status 1"))
            } else {
                Ok(format!("Released v{n}"))
            }
        }
    });
    (hook, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_incremental_force_delete_clone_fetch() {
    let (hook, events) = recording_hook(false);
    let server = Server::start(Some(hook)).await;
    let app = server.create_app("demo").await;
    let url = server.url("demo");
    let work = server.workdir("work");

    // First push.
    let c1 = init_repo(
        &work,
        &[("Procfile", "web: ./run\n"), ("src/a.txt", "one\n")],
    );
    let out = git_async(&work, &["push", &url, "main"]).await;
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("remote: -----> Building demo (main)"), "{err}");
    assert!(err.contains("remote: Released v1"), "{err}");
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c1
    );
    {
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].commit.as_str(), c1);
        assert_eq!(events[0].previous, None);
    }

    // Incremental (thin-pack) push.
    let c2 = commit(&work, &[("src/b.txt", "two\n")], "second");
    let out = git_async(&work, &["push", &url, "main"]).await;
    ok(&out);
    assert!(
        stderr(&out).contains("remote: Released v2"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c2
    );
    assert_eq!(
        events.lock().unwrap()[1]
            .previous
            .as_ref()
            .map(|c| c.as_str().to_string()),
        Some(c1.clone())
    );

    // Clone, then fetch a later push.
    let clone_parent = server.workdir("clones");
    ok(&git_async(&clone_parent, &["clone", "-q", &url, "copy"]).await);
    let copy = clone_parent.join("copy");
    assert_eq!(ok(&git(&copy, &["rev-parse", "HEAD"])), c2);
    assert_eq!(
        std::fs::read_to_string(copy.join("src/b.txt")).unwrap(),
        "two\n"
    );
    let c3 = commit(&work, &[("src/c.txt", "three\n")], "third");
    ok(&git_async(&work, &["push", &url, "main"]).await);
    ok(&git_async(&copy, &["fetch", "-q", "origin"]).await);
    assert_eq!(ok(&git(&copy, &["rev-parse", "origin/main"])), c3);
    // Protocol v0 fetch too (the service speaks both).
    ok(&git_async(
        &copy,
        &[
            "-c",
            "protocol.version=0",
            "pull",
            "-q",
            "--ff-only",
            "origin",
            "main",
        ],
    )
    .await);
    assert_eq!(ok(&git(&copy, &["rev-parse", "HEAD"])), c3);

    // Force push: rewrite history.
    ok(&git(&work, &["reset", "-q", "--hard", &c1]));
    let c4 = commit(&work, &[("src/d.txt", "four\n")], "rewritten");
    let out = git_async(&work, &["push", &url, "main"]).await;
    assert!(
        !out.status.success(),
        "a non-fast-forward push must need --force"
    );
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c3
    );
    ok(&git_async(&work, &["push", "--force", &url, "main"]).await);
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c4
    );

    // A non-deploy branch: stored, no deploy; then deleted.
    ok(&git(&work, &["checkout", "-q", "-b", "feature"]));
    let c5 = commit(&work, &[("f.txt", "f\n")], "feature");
    let before = events.lock().unwrap().len();
    let out = git_async(&work, &["push", &url, "feature"]).await;
    ok(&out);
    assert!(!stderr(&out).contains("Released"), "{}", stderr(&out));
    assert_eq!(events.lock().unwrap().len(), before);
    assert_eq!(
        server
            .store
            .resolve(&app, "feature")
            .await
            .unwrap()
            .as_str(),
        c5
    );
    // A new branch at an existing commit: the client sends an empty pack.
    ok(&git_async(&work, &["push", &url, "feature:refs/heads/same"]).await);
    assert_eq!(
        server.store.resolve(&app, "same").await.unwrap().as_str(),
        c5
    );
    ok(&git_async(&work, &["push", &url, ":feature", ":same"]).await);
    let e = server.store.resolve(&app, "feature").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);

    // The repository is sound.
    ok(&git(
        &server.store.repo_path(&app),
        &["fsck", "--no-progress"],
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_token_gets_401() {
    let server = Server::start(None).await;
    server.create_app("demo").await;
    let work = server.workdir("work");
    init_repo(&work, &[("a", "a\n")]);
    let out = git_async(
        &work,
        &["push", &server.url_with_token("demo", "wrong"), "main"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Authentication failed"),
        "{}",
        stderr(&out)
    );
    let out = git_async(
        &work,
        &["ls-remote", &server.url_with_token("demo", "wrong")],
    )
    .await;
    assert!(!out.status.success());

    for auth in [None, Some(auth_header("wrong"))] {
        let mut req = http::Request::get("/demo.git/info/refs?service=git-upload-pack");
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let (status, headers, _) =
            request(server.addr, req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], "Basic realm=\"paas\"");
    }
    let req = http::Request::get("/demo.git/info/refs?service=git-upload-pack")
        .header("authorization", auth_header(TOKEN))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = request(server.addr, req).await;
    assert_eq!(status, 200);
    assert!(body.starts_with(b"001e# service=git-upload-pack\n0000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_refs_are_refused_with_a_reason() {
    let server = Server::start(None).await;
    let app = server.create_app("demo").await;
    let url = server.url("demo");
    let work = server.workdir("work");
    let c1 = init_repo(&work, &[("a", "a\n")]);
    ok(&git_async(&work, &["push", &url, "main"]).await);

    ok(&git(&work, &["tag", "v1"]));
    let out = git_async(&work, &["push", &url, "v1"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("only branches (refs/heads/*) may be pushed"),
        "{err}"
    );

    let out = git_async(&work, &["push", &url, "HEAD:refs/foo/bar"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("only branches"), "{}", stderr(&out));

    // A refused ref in a push refuses the whole push: main does not move either.
    let c2 = commit(&work, &[("b", "b\n")], "second");
    let out = git_async(&work, &["push", &url, "main", "HEAD:refs/tags/v2"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    eprintln!("push with a refused ref:\n{err}");
    assert!(
        err.contains("another ref in this push was refused"),
        "{err}"
    );
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c1
    );
    assert_ne!(c1, c2);
    let e = server
        .store
        .resolve(&app, "refs/tags/v1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_deploy_keeps_the_push_and_shows_the_error() {
    let (hook, events) = recording_hook(true);
    let server = Server::start(Some(hook)).await;
    let app = server.create_app("demo").await;
    let work = server.workdir("work");
    let c1 = init_repo(&work, &[("Procfile", "web: ./run\n")]);
    let out = git_async(&work, &["push", &server.url("demo"), "main"]).await;
    let err = stderr(&out);
    eprintln!("push with a failing deploy:\n{err}");
    assert!(
        !out.status.success(),
        "a failed deploy fails `git push`, like Heroku: {err}"
    );
    assert!(
        err.contains("[remote rejected] main -> main (deploy of")
            && err.contains("(the push was stored)"),
        "the ref line says why: {err}"
    );
    assert!(err.contains("remote: -----> Building demo (main)"), "{err}");
    assert!(err.contains("remote: -----> Launching"), "{err}");
    assert!(
        err.contains("remote: deploy of") && err.contains("release phase exited with status 1"),
        "{err}"
    );
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c1,
        "the push itself was stored"
    );
    assert_eq!(events.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_app_and_odd_paths_are_404() {
    let server = Server::start(None).await;
    server.create_app("demo").await;
    let parent = server.workdir("clones");
    let out = git_async(&parent, &["clone", "-q", &server.url("nope"), "x"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    for path in [
        "/nope.git/info/refs?service=git-upload-pack",
        "/demo.git/../demo.git/info/refs?service=git-upload-pack",
        "/%2e%2e/demo.git/info/refs?service=git-upload-pack",
        "/demo%2egit/info/refs?service=git-upload-pack",
        "//etc/passwd",
        "/etc/passwd.git/info/refs?service=git-upload-pack",
        "/demo.git/HEAD",
        "/demo.git/objects/info/packs",
    ] {
        let req = http::Request::get(path)
            .header("authorization", auth_header(TOKEN))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, _, _) = request(server.addr, req).await;
        assert_eq!(status, 404, "{path}");
    }
}

const ZERO: &str = "0000000000000000000000000000000000000000";

fn pkt(s: &str) -> String {
    format!("{:04x}{s}", s.len() + 4)
}

async fn post_receive(server: &Server, body: Vec<u8>) -> (http::StatusCode, Bytes) {
    let req = http::Request::post("/demo.git/git-receive-pack")
        .header("authorization", auth_header(TOKEN))
        .header("content-type", "application/x-git-receive-pack-request")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, _, body) = request(server.addr, req).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400_and_change_nothing() {
    let server = Server::start(None).await;
    let app = server.create_app("demo").await;
    let work = server.workdir("work");
    let c1 = init_repo(&work, &[("a", "a\n")]);
    ok(&git_async(&work, &["push", &server.url("demo"), "main"]).await);
    let c2 = commit(&work, &[("b", "b\n")], "second");

    // Garbage instead of pkt-lines.
    let (status, _) = post_receive(&server, b"hello world".to_vec()).await;
    assert_eq!(status, 400);
    // A command without a ref name.
    let (status, _) = post_receive(
        &server,
        format!("{}0000", pkt(&format!("{c1} {c2}\n"))).into_bytes(),
    )
    .await;
    assert_eq!(status, 400);

    // A real pack for c2, truncated.
    let pack = {
        let mut child = std::process::Command::new("git")
            .current_dir(&work)
            .args(["pack-objects", "--stdout", "--revs", "-q"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{c2}\n^{c1}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().stdout
    };
    assert!(pack.starts_with(b"PACK"));
    let head = format!(
        "{}0000",
        pkt(&format!(
            "{c1} {c2} refs/heads/main\0report-status side-band-64k\n"
        ))
    );
    let mut truncated = head.clone().into_bytes();
    truncated.extend_from_slice(&pack[..pack.len() - 7]);
    let (status, body) = post_receive(&server, truncated).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c1
    );
    let e = server.store.resolve(&app, &c2).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::NotFound,
        "no object of the truncated pack is stored"
    );

    // The whole pack works (sanity check of the request above).
    let mut whole = head.into_bytes();
    whole.extend_from_slice(&pack);
    let (status, body) = post_receive(&server, whole).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("ok refs/heads/main"));
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c2
    );

    // git's probe (`0000`) is answered with nothing.
    let (status, body) = post_receive(&server, b"0000".to_vec()).await;
    assert_eq!(status, 200);
    assert!(body.is_empty());

    // A stale old id: refused per ref with "fetch first".
    let body = format!(
        "{}0000",
        pkt(&format!("{c1} {ZERO} refs/heads/main\0report-status\n"))
    );
    let (status, body) = post_receive(&server, body.into_bytes()).await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("ng refs/heads/main fetch first"), "{text}");
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c2
    );

    // Malformed upload-pack request.
    let req = http::Request::post("/demo.git/git-upload-pack")
        .header("authorization", auth_header(TOKEN))
        .header("content-type", "application/x-git-upload-pack-request")
        .body(Full::new(Bytes::from_static(b"00zzwant")))
        .unwrap();
    let (status, _, _) = request(server.addr, req).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_and_gzip() {
    let mut settings = GitHttpSettings::default();
    settings.max_body_bytes = 64 * 1024;
    let server = Server::start_with(None, settings).await;
    let app = server.create_app("demo").await;
    let work = server.workdir("work");
    let c1 = init_repo(&work, &[("a", "a\n")]);
    ok(&git_async(&work, &["push", &server.url("demo"), "main"]).await);

    // A push larger than the limit is refused and changes nothing.
    let big: String = (0..200_000)
        .map(|i| format!("{:x}", (i * 7919) % 65521))
        .collect();
    commit(&work, &[("big.txt", big.as_str())], "big");
    let out = git_async(&work, &["push", &server.url("demo"), "main"]).await;
    assert!(!out.status.success());
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        c1
    );

    // A gzip-encoded upload-pack request (git gzips large ones).
    let request_body = format!(
        "{}{}0000{}",
        pkt(&format!("want {c1} side-band-64k\n")),
        "",
        pkt("done\n")
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, request_body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let req = http::Request::post("/demo.git/git-upload-pack")
        .header("authorization", auth_header(TOKEN))
        .header("content-type", "application/x-git-upload-pack-request")
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(gz)))
        .unwrap();
    let (status, _, body) = request(server.addr, req).await;
    assert_eq!(status, 200);
    assert!(body.windows(4).any(|w| w == b"PACK"), "a pack comes back");

    // A gzip bomb beyond the limit is 413.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![b'0'; 1024 * 1024]).unwrap();
    let gz = gz.finish().unwrap();
    let req = http::Request::post("/demo.git/git-upload-pack")
        .header("authorization", auth_header(TOKEN))
        .header("content-type", "application/x-git-upload-pack-request")
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(gz)))
        .unwrap();
    let (status, _, _) = request(server.addr, req).await;
    assert_eq!(status, 413);
}

/// VmHWM of this process in KiB (0 where /proc is absent).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_under_the_default_limits_costs_little_memory() {
    let server = Server::start_with(None, GitHttpSettings::default()).await;
    server.create_app("bombed").await;
    // About 600 KiB that inflate to 600 MiB: below the 512 MiB body limit compressed, far
    // above it decoded.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b'0'; 1024 * 1024];
    for _ in 0..600 {
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
    }
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 1024 * 1024, "{} bytes", gz.len());
    let before = peak_rss_kib();
    let req = http::Request::post("/bombed.git/git-upload-pack")
        .header("authorization", auth_header(TOKEN))
        .header("content-type", "application/x-git-upload-pack-request")
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(gz)))
        .unwrap();
    let (status, _, _) = request(server.addr, req).await;
    assert_eq!(status, 413);
    let grew = peak_rss_kib().saturating_sub(before);
    assert!(
        grew < 200 * 1024,
        "decoding the bomb raised peak memory by {grew} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_to_two_apps() {
    let server = Server::start(None).await;
    let a = server.create_app("app-a").await;
    let b = server.create_app("app-b").await;
    let wa = server.workdir("wa");
    let wb = server.workdir("wb");
    let ca = init_repo(&wa, &[("a", "a\n")]);
    let cb = init_repo(&wb, &[("b", "b\n")]);
    let (ua, ub) = (server.url("app-a"), server.url("app-b"));
    let (ra, rb) = tokio::join!(
        git_async(&wa, &["push", &ua, "main"]),
        git_async(&wb, &["push", &ub, "main"])
    );
    ok(&ra);
    ok(&rb);
    assert_eq!(server.store.resolve(&a, "main").await.unwrap().as_str(), ca);
    assert_eq!(server.store.resolve(&b, "main").await.unwrap().as_str(), cb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_pushes_on_one_ref() {
    let server = Server::start(None).await;
    let app = server.create_app("demo").await;
    let url = server.url("demo");
    let base = server.workdir("base");
    init_repo(&base, &[("a", "a\n")]);
    ok(&git_async(&base, &["push", &url, "main"]).await);

    let parent = server.workdir("clones");
    ok(&git_async(&parent, &["clone", "-q", &url, "one"]).await);
    ok(&git_async(&parent, &["clone", "-q", &url, "two"]).await);
    let (w1, w2) = (parent.join("one"), parent.join("two"));
    let c1 = commit(&w1, &[("one.txt", "1\n")], "one");
    let c2 = commit(&w2, &[("two.txt", "2\n")], "two");
    let (r1, r2) = tokio::join!(
        git_async(&w1, &["push", "origin", "main"]),
        git_async(&w2, &["push", "origin", "main"])
    );
    let winners = [r1.status.success(), r2.status.success()];
    assert_eq!(
        winners.iter().filter(|w| **w).count(),
        1,
        "exactly one push wins:\n{}\n{}",
        stderr(&r1),
        stderr(&r2)
    );
    let (winner, loser) = if winners[0] { (&c1, &r2) } else { (&c2, &r1) };
    eprintln!("loser's output:\n{}", stderr(loser));
    assert!(stderr(loser).contains("fetch first"), "{}", stderr(loser));
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        winner.as_str()
    );
    ok(&git(
        &server.store.repo_path(&app),
        &["fsck", "--no-progress"],
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_deploy_gets_keepalives_and_master_becomes_head() {
    let hook = push_hook_fn(|_event: PushEvent, _progress| async move {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        Ok("Released v1 after a quiet build".to_string())
    });
    let mut settings = GitHttpSettings::default();
    settings.keepalive = std::time::Duration::from_millis(100);
    let server = Server::start_with(Some(hook), settings).await;
    let app = server.create_app("quiet").await;
    let work = server.workdir("work");
    ok(&git(&work, &["init", "-q", "-b", "master"]));
    let c1 = commit(&work, &[("a", "a\n")], "on master");
    let out = git_async(&work, &["push", &server.url("quiet"), "master"]).await;
    ok(&out);
    assert!(
        stderr(&out).contains("remote: Released v1 after a quiet build"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.store.resolve(&app, "HEAD").await.unwrap().as_str(),
        c1
    );
    let parent = server.workdir("clones");
    ok(&git_async(&parent, &["clone", "-q", &server.url("quiet"), "copy"]).await);
    assert_eq!(
        ok(&git(
            &parent.join("copy"),
            &["rev-parse", "--abbrev-ref", "HEAD"]
        )),
        "master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_in_axum_under_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = paas_git::GitSourceStore::open(dir.path().join("repos")).unwrap();
    let app = paas_core::AppName::new("mounted").unwrap();
    store.create_repo(&app).await.unwrap();
    let service = paas_git::GitHttpService::new(
        store.clone(),
        std::sync::Arc::new(paas_core::StaticTokenAuthorizer::new(TOKEN)),
        GitHttpSettings::default(),
    );
    let router = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .nest_service("/git", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let c1 = init_repo(&work, &[("a", "a\n")]);
    let url = format!("http://x:{TOKEN}@{addr}/git/mounted.git");
    ok(&git_async(&work, &["push", &url, "main"]).await);
    assert_eq!(store.resolve(&app, "main").await.unwrap().as_str(), c1);
    ok(&git_async(dir.path(), &["clone", "-q", &url, "copy"]).await);
    assert_eq!(
        ok(&git(&dir.path().join("copy"), &["rev-parse", "HEAD"])),
        c1
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_larger_than_the_spool_threshold_is_stored_whole() {
    let server = Server::start(None).await;
    let app = server.create_app("bigpush").await;
    let work = server.workdir("work");
    init_repo(&work, &[("a", "a\n")]);
    // About 12 MiB that do not compress: the request goes to disk past 8 MiB.
    let mut state = 0x2545f4914f6cdd1du64;
    let noise: String = (0..12 * 1024 * 1024 / 16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("{state:016x}")
        })
        .collect();
    let head = commit(&work, &[("noise.txt", noise.as_str())], "noise");
    ok(&git_async(&work, &["push", &server.url("bigpush"), "main"]).await);
    assert_eq!(
        server.store.resolve(&app, "main").await.unwrap().as_str(),
        head
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_limit_streamed_push_is_refused_without_reading_it_all() {
    let mut settings = GitHttpSettings::default();
    settings.max_body_bytes = 1024 * 1024;
    let server = Server::start_with(None, settings).await;
    server.create_app("streamed").await;
    // No Content-Length: 64 MiB in 64 KiB frames, produced only as the server reads.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let frames = futures::StreamExt::map(futures::stream::iter(0..1024), move |_| {
        counter.fetch_add(64 * 1024, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'0'; 64 * 1024])))
    });
    let req = http::Request::post("/streamed.git/git-receive-pack")
        .header("authorization", auth_header(TOKEN))
        .header("content-type", "application/x-git-receive-pack-request")
        .body(http_body_util::StreamBody::new(frames))
        .unwrap();
    let (status, _, _) = request(server.addr, req).await;
    assert_eq!(status, 413);
    let read = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        read < 16 * 1024 * 1024,
        "the server read {read} bytes of a body over its 1 MiB limit"
    );
}
