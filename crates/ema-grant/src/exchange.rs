//! The IdP's token exchange: ID token (or, when enabled, SAML 2.0 assertion) in, ID-JAG out
//! (RFC 8693 profiled by JAG §4.3 and §4.5; TX-1..TX-15, D-1, D-2, D-3, D-10, D-15, D-16).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ema_id_jag::{ClientId, IdJagGrant, IdJagIssuer, Issuer, Resource, ScopeSet, Subject};
use ema_jose::{
    AlgorithmSet, AudienceRule, ClaimError, Claims, HeaderError, HeaderPolicy, KeyLookupError,
    KeySource, ParseError, ParseOptions, TimeOptions, TokenKind, UnixTime, UnverifiedJwt,
    VerifyError,
};
#[cfg(feature = "saml")]
use ema_saml::SamlAssertionValidator;
use http::Response;
use serde_json::Value;

use crate::client_auth::{AuthMethod, ClientRegistry};
use crate::dpop::DpopValidator;
use crate::error::{ErrorCode, OAuthError, ToErrorCode, json_response};
use crate::form::{Form, FormError, TokenRequest};
use crate::issuance::IdJagIssuance;
use crate::jwt_bearer::{client_auth_error, dpop_error, form_error, request_error};
use crate::replay::{ReplayKey, ReplayKind, ReplayStore, Seen};

// The URNs under their ema-grant names, defined once in `ema_metadata::urn`. The legacy token
// type is issued only with `TokenExchangeGrantBuilder::accept_legacy_token_type` (D-10), SAML
// 2.0 subject tokens accepted only with the `saml` feature and
// `TokenExchangeGrantBuilder::saml_assertions` (TX-3); otherwise they are refused like any
// other unsupported subject token type.
pub use ema_metadata::urn::{
    ID_JAG as ID_JAG_TOKEN_TYPE, ID_TOKEN as ID_TOKEN_TYPE, LEGACY_ID_JAG as LEGACY_TOKEN_TYPE,
    SAML2 as SAML2_TOKEN_TYPE, TOKEN_EXCHANGE,
};

/// Why the subject ID token of a token exchange was refused (TX-4, D-1, D-3). Its
/// [`ToErrorCode`] is `invalid_grant` for every way the token is bad, and
/// `temporarily_unavailable` when the IdP's own keys cannot be consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectTokenError {
    /// Not a well-formed signed JWT.
    #[error("subject token is malformed")]
    Malformed(#[source] ParseError),
    /// The header is not an ID token's (SEC-5, TX-14: an ID-JAG or access token is refused).
    #[error("subject token header refused")]
    Header(#[source] HeaderError),
    /// `iss` is not this IdP (TX-4).
    #[error("subject token was not issued by this IdP")]
    WrongIssuer,
    /// No key of this IdP fits, or the key source could not be consulted.
    #[error("no key for the subject token")]
    Key(#[source] KeyLookupError),
    /// The signature does not verify.
    #[error("subject token signature refused")]
    Signature(#[source] VerifyError),
    /// Expired, not yet valid or too long-lived.
    #[error("subject token validity refused")]
    Time(#[source] ClaimError),
    /// `aud` is malformed.
    #[error("subject token audience is malformed")]
    Audience(#[source] ClaimError),
    /// `aud` (and `azp`) do not name the authenticated client (D-3).
    #[error("subject token was not issued to this client")]
    WrongClient,
    /// No `sub`.
    #[error("subject token has no subject")]
    NoSubject(#[source] ClaimError),
}

impl ToErrorCode for SubjectTokenError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Key(k) if k.is_unavailable() => ErrorCode::TemporarilyUnavailable,
            Self::Malformed(_)
            | Self::Header(_)
            | Self::WrongIssuer
            | Self::Key(_)
            | Self::Signature(_)
            | Self::Time(_)
            | Self::Audience(_)
            | Self::WrongClient
            | Self::NoSubject(_) => ErrorCode::InvalidGrant,
        }
    }

    fn error_description(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "subject token is malformed",
            Self::Header(_) => "subject token is not an acceptable ID token",
            Self::WrongIssuer => "subject token was not issued by this IdP",
            Self::Key(k) if k.is_unavailable() => "signing keys are unavailable; try again later",
            Self::Key(_) | Self::Signature(_) => "subject token signature is invalid",
            Self::Time(_) => "subject token expired",
            Self::Audience(_) => "subject token audience is malformed",
            Self::WrongClient => "subject token was not issued to this client",
            Self::NoSubject(_) => "subject token has no subject",
        }
    }
}

/// An authorization server this IdP issues ID-JAGs for (TX-6, TX-7, JAG-4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetServer {
    /// Its issuer identifier: the ID-JAG's `aud` (TX-6).
    pub issuer: Issuer,
    /// Other names clients may use for it as `audience` (TX-6).
    pub aliases: Vec<String>,
    /// The resources it governs (TX-7).
    pub resources: BTreeSet<String>,
    /// IdP-side client id → the client's id at this server (JAG-4).
    pub client_ids: HashMap<String, ClientId>,
}

impl TargetServer {
    /// A server governing `resources`.
    pub fn new<S: Into<String>>(
        issuer: impl Into<Issuer>,
        resources: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            aliases: Vec::new(),
            resources: resources.into_iter().map(Into::into).collect(),
            client_ids: HashMap::new(),
        }
    }

    /// Adds an alias.
    #[must_use]
    pub fn with_alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// Maps an IdP-side client id to its id at this server (JAG-4).
    #[must_use]
    pub fn with_client(
        mut self,
        idp_client_id: impl Into<String>,
        client_id_here: impl Into<ClientId>,
    ) -> Self {
        self.client_ids
            .insert(idp_client_id.into(), client_id_here.into());
        self
    }
}

