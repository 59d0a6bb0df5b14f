//! A whole platform in memory: compose the in-memory backends, push a Procfile app, deploy,
//! change config, scale and roll back, and watch the release history grow. No Docker, no
//! network: the smallest program that shows the pipeline.
//!
//! ```text
//! cargo run --example memory_platform
//! ```

use std::time::Duration;

use paas::core::memory::*;
use paas::core::{
    CommitFilesRequest, ConfigUpdate, DeployRequest, DeploySource, Formation, Platform, Progress,
    SourceFile, Version,
};

#[tokio::main]
async fn main() -> paas::core::Result<()> {
    let platform = Platform::composer()
        .sources(MemorySourceStore::new())
        .builder(MemoryBuilder::new())
        .store(MemoryReleaseStore::new())
        .scheduler(MemoryScheduler::new())
        .router(MemoryRouter::new())
        .log_sink(MemoryLogSink::new())
        .base_domain("apps.example.com")
        .drain_timeout(Duration::from_millis(100))
        .stop_grace(Duration::from_millis(100))
        .compose()?;

    let app = "hello".parse()?;
    platform.create_app(&app).await?;
    // What `git push` would store: a commit on `main` with a Procfile.
    let procfile = SourceFile {
        path: "Procfile".into(),
        contents: b"web: ./server --port $PORT\nworker: ./work\n".to_vec(),
        executable: false,
    };
    platform
        .sources()
        .commit_files(CommitFilesRequest::new(app.clone(), "main", vec![procfile]))
        .await?;

    let v1 = platform
        .deploy(DeployRequest::new(
            app.clone(),
            DeploySource::Ref("main".into()),
        ))
        .await?;
    println!(
        "deployed {} at http://{}",
        v1.version,
        platform.default_host(&app)?
    );

    let v2 = platform
        .set_config(
            &app,
            ConfigUpdate::parse_pairs(["GREETING=hi"])?,
            Progress::discard(),
        )
        .await?
        .expect("a build exists, so config makes a release");
    println!("config:set made {}", v2.version);

    let formation = platform
        .scale(
            &app,
            Formation::parse_pairs(["web=3"])?,
            Progress::discard(),
        )
        .await?;
    println!("ps:scale -> {formation}");

    let v3 = platform
        .rollback(&app, Some(Version(1)), Progress::discard())
        .await?;
    println!("rollback to v1 made {} ({})", v3.version, v3.description);

    for r in platform.releases(&app, 10).await? {
        println!("{} {} {}", r.version, r.status, r.description);
    }
    for i in platform.instances(&app).await? {
        println!("{} {} {}", i.name(), i.state, i.release);
    }
    Ok(())
}
