//! The MCP authorization code flow at the authorization server, end to end over loopback: the
//! client's authorization request, the AS signing the user in at the IdP as an OpenID Connect
//! relying party (the pending sign-in sealed in the `state`, bound to the browser's cookie, taken
//! once), the code, and the `authorization_code` grant issuing the same audience-restricted
//! access token as the jwt-bearer grant (DPoP-bound with a proof), on the audit trail; with the
//! IdP's admission policy, D-24's public clients, and Client ID Metadata Documents.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

#[path = "support/code_flow_servers.rs"]
mod code_flow_servers;

use std::sync::Arc;

use code_flow_servers::{Browser, Options, Servers, bind, idp_login, serve};
use ema_grant::code_flow::s256;
use ema_grant::form::encode_component;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, SigningKey, StaticKeySource, UnixTime};
use ema_jwks::{FetchPolicy, HttpFetcher};
use ema_server::*;
use serde_json::Value;

const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const CLIENT_CB: &str = "http://127.0.0.1:33418/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";

struct World {
    idp: String,
    auth: String,
    resource: String,
    as_keys: Arc<ema_jose::KeyRing>,
    ledger: Arc<MemoryLedger>,
    browser: Browser,
}

fn options() -> Options {
    let mut o = Options::new(NOW, RESOURCE, CLIENT_CB);
    o.id_jag = true;
    // Client ID Metadata Documents through a loopback-development fetcher with a 4 KiB cap.
    o.documents = Some(
        HttpFetcher::new(FetchPolicy::insecure_loopback_development().with_max_body(4096)).unwrap(),
    );
    o
}

async fn world_with(o: Options) -> World {
    let Servers {
        idp,
        auth,
        as_keys,
        ledger,
    } = code_flow_servers::start(o).await;
    World {
        idp,
        auth,
        resource: RESOURCE.to_owned(),
        as_keys,
        ledger,
        browser: Browser::default(),
    }
}

async fn world() -> World {
    world_with(options()).await
}

async fn listener() -> (tokio::net::TcpListener, String) {
    bind().await
}

fn authorize_query(w: &World, extra: &str) -> String {
    format!(
        "response_type=code&client_id=ide&redirect_uri={}&state=client-st&code_challenge={}&code_challenge_method=S256&resource={}{extra}",
        encode_component(CLIENT_CB),
        s256(VERIFIER),
        encode_component(&w.resource)
    )
}

