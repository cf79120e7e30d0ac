//! Signing keys and verification-key sources for the reference servers.

use std::sync::Arc;

use ema_client::{FetchPolicy, HttpFetcher, RemoteJwks};
use ema_jose::{
    Algorithm, Clock, JwkSet, KeyLookupError, KeySource, SigningKey, StaticKeySource, VerifyingKey,
};

use crate::config::{ConfigError, SigningKeyConfig};

/// Loads the configured PEM key, or generates one.
pub fn signing_key(cfg: &SigningKeyConfig) -> Result<SigningKey, ConfigError> {
    let alg = Algorithm::from_name(&cfg.alg)
        .ok_or_else(|| ConfigError::Invalid(format!("unknown signing algorithm `{}`", cfg.alg)))?;
    let kid = Some(cfg.kid.clone());
    match &cfg.pem_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            SigningKey::from_pkcs8_pem(alg, kid, &pem)
                .map_err(|e| ConfigError::Invalid(format!("`{}`: {e}", path.display())))
        }
        None => SigningKey::generate(alg, kid).map_err(|e| ConfigError::Invalid(e.to_string())),
    }
}

/// Reads a JWKS file.
pub fn jwks_file(path: &std::path::Path) -> Result<JwkSet, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    JwkSet::parse(&bytes).map_err(|e| ConfigError::Invalid(format!("`{}`: {e}", path.display())))
}

/// The fetch policy of the reference servers: `https` only, unless the configuration opts in to
/// loopback `http` for development.
pub fn fetcher(insecure_allow_loopback_http: bool) -> Result<HttpFetcher, ConfigError> {
    let policy = if insecure_allow_loopback_http {
        FetchPolicy::insecure_loopback_development()
    } else {
        FetchPolicy::new()
    };
    HttpFetcher::new(policy).map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// Keys from files for some issuers and from their JWKS URLs for the others.
#[derive(Debug, Clone)]
pub struct IssuerKeys {
    files: StaticKeySource,
    file_issuers: Vec<String>,
    remote: RemoteJwks,
}

impl IssuerKeys {
    /// An empty source fetching with `fetcher`.
    pub fn new(fetcher: HttpFetcher, clock: Arc<dyn Clock>) -> Self {
        Self {
            files: StaticKeySource::new(),
            file_issuers: Vec::new(),
            remote: RemoteJwks::new(fetcher, clock),
        }
    }

    /// Keys of `issuer` from a JWKS URL.
    pub fn with_url(mut self, issuer: &str, url: &str) -> Result<Self, ConfigError> {
        self.remote = self
            .remote
            .with_issuer(issuer, url)
            .map_err(|e| ConfigError::Invalid(format!("JWKS URL of `{issuer}`: {e}")))?;
        Ok(self)
    }

    /// Keys of `issuer` from a key set in hand.
    #[must_use]
    pub fn with_set(mut self, issuer: &str, set: JwkSet) -> Self {
        self.files.insert(issuer, set);
        self.file_issuers.push(issuer.to_owned());
        self
    }
}

impl KeySource for IssuerKeys {
    async fn resolve(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        if self.file_issuers.iter().any(|i| i == issuer) {
            self.files.resolve_now(issuer, kid, alg)
        } else {
            self.remote.resolve(issuer, kid, alg).await
        }
    }

    fn key_set_version(&self, issuer: &str) -> u64 {
        self.remote.key_set_version(issuer)
    }
}
