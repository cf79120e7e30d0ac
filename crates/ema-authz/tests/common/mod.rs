//! Helpers shared by the integration tests: a policy engine from closures, a fake clock, tools.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ema_authz::{
    Decision, PolicyEngine, Principal, SessionContext, ToolAnnotations, ToolCall, ToolDefinition,
};
use serde_json::{Map, Value, json};

pub(crate) const SERVER: &str = "https://mcp.example.com";

/// A policy engine whose rules are two closures.
pub(crate) struct FnEngine<D, M> {
    pub(crate) decide: D,
    pub(crate) may_call: M,
}

impl<D, M> PolicyEngine for FnEngine<D, M>
where
    D: Fn(&Principal, &ToolCall, &SessionContext) -> Decision + Send + Sync,
    M: Fn(&Principal, &ToolDefinition, &SessionContext) -> bool + Send + Sync,
{
    fn decide(&self, principal: &Principal, call: &ToolCall, session: &SessionContext) -> Decision {
        (self.decide)(principal, call, session)
    }

    fn may_call(
        &self,
        principal: &Principal,
        tool: &ToolDefinition,
        session: &SessionContext,
    ) -> bool {
        (self.may_call)(principal, tool, session)
    }
}

/// A clock tests advance by hand.
#[derive(Clone, Default)]
pub(crate) struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    pub(crate) fn at(secs: u64) -> Self {
        Self(Arc::new(AtomicU64::new(secs)))
    }

    pub(crate) fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// The clock as the closure the tracker takes.
    pub(crate) fn source(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let now = Arc::clone(&self.0);
        move || now.load(Ordering::SeqCst)
    }
}

pub(crate) fn annotations(read_only: bool, destructive: bool, open_world: bool) -> ToolAnnotations {
    let mut annotations = ToolAnnotations::default();
    annotations.read_only_hint = Some(read_only);
    annotations.destructive_hint = Some(destructive);
    annotations.open_world_hint = Some(open_world);
    annotations
}

/// The members of a JSON object literal (empty for anything else).
pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(members) => members,
        _ => Map::new(),
    }
}

pub(crate) fn tool(name: &str, description: &str, annotations: ToolAnnotations) -> ToolDefinition {
    let schema = object(json!({
        "type": "object",
        "properties": { "path": { "type": "string" } }
    }));
    ToolDefinition::new(name, schema)
        .with_description(description)
        .with_annotations(annotations)
}

pub(crate) fn alice() -> Principal {
    Principal::new("https://as.example.com", "alice", "agent-1").with_groups(["engineering"])
}
