#![doc = include_str!("../README.md")]

mod connect;
mod credential;
mod engine;
mod error;
mod key;
mod provider;
mod secret;
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
pub use provider::{ProviderClient, RevokeOutcome, TokenTypeHint};
pub use secret::Secret;
pub use store::{CredentialStore, DeletedRecord, MemoryStore, StoredCredential};
pub use vault::{CredentialVault, OffboardReport, StoreSource, VaultEvent, VaultObserver};

/// A boxed, sendable future: what the object-safe traits of this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
