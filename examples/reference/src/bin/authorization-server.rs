//! The reference MCP authorization server. Run:
//! `cargo run -p ema-examples --bin authorization-server [-- --config as.toml]`

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
            eprintln!("authorization-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = match serve::config_arg()? {
        Some(path) => config::load(&path)?,
        None => defaults::authorization_server(
            defaults::IDP,
            defaults::AS,
            &format!("{}/mcp", defaults::MCP),
            &format!("{}/notes", defaults::MCP),
        ),
    };
    let (listener, bound) = serve::bind(cfg.server.listen).await?;
    let public = cfg
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| bound.clone());
    let app = servers::authorization_server_app(&cfg, &public, Arc::new(SystemClock))?;
    println!("{bound}");
    tracing::info!(issuer = %public, "authorization server listening");
    serve::serve(listener, app, serve::ctrl_c()).await?;
    Ok(())
}
