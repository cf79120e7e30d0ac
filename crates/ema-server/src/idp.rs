//! The enterprise IdP's routes: RFC 8414 metadata (MD-4), the JWKS and the token endpoint
//! serving token exchange ([`token_exchange_router`]); with the `sso` feature also OpenID
//! Connect discovery, single sign-on (authorization code with PKCE behind a login form) and the
//! authorization-code grant at the same token endpoint ([`IdpRouter::builder`] with `sso`).

#[cfg(feature = "sso")]
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
#[cfg(feature = "sso")]
use axum::extract::RawQuery;
use axum::extract::State;
use axum::response::Response;
#[cfg(feature = "sso")]
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use ema_audit::AuditLog;
#[cfg(feature = "sso")]
use ema_grant::{AUTHORIZATION_CODE, AuthorizeError, SsoProvider};
use ema_grant::{
    AdminPolicy, ErrorCode, Form, OAuthError, ReplayStore, SAML2_TOKEN_TYPE, ScopeLog,
    TOKEN_EXCHANGE, TokenExchangeGrant, TokenRequest, parse_exchange_form,
};
use ema_id_jag::ScopeSet;
use ema_jose::{AlgorithmSet, Clock, KeyRing, KeySource, SystemClock};
use ema_metadata::AuthorizationServerMetadata;
#[cfg(feature = "sso")]
use http::{HeaderValue, StatusCode, header};
use tokio::sync::Semaphore;

use crate::authorization_server::{LogTarget, log_outcome};
use crate::endpoint::{into_axum, public_json, read_request};
use crate::paths::{EndpointPaths, url_path};

struct IdpState<K, P, R> {
    /// The sign-in pages and the authorization-code grant; `None` for
    /// [`token_exchange_router`].
    #[cfg(feature = "sso")]
    sso: Option<SsoProvider>,
    exchange: TokenExchangeGrant<K, P, R>,
    keys: Arc<KeyRing>,
    metadata: serde_json::Value,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    #[cfg(feature = "sso")]
    password_checks: Arc<Semaphore>,
    saml_checks: Arc<Semaphore>,
}

impl<K, P, R> IdpState<K, P, R> {
    /// Whether this IdP signs ID tokens (and so publishes their algorithms): only with SSO.
    fn signs_id_tokens(&self) -> bool {
        #[cfg(feature = "sso")]
        return self.sso.is_some();
        #[cfg(not(feature = "sso"))]
        return false;
    }

    /// The `error_description` for a `grant_type` this token endpoint does not serve.
    fn unsupported_grant_type(&self) -> OAuthError {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            if self.signs_id_tokens() {
                "this IdP supports authorization_code and token exchange"
            } else {
                "this IdP supports token exchange only"
            },
        )
    }
}

/// How many password checks may run at once: half the cores, at least one. Each is a PBKDF2
/// with 100 000 iterations (tens of milliseconds of CPU); they run on the blocking pool, so a
/// burst of sign-in attempts (wrong passwords included) neither stalls the async workers that
/// serve every other request nor takes every core.
fn password_check_permits() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2))
}

/// How many token exchanges with a SAML subject assertion may run at once: as many as password
/// checks. Parsing, canonicalizing and verifying up to 64 KiB of XML is CPU work (around a
/// millisecond for the worst accepted input); those requests run on the blocking pool, so a
/// burst of them neither stalls the async workers nor takes every core. ID-token exchanges
/// stay on the async path.
fn saml_check_permits() -> usize {
    password_check_permits()
}

/// The IdP's metadata with the default endpoint paths (`/token`, `/jwks`, `/authorize`); see
/// [`idp_metadata_with_paths`].
#[cfg(feature = "sso")]
pub fn idp_metadata(issuer: &str) -> AuthorizationServerMetadata {
    idp_metadata_with_paths(issuer, &EndpointPaths::default())
}

