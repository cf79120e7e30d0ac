//! The `rmcp` feature in process: an rmcp tool taking a `Principal` argument behind the bearer
//! layer gets the verified caller (RS-7); without the layer the call fails and is never served
//! anonymously. Drives the adopter's guide example (`examples/protect_rmcp.rs`) through
//! `tower::ServiceExt::oneshot`, speaking Streamable HTTP by hand.
#![cfg(feature = "rmcp")]
#![allow(clippy::unwrap_used, reason = "test helpers may unwrap")]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use ema_grant::AccessTokenIssuer;
use ema_id_jag::{ClientId, Issuer, Resource, ScopeSet};
use ema_jose::{Algorithm, FixedClock, KeyRing, SigningKey, UnixTime};
use ema_server::BearerAuth;
use http::Request;
use http_body_util::BodyExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};
use tower::ServiceExt;

#[path = "../examples/protect_rmcp.rs"]
#[allow(
    dead_code,
    reason = "the example's `main` and `app` are not run here; its tools are"
)]
mod guide;

const AS: &str = "https://auth.tasks.example";
const RESOURCE: &str = "http://127.0.0.1/mcp";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

/// A tool that serves callers with and without a principal, reading it with
/// `ema_server::rmcp::principal` from its request context.
#[derive(Clone)]
struct Greeter {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Greeter {
    #[tool(description = "Greets the caller by name when the bearer layer verified one")]
    fn whoami(&self, ctx: RequestContext<RoleServer>) -> String {
        match ema_server::rmcp::principal(&ctx) {
            Some(who) => format!("hello {} via {}", who.subject(), who.client_id()),
            None => "hello stranger".to_owned(),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Greeter {}

fn mcp() -> Router {
    serve(guide::Notes::new)
}

fn greeter() -> Router {
    serve(|| Greeter {
        tool_router: Greeter::tool_router(),
    })
}

fn serve<S: ServerHandler + Send + 'static>(
    factory: impl Fn() -> S + Send + Sync + Clone + 'static,
) -> Router {
    let service = StreamableHttpService::new(
        move || Ok(factory()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    Router::new().nest_service("/mcp", service)
}

/// POSTs one JSON-RPC message; returns the status, the session id and the body.
async fn post(
    app: &Router,
    token: Option<&str>,
    session: Option<&str>,
    body: &str,
) -> (u16, Option<String>, String) {
    let mut req = Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some(session) = session {
        req = req
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, session, String::from_utf8_lossy(&body).into_owned())
}

/// Initializes a session and calls `whoami`; returns the call's response body.
async fn whoami(app: &Router, token: Option<&str>) -> String {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (status, session, body) = post(app, token, None, init).await;
    assert_eq!(status, 200, "{body}");
    let session = session.unwrap();
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _, _) = post(app, token, Some(&session), initialized).await;
    assert_eq!(status, 202);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
    let (status, _, body) = post(app, token, Some(&session), call).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// An access token for `u-17` via `tc_5f2a91` with `tasks.read`, and a layer accepting it.
fn token_and_layer() -> (String, BearerAuth) {
    let keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let issuer = AccessTokenIssuer::new(Issuer::new(AS), keys.clone());
    let mut claims = issuer
        .claims(
            "u-17".into(),
            Resource::new(RESOURCE),
            ClientId::new("tc_5f2a91"),
            NOW,
        )
        .unwrap();
    claims.scope = Some(ScopeSet::parse("tasks.read").unwrap());
    let token = issuer.sign(&claims).unwrap();
    let auth = BearerAuth::builder(RESOURCE, AS)
        .jwks(keys.jwks())
        .clock(Arc::new(FixedClock(NOW)))
        .build()
        .unwrap();
    (token, auth)
}

#[tokio::test]
async fn rs7_rmcp_tool_gets_the_principal_behind_the_layer() {
    let (token, auth) = token_and_layer();
    let body = whoami(&mcp().layer(auth), Some(&token)).await;
    assert!(body.contains("u-17 via tc_5f2a91"), "{body}");
    assert!(!body.contains("\"isError\":true"), "{body}");
}

#[tokio::test]
async fn rs1_rmcp_tool_without_the_layer_is_refused_not_anonymous() {
    let body = whoami(&mcp(), None).await;
    assert!(
        body.contains("the bearer layer did not run"),
        "an error naming the missing layer: {body}"
    );
    assert!(!body.contains(" via "), "{body}");
}

#[tokio::test]
async fn rs7_rmcp_principal_reads_the_principal_from_the_request_context() {
    let (token, auth) = token_and_layer();
    let body = whoami(&greeter().layer(auth), Some(&token)).await;
    assert!(body.contains("hello u-17 via tc_5f2a91"), "{body}");
    // Control: the same tool without the layer sees no principal.
    let body = whoami(&greeter(), None).await;
    assert!(body.contains("hello stranger"), "{body}");
    assert!(!body.contains("u-17"), "{body}");
}
