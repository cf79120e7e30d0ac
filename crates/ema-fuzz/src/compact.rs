//! The `jws_compact` target: the strict compact-JWS and JWT readers.

use ema_jose::{
    AlgorithmSet, AudienceRule, HeaderPolicy, ParseError, ParseOptions, TimeOptions, TokenKind,
    UnverifiedJws, UnverifiedJwt, base64url, parse_json_object, typ, typ_matches,
};
use serde_json::Value;

use crate::verify::{FIXED_AUDIENCE, FIXED_ISSUER, FIXED_NOW};

/// Every token kind, so that each header policy sees every parsed header.
const KINDS: [TokenKind; 5] = [
    TokenKind::IdJag,
    TokenKind::AccessToken,
    TokenKind::IdToken,
    TokenKind::ClientAssertion,
    TokenKind::DpopProof,
];

/// Parses `data` with [`UnverifiedJws::parse`] and [`UnverifiedJwt::parse`] under the default
/// [`ParseOptions`] and checks:
///
/// - the JWT parse fails exactly when the JWS parse fails (with the same error) or the payload
///   is not a strict JSON object, and both see the same header;
/// - an accepted token is within the size cap and made of three canonical base64url segments
///   with a non-empty signature; its typed `alg`, `typ` and `kid` are the header JSON's members;
/// - errors describe the input (`Segments` counts its dots, `TooLarge` its length);
/// - every [`TokenKind`] policy returns an allowed algorithm named by `alg`, and the ID-JAG
///   policy only with an ID-JAG `typ`;
/// - the claim checks run on the *unverified* claims (a mutated token almost never carries a
///   valid signature, so [`jws_verify`](crate::jws_verify) rarely reaches them) and their results
///   agree with each other.
///
/// Inputs that are not UTF-8 cannot be a `&str` token and are skipped.
pub fn jws_compact(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let options = ParseOptions::new();
    let jws = UnverifiedJws::parse(token, &options);
    let jwt = UnverifiedJwt::parse(token, &options);

    let jws = match jws {
        Ok(jws) => jws,
        Err(error) => {
            check_error(token, &options, &error);
            assert_eq!(
                jwt.err(),
                Some(error),
                "JWT parse must fail as the JWS parse"
            );
            return;
        }
    };
    check_structure(token, &options, &jws);
    for kind in KINDS {
        check_policy(kind, jws.header());
    }

    match jwt {
        Ok(jwt) => {
            assert_eq!(jwt.header(), jws.header(), "JWT and JWS headers differ");
            let claims = parse_json_object(jws.unverified_payload(), options.max_depth);
            assert_eq!(
                claims.as_ref().ok(),
                Some(jwt.unverified_claims().as_object()),
                "claims are not the payload's JSON object"
            );
            check_claims(jwt.unverified_claims());
        }
        Err(ParseError::ClaimsJson(_)) => {
            assert!(
                parse_json_object(jws.unverified_payload(), options.max_depth).is_err(),
                "JWT parse refused a payload that is a strict JSON object"
            );
        }
        Err(other) => panic_invariant(&format!("JWS parsed but JWT failed with {other:?}")),
    }
}

/// Fails the run: an invariant this crate asserts on purpose does not hold.
#[expect(
    clippy::panic,
    reason = "a fuzz target reports a broken invariant by panicking"
)]
fn panic_invariant(what: &str) -> ! {
    panic!("invariant violated: {what}")
}

fn check_error(token: &str, options: &ParseOptions, error: &ParseError) {
    match error {
        ParseError::TooLarge { len, max } => {
            assert_eq!(*len, token.len());
            assert_eq!(*max, options.max_len);
            assert!(len > max);
        }
        ParseError::Segments { segments } => {
            assert_eq!(*segments, token.matches('.').count() + 1);
            assert_ne!(*segments, 3);
        }
        ParseError::EmptySignature => assert!(token.ends_with('.')),
        _ => {}
    }
}

fn check_structure(token: &str, options: &ParseOptions, jws: &UnverifiedJws) {
    assert!(
        token.len() <= options.max_len,
        "accepted above the size cap"
    );
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        panic_invariant("accepted a token without exactly three segments");
    };
    assert!(!signature_b64.is_empty(), "accepted an empty signature");
    assert!(
        base64url::decode(signature_b64.as_bytes()).is_some(),
        "accepted a non-canonical signature segment"
    );
    assert_eq!(
        base64url::decode(payload_b64.as_bytes()).as_deref(),
        Some(jws.unverified_payload()),
        "payload is not the decoded payload segment"
    );
    let header_json = base64url::decode(header_b64.as_bytes())
        .and_then(|bytes| parse_json_object(&bytes, options.max_depth).ok());
    let header = jws.header();
    assert_eq!(
        header_json.as_ref(),
        Some(header.raw()),
        "header is not the decoded header segment"
    );
    let member = |name: &str| header.raw().get(name).and_then(Value::as_str);
    assert_eq!(member("alg"), Some(header.alg()), "typed `alg` differs");
    assert_eq!(member("typ"), header.typ(), "typed `typ` differs");
    assert_eq!(member("kid"), header.kid(), "typed `kid` differs");
    for name in ["alg", "typ", "kid", "cty"] {
        assert!(
            header.raw().get(name).is_none_or(Value::is_string),
            "accepted a non-string `{name}`"
        );
    }
}

fn check_policy(kind: TokenKind, header: &ema_jose::Header) {
    let Ok(alg) = HeaderPolicy::for_kind(kind).check(header) else {
        return;
    };
    assert_eq!(
        alg.name(),
        header.alg(),
        "policy returned another algorithm"
    );
    assert!(AlgorithmSet::DEFAULT.contains(alg), "algorithm not allowed");
    for name in ["crit", "b64", "zip", "enc", "jku", "x5u", "x5c", "cty"] {
        assert!(!header.has(name), "policy accepted `{name}`");
    }
    if kind == TokenKind::IdJag {
        assert!(
            header.typ().is_some_and(|t| typ_matches(t, typ::ID_JAG)),
            "ID-JAG policy accepted another `typ`"
        );
    }
}

fn check_claims(claims: &ema_jose::Claims) {
    if let Ok(window) = claims.check_validity(&TimeOptions::new(), FIXED_NOW) {
        // D-7 defaults: `iat` required, `exp > iat`, lifetime at most 3600 s, 30 s leeway.
        let iat = window.iat.map(ema_jose::UnixTime::as_secs);
        assert!(iat.is_some(), "accepted without `iat`");
        let exp = window.exp.as_secs();
        assert!(iat.is_some_and(|iat| exp > iat && exp - iat <= 3600));
        assert!(exp + 30 > FIXED_NOW.as_secs(), "accepted an expired token");
    }
    if claims.check_issuer(FIXED_ISSUER).is_ok() {
        assert_eq!(claims.string("iss"), Ok(Some(FIXED_ISSUER)));
    }
    let single = claims.audience(AudienceRule::Single);
    let any = claims.audience(AudienceRule::AnyOf);
    if let Ok(single) = &single {
        assert_eq!(single.len(), 1, "single audience with other than one value");
        assert_eq!(
            any.as_ref().ok(),
            Some(single),
            "AnyOf refused a single audience"
        );
    }
    if claims
        .check_audience(FIXED_AUDIENCE, AudienceRule::Single)
        .is_ok()
    {
        assert!(
            claims
                .check_audience(FIXED_AUDIENCE, AudienceRule::AnyOf)
                .is_ok()
        );
    }
    for name in ["sub", "client_id", "jti", "scope"] {
        let _ = claims.string(name);
    }
}
