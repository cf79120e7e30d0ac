//! Interop with rmcp's own EMA client helper (feature `auth-enterprise-managed`,
//! `rmcp::transport::auth::enterprise`), a client nobody in this project wrote, against the
//! reference IdP, authorization server and MCP server started in process on loopback ports.
//!
//! What is rmcp's: discovery (`AuthorizationManager::resolve_metadata`: protected-resource
//! metadata, then the authorization server's RFC 8414 metadata into rmcp's
//! `AuthorizationMetadata`, which requires `authorization_endpoint`), both token requests
//! (`EmaExchangeRequest`: RFC 8693 token exchange at the IdP, its own checks of the ID-JAG's
//! type and bindings, then the RFC 7523 jwt-bearer grant at the authorization server) and the MCP
//! session (`StreamableHttpClientTransport` with the bearer token). What is ours: the sign-in at
//! the IdP for the ID token (the helper leaves it to the application) and the servers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::collections::HashSet;
use std::sync::Arc;

use ema_examples::config::defaults;
use ema_examples::sso::{SsoClient, discover_idp};
use ema_examples::{serve, servers};
use ema_jose::{Clock, SystemClock};
use oauth2::ClientSecret;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::enterprise::{
    EmaAuthorizationServer, EmaClientAuthentication, EmaError, EmaExchangeRequest, EmaExchangeStage,
};
use rmcp::transport::auth::{
    AuthorizationManager, AuthorizationMetadataSource, default_oauth_http_client,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

struct Servers {
    idp: String,
    auth_server: String,
    mcp: String,
}

/// The reference servers with their development configuration (`demo --serve`'s), on
/// OS-chosen loopback ports.
async fn start() -> Servers {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (idp_listener, idp) = serve::bind(loopback).await.unwrap();
    let (as_listener, auth_server) = serve::bind(loopback).await.unwrap();
    let (mcp_listener, mcp_base) = serve::bind(loopback).await.unwrap();
    let mcp = format!("{mcp_base}/mcp");
    let notes = format!("{mcp_base}/notes");
    let idp_cfg = defaults::idp(&idp, &auth_server, &mcp, &notes);
    let idp_app = servers::idp_app(&idp_cfg, &idp, clock.clone()).unwrap();
    let as_cfg = defaults::authorization_server(&idp, &auth_server, &mcp, &notes);
    let as_app = servers::authorization_server_app(&as_cfg, &auth_server, clock.clone()).unwrap();
    let mcp_app = servers::mcp_app(
        &defaults::mcp_server(&auth_server, &mcp_base),
        &mcp_base,
        clock,
    )
    .unwrap();
    for (listener, app) in [
        (idp_listener, idp_app),
        (as_listener, as_app),
        (mcp_listener, mcp_app),
    ] {
        tokio::spawn(serve::serve(listener, app, std::future::pending()));
    }
    Servers {
        idp,
        auth_server,
        mcp,
    }
}

/// Hop 1, the application's part: ana signs in at the IdP's login form for an ID token.
async fn id_token(s: &Servers) -> String {
    SsoClient {
        idp: s.idp.clone(),
        client_id: "desk-idp-01".into(),
        client_secret: "desk-secret".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        client_secret_post: false,
    }
    .sign_in("ana", "ana-password")
    .await
    .unwrap()
}

fn basic(secret: &str) -> EmaClientAuthentication {
    EmaClientAuthentication::ClientSecretBasic(ClientSecret::new(secret.to_owned()))
}

fn text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_ema_helper_gets_an_access_token_and_calls_tools() {
    let s = start().await;
    let id_token = id_token(&s).await;

    // rmcp's discovery from the MCP server's URL: PRM, then the AS metadata, parsed into its
    // `AuthorizationMetadata` (which has `authorization_endpoint` as a required member).
    let manager = AuthorizationManager::new(s.mcp.as_str()).await.unwrap();
    let resolution = manager.resolve_metadata().await.unwrap();
    assert_eq!(
        resolution.source,
        AuthorizationMetadataSource::ProtectedResourceMetadata
    );
    let metadata = resolution.metadata;
    assert_eq!(metadata.issuer.as_deref(), Some(s.auth_server.as_str()));
    assert_eq!(metadata.token_endpoint, format!("{}/token", s.auth_server));
    assert_eq!(
        metadata.additional_fields["authorization_grant_profiles_supported"],
        serde_json::json!(["urn:ietf:params:oauth:grant-profile:id-jag"])
    );

    // The IdP's token endpoint from its OpenID configuration (issuer checked).
    let plain = reqwest::Client::new();
    let idp_endpoints = discover_idp(&plain, &s.idp).await.unwrap();

    // Both token requests by rmcp's helper: token exchange at the IdP, jwt-bearer at the AS.
    let http = default_oauth_http_client().unwrap();
    let token = EmaExchangeRequest::new_with_id_token(
        EmaAuthorizationServer::new(&s.idp, &idp_endpoints.token_endpoint, "desk-idp-01")
            .with_client_authentication(basic("desk-secret")),
        EmaAuthorizationServer::new(
            metadata.issuer.clone().unwrap(),
            &metadata.token_endpoint,
            "tc_5f2a91",
        )
        .with_client_authentication(basic("tc-secret")),
        &s.mcp,
        &id_token,
    )
    .with_scopes(["tasks.read", "tasks.write"])
    .exchange(&http, &http)
    .await
    .unwrap();
    let want: HashSet<String> = ["tasks.read", "tasks.write"].map(String::from).into();
    assert_eq!(token.scopes, want);
    assert!(token.expires_in.is_some_and(|d| d.as_secs() > 0));

    // The MCP session through rmcp's own streamable HTTP client, with that bearer token.
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(s.mcp.as_str())
            .auth_header(token.access_token.secret().clone()),
    );
    let client = ().serve(transport).await.unwrap();
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "whoami") && names.iter().any(|n| n == "add_task"),
        "{names:?}"
    );
    let who: serde_json::Value = serde_json::from_str(&text(
        &client
            .call_tool(CallToolRequestParams::new("whoami"))
            .await
            .unwrap(),
    ))
    .unwrap();
    // The development mapping of ana's IdP subject, the AS client the ID-JAG named.
    assert_eq!(who["sub"], "u-17");
    assert_eq!(who["client_id"], "tc_5f2a91");
    assert_eq!(who["scope"], "tasks.read tasks.write");
    let added = client
        .call_tool(
            CallToolRequestParams::new("add_task").with_arguments(
                serde_json::json!({"title": "interop: rmcp EMA helper"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_ne!(added.is_error, Some(true), "{}", text(&added));
    assert!(text(&added).contains("interop: rmcp EMA helper"));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_ema_helper_refusals_are_ours() {
    let s = start().await;
    let id_token = id_token(&s).await;
    let http = default_oauth_http_client().unwrap();
    let idp = |secret: &str| {
        EmaAuthorizationServer::new(&s.idp, format!("{}/token", s.idp), "desk-idp-01")
            .with_client_authentication(basic(secret))
    };
    let resource_as = |client: &str, secret: &str| {
        EmaAuthorizationServer::new(&s.auth_server, format!("{}/token", s.auth_server), client)
            .with_client_authentication(basic(secret))
    };

    // A wrong secret at the IdP: our invalid_client, seen by the helper at the IdP stage.
    let wrong_idp_secret = EmaExchangeRequest::new_with_id_token(
        idp("not-the-secret"),
        resource_as("tc_5f2a91", "tc-secret"),
        &s.mcp,
        &id_token,
    )
    .exchange(&http, &http)
    .await
    .unwrap_err();
    assert_eq!(
        wrong_idp_secret,
        EmaError::OAuthRejected {
            stage: EmaExchangeStage::IdentityProvider,
            status: 401,
            code: "invalid_client",
        }
    );

    // The ID-JAG is fine but the AS client authenticates with a wrong secret: our
    // invalid_client at the AS stage.
    let wrong_as_secret = EmaExchangeRequest::new_with_id_token(
        idp("desk-secret"),
        resource_as("tc_5f2a91", "not-the-secret"),
        &s.mcp,
        &id_token,
    )
    .exchange(&http, &http)
    .await
    .unwrap_err();
    assert_eq!(
        wrong_as_secret,
        EmaError::OAuthRejected {
            stage: EmaExchangeStage::ResourceAuthorizationServer,
            status: 401,
            code: "invalid_client",
        }
    );

    // Without a token the MCP server refuses the session (401): rmcp's client cannot start.
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(s.mcp.as_str()),
    );
    assert!(().serve(transport).await.is_err());

    // Positive control: the same requests with the right secrets succeed.
    let token = EmaExchangeRequest::new_with_id_token(
        idp("desk-secret"),
        resource_as("tc_5f2a91", "tc-secret"),
        &s.mcp,
        &id_token,
    )
    .exchange(&http, &http)
    .await
    .unwrap();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(s.mcp.as_str())
            .auth_header(token.access_token.secret().clone()),
    );
    let client = ().serve(transport).await.unwrap();
    assert!(!client.list_all_tools().await.unwrap().is_empty());
    client.cancel().await.unwrap();
}