/// Everything the admin policy decides on (TX-8).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PolicyRequest<'a> {
    /// The user's subject at the IdP.
    pub subject: &'a str,
    /// The verified subject token's claims: the ID token's, or (feature `saml`) a SAML
    /// assertion's as `ema_saml::SamlIdentity::to_claims` gives them (TX-3).
    pub id_token: &'a Claims,
    /// The requesting client's IdP-side id.
    pub client_id: &'a ClientId,
    /// The target authorization server.
    pub audience: &'a Issuer,
    /// The requested resources (may be empty: D-15).
    pub resources: &'a [Resource],
    /// The requested scopes.
    pub scope: Option<&'a ScopeSet>,
}

/// What the admin policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyDecision {
    /// Allowed, possibly narrowed (TX-9).
    Allow {
        /// The scopes to grant; `None` to omit `scope`. An empty set when scopes were requested
        /// means nothing acceptable is left (→ `invalid_scope`, D-2).
        scope: Option<ScopeSet>,
        /// The resources to grant (a subset of the request, or chosen by policy when none was
        /// requested).
        resources: Vec<Resource>,
        /// Groups to carry in the ID-JAG for the authorization server's principal.
        groups: Option<Vec<String>>,
    },
    /// Refused (→ `access_denied`, D-2).
    Deny {
        /// Why, for the `error_description`.
        reason: &'static str,
    },
    /// Step-up authentication required (→ `insufficient_user_authentication`, TX-11).
    StepUp {
        /// Maximum authentication age in seconds.
        max_age: Option<u64>,
        /// Required `acr` values.
        acr_values: Option<String>,
    },
    /// The user is disabled, suspended or deleted, or their sessions were revoked after the
    /// subject token was issued (→ `invalid_grant`, RV-1): the IdP re-checks the user's
    /// current status at every exchange. (Last, after the variants of 0.1.0: their
    /// discriminants stay as they were.)
    InactiveSubject {
        /// Why, for the `error_description`.
        reason: &'static str,
    },
}

/// The enterprise admin's policy: which users, through which clients, may reach which
/// authorization servers, resources and scopes (TX-8).
pub trait AdminPolicy: Send + Sync {
    /// Decides one request.
    fn decide(&self, request: &PolicyRequest<'_>) -> impl Future<Output = PolicyDecision> + Send;
}

/// One rule of a [`GroupPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupRule {
    /// Members of this group...
    pub group: String,
    /// ...may reach this authorization server...
    pub audience: Issuer,
    /// ...for these resources (empty: every resource it governs)...
    pub resources: BTreeSet<String>,
    /// ...with at most these scopes...
    pub scopes: ScopeSet,
    /// ...through these IdP-side clients (empty: any).
    pub clients: BTreeSet<String>,
}

impl GroupRule {
    /// A rule for `group` at `audience` with `scopes`, any resource, any client.
    pub fn new(group: impl Into<String>, audience: impl Into<Issuer>, scopes: ScopeSet) -> Self {
        Self {
            group: group.into(),
            audience: audience.into(),
            resources: BTreeSet::new(),
            scopes,
            clients: BTreeSet::new(),
        }
    }

