//! JWK and JWKS (RFC 7517) with a verification key policy, RFC 7638 thumbprints, and parsed
//! public keys that are built once and reused for every verification.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents, VerificationAlgorithm};
use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::b64;
use crate::json::{self, JsonError};
use crate::jws::VerifyError;

/// The smallest accepted RSA modulus in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest accepted RSA modulus in bits.
pub const MAX_RSA_BITS: usize = 8192;

/// Largest JWKS document accepted by [`JwkSet::parse`], in bytes.
pub const MAX_JWKS_LEN: usize = 256 * 1024;
/// Most entries read from one JWKS document.
pub const MAX_JWKS_KEYS: usize = 100;

/// An elliptic curve this crate verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
    /// Ed25519 (an OKP key, RFC 8037).
    Ed25519,
}

impl Curve {
    /// The JWK `crv` name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
            Self::Ed25519 => "Ed25519",
        }
    }

    const fn coordinate_len(self) -> usize {
        match self {
            Self::P256 | Self::Ed25519 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// The one algorithm a key on this curve signs with.
    pub const fn algorithm(self) -> Algorithm {
        match self {
            Self::P256 => Algorithm::ES256,
            Self::P384 => Algorithm::ES384,
            Self::P521 => Algorithm::ES512,
            Self::Ed25519 => Algorithm::EdDSA,
        }
    }
}

/// The type of a verification key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// RSA with the modulus size in bits.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// An EC or OKP key on a curve.
    Curve(Curve),
}

impl KeyType {
    /// Whether a key of this type can verify `alg`.
    pub const fn supports(self, alg: Algorithm) -> bool {
        match self {
            Self::Rsa { .. } => alg.is_rsa(),
            Self::Curve(c) => c.algorithm() as u8 == alg as u8,
        }
    }
}

/// Why one JWK was refused as a verification key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// The JWK is not a strict JSON object.
    #[error("not a JSON object: {0}")]
    Json(JsonError),
    /// A member is missing or of the wrong JSON type.
    #[error("member `{name}` is missing or malformed")]
    Member {
        /// The member name.
        name: &'static str,
    },
    /// `kty` is not `RSA`, `EC` or `OKP` (symmetric `oct` keys are never verification keys).
    #[error("key type `{kty}` is not accepted")]
    UnsupportedKeyType {
        /// The `kty` value.
        kty: String,
    },
    /// `crv` names a curve this crate does not verify with.
    #[error("curve `{crv}` is not supported")]
    UnsupportedCurve {
        /// The `crv` value.
        crv: String,
    },
    /// The key's `alg` is not an implemented signature algorithm.
    #[error("key algorithm `{alg}` is not supported")]
    UnsupportedAlgorithm {
        /// The `alg` value.
        alg: String,
    },
    /// The key's `alg` does not fit its type or curve.
    #[error("key algorithm `{alg}` does not fit the key type")]
    AlgorithmMismatch {
        /// The key's `alg`.
        alg: Algorithm,
    },
    /// `use` is not `sig`, or `key_ops` lacks `verify`.
    #[error("key is not for signature verification")]
    NotForVerification,
    /// The JWK carries private key members.
    #[error("key carries private member `{name}`")]
    PrivateMember {
        /// The member name.
        name: &'static str,
    },
    /// An RSA modulus outside 2048..=8192 bits.
    #[error("RSA modulus of {bits} bits is outside {MIN_RSA_BITS}..={MAX_RSA_BITS}")]
    RsaSize {
        /// The modulus size.
        bits: usize,
    },
    /// An RSA public exponent that is even, below 3, or above 2^32.
    #[error("RSA public exponent is weak or malformed")]
    RsaExponent,
    /// An RSA modulus with the ROCA fingerprint (CVE-2017-15361).
    #[error("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")]
    RocaVulnerable,
    /// The key material is not a valid public key (a point not on the curve, say).
    #[error("invalid key material")]
    InvalidKey,
    /// Another entry in the same set has this `kid` (D-19).
    #[error("`kid` `{kid}` is shared with another entry")]
    DuplicateKid {
        /// The shared `kid`.
        kid: String,
    },
}

