//! From verified access-token claims to a [`Principal`], and from a [`Principal`] to the Cedar
//! entity policies see. Which extra claims become attributes is configuration
//! ([`PrincipalMapping`]), never code.

use std::collections::{BTreeSet, HashMap, HashSet};

use cedar_policy::{Entity, EntityId, EntityUid, RestrictedExpression};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::Principal;

/// The Cedar type of a configured principal attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttributeType {
    /// A string claim: Cedar `String`.
    String,
    /// An integer claim: Cedar `Long`.
    Long,
    /// A boolean claim: Cedar `Bool`.
    Bool,
    /// An array of strings (or one string, or a space-separated string such as `scope`): Cedar
    /// `Set<String>`.
    StringSet,
}

impl AttributeType {
    /// The type as written in a Cedar schema.
    pub fn cedar_type(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::Long => "Long",
            Self::Bool => "Bool",
            Self::StringSet => "Set<String>",
        }
    }
}

/// One extra claim mapped to a principal attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClaimAttribute {
    /// The claim's name in the access token.
    pub claim: String,
    /// The attribute's name on the Cedar principal (an identifier: letters, digits, `_`).
    pub attribute: String,
    /// Its Cedar type.
    #[serde(rename = "type")]
    pub kind: AttributeType,
}

impl ClaimAttribute {
    /// Maps `claim` to the attribute `attribute` of type `kind`.
    pub fn new(
        claim: impl Into<String>,
        attribute: impl Into<String>,
        kind: AttributeType,
    ) -> Self {
        Self {
            claim: claim.into(),
            attribute: attribute.into(),
            kind,
        }
    }
}

/// Which claims beyond the standard ones become principal attributes, and which claim carries a
/// trust level. Deserializes from the `[principal]` table of a server's TOML configuration:
///
/// ```toml
/// trust_level_claim = "trust_level"
///
/// [[attributes]]
/// claim = "project"
/// attribute = "project"
/// type = "string"
/// ```
///
/// Every mapped attribute is optional in the schema (a token may lack the claim), so policies
/// test it with `principal has project` before reading it; the validator insists on that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PrincipalMapping {
    /// The claim holding an integer trust level (`Principal::trust_level`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_level_claim: Option<String>,
    /// Extra claims mapped to attributes.
    #[serde(default)]
    pub attributes: Vec<ClaimAttribute>,
}

impl PrincipalMapping {
    /// No extra claims, no trust level.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the trust level from `claim`.
    #[must_use]
    pub fn with_trust_level_claim(mut self, claim: impl Into<String>) -> Self {
        self.trust_level_claim = Some(claim.into());
        self
    }

    /// Maps one more claim.
    #[must_use]
    pub fn with_attribute(mut self, attribute: ClaimAttribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    /// The declared type of the configured attribute `name`.
    pub fn attribute_type(&self, name: &str) -> Option<AttributeType> {
        self.attributes
            .iter()
            .find(|a| a.attribute == name)
            .map(|a| a.kind)
    }
}

/// Why claims could not become a [`Principal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// A required claim is absent.
    #[error("claim `{claim}` is missing")]
    Missing {
        /// The claim.
        claim: String,
    },
    /// A claim has the wrong JSON type.
    #[error("claim `{claim}` must be {expected}")]
    WrongType {
        /// The claim.
        claim: String,
        /// What it must be.
        expected: &'static str,
    },
}

fn wrong(claim: &str, expected: &'static str) -> ClaimsError {
    ClaimsError::WrongType {
        claim: claim.to_owned(),
        expected,
    }
}

fn required_string(claims: &Map<String, Value>, claim: &str) -> Result<String, ClaimsError> {
    optional_string(claims, claim)?.ok_or_else(|| ClaimsError::Missing {
        claim: claim.to_owned(),
    })
}

fn optional_string(
    claims: &Map<String, Value>,
    claim: &str,
) -> Result<Option<String>, ClaimsError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong(claim, "a string")),
    }
}

/// A set of strings: a JSON array of strings, or one string holding space-separated values
/// (RFC 9068 `scope`).
fn string_set(claims: &Map<String, Value>, claim: &str) -> Result<BTreeSet<String>, ClaimsError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(value) => string_set_value(claim, value),
    }
}

fn string_set_value(claim: &str, value: &Value) -> Result<BTreeSet<String>, ClaimsError> {
    match value {
        Value::String(s) => Ok(s.split_ascii_whitespace().map(str::to_owned).collect()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(wrong(
                    claim,
                    "an array of strings or a space-separated string",
                )),
            })
            .collect(),
        _ => Err(wrong(
            claim,
            "an array of strings or a space-separated string",
        )),
    }
}