/// The IdP's metadata: OpenID Connect discovery members plus the token-exchange grant and the
/// ID-JAG token type it issues (MD-4), with the endpoints at `paths` below `issuer` (the
/// router mounts them where the metadata says).
///
/// Paths from [`EndpointPaths::without_authorize`] leave `authorization_endpoint` out, and
/// the router of [`IdpRouterBuilder::sso`] then serves no sign-in pages.
///
/// `id_token_signing_alg_values_supported` is left out here: the router publishes the
/// algorithms of the keys it actually signs ID tokens with.
///
/// `token_endpoint_auth_methods_supported` lists every method the token endpoint can check;
/// replace it with the methods of the clients actually registered
/// (`ClientRegistry::auth_methods_supported`, D-24), as the reference IdP does.
///
/// For an IdP without sign-in (no authorization-code grant, no OpenID Connect members), see
/// [`token_exchange_metadata_with_paths`].
#[cfg(feature = "sso")]
pub fn idp_metadata_with_paths(issuer: &str, paths: &EndpointPaths) -> AuthorizationServerMetadata {
    let mut m = AuthorizationServerMetadata::new(issuer, paths.url(issuer, paths.token()));
    m.authorization_endpoint = paths.authorize().map(|a| paths.url(issuer, a));
    m.jwks_uri = Some(paths.url(issuer, paths.jwks()));
    m.grant_types_supported = Some(vec![AUTHORIZATION_CODE.into(), TOKEN_EXCHANGE.into()]);
    m.response_types_supported = Some(vec!["code".into()]);
    m.code_challenge_methods_supported = Some(vec!["S256".into()]);
    m.token_endpoint_auth_methods_supported = Some(vec![
        "client_secret_basic".into(),
        "client_secret_post".into(),
        "private_key_jwt".into(),
    ]);
    m.identity_chaining_requested_token_types_supported =
        Some(vec![ema_grant::ID_JAG_TOKEN_TYPE.into()]);
    m.scopes_supported = Some(vec!["openid".into(), "email".into(), "profile".into()]);
    m.extra.insert(
        "subject_types_supported".into(),
        serde_json::json!(["public"]),
    );
    m
}

/// The metadata of an IdP that serves token exchange alone, with the default endpoint paths
/// (`/token`, `/jwks`); see [`token_exchange_metadata_with_paths`].
pub fn token_exchange_metadata(issuer: &str) -> AuthorizationServerMetadata {
    token_exchange_metadata_with_paths(issuer, &EndpointPaths::default())
}

/// The metadata of an IdP that serves token exchange alone, for [`token_exchange_router`]:
/// `issuer`, `token_endpoint` and `jwks_uri` at `paths` below `issuer`, `grant_types_supported`
/// `[token-exchange]`, the ID-JAG token type in
/// `identity_chaining_requested_token_types_supported` (MD-4), and
/// `token_endpoint_auth_methods_supported`. No `authorization_endpoint` (the authorize path of
/// `paths` is not used), no authorization-code or OpenID Connect members: users sign in at the
/// company's own IdP, which issues the ID tokens this one exchanges.
///
/// `token_endpoint_auth_methods_supported` lists every method the token endpoint can check;
/// replace it with the methods of the clients actually registered
/// (`ClientRegistry::auth_methods_supported`, D-24).
///
/// ```
/// let m = ema_server::token_exchange_metadata("https://idp.acme.example");
/// assert_eq!(m.token_endpoint.as_deref(), Some("https://idp.acme.example/token"));
/// assert_eq!(m.authorization_endpoint, None);
/// assert_eq!(
///     m.grant_types_supported,
///     Some(vec![ema_grant::TOKEN_EXCHANGE.to_owned()])
/// );
/// ```
pub fn token_exchange_metadata_with_paths(
    issuer: &str,
    paths: &EndpointPaths,
) -> AuthorizationServerMetadata {
    let mut m = AuthorizationServerMetadata::new(issuer, paths.url(issuer, paths.token()));
    m.jwks_uri = Some(paths.url(issuer, paths.jwks()));
    m.grant_types_supported = Some(vec![TOKEN_EXCHANGE.into()]);
    m.token_endpoint_auth_methods_supported = Some(vec![
        "client_secret_basic".into(),
        "client_secret_post".into(),
        "private_key_jwt".into(),
    ]);
    // MD-4: the ID-JAG is what this IdP issues.
    m.identity_chaining_requested_token_types_supported =
        Some(vec![ema_grant::ID_JAG_TOKEN_TYPE.into()]);
    m
}

