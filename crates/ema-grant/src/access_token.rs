//! RFC 9068 JWT access tokens: minting at the authorization server (AS-11, AS-14, D-17) and
//! validation at the MCP server (RS-2, RS-3, RS-4).

use std::sync::Arc;

use ema_id_jag::{ClientId, Issuer, JwtId, Resource, ScopeSet};
use ema_jose::{
    AlgorithmSet, AudienceRule, ClaimError, HeaderPolicy, KeyLookupError, KeyRing, KeySource,
    ParseError, ParseOptions, SignError, TimeOptions, TokenKind, UnixTime, UnverifiedJwt,
    VerifyError, random_id,
};
use serde_json::{Map, Value};

/// Where an access token came from: the ID-JAG it was issued for, linking the audit trail from
/// the IdP's `iss`/`jti` to the access token's `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdJagOrigin {
    /// The IdP issuer.
    pub iss: Issuer,
    /// The ID-JAG's `jti`.
    pub jti: JwtId,
    /// The IdP's subject id.
    pub sub: String,
}

/// The claims of an access token issued by this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessTokenClaims {
    /// `iss`: the authorization server.
    pub iss: Issuer,
    /// `sub`: the local subject.
    pub sub: String,
    /// `aud`: the one resource (AS-11, D-4).
    pub aud: Resource,
    /// `client_id`.
    pub client_id: ClientId,
    /// `scope`, when any.
    pub scope: Option<ScopeSet>,
    /// `iat`.
    pub iat: UnixTime,
    /// `exp`.
    pub exp: UnixTime,
    /// `jti`.
    pub jti: JwtId,
    /// `tenant` of the principal.
    pub tenant: Option<String>,
    /// `groups` of the principal.
    pub groups: Vec<String>,
    /// `roles` of the principal.
    pub roles: Vec<String>,
    /// `auth_time` of the SSO session.
    pub auth_time: Option<UnixTime>,
    /// `acr` of the SSO session.
    pub acr: Option<String>,
    /// `amr` of the SSO session.
    pub amr: Option<Vec<String>>,
    /// `cnf.jkt` when DPoP-bound (D-17).
    pub cnf_jkt: Option<String>,
    /// `authorization_details` (RFC 9396) carried over from the ID-JAG (AS-14).
    pub authorization_details: Option<Vec<Value>>,
    /// `id_jag`: the ID-JAG it was issued for.
    pub origin: Option<IdJagOrigin>,
}

impl serde::Serialize for AccessTokenClaims {
    /// Writes the claims directly, without an intermediate map (the signing hot path).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("iss", self.iss.as_str())?;
        m.serialize_entry("sub", &self.sub)?;
        m.serialize_entry("aud", self.aud.as_str())?;
        m.serialize_entry("client_id", self.client_id.as_str())?;
        if let Some(scope) = &self.scope {
            m.serialize_entry("scope", &scope.to_string())?;
        }
        m.serialize_entry("iat", &self.iat.as_secs())?;
        m.serialize_entry("exp", &self.exp.as_secs())?;
        m.serialize_entry("jti", self.jti.as_str())?;
        if let Some(t) = &self.tenant {
            m.serialize_entry("tenant", t)?;
        }
        if !self.groups.is_empty() {
            m.serialize_entry("groups", &self.groups)?;
        }
        if !self.roles.is_empty() {
            m.serialize_entry("roles", &self.roles)?;
        }
        if let Some(t) = self.auth_time {
            m.serialize_entry("auth_time", &t.as_secs())?;
        }
        if let Some(acr) = &self.acr {
            m.serialize_entry("acr", acr)?;
        }
        if let Some(amr) = &self.amr {
            m.serialize_entry("amr", amr)?;
        }
        if let Some(jkt) = &self.cnf_jkt {
            m.serialize_entry("cnf", &serde_json::json!({ "jkt": jkt }))?;
        }
        if let Some(details) = &self.authorization_details {
            m.serialize_entry("authorization_details", details)?;
        }
        if let Some(o) = &self.origin {
            let origin =
                serde_json::json!({"iss": o.iss.as_str(), "jti": o.jti.as_str(), "sub": o.sub});
            m.serialize_entry("id_jag", &origin)?;
        }
        m.end()
    }
}

impl AccessTokenClaims {
    /// The claim set as JSON.
    pub fn to_object(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }

