//! RFC 7662 introspection at the authorization server (RS-8, RV-22): the matrix of issue 14.
//! Active; expired, another AS's, unknown and revoked tokens are exactly `{"active":false}`;
//! an unauthenticated or public caller is refused.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use ema_grant::revocation::{RevocationKind, RevocationScope};
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, FixedClock, KeyRing, SigningKey, StaticKeySource, UnixTime};
use ema_metadata::AuthorizationServerMetadata;
use ema_server::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const AS: &str = "https://auth.tasks.example";
const IDP: &str = "https://idp.acme.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const BASIC: &str = "Basic cnM6cnMtc2VjcmV0"; // rs:rs-secret

struct World {
    router: Router,
    tokens: AccessTokenIssuer,
    ledger: Arc<MemoryLedger>,
}

fn world() -> World {
    let keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let tokens = AccessTokenIssuer::new(Issuer::new(AS), keys.clone());
    let ledger = Arc::new(MemoryLedger::new());
    let grant = JwtBearerGrant::builder(
        tokens.clone(),
        StaticKeySource::new(),
        Directory::new().with_provisioning(|c| Some(LocalSubject::new(c.sub.as_str()))),
    )
    .trust(TrustedIssuer::new(IDP))
    .resource(ResourceConfig::new(RESOURCE, ["tasks.read"]))
    .client(RegisteredClient::new(
        "rs",
        ClientCredential::secret("rs-secret"),
    ))
    .client(RegisteredClient::new("ide", ClientCredential::Public))
    .revocation_ledger(ledger.clone())
    .build()
    .unwrap();
    let mut meta = AuthorizationServerMetadata::new(AS, format!("{AS}/token"));
    meta.extra.insert(
        "introspection_endpoint".into(),
        format!("{AS}/introspect").into(),
    );
    let router = AuthorizationServerRouter::builder(grant, &meta)
        .clock(Arc::new(FixedClock(NOW)))
        .build();
    World {
        router,
        tokens,
        ledger,
    }
}

fn mint(tokens: &AccessTokenIssuer, sub: &str, at: UnixTime) -> (String, AccessTokenClaims) {
    let mut claims = tokens
        .claims(
            sub.into(),
            Resource::new(RESOURCE),
            ClientId::new("agent"),
            at,
        )
        .unwrap();
    claims.scope = Some(ScopeSet::parse("tasks.read").unwrap());
    (tokens.sign(&claims).unwrap(), claims)
}

async fn introspect(w: &World, token: &str, auth: Option<&str>) -> (StatusCode, Value) {
    let mut req =
        Request::post("/introspect").header("content-type", "application/x-www-form-urlencoded");
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let body = format!("token={token}&token_type_hint=access_token");
    let resp = w
        .router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn inactive() -> Value {
    serde_json::json!({"active": false})
}

#[tokio::test]
async fn rs8_active_token_carries_its_claims() {
    let w = world();
    let (token, claims) = mint(&w.tokens, "u-17", NOW);
    let (status, body) = introspect(&w, &token, Some(BASIC)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "u-17");
    assert_eq!(body["aud"], RESOURCE);
    assert_eq!(body["iss"], AS);
    assert_eq!(body["client_id"], "agent");
    assert_eq!(body["scope"], "tasks.read");
    assert_eq!(body["jti"], claims.jti.as_str());
    assert_eq!(body["token_type"], "Bearer");
}

#[tokio::test]
async fn rv22_expired_foreign_unknown_tokens_are_exactly_inactive() {
    let w = world();
    // Expired: issued one lifetime and a second ago.
    let (expired, _) = mint(&w.tokens, "u-17", UnixTime::from_secs(NOW.as_secs() - 301));
    // Another AS's token (other keys, other issuer), and one with this issuer but other keys.
    let other_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let (foreign, _) = mint(
        &AccessTokenIssuer::new(
            Issuer::new("https://auth.other.example"),
            other_keys.clone(),
        ),
        "u-17",
        NOW,
    );
    let (forged, _) = mint(
        &AccessTokenIssuer::new(Issuer::new(AS), other_keys),
        "u-17",
        NOW,
    );
    for token in [
        expired.as_str(),
        foreign.as_str(),
        forged.as_str(),
        "not-a-token",
    ] {
        let (status, body) = introspect(&w, token, Some(BASIC)).await;
        assert_eq!((status, &body), (StatusCode::OK, &inactive()), "{token}");
    }
    // Positive control: a fresh token of this AS is active.
    let (live, _) = mint(&w.tokens, "u-17", NOW);
    assert_eq!(introspect(&w, &live, Some(BASIC)).await.1["active"], true);
}

#[tokio::test]
async fn rv22_revoked_tokens_are_exactly_inactive() {
    let w = world();
    let (denied, claims) = mint(&w.tokens, "u-17", NOW);
    let (other, _) = mint(&w.tokens, "u-18", NOW);
    assert_eq!(introspect(&w, &denied, Some(BASIC)).await.1["active"], true);
    w.ledger
        .deny_token_now(AS, claims.jti.as_str(), claims.exp, NOW);
    assert_eq!(introspect(&w, &denied, Some(BASIC)).await.1, inactive());
    // A subject revoked at the AS (watermark at or after the token's iat).
    assert_eq!(introspect(&w, &other, Some(BASIC)).await.1["active"], true);
    w.ledger.revoke_subject_now(
        &RevocationScope::local(AS),
        "u-18",
        NOW,
        RevocationKind::Admin,
        NOW,
    );
    assert_eq!(introspect(&w, &other, Some(BASIC)).await.1, inactive());
}

#[tokio::test]
async fn rs8_caller_must_authenticate_as_a_confidential_client() {
    let w = world();
    let (token, _) = mint(&w.tokens, "u-17", NOW);
    let (status, body) = introspect(&w, &token, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (status, _) = introspect(&w, &token, Some("Basic cnM6d3Jvbmc=")).await; // rs:wrong
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Positive control.
    assert_eq!(introspect(&w, &token, Some(BASIC)).await.0, StatusCode::OK);
}
