//! A property of `ema_server::rmcp::Guarded`: for any tool set and any allow table, the guarded
//! `tools/list` shows exactly the tools the authorizer's `visible_tools` flags (a tool without
//! a flag of its own is hidden), and a call of a tool succeeds exactly when the authorizer
//! allows it, the inner handler running once per allowed call and never otherwise. Driven
//! through rmcp's Streamable HTTP service in process (`tower::ServiceExt::oneshot`).
#![cfg(feature = "rmcp")]
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers may unwrap"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use ema_grant::AccessTokenIssuer;
use ema_id_jag::{ClientId, Issuer, Resource};
use ema_jose::{Algorithm, KeyRing, SigningKey, UnixTime};
use ema_server::Principal;
use ema_server::authz::{
    BoxFuture, Decision, Principal as AuthzPrincipal, SessionId, ToolCall, ToolCallAuthorizer,
    ToolDefinition,
};
use ema_server::rmcp::Guarded;
use http_body_util::BodyExt;
use proptest::prelude::*;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tower::ServiceExt;

const RESOURCE: &str = "http://127.0.0.1/mcp";

/// A server with the given tools; every call succeeds and is counted.
#[derive(Clone)]
struct AnyTools {
    tools: Arc<Vec<Tool>>,
    calls: Arc<AtomicUsize>,
}

impl ServerHandler for AnyTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(
            CallToolResult::success(vec![ContentBlock::text(format!("ran {}", request.name))])
                .into(),
        )
    }
}

/// Allows the tools its table allows; `visible_tools` flags them in order, but drops the last
/// `short` flags (an authorizer answering too few flags).
struct Table {
    allow: BTreeMap<String, bool>,
    short: usize,
}

impl ToolCallAuthorizer for Table {
    fn authorize<'a>(
        &'a self,
        _: &'a AuthzPrincipal,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Decision> {
        let decision = if self.allow.get(&call.tool) == Some(&true) {
            Decision::allow(vec!["table".into()], Vec::new())
        } else {
            Decision::deny_because(format!("{} is not in the table", call.tool))
        };
        Box::pin(async move { decision })
    }

    fn visible_tools<'a>(
        &'a self,
        _: &'a AuthzPrincipal,
        _: Option<&'a SessionId>,
        tools: &'a [ToolDefinition],
    ) -> BoxFuture<'a, Vec<bool>> {
        let mut flags: Vec<bool> = tools
            .iter()
            .map(|t| self.allow.get(&t.name) == Some(&true))
            .collect();
        flags.truncate(tools.len().saturating_sub(self.short));
        Box::pin(async move { flags })
    }
}

fn principal() -> Principal {
    let keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, None).unwrap(),
    ));
    let issuer = AccessTokenIssuer::new(Issuer::new("https://auth.tasks.example"), keys);
    let claims = issuer
        .claims(
            "u-17".into(),
            Resource::new(RESOURCE),
            ClientId::new("tc_5f2a91"),
            UnixTime::from_secs(1_767_225_600),
        )
        .unwrap();
    Principal::new(claims)
}

/// POSTs one message; returns the session id and the JSON-RPC response, if any.
async fn post(app: &Router, session: Option<&str>, body: Value) -> (Option<String>, Option<Value>) {
    let mut req = http::Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(session) = session {
        req = req
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let session = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    let message = body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|m| m.get("id").is_some());
    (session, message)
}

/// Lists the guarded tools and calls each; returns the listed names, the names whose call
/// succeeded, and how many times the inner handler ran.
async fn run(names: &[String], table: Table) -> (BTreeSet<String>, BTreeSet<String>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = AnyTools {
        tools: Arc::new(
            names
                .iter()
                .map(|n| {
                    Tool::new(
                        n.clone(),
                        "a tool",
                        json!({"type": "object"}).as_object().unwrap().clone(),
                    )
                })
                .collect(),
        ),
        calls: calls.clone(),
    };
    let authorizer: Arc<dyn ToolCallAuthorizer> = Arc::new(table);
    let service = StreamableHttpService::new(
        move || Ok(Guarded::new(inner.clone(), RESOURCE, authorizer.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    // The principal as the bearer layer leaves it.
    let app = Router::new()
        .nest_service("/mcp", service)
        .layer(axum::Extension(principal()));
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"p","version":"1"}}});
    let (session, _) = post(&app, None, init).await;
    let session = session.unwrap();
    post(
        &app,
        Some(&session),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    let (_, list) = post(
        &app,
        Some(&session),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    let listed = list.unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    let mut succeeded = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        let call = json!({"jsonrpc":"2.0","id":10 + i,"method":"tools/call",
            "params":{"name": name, "arguments": {}}});
        let (_, resp) = post(&app, Some(&session), call).await;
        let result = &resp.unwrap()["result"];
        if result["isError"] != true {
            assert_eq!(result["content"][0]["text"], format!("ran {name}"));
            succeeded.insert(name.clone());
        }
    }
    (listed, succeeded, calls.load(Ordering::SeqCst))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn guarded_tools_list_shows_exactly_what_visible_tools_allows(
        table in proptest::collection::btree_map("[a-z][a-z_]{0,9}", any::<bool>(), 0..10),
        short in 0usize..3,
    ) {
        let names: Vec<String> = table.keys().cloned().collect();
        let allowed: BTreeSet<String> =
            table.iter().filter(|(_, a)| **a).map(|(n, _)| n.clone()).collect();
        let flagged: BTreeSet<String> = names
            .iter()
            .take(names.len().saturating_sub(short))
            .filter(|n| allowed.contains(*n))
            .cloned()
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (listed, succeeded, ran) = rt.block_on(run(&names, Table { allow: table, short }));
        prop_assert_eq!(&listed, &flagged);
        // Never a listed tool the caller would be denied calling.
        prop_assert!(listed.is_subset(&succeeded));
        prop_assert_eq!(&succeeded, &allowed);
        prop_assert_eq!(ran, allowed.len());
    }
}
