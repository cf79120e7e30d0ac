//! The bearer layer's revocation check (RV-15, RV-16, RV-17, RV-28, D-38): every request,
//! cache hits included, is judged against the mirror; revoked -> 401 `invalid_token` "token
//! revoked"; a stale mirror -> 503 with `Retry-After`. Each refusal has its positive control.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use ema_grant::AccessTokenIssuer;
use ema_grant::revocation::{LedgerMirror, MemoryLedger, RevocationKind, RevocationScope};
use ema_id_jag::{ClientId, Issuer, Resource, ScopeSet};
use ema_jose::{Algorithm, FixedClock, KeyRing, SigningKey, UnixTime};
use ema_server::{BearerAuth, Principal};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const AS: &str = "https://auth.tasks.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const USER: &str = "u-17";

struct World {
    keys: Arc<KeyRing>,
    ledger: MemoryLedger,
    mirror: Arc<LedgerMirror>,
    app: Router,
}

fn world_at(now: UnixTime) -> World {
    let keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let ledger = MemoryLedger::new();
    let mirror = Arc::new(LedgerMirror::new());
    pollster::block_on(mirror.sync(&ledger, NOW)).unwrap();
    let auth = BearerAuth::builder(RESOURCE, AS)
        .jwks(keys.jwks())
        .clock(Arc::new(FixedClock(now)))
        .revocation_mirror(mirror.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/mcp",
            post(|who: Principal| async move { who.subject().to_owned() }),
        )
        .layer(auth);
    World {
        keys,
        ledger,
        mirror,
        app,
    }
}

fn world() -> World {
    world_at(NOW)
}

impl World {
    fn token(&self, iat: UnixTime, jti: Option<&str>) -> String {
        let issuer = AccessTokenIssuer::new(Issuer::new(AS), self.keys.clone());
        let mut claims = issuer
            .claims(
                USER.into(),
                Resource::new(RESOURCE),
                ClientId::new("tc_1"),
                iat,
            )
            .unwrap();
        claims.scope = Some(ScopeSet::parse("tasks.read").unwrap());
        if let Some(jti) = jti {
            claims.jti = ema_id_jag::JwtId::new(jti);
        }
        issuer.sign(&claims).unwrap()
    }

    fn sync(&self, at: UnixTime) {
        pollster::block_on(self.mirror.sync(&self.ledger, at)).unwrap();
    }

    fn revoke(&self, at: UnixTime) {
        let local = RevocationScope::local(AS);
        self.ledger
            .revoke_subject_now(&local, USER, at, RevocationKind::Admin, at);
        self.sync(NOW);
    }

    async fn call(&self, token: &str) -> (StatusCode, http::HeaderMap, String) {
        let req = Request::post("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let resp = ServiceExt::<Request<Body>>::oneshot(self.app.clone(), req)
            .await
            .map_err(|e: Infallible| e)
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }
}

fn assert_revoked((status, headers, body): &(StatusCode, http::HeaderMap, String)) {
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{body}");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains("token revoked"), "{challenge}");
    assert!(body.contains("token revoked"), "{body}");
}

// RV-15, RV-17: a token accepted (and cached) before the revocation is refused on its next
// request, a cache hit.
#[tokio::test]
async fn rv17_cached_token_is_rechecked_on_every_request() {
    let w = world();
    let token = w.token(NOW, None);
    for _ in 0..2 {
        let (status, _, body) = w.call(&token).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, USER));
    }
    w.revoke(NOW);
    assert_revoked(&w.call(&token).await);
}

// D-38 at the resource server: the watermark's own second is revoked, the next is not.
#[tokio::test]
async fn d38_watermark_is_inclusive_at_the_second_boundary() {
    let w = world_at(NOW.plus(5));
    w.revoke(NOW.minus(1));
    let at_mark = w.token(NOW.minus(1), None);
    let after = w.token(NOW, None);
    assert_revoked(&w.call(&at_mark).await);
    assert_eq!(w.call(&after).await.0, StatusCode::OK);
}

