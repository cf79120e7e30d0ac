//! The bearer layer at HTTP level: tokens from the `Authorization` header only (RS-5, D-25),
//! scopes per MCP method, per tool and per batch (RS-6, D-20), the challenge (RS-1), and the
//! validator's algorithm and leeway knobs (D-26, D-7). Every refusal has its positive control.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use ema_grant::AccessTokenIssuer;
use ema_id_jag::{ClientId, Issuer, Resource, ScopeSet};
use ema_jose::{Algorithm, AlgorithmSet, FixedClock, KeyRing, SigningKey, UnixTime};
use ema_server::{BearerAuth, BearerAuthBuilder, NO_SCOPES, protect};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const AS: &str = "https://auth.tasks.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const PRM_URL: &str = "https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap()
}

fn ring(alg: Algorithm) -> Arc<KeyRing> {
    Arc::new(KeyRing::new(
        SigningKey::generate(alg, Some("as-k1".into())).unwrap(),
    ))
}

/// An access token for RESOURCE with `scope` (none when `None`), issued at `iat`.
fn token(keys: &Arc<KeyRing>, scope: Option<&str>, iat: UnixTime) -> String {
    let issuer = AccessTokenIssuer::new(Issuer::new(AS), keys.clone());
    let mut claims = issuer
        .claims(
            "u-17".into(),
            Resource::new(RESOURCE),
            ClientId::new("tc_5f2a91"),
            iat,
        )
        .unwrap();
    claims.scope = scope.map(scopes);
    issuer.sign(&claims).unwrap()
}

/// The layer for RESOURCE, trusting `keys` for AS, at the fixed clock.
fn builder(keys: &Arc<KeyRing>) -> BearerAuthBuilder {
    BearerAuth::builder(RESOURCE, AS)
        .jwks(keys.jwks())
        .clock(Arc::new(FixedClock(NOW)))
}

fn app(auth: BearerAuthBuilder) -> Router {
    let routes = Router::new().route("/mcp", any(|| async { "served" }));
    protect(routes, auth.build().unwrap())
}

/// The reference MCP server's rules: initialize, ping and notifications need nothing; every
/// other request tasks.read; add_task tasks.write on top.
fn mcp_rules(b: BearerAuthBuilder) -> BearerAuthBuilder {
    b.default_method_scopes(["tasks.read"])
        .method_scopes("initialize", NO_SCOPES)
        .method_scopes("ping", NO_SCOPES)
        .method_scopes("tools/list", ["tasks.read"])
        .tools(["whoami", "add_task"])
        .tool_scopes("add_task", ["tasks.write"])
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn rpc(bearer: Option<&str>, body: &str) -> Request<Body> {
    let mut req = Request::post("/mcp").header("content-type", "application/json");
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

fn message(method: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{}}}}"#)
}

fn tool_call(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
}

/// A 401 that is the RS-1 answer to "no token": no error code, the PRM URL.
fn assert_no_token_challenge(status: StatusCode, challenge: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{PRM_URL}\"")),
        "{challenge}"
    );
    assert!(!challenge.contains("error="), "{challenge}");
}

