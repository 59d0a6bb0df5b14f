//! Conformance suite for [`ReleaseStore`].

use std::sync::Arc;

use crate::error::ErrorKind;
use crate::model::{
    App, AppName, Artifact, Build, BuildId, Config, ConfigKey, ConfigValue, DeployStatus, Domain,
    Formation, NewRelease, ProcessType, Procfile, Timestamp, Version,
};
use crate::traits::{ListReleases, ReleaseStore};

use super::unique_app;

/// A canary secret used as a config value: it must appear in no error message.
pub const CANARY: &str = "canary-secret-7f3a9c";

/// A build of `app` with a `web` process.
pub fn sample_build(app: &AppName) -> Build {
    Build {
        id: BuildId::generate(),
        app: app.clone(),
        commit: None,
        artifact: Artifact {
            image: format!("example/{app}:1"),
        },
        procfile: Procfile::parse("web: ./server\nworker: ./work").unwrap(),
        strategy: "test".into(),
        created_at: Timestamp::now(),
    }
}

fn config(pairs: &[(&str, &str)]) -> Config {
    pairs
        .iter()
        .map(|(k, v)| (ConfigKey::new(*k).unwrap(), ConfigValue::new(*v).unwrap()))
        .collect()
}

async fn new_app(store: &dyn ReleaseStore, prefix: &str) -> AppName {
    let app = unique_app(prefix);
    store
        .create_app(App::new(app.clone()))
        .await
        .expect("create_app");
    app
}

fn new_release(app: &AppName, build: &Build, cfg: Config, d: &str) -> NewRelease {
    NewRelease {
        app: app.clone(),
        build: build.clone(),
        config: cfg,
        description: d.into(),
    }
}

/// Runs every ReleaseStore contract (sequential and concurrent appends included).
pub async fn run_all(store: &dyn ReleaseStore) {
    apps(store).await;
    config_formation_domains(store).await;
    builds(store).await;
    releases(store).await;
    versions_never_reused(store).await;
    concurrent_appends(store, 100).await;
    errors_carry_no_secrets(store).await;
}

/// Like [`run_all`], plus appends from many spawned tasks through an `Arc<dyn ReleaseStore>`.
pub async fn run_all_arc(store: Arc<dyn ReleaseStore>) {
    run_all(store.as_ref()).await;
    concurrent_appends_spawned(store, 100).await;
}

/// create/get/list/delete apps with their error kinds.
pub async fn apps(store: &dyn ReleaseStore) {
    let app = new_app(store, "st-apps").await;
    let e = store
        .create_app(App::new(app.clone()))
        .await
        .expect_err("duplicate app");
    assert_eq!(
        e.kind(),
        ErrorKind::AlreadyExists,
        "duplicate create_app: {e}"
    );
    assert_eq!(store.get_app(&app).await.unwrap().name, app);
    let list = store.list_apps().await.unwrap();
    assert!(list.iter().any(|a| a.name == app), "list_apps has the app");
    let names: Vec<_> = list.iter().map(|a| a.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "list_apps sorted by name");
    store.delete_app(&app).await.expect("delete_app");
    let e = store.get_app(&app).await.expect_err("deleted app");
    assert_eq!(e.kind(), ErrorKind::NotFound, "get deleted app: {e}");
    let e = store.delete_app(&app).await.expect_err("delete twice");
    assert_eq!(e.kind(), ErrorKind::NotFound, "delete missing app: {e}");
    for e in [
        store
            .get_config(&app)
            .await
            .expect_err("config of missing app"),
        store
            .get_formation(&app)
            .await
            .expect_err("formation of missing app"),
        store
            .list_domains(&app)
            .await
            .expect_err("domains of missing app"),
        store
            .list_releases(&app, ListReleases::newest(5))
            .await
            .expect_err("releases of missing app"),
    ] {
        assert_eq!(e.kind(), ErrorKind::NotFound, "missing app: {e}");
    }
}

