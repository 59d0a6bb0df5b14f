//! The API over the in-memory backends, through real sockets, driven by `Client` and by raw
//! requests: every route, authentication, error kinds, streamed operations, pagination, the
//! OpenAPI description, mounting under a prefix with the embedder's own authorizer, and a
//! client that survives a newer server.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures::StreamExt;
use paas_api::wire::{ConfigPatch, DeployBody, LogsQuery, PageRequest};
use paas_api::{ApiServer, ApiSettings, Client, Update};
use paas_core::memory::*;
use paas_core::{
    Action, AppName, AuthRequest, Authorizer, CommitFilesRequest, Domain, ErrorKind, Formation,
    OutputStream, Platform, Principal, ProcessType, SourceFile, StaticTokenAuthorizer, Version,
};
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";

fn platform() -> Platform {
    Platform::composer()
        .sources(MemorySourceStore::new())
        .builder(MemoryBuilder::new())
        .store(MemoryReleaseStore::new())
        .scheduler(MemoryScheduler::new())
        .router(MemoryRouter::new())
        .log_sink(MemoryLogSink::new())
        .health_timeout(Duration::from_secs(2))
        .drain_timeout(Duration::from_millis(200))
        .stop_grace(Duration::from_millis(200))
        .compose()
        .unwrap()
}

/// Serves `router` on a loopback port; returns its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn api() -> (Platform, Client) {
    let platform = platform();
    let router = ApiServer::new(platform.clone(), StaticTokenAuthorizer::new(TOKEN))
        .settings(ApiSettings::default().with_router_url("http://127.0.0.1:8080"))
        .router();
    let url = serve(router).await;
    (platform, Client::new(&url).unwrap().with_token(TOKEN))
}

fn app(name: &str) -> AppName {
    AppName::new(name).unwrap()
}

async fn push(platform: &Platform, app: &AppName, procfile: &str) {
    let files = vec![SourceFile {
        path: "Procfile".into(),
        contents: procfile.as_bytes().to_vec(),
        executable: false,
    }];
    platform
        .sources()
        .commit_files(CommitFilesRequest::new(app.clone(), "main", files))
        .await
        .unwrap();
}

