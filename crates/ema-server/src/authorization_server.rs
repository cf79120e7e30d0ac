//! The MCP authorization server's routes: RFC 8414 metadata advertising the ID-JAG grant
//! profile (MD-1, MD-2), the JWKS of its access-token keys, and the token endpoint running the
//! jwt-bearer grant.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use ema_audit::AuditLog;
use ema_grant::JwtBearerGrant;
use ema_grant::ReplayStore;
use ema_id_jag::SubjectResolver;
use ema_jose::{Clock, KeySource, SystemClock};
use ema_metadata::AuthorizationServerMetadata;

use crate::endpoint::{into_axum, public_json, read_request};
use crate::paths::path_of;

struct AsState<K, S, R> {
    grant: JwtBearerGrant<K, S, R>,
    metadata: serde_json::Value,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    /// SHA-256 of the admin bearer secret, when the admin route is on.
    admin: Option<[u8; 32]>,
    /// The SSF push receiver (RV-4), when configured.
    ssf: Option<ema_grant::ssf::SsfReceiver>,
    /// The MCP authorization code flow, when configured.
    code: Option<crate::code_flow::CodeFlowConfig>,
}

/// The admin revoke route's path.
pub const ADMIN_REVOKE_PATH: &str = "/admin/revoke";

/// The router of an MCP authorization server, assembled by
/// [`AuthorizationServerRouter::builder`]: RFC 8414 metadata advertising the ID-JAG grant
/// profile, the JWKS of its access-token keys and the jwt-bearer token endpoint.
///
/// ```
/// use std::sync::Arc;
/// use ema_grant::{
///     AccessTokenIssuer, ClientCredential, InMemoryReplayStore, JwtBearerGrant, RegisteredClient,
/// };
/// use ema_id_jag::{Directory, Issuer, LocalSubject, ResourceConfig, TrustedIssuer};
/// use ema_jose::{Algorithm, KeyRing, SigningKey, StaticKeySource};
/// use ema_metadata::AuthorizationServerMetadata;
/// use ema_server::AuthorizationServerRouter;
/// use ema_server::audit::AuditLog;
///
/// let issuer = "https://auth.tasks.example";
/// # let idp_keys = KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("idp".into()))?);
/// let keys = Arc::new(KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("as".into()))?));
/// let grant = JwtBearerGrant::builder(
///     AccessTokenIssuer::new(Issuer::new(issuer), keys),
///     StaticKeySource::new().with_issuer("https://idp.acme.example", idp_keys.jwks()),
///     Directory::new().with_provisioning(|c| Some(LocalSubject::new(c.sub.as_str()))),
/// )
/// .trust(TrustedIssuer::new("https://idp.acme.example"))
/// .resource(ResourceConfig::new("https://mcp.tasks.example/mcp", ["tasks.read"]))
/// .client(RegisteredClient::new("tc_5f2a91", ClientCredential::secret("s3cr3t")))
/// .replay_store(InMemoryReplayStore::new(1000))
/// .build()?;
/// let metadata = AuthorizationServerMetadata::new(issuer, format!("{issuer}/token"));
/// let app: axum::Router = AuthorizationServerRouter::builder(grant, &metadata)
///     // Optional: each redeemed ID-JAG appended to the trail (off by default).
///     .audit(AuditLog::disabled())
///     .build();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AuthorizationServerRouter;

impl AuthorizationServerRouter {
    /// Starts the router of the authorization server whose token endpoint runs `grant` and
    /// whose RFC 8414 metadata is `metadata`: served at the well-known path of its `issuer`,
    /// with the token endpoint and the JWKS mounted at the paths of its `token_endpoint` and
    /// `jwks_uri` (default `/token` and `/jwks`). The grant is usually the bare
    /// [`JwtBearerGrant`] its builder returns; a grant built typed works alike.
    ///
    /// Defaults: the system clock, no audit trail.
    pub fn builder<K, S, R>(
        grant: JwtBearerGrant<K, S, R>,
        metadata: &AuthorizationServerMetadata,
    ) -> AuthorizationServerRouterBuilder<K, S, R> {
        AuthorizationServerRouterBuilder {
            grant,
            metadata: metadata.clone(),
            clock: None,
            audit: AuditLog::disabled(),
            admin: None,
            ssf: None,
            code: None,
            gtr: None,
        }
    }
}

