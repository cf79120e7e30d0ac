//! The bearer-token layer for MCP servers (RS-1..RS-7): validates RFC 9068 access tokens from
//! the `Authorization` header only, answers 401/403 with the right `WWW-Authenticate`, and hands
//! the verified claims to handlers as a request extension.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;

use aws_lc_rs::digest;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ema_grant::{AccessTokenClaims, AccessTokenError, AccessTokenValidator};
use ema_id_jag::ScopeSet;
use ema_jose::{Clock, KeySource};
use ema_metadata::{Challenge, ProtectedResourceMetadata};
use http::{HeaderValue, StatusCode, header};

use crate::endpoint::public_json;

/// The verified principal of a request, inserted into the request's extensions.
pub type Principal = Arc<AccessTokenClaims>;

#[derive(Debug)]
struct CacheEntry {
    claims: Principal,
    exp: u64,
    key_set_version: u64,
}

/// Validated tokens keyed by a SHA-256 of the token: bounded, entries dropped at `exp` and
/// whenever the issuer's key set changes.
#[derive(Debug)]
struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], CacheEntry>>,
    capacity: usize,
}

impl TokenCache {
    fn get(&self, key: &[u8; 32], now: u64, version: u64) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|e| e.exp > now && e.key_set_version == version)
            .map(|e| e.claims.clone())
    }

    fn put(&self, key: [u8; 32], claims: Principal, now: u64, version: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.exp > now && e.key_set_version == version);
            if entries.len() >= self.capacity {
                return;
            }
        }
        let exp = claims.exp.as_secs();
        entries.insert(
            key,
            CacheEntry {
                claims,
                exp,
                key_set_version: version,
            },
        );
    }
}

/// Bearer-token protection for one MCP server (one resource).
pub struct BearerAuth<K> {
    validator: AccessTokenValidator<K>,
    resource_metadata: String,
    required: ScopeSet,
    cache: TokenCache,
    clock: Arc<dyn Clock>,
}

