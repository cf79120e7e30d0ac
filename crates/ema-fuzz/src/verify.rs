//! The `jws_verify` target: parse, ID-JAG header policy, signature, claim checks.

use std::sync::{Arc, LazyLock};

use ema_jose::{
    Algorithm, AudienceRule, HeaderPolicy, ParseOptions, TimeOptions, TokenKind, UnixTime,
    UnverifiedJwt, VerifyingKey, typ, typ_matches,
};

/// The public half of the one key `jws_verify` trusts: an ES256 key generated once with
/// `SigningKey::generate` and hard-coded so that committed seeds stay valid. Its private half
/// (PKCS#8) sits in the seed generator of `tests/replay.rs`; it protects nothing.
pub const FIXED_ES256_JWK: &str = r#"{"alg":"ES256","crv":"P-256","kid":"fuzz-es256","kty":"EC","use":"sig","x":"8KX42z3fi2pj4bDKgnuE0k-mp5WuiUVehH0yzCEIU0Y","y":"y6RWa38-3mTH93Zsd268dUi-Pl-jOUnG5kEw7YxJly8"}"#;

/// The issuer the seeds name and `jws_verify` expects (the IdP of the EMA running example).
pub const FIXED_ISSUER: &str = "https://idp.acme.example";

/// The audience the seeds name and `jws_verify` expects (the MCP authorization server).
pub const FIXED_AUDIENCE: &str = "https://auth.tasks.example";

/// The time every claim check runs at: ten seconds after the `iat` of the seeds.
pub const FIXED_NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

static KEY: LazyLock<Arc<VerifyingKey>> = LazyLock::new(|| {
    #[expect(
        clippy::expect_used,
        reason = "a constant key that does not parse is a bug of this crate, found on the first run"
    )]
    let key = VerifyingKey::from_jwk_json(FIXED_ES256_JWK.as_bytes())
        .expect("FIXED_ES256_JWK is a valid ES256 key");
    Arc::new(key)
});

/// The key built from [`FIXED_ES256_JWK`], parsed once per process.
pub fn fixed_verifying_key() -> &'static Arc<VerifyingKey> {
    &KEY
}

/// Runs `data` through the path an authorization server takes for an ID-JAG (EMA §4 steps 3, 4,
/// 6, 7, 8, 9): [`UnverifiedJwt::parse`] with default options, the
/// [`HeaderPolicy`] of [`TokenKind::IdJag`], verification with the fixed ES256 key, then
/// `check_validity` at [`FIXED_NOW`], `check_issuer`, `check_audience` ([`AudienceRule::Single`])
/// and reads of `sub`, `client_id` and `jti`. Every error is fine; a verified token must be ES256
/// with an ID-JAG `typ`.
pub fn jws_verify(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(jwt) = UnverifiedJwt::parse(token, &ParseOptions::new()) else {
        return;
    };
    let Ok(verified) = jwt.verify(
        &HeaderPolicy::for_kind(TokenKind::IdJag),
        fixed_verifying_key(),
    ) else {
        return;
    };
    assert_eq!(
        verified.algorithm(),
        Algorithm::ES256,
        "verified with another algorithm"
    );
    assert!(
        verified
            .header()
            .typ()
            .is_some_and(|t| typ_matches(t, typ::ID_JAG)),
        "verified a token without the ID-JAG `typ`"
    );
    let claims = verified.claims();
    let _ = claims.check_validity(&TimeOptions::new(), FIXED_NOW);
    let _ = claims.check_issuer(FIXED_ISSUER);
    let _ = claims.check_audience(FIXED_AUDIENCE, AudienceRule::Single);
    for name in ["sub", "client_id", "jti"] {
        let _ = claims.required_string(name);
    }
}
