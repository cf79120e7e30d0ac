//! OAuth error responses (RFC 6749 §5.2, RFC 8693, RFC 8707, RFC 9470, RFC 9449) and the
//! success response headers.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

pub use ema_metadata::{ErrorCode, ErrorCodeError, ToErrorCode, UnknownErrorCode};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value};

/// The cause an [`OAuthError`] keeps for the server's log.
type Cause = Arc<dyn StdError + Send + Sync + 'static>;

/// An OAuth error response. Descriptions are fixed texts chosen by this crate: they never
/// echo a token, an assertion or a secret (SEC-10).
///
/// It keeps the error it was made from as its cause ([`OAuthError::cause`], also
/// [`std::error::Error::source`]), for the server's log only: never in the body or a header.
/// [`OAuthError::to_response`] attaches a copy of the whole error to the response as an `http`
/// extension, so that a server logs the code and the cause without reading its own body back.
/// Equality compares what goes on the wire, not the cause.
#[derive(Clone)]
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
    cause: Option<Cause>,
}

impl fmt::Debug for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthError")
            .field("code", &self.code)
            .field("description", &self.description)
            .field("www_authenticate", &self.www_authenticate)
            .field("max_age", &self.max_age)
            .field("acr_values", &self.acr_values)
            .field("cause", &self.cause.as_ref().map(ToString::to_string))
            .finish()
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl StdError for OAuthError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn StdError + 'static))
    }
}

impl PartialEq for OAuthError {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
            && self.description == other.description
            && self.www_authenticate == other.www_authenticate
            && self.max_age == other.max_age
            && self.acr_values == other.acr_values
    }
}

impl Eq for OAuthError {}

impl OAuthError {
    /// An error with a description.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            www_authenticate: None,
            max_age: None,
            acr_values: None,
            cause: None,
        }
    }

    /// The response for a domain error: its [`ToErrorCode`] code and fixed description, with
    /// the error itself kept as the cause for the log.
    pub fn from_error<E>(error: E) -> Self
    where
        E: ToErrorCode + StdError + Send + Sync + 'static,
    {
        Self::new(error.error_code(), error.error_description()).with_cause(error)
    }

    /// Sets the cause, for the server's log only (never sent): an error value, or a text such
    /// as why a client's credentials were refused (D-24).
    #[must_use]
    pub fn with_cause(
        mut self,
        cause: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        self.cause = Some(Arc::from(cause.into()));
        self
    }

    /// The cause, for the server's log only. Downcast it to the domain error it was made from,
    /// e.g. `ema_grant::ClientAuthError`.
    pub fn cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.cause.as_deref()
    }

    /// The cause and its own sources, joined with `: `, for a log line (empty when there is no
    /// cause).
    pub fn cause_chain(&self) -> String {
        let mut out = String::new();
        let mut next = self.cause().map(|c| c as &(dyn StdError + 'static));
        while let Some(e) = next {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&e.to_string());
            next = e.source();
        }
        out
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

    /// The HTTP response: status per [`ErrorCode::http_status`], JSON body,
    /// `Cache-Control: no-store` (TX-15), and `WWW-Authenticate` when set. A copy of this error,
    /// cause included, rides along as a response extension for the server's log
    /// (`response.extensions().get::<OAuthError>()`); extensions are never sent.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let mut resp = json_response(self.code.http_status(), &self.to_json());
        resp.extensions_mut().insert(self.clone());
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
        let logged = r.extensions().get::<OAuthError>().unwrap();
        assert_eq!((logged, logged.cause().is_none()), (&e, true));
    }

    #[test]
    fn d24_cause_goes_to_the_log_extension_never_the_wire() {
        let e = OAuthError::invalid_client("client authentication failed", "as")
            .with_cause("client is registered for client_secret_basic");
        let r = e.to_response();
        let logged = r.extensions().get::<OAuthError>().unwrap();
        assert_eq!(logged.code, ErrorCode::InvalidClient);
        assert_eq!(
            logged.cause().map(ToString::to_string).as_deref(),
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
        for (code, status) in [
            (ErrorCode::InvalidGrant, 400),
            (ErrorCode::TemporarilyUnavailable, 503),
            (ErrorCode::ServerError, 500),
            (ErrorCode::InvalidClient, 401),
        ] {
            assert_eq!(OAuthError::new(code, "x").to_response().status(), status);
        }
        let mut e = OAuthError::new(ErrorCode::InsufficientUserAuthentication, "MFA required");
        e.max_age = Some(300);
        assert_eq!(e.to_json()["max_age"], 300);
    }

    /// A typed cause stays downcastable, and its own source is part of the log chain.
    #[test]
    fn the_cause_is_the_domain_error_with_its_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::fmt::Error);
        let e = OAuthError::invalid_grant("refused").with_cause(Outer(std::fmt::Error));
        assert!(e.cause().unwrap().downcast_ref::<Outer>().is_some());
        assert!(StdError::source(&e).unwrap().is::<Outer>());
        assert_eq!(
            e.cause_chain(),
            "outer: an error occurred when formatting an argument"
        );
        assert_eq!(OAuthError::invalid_grant("refused").cause_chain(), "");
        // The cause is not part of equality: two refusals look the same on the wire.
        assert_eq!(e, OAuthError::invalid_grant("refused"));
        assert_eq!(e.to_string(), "invalid_grant: refused");
    }
}