    /// Reads a verified claim set as an access token (D-25): the required string claims
    /// (`iss`, `sub`, `client_id`, `jti`) must be present and non-empty, and every claim this
    /// type knows, when present, must have its JSON type. Nothing present is ever replaced by a
    /// default: a `cnf` that is not an object, or whose `jkt` is not a non-empty string, is an
    /// error, never "not bound" (a DPoP-bound token must not pass as a bearer token).
    fn from_claims(c: &ema_jose::Claims) -> Result<Self, ClaimError> {
        let strings = |claim: &'static str| -> Result<Vec<String>, ClaimError> {
            match c.get(claim) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or(ClaimError::WrongType {
                            claim,
                            expected: "an array of strings",
                        })
                    })
                    .collect(),
                Some(_) => Err(ClaimError::WrongType {
                    claim,
                    expected: "an array of strings",
                }),
            }
        };
        let opt = |claim| c.string(claim).map(|s| s.map(str::to_owned));
        let scope = match c.string("scope")? {
            None => None,
            Some(s) => Some(ScopeSet::parse(s).map_err(|_| ClaimError::WrongType {
                claim: "scope",
                expected: "a scope list",
            })?),
        };
        let amr = c.get("amr").map(|_| strings("amr")).transpose()?;
        // D-25: `aud` is a string or a non-empty array of strings; its first value must not be
        // empty (the validator has already matched this resource among the values).
        let aud = match c.audience(AudienceRule::AnyOf)?.first().copied() {
            None => return Err(ClaimError::Missing { claim: "aud" }),
            Some("") => return Err(ClaimError::Empty { claim: "aud" }),
            Some(aud) => Resource::new(aud),
        };
        Ok(Self {
            iss: Issuer::new(c.non_empty_string("iss")?),
            sub: c.non_empty_string("sub")?.to_owned(),
            aud,
            client_id: ClientId::new(c.non_empty_string("client_id")?),
            scope,
            iat: c
                .numeric_date("iat")?
                .ok_or(ClaimError::Missing { claim: "iat" })?,
            exp: c
                .numeric_date("exp")?
                .ok_or(ClaimError::Missing { claim: "exp" })?,
            jti: JwtId::new(c.non_empty_string("jti")?),
            tenant: opt("tenant")?,
            groups: strings("groups")?,
            roles: strings("roles")?,
            auth_time: c.numeric_date("auth_time")?,
            acr: opt("acr")?,
            amr,
            cnf_jkt: cnf_jkt(c)?,
            authorization_details: authorization_details(c)?,
            origin: id_jag_origin(c)?,
        })
    }
}

/// A member of an object claim that must be a non-empty string (D-25). `name` is
/// `parent.member`, as reported in the error.
fn member_string<'a>(
    object: &'a Map<String, Value>,
    member: &str,
    name: &'static str,
) -> Result<&'a str, ClaimError> {
    match object.get(member) {
        None => Err(ClaimError::Missing { claim: name }),
        Some(Value::String(s)) if s.is_empty() => Err(ClaimError::Empty { claim: name }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ClaimError::WrongType {
            claim: name,
            expected: "a string",
        }),
    }
}

/// `cnf.jkt` (D-17, D-25). Absent `cnf`: not bound. A present `cnf` must be an object with a
/// non-empty string `jkt`: a `cnf` of another type, without `jkt` (another confirmation method
/// this server cannot check) or with a `jkt` that is not a non-empty string is an error, so that
/// a bound token can never be used as a bearer token.
fn cnf_jkt(c: &ema_jose::Claims) -> Result<Option<String>, ClaimError> {
    match c.get("cnf") {
        None => Ok(None),
        Some(Value::Object(cnf)) => Ok(Some(member_string(cnf, "jkt", "cnf.jkt")?.to_owned())),
        Some(_) => Err(ClaimError::WrongType {
            claim: "cnf",
            expected: "an object",
        }),
    }
}

/// `authorization_details` (RFC 9396 §2, AS-14): when present, an array of objects (D-25).
fn authorization_details(c: &ema_jose::Claims) -> Result<Option<Vec<Value>>, ClaimError> {
    match c.get("authorization_details") {
        None => Ok(None),
        Some(Value::Array(items)) if items.iter().all(Value::is_object) => Ok(Some(items.clone())),
        Some(_) => Err(ClaimError::WrongType {
            claim: "authorization_details",
            expected: "an array of objects",
        }),
    }
}

/// `id_jag`: when present, an object whose `iss`, `jti` and `sub` are non-empty strings (D-25).
fn id_jag_origin(c: &ema_jose::Claims) -> Result<Option<IdJagOrigin>, ClaimError> {
    match c.get("id_jag") {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(IdJagOrigin {
            iss: Issuer::new(member_string(o, "iss", "id_jag.iss")?),
            jti: JwtId::new(member_string(o, "jti", "id_jag.jti")?),
            sub: member_string(o, "sub", "id_jag.sub")?.to_owned(),
        })),
        Some(_) => Err(ClaimError::WrongType {
            claim: "id_jag",
            expected: "an object",
        }),
    }
}

