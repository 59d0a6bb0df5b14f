//! Helpers shared by the engine tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, RemoveContainerOptions, RemoveImageOptions,
    RemoveVolumeOptions,
};
use paas_core::{
    AppName, Build, Config, ConfigKey, ConfigValue, DeployStatus, Release, Timestamp, Version,
};
use paas_docker::{stack, Docker};

/// The engine, or `None` (after printing why) when it is unreachable; panics instead when
/// `PAAS_REQUIRE_DOCKER=1`.
pub async fn docker() -> Option<Docker> {
    let required = std::env::var("PAAS_REQUIRE_DOCKER").as_deref() == Ok("1");
    let d = match paas_docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            if required {
                panic!("PAAS_REQUIRE_DOCKER=1 but the docker engine is unreachable: {e}");
            }
            eprintln!("skipping: docker engine unreachable: {e}");
            return None;
        }
    };
    match stack::ensure_busybox_stack(&d, stack::DEFAULT_STACK_IMAGE).await {
        Ok(_) => Some(d),
        Err(e) if !required && e.kind() == paas_core::ErrorKind::NotFound => {
            eprintln!("skipping: cannot create the busybox stack image: {e}");
            None
        }
        Err(e) => panic!("creating the busybox stack image (is busybox-static installed?): {e}"),
    }
}

/// A unique app name for one test.
pub fn app(tag: &str) -> AppName {
    AppName::new(format!("t{tag}-{:06x}", fastrand::u32(..) & 0xff_ffff)).unwrap()
}

/// A unique platform id for one test (so tests do not adopt each other's containers).
pub fn platform_id(app: &AppName) -> String {
    format!("test-{app}")
}

pub fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
}

pub fn write_exec(dir: &Path, rel: &str, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    write(dir, rel, text);
    std::fs::set_permissions(dir.join(rel), std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn config(pairs: &[(&str, &str)]) -> Config {
    pairs
        .iter()
        .map(|(k, v)| (ConfigKey::new(*k).unwrap(), ConfigValue::new(*v).unwrap()))
        .collect()
}

pub fn release(build: &Build, version: u64, config: Config) -> Release {
    Release {
        app: build.app.clone(),
        version: Version(version),
        build: build.clone(),
        config,
        description: "test".into(),
        created_at: Timestamp::now(),
        status: DeployStatus::Pending,
    }
}

/// Removes every container, image and volume of `app`.
pub async fn cleanup(docker: &Docker, app: &AppName, image_prefix: &str) {
    let filters = HashMap::from([("label".to_string(), vec![format!("paas.app={app}")])]);
    if let Ok(cs) = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
    {
        for c in cs {
            let _ = docker
                .remove_container(
                    c.id.as_deref().unwrap_or_default(),
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
    }
    let repo = format!("{image_prefix}/{app}");
    if let Ok(images) = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(HashMap::from([("reference".to_string(), vec![repo])])),
            ..Default::default()
        }))
        .await
    {
        for img in images {
            for t in img.repo_tags {
                let _ = docker
                    .remove_image(
                        &t,
                        Some(RemoveImageOptions {
                            force: true,
                            ..Default::default()
                        }),
                        None,
                    )
                    .await;
            }
        }
    }
    let _ = docker
        .remove_volume(
            &format!("{}-cache-{app}", image_prefix.replace('/', "-")),
            None::<RemoveVolumeOptions>,
        )
        .await;
}

/// GET `path` from `addr` over plain HTTP/1.0; returns (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("read timeout"))??;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `max`.
pub async fn eventually<T, F, Fut>(max: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + max;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs [`cleanup`] when dropped, also when the test panics.
pub struct Cleanup {
    pub docker: Docker,
    pub app: AppName,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let app = self.app.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // The engine client is bound to the test's runtime: reconnect on this one.
                let docker = paas_docker::connect().await.unwrap_or(docker);
                cleanup(&docker, &app, "paastest").await;
            });
        })
        .join();
    }
}
