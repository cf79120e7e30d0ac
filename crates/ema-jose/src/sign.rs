//! Signing tokens with keys held in process (ES256/384/512, RS/PS 256/384/512, EdDSA).

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::b64;
use crate::jwk::VerifyingKey;

/// Why a key could not be loaded or a token could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The private key does not parse, or does not fit the algorithm.
    #[error("private key rejected for `{alg}`")]
    KeyRejected {
        /// The algorithm the key was loaded for.
        alg: Algorithm,
    },
    /// The PEM text holds no `PRIVATE KEY` block, or its body is not base64.
    #[error("PEM has no PKCS#8 `PRIVATE KEY` block")]
    Pem,
    /// The claims do not serialize to a JSON object.
    #[error("claims are not a JSON object")]
    ClaimsNotObject,
    /// The cryptographic operation failed.
    #[error("signing failed")]
    Crypto,
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private signing key with its algorithm, `kid` and public half.
///
/// `Debug` shows only the algorithm, `kid` and thumbprint.
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<String>,
    pair: Pair,
    public: Arc<VerifyingKey>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("thumbprint", &self.public.thumbprint())
            .finish_non_exhaustive()
    }
}

fn ecdsa_alg(alg: Algorithm) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        Algorithm::ES512 => Some(&signature::ECDSA_P521_SHA512_FIXED_SIGNING),
        _ => None,
    }
}

fn rsa_encoding(alg: Algorithm) -> Option<&'static dyn signature::RsaEncoding> {
    match alg {
        Algorithm::RS256 => Some(&signature::RSA_PKCS1_SHA256),
        Algorithm::RS384 => Some(&signature::RSA_PKCS1_SHA384),
        Algorithm::RS512 => Some(&signature::RSA_PKCS1_SHA512),
        Algorithm::PS256 => Some(&signature::RSA_PSS_SHA256),
        Algorithm::PS384 => Some(&signature::RSA_PSS_SHA384),
        Algorithm::PS512 => Some(&signature::RSA_PSS_SHA512),
        _ => None,
    }
}

