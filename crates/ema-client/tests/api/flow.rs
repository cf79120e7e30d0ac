//! Hops 2 and 3 against the real `ema-grant` IdP and authorization server: CL-4..CL-10, CL-13,
//! D-10, the token cache, and the typed errors.

use std::sync::Arc;

use ema_client::{
    ClientCredentials, EmaError, ErrorCode, FetchError, FetchPolicy, Hop, IdJagCheckError,
    JwtBearerError, LEGACY_ID_JAG_TOKEN_TYPE, Recovery, TokenExchangeError,
};
use ema_grant::Form;
use serde_json::json;

use crate::support::{CLIENT, IdpOverride, NO_GROUP, PK_CLIENT, READER, World};

fn form(body: &str) -> Form {
    Form::parse(body.as_bytes(), 1 << 20).unwrap()
}

#[tokio::test]
async fn full_flow_against_the_real_grants() {
    let world = World::start(|_| {}).await;
    let client = world.client();
    let id_token = world.id_token();
    let session = client
        .session(&world.server_url(), id_token.clone())
        .await
        .unwrap();
    let token = session.access_token().await.unwrap();
    assert_eq!(token.resource(), world.resource);
    assert_eq!(token.scope().to_string(), "tasks.read tasks.write");
    assert_eq!(
        token.expires_at().as_secs(),
        world.now().as_secs() + ema_grant::access_token::DEFAULT_ACCESS_TOKEN_LIFETIME
    );

    let log = world.log.lock().unwrap();
    // CL-4: the token exchange as `docs/requirements.md` shows it.
    let tx = form(&log.exchanges[0]);
    assert_eq!(
        tx.get("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(
        tx.get("requested_token_type"),
        Some("urn:ietf:params:oauth:token-type:id-jag")
    );
    assert_eq!(tx.get("audience"), Some(world.issuer.as_str()));
    assert_eq!(tx.get("resource"), Some(world.resource.as_str()));
    assert_eq!(tx.get("scope"), Some("tasks.read tasks.write"));
    assert_eq!(tx.get("subject_token"), Some(id_token.expose()));
    assert_eq!(
        tx.get("subject_token_type"),
        Some("urn:ietf:params:oauth:token-type:id_token")
    );
    // CL-6: the one ID-JAG the IdP issued was presented once at the AS.
    assert_eq!(log.id_jags.len(), 1);
    assert_eq!(log.assertions, log.id_jags);
    assert_eq!(log.access_tokens, [token.secret().expose().to_owned()]);
}

#[tokio::test]
async fn cl6_private_key_jwt_at_the_authorization_server() {
    let world = World::start(|_| {}).await;
    // The IdP maps our IdP client to `CLIENT`; the AS knows `PK_CLIENT` by its key. Register
    // the IdP mapping's id with private_key_jwt: the AS must accept the signed assertion.
    let client = world.client_with(ClientCredentials::private_key_jwt(
        PK_CLIENT,
        world.client_key.clone(),
    ));
    let session = client
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    // The IdP mints ID-JAGs for `CLIENT`, so the local check refuses one whose client_id is
    // not ours at this AS (JAG-4) before it is ever presented.
    let err = session.access_token().await.unwrap_err();
    assert_eq!(
        err,
        EmaError::TokenExchange(TokenExchangeError::IdJag(IdJagCheckError::ClientId {
            found: CLIENT.into(),
            expected: PK_CLIENT.into(),
        }))
    );
    assert_eq!(world.hits("as POST"), 0);

    // With an IdP that maps to PK_CLIENT, the AS authenticates the private_key_jwt assertion.
    world.knobs(|k| {
        k.idp = Some(IdpOverride::Mint {
            header: json!({}),
            claims: json!({"client_id": PK_CLIENT}),
        });
    });
    let token = session.access_token().await.unwrap();
    assert_eq!(token.resource(), world.resource);
    let log = world.log.lock().unwrap();
    assert_eq!(log.access_tokens.len(), 1);
}

#[tokio::test]
async fn cl13_credentials_are_kept_per_authorization_server() {
    let world = World::start(|_| {}).await;
    // Credentials only for another AS: nothing is borrowed, nothing is sent anywhere.
    let client = ema_client::EmaClient::builder(world.idp_config())
        .fetch_policy(FetchPolicy::insecure_loopback_development())
        .clock(world.clock.clone())
        .authorization_server(
            "https://auth.other.example",
            ClientCredentials::secret_basic(CLIENT, "other-secret"),
        )
        .build()
        .unwrap();
    let session = client
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    assert_eq!(
        session.access_token().await.unwrap_err(),
        EmaError::JwtBearer(JwtBearerError::NoCredentials {
            issuer: world.issuer.clone()
        })
    );
    assert_eq!(world.hits("idp "), 0);
    assert_eq!(world.hits("as POST"), 0);
}

#[tokio::test]
async fn auth_method_not_advertised_is_not_attempted() {
    let world = World::start(|_| {}).await;
    world.knobs(|k| {
        k.as_metadata = Some(json!({
            "issuer": world.issuer,
            "token_endpoint": format!("{}/token", world.issuer),
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }));
        k.idp = Some(IdpOverride::Mint {
            header: json!({}),
            claims: json!({"client_id": PK_CLIENT}),
        });
    });
    let client = world.client_with(ClientCredentials::private_key_jwt(
        PK_CLIENT,
        world.client_key.clone(),
    ));
    let session = client
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    assert_eq!(
        session.access_token().await.unwrap_err(),
        EmaError::JwtBearer(JwtBearerError::AuthMethodNotSupported {
            issuer: world.issuer.clone(),
            method: "private_key_jwt",
        })
    );
}

#[tokio::test]
async fn d2_idp_access_denied_surfaces_and_cl8_never_goes_interactive() {
    let world = World::start(|_| {}).await;
    let client = world.client();
    let session = client
        .session(&world.server_url(), world.id_token_for(NO_GROUP))
        .await
        .unwrap();
    let err = session.access_token().await.unwrap_err();
    assert_eq!(err.hop(), Hop::TokenExchange);
    let oauth = err.oauth_error().unwrap();
    assert_eq!(oauth.status, 400);
    assert!(oauth.is(&ErrorCode::AccessDenied), "{oauth}");
    assert_eq!(err.oauth_code(), Some(ErrorCode::AccessDenied));
    assert!(oauth.error_description.is_some());
    // CL-8: no authorization endpoint, no jwt-bearer, no retry: one exchange and done.
    let log = world.log.lock().unwrap();
    assert_eq!(log.exchanges.len(), 1);
    assert!(
        log.hits
            .iter()
            .all(|h| !h.contains("/authorize") && !h.starts_with("as POST")),
        "{:?}",
        log.hits
    );
}

#[tokio::test]
async fn d2_invalid_target_from_the_idp() {
    // The MCP server at /other is not governed by the AS in the IdP's registry (TX-7).
    let world = World::start(|k| {
        k.prm_path = "/.well-known/oauth-protected-resource/other".into();
    })
    .await;
    world.knobs(|k| {
        k.prm = Some(json!({
            "resource": format!("{}/other", world.mcp),
            "authorization_servers": [world.issuer],
        }));
    });
    let server = url::Url::parse(&format!("{}/other", world.mcp)).unwrap();
    let session = world
        .client()
        .session(&server, world.id_token())
        .await
        .unwrap();
    let err = session.access_token().await.unwrap_err();
    assert_eq!(err.hop(), Hop::TokenExchange);
    assert_eq!(err.oauth_code(), Some(ErrorCode::InvalidTarget), "{err}");
}

#[tokio::test]
async fn d1_bad_id_token_is_invalid_grant_at_the_idp() {
    let world = World::start(|_| {}).await;
    let session = world
        .client()
        .session(
            &world.server_url(),
            ema_client::Secret::new("not.an.idtoken"),
        )
        .await
        .unwrap();
    let err = session.access_token().await.unwrap_err();
    assert_eq!(err.oauth_code(), Some(ErrorCode::InvalidGrant), "{err}");
    // D-1 / CL-9: the caller is told to get a new ID token, not to go interactive (CL-8).
    assert!(err.needs_new_id_token());
    assert_eq!(world.hits("as POST"), 0);
}

/// A code this library has no name for is kept as `ErrorCode::Other`, with its text; a
/// malformed one is no code (RFC 6749 §5.2 characters), and the status stays.
#[tokio::test]
async fn unknown_oauth_error_codes_are_kept() {
    for (body, expected) in [
        (
            json!({"error": "slow_down", "error_description": "later"}),
            Some("slow_down"),
        ),
        (json!({"error": "bad\"code"}), None),
        // Positive control: a known code parses to its variant.
        (json!({"error": "access_denied"}), Some("access_denied")),
    ] {
        let world = World::start(|k| k.idp = Some(IdpOverride::Fixed(400, body.clone()))).await;
        let session = world
            .client()
            .session(&world.server_url(), world.id_token())
            .await
            .unwrap();
        let err = session.access_token().await.unwrap_err();
        let code = err.oauth_code();
        assert_eq!(code.as_ref().map(ErrorCode::as_str), expected, "{body}");
        match &code {
            Some(ErrorCode::AccessDenied) => assert_eq!(expected, Some("access_denied")),
            Some(ErrorCode::Other(other)) => assert_eq!(Some(other.as_str()), expected),
            other => assert_eq!(*other, None, "{body}"),
        }
        assert_eq!(err.oauth_error().unwrap().status, 400);
        assert!(!err.needs_new_id_token());
    }
}

#[tokio::test]
async fn cl10_idp_step_up_demand_surfaces_with_max_age() {
    let world = World::start(|k| {
        k.idp = Some(IdpOverride::Fixed(
            400,
            json!({"error": "insufficient_user_authentication",
                   "error_description": "MFA required", "max_age": 300,
                   "acr_values": "urn:acme:acr:mfa"}),
        ));
    })
    .await;
    let session = world
        .client()
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    let err = session.access_token().await.unwrap_err();
    let demand = err.step_up().expect("a step-up demand");
    assert_eq!(demand.max_age, Some(300));
    assert_eq!(demand.acr_values.as_deref(), Some("urn:acme:acr:mfa"));
    assert!(!err.needs_new_id_token());
}

#[tokio::test]
async fn cl5_wrong_issued_token_type_is_refused_and_d10_legacy_accepted() {
    let world = World::start(|k| {
        k.idp = Some(IdpOverride::IssuedType(
            "urn:ietf:params:oauth:token-type:access_token",
        ));
    })
    .await;
    let session = world
        .client()
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    assert_eq!(
        session.access_token().await.unwrap_err(),
        EmaError::TokenExchange(TokenExchangeError::WrongIssuedTokenType {
            found: "urn:ietf:params:oauth:token-type:access_token".into()
        })
    );
    assert_eq!(world.hits("as POST"), 0, "never presented");

    // D-10: the pre-draft alias is accepted as equivalent.
    world.knobs(|k| k.idp = Some(IdpOverride::IssuedType(LEGACY_ID_JAG_TOKEN_TYPE)));
    assert!(session.access_token().await.is_ok());
    // The client still asked for the current type.
    let log = world.log.lock().unwrap();
    for body in &log.exchanges {
        assert_eq!(
            form(body).get("requested_token_type"),
            Some("urn:ietf:params:oauth:token-type:id-jag")
        );
    }
}

#[tokio::test]
async fn id_jag_whose_claims_do_not_match_the_request_is_never_used() {
    let world = World::start(|_| {}).await;
    let session = world
        .client()
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    let now = world.now();
    let cases: Vec<(serde_json::Value, serde_json::Value, IdJagCheckError)> = vec![
        (
            json!({"typ": "JWT"}),
            json!({}),
            IdJagCheckError::WrongType {
                found: Some("JWT".into()),
            },
        ),
        (
            json!({"typ": null}),
            json!({}),
            IdJagCheckError::WrongType { found: None },
        ),
        (
            json!({}),
            json!({"aud": "https://auth.other.example"}),
            IdJagCheckError::Audience {
                expected: world.issuer.clone(),
            },
        ),
        (
            json!({}),
            json!({"aud": [world.issuer, "https://auth.other.example"]}),
            IdJagCheckError::Audience {
                expected: world.issuer.clone(),
            },
        ),
        (
            json!({}),
            json!({"client_id": "someone-else"}),
            IdJagCheckError::ClientId {
                found: "someone-else".into(),
                expected: CLIENT.into(),
            },
        ),
        (
            json!({}),
            json!({"resource": "https://mcp.other.example/mcp"}),
            IdJagCheckError::Resource {
                expected: world.resource.clone(),
            },
        ),
        (
            json!({}),
            json!({"iss": "https://idp.evil.example"}),
            IdJagCheckError::Issuer {
                found: "https://idp.evil.example".into(),
                expected: world.idp.clone(),
            },
        ),
        (
            json!({}),
            json!({"exp": now.as_secs() - 1, "iat": now.as_secs() - 301}),
            IdJagCheckError::Expired {
                exp: now.minus(1),
                now,
            },
        ),
        (
            json!({}),
            json!({"client_id": null}),
            IdJagCheckError::Claim { claim: "client_id" },
        ),
    ];
    for (header, claims, expected) in cases {
        world.knobs(|k| {
            k.idp = Some(IdpOverride::Mint {
                header: header.clone(),
                claims: claims.clone(),
            });
        });
        assert_eq!(
            session.access_token().await.unwrap_err(),
            EmaError::TokenExchange(TokenExchangeError::IdJag(expected)),
            "{header} {claims}"
        );
    }
    // Garbage instead of a JWT.
    world.knobs(|k| {
        k.idp = Some(IdpOverride::Fixed(
            200,
            json!({"issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
                   "access_token": "opaque-not-a-jwt", "token_type": "N_A"}),
        ));
    });
    assert_eq!(
        session.access_token().await.unwrap_err(),
        EmaError::TokenExchange(TokenExchangeError::IdJag(IdJagCheckError::Malformed))
    );
    // None of them reached the authorization server.
    assert_eq!(world.hits("as POST"), 0);
    // The matching case works (resource as an array naming the MCP server is fine too).
    world.knobs(|k| {
        k.idp = Some(IdpOverride::Mint {
            header: json!({}),
            claims: json!({"resource": [world.resource]}),
        });
    });
    assert!(session.access_token().await.is_ok());
}

#[tokio::test]
async fn slow_idp_times_out_at_hop_2() {
    let world = World::start(|k| k.idp = Some(IdpOverride::Hang)).await;
    let timeout = std::time::Duration::from_millis(300);
    let client = ema_client::EmaClient::builder(world.idp_config())
        .fetch_policy(FetchPolicy::insecure_loopback_development().with_timeout(timeout))
        .clock(world.clock.clone())
        .authorization_server(
            world.issuer.as_str(),
            ClientCredentials::secret_basic(CLIENT, crate::support::SECRET),
        )
        .build()
        .unwrap();
    let session = client
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    assert_eq!(
        session.access_token().await.unwrap_err(),
        EmaError::TokenExchange(TokenExchangeError::Fetch(FetchError::Timeout {
            after: timeout
        }))
    );
}

#[tokio::test]
async fn jwt_bearer_rejection_names_hop_3() {
    let world = World::start(|_| {}).await;
    // Wrong secret at the AS: 401 invalid_client from the real grant.
    let client = world.client_with(ClientCredentials::secret_basic(CLIENT, "wrong"));
    let session = client
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    let err = session.access_token().await.unwrap_err();
    assert_eq!(err.hop(), Hop::JwtBearer);
    let oauth = err.oauth_error().unwrap();
    assert_eq!(
        (oauth.status, oauth.oauth_code()),
        (401, Some(&ErrorCode::InvalidClient))
    );
    // Display says which hop and why; no secret anywhere.
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("jwt-bearer") && text.contains("invalid_client"),
        "{text}"
    );
    assert!(!text.contains("wrong") && !text.contains(world.id_token().expose()));
}