/// Every domain error of this crate, each variant constructed, maps to the expected code, HTTP
/// status and fixed description (the exhaustive `ToErrorCode` matches beside each enum).
#[cfg(test)]
mod mapping_tests {
    use ema_jose::{
        Algorithm, ClaimError, HeaderError, KeyLookupError, ParseError, TimeError, UnixTime,
        VerifyError,
    };

    use super::*;
    use crate::access_token::AccessTokenError;
    use crate::client_auth::{AuthMethod, ClientAuthError};
    use crate::dpop::DpopError;
    use crate::exchange::SubjectTokenError;
    use crate::form::{FormError, RequestError};
    use crate::replay::ReplayError;

    fn check<E: ToErrorCode + std::fmt::Debug>(rows: Vec<(E, ErrorCode, u16, &str)>) {
        for (error, code, status, description) in rows {
            assert_eq!(error.error_code(), code, "{error:?}");
            assert_eq!(error.error_code().http_status(), status, "{error:?}");
            assert_eq!(error.error_description(), description, "{error:?}");
        }
    }

    fn parse_error() -> ParseError {
        ParseError::Segments { segments: 1 }
    }
    fn header_error() -> HeaderError {
        HeaderError::UnsupportedAlgorithm { alg: "none".into() }
    }
    fn verify_error() -> VerifyError {
        VerifyError::AlgorithmMismatch {
            key: Algorithm::ES256,
            token: Algorithm::RS256,
        }
    }
    fn unknown_kid() -> KeyLookupError {
        KeyLookupError::UnknownKid { kid: "k".into() }
    }
    fn keys_down() -> KeyLookupError {
        KeyLookupError::Unavailable {
            reason: "down".into(),
        }
    }
    fn missing() -> ClaimError {
        ClaimError::Missing { claim: "sub" }
    }
    fn expired() -> ClaimError {
        ClaimError::Time(TimeError::Expired {
            exp: UnixTime::from_secs(1),
            now: UnixTime::from_secs(2),
        })
    }

    #[test]
    fn d24_as20_client_auth_errors() {
        use ErrorCode::{InvalidClient as Ic, InvalidRequest as Ir};
        let failed = "client authentication failed";
        check(vec![
            (
                ClientAuthError::Missing,
                Ic,
                401,
                "client authentication is required",
            ),
            (
                ClientAuthError::MultipleMethods,
                Ir,
                400,
                "more than one client authentication method used",
            ),
            (
                ClientAuthError::Malformed,
                Ir,
                400,
                "malformed client credentials",
            ),
            (
                ClientAuthError::MalformedBasic { reason: "x" },
                Ic,
                401,
                failed,
            ),
            (
                ClientAuthError::ClientIdMismatch,
                Ir,
                400,
                "client_id does not match the authenticated client",
            ),
            (ClientAuthError::Failed { reason: "x" }, Ic, 401, failed),
            (
                ClientAuthError::WrongMethod {
                    expected: AuthMethod::ClientSecretBasic,
                    used: AuthMethod::ClientSecretPost,
                },
                Ic,
                401,
                failed,
            ),
            (ClientAuthError::AssertionReplayed, Ic, 401, failed),
            (
                ClientAuthError::StoreUnavailable,
                ErrorCode::TemporarilyUnavailable,
                503,
                "replay detection is unavailable; try again later",
            ),
        ]);
    }

    #[test]
    fn rfc9449_dpop_errors() {
        let invalid = |e| (e, ErrorCode::InvalidDpopProof, 400, "DPoP proof is invalid");
        check(vec![
            invalid(DpopError::Malformed),
            invalid(DpopError::Key),
            invalid(DpopError::Signature),
            invalid(DpopError::Claim { claim: "htm" }),
            invalid(DpopError::TokenHash),
            invalid(DpopError::Method),
            invalid(DpopError::Uri),
            invalid(DpopError::Stale),
            invalid(DpopError::Replayed),
            (
                DpopError::StoreUnavailable,
                ErrorCode::TemporarilyUnavailable,
                503,
                "replay detection is unavailable; try again later",
            ),
        ]);
    }

