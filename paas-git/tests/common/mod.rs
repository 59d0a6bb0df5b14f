//! Shared helpers: a git HTTP server on a loopback port, and the real `git` binary.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use paas_core::{AppName, SourceStore};
use paas_git::{GitHttpService, GitHttpSettings, GitSourceStore, PushHook};

pub const TOKEN: &str = "t0k3n-for-tests";

pub struct Server {
    pub addr: SocketAddr,
    pub store: GitSourceStore,
    pub dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start(hook: Option<Arc<dyn PushHook>>) -> Server {
        Self::start_with(hook, GitHttpSettings::default()).await
    }

    pub async fn start_with(hook: Option<Arc<dyn PushHook>>, settings: GitHttpSettings) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = GitSourceStore::open(dir.path().join("repos")).unwrap();
        let mut service = GitHttpService::new(
            store.clone(),
            Arc::new(paas_core::StaticTokenAuthorizer::new(TOKEN)),
            settings,
        );
        if let Some(hook) = hook {
            service = service.with_hook(hook);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = service.serve(listener).await;
        });
        Server {
            addr,
            store,
            dir,
            task,
        }
    }

    /// Creates the app's repository (as `apps:create` would).
    pub async fn create_app(&self, name: &str) -> AppName {
        let app = AppName::new(name).unwrap();
        self.store.create_repo(&app).await.unwrap();
        app
    }

    pub fn url(&self, app: &str) -> String {
        self.url_with_token(app, TOKEN)
    }

    pub fn url_with_token(&self, app: &str, token: &str) -> String {
        format!("http://x:{token}@{}/{app}.git", self.addr)
    }

    /// A fresh working directory under the server's temp dir.
    pub fn workdir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

/// Runs `git` (the real binary) in `dir`, isolated from any user or system config.
pub fn git(dir: &Path, args: &[&str]) -> Output {
    let home = dir.join(".test-home");
    let _ = std::fs::create_dir_all(&home);
    Command::new("git")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .args([
            "-c",
            "user.name=Test User",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "credential.helper=",
        ])
        .args(args)
        .output()
        .expect("running git")
}

/// Runs git off the async runtime (the returned future owns its arguments).
pub fn git_async(
    dir: &Path,
    args: &[&str],
) -> impl std::future::Future<Output = Output> + Send + 'static {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    async move {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            git(&dir, &args)
        })
        .await
        .unwrap()
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "git failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
    stdout(o)
}

/// `git init` in `dir` and one commit with `files`.
pub fn init_repo(dir: &Path, files: &[(&str, &str)]) -> String {
    ok(&git(dir, &["init", "-q", "-b", "main"]));
    commit(dir, files, "initial")
}

/// Writes `files` and commits them; returns the commit id.
pub fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (path, contents) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
    ok(&git(dir, &["add", "-A"]));
    ok(&git(dir, &["commit", "-q", "-m", message]));
    ok(&git(dir, &["rev-parse", "HEAD"]))
}

/// One raw HTTP/1.1 request to the server; returns status, headers and body.
pub async fn request<B>(
    addr: SocketAddr,
    req: http::Request<B>,
) -> (http::StatusCode, http::HeaderMap, Bytes)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

/// `Authorization` header value with the test token.
pub fn auth_header(token: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"))
    )
}
