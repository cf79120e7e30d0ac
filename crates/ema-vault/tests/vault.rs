//! The vault's behaviour over the memory store: get, refresh with single flight, revocation,
//! listing and the audit seam.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ema_jose::{Clock, UnixTime};
use ema_vault::{
    BoxFuture, Credential, CredentialKey, CredentialStatus, CredentialStore, CredentialVault,
    DeletedRecord, MemoryStore, Owner, ProviderClient, ProviderError, ProviderId, RevokeOutcome,
    Secret, StaticSecret, StoreSource, StoredCredential, SubjectStatus, TokenSet, TokenTypeHint,
    Vault, VaultError, VaultEvent, VaultObserver,
};
use tokio::sync::{Notify, Semaphore};

const T0: u64 = 1_000_000;
const FAR: u64 = 9_000_000;

struct SettableClock(AtomicU64);

impl SettableClock {
    fn at(secs: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(secs)))
    }
    fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }
}

impl Clock for SettableClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// A provider that counts refreshes, answers from a queue (or with `at-N`), and can hold every
/// refresh at a gate.
#[derive(Default)]
struct FakeProvider {
    refreshes: AtomicUsize,
    refresh_tokens_seen: Mutex<Vec<String>>,
    answers: Mutex<VecDeque<Result<TokenSet, ProviderError>>>,
    gate: Option<Arc<Semaphore>>,
    progress: Option<Arc<Notify>>,
    revokes: Mutex<Vec<(String, TokenTypeHint)>>,
    revoke_answer: Mutex<Option<Result<RevokeOutcome, ProviderError>>>,
    /// At each revocation, how many rows `probe` holds for its owner.
    probe: Option<(Arc<MemoryStore>, Owner)>,
    rows_at_revoke: Mutex<Vec<usize>>,
}

impl FakeProvider {
    fn answer(&self, answer: Result<TokenSet, ProviderError>) {
        self.answers.lock().unwrap().push_back(answer);
    }
    fn count(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }
}

impl ProviderClient for FakeProvider {
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a Secret,
    ) -> BoxFuture<'a, Result<TokenSet, ProviderError>> {
        Box::pin(async move {
            let n = self.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
            self.refresh_tokens_seen
                .lock()
                .unwrap()
                .push(refresh_token.expose().to_owned());
            if let Some(progress) = &self.progress {
                progress.notify_one();
            }
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            let queued = self.answers.lock().unwrap().pop_front();
            queued.unwrap_or_else(|| {
                Ok(TokenSet::bearer(Secret::new(format!("at-{n}")))
                    .with_expires_at(UnixTime::from_secs(FAR)))
            })
        })
    }

    fn revoke<'a>(
        &'a self,
        token: &'a Secret,
        hint: TokenTypeHint,
    ) -> BoxFuture<'a, Result<RevokeOutcome, ProviderError>> {
        Box::pin(async move {
            if let Some((store, owner)) = &self.probe {
                let rows = store.list_owner(owner).unwrap().len();
                self.rows_at_revoke.lock().unwrap().push(rows);
            }
            self.revokes
                .lock()
                .unwrap()
                .push((token.expose().to_owned(), hint));
            self.revoke_answer
                .lock()
                .unwrap()
                .clone()
                .unwrap_or(Ok(RevokeOutcome::Revoked))
        })
    }
}

/// Records events as short strings; fails when told to.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    fail: AtomicBool,
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

impl VaultObserver for Recorder {
    fn record(&self, event: &VaultEvent<'_>) -> Result<(), String> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("audit log unwritable".to_owned());
        }
        let line = match event {
            VaultEvent::Used { key, kind } => format!("used {} {kind:?}", key.provider()),
            VaultEvent::Refreshed { key, outcome } => match outcome {
                Ok(()) => format!("refreshed {} ok", key.provider()),
                Err(e) => format!("refreshed {} failed: {e}", key.provider()),
            },
            VaultEvent::Stored { key, kind, source } => {
                format!("stored {} {kind:?} {source:?}", key.provider())
            }
            VaultEvent::Revoked { key, outcome } => {
                format!("revoked {} {outcome:?}", key.provider())
            }
            VaultEvent::Refused { key, reason } => {
                format!("refused {} {}: {reason}", key.subject(), key.provider())
            }
            other => format!("{other:?}"),
        };
        self.events.lock().unwrap().push(line);
        Ok(())
    }
}

