//! Tests against the real Docker engine. They skip (printing why) when the engine is
//! unreachable, and fail instead when `PAAS_REQUIRE_DOCKER=1`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use paas_core::memory::MemoryLogSink;
use paas_core::{
    BuildId, BuildRequest, Builder, ConvergeRequest, ErrorKind, Formation, HealthCheck,
    HealthRequest, ImageRequest, InstanceEvent, InstanceState, LogSink, LogSource, OutputSender,
    ProcessType, PruneRequest, RunRequest, Scheduler, StartRequest, StopRequest,
};
use paas_docker::{DockerBuilder, DockerBuilderSettings, DockerScheduler, DockerSchedulerSettings};
use support::*;

const PREFIX: &str = "paastest";

fn builder(docker: &paas_docker::Docker, buildpacks: Option<&std::path::Path>) -> DockerBuilder {
    let mut s = DockerBuilderSettings::default();
    s.image_prefix = PREFIX.into();
    s.buildpacks_dir = buildpacks.map(|p| p.to_path_buf());
    s.build_timeout = Duration::from_secs(120);
    DockerBuilder::new(docker.clone(), s).unwrap()
}

async fn scheduler(docker: &paas_docker::Docker, app: &paas_core::AppName) -> DockerScheduler {
    let mut s = DockerSchedulerSettings::new(platform_id(app));
    s.restart_backoff_base = Duration::from_millis(300);
    s.restart_backoff_max = Duration::from_secs(2);
    s.health_interval = Duration::from_millis(100);
    DockerScheduler::new(docker.clone(), s).await.unwrap()
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut v = Vec::new();
    while let Ok(l) = rx.try_recv() {
        v.push(l);
    }
    v
}

/// A tiny classic buildpack: detects `hello.txt`, counts builds in its cache, copies the
/// GREETING config var from ENV_DIR, writes a web page and a .profile.d script.
fn write_buildpack(dir: &std::path::Path) {
    write_exec(
        dir,
        "bin/detect",
        "#!/bin/sh\nif [ -f \"$1/hello.txt\" ]; then echo Hello; exit 0; fi\nexit 1\n",
    );
    write_exec(
        dir,
        "bin/compile",
        r#"#!/bin/sh
set -e
build=$1 cache=$2 env=$3
if [ -f "$cache/counter" ]; then n=$(cat "$cache/counter"); echo "-----> cache hit $n"; else n=0; echo "-----> cache miss"; fi
echo $((n + 1)) > "$cache/counter"
if [ -f "$build/fail" ]; then echo "boom: compile failed on purpose" >&2; exit 1; fi
if [ -f "$env/GREETING" ]; then cat "$env/GREETING" > "$build/greeting.txt"; fi
mkdir -p "$build/public" "$build/.profile.d"
echo compiled > "$build/public/index.html"
echo 'export FROM_PROFILE=yes' > "$build/.profile.d/hello.sh"
echo "-----> compiled as $(id -u)"
"#,
    );
    write_exec(
        dir,
        "bin/release",
        "#!/bin/sh\ncat <<'EOF'\n---\naddons: []\ndefault_process_types:\n  web: httpd -f -p $PORT -h /app/public\n  worker: sleep 1000\nEOF\n",
    );
}

async fn run_output(
    scheduler: &DockerScheduler,
    req: RunRequest,
) -> (String, paas_core::Result<i32>) {
    let handle = scheduler.run_once(req).await.unwrap();
    let out: Vec<_> = handle.output.collect().await;
    let code = handle.exit.await;
    (out.into_iter().map(|o| o.text).collect(), code)
}

