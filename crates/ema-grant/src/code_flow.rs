//! The MCP authorization code flow at the authorization server (RFC 6749 §4.1 with PKCE,
//! RFC 7636; RFC 8707 resource indicators; RFC 9207 `iss`), sans-I/O.
//!
//! The authorization server of an MCP server serves two kinds of clients: EMA agents present an
//! ID-JAG ([`JwtBearerGrant`](crate::JwtBearerGrant)), every other MCP client runs the standard
//! authorization code flow. [`CodeFlow`] is that flow's protocol core, with no sockets and no
//! clock:
//!
//! 1. [`CodeFlow::authorize`] validates the authorization request: a registered client, a
//!    redirect URI registered exactly, `response_type=code`, a PKCE `S256` challenge (`plain`
//!    refused), a governed `resource` (RFC 8707, required) and scopes it defines.
//! 2. The server signs the user in (the reference server delegates to the enterprise IdP over
//!    OpenID Connect and maps the IdP subject with the jwt-bearer grant's subject resolver), then
//!    [`CodeFlow::issue_code`] mints a one-time, short-lived code bound to the client, the
//!    redirect URI, the challenge, the resource and the subject, and returns the redirect URL
//!    carrying `code`, `state` and `iss`.
//! 3. [`CodeFlow::token_form`] runs the `authorization_code` grant at the token endpoint and
//!    issues the same audience-restricted RFC 9068 access token as the jwt-bearer grant. A code
//!    presented a second time is refused and the tokens issued from it are denied in the
//!    revocation ledger (RFC 6749 §4.1.2, OAuth 2.1 §4.1.3).
//!
//! Codes live in memory: one authorization server instance serves a flow from start to end.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest;
use ema_id_jag::{ClientId, Issuer, LocalSubject, Resource, ResourceRegistry, ScopeSet};
use ema_jose::{UnixTime, random_id};
use http::Response;
use serde_json::Value;

use crate::access_token::AccessTokenIssuer;
use crate::client_auth::{ClientRegistry, RegisteredClient};
use crate::error::{ErrorCode, OAuthError, json_bytes_response};
use crate::form::{Form, Redacted, TokenRequest, encode_component};
use crate::jwt_bearer::{client_auth_error, form_error, request_error};
use crate::replay::ReplayStore;
use crate::revocation::RevocationLedger as _;
use crate::revoke::Revoker;
use crate::scope_log::ScopeLog;

/// `grant_type` of the authorization code grant.
pub const AUTHORIZATION_CODE_GRANT: &str = "authorization_code";

/// The default code lifetime in seconds (RFC 6749 §4.1.2 recommends at most ten minutes; a
/// browser round trip needs far less).
pub const DEFAULT_CODE_LIFETIME: u64 = 60;

/// A validated authorization request: what a code will be bound to once the user signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationRequest {
    /// `client_id`: a registered client.
    pub client_id: ClientId,
    /// `redirect_uri`: exactly one of the client's registered URIs.
    pub redirect_uri: String,
    /// `state`, echoed in the redirect.
    pub state: Option<String>,
    /// `code_challenge` (method `S256`).
    pub code_challenge: String,
    /// `resource` (RFC 8707): the MCP server the token will be for.
    pub resource: Resource,
    /// The scopes the token will carry: those requested, or the resource's default scopes.
    pub scope: Option<ScopeSet>,
}

/// Why an authorization request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizationError {
    /// No `client_id`, or not a client registered here: show an error page, never redirect
    /// (RFC 6749 §4.1.2.1).
    #[error("unknown client")]
    UnknownClient,
    /// No `redirect_uri`, or one the client did not register exactly: show an error page,
    /// never redirect.
    #[error("the redirect URI is not registered for this client")]
    RedirectUriNotRegistered,
    /// Too many sign-ins pending (fail closed).
    #[error("too many pending sign-ins")]
    Busy,
    /// A protocol error reported to the client through its redirect URI, with `state` and
    /// `iss` (RFC 9207).
    #[error("{}", error.description)]
    Redirect {
        /// The client's redirect URI.
        redirect_uri: String,
        /// The error.
        error: Box<OAuthError>,
        /// The request's `state`.
        state: Option<String>,
        /// This authorization server's issuer identifier.
        iss: String,
    },
}

impl AuthorizationError {
    /// For [`AuthorizationError::Redirect`], the URL to send the browser to.
    pub fn redirect_url(&self) -> Option<String> {
        let Self::Redirect {
            redirect_uri,
            error,
            state,
            iss,
        } = self
        else {
            return None;
        };
        let mut url = redirect_uri.clone();
        url.push(if redirect_uri.contains('?') { '&' } else { '?' });
        url.push_str("error=");
        url.push_str(error.code.as_str());
        url.push_str("&error_description=");
        url.push_str(&encode_component(&error.description));
        if let Some(state) = state {
            url.push_str("&state=");
            url.push_str(&encode_component(state));
        }
        url.push_str("&iss=");
        url.push_str(&encode_component(iss));
        Some(url)
    }
}

