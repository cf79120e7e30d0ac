//! The tool-call guard as a tower layer (`ToolCallGuardLayer`) behind the bearer layer, with a
//! real access token from the SSO → token exchange → jwt-bearer flow: allowed calls reach the
//! server, denied ones are answered with the reason and never reach it, malformed bodies are
//! refused before it; and the `Principal` → `ema_authz::Principal` conversion. Every denial has
//! its positive control. `TestAuthorizer` is shared with the rmcp guard tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ema_server::authz::{
    BoxFuture, Decision, Inspection, SessionId, ToolCall, ToolCallAuthorizer, ToolDefinition,
};
use serde_json::json;

use super::*;

/// One call the authorizer was asked about.
#[derive(Debug, Clone)]
pub(crate) struct Asked {
    pub(crate) principal: ema_server::authz::Principal,
    pub(crate) call: ToolCall,
}

/// Allows the tools in its table, except calls whose `id` argument is `"protected"`; hides the
/// others from `tools/list`; redacts `SECRET-…` words from results. Records what it is asked.
#[derive(Debug, Default)]
pub(crate) struct TestAuthorizer {
    pub(crate) allowed: BTreeSet<String>,
    pub(crate) asked: Mutex<Vec<Asked>>,
    pub(crate) listed: Mutex<Vec<(Option<SessionId>, Vec<String>)>>,
}

impl TestAuthorizer {
    pub(crate) fn allowing<'a>(tools: impl IntoIterator<Item = &'a str>) -> Arc<Self> {
        Arc::new(Self {
            allowed: tools.into_iter().map(str::to_owned).collect(),
            ..Self::default()
        })
    }

    pub(crate) fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

impl ToolCallAuthorizer for TestAuthorizer {
    fn authorize<'a>(
        &'a self,
        principal: &'a ema_server::authz::Principal,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Decision> {
        self.asked.lock().unwrap().push(Asked {
            principal: principal.clone(),
            call: call.clone(),
        });
        let decision = if !self.allowed.contains(&call.tool) {
            Decision::deny(Vec::new(), Vec::new())
        } else if call.arguments.get("id") == Some(&json!("protected")) {
            Decision::deny(
                vec!["policy-7".into()],
                vec!["task `protected` may not be changed".into()],
            )
        } else {
            Decision::allow(vec!["policy-1".into()], Vec::new())
        };
        Box::pin(async move { decision })
    }

    fn visible_tools<'a>(
        &'a self,
        _principal: &'a ema_server::authz::Principal,
        session: Option<&'a SessionId>,
        tools: &'a [ToolDefinition],
    ) -> BoxFuture<'a, Vec<bool>> {
        self.listed.lock().unwrap().push((
            session.cloned(),
            tools.iter().map(|t| t.name.clone()).collect(),
        ));
        Box::pin(async move {
            tools
                .iter()
                .map(|t| self.allowed.contains(&t.name))
                .collect()
        })
    }

    fn inspect_result<'a>(
        &'a self,
        _principal: &'a ema_server::authz::Principal,
        _call: &'a ToolCall,
        result: &'a mut Value,
    ) -> BoxFuture<'a, Inspection> {
        let mut inspection = Inspection::default();
        if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
            for block in content {
                if let Some(Value::String(text)) = block.get_mut("text") {
                    let words: Vec<String> = text
                        .split(' ')
                        .map(|w| {
                            if w.starts_with("SECRET-") {
                                inspection.redactions += 1;
                                "[redacted]".to_owned()
                            } else {
                                w.to_owned()
                            }
                        })
                        .collect();
                    *text = words.join(" ");
                }
            }
        }
        if inspection.redactions > 0 {
            inspection.labels.insert("secret_read".into());
        }
        Box::pin(async move { inspection })
    }
}

