//! The Cedar schema: the MCP server's own tool list, turned into one action per tool by
//! `cedar-policy-mcp-schema-generator`, merged with the stub that declares the principal, the
//! resource and the session context.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cedar_policy::{EntityId, EntityTypeName, EntityUid, Schema, Validator};
use cedar_policy_mcp_schema_generator::{RequestGenerator, SchemaGenerator, SchemaGeneratorConfig};
use mcp_tools_sdk::description::ServerDescription;

use super::principal::{BUILTIN_ATTRIBUTES, PrincipalMapping};
use crate::model::{ToolAnnotations, ToolDefinition};

/// The Cedar namespace of every name the engine declares.
pub const NAMESPACE: &str = "Ema";

/// Why a schema could not be built from a tool list and a principal mapping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A configured attribute name is not an identifier or repeats a built-in or another one.
    #[error("principal mapping: attribute `{attribute}` {problem}")]
    Mapping {
        /// The attribute.
        attribute: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Two tools share a name.
    #[error("tool `{0}` is listed twice")]
    DuplicateTool(String),
    /// The tool list could not be read as MCP tool descriptions.
    #[error("tool list: {0}")]
    Tools(String),
    /// The schema generator refused the tools (a name that is not a Cedar identifier, an
    /// undefined `$ref`, an empty enum, ...).
    #[error("schema generator: {0}")]
    Generator(String),
    /// The generated schema did not parse back as a Cedar schema.
    #[error("generated Cedar schema: {0}")]
    Cedar(String),
}

/// What the engine keeps per tool.
#[derive(Debug, Clone)]
pub(crate) struct ToolEntry {
    pub(crate) action: EntityUid,
    pub(crate) annotations: ToolAnnotations,
    /// The tool's arguments when its input schema has only plain properties (see
    /// [`PlainArguments`]); `None` sends every call through the schema generator.
    pub(crate) plain: Option<PlainArguments>,
}

/// The Cedar type of a plain argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainKind {
    /// `{"type": "string"}`: a Cedar `String`.
    String,
    /// `{"type": "integer"}`: a Cedar `Long`.
    Long,
    /// `{"type": "boolean"}`: a Cedar `Bool`.
    Bool,
}

/// The arguments of a tool whose input schema is an object of plain properties only (each
/// `{"type": "string" | "integer" | "boolean"}`, with at most a description; `required`
/// naming some of them; a title and the JSON Schema dialect; nothing else), which the engine checks and converts itself: the schema
/// generator would turn them into the same Cedar values (strings, `Long`s, `Bool`s in the
/// `input` record), and refuses the same arguments (a missing required one, an undeclared one,
/// a value of another JSON type, an integer outside `i64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlainArguments {
    /// Name, kind, required.
    pub(crate) properties: Vec<(String, PlainKind, bool)>,
}

