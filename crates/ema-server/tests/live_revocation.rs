//! RV-18: when the revocation mirror learns that a subject is revoked, the bearer layer ends
//! that subject's live requests, GET/SSE streams and MCP sessions, and `rmcp::Guarded` cancels
//! its running tool calls; another subject's are untouched (the positive control in each
//! test). Fixed clocks; the tests wait on events the server reports, never on sleeps.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::rmcp;
use axum::Router;
use axum::body::Body;
use axum::routing::post;
use ema_grant::AccessTokenIssuer;
use ema_grant::revocation::{LedgerMirror, MemoryLedger, RevocationKind, RevocationScope};
use ema_id_jag::{ClientId, Issuer, Resource, ScopeSet};
use ema_jose::{Algorithm, FixedClock, KeyRing, SigningKey, UnixTime};
use ema_server::authz::{
    BoxFuture, Decision, Principal as AuthzPrincipal, SessionId, ToolCall, ToolCallAuthorizer,
    ToolDefinition,
};
use ema_server::rmcp::{Guarded, close_sessions};
use ema_server::{BearerAuth, Principal, RevocationSignal};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tower::ServiceExt;

const AS: &str = "https://auth.tasks.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const ALICE: &str = "u-alice";
const BOB: &str = "u-bob";
/// A failsafe against a hung test, never a synchronisation.
const FAILSAFE: Duration = Duration::from_secs(20);

/// What the server's work reports, per subject.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Started(String),
    /// The work's future was dropped before it finished.
    Dropped(String),
    /// The request's cancellation token fired (what work spawned off the request sees).
    Cancelled(String),
    Finished(String),
}

/// Reports `Dropped` unless disarmed.
struct DropProbe {
    subject: String,
    events: mpsc::UnboundedSender<Event>,
    armed: bool,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.events.send(Event::Dropped(self.subject.clone()));
        }
    }
}

struct World {
    keys: Arc<KeyRing>,
    ledger: MemoryLedger,
    mirror: Arc<LedgerMirror>,
}

impl World {
    fn new() -> Self {
        let keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
        ));
        let ledger = MemoryLedger::new();
        let mirror = Arc::new(LedgerMirror::new());
        pollster::block_on(mirror.sync(&ledger, NOW)).unwrap();
        Self {
            keys,
            ledger,
            mirror,
        }
    }

    fn auth(&self, sessions: Option<Arc<LocalSessionManager>>) -> BearerAuth {
        let mut builder = BearerAuth::builder(RESOURCE, AS)
            .jwks(self.keys.jwks())
            .clock(Arc::new(FixedClock(NOW)))
            .revocation_mirror(self.mirror.clone());
        if let Some(sessions) = sessions {
            builder = builder.session_closer(close_sessions(sessions));
        }
        builder.build().unwrap()
    }

    fn token(&self, subject: &str, iat: UnixTime) -> String {
        let issuer = AccessTokenIssuer::new(Issuer::new(AS), self.keys.clone());
        let mut claims = issuer
            .claims(
                subject.into(),
                Resource::new(RESOURCE),
                ClientId::new("tc_1"),
                iat,
            )
            .unwrap();
        claims.scope = Some(ScopeSet::parse("tasks.read").unwrap());
        issuer.sign(&claims).unwrap()
    }

    /// The admin revokes `subject` at the AS; the mirror syncs (the tail would do the same).
    fn revoke(&self, subject: &str) {
        let local = RevocationScope::local(AS);
        self.ledger
            .revoke_subject_now(&local, subject, NOW, RevocationKind::AccountDisabled, NOW);
        pollster::block_on(self.mirror.sync(&self.ledger, NOW)).unwrap();
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let out = tokio::time::timeout(FAILSAFE, fut).await;
    assert!(out.is_ok(), "{what}: not within {FAILSAFE:?}");
    out.unwrap()
}

/// Receives events until `wanted` has been seen; returns everything received.
async fn until(events: &mut mpsc::UnboundedReceiver<Event>, wanted: &[Event]) -> Vec<Event> {
    let mut seen = Vec::new();
    within(&format!("{wanted:?}"), async {
        while !wanted.iter().all(|w| seen.contains(w)) {
            seen.push(events.recv().await.unwrap());
        }
    })
    .await;
    seen
}

