//! The MCP authorization code flow at the authorization server (RFC 6749 §4.1 with PKCE,
//! RFC 7636; RFC 8707 resource indicators; RFC 9207 `iss`; RFC 9449 DPoP), sans-I/O.
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
//!    OpenID Connect, [`IdpSignIn`](crate::IdpSignIn), and maps the IdP subject with the
//!    jwt-bearer grant's subject resolver), then [`CodeFlow::issue_code`] mints a one-time,
//!    short-lived code bound to the client, the redirect URI, the challenge, the resource and
//!    the subject, and returns the redirect URL carrying `code`, `state` and `iss`.
//! 3. [`CodeFlow::token_form`] runs the `authorization_code` grant at the token endpoint and
//!    issues the same audience-restricted RFC 9068 access token as the jwt-bearer grant,
//!    DPoP-bound when the request carries a valid proof (as the jwt-bearer grant does, D-17). A
//!    code presented a second time is refused and the token issued from it is denied in the
//!    revocation ledger (RFC 6749 §4.1.2, OAuth 2.1 §4.1.3).
//!
//! # No server state per code
//!
//! A code is the flow's state itself, sealed (AES-256-GCM, [`SealingKey`]) under a key only the
//! server holds: nothing is stored when a code is issued, so no number of sign-ins can fill a
//! table and lock other users out, and any instance holding the same key redeems it. Single use
//! is the replay store's (the one the token endpoint passes, shared across instances on Redis):
//! the code's id is recorded there until the code expires, when a token is issued. The access
//! token's `jti` is that id, so a second presentation knows which token to deny without any
//! record of it. A cluster gives every instance the same key ([`CodeFlow::with_sealing_key`]);
//! by default each flow has a random key of its own.

use ema_id_jag::{ClientId, Issuer, JwtId, LocalSubject, Resource, ResourceRegistry, ScopeSet};
use ema_jose::{UnixTime, random_id};
use http::Response;

use crate::access_token::{AccessTokenIssuer, IdJagOrigin};
use crate::client_auth::{ClientRegistry, RegisteredClient};
use crate::dpop::DpopValidator;
use crate::error::{ErrorCode, OAuthError};
use crate::form::{Form, TokenRequest, encode_component};
use crate::issuance::IdJagRedemption;
use crate::jwt_bearer::{
    AccessTokenResponse, client_auth_error, dpop_error, form_error, request_error,
};
use crate::replay::{ReplayKey, ReplayKind, ReplayStore, Seen};
use crate::revocation::RevocationLedger as _;
use crate::revoke::Revoker;
use crate::scope_log::ScopeLog;
use crate::seal::SealingKey;

/// `grant_type` of the authorization code grant.
pub const AUTHORIZATION_CODE_GRANT: &str = "authorization_code";

/// The default code lifetime in seconds (RFC 6749 §4.1.2 recommends at most ten minutes; a
/// browser round trip needs far less).
pub const DEFAULT_CODE_LIFETIME: u64 = 60;

/// The longest `state` a client may send, in bytes: it travels sealed through the IdP and back.
pub const MAX_STATE_LEN: usize = 1024;

/// The authenticated data of a sealed code: a code never opens as anything else.
const CODE_PURPOSE: &[u8] = b"ema-grant authorization code v1";

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
    /// The server could not mint a code or a sign-in (the random source or the cipher
    /// failed): fail closed, try again later.
    #[error("the server cannot start or finish a sign-in now")]
    Unavailable,
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
    /// The IdP sign-in this user came from, for the audit trail: the ID token's `jti`, else its
    /// `sid`, else the `nonce` the server sent with the sign-in (empty when unknown).
    pub sign_in: String,
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
            sign_in: String::new(),
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

    /// Sets the identifier of the IdP sign-in (see [`SignedInUser::sign_in`]).
    #[must_use]
    pub fn with_sign_in(mut self, id: impl Into<String>) -> Self {
        self.sign_in = id.into();
        self
    }
}

/// What a sealed code carries: the authorization request and the user, and when it expires.
#[derive(serde::Serialize, serde::Deserialize)]
struct SealedCode {
    /// The code's id: the replay key and the access token's `jti`.
    id: String,
    exp: u64,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    idp: String,
    idp_sub: String,
    sign_in: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    amr: Option<Vec<String>>,
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
/// )
/// // D-24: a public client (`none`) only where public clients are enabled.
/// .with_public_clients(true);
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
    dpop: DpopValidator,
    code_lifetime: u64,
    max_body: usize,
    seal: Option<SealingKey>,
}

