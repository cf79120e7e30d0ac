//! The bearer-token layer for MCP servers (RS-1..RS-7): validates RFC 9068 access tokens from
//! the `Authorization` header only, answers 401/403 with the right `WWW-Authenticate`, and hands
//! the verified [`Principal`] to handlers as a request extension.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_lc_rs::digest;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ema_audit::{AccessTokenAccepted, AccessTokenRefused, AuditError, AuditLog};
use ema_grant::revocation::{LedgerMirror, MirrorListener, MirrorVerdict, RevocationReason};
use ema_grant::{AccessTokenValidator, DpopValidator, DynReplayStore, InMemoryReplayStore};
use ema_id_jag::{Issuer, Resource, ScopeSet};
use ema_jose::{
    Algorithm, AlgorithmSet, Clock, DynKeySource, JwkSet, KeySource, StaticKeySource, SystemClock,
};
use ema_jwks::{FetchPolicy, HttpFetcher, RemoteJwks};
use ema_metadata::{Challenge, ErrorCode, ProtectedResourceMetadata, ToErrorCode};
use http::{HeaderValue, StatusCode, header};

use crate::endpoint::public_json;
use crate::live::{LiveRegistry, OwedAnswers, RevocableBody, SessionCloser, unless_revoked};
use crate::principal::Principal;
use crate::rpc_peek::{self, Messages};

/// An empty scope list, for rules that need no scope:
/// `.method_scopes("initialize", NO_SCOPES)`.
pub const NO_SCOPES: [&str; 0] = [];

/// `Retry-After` (seconds) of the 503 for a stale revocation mirror (RV-16): a resync is
/// expected within a few seconds.
const STALE_RETRY_AFTER: &str = "5";

/// The largest JSON-RPC body the layer reads to find tool calls (1 MiB).
const MAX_JSON_RPC_BODY: usize = 1 << 20;

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
        let exp = claims.expires_at().as_secs();
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

/// Bearer-token protection for one MCP server (one resource), RS-1..RS-7.
///
/// Built by [`BearerAuth::builder`]; cheap to clone (an `Arc` inside). It is a
/// [`tower::Layer`](tower_layer::Layer): put it on an axum [`Router`] (`router.layer(auth)`, or
/// [`protect`]) or on any tower stack in front of an MCP service. Requests without a valid
/// token never reach the service; the ones that pass carry the verified [`Principal`] and no
/// longer carry the `Authorization` and `DPoP` headers (RS-7).
///
/// # Scopes (RS-6)
///
/// A request needs the union of:
///
/// - [`BearerAuthBuilder::require_scopes`]: what *every* request needs, whatever it carries
///   (GET and DELETE on the MCP endpoint, bodies that are not JSON-RPC, `initialize` alike).
///   Leave it empty when a token without any scope (D-20) should still be able to `initialize`.
/// - per JSON-RPC message of a POST body (a batch needs the union over its messages):
///   [`BearerAuthBuilder::method_scopes`] for a listed `method`; otherwise, for a request
///   (a message with `method` and `id`), [`BearerAuthBuilder::default_method_scopes`].
///   Notifications and responses that are not listed need nothing more.
/// - for a `tools/call`, [`BearerAuthBuilder::tool_scopes`] of the tool it names, or
///   [`BearerAuthBuilder::default_tool_scopes`] for a tool without an entry of its own.
///
/// GET (the server-to-client stream) and DELETE (ending a session) carry no JSON-RPC message:
/// they need [`BearerAuthBuilder::require_scopes`] only.
///
/// A token lacking any of them gets `403 insufficient_scope` naming all the scopes the request
/// needs, so that a client can step up (CL-10).
///
/// Refusals carry an [`ErrorCode`] in the `Bearer` challenge and the JSON body (RFC 6750 §3.1):
/// `401 invalid_token`, `403 insufficient_scope`, `400 invalid_request`; when the authorization
/// server's keys cannot be consulted the layer fails closed with `503 temporarily_unavailable`
/// (no challenge: the token was not judged).
///
/// ```
/// use ema_server::{BearerAuth, NO_SCOPES};
/// # let as_keys = ema_jose::KeyRing::new(ema_jose::SigningKey::generate(ema_jose::Algorithm::ES256, None)?);
///
/// let auth = BearerAuth::builder("https://mcp.tasks.example/mcp", "https://auth.tasks.example")
///     // Or `.jwks_url("https://auth.tasks.example/jwks")`, or `.keys(any KeySource)`.
///     .jwks(as_keys.jwks())
///     // Any request not listed below needs tasks.read...
///     .default_method_scopes(["tasks.read"])
///     // ...but anyone with a valid token may start a session and ping.
///     .method_scopes("initialize", NO_SCOPES)
///     .method_scopes("ping", NO_SCOPES)
///     // Changing tools need tasks.write on top of what `tools/call` needs; tool scopes are
///     // checked against the declared tools (a typo is a build error, not an open tool).
///     .tools(["whoami", "list_tasks", "add_task"])
///     .tool_scopes("add_task", ["tasks.write"])
///     .build()?;
/// assert_eq!(
///     auth.resource_metadata_url(),
///     "https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct BearerAuth(Arc<Inner>);

struct Inner {
    validator: AccessTokenValidator<DynKeySource>,
    resource_metadata: String,
    metadata: ProtectedResourceMetadata,
    required: ScopeSet,
    method_scopes: HashMap<String, ScopeSet>,
    default_method_scopes: ScopeSet,
    tool_scopes: HashMap<String, ScopeSet>,
    default_tool_scopes: ScopeSet,
    dpop: DpopValidator,
    dpop_replay: DynReplayStore,
    cache: TokenCache,
    clock: Arc<dyn Clock>,
    resource: String,
    audit: AuditLog,
    revocation: Option<Arc<LedgerMirror>>,
    /// Live requests and sessions per subject, with the mirror (RV-18).
    live: Option<Arc<LiveRegistry>>,
}

