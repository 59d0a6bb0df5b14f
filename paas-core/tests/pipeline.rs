//! The Platform pipeline over the in-memory backends: what a user of `git push`, `config:set`,
//! `ps:scale` and `rollback` would notice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use paas_core::memory::*;
use paas_core::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CANARY: &str = "canary-secret-d41d8cd9";

struct Env {
    platform: Platform,
    sources: Arc<MemorySourceStore>,
    scheduler: Arc<MemoryScheduler>,
    router: Arc<MemoryRouter>,
    logs: Arc<MemoryLogSink>,
}

fn env_with_builder(builder: Arc<dyn Builder>) -> Env {
    let sources = Arc::new(MemorySourceStore::new());
    let scheduler = Arc::new(MemoryScheduler::new());
    let router = Arc::new(MemoryRouter::new());
    let logs = Arc::new(MemoryLogSink::new());
    let settings = PlatformSettings::default()
        .with_health_timeout(Duration::from_millis(600))
        .with_drain_timeout(Duration::from_secs(1))
        .with_stop_grace(Duration::from_secs(1));
    let platform = Platform::composer()
        .sources(sources.clone())
        .builder(builder)
        .store(Arc::new(MemoryReleaseStore::new()))
        .scheduler(scheduler.clone())
        .router(router.clone())
        .log_sink(logs.clone())
        .settings(settings)
        .compose()
        .unwrap();
    Env {
        platform,
        sources,
        scheduler,
        router,
        logs,
    }
}

fn env() -> Env {
    env_with_builder(Arc::new(MemoryBuilder::new()))
}

fn app(name: &str) -> AppName {
    AppName::new(name).unwrap()
}

async fn push(env: &Env, app: &AppName, procfile: &str) -> CommitId {
    let files = vec![SourceFile {
        path: "Procfile".into(),
        contents: procfile.as_bytes().to_vec(),
        executable: false,
    }];
    env.sources
        .commit_files(CommitFilesRequest::new(app.clone(), "main", files))
        .await
        .unwrap()
}

async fn deploy(env: &Env, app: &AppName) -> Result<Release> {
    env.platform
        .deploy(DeployRequest::new(
            app.clone(),
            DeploySource::Ref("main".into()),
        ))
        .await
}

async fn http_get(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

async fn route_of(env: &Env, app: &AppName) -> Route {
    env.router
        .routes()
        .await
        .unwrap()
        .into_iter()
        .find(|r| &r.app == app)
        .expect("app is routed")
}

fn set(pairs: &[&str]) -> ConfigUpdate {
    ConfigUpdate::parse_pairs(pairs.iter().copied()).unwrap()
}

#[tokio::test]
async fn deploy_creates_v1_and_routes_to_healthy_instances() {
    let env = env();
    let a = app("web1");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\nworker: ./work\n").await;
    let r = deploy(&env, &a).await.unwrap();
    assert_eq!(r.version, Version(1));
    assert_eq!(r.status, DeployStatus::Succeeded);
    let route = route_of(&env, &a).await;
    assert_eq!(route.hosts[0].as_str(), "web1.localhost");
    assert_eq!(route.endpoints.len(), 1, "web=1 by default");
    assert_eq!(http_get(route.endpoints[0]).await, "web1 v1 web.1\n");
    let status = env.platform.status(&a).await.unwrap();
    assert_eq!(
        status.formation.to_string(),
        "web=1 worker=0",
        "Heroku defaults"
    );
    assert_eq!(status.instances.len(), 1);
    let logs = env.platform.logs(&a, 100).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.source.to_string() == "platform[build]"),
        "build output logged"
    );
}

