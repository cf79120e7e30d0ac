//! The MCP authorization code flow as a client, for authorization servers that do not offer the
//! ID-JAG profile (CL-3) or when the caller asks for it: PKCE S256, `state`, `resource`
//! (RFC 8707), the `iss` check of RFC 9207, a pluggable "open this URL" hook and a loopback
//! redirect listener (RFC 8252 §7.3).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ema_id_jag::ScopeSet;
use ema_jose::random_id;
use ema_jwks::Secret;
use ema_metadata::ErrorCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use url::Url;

use crate::credentials::{ClientCredentials, Form};
use crate::discovery::DiscoveredServer;
use crate::error::{CodeFlowError, OAuthErrorResponse};
use crate::flow::{AccessToken, EmaClient, TokenPost};
use crate::scope_report::ScopeReport;

/// The `grant_type` of the code redemption (RFC 6749 §4.1.3).
const AUTHORIZATION_CODE_GRANT: &str = "authorization_code";
/// The largest callback request head the listener reads.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// A boxed future, as [`OpenUrl::open`] returns it.
pub type OpenUrlFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// The "open this URL" hook: shows the user the authorization URL (opens a browser, prints it,
/// or, in tests, plays the browser). The flow waits for the redirect on its loopback listener
/// while the hook runs, so a hook may follow the whole sign-in itself before returning.
///
/// Closures `Fn(Url) -> impl Future<Output = Result<(), String>>` implement it:
///
/// ```
/// use ema_client::{CodeFlowOptions, LoopbackRedirect};
///
/// let options = CodeFlowOptions::new(LoopbackRedirect::bind(0).unwrap())
///     .open_url(|url: url::Url| async move {
///         eprintln!("sign in at {url}");
///         Ok(())
///     });
/// # let _ = options;
/// ```
pub trait OpenUrl: Send + Sync {
    /// Shows `url` to the user. An error stops the flow ([`CodeFlowError::OpenUrl`]).
    fn open<'a>(&'a self, url: &'a Url) -> OpenUrlFuture<'a>;
}

/// The default hook: prints the URL on standard error for the user to open.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrintUrl;

impl OpenUrl for PrintUrl {
    fn open<'a>(&'a self, url: &'a Url) -> OpenUrlFuture<'a> {
        #[allow(
            clippy::print_stderr,
            reason = "printing the URL is this hook's purpose"
        )]
        {
            eprintln!("Open this URL in your browser to sign in:\n\n  {url}\n");
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

impl<F, Fut> OpenUrl for F
where
    F: Fn(Url) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn open<'a>(&'a self, url: &'a Url) -> OpenUrlFuture<'a> {
        Box::pin(self(url.clone()))
    }
}

/// The loopback redirect listener (RFC 8252 §7.3): `http://127.0.0.1:<port><path>`, bound once
/// and reused by every run of the flow. Each run waits for one callback request (other paths
/// get `404`), answers the browser with a short page, refuses a wrong `state`, and gives up
/// after the timeout (default 5 minutes). Clones share the socket, and runs on it take turns.
///
/// ```
/// use std::time::Duration;
/// use ema_client::LoopbackRedirect;
///
/// let redirect = LoopbackRedirect::bind(0)?.with_timeout(Duration::from_secs(120));
/// assert!(redirect.redirect_uri().starts_with("http://127.0.0.1:"));
/// assert!(redirect.redirect_uri().ends_with("/callback"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LoopbackRedirect {
    listener: Arc<std::net::TcpListener>,
    /// One run at a time: a callback is never taken by another run's accept loop.
    pub(crate) runs: Arc<tokio::sync::Mutex<()>>,
    port: u16,
    path: String,
    timeout: Duration,
}

impl LoopbackRedirect {
    /// Binds `127.0.0.1:port` (`0`: a port the OS chooses).
    pub fn bind(port: u16) -> std::io::Result<Self> {
        Self::from_listener(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?)
    }

