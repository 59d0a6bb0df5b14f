//! [`GitHttpService`]: git's smart-HTTP protocol (push, clone, fetch) as a tower `Service`.
//!
//! Requests are checked here (route, token, app, body size, pkt-line framing, pushed ref names,
//! pack integrity, stale old values) and then handed to `git receive-pack` / `git upload-pack`
//! in `--stateless-rpc` mode, run with explicit arguments (never through a shell).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use paas_core::{Action, AppName, AuthRequest, Authorizer, Credentials, ErrorKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::body::{ReadError, RequestBody};
use crate::hook::PushHook;
use crate::pktline;
use crate::store::GitSourceStore;

/// A boxed, thread-safe error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body of [`GitHttpService`].
pub type GitBody = UnsyncBoxBody<Bytes, BoxError>;

/// Settings of [`GitHttpService`]. Start from `GitHttpSettings::default()` and set fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GitHttpSettings {
    /// Branches whose pushes call the [`PushHook`] (default `main` and `master`).
    pub deploy_branches: Vec<String>,
    /// The largest request body accepted (default 512 MiB). Larger requests get 413 and
    /// change nothing.
    pub max_body_bytes: usize,
    /// The largest gzip-encoded request body, once decoded (default 32 MiB). git gzips only
    /// fetch negotiations (want/have lines), never packs, so this stays small: a small
    /// compressed body that would inflate past it (a gzip bomb) gets 413 after at most this
    /// much memory.
    pub max_gzip_decoded_bytes: usize,
    /// The `git` executable (default `git`, looked up on `PATH`).
    pub git_binary: PathBuf,
    /// While a deploy hook runs silently, a keep-alive packet is sent this often (default 5 s),
    /// so that proxies do not drop the connection.
    pub keepalive: Duration,
    /// The realm in `WWW-Authenticate` (default `paas`).
    pub realm: String,
}

impl Default for GitHttpSettings {
    fn default() -> Self {
        GitHttpSettings {
            deploy_branches: vec!["main".into(), "master".into()],
            max_body_bytes: 512 * 1024 * 1024,
            max_gzip_decoded_bytes: 32 * 1024 * 1024,
            git_binary: PathBuf::from("git"),
            keepalive: Duration::from_secs(5),
            realm: "paas".into(),
        }
    }
}

/// git's smart-HTTP protocol over a [`GitSourceStore`], as a tower `Service` that hyper or axum
/// can mount (it sees paths relative to its mount point):
///
/// - `GET /<app>.git/info/refs?service=git-upload-pack|git-receive-pack`
/// - `POST /<app>.git/git-upload-pack` (clone, fetch; protocol v0 and v2)
/// - `POST /<app>.git/git-receive-pack` (push)
///
/// Every request is decided by the [`Authorizer`] (the same one the HTTP API asks): HTTP Basic
/// credentials whose password is the token (any user name, like Heroku), the app, and the
/// action (`Read` for clone and fetch, `Deploy` for push). Unknown credentials get 401 with
/// `WWW-Authenticate`, known ones without the right 403. The app's repository must exist
/// (made by [`paas_core::SourceStore::create_repo`]); otherwise 404. Only `refs/heads/*` may be
/// pushed. After a push to a deploy branch is stored, the [`PushHook`] runs and its progress
/// reaches the pusher as `remote:` lines.
#[derive(Clone)]
pub struct GitHttpService {
    inner: Arc<ServiceInner>,
}

#[derive(Clone)]
pub(crate) struct ServiceInner {
    pub(crate) store: GitSourceStore,
    pub(crate) auth: Arc<dyn Authorizer>,
    pub(crate) settings: GitHttpSettings,
    pub(crate) hook: Option<Arc<dyn PushHook>>,
}

impl fmt::Debug for GitHttpService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHttpService")
            .field("store", &self.inner.store)
            .field("settings", &self.inner.settings)
            .field("hook", &self.inner.hook)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GitService {
    Upload,
    Receive,
}

impl GitService {
    fn name(self) -> &'static str {
        match self {
            GitService::Upload => "git-upload-pack",
            GitService::Receive => "git-receive-pack",
        }
    }
    fn subcommand(self) -> &'static str {
        match self {
            GitService::Upload => "upload-pack",
            GitService::Receive => "receive-pack",
        }
    }
}