/// An access token for ana (`local-00u8k2Lq91`, group `eng`, `tasks.read`) from the world's
/// IdP and authorization server.
pub(crate) async fn real_token(w: &World) -> String {
    let id_token = sign_in(w, "ana", "ana-password").await;
    let (status, tx) = exchange(w, &id_token).await;
    assert_eq!(status, StatusCode::OK, "{tx}");
    let (status, at) = redeem(w, tx["access_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{at}");
    at["access_token"].as_str().unwrap().to_owned()
}

/// The bearer layer of the world's MCP server (tokens of the world's AS for `RESOURCE`).
pub(crate) fn bearer(w: &World) -> BearerAuth {
    BearerAuth::builder(RESOURCE, AS)
        .jwks(w.as_keys.jwks())
        .clock(clock())
        .require_scopes(["tasks.read"])
        .build()
        .unwrap()
}

fn tool(name: &str, annotations: Value) -> ToolDefinition {
    ToolDefinition::from_mcp_json(&json!({
        "name": name,
        "inputSchema": {"type": "object"},
        "annotations": annotations,
    }))
    .unwrap()
}

/// A JSON-RPC server behind the guard and the bearer layer; counts the requests it serves.
fn guarded_app(
    w: &World,
    authorizer: Arc<TestAuthorizer>,
    with_bearer: bool,
) -> (Router, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let guard = ToolCallGuardLayer::new(RESOURCE, authorizer).tools([
        tool("whoami", json!({"readOnlyHint": true})),
        tool("delete_task", json!({"destructiveHint": true})),
    ]);
    let routes = Router::new()
        .route(
            "/mcp",
            post(move |who: Option<Principal>, body: axum::body::Bytes| {
                let count = count.clone();
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    let who = who.map_or("nobody".to_owned(), |p| p.subject().to_owned());
                    axum::Json(json!({
                        "jsonrpc": "2.0",
                        "id": request["id"],
                        "result": {"content": [{"type": "text", "text": format!("served {who}")}]},
                    }))
                }
            })
            .get(|| async { "stream" }),
        )
        .layer(guard);
    let app = if with_bearer {
        routes.layer(bearer(w))
    } else {
        routes
    };
    (app, served)
}

fn rpc_post(token: Option<&str>, session: Option<&str>, body: &str) -> Request<Body> {
    let mut req = Request::post("/mcp").header("content-type", "application/json");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some(session) = session {
        req = req.header("mcp-session-id", session);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

fn tools_call(id: Value, tool: &str, arguments: Value) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    })
    .to_string()
}

