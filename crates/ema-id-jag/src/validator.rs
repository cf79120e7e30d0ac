//! The authorization-server side: validating an ID-JAG (the validation order of `docs/requirements.md`, steps 3-14
//! less step 11's proof check, which the grant performs before calling this).

use ema_jose::{
    Algorithm, AlgorithmSet, ClaimError, DynKeySource, HeaderError, HeaderPolicy, KeyLookupError,
    KeySource, ParseError, ParseOptions, TimeOptions, TokenKind, UnixTime, UnverifiedJwt,
    VerifyError,
};

use ema_metadata::ErrorCode;

use crate::claims::{IdJagClaims, IdJagClaimsError};
use crate::ids::{ClientId, Issuer, Resource, ScopeSet};
use crate::subject::{DynSubjectResolver, LocalSubject, SubjectError, SubjectResolver};
use crate::trust::{
    GrantScopeError, ResourceConfig, ResourceError, ResourceRegistry, TrustRegistry, TrustedIssuer,
};

/// What the token request says beside the assertion.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ValidationContext<'a> {
    /// The client the token endpoint authenticated (AS-8).
    pub client_id: &'a ClientId,
    /// The request's `resource` parameter (D-4).
    pub resource: Option<&'a str>,
    /// The request's `scope` parameter (D-5).
    pub scope: Option<&'a ScopeSet>,
    /// The RFC 7638 thumbprint of the key of a DPoP proof the endpoint already validated.
    pub dpop_jkt: Option<&'a str>,
}

impl<'a> ValidationContext<'a> {
    /// A context for an authenticated client and no other parameters.
    pub fn new(client_id: &'a ClientId) -> Self {
        Self {
            client_id,
            resource: None,
            scope: None,
            dpop_jkt: None,
        }
    }

    /// Sets the `resource` parameter.
    #[must_use]
    pub fn with_resource(mut self, resource: Option<&'a str>) -> Self {
        self.resource = resource;
        self
    }

    /// Sets the `scope` parameter.
    #[must_use]
    pub fn with_scope(mut self, scope: Option<&'a ScopeSet>) -> Self {
        self.scope = scope;
        self
    }

    /// Sets the validated DPoP key thumbprint.
    #[must_use]
    pub fn with_dpop_jkt(mut self, jkt: Option<&'a str>) -> Self {
        self.dpop_jkt = jkt;
        self
    }
}

/// A verified ID-JAG with the decisions taken on it: distinct from any unverified input.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdJag {
    /// The verified claims.
    pub claims: IdJagClaims,
    /// The algorithm and key id that verified it.
    pub alg: Algorithm,
    /// The verifying key's `kid`.
    pub kid: Option<String>,
    /// The resource the access token is for (D-4); its `aud`.
    pub resource: Resource,
    /// The scopes to grant (D-5, D-20, D-21); `None` for a token without `scope`.
    pub scope: Option<ScopeSet>,
    /// The local subject (AS-16, D-14).
    pub subject: LocalSubject,
}

