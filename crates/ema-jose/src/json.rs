//! Strict JSON for JOSE headers and claim sets.
//!
//! `serde_json` does the lexing (and already refuses lone surrogates, invalid escapes and
//! trailing data); this module adds what it lets through: duplicate member names at any depth
//! and unbounded nesting.
//!
//! Two shapes of result: [`parse_object`] builds an ordinary `serde_json` object, and
//! [`JsonObject`] (what tokens use) keeps the text and an index of its top-level members, so that
//! reading `iss` or `exp` touches no allocator: string members are slices of the text, numbers
//! are stored inline, and a `serde_json::Value` is built only for nested values and on request.
//! Both enforce the same rules; the second is the hot path of every verification.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

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

/// A strict JSON object kept as its text plus an index of its top-level members, in document
/// order. Member names are unique (checked while indexing, as at every depth below).
#[derive(Clone)]
pub(crate) struct JsonObject {
    text: String,
    members: Vec<Member>,
    /// The string and number members as `serde_json` values, index for index with `members`
    /// (`Null` at the others), built on the first request for one.
    scalars: OnceLock<Box<[Value]>>,
    /// The nested members as `serde_json` values, in order, built on the first request for one.
    nested: OnceLock<Box<[Value]>>,
    /// The whole object as a `serde_json` map, built on first request only.
    map: OnceLock<Map<String, Value>>,
    /// The member names and string values that had escapes, decoded (see [`Text`]).
    decoded: String,
    /// The values of an object built elsewhere ([`JsonObject::from_map`]).
    given: Vec<Value>,
}

#[derive(Clone)]
struct Member {
    name: Text,
    /// Length and first bytes of the name: most lookups are decided without comparing text.
    key: NameKey,
    slot: Slot,
}

/// A string of the object: a range of its text (no escapes), or of its `decoded` text (the
/// strings that had escapes, decoded one after the other) when [`Text::DECODED`] is set in
/// `start`. Eight bytes, so that the parser's results stay in registers.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Text {
    start: u32,
    end: u32,
}

impl Text {
    /// The flag for a range of the decoded text.
    const DECODED: u32 = 1 << 31;

    /// A range of the text, or `None` past what eight bytes can address (2 GiB).
    fn span(start: usize, end: usize) -> Option<Self> {
        let start = u32::try_from(start)
            .ok()
            .filter(|s| s & Self::DECODED == 0)?;
        let end = u32::try_from(end).ok().filter(|e| e & Self::DECODED == 0)?;
        Some(Self { start, end })
    }

    /// A range of the decoded text.
    fn decoded(start: usize, end: usize) -> Option<Self> {
        Self::span(start, end).map(|t| Self {
            start: t.start | Self::DECODED,
            ..t
        })
    }

