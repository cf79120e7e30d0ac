//! The SSF push endpoint on the authorization server's router (RV-4, D-37, RV-14, RV-29): 401
//! before the body is read, 202 only after the ledger write, `400 {"err", "description"}`,
//! 503 while the ledger or the trail cannot take the change, and every authenticated push on
//! the trail. Each refusal has its positive control.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use ema_audit::{AuditError, AuditLog, AuditSink, Record};
use ema_grant::revocation::{LedgerVerdict, MemoryLedger};
use ema_grant::ssf::{DEFAULT_PUSH_PATH, SECEVENT_CONTENT_TYPE, SECEVENT_TYP, SsfReceiver};
use ema_grant::ssf::{TransmitterTrust, event_type};
use ema_grant::{
    AccessTokenIssuer, ClientCredential, InMemoryReplayStore, JwtBearerGrant, RegisteredClient,
    Revoker,
};
use ema_id_jag::{Directory, Issuer, LocalSubject, ResourceConfig, TrustedIssuer};
use ema_jose::{Algorithm, FixedClock, JwkSet, KeyRing, SigningKey, StaticKeySource, UnixTime};
use ema_metadata::AuthorizationServerMetadata;
use ema_server::AuthorizationServerRouter;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const AS: &str = "https://auth.tasks.example";
const IDP: &str = "https://idp.acme.example";
const AUD: &str = "https://auth.tasks.example/ssf/events";
const AUTH: &str = "Bearer ssf-0f3a9c";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const USER: &str = "00u8k2Lq91";

/// A trail sink keeping the events, that can be made to fail.
#[derive(Clone, Default)]
struct Events {
    lines: Arc<Mutex<Vec<Value>>>,
    fail: Arc<Mutex<bool>>,
}

impl AuditSink for Events {
    fn write(&mut self, record: &Record<'_>) -> Result<(), AuditError> {
        if *self.fail.lock().unwrap() {
            return Err(AuditError::Failed);
        }
        let line: Value = serde_json::from_slice(record.line).unwrap();
        if let Some(event) = line.get("event") {
            self.lines.lock().unwrap().push(event.clone());
        }
        Ok(())
    }
}

struct World {
    key: SigningKey,
    revoker: Revoker,
    replay: ema_grant::DynReplayStore,
    events: Events,
    app: Router,
}

fn world() -> World {
    let key = SigningKey::generate(Algorithm::ES256, Some("set-1".into())).unwrap();
    let idp_keys =
        KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("idp".into())).unwrap());
    let as_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as".into())).unwrap(),
    ));
    let revoker = Revoker::new(MemoryLedger::new(), AS);
    let replay = ema_grant::DynReplayStore::new(InMemoryReplayStore::new(1000));
    let grant = JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(AS), as_keys),
        StaticKeySource::new().with_issuer(IDP, idp_keys.jwks()),
        Directory::new().with_provisioning(|c| Some(LocalSubject::new(c.sub.as_str()))),
    )
    .trust(TrustedIssuer::new(IDP))
    .resource(ResourceConfig::new(
        "https://mcp.tasks.example/mcp",
        ["tasks.read"],
    ))
    .client(RegisteredClient::new(
        "tc_5f2a91",
        ClientCredential::secret("s3cr3t"),
    ))
    .replay_store(replay.clone())
    .revoker(revoker.clone())
    .build()
    .unwrap();
    let receiver = SsfReceiver::with_dyn_replay(revoker.clone(), replay.clone()).transmitter(
        TransmitterTrust::new(
            IDP,
            JwkSet::from_keys([key.verifying_key().clone()]),
            AUTH,
            AUD,
        )
        .with_gtr_jwt(format!("{AS}{}", ema_grant::ssf::DEFAULT_GTR_PATH)),
    );
    let events = Events::default();
    let audit_key = Arc::new(SigningKey::generate(Algorithm::ES256, Some("audit".into())).unwrap());
    let audit = AuditLog::builder(audit_key).build(events.clone()).unwrap();
    let metadata = AuthorizationServerMetadata::new(AS, format!("{AS}/token"));
    let app = AuthorizationServerRouter::builder(grant, &metadata)
        .clock(Arc::new(FixedClock(NOW)))
        .audit(audit)
        .ssf(receiver, DEFAULT_PUSH_PATH)
        .global_token_revocation(ema_grant::ssf::DEFAULT_GTR_PATH)
        .build();
    World {
        key,
        revoker,
        replay,
        events,
        app,
    }
}

