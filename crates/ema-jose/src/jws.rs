//! The strict compact-JWS reader (RFC 7515 §7.1) and the unverified → verified token types.

use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::b64;
use crate::claims::Claims;
use crate::json::{Field, JsonError, JsonObject};
use crate::jwk::VerifyingKey;
use crate::policy::{HeaderError, HeaderPolicy};

/// Limits applied before any key is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseOptions {
    /// The longest accepted token in bytes (default 16 KiB).
    pub max_len: usize,
    /// The deepest accepted nesting of arrays and objects in the header and the claims
    /// (default 16; the top-level object is level 1).
    pub max_depth: usize,
}

impl ParseOptions {
    /// The defaults: 16 KiB and depth 16.
    pub const fn new() -> Self {
        Self {
            max_len: 16 * 1024,
            max_depth: 16,
        }
    }

    /// Sets the size cap.
    #[must_use]
    pub const fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// Sets the nesting cap.
    #[must_use]
    pub const fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// The three parts of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The protected header.
    Header,
    /// The payload.
    Payload,
    /// The signature.
    Signature,
}

/// Why bytes were refused as a compact JWS or JWT, before any key was touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Longer than [`ParseOptions::max_len`].
    #[error("token is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The token length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three dot-separated segments (a JWE has five; JSON serialization has none).
    #[error("token has {segments} segments, expected 3")]
    Segments {
        /// How many segments were found.
        segments: usize,
    },
    /// A segment is not canonical unpadded base64url.
    #[error("{part:?} is not canonical base64url")]
    Base64 {
        /// Which segment.
        part: Part,
    },
    /// The signature segment is empty (an unsecured JWS).
    #[error("signature is empty")]
    EmptySignature,
    /// The header is not a strict JSON object.
    #[error("header: {0}")]
    HeaderJson(JsonError),
    /// The payload is not a strict JSON object (JWT only).
    #[error("claims: {0}")]
    ClaimsJson(JsonError),
    /// A registered header member has the wrong JSON type, or `alg` is missing.
    #[error("header member `{name}` is missing or not a string")]
    HeaderMember {
        /// The member name.
        name: &'static str,
    },
}

/// A parsed JOSE header (RFC 7515 §4). The registered members this crate reads are checked for
/// type when parsed; the whole object is kept for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    raw: JsonObject,
}

impl Header {
    fn new(raw: JsonObject) -> Result<Self, ParseError> {
        fn check(raw: &JsonObject, name: &'static str, required: bool) -> Result<(), ParseError> {
            match raw.field(name) {
                None if !required => Ok(()),
                Some(Field::Str(_)) => Ok(()),
                _ => Err(ParseError::HeaderMember { name }),
            }
        }
        check(&raw, "alg", true)?;
        check(&raw, "typ", false)?;
        check(&raw, "kid", false)?;
        // `cty` must be a string if present (RFC 7515 §4.1.10), even though we never act on it.
        check(&raw, "cty", false)?;
        // So must the other registered members whose value is a string and which a policy may
        // let through (SEC-3): the thumbprints (RFC 7515 §4.1.7, §4.1.8) and RFC 8555 §6.4,
        // §6.5 `url` and `nonce`. Libraries that type these members (`jsonwebtoken`) refuse a
        // token otherwise; found by the `jwt_oracle` fuzz target.
        for name in ["x5t", "x5t#S256", "url", "nonce"] {
            check(&raw, name, false)?;
        }
        Ok(Self { raw })
    }

