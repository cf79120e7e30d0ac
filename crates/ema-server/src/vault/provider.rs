//! [`HttpProviderClient`]: a downstream provider's token and revocation endpoints over HTTP.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ema_grant::form::encode_component;
use ema_jose::{Clock, SystemClock};
use ema_vault::{
    BoxFuture, ProviderClient, ProviderError, RevokeOutcome, Secret, TokenSet, TokenTypeHint,
};

/// The longest token or revocation response read, in bytes; a longer one is a protocol error.
pub const MAX_PROVIDER_RESPONSE: usize = 64 * 1024;

/// How long a request to a provider may take, connection included, unless set otherwise.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// How the MCP server authenticates to a provider as a confidential client (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded client id and secret (the default).
    #[default]
    SecretBasic,
    /// `client_id` and `client_secret` in the request body.
    SecretPost,
}

/// A provider endpoint URL that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderConfigError {
    /// Not an absolute `https` URL (or `http` on a loopback address).
    #[error("the {what} `{url}` is not an https URL (http is accepted on loopback only)")]
    Url {
        /// `token endpoint`, `revocation endpoint` or `authorization endpoint`.
        what: &'static str,
        /// The URL as given.
        url: String,
    },
    /// The client id is empty.
    #[error("the client id is empty")]
    EmptyClientId,
    /// The HTTP client could not be built.
    #[error("the HTTP client could not be built: {0}")]
    Http(String),
}

/// Checks a provider endpoint: absolute, `https`, or `http` on a loopback host.
pub(crate) fn endpoint(what: &'static str, raw: &str) -> Result<url::Url, ProviderConfigError> {
    let bad = || ProviderConfigError::Url {
        what,
        url: raw.to_owned(),
    };
    let url = url::Url::parse(raw).map_err(|_| bad())?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(bad()),
    }
}

/// One downstream provider's OAuth token endpoint (refresh, authorization-code exchange) and
/// RFC 7009 revocation endpoint, as a confidential client: the vault's
/// [`ProviderClient`] over HTTP.
///
/// - Every request has a timeout ([`DEFAULT_PROVIDER_TIMEOUT`] unless
///   [`with_timeout`](Self::with_timeout)), follows no redirects, and reads at most
///   [`MAX_PROVIDER_RESPONSE`] bytes.
/// - A token response is parsed strictly: a JSON object with a non-empty `access_token` and
///   `token_type`, a positive integer `expires_in` if any, a string `scope` if any, a non-empty
///   `refresh_token` if any. Anything else is [`ProviderError::Protocol`].
/// - `invalid_grant` is [`ProviderError::InvalidGrant`] (the user must connect again); a
///   timeout, a connection failure or a 5xx is [`ProviderError::Unavailable`]; any other
///   OAuth error is [`ProviderError::Protocol`] naming the error code.
/// - No error and no log line carries a token, a code, a verifier or the client secret: a
///   provider's `error_description` that echoes one is dropped.
///
/// ```
/// use ema_server::vault::{ClientAuth, HttpProviderClient};
/// use ema_vault::Secret;
///
/// let notes = HttpProviderClient::new(
///     "https://notes.example/token",
///     "mcp-server",
///     Secret::new("s3cr3t".to_owned()),
/// )
/// .unwrap()
/// .with_revocation_endpoint("https://notes.example/revoke")
/// .unwrap()
/// .with_client_auth(ClientAuth::SecretPost);
/// assert!(format!("{notes:?}").contains("notes.example/token"));
/// assert!(!format!("{notes:?}").contains("s3cr3t"));
/// ```
#[derive(Clone)]
pub struct HttpProviderClient {
    http: reqwest::Client,
    token_endpoint: url::Url,
    revocation_endpoint: Option<url::Url>,
    client_id: String,
    client_secret: Secret,
    auth: ClientAuth,
    timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for HttpProviderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProviderClient")
            .field("token_endpoint", &self.token_endpoint.as_str())
            .field(
                "revocation_endpoint",
                &self.revocation_endpoint.as_ref().map(url::Url::as_str),
            )
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The form body of a request, with the client's credentials in it for `client_secret_post`.
struct Body(String);

impl Body {
    fn new() -> Self {
        Self(String::new())
    }

