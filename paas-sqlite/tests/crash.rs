//! Crash test: a child process appends releases and changes config in a loop, printing every
//! acknowledged write; the parent kill -9s it at random moments, many times. After each kill
//! the store must open cleanly, hold every acknowledged write, have contiguous versions, and
//! show no half-written operation (a release without its config change, or the reverse).
//!
//! The child is this test binary re-executed with `PAAS_SQLITE_CRASH_CHILD_DB` set: it then
//! runs the `crash_child` test, which is a no-op in a normal run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use paas_core::{
    App, AppName, Artifact, Build, BuildId, Config, ConfigKey, ConfigValue, ErrorKind,
    ListReleases, NewRelease, Procfile, ReleaseStore, Timestamp,
};
use paas_sqlite::SqliteReleaseStore;

const CHILD_DB: &str = "PAAS_SQLITE_CRASH_CHILD_DB";
const CHILD_ROUND: &str = "PAAS_SQLITE_CRASH_CHILD_ROUND";
const ROUNDS: u32 = 25;
const APP: &str = "crashy";

fn app() -> AppName {
    AppName::new(APP).unwrap()
}

fn the_build() -> Build {
    Build {
        id: BuildId::new("b1").unwrap(),
        app: app(),
        commit: None,
        artifact: Artifact {
            image: "img".into(),
        },
        procfile: Procfile::parse("web: ./server\n").unwrap(),
        strategy: "image".into(),
        created_at: Timestamp(1),
    }
}

/// Operation `k` of a round: releases, with every third operation a config change.
fn is_release_op(k: u64) -> bool {
    k % 3 != 2
}

/// The config written by operation `tag`: several pages' worth, so a torn write would show.
fn op_config(tag: &str, release: bool) -> Config {
    let pad: String = tag.repeat(3000 / tag.len() + 1);
    [
        ("TAG", tag.to_string()),
        ("KIND", if release { "rel" } else { "set" }.to_string()),
        ("SECRET", format!("s3cr3t-{tag}")),
        ("PAD", pad),
    ]
    .into_iter()
    .map(|(k, v)| (ConfigKey::new(k).unwrap(), ConfigValue::new(v).unwrap()))
    .collect()
}

/// The child: append and set config forever, printing `ACK ...` after each `Ok`.
#[test]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return; // a normal test run: nothing to do
    };
    let round: u32 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = SqliteReleaseStore::open(&db).await.expect("child open");
        match store.create_app(App::new(app())).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => panic!("create_app: {e}"),
        }
        store.put_build(the_build()).await.expect("put_build");
        say("READY");
        for k in 0u64.. {
            let tag = format!("{round}-{k}");
            if is_release_op(k) {
                let r = store
                    .append_release(NewRelease {
                        app: app(),
                        build: the_build(),
                        config: op_config(&tag, true),
                        description: tag.clone(),
                    })
                    .await
                    .expect("append");
                say(&format!("ACK release {} {k}", r.version.0));
            } else {
                store
                    .set_config(&app(), op_config(&tag, false))
                    .await
                    .expect("set_config");
                say(&format!("ACK config 0 {k}"));
            }
        }
    });
}

/// Prints a protocol line. The `@@` marker separates it from libtest's own output, which may
/// share the line (`test crash_child ... @@READY`).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@{line}").unwrap();
    out.flush().unwrap();
}

/// What one round's child acknowledged.
#[derive(Default)]
struct Acks {
    ready: bool,
    /// op index -> version (releases) or 0 (config changes)
    ops: BTreeMap<u64, u64>,
}

fn run_child(db: &Path, round: u32) -> Acks {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, db)
        .env(CHILD_ROUND, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });

    let mut lines = Vec::new();
    // Every fifth round, kill early: during open, migration or key creation.
    if round.is_multiple_of(5) {
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..40)));
    } else {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    let ready = l.ends_with("@@READY");
                    lines.push(l);
                    if ready {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "round {round}: child never became ready; stderr:\n{}",
                        err_reader.join().unwrap()
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(1..150)));
    }
    child.kill().expect("kill -9"); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "round {round}: the child exited by itself"
    );
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let stderr = err_reader.join().unwrap();
    assert!(
        !stderr.contains("panicked"),
        "round {round}: the child failed:\n{stderr}"
    );

    let mut acks = Acks::default();
    for l in lines {
        let Some((_, l)) = l.split_once("@@") else {
            continue;
        };
        if l == "READY" {
            acks.ready = true;
        } else if let Some(rest) = l.strip_prefix("ACK ") {
            let parts: Vec<&str> = rest.split(' ').collect();
            let version: u64 = parts[1].parse().unwrap();
            let k: u64 = parts[2].parse().unwrap();
            assert_eq!(parts[0] == "release", is_release_op(k));
            acks.ops.insert(k, version);
        }
    }
    // Operations are sequential: the acknowledged ones are 0..n.
    assert!(
        acks.ops.keys().copied().eq(0..acks.ops.len() as u64),
        "round {round}: acknowledgements out of order"
    );
    acks
}

