//! Typed errors, one enum per hop, saying which hop failed and why. No variant carries a token
//! or a secret (SEC-10).

use std::fmt;

use ema_jose::{SignError, UnixTime};
use ema_jwks::FetchError;
use ema_metadata::{ChallengeError, ErrorCode, MetadataError};

use crate::scope_report::ScopeReport;

/// An RFC 6749 §5.2 error response as a server sent it, its `error` parsed into an
/// [`ErrorCode`] (a code this library has no name for is kept as [`ErrorCode::Other`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthErrorResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `error` code, when the body carried a valid one (RFC 6749 §5.2 characters).
    pub error: Option<ErrorCode>,
    /// The `error_description`, when the body carried one.
    pub error_description: Option<String>,
    /// The `error_uri`, when the body carried one.
    pub error_uri: Option<String>,
    /// `max_age` of an `insufficient_user_authentication` error (RFC 9470 §3).
    pub max_age: Option<u64>,
    /// `acr_values` of an `insufficient_user_authentication` error (RFC 9470 §3).
    pub acr_values: Option<String>,
}

impl OAuthErrorResponse {
    /// Reads an error body (a JSON object; anything else leaves the fields empty).
    pub fn from_body(status: u16, body: &[u8]) -> Self {
        let object = ema_jose::parse_json_object(body, 4).ok();
        let text = |name: &str| {
            object
                .as_ref()
                .and_then(|o| o.get(name))
                .and_then(serde_json::Value::as_str)
                .map(|s| s.chars().take(512).collect::<String>())
        };
        Self {
            status,
            error: text("error").and_then(|e| ErrorCode::parse(&e).ok()),
            error_description: text("error_description"),
            error_uri: text("error_uri"),
            max_age: object
                .as_ref()
                .and_then(|o| o.get("max_age"))
                .and_then(serde_json::Value::as_u64),
            acr_values: text("acr_values"),
        }
    }

    /// The `error` code, when the body carried one.
    pub fn oauth_code(&self) -> Option<&ErrorCode> {
        self.error.as_ref()
    }

    /// Whether the `error` code is `code`.
    pub fn is(&self, code: &ErrorCode) -> bool {
        self.error.as_ref() == Some(code)
    }
}

impl fmt::Display for OAuthErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(error) = &self.error {
            write!(f, " `{error}`")?;
        }
        if let Some(description) = &self.error_description {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

/// The hop of the EMA flow an error comes from (the flow in `docs/requirements.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hop {
    /// Hop 0: protected-resource and authorization-server metadata.
    Discovery,
    /// Hop 2: token exchange at the IdP.
    TokenExchange,
    /// Hop 3: jwt-bearer grant at the MCP authorization server.
    JwtBearer,
    /// Hop 4: the MCP request itself.
    McpRequest,
    /// The authorization code flow at the MCP authorization server (servers without the
    /// ID-JAG profile).
    Authorization,
}