/// Config, formation and domains round-trip; domains are unique across apps.
pub async fn config_formation_domains(store: &dyn ReleaseStore) {
    let app = new_app(store, "st-cfg").await;
    assert!(
        store.get_config(&app).await.unwrap().is_empty(),
        "new app has empty config"
    );
    let cfg = config(&[("A", "1"), ("B", "two=2")]);
    store.set_config(&app, cfg.clone()).await.unwrap();
    assert_eq!(
        store.get_config(&app).await.unwrap(),
        cfg,
        "config round-trip"
    );

    assert_eq!(
        store.get_formation(&app).await.unwrap(),
        Formation::new(),
        "empty formation"
    );
    let f = Formation::parse_pairs(["web=3", "worker=0"]).unwrap();
    store.set_formation(&app, f.clone()).await.unwrap();
    store
        .set_formation(&app, f.clone())
        .await
        .expect("set_formation idempotent");
    assert_eq!(
        store.get_formation(&app).await.unwrap(),
        f,
        "formation round-trip"
    );

    let other = new_app(store, "st-cfg2").await;
    let d1 = Domain::new(format!("www.{app}.test")).unwrap();
    let d0 = Domain::new(format!("api.{app}.test")).unwrap();
    store.add_domain(&app, d1.clone()).await.unwrap();
    store.add_domain(&app, d0.clone()).await.unwrap();
    store
        .add_domain(&app, d1.clone())
        .await
        .expect("add_domain idempotent for same app");
    assert_eq!(
        store.list_domains(&app).await.unwrap(),
        vec![d0.clone(), d1.clone()],
        "domains sorted"
    );
    let e = store
        .add_domain(&other, d1.clone())
        .await
        .expect_err("domain of another app");
    assert_eq!(e.kind(), ErrorKind::Conflict, "domain conflict: {e}");
    assert!(
        store.list_domains(&other).await.unwrap().is_empty(),
        "conflict changed nothing"
    );
    store.remove_domain(&app, &d1).await.unwrap();
    let e = store
        .remove_domain(&app, &d1)
        .await
        .expect_err("remove missing domain");
    assert_eq!(e.kind(), ErrorKind::NotFound, "remove missing domain: {e}");
    store
        .add_domain(&other, d1.clone())
        .await
        .expect("domain free after removal");
    store.delete_app(&app).await.unwrap();
    store.delete_app(&other).await.unwrap();
}

/// Builds are immutable: same id + same content is Ok, different content AlreadyExists.
pub async fn builds(store: &dyn ReleaseStore) {
    let app = new_app(store, "st-builds").await;
    let b = sample_build(&app);
    store.put_build(b.clone()).await.unwrap();
    store
        .put_build(b.clone())
        .await
        .expect("identical put_build is Ok");
    assert_eq!(
        store.get_build(&app, &b.id).await.unwrap(),
        b,
        "build round-trip"
    );
    let mut changed = b.clone();
    changed.artifact.image = "example/other:2".into();
    let e = store.put_build(changed).await.expect_err("changed build");
    assert_eq!(
        e.kind(),
        ErrorKind::AlreadyExists,
        "builds never change: {e}"
    );
    assert_eq!(
        store.get_build(&app, &b.id).await.unwrap(),
        b,
        "build unchanged"
    );
    let e = store
        .get_build(&app, &BuildId::generate())
        .await
        .expect_err("unknown build");
    assert_eq!(e.kind(), ErrorKind::NotFound, "unknown build: {e}");
    store.delete_app(&app).await.unwrap();
}

/// append_release numbering, config snapshot, status, current_release and paging.
pub async fn releases(store: &dyn ReleaseStore) {
    let app = new_app(store, "st-rel").await;
    assert!(
        store.current_release(&app).await.unwrap().is_none(),
        "no current release yet"
    );
    let b = sample_build(&app);
    let e = store
        .append_release(new_release(&app, &b, Config::new(), "unstored build"))
        .await
        .expect_err("release of an unstored build");
    assert_eq!(e.kind(), ErrorKind::NotFound, "unstored build: {e}");
    store.put_build(b.clone()).await.unwrap();
    let c1 = config(&[("K", "1")]);
    let r1 = store
        .append_release(new_release(&app, &b, c1.clone(), "Deploy"))
        .await
        .unwrap();
    assert_eq!(r1.version, Version(1), "first release is v1");
    assert_eq!(r1.status, DeployStatus::Pending, "new release is pending");
    assert_eq!(
        store.get_config(&app).await.unwrap(),
        c1,
        "release config becomes current"
    );
    let c2 = config(&[("K", "2")]);
    let r2 = store
        .append_release(new_release(&app, &b, c2.clone(), "Set K"))
        .await
        .unwrap();
    assert_eq!(r2.version, Version(2));
    assert_eq!(
        store.get_release(&app, Version(1)).await.unwrap().config,
        c1,
        "v1 keeps its snapshot"
    );
    assert_eq!(store.get_config(&app).await.unwrap(), c2);

    store
        .set_release_status(&app, Version(1), DeployStatus::Succeeded)
        .await
        .unwrap();
    assert_eq!(
        store.current_release(&app).await.unwrap().unwrap().version,
        Version(1)
    );
    store
        .set_release_status(&app, Version(2), DeployStatus::Failed("unhealthy".into()))
        .await
        .unwrap();
    assert_eq!(
        store.current_release(&app).await.unwrap().unwrap().version,
        Version(1),
        "a failed release is not current"
    );
    assert_eq!(
        store.get_release(&app, Version(2)).await.unwrap().status,
        DeployStatus::Failed("unhealthy".into()),
        "status recorded"
    );
    let r2_again = store.get_release(&app, Version(2)).await.unwrap();
    assert_eq!(
        (r2_again.build, r2_again.description),
        (r2.build, r2.description),
        "release content immutable"
    );
    let e = store
        .set_release_status(&app, Version(99), DeployStatus::Succeeded)
        .await
        .expect_err("status of unknown release");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = store
        .get_release(&app, Version(99))
        .await
        .expect_err("unknown release");
    assert_eq!(e.kind(), ErrorKind::NotFound);

    for _ in 0..3 {
        store
            .append_release(new_release(&app, &b, c2.clone(), "more"))
            .await
            .unwrap();
    }
    let list = store
        .list_releases(&app, ListReleases::newest(3))
        .await
        .unwrap();
    let vs: Vec<u64> = list.iter().map(|r| r.version.0).collect();
    assert_eq!(vs, [5, 4, 3], "newest first with limit");
    let page = store
        .list_releases(&app, ListReleases::newest(10).before(Version(3)))
        .await
        .unwrap();
    let vs: Vec<u64> = page.iter().map(|r| r.version.0).collect();
    assert_eq!(vs, [2, 1], "paging with before");

    let other = new_app(store, "st-rel2").await;
    let e = store
        .append_release(new_release(&other, &b, Config::new(), "foreign build"))
        .await
        .expect_err("build of another app");
    assert!(
        matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound),
        "foreign build: {e}"
    );
    assert!(store
        .list_releases(&other, ListReleases::newest(5))
        .await
        .unwrap()
        .is_empty());
    store.delete_app(&app).await.unwrap();
    store.delete_app(&other).await.unwrap();
}