    fn string(&self, name: &str) -> Option<&str> {
        match self.raw.field(name) {
            Some(Field::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// `alg` as received.
    pub fn alg(&self) -> &str {
        self.string("alg").unwrap_or_default()
    }

    /// `typ`, when present.
    pub fn typ(&self) -> Option<&str> {
        self.string("typ")
    }

    /// `kid`, when present.
    pub fn kid(&self) -> Option<&str> {
        self.string("kid")
    }

    /// Whether the header has a member of this name.
    pub fn has(&self, name: &str) -> bool {
        self.raw.contains(name)
    }

    /// Whether the header has a member not named in `names`.
    pub fn has_other_than(&self, names: &[&str]) -> bool {
        self.raw.names().any(|n| !names.contains(&n))
    }

    /// One member's value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.raw.get(name)
    }

    /// The whole header object (built on first request; the readers above never need it).
    pub fn raw(&self) -> &Map<String, Value> {
        self.raw.as_map()
    }
}

/// A compact JWS whose structure has been checked and whose signature has not.
///
/// The payload is opaque bytes; use [`UnverifiedJwt`] for a JWT. `Debug` shows the header and
/// the lengths of the other parts, never the token's bytes (SEC-10).
#[derive(Clone)]
pub struct UnverifiedJws {
    signing_input: String,
    header: Header,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl std::fmt::Debug for UnverifiedJws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnverifiedJws")
            .field("header", &self.header)
            .field("signing_input_len", &self.signing_input.len())
            .field("payload_len", &self.payload.len())
            .field("signature_len", &self.signature.len())
            .finish()
    }
}

#[cfg(test)]
mod sec10_debug {
    use super::*;

    #[test]
    fn sec10_unverified_jws_debug_shows_no_token_bytes() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJRdzhaIn0.c2lnbmF0dXJlLWJ5dGVzLVp4OTk";
        let jws = UnverifiedJws::parse(token, &ParseOptions::new()).unwrap();
        for text in [format!("{jws:?}"), format!("{jws:#?}")] {
            for segment in token.split('.') {
                assert!(!text.contains(segment), "{segment} leaked into {text}");
            }
            assert!(text.contains("ES256"), "{text}");
        }
        // The signature bytes are not printed as numbers either.
        assert!(!format!("{jws:?}").contains("115, 105, 103"));
    }
}

