//! [`AuditVaultObserver`]: the vault's events appended to the server's audit trail.

use ema_audit::{
    AuditLog, CredentialRef, CredentialRefreshed, CredentialRefused, CredentialRevoked,
    CredentialStored, CredentialUsed, ProviderRevocation, RevocationOutcome, SubjectOffboarded,
};
use ema_vault::{
    CredentialKey, CredentialKind, OffboardReport, Owner, RevokeOutcome, StoreSource, VaultEvent,
    VaultObserver,
};

/// Appends every [`VaultEvent`] to an [`AuditLog`] as an `ema-audit` credential event
/// (`credential_used`, `credential_refreshed`, `credential_stored`, `credential_revoked`), and
/// offboarding reports as `subject_offboarded` ([`offboarded`](Self::offboarded)). No event
/// carries a secret. An append that fails makes the vault operation fail (fail closed); a
/// disabled log records nothing and refuses nothing.
///
/// ```
/// use ema_server::audit::AuditLog;
/// use ema_server::vault::AuditVaultObserver;
/// use ema_vault::{CredentialKey, CredentialKind, VaultEvent, VaultObserver};
///
/// let observer = AuditVaultObserver::new(AuditLog::disabled());
/// let key = CredentialKey::new("acme", "alice", "notes").unwrap();
/// observer
///     .record(&VaultEvent::Used { key: &key, kind: CredentialKind::OAuth })
///     .unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct AuditVaultObserver {
    log: AuditLog,
}

fn reference(key: &CredentialKey) -> CredentialRef {
    CredentialRef::new(key.tenant(), key.subject(), key.provider().as_str())
}

fn kind(kind: CredentialKind) -> ema_audit::CredentialKind {
    match kind {
        CredentialKind::Static => ema_audit::CredentialKind::Static,
        // `CredentialKind` may grow: anything else is a token set.
        _ => ema_audit::CredentialKind::Oauth,
    }
}

fn outcome(outcome: &RevokeOutcome) -> (RevocationOutcome, Option<String>) {
    match outcome {
        RevokeOutcome::Revoked => (RevocationOutcome::Revoked, None),
        RevokeOutcome::NotSupported => (RevocationOutcome::NotSupported, None),
        RevokeOutcome::Failed(why) => (RevocationOutcome::Failed, Some(why.clone())),
        // A future outcome is reported as a failure, never as a success.
        _ => (RevocationOutcome::Failed, None),
    }
}

impl AuditVaultObserver {
    /// Writes to `log`.
    pub fn new(log: AuditLog) -> Self {
        Self { log }
    }

    /// The log written to.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// Appends `subject_offboarded` for what [`revoke_all`] of `owner` did, provider by
    /// provider.
    ///
    /// [`revoke_all`]: ema_vault::CredentialVault::revoke_all
    pub fn offboarded(
        &self,
        owner: &Owner,
        report: &OffboardReport,
    ) -> Result<(), ema_audit::AuditError> {
        if !self.log.is_enabled() {
            return Ok(());
        }
        let providers = report
            .providers
            .iter()
            .map(|(provider, result)| {
                let (result, detail) = outcome(result);
                let line = ProviderRevocation::new(provider.as_str(), result);
                match detail {
                    Some(d) => line.with_detail(d),
                    None => line,
                }
            })
            .collect();
        self.log
            .append(SubjectOffboarded::new(
                owner.tenant(),
                owner.subject(),
                providers,
            ))
            .map(|_| ())
    }
}

impl VaultObserver for AuditVaultObserver {
    fn record(&self, event: &VaultEvent<'_>) -> Result<(), String> {
        if !self.log.is_enabled() {
            return Ok(());
        }
        let event: ema_audit::AuditEvent = match event {
            VaultEvent::Used { key, kind: k } => {
                CredentialUsed::new(reference(key), kind(*k)).into()
            }
            VaultEvent::Refreshed { key, outcome } => match outcome {
                Ok(()) => CredentialRefreshed::succeeded(reference(key)).into(),
                Err(why) => CredentialRefreshed::failed(reference(key), why.as_str()).into(),
            },
            VaultEvent::Stored {
                key,
                kind: k,
                source,
            } => {
                let source = match source {
                    StoreSource::Admin => ema_audit::CredentialSource::Admin,
                    _ => ema_audit::CredentialSource::Connect,
                };
                CredentialStored::new(reference(key), kind(*k), source).into()
            }
            VaultEvent::Revoked { key, outcome: o } => {
                let (result, detail) = outcome(o);
                let event = CredentialRevoked::new(reference(key), result);
                match detail {
                    Some(d) => event.with_detail(d).into(),
                    None => event.into(),
                }
            }
            VaultEvent::Refused { key, reason } => {
                CredentialRefused::new(reference(key), *reason).into()
            }
            // A future event kind is not silently dropped from the trail.
            other => {
                return Err(format!("no audit event for the vault event {other:?}"));
            }
        };
        self.log
            .append(event)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