/// The authorization code flow failed ([`crate::EmaClient::authorize`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeFlowError {
    /// The client has no [`crate::CodeFlowOptions`].
    #[error(
        "the authorization server needs the authorization code flow, but this client has no code-flow options"
    )]
    NotConfigured,
    /// The authorization server's metadata has no `authorization_endpoint`.
    #[error("authorization server `{issuer}` has no authorization_endpoint")]
    NoAuthorizationEndpoint {
        /// The issuer.
        issuer: String,
    },
    /// The authorization server does not advertise PKCE `S256`.
    #[error(
        "authorization server `{issuer}` does not advertise PKCE S256 (code_challenge_methods_supported)"
    )]
    S256NotSupported {
        /// The issuer.
        issuer: String,
    },
    /// No client identity for this authorization server: not registered there, and no Client
    /// ID Metadata Document URL (or the server does not take them).
    #[error(
        "no client identity for authorization server `{issuer}`: register a client there{}",
        if *metadata_document_supported { " or configure a client ID metadata document URL" } else { " (it does not accept client ID metadata documents)" }
    )]
    NoClientIdentity {
        /// The issuer.
        issuer: String,
        /// Whether the server advertises `client_id_metadata_document_supported`.
        metadata_document_supported: bool,
    },
    /// The loopback redirect listener failed.
    #[error("the loopback redirect listener failed: {0}")]
    Listener(String),
    /// The "open this URL" hook failed.
    #[error("could not show the sign-in URL: {0}")]
    OpenUrl(String),
    /// No redirect came back in time.
    #[error(
        "the sign-in did not complete within {after:?} (no redirect reached the loopback listener)"
    )]
    Timeout {
        /// The listener's timeout.
        after: std::time::Duration,
    },
    /// The redirect carried another `state` than the request (CL-12): refused.
    #[error("the sign-in response's state does not match the request (refused)")]
    StateMismatch,
    /// The redirect's `iss` is not the authorization server's issuer, or is missing where the
    /// server says it sends it (RFC 9207): refused.
    #[error("the sign-in response's iss is {}, expected `{expected}` (RFC 9207; refused)", found.as_deref().map_or_else(|| "missing".to_owned(), |f| format!("`{f}`")))]
    IssuerMismatch {
        /// The issuer the request went to.
        expected: String,
        /// The `iss` received.
        found: Option<String>,
    },
    /// `access_denied`: the sign-in was refused, for an EMA authorization server because the
    /// IdP's admission policy does not assign the user to this server.
    #[error(
        "access denied: the user is not assigned to this MCP server (the identity provider's admission policy refused the sign-in{})",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    AccessDenied {
        /// The server's `error_description`.
        description: Option<String>,
    },
    /// The authorization server refused the request with another error (in the redirect).
    #[error(
        "the authorization server refused the sign-in: `{}`{}",
        .0.error.as_ref().map_or("invalid", ErrorCode::as_str),
        .0.error_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    Refused(OAuthErrorResponse),
    /// The redirect carried neither a code nor an error.
    #[error("the sign-in response carries no code")]
    MissingCode,
    /// A request for the token endpoint failed, or an endpoint URL breaks the fetch policy.
    #[error("token endpoint: {0}")]
    Token(FetchError),
    /// The token endpoint refused the code.
    #[error("the authorization server refused the code: {0}")]
    TokenRejected(OAuthErrorResponse),
    /// The token response is malformed.
    #[error("malformed token response: {reason}")]
    MalformedResponse {
        /// What is wrong.
        reason: &'static str,
    },
    /// `token_type` is not `Bearer`.
    #[error("token_type `{found}` is not Bearer")]
    UnsupportedTokenType {
        /// The type received.
        found: String,
    },
    /// The token response names another resource.
    #[error("the token is for resource `{found}`, not this server")]
    ResourceMismatch {
        /// The resource received.
        found: String,
    },
    /// Randomness or a client assertion could not be produced.
    #[error("signing or randomness failed: {0}")]
    Sign(SignError),
    /// [`crate::EmaClient::sign_in`]: the IdP's OpenID configuration could not be read or does
    /// not fit the IdP (CL-14, D-12).
    #[error("the IdP `{issuer}` cannot be used for sign-in: {reason}")]
    IdpDiscovery {
        /// The configured issuer.
        issuer: String,
        /// What is wrong.
        reason: String,
    },
    /// [`crate::EmaClient::sign_in`]: the ID token the IdP returned fails a check of OpenID
    /// Connect Core §3.1.3.7 (`iss`, `aud`, `exp`, `nonce`).
    #[error("the IdP's ID token is refused: {reason}")]
    IdTokenRefused {
        /// Which check failed.
        reason: &'static str,
    },
}

impl CodeFlowError {
    /// The OAuth error code, when the authorization server sent one.
    pub fn oauth_code(&self) -> Option<ErrorCode> {
        match self {
            Self::AccessDenied { .. } => Some(ErrorCode::AccessDenied),
            Self::Refused(e) | Self::TokenRejected(e) => e.oauth_code().cloned(),
            _ => None,
        }
    }
}