    /// Restricts the resources.
    #[must_use]
    pub fn with_resources<S: Into<String>>(
        mut self,
        resources: impl IntoIterator<Item = S>,
    ) -> Self {
        self.resources = resources.into_iter().map(Into::into).collect();
        self
    }

    /// Restricts the clients.
    #[must_use]
    pub fn with_clients<S: Into<String>>(mut self, clients: impl IntoIterator<Item = S>) -> Self {
        self.clients = clients.into_iter().map(Into::into).collect();
        self
    }
}

/// A group-based admin policy: users belong to groups; rules assign groups to authorization
/// servers, resources and scopes. Requests are narrowed to what the rules allow.
#[derive(Debug, Clone, Default)]
pub struct GroupPolicy {
    members: HashMap<String, Vec<String>>,
    rules: Vec<GroupRule>,
}

impl GroupPolicy {
    /// An empty policy: everything is denied.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `subject` in `groups`.
    #[must_use]
    pub fn with_member<S: Into<String>>(
        mut self,
        subject: impl Into<String>,
        groups: impl IntoIterator<Item = S>,
    ) -> Self {
        self.members
            .insert(subject.into(), groups.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a rule.
    #[must_use]
    pub fn with_rule(mut self, rule: GroupRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Decides without awaiting.
    pub fn decide_now(&self, req: &PolicyRequest<'_>) -> PolicyDecision {
        let groups = self.members.get(req.subject).cloned().unwrap_or_default();
        let rules: Vec<&GroupRule> = self
            .rules
            .iter()
            .filter(|r| groups.contains(&r.group))
            .filter(|r| r.audience == *req.audience)
            .filter(|r| r.clients.is_empty() || r.clients.contains(req.client_id.as_str()))
            .collect();
        if rules.is_empty() {
            return PolicyDecision::Deny {
                reason: "user or client is not assigned to this authorization server",
            };
        }
        let resource_allowed = |res: &Resource| {
            rules
                .iter()
                .any(|r| r.resources.is_empty() || r.resources.contains(res.as_str()))
        };
        if !req.resources.iter().all(resource_allowed) {
            return PolicyDecision::Deny {
                reason: "user is not assigned to the requested resource",
            };
        }
        let allowed = rules
            .iter()
            .fold(ScopeSet::new(), |acc, r| acc.union(&r.scopes));
        let scope = match req.scope {
            Some(requested) => {
                let mut granted = requested.clone();
                granted.retain(|s| allowed.contains(s));
                Some(granted)
            }
            None => (!allowed.is_empty()).then_some(allowed),
        };
        PolicyDecision::Allow {
            scope,
            resources: req.resources.to_vec(),
            groups: (!groups.is_empty()).then_some(groups),
        }
    }
}

impl AdminPolicy for GroupPolicy {
    fn decide(&self, request: &PolicyRequest<'_>) -> impl Future<Output = PolicyDecision> + Send {
        std::future::ready(self.decide_now(request))
    }
}

/// The object-safe form of [`AdminPolicy`], for storing policies of different types behind one
/// pointer. Every [`AdminPolicy`] implements it; use it through [`DynAdminPolicy`].
pub trait ErasedAdminPolicy: Send + Sync {
    /// [`AdminPolicy::decide`] with the future boxed.
    fn decide_boxed<'a>(
        &'a self,
        request: &'a PolicyRequest<'a>,
    ) -> Pin<Box<dyn Future<Output = PolicyDecision> + Send + 'a>>;
}

impl<P: AdminPolicy> ErasedAdminPolicy for P {
    fn decide_boxed<'a>(
        &'a self,
        request: &'a PolicyRequest<'a>,
    ) -> Pin<Box<dyn Future<Output = PolicyDecision> + Send + 'a>> {
        Box::pin(self.decide(request))
    }
}

/// Any [`AdminPolicy`] behind one cheap-to-clone, nameable type: the default policy type of
/// [`TokenExchangeGrant`], so that an IdP names its grant without type parameters. Deciding costs
/// one boxed future per exchange.
///
/// ```
/// use ema_grant::{DynAdminPolicy, GroupPolicy};
///
/// let policy = DynAdminPolicy::new(GroupPolicy::new());
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct DynAdminPolicy(Arc<dyn ErasedAdminPolicy>);

impl DynAdminPolicy {
    /// Erases the type of `policy`.
    pub fn new(policy: impl AdminPolicy + 'static) -> Self {
        Self(Arc::new(policy))
    }