/// Why an ID-JAG was refused. Each variant maps to an OAuth error code by
/// [`ToErrorCode`](ema_metadata::ToErrorCode) (nearly all `invalid_grant`), which the token
/// endpoint answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdJagError {
    /// Step 3: not a well-formed compact JWS/JWT (a JWE is refused here too: AS-19).
    #[error("malformed assertion: {0}")]
    Malformed(ParseError),
    /// Step 4: `typ`, `alg`, `crit`, a key-bearing member or `cty` (AS-3, SEC-4, SEC-5, D-8,
    /// D-18, D-23).
    #[error("assertion header refused: {0}")]
    Header(HeaderError),
    /// Step 5: `iss` is not a trusted issuer.
    #[error("issuer is not trusted")]
    UntrustedIssuer,
    /// Step 6: the algorithm is not accepted from this issuer (SEC-4).
    #[error("algorithm `{alg}` is not accepted from this issuer")]
    AlgorithmNotTrusted {
        /// The token's algorithm.
        alg: Algorithm,
    },
    /// Step 6: no key of the issuer fits (SEC-3), or the ID-JAG has no `kid` and the issuer's
    /// key set holds more than one usable key (D-22).
    #[error("no verification key: {0}")]
    Key(KeyLookupError),
    /// Step 6: the signature does not verify with the issuer's key (AS-4).
    #[error("signature refused: {0}")]
    Signature(VerifyError),
    /// Step 7: a required claim is missing or mistyped (JAG-2, D-7, D-13).
    #[error("claims refused: {0}")]
    Claims(IdJagClaimsError),
    /// Step 8: `aud` is not this authorization server's issuer (AS-5, D-12).
    #[error("audience is not this authorization server")]
    WrongAudience,
    /// Step 9: the validity window is refused (AS-6, SEC-2, D-7).
    #[error("validity refused: {0}")]
    Time(ClaimError),
    /// Step 10: `client_id` is not the authenticated client (AS-8, SEC-7).
    #[error("client_id does not match authenticated client")]
    ClientMismatch,
    /// Step 11: the ID-JAG is key-bound (`cnf.jkt`) and no DPoP proof was presented, or the
    /// resource demands DPoP and none was presented (AS-17, AS-18).
    #[error("a DPoP proof is required")]
    DpopRequired,
    /// Step 11: the DPoP proof's key is not the one in `cnf.jkt` (AS-17, SEC-8).
    #[error("DPoP key does not match `cnf.jkt`")]
    DpopMismatch,
    /// Step 12: resource selection failed (D-4).
    #[error(transparent)]
    Resource(ResourceError),
    /// Step 13: the tenant required for this issuer is missing or different (D-14).
    #[error("tenant does not match the trusted tenant")]
    TenantMismatch,
    /// Step 13: the subject is not known and not provisioned (D-14).
    #[error("subject is not known here")]
    UnknownSubject,
    /// Step 13: the subject directory is unavailable (fail closed).
    #[error("subject directory unavailable: {reason}")]
    SubjectUnavailable {
        /// What went wrong.
        reason: String,
    },
    /// Step 14: scope computation failed (D-5, D-20, D-21).
    #[error(transparent)]
    Scope(GrantScopeError),
}

impl ema_metadata::ToErrorCode for IdJagError {
    /// `invalid_grant` for every way the assertion itself is bad (AS-3..AS-8), `invalid_target`
    /// for a resource it names but may not be granted (D-4), `invalid_scope` for a scope request
    /// that cannot be met (D-5), `temporarily_unavailable` when the issuer's keys or the subject
    /// directory cannot be consulted (fail closed).
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Key(k) if k.is_unavailable() => ErrorCode::TemporarilyUnavailable,
            Self::SubjectUnavailable { .. } => ErrorCode::TemporarilyUnavailable,
            Self::Resource(
                ResourceError::NotInIdJag
                | ResourceError::UnknownRequested
                | ResourceError::Ambiguous,
            ) => ErrorCode::InvalidTarget,
            Self::Scope(
                GrantScopeError::NotInIdJag { .. }
                | GrantScopeError::UndefinedRequested { .. }
                | GrantScopeError::Empty,
            ) => ErrorCode::InvalidScope,
            Self::Malformed(_)
            | Self::Header(_)
            | Self::UntrustedIssuer
            | Self::AlgorithmNotTrusted { .. }
            | Self::Key(_)
            | Self::Signature(_)
            | Self::Claims(_)
            | Self::WrongAudience
            | Self::Time(_)
            | Self::ClientMismatch
            | Self::DpopRequired
            | Self::DpopMismatch
            | Self::Resource(ResourceError::NotGoverned { .. } | ResourceError::NoneSelected)
            | Self::TenantMismatch
            | Self::UnknownSubject
            | Self::Scope(GrantScopeError::UndefinedInIdJag { .. }) => ErrorCode::InvalidGrant,
        }
    }

    fn error_description(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "assertion is not a well-formed signed JWT",
            Self::Header(_) => "assertion header is not acceptable for an ID-JAG",
            Self::UntrustedIssuer => "assertion issuer is not trusted",
            Self::AlgorithmNotTrusted { .. } => {
                "assertion algorithm is not accepted from this issuer"
            }
            Self::Key(k) if k.is_unavailable() => "issuer keys are unavailable; try again later",
            Self::Key(_) => "no key of the issuer verifies the assertion",
            Self::Signature(_) => "assertion signature is invalid",
            Self::Claims(_) => "assertion claims are missing or malformed",
            Self::WrongAudience => "assertion audience is not this authorization server",
            Self::Time(_) => "assertion is expired or not yet valid",
            Self::ClientMismatch => "client_id does not match authenticated client",
            Self::DpopRequired => "a DPoP proof is required",
            Self::DpopMismatch => "DPoP key does not match the assertion's cnf",
            Self::Resource(ResourceError::NotGoverned { .. } | ResourceError::NoneSelected) => {
                "assertion resource is not governed by this authorization server"
            }
            Self::Resource(
                ResourceError::NotInIdJag
                | ResourceError::UnknownRequested
                | ResourceError::Ambiguous,
            ) => "requested resource cannot be granted",
            Self::TenantMismatch => "assertion tenant is not trusted",
            Self::UnknownSubject => "subject is not known to this authorization server",
            Self::SubjectUnavailable { .. } => "subject directory is unavailable; try again later",
            Self::Scope(GrantScopeError::UndefinedInIdJag { .. }) => {
                "assertion carries a scope this resource does not define"
            }
            Self::Scope(
                GrantScopeError::NotInIdJag { .. }
                | GrantScopeError::UndefinedRequested { .. }
                | GrantScopeError::Empty,
            ) => "requested scope cannot be granted",
        }
    }
}

