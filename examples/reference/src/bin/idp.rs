//! The reference enterprise IdP. Run: `cargo run -p ema-examples --bin idp [-- --config idp.toml]`

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
            eprintln!("idp: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = match serve::config_arg()? {
        Some(path) => config::load(&path)?,
        None => defaults::idp(
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
    let app = servers::idp_app(&cfg, &public, Arc::new(SystemClock))?;
    println!("{bound}");
    tracing::info!(issuer = %public, "IdP listening");
    serve::serve(listener, app, serve::ctrl_c()).await?;
    Ok(())
}
