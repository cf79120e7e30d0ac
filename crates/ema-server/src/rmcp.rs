//! rmcp integration (feature `rmcp`): the verified [`Principal`] inside rmcp tool handlers, the
//! tool names of an rmcp [`ToolRouter`] for [`BearerAuthBuilder::tools`], and [`Guarded`], the
//! tool-call guard around any rmcp [`ServerHandler`].
//!
//! rmcp's Streamable HTTP server puts the HTTP request parts (`http::request::Parts`) into each
//! request's context; behind [`BearerAuth`] they carry the [`Principal`]. A tool takes it as an
//! argument, like rmcp's own extractors:
//!
//! ```
//! use ema_server::Principal;
//! use rmcp::handler::server::router::tool::ToolRouter;
//! use rmcp::{ServerHandler, tool, tool_handler, tool_router};
//!
//! #[derive(Clone)]
//! struct Notes {
//!     tool_router: ToolRouter<Self>,
//! }
//!
//! #[tool_router]
//! impl Notes {
//!     #[tool(description = "Who am I?")]
//!     fn whoami(&self, who: Principal) -> String {
//!         who.subject().to_owned()
//!     }
//! }
//!
//! #[tool_handler(router = self.tool_router)]
//! impl ServerHandler for Notes {}
//!
//! // The declared tools, for `BearerAuth::builder(..).tools(..)`.
//! assert_eq!(ema_server::rmcp::tool_names(&Notes::tool_router()), ["whoami"]);
//! ```
//!
//! A tool that runs with and without a principal uses [`principal`] on its
//! `RequestContext<RoleServer>` instead.
//!
//! # The tool-call guard
//!
//! Scopes say which tools a token may reach; policies decide each call with its arguments.
//! Wrap the handler in [`Guarded`] with any [`ToolCallAuthorizer`](crate::authz::ToolCallAuthorizer)
//! where the Streamable HTTP service makes it, and keep the bearer layer in front:
//!
//! ```
//! # use std::sync::Arc;
//! # use ema_server::authz::ToolCallAuthorizer;
//! # use rmcp::handler::server::router::tool::ToolRouter;
//! # use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
//! # use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
//! # use rmcp::{ServerHandler, tool_handler, tool_router};
//! # #[derive(Clone)]
//! # struct Notes { tool_router: ToolRouter<Self> }
//! # #[tool_router]
//! # impl Notes {
//! #     #[rmcp::tool(description = "Who am I?")]
//! #     fn whoami(&self, who: ema_server::Principal) -> String { who.subject().to_owned() }
//! # }
//! # #[tool_handler(router = self.tool_router)]
//! # impl ServerHandler for Notes {}
//! # fn notes() -> Notes { Notes { tool_router: Notes::tool_router() } }
//! # fn serve(authorizer: Arc<dyn ToolCallAuthorizer>) {
//! use ema_server::rmcp::Guarded;
//!
//! let resource = "https://mcp.tasks.example/mcp";
//! let mcp = StreamableHttpService::new(
//!     move || Ok(Guarded::new(notes(), resource, authorizer.clone())),
//!     Arc::new(LocalSessionManager::default()),
//!     StreamableHttpServerConfig::default(),
//! );
//! # let _ = mcp;
//! # }
//! ```
//!
//! `tools/list` then shows only what the caller may call, a denied `tools/call` returns the
//! policy's reason as a tool error without running the tool, and results pass the
//! authorizer's inspection. See [`Guarded`] for the details, and the `guard_rmcp` example.
//!
//! [`BearerAuth`]: crate::BearerAuth
//! [`BearerAuthBuilder::tools`]: crate::BearerAuthBuilder::tools

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use rmcp::handler::server::router::tool::ToolRouter;
#[allow(
    deprecated,
    reason = "logging/setLevel is delegated like every other method"
)]
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
    CancelledNotificationParam, CompleteRequestParams, CompleteResult, ContentBlock,
    CustomNotification, CustomRequest, CustomResult, DiscoverResult, GetPromptRequestParams,
    GetPromptResponse, GetSkillRequestParams, GetSkillResult, GetTaskParams, GetTaskResult,
    InitializeRequestParams, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListSkillsResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProtocolVersion, ReadResourceDirectoryRequestParams,
    ReadResourceDirectoryResult, ReadResourceRequestParams, ReadResourceResponse, ServerConfig,
    SubscribeRequestParams, SubscriptionFilter, Tool, ToolAnnotations, UnsubscribeRequestParams,
    UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::principal::Principal;