/// Mints access tokens signed by a [`KeyRing`].
#[derive(Debug, Clone)]
pub struct AccessTokenIssuer {
    issuer: Issuer,
    keys: Arc<KeyRing>,
    lifetime: u64,
}

/// The default access-token lifetime: five minutes (RV-24, D-40). Revocation reaches a
/// resource server without a ledger mirror only when its tokens expire, so they are short.
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: u64 = 300;

/// The longest access-token lifetime: one day, the longest `exp - iat`
/// [`AccessTokenValidator`] accepts.
pub const MAX_ACCESS_TOKEN_LIFETIME: u64 = 24 * 3600;

impl AccessTokenIssuer {
    /// An issuer with the default five-minute lifetime (RV-24, D-40).
    pub fn new(issuer: Issuer, keys: Arc<KeyRing>) -> Self {
        Self {
            issuer,
            keys,
            lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
        }
    }

    /// Sets the lifetime in seconds, clamped to `1..=`[`MAX_ACCESS_TOKEN_LIFETIME`] (a longer
    /// token would be refused by [`AccessTokenValidator`] anyway).
    #[must_use]
    pub fn with_lifetime(mut self, secs: u64) -> Self {
        self.lifetime = secs.clamp(1, MAX_ACCESS_TOKEN_LIFETIME);
        self
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The lifetime in seconds.
    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// Fresh claims for `sub` and `aud` at `now`: a random `jti`, `exp` one lifetime ahead.
    pub fn claims(
        &self,
        sub: String,
        aud: Resource,
        client_id: ClientId,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, SignError> {
        Ok(AccessTokenClaims {
            iss: self.issuer.clone(),
            sub,
            aud,
            client_id,
            scope: None,
            iat: now,
            exp: now.plus(self.lifetime),
            jti: JwtId::new(random_id()?),
            tenant: None,
            groups: Vec::new(),
            roles: Vec::new(),
            auth_time: None,
            acr: None,
            amr: None,
            cnf_jkt: None,
            authorization_details: None,
            origin: None,
        })
    }

    /// Verifies an access token this issuer signed (any audience) at `now`: strict parse,
    /// `typ` `at+jwt`, `iss` is this issuer, a key of this issuer's ring, signature, time. For
    /// the AS's own endpoints (RFC 7009 revocation, RV-20); resource servers use
    /// [`AccessTokenValidator`].
    pub fn verify_own(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, AccessTokenError> {
        let jwt = UnverifiedJwt::parse(token, &ParseOptions::new())
            .map_err(AccessTokenError::Malformed)?;
        let policy = HeaderPolicy::for_kind(TokenKind::AccessToken);
        let alg = policy
            .check(jwt.header())
            .map_err(AccessTokenError::Header)?;
        if jwt.unverified_claims().string("iss").ok().flatten() != Some(self.issuer.as_str()) {
            return Err(AccessTokenError::WrongIssuer);
        }
        let key = ema_jose::StaticKeySource::new()
            .with_issuer(self.issuer.as_str(), self.keys.jwks())
            .resolve_now(self.issuer.as_str(), jwt.header().kid(), alg)
            .map_err(AccessTokenError::Key)?;
        let verified = jwt
            .verify(&policy, &key)
            .map_err(AccessTokenError::Signature)?;
        let c = verified.claims();
        let time = TimeOptions::new().with_max_lifetime(Some(std::time::Duration::from_secs(
            MAX_ACCESS_TOKEN_LIFETIME,
        )));
        c.check_validity(&time, now)
            .map_err(AccessTokenError::Claims)?;
        AccessTokenClaims::from_claims(c).map_err(AccessTokenError::Claims)
    }

    /// Signs `claims` with `typ` `at+jwt` (RFC 9068 §2.1).
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, SignError> {
        self.keys
            .active()
            .sign_jwt(TokenKind::AccessToken.typ(), claims)
    }
}

/// Why an access token was refused at the MCP server (all → 401 `invalid_token`, RS-4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessTokenError {
    /// Malformed.
    #[error("malformed token: {0}")]
    Malformed(ParseError),
    /// Header refused (`typ` not `at+jwt`: RS-3; D-18).
    #[error("token header refused: {0}")]
    Header(ema_jose::HeaderError),
    /// Not issued by the expected authorization server (RS-2).
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// No key.
    #[error("no verification key: {0}")]
    Key(KeyLookupError),
    /// Bad signature.
    #[error("signature refused: {0}")]
    Signature(VerifyError),
    /// Not for this resource (RS-2, RS-4).
    #[error("token is not for this resource")]
    WrongAudience,
    /// Expired or otherwise outside its window, or claims malformed.
    #[error("claims refused: {0}")]
    Claims(ClaimError),
}

impl ema_metadata::ToErrorCode for AccessTokenError {
    /// At the resource server (RFC 6750 §3.1): `invalid_token` (401) for every refused token,
    /// `temporarily_unavailable` (503) when the authorization server's keys cannot be
    /// consulted, which is no fault of the token (fail closed, the client may retry).
    fn error_code(&self) -> ema_metadata::ErrorCode {
        use ema_metadata::ErrorCode;
        match self {
            Self::Key(k) if k.is_unavailable() => ErrorCode::TemporarilyUnavailable,
            Self::Malformed(_)
            | Self::Header(_)
            | Self::WrongIssuer
            | Self::Key(_)
            | Self::Signature(_)
            | Self::WrongAudience
            | Self::Claims(_) => ErrorCode::InvalidToken,
        }
    }

    fn error_description(&self) -> &'static str {
        match self {
            Self::Key(k) if k.is_unavailable() => {
                "the authorization server's keys are unavailable; try again later"
            }
            Self::WrongAudience => "the access token is not for this resource",
            Self::Claims(ClaimError::Time(_)) => "the access token expired",
            Self::Malformed(_)
            | Self::Header(_)
            | Self::WrongIssuer
            | Self::Key(_)
            | Self::Signature(_)
            | Self::Claims(_) => "the access token is invalid",
        }
    }
}

/// Validates access tokens at one MCP server (RS-2..RS-4).
#[derive(Debug, Clone)]
pub struct AccessTokenValidator<K> {
    issuer: Issuer,
    resource: Resource,
    keys: K,
    time: TimeOptions,
    algorithms: AlgorithmSet,
}

impl<K: KeySource> AccessTokenValidator<K> {
    /// Tokens from `issuer` for `resource`, keys from `keys`; the algorithms of
    /// [`AlgorithmSet::DEFAULT`] (D-26), 30 s clock leeway (D-7), lifetimes up to
    /// [`MAX_ACCESS_TOKEN_LIFETIME`].
    pub fn new(issuer: Issuer, resource: Resource, keys: K) -> Self {
        Self {
            issuer,
            resource,
            keys,
            time: TimeOptions::new().with_max_lifetime(Some(std::time::Duration::from_secs(
                MAX_ACCESS_TOKEN_LIFETIME,
            ))),
            algorithms: AlgorithmSet::DEFAULT,
        }
    }

