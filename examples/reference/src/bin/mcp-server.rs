//! The reference MCP server (task list). Run:
//! `cargo run -p ema-examples --bin mcp-server [-- --config mcp.toml]`

use ema_examples::config::defaults;
use ema_examples::{serve, servers};

/// mimalloc instead of the system allocator: the servers allocate per request (hyper, axum,
/// rmcp, Cedar) from several worker threads, where glibc's arenas contend; under the load tool
/// (`docs/benchmarks.md`, which runs these servers on the same allocator) it served about a
/// third more MCP calls per second.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let default = || defaults::mcp_server(defaults::AS, defaults::MCP);
    serve::run_server("mcp-server", default, |c| &c.server, servers::mcp_app).await
}