impl UnverifiedJws {
    /// Parses a compact JWS strictly: size cap, exactly three segments, canonical base64url,
    /// a strict JSON header object (no duplicate members, bounded depth), a non-empty signature.
    pub fn parse(token: &str, options: &ParseOptions) -> Result<Self, ParseError> {
        let bytes = token.as_bytes();
        if bytes.len() > options.max_len {
            return Err(ParseError::TooLarge {
                len: bytes.len(),
                max: options.max_len,
            });
        }
        let segments = || ParseError::Segments {
            segments: bytes.iter().filter(|b| **b == b'.').count() + 1,
        };
        let Some((d1, d2)) = first_two_dots(token) else {
            return Err(segments());
        };
        let (header_b64, rest) = bytes.split_at(d1);
        let payload_b64 = rest.get(1..d2 - d1).unwrap_or_default();
        let signature_b64 = bytes.get(d2 + 1..).unwrap_or_default();
        // A third dot can only be in the signature segment, where base64url decoding refuses
        // it: the token is then reported by its segment count, not by its encoding (and the
        // signature is not scanned twice on the way to a valid token).
        let base64 = |part| {
            if signature_b64.contains(&b'.') {
                segments()
            } else {
                ParseError::Base64 { part }
            }
        };
        if signature_b64.is_empty() {
            return Err(ParseError::EmptySignature);
        }
        let header_bytes = b64::decode(header_b64).ok_or_else(|| base64(Part::Header))?;
        let payload = b64::decode(payload_b64).ok_or_else(|| base64(Part::Payload))?;
        let signature = b64::decode(signature_b64).ok_or_else(|| base64(Part::Signature))?;
        let header = JsonObject::parse(header_bytes, options.max_depth)
            .map_err(ParseError::HeaderJson)
            .and_then(Header::new)?;
        let signing_input = token.get(..d2).unwrap_or_default().to_owned();
        Ok(Self {
            signing_input,
            header,
            payload,
            signature,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload bytes, not yet authenticated.
    pub fn unverified_payload(&self) -> &[u8] {
        &self.payload
    }

    /// Checks the header against `policy`, then the signature with `key` (whose own `alg`, if
    /// any, binds the token's). The signature covers the exact bytes received.
    pub fn verify(
        self,
        policy: &HeaderPolicy,
        key: &VerifyingKey,
    ) -> Result<VerifiedJws, VerifyError> {
        let alg = policy.check(&self.header).map_err(VerifyError::Header)?;
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)?;
        Ok(VerifiedJws {
            header: self.header,
            payload: self.payload,
            alg,
        })
    }
}

/// The positions of the first two dots, or `None` if there are fewer. `str::find` with a `char`
/// searches with `memchr`, which matters on the hot path: a byte-at-a-time scan of the whole
/// token cost a tenth of the non-crypto time.
fn first_two_dots(token: &str) -> Option<(usize, usize)> {
    let d1 = token.find('.')?;
    let d2 = d1 + 1 + token.get(d1 + 1..)?.find('.')?;
    Some((d1, d2))
}

/// A JWS whose header passed a policy and whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    header: Header,
    payload: Vec<u8>,
    alg: Algorithm,
}

impl VerifiedJws {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The authenticated payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The algorithm the signature was verified with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// A compact JWS whose payload is a strict JSON claims object, signature not yet verified.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt {
    jws: UnverifiedJws,
    claims: Claims,
}

impl UnverifiedJwt {
    /// Parses a JWT: [`UnverifiedJws::parse`] plus a strict JSON object payload. These claims are
    /// the ones every later check reads; nothing is parsed twice.
    pub fn parse(token: &str, options: &ParseOptions) -> Result<Self, ParseError> {
        let mut jws = UnverifiedJws::parse(token, options)?;
        let payload = std::mem::take(&mut jws.payload);
        let object =
            JsonObject::parse(payload, options.max_depth).map_err(ParseError::ClaimsJson)?;
        Ok(Self {
            jws,
            claims: Claims::from_json(object),
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.jws.header
    }

    /// The claims, not yet authenticated: use them only to choose the issuer's keys.
    pub fn unverified_claims(&self) -> &Claims {
        &self.claims
    }

    /// Checks the header against `policy`, then the signature with `key`.
    pub fn verify(
        self,
        policy: &HeaderPolicy,
        key: &VerifyingKey,
    ) -> Result<VerifiedJwt, VerifyError> {
        let alg = policy
            .check(&self.jws.header)
            .map_err(VerifyError::Header)?;
        key.verify(alg, self.jws.signing_input.as_bytes(), &self.jws.signature)?;
        Ok(VerifiedJwt {
            header: self.jws.header,
            claims: self.claims,
            alg,
        })
    }
}

/// A JWT whose header passed a policy and whose signature verified. Claims still need their
/// semantic checks (time, issuer, audience), which [`Claims`] provides.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    header: Header,
    claims: Claims,
    alg: Algorithm,
}

impl VerifiedJwt {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The authenticated claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Takes the claims.
    pub fn into_claims(self) -> Claims {
        self.claims
    }

    /// The algorithm the signature was verified with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Why a parsed JWS failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The header broke the policy.
    #[error(transparent)]
    Header(HeaderError),
    /// The key carries its own `alg` and the token names another (D-19).
    #[error("key is bound to `{key}`, token uses `{token}`")]
    AlgorithmMismatch {
        /// The key's `alg`.
        key: Algorithm,
        /// The token's `alg`.
        token: Algorithm,
    },
    /// The key's type or curve cannot produce this algorithm.
    #[error("key type does not match algorithm `{alg}`")]
    KeyTypeMismatch {
        /// The token's `alg`.
        alg: Algorithm,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_three_segments() {
        for token in [
            "", ".", "..", "...", "a", "a.b", "a.b.c", "a.b.c.d", ".b.c", "a..c", "a.b.", "é.ü.ß",
            "a.b.c.", "a.b..",
        ] {
            let dots: Vec<usize> = token.match_indices('.').map(|(i, _)| i).collect();
            let first_two = match dots.as_slice() {
                [d1, d2, ..] => Some((*d1, *d2)),
                _ => None,
            };
            assert_eq!(first_two_dots(token), first_two, "{token:?}");
            if dots.len() != 2 {
                assert_eq!(
                    UnverifiedJws::parse(token, &ParseOptions::new()).unwrap_err(),
                    ParseError::Segments {
                        segments: dots.len() + 1
                    },
                    "{token:?}"
                );
            }
        }
    }
}
