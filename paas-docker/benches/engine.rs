//! Benchmark (not a test): the Docker scheduler and builder against the `docker` CLI on the same
//! engine, same image and same security settings.
//!
//! ```text
//! cargo bench -p paas-docker --bench engine            # N=10 containers, 5 builds
//! PAAS_BENCH_N=20 PAAS_BENCH_BUILDS=3 cargo bench -p paas-docker --bench engine
//! ```
//!
//! Start/remove: `DockerScheduler::start` of N web instances (one call, the engine works on
//! them concurrently) and `stop` with zero grace, against N `docker run -d` with the same
//! flags then one `docker rm -f` (sequential, as a script would), and N concurrent
//! `docker run -d` processes. Build: `DockerBuilder::build` of a trivial Dockerfile against
//! `docker build` with the classic builder (`DOCKER_BUILDKIT=0`, what the Engine API build
//! uses), each iteration with new content so nothing comes from the cache.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use paas_core::{
    Artifact, Build, BuildId, BuildRequest, Builder, Config, DeployStatus, ProcessType, Procfile,
    Release, Scheduler, StartRequest, StopRequest, Timestamp, Version,
};
use paas_docker::{
    stack, DockerBuilder, DockerBuilderSettings, DockerScheduler, DockerSchedulerSettings,
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn docker_cli(args: &[&str]) -> std::process::Output {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("run the docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ratio(ours: Duration, theirs: Duration) -> f64 {
    ours.as_secs_f64() / theirs.as_secs_f64().max(1e-9)
}

fn write_context(dir: &Path, i: usize) {
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM paas/stack-busybox:1\nCOPY hello.txt /app/hello.txt\nCMD [\"httpd\", \"-f\", \"-p\", \"5000\", \"-h\", \"/app\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("hello.txt"),
        format!("hello {i} {}\n", fastrand::u64(..)),
    )
    .unwrap();
}

#[tokio::main]
async fn main() {
    let n = env_usize("PAAS_BENCH_N", 10);
    let builds = env_usize("PAAS_BENCH_BUILDS", 5);
    let docker = match paas_docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("engine benchmark skipped: docker engine unreachable: {e}");
            return;
        }
    };
    stack::ensure_busybox_stack(&docker, stack::DEFAULT_STACK_IMAGE)
        .await
        .expect("stack image");
    let app =
        paas_core::AppName::new(format!("bench-{:06x}", fastrand::u32(..) & 0xffffff)).unwrap();
    let settings = DockerSchedulerSettings::new("bench");
    let scheduler = DockerScheduler::new(docker.clone(), settings.clone())
        .await
        .expect("scheduler");
    let build = Build {
        id: BuildId::new("bench").unwrap(),
        app: app.clone(),
        commit: None,
        artifact: Artifact {
            image: stack::DEFAULT_STACK_IMAGE.into(),
        },
        procfile: Procfile::parse("web: httpd -f -p $PORT -h /app\n").unwrap(),
        strategy: "image".into(),
        created_at: Timestamp::now(),
    };
    let release = Release {
        app: app.clone(),
        version: Version(1),
        build,
        config: Config::new(),
        description: "bench".into(),
        created_at: Timestamp::now(),
        status: DeployStatus::Pending,
    };

    // Warm up both paths once (image metadata, network, CLI startup).
    let warm = scheduler
        .start(StartRequest::new(
            release.clone(),
            ProcessType::web(),
            vec![1],
        ))
        .await
        .unwrap();
    scheduler
        .stop(StopRequest::new(vec![warm[0].id.clone()], Duration::ZERO))
        .await
        .unwrap();
    let cli_flags: Vec<String> = vec![
        "--cap-drop=ALL".into(),
        "--security-opt=no-new-privileges:true".into(),
        "--pids-limit=256".into(),
        "--memory=512m".into(),
        "--memory-swap=512m".into(),
        "--cpu-shares=1024".into(),
        "--cpu-quota=100000".into(),
        "--init".into(),
        "--user=1000:1000".into(),
        format!("--network={}", settings.network),
        "-e".into(),
        "PORT=5000".into(),
        "--label=paas.bench=cli".into(),
    ];
    let cli_run = |name: String| {
        let mut args = vec!["run".to_string(), "-d".into(), "--name".into(), name];
        args.extend(cli_flags.iter().cloned());
        args.extend([
            stack::DEFAULT_STACK_IMAGE.to_string(),
            "/bin/sh".into(),
            "-c".into(),
            "httpd -f -p $PORT -h /app".into(),
        ]);
        args
    };
    let name = format!("{app}-warm");
    let args = cli_run(name.clone());
    docker_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    docker_cli(&["rm", "-f", &name]);

    // Scheduler: start N, then stop N.
    let t = Instant::now();
    let started = scheduler
        .start(StartRequest::new(
            release.clone(),
            ProcessType::web(),
            (1..=n as u32).collect(),
        ))
        .await
        .unwrap();
    let ours_start = t.elapsed();
    let ids: Vec<String> = started.iter().map(|i| i.id.clone()).collect();
    let t = Instant::now();
    scheduler
        .stop(StopRequest::new(ids, Duration::ZERO))
        .await
        .unwrap();
    let ours_stop = t.elapsed();

    // CLI, sequential.
    let names: Vec<String> = (0..n).map(|i| format!("{app}-cli-{i}")).collect();
    let t = Instant::now();
    for name in &names {
        let args = cli_run(name.clone());
        docker_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let cli_start = t.elapsed();
    let t = Instant::now();
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    docker_cli(&rm);
    let cli_stop = t.elapsed();

    // CLI, N concurrent processes.
    let names: Vec<String> = (0..n).map(|i| format!("{app}-par-{i}")).collect();
    let t = Instant::now();
    let children: Vec<_> = names
        .iter()
        .map(|name| {
            Command::new("docker")
                .args(cli_run(name.clone()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let par_start = t.elapsed();
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    docker_cli(&rm);

    // Builds.
    let mut bs = DockerBuilderSettings::default();
    bs.image_prefix = "paasbench".into();
    let builder = DockerBuilder::new(docker.clone(), bs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ours_build = Duration::ZERO;
    let mut cli_build = Duration::ZERO;
    let mut tags = Vec::new();
    for i in 0..builds {
        write_context(dir.path(), i);
        let t = Instant::now();
        let b = builder
            .build(BuildRequest::new(
                app.clone(),
                BuildId::new(format!("b{i}")).unwrap(),
                dir.path(),
            ))
            .await
            .unwrap();
        ours_build += t.elapsed();
        tags.push(b.artifact.image);
        write_context(dir.path(), i);
        let tag = format!("paasbench/{app}-cli:{i}");
        let t = Instant::now();
        docker_cli(&["build", "-q", "-t", &tag, &dir.path().display().to_string()]);
        cli_build += t.elapsed();
        tags.push(tag);
    }
    for tag in &tags {
        let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    }

    println!(
        "paas-docker engine benchmark (engine API {:?})",
        docker.client_version()
    );
    println!(
        "start {n} containers:  scheduler {:>8.1} ms | docker run x{n} sequential {:>8.1} ms (ratio {:.2}) | {n} concurrent docker run {:>8.1} ms (ratio {:.2})",
        ours_start.as_secs_f64() * 1e3,
        cli_start.as_secs_f64() * 1e3,
        ratio(ours_start, cli_start),
        par_start.as_secs_f64() * 1e3,
        ratio(ours_start, par_start),
    );
    println!(
        "remove {n} containers: scheduler {:>8.1} ms | docker rm -f (one call) {:>8.1} ms (ratio {:.2})",
        ours_stop.as_secs_f64() * 1e3,
        cli_stop.as_secs_f64() * 1e3,
        ratio(ours_stop, cli_stop),
    );
    println!(
        "build trivial Dockerfile x{builds}: builder {:>8.1} ms/build | docker build {:>8.1} ms/build (ratio {:.2})",
        ours_build.as_secs_f64() * 1e3 / builds as f64,
        cli_build.as_secs_f64() * 1e3 / builds as f64,
        ratio(ours_build, cli_build),
    );
}
