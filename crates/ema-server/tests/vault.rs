//! `ema_server::vault` against a mock provider on loopback: the HTTP provider client's strict
//! parsing and error mapping, the connect flow's callback (replayed, expired, foreign, unknown
//! states refused, nothing stored), and `Guarded::with_vault` (the tool gets its provider's
//! credential and no other; an unconnected user gets a URL-mode elicitation, or a tool error
//! with the connect link when the client declared no URL-mode elicitation).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests may unwrap"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use ema_grant::AccessTokenIssuer;
use ema_id_jag::{ClientId, Issuer, Resource};
use ema_jose::{Algorithm, Clock, KeyRing, SigningKey, UnixTime};
use ema_server::Principal;
use ema_server::authz::{
    BoxFuture, Decision, Principal as AuthzPrincipal, SessionId, ToolCall, ToolCallAuthorizer,
    ToolDefinition,
};
use ema_server::rmcp::Guarded;
use ema_server::vault::{
    ClientAuth, ConnectProvider, Connector, HttpProviderClient, ToolCredentials, owner_of,
};
use ema_vault::{
    ConnectStates, Credential, CredentialVault, MemoryStore, ProviderClient, ProviderError,
    ProviderId, RevokeOutcome, Secret, StoreSource, TokenSet, TokenTypeHint, Vault, VaultEvent,
    VaultObserver,
};
use http_body_util::BodyExt;
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

const CLIENT_ID: &str = "mcp client";
const CLIENT_SECRET: &str = "s3cr3t:with&odd=chars";
const ACCESS: &str = "at-connected-0001";
const RESOURCE: &str = "http://127.0.0.1/mcp";
const T0: u64 = 1_767_225_600;

/// What the mock provider saw.
#[derive(Default)]
struct Seen {
    forms: Vec<HashMap<String, String>>,
    authorization: Vec<Option<String>>,
}

#[derive(Clone, Default)]
struct Mock {
    seen: Arc<Mutex<Seen>>,
}

fn form_of(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

async fn token(
    State(m): State<Mock>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let form = form_of(&body);
    {
        let mut seen = m.seen.lock().unwrap();
        seen.forms.push(form.clone());
        seen.authorization.push(
            headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
        );
    }
    let ok = |access: &str, refresh: &str| {
        axum::Json(
            json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                          "refresh_token": refresh, "scope": "notes.read"}),
        )
        .into_response()
    };
    let error = |status: u16, body: Value| {
        (
            http::StatusCode::from_u16(status).unwrap(),
            axum::Json(body),
        )
            .into_response()
    };
    match (
        form.get("grant_type").map(String::as_str),
        form.get("refresh_token")
            .or(form.get("code"))
            .map(String::as_str),
    ) {
        (Some("authorization_code"), Some("good-code")) => ok(ACCESS, "rt-1"),
        (Some("refresh_token"), Some("good-rt")) => ok("at-2", "rt-2"),
        (Some("refresh_token"), Some("bad-rt")) => error(
            400,
            json!({"error": "invalid_grant", "error_description": "token bad-rt was revoked"}),
        ),
        (Some("refresh_token"), Some("boom")) => error(503, json!({})),
        (Some("refresh_token"), Some("garbage")) => "not json".into_response(),
        (Some("refresh_token"), Some("odd-client")) => {
            error(401, json!({"error": "invalid_client"}))
        }
        (Some("refresh_token"), Some("hang")) => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        _ => error(400, json!({"error": "invalid_request"})),
    }
}

async fn revoke(State(m): State<Mock>, body: String) -> axum::response::Response {
    let form = form_of(&body);
    m.seen.lock().unwrap().forms.push(form.clone());
    match form.get("token").map(String::as_str) {
        Some("down") => http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Some("weird") => (
            http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_token_type"})),
        )
            .into_response(),
        _ => http::StatusCode::OK.into_response(),
    }
}

