//! The token endpoints of MCP Enterprise-Managed Authorization, sans-I/O.
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
//! # Cargo features
//!
//! None is enabled by default: a company that already runs an IdP for logins needs only the
//! two grants.
//!
//! | Feature | Adds | Pulls in |
//! |---------|------|----------|
//! | `sso` | `sso::SsoProvider` and its types (`User`, `PasswordHash`, `AuthorizeRequest`, `AuthorizeError`, `SsoTokenResponse`, `AUTHORIZATION_CODE`, `pkce_challenge`): the reference IdP's password-login single sign-on, an OpenID Connect authorization-code flow with PKCE behind a login form, PBKDF2 password hashes | nothing more |
//! | `saml` | `TokenExchangeGrant::with_saml_assertions`: SAML 2.0 assertions as token-exchange subject tokens (TX-3, TX-4) | `ema-saml` (and its XML parser) |
//!
//! Without `saml`, a token exchange with `subject_token_type` [`SAML2_TOKEN_TYPE`] is refused
//! like any other unsupported subject token type (`invalid_request`, "subject_token_type is
//! not supported"). TX-3 makes SAML 2.0 subject assertions a MUST for the IdP, so an IdP built
//! without `saml` does not meet TX-3; the reference IdP (`examples/reference`) enables both
//! features.
//!
//! # Quick start: an MCP authorization server
//!
//! [`JwtBearerGrant::builder`] takes what the server cannot do without (its access-token
//! issuer, the trusted IdPs' keys, its subject resolver); trusted issuers, resources and
//! clients are added by name; [`build`](JwtBearerGrantBuilder::build) refuses a configuration
//! that could never issue a token ([`BuildError`]) and returns a `JwtBearerGrant`, a type
//! without parameters that an application can store and name.
//!
//! ```
//! use std::sync::Arc;
//! use ema_grant::*;
//! use ema_id_jag::*;
//! use ema_jose::{Algorithm, KeyRing, SigningKey, StaticKeySource, UnixTime};
//!
//! let idp_keys = Arc::new(KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("idp-k1".into()))?));
//! let as_keys = Arc::new(KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("as-k1".into()))?));
//! let grant: JwtBearerGrant = JwtBearerGrant::builder(
//!     AccessTokenIssuer::new(Issuer::new("https://auth.tasks.example"), as_keys),
//!     StaticKeySource::new().with_issuer("https://idp.acme.example", idp_keys.jwks()),
//!     Directory::new().with_provisioning(|c| Some(LocalSubject::new(c.sub.as_str()))),
//! )
//! .trust(TrustedIssuer::new("https://idp.acme.example"))
//! .resource(ResourceConfig::new("https://mcp.tasks.example/mcp", ["tasks.read"]))
//! .client(RegisteredClient::new("tc_5f2a91", ClientCredential::secret("s3cr3t")))
//! .token_endpoint("https://auth.tasks.example/token")
//! .build()?;
//!
//! // An ID-JAG from the IdP...
//! let now = UnixTime::from_secs(1_767_225_600);
//! let idp = IdJagIssuer::new(Issuer::new("https://idp.acme.example"), idp_keys);
//! let mut g = IdJagGrant::new(Subject::new("u1"), Issuer::new("https://auth.tasks.example"), ClientId::new("tc_5f2a91"));
//! g.scope = Some(ScopeSet::parse("tasks.read")?);
//! let id_jag = idp.issue(g, now)?.token;
//!
//! // ...redeemed once...
//! let body = format!("grant_type={}&assertion={id_jag}", form::encode_component(JWT_BEARER));
//! let request = http::Request::post("/token")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .header("authorization", "Basic dGNfNWYyYTkxOnMzY3IzdA==")
//!     .body(body.clone().into_bytes())?;
//! let response = pollster::block_on(grant.handle(&request, now));
//! assert_eq!(response.status(), 200);
//!
//! // ...and never twice (SEC-1).
//! let response = pollster::block_on(grant.handle(&request, now));
//! assert_eq!(response.status(), 400);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The grant's type parameters default to the erased [`DynKeySource`](ema_jose::DynKeySource),
//! [`DynSubjectResolver`](ema_id_jag::DynSubjectResolver) and [`DynReplayStore`] (one boxed
//! future per call into each, next to two signature operations per request); code that wants
//! the concrete types calls [`build_typed`](JwtBearerGrantBuilder::build_typed) and names
//! `JwtBearerGrant<K, S, R>`. [`TokenExchangeGrant::builder`] does the same for the IdP.

pub mod access_token;
mod builder;
pub mod client_auth;
pub mod dpop;
pub mod error;
pub mod exchange;
pub mod form;
pub mod jwt_bearer;
pub mod replay;
mod scope_log;
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
pub use dpop::{DpopError, DpopProof, DpopValidator};
pub use error::{ErrorCode, ErrorCodeError, OAuthError, ToErrorCode, UnknownErrorCode};
pub use exchange::{
    AdminPolicy, DynAdminPolicy, ErasedAdminPolicy, GroupPolicy, GroupRule, ID_JAG_TOKEN_TYPE,
    ID_TOKEN_TYPE, LEGACY_TOKEN_TYPE, PolicyDecision, PolicyRequest, SAML2_TOKEN_TYPE,
    SubjectTokenError, TOKEN_EXCHANGE, TargetServer, TokenExchangeGrant, TokenExchangeResponse,
    parse_exchange_form,
};
pub use form::{Form, FormError, TokenRequest};
pub use jwt_bearer::{
    AccessTokenResponse, JWT_BEARER, JwtBearerGrant, id_jag_error, request_error,
};
pub use replay::{
    DynReplayStore, ErasedReplayStore, InMemoryReplayStore, ReplayError, ReplayKey, ReplayKind,
    ReplayStore, Seen,
};
pub use scope_log::ScopeLog;
#[cfg(feature = "sso")]
pub use sso::{
    AUTHORIZATION_CODE, AuthorizeError, AuthorizeRequest, PasswordHash, SsoProvider,
    SsoTokenResponse, User, pkce_challenge,
};
