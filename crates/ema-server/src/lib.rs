#![doc = include_str!("../README.md")]
//!
//! # The pieces
//!
//! - [`IdpRouter::builder`]: an enterprise IdP's token exchange (ID token → ID-JAG): RFC 8414
//!   metadata ([`token_exchange_metadata`]), JWKS and the token endpoint, for a company whose
//!   users already sign in at an IdP of its own; [`token_exchange_router`] is its short form.
//!   With the `sso` feature, `IdpRouterBuilder::sso` makes it the reference IdP: OpenID
//!   Connect discovery, single sign-on (authorization code + PKCE behind a login form), and a
//!   token endpoint serving both the authorization-code grant and token exchange.
//! - [`authorization_server_router`]: an MCP authorization server: RFC 8414 metadata
//!   advertising the ID-JAG grant profile, JWKS, and the jwt-bearer token endpoint (ID-JAG →
//!   access token).
//! - [`BearerAuth`] (built by [`BearerAuth::builder`]), a `tower::Layer`: the resource-server
//!   side for any axum- or tower-served MCP server (RS-1..RS-7), handing a verified
//!   [`Principal`] to handlers (an axum extractor; in rmcp tools with the `rmcp` feature);
//!   scopes per request, per JSON-RPC method (with a default) and per declared tool (RS-6);
//!   [`BearerAuth::resource_metadata_router`] serves its RFC 9728 metadata.
//! - The tool-call guard: each `tools/call` authorized with its arguments, for the verified
//!   principal, by an [`authz::ToolCallAuthorizer`] before the tool runs; a denial is an MCP
//!   tool error carrying the policy's reason. `rmcp::Guarded` (feature `rmcp`) wraps any rmcp
//!   `ServerHandler` and also filters `tools/list` and inspects results;
//!   [`ToolCallGuardLayer`] does the decision as a tower layer over JSON-RPC for other servers.
//!   [`Principal::to_authz`] gives the principal in the terms policies use; [`authz`] re-exports
//!   `ema-authz`, so that this crate stays the only EMA dependency of a resource server.
//! - [`EndpointPaths`] with [`token_exchange_metadata_with_paths`]: where an IdP or authorization server
//!   mounts and publishes its token endpoint, JWKS and authorization endpoint (e.g. behind a
//!   proxy), checked to be plain, distinct paths.
//! - [`harden`]: body limits, timeouts, JSON 404s and path-only request logs on every route.
//! - [`audit`] (the `ema-audit` crate, re-exported): one tamper-evident trail from the IdP to
//!   each call. [`IdpRouterBuilder::audit`] appends `IdJagIssued`,
//!   [`AuthorizationServerRouterBuilder::audit`] `IdJagRedeemed`, [`BearerAuthBuilder::audit`]
//!   `AccessTokenAccepted` and `AccessTokenRefused`; the IdP's and the authorization server's
//!   events share the digest of the ID-JAG's `iss`/`jti`, the authorization server's and the
//!   MCP server's the access token's `jti`. Off by default ([`audit::AuditLog::disabled`]).
//!
//! Handlers are thin: parsing and decisions live in `ema-grant`, `ema-id-jag` and `ema-jose`.

mod authorization_server;
mod bearer;
mod code_flow;
mod endpoint;
mod guard;
mod hardening;
mod idp;
pub mod live;
mod paths;
mod principal;
#[cfg(feature = "rmcp")]
pub mod rmcp;
mod rpc_peek;
mod trail;
pub use trail::{security_event_recorded, stream_health_changed};
#[cfg(feature = "vault")]
pub mod vault;

pub use authorization_server::{
    ADMIN_REVOKE_PATH, AuthorizationServerRouter, AuthorizationServerRouterBuilder,
    advertise_code_flow, authorization_server_router,
};
pub use bearer::{
    BearerAuth, BearerAuthBuilder, BearerBuildError, BearerService, NO_SCOPES, protect,
    protected_resource_router,
};
pub use code_flow::{CodeFlowConfig, SIGN_IN_COOKIE};
pub use guard::{ToolCallGuardLayer, ToolCallGuardService};
pub use live::{ACCESS_REVOKED_CODE, RevocationSignal, SessionCloser};
pub use principal::{MissingPrincipal, Principal};

/// The authorization vocabulary of the tool-call guard ([`ToolCallGuardLayer`], and
/// `rmcp::Guarded` with the `rmcp` feature): the `ema-authz` crate, re-exported so that a
/// resource server names `ema_server::authz::ToolCallAuthorizer` and needs no other EMA crate.
pub use ema_authz as authz;

/// The audit trail (the `ema-audit` crate): [`audit::AuditLog`], its events, sinks and
/// [`audit::Verifier`], so that a server needs this crate alone.
pub use ema_audit as audit;

// What the builder and the principal name, so that a resource server needs this crate alone.
pub use ema_grant::{AccessTokenClaims, IdJagOrigin};
pub use ema_id_jag::ScopeSet;
pub use ema_jose::{Algorithm, AlgorithmSet, Clock, DynKeySource, JwkSet, KeySource, UnixTime};
pub use ema_jwks::FetchPolicy;
pub use ema_metadata::ProtectedResourceMetadata;
pub use hardening::{Limits, harden};
pub use idp::{IdpRouter, IdpRouterBuilder, IdpRouterError};
#[cfg(feature = "sso")]
pub use idp::{idp_metadata, idp_metadata_with_paths};
pub use idp::{token_exchange_metadata, token_exchange_metadata_with_paths, token_exchange_router};
pub use paths::{EndpointPathError, EndpointPaths};
