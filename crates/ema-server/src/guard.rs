//! The tool-call guard: every `tools/call` authorized with its arguments before the tool runs,
//! by an [`ema_authz::ToolCallAuthorizer`], for the verified [`Principal`] the bearer layer put
//! on the request.
//!
//! Two forms share the decisions, the denial text and the decision log:
//!
//! - [`ToolCallGuardLayer`], a `tower::Layer` over JSON-RPC for any MCP server on HTTP, rmcp or
//!   not (this module);
//! - `ema_server::rmcp::Guarded` (feature `rmcp`), a wrapper around an rmcp `ServerHandler`
//!   that also filters `tools/list` and inspects results.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use ema_authz::{
    Decision, SessionId, ToolAnnotations, ToolCall, ToolCallAuthorizer, ToolDefinition,
};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use crate::principal::Principal;
use crate::rpc_peek::{self, Arguments, Messages};

/// The largest JSON-RPC body the guard reads (1 MiB, as the bearer layer).
const MAX_JSON_RPC_BODY: usize = 1 << 20;

/// The tracing target of every decision the guard logs.
pub(crate) const TARGET: &str = "ema_server::guard";

/// The reason given when a request reaches the guard without a verified principal.
pub(crate) const NO_PRINCIPAL: &str =
    "no verified principal on the request: the bearer layer did not run";

impl Principal {
    /// The principal in the terms policies use ([`ema_authz::Principal`]): issuer, tenant,
    /// subject, client, scopes, groups, roles, `acr`, `amr`, `auth_time`, the token's `jti` and
    /// the ID-JAG's origin (the IdP's `iss` and the ID-JAG's `jti`). Attributes and trust level
    /// are left empty: they come from configuration, not from this crate.
    ///
    /// ```
    /// use ema_server::{AccessTokenClaims, Principal};
    /// # let issuer = ema_grant::AccessTokenIssuer::new(
    /// #     ema_id_jag::Issuer::new("https://auth.tasks.example"),
    /// #     std::sync::Arc::new(ema_jose::KeyRing::new(
    /// #         ema_jose::SigningKey::generate(ema_jose::Algorithm::ES256, None)?)),
    /// # );
    /// # let mut claims = issuer.claims(
    /// #     "u-17".into(),
    /// #     ema_id_jag::Resource::new("https://mcp.tasks.example/mcp"),
    /// #     ema_id_jag::ClientId::new("tc_5f2a91"),
    /// #     ema_jose::UnixTime::from_secs(1_767_225_600),
    /// # )?;
    /// # claims.groups = vec!["eng".into()];
    /// let who = Principal::new(claims);
    /// let policy_view: ema_server::authz::Principal = who.to_authz();
    /// assert_eq!(policy_view.subject, "u-17");
    /// assert!(policy_view.groups.contains("eng"));
    /// assert_eq!(policy_view.token_jti.as_deref(), Some(who.token_id()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_authz(&self) -> ema_authz::Principal {
        let claims = self.claims();
        let mut out = ema_authz::Principal::new(
            claims.iss.as_str(),
            claims.sub.as_str(),
            claims.client_id.as_str(),
        )
        .with_scopes(self.scopes())
        .with_groups(claims.groups.iter().map(String::as_str))
        .with_roles(claims.roles.iter().map(String::as_str));
        out.tenant.clone_from(&claims.tenant);
        out.acr.clone_from(&claims.acr);
        out.amr = claims.amr.iter().flatten().cloned().collect();
        out.auth_time = claims.auth_time.map(|t| t.as_secs());
        out.token_jti = Some(claims.jti.as_str().to_owned());
        if let Some(origin) = &claims.origin {
            out.idp_issuer = Some(origin.iss.as_str().to_owned());
            out.idp_jti = Some(origin.jti.as_str().to_owned());
        }
        out
    }
}

impl From<&Principal> for ema_authz::Principal {
    fn from(principal: &Principal) -> Self {
        principal.to_authz()
    }
}

impl From<Principal> for ema_authz::Principal {
    fn from(principal: Principal) -> Self {
        principal.to_authz()
    }
}

