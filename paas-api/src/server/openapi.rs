//! The OpenAPI 3.1 description: the routes' own `#[utoipa::path]` annotations (collected by
//! `utoipa_axum` as the router is built) on top of [`base`].

use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, ResponseBuilder};

/// Title, version, the two ways to send the token, and the requirement that every operation
/// sends one.
pub(crate) fn base() -> OpenApi {
    let components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        )
        .security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("paas API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The HTTP API of a paas platform: apps, config, releases, formation, \
                     processes, one-off runs, logs and domains. Long operations answer NDJSON \
                     StreamEvents ending with one result, error or exit event.",
                ))
                .build(),
        )
        .components(Some(components))
        .security(Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("basic", Vec::<String>::new()),
        ]))
        .build()
}

/// The whole description, including `GET /v1/openapi.json` itself (served without
/// credentials).
pub(crate) fn document() -> OpenApi {
    let (_, mut doc) = super::api_routes().split_for_parts();
    let op = OperationBuilder::new()
        .summary(Some("This description (no credentials needed)"))
        .tag("platform")
        .security(SecurityRequirement::default())
        .response(
            "200",
            ResponseBuilder::new().description("OpenAPI 3.1 JSON"),
        )
        .build();
    doc.paths.paths.insert(
        "/v1/openapi.json".into(),
        PathItem::new(HttpMethod::Get, op),
    );
    doc
}