#[derive(Clone, Copy)]
enum Route {
    InfoRefs,
    Rpc(GitService),
}

/// Parses `/<app>.git/<route>`. Anything odd (percent-encoding, `..`, `//`, backslashes,
/// absolute file paths, a bad app name) is `None`, which becomes 404.
fn parse_path(path: &str) -> Option<(AppName, Route)> {
    if path.contains('%') || path.contains("..") || path.contains('\\') || path.contains("//") {
        return None;
    }
    let rest = path.strip_prefix('/')?;
    let (repo, tail) = rest.split_once('/')?;
    let app = AppName::new(repo.strip_suffix(".git").unwrap_or(repo)).ok()?;
    let route = match tail {
        "info/refs" => Route::InfoRefs,
        "git-upload-pack" => Route::Rpc(GitService::Upload),
        "git-receive-pack" => Route::Rpc(GitService::Receive),
        _ => return None,
    };
    Some((app, route))
}

pub(crate) fn full_body(bytes: impl Into<Bytes>) -> GitBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

pub(crate) fn text(status: StatusCode, message: impl Into<String>) -> Response<GitBody> {
    let mut message = message.into();
    message.push('\n');
    let mut resp = Response::new(full_body(message));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn no_cache(headers: &mut HeaderMap) {
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::EXPIRES,
        HeaderValue::from_static("Fri, 01 Jan 1980 00:00:00 GMT"),
    );
}

pub(crate) fn git_response(content_type: &'static str, body: GitBody) -> Response<GitBody> {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    no_cache(resp.headers_mut());
    resp
}

pub(crate) fn result_type(service: GitService) -> &'static str {
    match service {
        GitService::Upload => "application/x-git-upload-pack-result",
        GitService::Receive => "application/x-git-receive-pack-result",
    }
}

/// A response body fed by a channel.
pub(crate) fn channel_body(rx: mpsc::UnboundedReceiver<Bytes>) -> GitBody {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
    });
    StreamBody::new(stream).boxed_unsync()
}

/// The `Git-Protocol` header, if it is a plausible value (`version=2`); it is passed to
/// upload-pack through `GIT_PROTOCOL`.
fn git_protocol(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("git-protocol")?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b':' | b'.' | b'-' | b'_'));
    ok.then(|| value.to_string())
}

/// What a request asks the authorizer: its credentials, its app, and the action its route
/// needs (clone and fetch `Read`, push `Deploy`).
fn auth_question<B>(req: &Request<B>, app: &AppName, route: Route) -> AuthRequest {
    let action = match route {
        Route::Rpc(GitService::Receive) => Action::Deploy,
        Route::InfoRefs if req.uri().query() == Some("service=git-receive-pack") => Action::Deploy,
        _ => Action::Read,
    };
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(Credentials::parse);
    AuthRequest::new(credentials, action).with_app(app.clone())
}

fn is_v2(protocol: &Option<String>) -> bool {
    protocol
        .as_deref()
        .is_some_and(|p| p.split(':').any(|kv| kv == "version=2"))
}