/// Why the layer refused a request, kept on the refusal (a response extension, never sent) for
/// the audit trail. Responses without one are not appended: the no-credentials challenge
/// (routine discovery, RS-1) and the answer when the trail itself failed.
#[derive(Debug, Clone)]
struct Refusal {
    code: ErrorCode,
    reason: std::borrow::Cow<'static, str>,
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.0;
        f.debug_struct("BearerAuth")
            .field("resource_metadata", &inner.resource_metadata)
            .field("required", &inner.required)
            .field("method_scopes", &inner.method_scopes)
            .field("default_method_scopes", &inner.default_method_scopes)
            .field("tool_scopes", &inner.tool_scopes)
            .field("default_tool_scopes", &inner.default_tool_scopes)
            .field("audit", &inner.audit)
            .finish_non_exhaustive()
    }
}

/// Why [`BearerAuthBuilder::build`] refused the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BearerBuildError {
    /// The resource is not an absolute `http(s)` URL.
    #[error("the resource `{0}` is not an absolute http(s) URL")]
    InvalidResource(String),
    /// The authorization server issuer is not an absolute `http(s)` URL.
    #[error("the authorization server issuer `{0}` is not an absolute http(s) URL")]
    InvalidIssuer(String),
    /// No verification keys: call one of `jwks_url`, `jwks` or `keys`.
    #[error("no keys for the authorization server's tokens: call jwks_url, jwks or keys")]
    MissingKeys,
    /// More than one of `jwks_url`, `jwks` and `keys` was called.
    #[error("keys are configured twice: call only one of jwks_url, jwks and keys")]
    KeysTwice,
    /// The JWKS URL does not pass the fetch policy (MD-8), or the HTTP client failed to start.
    #[error("the JWKS URL `{url}` is refused: {reason}")]
    JwksUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A scope is empty or not a single RFC 6749 scope token.
    #[error("{what}: `{scope}` is not a single scope token")]
    InvalidScope {
        /// Which setting named it.
        what: String,
        /// The value.
        scope: String,
    },
    /// Tool scopes were set without declaring the server's tools with `tools(...)`: a tool name
    /// could not be checked, and a misspelt one would leave the real tool open.
    #[error("tool scopes for `{0}` need the server's tool list: call tools([...]) first")]
    ToolsNotDeclared(String),
    /// A tool scope names a tool that is not in the declared tool list (fail closed: a typo
    /// would leave the real tool open).
    #[error("tool scopes name `{0}`, which is not one of the declared tools")]
    UnknownTool(String),
}

/// Where the verification keys come from.
enum KeyChoice {
    Url(String),
    Set(JwkSet),
    Source(DynKeySource),
}

/// Builds a [`BearerAuth`]: [`BearerAuth::builder`].
pub struct BearerAuthBuilder {
    resource: String,
    issuer: String,
    keys: Vec<KeyChoice>,
    fetch_policy: FetchPolicy,
    clock: Arc<dyn Clock>,
    algorithms: Option<AlgorithmSet>,
    leeway: Option<Duration>,
    required: Vec<String>,
    method_scopes: Vec<(String, Vec<String>)>,
    default_method_scopes: Vec<String>,
    tools: Option<BTreeSet<String>>,
    tool_scopes: Vec<(String, Vec<String>)>,
    default_tool_scopes: Vec<String>,
    cache_capacity: usize,
    audit: AuditLog,
    revocation: Option<Arc<LedgerMirror>>,
    session_closer: Option<Arc<dyn SessionCloser>>,
    dpop_replay: Option<DynReplayStore>,
}

impl fmt::Debug for BearerAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthBuilder")
            .field("resource", &self.resource)
            .field("issuer", &self.issuer)
            .field("required", &self.required)
            .field("method_scopes", &self.method_scopes)
            .field("default_method_scopes", &self.default_method_scopes)
            .field("tools", &self.tools)
            .field("tool_scopes", &self.tool_scopes)
            .field("default_tool_scopes", &self.default_tool_scopes)
            .field("audit", &self.audit)
            .field("dpop_replay", &self.dpop_replay)
            .finish_non_exhaustive()
    }
}

fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

/// One scope set from single scope tokens; `what` names the setting in errors.
fn scope_set(what: &str, list: &[String]) -> Result<ScopeSet, BearerBuildError> {
    let mut set = ScopeSet::new();
    for scope in list {
        match ScopeSet::parse(scope) {
            Ok(one) if one.len() == 1 => set.insert(scope.as_str()),
            _ => {
                return Err(BearerBuildError::InvalidScope {
                    what: what.to_owned(),
                    scope: scope.clone(),
                });
            }
        }
    }
    Ok(set)
}

fn http_url(s: &str) -> Option<url::Url> {
    url::Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.has_host())
}

impl BearerAuth {
    /// Protects `resource` (the MCP endpoint's URL, RFC 8707: the `aud` of its access tokens),
    /// accepting tokens issued by `authorization_server_issuer` only (RS-2). The challenge's
    /// `resource_metadata` is derived from the resource (RFC 9728 path insertion, RS-1, MD-6).
    /// Keys are required: [`BearerAuthBuilder::jwks_url`], [`BearerAuthBuilder::jwks`] or
    /// [`BearerAuthBuilder::keys`].
    pub fn builder(
        resource: impl Into<String>,
        authorization_server_issuer: impl Into<String>,
    ) -> BearerAuthBuilder {
        BearerAuthBuilder {
            resource: resource.into(),
            issuer: authorization_server_issuer.into(),
            keys: Vec::new(),
            fetch_policy: FetchPolicy::new(),
            clock: Arc::new(SystemClock),
            algorithms: None,
            leeway: None,
            required: Vec::new(),
            method_scopes: Vec::new(),
            default_method_scopes: Vec::new(),
            tools: None,
            tool_scopes: Vec::new(),
            default_tool_scopes: Vec::new(),
            cache_capacity: 10_000,
            revocation: None,
            session_closer: None,
            audit: AuditLog::disabled(),
            dpop_replay: None,
        }
    }

    /// The audit trail the layer appends to ([`BearerAuthBuilder::audit`]; disabled by
    /// default), for the layers and handlers behind it that record their own events (e.g.
    /// each tool decision) on the same trail.
    pub fn audit_log(&self) -> &AuditLog {
        &self.0.audit
    }

    /// The RFC 9728 metadata URL named in every challenge.
    pub fn resource_metadata_url(&self) -> &str {
        &self.0.resource_metadata
    }