    /// The string in `text` or `decoded`.
    fn of<'t>(self, text: &'t str, decoded: &'t str) -> &'t str {
        let (source, start) = if self.start & Self::DECODED == 0 {
            (text, self.start)
        } else {
            (decoded, self.start & !Self::DECODED)
        };
        source
            .get(start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

#[derive(Clone)]
enum Slot {
    Str(Text),
    Number(Number),
    /// An array or object: checked while indexing, built on the first request for one (the
    /// text between `start` and `end`).
    Nested {
        start: usize,
        end: usize,
    },
    Bool(bool),
    Null,
    /// A member of an object built elsewhere: its value in [`JsonObject::given`].
    Given(usize),
}

/// One top-level member, as [`JsonObject::field`] reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'a> {
    Str(&'a str),
    Number(&'a Number),
    Other(&'a Value),
}

impl JsonObject {
    /// Indexes `bytes` as one JSON object with unique member names (at every depth) and at most
    /// `max_depth` levels of nesting: exactly the rules of [`parse_object`], with the same
    /// errors.
    pub(crate) fn parse(bytes: Vec<u8>, max_depth: usize) -> Result<Self, JsonError> {
        let text = String::from_utf8(bytes).map_err(|_| JsonError::NotUtf8)?;
        if text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .as_bytes()
            .first()
            != Some(&b'{')
        {
            // Not an object (or not JSON): the general parser names the failure exactly.
            return Err(parse_object(text.as_bytes(), max_depth)
                .err()
                .unwrap_or(JsonError::NotAnObject));
        }
        let (members, decoded) = Parser::new(&text, max_depth).top()?;
        Ok(Self {
            text,
            members,
            scalars: OnceLock::new(),
            nested: OnceLock::new(),
            map: OnceLock::new(),
            decoded,
            given: Vec::new(),
        })
    }

    /// Wraps a map built elsewhere (signing, tests): every member is held as its `Value`.
    pub(crate) fn from_map(map: Map<String, Value>) -> Self {
        let text = serde_json::to_string(&map).unwrap_or_default();
        let mut decoded = String::new();
        let given: Vec<Value> = map.values().cloned().collect();
        let members = map
            .keys()
            .enumerate()
            .map(|(i, name)| {
                let start = decoded.len();
                decoded.push_str(name);
                Member {
                    key: NameKey::of(name),
                    name: Text::decoded(start, decoded.len()).unwrap_or(Text { start: 0, end: 0 }),
                    slot: Slot::Given(i),
                }
            })
            .collect();
        Self {
            text,
            members,
            scalars: OnceLock::new(),
            nested: OnceLock::new(),
            map: OnceLock::from(map),
            decoded,
            given,
        }
    }

    /// The JSON text the object was read from.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    fn str_of(&self, text: &Text) -> &str {
        text.of(&self.text, &self.decoded)
    }

    #[inline]
    fn member(&self, name: &str) -> Option<(usize, &Member)> {
        let key = NameKey::of(name);
        self.members
            .iter()
            .enumerate()
            .find(|(_, m)| m.key == key && (key.is_whole() || self.str_of(&m.name) == name))
    }

    /// The member names in document order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| self.str_of(&m.name))
    }

    /// Whether a member of this name exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.member(name).is_some()
    }

    /// How many members there are.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// One member, without building a `Value` for strings and numbers.
    #[inline]
    pub(crate) fn field(&self, name: &str) -> Option<Field<'_>> {
        self.member(name).map(|(i, m)| self.field_of(i, m))
    }

    fn field_of<'a>(&'a self, index: usize, m: &'a Member) -> Field<'a> {
        match &m.slot {
            Slot::Str(s) => Field::Str(self.str_of(s)),
            Slot::Number(n) => Field::Number(n),
            Slot::Nested { .. } => Field::Other(self.value_of(index, m)),
            Slot::Bool(_) | Slot::Null => Field::Other(self.value_of(index, m)),
            Slot::Given(i) => match self.given.get(*i) {
                Some(Value::String(s)) => Field::Str(s),
                Some(Value::Number(n)) => Field::Number(n),
                Some(v) => Field::Other(v),
                None => Field::Other(&Value::Null),
            },
        }
    }

    fn value_of<'a>(&'a self, index: usize, m: &'a Member) -> &'a Value {
        static NULL: Value = Value::Null;
        static TRUE: Value = Value::Bool(true);
        static FALSE: Value = Value::Bool(false);
        let is_nested = |m: &Member| matches!(m.slot, Slot::Nested { .. });
        match &m.slot {
            Slot::Bool(true) => &TRUE,
            Slot::Bool(false) => &FALSE,
            Slot::Null => &NULL,
            Slot::Given(i) => self.given.get(*i).unwrap_or(&NULL),
            Slot::Nested { .. } => {
                let nested = self.nested.get_or_init(|| {
                    self.members
                        .iter()
                        .filter_map(|m| match m.slot {
                            Slot::Nested { start, end } => Some(self.build(start, end)),
                            _ => None,
                        })
                        .collect()
                });
                let before = self
                    .members
                    .get(..index)
                    .map_or(0, |ms| ms.iter().filter(|m| is_nested(m)).count());
                nested.get(before).unwrap_or(&NULL)
            }
            Slot::Str(_) | Slot::Number(_) => {
                let scalars = self.scalars.get_or_init(|| {
                    self.members
                        .iter()
                        .map(|m| match &m.slot {
                            Slot::Str(s) => Value::String(self.str_of(s).to_owned()),
                            Slot::Number(n) => Value::Number(n.clone()),
                            _ => Value::Null,
                        })
                        .collect()
                });
                scalars.get(index).unwrap_or(&NULL)
            }
        }
    }

    /// Builds a nested value from its text, which the index already checked.
    fn build(&self, start: usize, end: usize) -> Value {
        let text = self.text.get(start..end).unwrap_or_default();
        Parser::new(text, usize::MAX).value().unwrap_or(Value::Null)
    }

    /// One member's value (string and number values are built on the first request).
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.member(name).map(|(i, m)| self.value_of(i, m))
    }