    /// Uses a listener the caller bound (it must be on a loopback address).
    pub fn from_listener(listener: std::net::TcpListener) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the redirect listener must be on a loopback address",
            ));
        }
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener: Arc::new(listener),
            runs: Arc::new(tokio::sync::Mutex::new(())),
            port: addr.port(),
            path: "/callback".to_owned(),
            timeout: Duration::from_secs(300),
        })
    }

    /// The callback path (default `/callback`; a leading `/` is added when missing).
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        self
    }

    /// How long a run waits for the browser's redirect (default 5 minutes).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `redirect_uri` to register and send: `http://127.0.0.1:<port><path>`.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.path)
    }

    /// Waits for the callback carrying `state`; its query parameters.
    pub(crate) async fn receive(
        &self,
        state: &str,
    ) -> Result<HashMap<String, String>, CodeFlowError> {
        let listener = self
            .listener
            .try_clone()
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|e| CodeFlowError::Listener(e.to_string()))?;
        tokio::time::timeout(self.timeout, self.accept_callback(&listener, state))
            .await
            .map_err(|_| CodeFlowError::Timeout {
                after: self.timeout,
            })?
    }

    async fn accept_callback(
        &self,
        listener: &tokio::net::TcpListener,
        state: &str,
    ) -> Result<HashMap<String, String>, CodeFlowError> {
        loop {
            let (mut stream, peer) = listener
                .accept()
                .await
                .map_err(|e| CodeFlowError::Listener(e.to_string()))?;
            if !peer.ip().is_loopback() {
                continue;
            }
            let Some(target) = read_request_target(&mut stream).await else {
                respond(
                    &mut stream,
                    400,
                    "Bad request",
                    "This is not a sign-in callback.",
                )
                .await;
                continue;
            };
            let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
            if path != self.path {
                respond(
                    &mut stream,
                    404,
                    "Not found",
                    "This is not a sign-in callback.",
                )
                .await;
                continue;
            }
            let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            // CL-12: a callback for another authorization request is refused.
            if !params
                .get("state")
                .is_some_and(|s| constant_time_eq(s, state))
            {
                respond(
                    &mut stream,
                    400,
                    "Sign-in refused",
                    "This sign-in response does not belong to the request the application made \
                     (state mismatch). Start the sign-in again from the application.",
                )
                .await;
                return Err(CodeFlowError::StateMismatch);
            }
            if params.contains_key("error") {
                respond(
                    &mut stream,
                    200,
                    "Sign-in refused",
                    "The sign-in was refused. The application shows why; you can close this window.",
                )
                .await;
            } else {
                respond(
                    &mut stream,
                    200,
                    "Signed in",
                    "You are signed in. You can close this window and return to the application.",
                )
                .await;
            }
            return Ok(params);
        }
    }
}

/// Reads a request head and returns the `GET` request target.
async fn read_request_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return None;
        }
        head.extend_from_slice(buf.get(..n)?);
    }
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET" && target.starts_with('/')).then(|| target.to_owned())
}

async fn respond(stream: &mut tokio::net::TcpStream, status: u16, title: &str, text: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // The browser's fate does not change the flow's outcome.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// How the client runs the authorization code flow: its identity at each authorization server,
/// the redirect listener and the "open this URL" hook. Set with
/// [`EmaClientBuilder::code_flow`](crate::EmaClientBuilder::code_flow).
///
/// The client identity at an authorization server is a pre-registered client
/// ([`CodeFlowOptions::registered_client`], public or confidential, kept per issuer as CL-13
/// requires), else a Client ID Metadata Document URL
/// ([`CodeFlowOptions::client_id_metadata_document`]) where the server advertises
/// `client_id_metadata_document_supported`.
#[derive(Clone)]
pub struct CodeFlowOptions {
    registered: HashMap<String, ClientCredentials>,
    metadata_document: Option<String>,
    redirect: LoopbackRedirect,
    opener: Arc<dyn OpenUrl>,
}

impl fmt::Debug for CodeFlowOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeFlowOptions")
            .field("registered", &self.registered)
            .field("metadata_document", &self.metadata_document)
            .field("redirect", &self.redirect)
            .finish_non_exhaustive()
    }
}

impl CodeFlowOptions {
    /// Options with `redirect` as the listener and [`PrintUrl`] as the hook.
    pub fn new(redirect: LoopbackRedirect) -> Self {
        Self {
            registered: HashMap::new(),
            metadata_document: None,
            redirect,
            opener: Arc::new(PrintUrl),
        }
    }

    /// The client's registration at the authorization server `issuer` (public:
    /// [`ClientCredentials::public`], or confidential).
    #[must_use]
    pub fn registered_client(
        mut self,
        issuer: impl Into<String>,
        credentials: ClientCredentials,
    ) -> Self {
        self.registered.insert(issuer.into(), credentials);
        self
    }

    /// The `https` URL of the client's metadata document, used as its `client_id` (a public
    /// client) at servers it is not registered with.
    #[must_use]
    pub fn client_id_metadata_document(mut self, url: impl Into<String>) -> Self {
        self.metadata_document = Some(url.into());
        self
    }

    /// The "open this URL" hook (default [`PrintUrl`]).
    #[must_use]
    pub fn open_url(mut self, opener: impl OpenUrl + 'static) -> Self {
        self.opener = Arc::new(opener);
        self
    }

    /// The redirect listener.
    pub fn redirect(&self) -> &LoopbackRedirect {
        &self.redirect
    }

