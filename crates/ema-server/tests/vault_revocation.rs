//! RV-19 with the revocation mirror: the vault refuses a revoked subject's credentials
//! (`MirrorSubjectStatus`), and a purge the mirror learns of deletes the subject's
//! credentials and revokes them at the provider, once (`PurgeOnRevocation`); another
//! subject's credentials are untouched (the positive control).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may unwrap"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ema_audit::{AuditError, AuditLog, AuditSink, Record};
use ema_grant::revocation::{
    LedgerMirror, MemoryLedger, MirrorListener, RevocationKind, RevocationScope,
};
use ema_jose::{Algorithm, FixedClock, SigningKey, UnixTime};
use ema_server::vault::{AuditVaultObserver, MirrorSubjectStatus, PurgeOnRevocation};
use ema_vault::{
    BoxFuture, Credential, CredentialKey, CredentialVault, MemoryStore, Owner, ProviderClient,
    ProviderError, ProviderId, RevokeOutcome, Secret, StoreSource, TokenSet, TokenTypeHint, Vault,
    VaultError,
};

const AS: &str = "https://auth.tasks.example";
const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

/// Records the tokens it is asked to revoke.
#[derive(Default)]
struct Provider {
    revoked: Mutex<Vec<String>>,
}

impl ProviderClient for Provider {
    fn refresh<'a>(&'a self, _: &'a Secret) -> BoxFuture<'a, Result<TokenSet, ProviderError>> {
        Box::pin(async { Err(ProviderError::Unavailable("not in this test".into())) })
    }

    fn revoke<'a>(
        &'a self,
        token: &'a Secret,
        _: TokenTypeHint,
    ) -> BoxFuture<'a, Result<RevokeOutcome, ProviderError>> {
        Box::pin(async move {
            self.revoked.lock().unwrap().push(token.expose().to_owned());
            Ok(RevokeOutcome::Revoked)
        })
    }
}

/// Keeps the trail's event kinds in memory.
#[derive(Clone, Default)]
struct Trail(Arc<Mutex<Vec<String>>>);

impl AuditSink for Trail {
    fn write(&mut self, record: &Record<'_>) -> Result<(), AuditError> {
        let v: serde_json::Value = serde_json::from_slice(record.line).unwrap();
        if let Some(kind) = v["event"]["kind"].as_str() {
            self.0.lock().unwrap().push(kind.to_owned());
        }
        Ok(())
    }
}

fn log(trail: &Trail) -> AuditLog {
    let key = SigningKey::generate(Algorithm::ES256, Some("audit-1".into())).unwrap();
    AuditLog::builder(Arc::new(key))
        .build(trail.clone())
        .unwrap()
}

struct World {
    ledger: MemoryLedger,
    mirror: Arc<LedgerMirror>,
    vault: Arc<Vault>,
    provider: Arc<Provider>,
    trail: Trail,
}

fn notes() -> ProviderId {
    ProviderId::new("notes").unwrap()
}

fn key(subject: &str) -> CredentialKey {
    Owner::new(AS, subject).unwrap().at(notes())
}

impl World {
    async fn new() -> Self {
        let ledger = MemoryLedger::new();
        let mirror = Arc::new(LedgerMirror::new());
        mirror.sync(&ledger, NOW).await.unwrap();
        let provider = Arc::new(Provider::default());
        let trail = Trail::default();
        let vault = Vault::builder(MemoryStore::new())
            .clock(Arc::new(FixedClock(NOW)))
            .provider(notes(), provider.clone())
            .observer(Arc::new(AuditVaultObserver::new(log(&trail))))
            .subject_status(Arc::new(MirrorSubjectStatus::new(mirror.clone(), AS)))
            .build();
        let w = Self {
            ledger,
            mirror,
            vault: Arc::new(vault),
            provider,
            trail,
        };
        for subject in ["alice", "bob"] {
            let tokens = TokenSet::bearer(Secret::new(format!("{subject}-at")))
                .with_refresh_token(Secret::new(format!("{subject}-rt")))
                .with_expires_at(NOW.plus(3600));
            w.vault
                .store(
                    &key(subject),
                    Credential::OAuth(tokens),
                    StoreSource::Connect,
                )
                .await
                .unwrap();
        }
        w
    }

    async fn apply(&self, kind: RevocationKind, disable: bool) {
        let local = RevocationScope::local(AS);
        self.ledger
            .revoke_subject_now(&local, "alice", NOW, kind, NOW);
        if disable {
            self.ledger.disable_now(&local, "alice", kind, NOW);
        }
        self.mirror.sync(&self.ledger, NOW).await.unwrap();
    }

    fn kinds(&self) -> Vec<String> {
        self.trail.0.lock().unwrap().clone()
    }
}

// RV-19: after a session revocation reaches the mirror, alice's credential is refused (an
// audited `credential_refused`); bob's is handed out.
#[tokio::test]
async fn rv19_mirror_revocation_refuses_the_subjects_credentials() {
    let w = World::new().await;
    assert_eq!(
        w.vault.get(&key("alice")).await.unwrap().secret().expose(),
        "alice-at"
    );
    w.apply(RevocationKind::SessionRevoked, false).await;
    let err = w.vault.get(&key("alice")).await.unwrap_err();
    assert!(matches!(err, VaultError::Revoked { .. }), "{err:?}");
    assert!(err.to_string().contains("access revoked"), "{err}");
    assert_eq!(w.kinds().last().unwrap(), "credential_refused");
    assert_eq!(
        w.vault.get(&key("bob")).await.unwrap().secret().expose(),
        "bob-at"
    );
    // Not purged: the row stays (a session revocation suspends, it does not delete).
    assert_eq!(w.vault.list(key("alice").owner()).await.unwrap().len(), 1);
    assert!(w.provider.revoked.lock().unwrap().is_empty());
}

// RV-19: RISC account-purged reaching the mirror deletes alice's credentials and revokes
// them at the provider (the offboarding path, audited), once, even when a snapshot reload
// repeats the event; bob's stay.
#[tokio::test]
async fn rv19_purge_deletes_and_revokes_once() {
    let w = World::new().await;
    let purge: Arc<dyn MirrorListener> = Arc::new(
        PurgeOnRevocation::new(w.vault.clone()).audit(AuditVaultObserver::new(log(&w.trail))),
    );
    w.mirror.subscribe(&purge);
    w.apply(RevocationKind::AccountPurged, true).await;
    let alice = key("alice").owner().clone();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !w.vault.list(&alice).await.unwrap().is_empty()
            || !w.kinds().iter().any(|k| k == "subject_offboarded")
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(*w.provider.revoked.lock().unwrap(), ["alice-rt"]);
    // A snapshot reload tells the purge again: nothing more happens.
    w.mirror.apply_snapshot(&w.ledger.snapshot_now(), NOW);
    w.mirror.sync(&w.ledger, NOW).await.unwrap();
    // On this single-threaded runtime a spawned offboarding would run, to its end (the store
    // and the provider answer at once), while the test yields.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let offboarded = |w: &World| {
        w.kinds()
            .iter()
            .filter(|k| *k == "subject_offboarded")
            .count()
    };
    assert_eq!(offboarded(&w), 1);
    // Bob's credential is untouched.
    assert_eq!(
        w.vault.get(&key("bob")).await.unwrap().secret().expose(),
        "bob-at"
    );
    assert_eq!(w.provider.revoked.lock().unwrap().len(), 1);
}