impl SigningKey {
    /// Generates a fresh key for `alg` (RSA keys are 2048 bits).
    pub fn generate(alg: Algorithm, kid: Option<String>) -> Result<Self, SignError> {
        let rejected = SignError::KeyRejected { alg };
        let pair = if let Some(a) = ecdsa_alg(alg) {
            Pair::Ecdsa(EcdsaKeyPair::generate(a).map_err(|_| rejected.clone())?)
        } else if alg.is_rsa() {
            Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| rejected.clone())?)
        } else {
            Pair::Ed25519(Ed25519KeyPair::generate().map_err(|_| rejected.clone())?)
        };
        Self::assemble(alg, kid, pair)
    }

    /// Loads a PKCS#8 DER private key for `alg`.
    pub fn from_pkcs8_der(
        alg: Algorithm,
        kid: Option<String>,
        der: &[u8],
    ) -> Result<Self, SignError> {
        let rejected = || SignError::KeyRejected { alg };
        let pair = if let Some(a) = ecdsa_alg(alg) {
            Pair::Ecdsa(EcdsaKeyPair::from_pkcs8(a, der).map_err(|_| rejected())?)
        } else if alg.is_rsa() {
            Pair::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|_| rejected())?)
        } else {
            Pair::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(|_| rejected())?)
        };
        Self::assemble(alg, kid, pair)
    }

    /// Loads a PEM `-----BEGIN PRIVATE KEY-----` (PKCS#8) block for `alg`.
    pub fn from_pkcs8_pem(
        alg: Algorithm,
        kid: Option<String>,
        pem: &str,
    ) -> Result<Self, SignError> {
        let der = pem_body(pem, "PRIVATE KEY").ok_or(SignError::Pem)?;
        Self::from_pkcs8_der(alg, kid, &der)
    }

    /// The key as PKCS#8 DER, for persisting a generated key. Handle it as a secret.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, SignError> {
        match &self.pair {
            Pair::Ecdsa(p) => p.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            Pair::Rsa(p) => p.as_der().map(|d| d.as_ref().to_vec()),
            Pair::Ed25519(p) => p.to_pkcs8().map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| SignError::Crypto)
    }

    fn assemble(alg: Algorithm, kid: Option<String>, pair: Pair) -> Result<Self, SignError> {
        let public = match &pair {
            Pair::Ecdsa(p) => VerifyingKey::from_parts(
                kid.clone(),
                alg,
                None,
                Some(p.public_key().as_ref().to_vec()),
            ),
            Pair::Ed25519(p) => VerifyingKey::from_parts(
                kid.clone(),
                alg,
                None,
                Some(p.public_key().as_ref().to_vec()),
            ),
            Pair::Rsa(p) => {
                let public = p.public_key();
                let n = public.modulus().big_endian_without_leading_zero().to_vec();
                let e = public.exponent().big_endian_without_leading_zero().to_vec();
                VerifyingKey::from_parts(kid.clone(), alg, Some((n, e)), None)
            }
        }
        .ok_or(SignError::KeyRejected { alg })?;
        Ok(Self {
            alg,
            kid,
            pair,
            public: Arc::new(public),
        })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The `kid` written into every header.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The public half, bound to this key's algorithm.
    pub fn verifying_key(&self) -> &Arc<VerifyingKey> {
        &self.public
    }

    /// Signs `claims` (which must serialize to a JSON object) as a compact JWS with header
    /// `{"alg", "typ", "kid"}`.
    pub fn sign_jwt<C: Serialize + ?Sized>(
        &self,
        typ: Option<&str>,
        claims: &C,
    ) -> Result<String, SignError> {
        let payload = serde_json::to_vec(claims).map_err(|_| SignError::ClaimsNotObject)?;
        if payload.first() != Some(&b'{') {
            return Err(SignError::ClaimsNotObject);
        }
        // The header is written directly (same members and order as `sign_with_header`: `alg`,
        // `kid`, `typ`), without building a map for every token.
        let mut header = String::with_capacity(64);
        header.push_str("{\"alg\":\"");
        header.push_str(self.alg.name());
        header.push('"');
        let quoted = |s: &str| serde_json::to_string(s).map_err(|_| SignError::Crypto);
        if let Some(kid) = &self.kid {
            header.push_str(",\"kid\":");
            header.push_str(&quoted(kid)?);
        }
        if let Some(typ) = typ {
            header.push_str(",\"typ\":");
            header.push_str(&quoted(typ)?);
        }
        header.push('}');
        self.sign_parts(header.as_bytes(), &payload)
    }

    /// Signs `payload` with `header` plus this key's `alg` and `kid` (which overwrite any given).
    pub fn sign_with_header(
        &self,
        mut header: Map<String, Value>,
        payload: &[u8],
    ) -> Result<String, SignError> {
        header.insert("alg".to_owned(), Value::String(self.alg.name().to_owned()));
        match &self.kid {
            Some(kid) => header.insert("kid".to_owned(), Value::String(kid.clone())),
            None => header.remove("kid"),
        };
        let header = serde_json::to_vec(&header).map_err(|_| SignError::Crypto)?;
        self.sign_parts(&header, payload)
    }

    /// Encodes, signs and assembles a compact JWS from header and payload bytes.
    fn sign_parts(&self, header: &[u8], payload: &[u8]) -> Result<String, SignError> {
        let mut token = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 200);
        b64::encode_into(header, &mut token);
        token.push('.');
        b64::encode_into(payload, &mut token);
        let signature = self.sign_bytes(token.as_bytes())?;
        token.push('.');
        b64::encode_into(&signature, &mut token);
        Ok(token)
    }

    /// Signs raw bytes, returning the JWS-form signature.
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ecdsa(p) => p
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Crypto),
            Pair::Ed25519(p) => Ok(p.sign(message).as_ref().to_vec()),
            Pair::Rsa(p) => {
                let encoding = rsa_encoding(self.alg).ok_or(SignError::Crypto)?;
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(encoding, &rng, message, &mut sig)
                    .map_err(|_| SignError::Crypto)?;
                Ok(sig)
            }
        }
    }
}

