//! The typed events of the trail, from the IdP issuing an ID-JAG to each tool decision.
//!
//! Events carry identifiers, never credentials: an ID-JAG's `jti` only as a [`JtiDigest`], an
//! access token only by its `jti`, a tool call's arguments as an [`ArgumentsDigest`] (the raw
//! arguments only for tools the operator listed in [`crate::RawArguments`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::{ArgumentsDigest, JtiDigest};

/// One event of the trail. Serialized as a JSON object tagged by `"kind"` (the variant name in
/// snake case, e.g. `"tool_decision"`), with the fields of its struct beside the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// The IdP issued an ID-JAG.
    IdJagIssued(IdJagIssued),
    /// The authorization server redeemed an ID-JAG for an access token.
    IdJagRedeemed(IdJagRedeemed),
    /// An MCP server accepted an access token.
    AccessTokenAccepted(AccessTokenAccepted),
    /// An MCP server refused a request's access token.
    AccessTokenRefused(AccessTokenRefused),
    /// A tool call was allowed or denied.
    ToolDecision(ToolDecision),
    /// An upstream tool's definition changed under existing policies.
    ToolDefinitionChanged(ToolDefinitionChanged),
    /// A downstream credential was handed to a tool.
    CredentialUsed(CredentialUsed),
    /// A downstream credential's refresh was attempted.
    CredentialRefreshed(CredentialRefreshed),
    /// A downstream credential was stored (connect flow or administrator).
    CredentialStored(CredentialStored),
    /// A downstream credential was deleted and revoked at its provider.
    CredentialRevoked(CredentialRevoked),
    /// Every downstream credential of a subject was revoked (offboarding).
    SubjectOffboarded(SubjectOffboarded),
    /// The authorization server changed its revocation ledger (RV-29).
    RevocationApplied(RevocationApplied),
    /// The authorization server received a security event (SSF push or Global Token
    /// Revocation), whatever became of it (RV-29).
    SecurityEventReceived(SecurityEventReceived),
    /// A downstream credential was refused to a revoked subject (RV-19).
    CredentialRefused(CredentialRefused),
    /// The health of an SSF stream the authorization server receives changed (RV-26).
    StreamHealthChanged(StreamHealthChanged),
}

impl AuditEvent {
    /// The `kind` tag this event is written with.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IdJagIssued(_) => "id_jag_issued",
            Self::IdJagRedeemed(_) => "id_jag_redeemed",
            Self::AccessTokenAccepted(_) => "access_token_accepted",
            Self::AccessTokenRefused(_) => "access_token_refused",
            Self::ToolDecision(_) => "tool_decision",
            Self::ToolDefinitionChanged(_) => "tool_definition_changed",
            Self::CredentialUsed(_) => "credential_used",
            Self::CredentialRefreshed(_) => "credential_refreshed",
            Self::CredentialStored(_) => "credential_stored",
            Self::CredentialRevoked(_) => "credential_revoked",
            Self::SubjectOffboarded(_) => "subject_offboarded",
            Self::RevocationApplied(_) => "revocation_applied",
            Self::SecurityEventReceived(_) => "security_event_received",
            Self::CredentialRefused(_) => "credential_refused",
            Self::StreamHealthChanged(_) => "stream_health_changed",
        }
    }

    /// Whether the event records something refused, changed or failed (a refused token, a
    /// denied call, a changed tool definition, a failed credential refresh or revocation): the
    /// [`crate::TracingSink`] logs these at `WARN`.
    pub fn is_alert(&self) -> bool {
        match self {
            Self::AccessTokenRefused(_)
            | Self::ToolDefinitionChanged(_)
            | Self::RevocationApplied(_)
            | Self::CredentialRefused(_) => true,
            Self::SecurityEventReceived(e) => !e.outcome.starts_with("accepted"),
            Self::StreamHealthChanged(e) => {
                matches!(e.to.as_str(), "overdue" | "paused" | "disabled")
            }
            Self::ToolDecision(d) => d.decision == Decision::Deny,
            Self::CredentialRefreshed(r) => r.error.is_some(),
            Self::CredentialRevoked(r) => r.outcome == RevocationOutcome::Failed,
            Self::SubjectOffboarded(o) => o
                .providers
                .iter()
                .any(|p| p.outcome == RevocationOutcome::Failed),
            Self::IdJagIssued(_)
            | Self::IdJagRedeemed(_)
            | Self::AccessTokenAccepted(_)
            | Self::CredentialUsed(_)
            | Self::CredentialStored(_) => false,
        }
    }
}

