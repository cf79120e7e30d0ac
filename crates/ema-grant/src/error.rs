//! OAuth error responses (RFC 6749 §5.2, RFC 8693, RFC 8707, RFC 9470, RFC 9449) and the
//! success response headers.

use std::borrow::Cow;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value};

/// An OAuth error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client` (always HTTP 401, D-11).
    InvalidClient,
    /// `invalid_grant`.
    InvalidGrant,
    /// `unauthorized_client`.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// `invalid_target` (RFC 8707 §2, RFC 8693 §2.2.2).
    InvalidTarget,
    /// `access_denied` (JAG profile, D-2).
    AccessDenied,
    /// `insufficient_user_authentication` (RFC 9470).
    InsufficientUserAuthentication,
    /// `invalid_dpop_proof` (RFC 9449 §5).
    InvalidDpopProof,
    /// `temporarily_unavailable`: a store or key source the decision needs is down (HTTP 503).
    TemporarilyUnavailable,
    /// `server_error` (HTTP 500).
    ServerError,
}

impl ErrorCode {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::InsufficientUserAuthentication => "insufficient_user_authentication",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    /// The HTTP status: 401 for `invalid_client` (AS-20, D-11), 503 for
    /// `temporarily_unavailable`, 500 for `server_error`, 400 otherwise.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An OAuth error response. Descriptions are fixed texts chosen by this crate: they never
/// echo a token, an assertion or a secret (SEC-10).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
#[non_exhaustive]
pub struct OAuthError {
    /// The error code.
    pub code: ErrorCode,
    /// Human-readable text for the client developer.
    pub description: Cow<'static, str>,
    /// A `WWW-Authenticate` challenge to send (for `invalid_client`).
    pub www_authenticate: Option<String>,
    /// `max_age` for `insufficient_user_authentication` (RFC 9470 §3).
    pub max_age: Option<u64>,
    /// `acr_values` for `insufficient_user_authentication` (RFC 9470 §3).
    pub acr_values: Option<String>,
    /// Why, in more detail, for the server's log only: never in the body or a header. For
    /// `invalid_client` it says what was wrong with the client's credentials, e.g. which
    /// `token_endpoint_auth_method` the client is registered for (D-24).
    /// [`OAuthError::to_response`] attaches it as an [`ErrorDetail`] response extension.
    pub detail: Option<Cow<'static, str>>,
}

/// The [`OAuthError::detail`] of an error response, as an `http` response extension for the
/// server's log (never sent to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail(pub Cow<'static, str>);

impl OAuthError {
    /// An error with a description.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            www_authenticate: None,
            max_age: None,
            acr_values: None,
            detail: None,
        }
    }

    /// Sets the [`OAuthError::detail`] for the server's log.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// `invalid_client` with a `Basic` challenge for `realm` (AS-20, TX-2).
    pub fn invalid_client(description: impl Into<Cow<'static, str>>, realm: &str) -> Self {
        let realm: String = realm
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        Self {
            www_authenticate: Some(format!("Basic realm=\"{realm}\"")),
            ..Self::new(ErrorCode::InvalidClient, description)
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("error".into(), self.code.as_str().into());
        m.insert("error_description".into(), self.description.as_ref().into());
        if let Some(max_age) = self.max_age {
            m.insert("max_age".into(), max_age.into());
        }
        if let Some(acr) = &self.acr_values {
            m.insert("acr_values".into(), acr.as_str().into());
        }
        Value::Object(m)
    }

    /// The HTTP response: status per [`ErrorCode::status`], JSON body, `Cache-Control: no-store`
    /// (TX-15), and `WWW-Authenticate` when set. The [`OAuthError::detail`], if any, rides along
    /// as an [`ErrorDetail`] extension for the server's log.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let mut resp = json_response(self.code.status(), &self.to_json());
        if let Some(detail) = &self.detail {
            resp.extensions_mut().insert(ErrorDetail(detail.clone()));
        }
        if let Some(challenge) = self
            .www_authenticate
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        resp
    }
}

/// A JSON response with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub fn json_response(status: StatusCode, body: &Value) -> Response<Vec<u8>> {
    json_bytes_response(status, body.to_string().into_bytes())
}

/// [`json_response`] for a body already serialized.
pub(crate) fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_client_is_401_with_challenge() {
        let e =
            OAuthError::invalid_client("client authentication failed", "auth.\"tasks\".example");
        let r = e.to_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"auth.tasks.example\""
        );
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert!(r.extensions().get::<ErrorDetail>().is_none());
    }

    #[test]
    fn d24_detail_goes_to_the_log_extension_never_the_wire() {
        let e = OAuthError::invalid_client("client authentication failed", "as")
            .with_detail("client is registered for client_secret_basic");
        let r = e.to_response();
        assert_eq!(
            r.extensions().get::<ErrorDetail>().map(|d| d.0.as_ref()),
            Some("client is registered for client_secret_basic")
        );
        let body = String::from_utf8(r.body().clone()).unwrap();
        assert!(!body.contains("registered"), "{body}");
        assert!(
            r.headers()
                .values()
                .all(|v| !v.to_str().unwrap_or("").contains("registered"))
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(ErrorCode::InvalidGrant.status(), 400);
        assert_eq!(ErrorCode::TemporarilyUnavailable.status(), 503);
        assert_eq!(ErrorCode::ServerError.status(), 500);
        let mut e = OAuthError::new(ErrorCode::InsufficientUserAuthentication, "MFA required");
        e.max_age = Some(300);
        assert_eq!(e.to_json()["max_age"], 300);
    }
}