/// The signed-in user a code is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedInUser {
    /// The local subject (the access token's `sub`, groups, roles, tenant), as the subject
    /// resolver mapped it.
    pub subject: LocalSubject,
    /// The IdP that signed the user in.
    pub idp_issuer: Issuer,
    /// The user's subject at that IdP.
    pub idp_subject: String,
    /// When the user authenticated at the IdP.
    pub auth_time: Option<UnixTime>,
    /// The IdP's `acr`.
    pub acr: Option<String>,
    /// The IdP's `amr`.
    pub amr: Option<Vec<String>>,
}

impl SignedInUser {
    /// A user signed in at `idp_issuer` as `idp_subject`, mapped to `subject`.
    pub fn new(
        subject: LocalSubject,
        idp_issuer: impl Into<Issuer>,
        idp_subject: impl Into<String>,
    ) -> Self {
        Self {
            subject,
            idp_issuer: idp_issuer.into(),
            idp_subject: idp_subject.into(),
            auth_time: None,
            acr: None,
            amr: None,
        }
    }

    /// Sets the authentication time, `acr` and `amr` the IdP reported.
    #[must_use]
    pub fn with_authentication(
        mut self,
        auth_time: Option<UnixTime>,
        acr: Option<String>,
        amr: Option<Vec<String>>,
    ) -> Self {
        self.auth_time = auth_time;
        self.acr = acr;
        self.amr = amr;
        self
    }
}

/// A code redeemed for an access token, for the server's audit trail (an `http` response
/// extension of [`CodeFlow::handle`], never sent).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodeRedemption {
    /// The client.
    pub client_id: ClientId,
    /// The IdP that signed the user in.
    pub idp_issuer: Issuer,
    /// The user's subject at the IdP.
    pub idp_subject: String,
    /// The access token's `sub`.
    pub subject: String,
    /// The access token's audience.
    pub resource: Resource,
    /// The access token's scopes.
    pub scope: Option<ScopeSet>,
    /// The access token's `jti`.
    pub access_token_jti: String,
}

/// A successful `authorization_code` token response. `Debug` shows the token's length only
/// (SEC-10).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodeTokenResponse {
    /// The access token.
    pub access_token: String,
    /// Seconds until expiry.
    pub expires_in: u64,
    /// The granted scopes.
    pub scope: Option<ScopeSet>,
    /// The resource the token is for.
    pub resource: Resource,
    /// What was redeemed, for the audit trail.
    pub redemption: CodeRedemption,
}

impl std::fmt::Debug for CodeTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeTokenResponse")
            .field("access_token", &Redacted(self.access_token.len()))
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .field("redemption", &self.redemption)
            .finish()
    }
}

#[derive(serde::Serialize)]
struct CodeTokenBody<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    resource: &'a str,
}

impl CodeTokenResponse {
    /// The JSON body: `access_token`, `token_type` `Bearer`, `expires_in`, `scope`, `resource`;
    /// no refresh token (AS-15).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.body()).unwrap_or_default()
    }

    fn body(&self) -> CodeTokenBody<'_> {
        CodeTokenBody {
            access_token: &self.access_token,
            token_type: "Bearer",
            expires_in: self.expires_in,
            scope: self.scope.as_ref().map(ToString::to_string),
            resource: self.resource.as_str(),
        }
    }

    /// The HTTP response (200, `Cache-Control: no-store`) carrying the [`CodeRedemption`] as
    /// an extension.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let bytes = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = json_bytes_response(http::StatusCode::OK, bytes);
        response.extensions_mut().insert(self.redemption.clone());
        response
    }
}

#[derive(Debug)]
struct PendingCode {
    request: AuthorizationRequest,
    user: SignedInUser,
    expires: UnixTime,
}

#[derive(Debug)]
enum CodeState {
    Pending(Box<PendingCode>),
    /// Redeemed: the tokens issued from it (`jti`, `exp`), kept until they expire so that a
    /// second presentation revokes them.
    Redeemed {
        tokens: Vec<(String, UnixTime)>,
        until: UnixTime,
    },
}