impl CodeFlow {
    /// The code flow of the authorization server whose access tokens `tokens` signs, for the
    /// clients of `clients` (each with its redirect URIs; a client restricted to other grant
    /// types is refused) and the resources of `resources`.
    ///
    /// Public clients (`none`) are accepted only where `clients` enables them
    /// ([`ClientRegistry::allow_public`], or [`CodeFlow::with_public_clients`]; D-24, D-11).
    /// Codes live [`DEFAULT_CODE_LIFETIME`] seconds and are sealed with a random key of this
    /// flow; DPoP proofs are checked against `<issuer>/token` unless
    /// [`CodeFlow::with_token_endpoint`] says otherwise.
    pub fn new(
        tokens: AccessTokenIssuer,
        clients: ClientRegistry,
        resources: ResourceRegistry,
    ) -> Self {
        let token_endpoint = format!("{}/token", tokens.issuer().as_str().trim_end_matches('/'));
        Self {
            tokens,
            clients,
            resources,
            revoker: None,
            dpop: DpopValidator::new(token_endpoint),
            code_lifetime: DEFAULT_CODE_LIFETIME,
            max_body: crate::form::DEFAULT_MAX_BODY,
            seal: SealingKey::generate().ok(),
        }
    }

    /// The code flow sharing a jwt-bearer grant's issuer, clients (and whether public clients
    /// are enabled), resources, revoker and DPoP validator (the token endpoint URL): one
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
        flow.dpop = grant.dpop.clone();
        flow
    }

    /// Accepts public clients (`token_endpoint_auth_method` `none`, PKCE binding their codes)
    /// at this flow, or not: those registered with
    /// [`ClientCredential::Public`](crate::ClientCredential::Public), and unregistered Client
    /// ID Metadata Document clients ([`crate::cimd::is_metadata_document_url`]). D-24: `none`
    /// only where enabled; off unless the registry had it on.
    #[must_use]
    pub fn with_public_clients(mut self, allow: bool) -> Self {
        self.clients = self.clients.allow_public(allow);
        self
    }

    /// Denies the token of a code presented twice in this revoker's ledger (without one,
    /// the second presentation is still refused, and the token lives until it expires).
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

    /// Seals codes with `key`: every instance of one authorization server needs the same key
    /// to redeem the codes of the others.
    #[must_use]
    pub fn with_sealing_key(mut self, key: SealingKey) -> Self {
        self.seal = Some(key);
        self
    }

    /// Checks DPoP proofs at the token endpoint `url` (their `htu`, RFC 9449 §4.3).
    #[must_use]
    pub fn with_token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.dpop = DpopValidator::new(url);
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

    /// Whether public clients are accepted ([`CodeFlow::with_public_clients`], D-24).
    pub fn allows_public_clients(&self) -> bool {
        self.clients.allows_public()
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
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
            return Err(AuthorizationError::Redirect {
                redirect_uri: redirect_uri.to_owned(),
                error: Box::new(OAuthError::invalid_request("state is too long")),
                state: None,
                iss: self.issuer().as_str().to_owned(),
            });
        }
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
        // D-24: `none` only where public clients are enabled; the token endpoint would refuse
        // this client, so it does not get as far as the sign-in either.
        if client.auth_method() == crate::client_auth::AuthMethod::None
            && !self.clients.allows_public()
        {
            return Err(fail(
                ErrorCode::UnauthorizedClient,
                "public clients are not accepted by this server",
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

    /// Mints a one-time code for `user` bound to `request` (sealed: nothing is stored), and
    /// returns the redirect URL carrying `code`, `state` (when sent) and `iss` (RFC 9207).
    pub fn issue_code(
        &self,
        request: &AuthorizationRequest,
        user: SignedInUser,
        now: UnixTime,
    ) -> Result<String, AuthorizationError> {
        let seal = self.seal.as_ref().ok_or(AuthorizationError::Unavailable)?;
        let sealed = SealedCode {
            id: random_id().map_err(|_| AuthorizationError::Unavailable)?,
            exp: now.plus(self.code_lifetime).as_secs(),
            client_id: request.client_id.as_str().to_owned(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            resource: request.resource.as_str().to_owned(),
            scope: request.scope.as_ref().map(ToString::to_string),
            sub: user.subject.id,
            tenant: user.subject.tenant,
            groups: user.subject.groups,
            roles: user.subject.roles,
            idp: user.idp_issuer.as_str().to_owned(),
            idp_sub: user.idp_subject,
            sign_in: user.sign_in,
            auth_time: user.auth_time.map(UnixTime::as_secs),
            acr: user.acr,
            amr: user.amr,
        };
        let code = serde_json::to_vec(&sealed)
            .ok()
            .and_then(|json| seal.seal(CODE_PURPOSE, &json))
            .ok_or(AuthorizationError::Unavailable)?;
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
    /// a token (with an [`IdJagRedemption`] extension naming the grant and the IdP sign-in,
    /// for the audit trail) or an OAuth error; both carry a [`ScopeLog`].
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
    /// the DPoP proof when sent (RFC 9449 §5), an unexpired code sealed by this server for this
    /// client and redirect URI, the PKCE verifier, the `resource` (when sent, the one the code
    /// is bound to), single use through `replay`, then the access token (`DPoP`-bound with a
    /// proof, else `Bearer`).
    pub async fn token_form<R: ReplayStore>(
        &self,
        req: &TokenRequest<'_>,
        form: &Form,
        replay: &R,
        now: UnixTime,
    ) -> Result<AccessTokenResponse, OAuthError> {
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
        // The DPoP proof, when sent, is validated before the code (as the jwt-bearer grant
        // validates it before the assertion; RFC 9449 §5, DP-16).
        let dpop = match req.dpop {
            Some(proof) => Some(
                self.dpop
                    .validate(proof, "POST", replay, now)
                    .await
                    .map_err(|e| dpop_error(&e))?,
            ),
            None => None,
        };
        let code = form
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_request("code_verifier is missing (PKCE)"))?;
        let invalid = || OAuthError::invalid_grant("code is invalid, expired or already used");
        let sealed: SealedCode = self
            .seal
            .as_ref()
            .and_then(|seal| seal.open(CODE_PURPOSE, code))
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(invalid)?;
        let expires = UnixTime::from_secs(sealed.exp);
        if expires <= now {
            return Err(invalid());
        }
        if sealed.client_id != client.client.id.as_str()
            || form.get("redirect_uri") != Some(sealed.redirect_uri.as_str())
        {
            return Err(OAuthError::invalid_grant(
                "code was issued to another client or redirect URI",
            ));
        }
        if !valid_verifier(verifier) || s256(verifier) != sealed.code_challenge {
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        if let Some(resource) = form.get("resource")
            && resource != sealed.resource
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource differs from the authorization request's",
            ));
        }
        let resource = self.resources.get(&sealed.resource).ok_or_else(|| {
            OAuthError::new(ErrorCode::InvalidTarget, "resource is not served here")
        })?;
        // AS-18, DP-20: a resource that demands sender-constrained tokens gets none unbound.
        if resource.require_dpop && dpop.is_none() {
            return Err(OAuthError::invalid_grant(
                "this resource requires a DPoP-bound token: send a DPoP proof",
            ));
        }
        // One use, across every instance sharing the replay store; recorded only now that a
        // token will be issued (as the jwt-bearer grant consumes an ID-JAG), so a stolen code
        // presented without its verifier cannot burn it. A second presentation denies the
        // token issued from it: its `jti` is the code's id (RFC 6749 §4.1.2).
        let key = ReplayKey {
            kind: ReplayKind::AuthorizationCode,
            issuer: self.issuer().as_str(),
            jti: &sealed.id,
        };
        match replay
            .check_and_insert(key, expires, now)
            .await
            .map_err(OAuthError::from_error)?
        {
            Seen::First => {}
            Seen::Again => {
                // The token lived at most the configured lifetime from a redemption before
                // the code expired.
                self.deny(&sealed.id, expires.plus(self.tokens.lifetime()), now)
                    .await?;
                return Err(OAuthError::invalid_grant(
                    "code was already used; the token issued from it is revoked",
                ));
            }
        }
        self.issue(sealed, &client.client.id, dpop.map(|p| p.jkt), now)
    }

    /// The access token for a redeemed code.
    fn issue(
        &self,
        sealed: SealedCode,
        client_id: &ClientId,
        jkt: Option<String>,
        now: UnixTime,
    ) -> Result<AccessTokenResponse, OAuthError> {
        let server_error = || OAuthError::new(ErrorCode::ServerError, "token could not be issued");
        let mut at = self
            .tokens
            .claims(
                sealed.sub.clone(),
                Resource::new(sealed.resource.as_str()),
                client_id.clone(),
                now,
            )
            .map_err(|_| server_error())?;
        at.jti = JwtId::new(sealed.id.as_str());
        // RV-24: longer than five minutes only while the IdP's revocation channel is verified.
        let lifetime = crate::revoke::access_token_lifetime(
            self.revoker.as_ref(),
            &sealed.idp,
            self.tokens.lifetime(),
            now,
        );
        at.exp = now.plus(lifetime);
        at.scope = sealed
            .scope
            .as_deref()
            .map(ScopeSet::parse)
            .transpose()
            .map_err(|_| server_error())?;
        at.tenant = sealed.tenant;
        at.groups = sealed.groups;
        at.roles = sealed.roles;
        at.auth_time = sealed.auth_time.map(UnixTime::from_secs);
        at.acr = sealed.acr;
        at.amr = sealed.amr;
        at.cnf_jkt = jkt;
        // RV-12: an IdP-side revoke command reaches the local subject.
        if let Some(revoker) = &self.revoker {
            let scope = crate::revocation::RevocationScope::idp(&sealed.idp, None);
            revoker.record_mapping(&scope, &sealed.idp_sub, &at.sub);
        }
        let access_token = self.tokens.sign(&at).map_err(|_| server_error())?;
        Ok(AccessTokenResponse {
            access_token,
            token_type: if at.cnf_jkt.is_some() {
                "DPoP"
            } else {
                "Bearer"
            },
            expires_in: lifetime,
            scope: at.scope.clone(),
            resource: at.aud.as_str().to_owned(),
            authorization_details: None,
            jti: at.jti.as_str().to_owned(),
            redemption: IdJagRedemption {
                id_jag: IdJagOrigin {
                    iss: Issuer::new(sealed.idp),
                    jti: JwtId::new(sealed.sign_in),
                    sub: sealed.idp_sub,
                },
                client_id: at.client_id,
                subject: at.sub,
                resource: at.aud,
                scope: at.scope,
                access_token_jti: at.jti,
                grant_type: AUTHORIZATION_CODE_GRANT,
            },
        })
    }

    async fn deny(&self, jti: &str, until: UnixTime, now: UnixTime) -> Result<(), OAuthError> {
        let Some(revoker) = &self.revoker else {
            return Ok(());
        };
        revoker
            .ledger()
            .deny_token(self.issuer().as_str(), jti, until, now)
            .await
            .map_err(OAuthError::from_error)
    }
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    ema_jose::base64url::encode(digest.as_ref())
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

    struct Fx {
        flow: CodeFlow,
        revoker: Revoker,
        store: InMemoryReplayStore,
    }

    fn registry() -> ClientRegistry {
        ClientRegistry::new([format!("{AS}/token")])
            .with(RegisteredClient::new("ide", ClientCredential::Public).with_redirect_uris([CB]))
            .with(
                RegisteredClient::new("agent", ClientCredential::secret("s"))
                    .with_redirect_uris([CB])
                    .with_grant_types([crate::JWT_BEARER]),
            )
            .with(
                RegisteredClient::new("web", ClientCredential::secret("w"))
                    .with_redirect_uris([CB]),
            )
    }

    fn keys() -> Arc<KeyRing> {
        Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, Some("as".into())).unwrap(),
        ))
    }

    fn resources() -> ResourceRegistry {
        ResourceRegistry::new().with(
            ResourceConfig::new(MCP, ["tasks.read", "tasks.write"])
                .with_default_scopes(ScopeSet::parse("tasks.read").unwrap()),
        )
    }

    fn fx() -> Fx {
        let revoker = Revoker::new(MemoryLedger::new(), AS);
        let flow = CodeFlow::new(
            AccessTokenIssuer::new(Issuer::new(AS), keys()),
            registry(),
            resources(),
        )
        .with_public_clients(true)
        .with_revoker(revoker.clone());
        Fx {
            flow,
            revoker,
            store: InMemoryReplayStore::new(100),
        }
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
        .with_sign_in("idt-1")
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

    fn redeem_as(
        fx: &Fx,
        client_id: &str,
        code: &str,
        verifier: &str,
        redirect: &str,
        now: UnixTime,
    ) -> Result<AccessTokenResponse, OAuthError> {
        let body = format!(
            "grant_type=authorization_code&client_id={}&code={code}&code_verifier={verifier}&redirect_uri={}",
            encode_component(client_id),
            encode_component(redirect)
        );
        let form = Form::parse(body.as_bytes(), 8192).unwrap();
        pollster::block_on(fx.flow.token_form(
            &TokenRequest::form(body.as_bytes()),
            &form,
            &fx.store,
            now,
        ))
    }

    fn redeem(
        fx: &Fx,
        code: &str,
        verifier: &str,
        redirect: &str,
        now: UnixTime,
    ) -> Result<AccessTokenResponse, OAuthError> {
        redeem_as(fx, "ide", code, verifier, redirect, now)
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
        let fx = fx();
        let req = fx.flow.authorize(&query(&[], &[])).unwrap();
        assert_eq!(req.resource.as_str(), MCP);
        let url = fx.flow.issue_code(&req, user(), NOW).unwrap();
        // State echoed, iss present (RFC 9207).
        assert!(url.starts_with(&format!("{CB}?code=")), "{url}");
        assert!(
            url.ends_with("&state=st-1&iss=https%3A%2F%2Fauth.tasks.example"),
            "{url}"
        );
        let ok = redeem(&fx, &code_of(&url), VERIFIER, CB, NOW.plus(5)).unwrap();
        let claims = fx
            .flow
            .tokens
            .verify_own(&ok.access_token, NOW.plus(5))
            .unwrap();
        assert_eq!(claims.aud.as_str(), MCP);
        assert_eq!(claims.sub, "u-17");
        assert_eq!(claims.client_id.as_str(), "ide");
        assert_eq!(claims.scope.unwrap().to_string(), "tasks.read");
        assert_eq!(claims.groups, ["eng"]);
        assert_eq!(claims.cnf_jkt, None);
        assert_eq!(ok.to_json()["token_type"], "Bearer");
        assert!(ok.to_json().get("refresh_token").is_none());
        assert!(!format!("{ok:?}").contains(&ok.access_token));
        // The redemption names the grant and links the IdP sign-in to the access token.
        let r = &ok.redemption;
        assert_eq!(r.grant_type, AUTHORIZATION_CODE_GRANT);
        assert_eq!(r.id_jag.iss.as_str(), "https://idp.acme.example");
        assert_eq!(r.id_jag.jti.as_str(), "idt-1");
        assert_eq!(r.id_jag.sub, "00u8k2");
        assert_eq!(r.access_token_jti, claims.jti);
        let response = ok.to_response();
        assert_eq!(
            response.extensions().get::<IdJagRedemption>(),
            Some(&ok.redemption)
        );
    }

    #[test]
    fn codes_are_sealed_and_nothing_is_stored_until_redemption() {
        let fx = fx();
        let req = fx.flow.authorize(&query(&[], &[])).unwrap();
        // Many codes: no table fills up (the old design refused beyond 10 000 pending).
        for _ in 0..20_000 {
            fx.flow.issue_code(&req, user(), NOW).unwrap();
        }
        let code = code_of(&fx.flow.issue_code(&req, user(), NOW).unwrap());
        assert!(!code.contains("u-17") && !code.contains("eng"), "{code}");
        // Another instance with the same key redeems it; one with another key does not.
        let key = [9u8; 32];
        let a = fx_with_key(&key);
        let b = fx_with_key(&key);
        let code = code_of(&a.flow.issue_code(&req, user(), NOW).unwrap());
        assert_eq!(
            redeem(&fx, &code, VERIFIER, CB, NOW).unwrap_err().code,
            ErrorCode::InvalidGrant
        );
        assert!(redeem(&b, &code, VERIFIER, CB, NOW).is_ok());
        // An altered code is not a code.
        let mut altered = code.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(
            redeem(&a, &altered, VERIFIER, CB, NOW).unwrap_err().code,
            ErrorCode::InvalidGrant
        );
    }

    fn fx_with_key(key: &[u8; 32]) -> Fx {
        let mut fx = fx();
        fx.flow = fx
            .flow
            .with_sealing_key(crate::seal::SealingKey::from_bytes(key).unwrap());
        fx
    }

    #[test]
    fn pkce_missing_plain_or_malformed_is_refused_through_the_redirect() {
        let fx = fx();
        assert!(fx.flow.authorize(&query(&[], &[])).is_ok());
        for (extra, drop) in [
            (vec![], vec!["code_challenge"]),
            (vec![], vec!["code_challenge_method"]),
            (vec![("code_challenge_method", "plain")], vec![]),
            (vec![("code_challenge", "short")], vec![]),
        ] {
            let (code, url) = refused(&fx.flow, &query(&extra, &drop));
            assert_eq!(code, "invalid_request", "{extra:?} {drop:?}");
            assert!(url.starts_with(&format!("{CB}?error=invalid_request")));
            assert!(url.contains("&state=st-1&iss="), "{url}");
        }
    }

    #[test]
    fn wrong_or_missing_verifier_is_refused_and_does_not_burn_the_code() {
        let fx = fx();
        let req = fx.flow.authorize(&query(&[], &[])).unwrap();
        let code = code_of(&fx.flow.issue_code(&req, user(), NOW).unwrap());
        let err = redeem(&fx, &code, &"x".repeat(43), CB, NOW).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
        assert_eq!(err.description, "PKCE verification failed");
        // No verifier at all.
        let body = format!(
            "grant_type=authorization_code&client_id=ide&code={code}&redirect_uri={}",
            encode_component(CB)
        );
        let form = Form::parse(body.as_bytes(), 8192).unwrap();
        let err = pollster::block_on(fx.flow.token_form(
            &TokenRequest::form(body.as_bytes()),
            &form,
            &fx.store,
            NOW,
        ))
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        // Positive control: the right verifier on the same code (a thief without the
        // verifier cannot burn it).
        assert!(redeem(&fx, &code, VERIFIER, CB, NOW).is_ok());
    }

    #[test]
    fn redirect_uri_must_match_exactly_and_is_never_redirected_to() {
        let fx = fx();
        for uri in [
            "http://127.0.0.1:33418/callback/",
            "http://127.0.0.1:33418/callback?x=1",
            "http://127.0.0.1:33419/callback",
            "HTTP://127.0.0.1:33418/callback",
        ] {
            assert_eq!(
                fx.flow.authorize(&query(&[("redirect_uri", uri)], &[])),
                Err(AuthorizationError::RedirectUriNotRegistered),
                "{uri}"
            );
        }
        assert_eq!(
            fx.flow.authorize(&query(&[("client_id", "nobody")], &[])),
            Err(AuthorizationError::UnknownClient)
        );
        // At the token endpoint too: the code is bound to its redirect URI.
        let req = fx.flow.authorize(&query(&[], &[])).unwrap();
        let code = code_of(&fx.flow.issue_code(&req, user(), NOW).unwrap());
        let err = redeem(&fx, &code, VERIFIER, "http://127.0.0.1:33418/cb", NOW);
        assert_eq!(err.unwrap_err().code, ErrorCode::InvalidGrant);
        assert!(redeem(&fx, &code, VERIFIER, CB, NOW).is_ok());
    }

    #[test]
    fn reused_code_is_refused_and_its_token_revoked() {
        let fx = fx();
        let req = fx.flow.authorize(&query(&[], &[])).unwrap();
        let code = code_of(&fx.flow.issue_code(&req, user(), NOW).unwrap());
        let ok = redeem(&fx, &code, VERIFIER, CB, NOW).unwrap();
        let jti = ok.redemption.access_token_jti.as_str().to_owned();
        let denied = |r: &Revoker| {
            pollster::block_on(r.ledger().snapshot())
                .unwrap()
                .changes
                .iter()
                .any(|c| matches!(c, LedgerChange::TokenDenied { jti: j, .. } if *j == jti))
        };
        assert!(!denied(&fx.revoker), "not denied before the reuse");
        let err = redeem(&fx, &code, VERIFIER, CB, NOW.plus(1)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
        assert!(err.description.contains("already used"));
        assert!(
            denied(&fx.revoker),
            "the token of the reused code is denied"
        );
        // The denial outlives the token: until the code's expiry plus the token lifetime.
        let until = pollster::block_on(fx.revoker.ledger().snapshot())
            .unwrap()
            .changes
            .iter()
            .find_map(|c| match c {
                LedgerChange::TokenDenied { until, .. } => Some(*until),
                _ => None,
            })
            .unwrap();
        assert!(
            until >= NOW.plus(DEFAULT_CODE_LIFETIME).as_secs() + 300,
            "{until}"
        );
    }

    #[test]
    fn expired_code_is_refused() {
        let fx = fx();
        let req = fx.flow.authorize(&query(&[], &[])).unwrap();
        let url = fx.flow.issue_code(&req, user(), NOW).unwrap();
        let err = redeem(
            &fx,
            &code_of(&url),
            VERIFIER,
            CB,
            NOW.plus(DEFAULT_CODE_LIFETIME),
        );
        assert_eq!(err.unwrap_err().code, ErrorCode::InvalidGrant);
        let url = fx.flow.issue_code(&req, user(), NOW).unwrap();
        assert!(
            redeem(
                &fx,
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
        let fx = fx();
        let flow = &fx.flow;
        let (code, _) = refused(flow, &query(&[], &["resource"]));
        assert_eq!(code, "invalid_target");
        let (code, _) = refused(
            flow,
            &query(&[("resource", "https://other.example/mcp")], &[]),
        );
        assert_eq!(code, "invalid_target");
        let (code, _) = refused(flow, &query(&[("scope", "admin")], &[]));
        assert_eq!(code, "invalid_scope");
        let (code, _) = refused(flow, &query(&[("response_type", "token")], &[]));
        assert_eq!(code, "unsupported_response_type");
        // A client restricted to the jwt-bearer grant may not run the code flow.
        let (code, _) = refused(flow, &query(&[("client_id", "agent")], &[]));
        assert_eq!(code, "unauthorized_client");
        // A state too long to carry through the IdP: refused, not echoed.
        let long = "s".repeat(MAX_STATE_LEN + 1);
        let (code, url) = refused(flow, &query(&[("state", long.as_str())], &[]));
        assert_eq!(code, "invalid_request");
        assert!(!url.contains("&state="), "{url}");
        let ok = "s".repeat(MAX_STATE_LEN);
        assert!(
            flow.authorize(&query(&[("state", ok.as_str())], &[]))
                .is_ok()
        );
        // No scope: the resource's defaults.
        let req = flow.authorize(&query(&[], &["scope"])).unwrap();
        assert_eq!(req.scope.unwrap().to_string(), "tasks.read");
    }

    #[test]
    fn d24_public_clients_only_where_enabled() {
        // D-24: `none` only where public clients are enabled. Off: the registered public client
        // is refused at the authorization endpoint and at the token endpoint; a confidential
        // client still runs the flow.
        let revoker = Revoker::new(MemoryLedger::new(), AS);
        let off = Fx {
            flow: CodeFlow::new(
                AccessTokenIssuer::new(Issuer::new(AS), keys()),
                registry(),
                resources(),
            )
            .with_revoker(revoker.clone()),
            revoker,
            store: InMemoryReplayStore::new(100),
        };
        assert!(!off.flow.allows_public_clients());
        let (code, _) = refused(&off.flow, &query(&[], &[]));
        assert_eq!(code, "unauthorized_client");
        // Even with a code in hand (issued while it was on, same key): invalid_client.
        let key = [3u8; 32];
        let on = fx_with_key(&key);
        let req = on.flow.authorize(&query(&[], &[])).unwrap();
        let code = code_of(&on.flow.issue_code(&req, user(), NOW).unwrap());
        let off = Fx {
            flow: off
                .flow
                .with_sealing_key(crate::seal::SealingKey::from_bytes(&key).unwrap()),
            ..off
        };
        let err = redeem(&off, &code, VERIFIER, CB, NOW).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidClient);
        // Positive control: a confidential client (Basic) runs the whole flow while off.
        let req = off
            .flow
            .authorize(&query(&[("client_id", "web")], &[]))
            .unwrap();
        let code = code_of(&off.flow.issue_code(&req, user(), NOW).unwrap());
        let body = format!(
            "grant_type=authorization_code&code={code}&code_verifier={VERIFIER}&redirect_uri={}",
            encode_component(CB)
        );
        let form = Form::parse(body.as_bytes(), 8192).unwrap();
        let mut req = TokenRequest::form(body.as_bytes());
        req.authorization = Some("Basic d2ViOnc=");
        let ok = pollster::block_on(off.flow.token_form(&req, &form, &off.store, NOW)).unwrap();
        assert_eq!(ok.redemption.client_id.as_str(), "web");
        // And with public clients on, the public client redeems (the other tests' setup).
        assert!(
            redeem(
                &on,
                &code_of(
                    &on.flow
                        .issue_code(&on.flow.authorize(&query(&[], &[])).unwrap(), user(), NOW)
                        .unwrap()
                ),
                VERIFIER,
                CB,
                NOW
            )
            .is_ok()
        );
    }

    #[test]
    fn metadata_document_client_runs_the_whole_flow_https_and_loopback_http() {
        // A CIMD client: not registered, its redirect URIs from its document; it redeems the
        // code as a public client identified by its URL. The loopback `http` id of development
        // is accepted at both endpoints by the same rule.
        for url in [
            "https://app.example/oauth/client.json",
            "http://127.0.0.1:8085/oauth/client.json",
        ] {
            let fx = fx();
            let doc = format!(r#"{{"client_id":"{url}","redirect_uris":["{CB}"]}}"#);
            let client = crate::cimd::client_from_document(url, doc.as_bytes()).unwrap();
            let params = query(&[("client_id", url)], &[]);
            assert_eq!(
                fx.flow.authorize(&params),
                Err(AuthorizationError::UnknownClient)
            );
            let req = fx.flow.authorize_for(&params, &client).unwrap();
            // Another client's document does not stand in for this one.
            let other = query(&[("client_id", "https://evil.example/c.json")], &[]);
            assert_eq!(
                fx.flow.authorize_for(&other, &client),
                Err(AuthorizationError::UnknownClient)
            );
            let code = code_of(&fx.flow.issue_code(&req, user(), NOW).unwrap());
            let ok = redeem_as(&fx, url, &code, VERIFIER, CB, NOW).unwrap();
            assert_eq!(ok.redemption.client_id.as_str(), url);
        }
        // Not a metadata-document id: http off loopback is an unknown client at the token
        // endpoint.
        let fx = fx();
        let err = redeem_as(&fx, "http://app.example/c.json", "x", VERIFIER, CB, NOW).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidClient);
    }

    fn dpop_proof(key: &SigningKey, jti: &str, htu: &str) -> String {
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert(
            "jwk".into(),
            serde_json::Value::Object(key.verifying_key().public_jwk().clone()),
        );
        let claims =
            serde_json::json!({"jti": jti, "htm": "POST", "htu": htu, "iat": NOW.as_secs()});
        key.sign_with_header(header, claims.to_string().as_bytes())
            .unwrap()
    }

    fn redeem_with_proof(
        fx: &Fx,
        code: &str,
        proof: Option<&str>,
    ) -> Result<AccessTokenResponse, OAuthError> {
        let body = format!(
            "grant_type=authorization_code&client_id=ide&code={code}&code_verifier={VERIFIER}&redirect_uri={}",
            encode_component(CB)
        );
        let form = Form::parse(body.as_bytes(), 8192).unwrap();
        let mut req = TokenRequest::form(body.as_bytes());
        req.dpop = proof;
        pollster::block_on(fx.flow.token_form(&req, &form, &fx.store, NOW))
    }

    #[test]
    fn dpop_proof_binds_the_token_as_at_the_jwt_bearer_grant() {
        let fx = fx();
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let req = fx.flow.authorize(&query(&[], &[])).unwrap();
        let token_endpoint = format!("{AS}/token");
        // A valid proof: a DPoP-bound token (cnf.jkt = the proof key's thumbprint).
        let code = code_of(&fx.flow.issue_code(&req, user(), NOW).unwrap());
        let ok =
            redeem_with_proof(&fx, &code, Some(&dpop_proof(&key, "p1", &token_endpoint))).unwrap();
        assert_eq!(ok.token_type, "DPoP");
        assert_eq!(ok.to_json()["token_type"], "DPoP");
        let claims = fx.flow.tokens.verify_own(&ok.access_token, NOW).unwrap();
        assert_eq!(
            claims.cnf_jkt.as_deref(),
            Some(key.verifying_key().thumbprint())
        );
        // An invalid proof (another endpoint; a replayed jti): invalid_dpop_proof, and the code
        // is not burnt.
        let code = code_of(&fx.flow.issue_code(&req, user(), NOW).unwrap());
        let wrong = dpop_proof(&key, "p2", "https://elsewhere.example/token");
        let err = redeem_with_proof(&fx, &code, Some(&wrong)).unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_dpop_proof");
        let replayed = dpop_proof(&key, "p1", &token_endpoint);
        let err = redeem_with_proof(&fx, &code, Some(&replayed)).unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_dpop_proof");
        // No proof: Bearer (positive control on the same code).
        let ok = redeem_with_proof(&fx, &code, None).unwrap();
        assert_eq!(ok.token_type, "Bearer");
        assert_eq!(
            fx.flow
                .tokens
                .verify_own(&ok.access_token, NOW)
                .unwrap()
                .cnf_jkt,
            None
        );
    }

    #[test]
    fn a_resource_requiring_dpop_gets_no_unbound_token() {
        // AS-18, DP-20.
        let revoker = Revoker::new(MemoryLedger::new(), AS);
        let fx = Fx {
            flow: CodeFlow::new(
                AccessTokenIssuer::new(Issuer::new(AS), keys()),
                registry(),
                ResourceRegistry::new()
                    .with(ResourceConfig::new(MCP, ["tasks.read"]).with_require_dpop(true)),
            )
            .with_public_clients(true)
            .with_token_endpoint("https://auth.tasks.example/oauth/token"),
            revoker,
            store: InMemoryReplayStore::new(100),
        };
        let req = fx.flow.authorize(&query(&[], &[])).unwrap();
        let code = code_of(&fx.flow.issue_code(&req, user(), NOW).unwrap());
        let err = redeem_with_proof(&fx, &code, None).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
        assert!(err.description.contains("DPoP"), "{}", err.description);
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let proof = dpop_proof(&key, "p1", "https://auth.tasks.example/oauth/token");
        assert_eq!(
            redeem_with_proof(&fx, &code, Some(&proof))
                .unwrap()
                .token_type,
            "DPoP"
        );
    }

    #[test]
    fn refusal_after_sign_in_is_redirected_with_state_and_iss() {
        let fx = fx();
        let req = fx.flow.authorize(&query(&[], &[])).unwrap();
        let url = fx.flow.refuse(
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
