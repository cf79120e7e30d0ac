//! The rmcp integration: a Streamable HTTP client that authorizes every request with an
//! [`EmaSession`] (feature `rmcp`).

use std::collections::HashMap;
use std::sync::Arc;

use ema_jwks::FetchError;
use futures_core::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use crate::error::EmaError;
use crate::error::McpAuthError;
use crate::flow::{AccessToken, EmaSession, Recovery, insufficient_scope};
use ema_metadata::find_challenge;

/// Why a request through [`EmaHttpClient`] failed below the MCP layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmaTransportError {
    /// The HTTP request failed.
    #[error("HTTP: {0}")]
    Http(#[source] reqwest::Error),
    /// No access token could be obtained (which hop failed, and why).
    #[error("authorization: {0}")]
    Authorization(#[source] EmaError),
}

type HttpError = StreamableHttpError<EmaTransportError>;

/// Converts the inner client's error, keeping every variant a caller may match on.
fn convert(e: StreamableHttpError<reqwest::Error>) -> HttpError {
    use StreamableHttpError as E;
    match e {
        E::Client(e) => E::Client(EmaTransportError::Http(e)),
        E::Sse(e) => E::Sse(e),
        E::Io(e) => E::Io(e),
        E::HttpStatus(e) => E::HttpStatus(e),
        E::UnexpectedEndOfStream => E::UnexpectedEndOfStream,
        E::UnexpectedServerResponse(m) => E::UnexpectedServerResponse(m),
        E::ResponseBodyTooLarge { max_size } => E::ResponseBodyTooLarge { max_size },
        E::UnexpectedContentType(c) => E::UnexpectedContentType(c),
        E::ServerDoesNotSupportSse => E::ServerDoesNotSupportSse,
        E::ServerDoesNotSupportDeleteSession => E::ServerDoesNotSupportDeleteSession,
        E::TokioJoinError(e) => E::TokioJoinError(e),
        E::Deserialize(e) => E::Deserialize(e),
        E::TransportChannelClosed => E::TransportChannelClosed,
        E::MissingSessionIdInResponse => E::MissingSessionIdInResponse,
        E::AuthRequired(e) => E::AuthRequired(e),
        E::InsufficientScope(e) => E::InsufficientScope(e),
        E::ReservedHeaderConflict(h) => E::ReservedHeaderConflict(h),
        E::SessionExpired => E::SessionExpired,
        E::SessionRecoveryTimeout => E::SessionRecoveryTimeout,
        E::ReinitializationFailed(e) => E::ReinitializationFailed(e),
        E::ControlRequestTimeout => E::ControlRequestTimeout,
        other => E::UnexpectedServerResponse(other.to_string().into()),
    }
}

fn authorization_failed(e: EmaError) -> HttpError {
    StreamableHttpError::Client(EmaTransportError::Authorization(e))
}

/// The status and challenge of a `401`/`403`, when the error is one.
fn challenge(e: &StreamableHttpError<reqwest::Error>) -> Option<(u16, &str)> {
    match e {
        StreamableHttpError::AuthRequired(e) => Some((401, e.www_authenticate_header.as_str())),
        StreamableHttpError::InsufficientScope(e) => {
            Some((403, e.www_authenticate_header.as_str()))
        }
        _ => None,
    }
}

/// An rmcp [`StreamableHttpClient`] that sends the session's access token on every request and,
/// once per request, recovers from `401 invalid_token` (CL-9: fresh ID-JAG, new token) and
/// `403 insufficient_scope` (CL-10: union of scopes). Only the access token ever reaches the MCP
/// server, in the `Authorization` header (CL-7).
///
/// ```no_run
/// # async fn demo(session: ema_client::EmaSession) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use ema_client::{EmaHttpClient, ema_client_config};
/// use rmcp::ServiceExt;
///
/// let transport = EmaHttpClient::new(Arc::new(session))?.into_transport();
/// // `ema_client_config()` declares the EMA extension in the client's capabilities (CL-15).
/// let client = ema_client_config().serve(transport).await?;
/// let tools = client.list_all_tools().await?;
/// # let _ = tools; Ok(()) }
/// ```
#[derive(Clone)]
pub struct EmaHttpClient {
    http: reqwest::Client,
    session: Arc<EmaSession>,
}

impl std::fmt::Debug for EmaHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmaHttpClient")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl EmaHttpClient {
    /// A client for `session`, with a reqwest client under the session's fetch policy
    /// ([`HttpFetcher::streaming_client`](crate::HttpFetcher::streaming_client)).
    pub fn new(session: Arc<EmaSession>) -> Result<Self, FetchError> {
        let http = session.client().fetcher().streaming_client()?;
        Ok(Self { http, session })
    }

    /// A client for `session` over a reqwest client of the caller's choosing.
    pub fn with_http_client(http: reqwest::Client, session: Arc<EmaSession>) -> Self {
        Self { http, session }
    }

    /// The session.
    pub fn session(&self) -> &Arc<EmaSession> {
        &self.session
    }

    /// A Streamable HTTP transport to the session's MCP server.
    pub fn into_transport(self) -> StreamableHttpClientTransport<Self> {
        let uri = self.session.server().server_url.as_str().to_owned();
        StreamableHttpClientTransport::with_client(
            self,
            StreamableHttpClientTransportConfig::with_uri(uri),
        )
    }

    async fn token(&self) -> Result<AccessToken, HttpError> {
        self.session
            .access_token()
            .await
            .map_err(authorization_failed)
    }

    /// After a `401`/`403`: the token to retry with, or `None` to surface the refusal.
    async fn recovered(
        &self,
        rejected: &AccessToken,
        status: u16,
        www_authenticate: &str,
    ) -> Result<Option<AccessToken>, HttpError> {
        match self
            .session
            .recover(rejected, status, Some(www_authenticate))
            .await
            .map_err(authorization_failed)?
        {
            Recovery::Retry(token) => Ok(Some(token)),
            _ => Ok(None),
        }
    }
}