    fn param(mut self, name: &str, value: &str) -> Self {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(&encode_component(value));
        self
    }
}

impl HttpProviderClient {
    /// A client of the provider whose token endpoint is `token_endpoint`, authenticating as
    /// `client_id` with `client_secret` (HTTP Basic unless
    /// [`with_client_auth`](Self::with_client_auth)); no revocation endpoint until
    /// [`with_revocation_endpoint`](Self::with_revocation_endpoint).
    pub fn new(
        token_endpoint: &str,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Result<Self, ProviderConfigError> {
        let client_id = client_id.into();
        if client_id.is_empty() {
            return Err(ProviderConfigError::EmptyClientId);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ProviderConfigError::Http(e.to_string()))?;
        Ok(Self {
            http,
            token_endpoint: endpoint("token endpoint", token_endpoint)?,
            revocation_endpoint: None,
            client_id,
            client_secret,
            auth: ClientAuth::default(),
            timeout: DEFAULT_PROVIDER_TIMEOUT,
            clock: Arc::new(SystemClock),
        })
    }

    /// The provider's RFC 7009 revocation endpoint.
    pub fn with_revocation_endpoint(mut self, url: &str) -> Result<Self, ProviderConfigError> {
        self.revocation_endpoint = Some(endpoint("revocation endpoint", url)?);
        Ok(self)
    }

    /// How the client authenticates.
    #[must_use]
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The timeout of each request, connection included.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The clock that turns `expires_in` into an expiry (the system clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> &str {
        self.token_endpoint.as_str()
    }

    /// Trades an authorization code for a token set (RFC 6749 §4.1.3) with its PKCE verifier
    /// (RFC 7636): the connect flow's last step. `redirect_uri` is the one the authorization
    /// request named.
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenSet, ProviderError> {
        let body = Body::new()
            .param("grant_type", "authorization_code")
            .param("code", code)
            .param("redirect_uri", redirect_uri)
            .param("code_verifier", code_verifier.expose());
        let secrets = [code, code_verifier.expose()];
        self.token_request(body, &secrets).await
    }

    async fn token_request(&self, body: Body, secrets: &[&str]) -> Result<TokenSet, ProviderError> {
        let (status, bytes) = self.post(&self.token_endpoint, body).await?;
        let secrets: Vec<&str> = secrets
            .iter()
            .copied()
            .chain([self.client_secret.expose()])
            .collect();
        if status != 200 {
            return Err(error_response(status, &bytes, &secrets));
        }
        parse_token_response(&bytes, self.clock.now())
    }

    /// Posts `body` (plus the client's credentials) to `url`; the status and at most
    /// [`MAX_PROVIDER_RESPONSE`] bytes of the answer.
    async fn post(&self, url: &url::Url, body: Body) -> Result<(u16, Vec<u8>), ProviderError> {
        let mut request = self
            .http
            .post(url.clone())
            .timeout(self.timeout)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        let body = match self.auth {
            ClientAuth::SecretBasic => {
                request = request.basic_auth(
                    encode_component(&self.client_id),
                    Some(encode_component(self.client_secret.expose())),
                );
                body
            }
            ClientAuth::SecretPost => body
                .param("client_id", &self.client_id)
                .param("client_secret", self.client_secret.expose()),
        };
        let mut response = request
            .body(body.0)
            .send()
            .await
            .map_err(|e| unreachable_provider(url, &e))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_PROVIDER_RESPONSE {
                        return Err(ProviderError::Protocol(format!(
                            "the answer of {url} is longer than {MAX_PROVIDER_RESPONSE} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(unreachable_provider(url, &e)),
            }
        }
        Ok((status, bytes))
    }
}

/// A transport failure, without the request (reqwest's errors may carry the URL; the URL holds
/// no secret, the body is never in them).
fn unreachable_provider(url: &url::Url, e: &reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not be reached"
    } else {
        "failed"
    };
    tracing::warn!(target: "ema_server::vault", endpoint = %url, "a provider request {what}");
    ProviderError::Unavailable(format!("the request to {url} {what}"))
}

/// An OAuth error response (RFC 6749 §5.2) as a [`ProviderError`].
fn error_response(status: u16, bytes: &[u8], secrets: &[&str]) -> ProviderError {
    if status >= 500 {
        return ProviderError::Unavailable(format!("the provider answered HTTP {status}"));
    }
    let Ok(serde_json::Value::Object(body)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return ProviderError::Protocol(format!("HTTP {status} without an OAuth error object"));
    };
    let Some(code) = body.get("error").and_then(serde_json::Value::as_str) else {
        return ProviderError::Protocol(format!("HTTP {status} without an `error` code"));
    };
    let code = printable(code, 64);
    // A description that repeats what was sent (a token, a code) is not passed on.
    let description = body
        .get("error_description")
        .and_then(serde_json::Value::as_str)
        .filter(|d| !secrets.iter().any(|s| !s.is_empty() && d.contains(s)))
        .map(|d| printable(d, 200));
    let text = match description {
        Some(d) if !d.is_empty() => format!("{code}: {d}"),
        _ => code.clone(),
    };
    if code == "invalid_grant" {
        ProviderError::InvalidGrant { description: text }
    } else {
        ProviderError::Protocol(format!("the provider refused the request ({text})"))
    }
}

/// At most `max` characters of `s`, control characters dropped.
fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// A successful token response (RFC 6749 §5.1), parsed strictly.
fn parse_token_response(bytes: &[u8], now: ema_jose::UnixTime) -> Result<TokenSet, ProviderError> {
    use serde_json::Value;
    let bad = |what: &str| ProviderError::Protocol(format!("token response: {what}"));
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(bad("not a JSON object"));
    };
    let mut string = |name: &str, required: bool| -> Result<Option<String>, ProviderError> {
        match body.remove(name) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            None | Some(Value::Null) => Err(bad(&format!("`{name}` is missing"))),
            Some(_) => Err(bad(&format!("`{name}` is not a non-empty string"))),
        }
    };
    let access_token = string("access_token", true)?
        .map(Secret::new)
        .ok_or_else(|| bad("`access_token` is missing"))?;
    let token_type = string("token_type", true)?.ok_or_else(|| bad("`token_type` is missing"))?;
    let refresh_token = string("refresh_token", false)?.map(Secret::new);
    let scope = string("scope", false)?;
    let expires_in = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(secs) if secs > 0 => Some(secs),
            _ => return Err(bad("`expires_in` is not a positive integer")),
        },
    };
    let mut tokens = TokenSet::bearer(access_token);
    tokens.token_type = token_type;
    if let Some(secs) = expires_in {
        tokens = tokens.with_expires_at(now.plus(secs));
    }
    if let Some(scope) = scope {
        tokens = tokens.with_scopes(scope.split(' ').filter(|s| !s.is_empty()));
    }
    if let Some(refresh) = refresh_token {
        tokens = tokens.with_refresh_token(refresh);
    }
    Ok(tokens)
}