/// The algorithms of the keys in `keys` (next, active, retired), each once, in a fixed order.
fn signing_algorithms(keys: &KeyRing) -> serde_json::Value {
    let set = keys
        .jwks()
        .keys()
        .iter()
        .filter_map(|k| k.algorithm())
        .fold(AlgorithmSet::EMPTY, AlgorithmSet::with);
    set.iter().map(|a| a.name()).collect()
}

/// The router of an enterprise IdP, assembled by [`IdpRouter::builder`]: RFC 8414 metadata,
/// the JWKS and the token endpoint serving token exchange; with the `sso` feature and
/// `IdpRouterBuilder::sso`, also OpenID Connect discovery, the sign-in pages and the
/// authorization-code grant.
///
/// ```
/// use std::sync::Arc;
/// use ema_grant::{
///     ClientCredential, GroupPolicy, RegisteredClient, TargetServer, TokenExchangeGrant,
/// };
/// use ema_id_jag::{IdJagIssuer, Issuer};
/// use ema_jose::{Algorithm, KeyRing, SigningKey, StaticKeySource};
/// use ema_server::{IdpRouter, token_exchange_metadata};
///
/// let keys = Arc::new(KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("k1".into()))?));
/// let exchange = TokenExchangeGrant::builder(
///     IdJagIssuer::new(Issuer::new("https://idp.acme.example"), keys.clone()),
///     // The keys of the ID tokens it exchanges (here its own).
///     StaticKeySource::new().with_issuer("https://idp.acme.example", keys.jwks()),
///     GroupPolicy::new(),
/// )
/// .client(RegisteredClient::new("desk-01", ClientCredential::secret("s3cr3t")))
/// .target(TargetServer::new("https://auth.tasks.example", ["https://mcp.tasks.example/mcp"]))
/// .build()?;
/// let app: axum::Router = IdpRouter::builder(exchange, keys)
///     // Optional: defaults to the metadata of the ID-JAG issuer with the default paths.
///     .metadata(token_exchange_metadata("https://idp.acme.example"))
///     .build()?;
///
/// // Metadata for another issuer is refused: clients would reject it (MD-5).
/// # let keys = Arc::new(KeyRing::new(SigningKey::generate(Algorithm::ES256, None)?));
/// # let exchange = TokenExchangeGrant::builder(
/// #     IdJagIssuer::new(Issuer::new("https://idp.acme.example"), keys.clone()),
/// #     StaticKeySource::new(), GroupPolicy::new())
/// # .client(RegisteredClient::new("desk-01", ClientCredential::secret("s3cr3t")))
/// # .target(TargetServer::new("https://auth.tasks.example", ["https://mcp.tasks.example/mcp"]))
/// # .build()?;
/// let wrong = IdpRouter::builder(exchange, keys)
///     .metadata(token_exchange_metadata("https://other.example"))
///     .build();
/// assert!(wrong.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct IdpRouter;

impl IdpRouter {
    /// Starts the router of the IdP whose token exchange is `exchange` and whose ID-JAGs (and,
    /// with SSO, ID tokens) are signed by `keys`, published at the metadata's `jwks_uri`.
    ///
    /// Defaults: the metadata [`token_exchange_metadata`] (with `IdpRouterBuilder::sso`:
    /// `idp_metadata`) of the ID-JAG issuer, the system clock, no audit trail.
    pub fn builder<K, P, R>(
        exchange: TokenExchangeGrant<K, P, R>,
        keys: Arc<KeyRing>,
    ) -> IdpRouterBuilder<K, P, R> {
        IdpRouterBuilder {
            exchange,
            keys,
            metadata: None,
            clock: None,
            audit: AuditLog::disabled(),
            #[cfg(feature = "sso")]
            sso: None,
        }
    }
}