#[tokio::test]
async fn config_set_makes_a_release_with_the_same_build_and_rollback_copies_v1() {
    let env = env();
    let a = app("cfg");
    env.platform.create_app(&a).await.unwrap();
    // Config set before the first build makes no release.
    assert!(env
        .platform
        .set_config(&a, set(&["A=1"]), Progress::discard())
        .await
        .unwrap()
        .is_none());
    push(&env, &a, "web: ./server\n").await;
    let v1 = deploy(&env, &a).await.unwrap();
    assert_eq!(
        v1.config.get("A").unwrap().expose(),
        "1",
        "config set before deploy is in v1"
    );
    let v2 = env
        .platform
        .set_config(&a, set(&["A=2", "B=x"]), Progress::discard())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v2.version, Version(2));
    assert_eq!(v2.build, v1.build, "config:set keeps the build");
    assert_eq!(v2.config.get("A").unwrap().expose(), "2");
    assert_eq!(v2.status, DeployStatus::Succeeded);
    assert_eq!(
        http_get(route_of(&env, &a).await.endpoints[0]).await,
        "cfg v2 web.1\n",
        "v2 serves"
    );
    // Setting the same values again changes nothing.
    assert!(env
        .platform
        .set_config(&a, set(&["A=2"]), Progress::discard())
        .await
        .unwrap()
        .is_none());

    let v3 = env
        .platform
        .rollback(&a, Some(Version(1)), Progress::discard())
        .await
        .unwrap();
    assert_eq!(v3.version, Version(3), "rollback makes a new release");
    assert_eq!(v3.build, v1.build);
    assert_eq!(v3.config, v1.config, "rollback restores v1's config");
    assert_eq!(v3.description, "Rollback to v1");
    assert_eq!(
        env.platform.config(&a).await.unwrap(),
        v1.config,
        "current config is v1's again"
    );
    assert_eq!(
        http_get(route_of(&env, &a).await.endpoints[0]).await,
        "cfg v3 web.1\n"
    );
    let history: Vec<u64> = env
        .platform
        .releases(&a, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.version.0)
        .collect();
    assert_eq!(history, [3, 2, 1], "history only grows");
    // Default rollback target: the release before the current one.
    let v4 = env
        .platform
        .rollback(&a, None, Progress::discard())
        .await
        .unwrap();
    assert_eq!(
        v4.config.get("A").unwrap().expose(),
        "2",
        "rollback without a version goes to v2"
    );
    assert_eq!(
        env.platform.scheduler().list(Some(&a)).await.unwrap().len(),
        1,
        "old processes stopped"
    );
}

#[tokio::test]
async fn scale_changes_formation_without_a_release() {
    let env = env();
    let a = app("scale");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\nworker: ./work\n").await;
    deploy(&env, &a).await.unwrap();
    let f = env
        .platform
        .scale(
            &a,
            Formation::parse_pairs(["web=3", "worker=2"]).unwrap(),
            Progress::discard(),
        )
        .await
        .unwrap();
    assert_eq!(f.to_string(), "web=3 worker=2");
    assert_eq!(
        env.platform.releases(&a, 10).await.unwrap().len(),
        1,
        "no new release"
    );
    let route = route_of(&env, &a).await;
    assert_eq!(route.endpoints.len(), 3, "three web endpoints routed");
    let mut bodies: Vec<String> = Vec::new();
    for ep in &route.endpoints {
        bodies.push(http_get(*ep).await);
    }
    bodies.sort();
    assert_eq!(
        bodies,
        ["scale v1 web.1\n", "scale v1 web.2\n", "scale v1 web.3\n"]
    );
    assert_eq!(env.platform.instances(&a).await.unwrap().len(), 5);
    env.platform
        .scale(
            &a,
            Formation::parse_pairs(["web=1"]).unwrap(),
            Progress::discard(),
        )
        .await
        .unwrap();
    let route = route_of(&env, &a).await;
    assert_eq!(route.endpoints.len(), 1);
    assert_eq!(
        http_get(route.endpoints[0]).await,
        "scale v1 web.1\n",
        "highest indexes removed first"
    );
    let e = env
        .platform
        .scale(
            &a,
            Formation::parse_pairs(["nosuch=1"]).unwrap(),
            Progress::discard(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("nosuch"), "{e}");
}

#[tokio::test]
async fn failed_build_creates_no_release() {
    let env = env();
    let a = app("badbuild");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: a\nweb: b\n").await;
    let e = deploy(&env, &a).await.unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(
        env.platform.releases(&a, 10).await.unwrap().is_empty(),
        "no release"
    );
    assert!(
        env.router
            .routes()
            .await
            .unwrap()
            .iter()
            .all(|r| r.app != a),
        "not routed"
    );
}

#[tokio::test]
async fn unhealthy_deploy_keeps_the_old_release_routed_and_records_the_failure() {
    let env = env();
    let a = app("unhealthy");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\n").await;
    deploy(&env, &a).await.unwrap();
    env.scheduler
        .set_fault(Some(|r: &Release, _: &ProcessType, _: u32| {
            (r.version == Version(2)).then_some(SimFault::NeverHealthy)
        }));
    push(&env, &a, "web: ./server --v2\n").await;
    let e = deploy(&env, &a).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeployFailed, "{e}");
    assert!(e.message().contains("never became healthy"), "{e}");
    let v2 = env.platform.release(&a, Version(2)).await.unwrap();
    assert!(
        matches!(v2.status, DeployStatus::Failed(ref why) if why.contains("v1 keeps serving")),
        "{:?}",
        v2.status
    );
    let route = route_of(&env, &a).await;
    assert_eq!(
        http_get(route.endpoints[0]).await,
        "unhealthy v1 web.1\n",
        "v1 still serves"
    );
    let instances = env.platform.instances(&a).await.unwrap();
    assert!(
        instances.iter().all(|i| i.release == Version(1)),
        "new instances removed: {instances:?}"
    );
    let logs = env.platform.logs(&a, 200).await.unwrap();
    assert!(
        logs.iter().any(|l| l.text.contains("Deploy of v2 failed")),
        "failure in the logs"
    );
    assert_eq!(
        env.platform
            .status(&a)
            .await
            .unwrap()
            .current
            .unwrap()
            .version,
        Version(1)
    );
}