    #[test]
    fn request_form_and_replay_errors() {
        let ir = ErrorCode::InvalidRequest;
        check(vec![
            (
                FormError::TooLarge { len: 2, max: 1 },
                ir.clone(),
                400,
                "request body too large",
            ),
            (
                FormError::TooManyParams,
                ir.clone(),
                400,
                "too many request parameters",
            ),
            (
                FormError::Repeated {
                    name: "scope".into(),
                },
                ir.clone(),
                400,
                "a request parameter is repeated",
            ),
            (
                FormError::Encoding,
                ir.clone(),
                400,
                "request body is not valid form encoding",
            ),
        ]);
        check(vec![
            (
                RequestError::RepeatedHeader { name: "dpop" },
                ErrorCode::InvalidDpopProof,
                400,
                "DPoP proof is invalid",
            ),
            (
                RequestError::InvalidHeader { name: "dpop" },
                ErrorCode::InvalidDpopProof,
                400,
                "DPoP proof is invalid",
            ),
            (
                RequestError::RepeatedHeader {
                    name: "authorization",
                },
                ir.clone(),
                400,
                "a request header is repeated or invalid",
            ),
            (
                RequestError::InvalidHeader {
                    name: "content-type",
                },
                ir,
                400,
                "a request header is repeated or invalid",
            ),
        ]);
        let down = "replay detection is unavailable; try again later";
        check(vec![
            (
                ReplayError::Unavailable { reason: "x".into() },
                ErrorCode::TemporarilyUnavailable,
                503,
                down,
            ),
            (
                ReplayError::Full,
                ErrorCode::TemporarilyUnavailable,
                503,
                down,
            ),
        ]);
    }

    #[test]
    fn rfc6750_access_token_errors() {
        let it = ErrorCode::InvalidToken;
        let invalid = "the access token is invalid";
        check(vec![
            (
                AccessTokenError::Malformed(parse_error()),
                it.clone(),
                401,
                invalid,
            ),
            (
                AccessTokenError::Header(header_error()),
                it.clone(),
                401,
                invalid,
            ),
            (AccessTokenError::WrongIssuer, it.clone(), 401, invalid),
            (
                AccessTokenError::Key(unknown_kid()),
                it.clone(),
                401,
                invalid,
            ),
            (
                AccessTokenError::Key(keys_down()),
                ErrorCode::TemporarilyUnavailable,
                503,
                "the authorization server's keys are unavailable; try again later",
            ),
            (
                AccessTokenError::Signature(verify_error()),
                it.clone(),
                401,
                invalid,
            ),
            (
                AccessTokenError::WrongAudience,
                it.clone(),
                401,
                "the access token is not for this resource",
            ),
            (
                AccessTokenError::Claims(expired()),
                it.clone(),
                401,
                "the access token expired",
            ),
            (AccessTokenError::Claims(missing()), it, 401, invalid),
        ]);
    }

    #[test]
    fn d1_subject_token_errors() {
        let ig = ErrorCode::InvalidGrant;
        check(vec![
            (
                SubjectTokenError::Malformed(parse_error()),
                ig.clone(),
                400,
                "subject token is malformed",
            ),
            (
                SubjectTokenError::Header(header_error()),
                ig.clone(),
                400,
                "subject token is not an acceptable ID token",
            ),
            (
                SubjectTokenError::WrongIssuer,
                ig.clone(),
                400,
                "subject token was not issued by this IdP",
            ),
            (
                SubjectTokenError::Key(unknown_kid()),
                ig.clone(),
                400,
                "subject token signature is invalid",
            ),
            (
                SubjectTokenError::Key(keys_down()),
                ErrorCode::TemporarilyUnavailable,
                503,
                "signing keys are unavailable; try again later",
            ),
            (
                SubjectTokenError::Signature(verify_error()),
                ig.clone(),
                400,
                "subject token signature is invalid",
            ),
            (
                SubjectTokenError::Time(expired()),
                ig.clone(),
                400,
                "subject token expired",
            ),
            (
                SubjectTokenError::Audience(missing()),
                ig.clone(),
                400,
                "subject token audience is malformed",
            ),
            (
                SubjectTokenError::WrongClient,
                ig.clone(),
                400,
                "subject token was not issued to this client",
            ),
            (
                SubjectTokenError::NoSubject(missing()),
                ig,
                400,
                "subject token has no subject",
            ),
        ]);
    }

    /// `from_error` keeps the domain error as the cause; the `invalid_client` mapping adds the
    /// `Basic` challenge (AS-20) and the cause names the registered method (D-24).
    #[test]
    fn d24_from_error_keeps_the_typed_cause() {
        let e = ClientAuthError::WrongMethod {
            expected: AuthMethod::ClientSecretBasic,
            used: AuthMethod::ClientSecretPost,
        };
        let oauth = crate::jwt_bearer::client_auth_error(&e, "as");
        assert_eq!(oauth.code, ErrorCode::InvalidClient);
        assert_eq!(
            oauth.www_authenticate.as_deref(),
            Some("Basic realm=\"as\"")
        );
        assert_eq!(
            oauth
                .cause()
                .and_then(|c| c.downcast_ref::<ClientAuthError>()),
            Some(&e)
        );
        assert!(oauth.cause_chain().contains("client_secret_basic"));
        // Positive control: a request error gets no challenge.
        let request = crate::jwt_bearer::client_auth_error(&ClientAuthError::Malformed, "as");
        assert_eq!(
            (request.code, request.www_authenticate),
            (ErrorCode::InvalidRequest, None)
        );
    }
}
