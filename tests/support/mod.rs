//! Helpers of the end-to-end tests: start the `paasd` example binary on free loopback ports,
//! drive it with the `paas` example binary and `git`, and talk HTTP to its API and router.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Generous deadline of waits (tests never assert on time; this only stops a hung test).
pub const WAIT: Duration = Duration::from_secs(240);

/// The e2e tests share the Docker engine and the default platform id of `paasd`: they run one
/// at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the Docker engine answers; when it does not, the test should return early (or
/// panic when `PAAS_REQUIRE_DOCKER=1`).
pub fn docker_available(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("PAAS_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("{test}: the Docker engine is unreachable (`docker info` failed) and PAAS_REQUIRE_DOCKER=1");
        }
        eprintln!("skipping {test}: the Docker engine is unreachable (`docker info` failed); set PAAS_REQUIRE_DOCKER=1 to fail instead");
    }
    ok
}

/// The example binaries, built by `cargo test` next to the test binary
/// (`target/<profile>/examples/`).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory");
    let profile_dir = deps.parent().expect("target profile directory");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "the example binary {} is missing: the e2e tests run the `{name}` example; build it with \
         `cargo build --examples` (a plain `cargo test` builds the examples before the tests, \
         `cargo test --test e2e` alone does not)",
        path.display()
    );
    // `cargo test --test e2e` does not rebuild examples: say so when the binary is older
    // than its source.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let single = examples.join(format!("{name}.rs"));
    // An example is one file, or a directory with main.rs (the CLI).
    let source = if single.exists() {
        single
    } else {
        examples.join(name).join("main.rs")
    };
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(src), Some(bin)) = (mtime(&source), mtime(&path)) {
        if src > bin {
            eprintln!(
                "warning: {} is older than {}: run `cargo build --examples` (or a plain `cargo test`)",
                path.display(),
                source.display()
            );
        }
    }
    path
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A short random lowercase suffix for unique app names.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{:x}{:04x}",
        (n as u64) & 0xffffff,
        fastrand::u16(..)
    )
}

/// Polls `f` until it returns `Some`, panicking with `what` after [`WAIT`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > WAIT {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A running (or killed) `paasd`.
pub struct Daemon {
    /// The data directory (kept across restarts).
    pub data_dir: tempfile::TempDir,
    /// A directory for the daemon's output, the home of git and other scratch files.
    pub scratch: tempfile::TempDir,
    /// The API address.
    pub api: SocketAddr,
    /// The router address.
    pub http: SocketAddr,
    /// The token.
    pub token: String,
    /// The platform id of this daemon's containers (unique per test).
    pub platform_id: String,
    apps: Mutex<Vec<String>>,
    child: Option<Child>,
    starts: u32,
}

impl Daemon {
    /// Starts `paasd` with a fresh data dir, free ports and a random token, and waits until
    /// `GET /v1/info` answers.
    pub fn start() -> Daemon {
        let token = format!("tok{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let mut d = Daemon {
            data_dir: tempfile::tempdir().expect("tempdir"),
            scratch: tempfile::tempdir().expect("tempdir"),
            api: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            token,
            platform_id: unique("e2e"),
            apps: Mutex::new(Vec::new()),
            child: None,
            starts: 0,
        };
        std::fs::create_dir_all(d.home()).unwrap();
        d.spawn();
        d
    }

    /// The `HOME` of git and the CLI (an empty git config).
    pub fn home(&self) -> PathBuf {
        self.scratch.path().join("home")
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.scratch.path().join(format!("paasd-{n}.log"))
    }

