//! Builders of the two grants: the required pieces are the arguments of `builder(...)`, the
//! rest have defaults, and `build()` refuses a configuration that could never issue a token
//! ([`BuildError`]) instead of panicking or failing every request later.

use std::sync::Arc;
use std::time::Duration;

use ema_id_jag::{
    IdJagIssuer, IdJagValidator, IdJagValidatorBuilder, Issuer, ResourceConfig, ResourceRegistry,
    SubjectResolver, TrustRegistry, TrustedIssuer, ValidatorBuildError,
};
use ema_jose::{AlgorithmSet, DynKeySource, KeySource, ParseOptions, TimeOptions};

use crate::access_token::AccessTokenIssuer;
use crate::client_auth::{ClientRegistry, RegisteredClient};
use crate::dpop::DpopValidator;
use crate::exchange::{AdminPolicy, DynAdminPolicy, TargetServer, TokenExchangeGrant};
use crate::form::DEFAULT_MAX_BODY;
use crate::jwt_bearer::JwtBearerGrant;
use crate::redemption::IdJagRedeemer;
use crate::replay::{DynReplayStore, InMemoryReplayStore, ReplayStore};
use crate::revocation::RevocationLedger;
use crate::revoke::Revoker;
#[cfg(feature = "saml")]
use ema_saml::SamlAssertionValidator;