/// Starts the mock provider; its base URL.
async fn mock(m: &Mock) -> String {
    let app = Router::new()
        .route("/token", axum::routing::post(token))
        .route("/revoke", axum::routing::post(revoke))
        .with_state(m.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn client(base: &str) -> HttpProviderClient {
    HttpProviderClient::new(
        &format!("{base}/token"),
        CLIENT_ID,
        Secret::new(CLIENT_SECRET.into()),
    )
    .unwrap()
    .with_revocation_endpoint(&format!("{base}/revoke"))
    .unwrap()
    .with_timeout(Duration::from_millis(300))
}

fn secret(s: &str) -> Secret {
    Secret::new(s.to_owned())
}

#[tokio::test]
async fn refresh_parses_strictly_and_maps_errors() {
    let m = Mock::default();
    let base = mock(&m).await;
    let c = client(&base);
    let tokens = c.refresh(&secret("good-rt")).await.unwrap();
    assert_eq!(tokens.access_token.expose(), "at-2");
    assert_eq!(tokens.refresh_token.unwrap().expose(), "rt-2");
    {
        let seen = m.seen.lock().unwrap();
        assert_eq!(seen.forms[0]["grant_type"], "refresh_token");
        assert!(!seen.forms[0].contains_key("client_secret"));
        // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
        use base64::Engine;
        let basic = seen.authorization[0].as_deref().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "mcp%20client:s3cr3t%3Awith%26odd%3Dchars"
        );
    }
    match c.refresh(&secret("bad-rt")).await {
        Err(ProviderError::InvalidGrant { description }) => {
            // The provider echoed the token: its description is dropped.
            assert_eq!(description, "invalid_grant");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.refresh(&secret("boom")).await,
        Err(ProviderError::Unavailable(_))
    ));
    assert!(matches!(
        c.refresh(&secret("garbage")).await,
        Err(ProviderError::Protocol(_))
    ));
    match c.refresh(&secret("odd-client")).await {
        Err(e @ ProviderError::Protocol(_)) => {
            assert!(e.to_string().contains("invalid_client"));
            assert!(!e.to_string().contains(CLIENT_SECRET));
        }
        other => panic!("{other:?}"),
    }
    // A provider that never answers: the timeout.
    assert!(matches!(
        c.refresh(&secret("hang")).await,
        Err(ProviderError::Unavailable(m)) if m.contains("timed out")
    ));
    // Nothing listening.
    let gone = client("http://127.0.0.1:9");
    assert!(matches!(
        gone.refresh(&secret("good-rt")).await,
        Err(ProviderError::Unavailable(_))
    ));
}

#[tokio::test]
async fn exchange_code_posts_the_verifier_and_the_secret_in_the_body() {
    let m = Mock::default();
    let base = mock(&m).await;
    let c = client(&base).with_client_auth(ClientAuth::SecretPost);
    let tokens = c
        .exchange_code("good-code", &secret("verifier-1"), "http://127.0.0.1/cb")
        .await
        .unwrap();
    assert_eq!(tokens.access_token.expose(), ACCESS);
    let seen = m.seen.lock().unwrap();
    let form = &seen.forms[0];
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code_verifier"], "verifier-1");
    assert_eq!(form["redirect_uri"], "http://127.0.0.1/cb");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(seen.authorization[0], None);
}

#[tokio::test]
async fn revoke_reports_each_outcome() {
    let m = Mock::default();
    let base = mock(&m).await;
    let c = client(&base);
    let hint = TokenTypeHint::RefreshToken;
    assert_eq!(
        c.revoke(&secret("rt-1"), hint).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(
        m.seen.lock().unwrap().forms[0]["token_type_hint"],
        "refresh_token"
    );
    assert_eq!(
        c.revoke(&secret("weird"), hint).await.unwrap(),
        RevokeOutcome::NotSupported
    );
    assert!(matches!(
        c.revoke(&secret("down"), hint).await,
        Err(ProviderError::Unavailable(_))
    ));
    let no_endpoint =
        HttpProviderClient::new(&format!("{base}/token"), CLIENT_ID, secret(CLIENT_SECRET))
            .unwrap();
    assert_eq!(
        no_endpoint.revoke(&secret("rt-1"), hint).await.unwrap(),
        RevokeOutcome::NotSupported
    );
}

// --- The connect flow and the guard -------------------------------------------------------

/// A clock the test moves.
#[derive(Default)]
struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(T0 + self.0.load(Ordering::SeqCst))
    }
}

