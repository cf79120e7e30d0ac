//! The cost of `ema_server::rmcp::Guarded` on one `tools/call` of an rmcp Streamable HTTP
//! server, in process (`tower::ServiceExt::oneshot` on a current-thread runtime, no sockets):
//! the same handler unguarded and guarded by an authorizer that allows everything and inspects
//! nothing, so that the difference is the guard itself (principal conversion, the call's
//! arguments, the decision, the decision log, the result's round trip through inspection).
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
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
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use tower::ServiceExt as _;

const RESOURCE: &str = "http://127.0.0.1/mcp";

#[derive(Clone)]
struct Echo {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Echo {
    #[tool(description = "Who am I?", annotations(read_only_hint = true))]
    fn whoami(&self, who: Principal) -> String {
        who.subject().to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Echo {}

/// Allows every call at once: what is measured is the guard, not a policy engine.
struct AllowAll;

impl ToolCallAuthorizer for AllowAll {
    fn authorize<'a>(&'a self, _: &'a AuthzPrincipal, _: &'a ToolCall) -> BoxFuture<'a, Decision> {
        Box::pin(async { Decision::allow(vec!["all".into()], Vec::new()) })
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
    let mut claims = issuer
        .claims(
            "u-17".into(),
            Resource::new(RESOURCE),
            ClientId::new("tc_5f2a91"),
            UnixTime::from_secs(1_767_225_600),
        )
        .unwrap();
    claims.groups = vec!["eng".into()];
    Principal::new(claims)
}

fn app(guarded: bool) -> Router {
    let echo = || Echo {
        tool_router: Echo::tool_router(),
    };
    let sessions = Arc::new(LocalSessionManager::default());
    let config = StreamableHttpServerConfig::default();
    let router = if guarded {
        let authorizer: Arc<dyn ToolCallAuthorizer> = Arc::new(AllowAll);
        Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(
                move || Ok(Guarded::new(echo(), RESOURCE, authorizer.clone())),
                sessions,
                config,
            ),
        )
    } else {
        Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(move || Ok(echo()), sessions, config),
        )
    };
    // The principal as the bearer layer leaves it.
    router.layer(axum::Extension(principal()))
}

fn request(session: Option<&str>, body: &'static str) -> http::Request<Body> {
    let mut req = http::Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(session) = session {
        req = req
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    req.body(Body::from(body)).unwrap()
}

/// Opens a session; returns its id.
async fn open(app: &Router) -> String {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}"#;
    let resp = app.clone().oneshot(request(None, init)).await.unwrap();
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    resp.into_body().collect().await.unwrap();
    let done = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let resp = app
        .clone()
        .oneshot(request(Some(&session), done))
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();
    session
}

const CALL: &str =
    r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;

async fn call(app: &Router, session: &str) -> usize {
    let resp = app
        .clone()
        .oneshot(request(Some(session), CALL))
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    body.len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("rmcp_tools_call");
    for (name, guarded) in [("unguarded", false), ("guarded", true)] {
        let app = app(guarded);
        let session = rt.block_on(open(&app));
        let body = rt.block_on(async {
            let resp = app
                .clone()
                .oneshot(request(Some(&session), CALL))
                .await
                .unwrap();
            resp.into_body().collect().await.unwrap().to_bytes()
        });
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("u-17") && !body.contains(r#""isError":true"#),
            "{body}"
        );
        group.bench_function(name, |b| b.iter(|| rt.block_on(call(&app, &session))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