/// Validates ID-JAGs for one authorization server.
///
/// Built with [`IdJagValidator::builder`]. The type parameters are the key source and the
/// subject resolver; they default to the erased [`DynKeySource`] and [`DynSubjectResolver`], so
/// `IdJagValidator` names the validator [`IdJagValidatorBuilder::build`] returns, and
/// [`IdJagValidatorBuilder::build_typed`] keeps the concrete types.
#[derive(Debug, Clone)]
pub struct IdJagValidator<K = DynKeySource, S = DynSubjectResolver> {
    issuer: Issuer,
    trust: TrustRegistry,
    keys: K,
    resources: ResourceRegistry,
    subjects: S,
    time: TimeOptions,
    parse: ParseOptions,
    algorithms: AlgorithmSet,
}

/// Why an [`IdJagValidatorBuilder`] could not build a validator: it would refuse every ID-JAG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidatorBuildError {
    /// No issuer is trusted ([`IdJagValidatorBuilder::trust`]).
    #[error("no trusted ID-JAG issuer is configured")]
    NoTrustedIssuers,
    /// No resource is governed ([`IdJagValidatorBuilder::resource`]).
    #[error("no resource is configured")]
    NoResources,
}

impl IdJagValidator {
    /// Starts a validator for the authorization server `issuer` (the `aud` every ID-JAG must
    /// name, AS-5), verifying with `keys` (the trusted issuers' keys, SEC-3) and resolving
    /// subjects with `subjects` (AS-16, D-14). Add trusted issuers and resources, then
    /// [`build`](IdJagValidatorBuilder::build). Defaults: D-7 time options, the algorithm
    /// allow-list ES256, RS256, PS256 and EdDSA (D-26), default parse limits.
    pub fn builder<K: KeySource, S: SubjectResolver>(
        issuer: impl Into<Issuer>,
        keys: K,
        subjects: S,
    ) -> IdJagValidatorBuilder<K, S> {
        IdJagValidatorBuilder {
            issuer: issuer.into(),
            trust: TrustRegistry::new(),
            keys,
            resources: ResourceRegistry::new(),
            subjects,
            time: TimeOptions::new(),
            parse: ParseOptions::new(),
            algorithms: AlgorithmSet::DEFAULT,
        }
    }
}

/// Assembles an [`IdJagValidator`]; see [`IdJagValidator::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct IdJagValidatorBuilder<K, S> {
    issuer: Issuer,
    trust: TrustRegistry,
    keys: K,
    resources: ResourceRegistry,
    subjects: S,
    time: TimeOptions,
    parse: ParseOptions,
    algorithms: AlgorithmSet,
}

impl<K: KeySource, S: SubjectResolver> IdJagValidatorBuilder<K, S> {
    /// The authorization server's issuer identifier.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// Trusts an issuer (added to those already trusted).
    pub fn trust(mut self, issuer: TrustedIssuer) -> Self {
        self.trust = self.trust.with(issuer);
        self
    }

