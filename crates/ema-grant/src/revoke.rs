//! The one internal revoke command of the authorization server ([`Revoke`], applied by a
//! [`Revoker`]) and the RFC 7009 revocation endpoint of its own access tokens (RV-20).
//!
//! Every way in (admin route, RFC 7009, later SSF and GTR receivers) produces a [`Revoke`];
//! [`Revoker::apply`] turns it into ledger writes following the default event policy: the IdP
//! subject's watermark on the IdP's clock (RV-11, RV-13), the local subjects' watermarks on the
//! AS clock at processing time (RV-12), and the disabled flag for account events (RV-28).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use ema_jose::{TimeOptions, UnixTime};
use http::Response;

use crate::access_token::DEFAULT_ACCESS_TOKEN_LIFETIME;
use crate::error::{ErrorCode, OAuthError, json_bytes_response};
use crate::form::{Form, TokenRequest};
use crate::jwt_bearer::{JwtBearerGrant, client_auth_error, form_error, request_error};
use crate::replay::ReplayStore;
use crate::revocation::{
    DynRevocationLedger, LedgerChange, LedgerError, RevocationKind, RevocationLedger,
    RevocationScope,
};

/// How far in the future an event time may lie before the command is refused (RV-13, D-38):
/// the largest clock leeway of this workspace, 60 seconds.
pub const MAX_FUTURE_SKEW: u64 = TimeOptions::MAX_LEEWAY.as_secs();

/// What a [`Revoke`] does to its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevokeAction {
    /// Raise the watermark: everything issued up to `at` is dead.
    Revoke(RevocationKind),
    /// Raise the watermark and set the disabled flag (RISC `account-disabled` and
    /// `account-purged`, an IdP admin disabling the user).
    Disable(RevocationKind),
    /// Clear the disabled flag only (RISC `account-enabled`); the watermark stays (RV-28).
    Enable,
}

impl RevokeAction {
    /// The default event policy for `kind`: account events disable, the others revoke.
    pub const fn for_kind(kind: RevocationKind) -> Self {
        match kind {
            RevocationKind::AccountDisabled | RevocationKind::AccountPurged => Self::Disable(kind),
            _ => Self::Revoke(kind),
        }
    }
}

/// The internal revoke command: every way in produces one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    /// The subject's space: an IdP subject (then the mapped local subjects follow, RV-12) or a
    /// local subject of this AS.
    pub scope: RevocationScope,
    /// The subject.
    pub subject: String,
    /// The event time on the scope's clock (`event_timestamp`, else the SET `iat`, else now).
    pub at: UnixTime,
    /// What to do.
    pub action: RevokeAction,
}

/// Why a [`Revoke`] was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The event time is more than [`MAX_FUTURE_SKEW`] ahead of now (RV-13): it would
    /// pre-revoke future logins. Answered `invalid_request`.
    #[error("event time {at} is more than {MAX_FUTURE_SKEW} s after now ({now})")]
    FutureEvent {
        /// The event time, Unix seconds.
        at: u64,
        /// Now, Unix seconds.
        now: u64,
    },
    /// The subject is empty.
    #[error("the subject is empty")]
    EmptySubject,
    /// The ledger could not be written (RV-14: answered 503).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl ema_metadata::ToErrorCode for RevokeError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::FutureEvent { .. } | Self::EmptySubject => ErrorCode::InvalidRequest,
            Self::Ledger(e) => e.error_code(),
        }
    }

    fn error_description(&self) -> &'static str {
        match self {
            Self::FutureEvent { .. } => "the event time lies in the future",
            Self::EmptySubject => "the subject is empty",
            Self::Ledger(e) => e.error_description(),
        }
    }
}

/// Maps IdP subjects to the local subjects this AS issued access tokens to (the reverse of
/// the AS-16 subject mapping), so a revocation of the IdP subject reaches its access tokens.
#[derive(Debug, Default)]
struct SubjectIndex {
    map: Mutex<HashMap<(RevocationScope, String), BTreeSet<String>>>,
}

/// Bound on the index: IdP subjects remembered (a directory's worth).
const INDEX_CAPACITY: usize = 1_000_000;