impl World {
    fn set(&self, jti: &str, kind: &str) -> String {
        let claims = json!({
            "iss": IDP, "aud": AUD, "jti": jti, "iat": NOW.as_secs() - 5,
            "sub_id": {"format": "iss_sub", "iss": IDP, "sub": USER},
            "events": {kind: {"event_timestamp": NOW.as_secs() - 10}},
        });
        self.key.sign_jwt(Some(SECEVENT_TYP), &claims).unwrap()
    }

    async fn push(&self, auth: Option<&str>, body: Body) -> (StatusCode, http::HeaderMap, Value) {
        let mut req =
            Request::post(DEFAULT_PUSH_PATH).header("content-type", SECEVENT_CONTENT_TYPE);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = ServiceExt::<Request<Body>>::oneshot(self.app.clone(), req.body(body).unwrap())
            .await
            .map_err(|e: Infallible| e)
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, headers, body)
    }

    fn revoked(&self) -> bool {
        matches!(
            pollster::block_on(self.revoker.check_id_jag(IDP, None, USER, NOW.minus(10))).unwrap(),
            LedgerVerdict::Revoked(_)
        )
    }

    fn kinds(&self) -> Vec<String> {
        self.events
            .lines
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A body that records whether it was ever read: D-37 says 401 comes before any parsing.
fn watched(read: Arc<std::sync::atomic::AtomicBool>) -> Body {
    struct Watched(Arc<std::sync::atomic::AtomicBool>);
    impl futures_core::Stream for Watched {
        type Item = Result<axum::body::Bytes, std::io::Error>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            std::task::Poll::Ready(None)
        }
    }
    Body::from_stream(Watched(read))
}

