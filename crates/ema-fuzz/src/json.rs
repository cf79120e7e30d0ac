//! The `json_claims` target: the claims reader of `ema-jose` against its `serde_json`-based
//! strict parser.

use ema_jose::{JsonError, ParseError, ParseOptions, UnverifiedJwt, base64url, parse_json_object};
use serde_json::Value;

/// The header every token of this target carries (its parse is not under test here).
const HEADER: &str = r#"{"alg":"ES256","typ":"oauth-id-jag+jwt"}"#;

/// Uses `data` as the payload of a compact JWT and checks that the claims reader behind
/// [`UnverifiedJwt::parse`] (a hand-written index of the top-level members) gives the same
/// verdict as [`parse_json_object`] (`serde_json` plus the strictness rules) at the same depth
/// limit:
///
/// - both accept, with the same object, member by member (`get`, `iter` order-insensitively,
///   `string`, `numeric_date`), or
/// - both refuse, with the same error (`Syntax` positions may differ).
///
/// Any disagreement panics. Payloads over the token size cap are skipped.
pub fn json_claims(data: &[u8]) {
    let options = ParseOptions::new().with_max_len(64 * 1024);
    let token = format!(
        "{}.{}.c2ln",
        base64url::encode(HEADER.as_bytes()),
        base64url::encode(data)
    );
    if token.len() > options.max_len {
        return;
    }
    let indexed = UnverifiedJwt::parse(&token, &options);
    let general = parse_json_object(data, options.max_depth);
    assert_eq!(
        indexed.is_ok(),
        general.is_ok(),
        "verdicts differ: {indexed:?} vs {general:?}"
    );
    match (indexed, general) {
        (Ok(jwt), Ok(map)) => {
            let claims = jwt.unverified_claims();
            assert_eq!(claims.len(), map.len(), "member count");
            for (name, value) in &map {
                assert_eq!(claims.get(name), Some(value), "member {name:?}");
            }
            for (name, value) in claims.iter() {
                assert_eq!(map.get(name), Some(value), "member {name:?} in order");
            }
            assert_eq!(claims.as_object(), &map, "whole object");
            // The typed readers agree with the values.
            for claim in [
                "iss", "sub", "aud", "exp", "iat", "nbf", "scope", "jti", "amr",
            ] {
                let value = map.get(claim);
                match claims.string(claim) {
                    Ok(Some(s)) => assert_eq!(value.and_then(Value::as_str), Some(s)),
                    Ok(None) => assert!(value.is_none(), "{claim} absent"),
                    Err(_) => assert!(value.is_some_and(|v| !v.is_string()), "{claim} type"),
                }
                if let Ok(Some(t)) = claims.numeric_date(claim) {
                    assert!(value.is_some_and(Value::is_number), "{claim} is a number");
                    let _ = t;
                }
            }
        }
        (Err(indexed), Err(general)) => {
            assert!(
                matches!(indexed, ParseError::ClaimsJson(_)),
                "only the claims can be refused here: {indexed:?}"
            );
            if let ParseError::ClaimsJson(indexed) = indexed
                && !matches!(
                    (&indexed, &general),
                    (JsonError::Syntax { .. }, JsonError::Syntax { .. })
                )
            {
                assert_eq!(indexed, general, "same refusal");
            }
        }
        // Both accept or both refuse, asserted above.
        _ => {}
    }
}
