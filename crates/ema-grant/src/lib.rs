#![doc = include_str!("../README.md")]
//!
//! # The pieces
//!
//! - [`TokenExchangeGrant`]: the enterprise IdP's RFC 8693 token exchange. An authenticated
//!   client presents the user's ID token; the admin policy ([`AdminPolicy`], e.g.
//!   [`GroupPolicy`]) decides user × client × authorization server × resource × scopes; an ID-JAG
//!   comes back (TX-1..TX-15).
//! - [`JwtBearerGrant`]: the MCP authorization server's RFC 7523 jwt-bearer grant. An
//!   authenticated client presents the ID-JAG; it is validated in the order `docs/requirements.md` gives, its `jti`
//!   consumed atomically in a [`ReplayStore`] only when a token is issued (D-6), and an RFC 9068
//!   access token for exactly one resource comes back (AS-1..AS-21).
//! - The shared protocol: strict form parsing ([`Form`]), client authentication
//!   ([`ClientRegistry`]: `client_secret_basic`, `client_secret_post`, `private_key_jwt`, one
//!   registered method per client, D-24),
//!   DPoP proofs ([`DpopValidator`]), and RFC 6749 §5.2 errors ([`OAuthError`]): each domain
//!   error maps to its [`ErrorCode`] (from `ema-metadata`) by an exhaustive [`ToErrorCode`]
//!   beside its enum, and the response keeps the error as its cause for the server's log.
//!
//! Both grants take an `http::Request` (or a [`TokenRequest`] of borrowed parts) and the current
//! time, and return an `http::Response`: no sockets, no clock, no globals.
//!
//! The grant's type parameters default to the erased [`DynKeySource`](ema_jose::DynKeySource),
//! [`DynSubjectResolver`](ema_id_jag::DynSubjectResolver) and [`DynReplayStore`] (one boxed
//! future per call into each, next to two signature operations per request); code that wants
//! the concrete types calls [`build_typed`](JwtBearerGrantBuilder::build_typed) and names
//! `JwtBearerGrant<K, S, R>`. [`TokenExchangeGrant::builder`] does the same for the IdP.

pub mod access_token;
mod builder;
pub mod cimd;
pub mod client_auth;
pub mod code_flow;
pub mod dpop;
pub mod error;
pub mod exchange;
pub mod form;
pub mod introspection;
mod issuance;
pub mod jwt_bearer;
pub mod redemption;
pub mod redirect;
#[cfg(feature = "redis")]
pub mod redis_ledger;
#[cfg(feature = "redis")]
pub mod redis_redemption;
#[cfg(feature = "redis")]
pub mod redis_store;
pub mod replay;
pub mod revocation;
pub mod revoke;
mod scope_log;
pub mod seal;
pub mod sign_in;
pub mod ssf;
pub mod ssf_health;
pub mod ssf_poll;
#[cfg(feature = "sso")]
pub mod sso;

/// Compiles the code of `docs/validating-access-tokens.md` (how a service without ema-rs
/// validates our access tokens with `jsonwebtoken`) as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/validating-access-tokens.md")]
struct ValidatingAccessTokensGuide;

pub use access_token::{
    AccessTokenClaims, AccessTokenError, AccessTokenIssuer, AccessTokenValidator, IdJagOrigin,
    MAX_ACCESS_TOKEN_LIFETIME,
};
pub use builder::{BuildError, JwtBearerGrantBuilder, TokenExchangeGrantBuilder};
pub use client_auth::{
    AuthMethod, AuthMethodMismatch, AuthenticatedClient, CLIENT_ASSERTION_TYPE, ClientAuthError,
    ClientCredential, ClientRegistry, RegisteredClient, UnknownAuthMethod,
};
pub use code_flow::{
    AUTHORIZATION_CODE_GRANT, AuthorizationError, AuthorizationRequest, CodeFlow, SignedInUser,
};
pub use dpop::{DpopError, DpopProof, DpopValidator};
pub use error::{ErrorCode, ErrorCodeError, OAuthError, ToErrorCode, UnknownErrorCode};
pub use exchange::{
    AdminPolicy, DynAdminPolicy, ErasedAdminPolicy, GroupPolicy, GroupRule, ID_JAG_TOKEN_TYPE,
    ID_TOKEN_TYPE, LEGACY_TOKEN_TYPE, PolicyDecision, PolicyRequest, SAML2_TOKEN_TYPE,
    SubjectTokenError, TOKEN_EXCHANGE, TargetServer, TokenExchangeGrant, TokenExchangeResponse,
    parse_exchange_form,
};
pub use form::{Form, FormError, TokenRequest};
pub use introspection::TokenIntrospection;
pub use issuance::{IdJagIssuance, IdJagRedemption};
pub use jwt_bearer::{
    AccessTokenResponse, JWT_BEARER, JwtBearerGrant, id_jag_error, request_error,
};
pub use redemption::{IdJagRedeemer, Redeemed, RedemptionCheck};
#[cfg(feature = "redis")]
pub use redis_ledger::RedisLedger;
#[cfg(feature = "redis")]
pub use redis_redemption::RedisRedeemer;
#[cfg(feature = "redis")]
pub use redis_store::{RedisConnection, RedisReplayStore, RedisSetupError};
pub use replay::{
    DynReplayStore, ErasedReplayStore, InMemoryReplayStore, ReplayError, ReplayKey, ReplayKind,
    ReplayStore, Seen,
};
pub use revocation::{
    Cursor, DynRevocationLedger, ErasedRevocationLedger, LedgerChange, LedgerChanges, LedgerError,
    LedgerMirror, LedgerSnapshot, LedgerVerdict, MemoryLedger, MirrorVerdict, RevocationKind,
    RevocationLedger, RevocationReason, RevocationScope, Revoked,
};
pub use revoke::{Revoke, RevokeAction, RevokeError, Revoker, TokenRevocation};
pub use scope_log::ScopeLog;
pub use sign_in::{IdpSignIn, PendingSignIn, SignInError};
#[cfg(feature = "sso")]
pub use sso::{
    AUTHORIZATION_CODE, AuthorizeError, AuthorizeRequest, PasswordHash, SsoProvider,
    SsoTokenResponse, User, pkce_challenge,
};
