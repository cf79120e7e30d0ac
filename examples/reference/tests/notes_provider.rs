//! The mock notes provider keeps the OAuth rules the vault relies on: exact redirect URIs, PKCE
//! S256 required, one-time codes, refresh-token rotation (the old one stops working, and
//! presenting it again ends the grant), RFC 7009 revocation, confidential clients, and bearer
//! tokens that expire. Each refusal has its accepted counterpart.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests may unwrap"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use ema_examples::notes::{NotesConfig, NotesProvider};
use ema_grant::form::encode_component;
use ema_grant::pkce_challenge;
use ema_jose::{Clock, UnixTime};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const REDIRECT: &str = "http://127.0.0.1:7000/connect/notes/callback";
const VERIFIER: &str = "a-verifier-long-enough-to-be-a-real-pkce-verifier-0123";

struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(1_767_225_600 + self.0.load(Ordering::SeqCst))
    }
}

fn provider() -> (NotesProvider, Arc<TestClock>) {
    let clock = Arc::new(TestClock(AtomicU64::new(0)));
    let p = NotesProvider::new(
        NotesConfig {
            issuer: "http://127.0.0.1:7001".into(),
            client_id: "mcp-notes".into(),
            client_secret: "notes-secret".into(),
            redirect_uris: vec![REDIRECT.into()],
            user: "ana@notes.example".into(),
            access_token_lifetime_secs: 60,
        },
        clock.clone(),
    );
    (p, clock)
}

struct Reply {
    status: u16,
    location: String,
    body: Value,
}

async fn send(app: &Router, req: http::Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        location,
        body,
    }
}

async fn authorize(app: &Router, redirect: &str, challenge: Option<&str>) -> Reply {
    let mut q = format!(
        "/authorize?response_type=code&client_id=mcp-notes&redirect_uri={}&state=s1",
        encode_component(redirect)
    );
    if let Some(c) = challenge {
        q.push_str(&format!("&code_challenge={c}&code_challenge_method=S256"));
    }
    send(app, http::Request::get(q).body(Body::empty()).unwrap()).await
}

fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn post(app: &Router, path: &str, body: String, basic: Option<(&str, &str)>) -> Reply {
    let mut req =
        http::Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        req = req.header("authorization", format!("Basic {b}"));
    }
    send(app, req.body(Body::from(body)).unwrap()).await
}

const CLIENT: Option<(&str, &str)> = Some(("mcp-notes", "notes-secret"));

async fn code(app: &Router) -> String {
    let r = authorize(app, REDIRECT, Some(&pkce_challenge(VERIFIER))).await;
    assert_eq!(r.status, 302);
    let q = query(&r.location);
    assert_eq!(
        (q["state"].as_str(), q["iss"].as_str()),
        ("s1", "http://127.0.0.1:7001")
    );
    q["code"].clone()
}

fn exchange(code: &str, verifier: &str) -> String {
    format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
        encode_component(REDIRECT)
    )
}

async fn notes(app: &Router, token: &str) -> u16 {
    send(
        app,
        http::Request::get("/api/notes")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .status
}

#[tokio::test]
async fn authorize_checks_the_client_the_redirect_and_pkce() {
    let (p, _) = provider();
    let app = p.router();
    // Not the registered URI (a prefix of it): a page, never a redirect.
    let r = authorize(
        &app,
        "http://127.0.0.1:7000/connect/notes",
        Some(&pkce_challenge(VERIFIER)),
    )
    .await;
    assert_eq!((r.status, r.location.as_str()), (400, ""));
    // No PKCE: the error goes to the redirect URI.
    let r = authorize(&app, REDIRECT, None).await;
    assert_eq!(r.status, 302);
    assert_eq!(query(&r.location)["error"], "invalid_request");
    // Everything right: a code.
    assert!(!code(&app).await.is_empty());
}

#[tokio::test]
async fn codes_work_once_with_their_verifier_and_a_confidential_client() {
    let (p, _) = provider();
    let app = p.router();
    let c = code(&app).await;
    // Wrong client secret, then a wrong verifier: refused (and the code is spent by the latter).
    let r = post(
        &app,
        "/token",
        exchange(&c, VERIFIER),
        Some(("mcp-notes", "nope")),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let r = post(&app, "/token", exchange(&c, "another-verifier"), CLIENT).await;
    assert_eq!(r.body["error"], "invalid_grant");
    let r = post(&app, "/token", exchange(&c, VERIFIER), CLIENT).await;
    assert_eq!(r.body["error"], "invalid_grant");
    // A fresh code with the right verifier, client_secret_post: tokens; once only.
    let c = code(&app).await;
    let body = format!(
        "{}&client_id=mcp-notes&client_secret=notes-secret",
        exchange(&c, VERIFIER)
    );
    let r = post(&app, "/token", body.clone(), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["expires_in"], 60);
    let r = post(&app, "/token", body, None).await;
    assert_eq!(r.body["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_ends_the_grant() {
    let (p, clock) = provider();
    let app = p.router();
    let c = code(&app).await;
    let r = post(&app, "/token", exchange(&c, VERIFIER), CLIENT).await;
    let (at1, rt1) = (
        r.body["access_token"].as_str().unwrap().to_owned(),
        r.body["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(notes(&app, &at1).await, 200);
    clock.0.store(61, Ordering::SeqCst);
    assert_eq!(notes(&app, &at1).await, 401, "expired");
    let r = post(
        &app,
        "/token",
        format!("grant_type=refresh_token&refresh_token={rt1}"),
        CLIENT,
    )
    .await;
    assert_eq!(r.status, 200);
    let at2 = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(notes(&app, &at2).await, 200);
    assert_eq!(p.refreshes(), 1);
    // The rotated-away token: refused, and the whole grant ends.
    let r = post(
        &app,
        "/token",
        format!("grant_type=refresh_token&refresh_token={rt1}"),
        CLIENT,
    )
    .await;
    assert_eq!(r.body["error"], "invalid_grant");
    assert_eq!(notes(&app, &at2).await, 401);
    assert_eq!(p.live_tokens("ana@notes.example"), 0);
}

#[tokio::test]
async fn revoking_the_refresh_token_ends_the_grant() {
    let (p, _) = provider();
    let app = p.router();
    let c = code(&app).await;
    let r = post(&app, "/token", exchange(&c, VERIFIER), CLIENT).await;
    let at = r.body["access_token"].as_str().unwrap().to_owned();
    let rt = r.body["refresh_token"].as_str().unwrap().to_owned();
    // Without client authentication: refused, nothing revoked.
    let r = post(&app, "/revoke", format!("token={rt}"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(notes(&app, &at).await, 200);
    let r = post(
        &app,
        "/revoke",
        format!("token={rt}&token_type_hint=refresh_token"),
        CLIENT,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(notes(&app, &at).await, 401);
    assert_eq!(p.revocations(), 1);
    // Unknown tokens: 200 (RFC 7009), nothing counted.
    let r = post(&app, "/revoke", "token=unknown".into(), CLIENT).await;
    assert_eq!(r.status, 200);
    assert_eq!(p.revocations(), 1);
}
