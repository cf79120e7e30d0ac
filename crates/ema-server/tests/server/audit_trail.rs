//! One audit trail from the IdP to each request at the MCP server: the IdP's `IdJagIssued`
//! and the authorization server's `IdJagRedeemed` name the same digest of the ID-JAG's
//! `iss`/`jti`; the redeemed access token's `jti` is the one the MCP server accepted and
//! refused. The trail verifies, holds no token, and a server whose trail refuses an event
//! withholds the token (503).

use std::path::{Path, PathBuf};

use audit::{AuditLog, JsonLinesFile, JtiDigest, Verifier};
use time::OffsetDateTime;

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ema-server-audit-{name}-{}-{}",
            std::process::id(),
            NOW.as_secs()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A trail in `file` with a fixed clock, and the JWKS that verifies its checkpoints.
fn trail(file: &Path) -> (AuditLog, JwkSet) {
    let key = Arc::new(SigningKey::generate(Algorithm::ES256, Some("audit-1".into())).unwrap());
    let jwks = JwkSet::from_keys([key.verifying_key().clone()]);
    let log = AuditLog::builder(key)
        .clock(|| OffsetDateTime::from_unix_timestamp(NOW.as_secs() as i64).unwrap())
        .build(JsonLinesFile::create_new(file).unwrap())
        .unwrap();
    (log, jwks)
}

/// The `jti` of a JWT, read from its payload (the test holds the tokens; the trail must not).
fn jti_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    json(&bytes)["jti"].as_str().unwrap().to_owned()
}

/// The events of a trail, in order (checkpoints left out).
fn events(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|line| json(line.as_bytes()).get("event").cloned())
        .collect()
}