fn location(r: &reqwest::Response) -> String {
    code_flow_servers::location(r).unwrap()
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Plays the user: the AS's authorization endpoint, the IdP login, the callback. Returns the
/// final redirect to the client.
async fn browse(w: &World, query: &str, user: &str) -> String {
    let callback = to_callback(w, query, user).await;
    let r = w.browser.get(&callback).await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    location(&r)
}

/// The first half: the AS's authorization endpoint and the IdP login. Returns the IdP's
/// redirect back to the AS callback.
async fn to_callback(w: &World, query: &str, user: &str) -> String {
    let r = w
        .browser
        .get(&format!("{}/authorize?{query}", w.auth))
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    // The browser binding: HttpOnly, SameSite=Lax, scoped to the callback.
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("{SIGN_IN_COOKIE}=")),
        "{cookie}"
    );
    assert!(
        cookie.contains("; Path=/idp/callback;") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    let to_idp = location(&r);
    assert!(
        to_idp.starts_with(&format!("{}/authorize?", w.idp)),
        "{to_idp}"
    );
    // The AS asks for a code with PKCE S256 and a nonce at the IdP.
    assert_eq!(
        param(&to_idp, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(param(&to_idp, "nonce").is_some());
    let callback = idp_login(&w.browser, &to_idp, user).await.unwrap();
    assert!(
        callback.starts_with(&format!("{}/idp/callback?", w.auth)),
        "{callback}"
    );
    callback
}

async fn redeem(w: &World, code: &str, verifier: &str) -> (u16, Value) {
    redeem_as(w, "ide", code, verifier, None).await
}

async fn redeem_as(
    w: &World,
    client_id: &str,
    code: &str,
    verifier: &str,
    dpop: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/token", w.auth))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&client_id={}&code={code}&code_verifier={verifier}&redirect_uri={}&resource={}",
            encode_component(client_id),
            encode_component(CLIENT_CB),
            encode_component(&w.resource)
        ));
    if let Some(proof) = dpop {
        req = req.header("dpop", proof);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn code_flow_signs_in_at_the_idp_and_issues_an_audience_restricted_token() {
    let w = world().await;
    let back = browse(&w, &authorize_query(&w, ""), "ana").await;
    assert!(back.starts_with(CLIENT_CB), "{back}");
    // state echoed, iss present (RFC 9207).
    assert_eq!(param(&back, "state").as_deref(), Some("client-st"));
    assert_eq!(param(&back, "iss").as_deref(), Some(w.auth.as_str()));
    let code = param(&back, "code").unwrap();
    let (status, body) = redeem(&w, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], w.resource.as_str());
    // The same access token as the jwt-bearer grant's: audience = the resource, the IdP subject
    // mapped by the grant's resolver.
    let claims = AccessTokenValidator::new(
        Issuer::new(&w.auth),
        Resource::new(&w.resource),
        StaticKeySource::new().with_issuer(&w.auth, w.as_keys.jwks()),
    )
    .validate(body["access_token"].as_str().unwrap(), NOW)
    .await
    .unwrap();
    assert_eq!(claims.sub, "local-00u8k2Lq91");
    assert_eq!(claims.client_id.as_str(), "ide");
    // Reused: refused, and the token issued from it denied in the ledger.
    let jti = claims.jti.as_str().to_owned();
    let denied = || async {
        w.ledger
            .snapshot()
            .await
            .unwrap()
            .changes
            .iter()
            .any(|c| matches!(c, LedgerChange::TokenDenied { jti: j, .. } if *j == jti))
    };
    assert!(!denied().await);
    let (status, body) = redeem(&w, &code, VERIFIER).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(denied().await, "the reused code's token is revoked");
}

#[tokio::test]
async fn user_not_assigned_at_the_idp_is_refused_at_login() {
    let w = world().await;
    let back = browse(&w, &authorize_query(&w, ""), "bob").await;
    assert!(back.starts_with(CLIENT_CB), "{back}");
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    // Refused by the IdP's admin policy (ana, assigned, passes in the test above).
    assert!(
        param(&back, "error_description")
            .unwrap()
            .contains("not assign")
    );
    assert_eq!(param(&back, "state").as_deref(), Some("client-st"));
    assert_eq!(param(&back, "iss").as_deref(), Some(w.auth.as_str()));
    assert!(param(&back, "code").is_none());
}

#[tokio::test]
async fn pkce_and_redirect_rules_at_the_endpoint() {
    let w = world().await;
    // Plain PKCE: back to the client with invalid_request, never to the IdP.
    let q = authorize_query(&w, "")
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let r = w
        .browser
        .get(&format!("{}/authorize?{q}", w.auth))
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let back = location(&r);
    assert!(
        back.starts_with(&format!("{CLIENT_CB}?error=invalid_request")),
        "{back}"
    );
    // A redirect URI not registered exactly: an error page, no redirect.
    let q = authorize_query(&w, "").replace("33418%2Fcallback", "33418%2Fcallback%2F");
    let r = w
        .browser
        .get(&format!("{}/authorize?{q}", w.auth))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // A wrong verifier at the token endpoint.
    let back = browse(&w, &authorize_query(&w, ""), "ana").await;
    let (status, body) = redeem(&w, &param(&back, "code").unwrap(), &"x".repeat(43)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn metadata_advertises_the_code_flow_beside_the_id_jag_profile() {
    let w = world().await;
    let meta = w
        .browser
        .get(&format!(
            "{}/.well-known/oauth-authorization-server",
            w.auth
        ))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let meta: Value = serde_json::from_slice(&meta).unwrap();
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{}/authorize", w.auth)
    );
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    // Every redirect carries `iss` (RFC 9207); saying so makes clients require it.
    assert_eq!(
        meta["authorization_response_iss_parameter_supported"],
        serde_json::json!(true)
    );
    let grants = meta["grant_types_supported"].as_array().unwrap();
    assert!(grants.iter().any(|g| g == "authorization_code"));
    assert!(
        grants
            .iter()
            .any(|g| g == "urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert!(meta["authorization_grant_profiles_supported"].is_array());
}

/// A host of client metadata documents: `/good.json` (counted), `/mismatch.json`, `/big.json`
/// (over the 4 KiB cap), `/redirect.json` (302).
async fn documents() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::response::IntoResponse;
    let (l, base) = listener().await;
    let fetched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = fetched.clone();
    let good = format!(
        r#"{{"client_id":"{base}/good.json","client_name":"App","redirect_uris":["{CLIENT_CB}"],"token_endpoint_auth_method":"none"}}"#
    );
    let mismatch = format!(r#"{{"client_id":"{base}/good.json","redirect_uris":["{CLIENT_CB}"]}}"#);
    let big = format!(
        r#"{{"client_id":"{base}/big.json","redirect_uris":["{CLIENT_CB}"],"pad":"{}"}}"#,
        "x".repeat(8192)
    );
    let app = axum::Router::new()
        .route(
            "/good.json",
            axum::routing::get(move || {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let good = good.clone();
                async move { ([("content-type", "application/json")], good) }
            }),
        )
        .route(
            "/mismatch.json",
            axum::routing::get(move || async move { mismatch }),
        )
        .route("/big.json", axum::routing::get(move || async move { big }))
        .route(
            "/redirect.json",
            axum::routing::get(|| async {
                (http::StatusCode::FOUND, [("location", "/good.json")]).into_response()
            }),
        );
    serve(l, app);
    (base, fetched)
}

async fn authorize_as(w: &World, client_id: &str) -> reqwest::Response {
    let q = authorize_query(w, "").replace(
        "client_id=ide",
        &format!("client_id={}", encode_component(client_id)),
    );
    w.browser
        .get(&format!("{}/authorize?{q}", w.auth))
        .await
        .unwrap()
}

#[tokio::test]
async fn cimd_document_client_is_accepted_and_cached() {
    let w = world().await;
    let (base, fetched) = documents().await;
    let id = format!("{base}/good.json");
    for _ in 0..2 {
        let r = authorize_as(&w, &id).await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        assert!(location(&r).starts_with(&format!("{}/authorize?", w.idp)));
    }
    assert_eq!(
        fetched.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "cached"
    );
    // Its redirect URIs come from the document, matched exactly.
    let q = authorize_query(&w, "")
        .replace(
            "client_id=ide",
            &format!("client_id={}", encode_component(&id)),
        )
        .replace("33418", "33419");
    let r = w
        .browser
        .get(&format!("{}/authorize?{q}", w.auth))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn cimd_documents_unreachable_large_redirecting_private_or_mismatched_are_refused() {
    let w = world().await;
    let (base, _) = documents().await;
    let closed = {
        let (l, url) = listener().await;
        drop(l);
        url
    };
    for (id, why) in [
        (format!("{closed}/c.json"), "connect"),
        (format!("{base}/big.json"), "exceeds"),
        (format!("{base}/redirect.json"), "redirect"),
        ("https://10.1.2.3/c.json".to_owned(), "refuses"),
        ("https://192.168.0.7/c.json".to_owned(), "refuses"),
        (format!("{base}/mismatch.json"), "client_id"),
    ] {
        let r = authorize_as(&w, &id).await;
        assert_eq!(r.status(), 400, "{id}");
        assert!(r.headers().get("location").is_none(), "{id}");
        let page = r.text().await.unwrap();
        assert!(page.contains(why), "{id}: {page}");
    }
}

#[tokio::test]
async fn the_callback_needs_the_browser_that_started_the_sign_in_and_takes_it_once() {
    let w = world().await;
    let callback = to_callback(&w, &authorize_query(&w, ""), "ana").await;
    // Another browser (no sign-in cookie): refused, no code, and the state is not burnt.
    let other = Browser::default();
    let r = other.get(&callback).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("another browser"));
    // Positive control: the browser that started it gets the client's code.
    let r = w.browser.get(&callback).await.unwrap();
    assert_eq!(r.status(), 303);
    let back = location(&r);
    assert!(param(&back, "code").is_some(), "{back}");
    // The IdP's answer replayed (same browser): taken once.
    let r = w.browser.get(&callback).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("already finished"));
}

#[tokio::test]
async fn a_flood_of_authorization_requests_locks_no_user_out() {
    // The old AS parked each pending sign-in in a table capped at 10 000, then answered 503 to
    // everyone. A sealed state keeps nothing: after the flood ana still signs in.
    let w = world().await;
    let flood = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}/authorize?{}", w.auth, authorize_query(&w, ""));
    for _ in 0..10_050 {
        let r = flood.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 303);
    }
    let back = browse(&w, &authorize_query(&w, ""), "ana").await;
    let (status, body) = redeem(&w, &param(&back, "code").unwrap(), VERIFIER).await;
    assert_eq!(status, 200, "{body}");
}

/// A DPoP proof for the AS's token endpoint, signed by `key`.
fn dpop_proof(key: &SigningKey, htu: &str, jti: &str) -> String {
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), "dpop+jwt".into());
    header.insert(
        "jwk".into(),
        Value::Object(key.verifying_key().public_jwk().clone()),
    );
    let claims = serde_json::json!({"jti": jti, "htm": "POST", "htu": htu, "iat": NOW.as_secs()});
    key.sign_with_header(header, claims.to_string().as_bytes())
        .unwrap()
}