/// A public key accepted for signature verification, with its parsed forms cached.
pub struct VerifyingKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key_type: KeyType,
    material: Material,
    public_jwk: Map<String, Value>,
    thumbprint: String,
    parsed: [OnceLock<Option<ParsedPublicKey>>; Algorithm::ALL.len()],
}

#[derive(Clone)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Point(Vec<u8>),
}

impl Clone for VerifyingKey {
    /// Clones the key; the clone parses its public key again on first use.
    fn clone(&self) -> Self {
        Self {
            kid: self.kid.clone(),
            alg: self.alg,
            key_type: self.key_type,
            material: self.material.clone(),
            public_jwk: self.public_jwk.clone(),
            thumbprint: self.thumbprint.clone(),
            parsed: Default::default(),
        }
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("key_type", &self.key_type)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

impl VerifyingKey {
    /// Parses one JWK (as JSON bytes) under the key policy.
    pub fn from_jwk_json(bytes: &[u8]) -> Result<Self, JwkError> {
        let map = json::parse_object(bytes, 8).map_err(JwkError::Json)?;
        Self::from_jwk(&map)
    }

    /// Reads one JWK under the key policy: RSA of 2048..=8192 bits (not ROCA, sane exponent),
    /// EC P-256/P-384/P-521 on the curve, Ed25519; no private members; `use`/`key_ops` allow
    /// verification; `alg`, when present, implemented and fitting the key (D-19). A single
    /// leading zero octet of an RSA `n` is tolerated (D-19).
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, JwkError> {
        let kty = str_member(jwk, "kty")?.ok_or(JwkError::Member { name: "kty" })?;
        if let Some(name) = PRIVATE_MEMBERS.into_iter().find(|m| jwk.contains_key(*m)) {
            return Err(JwkError::PrivateMember { name });
        }
        // `use` other than `sig`, or `key_ops` without `verify`, set the key aside (D-19).
        match jwk.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(_)) => return Err(JwkError::NotForVerification),
            Some(_) => return Err(JwkError::Member { name: "use" }),
        }
        match jwk.get("key_ops") {
            None => {}
            Some(Value::Array(ops)) => {
                if ops.iter().any(|o| !o.is_string()) {
                    return Err(JwkError::Member { name: "key_ops" });
                }
                if !ops.iter().any(|o| o.as_str() == Some("verify")) {
                    return Err(JwkError::NotForVerification);
                }
            }
            Some(_) => return Err(JwkError::Member { name: "key_ops" }),
        }
        let kid = str_member(jwk, "kid")?.map(str::to_owned);
        let alg = match str_member(jwk, "alg")? {
            None => None,
            Some(a) => Some(
                Algorithm::from_name(a)
                    .ok_or_else(|| JwkError::UnsupportedAlgorithm { alg: a.to_owned() })?,
            ),
        };

        let (key_type, material, canonical) = match kty {
            "RSA" => {
                let mut n = b64_member(jwk, "n")?;
                // D-19: tolerate exactly one leading zero octet (a DER habit), then require a
                // minimal encoding.
                if n.first() == Some(&0) {
                    n.remove(0);
                }
                let e = b64_member(jwk, "e")?;
                if n.first().is_none_or(|b| *b == 0) {
                    return Err(JwkError::InvalidKey);
                }
                let bits = n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize);
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    return Err(JwkError::RsaSize { bits });
                }
                check_rsa_exponent(&e)?;
                if roca::is_vulnerable(&n) {
                    return Err(JwkError::RocaVulnerable);
                }
                let canonical = vec![
                    ("e", b64::encode(&e)),
                    ("kty", "RSA".to_owned()),
                    ("n", b64::encode(&n)),
                ];
                (KeyType::Rsa { bits }, Material::Rsa { n, e }, canonical)
            }
            "EC" => {
                let curve = match str_member(jwk, "crv")?.ok_or(JwkError::Member { name: "crv" })? {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    "P-521" => Curve::P521,
                    other => {
                        return Err(JwkError::UnsupportedCurve {
                            crv: other.to_owned(),
                        });
                    }
                };
                let x = b64_member(jwk, "x")?;
                let y = b64_member(jwk, "y")?;
                if x.len() != curve.coordinate_len() {
                    return Err(JwkError::Member { name: "x" });
                }
                if y.len() != curve.coordinate_len() {
                    return Err(JwkError::Member { name: "y" });
                }
                let canonical = vec![
                    ("crv", curve.name().to_owned()),
                    ("kty", "EC".to_owned()),
                    ("x", b64::encode(&x)),
                    ("y", b64::encode(&y)),
                ];
                let mut point = Vec::with_capacity(1 + 2 * x.len());
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (KeyType::Curve(curve), Material::Point(point), canonical)
            }
            "OKP" => {
                let curve = match str_member(jwk, "crv")?.ok_or(JwkError::Member { name: "crv" })? {
                    "Ed25519" => Curve::Ed25519,
                    other => {
                        return Err(JwkError::UnsupportedCurve {
                            crv: other.to_owned(),
                        });
                    }
                };
                let x = b64_member(jwk, "x")?;
                if x.len() != curve.coordinate_len() {
                    return Err(JwkError::Member { name: "x" });
                }
                let canonical = vec![
                    ("crv", curve.name().to_owned()),
                    ("kty", "OKP".to_owned()),
                    ("x", b64::encode(&x)),
                ];
                (KeyType::Curve(curve), Material::Point(x), canonical)
            }
            other => {
                return Err(JwkError::UnsupportedKeyType {
                    kty: other.to_owned(),
                });
            }
        };

        if let Some(alg) = alg
            && !key_type.supports(alg)
        {
            return Err(JwkError::AlgorithmMismatch { alg });
        }
        let key = Self::assemble(kid, alg, key_type, material, canonical);
        // Parse once now for the key's primary algorithm, so that invalid material (a point off
        // the curve, an inconsistent modulus) is refused at load time, not at first use.
        let primary = alg.unwrap_or(match key_type {
            KeyType::Rsa { .. } => Algorithm::RS256,
            KeyType::Curve(c) => c.algorithm(),
        });
        if key.parsed_for(primary).is_none() {
            return Err(JwkError::InvalidKey);
        }
        Ok(key)
    }

    fn assemble(
        kid: Option<String>,
        alg: Option<Algorithm>,
        key_type: KeyType,
        material: Material,
        canonical: Vec<(&'static str, String)>,
    ) -> Self {
        // RFC 7638 §3: the required members, lexicographic order, no whitespace. The values are
        // base64url strings and fixed names, so no JSON escaping is needed.
        let mut input = String::from("{");
        for (i, (name, value)) in canonical.iter().enumerate() {
            if i > 0 {
                input.push(',');
            }
            input.push('"');
            input.push_str(name);
            input.push_str("\":\"");
            input.push_str(value);
            input.push('"');
        }
        input.push('}');
        let thumbprint = b64::encode(digest::digest(&digest::SHA256, input.as_bytes()).as_ref());

        let mut public_jwk: Map<String, Value> = canonical
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        public_jwk.insert("use".to_owned(), Value::String("sig".to_owned()));
        if let Some(kid) = &kid {
            public_jwk.insert("kid".to_owned(), Value::String(kid.clone()));
        }
        if let Some(alg) = alg {
            public_jwk.insert("alg".to_owned(), Value::String(alg.name().to_owned()));
        }
        Self {
            kid,
            alg,
            key_type,
            material,
            public_jwk,
            thumbprint,
            parsed: Default::default(),
        }
    }

    /// Builds a key from raw public material produced by this crate's signer.
    pub(crate) fn from_parts(
        kid: Option<String>,
        alg: Algorithm,
        rsa: Option<(Vec<u8>, Vec<u8>)>,
        point: Option<Vec<u8>>,
    ) -> Option<Self> {
        let mut jwk = Map::new();
        match (rsa, point) {
            (Some((n, e)), None) => {
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), b64::encode(&n).into());
                jwk.insert("e".into(), b64::encode(&e).into());
            }
            (None, Some(point)) if alg == Algorithm::EdDSA => {
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                jwk.insert("x".into(), b64::encode(&point).into());
            }
            (None, Some(point)) => {
                let curve = [Curve::P256, Curve::P384, Curve::P521]
                    .into_iter()
                    .find(|c| c.algorithm() == alg)?;
                let coords = point.get(1..)?;
                let (x, y) = coords.split_at(curve.coordinate_len().min(coords.len()));
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), curve.name().into());
                jwk.insert("x".into(), b64::encode(x).into());
                jwk.insert("y".into(), b64::encode(y).into());
            }
            _ => return None,
        }
        if let Some(kid) = kid {
            jwk.insert("kid".into(), kid.into());
        }
        jwk.insert("alg".into(), alg.name().into());
        Self::from_jwk(&jwk).ok()
    }

    /// The key's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's own `alg`, which binds every token verified with it.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The public JWK as published: the required members, `use`, and `kid`/`alg` when known.
    pub fn public_jwk(&self) -> &Map<String, Value> {
        &self.public_jwk
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|a| a == alg) && self.key_type.supports(alg)
    }

    /// Verifies `signature` over `message` with `alg`, which must match the key's own `alg`
    /// (D-19) and its type. The signature must be in JWS form (fixed-size `r || s` for ECDSA).
    pub fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        if let Some(bound) = self.alg
            && bound != alg
        {
            return Err(VerifyError::AlgorithmMismatch {
                key: bound,
                token: alg,
            });
        }
        if !self.key_type.supports(alg) {
            return Err(VerifyError::KeyTypeMismatch { alg });
        }
        let parsed = self
            .parsed_for(alg)
            .ok_or(VerifyError::KeyTypeMismatch { alg })?;
        parsed
            .verify_sig(message, signature)
            .map_err(|_| VerifyError::BadSignature)
    }

    fn parsed_for(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        let slot = self.parsed.get(alg as usize)?;
        slot.get_or_init(|| self.parse(alg)).as_ref()
    }

    fn parse(&self, alg: Algorithm) -> Option<ParsedPublicKey> {
        match &self.material {
            Material::Rsa { n, e } => {
                let params = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return None,
                };
                RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(params)
                .ok()
            }
            Material::Point(bytes) => {
                let algorithm: &'static dyn VerificationAlgorithm = match alg {
                    Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
                    Algorithm::ES512 => &signature::ECDSA_P521_SHA512_FIXED,
                    Algorithm::EdDSA => &signature::ED25519,
                    _ => return None,
                };
                ParsedPublicKey::new(algorithm, bytes).ok()
            }
        }
    }
}

