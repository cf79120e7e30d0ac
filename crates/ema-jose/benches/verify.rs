//! The whole ema-jose verification path against the raw aws-lc-rs signature check it wraps, per
//! algorithm (ES256, EdDSA, RS256), measured in the same run:
//!
//! - `raw`: `aws_lc_rs::signature::ParsedPublicKey::verify_sig` on a cached parsed key, over the
//!   same signing input and signature (the baseline no JWT library can beat);
//! - `full`: `UnverifiedJwt::parse`, the ID-JAG `HeaderPolicy`, `verify` with a cached
//!   `VerifyingKey` found in a `JwkSet`, `check_validity` at a fixed time, `check_issuer`,
//!   `check_audience` and reads of `sub`, `client_id` and `jti`;
//! - `non_crypto`: the same minus `verify` (parse, policy, claim checks), so that a regression in
//!   the parse path shows on its own.
//!
//! The token is an ID-JAG shaped like the ID-JAG example in `docs/requirements.md`: twelve claims, about 800 bytes.
//! `scripts/bench-ratio.sh` runs this pinned to one core and prints `full / raw` throughput;
//! docs/benchmarks.md has the figures.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop before measuring anything"
)]

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ema_jose::{
    Algorithm, AudienceRule, ClaimError, HeaderPolicy, JwkSet, ParseOptions, SigningKey,
    TimeOptions, TokenKind, UnixTime, UnverifiedJwt, VerifyingKey, base64url,
};
use serde_json::json;

const ISSUER: &str = "https://idp.acme.example";
const AUDIENCE: &str = "https://auth.tasks.example";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

/// One algorithm's token and keys, prepared once.
struct Case {
    alg: Algorithm,
    token: String,
    /// What the verifier holds: a key from a parsed JWKS, found by `kid`.
    key: Arc<VerifyingKey>,
    /// The baseline's key, parsed by aws-lc-rs directly from the same public material.
    raw_key: ParsedPublicKey,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

fn case(alg: Algorithm) -> Case {
    let kid = format!("idp-{}-2026-01", alg.name().to_ascii_lowercase());
    let signer = SigningKey::generate(alg, Some(kid.clone())).expect("key generation");
    // The ID-JAG of EMA §4 with a client metadata document URL as `client_id` (CIMD).
    let claims = json!({
        "iss": ISSUER,
        "sub": "00u8k2Lq91xQ7wE3d5h6A1B2",
        "aud": AUDIENCE,
        "client_id": "https://tasks-client.example/.well-known/oauth-client-metadata.json",
        "jti": "7c1e0b6a-3d0f-4e55-9a41-2b8f0e6d1c22",
        "iat": NOW.as_secs() - 10,
        "exp": NOW.as_secs() + 290,
        "resource": "https://mcp.tasks.example/mcp",
        "scope": "tasks.read tasks.write projects.read comments.write",
        "auth_time": NOW.as_secs() - 600,
        "amr": ["pwd", "otp"],
        "email": "ana.garcia@acme-corporation.example"
    });
    let token = signer
        .sign_jwt(TokenKind::IdJag.typ(), &claims)
        .expect("signing");

    // The verifier's side: the issuer's published JWKS, parsed once.
    let jwks = JwkSet::from_keys([signer.verifying_key().clone()]).to_public_json();
    let set = JwkSet::parse(jwks.to_string().as_bytes()).expect("JWKS");
    let key = set.find(Some(&kid), alg).expect("key by kid").clone();

    let (signing_input, signature) = token.rsplit_once('.').expect("three segments");
    let signature = base64url::decode(signature.as_bytes()).expect("signature");
    let raw_key = raw_key(alg, &key);
    Case {
        alg,
        signing_input: signing_input.as_bytes().to_vec(),
        signature,
        token,
        key,
        raw_key,
    }
}

/// Parses the public key with aws-lc-rs alone, from the key's public JWK.
fn raw_key(alg: Algorithm, key: &VerifyingKey) -> ParsedPublicKey {
    let jwk = key.public_jwk();
    let member = |name: &str| {
        let text = jwk.get(name).and_then(|v| v.as_str()).expect("JWK member");
        base64url::decode(text.as_bytes()).expect("base64url")
    };
    match alg {
        Algorithm::ES256 => {
            let point = [&[4][..], &member("x"), &member("y")].concat();
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
        }
        Algorithm::EdDSA => ParsedPublicKey::new(&signature::ED25519, member("x")),
        Algorithm::RS256 => RsaPublicKeyComponents {
            n: member("n"),
            e: member("e"),
        }
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256),
        _ => unreachable!("only ES256, EdDSA and RS256 are benchmarked"),
    }
    .expect("public key")
}

const POLICY: HeaderPolicy = HeaderPolicy::for_kind(TokenKind::IdJag);
const OPTIONS: ParseOptions = ParseOptions::new();

/// The claim checks an authorization server runs on an ID-JAG (EMA §4 steps 7-9), returning the
/// values it goes on with.
fn check_claims(claims: &ema_jose::Claims) -> Result<(&str, &str, &str), ClaimError> {
    claims.check_validity(&TimeOptions::new(), NOW)?;
    claims.check_issuer(ISSUER)?;
    claims.check_audience(AUDIENCE, AudienceRule::Single)?;
    Ok((
        claims.required_string("sub")?,
        claims.required_string("client_id")?,
        claims.required_string("jti")?,
    ))
}

/// Parse, policy, signature, claims: the full path, `true` when the token is accepted.
fn full(case: &Case) -> bool {
    let Ok(jwt) = UnverifiedJwt::parse(&case.token, &OPTIONS) else {
        return false;
    };
    let Ok(verified) = jwt.verify(&POLICY, &case.key) else {
        return false;
    };
    check_claims(verified.claims()).map(black_box).is_ok()
}

/// Everything but the signature: parse, policy, claims.
fn non_crypto(case: &Case) -> bool {
    let Ok(jwt) = UnverifiedJwt::parse(&case.token, &OPTIONS) else {
        return false;
    };
    POLICY.check(jwt.header()).is_ok()
        && check_claims(jwt.unverified_claims()).map(black_box).is_ok()
}

/// The baseline: one signature check on a cached parsed key.
fn raw(case: &Case) -> bool {
    case.raw_key
        .verify_sig(&case.signing_input, &case.signature)
        .is_ok()
}

fn bench(c: &mut Criterion) {
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
        let case = case(alg);
        assert!(raw(&case) && full(&case) && non_crypto(&case), "{alg}");
        println!("{alg}: token of {} bytes", case.token.len());
        let mut group = c.benchmark_group(format!("verify_{}", case.alg));
        group.throughput(Throughput::Elements(1));
        group.bench_function("raw", |b| b.iter(|| raw(black_box(&case))));
        group.bench_function("full", |b| b.iter(|| full(black_box(&case))));
        group.bench_function("non_crypto", |b| b.iter(|| non_crypto(black_box(&case))));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