/// Applies [`Revoke`] commands to a ledger and remembers which local subjects each IdP subject
/// was mapped to. Cheap to clone; clones share the ledger and the index. Give the same revoker
/// to the jwt-bearer grant ([`JwtBearerGrantBuilder::revoker`](crate::JwtBearerGrantBuilder::revoker))
/// and to the admin and revocation endpoints.
///
/// ```
/// use ema_grant::revocation::{LedgerVerdict, MemoryLedger, RevocationKind, RevocationScope};
/// use ema_grant::revoke::{Revoke, RevokeAction, Revoker};
/// use ema_jose::UnixTime;
///
/// let revoker = Revoker::new(MemoryLedger::default(), "https://as.example");
/// let idp = RevocationScope::idp("https://idp.example", None);
/// revoker.record_mapping(&idp, "00u1", "alice");
/// let now = UnixTime::from_secs(2_000);
/// let cmd = Revoke {
///     scope: idp,
///     subject: "00u1".into(),
///     at: UnixTime::from_secs(1_990),
///     action: RevokeAction::Revoke(RevocationKind::SessionRevoked),
/// };
/// let changes = pollster::block_on(revoker.apply(&cmd, now)).unwrap();
/// assert_eq!(changes.len(), 2); // the IdP subject's watermark and alice's
/// let verdict = pollster::block_on(revoker.check_id_jag("https://idp.example", None, "00u1",
///     UnixTime::from_secs(1_990))).unwrap();
/// assert!(matches!(verdict, LedgerVerdict::Revoked(_)));
/// ```
#[derive(Debug, Clone)]
pub struct Revoker {
    ledger: DynRevocationLedger,
    local: RevocationScope,
    index: Arc<SubjectIndex>,
    /// When each IdP's revocation channel was last verified (RV-24, RV-26).
    channels: Arc<Mutex<HashMap<String, UnixTime>>>,
}

/// RV-24: how recent the last verification of an IdP's revocation channel must be for its
/// users' access tokens to live longer than [`DEFAULT_ACCESS_TOKEN_LIFETIME`]: 15 minutes.
pub const CHANNEL_FRESHNESS: u64 = 15 * 60;

/// RV-24: the longest access-token lifetime, only while the IdP's revocation channel is
/// verified: one hour.
pub const MAX_LIFETIME_WITH_CHANNEL: u64 = 3600;

/// RV-24: the lifetime of an access token for a user of `idp_issuer`, given the configured
/// `lifetime`: at most [`MAX_LIFETIME_WITH_CHANNEL`] while `revoker` saw that IdP's
/// revocation channel verified within [`CHANNEL_FRESHNESS`], else at most
/// [`DEFAULT_ACCESS_TOKEN_LIFETIME`] (also without a revoker: no channel at all).
///
/// ```
/// use ema_grant::revocation::MemoryLedger;
/// use ema_grant::revoke::{Revoker, access_token_lifetime};
/// use ema_jose::UnixTime;
///
/// let revoker = Revoker::new(MemoryLedger::default(), "https://as.example");
/// let now = UnixTime::from_secs(10_000);
/// let idp = "https://idp.example";
/// assert_eq!(access_token_lifetime(Some(&revoker), idp, 3600, now), 300);
/// revoker.record_channel_verified(idp, now.minus(60));
/// assert_eq!(access_token_lifetime(Some(&revoker), idp, 3600, now), 3600);
/// assert_eq!(access_token_lifetime(Some(&revoker), idp, 86_400, now), 3600);
/// // Fifteen minutes after the last verification the channel no longer counts.
/// assert_eq!(access_token_lifetime(Some(&revoker), idp, 3600, now.plus(841)), 300);
/// assert_eq!(access_token_lifetime(None, idp, 3600, now), 300);
/// ```
pub fn access_token_lifetime(
    revoker: Option<&Revoker>,
    idp_issuer: &str,
    lifetime: u64,
    now: UnixTime,
) -> u64 {
    let verified = revoker.is_some_and(|r| r.channel_verified(idp_issuer, now));
    let cap = if verified {
        MAX_LIFETIME_WITH_CHANNEL
    } else {
        DEFAULT_ACCESS_TOKEN_LIFETIME
    };
    lifetime.min(cap)
}

impl Revoker {
    /// A revoker writing to `ledger` for the AS `issuer`.
    pub fn new(ledger: impl RevocationLedger + 'static, issuer: impl Into<String>) -> Self {
        Self::from_dyn(DynRevocationLedger::new(ledger), issuer)
    }

    /// A revoker over a ledger already erased (shared with other components).
    pub fn from_dyn(ledger: DynRevocationLedger, issuer: impl Into<String>) -> Self {
        Self {
            ledger,
            local: RevocationScope::local(issuer),
            index: Arc::default(),
            channels: Arc::default(),
        }
    }