/// Why [`IdpRouterBuilder::build`] refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdpRouterError {
    /// The metadata's `issuer` is not the issuer of the ID-JAGs: clients would refuse the
    /// metadata (MD-5) or the authorization server the ID-JAGs.
    #[error("the metadata's issuer `{metadata}` is not the ID-JAG issuer `{id_jag}`")]
    IssuerMismatch {
        /// The metadata's `issuer`.
        metadata: String,
        /// The issuer of the ID-JAGs.
        id_jag: String,
    },
    /// The single sign-on's ID-token issuer is not the IdP's: the ID tokens it signs would not
    /// match the discovery document the router serves.
    #[cfg(feature = "sso")]
    #[error("the single sign-on issuer `{sso}` is not the ID-JAG issuer `{id_jag}`")]
    SsoIssuerMismatch {
        /// The issuer of the ID tokens.
        sso: String,
        /// The issuer of the ID-JAGs.
        id_jag: String,
    },
}

/// Assembles an IdP router; see [`IdpRouter::builder`].
#[must_use]
pub struct IdpRouterBuilder<K, P, R> {
    exchange: TokenExchangeGrant<K, P, R>,
    keys: Arc<KeyRing>,
    metadata: Option<AuthorizationServerMetadata>,
    clock: Option<Arc<dyn Clock>>,
    audit: AuditLog,
    #[cfg(feature = "sso")]
    sso: Option<SsoProvider>,
}

impl<K: KeySource, P: AdminPolicy, R: ReplayStore> std::fmt::Debug for IdpRouterBuilder<K, P, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("IdpRouterBuilder");
        d.field("issuer", &self.exchange.issuer().issuer().as_str())
            .field(
                "metadata",
                &self.metadata.as_ref().map(|m| m.issuer.as_str()),
            );
        #[cfg(feature = "sso")]
        d.field("sso", &self.sso.is_some());
        d.finish_non_exhaustive()
    }
}