/// A memory store that counts `get`s and signals each one.
struct CountingStore {
    inner: MemoryStore,
    gets: AtomicUsize,
    progress: Arc<Notify>,
}

impl CredentialStore for CountingStore {
    fn get(&self, key: &CredentialKey) -> Result<Option<StoredCredential>, VaultError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_one();
        self.inner.get(key)
    }
    fn put(&self, key: &CredentialKey, record: &StoredCredential) -> Result<u64, VaultError> {
        self.inner.put(key, record)
    }
    fn compare_and_swap(
        &self,
        key: &CredentialKey,
        expected: u64,
        record: &StoredCredential,
    ) -> Result<Option<u64>, VaultError> {
        self.inner.compare_and_swap(key, expected, record)
    }
    fn delete(
        &self,
        key: &CredentialKey,
    ) -> Result<Option<Result<StoredCredential, VaultError>>, VaultError> {
        self.inner.delete(key)
    }
    fn delete_owner(&self, owner: &Owner) -> Result<Vec<DeletedRecord>, VaultError> {
        self.inner.delete_owner(owner)
    }
    fn list_owner(&self, owner: &Owner) -> Result<Vec<(ProviderId, StoredCredential)>, VaultError> {
        self.inner.list_owner(owner)
    }
}

fn alice() -> Owner {
    Owner::new("acme", "alice").unwrap()
}

fn notes() -> ProviderId {
    ProviderId::new("notes").unwrap()
}

fn key() -> CredentialKey {
    alice().at(notes())
}

fn oauth(access: &str, expires_at: u64, refresh: Option<&str>) -> Credential {
    let mut tokens = TokenSet::bearer(Secret::new(access.to_owned()))
        .with_expires_at(UnixTime::from_secs(expires_at))
        .with_scopes(["notes:read"]);
    if let Some(refresh) = refresh {
        tokens = tokens.with_refresh_token(Secret::new(refresh.to_owned()));
    }
    Credential::OAuth(tokens)
}

fn refresh_token_of(credential: &Credential) -> Option<String> {
    match credential {
        Credential::OAuth(tokens) => tokens.refresh_token.as_ref().map(|s| s.expose().to_owned()),
        _ => None,
    }
}

struct Fixture {
    vault: Arc<Vault>,
    store: Arc<MemoryStore>,
    provider: Arc<FakeProvider>,
    clock: Arc<SettableClock>,
    audit: Arc<Recorder>,
}

fn fixture_with(provider: FakeProvider) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let provider = Arc::new(provider);
    let clock = SettableClock::at(T0);
    let audit = Arc::new(Recorder::default());
    let vault = Vault::builder_arc(store.clone())
        .provider(notes(), provider.clone())
        .clock(clock.clone())
        .observer(audit.clone())
        .build();
    Fixture {
        vault: Arc::new(vault),
        store,
        provider,
        clock,
        audit,
    }
}

fn fixture() -> Fixture {
    fixture_with(FakeProvider::default())
}