macro_rules! into_event {
    ($($ty:ident),*) => {$(
        impl From<$ty> for AuditEvent {
            fn from(e: $ty) -> Self {
                Self::$ty(e)
            }
        }
    )*};
}
into_event!(
    IdJagIssued,
    IdJagRedeemed,
    AccessTokenAccepted,
    AccessTokenRefused,
    ToolDecision,
    ToolDefinitionChanged,
    CredentialUsed,
    CredentialRefreshed,
    CredentialStored,
    CredentialRevoked,
    SubjectOffboarded,
    RevocationApplied,
    SecurityEventReceived,
    CredentialRefused,
    StreamHealthChanged
);

/// The health of an SSF stream the authorization server receives changed (RV-26): verified,
/// unverified, or, as an alert, overdue, paused or disabled (its users' access tokens then
/// fall back to the 300 s default, RV-24).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamHealthChanged {
    /// The transmitter's issuer.
    pub transmitter: String,
    /// The health before: `unverified`, `verified`, `overdue`, `paused` or `disabled`.
    pub from: String,
    /// The health now.
    pub to: String,
}

impl StreamHealthChanged {
    /// The change of `transmitter`'s stream from `from` to `to`.
    pub fn new(
        transmitter: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
    ) -> Self {
        Self {
            transmitter: transmitter.into(),
            from: from.into(),
            to: to.into(),
        }
    }
}

/// A security event the authorization server received (RV-29): an SSF Security Event Token
/// pushed by a transmitter, or a Global Token Revocation call. The subject is named by a
/// digest only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SecurityEventReceived {
    /// How it came: `ssf` or `gtr`.
    pub source: String,
    /// The transmitter's (or the GTR caller's) issuer.
    pub issuer: String,
    /// The SET's `jti`, when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The event type URI, when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// SHA-256 (hex) of the subject, when it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_digest: Option<String>,
    /// What became of it: `accepted:applied`, `accepted:no_match`, `accepted:ignored`,
    /// `accepted:duplicate`, `refused:<code>`, `unavailable`, ...
    pub outcome: String,
}

impl SecurityEventReceived {
    /// The event of `source` from `issuer` with `outcome`.
    pub fn new(
        source: impl Into<String>,
        issuer: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            issuer: issuer.into(),
            jti: None,
            event_type: None,
            subject_digest: None,
            outcome: outcome.into(),
        }
    }

    /// Sets the `jti`.
    #[must_use]
    pub fn with_jti(mut self, jti: impl Into<String>) -> Self {
        self.jti = Some(jti.into());
        self
    }

    /// Sets the event type.
    #[must_use]
    pub fn with_event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Sets the subject, hashed here and never stored.
    #[must_use]
    pub fn with_subject(mut self, subject: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, subject.as_bytes());
        self.subject_digest = Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect());
        self
    }
}

/// The authorization server changed its revocation ledger (RV-29): a watermark raised, a
/// subject disabled or enabled, or a token denied. The subject is named by a digest only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RevocationApplied {
    /// Where the command came from: `admin`, `rfc7009`, `ssf`, `gtr`.
    pub source: String,
    /// The change: `watermark`, `disabled`, `enabled` or `token_denied`.
    pub change: String,
    /// The subject space: `idp` or `local` (`token` for a token denial).
    pub space: String,
    /// The issuer of the subject (the IdP, or this AS) or of the denied token.
    pub issuer: String,
    /// SHA-256 (hex) of the subject, or of the denied token's `jti`.
    pub subject_digest: String,
    /// The watermark or the denial's end, Unix seconds, when the change has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// Why (`session_revoked`, `account_disabled`, `admin`, ...), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RevocationApplied {
    /// The event; `subject` is hashed here and never stored.
    pub fn new(
        source: impl Into<String>,
        change: impl Into<String>,
        space: impl Into<String>,
        issuer: impl Into<String>,
        subject: &str,
    ) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, subject.as_bytes());
        let subject_digest = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            source: source.into(),
            change: change.into(),
            space: space.into(),
            issuer: issuer.into(),
            subject_digest,
            at: None,
            reason: None,
        }
    }

    /// Sets the time.
    #[must_use]
    pub fn with_at(mut self, at: u64) -> Self {
        self.at = Some(at);
        self
    }

    /// Sets the reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// The IdP issued an ID-JAG (token exchange, RFC 8693).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IdJagIssued {
    /// The IdP's issuer (the ID-JAG's `iss`).
    pub issuer: String,
    /// The subject the ID-JAG names (`sub`).
    pub subject: String,
    /// The client the ID-JAG was issued to (`client_id`).
    pub client_id: String,
    /// The authorization server it is for (`aud`).
    pub audience: String,
    /// The MCP server it is for (`resource`), when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// [`JtiDigest::of`] the issuer and the ID-JAG's `jti`.
    pub id_jag: JtiDigest,
}