    /// Wraps a policy already shared behind an `Arc`.
    pub fn from_arc(policy: Arc<dyn ErasedAdminPolicy>) -> Self {
        Self(policy)
    }
}

impl std::fmt::Debug for DynAdminPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynAdminPolicy(..)")
    }
}

impl AdminPolicy for DynAdminPolicy {
    // An `async fn` captures each borrowed lifetime on its own; the boxed future lives inside.
    async fn decide(&self, request: &PolicyRequest<'_>) -> PolicyDecision {
        self.0.decide_boxed(request).await
    }
}

impl<P: AdminPolicy + ?Sized> AdminPolicy for Arc<P> {
    fn decide(&self, request: &PolicyRequest<'_>) -> impl Future<Output = PolicyDecision> + Send {
        (**self).decide(request)
    }
}

/// A successful token-exchange response (TX-10). `Debug` shows the ID-JAG's length only
/// (SEC-10).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenExchangeResponse {
    /// The ID-JAG.
    pub access_token: String,
    /// `urn:ietf:params:oauth:token-type:id-jag` (or the legacy value when requested, D-10).
    pub issued_token_type: &'static str,
    /// Seconds until expiry (D-16).
    pub expires_in: u64,
    /// The granted scopes, present when they differ from the request (TX-9).
    pub scope: Option<ScopeSet>,
    /// The ID-JAG's `jti`, for the audit trail (not sent).
    pub jti: String,
    /// The issued ID-JAG's identifying claims, for the audit trail (not sent; attached to
    /// [`TokenExchangeResponse::to_response`] as an extension).
    pub issuance: IdJagIssuance,
}

impl std::fmt::Debug for TokenExchangeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchangeResponse")
            .field(
                "access_token",
                &crate::form::Redacted(self.access_token.len()),
            )
            .field("issued_token_type", &self.issued_token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("jti", &self.jti)
            .field("issuance", &self.issuance)
            .finish()
    }
}

impl TokenExchangeResponse {
    /// The JSON body: `token_type` `N_A`, no refresh token (TX-10).
    pub fn to_json(&self) -> Value {
        /// The members of a token-exchange response (RFC 8693 §2.2.1), as sent.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            issued_token_type: &'a str,
            access_token: &'a str,
            token_type: &'a str,
            expires_in: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            scope: Option<String>,
        }
        let body = Body {
            issued_token_type: self.issued_token_type,
            access_token: &self.access_token,
            token_type: "N_A",
            expires_in: self.expires_in,
            scope: self.scope.as_ref().map(ToString::to_string),
        };
        // Strings and a number only: serialising cannot fail.
        serde_json::to_value(body).unwrap_or_default()
    }

    /// The HTTP response (200, `Cache-Control: no-store`), carrying the
    /// [`IdJagIssuance`] as an extension for the server's audit trail (never sent).
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let mut response = json_response(http::StatusCode::OK, &self.to_json());
        response.extensions_mut().insert(self.issuance.clone());
        response
    }
}

/// Parses a token-exchange body: as [`Form::parse`], except that several `audience` values
/// are `invalid_target` (D-2).
pub fn parse_exchange_form(body: &[u8], max_len: usize) -> Result<Form, OAuthError> {
    match Form::parse(body, max_len) {
        Ok(form) => Ok(form),
        Err(FormError::Repeated { name }) if name == "audience" => Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "exactly one audience is allowed",
        )),
        Err(e) => Err(form_error(&e)),
    }
}

/// Without the `saml` feature there is no SAML validator: this stand-in has no values, so
/// `TokenExchangeGrant::saml` is always `None` and the SAML branches cannot be reached.
#[cfg(not(feature = "saml"))]
#[derive(Debug)]
pub(crate) enum SamlAssertionValidator {}

/// Where a SAML subject assertion's single use is recorded (SEC-1).
#[derive(Debug)]
struct SamlOnce {
    issuer: String,
    id: String,
    until: UnixTime,
}

/// The IdP's token-exchange grant processor.
///
/// Built with [`TokenExchangeGrant::builder`]. The type parameters (key source for the IdP's own
/// ID tokens, admin policy, replay store) default to their erased forms
/// ([`DynKeySource`](ema_jose::DynKeySource), [`DynAdminPolicy`],
/// [`DynReplayStore`](crate::DynReplayStore)), which is what
/// [`build`](crate::TokenExchangeGrantBuilder::build) returns: an IdP names it
/// `TokenExchangeGrant`. [`build_typed`](crate::TokenExchangeGrantBuilder::build_typed) keeps
/// the concrete types.
#[derive(Debug)]
pub struct TokenExchangeGrant<
    K = ema_jose::DynKeySource,
    P = DynAdminPolicy,
    R = crate::replay::DynReplayStore,
