//! The `jwt_oracle` target: ema-jose against `jsonwebtoken`, the interoperability oracle.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ema_jose::{
    Algorithm, AudienceRule, HeaderPolicy, ParseOptions, SigningKey, TimeOptions, TokenKind,
    UnixTime, UnverifiedJwt, VerifyingKey, base64url,
};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

use crate::verify::{
    FIXED_AUDIENCE, FIXED_ES256_JWK, FIXED_ISSUER, FIXED_NOW, fixed_verifying_key,
};

/// The first byte that selects the signing mode of [`jwt_oracle`].
pub const ORACLE_SIGN_MODE: u8 = 0x00;

/// The byte that separates header from payload in the signing mode (never inside UTF-8).
pub const ORACLE_SEPARATOR: u8 = 0xff;

/// The Ed25519 key the signing mode of [`jwt_oracle`] signs with (PKCS#8 v1, base64url): generated
/// once and hard-coded so that the committed seeds stay meaningful. It protects nothing.
const FIXED_ED25519_PKCS8: &str =
    "MC4CAQAwBQYDK2VwBCIEIOXdRmewPPg2VO5xQ7x4Z5so3Xse8DdnV167D_aT7WXB";

/// The public half of the signing mode's key.
pub const FIXED_ED25519_JWK: &str = r#"{"alg":"EdDSA","crv":"Ed25519","kid":"fuzz-ed25519","kty":"OKP","use":"sig","x":"w6t3eyRTXnl9Murrc5HjIux1NtfFAuw28Hp9FWXFmNQ"}"#;

/// One side of the comparison: the key as ema-jose reads the JWK and as `jsonwebtoken` does.
struct Pair {
    ema: Arc<VerifyingKey>,
    oracle: DecodingKey,
    alg: jsonwebtoken::Algorithm,
}

#[expect(
    clippy::expect_used,
    reason = "a constant key either library cannot read is a bug of this crate, found on the first run"
)]
fn oracle_key(jwk: &str) -> DecodingKey {
    serde_json::from_str::<jsonwebtoken::jwk::Jwk>(jwk)
        .ok()
        .and_then(|jwk| DecodingKey::from_jwk(&jwk).ok())
        .expect("the fixed JWKs are keys jsonwebtoken reads")
}

static ES256: LazyLock<Pair> = LazyLock::new(|| Pair {
    ema: Arc::clone(fixed_verifying_key()),
    oracle: oracle_key(FIXED_ES256_JWK),
    alg: jsonwebtoken::Algorithm::ES256,
});

#[expect(
    clippy::expect_used,
    reason = "a constant key either library cannot read is a bug of this crate, found on the first run"
)]
static ED25519: LazyLock<(SigningKey, Pair)> = LazyLock::new(|| {
    let der = base64url::decode(FIXED_ED25519_PKCS8.as_bytes()).expect("base64url");
    let signer = SigningKey::from_pkcs8_der(Algorithm::EdDSA, Some("fuzz-ed25519".into()), &der)
        .expect("FIXED_ED25519_PKCS8 is an Ed25519 key");
    let ema = Arc::new(
        VerifyingKey::from_jwk_json(FIXED_ED25519_JWK.as_bytes()).expect("FIXED_ED25519_JWK"),
    );
    assert!(
        signer.verifying_key().public_jwk().get("x") == ema.public_jwk().get("x"),
        "FIXED_ED25519_PKCS8 is not the private half of FIXED_ED25519_JWK"
    );
    let pair = Pair {
        ema,
        oracle: oracle_key(FIXED_ED25519_JWK),
        alg: jsonwebtoken::Algorithm::EdDSA,
    };
    (signer, pair)
});

/// `jsonwebtoken` reads the wall clock and cannot be given a time; the ema-jose side runs at
/// [`FIXED_NOW`]. This leeway moves `jsonwebtoken`'s `exp` check to `FIXED_NOW`: it refuses
/// when `exp < wall - leeway`, that is `exp < FIXED_NOW - 60 - 5`. 60 s is ema-jose's largest
/// leeway (D-7), so what ema-jose accepts is never expired there; the 5 s absorb the clock
/// ticking between this read and `jsonwebtoken`'s.
fn oracle_leeway(now: UnixTime) -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    wall.saturating_sub(now.as_secs()) + 60 + 5
}