impl IdJagIssued {
    /// The event; `id_jag` is computed from `issuer` and the ID-JAG's `jti`.
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        client_id: impl Into<String>,
        audience: impl Into<String>,
        id_jag_jti: &str,
    ) -> Self {
        let issuer = issuer.into();
        let id_jag = JtiDigest::of(&issuer, id_jag_jti);
        Self {
            issuer,
            subject: subject.into(),
            client_id: client_id.into(),
            audience: audience.into(),
            resource: None,
            scopes: Vec::new(),
            id_jag,
        }
    }

    /// Sets the resource.
    #[must_use]
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Sets the scopes.
    #[must_use]
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

/// The authorization server redeemed an ID-JAG (jwt-bearer grant, RFC 7523) and issued an access
/// token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IdJagRedeemed {
    /// The IdP that issued the ID-JAG (its `iss`).
    pub idp_issuer: String,
    /// The subject (the ID-JAG's `sub`).
    pub subject: String,
    /// [`JtiDigest::of`] the IdP's issuer and the ID-JAG's `jti`: equal to the IdP's
    /// [`IdJagIssued::id_jag`].
    pub id_jag: JtiDigest,
    /// The client that redeemed it.
    pub client_id: String,
    /// The MCP server the access token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The scopes of the access token.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The access token's `jti`: the MCP server's events name the same value.
    pub access_token_jti: String,
    /// The grant redeemed, when not the jwt-bearer grant (absent): `authorization_code` for the
    /// MCP code flow, whose `idp_issuer`, `subject` and `id_jag` then name the IdP sign-in the
    /// code came from (the ID token's issuer, `sub`, and `jti` or `sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
}

impl IdJagRedeemed {
    /// The event; `id_jag` is computed from `idp_issuer` and the ID-JAG's `jti`.
    pub fn new(
        idp_issuer: impl Into<String>,
        subject: impl Into<String>,
        id_jag_jti: &str,
        client_id: impl Into<String>,
        access_token_jti: impl Into<String>,
    ) -> Self {
        let idp_issuer = idp_issuer.into();
        let id_jag = JtiDigest::of(&idp_issuer, id_jag_jti);
        Self {
            idp_issuer,
            subject: subject.into(),
            id_jag,
            client_id: client_id.into(),
            resource: None,
            scopes: Vec::new(),
            access_token_jti: access_token_jti.into(),
            grant_type: None,
        }
    }

    /// Names the grant redeemed (absent: the jwt-bearer grant).
    #[must_use]
    pub fn with_grant_type(mut self, grant_type: impl Into<String>) -> Self {
        self.grant_type = Some(grant_type.into());
        self
    }

    /// Sets the resource.
    #[must_use]
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Sets the scopes.
    #[must_use]
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

/// An MCP server accepted an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccessTokenAccepted {
    /// The access token's `jti`.
    pub access_token_jti: String,
    /// The subject (`sub`).
    pub subject: String,
    /// The client (`client_id`).
    pub client_id: String,
    /// The resource the request was for.
    pub resource: String,
    /// The token's scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl AccessTokenAccepted {
    /// The event.
    pub fn new(
        access_token_jti: impl Into<String>,
        subject: impl Into<String>,
        client_id: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            access_token_jti: access_token_jti.into(),
            subject: subject.into(),
            client_id: client_id.into(),
            resource: resource.into(),
            scopes: Vec::new(),
        }
    }

    /// Sets the scopes.
    #[must_use]
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

/// An MCP server refused a request's access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccessTokenRefused {
    /// The token's `jti` when it could be read (an expired token has one, a malformed one not).
    /// It is the token's identifier, not the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_jti: Option<String>,
    /// The resource the request was for.
    pub resource: String,
    /// The OAuth error code returned (`invalid_token`, `insufficient_scope`, ...).
    pub error: String,
    /// A short reason an operator can read. Never put the token here.
    pub reason: String,
}