/// Counts `Used` events.
#[derive(Default)]
struct Uses(AtomicUsize);

impl VaultObserver for Uses {
    fn record(&self, event: &VaultEvent<'_>) -> Result<(), String> {
        if matches!(event, VaultEvent::Used { .. }) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Tools: `notes_tool` and `sneaky` get the notes credential, `denied` too but policy refuses
/// it, `plain` gets none.
#[derive(Clone, Default)]
struct Tools {
    ran: Arc<AtomicUsize>,
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object"}).as_object().unwrap().clone();
        Ok(ListToolsResult::with_all_items(
            ["notes_tool", "sneaky", "plain", "denied"]
                .into_iter()
                .map(|n| Tool::new(n, "a tool", schema.clone()))
                .collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.ran.fetch_add(1, Ordering::SeqCst);
        let credential = ema_server::rmcp::tool_credential(&context);
        let text = match (request.name.as_ref(), credential) {
            (_, None) => "no credential".to_owned(),
            ("sneaky", Some(c)) => match c.for_provider("github") {
                Ok(_) => "got github".to_owned(),
                Err(refused) => refused.to_string(),
            },
            (_, Some(c)) => {
                let cred = c.for_provider("notes").unwrap();
                // Proves the tool holds the right secret without sending it out.
                format!("notes credential of {} bytes", cred.secret().len())
            }
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

struct AllowButDenied;

impl ToolCallAuthorizer for AllowButDenied {
    fn authorize<'a>(
        &'a self,
        _: &'a AuthzPrincipal,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Decision> {
        let d = if call.tool == "denied" {
            Decision::deny_because("not this one")
        } else {
            Decision::allow(vec!["all".into()], Vec::new())
        };
        Box::pin(async move { d })
    }

    fn visible_tools<'a>(
        &'a self,
        _: &'a AuthzPrincipal,
        _: Option<&'a SessionId>,
        tools: &'a [ToolDefinition],
    ) -> BoxFuture<'a, Vec<bool>> {
        Box::pin(async move { vec![true; tools.len()] })
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
            UnixTime::from_secs(T0),
        )
        .unwrap();
    Principal::new(claims)
}

struct World {
    mcp: Router,
    callback: Router,
    vault: Arc<dyn CredentialVault>,
    clock: Arc<TestClock>,
    uses: Arc<Uses>,
    tools: Tools,
    mock: Mock,
}

async fn world() -> World {
    let mock_state = Mock::default();
    let base = mock(&mock_state).await;
    let clock = Arc::new(TestClock::default());
    let uses = Arc::new(Uses::default());
    let notes = ProviderId::new("notes").unwrap();
    let github = ProviderId::new("github").unwrap();
    let notes_client = Arc::new(client(&base).with_clock(clock.clone()));
    let github_client = Arc::new(client(&base).with_clock(clock.clone()));
    let vault: Arc<dyn CredentialVault> = Arc::new(
        Vault::builder(MemoryStore::new())
            .provider(notes.clone(), notes_client.clone())
            .provider(github.clone(), github_client.clone())
            .clock(clock.clone())
            .observer(uses.clone())
            .build(),
    );
    let connector = Arc::new(
        Connector::new(
            vault.clone(),
            ConnectStates::new(600, 100),
            "http://127.0.0.1:7000",
        )
        .unwrap()
        .with_clock(clock.clone())
        .with_provider(
            ConnectProvider::new(
                notes.clone(),
                "https://notes.example/authorize",
                notes_client,
            )
            .unwrap()
            .with_scopes(["notes.read"])
            .with_issuer("https://notes.example"),
        )
        .with_provider(
            ConnectProvider::new(
                github.clone(),
                "https://github.example/authorize",
                github_client,
            )
            .unwrap(),
        ),
    );
    let credentials = ToolCredentials::new(connector.clone())
        .tool("notes_tool", notes.clone())
        .tool("sneaky", notes.clone())
        .tool("denied", notes);
    let tools = Tools::default();
    let inner = tools.clone();
    let authorizer: Arc<dyn ToolCallAuthorizer> = Arc::new(AllowButDenied);
    let service = StreamableHttpService::new(
        move || {
            Ok(Guarded::new(inner.clone(), RESOURCE, authorizer.clone())
                .with_vault(credentials.clone()))
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let mcp = Router::new()
        .nest_service("/mcp", service)
        .layer(axum::Extension(principal()));
    World {
        mcp,
        callback: connector.router(),
        vault,
        clock,
        uses,
        tools,
        mock: mock_state,
    }
}

async fn post(app: &Router, session: Option<&str>, body: Value) -> (Option<String>, Option<Value>) {
    let mut req = http::Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(session) = session {
        req = req
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25");
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
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

/// Opens an MCP session whose client declares URL-mode elicitation.
async fn open(app: &Router) -> String {
    open_with(app, json!({"elicitation":{"url":{}}})).await
}

/// Opens an MCP session whose client declares `capabilities` at `initialize`.
async fn open_with(app: &Router, capabilities: Value) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":capabilities,
        "clientInfo":{"name":"t","version":"1"}}});
    let (session, _) = post(app, None, init).await;
    let session = session.unwrap();
    post(
        app,
        Some(&session),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    session
}

async fn call(app: &Router, session: &str, tool: &str) -> Value {
    let (_, reply) = post(
        app,
        Some(session),
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name": tool, "arguments": {}}}),
    )
    .await;
    reply.unwrap()
}

/// GETs a callback URL path+query; the status and the page.
async fn get(app: &Router, path_and_query: &str) -> (u16, String) {
    let resp = app
        .clone()
        .oneshot(
            http::Request::get(path_and_query)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The elicitation URL's query parameters.
fn elicited(reply: &Value) -> HashMap<String, String> {
    assert_eq!(reply["error"]["code"], -32042, "{reply}");
    let elicitation = &reply["error"]["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    assert!(!elicitation["elicitationId"].as_str().unwrap().is_empty());
    let url = url::Url::parse(elicitation["url"].as_str().unwrap()).unwrap();
    url.query_pairs().into_owned().collect()
}

/// The connect link's query parameters, from the tool error a client without URL-mode
/// elicitation gets instead of `-32042`.
fn linked(reply: &Value) -> HashMap<String, String> {
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("This tool needs your notes account")
            && text
                .contains("Open this link in a browser to connect it, then call the tool again: "),
        "{text}"
    );
    let (_, link) = text.rsplit_once("call the tool again: ").unwrap();
    let url = url::Url::parse(link).unwrap();
    assert_eq!(
        url.as_str().split('?').next(),
        Some("https://notes.example/authorize")
    );
    url.query_pairs().into_owned().collect()
}

fn pkce(verifier: &str) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn callback_path(provider: &str, state: &str, extra: &str) -> String {
    format!("/connect/{provider}/callback?code=good-code&state={state}{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconnected_user_is_asked_to_connect_and_then_the_tool_gets_the_credential() {
    let w = world().await;
    let session = open(&w.mcp).await;
    let owner = owner_of(&principal()).unwrap();

    // Not connected: a URL elicitation, the tool does not run.
    let reply = call(&w.mcp, &session, "notes_tool").await;
    let query = elicited(&reply);
    assert_eq!(w.tools.ran.load(Ordering::SeqCst), 0);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(
        query["redirect_uri"],
        "http://127.0.0.1:7000/connect/notes/callback"
    );
    assert_eq!(query["scope"], "notes.read");
    assert_eq!(query["code_challenge_method"], "S256");
    let state = query["state"].clone();

    // The callback with the right issuer: stored; the verifier sent matches the challenge.
    let (status, page) = get(
        &w.callback,
        &callback_path("notes", &state, "&iss=https%3A%2F%2Fnotes.example"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("connected"));
    assert!(!page.contains(ACCESS) && !page.contains("rt-1"));
    let verifier = w.mock.seen.lock().unwrap().forms[0]["code_verifier"].clone();
    assert_eq!(pkce(&verifier), query["code_challenge"]);
    assert_eq!(w.vault.list(&owner).await.unwrap().len(), 1);

    // Now the tool runs with the notes credential...
    let reply = call(&w.mcp, &session, "notes_tool").await;
    assert_eq!(
        reply["result"]["content"][0]["text"],
        format!("notes credential of {} bytes", ACCESS.len())
    );
    assert!(!reply.to_string().contains(ACCESS));
    // ...and a tool configured for notes cannot get github's.
    let reply = call(&w.mcp, &session, "sneaky").await;
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("`notes` only, not `github`"), "{text}");
    // A tool with no provider gets nothing; a denied call never reaches the vault.
    let uses = w.uses.0.load(Ordering::SeqCst);
    let reply = call(&w.mcp, &session, "plain").await;
    assert_eq!(reply["result"]["content"][0]["text"], "no credential");
    let reply = call(&w.mcp, &session, "denied").await;
    assert_eq!(reply["result"]["isError"], true);
    assert_eq!(w.uses.0.load(Ordering::SeqCst), uses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_url_elicitation_gets_the_connect_link_as_a_tool_error() {
    let w = world().await;
    let owner = owner_of(&principal()).unwrap();
    // No elicitation at all, and form mode only (`{}` is form mode, MCP 2025-11-25).
    for capabilities in [
        json!({}),
        json!({"elicitation":{}}),
        json!({"elicitation":{"form":{}}}),
    ] {
        let session = open_with(&w.mcp, capabilities.clone()).await;
        let reply = call(&w.mcp, &session, "notes_tool").await;
        let query = linked(&reply);
        assert_eq!(query["response_type"], "code", "{capabilities}");
        assert_eq!(query["client_id"], CLIENT_ID);
        assert_eq!(
            query["redirect_uri"],
            "http://127.0.0.1:7000/connect/notes/callback"
        );
        assert!(!query["state"].is_empty());
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["code_challenge"].len(), 43);
        // The tool did not run, nothing was stored or used.
        assert_eq!(w.tools.ran.load(Ordering::SeqCst), 0);
        assert_eq!(w.uses.0.load(Ordering::SeqCst), 0);
        assert!(w.vault.list(&owner).await.unwrap().is_empty());
    }
    // Positive control: a client that declared URL mode, in the same world, gets `-32042`.
    let declared = open(&w.mcp).await;
    let reply = call(&w.mcp, &declared, "notes_tool").await;
    let query = elicited(&reply);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(w.tools.ran.load(Ordering::SeqCst), 0);

    // The link is a real connect: its callback stores the credential (the verifier matches
    // the challenge), and the same call from the same client now runs.
    let session = open_with(&w.mcp, json!({})).await;
    let query = linked(&call(&w.mcp, &session, "notes_tool").await);
    let (status, page) = get(
        &w.callback,
        &callback_path("notes", &query["state"], "&iss=https%3A%2F%2Fnotes.example"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let verifier = w.mock.seen.lock().unwrap().forms[0]["code_verifier"].clone();
    assert_eq!(pkce(&verifier), query["code_challenge"]);
    let reply = call(&w.mcp, &session, "notes_tool").await;
    assert_eq!(
        reply["result"]["content"][0]["text"],
        format!("notes credential of {} bytes", ACCESS.len())
    );
    assert_eq!(w.tools.ran.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_asks_to_connect_again() {
    let w = world().await;
    let session = open(&w.mcp).await;
    let owner = owner_of(&principal()).unwrap();
    let key = owner.at(ProviderId::new("notes").unwrap());
    let expiring = TokenSet::bearer(secret("at-old"))
        .with_expires_at(UnixTime::from_secs(T0 + 10))
        .with_refresh_token(secret("bad-rt"));
    w.vault
        .store(&key, Credential::OAuth(expiring), StoreSource::Connect)
        .await
        .unwrap();
    let reply = call(&w.mcp, &session, "notes_tool").await;
    elicited(&reply);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connect it again")
    );
    assert_eq!(w.tools.ran.load(Ordering::SeqCst), 0);
    // A client without URL-mode elicitation is told the same in a tool error with the link.
    let plain = open_with(&w.mcp, json!({})).await;
    let reply = call(&w.mcp, &plain, "notes_tool").await;
    let query = linked(&reply);
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(!query["state"].is_empty());
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("connect it again"), "{text}");
    assert_eq!(w.tools.ran.load(Ordering::SeqCst), 0);
    // Positive control: a refresh token the provider accepts, and the call runs.
    let expiring = TokenSet::bearer(secret("at-old"))
        .with_expires_at(UnixTime::from_secs(T0 + 10))
        .with_refresh_token(secret("good-rt"));
    w.vault
        .store(&key, Credential::OAuth(expiring), StoreSource::Connect)
        .await
        .unwrap();
    let reply = call(&w.mcp, &session, "notes_tool").await;
    assert_eq!(
        reply["result"]["content"][0]["text"],
        "notes credential of 4 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_states_at_the_callback_store_nothing() {
    let w = world().await;
    let owner = owner_of(&principal()).unwrap();
    // Each state comes from a call's URL elicitation (`Connector::begin` behind the guard).
    let session = open(&w.mcp).await;
    let state_of = |reply: Value| elicited(&reply)["state"].clone();
    let iss = "&iss=https%3A%2F%2Fnotes.example";
    let stored = || async { w.vault.list(&owner).await.unwrap().len() };

    // Unknown state, missing state.
    let (status, page) = get(&w.callback, &callback_path("notes", "made-up", iss)).await;
    assert_eq!(status, 400);
    assert!(page.contains("unknown or was already used"));
    let (status, _) = get(&w.callback, "/connect/notes/callback?code=good-code").await;
    assert_eq!(status, 400);
    // A notes state presented at github's callback: refused, and spent.
    let state = state_of(call(&w.mcp, &session, "notes_tool").await);
    let (status, page) = get(&w.callback, &callback_path("github", &state, "")).await;
    assert_eq!(status, 400);
    assert!(page.contains("another provider"));
    let (status, _) = get(&w.callback, &callback_path("notes", &state, iss)).await;
    assert_eq!(status, 400);
    // Expired.
    let state = state_of(call(&w.mcp, &session, "notes_tool").await);
    w.clock.0.store(601, Ordering::SeqCst);
    let (status, page) = get(&w.callback, &callback_path("notes", &state, iss)).await;
    assert_eq!(status, 400);
    assert!(page.contains("expired"));
    // Another issuer (RFC 9207).
    let state = state_of(call(&w.mcp, &session, "notes_tool").await);
    let (status, _) = get(
        &w.callback,
        &callback_path("notes", &state, "&iss=https%3A%2F%2Fevil.example"),
    )
    .await;
    assert_eq!(status, 400);
    // The provider refused.
    let state = state_of(call(&w.mcp, &session, "notes_tool").await);
    let (status, _) = get(
        &w.callback,
        &format!("/connect/notes/callback?error=access_denied&state={state}{iss}"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(stored().await, 0);

    // Positive control, then the same callback replayed.
    let state = state_of(call(&w.mcp, &session, "notes_tool").await);
    let path = callback_path("notes", &state, iss);
    let (status, _) = get(&w.callback, &path).await;
    assert_eq!(status, 200);
    assert_eq!(stored().await, 1);
    w.vault
        .revoke(&owner.at(ProviderId::new("notes").unwrap()))
        .await
        .unwrap();
    let (status, page) = get(&w.callback, &path).await;
    assert_eq!(status, 400);
    assert!(page.contains("already used"));
    assert_eq!(stored().await, 0);
}
