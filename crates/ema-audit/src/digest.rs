//! SHA-256 digests: the record hash of the chain, the `jti` digest that links the IdP's trail to
//! the authorization server's, and the digest of a tool call's arguments.

use std::fmt;

use aws_lc_rs::digest::{self, SHA256};
use ema_jose::base64url;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The SHA-256 hash of one record: of the exact bytes of its line, without the line feed.
///
/// Written into the trail as unpadded base64url (43 characters). The first record of a trail
/// links to [`RecordHash::GENESIS`], 32 zero bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordHash([u8; 32]);

impl RecordHash {
    /// What the first record of a trail names as `prev`: 32 zero bytes
    /// (`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`).
    pub const GENESIS: Self = Self([0; 32]);

    /// The hash of a record line (`line` without its terminating `\n`).
    pub fn of_line(line: &[u8]) -> Self {
        let d = digest::digest(&SHA256, line);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Reads the base64url form; `None` unless it is canonical unpadded base64url of 32 bytes.
    pub fn from_base64url(text: &str) -> Option<Self> {
        let bytes = base64url::decode(text.as_bytes())?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Self)
    }

    /// The unpadded base64url form written into the trail.
    pub fn to_base64url(&self) -> String {
        base64url::encode(&self.0)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for RecordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64url())
    }
}

impl fmt::Debug for RecordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordHash({self})")
    }
}

/// Domain separation for [`JtiDigest`], so the digest cannot be mistaken for any other hash.
const JTI_LABEL: &[u8] = b"ema-audit jti v1\0";

/// A digest of a token's issuer and `jti`: what the trail records instead of an ID-JAG's `jti`.
///
/// `base64url(SHA-256("ema-audit jti v1" || 0x00 || u64be(len(issuer)) || issuer || jti))`, all
/// strings as UTF-8 bytes. The issuer's length prefix makes the input unambiguous whatever the
/// strings hold. The IdP computes it when it issues an ID-JAG, the authorization server when it
/// redeems one, from the same `iss` and `jti`: equal digests link the two trails without either
/// holding a replayable identifier.
///
/// ```
/// use ema_audit::JtiDigest;
///
/// let at_idp = JtiDigest::of("https://idp.example", "b2a7f0");
/// let at_as = JtiDigest::of("https://idp.example", "b2a7f0");
/// assert_eq!(at_idp, at_as);
/// assert_ne!(at_idp, JtiDigest::of("https://other.example", "b2a7f0"));
/// assert_eq!(at_idp.as_str().len(), 43);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JtiDigest(String);

impl JtiDigest {
    /// The digest of `jti` as issued by `issuer`.
    pub fn of(issuer: &str, jti: &str) -> Self {
        let mut ctx = digest::Context::new(&SHA256);
        ctx.update(JTI_LABEL);
        ctx.update(&(issuer.len() as u64).to_be_bytes());
        ctx.update(issuer.as_bytes());
        ctx.update(jti.as_bytes());
        Self(base64url::encode(ctx.finish().as_ref()))
    }

    /// The base64url text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JtiDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A digest of a tool call's arguments: `base64url(SHA-256(canonical JSON))` (see
/// [`canonical_json`]), so two calls with the same arguments in any member order digest alike.
///
/// ```
/// use ema_audit::ArgumentsDigest;
/// use serde_json::json;
///
/// let a = ArgumentsDigest::of(&json!({"sql": "select 1", "db": "main"}));
/// let b = ArgumentsDigest::of(&json!({"db": "main", "sql": "select 1"}));
/// assert_eq!(a, b);
/// assert_ne!(a, ArgumentsDigest::of(&json!({"db": "main", "sql": "select 2"})));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ArgumentsDigest(String);

impl ArgumentsDigest {
    /// The digest of `arguments`.
    pub fn of(arguments: &Value) -> Self {
        let d = digest::digest(&SHA256, canonical_json(arguments).as_bytes());
        Self(base64url::encode(d.as_ref()))
    }