    /// Starts the daemon process (again) on the same data dir and ports.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "paasd is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let child = Command::new(example_binary("paasd"))
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--api-addr")
            .arg(self.api.to_string())
            .arg("--http-addr")
            .arg(self.http.to_string())
            .arg("--token")
            .arg(&self.token)
            .arg("--platform-id")
            .arg(&self.platform_id)
            .arg("--health-timeout")
            .arg("30")
            .env_remove("PAAS_TOKEN")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn paasd");
        self.child = Some(child);
        let token = self.token.clone();
        let api = self.api;
        let start = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "paasd exited with {status} before answering; its output:\n{}",
                        self.logs()
                    );
                }
            }
            if let Ok(r) = http_request(api, "GET", "/v1/info", "127.0.0.1", Some(&token), None) {
                if r.status == 200 {
                    return;
                }
            }
            if start.elapsed() > WAIT {
                panic!(
                    "paasd did not answer GET /v1/info; its output:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// All of the daemon's output so far (every start).
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                format!(
                    "--- paasd start {n} ---\n{}",
                    std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last `n` lines of the daemon's output.
    pub fn log_tail(&self, n: usize) -> String {
        let all = self.logs();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `PAAS_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// A `paas` command with this daemon's URL and token.
    pub fn paas_cmd(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(example_binary("paas"));
        c.args(args).current_dir(cwd);
        self.env(&mut c);
        c.env("PAAS_URL", self.url()).env("PAAS_TOKEN", &self.token);
        c
    }

    fn env(&self, c: &mut Command) {
        c.env("HOME", self.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "")
            .env("SSH_ASKPASS", "")
            .env_remove("PAAS_APP")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(Stdio::null());
    }

    /// Runs `paas ARGS` in `cwd`.
    pub fn paas(&self, cwd: &Path, args: &[&str]) -> Output {
        let out = self.paas_cmd(cwd, args).output().expect("run paas");
        eprintln!(
            "$ paas {}\n  exit: {:?}\n  stdout: {}\n  stderr: {}",
            args.join(" "),
            out.status.code(),
            indent(&String::from_utf8_lossy(&out.stdout)),
            indent(&String::from_utf8_lossy(&out.stderr)),
        );
        out
    }

    /// Runs `paas ARGS`, asserting success; returns stdout.
    pub fn paas_ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.paas(cwd, args);
        assert!(
            out.status.success(),
            "`paas {}` failed ({:?}): {}\npaasd log tail:\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `paas ARGS`, asserting exit status 1 and one `error:` line; returns stderr.
    pub fn paas_err(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.paas(cwd, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "`paas {}` should fail with status 1; stderr: {stderr}",
            args.join(" ")
        );
        assert!(
            stderr.lines().any(|l| l.starts_with("error: ")),
            "`paas {}` should print an `error:` line; stderr: {stderr}",
            args.join(" ")
        );
        stderr
    }

    /// Runs `paas --json ARGS`, asserting success; returns the parsed JSON.
    pub fn paas_json(&self, cwd: &Path, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.paas_ok(cwd, &all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`paas --json {}`: {e}: {out}", args.join(" ")))
    }

    /// A git command in `cwd` with an empty global config and no prompts.
    pub fn git_cmd(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.args(args).current_dir(cwd);
        self.env(&mut c);
        c
    }

    /// Runs git; returns (success, stdout + stderr).
    pub fn git(&self, cwd: &Path, args: &[&str], token: Option<&str>) -> (bool, String) {
        let mut c = self.git_cmd(cwd, args);
        match token {
            Some(t) => c.env("PAAS_TOKEN", t),
            None => c.env_remove("PAAS_TOKEN"),
        };
        let out = c.output().expect("run git");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "$ git {}\n  exit: {:?}\n  {}",
            args.join(" "),
            out.status.code(),
            indent(&text)
        );
        (out.status.success(), text)
    }

    /// Runs git, asserting success.
    pub fn git_ok(&self, cwd: &Path, args: &[&str]) -> String {
        let (ok, text) = self.git(cwd, args, Some(&self.token));
        assert!(
            ok,
            "`git {}` failed: {text}\npaasd log tail:\n{}",
            args.join(" "),
            self.log_tail(60)
        );
        text
    }

    /// A new git repository (branch `main`) under the scratch dir.
    pub fn new_repo(&self, name: &str) -> PathBuf {
        let dir = self.scratch.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        self.git_ok(&dir, &["init", "-q", "-b", "main"]);
        self.git_ok(&dir, &["config", "user.name", "e2e"]);
        self.git_ok(&dir, &["config", "user.email", "e2e@example.invalid"]);
        dir
    }

    /// `GET path` on the router with `Host: host`.
    pub fn router_get(&self, host: &str, path: &str) -> std::io::Result<HttpResponse> {
        http_request(self.http, "GET", path, host, None, None)
    }

    /// The body of `GET path` once it answers 200 and `pred` holds.
    pub fn router_wait(
        &self,
        host: &str,
        path: &str,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let last = match self.router_get(host, path) {
                Ok(r) if r.status == 200 && pred(&r.body) => return r.body,
                Ok(r) => format!("{} {}", r.status, r.body.trim()),
                Err(e) => e.to_string(),
            };
            if start.elapsed() > WAIT {
                panic!(
                    "router never served {what} for {host}{path}; last answer: {last}\npaasd log tail:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// An API request with `token` as bearer.
    pub fn api_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> HttpResponse {
        http_request(self.api, method, path, "127.0.0.1", token, body).expect("API request")
    }
}

impl Daemon {
    /// Remembers an app of this test, so that its images and cache volume are removed even
    /// when the test fails before `apps:destroy`.
    pub fn track(&self, app: &str) {
        self.apps.lock().unwrap().push(app.to_string());
    }
}

impl Drop for Daemon {
    /// Stops the daemon and removes what a failed test may have left on the engine: the
    /// containers of this daemon's platform id, the images and cache volumes of its apps.
    fn drop(&mut self) {
        self.kill9();
        let label = format!("label=paas.platform={}", self.platform_id);
        let containers = docker_lines(&["ps", "-aq", "--filter", &label]);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(containers.iter().map(String::as_str));
            docker_lines(&args);
        }
        for app in self.apps.lock().unwrap().iter() {
            let images = docker_images(app);
            if !images.is_empty() {
                let mut args = vec!["rmi", "-f"];
                args.extend(images.iter().map(String::as_str));
                docker_lines(&args);
            }
            for volume in docker_volumes(app) {
                docker_lines(&["volume", "rm", "-f", &volume]);
            }
        }
    }
}

/// Volumes whose name contains the app's name (the build cache).
pub fn docker_volumes(app: &str) -> Vec<String> {
    docker_lines(&["volume", "ls", "-q"])
        .into_iter()
        .filter(|v| v.contains(app))
        .collect()
}

fn indent(s: &str) -> String {
    s.trim_end().replace('\n', "\n    ")
}

/// A parsed HTTP/1.0 answer.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines (`name: value`, names lowercase).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl HttpResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request on a fresh connection (no chunked answers, the body ends at close).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: paas-e2e\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("incomplete HTTP answer: {text:?}")))?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `docker ps -a` ids of containers labelled with the app (instances, runs, builds).
pub fn docker_containers(app: &str, running_only: bool) -> Vec<String> {
    let label = format!("label=paas.app={app}");
    let mut args = vec!["ps", "-q", "--no-trunc", "--filter", &label];
    if !running_only {
        args.insert(1, "-a");
    }
    docker_lines(&args)
}

/// Running instance containers of the app (not builds or one-off runs).
pub fn docker_instances(app: &str) -> Vec<String> {
    let label = format!("label=paas.app={app}");
    docker_lines(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &label,
        "--filter",
        "label=paas.kind=instance",
    ])
}

/// Image ids labelled with the app.
pub fn docker_images(app: &str) -> Vec<String> {
    let label = format!("label=paas.app={app}");
    docker_lines(&["images", "-q", "--no-trunc", "--filter", &label])
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Paths under `root` whose file name contains `needle` (to find an app's leftovers).
pub fn find_paths(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                found.push(p.clone());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    found
}

/// Writes a file (creating parent directories).
pub fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The start script of the test app: serves `public/` and `env.txt` (config and dyno) with
/// busybox httpd on `$PORT`, after printing a boot line to its log.
pub const START_SH: &str = r#"#!/bin/sh
mkdir -p /tmp/www
cp -r /app/public/. /tmp/www/
echo "greeting=$GREETING loop=$LOOP dyno=$DYNO" > /tmp/www/env.txt
echo "booting $DYNO greeting=$GREETING"
exec httpd -f -p "$PORT" -h /tmp/www
"#;

/// Writes the test app with `content` as its page and commits it.
pub fn commit_app(d: &Daemon, repo: &Path, content: &str) {
    write(repo, "Procfile", "web: sh /app/start.sh\n");
    write(repo, "start.sh", START_SH);
    write(repo, "public/index.html", &format!("content={content}\n"));
    d.git_ok(repo, &["add", "-A"]);
    d.git_ok(repo, &["commit", "-q", "-m", &format!("content {content}")]);
}

/// The `"status"` of a release JSON as one word.
pub fn status_state(release: &serde_json::Value) -> String {
    let s = &release["status"];
    s.get("state")
        .and_then(|v| v.as_str())
        .or_else(|| s.as_str())
        .unwrap_or("")
        .to_string()
}
