//! SEC-1 across reference authorization-server instances: two AS apps built from one
//! configuration with `redis_url` share a private `redis-server`; the same ID-JAG posted to
//! both at once is redeemed exactly once per round. Redis stopped: 503
//! `temporarily_unavailable`; Redis back: tokens again, same apps, no restart.
//! DP-33, RV-15: two MCP server apps on the same Redis accept a DPoP proof once between them,
//! and a revocation at the AS reaches both through the tailed ledger stream.

// `cfg(test)` marks the shared helper as test code for clippy's `allow-*-in-tests` settings.
#[cfg(test)]
#[path = "../../../crates/ema-grant/tests/grant/redis_server.rs"]
#[allow(dead_code, unreachable_pub, reason = "shared with ema-grant's tests")]
mod redis_server;

// `cfg(test)`: test code for clippy's `allow-*-in-tests` settings, helpers included.
#[cfg(test)]
mod as_on_redis {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use axum::body::Body;
    use ema_examples::config::defaults;
    use ema_examples::servers;
    use ema_grant::revocation::{RevocationKind, RevocationLedger, RevocationScope};
    use ema_id_jag::{ClientId, IdJagGrant, IdJagIssuer, Issuer, Resource, ScopeSet, Subject};
    use ema_jose::{Algorithm, Clock, FixedClock, KeyRing, SigningKey, UnixTime};
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

    async fn post(
        app: &axum::Router,
        jag: &str,
        resource: &str,
    ) -> (StatusCode, serde_json::Value) {
        let body = format!(
            "grant_type={}&assertion={jag}&resource={}",
            ema_grant::form::encode_component(ema_grant::JWT_BEARER),
            ema_grant::form::encode_component(resource)
        );
        let request = Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            // tc_5f2a91:tc-secret
            .header("authorization", "Basic dGNfNWYyYTkxOnRjLXNlY3JldA==")
            .body(Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
    async fn sec1_two_reference_as_instances_on_one_redis() {
        let mut server = super::redis_server::RedisServer::start();
        let idp_keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
        ));
        let resource = format!("{}/mcp", defaults::MCP);
        let mut cfg = defaults::authorization_server(
            defaults::IDP,
            defaults::AS,
            &resource,
            &format!("{}/notes", defaults::MCP),
        );
        cfg.trusted_issuers[0].jwks_url = None;
        cfg.trusted_issuers[0].jwks = Some(idp_keys.jwks().to_public_json().to_string());
        cfg.redis_url = Some(server.url());
        cfg.redis_prefix = Some("as-test".into());
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(NOW));
        let one = servers::authorization_server_app(&cfg, defaults::AS, clock.clone()).unwrap();
        let two = servers::authorization_server_app(&cfg, defaults::AS, clock).unwrap();
        let idp = IdJagIssuer::new(Issuer::new(defaults::IDP), idp_keys);
        let jag = || {
            let mut g = IdJagGrant::new(
                Subject::new("00u8k2Lq91"),
                Issuer::new(defaults::AS),
                ClientId::new("tc_5f2a91"),
            );
            g.resources = vec![Resource::new(resource.as_str())];
            g.scope = Some(ScopeSet::parse("tasks.read").unwrap());
            idp.issue(g, NOW.minus(10)).unwrap().token
        };

        for round in 0..50 {
            let j = jag();
            let (a, b) = tokio::join!(post(&one, &j, &resource), post(&two, &j, &resource));
            let ok = [&a, &b].iter().filter(|r| r.0 == StatusCode::OK).count();
            assert_eq!(ok, 1, "round {round}: {a:?} / {b:?}");
            let loser = if a.0 == StatusCode::OK { &b } else { &a };
            assert_eq!(loser.0, StatusCode::BAD_REQUEST);
            assert_eq!(loser.1["error"], "invalid_grant");
        }

        server.stop();
        let (status, body) = post(&one, &jag(), &resource).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable");