impl Fixture {
    async fn put(&self, credential: Credential) {
        self.vault
            .store(&key(), credential, StoreSource::Connect)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn get_absent_is_not_connected_and_present_is_handed_out() {
    let f = fixture();
    let err = f.vault.get(&key()).await.unwrap_err();
    assert!(matches!(err, VaultError::NotConnected { ref provider } if *provider == notes()));
    assert!(err.to_string().contains("connect it first"), "{err}");
    f.put(oauth("at-0", FAR, Some("rt-0"))).await;
    assert_eq!(f.vault.get(&key()).await.unwrap().secret().expose(), "at-0");
}

#[tokio::test]
async fn static_and_fresh_credentials_are_handed_out_as_they_are() {
    let f = fixture();
    let secret = StaticSecret::new(Secret::new("db-pw".to_owned())).with_label("ro role");
    f.vault
        .store(&key(), Credential::Static(secret), StoreSource::Admin)
        .await
        .unwrap();
    assert_eq!(
        f.vault.get(&key()).await.unwrap().secret().expose(),
        "db-pw"
    );
    f.put(oauth("at-0", T0 + 61, Some("rt-0"))).await;
    assert_eq!(f.vault.get(&key()).await.unwrap().secret().expose(), "at-0");
    assert_eq!(f.provider.count(), 0);
    assert_eq!(
        f.audit.take(),
        [
            "stored notes Static Admin",
            "used notes Static",
            "stored notes OAuth Connect",
            "used notes OAuth",
        ]
    );
}

#[tokio::test]
async fn near_expiry_refreshes_and_a_rotated_refresh_token_replaces_the_old() {
    let f = fixture();
    // Exactly at the skew's edge (60 s left): refreshed.
    f.put(oauth("at-0", T0 + 60, Some("rt-0"))).await;
    f.provider
        .answer(Ok(TokenSet::bearer(Secret::new("at-1".to_owned()))
            .with_expires_at(UnixTime::from_secs(T0 + 3_600))
            .with_refresh_token(Secret::new("rt-1".to_owned()))));
    let got = f.vault.get(&key()).await.unwrap();
    assert_eq!(got.secret().expose(), "at-1");
    let stored = f.store.get(&key()).unwrap().unwrap();
    assert_eq!(stored.credential.secret().expose(), "at-1");
    assert_eq!(
        refresh_token_of(&stored.credential).as_deref(),
        Some("rt-1")
    );
    // Scopes the provider did not repeat are kept.
    assert_eq!(stored.info(&notes()).scopes, ["notes:read"]);
    // The next refresh presents the rotated token.
    f.clock.set(T0 + 3_600);
    f.vault.get(&key()).await.unwrap();
    assert_eq!(
        *f.provider.refresh_tokens_seen.lock().unwrap(),
        ["rt-0", "rt-1"]
    );
    assert_eq!(
        f.audit.take(),
        [
            "stored notes OAuth Connect",
            "refreshed notes ok",
            "used notes OAuth",
            "refreshed notes ok",
            "used notes OAuth",
        ]
    );
}

#[tokio::test]
async fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
    let f = fixture();
    f.put(oauth("at-0", T0 + 10, Some("rt-0"))).await;
    let got = f.vault.get(&key()).await.unwrap();
    assert_eq!(got.secret().expose(), "at-1");
    assert_eq!(refresh_token_of(&got).as_deref(), Some("rt-0"));
    let stored = f.store.get(&key()).unwrap().unwrap();
    assert_eq!(
        refresh_token_of(&stored.credential).as_deref(),
        Some("rt-0")
    );
}

/// Ten concurrent gets of a token near expiry, the provider held until every task has read
/// the stale record; returns the results and how many refreshes reached the provider.
async fn ten_concurrent_gets(
    answer: Option<Result<TokenSet, ProviderError>>,
) -> (Vec<Result<Credential, VaultError>>, usize) {
    let progress = Arc::new(Notify::new());
    let gate = Arc::new(Semaphore::new(0));
    let provider = Arc::new(FakeProvider {
        gate: Some(gate.clone()),
        progress: Some(progress.clone()),
        ..FakeProvider::default()
    });
    if let Some(answer) = answer {
        provider.answer(answer);
    }
    let store = Arc::new(CountingStore {
        inner: MemoryStore::new(),
        gets: AtomicUsize::new(0),
        progress: progress.clone(),
    });
    let vault = Arc::new(
        Vault::builder_arc(store.clone())
            .provider(notes(), provider.clone())
            .clock(SettableClock::at(T0))
            .build(),
    );
    store
        .put(
            &key(),
            &StoredCredential::new(oauth("at-0", T0 + 5, Some("rt-0")), UnixTime::from_secs(T0)),
        )
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let vault = vault.clone();
            tokio::spawn(async move { vault.get(&key()).await })
        })
        .collect();
    // Hold the provider until every task has read the stale record: ten first reads plus the
    // leader's re-read under the flight lock. A vault without single flight reaches a second
    // refresh instead, and the callers' counts fail.
    tokio::time::timeout(Duration::from_secs(60), async {
        while store.gets.load(Ordering::SeqCst) < 11 && provider.count() < 2 {
            progress.notified().await;
        }
    })
    .await
    .expect("the tasks did not all reach the vault");
    gate.add_permits(10);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    (results, provider.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_gets_cause_one_refresh() {
    let (results, refreshes) = ten_concurrent_gets(None).await;
    for result in results {
        assert_eq!(result.unwrap().secret().expose(), "at-1");
    }
    assert_eq!(refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_gets_share_one_failed_refresh() {
    let unavailable = ProviderError::Unavailable("503".to_owned());
    let (results, refreshes) = ten_concurrent_gets(Some(Err(unavailable.clone()))).await;
    for result in results {
        assert!(
            matches!(&result, Err(VaultError::Refresh { source, .. }) if *source == unavailable),
            "{result:?}"
        );
    }
    assert_eq!(refreshes, 1);
}

#[tokio::test]
async fn refreshes_at_different_times_each_reach_the_provider() {
    // Positive control for single flight: it merges concurrent refreshes only.
    let f = fixture();
    f.put(oauth("at-0", T0 + 5, Some("rt-0"))).await;
    f.vault.get(&key()).await.unwrap();
    f.clock.set(FAR);
    assert_eq!(f.vault.get(&key()).await.unwrap().secret().expose(), "at-2");
    assert_eq!(f.provider.count(), 2);
}

#[tokio::test]
async fn invalid_grant_marks_the_record_needs_reconnect() {
    let f = fixture();
    f.put(oauth("at-0", T0 + 5, Some("rt-0"))).await;
    f.provider.answer(Err(ProviderError::InvalidGrant {
        description: "refresh token revoked".to_owned(),
    }));
    let err = f.vault.get(&key()).await.unwrap_err();
    assert!(matches!(err, VaultError::NeedsReconnect { .. }), "{err:?}");
    assert!(err.to_string().contains("connect it again"), "{err}");
    let stored = f.store.get(&key()).unwrap().unwrap();
    assert_eq!(stored.status, CredentialStatus::NeedsReconnect);
    assert_eq!(
        f.vault.list(&alice()).await.unwrap()[0].status,
        CredentialStatus::NeedsReconnect
    );
    // Marked: later gets do not ask the provider again.
    assert!(matches!(
        f.vault.get(&key()).await.unwrap_err(),
        VaultError::NeedsReconnect { .. }
    ));
    assert_eq!(f.provider.count(), 1);
    let events = f.audit.take();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[1].starts_with("refreshed notes failed: the provider refused"),
        "{events:?}"
    );
    // Reconnecting clears it.
    f.put(oauth("at-new", FAR, Some("rt-new"))).await;
    assert_eq!(
        f.vault.get(&key()).await.unwrap().secret().expose(),
        "at-new"
    );
}

#[tokio::test]
async fn an_unavailable_provider_leaves_the_record_untouched() {
    let f = fixture();
    f.put(oauth("at-0", T0 + 5, Some("rt-0"))).await;
    let before = f.store.get(&key()).unwrap().unwrap();
    f.provider.answer(Err(ProviderError::Unavailable(
        "connection refused".to_owned(),
    )));
    let err = f.vault.get(&key()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            VaultError::Refresh {
                source: ProviderError::Unavailable(_),
                ..
            }
        ),
        "{err:?}"
    );
    let after = f.store.get(&key()).unwrap().unwrap();
    assert_eq!(after.revision, before.revision);
    assert_eq!(after.status, CredentialStatus::Active);
    assert_eq!(after.credential.secret().expose(), "at-0");
    // Positive control: once the provider answers, the same record refreshes.
    assert_eq!(f.vault.get(&key()).await.unwrap().secret().expose(), "at-2");
}

#[tokio::test]
async fn expiry_without_a_refresh_token() {
    let f = fixture();
    // Near expiry but still valid: handed out.
    f.put(oauth("at-0", T0 + 5, None)).await;
    assert_eq!(f.vault.get(&key()).await.unwrap().secret().expose(), "at-0");
    // Expired: the user must reconnect.
    f.clock.set(T0 + 5);
    assert!(matches!(
        f.vault.get(&key()).await.unwrap_err(),
        VaultError::NeedsReconnect { .. }
    ));
    assert_eq!(f.provider.count(), 0);
}

#[tokio::test]
async fn expired_token_of_an_unconfigured_provider_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let vault = Vault::builder_arc(store.clone())
        .clock(SettableClock::at(T0))
        .build();
    let k = key();
    vault
        .store(
            &k,
            oauth("at-0", T0 + 1, Some("rt-0")),
            StoreSource::Connect,
        )
        .await
        .unwrap();
    assert_eq!(vault.get(&k).await.unwrap().secret().expose(), "at-0");
    vault
        .store(&k, oauth("at-0", T0, Some("rt-0")), StoreSource::Connect)
        .await
        .unwrap();
    assert!(matches!(
        vault.get(&k).await.unwrap_err(),
        VaultError::UnknownProvider { .. }
    ));
}

