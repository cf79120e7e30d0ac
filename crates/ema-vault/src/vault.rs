//! The [`CredentialVault`] trait: what an MCP server's tools and its offboarding path use.

use crate::BoxFuture;
use crate::credential::{Credential, CredentialInfo, CredentialKind};
use crate::error::VaultError;
use crate::key::{CredentialKey, Owner, ProviderId};
use crate::provider::RevokeOutcome;

/// What offboarding a subject did, provider by provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OffboardReport {
    /// Each deleted credential's provider and what its revocation at the provider came to.
    pub providers: Vec<(ProviderId, RevokeOutcome)>,
}

/// A vault of downstream credentials per (tenant, subject, provider).
///
/// Object-safe (`Arc<dyn CredentialVault>`), with boxed futures: one allocation per call,
/// next to a decryption or a network round trip.
pub trait CredentialVault: Send + Sync {
    /// A usable credential: an OAuth token set near expiry is refreshed first (once, however
    /// many calls ask at the same time).
    fn get<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Credential, VaultError>>;

    /// Stores `credential`, replacing what `key` held.
    fn store<'a>(
        &'a self,
        key: &'a CredentialKey,
        credential: Credential,
        source: StoreSource,
    ) -> BoxFuture<'a, Result<(), VaultError>>;

    /// Deletes one credential and revokes it at its provider where the provider can.
    /// Revoking what is not there is `Ok(None)`.
    fn revoke<'a>(
        &'a self,
        key: &'a CredentialKey,
    ) -> BoxFuture<'a, Result<Option<RevokeOutcome>, VaultError>>;

    /// Offboarding: deletes every credential of `owner` and revokes each at its provider.
    fn revoke_all<'a>(
        &'a self,
        owner: &'a Owner,
    ) -> BoxFuture<'a, Result<OffboardReport, VaultError>>;

    /// What `owner` has connected: provider, kind, scopes, expiry, status; never a secret.
    fn list<'a>(
        &'a self,
        owner: &'a Owner,
    ) -> BoxFuture<'a, Result<Vec<CredentialInfo>, VaultError>>;
}

/// How a credential came into the vault (for the audit trail).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreSource {
    /// The user connected it through the OAuth connect flow.
    Connect,
    /// An administrator provisioned it.
    Admin,
}

/// Something the vault did, reported to a [`VaultObserver`] (the audit trail) before the
/// result is returned. No event carries a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VaultEvent<'a> {
    /// A credential was handed out by [`CredentialVault::get`].
    Used {
        /// Whose, at which provider.
        key: &'a CredentialKey,
        /// Its kind.
        kind: CredentialKind,
    },
    /// A refresh was attempted.
    Refreshed {
        /// Whose, at which provider.
        key: &'a CredentialKey,
        /// `Ok(())`, or why it failed (no secret in it).
        outcome: Result<(), String>,
    },
    /// A credential was stored.
    Stored {
        /// Whose, at which provider.
        key: &'a CredentialKey,
        /// Its kind.
        kind: CredentialKind,
        /// Connect flow or administrator.
        source: StoreSource,
    },
    /// A credential was deleted and revoked at its provider.
    Revoked {
        /// Whose, at which provider.
        key: &'a CredentialKey,
        /// What the provider's revocation came to.
        outcome: &'a RevokeOutcome,
    },
    /// A `get` or a refresh was refused because the owner's access is revoked (RV-19).
    Refused {
        /// Whose, at which provider.
        key: &'a CredentialKey,
        /// Why, as the [`SubjectStatus`](crate::SubjectStatus) said.
        reason: &'a str,
    },
}

/// Receives every [`VaultEvent`]. An error makes the vault operation fail with
/// [`VaultError::Audit`] (fail closed): a credential is not handed out unaudited.
pub trait VaultObserver: Send + Sync {
    /// Records `event`.
    fn record(&self, event: &VaultEvent<'_>) -> Result<(), String>;
}