    /// The RFC 9728 protected-resource metadata of this resource: the resource, the
    /// authorization server, and every scope the rules name as `scopes_supported`.
    pub fn resource_metadata(&self) -> &ProtectedResourceMetadata {
        &self.0.metadata
    }

    /// A router serving [`BearerAuth::resource_metadata`] at its well-known path (MD-6). Merge
    /// it beside, not inside, the protected routes.
    pub fn resource_metadata_router(&self) -> Router {
        protected_resource_router(&self.0.metadata)
    }

    /// Checks one request's credentials: the verified principal, or the response to send.
    pub async fn authenticate(&self, parts: &http::request::Parts) -> Result<Principal, Response> {
        self.0.authorize(parts, &[]).await
    }

    /// As [`BearerAuth::authenticate`], with `extra` scopes needed by this request.
    pub async fn authenticate_for(
        &self,
        parts: &http::request::Parts,
        extra: &ScopeSet,
    ) -> Result<Principal, Response> {
        self.0.authorize(parts, &[extra]).await
    }

    /// A 403 `insufficient_scope` response naming `scopes` (for handlers with their own needs,
    /// RS-6). Not appended to the audit trail: the handler that refuses records its own reason.
    pub fn insufficient_scope(&self, scopes: &ScopeSet) -> Response {
        self.0.reject(
            StatusCode::FORBIDDEN,
            Some((
                ErrorCode::InsufficientScope,
                "the access token lacks a required scope",
            )),
            Some(scopes.to_string()),
        )
    }
}