/// Drains a child's stderr (bounded) so that it can never block on a full pipe.
pub(crate) fn drain_stderr(
    stderr: Option<tokio::process::ChildStderr>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        if let Some(mut stderr) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if out.len() < 64 * 1024 {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// Reads a chunk from `reader` into `buf`; returns the number of bytes read.
pub(crate) async fn read_chunk(reader: &mut (impl AsyncRead + Unpin), buf: &mut BytesMut) -> usize {
    buf.reserve(64 * 1024);
    reader.read_buf(buf).await.unwrap_or(0)
}

enum BodyError {
    TooLarge,
    Unreadable(String),
    UnsupportedEncoding,
}

impl GitHttpService {
    /// A service over `store`, admitting what `auth` allows, with no push hook.
    pub fn new(
        store: GitSourceStore,
        auth: Arc<dyn Authorizer>,
        settings: GitHttpSettings,
    ) -> Self {
        GitHttpService {
            inner: Arc::new(ServiceInner {
                store,
                auth,
                settings,
                hook: None,
            }),
        }
    }

    /// Sets the hook called after each successful push to a deploy branch.
    pub fn with_hook(self, hook: Arc<dyn PushHook>) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.hook = Some(hook);
        GitHttpService {
            inner: Arc::new(inner),
        }
    }

    /// The store it serves.
    pub fn store(&self) -> &GitSourceStore {
        &self.inner.store
    }

    /// Serves HTTP/1.1 on `listener` until the listener fails; each connection runs on its own
    /// task. For a server of your own, mount the service in hyper or axum instead.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "git http: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(self.clone());
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "git http: connection ended with an error");
                }
            });
        }
    }

    /// Asks the authorizer `question`; the refusal is the answer to send.
    async fn authorize(
        &self,
        app: &AppName,
        question: AuthRequest,
    ) -> Result<(), Response<GitBody>> {
        let inner = &self.inner;
        let Err(e) = inner.auth.authorize(&question).await else {
            return Ok(());
        };
        Err(match e.kind() {
            ErrorKind::Unauthenticated => {
                let mut resp = text(
                    StatusCode::UNAUTHORIZED,
                    "authentication required: use any user name and your API token as the password",
                );
                let challenge =
                    format!("Basic realm=\"{}\"", inner.settings.realm.escape_default());
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                resp
            }
            ErrorKind::PermissionDenied => text(StatusCode::FORBIDDEN, e.message()),
            _ => {
                tracing::warn!(%app, error = %e, "git http: the authorizer failed");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "authorization is unavailable right now",
                )
            }
        })
    }

    /// Handles one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<GitBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let inner = &self.inner;
        let Some((app, route)) = parse_path(req.uri().path()) else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        let question = auth_question(&req, &app, route);
        if let Err(refused) = self.authorize(&app, question).await {
            return refused;
        }
        let path = inner.store.repo_path(&app);
        if !path.join("HEAD").is_file() {
            return text(
                StatusCode::NOT_FOUND,
                format!("app \"{app}\" not found (create it first)"),
            );
        }
        let protocol = git_protocol(req.headers());
        match route {
            Route::InfoRefs => {
                if req.method() != Method::GET && req.method() != Method::HEAD {
                    return text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
                }
                let service = req.uri().query().and_then(|q| {
                    q.split('&').find_map(|kv| match kv {
                        "service=git-upload-pack" => Some(GitService::Upload),
                        "service=git-receive-pack" => Some(GitService::Receive),
                        _ => None,
                    })
                });
                match service {
                    Some(service) => inner.info_refs(&path, service, protocol).await,
                    None => text(
                        StatusCode::FORBIDDEN,
                        "only git's smart HTTP protocol is served (service=git-upload-pack or git-receive-pack)",
                    ),
                }
            }
            Route::Rpc(service) => {
                if req.method() != Method::POST {
                    return text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
                }
                let expected = match service {
                    GitService::Upload => "application/x-git-upload-pack-request",
                    GitService::Receive => "application/x-git-receive-pack-request",
                };
                let content_type = req
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if content_type != expected {
                    return text(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!("content type must be {expected}"),
                    );
                }
                let (parts, body) = req.into_parts();
                let body = match inner.read_body(&parts.headers, body, service).await {
                    Ok(b) => b,
                    Err(BodyError::TooLarge) => {
                        return text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!(
                                "request body is larger than the limit of {} bytes ({} once gzip is decoded)",
                                inner.settings.max_body_bytes,
                                inner.settings.max_gzip_decoded_bytes
                            ),
                        )
                    }
                    Err(BodyError::UnsupportedEncoding) => {
                        return text(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            "content encoding must be gzip or identity",
                        )
                    }
                    Err(BodyError::Unreadable(why)) => return text(StatusCode::BAD_REQUEST, why),
                };
                match service {
                    GitService::Upload => {
                        // Held to the small limit: whole in memory is fine.
                        let bytes = match body {
                            RequestBody::Memory(b) => b,
                            spooled => {
                                let len = spooled.len() as usize;
                                match spooled.prefix(len) {
                                    Ok(b) => b,
                                    Err(e) => {
                                        return text(
                                            StatusCode::INTERNAL_SERVER_ERROR,
                                            format!("reading the request failed: {e}"),
                                        )
                                    }
                                }
                            }
                        };
                        inner.upload_pack(&path, bytes, protocol).await
                    }
                    GitService::Receive => Arc::clone(inner).receive_pack(app, path, body).await,
                }
            }
        }
    }
}