/// The authorization code flow of an MCP authorization server; see the [module](self) docs.
///
/// ```
/// use std::sync::Arc;
/// use ema_grant::code_flow::{CodeFlow, SignedInUser};
/// use ema_grant::{AccessTokenIssuer, ClientCredential, ClientRegistry, Form, RegisteredClient};
/// use ema_id_jag::{Issuer, LocalSubject, ResourceConfig, ResourceRegistry};
/// use ema_jose::{Algorithm, KeyRing, SigningKey, UnixTime};
///
/// let keys = Arc::new(KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("as".into()))?));
/// let issuer = Issuer::new("https://auth.tasks.example");
/// let flow = CodeFlow::new(
///     AccessTokenIssuer::new(issuer, keys),
///     ClientRegistry::new(["https://auth.tasks.example/token"]).with(
///         RegisteredClient::new("ide", ClientCredential::Public)
///             .with_redirect_uris(["http://127.0.0.1:33418/callback"]),
///     ),
///     ResourceRegistry::new()
///         .with(ResourceConfig::new("https://mcp.tasks.example/mcp", ["tasks.read"])),
/// );
/// let query = "response_type=code&client_id=ide\
///     &redirect_uri=http%3A%2F%2F127.0.0.1%3A33418%2Fcallback&state=xyz\
///     &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256\
///     &resource=https%3A%2F%2Fmcp.tasks.example%2Fmcp&scope=tasks.read";
/// let request = flow.authorize(&Form::parse(query.as_bytes(), 8192)?)?;
/// // ... the user signs in (at the enterprise IdP) ...
/// let user = SignedInUser::new(LocalSubject::new("u-17"), "https://idp.acme.example", "00u8k2");
/// let redirect = flow.issue_code(&request, user, UnixTime::from_secs(1_767_225_600))?;
/// assert!(redirect.starts_with("http://127.0.0.1:33418/callback?code="));
/// assert!(redirect.contains("&state=xyz&iss=https%3A%2F%2Fauth.tasks.example"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CodeFlow {
    tokens: AccessTokenIssuer,
    clients: ClientRegistry,
    resources: ResourceRegistry,
    revoker: Option<Revoker>,
    code_lifetime: u64,
    max_pending: usize,
    max_body: usize,
    codes: Mutex<HashMap<[u8; 32], CodeState>>,
}

impl CodeFlow {
    /// The code flow of the authorization server whose access tokens `tokens` signs, for the
    /// clients of `clients` (each with its redirect URIs; a client restricted to other grant
    /// types is refused) and the resources of `resources`. Public clients (registered with
    /// [`ClientCredential::Public`](crate::ClientCredential::Public), `none`) are accepted here
    /// whatever the registry says: PKCE binds their codes. Codes live
    /// [`DEFAULT_CODE_LIFETIME`] seconds; at most 10 000 are pending.
    pub fn new(
        tokens: AccessTokenIssuer,
        clients: ClientRegistry,
        resources: ResourceRegistry,
    ) -> Self {
        Self {
            tokens,
            clients: clients.allow_public(true),
            resources,
            revoker: None,
            code_lifetime: DEFAULT_CODE_LIFETIME,
            max_pending: 10_000,
            max_body: crate::form::DEFAULT_MAX_BODY,
            codes: Mutex::new(HashMap::new()),
        }
    }

    /// The code flow sharing a jwt-bearer grant's issuer, clients, resources and revoker: one
    /// authorization server, two ways in.
    pub fn for_grant<K, S, R>(grant: &crate::JwtBearerGrant<K, S, R>) -> Self
    where
        K: ema_jose::KeySource,
        S: ema_id_jag::SubjectResolver,
        R: ReplayStore,
    {
        let mut flow = Self::new(
            grant.tokens().clone(),
            grant.clients().clone(),
            grant.validator().resources().clone(),
        );
        flow.revoker = grant.revoker().cloned();
        flow
    }

    /// Denies the tokens of a code presented twice in this revoker's ledger (without one,
    /// the second presentation is still refused, and the tokens live until they expire).
    #[must_use]
    pub fn with_revoker(mut self, revoker: Revoker) -> Self {
        self.revoker = Some(revoker);
        self
    }

    /// Sets the code lifetime in seconds (clamped to 1..=600).
    #[must_use]
    pub fn with_code_lifetime(mut self, secs: u64) -> Self {
        self.code_lifetime = secs.clamp(1, 600);
        self
    }