impl BearerAuthBuilder {
    /// Keys from the authorization server's JWKS URL, fetched under the fetch policy (MD-8:
    /// `https` only unless [`BearerAuthBuilder::fetch_policy`] opts in to loopback `http`),
    /// cached by `Cache-Control`, refetched on an unknown `kid`.
    #[must_use]
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys.push(KeyChoice::Url(url.into()));
        self
    }

    /// Keys from a key set in hand (a file, configuration).
    #[must_use]
    pub fn jwks(mut self, keys: JwkSet) -> Self {
        self.keys.push(KeyChoice::Set(keys));
        self
    }

    /// Keys from any [`KeySource`] (asked for the authorization server's issuer).
    #[must_use]
    pub fn keys(mut self, keys: impl KeySource + 'static) -> Self {
        self.keys.push(KeyChoice::Source(DynKeySource::new(keys)));
        self
    }

    /// The policy [`BearerAuthBuilder::jwks_url`] fetches under (default: `https` only, public
    /// addresses; [`FetchPolicy::insecure_loopback_development`] for a local setup).
    #[must_use]
    pub fn fetch_policy(mut self, policy: FetchPolicy) -> Self {
        self.fetch_policy = policy;
        self
    }

    /// The clock for token times and the key cache (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The signature algorithms accepted from the authorization server (D-26, SEC-4; default
    /// [`AlgorithmSet::DEFAULT`]).
    #[must_use]
    pub fn algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.algorithms = Some(algorithms);
        self
    }

    /// The clock leeway for `exp`, `nbf` and `iat` (D-7: default 30 s, capped at 60 s).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Scopes every request needs, whatever its HTTP or JSON-RPC method (RS-6), one scope token
    /// per item. A token without them cannot even `initialize`; use
    /// [`BearerAuthBuilder::default_method_scopes`] and [`BearerAuthBuilder::method_scopes`]
    /// for finer rules. Adds to earlier calls.
    #[must_use]
    pub fn require_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.required.extend(strings(scopes));
        self
    }

    /// Scopes a JSON-RPC message with this `method` needs on top of
    /// [`BearerAuthBuilder::require_scopes`] (RS-6); an empty list makes the method free of
    /// the default ([`BearerAuthBuilder::default_method_scopes`]). Replaces an earlier entry for
    /// the same method. Notifications are listed by their method name too.
    #[must_use]
    pub fn method_scopes<S: Into<String>>(
        mut self,
        method: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.method_scopes.push((method.into(), strings(scopes)));
        self
    }

    /// Scopes a JSON-RPC request (a message with `method` and `id`) whose method has no entry
    /// of its own needs on top of [`BearerAuthBuilder::require_scopes`] (default: none).
    /// Methods the server does not know are covered too, so a new method is never open by
    /// accident. Replaces an earlier call.
    #[must_use]
    pub fn default_method_scopes<S: Into<String>>(
        mut self,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.default_method_scopes = strings(scopes);
        self
    }

    /// Declares the server's tools, against which [`BearerAuthBuilder::tool_scopes`] is checked
    /// at build (for rmcp: `ema_server::rmcp::tool_names`). Adds to earlier calls.
    #[must_use]
    pub fn tools<S: Into<String>>(mut self, tools: impl IntoIterator<Item = S>) -> Self {
        self.tools
            .get_or_insert_with(BTreeSet::new)
            .extend(strings(tools));
        self
    }

    /// Scopes an MCP `tools/call` of `tool` needs on top of
    /// [`BearerAuthBuilder::require_scopes`] and of what the `tools/call` method needs, instead
    /// of [`BearerAuthBuilder::default_tool_scopes`]. The layer reads the JSON-RPC body of
    /// POST requests (already capped by [`crate::harden`]) and answers `403
    /// insufficient_scope` naming every scope the call needs (RS-6), so that clients can step
    /// up (CL-10). `tool` must be one of [`BearerAuthBuilder::tools`]: checked at build (fail
    /// closed). Replaces an earlier entry for the same tool.
    #[must_use]
    pub fn tool_scopes<S: Into<String>>(
        mut self,
        tool: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.tool_scopes.push((tool.into(), strings(scopes)));
        self
    }

    /// Scopes a `tools/call` of a tool without a [`BearerAuthBuilder::tool_scopes`] entry
    /// needs (default: none), including a tool the server does not declare. Replaces an
    /// earlier call.
    #[must_use]
    pub fn default_tool_scopes<S: Into<String>>(
        mut self,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.default_tool_scopes = strings(scopes);
        self
    }

    /// The validated-token cache size (default 10 000; 0 disables it).
    #[must_use]
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The audit trail (default [`AuditLog::disabled`]):
    ///
    /// - [`AccessTokenAccepted`] (the token's `jti`, subject, client, scopes and this
    ///   resource) when a token is verified (signature, issuer, audience, times): once per
    ///   token while the validated-token cache holds it, so the cached path appends nothing.
    ///   The `jti` is the one the authorization server's `IdJagRedeemed` names.
    /// - [`AccessTokenRefused`] (the OAuth error code, a short reason, and the token's `jti`
    ///   when the token verified but the request was refused, e.g. for scope or DPoP) for
    ///   every refusal, except a request without credentials: that 401 is the routine
    ///   discovery challenge (RS-1). A token that did not verify is recorded without a `jti`:
    ///   its claims are unproven, and a forged one could name another token's.
    ///
    /// The trail must be complete, so the layer fails closed: when an event cannot be
    /// appended (the log failed or was closed), the request is answered `503
    /// temporarily_unavailable` instead (logged at `error`, target `ema_audit`), and the token
    /// is not cached, so its next request tries again.
    #[must_use]
    pub fn audit(mut self, log: AuditLog) -> Self {
        self.audit = log;
        self
    }

    /// Checks every request against a revocation mirror (RV-15, RV-17), cache hits included
    /// (three hash lookups): a token whose `jti` is denied, whose subject is disabled, or
    /// issued at or before its subject's watermark (D-38) gets 401 `invalid_token` with
    /// `error_description` "token revoked" (a `DPoP` challenge for a DPoP-bound token); while
    /// the mirror is older than its staleness bound every authenticated request gets 503
    /// `temporarily_unavailable` with `Retry-After` (RV-16). The server keeps the mirror
    /// fresh with [`LedgerMirror::sync`] (the clock of this layer judges its age).
    ///
    /// The layer also ends what a revoked token keeps open (RV-18): it subscribes to the
    /// mirror and, as soon as a sync brings a change that revokes a token, drops that token's
    /// requests whose response is not produced yet (answering 401 "token revoked"), ends their
    /// response streams (GET and POST SSE; a POST's stream first answers each of its requests
    /// not answered yet with the JSON-RPC error [`ACCESS_REVOKED_CODE`](crate::ACCESS_REVOKED_CODE)),
    /// fires the [`RevocationSignal`](crate::RevocationSignal) it put in each
    /// request's extensions, and closes the MCP sessions the token used through
    /// [`session_closer`](Self::session_closer). See [`crate::live`].
    #[must_use]
    pub fn revocation_mirror(mut self, mirror: Arc<LedgerMirror>) -> Self {
        self.revocation = Some(mirror);
        self
    }

    /// How to close an MCP session whose subject is revoked (RV-18), with
    /// [`revocation_mirror`](Self::revocation_mirror); with rmcp,
    /// `ema_server::rmcp::close_sessions(session_manager)`. Without one, revoked tokens'
    /// requests and streams still end, and the session is only refused at its next request.
    #[must_use]
    pub fn session_closer(mut self, closer: Arc<dyn SessionCloser>) -> Self {
        self.session_closer = Some(closer);
        self
    }

    /// Records DPoP proof `jti`s in `store` instead of this layer's own in-memory store
    /// (100 000 live entries), so that every instance sharing the store (for example
    /// `ema_grant::RedisReplayStore`, feature `redis`, behind a [`DynReplayStore`]) accepts a
    /// proof once
    /// (DP-33, D-30): the key is SHA-256(kind ‖ jkt ‖ normalized `htu` ‖ `jti`), kept until the
    /// proof's `iat` + 300 s window + 30 s leeway. A proof that cannot be checked because the
    /// store is unreachable or full is refused with 503 `temporarily_unavailable`, never let
    /// through.
    ///
    /// ```
    /// use ema_grant::{DynReplayStore, InMemoryReplayStore};
    /// use ema_server::BearerAuth;
    ///
    /// let shared = DynReplayStore::new(InMemoryReplayStore::new(100_000));
    /// let build = |store: DynReplayStore| {
    ///     BearerAuth::builder("https://mcp.tasks.example/mcp", "https://auth.tasks.example")
    ///         .jwks(ema_jose::JwkSet::default())
    ///         .dpop_replay_store(store)
    ///         .build()
    /// };
    /// // Two instances behind one load balancer: a proof accepted by one is a replay at the other.
    /// let (a, b) = (build(shared.clone())?, build(shared)?);
    /// # let _ = (a, b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn dpop_replay_store(mut self, store: DynReplayStore) -> Self {
        self.dpop_replay = Some(store);
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<BearerAuth, BearerBuildError> {
        let resource_url = http_url(&self.resource)
            .ok_or_else(|| BearerBuildError::InvalidResource(self.resource.clone()))?;
        if http_url(&self.issuer).is_none() {
            return Err(BearerBuildError::InvalidIssuer(self.issuer));
        }
        let mut keys = self.keys.into_iter();
        let keys = match (keys.next(), keys.next()) {
            (None, _) => return Err(BearerBuildError::MissingKeys),
            (Some(_), Some(_)) => return Err(BearerBuildError::KeysTwice),
            (Some(KeyChoice::Source(keys)), None) => keys,
            (Some(KeyChoice::Set(set)), None) => {
                DynKeySource::new(StaticKeySource::new().with_issuer(self.issuer.as_str(), set))
            }
            (Some(KeyChoice::Url(url)), None) => {
                let refused = |reason: String| BearerBuildError::JwksUrl {
                    url: url.clone(),
                    reason,
                };
                let fetcher =
                    HttpFetcher::new(self.fetch_policy).map_err(|e| refused(e.to_string()))?;
                let remote = RemoteJwks::new(fetcher, self.clock.clone())
                    .with_issuer(self.issuer.as_str(), &url)
                    .map_err(|e| refused(e.to_string()))?;
                DynKeySource::new(remote)
            }
        };
        let required = scope_set("require_scopes", &self.required)?;
        let default_method_scopes =
            scope_set("default_method_scopes", &self.default_method_scopes)?;
        let default_tool_scopes = scope_set("default_tool_scopes", &self.default_tool_scopes)?;
        let mut method_scopes = HashMap::new();
        for (method, list) in &self.method_scopes {
            let set = scope_set(&format!("method_scopes(\"{method}\")"), list)?;
            method_scopes.insert(method.clone(), set);
        }
        let mut tool_scopes = HashMap::new();
        for (tool, list) in &self.tool_scopes {
            // Fail closed: a tool scope must name a declared tool.
            match &self.tools {
                None => return Err(BearerBuildError::ToolsNotDeclared(tool.clone())),
                Some(tools) if !tools.contains(tool) => {
                    return Err(BearerBuildError::UnknownTool(tool.clone()));
                }
                Some(_) => {}
            }
            let set = scope_set(&format!("tool_scopes(\"{tool}\")"), list)?;
            tool_scopes.insert(tool.clone(), set);
        }
        let mut validator = AccessTokenValidator::new(
            Issuer::new(self.issuer.as_str()),
            Resource::new(self.resource.as_str()),
            keys,
        );
        if let Some(algorithms) = self.algorithms {
            validator = validator.with_algorithms(algorithms);
        }
        if let Some(leeway) = self.leeway {
            validator = validator.with_leeway(leeway);
        }
        let all_scopes: BTreeSet<&str> = required
            .iter()
            .chain(default_method_scopes.iter())
            .chain(default_tool_scopes.iter())
            .chain(method_scopes.values().flat_map(ScopeSet::iter))
            .chain(tool_scopes.values().flat_map(ScopeSet::iter))
            .collect();
        let mut metadata =
            ProtectedResourceMetadata::new(self.resource.as_str(), [self.issuer.as_str()]);
        if !all_scopes.is_empty() {
            metadata = metadata.with_scopes(all_scopes);
        }
        let live = self.revocation.as_ref().map(|mirror| {
            let live = Arc::new(LiveRegistry::new(self.session_closer));
            let listener: Arc<dyn MirrorListener> = live.clone();
            mirror.subscribe(&listener);
            live
        });
        Ok(BearerAuth(Arc::new(Inner {
            validator,
            resource_metadata: ema_metadata::protected_resource_metadata_url(&resource_url)
                .to_string(),
            metadata,
            required,
            method_scopes,
            default_method_scopes,
            tool_scopes,
            default_tool_scopes,
            // Proofs name the resource URL as `htu` (the MCP endpoint is the resource).
            // DP-32, D-28: a resource server's window is ±300 s.
            dpop: DpopValidator::for_resource(self.resource.as_str()),
            dpop_replay: self
                .dpop_replay
                .unwrap_or_else(|| DynReplayStore::new(InMemoryReplayStore::new(100_000))),
            resource: self.resource.clone(),
            audit: self.audit,
            cache: TokenCache {
                entries: Mutex::new(HashMap::new()),
                capacity: self.cache_capacity,
            },
            clock: self.clock,
            revocation: self.revocation,
            live,
        })))
    }
}