impl<K, P, R> IdpRouterBuilder<K, P, R>
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    /// Sets the RFC 8414 metadata served at the issuer's well-known path; the routes are
    /// mounted at the paths of its `token_endpoint`, `jwks_uri` and (with SSO)
    /// `authorization_endpoint`. Build it with [`token_exchange_metadata_with_paths`] (with SSO
    /// `idp_metadata_with_paths`) from checked [`EndpointPaths`] so that they are distinct
    /// (axum refuses two routes for the same path and method). Its `issuer` must be the ID-JAG
    /// issuer ([`IdpRouterError::IssuerMismatch`]).
    pub fn metadata(mut self, metadata: AuthorizationServerMetadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the clock (default the system clock; tests pass a fixed one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Appends an [`IdJagIssued`](ema_audit::IdJagIssued) event to `log` for each ID-JAG
    /// issued by token exchange: the IdP's issuer, the subject, the client (its id at the
    /// authorization server), the audience, the resources, the scopes, and the digest of the
    /// ID-JAG's `iss`/`jti`, which the authorization server's `IdJagRedeemed` names too.
    /// Default [`AuditLog::disabled`].
    ///
    /// The trail must be complete: when the event cannot be appended, the ID-JAG is withheld
    /// and the client gets `503 temporarily_unavailable` (the error is logged at `error`,
    /// target `ema_audit`). Refused requests are not appended: they are logged (`tracing`),
    /// as every token request is.
    pub fn audit(mut self, log: AuditLog) -> Self {
        self.audit = log;
        self
    }

    /// Adds single sign-on: OpenID Connect discovery, the sign-in pages (authorization code
    /// with PKCE behind a login form, at the metadata's `authorization_endpoint`; none without
    /// one) and the authorization-code grant at the same token endpoint. ID tokens are signed
    /// by the router's keys; the provider's issuer must be the ID-JAG issuer
    /// ([`IdpRouterError::SsoIssuerMismatch`]). The discovery documents then name the
    /// algorithms of those keys in `id_token_signing_alg_values_supported` (so a rotation to
    /// another algorithm shows at once). Password checks run on the blocking pool, a bounded
    /// number at a time.
    ///
    /// Only with the `sso` feature.
    #[cfg(feature = "sso")]
    pub fn sso(mut self, sso: SsoProvider) -> Self {
        self.sso = Some(sso);
        self
    }

    /// Builds the router.
    ///
    /// Each token request is logged (`tracing`, level `info`, target `ema_server::idp`) with
    /// `grant` (`token_exchange`, `authorization_code`, else `unsupported` or `unknown`),
    /// `status`, on refusal `error` and the log-only `reason`, and the scopes
    /// `scope_requested` and `scope_granted` (where the admin policy narrowed a request,
    /// TX-9); never a token. Token exchanges with a SAML subject assertion (feature `saml`)
    /// run on the blocking pool, a bounded number at a time.
    pub fn build(self) -> Result<Router, IdpRouterError> {
        let id_jag = self.exchange.issuer().issuer().as_str().to_owned();
        #[cfg(feature = "sso")]
        if let Some(sso) = &self.sso
            && sso.issuer().as_str() != id_jag
        {
            return Err(IdpRouterError::SsoIssuerMismatch {
                sso: sso.issuer().as_str().to_owned(),
                id_jag,
            });
        }
        #[cfg(feature = "sso")]
        let default_metadata = if self.sso.is_some() {
            idp_metadata
        } else {
            token_exchange_metadata
        };
        #[cfg(not(feature = "sso"))]
        let default_metadata = token_exchange_metadata;
        let metadata = self.metadata.unwrap_or_else(|| default_metadata(&id_jag));
        if metadata.issuer != id_jag {
            return Err(IdpRouterError::IssuerMismatch {
                metadata: metadata.issuer,
                id_jag,
            });
        }
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        #[cfg(feature = "sso")]
        if let Some(sso) = self.sso {
            return Ok(sso_router(
                sso,
                self.exchange,
                self.keys,
                &metadata,
                clock,
                self.audit,
            ));
        }
        Ok(exchange_routes(
            self.exchange,
            self.keys,
            &metadata,
            clock,
            self.audit,
        ))
    }
}

impl<K, P, R> IdpState<K, P, R> {
    /// The state of both routers; `sso` is `None` for token exchange alone.
    fn new(
        #[cfg(feature = "sso")] sso: Option<SsoProvider>,
        exchange: TokenExchangeGrant<K, P, R>,
        keys: Arc<KeyRing>,
        metadata: &AuthorizationServerMetadata,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Arc<Self> {
        Arc::new(Self {
            #[cfg(feature = "sso")]
            sso,
            exchange,
            keys,
            metadata: metadata.to_json(),
            clock,
            audit,
            #[cfg(feature = "sso")]
            password_checks: Arc::new(Semaphore::new(password_check_permits())),
            saml_checks: Arc::new(Semaphore::new(saml_check_permits())),
        })
    }
}

/// The full IdP: the token routes, OpenID Connect discovery and the sign-in pages.
#[cfg(feature = "sso")]
fn sso_router<K, P, R>(
    sso: SsoProvider,
    exchange: TokenExchangeGrant<K, P, R>,
    keys: Arc<KeyRing>,
    metadata: &AuthorizationServerMetadata,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
) -> Router
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    let authorize = metadata.authorization_endpoint.as_deref().map(url_path);
    let oidc = crate::paths::path_of(&metadata.issuer, |u| {
        let mut w = u.clone();
        let path = u.path().trim_end_matches('/');
        w.set_path(&format!("{path}/.well-known/openid-configuration"));
        w
    });
    let state = IdpState::new(Some(sso), exchange, keys, metadata, clock, audit);
    let router = token_routes::<K, P, R>(metadata).route(&oidc, get(idp_metadata_route::<K, P, R>));
    match authorize {
        Some(authorize) => router.route(
            &authorize,
            get(authorize_page::<K, P, R>).post(authorize_submit::<K, P, R>),
        ),
        None => router,
    }
    .with_state(state)
}

/// Token exchange alone: the token routes.
fn exchange_routes<K, P, R>(
    exchange: TokenExchangeGrant<K, P, R>,
    keys: Arc<KeyRing>,
    metadata: &AuthorizationServerMetadata,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
) -> Router
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    let state = IdpState::new(
        #[cfg(feature = "sso")]
        None,
        exchange,
        keys,
        metadata,
        clock,
        audit,
    );
    token_routes::<K, P, R>(metadata).with_state(state)
}

