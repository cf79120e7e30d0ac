//! The MCP authorization code flow at the authorization server, end to end over loopback: the
//! client's authorization request, the AS signing the user in at the IdP as an OpenID Connect
//! relying party, the code, and the `authorization_code` grant issuing the same
//! audience-restricted access token as the jwt-bearer grant; with the IdP's admission policy.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::sync::Arc;

use ema_grant::code_flow::{CodeFlow, s256};
use ema_grant::form::encode_component;
use ema_grant::sign_in::IdpSignIn;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, Clock, FixedClock, KeyRing, SigningKey, StaticKeySource, UnixTime};
use ema_jwks::{FetchPolicy, HttpFetcher};
use ema_metadata::AuthorizationServerMetadata;
use ema_server::*;
use serde_json::Value;

const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const CLIENT_CB: &str = "http://127.0.0.1:33418/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";

struct World {
    idp: String,
    auth: String,
    resource: String,
    as_keys: Arc<KeyRing>,
    browser: reqwest::Client,
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

fn serve(l: tokio::net::TcpListener, app: axum::Router) {
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
}

async fn world() -> World {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(NOW));
    let (idp_l, idp) = listener().await;
    let (as_l, auth) = listener().await;
    let resource = "https://mcp.tasks.example/mcp".to_owned();
    let idp_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
    ));
    let as_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let as_callback = format!("{auth}/idp/callback");

    // The IdP: the AS is its SSO client (relying party) `as-rp`; ana (eng) is assigned to the
    // AS, bob (sales) is not.
    let idp_clients = ClientRegistry::new([idp.clone(), format!("{idp}/token")]).with(
        RegisteredClient::new("as-rp", ClientCredential::secret("rp-secret"))
            .with_redirect_uris([as_callback.clone()]),
    );
    let sso = SsoProvider::new(Issuer::new(&idp), idp_keys.clone(), idp_clients.clone())
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
        )
        .with_relying_party("as-rp", auth.as_str());
    let policy = GroupPolicy::new()
        .with_member("00u8k2Lq91", ["eng"])
        .with_member("00u9zzzzzz", ["sales"])
        .with_rule(GroupRule::new(
            "eng",
            auth.as_str(),
            ScopeSet::parse("tasks.read").unwrap(),
        ));
    let exchange = TokenExchangeGrant::builder(
        IdJagIssuer::new(Issuer::new(&idp), idp_keys.clone()),
        StaticKeySource::new().with_issuer(&idp, idp_keys.jwks()),
        policy,
    )
    .client_registry(idp_clients)
    .token_endpoint(format!("{idp}/token"))
    .target(TargetServer::new(auth.as_str(), [resource.as_str()]))
    .build()
    .unwrap();
    let idp_router = IdpRouter::builder(exchange, idp_keys.clone())
        .sso(sso)
        .metadata(idp_metadata(&idp))
        .clock(clock.clone())
        .build()
        .unwrap();
    serve(idp_l, idp_router);

    // The AS: the jwt-bearer grant, and the code flow sharing its keys, resolver and ledger.
    let grant = JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(&auth), as_keys.clone()),
        StaticKeySource::new().with_issuer(&idp, idp_keys.jwks()),
        Directory::new().with_provisioning(|c| Some(LocalSubject::new(format!("local-{}", c.sub)))),
    )
    .trust(TrustedIssuer::new(idp.as_str()))
    .resource(
        ResourceConfig::new(resource.as_str(), ["tasks.read", "tasks.write"])
            .with_default_scopes(ScopeSet::parse("tasks.read").unwrap()),
    )
    .client(RegisteredClient::new("ide", ClientCredential::Public).with_redirect_uris([CLIENT_CB]))
    .revocation_ledger(MemoryLedger::new())
    .token_endpoint(format!("{auth}/token"))
    .build()
    .unwrap();
    let flow = CodeFlow::for_grant(&grant);
    let sign_in = IdpSignIn::new(
        idp.as_str(),
        format!("{idp}/authorize"),
        "as-rp",
        as_callback,
    );
    let fetcher = HttpFetcher::new(FetchPolicy::insecure_loopback_development()).unwrap();
    // Client ID Metadata Documents through a loopback-development fetcher with a 4 KiB cap.
    let documents =
        HttpFetcher::new(FetchPolicy::insecure_loopback_development().with_max_body(4096)).unwrap();
    let code = CodeFlowConfig::new(flow, sign_in, &format!("{idp}/token"), "rp-secret", fetcher)
        .unwrap()
        .with_client_metadata_documents(documents);
    let mut meta = AuthorizationServerMetadata::new(auth.as_str(), format!("{auth}/token"))
        .with_id_jag_profile();
    advertise_code_flow(&mut meta);
    let as_router = AuthorizationServerRouter::builder(grant, &meta)
        .clock(clock)
        .code_flow(code)
        .build();
    serve(as_l, as_router);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    World {
        idp,
        auth,
        resource,
        as_keys,
        browser,
    }
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
    r.headers()["location"].to_str().unwrap().to_owned()
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
async fn browse(w: &World, query: &str, user: &str, password: &str) -> String {
    let r = w
        .browser
        .get(format!("{}/authorize?{query}", w.auth))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
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
    let idp_query = to_idp.split_once('?').unwrap().1.to_owned();
    let r = w
        .browser
        .post(format!("{}/authorize", w.idp))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{idp_query}&username={user}&password={password}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "IdP login");
    let callback = location(&r);
    assert!(
        callback.starts_with(&format!("{}/idp/callback?", w.auth)),
        "{callback}"
    );
    let r = w.browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    location(&r)
}

async fn redeem(w: &World, code: &str, verifier: &str) -> (u16, Value) {
    let r = w
        .browser
        .post(format!("{}/token", w.auth))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&client_id=ide&code={code}&code_verifier={verifier}&redirect_uri={}&resource={}",
            encode_component(CLIENT_CB),
            encode_component(&w.resource)
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn code_flow_signs_in_at_the_idp_and_issues_an_audience_restricted_token() {
    let w = world().await;
    let back = browse(&w, &authorize_query(&w, ""), "ana", "ana-password").await;
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
    // Reused: refused (and the token revoked in the ledger, see ema-grant's unit test).
    let (status, body) = redeem(&w, &code, VERIFIER).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn user_not_assigned_at_the_idp_is_refused_at_login() {
    let w = world().await;
    let back = browse(&w, &authorize_query(&w, ""), "bob", "bob-password").await;
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
        .get(format!("{}/authorize?{q}", w.auth))
        .send()
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
        .get(format!("{}/authorize?{q}", w.auth))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // A wrong verifier at the token endpoint.
    let back = browse(&w, &authorize_query(&w, ""), "ana", "ana-password").await;
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
        .get(format!("{}/.well-known/oauth-authorization-server", w.auth))
        .send()
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
        .get(format!("{}/authorize?{q}", w.auth))
        .send()
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
        .get(format!("{}/authorize?{q}", w.auth))
        .send()
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