/// The verified principal of the HTTP request an rmcp request came in, or `None` when the
/// bearer layer did not run (or the transport is not HTTP).
///
/// ```
/// use rmcp::RoleServer;
/// use rmcp::service::RequestContext;
///
/// fn greeting(ctx: &RequestContext<RoleServer>) -> String {
///     match ema_server::rmcp::principal(ctx) {
///         Some(who) => format!("hello {}", who.subject()),
///         None => "hello".to_owned(),
///     }
/// }
/// # let _ = greeting;
/// ```
pub fn principal(ctx: &RequestContext<RoleServer>) -> Option<Principal> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        // A principal put on the rmcp request itself (in-process transports, tests).
        .or_else(|| ctx.extensions.get::<Principal>())
        .cloned()
}

/// The names of the tools `router` serves, for [`BearerAuthBuilder::tools`], so that tool
/// scopes are checked against the tools the server really has.
///
/// [`BearerAuthBuilder::tools`]: crate::BearerAuthBuilder::tools
pub fn tool_names<S: Send + Sync + 'static>(router: &ToolRouter<S>) -> Vec<String> {
    router
        .list_all()
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect()
}

/// The tools `router` serves as policies see them (name, description, input and output
/// schemas, annotations): what [`ema_authz::cedar::CedarSchema::new`] builds the policy schema
/// from, and what [`ema_authz::ToolPins`] pins.
pub fn tool_definitions<S: Send + Sync + 'static>(
    router: &ToolRouter<S>,
) -> Vec<ema_authz::ToolDefinition> {
    router.list_all().iter().map(definition).collect()
}

/// A tool argument of type [`Principal`]: the caller, or an error answering the call when the
/// bearer layer did not run (a configuration mistake; the request is never served
/// anonymously).
impl<C: AsRequestContext> FromContextPart<C> for Principal {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        principal(context.as_request_context()).ok_or_else(|| {
            tracing::warn!("an rmcp tool wants the principal but the bearer layer did not run");
            ErrorData::invalid_request(
                "no verified principal on the request: the bearer layer did not run",
                None,
            )
        })
    }
}

