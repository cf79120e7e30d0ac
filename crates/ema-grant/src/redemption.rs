//! One-step ID-JAG redemption: the revocation check (RV-11) and the replay commit (SEC-1) of
//! the jwt-bearer grant in a single call, for stores that can do both atomically in one round
//! trip (the `RedisRedeemer` of feature `redis`).
//!
//! Without a redeemer, [`JwtBearerGrant`](crate::JwtBearerGrant) asks its
//! [`Revoker`](crate::Revoker)'s ledger first and, only when the IdP subject is not revoked,
//! consumes the ID-JAG's `jti` in its [`ReplayStore`](crate::ReplayStore): two calls. A
//! redeemer set with [`JwtBearerGrantBuilder::redeemer`](crate::JwtBearerGrantBuilder::redeemer)
//! replaces those two calls for the ID-JAG (client assertions and DPoP proofs still go to the
//! replay store, and the revoker still records subject mappings, RV-12), with the same
//! contract: a revoked subject's `jti` is not consumed, and a failure means no token (503
//! `temporarily_unavailable`, RV-14).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use ema_jose::UnixTime;

use crate::replay::ReplayKey;
use crate::revocation::{LedgerError, RevocationReason};

/// What a redemption checks and records: the IdP subject of the ID-JAG and when it was issued
/// (for the ledger), and the ID-JAG's replay key with the instant its entry may be forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedemptionCheck<'a> {
    /// The ID-JAG's `iss`.
    pub idp_issuer: &'a str,
    /// The ID-JAG's `tenant`, when it carries one.
    pub tenant: Option<&'a str>,
    /// The ID-JAG's `sub`.
    pub idp_subject: &'a str,
    /// The ID-JAG's `iat` (D-38: revoked when at or before the subject's watermark).
    pub iat: UnixTime,
    /// The ID-JAG's replay key (kind [`ReplayKind::IdJag`](crate::ReplayKind::IdJag)).
    pub replay: ReplayKey<'a>,
    /// Until when the `jti` must be remembered (the ID-JAG's `exp` plus the maximum leeway).
    pub expires_at: UnixTime,
}

impl<'a> RedemptionCheck<'a> {
    /// A check of the ID-JAG of `idp_issuer` (and `tenant`) about `idp_subject`, issued at
    /// `iat`, whose `jti` is `replay` and stays recorded until `expires_at`.
    pub fn new(
        idp_issuer: &'a str,
        tenant: Option<&'a str>,
        idp_subject: &'a str,
        iat: UnixTime,
        replay: ReplayKey<'a>,
        expires_at: UnixTime,
    ) -> Self {
        Self {
            idp_issuer,
            tenant,
            idp_subject,
            iat,
            replay,
            expires_at,
        }
    }
}

/// The answer of a redemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Redeemed {
    /// Not revoked, and the `jti` was recorded now: issue the token.
    First,
    /// Not revoked, but the `jti` was already recorded: a replay (`invalid_grant`).
    Again,
    /// The IdP subject is revoked (RV-11): `invalid_grant`, and the `jti` was NOT recorded.
    Revoked(RevocationReason),
}

/// A boxed redemption future.
pub type RedeemFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Redeemed, LedgerError>> + Send + 'a>>;

/// The revocation check and the replay commit of an ID-JAG in one call (see the
/// [module documentation](self)). Object-safe: the grant holds an
/// `Arc<dyn IdJagRedeemer>`.
///
/// An implementation must answer [`Redeemed::Revoked`] exactly when
/// [`RevocationLedger::check_id_jag`](crate::RevocationLedger::check_id_jag) of the grant's
/// ledger would, and then leave the `jti` unrecorded; otherwise it records the `jti` like
/// [`ReplayStore::check_and_insert`](crate::ReplayStore::check_and_insert) of the grant's
/// replay store would. Any failure is [`LedgerError::Unavailable`]: the grant answers 503
/// `temporarily_unavailable` and issues nothing.
///
/// ```
/// use ema_grant::redemption::{IdJagRedeemer, RedeemFuture, Redeemed, RedemptionCheck};
/// use ema_jose::UnixTime;
///
/// /// Refuses every redemption as if the store were down.
/// #[derive(Debug)]
/// struct Closed;
///
/// impl IdJagRedeemer for Closed {
///     fn redeem<'a>(&'a self, _: RedemptionCheck<'a>, _: UnixTime) -> RedeemFuture<'a> {
///         Box::pin(async {
///             Err(ema_grant::LedgerError::Unavailable { reason: "closed".into() })
///         })
///     }
/// }
/// let _: std::sync::Arc<dyn IdJagRedeemer> = std::sync::Arc::new(Closed);
/// ```
pub trait IdJagRedeemer: fmt::Debug + Send + Sync {
    /// Checks the IdP subject against the revocation ledger and, only when it is not revoked,
    /// records the ID-JAG's `jti`, atomically, at `now`.
    fn redeem<'a>(&'a self, check: RedemptionCheck<'a>, now: UnixTime) -> RedeemFuture<'a>;
}
