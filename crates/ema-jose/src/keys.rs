//! Resolving a verification key by issuer and `kid` (SEC-3).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::alg::Algorithm;
use crate::jwk::{JwkSet, KeyLookupError, VerifyingKey};

/// Finds the key that verifies a token from `issuer`. The issuer is the one the caller has
/// already matched against its trust configuration; the keys come from that issuer's
/// configuration only, never from the token (SEC-3).
///
/// Implementations: [`StaticKeySource`] here; remote key sets and per-issuer sources in `ema-jwks`.
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

/// The object-safe form of [`KeySource`], for storing key sources of different types behind one
/// pointer. Every [`KeySource`] implements it; use it through [`DynKeySource`].
pub trait ErasedKeySource: Send + Sync {
    /// [`KeySource::resolve`] with the future boxed.
    fn resolve_boxed<'a>(
        &'a self,
        issuer: &'a str,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<VerifyingKey>, KeyLookupError>> + Send + 'a>>;

    /// [`KeySource::key_set_version`].
    fn key_set_version_dyn(&self, issuer: &str) -> u64;
}

impl<K: KeySource> ErasedKeySource for K {
    fn resolve_boxed<'a>(
        &'a self,
        issuer: &'a str,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<VerifyingKey>, KeyLookupError>> + Send + 'a>> {
        Box::pin(self.resolve(issuer, kid, alg))
    }

    fn key_set_version_dyn(&self, issuer: &str) -> u64 {
        self.key_set_version(issuer)
    }
}

/// Any [`KeySource`] behind one cheap-to-clone, nameable type, so that the types built on a key
/// source (validators, grants, the bearer layer) need no type parameter for it.
///
/// Resolving costs one small allocation (the boxed future); validated tokens are cached by the
/// layers that call it, so that happens once per new token at most.
///
/// ```
/// use ema_jose::{Algorithm, DynKeySource, JwkSet, KeySource, SigningKey, StaticKeySource};
///
/// let signer = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
/// let keys = DynKeySource::new(StaticKeySource::new()
///     .with_issuer("https://idp.example", JwkSet::from_keys([signer.verifying_key().clone()])));
/// let found = pollster::block_on(keys.resolve("https://idp.example", Some("k1"), Algorithm::ES256));
/// assert!(found.is_ok());
/// ```
#[derive(Clone)]
pub struct DynKeySource(Arc<dyn ErasedKeySource>);

impl DynKeySource {
    /// Erases the type of `keys`.
    pub fn new(keys: impl KeySource + 'static) -> Self {
        Self(Arc::new(keys))
    }

    /// Wraps a key source already shared behind an `Arc`.
    pub fn from_arc(keys: Arc<dyn ErasedKeySource>) -> Self {
        Self(keys)
    }
}

impl std::fmt::Debug for DynKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynKeySource(..)")
    }
}

impl KeySource for DynKeySource {
    // An `async fn` captures each borrowed lifetime on its own; the boxed future lives inside.
    async fn resolve(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        self.0.resolve_boxed(issuer, kid, alg).await
    }

    fn key_set_version(&self, issuer: &str) -> u64 {
        self.0.key_set_version_dyn(issuer)
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

    #[test]
    fn dyn_key_source_delegates() {
        let signer = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
        let set = JwkSet::from_keys([signer.verifying_key().clone()]);
        let keys = DynKeySource::new(StaticKeySource::new().with_issuer("iss", set));
        let fut = keys.resolve("iss", Some("k1"), Algorithm::ES256);
        assert_send(&fut);
        assert!(pollster::block_on(fut).is_ok());
        assert!(matches!(
            pollster::block_on(keys.clone().resolve("iss", Some("k2"), Algorithm::ES256)),
            Err(KeyLookupError::UnknownKid { .. })
        ));
        assert_eq!(keys.key_set_version("iss"), 0);
        assert_eq!(format!("{keys:?}"), "DynKeySource(..)");
    }
}
