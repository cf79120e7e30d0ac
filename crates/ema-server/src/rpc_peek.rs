//! A borrowing look at a JSON-RPC body: which methods and tools does it call?
//!
//! The bearer layer needs only `method`, whether there is an `id`, and `params.name` of each
//! message to know the scopes it needs (RS-6); building a `serde_json::Value` of the whole body
//! for that cost more than the rest of a cached-token check. This reader borrows the strings from
//! the body in one pass and skips everything else. A message naming `method`, `params` or
//! `params.name` twice is ambiguous (parsers differ on which one wins) and is reported as such,
//! so that the layer refuses it rather than guess what the server behind it will run.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The visitor methods for JSON numbers, booleans and `null`, all answering `$value`.
macro_rules! numbers_are {
    ($value:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// [`numbers_are!`] plus strings.
macro_rules! scalars_are {
    ($value:expr) => {
        numbers_are!($value);
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// One JSON-RPC message as the bearer layer sees it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Call<'a> {
    /// `method`, when it is a string (requests and notifications).
    pub(crate) method: Option<Cow<'a, str>>,
    /// Whether the message has an `id` member (a request or a response, not a notification).
    pub(crate) has_id: bool,
    /// `params.name` of a `tools/call`.
    pub(crate) tool: Option<Cow<'a, str>>,
    /// The `id` itself (read by [`calls_with_arguments`] only).
    pub(crate) id: Option<Value>,
    /// `params.arguments` of a `tools/call` (read by [`calls_with_arguments`] only).
    pub(crate) arguments: Arguments,
}

/// `params.arguments` of a `tools/call`.
#[derive(Debug, Default, PartialEq)]
pub(crate) enum Arguments {
    /// Absent or `null` (or not read).
    #[default]
    Absent,
    /// An object.
    Object(Map<String, Value>),
    /// Another JSON value: not arguments MCP knows.
    NotObject,
}

/// What a body says about the calls it makes.
#[derive(Debug, PartialEq)]
pub(crate) enum Messages<'a> {
    /// Its messages, in order (objects only; other batch elements call nothing).
    Calls(Vec<Call<'a>>),
    /// Not JSON: the server behind will answer with a JSON-RPC parse error, no tool runs.
    NotJson,
    /// A member that decides which tool runs appears twice in one message.
    Ambiguous,
}

/// Reads the methods and tool names of the messages in a JSON-RPC message or batch.
pub(crate) fn calls(body: &[u8]) -> Messages<'_> {
    read(body, false).0
}

/// As [`calls`], also reading each message's `id` and each `tools/call`'s arguments, and
/// whether the body is a batch. A name repeated anywhere inside the arguments (at any depth) is
/// ambiguous here, as is a repeated `id` or `arguments`: what the guard authorizes must be what
/// the server runs, whichever of the duplicates its parser keeps.
pub(crate) fn calls_with_arguments(body: &[u8]) -> (Messages<'_>, bool) {
    read(body, true)
}

fn read(body: &[u8], full: bool) -> (Messages<'_>, bool) {
    // JSON text is UTF-8 (RFC 8259 §8.1), also in the parts skipped below.
    let Ok(body) = std::str::from_utf8(body) else {
        return (Messages::NotJson, false);
    };
    let peek = Peek {
        ambiguous: Cell::new(false),
        full,
    };
    let mut de = serde_json::Deserializer::from_str(body);
    let mut names = Vec::new();
    let read = Body {
        names: &mut names,
        peek: &peek,
    }
    .deserialize(&mut de)
    .and_then(|batch| de.end().map(|()| batch));
    match read {
        Ok(batch) => (Messages::Calls(names), batch),
        Err(_) if peek.ambiguous.get() => (Messages::Ambiguous, false),
        Err(_) => (Messages::NotJson, false),
    }
}

/// What one read looks for, and whether it met a duplicate that decides something.
struct Peek {
    ambiguous: Cell<bool>,
    /// Read ids and arguments too.
    full: bool,
}

impl Peek {
    fn twice<E: serde::de::Error>(&self, member: &str) -> E {
        self.ambiguous.set(true);
        E::custom(format_args!("`{member}` appears twice"))
    }
}

/// The whole body: one message or a batch (the value says whether it is a batch).
struct Body<'n, 'a, 'c> {
    names: &'n mut Vec<Call<'a>>,
    peek: &'c Peek,
}

impl<'de> DeserializeSeed<'de> for Body<'_, 'de, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Body<'_, 'de, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message or batch")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        let message = Message { peek: self.peek }.visit_map(map)?;
        self.names.extend(message);
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let peek = self.peek;
        while let Some(message) = seq.next_element_seed(MessageSeed { peek })? {
            self.names.extend(message);
        }
        Ok(true)
    }

    // Any other JSON value calls no tool.
    scalars_are!(false);
}

/// One element of a batch: a message if it is an object, nothing otherwise.
struct MessageSeed<'c> {
    peek: &'c Peek,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = Option<Call<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(Message { peek: self.peek })
    }
}

