//! End-to-end tests of the example platform: they start the real `paasd` example binary on free
//! loopback ports with a temporary data dir and a random token, and drive it only through the
//! `paas` example binary, `git` and HTTP, with the Docker backend. Docker state is only read
//! (`docker ps`/`docker images`) to check what `apps:destroy` and restarts leave behind.
//!
//! Skipped (with a message) when the Docker engine is unreachable, unless
//! `PAAS_REQUIRE_DOCKER=1`. The binaries come from `target/<profile>/examples/`, which a plain
//! `cargo test` builds before running the tests.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use support::*;

fn host_of(app: &str) -> String {
    format!("{app}.localhost")
}

/// Wrong or missing tokens get 401 from the API and from git; bad app names, config keys and
/// scale pairs get clear errors from the CLI (nothing sent) and from the API.
#[test]
fn auth_and_input_validation() {
    if !docker_available("auth_and_input_validation") {
        return;
    }
    let _serial = serial();
    let d = Daemon::start();
    let app = unique("e2e-auth");
    d.track(&app);
    let repo = d.new_repo("auth");

    // The API: no token, a wrong token (bearer and basic) -> 401 with a challenge.
    for token in [None, Some("wrong-token")] {
        let r = d.api_request("GET", "/v1/apps", token, None);
        assert_eq!(r.status, 401, "GET /v1/apps with {token:?}: {r:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.to_ascii_lowercase().contains("basic")),
            "401 without a Basic challenge: {r:?}"
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).expect("JSON error body");
        assert!(body["message"].is_string(), "{body}");
    }
    assert_eq!(
        d.api_request("GET", "/v1/apps", Some(&d.token), None)
            .status,
        200
    );

    // The CLI with a wrong or missing token: one clear line, exit 1.
    let out = d
        .paas_cmd(&repo, &["apps"])
        .env("PAAS_TOKEN", "wrong-token")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("401") && err.contains("token"), "{err}");
    let out = d
        .paas_cmd(&repo, &["apps"])
        .env_remove("PAAS_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("PAAS_TOKEN"), "{err}");

    // Bad app names: refused by the CLI, and by the API if sent anyway.
    for bad in ["Bad_Name", "1abc", "a.b", "x-"] {
        let err = d.paas_err(&repo, &["apps:create", bad]);
        assert!(err.contains("invalid app name"), "{err}");
    }
    let err = d.paas_err(&repo, &["apps:info", "-a", "UPPER"]);
    assert!(err.contains("invalid app name"), "{err}");
    let r = d.api_request(
        "POST",
        "/v1/apps",
        Some(&d.token),
        Some(r#"{"name":"Bad_Name"}"#),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("invalid_input") && r.body.contains("app name"),
        "{r:?}"
    );
    let apps = d.paas_json(&repo, &["apps"]);
    assert_eq!(
        apps.as_array().map(Vec::len),
        Some(0),
        "nothing was created: {apps}"
    );

    // A real app, then bad config keys and scale pairs.
    d.paas_ok(&repo, &["apps:create", &app]);
    for bad in ["1KEY=x", "A-B=x", "=x", "NOEQUALS"] {
        let err = d.paas_err(&repo, &["config:set", bad]);
        assert!(err.contains("config"), "{err}");
    }
    let err = d.paas_err(&repo, &["config:unset", "BAD-KEY"]);
    assert!(err.contains("invalid config key"), "{err}");
    let err = d.paas_err(&repo, &["config:get", "9X"]);
    assert!(err.contains("invalid config key"), "{err}");
    let r = d.api_request(
        "PATCH",
        &format!("/v1/apps/{app}/config"),
        Some(&d.token),
        Some(r#"{"set":{"1BAD":"x"},"unset":[]}"#),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("config key"), "{r:?}");
    for bad in ["web=x", "web=-1", "web=1000", "we b=1", "web"] {
        let err = d.paas_err(&repo, &["ps:scale", bad]);
        assert!(err.contains("process") || err.contains("TYPE=N"), "{err}");
    }
    let err = d.paas_err(&repo, &["releases:info", "v0"]);
    assert!(err.contains("invalid release version"), "{err}");
    assert!(d.paas_ok(&repo, &["config"]).contains("no config vars"));
    assert_eq!(
        d.paas_json(&repo, &["releases"]).as_array().map(Vec::len),
        Some(0)
    );

    // Unknown apps are a clear not-found.
    let err = d.paas_err(&repo, &["apps:info", "-a", "no-such-app"]);
    assert!(
        err.to_ascii_lowercase().contains("not found") || err.contains("no-such-app"),
        "{err}"
    );

    // Git: no credential, a wrong token -> 401 (git says so), nothing deployed.
    commit_app(&d, &repo, "AUTH");
    let wrong = format!("http://paas:wrong-token@{}/{app}.git", d.api);
    let (ok, text) = d.git(&repo, &["push", &wrong, "main"], None);
    assert!(!ok, "a push with a wrong token must fail: {text}");
    assert!(
        text.contains("401") || text.contains("Authentication failed"),
        "git should report the 401: {text}"
    );
    let anon = format!("http://{}/{app}.git", d.api);
    let (ok, text) = d.git(&repo, &["push", &anon, "main"], None);
    assert!(!ok, "a push without a token must fail: {text}");
    // The remote configured by apps:create answers only with PAAS_TOKEN set to the token.
    let (ok, text) = d.git(&repo, &["push", "paas", "main"], Some("wrong-token"));
    assert!(
        !ok && (text.contains("401") || text.contains("Authentication failed")),
        "{text}"
    );
    assert_eq!(
        d.paas_json(&repo, &["releases"]).as_array().map(Vec::len),
        Some(0)
    );
    // The token is not stored in the repository's config.
    let config = std::fs::read_to_string(repo.join(".git/config")).unwrap();
    assert!(
        !config.contains(&d.token),
        "the token must not be written to .git/config"
    );

    // git:remote in another clone: the remote and the credential helper, without the token;
    // a push with PAAS_TOKEN set deploys.
    let clone = d.new_repo("auth-clone");
    let err = d.paas_err(&clone, &["git:remote", "-a", "no-such-app"]);
    assert!(err.to_ascii_lowercase().contains("not found"), "{err}");
    let err = d.paas_err(d.scratch.path(), &["git:remote", "-a", &app]);
    assert!(err.contains("git repository"), "{err}");
    let out = d.paas_ok(&clone, &["git:remote", "-a", &app]);
    assert!(out.contains(&format!("{}/{app}.git", d.url())), "{out}");
    let config = std::fs::read_to_string(clone.join(".git/config")).unwrap();
    assert!(
        config.contains("helper") && !config.contains(&d.token),
        "{config}"
    );
    assert_eq!(d.paas_json(&clone, &["apps:info"])["name"], app.as_str());
    commit_app(&d, &clone, "CLONE");
    let push = d.git_ok(&clone, &["push", "paas", "main"]);
    assert!(
        push.contains("Deployed v1") || push.contains("v1"),
        "{push}"
    );
    d.router_wait(&host_of(&app), "/", "the pushed clone", |b| {
        b.contains("content=CLONE")
    });

    // apps:destroy needs the confirmation.
    let err = d.paas_err(&repo, &["apps:destroy", &app]);
    assert!(err.contains("--confirm"), "{err}");
    let err = d.paas_err(&repo, &["apps:destroy", &app, "--confirm", "other"]);
    assert!(err.contains("--confirm"), "{err}");
    d.paas_ok(&repo, &["apps:info"]);
    d.paas_ok(&clone, &["apps:destroy", "--confirm", &app]);
    let remotes = d.git_ok(&clone, &["remote"]);
    assert!(
        !remotes.contains("paas"),
        "destroy removes the remote of the app: {remotes}"
    );
    let err = d.paas_err(&repo, &["apps:info", "-a", &app]);
    assert!(err.to_ascii_lowercase().contains("not found"), "{err}");
    assert!(docker_containers(&app, false).is_empty());
}

/// The main flow: create, push, config, scale, logs, run, rollback, domains, restart, destroy.
#[test]
fn deploy_config_scale_logs_run_rollback_destroy() {
    if !docker_available("deploy_config_scale_logs_run_rollback_destroy") {
        return;
    }
    let _serial = serial();
    let d = Daemon::start();
    let app = unique("e2e-main");
    d.track(&app);
    let host = host_of(&app);
    let repo = d.new_repo("main");

    // Create inside the repository: the `paas` remote is added, without the token.
    let out = d.paas_ok(&repo, &["apps:create", &app]);
    assert!(out.contains(&app), "{out}");
    let remote = d.git_ok(&repo, &["remote", "get-url", "paas"]);
    assert_eq!(remote.trim(), format!("{}/{app}.git", d.url()));
    let listed = d.paas_ok(&repo, &["apps"]);
    assert!(listed.contains(&app), "{listed}");

    // v1: push; progress shows as `remote:` lines; the app answers through the router.
    commit_app(&d, &repo, "ONE");
    let push = d.git_ok(&repo, &["push", "paas", "main"]);
    assert!(push.contains("remote:"), "push shows progress: {push}");
    let body = d.router_wait(&host, "/", "content ONE", |b| b.contains("content=ONE"));
    assert!(body.contains("content=ONE"));
    let env = d.router_wait(&host, "/env.txt", "v1 env", |b| b.contains("dyno=web.1"));
    assert!(env.contains("greeting= "), "no GREETING yet: {env}");
    let info = d.paas_ok(&repo, &["apps:info"]);
    assert!(info.contains("v1") && info.contains(&host), "{info}");

    // v2: config:set creates a release; the app sees the value; releases lists it.
    let out = d.paas_ok(&repo, &["config:set", "GREETING=hello"]);
    assert!(out.contains("v2"), "{out}");
    assert!(
        !out.contains("hello"),
        "config:set must not echo values: {out}"
    );
    d.router_wait(&host, "/env.txt", "GREETING=hello", |b| {
        b.contains("greeting=hello")
    });
    let releases = d.paas_ok(&repo, &["releases"]);
    assert!(
        releases.contains("v2") && releases.contains("v1"),
        "{releases}"
    );
    assert!(
        !releases.contains("hello"),
        "releases must not show values: {releases}"
    );
    let rel = d.paas_json(&repo, &["releases"]);
    assert_eq!(rel[0]["version"], 2, "{rel}");
    assert!(
        rel[0]["config_keys"].to_string().contains("GREETING"),
        "{rel}"
    );
    assert!(d.paas_ok(&repo, &["config"]).contains("GREETING: hello"));
    assert_eq!(
        d.paas_ok(&repo, &["config:get", "GREETING"]).trim(),
        "hello"
    );
    let v1_build = d.paas_json(&repo, &["releases:info", "v1"])["build_id"].clone();
    assert!(v1_build.is_string());

    // v3: a new push with the config kept.
    commit_app(&d, &repo, "TWO");
    d.git_ok(&repo, &["push", "paas", "main"]);
    d.router_wait(&host, "/", "content TWO", |b| b.contains("content=TWO"));
    d.router_wait(&host, "/env.txt", "v3 config", |b| {
        b.contains("greeting=hello")
    });

    // `paas deploy`: the same commit built again without a push makes v4 with the config.
    let out = d.paas_ok(&repo, &["deploy"]);
    assert!(out.contains("Released v4"), "{out}");
    let v4 = d.paas_json(&repo, &["releases:info", "v4"]);
    assert_eq!(v4["status"]["state"], "succeeded", "{v4}");
    assert_ne!(v4["build_id"], v1_build, "a deploy builds: {v4}");
    d.router_wait(&host, "/env.txt", "v4 config", |b| {
        b.contains("greeting=hello")
    });
    let err = d.paas_err(&repo, &["deploy", "no..such"]);
    assert!(err.contains("invalid ref name"), "{err}");

    // ps:scale web=3: three instances, all receiving traffic; back to one.
    let out = d.paas_ok(&repo, &["ps:scale", "web=3"]);
    assert!(out.contains("web=3"), "{out}");
    let ps = d.paas_json(&repo, &["ps"]);
    let web: Vec<_> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["process_type"] == "web")
        .collect();
    assert_eq!(web.len(), 3, "three web instances: {ps}");
    let mut dynos = BTreeSet::new();
    for _ in 0..300 {
        if let Ok(r) = d.router_get(&host, "/env.txt") {
            if r.status == 200 {
                if let Some(dyno) = r.body.split("dyno=").nth(1) {
                    dynos.insert(dyno.trim().to_string());
                }
            }
        }
        if dynos.len() == 3 {
            break;
        }
    }
    assert_eq!(
        dynos,
        BTreeSet::from(["web.1".to_string(), "web.2".into(), "web.3".into()]),
        "all three instances receive traffic"
    );
    assert!(d.paas_ok(&repo, &["ps"]).contains("web.3"));
    d.paas_ok(&repo, &["ps:scale", "web=1"]);
    let ps = d.paas_json(&repo, &["ps"]);
    assert_eq!(ps.as_array().unwrap().len(), 1, "scaled down: {ps}");
    wait_for("the scaled-down containers to go", || {
        (docker_instances(&app).len() == 1).then_some(())
    });
    for _ in 0..20 {
        let r = d.router_get(&host, "/env.txt").expect("router");
        assert_eq!(r.status, 200);
        assert!(r.body.contains("dyno=web.1"), "{}", r.body);
    }
    assert!(d.paas_ok(&repo, &["ps:scale"]).contains("web=1"));

    // logs: app output and build output.
    let logs = d.paas_ok(&repo, &["logs", "-n", "1500"]);
    assert!(
        logs.contains("app[web.1]") && logs.contains("booting web.1"),
        "app output in logs: {logs}"
    );
    assert!(
        logs.contains("platform[build"),
        "build output in logs: {logs}"
    );
    let json_logs = d.paas_ok(&repo, &["--json", "logs", "-n", "5"]);
    for l in json_logs.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("one JSON log line per line");
        assert!(v["text"].is_string(), "{v}");
    }

    // logs -t streams a line the app writes after the command started.
    let mut tail = d
        .paas_cmd(&repo, &["logs", "-t", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(WAIT)
        .expect("logs -t prints the last line first");
    eprintln!("logs -t started: {first}");
    let marker = format!("tail{}", fastrand::u32(..));
    d.paas_ok(&repo, &["config:set", &format!("GREETING={marker}")]);
    let seen = wait_for("logs -t to stream the new boot line", || {
        while let Ok(line) = rx.try_recv() {
            if line.contains(&format!("greeting={marker}")) {
                return Some(line);
            }
        }
        None
    });
    assert!(seen.contains("app[web."), "{seen}");
    let _ = tail.kill();
    let _ = tail.wait();
    d.paas_ok(&repo, &["config:set", "GREETING=hello"]);

    // run: output and the exit code.
    let out = d.paas(&repo, &["run", "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "run exits with the command's code"
    );
    let out = d.paas(
        &repo,
        &["run", "--", "sh", "-c", "echo run-$GREETING; echo err >&2"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("run-hello"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));

    // rollback v1: v1's content and config again, without a build.
    let latest = d.paas_json(&repo, &["releases"])[0]["version"]
        .as_u64()
        .unwrap();
    let out = d.paas_cmd(&repo, &["rollback", "v1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rollback failed: {stderr}");
    assert!(
        !stderr.contains("Built image") && !stderr.contains("Building"),
        "a rollback does not build: {stderr}"
    );
    let now = latest + 1;
    assert!(stdout.contains(&format!("v{now}")), "{stdout}");
    d.router_wait(&host, "/", "v1 content after rollback", |b| {
        b.contains("content=ONE")
    });
    d.router_wait(&host, "/env.txt", "v1 config after rollback", |b| {
        b.contains("greeting= ")
    });
    let rolled = d.paas_json(&repo, &["releases:info", &format!("v{now}")]);
    assert_eq!(
        rolled["build_id"], v1_build,
        "rollback reuses v1's build: {rolled}"
    );
    assert!(d.paas_ok(&repo, &["config"]).contains("no config vars"));

    // Domains route to the app.
    let domain = format!("www.{app}.test");
    d.paas_ok(&repo, &["domains:add", &domain]);
    assert!(d.paas_ok(&repo, &["domains"]).contains(&domain));
    d.router_wait(&domain, "/", "the custom domain", |b| {
        b.contains("content=ONE")
    });
    d.paas_ok(&repo, &["domains:remove", &domain]);
    assert!(!d.paas_ok(&repo, &["domains"]).contains(&domain));
    wait_for("the removed domain to stop routing", || {
        d.router_get(&domain, "/")
            .ok()
            .filter(|r| r.status != 200)
            .map(|_| ())
    });

    // ps:restart keeps serving.
    d.paas_ok(&repo, &["ps:restart", "web"]);
    d.router_wait(&host, "/", "after restart", |b| b.contains("content=ONE"));

    // apps:destroy removes containers, images, repository, routes and records.
    assert!(
        !docker_images(&app).is_empty(),
        "the app has images before destroy"
    );
    d.paas_ok(&repo, &["apps:destroy", "--confirm", &app]);
    assert!(
        docker_containers(&app, false).is_empty(),
        "containers left: {:?}",
        docker_containers(&app, false)
    );
    assert!(
        docker_volumes(&app).is_empty(),
        "volumes left: {:?}",
        docker_volumes(&app)
    );
    assert!(
        docker_images(&app).is_empty(),
        "images left: {:?}",
        docker_images(&app)
    );
    let r = d.router_get(&host, "/").expect("router");
    assert_ne!(r.status, 200, "no route after destroy: {r:?}");
    assert!(!r.body.contains("content="), "{r:?}");
    assert!(!d.paas_ok(&repo, &["apps"]).contains(&app));
    let err = d.paas_err(&repo, &["apps:info", "-a", &app]);
    assert!(!err.is_empty());
    assert_eq!(
        d.api_request(
            "GET",
            &format!("/v1/apps/{app}/releases"),
            Some(&d.token),
            None
        )
        .status,
        404
    );
    let repos: Vec<_> = find_paths(d.data_dir.path(), &app)
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    assert!(
        repos.is_empty(),
        "directories of the app left in the data dir: {repos:?}"
    );
    let (ok, text) = d.git(
        &repo,
        &["ls-remote", &format!("{}/{app}.git", d.url())],
        Some(&d.token),
    );
    assert!(!ok, "the repository is gone: {text}");
}

/// Zero failed requests during five rolling config changes; an unhealthy push fails while the
/// previous release keeps serving; kill -9 of paasd and a restart keep the app serving with the
/// same instances; the next deploy works.
#[test]
fn zero_downtime_unhealthy_push_and_daemon_restart() {
    if !docker_available("zero_downtime_unhealthy_push_and_daemon_restart") {
        return;
    }
    let _serial = serial();
    let mut d = Daemon::start();
    let app = unique("e2e-ops");
    d.track(&app);
    let host = host_of(&app);
    let repo = d.new_repo("ops");
    d.paas_ok(&repo, &["apps:create", &app]);
    commit_app(&d, &repo, "ONE");
    d.git_ok(&repo, &["push", "paas", "main"]);
    d.router_wait(&host, "/", "content ONE", |b| b.contains("content=ONE"));

    // A client loops while five config:set roll the app: zero failed requests.
    let stop = Arc::new(AtomicBool::new(false));
    let ok_count = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let client = {
        let (stop, ok_count, failures) = (stop.clone(), ok_count.clone(), failures.clone());
        let (addr, host) = (d.http, host.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match http_request(addr, "GET", "/env.txt", &host, None, None) {
                    Ok(r) if r.status == 200 && r.body.contains("dyno=") => {
                        ok_count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{} {}", r.status, r.body.trim()))
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        })
    };
    for i in 1..=5 {
        let out = d.paas_ok(&repo, &["config:set", &format!("LOOP={i}")]);
        assert!(out.contains(&format!("v{}", i + 1)), "{out}");
    }
    let before_stop = ok_count.load(Ordering::Relaxed);
    d.router_wait(&host, "/env.txt", "LOOP=5", |b| b.contains("loop=5"));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let failures = failures.lock().unwrap().clone();
    eprintln!(
        "zero-downtime loop: {} requests succeeded, {} failed",
        ok_count.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(
        before_stop > 0,
        "the client sent requests during the restarts"
    );
    assert!(
        failures.is_empty(),
        "failed requests during rolling restarts: {failures:?}"
    );

    // An unhealthy push (the web process never listens) fails clearly; the old release serves.
    let good = d.paas_json(&repo, &["releases"])[0]["version"]
        .as_u64()
        .unwrap();
    write(&repo, "Procfile", "web: sleep 100000\n");
    d.git_ok(&repo, &["commit", "-q", "-am", "never healthy"]);
    let (ok, text) = d.git(&repo, &["push", "paas", "main"], Some(&d.token));
    // paasd stores the pushed commit, reports the failed deploy on `remote:` lines and marks
    // the branch rejected, so `git push` fails like it does on Heroku; the message must say
    // that the deploy failed, why, and that the previous release keeps serving.
    assert!(
        !ok,
        "a push whose deploy fails makes `git push` fail: {text}"
    );
    assert!(text.contains("[remote rejected] main -> main"), "{text}");
    let failure_line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().contains("failed"))
        .unwrap_or_else(|| panic!("the push says the deploy failed: {text}"));
    let lower = failure_line.to_ascii_lowercase();
    assert!(
        lower.contains("health"),
        "the failure names the health check: {failure_line}"
    );
    assert!(
        lower.contains(&format!("v{}", good + 1)),
        "the failure names the failed release v{}: {failure_line}",
        good + 1
    );
    let body = d.router_get(&host, "/").expect("router");
    assert_eq!(
        body.status, 200,
        "the previous release keeps serving: {body:?}"
    );
    assert!(body.body.contains("content=ONE"), "{body:?}");
    let releases = d.paas_json(&repo, &["releases"]);
    let newest = &releases[0];
    assert_eq!(newest["version"].as_u64(), Some(good + 1), "{releases}");
    assert_eq!(
        status_state(newest),
        "failed",
        "releases shows the failed one: {newest}"
    );
    assert!(d.paas_ok(&repo, &["releases"]).contains("failed"));
    let info = d.paas_json(&repo, &["apps:info"]);
    assert_eq!(info["current"]["version"].as_u64(), Some(good), "{info}");

    // kill -9 paasd while the app serves; start it again.
    let ps_before = d.paas_json(&repo, &["ps"]);
    let ids_before: BTreeSet<String> = ps_before
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let containers_before: BTreeSet<String> = docker_instances(&app).into_iter().collect();
    assert!(!ids_before.is_empty());
    d.kill9();
    // The app's containers keep running without the daemon.
    assert_eq!(
        docker_instances(&app).into_iter().collect::<BTreeSet<_>>(),
        containers_before
    );
    d.spawn();
    d.router_wait(&host, "/", "content ONE after the restart", |b| {
        b.contains("content=ONE")
    });
    let ps_after = d.paas_json(&repo, &["ps"]);
    let ids_after: BTreeSet<String> = ps_after
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids_after, ids_before,
        "ps shows the same instances: {ps_before} vs {ps_after}"
    );
    assert_eq!(
        ps_after.as_array().unwrap().len(),
        ps_before.as_array().unwrap().len()
    );
    // Nothing was started twice (give a converge loop time to misbehave, then look).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        docker_instances(&app).into_iter().collect::<BTreeSet<_>>(),
        containers_before,
        "no duplicate containers after the restart"
    );

    // The next deploy works.
    commit_app(&d, &repo, "THREE");
    d.git_ok(&repo, &["push", "paas", "main"]);
    d.router_wait(&host, "/", "content THREE", |b| b.contains("content=THREE"));
    d.router_wait(&host, "/env.txt", "the config kept", |b| {
        b.contains("loop=5")
    });
    let releases = d.paas_json(&repo, &["releases"]);
    assert_eq!(status_state(&releases[0]), "succeeded", "{releases}");

    d.paas_ok(&repo, &["apps:destroy", &app, "--confirm", &app]);
    wait_for("the app's containers to be removed", || {
        docker_containers(&app, false).is_empty().then_some(())
    });
}
