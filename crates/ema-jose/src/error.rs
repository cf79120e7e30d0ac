//! The crate's umbrella error, for callers that run several steps and propagate with `?`.

/// Any error of this crate: each step's own error type converts into it with `?` (and stays
/// available to `match` on, or as [`std::error::Error::source`]).
///
/// Library code that needs to react to one failure matches the step's own type; this type is
/// for applications and examples that only report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`UnverifiedJwt::parse`](crate::UnverifiedJwt::parse) failed.
    #[error("JWT is malformed")]
    Parse(#[source] crate::ParseError),
    /// A header broke the [`HeaderPolicy`](crate::HeaderPolicy).
    #[error("JWT header refused")]
    Header(#[source] crate::HeaderError),
    /// The signature did not verify.
    #[error("JWT signature refused")]
    Verify(#[source] crate::VerifyError),
    /// No key could be found for the token.
    #[error("no verification key")]
    KeyLookup(#[source] crate::KeyLookupError),
    /// A claim is missing, mistyped or refused.
    #[error("claim refused")]
    Claim(#[source] crate::ClaimError),
    /// The validity window is refused.
    #[error("validity refused")]
    Time(#[source] crate::TimeError),
    /// Signing failed.
    #[error("signing failed")]
    Sign(#[source] crate::SignError),
    /// A JWK is not acceptable.
    #[error("JWK refused")]
    Jwk(#[source] crate::JwkError),
    /// A JWKS document is not acceptable.
    #[error("JWKS refused")]
    Jwks(#[source] crate::JwksError),
}

macro_rules! from {
    ($($variant:ident($ty:ty)),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Self::$variant(e)
            }
        }
    )*};
}

from!(
    Parse(crate::ParseError),
    Header(crate::HeaderError),
    Verify(crate::VerifyError),
    KeyLookup(crate::KeyLookupError),
    Claim(crate::ClaimError),
    Time(crate::TimeError),
    Sign(crate::SignError),
    Jwk(crate::JwkError),
    Jwks(crate::JwksError),
);

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::{Algorithm, JwkSet, ParseOptions, UnixTime, UnverifiedJwt};

    fn first(r: Result<(), Error>) -> Error {
        r.unwrap_err()
    }

    /// Each step's error converts with `?` and stays reachable as the source.
    #[test]
    fn every_step_converts_with_question_mark() {
        let parse = first((|| {
            UnverifiedJwt::parse("not a jwt", &ParseOptions::new())?;
            Ok(())
        })());
        assert!(matches!(parse, Error::Parse(_)));
        assert!(parse.source().unwrap().is::<crate::ParseError>());

        let jwks = first((|| {
            JwkSet::parse(b"{}")?;
            Ok(())
        })());
        assert!(matches!(jwks, Error::Jwks(_)));

        let lookup = first((|| {
            crate::StaticKeySource::new().resolve_now("https://nobody", None, Algorithm::ES256)?;
            Ok(())
        })());
        assert!(matches!(lookup, Error::KeyLookup(_)));

        let signer = crate::SigningKey::generate(Algorithm::ES256, None).unwrap();
        let token = signer
            .sign_jwt(None, &serde_json::json!({"exp": 10, "iat": 1}))
            .unwrap();
        let jwt = UnverifiedJwt::parse(&token, &ParseOptions::new()).unwrap();
        let claims = first((|| {
            jwt.unverified_claims().required_string("sub")?;
            Ok(())
        })());
        assert!(matches!(claims, Error::Claim(_)));
        let time = first((|| {
            jwt.unverified_claims()
                .check_validity(&crate::TimeOptions::new(), UnixTime::from_secs(1_000))?;
            Ok(())
        })());
        assert!(matches!(time, Error::Claim(_) | Error::Time(_)), "{time:?}");
        assert_eq!(parse.to_string(), "JWT is malformed");
    }
}