#[tokio::test]
async fn rs5_query_token_is_a_request_without_token() {
    let keys = ring(Algorithm::ES256);
    let good = token(&keys, Some("tasks.read"), NOW);
    let app = app(mcp_rules(builder(&keys)));
    // D-25: a valid token in the query is never read: 401 with the challenge, not 400.
    for method in ["GET", "POST", "DELETE"] {
        let req = Request::builder()
            .method(method)
            .uri(format!("/mcp?access_token={good}"))
            .header("content-type", "application/json")
            .body(Body::from(message("ping")))
            .unwrap();
        let (status, challenge, _) = send(&app, req).await;
        assert_no_token_challenge(status, &challenge);
    }
    // Positive control: the same token in the header is served...
    let (status, _, body) = send(&app, rpc(Some(&good), &message("ping"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "served"));
    // ...and a query token beside it is not even looked at.
    let req = Request::post("/mcp?access_token=not.a.token&x=1")
        .header("authorization", format!("Bearer {good}"))
        .body(Body::from(message("ping")))
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn rs5_form_body_token_is_a_request_without_token() {
    let keys = ring(Algorithm::ES256);
    let good = token(&keys, Some("tasks.read"), NOW);
    // With and without body-reading rules, a form-encoded token is no token.
    let plain = builder(&keys);
    for app in [app(plain), app(mcp_rules(builder(&keys)))] {
        let form = || {
            Request::post("/mcp")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("access_token={good}")))
                .unwrap()
        };
        let (status, challenge, _) = send(&app, form()).await;
        assert_no_token_challenge(status, &challenge);
        // Positive control: the header carries it.
        let mut req = form();
        req.headers_mut()
            .insert("authorization", format!("Bearer {good}").parse().unwrap());
        assert_eq!(send(&app, req).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn rs1_no_token_challenge_names_the_scopes_the_request_needs() {
    let keys = ring(Algorithm::ES256);
    let app = app(mcp_rules(builder(&keys)));
    let (status, challenge, _) = send(&app, rpc(None, &tool_call("add_task"))).await;
    assert_no_token_challenge(status, &challenge);
    assert!(
        challenge.contains("scope=\"tasks.read tasks.write\""),
        "{challenge}"
    );
    // `initialize` needs no scope itself; the challenge names the default method scopes, the
    // least a session needs for routine calls, so the client starts with `tasks.read` and
    // steps up for writes (CL-10) instead of asking for every supported scope.
    let (status, challenge, _) = send(&app, rpc(None, &message("initialize"))).await;
    assert_no_token_challenge(status, &challenge);
    assert!(challenge.contains("scope=\"tasks.read\""), "{challenge}");
    // Control: without default method scopes, `initialize`'s challenge names no scope.
    let plain = self::app(builder(&keys).method_scopes("initialize", NO_SCOPES));
    let (status, challenge, _) = send(&plain, rpc(None, &message("initialize"))).await;
    assert_no_token_challenge(status, &challenge);
    assert!(!challenge.contains("scope="), "{challenge}");
}

#[tokio::test]
async fn d20_token_without_scope_can_initialize() {
    let keys = ring(Algorithm::ES256);
    let bare = token(&keys, None, NOW);
    let read = token(&keys, Some("tasks.read"), NOW);
    let app = app(mcp_rules(builder(&keys)));
    // A valid token with no scope at all starts a session, pings and notifies...
    for body in [
        message("initialize"),
        message("ping"),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        // A response to a server request carries no method.
        r#"{"jsonrpc":"2.0","id":9,"result":{}}"#.to_owned(),
    ] {
        let (status, _, served) = send(&app, rpc(Some(&bare), &body)).await;
        assert_eq!(
            (status, served.as_str()),
            (StatusCode::OK, "served"),
            "{body}"
        );
    }
    // ...and is told exactly what `tools/list` needs (RS-6).
    let (status, challenge, body) = send(&app, rpc(Some(&bare), &message("tools/list"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"tasks.read\""), "{challenge}");
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    assert!(body.contains("insufficient_scope"));
    // Positive control: tasks.read lists.
    let (status, _, _) = send(&app, rpc(Some(&read), &message("tools/list"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn rs6_methods_without_an_entry_need_the_default() {
    let keys = ring(Algorithm::ES256);
    let bare = token(&keys, None, NOW);
    let read = token(&keys, Some("tasks.read"), NOW);
    let app = app(mcp_rules(builder(&keys)));
    for method in ["resources/list", "prompts/get", "no/such/method"] {
        let (status, challenge, _) = send(&app, rpc(Some(&bare), &message(method))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
        assert!(challenge.contains("scope=\"tasks.read\""), "{challenge}");
        let (status, _, _) = send(&app, rpc(Some(&read), &message(method))).await;
        assert_eq!(status, StatusCode::OK, "{method}");
    }
    // A notification without an entry needs nothing.
    let note = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}"#;
    assert_eq!(send(&app, rpc(Some(&bare), note)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn rs6_tool_calls_need_the_method_and_the_tool_scopes() {
    let keys = ring(Algorithm::ES256);
    let read = token(&keys, Some("tasks.read"), NOW);
    let write = token(&keys, Some("tasks.read tasks.write"), NOW);
    let app = app(mcp_rules(builder(&keys)));
    let (status, challenge, _) = send(&app, rpc(Some(&read), &tool_call("add_task"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.contains("scope=\"tasks.read tasks.write\""),
        "all the scopes the call needs: {challenge}"
    );
    assert_eq!(
        send(&app, rpc(Some(&write), &tool_call("add_task")))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, rpc(Some(&read), &tool_call("whoami"))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rs6_a_batch_needs_the_union_of_its_messages() {
    let keys = ring(Algorithm::ES256);
    let bare = token(&keys, None, NOW);
    let read = token(&keys, Some("tasks.read"), NOW);
    let write = token(&keys, Some("tasks.read tasks.write"), NOW);
    let app = app(mcp_rules(builder(&keys)));
    let free = format!("[{},{}]", message("initialize"), message("ping"));
    assert_eq!(send(&app, rpc(Some(&bare), &free)).await.0, StatusCode::OK);
    // One message needing a scope is enough to refuse the whole batch.
    let mixed = format!("[{},{}]", message("ping"), message("tools/list"));
    let (status, challenge, _) = send(&app, rpc(Some(&bare), &mixed)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.contains("scope=\"tasks.read\""), "{challenge}");
    assert_eq!(send(&app, rpc(Some(&read), &mixed)).await.0, StatusCode::OK);
    let writes = format!(
        "[{},{},{}]",
        message("tools/list"),
        tool_call("whoami"),
        tool_call("add_task")
    );
    let (status, challenge, _) = send(&app, rpc(Some(&read), &writes)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.contains("scope=\"tasks.read tasks.write\""),
        "{challenge}"
    );
    assert_eq!(
        send(&app, rpc(Some(&write), &writes)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rs6_get_and_delete_need_only_the_scopes_of_every_request() {
    let keys = ring(Algorithm::ES256);
    let bare = token(&keys, None, NOW);
    let read = token(&keys, Some("tasks.read"), NOW);
    let plain = |method: &str, token: &str| {
        Request::builder()
            .method(method)
            .uri("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    // Method rules read JSON-RPC messages; GET and DELETE carry none.
    let app_methods = app(mcp_rules(builder(&keys)));
    for method in ["GET", "DELETE"] {
        assert_eq!(
            send(&app_methods, plain(method, &bare)).await.0,
            StatusCode::OK
        );
    }
    // `require_scopes` applies to every request, these and `initialize` included.
    let every = app(builder(&keys).require_scopes(["tasks.read"]));
    for method in ["GET", "DELETE"] {
        let (status, challenge, _) = send(&every, plain(method, &bare)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
        assert!(challenge.contains("scope=\"tasks.read\""), "{challenge}");
        assert_eq!(send(&every, plain(method, &read)).await.0, StatusCode::OK);
    }
    let (status, _, _) = send(&every, rpc(Some(&bare), &message("initialize"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(&every, rpc(Some(&read), &message("initialize"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn d26_access_token_algorithms_are_configurable() {
    let es384 = ring(Algorithm::ES384);
    let good = token(&es384, Some("tasks.read"), NOW);
    let app_refusing = app(builder(&es384).algorithms(AlgorithmSet::of(&[Algorithm::ES256])));
    let (status, challenge, _) = send(&app_refusing, rpc(Some(&good), &message("ping"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // Positive control: opting in to ES384 accepts the same token.
    let app_accepting =
        app(builder(&es384).algorithms(AlgorithmSet::of(&[Algorithm::ES256, Algorithm::ES384])));
    assert_eq!(
        send(&app_accepting, rpc(Some(&good), &message("ping")))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn d7_access_token_leeway_is_configurable_and_capped() {
    let keys = ring(Algorithm::ES256);
    // Issued with the default lifetime: expired 45 s and 90 s before NOW.
    let lifetime = ema_grant::access_token::DEFAULT_ACCESS_TOKEN_LIFETIME;
    let late_45 = token(&keys, Some("tasks.read"), NOW.minus(lifetime + 45));
    let late_90 = token(&keys, Some("tasks.read"), NOW.minus(lifetime + 90));
    let with = |leeway: Option<u64>| {
        let mut b = builder(&keys).cache_capacity(0);
        if let Some(secs) = leeway {
            b = b.leeway(Duration::from_secs(secs));
        }
        app(b)
    };
    // Default 30 s: 45 s late is expired.
    let (status, challenge, _) = send(&with(None), rpc(Some(&late_45), &message("ping"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    // 60 s tolerates it (positive control)...
    assert_eq!(
        send(&with(Some(60)), rpc(Some(&late_45), &message("ping")))
            .await
            .0,
        StatusCode::OK
    );
    // ...and an hour is capped at 60 s: 90 s late stays expired; u64::MAX does not overflow.
    for huge in [3600, u64::MAX] {
        assert_eq!(
            send(&with(Some(huge)), rpc(Some(&late_90), &message("ping")))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(&with(Some(huge)), rpc(Some(&late_45), &message("ping")))
                .await
                .0,
            StatusCode::OK
        );
    }
}

/// A key source that cannot be consulted (a JWKS fetch failed and nothing is cached).
struct DownKeys;

impl ema_jose::KeySource for DownKeys {
    async fn resolve(
        &self,
        _issuer: &str,
        _kid: Option<&str>,
        _alg: Algorithm,
    ) -> Result<Arc<ema_jose::VerifyingKey>, ema_jose::KeyLookupError> {
        Err(ema_jose::KeyLookupError::Unavailable {
            reason: "jwks fetch failed".into(),
        })
    }
}

/// RFC 6750 §3.1 at HTTP level: each refusal of the layer carries one `ErrorCode`, the same in
/// the body and in the challenge (as a client parses it), and the status that code has; a
/// request without credentials carries no code (RS-1); keys that cannot be consulted are 503
/// `temporarily_unavailable` without a challenge, not an `invalid_token`.
#[tokio::test]
async fn rfc6750_bearer_refusals_carry_their_error_code() {
    use ema_metadata::{ErrorCode, find_challenge};
    let keys = ring(Algorithm::ES256);
    let app = app(mcp_rules(builder(&keys)));
    let narrow = token(&keys, Some("tasks.read"), NOW);
    let wide = token(&keys, Some("tasks.read tasks.write"), NOW);
    let add = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_task"}}"#;
    let two_headers = Request::post("/mcp")
        .header("authorization", format!("Bearer {narrow}"))
        .header("authorization", format!("Bearer {narrow}"))
        .body(Body::from(message("ping")))
        .unwrap();
    let cases: Vec<(&str, Request<Body>, Option<ErrorCode>, u16)> = vec![
        ("no token", rpc(None, &message("ping")), None, 401),
        (
            "bad token",
            rpc(Some("e30.e30.e30"), &message("ping")),
            Some(ErrorCode::InvalidToken),
            401,
        ),
        (
            "scope",
            rpc(Some(&narrow), add),
            Some(ErrorCode::InsufficientScope),
            403,
        ),
        (
            "two headers",
            two_headers,
            Some(ErrorCode::InvalidRequest),
            400,
        ),
    ];
    for (case, req, code, status) in cases {
        let (got, challenge, body) = send(&app, req).await;
        assert_eq!(got.as_u16(), status, "{case}: {body}");
        let parsed = find_challenge(&challenge, "Bearer").unwrap().unwrap();
        assert_eq!(parsed.error_code(), code, "{case}: {challenge}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let body_code = body
            .get("error")
            .map(|e| serde_json::from_value::<ErrorCode>(e.clone()).unwrap());
        assert_eq!(body_code, code, "{case}");
        if let Some(code) = code {
            assert_eq!(code.http_status(), got, "{case}");
        }
    }
    // Positive control: the wide token passes.
    let (ok, _, body) = send(&app, rpc(Some(&wide), add)).await;
    assert_eq!(ok, StatusCode::OK, "{body}");

    let app = self::app(
        BearerAuth::builder(RESOURCE, AS)
            .keys(DownKeys)
            .clock(Arc::new(FixedClock(NOW))),
    );
    let (status, challenge, body) = send(&app, rpc(Some(&wide), &message("ping"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(challenge, "");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}
