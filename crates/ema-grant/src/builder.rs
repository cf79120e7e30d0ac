//! Builders of the two grants: the required pieces are the arguments of `builder(...)`, the
//! rest have defaults, and `build()` refuses a configuration that could never issue a token
//! ([`BuildError`]) instead of panicking or failing every request later.

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
use crate::replay::{DynReplayStore, InMemoryReplayStore, ReplayStore};

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
            clients: Clients::default(),
            replay: InMemoryReplayStore::default(),
            token_endpoint: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Assembles a [`JwtBearerGrant`]; see [`JwtBearerGrant::builder`].
#[derive(Debug)]
#[must_use]
pub struct JwtBearerGrantBuilder<K, S, R = InMemoryReplayStore> {
    validator: IdJagValidatorBuilder<K, S>,
    tokens: AccessTokenIssuer,
    clients: Clients,
    replay: R,
    token_endpoint: Option<String>,
    max_body: usize,
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

    /// Registers a client (added to the registry, by default one whose assertion audiences
    /// are the issuer and the token endpoint).
    pub fn client(mut self, client: RegisteredClient) -> Self {
        self.clients.added.push(client);
        self
    }

    /// Replaces the client registry (clients added with [`client`](Self::client) join it).
    /// Its audiences must include the issuer ([`BuildError::ClientAudience`]).
    pub fn client_registry(mut self, clients: ClientRegistry) -> Self {
        self.clients.registry = Some(clients);
        self
    }

    /// Sets the token endpoint URL clients post to: a DPoP proof's `htu` must name it
    /// (default `{issuer}/token`).
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// Sets the largest form body accepted (default 64 KiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

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
            clients: self.clients,
            replay,
            token_endpoint: self.token_endpoint,
            max_body: self.max_body,
        }
    }

    /// Builds the grant with its key source, subject resolver and replay store erased: the
    /// bare [`JwtBearerGrant`] (one boxed future per call into each).
    pub fn build(self) -> Result<JwtBearerGrant, BuildError>
    where
        K: 'static,
        S: 'static,
        R: 'static,
    {
        let (validator, parts) = self.into_parts();
        parts.finish(validator.build()?, DynReplayStore::new)
    }

    /// Builds the grant keeping the concrete types (no boxed futures).
    pub fn build_typed(self) -> Result<JwtBearerGrant<K, S, R>, BuildError> {
        let (validator, parts) = self.into_parts();
        parts.finish(validator.build_typed()?, |replay| replay)
    }

    fn into_parts(self) -> (IdJagValidatorBuilder<K, S>, GrantParts<R>) {
        let parts = GrantParts {
            clients: self.clients,
            replay: self.replay,
            tokens: self.tokens,
            token_endpoint: self.token_endpoint,
            max_body: self.max_body,
        };
        (self.validator, parts)
    }
}

/// A jwt-bearer grant waiting for its validator.
struct GrantParts<R> {
    clients: Clients,
    replay: R,
    tokens: AccessTokenIssuer,
    token_endpoint: Option<String>,
    max_body: usize,
}

impl<R> GrantParts<R> {
    /// Checks the clients against the validator's issuer and assembles the grant.
    fn finish<K: KeySource, S: SubjectResolver, R2>(
        self,
        validator: IdJagValidator<K, S>,
        replay: impl FnOnce(R) -> R2,
    ) -> Result<JwtBearerGrant<K, S, R2>, BuildError> {
        let issuer = validator.issuer().as_str().to_owned();
        let token_endpoint = self
            .token_endpoint
            .unwrap_or_else(|| default_token_endpoint(validator.issuer()));
        let clients = self.clients.build(&issuer, &token_endpoint)?;
        Ok(JwtBearerGrant {
            validator,
            clients,
            replay: replay(self.replay),
            tokens: self.tokens,
            dpop: DpopValidator::new(token_endpoint),
            realm: issuer,
            max_body: self.max_body,
        })
    }
}

impl TokenExchangeGrant {
    /// Starts the token exchange of the IdP whose ID-JAGs `issuer` signs, verifying the
    /// subject ID tokens it issued itself with `id_token_keys` (TX-4) and deciding each request
    /// with `policy` (TX-8).
    ///
    /// Required before [`build`](TokenExchangeGrantBuilder::build): at least one
    /// [`target`](TokenExchangeGrantBuilder::target) authorization server and one
    /// [`client`](TokenExchangeGrantBuilder::client). Defaults: token endpoint
    /// `{issuer}/token`, an [`InMemoryReplayStore::default`]; the knobs of the built grant
    /// ([`TokenExchangeGrant::with_id_token_leeway`] and the others) keep theirs.
    pub fn builder<K: KeySource, P: AdminPolicy>(
        issuer: IdJagIssuer,
        id_token_keys: K,
        policy: P,
    ) -> TokenExchangeGrantBuilder<K, P> {
        TokenExchangeGrantBuilder {
            issuer,
            id_token_keys,
            policy,
            clients: Clients::default(),
            replay: InMemoryReplayStore::default(),
            targets: Vec::new(),
            token_endpoint: None,
            max_body: DEFAULT_MAX_BODY,
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
    clients: Clients,
    replay: R,
    targets: Vec<TargetServer>,
    token_endpoint: Option<String>,
    max_body: usize,
}

impl<K: KeySource, P: AdminPolicy, R: ReplayStore> TokenExchangeGrantBuilder<K, P, R> {
    /// Adds an authorization server this IdP issues ID-JAGs for (TX-6, TX-7, JAG-4).
    pub fn target(mut self, target: TargetServer) -> Self {
        self.targets.push(target);
        self
    }

    /// Registers a client (added to the registry, by default one whose assertion audiences
    /// are the issuer and the token endpoint).
    pub fn client(mut self, client: RegisteredClient) -> Self {
        self.clients.added.push(client);
        self
    }

    /// Replaces the client registry (clients added with [`client`](Self::client) join it).
    /// Its audiences must include the issuer ([`BuildError::ClientAudience`]).
    pub fn client_registry(mut self, clients: ClientRegistry) -> Self {
        self.clients.registry = Some(clients);
        self
    }

    /// Sets the token endpoint URL clients post to: a DPoP proof's `htu` must name it
    /// (default `{issuer}/token`).
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// Sets the largest form body accepted (default 64 KiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
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
            clients: self.clients,
            replay,
            targets: self.targets,
            token_endpoint: self.token_endpoint,
            max_body: self.max_body,
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
        self,
        keys: impl FnOnce(K) -> K2,
        policy: impl FnOnce(P) -> P2,
        replay: impl FnOnce(R) -> R2,
    ) -> Result<TokenExchangeGrant<K2, P2, R2>, BuildError> {
        if self.targets.is_empty() {
            return Err(BuildError::NoTargets);
        }
        let issuer = self.issuer.issuer().clone();
        let token_endpoint = self
            .token_endpoint
            .unwrap_or_else(|| default_token_endpoint(&issuer));
        let clients = self.clients.build(issuer.as_str(), &token_endpoint)?;
        Ok(TokenExchangeGrant {
            issuer: self.issuer,
            id_token_keys: keys(self.id_token_keys),
            clients,
            replay: replay(self.replay),
            targets: self.targets,
            policy: policy(self.policy),
            dpop: DpopValidator::new(token_endpoint),
            legacy: false,
            // ID tokens outlive ID-JAGs; bound them at a day.
            id_token_time: TimeOptions::new()
                .with_max_lifetime(Some(Duration::from_secs(24 * 3600))),
            algorithms: AlgorithmSet::DEFAULT,
            max_body: self.max_body,
            saml: None,
        })
    }
}