#[tokio::test]
async fn dpop_at_the_code_grant_binds_the_token_and_a_dpop_resource_needs_it() {
    let mut o = options();
    o.require_dpop = true;
    let w = world_with(o).await;
    let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let htu = format!("{}/token", w.auth);
    // AS-18, DP-20: no proof for a resource that requires DPoP.
    let back = browse(&w, &authorize_query(&w, ""), "ana").await;
    let code = param(&back, "code").unwrap();
    let (status, body) = redeem(&w, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // A proof for another endpoint: invalid_dpop_proof.
    let wrong = dpop_proof(&key, "https://elsewhere.example/token", "p0");
    let (status, body) = redeem_as(&w, "ide", &code, VERIFIER, Some(&wrong)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    // Positive control: a valid proof, a DPoP-bound token (the same code: not burnt above).
    let proof = dpop_proof(&key, &htu, "p1");
    let (status, body) = redeem_as(&w, "ide", &code, VERIFIER, Some(&proof)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let claims = AccessTokenValidator::new(
        Issuer::new(&w.auth),
        Resource::new(&w.resource),
        StaticKeySource::new().with_issuer(&w.auth, w.as_keys.jwks()),
    )
    .validate(body["access_token"].as_str().unwrap(), NOW)
    .await
    .unwrap();
    assert_eq!(
        claims.cnf_jkt,
        Some(key.verifying_key().thumbprint().to_owned())
    );
}

#[tokio::test]
async fn d24_registered_public_client_refused_where_public_clients_are_off() {
    // D-24: `none` only where enabled. Public clients off (and no metadata documents): the
    // public `ide` is sent back with unauthorized_client before any sign-in.
    let mut o = options();
    o.documents = None;
    o.public_clients = false;
    let w = world_with(o).await;
    let r = w
        .browser
        .get(&format!("{}/authorize?{}", w.auth, authorize_query(&w, "")))
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let back = location(&r);
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("unauthorized_client")
    );
    // Positive control: the confidential client runs the flow and redeems with its secret.
    let q = authorize_query(&w, "").replace("client_id=ide", "client_id=ide-conf");
    let back = browse(&w, &q, "ana").await;
    let code = param(&back, "code").unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/token", w.auth))
        .basic_auth("ide-conf", Some("conf-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&code={code}&code_verifier={VERIFIER}&redirect_uri={}",
            encode_component(CLIENT_CB)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // ...and the public client with no secret is refused at the token endpoint too.
    let (status, body) = redeem(&w, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn loopback_metadata_document_client_redeems_its_code_at_the_token_endpoint() {
    // A CIMD client id `http://127.0.0.1:<port>/good.json` (development): accepted at the
    // authorization endpoint and, by the same rule, at the token endpoint.
    let w = world().await;
    let (base, _) = documents().await;
    let id = format!("{base}/good.json");
    let q = authorize_query(&w, "").replace(
        "client_id=ide",
        &format!("client_id={}", encode_component(&id)),
    );
    let back = browse(&w, &q, "ana").await;
    let code = param(&back, "code").unwrap();
    // Another client id cannot redeem it.
    let (status, _) = redeem_as(&w, "ide", &code, VERIFIER, None).await;
    assert_eq!(status, 400);
    let (status, body) = redeem_as(&w, &id, &code, VERIFIER, None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_redeemed_code_is_on_the_audit_trail_linked_to_the_idp_sign_in() {
    use audit::{AuditLog, JsonLinesFile};
    let dir =
        std::env::temp_dir().join(format!("ema-server-code-flow-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("as.jsonl");
    let key = Arc::new(SigningKey::generate(Algorithm::ES256, Some("audit-1".into())).unwrap());
    let mut o = options();
    o.audit = AuditLog::builder(key)
        .build(JsonLinesFile::create_new(&file).unwrap())
        .unwrap();
    let w = world_with(o).await;
    let back = browse(&w, &authorize_query(&w, ""), "ana").await;
    let (status, body) = redeem(&w, &param(&back, "code").unwrap(), VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?.get("event").cloned())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let redeemed: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "id_jag_redeemed")
        .collect();
    assert_eq!(redeemed.len(), 1, "{events:?}");
    let e = redeemed[0];
    assert_eq!(e["grant_type"], "authorization_code");
    assert_eq!(e["idp_issuer"], w.idp.as_str());
    assert_eq!(e["subject"], "00u8k2Lq91");
    assert_eq!(e["client_id"], "ide");
    assert_eq!(e["resource"], w.resource.as_str());
    // The link to the IdP sign-in: the digest of the IdP and the ID token's `jti`.
    assert!(e["id_jag"].as_str().is_some_and(|d| !d.is_empty()), "{e}");
    let jti = {
        use base64::Engine as _;
        let payload = body["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["jti"].clone()
    };
    assert_eq!(e["access_token_jti"], jti);
}