    /// The members in document order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| (self.str_of(&m.name), self.value_of(i, m)))
    }

    /// The whole object as a map (built on first request).
    pub(crate) fn as_map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| {
            self.iter()
                .map(|(name, value)| (name.to_owned(), value.clone()))
                .collect()
        })
    }

    /// Takes the whole object as a map.
    pub(crate) fn into_map(mut self) -> Map<String, Value> {
        match self.map.take() {
            Some(map) => map,
            None => self.as_map().clone(),
        }
    }
}

impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.as_map() == other.as_map()
    }
}

impl fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A member name's length and its first eight bytes: equal keys of names of at most eight bytes
/// mean equal names, and unequal keys always mean different names.
#[derive(Clone, Copy, PartialEq, Eq)]
struct NameKey {
    len: usize,
    prefix: u64,
}

impl NameKey {
    #[inline]
    fn of(name: &str) -> Self {
        let bytes = name.as_bytes();
        // Built in a register: a byte array copied into a `u64` costs a store-forwarding stall
        // on every member of every token.
        let prefix = match bytes.first_chunk::<8>() {
            Some(head) => u64::from_le_bytes(*head),
            None => bytes
                .iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        };
        Self {
            len: name.len(),
            prefix,
        }
    }

    /// Whether the key holds the whole name.
    fn is_whole(self) -> bool {
        self.len <= 8
    }
}

/// `serde_json`'s own nesting limit, kept so that a caller raising `max_depth` cannot make the
/// recursive descent below exhaust the stack (and so that both parsers refuse the same inputs).
const RECURSION_LIMIT: usize = 127;

/// Top-level member names at which duplicate detection switches from a scan to a set, so that a
/// hostile object with thousands of members costs O(n log n), not O(n²).
const LINEAR_DUPLICATE_SCAN: usize = 32;

/// The member names of one nested object so far, to find a repeated one: a scan while there
/// are few, a set past [`LINEAR_DUPLICATE_SCAN`].
#[derive(Default)]
struct SeenNames {
    list: Vec<Text>,
    set: Option<BTreeSet<Box<str>>>,
}

impl SeenNames {
    /// Records `name`; true if it was already there.
    fn repeats(&mut self, parser: &Parser<'_>, name: Text) -> bool {
        let name_str = parser.text_of(&name);
        if let Some(set) = &mut self.set {
            return !set.insert(name_str.into());
        }
        if self.list.iter().any(|n| parser.text_of(n) == name_str) {
            return true;
        }
        self.list.push(name);
        if self.list.len() > LINEAR_DUPLICATE_SCAN {
            self.set = Some(self.list.iter().map(|n| parser.text_of(n).into()).collect());
            self.list.clear();
        }
        false
    }
}

/// A strict recursive-descent reader over text that is already valid UTF-8 (RFC 8259 grammar,
/// the same acceptance as `serde_json` plus this module's rules).
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
    /// Containers open right now (for [`RECURSION_LIMIT`]).
    open: usize,
    /// A failure other than a syntax error, for [`Parser::report`].
    error: Option<JsonError>,
    /// Strings that had escapes, decoded (see [`Text`]).
    decoded: String,
}

