//! OAuth error codes, one vocabulary for token endpoints (RFC 6749 §5.2, RFC 8693 §2.2.2,
//! RFC 8707 §2, RFC 9470 §3, RFC 9449 §5) and protected resources (RFC 6750 §3.1).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::StatusCode;

/// An OAuth error code, as servers send it in a token endpoint's JSON `error` member or in the
/// `error` parameter of a `Bearer` challenge.
///
/// Every code the EMA servers send has its own variant. A code this crate does not know, as a
/// client may receive it from another server, parses to [`ErrorCode::Other`], which keeps the
/// text: parsing never loses a code and never fails on a syntactically valid one. Only a value
/// outside the RFC 6749 §5.2 character set is a parse error ([`ErrorCodeError`]).
///
/// ```
/// use ema_metadata::ErrorCode;
///
/// let code: ErrorCode = "insufficient_scope".parse()?;
/// assert_eq!(code, ErrorCode::InsufficientScope);
/// assert_eq!(code.http_status(), 403);
///
/// let other: ErrorCode = "slow_down".parse()?;
/// assert_eq!(other.as_str(), "slow_down");
/// assert!(matches!(other, ErrorCode::Other(_)));
/// # Ok::<(), ema_metadata::ErrorCodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request` (RFC 6749 §5.2; at a resource server RFC 6750 §3.1, HTTP 400).
    InvalidRequest,
    /// `invalid_client` (always HTTP 401, AS-20, D-11).
    InvalidClient,
    /// `invalid_grant`: the grant or subject token is refused (D-1).
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
    /// `insufficient_user_authentication` (RFC 9470 §3).
    InsufficientUserAuthentication,
    /// `invalid_dpop_proof` (RFC 9449 §5).
    InvalidDpopProof,
    /// `temporarily_unavailable`: a store or key source the decision needs is down (HTTP 503).
    TemporarilyUnavailable,
    /// `server_error` (HTTP 500).
    ServerError,
    /// `invalid_token`: the access token is expired, revoked, malformed or not for this
    /// resource (RFC 6750 §3.1, HTTP 401).
    InvalidToken,
    /// `insufficient_scope`: the request needs more scope than the access token carries
    /// (RFC 6750 §3.1, HTTP 403; RS-6).
    InsufficientScope,
    /// A syntactically valid code this crate has no variant for, kept as received.
    Other(UnknownErrorCode),
}

/// The text of an [`ErrorCode::Other`]: a valid RFC 6749 §5.2 error code that is none of the
/// named variants (so `Other` never holds a code that has a variant of its own). Behind one thin
/// pointer, so that an [`ErrorCode`] stays two words.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownErrorCode(Arc<String>);

impl UnknownErrorCode {
    /// The code as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnknownErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value that is not an OAuth error code: empty, or a character outside `%x20-21 / %x23-5B /
/// %x5D-7E` (RFC 6749 §5.2; no `"` or `\`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an OAuth error code (RFC 6749 §5.2)")]
#[non_exhaustive]
pub struct ErrorCodeError;

impl ErrorCode {
    /// Every named code (not [`ErrorCode::Other`]), for tables and tests.
    pub const ALL: [Self; 14] = [
        Self::InvalidRequest,
        Self::InvalidClient,
        Self::InvalidGrant,
        Self::UnauthorizedClient,
        Self::UnsupportedGrantType,
        Self::InvalidScope,
        Self::InvalidTarget,
        Self::AccessDenied,
        Self::InsufficientUserAuthentication,
        Self::InvalidDpopProof,
        Self::TemporarilyUnavailable,
        Self::ServerError,
        Self::InvalidToken,
        Self::InsufficientScope,
    ];

    /// The wire value.
    pub fn as_str(&self) -> &str {
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
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::Other(code) => code.as_str(),
        }
    }

