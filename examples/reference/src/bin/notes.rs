//! The mock downstream provider "notes" (see `ema_examples::notes`) for the reference MCP
//! server's `[vault]`: `cargo run -p ema-examples --bin notes`. Listens on
//! `127.0.0.1:9403`, registers client `mcp-notes` / `notes-secret` with the callback of the
//! MCP server at `127.0.0.1:9402`, approves every request as `ana@notes.example`, and issues
//! access tokens for 300 seconds. The first line printed is its URL.

use std::sync::Arc;

use ema_examples::config::defaults;
use ema_examples::notes::{NotesConfig, NotesProvider};
use ema_examples::serve;

/// Where it listens.
const LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 9403);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    serve::init_logging("info");
    let (listener, url) = match serve::bind(std::net::SocketAddr::from(LISTEN)).await {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!("notes: cannot listen on {:?}: {e}", LISTEN);
            return std::process::ExitCode::from(2);
        }
    };
    let provider = NotesProvider::new(
        NotesConfig {
            issuer: url.clone(),
            client_id: defaults::NOTES_CLIENT_ID.into(),
            client_secret: defaults::NOTES_CLIENT_SECRET.into(),
            redirect_uris: vec![format!("{}/connect/notes/callback", defaults::MCP)],
            user: "ana@notes.example".into(),
            access_token_lifetime_secs: 300,
        },
        Arc::new(ema_jose::SystemClock),
    );
    println!("{url}");
    match serve::serve(listener, provider.router(), serve::ctrl_c()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notes: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