fn bearer(token: &AccessToken) -> Option<String> {
    // rmcp's reqwest client adds the `Bearer ` prefix itself.
    Some(token.secret().expose().to_owned())
}

impl EmaHttpClient {
    /// Runs `call` with the session's token; after a `401`/`403` challenge, recovers once
    /// (CL-9: fresh ID-JAG; CL-10: scope union) and retries once with the new token.
    async fn with_recovery<T, Fut>(
        &self,
        mut call: impl FnMut(Option<String>) -> Fut,
    ) -> Result<T, HttpError>
    where
        Fut: Future<Output = Result<T, StreamableHttpError<reqwest::Error>>>,
    {
        let token = self.token().await?;
        let error = match call(bearer(&token)).await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let Some((status, header)) = challenge(&error) else {
            return Err(convert(error));
        };
        let header = header.to_owned();
        let Some(fresh) = self.recovered(&token, status, &header).await? else {
            return Err(self.refused(&token, false, error));
        };
        call(bearer(&fresh))
            .await
            .map_err(|error| self.refused(&fresh, true, error))
    }

    /// The MCP server refused `token` with `error` and EMA cannot recover (`fresh`: `token` is
    /// already the one re-acquisition): a `403 insufficient_scope`
    /// becomes [`McpAuthError::InsufficientScope`] naming the scopes hop by hop (CL-10), a
    /// `401` to a freshly acquired token [`McpAuthError::Unauthorized`] (CL-9); either is also
    /// recorded as the session's [`EmaSession::last_failure`]. Anything else stays the
    /// transport's error.
    fn refused(
        &self,
        token: &AccessToken,
        fresh: bool,
        error: StreamableHttpError<reqwest::Error>,
    ) -> HttpError {
        let failure = challenge(&error).and_then(|(status, www_authenticate)| {
            let code = find_challenge(www_authenticate, "Bearer")
                .ok()
                .flatten()
                .and_then(|c| c.get("error").map(str::to_owned));
            match (status, code.as_deref()) {
                (403, Some("insufficient_scope")) => {
                    Some(insufficient_scope(token, Some(www_authenticate)))
                }
                (401, None | Some("invalid_token")) if fresh => Some(McpAuthError::Unauthorized),
                _ => None,
            }
        });
        let Some(failure) = failure else {
            return convert(error);
        };
        let failure = EmaError::from(failure);
        self.session.record_failure(&failure);
        authorization_failed(failure)
    }
}

impl StreamableHttpClient for EmaHttpClient {
    type Error = EmaTransportError;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            None,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            None,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.with_recovery(|auth| {
            self.http.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                auth,
                custom_headers.clone(),
                limits,
            )
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        let token = self.token().await?;
        self.http
            .delete_session(uri, session_id, bearer(&token), custom_headers)
            .await
            .map_err(convert)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            None,
            custom_headers,
            StreamableHttpResponseLimits::default().max_sse_event_size,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.with_recovery(|auth| {
            self.http.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                auth,
                custom_headers.clone(),
                max_sse_event_size,
            )
        })
        .await
    }
}