/// The MCP session of a request: its `Mcp-Session-Id` header, when there is exactly one and it
/// is visible ASCII (as MCP requires).
pub(crate) fn session_of(headers: &http::HeaderMap) -> Option<SessionId> {
    let mut values = headers.get_all("mcp-session-id").iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok().map(SessionId::new),
        _ => None,
    }
}

/// Logs one decision under [`TARGET`]: the tool, the effect, the deciding policies, the
/// subject, the client and the session; never an argument value.
pub(crate) fn log_decision(principal: &ema_authz::Principal, call: &ToolCall, decision: &Decision) {
    let session = call.session.as_ref().map(SessionId::as_str);
    if decision.is_allowed() {
        tracing::info!(
            target: TARGET,
            tool = %call.tool,
            effect = "allow",
            policies = ?decision.policies,
            subject = %principal.subject,
            client_id = %principal.client_id,
            session,
            "tool call allowed"
        );
    } else {
        tracing::info!(
            target: TARGET,
            tool = %call.tool,
            effect = "deny",
            policies = ?decision.policies,
            subject = %principal.subject,
            client_id = %principal.client_id,
            session,
            reason = %decision.reason_text(),
            "tool call denied"
        );
    }
}

/// Logs a call refused because no principal came with it (a configuration mistake: the bearer
/// layer did not run in front of the guard).
pub(crate) fn log_no_principal(tool: &str) {
    tracing::warn!(
        target: TARGET,
        tool,
        effect = "deny",
        "tool call denied: {NO_PRINCIPAL}"
    );
}

/// Tool annotations by tool name, from the definitions a server lists.
pub(crate) fn annotations_by_name(
    tools: impl IntoIterator<Item = ToolDefinition>,
) -> HashMap<String, ToolAnnotations> {
    tools
        .into_iter()
        .map(|tool| (tool.name, tool.annotations))
        .collect()
}

/// The tool-call guard as a `tower::Layer`, for MCP servers on HTTP that are not built on
/// rmcp (an rmcp server uses `ema_server::rmcp::Guarded`, which also filters `tools/list`).
///
/// Put it *inside* the bearer layer ([`crate::BearerAuth`]), so that requests reach it with
/// their [`Principal`]. For each POST whose body is one JSON-RPC `tools/call` request, it
/// builds an [`ema_authz::ToolCall`] (this server's resource id, the tool, its arguments, the
/// annotations declared with [`ToolCallGuardLayer::tools`], the `Mcp-Session-Id`) and asks the
/// authorizer *before* the inner service runs:
///
/// - allowed: the request goes on unchanged;
/// - denied: answered here, `200` with a JSON-RPC result that is an MCP tool error whose text
///   is [`Decision::reason_text`] (`{"jsonrpc":"2.0","id":..,"result":{"content":[{"type":
///   "text","text":..}],"isError":true}}`); the inner service never sees the request;
/// - no principal on the request: denied (fail closed);
/// - a body that is not JSON, a `tools/call` without an `id` or a string `params.name`,
///   arguments that are not an object, a `tools/call` inside a batch, or a member named twice
///   (`method`, `params`, `params.name`, `params.arguments`, `id`, or any name inside the
///   arguments): `400` with a JSON-RPC error; the inner service never sees the request.
///
/// Other methods, GET and DELETE pass through untouched. The layer does **not** filter
/// `tools/list` responses and does not inspect tool results (the response may be an SSE
/// stream it does not parse); `ema_server::rmcp::Guarded` does both for rmcp servers.
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::post};
/// use ema_server::authz::{
///     BoxFuture, Decision, Principal, SessionId, ToolCall, ToolCallAuthorizer, ToolDefinition,
/// };
/// use ema_server::{BearerAuth, ToolCallGuardLayer};
///
/// /// Read-only tools for everyone; nothing else.
/// struct ReadOnly;
///
/// impl ToolCallAuthorizer for ReadOnly {
///     fn authorize<'a>(&'a self, _: &'a Principal, call: &'a ToolCall) -> BoxFuture<'a, Decision> {
///         let decision = if call.annotations.read_only() {
///             Decision::allow(vec!["read-only".into()], vec![])
///         } else {
///             Decision::deny_because("only read-only tools may be called")
///         };
///         Box::pin(async move { decision })
///     }
///     fn visible_tools<'a>(
///         &'a self,
///         _: &'a Principal,
///         _: Option<&'a SessionId>,
///         tools: &'a [ToolDefinition],
///     ) -> BoxFuture<'a, Vec<bool>> {
///         Box::pin(async move { tools.iter().map(|t| t.annotations.read_only()).collect() })
///     }
/// }
///
/// # let as_keys = ema_jose::KeyRing::new(ema_jose::SigningKey::generate(ema_jose::Algorithm::ES256, None)?);
/// let resource = "https://mcp.tasks.example/mcp";
/// let auth = BearerAuth::builder(resource, "https://auth.tasks.example")
///     .jwks(as_keys.jwks())
///     .build()?;
/// let guard = ToolCallGuardLayer::new(resource, Arc::new(ReadOnly))
///     // The annotations policies see, as the server lists its tools.
///     .tools([ToolDefinition::from_mcp_json(&serde_json::json!({
///         "name": "list_tasks",
///         "inputSchema": {"type": "object"},
///         "annotations": {"readOnlyHint": true},
///     }))?]);
/// // The guard inside the bearer layer: layers added last run first.
/// let app: Router = Router::new()
///     .route("/mcp", post(|body: String| async move { body }))
///     .layer(guard)
///     .layer(auth);
/// # let _ = app;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ToolCallGuardLayer(Arc<GuardInner>);

