#![doc = include_str!("../README.md")]
//!
//! # The pieces
//!
//! - [`IdJagClaims`]: every claim of JAG §3.1, typed; unknown claims kept.
//! - [`IdJagIssuer`]: mints 300-second ID-JAGs (D-16) from a [`KeyRing`](ema_jose::KeyRing).
//! - [`IdJagValidator`]: the validation order of `docs/requirements.md` (steps 3-14): strict parse, header
//!   policy, trusted issuer, that issuer's keys only, claim types, audience, time, client
//!   binding, DPoP binding, resource (D-4), tenant and subject (D-14), scopes (D-5, D-20,
//!   D-21). It returns an [`IdJag`], a type no unverified input can become any other way.
//!
//! Sans-I/O: keys come through [`KeySource`](ema_jose::KeySource), subjects through
//! [`SubjectResolver`], time as an argument. Replay detection (step 15) belongs to the token
//! endpoint (`ema-grant`), which must record a `jti` only when it issues a token (D-6).
//!
//! # Who the user is here: the subject resolver
//!
//! A valid ID-JAG says who the user is *at the IdP*; the authorization server decides who that
//! is *here* (AS-16, D-14) through a [`SubjectResolver`], asked only after every other check has
//! passed. [`Directory`] is the in-memory one: explicit (`iss`, `tenant`, `sub`) mappings first,
//! then optional email linking, then an optional just-in-time provisioning hook; anything else is
//! refused ([`SubjectError::Unknown`] → `invalid_grant`), and a resolver that cannot answer
//! ([`SubjectError::Unavailable`]) fails closed. A resolver backed by a user database
//! implements the trait's one `async` method. [`IdJagValidator::builder`] takes any resolver;
//! [`build`](IdJagValidatorBuilder::build) erases it into a [`DynSubjectResolver`] (one boxed
//! future per ID-JAG), so the validator's type is just `IdJagValidator`, while
//! [`build_typed`](IdJagValidatorBuilder::build_typed) keeps the concrete type.

mod claims;
mod ids;
mod issuer;
mod subject;
mod trust;
mod validator;

pub use claims::{IdJagClaims, IdJagClaimsError};
pub use ids::{ClientId, Issuer, JwtId, Resource, ScopeError, ScopeSet, Subject};
pub use issuer::{DEFAULT_LIFETIME_SECS, IdJagGrant, IdJagIssuer, IssuedIdJag, MAX_LIFETIME_SECS};
pub use subject::{
    Directory, DynSubjectResolver, ErasedSubjectResolver, LocalSubject, SubjectError,
    SubjectResolver,
};
pub use trust::{
    GrantScopeError, OIDC_SCOPES, ResourceConfig, ResourceError, ResourceRegistry, TrustRegistry,
    TrustedIssuer, UnknownScopes,
};
pub use validator::{
    IdJag, IdJagError, IdJagValidator, IdJagValidatorBuilder, ValidationContext,
    ValidatorBuildError,
};