/// A message object: its method, whether it has an `id`, and the tool a `tools/call` names.
struct Message<'c> {
    peek: &'c Peek,
}

impl<'de> Visitor<'de> for Message<'_> {
    type Value = Option<Call<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut method: Option<Option<Cow<'de, str>>> = None;
        let mut params: Option<Params<'de>> = None;
        let mut has_id = false;
        let mut id = None;
        while let Some(key) = map.next_key_seed(Text)? {
            match key.as_deref() {
                Some("id") if self.peek.full => {
                    if has_id {
                        return Err(self.peek.twice("id"));
                    }
                    has_id = true;
                    id = Some(map.next_value_seed(Strict { peek: self.peek })?);
                }
                Some("id") => {
                    has_id = true;
                    map.next_value::<IgnoredAny>()?;
                }
                Some("method") => {
                    if method.is_some() {
                        return Err(self.peek.twice("method"));
                    }
                    method = Some(map.next_value_seed(Text)?);
                }
                Some("params") => {
                    if params.is_some() {
                        return Err(self.peek.twice("params"));
                    }
                    params = Some(map.next_value_seed(ParamsSeed { peek: self.peek })?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let method = method.flatten();
        let (tool, arguments) = match params {
            Some(params) if method.as_deref() == Some("tools/call") => {
                (params.name, params.arguments)
            }
            _ => (None, Arguments::Absent),
        };
        Ok(Some(Call {
            method,
            has_id,
            tool,
            id,
            arguments,
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    scalars_are!(None);
}

/// What `params` says: `name` when it is a string, and `arguments` (in a full read).
#[derive(Default)]
struct Params<'a> {
    name: Option<Cow<'a, str>>,
    arguments: Arguments,
}

/// `params`: its `name` and `arguments` when it is an object.
struct ParamsSeed<'c> {
    peek: &'c Peek,
}

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_> {
    type Value = Params<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_> {
    type Value = Params<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON-RPC params")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut name: Option<Option<Cow<'de, str>>> = None;
        let mut arguments: Option<Arguments> = None;
        while let Some(key) = map.next_key_seed(Text)? {
            match key.as_deref() {
                Some("name") => {
                    if name.is_some() {
                        return Err(self.peek.twice("params.name"));
                    }
                    name = Some(map.next_value_seed(Text)?);
                }
                Some("arguments") if self.peek.full => {
                    if arguments.is_some() {
                        return Err(self.peek.twice("params.arguments"));
                    }
                    arguments = Some(match map.next_value_seed(Strict { peek: self.peek })? {
                        Value::Null => Arguments::Absent,
                        Value::Object(object) => Arguments::Object(object),
                        _ => Arguments::NotObject,
                    });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Params {
            name: name.flatten(),
            arguments: arguments.unwrap_or_default(),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Params::default())
    }
    scalars_are!(Params::default());
}

/// A JSON value in which no object names a member twice (a duplicate is ambiguous).
struct Strict<'c> {
    peek: &'c Peek,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity: a finite number always converts.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict { peek: self.peek })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Strict { peek: self.peek })?;
            if object.contains_key(&key) {
                return Err(self.peek.twice("a member of the arguments"));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A string (borrowed from the body when it has no escapes), or `None` for any other value.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    numbers_are!(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peek(body: &str) -> Vec<Call<'_>> {
        match calls(body.as_bytes()) {
            Messages::Calls(calls) => calls,
            other => panic!("{body}: {other:?}"),
        }
    }

    fn named(body: &str) -> Vec<String> {
        peek(body)
            .into_iter()
            .filter_map(|c| c.tool.map(Cow::into_owned))
            .collect()
    }

    fn methods(body: &str) -> Vec<(Option<String>, bool)> {
        peek(body)
            .into_iter()
            .map(|c| (c.method.map(Cow::into_owned), c.has_id))
            .collect()
    }

    #[test]
    fn reads_methods_and_ids_in_the_same_pass() {
        let m = |s: &str| Some(s.to_owned());
        assert_eq!(
            methods(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#),
            [(m("initialize"), true)]
        );
        assert_eq!(
            methods(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            [(m("notifications/initialized"), false)]
        );
        // A response has an id and no method; a non-string method is no method.
        assert_eq!(
            methods(r#"{"jsonrpc":"2.0","id":null,"result":{}}"#),
            [(None, true)]
        );
        assert_eq!(methods(r#"{"method":7,"id":2}"#), [(None, true)]);
        assert_eq!(
            methods(r#"[{"id":1,"method":"ping"},2,{"method":"tools\/list","id":"x"}]"#),
            [(m("ping"), true), (m("tools/list"), true)]
        );
    }

    #[test]
    fn finds_the_tools_of_calls_only() {
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_task","arguments":{"name":"x","title":"y"}}}"#;
        assert_eq!(named(call), ["add_task"]);
        // Member order does not matter; escapes are decoded as the server will decode them.
        assert_eq!(
            named(r#"{"params":{"arguments":{},"name":"add\u005ftask"},"method":"tools\/call"}"#),
            ["add_task"]
        );
        assert!(named(r#"{"method":"tools/list","params":{"name":"add_task"}}"#).is_empty());
        assert!(named(r#"{"method":"tools/call","params":[1,2]}"#).is_empty());
        assert!(named(r#"{"method":"tools/call","params":{"name":7}}"#).is_empty());
        assert!(named(r#"{"method":7,"params":{"name":"add_task"}}"#).is_empty());
        assert!(named(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).is_empty());
        assert!(named("[]").is_empty());
        assert!(named("1").is_empty());
        let batch = format!(r#"[{call},{{"method":"ping"}},3,{call}]"#);
        assert_eq!(named(&batch), ["add_task", "add_task"]);
    }

    #[test]
    fn duplicate_deciding_members_are_ambiguous() {
        for body in [
            r#"{"method":"tools/list","method":"tools/call","params":{"name":"add_task"}}"#,
            r#"{"method":"tools/call","params":{"name":"whoami"},"params":{"name":"add_task"}}"#,
            r#"{"method":"tools/call","params":{"name":"whoami","name":"add_task"}}"#,
            r#"[{"method":"ping"},{"method":"tools/call","method":"tools/call"}]"#,
        ] {
            assert_eq!(calls(body.as_bytes()), Messages::Ambiguous, "{body}");
        }
        // Duplicates elsewhere decide nothing here; the server behind judges them.
        assert_eq!(
            named(r#"{"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#),
            ["a"]
        );
    }

    #[test]
    fn bytes_that_are_not_json_are_said_so() {
        for body in ["", "{", "{\"method\":", "nope", "{\"a\":1} x", "\u{0}"] {
            assert_eq!(calls(body.as_bytes()), Messages::NotJson, "{body:?}");
        }
        assert_eq!(calls(b"{\"a\":\"\xff\"}"), Messages::NotJson);
    }

    #[test]
    fn a_full_read_takes_ids_arguments_and_batches() {
        let body = r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"del","arguments":{"id":"t-1","deep":{"x":[1,{"y":null}]}}}}"#;
        let (Messages::Calls(one), false) = calls_with_arguments(body.as_bytes()) else {
            panic!("{body}");
        };
        let [call] = one.as_slice() else {
            panic!("{one:?}")
        };
        assert_eq!(call.id, Some(Value::from("a-1")));
        assert_eq!(call.tool.as_deref(), Some("del"));
        let Arguments::Object(args) = &call.arguments else {
            panic!("{call:?}")
        };
        assert_eq!(
            Value::Object(args.clone()),
            serde_json::json!({"id":"t-1","deep":{"x":[1,{"y":null}]}})
        );
        // Absent, null and non-object arguments; a batch says so.
        let (Messages::Calls(batch), true) = calls_with_arguments(
            br#"[{"id":1,"method":"tools/call","params":{"name":"a"}},{"id":2,"method":"tools/call","params":{"name":"a","arguments":null}},{"id":3,"method":"tools/call","params":{"name":"a","arguments":[1]}},{"id":4,"method":"tools/list","params":{"arguments":{}}}]"#,
        ) else {
            panic!("batch")
        };
        let args: Vec<&Arguments> = batch.iter().map(|c| &c.arguments).collect();
        assert_eq!(
            args,
            [
                &Arguments::Absent,
                &Arguments::Absent,
                &Arguments::NotObject,
                &Arguments::Absent
            ]
        );
        // The bearer layer's read leaves them alone.
        let Messages::Calls(light) = calls(body.as_bytes()) else {
            panic!("{body}")
        };
        assert_eq!(
            (light[0].id.as_ref(), &light[0].arguments),
            (None, &Arguments::Absent)
        );
    }

    #[test]
    fn a_full_read_refuses_any_duplicate_in_the_arguments_or_id() {
        for body in [
            r#"{"id":1,"method":"tools/call","params":{"name":"a","arguments":{"p":"/ok","p":"/etc"}}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a","arguments":{"q":[{"x":1,"x":2}]}}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a","arguments":{},"arguments":{}}}"#,
            r#"{"id":1,"id":2,"method":"tools/call","params":{"name":"a"}}"#,
        ] {
            assert_eq!(
                calls_with_arguments(body.as_bytes()).0,
                Messages::Ambiguous,
                "{body}"
            );
            // The bearer layer's read does not care: the tool is the same.
            assert!(
                matches!(calls(body.as_bytes()), Messages::Calls(_)),
                "{body}"
            );
        }
        // Control: the same names at different places are fine.
        let body = r#"{"id":1,"method":"tools/call","params":{"name":"a","arguments":{"p":{"p":1},"q":[{"p":2}]}}}"#;
        assert!(matches!(
            calls_with_arguments(body.as_bytes()).0,
            Messages::Calls(_)
        ));
    }
}
