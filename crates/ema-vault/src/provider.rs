//! The vault's seam to a downstream provider's OAuth endpoints: [`ProviderClient`].
//!
//! This crate opens no sockets; an adapter (such as `ema-server`'s HTTP provider client)
//! implements [`ProviderClient`] for each configured provider.

use crate::BoxFuture;
use crate::credential::TokenSet;
use crate::error::ProviderError;
use crate::secret::Secret;

/// Which token a revocation request names (RFC 7009 `token_type_hint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

impl TokenTypeHint {
    /// The RFC 7009 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// What revoking a credential at its provider came to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeOutcome {
    /// The provider confirmed the revocation (RFC 7009: HTTP 200).
    Revoked,
    /// The provider has no revocation endpoint, or the credential is a static secret: the
    /// vault deleted its copy and nothing more could be done.
    NotSupported,
    /// The provider could not be reached or refused; the vault's copy is deleted all the same.
    Failed(String),
}

/// One downstream provider's OAuth endpoints, as the vault needs them.
pub trait ProviderClient: Send + Sync {
    /// Trades `refresh_token` for a new token set (RFC 6749 section 6). A provider that
    /// rotates refresh tokens returns the new one in the set; one that does not leaves
    /// `refresh_token` empty and the vault keeps the old one.
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a Secret,
    ) -> BoxFuture<'a, Result<TokenSet, ProviderError>>;

    /// Revokes `token` at the provider (RFC 7009), or says the provider cannot.
    fn revoke<'a>(
        &'a self,
        token: &'a Secret,
        hint: TokenTypeHint,
    ) -> BoxFuture<'a, Result<RevokeOutcome, ProviderError>>;
}
