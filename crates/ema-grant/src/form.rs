//! Strict `application/x-www-form-urlencoded` bodies (RFC 6749 Appendix B) and the token
//! request as the token endpoint receives it.

use std::fmt;

use http::header::{AUTHORIZATION, CONTENT_TYPE};

/// The default cap on a token request body: 64 KiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// The most parameters one body may carry.
pub const MAX_PARAMS: usize = 64;

/// Why a form body was refused (all `invalid_request`, except as the grants map `audience`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormError {
    /// The body is larger than the cap.
    #[error("request body is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The body length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// More than [`MAX_PARAMS`] parameters.
    #[error("too many parameters")]
    TooManyParams,
    /// A parameter appears more than once (RFC 6749 §3.2).
    #[error("parameter `{name}` is repeated")]
    Repeated {
        /// The repeated name (a known OAuth parameter name or `(other)`).
        name: String,
    },
    /// A `%` escape is malformed, or the decoded bytes are not UTF-8.
    #[error("body is not valid form encoding")]
    Encoding,
}

impl ema_metadata::ToErrorCode for FormError {
    /// Every form error is `invalid_request` (RFC 6749 §5.2).
    fn error_code(&self) -> ema_metadata::ErrorCode {
        match self {
            Self::TooLarge { .. }
            | Self::TooManyParams
            | Self::Repeated { .. }
            | Self::Encoding => ema_metadata::ErrorCode::InvalidRequest,
        }
    }

    fn error_description(&self) -> &'static str {
        match self {
            Self::Repeated { .. } => "a request parameter is repeated",
            Self::TooLarge { .. } => "request body too large",
            Self::TooManyParams => "too many request parameters",
            Self::Encoding => "request body is not valid form encoding",
        }
    }
}

/// A parsed form: unique names, decoded values. Empty values count as absent (RFC 6749 §3.1)
/// but still count as occurrences for the repetition rule.
///
/// `Debug` shows the values of the descriptive parameters only ([`Form::PUBLIC_PARAMS`]);
/// every other value (tokens, assertions, secrets, codes, verifiers, passwords) is shown as its
/// length (SEC-10).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Form {
    params: Vec<(String, String)>,
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.params {
            if Self::PUBLIC_PARAMS.contains(&name.as_str()) {
                map.entry(name, value);
            } else {
                map.entry(name, &Redacted(value.len()));
            }
        }
        map.finish()
    }
}

/// Stands for a token, secret or other credential in `Debug` output: its length only.
pub(crate) struct Redacted(pub(crate) usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

/// Decodes one form component: `+` is a space, `%XX` a byte; the result must be UTF-8.
///
/// The decoding is `percent_encoding`'s (the crate under `form_urlencoded`), which is lenient
/// where this reader is not: it passes a malformed escape (`%zz`, a trailing `%4`) through
/// verbatim and `form_urlencoded` replaces bytes that are not UTF-8 by U+FFFD. Both are refused
/// here ([`FormError::Encoding`]): the escapes are checked first, the UTF-8 after decoding.
pub(crate) fn decode(raw: &[u8]) -> Result<String, FormError> {
    let mut rest = raw;
    while let Some(at) = rest.iter().position(|b| *b == b'%') {
        let (Some(hi), Some(lo)) = (rest.get(at + 1), rest.get(at + 2)) else {
            return Err(FormError::Encoding);
        };
        if !hi.is_ascii_hexdigit() || !lo.is_ascii_hexdigit() {
            return Err(FormError::Encoding);
        }
        rest = rest.get(at + 3..).unwrap_or_default();
    }
    let spaced: std::borrow::Cow<'_, [u8]> = if raw.contains(&b'+') {
        raw.iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect::<Vec<u8>>()
            .into()
    } else {
        raw.into()
    };
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| FormError::Encoding)
}