/// A fresh random identifier (128 bits from the system CSPRNG, base64url): for `jti` values.
pub fn random_id() -> Result<String, SignError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SignError::Crypto)?;
    Ok(b64::encode(&bytes))
}

/// Extracts the DER body of the first `-----BEGIN {label}-----` block.
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem.get(start..)?.find(&end)?;
    let body: String = pem
        .get(start..stop)?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::{ParseOptions, UnverifiedJwt};
    use crate::policy::{HeaderPolicy, TokenKind};
    use serde_json::json;

    #[test]
    fn every_algorithm_round_trips() {
        for alg in Algorithm::ALL {
            let key = SigningKey::generate(alg, Some(format!("k-{alg}"))).unwrap();
            let token = key.sign_jwt(Some("at+jwt"), &json!({"sub": "x"})).unwrap();
            let parsed = UnverifiedJwt::parse(&token, &ParseOptions::new()).unwrap();
            assert_eq!(parsed.header().kid(), Some(format!("k-{alg}").as_str()));
            let policy = HeaderPolicy::for_kind(TokenKind::AccessToken)
                .with_algorithms(crate::AlgorithmSet::ALL);
            let verified = parsed.verify(&policy, key.verifying_key()).unwrap();
            assert_eq!(verified.algorithm(), alg);
            assert_eq!(verified.claims().get("sub"), Some(&json!("x")));
        }
    }

    #[test]
    fn pkcs8_round_trip_and_pem() {
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        let again = SigningKey::from_pkcs8_pem(Algorithm::ES256, None, &pem).unwrap();
        assert_eq!(
            again.verifying_key().thumbprint(),
            key.verifying_key().thumbprint()
        );
        assert_eq!(
            SigningKey::from_pkcs8_der(Algorithm::ES384, None, &der).unwrap_err(),
            SignError::KeyRejected {
                alg: Algorithm::ES384
            }
        );
        assert_eq!(
            SigningKey::from_pkcs8_pem(Algorithm::ES256, None, "nope").unwrap_err(),
            SignError::Pem
        );
    }

    #[test]
    fn debug_does_not_leak_private_material() {
        let key = SigningKey::generate(Algorithm::EdDSA, Some("k".into())).unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("EdDSA"));
        assert!(!debug.contains(&b64::encode(&der)));
    }

    /// The header of a token, decoded (member order is not compared: `serde_json`'s map keeps
    /// insertion order when another crate of the build enables `preserve_order`, as
    /// `cedar-policy-core` does).
    fn header_of(token: &str) -> Value {
        let segment = token.split('.').next().unwrap();
        serde_json::from_slice(&b64::decode(segment.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn direct_header_matches_the_map_header() {
        let key = SigningKey::generate(Algorithm::ES256, Some("k\"1".into())).unwrap();
        let fast = key.sign_jwt(Some("at+jwt"), &json!({"a": 1})).unwrap();
        let mut header = Map::new();
        header.insert("typ".into(), "at+jwt".into());
        let slow = key.sign_with_header(header, br#"{"a":1}"#).unwrap();
        assert_eq!(header_of(&fast), header_of(&slow));
        assert_eq!(
            header_of(&fast),
            json!({"alg": "ES256", "kid": "k\"1", "typ": "at+jwt"})
        );
        let untyped = SigningKey::generate(Algorithm::EdDSA, None).unwrap();
        let fast = untyped.sign_jwt(None, &json!({})).unwrap();
        let slow = untyped.sign_with_header(Map::new(), b"{}").unwrap();
        assert_eq!(header_of(&fast), header_of(&slow));
        assert_eq!(header_of(&fast), json!({"alg": "EdDSA"}));
    }

    #[test]
    fn claims_must_be_an_object() {
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        assert_eq!(
            key.sign_jwt(None, &json!([1])).unwrap_err(),
            SignError::ClaimsNotObject
        );
    }
}