#[tokio::test]
async fn an_observer_failure_fails_closed() {
    let f = fixture();
    f.put(oauth("at-0", FAR, Some("rt-0"))).await;
    assert!(f.vault.get(&key()).await.is_ok());
    f.audit.fail.store(true, Ordering::SeqCst);
    let err = f.vault.get(&key()).await.unwrap_err();
    assert!(
        matches!(err, VaultError::Audit(ref m) if m == "audit log unwritable"),
        "{err:?}"
    );
    // Refresh attempts are audited too: the refreshed credential is not handed out.
    f.clock.set(FAR);
    assert!(matches!(
        f.vault.get(&key()).await.unwrap_err(),
        VaultError::Audit(_)
    ));
    assert!(matches!(
        f.vault
            .store(&key(), oauth("x", FAR, None), StoreSource::Admin)
            .await
            .unwrap_err(),
        VaultError::Audit(_)
    ));
}

fn probing_fixture() -> Fixture {
    // The probe store is the vault's store: built in two steps.
    let store = Arc::new(MemoryStore::new());
    let provider = Arc::new(FakeProvider {
        probe: Some((store.clone(), alice())),
        ..FakeProvider::default()
    });
    let clock = SettableClock::at(T0);
    let audit = Arc::new(Recorder::default());
    let vault = Vault::builder_arc(store.clone())
        .provider(notes(), provider.clone())
        .clock(clock.clone())
        .observer(audit.clone())
        .build();
    Fixture {
        vault: Arc::new(vault),
        store,
        provider,
        clock,
        audit,
    }
}