#[tokio::test]
async fn every_route_through_the_client() {
    let (platform, client) = api().await;
    let info = client.info().await.unwrap();
    assert_eq!(info.base_domain, "localhost");

    let a = app("hello");
    let created = client.create_app(&a).await.unwrap();
    assert_eq!(created.name, a);
    push(&platform, &a, "web: ./server\nworker: ./work\n").await;

    // A streamed deploy: progress lines, then the release.
    let op = client
        .deploy(
            &a,
            &DeployBody {
                git_ref: Some("main".into()),
                image: None,
            },
        )
        .await
        .unwrap();
    let mut progress = Vec::new();
    let release = op
        .finish(|u| {
            if let Update::Progress(l) = u {
                progress.push(l)
            }
        })
        .await
        .unwrap();
    assert_eq!(release.version, Version(1));
    assert!(
        progress.iter().any(|l| l.contains("memory builder")),
        "{progress:?}"
    );

    let info = client.app(&a).await.unwrap();
    assert_eq!(info.current.as_ref().map(|r| r.version), Some(Version(1)));
    assert_eq!(
        info.web_urls,
        vec!["http://hello.localhost:8080".to_string()]
    );
    assert!(info.git_url.ends_with("/hello.git"), "{}", info.git_url);

    // Config: a new release; values come back, never in the release.
    let mut patch = ConfigPatch::default();
    patch.set.insert("GREETING".into(), "s3cret-value".into());
    let changed = client
        .set_config(&a, &patch)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    let v2 = changed.release.expect("a release");
    assert_eq!(v2.version, Version(2));
    assert_eq!(v2.config_keys[0].as_str(), "GREETING");
    assert!(!format!("{v2:?}").contains("s3cret"));
    assert_eq!(client.config(&a).await.unwrap()["GREETING"], "s3cret-value");

    // Releases, one and all.
    let r1 = client.release(&a, Version(1)).await.unwrap();
    assert_eq!(r1.version, Version(1));
    let page = client.releases(&a, &PageRequest::default()).await.unwrap();
    let versions: Vec<u64> = page.items.iter().map(|r| r.version.0).collect();
    assert_eq!(versions, vec![2, 1]);
    assert_eq!(page.next_cursor, None);

    // Rollback makes v3 with v1's config.
    let v3 = client
        .rollback(&a, Some(Version(1)))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(v3.version, Version(3));
    assert!(v3.config_keys.is_empty());

    // Formation and processes.
    let mut changes = Formation::new();
    changes.set(ProcessType::web(), 2).unwrap();
    let f = client
        .scale(&a, &changes)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(f.get(&ProcessType::web()), 2);
    assert_eq!(
        client.formation(&a).await.unwrap().get(&ProcessType::web()),
        2
    );
    let ps = client.ps(&a).await.unwrap();
    assert_eq!(
        ps.iter()
            .filter(|i| i.process_type == ProcessType::web())
            .count(),
        2,
        "{ps:?}"
    );
    client
        .restart(&a, Some(&ProcessType::web()))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();

    // A one-off run: output, then the exit code; its output reaches the log.
    let mut output = String::new();
    let code = client
        .run(
            &a,
            vec!["sh".into(), "-c".into(), "echo hi there; exit 3".into()],
        )
        .await
        .unwrap()
        .finish(|u| {
            if let Update::Output { stream, text } = u {
                assert_eq!(stream, OutputStream::Stdout);
                output.push_str(&text);
            }
        })
        .await
        .unwrap();
    assert_eq!((code, output.as_str()), (3, "hi there\n"));

    let lines: Vec<_> = client
        .logs(
            &a,
            &LogsQuery {
                lines: Some(500),
                follow: None,
            },
        )
        .await
        .unwrap()
        .collect()
        .await;
    let lines: Vec<String> = lines.into_iter().map(|l| l.unwrap().to_string()).collect();
    assert!(
        lines.iter().any(|l| l.contains("app[run.0]: hi there")),
        "{lines:#?}"
    );

    // Domains.
    let d = Domain::new("www.example.com").unwrap();
    assert_eq!(client.add_domain(&a, &d).await.unwrap(), d);
    assert_eq!(client.domains(&a).await.unwrap(), vec![d.clone()]);
    let wild = Domain::new("*.hello.example.org").unwrap();
    client.add_domain(&a, &wild).await.unwrap();
    client.remove_domain(&a, &wild).await.unwrap();
    client.remove_domain(&a, &d).await.unwrap();
    assert!(client.domains(&a).await.unwrap().is_empty());

    client.destroy_app(&a).await.unwrap();
    let e = client.app(&a).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn lists_paginate() {
    let (platform, client) = api().await;
    for name in ["e1", "a1", "c1", "b1", "d1"] {
        client.create_app(&app(name)).await.unwrap();
    }
    let mut names = Vec::new();
    let mut req = PageRequest::first(2);
    let mut pages = 0;
    loop {
        let page = client.apps(&req).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        names.extend(page.items.iter().map(|a| a.name.to_string()));
        match page.next_cursor {
            Some(c) => req = PageRequest::first(2).after(c),
            None => break,
        }
    }
    assert_eq!(names, ["a1", "b1", "c1", "d1", "e1"]);
    assert_eq!(pages, 3);
    assert_eq!(client.all_apps().await.unwrap().len(), 5);

    // Releases, newest first, two at a time.
    let a = app("a1");
    push(&platform, &a, "web: ./s\n").await;
    for i in 0..5 {
        let mut patch = ConfigPatch::default();
        patch.set.insert("N".into(), i.to_string());
        client
            .set_config(&a, &patch)
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
    }
    // (no build yet: config changes make no release) -> deploy, then three more.
    client
        .deploy(
            &a,
            &DeployBody {
                git_ref: Some("main".into()),
                image: None,
            },
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    for i in 0..4 {
        let mut patch = ConfigPatch::default();
        patch.set.insert("M".into(), i.to_string());
        client
            .set_config(&a, &patch)
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
    }
    let mut versions = Vec::new();
    let mut req = PageRequest::first(2);
    loop {
        let page = client.releases(&a, &req).await.unwrap();
        versions.extend(page.items.iter().map(|r| r.version.0));
        match page.next_cursor {
            Some(c) => req = PageRequest::first(2).after(c),
            None => break,
        }
    }
    assert_eq!(versions, [5, 4, 3, 2, 1]);

    // A bad cursor or limit is a JSON 400, not plain text.
    let e = client
        .releases(&a, &PageRequest::first(2).after("nope"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let raw = reqwest::Client::new()
        .get(format!("{}/v1/apps?limit=-3", client.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["kind"], "invalid_input", "{body}");
}

#[tokio::test]
async fn error_kinds_come_back_with_their_status() {
    let (platform, client) = api().await;
    let a = app("kinds");
    client.create_app(&a).await.unwrap();
    // 409
    let e = client.create_app(&a).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // 404
    let e = client.config(&app("missing")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // 400: a bad key changes nothing.
    let mut patch = ConfigPatch::default();
    patch.set.insert("1BAD".into(), "x".into());
    let e = client.set_config(&a, &patch).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("config key"), "{e}");
    assert!(client.config(&a).await.unwrap().is_empty());
    // 400: a value over 32 KiB, or a config over 64 KiB in all, changes nothing.
    let mut patch = ConfigPatch::default();
    patch.set.insert("BIG".into(), "x".repeat(33 * 1024));
    let e = client.set_config(&a, &patch).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("limit"), "{e}");
    for i in 0..3 {
        let mut patch = ConfigPatch::default();
        patch.set.insert(format!("PART{i}"), "y".repeat(30 * 1024));
        let op = client.set_config(&a, &patch).await.unwrap();
        let r = op.wait().await;
        if i < 2 {
            r.unwrap();
        } else {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.message().contains("for all of an app's vars"), "{e}");
        }
    }
    assert_eq!(client.config(&a).await.unwrap().len(), 2);
    // 422 inside a stream: a build without a Procfile fails, as an error event.
    let files = vec![SourceFile {
        path: "README".into(),
        contents: b"no procfile".to_vec(),
        executable: false,
    }];
    platform
        .sources()
        .commit_files(CommitFilesRequest::new(a.clone(), "main", files))
        .await
        .unwrap();
    let op = client
        .deploy(
            &a,
            &DeployBody {
                git_ref: Some("main".into()),
                image: None,
            },
        )
        .await
        .unwrap();
    let e = op.wait().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BuildFailed, "{e}");
    // 422 as a status: raw.
    let status_of = paas_api::status_of(ErrorKind::DeployFailed);
    assert_eq!(status_of, StatusCode::UNPROCESSABLE_ENTITY);
    // A too large body: JSON 413.
    let big = "x".repeat(2 * 1024 * 1024);
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/apps", client.base_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["kind"], "invalid_input", "{body}");
}

/// Every path of the description with its parameters filled in.
fn described_routes() -> Vec<(Method, String)> {
    let doc = serde_json::to_value(ApiServer::openapi()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{app}", "routes")
            .replace("{version}", "1")
            .replace("{host}", "www.example.com");
        for method in item.as_object().unwrap().keys() {
            if let Ok(m) = method.to_uppercase().parse::<Method>() {
                routes.push((m, concrete.clone()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn every_route_needs_a_valid_token_and_is_described() {
    let platform = platform();
    let router = ApiServer::new(platform.clone(), StaticTokenAuthorizer::new(TOKEN)).router();
    let routes = described_routes();
    assert!(routes.len() >= 20, "{routes:?}");
    let request = |m: &Method, path: &str, auth: Option<&str>| {
        let mut b = Request::builder().method(m.clone()).uri(path);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap()
    };
    for (m, path) in &routes {
        if path == "/v1/openapi.json" {
            let r = router
                .clone()
                .oneshot(request(m, path, None))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "the description is public");
            continue;
        }
        for auth in [None, Some("Bearer wrong-token"), Some("Basic eDp3cm9uZw==")] {
            let r = router
                .clone()
                .oneshot(request(m, path, auth))
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{m} {path} with {auth:?}"
            );
            assert!(r.headers().contains_key("www-authenticate"));
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["kind"], "unauthenticated", "{m} {path}");
        }
        // With the token, every described route is served (whatever it answers, it is not
        // the router's 404 or 405).
        let bearer = format!("Bearer {TOKEN}");
        let r = router
            .clone()
            .oneshot(request(m, path, Some(&bearer)))
            .await
            .unwrap();
        assert!(
            r.status() != StatusCode::METHOD_NOT_ALLOWED
                && (r.status() != StatusCode::NOT_FOUND
                    || r.headers()["content-type"] == "application/json"),
            "{m} {path} is described but not served: {}",
            r.status()
        );
    }
    // And nothing is served that is not described: other methods on described paths are 405.
    let mut paths: Vec<&String> = routes.iter().map(|(_, p)| p).collect();
    paths.dedup();
    for path in paths {
        for m in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if routes.iter().any(|(rm, rp)| rm == m && rp == path) {
                continue;
            }
            let r = router
                .clone()
                .oneshot(request(&m, path, Some(&format!("Bearer {TOKEN}"))))
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path} is served but not described"
            );
        }
    }
}

#[test]
fn the_description_is_openapi_3_1_with_the_wire_types() {
    let doc = serde_json::to_value(ApiServer::openapi()).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ReleaseView",
        "AppInfo",
        "StreamEvent",
        "ErrorBody",
        "Instance",
        "Timestamp",
    ] {
        assert!(
            schemas.contains_key(name),
            "schema {name} missing: {:?}",
            schemas.keys()
        );
    }
    assert_eq!(schemas["Timestamp"]["format"], "date-time");
}

/// An embedder's own identity system: `alice` reads everything, `ops` may do anything.
#[derive(Debug)]
struct TeamAuth;

#[paas_core::async_trait]
impl Authorizer for TeamAuth {
    async fn authorize(&self, req: &AuthRequest) -> paas_core::Result<Principal> {
        let who = req
            .credentials
            .as_ref()
            .map(|c| c.token().expose().to_string())
            .ok_or_else(paas_core::missing_credentials)?;
        match (who.as_str(), req.action) {
            ("ops", _) | ("alice", Action::Read) => Ok(Principal::new(who)),
            ("alice", _) => Err(paas_core::Error::new(
                ErrorKind::PermissionDenied,
                format!("alice may not {} here", req.action),
            )),
            _ => Err(paas_core::Error::new(
                ErrorKind::Unauthenticated,
                "who are you?",
            )),
        }
    }
}

#[tokio::test]
async fn mounted_under_a_prefix_beside_the_embedders_routes_with_its_own_auth() {
    let platform = platform();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/paas", listener.local_addr().unwrap());
    let api = ApiServer::new(platform, TeamAuth)
        .settings(ApiSettings::default().with_api_url(&base))
        .router();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "the embedder's home" }))
        .nest("/paas", api);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ops = Client::new(&base).unwrap().with_token("ops");
    let alice = Client::new(&base).unwrap().with_token("alice");
    let a = app_name("team-app");
    ops.create_app(&a).await.unwrap();
    assert_eq!(alice.app(&a).await.unwrap().name, a);
    assert!(alice.app(&a).await.unwrap().git_url.starts_with(&base));
    let e = alice.destroy_app(&a).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let mut patch = ConfigPatch::default();
    patch.set.insert("A".into(), "1".into());
    let e = alice.set_config(&a, &patch).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = Client::new(&base)
        .unwrap()
        .with_token("mallory")
        .app(&a)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    let home = reqwest::get(base.trim_end_matches("/paas")).await.unwrap();
    assert_eq!(home.text().await.unwrap(), "the embedder's home");
    // The description is served under the prefix too.
    let doc = reqwest::get(format!("{base}/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(doc.status(), StatusCode::OK);
}

fn app_name(s: &str) -> AppName {
    app(s)
}

/// A newer server: an event kind and an error kind this client has never heard of.
#[tokio::test]
async fn an_older_client_survives_a_newer_server() {
    use axum::response::IntoResponse;
    let ndjson = |lines: &'static str| {
        ([("content-type", paas_api::NDJSON)], lines.to_string()).into_response()
    };
    let router = axum::Router::new()
        .route(
            "/v1/apps/{app}/deploys",
            axum::routing::post(move || async move {
                ndjson(concat!(
                    "{\"type\":\"progress\",\"line\":\"building\"}\n",
                    "{\"type\":\"canary_started\",\"percent\":10}\n",
                    "{\"type\":\"progress\",\"line\":\"done\",\"extra\":1}\n",
                    "{\"type\":\"result\",\"value\":{\"app\":\"new\",\"version\":7,\"description\":\"Deploy\",",
                    "\"status\":{\"state\":\"reverted\",\"reason\":\"5xx\"},\"build_id\":\"b1\",\"commit\":null,\"image\":\"i\",",
                    "\"strategy\":\"procfile\",\"process_types\":{},\"config_keys\":[],",
                    "\"created_at\":\"2026-12-04T10:00:00.000Z\",\"watched_until\":\"later\"}}\n"
                ))
            }),
        )
        .route(
            "/v1/apps/{app}/rollback",
            axum::routing::post(move || async move {
                ndjson("{\"type\":\"error\",\"error\":{\"kind\":\"quota_exceeded\",\"message\":\"too many releases today\"}}\n")
            }),
        )
        .route(
            "/v1/apps/{app}",
            axum::routing::get(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(serde_json::json!({"kind": "rate_limited", "message": "slow down", "retry_after": 3})),
                )
            }),
        );
    let client = Client::new(&serve(router).await).unwrap();
    let a = app("new");
    let mut lines = Vec::new();
    let release = client
        .deploy(&a, &DeployBody::default())
        .await
        .unwrap()
        .finish(|u| {
            if let Update::Progress(l) = u {
                lines.push(l)
            }
        })
        .await
        .unwrap();
    assert_eq!(release.version, Version(7));
    assert_eq!(release.status, paas_core::DeployStatus::Unknown);
    assert_eq!(lines, ["building", "done"]);
    let e = client
        .rollback(&a, None)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unknown);
    assert_eq!(e.message(), "too many releases today");
    let e = client.app(&a).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unknown);
    assert_eq!(e.message(), "slow down");
}