impl PlainArguments {
    /// The plan for `input_schema`, if it is plain. Annotations that change nothing are
    /// allowed: `description` and `title` (strings) and `$schema` naming a JSON Schema draft
    /// (rmcp's tool macros declare 2020-12 on every input schema).
    pub(crate) fn of_schema(
        input_schema: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Self> {
        use serde_json::Value;
        let known = [
            "type",
            "properties",
            "required",
            "description",
            "title",
            "$schema",
        ];
        if input_schema.keys().any(|k| !known.contains(&k.as_str()))
            || input_schema.get("type").and_then(Value::as_str) != Some("object")
        {
            return None;
        }
        // The dialect rmcp and schemars declare (`schema_for_type`), or an earlier one whose
        // keywords used here mean the same: it changes nothing in a plain schema. Another
        // (unknown) dialect is left to the schema generator.
        let dialects = [
            "https://json-schema.org/draft/2020-12/schema",
            "https://json-schema.org/draft/2019-09/schema",
            "http://json-schema.org/draft-07/schema#",
            "http://json-schema.org/draft-07/schema",
        ];
        if let Some(dialect) = input_schema.get("$schema")
            && !dialect.as_str().is_some_and(|d| dialects.contains(&d))
        {
            return None;
        }
        if input_schema
            .get("title")
            .is_some_and(|title| !title.is_string())
        {
            return None;
        }
        let empty = serde_json::Map::new();
        let declared = match input_schema.get("properties") {
            None => &empty,
            Some(Value::Object(properties)) => properties,
            Some(_) => return None,
        };
        let required: Vec<&str> = match input_schema.get("required") {
            None => Vec::new(),
            Some(Value::Array(names)) => names.iter().map(Value::as_str).collect::<Option<_>>()?,
            Some(_) => return None,
        };
        if required.iter().any(|name| !declared.contains_key(*name)) {
            return None;
        }
        let mut properties = Vec::with_capacity(declared.len());
        for (name, property) in declared {
            let property = property.as_object()?;
            if property.keys().any(|k| k != "type" && k != "description") {
                return None;
            }
            let kind = match property.get("type").and_then(Value::as_str)? {
                "string" => PlainKind::String,
                "integer" => PlainKind::Long,
                "boolean" => PlainKind::Bool,
                _ => return None,
            };
            properties.push((name.clone(), kind, required.contains(&name.as_str())));
        }
        Some(Self { properties })
    }

    /// Whether `arguments` match the plan: what [`convert`](Self::convert) checks, without
    /// building the record.
    pub(crate) fn matches(&self, arguments: &serde_json::Map<String, serde_json::Value>) -> bool {
        use serde_json::Value;
        let declared = arguments.iter().all(|(name, value)| {
            self.properties
                .iter()
                .find(|(p, _, _)| p == name)
                .is_some_and(|(_, kind, _)| match (kind, value) {
                    (PlainKind::String, Value::String(_)) | (PlainKind::Bool, Value::Bool(_)) => {
                        true
                    }
                    (PlainKind::Long, Value::Number(n)) => n.as_i64().is_some(),
                    _ => false,
                })
        });
        declared
            && self
                .properties
                .iter()
                .all(|(name, _, required)| !*required || arguments.contains_key(name))
    }

    /// The `input` record of a call with these arguments, or `None` when they do not match
    /// the plan (the schema generator then decides, and gives its reason).
    pub(crate) fn convert(
        &self,
        arguments: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<cedar_policy::RestrictedExpression> {
        use cedar_policy::RestrictedExpression as E;
        use serde_json::Value;
        let mut fields = Vec::with_capacity(arguments.len());
        for (name, value) in arguments {
            let (_, kind, _) = self.properties.iter().find(|(p, _, _)| p == name)?;
            let value = match (kind, value) {
                (PlainKind::String, Value::String(s)) => E::new_string(s.clone()),
                (PlainKind::Long, Value::Number(n)) => E::new_long(n.as_i64()?),
                (PlainKind::Bool, Value::Bool(b)) => E::new_bool(*b),
                _ => return None,
            };
            fields.push((name.clone(), value));
        }
        let missing = self
            .properties
            .iter()
            .any(|(name, _, required)| *required && !arguments.contains_key(name));
        if missing {
            return None;
        }
        E::new_record(fields).ok()
    }
}

static NEXT_SCHEMA_ID: AtomicU64 = AtomicU64::new(1);

/// A Cedar schema built from an MCP server's tool list, the principal mapping and the session
/// context, with the request generator that turns a tool call into a request valid against it.
///
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct CedarSchema {
    inner: Arc<SchemaInner>,
}

struct SchemaInner {
    id: u64,
    text: String,
    schema: Schema,
    validator: Validator,
    generator: RequestGenerator,
    tools: BTreeMap<String, ToolEntry>,
    mapping: PrincipalMapping,
    principal_type: EntityTypeName,
    resource_type: EntityTypeName,
}

impl fmt::Debug for CedarSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CedarSchema")
            .field("tools", &self.inner.tools.keys().collect::<Vec<_>>())
            .field("mapping", &self.inner.mapping)
            .finish_non_exhaustive()
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The stub the generator extends: principal, resource, and the two shared contexts.
fn stub(mapping: &PrincipalMapping) -> Result<String, SchemaError> {
    let mut out = String::with_capacity(1024);
    let _ = writeln!(out, "namespace {NAMESPACE} {{");
    out.push_str("  @mcp_principal(\"User\")\n  entity User = {\n");
    for (name, ty, optional) in BUILTIN_ATTRIBUTES {
        let q = if *optional { "?" } else { "" };
        let _ = writeln!(out, "    \"{name}\"{q}: {ty},");
    }
    let mut seen: Vec<&str> = Vec::new();
    for attribute in &mapping.attributes {
        let name = attribute.attribute.as_str();
        let problem = if !is_identifier(name) {
            Some("is not an identifier (letters, digits, `_`)")
        } else if BUILTIN_ATTRIBUTES.iter().any(|(b, _, _)| *b == name) {
            Some("repeats a built-in principal attribute")
        } else if seen.contains(&name) {
            Some("is mapped twice")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(SchemaError::Mapping {
                attribute: name.to_owned(),
                problem,
            });
        }
        seen.push(name);
        let _ = writeln!(out, "    \"{name}\"?: {},", attribute.kind.cedar_type());
    }
    out.push_str("  };\n");
    out.push_str("  @mcp_resource(\"McpServer\")\n  entity McpServer;\n");
    out.push_str(
        "  @mcp_context(\"session\")\n  type Session = {\n    \"labels\": Set<String>,\n    \
         \"tools_called\": Set<String>,\n    \"tool_calls\": Long,\n    \"total_calls\": Long,\n    \
         \"destructive_calls\": Long,\n  };\n",
    );
    out.push_str(
        "  @mcp_context(\"tool\")\n  type ToolHints = {\n    \"name\": String,\n    \
         \"read_only\": Bool,\n    \"destructive\": Bool,\n    \"idempotent\": Bool,\n    \
         \"open_world\": Bool,\n  };\n",
    );
    out.push_str("}\n");
    Ok(out)
}

impl CedarSchema {
    /// Builds the schema for `tools` (the MCP server's `tools/list`) with the principal
    /// attributes of `mapping`.
    ///
    /// Each tool becomes the action `Ema::Action::"<tool>"` whose context has `input` (the
    /// tool's arguments, typed by its input schema; JSON `number` is a Cedar `decimal`,
    /// `integer` a `Long`), `session` and `tool` (see the crate documentation).
    pub fn new(tools: &[ToolDefinition], mapping: &PrincipalMapping) -> Result<Self, SchemaError> {
        let stub = stub(mapping)?;
        let config = SchemaGeneratorConfig::default().encode_numbers_as_decimal(true);
        let mut generator = SchemaGenerator::from_cedarschema_str_with_config(&stub, config)
            .map_err(|e| SchemaError::Generator(e.to_string()))?;

        let mut entries = BTreeMap::new();
        for tool in tools {
            let action =
                EntityUid::from_type_name_and_id(action_type()?, EntityId::new(&tool.name));
            let entry = ToolEntry {
                action,
                annotations: tool.annotations,
                plain: PlainArguments::of_schema(&tool.input_schema),
            };
            if entries.insert(tool.name.clone(), entry).is_some() {
                return Err(SchemaError::DuplicateTool(tool.name.clone()));
            }
        }
        if !tools.is_empty() {
            let listing = serde_json::json!({ "result": { "tools": tools } });
            let description = ServerDescription::from_json_str(&listing.to_string())
                .map_err(|e| SchemaError::Tools(e.to_string()))?;
            generator
                .add_actions_from_server_description(&description)
                .map_err(|e| SchemaError::Generator(e.to_string()))?;
        }
        let request_generator = generator
            .new_request_generator()
            .map_err(|e| SchemaError::Generator(e.to_string()))?;
        let text = generator.get_schema_as_str();
        let (schema, _warnings) =
            Schema::from_cedarschema_str(&text).map_err(|e| SchemaError::Cedar(e.to_string()))?;
        let validator = Validator::new(schema.clone());
        Ok(Self {
            inner: Arc::new(SchemaInner {
                id: NEXT_SCHEMA_ID.fetch_add(1, Ordering::Relaxed),
                text,
                schema,
                validator,
                generator: request_generator,
                tools: entries,
                mapping: mapping.clone(),
                principal_type: type_name("User")?,
                resource_type: type_name("McpServer")?,
            }),
        })
    }

    /// The schema in Cedar's schema syntax: what policy authors write against.
    pub fn to_cedarschema(&self) -> &str {
        &self.inner.text
    }

    /// The Cedar schema.
    pub fn cedar_schema(&self) -> &Schema {
        &self.inner.schema
    }

    /// The tools the schema declares, by name.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.inner.tools.keys().map(String::as_str)
    }

    /// The principal mapping the schema declares attributes for.
    pub fn mapping(&self) -> &PrincipalMapping {
        &self.inner.mapping
    }

    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    pub(crate) fn validator(&self) -> &Validator {
        &self.inner.validator
    }

    pub(crate) fn generator(&self) -> &RequestGenerator {
        &self.inner.generator
    }

    pub(crate) fn tool(&self, name: &str) -> Option<&ToolEntry> {
        self.inner.tools.get(name)
    }

    /// The tool whose action is `uid`.
    pub(crate) fn tool_of_action(&self, uid: &EntityUid) -> Option<&str> {
        self.inner
            .tools
            .get_key_value(uid.id().unescaped())
            .filter(|(_, entry)| &entry.action == uid)
            .map(|(name, _)| name.as_str())
    }

    pub(crate) fn principal_uid(&self, id: EntityId) -> EntityUid {
        EntityUid::from_type_name_and_id(self.inner.principal_type.clone(), id)
    }

    pub(crate) fn resource_uid(&self, server: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.inner.resource_type.clone(), EntityId::new(server))
    }
}