    /// Replaces the trusted issuers.
    pub fn trust_registry(mut self, trust: TrustRegistry) -> Self {
        self.trust = trust;
        self
    }

    /// Governs a resource (added to those already governed).
    pub fn resource(mut self, resource: ResourceConfig) -> Self {
        self.resources = self.resources.with(resource);
        self
    }

    /// Replaces the governed resources.
    pub fn resource_registry(mut self, resources: ResourceRegistry) -> Self {
        self.resources = resources;
        self
    }

    /// Sets the time options (leeway capped at 60 s; D-7).
    pub fn time_options(mut self, time: TimeOptions) -> Self {
        self.time = time;
        self
    }

    /// Sets only the clock leeway (D-7: default 30 s); values above
    /// [`TimeOptions::MAX_LEEWAY`] (60 s) are clamped to it.
    pub fn leeway(mut self, leeway: std::time::Duration) -> Self {
        self.time = self.time.with_leeway(leeway);
        self
    }

    /// Sets the parse limits.
    pub fn parse_options(mut self, parse: ParseOptions) -> Self {
        self.parse = parse;
        self
    }

    /// Sets the global algorithm allow-list (each issuer may narrow it further). ES384, ES512,
    /// RS384, RS512, PS384 and PS512 are opt-in (D-26): add them here and in the issuer's
    /// [`TrustedIssuer::algorithms`].
    pub fn algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// Builds the validator with its key source and resolver erased: the bare
    /// [`IdJagValidator`].
    pub fn build(self) -> Result<IdJagValidator, ValidatorBuildError>
    where
        K: 'static,
        S: 'static,
    {
        let Self {
            issuer,
            trust,
            keys,
            resources,
            subjects,
            time,
            parse,
            algorithms,
        } = self;
        IdJagValidatorBuilder {
            issuer,
            trust,
            keys: DynKeySource::new(keys),
            resources,
            subjects: DynSubjectResolver::new(subjects),
            time,
            parse,
            algorithms,
        }
        .build_typed()
    }

    /// Builds the validator keeping the concrete key source and resolver types (no boxed
    /// futures).
    pub fn build_typed(self) -> Result<IdJagValidator<K, S>, ValidatorBuildError> {
        if self.trust.is_empty() {
            return Err(ValidatorBuildError::NoTrustedIssuers);
        }
        if self.resources.is_empty() {
            return Err(ValidatorBuildError::NoResources);
        }
        Ok(IdJagValidator {
            issuer: self.issuer,
            trust: self.trust,
            keys: self.keys,
            resources: self.resources,
            subjects: self.subjects,
            time: self.time,
            parse: self.parse,
            algorithms: self.algorithms,
        })
    }
}

impl<K: KeySource, S: SubjectResolver> IdJagValidator<K, S> {
    /// This authorization server's issuer identifier.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The governed resources.
    pub fn resources(&self) -> &ResourceRegistry {
        &self.resources
    }

    /// The key source.
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// The subject resolver: for an authorization server's other grants (the code flow) to map
    /// an IdP user to the same local subject as an ID-JAG's.
    pub fn subjects(&self) -> &S {
        &self.subjects
    }

    /// The trusted issuers.
    pub fn trust(&self) -> &TrustRegistry {
        &self.trust
    }