impl ProviderClient for HttpProviderClient {
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a Secret,
    ) -> BoxFuture<'a, Result<TokenSet, ProviderError>> {
        Box::pin(async move {
            let body = Body::new()
                .param("grant_type", "refresh_token")
                .param("refresh_token", refresh_token.expose());
            self.token_request(body, &[refresh_token.expose()]).await
        })
    }

    fn revoke<'a>(
        &'a self,
        token: &'a Secret,
        hint: TokenTypeHint,
    ) -> BoxFuture<'a, Result<RevokeOutcome, ProviderError>> {
        Box::pin(async move {
            let Some(url) = &self.revocation_endpoint else {
                return Ok(RevokeOutcome::NotSupported);
            };
            let body = Body::new()
                .param("token", token.expose())
                .param("token_type_hint", hint.as_str());
            let (status, bytes) = self.post(url, body).await?;
            if status == 200 {
                return Ok(RevokeOutcome::Revoked);
            }
            match error_response(
                status,
                &bytes,
                &[token.expose(), self.client_secret.expose()],
            ) {
                ProviderError::Unavailable(why) => Err(ProviderError::Unavailable(why)),
                // RFC 7009 §2.2.1: the server cannot revoke this type of token.
                ProviderError::Protocol(why) if why.contains("(unsupported_token_type") => {
                    Ok(RevokeOutcome::NotSupported)
                }
                ProviderError::InvalidGrant { description } => {
                    Ok(RevokeOutcome::Failed(format!("refused: {description}")))
                }
                other => Ok(RevokeOutcome::Failed(other.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: ema_jose::UnixTime = ema_jose::UnixTime::from_secs(1_000);

    #[test]
    fn a_full_token_response_parses() {
        let t = parse_token_response(
            br#"{"access_token":"at","token_type":"Bearer","expires_in":60,"scope":"a b","refresh_token":"rt"}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(t.access_token.expose(), "at");
        assert_eq!(t.expires_at, Some(NOW.plus(60)));
        assert_eq!(t.scopes, ["a", "b"]);
        assert_eq!(t.refresh_token.unwrap().expose(), "rt");
        let minimal =
            parse_token_response(br#"{"access_token":"at","token_type":"Bearer"}"#, NOW).unwrap();
        assert!(minimal.expires_at.is_none() && minimal.refresh_token.is_none());
    }

    #[test]
    fn malformed_token_responses_are_protocol_errors() {
        for body in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"token_type":"Bearer"}"#,
            br#"{"access_token":"","token_type":"Bearer"}"#,
            br#"{"access_token":7,"token_type":"Bearer"}"#,
            br#"{"access_token":"at"}"#,
            br#"{"access_token":"at","token_type":"Bearer","expires_in":-5}"#,
            br#"{"access_token":"at","token_type":"Bearer","expires_in":"60"}"#,
            br#"{"access_token":"at","token_type":"Bearer","expires_in":0}"#,
            br#"{"access_token":"at","token_type":"Bearer","refresh_token":""}"#,
            br#"{"access_token":"at","token_type":"Bearer","scope":["a"]}"#,
        ] {
            match parse_token_response(body, NOW) {
                Err(ProviderError::Protocol(_)) => {}
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn error_responses_map_to_their_kinds_without_echoed_secrets() {
        let e = error_response(
            400,
            br#"{"error":"invalid_grant","error_description":"refresh token rt-123 revoked"}"#,
            &["rt-123"],
        );
        assert_eq!(
            e,
            ProviderError::InvalidGrant {
                description: "invalid_grant".into()
            }
        );
        assert!(!e.to_string().contains("rt-123"));
        let e = error_response(
            400,
            br#"{"error":"invalid_grant","error_description":"expired"}"#,
            &["rt-123"],
        );
        assert_eq!(
            e.to_string(),
            "the provider refused the grant (invalid_grant: expired)"
        );
        assert!(matches!(
            error_response(401, br#"{"error":"invalid_client"}"#, &[]),
            ProviderError::Protocol(m) if m.contains("invalid_client")
        ));
        assert!(matches!(
            error_response(503, b"", &[]),
            ProviderError::Unavailable(_)
        ));
        assert!(matches!(
            error_response(400, b"<html>", &[]),
            ProviderError::Protocol(_)
        ));
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        assert!(endpoint("token endpoint", "https://p.example/token").is_ok());
        assert!(endpoint("token endpoint", "http://127.0.0.1:9/token").is_ok());
        assert!(endpoint("token endpoint", "http://localhost:9/token").is_ok());
        assert!(endpoint("token endpoint", "http://p.example/token").is_err());
        assert!(endpoint("token endpoint", "/token").is_err());
        assert!(HttpProviderClient::new("https://p/t", "", Secret::new("s".into())).is_err());
    }
}
