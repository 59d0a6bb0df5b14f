//! SqliteReleaseStore: contracts, concurrency, persistence, migrations and secrets at rest.

use std::sync::Arc;

use paas_core::{
    App, AppName, Artifact, Build, BuildId, Config, ConfigKey, ConfigValue, DeployStatus, Domain,
    ErrorKind, Formation, ListReleases, NewRelease, ProcessType, Procfile, ReleaseStore, Timestamp,
    Version,
};
use paas_sqlite::{SqliteReleaseStore, SqliteStoreOptions, SyncMode, SCHEMA_VERSION};

fn name(s: &str) -> AppName {
    AppName::new(s).unwrap()
}

fn build(app: &str, id: &str) -> Build {
    Build {
        id: BuildId::new(id).unwrap(),
        app: name(app),
        commit: None,
        artifact: Artifact {
            image: format!("img-{id}"),
        },
        procfile: Procfile::parse("web: ./server\n").unwrap(),
        strategy: "image".into(),
        created_at: Timestamp(1_700_000_000_000),
    }
}

fn config(pairs: &[(&str, &str)]) -> Config {
    pairs
        .iter()
        .map(|(k, v)| (ConfigKey::new(*k).unwrap(), ConfigValue::new(*v).unwrap()))
        .collect()
}

fn new_release(app: &str, b: &Build, cfg: Config, desc: &str) -> NewRelease {
    NewRelease {
        app: name(app),
        build: b.clone(),
        config: cfg,
        description: desc.into(),
    }
}

