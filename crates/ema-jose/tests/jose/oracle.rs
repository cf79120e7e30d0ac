//! `jsonwebtoken` as the interoperability oracle: ema-jose may be stricter than a mainstream JWT
//! library, never looser. Every token ema-jose accepts (the attack table's accepted rows, the
//! Wycheproof JWS vectors it accepts, freshly signed tokens of a proptest) must also verify
//! under `jsonwebtoken` with the same key and yield the same claims. The reverse is expected
//! (ema-jose refuses what `jsonwebtoken` lets through) and a few such cases are asserted below
//! with the rule that makes ema-jose stricter.
//!
//! What `jsonwebtoken` 12 checks, and so what the oracle can vouch for: the compact shape, the
//! base64url of each part, the header JSON (it refuses unknown `crit` entries), the algorithm
//! against the allow-list, the signature, `exp` (with the leeway below), `iss` and `aud` when
//! the claim is present. It never looks at `typ`, `iat`, `nbf` (off by default) or lifetimes.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use ema_jose::{Algorithm, UnixTime, VerifyingKey};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, TokenData, Validation};
use serde_json::{Map, Value};

/// What `jsonwebtoken` made of a token.
#[derive(Debug)]
pub(crate) enum Oracle {
    /// Verified and validated: the header and the claims as `jsonwebtoken` decoded them.
    Accepted(Box<TokenData<Value>>),
    /// Refused, with `jsonwebtoken`'s reason.
    Refused(ErrorKind),
    /// `jsonwebtoken` does not implement this algorithm or key (ES512, P-521).
    Unsupported(Algorithm),
}

/// The algorithm of the same name in `jsonwebtoken`, if it implements it.
pub(crate) fn oracle_algorithm(alg: Algorithm) -> Option<jsonwebtoken::Algorithm> {
    alg.name().parse().ok()
}

/// `key` (an ema-jose key, as its public JWK) as a `jsonwebtoken` key.
pub(crate) fn decoding_key(key: &VerifyingKey) -> Option<DecodingKey> {
    decoding_key_from_jwk(key.public_jwk())
}

/// A public JWK as a `jsonwebtoken` key; `None` for a key `jsonwebtoken` cannot read.
pub(crate) fn decoding_key_from_jwk(jwk: &Map<String, Value>) -> Option<DecodingKey> {
    let jwk: Jwk = serde_json::from_value(Value::Object(jwk.clone())).ok()?;
    DecodingKey::from_jwk(&jwk).ok()
}

/// `jsonwebtoken` reads the wall clock and offers no way to pass a time; the tests run at a
/// fixed `now`. This leeway moves its `exp` check to `now` instead: it refuses when
/// `exp < wall - leeway`, that is when `exp < now - 60 - 5`. 60 s is ema-jose's largest leeway
/// (D-7), so a token ema-jose accepts at `now` is never expired here; the 5 s absorb the wall
/// clock ticking between this read and `jsonwebtoken`'s.
pub(crate) fn leeway_for(now: UnixTime) -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    wall.saturating_sub(now.as_secs()) + 60 + 5
}

/// Decodes `token` with `jsonwebtoken` the way a downstream service would: the one algorithm
/// ema-jose verified it with, `exp` required and checked at `now`, `iss` and `aud` checked
/// when expected (and then required).
pub(crate) fn decode(
    token: &str,
    key: &VerifyingKey,
    alg: Algorithm,
    issuer: Option<&str>,
    audience: Option<&str>,
    now: UnixTime,
) -> Oracle {
    let (Some(oracle_alg), Some(key)) = (oracle_algorithm(alg), decoding_key(key)) else {
        return Oracle::Unsupported(alg);
    };
    let mut validation = Validation::new(oracle_alg);
    validation.leeway = leeway_for(now);
    let mut required = vec!["exp"];
    match issuer {
        Some(iss) => {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        None => validation.iss = None,
    }
    match audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.required_spec_claims = required
        .into_iter()
        .map(str::to_owned)
        .collect::<HashSet<_>>();
    match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(data) => Oracle::Accepted(Box::new(data)),
        Err(e) => Oracle::Refused(e.into_kind()),
    }
}

/// The JWS-level oracle, for payloads that are not claim sets (Wycheproof): `jsonwebtoken`
/// reads the header, which must name `alg`, and verifies the signature over the signing input.
/// `jsonwebtoken::crypto::verify` answers `Ok(false)` for a bad signature, which counts as a
/// refusal like an error does.
pub(crate) fn verify_jws(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    let oracle_alg = oracle_algorithm(alg).ok_or_else(|| format!("{alg} unsupported"))?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    if header.alg != oracle_alg {
        return Err(format!("header alg {:?}, verified as {alg}", header.alg));
    }
    let (message, signature) = token.rsplit_once('.').ok_or("no signature part")?;
    match jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, oracle_alg) {
        Ok(true) => Ok(()),
        Ok(false) => Err("bad signature".to_owned()),
        Err(e) => Err(format!("verify: {e}")),
    }
}

/// Freshly signed tokens of arbitrary claims (the claim sets of `properties`), for each
/// algorithm of the default allow-list and PS256: ema-jose accepts them at their `iat`, and so
/// must `jsonwebtoken`, with the same claims member by member.
fn fresh_tokens_verify_under_jsonwebtoken(alg: Algorithm, cases: u32) {
    use ema_jose::{HeaderPolicy, ParseOptions, SigningKey, TimeOptions, TokenKind, UnverifiedJwt};
    use proptest::prelude::*;

    let key = SigningKey::generate(alg, Some(format!("oracle-{alg}"))).expect("key");
    let policy =
        HeaderPolicy::for_kind(TokenKind::IdJag).with_algorithms(ema_jose::AlgorithmSet::ALL);
    let result = crate::properties::runner(cases).run(&crate::properties::claim_set(), |claims| {
        let token = key
            .sign_jwt(TokenKind::IdJag.typ(), &claims)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let iat = UnixTime::from_secs(claims["iat"].as_u64().expect("iat"));
        let iss = claims["iss"].as_str().expect("iss").to_owned();
        let verified = UnverifiedJwt::parse(&token, &ParseOptions::new())
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?
            .verify(&policy, key.verifying_key())
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        verified
            .claims()
            .check_validity(&TimeOptions::new(), iat)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        match decode(&token, key.verifying_key(), alg, Some(&iss), None, iat) {
            Oracle::Accepted(data) => {
                prop_assert_eq!(data.claims, Value::Object(claims));
                prop_assert_eq!(data.header.kid.as_deref(), key.kid());
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "ema-jose accepts, jsonwebtoken does not: {other:?}"
                )));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{alg} oracle: {e}");
    }
}

#[test]
fn oracle_es256_fresh_tokens() {
    fresh_tokens_verify_under_jsonwebtoken(Algorithm::ES256, 48);
}

#[test]
fn oracle_eddsa_fresh_tokens() {
    fresh_tokens_verify_under_jsonwebtoken(Algorithm::EdDSA, 48);
}

#[test]
fn oracle_rs256_fresh_tokens() {
    fresh_tokens_verify_under_jsonwebtoken(Algorithm::RS256, 12);
}

#[test]
fn oracle_ps256_fresh_tokens() {
    fresh_tokens_verify_under_jsonwebtoken(Algorithm::PS256, 12);
}