/// Hop 0 failed: the server's metadata could not be found or was not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The MCP server URL breaks the fetch policy.
    #[error("MCP server URL refused: {0}")]
    ServerUrl(FetchError),
    /// The unauthenticated request to the MCP server failed.
    #[error("probing the MCP server failed: {0}")]
    Probe(FetchError),
    /// The `WWW-Authenticate` header is malformed.
    #[error("MCP server challenge is malformed: {0}")]
    Challenge(ChallengeError),
    /// A metadata URL breaks the fetch policy.
    #[error("metadata URL `{url}` refused: {source}")]
    MetadataUrl {
        /// The URL as received.
        url: String,
        /// Why.
        source: FetchError,
    },
    /// A metadata request failed.
    #[error("fetching `{url}` failed: {source}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        source: FetchError,
    },
    /// No protected-resource metadata at any CL-1 location.
    #[error("no protected-resource metadata found (tried {tried:?})")]
    ResourceMetadataNotFound {
        /// The URLs tried, in order.
        tried: Vec<String>,
    },
    /// The protected-resource metadata is malformed or does not match the server (CL-1, D-9).
    #[error("protected-resource metadata at `{url}` refused: {source}")]
    ResourceMetadata {
        /// Where it came from.
        url: String,
        /// Why.
        source: MetadataError,
    },
    /// No authorization-server metadata at any CL-2 location.
    #[error("no metadata found for authorization server `{issuer}` (tried {tried:?})")]
    AuthorizationServerNotFound {
        /// The issuer.
        issuer: String,
        /// The URLs tried, in order.
        tried: Vec<String>,
    },
    /// The authorization-server metadata is malformed, names another issuer (MD-5) or breaks
    /// the URL rule (MD-8).
    #[error("authorization-server metadata at `{url}` refused: {source}")]
    AuthorizationServer {
        /// Where it came from.
        url: String,
        /// Why.
        source: MetadataError,
    },
    /// The authorization server does not advertise the ID-JAG profile (CL-3).
    #[error("authorization server `{issuer}` does not support the ID-JAG grant profile")]
    ProfileNotSupported {
        /// The issuer.
        issuer: String,
    },
}

/// A local sanity check of a freshly issued ID-JAG failed: it does not match the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdJagCheckError {
    /// Not a well-formed compact JWT.
    #[error("ID-JAG is not a well-formed JWT")]
    Malformed,
    /// The header `typ` is not `oauth-id-jag+jwt` (JAG-1, D-8).
    #[error("ID-JAG `typ` is {found:?}, expected `oauth-id-jag+jwt`")]
    WrongType {
        /// The `typ` found.
        found: Option<String>,
    },
    /// A claim is missing or has the wrong JSON type.
    #[error("ID-JAG claim `{claim}` is missing or malformed")]
    Claim {
        /// The claim.
        claim: &'static str,
    },
    /// `iss` is not the configured IdP.
    #[error("ID-JAG `iss` is `{found}`, expected `{expected}`")]
    Issuer {
        /// Found.
        found: String,
        /// Expected.
        expected: String,
    },
    /// `aud` is not exactly the authorization server's issuer (JAG-3, D-12, D-13).
    #[error("ID-JAG `aud` does not name `{expected}` alone")]
    Audience {
        /// The authorization server's issuer.
        expected: String,
    },
    /// `client_id` is not the client's id at the authorization server (JAG-4).
    #[error("ID-JAG `client_id` is `{found}`, expected `{expected}`")]
    ClientId {
        /// Found.
        found: String,
        /// Expected.
        expected: String,
    },
    /// `resource` does not name the MCP server (JAG-6).
    #[error("ID-JAG `resource` does not name `{expected}`")]
    Resource {
        /// The PRM resource.
        expected: String,
    },
    /// Already expired.
    #[error("ID-JAG expired at {exp}, checked at {now}")]
    Expired {
        /// `exp`.
        exp: UnixTime,
        /// The check time.
        now: UnixTime,
    },
}

