//! Conformance suite for [`Scheduler`].

use std::time::Duration;

use futures::StreamExt;

use crate::error::ErrorKind;
use crate::model::{
    Build, Config, ConfigKey, ConfigValue, DeployStatus, Formation, InstanceState, ProcessType,
    Release, Timestamp, Version,
};
use crate::traits::{
    ConvergeRequest, HealthCheck, HealthRequest, OutputStream, RunRequest, Scheduler, StartRequest,
    StopRequest,
};

/// What a backend needs: a build it can run whose `web` process serves HTTP on `$PORT` (any
/// path answers 2xx) and whose `worker` process keeps running. The build's app is used for the
/// instances; use a fresh app name.
#[derive(Clone, Debug)]
pub struct SchedulerFixture {
    /// The runnable build.
    pub build: Build,
    /// How long instances may take to become healthy.
    pub health_timeout: Duration,
}

fn release(f: &SchedulerFixture, version: u64) -> Release {
    let mut config = Config::new();
    config.set(
        ConfigKey::new("GREETING").unwrap(),
        ConfigValue::new("hello-from-config").unwrap(),
    );
    Release {
        app: f.build.app.clone(),
        version: Version(version),
        build: f.build.clone(),
        config,
        description: "testkit".into(),
        created_at: Timestamp::now(),
        status: DeployStatus::Pending,
    }
}

async fn cleanup(s: &dyn Scheduler, f: &SchedulerFixture) {
    s.remove_app(&f.build.app, Duration::from_secs(2))
        .await
        .expect("remove_app");
    assert!(
        s.list(Some(&f.build.app)).await.unwrap().is_empty(),
        "remove_app leaves nothing"
    );
}

/// Runs every Scheduler contract.
pub async fn run_all(s: &dyn Scheduler, f: &SchedulerFixture) {
    start_health_stop(s, f).await;
    unknown_process_type(s, f).await;
    run_once_exit_code(s, f).await;
    converge_is_idempotent(s, f).await;
}

/// Started web instances have addresses, pass TCP and HTTP checks, are listed, and stop
/// idempotently.
pub async fn start_health_stop(s: &dyn Scheduler, f: &SchedulerFixture) {
    let app = &f.build.app;
    let rel = release(f, 1);
    let web = s
        .start(StartRequest::new(
            rel.clone(),
            ProcessType::web(),
            vec![1, 2],
        ))
        .await
        .expect("start web.1 and web.2");
    assert_eq!(web.len(), 2, "two instances started");
    let mut idx: Vec<u32> = web.iter().map(|i| i.index).collect();
    idx.sort();
    assert_eq!(idx, [1, 2], "indexes as requested");
    assert!(
        web.iter().all(|i| i.address.is_some()),
        "web instances have addresses"
    );
    assert!(
        web.iter().all(|i| i.release == Version(1) && &i.app == app),
        "labels kept"
    );
    let ids: Vec<String> = web.iter().map(|i| i.id.clone()).collect();
    s.wait_healthy(HealthRequest::new(
        ids.clone(),
        HealthCheck::Tcp,
        f.health_timeout,
    ))
    .await
    .expect("web instances pass a TCP check");
    s.wait_healthy(HealthRequest::new(
        ids.clone(),
        HealthCheck::http("/").expect("a valid path"),
        f.health_timeout,
    ))
    .await
    .expect("web instances pass an HTTP check");
    let listed = s.list(Some(app)).await.unwrap();
    for id in &ids {
        let i = listed
            .iter()
            .find(|i| &i.id == id)
            .expect("started instance is listed");
        assert_eq!(i.state, InstanceState::Running, "listed as running");
    }
    let e = s
        .wait_healthy(HealthRequest::new(
            vec!["no-such-instance".into()],
            HealthCheck::Tcp,
            Duration::from_secs(2),
        ))
        .await
        .expect_err("unknown instance");
    assert!(
        matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Timeout),
        "unknown instance: {e}"
    );
    s.stop(StopRequest::new(ids.clone(), Duration::from_secs(5)))
        .await
        .expect("stop");
    s.stop(StopRequest::new(ids.clone(), Duration::from_secs(5)))
        .await
        .expect("stop is idempotent");
    let listed = s.list(Some(app)).await.unwrap();
    assert!(
        listed.iter().all(|i| !ids.contains(&i.id)),
        "stopped instances are gone"
    );
    cleanup(s, f).await;
}