async fn integrity_check(db: &Path) {
    use sqlx::{Connection, Row};
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let row = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(0), "ok");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert!(fk.is_empty(), "foreign key violations after a crash");
    c.close().await.unwrap();
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db: PathBuf = dir.path().join("records.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Every acknowledged release over all rounds: version -> tag.
    let mut acked_releases: BTreeMap<u64, String> = BTreeMap::new();
    // The config the store held after the previous round, once the app exists.
    let mut prev_config: Option<Config> = None;
    let mut total_acks = 0usize;
    let mut rounds_with_writes = 0;
    // Kills that landed after a commit but before its acknowledgement was printed.
    let mut unacknowledged_commits = 0;

    for round in 0..ROUNDS {
        let acks = run_child(&db, round);
        total_acks += acks.ops.len();
        if !acks.ops.is_empty() {
            rounds_with_writes += 1;
        }
        for (k, v) in &acks.ops {
            if is_release_op(*k) {
                assert!(
                    acked_releases.insert(*v, format!("{round}-{k}")).is_none(),
                    "round {round}: version v{v} acknowledged twice"
                );
            }
        }

        rt.block_on(async {
            // Opens cleanly after the kill (recovery of the log, no migration left half-done).
            let store = SqliteReleaseStore::open(&db)
                .await
                .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
            let exists = store.get_app(&app()).await.is_ok();
            if !exists {
                assert!(acks.ops.is_empty() && acked_releases.is_empty());
                store.close().await;
                return;
            }
            let all = store
                .list_releases(&app(), ListReleases::newest(usize::MAX))
                .await
                .unwrap_or_else(|e| panic!("round {round}: list failed: {e}"));
            let n = all.len() as u64;
            // Contiguous: n, n-1, ..., 1.
            assert!(
                all.iter().map(|r| r.version.0).eq((1..=n).rev()),
                "round {round}: versions are not contiguous"
            );
            // Every release is whole: its config is the one its operation wrote.
            for r in &all {
                assert_eq!(
                    r.config,
                    op_config(&r.description, true),
                    "round {round}: release {} is not whole",
                    r.version
                );
                assert_eq!(r.build, the_build());
            }
            // Every acknowledged release is there, under the version that was acknowledged.
            for (v, tag) in &acked_releases {
                assert!(*v <= n, "round {round}: acknowledged v{v} is missing");
                assert_eq!(&all[(n - v) as usize].description, tag, "round {round}: v{v}");
            }
            // Releases of this round: the acknowledged ones, plus at most the in-flight one.
            let next_k = acks.ops.len() as u64;
            let in_flight_tag = format!("{round}-{next_k}");
            let this_round: Vec<&str> = all
                .iter()
                .rev()
                .map(|r| r.description.as_str())
                .filter(|d| d.starts_with(&format!("{round}-")))
                .collect();
            let acked_this_round: Vec<String> = acks
                .ops
                .keys()
                .filter(|k| is_release_op(**k))
                .map(|k| format!("{round}-{k}"))
                .collect();
            let in_flight_release_committed = this_round.last() == Some(&in_flight_tag.as_str());
            let expected_len = acked_this_round.len() + usize::from(in_flight_release_committed);
            assert_eq!(this_round.len(), expected_len, "round {round}: unexpected releases");
            assert!(this_round.iter().zip(&acked_this_round).all(|(a, b)| a == b));
            if in_flight_release_committed {
                assert!(is_release_op(next_k));
                // A found release was acknowledged in the store: record it for later rounds.
                acked_releases.insert(n, in_flight_tag.clone());
            }
            // The current config: the last acknowledged operation's, or the in-flight one's if
            // it committed; a committed in-flight release must come with its config, and the
            // reverse.
            let current = store.get_config(&app()).await.unwrap();
            let last_acked = acks.ops.keys().last().map(|k| {
                let tag = format!("{round}-{k}");
                op_config(&tag, is_release_op(*k))
            });
            let before = last_acked.or_else(|| prev_config.clone());
            let in_flight = op_config(&in_flight_tag, is_release_op(next_k));
            if current == in_flight {
                unacknowledged_commits += 1;
                assert_eq!(
                    in_flight_release_committed,
                    is_release_op(next_k),
                    "round {round}: config of the in-flight release without the release"
                );
            } else {
                assert!(
                    !in_flight_release_committed,
                    "round {round}: in-flight release committed without its config"
                );
                if let Some(before) = &before {
                    assert!(
                        &current == before,
                        "round {round}: the current config is neither the last acknowledged nor the in-flight one"
                    );
                }
            }
            prev_config = Some(current);
            store.close().await;
        });
        rt.block_on(integrity_check(&db));
    }
    eprintln!(
        "crash test: {ROUNDS} kills, {total_acks} acknowledged writes ({rounds_with_writes} rounds with writes), \
         {unacknowledged_commits} kills between a commit and its acknowledgement, {} releases verified",
        acked_releases.len()
    );
    assert!(
        rounds_with_writes >= ROUNDS as usize / 2,
        "too few rounds got to write anything"
    );
}
