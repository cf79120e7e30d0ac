//! The reference enterprise IdP. Run: `cargo run -p ema-examples --bin idp [-- --config idp.toml]`

use ema_examples::config::defaults;
use ema_examples::{serve, servers};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let default = || {
        let mcp = format!("{}/mcp", defaults::MCP);
        let notes = format!("{}/notes", defaults::MCP);
        defaults::idp(defaults::IDP, defaults::AS, &mcp, &notes)
    };
    serve::run_server("idp", default, |c| &c.server, servers::idp_app).await
}
