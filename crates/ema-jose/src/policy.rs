//! Header policy per token kind: `typ` (D-8, SEC-5), the algorithm allow-list (SEC-4), and the
//! header members this crate refuses (`crit`, `b64`, `zip`, `enc`; `jku`, `x5u`, `jwk`, `x5c` per
//! D-18; `cty` per D-23).

use crate::alg::{Algorithm, AlgorithmSet};
use crate::jws::Header;

/// The kinds of JWT that EMA moves around. Each has a `typ` no other kind accepts (SEC-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// Identity Assertion JWT Authorization Grant: `typ` `oauth-id-jag+jwt` required (JAG-1, AS-3).
    IdJag,
    /// RFC 9068 JWT access token: `typ` `at+jwt` required (RS-3).
    AccessToken,
    /// OpenID Connect ID token: `typ` absent or `JWT`.
    IdToken,
    /// RFC 7523 client assertion (`private_key_jwt`): `typ` absent, `JWT`, or
    /// `client-authentication+jwt`.
    ClientAssertion,
    /// RFC 9449 DPoP proof: `typ` `dpop+jwt` required, and a `jwk` header carrying the key.
    /// Like every other kind it refuses `cty`: a DPoP proof is never a nested JWT either (D-23).
    DpopProof,
}

impl TokenKind {
    /// The `typ` this crate writes when it signs a token of this kind.
    pub const fn typ(self) -> Option<&'static str> {
        match self {
            Self::IdJag => Some(typ::ID_JAG),
            Self::AccessToken => Some(typ::ACCESS_TOKEN),
            Self::IdToken => Some(typ::JWT),
            Self::ClientAssertion => Some(typ::CLIENT_ASSERTION),
            Self::DpopProof => Some(typ::DPOP),
        }
    }

    const fn typ_rule(self) -> TypRule {
        match self {
            Self::IdJag => TypRule::Required(typ::ID_JAG),
            Self::AccessToken => TypRule::Required(typ::ACCESS_TOKEN),
            Self::IdToken => TypRule::AbsentOr(&[typ::JWT]),
            Self::ClientAssertion => TypRule::AbsentOr(&[typ::JWT, typ::CLIENT_ASSERTION]),
            Self::DpopProof => TypRule::Required(typ::DPOP),
        }
    }
}

/// `typ` values (RFC 7515 §4.1.9 short forms, without `application/`).
pub mod typ {
    /// ID-JAG (JAG §3.1).
    pub const ID_JAG: &str = "oauth-id-jag+jwt";
    /// JWT access token (RFC 9068 §2.1).
    pub const ACCESS_TOKEN: &str = "at+jwt";
    /// DPoP proof (RFC 9449 §4.2).
    pub const DPOP: &str = "dpop+jwt";
    /// Client assertion (draft-ietf-oauth-rfc7523bis).
    pub const CLIENT_ASSERTION: &str = "client-authentication+jwt";
    /// Plain JWT (RFC 7519 §5.1).
    pub const JWT: &str = "JWT";
}

/// What a policy demands of `typ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypRule {
    /// `typ` must be present and equal to this value (D-8 comparison).
    Required(&'static str),
    /// `typ` may be absent; when present it must equal one of these (D-8 comparison).
    AbsentOr(&'static [&'static str]),
    /// `typ` is not looked at. For generic JWS processing only (test vectors), never for a JWT.
    Ignored,
}

/// D-8: `typ` values compare case-insensitively, with an optional `application/` prefix
/// (RFC 7515 §4.1.9).
pub fn typ_matches(found: &str, expected: &str) -> bool {
    let found = match found.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => {
            found.get(12..).unwrap_or("")
        }
        _ => found,
    };
    found.eq_ignore_ascii_case(expected)
}

/// Header rules for one kind of token.
///
/// Every policy, whatever its kind or `typ` rule, refuses `crit`, `b64`, `zip`, `enc`, `jku`,
/// `x5u`, `x5c` and `cty`, and `jwk` except in a DPoP proof. `cty` is refused because this crate
/// reads every payload as the claims of the token itself and never as a nested JWT or other
/// content (D-23; RFC 7519 §5.2, RFC 8725 §3.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPolicy {
    typ: TypRule,
    algorithms: AlgorithmSet,
    require_jwk: bool,
}

impl HeaderPolicy {
    /// The policy for `kind` with the default algorithm allow-list.
    pub const fn for_kind(kind: TokenKind) -> Self {
        Self {
            typ: kind.typ_rule(),
            algorithms: AlgorithmSet::DEFAULT,
            require_jwk: matches!(kind, TokenKind::DpopProof),
        }
    }

    /// A policy with an explicit `typ` rule, for JWS uses outside the EMA token kinds.
    /// `jwk` and `cty` are refused as for every non-DPoP kind.
    pub const fn custom(typ: TypRule, algorithms: AlgorithmSet) -> Self {
        Self {
            typ,
            algorithms,
            require_jwk: false,
        }
    }

    /// Replaces the algorithm allow-list.
    #[must_use]
    pub const fn with_algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// The algorithm allow-list.
    pub const fn algorithms(&self) -> AlgorithmSet {
        self.algorithms
    }

