//! RFC 8414 authorization-server metadata and RFC 9728 protected-resource metadata.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::url_policy::{UrlError, UrlPolicy};

// The URNs under their earlier names; defined once in `crate::urn`.
pub use crate::urn::{
    ID_JAG as ID_JAG_TOKEN_TYPE, ID_JAG_PROFILE, JWT_BEARER as JWT_BEARER_GRANT,
    TOKEN_EXCHANGE as TOKEN_EXCHANGE_GRANT,
};

/// The largest metadata document accepted: 256 KiB.
pub const MAX_DOCUMENT_LEN: usize = 256 * 1024;

/// Why a metadata document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Larger than [`MAX_DOCUMENT_LEN`].
    #[error("metadata document is larger than {MAX_DOCUMENT_LEN} bytes")]
    TooLarge,
    /// Not a strict JSON object.
    #[error("metadata is not a JSON object: {0}")]
    Json(ema_jose::JsonError),
    /// A member has the wrong type, or a required member is missing.
    #[error("metadata member is missing or malformed: {0}")]
    Member(String),
    /// `issuer` differs from the issuer the metadata URL was built from (MD-5).
    #[error("metadata `issuer` is `{found}`, expected `{expected}`")]
    IssuerMismatch {
        /// The document's `issuer`.
        found: String,
        /// The expected issuer.
        expected: String,
    },
    /// `resource` does not match the URL the client used (D-9).
    #[error("metadata `resource` is `{found}`, which does not cover `{used}`")]
    ResourceMismatch {
        /// The document's `resource`.
        found: String,
        /// The URL the client used.
        used: String,
    },
    /// `authorization_servers` is missing or empty (MD-6).
    #[error("metadata names no authorization server")]
    NoAuthorizationServers,
    /// A URL breaks the policy (MD-8).
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Client metadata lists the ID-JAG grant profile but its `grant_types` lack a grant the
    /// profile needs (MD-7).
    #[error("client metadata lists the ID-JAG profile but `grant_types` lacks `{missing}`")]
    ProfileGrantTypes {
        /// The first missing grant type.
        missing: &'static str,
    },
}

fn parse_document<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MetadataError> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(MetadataError::TooLarge);
    }
    let map = ema_jose::parse_json_object(bytes, 16).map_err(MetadataError::Json)?;
    serde_json::from_value(Value::Object(map)).map_err(|e| MetadataError::Member(e.to_string()))
}

/// RFC 8414 authorization-server metadata with the EMA members. Unknown members are kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthorizationServerMetadata {
    /// `issuer` (required).
    pub issuer: String,
    /// `authorization_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `registration_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// `scopes_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// `response_types_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types_supported: Option<Vec<String>>,
    /// `grant_types_supported` (MD-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    /// `token_endpoint_auth_methods_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// `token_endpoint_auth_signing_alg_values_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    /// `code_challenge_methods_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// `authorization_grant_profiles_supported` (MD-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_grant_profiles_supported: Option<Vec<String>>,
    /// `client_id_metadata_document_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
    /// `dpop_signing_alg_values_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// `identity_chaining_requested_token_types_supported` (IdP metadata, MD-4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_chaining_requested_token_types_supported: Option<Vec<String>>,
    /// Every other member, unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn has(list: Option<&Vec<String>>, value: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|v| v == value))
}

