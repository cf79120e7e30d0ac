//! The vocabulary every authorizer shares: who calls ([`Principal`]), what they call
//! ([`ToolCall`], [`ToolDefinition`]), what the session already did ([`SessionContext`]) and
//! what was decided ([`Decision`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who is calling: the verified access token's principal, in the terms policies use.
///
/// Built by the resource server after the bearer check (ema-server does it from the access
/// token it verified); every field comes from a claim the authorization server signed. Extra
/// claims become [`Principal::attributes`] through configuration, never through code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Principal {
    /// `iss` of the access token: the authorization server.
    pub issuer: String,
    /// `tenant`, when the authorization server names one.
    pub tenant: Option<String>,
    /// `sub`: the user as the authorization server knows them.
    pub subject: String,
    /// `client_id`: the agent the token was issued to.
    pub client_id: String,
    /// Granted scopes.
    pub scopes: BTreeSet<String>,
    /// `groups` of the user.
    pub groups: BTreeSet<String>,
    /// `roles` of the user.
    pub roles: BTreeSet<String>,
    /// `acr` of the SSO session.
    pub acr: Option<String>,
    /// `amr` of the SSO session.
    pub amr: BTreeSet<String>,
    /// `auth_time` of the SSO session (seconds since the Unix epoch).
    pub auth_time: Option<u64>,
    /// `jti` of the access token (links decisions to the audit trail).
    pub token_jti: Option<String>,
    /// The IdP's `iss` of the ID-JAG the token was issued for.
    pub idp_issuer: Option<String>,
    /// The ID-JAG's `jti`.
    pub idp_jti: Option<String>,
    /// Length of the `act` (actor) chain: 0 when the token acts for the user directly.
    pub delegation_depth: u32,
    /// A trust level the token carries, when the deployment defines one.
    pub trust_level: Option<i64>,
    /// Attributes mapped from extra claims by configuration (string, number, boolean or a set
    /// of strings).
    pub attributes: BTreeMap<String, Value>,
}

impl Principal {
    /// A principal with the required pieces; the rest empty.
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            tenant: None,
            subject: subject.into(),
            client_id: client_id.into(),
            scopes: BTreeSet::new(),
            groups: BTreeSet::new(),
            roles: BTreeSet::new(),
            acr: None,
            amr: BTreeSet::new(),
            auth_time: None,
            token_jti: None,
            idp_issuer: None,
            idp_jti: None,
            delegation_depth: 0,
            trust_level: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Adds granted scopes.
    #[must_use]
    pub fn with_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Adds groups.
    #[must_use]
    pub fn with_groups<I: IntoIterator<Item = S>, S: Into<String>>(mut self, groups: I) -> Self {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }

    /// Adds roles.
    #[must_use]
    pub fn with_roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets one configured attribute.
    #[must_use]
    pub fn with_attribute(mut self, name: impl Into<String>, value: Value) -> Self {
        self.attributes.insert(name.into(), value);
        self
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Identifiers only; the token's `jti` is not a secret but is kept out of logs of
        // principals, as the audit trail records it on its own.
        f.debug_struct("Principal")
            .field("issuer", &self.issuer)
            .field("tenant", &self.tenant)
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("groups", &self.groups)
            .field("roles", &self.roles)
            .field("delegation_depth", &self.delegation_depth)
            .finish_non_exhaustive()
    }
}

/// MCP tool annotations (hints the server declares about a tool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolAnnotations {
    /// `readOnlyHint`: the tool does not modify its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    /// `destructiveHint`: the tool may perform destructive updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    /// `idempotentHint`: calling it again with the same arguments has no further effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    /// `openWorldHint`: the tool reaches entities outside the server (the web, mail, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

impl ToolAnnotations {
    /// Read-only as declared (MCP's default for an absent hint is `false`).
    pub fn read_only(&self) -> bool {
        self.read_only_hint.unwrap_or(false)
    }

    /// Destructive as declared (MCP's default for an absent hint is `true`, but only for tools
    /// that are not read-only).
    pub fn destructive(&self) -> bool {
        !self.read_only() && self.destructive_hint.unwrap_or(true)
    }

    /// Open-world as declared (MCP's default for an absent hint is `true`).
    pub fn open_world(&self) -> bool {
        self.open_world_hint.unwrap_or(true)
    }
}

/// A tool as the MCP server lists it (`tools/list`): what policies are validated against and
/// what pinning hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolDefinition {
    /// The tool's name.
    pub name: String,
    /// Its description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its JSON Schema for arguments (an object schema).
    pub input_schema: Map<String, Value>,
    /// Its JSON Schema for structured results, when declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Map<String, Value>>,
    /// Its annotations.
    #[serde(default)]
    pub annotations: ToolAnnotations,
}