#[tokio::test]
async fn guard_layer_allows_listed_calls_and_answers_denials_without_the_server() {
    let w = world();
    let token = real_token(&w).await;
    let authorizer = TestAuthorizer::allowing(["whoami", "delete_task"]);
    let (app, served) = guarded_app(&w, authorizer.clone(), true);

    // Allowed: the server runs and answers.
    let body = tools_call(json!(1), "whoami", json!({}));
    let (status, _, resp) = call(&app, rpc_post(Some(&token), Some("s-1"), &body)).await;
    assert_eq!(status, StatusCode::OK);
    let resp = json(&resp);
    assert_eq!(
        resp["result"]["content"][0]["text"],
        "served local-00u8k2Lq91"
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // What the authorizer saw: the server, the tool, its annotations, the session and the
    // principal from the real token (with the ID-JAG it came from).
    let asked = authorizer.asked();
    assert_eq!(asked.len(), 1);
    let Asked { principal, call: c } = &asked[0];
    assert_eq!(c.server, RESOURCE);
    assert_eq!(c.tool, "whoami");
    assert!(c.annotations.read_only());
    assert_eq!(c.session, Some(SessionId::new("s-1")));
    assert_eq!(principal.subject, "local-00u8k2Lq91");
    assert_eq!(principal.issuer, AS);
    assert_eq!(principal.client_id, "tc_5f2a91");
    assert!(principal.groups.contains("eng"));
    assert!(principal.scopes.contains("tasks.read"));
    assert_eq!(principal.idp_issuer.as_deref(), Some(IDP));
    assert!(principal.idp_jti.is_some() && principal.token_jti.is_some());

    // Denied by an argument rule: answered with the reason and the same id, never served.
    let body = tools_call(json!("abc"), "delete_task", json!({"id": "protected"}));
    let (status, headers, resp) = call(&app, rpc_post(Some(&token), None, &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        json(&resp),
        json!({
            "jsonrpc": "2.0",
            "id": "abc",
            "result": {
                "content": [{"type": "text", "text": "task `protected` may not be changed"}],
                "isError": true,
            },
        })
    );
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "a denied call is not served"
    );
    let asked = authorizer.asked();
    assert_eq!(asked[1].call.arguments["id"], "protected");
    assert!(asked[1].call.annotations.destructive());
    assert_eq!(asked[1].call.session, None);

    // Control: the same tool with another argument is served.
    let body = tools_call(json!(3), "delete_task", json!({"id": "t-1"}));
    let (status, _, resp) = call(&app, rpc_post(Some(&token), None, &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(json(&resp)["result"].get("isError").is_none());
    assert_eq!(served.load(Ordering::SeqCst), 2);

    // Denied by default (no policy permits the tool): the default reason, nothing served.
    let body = tools_call(json!(4), "admin_reset", json!({}));
    let (_, _, resp) = call(&app, rpc_post(Some(&token), None, &body)).await;
    let resp = json(&resp);
    assert_eq!(resp["result"]["isError"], true);
    assert_eq!(
        resp["result"]["content"][0]["text"],
        "no policy permits this call"
    );
    assert!(
        !resp.to_string().contains("policy-"),
        "no policy ids: {resp}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);

    // Absent and null arguments are an empty object.
    for body in [
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"whoami"}}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"whoami","arguments":null}}"#,
    ] {
        let (status, _, _) = call(&app, rpc_post(Some(&token), None, body)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(authorizer.asked().last().unwrap().call.arguments.is_empty());
    }
    assert_eq!(served.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn guard_layer_passes_other_methods_and_refuses_malformed_calls_before_the_server() {
    let w = world();
    let token = real_token(&w).await;
    let authorizer = TestAuthorizer::allowing(["whoami", "delete_task"]);
    let (app, served) = guarded_app(&w, authorizer.clone(), true);

    // Other methods, and GET, pass through without a decision.
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, _, _) = call(&app, rpc_post(Some(&token), None, list)).await;
    assert_eq!(status, StatusCode::OK);
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    let (status, _, _) = call(&app, rpc_post(Some(&token), None, batch)).await;
    assert_eq!(status, StatusCode::OK);
    let get = Request::get("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&app, get).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"stream"[..]));
    assert_eq!(served.load(Ordering::SeqCst), 2);
    assert!(authorizer.asked().is_empty());

    let call_ = tools_call(json!(9), "whoami", json!({}));
    for (body, code) in [
        // Not JSON: a parse error.
        ("{\"jsonrpc\":\"2.0\",", -32700),
        ("tools/call", -32700),
        // A tool name or an argument named twice: which one would the server run?
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_task","arguments":{"id":"t-1","id":"protected"}}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_task","arguments":{"q":{"id":1,"id":2}}}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{},"arguments":{"id":"protected"}}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"whoami"}}"#,
            -32600,
        ),
        // A tools/call in a batch, or without an id.
        (&format!("[{call_}]"), -32600),
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"whoami"}}"#,
            -32600,
        ),
        // No tool name, or arguments that are not an object.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":[1]}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":"x"}}"#,
            -32602,
        ),
    ] {
        let (status, _, resp) = call(&app, rpc_post(Some(&token), None, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let resp = json(&resp);
        assert_eq!(resp["jsonrpc"], "2.0", "{body}");
        assert_eq!(resp["error"]["code"], code, "{body}: {resp}");
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "nothing malformed is served"
    );
    assert!(authorizer.asked().is_empty(), "nor authorized");

    // Control: the well-formed call is served.
    let (status, _, _) = call(&app, rpc_post(Some(&token), None, &call_)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn guard_layer_without_a_principal_denies_every_call() {
    let w = world();
    let authorizer = TestAuthorizer::allowing(["whoami"]);
    // The guard without the bearer layer in front: a configuration mistake.
    let (app, served) = guarded_app(&w, authorizer.clone(), false);
    let body = tools_call(json!(1), "whoami", json!({}));
    let (status, _, resp) = call(&app, rpc_post(None, None, &body)).await;
    assert_eq!(status, StatusCode::OK);
    let resp = json(&resp);
    assert_eq!(resp["id"], 1);
    assert_eq!(resp["result"]["isError"], true);
    assert!(
        resp["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("no verified principal"),
        "{resp}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 0);
    assert!(authorizer.asked().is_empty());
    // Control: other methods still reach the server.
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let (status, _, _) = call(&app, rpc_post(None, None, list)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn principal_converts_every_claim_policies_use() {
    let w = world();
    let token = real_token(&w).await;
    // The claims of a real token: issued for an ID-JAG, so they name its origin.
    let validator = AccessTokenValidator::new(
        Issuer::new(AS),
        Resource::new(RESOURCE),
        StaticKeySource::new().with_issuer(AS, w.as_keys.jwks()),
    );
    let mut claims = validator.validate(&token, NOW).await.unwrap();
    let origin = claims.origin.clone().unwrap();
    claims.scope = Some(ScopeSet::parse("tasks.read tasks.write").unwrap());
    claims.tenant = Some("acme".into());
    claims.groups = vec!["eng".into(), "ops".into()];
    claims.roles = vec!["admin".into()];
    claims.acr = Some("urn:acme:mfa".into());
    claims.amr = Some(vec!["pwd".into(), "otp".into()]);
    claims.auth_time = Some(UnixTime::from_secs(1_767_225_000));
    let who = Principal::new(claims.clone());
    let p: ema_server::authz::Principal = (&who).into();
    let set = |items: &[&str]| {
        items
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(p.issuer, AS);
    assert_eq!(p.subject, "local-00u8k2Lq91");
    assert_eq!(p.client_id, "tc_5f2a91");
    assert_eq!(p.tenant.as_deref(), Some("acme"));
    assert_eq!(p.scopes, set(&["tasks.read", "tasks.write"]));
    assert_eq!(p.groups, set(&["eng", "ops"]));
    assert_eq!(p.roles, set(&["admin"]));
    assert_eq!(p.acr.as_deref(), Some("urn:acme:mfa"));
    assert_eq!(p.amr, set(&["otp", "pwd"]));
    assert_eq!(p.auth_time, Some(1_767_225_000));
    assert_eq!(p.token_jti.as_deref(), Some(claims.jti.as_str()));
    assert_eq!(p.idp_issuer.as_deref(), Some(IDP));
    assert_eq!(p.idp_issuer.as_deref(), Some(origin.iss.as_str()));
    assert_eq!(p.idp_jti.as_deref(), Some(origin.jti.as_str()));
    assert_eq!(p.delegation_depth, 0);
    assert_eq!(p.attributes, BTreeMap::new());
    assert_eq!(ema_server::authz::Principal::from(who), p);

    // Control: a token without the optional claims leaves them empty.
    let mut bare = claims;
    bare.scope = None;
    bare.tenant = None;
    bare.groups = Vec::new();
    bare.roles = Vec::new();
    bare.acr = None;
    bare.amr = None;
    bare.auth_time = None;
    bare.origin = None;
    let p = Principal::new(bare).to_authz();
    assert!(p.scopes.is_empty() && p.groups.is_empty() && p.roles.is_empty() && p.amr.is_empty());
    assert_eq!((p.tenant, p.acr, p.auth_time), (None, None, None));
    assert_eq!((p.idp_issuer, p.idp_jti), (None, None));
    assert!(p.token_jti.is_some());
}
