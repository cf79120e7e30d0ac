//! The verified principal of a request, as handlers receive it.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use ema_grant::{AccessTokenClaims, IdJagOrigin};
use ema_id_jag::ScopeSet;
use ema_jose::UnixTime;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};

/// Who is calling: the verified claims of the request's access token (RFC 9068), put on the
/// request by the bearer layer ([`crate::BearerAuth`]) after every check passed (RS-1..RS-6).
///
/// Cheap to clone (an `Arc` inside). In an axum handler, take it as an argument; the bearer
/// layer must run on the route, or the extractor refuses the request with
/// [`MissingPrincipal`]:
///
/// ```
/// use ema_server::Principal;
///
/// async fn whoami(who: Principal) -> String {
///     format!("{} via {}", who.subject(), who.client_id())
/// }
///
/// // Routes served both with and without a token take an `Option`.
/// async fn greet(who: Option<Principal>) -> String {
///     who.map_or_else(|| "hello".into(), |p| format!("hello {}", p.subject()))
/// }
/// # let _ = axum::Router::<()>::new()
/// #     .route("/who", axum::routing::get(whoami))
/// #     .route("/hi", axum::routing::get(greet));
/// ```
///
/// In rmcp tools, see `ema_server::rmcp` (feature `rmcp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(Arc<AccessTokenClaims>);

impl Principal {
    /// Wraps verified claims. The bearer layer does this; build one yourself only for tests or
    /// for a server that verified the token by other means.
    pub fn new(claims: impl Into<Arc<AccessTokenClaims>>) -> Self {
        Self(claims.into())
    }

    /// `sub`: the user as the authorization server knows them (the local subject).
    pub fn subject(&self) -> &str {
        &self.0.sub
    }

    /// `client_id`: the client (agent) the token was issued to.
    pub fn client_id(&self) -> &str {
        self.0.client_id.as_str()
    }

    /// The granted scopes (empty when the token carries none, D-20).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.0.scope.iter().flat_map(ScopeSet::iter)
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scope.as_ref().is_some_and(|s| s.contains(scope))
    }

    /// `groups` of the user.
    pub fn groups(&self) -> &[String] {
        &self.0.groups
    }

    /// `roles` of the user.
    pub fn roles(&self) -> &[String] {
        &self.0.roles
    }

    /// `tenant` of the user, when the authorization server names one.
    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }

    /// `iss`: the authorization server that issued the token.
    pub fn issuer(&self) -> &str {
        self.0.iss.as_str()
    }

    /// `jti` of the access token (for audit logs).
    pub fn token_id(&self) -> &str {
        self.0.jti.as_str()
    }

    /// The ID-JAG the token was issued for: the IdP's `iss`, the ID-JAG's `jti` and the IdP's
    /// subject, linking the audit trail back to the enterprise IdP.
    pub fn id_jag(&self) -> Option<&IdJagOrigin> {
        self.0.origin.as_ref()
    }

    /// `exp`: when the token expires.
    pub fn expires_at(&self) -> UnixTime {
        self.0.exp
    }

    /// Every claim.
    pub fn claims(&self) -> &AccessTokenClaims {
        &self.0
    }

    /// The shared claims.
    pub fn into_claims(self) -> Arc<AccessTokenClaims> {
        self.0
    }
}

impl From<AccessTokenClaims> for Principal {
    fn from(claims: AccessTokenClaims) -> Self {
        Self::new(claims)
    }
}

impl From<Arc<AccessTokenClaims>> for Principal {
    fn from(claims: Arc<AccessTokenClaims>) -> Self {
        Self(claims)
    }
}

/// The rejection of the [`Principal`] extractor: the request carries no verified principal,
/// which means the bearer layer did not run on this route (it refuses every request without a
/// valid token before a handler runs). A configuration mistake, answered `401` with a bare
/// `Bearer` challenge (no `resource_metadata`: only the layer knows it) and logged as a
/// warning; never a 500 and never the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MissingPrincipal;

impl std::fmt::Display for MissingPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no verified principal on the request: the bearer layer did not run on this route",
        )
    }
}

impl std::error::Error for MissingPrincipal {}

impl IntoResponse for MissingPrincipal {
    fn into_response(self) -> Response {
        tracing::warn!("{self}: wrap the route in ema_server::BearerAuth");
        let body = serde_json::json!({
            "error": "unauthorized",
            "error_description": "no verified access token on this route",
        });
        let mut resp = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = MissingPrincipal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(MissingPrincipal)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}