impl ToolDefinition {
    /// A tool with a name and an input schema.
    pub fn new(name: impl Into<String>, input_schema: Map<String, Value>) -> Self {
        Self {
            name: name.into(),
            description: None,
            input_schema,
            output_schema: None,
            annotations: ToolAnnotations::default(),
        }
    }

    /// Sets the description.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the annotations.
    #[must_use]
    pub fn with_annotations(mut self, annotations: ToolAnnotations) -> Self {
        self.annotations = annotations;
        self
    }

    /// Reads a definition from one entry of an MCP `tools/list` result (`name`,
    /// `description`, `inputSchema`, `outputSchema`, `annotations`; other members ignored).
    pub fn from_mcp_json(tool: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(tool)
    }
}

/// An MCP session id (`Mcp-Session-Id`), the scope of session context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// Wraps a session id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `tools/call` about to run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolCall {
    /// The MCP server (its resource identifier).
    pub server: String,
    /// The tool's name.
    pub tool: String,
    /// The call's arguments (a JSON object; absent arguments are an empty object).
    pub arguments: Map<String, Value>,
    /// The tool's annotations as its server lists them.
    pub annotations: ToolAnnotations,
    /// The MCP session the call belongs to, when the transport has sessions.
    pub session: Option<SessionId>,
}

impl ToolCall {
    /// A call of `tool` on `server` with `arguments`.
    pub fn new(
        server: impl Into<String>,
        tool: impl Into<String>,
        arguments: Map<String, Value>,
    ) -> Self {
        Self {
            server: server.into(),
            tool: tool.into(),
            arguments,
            annotations: ToolAnnotations::default(),
            session: None,
        }
    }

    /// Sets the annotations.
    #[must_use]
    pub fn with_annotations(mut self, annotations: ToolAnnotations) -> Self {
        self.annotations = annotations;
        self
    }

    /// Sets the session.
    #[must_use]
    pub fn in_session(mut self, session: SessionId) -> Self {
        self.session = Some(session);
        self
    }
}

/// What the session already did, as policies see it in the request context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionContext {
    /// Tools called so far (allowed calls only), with their counts.
    pub calls: BTreeMap<String, u64>,
    /// All allowed calls so far.
    pub total_calls: u64,
    /// Destructive calls so far (by the tools' annotations).
    pub destructive_calls: u64,
    /// Labels raised by earlier calls and their results (`secret_read`,
    /// `untrusted_content`, ...).
    pub labels: BTreeSet<String>,
}

impl SessionContext {
    /// How many times `tool` was called in this session.
    pub fn count(&self, tool: &str) -> u64 {
        self.calls.get(tool).copied().unwrap_or(0)
    }

    /// Whether `label` was raised in this session.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.contains(label)
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The call may run.
    Allow,
    /// The call must not run.
    Deny,
}

/// The outcome of one authorization: the effect, the policies that decided it, and reasons an
/// operator (and, for denials, the agent) can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// Ids of the policies that decided (the permits for an allow, the forbids for an explicit
    /// deny; empty for a default deny, when nothing permitted the call).
    pub policies: Vec<String>,
    /// Reasons in words: the deciding policies' reasons (their `@reason` annotation), or what
    /// failed (an evaluation error is a deny with its message).
    pub reasons: Vec<String>,
    /// Session labels in force when the call was decided.
    pub labels: BTreeSet<String>,
}

impl Decision {
    /// An allow by `policies`.
    pub fn allow(policies: Vec<String>, reasons: Vec<String>) -> Self {
        Self {
            effect: Effect::Allow,
            policies,
            reasons,
            labels: BTreeSet::new(),
        }
    }

    /// A deny by `policies` (empty: nothing permitted the call) with `reasons`.
    pub fn deny(policies: Vec<String>, reasons: Vec<String>) -> Self {
        Self {
            effect: Effect::Deny,
            policies,
            reasons,
            labels: BTreeSet::new(),
        }
    }

    /// A deny for one reason, decided by no policy (an error, a cap, a changed tool).
    pub fn deny_because(reason: impl Into<String>) -> Self {
        Self::deny(Vec::new(), vec![reason.into()])
    }

    /// Whether the call may run.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The text to show the agent for a denial: the reasons joined, never policy internals
    /// beyond the reasons the policy author wrote.
    pub fn reason_text(&self) -> String {
        if self.reasons.is_empty() {
            "no policy permits this call".to_owned()
        } else {
            self.reasons.join("; ")
        }
    }
}