    /// The "open this URL" hook.
    pub(crate) fn opener(&self) -> &dyn OpenUrl {
        self.opener.as_ref()
    }

    /// Whether the client is registered at `issuer`.
    pub(crate) fn is_registered_at(&self, issuer: &str) -> bool {
        self.registered.contains_key(issuer)
    }

    /// The client identity at `server`'s authorization server.
    fn client_for(&self, server: &DiscoveredServer) -> Result<ClientCredentials, CodeFlowError> {
        let metadata = &server.authorization_server;
        if let Some(registered) = self.registered.get(&metadata.issuer) {
            return Ok(registered.clone());
        }
        match &self.metadata_document {
            Some(url) if metadata.client_id_metadata_document_supported == Some(true) => {
                Ok(ClientCredentials::public(url.as_str()))
            }
            _ => Err(CodeFlowError::NoClientIdentity {
                issuer: metadata.issuer.clone(),
                metadata_document_supported: metadata.client_id_metadata_document_supported
                    == Some(true),
            }),
        }
    }
}

/// A PKCE verifier (RFC 7636 §4.1): 256 random bits, 44 base64url characters.
pub(crate) fn pkce_verifier() -> Result<String, CodeFlowError> {
    let a = random_id().map_err(CodeFlowError::Sign)?;
    let b = random_id().map_err(CodeFlowError::Sign)?;
    Ok(format!("{a}{b}"))
}

/// `BASE64URL(SHA-256(verifier))` (RFC 7636 §4.2).
pub(crate) fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    ema_jose::base64url::encode(digest.as_ref())
}

/// Runs `open` and `wait` together: the result of `wait`, unless `open` fails first.
pub(crate) async fn open_and_wait<T>(
    open: impl Future<Output = Result<(), String>>,
    wait: impl Future<Output = Result<T, CodeFlowError>>,
) -> Result<T, CodeFlowError> {
    let mut open = std::pin::pin!(open);
    let mut wait = std::pin::pin!(wait);
    let mut opened = false;
    std::future::poll_fn(|cx| {
        if !opened && let Poll::Ready(result) = open.as_mut().poll(cx) {
            opened = true;
            if let Err(e) = result {
                return Poll::Ready(Err(CodeFlowError::OpenUrl(e)));
            }
        }
        wait.as_mut().poll(cx)
    })
    .await
}

/// The code of a redirect to the loopback listener: `iss` checked first (RFC 9207; required when
/// `iss_required`), then an `error` surfaced as the server's refusal, then the `code`.
pub(crate) fn callback_code(
    params: &HashMap<String, String>,
    issuer: &str,
    iss_required: bool,
) -> Result<String, CodeFlowError> {
    match params.get("iss") {
        Some(found) if found == issuer => {}
        None if !iss_required => {}
        found => {
            return Err(CodeFlowError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: found.map(|f| f.chars().take(256).collect()),
            });
        }
    }
    if let Some(error) = params.get("error") {
        let text = |name: &str| {
            params
                .get(name)
                .map(|v| v.chars().take(512).collect::<String>())
        };
        // Not an HTTP answer: the error came through the redirect (status 0).
        let response = OAuthErrorResponse {
            status: 0,
            error: ErrorCode::parse(error).ok(),
            error_description: text("error_description"),
            error_uri: text("error_uri"),
            max_age: None,
            acr_values: None,
        };
        return Err(if error == "access_denied" {
            CodeFlowError::AccessDenied {
                description: response.error_description,
            }
        } else {
            CodeFlowError::Refused(response)
        });
    }
    params
        .get("code")
        .filter(|c| !c.is_empty())
        .cloned()
        .ok_or(CodeFlowError::MissingCode)
}

