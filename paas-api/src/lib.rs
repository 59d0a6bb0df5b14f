//! # paas-api
//!
//! The HTTP API of a paas platform as a library:
//!
//! - [`ApiServer`] (feature `server`, default): every `/v1` route of a
//!   [`Platform`](paas_core::Platform) as an `axum::Router`, asking an
//!   [`Authorizer`](paas_core::Authorizer) about each request, answering JSON, JSON errors and
//!   NDJSON streams; mount it under any prefix of your own axum app, beside your routes and
//!   tower layers. `GET /v1/openapi.json` describes it (OpenAPI 3.1, generated from the types).
//! - [`Client`] (feature `client`): one typed async method per route; long operations are an
//!   [`Operation`] stream of progress followed by the result; errors come back as
//!   [`paas_core::Error`] with their [`ErrorKind`](paas_core::ErrorKind); `http://` and
//!   `https://` (rustls, the system's roots plus `SSL_CERT_FILE`).
//! - [`wire`]: the types both sides agree on, made to evolve (see its docs).
//!
//! ```no_run
//! # #[cfg(all(feature = "server", feature = "client"))]
//! # async fn demo(platform: paas_core::Platform) -> paas_core::Result<()> {
//! use paas_api::{ApiServer, Client};
//! use paas_core::StaticTokenAuthorizer;
//!
//! let app = axum::Router::new().nest(
//!     "/paas",
//!     ApiServer::new(platform, StaticTokenAuthorizer::new("s3cret")).router(),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await?;
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let client = Client::new("http://127.0.0.1:7070/paas")?.with_token("s3cret");
//! let created = client.create_app(&"hello".parse()?).await?;
//! println!("created {}", created.name);
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod wire;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
mod server;
#[cfg(feature = "server")]
pub use server::{
    serve, status_of, ApiError, ApiResult, ApiServer, ApiSettings, ServeSettings, NDJSON,
};

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
mod client;
#[cfg(feature = "client")]
pub use client::{json_terminal_safe, redact_url, terminal_safe, Client, Operation, Update};

pub use wire::StreamEvent;