impl Inner {
    /// Whether any rule depends on the JSON-RPC body.
    fn reads_body(&self) -> bool {
        !self.tool_scopes.is_empty()
            || !self.default_tool_scopes.is_empty()
            || !self.method_scopes.is_empty()
            || !self.default_method_scopes.is_empty()
    }

    /// The scope sets the messages in a JSON-RPC body (a message or a batch) need on top of
    /// [`BearerAuthBuilder::require_scopes`], borrowed from the configuration, each set once; `None`
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
            if let Some(tool) = call.tool.as_deref() {
                let set = self.tool_scopes.get(tool);
                add_once(&mut sets, set.unwrap_or(&self.default_tool_scopes));
            }
        }
        Some(sets)
    }

    fn challenge(&self, error: Option<&(ErrorCode, &str)>, scope: Option<String>) -> Challenge {
        let mut c = Challenge::bearer();
        if let Some((code, description)) = error {
            c = c.error(code).param("error_description", *description);
        }
        let scope =
            scope.or_else(|| (!self.required.is_empty()).then(|| self.required.to_string()));
        if let Some(scope) = scope {
            c = c.param("scope", scope);
        }
        c.param("resource_metadata", self.resource_metadata.as_str())
    }

    /// A refusal of a request that used the `DPoP` scheme with a DPoP-bound token: 401 with
    /// `code` (`invalid_dpop_proof` for a missing, duplicated or invalid proof,
    /// `invalid_token` for a proof by another key, SEC-8) and a `DPoP` challenge naming the
    /// accepted proof algorithms and the metadata URL (RFC 9449 §7.1). A proof that
    /// could not be judged because the replay store is unavailable is a 503, as for tokens.
    fn reject_dpop(&self, code: ErrorCode, description: &'static str) -> Response {
        if code == ErrorCode::TemporarilyUnavailable {
            return self.reject(code.http_status(), Some((code, description)), None);
        }
        let algs = self
            .dpop
            .algorithms()
            .iter()
            .map(Algorithm::name)
            .collect::<Vec<_>>()
            .join(" ");
        let mut c = Challenge::new("DPoP")
            .error(&code)
            .param("error_description", description)
            .param("algs", algs);
        if !self.required.is_empty() {
            c = c.param("scope", self.required.to_string());
        }
        let c = c.param("resource_metadata", self.resource_metadata.as_str());
        let mut resp = self.reject(StatusCode::UNAUTHORIZED, Some((code, description)), None);
        if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }

    /// A refusal: `status`, a JSON body with the code, and the `Bearer` challenge (RFC 6750
    /// §3) for the bearer codes and for a request without credentials (no code, RS-1). A
    /// `temporarily_unavailable` answer (503) carries no challenge: the token was not judged.
    fn reject(
        &self,
        status: StatusCode,
        error: Option<(ErrorCode, &'static str)>,
        scope: Option<String>,
    ) -> Response {
        let challenge = match &error {
            Some((ErrorCode::TemporarilyUnavailable, _)) => None,
            error => Some(self.challenge(error.as_ref(), scope)),
        };
        let body = match &error {
            Some((code, description)) => {
                serde_json::json!({"error": code.as_str(), "error_description": description})
            }
            // RFC 6750 §3.1: no error code when the request carries no credentials.
            None => serde_json::json!({"error_description": "an access token is required"}),
        };
        let mut resp = (status, body.to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c.to_string()).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some((code, description)) = error {
            resp.extensions_mut().insert(Refusal {
                code,
                reason: description.into(),
            });
        }
        resp
    }

    /// The answer when the audit trail refused an event: 503 `temporarily_unavailable`, the
    /// request neither served nor judged (fail closed). Carries no [`Refusal`]: the trail that
    /// just failed is not asked again.
    fn audit_failed(&self, error: &AuditError) -> Response {
        tracing::error!(target: "ema_audit", %error, "appending to the audit trail failed; the request is refused");
        let mut resp = self.reject(
            StatusCode::SERVICE_UNAVAILABLE,
            Some((
                ErrorCode::TemporarilyUnavailable,
                "the server cannot record this request; try again later",
            )),
            None,
        );
        resp.extensions_mut().remove::<Refusal>();
        resp
    }

    /// Appends [`AccessTokenRefused`] for a refusal that carries a [`Refusal`] (naming `jti`
    /// when the token verified); the refusal itself, or the 503 of [`Inner::audit_failed`]
    /// when the trail refuses the event.
    /// 401 `invalid_token` "token revoked" for `principal`'s token (RV-15), with a `DPoP`
    /// challenge for a DPoP-bound token; `reason` goes to the trail.
    fn revoked(&self, principal: &Principal, reason: Option<RevocationReason>) -> Response {
        let mut resp = if principal.claims().cnf_jkt.is_some() {
            self.reject_dpop(ErrorCode::InvalidToken, "token revoked")
        } else {
            self.reject(
                StatusCode::UNAUTHORIZED,
                Some((ErrorCode::InvalidToken, "token revoked")),
                None,
            )
        };
        if let Some(refusal) = resp.extensions_mut().get_mut::<Refusal>() {
            refusal.reason = match reason {
                Some(reason) => format!("token revoked: {reason}").into(),
                None => "token revoked".into(),
            };
        }
        resp
    }

    fn refused(&self, response: Response, jti: Option<&str>) -> Response {
        if !self.audit.is_enabled() {
            return response;
        }
        let Some(refusal) = response.extensions().get::<Refusal>() else {
            return response;
        };
        let mut event = AccessTokenRefused::new(
            self.resource.as_str(),
            refusal.code.as_str(),
            refusal.reason.as_ref(),
        );
        if let Some(jti) = jti {
            event = event.with_jti(jti);
        }
        match self.audit.append(event) {
            Ok(_) => response,
            Err(e) => self.audit_failed(&e),
        }
    }

    /// Appends [`AccessTokenAccepted`] for a token that just verified.
    fn accepted(&self, principal: &Principal) -> Result<(), AuditError> {
        if !self.audit.is_enabled() {
            return Ok(());
        }
        let claims = principal.claims();
        let event = AccessTokenAccepted::new(
            claims.jti.as_str(),
            principal.subject(),
            principal.client_id(),
            self.resource.as_str(),
        )
        .with_scopes(principal.scopes());
        self.audit.append(event).map(|_| ())
    }

    /// The principal of a request needing `extra` scopes on top of the required ones, or the
    /// response refusing it, appended to the audit trail.
    async fn authorize(
        &self,
        parts: &http::request::Parts,
        extra: &[&ScopeSet],
    ) -> Result<Principal, Response> {
        let mut verified = None;
        self.judge(parts, extra, &mut verified)
            .await
            .map_err(|refusal| {
                let jti = verified
                    .as_ref()
                    .map(|p: &Principal| p.claims().jti.as_str());
                self.refused(refusal, jti)
            })
    }

    /// [`Inner::authorize`] before the refusal is recorded: `verified` is set once the token
    /// verified, so that a refusal after it names the token's `jti`.
    async fn judge(
        &self,
        parts: &http::request::Parts,
        extra: &[&ScopeSet],
        verified: &mut Option<Principal>,
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
        let first_scope = || {
            let first = extra.iter().fold(
                self.required.union(&self.default_method_scopes),
                |all, set| all.union(set),
            );
            (!first.is_empty()).then(|| first.to_string())
        };
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let value = match (values.next(), values.next()) {
            // RS-1: no credentials: a challenge without an error code (RFC 6750 §3.1). Its
            // `scope` names what this request needs plus what requests without a rule of their
            // own need (the default method scopes): the least a client must ask for to start a
            // session and use it for routine calls, so that it steps up (CL-10) only for what
            // needs more, instead of falling back to every scope the resource supports.
            (None, _) => return Err(self.reject(StatusCode::UNAUTHORIZED, None, first_scope())),
            (Some(v), None) => v,
            (Some(_), Some(_)) => {
                return Err(self.reject(
                    StatusCode::BAD_REQUEST,
                    Some((
                        ErrorCode::InvalidRequest,
                        "more than one Authorization header",
                    )),
                    None,
                ));
            }
        };
        let invalid = |description| {
            self.reject(
                StatusCode::UNAUTHORIZED,
                Some((ErrorCode::InvalidToken, description)),
                None,
            )
        };
        let value = value
            .to_str()
            .map_err(|_| invalid("the Authorization header is malformed"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or_else(|| invalid("the Authorization header is malformed"))?;
        // DP-28: `DPoP` and `Bearer` scheme names compare case-insensitively.
        let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
        if !dpop_scheme && !scheme.eq_ignore_ascii_case("bearer") {
            // Another scheme carries no bearer credentials: answered like no credentials.
            return Err(self.reject(StatusCode::UNAUTHORIZED, None, first_scope()));
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
                // The code and text come from AccessTokenError's exhaustive ToErrorCode:
                // `invalid_token`, or 503 when the keys cannot be consulted (fail closed).
                let claims = self.validator.validate(token, now).await.map_err(|e| {
                    let code = e.error_code();
                    tracing::debug!(error = %code, reason = %e, "access token refused");
                    let mut resp = self.reject(
                        code.http_status(),
                        Some((code, e.error_description())),
                        None,
                    );
                    // The trail keeps the precise cause (never the token).
                    if let Some(refusal) = resp.extensions_mut().get_mut::<Refusal>() {
                        refusal.reason = e.to_string().into();
                    }
                    resp
                })?;
                let claims = Principal::new(claims);
                // First sight of this token (or of this key set): on the trail before it is
                // cached, so that a failed append leaves it uncached.
                self.accepted(&claims).map_err(|e| self.audit_failed(&e))?;
                if self.cache.capacity > 0 {
                    self.cache.put(key, claims.clone(), now.as_secs(), version);
                }
                claims
            }
        };
        // Only a trail needs it (an `Arc` clone otherwise spared on the cached path).
        if self.audit.is_enabled() {
            *verified = Some(principal.clone());
        }
        // RV-15, RV-17: every request, cache hit or not, against the revocation mirror.
        if let Some(mirror) = &self.revocation {
            let claims = principal.claims();
            match mirror.check_access_token(
                claims.iss.as_str(),
                &claims.sub,
                claims.iat,
                claims.jti.as_str(),
                now,
            ) {
                MirrorVerdict::Allowed => {}
                MirrorVerdict::Revoked(reason) => {
                    tracing::debug!(%reason, "access token revoked");
                    return Err(self.revoked(&principal, Some(reason)));
                }
                // RV-16: a mirror past its bound is not trusted.
                MirrorVerdict::Stale => {
                    let mut resp = self.reject(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some((
                            ErrorCode::TemporarilyUnavailable,
                            "revocation state is stale; try again later",
                        )),
                        None,
                    );
                    resp.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from_static(STALE_RETRY_AFTER),
                    );
                    return Err(resp);
                }
            }
        }
        // RFC 9449 §7.1: a DPoP-bound token needs the DPoP scheme and a proof by its key, with
        // `ath` binding the proof to this token; a bearer token is never sent as DPoP.
        match (dpop_scheme, principal.claims().cnf_jkt.as_deref()) {
            (false, None) => {}
            // DP-29: a bound token presented as a bearer token is a downgrade.
            (false, Some(_)) => return Err(invalid("the access token is DPoP-bound")),
            // DP-30: the DPoP scheme with an unbound token has nothing to bind the proof to.
            (true, None) => return Err(invalid("the access token is not DPoP-bound")),
            (true, Some(jkt)) => {
                // SEC-8, DP-31, RFC 9449 §7.1: a missing, duplicated or invalid proof is
                // `invalid_dpop_proof`; a valid proof by another key is a binding defect,
                // `invalid_token`; both with a `DPoP` challenge.
                let mut proofs = parts.headers.get_all("dpop").iter();
                let proof = match (proofs.next(), proofs.next()) {
                    (Some(p), None) => p.to_str().ok(),
                    _ => None,
                }
                .ok_or_else(|| {
                    self.reject_dpop(
                        ErrorCode::InvalidDpopProof,
                        "exactly one DPoP proof is required",
                    )
                })?;
                let checked = self
                    .dpop
                    .validate_for_token(proof, parts.method.as_str(), token, &self.dpop_replay, now)
                    .await
                    .map_err(|e| {
                        tracing::debug!(reason = %e, "DPoP proof refused");
                        self.reject_dpop(e.error_code(), e.error_description())
                    })?;
                if checked.jkt != jkt {
                    return Err(self.reject_dpop(
                        ErrorCode::InvalidToken,
                        "the DPoP proof is not by the token's key",
                    ));
                }
            }
        }
        // RS-6: every required scope, else 403 naming all the scopes the request needs.
        let granted = |scope: &str| principal.has_scope(scope);
        let covered =
            self.required.iter().all(granted) && extra.iter().all(|set| set.iter().all(granted));
        if !covered {
            return Err(self.reject(
                StatusCode::FORBIDDEN,
                Some((
                    ErrorCode::InsufficientScope,
                    "the access token lacks a required scope",
                )),
                needed(),
            ));
        }
        Ok(principal)
    }
}