// RV-15: a denied `jti` (RFC 7009 at the AS) is refused; another token of the subject passes.
#[tokio::test]
async fn rv15_denied_jti_is_refused() {
    let w = world();
    let denied = w.token(NOW, Some("jti-denied"));
    let other = w.token(NOW, Some("jti-other"));
    w.ledger
        .deny_token_now(AS, "jti-denied", NOW.plus(300), NOW);
    w.sync(NOW);
    assert_revoked(&w.call(&denied).await);
    assert_eq!(w.call(&other).await.0, StatusCode::OK);
}

// RV-28: account-enabled leaves the tokens from before the watermark dead; a token issued after
// the watermark passes once the flag is cleared, and not while it is set.
#[tokio::test]
async fn rv28_account_enabled_leaves_old_tokens_dead() {
    let w = world_at(NOW.plus(10));
    let old = w.token(NOW, None);
    let new = w.token(NOW.plus(5), None);
    let local = RevocationScope::local(AS);
    w.ledger
        .revoke_subject_now(&local, USER, NOW, RevocationKind::AccountDisabled, NOW);
    w.ledger
        .disable_now(&local, USER, RevocationKind::AccountDisabled, NOW);
    w.sync(NOW);
    assert_revoked(&w.call(&new).await);
    w.ledger.enable_now(&local, USER, NOW.plus(1));
    w.sync(NOW.plus(1));
    assert_revoked(&w.call(&old).await);
    assert_eq!(w.call(&new).await.0, StatusCode::OK);
}

// RV-16: past the staleness bound, 503 with Retry-After and no challenge; at the bound, served.
#[tokio::test]
async fn rv16_stale_mirror_answers_503_with_retry_after() {
    // Synced at NOW; the layer's clock is 60 s later: still fresh.
    let fresh = world_at(NOW.plus(60));
    let token = fresh.token(NOW, None);
    assert_eq!(fresh.call(&token).await.0, StatusCode::OK);
    // 61 s later: stale.
    let stale = world_at(NOW.plus(61));
    let token = stale.token(NOW, None);
    let (status, headers, body) = stale.call(&token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("temporarily_unavailable"), "{body}");
    assert_eq!(headers["retry-after"], "5");
    assert!(headers.get("www-authenticate").is_none());
    // A sync brings it back.
    stale.sync(NOW.plus(61));
    assert_eq!(stale.call(&token).await.0, StatusCode::OK);
}

mod as_routes {
    //! The AS side: the admin revoke route (constant-time bearer secret, RV-12, RV-13) and the
    //! RFC 7009 endpoint mounted when the grant has a revoker (RV-20), both audited (RV-29).

    use super::*;
    use ema_grant::revocation::{LedgerVerdict, MemoryLedger};
    use ema_grant::{ClientCredential, JwtBearerGrant, RegisteredClient, Revoker};
    use ema_id_jag::{Directory, LocalSubject, ResourceConfig, TrustedIssuer};
    use ema_jose::StaticKeySource;
    use ema_metadata::AuthorizationServerMetadata;
    use ema_server::AuthorizationServerRouter;
    use ema_server::audit::{AuditError, AuditLog, AuditSink, Record};
    use std::sync::Mutex;

