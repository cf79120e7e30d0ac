//! The client flow: token exchange at the IdP (hop 2), jwt-bearer at the MCP authorization
//! server (hop 3), the access-token cache, and recovery from `401`/`403` (CL-4..CL-10, CL-13).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ema_id_jag::ScopeSet;
use ema_jose::{
    AudienceRule, Clock, ParseOptions, SystemClock, UnixTime, UnverifiedJwt, typ, typ_matches,
};
use ema_jwks::{FetchError, FetchPolicy, HttpFetcher, Secret};
use ema_metadata::{
    Challenge, ErrorCode, ID_JAG_TOKEN_TYPE, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT, find_challenge,
};
use serde_json::{Map, Value};
use url::Url;

use crate::code_flow::CodeFlowOptions;
use crate::credentials::{ClientCredentials, Form};
use crate::discovery::{self, DiscoveredServer};
use crate::error::{
    CodeFlowError, DiscoveryError, EmaError, IdJagCheckError, JwtBearerError, McpAuthError,
    OAuthErrorResponse, TokenExchangeError,
};
use crate::scope_report::ScopeReport;

// The URNs under their ema-client names, defined once in `ema_metadata::urn`. The legacy type is
// accepted as `issued_token_type` only (D-10).
pub use ema_metadata::urn::{ID_TOKEN as ID_TOKEN_TYPE, LEGACY_ID_JAG as LEGACY_ID_JAG_TOKEN_TYPE};

/// The enterprise IdP as the client knows it (CL-14: configured by the organization, not
/// discovered from the MCP server).
///
/// ```
/// use ema_client::{ClientCredentials, IdpConfig};
///
/// let idp = IdpConfig::new(
///     "https://idp.acme.example",
///     "https://idp.acme.example/oauth2/token",
///     ClientCredentials::secret_basic("desk-idp-01", "idp-secret"),
/// );
/// assert_eq!(idp.issuer(), "https://idp.acme.example");
/// ```
#[derive(Debug, Clone)]
pub struct IdpConfig {
    issuer: String,
    token_endpoint: String,
    credentials: ClientCredentials,
}

impl IdpConfig {
    /// The IdP's issuer (expected as the ID-JAG `iss`), its token endpoint, and the client's
    /// IdP-side credentials (CL-4).
    pub fn new(
        issuer: impl Into<String>,
        token_endpoint: impl Into<String>,
        credentials: ClientCredentials,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            token_endpoint: token_endpoint.into(),
            credentials,
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// The IdP-side credentials.
    pub fn credentials(&self) -> &ClientCredentials {
        &self.credentials
    }
}

/// An ID-JAG fresh from the IdP, checked against the request. It is consumed by
/// [`EmaClient::redeem`], so a used ID-JAG cannot be presented twice (CL-9, D-6).
#[derive(Debug)]
pub struct IdJag {
    token: Secret,
    expires_at: UnixTime,
    scope: Option<ScopeSet>,
    /// The scopes asked for at the token exchange, and the response's `scope` (TX-9).
    requested: ScopeSet,
    response_scope: Option<ScopeSet>,
}

impl IdJag {
    /// When it expires.
    pub fn expires_at(&self) -> UnixTime {
        self.expires_at
    }

    /// The scopes it carries, if any.
    pub fn scope(&self) -> Option<&ScopeSet> {
        self.scope.as_ref()
    }

    /// The scopes asked for and the scopes the IdP granted (the `scope` claim, read unverified
    /// for diagnostics, else the token-exchange response's `scope`, TX-9).
    pub fn scope_report(&self) -> ScopeReport {
        ScopeReport::new(self.requested.clone())
            .with_granted_by_idp(self.scope.clone().or_else(|| self.response_scope.clone()))
    }
}

/// An access token for one MCP server. `Debug` never shows the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: Secret,
    issued_at: UnixTime,
    expires_at: UnixTime,
    scope: ScopeSet,
    resource: String,
    scopes: ScopeReport,
}

impl AccessToken {
    /// The token. Send it only to the MCP server it is for, in the `Authorization` header
    /// (CL-7).
    pub fn secret(&self) -> &Secret {
        &self.token
    }

    /// `Bearer <token>`, the `Authorization` header value.
    pub fn authorization(&self) -> Secret {
        Secret::new(format!("Bearer {}", self.token.expose()))
    }

    /// When it expires (from `expires_in`, or the client's default lifetime).
    pub fn expires_at(&self) -> UnixTime {
        self.expires_at
    }

    /// The granted scopes (the requested ones when the server did not say).
    pub fn scope(&self) -> &ScopeSet {
        &self.scope
    }

    /// The resource it is for.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Its scopes hop by hop: asked for, granted by the IdP in the ID-JAG, granted by the
    /// authorization server (for diagnostics, e.g. after a refused step-up).
    pub fn scope_report(&self) -> &ScopeReport {
        &self.scopes
    }

    /// A token from its parts (the authorization code flow).
    pub(crate) fn from_parts(
        token: Secret,
        now: UnixTime,
        lifetime: u64,
        scope: ScopeSet,
        resource: String,
        scopes: ScopeReport,
    ) -> Self {
        Self {
            token,
            issued_at: now,
            expires_at: now.plus(lifetime),
            scope,
            resource,
            scopes,
        }
    }