#[tokio::test]
async fn token_cache_per_key_refreshed_before_expiry() {
    let world = World::start(|_| {}).await;
    let client = world.client();
    let id_token = world.id_token();
    let session = client
        .session(&world.server_url(), id_token.clone())
        .await
        .unwrap();
    let first = session.access_token().await.unwrap();
    // Cached: no new exchange.
    assert_eq!(session.access_token().await.unwrap(), first);
    let server = session.server().clone();
    let same = client
        .access_token(&server, &id_token, &session.scope())
        .await
        .unwrap();
    assert_eq!(same, first);
    assert_eq!(world.hits("idp POST"), 1);
    // Another scope set is another cache entry.
    let narrow = ema_id_jag::ScopeSet::parse("tasks.read").unwrap();
    let other = client
        .access_token(&server, &id_token, &narrow)
        .await
        .unwrap();
    assert_ne!(other, first);
    assert_eq!(other.scope().to_string(), "tasks.read");
    assert_eq!(world.hits("idp POST"), 2);
    // Another user is another cache entry, even for the same scopes.
    let other_user = client
        .access_token(&server, &world.id_token_for("someone-else"), &narrow)
        .await;
    assert!(
        other_user.is_err(),
        "not in the IdP's groups: a new exchange, denied"
    );
    assert_eq!(world.hits("idp POST"), 3);

    // 300 s tokens (the grant's default, RV-24), 60 s margin: still cached at +239, replaced at
    // +240 (before expiry).
    assert_eq!(ema_grant::access_token::DEFAULT_ACCESS_TOKEN_LIFETIME, 300);
    world.clock.advance(239);
    assert_eq!(session.access_token().await.unwrap(), first);
    assert_eq!(world.hits("idp POST"), 3);
    world.clock.advance(1);
    let refreshed = session.access_token().await.unwrap();
    assert_ne!(refreshed, first);
    assert!(refreshed.expires_at() > first.expires_at());
    // CL-9: a fresh ID-JAG each time, never a resubmitted one.
    let log = world.log.lock().unwrap();
    assert_eq!(log.exchanges.len(), 4);
    let mut assertions = log.assertions.clone();
    assertions.dedup();
    assert_eq!(assertions.len(), 3);
}

