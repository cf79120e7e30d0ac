//! The revocation ledger: per-subject watermarks, disabled flags and denied token ids
//! (RV-11..RV-17, RV-28), with the authorization server's point queries and the change feed
//! that resource-server mirrors ([`LedgerMirror`]) follow.
//!
//! JWT access tokens are stateless, so a subject is revoked by *time*: every artifact issued at
//! or before the subject's watermark is dead (D-38: inclusive, integer seconds). Two subject
//! spaces exist on purpose ([`RevocationScope`]): the IdP subject of an ID-JAG, keyed by (IdP
//! issuer, tenant, `sub`) and compared with the ID-JAG `iat` at the token endpoint (RV-11), and
//! the local subject of an access token, keyed by (AS issuer, `sub`) and compared with the
//! access-token `iat` at every resource-server request (RV-12, RV-15).
//!
//! Like [`ReplayStore`](crate::ReplayStore) the ledger is sans-I/O: every time is passed in,
//! and backends (memory here, Redis behind the `redis` feature) implement [`RevocationLedger`].
//! The feed is modelled on a log with opaque string positions ([`Cursor`]), so a backend over a
//! Redis Stream hands out stream ids as cursors.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use aws_lc_rs::digest;
use ema_jose::UnixTime;
use serde::{Deserialize, Serialize};

/// How long a watermark or disabled-flag change stays relevant by default: the longest
/// access-token lifetime, plus an hour for ID-JAGs and clock leeway. A token issued at or
/// before a watermark older than this has expired anyway.
pub const DEFAULT_RETENTION: u64 = crate::MAX_ACCESS_TOKEN_LIFETIME + 3600;

/// The default staleness bound of a [`LedgerMirror`] (RV-16): 60 seconds.
pub const DEFAULT_MAX_STALENESS: u64 = 60;

/// The subject space a watermark or disabled flag belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "space", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevocationScope {
    /// A subject of an enterprise IdP, as it appears in ID-JAGs (`iss`, tenant, `sub`); the
    /// watermark is on the IdP's clock and checked by the AS (RV-11).
    Idp {
        /// The IdP issuer.
        issuer: String,
        /// The IdP tenant, when the ID-JAG carries one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    /// A subject of this authorization server, as it appears in its access tokens (`iss`,
    /// `sub`); the watermark is on the AS clock at processing time (RV-12) and checked by every
    /// resource server (RV-15).
    Local {
        /// The AS issuer.
        issuer: String,
    },
}

impl RevocationScope {
    /// The IdP-subject scope of `issuer` and `tenant`.
    pub fn idp(issuer: impl Into<String>, tenant: Option<&str>) -> Self {
        Self::Idp {
            issuer: issuer.into(),
            tenant: tenant.map(str::to_owned),
        }
    }

    /// The local-subject scope of the AS `issuer`.
    pub fn local(issuer: impl Into<String>) -> Self {
        Self::Local {
            issuer: issuer.into(),
        }
    }

    fn parts(&self) -> (u8, &str, Option<&str>) {
        match self {
            Self::Idp { issuer, tenant } => (1, issuer, tenant.as_deref()),
            Self::Local { issuer } => (2, issuer, None),
        }
    }
}

/// A collision-resistant digest of (scope, subject): SHA-256 over a length-prefixed encoding,
/// for backends that want fixed-size keys (`{prefix}:rv:w:{hex}` on Redis).
pub fn subject_digest(scope: &RevocationScope, subject: &str) -> [u8; 32] {
    let (tag, issuer, tenant) = scope.parts();
    subject_digest_parts(tag, issuer, tenant, subject)
}

fn subject_digest_parts(tag: u8, issuer: &str, tenant: Option<&str>, subject: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[tag]);
    for part in [Some(issuer), tenant, Some(subject)] {
        match part {
            Some(p) => {
                ctx.update(&[1]);
                ctx.update(&(p.len() as u64).to_be_bytes());
                ctx.update(p.as_bytes());
            }
            None => ctx.update(&[0]),
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A collision-resistant digest of (token issuer, `jti`), for `{prefix}:rv:j:{hex}` keys.
pub fn token_digest(issuer: &str, jti: &str) -> [u8; 32] {
    subject_digest_parts(3, issuer, None, jti)
}

/// Why a subject was revoked: the event or command that moved its watermark or set its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevocationKind {
    /// CAEP `session-revoked` (D-39: the whole user) or an admin "sign out everywhere".
    SessionRevoked,
    /// CAEP `credential-change` (revoke, delete, password or PIN update).
    CredentialChange,
    /// RISC `account-disabled`, or the IdP admin disabling the user.
    AccountDisabled,
    /// RISC `account-purged`.
    AccountPurged,
    /// RISC `credential-compromise` or `account-credential-change-required`.
    CredentialCompromise,
    /// An administrator's revoke command at the AS.
    Admin,
    /// A single access token revoked through RFC 7009 (RV-20).
    TokenRevocation,
    /// CAEP `token-claims-change`: the claims policies decided on changed (RV-10).
    TokenClaimsChange,
    /// RISC `identifier-recycled`: the identifier now names someone else; the subject
    /// mapping is dropped too (RV-10).
    IdentifierRecycled,
}

impl RevocationKind {
    /// The stable snake-case name (also the serde form).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SessionRevoked => "session_revoked",
            Self::CredentialChange => "credential_change",
            Self::AccountDisabled => "account_disabled",
            Self::AccountPurged => "account_purged",
            Self::CredentialCompromise => "credential_compromise",
            Self::Admin => "admin",
            Self::TokenRevocation => "token_revocation",
            Self::TokenClaimsChange => "token_claims_change",
            Self::IdentifierRecycled => "identifier_recycled",
        }
    }
}

impl std::fmt::Display for RevocationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationReason {
    /// The token was issued at or before the subject's watermark (D-38).
    Watermark {
        /// The watermark, in seconds.
        at: UnixTime,
        /// What moved it last.
        kind: RevocationKind,
    },
    /// The subject is disabled.
    Disabled {
        /// What disabled it.
        kind: RevocationKind,
    },
    /// The token's `jti` is denied (RFC 7009 or admin).
    TokenDenied,
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Watermark { at, kind } => {
                write!(
                    f,
                    "issued at or before the watermark {} ({kind})",
                    at.as_secs()
                )
            }
            Self::Disabled { kind } => write!(f, "subject disabled ({kind})"),
            Self::TokenDenied => f.write_str("token revoked"),
        }
    }
}

/// A refusal for revocation as an error value: the cause an endpoint attaches to its
/// `invalid_grant` or `invalid_token` answer, for the server's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("revoked: {0}")]
pub struct Revoked(pub RevocationReason);

/// The ledger's answer to a point query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerVerdict {
    /// Nothing revokes the token.
    Allowed,
    /// The token is revoked.
    Revoked(RevocationReason),
}

/// The mirror's answer for an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorVerdict {
    /// Nothing revokes the token and the mirror is fresh.
    Allowed,
    /// The token is revoked: 401 `invalid_token`, "token revoked" (RV-15).
    Revoked(RevocationReason),
    /// The mirror's last sync is older than its staleness bound: 503 with `Retry-After`
    /// (RV-16), whatever the token.
    Stale,
}

/// One ledger change, as the feed carries it. Serialised as JSON with a `"change"` tag so a
/// backend can store it in a log entry (one Redis Stream field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LedgerChange {
    /// The subject's watermark is now `at` (already the maximum: RV-28).
    Watermark {
        /// The subject space.
        scope: RevocationScope,
        /// The subject.
        subject: String,
        /// The watermark, Unix seconds.
        at: u64,
        /// What moved it.
        kind: RevocationKind,
    },
    /// The subject is disabled.
    Disabled {
        /// The subject space.
        scope: RevocationScope,
        /// The subject.
        subject: String,
        /// What disabled it.
        kind: RevocationKind,
    },
    /// The subject's disabled flag is cleared; its watermark stays (RV-28).
    Enabled {
        /// The subject space.
        scope: RevocationScope,
        /// The subject.
        subject: String,
    },
    /// The token (`iss`, `jti`) is denied until `until`.
    TokenDenied {
        /// The token issuer.
        issuer: String,
        /// The token's `jti`.
        jti: String,
        /// When the denial may be forgotten (the token's `exp`), Unix seconds.
        until: u64,
    },
}

