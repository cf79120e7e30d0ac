//! A command-line agent: signs a user in at the IdP, gets an access token for the MCP server
//! through EMA (token exchange, then jwt-bearer), lists the tools and calls one.
//!
//! Run against the default servers (`idp`, `authorization-server`, `mcp-server`):
//! `cargo run -p ema-examples --bin agent -- [--user ana --password ana-password] [tools | whoami | call <tool> [<json arguments>]]`

use std::sync::Arc;

use ema_client::{
    ClientCredentials, EmaClient, EmaHttpClient, FetchPolicy, IdpConfig, Secret, ema_client_config,
};
use ema_examples::config::defaults;
use ema_examples::sso::SsoClient;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;

struct Args {
    idp: String,
    auth_server: String,
    mcp: String,
    user: String,
    password: String,
    command: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        idp: defaults::IDP.into(),
        auth_server: defaults::AS.into(),
        mcp: format!("{}/mcp", defaults::MCP),
        user: "ana".into(),
        password: "ana-password".into(),
        command: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("`{name}` needs a value"));
        match arg.as_str() {
            "--idp" => args.idp = value("--idp")?,
            "--as" => args.auth_server = value("--as")?,
            "--mcp" => args.mcp = value("--mcp")?,
            "--user" => args.user = value("--user")?,
            "--password" => args.password = value("--password")?,
            _ => {
                args.command.push(arg);
                args.command.extend(it.by_ref());
            }
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ema_examples::serve::init_logging("warn");
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    // SSO (hop 1): the IdP's login form, answered for the user.
    let sso = SsoClient {
        idp: args.idp.clone(),
        client_id: "desk-idp-01".into(),
        client_secret: "desk-secret".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
    };
    let id_token = sso.sign_in(&args.user, &args.password).await?;
    eprintln!("signed in as {}", args.user);

    // EMA (hops 0, 2, 3): discovery, token exchange, jwt-bearer; loopback http is a named
    // development opt-in.
    let client = EmaClient::builder(IdpConfig::new(
        args.idp.as_str(),
        format!("{}/token", args.idp),
        ClientCredentials::secret_basic("desk-idp-01", "desk-secret"),
    ))
    .authorization_server(
        args.auth_server.as_str(),
        ClientCredentials::secret_basic("tc_5f2a91", "tc-secret"),
    )
    .fetch_policy(FetchPolicy::insecure_loopback_development())
    .build()?;
    let session = client
        .session(&url::Url::parse(&args.mcp)?, Secret::new(id_token))
        .await?;

    // The MCP call (hop 4), through rmcp; only the access token reaches the server (CL-7). The
    // client declares the EMA extension in its MCP capabilities (CL-15).
    let transport = EmaHttpClient::new(Arc::new(session))?.into_transport();
    let mcp = ema_client_config().serve(transport).await?;
    match args.command.first().map(String::as_str) {
        None | Some("tools") => {
            for tool in mcp.list_all_tools().await? {
                println!(
                    "{}: {}",
                    tool.name,
                    tool.description.as_deref().unwrap_or("")
                );
            }
        }
        Some("whoami") => print_result(mcp.call_tool(CallToolRequestParams::new("whoami")).await?),
        Some("call") => {
            let name = args
                .command
                .get(1)
                .ok_or("usage: call <tool> [<json arguments>]")?
                .clone();
            let mut params = CallToolRequestParams::new(name);
            if let Some(json) = args.command.get(2) {
                let value: serde_json::Value = serde_json::from_str(json)?;
                let serde_json::Value::Object(map) = value else {
                    return Err("tool arguments must be a JSON object".into());
                };
                params = params.with_arguments(map);
            }
            print_result(mcp.call_tool(params).await?);
        }
        Some(other) => {
            return Err(format!("unknown command `{other}` (tools, whoami, call)").into());
        }
    }
    mcp.cancel().await?;
    Ok(())
}

fn print_result(result: rmcp::model::CallToolResult) {
    for block in result.content {
        if let Some(text) = block.as_text() {
            println!("{}", text.text);
        }
    }
    if result.is_error == Some(true) {
        eprintln!("(the tool reported an error)");
    }
}
