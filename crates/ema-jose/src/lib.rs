#![doc = include_str!("../README.md")]
//!
//! # What is checked, in order
//!
//! Everything is checked in one pass, before and around a single signature verification:
//!
//! 1. [`UnverifiedJwt::parse`]: size cap, exactly three segments, canonical unpadded
//!    base64url, header and claims as strict JSON objects (no duplicate members at any depth,
//!    bounded nesting, UTF-8 without lone surrogates), the registered header members that hold
//!    strings (`alg`, `typ`, `kid`, `cty`, `x5t`, `x5t#S256`, `url`, `nonce`) strings. The
//!    claims parsed here are the ones every later check reads.
//! 2. [`HeaderPolicy`] per [`TokenKind`]: the `typ` of that kind and no other (D-8, SEC-5), an
//!    explicit algorithm allow-list with no `none` or HMAC (SEC-4), `crit`/`b64`/`zip`/`enc`
//!    refused, `jku`/`x5u`/`jwk`/`x5c` refused (D-18), `cty` refused (no token kind is a nested
//!    JWT, D-23).
//! 3. A [`VerifyingKey`] chosen by issuer configuration through a [`KeySource`] (SEC-3), never
//!    by token headers; its own `alg` binds the token's. Keys come from JWKs under a key policy
//!    ([`VerifyingKey::from_jwk`], [`JwkSet::parse`], D-19) and are parsed once.
//! 4. [`Claims`]: NumericDates as JSON numbers, the validity window with leeway and a maximum
//!    lifetime (SEC-2, D-7), exact `iss`/`aud` comparison (D-12, D-13), all against a time the
//!    caller passes in.
//!
//! Cryptography is aws-lc-rs, called directly on cached parsed keys; no other crypto backend is
//! compiled.
//!
//! Every step's error converts into the umbrella [`Error`] with `?`; match on the step's own
//! type where a caller must react to one failure.

mod alg;
mod b64;
mod claims;
mod error;
mod json;
mod jwk;
mod jws;
mod keyring;
mod keys;
mod policy;
mod sign;
mod time;

pub use alg::{Algorithm, AlgorithmSet};
pub use claims::{AudienceRule, ClaimError, Claims};
pub use error::Error;
pub use json::{JsonError, parse_object as parse_json_object};
pub use jwk::{
    Curve, JwkError, JwkSet, JwksError, KeyLookupError, KeyType, MAX_JWKS_KEYS, MAX_JWKS_LEN,
    MAX_RSA_BITS, MIN_RSA_BITS, RejectedKey, VerifyingKey,
};
pub use jws::{
    Header, ParseError, ParseOptions, Part, UnverifiedJws, UnverifiedJwt, VerifiedJws, VerifiedJwt,
    VerifyError,
};
pub use keyring::{KeyRing, RotationError};
pub use keys::{DynKeySource, ErasedKeySource, KeySource, StaticKeySource};
pub use policy::{HeaderError, HeaderPolicy, TokenKind, TypRule, typ, typ_matches};
pub use sign::{SignError, SigningKey, random_id};
pub use time::{
    Clock, FixedClock, NumericDateError, SystemClock, TimeError, TimeOptions, UnixTime, Validity,
    numeric_date,
};

/// Base64url helpers with the same canonical rules the parser applies.
pub mod base64url {
    /// Decodes canonical unpadded base64url; `None` for anything else.
    pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
        crate::b64::decode(input)
    }

    /// Encodes as unpadded base64url.
    pub fn encode(input: &[u8]) -> String {
        crate::b64::encode(input)
    }
}