// RV-18 without rmcp: a request whose response is not produced yet is dropped (its handler's
// future with it) and answered 401 "token revoked" the moment the mirror learns of the
// revocation; the same kind of request of another subject completes.
#[tokio::test]
async fn rv18_a_running_request_of_a_revoked_subject_is_dropped_and_refused() {
    let w = World::new();
    let (tx, mut events) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let app = {
        let release = release.clone();
        Router::new()
            .route(
                "/mcp",
                post(
                    move |who: Principal, signal: axum::Extension<RevocationSignal>| {
                        let tx = tx.clone();
                        let release = release.clone();
                        async move {
                            let subject = who.subject().to_owned();
                            assert!(!signal.is_revoked());
                            let mut probe = DropProbe {
                                subject: subject.clone(),
                                events: tx.clone(),
                                armed: true,
                            };
                            tx.send(Event::Started(subject.clone())).unwrap();
                            release.notified().await;
                            probe.armed = false;
                            tx.send(Event::Finished(subject.clone())).unwrap();
                            subject
                        }
                    },
                ),
            )
            .layer(w.auth(None))
    };
    let call = |token: String| {
        let app = app.clone();
        tokio::spawn(async move {
            let req = Request::post("/mcp")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from("{}"))
                .unwrap();
            let resp = ServiceExt::<Request<Body>>::oneshot(app, req)
                .await
                .map_err(|e: Infallible| e)
                .unwrap();
            let status = resp.status();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                challenge,
                String::from_utf8_lossy(&body).into_owned(),
            )
        })
    };
    let alice = call(w.token(ALICE, NOW));
    let bob = call(w.token(BOB, NOW));
    until(
        &mut events,
        &[Event::Started(ALICE.into()), Event::Started(BOB.into())],
    )
    .await;
    w.revoke(ALICE);
    let (status, challenge, body) = within("alice's answer", alice).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let challenge = challenge.unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(body.contains("token revoked"), "{body}");
    until(&mut events, &[Event::Dropped(ALICE.into())]).await;
    // Positive control: bob's request is still running, and completes when released.
    release.notify_one();
    let (status, _, body) = within("bob's answer", bob).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, BOB));
    let rest = until(&mut events, &[Event::Finished(BOB.into())]).await;
    assert!(!rest.contains(&Event::Dropped(BOB.into())), "{rest:?}");
}

// RV-18: a request whose MCP session is closed under it by the revocation gets the MCP
// service's error for a terminated session (rmcp answers 500); the bearer layer answers the
// revocation's 401 instead. Control: the same 500 for a subject that is not revoked passes
// through unchanged.
#[tokio::test]
async fn rv18_an_error_from_a_session_closed_by_the_revocation_reads_as_the_revocation() {
    let w = Arc::new(World::new());
    let app = {
        let world = w.clone();
        Router::new()
            .route(
                "/mcp",
                post(move |who: Principal| {
                    let world = world.clone();
                    async move {
                        // The revocation lands while the request is being served, and the
                        // service fails the request as rmcp does for a terminated session.
                        if who.subject() == ALICE {
                            world.revoke(ALICE);
                        }
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "session service terminated",
                        )
                    }
                }),
            )
            .layer(w.auth(None))
    };
    let call = |token: String| {
        let app = app.clone();
        async move {
            let req = Request::post("/mcp")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from("{}"))
                .unwrap();
            let resp = ServiceExt::<Request<Body>>::oneshot(app, req)
                .await
                .map_err(|e: Infallible| e)
                .unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = within("alice", call(w.token(ALICE, NOW))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("token revoked"), "{body}");
    let (status, body) = within("bob", call(w.token(BOB, NOW))).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "session service terminated"
        )
    );
}

/// A tool that runs until released, reporting its life.
#[derive(Clone)]
struct Slow {
    events: mpsc::UnboundedSender<Event>,
    release: Arc<Notify>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Slow {
    #[tool(description = "Waits until released")]
    async fn wait(&self, who: Principal, ctx: RequestContext<RoleServer>) -> String {
        let subject = who.subject().to_owned();
        let mut probe = DropProbe {
            subject: subject.clone(),
            events: self.events.clone(),
            armed: true,
        };
        // Work spawned off the call sees the request's cancellation token.
        let (ct, events, watched) = (ctx.ct.clone(), self.events.clone(), subject.clone());
        tokio::spawn(async move {
            ct.cancelled().await;
            let _ = events.send(Event::Cancelled(watched));
        });
        self.events.send(Event::Started(subject.clone())).unwrap();
        self.release.notified().await;
        probe.armed = false;
        // A notification on the session's standalone (GET) stream.
        ctx.peer.notify_tool_list_changed().await.unwrap();
        self.events.send(Event::Finished(subject.clone())).unwrap();
        format!("released {subject}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Slow {}

/// Allows every call.
struct AllowAll;

impl ToolCallAuthorizer for AllowAll {
    fn authorize<'a>(&'a self, _: &'a AuthzPrincipal, _: &'a ToolCall) -> BoxFuture<'a, Decision> {
        Box::pin(async { Decision::allow(Vec::new(), Vec::new()) })
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

/// An MCP client over HTTP with its session.
struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
    session: String,
}

impl Client {
    fn post(&self, message: Value) -> reqwest::RequestBuilder {
        self.http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {}", self.token))
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(message.to_string())
    }

    async fn connect(url: &str, token: String) -> Self {
        let http = reqwest::Client::new();
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "rv18", "version": "1"}}});
        let resp = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {token}"))
            .body(init.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let session = resp.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(resp.text().await.unwrap().contains("protocolVersion"));
        let client = Self {
            http,
            url: url.to_owned(),
            token,
            session,
        };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let resp = client.post(initialized).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        client
    }

    /// Opens the session's standalone GET/SSE stream.
    async fn open_stream(&self) -> reqwest::Response {
        let resp = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("authorization", format!("Bearer {}", self.token))
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-06-18")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp
    }