#[tokio::test]
async fn revoke_deletes_first_then_revokes_the_refresh_token() {
    let f = probing_fixture();
    assert_eq!(f.vault.revoke(&key()).await.unwrap(), None);
    f.put(oauth("at-0", FAR, Some("rt-0"))).await;
    assert_eq!(
        f.vault.revoke(&key()).await.unwrap(),
        Some(RevokeOutcome::Revoked)
    );
    assert!(f.store.get(&key()).unwrap().is_none());
    assert_eq!(*f.provider.rows_at_revoke.lock().unwrap(), [0]);
    assert_eq!(
        *f.provider.revokes.lock().unwrap(),
        [("rt-0".to_owned(), TokenTypeHint::RefreshToken)]
    );
    // Without a refresh token, the access token is revoked.
    f.put(oauth("at-9", FAR, None)).await;
    f.vault.revoke(&key()).await.unwrap();
    assert_eq!(
        f.provider.revokes.lock().unwrap()[1],
        ("at-9".to_owned(), TokenTypeHint::AccessToken)
    );
    assert!(matches!(
        f.vault.get(&key()).await.unwrap_err(),
        VaultError::NotConnected { .. }
    ));
    let events = f.audit.take();
    assert!(
        events.contains(&"revoked notes Revoked".to_owned()),
        "{events:?}"
    );
}

#[tokio::test]
async fn revoke_outcomes_not_supported_and_failed() {
    let f = fixture();
    // A static secret: nothing to revoke at the provider.
    f.vault
        .store(
            &key(),
            Credential::Static(StaticSecret::new(Secret::new("pw".to_owned()))),
            StoreSource::Admin,
        )
        .await
        .unwrap();
    assert_eq!(
        f.vault.revoke(&key()).await.unwrap(),
        Some(RevokeOutcome::NotSupported)
    );
    // A provider failure is an outcome, and the row is gone all the same.
    *f.provider.revoke_answer.lock().unwrap() =
        Some(Err(ProviderError::Unavailable("503".to_owned())));
    f.put(oauth("at-0", FAR, Some("rt-0"))).await;
    let outcome = f.vault.revoke(&key()).await.unwrap().unwrap();
    assert!(
        matches!(&outcome, RevokeOutcome::Failed(m) if m.contains("503")),
        "{outcome:?}"
    );
    assert!(f.store.get(&key()).unwrap().is_none());
    // No provider configured: not supported.
    let other = alice().at(ProviderId::new("github").unwrap());
    f.vault
        .store(
            &other,
            oauth("gh", FAR, Some("gh-rt")),
            StoreSource::Connect,
        )
        .await
        .unwrap();
    assert_eq!(
        f.vault.revoke(&other).await.unwrap(),
        Some(RevokeOutcome::NotSupported)
    );
    assert!(f.store.get(&other).unwrap().is_none());
}