/// Builds the router of an IdP that serves token exchange alone, for a company whose users
/// already sign in at an IdP of its own: RFC 8414 metadata at the well-known path of its
/// `issuer`, the JWKS of `keys` (which sign the ID-JAGs) and the token endpoint, mounted at the
/// paths of the metadata's `token_endpoint` and `jwks_uri`. No sign-in pages, no
/// authorization-code grant (`unsupported_grant_type`), no OpenID Connect discovery; build the
/// metadata with [`token_exchange_metadata_with_paths`]. The ID tokens it accepts are checked
/// by `exchange` (issuer and keys of the login system). Token exchanges with a SAML subject
/// assertion (feature `saml`) run on the blocking pool, a bounded number at a time.
///
/// The metadata is served as given; no audit trail. [`IdpRouter::builder`] builds the same
/// router, checks that the metadata names the ID-JAG issuer, and takes an
/// [`IdpRouterBuilder::audit`] trail.
pub fn token_exchange_router<K, P, R>(
    exchange: TokenExchangeGrant<K, P, R>,
    keys: Arc<KeyRing>,
    metadata: &AuthorizationServerMetadata,
    clock: Arc<dyn Clock>,
) -> Router
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    exchange_routes(exchange, keys, metadata, clock, AuditLog::disabled())
}

/// The routes of both IdP routers: RFC 8414 metadata at the issuer's well-known path, the
/// JWKS and the token endpoint, at the paths `metadata` publishes.
fn token_routes<K, P, R>(metadata: &AuthorizationServerMetadata) -> Router<Arc<IdpState<K, P, R>>>
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    let token = url_path(metadata.token_endpoint.as_deref().unwrap_or("/token"));
    let jwks = url_path(metadata.jwks_uri.as_deref().unwrap_or("/jwks"));
    let oauth = crate::paths::path_of(
        &metadata.issuer,
        ema_metadata::authorization_server_metadata_url,
    );
    Router::new()
        .route(&oauth, get(idp_metadata_route::<K, P, R>))
        .route(&jwks, get(idp_jwks::<K, P, R>))
        .route(&token, axum::routing::post(idp_token::<K, P, R>))
}

async fn idp_metadata_route<K, P, R>(State(state): State<Arc<IdpState<K, P, R>>>) -> Response
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    if !state.signs_id_tokens() {
        return public_json(&state.metadata, 300);
    }
    let mut metadata = state.metadata.clone();
    if let Some(m) = metadata.as_object_mut() {
        m.insert(
            "id_token_signing_alg_values_supported".into(),
            signing_algorithms(&state.keys),
        );
    }
    public_json(&metadata, 300)
}

async fn idp_jwks<K, P, R>(State(state): State<Arc<IdpState<K, P, R>>>) -> Response
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    public_json(&state.keys.jwks().to_public_json(), 300)
}

