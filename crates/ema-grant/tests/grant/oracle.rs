//! `jsonwebtoken` as the interoperability oracle at the grant level: every ID-JAG the IdP mints
//! and every access token the authorization server mints (every 200 that `Fx::send` sees) is
//! decoded and validated with `jsonwebtoken` the way a downstream service would do it, with no
//! ema-rs code on the reading side: the issuer's JWKS as JSON, parsed by `jsonwebtoken`, the key
//! picked by the token's `kid`, the algorithm of that key, `iss`, `aud` and `exp` checked by
//! `jsonwebtoken`, and the `typ` checked by hand because `jsonwebtoken` never reads it
//! (RFC 9068 §4 for `at+jwt`, JAG-1 for the ID-JAG).

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use ema_jose::{JwkSet, UnixTime};
use jsonwebtoken::jwk::JwkSet as OracleJwkSet;
use jsonwebtoken::{DecodingKey, TokenData, Validation};
use serde_json::Value;

/// `jsonwebtoken` reads the wall clock and cannot be given a time, while these tests mint at
/// the fixed [`crate::support::NOW`]. This leeway moves its `exp` check back to `now`: it
/// refuses when `exp < wall - leeway`, that is `exp < now - 5` (the 5 s absorb the clock ticking
/// between this read and `jsonwebtoken`'s).
fn leeway_for(now: UnixTime) -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    wall.saturating_sub(now.as_secs()) + 5
}

/// Decodes `token` as a service holding `jwks` (the issuer's published key set) would:
/// key by `kid`, the key's own algorithm, `typ` == `expected_typ`, `iss` == `issuer`, `aud`
/// containing `audience`, `exp` checked at `now`; `iss`, `aud`, `exp` required.
pub(crate) fn downstream_decode(
    token: &str,
    jwks: &JwkSet,
    expected_typ: &str,
    issuer: &str,
    audience: &str,
    now: UnixTime,
) -> Result<TokenData<Value>, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    let typ = header.typ.as_deref().unwrap_or_default();
    if !typ.eq_ignore_ascii_case(expected_typ) {
        return Err(format!("typ {typ:?}, expected {expected_typ:?}"));
    }
    let published = serde_json::to_string(&jwks.to_public_json()).map_err(|e| e.to_string())?;
    let set: OracleJwkSet = serde_json::from_str(&published).map_err(|e| format!("JWKS: {e}"))?;
    let kid = header.kid.as_deref().ok_or("no kid")?;
    let jwk = set.find(kid).ok_or_else(|| format!("no key {kid:?}"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key: {e}"))?;
    let alg = jwk
        .common
        .key_algorithm
        .ok_or("the published key has no alg")?;
    let alg = jsonwebtoken::Algorithm::try_from(alg).map_err(|e| format!("alg: {e}"))?;
    let mut validation = Validation::new(alg);
    validation.leeway = leeway_for(now);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.required_spec_claims = ["exp", "iss", "aud"]
        .into_iter()
        .map(str::to_owned)
        .collect::<HashSet<_>>();
    jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| format!("decode: {e}"))
}

/// For every successful token-endpoint reply: the minted token validates downstream, and the
/// claims `jsonwebtoken` decodes are exactly the ones ema-rs wrote (read back without checks).
pub(crate) fn check_minted(
    token: &str,
    jwks: &JwkSet,
    expected_typ: &str,
    issuer: &str,
    now: UnixTime,
) {
    let (_, written) = crate::support::peek(token);
    // The audience the token was minted for: the AS for an ID-JAG (JAG-3, one string), the
    // resource for an access token (RFC 9068 §3, AS-13); the oracle then checks it matches.
    let audience = match &written["aud"] {
        Value::String(aud) => aud.clone(),
        other => panic!("minted token has a non-string aud {other}"),
    };
    match downstream_decode(token, jwks, expected_typ, issuer, &audience, now) {
        Ok(data) => assert_eq!(
            data.claims, written,
            "jsonwebtoken decodes other claims than ema-rs wrote"
        ),
        Err(e) => panic!("a token ema-rs minted does not validate under jsonwebtoken: {e}"),
    }
}

