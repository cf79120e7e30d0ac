//! The reference authorization server's `[code_flow]` from the development configuration, as
//! an MCP client that is not EMA meets it (issue 14): the registered public client
//! `mcp-client` runs authorization code + PKCE S256, the user signs in at the reference IdP,
//! the browser carries the AS's sign-in cookie back to the callback, the code becomes an access
//! token for the MCP server; the same code again is refused. A browser that drops the cookie
//! does not get a code. Loopback, OS-chosen ports.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::sync::Arc;

use ema_examples::config::defaults;
use ema_examples::{serve, servers};
use ema_grant::code_flow::s256;
use ema_grant::form::encode_component;
use ema_jose::{Clock, SystemClock};
use serde_json::Value;

const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";

struct Servers {
    auth: String,
    mcp: String,
}

async fn start() -> Servers {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_listener, idp) = serve::bind(loopback).await.unwrap();
    let (as_listener, auth) = serve::bind(loopback).await.unwrap();
    let mcp = "http://127.0.0.1:9/mcp".to_owned();
    let notes = "http://127.0.0.1:9/notes".to_owned();
    let idp_cfg = defaults::idp(&idp, &auth, &mcp, &notes);
    let idp_app = servers::idp_app(&idp_cfg, &idp, clock.clone()).unwrap();
    let mut as_cfg = defaults::authorization_server(&idp, &auth, &mcp, &notes);
    for trusted in &mut as_cfg.trusted_issuers {
        trusted.jwks_url = Some(format!("{idp}{}", idp_cfg.endpoints.jwks));
    }
    let as_app = servers::authorization_server_app(&as_cfg, &auth, clock).unwrap();
    for (listener, app) in [(idp_listener, idp_app), (as_listener, as_app)] {
        tokio::spawn(serve::serve(listener, app, std::future::pending()));
    }
    Servers { auth, mcp }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
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

/// The browser up to the IdP's redirect back to the AS: returns that callback URL and the
/// AS's sign-in cookie (`name=value`).
async fn sign_in(s: &Servers, user: &str) -> (String, String) {
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&state=st-9&code_challenge={}&code_challenge_method=S256&resource={}",
        defaults::DEV_CODE_FLOW_CLIENT,
        encode_component(defaults::DEV_CODE_FLOW_REDIRECT),
        s256(VERIFIER),
        encode_component(&s.mcp),
    );
    let r = http()
        .get(format!("{}/authorize?{query}", s.auth))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let to_idp = location(&r);
    let (idp_authorize, idp_query) = to_idp.split_once('?').unwrap();
    let r = http()
        .post(idp_authorize)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "{idp_query}&username={user}&password={user}-password"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    (location(&r), cookie)
}

async fn redeem(s: &Servers, code: &str) -> (u16, Value) {
    let r = http()
        .post(format!("{}/token", s.auth))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&client_id={}&code={code}&code_verifier={VERIFIER}&redirect_uri={}",
            defaults::DEV_CODE_FLOW_CLIENT,
            encode_component(defaults::DEV_CODE_FLOW_REDIRECT),
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
async fn the_reference_as_runs_the_code_flow_for_a_registered_public_client() {
    let s = start().await;
    let (callback, cookie) = sign_in(&s, "ana").await;
    assert!(cookie.starts_with("ema_sign_in="), "{cookie}");
    // Without the cookie (another browser): no code.
    let r = http().get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // With it: back to the client with the code, `state` and `iss`.
    let r = http()
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let back = location(&r);
    assert!(back.starts_with(defaults::DEV_CODE_FLOW_REDIRECT), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-9"));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.auth.as_str()));
    let code = param(&back, "code").unwrap();
    let (status, body) = redeem(&s, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], s.mcp.as_str());
    // The same code again: refused.
    let (status, body) = redeem(&s, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn the_reference_as_refuses_a_user_the_idp_did_not_assign() {
    let s = start().await;
    let (callback, cookie) = sign_in(&s, "bob").await;
    let r = http()
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let back = location(&r);
    // bob is refused at login (the IdP's admission policy); ana, above, is the positive control.
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );
    assert!(param(&back, "code").is_none());
}