// RV-4, D-37: no or wrong Authorization -> 401 with the body never read and nothing recorded;
// the right value -> 202 with no body, after the ledger write, and on the trail (RV-29).
#[tokio::test]
async fn rv4_d37_push_endpoint_authenticates_first_and_answers_202_after_the_write() {
    let w = world();
    for auth in [None, Some("Bearer wrong")] {
        let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (status, headers, body) = w.push(auth, watched(read.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(headers.contains_key("www-authenticate"));
        assert!(body.get("err").is_none(), "{body}");
        assert!(
            !read.load(std::sync::atomic::Ordering::SeqCst),
            "body read before 401"
        );
    }
    assert!(
        w.kinds().is_empty(),
        "nothing recorded for an unauthenticated push"
    );
    // Control: an authenticated push reads its body (here empty: invalid_request).
    let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (status, _, body) = w.push(Some(AUTH), watched(read.clone())).await;
    assert_eq!(
        (status, body["err"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    assert!(read.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(w.kinds(), ["security_event_received"]);
    w.events.lines.lock().unwrap().clear();
    assert!(!w.revoked());
    let (status, _, body) = w
        .push(
            Some(AUTH),
            Body::from(w.set("j-1", event_type::SESSION_REVOKED)),
        )
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    assert!(w.revoked());
    let events = w.events.lines.lock().unwrap().clone();
    assert_eq!(events[0]["kind"], "security_event_received");
    assert_eq!(events[0]["source"], "ssf");
    assert_eq!(events[0]["issuer"], IDP);
    assert_eq!(events[0]["jti"], "j-1");
    assert_eq!(events[0]["event_type"], event_type::SESSION_REVOKED);
    assert_eq!(events[0]["outcome"], "accepted:applied");
    assert!(events[0]["subject_digest"].as_str().unwrap().len() == 64);
    assert!(
        !events[0].to_string().contains(USER),
        "subject by digest only"
    );
    assert_eq!(events[1]["kind"], "revocation_applied");
    assert_eq!(events[1]["source"], "ssf");
}

// RV-6, RV-29: a refused SET is 400 {"err", "description"} and is on the trail too; the
// redelivery of an accepted one is 202 and recorded as a duplicate.
#[tokio::test]
async fn rv6_refusals_are_rfc8935_errors_and_recorded() {
    let w = world();
    let (status, _, body) = w.push(Some(AUTH), Body::from("not.a.set")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["err"], "invalid_request");
    assert!(body["description"].is_string());
    let (status, _, body) = w
        .push(
            Some(AUTH),
            Body::from(w.set("j-1", event_type::ACCOUNT_DISABLED)),
        )
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    let (status, _, _) = w
        .push(
            Some(AUTH),
            Body::from(w.set("j-1", event_type::ACCOUNT_DISABLED)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let events = w.events.lines.lock().unwrap().clone();
    let outcomes: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "security_event_received")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "refused:invalid_request",
            "accepted:applied",
            "accepted:duplicate"
        ]
    );
}

// RV-29, RV-14: when the trail refuses the record the transmitter gets 503 and the SET is not
// remembered as received, so its redelivery is processed again (here: the key is free).
#[tokio::test]
async fn rv29_trail_failure_is_503_and_the_set_is_not_remembered() {
    use ema_grant::{ReplayKey, ReplayKind, ReplayStore, Seen};
    let w = world();
    *w.events.fail.lock().unwrap() = true;
    let (status, _, _) = w
        .push(
            Some(AUTH),
            Body::from(w.set("j-9", event_type::SESSION_REVOKED)),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let key = |jti| ReplayKey {
        kind: ReplayKind::SecurityEvent,
        issuer: IDP,
        jti,
    };
    assert_eq!(
        w.replay
            .check_and_insert(key("j-9"), NOW.plus(60), NOW)
            .await,
        Ok(Seen::First)
    );
    // Control: a SET recorded on the trail stays remembered.
    let ok = world();
    let (status, _, _) = ok
        .push(
            Some(AUTH),
            Body::from(ok.set("j-8", event_type::SESSION_REVOKED)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        ok.replay
            .check_and_insert(key("j-8"), NOW.plus(60), NOW)
            .await,
        Ok(Seen::Again)
    );
}

// RV-21, RV-29: the GTR endpoint on the router: 401 without the transmitter's credential
// (nothing recorded), 204 with it, on the trail with source `gtr`.
#[tokio::test]
async fn rv21_gtr_endpoint_revokes_and_records() {
    let w = world();
    let call = |auth: Option<&'static str>| {
        let mut req = Request::post(ema_grant::ssf::DEFAULT_GTR_PATH)
            .header("content-type", "application/json");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let body = json!({"sub_id": {"format": "iss_sub", "iss": IDP, "sub": USER}}).to_string();
        ServiceExt::<Request<Body>>::oneshot(w.app.clone(), req.body(Body::from(body)).unwrap())
    };
    let r = call(Some("Bearer wrong")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(w.kinds().is_empty());
    assert!(!w.revoked());
    let r = call(Some(AUTH)).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(w.revoked());
    let events = w.events.lines.lock().unwrap().clone();
    assert_eq!(events[0]["kind"], "security_event_received");
    assert_eq!(events[0]["source"], "gtr");
    assert_eq!(events[0]["outcome"], "accepted:applied");
    assert_eq!(events[1]["kind"], "revocation_applied");
    assert_eq!(events[1]["source"], "gtr");
}

// RV-21 over the router: a signed JWT (Okta's Universal Logout) authenticates before the body is
// read, and its `jti` is consumed once: the first call revokes, the same assertion again gets 401.
#[tokio::test]
async fn rv21_gtr_signed_jwt_over_http() {
    let w = world();
    let claims = json!({
        "iss": IDP, "sub": IDP, "aud": format!("{AS}{}", ema_grant::ssf::DEFAULT_GTR_PATH),
        "jti": "okta-1", "iat": NOW.as_secs() - 5, "exp": NOW.as_secs() + 55,
    });
    let auth = format!("Bearer {}", w.key.sign_jwt(None, &claims).unwrap());
    let call = |auth: String| {
        let body = json!({"sub_id": {"format": "iss_sub", "iss": IDP, "sub": USER}}).to_string();
        let req = Request::post(ema_grant::ssf::DEFAULT_GTR_PATH)
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(Body::from(body))
            .unwrap();
        ServiceExt::<Request<Body>>::oneshot(w.app.clone(), req)
    };
    let r = call(auth.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(w.revoked());
    let r = call(auth).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
