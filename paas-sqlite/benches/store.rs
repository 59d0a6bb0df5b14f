//! Benchmark (not a test): appends per second, and list-releases latency for an app with
//! 10,000 releases, for SqliteReleaseStore (synchronous FULL, the default, and NORMAL) next to
//! paas-core's MemoryReleaseStore.
//!
//! Run: `cargo bench -p paas-sqlite --bench store` (set `PAAS_BENCH_DIR` to put the database
//! on a specific disk; the default is the system temporary directory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use paas_core::memory::MemoryReleaseStore;
use paas_core::{
    App, AppName, Artifact, Build, BuildId, Config, ConfigKey, ConfigValue, ListReleases,
    NewRelease, Procfile, ReleaseStore, Timestamp, Version,
};
use paas_sqlite::{SqliteReleaseStore, SqliteStoreOptions, SyncMode};

const HISTORY: u64 = 10_000;

fn app(name: &str) -> AppName {
    AppName::new(name).unwrap()
}

fn build(app_name: &str) -> Build {
    Build {
        id: BuildId::new("b1").unwrap(),
        app: app(app_name),
        commit: None,
        artifact: Artifact {
            image: "registry.example.com/app@sha256:0123456789abcdef".into(),
        },
        procfile: Procfile::parse("web: ./server --port $PORT\nworker: ./worker\n").unwrap(),
        strategy: "dockerfile".into(),
        created_at: Timestamp::now(),
    }
}

