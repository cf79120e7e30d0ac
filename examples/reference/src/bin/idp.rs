//! The reference enterprise IdP. Run: `cargo run -p ema-examples --bin idp [-- --config idp.toml]`

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
    let default = || {
        let mcp = format!("{}/mcp", defaults::MCP);
        let notes = format!("{}/notes", defaults::MCP);
        defaults::idp(defaults::IDP, defaults::AS, &mcp, &notes)
    };
    serve::run_server("idp", default, |c| &c.server, servers::idp_app).await
}