#[tokio::test]
async fn concurrent_callers_share_one_acquisition() {
    let world = World::start(|_| {}).await;
    let session = Arc::new(
        world
            .client()
            .session(&world.server_url(), world.id_token())
            .await
            .unwrap(),
    );
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.access_token().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
    assert_eq!(world.hits("idp POST"), 1);
}

#[tokio::test]
async fn cl9_one_reacquisition_with_a_fresh_id_jag_on_invalid_token() {
    let world = World::start(|_| {}).await;
    let session = world
        .client()
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    let first = session.access_token().await.unwrap();
    let challenge = format!(
        "Bearer error=\"invalid_token\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        world.mcp
    );
    let Recovery::Retry(second) = session
        .recover(&first, 401, Some(&challenge))
        .await
        .unwrap()
    else {
        panic!("expected a retry");
    };
    assert_ne!(second, first);
    {
        let log = world.log.lock().unwrap();
        assert_eq!(log.exchanges.len(), 2, "a new token exchange");
        assert_eq!(log.assertions.len(), 2);
        assert_ne!(log.assertions[0], log.assertions[1], "a fresh ID-JAG");
    }
    // The replacement is cached.
    assert_eq!(session.access_token().await.unwrap(), second);
    // A stale rejection (another request already replaced the token) costs nothing.
    let Recovery::Retry(again) = session
        .recover(&first, 401, Some(&challenge))
        .await
        .unwrap()
    else {
        panic!("expected the current token");
    };
    assert_eq!(again, second);
    assert_eq!(world.hits("idp POST"), 2);
    // Other refusals are not EMA's to fix.
    assert_eq!(
        session
            .recover(&second, 401, Some("Bearer error=\"invalid_request\""))
            .await
            .unwrap(),
        Recovery::GiveUp
    );
    assert_eq!(
        session.recover(&second, 500, None).await.unwrap(),
        Recovery::GiveUp
    );
}

