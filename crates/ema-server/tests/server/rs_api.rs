//! The server API of issue 10: the `Principal` extractor (present, absent, optional), the
//! builder's refusals (tool scopes fail closed, keys, scopes, URLs), the layer on a nested
//! service and on a plain tower stack, default tool scopes, and the derived RFC 9728 metadata
//! (RS-1, RS-6, RS-7, MD-6, MD-8). Every refusal has its positive control.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use ema_grant::AccessTokenIssuer;
use ema_id_jag::{ClientId, Issuer, Resource, ScopeSet};
use ema_jose::{Algorithm, FixedClock, KeyRing, SigningKey, StaticKeySource, UnixTime};
use ema_server::{
    BearerAuth, BearerAuthBuilder, BearerBuildError, FetchPolicy, Principal,
    ProtectedResourceMetadata,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

const AS: &str = "https://auth.tasks.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const PRM_URL: &str = "https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

fn ring() -> Arc<KeyRing> {
    Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ))
}

fn token(keys: &Arc<KeyRing>, scope: &str) -> String {
    let issuer = AccessTokenIssuer::new(Issuer::new(AS), keys.clone());
    let mut claims = issuer
        .claims(
            "u-17".into(),
            Resource::new(RESOURCE),
            ClientId::new("tc_5f2a91"),
            NOW,
        )
        .unwrap();
    claims.scope = Some(ScopeSet::parse(scope).unwrap());
    claims.groups = vec!["eng".into()];
    claims.tenant = Some("acme".into());
    issuer.sign(&claims).unwrap()
}

fn builder(keys: &Arc<KeyRing>) -> BearerAuthBuilder {
    BearerAuth::builder(RESOURCE, AS)
        .jwks(keys.jwks())
        .clock(Arc::new(FixedClock(NOW)))
}

