//! The vault's errors.

use crate::key::ProviderId;

/// A tenant, subject or provider id that cannot be used as a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The id is empty.
    #[error("the {field} id is empty")]
    Empty {
        /// `tenant`, `subject` or `provider`.
        field: &'static str,
    },
    /// The id is longer than [`MAX_ID_LEN`](crate::MAX_ID_LEN).
    #[error("the {field} id is {len} bytes long; at most 256 are accepted")]
    TooLong {
        /// `tenant`, `subject` or `provider`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The id contains a control character.
    #[error("the {field} id contains a control character")]
    ControlCharacter {
        /// `tenant`, `subject` or `provider`.
        field: &'static str,
    },
}

/// A downstream provider's token or revocation endpoint failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider refused the grant for good (`invalid_grant`: the refresh token is expired
    /// or revoked): the user must connect again.
    #[error("the provider refused the grant ({description})")]
    InvalidGrant {
        /// The provider's `error_description`, or a summary.
        description: String,
    },
    /// The provider could not be reached, timed out, or answered 5xx; trying later may work.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered something that is not a valid OAuth response.
    #[error("the provider's answer is not valid: {0}")]
    Protocol(String),
}

/// A vault operation failed. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The owner has no credential at this provider: they must connect it first.
    #[error("no credential for provider `{provider}`: connect it first")]
    NotConnected {
        /// The provider.
        provider: ProviderId,
    },
    /// The credential's refresh failed for good: the user must connect again.
    #[error(
        "the credential for provider `{provider}` has expired and could not be refreshed: connect it again"
    )]
    NeedsReconnect {
        /// The provider.
        provider: ProviderId,
    },
    /// No [`ProviderClient`](crate::ProviderClient) is configured for the provider.
    #[error("provider `{provider}` is not configured")]
    UnknownProvider {
        /// The provider.
        provider: ProviderId,
    },
    /// A refresh failed for a reason that may pass (the provider was unavailable).
    #[error("refreshing the credential for provider `{provider}` failed: {source}")]
    Refresh {
        /// The provider.
        provider: ProviderId,
        /// What the provider client said.
        #[source]
        source: ProviderError,
    },
    /// A stored record could not be opened: wrong master key, a tampered or moved ciphertext,
    /// or an unknown key id.
    #[error("a stored credential could not be decrypted: {0}")]
    Decrypt(String),
    /// The store failed (I/O, a locked or corrupt database).
    #[error("the credential store failed: {0}")]
    Storage(String),
    /// The audit trail could not record the operation, so it was not done (fail closed).
    #[error("the operation could not be audited: {0}")]
    Audit(String),
    /// A bad id.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The owner's access was revoked (RV-19: the subject was disabled, purged or signed out
    /// everywhere since the credential was stored): nothing is handed out or refreshed.
    #[error("access revoked: the credential for provider `{provider}` cannot be used ({reason})")]
    Revoked {
        /// The provider.
        provider: ProviderId,
        /// Why, as the [`SubjectStatus`](crate::SubjectStatus) said.
        reason: String,
    },
}