    /// Records that the revocation channel of the IdP `idp_issuer` was verified at `at` (the
    /// stream-health tracker calls this for each issuer a transmitter covers when a
    /// verification event answers its request, RV-26). Clones share the record.
    pub fn record_channel_verified(&self, idp_issuer: &str, at: UnixTime) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = channels.entry(idp_issuer.to_owned()).or_insert(at);
        *slot = (*slot).max(at);
    }

    /// Forgets the verification of the revocation channel of `idp_issuer`: its users' access
    /// tokens fall back to the 300 s default at once (RV-24; the stream-health tracker calls
    /// this when a transmitter pauses or disables its stream, RV-26).
    pub fn forget_channel(&self, idp_issuer: &str) {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(idp_issuer);
    }

    /// When the revocation channel of `idp_issuer` was last verified.
    pub fn channel_verified_at(&self, idp_issuer: &str) -> Option<UnixTime> {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(idp_issuer)
            .copied()
    }

    /// Whether the revocation channel of `idp_issuer` was verified within
    /// [`CHANNEL_FRESHNESS`] before `now` (RV-24).
    pub fn channel_verified(&self, idp_issuer: &str, now: UnixTime) -> bool {
        self.channel_verified_at(idp_issuer)
            .is_some_and(|at| at <= now.plus(MAX_FUTURE_SKEW) && at.plus(CHANNEL_FRESHNESS) >= now)
    }

    /// The ledger.
    pub fn ledger(&self) -> &DynRevocationLedger {
        &self.ledger
    }

    /// The local-subject scope of this AS.
    pub fn local_scope(&self) -> &RevocationScope {
        &self.local
    }

    /// Records that the IdP subject `idp_subject` of `scope` was mapped to the local subject
    /// `local_subject` (the jwt-bearer grant calls this when it issues a token).
    pub fn record_mapping(&self, scope: &RevocationScope, idp_subject: &str, local_subject: &str) {
        let mut map = self
            .index
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (scope.clone(), idp_subject.to_owned());
        if let Some(set) = map.get_mut(&key) {
            if !set.contains(local_subject) {
                set.insert(local_subject.to_owned());
            }
            return;
        }
        if map.len() >= INDEX_CAPACITY {
            // Forget an arbitrary subject rather than grow without bound; its IdP watermark
            // still stops new tokens, its old ones expire within the token lifetime.
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(key, BTreeSet::from([local_subject.to_owned()]));
    }

    /// The local subjects recorded for an IdP subject.
    pub fn local_subjects(&self, scope: &RevocationScope, idp_subject: &str) -> Vec<String> {
        let map = self
            .index
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&(scope.clone(), idp_subject.to_owned()))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// [`RevocationLedger::check_id_jag`] on the ledger.
    pub async fn check_id_jag(
        &self,
        idp_issuer: &str,
        tenant: Option<&str>,
        idp_subject: &str,
        iat: UnixTime,
    ) -> Result<crate::revocation::LedgerVerdict, LedgerError> {
        self.ledger
            .check_id_jag(idp_issuer, tenant, idp_subject, iat)
            .await
    }

    /// Applies `cmd` at `now` and returns the changes written, for the audit trail (RV-29).
    ///
    /// The event time is refused beyond now + [`MAX_FUTURE_SKEW`] and otherwise clamped to now
    /// (RV-13). For an IdP subject the watermark is written at the event time, and every
    /// mapped local subject's at `now`, the AS clock at processing time (RV-12). Writes are
    /// idempotent, so a failed command may be retried whole.
    pub async fn apply(
        &self,
        cmd: &Revoke,
        now: UnixTime,
    ) -> Result<Vec<LedgerChange>, RevokeError> {
        if cmd.subject.is_empty() {
            return Err(RevokeError::EmptySubject);
        }
        if cmd.at > now.plus(MAX_FUTURE_SKEW) {
            return Err(RevokeError::FutureEvent {
                at: cmd.at.as_secs(),
                now: now.as_secs(),
            });
        }
        let at = cmd.at.min(now);
        let mut targets = vec![(cmd.scope.clone(), cmd.subject.clone(), at)];
        if matches!(cmd.scope, RevocationScope::Idp { .. }) {
            for local in self.local_subjects(&cmd.scope, &cmd.subject) {
                targets.push((self.local.clone(), local, now));
            }
        }
        let mut changes = Vec::with_capacity(targets.len() * 2);
        for (scope, subject, at) in targets {
            match cmd.action {
                RevokeAction::Revoke(kind) | RevokeAction::Disable(kind) => {
                    let wm = self
                        .ledger
                        .revoke_subject(&scope, &subject, at, kind, now)
                        .await?;
                    changes.push(LedgerChange::Watermark {
                        scope: scope.clone(),
                        subject: subject.clone(),
                        at: wm.as_secs(),
                        kind,
                    });
                    if let RevokeAction::Disable(kind) = cmd.action {
                        self.ledger.disable(&scope, &subject, kind, now).await?;
                        changes.push(LedgerChange::Disabled {
                            scope,
                            subject,
                            kind,
                        });
                    }
                }
                RevokeAction::Enable => {
                    self.ledger.enable(&scope, &subject, now).await?;
                    changes.push(LedgerChange::Enabled { scope, subject });
                }
            }
        }
        // RV-10 (REVOCATION 2.5): a recycled identifier's local subjects are forgotten once
        // their watermarks are written; its next owner's tokens map afresh.
        if cmd.action == RevokeAction::Revoke(RevocationKind::IdentifierRecycled) {
            self.forget_mapping(&cmd.scope, &cmd.subject);
        }
        Ok(changes)
    }

    /// Forgets the local subjects recorded for an IdP subject.
    pub fn forget_mapping(&self, scope: &RevocationScope, idp_subject: &str) {
        self.index
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(scope.clone(), idp_subject.to_owned()));
    }
}

