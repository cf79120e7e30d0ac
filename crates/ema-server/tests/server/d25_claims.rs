//! Issue 9 at the MCP server: access tokens whose claims are empty or of the wrong JSON type
//! (D-25) and access tokens carrying a `cty` header (D-23) are refused with 401
//! `invalid_token` and the `resource_metadata` challenge (RS-1, RS-4), never served.

use super::*;

/// A POST to the protected route with `Authorization: Bearer <token>`.
fn bearer(token: &str) -> Request<Body> {
    Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// The access-token claims of the fixture with `changes` merged in.
fn claims_with(changes: Value) -> Value {
    let mut claims = access_token_claims();
    for (name, value) in changes.as_object().unwrap() {
        claims[name.as_str()] = value.clone();
    }
    claims
}

/// Sends `token` and asserts the refusal every invalid token gets: 401, `invalid_token`, the
/// `resource_metadata` of this resource in the challenge, and the token not echoed (SEC-10).
async fn assert_invalid_token(w: &World, token: &str, what: &str) {
    let (status, headers, body) = call(&w.mcp, bearer(token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
    assert!(
        challenge.contains(&format!("resource_metadata=\"{PRM_URL}\"")),
        "{what}: {challenge}"
    );
    assert_eq!(json(&body)["error"], "invalid_token", "{what}");
    assert!(
        !String::from_utf8_lossy(&body).contains(token),
        "{what}: SEC-10, no token echoed"
    );
}

#[tokio::test]
async fn d25_empty_or_mistyped_access_token_claims_are_invalid_token() {
    let w = world();
    let key = w.as_keys.active();
    // Positive control: the fixture's access token is served.
    let good = key
        .sign_jwt(Some("at+jwt"), &access_token_claims())
        .unwrap();
    let (status, _, body) = call(&w.mcp, bearer(&good)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "hello u-1 credentials=false"
    );
    for changes in [
        // D-25: required string claims are non-empty.
        serde_json::json!({"sub": ""}),
        serde_json::json!({"client_id": ""}),
        serde_json::json!({"jti": ""}),
        serde_json::json!({"iss": ""}),
        // D-25: a present claim of the wrong type is an error, never a default. A `cnf` that
        // cannot be read must not turn a DPoP-bound token into a bearer token.
        serde_json::json!({"sub": 17}),
        serde_json::json!({"cnf": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        serde_json::json!({"cnf": {"jkt": 1}}),
        serde_json::json!({"cnf": {}}),
        serde_json::json!({"id_jag": "https://idp.acme.example"}),
        serde_json::json!({"authorization_details": {"type": "task_access"}}),
        serde_json::json!({"tenant": ["acme"]}),
    ] {
        let token = key
            .sign_jwt(Some("at+jwt"), &claims_with(changes.clone()))
            .unwrap();
        assert_invalid_token(&w, &token, &changes.to_string()).await;
    }
    // The control still passes after the refusals (nothing cached the wrong way).
    assert_eq!(call(&w.mcp, bearer(&good)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn d23_access_token_with_cty_is_invalid_token() {
    let w = world();
    let key = w.as_keys.active();
    let sign = |extra: Value| {
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), "at+jwt".into());
        header.extend(extra.as_object().unwrap().clone());
        key.sign_with_header(header, access_token_claims().to_string().as_bytes())
            .unwrap()
    };
    // Positive control: the same header without `cty`.
    assert_eq!(
        call(&w.mcp, bearer(&sign(serde_json::json!({})))).await.0,
        StatusCode::OK
    );
    for cty in [
        serde_json::json!("JWT"),
        serde_json::json!("jwt"),
        serde_json::json!("application/json"),
        serde_json::json!(""),
        serde_json::json!(1),
    ] {
        let token = sign(serde_json::json!({ "cty": cty }));
        assert_invalid_token(&w, &token, &format!("cty {cty}")).await;
    }
}
