//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3, RFC 9728 §5.1): built by MCP
//! servers (RS-1, RS-6), parsed by clients (CL-1, CL-10).

use std::fmt;

use crate::ErrorCode;

/// One challenge: a scheme with either auth-params or a token68.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
    token68: Option<String>,
}

/// Why a `WWW-Authenticate` value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The value breaks the RFC 9110 grammar at this byte offset.
    #[error("malformed challenge at byte {at}")]
    Malformed {
        /// Byte offset of the problem.
        at: usize,
    },
    /// A parameter name appears twice in one challenge (RFC 9110 §11.2).
    #[error("parameter `{name}` is repeated")]
    RepeatedParam {
        /// The name (lowercase).
        name: String,
    },
}

impl Challenge {
    /// A challenge for `scheme` with no parameters.
    pub fn new(scheme: impl Into<String>) -> Self {
        Self {
            scheme: scheme.into(),
            params: Vec::new(),
            token68: None,
        }
    }

    /// A `Bearer` challenge.
    pub fn bearer() -> Self {
        Self::new("Bearer")
    }

    /// Adds a parameter (names are case-insensitive; stored lowercase).
    #[must_use]
    pub fn param(mut self, name: &str, value: impl Into<String>) -> Self {
        self.params.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Adds the `error` parameter (RFC 6750 §3, e.g. [`ErrorCode::InvalidToken`]).
    #[must_use]
    pub fn error(self, code: &ErrorCode) -> Self {
        self.param("error", code.as_str())
    }

    /// The `error` parameter as a code: `None` when it is absent or not a valid OAuth error
    /// code; a code this crate does not name is [`ErrorCode::Other`].
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.get("error").and_then(|e| ErrorCode::parse(e).ok())
    }

    /// The scheme as written.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the scheme is `scheme`, case-insensitively.
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// A parameter's value, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The parameters in order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The token68, when the challenge carries one instead of parameters.
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }
}

impl fmt::Display for Challenge {
    /// Writes the challenge with every parameter value as a quoted-string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        if let Some(t) = &self.token68 {
            return write!(f, " {t}");
        }
        for (i, (name, value)) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            write!(f, "{name}=\"")?;
            for c in value.chars().filter(|c| !c.is_control()) {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        Ok(())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        let bytes = self.s.get(start..self.pos).unwrap_or_default();
        (self.pos > start).then(|| String::from_utf8_lossy(bytes).into_owned())
    }

    /// Reads a quoted-string, starting at its opening quote.
    fn quoted(&mut self) -> Result<String, ChallengeError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ChallengeError::Malformed { at: self.pos }),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out)
                        .map_err(|_| ChallengeError::Malformed { at: self.pos });
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self
                        .peek()
                        .ok_or(ChallengeError::Malformed { at: self.pos })?;
                    out.push(c);
                    self.pos += 1;
                }
                Some(c) if c == b'\t' || (c >= 0x20 && c != 0x7f) => {
                    out.push(c);
                    self.pos += 1;
                }
                Some(_) => return Err(ChallengeError::Malformed { at: self.pos }),
            }
        }
    }

    /// At a possible token68 (after the scheme and a space): its end, if the item is a token68
    /// (it runs to the end of the value or to a comma).
    fn token68_end(&self) -> Option<usize> {
        let mut end = self.pos;
        while self.s.get(end).copied().is_some_and(is_token68_char) {
            end += 1;
        }
        if end == self.pos {
            return None;
        }
        while self.s.get(end) == Some(&b'=') {
            end += 1;
        }
        let mut after = end;
        while matches!(self.s.get(after), Some(b' ' | b'\t')) {
            after += 1;
        }
        matches!(self.s.get(after), None | Some(b',')).then_some(end)
    }

    /// Whether the last non-blank byte before `at` is a comma.
    fn after_comma(&self, at: usize) -> bool {
        self.s
            .get(..at)
            .and_then(|b| b.iter().rev().find(|x| !matches!(x, b' ' | b'\t')))
            .is_some_and(|b| *b == b',')
    }
}

