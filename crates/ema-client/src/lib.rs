#![doc = include_str!("../README.md")]
//!
//! # The pieces
//!
//! - [`HttpFetcher`] with a [`FetchPolicy`] (from `ema-jwks`, re-exported): `https` only unless
//!   loopback is explicitly allowed (MD-8), private and link-local addresses refused (literal
//!   addresses before the request, names at DNS resolution), a streamed body cap, connect and
//!   total timeouts, no redirects, no proxy. Every request of this crate goes through it.
//! - [`RemoteJwks`] and [`IssuerKeys`] (from `ema-jwks`, re-exported): remote key sets as an
//!   [`ema_jose::KeySource`], cached per `Cache-Control` within bounds, one rate-limited
//!   single-flight refetch on an unknown `kid` (SEC-3), last good set kept on failure, no
//!   rollback to removed keys (EMA §7.4.1).
//! - Discovery ([`EmaClient::discover`]): protected-resource metadata from the `401`
//!   challenge's `resource_metadata` with the CL-1 fallbacks and the D-9 check, then
//!   authorization-server metadata in the CL-2 order with the MD-5 issuer check and the CL-3
//!   profile check.
//! - The flow ([`EmaClient`], [`EmaSession`]): token exchange at the IdP (CL-4, CL-5, D-10),
//!   local sanity checks of the ID-JAG, jwt-bearer at the authorization server with
//!   `client_secret_basic` or `private_key_jwt` and per-issuer credentials (CL-6, CL-13), an
//!   access-token cache per (authorization server, resource, scopes, user) refreshed before
//!   expiry, one re-acquisition on `401 invalid_token` (CL-9) and the scope union on
//!   `403 insufficient_scope` (CL-10). Never an interactive fallback (CL-8); the ID token and
//!   the ID-JAG never go to the MCP server (CL-7).
//! - Typed errors per hop ([`EmaError`], [`Hop`]) carrying the server's OAuth error; secrets are
//!   [`Secret`]s, redacted in `Debug` and never in `Display`. A refused step-up carries a
//!   [`ScopeReport`]: the scopes asked for, granted by the IdP in the ID-JAG, granted by the
//!   authorization server and required by the MCP server, and the hop that narrowed them;
//!   [`EmaSession::last_failure`] keeps the last refusal for callers whose transport (rmcp)
//!   reports only its own error.
//! - The MCP authorization code flow ([`EmaClient::authorize`], [`CodeFlowOptions`]) for
//!   servers whose authorization server lacks the ID-JAG profile, or when asked
//!   ([`EmaClient::connect`], [`EmaClient::code_flow_session`]): PKCE S256, `state` (CL-12),
//!   `resource` (RFC 8707), the RFC 9207 `iss` check, an [`OpenUrl`] hook (default
//!   [`PrintUrl`]) and a [`LoopbackRedirect`] listener; typed [`CodeFlowError`]s. Its tokens
//!   go through the same [`EmaSession`] call path. Never used unless configured (CL-8).
//! - With the `rmcp` feature: [`EmaHttpClient`], an rmcp Streamable HTTP client that authorizes
//!   every request through a session (see `examples/rmcp_client.rs`), and
//!   [`ema_client_config`] / [`declare_ema_extension`], which declare the EMA extension
//!   ([`EMA_EXTENSION_ID`]) in the client's MCP capabilities (CL-15), and
//!   [`declare_url_elicitation`] for a client that shows the user the links a server asks
//!   them to open (URL-mode elicitation).

mod code_flow;
mod credentials;
mod discovery;
mod error;
mod extension;
mod flow;
#[cfg(feature = "rmcp")]
mod mcp;
mod scope_report;
mod sign_in;

pub use code_flow::{CodeFlowOptions, LoopbackRedirect, OpenUrl, OpenUrlFuture, PrintUrl};
pub use credentials::{ClientAuth, ClientCredentials};
pub use discovery::DiscoveredServer;
/// The OAuth error codes servers answer with ([`EmaError::oauth_code`]), re-exported from
/// `ema-metadata`.
pub use ema_metadata::ErrorCode;
pub use error::{
    CodeFlowError, DiscoveryError, EmaError, Hop, IdJagCheckError, JwtBearerError, McpAuthError,
    OAuthErrorResponse, TokenExchangeError,
};
pub use extension::EMA_EXTENSION_ID;
#[cfg(feature = "rmcp")]
pub use extension::{declare_ema_extension, declare_url_elicitation, ema_client_config};
pub use flow::{
    AccessToken, EmaClient, EmaClientBuilder, EmaSession, ID_TOKEN_TYPE, IdJag, IdpConfig,
    LEGACY_ID_JAG_TOKEN_TYPE, Recovery,
};
#[cfg(feature = "rmcp")]
pub use mcp::{EmaHttpClient, EmaTransportError};
// The fetcher, the remote key sets and `Secret` live in `ema-jwks`; re-exported so that code
// written against earlier versions of this crate keeps compiling.
pub use ema_jwks::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, FetchError, FetchPolicy,
    FetchResponse, HttpFetcher, IssuerKeys, IssuerKeysError, JwksCachePolicy, JwksFetchError,
    JwksSource, RemoteJwks, Secret,
};
pub use scope_report::ScopeReport;
