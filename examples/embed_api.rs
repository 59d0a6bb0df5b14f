//! The API inside your own axum app: mounted under `/paas` beside your own routes and tower
//! layers, with your own authorization (here: a reader and an operator token), then driven
//! with the typed `Client`.
//!
//! ```text
//! cargo run --example embed_api
//! ```

use paas::api::wire::ConfigPatch;
use paas::api::{ApiServer, ApiSettings, Client};
use paas::core::memory::*;
use paas::core::{
    async_trait, Action, AuthRequest, Authorizer, Error, ErrorKind, Platform, Principal,
};

/// Your identity system: here two fixed tokens; in real life a database or an OIDC check.
#[derive(Debug)]
struct TeamAuthorizer;

#[async_trait]
impl Authorizer for TeamAuthorizer {
    async fn authorize(&self, req: &AuthRequest) -> paas::core::Result<Principal> {
        let token = req
            .credentials
            .as_ref()
            .ok_or_else(paas::core::missing_credentials)?
            .token();
        match (token.expose(), req.action) {
            ("operator-token", _) => Ok(Principal::new("operator")),
            ("reader-token", Action::Read) => Ok(Principal::new("reader")),
            ("reader-token", action) => Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("the reader token may not {action}"),
            )),
            _ => Err(Error::new(ErrorKind::Unauthenticated, "unknown token")),
        }
    }
}

#[tokio::main]
async fn main() -> paas::core::Result<()> {
    let platform = Platform::composer()
        .sources(MemorySourceStore::new())
        .builder(MemoryBuilder::new())
        .store(MemoryReleaseStore::new())
        .scheduler(MemoryScheduler::new())
        .router(MemoryRouter::new())
        .log_sink(MemoryLogSink::new())
        .compose()?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/paas", listener.local_addr()?);
    let api = ApiServer::new(platform, TeamAuthorizer)
        .settings(ApiSettings::default().with_api_url(&base))
        .router();
    // Your app: your routes, the platform's API under /paas, and your own tower layers.
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { "our internal platform" }),
        )
        .nest("/paas", api)
        .layer(tower::limit::ConcurrencyLimitLayer::new(256));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let operator = Client::new(&base)?.with_token("operator-token");
    let reader = Client::new(&base)?.with_token("reader-token");

    let name = "billing".parse()?;
    operator.create_app(&name).await?;
    let info = reader.app(&name).await?;
    println!("reader sees {} (git: {})", info.name, info.git_url);

    let mut patch = ConfigPatch::default();
    patch.set.insert("PLAN".into(), "pro".into());
    match reader.set_config(&name, &patch).await {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            println!("reader may not change config: {}", e.message())
        }
        other => panic!("the reader changed config: {other:?}"),
    }
    let changed = operator.set_config(&name, &patch).await?.wait().await?;
    println!(
        "operator set PLAN (no build yet, so no release: {:?})",
        changed.release.map(|r| r.version)
    );
    println!("apps: {:?}", operator.all_apps().await?.len());
    Ok(())
}