fn str_member<'a>(
    jwk: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, JwkError> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwkError::Member { name }),
    }
}

fn b64_member(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    let s = str_member(jwk, name)?.ok_or(JwkError::Member { name })?;
    b64::decode(s.as_bytes())
        .filter(|v| !v.is_empty())
        .ok_or(JwkError::Member { name })
}

fn check_rsa_exponent(e: &[u8]) -> Result<(), JwkError> {
    // Minimal big-endian, at most 32 bits, odd, at least 3.
    if e.first().is_none_or(|b| *b == 0) || e.len() > 4 {
        return Err(JwkError::RsaExponent);
    }
    let value = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if value < 3 || value % 2 == 0 {
        return Err(JwkError::RsaExponent);
    }
    Ok(())
}

mod roca {
    //! Detection of RSA moduli from the Infineon RSALib flaw (ROCA, CVE-2017-15361): such a
    //! modulus is, modulo each small prime below, a power of 65537. A random modulus passes
    //! all these tests with negligible probability.

    const PRIMES: [u64; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];

    pub(super) fn is_vulnerable(n: &[u8]) -> bool {
        PRIMES.iter().all(|&p| {
            let residue = n
                .iter()
                .fold(0u64, |acc, b| (acc * 256 + u64::from(*b)) % p);
            in_subgroup_of_65537(residue, p)
        })
    }

