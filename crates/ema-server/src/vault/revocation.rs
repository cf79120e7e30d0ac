//! The vault and the revocation ledger (RV-19): credentials of a revoked subject are refused,
//! and a purged or compromised subject's are deleted and revoked at their providers.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use ema_grant::revocation::{
    LedgerChange, LedgerMirror, MirrorListener, RevocationKind, RevocationScope,
};
use ema_jose::UnixTime;
use ema_vault::{CredentialVault, Owner, SubjectStatus};

use super::AuditVaultObserver;

/// The vault's [`SubjectStatus`] over a resource server's revocation mirror (RV-19): a
/// credential stored at or before the subject's watermark (D-38), or any credential of a
/// disabled subject, is refused. The owner's subject is the access token's `sub` at the
/// authorization server `issuer` (the mirror's local subject space); the owner's tenant does
/// not enter (one authorization server issues the tokens of every tenant of this server).
///
/// ```
/// use std::sync::Arc;
/// use ema_grant::revocation::{LedgerMirror, MemoryLedger, RevocationKind, RevocationScope};
/// use ema_jose::UnixTime;
/// use ema_server::vault::MirrorSubjectStatus;
/// use ema_vault::{Owner, SubjectStatus};
///
/// let ledger = MemoryLedger::new();
/// let mirror = Arc::new(LedgerMirror::new());
/// let t = UnixTime::from_secs(10_000);
/// let local = RevocationScope::local("https://as.example");
/// ledger.revoke_subject_now(&local, "u1", t, RevocationKind::SessionRevoked, t);
/// pollster::block_on(mirror.sync(&ledger, t)).unwrap();
/// let status = MirrorSubjectStatus::new(mirror, "https://as.example");
/// let owner = Owner::new("acme", "u1")?;
/// assert!(status.check(&owner, t).is_err());
/// assert!(status.check(&owner, t.plus(1)).is_ok());
/// # Ok::<(), ema_vault::KeyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MirrorSubjectStatus {
    mirror: Arc<LedgerMirror>,
    issuer: String,
}

impl MirrorSubjectStatus {
    /// Answers from `mirror` for the subjects of the authorization server `issuer`.
    pub fn new(mirror: Arc<LedgerMirror>, issuer: impl Into<String>) -> Self {
        Self {
            mirror,
            issuer: issuer.into(),
        }
    }
}

impl SubjectStatus for MirrorSubjectStatus {
    fn check(&self, owner: &Owner, stored_at: UnixTime) -> Result<(), String> {
        // No `jti`: a credential is no token of the authorization server.
        match self
            .mirror
            .revocation(&self.issuer, owner.subject(), stored_at, "")
        {
            Some(reason) => Err(format!("access revoked: {reason}")),
            None => Ok(()),
        }
    }
}

/// The vault owners of a local subject: (authorization server issuer, `sub`) → owners.
type OwnersOf = dyn Fn(&str, &str) -> Vec<Owner> + Send + Sync;

/// Deletes a subject's credentials and revokes them at their providers (the offboarding path,
/// [`CredentialVault::revoke_all`]) when the revocation mirror learns that the subject was
/// purged (RISC `account-purged`) or its credentials compromised (RISC
/// `credential-compromise`), per the default event policy (RV-10, RV-19). Subscribe it to the
/// mirror with [`LedgerMirror::subscribe`]; it runs the offboarding on the Tokio runtime it
/// was made in. Idempotent: an event it has acted on is not acted on again when a snapshot
/// reload repeats it, and offboarding a subject without credentials deletes and revokes
/// nothing.
pub struct PurgeOnRevocation {
    vault: Arc<dyn CredentialVault>,
    owners: Box<OwnersOf>,
    audit: Option<AuditVaultObserver>,
    runtime: Option<tokio::runtime::Handle>,
    done: Mutex<HashSet<(String, String, RevocationKind, u64)>>,
}

impl fmt::Debug for PurgeOnRevocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurgeOnRevocation")
            .field("audit", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

impl PurgeOnRevocation {
    /// Offboards from `vault` the owner (the authorization server's issuer, `sub`): the owner
    /// [`owner_of`](super::owner_of) gives a principal without a `tenant` claim. Call it from
    /// within a Tokio runtime.
    pub fn new(vault: Arc<dyn CredentialVault>) -> Self {
        Self {
            vault,
            owners: Box::new(|issuer, subject| Owner::new(issuer, subject).into_iter().collect()),
            audit: None,
            runtime: tokio::runtime::Handle::try_current().ok(),
            done: Mutex::new(HashSet::new()),
        }
    }

    /// Which vault owners a local subject has (for principals whose tokens carry a `tenant`
    /// claim, the owner's tenant is that claim).
    #[must_use]
    pub fn owners(
        mut self,
        owners: impl Fn(&str, &str) -> Vec<Owner> + Send + Sync + 'static,
    ) -> Self {
        self.owners = Box::new(owners);
        self
    }

    /// Appends `subject_offboarded` for each offboarding to this observer's trail.
    #[must_use]
    pub fn audit(mut self, observer: AuditVaultObserver) -> Self {
        self.audit = Some(observer);
        self
    }
}

impl MirrorListener for PurgeOnRevocation {
    fn changed(&self, _: &LedgerMirror, change: &LedgerChange) {
        let (issuer, subject, kind, at) = match change {
            LedgerChange::Disabled {
                scope: RevocationScope::Local { issuer },
                subject,
                kind: kind @ RevocationKind::AccountPurged,
            } => (issuer, subject, *kind, 0),
            LedgerChange::Watermark {
                scope: RevocationScope::Local { issuer },
                subject,
                at,
                kind: kind @ (RevocationKind::AccountPurged | RevocationKind::CredentialCompromise),
            } => (issuer, subject, *kind, *at),
            _ => return,
        };
        // A purge is one event whether it arrives as a watermark or as a disabled flag; a
        // compromise is one per watermark.
        let at = if kind == RevocationKind::AccountPurged {
            0
        } else {
            at
        };
        let fresh = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((issuer.clone(), subject.clone(), kind, at));
        if !fresh {
            return;
        }
        let Some(runtime) = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.clone())
        else {
            tracing::error!(%kind, "no Tokio runtime to offboard a revoked subject's credentials on");
            return;
        };
        for owner in (self.owners)(issuer, subject) {
            let vault = Arc::clone(&self.vault);
            let audit = self.audit.clone();
            runtime.spawn(async move {
                match vault.revoke_all(&owner).await {
                    Ok(report) => {
                        tracing::info!(%kind, providers = report.providers.len(), "revoked subject's credentials deleted and revoked");
                        if let Some(audit) = audit
                            && let Err(e) = audit.offboarded(&owner, &report)
                        {
                            tracing::error!(error = %e, "offboarding not recorded");
                        }
                    }
                    Err(e) => tracing::error!(%kind, error = %e, "offboarding a revoked subject failed"),
                }
            });
        }
    }
}
