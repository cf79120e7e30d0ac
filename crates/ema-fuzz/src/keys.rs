//! The `jwk_set` target: JWKS documents and single JWKs under the key policy (D-19).

use std::sync::Arc;

use ema_jose::{
    Algorithm, JwkSet, KeyLookupError, VerifyError, VerifyingKey, base64url, parse_json_object,
};
use serde_json::Value;

/// Members that must never appear in a published public JWK (private RSA/EC/OKP parts, the
/// symmetric `k`).
const SECRET_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Parses `data` with [`JwkSet::parse`] and [`VerifyingKey::from_jwk_json`] and checks:
///
/// - a parsed set accounts for every entry of its `keys` array exactly once, as a usable key or
///   as a set-aside entry in order, and no two usable keys share a `kid`;
/// - [`JwkSet::find`] returns each usable key by its `kid`, and the set's public JWKS document
///   parses back to the same keys;
/// - every accepted key (in a set or alone) has a 43-character base64url thumbprint, a public
///   JWK without private or symmetric members that re-parses through
///   [`VerifyingKey::from_jwk`] to a key with the same thumbprint, `kid`, `alg` and type, and
///   fails to verify junk, with a mismatch error for every algorithm it does not accept.
pub fn jwk_set(data: &[u8]) {
    if let Ok(set) = JwkSet::parse(data) {
        check_set(data, &set);
    }
    if let Ok(key) = VerifyingKey::from_jwk_json(data) {
        check_key(&key, data);
    }
}

fn check_set(data: &[u8], set: &JwkSet) {
    let entries = parse_json_object(data, 8)
        .ok()
        .and_then(|doc| match doc.get("keys") {
            Some(Value::Array(entries)) => Some(entries.len()),
            _ => None,
        });
    assert_eq!(
        entries,
        Some(set.keys().len() + set.rejected().len()),
        "usable and set-aside entries do not add up to the `keys` array"
    );
    assert!(
        set.rejected().windows(2).all(|w| match w {
            [a, b] => a.index < b.index,
            _ => true,
        }),
        "set-aside indices are not increasing"
    );
    assert!(
        set.rejected()
            .iter()
            .all(|r| entries.is_some_and(|n| r.index < n))
    );

    for (i, key) in set.keys().iter().enumerate() {
        check_key(key, data);
        let Some(kid) = key.kid() else { continue };
        let shared = set
            .keys()
            .iter()
            .skip(i + 1)
            .any(|other| other.kid() == Some(kid));
        assert!(!shared, "two usable keys share `kid` `{kid}`");
        if let Some(alg) = Algorithm::ALL.into_iter().find(|a| key.accepts(*a)) {
            let found = set.find(Some(kid), alg);
            assert!(
                found.is_ok_and(|k| Arc::ptr_eq(k, key)),
                "`find` did not return the key named `{kid}`"
            );
        }
    }
    for rejected in set.rejected() {
        if let Some(kid) = &rejected.kid
            && set.keys().iter().all(|k| k.kid() != Some(kid.as_str()))
        {
            assert!(
                matches!(
                    set.find(Some(kid), Algorithm::ES256),
                    Err(KeyLookupError::Unusable { .. })
                ),
                "`find` did not report the set-aside `kid` `{kid}` as unusable"
            );
        }
    }

    let public = set.to_public_json().to_string();
    let again = JwkSet::parse(public.as_bytes());
    let thumbprints = |s: &JwkSet| {
        s.keys()
            .iter()
            .map(|k| k.thumbprint().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        again.as_ref().ok().map(thumbprints),
        Some(thumbprints(set)),
        "the public JWKS does not parse back to the same keys"
    );
}

/// Checks one accepted key:
///
/// - its RFC 7638 thumbprint is 43 characters of canonical base64url (a SHA-256 digest);
/// - its public JWK carries no private or symmetric member and re-parses through
///   [`VerifyingKey::from_jwk`] to a key with the same thumbprint, `kid`, `alg` and type;
/// - verifying junk with each algorithm fails, with a mismatch error for every algorithm the
///   key does not accept (D-19: the key's own `alg` binds the token's).
fn check_key(key: &VerifyingKey, junk: &[u8]) {
    let thumbprint = key.thumbprint();
    assert_eq!(thumbprint.len(), 43, "thumbprint `{thumbprint}`");
    assert_eq!(
        base64url::decode(thumbprint.as_bytes()).map(|d| d.len()),
        Some(32),
        "thumbprint `{thumbprint}` is not a base64url SHA-256 digest"
    );

    let jwk = key.public_jwk();
    for name in SECRET_MEMBERS {
        assert!(!jwk.contains_key(name), "public JWK carries `{name}`");
    }
    let again = VerifyingKey::from_jwk(jwk);
    assert!(
        again.as_ref().is_ok_and(|k| k.thumbprint() == thumbprint
            && k.kid() == key.kid()
            && k.algorithm() == key.algorithm()
            && k.key_type() == key.key_type()),
        "public JWK re-parses to {again:?}, not {key:?}"
    );

    for alg in Algorithm::ALL {
        let result = key.verify(alg, b"ema-fuzz", junk);
        if key.accepts(alg) {
            assert!(result.is_err(), "junk verified with {alg}");
        } else {
            assert!(
                matches!(
                    result,
                    Err(VerifyError::AlgorithmMismatch { .. } | VerifyError::KeyTypeMismatch { .. })
                ),
                "{alg} is not accepted but verify returned {result:?}"
            );
        }
    }
}