impl AccessTokenRefused {
    /// The event.
    pub fn new(
        resource: impl Into<String>,
        error: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            access_token_jti: None,
            resource: resource.into(),
            error: error.into(),
            reason: reason.into(),
        }
    }

    /// Sets the token's `jti`.
    #[must_use]
    pub fn with_jti(mut self, jti: impl Into<String>) -> Self {
        self.access_token_jti = Some(jti.into());
        self
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The call may run.
    Allow,
    /// The call was refused.
    Deny,
}

/// A tool call was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolDecision {
    /// The `jti` of the access token the call came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_jti: Option<String>,
    /// The principal's subject.
    pub subject: String,
    /// The principal's client.
    pub client_id: String,
    /// The MCP session (`Mcp-Session-Id`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The MCP server (its resource identifier or configured name).
    pub server: String,
    /// The tool name.
    pub tool: String,
    /// [`ArgumentsDigest::of`] the call's arguments.
    pub arguments_digest: ArgumentsDigest,
    /// Allow or deny.
    pub decision: Decision,
    /// The ids of the policies that decided.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Reasons an operator can read.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The session's labels when the call was decided (e.g. `secret_read`).
    #[serde(default)]
    pub labels: Vec<String>,
    /// The raw arguments. [`crate::AuditLog::append`] removes them unless the operator listed
    /// this tool in [`crate::RawArguments`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
}

impl ToolDecision {
    /// The event. `arguments` are digested; they are kept for the trail only while the log's
    /// [`crate::RawArguments`] lists `tool`.
    pub fn new(
        subject: impl Into<String>,
        client_id: impl Into<String>,
        server: impl Into<String>,
        tool: impl Into<String>,
        arguments: &Value,
        decision: Decision,
    ) -> Self {
        Self {
            access_token_jti: None,
            subject: subject.into(),
            client_id: client_id.into(),
            session_id: None,
            server: server.into(),
            tool: tool.into(),
            arguments_digest: ArgumentsDigest::of(arguments),
            decision,
            policies: Vec::new(),
            reasons: Vec::new(),
            labels: Vec::new(),
            arguments: Some(arguments.clone()),
        }
    }

    /// Sets the access token's `jti`.
    #[must_use]
    pub fn with_jti(mut self, jti: impl Into<String>) -> Self {
        self.access_token_jti = Some(jti.into());
        self
    }

    /// Sets the MCP session id.
    #[must_use]
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets the deciding policy ids.
    #[must_use]
    pub fn with_policies<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        self.policies = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the reasons.
    #[must_use]
    pub fn with_reasons<S: Into<String>>(mut self, reasons: impl IntoIterator<Item = S>) -> Self {
        self.reasons = reasons.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the session labels.
    #[must_use]
    pub fn with_labels<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.labels = labels.into_iter().map(Into::into).collect();
        self
    }
}

/// What was done about a changed tool definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DefinitionResponse {
    /// Recorded and alerted; the tool stays callable.
    Alerted,
    /// The tool is denied until an operator re-approves the new definition.
    DeniedUntilApproved,
}

/// An upstream tool's definition (name, description, input schema, annotations) changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolDefinitionChanged {
    /// The MCP server.
    pub server: String,
    /// The tool name.
    pub tool: String,
    /// The pinned definition's hash; `None` for a tool that was not there before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_hash: Option<String>,
    /// The new definition's hash; `None` for a tool that disappeared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_hash: Option<String>,
    /// The response applied.
    pub response: DefinitionResponse,
}

impl ToolDefinitionChanged {
    /// The event.
    pub fn new(
        server: impl Into<String>,
        tool: impl Into<String>,
        old_hash: Option<String>,
        new_hash: Option<String>,
        response: DefinitionResponse,
    ) -> Self {
        Self {
            server: server.into(),
            tool: tool.into(),
            old_hash,
            new_hash,
            response,
        }
    }
}

/// Whose downstream credential an event is about: (tenant, subject, provider). Never the
/// credential itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CredentialRef {
    /// The tenant.
    pub tenant: String,
    /// The subject within the tenant (the MCP server's local subject).
    pub subject: String,
    /// The downstream provider's configured id.
    pub provider: String,
}

impl CredentialRef {
    /// The reference.
    pub fn new(
        tenant: impl Into<String>,
        subject: impl Into<String>,
        provider: impl Into<String>,
    ) -> Self {
        Self {
            tenant: tenant.into(),
            subject: subject.into(),
            provider: provider.into(),
        }
    }
}