/// Adds a configured scope set unless it is empty or already there (batches repeat methods).
fn add_once<'a>(sets: &mut Vec<&'a ScopeSet>, set: &'a ScopeSet) {
    if !set.is_empty() && !sets.iter().any(|s| std::ptr::eq(*s, set)) {
        sets.push(set);
    }
}

impl BearerAuth {
    /// Runs the layer's checks on one request: the request to hand on (with the verified
    /// [`Principal`] in its extensions and the credentials removed, RS-7), or the response
    /// refusing it.
    ///
    /// A POST's body is read (up to [`MAX_JSON_RPC_BODY`]) when a rule depends on it, and, with a
    /// revocation mirror, when its `Content-Length` is within that bound (RV-18: a stream cut by
    /// a revocation answers the requests in it); it is returned beside the request.
    async fn check(
        &self,
        request: http::Request<Body>,
    ) -> Result<(http::Request<Body>, Option<Bytes>), Response> {
        let auth = &*self.0;
        let (mut parts, body) = request.into_parts();
        let read = parts.method == http::Method::POST
            && (auth.reads_body() || (auth.live.is_some() && bounded_length(&parts.headers)));
        // GET and DELETE carry no JSON-RPC message: `require_scopes` alone applies to them.
        let (body, bytes) = if !read {
            (body, None)
        } else {
            // The body is read once here and handed on unchanged.
            match axum::body::to_bytes(body, MAX_JSON_RPC_BODY).await {
                Ok(bytes) => (Body::from(bytes.clone()), Some(bytes)),
                Err(_) => {
                    let refusal = auth.reject(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Some((
                            ErrorCode::InvalidRequest,
                            "the request body is too large or unreadable",
                        )),
                        None,
                    );
                    return Err(auth.refused(refusal, None));
                }
            }
        };
        let extra = match &bytes {
            Some(bytes) if auth.reads_body() => match auth.body_scopes(bytes) {
                Some(extra) => extra,
                None => {
                    // Credentials are judged first: no token is still a 401.
                    let principal = auth.authorize(&parts, &[]).await?;
                    let refusal = auth.reject(
                        StatusCode::BAD_REQUEST,
                        Some((
                            ErrorCode::InvalidRequest,
                            "a JSON-RPC message names its method, params or tool twice",
                        )),
                        None,
                    );
                    return Err(auth.refused(refusal, Some(principal.claims().jti.as_str())));
                }
            },
            // No rule reads the body (it may have been read for RV-18 only).
            _ => Vec::new(),
        };
        let principal = auth.authorize(&parts, &extra).await?;
        // RS-7: the token (and its DPoP proof) stop here; handlers get the principal, so
        // nothing behind the layer can forward the client's credential upstream.
        parts.headers.remove(header::AUTHORIZATION);
        parts.headers.remove("dpop");
        parts.extensions.insert(principal);
        Ok((http::Request::from_parts(parts, body), bytes))
    }
}