> {
    pub(crate) issuer: IdJagIssuer,
    pub(crate) id_token_keys: K,
    pub(crate) clients: ClientRegistry,
    pub(crate) replay: R,
    pub(crate) targets: Vec<TargetServer>,
    pub(crate) policy: P,
    pub(crate) dpop: DpopValidator,
    pub(crate) legacy: bool,
    pub(crate) id_token_time: TimeOptions,
    pub(crate) algorithms: AlgorithmSet,
    pub(crate) max_body: usize,
    pub(crate) saml: Option<SamlAssertionValidator>,
}

impl<K: KeySource, P: AdminPolicy, R: ReplayStore> TokenExchangeGrant<K, P, R> {
    /// The ID-JAG issuer.
    pub fn issuer(&self) -> &IdJagIssuer {
        &self.issuer
    }

    /// The replay store (shared with other endpoints of the same IdP, e.g. for client
    /// assertions at its authorization-code grant).
    pub fn replay(&self) -> &R {
        &self.replay
    }

    fn target(&self, audience: &str) -> Option<&TargetServer> {
        // TX-6: the issuer identifier, or a configured alias, matched exactly (D-12).
        self.targets
            .iter()
            .find(|t| t.issuer == audience || t.aliases.iter().any(|a| a == audience))
    }

    /// Handles an HTTP token request and always answers.
    pub async fn handle<B: AsRef<[u8]>>(
        &self,
        req: &http::Request<B>,
        now: UnixTime,
    ) -> Response<Vec<u8>> {
        let result = match TokenRequest::from_http(req) {
            Ok(parts) => self.exchange(&parts, now).await,
            Err(e) => Err(request_error(&e)),
        };
        match result {
            Ok(ok) => ok.to_response(),
            Err(e) => e.to_response(),
        }
    }

    /// Validates the subject ID token (TX-4, D-1, D-3) and returns its claims.
    async fn validate_id_token(
        &self,
        token: &str,
        client: &ClientId,
        now: UnixTime,
    ) -> Result<Claims, OAuthError> {
        self.check_id_token(token, client, now)
            .await
            .map_err(OAuthError::from_error)
    }

    async fn check_id_token(
        &self,
        token: &str,
        client: &ClientId,
        now: UnixTime,
    ) -> Result<Claims, SubjectTokenError> {
        // D-1: every way an ID token can be bad is `invalid_grant` (SubjectTokenError).
        let jwt = UnverifiedJwt::parse(token, &ParseOptions::new())
            .map_err(SubjectTokenError::Malformed)?;
        // SEC-5 / TX-14: an ID-JAG, access token or any other typed JWT is not an ID token.
        let policy = HeaderPolicy::for_kind(TokenKind::IdToken).with_algorithms(self.algorithms);
        let alg = policy
            .check(jwt.header())
            .map_err(SubjectTokenError::Header)?;
        // TX-4: issued by this IdP.
        let own = self.issuer.issuer().as_str();
        if jwt.unverified_claims().string("iss").ok().flatten() != Some(own) {
            return Err(SubjectTokenError::WrongIssuer);
        }
        let key = self
            .id_token_keys
            .resolve(own, jwt.header().kid(), alg)
            .await
            .map_err(SubjectTokenError::Key)?;
        let verified = jwt
            .verify(&policy, &key)
            .map_err(SubjectTokenError::Signature)?;
        let claims = verified.into_claims();
        claims
            .check_validity(&self.id_token_time, now)
            .map_err(SubjectTokenError::Time)?;
        // D-3: `aud` is the client, or an array containing it with `azp` = client when >1.
        let aud = claims
            .audience(AudienceRule::AnyOf)
            .map_err(SubjectTokenError::Audience)?;
        let client_ok = match aud.as_slice() {
            [only] => *only == client.as_str(),
            many => {
                many.contains(&client.as_str())
                    && claims.string("azp").ok().flatten() == Some(client.as_str())
            }
        };
        if !client_ok {
            return Err(SubjectTokenError::WrongClient);
        }
        claims
            .required_string("sub")
            .map_err(SubjectTokenError::NoSubject)?;
        Ok(claims)
    }

