//! [`Client`]: one typed async method per route of the API.

mod ndjson;
mod operation;
mod terminal;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use paas_core::{
    App, AppName, Domain, Error, ErrorBody, ErrorKind, Formation, Instance, LogLine, ProcessType,
    Result, Token, Version,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use operation::{Operation, Update};
pub use terminal::{json_terminal_safe, terminal_safe};

use crate::wire::{
    AddDomain, ApiInfo, AppInfo, ConfigChanged, ConfigPatch, CreateApp, DeployBody, LogsQuery,
    Page, PageRequest, ReleaseView, RestartRequest, RollbackRequest, RunCommand,
};

/// A client of the API at one base URL (`http://127.0.0.1:7070`, or with the prefix the API is
/// mounted under: `https://example.com/paas`). Cheap to clone. Its `Debug` never shows the
/// token.
///
/// Errors: what the server answered, as [`Error`] with the server's [`ErrorKind`] and message
/// (a kind this version does not know is `ErrorKind::Unknown`); `Unavailable` when the server
/// cannot be reached or the connection breaks; `Unauthenticated` without a (valid) token.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<Token>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A path segment, percent-encoded (app names and versions need none; hostnames may).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client of the API at `base_url` (`http://` or `https://`, without credentials in the
    /// URL: give the token with [`with_token`](Self::with_token)).
    ///
    /// Errors: `InvalidInput` for another scheme or credentials in the URL.
    pub fn new(base_url: &str) -> Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("paas-api-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("the HTTP client could not be set up: {e}"),
                )
            })?;
        Self::with_http_client(base_url, http)
    }

    /// Like [`new`](Self::new), with a `reqwest::Client` of your own (proxies, extra root
    /// certificates, timeouts).
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Result<Client> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "the API URL must start with http:// or https:// (got \"{}\")",
                    redact_url(&base)
                ))
            })?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() || authority.contains('@') {
            return Err(Error::invalid(
                "the API URL must be http(s)://HOST[:PORT][/PREFIX] without credentials (give the token separately)",
            ));
        }
        Ok(Client {
            base,
            token: None,
            http,
        })
    }

    /// Sends `token` with every request (`Authorization: Bearer`).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        let t = token.into();
        self.token = (!t.trim().is_empty()).then(|| Token::new(t.trim()));
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response> {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t.expose());
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(|e| self.transport_error(e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.status_error(resp).await)
        }
    }

    async fn json<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T> {
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::internal(format!(
                "the server at {} sent an unexpected answer: {e}",
                self.base
            ))
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.send::<()>(Method::GET, path, None).await?;
        self.json(resp).await
    }

    async fn operation<T, B>(&self, method: Method, path: &str, body: &B) -> Result<Operation<T>>
    where
        T: DeserializeOwned + Send + 'static,
        B: Serialize + ?Sized,
    {
        let resp = self.send(method, path, Some(body)).await?;
        Ok(Operation::result(
            ndjson::lines(resp, &self.base),
            &self.base,
        ))
    }

    fn transport_error(&self, e: reqwest::Error) -> Error {
        // The innermost cause says the most ("Connection refused (os error 111)").
        let mut cause = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        let what = if e.is_connect() {
            format!("cannot reach the API at {}", self.base)
        } else if e.is_timeout() {
            format!("the API at {} did not answer in time", self.base)
        } else {
            format!("the request to the API at {} failed", self.base)
        };
        Error::new(ErrorKind::Unavailable, format!("{what}: {cause}"))
    }

    async fn status_error(&self, resp: reqwest::Response) -> Error {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if let Ok(body) = serde_json::from_str::<ErrorBody>(&text) {
            return Error::from(body);
        }
        let kind = match status {
            StatusCode::UNAUTHORIZED => ErrorKind::Unauthenticated,
            StatusCode::FORBIDDEN => ErrorKind::PermissionDenied,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::CONFLICT => ErrorKind::Conflict,
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::InvalidInput,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => ErrorKind::Unavailable,
            StatusCode::GATEWAY_TIMEOUT => ErrorKind::Timeout,
            StatusCode::NOT_IMPLEMENTED => ErrorKind::Unsupported,
            _ => ErrorKind::Internal,
        };
        let snippet: String = text.trim().chars().take(200).collect();
        let message = if snippet.is_empty() {
            format!("the API at {} answered {status}", self.base)
        } else {
            format!("the API at {} answered {status}: {snippet}", self.base)
        };
        Error::new(kind, message)
    }

    // -----------------------------------------------------------------------------------------
    // Routes

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<ApiInfo> {
        self.get("/v1/info").await
    }

    /// `GET /v1/apps`: one page of apps, by name.
    pub async fn apps(&self, page: &PageRequest) -> Result<Page<App>> {
        self.get(&format!("/v1/apps{}", page_query(page))).await
    }

    /// Every app, by name (fetches page after page).
    pub async fn all_apps(&self) -> Result<Vec<App>> {
        let mut all = Vec::new();
        let mut req = PageRequest::first(1000);
        loop {
            let page = self.apps(&req).await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(c) => req = PageRequest::first(1000).after(c),
                None => return Ok(all),
            }
        }
    }

    /// `POST /v1/apps`.
    pub async fn create_app(&self, name: &AppName) -> Result<App> {
        let resp = self
            .send(
                Method::POST,
                "/v1/apps",
                Some(&CreateApp { name: name.clone() }),
            )
            .await?;
        self.json(resp).await
    }

    /// `GET /v1/apps/{app}`.
    pub async fn app(&self, app: &AppName) -> Result<AppInfo> {
        self.get(&format!("/v1/apps/{app}")).await
    }

    /// `DELETE /v1/apps/{app}`.
    pub async fn destroy_app(&self, app: &AppName) -> Result<()> {
        self.send::<()>(Method::DELETE, &format!("/v1/apps/{app}"), None)
            .await
            .map(drop)
    }

    /// `GET /v1/apps/{app}/config`.
    pub async fn config(&self, app: &AppName) -> Result<BTreeMap<String, String>> {
        self.get(&format!("/v1/apps/{app}/config")).await
    }

    /// `PATCH /v1/apps/{app}/config`: a new release, rolled out.
    pub async fn set_config(
        &self,
        app: &AppName,
        patch: &ConfigPatch,
    ) -> Result<Operation<ConfigChanged>> {
        self.operation(Method::PATCH, &format!("/v1/apps/{app}/config"), patch)
            .await
    }

    /// `GET /v1/apps/{app}/releases`: one page, newest first.
    pub async fn releases(&self, app: &AppName, page: &PageRequest) -> Result<Page<ReleaseView>> {
        self.get(&format!("/v1/apps/{app}/releases{}", page_query(page)))
            .await
    }

    /// `GET /v1/apps/{app}/releases/{version}`.
    pub async fn release(&self, app: &AppName, version: Version) -> Result<ReleaseView> {
        self.get(&format!("/v1/apps/{app}/releases/{}", version.0))
            .await
    }

    /// `POST /v1/apps/{app}/rollback` (to `version`, default the one before the current).
    pub async fn rollback(
        &self,
        app: &AppName,
        version: Option<Version>,
    ) -> Result<Operation<ReleaseView>> {
        self.operation(
            Method::POST,
            &format!("/v1/apps/{app}/rollback"),
            &RollbackRequest { version },
        )
        .await
    }

    /// `POST /v1/apps/{app}/deploys`.
    pub async fn deploy(&self, app: &AppName, body: &DeployBody) -> Result<Operation<ReleaseView>> {
        self.operation(Method::POST, &format!("/v1/apps/{app}/deploys"), body)
            .await
    }

    /// `GET /v1/apps/{app}/formation`.
    pub async fn formation(&self, app: &AppName) -> Result<Formation> {
        self.get(&format!("/v1/apps/{app}/formation")).await
    }

    /// `PATCH /v1/apps/{app}/formation`: the whole formation after the change.
    pub async fn scale(&self, app: &AppName, changes: &Formation) -> Result<Operation<Formation>> {
        self.operation(Method::PATCH, &format!("/v1/apps/{app}/formation"), changes)
            .await
    }

    /// `GET /v1/apps/{app}/ps`.
    pub async fn ps(&self, app: &AppName) -> Result<Vec<Instance>> {
        self.get(&format!("/v1/apps/{app}/ps")).await
    }

    /// `POST /v1/apps/{app}/restart` (every process, or those of one type).
    pub async fn restart(
        &self,
        app: &AppName,
        only: Option<&ProcessType>,
    ) -> Result<Operation<()>> {
        let body = RestartRequest {
            process_type: only.map(ToString::to_string),
        };
        self.operation(Method::POST, &format!("/v1/apps/{app}/restart"), &body)
            .await
    }

    /// `GET /v1/apps/{app}/logs`: past lines, then (with `follow`) new ones until the stream is
    /// dropped or the server closes it.
    pub async fn logs(
        &self,
        app: &AppName,
        query: &LogsQuery,
    ) -> Result<BoxStream<'static, Result<LogLine>>> {
        let mut params = Vec::new();
        if let Some(n) = query.lines {
            params.push(format!("lines={n}"));
        }
        if query.follow == Some(true) {
            params.push("follow=true".to_string());
        }
        let q = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        let resp = self
            .send::<()>(Method::GET, &format!("/v1/apps/{app}/logs{q}"), None)
            .await?;
        let base = self.base.clone();
        Ok(ndjson::lines(resp, &self.base)
            .and_then(move |line| {
                let parsed = serde_json::from_str::<LogLine>(&line).map_err(|_| {
                    // The stream may end with an error event.
                    match serde_json::from_str::<crate::StreamEvent>(&line) {
                        Ok(crate::StreamEvent::Error { error }) => Error::from(error),
                        _ => Error::internal(format!(
                            "the server at {base} sent a line that is not a log line"
                        )),
                    }
                });
                futures::future::ready(parsed)
            })
            .boxed())
    }

    /// `POST /v1/apps/{app}/run`: output as `Update::Output`, then the exit code.
    pub async fn run(&self, app: &AppName, command: Vec<String>) -> Result<Operation<i32>> {
        let resp = self
            .send(
                Method::POST,
                &format!("/v1/apps/{app}/run"),
                Some(&RunCommand { command }),
            )
            .await?;
        Ok(Operation::exit_code(
            ndjson::lines(resp, &self.base),
            &self.base,
        ))
    }

    /// `GET /v1/apps/{app}/domains`.
    pub async fn domains(&self, app: &AppName) -> Result<Vec<Domain>> {
        self.get(&format!("/v1/apps/{app}/domains")).await
    }

    /// `POST /v1/apps/{app}/domains`.
    pub async fn add_domain(&self, app: &AppName, host: &Domain) -> Result<Domain> {
        let resp = self
            .send(
                Method::POST,
                &format!("/v1/apps/{app}/domains"),
                Some(&AddDomain {
                    host: host.to_string(),
                }),
            )
            .await?;
        let added: AddDomain = self.json(resp).await?;
        Domain::new(added.host)
    }

    /// `DELETE /v1/apps/{app}/domains/{host}`.
    pub async fn remove_domain(&self, app: &AppName, host: &Domain) -> Result<()> {
        self.send::<()>(
            Method::DELETE,
            &format!("/v1/apps/{app}/domains/{}", seg(host.as_str())),
            None,
        )
        .await
        .map(drop)
    }
}

fn page_query(page: &PageRequest) -> String {
    let mut params = Vec::new();
    if let Some(n) = page.limit {
        params.push(format!("limit={n}"));
    }
    if let Some(c) = &page.cursor {
        params.push(format!("cursor={}", seg(c)));
    }
    if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    }
}

/// A URL with any `user:password@` part removed, for messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://{host}{path}");
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_tokens_hidden() {
        assert!(Client::new("ftp://x").is_err());
        let e = Client::new("http://u:secret@h:1").unwrap_err();
        assert!(!e.message().contains("secret"), "{e}");
        let e = Client::new("gopher://u:secret@h").unwrap_err();
        assert!(!e.message().contains("secret"), "{e}");
        let c = Client::new("https://h:1/paas/")
            .unwrap()
            .with_token("tok-123");
        assert_eq!(c.base_url(), "https://h:1/paas");
        assert!(!format!("{c:?}").contains("tok-123"));
        assert_eq!(seg("*.example.com"), "*.example.com");
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }
}
