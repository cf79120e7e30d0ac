//! Run: `cargo run -p ema-client --example rmcp_client -- https://mcp.tasks.example/mcp`
//!
//! From an employee's ID token to MCP tool calls, with rmcp over Streamable HTTP and
//! Enterprise-Managed Authorization doing the authorization. Configuration comes from the
//! environment (the values an organization configures, CL-14):
//!
//! - `IDP_ISSUER`, `IDP_TOKEN_ENDPOINT`, `IDP_CLIENT_ID`, `IDP_CLIENT_SECRET`: the enterprise IdP
//!   and the client's registration there;
//! - `AS_ISSUER`, `AS_CLIENT_ID`, `AS_CLIENT_SECRET`: the MCP authorization server and the
//!   client's registration there (CL-13);
//! - `ID_TOKEN`: the user's ID token from single sign-on.
//!
//! Add `--insecure-allow-loopback-http` to try it against servers on this machine.

use std::sync::Arc;

use ema_client::{
    ClientCredentials, EmaClient, EmaHttpClient, FetchPolicy, IdpConfig, Secret, ema_client_config,
};
use rmcp::ServiceExt;

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let policy = if args.iter().any(|a| a == "--insecure-allow-loopback-http") {
        FetchPolicy::insecure_loopback_development()
    } else {
        FetchPolicy::new()
    };
    let server = args
        .iter()
        .rfind(|a| !a.starts_with("--"))
        .ok_or("usage: rmcp_client [--insecure-allow-loopback-http] <mcp-server-url>")?;
    let server = url::Url::parse(server)?;

    let client = EmaClient::builder(IdpConfig::new(
        env("IDP_ISSUER")?,
        env("IDP_TOKEN_ENDPOINT")?,
        ClientCredentials::secret_basic(env("IDP_CLIENT_ID")?, env("IDP_CLIENT_SECRET")?),
    ))
    .authorization_server(
        env("AS_ISSUER")?,
        ClientCredentials::secret_basic(env("AS_CLIENT_ID")?, env("AS_CLIENT_SECRET")?),
    )
    .fetch_policy(policy)
    .build()?;

    // Discovery (hop 0) happens here; tokens are acquired on the first request.
    let session = client
        .session(&server, Secret::new(env("ID_TOKEN")?))
        .await?;
    let transport = EmaHttpClient::new(Arc::new(session))?.into_transport();
    // The client declares the EMA extension in its MCP capabilities (CL-15).
    let mcp = ema_client_config().serve(transport).await?;
    for tool in mcp.list_all_tools().await? {
        println!("{}", tool.name);
    }
    mcp.cancel().await?;
    Ok(())
}