    /// The base64url text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArgumentsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical JSON text that [`ArgumentsDigest`] hashes: no whitespace, object members
/// sorted by the UTF-8 bytes of their names, strings escaped as `serde_json` writes them
/// (`"`, `\` and control characters escaped, everything else literal UTF-8), numbers as
/// `serde_json` prints them. Any nesting depth is handled without recursion.
///
/// ```
/// use serde_json::json;
/// assert_eq!(
///     ema_audit::canonical_json(&json!({"b": [1, {"d": null, "c": "x"}], "a": true})),
///     r#"{"a":true,"b":[1,{"c":"x","d":null}]}"#,
/// );
/// ```
pub fn canonical_json(value: &Value) -> String {
    enum Step<'a> {
        Value(&'a Value),
        Key(&'a str),
        Text(&'static str),
    }
    let mut out = String::new();
    let mut stack = vec![Step::Value(value)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Text(t) => out.push_str(t),
            Step::Key(k) => push_string(&mut out, k),
            Step::Value(v) => match v {
                Value::Null => out.push_str("null"),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Number(n) => out.push_str(&n.to_string()),
                Value::String(s) => push_string(&mut out, s),
                Value::Array(items) => {
                    out.push('[');
                    stack.push(Step::Text("]"));
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push(Step::Value(item));
                        if i > 0 {
                            stack.push(Step::Text(","));
                        }
                    }
                }
                Value::Object(map) => {
                    out.push('{');
                    stack.push(Step::Text("}"));
                    let mut members: Vec<(&String, &Value)> = map.iter().collect();
                    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    for (i, (name, item)) in members.into_iter().enumerate().rev() {
                        stack.push(Step::Value(item));
                        stack.push(Step::Text(":"));
                        stack.push(Step::Key(name));
                        if i > 0 {
                            stack.push(Step::Text(","));
                        }
                    }
                }
            },
        }
    }
    out
}

fn push_string(out: &mut String, s: &str) {
    // Serializing a `str` cannot fail; the fallback keeps the function total all the same.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_hash_round_trips_and_refuses_other_lengths() {
        let h = RecordHash::of_line(b"abc");
        assert_eq!(RecordHash::from_base64url(&h.to_base64url()), Some(h));
        assert_eq!(
            h.to_base64url(),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        assert!(RecordHash::from_base64url("AAAA").is_none());
        assert!(RecordHash::from_base64url(&format!("{h}=")).is_none());
        assert_eq!(
            RecordHash::GENESIS.to_base64url(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
    }

    #[test]
    fn jti_digest_separates_issuer_and_jti() {
        // Without the length prefix these two would hash the same bytes.
        assert_ne!(JtiDigest::of("ab", "c"), JtiDigest::of("a", "bc"));
        assert_eq!(JtiDigest::of("a", "bc"), JtiDigest::of("a", "bc"));
        let expected = {
            let mut input = b"ema-audit jti v1\0".to_vec();
            input.extend_from_slice(&1u64.to_be_bytes());
            input.extend_from_slice(b"abc");
            base64url::encode(digest::digest(&SHA256, &input).as_ref())
        };
        assert_eq!(JtiDigest::of("a", "bc").as_str(), expected);
    }

    #[test]
    fn canonical_json_sorts_escapes_and_survives_depth() {
        assert_eq!(
            canonical_json(&json!({"é": 1, "z": 2, "a": "q\"\n"})),
            "{\"a\":\"q\\\"\\n\",\"z\":2,\"é\":1}"
        );
        assert_eq!(canonical_json(&json!([])), "[]");
        assert_eq!(canonical_json(&json!({})), "{}");
        assert_eq!(canonical_json(&json!(1.5)), "1.5");
        let mut deep = json!(0);
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        let text = canonical_json(&deep);
        assert_eq!(text.len(), 20_001);
        // Dropping a 10 000-deep value recurses in serde_json; take it apart iteratively.
        let mut v = deep;
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn arguments_digest_ignores_member_order_only() {
        let a = ArgumentsDigest::of(&json!({"x": {"b": 1, "a": [1, 2]}}));
        let b = ArgumentsDigest::of(&json!({"x": {"a": [1, 2], "b": 1}}));
        let c = ArgumentsDigest::of(&json!({"x": {"a": [2, 1], "b": 1}}));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
