//! Every `/v1` request is decided by the [`Authorizer`](paas_core::Authorizer) before its
//! handler runs: credentials from `Authorization`, the app from the path, the action from the
//! method and route. The [`Principal`] it returns rides in the request's extensions.

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use paas_core::{Action, AppName, AuthRequest, Credentials, Principal};

use super::error::ApiError;
use super::Ctx;

/// The action a route needs: creating, destroying and listing every app is `Admin`; any other
/// read is `Read`; any other change is `Deploy`.
pub(crate) fn action_of(method: &Method, route: &str) -> Action {
    match (method, route) {
        (&Method::POST, "/v1/apps") | (&Method::DELETE, "/v1/apps/{app}") => Action::Admin,
        (&Method::GET | &Method::HEAD, _) => Action::Read,
        _ => Action::Deploy,
    }
}

pub(crate) async fn authorize(
    State(ctx): State<Ctx>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    // Nested under a prefix, the matched path carries it: keep the `/v1/...` part.
    let route = matched.as_ref().map(MatchedPath::as_str).unwrap_or("");
    let route = route.find("/v1/").map_or(route, |i| &route[i..]);
    let action = action_of(req.method(), route);
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(Credentials::parse);
    let mut question = AuthRequest::new(credentials, action);
    if let Ok(params) = &params {
        if let Some((_, app)) = params.iter().find(|(k, _)| *k == "app") {
            // A malformed name is answered by the handler (after authentication).
            if let Ok(app) = AppName::new(app) {
                question = question.with_app(app);
            }
        }
    }
    match ctx.authorizer.authorize(&question).await {
        Ok(principal) => {
            req.extensions_mut().insert::<Principal>(principal);
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