/// An opaque position in a ledger's change feed (a sequence number for [`MemoryLedger`], a
/// stream id for Redis).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps a backend's position.
    pub fn new(position: impl Into<String>) -> Self {
        Self(position.into())
    }

    /// The backend's position.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The whole ledger state as changes, and the feed position it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// Follow the feed from here.
    pub cursor: Cursor,
    /// Every live watermark, disabled flag and token denial.
    pub changes: Vec<LedgerChange>,
}

/// Changes after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerChanges {
    /// The position after the last change returned (the given cursor if none).
    pub cursor: Cursor,
    /// The changes, oldest first.
    pub changes: Vec<LedgerChange>,
}

/// Why the ledger could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The ledger is unreachable or failed: the AS issues no token (RV-14).
    #[error("revocation ledger unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
    /// The cursor is older than the feed keeps (or not one of this ledger's): a mirror must
    /// reload from [`RevocationLedger::snapshot`].
    #[error("change-feed cursor is no longer available; resync from a snapshot")]
    CursorExpired,
}

impl ema_metadata::ToErrorCode for LedgerError {
    /// Fails closed: `temporarily_unavailable` (HTTP 503, RV-14).
    fn error_code(&self) -> ema_metadata::ErrorCode {
        match self {
            Self::Unavailable { .. } | Self::CursorExpired => {
                ema_metadata::ErrorCode::TemporarilyUnavailable
            }
        }
    }

    fn error_description(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } | Self::CursorExpired => {
                "revocation checks are unavailable; try again later"
            }
        }
    }
}

/// The revocation ledger (RV-14): watermarks, disabled flags and denied token ids, shared by
/// every AS instance, with a change feed for resource-server mirrors.
///
/// Every write must be durable before it returns (the SSF receiver answers 202 only after it,
/// RV-4) and must append to the feed. `now` is the caller's clock; backends use it for expiry
/// only (an entry is kept at least [`DEFAULT_RETENTION`] or its backend's configured
/// retention after `at`, a token denial until `until`).
pub trait RevocationLedger: Send + Sync {
    /// Raises the subject's watermark to `at` unless it is already at or above it (RV-28: a
    /// watermark never goes down). Returns the watermark in force afterwards.
    fn revoke_subject(
        &self,
        scope: &RevocationScope,
        subject: &str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> impl Future<Output = Result<UnixTime, LedgerError>> + Send;

    /// Sets the subject's disabled flag: every token of the subject is refused, whenever issued.
    fn disable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        kind: RevocationKind,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Clears the subject's disabled flag, and only it: tokens at or before the watermark
    /// stay dead (RV-28).
    fn enable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Denies the token (`issuer`, `jti`) until `until` (its `exp`).
    fn deny_token(
        &self,
        issuer: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The AS check of an ID-JAG (RV-11): revoked if the IdP subject is disabled or the
    /// ID-JAG's `iat` is at or before its watermark (D-38).
    fn check_id_jag(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
        iat: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send;

    /// The whole state and the feed position it reflects.
    fn snapshot(&self) -> impl Future<Output = Result<LedgerSnapshot, LedgerError>> + Send;

    /// The changes after `cursor`, oldest first; [`LedgerError::CursorExpired`] if the feed no
    /// longer reaches back to it. A backend may wait briefly for a first change.
    fn changes_since(
        &self,
        cursor: &Cursor,
    ) -> impl Future<Output = Result<LedgerChanges, LedgerError>> + Send;

    /// The AS check of one of its own access tokens (RFC 7662 introspection, RV-22): revoked
    /// if its (`issuer`, `jti`) is denied, or the local subject (scope
    /// [`RevocationScope::local`]`(issuer)`) is disabled or has a watermark at or after `iat`
    /// (D-38). `now` dates expired denials.
    ///
    /// The provided body reads a whole [`snapshot`](Self::snapshot); [`MemoryLedger`] and the
    /// Redis ledger answer with point lookups instead.
    fn check_access_token(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
        async move {
            let mirror = LedgerMirror::new();
            mirror.sync(self, now).await?;
            Ok(match mirror.revocation(issuer, subject, iat, jti) {
                Some(reason) => LedgerVerdict::Revoked(reason),
                None => LedgerVerdict::Allowed,
            })
        }
    }
}

impl<L: RevocationLedger + ?Sized> RevocationLedger for Arc<L> {
    fn revoke_subject(
        &self,
        scope: &RevocationScope,
        subject: &str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> impl Future<Output = Result<UnixTime, LedgerError>> + Send {
        (**self).revoke_subject(scope, subject, at, kind, now)
    }

    fn disable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        kind: RevocationKind,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).disable(scope, subject, kind, now)
    }

    fn enable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).enable(scope, subject, now)
    }

    fn deny_token(
        &self,
        issuer: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).deny_token(issuer, jti, until, now)
    }

    fn check_id_jag(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
        iat: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
        (**self).check_id_jag(idp_issuer, tenant, idp_subject, iat)
    }

    fn snapshot(&self) -> impl Future<Output = Result<LedgerSnapshot, LedgerError>> + Send {
        (**self).snapshot()
    }

    fn changes_since(
        &self,
        cursor: &Cursor,
    ) -> impl Future<Output = Result<LedgerChanges, LedgerError>> + Send {
        (**self).changes_since(cursor)
    }

    fn check_access_token(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
        (**self).check_access_token(issuer, subject, iat, jti, now)
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`RevocationLedger`]; every ledger implements it. Use it through
/// [`DynRevocationLedger`].
pub trait ErasedRevocationLedger: Send + Sync {
    /// [`RevocationLedger::revoke_subject`], boxed.
    fn revoke_subject_boxed<'a>(
        &'a self,
        scope: &'a RevocationScope,
        subject: &'a str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<UnixTime, LedgerError>>;
    /// [`RevocationLedger::disable`], boxed.
    fn disable_boxed<'a>(
        &'a self,
        scope: &'a RevocationScope,
        subject: &'a str,
        kind: RevocationKind,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// [`RevocationLedger::enable`], boxed.
    fn enable_boxed<'a>(
        &'a self,
        scope: &'a RevocationScope,
        subject: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// [`RevocationLedger::deny_token`], boxed.
    fn deny_token_boxed<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        until: UnixTime,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// [`RevocationLedger::check_id_jag`], boxed.
    fn check_id_jag_boxed<'a>(
        &'a self,
        idp_issuer: &'a str,
        tenant: Option<&'a str>,
        idp_subject: &'a str,
        iat: UnixTime,
    ) -> BoxFuture<'a, Result<LedgerVerdict, LedgerError>>;
    /// [`RevocationLedger::snapshot`], boxed.
    fn snapshot_boxed(&self) -> BoxFuture<'_, Result<LedgerSnapshot, LedgerError>>;
    /// [`RevocationLedger::changes_since`], boxed.
    fn changes_since_boxed<'a>(
        &'a self,
        cursor: &'a Cursor,
    ) -> BoxFuture<'a, Result<LedgerChanges, LedgerError>>;
    /// [`RevocationLedger::check_access_token`], boxed.
    fn check_access_token_boxed<'a>(
        &'a self,
        issuer: &'a str,
        subject: &'a str,
        iat: UnixTime,
        jti: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<LedgerVerdict, LedgerError>>;
}

