//! The reference MCP server (task list). Run:
//! `cargo run -p ema-examples --bin mcp-server [-- --config mcp.toml]`

use ema_examples::config::defaults;
use ema_examples::{serve, servers};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let default = || defaults::mcp_server(defaults::AS, defaults::MCP);
    serve::run_server("mcp-server", default, |c| &c.server, servers::mcp_app).await
}