fn config(i: u64) -> Config {
    [
        ("DATABASE_URL", format!("postgres://user:pw{i}@db/app")),
        ("SECRET_KEY_BASE", format!("{i:064x}")),
        ("RAILS_ENV", "production".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (ConfigKey::new(k).unwrap(), ConfigValue::new(v).unwrap()))
    .collect()
}

async fn prepare(store: &dyn ReleaseStore, name: &str) {
    store.create_app(App::new(app(name))).await.unwrap();
    store.put_build(build(name)).await.unwrap();
}

fn release(name: &str, i: u64) -> NewRelease {
    NewRelease {
        app: app(name),
        build: build(name),
        config: config(i),
        description: format!("Set DATABASE_URL config vars ({i})"),
    }
}

/// Sequential appends by one task; returns appends per second.
async fn appends_sequential(store: &dyn ReleaseStore, name: &str, n: u64) -> f64 {
    prepare(store, name).await;
    let t = Instant::now();
    for i in 0..n {
        store.append_release(release(name, i)).await.unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// `tasks` tasks appending concurrently to one app; returns appends per second.
async fn appends_concurrent(
    store: Arc<dyn ReleaseStore>,
    name: &str,
    tasks: u64,
    each: u64,
) -> f64 {
    prepare(&*store, name).await;
    let t = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        let name = name.to_string();
        handles.push(tokio::spawn(async move {
            for i in 0..each {
                store.append_release(release(&name, i)).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (tasks * each) as f64 / t.elapsed().as_secs_f64()
}

struct Stats {
    median: Duration,
    p95: Duration,
}

async fn measure<F, Fut>(iters: usize, mut f: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut v = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f().await;
        v.push(t.elapsed());
    }
    v.sort();
    Stats {
        median: v[v.len() / 2],
        p95: v[(v.len() * 95 / 100).min(v.len() - 1)],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

async fn fill(store: &dyn ReleaseStore, name: &str) {
    prepare(store, name).await;
    for i in 0..HISTORY {
        store.append_release(release(name, i)).await.unwrap();
    }
    store
        .set_release_status(
            &app(name),
            Version(HISTORY / 2),
            paas_core::DeployStatus::Succeeded,
        )
        .await
        .unwrap();
}

/// (label, median, p95) for each list query on an app with HISTORY releases.
async fn list_latencies(store: &dyn ReleaseStore, name: &str) -> Vec<(&'static str, Stats)> {
    let a = app(name);
    let mut out = Vec::new();
    out.push((
        "list newest 20",
        measure(300, || async {
            assert_eq!(
                store
                    .list_releases(&a, ListReleases::newest(20))
                    .await
                    .unwrap()
                    .len(),
                20
            );
        })
        .await,
    ));
    out.push((
        "list newest 100",
        measure(200, || async {
            store
                .list_releases(&a, ListReleases::newest(100))
                .await
                .unwrap();
        })
        .await,
    ));
    out.push((
        "list 20 before v5000 (paging)",
        measure(300, || async {
            store
                .list_releases(&a, ListReleases::newest(20).before(Version(5000)))
                .await
                .unwrap();
        })
        .await,
    ));
    out.push((
        "list all 10,000",
        measure(10, || async {
            let all = store
                .list_releases(&a, ListReleases::newest(usize::MAX))
                .await
                .unwrap();
            assert_eq!(all.len() as u64, HISTORY);
        })
        .await,
    ));
    out.push((
        "get_release",
        measure(300, || async {
            store.get_release(&a, Version(1234)).await.unwrap();
        })
        .await,
    ));
    out.push((
        "current_release (v5000 of 10,000)",
        measure(300, || async {
            store.current_release(&a).await.unwrap().unwrap();
        })
        .await,
    ));
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var_os("PAAS_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    rt.block_on(async {
        println!(
            "paas-sqlite ReleaseStore benchmark (database in {})",
            dir.path().display()
        );
        println!();
        println!("## appends per second (one app; each append = 1 transaction)");
        let memory: Arc<dyn ReleaseStore> = Arc::new(MemoryReleaseStore::new());
        let full: Arc<dyn ReleaseStore> = Arc::new(
            SqliteReleaseStore::open_with(SqliteStoreOptions::new(dir.path().join("full.db")))
                .await
                .unwrap(),
        );
        let normal: Arc<dyn ReleaseStore> = Arc::new(
            SqliteReleaseStore::open_with(
                SqliteStoreOptions::new(dir.path().join("normal.db")).sync_mode(SyncMode::Normal),
            )
            .await
            .unwrap(),
        );
        let mem_seq = appends_sequential(&*memory, "seq", 20_000).await;
        let full_seq = appends_sequential(&*full, "seq", 500).await;
        let normal_seq = appends_sequential(&*normal, "seq", 3_000).await;
        let mem_conc = appends_concurrent(memory.clone(), "conc", 8, 2_500).await;
        let full_conc = appends_concurrent(full.clone(), "conc", 8, 60).await;
        let normal_conc = appends_concurrent(normal.clone(), "conc", 8, 400).await;
        println!("{:<40} {:>14} {:>14}", "store", "1 task", "8 tasks");
        for (label, seq, conc) in [
            ("memory (paas-core)", mem_seq, mem_conc),
            ("sqlite synchronous=FULL (default)", full_seq, full_conc),
            ("sqlite synchronous=NORMAL", normal_seq, normal_conc),
        ] {
            println!("{label:<40} {seq:>10.0} /s {conc:>10.0} /s");
        }
        println!(
            "ratios: FULL is {:.0}x slower than memory, {:.1}x slower than NORMAL (1 task)",
            mem_seq / full_seq,
            normal_seq / full_seq
        );
        println!();

        println!("## latency with {HISTORY} releases in one app (median / p95)");
        // The history is written with NORMAL (a fixture), then read through a FULL store:
        // reads do not depend on the sync mode.
        let fixture = dir.path().join("history.db");
        {
            let s = SqliteReleaseStore::open_with(
                SqliteStoreOptions::new(&fixture).sync_mode(SyncMode::Normal),
            )
            .await
            .unwrap();
            fill(&s, "history").await;
            s.close().await;
        }
        let sqlite = SqliteReleaseStore::open(&fixture).await.unwrap();
        let memory = MemoryReleaseStore::new();
        fill(&memory, "history").await;
        let sq = list_latencies(&sqlite, "history").await;
        let mem = list_latencies(&memory, "history").await;
        println!(
            "{:<36} {:>24} {:>24} {:>8}",
            "query", "sqlite", "memory", "ratio"
        );
        for ((label, s), (_, m)) in sq.iter().zip(&mem) {
            println!(
                "{label:<36} {:>24} {:>24} {:>7.1}x",
                format!("{} / {}", ms(s.median), ms(s.p95)),
                format!("{} / {}", ms(m.median), ms(m.p95)),
                s.median.as_secs_f64() / m.median.as_secs_f64().max(1e-9)
            );
        }
        let size = std::fs::metadata(&fixture).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(dir.path().join("history.db-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
        println!(
            "database size with {HISTORY} releases: {:.1} MiB",
            size as f64 / 1048576.0
        );
    });
}