    /// Sets how many codes may be pending at once (fail closed beyond).
    #[must_use]
    pub fn with_max_pending(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// The authorization server's issuer identifier (the `iss` of every redirect, RFC 9207).
    pub fn issuer(&self) -> &Issuer {
        self.tokens.issuer()
    }

    /// The registered clients.
    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    /// Validates an authorization request (the query of the authorization endpoint).
    ///
    /// Errors about the client or its redirect URI are never redirected; the others are
    /// reported through the redirect URI with `state` and `iss`.
    pub fn authorize(&self, params: &Form) -> Result<AuthorizationRequest, AuthorizationError> {
        let client_id = params
            .get("client_id")
            .ok_or(AuthorizationError::UnknownClient)?;
        let client = self
            .clients
            .get(client_id)
            .ok_or(AuthorizationError::UnknownClient)?;
        self.authorize_for(params, client)
    }

    /// [`CodeFlow::authorize`] for a client not in the registry: one whose client ID metadata
    /// document was fetched and accepted ([`crate::cimd::client_from_document`]). The
    /// request's `client_id` must be that client's.
    pub fn authorize_for(
        &self,
        params: &Form,
        client: &RegisteredClient,
    ) -> Result<AuthorizationRequest, AuthorizationError> {
        if params.get("client_id") != Some(client.id.as_str()) {
            return Err(AuthorizationError::UnknownClient);
        }
        let redirect_uri = params
            .get("redirect_uri")
            .filter(|uri| client.redirect_uris.iter().any(|r| r == uri))
            .ok_or(AuthorizationError::RedirectUriNotRegistered)?;
        let state = params.get("state").map(str::to_owned);
        let fail = |code: ErrorCode, description: &'static str| AuthorizationError::Redirect {
            redirect_uri: redirect_uri.to_owned(),
            error: Box::new(OAuthError::new(code, description)),
            state: state.clone(),
            iss: self.issuer().as_str().to_owned(),
        };
        if params.get("response_type") != Some("code") {
            return Err(fail(
                ErrorCode::parse("unsupported_response_type").unwrap_or(ErrorCode::InvalidRequest),
                "response_type must be code",
            ));
        }
        if !client.allows(AUTHORIZATION_CODE_GRANT) {
            return Err(fail(
                ErrorCode::UnauthorizedClient,
                "client may not use the authorization code grant",
            ));
        }
        // PKCE with S256 only: no challenge, a `plain` (or absent, which means plain) method,
        // or a challenge that is not a SHA-256 digest are refused.
        let code_challenge = params.get("code_challenge").ok_or_else(|| {
            fail(
                ErrorCode::InvalidRequest,
                "a PKCE code_challenge (S256) is required",
            )
        })?;
        if params.get("code_challenge_method") != Some("S256") {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "code_challenge_method must be S256",
            ));
        }
        if !is_s256_challenge(code_challenge) {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "code_challenge is not a base64url SHA-256 digest",
            ));
        }
        // RFC 8707: exactly one governed resource.
        let resource = params.get("resource").ok_or_else(|| {
            fail(
                ErrorCode::InvalidTarget,
                "resource is required: name the MCP server",
            )
        })?;
        let config = self
            .resources
            .get(resource)
            .ok_or_else(|| fail(ErrorCode::InvalidTarget, "resource is not served here"))?;
        let scope = match params.get("scope") {
            Some(s) => {
                let scope = ScopeSet::parse(s)
                    .map_err(|_| fail(ErrorCode::InvalidScope, "scope is malformed"))?;
                if !scope.iter().all(|s| config.scopes.contains(s)) {
                    return Err(fail(
                        ErrorCode::InvalidScope,
                        "a requested scope is not defined by this resource",
                    ));
                }
                Some(scope)
            }
            None => (!config.default_scopes.is_empty()).then(|| config.default_scopes.clone()),
        };
        Ok(AuthorizationRequest {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            state,
            code_challenge: code_challenge.to_owned(),
            resource: config.id.clone(),
            scope,
        })
    }

    /// The redirect URL telling the client that the sign-in was refused (`access_denied`,
    /// e.g. the IdP's admission policy did not assign the user), with `state` and `iss`.
    pub fn refuse(&self, request: &AuthorizationRequest, error: OAuthError) -> String {
        AuthorizationError::Redirect {
            redirect_uri: request.redirect_uri.clone(),
            error: Box::new(error),
            state: request.state.clone(),
            iss: self.issuer().as_str().to_owned(),
        }
        .redirect_url()
        .unwrap_or_default()
    }

    /// Mints a one-time code for `user` bound to `request`, and returns the redirect URL
    /// carrying `code`, `state` (when sent) and `iss` (RFC 9207).
    pub fn issue_code(
        &self,
        request: &AuthorizationRequest,
        user: SignedInUser,
        now: UnixTime,
    ) -> Result<String, AuthorizationError> {
        let code = random_id().map_err(|_| AuthorizationError::Busy)?;
        {
            let mut codes = self.codes.lock().unwrap_or_else(PoisonError::into_inner);
            codes.retain(|_, c| match c {
                CodeState::Pending(p) => p.expires > now,
                CodeState::Redeemed { until, .. } => *until > now,
            });
            if codes.len() >= self.max_pending {
                return Err(AuthorizationError::Busy);
            }
            codes.insert(
                code_key(&code),
                CodeState::Pending(Box::new(PendingCode {
                    request: request.clone(),
                    user,
                    expires: now.plus(self.code_lifetime),
                })),
            );
        }
        let mut url = request.redirect_uri.clone();
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("code=");
        url.push_str(&code);
        if let Some(state) = &request.state {
            url.push_str("&state=");
            url.push_str(&encode_component(state));
        }
        url.push_str("&iss=");
        url.push_str(&encode_component(self.issuer().as_str()));
        Ok(url)
    }

    /// Handles an HTTP token request with `grant_type=authorization_code` and always answers:
    /// a token (with a [`CodeRedemption`] extension) or an OAuth error; both carry a
    /// [`ScopeLog`].
    pub async fn handle<B: AsRef<[u8]>, R: ReplayStore>(
        &self,
        req: &http::Request<B>,
        replay: &R,
        now: UnixTime,
    ) -> Response<Vec<u8>> {
        let mut log = ScopeLog::default();
        let result = match TokenRequest::from_http(req) {
            Ok(parts) => {
                async {
                    parts.check_shape()?;
                    let form =
                        Form::parse(parts.body, self.max_body).map_err(|e| form_error(&e))?;
                    self.token_form(&parts, &form, replay, now).await
                }
                .await
            }
            Err(e) => Err(request_error(&e)),
        };
        let mut response = match result {
            Ok(ok) => {
                log.granted.clone_from(&ok.scope);
                ok.to_response()
            }
            Err(e) => e.to_response(),
        };
        response.extensions_mut().insert(log);
        response
    }

    /// The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6): client authentication,
    /// a one-time unexpired code bound to this client and redirect URI, the PKCE verifier, the
    /// `resource` (when sent, the one the code is bound to), then the access token.
    pub async fn token_form<R: ReplayStore>(
        &self,
        req: &TokenRequest<'_>,
        form: &Form,
        replay: &R,
        now: UnixTime,
    ) -> Result<CodeTokenResponse, OAuthError> {
        form.require_grant_type(
            AUTHORIZATION_CODE_GRANT,
            "only the authorization_code grant is handled here",
        )?;
        let client = self
            .clients
            .authenticate(req, form, replay, now)
            .await
            .map_err(|e| client_auth_error(&e, self.issuer().as_str()))?;
        if !client.client.allows(AUTHORIZATION_CODE_GRANT) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "client may not use the authorization code grant",
            ));
        }
        let code = form
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_request("code_verifier is missing (PKCE)"))?;
        let key = code_key(code);
        let invalid = || OAuthError::invalid_grant("code is invalid, expired or already used");
        // One use: the code leaves the pending state whatever happens next. A code presented
        // again has its tokens revoked (RFC 6749 §4.1.2); its entry is kept so that a third
        // try does the same.
        let taken = {
            let mut codes = self.codes.lock().unwrap_or_else(PoisonError::into_inner);
            match codes.remove(&key) {
                Some(CodeState::Pending(p)) => Ok(*p),
                Some(CodeState::Redeemed { tokens, until }) => {
                    codes.insert(
                        key,
                        CodeState::Redeemed {
                            tokens: tokens.clone(),
                            until,
                        },
                    );
                    Err(Some(tokens))
                }
                None => Err(None),
            }
        };
        let pending = match taken {
            Ok(pending) => pending,
            Err(Some(tokens)) => {
                self.deny(&tokens, now).await?;
                return Err(OAuthError::invalid_grant(
                    "code was already used; the tokens issued from it are revoked",
                ));
            }
            Err(None) => return Err(invalid()),
        };
        if pending.expires <= now {
            return Err(invalid());
        }
        let request = &pending.request;
        if request.client_id != client.client.id
            || form.get("redirect_uri") != Some(request.redirect_uri.as_str())
        {
            return Err(OAuthError::invalid_grant(
                "code was issued to another client or redirect URI",
            ));
        }
        if !valid_verifier(verifier) || s256(verifier) != request.code_challenge {
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        if let Some(resource) = form.get("resource")
            && resource != request.resource.as_str()
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource differs from the authorization request's",
            ));
        }
        let user = &pending.user;
        let mut at = self
            .tokens
            .claims(
                user.subject.id.clone(),
                request.resource.clone(),
                request.client_id.clone(),
                now,
            )
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "token could not be issued"))?;
        // RV-24: longer than five minutes only while the IdP's revocation channel is verified.
        let lifetime = crate::revoke::access_token_lifetime(
            self.revoker.as_ref(),
            user.idp_issuer.as_str(),
            self.tokens.lifetime(),
            now,
        );
        at.exp = now.plus(lifetime);
        at.scope = request.scope.clone();
        at.tenant = user.subject.tenant.clone();
        at.groups = user.subject.groups.clone();
        at.roles = user.subject.roles.clone();
        at.auth_time = user.auth_time;
        at.acr = user.acr.clone();
        at.amr = user.amr.clone();
        // RV-12: an IdP-side revoke command reaches the local subject.
        if let Some(revoker) = &self.revoker {
            let scope = crate::revocation::RevocationScope::idp(user.idp_issuer.as_str(), None);
            revoker.record_mapping(&scope, &user.idp_subject, &at.sub);
        }
        let access_token = self
            .tokens
            .sign(&at)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "token could not be issued"))?;
        self.codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key,
                CodeState::Redeemed {
                    tokens: vec![(at.jti.as_str().to_owned(), at.exp)],
                    until: at.exp,
                },
            );
        Ok(CodeTokenResponse {
            access_token,
            expires_in: lifetime,
            scope: at.scope.clone(),
            resource: at.aud.clone(),
            redemption: CodeRedemption {
                client_id: at.client_id,
                idp_issuer: user.idp_issuer.clone(),
                idp_subject: user.idp_subject.clone(),
                subject: at.sub,
                resource: at.aud,
                scope: at.scope,
                access_token_jti: at.jti.as_str().to_owned(),
            },
        })
    }

    async fn deny(&self, tokens: &[(String, UnixTime)], now: UnixTime) -> Result<(), OAuthError> {
        let Some(revoker) = &self.revoker else {
            return Ok(());
        };
        for (jti, until) in tokens {
            revoker
                .ledger()
                .deny_token(self.issuer().as_str(), jti, *until, now)
                .await
                .map_err(OAuthError::from_error)?;
        }
        Ok(())
    }
}

