//! Replays every committed fuzz input through its target body, on stable, as part of
//! `cargo test`: `fuzz/corpus/<target>/` (seeds plus entries the fuzzer found) and
//! `fuzz/regressions/<target>/` (inputs that once crashed a target).
//!
//! Run with `cargo test -p ema-fuzz --test replay -- --nocapture` to see the counts. A corpus
//! directory that is missing or empty fails the test, so a moved corpus cannot make replay
//! silently check nothing.
//!
//! The `seeds` module regenerates the seeds (`--ignored generate_seeds`).

#![cfg(test)]

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use ema_jose::{
    AudienceRule, HeaderPolicy, ParseOptions, TimeOptions, TokenKind, UnverifiedJwt, VerifyingKey,
};

#[path = "replay/seeds.rs"]
mod seeds;

/// `fuzz/` at the workspace root.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The regular files of `dir`, sorted, skipping dot files such as `.gitkeep`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let corpus = fuzz_dir().join("corpus").join(target);
    let seeds = files(&corpus);
    assert!(
        !seeds.is_empty(),
        "{} holds no inputs: replay would check nothing",
        corpus.display()
    );
    let regressions_dir = fuzz_dir().join("regressions").join(target);
    let regressions = if regressions_dir.exists() {
        files(&regressions_dir)
    } else {
        Vec::new()
    };

    let mut failures = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let data = fs::read(path).unwrap();
        if panic::catch_unwind(|| body(&data)).is_err() {
            failures.push(path.display().to_string());
        }
    }
    println!(
        "{target}: replayed {} corpus files and {} regression files",
        seeds.len(),
        regressions.len()
    );
    assert!(failures.is_empty(), "{target} panicked on {failures:#?}");
}

#[test]
fn jws_compact() {
    replay("jws_compact", ema_fuzz::jws_compact);
}

#[test]
fn json_claims() {
    replay("json_claims", ema_fuzz::json_claims);
}

#[test]
fn jwk_set() {
    replay("jwk_set", ema_fuzz::jwk_set);
}

#[test]
fn jws_verify() {
    replay("jws_verify", ema_fuzz::jws_verify);
}

#[test]
fn jwt_oracle() {
    replay("jwt_oracle", ema_fuzz::jwt_oracle);
}

/// The `jwt_oracle` seeds only compare the two libraries if some of them get through ema-jose;
/// the valid ID-JAG seeds of both input forms must (and `jsonwebtoken` must then agree, which
/// the body asserts), and the seed with a header member of the wrong type must not.
#[test]
fn valid_oracle_seeds_pass_ema_jose() {
    let ed25519 = VerifyingKey::from_jwk_json(ema_fuzz::FIXED_ED25519_JWK.as_bytes()).unwrap();
    for (seed, key, accepted) in [
        ("id-jag-valid", &**ema_fuzz::fixed_verifying_key(), true),
        ("sign-valid", &ed25519, true),
        ("sign-exp-fractional", &ed25519, true),
        ("sign-header-x5t-number", &ed25519, false),
    ] {
        let data = fs::read(fuzz_dir().join("corpus/jwt_oracle").join(seed)).unwrap();
        let token = ema_fuzz::jwt_oracle_token(&data).unwrap();
        let outcome = UnverifiedJwt::parse(&token, &ParseOptions::new())
            .map_err(|e| format!("{e:?}"))
            .and_then(|jwt| {
                jwt.verify(&HeaderPolicy::for_kind(TokenKind::IdJag), key)
                    .map_err(|e| format!("{e:?}"))
            })
            .and_then(|verified| {
                verified
                    .claims()
                    .check_validity(&TimeOptions::new(), ema_fuzz::FIXED_NOW)
                    .map_err(|e| format!("{e:?}"))
            });
        assert_eq!(outcome.is_ok(), accepted, "{seed}: {outcome:?}");
        ema_fuzz::jwt_oracle(&data);
    }
}

#[test]
fn cedar_request() {
    replay("cedar_request", ema_fuzz::cedar_request);
}

#[test]
fn grant_form() {
    replay("grant_form", ema_fuzz::grant_form);
}

#[test]
fn id_jag_claims() {
    replay("id_jag_claims", ema_fuzz::id_jag_claims);
}

#[test]
fn uri_rules() {
    replay("uri_rules", ema_fuzz::uri_rules);
}

#[test]
fn as_metadata() {
    replay("as_metadata", ema_fuzz::as_metadata);
}

#[test]
fn saml_assertion() {
    replay("saml_assertion", ema_fuzz::saml_assertion);
}

/// The `saml_assertion` seeds only help the fuzzer if the valid one gets through the signature
/// to the content checks.
#[test]
fn valid_saml_seed_passes_every_check() {
    let xml = fs::read(fuzz_dir().join("corpus/saml_assertion/valid-es256")).unwrap();
    let identity = ema_fuzz::fixed_saml_validator()
        .validate(&xml, ema_fuzz::FIXED_SAML_CLIENT, ema_fuzz::FIXED_NOW)
        .unwrap();
    assert_eq!(identity.name_id.value, "00u8k2Lq91");
}

/// The `jws_verify` seeds only help the fuzzer if the valid one really gets through the
/// signature to the claim checks; this fails if the fixed key, time or claims drift apart.
#[test]
fn valid_verify_seed_passes_every_check() {
    let path = fuzz_dir().join("corpus/jws_verify/id-jag-valid");
    let token = fs::read_to_string(&path).unwrap();
    let jwt = UnverifiedJwt::parse(&token, &ParseOptions::new()).unwrap();
    let verified = jwt
        .verify(
            &HeaderPolicy::for_kind(TokenKind::IdJag),
            ema_fuzz::fixed_verifying_key(),
        )
        .unwrap();
    let claims = verified.claims();
    claims
        .check_validity(&TimeOptions::new(), ema_fuzz::FIXED_NOW)
        .unwrap();
    claims.check_issuer(ema_fuzz::FIXED_ISSUER).unwrap();
    claims
        .check_audience(ema_fuzz::FIXED_AUDIENCE, AudienceRule::Single)
        .unwrap();
    for name in ["sub", "client_id", "jti"] {
        claims.required_string(name).unwrap();
    }
}