#[cfg(feature = "sso")]
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(feature = "sso")]
fn login_form(req: &ema_grant::AuthorizeRequest, message: Option<&str>) -> String {
    let mut hidden = String::new();
    for (name, value) in req.to_params() {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape_html(&value)
        );
    }
    let message = message
        .map(|m| format!("<p role=\"alert\">{}</p>", escape_html(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title></head><body>\
         <h1>Sign in</h1>{message}<form method=\"post\">{hidden}\
         <label>Username <input name=\"username\" autocomplete=\"username\"></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
         <button type=\"submit\">Sign in</button></form></body></html>"
    )
}

#[cfg(feature = "sso")]
fn page(status: StatusCode, body: String) -> Response {
    let mut resp = (status, Html(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

#[cfg(feature = "sso")]
fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut().insert(header::LOCATION, v);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(_) => page(StatusCode::BAD_REQUEST, "<p>invalid redirect</p>".into()),
    }
}

#[cfg(feature = "sso")]
fn authorize_error(e: &AuthorizeError) -> Response {
    match e.redirect_url() {
        Some(url) => redirect(&url),
        None => page(
            StatusCode::BAD_REQUEST,
            "<!doctype html><p>Unknown client or redirect URI.</p>".into(),
        ),
    }
}

#[cfg(feature = "sso")]
async fn authorize_page<K, P, R>(
    State(state): State<Arc<IdpState<K, P, R>>>,
    RawQuery(query): RawQuery,
) -> Response
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    let Ok(params) = Form::parse(query.unwrap_or_default().as_bytes(), 8 * 1024) else {
        return page(StatusCode::BAD_REQUEST, "<p>Malformed request.</p>".into());
    };
    let Some(sso) = &state.sso else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match sso.authorize_request(&params) {
        Ok(req) => page(StatusCode::OK, login_form(&req, None)),
        Err(e) => authorize_error(&e),
    }
}

#[cfg(feature = "sso")]
async fn authorize_submit<K, P, R>(
    State(state): State<Arc<IdpState<K, P, R>>>,
    body: axum::body::Bytes,
) -> Response
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    let Ok(form) = Form::parse(&body, 16 * 1024) else {
        return page(StatusCode::BAD_REQUEST, "<p>Malformed request.</p>".into());
    };
    let Some(sso) = &state.sso else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let req = match sso.authorize_request(&form) {
        Ok(req) => req,
        Err(e) => return authorize_error(&e),
    };
    let (user, password) = (
        form.get("username").unwrap_or_default().to_owned(),
        form.get("password").unwrap_or_default().to_owned(),
    );
    let now = state.clock.now();
    // The permit travels with the check, so a request that times out while its check runs
    // does not let another one start early.
    let Ok(permit) = state.password_checks.clone().acquire_owned().await else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "<p>Try again later.</p>".into(),
        );
    };
    let login = {
        let (state, req) = (state.clone(), req.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let sso = state.sso.as_ref()?;
            Some(sso.login(&req, &user, &password, now))
        })
    };
    let Ok(Some(outcome)) = login.await else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "<p>Try again later.</p>".into(),
        );
    };
    match outcome {
        Ok(url) => {
            tracing::info!(client_id = %req.client_id, "sign-in succeeded");
            redirect(&url)
        }
        Err(AuthorizeError::BadCredentials) => {
            tracing::info!(client_id = %req.client_id, "sign-in refused");
            page(
                StatusCode::UNAUTHORIZED,
                login_form(&req, Some("Wrong username or password.")),
            )
        }
        Err(AuthorizeError::Busy) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "<p>Try again later.</p>".into(),
        ),
        Err(e) => authorize_error(&e),
    }
}

