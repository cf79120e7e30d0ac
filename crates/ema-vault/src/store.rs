//! The storage seam: [`CredentialStore`], the records it holds ([`StoredCredential`]) and the
//! in-memory backend ([`MemoryStore`]).
//!
//! Store methods are synchronous on purpose: a backend call is a hash-map lookup or a short
//! SQLite statement on a local file (tens of microseconds), cheaper than handing it to a
//! blocking pool. A backend that talks to a network service should not implement this trait.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use ema_jose::UnixTime;

use crate::credential::{Credential, CredentialInfo, CredentialStatus};
use crate::error::VaultError;
use crate::key::{CredentialKey, Owner, ProviderId};

/// One stored credential with its bookkeeping.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoredCredential {
    /// The credential.
    pub credential: Credential,
    /// Usable, or waiting for the user to reconnect.
    pub status: CredentialStatus,
    /// When the record was last written.
    pub updated_at: UnixTime,
    /// The store's revision of the record: changed by the store on every write, compared by
    /// [`CredentialStore::compare_and_swap`]. Ignored by [`CredentialStore::put`].
    pub revision: u64,
}

impl StoredCredential {
    /// An active record written at `updated_at` (revision 0 until a store assigns one).
    pub fn new(credential: Credential, updated_at: UnixTime) -> Self {
        Self {
            credential,
            status: CredentialStatus::Active,
            updated_at,
            revision: 0,
        }
    }

    /// Sets the status.
    #[must_use]
    pub fn with_status(mut self, status: CredentialStatus) -> Self {
        self.status = status;
        self
    }

    /// Sets the revision (for backends returning what they hold).
    #[must_use]
    pub fn with_revision(mut self, revision: u64) -> Self {
        self.revision = revision;
        self
    }

    /// Everything about the record but the secret.
    pub fn info(&self, provider: &ProviderId) -> CredentialInfo {
        let (scopes, expires_at, label) = match &self.credential {
            Credential::OAuth(tokens) => (tokens.scopes.clone(), tokens.expires_at, None),
            Credential::Static(secret) => (Vec::new(), None, secret.label.clone()),
        };
        CredentialInfo {
            provider: provider.clone(),
            kind: self.credential.kind(),
            scopes,
            expires_at,
            status: self.status,
            label,
            updated_at: self.updated_at,
        }
    }
}

/// A record deleted by [`CredentialStore::delete_owner`]: its provider and its content, or why
/// the content could not be read (the row is deleted all the same).
pub type DeletedRecord = (ProviderId, Result<StoredCredential, VaultError>);

/// A backend holding [`StoredCredential`]s per [`CredentialKey`] (encrypted or not: that is
/// the backend's business; callers see plaintext records).
///
/// Methods are synchronous on purpose: a call is a hash-map lookup or a short SQLite statement
/// on a local file (tens of microseconds), cheaper than a hop to a blocking pool. A backend
/// that talks to a network service should not implement this trait. Every method is atomic.
pub trait CredentialStore: Send + Sync {
    /// The record at `key`, if any.
    fn get(&self, key: &CredentialKey) -> Result<Option<StoredCredential>, VaultError>;

    /// Writes `record` at `key`, replacing what was there, and returns the new revision.
    fn put(&self, key: &CredentialKey, record: &StoredCredential) -> Result<u64, VaultError>;

    /// Replaces the record at `key` with `record` in one write, only if the stored revision is
    /// still `expected`. Returns the new revision, or `None` (nothing written) when the record
    /// changed or vanished meanwhile. The vault writes a refreshed token set (new access token
    /// and rotated refresh token together) through this.
    fn compare_and_swap(
        &self,
        key: &CredentialKey,
        expected: u64,
        record: &StoredCredential,
    ) -> Result<Option<u64>, VaultError>;

    /// Deletes the record at `key` and returns what it held (`None` if there was none). A row
    /// that cannot be read is deleted and reported as the error.
    fn delete(
        &self,
        key: &CredentialKey,
    ) -> Result<Option<Result<StoredCredential, VaultError>>, VaultError>;

    /// Deletes every record of `owner` in one write and returns them.
    fn delete_owner(&self, owner: &Owner) -> Result<Vec<DeletedRecord>, VaultError>;

    /// Every record of `owner`, by provider.
    fn list_owner(&self, owner: &Owner) -> Result<Vec<(ProviderId, StoredCredential)>, VaultError>;
}

/// A [`CredentialStore`] in memory: for tests, demos and single-process servers that accept
/// losing every credential on restart.
///
/// ```
/// use ema_jose::UnixTime;
/// use ema_vault::{Credential, CredentialKey, CredentialStore, MemoryStore, Secret, StaticSecret,
///                 StoredCredential};
///
/// let store = MemoryStore::new();
/// let key = CredentialKey::new("acme", "alice", "db")?;
/// let secret = Credential::Static(StaticSecret::new(Secret::new("pw".to_owned())));
/// let revision = store.put(&key, &StoredCredential::new(secret, UnixTime::from_secs(1)))?;
/// assert_eq!(store.get(&key)?.map(|r| r.revision), Some(revision));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    records: HashMap<CredentialKey, StoredCredential>,
    next_revision: u64,
}

impl MemoryInner {
    fn write(&mut self, key: &CredentialKey, record: &StoredCredential) -> u64 {
        self.next_revision = self.next_revision.saturating_add(1);
        let revision = self.next_revision;
        self.records
            .insert(key.clone(), record.clone().with_revision(revision));
        revision
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records the store holds.
    pub fn len(&self) -> usize {
        self.read().records.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemoryInner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemoryInner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.len())
            .finish_non_exhaustive()
    }
}

impl CredentialStore for MemoryStore {
    fn get(&self, key: &CredentialKey) -> Result<Option<StoredCredential>, VaultError> {
        Ok(self.read().records.get(key).cloned())
    }

    fn put(&self, key: &CredentialKey, record: &StoredCredential) -> Result<u64, VaultError> {
        Ok(self.write().write(key, record))
    }

    fn compare_and_swap(
        &self,
        key: &CredentialKey,
        expected: u64,
        record: &StoredCredential,
    ) -> Result<Option<u64>, VaultError> {
        let mut inner = self.write();
        match inner.records.get(key) {
            Some(current) if current.revision == expected => Ok(Some(inner.write(key, record))),
            _ => Ok(None),
        }
    }

    fn delete(
        &self,
        key: &CredentialKey,
    ) -> Result<Option<Result<StoredCredential, VaultError>>, VaultError> {
        Ok(self.write().records.remove(key).map(Ok))
    }

    fn delete_owner(&self, owner: &Owner) -> Result<Vec<DeletedRecord>, VaultError> {
        let mut inner = self.write();
        let keys: Vec<CredentialKey> = inner
            .records
            .keys()
            .filter(|key| key.owner() == owner)
            .cloned()
            .collect();
        let mut deleted: Vec<DeletedRecord> = keys
            .into_iter()
            .filter_map(|key| {
                let record = inner.records.remove(&key)?;
                Some((key.provider().clone(), Ok(record)))
            })
            .collect();
        deleted.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(deleted)
    }

    fn list_owner(&self, owner: &Owner) -> Result<Vec<(ProviderId, StoredCredential)>, VaultError> {
        let mut listed: Vec<(ProviderId, StoredCredential)> = self
            .read()
            .records
            .iter()
            .filter(|(key, _)| key.owner() == owner)
            .map(|(key, record)| (key.provider().clone(), record.clone()))
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listed)
    }
}
