//! Typed reads of a parsed claim set: strings, NumericDates, issuer and audience (D-7, D-12,
//! D-13).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::time::{self, NumericDateError, TimeError, TimeOptions, UnixTime, Validity};

/// A JWT claim set as parsed once from the token (a strict JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(Value);

/// How `aud` may be shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AudienceRule {
    /// A string, or an array of exactly one string (D-13, JAG-3, AS-5).
    Single,
    /// A string, or a non-empty array of strings of which one must match (RFC 7519 §4.1.3).
    AnyOf,
}

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// A required claim is absent.
    #[error("`{claim}` is missing")]
    Missing {
        /// The claim name.
        claim: &'static str,
    },
    /// A claim has the wrong JSON type.
    #[error("`{claim}` is not {expected}")]
    WrongType {
        /// The claim name.
        claim: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// A NumericDate claim is malformed.
    #[error(transparent)]
    Date(#[from] NumericDateError),
    /// The validity window is refused.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// `iss` is not the expected issuer (exact comparison, D-12).
    #[error("`iss` is `{found}`, expected `{expected}`")]
    IssuerMismatch {
        /// The token's `iss`.
        found: String,
        /// The expected issuer.
        expected: String,
    },
    /// `aud` does not name the expected audience (exact comparison, D-12).
    #[error("`aud` does not contain `{expected}`")]
    AudienceMismatch {
        /// The expected audience.
        expected: String,
    },
    /// `aud` is an array with other than one element where one is required (D-13).
    #[error("`aud` has {len} elements, expected exactly one")]
    AudienceCount {
        /// How many elements it has.
        len: usize,
    },
}

impl Claims {
    pub(crate) fn from_map(map: Map<String, Value>) -> Self {
        Self(Value::Object(map))
    }

    /// Wraps an object built elsewhere (for signing or tests).
    pub fn from_object(map: Map<String, Value>) -> Self {
        Self::from_map(map)
    }

    /// The claim set as a JSON object.
    pub fn as_object(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        match &self.0 {
            Value::Object(m) => m,
            _ => EMPTY.get_or_init(Map::new),
        }
    }

    /// One claim's raw value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.as_object().get(name)
    }

    /// An optional string claim; present but not a string is an error.
    pub fn string(&self, claim: &'static str) -> Result<Option<&str>, ClaimError> {
        match self.get(claim) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ClaimError::WrongType {
                claim,
                expected: "a string",
            }),
        }
    }

    /// A required string claim.
    pub fn required_string(&self, claim: &'static str) -> Result<&str, ClaimError> {
        self.string(claim)?.ok_or(ClaimError::Missing { claim })
    }

    /// An optional NumericDate claim (a JSON number, D-7).
    pub fn numeric_date(&self, claim: &'static str) -> Result<Option<UnixTime>, ClaimError> {
        self.get(claim)
            .map(|v| time::numeric_date(claim, v))
            .transpose()
            .map_err(ClaimError::from)
    }

    /// Reads `exp` (required), `iat` and `nbf` and checks the window at `now` (SEC-2, D-7).
    pub fn check_validity(
        &self,
        options: &TimeOptions,
        now: UnixTime,
    ) -> Result<Validity, ClaimError> {
        let exp = self
            .numeric_date("exp")?
            .ok_or(ClaimError::Missing { claim: "exp" })?;
        let window = Validity {
            exp,
            iat: self.numeric_date("iat")?,
            nbf: self.numeric_date("nbf")?,
        };
        options.check(&window, now)?;
        Ok(window)
    }

    /// Checks that `iss` is present, a string, and exactly `expected` (D-12).
    pub fn check_issuer(&self, expected: &str) -> Result<(), ClaimError> {
        let found = self.required_string("iss")?;
        if found != expected {
            return Err(ClaimError::IssuerMismatch {
                found: found.to_owned(),
                expected: expected.to_owned(),
            });
        }
        Ok(())
    }

    /// The `aud` values, shaped as `rule` demands.
    pub fn audience(&self, rule: AudienceRule) -> Result<Vec<&str>, ClaimError> {
        const WRONG: ClaimError = ClaimError::WrongType {
            claim: "aud",
            expected: "a string or an array of strings",
        };
        match self.get("aud") {
            None => Err(ClaimError::Missing { claim: "aud" }),
            Some(Value::String(s)) => Ok(vec![s.as_str()]),
            Some(Value::Array(items)) => {
                let values = items
                    .iter()
                    .map(|v| v.as_str().ok_or(WRONG))
                    .collect::<Result<Vec<_>, _>>()?;
                match (rule, values.len()) {
                    (AudienceRule::Single, 1) => Ok(values),
                    (AudienceRule::Single, len) => Err(ClaimError::AudienceCount { len }),
                    (AudienceRule::AnyOf, 0) => Err(ClaimError::AudienceCount { len: 0 }),
                    (AudienceRule::AnyOf, _) => Ok(values),
                }
            }
            Some(_) => Err(WRONG),
        }
    }

    /// Checks that `aud` names `expected` exactly (D-12), shaped as `rule` demands (D-13).
    pub fn check_audience(&self, expected: &str, rule: AudienceRule) -> Result<(), ClaimError> {
        if self.audience(rule)?.contains(&expected) {
            Ok(())
        } else {
            Err(ClaimError::AudienceMismatch {
                expected: expected.to_owned(),
            })
        }
    }

    /// Deserializes the claim set into a typed view without re-parsing the token.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.0)
    }

    /// Takes the claim set as a JSON object.
    pub fn into_object(self) -> Map<String, Value> {
        match self.0 {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        let Value::Object(m) = v else { unreachable!() };
        Claims::from_map(m)
    }

    #[test]
    fn d12_issuer_is_exact() {
        let c = claims(json!({"iss": "https://idp.example"}));
        assert_eq!(c.check_issuer("https://idp.example"), Ok(()));
        for other in [
            "https://idp.example/",
            "HTTPS://idp.example",
            "https://IDP.example",
            "",
        ] {
            assert!(matches!(
                c.check_issuer(other),
                Err(ClaimError::IssuerMismatch { .. })
            ));
        }
        let arr = claims(json!({"iss": ["https://idp.example"]}));
        assert_eq!(
            arr.check_issuer("https://idp.example"),
            Err(ClaimError::WrongType {
                claim: "iss",
                expected: "a string"
            })
        );
        assert_eq!(
            claims(json!({})).check_issuer("x"),
            Err(ClaimError::Missing { claim: "iss" })
        );
    }

    #[test]
    fn d13_audience_shapes() {
        let a = "https://as.example";
        assert_eq!(
            claims(json!({"aud": a})).check_audience(a, AudienceRule::Single),
            Ok(())
        );
        assert_eq!(
            claims(json!({"aud": [a]})).check_audience(a, AudienceRule::Single),
            Ok(())
        );
        assert_eq!(
            claims(json!({"aud": [a, "x"]})).check_audience(a, AudienceRule::Single),
            Err(ClaimError::AudienceCount { len: 2 })
        );
        assert_eq!(
            claims(json!({"aud": [a, "x"]})).check_audience(a, AudienceRule::AnyOf),
            Ok(())
        );
        assert_eq!(
            claims(json!({"aud": []})).check_audience(a, AudienceRule::AnyOf),
            Err(ClaimError::AudienceCount { len: 0 })
        );
        for bad in [
            json!(1),
            json!({"a": a}),
            json!([1]),
            json!(null),
            json!([[a]]),
        ] {
            assert!(matches!(
                claims(json!({"aud": bad})).check_audience(a, AudienceRule::AnyOf),
                Err(ClaimError::WrongType { claim: "aud", .. })
            ));
        }
        assert!(matches!(
            claims(json!({"aud": "https://as.example/"})).check_audience(a, AudienceRule::Single),
            Err(ClaimError::AudienceMismatch { .. })
        ));
    }

    #[test]
    fn validity_reads_numeric_dates() {
        let now = UnixTime::from_secs(1000);
        let o = TimeOptions::new();
        assert!(
            claims(json!({"exp": 1300, "iat": 1000}))
                .check_validity(&o, now)
                .is_ok()
        );
        assert_eq!(
            claims(json!({"exp": "1300", "iat": 1000})).check_validity(&o, now),
            Err(ClaimError::Date(NumericDateError::NotANumber {
                claim: "exp"
            }))
        );
        assert_eq!(
            claims(json!({"iat": 1000})).check_validity(&o, now),
            Err(ClaimError::Missing { claim: "exp" })
        );
        assert_eq!(
            claims(json!({"exp": u64::MAX, "iat": 1000})).check_validity(&o, now),
            Err(ClaimError::Date(NumericDateError::OutOfRange {
                claim: "exp"
            }))
        );
    }
}
