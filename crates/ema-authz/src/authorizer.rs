//! The seams: [`ToolCallAuthorizer`] (what a guard asks before a tool runs, and which tools a
//! principal may see) and [`ResultInspector`] (what reads a tool's result before it leaves the
//! server).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::model::{Decision, Principal, SessionId, ToolCall, ToolDefinition};

/// A boxed `Send` future: what [`ToolCallAuthorizer`]'s methods return, so the trait can be
/// used as `Arc<dyn ToolCallAuthorizer>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides tool calls at the moment they are made.
///
/// Implementations fail closed: nothing is allowed unless a policy permits it, and any error
/// while deciding is a [`Decision`] that denies, with the error in its reasons.
pub trait ToolCallAuthorizer: Send + Sync {
    /// Decides `call` for `principal`. An allowed call is recorded in its session's context
    /// (calls, counts, labels its annotations raise) before this returns, so the next call of
    /// the session sees it.
    fn authorize<'a>(
        &'a self,
        principal: &'a Principal,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Decision>;

    /// Which of `tools` `principal` may see in `tools/list`: one flag per tool, in order. A
    /// tool that every call would be denied is hidden; a tool some call may be allowed is shown.
    /// Implementations that pin tool definitions compare them here too.
    fn visible_tools<'a>(
        &'a self,
        principal: &'a Principal,
        session: Option<&'a SessionId>,
        tools: &'a [ToolDefinition],
    ) -> BoxFuture<'a, Vec<bool>>;

    /// Reads the result of an allowed call before it leaves the server: may redact it in place
    /// and raise session labels. The default does nothing.
    fn inspect_result<'a>(
        &'a self,
        principal: &'a Principal,
        call: &'a ToolCall,
        result: &'a mut Value,
    ) -> BoxFuture<'a, Inspection> {
        let _ = (principal, call, result);
        Box::pin(async { Inspection::default() })
    }
}

impl<T: ToolCallAuthorizer + ?Sized> ToolCallAuthorizer for std::sync::Arc<T> {
    fn authorize<'a>(
        &'a self,
        principal: &'a Principal,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Decision> {
        (**self).authorize(principal, call)
    }

    fn visible_tools<'a>(
        &'a self,
        principal: &'a Principal,
        session: Option<&'a SessionId>,
        tools: &'a [ToolDefinition],
    ) -> BoxFuture<'a, Vec<bool>> {
        (**self).visible_tools(principal, session, tools)
    }

    fn inspect_result<'a>(
        &'a self,
        principal: &'a Principal,
        call: &'a ToolCall,
        result: &'a mut Value,
    ) -> BoxFuture<'a, Inspection> {
        (**self).inspect_result(principal, call, result)
    }
}

/// What inspecting one result found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// Labels to raise on the call's session (`secret_read`, ...).
    pub labels: BTreeSet<String>,
    /// How many values were redacted in place.
    pub redactions: usize,
    /// What was found, in words, for logs and the audit trail (never the matched text).
    pub findings: Vec<String>,
}

impl Inspection {
    /// Merges another inspection's findings into this one.
    pub fn merge(&mut self, other: Inspection) {
        self.labels.extend(other.labels);
        self.redactions += other.redactions;
        self.findings.extend(other.findings);
    }
}

/// A hook that reads each tool result before it leaves the server (synchronous: it runs on
/// the result in hand, with no I/O).
pub trait ResultInspector: Send + Sync {
    /// Inspects (and may redact in place) the result of `call`: an MCP `CallToolResult` as
    /// JSON (`content`, `structuredContent`, `isError`).
    fn inspect(&self, call: &ToolCall, result: &mut Value) -> Inspection;
}

/// A policy engine: a pure function of principal, call and session context, with no state of
/// its own beyond its policies. The Cedar engine implements it; an authorizer (which tracks
/// sessions, inspects results and pins tool definitions) wraps one.
pub trait PolicyEngine: Send + Sync {
    /// Decides `call` for `principal`, given what the session already did. Fails closed.
    fn decide(
        &self,
        principal: &Principal,
        call: &ToolCall,
        session: &crate::model::SessionContext,
    ) -> Decision;

    /// Whether some call of `tool` may be allowed for `principal` in this session (false only
    /// when every call would be denied, whatever its arguments): what `tools/list` filtering
    /// asks.
    fn may_call(
        &self,
        principal: &Principal,
        tool: &ToolDefinition,
        session: &crate::model::SessionContext,
    ) -> bool;
}

impl<T: PolicyEngine + ?Sized> PolicyEngine for std::sync::Arc<T> {
    fn decide(
        &self,
        principal: &Principal,
        call: &ToolCall,
        session: &crate::model::SessionContext,
    ) -> Decision {
        (**self).decide(principal, call, session)
    }

    fn may_call(
        &self,
        principal: &Principal,
        tool: &ToolDefinition,
        session: &crate::model::SessionContext,
    ) -> bool {
        (**self).may_call(principal, tool, session)
    }
}
