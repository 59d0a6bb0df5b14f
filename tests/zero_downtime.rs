//! The pipeline with the real router (`ProxyRouter`) and the in-memory scheduler (whose web
//! processes are real HTTP listeners): rolling restarts lose no request. Runs without Docker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paas::core::memory::*;
use paas::core::*;
use paas::proxy::{ProxyRouter, ProxySettings};

async fn platform_with_proxy() -> (Platform, Arc<MemorySourceStore>, SocketAddr) {
    let router = ProxyRouter::new(ProxySettings::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = router.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    let sources = Arc::new(MemorySourceStore::new());
    let settings = PlatformSettings::default()
        .with_health_timeout(Duration::from_secs(10))
        .with_drain_timeout(Duration::from_secs(5))
        .with_stop_grace(Duration::from_secs(1));
    let platform = Platform::composer()
        .sources(sources.clone())
        .builder(Arc::new(MemoryBuilder::new()))
        .store(Arc::new(MemoryReleaseStore::new()))
        .scheduler(Arc::new(MemoryScheduler::new()))
        .router(Arc::new(router))
        .log_sink(Arc::new(MemoryLogSink::new()))
        .settings(settings)
        .compose()
        .unwrap();
    (platform, sources, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_config_changes_under_load_lose_no_request() {
    let (platform, sources, proxy) = platform_with_proxy().await;
    let app = AppName::new("zd").unwrap();
    platform.create_app(&app).await.unwrap();
    let files = vec![SourceFile {
        path: "Procfile".into(),
        contents: b"web: ./server\n".to_vec(),
        executable: false,
    }];
    sources
        .commit_files(CommitFilesRequest::new(app.clone(), "main", files))
        .await
        .unwrap();
    platform
        .deploy(DeployRequest::new(
            app.clone(),
            DeploySource::Ref("main".into()),
        ))
        .await
        .unwrap();
    platform
        .scale(
            &app,
            Formation::parse_pairs(["web=2"]).unwrap(),
            Progress::discard(),
        )
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..6 {
        let keep_alive = c < 4;
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .resolve("zd.localhost", proxy)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let url = format!("http://zd.localhost:{}/", proxy.port());
            // Bounded: at most 20,000 requests per client, and the loop ends when the deploys do.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut req = client.get(&url);
                if !keep_alive {
                    req = req.header("connection", "close");
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failed
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failed.lock().unwrap().push(format!("error {e}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..5 {
        let update = ConfigUpdate::parse_pairs([format!("ROUND={i}").as_str()]).unwrap();
        let r = platform
            .set_config(&app, update, Progress::discard())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.version, Version(2 + i), "each config:set is a release");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "{ok} requests succeeded, {} failed during 5 rolling restarts",
        failed.len()
    );
    assert!(ok > 100, "the clients sent traffic throughout ({ok})");
    assert!(
        failed.is_empty(),
        "requests failed during rolling restarts: {:?}",
        &failed[..failed.len().min(10)]
    );
    let body = reqwest::Client::builder()
        .resolve("zd.localhost", proxy)
        .build()
        .unwrap()
        .get(format!("http://zd.localhost:{}/", proxy.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.starts_with("zd v6 web."),
        "the last release serves: {body}"
    );
}