    /// Runs the validation order of `docs/requirements.md` on `assertion`, stopping at the first failure.
    pub async fn validate(
        &self,
        assertion: &str,
        ctx: &ValidationContext<'_>,
        now: UnixTime,
    ) -> Result<IdJag, IdJagError> {
        // (3) parse the JWS strictly (a five-segment JWE fails here: AS-19, JWE unsupported).
        let jwt = UnverifiedJwt::parse(assertion, &self.parse).map_err(IdJagError::Malformed)?;
        // (4) header: `typ` oauth-id-jag+jwt (AS-3, D-8), alg allow-list (SEC-4, D-26), `crit`,
        // D-18, no `cty` (D-23).
        let policy = HeaderPolicy::for_kind(TokenKind::IdJag).with_algorithms(self.algorithms);
        let alg = policy.check(jwt.header()).map_err(IdJagError::Header)?;
        // (5) look up `iss` among trusted issuers, exactly (D-12).
        let iss = jwt
            .unverified_claims()
            .required_string("iss")
            .map_err(|e| IdJagError::Claims(e.into()))?;
        let trusted: &TrustedIssuer = self.trust.get(iss).ok_or(IdJagError::UntrustedIssuer)?;
        // (6) verify with that issuer's keys only (SEC-3, AS-4), algorithms it is trusted for.
        if !trusted.algorithms.contains(alg) {
            return Err(IdJagError::AlgorithmNotTrusted { alg });
        }
        let key = self
            .keys
            .resolve(trusted.issuer.as_str(), jwt.header().kid(), alg)
            .await
            .map_err(IdJagError::Key)?;
        let verified = jwt.verify(&policy, &key).map_err(IdJagError::Signature)?;
        // (7) required claims with their JSON types, required strings non-empty (JAG-2, D-7,
        // D-13, D-25 by analogy).
        let claims = IdJagClaims::from_claims(verified.claims()).map_err(IdJagError::Claims)?;
        // (8) `aud` is this authorization server's issuer, exactly (AS-5, D-12, SEC-11).
        if claims.aud != self.issuer {
            return Err(IdJagError::WrongAudience);
        }
        // (9) `exp`/`nbf`/`iat`/max lifetime with leeway (AS-6, SEC-2, D-7).
        verified
            .claims()
            .check_validity(&self.time, now)
            .map_err(IdJagError::Time)?;
        // (10) `client_id` is the authenticated client (AS-8, SEC-7).
        if &claims.client_id != ctx.client_id {
            return Err(IdJagError::ClientMismatch);
        }
        // (11) `cnf.jkt` requires a DPoP proof by that key (AS-17, SEC-8).
        if let Some(jkt) = &claims.cnf_jkt {
            match ctx.dpop_jkt {
                None => return Err(IdJagError::DpopRequired),
                Some(presented) if presented != jkt => return Err(IdJagError::DpopMismatch),
                Some(_) => {}
            }
        }
        // (12) resource (D-4, AS-10, SEC-6); AS-18 when the resource demands DPoP.
        let resource = self
            .resources
            .select(claims.resource.as_deref(), ctx.resource)
            .map_err(IdJagError::Resource)?;
        if resource.require_dpop && ctx.dpop_jkt.is_none() {
            return Err(IdJagError::DpopRequired);
        }
        // (13) tenant (D-14), then the local subject (AS-16).
        if let Some(required) = &trusted.tenant
            && claims.tenant.as_deref() != Some(required.as_str())
        {
            return Err(IdJagError::TenantMismatch);
        }
        let subject = self
            .subjects
            .resolve(&claims, trusted)
            .await
            .map_err(|e| match e {
                SubjectError::Unknown => IdJagError::UnknownSubject,
                SubjectError::Unavailable { reason } => IdJagError::SubjectUnavailable { reason },
            })?;
        // (14) scopes (D-5, D-20, D-21, AS-12, AS-13).
        let scope = resource
            .grant_scopes(claims.scope.as_ref(), ctx.scope)
            .map_err(IdJagError::Scope)?;
        Ok(IdJag {
            resource: resource.id.clone(),
            kid: key.kid().map(str::to_owned),
            alg,
            scope,
            subject,
            claims,
        })
    }
}

#[cfg(test)]
mod error_code_tests {
    use ema_jose::{ClaimError, HeaderError, KeyLookupError, ParseError, TimeError, UnixTime};
    use ema_metadata::{ErrorCode, ToErrorCode};

    use super::*;

