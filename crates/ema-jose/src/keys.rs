//! Resolving a verification key by issuer and `kid` (SEC-3).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::alg::Algorithm;
use crate::jwk::{JwkSet, KeyLookupError, VerifyingKey};

/// Finds the key that verifies a token from `issuer`. The issuer is the one the caller has
/// already matched against its trust configuration; the keys come from that issuer's
/// configuration only, never from the token (SEC-3).
///
/// Implementations: [`StaticKeySource`] here; a remote JWKS cache in `ema-client`.
pub trait KeySource: Send + Sync {
    /// Resolves the key for (`issuer`, `kid`) able to verify `alg`.
    fn resolve(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> impl Future<Output = Result<Arc<VerifyingKey>, KeyLookupError>> + Send;

    /// A number that changes whenever the key set of `issuer` changes (keys added, removed or
    /// replaced). Caches of validated tokens record it and drop entries when it moves. Sources
    /// whose keys never change may keep the default, 0.
    fn key_set_version(&self, issuer: &str) -> u64 {
        let _ = issuer;
        0
    }
}

impl<K: KeySource + ?Sized> KeySource for Arc<K> {
    fn resolve(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> impl Future<Output = Result<Arc<VerifyingKey>, KeyLookupError>> + Send {
        (**self).resolve(issuer, kid, alg)
    }

    fn key_set_version(&self, issuer: &str) -> u64 {
        (**self).key_set_version(issuer)
    }
}

impl<K: KeySource + ?Sized> KeySource for &K {
    fn resolve(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> impl Future<Output = Result<Arc<VerifyingKey>, KeyLookupError>> + Send {
        (**self).resolve(issuer, kid, alg)
    }

    fn key_set_version(&self, issuer: &str) -> u64 {
        (**self).key_set_version(issuer)
    }
}

/// Key sets held in memory, by issuer.
///
/// ```
/// use ema_jose::{Algorithm, JwkSet, KeySource, SigningKey, StaticKeySource};
///
/// let signer = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
/// let keys = StaticKeySource::new()
///     .with_issuer("https://idp.example", JwkSet::from_keys([signer.verifying_key().clone()]));
/// let found = pollster::block_on(keys.resolve("https://idp.example", Some("k1"), Algorithm::ES256));
/// assert!(found.is_ok());
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticKeySource {
    issuers: HashMap<String, JwkSet>,
}

impl StaticKeySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the key set of `issuer`.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>, keys: JwkSet) -> Self {
        self.insert(issuer, keys);
        self
    }

    /// Adds or replaces the key set of `issuer`.
    pub fn insert(&mut self, issuer: impl Into<String>, keys: JwkSet) {
        self.issuers.insert(issuer.into(), keys);
    }

    /// Resolves without awaiting.
    pub fn resolve_now(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        self.issuers
            .get(issuer)
            .ok_or_else(|| KeyLookupError::UnknownIssuer {
                issuer: issuer.to_owned(),
            })?
            .find(kid, alg)
            .cloned()
    }
}

impl KeySource for StaticKeySource {
    fn resolve(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> impl Future<Output = Result<Arc<VerifyingKey>, KeyLookupError>> + Send {
        std::future::ready(self.resolve_now(issuer, kid, alg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn resolves_by_issuer_then_kid() {
        let signer = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
        let set = JwkSet::from_keys([signer.verifying_key().clone()]);
        let src = StaticKeySource::new().with_issuer("iss", set);
        let fut = src.resolve("iss", Some("k1"), Algorithm::ES256);
        assert_send(&fut);
        assert!(pollster::block_on(fut).is_ok());
        assert!(matches!(
            pollster::block_on(src.resolve("other", Some("k1"), Algorithm::ES256)),
            Err(KeyLookupError::UnknownIssuer { .. })
        ));
        assert!(matches!(
            pollster::block_on(src.resolve("iss", Some("k2"), Algorithm::ES256)),
            Err(KeyLookupError::UnknownKid { .. })
        ));
        let shared = Arc::new(src);
        assert!(pollster::block_on(shared.resolve("iss", None, Algorithm::ES256)).is_ok());
    }
}