    /// Whether it is still worth sending at `now`: not within `margin` of expiry (at most half
    /// its lifetime, so short-lived tokens are still used).
    fn usable_at(&self, now: UnixTime, margin: u64) -> bool {
        let lifetime = self
            .expires_at
            .as_secs()
            .saturating_sub(self.issued_at.as_secs());
        now.plus(margin.min(lifetime / 2)) < self.expires_at
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    issuer: String,
    resource: String,
    scope: String,
    /// The user: the ID token's `iss` and `sub`, so tokens never cross users.
    principal: String,
}

fn principal(id_token: &Secret) -> String {
    UnverifiedJwt::parse(id_token.expose(), &ParseOptions::new())
        .ok()
        .and_then(|jwt| {
            let claims = jwt.unverified_claims();
            let iss = claims.string("iss").ok().flatten()?;
            let sub = claims.string("sub").ok().flatten()?;
            Some(format!("{iss}\u{0}{sub}"))
        })
        .unwrap_or_else(|| format!("opaque\u{0}{}", id_token.expose()))
}

struct Inner {
    fetcher: HttpFetcher,
    clock: Arc<dyn Clock>,
    idp: IdpConfig,
    servers: HashMap<String, ClientCredentials>,
    refresh_margin: u64,
    default_lifetime: u64,
    assertion_lifetime: u64,
    assume_profile: bool,
    code_flow: Option<CodeFlowOptions>,
    tokens: Mutex<HashMap<CacheKey, AccessToken>>,
    flights: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds an [`EmaClient`].
pub struct EmaClientBuilder {
    idp: IdpConfig,
    servers: HashMap<String, ClientCredentials>,
    policy: FetchPolicy,
    fetcher: Option<HttpFetcher>,
    clock: Option<Arc<dyn Clock>>,
    refresh_margin: Duration,
    default_lifetime: Duration,
    assertion_lifetime: Duration,
    assume_profile: bool,
    code_flow: Option<CodeFlowOptions>,
}

impl std::fmt::Debug for EmaClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmaClientBuilder")
            .field("idp", &self.idp)
            .field("servers", &self.servers)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl EmaClientBuilder {
    /// Registers the client's credentials at the authorization server `issuer` (CL-13: kept
    /// per issuer, never used at another).
    #[must_use]
    pub fn authorization_server(
        mut self,
        issuer: impl Into<String>,
        credentials: ClientCredentials,
    ) -> Self {
        self.servers.insert(issuer.into(), credentials);
        self
    }

    /// The fetch policy (default: [`FetchPolicy::new`], https and public addresses only).
    #[must_use]
    pub fn fetch_policy(mut self, policy: FetchPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Uses an existing fetcher (its policy wins over [`EmaClientBuilder::fetch_policy`]).
    #[must_use]
    pub fn fetcher(mut self, fetcher: HttpFetcher) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    /// The clock for every expiry decision (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How long before expiry a cached access token is replaced (default 60 s, at most half
    /// the token's lifetime).
    #[must_use]
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The lifetime assumed when a token response has no `expires_in` (default 300 s).
    #[must_use]
    pub fn default_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// Uses EMA with authorization servers that do not advertise the ID-JAG profile, as an
    /// administrator may force (CL-3). Off by default.
    #[must_use]
    pub fn assume_profile_supported(mut self, assume: bool) -> Self {
        self.assume_profile = assume;
        self
    }

    /// Enables the authorization code flow ([`EmaClient::authorize`]) for MCP servers whose
    /// authorization server does not offer the ID-JAG profile, or when asked
    /// ([`EmaClient::code_flow_session`]). Off by default: without it the client never
    /// redirects the user (CL-8).
    #[must_use]
    pub fn code_flow(mut self, options: CodeFlowOptions) -> Self {
        self.code_flow = Some(options);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<EmaClient, FetchError> {
        let fetcher = match self.fetcher {
            Some(f) => f,
            None => HttpFetcher::new(self.policy)?,
        };
        Ok(EmaClient {
            inner: Arc::new(Inner {
                fetcher,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                idp: self.idp,
                servers: self.servers,
                refresh_margin: self.refresh_margin.as_secs(),
                default_lifetime: self.default_lifetime.as_secs(),
                assertion_lifetime: self.assertion_lifetime.as_secs(),
                assume_profile: self.assume_profile,
                code_flow: self.code_flow,
                tokens: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// The MCP client side of Enterprise-Managed Authorization: from an employee's ID token to an
/// access token for an MCP server.
///
/// Cheap to clone; clones share the access-token cache. The ID token and the ID-JAG go only to
/// the IdP and the authorization server; only the access token ever goes to the MCP server
/// (CL-7). No method falls back to interactive authorization: a denial surfaces as an error
/// (CL-8).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use ema_client::{ClientCredentials, EmaClient, IdpConfig, Secret};
/// use url::Url;
///
/// let client = EmaClient::builder(IdpConfig::new(
///     "https://idp.acme.example",
///     "https://idp.acme.example/oauth2/token",
///     ClientCredentials::secret_basic("desk-idp-01", "idp-secret"),
/// ))
/// .authorization_server(
///     "https://auth.tasks.example",
///     ClientCredentials::secret_basic("tc_5f2a91", "s3cr3t"),
/// )
/// .build()?;
/// let server = Url::parse("https://mcp.tasks.example/mcp")?;
/// let session = client.session(&server, Secret::new("eyJ...id-token")).await?;
/// let token = session.access_token().await?;
/// # let _ = token; Ok(()) }
/// ```
#[derive(Clone)]
pub struct EmaClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmaClient")
            .field("idp", &self.inner.idp)
            .field("servers", &self.inner.servers)
            .field("fetch_policy", self.inner.fetcher.policy())
            .finish_non_exhaustive()
    }
}

impl EmaClient {
    /// Starts a builder for the IdP `idp`.
    pub fn builder(idp: IdpConfig) -> EmaClientBuilder {
        EmaClientBuilder {
            idp,
            servers: HashMap::new(),
            policy: FetchPolicy::new(),
            fetcher: None,
            clock: None,
            refresh_margin: Duration::from_secs(60),
            default_lifetime: Duration::from_secs(300),
            assertion_lifetime: Duration::from_secs(60),
            assume_profile: false,
            code_flow: None,
        }
    }

    /// The IdP this client exchanges ID tokens at (and signs users in at,
    /// [`EmaClient::sign_in`]).
    pub fn idp(&self) -> &IdpConfig {
        &self.inner.idp
    }

    pub(crate) fn code_flow_options(&self) -> Option<&CodeFlowOptions> {
        self.inner.code_flow.as_ref()
    }

    pub(crate) fn now(&self) -> UnixTime {
        self.inner.clock.now()
    }

    pub(crate) fn default_lifetime(&self) -> u64 {
        self.inner.default_lifetime
    }

    /// The fetcher every request goes through.
    pub fn fetcher(&self) -> &HttpFetcher {
        &self.inner.fetcher
    }

    /// Hop 0: discovers the MCP server's resource and authorization server (CL-1, CL-2, CL-3).
    /// An authorization server the client has credentials for is preferred when the PRM lists
    /// several.
    pub async fn discover(&self, server_url: &Url) -> Result<DiscoveredServer, DiscoveryError> {
        discovery::discover(
            &self.inner.fetcher,
            server_url,
            |issuer| self.inner.servers.contains_key(issuer),
            self.inner.assume_profile,
        )
        .await
    }

    /// Hop 0 without the CL-3 profile check: the server and its authorization server whether
    /// or not it offers the ID-JAG profile ([`DiscoveredServer::supports_id_jag`] says).
    pub async fn discover_any(&self, server_url: &Url) -> Result<DiscoveredServer, DiscoveryError> {
        discovery::discover(
            &self.inner.fetcher,
            server_url,
            |issuer| {
                self.inner.servers.contains_key(issuer)
                    || self
                        .inner
                        .code_flow
                        .as_ref()
                        .is_some_and(|c| c.is_registered_at(issuer))
            },
            true,
        )
        .await
    }

    /// Discovers `server_url` and opens a session for it, EMA or not: with an ID token, EMA
    /// where the authorization server offers the ID-JAG profile (or
    /// [`EmaClientBuilder::assume_profile_supported`] forces it, CL-3); otherwise, when the
    /// client has [`CodeFlowOptions`], a session on the authorization code flow. Without
    /// code-flow options this is [`EmaClient::session`] (an ID token is then required).
    ///
    /// ```no_run
    /// # async fn demo(client: ema_client::EmaClient, id_token: Option<ema_client::Secret>)
    /// # -> Result<(), ema_client::EmaError> {
    /// let server = url::Url::parse("https://mcp.tasks.example/mcp").unwrap();
    /// let session = client.connect(&server, id_token).await?;
    /// let token = session.access_token().await?; // EMA, or the browser sign-in
    /// # let _ = token; Ok(()) }
    /// ```
    pub async fn connect(
        &self,
        server_url: &Url,
        id_token: Option<Secret>,
    ) -> Result<EmaSession, EmaError> {
        if self.inner.code_flow.is_none() {
            let id_token = id_token.ok_or(CodeFlowError::NotConfigured)?;
            return self.session(server_url, id_token).await;
        }
        let server = self.discover_any(server_url).await?;
        match id_token {
            Some(id_token) if self.inner.assume_profile || server.supports_id_jag() => {
                Ok(self.session_for(server, id_token))
            }
            _ => Ok(self.code_flow_session_for(server)),
        }
    }

    /// Discovers `server_url` and opens a session on the authorization code flow, whatever
    /// the authorization server offers ("when asked"). Needs [`EmaClientBuilder::code_flow`].
    /// No token is acquired yet; the first [`EmaSession::access_token`] runs the flow.
    pub async fn code_flow_session(&self, server_url: &Url) -> Result<EmaSession, EmaError> {
        if self.inner.code_flow.is_none() {
            return Err(CodeFlowError::NotConfigured.into());
        }
        let server = self.discover_any(server_url).await?;
        Ok(self.code_flow_session_for(server))
    }

    /// A code-flow session for an already discovered server.
    pub fn code_flow_session_for(&self, server: DiscoveredServer) -> EmaSession {
        let scope = server.initial_scope();
        EmaSession {
            client: self.clone(),
            server: Arc::new(server),
            id_token: Secret::new(""),
            code_flow: Some(CodeFlowState::default()),
            scope: Mutex::new(scope),
            last_failure: Mutex::new(None),
        }
    }

    /// Discovers `server_url` and opens a session for the user of `id_token`. No token is
    /// acquired yet.
    pub async fn session(
        &self,
        server_url: &Url,
        id_token: Secret,
    ) -> Result<EmaSession, EmaError> {
        let server = self.discover(server_url).await?;
        Ok(self.session_for(server, id_token))
    }

    /// A session for an already discovered server.
    pub fn session_for(&self, server: DiscoveredServer, id_token: Secret) -> EmaSession {
        let scope = server.initial_scope();
        EmaSession {
            client: self.clone(),
            server: Arc::new(server),
            id_token,
            code_flow: None,
            scope: Mutex::new(scope),
            last_failure: Mutex::new(None),
        }
    }

    fn key(&self, server: &DiscoveredServer, id_token: &Secret, scope: &ScopeSet) -> CacheKey {
        CacheKey {
            issuer: server.issuer().to_owned(),
            resource: server.resource_id().to_owned(),
            scope: scope.to_string(),
            principal: principal(id_token),
        }
    }

    /// An access token for (authorization server, resource, scopes) from the cache, or a new
    /// one when there is none or it is within the refresh margin of expiry. Concurrent callers
    /// for the same key share one acquisition.
    pub async fn access_token(
        &self,
        server: &DiscoveredServer,
        id_token: &Secret,
        scope: &ScopeSet,
    ) -> Result<AccessToken, EmaError> {
        let key = self.key(server, id_token, scope);
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        let flight = lock(&self.inner.flights)
            .entry(key.clone())
            .or_default()
            .clone();
        let _guard = flight.lock().await;
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        let token = self.acquire(server, id_token, scope).await?;
        let now = self.inner.clock.now();
        let mut tokens = lock(&self.inner.tokens);
        // Expired entries go; the map stays as large as the live tokens.
        tokens.retain(|_, t| t.expires_at > now);
        tokens.insert(key.clone(), token.clone());
        drop(tokens);
        let mut flights = lock(&self.inner.flights);
        if flights.get(&key).is_some_and(|f| Arc::strong_count(f) <= 2) {
            flights.remove(&key);
        }
        Ok(token)
    }

    fn cached(&self, key: &CacheKey) -> Option<AccessToken> {
        let now = self.inner.clock.now();
        lock(&self.inner.tokens)
            .get(key)
            .filter(|t| t.usable_at(now, self.inner.refresh_margin))
            .cloned()
    }

    /// Drops `rejected` from the cache (when it is still the cached token).
    fn forget(&self, key: &CacheKey, rejected: &AccessToken) {
        let mut tokens = lock(&self.inner.tokens);
        if tokens.get(key) == Some(rejected) {
            tokens.remove(key);
        }
    }

    /// A new access token, bypassing the cache: a fresh ID-JAG from the IdP (hop 2), redeemed
    /// once at the authorization server (hop 3).
    pub async fn acquire(
        &self,
        server: &DiscoveredServer,
        id_token: &Secret,
        scope: &ScopeSet,
    ) -> Result<AccessToken, EmaError> {
        let id_jag = self.exchange(server, id_token, scope).await?;
        // TX-9: the IdP may narrow the request. The authorization server is asked for what the
        // ID-JAG carries of it (D-5: asking for more is refused, asking for fewer never is), so
        // the user gets the access the IdP granted; a scope the MCP server then still needs
        // surfaces as its `insufficient_scope`, and the token's `ScopeReport` says the IdP
        // narrowed it.
        let mut granted = scope.clone();
        if let Some(carried) = id_jag.scope() {
            granted.retain(|s| carried.contains(s));
        }
        Ok(self.redeem(server, id_jag, &granted).await?)
    }

    fn server_credentials(&self, issuer: &str) -> Result<&ClientCredentials, JwtBearerError> {
        // CL-13: credentials are looked up by the validated issuer, never borrowed from
        // another authorization server.
        self.inner
            .servers
            .get(issuer)
            .ok_or_else(|| JwtBearerError::NoCredentials {
                issuer: issuer.to_owned(),
            })
    }

    /// Hop 2: the token exchange at the IdP (CL-4), the response checks (CL-5, D-10) and the
    /// local sanity checks of the ID-JAG (typ, iss, aud, client_id, resource, exp). The
    /// signature is the authorization server's to verify.
    pub async fn exchange(
        &self,
        server: &DiscoveredServer,
        id_token: &Secret,
        scope: &ScopeSet,
    ) -> Result<IdJag, EmaError> {
        let as_client = self
            .server_credentials(server.issuer())?
            .client_id()
            .to_owned();
        Ok(self
            .exchange_inner(server, id_token, scope, &as_client)
            .await?)
    }

    async fn exchange_inner(
        &self,
        server: &DiscoveredServer,
        id_token: &Secret,
        scope: &ScopeSet,
        as_client_id: &str,
    ) -> Result<IdJag, TokenExchangeError> {
        let idp = &self.inner.idp;
        let endpoint = self
            .inner
            .fetcher
            .check_url("token_endpoint", &idp.token_endpoint)?;
        let now = self.inner.clock.now();
        let mut form = Form::default();
        form.push("grant_type", TOKEN_EXCHANGE_GRANT);
        // D-10: always request the current type.
        form.push("requested_token_type", ID_JAG_TOKEN_TYPE);
        // CL-4: `audience` is the authorization server's issuer verbatim from its validated
        // metadata; `resource` the PRM `resource` (D-15: always sent).
        form.push("audience", server.issuer());
        form.push("resource", server.resource_id());
        if !scope.is_empty() {
            form.push("scope", scope.to_string());
        }
        // CL-4: the ID token with the id_token type; it goes to the IdP only (CL-7).
        form.push_secret("subject_token", id_token.clone());
        form.push("subject_token_type", ID_TOKEN_TYPE);
        // CL-4: IdP-side client credentials.
        let audience = if idp.issuer.is_empty() {
            idp.token_endpoint.as_str()
        } else {
            idp.issuer.as_str()
        };
        let authorization = idp
            .credentials
            .authenticate(audience, now, self.inner.assertion_lifetime, &mut form)
            .map_err(TokenExchangeError::Sign)?;
        // D-1, D-2: `invalid_grant`, `access_denied`, `invalid_target`, ... surface as they
        // are; nothing falls back to interactive authorization (CL-8).
        let malformed = |reason| TokenExchangeError::MalformedResponse { reason };
        let body = match self
            .post_token_request(&endpoint, &form, authorization)
            .await
        {
            Ok(body) => body,
            Err(TokenPost::Fetch(e)) => return Err(e.into()),
            Err(TokenPost::Rejected(e)) => return Err(TokenExchangeError::Rejected(e)),
            Err(TokenPost::NotJson) => return Err(malformed("body is not a JSON object")),
        };
        let issued = string(&body, "issued_token_type")
            .ok_or_else(|| malformed("`issued_token_type` is missing"))?;
        // CL-5 with D-10: the ID-JAG type, or its pre-draft alias.
        if issued != ID_JAG_TOKEN_TYPE && issued != LEGACY_ID_JAG_TOKEN_TYPE {
            return Err(TokenExchangeError::WrongIssuedTokenType {
                found: issued.chars().take(256).collect(),
            });
        }
        let token = string(&body, "access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| malformed("`access_token` is missing"))?;
        let mut id_jag = self.check_id_jag(token, server, as_client_id, now)?;
        // For the diagnostics of a narrowed request (TX-9): what was asked, what was granted.
        id_jag.requested = scope.clone();
        id_jag.response_scope = string(&body, "scope").and_then(|s| ScopeSet::parse(s).ok());
        Ok(id_jag)
    }

    /// The local sanity checks of an ID-JAG before it is used (decoded, not verified).
    fn check_id_jag(
        &self,
        token: &str,
        server: &DiscoveredServer,
        as_client_id: &str,
        now: UnixTime,
    ) -> Result<IdJag, IdJagCheckError> {
        let jwt = UnverifiedJwt::parse(token, &ParseOptions::new())
            .map_err(|_| IdJagCheckError::Malformed)?;
        // JAG-1, D-8: `typ` is `oauth-id-jag+jwt`.
        let found = jwt.header().typ();
        if !found.is_some_and(|t| typ_matches(t, typ::ID_JAG)) {
            return Err(IdJagCheckError::WrongType {
                found: found.map(|t| t.chars().take(64).collect()),
            });
        }
        let claims = jwt.unverified_claims();
        let claim = |claim| IdJagCheckError::Claim { claim };
        let iss = claims.required_string("iss").map_err(|_| claim("iss"))?;
        let idp = self.inner.idp.issuer();
        if !idp.is_empty() && iss != idp {
            return Err(IdJagCheckError::Issuer {
                found: iss.to_owned(),
                expected: idp.to_owned(),
            });
        }
        // JAG-3, D-12, D-13: `aud` is the authorization server's issuer, alone.
        let audience =
            claims
                .audience(AudienceRule::Single)
                .map_err(|_| IdJagCheckError::Audience {
                    expected: server.issuer().to_owned(),
                })?;
        if audience != [server.issuer()] {
            return Err(IdJagCheckError::Audience {
                expected: server.issuer().to_owned(),
            });
        }
        // JAG-4: `client_id` is our id at the authorization server.
        let client_id = claims
            .required_string("client_id")
            .map_err(|_| claim("client_id"))?;
        if client_id != as_client_id {
            return Err(IdJagCheckError::ClientId {
                found: client_id.to_owned(),
                expected: as_client_id.to_owned(),
            });
        }
        // JAG-6: `resource`, when present, names the MCP server.
        let wrong_resource = || IdJagCheckError::Resource {
            expected: server.resource_id().to_owned(),
        };
        match claims.get("resource") {
            None => {}
            Some(Value::String(r)) if r == server.resource_id() => {}
            Some(Value::Array(items))
                if items
                    .iter()
                    .any(|v| v.as_str() == Some(server.resource_id())) => {}
            Some(_) => return Err(wrong_resource()),
        }
        let exp = claims
            .numeric_date("exp")
            .ok()
            .flatten()
            .ok_or_else(|| claim("exp"))?;
        if exp <= now {
            return Err(IdJagCheckError::Expired { exp, now });
        }
        let scope = match claims.get("scope") {
            None => None,
            Some(Value::String(s)) => Some(ScopeSet::parse(s).map_err(|_| claim("scope"))?),
            Some(_) => return Err(claim("scope")),
        };
        Ok(IdJag {
            token: Secret::new(token),
            expires_at: exp,
            scope,
            requested: ScopeSet::new(),
            response_scope: None,
        })
    }

    /// Hop 3: presents the ID-JAG once with the jwt-bearer grant (CL-6), authenticating with
    /// this authorization server's own credentials (CL-13).
    pub async fn redeem(
        &self,
        server: &DiscoveredServer,
        id_jag: IdJag,
        scope: &ScopeSet,
    ) -> Result<AccessToken, JwtBearerError> {
        let metadata = &server.authorization_server;
        let issuer = metadata.issuer.as_str();
        let credentials = self.server_credentials(issuer)?;
        let method = credentials.auth().method();
        if let Some(methods) = &metadata.token_endpoint_auth_methods_supported
            && !methods.iter().any(|m| m == method)
        {
            return Err(JwtBearerError::AuthMethodNotSupported {
                issuer: issuer.to_owned(),
                method,
            });
        }
        let endpoint = self.inner.fetcher.check_url(
            "token_endpoint",
            metadata.token_endpoint.as_deref().unwrap_or_default(),
        )?;
        let now = self.inner.clock.now();
        // What was asked of the IdP and what it granted, kept for the diagnostics before the
        // ID-JAG is moved away.
        let scopes = id_jag.scope_report();
        let mut form = Form::default();
        form.push("grant_type", JWT_BEARER_GRANT);
        // CL-9, D-6: the ID-JAG is moved in here and dropped after this one request.
        form.push_secret("assertion", id_jag.token);
        // CL-6: `resource` is the PRM resource.
        form.push("resource", server.resource_id());
        if !scope.is_empty() {
            form.push("scope", scope.to_string());
        }
        // Assertion `aud` is the authorization server's issuer identifier (D-12).
        let authorization = credentials
            .authenticate(issuer, now, self.inner.assertion_lifetime, &mut form)
            .map_err(JwtBearerError::Sign)?;
        let malformed = |reason| JwtBearerError::MalformedResponse { reason };
        let body = match self
            .post_token_request(&endpoint, &form, authorization)
            .await
        {
            Ok(body) => body,
            Err(TokenPost::Fetch(e)) => return Err(e.into()),
            // D-5: the report says whether the IdP narrowed the request (TX-9) or the
            // authorization server refused scopes the ID-JAG carries.
            Err(TokenPost::Rejected(e)) if e.is(&ErrorCode::InvalidScope) => {
                return Err(JwtBearerError::ScopeRefused {
                    response: Box::new(e),
                    scopes: Box::new(scopes),
                });
            }
            Err(TokenPost::Rejected(e)) => return Err(JwtBearerError::Rejected(e)),
            Err(TokenPost::NotJson) => return Err(malformed("body is not a JSON object")),
        };
        let token = string(&body, "access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| malformed("`access_token` is missing"))?;
        let token_type =
            string(&body, "token_type").ok_or_else(|| malformed("`token_type` is missing"))?;
        if !token_type.eq_ignore_ascii_case("Bearer") {
            return Err(JwtBearerError::UnsupportedTokenType {
                found: token_type.chars().take(64).collect(),
            });
        }
        if let Some(resource) = string(&body, "resource")
            && resource != server.resource_id()
        {
            return Err(JwtBearerError::ResourceMismatch {
                found: resource.chars().take(256).collect(),
            });
        }
        let lifetime = match body.get("expires_in") {
            None => self.inner.default_lifetime,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| malformed("`expires_in` is not a non-negative integer"))?,
        };
        let granted = match string(&body, "scope") {
            None => scope.clone(),
            Some(s) => ScopeSet::parse(s).map_err(|_| malformed("`scope` is malformed"))?,
        };
        Ok(AccessToken {
            token: Secret::new(token),
            issued_at: now,
            expires_at: now.plus(lifetime),
            scopes: scopes.with_granted_by_as(Some(granted.clone())),
            scope: granted,
            resource: server.resource_id().to_owned(),
        })
    }
}

/// How a POST to a token endpoint failed, before the hop interprets the body.
pub(crate) enum TokenPost {
    Fetch(FetchError),
    Rejected(OAuthErrorResponse),
    NotJson,
}

impl EmaClient {
    /// POSTs a token request and returns its JSON object body; a non-200 answer is the server's
    /// OAuth error (shared by hops 2 and 3).
    pub(crate) async fn post_token_request(
        &self,
        endpoint: &Url,
        form: &Form,
        authorization: Option<Secret>,
    ) -> Result<Map<String, Value>, TokenPost> {
        let response = self
            .inner
            .fetcher
            .post_form(endpoint, form.encode(), authorization.as_ref())
            .await
            .map_err(TokenPost::Fetch)?;
        if response.status != 200 {
            return Err(TokenPost::Rejected(OAuthErrorResponse::from_body(
                response.status,
                &response.body,
            )));
        }
        ema_jose::parse_json_object(&response.body, 8).map_err(|_| TokenPost::NotJson)
    }
}

fn string<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issued: u64, expires: u64) -> AccessToken {
        AccessToken {
            token: Secret::new("t"),
            issued_at: UnixTime::from_secs(issued),
            expires_at: UnixTime::from_secs(expires),
            scope: ScopeSet::new(),
            resource: "https://mcp.example/mcp".into(),
            scopes: ScopeReport::default(),
        }
    }

    #[test]
    fn refresh_margin_is_capped_at_half_the_lifetime() {
        // 3600 s token, 60 s margin: replaced 60 s before expiry.
        let long = token(1000, 4600);
        assert!(long.usable_at(UnixTime::from_secs(4539), 60));
        assert!(!long.usable_at(UnixTime::from_secs(4540), 60));
        // 60 s token, 60 s margin: the margin shrinks to 30 s, so the token is still used.
        let short = token(1000, 1060);
        assert!(short.usable_at(UnixTime::from_secs(1029), 60));
        assert!(!short.usable_at(UnixTime::from_secs(1030), 60));
        // Expired or zero-lifetime tokens are never used.
        assert!(!token(1000, 1000).usable_at(UnixTime::from_secs(1000), 60));
        assert!(!long.usable_at(UnixTime::from_secs(5000), 0));
    }

    #[test]
    fn cache_principal_is_the_id_token_subject() {
        let jwt = |sub: &str| {
            let key = ema_jose::SigningKey::generate(ema_jose::Algorithm::ES256, None).unwrap();
            Secret::new(
                key.sign_jwt(None, &serde_json::json!({"iss": "https://idp", "sub": sub}))
                    .unwrap(),
            )
        };
        // Two ID tokens of one user share cache entries; two users never do.
        assert_eq!(principal(&jwt("a")), principal(&jwt("a")));
        assert_ne!(principal(&jwt("a")), principal(&jwt("b")));
        assert_ne!(
            principal(&Secret::new("opaque-1")),
            principal(&Secret::new("opaque-2"))
        );
    }
}

/// What to do after the MCP server refused a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Retry the request once with this token.
    Retry(AccessToken),
    /// Give up: the refusal is not one EMA can fix; surface it.
    GiveUp,
}

/// One user's access to one MCP server: the discovered metadata, the ID token, the scopes asked
/// for so far, and the recovery rules of CL-9 and CL-10.
///
/// ```no_run
/// # async fn demo(session: ema_client::EmaSession) -> Result<(), ema_client::EmaError> {
/// use ema_client::Recovery;
///
/// let token = session.access_token().await?;
/// // ... the MCP server answered 401 with this challenge:
/// let challenge = r#"Bearer error="invalid_token", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource""#;
/// if let Recovery::Retry(fresh) = session.recover(&token, 401, Some(challenge)).await? {
///     // resend once with `fresh.authorization()`
///     # let _ = fresh;
/// }
/// # Ok(()) }
/// ```
pub struct EmaSession {
    client: EmaClient,
    server: Arc<DiscoveredServer>,
    id_token: Secret,
    /// Set for a session on the authorization code flow (no ID token).
    code_flow: Option<CodeFlowState>,
    scope: Mutex<ScopeSet>,
    last_failure: Mutex<Option<EmaError>>,
}

impl std::fmt::Debug for EmaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmaSession")
            .field("server", &self.server.server_url.as_str())
            .field("issuer", &self.server.issuer())
            .field("scope", &*lock(&self.scope))
            .finish_non_exhaustive()
    }
}

impl EmaSession {
    /// The discovered server.
    pub fn server(&self) -> &DiscoveredServer {
        &self.server
    }

    /// The scopes currently asked for.
    pub fn scope(&self) -> ScopeSet {
        lock(&self.scope).clone()
    }

    /// The client.
    pub fn client(&self) -> &EmaClient {
        &self.client
    }

    /// The last authorization failure of this session (of [`EmaSession::access_token`],
    /// [`EmaSession::recover`], [`EmaSession::recover_or_fail`], or a refusal that a transport
    /// such as `EmaHttpClient` gave up on): which hop refused, and why. For callers whose
    /// transport hands them only its own error.
    pub fn last_failure(&self) -> Option<EmaError> {
        lock(&self.last_failure).clone()
    }

    /// Records `failure` for [`EmaSession::last_failure`].
    pub(crate) fn record_failure(&self, failure: &EmaError) {
        *lock(&self.last_failure) = Some(failure.clone());
    }

    /// Whether this session gets its tokens with the authorization code flow (a browser
    /// sign-in) rather than EMA.
    pub fn is_code_flow(&self) -> bool {
        self.code_flow.is_some()
    }

    /// A usable access token: cached, or acquired when missing or near expiry (EMA: a fresh
    /// ID-JAG; code flow: the sign-in again, through the [`crate::OpenUrl`] hook).
    pub async fn access_token(&self) -> Result<AccessToken, EmaError> {
        let scope = self.scope();
        self.token_for(&scope)
            .await
            .inspect_err(|e| self.record_failure(e))
    }

    async fn token_for(&self, scope: &ScopeSet) -> Result<AccessToken, EmaError> {
        let Some(state) = &self.code_flow else {
            return self
                .client
                .access_token(&self.server, &self.id_token, scope)
                .await;
        };
        let usable = |cached: &Option<(ScopeSet, AccessToken)>| {
            let now = self.client.now();
            cached
                .as_ref()
                .filter(|(s, t)| s == scope && t.usable_at(now, self.client.inner.refresh_margin))
                .map(|(_, t)| t.clone())
        };
        if let Some(token) = usable(&lock(&state.cached)) {
            return Ok(token);
        }
        // One sign-in at a time per session.
        let _guard = state.flight.lock().await;
        if let Some(token) = usable(&lock(&state.cached)) {
            return Ok(token);
        }
        let token = self.client.authorize(&self.server, scope).await?;
        *lock(&state.cached) = Some((scope.clone(), token.clone()));
        Ok(token)
    }

    /// Drops `rejected` from the session's cache (when it is still there).
    fn forget(&self, scope: &ScopeSet, rejected: &AccessToken) {
        match &self.code_flow {
            Some(state) => {
                let mut cached = lock(&state.cached);
                if cached.as_ref().is_some_and(|(_, t)| t == rejected) {
                    *cached = None;
                }
            }
            None => {
                let key = self.client.key(&self.server, &self.id_token, scope);
                self.client.forget(&key, rejected);
            }
        }
    }

    /// The `Authorization` header value for the MCP server (CL-7: header only, never a URL).
    pub async fn authorization(&self) -> Result<Secret, EmaError> {
        Ok(self.access_token().await?.authorization())
    }

    /// Decides what to do after the MCP server answered `status` with `www_authenticate` to a
    /// request carrying `rejected`. Call it at most once per request.
    ///
    /// - `401` (`invalid_token`, or no error code): CL-9, the token is dropped and a new one
    ///   acquired with a fresh ID-JAG; a used ID-JAG is never resubmitted.
    /// - `403` `insufficient_scope` naming scopes not yet asked for: CL-10, a new token for the
    ///   union of the previous and the challenged scopes. When the IdP narrows that request
    ///   (TX-9) so that the new token still lacks a challenged scope, the error is
    ///   [`McpAuthError::InsufficientScope`] with the [`ScopeReport`] naming the IdP.
    /// - Anything else: [`Recovery::GiveUp`]. Never an interactive authorization (CL-8).
    pub async fn recover(
        &self,
        rejected: &AccessToken,
        status: u16,
        www_authenticate: Option<&str>,
    ) -> Result<Recovery, EmaError> {
        self.recover_inner(rejected, status, www_authenticate)
            .await
            .inspect_err(|e| self.record_failure(e))
    }

    async fn recover_inner(
        &self,
        rejected: &AccessToken,
        status: u16,
        www_authenticate: Option<&str>,
    ) -> Result<Recovery, EmaError> {
        let challenge = www_authenticate.and_then(|h| find_challenge(h, "Bearer").ok().flatten());
        let error = challenge.as_ref().and_then(Challenge::error_code);
        match (status, error) {
            (401, None | Some(ErrorCode::InvalidToken)) => {
                let scope = self.scope();
                self.forget(&scope, rejected);
                // Another request may already have replaced it; otherwise a fresh acquisition.
                let token = self.access_token().await?;
                if &token == rejected {
                    return Ok(Recovery::GiveUp);
                }
                Ok(Recovery::Retry(token))
            }
            (403, Some(ErrorCode::InsufficientScope)) => {
                let required = challenge
                    .as_ref()
                    .and_then(|c| c.get("scope"))
                    .and_then(|s| ScopeSet::parse(s).ok())
                    .unwrap_or_default();
                let union = {
                    let mut scope = lock(&self.scope);
                    let union = scope.union(&required);
                    if union == *scope {
                        // Nothing new to ask for: the IdP or AS granted less; surface it.
                        return Ok(Recovery::GiveUp);
                    }
                    *scope = union.clone();
                    union
                };
                // CL-10: a new token exchange for the union of previous and challenged scopes.
                let token = self
                    .token_for(&union)
                    .await
                    .map_err(|e| with_required(e, &required))?;
                if !required.is_subset(token.scope()) {
                    // The IdP (or the authorization server) granted less than the challenge
                    // needs: retrying cannot help; say which hop narrowed it.
                    return Err(insufficient_scope(&token, www_authenticate).into());
                }
                Ok(Recovery::Retry(token))
            }
            _ => Ok(Recovery::GiveUp),
        }
    }

    /// Like [`EmaSession::recover`], but turns [`Recovery::GiveUp`] after a `401`/`403` into a
    /// typed [`McpAuthError`].
    pub async fn recover_or_fail(
        &self,
        rejected: &AccessToken,
        status: u16,
        www_authenticate: Option<&str>,
    ) -> Result<AccessToken, EmaError> {
        match self.recover(rejected, status, www_authenticate).await? {
            Recovery::Retry(token) => Ok(token),
            Recovery::GiveUp => {
                let error: EmaError = if status == 403 {
                    insufficient_scope(rejected, www_authenticate).into()
                } else {
                    McpAuthError::Unauthorized.into()
                };
                self.record_failure(&error);
                Err(error)
            }
        }
    }
}

/// CL-10 gave up: the MCP server's `insufficient_scope` for `rejected`, with its scopes hop by
/// hop and the scopes the challenge requires.
pub(crate) fn insufficient_scope(
    rejected: &AccessToken,
    www_authenticate: Option<&str>,
) -> McpAuthError {
    let required = www_authenticate
        .and_then(|h| find_challenge(h, "Bearer").ok().flatten())
        .and_then(|c| c.get("scope").map(str::to_owned))
        .unwrap_or_default();
    let scopes = rejected
        .scope_report()
        .clone()
        .with_required(ScopeSet::parse(&required).ok());
    McpAuthError::InsufficientScope {
        required,
        scopes: Some(Box::new(scopes)),
    }
}

/// Adds the scopes the MCP server required to the report of a refused step-up (CL-10).
fn with_required(mut error: EmaError, required: &ScopeSet) -> EmaError {
    if let EmaError::JwtBearer(JwtBearerError::ScopeRefused { scopes, .. }) = &mut error {
        scopes.required = Some(required.clone());
    }
    error
}

/// The token of a code-flow session, with the scopes it was asked for, and the lock that keeps
/// one sign-in at a time.
#[derive(Debug, Default)]
struct CodeFlowState {
    cached: Mutex<Option<(ScopeSet, AccessToken)>>,
    flight: tokio::sync::Mutex<()>,
}