    /// The admin policy (TX-8), for the IdP's other decisions about the same users (the
    /// admission of a sign-in to an authorization server, `SsoProvider::admit` (feature `sso`)).
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// Whether SAML 2.0 subject assertions are accepted: the `saml` feature is on and
    /// `TokenExchangeGrantBuilder::saml_assertions` configured a validator
    /// (TX-3). An endpoint may use it to run those exchanges, which parse and verify XML, away
    /// from its async workers.
    pub fn accepts_saml_assertions(&self) -> bool {
        self.saml.is_some()
    }

    /// Validates a SAML 2.0 subject assertion (TX-3, TX-4, D-1) and returns it as claims, with
    /// what its single use is recorded under (SEC-1).
    #[cfg(feature = "saml")]
    fn validate_saml(
        validator: &SamlAssertionValidator,
        token: &str,
        client: &ClientId,
        now: UnixTime,
    ) -> Result<(Claims, SamlOnce), OAuthError> {
        // D-1: every way a subject assertion can be bad is `invalid_grant` (SamlError's
        // ToErrorCode, beside the enum in ema-saml).
        let identity = validator
            .validate_base64url(token, client.as_str(), now)
            .map_err(OAuthError::from_error)?;
        // SEC-1: kept until the assertion can no longer be accepted (its earliest
        // `NotOnOrAfter` plus the largest leeway).
        let once = SamlOnce {
            issuer: identity.issuer.clone(),
            id: identity.assertion_id.clone(),
            until: identity
                .not_on_or_after
                .plus(ema_saml::MAX_LEEWAY.as_secs()),
        };
        Ok((identity.to_claims(), once))
    }

    /// Without the `saml` feature no validator exists, so this is never called.
    #[cfg(not(feature = "saml"))]
    fn validate_saml(
        validator: &SamlAssertionValidator,
        _token: &str,
        _client: &ClientId,
        _now: UnixTime,
    ) -> Result<(Claims, SamlOnce), OAuthError> {
        match *validator {}
    }

    /// Runs token exchange on a request.
    pub async fn exchange(
        &self,
        req: &TokenRequest<'_>,
        now: UnixTime,
    ) -> Result<TokenExchangeResponse, OAuthError> {
        req.check_shape()?;
        let form = parse_exchange_form(req.body, self.max_body)?;
        self.exchange_form(req, &form, now).await
    }