/// Hop 2 failed: the token exchange at the IdP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenExchangeError {
    /// The request could not be made or the response not read.
    #[error("token exchange request failed: {0}")]
    Fetch(#[from] FetchError),
    /// Signing the client assertion for the IdP failed.
    #[error("cannot sign the client assertion for the IdP: {0}")]
    Sign(SignError),
    /// The IdP refused: `access_denied` (policy), `invalid_target`, `invalid_grant` (bad or
    /// expired ID token, D-1), `invalid_client`, ... Never retried interactively (CL-8).
    #[error("IdP refused the token exchange: {0}")]
    Rejected(OAuthErrorResponse),
    /// The success response is not a token-exchange response.
    #[error("IdP token-exchange response is malformed: {reason}")]
    MalformedResponse {
        /// What is wrong.
        reason: &'static str,
    },
    /// `issued_token_type` is not the ID-JAG type (CL-5, D-10).
    #[error("IdP issued token type `{found}`, not an ID-JAG")]
    WrongIssuedTokenType {
        /// What the IdP sent.
        found: String,
    },
    /// The ID-JAG does not match what was asked for.
    #[error("ID-JAG does not match the request: {0}")]
    IdJag(#[from] IdJagCheckError),
}

/// Hop 3 failed: the jwt-bearer grant at the MCP authorization server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtBearerError {
    /// No client credentials are configured for this authorization server (CL-13: credentials
    /// are never reused across servers).
    #[error("no client credentials configured for authorization server `{issuer}`")]
    NoCredentials {
        /// The issuer.
        issuer: String,
    },
    /// The server lists its token endpoint auth methods and ours is not among them.
    #[error("authorization server `{issuer}` does not accept `{method}` client authentication")]
    AuthMethodNotSupported {
        /// The issuer.
        issuer: String,
        /// Our method.
        method: &'static str,
    },
    /// Signing the client assertion failed.
    #[error("cannot sign the client assertion: {0}")]
    Sign(SignError),
    /// The request could not be made or the response not read.
    #[error("jwt-bearer request failed: {0}")]
    Fetch(#[from] FetchError),
    /// The authorization server refused (`invalid_grant`, `invalid_client`, `invalid_scope`,
    /// `invalid_target`, ...).
    #[error("authorization server refused the ID-JAG: {0}")]
    Rejected(OAuthErrorResponse),
    /// The authorization server refused the requested scopes (`invalid_scope`, D-5): the report
    /// says what was asked for, what the IdP granted in the ID-JAG, and which hop narrowed it.
    #[error("authorization server refused the requested scope ({scopes}): {response}")]
    ScopeRefused {
        /// The server's answer.
        response: Box<OAuthErrorResponse>,
        /// The scopes, hop by hop.
        scopes: Box<ScopeReport>,
    },
    /// The success response is not a token response.
    #[error("token response is malformed: {reason}")]
    MalformedResponse {
        /// What is wrong.
        reason: &'static str,
    },
    /// The token type is not `Bearer` (DPoP-bound tokens are not supported by this client).
    #[error("token type `{found}` is not supported")]
    UnsupportedTokenType {
        /// What the server sent.
        found: String,
    },
    /// The response names another resource than the one asked for.
    #[error("token response is for resource `{found}`, not the MCP server")]
    ResourceMismatch {
        /// What the server sent.
        found: String,
    },
}

/// Hop 4: the MCP server refused the access token even after the one permitted
/// re-acquisition (CL-9, CL-10).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum McpAuthError {
    /// `401` again after a fresh token.
    #[error("MCP server rejected a freshly acquired token (HTTP 401)")]
    Unauthorized,
    /// `403 insufficient_scope` again after asking for the union of scopes.
    #[error(
        "MCP server still requires more scope: `{required}`{}",
        scopes.as_ref().map(|s| format!(" ({s})")).unwrap_or_default()
    )]
    InsufficientScope {
        /// The scopes the server asked for.
        required: String,
        /// The scopes of the refused token, hop by hop, when known: which hop narrowed them.
        scopes: Option<Box<ScopeReport>>,
    },
}

impl McpAuthError {
    /// The RFC 6750 code behind the refusal, when the challenge named one:
    /// `insufficient_scope` for [`McpAuthError::InsufficientScope`].
    pub fn oauth_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Unauthorized => None,
            Self::InsufficientScope { .. } => Some(ErrorCode::InsufficientScope),
        }
    }
}

impl TokenExchangeError {
    /// The IdP's OAuth error code, when it refused with one.
    pub fn oauth_code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Rejected(e) => e.oauth_code(),
            Self::Fetch(_)
            | Self::Sign(_)
            | Self::MalformedResponse { .. }
            | Self::WrongIssuedTokenType { .. }
            | Self::IdJag(_) => None,
        }
    }
}

