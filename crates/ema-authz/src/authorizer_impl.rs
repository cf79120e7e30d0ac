//! [`Authorizer`]: the [`ToolCallAuthorizer`] that composes a [`PolicyEngine`] with session
//! tracking, result inspection and tool-definition pinning.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::authorizer::{BoxFuture, Inspection, PolicyEngine, ResultInspector, ToolCallAuthorizer};
use crate::inspect::SecretDetector;
use crate::model::{Decision, Principal, SessionContext, SessionId, ToolCall, ToolDefinition};
use crate::pin::{ChangeCallback, PinResponse, TOOL_CHANGED_REASON, ToolChange, ToolPins};
use crate::session::{
    self, Clock, DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_TTL, SessionTracker, SystemClock,
};

/// A [`ToolCallAuthorizer`] over any [`PolicyEngine`]: one per MCP server it guards.
///
/// - [`authorize`](ToolCallAuthorizer::authorize): the tool's pin is checked (a changed or new
///   tool is denied with [`TOOL_CHANGED_REASON`] under [`PinResponse::DenyUntilApproved`]);
///   then, under the session's lock, the engine decides with the session's context and an
///   allowed call is recorded (its count, the total, a destructive call by its annotations,
///   `untrusted_content` for an open-world tool), so concurrent calls of one session cannot
///   both pass a per-session cap. [`Decision::labels`] holds the session's labels in force when
///   the call was decided. A call without a session id is decided with an empty context and
///   not recorded; a new session when the tracker is full is denied ("too many tracked
///   sessions").
/// - [`visible_tools`](ToolCallAuthorizer::visible_tools): the listing is compared with the
///   pins (changes go to the callback and [`ToolPins::pending`]); a tool is shown when pinning
///   lets it through and the engine's `may_call` says some call of it may be allowed.
/// - [`inspect_result`](ToolCallAuthorizer::inspect_result): every inspector runs in turn (by
///   default one [`SecretDetector`], not redacting); the labels they raise go to the call's
///   session.
///
/// The engine runs under a session lock, so it must be quick and must not block (a
/// [`PolicyEngine`] is synchronous and pure by contract).
///
/// ```
/// use ema_authz::{
///     Authorizer, Decision, PolicyEngine, Principal, SessionContext, SessionId, ToolAnnotations,
///     ToolCall, ToolCallAuthorizer, ToolDefinition,
/// };
/// use serde_json::json;
///
/// /// Reads for everyone; writes for `admins`, and never once a secret was read.
/// struct Rules;
///
/// impl PolicyEngine for Rules {
///     fn decide(&self, who: &Principal, call: &ToolCall, session: &SessionContext) -> Decision {
///         if call.annotations.read_only() {
///             Decision::allow(vec!["reads".into()], vec![])
///         } else if session.has_label("secret_read") {
///             Decision::deny(vec!["no-exfiltration".into()], vec!["a secret was read in this session".into()])
///         } else if who.groups.contains("admins") {
///             Decision::allow(vec!["admin-writes".into()], vec![])
///         } else {
///             Decision::deny_because("writes need the admins group")
///         }
///     }
///
///     fn may_call(&self, who: &Principal, tool: &ToolDefinition, session: &SessionContext) -> bool {
///         tool.annotations.read_only()
///             || (who.groups.contains("admins") && !session.has_label("secret_read"))
///     }
/// }
///
/// let authorizer = Authorizer::builder(Rules).build();
/// let alice = Principal::new("https://as.example.com", "alice", "agent").with_groups(["admins"]);
/// let session = SessionId::new("mcp-session-1");
/// let mut read_only = ToolAnnotations::default();
/// read_only.read_only_hint = Some(true);
/// let read = ToolCall::new("https://mcp.example.com", "read_file", Default::default())
///     .with_annotations(read_only)
///     .in_session(session.clone());
/// let upload = ToolCall::new("https://mcp.example.com", "upload", Default::default())
///     .in_session(session.clone());
///
/// pollster::block_on(async {
///     assert!(authorizer.authorize(&alice, &upload).await.is_allowed());
///     assert!(authorizer.authorize(&alice, &read).await.is_allowed());
///
///     // The file read returns a private key: the built-in detector labels the session...
///     let mut result = json!({ "content": [{ "type": "text",
///         "text": "-----BEGIN PRIVATE KEY-----\nMIIEvQ...\n-----END PRIVATE KEY-----" }] });
///     let inspection = authorizer.inspect_result(&alice, &read, &mut result).await;
///     assert!(inspection.labels.contains("secret_read"));
///
///     // ...and the session rule now denies the upload.
///     let decision = authorizer.authorize(&alice, &upload).await;
///     assert!(!decision.is_allowed());
///     assert_eq!(decision.reason_text(), "a secret was read in this session");
/// });
/// ```
pub struct Authorizer<E> {
    engine: E,
    sessions: SessionTracker,
    pins: ToolPins,
    inspectors: Vec<Arc<dyn ResultInspector>>,
}

