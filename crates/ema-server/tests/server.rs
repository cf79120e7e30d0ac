//! The routers end to end, in process (`tower::ServiceExt::oneshot`): SSO → token exchange →
//! jwt-bearer → a protected MCP route, and the error paths of each (RS-1..RS-6, MD-1, MD-4,
//! MD-6, TX-15, AS-20).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use ema_grant::form::encode_component;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, Clock, FixedClock, KeyRing, SigningKey, StaticKeySource, UnixTime};
use ema_metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};
use ema_server::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

#[path = "server/audit_trail.rs"]
mod audit_trail;
#[path = "server/d24_client_auth.rs"]
mod d24_client_auth;
#[path = "server/dp33_dpop_store.rs"]
mod dp33_dpop_store;
#[path = "server/guard.rs"]
mod guard;
#[cfg(feature = "rmcp")]
#[path = "server/guard_rmcp.rs"]
mod guard_rmcp;
#[path = "server/scope_logs.rs"]
mod scope_logs;

const IDP: &str = "https://idp.acme.example";
const AS: &str = "https://auth.tasks.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const PRM_URL: &str = "https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "http://127.0.0.1:7777/callback";

struct World {
    idp: Router,
    auth_server: Router,
    mcp: Router,
    as_keys: Arc<KeyRing>,
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(FixedClock(NOW))
}

fn world() -> World {
    world_with(Audits::off())
}

/// The audit trail of each server.
struct Audits {
    idp: audit::AuditLog,
    auth_server: audit::AuditLog,
    mcp: audit::AuditLog,
}

impl Audits {
    fn off() -> Self {
        Self::all(&audit::AuditLog::disabled())
    }

    /// One trail for the three servers.
    fn all(log: &audit::AuditLog) -> Self {
        Self {
            idp: log.clone(),
            auth_server: log.clone(),
            mcp: log.clone(),
        }
    }
}