/// Assembles an authorization server's router; see [`AuthorizationServerRouter::builder`].
#[must_use]
pub struct AuthorizationServerRouterBuilder<K, S, R> {
    grant: JwtBearerGrant<K, S, R>,
    metadata: AuthorizationServerMetadata,
    clock: Option<Arc<dyn Clock>>,
    audit: AuditLog,
    admin: Option<[u8; 32]>,
    ssf: Option<(ema_grant::ssf::SsfReceiver, String)>,
    code: Option<crate::code_flow::CodeFlowConfig>,
    gtr: Option<String>,
}

impl<K, S, R> std::fmt::Debug for AuthorizationServerRouterBuilder<K, S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServerRouterBuilder")
            .field("issuer", &self.metadata.issuer)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl<K, S, R> AuthorizationServerRouterBuilder<K, S, R>
where
    K: KeySource + 'static,
    S: SubjectResolver + 'static,
    R: ReplayStore + 'static,
{
    /// Sets the clock (default the system clock; tests pass a fixed one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Appends an [`IdJagRedeemed`](ema_audit::IdJagRedeemed) event to `log` for each access
    /// token issued: the IdP's issuer and the ID-JAG's `sub`, the digest of the ID-JAG's
    /// `iss`/`jti` (equal to the IdP's `IdJagIssued`), the client, the resource, the scopes and
    /// the access token's `jti` (which the MCP server's events name). Default
    /// [`AuditLog::disabled`].
    ///
    /// The trail must be complete: when the event cannot be appended, the token is withheld
    /// and the client gets `503 temporarily_unavailable` (the error is logged at `error`,
    /// target `ema_audit`). The ID-JAG was already consumed (single use, SEC-1): the client
    /// obtains a new one from the IdP. Refused requests are not appended: they are logged
    /// (`tracing`), as every token request is.
    pub fn audit(mut self, log: AuditLog) -> Self {
        self.audit = log;
        self
    }

    /// Mounts the admin revoke route, `POST /admin/revoke`, protected by `secret` as a bearer
    /// token (compared in constant time), when the grant has a
    /// [`Revoker`](ema_grant::Revoker). The JSON body names the subject: `{"subject": "..."}`
    /// for a local subject of this AS, plus `"issuer"` (and `"tenant"`) for an IdP subject,
    /// whose mapped local subjects follow (RV-12); `"action"` is `revoke` (default), `disable`
    /// or `enable`; `"at"` the event time in Unix seconds (default now; more than 60 s ahead
    /// is refused, RV-13). Answers `200 {"changes": n}`, `400 invalid_request`, `401
    /// invalid_token`, or `503 temporarily_unavailable` when the ledger cannot be written.
    pub fn admin_secret(mut self, secret: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        self.admin = Some(out);
        self
    }

    /// Mounts the SSF push receiver (RFC 8935, RV-4) at `path` (e.g.
    /// [`ema_grant::ssf::DEFAULT_PUSH_PATH`]): `POST` of `application/secevent+jwt` from a
    /// configured transmitter. A request whose `Authorization` matches no transmitter gets 401
    /// before its body is read (D-37); a SET is answered `202` only once the ledger holds its
    /// change, `400 {"err", "description"}` with the RFC 8935 code when refused, `503` while
    /// the ledger is unreachable (the transmitter retries).
    ///
    /// Every authenticated push is appended to the trail as a
    /// [`SecurityEventReceived`](ema_audit::SecurityEventReceived) (issuer, `jti`, event type,
    /// subject digest, outcome) and each ledger change as a
    /// [`RevocationApplied`](ema_audit::RevocationApplied) with source `ssf` (RV-29); when the
    /// trail refuses them the transmitter gets 503 and the SET is not remembered, so its
    /// redelivery is processed again.
    pub fn ssf(mut self, receiver: ema_grant::ssf::SsfReceiver, path: &str) -> Self {
        self.ssf = Some((receiver, path.to_owned()));
        self
    }

    /// Adds the MCP authorization code flow (RFC 6749 §4.1 with PKCE `S256`, RFC 8707
    /// `resource`, RFC 9207 `iss`) beside the jwt-bearer grant: the authorization endpoint at
    /// the path of the metadata's `authorization_endpoint` (default `/authorize`), the IdP's
    /// callback at the path of the relying party's redirect URI, and `grant_type=
    /// authorization_code` at the token endpoint. Users sign in at the enterprise IdP over
    /// OpenID Connect; the IdP's ID token is verified with the grant's key source and its
    /// subject mapped with the grant's subject resolver.
    ///
    /// The metadata is the caller's: advertise `authorization_endpoint`,
    /// `response_types_supported: ["code"]`, `code_challenge_methods_supported: ["S256"]` and
    /// `authorization_code` in `grant_types_supported` (e.g. with
    /// [`advertise_code_flow`](crate::advertise_code_flow)).
    pub fn code_flow(mut self, code: crate::code_flow::CodeFlowConfig) -> Self {
        self.code = Some(code);
        self
    }

    /// Mounts the Global Token Revocation endpoint (RV-21) at `path` (e.g.
    /// [`ema_grant::ssf::DEFAULT_GTR_PATH`]) over the [`ssf`](Self::ssf) receiver's
    /// transmitters: each authenticates with its `Authorization` value and may revoke only the
    /// subjects of its issuers and tenant. See
    /// [`SsfReceiver::handle_gtr`](ema_grant::ssf::SsfReceiver::handle_gtr) for the answers
    /// (204, 400, 401, 403, 404, 422, 503). Every authenticated call is on the trail as a
    /// [`SecurityEventReceived`](ema_audit::SecurityEventReceived) with source `gtr`, its
    /// ledger changes as [`RevocationApplied`](ema_audit::RevocationApplied); a trail that
    /// refuses them turns the answer into 503. Publish the URL in the metadata as
    /// `global_token_revocation_endpoint`. Without an SSF receiver nothing is mounted.
    pub fn global_token_revocation(mut self, path: &str) -> Self {
        self.gtr = Some(path.to_owned());
        self
    }

    /// Builds the router.
    ///
    /// When the metadata advertises an `introspection_endpoint` (an `extra` member), the
    /// RFC 7662 introspection endpoint is mounted at its path (RS-8, RV-22; see
    /// [`JwtBearerGrant::handle_introspection`]).
    ///
    /// With a [`Revoker`](ema_grant::Revoker) in the grant, the RFC 7009 revocation endpoint
    /// (RV-20) is mounted at the path of the metadata's `revocation_endpoint` (an `extra`
    /// member; default `/revoke`), and the admin route when
    /// [`admin_secret`](Self::admin_secret) was given.
    ///
    /// Each token request is logged (`tracing`, level `info`, target
    /// `ema_server::authorization_server`) with `grant="jwt_bearer"`, `status`, on refusal
    /// `error` and the log-only `reason`, and the scopes `scope_requested` and
    /// `scope_granted`; never a token.
    pub fn build(self) -> Router {
        let metadata = &self.metadata;
        let well_known = path_of(
            &metadata.issuer,
            ema_metadata::authorization_server_metadata_url,
        );
        let token = metadata
            .token_endpoint
            .as_deref()
            .map_or_else(|| "/token".to_owned(), crate::paths::url_path);
        let jwks = metadata
            .jwks_uri
            .as_deref()
            .map_or_else(|| "/jwks".to_owned(), crate::paths::url_path);
        let revocation = metadata
            .extra
            .get("revocation_endpoint")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| "/revoke".to_owned(), crate::paths::url_path);
        let authorize = metadata
            .authorization_endpoint
            .as_deref()
            .map_or_else(|| "/authorize".to_owned(), crate::paths::url_path);
        let callback = self
            .code
            .as_ref()
            .map(|c| crate::paths::url_path(c.sign_in.redirect_uri()));
        let introspection = metadata
            .extra
            .get("introspection_endpoint")
            .and_then(serde_json::Value::as_str)
            .map(crate::paths::url_path);
        let revoking = self.grant.revoker().is_some();
        let admin = self.admin.is_some() && revoking;
        let state = Arc::new(AsState {
            grant: self.grant,
            metadata: metadata.to_json(),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            audit: self.audit,
            admin: self.admin,
            ssf: self.ssf.as_ref().map(|(receiver, _)| receiver.clone()),
            code: self.code,
        });
        let mut router = Router::new()
            .route(&well_known, get(AsState::metadata))
            .route(&jwks, get(AsState::jwks))
            .route(&token, post(AsState::token));
        if revoking {
            router = router.route(&revocation, post(AsState::revoke_token));
        }
        if admin {
            router = router.route(ADMIN_REVOKE_PATH, post(AsState::admin_revoke));
        }
        if let Some((_, path)) = &self.ssf {
            router = router.route(path, post(AsState::ssf_push));
            if let Some(gtr) = &self.gtr {
                router = router.route(gtr, post(AsState::gtr));
            }
        }
        if let Some(introspection) = introspection {
            router = router.route(&introspection, post(AsState::introspect));
        }
        if let Some(callback) = callback {
            router = router
                .route(&authorize, get(AsState::authorize))
                .route(&callback, get(AsState::callback));
        }
        router.with_state(state)
    }
}