/// Any rmcp [`ServerHandler`] behind the tool-call guard: `tools/list` shows only the tools the
/// caller may call, and each `tools/call` is authorized with its arguments before the inner
/// handler runs.
///
/// - `tools/list`: the inner handler lists its tools; the authorizer's
///   [`visible_tools`](ema_authz::ToolCallAuthorizer::visible_tools) decides which the caller
///   sees (a tool without a `true` flag is hidden). The list is marked private to the caller
///   (`cacheScope: "private"`). The tools' annotations are remembered for `tools/call`.
/// - `tools/call`: an [`ema_authz::ToolCall`] (this server's resource id, the tool, its
///   arguments, the tool's annotations from the inner handler's `get_tool` or its last
///   `tools/list`, the `Mcp-Session-Id`) goes to
///   [`authorize`](ema_authz::ToolCallAuthorizer::authorize). A denial is answered with an MCP
///   tool error (`isError: true`) whose text is [`Decision::reason_text`]: the reasons policy
///   authors wrote, no policy internals; the inner handler does not run. An allowed call runs
///   the inner handler, which sees the principal as without the guard; its result goes through
///   [`inspect_result`](ema_authz::ToolCallAuthorizer::inspect_result) and leaves with any
///   redaction applied (a result that cannot be inspected is withheld, as a tool error).
///   A result the inner handler hands back as a task or an input request goes out as it is.
/// - No verified principal on the request (the bearer layer did not run): every call is
///   denied and `tools/list` is empty (fail closed).
/// - Every other method goes straight to the inner handler.
///
/// Each decision is logged under the `tracing` target `ema_server::guard` (tool, effect,
/// deciding policies, subject, client, session; never argument values).
///
/// Adopting it takes one line where the handler is made, `A` being any
/// [`ToolCallAuthorizer`](ema_authz::ToolCallAuthorizer) (an `Arc<dyn ToolCallAuthorizer>`
/// too):
///
/// ```
/// use std::sync::Arc;
/// use ema_server::authz::{
///     BoxFuture, Decision, Principal, SessionId, ToolCall, ToolCallAuthorizer, ToolDefinition,
/// };
/// use ema_server::rmcp::Guarded;
/// use rmcp::handler::server::router::tool::ToolRouter;
/// use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
/// use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
/// use rmcp::{ServerHandler, tool, tool_handler, tool_router};
///
/// #[derive(Clone)]
/// struct Notes {
///     tool_router: ToolRouter<Self>,
/// }
///
/// #[tool_router]
/// impl Notes {
///     #[tool(description = "Who am I?")]
///     fn whoami(&self, who: ema_server::Principal) -> String {
///         who.subject().to_owned()
///     }
/// }
///
/// #[tool_handler(router = self.tool_router)]
/// impl ServerHandler for Notes {}
///
/// /// Members of `eng` may call anything; nobody else anything.
/// struct Engineers;
///
/// impl ToolCallAuthorizer for Engineers {
///     fn authorize<'a>(&'a self, who: &'a Principal, _: &'a ToolCall) -> BoxFuture<'a, Decision> {
///         let decision = if who.groups.contains("eng") {
///             Decision::allow(vec!["engineers".into()], vec![])
///         } else {
///             Decision::deny_because("only engineers may use this server")
///         };
///         Box::pin(async move { decision })
///     }
///     fn visible_tools<'a>(
///         &'a self,
///         who: &'a Principal,
///         _: Option<&'a SessionId>,
///         tools: &'a [ToolDefinition],
///     ) -> BoxFuture<'a, Vec<bool>> {
///         Box::pin(async move { vec![who.groups.contains("eng"); tools.len()] })
///     }
/// }
///
/// let authorizer: Arc<dyn ToolCallAuthorizer> = Arc::new(Engineers);
/// let resource = "https://mcp.tasks.example/mcp";
/// let mcp = StreamableHttpService::new(
///     // The guard around the handler; the bearer layer goes in front of the service as before.
///     move || {
///         Ok(Guarded::new(
///             Notes { tool_router: Notes::tool_router() },
///             resource,
///             authorizer.clone(),
///         ))
///     },
///     Arc::new(LocalSessionManager::default()),
///     StreamableHttpServerConfig::default(),
/// );
/// # let _ = mcp;
/// ```
///
/// [`Decision::reason_text`]: ema_authz::Decision::reason_text
#[derive(Clone)]
pub struct Guarded<H, A> {
    inner: H,
    authorizer: A,
    server: Arc<str>,
    annotations: Arc<RwLock<HashMap<String, ema_authz::ToolAnnotations>>>,
    audit: Option<ema_audit::AuditLog>,
    #[cfg(feature = "vault")]
    credentials: Option<Arc<crate::vault::ToolCredentials>>,
}

impl<H, A> fmt::Debug for Guarded<H, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl<H, A> Guarded<H, A> {
    /// Guards `inner`, the MCP server `server` (its resource identifier, as
    /// [`ema_authz::ToolCall::server`]), with `authorizer`.
    pub fn new(inner: H, server: impl Into<String>, authorizer: A) -> Self {
        Self {
            inner,
            authorizer,
            server: Arc::from(server.into()),
            annotations: Arc::default(),
            audit: None,
            #[cfg(feature = "vault")]
            credentials: None,
        }
    }