    /// Keeps the trail's lines in memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl AuditSink for Lines {
        fn write(&mut self, record: &Record<'_>) -> Result<(), AuditError> {
            let line = String::from_utf8(record.line.to_vec()).unwrap();
            self.0.lock().unwrap().push(line);
            Ok(())
        }
    }

    impl Lines {
        fn kinds(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["event"]["kind"].as_str().map(str::to_owned)
                })
                .collect()
        }
    }

    const IDP: &str = "https://idp.acme.example";
    const SECRET: &str = "admin-s3cret";

    struct As {
        app: Router,
        revoker: Revoker,
        keys: Arc<KeyRing>,
        lines: Lines,
    }

    fn as_app(now: UnixTime) -> As {
        let keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, Some("as".into())).unwrap(),
        ));
        let idp_keys =
            KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("idp".into())).unwrap());
        let revoker = Revoker::new(MemoryLedger::new(), AS);
        let grant = JwtBearerGrant::builder(
            AccessTokenIssuer::new(Issuer::new(AS), keys.clone()),
            StaticKeySource::new().with_issuer(IDP, idp_keys.jwks()),
            Directory::new().with_provisioning(|c| Some(LocalSubject::new(c.sub.as_str()))),
        )
        .trust(TrustedIssuer::new(IDP))
        .resource(ResourceConfig::new(RESOURCE, ["tasks.read"]))
        .client(RegisteredClient::new(
            "tc_1",
            ClientCredential::secret("s3cr3t"),
        ))
        .revoker(revoker.clone())
        .build()
        .unwrap();
        let mut metadata = AuthorizationServerMetadata::new(AS, format!("{AS}/token"));
        metadata
            .extra
            .insert("revocation_endpoint".into(), format!("{AS}/revoke").into());
        let lines = Lines::default();
        let audit = AuditLog::builder(keys.active())
            .build(lines.clone())
            .unwrap();
        let app = AuthorizationServerRouter::builder(grant, &metadata)
            .clock(Arc::new(FixedClock(now)))
            .admin_secret(SECRET)
            .audit(audit)
            .build();
        As {
            app,
            revoker,
            keys,
            lines,
        }
    }

    async fn post(
        app: &Router,
        uri: &str,
        auth: &str,
        ct: &str,
        body: &str,
    ) -> (StatusCode, String) {
        let req = Request::post(uri)
            .header("authorization", auth)
            .header("content-type", ct)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = ServiceExt::<Request<Body>>::oneshot(app.clone(), req)
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn admin(a: &As, auth: &str, body: &str) -> (StatusCode, String) {
        post(
            &a.app,
            ema_server::ADMIN_REVOKE_PATH,
            auth,
            "application/json",
            body,
        )
        .await
    }

    // The admin route: wrong or missing secret -> 401, nothing written; bad body -> 400;
    // future event (RV-13) -> 400; the right secret revokes the IdP subject and its mapped
    // local subject (RV-12) and the trail records each change (RV-29).
    #[tokio::test]
    async fn admin_route_applies_the_revoke_command() {
        let a = as_app(NOW);
        let scope = RevocationScope::idp(IDP, None);
        a.revoker.record_mapping(&scope, "00u1", "alice");
        let body = format!(r#"{{"issuer":"{IDP}","subject":"00u1","action":"disable"}}"#);
        for auth in [
            "Bearer wrong",
            "Basic YWRtaW46YWRtaW4=",
            "",
            "Bearer admin-s3cre",
        ] {
            let (status, text) = admin(&a, auth, &body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth}: {text}");
        }
        let allowed = a
            .revoker
            .check_id_jag(IDP, None, "00u1", NOW)
            .await
            .unwrap();
        assert_eq!(allowed, LedgerVerdict::Allowed);
        let bearer = format!("Bearer {SECRET}");
        for bad in [
            "{",
            r#"{"subject":"x","extra":1}"#,
            r#"{"subject":"x","action":"nuke"}"#,
        ] {
            let (status, text) = admin(&a, &bearer, bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
        }
        let future = format!(
            r#"{{"subject":"00u1","issuer":"{IDP}","at":{}}}"#,
            NOW.as_secs() + 61
        );
        let (status, text) = admin(&a, &bearer, &future).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("invalid_request"), "{text}");
        let (status, text) = admin(&a, &bearer, &body).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::OK, r#"{"changes":4}"#)
        );
        let revoked = a
            .revoker
            .check_id_jag(IDP, None, "00u1", NOW.plus(100))
            .await
            .unwrap();
        assert!(matches!(revoked, LedgerVerdict::Revoked(_)));
        let mirror = LedgerMirror::new();
        mirror.sync(a.revoker.ledger(), NOW).await.unwrap();
        assert!(matches!(
            mirror.check_access_token(AS, "alice", NOW, "j", NOW),
            ema_grant::MirrorVerdict::Revoked(_)
        ));
        let kinds = a.lines.kinds();
        assert_eq!(
            kinds.iter().filter(|k| *k == "revocation_applied").count(),
            4,
            "{kinds:?}"
        );
        // The subject itself never reaches the trail.
        let text = a.lines.0.lock().unwrap().join("\n");
        assert!(!text.contains("alice") && !text.contains("00u1"), "{text}");
    }

    // RV-20 over HTTP: mounted at the metadata's path; the owner's token is denied, a token of
    // another client is not; unauthenticated -> 401.
    #[tokio::test]
    async fn rfc7009_endpoint_is_mounted_and_audited() {
        let a = as_app(NOW);
        let issuer = AccessTokenIssuer::new(Issuer::new(AS), a.keys.clone());
        let mk = |client: &str| {
            let claims = issuer
                .claims(
                    USER.into(),
                    Resource::new(RESOURCE),
                    ClientId::new(client),
                    NOW,
                )
                .unwrap();
            (
                issuer.sign(&claims).unwrap(),
                claims.jti.as_str().to_owned(),
            )
        };
        let (mine, mine_jti) = mk("tc_1");
        let (theirs, theirs_jti) = mk("tc_other");
        let basic = "Basic dGNfMTpzM2NyM3Q="; // tc_1:s3cr3t
        let form = "application/x-www-form-urlencoded";
        let (status, _) = post(
            &a.app,
            "/revoke",
            "Basic eDp5",
            form,
            &format!("token={mine}"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = post(&a.app, "/revoke", basic, form, &format!("token={theirs}")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = post(
            &a.app,
            "/revoke",
            basic,
            form,
            &format!("token={mine}&token_type_hint=bogus"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let mirror = LedgerMirror::new();
        mirror.sync(a.revoker.ledger(), NOW).await.unwrap();
        assert_eq!(
            mirror.check_access_token(AS, USER, NOW, &mine_jti, NOW),
            ema_grant::MirrorVerdict::Revoked(ema_grant::RevocationReason::TokenDenied)
        );
        assert_eq!(
            mirror.check_access_token(AS, USER, NOW, &theirs_jti, NOW),
            ema_grant::MirrorVerdict::Allowed
        );
        let kinds = a.lines.kinds();
        assert_eq!(kinds, ["revocation_applied"]);
    }
}

// RV-15: a revoked DPoP-bound token is refused with the DPoP challenge; before the revocation
// the same token with a fresh proof is served.
#[tokio::test]
async fn rv15_revoked_dpop_token_gets_a_dpop_challenge() {
    let w = world();
    let holder = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let issuer = AccessTokenIssuer::new(Issuer::new(AS), w.keys.clone());
    let mut claims = issuer
        .claims(
            USER.into(),
            Resource::new(RESOURCE),
            ClientId::new("tc_1"),
            NOW,
        )
        .unwrap();
    claims.scope = Some(ScopeSet::parse("tasks.read").unwrap());
    claims.cnf_jkt = Some(holder.verifying_key().thumbprint().to_owned());
    let token = issuer.sign(&claims).unwrap();
    let proof = |jti: &str| {
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert(
            "jwk".into(),
            serde_json::Value::Object(holder.verifying_key().public_jwk().clone()),
        );
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let claims = serde_json::json!({
            "jti": jti, "htm": "POST", "htu": RESOURCE, "iat": NOW.as_secs(),
            "ath": ema_jose::base64url::encode(hash.as_ref()),
        });
        holder
            .sign_with_header(header, claims.to_string().as_bytes())
            .unwrap()
    };
    let call = |jti: &'static str| {
        let req = Request::post("/mcp")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof(jti))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        ServiceExt::<Request<Body>>::oneshot(w.app.clone(), req)
    };
    let ok = call("p1").await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    w.revoke(NOW);
    let refused = call("p2").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains("token revoked"), "{challenge}");
}
