//! Who may do what: the [`Authorizer`] trait that the HTTP API and the git endpoint both ask,
//! the [`Credentials`] a request carries, and [`StaticTokenAuthorizer`], the default (one token
//! that may do everything, compared in constant time).
//!
//! An embedder replaces the authorizer to plug in its own identity system: the API server and
//! the git endpoint call [`Authorizer::authorize`] once per request with the credentials, the
//! app the request is about (if any) and the [`Action`] it needs.

use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::error::{Error, ErrorKind, Result};
use crate::model::AppName;

/// A secret token. Its `Debug` output never shows it; [`Token::expose`] is the only way in.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Token(token.into())
    }
    /// The token itself (to compare or send it; never to log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// A fresh random token: 24 bytes from the operating system's generator, as 48 hex digits.
    pub fn generate() -> Result<Token> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("the operating system's random generator failed: {e}"),
            )
        })?;
        Ok(Token(hex(&bytes)))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What a request presented, parsed from its `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// `Authorization: Bearer TOKEN`.
    Bearer(Token),
    /// `Authorization: Basic base64(USER:PASSWORD)`: git sends these; the password is the token.
    Basic {
        /// The user name (any; Heroku ignores it too).
        user: String,
        /// The password: the token.
        password: Token,
    },
}

impl Credentials {
    /// Parses an `Authorization` header value. Schemes are matched case-insensitively
    /// (RFC 9110 11.1); anything malformed is `None`.
    pub fn parse(header: &str) -> Option<Credentials> {
        let (scheme, rest) = header.trim().split_once(' ')?;
        let rest = rest.trim();
        if rest.is_empty() {
            return None;
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(Credentials::Bearer(Token::new(rest)));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let pair = String::from_utf8(decoded).ok()?;
            let (user, password) = pair.split_once(':')?;
            return Some(Credentials::Basic {
                user: user.to_string(),
                password: Token::new(password),
            });
        }
        None
    }

    /// The token: the bearer token, or the Basic password.
    pub fn token(&self) -> &Token {
        match self {
            Credentials::Bearer(t) => t,
            Credentials::Basic { password, .. } => password,
        }
    }
}

/// What a request wants to do, from least to most powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Look: app info, releases, config, logs, `git clone`/`fetch`.
    Read,
    /// Change an existing app: deploy (`git push`), config, scale, restart, run, rollback,
    /// domains.
    Deploy,
    /// Platform-wide changes: create and destroy apps, list every app.
    Admin,
}

impl Action {
    /// `read`, `deploy`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Deploy => "deploy",
            Action::Admin => "admin",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One question to an [`Authorizer`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuthRequest {
    /// What the request presented (`None`: no or malformed `Authorization` header).
    pub credentials: Option<Credentials>,
    /// The app the request is about (`None` for platform-wide requests).
    pub app: Option<AppName>,
    /// What it wants to do.
    pub action: Action,
}

impl AuthRequest {
    /// A request for `action` with `credentials`, about no app in particular.
    pub fn new(credentials: Option<Credentials>, action: Action) -> Self {
        AuthRequest {
            credentials,
            app: None,
            action,
        }
    }
    /// About `app`.
    pub fn with_app(mut self, app: AppName) -> Self {
        self.app = Some(app);
        self
    }
}

/// Who an [`Authorizer`] let in: recorded as the actor of what the request does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// A name for people and audit lines (`admin`, a user, a token's id): never a secret.
    pub name: String,
}

impl Principal {
    /// A principal called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Principal { name: name.into() }
    }
}

/// Decides whether a request may do what it asks.
///
/// Contract:
/// - `Ok(principal)`: allowed; the principal names the actor.
/// - `Err` of kind `Unauthenticated`: no credentials, or credentials nobody issued (HTTP 401).
/// - `Err` of kind `PermissionDenied`: known credentials that may not do this action on this
///   app (HTTP 403).
/// - Any other kind (`Unavailable`...): the decision could not be made; the request is refused.
///
/// Called once per request, before anything changes; it must not block the runtime (an
/// implementation that asks a database awaits it). Comparisons of secrets are constant-time.
#[async_trait]
pub trait Authorizer: Send + Sync + fmt::Debug + 'static {
    /// Decides `req`.
    async fn authorize(&self, req: &AuthRequest) -> Result<Principal>;
}

#[async_trait]
impl<T: Authorizer + ?Sized> Authorizer for std::sync::Arc<T> {
    async fn authorize(&self, req: &AuthRequest) -> Result<Principal> {
        (**self).authorize(req).await
    }
}

#[async_trait]
impl<T: Authorizer + ?Sized> Authorizer for Box<T> {
    async fn authorize(&self, req: &AuthRequest) -> Result<Principal> {
        (**self).authorize(req).await
    }
}

/// The error for a request without (usable) credentials.
pub fn missing_credentials() -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        "missing credentials: send the token as `Authorization: Bearer TOKEN` (or as the HTTP Basic password)",
    )
}

/// One fixed token that may do everything, as principal `admin`. An empty token accepts
/// nothing. The token is compared in constant time and never shown by `Debug`.
#[derive(Clone)]
pub struct StaticTokenAuthorizer {
    token: Token,
}

impl StaticTokenAuthorizer {
    /// Accepts exactly `token`.
    pub fn new(token: impl Into<String>) -> Self {
        StaticTokenAuthorizer {
            token: Token::new(token),
        }
    }

    /// Whether `given` is the token (constant time in the token's content).
    pub fn matches(&self, given: &str) -> bool {
        let expected = self.token.expose().as_bytes();
        !expected.is_empty() && bool::from(expected.ct_eq(given.as_bytes()))
    }
}

impl fmt::Debug for StaticTokenAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticTokenAuthorizer { token: <redacted> }")
    }
}

#[async_trait]
impl Authorizer for StaticTokenAuthorizer {
    async fn authorize(&self, req: &AuthRequest) -> Result<Principal> {
        let Some(creds) = &req.credentials else {
            return Err(missing_credentials());
        };
        if self.matches(creds.token().expose()) {
            Ok(Principal::new("admin"))
        } else {
            Err(Error::new(ErrorKind::Unauthenticated, "invalid token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_case_insensitively() {
        assert_eq!(
            Credentials::parse("Bearer abc").unwrap().token().expose(),
            "abc"
        );
        assert_eq!(
            Credentials::parse("bearer  abc ").unwrap().token().expose(),
            "abc"
        );
        // "x:secret"
        let c = Credentials::parse("BASIC eDpzZWNyZXQ=").unwrap();
        assert_eq!(c.token().expose(), "secret");
        assert!(Credentials::parse("Basic !!!").is_none());
        assert!(Credentials::parse("Digest abc").is_none());
        assert!(Credentials::parse("Bearer").is_none());
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[tokio::test]
    async fn static_token() {
        let auth = StaticTokenAuthorizer::new("s3cret-token");
        assert!(!format!("{auth:?}").contains("s3cret"));
        let ok = AuthRequest::new(Credentials::parse("Bearer s3cret-token"), Action::Admin);
        assert_eq!(auth.authorize(&ok).await.unwrap().name, "admin");
        let bad = AuthRequest::new(Credentials::parse("Bearer s3cret-tokex"), Action::Read);
        assert_eq!(
            auth.authorize(&bad).await.unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );
        let none = AuthRequest::new(None, Action::Read);
        assert_eq!(
            auth.authorize(&none).await.unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );
        let empty = StaticTokenAuthorizer::new("");
        let req = AuthRequest::new(Credentials::parse("Bearer x"), Action::Read);
        assert!(empty.authorize(&req).await.is_err());
    }

    #[test]
    fn generated_tokens_differ() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_eq!(a.expose().len(), 48);
        assert_ne!(a, b);
    }
}
