//! [`Vault`]: the [`CredentialVault`] over a [`CredentialStore`], with refresh, single flight,
//! revocation and the audit seam.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ema_jose::{Clock, SystemClock, UnixTime};

use crate::BoxFuture;
use crate::credential::{Credential, CredentialInfo, CredentialStatus, TokenSet};
use crate::error::{ProviderError, VaultError};
use crate::key::{CredentialKey, Owner, ProviderId};
use crate::provider::{ProviderClient, RevokeOutcome, TokenTypeHint};
use crate::status::SubjectStatus;
use crate::store::{CredentialStore, StoredCredential};
use crate::vault::{CredentialVault, OffboardReport, StoreSource, VaultEvent, VaultObserver};

/// The default refresh skew: a token expiring within 60 seconds is refreshed before use.
pub const DEFAULT_REFRESH_SKEW_SECS: u64 = 60;

/// One key's refresh in flight: the lock serialises refreshes of the key, `attempts` counts
/// them, and the guarded value is the last attempt's failure (shared with the callers that
/// waited for it instead of asking the provider again).
#[derive(Default)]
struct Flight {
    attempts: AtomicU64,
    last_failure: tokio::sync::Mutex<Option<ProviderError>>,
}

/// The vault: a [`CredentialVault`] over any [`CredentialStore`].
///
/// - `get` hands out a fresh credential as it is; an OAuth token set expiring within the
///   refresh skew is refreshed through the provider's [`ProviderClient`] first, once per key
///   however many callers ask at the same time (single flight). A rotated refresh token is
///   written in the same store write as the new access token; a provider that sends none keeps
///   the old one. `invalid_grant` marks the record [`CredentialStatus::NeedsReconnect`]; an
///   unavailable provider leaves it untouched.
/// - `revoke` and `revoke_all` delete the rows first, then ask each provider to revoke (the
///   refresh token if there is one, else the access token) and report the outcome.
/// - Every hand-out, refresh attempt, store and revocation is reported to the
///   [`VaultObserver`] before the result is returned; if it fails, the operation fails with
///   [`VaultError::Audit`] and no credential is handed out. (A store or a deletion the
///   observer then refuses has happened all the same: the error says it was not audited.)
///
/// ```
/// use std::sync::Arc;
/// use ema_jose::{FixedClock, UnixTime};
/// use ema_vault::{Credential, CredentialKey, CredentialVault, MemoryStore, Secret,
///                 StoreSource, TokenSet, Vault};
///
/// let vault = Vault::builder(MemoryStore::new())
///     .clock(Arc::new(FixedClock(UnixTime::from_secs(1_000))))
///     .build();
/// let key = CredentialKey::new("acme", "alice", "notes")?;
/// let tokens = TokenSet::bearer(Secret::new("at-1".to_owned()))
///     .with_expires_at(UnixTime::from_secs(5_000));
/// pollster::block_on(async {
///     vault.store(&key, Credential::OAuth(tokens), StoreSource::Connect).await?;
///     let credential = vault.get(&key).await?;
///     assert_eq!(credential.secret().expose(), "at-1");
///     Ok::<(), ema_vault::VaultError>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Vault {
    store: Arc<dyn CredentialStore>,
    providers: HashMap<ProviderId, Arc<dyn ProviderClient>>,
    clock: Arc<dyn Clock>,
    refresh_skew: u64,
    observer: Option<Arc<dyn VaultObserver>>,
    status: Option<Arc<dyn SubjectStatus>>,
    flights: Mutex<HashMap<CredentialKey, Arc<Flight>>>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut providers: Vec<&str> = self.providers.keys().map(ProviderId::as_str).collect();
        providers.sort_unstable();
        f.debug_struct("Vault")
            .field("providers", &providers)
            .field("refresh_skew", &self.refresh_skew)
            .field("observer", &self.observer.is_some())
            .field("subject_status", &self.status.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Vault`]: [`Vault::builder`].
pub struct VaultBuilder {
    store: Arc<dyn CredentialStore>,
    providers: HashMap<ProviderId, Arc<dyn ProviderClient>>,
    clock: Arc<dyn Clock>,
    refresh_skew: u64,
    observer: Option<Arc<dyn VaultObserver>>,
    status: Option<Arc<dyn SubjectStatus>>,
}

impl fmt::Debug for VaultBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultBuilder")
            .field("providers", &self.providers.len())
            .field("refresh_skew", &self.refresh_skew)
            .finish_non_exhaustive()
    }
}

impl VaultBuilder {
    /// The client of `provider`'s OAuth endpoints (for refresh and revocation). A provider
    /// without one still stores credentials; they are handed out until they expire.
    #[must_use]
    pub fn provider(mut self, provider: ProviderId, client: Arc<dyn ProviderClient>) -> Self {
        self.providers.insert(provider, client);
        self
    }

    /// The clock (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Refreshes a token expiring within `secs` seconds (default
    /// [`DEFAULT_REFRESH_SKEW_SECS`]).
    #[must_use]
    pub fn refresh_skew(mut self, secs: u64) -> Self {
        self.refresh_skew = secs;
        self
    }

    /// The audit trail (default: none).
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn VaultObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Whether owners may still use their credentials (RV-19, default: always): checked
    /// before every hand-out and again before a refresh token is spent; a refusal is audited
    /// and answered [`VaultError::Revoked`]. Deleting a purged subject's credentials is
    /// [`CredentialVault::revoke_all`].
    #[must_use]
    pub fn subject_status(mut self, status: Arc<dyn SubjectStatus>) -> Self {
        self.status = Some(status);
        self
    }

    /// The vault.
    pub fn build(self) -> Vault {
        Vault {
            store: self.store,
            providers: self.providers,
            clock: self.clock,
            refresh_skew: self.refresh_skew,
            observer: self.observer,
            status: self.status,
            flights: Mutex::new(HashMap::new()),
        }
    }
}

/// What `get` decides about a stored record.
enum Plan {
    HandOut(Credential),
    Refresh { refresh_token: crate::Secret },
}

impl Vault {
    /// A builder over `store`.
    pub fn builder(store: impl CredentialStore + 'static) -> VaultBuilder {
        Self::builder_arc(Arc::new(store))
    }

    /// A builder over a shared store.
    pub fn builder_arc(store: Arc<dyn CredentialStore>) -> VaultBuilder {
        VaultBuilder {
            store,
            providers: HashMap::new(),
            clock: Arc::new(SystemClock),
            refresh_skew: DEFAULT_REFRESH_SKEW_SECS,
            observer: None,
            status: None,
        }
    }

    /// The store under the vault.
    pub fn credential_store(&self) -> &Arc<dyn CredentialStore> {
        &self.store
    }

    fn record(&self, event: &VaultEvent<'_>) -> Result<(), VaultError> {
        match &self.observer {
            Some(observer) => observer.record(event).map_err(VaultError::Audit),
            None => Ok(()),
        }
    }

    /// RV-19: refuses (audited) a credential of an owner whose access is revoked since
    /// `record` was written.
    fn check_status(
        &self,
        key: &CredentialKey,
        record: &StoredCredential,
    ) -> Result<(), VaultError> {
        let Some(status) = &self.status else {
            return Ok(());
        };
        let Err(reason) = status.check(key.owner(), record.updated_at) else {
            return Ok(());
        };
        self.record(&VaultEvent::Refused {
            key,
            reason: &reason,
        })?;
        Err(VaultError::Revoked {
            provider: key.provider().clone(),
            reason,
        })
    }

    fn hand_out(
        &self,
        key: &CredentialKey,
        credential: Credential,
    ) -> Result<Credential, VaultError> {
        self.record(&VaultEvent::Used {
            key,
            kind: credential.kind(),
        })?;
        Ok(credential)
    }

    /// Decides what to do with `record` at `now`.
    fn plan(
        &self,
        key: &CredentialKey,
        record: &StoredCredential,
        now: UnixTime,
    ) -> Result<Plan, VaultError> {
        let needs_reconnect = || VaultError::NeedsReconnect {
            provider: key.provider().clone(),
        };
        if record.status == CredentialStatus::NeedsReconnect {
            return Err(needs_reconnect());
        }
        let tokens = match &record.credential {
            Credential::OAuth(tokens) => tokens,
            other => return Ok(Plan::HandOut(other.clone())),
        };
        let Some(expires_at) = tokens.expires_at else {
            return Ok(Plan::HandOut(record.credential.clone()));
        };
        if expires_at > now.plus(self.refresh_skew) {
            return Ok(Plan::HandOut(record.credential.clone()));
        }
        let expired = expires_at <= now;
        match &tokens.refresh_token {
            Some(refresh_token) if self.providers.contains_key(key.provider()) => {
                Ok(Plan::Refresh {
                    refresh_token: refresh_token.clone(),
                })
            }
            Some(_) if expired => Err(VaultError::UnknownProvider {
                provider: key.provider().clone(),
            }),
            None if expired => Err(needs_reconnect()),
            // Near expiry but still valid, and nothing to refresh it with: hand it out.
            _ => Ok(Plan::HandOut(record.credential.clone())),
        }
    }

    fn flight(&self, key: &CredentialKey) -> Arc<Flight> {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(flights.entry(key.clone()).or_default())
    }

    fn release(&self, key: &CredentialKey, flight: Arc<Flight>) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        // Clones are only made under this lock: two references (the map's and ours) mean no
        // one else is waiting on this flight.
        if Arc::strong_count(&flight) <= 2 {
            flights.remove(key);
        }
    }

    async fn get_inner(&self, key: &CredentialKey) -> Result<Credential, VaultError> {
        let not_connected = || VaultError::NotConnected {
            provider: key.provider().clone(),
        };
        let record = self.store.get(key)?.ok_or_else(not_connected)?;
        self.check_status(key, &record)?;
        match self.plan(key, &record, self.clock.now())? {
            Plan::HandOut(credential) => return self.hand_out(key, credential),
            Plan::Refresh { .. } => {}
        }
        let flight = self.flight(key);
        let result = self.refresh_once(key, &flight).await;
        self.release(key, flight);
        let credential = result?;
        self.hand_out(key, credential)
    }

    /// Refreshes `key` under its flight lock, unless a caller before us already did.
    async fn refresh_once(
        &self,
        key: &CredentialKey,
        flight: &Flight,
    ) -> Result<Credential, VaultError> {
        let seen = flight.attempts.load(Ordering::Acquire);
        let mut last_failure = flight.last_failure.lock().await;
        if flight.attempts.load(Ordering::Acquire) != seen {
            // An attempt finished while we waited. If it failed, share its failure rather than
            // asking the provider again at once; if it succeeded, the store has the new tokens.
            if let Some(failure) = last_failure.as_ref() {
                return Err(VaultError::Refresh {
                    provider: key.provider().clone(),
                    source: failure.clone(),
                });
            }
        }
        let record = self
            .store
            .get(key)?
            .ok_or_else(|| VaultError::NotConnected {
                provider: key.provider().clone(),
            })?;
        // RV-19: the ledger is asked again before a refresh token is spent.
        self.check_status(key, &record)?;
        let refresh_token = match self.plan(key, &record, self.clock.now())? {
            Plan::HandOut(credential) => return Ok(credential),
            Plan::Refresh { refresh_token } => refresh_token,
        };
        let client =
            self.providers
                .get(key.provider())
                .ok_or_else(|| VaultError::UnknownProvider {
                    provider: key.provider().clone(),
                })?;
        let outcome = client.refresh(&refresh_token).await;
        flight.attempts.fetch_add(1, Ordering::AcqRel);
        *last_failure = outcome.as_ref().err().cloned();
        self.record(&VaultEvent::Refreshed {
            key,
            outcome: outcome.as_ref().map(|_| ()).map_err(ToString::to_string),
        })?;
        match outcome {
            // Revoked while the provider answered: the fresh tokens are not kept.
            Ok(_) if self.check_status(key, &record).is_err() => Err(VaultError::Revoked {
                provider: key.provider().clone(),
                reason: "access revoked during the refresh".into(),
            }),
            Ok(fresh) => self.write_refreshed(key, &record, fresh),
            Err(ProviderError::InvalidGrant { .. }) => {
                let marked = record.clone().with_status(CredentialStatus::NeedsReconnect);
                let mut marked = marked;
                marked.updated_at = self.clock.now();
                // A record replaced meanwhile (the user reconnected) is left alone.
                self.store.compare_and_swap(key, record.revision, &marked)?;
                Err(VaultError::NeedsReconnect {
                    provider: key.provider().clone(),
                })
            }
            Err(source) => Err(VaultError::Refresh {
                provider: key.provider().clone(),
                source,
            }),
        }
    }

    fn write_refreshed(
        &self,
        key: &CredentialKey,
        old: &StoredCredential,
        mut fresh: TokenSet,
    ) -> Result<Credential, VaultError> {
        if let Credential::OAuth(previous) = &old.credential {
            if fresh.refresh_token.is_none() {
                fresh.refresh_token.clone_from(&previous.refresh_token);
            }
            if fresh.scopes.is_empty() {
                fresh.scopes.clone_from(&previous.scopes);
            }
        }
        let credential = Credential::OAuth(fresh);
        let record = StoredCredential::new(credential.clone(), self.clock.now());
        if self
            .store
            .compare_and_swap(key, old.revision, &record)?
            .is_some()
        {
            return Ok(credential);
        }
        // The record changed while we refreshed (the user reconnected, or it was revoked).
        // A newer usable credential wins; otherwise ours is valid and is handed out unsaved.
        match self.store.get(key)? {
            Some(current)
                if current.status == CredentialStatus::Active
                    && matches!(
                        self.plan(key, &current, self.clock.now()),
                        Ok(Plan::HandOut(_))
                    ) =>
            {
                Ok(current.credential)
            }
            None => Err(VaultError::NotConnected {
                provider: key.provider().clone(),
            }),
            Some(_) => Ok(credential),
        }
    }

    /// Asks the provider to revoke what `deleted` held.
    async fn revoke_at_provider(
        &self,
        provider: &ProviderId,
        deleted: Result<StoredCredential, VaultError>,
    ) -> RevokeOutcome {
        let record = match deleted {
            Ok(record) => record,
            Err(error) => {
                return RevokeOutcome::Failed(format!(
                    "the deleted record could not be read, so it was not revoked at the provider: {error}"
                ));
            }
        };
        let Credential::OAuth(tokens) = &record.credential else {
            return RevokeOutcome::NotSupported;
        };
        let Some(client) = self.providers.get(provider) else {
            return RevokeOutcome::NotSupported;
        };
        let (token, hint) = match &tokens.refresh_token {
            Some(refresh_token) => (refresh_token, TokenTypeHint::RefreshToken),
            None => (&tokens.access_token, TokenTypeHint::AccessToken),
        };
        match client.revoke(token, hint).await {
            Ok(outcome) => outcome,
            Err(error) => RevokeOutcome::Failed(error.to_string()),
        }
    }
}

impl CredentialVault for Vault {
    fn get<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Credential, VaultError>> {
        Box::pin(self.get_inner(key))
    }

    fn store<'a>(
        &'a self,
        key: &'a CredentialKey,
        credential: Credential,
        source: StoreSource,
    ) -> BoxFuture<'a, Result<(), VaultError>> {
        Box::pin(async move {
            let kind = credential.kind();
            self.store
                .put(key, &StoredCredential::new(credential, self.clock.now()))?;
            self.record(&VaultEvent::Stored { key, kind, source })
        })
    }

    fn revoke<'a>(
        &'a self,
        key: &'a CredentialKey,
    ) -> BoxFuture<'a, Result<Option<RevokeOutcome>, VaultError>> {
        Box::pin(async move {
            let Some(deleted) = self.store.delete(key)? else {
                return Ok(None);
            };
            let outcome = self.revoke_at_provider(key.provider(), deleted).await;
            self.record(&VaultEvent::Revoked {
                key,
                outcome: &outcome,
            })?;
            Ok(Some(outcome))
        })
    }

    fn revoke_all<'a>(
        &'a self,
        owner: &'a Owner,
    ) -> BoxFuture<'a, Result<OffboardReport, VaultError>> {
        Box::pin(async move {
            let deleted = self.store.delete_owner(owner)?;
            let mut report = OffboardReport::default();
            let mut audit_failure = None;
            for (provider, record) in deleted {
                let outcome = self.revoke_at_provider(&provider, record).await;
                let key = owner.at(provider.clone());
                // Every provider is asked even if the audit trail fails on one of them: the
                // rows are gone, and leaving tokens live at the providers would be worse.
                if let Err(error) = self.record(&VaultEvent::Revoked {
                    key: &key,
                    outcome: &outcome,
                }) {
                    audit_failure.get_or_insert(error);
                }
                report.providers.push((provider, outcome));
            }
            match audit_failure {
                Some(error) => Err(error),
                None => Ok(report),
            }
        })
    }

    fn list<'a>(
        &'a self,
        owner: &'a Owner,
    ) -> BoxFuture<'a, Result<Vec<CredentialInfo>, VaultError>> {
        Box::pin(async move {
            Ok(self
                .store
                .list_owner(owner)?
                .iter()
                .map(|(provider, record)| record.info(provider))
                .collect())
        })
    }
}
