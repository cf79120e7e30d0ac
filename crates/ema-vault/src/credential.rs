//! What the vault holds: [`Credential`]s, and what it tells about them without the secret
//! ([`CredentialInfo`]).

use ema_jose::UnixTime;

use crate::key::ProviderId;
use crate::secret::Secret;

/// An OAuth token set from a downstream provider's token endpoint.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TokenSet {
    /// The access token sent to the provider's API.
    pub access_token: Secret,
    /// The token type (`Bearer` unless the provider says otherwise).
    pub token_type: String,
    /// When the access token expires, if the provider said (`expires_in`).
    pub expires_at: Option<UnixTime>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<Secret>,
}

impl TokenSet {
    /// A bearer token set with no expiry, scopes or refresh token; set the rest with the
    /// `with_*` methods.
    pub fn bearer(access_token: Secret) -> Self {
        Self {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_at: None,
            scopes: Vec::new(),
            refresh_token: None,
        }
    }

    /// Sets the expiry.
    #[must_use]
    pub fn with_expires_at(mut self, at: UnixTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Sets the granted scopes.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the refresh token.
    #[must_use]
    pub fn with_refresh_token(mut self, refresh_token: Secret) -> Self {
        self.refresh_token = Some(refresh_token);
        self
    }
}

/// A secret an administrator provisions for a user (an API key, a database password).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StaticSecret {
    /// The secret.
    pub secret: Secret,
    /// A label shown in listings (never the secret), such as `"read-only DB role"`.
    pub label: Option<String>,
}

impl StaticSecret {
    /// A static secret with no label.
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            label: None,
        }
    }

    /// Sets the label.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// A credential held for one (tenant, subject, provider).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Credential {
    /// An OAuth token set, refreshed by the vault when near expiry.
    OAuth(TokenSet),
    /// An administrator-provisioned static secret.
    Static(StaticSecret),
}

impl Credential {
    /// The secret a tool sends to the provider: the access token, or the static secret.
    pub fn secret(&self) -> &Secret {
        match self {
            Self::OAuth(tokens) => &tokens.access_token,
            Self::Static(secret) => &secret.secret,
        }
    }

    /// Which kind of credential this is.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Self::OAuth(_) => CredentialKind::OAuth,
            Self::Static(_) => CredentialKind::Static,
        }
    }
}

/// The kind of a credential, for listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// An OAuth token set.
    OAuth,
    /// A static secret.
    Static,
}

/// Whether a stored credential can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialStatus {
    /// Usable (refreshed on demand when near expiry).
    Active,
    /// A refresh failed for good (the provider refused the refresh token): the user must
    /// connect again.
    NeedsReconnect,
}

/// What the vault says about a stored credential: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialInfo {
    /// The provider.
    pub provider: ProviderId,
    /// OAuth token set or static secret.
    pub kind: CredentialKind,
    /// The scopes granted (empty for static secrets).
    pub scopes: Vec<String>,
    /// When the access token expires, if known.
    pub expires_at: Option<UnixTime>,
    /// Whether it is usable or needs the user to reconnect.
    pub status: CredentialStatus,
    /// The label of a static secret.
    pub label: Option<String>,
    /// When the record was last written.
    pub updated_at: UnixTime,
}