#[tokio::test]
async fn cl10_scope_union_on_insufficient_scope() {
    let world = World::start(|k| k.challenge_scope = Some("tasks.read".into())).await;
    let session = world
        .client()
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    let first = session.access_token().await.unwrap();
    assert_eq!(first.scope().to_string(), "tasks.read");
    let challenge = "Bearer error=\"insufficient_scope\", scope=\"tasks.write\"";
    let Recovery::Retry(wider) = session.recover(&first, 403, Some(challenge)).await.unwrap()
    else {
        panic!("expected a retry");
    };
    assert_eq!(wider.scope().to_string(), "tasks.read tasks.write");
    assert_eq!(session.scope().to_string(), "tasks.read tasks.write");
    let second_exchange = world.log.lock().unwrap().exchanges[1].clone();
    assert_eq!(
        form(&second_exchange).get("scope"),
        Some("tasks.read tasks.write"),
        "a new exchange for the union"
    );
    // Asking again for scopes already asked for: give up rather than loop.
    assert_eq!(
        session.recover(&wider, 403, Some(challenge)).await.unwrap(),
        Recovery::GiveUp
    );
    let err = session
        .recover_or_fail(&wider, 403, Some(challenge))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        EmaError::Mcp(ema_client::McpAuthError::InsufficientScope { .. })
    ));
    // Nobody narrowed: the report says what was asked, granted and required, hop by hop.
    assert_eq!(
        err.to_string(),
        "MCP request: MCP server still requires more scope: `tasks.write` (requested \
         `tasks.read tasks.write`; the IdP granted `tasks.read tasks.write` in the ID-JAG; the \
         authorization server granted `tasks.read tasks.write`; the MCP server requires \
         `tasks.write`)"
    );
    assert_eq!(err.scope_report().unwrap().narrowed_by(), None);
    assert_eq!(session.last_failure(), Some(err));
}