/// Builds the authorization server's router: [`AuthorizationServerRouter::builder`] with the
/// given clock and no audit trail.
///
/// `metadata` is served at the RFC 8414 well-known path of its `issuer`; its `token_endpoint`
/// and `jwks_uri` paths are where the token endpoint and the JWKS are mounted. The grant is
/// usually the bare [`JwtBearerGrant`] its builder returns; a grant built typed works alike.
///
/// Each token request is logged (`tracing`, level `info`, target
/// `ema_server::authorization_server`) with `grant="jwt_bearer"`, `status`, on refusal `error`
/// and the log-only `reason`, and the scopes `scope_requested` and `scope_granted`; never a
/// token.
pub fn authorization_server_router<K, S, R>(
    grant: JwtBearerGrant<K, S, R>,
    metadata: &AuthorizationServerMetadata,
    clock: Arc<dyn Clock>,
) -> Router
where
    K: KeySource + 'static,
    S: SubjectResolver + 'static,
    R: ReplayStore + 'static,
{
    AuthorizationServerRouter::builder(grant, metadata)
        .clock(clock)
        .build()
}

impl<K, S, R> AsState<K, S, R>
where
    K: KeySource + 'static,
    S: SubjectResolver + 'static,
    R: ReplayStore + 'static,
{
    async fn metadata(State(state): State<Arc<Self>>) -> Response {
        public_json(&state.metadata, 300)
    }

    async fn jwks(State(state): State<Arc<Self>>) -> Response {
        public_json(&state.grant.tokens().keys().jwks().to_public_json(), 300)
    }

    async fn token(
        State(state): State<Arc<Self>>,
        request: http::Request<axum::body::Body>,
    ) -> Response {
        let request = match read_request(request).await {
            Ok(request) => request,
            Err(response) => return response,
        };
        if let Some(code) = &state.code
            && is_code_grant(request.body())
        {
            let response = code
                .flow
                .handle(&request, state.grant.replay(), state.clock.now())
                .await;
            // The same redemption event as the jwt-bearer grant's, naming the grant.
            let response = crate::trail::id_jag_redeemed(&state.audit, response);
            log_outcome(
                LogTarget::AuthorizationServer,
                "authorization_code",
                &response,
            );
            return into_axum(response);
        }
        let response = state.grant.handle(&request, state.clock.now()).await;
        let response = crate::trail::id_jag_redeemed(&state.audit, response);
        log_outcome(LogTarget::AuthorizationServer, "jwt_bearer", &response);
        into_axum(response)
    }

    /// RFC 7662 (RS-8, RV-22).
    async fn introspect(
        State(state): State<Arc<Self>>,
        request: http::Request<axum::body::Body>,
    ) -> Response {
        let request = match read_request(request).await {
            Ok(request) => request,
            Err(response) => return response,
        };
        let response = state
            .grant
            .handle_introspection(&request, state.clock.now())
            .await;
        if let Some(outcome) = response.extensions().get::<ema_grant::TokenIntrospection>() {
            tracing::info!(target: "ema_server::authorization_server", ?outcome, "token introspection");
        }
        into_axum(response)
    }

    /// The code flow's authorization endpoint.
    async fn authorize(
        State(state): State<Arc<Self>>,
        headers: http::HeaderMap,
        axum::extract::RawQuery(query): axum::extract::RawQuery,
    ) -> Response {
        match &state.code {
            Some(code) => {
                crate::code_flow::authorize(code, &headers, query.as_deref(), state.clock.now())
                    .await
            }
            None => http::StatusCode::NOT_FOUND.into_response(),
        }
    }

    /// The IdP's redirect back to the code flow.
    async fn callback(
        State(state): State<Arc<Self>>,
        headers: http::HeaderMap,
        axum::extract::RawQuery(query): axum::extract::RawQuery,
    ) -> Response {
        let Some(code) = &state.code else {
            return http::StatusCode::NOT_FOUND.into_response();
        };
        let validator = state.grant.validator();
        crate::code_flow::callback(
            code,
            validator.keys(),
            validator.subjects(),
            validator.trust(),
            state.grant.replay(),
            &headers,
            query.as_deref(),
            state.clock.now(),
        )
        .await
    }

    /// RFC 7009 (RV-20).
    async fn revoke_token(
        State(state): State<Arc<Self>>,
        request: http::Request<axum::body::Body>,
    ) -> Response {
        let request = match read_request(request).await {
            Ok(request) => request,
            Err(response) => return response,
        };
        let response = state
            .grant
            .handle_revocation(&request, state.clock.now())
            .await;
        if let Some(outcome) = response.extensions().get::<ema_grant::TokenRevocation>() {
            tracing::info!(target: "ema_server::authorization_server", ?outcome, "token revocation");
            if let ema_grant::TokenRevocation::Revoked { jti, until, .. } = outcome {
                let change = ema_grant::revocation::LedgerChange::TokenDenied {
                    issuer: state.grant.tokens().issuer().as_str().to_owned(),
                    jti: jti.clone(),
                    until: until.as_secs(),
                };
                if let Err(e) = crate::trail::revocation_applied(&state.audit, "rfc7009", &[change])
                {
                    tracing::error!(target: "ema_audit", error = %e, "revocation not recorded");
                    return cannot_record("change");
                }
            }
        }
        into_axum(response)
    }

    /// The SSF push receiver (RV-4, D-37, RV-29).
    async fn ssf_push(
        State(state): State<Arc<Self>>,
        request: http::Request<axum::body::Body>,
    ) -> Response {
        use ema_grant::ssf::{SetReceipt, SsfError};
        let Some(receiver) = &state.ssf else {
            return admin_error(http::StatusCode::NOT_FOUND, "not_found", "no SSF receiver");
        };
        // D-37: 401 before the body is even read.
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes);
        if receiver.authenticate(presented).is_err() {
            tracing::info!(target: "ema_server::authorization_server", "SSF push refused: transmitter authentication failed");
            return into_axum(SsfError::Unauthenticated.to_response());
        }
        let request = match read_request(request).await {
            Ok(request) => request,
            Err(response) => return response,
        };
        let response = receiver.handle(&request, state.clock.now()).await;
        let Some(receipt) = response.extensions().get::<SetReceipt>().cloned() else {
            return into_axum(response);
        };
        let outcome = receipt.outcome_name();
        match &receipt.outcome {
            Ok(_) => tracing::info!(
                target: "ema_server::authorization_server",
                transmitter = %receipt.transmitter, jti = receipt.jti.as_deref().unwrap_or(""),
                event_type = receipt.event_type.as_deref().unwrap_or(""), %outcome,
                "security event received"
            ),
            Err(e) => tracing::warn!(
                target: "ema_server::authorization_server",
                transmitter = %receipt.transmitter, jti = receipt.jti.as_deref().unwrap_or(""),
                event_type = receipt.event_type.as_deref().unwrap_or(""), %outcome, error = %e,
                "security event refused"
            ),
        }
        let recorded = crate::trail::security_event_recorded(&state.audit, "ssf", &receipt);
        if let Err(e) = recorded {
            tracing::error!(target: "ema_audit", error = %e, "security event not recorded");
            if let (Ok(_), Some(jti)) = (&receipt.outcome, &receipt.jti) {
                // The redelivery must be processed (and recorded) again.
                if let Err(e) = receiver.forget(&receipt.transmitter, jti).await {
                    tracing::error!(target: "ema_server::authorization_server", error = %e, "SET stays marked as received");
                }
            }
            return cannot_record("event");
        }
        into_axum(response)
    }

    /// Global Token Revocation (RV-21, RV-29).
    async fn gtr(
        State(state): State<Arc<Self>>,
        request: http::Request<axum::body::Body>,
    ) -> Response {
        use ema_grant::ssf::{SetOutcome, SetReceipt};
        let Some(receiver) = &state.ssf else {
            return admin_error(http::StatusCode::NOT_FOUND, "not_found", "no receiver");
        };
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes);
        // 401 before the body is read: the static value or a signed JWT (RV-21).
        let caller = match receiver
            .authenticate_gtr(presented, state.clock.now())
            .await
        {
            Ok(caller) => caller,
            Err(e) => return into_axum(ema_grant::ssf::gtr_unauthenticated(&e)),
        };
        let request = match read_request(request).await {
            Ok(request) => request,
            Err(response) => return response,
        };
        let response = receiver
            .handle_gtr_as(caller, &request, state.clock.now())
            .await;
        let Some(receipt) = response.extensions().get::<SetReceipt>().cloned() else {
            return into_axum(response);
        };
        tracing::info!(
            target: "ema_server::authorization_server",
            caller = %receipt.transmitter, status = response.status().as_u16(),
            outcome = %receipt.outcome_name(), "global token revocation"
        );
        let changes = match &receipt.outcome {
            Ok(SetOutcome::Applied(changes)) => changes.as_slice(),
            _ => &[],
        };
        let recorded = crate::trail::security_event_received(&state.audit, "gtr", &receipt)
            .and_then(|()| crate::trail::revocation_applied(&state.audit, "gtr", changes));
        if let Err(e) = recorded {
            tracing::error!(target: "ema_audit", error = %e, "global token revocation not recorded");
            return cannot_record("request");
        }
        into_axum(response)
    }

    /// The admin revoke command.
    async fn admin_revoke(
        State(state): State<Arc<Self>>,
        request: http::Request<axum::body::Body>,
    ) -> Response {
        let (Some(expected), Some(revoker)) = (&state.admin, state.grant.revoker()) else {
            return admin_error(http::StatusCode::NOT_FOUND, "not_found", "no admin route");
        };
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
        if aws_lc_rs::constant_time::verify_slices_are_equal(digest.as_ref(), expected).is_err() {
            let mut resp = admin_error(
                http::StatusCode::UNAUTHORIZED,
                "invalid_token",
                "admin credentials required",
            );
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"admin\""),
            );
            return resp;
        }
        let request = match read_request(request).await {
            Ok(request) => request,
            Err(response) => return response,
        };
        let now = state.clock.now();
        let cmd = match admin_command(request.body(), revoker.local_scope(), now) {
            Ok(cmd) => cmd,
            Err(description) => {
                return admin_error(
                    http::StatusCode::BAD_REQUEST,
                    "invalid_request",
                    description,
                );
            }
        };
        match revoker.apply(&cmd, now).await {
            Ok(changes) => {
                tracing::info!(
                    target: "ema_server::authorization_server",
                    subject = %cmd.subject, action = ?cmd.action, changes = changes.len(),
                    "admin revoke applied"
                );
                // RV-29: every ledger change on the trail; a failed append is a 503 (the
                // command is idempotent, a retry appends the events).
                if let Err(e) = crate::trail::revocation_applied(&state.audit, "admin", &changes) {
                    tracing::error!(target: "ema_audit", error = %e, "revocation not recorded");
                    return cannot_record("change");
                }
                let body = serde_json::json!({"changes": changes.len()});
                public_json_no_store(&body)
            }
            Err(e) => {
                use ema_metadata::ToErrorCode as _;
                let code = e.error_code();
                tracing::warn!(target: "ema_server::authorization_server", error = %e, "admin revoke refused");
                admin_error(code.http_status(), code.as_str(), e.error_description())
            }
        }
    }
}

