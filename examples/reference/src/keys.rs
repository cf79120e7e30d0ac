//! Signing keys, JWKS files and the fetch policy of the reference servers (verification keys per
//! issuer are `ema_jwks::IssuerKeys`).

use ema_jose::{Algorithm, JwkSet, SigningKey};
use ema_jwks::{FetchPolicy, HttpFetcher, IssuerKeysError};

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

/// A key source that could not be set up, as a configuration error (a file that cannot be read
/// keeps its path and I/O error).
pub fn issuer_keys_error(e: IssuerKeysError) -> ConfigError {
    match e {
        IssuerKeysError::Read { path, source, .. } => ConfigError::Read { path, source },
        other => ConfigError::Invalid(other.to_string()),
    }
}
