//! Strict JSON for JOSE headers and claim sets.
//!
//! `serde_json` does the lexing (and already refuses lone surrogates, invalid escapes and
//! trailing data); this module adds what it lets through: duplicate member names at any depth
//! and unbounded nesting. The result is an ordinary `serde_json` object, built once.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Why a JSON document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The bytes are not valid UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// The text is not JSON (syntax, lone surrogate, invalid escape, number out of range).
    #[error("invalid JSON at line {line} column {column}")]
    Syntax {
        /// 1-based line of the failure.
        line: usize,
        /// 1-based column of the failure.
        column: usize,
    },
    /// A member name appears twice in one object.
    #[error("duplicate member `{name}`")]
    DuplicateMember {
        /// The repeated name.
        name: String,
    },
    /// Arrays and objects nest deeper than allowed.
    #[error("nesting deeper than {max}")]
    TooDeep {
        /// The configured limit.
        max: usize,
    },
    /// The top-level value is not an object.
    #[error("top-level value is not a JSON object")]
    NotAnObject,
}

/// Parses `bytes` as one JSON object with unique member names and at most `max_depth` levels of
/// nesting (the top-level object is level 1).
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::NotUtf8)?;
    let issue = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Seed {
        depth_left: max_depth,
        max_depth,
        issue: &issue,
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JsonError::NotAnObject),
        Err(e) => Err(issue.take().unwrap_or(JsonError::Syntax {
            line: e.line(),
            column: e.column(),
        })),
    }
}

#[derive(Clone, Copy)]
struct Seed<'c> {
    depth_left: usize,
    max_depth: usize,
    issue: &'c Cell<Option<JsonError>>,
}

impl Seed<'_> {
    /// The seed for the children of a container being opened here.
    fn nested<E: serde::de::Error>(self) -> Result<Self, E> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(Self { depth_left, ..self }),
            None => Err(self.fail(JsonError::TooDeep {
                max: self.max_depth,
            })),
        }
    }

    fn fail<E: serde::de::Error>(self, issue: JsonError) -> E {
        let msg = issue.to_string();
        self.issue.set(Some(issue));
        E::custom(msg)
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(inner)?;
            // One search of the map per member, not two (`contains_key` then `insert`).
            match out.entry(key) {
                Entry::Occupied(entry) => {
                    let name = entry.key().clone();
                    return Err(self.fail(JsonError::DuplicateMember { name }));
                }
                Entry::Vacant(entry) => {
                    entry.insert(value);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let m = parse_object(br#"{"a":1,"b":[true,null,"x"],"c":{"d":-1.5}}"#, 8).unwrap();
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#, 8),
            Err(JsonError::DuplicateMember { name: "a".into() })
        );
        assert_eq!(
            parse_object(br#"{"a":{"b":[{"c":1,"c":1}]}}"#, 8),
            Err(JsonError::DuplicateMember { name: "c".into() })
        );
        // Escapes are decoded before comparison: "\u0061" is "a".
        assert_eq!(
            parse_object(br#"{"a":1,"\u0061":2}"#, 8),
            Err(JsonError::DuplicateMember { name: "a".into() })
        );
    }

    #[test]
    fn bounds_depth() {
        assert!(parse_object(br#"{"a":{"b":{}}}"#, 3).is_ok());
        assert_eq!(
            parse_object(br#"{"a":{"b":{"c":{}}}}"#, 3),
            Err(JsonError::TooDeep { max: 3 })
        );
        assert_eq!(
            parse_object(br#"{"a":[[[]]]}"#, 3),
            Err(JsonError::TooDeep { max: 3 })
        );
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            parse_object(deep.as_bytes(), 32),
            Err(JsonError::TooDeep { max: 32 })
        );
    }

    #[test]
    fn rejects_non_objects_bad_text_and_surrogates() {
        assert_eq!(parse_object(b"[1]", 8), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"\"x\"", 8), Err(JsonError::NotAnObject));
        assert_eq!(
            parse_object(b"{\"a\":\"\xff\"}", 8),
            Err(JsonError::NotUtf8)
        );
        assert!(matches!(
            parse_object(br#"{"a":"\ud800"}"#, 8),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(br#"{"a":"\udc00\ud800"}"#, 8),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(br#"{"a":1} x"#, 8),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(br#"{"a":1,}"#, 8),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(br#"{"a":1e999}"#, 8),
            Err(JsonError::Syntax { .. })
        ));
        // A proper surrogate pair is fine.
        assert!(parse_object(br#"{"a":"\ud83d\ude00"}"#, 8).is_ok());
    }
}