/// Whether a token request body asks for the authorization code grant.
fn is_code_grant(body: &[u8]) -> bool {
    ema_grant::Form::parse(body, ema_grant::form::DEFAULT_MAX_BODY)
        .is_ok_and(|f| f.get("grant_type") == Some(ema_grant::AUTHORIZATION_CODE_GRANT))
}

/// Advertises the MCP authorization code flow in `metadata`: `authorization_endpoint` (when
/// unset, `<issuer>/authorize`), `response_types_supported: ["code"]`,
/// `code_challenge_methods_supported: ["S256"]`, `authorization_response_iss_parameter_supported:
/// true` (every redirect of the flow carries `iss`, RFC 9207 §3, so clients that read the
/// metadata refuse a redirect without it), and `authorization_code` added to
/// `grant_types_supported` beside what is there (the jwt-bearer grant of the ID-JAG profile).
pub fn advertise_code_flow(metadata: &mut AuthorizationServerMetadata) {
    if metadata.authorization_endpoint.is_none() {
        metadata.authorization_endpoint = Some(format!(
            "{}/authorize",
            metadata.issuer.trim_end_matches('/')
        ));
    }
    metadata.response_types_supported = Some(vec!["code".to_owned()]);
    metadata.code_challenge_methods_supported = Some(vec!["S256".to_owned()]);
    metadata.extra.insert(
        "authorization_response_iss_parameter_supported".into(),
        true.into(),
    );
    let grants = metadata.grant_types_supported.get_or_insert_with(Vec::new);
    if !grants
        .iter()
        .any(|g| g == ema_grant::AUTHORIZATION_CODE_GRANT)
    {
        grants.push(ema_grant::AUTHORIZATION_CODE_GRANT.to_owned());
    }
}

