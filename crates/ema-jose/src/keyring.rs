//! Signing-key rotation for the issuers we run (an IdP issuing ID-JAGs, an authorization
//! server issuing access tokens).
//!
//! A ring holds one active key, optionally the next key (published in the JWKS before it signs
//! anything, so that verifiers have it cached when it becomes active), and retired keys (still
//! published until every token they signed has expired).

use std::sync::{Arc, PoisonError, RwLock};

use crate::jwk::JwkSet;
use crate::sign::SigningKey;
use crate::time::UnixTime;

#[derive(Debug, Clone)]
struct Ring {
    active: Arc<SigningKey>,
    next: Option<Arc<SigningKey>>,
    retired: Vec<(Arc<SigningKey>, UnixTime)>,
}

/// Why a rotation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// There is no published next key to promote.
    #[error("no next key has been published")]
    NoNextKey,
    /// A key with this `kid` is already in the ring.
    #[error("`kid` `{kid}` is already in the ring")]
    DuplicateKid {
        /// The repeated `kid`.
        kid: String,
    },
}

/// A set of signing keys with one active key. Cheap to share: clone the `Arc`s it hands out.
///
/// ```
/// use ema_jose::{Algorithm, KeyRing, SigningKey, UnixTime};
///
/// let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("k1".into()))?);
/// ring.publish_next(SigningKey::generate(Algorithm::ES256, Some("k2".into()))?)?;
/// assert_eq!(ring.jwks().keys().len(), 2); // k2 is published before it signs
/// ring.rotate(UnixTime::from_secs(1_000), 3_600)?;
/// assert_eq!(ring.active().kid(), Some("k2"));
/// ring.prune(UnixTime::from_secs(1_000 + 3_600));
/// assert_eq!(ring.jwks().keys().len(), 1); // k1 is gone once its tokens have expired
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct KeyRing {
    inner: RwLock<Ring>,
}

impl KeyRing {
    /// A ring with one active key.
    pub fn new(active: SigningKey) -> Self {
        Self {
            inner: RwLock::new(Ring {
                active: Arc::new(active),
                next: None,
                retired: Vec::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring half-updated (every write
        // replaces whole fields), so a poisoned lock is still safe to use.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Ring> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Arc<SigningKey> {
        self.read().active.clone()
    }

    /// Publishes `key` as the next key: it appears in [`KeyRing::jwks`] now and signs after the
    /// next [`KeyRing::rotate`]. Replaces a previously published next key.
    pub fn publish_next(&self, key: SigningKey) -> Result<(), RotationError> {
        let mut ring = self.write();
        if let Some(kid) = key.kid() {
            let taken = std::iter::once(&ring.active)
                .chain(ring.retired.iter().map(|(k, _)| k))
                .any(|k| k.kid() == Some(kid));
            if taken {
                return Err(RotationError::DuplicateKid {
                    kid: kid.to_owned(),
                });
            }
        }
        ring.next = Some(Arc::new(key));
        Ok(())
    }

    /// Promotes the next key to active. The old active key is retired and stays published until
    /// `now + max_token_lifetime` (the expiry of the last token it can have signed).
    pub fn rotate(&self, now: UnixTime, max_token_lifetime: u64) -> Result<(), RotationError> {
        let mut ring = self.write();
        let next = ring.next.take().ok_or(RotationError::NoNextKey)?;
        let old = std::mem::replace(&mut ring.active, next);
        ring.retired.push((old, now.plus(max_token_lifetime)));
        Ok(())
    }

    /// Drops retired keys whose tokens have all expired by `now`.
    pub fn prune(&self, now: UnixTime) {
        self.write().retired.retain(|(_, until)| *until > now);
    }

    /// The verification keys to publish: next, active and retired.
    pub fn jwks(&self) -> JwkSet {
        let ring = self.read();
        JwkSet::from_keys(
            ring.next
                .iter()
                .chain(std::iter::once(&ring.active))
                .chain(ring.retired.iter().map(|(k, _)| k))
                .map(|k| k.verifying_key().clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Algorithm;

    fn key(kid: &str) -> SigningKey {
        SigningKey::generate(Algorithm::ES256, Some(kid.into())).unwrap()
    }

    #[test]
    fn rotation_lifecycle() {
        let ring = KeyRing::new(key("a"));
        assert_eq!(
            ring.rotate(UnixTime::from_secs(0), 10),
            Err(RotationError::NoNextKey)
        );
        ring.publish_next(key("b")).unwrap();
        let kids = |r: &KeyRing| {
            r.jwks()
                .keys()
                .iter()
                .map(|k| k.kid().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(&ring), ["b", "a"]);
        assert_eq!(ring.active().kid(), Some("a"));
        ring.rotate(UnixTime::from_secs(100), 300).unwrap();
        assert_eq!(ring.active().kid(), Some("b"));
        assert_eq!(kids(&ring), ["b", "a"]);
        ring.prune(UnixTime::from_secs(399));
        assert_eq!(kids(&ring), ["b", "a"]);
        ring.prune(UnixTime::from_secs(400));
        assert_eq!(kids(&ring), ["b"]);
        assert_eq!(
            ring.publish_next(key("b")),
            Err(RotationError::DuplicateKid { kid: "b".into() })
        );
    }
}
