#![doc = include_str!("../README.md")]

mod credential;
mod error;
mod key;
mod provider;
mod secret;
mod vault;

use std::future::Future;
use std::pin::Pin;

pub use credential::{
    Credential, CredentialInfo, CredentialKind, CredentialStatus, StaticSecret, TokenSet,
};
pub use error::{KeyError, ProviderError, VaultError};
pub use key::{CredentialKey, MAX_ID_LEN, Owner, ProviderId};
pub use provider::{ProviderClient, RevokeOutcome, TokenTypeHint};
pub use secret::Secret;
pub use vault::{CredentialVault, OffboardReport, StoreSource, VaultEvent, VaultObserver};

/// A boxed, sendable future: what the object-safe traits of this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
