#![doc = include_str!("../README.md")]

#[cfg(feature = "sqlite")]
mod codec;
mod connect;
mod credential;
mod engine;
mod error;
mod key;
#[cfg(feature = "sqlite")]
mod master;
mod provider;
mod secret;
#[cfg(feature = "sqlite")]
mod sqlite;
mod status;
mod store;
mod vault;

use std::future::Future;
use std::pin::Pin;

pub use connect::{ConnectError, ConnectStart, ConnectStates, PendingConnect, pkce_challenge};
pub use credential::{
    Credential, CredentialInfo, CredentialKind, CredentialStatus, StaticSecret, TokenSet,
};
pub use engine::{DEFAULT_REFRESH_SKEW_SECS, Vault, VaultBuilder};
pub use error::{KeyError, ProviderError, VaultError};
pub use key::{CredentialKey, MAX_ID_LEN, Owner, ProviderId};
#[cfg(feature = "sqlite")]
pub use master::{KEY_LEN, MasterKey, MasterKeyError, MasterKeys};
pub use provider::{ProviderClient, RevokeOutcome, TokenTypeHint};
pub use secret::Secret;
#[cfg(feature = "sqlite")]
pub use sqlite::{DEFAULT_READERS, RotateReport, SCHEMA_VERSION, SqliteStore};
pub use status::SubjectStatus;
pub use store::{CredentialStore, DeletedRecord, MemoryStore, StoredCredential};
pub use vault::{CredentialVault, OffboardReport, StoreSource, VaultEvent, VaultObserver};

/// A boxed, sendable future: what the object-safe traits of this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
