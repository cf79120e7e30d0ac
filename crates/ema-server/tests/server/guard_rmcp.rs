//! `ema_server::rmcp::Guarded` over a real rmcp Streamable HTTP server on loopback, behind the
//! bearer layer, called over TCP with a real access token (SSO → token exchange → jwt-bearer):
//! `tools/list` filtered by the authorizer; a denied call answered with its reason while the
//! tool does not run; an allowed call runs and its tool sees the principal; a redaction by the
//! result inspection reaches the client; without a principal everything is denied. Each
//! denial has its positive control (the same server unguarded, or an allowed call).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

// The rmcp crate, not `ema_server::rmcp` (which `super::*` brings in): the macros name it.
use ::rmcp;
use ema_server::authz::{SessionId, ToolCallAuthorizer};
use ema_server::rmcp::Guarded;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::json;

use super::guard::{TestAuthorizer, bearer, real_token};
use super::*;

/// How often each tool ran, and who the last caller was.
#[derive(Debug, Default)]
struct Runs {
    whoami: AtomicUsize,
    delete_task: AtomicUsize,
    read_secret: AtomicUsize,
    admin_reset: AtomicUsize,
    last_caller: Mutex<Option<String>>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct TaskId {
    /// The task.
    id: String,
}

#[derive(Clone)]
struct Tasks {
    runs: Arc<Runs>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Tasks {
    #[tool(
        description = "Who the server sees",
        annotations(read_only_hint = true)
    )]
    fn whoami(&self, who: Principal) -> String {
        self.runs.whoami.fetch_add(1, Ordering::SeqCst);
        *self.runs.last_caller.lock().unwrap() = Some(who.subject().to_owned());
        format!("{} via {}", who.subject(), who.client_id())
    }

    #[tool(description = "Delete a task", annotations(destructive_hint = true))]
    fn delete_task(&self, Parameters(task): Parameters<TaskId>) -> String {
        self.runs.delete_task.fetch_add(1, Ordering::SeqCst);
        format!("deleted {}", task.id)
    }

    #[tool(
        description = "Read the deploy key",
        annotations(read_only_hint = true)
    )]
    fn read_secret(&self) -> String {
        self.runs.read_secret.fetch_add(1, Ordering::SeqCst);
        "deploy key: SECRET-4f9a2b (rotate monthly)".to_owned()
    }

    #[tool(description = "Reset everything")]
    fn admin_reset(&self) -> String {
        self.runs.admin_reset.fetch_add(1, Ordering::SeqCst);
        "reset".to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tasks {}

/// Serves `/mcp` on a loopback port; returns its URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/mcp")
}

/// The tasks server, guarded by `authorizer` when given, behind the bearer layer when
/// `with_bearer`.
fn tasks_app(
    w: &World,
    runs: &Arc<Runs>,
    authorizer: Option<Arc<dyn ToolCallAuthorizer>>,
    with_bearer: bool,
) -> Router {
    let runs = runs.clone();
    let tasks = move || Tasks {
        runs: runs.clone(),
        tool_router: Tasks::tool_router(),
    };
    let sessions = Arc::new(LocalSessionManager::default());
    let config = StreamableHttpServerConfig::default();
    let routes = match authorizer {
        Some(authorizer) => Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(
                move || Ok(Guarded::new(tasks(), RESOURCE, authorizer.clone())),
                sessions,
                config,
            ),
        ),
        None => Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(move || Ok(tasks()), sessions, config),
        ),
    };
    if with_bearer {
        routes.layer(bearer(w))
    } else {
        routes
    }
}

/// An MCP client session over HTTP.
struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    session: Option<String>,
    next_id: u64,
}