/// The whole chain through the oracle: the ID token is exchanged at the IdP, the ID-JAG
/// redeemed at the AS, and both minted tokens validate under `jsonwebtoken` with the keys the
/// issuers publish; the claims a downstream service reads are the ones the grants put in
/// (JAG-2..JAG-6, AS-11, RFC 9068 §2.2). Negative controls: the same tokens are refused for
/// another audience, another issuer, the other token's `typ`, and the other issuer's keys.
#[test]
fn oracle_minted_id_jag_and_access_token_validate_downstream() {
    use crate::support::*;
    use serde_json::json;

    let fx = Fx::new();
    let exchange = fx.ok(&Req::exchange(&fx.id_token(json!({}))));
    let jag = exchange.str("access_token").to_owned();
    let idp_keys = fx.keys.idp.jwks();
    let data = downstream_decode(&jag, &idp_keys, "oauth-id-jag+jwt", IDP, AS, NOW)
        .expect("the ID-JAG validates at the AS under jsonwebtoken");
    assert_eq!(data.claims["sub"], USER);
    assert_eq!(data.claims["client_id"], CLIENT);
    assert_eq!(data.claims["resource"], TASKS);

    let bearer = fx.ok(&Req::bearer(&jag));
    let at = bearer.str("access_token");
    let as_keys = fx.keys.as_ring.jwks();
    let data = downstream_decode(at, &as_keys, "at+jwt", AS, TASKS, NOW)
        .expect("the access token validates at the resource under jsonwebtoken");
    assert_eq!(data.header.kid.as_deref(), Some("as-k1"));
    for claim in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "jti",
        "iat",
        "exp",
        "scope",
    ] {
        assert!(data.claims.get(claim).is_some(), "RFC 9068 §2.2: {claim}");
    }
    assert_eq!(data.claims["aud"], TASKS, "AS-13: audience is the resource");

    // Negative controls, each against a token the positive controls above accepted.
    for (what, outcome) in [
        (
            "another resource",
            downstream_decode(at, &as_keys, "at+jwt", AS, NOTES, NOW),
        ),
        (
            "another issuer",
            downstream_decode(at, &as_keys, "at+jwt", IDP, TASKS, NOW),
        ),
        (
            "ID-JAG typ expected",
            downstream_decode(at, &as_keys, "oauth-id-jag+jwt", AS, TASKS, NOW),
        ),
        (
            "the IdP's keys",
            downstream_decode(at, &idp_keys, "at+jwt", AS, TASKS, NOW),
        ),
        (
            "an ID-JAG offered as an access token",
            downstream_decode(&jag, &idp_keys, "at+jwt", IDP, AS, NOW),
        ),
        (
            "expired (an hour and a minute later)",
            downstream_decode(at, &as_keys, "at+jwt", AS, TASKS, NOW.plus(3660)),
        ),
    ] {
        assert!(outcome.is_err(), "{what}: jsonwebtoken accepted it");
    }
}

/// `docs/validating-access-tokens.md` shows `crate::guide` verbatim, so the code that the
/// tests below run is the code readers copy.
#[test]
fn oracle_guide_code_is_the_code_of_the_docs_page() {
    let page = include_str!("../../../../docs/validating-access-tokens.md");
    let start = page.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let len = page[start..].find("```").expect("the block ends");
    assert_eq!(
        &page[start..start + len],
        include_str!("guide.rs"),
        "docs/validating-access-tokens.md and tests/grant/guide.rs differ"
    );
}

/// The guide's validator, as written for a service (it reads the wall clock through
/// `jsonwebtoken`), on an access token the AS mints: it accepts the token for its resource
/// and refuses it for another resource, another issuer, an ID-JAG, and a DPoP-bound token.
/// This test alone mints at the wall clock, read once, because the code under test cannot be
/// given a time.
#[test]
fn oracle_guide_validates_a_minted_access_token() {
    use crate::guide::{Refused, parse_jwks, validate_access_token};
    use crate::support::*;
    use serde_json::json;

    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let now = UnixTime::from_secs(wall);
    let fx = Fx::new();
    let secs = |delta: i64| json!(wall.checked_add_signed(delta).expect("in range"));
    let jag = fx.jag(json!({"iat": secs(-10), "exp": secs(290), "auth_time": secs(-600)}));
    let mint = |req: &Req| {
        let reply = Reply::check(pollster::block_on(fx.as_default.handle(&req.build(), now)));
        assert_eq!(reply.status, 200, "{}", reply.raw);
        reply.str("access_token").to_owned()
    };
    let at = mint(&Req::bearer(&jag));
    let published = serde_json::to_vec(&fx.keys.as_ring.jwks().to_public_json()).unwrap();
    let jwks = parse_jwks(&published).expect("the AS JWKS parses");

    let claims = validate_access_token(&at, &jwks, AS, TASKS).expect("valid at its resource");
    assert_eq!(claims.aud, TASKS);
    assert_eq!(claims.client_id, CLIENT);
    assert!(claims.scopes().contains("tasks.read"));
    assert_eq!(claims.id_jag.as_ref().map(|o| o.iss.as_str()), Some(IDP));

    assert!(matches!(
        validate_access_token(&at, &jwks, AS, NOTES),
        Err(Refused::Invalid(_))
    ));
    assert!(matches!(
        validate_access_token(&at, &jwks, IDP, TASKS),
        Err(Refused::Invalid(_))
    ));
    assert!(matches!(
        validate_access_token(&jag, &jwks, AS, TASKS),
        Err(Refused::NotAnAccessToken)
    ));
    // RFC 9449: a DPoP-bound token is refused by a service that does not check proofs.
    let proof = fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({"iat": secs(0)}));
    let fresh = fx.jag(json!({"iat": secs(-10), "exp": secs(290), "auth_time": secs(-600)}));
    let bound = mint(&Req::bearer(&fresh).dpop(&proof));
    assert!(matches!(
        validate_access_token(&bound, &jwks, AS, TASKS),
        Err(Refused::DpopBound)
    ));
}