#[tokio::test]
async fn dockerfile_build_runs_image_default_and_prune() {
    let Some(docker) = docker().await else { return };
    let app = app("df");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "Dockerfile",
        "FROM paas/stack-busybox:1\nCOPY public /app/public\nCMD [\"httpd\", \"-f\", \"-p\", \"5000\", \"-h\", \"/app/public\"]\n",
    );
    write(src.path(), "public/index.html", "from-dockerfile\n");
    let b = builder(&docker, None);
    let (tx, mut rx) = OutputSender::channel();
    let build = b
        .build(
            BuildRequest::new(app.clone(), BuildId::new("b1").unwrap(), src.path()).with_output(tx),
        )
        .await
        .unwrap();
    let lines = drain(&mut rx);
    assert!(lines.iter().any(|l| l.contains("Step 1/")), "{lines:?}");
    assert_eq!(build.strategy, "dockerfile");
    assert_eq!(build.artifact.image, format!("{PREFIX}/paasd/{app}:b1"));
    assert_eq!(
        build.procfile.command(&ProcessType::web()),
        Some("httpd -f -p 5000 -h /app/public")
    );

    // The image's own CMD runs unchanged and answers on the web port.
    let s = scheduler(&docker, &app).await;
    let rel = release(&build, 1, config(&[]));
    let started = s
        .start(StartRequest::new(rel.clone(), ProcessType::web(), vec![1]))
        .await
        .unwrap();
    s.wait_healthy(HealthRequest::new(
        vec![started[0].id.clone()],
        HealthCheck::http("/").unwrap(),
        Duration::from_secs(20),
    ))
    .await
    .unwrap();
    let (status, body) = http_get(started[0].address.unwrap(), "/index.html")
        .await
        .unwrap();
    assert_eq!((status, body.trim()), (200, "from-dockerfile"));

    // from_image: a prebuilt image deploys without a build.
    let b2 = b
        .from_image(ImageRequest::new(
            app.clone(),
            BuildId::new("img2").unwrap(),
            build.artifact.image.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(b2.strategy, "image");
    assert_eq!(b2.procfile, build.procfile);
    let missing = b
        .from_image(ImageRequest::new(
            app.clone(),
            BuildId::new("img3").unwrap(),
            "paastest/no-such-image:1",
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);

    // Prune keeps the image in use by a running container and the kept build.
    b.prune(PruneRequest::new(app.clone(), vec![]))
        .await
        .unwrap();
    docker.inspect_image(&build.artifact.image).await.unwrap();
    s.stop(StopRequest::new(
        vec![started[0].id.clone()],
        Duration::ZERO,
    ))
    .await
    .unwrap();
    b.prune(PruneRequest::new(
        app.clone(),
        vec![BuildId::new("img2").unwrap()],
    ))
    .await
    .unwrap();
    assert!(docker.inspect_image(&build.artifact.image).await.is_err());
    docker.inspect_image(&b2.artifact.image).await.unwrap();
    b.prune(PruneRequest::new(app.clone(), vec![]))
        .await
        .unwrap();
    assert!(docker.inspect_image(&b2.artifact.image).await.is_err());
}

#[tokio::test]
async fn buildpack_build_uses_cache_env_dir_and_release() {
    let Some(docker) = docker().await else { return };
    let app = app("bp");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let bps = tempfile::tempdir().unwrap();
    write_buildpack(&bps.path().join("hello"));
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "hello.txt", "hi\n");
    write(src.path(), "Procfile", "worker: sleep 2000\n");
    let b = builder(&docker, Some(bps.path()));
    let cfg = config(&[("GREETING", "secret-greeting-value")]);

    let (tx, mut rx) = OutputSender::channel();
    let build = b
        .build(
            BuildRequest::new(app.clone(), BuildId::new("b1").unwrap(), src.path())
                .with_config(cfg.clone())
                .with_output(tx),
        )
        .await
        .unwrap();
    let lines = drain(&mut rx);
    assert!(
        lines.iter().any(|l| l.contains("Hello app detected")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("cache miss")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("compiled as 1000")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("secret-greeting-value")));
    assert_eq!(build.strategy, "buildpack:hello");
    assert_eq!(
        build.procfile.command(&ProcessType::web()),
        Some("httpd -f -p $PORT -h /app/public")
    );
    // The Procfile wins over default_process_types.
    assert_eq!(
        build.procfile.command(&ProcessType::new("worker").unwrap()),
        Some("sleep 2000")
    );

    // Second build: the cache survived.
    let (tx, mut rx) = OutputSender::channel();
    let build2 = b
        .build(
            BuildRequest::new(app.clone(), BuildId::new("b2").unwrap(), src.path())
                .with_config(cfg.clone())
                .with_output(tx),
        )
        .await
        .unwrap();
    let lines = drain(&mut rx);
    assert!(lines.iter().any(|l| l.contains("cache hit 1")), "{lines:?}");

    // The image: app at /app, ENV_DIR gone, config not baked into the environment.
    let img = docker.inspect_image(&build2.artifact.image).await.unwrap();
    let env = img.config.and_then(|c| c.env).unwrap_or_default();
    assert!(
        !env.iter().any(|e| e.contains("secret-greeting-value")),
        "{env:?}"
    );
    let s = scheduler(&docker, &app).await;
    let rel = release(&build2, 1, cfg.clone());
    let (out, code) = run_output(
        &s,
        RunRequest::new(
            rel.clone(),
            vec![
                "sh".into(),
                "-c".into(),
                "cat /app/greeting.txt; . /app/.profile.d/hello.sh; echo profile=$FROM_PROFILE; ls /tmp/paas 2>/dev/null || echo no-env-dir; echo dyno=$DYNO; echo oops >&2; exit 7".into(),
            ],
        ),
    )
    .await;
    assert_eq!(code.unwrap(), 7, "{out}");
    assert!(out.contains("secret-greeting-value"), "{out}");
    assert!(out.contains("profile=yes"), "{out}");
    assert!(out.contains("no-env-dir"), "{out}");
    assert!(out.contains("dyno=run.0"), "{out}");
    assert!(out.contains("oops"), "{out}");
    // The one-off container is gone.
    let left = s.list(Some(&app)).await.unwrap();
    assert!(left.is_empty(), "{left:?}");

    // A web process from the buildpack's default_process_types sources .profile.d and serves.
    let web = s
        .start(StartRequest::new(rel.clone(), ProcessType::web(), vec![1]))
        .await
        .unwrap();
    s.wait_healthy(HealthRequest::new(
        vec![web[0].id.clone()],
        HealthCheck::http("/index.html").unwrap(),
        Duration::from_secs(20),
    ))
    .await
    .unwrap();
    let (status, body) = http_get(web[0].address.unwrap(), "/").await.unwrap();
    assert_eq!((status, body.trim()), (200, "compiled"));
    s.remove_app(&app, Duration::ZERO).await.unwrap();

    // A one-off run past its timeout is killed and reported as Timeout.
    let handle = s
        .run_once(
            RunRequest::new(rel, vec!["sleep".into(), "30".into()])
                .with_timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    assert_eq!(handle.exit.await.unwrap_err().kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn buildpack_url_from_local_git_repository() {
    let Some(docker) = docker().await else { return };
    let app = app("url");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let repo = tempfile::tempdir().unwrap();
    write_buildpack(repo.path());
    let git = |args: &[&str]| {
        let st = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(repo.path())
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "buildpack"]);
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "hello.txt", "hi\n");
    // No buildpacks_dir: the buildpack only comes from BUILDPACK_URL, a local one here, which
    // the operator must allow (an app may not name local paths by default).
    let refused = builder(&docker, None)
        .build(
            BuildRequest::new(app.clone(), BuildId::new("u8").unwrap(), src.path()).with_config(
                config(&[(
                    "BUILDPACK_URL",
                    &format!("file://{}", repo.path().display()),
                )]),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::BuildFailed, "{refused}");
    assert!(refused.message().contains("not allowed"), "{refused}");
    let mut s = DockerBuilderSettings::default();
    s.image_prefix = PREFIX.into();
    s.build_timeout = Duration::from_secs(120);
    s.allow_local_buildpack_urls = true;
    let b = DockerBuilder::new(docker.clone(), s).unwrap();
    for (i, url) in [
        format!("file://{}", repo.path().display()),
        repo.path().display().to_string(),
    ]
    .iter()
    .enumerate()
    {
        let build = b
            .build(
                BuildRequest::new(
                    app.clone(),
                    BuildId::new(format!("u{i}")).unwrap(),
                    src.path(),
                )
                .with_config(config(&[("BUILDPACK_URL", url)])),
            )
            .await
            .unwrap();
        assert_eq!(build.strategy, "buildpack:hello");
        assert!(build.procfile.command(&ProcessType::web()).is_some());
    }
    let err = b
        .build(
            BuildRequest::new(app.clone(), BuildId::new("u9").unwrap(), src.path()).with_config(
                config(&[("BUILDPACK_URL", "file:///nonexistent/buildpack")]),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BuildFailed, "{err}");
    assert!(err.message().contains("BUILDPACK_URL"), "{err}");
}

#[tokio::test]
async fn failing_builds_report_build_failed_with_output_tail() {
    let Some(docker) = docker().await else { return };
    let app = app("fail");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let bps = tempfile::tempdir().unwrap();
    write_buildpack(&bps.path().join("hello"));
    let b = builder(&docker, Some(bps.path()));

    let src = tempfile::tempdir().unwrap();
    write(src.path(), "hello.txt", "hi\n");
    write(src.path(), "fail", "");
    let err = b
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("f1").unwrap(),
            src.path(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BuildFailed, "{err}");
    assert!(
        err.message().contains("boom: compile failed on purpose"),
        "{err}"
    );

    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "Dockerfile",
        "FROM paas/stack-busybox:1\nRUN echo about-to-fail && false\n",
    );
    let err = b
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("f2").unwrap(),
            src.path(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BuildFailed, "{err}");
    assert!(err.message().contains("about-to-fail"), "{err}");

    // Nothing to build at all.
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "README", "nothing here\n");
    let err = b
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("f3").unwrap(),
            src.path(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BuildFailed, "{err}");

    // A bad Procfile is invalid input naming the line.
    write(src.path(), "Procfile", "web: ok\nbad line\n");
    let err = b
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("f4").unwrap(),
            src.path(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("line 2"), "{err}");

    // The time limit.
    let slow = tempfile::tempdir().unwrap();
    write_exec(slow.path(), "slow/bin/detect", "#!/bin/sh\nexit 0\n");
    write_exec(
        slow.path(),
        "slow/bin/compile",
        "#!/bin/sh\necho slow-start\nsleep 60\n",
    );
    let mut s = DockerBuilderSettings::default();
    s.image_prefix = PREFIX.into();
    s.buildpacks_dir = Some(slow.path().to_path_buf());
    s.build_timeout = Duration::from_secs(3);
    let b = DockerBuilder::new(docker.clone(), s).unwrap();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "Procfile", "web: sleep 1\n");
    let err = b
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("f5").unwrap(),
            src.path(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn procfile_app_scales_serves_http_is_locked_down_and_adopted() {
    let Some(docker) = docker().await else { return };
    let app = app("web");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "Procfile",
        "web: httpd -f -p $PORT -h /app/public\nworker: sleep 3000\n",
    );
    write(src.path(), "public/index.html", "procfile-app\n");
    let b = builder(&docker, None);
    let build = b
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("p1").unwrap(),
            src.path(),
        ))
        .await
        .unwrap();
    assert_eq!(build.strategy, "procfile");

    let s = scheduler(&docker, &app).await;
    let rel = release(&build, 1, config(&[("SOME_SECRET", "s3cret")]));
    let mut formation = Formation::new();
    formation.set(ProcessType::web(), 2).unwrap();
    formation
        .set(ProcessType::new("worker").unwrap(), 1)
        .unwrap();
    let report = s
        .converge(ConvergeRequest::new(
            rel.clone(),
            formation.clone(),
            Duration::ZERO,
        ))
        .await
        .unwrap();
    assert_eq!(report.started.len(), 3);
    let webs: Vec<_> = report
        .started
        .iter()
        .filter(|i| i.process_type.is_web())
        .cloned()
        .collect();
    s.wait_healthy(HealthRequest::new(
        webs.iter().map(|i| i.id.clone()).collect(),
        HealthCheck::Tcp,
        Duration::from_secs(20),
    ))
    .await
    .unwrap();
    for w in &webs {
        let (status, body) = http_get(w.address.unwrap(), "/index.html").await.unwrap();
        assert_eq!((status, body.trim()), (200, "procfile-app"));
    }
    let listed = s.list(Some(&app)).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|i| i.state == InstanceState::Running));
    assert_eq!(
        paas_core::web_endpoints(&listed, rel.version).len(),
        2,
        "{listed:?}"
    );

    // Security settings on the started container.
    let c = docker.inspect_container(&webs[0].id, None).await.unwrap();
    let hc = c.host_config.unwrap();
    assert_eq!(hc.privileged, Some(false));
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(hc.cap_add.unwrap_or_default().is_empty());
    assert!(hc
        .security_opt
        .unwrap_or_default()
        .iter()
        .any(|o| o.starts_with("no-new-privileges")));
    assert_eq!(hc.pids_limit, Some(256));
    assert_eq!(hc.memory, Some(512 * 1024 * 1024));
    assert_eq!(hc.cpu_quota, Some(100_000));
    assert!(hc.binds.unwrap_or_default().is_empty());
    assert!(c.mounts.unwrap_or_default().is_empty());
    let cfg = c.config.unwrap();
    assert_eq!(cfg.user.as_deref(), Some("1000:1000"));
    let env = cfg.env.unwrap_or_default();
    assert!(env.contains(&"PORT=5000".to_string()));
    assert!(env.iter().any(|e| e.starts_with("DYNO=web.")));
    assert!(env.contains(&"SOME_SECRET=s3cret".to_string()));
    let labels = cfg.labels.unwrap_or_default();
    assert_eq!(labels.get("paas.app"), Some(&app.to_string()));
    assert_eq!(labels.get("paas.release").map(String::as_str), Some("1"));
    let (out, code) = run_output(
        &s,
        RunRequest::new(rel.clone(), vec!["id".into(), "-u".into()]),
    )
    .await;
    assert_eq!((out.trim(), code.unwrap()), ("1000", 0));

    // Converging again is a no-op.
    let again = s
        .converge(ConvergeRequest::new(
            rel.clone(),
            formation.clone(),
            Duration::ZERO,
        ))
        .await
        .unwrap();
    assert!(
        again.started.is_empty() && again.stopped.is_empty(),
        "{again:?}"
    );

    // A new scheduler on the same engine adopts instead of duplicating.
    drop(s);
    let s2 = scheduler(&docker, &app).await;
    let adopted = s2.list(Some(&app)).await.unwrap();
    assert_eq!(
        adopted.iter().map(|i| &i.id).collect::<Vec<_>>(),
        listed.iter().map(|i| &i.id).collect::<Vec<_>>()
    );
    let again = s2
        .converge(ConvergeRequest::new(
            rel.clone(),
            formation.clone(),
            Duration::ZERO,
        ))
        .await
        .unwrap();
    assert!(
        again.started.is_empty() && again.stopped.is_empty(),
        "{again:?}"
    );
    // Another platform id sees nothing.
    let mut other = DockerSchedulerSettings::new(format!("{}-other", platform_id(&app)));
    other.health_interval = Duration::from_millis(100);
    let s3 = DockerScheduler::new(docker.clone(), other).await.unwrap();
    assert!(s3.list(Some(&app)).await.unwrap().is_empty());

    // Scale down: highest index goes.
    formation.set(ProcessType::web(), 1).unwrap();
    let down = s2
        .converge(ConvergeRequest::new(
            rel.clone(),
            formation.clone(),
            Duration::ZERO,
        ))
        .await
        .unwrap();
    let web2 = listed
        .iter()
        .find(|i| i.process_type.is_web() && i.index == 2)
        .unwrap();
    assert_eq!(down.stopped, vec![web2.id.clone()]);
    assert!(down.started.is_empty());
    s2.remove_app(&app, Duration::ZERO).await.unwrap();
    assert!(s2.list(Some(&app)).await.unwrap().is_empty());
}

