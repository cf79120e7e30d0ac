//! DP-33, D-30: the MCP server's DPoP proof `jti`s in a store given to the bearer layer
//! (`BearerAuthBuilder::dpop_replay_store`). Two layers sharing one store (two instances
//! behind a load balancer) accept a proof once; a store that cannot answer makes the layer
//! answer 503 `temporarily_unavailable`, never a pass. Positive controls: a fresh proof at
//! either instance, and separate stores (each instance's own default) accepting the same
//! proof once each.

use super::*;

/// A store that is always unreachable (Redis down).
struct Down;

impl ReplayStore for Down {
    async fn check_and_insert(
        &self,
        _key: ReplayKey<'_>,
        _expires_at: UnixTime,
        _now: UnixTime,
    ) -> Result<Seen, ReplayError> {
        Err(ReplayError::Unavailable {
            reason: "connection refused".into(),
        })
    }
}

/// One MCP server instance trusting `w`'s authorization server, its DPoP proofs in `store`
/// (or the layer's own in-memory store).
fn instance(w: &World, store: Option<DynReplayStore>) -> Router {
    let mut bearer = BearerAuth::builder(RESOURCE, AS)
        .jwks(w.as_keys.jwks())
        .clock(clock());
    if let Some(store) = store {
        bearer = bearer.dpop_replay_store(store);
    }
    let routes = Router::new().route(
        "/mcp",
        post(|who: Principal| async move { who.subject().to_owned() }),
    );
    protect(routes, bearer.build().unwrap())
}

fn with_proof(token: &str, proof: &str) -> Request<Body> {
    Request::post("/mcp")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn dp33_two_instances_sharing_a_store_accept_a_proof_once() {
    let w = world();
    let holder = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let token = dpop_bound_token(&w, &holder).await;
    let shared = DynReplayStore::new(InMemoryReplayStore::new(1_000));
    let (a, b) = (
        instance(&w, Some(shared.clone())),
        instance(&w, Some(shared)),
    );

    // Accepted at A, replayed at B (and at A): refused as a replay.
    let p1 = dpop_proof(&holder, RESOURCE, "shared-1", Some(&token));
    assert_eq!(call(&a, with_proof(&token, &p1)).await.0, StatusCode::OK);
    let (status, headers, _) = call(&b, with_proof(&token, &p1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("DPoP") && challenge.contains("invalid_dpop_proof"),
        "{challenge}"
    );
    assert_eq!(
        call(&a, with_proof(&token, &p1)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The other way round with a fresh proof: first use at B passes, A refuses it.
    let p2 = dpop_proof(&holder, RESOURCE, "shared-2", Some(&token));
    assert_eq!(call(&b, with_proof(&token, &p2)).await.0, StatusCode::OK);
    assert_eq!(
        call(&a, with_proof(&token, &p2)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Control: instances with their own (default) stores do not see each other's proofs, which
    // is what the shared store fixes.
    let (c, d) = (instance(&w, None), instance(&w, None));
    let p3 = dpop_proof(&holder, RESOURCE, "own-3", Some(&token));
    assert_eq!(call(&c, with_proof(&token, &p3)).await.0, StatusCode::OK);
    assert_eq!(call(&d, with_proof(&token, &p3)).await.0, StatusCode::OK);
    assert_eq!(
        call(&c, with_proof(&token, &p3)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn dp33_an_unreachable_store_is_a_503_not_a_pass() {
    let w = world();
    let holder = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let token = dpop_bound_token(&w, &holder).await;
    let down = instance(&w, Some(DynReplayStore::new(Down)));

    let proof = dpop_proof(&holder, RESOURCE, "down-1", Some(&token));
    let (status, headers, body) = call(&down, with_proof(&token, &proof)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&body)["error"], "temporarily_unavailable");
    // The proof was not judged: no challenge to retry with another proof.
    assert!(!headers.contains_key("www-authenticate"));

    // Positive control: the same proof at a healthy instance passes (the failed check burnt
    // nothing), and an invalid proof is still refused before the store is asked.
    let healthy = instance(&w, Some(DynReplayStore::new(InMemoryReplayStore::new(10))));
    assert_eq!(
        call(&healthy, with_proof(&token, &proof)).await.0,
        StatusCode::OK
    );
    let elsewhere = dpop_proof(
        &holder,
        "https://mcp.tasks.example/other",
        "down-2",
        Some(&token),
    );
    assert_eq!(
        call(&down, with_proof(&token, &elsewhere)).await.0,
        StatusCode::UNAUTHORIZED
    );
}