fn world_with(audits: Audits) -> World {
    let idp_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
    ));
    let as_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));

    // The IdP: SSO + token exchange.
    let idp_meta = idp_metadata(IDP);
    let idp_clients = ClientRegistry::new([IDP, "https://idp.acme.example/token"]).with(
        RegisteredClient::new("desk-idp-01", ClientCredential::secret("idp-secret"))
            .with_redirect_uris([REDIRECT]),
    );
    let sso = SsoProvider::new(Issuer::new(IDP), idp_keys.clone(), idp_clients.clone())
        .unwrap()
        .with_user(
            User::new("00u8k2Lq91", "ana", "ana-password")
                .unwrap()
                .with_groups(["eng"]),
        )
        .with_user(
            User::new("00u9zzzzzz", "bob", "bob-password")
                .unwrap()
                .with_groups(["sales"]),
        );
    let policy = GroupPolicy::new()
        .with_member("00u8k2Lq91", ["eng"])
        .with_member("00u9zzzzzz", ["sales"])
        .with_rule(GroupRule::new(
            "eng",
            AS,
            ScopeSet::parse("tasks.read tasks.write").unwrap(),
        ));
    let exchange = TokenExchangeGrant::builder(
        IdJagIssuer::new(Issuer::new(IDP), idp_keys.clone()),
        StaticKeySource::new().with_issuer(IDP, idp_keys.jwks()),
        policy,
    )
    .client_registry(idp_clients)
    .replay_store(Arc::new(InMemoryReplayStore::new(1000)))
    .token_endpoint("https://idp.acme.example/token")
    .target(TargetServer::new(AS, [RESOURCE]).with_client("desk-idp-01", "tc_5f2a91"))
    .build()
    .unwrap();
    let idp = IdpRouter::builder(exchange, idp_keys.clone())
        .sso(sso)
        .metadata(idp_meta)
        .clock(clock())
        .audit(audits.idp)
        .build()
        .unwrap();

    // The MCP authorization server.
    let as_meta = AuthorizationServerMetadata::new(AS, "https://auth.tasks.example/token")
        .with_id_jag_profile();
    let mut as_meta = as_meta;
    as_meta.jwks_uri = Some("https://auth.tasks.example/jwks".into());
    let grant = JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(AS), as_keys.clone()),
        StaticKeySource::new().with_issuer(IDP, idp_keys.jwks()),
        Directory::new().with_provisioning(|c| Some(LocalSubject::new(format!("local-{}", c.sub)))),
    )
    .trust(TrustedIssuer::new(IDP))
    .resource(
        ResourceConfig::new(RESOURCE, ["tasks.read", "tasks.write"])
            .with_default_scopes(ScopeSet::parse("tasks.read").unwrap()),
    )
    .client(RegisteredClient::new(
        "tc_5f2a91",
        ClientCredential::secret("as-secret"),
    ))
    .replay_store(InMemoryReplayStore::new(1000))
    .token_endpoint("https://auth.tasks.example/token")
    .build()
    .unwrap();
    let auth_server = AuthorizationServerRouter::builder(grant, &as_meta)
        .clock(clock())
        .audit(audits.auth_server)
        .build();

    // The MCP server.
    let bearer = BearerAuth::builder(RESOURCE, AS)
        .jwks(as_keys.jwks())
        .clock(clock())
        .require_scopes(["tasks.read"])
        .tools(["add_task", "whoami"])
        .tool_scopes("add_task", ["tasks.write"])
        .audit(audits.mcp)
        .build()
        .unwrap();
    let routes = Router::new().route(
        "/mcp",
        post(|who: Principal, headers: http::HeaderMap| async move {
            // What a handler could forward upstream (RS-7).
            let credentials = headers.contains_key("authorization") || headers.contains_key("dpop");
            format!("hello {} credentials={credentials}", who.subject())
        }),
    );
    let prm =
        ProtectedResourceMetadata::new(RESOURCE, [AS]).with_scopes(["tasks.read", "tasks.write"]);
    let mcp = harden(
        protect(routes, bearer).merge(protected_resource_router(&prm)),
        &Limits::default(),
    );
    World {
        idp: harden(idp, &Limits::default()),
        auth_server: harden(auth_server, &Limits::default()),
        mcp,
        as_keys,
    }
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn form_post(uri: &str, body: String, basic: Option<&str>) -> Request<Body> {
    let mut b = Request::post(uri).header("content-type", "application/x-www-form-urlencoded");
    if let Some(basic) = basic {
        b = b.header("authorization", format!("Basic {basic}"));
    }
    b.body(Body::from(body)).unwrap()
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

async fn sign_in(w: &World, user: &str, password: &str) -> String {
    let query = format!(
        "response_type=code&client_id=desk-idp-01&redirect_uri={}&code_challenge={}&code_challenge_method=S256&scope=openid&state=st&nonce=nn",
        encode_component(REDIRECT),
        pkce_challenge(VERIFIER)
    );
    let (status, _, page) = call(
        &w.idp,
        Request::get(format!("/authorize?{query}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page).contains("<form method=\"post\">"));
    let (status, headers, _) = call(
        &w.idp,
        form_post(
            "/authorize",
            format!("{query}&username={user}&password={password}"),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "login");
    let location = headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT) && location.contains("state=st"));
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let (status, _, body) = call(
        &w.idp,
        form_post(
            "/token",
            format!(
                "grant_type=authorization_code&code={code}&code_verifier={VERIFIER}&redirect_uri={}",
                encode_component(REDIRECT)
            ),
            Some(&b64("desk-idp-01:idp-secret")),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    json(&body)["id_token"].as_str().unwrap().to_owned()
}

async fn exchange(w: &World, id_token: &str) -> (StatusCode, Value) {
    let body = format!(
        "grant_type={}&requested_token_type={}&audience={}&resource={}&scope=tasks.read&subject_token={id_token}&subject_token_type={}",
        encode_component(TOKEN_EXCHANGE),
        encode_component(ID_JAG_TOKEN_TYPE),
        encode_component(AS),
        encode_component(RESOURCE),
        encode_component(ID_TOKEN_TYPE),
    );
    let (status, headers, body) = call(
        &w.idp,
        form_post("/token", body, Some(&b64("desk-idp-01:idp-secret"))),
    )
    .await;
    assert_eq!(headers["cache-control"], "no-store", "TX-15");
    (status, json(&body))
}

async fn redeem(w: &World, id_jag: &str) -> (StatusCode, Value) {
    let body = format!(
        "grant_type={}&assertion={id_jag}&resource={}",
        encode_component(JWT_BEARER),
        encode_component(RESOURCE)
    );
    let (status, headers, body) = call(
        &w.auth_server,
        form_post("/token", body, Some(&b64("tc_5f2a91:as-secret"))),
    )
    .await;
    assert_eq!(headers["cache-control"], "no-store");
    (status, json(&body))
}

#[tokio::test]
async fn full_flow_and_replay() {
    let w = world();
    let id_token = sign_in(&w, "ana", "ana-password").await;
    let (status, tx) = exchange(&w, &id_token).await;
    assert_eq!(status, StatusCode::OK, "{tx}");
    assert_eq!(tx["issued_token_type"], ID_JAG_TOKEN_TYPE);
    let id_jag = tx["access_token"].as_str().unwrap();
    let (status, at) = redeem(&w, id_jag).await;
    assert_eq!(status, StatusCode::OK, "{at}");
    assert_eq!(at["resource"], RESOURCE);
    let token = at["access_token"].as_str().unwrap();
    // SEC-1: the ID-JAG is single use.
    let (status, again) = redeem(&w, id_jag).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    let req = |auth: Option<String>| {
        let mut b = Request::post("/mcp");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::empty()).unwrap()
    };
    let (status, _, body) = call(&w.mcp, req(Some(format!("Bearer {token}")))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "hello local-00u8k2Lq91 credentials=false"
    );
    // Cached: the same token again.
    let (status, _, _) = call(&w.mcp, req(Some(format!("Bearer {token}")))).await;
    assert_eq!(status, StatusCode::OK);

    // RS-1: no token → 401 with resource_metadata and scope, no error code.
    let (status, headers, _) = call(&w.mcp, req(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!("resource_metadata=\"{PRM_URL}\""))
            && challenge.contains("scope=\"tasks.read\"")
    );
    assert!(!challenge.contains("error="));
    // RS-4: an ID-JAG or ID token is not an access token.
    for wrong in [id_jag, id_token.as_str(), "garbage", "a.b.c"] {
        let (status, headers, body) = call(&w.mcp, req(Some(format!("Bearer {wrong}")))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
        assert!(
            !String::from_utf8_lossy(&body).contains(wrong),
            "SEC-10: no token echoed"
        );
    }
    // RS-5, D-25: a token in the query is never read: the request has no token (401).
    let (status, _, _) = call(
        &w.mcp,
        Request::post(format!("/mcp?access_token={token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Two Authorization headers.
    let two = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&w.mcp, two).await.0, StatusCode::BAD_REQUEST);
    // MD-6: the protected-resource metadata.
    let (status, _, body) = call(
        &w.mcp,
        Request::get("/.well-known/oauth-protected-resource/mcp")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["resource"], RESOURCE);
}

#[tokio::test]
async fn policy_denial_and_bad_logins() {
    let w = world();
    // bob's group has no rule for this authorization server: access_denied (TX-8, D-2).
    let id_token = sign_in(&w, "bob", "bob-password").await;
    let (status, body) = exchange(&w, &id_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("access_denied"))
    );
    // A wrong password re-shows the form with 401.
    let query = format!(
        "response_type=code&client_id=desk-idp-01&redirect_uri={}&code_challenge={}&code_challenge_method=S256&scope=openid",
        encode_component(REDIRECT),
        pkce_challenge(VERIFIER)
    );
    let (status, _, _) = call(
        &w.idp,
        form_post(
            "/authorize",
            format!("{query}&username=ana&password=nope"),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An unregistered redirect URI is never redirected to.
    let (status, headers, _) = call(
        &w.idp,
        Request::get("/authorize?response_type=code&client_id=desk-idp-01&redirect_uri=https%3A%2F%2Fevil.example%2F")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("location").is_none());
}

#[tokio::test]
async fn scope_and_metadata() {
    let w = world();
    // MD-1/MD-2 on the authorization server; MD-4 on the IdP.
    let (_, _, body) = call(
        &w.auth_server,
        Request::get("/.well-known/oauth-authorization-server")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let meta = json(&body);
    assert_eq!(
        meta["authorization_grant_profiles_supported"][0],
        "urn:ietf:params:oauth:grant-profile:id-jag"
    );
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == JWT_BEARER)
    );
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (status, _, body) = call(&w.idp, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            json(&body)["identity_chaining_requested_token_types_supported"][0],
            ID_JAG_TOKEN_TYPE
        );
    }
    let (status, _, body) = call(
        &w.auth_server,
        Request::get("/jwks").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["keys"][0]["kid"], "as-k1");
}

#[tokio::test]
async fn bad_input_gets_4xx_never_5xx() {
    let w = world();
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            Request::post("/token")
                .body(Body::from("grant_type=x"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::post("/token")
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            form_post("/token", "a=%zz".into(), None),
            StatusCode::BAD_REQUEST,
        ),
        (
            form_post("/token", "grant_type=a&grant_type=b".into(), None),
            StatusCode::BAD_REQUEST,
        ),
        (
            form_post("/token", "x".repeat(70 * 1024), None),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            form_post(
                "/token",
                format!(
                    "grant_type={}&assertion=a.b.c",
                    encode_component(JWT_BEARER)
                ),
                None,
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Request::get("/token").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Request::get("/nope").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (req, expected) in cases {
        let (status, _, body) = call(&w.auth_server, req).await;
        assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
    }
    let (status, headers, _) = call(
        &w.auth_server,
        form_post(
            "/token",
            format!(
                "grant_type={}&assertion=a.b.c",
                encode_component(JWT_BEARER)
            ),
            Some(&b64("tc_5f2a91:wrong")),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "AS-20");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
}

#[tokio::test]
async fn tool_scopes_ask_for_step_up() {
    let w = world();
    let id_token = sign_in(&w, "ana", "ana-password").await;
    let (_, tx) = exchange(&w, &id_token).await;
    let (_, at) = redeem(&w, tx["access_token"].as_str().unwrap()).await;
    let token = at["access_token"].as_str().unwrap().to_owned();
    assert_eq!(at["scope"], "tasks.read");
    // add_task needs tasks.write on top of tasks.read.
    let tool_call = |tool: &str| {
        Request::post("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
            )))
            .unwrap()
    };
    let (status, headers, _) = call(&w.mcp, tool_call("add_task")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "RS-6");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"insufficient_scope\""));
    assert!(
        challenge.contains("scope=\"tasks.read tasks.write\""),
        "{challenge}"
    );
    let (status, _, _) = call(&w.mcp, tool_call("list_tasks")).await;
    assert_eq!(status, StatusCode::OK);
    // RS-6: a call that names its tool twice could run either one, depending on the parser
    // behind the layer: refused, after the credentials are judged.
    let ambiguous = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks","name":"add_task","arguments":{}}}"#;
    let post = |auth: Option<&str>| {
        let mut req = Request::post("/mcp").header("content-type", "application/json");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.body(Body::from(ambiguous)).unwrap()
    };
    let (status, headers, body) = call(&w.mcp, post(Some(&format!("Bearer {token}")))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["error"], "invalid_request");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let (status, _, _) = call(&w.mcp, post(None)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "RS-1: no token is a 401 first"
    );
}

fn access_token_claims() -> Value {
    serde_json::json!({
        "iss": AS, "aud": RESOURCE, "sub": "u-1", "client_id": "tc_5f2a91", "scope": "tasks.read",
        "iat": NOW.as_secs(), "exp": NOW.as_secs() + 600, "jti": "at-1"
    })
}

#[tokio::test]
async fn rs2_rs3_access_token_rules() {
    let w = world();
    let key = w.as_keys.active();
    let bearer = |token: String| {
        Request::post("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    // Positive control: a well-formed at+jwt from the AS key.
    let good = key
        .sign_jwt(Some("at+jwt"), &access_token_claims())
        .unwrap();
    let (status, _, body) = call(&w.mcp, bearer(good)).await;
    assert_eq!(status, StatusCode::OK);
    // RS-7: the handler gets the principal, never the token it could forward upstream.
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "hello u-1 credentials=false"
    );
    // RS-3: the same claims under another `typ` (or none) are refused.
    for typ in [Some("JWT"), None, Some("oauth-id-jag+jwt")] {
        let token = key.sign_jwt(typ, &access_token_claims()).unwrap();
        assert_eq!(
            call(&w.mcp, bearer(token)).await.0,
            StatusCode::UNAUTHORIZED,
            "{typ:?}"
        );
    }
    // RS-2: wrong issuer, expired, audience of another resource, foreign key.
    let mut wrong_iss = access_token_claims();
    wrong_iss["iss"] = "https://evil.example".into();
    let mut expired = access_token_claims();
    expired["exp"] = (NOW.as_secs() - 120).into();
    expired["iat"] = (NOW.as_secs() - 700).into();
    let mut other_aud = access_token_claims();
    other_aud["aud"] = "https://mcp.tasks.example/mcp/".into();
    for claims in [wrong_iss, expired, other_aud] {
        let token = key.sign_jwt(Some("at+jwt"), &claims).unwrap();
        assert_eq!(
            call(&w.mcp, bearer(token)).await.0,
            StatusCode::UNAUTHORIZED,
            "{claims}"
        );
    }
    let stranger = SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap();
    let forged = stranger
        .sign_jwt(Some("at+jwt"), &access_token_claims())
        .unwrap();
    assert_eq!(
        call(&w.mcp, bearer(forged)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn md3_metadata_names_no_trusted_issuer() {
    let w = world();
    let (_, _, body) = call(
        &w.auth_server,
        Request::get("/.well-known/oauth-authorization-server")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    // MD-3 / SEC-12: advertising the profile says nothing about which IdPs are trusted.
    assert!(!String::from_utf8_lossy(&body).contains(IDP));
}

fn dpop_proof(key: &SigningKey, htu: &str, jti: &str, token: Option<&str>) -> String {
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), "dpop+jwt".into());
    header.insert(
        "jwk".into(),
        Value::Object(key.verifying_key().public_jwk().clone()),
    );
    let mut claims =
        serde_json::json!({"jti": jti, "htm": "POST", "htu": htu, "iat": NOW.as_secs()});
    if let Some(token) = token {
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        claims["ath"] = ema_jose::base64url::encode(hash.as_ref()).into();
    }
    key.sign_with_header(header, claims.to_string().as_bytes())
        .unwrap()
}

/// A DPoP-bound access token for `holder`'s key, from the IdP and the authorization server of
/// `w`.
async fn dpop_bound_token(w: &World, holder: &SigningKey) -> String {
    let id_token = sign_in(w, "ana", "ana-password").await;
    let (_, tx) = exchange(w, &id_token).await;
    let body = format!(
        "grant_type={}&assertion={}&resource={}",
        encode_component(JWT_BEARER),
        tx["access_token"].as_str().unwrap(),
        encode_component(RESOURCE)
    );
    let mut req = form_post("/token", body, Some(&b64("tc_5f2a91:as-secret")));
    req.headers_mut().insert(
        "dpop",
        dpop_proof(holder, "https://auth.tasks.example/token", "p-token", None)
            .parse()
            .unwrap(),
    );
    let (status, _, body) = call(&w.auth_server, req).await;
    let at = json(&body);
    assert_eq!(
        (status, at["token_type"].as_str()),
        (StatusCode::OK, Some("DPoP")),
        "{at}"
    );
    at["access_token"].as_str().unwrap().to_owned()
}

/// D-17, DP-29, DP-31, DP-38: a bound token needs the DPoP scheme and a fresh proof by its key on
/// every request (the token verdict is cached, the proof never is: the same proof again is a
/// replay).
#[tokio::test]
async fn d17_dpop_bound_tokens_at_the_mcp_server() {
    let w = world();
    let holder = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let token = dpop_bound_token(&w, &holder).await;

    let mcp = |scheme: &str, proof: Option<String>| {
        let mut b = Request::post("/mcp").header("authorization", format!("{scheme} {token}"));
        if let Some(p) = proof {
            b = b.header("dpop", p);
        }
        b.body(Body::empty()).unwrap()
    };
    // RFC 9449 §7.1: the DPoP scheme with a fresh proof by the bound key, `ath` matching.
    let ok = dpop_proof(&holder, RESOURCE, "p-1", Some(&token));
    let (status, _, body) = call(&w.mcp, mcp("DPoP", Some(ok.clone()))).await;
    assert_eq!(status, StatusCode::OK);
    // RS-7: neither the token nor its proof reaches the handler.
    assert!(String::from_utf8_lossy(&body).ends_with("credentials=false"));
    // The same proof again is a replay.
    assert_eq!(
        call(&w.mcp, mcp("DPoP", Some(ok))).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A bound token as a bearer token, or without a proof.
    assert_eq!(
        call(&w.mcp, mcp("Bearer", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&w.mcp, mcp("DPoP", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A proof by another key, for another URL, or for another token.
    let stranger = SigningKey::generate(Algorithm::ES256, None).unwrap();
    for proof in [
        dpop_proof(&stranger, RESOURCE, "p-2", Some(&token)),
        dpop_proof(
            &holder,
            "https://mcp.tasks.example/other",
            "p-3",
            Some(&token),
        ),
        dpop_proof(&holder, RESOURCE, "p-4", Some("another-token")),
        dpop_proof(&holder, RESOURCE, "p-5", None),
    ] {
        assert_eq!(
            call(&w.mcp, mcp("DPoP", Some(proof))).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    // DP-30: an unbound token under the DPoP scheme, even with a good proof, is refused; the
    // same token as a bearer token is the positive control.
    let id_token = sign_in(&w, "ana", "ana-password").await;
    let (_, tx) = exchange(&w, &id_token).await;
    let body = format!(
        "grant_type={}&assertion={}&resource={}",
        encode_component(JWT_BEARER),
        tx["access_token"].as_str().unwrap(),
        encode_component(RESOURCE)
    );
    let req = form_post("/token", body, Some(&b64("tc_5f2a91:as-secret")));
    let (status, _, body) = call(&w.auth_server, req).await;
    let at = json(&body);
    assert_eq!(
        (status, at["token_type"].as_str()),
        (StatusCode::OK, Some("Bearer")),
        "{at}"
    );
    let unbound = at["access_token"].as_str().unwrap();
    let with = |scheme: &str, proof: Option<String>| {
        let mut b = Request::post("/mcp").header("authorization", format!("{scheme} {unbound}"));
        if let Some(p) = proof {
            b = b.header("dpop", p);
        }
        b.body(Body::empty()).unwrap()
    };
    let proof = dpop_proof(&holder, RESOURCE, "p-6", Some(unbound));
    let (status, _, body) = call(&w.mcp, with("DPoP", Some(proof))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["error"], "invalid_token");
    assert_eq!(call(&w.mcp, with("Bearer", None)).await.0, StatusCode::OK);
}

/// SEC-8, D-17, DP-28, DP-29, DP-31, DP-35 (RFC 9449 §7.1): at the MCP server, a DPoP-bound token whose proof is
/// missing, duplicated or invalid is answered `401 invalid_dpop_proof`, a valid proof by
/// another key `401 invalid_token`, each with a `DPoP` challenge carrying `algs` and
/// `resource_metadata`; the positive control is a good proof, and the bearer-side refusal of a
/// bound token stays `invalid_token` with a `Bearer` challenge.
#[tokio::test]
async fn sec8_dpop_proof_failures_answer_invalid_dpop_proof() {
    let w = world();
    let holder = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let token = dpop_bound_token(&w, &holder).await;
    let mcp = |scheme: &str, proofs: &[String]| {
        let mut b = Request::post("/mcp").header("authorization", format!("{scheme} {token}"));
        for p in proofs {
            b = b.header("dpop", p.as_str());
        }
        b.body(Body::empty()).unwrap()
    };
    let challenge = |headers: &http::HeaderMap| {
        let value = headers
            .get(http::header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        ema_metadata::parse_challenges(&value)
            .unwrap()
            .into_iter()
            .next()
            .unwrap()
    };

    let good = dpop_proof(&holder, RESOURCE, "q-ok", Some(&token));
    let (status, _, _) = call(&w.mcp, mcp("DPoP", &[good])).await;
    assert_eq!(status, StatusCode::OK);

    let stranger = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let rows: Vec<(&str, Vec<String>, &str)> = vec![
        ("no proof", vec![], "invalid_dpop_proof"),
        (
            "two proofs",
            vec![
                dpop_proof(&holder, RESOURCE, "q-2a", Some(&token)),
                dpop_proof(&holder, RESOURCE, "q-2b", Some(&token)),
            ],
            "invalid_dpop_proof",
        ),
        (
            "not a JWT",
            vec!["not-a-proof".into()],
            "invalid_dpop_proof",
        ),
        (
            "another URL",
            vec![dpop_proof(
                &holder,
                "https://mcp.tasks.example/other",
                "q-3",
                Some(&token),
            )],
            "invalid_dpop_proof",
        ),
        (
            "another token's ath",
            vec![dpop_proof(&holder, RESOURCE, "q-4", Some("another-token"))],
            "invalid_dpop_proof",
        ),
        (
            "no ath",
            vec![dpop_proof(&holder, RESOURCE, "q-5", None)],
            "invalid_dpop_proof",
        ),
        (
            "a replayed proof",
            vec![dpop_proof(&holder, RESOURCE, "q-ok", Some(&token))],
            "invalid_dpop_proof",
        ),
        (
            "a valid proof by another key",
            vec![dpop_proof(&stranger, RESOURCE, "q-6", Some(&token))],
            "invalid_token",
        ),
    ];
    for (name, proofs, code) in rows {
        let (status, headers, body) = call(&w.mcp, mcp("DPoP", &proofs)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(json(&body)["error"], code, "{name}");
        let c = challenge(&headers);
        assert!(c.is("DPoP"), "{name}: {c:?}");
        assert_eq!(c.get("error"), Some(code), "{name}");
        assert!(
            c.get("algs").unwrap().split(' ').any(|a| a == "ES256"),
            "{name}"
        );
        assert_eq!(
            c.get("resource_metadata"),
            Some("https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp"),
            "{name}"
        );
    }

    // A bound token presented as a bearer token is a token defect: `invalid_token`, Bearer.
    let (status, headers, body) = call(&w.mcp, mcp("Bearer", &[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["error"], "invalid_token");
    assert!(challenge(&headers).is("Bearer"));
}

/// Password checks (PBKDF2, tens of milliseconds each) run off the async workers: on a
/// single-threaded runtime, a metadata request sent after a burst of wrong-password sign-ins is
/// answered before the last of them.
#[tokio::test]
async fn password_checks_do_not_stall_other_requests() {
    let w = world();
    let query = format!(
        "response_type=code&client_id=desk-idp-01&redirect_uri={}&code_challenge={}&code_challenge_method=S256&scope=openid",
        encode_component(REDIRECT),
        pkce_challenge(VERIFIER)
    );
    let logins: Vec<_> = (0..6)
        .map(|_| {
            let idp = w.idp.clone();
            let req = form_post(
                "/authorize",
                format!("{query}&username=ana&password=nope"),
                None,
            );
            tokio::spawn(async move {
                let resp = idp.oneshot(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
                std::time::Instant::now()
            })
        })
        .collect();
    let idp = w.idp.clone();
    let metadata = tokio::spawn(async move {
        let req = Request::get("/.well-known/openid-configuration")
            .body(Body::empty())
            .unwrap();
        let resp = idp.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        std::time::Instant::now()
    });
    let metadata_done = metadata.await.unwrap();
    let mut last_login = None;
    for login in logins {
        let done = login.await.unwrap();
        last_login = Some(last_login.map_or(done, |l: std::time::Instant| l.max(done)));
    }
    assert!(metadata_done < last_login.unwrap());
}

#[path = "server/d25_claims.rs"]
mod d25_claims;
#[path = "server/rs5_bearer.rs"]
mod rs5_bearer;
#[path = "server/rs_api.rs"]
mod rs_api;