impl ServiceInner {
    pub(crate) fn git(
        &self,
        service: GitService,
        path: &Path,
        protocol: Option<&str>,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.settings.git_binary);
        cmd.env_clear();
        if let Some(p) = std::env::var_os("PATH") {
            cmd.env("PATH", p);
        } else {
            cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        }
        cmd.env("HOME", self.store.root())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0");
        if let Some(p) = protocol {
            cmd.env("GIT_PROTOCOL", p);
        }
        cmd.arg(service.subcommand())
            .arg("--stateless-rpc")
            .current_dir(path)
            .kill_on_drop(true);
        cmd
    }

    /// Starts `git <service> --stateless-rpc -- PATH` with `body` fed to its stdin (from its
    /// own task, so a large body never blocks on git's output) and its stderr drained.
    /// Starts `git <service> --stateless-rpc -- PATH` with `body` fed to its stdin (from its
    /// own task, so a large body never blocks on git's output) and its stderr drained.
    pub(crate) fn spawn_rpc(
        &self,
        service: GitService,
        path: &Path,
        protocol: Option<&str>,
        body: RequestBody,
    ) -> std::io::Result<(
        tokio::process::Child,
        tokio::process::ChildStdout,
        tokio::task::JoinHandle<String>,
    )> {
        let mut child = self
            .git(service, path, protocol)
            .arg("--")
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .inspect_err(|e| {
                tracing::warn!(error = %e, service = service.subcommand(), "git http: cannot run git")
            })?;
        let stdin = child.stdin.take();
        tokio::spawn(async move {
            let Some(mut stdin) = stdin else { return };
            match body {
                RequestBody::Memory(b) => {
                    let _ = stdin.write_all(&b).await;
                }
                spooled => {
                    // From the spool file in chunks, read on the blocking pool.
                    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
                    tokio::task::spawn_blocking(move || {
                        let Ok(mut r) = spooled.reader() else { return };
                        let mut buf = vec![0u8; 256 * 1024];
                        while let Ok(n) = r.read(&mut buf) {
                            if n == 0
                                || tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err()
                            {
                                return;
                            }
                        }
                    });
                    while let Some(chunk) = rx.recv().await {
                        if stdin.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stderr = drain_stderr(child.stderr.take());
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("git has no stdout pipe"))?;
        Ok((child, stdout, stderr))
    }

    /// Reads a request body: refused past its limit before more is buffered, spooled to disk
    /// when large. Gzip bodies (git sends them for fetch negotiations only) and upload-pack
    /// bodies are held to [`GitHttpSettings::max_gzip_decoded_bytes`], decoded.
    async fn read_body<B>(
        &self,
        headers: &HeaderMap,
        body: B,
        service: GitService,
    ) -> Result<RequestBody, BodyError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let small = self
            .settings
            .max_gzip_decoded_bytes
            .min(self.settings.max_body_bytes);
        let gzip = match headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("identity") | Some("") => false,
            Some("gzip") | Some("x-gzip") => true,
            Some(_) => return Err(BodyError::UnsupportedEncoding),
        };
        let limit = if gzip || service == GitService::Upload {
            small
        } else {
            self.settings.max_body_bytes
        };
        if let Some(len) = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > limit as u64 {
                return Err(BodyError::TooLarge);
            }
        }
        let read = match RequestBody::read(body, limit).await {
            Ok(r) => r,
            Err(ReadError::TooLarge) => return Err(BodyError::TooLarge),
            Err(ReadError::Unreadable(why)) => return Err(BodyError::Unreadable(why)),
        };
        if !gzip {
            return Ok(read);
        }
        let decoded = tokio::task::spawn_blocking(move || {
            let raw = read
                .reader()
                .map_err(|e| BodyError::Unreadable(format!("reading the request failed: {e}")))?;
            let mut out = Vec::new();
            let mut decoder = flate2::read::GzDecoder::new(raw).take(small as u64 + 1);
            match decoder.read_to_end(&mut out) {
                Ok(_) if out.len() > small => Err(BodyError::TooLarge),
                Ok(_) => Ok(RequestBody::Memory(Bytes::from(out))),
                Err(e) => Err(BodyError::Unreadable(format!(
                    "malformed gzip request body: {e}"
                ))),
            }
        })
        .await
        .map_err(|e| BodyError::Unreadable(format!("decoding the request failed: {e}")))?;
        decoded
    }

    async fn info_refs(
        &self,
        path: &Path,
        service: GitService,
        protocol: Option<String>,
    ) -> Response<GitBody> {
        let protocol = protocol.filter(|_| service == GitService::Upload);
        let v2 = is_v2(&protocol);
        let output = self
            .git(service, path, protocol.as_deref())
            .arg("--advertise-refs")
            .arg("--")
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .await;
        let output = match output {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                tracing::warn!(
                    service = service.name(),
                    status = %o.status,
                    stderr = %String::from_utf8_lossy(&o.stderr),
                    "git http: advertising refs failed"
                );
                return text(StatusCode::INTERNAL_SERVER_ERROR, "git failed to list refs");
            }
            Err(e) => {
                tracing::warn!(error = %e, "git http: cannot run git");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot run git");
            }
        };
        let mut body = BytesMut::new();
        if !v2 {
            pktline::encode(
                &mut body,
                format!("# service={}\n", service.name()).as_bytes(),
            );
            body.extend_from_slice(pktline::FLUSH);
        }
        body.extend_from_slice(&output.stdout);
        let content_type = match service {
            GitService::Upload => "application/x-git-upload-pack-advertisement",
            GitService::Receive => "application/x-git-receive-pack-advertisement",
        };
        git_response(content_type, full_body(body.freeze()))
    }

    async fn upload_pack(
        &self,
        path: &Path,
        body: Bytes,
        protocol: Option<String>,
    ) -> Response<GitBody> {
        if let Err(why) = pktline::check_framing(&body) {
            return text(StatusCode::BAD_REQUEST, why);
        }
        let (child, stdout, stderr) = match self.spawn_rpc(
            GitService::Upload,
            path,
            protocol.as_deref(),
            RequestBody::Memory(body),
        ) {
            Ok(spawned) => spawned,
            Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot run git"),
        };
        let state = (Some((child, stdout, stderr)), BytesMut::new());
        let stream = futures::stream::unfold(state, |(running, mut buf)| async move {
            let (mut child, mut stdout, stderr) = running?;
            let n = read_chunk(&mut stdout, &mut buf).await;
            if n > 0 {
                let chunk = buf.split().freeze();
                return Some((
                    Ok::<_, BoxError>(Frame::data(chunk)),
                    (Some((child, stdout, stderr)), buf),
                ));
            }
            match child.wait().await {
                Ok(status) if status.success() => {}
                other => {
                    let stderr = stderr.await.unwrap_or_default();
                    tracing::warn!(status = ?other, %stderr, "git http: upload-pack failed");
                }
            }
            None
        });
        git_response(
            result_type(GitService::Upload),
            StreamBody::new(stream).boxed_unsync(),
        )
    }
}

impl<B> tower::Service<Request<B>> for GitHttpService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<GitBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<GitBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(matches!(
            parse_path("/my-app.git/info/refs"),
            Some((_, Route::InfoRefs))
        ));
        assert!(matches!(
            parse_path("/my-app/git-receive-pack"),
            Some((_, Route::Rpc(GitService::Receive)))
        ));
        for bad in [
            "/../x.git/info/refs",
            "/a.git/../b.git/info/refs",
            "/%2e%2e/info/refs",
            "/a%2Egit/info/refs",
            "//etc/passwd",
            "/etc/passwd.git/info/refs",
            "/A.git/info/refs",
            "/a.git/objects/info/packs",
            "/a.git/HEAD",
            "a.git/info/refs",
        ] {
            assert!(parse_path(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn protocol_header() {
        let mut h = HeaderMap::new();
        h.insert("git-protocol", HeaderValue::from_static("version=2"));
        assert!(is_v2(&git_protocol(&h)));
        h.insert(
            "git-protocol",
            HeaderValue::from_static("version=2; rm -rf /"),
        );
        assert_eq!(git_protocol(&h), None);
    }
}