/// CL-10, TX-9, D-5: the IdP narrows a step-up (the user may read only). The client asks the
/// authorization server for what the ID-JAG carries, and the step-up fails with an error naming
/// the scopes asked for, granted by the IdP and by the authorization server, and required by the
/// MCP server, blaming the IdP's narrowing (not the authorization server). Asking the
/// authorization server for more than the ID-JAG carries is its `invalid_scope`, with the same
/// report. Control: a user allowed to write steps up on the same servers.
#[tokio::test]
async fn cl10_refused_step_up_names_requested_granted_required_and_the_narrowing_hop() {
    let world = World::start(|k| k.challenge_scope = Some("tasks.read".into())).await;
    let challenge = "Bearer error=\"insufficient_scope\", scope=\"tasks.write\"";
    let session = world
        .client()
        .session(&world.server_url(), world.id_token_for(READER))
        .await
        .unwrap();
    let first = session.access_token().await.unwrap();
    assert_eq!(first.scope().to_string(), "tasks.read");
    let err = session
        .recover_or_fail(&first, 403, Some(challenge))
        .await
        .unwrap_err();
    assert_eq!(err.hop(), Hop::McpRequest);
    assert_eq!(
        err.to_string(),
        "MCP request: MCP server still requires more scope: `tasks.write` (requested \
         `tasks.read tasks.write`; the IdP granted `tasks.read` in the ID-JAG; the \
         authorization server granted `tasks.read`; the MCP server requires `tasks.write`; the \
         IdP narrowed the request (withheld `tasks.write`))"
    );
    let report = err.scope_report().unwrap();
    assert_eq!(report.narrowed_by(), Some(Hop::TokenExchange));
    assert_eq!(report.withheld_by_idp().to_string(), "tasks.write");
    assert_eq!(session.last_failure(), Some(err));
    // The step-up asked the IdP for the union (CL-10); the IdP said it narrowed (TX-9).
    let step_up = world.log.lock().unwrap().exchanges[1].clone();
    assert_eq!(form(&step_up).get("scope"), Some("tasks.read tasks.write"));

    // Hop 3 on its own: asking the authorization server for more than the ID-JAG carries.
    let client = world.client();
    let wider = ema_id_jag::ScopeSet::parse("tasks.read tasks.write").unwrap();
    let id_jag = client
        .exchange(session.server(), &world.id_token_for(READER), &wider)
        .await
        .unwrap();
    assert_eq!(
        id_jag.scope().map(ToString::to_string).as_deref(),
        Some("tasks.read")
    );
    let refused = client
        .redeem(session.server(), id_jag, &wider)
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "authorization server refused the requested scope (requested `tasks.read \
         tasks.write`; the IdP granted `tasks.read` in the ID-JAG; the IdP narrowed the request \
         (withheld `tasks.write`)): HTTP 400 `invalid_scope`: requested scope not carried by \
         the ID-JAG: tasks.write; the ID-JAG carries: tasks.read"
    );
    assert!(matches!(refused, JwtBearerError::ScopeRefused { .. }));

    // Control: the same step-up for a user the IdP lets write.
    let session = world
        .client()
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    let first = session.access_token().await.unwrap();
    let wider = session
        .recover_or_fail(&first, 403, Some(challenge))
        .await
        .unwrap();
    assert_eq!(wider.scope().to_string(), "tasks.read tasks.write");
    assert_eq!(wider.scope_report().narrowed_by(), None);
    assert_eq!(session.last_failure(), None);
}

#[tokio::test]
async fn secrets_never_show_in_debug_output() {
    let world = World::start(|_| {}).await;
    let client = world.client();
    let session = client
        .session(&world.server_url(), world.id_token())
        .await
        .unwrap();
    let token = session.access_token().await.unwrap();
    let text = format!("{client:?} {session:?} {token:?}");
    assert!(!text.contains(world.id_token().expose()));
    assert!(!text.contains(token.secret().expose()));
    assert!(!text.contains(crate::support::SECRET));
    assert!(!text.contains(crate::support::IDP_SECRET));
}