    /// Every variant, constructed, with its code, status and fixed description (AS-3..AS-10,
    /// D-4, D-5, D-14, D-21).
    #[test]
    fn every_id_jag_error_maps_to_its_code() {
        use ErrorCode::{
            InvalidGrant as Ig, InvalidScope as Is, InvalidTarget as It,
            TemporarilyUnavailable as Tu,
        };
        let time = ClaimError::Time(TimeError::Expired {
            exp: UnixTime::from_secs(1),
            now: UnixTime::from_secs(2),
        });
        let not_governed = "assertion resource is not governed by this authorization server";
        let rows: Vec<(IdJagError, ErrorCode, u16, &str)> = vec![
            (
                IdJagError::Malformed(ParseError::Segments { segments: 1 }),
                Ig,
                400,
                "assertion is not a well-formed signed JWT",
            ),
            (
                IdJagError::Header(HeaderError::UnsupportedAlgorithm { alg: "none".into() }),
                Ig,
                400,
                "assertion header is not acceptable for an ID-JAG",
            ),
            (
                IdJagError::UntrustedIssuer,
                Ig,
                400,
                "assertion issuer is not trusted",
            ),
            (
                IdJagError::AlgorithmNotTrusted {
                    alg: Algorithm::RS256,
                },
                Ig,
                400,
                "assertion algorithm is not accepted from this issuer",
            ),
            (
                IdJagError::Key(KeyLookupError::UnknownKid { kid: "k".into() }),
                Ig,
                400,
                "no key of the issuer verifies the assertion",
            ),
            (
                IdJagError::Key(KeyLookupError::Unavailable {
                    reason: "down".into(),
                }),
                Tu,
                503,
                "issuer keys are unavailable; try again later",
            ),
            (
                IdJagError::Signature(VerifyError::AlgorithmMismatch {
                    key: Algorithm::ES256,
                    token: Algorithm::RS256,
                }),
                Ig,
                400,
                "assertion signature is invalid",
            ),
            (
                IdJagError::Claims(IdJagClaimsError::MalformedScope),
                Ig,
                400,
                "assertion claims are missing or malformed",
            ),
            (
                IdJagError::WrongAudience,
                Ig,
                400,
                "assertion audience is not this authorization server",
            ),
            (
                IdJagError::Time(time),
                Ig,
                400,
                "assertion is expired or not yet valid",
            ),
            (
                IdJagError::ClientMismatch,
                Ig,
                400,
                "client_id does not match authenticated client",
            ),
            (
                IdJagError::DpopRequired,
                Ig,
                400,
                "a DPoP proof is required",
            ),
            (
                IdJagError::DpopMismatch,
                Ig,
                400,
                "DPoP key does not match the assertion's cnf",
            ),
            (
                IdJagError::Resource(ResourceError::NotGoverned {
                    resource: "r".into(),
                }),
                Ig,
                400,
                not_governed,
            ),
            (
                IdJagError::Resource(ResourceError::NoneSelected),
                Ig,
                400,
                not_governed,
            ),
            (
                IdJagError::Resource(ResourceError::NotInIdJag),
                It,
                400,
                "requested resource cannot be granted",
            ),
            (
                IdJagError::Resource(ResourceError::UnknownRequested),
                It,
                400,
                "requested resource cannot be granted",
            ),
            (
                IdJagError::Resource(ResourceError::Ambiguous),
                It,
                400,
                "requested resource cannot be granted",
            ),
            (
                IdJagError::TenantMismatch,
                Ig,
                400,
                "assertion tenant is not trusted",
            ),
            (
                IdJagError::UnknownSubject,
                Ig,
                400,
                "subject is not known to this authorization server",
            ),
            (
                IdJagError::SubjectUnavailable {
                    reason: "down".into(),
                },
                Tu,
                503,
                "subject directory is unavailable; try again later",
            ),
            (
                IdJagError::Scope(GrantScopeError::UndefinedInIdJag { scope: "s".into() }),
                Ig,
                400,
                "assertion carries a scope this resource does not define",
            ),
            (
                IdJagError::Scope(GrantScopeError::NotInIdJag {
                    scope: "s".into(),
                    carried: ScopeSet::new(),
                }),
                Is,
                400,
                "requested scope cannot be granted",
            ),
            (
                IdJagError::Scope(GrantScopeError::UndefinedRequested { scope: "s".into() }),
                Is,
                400,
                "requested scope cannot be granted",
            ),
            (
                IdJagError::Scope(GrantScopeError::Empty),
                Is,
                400,
                "requested scope cannot be granted",
            ),
        ];
        for (error, code, status, description) in rows {
            assert_eq!(error.error_code(), code, "{error:?}");
            assert_eq!(error.error_code().http_status(), status, "{error:?}");
            assert_eq!(error.error_description(), description, "{error:?}");
        }
    }
}