#[tokio::test]
async fn revoke_all_removes_everything_of_the_subject_only() {
    let f = probing_fixture();
    let github = ProviderId::new("github").unwrap();
    let bob = Owner::new("acme", "bob").unwrap();
    f.put(oauth("at-0", FAR, Some("rt-0"))).await;
    for (owner, provider) in [(alice(), github.clone()), (bob.clone(), notes())] {
        f.vault
            .store(
                &owner.at(provider),
                Credential::Static(StaticSecret::new(Secret::new("s".to_owned()))),
                StoreSource::Admin,
            )
            .await
            .unwrap();
    }
    assert_eq!(f.vault.list(&alice()).await.unwrap().len(), 2);
    let report = f.vault.revoke_all(&alice()).await.unwrap();
    assert_eq!(
        report.providers,
        [
            (github, RevokeOutcome::NotSupported),
            (notes(), RevokeOutcome::Revoked)
        ]
    );
    assert!(f.vault.list(&alice()).await.unwrap().is_empty());
    assert_eq!(*f.provider.rows_at_revoke.lock().unwrap(), [0]);
    // Bob's credential is untouched.
    assert_eq!(f.vault.list(&bob).await.unwrap().len(), 1);
    assert_eq!(
        f.vault
            .get(&bob.at(notes()))
            .await
            .unwrap()
            .secret()
            .expose(),
        "s"
    );
}

#[tokio::test]
async fn list_tells_everything_but_the_secret() {
    let f = fixture();
    f.put(oauth("at-secret-0", FAR, Some("rt-secret-0"))).await;
    f.vault
        .store(
            &alice().at(ProviderId::new("db").unwrap()),
            Credential::Static(
                StaticSecret::new(Secret::new("pw-secret".to_owned())).with_label("ro"),
            ),
            StoreSource::Admin,
        )
        .await
        .unwrap();
    let listed = f.vault.list(&alice()).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].provider.as_str(), "db");
    assert_eq!(listed[0].label.as_deref(), Some("ro"));
    assert_eq!(listed[1].scopes, ["notes:read"]);
    assert_eq!(listed[1].expires_at, Some(UnixTime::from_secs(FAR)));
    assert_eq!(listed[1].updated_at, UnixTime::from_secs(T0));
    let printed = format!("{listed:?} {:?}", f.store);
    assert!(!printed.contains("secret"), "{printed}");
}

/// The ledger as the vault sees it (RV-19): alice revoked at `revoked_at` (0: never), answered
/// from the `refuse_from`-th check on (counting from 1).
struct Ledger {
    revoked_at: u64,
    refuse_from: usize,
    checks: AtomicUsize,
}

impl Ledger {
    fn revoked_at(revoked_at: u64) -> Arc<Self> {
        Self::revoked_from_check(revoked_at, 1)
    }
    fn revoked_from_check(revoked_at: u64, refuse_from: usize) -> Arc<Self> {
        Arc::new(Self {
            revoked_at,
            refuse_from,
            checks: AtomicUsize::new(0),
        })
    }
}

impl SubjectStatus for Ledger {
    fn check(&self, owner: &Owner, stored_at: UnixTime) -> Result<(), String> {
        let n = self.checks.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.refuse_from
            && owner.subject() == "alice"
            && self.revoked_at != 0
            && stored_at.as_secs() <= self.revoked_at
        {
            return Err(format!("subject revoked at {}", self.revoked_at));
        }
        Ok(())
    }
}