/// The kind of a downstream credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CredentialKind {
    /// An OAuth token set.
    Oauth,
    /// An administrator-provisioned static secret.
    Static,
}

/// How a downstream credential came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CredentialSource {
    /// The user connected it (OAuth authorization code + PKCE).
    Connect,
    /// An administrator provisioned it.
    Admin,
}

/// What revoking a credential at its provider came to (RFC 7009).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevocationOutcome {
    /// The provider confirmed it.
    Revoked,
    /// The provider cannot revoke (no endpoint, or a static secret): only the copy was deleted.
    NotSupported,
    /// The provider was unreachable or refused; the copy was deleted all the same.
    Failed,
}

/// A downstream credential was handed to a tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CredentialUsed {
    /// Whose, at which provider.
    #[serde(flatten)]
    pub credential: CredentialRef,
    /// Its kind.
    pub credential_kind: CredentialKind,
}

impl CredentialUsed {
    /// The event.
    pub fn new(credential: CredentialRef, credential_kind: CredentialKind) -> Self {
        Self {
            credential,
            credential_kind,
        }
    }
}

/// A downstream credential was refused because its owner's access is revoked (RV-19): not
/// handed out, not refreshed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CredentialRefused {
    /// Whose, at which provider.
    #[serde(flatten)]
    pub credential: CredentialRef,
    /// Why (no secret in it).
    pub reason: String,
}

impl CredentialRefused {
    /// The event.
    pub fn new(credential: CredentialRef, reason: impl Into<String>) -> Self {
        Self {
            credential,
            reason: reason.into(),
        }
    }
}

/// A downstream credential's refresh was attempted at its provider's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CredentialRefreshed {
    /// Whose, at which provider.
    #[serde(flatten)]
    pub credential: CredentialRef,
    /// Why it failed (never a secret); `None` when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CredentialRefreshed {
    /// A successful refresh.
    pub fn succeeded(credential: CredentialRef) -> Self {
        Self {
            credential,
            error: None,
        }
    }

    /// A failed refresh and why (no secret in `error`).
    pub fn failed(credential: CredentialRef, error: impl Into<String>) -> Self {
        Self {
            credential,
            error: Some(error.into()),
        }
    }
}

/// A downstream credential was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CredentialStored {
    /// Whose, at which provider.
    #[serde(flatten)]
    pub credential: CredentialRef,
    /// Its kind.
    pub credential_kind: CredentialKind,
    /// Connect flow or administrator.
    pub source: CredentialSource,
}

impl CredentialStored {
    /// The event.
    pub fn new(
        credential: CredentialRef,
        credential_kind: CredentialKind,
        source: CredentialSource,
    ) -> Self {
        Self {
            credential,
            credential_kind,
            source,
        }
    }
}

/// A downstream credential was deleted and revoked at its provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CredentialRevoked {
    /// Whose, at which provider.
    #[serde(flatten)]
    pub credential: CredentialRef,
    /// What the provider's revocation came to.
    pub outcome: RevocationOutcome,
    /// Why it failed (never a secret), for [`RevocationOutcome::Failed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CredentialRevoked {
    /// The event.
    pub fn new(credential: CredentialRef, outcome: RevocationOutcome) -> Self {
        Self {
            credential,
            outcome,
            detail: None,
        }
    }

    /// Sets why it failed.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// One provider's line of an offboarding report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProviderRevocation {
    /// The provider's configured id.
    pub provider: String,
    /// What its revocation came to.
    pub outcome: RevocationOutcome,
    /// Why it failed (never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ProviderRevocation {
    /// The line.
    pub fn new(provider: impl Into<String>, outcome: RevocationOutcome) -> Self {
        Self {
            provider: provider.into(),
            outcome,
            detail: None,
        }
    }

    /// Sets why it failed.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Every downstream credential of a subject was deleted and revoked (offboarding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubjectOffboarded {
    /// The tenant.
    pub tenant: String,
    /// The subject.
    pub subject: String,
    /// Each deleted credential's provider and its revocation's outcome.
    #[serde(default)]
    pub providers: Vec<ProviderRevocation>,
}

