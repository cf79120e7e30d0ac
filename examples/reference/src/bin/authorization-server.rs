//! The reference MCP authorization server. Run:
//! `cargo run -p ema-examples --bin authorization-server [-- --config as.toml]`

use ema_examples::config::defaults;
use ema_examples::{serve, servers};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let default = || {
        let mcp = format!("{}/mcp", defaults::MCP);
        let notes = format!("{}/notes", defaults::MCP);
        defaults::authorization_server(defaults::IDP, defaults::AS, &mcp, &notes)
    };
    serve::run_server(
        "authorization-server",
        default,
        |c| &c.server,
        servers::authorization_server_app,
    )
    .await
}