impl<L: RevocationLedger> ErasedRevocationLedger for L {
    fn revoke_subject_boxed<'a>(
        &'a self,
        scope: &'a RevocationScope,
        subject: &'a str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<UnixTime, LedgerError>> {
        Box::pin(self.revoke_subject(scope, subject, at, kind, now))
    }
    fn disable_boxed<'a>(
        &'a self,
        scope: &'a RevocationScope,
        subject: &'a str,
        kind: RevocationKind,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(self.disable(scope, subject, kind, now))
    }
    fn enable_boxed<'a>(
        &'a self,
        scope: &'a RevocationScope,
        subject: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(self.enable(scope, subject, now))
    }
    fn deny_token_boxed<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        until: UnixTime,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(self.deny_token(issuer, jti, until, now))
    }
    fn check_id_jag_boxed<'a>(
        &'a self,
        idp_issuer: &'a str,
        tenant: Option<&'a str>,
        idp_subject: &'a str,
        iat: UnixTime,
    ) -> BoxFuture<'a, Result<LedgerVerdict, LedgerError>> {
        Box::pin(self.check_id_jag(idp_issuer, tenant, idp_subject, iat))
    }
    fn snapshot_boxed(&self) -> BoxFuture<'_, Result<LedgerSnapshot, LedgerError>> {
        Box::pin(self.snapshot())
    }
    fn changes_since_boxed<'a>(
        &'a self,
        cursor: &'a Cursor,
    ) -> BoxFuture<'a, Result<LedgerChanges, LedgerError>> {
        Box::pin(self.changes_since(cursor))
    }
    fn check_access_token_boxed<'a>(
        &'a self,
        issuer: &'a str,
        subject: &'a str,
        iat: UnixTime,
        jti: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<LedgerVerdict, LedgerError>> {
        Box::pin(self.check_access_token(issuer, subject, iat, jti, now))
    }
}

/// Any [`RevocationLedger`] behind one cheap-to-clone type; clones share the ledger.
///
/// ```
/// use ema_grant::revocation::{
///     DynRevocationLedger, LedgerVerdict, MemoryLedger, RevocationKind, RevocationLedger,
///     RevocationScope,
/// };
/// use ema_jose::UnixTime;
///
/// let ledger = DynRevocationLedger::new(MemoryLedger::default());
/// let idp = RevocationScope::idp("https://idp.example", None);
/// let t = UnixTime::from_secs(1_000);
/// pollster::block_on(ledger.revoke_subject(&idp, "alice", t, RevocationKind::Admin, t)).unwrap();
/// let check = |iat| {
///     pollster::block_on(ledger.check_id_jag("https://idp.example", None, "alice", iat)).unwrap()
/// };
/// // D-38: an ID-JAG issued in the watermark's second is revoked, one a second later is not.
/// assert!(matches!(check(t), LedgerVerdict::Revoked(_)));
/// assert_eq!(check(t.plus(1)), LedgerVerdict::Allowed);
/// ```
#[derive(Clone)]
pub struct DynRevocationLedger(Arc<dyn ErasedRevocationLedger>);

impl DynRevocationLedger {
    /// Erases the type of `ledger`.
    pub fn new(ledger: impl RevocationLedger + 'static) -> Self {
        Self(Arc::new(ledger))
    }

    /// Wraps a ledger already shared behind an `Arc`.
    pub fn from_arc(ledger: Arc<dyn ErasedRevocationLedger>) -> Self {
        Self(ledger)
    }
}

impl Default for DynRevocationLedger {
    /// A [`MemoryLedger::default`].
    fn default() -> Self {
        Self::new(MemoryLedger::default())
    }
}

impl std::fmt::Debug for DynRevocationLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynRevocationLedger(..)")
    }
}

impl RevocationLedger for DynRevocationLedger {
    async fn revoke_subject(
        &self,
        scope: &RevocationScope,
        subject: &str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> Result<UnixTime, LedgerError> {
        self.0
            .revoke_subject_boxed(scope, subject, at, kind, now)
            .await
    }

    async fn disable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        kind: RevocationKind,
        now: UnixTime,
    ) -> Result<(), LedgerError> {
        self.0.disable_boxed(scope, subject, kind, now).await
    }

    async fn enable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        now: UnixTime,
    ) -> Result<(), LedgerError> {
        self.0.enable_boxed(scope, subject, now).await
    }

    async fn deny_token(
        &self,
        issuer: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), LedgerError> {
        self.0.deny_token_boxed(issuer, jti, until, now).await
    }

    async fn check_id_jag(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
        iat: UnixTime,
    ) -> Result<LedgerVerdict, LedgerError> {
        self.0
            .check_id_jag_boxed(idp_issuer, tenant, idp_subject, iat)
            .await
    }

    async fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        self.0.snapshot_boxed().await
    }

    async fn changes_since(&self, cursor: &Cursor) -> Result<LedgerChanges, LedgerError> {
        self.0.changes_since_boxed(cursor).await
    }

    async fn check_access_token(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
        now: UnixTime,
    ) -> Result<LedgerVerdict, LedgerError> {
        self.0
            .check_access_token_boxed(issuer, subject, iat, jti, now)
            .await
    }
}

/// One subject's state.
#[derive(Debug, Clone)]
struct SubjectState {
    scope: RevocationScope,
    subject: String,
    /// Watermark and what moved it.
    watermark: Option<(u64, RevocationKind)>,
    /// Set while disabled.
    disabled: Option<RevocationKind>,
    /// Forget the watermark after this (the flag has no expiry).
    expires: u64,
}

impl SubjectState {
    fn verdict(&self, iat: u64) -> LedgerVerdict {
        if let Some(kind) = self.disabled {
            return LedgerVerdict::Revoked(RevocationReason::Disabled { kind });
        }
        match self.watermark {
            // D-38: inclusive, integer seconds.
            Some((at, kind)) if iat <= at => LedgerVerdict::Revoked(RevocationReason::Watermark {
                at: UnixTime::from_secs(at),
                kind,
            }),
            _ => LedgerVerdict::Allowed,
        }
    }

    fn changes(&self, out: &mut Vec<LedgerChange>) {
        if let Some((at, kind)) = self.watermark {
            out.push(LedgerChange::Watermark {
                scope: self.scope.clone(),
                subject: self.subject.clone(),
                at,
                kind,
            });
        }
        if let Some(kind) = self.disabled {
            out.push(LedgerChange::Disabled {
                scope: self.scope.clone(),
                subject: self.subject.clone(),
                kind,
            });
        }
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    subjects: HashMap<[u8; 32], SubjectState>,
    denied: HashMap<[u8; 32], (String, String, u64)>,
    /// The feed: (sequence number, change), oldest first, capped.
    log: VecDeque<(u64, LedgerChange)>,
    /// The sequence number of the last change (0: none yet).
    seq: u64,
    /// No entry expires before this; a sweep earlier would free nothing.
    next_sweep: u64,
}

impl MemoryState {
    fn push(&mut self, change: LedgerChange, cap: usize) {
        self.seq = self.seq.saturating_add(1);
        self.log.push_back((self.seq, change));
        while self.log.len() > cap {
            self.log.pop_front();
        }
    }

    fn sweep(&mut self, now: u64) {
        if now < self.next_sweep {
            return;
        }
        self.subjects
            .retain(|_, s| s.disabled.is_some() || s.expires > now);
        self.denied.retain(|_, (_, _, until)| *until > now);
        let next_subject = self
            .subjects
            .values()
            .filter(|s| s.disabled.is_none())
            .map(|s| s.expires);
        let next_denial = self.denied.values().map(|(_, _, until)| *until);
        self.next_sweep = next_subject.chain(next_denial).min().unwrap_or(u64::MAX);
    }