impl<K> fmt::Debug for BearerAuth<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("resource_metadata", &self.resource_metadata)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl<K: KeySource + 'static> BearerAuth<K> {
    /// Protects a resource: tokens must validate with `validator`; challenges name
    /// `resource_metadata_url` (RS-1).
    pub fn new(
        validator: AccessTokenValidator<K>,
        resource_metadata_url: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            validator,
            resource_metadata: resource_metadata_url.into(),
            required: ScopeSet::new(),
            cache: TokenCache {
                entries: Mutex::new(HashMap::new()),
                capacity: 10_000,
            },
            clock,
        }
    }

    /// Scopes every request needs (RS-6).
    #[must_use]
    pub fn require_scopes(mut self, scopes: ScopeSet) -> Self {
        self.required = scopes;
        self
    }

    /// The validated-token cache size (default 10 000; 0 disables it).
    #[must_use]
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache.capacity = capacity;
        self
    }

    fn challenge(&self, error: Option<(&str, &str)>, scope: Option<String>) -> Challenge {
        let mut c = Challenge::bearer();
        if let Some((code, description)) = error {
            c = c
                .param("error", code)
                .param("error_description", description);
        }
        let scope =
            scope.or_else(|| (!self.required.is_empty()).then(|| self.required.to_string()));
        if let Some(scope) = scope {
            c = c.param("scope", scope);
        }
        c.param("resource_metadata", self.resource_metadata.as_str())
    }

    fn reject(
        &self,
        status: StatusCode,
        error: Option<(&'static str, &'static str)>,
        scope: Option<String>,
    ) -> Response {
        let challenge = self.challenge(error, scope);
        let body = match error {
            Some((code, description)) => {
                serde_json::json!({"error": code, "error_description": description})
            }
            None => {
                serde_json::json!({"error": "unauthorized", "error_description": "an access token is required"})
            }
        };
        let mut resp = (status, body.to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&challenge.to_string()) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }

    /// Checks one request's credentials: the verified principal, or the response to send.
    pub async fn authenticate(&self, parts: &http::request::Parts) -> Result<Principal, Response> {
        // RS-5: never from the URI.
        if parts.uri.query().is_some_and(|q| {
            q.split('&')
                .any(|p| p.split('=').next() == Some("access_token"))
        }) {
            return Err(self.reject(
                StatusCode::BAD_REQUEST,
                Some((
                    "invalid_request",
                    "access tokens are accepted in the Authorization header only",
                )),
                None,
            ));
        }
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let value = match (values.next(), values.next()) {
            // RS-1: no credentials: a challenge without an error code (RFC 6750 §3.1).
            (None, _) => return Err(self.reject(StatusCode::UNAUTHORIZED, None, None)),
            (Some(v), None) => v,
            (Some(_), Some(_)) => {
                return Err(self.reject(
                    StatusCode::BAD_REQUEST,
                    Some(("invalid_request", "more than one Authorization header")),
                    None,
                ));
            }
        };
        let invalid = |description| {
            self.reject(
                StatusCode::UNAUTHORIZED,
                Some(("invalid_token", description)),
                None,
            )
        };
        let value = value
            .to_str()
            .map_err(|_| invalid("the Authorization header is malformed"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or_else(|| invalid("the Authorization header is malformed"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.reject(StatusCode::UNAUTHORIZED, None, None));
        }
        let token = token.trim();
        let issuer = self.validator.issuer().as_str();
        let version = self.validator.keys().key_set_version(issuer);
        let now = self.clock.now();
        let key = {
            let mut out = [0u8; 32];
            out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
            out
        };
        let principal = match self.cache.get(&key, now.as_secs(), version) {
            Some(hit) => hit,
            None => {
                // RS-2, RS-3, RS-4: signature, issuer, audience = this resource, time, `typ`.
                let claims = self.validator.validate(token, now).await.map_err(|e| {
                    invalid(match e {
                        AccessTokenError::WrongAudience => {
                            "the access token is not for this resource"
                        }
                        AccessTokenError::Claims(ema_jose::ClaimError::Time(_)) => {
                            "the access token expired"
                        }
                        _ => "the access token is invalid",
                    })
                })?;
                let claims = Arc::new(claims);
                if self.cache.capacity > 0 {
                    self.cache.put(key, claims.clone(), now.as_secs(), version);
                }
                claims
            }
        };
        // A DPoP-bound token presented as a bearer token is refused (RFC 9449 §7.1).
        if principal.cnf_jkt.is_some() {
            return Err(invalid("the access token is DPoP-bound"));
        }
        // RS-6: every required scope, else 403 with the scopes needed.
        let granted = principal.scope.clone().unwrap_or_default();
        if !self.required.is_subset(&granted) {
            return Err(self.reject(
                StatusCode::FORBIDDEN,
                Some((
                    "insufficient_scope",
                    "the access token lacks a required scope",
                )),
                Some(self.required.to_string()),
            ));
        }
        Ok(principal)
    }

    /// A 403 `insufficient_scope` response naming `scopes` (for handlers with their own needs,
    /// RS-6).
    pub fn insufficient_scope(&self, scopes: &ScopeSet) -> Response {
        self.reject(
            StatusCode::FORBIDDEN,
            Some((
                "insufficient_scope",
                "the access token lacks a required scope",
            )),
            Some(scopes.to_string()),
        )
    }
}

async fn bearer_middleware<K: KeySource + 'static>(
    State(auth): State<Arc<BearerAuth<K>>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    match auth.authenticate(&parts).await {
        Ok(principal) => {
            parts.extensions.insert(principal);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(response) => response,
    }
}

/// Wraps every route of `router` in the bearer layer (RS-1..RS-7). Handlers read the
/// [`Principal`] from the request extensions.
pub fn protect<K: KeySource + 'static>(router: Router, auth: Arc<BearerAuth<K>>) -> Router {
    router.layer(middleware::from_fn_with_state(auth, bearer_middleware::<K>))
}

/// A router serving RFC 9728 metadata at the resource's well-known path (MD-6). Mount it beside,
/// not inside, the protected routes.
pub fn protected_resource_router(metadata: &ProtectedResourceMetadata) -> Router {
    let path = crate::paths::path_of(
        &metadata.resource,
        ema_metadata::protected_resource_metadata_url,
    );
    let doc = Arc::new(metadata.to_json());
    Router::new().route(&path, get(move || async move { public_json(&doc, 300) }))
}
