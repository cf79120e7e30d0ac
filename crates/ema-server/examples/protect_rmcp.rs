//! An rmcp Streamable HTTP server protected by MCP Enterprise-Managed Authorization: the code
//! of `docs/adopters-guide.md`, run by `examples/reference/tests/adopters_guide.rs` against the
//! reference IdP and authorization server.
//!
//! ```text
//! cargo run -p ema-server --features rmcp --example protect_rmcp
//! ```
//!
//! serves `http://127.0.0.1:9402/mcp` for the reference authorization server at
//! `http://127.0.0.1:9401` (the development defaults of `ema-examples`). Set `MCP_RESOURCE`,
//! `AS_ISSUER` and `AS_JWKS_URL` to change them; loopback `http` is allowed only when the
//! resource itself is loopback `http`.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};

// [auth] The only EMA crate the server needs.
use ema_server::{BearerAuth, BearerBuildError, FetchPolicy, Principal, rmcp::tool_names};

/// Arguments of `add_note`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct AddNote {
    /// The note.
    text: String,
}

/// An MCP server with two tools: notes kept in memory, per user.
#[derive(Debug, Clone)]
pub(crate) struct Notes {
    notes: Arc<Mutex<Vec<(String, String)>>>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Notes {
    pub(crate) fn new() -> Self {
        Self {
            notes: Arc::default(),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Who the server sees")]
    fn whoami(&self, who: Principal) -> String {
        format!("{} via {}", who.subject(), who.client_id())
    }

    #[tool(description = "Add a note (needs tasks.write)")]
    fn add_note(&self, who: Principal, Parameters(note): Parameters<AddNote>) -> String {
        let mut notes = self.notes.lock().unwrap_or_else(PoisonError::into_inner);
        notes.push((who.subject().to_owned(), note.text));
        let mine = notes.iter().filter(|(user, _)| user == who.subject());
        format!("{} has {} notes", who.subject(), mine.count())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {}

/// The MCP server at `/mcp` of `resource`, accepting access tokens of the authorization server
/// `issuer` whose keys are at `jwks_url`.
pub(crate) fn app(
    resource: &str,
    issuer: &str,
    jwks_url: &str,
    fetch_policy: FetchPolicy,
) -> Result<Router, BearerBuildError> {
    let mcp = StreamableHttpService::new(
        || Ok(Notes::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    // [auth] Tokens of `issuer` for `resource`, every call needs tasks.read, add_note also
    // tasks.write; the tool names come from the server itself (a typo fails the build).
    let auth = BearerAuth::builder(resource, issuer)
        .jwks_url(jwks_url)
        .fetch_policy(fetch_policy)
        .require_scopes(["tasks.read"])
        .tools(tool_names(&Notes::tool_router()))
        .tool_scopes("add_note", ["tasks.write"])
        .build()?;
    // [auth] The layer in front of the MCP service, and the RFC 9728 metadata beside it.
    let protected = Router::new().nest_service("/mcp", mcp).layer(auth.clone());
    Ok(protected.merge(auth.resource_metadata_router()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let resource = url::Url::parse(&var("MCP_RESOURCE", "http://127.0.0.1:9402/mcp"))?;
    let issuer = var("AS_ISSUER", "http://127.0.0.1:9401");
    let jwks_url = var("AS_JWKS_URL", &format!("{issuer}/jwks"));
    let loopback = resource.scheme() == "http"
        && resource
            .host_str()
            .is_some_and(|h| h == "127.0.0.1" || h == "localhost");
    let policy = if loopback {
        FetchPolicy::insecure_loopback_development()
    } else {
        FetchPolicy::new()
    };
    let app = app(resource.as_str(), &issuer, &jwks_url, policy)?;
    let addr = resource.socket_addrs(|| None)?;
    let listener = tokio::net::TcpListener::bind(addr.as_slice()).await?;
    println!("serving {resource} for {issuer}");
    axum::serve(listener, app).await?;
    Ok(())
}
