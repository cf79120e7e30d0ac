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
use ema_grant::{
    AccessTokenClaims, AccessTokenError, AccessTokenValidator, DpopValidator, InMemoryReplayStore,
};
use ema_id_jag::ScopeSet;
use ema_jose::{Clock, KeySource};
use ema_metadata::{Challenge, ProtectedResourceMetadata};
use http::{HeaderValue, StatusCode, header};

use crate::endpoint::public_json;
use crate::rpc_peek::{self, Messages};

/// The largest JSON-RPC body the layer reads to find tool calls (1 MiB).
const MAX_JSON_RPC_BODY: usize = 1 << 20;

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
///
/// # Scopes (RS-6)
///
/// A request needs the union of:
///
/// - [`BearerAuth::require_scopes`]: what *every* request needs, whatever it carries (GET and
///   DELETE on the MCP endpoint, bodies that are not JSON-RPC, `initialize` alike). Leave it
///   empty when a token without any scope (D-20) should still be able to `initialize`.
/// - per JSON-RPC message of a POST body (a batch needs the union over its messages):
///   [`BearerAuth::require_method_scopes`] for a listed `method`; otherwise, for a request
///   (a message with `method` and `id`), [`BearerAuth::require_default_method_scopes`].
///   Notifications and responses that are not listed need nothing more.
/// - for a `tools/call`, [`BearerAuth::require_tool_scopes`] of the tool it names.
///
/// GET (the server-to-client stream) and DELETE (ending a session) carry no JSON-RPC message:
/// they need [`BearerAuth::require_scopes`] only.
///
/// A token lacking any of them gets `403 insufficient_scope` naming all the scopes the request
/// needs, so that a client can step up (CL-10).
///
/// ```
/// # use std::sync::Arc;
/// # use ema_grant::AccessTokenValidator;
/// # use ema_id_jag::{Issuer, Resource, ScopeSet};
/// # use ema_jose::{StaticKeySource, SystemClock};
/// # use ema_server::BearerAuth;
/// # fn scopes(s: &str) -> ScopeSet { ScopeSet::parse(s).unwrap_or_default() }
/// # let validator = AccessTokenValidator::new(
/// #     Issuer::new("https://auth.tasks.example"),
/// #     Resource::new("https://mcp.tasks.example/mcp"),
/// #     StaticKeySource::new(),
/// # );
/// let auth = BearerAuth::new(validator, "https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp", Arc::new(SystemClock))
///     // Any request not listed below needs tasks.read...
///     .require_default_method_scopes(scopes("tasks.read"))
///     // ...but anyone with a valid token may start a session and ping.
///     .require_method_scopes("initialize", ScopeSet::new())
///     .require_method_scopes("ping", ScopeSet::new())
///     // Changing tools need tasks.write on top of what `tools/call` needs.
///     .require_tool_scopes("add_task", scopes("tasks.write"));
/// # let _ = auth;
/// ```
pub struct BearerAuth<K> {
    validator: AccessTokenValidator<K>,
    resource_metadata: String,
    required: ScopeSet,
    method_scopes: HashMap<String, ScopeSet>,
    default_method_scopes: ScopeSet,
    tool_scopes: HashMap<String, ScopeSet>,
    dpop: DpopValidator,
    dpop_replay: InMemoryReplayStore,
    cache: TokenCache,
    clock: Arc<dyn Clock>,
}

