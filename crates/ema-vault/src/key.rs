//! Who and what a credential belongs to: [`CredentialKey`] and [`ProviderId`].

use std::fmt;

use crate::error::KeyError;

/// The longest tenant, subject or provider id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

fn check(field: &'static str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError::Empty { field });
    }
    if value.len() > MAX_ID_LEN {
        return Err(KeyError::TooLong {
            field,
            len: value.len(),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(KeyError::ControlCharacter { field });
    }
    Ok(())
}

/// A downstream provider's id as configured on the MCP server (`github`, `notes`, ...).
///
/// Non-empty, at most [`MAX_ID_LEN`] bytes, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(String);

impl ProviderId {
    /// Checks and wraps a provider id.
    ///
    /// ```
    /// use ema_vault::ProviderId;
    ///
    /// assert_eq!(ProviderId::new("github").unwrap().as_str(), "github");
    /// assert!(ProviderId::new("").is_err());
    /// ```
    pub fn new(id: impl Into<String>) -> Result<Self, KeyError> {
        let id = id.into();
        check("provider", &id)?;
        Ok(Self(id))
    }

    /// The id as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The owner of a set of credentials: a tenant and the principal's subject within it (the
/// MCP server's local subject, as in the access token's `sub`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    tenant: String,
    subject: String,
}

impl Owner {
    /// Checks and pairs a tenant and a subject (each non-empty, at most [`MAX_ID_LEN`] bytes,
    /// no control characters).
    pub fn new(tenant: impl Into<String>, subject: impl Into<String>) -> Result<Self, KeyError> {
        let (tenant, subject) = (tenant.into(), subject.into());
        check("tenant", &tenant)?;
        check("subject", &subject)?;
        Ok(Self { tenant, subject })
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The subject within the tenant.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// This owner's credential at `provider`.
    pub fn at(&self, provider: ProviderId) -> CredentialKey {
        CredentialKey {
            owner: self.clone(),
            provider,
        }
    }
}

/// One credential's address: (tenant, subject, provider).
///
/// ```
/// use ema_vault::{Owner, ProviderId};
///
/// let owner = Owner::new("acme", "alice@acme.example").unwrap();
/// let key = owner.at(ProviderId::new("notes").unwrap());
/// assert_eq!((key.tenant(), key.subject(), key.provider().as_str()),
///            ("acme", "alice@acme.example", "notes"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialKey {
    owner: Owner,
    provider: ProviderId,
}

impl CredentialKey {
    /// Checks and builds a key.
    pub fn new(
        tenant: impl Into<String>,
        subject: impl Into<String>,
        provider: impl Into<String>,
    ) -> Result<Self, KeyError> {
        Ok(Owner::new(tenant, subject)?.at(ProviderId::new(provider)?))
    }

    /// The tenant and subject.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        self.owner.tenant()
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        self.owner.subject()
    }

    /// The provider.
    pub fn provider(&self) -> &ProviderId {
        &self.provider
    }
}