    /// Hands each allowed call of a tool that `credentials` maps to a provider that
    /// provider's credential for the caller (feature `vault`), from the vault of its
    /// [`Connector`](crate::vault::Connector): the tool reads it as a
    /// [`ToolCredential`](crate::vault::ToolCredential) argument (or with [`tool_credential`]),
    /// and may use it for that provider only. The credential never leaves the server.
    ///
    /// When the caller has not connected the provider, or must connect again after a refresh
    /// failed for good, the tool does not run and the call is answered with a connect link: the
    /// provider's authorization URL ([`Connector::begin`](crate::vault::Connector::begin):
    /// `state` bound to the caller and the MCP session, an S256 PKCE challenge). A client that
    /// declared URL-mode elicitation (`capabilities.elicitation.url`, at `initialize` or in the
    /// request's `_meta`) gets it as the MCP URL-elicitation-required error (`-32042`, MCP
    /// 2025-11-25) carrying one URL-mode elicitation; MCP lets a server use URL mode only
    /// with such a client, so any other client gets a tool error result (`isError: true`)
    /// whose text asks the user to open the link and call the tool again. Nothing else differs
    /// between the two. Any other vault failure is a tool error naming it (never a secret). A
    /// denied call never reaches the vault.
    #[cfg(feature = "vault")]
    #[must_use]
    pub fn with_vault(mut self, credentials: crate::vault::ToolCredentials) -> Self {
        self.credentials = Some(Arc::new(credentials));
        self
    }

    /// Writes each decision to `log` as an `ema_audit::ToolDecision` (the access token's `jti`,
    /// the principal, the MCP session, the tool, a digest of the arguments, the effect, the
    /// deciding policies, the reasons and the session's labels), linking every call to the
    /// access token and, through it, to the IdP's ID-JAG. A decision that cannot be written is
    /// not carried out: the call is refused ("the audit trail is unavailable"), fail closed.
    #[must_use]
    pub fn with_audit(mut self, log: ema_audit::AuditLog) -> Self {
        self.audit = Some(log);
        self
    }

    /// The guarded handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// The authorizer.
    pub fn authorizer(&self) -> &A {
        &self.authorizer
    }
}

/// A tool as policies see it.
fn definition(tool: &Tool) -> ema_authz::ToolDefinition {
    let mut def = ema_authz::ToolDefinition::new(tool.name.as_ref(), (*tool.input_schema).clone());
    def.description = tool.description.as_deref().map(str::to_owned);
    def.output_schema = tool.output_schema.as_deref().cloned();
    def.annotations = annotations(tool.annotations.as_ref());
    def
}

fn annotations(declared: Option<&ToolAnnotations>) -> ema_authz::ToolAnnotations {
    let mut out = ema_authz::ToolAnnotations::default();
    if let Some(declared) = declared {
        out.read_only_hint = declared.read_only_hint;
        out.destructive_hint = declared.destructive_hint;
        out.idempotent_hint = declared.idempotent_hint;
        out.open_world_hint = declared.open_world_hint;
    }
    out
}

/// The revocation signal the bearer layer put on the HTTP request an rmcp request came in
/// (RV-18), when it checks a revocation mirror.
pub fn revocation_signal(ctx: &RequestContext<RoleServer>) -> Option<crate::RevocationSignal> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<crate::RevocationSignal>())
        .cloned()
}

/// A [`SessionCloser`](crate::SessionCloser) over an rmcp Streamable HTTP session manager
/// (RV-18): give it to [`BearerAuthBuilder::session_closer`](crate::BearerAuthBuilder::session_closer)
/// with the manager the service was made with, and the sessions of a revoked subject are
/// closed as soon as the revocation mirror learns of it: rmcp ends their streams and cancels
/// the cancellation tokens of their running requests once the session's handler stops.
/// (Tool calls behind [`Guarded`] stop at once, on the request's
/// [`RevocationSignal`](crate::RevocationSignal).) The closing runs on the Tokio runtime of
/// the caller, or else of the one this was made in.
///
/// ```
/// use std::sync::Arc;
/// use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sessions = Arc::new(LocalSessionManager::default());
/// let closer = ema_server::rmcp::close_sessions(sessions.clone());
/// // BearerAuth::builder(..).revocation_mirror(mirror).session_closer(closer)
/// closer.close_session("no-such-session");
/// # }
/// ```
pub fn close_sessions<M>(manager: Arc<M>) -> Arc<dyn crate::SessionCloser>
where
    M: rmcp::transport::streamable_http_server::SessionManager,
{
    Arc::new(RmcpSessions {
        manager,
        runtime: tokio::runtime::Handle::try_current().ok(),
    })
}

