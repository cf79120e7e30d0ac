//! Typed reads of a parsed claim set: strings, NumericDates, issuer and audience (D-7, D-12,
//! D-13).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::json::{Field, JsonObject};
use crate::time::{self, NumericDateError, TimeError, TimeOptions, UnixTime, Validity};

/// A JWT claim set as parsed once from the token (a strict JSON object).
///
/// String and NumericDate claims are read in place from the token's JSON text; a
/// `serde_json::Value` is built only for nested claims, or when [`Claims::get`],
/// [`Claims::iter`] or [`Claims::as_object`] asks for one.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(JsonObject);

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
    /// A string claim that must carry a value is the empty string (D-25).
    #[error("`{claim}` is empty")]
    Empty {
        /// The claim name (`parent.member` for a member of an object claim).
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
    pub(crate) fn from_json(object: JsonObject) -> Self {
        Self(object)
    }

    /// Wraps an object built elsewhere (for signing or tests).
    pub fn from_object(map: Map<String, Value>) -> Self {
        Self(JsonObject::from_map(map))
    }

    /// The claim set as a JSON object. Claims parsed from a token are indexed, not held as a
    /// map: the map is built on the first call (the typed readers below never need it).
    pub fn as_object(&self) -> &Map<String, Value> {
        self.0.as_map()
    }

    /// One claim's raw value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Whether the claim is present.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// How many claims there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the claim set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// The claims in the order the token carries them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter()
    }

    /// An optional string claim; present but not a string is an error.
    pub fn string(&self, claim: &'static str) -> Result<Option<&str>, ClaimError> {
        match self.0.field(claim) {
            None => Ok(None),
            Some(Field::Str(s)) => Ok(Some(s)),
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

    /// A required string claim that must not be empty (D-25: `iss`, `sub`, `client_id`, `jti`
    /// of an access token, and the same claims of an ID-JAG). Absent is
    /// [`ClaimError::Missing`], another JSON type [`ClaimError::WrongType`], `""`
    /// [`ClaimError::Empty`].
    pub fn non_empty_string(&self, claim: &'static str) -> Result<&str, ClaimError> {
        match self.required_string(claim)? {
            "" => Err(ClaimError::Empty { claim }),
            s => Ok(s),
        }
    }

    /// An optional NumericDate claim (a JSON number, D-7).
    pub fn numeric_date(&self, claim: &'static str) -> Result<Option<UnixTime>, ClaimError> {
        match self.0.field(claim) {
            None => Ok(None),
            Some(Field::Number(n)) => Ok(Some(time::numeric_date_of(claim, n)?)),
            Some(_) => Err(NumericDateError::NotANumber { claim }.into()),
        }
    }

    /// An optional claim that must be an array of strings.
    pub fn string_array(&self, claim: &'static str) -> Result<Option<Vec<&str>>, ClaimError> {
        let wrong = ClaimError::WrongType {
            claim,
            expected: "an array of strings",
        };
        match self.0.field(claim) {
            None => Ok(None),
            Some(Field::Other(Value::Array(items))) => items
                .iter()
                .map(|v| v.as_str().ok_or_else(|| wrong.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(wrong),
        }
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
        match self.0.field("aud") {
            None => Err(ClaimError::Missing { claim: "aud" }),
            Some(Field::Str(s)) => Ok(vec![s]),
            Some(Field::Other(Value::Array(items))) => {
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
        // The common shape, a single string, is compared without collecting anything.
        if let Some(Field::Str(s)) = self.0.field("aud") {
            return if s == expected {
                Ok(())
            } else {
                Err(ClaimError::AudienceMismatch {
                    expected: expected.to_owned(),
                })
            };
        }
        if self.audience(rule)?.contains(&expected) {
            Ok(())
        } else {
            Err(ClaimError::AudienceMismatch {
                expected: expected.to_owned(),
            })
        }
    }

    /// Deserializes the claim set into a typed view, straight from the token's JSON text (which
    /// was already checked strictly; nothing is read twice from the token itself).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.text())
    }

    /// Takes the claim set as a JSON object.
    pub fn into_object(self) -> Map<String, Value> {
        self.0.into_map()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        // Through the token parser's index, as claims of a real token are read.
        Claims::from_json(JsonObject::parse(v.to_string().into_bytes(), 16).unwrap())
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
    fn d25_non_empty_string() {
        let c = claims(json!({"sub": "u1", "jti": "", "iss": 7, "aud": null}));
        assert_eq!(c.non_empty_string("sub"), Ok("u1"));
        assert_eq!(
            c.non_empty_string("jti"),
            Err(ClaimError::Empty { claim: "jti" })
        );
        assert_eq!(
            c.non_empty_string("iss"),
            Err(ClaimError::WrongType {
                claim: "iss",
                expected: "a string"
            })
        );
        assert!(matches!(
            c.non_empty_string("aud"),
            Err(ClaimError::WrongType { claim: "aud", .. })
        ));
        assert_eq!(
            c.non_empty_string("client_id"),
            Err(ClaimError::Missing { claim: "client_id" })
        );
        // `required_string` itself still admits the empty string.
        assert_eq!(c.required_string("jti"), Ok(""));
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