fn optional_integer(claims: &Map<String, Value>, claim: &str) -> Result<Option<i64>, ClaimsError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| wrong(claim, "an integer")),
        Some(_) => Err(wrong(claim, "an integer")),
    }
}

/// Length of the RFC 8693 `act` chain: each `act` object may hold the previous actor's `act`.
fn act_depth(claims: &Map<String, Value>) -> Result<u32, ClaimsError> {
    let mut depth = 0u32;
    let mut current = claims.get("act");
    while let Some(value) = current {
        match value {
            Value::Object(actor) => {
                depth = depth.saturating_add(1);
                current = actor.get("act");
            }
            Value::Null => break,
            _ => return Err(wrong("act", "an object")),
        }
    }
    Ok(depth)
}

impl Principal {
    /// Builds a principal from the claims of a verified access token (RFC 9068) and the
    /// deployment's [`PrincipalMapping`].
    ///
    /// Reads `iss`, `sub`, `client_id` (required), `tenant`, `scope` (space-separated string
    /// or array), `groups`, `roles`, `acr`, `amr`, `auth_time`, `jti`, `id_jag` (`iss`, `jti`:
    /// the ID-JAG the token was issued for), the depth of the `act` chain, the configured
    /// trust-level claim and the configured extra claims. A claim of the wrong type is an
    /// error, never silently dropped.
    ///
    /// ```
    /// use ema_authz::Principal;
    /// use ema_authz::cedar::{AttributeType, ClaimAttribute, PrincipalMapping};
    ///
    /// let claims = serde_json::json!({
    ///     "iss": "https://as.example", "sub": "alice", "client_id": "agent",
    ///     "scope": "tools.read tools.call", "groups": ["analysts"], "project": "apollo",
    ///     "act": {"sub": "agent", "act": {"sub": "orchestrator"}}
    /// });
    /// let mapping = PrincipalMapping::new()
    ///     .with_attribute(ClaimAttribute::new("project", "project", AttributeType::String));
    /// let principal = Principal::from_claims(claims.as_object().unwrap(), &mapping)?;
    /// assert!(principal.scopes.contains("tools.call"));
    /// assert_eq!(principal.delegation_depth, 2);
    /// assert_eq!(principal.attributes["project"], "apollo");
    /// # Ok::<(), ema_authz::cedar::ClaimsError>(())
    /// ```
    pub fn from_claims(
        claims: &Map<String, Value>,
        mapping: &PrincipalMapping,
    ) -> Result<Self, ClaimsError> {
        let mut principal = Principal::new(
            required_string(claims, "iss")?,
            required_string(claims, "sub")?,
            required_string(claims, "client_id")?,
        );
        principal.tenant = optional_string(claims, "tenant")?;
        principal.scopes = string_set(claims, "scope")?;
        principal.groups = string_set(claims, "groups")?;
        principal.roles = string_set(claims, "roles")?;
        principal.acr = optional_string(claims, "acr")?;
        principal.amr = string_set(claims, "amr")?;
        principal.auth_time = match optional_integer(claims, "auth_time")? {
            None => None,
            Some(t) => {
                Some(u64::try_from(t).map_err(|_| wrong("auth_time", "a non-negative integer"))?)
            }
        };
        principal.token_jti = optional_string(claims, "jti")?;
        match claims.get("id_jag") {
            None | Some(Value::Null) => {}
            Some(Value::Object(origin)) => {
                principal.idp_issuer =
                    optional_string(origin, "iss").map_err(|_| wrong("id_jag.iss", "a string"))?;
                principal.idp_jti =
                    optional_string(origin, "jti").map_err(|_| wrong("id_jag.jti", "a string"))?;
            }
            Some(_) => return Err(wrong("id_jag", "an object")),
        }
        principal.delegation_depth = act_depth(claims)?;
        if let Some(claim) = &mapping.trust_level_claim {
            principal.trust_level = optional_integer(claims, claim)?;
        }
        for mapped in &mapping.attributes {
            let Some(value) = claims.get(&mapped.claim).filter(|v| !v.is_null()) else {
                continue;
            };
            let value = coerce(&mapped.claim, mapped.kind, value)?;
            principal.attributes.insert(mapped.attribute.clone(), value);
        }
        Ok(principal)
    }
}

/// Checks (and for sets, normalizes) one claim value against its declared type.
fn coerce(claim: &str, kind: AttributeType, value: &Value) -> Result<Value, ClaimsError> {
    match (kind, value) {
        (AttributeType::String, Value::String(_)) | (AttributeType::Bool, Value::Bool(_)) => {
            Ok(value.clone())
        }
        (AttributeType::Long, Value::Number(n)) if n.is_i64() => Ok(value.clone()),
        (AttributeType::StringSet, _) => Ok(Value::Array(
            string_set_value(claim, value)?
                .into_iter()
                .map(Value::String)
                .collect(),
        )),
        (AttributeType::String, _) => Err(wrong(claim, "a string")),
        (AttributeType::Long, _) => Err(wrong(claim, "an integer")),
        (AttributeType::Bool, _) => Err(wrong(claim, "a boolean")),
    }
}

