//! axum adapters for MCP Enterprise-Managed Authorization.
//!
//! - [`idp_router`]: an enterprise IdP: OpenID Connect discovery and RFC 8414 metadata, JWKS,
//!   single sign-on (authorization code + PKCE behind a login form), and a token endpoint
//!   serving both the authorization-code grant and token exchange (ID token → ID-JAG).
//! - [`authorization_server_router`]: an MCP authorization server: RFC 8414 metadata
//!   advertising the ID-JAG grant profile, JWKS, and the jwt-bearer token endpoint (ID-JAG →
//!   access token).
//! - [`BearerAuth`] (built by [`BearerAuth::builder`]), a `tower::Layer`: the resource-server
//!   side for any axum- or tower-served MCP server (RS-1..RS-7), handing a verified
//!   [`Principal`] to handlers (an axum extractor; in rmcp tools with the `rmcp` feature);
//!   scopes per request, per JSON-RPC method (with a default) and per declared tool (RS-6);
//!   [`BearerAuth::resource_metadata_router`] serves its RFC 9728 metadata.
//! - [`EndpointPaths`] with [`idp_metadata_with_paths`]: where an IdP or authorization server
//!   mounts and publishes its token endpoint, JWKS and authorization endpoint (e.g. behind a
//!   proxy), checked to be plain, distinct paths.
//! - [`harden`]: body limits, timeouts, JSON 404s and path-only request logs on every route.
//!
//! Handlers are thin: parsing and decisions live in `ema-grant`, `ema-id-jag` and `ema-jose`.
//!
//! # Quick start: protect an MCP endpoint
//!
//! ```
//! use axum::{Router, routing::post};
//! use ema_server::{BearerAuth, Limits, Principal, harden};
//!
//! # let as_keys = ema_jose::KeyRing::new(ema_jose::SigningKey::generate(ema_jose::Algorithm::ES256, None)?);
//! let auth = BearerAuth::builder("https://mcp.tasks.example/mcp", "https://auth.tasks.example")
//!     // In production: .jwks_url("https://auth.tasks.example/jwks")
//!     .jwks(as_keys.jwks())
//!     .require_scopes(["tasks.read"])
//!     .build()?;
//! let mcp = Router::new().route(
//!     "/mcp",
//!     post(|who: Principal| async move { format!("hello {}", who.subject()) }),
//! );
//! let app = harden(
//!     mcp.layer(auth.clone()).merge(auth.resource_metadata_router()),
//!     &Limits::default(),
//! );
//! # let _ = app;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! For an rmcp server, see `docs/adopters-guide.md` and the `protect_rmcp` example.

mod authorization_server;
mod bearer;
mod endpoint;
mod hardening;
mod idp;
mod paths;
mod principal;
#[cfg(feature = "rmcp")]
pub mod rmcp;
mod rpc_peek;

pub use authorization_server::authorization_server_router;
pub use bearer::{
    BearerAuth, BearerAuthBuilder, BearerBuildError, BearerService, NO_SCOPES, protect,
    protected_resource_router,
};
pub use principal::{MissingPrincipal, Principal};

// What the builder and the principal name, so that a resource server needs this crate alone.
pub use ema_grant::{AccessTokenClaims, IdJagOrigin};
pub use ema_id_jag::ScopeSet;
pub use ema_jose::{Algorithm, AlgorithmSet, Clock, DynKeySource, JwkSet, KeySource, UnixTime};
pub use ema_jwks::FetchPolicy;
pub use ema_metadata::ProtectedResourceMetadata;
pub use hardening::{Limits, harden};
pub use idp::{idp_metadata, idp_metadata_with_paths, idp_router};
pub use paths::{EndpointPathError, EndpointPaths};