#[derive(Clone)]
struct GuardInner {
    server: String,
    authorizer: Arc<dyn ToolCallAuthorizer>,
    annotations: HashMap<String, ToolAnnotations>,
}

impl fmt::Debug for ToolCallGuardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tools: Vec<&str> = self.0.annotations.keys().map(String::as_str).collect();
        tools.sort_unstable();
        f.debug_struct("ToolCallGuardLayer")
            .field("server", &self.0.server)
            .field("tools", &tools)
            .finish_non_exhaustive()
    }
}

impl ToolCallGuardLayer {
    /// Guards the MCP server `server` (its resource identifier, as [`ToolCall::server`]) with
    /// `authorizer`.
    pub fn new(server: impl Into<String>, authorizer: Arc<dyn ToolCallAuthorizer>) -> Self {
        Self(Arc::new(GuardInner {
            server: server.into(),
            authorizer,
            annotations: HashMap::new(),
        }))
    }

    /// The server's tools as it lists them: their annotations go into each [`ToolCall`]. A
    /// tool not declared here is called with empty annotations, which MCP reads as possibly
    /// destructive and open-world.
    #[must_use]
    pub fn tools(mut self, tools: impl IntoIterator<Item = ToolDefinition>) -> Self {
        Arc::make_mut(&mut self.0)
            .annotations
            .extend(annotations_by_name(tools));
        self
    }
}

impl<S> tower_layer::Layer<S> for ToolCallGuardLayer {
    type Service = ToolCallGuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ToolCallGuardService {
            guard: self.clone(),
            inner,
        }
    }
}

/// The service [`ToolCallGuardLayer`] wraps around an inner service.
#[derive(Debug, Clone)]
pub struct ToolCallGuardService<S> {
    guard: ToolCallGuardLayer,
    inner: S,
}

