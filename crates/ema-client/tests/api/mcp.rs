//! Hop 4 through rmcp: the Streamable HTTP client authorized by an EMA session; CL-7, CL-9,
//! CL-10 and CL-15 end to end.

use std::sync::Arc;

use ema_client::{EMA_EXTENSION_ID, EmaHttpClient, ema_client_config};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, ProtocolVersion};
use serde_json::{Value, json};

use crate::support::{READER, World};

/// Runs initialize, tools/list and tools/call through rmcp with an EMA session.
async fn run_mcp(world: &World) -> Result<(), String> {
    let session = world
        .client()
        .session(&world.server_url(), world.id_token())
        .await
        .map_err(|e| e.to_string())?;
    let transport = EmaHttpClient::new(Arc::new(session))
        .map_err(|e| e.to_string())?
        .into_transport();
    let mcp = ema_client_config()
        .serve(transport)
        .await
        .map_err(|e| e.to_string())?;
    let tools = mcp.list_all_tools().await.map_err(|e| e.to_string())?;
    assert_eq!(tools.len(), 1);
    mcp.call_tool(CallToolRequestParams::new("echo"))
        .await
        .map_err(|e| e.to_string())?;
    mcp.cancel().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// CL-7: the MCP server saw only access tokens the AS issued, only in the `Authorization`
/// header; never the ID token, never an ID-JAG, never a token in a URL.
fn assert_cl7(world: &World, id_token: &str) {
    let log = world.log.lock().unwrap();
    assert!(!log.id_jags.is_empty());
    for request in &log.mcp {
        assert!(
            !request.contains(id_token),
            "ID token sent to the MCP server"
        );
        for jag in &log.id_jags {
            assert!(!request.contains(jag), "ID-JAG sent to the MCP server");
        }
        assert!(!request.uri.contains('?'), "query in {}", request.uri);
        if let Some(value) = request.authorization() {
            let token = value.strip_prefix("Bearer ").expect("Bearer scheme");
            assert!(log.access_tokens.iter().any(|t| t == token));
            assert!(
                !request.body.contains(token) && !request.uri.contains(token),
                "token outside the header"
            );
        }
    }
}

#[tokio::test]
async fn rmcp_over_streamable_http_with_an_ema_session() {
    let world = World::start(|_| {}).await;
    run_mcp(&world).await.unwrap();
    let log = world.log.lock().unwrap();
    // Probe (no token) plus initialize, initialized, tools/list, tools/call, all authorized.
    let authorized = log
        .mcp
        .iter()
        .filter(|r| r.authorization().is_some())
        .count();
    assert!(authorized >= 4, "{authorized}");
    assert_eq!(log.exchanges.len(), 1, "one token for the whole session");
    drop(log);
    // The ID token the world mints is deterministic per call only in its claims; check the
    // strings actually sent: the subject_token of each exchange.
    let exchanges = world.log.lock().unwrap().exchanges.clone();
    for body in exchanges {
        let form = ema_grant::Form::parse(body.as_bytes(), 1 << 20).unwrap();
        assert_cl7(&world, form.get("subject_token").unwrap());
    }
}

#[tokio::test]
async fn cl9_rmcp_recovers_once_from_invalid_token() {
    let world = World::start(|k| k.revoke_first = true).await;
    run_mcp(&world).await.unwrap();
    let log = world.log.lock().unwrap();
    assert_eq!(log.exchanges.len(), 2, "one re-acquisition");
    assert_eq!(log.assertions.len(), 2);
    assert_ne!(log.assertions[0], log.assertions[1], "a fresh ID-JAG");
    let first = &log.access_tokens[0];
    let uses_of_first = log
        .mcp
        .iter()
        .filter(|r| r.authorization() == Some(&format!("Bearer {first}")))
        .count();
    assert_eq!(uses_of_first, 1, "the revoked token was not sent again");
    let body = log.exchanges[0].clone();
    drop(log);
    let form = ema_grant::Form::parse(body.as_bytes(), 1 << 20).unwrap();
    assert_cl7(&world, form.get("subject_token").unwrap());
}

#[tokio::test]
async fn cl9_gives_up_after_one_reacquisition() {
    // A server that refuses every token: one re-acquisition, one retry, then the error.
    let world = World::start(|k| k.revoke_all = true).await;
    let err = run_mcp(&world).await.unwrap_err();
    assert!(err.to_lowercase().contains("auth"), "{err}");
    let log = world.log.lock().unwrap();
    assert_eq!(log.exchanges.len(), 2, "exactly one re-acquisition");
    let authorized = log
        .mcp
        .iter()
        .filter(|r| r.authorization().is_some())
        .count();
    assert_eq!(authorized, 2, "the request and its one retry");
}

#[tokio::test]
async fn cl10_rmcp_widens_scope_on_insufficient_scope() {
    let world = World::start(|k| {
        k.challenge_scope = Some("tasks.read".into());
        k.tools_call_scope = Some("tasks.read tasks.write".into());
    })
    .await;
    run_mcp(&world).await.unwrap();
    let log = world.log.lock().unwrap();
    assert_eq!(log.exchanges.len(), 2);
    let scopes: Vec<String> = log
        .exchanges
        .iter()
        .map(|b| {
            ema_grant::Form::parse(b.as_bytes(), 1 << 20)
                .unwrap()
                .get("scope")
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(scopes, ["tasks.read", "tasks.read tasks.write"]);
    let denied = log
        .mcp
        .iter()
        .filter(|r| r.body.contains("tools/call"))
        .count();
    assert_eq!(denied, 2, "tools/call once refused, once retried");
}

/// The JSON-RPC messages the MCP server received, parsed.
fn rpc_messages(world: &World) -> Vec<Value> {
    world
        .log
        .lock()
        .unwrap()
        .mcp
        .iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect()
}

#[tokio::test]
async fn cl15_initialize_declares_the_ema_extension() {
    let world = World::start(|_| {}).await;
    run_mcp(&world).await.unwrap();
    let initializes: Vec<Value> = rpc_messages(&world)
        .into_iter()
        .filter(|m| m["method"] == "initialize")
        .collect();
    // Should rmcp send initialize again (a retry), every one must declare it: check them all.
    assert!(!initializes.is_empty(), "no initialize reached the server");
    for initialize in &initializes {
        assert_eq!(
            initialize["params"]["capabilities"]["extensions"]["io.modelcontextprotocol/enterprise-managed-authorization"],
            json!({}),
            "{initialize}"
        );
    }
    // In MCP 2026-07-28 (rmcp's default) the capabilities also travel in each request's `_meta`
    // (tools/list and tools/call here); they declare the extension too.
    let mut with_meta = 0;
    for message in rpc_messages(&world) {
        let meta_caps = &message["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"];
        if !meta_caps.is_null() {
            with_meta += 1;
            assert_eq!(
                meta_caps["extensions"][EMA_EXTENSION_ID],
                json!({}),
                "{message}"
            );
        }
    }
    assert!(
        with_meta >= 2,
        "{with_meta} requests with capabilities in `_meta`"
    );
}

#[tokio::test]
async fn cl15_a_custom_client_config_keeps_its_extensions_and_declares_ema() {
    // An adopter's own `ClientConfig`, pinned to the `initialize` era, with an extension of its own.
    let mut capabilities = ClientCapabilities::default();
    capabilities.extensions = Some(
        [("io.modelcontextprotocol/ui".to_owned(), Default::default())]
            .into_iter()
            .collect(),
    );
    ema_client::declare_ema_extension(&mut capabilities);
    let info = ClientConfig::new(capabilities, Default::default())
        .with_protocol_version(ProtocolVersion::V_2025_11_25);

    let world = World::start(|_| {}).await;
    let session = world
        .client()
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    let transport = EmaHttpClient::new(Arc::new(session))
        .unwrap()
        .into_transport();
    let mcp = info.serve(transport).await.unwrap();
    mcp.cancel().await.unwrap();

    let initialize = rpc_messages(&world)
        .into_iter()
        .find(|m| m["method"] == "initialize")
        .expect("an initialize");
    assert_eq!(initialize["params"]["protocolVersion"], "2025-11-25");
    assert_eq!(
        initialize["params"]["capabilities"]["extensions"],
        json!({
            "io.modelcontextprotocol/ui": {},
            "io.modelcontextprotocol/enterprise-managed-authorization": {},
        })
    );
}

/// CL-10 through rmcp: the IdP narrows the step-up of a read-only user (TX-9), so the new token
/// still lacks `tasks.write`; the call fails and the session keeps the typed failure (rmcp hands
/// its caller only a transport error) naming the scopes and the narrowing hop. The control (a
/// user allowed to write) is `cl10_rmcp_widens_scope_on_insufficient_scope`.
#[tokio::test]
async fn cl10_rmcp_refused_step_up_is_kept_as_the_sessions_last_failure() {
    let world = World::start(|k| {
        k.challenge_scope = Some("tasks.read".into());
        k.tools_call_scope = Some("tasks.read tasks.write".into());
    })
    .await;
    let session = Arc::new(
        world
            .client()
            .session(&world.server_url(), world.id_token_for(READER))
            .await
            .unwrap(),
    );
    let transport = EmaHttpClient::new(session.clone())
        .unwrap()
        .into_transport();
    let mcp = ema_client_config().serve(transport).await.unwrap();
    assert_eq!(mcp.list_all_tools().await.unwrap().len(), 1);
    assert_eq!(session.last_failure(), None);
    mcp.call_tool(CallToolRequestParams::new("echo"))
        .await
        .unwrap_err();
    let failure = session.last_failure().expect("the refusal is kept");
    assert_eq!(failure.hop(), ema_client::Hop::McpRequest);
    let report = failure.scope_report().unwrap();
    assert_eq!(report.narrowed_by(), Some(ema_client::Hop::TokenExchange));
    assert_eq!(report.requested.to_string(), "tasks.read tasks.write");
    assert_eq!(
        report.granted_by_idp.as_ref().map(ToString::to_string),
        Some("tasks.read".into())
    );
    assert_eq!(
        report.required.as_ref().map(ToString::to_string),
        Some("tasks.read tasks.write".into())
    );
    assert!(
        failure
            .to_string()
            .contains("the IdP narrowed the request (withheld `tasks.write`)"),
        "{failure}"
    );
    // The narrowed token was never sent for tools/call again: one refusal, no retry.
    let calls = world
        .log
        .lock()
        .unwrap()
        .mcp
        .iter()
        .filter(|r| r.body.contains("tools/call"))
        .count();
    assert_eq!(calls, 1);
}