    fn entry(&mut self, scope: &RevocationScope, subject: &str, expires: u64) -> &mut SubjectState {
        self.next_sweep = self.next_sweep.min(expires);
        self.subjects
            .entry(subject_digest(scope, subject))
            .or_insert_with(|| SubjectState {
                scope: scope.clone(),
                subject: subject.to_owned(),
                watermark: None,
                disabled: None,
                expires,
            })
    }
}

/// The in-memory [`RevocationLedger`] of a single authorization-server instance (the default
/// without Redis).
///
/// Watermarks are kept for the retention (default [`DEFAULT_RETENTION`]) after they were set,
/// disabled flags until the subject is enabled, token denials until the token's `exp`. The feed
/// keeps the last `feed_capacity` changes (default 100,000); a mirror further behind gets
/// [`LedgerError::CursorExpired`] and reloads a snapshot.
#[derive(Debug)]
pub struct MemoryLedger {
    state: Mutex<MemoryState>,
    retention: u64,
    feed_capacity: usize,
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLedger {
    /// An empty ledger with the default retention and feed capacity.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(MemoryState {
                next_sweep: u64::MAX,
                ..MemoryState::default()
            }),
            retention: DEFAULT_RETENTION,
            feed_capacity: 100_000,
        }
    }

    /// Keeps watermarks `secs` after they were set (at least one second).
    pub fn with_retention(mut self, secs: u64) -> Self {
        self.retention = secs.max(1);
        self
    }

    /// Keeps the last `changes` changes in the feed (at least one).
    pub fn with_feed_capacity(mut self, changes: usize) -> Self {
        self.feed_capacity = changes.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // Every update keeps the maps consistent, so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`RevocationLedger::revoke_subject`], synchronously.
    pub fn revoke_subject_now(
        &self,
        scope: &RevocationScope,
        subject: &str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> UnixTime {
        let mut state = self.lock();
        state.sweep(now.as_secs());
        let at = at.as_secs();
        let expires = at.saturating_add(self.retention);
        let entry = state.entry(scope, subject, expires);
        // RV-28: max-only; an earlier or equal `at` changes nothing and is not logged.
        match entry.watermark {
            Some((current, _)) if current >= at => UnixTime::from_secs(current),
            _ => {
                entry.watermark = Some((at, kind));
                entry.expires = entry.expires.max(expires);
                let change = LedgerChange::Watermark {
                    scope: scope.clone(),
                    subject: subject.to_owned(),
                    at,
                    kind,
                };
                state.next_sweep = state.next_sweep.min(expires);
                state.push(change, self.feed_capacity);
                UnixTime::from_secs(at)
            }
        }
    }

    /// [`RevocationLedger::disable`], synchronously.
    pub fn disable_now(
        &self,
        scope: &RevocationScope,
        subject: &str,
        kind: RevocationKind,
        now: UnixTime,
    ) {
        let mut state = self.lock();
        state.sweep(now.as_secs());
        let expires = now.as_secs().saturating_add(self.retention);
        let entry = state.entry(scope, subject, expires);
        if entry.disabled.is_none() {
            entry.disabled = Some(kind);
            let change = LedgerChange::Disabled {
                scope: scope.clone(),
                subject: subject.to_owned(),
                kind,
            };
            state.push(change, self.feed_capacity);
        }
    }

    /// [`RevocationLedger::enable`], synchronously.
    pub fn enable_now(&self, scope: &RevocationScope, subject: &str, now: UnixTime) {
        let mut state = self.lock();
        state.sweep(now.as_secs());
        let digest = subject_digest(scope, subject);
        let Some(entry) = state.subjects.get_mut(&digest) else {
            return;
        };
        if entry.disabled.take().is_some() {
            // RV-28: only the flag goes; the watermark keeps older tokens dead.
            if entry.watermark.is_none() {
                state.subjects.remove(&digest);
            }
            let change = LedgerChange::Enabled {
                scope: scope.clone(),
                subject: subject.to_owned(),
            };
            state.push(change, self.feed_capacity);
        }
    }

    /// [`RevocationLedger::deny_token`], synchronously.
    pub fn deny_token_now(&self, issuer: &str, jti: &str, until: UnixTime, now: UnixTime) {
        let mut state = self.lock();
        state.sweep(now.as_secs());
        let until = until.as_secs();
        if until <= now.as_secs() {
            // Already expired: nothing to deny.
            return;
        }
        let digest = token_digest(issuer, jti);
        let previous = state
            .denied
            .insert(digest, (issuer.to_owned(), jti.to_owned(), until));
        if previous.is_none_or(|(_, _, old)| old < until) {
            state.next_sweep = state.next_sweep.min(until);
            let change = LedgerChange::TokenDenied {
                issuer: issuer.to_owned(),
                jti: jti.to_owned(),
                until,
            };
            state.push(change, self.feed_capacity);
        }
    }

    /// [`RevocationLedger::check_id_jag`], synchronously.
    pub fn check_id_jag_now(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
        iat: UnixTime,
    ) -> LedgerVerdict {
        let digest = subject_digest_parts(1, idp_issuer, tenant, idp_subject);
        self.lock()
            .subjects
            .get(&digest)
            .map_or(LedgerVerdict::Allowed, |s| s.verdict(iat.as_secs()))
    }

    /// [`RevocationLedger::check_access_token`], synchronously: point lookups.
    pub fn check_access_token_now(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
        now: UnixTime,
    ) -> LedgerVerdict {
        let state = self.lock();
        let denied = state
            .denied
            .get(&token_digest(issuer, jti))
            .is_some_and(|(_, _, until)| *until > now.as_secs());
        if denied {
            return LedgerVerdict::Revoked(RevocationReason::TokenDenied);
        }
        let digest = subject_digest(&RevocationScope::local(issuer), subject);
        state
            .subjects
            .get(&digest)
            .map_or(LedgerVerdict::Allowed, |s| s.verdict(iat.as_secs()))
    }

    /// [`RevocationLedger::snapshot`], synchronously.
    pub fn snapshot_now(&self) -> LedgerSnapshot {
        let state = self.lock();
        let mut changes = Vec::with_capacity(state.subjects.len() + state.denied.len());
        for subject in state.subjects.values() {
            subject.changes(&mut changes);
        }
        for (issuer, jti, until) in state.denied.values() {
            changes.push(LedgerChange::TokenDenied {
                issuer: issuer.clone(),
                jti: jti.clone(),
                until: *until,
            });
        }
        LedgerSnapshot {
            cursor: Cursor(state.seq.to_string()),
            changes,
        }
    }

    /// [`RevocationLedger::changes_since`], synchronously.
    pub fn changes_since_now(&self, cursor: &Cursor) -> Result<LedgerChanges, LedgerError> {
        let after: u64 = cursor.0.parse().map_err(|_| LedgerError::CursorExpired)?;
        let state = self.lock();
        if after > state.seq {
            return Err(LedgerError::CursorExpired);
        }
        let oldest = state
            .log
            .front()
            .map_or(state.seq.saturating_add(1), |(seq, _)| *seq);
        // The feed must still hold the change right after the cursor.
        if after < state.seq && after.saturating_add(1) < oldest {
            return Err(LedgerError::CursorExpired);
        }
        let changes = state
            .log
            .iter()
            .filter(|(seq, _)| *seq > after)
            .map(|(_, change)| change.clone())
            .collect();
        Ok(LedgerChanges {
            cursor: Cursor(state.seq.to_string()),
            changes,
        })
    }
}

impl RevocationLedger for MemoryLedger {
    fn revoke_subject(
        &self,
        scope: &RevocationScope,
        subject: &str,
        at: UnixTime,
        kind: RevocationKind,
        now: UnixTime,
    ) -> impl Future<Output = Result<UnixTime, LedgerError>> + Send {
        std::future::ready(Ok(self.revoke_subject_now(scope, subject, at, kind, now)))
    }

    fn disable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        kind: RevocationKind,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.disable_now(scope, subject, kind, now);
        std::future::ready(Ok(()))
    }

    fn enable(
        &self,
        scope: &RevocationScope,
        subject: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.enable_now(scope, subject, now);
        std::future::ready(Ok(()))
    }

    fn deny_token(
        &self,
        issuer: &str,
        jti: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.deny_token_now(issuer, jti, until, now);
        std::future::ready(Ok(()))
    }

    fn check_id_jag(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
        iat: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
        std::future::ready(Ok(self.check_id_jag_now(
            idp_issuer,
            tenant,
            idp_subject,
            iat,
        )))
    }

    fn snapshot(&self) -> impl Future<Output = Result<LedgerSnapshot, LedgerError>> + Send {
        std::future::ready(Ok(self.snapshot_now()))
    }

    fn changes_since(
        &self,
        cursor: &Cursor,
    ) -> impl Future<Output = Result<LedgerChanges, LedgerError>> + Send {
        std::future::ready(self.changes_since_now(cursor))
    }

    fn check_access_token(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
        std::future::ready(Ok(
            self.check_access_token_now(issuer, subject, iat, jti, now)
        ))
    }
}