fn mcp_request(token: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::post("/mcp").header("content-type", "application/json");
    if let Some(token) = token {
        b = b.header("authorization", format!("Bearer {token}"));
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
const ADD_TASK: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add_task","arguments":{"title":"x"}}}"#;

#[tokio::test]
async fn one_trail_links_the_id_jag_to_the_access_token_and_its_requests() {
    let dir = TempDir::new("link");
    let file = dir.path().join("audit.jsonl");
    let (log, jwks) = trail(&file);
    let w = world_with(Audits::all(&log));

    let id_token = sign_in(&w, "ana", "ana-password").await;
    let (status, tx) = exchange(&w, &id_token).await;
    assert_eq!(status, StatusCode::OK, "{tx}");
    let id_jag = tx["access_token"].as_str().unwrap().to_owned();
    let (status, at) = redeem(&w, &id_jag).await;
    assert_eq!(status, StatusCode::OK, "{at}");
    let token = at["access_token"].as_str().unwrap().to_owned();
    // A replayed ID-JAG is refused and not on the trail (only tokens issued are).
    assert_eq!(redeem(&w, &id_jag).await.0, StatusCode::BAD_REQUEST);

    // Accepted once: the second request is served from the validated-token cache.
    for _ in 0..2 {
        let (status, _, body) = call(&w.mcp, mcp_request(Some(&token), LIST)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
    // The same token refused for scope (add_task needs tasks.write): named by its jti.
    let (status, _, _) = call(&w.mcp, mcp_request(Some(&token), ADD_TASK)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A token that does not verify: refused, without a jti.
    let (status, _, _) = call(&w.mcp, mcp_request(Some("a.b.c"), LIST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // No credentials: the routine discovery challenge, not on the trail.
    let (status, _, _) = call(&w.mcp, mcp_request(None, LIST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    drop(w);
    log.close().unwrap();
    let report = Verifier::new(jwks).verify_file(&file).unwrap();
    assert!(report.closed);
    assert_eq!(report.events, 5);

    let events = events(&file);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "id_jag_issued",
            "id_jag_redeemed",
            "access_token_accepted",
            "access_token_refused",
            "access_token_refused",
        ]
    );
    let (issued, redeemed, accepted) = (&events[0], &events[1], &events[2]);
    let (scope_refusal, token_refusal) = (&events[3], &events[4]);

    // IdP → authorization server: the digest of the ID-JAG's iss/jti.
    let id_jag_digest = JtiDigest::of(IDP, &jti_of(&id_jag));
    assert_eq!(issued["id_jag"], id_jag_digest.as_str());
    assert_eq!(redeemed["id_jag"], issued["id_jag"]);
    assert_eq!(issued["issuer"], IDP);
    assert_eq!(issued["subject"], "00u8k2Lq91");
    assert_eq!(issued["client_id"], "tc_5f2a91");
    assert_eq!(issued["audience"], AS);
    assert_eq!(issued["resource"], RESOURCE);
    assert_eq!(issued["scopes"], serde_json::json!(["tasks.read"]));
    assert_eq!(redeemed["idp_issuer"], IDP);
    assert_eq!(redeemed["subject"], "00u8k2Lq91");
    assert_eq!(redeemed["client_id"], "tc_5f2a91");
    assert_eq!(redeemed["resource"], RESOURCE);

    // Authorization server → MCP server: the access token's jti.
    let at_jti = jti_of(&token);
    assert_eq!(redeemed["access_token_jti"], at_jti.as_str());
    assert_eq!(accepted["access_token_jti"], at_jti.as_str());
    assert_eq!(accepted["subject"], "local-00u8k2Lq91");
    assert_eq!(accepted["client_id"], "tc_5f2a91");
    assert_eq!(accepted["resource"], RESOURCE);
    assert_eq!(scope_refusal["access_token_jti"], at_jti.as_str());
    assert_eq!(scope_refusal["error"], "insufficient_scope");
    assert_eq!(token_refusal["error"], "invalid_token");
    assert!(token_refusal.get("access_token_jti").is_none());

    // No token, and no ID-JAG jti in clear, anywhere in the file.
    let text = std::fs::read_to_string(&file).unwrap();
    for secret in [&id_token, &id_jag, &token] {
        for segment in secret.split('.') {
            assert!(!text.contains(segment), "a token segment is on the trail");
        }
    }
    assert!(!text.contains(&jti_of(&id_jag)));
}

/// The trail must be complete: a server whose trail refuses the event withholds the token
/// (503 `temporarily_unavailable`) and the MCP server serves nothing. The test above is the
/// positive control (the same requests with an open trail succeed).
#[tokio::test]
async fn a_server_whose_trail_fails_answers_503() {
    let dir = TempDir::new("closed");
    let (closed, _) = trail(&dir.path().join("closed.jsonl"));
    closed.close().unwrap();
    let off = AuditLog::disabled;
    let unavailable = |status: StatusCode, body: &Value| {
        assert_eq!(
            (status, body["error"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("temporarily_unavailable")
            )
        );
    };

    // The IdP: no ID-JAG.
    let w = world_with(Audits {
        idp: closed.clone(),
        auth_server: off(),
        mcp: off(),
    });
    let id_token = sign_in(&w, "ana", "ana-password").await;
    let (status, body) = exchange(&w, &id_token).await;
    unavailable(status, &body);
    assert!(body.get("access_token").is_none());

    // The authorization server: no access token.
    let w = world_with(Audits {
        idp: off(),
        auth_server: closed.clone(),
        mcp: off(),
    });
    let id_token = sign_in(&w, "ana", "ana-password").await;
    let (status, tx) = exchange(&w, &id_token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = redeem(&w, tx["access_token"].as_str().unwrap()).await;
    unavailable(status, &body);
    assert!(body.get("access_token").is_none());

    // The MCP server: a valid token is neither served nor cached; a refused one is a 503 too;
    // a request without credentials still gets its discovery challenge.
    let w = world_with(Audits {
        idp: off(),
        auth_server: off(),
        mcp: closed.clone(),
    });
    let id_token = sign_in(&w, "ana", "ana-password").await;
    let (_, tx) = exchange(&w, &id_token).await;
    let (_, at) = redeem(&w, tx["access_token"].as_str().unwrap()).await;
    let token = at["access_token"].as_str().unwrap();
    for _ in 0..2 {
        let (status, _, body) = call(&w.mcp, mcp_request(Some(token), LIST)).await;
        unavailable(status, &json(&body));
    }
    let (status, _, body) = call(&w.mcp, mcp_request(Some("a.b.c"), LIST)).await;
    unavailable(status, &json(&body));
    let (status, headers, _) = call(&w.mcp, mcp_request(None, LIST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
}