impl EmaClient {
    /// Runs the authorization code flow once against `server`'s authorization server for
    /// `scope`: an authorization request with PKCE S256, `state` and `resource` (RFC 8707)
    /// shown through the [`OpenUrl`] hook, the redirect on the loopback listener (`state` and,
    /// RFC 9207, `iss` checked), then the code redeemed with the verifier. The user signs in at
    /// the authorization server (which, for an EMA reference AS, delegates to the IdP).
    ///
    /// Used by sessions from [`EmaClient::code_flow_session`] and [`EmaClient::connect`];
    /// call it directly for a one-off token.
    pub async fn authorize(
        &self,
        server: &DiscoveredServer,
        scope: &ScopeSet,
    ) -> Result<AccessToken, CodeFlowError> {
        let options = self
            .code_flow_options()
            .ok_or(CodeFlowError::NotConfigured)?;
        let metadata = &server.authorization_server;
        let issuer = metadata.issuer.as_str();
        let endpoint = metadata.authorization_endpoint.as_deref().ok_or_else(|| {
            CodeFlowError::NoAuthorizationEndpoint {
                issuer: issuer.to_owned(),
            }
        })?;
        // MCP: a server that does not advertise S256 is not used.
        if !metadata
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m == "S256"))
        {
            return Err(CodeFlowError::S256NotSupported {
                issuer: issuer.to_owned(),
            });
        }
        let credentials = options.client_for(server)?;
        let mut authorize_url = self
            .fetcher()
            .check_url("authorization_endpoint", endpoint)
            .map_err(CodeFlowError::Token)?;
        let verifier = pkce_verifier()?;
        let state = random_id().map_err(CodeFlowError::Sign)?;
        let redirect_uri = options.redirect.redirect_uri();
        {
            let mut query = authorize_url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", credentials.client_id())
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", &s256(&verifier))
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", server.resource_id());
            if !scope.is_empty() {
                query.append_pair("scope", &scope.to_string());
            }
        }
        let params = {
            let _turn = options.redirect.runs.lock().await;
            open_and_wait(
                options.opener.open(&authorize_url),
                options.redirect.receive(&state),
            )
            .await?
        };
        // RFC 9207: `iss`, when sent (and it must be when the server says it sends it), is the
        // issuer the request went to.
        let iss_required = metadata
            .extra
            .get("authorization_response_iss_parameter_supported")
            .and_then(serde_json::Value::as_bool)
            == Some(true);
        let code = callback_code(&params, issuer, iss_required)?;
        self.redeem_code(server, &credentials, &code, &verifier, &redirect_uri, scope)
            .await
    }

    /// Redeems `code` with the verifier at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.5).
    async fn redeem_code(
        &self,
        server: &DiscoveredServer,
        credentials: &ClientCredentials,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        scope: &ScopeSet,
    ) -> Result<AccessToken, CodeFlowError> {
        let metadata = &server.authorization_server;
        let endpoint = self
            .fetcher()
            .check_url(
                "token_endpoint",
                metadata.token_endpoint.as_deref().unwrap_or_default(),
            )
            .map_err(CodeFlowError::Token)?;
        let now = self.now();
        let mut form = Form::default();
        form.push("grant_type", AUTHORIZATION_CODE_GRANT);
        form.push_secret("code", Secret::new(code));
        form.push_secret("code_verifier", Secret::new(verifier));
        form.push("redirect_uri", redirect_uri);
        form.push("resource", server.resource_id());
        let authorization = credentials
            .authenticate(&metadata.issuer, now, 60, &mut form)
            .map_err(CodeFlowError::Sign)?;
        let malformed = |reason| CodeFlowError::MalformedResponse { reason };
        let body = match self
            .post_token_request(&endpoint, &form, authorization)
            .await
        {
            Ok(body) => body,
            Err(TokenPost::Fetch(e)) => return Err(CodeFlowError::Token(e)),
            Err(TokenPost::Rejected(e)) => return Err(CodeFlowError::TokenRejected(e)),
            Err(TokenPost::NotJson) => return Err(malformed("body is not a JSON object")),
        };
        let text = |name: &str| body.get(name).and_then(serde_json::Value::as_str);
        let token = text("access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| malformed("`access_token` is missing"))?;
        let token_type = text("token_type").ok_or_else(|| malformed("`token_type` is missing"))?;
        if !token_type.eq_ignore_ascii_case("Bearer") {
            return Err(CodeFlowError::UnsupportedTokenType {
                found: token_type.chars().take(64).collect(),
            });
        }
        if let Some(resource) = text("resource")
            && resource != server.resource_id()
        {
            return Err(CodeFlowError::ResourceMismatch {
                found: resource.chars().take(256).collect(),
            });
        }
        let lifetime = match body.get("expires_in") {
            None => self.default_lifetime(),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| malformed("`expires_in` is not a non-negative integer"))?,
        };
        let granted = match text("scope") {
            None => scope.clone(),
            Some(s) => ScopeSet::parse(s).map_err(|_| malformed("`scope` is malformed"))?,
        };
        let report = ScopeReport::new(scope.clone()).with_granted_by_as(Some(granted.clone()));
        Ok(AccessToken::from_parts(
            Secret::new(token),
            now,
            lifetime,
            granted,
            server.resource_id().to_owned(),
            report,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_base64url_sha256() {
        // Expected value computed independently (Python hashlib + base64url, padding dropped).
        assert_eq!(
            s256("dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc"
        );
        let v = pkce_verifier().unwrap();
        assert!((43..=128).contains(&v.len()), "{v}");
        assert_ne!(v, pkce_verifier().unwrap());
    }

    #[test]
    fn state_comparison() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