/// Whether a request declares a body length the layer reads whole ([`MAX_JSON_RPC_BODY`]).
fn bounded_length(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= MAX_JSON_RPC_BODY)
}

/// The MCP session header (Streamable HTTP).
const MCP_SESSION_ID: &str = "mcp-session-id";

/// Whether a response is a Server-Sent Events stream.
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

impl BearerAuth {
    /// Serves a request let through while a revocation mirror is configured (RV-18): the
    /// request is registered under its token's subject for as long as its response is produced
    /// and streamed, and ended when the mirror learns that the token is revoked.
    async fn call_live<S>(
        &self,
        live: &Arc<LiveRegistry>,
        changes_before_check: u64,
        mut request: http::Request<Body>,
        body: Option<Bytes>,
        mut inner: S,
    ) -> Result<Response, S::Error>
    where
        S: tower_service::Service<http::Request<Body>>,
        S::Response: IntoResponse,
    {
        let Some(principal) = request.extensions().get::<Principal>().cloned() else {
            return inner.call(request).await.map(IntoResponse::into_response);
        };
        let auth = &*self.0;
        // A header value's clone shares its bytes: no copy of the session id per request.
        let session_header = request.headers().get(MCP_SESSION_ID).cloned();
        let session = session_header.as_ref().and_then(|v| v.to_str().ok());
        let ending = request.method() == http::Method::DELETE;
        let (guard, signal) = live.register(&principal, session, auth.clock.now());
        // A change applied between the check and the registration is not missed: the
        // registry counts the changes it acts on, and only when one came in since the check
        // is the mirror asked again.
        if live.changes() != changes_before_check
            && let Some(reason) = self.mirror_reason(&principal)
        {
            return Ok(self.refuse_revoked(&principal, Some(reason)));
        }
        request.extensions_mut().insert(signal);
        let Some(response) = unless_revoked(inner.call(request), guard.wake()).await else {
            return Ok(self.refuse_revoked(&principal, self.mirror_reason(&principal)));
        };
        let response = response?.into_response();
        // RV-18: the session this request named may have been closed under it by the
        // revocation (the MCP service then answers an error for a terminated session); the
        // client is told why instead.
        if guard.wake().is_revoked()
            && (response.status().is_server_error() || response.status() == StatusCode::NOT_FOUND)
        {
            return Ok(self.refuse_revoked(&principal, self.mirror_reason(&principal)));
        }
        // A session the response assigns (at `initialize`) is remembered; the one the request
        // named is already registered under this token by `register`.
        if let Some(assigned) = response
            .headers()
            .get(MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            && Some(assigned) != session
        {
            live.add_session(&principal, assigned);
        }
        if ending
            && response.status().is_success()
            && let Some(session) = session
        {
            live.forget_session(&principal, session);
        }
        // A body of known length is complete: nothing stays open to end. A stream (SSE) is
        // ended when the token is revoked, and keeps the request registered while it lasts.
        if http_body::Body::size_hint(response.body())
            .exact()
            .is_some()
        {
            return Ok(response);
        }
        // RV-18: a POST's SSE stream cut by a revocation still answers each request in it.
        let owed = body
            .filter(|_| is_event_stream(response.headers()))
            .map(OwedAnswers::new);
        Ok(response.map(|body| Body::new(RevocableBody::new(body, guard, owed))))
    }

    /// Why the mirror, whatever its age, revokes `principal`'s token (`None`: it does not, or
    /// there is no mirror).
    fn mirror_reason(&self, principal: &Principal) -> Option<RevocationReason> {
        let claims = principal.claims();
        self.0.revocation.as_ref()?.revocation(
            claims.iss.as_str(),
            &claims.sub,
            claims.iat,
            claims.jti.as_str(),
        )
    }

    /// The audited 401 for a request whose token was revoked while it was served.
    fn refuse_revoked(&self, principal: &Principal, reason: Option<RevocationReason>) -> Response {
        let auth = &*self.0;
        auth.refused(
            auth.revoked(principal, reason),
            Some(principal.claims().jti.as_str()),
        )
    }
}

impl<S> tower_layer::Layer<S> for BearerAuth {
    type Service = BearerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerService {
            auth: self.clone(),
            inner,
        }
    }
}

