use std::collections::HashSet;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

/// The claims an ema-rs authorization server puts into an access token.
#[derive(Debug, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: Option<String>,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    pub cnf: Option<serde_json::Value>,
    pub id_jag: Option<IdJagLink>,
}

/// The ID-JAG an access token was issued for.
#[derive(Debug, Deserialize)]
pub struct IdJagLink {
    pub iss: String,
    pub jti: String,
    pub sub: String,
}

impl AccessTokenClaims {
    /// The granted scopes.
    pub fn scopes(&self) -> HashSet<&str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .collect()
    }
}

#[derive(Debug)]
pub enum Refused {
    /// Not an access token (`typ` is not `at+jwt`).
    NotAnAccessToken,
    /// No key with the token's `kid` (refresh the JWKS once, then refuse).
    UnknownKey,
    /// The key's algorithm is missing or not allowed.
    Algorithm,
    /// A DPoP-bound token presented without DPoP.
    DpopBound,
    /// Signature, `iss`, `aud`, `exp` or claim types.
    Invalid(jsonwebtoken::errors::Error),
}

/// Parses the JWKS document fetched from the AS's `jwks_uri`.
pub fn parse_jwks(body: &[u8]) -> Result<JwkSet, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The algorithms this service accepts (the AS signs with `ES256` unless configured otherwise).
const ALLOWED: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// Validates an access token from the `Authorization: Bearer` header for this resource.
pub fn validate_access_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    resource: &str,
) -> Result<AccessTokenClaims, Refused> {
    let header = decode_header(token).map_err(Refused::Invalid)?;
    // jsonwebtoken does not check `typ`: do it here (RFC 9068 §4).
    let typ = header
        .typ
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if typ != "at+jwt" && typ != "application/at+jwt" {
        return Err(Refused::NotAnAccessToken);
    }
    let kid = header.kid.as_deref().ok_or(Refused::UnknownKey)?;
    let jwk = jwks.find(kid).ok_or(Refused::UnknownKey)?;
    // The algorithm comes from the key the AS published, not from the token.
    let alg = jwk.common.key_algorithm.ok_or(Refused::Algorithm)?;
    let alg = Algorithm::try_from(alg).map_err(|_| Refused::Algorithm)?;
    if !ALLOWED.contains(&alg) {
        return Err(Refused::Algorithm);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(Refused::Invalid)?;

    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[resource]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 30;
    let claims = decode::<AccessTokenClaims>(token, &key, &validation)
        .map_err(Refused::Invalid)?
        .claims;
    if claims.cnf.is_some() {
        // This service does not check DPoP proofs (RFC 9449 §7).
        return Err(Refused::DpopBound);
    }
    Ok(claims)
}