impl AuthorizationServerMetadata {
    /// Metadata for `issuer` with its token endpoint.
    pub fn new(issuer: impl Into<String>, token_endpoint: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            token_endpoint: Some(token_endpoint.into()),
            ..Self::default()
        }
    }

    /// Advertises the ID-JAG grant profile (MD-1) and, as MD-2 requires, the jwt-bearer grant.
    #[must_use]
    pub fn with_id_jag_profile(mut self) -> Self {
        push_unique(
            &mut self.authorization_grant_profiles_supported,
            ID_JAG_PROFILE,
        );
        push_unique(&mut self.grant_types_supported, JWT_BEARER_GRANT);
        self
    }

    /// Parses a fetched document strictly (no duplicate members, size cap).
    pub fn from_json(bytes: &[u8]) -> Result<Self, MetadataError> {
        parse_document(bytes)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Validates a fetched document: `issuer` is exactly the issuer the URL was built from
    /// (MD-5, D-12), and every endpoint URL passes `policy` (MD-8). A `token_endpoint` is
    /// required.
    pub fn validate(&self, expected_issuer: &str, policy: &UrlPolicy) -> Result<(), MetadataError> {
        if self.issuer != expected_issuer {
            return Err(MetadataError::IssuerMismatch {
                found: self.issuer.clone(),
                expected: expected_issuer.to_owned(),
            });
        }
        let issuer = policy.check("issuer", &self.issuer)?;
        if issuer.query().is_some() {
            return Err(UrlError::Forbidden { field: "issuer" }.into());
        }
        let token = self
            .token_endpoint
            .as_deref()
            .ok_or_else(|| MetadataError::Member("`token_endpoint` is missing".into()))?;
        policy.check("token_endpoint", token)?;
        for (field, value) in [
            ("jwks_uri", &self.jwks_uri),
            ("authorization_endpoint", &self.authorization_endpoint),
            ("registration_endpoint", &self.registration_endpoint),
        ] {
            if let Some(v) = value {
                policy.check(field, v)?;
            }
        }
        Ok(())
    }

    /// Whether the server takes ID-JAGs (CL-3): it lists the ID-JAG grant profile; or, when it
    /// lists no profiles at all, its grant types include jwt-bearer (as the MCP conformance
    /// suite's mock server does).
    pub fn supports_id_jag(&self) -> bool {
        match &self.authorization_grant_profiles_supported {
            Some(profiles) => profiles.iter().any(|p| p == ID_JAG_PROFILE),
            None => has(self.grant_types_supported.as_ref(), JWT_BEARER_GRANT),
        }
    }

    /// Whether the document is consistent with MD-2: advertising the profile implies the
    /// jwt-bearer grant.
    pub fn is_md2_consistent(&self) -> bool {
        !has(
            self.authorization_grant_profiles_supported.as_ref(),
            ID_JAG_PROFILE,
        ) || has(self.grant_types_supported.as_ref(), JWT_BEARER_GRANT)
    }
}

fn push_unique(list: &mut Option<Vec<String>>, value: &str) {
    let list = list.get_or_insert_with(Vec::new);
    if !list.iter().any(|v| v == value) {
        list.push(value.to_owned());
    }
}

/// RFC 9728 protected-resource metadata. Unknown members are kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProtectedResourceMetadata {
    /// `resource` (required).
    pub resource: String,
    /// `authorization_servers` (at least one for MCP, MD-6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `scopes_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// `bearer_methods_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_methods_supported: Option<Vec<String>>,
    /// `resource_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// `dpop_bound_access_tokens_required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_bound_access_tokens_required: Option<bool>,
    /// Every other member, unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ProtectedResourceMetadata {
    /// Metadata for `resource` protected by `authorization_servers`, bearer tokens in the
    /// `Authorization` header only (RS-5).
    pub fn new<S: Into<String>>(
        resource: impl Into<String>,
        authorization_servers: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: authorization_servers.into_iter().map(Into::into).collect(),
            bearer_methods_supported: Some(vec!["header".to_owned()]),
            ..Self::default()
        }
    }

    /// Sets `scopes_supported`.
    #[must_use]
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes_supported = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Parses a fetched document strictly.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MetadataError> {
        parse_document(bytes)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Validates a fetched document against the URL the client used to reach the resource
    /// (CL-1, D-9): `resource` equals it, or has the same origin and a path that is a
    /// segment-wise prefix of it; at least one authorization server (MD-6); URLs per `policy`.
    pub fn validate(&self, used: &Url, policy: &UrlPolicy) -> Result<(), MetadataError> {
        let resource = policy.check("resource", &self.resource)?;
        let mismatch = || MetadataError::ResourceMismatch {
            found: self.resource.clone(),
            used: used.as_str().to_owned(),
        };
        if resource.origin() != used.origin() || resource.query().is_some() {
            return Err(mismatch());
        }
        let (rp, up) = (resource.path(), used.path());
        let covered = rp == up
            || rp == "/"
            || (up.starts_with(rp)
                && (rp.ends_with('/') || up.as_bytes().get(rp.len()) == Some(&b'/')));
        if !covered {
            return Err(mismatch());
        }
        if self.authorization_servers.is_empty() {
            return Err(MetadataError::NoAuthorizationServers);
        }
        for server in &self.authorization_servers {
            policy.check("authorization_servers", server)?;
        }
        if let Some(jwks) = &self.jwks_uri {
            policy.check("jwks_uri", jwks)?;
        }
        Ok(())
    }
}