        server.start_again();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = post(&two, &jag(), &resource).await;
            if status == StatusCode::OK {
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert!(Instant::now() < deadline, "no recovery within 15 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
    async fn rv11_rv14_a_revocation_at_one_instance_holds_at_the_other() {
        let server = super::redis_server::RedisServer::start();
        let idp_keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
        ));
        let resource = format!("{}/mcp", defaults::MCP);
        let mut cfg = defaults::authorization_server(
            defaults::IDP,
            defaults::AS,
            &resource,
            &format!("{}/notes", defaults::MCP),
        );
        cfg.trusted_issuers[0].jwks_url = None;
        cfg.trusted_issuers[0].jwks = Some(idp_keys.jwks().to_public_json().to_string());
        cfg.redis_url = Some(server.url());
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(NOW));
        let (_one, ledger) =
            servers::authorization_server_app_and_ledger(&cfg, defaults::AS, clock.clone())
                .unwrap();
        let two = servers::authorization_server_app(&cfg, defaults::AS, clock).unwrap();
        let idp = IdJagIssuer::new(Issuer::new(defaults::IDP), idp_keys);
        let jag = |iat: UnixTime| {
            let mut g = IdJagGrant::new(
                Subject::new("00u8k2Lq91"),
                Issuer::new(defaults::AS),
                ClientId::new("tc_5f2a91"),
            );
            g.resources = vec![Resource::new(resource.as_str())];
            g.scope = Some(ScopeSet::parse("tasks.read").unwrap());
            idp.issue(g, iat).unwrap().token
        };
        // Control: before the revocation, instance two redeems an ID-JAG of NOW - 10.
        assert_eq!(
            post(&two, &jag(NOW.minus(10)), &resource).await.0,
            StatusCode::OK
        );
        // The IdP subject revoked at NOW - 5 through instance one's ledger (on Redis)...
        let scope = RevocationScope::idp(defaults::IDP, None);
        ledger
            .revoke_subject(
                &scope,
                "00u8k2Lq91",
                NOW.minus(5),
                RevocationKind::Admin,
                NOW,
            )
            .await
            .unwrap();
        // ...so instance two refuses an ID-JAG issued at or before it (D-38: inclusive)...
        let (status, body) = post(&two, &jag(NOW.minus(5)), &resource).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant");
        // ...and still redeems one issued after it.
        assert_eq!(
            post(&two, &jag(NOW.minus(4)), &resource).await.0,
            StatusCode::OK
        );
    }

    /// A DPoP proof by `key` for `POST htu` at NOW, bound to `token` when given.
    fn dpop_proof(key: &SigningKey, htu: &str, jti: &str, token: Option<&str>) -> String {
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert(
            "jwk".into(),
            serde_json::Value::Object(key.verifying_key().public_jwk().clone()),
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

    const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"redis-test","version":"1"}}}"#;

    /// `initialize` at an MCP server app with a DPoP-bound token and `proof`.
    async fn initialize(app: &axum::Router, token: &str, proof: &str) -> (StatusCode, String) {
        let request = Request::post("/mcp")
            .header("host", "127.0.0.1:9402")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .body(Body::from(INITIALIZE))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let detail = challenge.unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        (status, detail)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
    async fn dp33_rv15_two_reference_mcp_servers_on_one_redis() {
        let server = super::redis_server::RedisServer::start();
        let idp_keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
        ));
        let resource = format!("{}/mcp", defaults::MCP);
        let mut as_cfg = defaults::authorization_server(
            defaults::IDP,
            defaults::AS,
            &resource,
            &format!("{}/notes", defaults::MCP),
        );
        as_cfg.trusted_issuers[0].jwks_url = None;
        as_cfg.trusted_issuers[0].jwks = Some(idp_keys.jwks().to_public_json().to_string());
        as_cfg.redis_url = Some(server.url());
        as_cfg.redis_prefix = Some("ema-test".into());
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(NOW));
        let auth_server =
            servers::authorization_server_app(&as_cfg, defaults::AS, clock.clone()).unwrap();
        let jwks = auth_server
            .clone()
            .oneshot(Request::get("/jwks").body(Body::empty()).unwrap())
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();

        // Two MCP server instances from one configuration: same Redis, same prefix as the AS.
        let mut mcp_cfg = defaults::mcp_server(defaults::AS, defaults::MCP);
        mcp_cfg.jwks = Some(String::from_utf8(jwks.to_vec()).unwrap());
        mcp_cfg.redis_url = as_cfg.redis_url.clone();
        mcp_cfg.redis_prefix = as_cfg.redis_prefix.clone();
        let one = servers::mcp_app(&mcp_cfg, defaults::MCP, clock.clone()).unwrap();
        let two = servers::mcp_app(&mcp_cfg, defaults::MCP, clock).unwrap();

        // A DPoP-bound access token for ana (u-17 at the AS).
        let holder = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let mut g = IdJagGrant::new(
            Subject::new("00u8k2Lq91"),
            Issuer::new(defaults::AS),
            ClientId::new("tc_5f2a91"),
        );
        g.resources = vec![Resource::new(resource.as_str())];
        g.scope = Some(ScopeSet::parse("tasks.read").unwrap());
        let jag = IdJagIssuer::new(Issuer::new(defaults::IDP), idp_keys)
            .issue(g, NOW.minus(10))
            .unwrap()
            .token;
        let body = format!(
            "grant_type={}&assertion={jag}&resource={}",
            ema_grant::form::encode_component(ema_grant::JWT_BEARER),
            ema_grant::form::encode_component(&resource)
        );
        let token_proof = dpop_proof(&holder, &format!("{}/token", defaults::AS), "at-1", None);
        let request = Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            // tc_5f2a91:tc-secret
            .header("authorization", "Basic dGNfNWYyYTkxOnRjLXNlY3JldA==")
            .header("dpop", token_proof)
            .body(Body::from(body))
            .unwrap();
        let response = auth_server.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let at: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (status, &at["token_type"]),
            (StatusCode::OK, &"DPoP".into()),
            "{at}"
        );
        let token = at["access_token"].as_str().unwrap().to_owned();

        // Each instance serves the token with a fresh proof once its mirror has its first
        // snapshot (503 until then, RV-16).
        let mut n = 0;
        let mut fresh = || {
            n += 1;
            dpop_proof(&holder, &resource, &format!("mcp-{n}"), Some(&token))
        };
        for app in [&one, &two] {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let (status, detail) = initialize(app, &token, &fresh()).await;
                if status == StatusCode::OK {
                    break;
                }
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{detail}");
                assert!(Instant::now() < deadline, "no first snapshot within 15 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        // DP-33: a proof accepted by one instance is a replay at the other, either way round.
        let p = fresh();
        assert_eq!(initialize(&one, &token, &p).await.0, StatusCode::OK);
        let (status, challenge) = initialize(&two, &token, &p).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
        assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
        let p = fresh();
        assert_eq!(initialize(&two, &token, &p).await.0, StatusCode::OK);
        assert_eq!(
            initialize(&one, &token, &p).await.0,
            StatusCode::UNAUTHORIZED
        );

        // RV-15: the AS's admin route revokes u-17 (watermark NOW, the token's `iat`, D-38
        // inclusive); the change reaches both instances through the stream they tail.
        let request = Request::post(ema_server::ADMIN_REVOKE_PATH)
            .header("content-type", "application/json")
            .header(
                "authorization",
                format!("Bearer {}", defaults::DEV_AS_ADMIN_SECRET),
            )
            .body(Body::from(r#"{"subject": "u-17", "action": "revoke"}"#))
            .unwrap();
        let response = auth_server.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        for app in [&one, &two] {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let (status, detail) = initialize(app, &token, &fresh()).await;
                if status == StatusCode::UNAUTHORIZED {
                    assert!(detail.contains("token revoked"), "{detail}");
                    break;
                }
                assert_eq!(status, StatusCode::OK, "{detail}");
                assert!(Instant::now() < deadline, "revocation not seen within 15 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