impl SubjectOffboarded {
    /// The event.
    pub fn new(
        tenant: impl Into<String>,
        subject: impl Into<String>,
        providers: Vec<ProviderRevocation>,
    ) -> Self {
        Self {
            tenant: tenant.into(),
            subject: subject.into(),
            providers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_tagged_by_kind_and_round_trip() {
        let events: Vec<AuditEvent> = vec![
            IdJagIssued::new("https://idp", "u1", "c1", "https://as", "j1")
                .with_resource("https://mcp")
                .with_scopes(["read"])
                .into(),
            IdJagRedeemed::new("https://idp", "u1", "j1", "c1", "at-1").into(),
            AccessTokenAccepted::new("at-1", "u1", "c1", "https://mcp").into(),
            AccessTokenRefused::new("https://mcp", "invalid_token", "expired")
                .with_jti("at-2")
                .into(),
            ToolDecision::new("u1", "c1", "mcp", "sql", &json!({"q": 1}), Decision::Deny)
                .with_policies(["p1"])
                .into(),
            ToolDefinitionChanged::new(
                "mcp",
                "sql",
                Some("h1".into()),
                Some("h2".into()),
                DefinitionResponse::DeniedUntilApproved,
            )
            .into(),
            CredentialUsed::new(
                CredentialRef::new("acme", "u1", "notes"),
                CredentialKind::Oauth,
            )
            .into(),
            CredentialRefreshed::succeeded(CredentialRef::new("acme", "u1", "notes")).into(),
            CredentialRefreshed::failed(CredentialRef::new("acme", "u1", "notes"), "invalid_grant")
                .into(),
            CredentialStored::new(
                CredentialRef::new("acme", "u1", "db"),
                CredentialKind::Static,
                CredentialSource::Admin,
            )
            .into(),
            CredentialRevoked::new(
                CredentialRef::new("acme", "u1", "notes"),
                RevocationOutcome::Failed,
            )
            .with_detail("unavailable")
            .into(),
            SubjectOffboarded::new(
                "acme",
                "u1",
                vec![
                    ProviderRevocation::new("notes", RevocationOutcome::Revoked),
                    ProviderRevocation::new("db", RevocationOutcome::NotSupported),
                ],
            )
            .into(),
        ];
        for event in events {
            let value = serde_json::to_value(&event).unwrap();
            assert_eq!(value["kind"], event.kind());
            let back: AuditEvent = serde_json::from_value(value).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn the_same_jti_links_issuance_and_redemption() {
        let issued = IdJagIssued::new("https://idp", "u1", "c1", "https://as", "j1");
        let redeemed = IdJagRedeemed::new("https://idp", "u1", "j1", "c1", "at-1");
        assert_eq!(issued.id_jag, redeemed.id_jag);
        assert!(!serde_json::to_string(&issued).unwrap().contains("\"j1\""));
    }

    #[test]
    fn alerts() {
        let allow = ToolDecision::new("u", "c", "s", "t", &json!({}), Decision::Allow);
        let mut deny = allow.clone();
        deny.decision = Decision::Deny;
        assert!(!AuditEvent::from(allow).is_alert());
        assert!(AuditEvent::from(deny).is_alert());
        assert!(AuditEvent::from(AccessTokenRefused::new("r", "invalid_token", "x")).is_alert());
        let who = CredentialRef::new("acme", "u1", "notes");
        assert!(!AuditEvent::from(CredentialRefreshed::succeeded(who.clone())).is_alert());
        assert!(AuditEvent::from(CredentialRefreshed::failed(who.clone(), "x")).is_alert());
        assert!(
            !AuditEvent::from(CredentialRevoked::new(
                who.clone(),
                RevocationOutcome::Revoked
            ))
            .is_alert()
        );
        assert!(
            AuditEvent::from(CredentialRevoked::new(who, RevocationOutcome::Failed)).is_alert()
        );
        let line = |outcome| vec![ProviderRevocation::new("notes", outcome)];
        assert!(
            !AuditEvent::from(SubjectOffboarded::new(
                "acme",
                "u1",
                line(RevocationOutcome::NotSupported)
            ))
            .is_alert()
        );
        assert!(
            AuditEvent::from(SubjectOffboarded::new(
                "acme",
                "u1",
                line(RevocationOutcome::Failed)
            ))
            .is_alert()
        );
    }

    #[test]
    fn credential_events_name_the_owner_flat() {
        let value = serde_json::to_value(AuditEvent::from(CredentialStored::new(
            CredentialRef::new("acme", "u1", "notes"),
            CredentialKind::Oauth,
            CredentialSource::Connect,
        )))
        .unwrap();
        assert_eq!(
            value,
            json!({"kind": "credential_stored", "tenant": "acme", "subject": "u1",
                   "provider": "notes", "credential_kind": "oauth", "source": "connect"})
        );
    }
}
