//! The adopter's guide server (`protect_rmcp`) with the tool-call guard: the same notes server
//! and bearer layer, its handler wrapped in `ema_server::rmcp::Guarded` with a small
//! authorizer, so that each `tools/call` is decided with its arguments before the tool runs
//! and `tools/list` shows only what the caller may call. A real deployment plugs in the Cedar
//! policy engine of `ema_server::authz` instead of `NoteRules`.
//!
//! ```text
//! cargo run -p ema-server --features rmcp --example guard_rmcp
//! ```
//!
//! serves `http://127.0.0.1:9402/mcp` for the reference authorization server at
//! `http://127.0.0.1:9401`, like `protect_rmcp` (`MCP_RESOURCE`, `AS_ISSUER`, `AS_JWKS_URL`).

use std::sync::Arc;

use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use ema_server::authz::{
    BoxFuture, Decision, Principal, SessionId, ToolCall, ToolCallAuthorizer, ToolDefinition,
};
use ema_server::rmcp::Guarded;
use ema_server::{BearerAuth, BearerBuildError, FetchPolicy};

#[path = "protect_rmcp.rs"]
#[allow(
    dead_code,
    reason = "the guide's notes server is used; its `main` and `app` are not"
)]
mod guide;

use guide::Notes;

/// Anyone may ask `whoami`; `add_note` needs the `eng` group and a note under 280 characters.
#[derive(Debug)]
pub(crate) struct NoteRules;

impl ToolCallAuthorizer for NoteRules {
    fn authorize<'a>(&'a self, who: &'a Principal, call: &'a ToolCall) -> BoxFuture<'a, Decision> {
        let decision = match call.tool.as_str() {
            "whoami" => Decision::allow(vec!["whoami-for-all".into()], Vec::new()),
            "add_note" if !who.groups.contains("eng") => {
                Decision::deny_because("only engineers may add notes")
            }
            "add_note" => match call.arguments.get("text").and_then(|t| t.as_str()) {
                Some(text) if text.chars().count() <= 280 => {
                    Decision::allow(vec!["eng-notes".into()], Vec::new())
                }
                _ => Decision::deny_because("a note is text of at most 280 characters"),
            },
            _ => Decision::deny(Vec::new(), Vec::new()),
        };
        Box::pin(async move { decision })
    }

    fn visible_tools<'a>(
        &'a self,
        who: &'a Principal,
        _session: Option<&'a SessionId>,
        tools: &'a [ToolDefinition],
    ) -> BoxFuture<'a, Vec<bool>> {
        let eng = who.groups.contains("eng");
        let flags = tools
            .iter()
            .map(|tool| tool.name == "whoami" || (tool.name == "add_note" && eng))
            .collect();
        Box::pin(async move { flags })
    }
}

/// The guide's server with every tool call guarded by `authorizer`.
pub(crate) fn app(
    resource: &str,
    issuer: &str,
    jwks_url: &str,
    fetch_policy: FetchPolicy,
    authorizer: Arc<dyn ToolCallAuthorizer>,
) -> Result<Router, BearerBuildError> {
    let server = resource.to_owned();
    // [guard] The handler inside the guard: one line where the handler is made.
    let mcp = StreamableHttpService::new(
        move || Ok(Guarded::new(Notes::new(), &server, authorizer.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let auth = BearerAuth::builder(resource, issuer)
        .jwks_url(jwks_url)
        .fetch_policy(fetch_policy)
        .require_scopes(["tasks.read"])
        // The guide's tools (its router is private to the guide's module).
        .tools(["whoami", "add_note"])
        .tool_scopes("add_note", ["tasks.write"])
        .build()?;
    // The bearer layer in front, as without the guard: it verifies the token the guard's
    // decisions are about.
    let protected = Router::new().nest_service("/mcp", mcp).layer(auth.clone());
    Ok(protected.merge(auth.resource_metadata_router()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let resource = url::Url::parse(&var("MCP_RESOURCE", "http://127.0.0.1:9402/mcp"))?;
    let issuer = var("AS_ISSUER", "http://127.0.0.1:9401");
    let jwks_url = var("AS_JWKS_URL", &format!("{issuer}/jwks"));
    let loopback = resource.scheme() == "http"
        && resource
            .host_str()
            .is_some_and(|h| h == "127.0.0.1" || h == "localhost");
    let policy = if loopback {
        FetchPolicy::insecure_loopback_development()
    } else {
        FetchPolicy::new()
    };
    let app = app(
        resource.as_str(),
        &issuer,
        &jwks_url,
        policy,
        Arc::new(NoteRules),
    )?;
    let addr = resource.socket_addrs(|| None)?;
    let listener = tokio::net::TcpListener::bind(addr.as_slice()).await?;
    println!("serving {resource} for {issuer}, every tool call guarded");
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests may unwrap")]

    use ema_server::authz::{Principal, ToolCall, ToolCallAuthorizer, ToolDefinition};
    use serde_json::json;

    use super::NoteRules;

    fn note(text: &str) -> ToolCall {
        let arguments = json!({ "text": text }).as_object().unwrap().clone();
        ToolCall::new("http://127.0.0.1:9402/mcp", "add_note", arguments)
    }

    #[tokio::test]
    async fn note_rules_decide_by_group_and_argument() {
        let eng = Principal::new("http://127.0.0.1:9401", "u-1", "agent").with_groups(["eng"]);
        let sales = Principal::new("http://127.0.0.1:9401", "u-2", "agent").with_groups(["sales"]);
        assert!(NoteRules.authorize(&eng, &note("hi")).await.is_allowed());
        let denied = NoteRules.authorize(&sales, &note("hi")).await;
        assert_eq!(denied.reason_text(), "only engineers may add notes");
        let long = "x".repeat(281);
        let denied = NoteRules.authorize(&eng, &note(&long)).await;
        assert_eq!(
            denied.reason_text(),
            "a note is text of at most 280 characters"
        );
        let whoami = ToolCall::new("http://127.0.0.1:9402/mcp", "whoami", Default::default());
        assert!(NoteRules.authorize(&sales, &whoami).await.is_allowed());

        let tools: Vec<ToolDefinition> = ["whoami", "add_note", "other"]
            .iter()
            .map(|name| ToolDefinition::new(*name, Default::default()))
            .collect();
        assert_eq!(
            NoteRules.visible_tools(&eng, None, &tools).await,
            [true, true, false]
        );
        assert_eq!(
            NoteRules.visible_tools(&sales, None, &tools).await,
            [true, false, false]
        );
    }
}