#[tokio::test]
async fn crashes_restart_with_backoff_and_stop_sends_sigterm() {
    let Some(docker) = docker().await else { return };
    let app = app("crash");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "Procfile",
        "crasher: echo crash-run; sleep 0.3; exit 3\ngraceful: trap 'echo got-sigterm; exit 0' TERM; echo ready; while true; do sleep 0.2; done\n",
    );
    let b = builder(&docker, None);
    let build = b
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("c1").unwrap(),
            src.path(),
        ))
        .await
        .unwrap();
    let sink = Arc::new(MemoryLogSink::new());
    let s = scheduler(&docker, &app).await.with_log_sink(sink.clone());
    let mut events = s.events();
    let rel = release(&build, 1, config(&[]));

    let crasher = ProcessType::new("crasher").unwrap();
    let started = s
        .start(StartRequest::new(rel.clone(), crasher.clone(), vec![1]))
        .await
        .unwrap();
    let id = started[0].id.clone();
    let mut delays = Vec::new();
    let mut restarts = 0;
    while delays.len() < 3 || restarts < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("an instance event")
            .unwrap();
        match ev {
            InstanceEvent::Crashed {
                instance,
                exit_code,
                restart_in,
                ..
            } if instance.id == id => {
                assert_eq!(exit_code, Some(3));
                assert_eq!(instance.state, InstanceState::Crashed);
                delays.push(restart_in.unwrap());
            }
            InstanceEvent::Restarted { instance, .. } if instance.id == id => restarts += 1,
            _ => {}
        }
    }
    assert_eq!(
        delays[..3],
        [
            Duration::from_millis(300),
            Duration::from_millis(600),
            Duration::from_millis(1200)
        ]
    );
    // The app's output reached the log sink as app[crasher.1], once per run.
    let lines = eventually(Duration::from_secs(10), || {
        let sink = sink.clone();
        let app = app.clone();
        async move {
            let l = sink.tail(&app, 100).await.unwrap();
            (l.iter().filter(|l| l.text == "crash-run").count() >= 2).then_some(l)
        }
    })
    .await
    .expect("crash-run lines in the log sink");
    assert!(lines.iter().all(|l| l.source
        == LogSource::App {
            process_type: crasher.clone(),
            index: 1
        }));
    s.stop(StopRequest::new(vec![id], Duration::ZERO))
        .await
        .unwrap();

    // Graceful stop: the process sees SIGTERM.
    let graceful = ProcessType::new("graceful").unwrap();
    let started = s
        .start(StartRequest::new(rel.clone(), graceful.clone(), vec![1]))
        .await
        .unwrap();
    let ready = eventually(Duration::from_secs(10), || {
        let sink = sink.clone();
        let app = app.clone();
        async move {
            let l = sink.tail(&app, 100).await.unwrap();
            l.iter().any(|l| l.text == "ready").then_some(())
        }
    })
    .await;
    assert!(ready.is_some(), "the graceful process never logged ready");
    s.stop(StopRequest::new(
        vec![started[0].id.clone()],
        Duration::from_secs(10),
    ))
    .await
    .unwrap();
    let got = eventually(Duration::from_secs(10), || {
        let sink = sink.clone();
        let app = app.clone();
        async move {
            let l = sink.tail(&app, 100).await.unwrap();
            l.iter()
                .find(|l| l.text == "got-sigterm")
                .map(|l| l.source.clone())
        }
    })
    .await;
    assert_eq!(
        got,
        Some(LogSource::App {
            process_type: graceful,
            index: 1
        })
    );
    assert!(s.list(Some(&app)).await.unwrap().is_empty());
    // Stopping unknown or removed ids is fine.
    s.stop(StopRequest::new(
        vec![started[0].id.clone(), "nope".into()],
        Duration::ZERO,
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn stack_image_layout() {
    let Some(docker) = docker().await else { return };
    let app = app("stack");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let build = paas_core::Build {
        id: BuildId::new("stack").unwrap(),
        app: app.clone(),
        commit: None,
        artifact: paas_core::Artifact {
            image: paas_docker::stack::DEFAULT_STACK_IMAGE.into(),
        },
        procfile: paas_core::Procfile::default(),
        strategy: "image".into(),
        created_at: paas_core::Timestamp::now(),
    };
    let s = scheduler(&docker, &app).await;
    let script = "for a in sh httpd nc wget env sleep printenv; do command -v $a >/dev/null || echo missing-$a; done; \
                  id -un; stat -c %a /tmp; stat -c %U /app; pwd; echo home=$HOME; printenv GREETING";
    let (out, code) = run_output(
        &s,
        RunRequest::new(
            release(&build, 1, config(&[("GREETING", "hi")])),
            vec!["sh".into(), "-c".into(), script.into()],
        ),
    )
    .await;
    assert_eq!(code.unwrap(), 0, "{out}");
    assert!(!out.contains("missing-"), "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["app", "1777", "app", "/app", "home=/app", "hi"],
        "{out}"
    );
}

#[tokio::test]
async fn published_loopback_addresses_reach_web_instances() {
    let Some(docker) = docker().await else { return };
    let app = app("pub");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let build = paas_core::Build {
        id: BuildId::new("pub").unwrap(),
        app: app.clone(),
        commit: None,
        artifact: paas_core::Artifact {
            image: paas_docker::stack::DEFAULT_STACK_IMAGE.into(),
        },
        procfile: paas_core::Procfile::parse(
            "web: echo published > /tmp/index.html; httpd -f -p $PORT -h /tmp\n",
        )
        .unwrap(),
        strategy: "image".into(),
        created_at: paas_core::Timestamp::now(),
    };
    let mut settings = DockerSchedulerSettings::new(platform_id(&app));
    settings.address_mode = paas_docker::AddressMode::PublishedLoopback;
    settings.health_interval = Duration::from_millis(100);
    let s = DockerScheduler::new(docker.clone(), settings)
        .await
        .unwrap();
    let web = s
        .start(StartRequest::new(
            release(&build, 1, config(&[])),
            ProcessType::web(),
            vec![1],
        ))
        .await
        .unwrap();
    let addr = web[0].address.unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    s.wait_healthy(HealthRequest::new(
        vec![web[0].id.clone()],
        HealthCheck::http("/").unwrap(),
        Duration::from_secs(20),
    ))
    .await
    .unwrap();
    let (status, body) = http_get(addr, "/").await.unwrap();
    assert_eq!((status, body.trim()), (200, "published"));
    assert_eq!(s.list(Some(&app)).await.unwrap()[0].address, Some(addr));
    s.remove_app(&app, Duration::ZERO).await.unwrap();
}

/// Runs only where `scripts/make-debian-stack.sh` has created `paas/stack-debian:1`.
#[tokio::test]
async fn debian_stack_runs_a_python_web_app() {
    let Some(docker) = docker().await else { return };
    if docker.inspect_image("paas/stack-debian:1").await.is_err() {
        eprintln!("skipping: paas/stack-debian:1 absent (run scripts/make-debian-stack.sh)");
        return;
    }
    let app = app("deb");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "Procfile",
        "web: python3 -m http.server $PORT\n",
    );
    write(src.path(), "index.html", "from-python\n");
    let mut bs = DockerBuilderSettings::default();
    bs.image_prefix = PREFIX.into();
    bs.stack_image = "paas/stack-debian:1".into();
    let build = DockerBuilder::new(docker.clone(), bs)
        .unwrap()
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("d1").unwrap(),
            src.path(),
        ))
        .await
        .unwrap();
    assert_eq!(build.strategy, "procfile");
    let s = scheduler(&docker, &app).await;
    let web = s
        .start(StartRequest::new(
            release(&build, 1, config(&[])),
            ProcessType::web(),
            vec![1],
        ))
        .await
        .unwrap();
    s.wait_healthy(HealthRequest::new(
        vec![web[0].id.clone()],
        HealthCheck::http("/").unwrap(),
        Duration::from_secs(30),
    ))
    .await
    .unwrap();
    let (status, body) = http_get(web[0].address.unwrap(), "/index.html")
        .await
        .unwrap();
    assert_eq!((status, body.trim()), (200, "from-python"));
    s.remove_app(&app, Duration::from_secs(5)).await.unwrap();
}

