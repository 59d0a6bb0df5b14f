//! The routes file of the standalone `proxy` binary:
//! `{"apps": {"NAME": {"hosts": ["..."], "endpoints": ["127.0.0.1:9001"], "balance": "round_robin"}}}`
//! (`hosts` and `balance` optional). Errors name the field (`apps.web.endpoints[1]`) and the
//! rule.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use paas_core::{AppName, Domain, Error, Result, Route};
use serde::{Deserialize, Deserializer};

use crate::settings::Balance;

/// A parsed routes file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutesFile {
    /// One route per app, sorted by app.
    pub routes: Vec<Route>,
    /// Balancing modes given in the file.
    pub balance: BTreeMap<AppName, Balance>,
}

/// The file as written; field paths in errors come from `serde_path_to_error`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    apps: BTreeMap<String, AppSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppSpec {
    #[serde(default)]
    hosts: Option<Vec<Domain>>,
    endpoints: Vec<Endpoint>,
    #[serde(default)]
    balance: Option<Balance>,
}

/// An `IP:PORT` with a port that is not 0.
struct Endpoint(SocketAddr);

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let addr: SocketAddr = text.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "\"{}\" is not an IP:PORT address",
                text.escape_debug()
            ))
        })?;
        if addr.port() == 0 {
            return Err(serde::de::Error::custom("port must not be 0"));
        }
        Ok(Endpoint(addr))
    }
}

fn bad(field: &str, rule: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{field}: {rule}")).with_operation("parse routes file")
}

impl RoutesFile {
    /// Parses and validates the JSON text. Nothing is partially accepted.
    pub fn parse(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            bad(
                "routes file",
                format!(
                    "not valid JSON (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let spec: FileSpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let rule = e.into_inner().to_string();
            // A missing field is named by its own path, not its parent's.
            let named = rule
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next());
            let field = match (path.as_str(), named) {
                (".", Some(f)) => f.to_string(),
                (".", None) => "routes file".to_string(),
                (p, Some(f)) => format!("{p}.{f}"),
                (p, None) => p.to_string(),
            };
            bad(&field, rule)
        })?;
        let mut out = RoutesFile::default();
        let mut owners: BTreeMap<Domain, AppName> = BTreeMap::new();
        for (name, spec) in spec.apps {
            let field = format!("apps.{name}");
            let app = AppName::new(name).map_err(|e| bad(&field, e.message()))?;
            let mut hosts: Vec<Domain> = Vec::new();
            for (i, d) in spec.hosts.unwrap_or_default().into_iter().enumerate() {
                if let Some(other) = owners.insert(d.clone(), app.clone()) {
                    if other != app {
                        return Err(bad(
                            &format!("{field}.hosts[{i}]"),
                            format!("host \"{d}\" is already listed by app \"{other}\""),
                        ));
                    }
                }
                if !hosts.contains(&d) {
                    hosts.push(d);
                }
            }
            if let Some(b) = spec.balance {
                out.balance.insert(app.clone(), b);
            }
            out.routes.push(Route {
                app,
                hosts,
                endpoints: spec.endpoints.into_iter().map(|e| e.0).collect(),
            });
        }
        out.routes.sort_by(|a, b| a.app.cmp(&b.app));
        Ok(out)
    }
}

impl crate::ProxyRouter {
    /// Applies a parsed routes file: balancing modes, then the whole table in one swap.
    pub fn apply_routes_file(&self, file: &RoutesFile) -> Result<()> {
        for (app, b) in &file.balance {
            self.set_balance(app, *b);
        }
        self.replace_routes(file.routes.clone())
    }
}

/// Reads, validates and applies the routes file at `path`; returns the number of apps. On any
/// error (unreadable, bad JSON, a field breaking a rule) the current table stays as it is.
pub async fn load_routes_file(router: &crate::ProxyRouter, path: &Path) -> Result<usize> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        Error::from(e).with_operation(format!("read routes file {}", path.display()))
    })?;
    let file = RoutesFile::parse(&text)
        .map_err(|e| Error::invalid(format!("routes file {}: {}", path.display(), e.message())))?;
    router.apply_routes_file(&file)?;
    Ok(file.routes.len())
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reloads the routes file when it changes (its modification time or size, checked every
/// `poll`) and on SIGHUP, forever. A bad file is logged with the field it breaks and the
/// current table stays.
pub async fn watch_routes_file(router: crate::ProxyRouter, path: PathBuf, poll: Duration) {
    let mut last = stamp(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let reason = tokio::select! {
            _ = tokio::time::sleep(poll) => "file changed",
            _ = hangup => "SIGHUP",
        };
        let now = stamp(&path);
        if reason == "file changed" && now == last {
            continue;
        }
        last = now;
        match load_routes_file(&router, &path).await {
            Ok(apps) => tracing::info!(apps, reason, path = %path.display(), "routes reloaded"),
            Err(e) => {
                tracing::error!(error = %e, reason, "routes file rejected; the current table stays")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_fields() {
        let f = RoutesFile::parse(
            r#"{"apps": {"web": {"hosts": ["www.example.com", "*.example.org"], "endpoints": ["127.0.0.1:9001", "[::1]:9002"], "balance": "round_robin"}, "api": {"endpoints": []}}}"#,
        )
        .unwrap();
        assert_eq!(f.routes.len(), 2);
        assert_eq!(f.routes[0].app.as_str(), "api");
        assert_eq!(f.routes[1].endpoints.len(), 2);
        assert_eq!(f.balance.values().next(), Some(&Balance::RoundRobin));

        for (text, field) in [
            (
                r#"{"apps": {"web": {"endpoints": ["127.0.0.1"]}}}"#,
                "apps.web.endpoints[0]",
            ),
            (r#"{"apps": {"Web": {"endpoints": []}}}"#, "apps.Web"),
            (
                r#"{"apps": {"web": {"hosts": ["A.com"], "endpoints": []}}}"#,
                "apps.web.hosts[0]",
            ),
            (r#"{"apps": {"web": {}}}"#, "apps.web.endpoints"),
            (
                r#"{"apps": {"web": {"endpoints": [], "balance": "random"}}}"#,
                "apps.web.balance",
            ),
            (
                r#"{"apps": {"web": {"endpoints": [], "port": 1}}}"#,
                "apps.web.port",
            ),
            (
                r#"{"apps": {"a": {"hosts": ["x.com"], "endpoints": []}, "b": {"hosts": ["x.com"], "endpoints": []}}}"#,
                "apps.b.hosts[0]",
            ),
            (r#"{"routes": {}}"#, "routes"),
            (r#"{"apps": "#, "routes file"),
        ] {
            let e = RoutesFile::parse(text).unwrap_err();
            assert!(e.message().starts_with(&format!("{field}:")), "{text}: {e}");
        }
    }
}