/// A deleted and re-created app starts at v1 again; versions of a live app only grow.
pub async fn versions_never_reused(store: &dyn ReleaseStore) {
    let app = new_app(store, "st-reuse").await;
    let b = sample_build(&app);
    store.put_build(b.clone()).await.unwrap();
    store
        .append_release(new_release(&app, &b, Config::new(), "a"))
        .await
        .unwrap();
    store
        .append_release(new_release(&app, &b, Config::new(), "b"))
        .await
        .unwrap();
    store.delete_app(&app).await.unwrap();
    store.create_app(App::new(app.clone())).await.unwrap();
    let b = sample_build(&app);
    store.put_build(b.clone()).await.unwrap();
    let r = store
        .append_release(new_release(&app, &b, Config::new(), "c"))
        .await
        .unwrap();
    assert_eq!(r.version, Version(1), "a re-created app starts at v1");
    store.delete_app(&app).await.unwrap();
}

/// `n` concurrent appends (one task, interleaved futures) give versions 1..=n.
pub async fn concurrent_appends(store: &dyn ReleaseStore, n: usize) {
    let app = new_app(store, "st-conc").await;
    let b = sample_build(&app);
    store.put_build(b.clone()).await.unwrap();
    let futs = (0..n)
        .map(|i| store.append_release(new_release(&app, &b, Config::new(), &format!("r{i}"))));
    let results = futures::future::join_all(futs).await;
    let mut vs: Vec<u64> = results
        .into_iter()
        .map(|r| r.expect("append").version.0)
        .collect();
    vs.sort();
    assert_eq!(
        vs,
        (1..=n as u64).collect::<Vec<_>>(),
        "versions 1..={n}, no gap, no duplicate"
    );
    store.delete_app(&app).await.unwrap();
}

/// `n` appends from spawned tasks (truly parallel) give versions 1..=n.
pub async fn concurrent_appends_spawned(store: Arc<dyn ReleaseStore>, n: usize) {
    let app = new_app(store.as_ref(), "st-spawn").await;
    let b = sample_build(&app);
    store.put_build(b.clone()).await.unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = store.clone();
            let r = new_release(&app, &b, Config::new(), &format!("r{i}"));
            tokio::spawn(async move { store.append_release(r).await })
        })
        .collect();
    let mut vs = Vec::new();
    for t in tasks {
        vs.push(t.await.expect("task").expect("append").version.0);
    }
    vs.sort();
    assert_eq!(
        vs,
        (1..=n as u64).collect::<Vec<_>>(),
        "versions 1..={n} from {n} tasks"
    );
    store.delete_app(&app).await.unwrap();
}

/// Config values never appear in errors or in `Debug` output of what the store returns.
pub async fn errors_carry_no_secrets(store: &dyn ReleaseStore) {
    let app = new_app(store, "st-secret").await;
    let cfg = config(&[("TOKEN", CANARY)]);
    store.set_config(&app, cfg.clone()).await.unwrap();
    let b = sample_build(&app);
    store.put_build(b.clone()).await.unwrap();
    let r = store
        .append_release(new_release(&app, &b, cfg, "secret"))
        .await
        .unwrap();
    let dbg = format!("{r:?} {:?}", store.get_config(&app).await.unwrap());
    assert!(!dbg.contains(CANARY), "Debug output leaks a config value");
    let errors = [
        store.create_app(App::new(app.clone())).await.unwrap_err(),
        store.get_release(&app, Version(42)).await.unwrap_err(),
        store
            .remove_domain(&app, &Domain::new("nope.test").unwrap())
            .await
            .unwrap_err(),
    ];
    for e in errors {
        assert!(
            !format!("{e} {e:?}").contains(CANARY),
            "error leaks a config value: {e}"
        );
    }
    let _ = ProcessType::web();
    store.delete_app(&app).await.unwrap();
}