/// The key a code is stored under: its SHA-256, so the map holds no usable code.
fn code_key(code: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, code.as_bytes()).as_ref());
    out
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    ema_jose::base64url::encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A base64url SHA-256 digest: 43 characters of the base64url alphabet.
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::client_auth::{ClientCredential, RegisteredClient};
    use crate::replay::InMemoryReplayStore;
    use crate::revocation::{LedgerChange, MemoryLedger, RevocationLedger};
    use ema_id_jag::ResourceConfig;
    use ema_jose::{Algorithm, KeyRing, SigningKey};

    const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
    const AS: &str = "https://auth.tasks.example";
    const MCP: &str = "https://mcp.tasks.example/mcp";
    const CB: &str = "http://127.0.0.1:33418/callback";
    const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn flow() -> (CodeFlow, Revoker) {
        let keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, Some("as".into())).unwrap(),
        ));
        let revoker = Revoker::new(MemoryLedger::new(), AS);
        let flow = CodeFlow::new(
            AccessTokenIssuer::new(Issuer::new(AS), keys),
            ClientRegistry::new([format!("{AS}/token")])
                .with(
                    RegisteredClient::new("ide", ClientCredential::Public).with_redirect_uris([CB]),
                )
                .with(
                    RegisteredClient::new("agent", ClientCredential::secret("s"))
                        .with_redirect_uris([CB])
                        .with_grant_types([crate::JWT_BEARER]),
                ),
            ResourceRegistry::new().with(
                ResourceConfig::new(MCP, ["tasks.read", "tasks.write"])
                    .with_default_scopes(ScopeSet::parse("tasks.read").unwrap()),
            ),
        )
        .with_revoker(revoker.clone());
        (flow, revoker)
    }

    fn query(extra: &[(&str, &str)], drop: &[&str]) -> Form {
        let challenge = s256(VERIFIER);
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", "ide"),
            ("redirect_uri", CB),
            ("state", "st-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", MCP),
            ("scope", "tasks.read"),
        ];
        params.retain(|(k, _)| !drop.contains(k) && !extra.iter().any(|(e, _)| e == k));
        params.extend_from_slice(extra);
        let q: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_component(v)))
            .collect();
        Form::parse(q.join("&").as_bytes(), 8192).unwrap()
    }

    fn user() -> SignedInUser {
        SignedInUser::new(
            LocalSubject::new("u-17").with_groups(["eng"]),
            "https://idp.acme.example",
            "00u8k2",
        )
    }

    fn code_of(url: &str) -> String {
        url.split("code=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_owned()
    }

    fn redeem(
        flow: &CodeFlow,
        code: &str,
        verifier: &str,
        redirect: &str,
        now: UnixTime,
    ) -> Result<CodeTokenResponse, OAuthError> {
        let body = format!(
            "grant_type=authorization_code&client_id=ide&code={code}&code_verifier={verifier}&redirect_uri={}",
            encode_component(redirect)
        );
        let form = Form::parse(body.as_bytes(), 8192).unwrap();
        let store = InMemoryReplayStore::new(10);
        pollster::block_on(flow.token_form(
            &TokenRequest::form(body.as_bytes()),
            &form,
            &store,
            now,
        ))
    }

    fn refused(flow: &CodeFlow, form: &Form) -> (String, String) {
        let e = flow.authorize(form).unwrap_err();
        let url = e.redirect_url().unwrap();
        let AuthorizationError::Redirect { error, .. } = e else {
            unreachable!()
        };
        (error.code.as_str().to_owned(), url)
    }

    #[test]
    fn code_flow_issues_an_audience_restricted_token_state_and_iss_echoed() {
        let (flow, _) = flow();
        let req = flow.authorize(&query(&[], &[])).unwrap();
        assert_eq!(req.resource.as_str(), MCP);
        let url = flow.issue_code(&req, user(), NOW).unwrap();
        // State echoed, iss present (RFC 9207).
        assert!(url.starts_with(&format!("{CB}?code=")), "{url}");
        assert!(
            url.ends_with("&state=st-1&iss=https%3A%2F%2Fauth.tasks.example"),
            "{url}"
        );
        let ok = redeem(&flow, &code_of(&url), VERIFIER, CB, NOW.plus(5)).unwrap();
        let claims = flow
            .tokens
            .verify_own(&ok.access_token, NOW.plus(5))
            .unwrap();
        assert_eq!(claims.aud.as_str(), MCP);
        assert_eq!(claims.sub, "u-17");
        assert_eq!(claims.client_id.as_str(), "ide");
        assert_eq!(claims.scope.unwrap().to_string(), "tasks.read");
        assert_eq!(ok.to_json()["token_type"], "Bearer");
        assert!(ok.to_json().get("refresh_token").is_none());
        assert!(!format!("{ok:?}").contains(&ok.access_token));
    }

    #[test]
    fn pkce_missing_plain_or_malformed_is_refused_through_the_redirect() {
        let (flow, _) = flow();
        assert!(flow.authorize(&query(&[], &[])).is_ok());
        for (extra, drop) in [
            (vec![], vec!["code_challenge"]),
            (vec![], vec!["code_challenge_method"]),
            (vec![("code_challenge_method", "plain")], vec![]),
            (vec![("code_challenge", "short")], vec![]),
        ] {
            let (code, url) = refused(&flow, &query(&extra, &drop));
            assert_eq!(code, "invalid_request", "{extra:?} {drop:?}");
            assert!(url.starts_with(&format!("{CB}?error=invalid_request")));
            assert!(url.contains("&state=st-1&iss="), "{url}");
        }
    }

    #[test]
    fn wrong_verifier_is_refused() {
        let (flow, _) = flow();
        let req = flow.authorize(&query(&[], &[])).unwrap();
        let url = flow.issue_code(&req, user(), NOW).unwrap();
        let err = redeem(&flow, &code_of(&url), &"x".repeat(43), CB, NOW).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
        assert_eq!(err.description, "PKCE verification failed");
        // Positive control: the right verifier on a fresh code.
        let url = flow.issue_code(&req, user(), NOW).unwrap();
        assert!(redeem(&flow, &code_of(&url), VERIFIER, CB, NOW).is_ok());
    }

    #[test]
    fn redirect_uri_must_match_exactly_and_is_never_redirected_to() {
        let (flow, _) = flow();
        for uri in [
            "http://127.0.0.1:33418/callback/",
            "http://127.0.0.1:33418/callback?x=1",
            "http://127.0.0.1:33419/callback",
            "HTTP://127.0.0.1:33418/callback",
        ] {
            assert_eq!(
                flow.authorize(&query(&[("redirect_uri", uri)], &[])),
                Err(AuthorizationError::RedirectUriNotRegistered),
                "{uri}"
            );
        }
        assert_eq!(
            flow.authorize(&query(&[("client_id", "nobody")], &[])),
            Err(AuthorizationError::UnknownClient)
        );
        // At the token endpoint too: the code is bound to its redirect URI.
        let req = flow.authorize(&query(&[], &[])).unwrap();
        let url = flow.issue_code(&req, user(), NOW).unwrap();
        let err = redeem(
            &flow,
            &code_of(&url),
            VERIFIER,
            "http://127.0.0.1:33418/cb",
            NOW,
        );
        assert_eq!(err.unwrap_err().code, ErrorCode::InvalidGrant);
    }

    #[test]
    fn reused_code_is_refused_and_its_tokens_revoked() {
        let (flow, revoker) = flow();
        let req = flow.authorize(&query(&[], &[])).unwrap();
        let url = flow.issue_code(&req, user(), NOW).unwrap();
        let code = code_of(&url);
        let ok = redeem(&flow, &code, VERIFIER, CB, NOW).unwrap();
        let jti = ok.redemption.access_token_jti.clone();
        let denied = |r: &Revoker| {
            pollster::block_on(r.ledger().snapshot())
                .unwrap()
                .changes
                .iter()
                .any(|c| matches!(c, LedgerChange::TokenDenied { jti: j, .. } if *j == jti))
        };
        assert!(!denied(&revoker), "not denied before the reuse");
        let err = redeem(&flow, &code, VERIFIER, CB, NOW.plus(1)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
        assert!(err.description.contains("already used"));
        assert!(denied(&revoker), "the token of the reused code is denied");
    }

    #[test]
    fn expired_code_is_refused() {
        let (flow, _) = flow();
        let req = flow.authorize(&query(&[], &[])).unwrap();
        let url = flow.issue_code(&req, user(), NOW).unwrap();
        let err = redeem(
            &flow,
            &code_of(&url),
            VERIFIER,
            CB,
            NOW.plus(DEFAULT_CODE_LIFETIME),
        );
        assert_eq!(err.unwrap_err().code, ErrorCode::InvalidGrant);
        let url = flow.issue_code(&req, user(), NOW).unwrap();
        assert!(
            redeem(
                &flow,
                &code_of(&url),
                VERIFIER,
                CB,
                NOW.plus(DEFAULT_CODE_LIFETIME - 1)
            )
            .is_ok()
        );
    }

    #[test]
    fn resource_is_required_and_governed_scopes_defined() {
        let (flow, _) = flow();
        let (code, _) = refused(&flow, &query(&[], &["resource"]));
        assert_eq!(code, "invalid_target");
        let (code, _) = refused(
            &flow,
            &query(&[("resource", "https://other.example/mcp")], &[]),
        );
        assert_eq!(code, "invalid_target");
        let (code, _) = refused(&flow, &query(&[("scope", "admin")], &[]));
        assert_eq!(code, "invalid_scope");
        let (code, _) = refused(&flow, &query(&[("response_type", "token")], &[]));
        assert_eq!(code, "unsupported_response_type");
        // A client restricted to the jwt-bearer grant may not run the code flow.
        let (code, _) = refused(&flow, &query(&[("client_id", "agent")], &[]));
        assert_eq!(code, "unauthorized_client");
        // No scope: the resource's defaults.
        let req = flow.authorize(&query(&[], &["scope"])).unwrap();
        assert_eq!(req.scope.unwrap().to_string(), "tasks.read");
    }

    #[test]
    fn metadata_document_client_runs_the_whole_flow() {
        // A CIMD client: not registered, its redirect URIs from its document; it redeems the
        // code as a public client identified by its URL.
        let (flow, _) = flow();
        let url = "https://app.example/oauth/client.json";
        let doc = format!(r#"{{"client_id":"{url}","redirect_uris":["{CB}"]}}"#);
        let client = crate::cimd::client_from_document(url, doc.as_bytes()).unwrap();
        let params = query(&[("client_id", url)], &[]);
        assert_eq!(
            flow.authorize(&params),
            Err(AuthorizationError::UnknownClient)
        );
        let req = flow.authorize_for(&params, &client).unwrap();
        // Another client's document does not stand in for this one.
        let other = query(&[("client_id", "https://evil.example/c.json")], &[]);
        assert_eq!(
            flow.authorize_for(&other, &client),
            Err(AuthorizationError::UnknownClient)
        );
        let code = code_of(&flow.issue_code(&req, user(), NOW).unwrap());
        let body = format!(
            "grant_type=authorization_code&client_id={}&code={code}&code_verifier={VERIFIER}&redirect_uri={}",
            encode_component(url),
            encode_component(CB)
        );
        let form = Form::parse(body.as_bytes(), 8192).unwrap();
        let store = InMemoryReplayStore::new(10);
        let ok = pollster::block_on(flow.token_form(
            &TokenRequest::form(body.as_bytes()),
            &form,
            &store,
            NOW,
        ))
        .unwrap();
        assert_eq!(ok.redemption.client_id.as_str(), url);
    }

    #[test]
    fn refusal_after_sign_in_is_redirected_with_state_and_iss() {
        let (flow, _) = flow();
        let req = flow.authorize(&query(&[], &[])).unwrap();
        let url = flow.refuse(
            &req,
            OAuthError::new(ErrorCode::AccessDenied, "not assigned"),
        );
        assert_eq!(
            url,
            format!(
                "{CB}?error=access_denied&error_description=not%20assigned&state=st-1&iss=https%3A%2F%2Fauth.tasks.example"
            )
        );
    }
}
