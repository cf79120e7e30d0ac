//! The config file: the client's credentials at the IdP and at the authorization server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ema_client::{ClientCredentials, Secret};
use ema_jose::{Algorithm, SigningKey};
use serde::Deserialize;

use crate::exit::Failure;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The IdP: its issuer and the client there (token exchange, CL-4).
    pub idp: IdpSection,
    /// The MCP server's authorization server and the client there (jwt-bearer, CL-6).
    pub authorization_server: ClientSection,
}

/// `[idp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IdpSection {
    /// The token endpoint; discovered from the issuer's metadata when absent.
    pub token_endpoint: Option<String>,
    /// The issuer and the client's credentials.
    #[serde(flatten)]
    pub client: ClientSection,
}

/// An issuer and the client's credentials there.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientSection {
    /// The server's issuer, exactly as its metadata names it.
    pub issuer: String,
    /// The client id registered there.
    pub client_id: String,
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    #[serde(default = "basic")]
    pub auth_method: String,
    /// The client secret (the two `client_secret_*` methods).
    pub secret: Option<String>,
    /// `private_key_jwt`: a PKCS#8 PEM file, relative to the config file.
    pub key_file: Option<PathBuf>,
    /// `private_key_jwt`: the key's algorithm (ES256, ES384, RS256, PS256, EdDSA, ...).
    pub key_alg: Option<String>,
    /// `private_key_jwt`: the key's `kid`, as registered at the server.
    pub key_id: Option<String>,
}

fn basic() -> String {
    "client_secret_basic".to_owned()
}

impl fmt::Debug for ClientSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSection")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("key_file", &self.key_file)
            .field("key_alg", &self.key_alg)
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl Config {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, Failure> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!(
                "cannot read the config file {}: {e} (see --help for its sections)",
                path.display()
            ))
        })?;
        Self::parse(&text)
            .map_err(|e| Failure::usage(format!("config file {}: {e}", path.display())))
    }

    /// Parses a config file's text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

impl ClientSection {
    /// The credentials this section describes; `base` resolves a relative `key_file`.
    pub fn credentials(&self, section: &str, base: &Path) -> Result<ClientCredentials, Failure> {
        let id = self.client_id.as_str();
        let secret = || {
            self.secret.clone().map(Secret::new).ok_or_else(|| {
                Failure::usage(format!(
                    "[{section}]: `{}` needs a `secret`",
                    self.auth_method
                ))
            })
        };
        match self.auth_method.as_str() {
            "client_secret_basic" => Ok(ClientCredentials::secret_basic(id, secret()?)),
            "client_secret_post" => Ok(ClientCredentials::secret_post(id, secret()?)),
            "private_key_jwt" => {
                let missing = |what: &str| {
                    Failure::usage(format!("[{section}]: `private_key_jwt` needs `{what}`"))
                };
                let file = self.key_file.as_ref().ok_or_else(|| missing("key_file"))?;
                let alg_name = self.key_alg.as_deref().ok_or_else(|| missing("key_alg"))?;
                let alg = Algorithm::from_name(alg_name).ok_or_else(|| {
                    Failure::usage(format!(
                        "[{section}]: `key_alg` `{alg_name}` is not an algorithm (ES256, ES384, \
                         RS256, PS256, EdDSA, ...)"
                    ))
                })?;
                let path = base.join(file);
                let pem = std::fs::read_to_string(&path).map_err(|e| {
                    Failure::usage(format!(
                        "[{section}]: cannot read `key_file` {}: {e}",
                        path.display()
                    ))
                })?;
                let key =
                    SigningKey::from_pkcs8_pem(alg, self.key_id.clone(), &pem).map_err(|e| {
                        Failure::usage(format!(
                            "[{section}]: `key_file` {} is not a PKCS#8 {alg_name} key: {e}",
                            path.display()
                        ))
                    })?;
                Ok(ClientCredentials::private_key_jwt(id, Arc::new(key)))
            }
            other => Err(Failure::usage(format!(
                "[{section}]: `auth_method` `{other}` is not one of client_secret_basic, \
                 client_secret_post, private_key_jwt"
            ))),
        }
    }
}