impl<E> fmt::Debug for Authorizer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("engine", &std::any::type_name::<E>())
            .field("sessions", &self.sessions)
            .field("pins", &self.pins)
            .field("inspectors", &self.inspectors.len())
            .finish()
    }
}

/// Configures an [`Authorizer`]; from [`Authorizer::builder`].
#[must_use]
pub struct AuthorizerBuilder<E> {
    engine: E,
    ttl: Duration,
    max_sessions: usize,
    clock: Arc<dyn Clock>,
    inspectors: Option<Vec<Arc<dyn ResultInspector>>>,
    pins: Option<ToolPins>,
    pin_response: Option<PinResponse>,
    on_tool_change: Option<ChangeCallback>,
}

impl<E> fmt::Debug for AuthorizerBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizerBuilder")
            .field("engine", &std::any::type_name::<E>())
            .field("ttl", &self.ttl)
            .field("max_sessions", &self.max_sessions)
            .field("pin_response", &self.pin_response)
            .finish_non_exhaustive()
    }
}

impl<E: PolicyEngine> AuthorizerBuilder<E> {
    /// How long an idle session is remembered (default one hour; whole seconds, at least one).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How many sessions are tracked at most (default 10,000); past it, new sessions are
    /// denied.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max;
        self
    }

    /// The clock session expiry is measured with (default the system clock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Adds a result inspector. The first call replaces the default inspector (one
    /// non-redacting [`SecretDetector`]); add a [`SecretDetector`] again to keep it.
    pub fn inspector(mut self, inspector: impl ResultInspector + 'static) -> Self {
        self.inspectors
            .get_or_insert_with(Vec::new)
            .push(Arc::new(inspector));
        self
    }

    /// Runs no result inspector at all.
    pub fn no_inspectors(mut self) -> Self {
        self.inspectors = Some(Vec::new());
        self
    }

    /// Uses these pins (for instance with approved pins loaded from a file) instead of an
    /// empty store that pins the first listing.
    pub fn pins(mut self, pins: ToolPins) -> Self {
        self.pins = Some(pins);
        self
    }

    /// The response to a tool whose definition changed (default [`PinResponse::Alert`]);
    /// overrides the response of pins given to [`AuthorizerBuilder::pins`].
    pub fn pin_response(mut self, response: PinResponse) -> Self {
        self.pin_response = Some(response);
        self
    }

    /// A callback told of each tool-definition change once (to write an audit event);
    /// overrides the callback of pins given to [`AuthorizerBuilder::pins`].
    pub fn on_tool_change(
        mut self,
        callback: impl Fn(&ToolChange) + Send + Sync + 'static,
    ) -> Self {
        self.on_tool_change = Some(Arc::new(callback));
        self
    }

    /// Builds the authorizer.
    pub fn build(self) -> Authorizer<E> {
        let mut pins = self.pins.unwrap_or_default();
        if let Some(response) = self.pin_response {
            pins = pins.with_response(response);
        }
        if let Some(callback) = self.on_tool_change {
            pins.set_callback(callback);
        }
        let inspectors = self
            .inspectors
            .unwrap_or_else(|| vec![Arc::new(SecretDetector::new())]);
        Authorizer {
            engine: self.engine,
            sessions: SessionTracker::with_shared_clock(self.ttl, self.max_sessions, self.clock),
            pins,
            inspectors,
        }
    }
}

