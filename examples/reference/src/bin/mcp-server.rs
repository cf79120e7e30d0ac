//! The reference MCP server (task list). Run:
//! `cargo run -p ema-examples --bin mcp-server [-- --config mcp.toml]`

use std::sync::Arc;

use ema_examples::config::{self, defaults};
use ema_examples::{serve, servers};
use ema_jose::SystemClock;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    serve::init_logging("info");
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = match serve::config_arg()? {
        Some(path) => config::load(&path)?,
        None => defaults::mcp_server(defaults::AS, defaults::MCP),
    };
    let (listener, bound) = serve::bind(cfg.server.listen).await?;
    let public = cfg
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| bound.clone());
    let app = servers::mcp_app(&cfg, &public, Arc::new(SystemClock))?;
    println!("{bound}");
    tracing::info!(resource = %format!("{public}{}", cfg.path), "MCP server listening");
    serve::serve(listener, app, serve::ctrl_c()).await?;
    Ok(())
}
