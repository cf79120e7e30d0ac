//! axum adapters for MCP Enterprise-Managed Authorization.
//!
//! - [`idp_router`]: an enterprise IdP: OpenID Connect discovery and RFC 8414 metadata, JWKS,
//!   single sign-on (authorization code + PKCE behind a login form), and a token endpoint
//!   serving both the authorization-code grant and token exchange (ID token → ID-JAG).
//! - [`authorization_server_router`]: an MCP authorization server: RFC 8414 metadata
//!   advertising the ID-JAG grant profile, JWKS, and the jwt-bearer token endpoint (ID-JAG →
//!   access token).
//! - [`BearerAuth`] with [`protect`] and [`protected_resource_router`]: the resource-server side
//!   for any axum-served MCP server (RS-1..RS-7), handing a verified [`Principal`] to handlers;
//!   scopes per request, per JSON-RPC method (with a default) and per tool (RS-6).
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
//! use std::sync::Arc;
//! use axum::{Router, routing::post, Extension};
//! use ema_grant::AccessTokenValidator;
//! use ema_id_jag::{Issuer, Resource};
//! use ema_jose::{Algorithm, KeyRing, SigningKey, StaticKeySource, SystemClock};
//! use ema_metadata::ProtectedResourceMetadata;
//! use ema_server::{BearerAuth, Principal, Limits, harden, protect, protected_resource_router};
//!
//! # let as_keys = KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("as-k1".into()))?);
//! let resource = "https://mcp.tasks.example/mcp";
//! let keys = StaticKeySource::new().with_issuer("https://auth.tasks.example", as_keys.jwks());
//! let validator = AccessTokenValidator::new(
//!     Issuer::new("https://auth.tasks.example"),
//!     Resource::new(resource),
//!     keys,
//! );
//! let auth = Arc::new(BearerAuth::new(
//!     validator,
//!     "https://mcp.tasks.example/.well-known/oauth-protected-resource/mcp",
//!     Arc::new(SystemClock),
//! ));
//! let mcp = Router::new().route(
//!     "/mcp",
//!     post(|Extension(who): Extension<Principal>| async move { format!("hello {}", who.sub) }),
//! );
//! let prm = ProtectedResourceMetadata::new(resource, ["https://auth.tasks.example"]);
//! let app = harden(
//!     protect(mcp, auth).merge(protected_resource_router(&prm)),
//!     &Limits::default(),
//! );
//! # let _ = app;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod authorization_server;
mod bearer;
mod endpoint;
mod hardening;
mod idp;
mod paths;
mod rpc_peek;

pub use authorization_server::authorization_server_router;
pub use bearer::{BearerAuth, Principal, protect, protected_resource_router};
pub use hardening::{Limits, harden};
pub use idp::{idp_metadata, idp_metadata_with_paths, idp_router};
pub use paths::{EndpointPathError, EndpointPaths};