struct RmcpSessions<M> {
    manager: Arc<M>,
    runtime: Option<tokio::runtime::Handle>,
}

impl<M: rmcp::transport::streamable_http_server::SessionManager> crate::SessionCloser
    for RmcpSessions<M>
{
    fn close_session(&self, session_id: &str) {
        let Some(runtime) = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.clone())
        else {
            tracing::warn!("no Tokio runtime to close a revoked MCP session on");
            return;
        };
        let manager = Arc::clone(&self.manager);
        let id: rmcp::transport::streamable_http_server::SessionId = Arc::from(session_id);
        runtime.spawn(async move {
            if let Err(e) = manager.close_session(&id).await {
                tracing::warn!(error = %e, "closing a revoked MCP session failed");
            }
        });
    }
}

/// The MCP session of an rmcp request, from the HTTP request it came in.
fn session(ctx: &RequestContext<RoleServer>) -> Option<ema_authz::SessionId> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| crate::guard::session_of(&parts.headers))
}

/// The audit event of one decision.
fn decision_event(
    caller: &ema_authz::Principal,
    call: &ema_authz::ToolCall,
    decision: &ema_authz::Decision,
) -> ema_audit::ToolDecision {
    let effect = if decision.is_allowed() {
        ema_audit::Decision::Allow
    } else {
        ema_audit::Decision::Deny
    };
    let arguments = serde_json::Value::Object(call.arguments.clone());
    let mut event = ema_audit::ToolDecision::new(
        &*caller.subject,
        &*caller.client_id,
        &*call.server,
        &*call.tool,
        &arguments,
        effect,
    )
    .with_policies(decision.policies.iter().cloned())
    .with_reasons(decision.reasons.iter().cloned())
    .with_labels(decision.labels.iter().cloned());
    if let Some(jti) = &caller.token_jti {
        event = event.with_jti(jti.as_str());
    }
    if let Some(session) = &call.session {
        event = event.with_session(session.as_str());
    }
    event
}

/// The JSON-RPC error code of MCP's URL-elicitation-required error (MCP 2025-11-25).
#[cfg(feature = "vault")]
pub const URL_ELICITATION_REQUIRED: rmcp::model::ErrorCode = rmcp::model::ErrorCode(-32042);

/// The URL-elicitation-required error asking the user to open `url` (the provider's
/// authorization URL) to connect `provider`.
#[cfg(feature = "vault")]
fn url_elicitation_required(
    provider: &ema_vault::ProviderId,
    why: &ema_vault::VaultError,
    url: String,
) -> ErrorData {
    let message = format!(
        "This tool needs your {provider} account ({why}). Open the link to connect it, then call the tool again."
    );
    let elicitation = rmcp::model::ElicitRequestParams::UrlElicitationParams {
        meta: None,
        message: message.clone(),
        url,
        elicitation_id: elicitation_id(),
    };
    ErrorData::new(
        URL_ELICITATION_REQUIRED,
        message,
        Some(serde_json::json!({ "elicitations": [elicitation] })),
    )
}

/// The tool error result asking the user of a client without URL-mode elicitation to open
/// `url` (the provider's authorization URL) to connect `provider`, then call the tool again.
#[cfg(feature = "vault")]
fn connect_link_error(
    provider: &ema_vault::ProviderId,
    why: &ema_vault::VaultError,
    url: &str,
) -> CallToolResponse {
    tool_error(format!(
        "This tool needs your {provider} account ({why}). Open this link in a browser to connect it, then call the tool again: {url}"
    ))
}

/// Whether the client declared URL-mode elicitation (`capabilities.elicitation.url`): in the
/// request's `_meta`, else (sessions of MCP up to 2025-11-25) at `initialize`.
#[cfg(feature = "vault")]
fn accepts_url_elicitation(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.client_capabilities()
        .and_then(|caps| caps.elicitation)
        .is_some_and(|elicitation| elicitation.url.is_some())
}