#[tokio::test]
async fn release_phase_failure_stops_the_deploy() {
    let env = env();
    let a = app("relphase");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\nrelease: echo migrating; exit 4\n").await;
    let e = deploy(&env, &a).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeployFailed);
    assert!(e.message().contains("code 4"), "{e}");
    assert!(
        env.platform.instances(&a).await.unwrap().is_empty(),
        "no process started"
    );
    let logs = env.platform.logs(&a, 100).await.unwrap();
    assert!(logs
        .iter()
        .any(|l| l.source.to_string() == "app[release.0]" && l.text == "migrating"));
    push(&env, &a, "web: ./server\nrelease: echo ok\n").await;
    assert_eq!(deploy(&env, &a).await.unwrap().version, Version(2));
}

#[tokio::test]
async fn one_off_run_returns_the_exit_code() {
    let env = env();
    let a = app("runner");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\n").await;
    deploy(&env, &a).await.unwrap();
    let h = env
        .platform
        .run(&a, vec!["sh".into(), "-c".into(), "echo hi; exit 3".into()])
        .await
        .unwrap();
    let out: Vec<_> = h.output.collect().await;
    assert_eq!(out[0].text, "hi\n");
    assert_eq!(h.exit.await.unwrap(), 3);
}

#[tokio::test]
async fn crashed_web_instance_is_restarted_and_logged() {
    let env = env();
    let _watcher = env.platform.spawn_instance_watcher();
    let a = app("crashy");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\n").await;
    deploy(&env, &a).await.unwrap();
    let mut follow = env.platform.follow_logs(&a).await.unwrap();
    env.scheduler
        .set_fault(Some(|_: &Release, _: &ProcessType, _: u32| {
            Some(SimFault::CrashAfter(Duration::from_millis(100)))
        }));
    env.platform
        .restart(&a, None, Progress::discard())
        .await
        .unwrap();
    let mut saw = (false, false);
    while saw != (true, true) {
        let l = tokio::time::timeout(Duration::from_secs(5), follow.next())
            .await
            .expect("crash lines")
            .unwrap();
        saw.0 |= l.text.contains("state changed from up to crashed");
        saw.1 |= l.text.contains("state changed from crashed to up");
    }
}

/// A builder that records how many builds of each app (and in total) run at once.
#[derive(Debug)]
struct SlowBuilder {
    inner: MemoryBuilder,
    per_app: Mutex<HashMap<AppName, usize>>,
    max_per_app: AtomicUsize,
    total: AtomicUsize,
    max_total: AtomicUsize,
}