impl JwtBearerError {
    /// The authorization server's OAuth error code, when it refused with one.
    pub fn oauth_code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Rejected(e) => e.oauth_code(),
            Self::ScopeRefused { response, .. } => response.oauth_code(),
            Self::NoCredentials { .. }
            | Self::AuthMethodNotSupported { .. }
            | Self::Sign(_)
            | Self::Fetch(_)
            | Self::MalformedResponse { .. }
            | Self::UnsupportedTokenType { .. }
            | Self::ResourceMismatch { .. } => None,
        }
    }
}

/// Any failure of the client flow, by hop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmaError {
    /// Hop 0.
    #[error("discovery: {0}")]
    Discovery(#[from] DiscoveryError),
    /// Hop 2.
    #[error("token exchange at the IdP: {0}")]
    TokenExchange(#[from] TokenExchangeError),
    /// Hop 3.
    #[error("jwt-bearer grant at the authorization server: {0}")]
    JwtBearer(#[from] JwtBearerError),
    /// Hop 4.
    #[error("MCP request: {0}")]
    Mcp(#[from] McpAuthError),
    /// The authorization code flow.
    #[error("authorization code flow: {0}")]
    CodeFlow(#[from] CodeFlowError),
}

impl EmaError {
    /// Which hop failed.
    pub fn hop(&self) -> Hop {
        match self {
            Self::Discovery(_) => Hop::Discovery,
            Self::TokenExchange(_) => Hop::TokenExchange,
            Self::JwtBearer(_) => Hop::JwtBearer,
            Self::Mcp(_) => Hop::McpRequest,
            Self::CodeFlow(_) => Hop::Authorization,
        }
    }

    /// Whether the IdP refused the ID token itself (`invalid_grant`, or `invalid_request` as
    /// RFC 8693 has it, D-1): the caller must obtain a new one (IdP refresh token or a new
    /// sign-in, CL-9) before trying again. Never an interactive authorization at the MCP
    /// authorization server (CL-8).
    pub fn needs_new_id_token(&self) -> bool {
        matches!(
            self,
            Self::TokenExchange(TokenExchangeError::Rejected(OAuthErrorResponse {
                error: Some(ErrorCode::InvalidGrant | ErrorCode::InvalidRequest),
                ..
            }))
        )
    }

    /// The IdP's step-up demand (`insufficient_user_authentication`, RFC 9470): the user must
    /// authenticate again at the IdP, honouring the returned `max_age` / `acr_values` (CL-10).
    pub fn step_up(&self) -> Option<&OAuthErrorResponse> {
        match self {
            Self::TokenExchange(TokenExchangeError::Rejected(e))
                if e.is(&ErrorCode::InsufficientUserAuthentication) =>
            {
                Some(e)
            }
            _ => None,
        }
    }

    /// The OAuth error code behind this failure, when a server sent one: the IdP's or the
    /// authorization server's `error`, or the MCP server's `insufficient_scope`.
    pub fn oauth_code(&self) -> Option<ErrorCode> {
        match self {
            Self::TokenExchange(e) => e.oauth_code().cloned(),
            Self::JwtBearer(e) => e.oauth_code().cloned(),
            Self::Mcp(e) => e.oauth_code(),
            Self::CodeFlow(e) => e.oauth_code(),
            Self::Discovery(_) => None,
        }
    }

    /// The OAuth error response behind this failure, when a server sent one.
    pub fn oauth_error(&self) -> Option<&OAuthErrorResponse> {
        match self {
            Self::TokenExchange(TokenExchangeError::Rejected(e))
            | Self::JwtBearer(JwtBearerError::Rejected(e)) => Some(e),
            Self::JwtBearer(JwtBearerError::ScopeRefused { response, .. }) => Some(response),
            Self::CodeFlow(CodeFlowError::Refused(e) | CodeFlowError::TokenRejected(e)) => Some(e),
            _ => None,
        }
    }

    /// What happened to the requested scopes, hop by hop, when the failure is about scope: the
    /// authorization server's `invalid_scope`, or the MCP server's `insufficient_scope` after a
    /// step-up (CL-10).
    pub fn scope_report(&self) -> Option<&ScopeReport> {
        match self {
            Self::JwtBearer(JwtBearerError::ScopeRefused { scopes, .. }) => Some(scopes),
            Self::Mcp(McpAuthError::InsufficientScope { scopes, .. }) => scopes.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_error_bodies() {
        let e = OAuthErrorResponse::from_body(
            400,
            br#"{"error":"access_denied","error_description":"client not assigned"}"#,
        );
        assert!(e.is(&ErrorCode::AccessDenied));
        assert_eq!(e.oauth_code(), Some(&ErrorCode::AccessDenied));
        assert_eq!(
            e.to_string(),
            "HTTP 400 `access_denied`: client not assigned"
        );
        let step_up = OAuthErrorResponse::from_body(
            400,
            br#"{"error":"insufficient_user_authentication","max_age":300,"acr_values":"mfa"}"#,
        );
        let err = EmaError::from(TokenExchangeError::Rejected(step_up));
        let demand = err.step_up().unwrap();
        assert_eq!(
            (demand.max_age, demand.acr_values.as_deref()),
            (Some(300), Some("mfa"))
        );
        assert!(!err.needs_new_id_token());
        let d1 = OAuthErrorResponse::from_body(400, br#"{"error":"invalid_grant"}"#);
        assert!(EmaError::from(TokenExchangeError::Rejected(d1.clone())).needs_new_id_token());
        // The same code at the AS is about the ID-JAG, not the ID token.
        assert!(!EmaError::from(JwtBearerError::Rejected(d1)).needs_new_id_token());
        // A code this library has no name for is kept; an invalid one is no code.
        let other = OAuthErrorResponse::from_body(400, br#"{"error":"slow_down"}"#);
        assert_eq!(other.oauth_code().map(ErrorCode::as_str), Some("slow_down"));
        assert!(matches!(other.error, Some(ErrorCode::Other(_))));
        assert_eq!(other.to_string(), "HTTP 400 `slow_down`");
        let err = EmaError::from(JwtBearerError::Rejected(other));
        assert_eq!(err.oauth_code().unwrap().as_str(), "slow_down");
        let bad = OAuthErrorResponse::from_body(400, br#"{"error":"a\"b"}"#);
        assert_eq!(bad.error, None);
        let junk = OAuthErrorResponse::from_body(502, b"<html>");
        assert_eq!(junk.error, None);
        assert_eq!(junk.to_string(), "HTTP 502");
        let err = EmaError::from(TokenExchangeError::Rejected(e.clone()));
        assert_eq!(err.hop(), Hop::TokenExchange);
        assert_eq!(err.oauth_error(), Some(&e));
        assert_eq!(err.oauth_code(), Some(ErrorCode::AccessDenied));
        let scope = EmaError::from(McpAuthError::InsufficientScope {
            required: "a".into(),
            scopes: None,
        });
        assert_eq!(scope.oauth_code(), Some(ErrorCode::InsufficientScope));
        assert_eq!(
            EmaError::from(McpAuthError::Unauthorized).oauth_code(),
            None
        );
    }

    #[test]
    fn code_flow_errors_read_as_sentences() {
        let denied = EmaError::from(CodeFlowError::AccessDenied {
            description: Some("the IdP did not assign this user to this server".into()),
        });
        assert_eq!(denied.hop(), Hop::Authorization);
        assert_eq!(denied.oauth_code(), Some(ErrorCode::AccessDenied));
        assert!(
            denied
                .to_string()
                .contains("the user is not assigned to this MCP server"),
            "{denied}"
        );
        let refused = CodeFlowError::Refused(OAuthErrorResponse {
            status: 0,
            error: Some(ErrorCode::InvalidScope),
            error_description: Some("unknown scope".into()),
            error_uri: None,
            max_age: None,
            acr_values: None,
        });
        assert_eq!(
            refused.to_string(),
            "the authorization server refused the sign-in: `invalid_scope`: unknown scope"
        );
        let err = EmaError::from(refused.clone());
        assert_eq!(err.oauth_code(), Some(ErrorCode::InvalidScope));
        assert!(err.oauth_error().is_some());
        let iss = CodeFlowError::IssuerMismatch {
            expected: "https://as.example".into(),
            found: Some("https://evil.example".into()),
        };
        assert_eq!(
            iss.to_string(),
            "the sign-in response's iss is `https://evil.example`, expected `https://as.example` (RFC 9207; refused)"
        );
        assert_eq!(CodeFlowError::StateMismatch.oauth_code(), None);
    }
}