/// Why a grant builder refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The ID-JAG validator would refuse every assertion: no trusted issuer, or no resource
    /// (authorization server only).
    #[error(transparent)]
    Validator(#[from] ValidatorBuildError),
    /// The IdP issues ID-JAGs for no authorization server: every exchange would be refused.
    #[error("no target authorization server is configured")]
    NoTargets,
    /// No client is registered and public clients are not accepted: every request would fail
    /// client authentication.
    #[error("no client is registered and public clients are not accepted")]
    NoClients,
    /// The client registry's assertion audiences do not name the server's issuer, so no
    /// `private_key_jwt` assertion addressed to it could be accepted (RFC 7523 §3).
    #[error("the client registry's audiences do not include the issuer `{issuer}`")]
    ClientAudience {
        /// The server's issuer identifier.
        issuer: String,
    },
    /// The IdP accepts no algorithm for its subject ID tokens: every exchange would be
    /// refused (D-26).
    #[error("no algorithm is accepted for subject ID tokens")]
    NoIdTokenAlgorithms,
    /// The SAML validator given to the IdP could accept no assertion (TX-3, TX-4).
    #[cfg(feature = "saml")]
    #[error("SAML subject assertions: {0}")]
    Saml(#[from] ema_saml::SamlConfigError),
}

/// The clients of a server: a registry given whole, clients added one by one, or both.
#[derive(Debug, Clone, Default)]
struct Clients {
    registry: Option<ClientRegistry>,
    added: Vec<RegisteredClient>,
}

impl Clients {
    /// The registry, by default one whose assertion audiences are the issuer and the token
    /// endpoint (RFC 7523 §3), checked for consistency with `issuer`.
    fn build(self, issuer: &str, token_endpoint: &str) -> Result<ClientRegistry, BuildError> {
        let registry = self.added.into_iter().fold(
            self.registry
                .unwrap_or_else(|| ClientRegistry::new([issuer, token_endpoint])),
            ClientRegistry::with,
        );
        if registry.is_empty() && !registry.allows_public() {
            return Err(BuildError::NoClients);
        }
        if !registry.audiences().iter().any(|a| a == issuer) {
            return Err(BuildError::ClientAudience {
                issuer: issuer.to_owned(),
            });
        }
        Ok(registry)
    }
}

/// What both grant builders configure the same way: clients, replay store, token endpoint URL
/// and body cap. Their setters are generated once by [`common_setters`].
#[derive(Debug)]
struct Common<R> {
    clients: Clients,
    replay: R,
    token_endpoint: Option<String>,
    max_body: usize,
}

impl Common<InMemoryReplayStore> {
    fn new() -> Self {
        Self {
            clients: Clients::default(),
            replay: InMemoryReplayStore::default(),
            token_endpoint: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

impl<R> Common<R> {
    fn with_replay<R2>(self, replay: R2) -> Common<R2> {
        Common {
            clients: self.clients,
            replay,
            token_endpoint: self.token_endpoint,
            max_body: self.max_body,
        }
    }

    /// The token endpoint URL (default `{issuer}/token`) and the client registry checked
    /// against `issuer`.
    fn endpoint_and_clients(
        &mut self,
        issuer: &Issuer,
    ) -> Result<(String, ClientRegistry), BuildError> {
        let token_endpoint = self
            .token_endpoint
            .take()
            .unwrap_or_else(|| default_token_endpoint(issuer));
        let clients = std::mem::take(&mut self.clients).build(issuer.as_str(), &token_endpoint)?;
        Ok((token_endpoint, clients))
    }
}

/// The setters of [`Common`], one definition for both builders (a builder holds it as
/// `self.common`).
macro_rules! common_setters {
    () => {
        /// Registers a client (added to the registry, by default one whose assertion audiences
        /// are the issuer and the token endpoint).
        pub fn client(mut self, client: RegisteredClient) -> Self {
            self.common.clients.added.push(client);
            self
        }

        /// Replaces the client registry (clients added with [`client`](Self::client) join it).
        /// Its audiences must include the issuer ([`BuildError::ClientAudience`]).
        pub fn client_registry(mut self, clients: ClientRegistry) -> Self {
            self.common.clients.registry = Some(clients);
            self
        }

        /// Sets the token endpoint URL clients post to: a DPoP proof's `htu` must name it
        /// (default `{issuer}/token`).
        pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
            self.common.token_endpoint = Some(url.into());
            self
        }

        /// Sets the largest form body accepted (default 64 KiB).
        pub fn max_body(mut self, bytes: usize) -> Self {
            self.common.max_body = bytes;
            self
        }
    };
}

/// `{issuer}/token`, the default token endpoint.
fn default_token_endpoint(issuer: &Issuer) -> String {
    format!("{}/token", issuer.as_str().trim_end_matches('/'))
}

impl JwtBearerGrant {
    /// Starts the jwt-bearer grant of the authorization server whose access tokens `tokens`
    /// signs (its issuer is the one every ID-JAG's `aud` must name, AS-5), verifying ID-JAGs
    /// with `keys` (the trusted issuers' keys, SEC-3) and mapping users with `subjects` (AS-16,
    /// D-14).
    ///
    /// Required before [`build`](JwtBearerGrantBuilder::build): at least one
    /// [`trust`](JwtBearerGrantBuilder::trust)ed issuer, one
    /// [`resource`](JwtBearerGrantBuilder::resource), and one
    /// [`client`](JwtBearerGrantBuilder::client) (or a registry accepting public clients).
    /// Defaults: token endpoint `{issuer}/token`, an [`InMemoryReplayStore::default`], the
    /// validator defaults of [`IdJagValidator::builder`]. See the crate documentation for an
    /// example.
    pub fn builder<K: KeySource, S: SubjectResolver>(
        tokens: AccessTokenIssuer,
        keys: K,
        subjects: S,
    ) -> JwtBearerGrantBuilder<K, S> {
        JwtBearerGrantBuilder {
            validator: IdJagValidator::builder(tokens.issuer().clone(), keys, subjects),
            tokens,
            common: Common::new(),
            revoker: None,
            redeemer: None,
        }
    }
}

/// Assembles a [`JwtBearerGrant`]; see [`JwtBearerGrant::builder`].
#[derive(Debug)]
#[must_use]
pub struct JwtBearerGrantBuilder<K, S, R = InMemoryReplayStore> {
    validator: IdJagValidatorBuilder<K, S>,
    tokens: AccessTokenIssuer,
    common: Common<R>,
    revoker: Option<Revoker>,
    redeemer: Option<Arc<dyn IdJagRedeemer>>,
}

impl<K: KeySource, S: SubjectResolver, R: ReplayStore> JwtBearerGrantBuilder<K, S, R> {
    /// Trusts an ID-JAG issuer (added to those already trusted).
    pub fn trust(mut self, issuer: TrustedIssuer) -> Self {
        self.validator = self.validator.trust(issuer);
        self
    }

    /// Replaces the trusted issuers.
    pub fn trust_registry(mut self, trust: TrustRegistry) -> Self {
        self.validator = self.validator.trust_registry(trust);
        self
    }

    /// Governs a resource (added to those already governed).
    pub fn resource(mut self, resource: ResourceConfig) -> Self {
        self.validator = self.validator.resource(resource);
        self
    }

    /// Replaces the governed resources.
    pub fn resource_registry(mut self, resources: ResourceRegistry) -> Self {
        self.validator = self.validator.resource_registry(resources);
        self
    }

    common_setters!();

    /// Sets the ID-JAG time options (leeway capped at 60 s; D-7).
    pub fn time_options(mut self, time: TimeOptions) -> Self {
        self.validator = self.validator.time_options(time);
        self
    }

    /// Sets only the ID-JAG clock leeway (D-7: default 30 s; capped at 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.validator = self.validator.leeway(leeway);
        self
    }

    /// Sets the ID-JAG parse limits.
    pub fn parse_options(mut self, parse: ParseOptions) -> Self {
        self.validator = self.validator.parse_options(parse);
        self
    }

    /// Sets the ID-JAG algorithm allow-list (D-26; see [`IdJagValidatorBuilder::algorithms`]).
    pub fn algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.validator = self.validator.algorithms(algorithms);
        self
    }

    /// Sets where ID-JAG `jti`s and client-assertion and DPoP-proof `jti`s are recorded
    /// (SEC-1; default an [`InMemoryReplayStore::default`], right for a single instance). Every
    /// instance of a replicated authorization server must share one store. Pass an `Arc` or a
    /// [`DynReplayStore`] clone to share it with other endpoints.
    pub fn replay_store<R2: ReplayStore>(self, replay: R2) -> JwtBearerGrantBuilder<K, S, R2> {
        JwtBearerGrantBuilder {
            validator: self.validator,
            tokens: self.tokens,
            common: self.common.with_replay(replay),
            revoker: self.revoker,
            redeemer: self.redeemer,
        }
    }

    /// Checks every ID-JAG against a revocation ledger (RV-11): an ID-JAG issued at or before
    /// its IdP subject's watermark, or of a disabled subject, gets `invalid_grant` before its
    /// `jti` is consumed; an unreachable ledger means no token (503
    /// `temporarily_unavailable`, RV-14). Without a ledger nothing is checked. Shorthand for
    /// [`revoker`](Self::revoker) with a new [`Revoker`] of this AS.
    pub fn revocation_ledger(self, ledger: impl RevocationLedger + 'static) -> Self {
        let issuer = self.tokens.issuer().as_str().to_owned();
        self.revoker(Revoker::new(ledger, issuer))
    }

    /// Checks every ID-JAG against `revoker`'s ledger (see
    /// [`revocation_ledger`](Self::revocation_ledger)) and records in it which local subject
    /// each IdP subject maps to, so a revoke command reaches the access tokens (RV-12). Give
    /// clones of the same revoker to the admin route and the RFC 7009 endpoint.
    pub fn revoker(mut self, revoker: Revoker) -> Self {
        self.revoker = Some(revoker);
        self
    }

    /// Checks the ID-JAG's IdP subject and consumes its `jti` in one call to `redeemer`
    /// instead of the revoker's ledger followed by the replay store (e.g. one Redis round trip
    /// with `RedisRedeemer` of feature `redis`). Same contract: a
    /// revoked subject gets `invalid_grant` with its `jti` not consumed (RV-11), a replay
    /// `invalid_grant` (SEC-1), a failure 503 `temporarily_unavailable` and no token (RV-14).
    /// The replay store still records client-assertion and DPoP-proof `jti`s, and the
    /// [`revoker`](Self::revoker), when set, still records subject mappings (RV-12). Give the
    /// redeemer the same ledger and replay keys as the revoker and the store.
    pub fn redeemer(mut self, redeemer: Arc<dyn IdJagRedeemer>) -> Self {
        self.redeemer = Some(redeemer);
        self
    }

    /// Builds the grant with its key source, subject resolver and replay store erased: the
    /// bare [`JwtBearerGrant`] (one boxed future per call into each).
    pub fn build(self) -> Result<JwtBearerGrant, BuildError>
    where
        K: 'static,
        S: 'static,
        R: 'static,
    {
        let validator = self.validator.build()?;
        finish_jwt_bearer(
            validator,
            self.tokens,
            self.common,
            (self.revoker, self.redeemer),
            DynReplayStore::new,
        )
    }

    /// Builds the grant keeping the concrete types (no boxed futures).
    pub fn build_typed(self) -> Result<JwtBearerGrant<K, S, R>, BuildError> {
        let validator = self.validator.build_typed()?;
        finish_jwt_bearer(
            validator,
            self.tokens,
            self.common,
            (self.revoker, self.redeemer),
            |replay| replay,
        )
    }
}

/// Checks the clients against the validator's issuer and assembles the jwt-bearer grant.
fn finish_jwt_bearer<K: KeySource, S: SubjectResolver, R, R2>(
    validator: IdJagValidator<K, S>,
    tokens: AccessTokenIssuer,
    mut common: Common<R>,
    (revoker, redeemer): (Option<Revoker>, Option<Arc<dyn IdJagRedeemer>>),
    replay: impl FnOnce(R) -> R2,
) -> Result<JwtBearerGrant<K, S, R2>, BuildError> {
    let (token_endpoint, clients) = common.endpoint_and_clients(validator.issuer())?;
    let realm = validator.issuer().as_str().to_owned();
    Ok(JwtBearerGrant {
        validator,
        clients,
        replay: replay(common.replay),
        revoker,
        redeemer,
        tokens,
        dpop: DpopValidator::new(token_endpoint),
        realm,
        max_body: common.max_body,
    })
}

impl TokenExchangeGrant {
    /// Starts the token exchange of the IdP whose ID-JAGs `issuer` signs, verifying the
    /// subject ID tokens it issued itself with `id_token_keys` (TX-4) and deciding each request
    /// with `policy` (TX-8).
    ///
    /// Required before [`build`](TokenExchangeGrantBuilder::build): at least one
    /// [`target`](TokenExchangeGrantBuilder::target) authorization server and one
    /// [`client`](TokenExchangeGrantBuilder::client); a non-empty
    /// [`id_token_algorithms`](TokenExchangeGrantBuilder::id_token_algorithms) set; with the
    /// `saml` feature, a SAML validator (if any) that could accept an assertion. Defaults:
    /// token endpoint `{issuer}/token`, an [`InMemoryReplayStore::default`], ID tokens signed
    /// with an algorithm of [`AlgorithmSet::DEFAULT`] with 30 s of leeway and at most a day of
    /// lifetime, no legacy token type, no SAML subject assertions.
    pub fn builder<K: KeySource, P: AdminPolicy>(
        issuer: IdJagIssuer,
        id_token_keys: K,
        policy: P,
    ) -> TokenExchangeGrantBuilder<K, P> {
        TokenExchangeGrantBuilder {
            issuer,
            id_token_keys,
            policy,
            common: Common::new(),
            targets: Vec::new(),
            // ID tokens outlive ID-JAGs; bound them at a day.
            id_token_time: TimeOptions::new()
                .with_max_lifetime(Some(Duration::from_secs(24 * 3600))),
            algorithms: AlgorithmSet::DEFAULT,
            legacy: false,
            #[cfg(feature = "saml")]
            saml: None,
        }
    }
}

/// Assembles a [`TokenExchangeGrant`]; see [`TokenExchangeGrant::builder`].
#[derive(Debug)]
#[must_use]
pub struct TokenExchangeGrantBuilder<K, P, R = InMemoryReplayStore> {
    issuer: IdJagIssuer,
    id_token_keys: K,
    policy: P,
    common: Common<R>,
    targets: Vec<TargetServer>,
    id_token_time: TimeOptions,
    algorithms: AlgorithmSet,
    legacy: bool,
    #[cfg(feature = "saml")]
    saml: Option<SamlAssertionValidator>,
}

impl<K: KeySource, P: AdminPolicy, R: ReplayStore> TokenExchangeGrantBuilder<K, P, R> {
    /// Adds an authorization server this IdP issues ID-JAGs for (TX-6, TX-7, JAG-4).
    pub fn target(mut self, target: TargetServer) -> Self {
        self.targets.push(target);
        self
    }

    common_setters!();

    /// Sets the algorithms accepted for the subject ID tokens this IdP verifies (D-26, SEC-4;
    /// default [`AlgorithmSet::DEFAULT`]). It must hold the algorithm the IdP signs ID tokens
    /// with, or every exchange fails with `invalid_grant`; an empty set is refused at
    /// [`build`](Self::build) ([`BuildError::NoIdTokenAlgorithms`]).
    pub fn id_token_algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// Sets the clock leeway for subject ID tokens (D-7: default 30 s); values above
    /// [`TimeOptions::MAX_LEEWAY`] (60 s) are clamped to it.
    pub fn id_token_leeway(mut self, leeway: Duration) -> Self {
        self.id_token_time = self.id_token_time.with_leeway(leeway);
        self
    }

    /// Accepts the pre-draft `requested_token_type` (D-10; off by default).
    pub fn accept_legacy_token_type(mut self, accept: bool) -> Self {
        self.legacy = accept;
        self
    }

    /// Accepts SAML 2.0 assertions as subject tokens (`subject_token_type`
    /// [`SAML2_TOKEN_TYPE`](crate::SAML2_TOKEN_TYPE), TX-3), validated by `validator` (TX-4).
    /// Without it, that type is `invalid_request` ("subject_token_type is not supported").
    /// A validator without a key, an SP audience or a `Recipient` is refused at
    /// [`build`](Self::build) ([`BuildError::Saml`]).
    ///
    /// The `subject_token` is the base64url assertion (RFC 8693 §3); `=` padding is tolerated,
    /// the standard alphabet and whitespace are not. The validator's SP entity ids map to
    /// IdP-side client ids, the ones clients authenticate with here. The verified identity
    /// reaches the admin policy as [`SamlIdentity::to_claims`](ema_saml::SamlIdentity::to_claims)
    /// (`sub` = `NameID`, `sub_id` in the `saml-nameid` format), and the ID-JAG takes `sub`,
    /// `tenant`, `auth_time`, `acr` and `amr` from those claims as it does from an ID token.
    ///
    /// Configure the validator with this endpoint's URL as its
    /// [`with_recipient`](SamlAssertionValidator::with_recipient): the bearer confirmation's
    /// `Recipient` must name it (TX-4, RFC 7522 §3). Each assertion is single-use (SEC-1): its
    /// (`Issuer`, `ID`) goes into the replay store when an ID-JAG is issued, until its
    /// `NotOnOrAfter` plus [`MAX_LEEWAY`](ema_saml::MAX_LEEWAY); a second exchange is
    /// `invalid_grant`.
    ///
    /// Only with the `saml` feature. An IdP built without it does not meet TX-3, which makes
    /// SAML 2.0 subject assertions a MUST; the reference IdP enables it.
    #[cfg(feature = "saml")]
    pub fn saml_assertions(mut self, validator: SamlAssertionValidator) -> Self {
        self.saml = Some(validator);
        self
    }

    /// Sets where client-assertion and DPoP-proof `jti`s and SAML assertion `ID`s are
    /// recorded (SEC-1; default an [`InMemoryReplayStore::default`]). Pass an `Arc` or a
    /// [`DynReplayStore`] clone to share it with the IdP's other endpoints.
    pub fn replay_store<R2: ReplayStore>(self, replay: R2) -> TokenExchangeGrantBuilder<K, P, R2> {
        TokenExchangeGrantBuilder {
            issuer: self.issuer,
            id_token_keys: self.id_token_keys,
            policy: self.policy,
            common: self.common.with_replay(replay),
            targets: self.targets,
            id_token_time: self.id_token_time,
            algorithms: self.algorithms,
            legacy: self.legacy,
            #[cfg(feature = "saml")]
            saml: self.saml,
        }
    }

    /// Builds the grant with its key source, policy and replay store erased: the bare
    /// [`TokenExchangeGrant`].
    pub fn build(self) -> Result<TokenExchangeGrant, BuildError>
    where
        K: 'static,
        P: 'static,
        R: 'static,
    {
        self.build_with(DynKeySource::new, DynAdminPolicy::new, DynReplayStore::new)
    }

    /// Builds the grant keeping the concrete types (no boxed futures).
    pub fn build_typed(self) -> Result<TokenExchangeGrant<K, P, R>, BuildError> {
        self.build_with(|k| k, |p| p, |r| r)
    }

    fn build_with<K2, P2, R2>(
        mut self,
        keys: impl FnOnce(K) -> K2,
        policy: impl FnOnce(P) -> P2,
        replay: impl FnOnce(R) -> R2,
    ) -> Result<TokenExchangeGrant<K2, P2, R2>, BuildError> {
        if self.targets.is_empty() {
            return Err(BuildError::NoTargets);
        }
        if self.algorithms.iter().next().is_none() {
            return Err(BuildError::NoIdTokenAlgorithms);
        }
        #[cfg(feature = "saml")]
        if let Some(saml) = &self.saml {
            saml.check_config()?;
        }
        let issuer = self.issuer.issuer().clone();
        let (token_endpoint, clients) = self.common.endpoint_and_clients(&issuer)?;
        Ok(TokenExchangeGrant {
            issuer: self.issuer,
            id_token_keys: keys(self.id_token_keys),
            clients,
            replay: replay(self.common.replay),
            targets: self.targets,
            policy: policy(self.policy),
            dpop: DpopValidator::new(token_endpoint),
            legacy: self.legacy,
            id_token_time: self.id_token_time,
            algorithms: self.algorithms,
            max_body: self.common.max_body,
            #[cfg(feature = "saml")]
            saml: self.saml,
            #[cfg(not(feature = "saml"))]
            saml: None,
        })
    }
}