/// RFC 7591 client metadata, as a client registers it (DCR) or publishes it (a Client ID
/// Metadata Document), with the EMA member `authorization_grant_profiles_supported` (MD-7).
/// Only the members EMA reads are typed; the others are kept in `extra`.
///
/// ```
/// use ema_metadata::{ClientMetadata, MetadataError};
///
/// // The client's side: declaring the profile declares both grants it needs.
/// let desk = ClientMetadata::new("https://desk.example/client.json").with_id_jag_profile();
/// assert!(desk.validate().is_ok());
///
/// // The authorization server's side: a profile without the grants is refused (MD-7).
/// let doc = br#"{"client_id":"https://x.example/c.json",
///     "grant_types":["urn:ietf:params:oauth:grant-type:jwt-bearer"],
///     "authorization_grant_profiles_supported":["urn:ietf:params:oauth:grant-profile:id-jag"]}"#;
/// let partial = ClientMetadata::from_json(doc)?;
/// assert!(matches!(partial.validate(), Err(MetadataError::ProfileGrantTypes { .. })));
/// # Ok::<(), MetadataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientMetadata {
    /// `client_id` (for a Client ID Metadata Document, the document's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `grant_types`; RFC 7591 §2 reads an absent member as `["authorization_code"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    /// `authorization_grant_profiles_supported` (MD-7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_grant_profiles_supported: Option<Vec<String>>,
    /// `token_endpoint_auth_method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Every other member, as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ClientMetadata {
    /// Metadata for the client `client_id`, with no other member.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: Some(client_id.into()),
            ..Self::default()
        }
    }

    /// Lists the ID-JAG grant profile and the two grants it needs, token exchange (at the IdP)
    /// and jwt-bearer (at the authorization server), in `grant_types` (MD-7).
    #[must_use]
    pub fn with_id_jag_profile(mut self) -> Self {
        push_unique(
            &mut self.authorization_grant_profiles_supported,
            ID_JAG_PROFILE,
        );
        push_unique(&mut self.grant_types, TOKEN_EXCHANGE_GRANT);
        push_unique(&mut self.grant_types, JWT_BEARER_GRANT);
        self
    }

    /// Whether `authorization_grant_profiles_supported` lists the ID-JAG profile.
    pub fn lists_id_jag_profile(&self) -> bool {
        self.authorization_grant_profiles_supported
            .as_ref()
            .is_some_and(|p| p.iter().any(|p| p == ID_JAG_PROFILE))
    }

    /// Parses a registration request or a fetched document strictly (no duplicate members,
    /// size cap).
    pub fn from_json(bytes: &[u8]) -> Result<Self, MetadataError> {
        parse_document(bytes)
    }

    /// The metadata as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// MD-7: metadata that lists the ID-JAG profile must include token exchange and
    /// jwt-bearer in `grant_types` (an absent `grant_types` means `authorization_code` alone);
    /// metadata that does not list it is not constrained here.
    pub fn validate(&self) -> Result<(), MetadataError> {
        if !self.lists_id_jag_profile() {
            return Ok(());
        }
        let grants = self.grant_types.as_deref().unwrap_or_default();
        for needed in [TOKEN_EXCHANGE_GRANT, JWT_BEARER_GRANT] {
            if !grants.iter().any(|g| g == needed) {
                return Err(MetadataError::ProfileGrantTypes { missing: needed });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest_as() -> Value {
        json!({"issuer":"https://auth.tasks.example","token_endpoint":"https://auth.tasks.example/token",
            "jwks_uri":"https://auth.tasks.example/jwks",
            "grant_types_supported":["authorization_code","urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "authorization_grant_profiles_supported":["urn:ietf:params:oauth:grant-profile:id-jag"],
            "token_endpoint_auth_methods_supported":["client_secret_basic","private_key_jwt"],
            "client_id_metadata_document_supported":true,"code_challenge_methods_supported":["S256"],
            "x_vendor":{"a":[1,2]}})
    }

    #[test]
    fn as_metadata_round_trips_and_keeps_unknown_members() {
        let m = AuthorizationServerMetadata::from_json(digest_as().to_string().as_bytes()).unwrap();
        assert!(m.supports_id_jag());
        assert!(m.is_md2_consistent());
        assert_eq!(m.extra.get("x_vendor"), Some(&json!({"a":[1,2]})));
        assert_eq!(m.to_json(), digest_as());
        assert_eq!(
            m.validate("https://auth.tasks.example", &UrlPolicy::https_only()),
            Ok(())
        );
    }

    #[test]
    fn md5_issuer_must_match_exactly() {
        let m = AuthorizationServerMetadata::from_json(digest_as().to_string().as_bytes()).unwrap();
        for other in [
            "https://auth.tasks.example/",
            "https://AUTH.tasks.example",
            "https://evil.example",
        ] {
            assert!(matches!(
                m.validate(other, &UrlPolicy::https_only()),
                Err(MetadataError::IssuerMismatch { .. })
            ));
        }
    }

    #[test]
    fn md8_endpoints_must_be_https() {
        let mut doc = digest_as();
        doc["token_endpoint"] = json!("http://auth.tasks.example/token");
        let m = AuthorizationServerMetadata::from_json(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            m.validate("https://auth.tasks.example", &UrlPolicy::https_only()),
            Err(MetadataError::Url(UrlError::NotHttps {
                field: "token_endpoint"
            }))
        );
    }

    #[test]
    fn cl3_profile_detection_and_fallback() {
        let mut m =
            AuthorizationServerMetadata::new("https://a.example", "https://a.example/token");
        assert!(!m.supports_id_jag());
        m.grant_types_supported = Some(vec![JWT_BEARER_GRANT.into()]);
        assert!(
            m.supports_id_jag(),
            "no profile list: fall back to grant types"
        );
        m.authorization_grant_profiles_supported = Some(vec!["urn:other".into()]);
        assert!(
            !m.supports_id_jag(),
            "a profile list without id-jag is a no"
        );
        let built =
            AuthorizationServerMetadata::new("https://a.example", "https://a.example/token")
                .with_id_jag_profile();
        assert!(built.supports_id_jag() && built.is_md2_consistent());
        let mut bad = built;
        bad.grant_types_supported = None;
        assert!(!bad.is_md2_consistent());
    }

    #[test]
    fn strict_parsing() {
        assert!(matches!(
            AuthorizationServerMetadata::from_json(br#"{"issuer":"a","issuer":"b"}"#),
            Err(MetadataError::Json(_))
        ));
        assert!(matches!(
            AuthorizationServerMetadata::from_json(br#"{"issuer":1}"#),
            Err(MetadataError::Member(_))
        ));
        assert!(matches!(
            AuthorizationServerMetadata::from_json(br#"{}"#),
            Err(MetadataError::Member(_))
        ));
        assert_eq!(
            AuthorizationServerMetadata::from_json(&vec![b' '; MAX_DOCUMENT_LEN + 1]),
            Err(MetadataError::TooLarge)
        );
    }

    #[test]
    fn d9_prm_resource_check() {
        let used = Url::parse("https://mcp.tasks.example/mcp").unwrap();
        let policy = UrlPolicy::https_only();
        let prm = |resource: &str| {
            ProtectedResourceMetadata::new(resource, ["https://auth.tasks.example"])
        };
        assert_eq!(
            prm("https://mcp.tasks.example/mcp").validate(&used, &policy),
            Ok(())
        );
        assert_eq!(
            prm("https://mcp.tasks.example/").validate(&used, &policy),
            Ok(())
        );
        assert_eq!(
            prm("https://mcp.tasks.example").validate(&used, &policy),
            Ok(())
        );
        let deeper = Url::parse("https://mcp.tasks.example/mcp/v1").unwrap();
        assert_eq!(
            prm("https://mcp.tasks.example/mcp").validate(&deeper, &policy),
            Ok(())
        );
        for bad in [
            "https://mcp.tasks.example/mc",
            "https://mcp.tasks.example/mcp/v2",
            "https://other.example/mcp",
            "https://mcp.tasks.example:8443/mcp",
        ] {
            assert!(
                matches!(
                    prm(bad).validate(&used, &policy),
                    Err(MetadataError::ResourceMismatch { .. })
                ),
                "{bad}"
            );
        }
        let none =
            ProtectedResourceMetadata::new("https://mcp.tasks.example/mcp", Vec::<String>::new());
        assert_eq!(
            none.validate(&used, &policy),
            Err(MetadataError::NoAuthorizationServers)
        );
        let round = prm("https://mcp.tasks.example/mcp").with_scopes(["tasks.read"]);
        assert_eq!(
            ProtectedResourceMetadata::from_json(round.to_json().to_string().as_bytes()).unwrap(),
            round
        );
    }
}