#[tokio::test]
async fn a_stream_cut_short_is_an_error_not_a_hang() {
    use axum::response::IntoResponse;
    let router = axum::Router::new().route(
        "/v1/apps/{app}/formation",
        axum::routing::patch(|| async {
            (
                [("content-type", paas_api::NDJSON)],
                "{\"type\":\"progress\",\"line\":\"scaling\"}\n",
            )
                .into_response()
        }),
    );
    let client = Client::new(&serve(router).await).unwrap();
    let e = client
        .scale(&app("cut"), &Formation::new())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("ended before"), "{e}");
}

#[tokio::test]
async fn unreachable_servers_are_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let e = client.info().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("cannot reach"), "{e}");
    let _ = Arc::new(());
}

/// A builder whose build prints a great deal.
#[derive(Debug)]
struct Chatty(MemoryBuilder);

#[paas_core::async_trait]
impl paas_core::Builder for Chatty {
    async fn build(&self, req: paas_core::BuildRequest) -> paas_core::Result<paas_core::Build> {
        for i in 0..300_000 {
            req.output
                .line(format!("compiling unit {i} of a very large app"));
        }
        self.0.build(req).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_for_a_client_that_stops_reading_is_bounded() {
    use std::io::{BufRead, BufReader, Write};
    let platform = Platform::composer()
        .sources(MemorySourceStore::new())
        .builder(Chatty(MemoryBuilder::new()))
        .store(MemoryReleaseStore::new())
        .scheduler(MemoryScheduler::new())
        .router(MemoryRouter::new())
        .log_sink(MemoryLogSink::new())
        .compose()
        .unwrap();
    let router = ApiServer::new(platform.clone(), StaticTokenAuthorizer::new(TOKEN)).router();
    let url = serve(router).await;
    let client = Client::new(&url).unwrap().with_token(TOKEN);
    let a = app("chatty");
    client.create_app(&a).await.unwrap();
    push(&platform, &a, "web: ./server\n").await;
    let addr = url.trim_start_matches("http://").to_string();
    let lines = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let body = r#"{"git_ref": "main"}"#;
        write!(
            s,
            "POST /v1/apps/chatty/deploys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // Read nothing while the build prints.
        std::thread::sleep(Duration::from_secs(3));
        BufReader::new(s)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    })
    .await
    .unwrap();
    let progress = lines
        .iter()
        .filter(|l| l.contains("compiling unit"))
        .count();
    assert!(
        progress < 300_000,
        "every line was buffered for a client that did not read"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("progress lines were dropped")),
        "the client is told lines were dropped"
    );
    assert!(
        lines.iter().any(|l| l.contains(r#""type":"result""#)),
        "the result still arrives"
    );
}

/// A scheduler whose engine is down: every listing fails.
#[derive(Debug)]
struct DownScheduler(MemoryScheduler);

#[paas_core::async_trait]
impl paas_core::Scheduler for DownScheduler {
    async fn start(
        &self,
        req: paas_core::StartRequest,
    ) -> paas_core::Result<Vec<paas_core::Instance>> {
        self.0.start(req).await
    }
    async fn wait_healthy(&self, req: paas_core::HealthRequest) -> paas_core::Result<()> {
        self.0.wait_healthy(req).await
    }
    async fn stop(&self, req: paas_core::StopRequest) -> paas_core::Result<()> {
        self.0.stop(req).await
    }
    async fn list(&self, _: Option<&AppName>) -> paas_core::Result<Vec<paas_core::Instance>> {
        Err(paas_core::Error::unavailable("the engine does not answer"))
    }
    async fn run_once(
        &self,
        req: paas_core::RunRequest,
    ) -> paas_core::Result<paas_core::RunHandle> {
        self.0.run_once(req).await
    }
    async fn converge(
        &self,
        req: paas_core::ConvergeRequest,
    ) -> paas_core::Result<paas_core::ConvergeReport> {
        self.0.converge(req).await
    }
    fn events(&self) -> futures::stream::BoxStream<'static, paas_core::InstanceEvent> {
        self.0.events()
    }
}

#[tokio::test]
async fn health_and_readiness_need_no_token_and_readiness_names_what_is_down() {
    let (_, client) = api().await;
    let base = client.base_url().to_string();
    let healthz = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    let readyz = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), StatusCode::OK);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body["status"], "ready");

    let platform = Platform::composer()
        .sources(MemorySourceStore::new())
        .builder(MemoryBuilder::new())
        .store(MemoryReleaseStore::new())
        .scheduler(DownScheduler(MemoryScheduler::new()))
        .router(MemoryRouter::new())
        .log_sink(MemoryLogSink::new())
        .compose()
        .unwrap();
    let url = serve(ApiServer::new(platform, StaticTokenAuthorizer::new(TOKEN)).router()).await;
    let readyz = reqwest::get(format!("{url}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body["failing"], serde_json::json!(["scheduler"]));
    // Alive all the same.
    let healthz = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
}