/// Compares ema-jose and `jsonwebtoken` on arbitrary tokens; ema-jose may be stricter, never
/// looser. Two input forms:
///
/// - any input not starting with [`ORACLE_SIGN_MODE`] is a compact token (so the
///   `jws_verify` seeds, signed by [`FIXED_ES256_JWK`], and their mutations);
/// - [`ORACLE_SIGN_MODE`], header bytes, [`ORACLE_SEPARATOR`], payload bytes: the body
///   base64url-encodes both and signs them with the fixed Ed25519 key of
///   [`FIXED_ED25519_JWK`], so that mutations of the header and the claims keep a valid
///   signature and reach the claim checks of both libraries.
///
/// Each token runs through the path of [`jws_verify`](crate::jws_verify): parse, the ID-JAG
/// header policy, the fixed key, validity at [`FIXED_NOW`], issuer, single audience, a string
/// `sub`. When
/// ema-jose accepts, `jsonwebtoken::decode` must accept the same token with the same key (read
/// from the same JWK by `jsonwebtoken`), that algorithm only, `exp`, `iss` and `aud` required
/// and checked, and decode the same claims, member by member. Tokens ema-jose refuses are not
/// looked at further: that direction is expected (`jsonwebtoken` ignores `typ`, `iat`,
/// lifetimes and duplicate members).
pub fn jwt_oracle(data: &[u8]) {
    match data.first() {
        Some(&ORACLE_SIGN_MODE) => {
            if let Some(token) = jwt_oracle_token(data) {
                compare(&token, &ED25519.1);
            }
        }
        _ => {
            if let Ok(token) = std::str::from_utf8(data) {
                compare(token, &ES256);
            }
        }
    }
}

/// The compact token [`jwt_oracle`] compares for `data`: the input itself, or in the signing
/// mode the token signed by the key of [`FIXED_ED25519_JWK`] (for tests of the seeds).
pub fn jwt_oracle_token(data: &[u8]) -> Option<String> {
    let Some((&ORACLE_SIGN_MODE, rest)) = data.split_first() else {
        return std::str::from_utf8(data).ok().map(str::to_owned);
    };
    let mut parts = rest.splitn(2, |b| *b == ORACLE_SEPARATOR);
    let (header, payload) = (parts.next()?, parts.next()?);
    let mut token = base64url::encode(header);
    token.push('.');
    token.push_str(&base64url::encode(payload));
    let signature = ED25519.0.sign_bytes(token.as_bytes()).ok()?;
    token.push('.');
    token.push_str(&base64url::encode(&signature));
    Some(token)
}

fn compare(token: &str, pair: &Pair) {
    let Ok(jwt) = UnverifiedJwt::parse(token, &ParseOptions::new()) else {
        return;
    };
    let Ok(verified) = jwt.verify(&HeaderPolicy::for_kind(TokenKind::IdJag), &pair.ema) else {
        return;
    };
    let claims = verified.claims();
    let accepted = claims
        .check_validity(&TimeOptions::new(), FIXED_NOW)
        .is_ok()
        && claims.check_issuer(FIXED_ISSUER).is_ok()
        && claims
            .check_audience(FIXED_AUDIENCE, AudienceRule::Single)
            .is_ok()
        // As every token reader of ema-rs does (JAG-2, RFC 9068 §2.2, OIDC Core §2). Without it
        // the target finds a `jsonwebtoken` defect rather than an ema-jose one: `jsonwebtoken`
        // refuses every token whose `sub` is an array or an object, whatever the validation
        // asks, because its claim reader loses its place in the JSON after the type mismatch
        // (fuzz/README.md).
        && claims.required_string("sub").is_ok();
    if !accepted {
        return;
    }
    let mut validation = Validation::new(pair.alg);
    validation.leeway = oracle_leeway(FIXED_NOW);
    validation.set_issuer(&[FIXED_ISSUER]);
    validation.set_audience(&[FIXED_AUDIENCE]);
    validation.required_spec_claims = ["exp", "iss", "aud"]
        .into_iter()
        .map(str::to_owned)
        .collect::<HashSet<_>>();
    let decoded = jsonwebtoken::decode::<Value>(token, &pair.oracle, &validation);
    assert!(
        decoded.is_ok(),
        "ema-jose accepts a token jsonwebtoken refuses: {:?}",
        decoded.as_ref().err()
    );
    if let Ok(data) = decoded {
        assert!(
            data.claims == Value::Object(claims.as_object().clone()),
            "jsonwebtoken decodes other claims: {} vs {:?}",
            data.claims,
            claims.as_object()
        );
    }
}