impl Form {
    /// The parameters whose values `Debug` shows: none of them carries a credential.
    pub const PUBLIC_PARAMS: &'static [&'static str] = &[
        "grant_type",
        "client_id",
        "client_assertion_type",
        "scope",
        "resource",
        "audience",
        "requested_token_type",
        "subject_token_type",
        "actor_token_type",
        "redirect_uri",
        "response_type",
        "code_challenge_method",
    ];

    /// Parses a body of at most `max_len` bytes.
    pub fn parse(body: &[u8], max_len: usize) -> Result<Self, FormError> {
        if body.len() > max_len {
            return Err(FormError::TooLarge {
                len: body.len(),
                max: max_len,
            });
        }
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            if params.len() == MAX_PARAMS {
                return Err(FormError::TooManyParams);
            }
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(eq) => (
                    pair.get(..eq).unwrap_or_default(),
                    pair.get(eq + 1..).unwrap_or_default(),
                ),
                None => (pair, &b""[..]),
            };
            let name = decode(name)?;
            let value = decode(value)?;
            if params.iter().any(|(n, _)| *n == name) {
                return Err(FormError::Repeated { name });
            }
            params.push((name, value));
        }
        Ok(Self { params })
    }

    /// A parameter's value; empty values are treated as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Checks `grant_type`: missing is `invalid_request`, anything but `expected` is
    /// `unsupported_grant_type` with `unsupported` as the description (RFC 6749 §5.2).
    pub fn require_grant_type(
        &self,
        expected: &str,
        unsupported: &'static str,
    ) -> Result<(), crate::error::OAuthError> {
        use crate::error::{ErrorCode, OAuthError};
        match self.get("grant_type") {
            None => Err(OAuthError::invalid_request("grant_type is missing")),
            Some(g) if g == expected => Ok(()),
            Some(_) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                unsupported,
            )),
        }
    }

    /// Every (name, value) pair in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// Percent-encodes for a form body with `form_urlencoded` (RFC 6749 Appendix B; letters,
/// digits and `*-._` kept), writing a space as `%20` rather than `+`: the same value for a form
/// reader, and also right for a reader that only percent-decodes (HTTP Basic credentials,
/// RFC 6749 §2.3.1, meet both kinds).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for piece in form_urlencoded::byte_serialize(s.as_bytes()) {
        // `byte_serialize` writes a literal `+` as `%2B`, so every `+` here is a space.
        if piece.contains('+') {
            out.push_str(&piece.replace('+', "%20"));
        } else {
            out.push_str(piece);
        }
    }
    out
}

/// A token request as the endpoint sees it: the parts the grants read, borrowed from an
/// `http::Request` or assembled by hand.
///
/// `Debug` shows the `Authorization` scheme but not its credentials, and the lengths of the
/// `DPoP` proof and the body, never their bytes (SEC-10).
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct TokenRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `DPoP` header.
    pub dpop: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// Why an `http::Request` could not be read as a token request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A header that must appear at most once appears more often.
    #[error("header `{name}` is repeated")]
    RepeatedHeader {
        /// The header name.
        name: &'static str,
    },
    /// A header value is not visible ASCII.
    #[error("header `{name}` is not valid")]
    InvalidHeader {
        /// The header name.
        name: &'static str,
    },
}

impl ema_metadata::ToErrorCode for RequestError {
    /// A repeated or unreadable `DPoP` header is an invalid proof (RFC 9449 §4.3 check 1, §5:
    /// `invalid_dpop_proof`; AS-17, TX-13); any other header problem is `invalid_request`.
    fn error_code(&self) -> ema_metadata::ErrorCode {
        match self {
            Self::RepeatedHeader { name: "dpop" } | Self::InvalidHeader { name: "dpop" } => {
                ema_metadata::ErrorCode::InvalidDpopProof
            }
            Self::RepeatedHeader { .. } | Self::InvalidHeader { .. } => {
                ema_metadata::ErrorCode::InvalidRequest
            }
        }
    }

    fn error_description(&self) -> &'static str {
        match self {
            Self::RepeatedHeader { name: "dpop" } | Self::InvalidHeader { name: "dpop" } => {
                "DPoP proof is invalid"
            }
            Self::RepeatedHeader { .. } | Self::InvalidHeader { .. } => {
                "a request header is repeated or invalid"
            }
        }
    }
}

impl fmt::Debug for TokenRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Scheme<'s>(&'s str);
        impl fmt::Debug for Scheme<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let (scheme, rest) = self.0.split_once(' ').unwrap_or((self.0, ""));
                // Only a plain token is shown as the scheme; anything else is not a scheme.
                if scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    write!(f, "\"{scheme} <redacted, {} bytes>\"", rest.len())
                } else {
                    Redacted(self.0.len()).fmt(f)
                }
            }
        }
        f.debug_struct("TokenRequest")
            .field("method", &self.method)
            .field("content_type", &self.content_type)
            .field("authorization", &self.authorization.map(Scheme))
            .field("dpop", &self.dpop.map(|d| Redacted(d.len())))
            .field("body", &Redacted(self.body.len()))
            .finish()
    }
}

