//! A client for the `@modelcontextprotocol/conformance` suite's EMA scenarios
//! (`auth/enterprise-managed-authorization` in 0.2.x, `auth/cross-app-access-complete-flow` in
//! 0.1.x).
//!
//! Run by the suite as `conformance-client [--insecure-allow-loopback-http] <server-url>`; the
//! scenario name comes from `MCP_CONFORMANCE_SCENARIO` and its context (JSON: `client_id`,
//! `client_secret`, `idp_client_id`, `idp_id_token`, `idp_issuer`, `idp_token_endpoint`) from
//! `MCP_CONFORMANCE_CONTEXT`. The suite's servers listen on loopback `http`, which the client
//! refuses unless `--insecure-allow-loopback-http` is given. See `scripts/conformance.sh`.

use std::process::ExitCode;
use std::sync::Arc;

use ema_client::{
    ClientCredentials, EmaClient, EmaHttpClient, FetchPolicy, IdpConfig, Secret, ema_client_config,
};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::Value;
use url::Url;

const SCENARIOS: [&str; 2] = [
    "auth/enterprise-managed-authorization",
    "auth/cross-app-access-complete-flow",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("conformance-client: {message}");
            ExitCode::FAILURE
        }
    }
}

fn context_string(context: &Value, name: &str) -> Result<String, String> {
    context
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("context has no string `{name}`"))
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let loopback = args.iter().any(|a| a == "--insecure-allow-loopback-http");
    let server = args
        .iter()
        .rev()
        .find(|a| !a.starts_with("--"))
        .ok_or("usage: conformance-client [--insecure-allow-loopback-http] <server-url>")?;
    let server = Url::parse(server).map_err(|e| format!("server URL: {e}"))?;
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO")
        .map_err(|_| "MCP_CONFORMANCE_SCENARIO is not set")?;
    if !SCENARIOS.contains(&scenario.as_str()) {
        return Err(format!("scenario `{scenario}` is not supported"));
    }
    let context: Value = serde_json::from_str(
        &std::env::var("MCP_CONFORMANCE_CONTEXT")
            .map_err(|_| "MCP_CONFORMANCE_CONTEXT is not set")?,
    )
    .map_err(|e| format!("MCP_CONFORMANCE_CONTEXT is not JSON: {e}"))?;

    let policy = if loopback {
        FetchPolicy::insecure_loopback_development()
    } else {
        FetchPolicy::new()
    };
    // CL-14: the IdP comes from the organization's configuration (here, the scenario context).
    // The suite's IdP knows the client by id only.
    let idp = IdpConfig::new(
        context_string(&context, "idp_issuer")?,
        context_string(&context, "idp_token_endpoint")?,
        ClientCredentials::public(context_string(&context, "idp_client_id")?),
    );
    let client_id = context_string(&context, "client_id")?;
    let client_secret = context_string(&context, "client_secret")?;
    let id_token = Secret::new(context_string(&context, "idp_id_token")?);

    // The authorization server is discovered; its credentials are registered under the
    // issuer discovery validates (CL-13), so discover first.
    let probe = EmaClient::builder(idp.clone())
        .fetch_policy(policy)
        .build()
        .map_err(|e| e.to_string())?;
    let discovered = probe.discover(&server).await.map_err(|e| e.to_string())?;
    let client = EmaClient::builder(idp)
        .fetch_policy(policy)
        .authorization_server(
            discovered.issuer(),
            ClientCredentials::secret_basic(client_id, client_secret),
        )
        .build()
        .map_err(|e| e.to_string())?;
    let session = Arc::new(client.session_for(discovered, id_token));
    let token = session.access_token().await.map_err(|e| e.to_string())?;
    eprintln!(
        "conformance-client: access token for `{}`, scope `{}`",
        token.resource(),
        token.scope()
    );

    let transport = EmaHttpClient::new(session)
        .map_err(|e| e.to_string())?
        .into_transport();
    // The client declares the EMA extension in its MCP capabilities (CL-15).
    let mcp = ema_client_config()
        .serve(transport)
        .await
        .map_err(|e| format!("MCP initialize: {e}"))?;
    let tools = mcp
        .list_all_tools()
        .await
        .map_err(|e| format!("tools/list: {e}"))?;
    if let Some(tool) = tools.first() {
        mcp.call_tool(CallToolRequestParams::new(tool.name.clone()))
            .await
            .map_err(|e| format!("tools/call: {e}"))?;
    }
    mcp.cancel().await.map_err(|e| format!("close: {e}"))?;
    Ok(())
}