/// The admin route's JSON body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminRevoke {
    subject: String,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

fn admin_command(
    body: &[u8],
    local: &ema_grant::revocation::RevocationScope,
    now: ema_jose::UnixTime,
) -> Result<ema_grant::Revoke, &'static str> {
    use ema_grant::revocation::{RevocationKind, RevocationScope};
    use ema_grant::{Revoke, RevokeAction};
    let req: AdminRevoke =
        serde_json::from_slice(body).map_err(|_| "the body must be a JSON revoke command")?;
    let action = match req.action.as_deref() {
        None | Some("revoke") => RevokeAction::Revoke(RevocationKind::Admin),
        Some("disable") => RevokeAction::Disable(RevocationKind::AccountDisabled),
        Some("enable") => RevokeAction::Enable,
        Some(_) => return Err("action must be revoke, disable or enable"),
    };
    let scope = match (req.issuer, req.tenant) {
        (Some(issuer), tenant) => RevocationScope::Idp { issuer, tenant },
        (None, None) => local.clone(),
        (None, Some(_)) => return Err("tenant needs issuer"),
    };
    Ok(Revoke {
        scope,
        subject: req.subject,
        at: req.at.map_or(now, ema_jose::UnixTime::from_secs),
        action,
    })
}

/// 503 `temporarily_unavailable` when the audit trail refused what a request did (RV-29): the
/// caller retries, and the retry appends the events.
fn cannot_record(what: &str) -> Response {
    admin_error(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        &format!("the server cannot record this {what}; try again"),
    )
}