impl<E: PolicyEngine> Authorizer<E> {
    /// Starts configuring an authorizer over `engine`.
    pub fn builder(engine: E) -> AuthorizerBuilder<E> {
        AuthorizerBuilder {
            engine,
            ttl: DEFAULT_SESSION_TTL,
            max_sessions: DEFAULT_MAX_SESSIONS,
            clock: Arc::new(SystemClock),
            inspectors: None,
            pins: None,
            pin_response: None,
            on_tool_change: None,
        }
    }

    /// The policy engine.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The session tracker (to end a deleted MCP session, or read a session's context).
    pub fn sessions(&self) -> &SessionTracker {
        &self.sessions
    }

    /// The tool pins (to approve a changed tool, list pending changes, save approved pins).
    pub fn pins(&self) -> &ToolPins {
        &self.pins
    }

    /// Approves `tool`'s current definition (see [`ToolPins::approve`]).
    pub fn approve(&self, tool: &str) -> bool {
        self.pins.approve(tool)
    }

    /// [`ToolCallAuthorizer::authorize`], synchronously.
    pub fn authorize_sync(&self, principal: &Principal, call: &ToolCall) -> Decision {
        if !self.pins.allows_call(&call.tool) {
            let mut decision = Decision::deny_because(TOOL_CHANGED_REASON);
            if let Some(context) = call
                .session
                .as_ref()
                .and_then(|id| self.sessions.snapshot(id).ok())
            {
                decision.labels = context.labels;
            }
            return decision;
        }
        let Some(id) = &call.session else {
            return self
                .engine
                .decide(principal, call, &SessionContext::default());
        };
        let decided = self.sessions.with_session(id, |context| {
            let mut decision = self.engine.decide(principal, call, context);
            decision.labels.extend(context.labels.iter().cloned());
            if decision.is_allowed() {
                session::record_call(context, call);
            }
            decision
        });
        decided.unwrap_or_else(|error| Decision::deny_because(error.to_string()))
    }

    /// [`ToolCallAuthorizer::visible_tools`], synchronously.
    pub fn visible_tools_sync(
        &self,
        principal: &Principal,
        session: Option<&SessionId>,
        tools: &[ToolDefinition],
    ) -> Vec<bool> {
        self.pins.observe(tools);
        let context = match session.map(|id| self.sessions.snapshot(id)) {
            None => SessionContext::default(),
            Some(Ok(context)) => context,
            // A new session the tracker has no room for: every call would be denied.
            Some(Err(_)) => return vec![false; tools.len()],
        };
        tools
            .iter()
            .map(|tool| {
                self.pins.allows_definition(tool) && self.engine.may_call(principal, tool, &context)
            })
            .collect()
    }

    /// [`ToolCallAuthorizer::inspect_result`], synchronously.
    pub fn inspect_result_sync(&self, call: &ToolCall, result: &mut Value) -> Inspection {
        let mut inspection = Inspection::default();
        for inspector in &self.inspectors {
            inspection.merge(inspector.inspect(call, result));
        }
        if let Some(id) = &call.session
            && !inspection.labels.is_empty()
            && let Err(error) = self
                .sessions
                .add_labels(id, inspection.labels.iter().cloned())
        {
            inspection
                .findings
                .push(format!("labels not recorded on the session: {error}"));
        }
        inspection
    }
}

impl<E: PolicyEngine> ToolCallAuthorizer for Authorizer<E> {
    fn authorize<'a>(
        &'a self,
        principal: &'a Principal,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(async move { self.authorize_sync(principal, call) })
    }

    fn visible_tools<'a>(
        &'a self,
        principal: &'a Principal,
        session: Option<&'a SessionId>,
        tools: &'a [ToolDefinition],
    ) -> BoxFuture<'a, Vec<bool>> {
        Box::pin(async move { self.visible_tools_sync(principal, session, tools) })
    }

    fn inspect_result<'a>(
        &'a self,
        _principal: &'a Principal,
        call: &'a ToolCall,
        result: &'a mut Value,
    ) -> BoxFuture<'a, Inspection> {
        Box::pin(async move { self.inspect_result_sync(call, result) })
    }
}
