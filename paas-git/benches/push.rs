//! Push benchmark (not a test; not run in CI): the same generated ~15 MB repository pushed
//! through `GitHttpService` on a loopback port and to a plain `file://` bare repository, then an
//! incremental one-file push to each. Prints the medians and the ratios.
//!
//! Run: `cargo bench -p paas-git --bench push` (release build; takes about half a minute).
//! Goal (issue 3): full push <= 1.2x plain git; incremental <= plain git + 50 ms.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use paas_core::{AppName, SourceStore};
use paas_git::{GitHttpService, GitHttpSettings, GitSourceStore};

const TOKEN: &str = "bench-token";
const FULL_RUNS: usize = 3;
const INCREMENTAL_RUNS: usize = 5;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn timed_push(dir: &Path, url: &str) -> Duration {
    let start = Instant::now();
    git(dir, &["push", "-q", url, "main"]);
    start.elapsed()
}

/// A working tree of about 15 MB: 400 text files (about 10 MB, compressible) and 5 MB of
/// incompressible binary data in 5 files.
fn generate(dir: &Path) -> u64 {
    let mut rng = fastrand::Rng::with_seed(42);
    let words = [
        "deploy",
        "release",
        "build",
        "slug",
        "dyno",
        "router",
        "config",
        "scale",
        "process",
        "health",
        "drain",
        "rollback",
        "buildpack",
        "procfile",
        "formation",
        "app",
    ];
    let mut total = 0u64;
    for i in 0..400 {
        let sub = dir.join(format!("src/mod{:02}", i % 20));
        std::fs::create_dir_all(&sub).unwrap();
        let mut text = String::with_capacity(26 * 1024);
        while text.len() < 25 * 1024 {
            text.push_str(words[rng.usize(..words.len())]);
            text.push(if rng.u8(..10) == 0 { '\n' } else { ' ' });
            if rng.u8(..20) == 0 {
                text.push_str(&rng.u64(..).to_string());
            }
        }
        total += text.len() as u64;
        std::fs::write(sub.join(format!("file{i:03}.txt")), text).unwrap();
    }
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    for i in 0..5 {
        let data: Vec<u8> = (0..1024 * 1024).map(|_| rng.u8(..)).collect();
        total += data.len() as u64;
        std::fs::write(dir.join(format!("assets/blob{i}.bin")), data).unwrap();
    }
    total
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let bytes = generate(&work);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "generated"]);
    println!(
        "repository: {:.1} MB in 405 files, one commit",
        bytes as f64 / 1e6
    );

    let store = GitSourceStore::open(tmp.path().join("served")).unwrap();
    let service = GitHttpService::new(
        store.clone(),
        std::sync::Arc::new(paas_core::StaticTokenAuthorizer::new(TOKEN)),
        GitHttpSettings::default(),
    );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(service.serve(listener));

    // Full pushes, alternating targets; a fresh empty target each time.
    let mut http_full = Vec::new();
    let mut file_full = Vec::new();
    let mut last_http = String::new();
    let mut last_file = PathBuf::new();
    for run in 0..FULL_RUNS {
        let app = AppName::new(format!("bench{run}")).unwrap();
        runtime.block_on(store.create_repo(&app)).unwrap();
        last_http = format!("http://x:{TOKEN}@{addr}/{app}.git");
        http_full.push(timed_push(&work, &last_http));

        last_file = tmp.path().join(format!("plain{run}.git"));
        git(
            tmp.path(),
            &["init", "-q", "--bare", last_file.to_str().unwrap()],
        );
        file_full.push(timed_push(
            &work,
            &format!("file://{}", last_file.display()),
        ));
    }

    // Incremental pushes: one changed file per commit, to the last targets.
    let mut http_inc = Vec::new();
    let mut file_inc = Vec::new();
    let file_url = format!("file://{}", last_file.display());
    for i in 0..INCREMENTAL_RUNS {
        let path = work.join(format!("src/mod00/file{:03}.txt", i * 20));
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("\nchange {i}\n"));
        std::fs::write(&path, text).unwrap();
        git(&work, &["commit", "-q", "-am", &format!("change {i}")]);
        http_inc.push(timed_push(&work, &last_http));
        file_inc.push(timed_push(&work, &file_url));
    }

    // Both targets hold the same history.
    let head = Command::new("git")
        .current_dir(&work)
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let app = AppName::new(format!("bench{}", FULL_RUNS - 1)).unwrap();
    let served = runtime.block_on(store.resolve(&app, "main")).unwrap();
    assert_eq!(
        served.as_str(),
        head,
        "the served repository has the pushed commit"
    );

    let (hf, ff) = (median(http_full), median(file_full));
    let (hi, fi) = (median(http_inc), median(file_inc));
    println!(
        "full push        (median of {FULL_RUNS}): paas-git http {:8.1} ms | plain file:// {:8.1} ms | ratio {:.2}x (goal <= 1.20x)",
        ms(hf),
        ms(ff),
        hf.as_secs_f64() / ff.as_secs_f64()
    );
    println!(
        "incremental push (median of {INCREMENTAL_RUNS}): paas-git http {:8.1} ms | plain file:// {:8.1} ms | ratio {:.2}x, +{:.1} ms (goal <= +50 ms)",
        ms(hi),
        ms(fi),
        hi.as_secs_f64() / fi.as_secs_f64(),
        ms(hi) - ms(fi)
    );
}