fn type_name(base: &str) -> Result<EntityTypeName, SchemaError> {
    format!("{NAMESPACE}::{base}")
        .parse()
        .map_err(|e: cedar_policy::ParseErrors| SchemaError::Cedar(e.to_string()))
}

fn action_type() -> Result<EntityTypeName, SchemaError> {
    type_name("Action")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn plan(schema: serde_json::Value) -> Option<PlainArguments> {
        PlainArguments::of_schema(schema.as_object().unwrap())
    }

    /// rmcp's tool macros declare the 2020-12 dialect on every input schema: such a schema of
    /// plain properties still takes the engine's own conversion; an unknown dialect, a title
    /// that is not a string, or any other keyword leaves it to the schema generator.
    #[test]
    fn annotations_that_change_nothing_keep_a_schema_plain() {
        let base = serde_json::json!({
            "type": "object",
            "properties": { "path": { "type": "string", "description": "An absolute path." } },
            "required": ["path"]
        });
        let expected = PlainArguments {
            properties: vec![("path".to_owned(), PlainKind::String, true)],
        };
        assert_eq!(plan(base.clone()), Some(expected.clone()), "control");
        let with = |key: &str, value: serde_json::Value| {
            let mut schema = base.clone();
            schema[key] = value;
            plan(schema)
        };
        let dialect = serde_json::json!("https://json-schema.org/draft/2020-12/schema");
        assert_eq!(with("$schema", dialect), Some(expected.clone()));
        assert_eq!(with("title", serde_json::json!("ReadFile")), Some(expected));
        for (key, value) in [
            (
                "$schema",
                serde_json::json!("https://example.com/my-dialect"),
            ),
            ("$schema", serde_json::json!(7)),
            ("title", serde_json::json!({"a": 1})),
            ("additionalProperties", serde_json::json!(false)),
            ("$defs", serde_json::json!({})),
        ] {
            assert_eq!(with(key, value.clone()), None, "{key}: {value}");
        }
    }
}