impl<'a> TokenRequest<'a> {
    /// A POST with a form body and nothing else.
    pub fn form(body: &'a [u8]) -> Self {
        Self {
            method: "POST",
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: None,
            dpop: None,
            body,
        }
    }

    /// Adds an `Authorization` header.
    #[must_use]
    pub fn with_authorization(mut self, value: &'a str) -> Self {
        self.authorization = Some(value);
        self
    }

    /// Adds a `DPoP` header.
    #[must_use]
    pub fn with_dpop(mut self, value: &'a str) -> Self {
        self.dpop = Some(value);
        self
    }

    /// Reads the parts of an `http::Request`. `Content-Type`, `Authorization` and `DPoP` must
    /// each appear at most once.
    pub fn from_http<B: AsRef<[u8]>>(req: &'a http::Request<B>) -> Result<Self, RequestError> {
        fn single<'r>(
            headers: &'r http::HeaderMap,
            name: &'static str,
            key: impl http::header::AsHeaderName + Clone,
        ) -> Result<Option<&'r str>, RequestError> {
            let mut values = headers.get_all(key).iter();
            match (values.next(), values.next()) {
                (None, _) => Ok(None),
                (Some(v), None) => v
                    .to_str()
                    .map(Some)
                    .map_err(|_| RequestError::InvalidHeader { name }),
                (Some(_), Some(_)) => Err(RequestError::RepeatedHeader { name }),
            }
        }
        let headers = req.headers();
        Ok(Self {
            method: req.method().as_str(),
            content_type: single(headers, "content-type", CONTENT_TYPE)?,
            authorization: single(headers, "authorization", AUTHORIZATION)?,
            dpop: single(headers, "dpop", "dpop")?,
            body: req.body().as_ref(),
        })
    }

    /// Step (1) of every token request: `POST` with a form body (RFC 6749 §3.2).
    pub fn check_shape(&self) -> Result<(), crate::error::OAuthError> {
        use crate::error::OAuthError;
        // Methods are case-sensitive (RFC 9110 §9.1): `post` is not `POST`.
        if self.method != "POST" {
            return Err(OAuthError::invalid_request(
                "the token endpoint accepts POST only",
            ));
        }
        if !self.is_form() {
            return Err(OAuthError::invalid_request(
                "content type must be application/x-www-form-urlencoded",
            ));
        }
        Ok(())
    }

    /// Whether the content type is `application/x-www-form-urlencoded` (parameters such as
    /// `charset=UTF-8` allowed).
    pub fn is_form(&self) -> bool {
        self.content_type.is_some_and(|ct| {
            ct.split(';').next().is_some_and(|media| {
                media
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sec10_form_and_token_request_debug_are_redacted() {
        let body = b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer\
&assertion=jag.Tq7LmZ2xPw.sigRt&client_id=tc_5f2a91&client_secret=sec-Vb8NkQ3\
&subject_token=idt.Hy6JdC1.sigKp&code=code-Gx4Rw9&code_verifier=ver-Mn2Pq7\
&client_assertion=ca.Lk3Tz8.sigUv&scope=tasks.read&password=pw-Fd5Sa1";
        let form = Form::parse(body, 4096).unwrap();
        let req = TokenRequest::form(body)
            .with_authorization("Basic dGNfNWYyYTkxOnNlYy1WYjhOa1Ez")
            .with_dpop("dpop.Qe9Wr4.sigZx");
        let secrets = [
            "Tq7LmZ2xPw",
            "sec-Vb8NkQ3",
            "Hy6JdC1",
            "code-Gx4Rw9",
            "ver-Mn2Pq7",
            "Lk3Tz8",
            "pw-Fd5Sa1",
            "dGNfNWYyYTkxOnNlYy1WYjhOa1Ez",
            "Qe9Wr4",
        ];
        for text in [
            format!("{form:?}"),
            format!("{form:#?}"),
            format!("{req:?}"),
            format!("{req:#?}"),
        ] {
            for secret in secrets {
                assert!(!text.contains(secret), "{secret} leaked into {text}");
            }
        }
        // The descriptive parts stay readable.
        let text = format!("{form:?}");
        for kept in [
            "jwt-bearer",
            "tc_5f2a91",
            "tasks.read",
            "client_secret",
            "bytes",
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
        let text = format!("{req:?}");
        for kept in [
            "POST",
            "Basic",
            "application/x-www-form-urlencoded",
            "bytes",
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
        // An `Authorization` value whose first word is not a plain scheme is hidden whole.
        let odd = TokenRequest::form(b"").with_authorization("sec:Vb8NkQ3");
        assert!(!format!("{odd:?}").contains("Vb8NkQ3"));
    }

    #[test]
    fn parses_and_decodes() {
        let f = Form::parse(
            b"grant_type=urn%3Aietf%3Aparams&scope=a+b&empty=&flag",
            1024,
        )
        .unwrap();
        assert_eq!(f.get("grant_type"), Some("urn:ietf:params"));
        assert_eq!(f.get("scope"), Some("a b"));
        assert_eq!(f.get("empty"), None);
        assert_eq!(f.get("flag"), None);
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn strictness() {
        assert_eq!(
            Form::parse(b"a=1&a=2", 1024),
            Err(FormError::Repeated { name: "a".into() })
        );
        // An empty occurrence still counts (RFC 6749 §3.2: no repeats).
        assert_eq!(
            Form::parse(b"a=&a=2", 1024),
            Err(FormError::Repeated { name: "a".into() })
        );
        // Encoded names are compared decoded.
        assert_eq!(
            Form::parse(b"a=1&%61=2", 1024),
            Err(FormError::Repeated { name: "a".into() })
        );
        assert_eq!(Form::parse(b"a=%zz", 1024), Err(FormError::Encoding));
        assert_eq!(Form::parse(b"a=%4", 1024), Err(FormError::Encoding));
        assert_eq!(Form::parse(b"a=%ff", 1024), Err(FormError::Encoding));
        // Each malformed escape form_urlencoded would pass through verbatim, in names too.
        for bad in [
            &b"a=%"[..],
            b"a=%%41",
            b"a=%g1",
            b"a=%1g",
            b"a=x%",
            b"%zz=1",
            b"a=%C3",
            b"a=%C3%28",
            b"a=%ED%A0%80",
            b"a=\xff",
        ] {
            assert_eq!(Form::parse(bad, 1024), Err(FormError::Encoding), "{bad:?}");
        }
        // Controls: what is well-formed decodes, including an encoded U+FFFD and `%2B`.
        let ok = Form::parse(b"a=%EF%BF%BD&b=%2b+%2B&c=%c3%a9", 1024).unwrap();
        assert_eq!(ok.get("a"), Some("\u{fffd}"));
        assert_eq!(ok.get("b"), Some("+ +"));
        assert_eq!(ok.get("c"), Some("\u{e9}"));
        assert_eq!(
            Form::parse(&[b'a'; 20], 10),
            Err(FormError::TooLarge { len: 20, max: 10 })
        );
        let many: Vec<u8> = (0..=MAX_PARAMS)
            .map(|i| format!("p{i}=1&"))
            .collect::<String>()
            .into_bytes();
        assert_eq!(Form::parse(&many, 1 << 20), Err(FormError::TooManyParams));
    }

    #[test]
    fn round_trip_encoding() {
        let s = "a b&c=d%é:/+~*";
        assert_eq!(encode_component("a b+~*"), "a%20b%2B%7E*");
        let body = format!("x={}", encode_component(s));
        assert_eq!(
            Form::parse(body.as_bytes(), 1024).unwrap().get("x"),
            Some(s)
        );
    }

    #[test]
    fn from_http_rejects_repeated_headers() {
        let req = http::Request::builder()
            .method("POST")
            .header("authorization", "Basic a")
            .header("authorization", "Basic b")
            .body(Vec::new())
            .unwrap();
        assert_eq!(
            TokenRequest::from_http(&req).unwrap_err(),
            RequestError::RepeatedHeader {
                name: "authorization"
            }
        );
        let ok = http::Request::builder()
            .method("POST")
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .body(Vec::new())
            .unwrap();
        assert!(TokenRequest::from_http(&ok).unwrap().is_form());
    }
}