#[async_trait]
impl Builder for SlowBuilder {
    async fn build(&self, req: BuildRequest) -> Result<Build> {
        let n = {
            let mut m = self.per_app.lock().unwrap();
            let e = m.entry(req.app.clone()).or_default();
            *e += 1;
            *e
        };
        self.max_per_app.fetch_max(n, Ordering::SeqCst);
        let t = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_total.fetch_max(t, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = self.inner.build(req.clone()).await;
        self.total.fetch_sub(1, Ordering::SeqCst);
        *self.per_app.lock().unwrap().get_mut(&req.app).unwrap() -= 1;
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_of_one_app_serialize_while_two_apps_run_in_parallel() {
    let builder = Arc::new(SlowBuilder {
        inner: MemoryBuilder::new(),
        per_app: Mutex::new(HashMap::new()),
        max_per_app: AtomicUsize::new(0),
        total: AtomicUsize::new(0),
        max_total: AtomicUsize::new(0),
    });
    let env = env_with_builder(builder.clone());
    let (a, b) = (app("para"), app("parb"));
    for x in [&a, &b] {
        env.platform.create_app(x).await.unwrap();
        push(&env, x, "web: ./server\n").await;
    }
    let (r1, r2, r3) = tokio::join!(deploy(&env, &a), deploy(&env, &a), deploy(&env, &b));
    let mut va = vec![r1.unwrap().version.0, r2.unwrap().version.0];
    va.sort();
    assert_eq!(va, [1, 2]);
    assert_eq!(r3.unwrap().version, Version(1));
    assert_eq!(
        builder.max_per_app.load(Ordering::SeqCst),
        1,
        "deploys of one app never overlap"
    );
    assert_eq!(
        builder.max_total.load(Ordering::SeqCst),
        2,
        "two apps build at the same time"
    );
    assert_eq!(
        env.platform.instances(&a).await.unwrap().len(),
        1,
        "one web process after two deploys"
    );
}

#[tokio::test]
async fn a_canary_secret_appears_in_no_debug_error_event_or_log() {
    let env = env();
    let mut events = env.platform.subscribe();
    let a = app("secretive");
    env.platform.create_app(&a).await.unwrap();
    let canary_pair = format!("TOKEN={CANARY}");
    env.platform
        .set_config(&a, set(&[&canary_pair]), Progress::discard())
        .await
        .unwrap();
    push(&env, &a, "web: ./server\n").await;
    let (progress, mut progress_rx) = Progress::channel();
    let v1 = env
        .platform
        .deploy(
            DeployRequest::new(a.clone(), DeploySource::Ref("main".into())).with_progress(progress),
        )
        .await
        .unwrap();
    env.platform
        .set_config(&a, set(&["OTHER=1"]), Progress::discard())
        .await
        .unwrap();
    env.platform
        .rollback(&a, None, Progress::discard())
        .await
        .unwrap();
    env.scheduler
        .set_fault(Some(|r: &Release, _: &ProcessType, _: u32| {
            (r.version.0 >= 4).then_some(SimFault::NeverHealthy)
        }));
    let err = env
        .platform
        .set_config(&a, set(&[&format!("T2={CANARY}")]), Progress::discard())
        .await
        .unwrap_err();
    let bad_key = ConfigUpdate::parse_pairs([format!("1BAD={CANARY}").as_str()]).unwrap_err();
    let mut seen = vec![
        format!("{v1:?}"),
        format!("{err} {err:?} {bad_key} {bad_key:?}"),
        format!("{:?}", env.platform.status(&a).await.unwrap()),
        format!("{:?}", env.platform.config(&a).await.unwrap()),
        format!("{:?}", env.platform),
    ];
    while let Ok(l) = progress_rx.try_recv() {
        seen.push(l);
    }
    for l in env.logs.tail(&a, 10_000).await.unwrap() {
        seen.push(format!("{l} {l:?}"));
    }
    while let Some(Some(e)) = futures::FutureExt::now_or_never(events.next()) {
        seen.push(format!("{e:?} {}", serde_json::to_string(&e).unwrap()));
    }
    assert!(seen.len() > 10, "collected output to check");
    for s in &seen {
        assert!(!s.contains(CANARY), "secret leaked in: {s}");
    }
    assert_eq!(
        env.platform
            .config(&a)
            .await
            .unwrap()
            .get("TOKEN")
            .unwrap()
            .expose(),
        CANARY,
        "value kept"
    );
}

#[tokio::test]
async fn destroy_removes_everything() {
    let env = env();
    let a = app("doomed");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\n").await;
    deploy(&env, &a).await.unwrap();
    env.platform.destroy_app(&a).await.unwrap();
    assert!(env.platform.list_apps().await.unwrap().is_empty());
    assert!(env.scheduler.list(Some(&a)).await.unwrap().is_empty());
    assert!(env.router.routes().await.unwrap().is_empty());
    assert!(!env.sources.repo_exists(&a).await.unwrap());
    assert!(env.logs.tail(&a, 10).await.unwrap().is_empty());
    assert_eq!(
        env.platform.destroy_app(&a).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // The name is free again and starts at v1.
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\n").await;
    assert_eq!(deploy(&env, &a).await.unwrap().version, Version(1));
}

#[tokio::test]
async fn domains_are_routed_and_unique() {
    let env = env();
    let (a, b) = (app("doma"), app("domb"));
    for x in [&a, &b] {
        env.platform.create_app(x).await.unwrap();
        push(&env, x, "web: ./server\n").await;
        deploy(&env, x).await.unwrap();
    }
    let d = Domain::new("www.example.com").unwrap();
    env.platform.add_domain(&a, d.clone()).await.unwrap();
    assert!(route_of(&env, &a).await.hosts.contains(&d));
    assert_eq!(
        env.platform
            .add_domain(&b, d.clone())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    let e = env
        .platform
        .add_domain(&b, Domain::new("doma.localhost").unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "another app's default host");
    // Names under the base domain, and wildcards over it, belong to the platform.
    for taken in [
        "*.localhost",
        "www.doma.localhost",
        "localhost",
        "x.y.localhost",
    ] {
        let e = env
            .platform
            .add_domain(&b, Domain::new(taken).unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{taken}: {e}");
        assert!(e.message().contains("base domain"), "{e}");
    }
    assert!(!route_of(&env, &b)
        .await
        .hosts
        .iter()
        .any(|h| h.as_str() == "*.localhost"));
    env.platform.remove_domain(&a, &d).await.unwrap();
    assert!(!route_of(&env, &a).await.hosts.contains(&d));
}

#[tokio::test]
async fn recover_adopts_and_rebuilds_routes() {
    let env = env();
    let a = app("recover");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\n").await;
    deploy(&env, &a).await.unwrap();
    let before = env.scheduler.list(Some(&a)).await.unwrap();
    env.router.remove_route(&a).await.unwrap();
    env.platform.recover().await.unwrap();
    assert_eq!(
        env.scheduler.list(Some(&a)).await.unwrap(),
        before,
        "nothing started twice"
    );
    assert_eq!(
        route_of(&env, &a).await.endpoints,
        vec![before[0].address.unwrap()]
    );
}

#[tokio::test]
async fn rollback_runs_the_release_phase_and_a_failed_rollback_keeps_the_config() {
    let env = env();
    let a = app("rbphase");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\nrelease: echo migrating\n").await;
    deploy(&env, &a).await.unwrap();
    env.platform
        .set_config(&a, set(&["LATER=1"]), Progress::discard())
        .await
        .unwrap();
    let before = env
        .platform
        .logs(&a, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|l| l.text == "migrating")
        .count();
    env.platform
        .rollback(&a, Some(Version(1)), Progress::discard())
        .await
        .unwrap();
    let after = env
        .platform
        .logs(&a, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|l| l.text == "migrating")
        .count();
    assert_eq!(
        after,
        before + 1,
        "the rollback release ran its release command"
    );

    // v4 = rollback to v2 (which has LATER), whose processes never become healthy.
    env.scheduler
        .set_fault(Some(|r: &Release, _: &ProcessType, _: u32| {
            (r.version == Version(4)).then_some(SimFault::NeverHealthy)
        }));
    let e = env
        .platform
        .rollback(&a, Some(Version(2)), Progress::discard())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeployFailed);
    let config = env.platform.config(&a).await.unwrap();
    assert!(
        config.get("LATER").is_none(),
        "the config of the serving release v3 is kept"
    );
    assert_eq!(
        env.platform
            .status(&a)
            .await
            .unwrap()
            .current
            .unwrap()
            .version,
        Version(3)
    );
}

#[tokio::test]
async fn a_release_command_that_never_ends_is_cut_off() {
    let sources = Arc::new(MemorySourceStore::new());
    let mut settings = PlatformSettings::default().with_health_timeout(Duration::from_secs(2));
    settings.release_phase_timeout = Duration::from_millis(300);
    let platform = Platform::composer()
        .sources(sources.clone())
        .builder(Arc::new(MemoryBuilder::new()))
        .store(Arc::new(MemoryReleaseStore::new()))
        .scheduler(Arc::new(MemoryScheduler::new()))
        .router(Arc::new(MemoryRouter::new()))
        .log_sink(Arc::new(MemoryLogSink::new()))
        .settings(settings)
        .compose()
        .unwrap();
    let a = app("hangs");
    platform.create_app(&a).await.unwrap();
    let files = vec![SourceFile {
        path: "Procfile".into(),
        contents: b"web: ./s\nrelease: sleep 3600\n".to_vec(),
        executable: false,
    }];
    sources
        .commit_files(CommitFilesRequest::new(a.clone(), "main", files))
        .await
        .unwrap();
    let e = platform
        .deploy(DeployRequest::new(
            a.clone(),
            DeploySource::Ref("main".into()),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeployFailed, "{e}");
    assert!(e.message().contains("did not finish"), "{e}");
    // The app is not stuck: the next operation gets its lock.
    let r = platform
        .set_config(&a, set(&["X=1"]), Progress::discard())
        .await;
    assert!(
        r.is_err(),
        "the only release failed, so the config change's release fails too"
    );
}

#[tokio::test]
async fn prune_keeps_the_default_rollback_target() {
    let builder = Arc::new(MemoryBuilder::new());
    let env = env_with_builder(builder.clone());
    let a = app("prune");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\n").await;
    let v1 = deploy(&env, &a).await.unwrap();
    env.scheduler
        .set_fault(Some(|r: &Release, _: &ProcessType, _: u32| {
            (r.version.0 >= 2 && r.version.0 <= 7).then_some(SimFault::NeverHealthy)
        }));
    for i in 0..6 {
        push(&env, &a, &format!("web: ./server --round {i}\n")).await;
        assert!(deploy(&env, &a).await.is_err());
    }
    env.scheduler
        .set_fault(None::<fn(&Release, &ProcessType, u32) -> Option<SimFault>>);
    push(&env, &a, "web: ./server --good\n").await;
    deploy(&env, &a).await.unwrap();
    assert!(
        builder.artifacts(&a).contains(&v1.build.artifact.image),
        "v1 (the newest succeeded release before the current one) keeps its artifact"
    );
    let r = env
        .platform
        .rollback(&a, None, Progress::discard())
        .await
        .unwrap();
    assert_eq!(r.build, v1.build);
}

/// A scheduler that records the health checks it is asked for.
#[derive(Debug)]
struct RecordingScheduler {
    inner: Arc<MemoryScheduler>,
    checks: Mutex<Vec<HealthCheck>>,
}

#[async_trait]
impl Scheduler for RecordingScheduler {
    async fn start(&self, req: StartRequest) -> Result<Vec<Instance>> {
        self.inner.start(req).await
    }
    async fn wait_healthy(&self, req: HealthRequest) -> Result<()> {
        self.checks.lock().unwrap().push(req.check.clone());
        self.inner.wait_healthy(req).await
    }
    async fn stop(&self, req: StopRequest) -> Result<()> {
        self.inner.stop(req).await
    }
    async fn list(&self, app: Option<&AppName>) -> Result<Vec<Instance>> {
        self.inner.list(app).await
    }
    async fn run_once(&self, req: RunRequest) -> Result<RunHandle> {
        self.inner.run_once(req).await
    }
    async fn converge(&self, req: ConvergeRequest) -> Result<ConvergeReport> {
        self.inner.converge(req).await
    }
    fn events(&self) -> futures::stream::BoxStream<'static, InstanceEvent> {
        self.inner.events()
    }
}

#[tokio::test]
async fn an_app_names_its_own_health_check_path_in_config() {
    let sources = Arc::new(MemorySourceStore::new());
    let scheduler = Arc::new(RecordingScheduler {
        inner: Arc::new(MemoryScheduler::new()),
        checks: Mutex::new(Vec::new()),
    });
    let platform = Platform::composer()
        .sources(sources.clone())
        .builder(Arc::new(MemoryBuilder::new()))
        .store(Arc::new(MemoryReleaseStore::new()))
        .scheduler(scheduler.clone())
        .router(Arc::new(MemoryRouter::new()))
        .log_sink(Arc::new(MemoryLogSink::new()))
        .settings(PlatformSettings::default().with_health_timeout(Duration::from_secs(2)))
        .compose()
        .unwrap();
    let a = app("checked");
    platform.create_app(&a).await.unwrap();
    let files = vec![SourceFile {
        path: "Procfile".into(),
        contents: b"web: ./server\nworker: ./work\n".to_vec(),
        executable: false,
    }];
    sources
        .commit_files(CommitFilesRequest::new(a.clone(), "main", files))
        .await
        .unwrap();
    platform
        .deploy(DeployRequest::new(
            a.clone(),
            DeploySource::Ref("main".into()),
        ))
        .await
        .unwrap();
    let web_checks = |s: &RecordingScheduler| {
        s.checks
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c != HealthCheck::Running)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        web_checks(&scheduler),
        vec![HealthCheck::Tcp],
        "the platform's default"
    );

    // The app's own path, from the next release on.
    platform
        .set_config(
            &a,
            set(&["PAAS_HEALTHCHECK_PATH=/up?full=1"]),
            Progress::discard(),
        )
        .await
        .unwrap();
    assert_eq!(
        web_checks(&scheduler).last(),
        Some(&HealthCheck::http("/up?full=1").unwrap())
    );

    // A value that is not a path is refused, naming the rule, not the value; nothing changes.
    for bad in ["up", "/a b", "https://x/up"] {
        let e = platform
            .set_config(
                &a,
                set(&[&format!("{HEALTHCHECK_PATH_VAR}={bad}")]),
                Progress::discard(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(
            e.message()
                .contains("PAAS_HEALTHCHECK_PATH: a health check path must start with"),
            "{e}"
        );
        assert!(!e.message().contains(bad), "{e}");
    }
    let status = platform.status(&a).await.unwrap();
    assert_eq!(status.current.unwrap().version, Version(2));
    assert_eq!(
        platform
            .config(&a)
            .await
            .unwrap()
            .get(HEALTHCHECK_PATH_VAR)
            .unwrap()
            .expose(),
        "/up?full=1"
    );

    // Unset: back to the platform's check.
    platform
        .set_config(
            &a,
            ConfigUpdate::parse_pairs(std::iter::empty())
                .map(|mut u| {
                    u.unset.push(ConfigKey::new(HEALTHCHECK_PATH_VAR).unwrap());
                    u
                })
                .unwrap(),
            Progress::discard(),
        )
        .await
        .unwrap();
    assert_eq!(web_checks(&scheduler).last(), Some(&HealthCheck::Tcp));
}

/// A builder whose build prints without end (well, 5,000 lines).
#[derive(Debug)]
struct ChattyBuilder(MemoryBuilder);

#[async_trait]
impl Builder for ChattyBuilder {
    async fn build(&self, req: BuildRequest) -> Result<Build> {
        for i in 0..5000 {
            req.output.line(format!("compiling unit {i}"));
        }
        self.0.build(req).await
    }
}

#[tokio::test]
async fn build_output_in_the_app_log_is_capped() {
    let env = env_with_builder(Arc::new(ChattyBuilder(MemoryBuilder::new())));
    let a = app("chatty");
    env.platform.create_app(&a).await.unwrap();
    push(&env, &a, "web: ./server\n").await;
    let mut followed = env.logs.follow(&a).await.unwrap();
    let (progress, mut rx) = Progress::channel();
    let source = DeploySource::Ref("main".into());
    env.platform
        .deploy(DeployRequest::new(a.clone(), source).with_progress(progress))
        .await
        .unwrap();
    let mut shown = 0;
    while let Ok(l) = rx.try_recv() {
        shown += usize::from(l.starts_with("compiling unit"));
    }
    assert_eq!(shown, 5000, "the deploying user sees every line");
    let mut logged = Vec::new();
    while let Ok(Some(l)) = tokio::time::timeout(Duration::from_millis(200), followed.next()).await
    {
        logged.push(l);
    }
    let build_lines = logged
        .iter()
        .filter(|l| l.source == LogSource::Platform("build".into()))
        .filter(|l| !l.text.contains("were not logged"))
        .count();
    assert_eq!(build_lines, BUILD_LOG_LINES);
    assert!(
        logged.iter().any(|l| l
            .text
            .contains("more lines of build output were not logged")),
        "the log says lines were left out"
    );
}