/// The principal attributes every schema declares: name, Cedar type, optional.
pub(crate) const BUILTIN_ATTRIBUTES: &[(&str, &str, bool)] = &[
    ("issuer", "String", false),
    ("tenant", "String", true),
    ("subject", "String", false),
    ("client_id", "String", false),
    ("scopes", "Set<String>", false),
    ("groups", "Set<String>", false),
    ("roles", "Set<String>", false),
    ("acr", "String", true),
    ("amr", "Set<String>", false),
    ("auth_time", "Long", true),
    ("token_jti", "String", true),
    ("idp_issuer", "String", true),
    ("idp_jti", "String", true),
    ("delegation_depth", "Long", false),
    ("trust_level", "Long", true),
];

fn string_set_expr(values: &BTreeSet<String>) -> RestrictedExpression {
    RestrictedExpression::new_set(values.iter().cloned().map(RestrictedExpression::new_string))
}

fn long(value: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(value).unwrap_or(i64::MAX))
}

/// The Cedar entity of `principal` with uid `uid`, its configured attributes typed by
/// `mapping`. A configured attribute whose value does not have its declared type (or that is
/// not declared) is an error: the call is denied rather than decided on a guess.
pub(crate) fn principal_entity(
    principal: &Principal,
    uid: EntityUid,
    mapping: &PrincipalMapping,
) -> Result<Entity, String> {
    let mut attrs: HashMap<String, RestrictedExpression> = HashMap::with_capacity(16);
    let mut put = |name: &str, value: RestrictedExpression| {
        attrs.insert(name.to_owned(), value);
    };
    put(
        "issuer",
        RestrictedExpression::new_string(principal.issuer.clone()),
    );
    if let Some(tenant) = &principal.tenant {
        put("tenant", RestrictedExpression::new_string(tenant.clone()));
    }
    put(
        "subject",
        RestrictedExpression::new_string(principal.subject.clone()),
    );
    put(
        "client_id",
        RestrictedExpression::new_string(principal.client_id.clone()),
    );
    put("scopes", string_set_expr(&principal.scopes));
    put("groups", string_set_expr(&principal.groups));
    put("roles", string_set_expr(&principal.roles));
    if let Some(acr) = &principal.acr {
        put("acr", RestrictedExpression::new_string(acr.clone()));
    }
    put("amr", string_set_expr(&principal.amr));
    if let Some(t) = principal.auth_time {
        put("auth_time", long(t));
    }
    if let Some(jti) = &principal.token_jti {
        put("token_jti", RestrictedExpression::new_string(jti.clone()));
    }
    if let Some(iss) = &principal.idp_issuer {
        put("idp_issuer", RestrictedExpression::new_string(iss.clone()));
    }
    if let Some(jti) = &principal.idp_jti {
        put("idp_jti", RestrictedExpression::new_string(jti.clone()));
    }
    put(
        "delegation_depth",
        long(u64::from(principal.delegation_depth)),
    );
    if let Some(level) = principal.trust_level {
        put("trust_level", RestrictedExpression::new_long(level));
    }
    for (name, value) in &principal.attributes {
        let Some(kind) = mapping.attribute_type(name) else {
            return Err(format!(
                "principal attribute `{name}` is not declared by the principal mapping"
            ));
        };
        let expr = match (kind, value) {
            (AttributeType::String, Value::String(s)) => {
                RestrictedExpression::new_string(s.clone())
            }
            (AttributeType::Bool, Value::Bool(b)) => RestrictedExpression::new_bool(*b),
            (AttributeType::Long, Value::Number(n)) => match n.as_i64() {
                Some(n) => RestrictedExpression::new_long(n),
                None => return Err(format!("principal attribute `{name}` is not a Long")),
            },
            (AttributeType::StringSet, Value::Array(items)) => {
                let mut set = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => set.push(RestrictedExpression::new_string(s.clone())),
                        _ => {
                            return Err(format!(
                                "principal attribute `{name}` is not a Set<String>"
                            ));
                        }
                    }
                }
                RestrictedExpression::new_set(set)
            }
            (kind, _) => {
                return Err(format!(
                    "principal attribute `{name}` is not a {}",
                    kind.cedar_type()
                ));
            }
        };
        attrs.insert(name.clone(), expr);
    }
    Entity::new(uid, attrs, HashSet::new()).map_err(|e| e.to_string())
}

/// The principal's entity id: the subject (unique per issuer; the issuer is an attribute).
pub(crate) fn principal_id(principal: &Principal) -> EntityId {
    EntityId::new(&principal.subject)
}