/// A failed step of the parser; what failed is in [`Parser::error`] or at [`Parser::pos`].
struct Fail;

type Step<T> = Result<T, Fail>;

impl<'a> Parser<'a> {
    fn new(text: &'a str, max_depth: usize) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            max_depth,
            open: 0,
            error: None,
            decoded: String::new(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// A syntax error at the current position: the position is the report, built only when
    /// the parse ends (a small error type keeps the hot `Result`s in registers).
    fn syntax(&self) -> Fail {
        Fail
    }

    /// Any other failure, kept for the report.
    fn fail(&mut self, error: JsonError) -> Fail {
        self.error = Some(error);
        Fail
    }

    /// The error a failed parse reports: the one recorded, or a syntax error at the current
    /// position (1-based line and column).
    fn report(&mut self) -> JsonError {
        self.error.take().unwrap_or_else(|| {
            let before = self.bytes.get(..self.pos).unwrap_or(self.bytes);
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            JsonError::Syntax { line, column }
        })
    }

    fn eat(&mut self, byte: u8) -> Step<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn slice(&self, start: usize, end: usize) -> Step<&'a str> {
        self.text.get(start..end).ok_or_else(|| self.syntax())
    }

    /// The top-level object, as indexed members.
    fn top(mut self) -> Result<(Vec<Member>, String), JsonError> {
        match self.members() {
            Ok(members) => Ok((members, self.decoded)),
            Err(Fail) => Err(self.report()),
        }
    }

    fn members(&mut self) -> Step<Vec<Member>> {
        self.skip_ws();
        self.eat(b'{')?;
        self.enter()?;
        // Claim sets run about 40 bytes a member: sized once, not regrown.
        let mut members: Vec<Member> = Vec::with_capacity((self.bytes.len() / 40).clamp(4, 32));
        let mut seen: Option<BTreeSet<Box<str>>> = None;
        if !self.closes_at_once(b'}') {
            loop {
                self.skip_ws();
                let name = self.string()?;
                let key = NameKey::of(self.text_of(&name));
                self.skip_ws();
                self.eat(b':')?;
                self.skip_ws();
                let slot = match self.peek() {
                    Some(b'"') => Slot::Str(self.string()?),
                    Some(b'-' | b'0'..=b'9') => Slot::Number(self.number()?),
                    Some(b'{' | b'[') => {
                        let start = self.pos;
                        self.skip()?;
                        Slot::Nested {
                            start,
                            end: self.pos,
                        }
                    }
                    _ => match self.value()? {
                        Value::Bool(b) => Slot::Bool(b),
                        _ => Slot::Null,
                    },
                };
                let name_str = self.text_of(&name);
                let duplicate = match &mut seen {
                    Some(set) => !set.insert(name_str.into()),
                    None => {
                        let dup = members.iter().any(|m| {
                            m.key == key && (key.is_whole() || self.text_of(&m.name) == name_str)
                        });
                        if !dup && members.len() >= LINEAR_DUPLICATE_SCAN {
                            let mut set: BTreeSet<Box<str>> = members
                                .iter()
                                .map(|m| self.text_of(&m.name).into())
                                .collect();
                            set.insert(name_str.into());
                            seen = Some(set);
                        }
                        dup
                    }
                };
                if duplicate {
                    let name = name_str.to_owned();
                    return Err(self.fail(JsonError::DuplicateMember { name }));
                }
                members.push(Member { name, key, slot });
                if self.after_item(b'}')? {
                    break;
                }
            }
        }
        self.open -= 1;
        self.skip_ws();
        if self.pos == self.bytes.len() {
            Ok(members)
        } else {
            Err(self.syntax())
        }
    }

    /// Right after an opening bracket: whether the container is empty (its `close` is then
    /// consumed).
    fn closes_at_once(&mut self, close: u8) -> bool {
        self.skip_ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.pos += 1;
        }
        empty
    }