async fn send<S>(service: S, req: Request<Body>) -> (StatusCode, String, String)
where
    S: tower::Service<Request<Body>, Response = axum::response::Response, Error = Infallible>,
{
    let resp = service.oneshot(req).await.unwrap();
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

fn post_rpc(bearer: Option<&str>, body: &str) -> Request<Body> {
    let mut req = Request::post("/mcp").header("content-type", "application/json");
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

fn tool_call(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
}

async fn whoami(who: Principal) -> String {
    format!(
        "{} {} {} {:?} {:?} {}",
        who.subject(),
        who.client_id(),
        who.scopes().collect::<Vec<_>>().join(","),
        who.groups(),
        who.tenant(),
        who.issuer(),
    )
}

async fn maybe(who: Option<Principal>) -> String {
    who.map_or_else(|| "anonymous".into(), |p| p.subject().to_owned())
}

fn routes() -> Router {
    Router::new()
        .route("/mcp", post(whoami))
        .route("/maybe", get(maybe))
}

#[tokio::test]
async fn rs7_principal_extractor_gets_the_verified_claims() {
    let keys = ring();
    let good = token(&keys, "tasks.read");
    let app = routes().layer(builder(&keys).build().unwrap());
    let (status, _, body) = send(app.clone(), post_rpc(Some(&good), "{}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        format!("u-17 tc_5f2a91 tasks.read [\"eng\"] Some(\"acme\") {AS}")
    );
    let req = Request::get("/maybe")
        .header("authorization", format!("Bearer {good}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(app.clone(), req).await.2, "u-17");
    // Behind the layer, no token is the RS-1 challenge, never the handler.
    let (status, challenge, _) = send(app, post_rpc(None, "{}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains(&format!("resource_metadata=\"{PRM_URL}\"")),
        "{challenge}"
    );
}

#[tokio::test]
async fn rs1_principal_extractor_without_the_layer_is_a_401_not_a_500() {
    // A route the layer does not wrap: the extractor refuses, whatever the request carries.
    let keys = ring();
    let good = token(&keys, "tasks.read");
    for bearer in [None, Some(good.as_str())] {
        let (status, challenge, body) = send(routes(), post_rpc(bearer, "{}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(challenge, "Bearer");
        assert!(body.contains("no verified access token"), "{body}");
    }
    // `Option<Principal>` serves the route anonymously instead.
    let req = Request::get("/maybe").body(Body::empty()).unwrap();
    let (status, _, body) = send(routes(), req).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
}

#[test]
fn rs6_tool_scopes_fail_closed_at_build() {
    let keys = ring();
    // A tool scope naming a tool the server does not declare (a typo) is refused...
    let err = builder(&keys)
        .tools(["add_task", "whoami"])
        .tool_scopes("add_tsak", ["tasks.write"])
        .build()
        .unwrap_err();
    assert_eq!(err, BearerBuildError::UnknownTool("add_tsak".into()));
    // ...and so are tool scopes without any declared tool list.
    let err = builder(&keys)
        .tool_scopes("add_task", ["tasks.write"])
        .build()
        .unwrap_err();
    assert_eq!(err, BearerBuildError::ToolsNotDeclared("add_task".into()));
    // Positive control: the declared tool builds; `tools` adds across calls.
    builder(&keys)
        .tools(["whoami"])
        .tools(["add_task"])
        .tool_scopes("add_task", ["tasks.write"])
        .build()
        .unwrap();
}

#[test]
fn builder_refuses_missing_or_double_keys_bad_scopes_and_urls() {
    let keys = ring();
    let bare = || BearerAuth::builder(RESOURCE, AS);
    assert_eq!(bare().build().unwrap_err(), BearerBuildError::MissingKeys);
    assert_eq!(
        bare()
            .jwks(keys.jwks())
            .keys(StaticKeySource::new())
            .build()
            .unwrap_err(),
        BearerBuildError::KeysTwice
    );
    for bad in ["", "tasks.read tasks.write", "bad\"scope"] {
        let err = builder(&keys).require_scopes([bad]).build().unwrap_err();
        assert!(
            matches!(err, BearerBuildError::InvalidScope { ref scope, .. } if scope == bad),
            "{err:?}"
        );
    }
    let err = BearerAuth::builder("/mcp", AS)
        .jwks(keys.jwks())
        .build()
        .unwrap_err();
    assert_eq!(err, BearerBuildError::InvalidResource("/mcp".into()));
    let err = BearerAuth::builder(RESOURCE, "auth.tasks.example")
        .jwks(keys.jwks())
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        BearerBuildError::InvalidIssuer("auth.tasks.example".into())
    );
    // MD-8: a plain-http JWKS URL is refused by the default fetch policy...
    let err = bare()
        .jwks_url("http://127.0.0.1:9401/jwks")
        .build()
        .unwrap_err();
    assert!(matches!(err, BearerBuildError::JwksUrl { .. }), "{err:?}");
    // ...and accepted under the named development opt-in; https is accepted by default.
    bare()
        .jwks_url("http://127.0.0.1:9401/jwks")
        .fetch_policy(FetchPolicy::insecure_loopback_development())
        .build()
        .unwrap();
    bare()
        .jwks_url("https://auth.tasks.example/jwks")
        .build()
        .unwrap();
    // Positive control: keys from any KeySource.
    bare()
        .keys(StaticKeySource::new().with_issuer(AS, keys.jwks()))
        .build()
        .unwrap();
}

#[tokio::test]
async fn rs6_tools_without_an_entry_need_the_default_tool_scopes() {
    let keys = ring();
    let read = token(&keys, "tasks.read");
    let admin = token(&keys, "tasks.read tasks.admin");
    let write = token(&keys, "tasks.read tasks.write");
    let app = Router::new()
        .route("/mcp", post(|| async { "served" }))
        .layer(
            builder(&keys)
                .require_scopes(["tasks.read"])
                .tools(["whoami", "add_task", "purge"])
                .tool_scopes("whoami", ema_server::NO_SCOPES)
                .tool_scopes("add_task", ["tasks.write"])
                .default_tool_scopes(["tasks.admin"])
                .build()
                .unwrap(),
        );
    // `purge` has no entry, and `gone` is not even declared: both need the default.
    for tool in ["purge", "gone"] {
        let (status, challenge, _) =
            send(app.clone(), post_rpc(Some(&read), &tool_call(tool))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{tool}");
        assert!(
            challenge.contains("scope=\"tasks.admin tasks.read\""),
            "{challenge}"
        );
        let (status, _, _) = send(app.clone(), post_rpc(Some(&admin), &tool_call(tool))).await;
        assert_eq!(status, StatusCode::OK, "{tool}");
    }
    // A tool with an entry needs its own scopes, not the default.
    let (status, _, _) = send(app.clone(), post_rpc(Some(&read), &tool_call("whoami"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(app.clone(), post_rpc(Some(&admin), &tool_call("add_task"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(app, post_rpc(Some(&write), &tool_call("add_task"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn rs7_layer_on_a_nested_service() {
    let keys = ring();
    let good = token(&keys, "tasks.read");
    // A tower service nested at /mcp (as an rmcp StreamableHttpService is): it sees the
    // principal and no credentials.
    let inner = tower::service_fn(|req: Request<Body>| async move {
        let who = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.subject().to_owned());
        let credentials = req.headers().contains_key("authorization");
        Ok::<_, Infallible>(format!("{who:?} credentials={credentials}"))
    });
    let app = Router::new().nest_service("/mcp", inner).layer(
        builder(&keys)
            .require_scopes(["tasks.read"])
            .build()
            .unwrap(),
    );
    let (status, _, body) = send(app.clone(), post_rpc(Some(&good), "{}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Some(\"u-17\") credentials=false");
    let (status, challenge, _) = send(app, post_rpc(None, "{}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("resource_metadata="), "{challenge}");
}

#[tokio::test]
async fn rs6_layer_on_a_plain_tower_stack() {
    let keys = ring();
    let read = token(&keys, "tasks.read");
    let write = token(&keys, "tasks.read tasks.write");
    let auth = builder(&keys)
        .tools(["add_task"])
        .tool_scopes("add_task", ["tasks.write"])
        .build()
        .unwrap();
    // No axum router: a tower stack over requests with another body type.
    let stack = ServiceBuilder::new().layer(auth).service(tower::service_fn(
        |req: Request<Body>| async move {
            let who = req.extensions().get::<Principal>().cloned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::new(format!(
                "{} read {} bytes",
                who.map(|p| p.subject().to_owned()).unwrap_or_default(),
                body.len()
            )))
        },
    ));
    let call = |token: Option<&str>| {
        let mut req = Request::post("/mcp").header("content-type", "application/json");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        req.body(Full::new(Bytes::from(tool_call("add_task"))))
            .unwrap()
    };
    let resp = stack.clone().oneshot(call(Some(&write))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    // The body the layer read to find the tool is handed on whole.
    assert_eq!(
        body,
        format!("u-17 read {} bytes", tool_call("add_task").len())
    );
    let resp = stack.clone().oneshot(call(Some(&read))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = stack.oneshot(call(None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn md6_resource_metadata_is_derived_from_the_rules() {
    let keys = ring();
    let auth = builder(&keys)
        .require_scopes(["tasks.read"])
        .tools(["add_task"])
        .tool_scopes("add_task", ["tasks.write"])
        .build()
        .unwrap();
    assert_eq!(auth.resource_metadata_url(), PRM_URL);
    let expected =
        ProtectedResourceMetadata::new(RESOURCE, [AS]).with_scopes(["tasks.read", "tasks.write"]);
    assert_eq!(auth.resource_metadata(), &expected);
    let req = Request::get("/.well-known/oauth-protected-resource/mcp")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(auth.resource_metadata_router(), req).await;
    assert_eq!(status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["authorization_servers"][0], AS);
    assert_eq!(
        doc["scopes_supported"],
        serde_json::json!(["tasks.read", "tasks.write"])
    );
}
