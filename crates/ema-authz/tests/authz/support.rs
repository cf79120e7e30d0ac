//! Shared fixtures: the example tools and policies of `examples/config/policies/`.

use std::fs;
use std::path::{Path, PathBuf};

use ema_authz::cedar::{AttributeType, CedarEngine, CedarSchema, ClaimAttribute, PrincipalMapping};
use ema_authz::{Principal, SessionContext, ToolCall, ToolDefinition};
use serde_json::{Map, Value};

pub(crate) const SERVER: &str = "https://mcp.example/mcp";

pub(crate) fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config/policies")
}

pub(crate) fn tools() -> Vec<ToolDefinition> {
    let listing: Value =
        serde_json::from_str(&fs::read_to_string(policies_dir().join("tools.json")).unwrap())
            .unwrap();
    listing["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| ToolDefinition::from_mcp_json(tool).unwrap())
        .collect()
}

pub(crate) fn tool(name: &str) -> ToolDefinition {
    tools().into_iter().find(|t| t.name == name).unwrap()
}

pub(crate) fn mapping() -> PrincipalMapping {
    PrincipalMapping::new()
        .with_trust_level_claim("trust_level")
        .with_attribute(ClaimAttribute::new(
            "project",
            "project",
            AttributeType::String,
        ))
}

pub(crate) fn schema() -> CedarSchema {
    CedarSchema::new(&tools(), &mapping()).unwrap()
}

pub(crate) fn engine() -> CedarEngine {
    CedarEngine::from_dir(schema(), policies_dir()).unwrap()
}

pub(crate) fn user(subject: &str) -> Principal {
    Principal::new("https://as.example", subject, "agent-1")
}

pub(crate) fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

pub(crate) fn call(tool: &str, arguments: Value) -> ToolCall {
    ToolCall::new(SERVER, tool, args(arguments))
}

pub(crate) fn session() -> SessionContext {
    SessionContext::default()
}

pub(crate) fn session_with_label(label: &str) -> SessionContext {
    let mut s = SessionContext::default();
    s.labels.insert(label.to_owned());
    s
}

/// A fresh, empty directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ema-authz-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn write(&self, file: &str, text: &str) {
        fs::write(self.0.join(file), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