/// Parses a `WWW-Authenticate` field value, which may hold several comma-separated
/// challenges, each a scheme followed by a token68 or by auth-params.
pub fn parse_challenges(value: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut c = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
            c.pos += 1;
        }
        if c.peek().is_none() {
            return Ok(out);
        }
        let scheme = c.token().ok_or(ChallengeError::Malformed { at: c.pos })?;
        let mut challenge = Challenge::new(scheme);
        if matches!(c.peek(), Some(b' ' | b'\t')) {
            c.skip_ws();
            if let Some(end) = c.token68_end() {
                challenge.token68 = value.get(c.pos..end).map(str::to_owned);
                c.pos = end;
                out.push(challenge);
                continue;
            }
        } else if !matches!(c.peek(), None | Some(b',')) {
            return Err(ChallengeError::Malformed { at: c.pos });
        }
        loop {
            c.skip_ws();
            match c.peek() {
                None => break,
                Some(b',') => {
                    c.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let start = c.pos;
            let name = c.token().ok_or(ChallengeError::Malformed { at: c.pos })?;
            c.skip_ws();
            if c.peek() != Some(b'=') {
                // A token without `=` after a comma starts the next challenge.
                if !c.after_comma(start) {
                    return Err(ChallengeError::Malformed { at: c.pos });
                }
                c.pos = start;
                break;
            }
            c.pos += 1;
            c.skip_ws();
            let param_value = match c.peek() {
                Some(b'"') => c.quoted()?,
                _ => c.token().ok_or(ChallengeError::Malformed { at: c.pos })?,
            };
            let name = name.to_ascii_lowercase();
            if challenge.params.iter().any(|(n, _)| *n == name) {
                return Err(ChallengeError::RepeatedParam { name });
            }
            challenge.params.push((name, param_value));
            // Parameters are separated by commas.
            c.skip_ws();
            if !matches!(c.peek(), None | Some(b',')) {
                return Err(ChallengeError::Malformed { at: c.pos });
            }
        }
        out.push(challenge);
    }
}

/// Finds the first challenge of `scheme` in a header value.
pub fn find_challenge(value: &str, scheme: &str) -> Result<Option<Challenge>, ChallengeError> {
    Ok(parse_challenges(value)?.into_iter().find(|c| c.is(scheme)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_rs1_and_rs6_challenges() {
        let c = Challenge::bearer()
            .error(&ErrorCode::InsufficientScope)
            .param("scope", "tasks.write")
            .param(
                "resource_metadata",
                "https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp",
            );
        assert_eq!(
            c.to_string(),
            "Bearer error=\"insufficient_scope\", scope=\"tasks.write\", resource_metadata=\"https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp\""
        );
        let tricky = Challenge::bearer().param("error_description", "a \"quoted\" \\ thing\n");
        assert_eq!(
            parse_challenges(&tricky.to_string()).unwrap(),
            vec![Challenge::bearer().param("error_description", "a \"quoted\" \\ thing")]
        );
    }

    #[test]
    fn parses_several_challenges() {
        let v = r#"Bearer resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp", scope="a b", DPoP algs="ES256 PS256", Basic realm="x""#;
        let cs = parse_challenges(v).unwrap();
        assert_eq!(cs.len(), 3);
        assert!(cs[0].is("bearer"));
        assert_eq!(
            cs[0].get("Resource_Metadata"),
            Some("https://mcp.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(cs[0].get("scope"), Some("a b"));
        assert_eq!(cs[1].scheme(), "DPoP");
        assert_eq!(cs[1].get("algs"), Some("ES256 PS256"));
        assert_eq!(cs[2].get("realm"), Some("x"));
    }

    #[test]
    fn token_values_token68_and_bare_schemes() {
        let cs = parse_challenges("Bearer error=invalid_token, Negotiate abc+/==, Basic").unwrap();
        assert_eq!(cs[0].get("error"), Some("invalid_token"));
        assert_eq!(cs[0].error_code(), Some(ErrorCode::InvalidToken));
        assert_eq!(cs[2].error_code(), None);
        assert_eq!(cs[1].token68(), Some("abc+/=="));
        assert_eq!(cs[2].scheme(), "Basic");
        assert_eq!(
            parse_challenges("Bearer").unwrap(),
            vec![Challenge::bearer()]
        );
        assert_eq!(parse_challenges("").unwrap(), vec![]);
    }

    #[test]
    fn rfc6750_error_codes_from_challenges() {
        let parse = |v: &str| find_challenge(v, "Bearer").unwrap().unwrap().error_code();
        assert_eq!(
            parse(r#"Bearer error="insufficient_scope", scope="a""#),
            Some(ErrorCode::InsufficientScope)
        );
        assert_eq!(
            parse(r#"Bearer error="invalid_request""#),
            Some(ErrorCode::InvalidRequest)
        );
        // An unknown code is kept; a value outside the RFC 6749 character set is no code.
        assert_eq!(
            parse(r#"Bearer error="use_dpop_nonce""#).map(|c| c.as_str().to_owned()),
            Some("use_dpop_nonce".to_owned())
        );
        assert_eq!(parse(r#"Bearer error="a\"b""#), None);
        assert_eq!(parse(r#"Bearer realm="x""#), None);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            r#"Bearer realm="x"#,
            "Bearer realm=\"a\u{1}\"",
            "=x",
            r#"Bearer a="1", a="2""#,
            r#"Bearer a="1" b="2""#,
            "Bearer x, a=",
            "Bearer\"x\"",
        ] {
            assert!(parse_challenges(bad).is_err(), "{bad}");
        }
    }
}