    /// Calls `wait` on a task: the whole body of its SSE answer, once it ends.
    fn call_wait(&self) -> tokio::task::JoinHandle<(StatusCode, String)> {
        let message = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "wait", "arguments": {}}});
        let req = self.post(message);
        tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.text().await.unwrap_or_default())
        })
    }
}

/// The JSON-RPC messages in the `data:` events of an SSE body (events without data skipped).
fn sse_messages(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            serde_json::from_str(&data.join("\n")).ok()
        })
        .collect()
}

/// Reads `stream` until it ends (`None`) or carries `needle` (`Some(text so far)`).
async fn read_stream(stream: &mut reqwest::Response, needle: &str) -> Option<String> {
    let mut text = String::new();
    loop {
        match stream.chunk().await {
            Ok(Some(chunk)) => {
                text.push_str(&String::from_utf8_lossy(&chunk));
                if text.contains(needle) {
                    return Some(text);
                }
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

// RV-18 with rmcp over loopback TCP: alice's running tool call (behind `Guarded`) is
// cancelled, her GET/SSE stream and her tool call's POST/SSE stream end, and her MCP session
// is closed, when the mirror learns she is revoked; bob's call, stream and session are
// untouched and keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rv18_revocation_cancels_tool_calls_and_closes_streams_and_sessions() {
    let w = World::new();
    let (tx, mut events) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let sessions = Arc::new(LocalSessionManager::default());
    let slow = Slow {
        events: tx,
        release: release.clone(),
        tool_router: Slow::tool_router(),
    };
    let authorizer: Arc<dyn ToolCallAuthorizer> = Arc::new(AllowAll);
    let mcp = StreamableHttpService::new(
        move || Ok(Guarded::new(slow.clone(), RESOURCE, authorizer.clone())),
        sessions.clone(),
        StreamableHttpServerConfig::default().with_sse_keep_alive(None),
    );
    let app = Router::new()
        .nest_service("/mcp", mcp)
        .layer(w.auth(Some(sessions.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let alice = Client::connect(&url, w.token(ALICE, NOW)).await;
    let bob = Client::connect(&url, w.token(BOB, NOW)).await;
    let mut alice_stream = alice.open_stream().await;
    let mut bob_stream = bob.open_stream().await;
    let alice_call = alice.call_wait();
    let bob_call = bob.call_wait();
    until(
        &mut events,
        &[Event::Started(ALICE.into()), Event::Started(BOB.into())],
    )
    .await;

    w.revoke(ALICE);
    // Alice's tool call: its future dropped and its cancellation token fired.
    let seen = until(
        &mut events,
        &[Event::Dropped(ALICE.into()), Event::Cancelled(ALICE.into())],
    )
    .await;
    assert!(
        !seen
            .iter()
            .any(|e| e == &Event::Dropped(BOB.into()) || e == &Event::Cancelled(BOB.into())),
        "{seen:?}"
    );
    // Her GET/SSE stream ends, and so does her call's POST/SSE answer, without a result.
    assert_eq!(
        within(
            "alice's stream",
            read_stream(&mut alice_stream, "list_changed")
        )
        .await,
        None
    );
    // Her call's stream ends with an answer to it: the JSON-RPC error for a request cut by the
    // revocation, not the tool's result, so her client is not left waiting (RV-18).
    let (status, body) = within("alice's call", alice_call).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("released"), "{body}");
    let answers = sse_messages(&body);
    assert_eq!(answers.len(), 1, "{body}");
    assert_eq!(answers[0]["id"], 7, "{body}");
    assert_eq!(
        answers[0]["error"]["code"],
        ema_server::ACCESS_REVOKED_CODE,
        "{body}"
    );
    // Her session is closed (rmcp forgets it): even a fresh token of hers, issued after the
    // watermark, gets the unknown-session answer on it.
    let fresh = Client {
        token: w.token(ALICE, NOW.plus(1)),
        ..alice
    };
    within("alice's session closed", async {
        loop {
            let list = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"});
            let status = fresh.post(list).send().await.unwrap().status();
            if status == StatusCode::NOT_FOUND {
                break;
            }
            assert_eq!(status, StatusCode::OK);
            tokio::task::yield_now().await;
        }
    })
    .await;
    // The old token itself is refused (RV-15).
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"});
    let old = Client {
        token: w.token(ALICE, NOW),
        ..fresh
    };
    assert_eq!(
        old.post(list).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // Positive control: bob's call runs on, completes when released, and its notification
    // arrives on his still-open GET/SSE stream; his session still answers.
    release.notify_one();
    let (status, body) = within("bob's call", bob_call).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("released u-bob"), "{body}");
    let text = within("bob's stream", read_stream(&mut bob_stream, "list_changed")).await;
    assert!(text.is_some(), "bob's stream ended");
    let list = json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list"});
    let resp = bob.post(list).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("\"wait\""));
    let rest = until(&mut events, &[Event::Finished(BOB.into())]).await;
    assert!(!rest.contains(&Event::Dropped(BOB.into())), "{rest:?}");
}
