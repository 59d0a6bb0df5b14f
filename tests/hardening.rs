//! What an independent review of a running `paasd` broke, driven the same way: a flood of
//! half-sent request heads on the API port while apps are served, a restart with apps running
//! (no 404 while routes come back), and a restart in the middle of a one-off run followed by
//! `apps:destroy` (nothing of the app left on the engine).
//!
//! Docker-backed like the other end-to-end tests: skipped with a message when the engine is
//! unreachable, unless `PAAS_REQUIRE_DOCKER=1`.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

fn host_of(app: &str) -> String {
    format!("{app}.localhost")
}

/// Starts a daemon with one deployed app; returns the daemon, the app, its repo and host.
fn deployed(test: &str, content: &str) -> (Daemon, String, std::path::PathBuf, String) {
    let d = Daemon::start();
    let app = unique(test);
    d.track(&app);
    let host = host_of(&app);
    let repo = d.new_repo(test);
    d.paas_ok(&repo, &["apps:create", &app]);
    commit_app(&d, &repo, content);
    d.git_ok(&repo, &["push", "paas", "main"]);
    d.router_wait(&host, "/", "the app", |b| {
        b.contains(&format!("content={content}"))
    });
    (d, app, repo, host)
}

/// Sends requests through the router until `stop`; records every answer that is not a 200.
fn prober(
    addr: std::net::SocketAddr,
    host: String,
    stop: Arc<AtomicBool>,
    refused_ok: bool,
) -> (
    std::thread::JoinHandle<()>,
    Arc<AtomicU64>,
    Arc<Mutex<Vec<String>>>,
) {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(Mutex::new(Vec::new()));
    let (ok2, bad2) = (ok.clone(), bad.clone());
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match http_request(addr, "GET", "/", &host, None, None) {
                Ok(r) if r.status == 200 => {
                    ok2.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => bad2
                    .lock()
                    .unwrap()
                    .push(format!("{} {}", r.status, r.body.trim())),
                // While the daemon is down its port refuses: that is no answer at all.
                Err(e) if refused_ok && e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => bad2.lock().unwrap().push(e.to_string()),
            }
        }
    });
    (handle, ok, bad)
}

#[test]
fn half_sent_heads_on_the_api_port_do_not_take_the_router_down() {
    if !docker_available("half_sent_heads_on_the_api_port_do_not_take_the_router_down") {
        return;
    }
    let _serial = serial();
    // This process holds 2,000 client sockets.
    let _ = paas::proxy::raise_open_files_limit();
    let (d, _app, _repo, host) = deployed("flood", "FLOOD");

    let stop = Arc::new(AtomicBool::new(false));
    let (probe, ok, bad) = prober(d.http, host.clone(), stop.clone(), false);
    let mut slow = Vec::new();
    for i in 0..2000 {
        match TcpStream::connect_timeout(&d.api, Duration::from_secs(5)) {
            Ok(mut s) => {
                let _ = s.write_all(b"POST /v1/apps HTTP/1.1\r\nHost: x\r\nX-Slow: ");
                slow.push(s);
            }
            Err(e) => panic!("connection {i} to the API port failed: {e}"),
        }
    }
    // Hold them past the API's head deadline (10 s), while the prober runs.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    probe.join().unwrap();
    let bad = bad.lock().unwrap().clone();
    eprintln!(
        "during the flood: {} requests through the router succeeded, {} failed",
        ok.load(Ordering::Relaxed),
        bad.len()
    );
    assert!(ok.load(Ordering::Relaxed) > 0, "the prober sent requests");
    assert!(
        bad.is_empty(),
        "the router failed during the flood: {bad:?}"
    );
    drop(slow);
    // The API itself answers again once the flood is gone.
    let r = wait_for("the API after the flood", || {
        http_request(d.api, "GET", "/v1/info", "127.0.0.1", Some(&d.token), None)
            .ok()
            .filter(|r| r.status == 200)
    });
    assert_eq!(r.status, 200);
    // Every answer carries a request id; one a proxy in front set is kept.
    assert!(
        r.header("x-request-id").is_some_and(|id| id.len() == 32),
        "{r:?}"
    );
}

#[test]
fn a_restarted_daemon_never_answers_404_for_a_running_app() {
    if !docker_available("a_restarted_daemon_never_answers_404_for_a_running_app") {
        return;
    }
    let _serial = serial();
    let (mut d, _app, _repo, host) = deployed("restart", "STAY");
    // The data directory (token, database, logs, repositories) is the daemon user's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.data_dir.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "data dir mode {mode:o}");
    d.kill9();
    let stop = Arc::new(AtomicBool::new(false));
    let (probe, ok, bad) = prober(d.http, host.clone(), stop.clone(), true);
    d.spawn();
    // Keep probing a few seconds after the daemon answers.
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    probe.join().unwrap();
    let bad = bad.lock().unwrap().clone();
    eprintln!(
        "after the restart: {} requests succeeded, {} failed",
        ok.load(Ordering::Relaxed),
        bad.len()
    );
    assert!(
        ok.load(Ordering::Relaxed) > 0,
        "the app was served after the restart"
    );
    assert!(
        bad.is_empty(),
        "a running app got other answers than 200 after the restart: {:?}",
        &bad[..bad.len().min(10)]
    );
}

#[test]
fn a_restart_during_a_one_off_run_then_destroy_leaves_nothing() {
    if !docker_available("a_restart_during_a_one_off_run_then_destroy_leaves_nothing") {
        return;
    }
    let _serial = serial();
    let (mut d, app, repo, _host) = deployed("orphan", "RUN");
    // A one-off run that would outlive the daemon.
    let mut run = d
        .paas_cmd(&repo, &["run", "--", "sleep", "300"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the one-off run's container", || {
        let runs: Vec<String> = docker_containers(&app, true)
            .into_iter()
            .filter(|id| !docker_instances(&app).contains(id))
            .collect();
        (!runs.is_empty()).then_some(())
    });
    d.kill9();
    let _ = run.kill();
    let _ = run.wait();
    d.spawn();
    d.paas_ok(&repo, &["apps:destroy", &app, "--confirm", &app]);
    let left = wait_for("the app's containers to be gone", || {
        let left = docker_containers(&app, false);
        left.is_empty().then_some(left)
    });
    assert!(left.is_empty());
    assert!(
        docker_volumes(&app).is_empty(),
        "volumes left: {:?}",
        docker_volumes(&app)
    );
    assert!(docker_images(&app).is_empty(), "images left");
}