async fn idp_token<K, P, R>(
    State(state): State<Arc<IdpState<K, P, R>>>,
    request: http::Request<Body>,
) -> Response
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    let request = match read_request(request).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let now = state.clock.now();
    let form = TokenRequest::from_http(&request)
        .map_err(|e| ema_grant::request_error(&e))
        .and_then(|req| {
            req.check_shape()?;
            parse_exchange_form(req.body, ema_grant::form::DEFAULT_MAX_BODY)
        });
    // A SAML subject assertion is validated on the blocking pool, a bounded number at a time;
    // everything else (ID-token exchanges included) is answered right here.
    let saml = state.exchange.accepts_saml_assertions()
        && form.as_ref().is_ok_and(|f| {
            f.get("grant_type") == Some(TOKEN_EXCHANGE)
                && f.get("subject_token_type") == Some(SAML2_TOKEN_TYPE)
        });
    let (grant, response) = if saml {
        saml_token_response(state.clone(), request, form, now).await
    } else {
        token_response(&state, &request, form, now).await
    };
    let response = crate::trail::id_jag_issued(&state.audit, response);
    log_outcome(LogTarget::Idp, grant, &response);
    into_axum(response)
}

/// Runs [`token_response`] for a SAML token exchange on the blocking pool, holding one of the
/// `saml_checks` permits (the permit travels with the work, as for password checks).
async fn saml_token_response<K, P, R>(
    state: Arc<IdpState<K, P, R>>,
    request: http::Request<Bytes>,
    form: Result<Form, OAuthError>,
    now: ema_jose::UnixTime,
) -> (&'static str, http::Response<Vec<u8>>)
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    let busy = || {
        (
            "token_exchange",
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the token endpoint is busy; try again later",
            )
            .to_response(),
        )
    };
    let Ok(permit) = state.saml_checks.clone().acquire_owned().await else {
        return busy();
    };
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        // The exchange's own awaits (replay store, policy) are driven from this thread.
        runtime.block_on(token_response(&state, &request, form, now))
    });
    task.await.unwrap_or_else(|_| busy())
}

/// The token endpoint's answer to an already read request whose form was parsed.
async fn token_response<K, P, R>(
    state: &IdpState<K, P, R>,
    request: &http::Request<Bytes>,
    form: Result<Form, OAuthError>,
    now: ema_jose::UnixTime,
) -> (&'static str, http::Response<Vec<u8>>)
where
    K: KeySource + 'static,
    P: AdminPolicy + 'static,
    R: ReplayStore + 'static,
{
    // The grant for the log, and the scopes asked for (TX-9 may narrow them).
    let grant = match form.as_ref().ok().and_then(|f| f.get("grant_type")) {
        Some(TOKEN_EXCHANGE) => "token_exchange",
        #[cfg(feature = "sso")]
        Some(AUTHORIZATION_CODE) if state.signs_id_tokens() => "authorization_code",
        Some(_) => "unsupported",
        None => "unknown",
    };
    let requested = form
        .as_ref()
        .ok()
        .and_then(|f| f.get("scope"))
        .and_then(|s| ScopeSet::parse(s).ok());
    let mut granted = None;
    let result = async {
        let form = form?;
        let req = TokenRequest::from_http(request).map_err(|e| ema_grant::request_error(&e))?;
        match form.get("grant_type") {
            Some(TOKEN_EXCHANGE) => {
                let ok = state.exchange.exchange_form(&req, &form, now).await?;
                // TX-9: the response names the scopes only when they differ from the request.
                granted = ok.scope.clone().or_else(|| requested.clone());
                Ok(ok.to_response())
            }
            #[cfg(feature = "sso")]
            Some(AUTHORIZATION_CODE) => match &state.sso {
                Some(sso) => {
                    let ok = sso
                        .token_form(&req, &form, state.exchange.replay(), now)
                        .await?;
                    // An authorization server's sign-in passes the admin policy, as its
                    // token exchanges do.
                    sso.admit(state.exchange.policy(), &ok).await?;
                    Ok(ok.to_response())
                }
                None => Err(state.unsupported_grant_type()),
            },
            Some(_) => Err(state.unsupported_grant_type()),
            None => Err(OAuthError::invalid_request("grant_type is missing")),
        }
    }
    .await;
    let mut response = result.unwrap_or_else(|e| e.to_response());
    // The scopes asked for and granted, for the log (never sent).
    response
        .extensions_mut()
        .insert(ScopeLog::new(requested, granted));
    (grant, response)
}
