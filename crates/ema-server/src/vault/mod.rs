//! Downstream credentials (feature `vault`): the `ema-vault` crate wired into the MCP server.
//!
//! - [`HttpProviderClient`]: a provider's token endpoint (refresh, authorization-code
//!   exchange) and RFC 7009 revocation endpoint over HTTP, the vault's
//!   [`ProviderClient`](ema_vault::ProviderClient).
//! - [`Connector`]: the OAuth authorization-code + PKCE connect flow, started for a principal
//!   and MCP session, and its callback route storing the token set in the vault.
//! - [`ToolCredentials`]: which provider's credential each tool gets; with the `rmcp` feature,
//!   `Guarded::with_vault` fetches it for each authorized call, hands it to the tool as a
//!   [`ToolCredential`], and answers a call whose user has not connected with
//!   [`Connector::begin`]'s authorization URL: a URL-mode elicitation (`-32042`) to a client
//!   that declared `elicitation.url`, a tool error with the link to any other.
//! - [`AuditVaultObserver`]: every credential use, refresh, store and revocation, and each
//!   offboarding, as an `ema-audit` event.
//! - [`MirrorSubjectStatus`] and [`PurgeOnRevocation`]: the vault and the revocation mirror
//!   (RV-19): a revoked subject's credentials refused (audited), a purged or compromised
//!   subject's deleted and revoked at their providers.
//!
//! The agent never sees a credential: it travels from the provider to the vault and from the
//! vault to the tool, inside the MCP server.

mod connect;
mod observer;
mod provider;
mod revocation;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub use connect::{ConnectBeginError, ConnectProvider, Connector};
use ema_vault::{Credential, KeyError, Owner, ProviderId};
pub use observer::AuditVaultObserver;
pub use provider::{
    ClientAuth, DEFAULT_PROVIDER_TIMEOUT, HttpProviderClient, MAX_PROVIDER_RESPONSE,
    ProviderConfigError,
};
pub use revocation::{MirrorSubjectStatus, PurgeOnRevocation};

use crate::principal::Principal;

/// The vault owner of a verified principal: its `tenant` claim, or else the access token's
/// issuer, and its subject. Offboarding names the same pair.
pub fn owner_of(principal: &Principal) -> Result<Owner, KeyError> {
    Owner::new(
        principal.tenant().unwrap_or_else(|| principal.issuer()),
        principal.subject(),
    )
}

/// Which downstream provider's credential each tool is given, and the [`Connector`] that
/// starts a connection when the user has none. A tool not listed gets no credential.
///
/// ```
/// use std::sync::Arc;
/// use ema_server::vault::{ConnectProvider, Connector, HttpProviderClient, ToolCredentials};
/// use ema_vault::{ConnectStates, MemoryStore, ProviderId, Secret, Vault};
///
/// let notes = ProviderId::new("notes").unwrap();
/// let client = Arc::new(
///     HttpProviderClient::new("https://notes.example/token", "mcp", Secret::new("s".into()))
///         .unwrap(),
/// );
/// let vault = Arc::new(Vault::builder(MemoryStore::new()).provider(notes.clone(), client.clone()).build());
/// let connector = Connector::new(vault, ConnectStates::new(600, 10_000), "https://mcp.example")
///     .unwrap()
///     .with_provider(
///         ConnectProvider::new(notes.clone(), "https://notes.example/authorize", client).unwrap(),
///     );
/// let credentials = ToolCredentials::new(Arc::new(connector))
///     .tool("list_notes", notes.clone())
///     .tool("add_note", notes);
/// assert_eq!(credentials.provider_of("add_note").map(|p| p.as_str()), Some("notes"));
/// assert!(credentials.provider_of("whoami").is_none());
/// ```
#[derive(Clone)]
pub struct ToolCredentials {
    connector: Arc<Connector>,
    tools: HashMap<String, ProviderId>,
}

impl fmt::Debug for ToolCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolCredentials")
            .field("connector", &self.connector)
            .field("tools", &self.tools)
            .finish()
    }
}

impl ToolCredentials {
    /// No tool mapped yet; `connector` holds the vault and starts connections.
    pub fn new(connector: Arc<Connector>) -> Self {
        Self {
            connector,
            tools: HashMap::new(),
        }
    }

    /// `tool` is given `provider`'s credential.
    #[must_use]
    pub fn tool(mut self, tool: impl Into<String>, provider: ProviderId) -> Self {
        self.tools.insert(tool.into(), provider);
        self
    }

    /// The provider whose credential `tool` is given.
    pub fn provider_of(&self, tool: &str) -> Option<&ProviderId> {
        self.tools.get(tool)
    }

    /// The connector.
    pub fn connector(&self) -> &Arc<Connector> {
        &self.connector
    }
}

/// A tool asked for a credential it is not given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this tool may use the credential of provider `{given}` only, not `{asked}`")]
pub struct CredentialRefused {
    /// The provider asked for.
    pub asked: String,
    /// The provider the tool is configured with.
    pub given: String,
}

/// The credential the guard fetched for one authorized tool call: the tool's configured
/// provider's, for the calling principal. `Debug` never shows the secret.
#[derive(Clone, Debug)]
pub struct ToolCredential {
    provider: ProviderId,
    credential: Credential,
}

impl ToolCredential {
    /// The credential of `provider` (what the guard puts on the request).
    pub fn new(provider: ProviderId, credential: Credential) -> Self {
        Self {
            provider,
            credential,
        }
    }

    /// The provider this credential is for.
    pub fn provider(&self) -> &ProviderId {
        &self.provider
    }

    /// The credential for `provider`, which must be the tool's configured provider: a tool
    /// cannot obtain another provider's credential.
    pub fn for_provider(&self, provider: &str) -> Result<&Credential, CredentialRefused> {
        if self.provider.as_str() == provider {
            Ok(&self.credential)
        } else {
            Err(CredentialRefused {
                asked: provider.to_owned(),
                given: self.provider.as_str().to_owned(),
            })
        }
    }
}