impl Client {
    async fn connect(url: String, token: Option<String>) -> Self {
        let mut client = Self {
            http: reqwest::Client::new(),
            url,
            token,
            session: None,
            next_id: 1,
        };
        let init = client
            .request(
                "initialize",
                json!({
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "guard-test", "version": "1"},
                }),
            )
            .await;
        assert!(init.get("result").is_some(), "{init}");
        client
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        client
    }

    /// POSTs one message; the JSON-RPC response in the body (JSON or SSE), if any.
    async fn send(&mut self, message: Value) -> Option<Value> {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(message.to_string());
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if let Some(session) = &self.session {
            req = req
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18");
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        if let Some(session) = resp.headers().get("mcp-session-id") {
            self.session = Some(session.to_str().unwrap().to_owned());
        }
        let body = resp.text().await.unwrap();
        if body.trim_start().starts_with('{') {
            return Some(serde_json::from_str(&body).unwrap());
        }
        body.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message.get("id").is_some())
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self.send(message).await.unwrap();
        assert_eq!(resp["id"], id, "{resp}");
        resp
    }

    async fn tool_names(&mut self) -> Vec<String> {
        let resp = self.request("tools/list", json!({})).await;
        let mut names: Vec<String> = resp["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    /// Calls `tool`; returns whether the result is an error, and its first text.
    async fn call(&mut self, tool: &str, arguments: Value) -> (bool, String) {
        let resp = self
            .request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await;
        let result = &resp["result"];
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        (result["isError"] == true, text.to_owned())
    }
}

fn allowing() -> Arc<TestAuthorizer> {
    TestAuthorizer::allowing(["whoami", "delete_task", "read_secret"])
}

#[tokio::test]
async fn guarded_rmcp_lists_only_the_tools_the_caller_may_call() {
    let w = world();
    let token = real_token(&w).await;
    let runs = Arc::new(Runs::default());
    let authorizer = allowing();
    let url = serve(tasks_app(&w, &runs, Some(authorizer.clone()), true)).await;
    let mut client = Client::connect(url, Some(token.clone())).await;
    assert_eq!(
        client.tool_names().await,
        ["delete_task", "read_secret", "whoami"]
    );
    // The authorizer saw every tool of the inner handler, in the client's session.
    let listed = authorizer.listed.lock().unwrap().clone();
    assert_eq!(listed.len(), 1);
    let (session, mut tools) = listed[0].clone();
    tools.sort();
    assert_eq!(
        tools,
        ["admin_reset", "delete_task", "read_secret", "whoami"]
    );
    assert_eq!(
        session,
        Some(SessionId::new(client.session.clone().unwrap()))
    );

    // Control: unguarded, the same server lists all four.
    let url = serve(tasks_app(&w, &runs, None, true)).await;
    let mut client = Client::connect(url, Some(token)).await;
    assert_eq!(client.tool_names().await.len(), 4);
}

#[tokio::test]
async fn guarded_rmcp_denies_before_the_tool_runs_and_runs_allowed_calls_with_the_principal() {
    let w = world();
    let token = real_token(&w).await;
    let runs = Arc::new(Runs::default());
    let authorizer = allowing();
    let url = serve(tasks_app(&w, &runs, Some(authorizer.clone()), true)).await;
    let mut client = Client::connect(url, Some(token)).await;

    // Denied by an argument rule: the reason, and the tool did not run.
    let (is_error, text) = client.call("delete_task", json!({"id": "protected"})).await;
    assert!(is_error);
    assert_eq!(text, "task `protected` may not be changed");
    assert_eq!(runs.delete_task.load(Ordering::SeqCst), 0);
    // Denied by default: the default reason, no policy internals.
    let (is_error, text) = client.call("admin_reset", json!({})).await;
    assert!(is_error);
    assert_eq!(text, "no policy permits this call");
    assert_eq!(runs.admin_reset.load(Ordering::SeqCst), 0);

    // Control: the same tool with another argument runs.
    let (is_error, text) = client.call("delete_task", json!({"id": "t-1"})).await;
    assert!(!is_error, "{text}");
    assert_eq!(text, "deleted t-1");
    assert_eq!(runs.delete_task.load(Ordering::SeqCst), 1);

    // An allowed call's tool sees the principal of the real token.
    let (is_error, text) = client.call("whoami", json!({})).await;
    assert!(!is_error, "{text}");
    assert_eq!(text, "local-00u8k2Lq91 via tc_5f2a91");
    assert_eq!(runs.whoami.load(Ordering::SeqCst), 1);
    assert_eq!(
        runs.last_caller.lock().unwrap().as_deref(),
        Some("local-00u8k2Lq91")
    );

    // What the authorizer was asked: server, tool, arguments, annotations from the handler's
    // own tool definitions, session, and the principal with its ID-JAG origin.
    let asked = authorizer.asked();
    assert_eq!(asked.len(), 4);
    let session = Some(SessionId::new(client.session.clone().unwrap()));
    for a in &asked {
        assert_eq!(a.call.server, RESOURCE);
        assert_eq!(a.call.session, session);
        assert_eq!(a.principal.subject, "local-00u8k2Lq91");
        assert_eq!(a.principal.idp_issuer.as_deref(), Some(IDP));
    }
    assert_eq!(asked[0].call.tool, "delete_task");
    assert_eq!(asked[0].call.arguments["id"], "protected");
    assert!(asked[0].call.annotations.destructive());
    assert!(asked[3].call.annotations.read_only());
}

#[tokio::test]
async fn guarded_rmcp_result_redaction_reaches_the_client() {
    let w = world();
    let token = real_token(&w).await;
    let runs = Arc::new(Runs::default());
    let url = serve(tasks_app(&w, &runs, Some(allowing()), true)).await;
    let mut client = Client::connect(url, Some(token.clone())).await;
    let (is_error, text) = client.call("read_secret", json!({})).await;
    assert!(!is_error, "{text}");
    assert_eq!(text, "deploy key: [redacted] (rotate monthly)");
    assert_eq!(runs.read_secret.load(Ordering::SeqCst), 1);

    // Control: unguarded, the secret goes out.
    let url = serve(tasks_app(&w, &runs, None, true)).await;
    let mut client = Client::connect(url, Some(token)).await;
    let (_, text) = client.call("read_secret", json!({})).await;
    assert!(text.contains("SECRET-4f9a2b"), "{text}");
}

#[tokio::test]
async fn guarded_rmcp_without_a_principal_denies_and_lists_nothing() {
    let w = world();
    let runs = Arc::new(Runs::default());
    let authorizer = allowing();
    // The guard without the bearer layer in front: a configuration mistake.
    let url = serve(tasks_app(&w, &runs, Some(authorizer.clone()), false)).await;
    let mut client = Client::connect(url, None).await;
    assert!(client.tool_names().await.is_empty());
    let (is_error, text) = client.call("read_secret", json!({})).await;
    assert!(is_error);
    assert!(text.contains("no verified principal"), "{text}");
    assert_eq!(runs.read_secret.load(Ordering::SeqCst), 0);
    assert!(authorizer.asked().is_empty());

    // Control: unguarded and without the layer, the tool runs (the guard is what stopped it).
    let url = serve(tasks_app(&w, &runs, None, false)).await;
    let mut client = Client::connect(url, None).await;
    assert_eq!(client.tool_names().await.len(), 4);
    let (is_error, _) = client.call("read_secret", json!({})).await;
    assert!(!is_error);
    assert_eq!(runs.read_secret.load(Ordering::SeqCst), 1);
}

/// Each decision of the guard is on the audit trail: the access token's `jti`, the principal,
/// the session, the tool, a digest of the arguments (never the arguments themselves), the
/// effect, the deciding policies and reasons; the trail verifies.
#[tokio::test]
async fn guarded_rmcp_writes_each_decision_to_the_audit_trail() {
    use ema_server::audit::{ArgumentsDigest, AuditLog, JsonLinesFile, Verifier};

    let w = world();
    let token = real_token(&w).await;
    let runs = Arc::new(Runs::default());
    let authorizer: Arc<dyn ToolCallAuthorizer> = allowing();
    let dir = std::env::temp_dir().join(format!(
        "ema-server-guard-audit-{}-{}",
        std::process::id(),
        NOW.as_secs()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("guard.jsonl");
    let key = Arc::new(SigningKey::generate(Algorithm::ES256, Some("audit-1".into())).unwrap());
    let jwks = JwkSet::from_keys([key.verifying_key().clone()]);
    let log = AuditLog::builder(key)
        .clock(|| time::OffsetDateTime::from_unix_timestamp(NOW.as_secs() as i64).unwrap())
        .build(JsonLinesFile::create_new(&file).unwrap())
        .unwrap();

    let tasks = {
        let runs = runs.clone();
        move || Tasks {
            runs: runs.clone(),
            tool_router: Tasks::tool_router(),
        }
    };
    let trail = log.clone();
    let app = Router::new()
        .nest_service(
            "/mcp",
            StreamableHttpService::new(
                move || {
                    Ok(Guarded::new(tasks(), RESOURCE, authorizer.clone())
                        .with_audit(trail.clone()))
                },
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default(),
            ),
        )
        .layer(bearer(&w));
    let url = serve(app).await;
    let mut client = Client::connect(url, Some(token.clone())).await;
    let (denied, _) = client.call("delete_task", json!({"id": "protected"})).await;
    let (allowed_error, text) = client.call("delete_task", json!({"id": "t-1"})).await;
    assert!(denied && !allowed_error, "{text}");
    let session = client.session.clone().unwrap();
    drop(client);

    log.close().unwrap();
    let report = Verifier::new(jwks).verify_file(&file).unwrap();
    assert!(report.closed);
    assert_eq!(report.events, 2);
    let text = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!text.contains(&token), "the trail holds no token");
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| r.get("event").cloned())
        .collect();
    let jti = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["jti"].as_str().unwrap().to_owned()
    };
    for (event, decision, args) in [
        (&events[0], "deny", json!({"id": "protected"})),
        (&events[1], "allow", json!({"id": "t-1"})),
    ] {
        assert_eq!(event["kind"], "tool_decision");
        assert_eq!(event["decision"], decision);
        assert_eq!(event["tool"], "delete_task");
        assert_eq!(event["server"], RESOURCE);
        assert_eq!(event["access_token_jti"], jti.as_str());
        assert_eq!(event["session_id"], session.as_str());
        assert_eq!(event["subject"], "local-00u8k2Lq91");
        assert_eq!(
            event["arguments_digest"],
            ArgumentsDigest::of(&args).as_str()
        );
    }
    assert_eq!(
        events[0]["reasons"][0],
        "task `protected` may not be changed"
    );
}