/// One local subject in a mirror.
#[derive(Debug, Clone, Copy, Default)]
struct MirrorSubject {
    watermark: Option<(u64, RevocationKind)>,
    disabled: Option<RevocationKind>,
}

#[derive(Debug, Default)]
struct MirrorState {
    /// AS issuer → `sub` → state: looked up by `&str` without allocating.
    subjects: HashMap<String, HashMap<String, MirrorSubject>>,
    /// Token issuer → `jti` → denied until.
    denied: HashMap<String, HashMap<String, u64>>,
    cursor: Option<Cursor>,
    /// When the last sync succeeded (`None`: never).
    synced_at: Option<u64>,
}

impl MirrorState {
    fn apply(&mut self, change: &LedgerChange) {
        match change {
            // The mirror serves resource servers: only local subjects and token denials.
            LedgerChange::Watermark {
                scope: RevocationScope::Local { issuer },
                subject,
                at,
                kind,
            } => {
                let entry = self.subject(issuer, subject);
                // RV-28: a replayed or reordered older change never lowers it.
                if entry.watermark.is_none_or(|(cur, _)| cur < *at) {
                    entry.watermark = Some((*at, *kind));
                }
            }
            LedgerChange::Disabled {
                scope: RevocationScope::Local { issuer },
                subject,
                kind,
            } => self.subject(issuer, subject).disabled = Some(*kind),
            LedgerChange::Enabled {
                scope: RevocationScope::Local { issuer },
                subject,
            } => {
                if let Some(entry) = self
                    .subjects
                    .get_mut(issuer.as_str())
                    .and_then(|m| m.get_mut(subject.as_str()))
                {
                    entry.disabled = None;
                }
            }
            LedgerChange::TokenDenied { issuer, jti, until } => {
                let slot = self
                    .denied
                    .entry(issuer.clone())
                    .or_default()
                    .entry(jti.clone())
                    .or_insert(*until);
                *slot = (*slot).max(*until);
            }
            _ => {}
        }
    }

    fn revocation(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
    ) -> Option<RevocationReason> {
        if self.denied.get(issuer).and_then(|m| m.get(jti)).is_some() {
            return Some(RevocationReason::TokenDenied);
        }
        let entry = self.subjects.get(issuer).and_then(|m| m.get(subject))?;
        if let Some(kind) = entry.disabled {
            return Some(RevocationReason::Disabled { kind });
        }
        match entry.watermark {
            Some((at, kind)) if iat.as_secs() <= at => Some(RevocationReason::Watermark {
                at: UnixTime::from_secs(at),
                kind,
            }),
            _ => None,
        }
    }

    fn subject(&mut self, issuer: &str, subject: &str) -> &mut MirrorSubject {
        self.subjects
            .entry(issuer.to_owned())
            .or_default()
            .entry(subject.to_owned())
            .or_default()
    }
}

/// A resource server's in-memory copy of the ledger's local-subject entries and token denials
/// (RV-15, RV-16), fed by [`RevocationLedger::snapshot`] and
/// [`RevocationLedger::changes_since`] through [`sync`](Self::sync).
///
/// A check costs three hash lookups under a read lock. If the last successful sync is older
/// than the staleness bound (default [`DEFAULT_MAX_STALENESS`]), or there never was one, every
/// check answers [`MirrorVerdict::Stale`]: the server answers 503 rather than trust it (RV-16).
///
/// ```
/// use ema_grant::revocation::{
///     LedgerMirror, MemoryLedger, MirrorVerdict, RevocationKind, RevocationLedger,
///     RevocationScope,
/// };
/// use ema_jose::UnixTime;
///
/// let ledger = MemoryLedger::default();
/// let mirror = LedgerMirror::new();
/// let t = UnixTime::from_secs(10_000);
/// pollster::block_on(mirror.sync(&ledger, t)).unwrap();
/// let local = RevocationScope::local("https://as.example");
/// pollster::block_on(ledger.revoke_subject(&local, "u1", t, RevocationKind::Admin, t)).unwrap();
/// pollster::block_on(mirror.sync(&ledger, t.plus(1))).unwrap();
/// let check = |iat, now| mirror.check_access_token("https://as.example", "u1", iat, "j", now);
/// assert!(matches!(check(t, t.plus(1)), MirrorVerdict::Revoked(_)));
/// assert_eq!(check(t.plus(1), t.plus(1)), MirrorVerdict::Allowed);
/// // Sixty-one seconds without a sync: stale.
/// assert_eq!(check(t.plus(1), t.plus(62)), MirrorVerdict::Stale);
/// ```
pub struct LedgerMirror {
    state: RwLock<MirrorState>,
    max_staleness: u64,
    listeners: RwLock<Vec<Weak<dyn MirrorListener>>>,
}

impl std::fmt::Debug for LedgerMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerMirror")
            .field("state", &self.state)
            .field("max_staleness", &self.max_staleness)
            .field(
                "listeners",
                &self
                    .listeners
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .filter(|l| l.strong_count() > 0)
                    .count(),
            )
            .finish()
    }
}

impl Default for LedgerMirror {
    fn default() -> Self {
        Self::new()
    }
}

/// Told of every change a [`LedgerMirror`] applies, from a snapshot or from the feed (RV-18):
/// what a resource server needs to end the live sessions, streams and tool calls of a subject
/// the moment its mirror learns of the revocation, not at the subject's next request.
///
/// [`changed`](Self::changed) runs on the thread that synced the mirror, after the change is
/// visible to [`LedgerMirror::check_access_token`] and outside the mirror's lock; it must not
/// block. A snapshot reload tells every change again, so a listener acts idempotently (it
/// re-checks what it holds with [`LedgerMirror::revocation`]).
pub trait MirrorListener: Send + Sync {
    /// `change` was applied to `mirror`.
    fn changed(&self, mirror: &LedgerMirror, change: &LedgerChange);
}

impl LedgerMirror {
    /// An empty, never-synced mirror with the default staleness bound.
    pub fn new() -> Self {
        Self {
            state: RwLock::new(MirrorState::default()),
            max_staleness: DEFAULT_MAX_STALENESS,
            listeners: RwLock::new(Vec::new()),
        }
    }