fn admin_error(status: http::StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": error, "error_description": description});
    let mut resp = public_json_no_store(&body);
    *resp.status_mut() = status;
    resp
}

fn public_json_no_store(body: &serde_json::Value) -> Response {
    use axum::response::IntoResponse as _;
    let mut resp = (http::StatusCode::OK, body.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// The server a token-endpoint outcome is logged for: each logs under its own `tracing`
/// target, so an operator can tell the IdP's decisions from the authorization server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogTarget {
    /// `ema_server::authorization_server`.
    AuthorizationServer,
    /// `ema_server::idp`.
    Idp,
}

/// A scope set for a log field: the space-separated names, or nothing. Formatted only when the
/// event is recorded.
struct Scopes<'a>(Option<&'a ema_id_jag::ScopeSet>);

impl std::fmt::Display for Scopes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(scopes) => std::fmt::Display::fmt(scopes, f),
            None => Ok(()),
        }
    }
}

/// Logs a token endpoint outcome under the server's target: grant, status, the scopes
/// requested and granted (`scope_requested`, `scope_granted`, from the response's
/// [`ema_grant::ScopeLog`]; scope names only), and for a refusal the error code and the cause
/// the grant kept for the log (the [`ema_grant::OAuthError`] the response carries as an
/// extension, e.g. which `token_endpoint_auth_method` a client is registered for, D-24), never
/// the body's tokens and never by reading the body back.
pub(crate) fn log_outcome(
    server: LogTarget,
    grant: &'static str,
    response: &http::Response<Vec<u8>>,
) {
    // `tracing` needs the target as a constant, so one arm per server.
    macro_rules! info {
        ($($field:tt)*) => {
            match server {
                LogTarget::AuthorizationServer => {
                    tracing::info!(target: "ema_server::authorization_server", $($field)*)
                }
                LogTarget::Idp => tracing::info!(target: "ema_server::idp", $($field)*),
            }
        };
    }
    let status = response.status().as_u16();
    let scopes = response.extensions().get::<ema_grant::ScopeLog>();
    let scope_requested = Scopes(scopes.and_then(|s| s.requested.as_ref()));
    let scope_granted = Scopes(scopes.and_then(|s| s.granted.as_ref()));
    if response.status().is_success() {
        info!(
            grant,
            status,
            scope_requested = %scope_requested,
            scope_granted = %scope_granted,
            "token issued"
        );
    } else if let Some(error) = response.extensions().get::<ema_grant::OAuthError>() {
        let reason = error.cause_chain();
        info!(
            grant,
            status,
            error = %error.code,
            reason,
            scope_requested = %scope_requested,
            scope_granted = %scope_granted,
            "token request refused"
        );
    } else {
        info!(
            grant,
            status,
            scope_requested = %scope_requested,
            scope_granted = %scope_granted,
            "token request refused"
        );
    }
}