    fn in_subgroup_of_65537(residue: u64, p: u64) -> bool {
        let g = 65537 % p;
        let mut x = 1;
        // Walk the cyclic subgroup generated by g (at most p - 1 elements) until it closes.
        for _ in 0..p {
            if x == residue {
                return true;
            }
            x = x * g % p;
            if x == 1 {
                break;
            }
        }
        false
    }
}

/// One JWKS entry that was set aside (D-19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedKey {
    /// Position in the `keys` array.
    pub index: usize,
    /// The entry's `kid`, if it had a readable one.
    pub kid: Option<String>,
    /// Why it is unusable.
    pub reason: JwkError,
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Larger than [`MAX_JWKS_LEN`].
    #[error("JWKS is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The document length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a strict JSON object.
    #[error("JWKS is not a JSON object: {0}")]
    Json(JsonError),
    /// No `keys` array.
    #[error("JWKS has no `keys` array")]
    NoKeys,
    /// More entries than [`MAX_JWKS_KEYS`].
    #[error("JWKS has {count} entries, more than the limit of {max}")]
    TooManyKeys {
        /// How many entries.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLookupError {
    /// No keys are configured for this issuer.
    #[error("no keys for issuer `{issuer}`")]
    UnknownIssuer {
        /// The issuer.
        issuer: String,
    },
    /// No usable key has this `kid`.
    #[error("no usable key with `kid` `{kid}`")]
    UnknownKid {
        /// The `kid`.
        kid: String,
    },
    /// The `kid` names an entry that was set aside (D-19).
    #[error("key `{kid}` is unusable: {reason}")]
    Unusable {
        /// The `kid`.
        kid: String,
        /// Why it was set aside.
        reason: JwkError,
    },
    /// The token has no `kid` and the issuer's key set holds two or more usable keys, of any
    /// type: a `kid` is required to choose among them (D-22).
    #[error(
        "token has no `kid`, which is required because the issuer's key set holds {keys} usable keys"
    )]
    KidRequired {
        /// How many usable keys the set holds (two or more).
        keys: usize,
    },
    /// The token has no `kid` and the issuer's key set holds no usable key, or its single usable
    /// key does not fit the token's algorithm (D-22).
    #[error("token has no `kid` and no usable key fits algorithm `{alg}` ({keys} usable keys)")]
    NoMatchingKey {
        /// The token's algorithm.
        alg: Algorithm,
        /// How many usable keys the set holds (zero or one).
        keys: usize,
    },
    /// The key source could not be consulted (a fetch failed and nothing is cached).
    #[error("key source unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