    /// Tells `listener` of every change applied from now on (RV-18). The mirror holds it
    /// weakly: dropping the last `Arc` unsubscribes it.
    pub fn subscribe(&self, listener: &Arc<dyn MirrorListener>) {
        let mut listeners = self
            .listeners
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|l| l.strong_count() > 0);
        listeners.push(Arc::downgrade(listener));
    }

    fn notify(&self, changes: &[LedgerChange]) {
        if changes.is_empty() {
            return;
        }
        let live: Vec<Arc<dyn MirrorListener>> = self
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for listener in &live {
            for change in changes {
                listener.changed(self, change);
            }
        }
    }

    /// Sets the staleness bound in seconds (RV-16).
    pub fn with_max_staleness(mut self, secs: u64) -> Self {
        self.max_staleness = secs;
        self
    }

    /// The staleness bound in seconds.
    pub fn max_staleness(&self) -> u64 {
        self.max_staleness
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MirrorState> {
        // Every update leaves the maps consistent, so a poisoned lock is safe to reuse.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MirrorState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the mirror's content with `snapshot`, synced at `now`.
    pub fn apply_snapshot(&self, snapshot: &LedgerSnapshot, now: UnixTime) {
        let mut fresh = MirrorState::default();
        for change in &snapshot.changes {
            fresh.apply(change);
        }
        fresh.cursor = Some(snapshot.cursor.clone());
        fresh.synced_at = Some(now.as_secs());
        *self.write() = fresh;
        self.notify(&snapshot.changes);
    }

    /// Applies `changes` (the ledger's answer after this mirror's cursor), synced at `now`.
    pub fn apply_changes(&self, changes: &LedgerChanges, now: UnixTime) {
        {
            let mut state = self.write();
            for change in &changes.changes {
                state.apply(change);
            }
            state.cursor = Some(changes.cursor.clone());
            state.synced_at = Some(now.as_secs());
        }
        self.notify(&changes.changes);
    }

    /// The feed position the mirror has reached (`None` before the first snapshot).
    pub fn cursor(&self) -> Option<Cursor> {
        self.read().cursor.clone()
    }

    /// When the last sync succeeded (`None`: never).
    pub fn synced_at(&self) -> Option<UnixTime> {
        self.read().synced_at.map(UnixTime::from_secs)
    }

    /// Brings the mirror up to date from `ledger` at `now`: the changes since its cursor, or a
    /// full snapshot the first time and when the feed no longer reaches back to the cursor.
    /// Returns how many changes were applied. On error the mirror keeps its content and its
    /// last sync time, and turns stale once that is older than the bound.
    pub async fn sync<L: RevocationLedger + ?Sized>(
        &self,
        ledger: &L,
        now: UnixTime,
    ) -> Result<usize, LedgerError> {
        if let Some(cursor) = self.cursor() {
            match ledger.changes_since(&cursor).await {
                Ok(changes) => {
                    let n = changes.changes.len();
                    self.apply_changes(&changes, now);
                    return Ok(n);
                }
                Err(LedgerError::CursorExpired) => {}
                Err(e) => return Err(e),
            }
        }
        let snapshot = ledger.snapshot().await?;
        let n = snapshot.changes.len();
        self.apply_snapshot(&snapshot, now);
        Ok(n)
    }

    /// Whether the mirror is too old to trust at `now` (RV-16).
    pub fn is_stale(&self, now: UnixTime) -> bool {
        self.read()
            .synced_at
            .is_none_or(|at| now.as_secs().saturating_sub(at) > self.max_staleness)
    }

    /// The resource server's check of an access token (RV-15), on every request: denied `jti`,
    /// disabled subject, or `iat` at or before the subject's watermark (D-38) → revoked; a
    /// mirror older than its bound → [`MirrorVerdict::Stale`] (RV-16).
    pub fn check_access_token(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
        now: UnixTime,
    ) -> MirrorVerdict {
        let state = self.read();
        if state
            .synced_at
            .is_none_or(|at| now.as_secs().saturating_sub(at) > self.max_staleness)
        {
            return MirrorVerdict::Stale;
        }
        match state.revocation(issuer, subject, iat, jti) {
            Some(reason) => MirrorVerdict::Revoked(reason),
            None => MirrorVerdict::Allowed,
        }
    }

    /// Why the mirror's content revokes an access token, whatever its age: the check of
    /// [`check_access_token`](Self::check_access_token) without the staleness bound, for a
    /// [`MirrorListener`] re-checking the tokens behind live sessions (RV-18). `None`: nothing
    /// the mirror holds revokes it.
    pub fn revocation(
        &self,
        issuer: &str,
        subject: &str,
        iat: UnixTime,
        jti: &str,
    ) -> Option<RevocationReason> {
        self.read().revocation(issuer, subject, iat, jti)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS: &str = "https://as.example";
    const IDP: &str = "https://idp.example";

    fn t(secs: u64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn local() -> RevocationScope {
        RevocationScope::local(AS)
    }

    fn idp(tenant: Option<&str>) -> RevocationScope {
        RevocationScope::idp(IDP, tenant)
    }

    fn synced_mirror(ledger: &MemoryLedger, now: UnixTime) -> LedgerMirror {
        let mirror = LedgerMirror::new();
        pollster::block_on(mirror.sync(ledger, now)).unwrap();
        mirror
    }

    /// A ledger that answers `check_access_token` with the trait's provided body (a
    /// snapshot), to hold the backends' point lookups to it.
    struct BySnapshot(MemoryLedger);

    impl RevocationLedger for BySnapshot {
        async fn revoke_subject(
            &self,
            scope: &RevocationScope,
            subject: &str,
            at: UnixTime,
            kind: RevocationKind,
            now: UnixTime,
        ) -> Result<UnixTime, LedgerError> {
            self.0.revoke_subject(scope, subject, at, kind, now).await
        }
        async fn disable(
            &self,
            scope: &RevocationScope,
            subject: &str,
            kind: RevocationKind,
            now: UnixTime,
        ) -> Result<(), LedgerError> {
            self.0.disable(scope, subject, kind, now).await
        }
        async fn enable(
            &self,
            scope: &RevocationScope,
            subject: &str,
            now: UnixTime,
        ) -> Result<(), LedgerError> {
            self.0.enable(scope, subject, now).await
        }
        async fn deny_token(
            &self,
            issuer: &str,
            jti: &str,
            until: UnixTime,
            now: UnixTime,
        ) -> Result<(), LedgerError> {
            self.0.deny_token(issuer, jti, until, now).await
        }
        async fn check_id_jag(
            &self,
            idp_issuer: &str,
            tenant: Option<&str>,
            idp_subject: &str,
            iat: UnixTime,
        ) -> Result<LedgerVerdict, LedgerError> {
            self.0
                .check_id_jag(idp_issuer, tenant, idp_subject, iat)
                .await
        }
        async fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
            self.0.snapshot().await
        }
        async fn changes_since(&self, cursor: &Cursor) -> Result<LedgerChanges, LedgerError> {
            self.0.changes_since(cursor).await
        }
    }

    /// RV-22, D-38: the AS's check of its own access tokens. A denied `jti` (until its `exp`),
    /// a disabled local subject, a watermark at or after `iat` revoke; the IdP scope of the
    /// same subject name does not; the point lookups of `MemoryLedger` and the provided
    /// snapshot body agree on every row, through `DynRevocationLedger` too.
    #[test]
    fn rv22_check_access_token_point_lookups_match_the_snapshot() {
        let now = t(10_000);
        let kind = RevocationKind::Admin;
        let memory = Arc::new(MemoryLedger::new());
        // The memory ledger erased, the snapshot body, and the memory ledger behind an `Arc`.
        let all = [
            DynRevocationLedger::new(MemoryLedger::new()),
            DynRevocationLedger::new(BySnapshot(MemoryLedger::new())),
            DynRevocationLedger::from_arc(memory.clone()),
        ];
        for l in &all {
            pollster::block_on(async {
                l.deny_token(AS, "jti-denied", t(10_300), now)
                    .await
                    .unwrap();
                l.deny_token(AS, "jti-expired", t(9_999), now)
                    .await
                    .unwrap();
                l.revoke_subject(&local(), "alice", t(9_000), kind, now)
                    .await
                    .unwrap();
                l.disable(&local(), "bob", kind, now).await.unwrap();
                l.revoke_subject(&idp(None), "carol", t(9_500), kind, now)
                    .await
                    .unwrap();
            });
        }
        let rows: [(&str, u64, &str, bool); 8] = [
            ("dave", 9_100, "jti-denied", true),
            ("dave", 9_100, "jti-expired", false),
            ("dave", 9_100, "jti-other", false),
            ("alice", 9_000, "a1", true),
            ("alice", 9_001, "a2", false),
            ("bob", 9_999, "b1", true),
            ("carol", 9_100, "c1", false),
            ("erin", 9_100, "e1", false),
        ];
        for l in &all {
            for (sub, iat, jti, want) in rows {
                let verdict =
                    pollster::block_on(l.check_access_token(AS, sub, t(iat), jti, now)).unwrap();
                assert_eq!(
                    matches!(verdict, LedgerVerdict::Revoked(_)),
                    want,
                    "{sub} {iat} {jti}: {verdict:?}"
                );
            }
        }
        // The denial ends with the token's `exp`.
        assert_eq!(
            memory.check_access_token_now(AS, "dave", t(9_100), "jti-denied", t(10_300)),
            LedgerVerdict::Allowed
        );
        // Another issuer's token with a denied `jti` of this AS is not revoked by it.
        assert_eq!(
            memory.check_access_token_now(
                "https://other.example",
                "dave",
                t(9_100),
                "jti-denied",
                now
            ),
            LedgerVerdict::Allowed
        );
    }

    // RV-11, D-38: inclusive at the second boundary; positive control one second later.
    #[test]
    fn rv11_d38_id_jag_watermark_is_inclusive_at_the_second() {
        let l = MemoryLedger::new();
        assert_eq!(
            l.check_id_jag_now(IDP, None, "alice", t(1000)),
            LedgerVerdict::Allowed
        );
        l.revoke_subject_now(
            &idp(None),
            "alice",
            t(1000),
            RevocationKind::SessionRevoked,
            t(1000),
        );
        assert_eq!(
            l.check_id_jag_now(IDP, None, "alice", t(1000)),
            LedgerVerdict::Revoked(RevocationReason::Watermark {
                at: t(1000),
                kind: RevocationKind::SessionRevoked
            })
        );
        assert!(matches!(
            l.check_id_jag_now(IDP, None, "alice", t(999)),
            LedgerVerdict::Revoked(_)
        ));
        assert_eq!(
            l.check_id_jag_now(IDP, None, "alice", t(1001)),
            LedgerVerdict::Allowed
        );
        // Other subjects, tenants and the local space are untouched.
        assert_eq!(
            l.check_id_jag_now(IDP, None, "bob", t(1000)),
            LedgerVerdict::Allowed
        );
        assert_eq!(
            l.check_id_jag_now(IDP, Some("t1"), "alice", t(1000)),
            LedgerVerdict::Allowed
        );
        l.revoke_subject_now(&local(), "carol", t(1000), RevocationKind::Admin, t(1000));
        assert_eq!(
            l.check_id_jag_now(AS, None, "carol", t(1000)),
            LedgerVerdict::Allowed
        );
    }

    // RV-28: the watermark never goes down and an equal or lower write is not a change.
    #[test]
    fn rv28_watermark_is_max_only() {
        let l = MemoryLedger::new();
        let s = idp(Some("t1"));
        assert_eq!(
            l.revoke_subject_now(&s, "a", t(2000), RevocationKind::Admin, t(2000)),
            t(2000)
        );
        assert_eq!(
            l.revoke_subject_now(&s, "a", t(1500), RevocationKind::Admin, t(2001)),
            t(2000)
        );
        assert!(matches!(
            l.check_id_jag_now(IDP, Some("t1"), "a", t(1999)),
            LedgerVerdict::Revoked(_)
        ));
        assert_eq!(l.snapshot_now().cursor.as_str(), "1");
        assert_eq!(
            l.revoke_subject_now(&s, "a", t(2500), RevocationKind::Admin, t(2500)),
            t(2500)
        );
        assert_eq!(l.snapshot_now().cursor.as_str(), "2");
    }

    // RV-11 (disabled subject), RV-28: enable clears only the flag.
    #[test]
    fn rv28_enable_clears_only_the_flag() {
        let l = MemoryLedger::new();
        let s = idp(None);
        l.revoke_subject_now(&s, "a", t(1000), RevocationKind::AccountDisabled, t(1000));
        l.disable_now(&s, "a", RevocationKind::AccountDisabled, t(1000));
        assert_eq!(
            l.check_id_jag_now(IDP, None, "a", t(5000)),
            LedgerVerdict::Revoked(RevocationReason::Disabled {
                kind: RevocationKind::AccountDisabled
            })
        );
        l.enable_now(&s, "a", t(1100));
        assert_eq!(
            l.check_id_jag_now(IDP, None, "a", t(5000)),
            LedgerVerdict::Allowed
        );
        assert!(matches!(
            l.check_id_jag_now(IDP, None, "a", t(1000)),
            LedgerVerdict::Revoked(RevocationReason::Watermark { .. })
        ));
    }

    #[test]
    fn feed_delivers_changes_in_order_and_expires_old_cursors() {
        let l = MemoryLedger::new().with_feed_capacity(2);
        let start = l.snapshot_now().cursor;
        l.revoke_subject_now(&local(), "a", t(10), RevocationKind::Admin, t(10));
        let after_one = l.changes_since_now(&start).unwrap();
        assert_eq!(after_one.changes.len(), 1);
        l.disable_now(&local(), "a", RevocationKind::Admin, t(10));
        l.deny_token_now(AS, "j1", t(100), t(10));
        // The feed keeps two changes: the first cursor no longer reaches back.
        assert_eq!(l.changes_since_now(&start), Err(LedgerError::CursorExpired));
        let rest = l.changes_since_now(&after_one.cursor).unwrap();
        assert_eq!(rest.changes.len(), 2);
        assert!(matches!(rest.changes[0], LedgerChange::Disabled { .. }));
        assert!(matches!(rest.changes[1], LedgerChange::TokenDenied { .. }));
        assert!(
            l.changes_since_now(&rest.cursor)
                .unwrap()
                .changes
                .is_empty()
        );
        assert_eq!(
            l.changes_since_now(&Cursor::new("nonsense")),
            Err(LedgerError::CursorExpired)
        );
        assert_eq!(
            l.changes_since_now(&Cursor::new("99")),
            Err(LedgerError::CursorExpired)
        );
    }

    #[test]
    fn changes_round_trip_through_json() {
        let changes = [
            LedgerChange::Watermark {
                scope: idp(Some("t")),
                subject: "a".into(),
                at: 5,
                kind: RevocationKind::CredentialChange,
            },
            LedgerChange::Enabled {
                scope: local(),
                subject: "b".into(),
            },
            LedgerChange::TokenDenied {
                issuer: AS.into(),
                jti: "j".into(),
                until: 9,
            },
        ];
        for c in changes {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<LedgerChange>(&json).unwrap(), c);
        }
    }

    #[test]
    fn retention_sweeps_watermarks_but_not_flags() {
        let l = MemoryLedger::new().with_retention(100);
        l.revoke_subject_now(&local(), "a", t(1000), RevocationKind::Admin, t(1000));
        l.disable_now(&local(), "b", RevocationKind::Admin, t(1000));
        l.deny_token_now(AS, "j", t(1050), t(1000));
        assert_eq!(l.snapshot_now().changes.len(), 3);
        l.deny_token_now(AS, "k", t(5000), t(1200));
        let snap = l.snapshot_now();
        assert_eq!(snap.changes.len(), 2, "{snap:?}");
        assert!(
            snap.changes
                .iter()
                .any(|c| matches!(c, LedgerChange::Disabled { .. }))
        );
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(LedgerChange, bool)>>);

    impl MirrorListener for Recorder {
        fn changed(&self, mirror: &LedgerMirror, change: &LedgerChange) {
            // The change is visible to the listener's re-check when it is told.
            let revoked = mirror.revocation(AS, "u", t(1000), "j1").is_some();
            self.0.lock().unwrap().push((change.clone(), revoked));
        }
    }

    // RV-18: a listener hears every change applied, from the feed and from a snapshot, after it
    // is visible; unsubscribed when dropped. `revocation` ignores staleness.
    #[test]
    fn rv18_listeners_hear_every_applied_change() {
        let l = MemoryLedger::new();
        let m = synced_mirror(&l, t(1000));
        let recorder = Arc::new(Recorder::default());
        let listener: Arc<dyn MirrorListener> = recorder.clone();
        m.subscribe(&listener);
        pollster::block_on(m.sync(&l, t(1000))).unwrap();
        assert!(recorder.0.lock().unwrap().is_empty(), "no change, no call");
        l.revoke_subject_now(&local(), "u", t(1000), RevocationKind::Admin, t(1000));
        pollster::block_on(m.sync(&l, t(1001))).unwrap();
        let heard = recorder.0.lock().unwrap().clone();
        assert_eq!(heard.len(), 1);
        assert!(matches!(heard[0].0, LedgerChange::Watermark { .. }) && heard[0].1);
        // A snapshot reload tells the live entries again.
        m.apply_snapshot(&l.snapshot_now(), t(1002));
        assert_eq!(recorder.0.lock().unwrap().len(), 2);
        // Stale mirror: `check_access_token` says Stale, `revocation` still knows.
        assert_eq!(
            m.check_access_token(AS, "u", t(1000), "j1", t(5000)),
            MirrorVerdict::Stale
        );
        assert!(m.revocation(AS, "u", t(1000), "j1").is_some());
        assert!(m.revocation(AS, "u", t(1001), "j1").is_none());
        drop(listener);
        drop(recorder);
        l.revoke_subject_now(&local(), "w", t(1000), RevocationKind::Admin, t(1000));
        pollster::block_on(m.sync(&l, t(1003))).unwrap();
        assert!(format!("{m:?}").contains("listeners: 0"), "{m:?}");
    }

    // RV-15, D-38 at the resource server; RV-28 after account-enabled.
    #[test]
    fn rv15_mirror_refuses_revoked_tokens_with_positive_controls() {
        let l = MemoryLedger::new();
        let m = synced_mirror(&l, t(1000));
        let ok = m.check_access_token(AS, "u", t(1000), "j1", t(1000));
        assert_eq!(ok, MirrorVerdict::Allowed);
        l.revoke_subject_now(&local(), "u", t(1000), RevocationKind::Admin, t(1000));
        l.deny_token_now(AS, "j9", t(2000), t(1000));
        // IdP-space entries never reach the resource server's verdict.
        l.revoke_subject_now(&idp(None), "v", t(1000), RevocationKind::Admin, t(1000));
        pollster::block_on(m.sync(&l, t(1001))).unwrap();
        assert!(matches!(
            m.check_access_token(AS, "u", t(1000), "j1", t(1001)),
            MirrorVerdict::Revoked(RevocationReason::Watermark { .. })
        ));
        assert_eq!(
            m.check_access_token(AS, "u", t(1001), "j1", t(1001)),
            MirrorVerdict::Allowed
        );
        assert_eq!(
            m.check_access_token(AS, "w", t(1001), "j9", t(1001)),
            MirrorVerdict::Revoked(RevocationReason::TokenDenied)
        );
        assert_eq!(
            m.check_access_token("https://other.example", "w", t(1001), "j9", t(1001)),
            MirrorVerdict::Allowed
        );
        assert_eq!(
            m.check_access_token(AS, "v", t(900), "j1", t(1001)),
            MirrorVerdict::Allowed
        );
        // Disabled: even a token issued later is refused; enabled: old tokens stay dead.
        l.disable_now(&local(), "u", RevocationKind::AccountDisabled, t(1002));
        pollster::block_on(m.sync(&l, t(1002))).unwrap();
        assert!(matches!(
            m.check_access_token(AS, "u", t(1500), "j1", t(1002)),
            MirrorVerdict::Revoked(RevocationReason::Disabled { .. })
        ));
        l.enable_now(&local(), "u", t(1003));
        pollster::block_on(m.sync(&l, t(1003))).unwrap();
        assert!(matches!(
            m.check_access_token(AS, "u", t(1000), "j1", t(1003)),
            MirrorVerdict::Revoked(RevocationReason::Watermark { .. })
        ));
        assert_eq!(
            m.check_access_token(AS, "u", t(1500), "j1", t(1003)),
            MirrorVerdict::Allowed
        );
    }

    // RV-16: stale past the bound, fresh at it; never-synced is stale.
    #[test]
    fn rv16_mirror_staleness_bound() {
        let l = MemoryLedger::new();
        let never = LedgerMirror::new();
        assert_eq!(
            never.check_access_token(AS, "u", t(1), "j", t(1)),
            MirrorVerdict::Stale
        );
        let m = synced_mirror(&l, t(1000));
        assert_eq!(
            m.check_access_token(AS, "u", t(1), "j", t(1060)),
            MirrorVerdict::Allowed
        );
        assert_eq!(
            m.check_access_token(AS, "u", t(1), "j", t(1061)),
            MirrorVerdict::Stale
        );
        assert!(m.is_stale(t(1061)));
        let short = LedgerMirror::new().with_max_staleness(5);
        pollster::block_on(short.sync(&l, t(1000))).unwrap();
        assert!(!short.is_stale(t(1005)));
        assert!(short.is_stale(t(1006)));
    }

    struct Fail;
    impl Fail {
        fn err<T>() -> std::future::Ready<Result<T, LedgerError>> {
            std::future::ready(Err(LedgerError::Unavailable {
                reason: "down".into(),
            }))
        }
    }
    impl RevocationLedger for Fail {
        fn revoke_subject(
            &self,
            _: &RevocationScope,
            _: &str,
            _: UnixTime,
            _: RevocationKind,
            _: UnixTime,
        ) -> impl Future<Output = Result<UnixTime, LedgerError>> + Send {
            Self::err()
        }
        fn disable(
            &self,
            _: &RevocationScope,
            _: &str,
            _: RevocationKind,
            _: UnixTime,
        ) -> impl Future<Output = Result<(), LedgerError>> + Send {
            Self::err()
        }
        fn enable(
            &self,
            _: &RevocationScope,
            _: &str,
            _: UnixTime,
        ) -> impl Future<Output = Result<(), LedgerError>> + Send {
            Self::err()
        }
        fn deny_token(
            &self,
            _: &str,
            _: &str,
            _: UnixTime,
            _: UnixTime,
        ) -> impl Future<Output = Result<(), LedgerError>> + Send {
            Self::err()
        }
        fn check_id_jag(
            &self,
            _: &str,
            _: Option<&str>,
            _: &str,
            _: UnixTime,
        ) -> impl Future<Output = Result<LedgerVerdict, LedgerError>> + Send {
            Self::err()
        }
        fn snapshot(&self) -> impl Future<Output = Result<LedgerSnapshot, LedgerError>> + Send {
            Self::err()
        }
        fn changes_since(
            &self,
            _: &Cursor,
        ) -> impl Future<Output = Result<LedgerChanges, LedgerError>> + Send {
            Self::err()
        }
    }

    // RV-16: a failing sync keeps the content and the mirror turns stale at the bound.
    #[test]
    fn rv16_failed_sync_turns_stale() {
        let l = MemoryLedger::new();
        let m = synced_mirror(&l, t(1000));
        let down = DynRevocationLedger::new(Fail);
        assert!(pollster::block_on(m.sync(&down, t(1030))).is_err());
        assert!(!m.is_stale(t(1060)));
        assert!(m.is_stale(t(1061)));
        // Back: the next sync freshens it.
        pollster::block_on(m.sync(&l, t(1070))).unwrap();
        assert!(!m.is_stale(t(1070)));
    }

    // A mirror whose cursor fell out of the feed reloads from a snapshot.
    #[test]
    fn mirror_resyncs_from_snapshot_after_gap() {
        let l = MemoryLedger::new().with_feed_capacity(1);
        let m = synced_mirror(&l, t(1000));
        l.revoke_subject_now(&local(), "a", t(1000), RevocationKind::Admin, t(1000));
        l.revoke_subject_now(&local(), "b", t(1000), RevocationKind::Admin, t(1000));
        assert_eq!(pollster::block_on(m.sync(&l, t(1001))).unwrap(), 2);
        for s in ["a", "b"] {
            assert!(matches!(
                m.check_access_token(AS, s, t(1000), "j", t(1001)),
                MirrorVerdict::Revoked(_)
            ));
        }
        assert_eq!(m.cursor(), Some(Cursor::new("2")));
    }
}