/// The boxed error type of request bodies.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A JSON-RPC answer the guard gives itself.
fn json_rpc(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON-RPC error answer (`id` null: the request could not be read, or had none).
fn json_rpc_error(status: StatusCode, id: Option<Value>, code: i64, message: &str) -> Response {
    json_rpc(
        status,
        &serde_json::json!({
            "jsonrpc": "2.0",
            "id": id.unwrap_or(Value::Null),
            "error": {"code": code, "message": message},
        }),
    )
}

/// The MCP tool error result answering a denied call.
pub(crate) fn denial_result(reason: &str) -> Value {
    serde_json::json!({
        "content": [{"type": "text", "text": reason}],
        "isError": true,
    })
}

/// JSON-RPC 2.0 error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// What the guard makes of one request body.
enum Verdict {
    /// Nothing to authorize: hand the request on.
    PassThrough,
    /// One `tools/call` to authorize.
    Call {
        id: Value,
        tool: String,
        arguments: Map<String, Value>,
    },
    /// Refused before any authorization.
    Refuse(Response),
}

fn read_body(bytes: &[u8]) -> Verdict {
    let (messages, batch) = rpc_peek::calls_with_arguments(bytes);
    let calls = match messages {
        Messages::Calls(calls) => calls,
        Messages::NotJson => {
            return Verdict::Refuse(json_rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                PARSE_ERROR,
                "the body is not a JSON-RPC message",
            ));
        }
        Messages::Ambiguous => {
            return Verdict::Refuse(json_rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                INVALID_REQUEST,
                "a JSON-RPC message names a member twice",
            ));
        }
    };
    let mut tool_calls = calls
        .into_iter()
        .filter(|c| c.method.as_deref() == Some("tools/call"));
    let Some(call) = tool_calls.next() else {
        return Verdict::PassThrough;
    };
    if batch {
        return Verdict::Refuse(json_rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            INVALID_REQUEST,
            "tools/call is not accepted inside a JSON-RPC batch",
        ));
    }
    let Some(id) = call.id else {
        return Verdict::Refuse(json_rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            INVALID_REQUEST,
            "tools/call is a request: it needs an id",
        ));
    };
    let Some(tool) = call.tool else {
        return Verdict::Refuse(json_rpc_error(
            StatusCode::BAD_REQUEST,
            Some(id),
            INVALID_PARAMS,
            "tools/call needs a string params.name",
        ));
    };
    let arguments = match call.arguments {
        Arguments::Absent => Map::new(),
        Arguments::Object(arguments) => arguments,
        Arguments::NotObject => {
            return Verdict::Refuse(json_rpc_error(
                StatusCode::BAD_REQUEST,
                Some(id),
                INVALID_PARAMS,
                "tools/call arguments must be a JSON object",
            ));
        }
    };
    Verdict::Call {
        id,
        tool: tool.into_owned(),
        arguments,
    }
}

impl ToolCallGuardLayer {
    /// Decides one request: the request to hand on, or the answer.
    async fn check(&self, request: http::Request<Body>) -> Result<http::Request<Body>, Response> {
        if request.method() != http::Method::POST {
            return Ok(request);
        }
        let (parts, body) = request.into_parts();
        let bytes: Bytes = axum::body::to_bytes(body, MAX_JSON_RPC_BODY)
            .await
            .map_err(|_| {
                json_rpc_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    INVALID_REQUEST,
                    "the request body is too large or unreadable",
                )
            })?;
        let (id, tool, arguments) = match read_body(&bytes) {
            Verdict::PassThrough => {
                return Ok(http::Request::from_parts(parts, Body::from(bytes)));
            }
            Verdict::Refuse(response) => return Err(response),
            Verdict::Call {
                id,
                tool,
                arguments,
            } => (id, tool, arguments),
        };
        let inner = &*self.0;
        let deny = |reason: &str| {
            json_rpc(
                StatusCode::OK,
                &serde_json::json!({"jsonrpc": "2.0", "id": id, "result": denial_result(reason)}),
            )
        };
        let Some(principal) = parts.extensions.get::<Principal>() else {
            log_no_principal(&tool);
            return Err(deny(NO_PRINCIPAL));
        };
        let principal = principal.to_authz();
        let mut call = ToolCall::new(inner.server.as_str(), tool, arguments);
        if let Some(annotations) = inner.annotations.get(&call.tool) {
            call.annotations = *annotations;
        }
        call.session = session_of(&parts.headers);
        let decision = inner.authorizer.authorize(&principal, &call).await;
        log_decision(&principal, &call, &decision);
        if decision.is_allowed() {
            Ok(http::Request::from_parts(parts, Body::from(bytes)))
        } else {
            Err(deny(&decision.reason_text()))
        }
    }
}

impl<S, B> tower_service::Service<http::Request<B>> for ToolCallGuardService<S>
where
    S: tower_service::Service<http::Request<Body>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The service polled ready is the one that serves this request; a fresh clone stays.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let guard = self.guard.clone();
        Box::pin(async move {
            match guard.check(request.map(Body::new)).await {
                Ok(request) => inner.call(request).await.map(IntoResponse::into_response),
                Err(answer) => Ok(answer),
            }
        })
    }
}