/// A fresh elicitation id: 128 random bits, hex.
#[cfg(feature = "vault")]
fn elicitation_id() -> String {
    use std::fmt::Write;
    let mut bytes = [0u8; 16];
    // The id only tells elicitations apart: a failed fill leaves a constant, still valid id.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().fold(String::with_capacity(32), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The credential the guard ([`Guarded::with_vault`]) fetched for this tool call, or `None`
/// when the tool is given none (feature `vault`).
#[cfg(feature = "vault")]
pub fn tool_credential(ctx: &RequestContext<RoleServer>) -> Option<crate::vault::ToolCredential> {
    ctx.extensions
        .get::<crate::vault::ToolCredential>()
        .cloned()
}

/// A tool argument of type [`ToolCredential`](crate::vault::ToolCredential): the credential
/// the guard fetched for the call, or an error answering the call when the tool is given none
/// (it is not mapped to a provider, or the guard has no vault).
#[cfg(feature = "vault")]
impl<C: AsRequestContext> FromContextPart<C> for crate::vault::ToolCredential {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        tool_credential(context.as_request_context()).ok_or_else(|| {
            tracing::warn!(target: crate::guard::TARGET, "an rmcp tool wants a credential the guard did not give it");
            ErrorData::invalid_request("this tool is given no downstream credential", None)
        })
    }
}

fn tool_error(text: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(text)]))
}

impl<H: ServerHandler, A: ema_authz::ToolCallAuthorizer + 'static> Guarded<H, A> {
    /// The annotations of `tool`: from the inner handler's own definition, else from its last
    /// `tools/list`, else none.
    fn annotations_of(&self, tool: &str) -> ema_authz::ToolAnnotations {
        if let Some(tool) = self.inner.get_tool(tool) {
            return annotations(tool.annotations.as_ref());
        }
        let known = self
            .annotations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        known.get(tool).copied().unwrap_or_default()
    }

    /// Puts the credential of the tool's provider on an allowed call's context, or answers the
    /// call: with a connect link (a URL elicitation for a client that declared URL mode, a
    /// tool error for any other), or with a tool error.
    #[cfg(feature = "vault")]
    async fn with_credential(
        &self,
        who: &Principal,
        call: &ema_authz::ToolCall,
        mut context: RequestContext<RoleServer>,
    ) -> Result<RequestContext<RoleServer>, Result<CallToolResponse, ErrorData>> {
        use ema_vault::VaultError;
        let Some(credentials) = &self.credentials else {
            return Ok(context);
        };
        let Some(provider) = credentials.provider_of(&call.tool) else {
            return Ok(context);
        };
        let owner = crate::vault::owner_of(who).map_err(|e| {
            tracing::warn!(target: crate::guard::TARGET, tool = %call.tool, error = %e, "no vault owner for the caller");
            Ok(tool_error(format!("no credential can be held for this user: {e}")))
        })?;
        let key = owner.at(provider.clone());
        let connector = credentials.connector();
        match connector.vault().get(&key).await {
            Ok(credential) => {
                context.extensions.insert(crate::vault::ToolCredential::new(
                    provider.clone(),
                    credential,
                ));
                Ok(context)
            }
            // RV-19: a credential stored before the user's revocation is dead; the user, back
            // with a fresh token, connects the provider again like a first time.
            Err(
                e @ (VaultError::NotConnected { .. }
                | VaultError::NeedsReconnect { .. }
                | VaultError::Revoked { .. }),
            ) => {
                let session = call.session.as_ref().map_or("", |s| s.as_str());
                match connector.begin(&owner, session, provider) {
                    Ok(url) if accepts_url_elicitation(&context) => {
                        tracing::info!(target: crate::guard::TARGET, tool = %call.tool, provider = %provider, subject = %who.subject(), "the user must connect the provider: URL elicitation sent");
                        Err(Err(url_elicitation_required(provider, &e, url)))
                    }
                    Ok(url) => {
                        tracing::info!(target: crate::guard::TARGET, tool = %call.tool, provider = %provider, subject = %who.subject(), "the user must connect the provider: the client declared no URL elicitation, connect link sent as a tool error");
                        Err(Ok(connect_link_error(provider, &e, &url)))
                    }
                    Err(begin) => Err(Ok(tool_error(format!("{e} ({begin})")))),
                }
            }
            Err(e) => {
                tracing::warn!(target: crate::guard::TARGET, tool = %call.tool, provider = %provider, error = %e, "no credential for the call");
                Err(Ok(tool_error(e.to_string())))
            }
        }
    }

    /// Runs an allowed call's result through the authorizer's inspection.
    async fn inspected(
        &self,
        principal: &ema_authz::Principal,
        call: &ema_authz::ToolCall,
        result: CallToolResult,
    ) -> CallToolResult {
        const WITHHELD: &str = "the tool's result was withheld: it could not be inspected";
        let Ok(mut value) = serde_json::to_value(&result) else {
            tracing::warn!(target: crate::guard::TARGET, tool = %call.tool, "{WITHHELD}");
            return CallToolResult::error(vec![ContentBlock::text(WITHHELD)]);
        };
        // Reading the result back costs more than comparing it: a result the inspection left
        // as it was leaves as the handler returned it.
        let before = value.clone();
        let inspection = self
            .authorizer
            .inspect_result(principal, call, &mut value)
            .await;
        if inspection.redactions > 0 || !inspection.labels.is_empty() {
            tracing::info!(
                target: crate::guard::TARGET,
                tool = %call.tool,
                subject = %principal.subject,
                redactions = inspection.redactions,
                labels = ?inspection.labels,
                findings = ?inspection.findings,
                "tool result inspected"
            );
        }
        if value == before {
            return result;
        }
        match serde_json::from_value::<CallToolResult>(value) {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(target: crate::guard::TARGET, tool = %call.tool, "{WITHHELD}");
                CallToolResult::error(vec![ContentBlock::text(WITHHELD)])
            }
        }
    }
}