/// What the RFC 7009 endpoint did, attached to its response as an extension for the audit
/// trail (RV-29). Identifiers only, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRevocation {
    /// One of this AS's live access tokens, issued to the calling client, is now denied.
    Revoked {
        /// The token's `jti`.
        jti: String,
        /// The token's `sub`.
        subject: String,
        /// The calling client.
        client_id: String,
        /// The token's `exp`.
        until: UnixTime,
    },
    /// Nothing to revoke: not a live token of this AS issued to the calling client (answered
    /// 200 all the same, RFC 7009 §2.2).
    Ignored {
        /// The calling client.
        client_id: String,
    },
}

impl<K, S, R> JwtBearerGrant<K, S, R>
where
    K: ema_jose::KeySource,
    S: ema_id_jag::SubjectResolver,
    R: ReplayStore,
{
    /// The RFC 7009 revocation endpoint for this AS's access tokens (RV-20), sans-I/O.
    ///
    /// `POST` form with `token` (and an optional `token_type_hint`, only a hint: unknown values
    /// are ignored, RFC 7009 §2.1); the client authenticates as at the token endpoint. A live
    /// access token of this AS issued to the calling client gets its `jti` denied in the ledger
    /// until its `exp`; any other token (unknown, foreign, expired, another client's) is left
    /// alone and still answered 200, so the endpoint is no token oracle. Without a revoker
    /// configured, or with the ledger unreachable: 503 `temporarily_unavailable` (RV-14).
    /// The response carries a [`TokenRevocation`] extension when the client authenticated.
    pub async fn handle_revocation<B: AsRef<[u8]>>(
        &self,
        req: &http::Request<B>,
        now: UnixTime,
    ) -> Response<Vec<u8>> {
        match self.revocation(req, now).await {
            Ok(outcome) => {
                let mut response = json_bytes_response(http::StatusCode::OK, b"{}".to_vec());
                response.extensions_mut().insert(outcome);
                response
            }
            Err(e) => e.to_response(),
        }
    }

    async fn revocation<B: AsRef<[u8]>>(
        &self,
        req: &http::Request<B>,
        now: UnixTime,
    ) -> Result<TokenRevocation, OAuthError> {
        let parts = TokenRequest::from_http(req).map_err(|e| request_error(&e))?;
        parts.check_shape()?;
        let form = Form::parse(parts.body, self.max_body).map_err(|e| form_error(&e))?;
        let client = self
            .clients
            .authenticate(&parts, &form, &self.replay, now)
            .await
            .map_err(|e| client_auth_error(&e, &self.realm))?;
        let token = form
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let client_id = client.client.id.as_str().to_owned();
        let Some(revoker) = &self.revoker else {
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "token revocation is not configured",
            ));
        };
        let claims = match self.tokens.verify_own(token, now) {
            Ok(claims) if claims.client_id.as_str() == client_id => claims,
            _ => return Ok(TokenRevocation::Ignored { client_id }),
        };
        revoker
            .ledger()
            .deny_token(claims.iss.as_str(), claims.jti.as_str(), claims.exp, now)
            .await
            .map_err(OAuthError::from_error)?;
        Ok(TokenRevocation::Revoked {
            jti: claims.jti.as_str().to_owned(),
            subject: claims.sub,
            client_id,
            until: claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{LedgerVerdict, MemoryLedger};

    const IDP: &str = "https://idp.example";

    fn t(s: u64) -> UnixTime {
        UnixTime::from_secs(s)
    }

    fn cmd(at: u64, action: RevokeAction) -> Revoke {
        Revoke {
            scope: RevocationScope::idp(IDP, None),
            subject: "00u1".into(),
            at: t(at),
            action,
        }
    }

    // RV-13, D-38: an event more than 60 s ahead is refused; at the bound it is clamped to now.
    #[test]
    fn rv13_future_event_refused_and_clamped() {
        let r = Revoker::new(MemoryLedger::new(), "https://as.example");
        let revoke = RevokeAction::Revoke(RevocationKind::SessionRevoked);
        let err = pollster::block_on(r.apply(&cmd(1061, revoke), t(1000))).unwrap_err();
        assert_eq!(
            err,
            RevokeError::FutureEvent {
                at: 1061,
                now: 1000
            }
        );
        assert!(matches!(
            pollster::block_on(r.check_id_jag(IDP, None, "00u1", t(1))).unwrap(),
            LedgerVerdict::Allowed
        ));
        let ok = pollster::block_on(r.apply(&cmd(1060, revoke), t(1000))).unwrap();
        assert!(matches!(ok[0], LedgerChange::Watermark { at: 1000, .. }));
        // Clamped to now: an ID-JAG of the next second (a future login) is not pre-revoked.
        assert_eq!(
            pollster::block_on(r.check_id_jag(IDP, None, "00u1", t(1001))).unwrap(),
            LedgerVerdict::Allowed
        );
        assert!(matches!(
            pollster::block_on(r.check_id_jag(IDP, None, "00u1", t(1000))).unwrap(),
            LedgerVerdict::Revoked(_)
        ));
    }

    // RV-12: local subjects get the AS processing time, not the IdP event time.
    #[test]
    fn rv12_local_watermark_at_processing_time() {
        let r = Revoker::new(MemoryLedger::new(), "https://as.example");
        let scope = RevocationScope::idp(IDP, None);
        r.record_mapping(&scope, "00u1", "alice");
        r.record_mapping(&scope, "00u1", "alice-2");
        r.record_mapping(&scope, "00u2", "bob");
        let changes = pollster::block_on(r.apply(
            &cmd(900, RevokeAction::Disable(RevocationKind::AccountDisabled)),
            t(1000),
        ))
        .unwrap();
        let locals: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                LedgerChange::Watermark {
                    scope: RevocationScope::Local { .. },
                    subject,
                    at,
                    ..
                } => Some((subject.as_str(), *at)),
                _ => None,
            })
            .collect();
        assert_eq!(locals, [("alice", 1000), ("alice-2", 1000)]);
        assert!(matches!(
            changes[0],
            LedgerChange::Watermark { at: 900, .. }
        ));
        // Three watermarks and three flags; bob untouched.
        assert_eq!(changes.len(), 6);
        let snapshot = pollster::block_on(r.ledger().snapshot()).unwrap();
        assert!(!format!("{snapshot:?}").contains("bob"));
        // Enable clears the flags only (RV-28).
        let enabled =
            pollster::block_on(r.apply(&cmd(1001, RevokeAction::Enable), t(1001))).unwrap();
        assert_eq!(enabled.len(), 3);
        assert!(matches!(
            pollster::block_on(r.check_id_jag(IDP, None, "00u1", t(900))).unwrap(),
            LedgerVerdict::Revoked(_)
        ));
        assert_eq!(
            pollster::block_on(r.check_id_jag(IDP, None, "00u1", t(901))).unwrap(),
            LedgerVerdict::Allowed
        );
    }

    #[test]
    fn empty_subject_is_refused() {
        let r = Revoker::new(MemoryLedger::new(), "https://as.example");
        let mut c = cmd(1, RevokeAction::Enable);
        c.subject.clear();
        assert_eq!(
            pollster::block_on(r.apply(&c, t(10))),
            Err(RevokeError::EmptySubject)
        );
    }
}