impl<K> fmt::Debug for BearerAuth<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("resource_metadata", &self.resource_metadata)
            .field("required", &self.required)
            .field("method_scopes", &self.method_scopes)
            .field("default_method_scopes", &self.default_method_scopes)
            .field("tool_scopes", &self.tool_scopes)
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
        let resource = validator.resource().as_str().to_owned();
        Self {
            validator,
            resource_metadata: resource_metadata_url.into(),
            required: ScopeSet::new(),
            method_scopes: HashMap::new(),
            default_method_scopes: ScopeSet::new(),
            tool_scopes: HashMap::new(),
            // Proofs name the resource URL as `htu` (the MCP endpoint is the resource).
            dpop: DpopValidator::new(resource),
            dpop_replay: InMemoryReplayStore::new(100_000),
            cache: TokenCache {
                entries: Mutex::new(HashMap::new()),
                capacity: 10_000,
            },
            clock,
        }
    }

    /// Scopes every request needs, whatever its HTTP or JSON-RPC method (RS-6). A token
    /// without them cannot even `initialize`; use [`BearerAuth::require_default_method_scopes`]
    /// and [`BearerAuth::require_method_scopes`] for finer rules.
    #[must_use]
    pub fn require_scopes(mut self, scopes: ScopeSet) -> Self {
        self.required = scopes;
        self
    }

    /// Scopes a JSON-RPC message with this `method` needs on top of
    /// [`BearerAuth::require_scopes`] (RS-6); an empty set makes the method free of the
    /// default ([`BearerAuth::require_default_method_scopes`]). Replaces an earlier entry for
    /// the same method. Notifications are listed by their method name too.
    #[must_use]
    pub fn require_method_scopes(mut self, method: impl Into<String>, scopes: ScopeSet) -> Self {
        self.method_scopes.insert(method.into(), scopes);
        self
    }

    /// Scopes a JSON-RPC request (a message with `method` and `id`) whose method has no entry
    /// of its own needs on top of [`BearerAuth::require_scopes`] (default: none). Methods the
    /// server does not know are covered too, so a new method is never open by accident.
    #[must_use]
    pub fn require_default_method_scopes(mut self, scopes: ScopeSet) -> Self {
        self.default_method_scopes = scopes;
        self
    }

    /// Scopes an MCP `tools/call` of `tool` needs on top of [`BearerAuth::require_scopes`] and
    /// of what the `tools/call` method needs. The layer reads the JSON-RPC body of POST
    /// requests (already capped by [`crate::harden`]) and answers `403 insufficient_scope`
    /// naming every scope the call needs (RS-6), so that clients can step up (CL-10).
    #[must_use]
    pub fn require_tool_scopes(mut self, tool: impl Into<String>, scopes: ScopeSet) -> Self {
        self.tool_scopes.insert(tool.into(), scopes);
        self
    }

    /// Whether any rule depends on the JSON-RPC body.
    fn reads_body(&self) -> bool {
        !self.tool_scopes.is_empty()
            || !self.method_scopes.is_empty()
            || !self.default_method_scopes.is_empty()
    }

    /// The scope sets the messages in a JSON-RPC body (a message or a batch) need on top of
    /// [`BearerAuth::require_scopes`], borrowed from the configuration, each set once; `None`
    /// when a message names its method, params or tool twice (which one a server runs is up to
    /// its parser, so the call is refused).
    fn body_scopes(&self, body: &[u8]) -> Option<Vec<&ScopeSet>> {
        let calls = match rpc_peek::calls(body) {
            Messages::Calls(calls) => calls,
            // Nothing can run from bytes the server cannot parse.
            Messages::NotJson => return Some(Vec::new()),
            Messages::Ambiguous => return None,
        };
        let mut sets: Vec<&ScopeSet> = Vec::new();
        for call in &calls {
            if let Some(method) = call.method.as_deref() {
                match self.method_scopes.get(method) {
                    Some(set) => add_once(&mut sets, set),
                    // A request without an entry of its own; notifications need nothing.
                    None if call.has_id => add_once(&mut sets, &self.default_method_scopes),
                    None => {}
                }
            }
            if let Some(set) = call.tool.as_deref().and_then(|t| self.tool_scopes.get(t)) {
                add_once(&mut sets, set);
            }
        }
        Some(sets)
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
        self.authenticate_for(parts, &ScopeSet::new()).await
    }

    /// As [`BearerAuth::authenticate`], with `extra` scopes needed by this request.
    pub async fn authenticate_for(
        &self,
        parts: &http::request::Parts,
        extra: &ScopeSet,
    ) -> Result<Principal, Response> {
        self.authorize(parts, &[extra]).await
    }

    /// [`BearerAuth::authenticate_for`] with the extra scopes as several sets.
    async fn authorize(
        &self,
        parts: &http::request::Parts,
        extra: &[&ScopeSet],
    ) -> Result<Principal, Response> {
        // RS-5, D-25: the token is read from the Authorization header only. A token in the
        // query (`?access_token=`) or in a form body is never read, parsed or validated: such a
        // request is one without a token and gets the RS-1 challenge below.
        let needed = || {
            let all = extra
                .iter()
                .fold(self.required.clone(), |all, set| all.union(set));
            (!all.is_empty()).then(|| all.to_string())
        };
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let value = match (values.next(), values.next()) {
            // RS-1: no credentials: a challenge without an error code (RFC 6750 §3.1), naming
            // the scopes this request needs.
            (None, _) => return Err(self.reject(StatusCode::UNAUTHORIZED, None, needed())),
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
        let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
        if !dpop_scheme && !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.reject(StatusCode::UNAUTHORIZED, None, needed()));
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
        // RFC 9449 §7.1: a DPoP-bound token needs the DPoP scheme and a proof by its key, with
        // `ath` binding the proof to this token; a bearer token is never sent as DPoP.
        match (dpop_scheme, principal.cnf_jkt.as_deref()) {
            (false, None) => {}
            (false, Some(_)) => return Err(invalid("the access token is DPoP-bound")),
            (true, None) => return Err(invalid("the access token is not DPoP-bound")),
            (true, Some(jkt)) => {
                let mut proofs = parts.headers.get_all("dpop").iter();
                let proof = match (proofs.next(), proofs.next()) {
                    (Some(p), None) => p.to_str().ok(),
                    _ => None,
                }
                .ok_or_else(|| invalid("exactly one DPoP proof is required"))?;
                let checked = self
                    .dpop
                    .validate_for_token(proof, parts.method.as_str(), token, &self.dpop_replay, now)
                    .await
                    .map_err(|_| invalid("the DPoP proof is invalid"))?;
                if checked.jkt != jkt {
                    return Err(invalid("the DPoP proof is not by the token's key"));
                }
            }
        }
        // RS-6: every required scope, else 403 naming all the scopes the request needs.
        let granted = |scope: &str| principal.scope.as_ref().is_some_and(|g| g.contains(scope));
        let covered =
            self.required.iter().all(granted) && extra.iter().all(|set| set.iter().all(granted));
        if !covered {
            return Err(self.reject(
                StatusCode::FORBIDDEN,
                Some((
                    "insufficient_scope",
                    "the access token lacks a required scope",
                )),
                needed(),
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

/// Adds a configured scope set unless it is empty or already there (batches repeat methods).
fn add_once<'a>(sets: &mut Vec<&'a ScopeSet>, set: &'a ScopeSet) {
    if !set.is_empty() && !sets.iter().any(|s| std::ptr::eq(*s, set)) {
        sets.push(set);
    }
}

async fn bearer_middleware<K: KeySource + 'static>(
    State(auth): State<Arc<BearerAuth<K>>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    // GET and DELETE carry no JSON-RPC message: `require_scopes` alone applies to them.
    let (body, bytes) = if !auth.reads_body() || parts.method != http::Method::POST {
        (body, None)
    } else {
        // The body is read once here and handed on unchanged.
        match axum::body::to_bytes(body, MAX_JSON_RPC_BODY).await {
            Ok(bytes) => (axum::body::Body::from(bytes.clone()), Some(bytes)),
            Err(_) => {
                return auth.reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some((
                        "invalid_request",
                        "the request body is too large or unreadable",
                    )),
                    None,
                );
            }
        }
    };
    let extra = match &bytes {
        None => Vec::new(),
        // The methods, ids and tool names are read in one borrowing pass (rpc_peek).
        Some(bytes) => match auth.body_scopes(bytes) {
            Some(extra) => extra,
            None => {
                // Credentials are judged first: no token is still a 401.
                if let Err(response) = auth.authorize(&parts, &[]).await {
                    return response;
                }
                return auth.reject(
                    StatusCode::BAD_REQUEST,
                    Some((
                        "invalid_request",
                        "a JSON-RPC message names its method, params or tool twice",
                    )),
                    None,
                );
            }
        },
    };
    match auth.authorize(&parts, &extra).await {
        Ok(principal) => {
            // RS-7: the token (and its DPoP proof) stop here; handlers get the principal, so
            // nothing behind the layer can forward the client's credential upstream.
            parts.headers.remove(header::AUTHORIZATION);
            parts.headers.remove("dpop");
            parts.extensions.insert(principal);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(response) => response,
    }
}

/// Wraps every route of `router` in the bearer layer (RS-1..RS-7). Handlers read the
/// [`Principal`] from the request extensions; the `Authorization` and `DPoP` headers are
/// removed before the request reaches them, so the client's token cannot be forwarded
/// upstream (RS-7: use the credential vault for downstream credentials).
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