    /// Checks a parsed header and returns its (allowed) algorithm.
    pub fn check(&self, header: &Header) -> Result<Algorithm, HeaderError> {
        // The usual header holds nothing but `alg`, `typ` and `kid`: one pass over its names
        // settles every member check (`cty` is outside that set, so it reaches the check below).
        if self.require_jwk || header.has_other_than(&["alg", "typ", "kid"]) {
            Self::check_members(header, self.require_jwk)?;
        }
        // SEC-4: explicit allow-list; `none` and HMAC are not even representable.
        let alg = Algorithm::from_name(header.alg()).ok_or_else(|| {
            HeaderError::UnsupportedAlgorithm {
                alg: header.alg().to_owned(),
            }
        })?;
        if !self.algorithms.contains(alg) {
            return Err(HeaderError::AlgorithmNotAllowed { alg });
        }
        // SEC-5 / D-8: the `typ` of this kind and no other.
        match (self.typ, header.typ()) {
            (TypRule::Ignored, _) | (TypRule::AbsentOr(_), None) => {}
            (TypRule::Required(expected), None) => {
                return Err(HeaderError::MissingType { expected });
            }
            (TypRule::Required(expected), Some(found)) => {
                if !typ_matches(found, expected) {
                    return Err(HeaderError::WrongType {
                        found: found.to_owned(),
                    });
                }
            }
            (TypRule::AbsentOr(allowed), Some(found)) => {
                if !allowed.iter().any(|e| typ_matches(found, e)) {
                    return Err(HeaderError::WrongType {
                        found: found.to_owned(),
                    });
                }
            }
        }
        Ok(alg)
    }

    /// The members a header must not (or, for DPoP, must) carry.
    fn check_members(header: &Header, require_jwk: bool) -> Result<(), HeaderError> {
        // RFC 7515 §4.1.11: we understand no extension, so any `crit` is fatal.
        if header.has("crit") {
            return Err(HeaderError::Critical);
        }
        // RFC 7797 unencoded payloads, compressed payloads and JWE members are never accepted.
        for name in ["b64", "zip", "enc"] {
            if header.has(name) {
                return Err(HeaderError::Unsupported { name });
            }
        }
        // D-23: none of our token kinds is a nested JWT (RFC 7519 §5.2, RFC 8725 §3.11), so any
        // `cty` at all, whatever its value, makes the token invalid. That includes DPoP proofs.
        // The parser has already refused a `cty` that is not a string (RFC 7515 §4.1.10).
        if header.has("cty") {
            return Err(HeaderError::ContentType {
                found: header
                    .get("cty")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        // D-18: members naming key material or a key source make the token invalid, even if the
        // signature would verify with the trusted key. DPoP proofs need `jwk` (RFC 9449 §4.2).
        for name in ["jku", "x5u", "x5c"] {
            if header.has(name) {
                return Err(HeaderError::KeyReference { name });
            }
        }
        if require_jwk {
            if !header.get("jwk").is_some_and(serde_json::Value::is_object) {
                return Err(HeaderError::MissingJwk);
            }
        } else if header.has("jwk") {
            return Err(HeaderError::KeyReference { name: "jwk" });
        }
        Ok(())
    }
}

/// Why a JWS header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// `alg` names no implemented asymmetric algorithm (`none`, HMAC, unknown, wrong case).
    #[error("algorithm `{alg}` is not supported")]
    UnsupportedAlgorithm {
        /// The `alg` value as received.
        alg: String,
    },
    /// `alg` is implemented but not on this policy's allow-list.
    #[error("algorithm `{alg}` is not allowed")]
    AlgorithmNotAllowed {
        /// The algorithm.
        alg: Algorithm,
    },
    /// `typ` is required and absent.
    #[error("`typ` is missing, expected `{expected}`")]
    MissingType {
        /// The required value.
        expected: &'static str,
    },
    /// `typ` names another kind of token.
    #[error("`typ` is `{found}`, which this token kind does not accept")]
    WrongType {
        /// The `typ` value as received.
        found: String,
    },
    /// `crit` is present.
    #[error("`crit` is present; no extension is understood")]
    Critical,
    /// A member this crate never processes (`b64`, `zip`, `enc`).
    #[error("header member `{name}` is not supported")]
    Unsupported {
        /// The member name.
        name: &'static str,
    },
    /// A member naming key material or a key location (D-18).
    #[error("header member `{name}` names a key source and is refused")]
    KeyReference {
        /// The member name.
        name: &'static str,
    },
    /// `cty` is present: the token claims to carry a nested JWT or other content, which none of
    /// the EMA token kinds does (D-23).
    #[error(
        "header member `cty` (`{found}`) is present; no token of this kind carries nested content"
    )]
    ContentType {
        /// The `cty` value as received.
        found: String,
    },
    /// A DPoP proof without a `jwk` object.
    #[error("`jwk` is missing")]
    MissingJwk,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d8_typ_comparison() {
        assert!(typ_matches("oauth-id-jag+jwt", "oauth-id-jag+jwt"));
        assert!(typ_matches("OAuth-ID-JAG+JWT", "oauth-id-jag+jwt"));
        assert!(typ_matches(
            "application/oauth-id-jag+jwt",
            "oauth-id-jag+jwt"
        ));
        assert!(typ_matches("Application/AT+JWT", "at+jwt"));
        assert!(!typ_matches("application/application/at+jwt", "at+jwt"));
        assert!(!typ_matches("at+jwt ", "at+jwt"));
        assert!(!typ_matches("jwt", "at+jwt"));
        assert!(!typ_matches("", "at+jwt"));
        assert!(!typ_matches("applicatio", "at+jwt"));
        assert!(!typ_matches("application/", "at+jwt"));
        // multi-byte input near the prefix boundary must not panic
        assert!(!typ_matches("applicatioé/at+jwt", "at+jwt"));
    }
}