/// The service [`BearerAuth`] wraps around an inner service (see [`tower_layer::Layer`]):
/// requests reach `S` only with a valid token, as `http::Request<axum::body::Body>` carrying
/// the [`Principal`]; refusals are answered here.
#[derive(Debug, Clone)]
pub struct BearerService<S> {
    auth: BearerAuth,
    inner: S,
}

/// The boxed error type of request bodies.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower_service::Service<http::Request<B>> for BearerService<S>
where
    S: tower_service::Service<http::Request<Body>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The service polled ready is the one that serves this request; a fresh clone stays.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let auth = self.auth.clone();
        Box::pin(async move {
            // Read before the mirror check (RV-18: see `LiveRegistry::changes`).
            let changes = auth.0.live.as_ref().map_or(0, |live| live.changes());
            match auth.check(request.map(Body::new)).await {
                Ok((request, body)) => match &auth.0.live {
                    None => inner.call(request).await.map(IntoResponse::into_response),
                    Some(live) => auth.call_live(live, changes, request, body, inner).await,
                },
                Err(refusal) => Ok(refusal),
            }
        })
    }
}

/// Wraps every route of `router` in the bearer layer (RS-1..RS-7): the same as
/// `router.layer(auth)`. Handlers take the [`Principal`]; the `Authorization` and `DPoP`
/// headers are removed before the request reaches them, so the client's token cannot be
/// forwarded upstream (RS-7: use the credential vault for downstream credentials).
pub fn protect(router: Router, auth: BearerAuth) -> Router {
    router.layer(auth)
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