/// Two platforms on one engine, one app name: pruning one never touches the other's images.
#[tokio::test]
async fn two_platforms_never_prune_each_others_images() {
    let Some(docker) = docker().await else { return };
    let app = app("twin");
    let _cleanup = Cleanup {
        docker: docker.clone(),
        app: app.clone(),
    };
    paas_docker::stack::ensure_busybox_stack(&docker, paas_docker::stack::DEFAULT_STACK_IMAGE)
        .await
        .unwrap();
    let of = |id: &str| {
        let mut s = DockerBuilderSettings::default();
        s.image_prefix = PREFIX.into();
        s.platform_id = id.into();
        DockerBuilder::new(docker.clone(), s).unwrap()
    };
    let (a, b) = (of("plat-a"), of("plat-b"));
    // An image no container uses (the stack image itself is in use by other tests).
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "Dockerfile",
        &format!(
            "FROM {}\nLABEL twin={app}\nCMD [\"true\"]\n",
            paas_docker::stack::DEFAULT_STACK_IMAGE
        ),
    );
    let built = a
        .build(BuildRequest::new(
            app.clone(),
            BuildId::new("one").unwrap(),
            src.path(),
        ))
        .await
        .unwrap();
    let other = b
        .from_image(ImageRequest::new(
            app.clone(),
            BuildId::new("one").unwrap(),
            built.artifact.image.clone(),
        ))
        .await
        .unwrap();
    let images = [built.artifact.image, other.artifact.image];
    assert_ne!(images[0], images[1], "each platform names its own images");
    a.prune(PruneRequest::new(app.clone(), vec![]))
        .await
        .unwrap();
    assert!(
        docker.inspect_image(&images[0]).await.is_err(),
        "A pruned its own"
    );
    docker.inspect_image(&images[1]).await.unwrap();
    b.prune(PruneRequest::new(app.clone(), vec![]))
        .await
        .unwrap();
    assert!(docker.inspect_image(&images[1]).await.is_err());
}