    /// After a member or an element: `,` (another follows: `false`) or `close` (the container
    /// ends: `true`).
    fn after_item(&mut self, close: u8) -> Step<bool> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.syntax()),
        }
    }

    /// Opens a container (the top-level object is level 1).
    fn enter(&mut self) -> Step<()> {
        if self.open >= self.max_depth {
            let max = self.max_depth;
            return Err(self.fail(JsonError::TooDeep { max }));
        }
        if self.open >= RECURSION_LIMIT {
            return Err(self.syntax());
        }
        self.open += 1;
        Ok(())
    }

    fn text_of(&self, text: &Text) -> &str {
        text.of(self.text, &self.decoded)
    }

    /// Checks any value, building nothing (an object's member names are kept only while it is
    /// open, to find duplicates).
    fn skip(&mut self) -> Step<()> {
        self.walk::<false>().map(drop)
    }

    /// Any value, built as a `serde_json::Value` (nested members and arrays).
    fn value(&mut self) -> Step<Value> {
        self.walk::<true>().map(|v| v.unwrap_or(Value::Null))
    }

    /// Reads one value with every check, building it when `BUILD` (then it is `Some`). One body
    /// for both, so that checking and building can never accept different texts.
    fn walk<const BUILD: bool>(&mut self) -> Step<Option<Value>> {
        match self.peek() {
            Some(b'"') => {
                let text = self.string()?;
                Ok(BUILD.then(|| Value::String(self.text_of(&text).to_owned())))
            }
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                Ok(BUILD.then_some(Value::Number(n)))
            }
            Some(b'{') => {
                self.pos += 1;
                self.enter()?;
                let mut map = Map::new();
                let mut names = SeenNames::default();
                if !self.closes_at_once(b'}') {
                    loop {
                        self.skip_ws();
                        let name = self.string()?;
                        self.skip_ws();
                        self.eat(b':')?;
                        self.skip_ws();
                        let value = self.walk::<BUILD>()?;
                        if names.repeats(self, name) {
                            let name = self.text_of(&name).to_owned();
                            return Err(self.fail(JsonError::DuplicateMember { name }));
                        }
                        if let Some(value) = value {
                            map.insert(self.text_of(&name).to_owned(), value);
                        }
                        if self.after_item(b'}')? {
                            break;
                        }
                    }
                }
                self.open -= 1;
                Ok(BUILD.then_some(Value::Object(map)))
            }
            Some(b'[') => {
                self.pos += 1;
                self.enter()?;
                let mut items = Vec::new();
                if !self.closes_at_once(b']') {
                    loop {
                        self.skip_ws();
                        if let Some(item) = self.walk::<BUILD>()? {
                            items.push(item);
                        }
                        if self.after_item(b']')? {
                            break;
                        }
                    }
                }
                self.open -= 1;
                Ok(BUILD.then_some(Value::Array(items)))
            }
            Some(b't') => self.literal("true", Value::Bool(true)).map(Some),
            Some(b'f') => self.literal("false", Value::Bool(false)).map(Some),
            Some(b'n') => self.literal("null", Value::Null).map(Some),
            _ => Err(self.syntax()),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Step<Value> {
        if self
            .bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word.as_bytes()))
        {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.syntax())
        }
    }

    /// A string at its opening quote: a span of the text when it has no escapes, else decoded.
    /// Control characters must be escaped; escapes must be valid; surrogates must pair.
    #[inline]
    fn string(&mut self) -> Step<Text> {
        self.eat(b'"')?;
        let start = self.pos;
        self.skip_plain();
        loop {
            match self.peek() {
                Some(b'"') => {
                    let end = self.pos;
                    self.pos += 1;
                    return Text::span(start, end).ok_or_else(|| self.syntax());
                }
                Some(b'\\') => {
                    let plain = self.slice(start, self.pos)?;
                    let mut out = std::mem::take(&mut self.decoded);
                    let from = out.len();
                    out.push_str(plain);
                    let done = self.escaped(&mut out);
                    let to = out.len();
                    self.decoded = out;
                    done?;
                    return Text::decoded(from, to).ok_or_else(|| self.syntax());
                }
                Some(0x20..) => self.pos += 1,
                _ => return Err(self.syntax()),
            }
        }
    }

    /// Skips string bytes that need no attention (not `"`, `\\` or a control character), eight
    /// at a time while it can: claim values are mostly long runs of such bytes.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        /// Bytes of `x` that are zero get their high bit set (and only those, for the first one).
        fn zero_bytes(x: u64) -> u64 {
            x.wrapping_sub(ONES) & !x & HIGHS
        }
        while let Some(chunk) = self
            .bytes
            .get(self.pos..self.pos + 8)
            .and_then(|c| <[u8; 8]>::try_from(c).ok())
        {
            let x = u64::from_le_bytes(chunk);
            // A byte below 0x20 has none of the bits 0xE0; a byte at or above 0x80 is never
            // one we look for, and is masked out of that test.
            let control = zero_bytes(x & 0xE0E0_E0E0_E0E0_E0E0) & !(x & HIGHS);
            let special = zero_bytes(x ^ (ONES * u64::from(b'"')))
                | zero_bytes(x ^ (ONES * u64::from(b'\\')))
                | control;
            if special != 0 {
                // The first flagged byte (little-endian: lowest bits) stops the fast scan; a
                // false positive after it is harmless, the bytewise loop takes over there.
                self.pos += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
    }

    /// The rest of a string from its first backslash, decoded into `out`.
    fn escaped(&mut self, out: &mut String) -> Step<()> {
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or_else(|| self.syntax())?;
                    self.pos += 1;
                    let decoded = match c {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.syntax()),
                    };
                    out.push(decoded);
                }
                Some(0x20..) => {
                    let run = self.pos;
                    self.skip_plain();
                    while let Some(b) = self.peek()
                        && b >= 0x20
                        && b != b'"'
                        && b != b'\\'
                    {
                        self.pos += 1;
                    }
                    out.push_str(self.slice(run, self.pos)?);
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// `XXXX` after `\u` (and its low half when it is a high surrogate): lone surrogates are
    /// refused, as `serde_json` does.
    fn unicode_escape(&mut self) -> Step<char> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.syntax());
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.syntax());
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.syntax()),
            _ => high,
        };
        char::from_u32(code).ok_or_else(|| self.syntax())
    }

    fn hex4(&mut self) -> Step<u32> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.syntax())?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }

    /// A number (RFC 8259 §6 grammar). Small non-negative integers are read here; anything else
    /// is converted by `serde_json`, so values are exactly what it would produce.
    fn number(&mut self) -> Step<Number> {
        let start = self.pos;
        let mut integer = true;
        if self.peek() == Some(b'-') {
            self.pos += 1;
            integer = false;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                // A leading zero is refused inside the number, before anything the member
                // holding it could be refused for (a repeated name): `serde_json`'s precedence.
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.syntax());
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            integer = false;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        let text = self.slice(start, self.pos)?;
        if integer && text.len() <= 19 {
            // At most 19 decimal digits always fit in a u64.
            let n = text.bytes().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            return Ok(Number::from(n));
        }
        serde_json::from_str(text).map_err(|_| {
            self.pos = start;
            self.syntax()
        })
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Step<()> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            _ => Err(self.syntax()),
        }
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

    /// Both parsers on the same bytes: the same map, or the same kind of error.
    fn same_verdict(bytes: &[u8], depth: usize) {
        let general = parse_object(bytes, depth);
        let indexed = JsonObject::parse(bytes.to_vec(), depth);
        match (&general, &indexed) {
            (Ok(map), Ok(object)) => {
                assert_eq!(object.as_map(), map, "{:?}", String::from_utf8_lossy(bytes));
                // The indexed readers agree with the map, member by member, in order.
                assert_eq!(object.len(), map.len());
                for (name, value) in object.iter() {
                    assert_eq!(map.get(name), Some(value));
                    match object.field(name) {
                        Some(Field::Str(s)) => assert_eq!(value.as_str(), Some(s)),
                        Some(Field::Number(n)) => assert_eq!(value.as_number(), Some(n)),
                        Some(Field::Other(v)) => assert_eq!(v, value),
                        None => unreachable!(),
                    }
                }
            }
            (Err(JsonError::Syntax { .. }), Err(JsonError::Syntax { .. })) => {}
            (Err(a), Err(b)) => assert_eq!(a, b, "{:?}", String::from_utf8_lossy(bytes)),
            _ => panic!(
                "parsers disagree on {:?}: {general:?} vs {indexed:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    #[test]
    fn indexed_parser_agrees_on_edge_cases() {
        for text in [
            r#"{}"#,
            r#" { } "#,
            "{\n\"a\" :\t1 ,\r\"b\":[ ] }\n",
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":[{"c":1,"c":1}]}"#,
            r#"{"a":"\ud83d\ude00","b":"\u00e9\n\t\"\\\/\b\f\r"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\ud800x"}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\u{7f}é\"}",
            r#"{"a":0,"b":-0,"c":-1,"d":1.5,"e":1e3,"f":1E-3,"g":-1.25e+2}"#,
            r#"{"a":18446744073709551615,"b":18446744073709551616,"c":9999999999999999999}"#,
            r#"{"a":-9223372036854775808,"b":-9223372036854775809}"#,
            r#"{"a":123456789012345678901234567890}"#,
            r#"{"a":01}"#,
            r#"{"a":1,"a":02}"#,
            r#"{"a":{"b":1,"b":-01}}"#,
            r#"{"a":1,"a":1x}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e999}"#,
            r#"{"a":-}"#,
            r#"{"a":NaN}"#,
            r#"{"a":true,"b":false,"c":null}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul,"b":1}"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
            r#"{"a":{"b":}}"#,
            r#"{"a":1}x"#,
            r#"{"a":1}}"#,
            r#"{"a":1"#,
            r#"{"a"#,
            r#"{"#,
            r#"{a:1}"#,
            r#"{'a':1}"#,
            r#"{"a":[[[[]]]]}"#,
            r#"{"a":{"b":{"c":{}}}}"#,
            "[1]",
            "\"x\"",
            "1 x",
            "",
            "   ",
        ] {
            for depth in [0, 1, 2, 3, 4, 16, 200] {
                same_verdict(text.as_bytes(), depth);
            }
        }
        same_verdict(b"{\"a\":\"\xff\"}", 16);
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        same_verdict(deep.as_bytes(), 32);
        same_verdict(deep.as_bytes(), usize::MAX);
        let wide: String = (0..3000).map(|i| format!("\"m{i}\":{i},")).collect();
        same_verdict(format!("{{{wide}\"m1\":0}}").as_bytes(), 16);
        same_verdict(format!("{{{wide}\"end\":0}}").as_bytes(), 16);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Arbitrary text over JSON's alphabet, mostly near-valid objects.
        #[test]
        fn indexed_parser_agrees_with_serde(
            body in proptest::collection::vec(
                proptest::sample::select(vec![
                    "\"a\"", "\"b\"", "\"\\u0061\"", "\"\\ud83d\\ude00\"", "\"\\ud800\"", "\"x\\n\"",
                    ":", ",", "{", "}", "[", "]", "1", "-0", "1.5e3", "18446744073709551616", "true",
                    "null", " ", "\"", "\\", "e", "\u{1}", "é",
                ]),
                0..24,
            ),
            depth in 1usize..6,
        ) {
            let text = format!("{{{}}}", body.concat());
            same_verdict(text.as_bytes(), depth);
            let members = format!("{{\"a\":{}}}", body.concat());
            same_verdict(members.as_bytes(), depth);
        }
    }
}