/// Starting a process type the build does not have is InvalidInput.
pub async fn unknown_process_type(s: &dyn Scheduler, f: &SchedulerFixture) {
    let e = s
        .start(StartRequest::new(
            release(f, 1),
            ProcessType::new("nosuchtype").unwrap(),
            vec![1],
        ))
        .await
        .expect_err("unknown process type");
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidInput,
        "unknown process type: {e}"
    );
    assert!(
        s.list(Some(&f.build.app)).await.unwrap().is_empty(),
        "nothing started"
    );
}

/// A one-off run streams output and returns the exit code; config is in its environment.
pub async fn run_once_exit_code(s: &dyn Scheduler, f: &SchedulerFixture) {
    let cmd = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let handle = s
        .run_once(RunRequest::new(
            release(f, 1),
            cmd("echo out-line; printenv GREETING; exit 3"),
        ))
        .await
        .expect("run_once");
    let output: Vec<_> = handle.output.collect().await;
    let stdout: String = output
        .iter()
        .filter(|o| o.stream == OutputStream::Stdout)
        .map(|o| o.text.as_str())
        .collect();
    assert!(stdout.contains("out-line"), "stdout streamed: {stdout:?}");
    assert!(
        stdout.contains("hello-from-config"),
        "config in the environment: {stdout:?}"
    );
    assert_eq!(
        handle.exit.await.expect("exit code"),
        3,
        "exit code returned"
    );
    let handle = s
        .run_once(RunRequest::new(release(f, 1), cmd("true")))
        .await
        .unwrap();
    let _ = handle.output.collect::<Vec<_>>().await;
    assert_eq!(handle.exit.await.unwrap(), 0);
    let e = s
        .run_once(RunRequest::new(release(f, 1), vec![]))
        .await
        .expect_err("empty command");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    cleanup(s, f).await;
}

/// converge starts what is missing, stops the highest indexes and other releases, and does
/// nothing the second time.
pub async fn converge_is_idempotent(s: &dyn Scheduler, f: &SchedulerFixture) {
    let app = &f.build.app;
    let grace = Duration::from_secs(5);
    let r1 = release(f, 1);
    let form = |pairs: &[&str]| Formation::parse_pairs(pairs.iter().copied()).unwrap();
    let rep = s
        .converge(ConvergeRequest::new(
            r1.clone(),
            form(&["web=2", "worker=1"]),
            grace,
        ))
        .await
        .expect("converge");
    assert_eq!(
        rep.started.len(),
        3,
        "converge starts web.1, web.2, worker.1"
    );
    let rep = s
        .converge(ConvergeRequest::new(
            r1.clone(),
            form(&["web=2", "worker=1"]),
            grace,
        ))
        .await
        .unwrap();
    assert!(
        rep.started.is_empty() && rep.stopped.is_empty(),
        "second converge is a no-op: {rep:?}"
    );
    let rep = s
        .converge(ConvergeRequest::new(
            r1.clone(),
            form(&["web=1", "worker=1"]),
            grace,
        ))
        .await
        .unwrap();
    assert_eq!(rep.stopped.len(), 1, "scale down stops one");
    let left: Vec<_> = s
        .list(Some(app))
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.process_type.is_web())
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].index, 1, "the highest index was stopped");
    let r2 = release(f, 2);
    let rep = s
        .converge(ConvergeRequest::new(r2.clone(), form(&["web=1"]), grace))
        .await
        .unwrap();
    assert_eq!(rep.started.len(), 1, "new release started");
    let all = s.list(Some(app)).await.unwrap();
    assert_eq!(
        all.len(),
        1,
        "other release's instances and the worker stopped: {all:?}"
    );
    assert_eq!(all[0].release, Version(2));
    cleanup(s, f).await;
}