    /// Sets the algorithms accepted from the authorization server (D-26, SEC-4). The header
    /// check refuses any other `alg` before a key is looked up.
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// The accepted algorithms.
    pub fn algorithms(&self) -> AlgorithmSet {
        self.algorithms
    }

    /// Sets the clock leeway for `exp`, `nbf` and `iat` (D-7: default 30 s). Values above
    /// [`TimeOptions::MAX_LEEWAY`] (60 s) are clamped to it, as everywhere in this workspace.
    #[must_use]
    pub fn with_leeway(mut self, leeway: std::time::Duration) -> Self {
        self.time = self.time.with_leeway(leeway);
        self
    }

    /// The clock leeway in force.
    pub fn leeway(&self) -> std::time::Duration {
        self.time.leeway
    }

    /// The authorization server whose tokens are accepted.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// This resource.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// The key source.
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// Validates `token` at `now`: strict parse, `typ` `at+jwt` (RS-3), `iss` (RS-2), the
    /// issuer's key, signature, `aud` contains this resource exactly (RS-2, RS-4), time.
    pub async fn validate(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, AccessTokenError> {
        let jwt = UnverifiedJwt::parse(token, &ParseOptions::new())
            .map_err(AccessTokenError::Malformed)?;
        let policy =
            HeaderPolicy::for_kind(TokenKind::AccessToken).with_algorithms(self.algorithms);
        let alg = policy
            .check(jwt.header())
            .map_err(AccessTokenError::Header)?;
        if jwt.unverified_claims().string("iss").ok().flatten() != Some(self.issuer.as_str()) {
            return Err(AccessTokenError::WrongIssuer);
        }
        let key = self
            .keys
            .resolve(self.issuer.as_str(), jwt.header().kid(), alg)
            .await
            .map_err(AccessTokenError::Key)?;
        let verified = jwt
            .verify(&policy, &key)
            .map_err(AccessTokenError::Signature)?;
        let c = verified.claims();
        c.check_audience(self.resource.as_str(), AudienceRule::AnyOf)
            .map_err(|_| AccessTokenError::WrongAudience)?;
        c.check_validity(&self.time, now)
            .map_err(AccessTokenError::Claims)?;
        let mut claims = AccessTokenClaims::from_claims(c).map_err(AccessTokenError::Claims)?;
        claims.aud = self.resource.clone();
        Ok(claims)
    }
}