async fn open(dir: &tempfile::TempDir) -> SqliteReleaseStore {
    SqliteReleaseStore::open(dir.path().join("records.db"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_appends_give_1_to_100() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ReleaseStore> = Arc::new(open(&dir).await);
    store.create_app(App::new(name("busy"))).await.unwrap();
    let b = build("busy", "b1");
    store.put_build(b.clone()).await.unwrap();

    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let cfg = config(&[("N", &i.to_string())]);
            let r = store
                .append_release(new_release("busy", &b, cfg, &format!("task {i}")))
                .await
                .unwrap();
            (r.version.0, i)
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    let mut versions: Vec<u64> = got.iter().map(|(v, _)| *v).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=100).collect::<Vec<_>>());

    // Every release holds the config of the task that got its version, and the app's current
    // config is the one of v100: version allocation and config change are one write.
    let all = store
        .list_releases(&name("busy"), ListReleases::newest(1000))
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.version.0).collect::<Vec<_>>(),
        (1..=100).rev().collect::<Vec<_>>()
    );
    for (v, i) in &got {
        let r = &all[100 - *v as usize];
        assert_eq!(r.description, format!("task {i}"));
        assert_eq!(r.config.get("N").unwrap().expose(), i.to_string());
    }
    assert_eq!(
        store.get_config(&name("busy")).await.unwrap(),
        all[0].config
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_serialize_through_sqlite_locks() {
    // Two handles on the same file behave like two processes: each has its own write
    // connection, and SQLite's lock (BEGIN IMMEDIATE + busy timeout) serializes them.
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<dyn ReleaseStore> = Arc::new(open(&dir).await);
    let b: Arc<dyn ReleaseStore> = Arc::new(open(&dir).await);
    a.create_app(App::new(name("shared"))).await.unwrap();
    let bd = build("shared", "b1");
    b.put_build(bd.clone()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let bd = bd.clone();
        tasks.push(tokio::spawn(async move {
            s.append_release(new_release("shared", &bd, Config::new(), "x"))
                .await
                .unwrap()
                .version
                .0
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let app = name("keep");
    {
        let s = open(&dir).await;
        s.create_app(App {
            name: app.clone(),
            created_at: Timestamp(42),
        })
        .await
        .unwrap();
        s.set_config(&app, config(&[("EARLY", "1")])).await.unwrap();
        let mut f = Formation::new();
        f.set(ProcessType::web(), 3).unwrap();
        s.set_formation(&app, f).await.unwrap();
        s.add_domain(&app, Domain::new("keep.example.com").unwrap())
            .await
            .unwrap();
        let b = build("keep", "b1");
        s.put_build(b.clone()).await.unwrap();
        s.append_release(new_release("keep", &b, config(&[("A", "1")]), "Deploy"))
            .await
            .unwrap();
        s.append_release(new_release("keep", &b, config(&[("A", "2")]), "Set A"))
            .await
            .unwrap();
        s.set_release_status(&app, Version(1), DeployStatus::Succeeded)
            .await
            .unwrap();
        s.set_release_status(&app, Version(2), DeployStatus::Failed("unhealthy".into()))
            .await
            .unwrap();
        s.close().await;
    }
    let s = open(&dir).await;
    assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(s.get_app(&app).await.unwrap().created_at, Timestamp(42));
    assert_eq!(s.get_config(&app).await.unwrap(), config(&[("A", "2")]));
    assert_eq!(
        s.get_formation(&app)
            .await
            .unwrap()
            .get(&ProcessType::web()),
        3
    );
    assert_eq!(
        s.list_domains(&app).await.unwrap(),
        vec![Domain::new("keep.example.com").unwrap()]
    );
    assert_eq!(
        s.get_build(&app, &BuildId::new("b1").unwrap())
            .await
            .unwrap(),
        build("keep", "b1")
    );
    let r2 = s.get_release(&app, Version(2)).await.unwrap();
    assert_eq!(r2.status, DeployStatus::Failed("unhealthy".into()));
    assert_eq!(r2.description, "Set A");
    assert_eq!(r2.build, build("keep", "b1"));
    assert_eq!(
        s.current_release(&app).await.unwrap().unwrap().version,
        Version(1)
    );
    // The counter survived too.
    let b = build("keep", "b1");
    let r3 = s
        .append_release(new_release("keep", &b, Config::new(), "again"))
        .await
        .unwrap();
    assert_eq!(r3.version, Version(3));
}

#[tokio::test]
async fn contract_errors_and_paging() {
    let s = SqliteReleaseStore::open_in_memory().await.unwrap();
    let a = name("alpha");
    let ghost = name("ghost");
    s.create_app(App::new(a.clone())).await.unwrap();
    assert_eq!(
        s.create_app(App::new(a.clone())).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    for e in [
        s.get_app(&ghost).await.unwrap_err(),
        s.get_config(&ghost).await.unwrap_err(),
        s.set_config(&ghost, Config::new()).await.unwrap_err(),
        s.get_formation(&ghost).await.unwrap_err(),
        s.list_domains(&ghost).await.unwrap_err(),
        s.list_releases(&ghost, ListReleases::newest(5))
            .await
            .unwrap_err(),
        s.current_release(&ghost).await.unwrap_err(),
        s.delete_app(&ghost).await.unwrap_err(),
        s.put_build(build("ghost", "b")).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_eq!(e.backend(), Some("sqlite"));
        assert!(e.operation().is_some());
    }
    // Builds.
    let b = build("alpha", "b1");
    s.put_build(b.clone()).await.unwrap();
    s.put_build(b.clone()).await.unwrap();
    let mut other = b.clone();
    other.artifact.image = "different".into();
    assert_eq!(
        s.put_build(other).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        s.get_build(&a, &BuildId::new("nope").unwrap())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // Releases: missing build, foreign build, missing app.
    let missing = build("alpha", "b2");
    let e = s
        .append_release(new_release("alpha", &missing, Config::new(), "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = s
        .append_release(new_release(
            "alpha",
            &build("beta", "b1"),
            Config::new(),
            "x",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = s
        .append_release(new_release(
            "ghost",
            &build("ghost", "b1"),
            Config::new(),
            "x",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // Failed appends consumed no version.
    for i in 1..=25 {
        let r = s
            .append_release(new_release(
                "alpha",
                &b,
                config(&[("I", &i.to_string())]),
                "r",
            ))
            .await
            .unwrap();
        assert_eq!(r.version, Version(i));
        assert_eq!(r.status, DeployStatus::Pending);
    }
    let page = s
        .list_releases(&a, ListReleases::newest(10).before(Version(20)))
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.version.0).collect::<Vec<_>>(),
        (10..=19).rev().collect::<Vec<_>>()
    );
    assert!(s
        .list_releases(&a, ListReleases::newest(0))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.get_release(&a, Version(26)).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.get_release(&a, Version(u64::MAX))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.set_release_status(&a, Version(99), DeployStatus::Succeeded)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(s.current_release(&a).await.unwrap().is_none());
    s.set_release_status(&a, Version(3), DeployStatus::Succeeded)
        .await
        .unwrap();
    s.set_release_status(&a, Version(7), DeployStatus::Succeeded)
        .await
        .unwrap();
    s.set_release_status(&a, Version(9), DeployStatus::Failed("boom".into()))
        .await
        .unwrap();
    assert_eq!(
        s.current_release(&a).await.unwrap().unwrap().version,
        Version(7)
    );

    // Domains.
    let d = Domain::new("www.example.com").unwrap();
    s.create_app(App::new(name("beta"))).await.unwrap();
    s.add_domain(&a, d.clone()).await.unwrap();
    s.add_domain(&a, d.clone()).await.unwrap();
    assert_eq!(
        s.add_domain(&name("beta"), d.clone())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        s.remove_domain(&name("beta"), &d).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    s.add_domain(&a, Domain::new("a.example.com").unwrap())
        .await
        .unwrap();
    assert_eq!(
        s.list_domains(&a).await.unwrap(),
        vec![Domain::new("a.example.com").unwrap(), d.clone()]
    );
    assert_eq!(
        s.list_apps()
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.name.to_string())
            .collect::<Vec<_>>(),
        vec!["alpha", "beta"]
    );

    // Delete: everything goes, the counter included, and the domain is free again.
    s.delete_app(&a).await.unwrap();
    assert_eq!(s.get_app(&a).await.unwrap_err().kind(), ErrorKind::NotFound);
    s.add_domain(&name("beta"), d.clone()).await.unwrap();
    s.create_app(App::new(a.clone())).await.unwrap();
    assert!(s.get_config(&a).await.unwrap().is_empty());
    assert!(s
        .list_releases(&a, ListReleases::newest(100))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.get_build(&a, &b.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    s.put_build(b.clone()).await.unwrap();
    let r = s
        .append_release(new_release("alpha", &b, Config::new(), "fresh"))
        .await
        .unwrap();
    assert_eq!(r.version, Version(1));
}

#[tokio::test]
async fn newer_schema_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    {
        let s = SqliteReleaseStore::open(&path).await.unwrap();
        s.create_app(App::new(name("old"))).await.unwrap();
        s.close().await;
    }
    // A newer paas-sqlite recorded migration SCHEMA_VERSION + 1.
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, 'future', 0)",
        )
        .bind(SCHEMA_VERSION + 1)
        .execute(&mut c)
        .await
        .unwrap();
        // Say that version also left WAL: refusing it must not switch it back.
        sqlx::query("PRAGMA journal_mode = DELETE")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = SqliteReleaseStore::open(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("newer"), "{e}");
    assert!(
        e.message().contains(&format!("{}", SCHEMA_VERSION + 1)),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    assert!(!dir.path().join("records.db-wal").exists());
}

#[tokio::test]
async fn foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        use sqlx::Connection;
        let mut c =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .unwrap();
        sqlx::raw_sql("CREATE TABLE users (id INTEGER PRIMARY KEY)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let e = SqliteReleaseStore::open(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("not a paas-sqlite database"), "{e}");
    // Not a SQLite file at all.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    let e = SqliteReleaseStore::open(&junk).await.unwrap_err();
    assert!(
        e.to_string().contains("not a SQLite database") || e.to_string().contains("not a database"),
        "{e}"
    );
    // Missing, when creation is off.
    let e = SqliteReleaseStore::open_with(
        SqliteStoreOptions::new(dir.path().join("missing.db")).create_if_missing(false),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn config_values_are_sealed_at_rest_and_never_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let secret = "sk_live_TOPSECRET_4f9a";
    let app = name("payments");
    {
        let s =
            SqliteReleaseStore::open_with(SqliteStoreOptions::new(&path).sync_mode(SyncMode::Full))
                .await
                .unwrap();
        s.create_app(App::new(app.clone())).await.unwrap();
        s.set_config(&app, config(&[("STRIPE_KEY", secret)]))
            .await
            .unwrap();
        let b = build("payments", "b1");
        s.put_build(b.clone()).await.unwrap();
        s.append_release(new_release(
            "payments",
            &b,
            config(&[("STRIPE_KEY", secret)]),
            "Deploy",
        ))
        .await
        .unwrap();
        assert!(!format!("{s:?}").contains(secret));
        // Raw bytes of the database and its log, while open (the commit sits in the WAL).
        for f in ["records.db", "records.db-wal"] {
            if let Ok(bytes) = std::fs::read(dir.path().join(f)) {
                assert!(
                    !contains(&bytes, secret.as_bytes()),
                    "{f} holds the secret in clear"
                );
                assert!(
                    !contains(&bytes, b"TOPSECRET"),
                    "{f} holds part of the secret"
                );
            }
        }
        s.close().await;
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(!contains(&bytes, secret.as_bytes()));

    // The key file is private.
    let key = dir.path().join("records.db.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Wrong key: a clear error at open, nothing about the values.
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let e = SqliteReleaseStore::open(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("key file"), "{e}");
    assert!(
        !key.exists(),
        "a new key must not be created for a database that has one"
    );
    let other = dir.path().join("other.key");
    let s2 = SqliteReleaseStore::open_with(
        SqliteStoreOptions::new(dir.path().join("x.db")).key_file(&other),
    )
    .await
    .unwrap();
    s2.close().await;
    let e = SqliteReleaseStore::open_with(SqliteStoreOptions::new(&path).key_file(&other))
        .await
        .unwrap_err();
    assert!(e.message().contains("is not the key"), "{e}");
    assert!(!e.to_string().contains(secret));

    // The right key again: values come back.
    std::fs::write(&key, saved).unwrap();
    let s = SqliteReleaseStore::open(&path).await.unwrap();
    assert_eq!(
        s.get_config(&app)
            .await
            .unwrap()
            .get("STRIPE_KEY")
            .unwrap()
            .expose(),
        secret
    );
    let r = s.get_release(&app, Version(1)).await.unwrap();
    assert_eq!(r.config.get("STRIPE_KEY").unwrap().expose(), secret);
    assert!(!format!("{r:?}").contains(secret));
}

#[tokio::test]
async fn key_file_can_live_elsewhere() {
    let db_dir = tempfile::tempdir().unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("paas.key");
    let opts = SqliteStoreOptions::new(db_dir.path().join("r.db")).key_file(&key);
    let s = SqliteReleaseStore::open_with(opts.clone()).await.unwrap();
    assert_eq!(s.key_file(), Some(key.as_path()));
    s.create_app(App::new(name("k"))).await.unwrap();
    s.set_config(&name("k"), config(&[("A", "b")]))
        .await
        .unwrap();
    s.close().await;
    assert!(key.exists());
    assert!(!db_dir.path().join("r.db.key").exists());
    let s = SqliteReleaseStore::open_with(opts).await.unwrap();
    assert_eq!(
        s.get_config(&name("k")).await.unwrap(),
        config(&[("A", "b")])
    );
}

#[tokio::test]
async fn releases_are_immutable_and_versions_come_from_the_counter() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let app = name("imm");
    let b = build("imm", "b1");
    {
        let s = SqliteReleaseStore::open(&path).await.unwrap();
        s.create_app(App::new(app.clone())).await.unwrap();
        s.put_build(b.clone()).await.unwrap();
        for _ in 0..3 {
            s.append_release(new_release("imm", &b, Config::new(), "r"))
                .await
                .unwrap();
        }
        s.close().await;
    }
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // Anything but the deploy status is refused by the database itself.
    let e = sqlx::query("UPDATE releases SET description = 'rewritten' WHERE version = 1")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("immutable"), "{e}");
    sqlx::query("UPDATE releases SET status = 'succeeded' WHERE version = 1")
        .execute(&mut c)
        .await
        .unwrap();
    // Even if the newest release row vanished, its version is not handed out again.
    sqlx::query("DELETE FROM releases WHERE version = 3")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let s = SqliteReleaseStore::open(&path).await.unwrap();
    let r = s
        .append_release(new_release("imm", &b, Config::new(), "after"))
        .await
        .unwrap();
    assert_eq!(r.version, Version(4));
}

#[tokio::test]
async fn reads_proceed_and_see_acknowledged_writes_during_concurrent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn ReleaseStore> = Arc::new(open(&dir).await);
    let app = name("rw");
    s.create_app(App::new(app.clone())).await.unwrap();
    let b = build("rw", "b1");
    s.put_build(b.clone()).await.unwrap();
    let writer = {
        let s = s.clone();
        let b = b.clone();
        tokio::spawn(async move {
            for i in 0..50u64 {
                let r = s
                    .append_release(new_release("rw", &b, config(&[("I", &i.to_string())]), "w"))
                    .await
                    .unwrap();
                // Read-your-writes through the read pool.
                let got = s.get_release(&name("rw"), r.version).await.unwrap();
                assert_eq!(got.config, r.config);
                assert_eq!(s.get_config(&name("rw")).await.unwrap(), r.config);
            }
        })
    };
    // Meanwhile, listings only ever see whole, contiguous histories.
    for _ in 0..50 {
        let l = s
            .list_releases(&app, ListReleases::newest(1000))
            .await
            .unwrap();
        let n = l.len() as u64;
        assert!(l.iter().map(|r| r.version.0).eq((1..=n).rev()));
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
}
