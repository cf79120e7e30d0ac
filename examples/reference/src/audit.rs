//! The reference servers' audit trails (`[audit]` in each server's TOML): a hash-chained JSON
//! lines file with checkpoints signed by the server's key, and the JWKS that verifies them
//! beside it, `<file>.jwks.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ema_jose::{Algorithm, JwkSet, SigningKey};
use ema_server::audit::{AuditConfig, AuditLog, JsonLinesFile};

use crate::config::{AuditFileConfig, ConfigError};
use crate::keys::jwks_file;

/// Where the checkpoint keys of the trail at `file` are published: `<file>.jwks.json`.
pub fn jwks_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".jwks.json");
    PathBuf::from(name)
}

/// A checkpoint key for a server without a signing key of its own (the MCP server): ES256,
/// generated at each start, with a fresh random `kid`.
pub fn ephemeral_key() -> Result<Arc<SigningKey>, ConfigError> {
    let invalid = |e: ema_jose::SignError| ConfigError::Invalid(format!("audit key: {e}"));
    let kid = format!("audit-{}", ema_jose::random_id().map_err(invalid)?);
    SigningKey::generate(Algorithm::ES256, Some(kid))
        .map(Arc::new)
        .map_err(invalid)
}

/// As [`open`], with an [`ephemeral_key`] generated only when `cfg` is set: for a server
/// without a signing key of its own (the MCP server).
pub fn open_with_new_key(cfg: Option<&AuditFileConfig>) -> Result<AuditLog, ConfigError> {
    match cfg {
        Some(_) => open(cfg, ephemeral_key()?),
        None => Ok(AuditLog::disabled()),
    }
}

/// The trail `cfg` configures, its checkpoints signed by `key`; [`AuditLog::disabled`] without
/// `[audit]`.
///
/// The public half of `key` is added to `<file>.jwks.json` (created if absent; keys of earlier
/// runs are kept, so the whole trail verifies). An existing trail is verified with those keys
/// and continued; one that does not verify, or was not closed by a final checkpoint (the
/// server was killed), is refused with the first broken link: move it aside. A key whose `kid`
/// is already in the JWKS for another key is refused too: a `signing_key` without `pem_file`
/// is new at each start under the same `kid`, so give such a server a new trail file per run
/// or a `pem_file`.
pub fn open(cfg: Option<&AuditFileConfig>, key: Arc<SigningKey>) -> Result<AuditLog, ConfigError> {
    let Some(cfg) = cfg else {
        return Ok(AuditLog::disabled());
    };
    let jwks_path = jwks_path(&cfg.file);
    let mut keys: Vec<_> = if jwks_path.exists() {
        jwks_file(&jwks_path)?.keys().to_vec()
    } else {
        Vec::new()
    };
    let ours = key.verifying_key();
    let kid = key
        .kid()
        .ok_or_else(|| ConfigError::Invalid("the audit key has no `kid`".into()))?;
    match keys.iter().find(|k| k.kid() == Some(kid)) {
        Some(known) if known.thumbprint() == ours.thumbprint() => {}
        Some(_) => {
            return Err(ConfigError::Invalid(format!(
                "audit: `{}` already holds another key with kid `{kid}`; configure the \
                 signing key's `pem_file`, or start a new trail file",
                jwks_path.display()
            )));
        }
        None => {
            keys.push(ours.clone());
            let json = JwkSet::from_keys(keys.iter().cloned()).to_public_json();
            let text = serde_json::to_string_pretty(&json)
                .map_err(|e| ConfigError::Invalid(format!("audit JWKS: {e}")))?;
            std::fs::write(&jwks_path, text).map_err(|e| {
                ConfigError::Invalid(format!("cannot write `{}`: {e}", jwks_path.display()))
            })?;
        }
    }
    let jwks = JwkSet::from_keys(keys);
    let invalid = |e: ema_server::audit::AuditError| ConfigError::Invalid(format!("audit: {e}"));
    let file = JsonLinesFile::open(&cfg.file, &jwks).map_err(invalid)?;
    AuditLog::builder(key)
        .config(AuditConfig::new().checkpoint_every(cfg.checkpoint_every))
        .build(file)
        .map_err(invalid)
}