impl KeyLookupError {
    /// Whether the key source could not be consulted (a transient failure: the caller answers
    /// "try again later", e.g. OAuth `temporarily_unavailable`) rather than refusing the token.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::UnknownIssuer { .. }
            | Self::UnknownKid { .. }
            | Self::Unusable { .. }
            | Self::KidRequired { .. }
            | Self::NoMatchingKey { .. } => false,
        }
    }
}

/// One JWKS entry as read: its `kid`, if readable, and the key or why it is unusable.
type Entry = (Option<String>, Result<Arc<VerifyingKey>, JwkError>);

/// A set of verification keys read entry by entry (D-19).
#[derive(Debug, Clone, Default)]
pub struct JwkSet {
    keys: Vec<Arc<VerifyingKey>>,
    rejected: Vec<RejectedKey>,
}

impl JwkSet {
    /// Parses a JWKS document. The document must be a strict JSON object with a `keys` array;
    /// each entry is then judged on its own, and unusable entries (malformed, unsupported, weak,
    /// for encryption, private, or sharing a `kid`) are set aside, never fatal (D-19).
    pub fn parse(bytes: &[u8]) -> Result<Self, JwksError> {
        if bytes.len() > MAX_JWKS_LEN {
            return Err(JwksError::TooLarge {
                len: bytes.len(),
                max: MAX_JWKS_LEN,
            });
        }
        let doc = json::parse_object(bytes, 8).map_err(JwksError::Json)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwksError::NoKeys);
        };
        if entries.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooManyKeys {
                count: entries.len(),
                max: MAX_JWKS_KEYS,
            });
        }
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
            let result = match entry {
                Value::Object(jwk) => VerifyingKey::from_jwk(jwk).map(Arc::new),
                _ => Err(JwkError::Member { name: "keys" }),
            };
            parsed.push((kid, result));
        }
        Ok(Self::from_results(parsed))
    }

    /// Builds a set from keys in hand; keys sharing a `kid` are set aside (D-19).
    pub fn from_keys(keys: impl IntoIterator<Item = Arc<VerifyingKey>>) -> Self {
        Self::from_results(keys.into_iter().map(|k| (k.kid.clone(), Ok(k))).collect())
    }

    fn from_results(entries: Vec<Entry>) -> Self {
        let mut set = Self::default();
        let shared = |kid: &Option<String>| {
            kid.as_ref().is_some_and(|k| {
                entries
                    .iter()
                    .filter(|(other, _)| other.as_ref() == Some(k))
                    .count()
                    > 1
            })
        };
        let dup: Vec<bool> = entries.iter().map(|(kid, _)| shared(kid)).collect();
        for (index, ((kid, result), dup)) in entries.into_iter().zip(dup).enumerate() {
            match (result, dup) {
                (Ok(key), false) => set.keys.push(key),
                (Ok(_), true) => set.rejected.push(RejectedKey {
                    index,
                    reason: JwkError::DuplicateKid {
                        kid: kid.clone().unwrap_or_default(),
                    },
                    kid,
                }),
                (Err(reason), _) => set.rejected.push(RejectedKey { index, kid, reason }),
            }
        }
        set
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.keys
    }

    /// The entries set aside, with reasons (to be logged by the caller).
    pub fn rejected(&self) -> &[RejectedKey] {
        &self.rejected
    }

    /// Whether no usable key is present.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Finds the key for a token: by exact `kid` when it has one (a `kid` naming a set-aside
    /// entry fails, D-19). Without a `kid`, only a set of exactly one usable key answers, and
    /// only when that key accepts `alg`; a set of two or more usable keys, whatever their
    /// types, refuses the token with [`KeyLookupError::KidRequired`] (D-22).
    pub fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<&Arc<VerifyingKey>, KeyLookupError> {
        match kid {
            Some(kid) => {
                if let Some(key) = self.keys.iter().find(|k| k.kid() == Some(kid)) {
                    return Ok(key);
                }
                match self.rejected.iter().find(|r| r.kid.as_deref() == Some(kid)) {
                    Some(r) => Err(KeyLookupError::Unusable {
                        kid: kid.to_owned(),
                        reason: r.reason.clone(),
                    }),
                    None => Err(KeyLookupError::UnknownKid {
                        kid: kid.to_owned(),
                    }),
                }
            }
            // D-22: no guessing among several keys, even when only one of them could verify
            // `alg` (an EC and an RSA key still make two keys).
            None => match self.keys.as_slice() {
                [key] if key.accepts(alg) => Ok(key),
                single_or_none @ ([] | [_]) => Err(KeyLookupError::NoMatchingKey {
                    alg,
                    keys: single_or_none.len(),
                }),
                several => Err(KeyLookupError::KidRequired {
                    keys: several.len(),
                }),
            },
        }
    }

    /// The public JWKS document of the usable keys.
    pub fn to_public_json(&self) -> Value {
        let keys = self
            .keys
            .iter()
            .map(|k| Value::Object(k.public_jwk().clone()))
            .collect();
        let mut doc = Map::new();
        doc.insert("keys".to_owned(), Value::Array(keys));
        Value::Object(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        let Value::Object(m) = v else { unreachable!() };
        m
    }

    // RFC 7638 §3.1 example key and thumbprint.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn rfc7638_thumbprint() {
        let key = VerifyingKey::from_jwk(&obj(json!({
            "kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"
        })))
        .unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn d19_single_leading_zero_is_stripped() {
        let n = b64::decode(RFC7638_N.as_bytes()).unwrap();
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        let key = VerifyingKey::from_jwk(&obj(
            json!({"kty": "RSA", "n": b64::encode(&padded), "e": "AQAB"}),
        ))
        .unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let mut two = vec![0u8, 0u8];
        two.extend_from_slice(&n);
        assert_eq!(
            VerifyingKey::from_jwk(&obj(
                json!({"kty": "RSA", "n": b64::encode(&two), "e": "AQAB"})
            ))
            .unwrap_err(),
            JwkError::InvalidKey
        );
    }

    #[test]
    fn key_policy_rejections() {
        let rsa = |extra: Value| {
            let mut m = obj(json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}));
            m.extend(obj(extra));
            VerifyingKey::from_jwk(&m)
        };
        assert!(rsa(json!({})).is_ok());
        assert_eq!(
            rsa(json!({"use": "enc"})).unwrap_err(),
            JwkError::NotForVerification
        );
        assert_eq!(
            rsa(json!({"key_ops": ["encrypt"]})).unwrap_err(),
            JwkError::NotForVerification
        );
        assert!(rsa(json!({"key_ops": ["verify"]})).is_ok());
        assert_eq!(
            rsa(json!({"d": "AQAB"})).unwrap_err(),
            JwkError::PrivateMember { name: "d" }
        );
        assert_eq!(rsa(json!({"e": "AQ"})).unwrap_err(), JwkError::RsaExponent);
        assert_eq!(rsa(json!({"e": "Ag"})).unwrap_err(), JwkError::RsaExponent);
        assert_eq!(
            rsa(json!({"alg": "ES256"})).unwrap_err(),
            JwkError::AlgorithmMismatch {
                alg: Algorithm::ES256
            }
        );
        assert_eq!(
            rsa(json!({"alg": "RSA1_5"})).unwrap_err(),
            JwkError::UnsupportedAlgorithm {
                alg: "RSA1_5".into()
            }
        );
        assert_eq!(
            rsa(json!({"alg": "HS256"})).unwrap_err(),
            JwkError::UnsupportedAlgorithm {
                alg: "HS256".into()
            }
        );
        let short = b64::encode(&[0xC5; 128]);
        assert_eq!(
            rsa(json!({"n": short})).unwrap_err(),
            JwkError::RsaSize { bits: 1024 }
        );
        assert_eq!(
            VerifyingKey::from_jwk(&obj(json!({"kty": "oct", "k": "AAAA"}))).unwrap_err(),
            JwkError::UnsupportedKeyType { kty: "oct".into() }
        );
        assert_eq!(
            VerifyingKey::from_jwk(&obj(json!({"kty": "OKP", "crv": "Ed448", "x": "AA"})))
                .unwrap_err(),
            JwkError::UnsupportedCurve {
                crv: "Ed448".into()
            }
        );
        // A P-256 point not on the curve.
        let coord = b64::encode(&[1u8; 32]);
        assert_eq!(
            VerifyingKey::from_jwk(&obj(
                json!({"kty": "EC", "crv": "P-256", "x": coord, "y": coord})
            ))
            .unwrap_err(),
            JwkError::InvalidKey
        );
    }

    #[test]
    fn d19_sets_aside_bad_entries_and_duplicates() {
        let doc = json!({"keys": [
            {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "kid": "a"},
            {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "kid": "dup"},
            {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "kid": "dup"},
            {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "kid": "enc", "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA", "kid": "k1", "extra": {"x": 1}},
            "not an object"
        ]});
        let set = JwkSet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.keys().len(), 1);
        assert_eq!(set.rejected().len(), 6);
        assert!(set.find(Some("a"), Algorithm::RS256).is_ok());
        assert!(matches!(
            set.find(Some("dup"), Algorithm::RS256),
            Err(KeyLookupError::Unusable { .. })
        ));
        assert!(matches!(
            set.find(Some("enc"), Algorithm::RS256),
            Err(KeyLookupError::Unusable { .. })
        ));
        assert!(matches!(
            set.find(Some("zzz"), Algorithm::RS256),
            Err(KeyLookupError::UnknownKid { .. })
        ));
        // D-22: the set-aside entries do not count; the one usable key answers a kid-less
        // token of its algorithm and no other.
        assert!(set.find(None, Algorithm::RS256).is_ok());
        assert!(matches!(
            set.find(None, Algorithm::ES256),
            Err(KeyLookupError::NoMatchingKey { keys: 1, .. })
        ));
        assert!(matches!(JwkSet::parse(b"{}"), Err(JwksError::NoKeys)));
        assert!(matches!(
            JwkSet::parse(br#"{"keys":[],"keys":[]}"#),
            Err(JwksError::Json(_))
        ));
    }

    #[test]
    fn roca_detector_does_not_flag_ordinary_moduli() {
        let n = b64::decode(RFC7638_N.as_bytes()).unwrap();
        assert!(!roca::is_vulnerable(&n));
    }
}
