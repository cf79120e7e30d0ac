//! `docs/adopters-guide.md` runs: the guide's server (the `protect_rmcp` example of ema-server,
//! compiled here as a module) in front of the reference IdP and authorization server on
//! loopback ports chosen by the OS. An agent signs in, gets its access token the normal way
//! (token exchange at the IdP, jwt-bearer at the authorization server, discovery from the
//! guide server's RFC 9728 metadata) and calls the tools; a call without a token gets the RS-1
//! challenge.

use std::net::SocketAddr;
use std::sync::Arc;

use ema_client::{
    ClientCredentials, EmaClient, EmaHttpClient, FetchPolicy, IdpConfig, Secret, ema_client_config,
};
use ema_examples::config::defaults;
use ema_examples::{serve, servers, sso::SsoClient};
use ema_jose::{Clock, SystemClock};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;

#[path = "../../../crates/ema-server/examples/protect_rmcp.rs"]
#[allow(
    dead_code,
    reason = "the example's `main` is not run here; its `app` is"
)]
mod guide;

fn text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs1_rs6_adopters_guide_server_serves_ema_tokens_and_challenges_the_rest() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_l, idp) = serve::bind(loopback).await.unwrap();
    let (as_l, auth_server) = serve::bind(loopback).await.unwrap();
    let (mcp_l, mcp) = serve::bind(loopback).await.unwrap();
    let resource = format!("{mcp}/mcp");
    let other = format!("{mcp}/other");

    // The reference IdP and authorization server, knowing the guide's server as a resource.
    let idp_app = servers::idp_app(
        &defaults::idp(&idp, &auth_server, &resource, &other),
        &idp,
        clock.clone(),
    )
    .unwrap();
    let as_app = servers::authorization_server_app(
        &defaults::authorization_server(&idp, &auth_server, &resource, &other),
        &auth_server,
        clock,
    )
    .unwrap();
    // The guide's server, exactly as the guide shows it (loopback http is the named opt-in).
    let guide_app = guide::app(
        &resource,
        &auth_server,
        &format!("{auth_server}/jwks"),
        FetchPolicy::insecure_loopback_development(),
    )
    .unwrap();
    for (listener, app) in [(idp_l, idp_app), (as_l, as_app), (mcp_l, guide_app)] {
        tokio::spawn(serve::serve(listener, app, std::future::pending()));
    }

    // RS-1: no token is a 401 naming the guide server's metadata, which names the AS (MD-6).
    let http = reqwest::Client::new();
    let refused = http
        .post(&resource)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
    let prm_url = format!("{mcp}/.well-known/oauth-protected-resource/mcp");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{prm_url}\"")),
        "{challenge}"
    );
    let prm: serde_json::Value = http
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], resource.as_str());
    assert_eq!(prm["authorization_servers"][0], auth_server.as_str());
    // A token the guide's server cannot verify is refused too.
    let forged = http
        .post(&resource)
        .bearer_auth("eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Positive control: ana signs in, and the agent gets an access token the normal way.
    let sso = SsoClient {
        idp: idp.clone(),
        client_id: "desk-idp-01".into(),
        client_secret: "desk-secret".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        client_secret_post: false,
    };
    let id_token = sso.sign_in("ana", "ana-password").await.unwrap();
    let client = EmaClient::builder(IdpConfig::new(
        idp.as_str(),
        format!("{idp}/token"),
        ClientCredentials::secret_basic("desk-idp-01", "desk-secret"),
    ))
    .authorization_server(
        auth_server.as_str(),
        ClientCredentials::secret_basic("tc_5f2a91", "tc-secret"),
    )
    .fetch_policy(FetchPolicy::insecure_loopback_development())
    .build()
    .unwrap();
    let session = client
        .session(&url::Url::parse(&resource).unwrap(), Secret::new(id_token))
        .await
        .unwrap();
    let transport = EmaHttpClient::new(Arc::new(session))
        .unwrap()
        .into_transport();
    let mcp_client = ema_client_config().serve(transport).await.unwrap();
    let names: Vec<String> = mcp_client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    assert_eq!(names, ["add_note", "whoami"]);
    // The tool sees the verified principal: the local user and the client.
    let who = text(
        &mcp_client
            .call_tool(CallToolRequestParams::new("whoami"))
            .await
            .unwrap(),
    );
    assert!(who.ends_with(" via tc_5f2a91"), "{who}");
    let user = who.trim_end_matches(" via tc_5f2a91").to_owned();
    assert!(!user.is_empty());
    // add_note needs tasks.write on top (RS-6): ana's group may have it, and the agent steps up
    // when its token lacks it (CL-10).
    let mut params = CallToolRequestParams::new("add_note");
    params = params.with_arguments(
        serde_json::json!({"text": "ship it"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let added = text(&mcp_client.call_tool(params).await.unwrap());
    assert_eq!(added, format!("{user} has 1 notes"));
    mcp_client.cancel().await.unwrap();
}

#[test]
fn adopters_guide_quotes_the_example_it_runs() {
    let guide = include_str!("../../../docs/adopters-guide.md");
    let example = include_str!("../../../crates/ema-server/examples/protect_rmcp.rs");
    let guarded = include_str!("../../../crates/ema-server/examples/guard_rmcp.rs");
    let rust_blocks = |text: &'static str| -> Vec<&'static str> {
        text.split("```rust\n")
            .skip(1)
            .map(|rest| rest.split("\n```").next().unwrap())
            .collect()
    };
    // Sections 1 to 6 quote `protect_rmcp`; section 7 (the tool-call guard) `guard_rmcp`.
    let (protect, guard) = guide.split_once("\n## 7.").unwrap();
    let blocks = rust_blocks(protect);
    assert_eq!(blocks.len(), 3, "the guide's Rust blocks");
    for block in blocks {
        assert!(example.contains(block), "not in the example:\n{block}");
    }
    let blocks = rust_blocks(guard);
    assert_eq!(blocks.len(), 1, "the guard section's Rust blocks");
    for block in blocks {
        assert!(guarded.contains(block), "not in guard_rmcp:\n{block}");
    }
    // The auth code stays within 15 lines: the import, the tools' `Principal` arguments, and
    // the builder through the layer and metadata router (comments not counted).
    let code: Vec<&str> = example
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .collect();
    let start = code
        .iter()
        .position(|l| l.starts_with("let auth = BearerAuth::builder"))
        .unwrap();
    let end = code
        .iter()
        .position(|l| l.contains("auth.resource_metadata_router()"))
        .unwrap();
    let auth_lines = (end - start + 1)
        + code
            .iter()
            .filter(|l| l.starts_with("use ema_server"))
            .count()
        + code.iter().filter(|l| l.contains(": Principal")).count();
    assert!(auth_lines <= 15, "{auth_lines} lines of auth code");
}