#[allow(
    deprecated,
    reason = "every ServerHandler method is delegated, the legacy ones too"
)]
impl<H: ServerHandler, A: ema_authz::ToolCallAuthorizer + 'static> ServerHandler for Guarded<H, A> {
    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = principal(&context).map(|p| p.to_authz());
        let session = session(&context);
        let mut result = self.inner.list_tools(request, context).await?;
        let definitions: Vec<ema_authz::ToolDefinition> =
            result.tools.iter().map(definition).collect();
        {
            let mut known = self
                .annotations
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            known.extend(
                definitions
                    .iter()
                    .map(|tool| (tool.name.clone(), tool.annotations)),
            );
        }
        // What the caller sees depends on who they are.
        result.cache_scope = Some(CacheScope::Private);
        let Some(caller) = caller else {
            tracing::warn!(target: crate::guard::TARGET, "tools/list hidden: {}", crate::guard::NO_PRINCIPAL);
            result.tools.clear();
            return Ok(result);
        };
        let visible = self
            .authorizer
            .visible_tools(&caller, session.as_ref(), &definitions)
            .await;
        let mut flags = visible.into_iter();
        // A tool without a flag of its own is hidden (fail closed).
        result.tools.retain(|_| flags.next().unwrap_or(false));
        tracing::debug!(
            target: crate::guard::TARGET,
            subject = %caller.subject,
            listed = definitions.len(),
            visible = result.tools.len(),
            "tools/list filtered"
        );
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(who) = principal(&context) else {
            crate::guard::log_no_principal(&request.name);
            return Ok(tool_error(crate::guard::NO_PRINCIPAL));
        };
        let caller = who.to_authz();
        let mut call = ema_authz::ToolCall::new(
            &*self.server,
            request.name.as_ref(),
            request.arguments.clone().unwrap_or_default(),
        );
        call.annotations = self.annotations_of(&request.name);
        call.session = session(&context);
        let decision = self.authorizer.authorize(&caller, &call).await;
        crate::guard::log_decision(&caller, &call, &decision);
        // The event (a digest of the arguments, copies of the decision) is built only for a
        // log that writes: a disabled one costs the call nothing.
        if let Some(log) = self.audit.as_ref().filter(|log| log.is_enabled())
            && let Err(e) = log.append(decision_event(&caller, &call, &decision))
        {
            tracing::error!(target: "ema_audit", tool = %call.tool, error = %e, "tool decision not recorded; call refused");
            return Ok(tool_error(
                "the audit trail is unavailable: the call was not run",
            ));
        }
        if !decision.is_allowed() {
            return Ok(tool_error(decision.reason_text()));
        }
        #[cfg(feature = "vault")]
        let context = match self.with_credential(&who, &call, context).await {
            Ok(context) => context,
            Err(answer) => return answer,
        };
        #[cfg(not(feature = "vault"))]
        let _ = &who;
        // RV-18: a tool call of a token revoked while it runs stops at once: its future is
        // dropped and its cancellation token fired (for work it spawned).
        let signal = revocation_signal(&context);
        let ct = context.ct.clone();
        let outcome = match signal {
            None => Some(self.inner.call_tool(request, context).await),
            Some(signal) => {
                crate::live::unless_signalled(self.inner.call_tool(request, context), &signal).await
            }
        };
        let Some(outcome) = outcome else {
            ct.cancel();
            tracing::info!(tool = %call.tool, "tool call cancelled: access revoked");
            return Ok(tool_error("access revoked: the call was cancelled"));
        };
        match outcome? {
            CallToolResponse::Complete(result) => Ok(CallToolResponse::Complete(
                self.inspected(&caller, &call, result).await,
            )),
            other => Ok(other),
        }
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.get_tool(name)
    }

    fn ping(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        self.inner.ping(context)
    }

    fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<InitializeResult, ErrorData>> + Send + '_ {
        self.inner.initialize(request, context)
    }

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, ErrorData> {
        self.inner.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }

    fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<DiscoverResult, ErrorData>> + Send + '_ {
        self.inner.discover(context)
    }

    fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CompleteResult, ErrorData>> + Send + '_ {
        self.inner.complete(request, context)
    }

    fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        self.inner.set_level(request, context)
    }

    fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetPromptResponse, ErrorData>> + Send + '_ {
        self.inner.get_prompt(request, context)
    }

    fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListPromptsResult, ErrorData>> + Send + '_ {
        self.inner.list_prompts(request, context)
    }

    fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourcesResult, ErrorData>> + Send + '_ {
        self.inner.list_resources(request, context)
    }

    fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourceTemplatesResult, ErrorData>> + Send + '_ {
        self.inner.list_resource_templates(request, context)
    }

    fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceResponse, ErrorData>> + Send + '_ {
        self.inner.read_resource(request, context)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    fn listen(
        &self,
        context: SubscriptionContext,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        self.inner.listen(context)
    }

    fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        self.inner.subscribe(request, context)
    }

    fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        self.inner.unsubscribe(request, context)
    }

    fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CustomResult, ErrorData>> + Send + '_ {
        self.inner.on_custom_request(request, context)
    }

    fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.inner.on_cancelled(notification, context)
    }

    fn on_progress(
        &self,
        notification: ProgressNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.inner.on_progress(notification, context)
    }

    fn on_initialized(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.inner.on_initialized(context)
    }

    fn on_roots_list_changed(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.inner.on_roots_list_changed(context)
    }

    fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.inner.on_custom_notification(notification, context)
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }

    fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetTaskResult, ErrorData>> + Send + '_ {
        self.inner.get_task(request, context)
    }

    fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        self.inner.update_task(request, context)
    }

    fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        self.inner.cancel_task(request, context)
    }

    fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListSkillsResult, ErrorData>> + Send + '_ {
        self.inner.list_skills(request, context)
    }

    fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetSkillResult, ErrorData>> + Send + '_ {
        self.inner.get_skill(request, context)
    }

    fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceDirectoryResult, ErrorData>> + Send + '_ {
        self.inner.read_resource_directory(request, context)
    }
}
