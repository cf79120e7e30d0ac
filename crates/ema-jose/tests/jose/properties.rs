//! Property tests (proptest, deterministic RNG, no persistence files):
//!
//! 1. any claim set (0..12 members of arbitrary names and JSON scalars/arrays, plus `iss`, `iat`,
//!    `exp`) signed with ES256, EdDSA or RS256 parses and verifies and yields the identical
//!    claims;
//! 2. changing any single byte of such a token, to any other value, makes parse or verify fail.
//!
//! Keys are generated once per test, outside the case loop; case counts are modest (64 for
//! ES256/EdDSA, 16 for RS256) so the binary stays fast in debug builds.

use ema_jose::{
    Algorithm, HeaderPolicy, ParseOptions, SigningKey, TokenKind, UnixTime, UnverifiedJwt,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Map, Value};

/// A deterministic runner: fixed seed, no failure-persistence files.
pub(crate) fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// Arbitrary Unicode text (control characters, quotes, backslashes, astral planes), short
/// enough that 12 members stay far below the 16 KiB token limit.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..16).prop_map(|chars| chars.into_iter().collect())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Binary fractions print and parse back exactly.
        (any::<i32>(), 0u32..8).prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(1u32 << e))),
        text().prop_map(Value::String),
    ]
}

fn member() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
    ]
}

pub(crate) fn claim_set() -> impl Strategy<Value = Map<String, Value>> {
    let latest_iat = UnixTime::MAX.as_secs() - 3600;
    (
        prop::collection::btree_map(text(), member(), 0..12),
        text(),
        0..=latest_iat,
        1u64..=3600,
    )
        .prop_map(|(members, iss, iat, lifetime)| {
            let mut claims: Map<String, Value> = members.into_iter().collect();
            claims.insert("iss".into(), Value::String(iss));
            claims.insert("iat".into(), Value::from(iat));
            claims.insert("exp".into(), Value::from(iat + lifetime));
            claims
        })
}

/// A non-identical replacement byte, mostly ASCII so that most mutants are still `&str`.
fn replacement() -> impl Strategy<Value = u8> {
    prop_oneof![8 => 0u8..0x80, 1 => 0x80u8..=0xff]
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

fn round_trip(alg: Algorithm, cases: u32) {
    let key = SigningKey::generate(alg, Some(format!("prop-{alg}"))).expect("key");
    let policy = HeaderPolicy::for_kind(TokenKind::IdJag);
    let result = runner(cases).run(&claim_set(), |claims| {
        let token = key
            .sign_jwt(TokenKind::IdJag.typ(), &claims)
            .map_err(fail)?;
        let parsed = UnverifiedJwt::parse(&token, &ParseOptions::new()).map_err(fail)?;
        prop_assert_eq!(parsed.unverified_claims().as_object(), &claims);
        let verified = parsed.verify(&policy, key.verifying_key()).map_err(fail)?;
        prop_assert_eq!(verified.algorithm(), alg);
        prop_assert_eq!(verified.claims().as_object(), &claims);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{alg} round trip: {e}");
    }
}

fn single_byte_change_is_fatal(alg: Algorithm, cases: u32) {
    let key = SigningKey::generate(alg, Some(format!("prop-{alg}"))).expect("key");
    let policy = HeaderPolicy::for_kind(TokenKind::IdJag);
    let strategy = (claim_set(), any::<Index>(), replacement());
    let result = runner(cases).run(&strategy, |(claims, at, byte)| {
        let token = key
            .sign_jwt(TokenKind::IdJag.typ(), &claims)
            .map_err(fail)?;
        let mut bytes = token.into_bytes();
        let i = at.index(bytes.len());
        let original = bytes[i];
        bytes[i] = if byte == original { byte ^ 1 } else { byte };
        prop_assert_ne!(bytes[i], original);
        // A mutant that is not UTF-8 cannot even be presented as a token (`&str`).
        let Ok(mutant) = String::from_utf8(bytes) else {
            return Ok(());
        };
        let outcome = UnverifiedJwt::parse(&mutant, &ParseOptions::new())
            .map_err(|e| format!("{e:?}"))
            .and_then(|jwt| {
                jwt.verify(&policy, key.verifying_key())
                    .map_err(|e| format!("{e:?}"))
            });
        prop_assert!(
            outcome.is_err(),
            "byte {} changed from {:#04x} to {:#04x} and the token still verified",
            i,
            original,
            mutant.as_bytes()[i]
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{alg} tamper: {e}");
    }
}

#[test]
fn es256_round_trip() {
    round_trip(Algorithm::ES256, 64);
}

#[test]
fn eddsa_round_trip() {
    round_trip(Algorithm::EdDSA, 64);
}

#[test]
fn rs256_round_trip() {
    round_trip(Algorithm::RS256, 16);
}

#[test]
fn es256_single_byte_change_is_fatal() {
    single_byte_change_is_fatal(Algorithm::ES256, 64);
}

#[test]
fn eddsa_single_byte_change_is_fatal() {
    single_byte_change_is_fatal(Algorithm::EdDSA, 64);
}

#[test]
fn rs256_single_byte_change_is_fatal() {
    single_byte_change_is_fatal(Algorithm::RS256, 16);
}