    /// Parses a code: a named variant, [`ErrorCode::Other`] for any other valid code, or
    /// [`ErrorCodeError`] for a value outside the RFC 6749 §5.2 character set.
    pub fn parse(value: &str) -> Result<Self, ErrorCodeError> {
        if let Some(known) = Self::ALL.into_iter().find(|c| c.as_str() == value) {
            return Ok(known);
        }
        let valid = !value.is_empty()
            && value
                .bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e));
        if valid {
            Ok(Self::Other(UnknownErrorCode(Arc::new(value.to_owned()))))
        } else {
            Err(ErrorCodeError)
        }
    }

    /// The HTTP status a response with this code carries: 401 for `invalid_client` (AS-20,
    /// D-11) and `invalid_token` (RFC 6750 §3.1), 403 for `insufficient_scope`, 503 for
    /// `temporarily_unavailable`, 500 for `server_error`, and 400 for every other code, unknown
    /// ones included (RFC 6749 §5.2).
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::InvalidClient | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InvalidRequest
            | Self::InvalidGrant
            | Self::UnauthorizedClient
            | Self::UnsupportedGrantType
            | Self::InvalidScope
            | Self::InvalidTarget
            | Self::AccessDenied
            | Self::InsufficientUserAuthentication
            | Self::InvalidDpopProof
            | Self::Other(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorCode {
    type Err = ErrorCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A domain error that answers with one OAuth error code.
///
/// Each crate implements it beside its error enum with an exhaustive `match`, so a new variant
/// cannot silently fall into a generic refusal: `ema-grant` for client authentication, DPoP,
/// request and access-token errors, `ema-id-jag` for ID-JAG validation, `ema-saml` for SAML
/// subject assertions. The token endpoints build their responses from it (code, fixed
/// description) and keep the error itself as the cause for the server's log.
pub trait ToErrorCode {
    /// The OAuth error code to answer with.
    fn error_code(&self) -> ErrorCode;

    /// A fixed, human-readable `error_description` for the client developer. It never echoes
    /// a token, an assertion, a secret or other request content (SEC-10); the details stay in
    /// the error's `Display`, for logs.
    fn error_description(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_round_trips_with_its_status() {
        let expected = [
            ("invalid_request", 400),
            ("invalid_client", 401),
            ("invalid_grant", 400),
            ("unauthorized_client", 400),
            ("unsupported_grant_type", 400),
            ("invalid_scope", 400),
            ("invalid_target", 400),
            ("access_denied", 400),
            ("insufficient_user_authentication", 400),
            ("invalid_dpop_proof", 400),
            ("temporarily_unavailable", 503),
            ("server_error", 500),
            ("invalid_token", 401),
            ("insufficient_scope", 403),
        ];
        assert_eq!(ErrorCode::ALL.len(), expected.len());
        for (code, (text, status)) in ErrorCode::ALL.iter().zip(expected) {
            assert_eq!(code.as_str(), text);
            assert_eq!(code.to_string(), text);
            assert_eq!(code.http_status().as_u16(), status, "{text}");
            assert_eq!(text.parse::<ErrorCode>().as_ref(), Ok(code));
            assert!(!matches!(code, ErrorCode::Other(_)));
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, text);
            assert_eq!(serde_json::from_value::<ErrorCode>(json).unwrap(), *code);
        }
    }

    #[test]
    fn an_error_code_is_two_words() {
        assert_eq!(
            std::mem::size_of::<ErrorCode>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn unknown_codes_are_kept_invalid_ones_refused() {
        for text in ["slow_down", "authorization_pending", "x", "a b!#[]~"] {
            let code = ErrorCode::parse(text).unwrap();
            assert!(matches!(&code, ErrorCode::Other(u) if u.as_str() == text));
            assert_eq!(code.as_str(), text);
            assert_eq!(code.http_status(), 400);
            assert_eq!(code, text);
        }
        // Case matters: `Invalid_Grant` is not `invalid_grant`.
        assert!(matches!(
            ErrorCode::parse("Invalid_Grant"),
            Ok(ErrorCode::Other(_))
        ));
        for bad in ["", "a\"b", "a\\b", "tab\there", "caf\u{e9}", "nl\n"] {
            assert_eq!(ErrorCode::parse(bad), Err(ErrorCodeError), "{bad:?}");
        }
        assert!(serde_json::from_value::<ErrorCode>(serde_json::json!("a\"b")).is_err());
        assert!(serde_json::from_value::<ErrorCode>(serde_json::json!(1)).is_err());
    }
}