    /// Runs token exchange on a request whose form the caller already parsed (for endpoints
    /// that dispatch on `grant_type`).
    pub async fn exchange_form(
        &self,
        req: &TokenRequest<'_>,
        form: &Form,
        now: UnixTime,
    ) -> Result<TokenExchangeResponse, OAuthError> {
        form.require_grant_type(TOKEN_EXCHANGE, "only token exchange is supported here")?;
        // TX-2: authenticate the client on every request.
        let realm = self.issuer.issuer().as_str();
        let client = self
            .clients
            .authenticate(req, form, &self.replay, now)
            .await
            .map_err(|e| client_auth_error(&e, realm))?;
        // TX-2 / SEC-7: never an unauthenticated client, even where the registry accepts
        // public clients for other grants.
        if client.method == AuthMethod::None {
            return Err(
                OAuthError::invalid_client("client authentication is required", realm)
                    .with_cause("token exchange needs an authenticated client, not a public one"),
            );
        }
        if !client.client.allows(TOKEN_EXCHANGE) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "client may not use token exchange",
            ));
        }
        // TX-1: the required parameters.
        let requested = form
            .get("requested_token_type")
            .ok_or_else(|| OAuthError::invalid_request("requested_token_type is missing"))?;
        let issued_token_type = match requested {
            ID_JAG_TOKEN_TYPE => ID_JAG_TOKEN_TYPE,
            // D-10: the legacy type only behind the flag.
            LEGACY_TOKEN_TYPE if self.legacy => LEGACY_TOKEN_TYPE,
            _ => {
                return Err(OAuthError::invalid_request(
                    "requested_token_type is not supported",
                ));
            }
        };
        let audience = form
            .get("audience")
            .ok_or_else(|| OAuthError::invalid_request("audience is missing"))?;
        let subject_token = form
            .get("subject_token")
            .ok_or_else(|| OAuthError::invalid_request("subject_token is missing"))?;
        let subject_token_type = form
            .get("subject_token_type")
            .ok_or_else(|| OAuthError::invalid_request("subject_token_type is missing"))?;
        // TX-12: `actor_token_type` iff `actor_token`; the actor token itself is not acted on.
        if form.get("actor_token").is_some() != form.get("actor_token_type").is_some() {
            return Err(OAuthError::invalid_request(
                "actor_token and actor_token_type must be sent together",
            ));
        }
        // TX-3: ID tokens, and SAML 2.0 assertions when a validator is configured; other
        // subject token types are not supported here.
        let saml = match subject_token_type {
            ID_TOKEN_TYPE => None,
            SAML2_TOKEN_TYPE if self.saml.is_some() => self.saml.as_ref(),
            _ => {
                return Err(OAuthError::invalid_request(
                    "subject_token_type is not supported",
                ));
            }
        };
        let scope = form
            .get("scope")
            .map(ScopeSet::parse)
            .transpose()
            .map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "scope is malformed"))?;
        // TX-13: a DPoP proof, when sent, binds the ID-JAG to its key.
        let dpop = match req.dpop {
            Some(proof) => Some(
                self.dpop
                    .validate(proof, "POST", &self.replay, now)
                    .await
                    .map_err(|e| dpop_error(&e))?,
            ),
            None => None,
        };
        // TX-4 / D-1 / D-3 / TX-14; for SAML, TX-4 / D-1 with the audience mapped to the client.
        let (id_token, saml_once) = match saml {
            Some(validator) => {
                let (claims, once) =
                    Self::validate_saml(validator, subject_token, &client.client.id, now)?;
                (claims, Some(once))
            }
            None => (
                self.validate_id_token(subject_token, &client.client.id, now)
                    .await?,
                None,
            ),
        };
        // TX-6 / D-2: unknown audience → `invalid_target`.
        let target = self.target(audience).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidTarget,
                "audience is not a known authorization server",
            )
        })?;
        // TX-7: every requested resource must be governed by that server (D-15: none is fine).
        let resources: Vec<Resource> = form
            .get("resource")
            .map(Resource::new)
            .into_iter()
            .collect();
        if resources
            .iter()
            .any(|r| !target.resources.contains(r.as_str()))
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource not governed by audience",
            ));
        }
        // JAG-4: the client's id at the target server.
        let client_id_there = target
            .client_ids
            .get(client.client.id.as_str())
            .cloned()
            .ok_or_else(|| {
                OAuthError::new(ErrorCode::AccessDenied, "client not assigned for target")
            })?;
        let sub = id_token
            .required_string("sub")
            .unwrap_or_default()
            .to_owned();
        // TX-8: the admin policy.
        let decision = self
            .policy
            .decide(&PolicyRequest {
                subject: &sub,
                id_token: &id_token,
                client_id: &client.client.id,
                audience: &target.issuer,
                resources: &resources,
                scope: scope.as_ref(),
            })
            .await;
        let (granted_scope, granted_resources, groups) = match decision {
            PolicyDecision::Allow {
                scope: granted,
                resources: granted_resources,
                groups,
            } => (granted, granted_resources, groups),
            PolicyDecision::Deny { reason } => {
                return Err(OAuthError::new(ErrorCode::AccessDenied, reason));
            }
            // RV-1: the subject's current status, not the token's, decides.
            PolicyDecision::InactiveSubject { reason } => {
                return Err(OAuthError::invalid_grant(reason));
            }
            PolicyDecision::StepUp {
                max_age,
                acr_values,
            } => {
                let mut e = OAuthError::new(
                    ErrorCode::InsufficientUserAuthentication,
                    "stronger or more recent authentication is required",
                );
                e.max_age = max_age;
                e.acr_values = acr_values;
                return Err(e);
            }
        };
        // The policy may narrow but never widen the resources (TX-9, TX-7).
        if granted_resources.iter().any(|r| {
            !target.resources.contains(r.as_str())
                || (!resources.is_empty() && !resources.contains(r))
        }) {
            return Err(OAuthError::new(
                ErrorCode::ServerError,
                "policy granted an ungoverned resource",
            ));
        }
        // D-2: no acceptable scope left → `invalid_scope`.
        if scope.is_some() && granted_scope.as_ref().is_none_or(ScopeSet::is_empty) {
            // Scope names only (not secrets): the client sees which of its scopes were refused.
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "no requested scope is allowed for this user and client: {}",
                    scope.as_ref().map(ToString::to_string).unwrap_or_default()
                ),
            ));
        }
        let mut grant = IdJagGrant::new(Subject::new(sub), target.issuer.clone(), client_id_there);
        grant.resources = granted_resources;
        grant.scope = granted_scope.clone();
        grant.tenant = id_token.string("tenant").ok().flatten().map(str::to_owned);
        grant.auth_time = id_token.numeric_date("auth_time").ok().flatten();
        grant.acr = id_token.string("acr").ok().flatten().map(str::to_owned);
        grant.amr = id_token.get("amr").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        });
        grant.cnf_jkt = dpop.map(|p| p.jkt);
        grant.groups = groups;
        // SEC-1 / TX-4: a SAML bearer assertion is single-use, keyed by (`Issuer`, `ID`), and
        // consumed only now that an ID-JAG will be issued (as D-6 for ID-JAGs: a refused
        // request does not burn it).
        if let Some(once) = &saml_once {
            let key = ReplayKey {
                kind: ReplayKind::SamlAssertion,
                issuer: &once.issuer,
                jti: &once.id,
            };
            match self.replay.check_and_insert(key, once.until, now).await {
                Ok(Seen::First) => {}
                Ok(Seen::Again) => {
                    return Err(OAuthError::invalid_grant(
                        "this SAML assertion was already used; obtain a new one from the IdP",
                    ));
                }
                Err(e) => return Err(OAuthError::from_error(e)),
            }
        }
        let issued = self
            .issuer
            .issue(grant, now)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "ID-JAG could not be issued"))?;
        // TX-9: `scope` in the response when it differs from the request.
        let scope_out = if granted_scope == scope {
            None
        } else {
            granted_scope
        };
        let claims = issued.claims;
        Ok(TokenExchangeResponse {
            access_token: issued.token,
            issued_token_type,
            expires_in: issued.expires_in,
            scope: scope_out,
            jti: claims.jti.as_str().to_owned(),
            issuance: IdJagIssuance {
                issuer: claims.iss,
                subject: claims.sub,
                audience: claims.aud,
                client_id: claims.client_id,
                resources: claims.resource.unwrap_or_default(),
                scope: claims.scope,
                jti: claims.jti,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt_bearer::tests::assert_redacted;

    /// TX-3: the subject token type this crate names is the one `ema-saml` validates.
    #[cfg(feature = "saml")]
    #[test]
    fn tx3_saml2_token_type_is_ema_saml_s() {
        assert_eq!(SAML2_TOKEN_TYPE, ema_saml::SAML2_TOKEN_TYPE);
    }

    #[test]
    fn the_issuance_travels_beside_the_body() {
        let issuance = IdJagIssuance {
            issuer: Issuer::new("https://idp.example"),
            subject: Subject::new("alice"),
            audience: Issuer::new("https://as.example"),
            client_id: ClientId::new("c1"),
            resources: vec![Resource::new("https://mcp.example/mcp")],
            scope: Some(ScopeSet::parse("tasks.read").unwrap()),
            jti: ema_id_jag::JwtId::new("idjag-jti-1"),
        };
        let response = TokenExchangeResponse {
            access_token: "idjag.payload.sig".into(),
            issued_token_type: ID_JAG_TOKEN_TYPE,
            expires_in: 300,
            scope: None,
            jti: "idjag-jti-1".into(),
            issuance: issuance.clone(),
        };
        let http = response.to_response();
        assert_eq!(http.extensions().get(), Some(&issuance));
        let body = String::from_utf8_lossy(http.body());
        assert!(body.contains("idjag.payload.sig") && !body.contains("idjag-jti-1"));
    }

    #[test]
    fn sec10_token_exchange_response_debug_is_redacted() {
        let response = TokenExchangeResponse {
            access_token: "idjag.Hp4RkT8sLq2.sigQwE".into(),
            issued_token_type: ID_JAG_TOKEN_TYPE,
            expires_in: 300,
            scope: Some(ScopeSet::parse("tasks.read").unwrap()),
            jti: "jti-visible".into(),
            issuance: IdJagIssuance {
                issuer: Issuer::new("https://idp.example"),
                subject: Subject::new("alice"),
                audience: Issuer::new("https://as.example"),
                client_id: ClientId::new("c1"),
                resources: Vec::new(),
                scope: None,
                jti: ema_id_jag::JwtId::new("jti-visible"),
            },
        };
        for text in [format!("{response:?}"), format!("{response:#?}")] {
            assert_redacted(
                &text,
                &["Hp4RkT8sLq2", "sigQwE"],
                &["id-jag", "300", "tasks.read", "jti-visible"],
            );
        }
    }
}