fn fixture_with_status(status: Arc<Ledger>) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let provider = Arc::new(FakeProvider::default());
    let clock = SettableClock::at(T0);
    let audit = Arc::new(Recorder::default());
    let vault = Vault::builder_arc(store.clone())
        .provider(notes(), provider.clone())
        .clock(clock.clone())
        .observer(audit.clone())
        .subject_status(status)
        .build();
    Fixture {
        vault: Arc::new(vault),
        store,
        provider,
        clock,
        audit,
    }
}

// RV-19: a revoked subject's `get` is refused with an audit event and nothing handed out;
// controls: another subject's credential, and one alice connects again after the revocation
// (a fresh, post-revocation login), are handed out.
#[tokio::test]
async fn rv19_get_of_a_revoked_subject_is_refused_and_audited() {
    let f = fixture_with_status(Ledger::revoked_at(T0));
    f.put(oauth("at-0", FAR, Some("rt-0"))).await;
    let bob = Owner::new("acme", "bob").unwrap().at(notes());
    f.vault
        .store(&bob, oauth("bob-at", FAR, None), StoreSource::Connect)
        .await
        .unwrap();
    f.audit.take();
    let err = f.vault.get(&key()).await.unwrap_err();
    assert!(
        matches!(&err, VaultError::Revoked { provider, reason } if *provider == notes() && reason.contains("revoked at")),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("access revoked"), "{err}");
    assert_eq!(
        f.audit.take(),
        [format!("refused alice notes: subject revoked at {T0}")]
    );
    assert_eq!(f.vault.get(&bob).await.unwrap().secret().expose(), "bob-at");
    // Alice signs in again after the revocation and reconnects: usable.
    f.clock.set(T0 + 1);
    f.put(oauth("at-new", FAR, Some("rt-new"))).await;
    assert_eq!(
        f.vault.get(&key()).await.unwrap().secret().expose(),
        "at-new"
    );
    assert_eq!(f.provider.count(), 0);
}

// RV-19: the refresh re-checks the subject before spending the refresh token: revoked between
// the hand-out check and the refresh, the provider is never asked. Control: the same
// credential with a subject still active is refreshed once.
#[tokio::test]
async fn rv19_refresh_rechecks_the_subject_before_spending_the_refresh_token() {
    let f = fixture_with_status(Ledger::revoked_from_check(T0, 2));
    f.put(oauth("at-0", T0 + 5, Some("rt-0"))).await;
    f.audit.take();
    let err = f.vault.get(&key()).await.unwrap_err();
    assert!(matches!(err, VaultError::Revoked { .. }), "{err:?}");
    assert_eq!(f.provider.count(), 0);
    assert_eq!(f.audit.take().len(), 1);
    let control = fixture_with_status(Ledger::revoked_at(0));
    control.put(oauth("at-0", T0 + 5, Some("rt-0"))).await;
    assert_eq!(
        control.vault.get(&key()).await.unwrap().secret().expose(),
        "at-1"
    );
    assert_eq!(control.provider.count(), 1);
}

// RV-19: revoked while the provider answers a refresh: the fresh tokens are not kept (the
// stored record is the old one) and nothing is handed out.
#[tokio::test]
async fn rv19_revoked_during_the_refresh_keeps_nothing() {
    let f = fixture_with_status(Ledger::revoked_from_check(T0, 3));
    f.put(oauth("at-0", T0 + 5, Some("rt-0"))).await;
    let err = f.vault.get(&key()).await.unwrap_err();
    assert!(matches!(err, VaultError::Revoked { .. }), "{err:?}");
    assert_eq!(f.provider.count(), 1);
    let stored = f.store.get(&key()).unwrap().unwrap();
    assert_eq!(stored.credential.secret().expose(), "at-0");
}

// RV-19 purge: offboarding is idempotent: the second run deletes and revokes nothing.
#[tokio::test]
async fn rv19_purge_is_idempotent() {
    let f = fixture_with_status(Ledger::revoked_at(T0));
    f.put(oauth("at-0", FAR, Some("rt-0"))).await;
    let first = f.vault.revoke_all(&alice()).await.unwrap();
    assert_eq!(first.providers, [(notes(), RevokeOutcome::Revoked)]);
    let second = f.vault.revoke_all(&alice()).await.unwrap();
    assert!(second.providers.is_empty());
    assert_eq!(f.provider.revokes.lock().unwrap().len(), 1);
}
