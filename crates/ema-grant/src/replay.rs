//! Single-use identifiers: ID-JAG `jti`s (SEC-1, AS-7, D-6), client-assertion `jti`s, DPoP
//! proof `jti`s and SAML subject assertion `ID`s.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::digest;
use ema_jose::UnixTime;

/// What kind of identifier a replay key scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplayKind {
    /// An ID-JAG, keyed by (`iss`, `jti`).
    IdJag,
    /// A client assertion, keyed by (client id, `jti`).
    ClientAssertion,
    /// A DPoP proof, keyed by (key thumbprint ‖ normalized `htu`, `jti`) (D-30).
    DpopProof,
    /// A SAML 2.0 subject assertion at the token exchange, keyed by (`Issuer`, `ID`).
    SamlAssertion,
    /// A Security Event Token received over SSF push, keyed by (`iss`, `jti`) for RV-8's
    /// seven-day deduplication.
    SecurityEvent,
    /// An authorization code of the [code flow](crate::code_flow), keyed by (the authorization
    /// server's issuer, the code's id): redeemed once across every instance sharing the store.
    AuthorizationCode,
    /// A pending sign-in's sealed `state` at the IdP callback of the code flow, keyed by (the
    /// IdP, the sign-in's id): the IdP's answer is taken once.
    SignInState,
}

impl ReplayKind {
    const fn tag(self) -> u8 {
        match self {
            Self::IdJag => 1,
            Self::ClientAssertion => 2,
            Self::DpopProof => 3,
            Self::SamlAssertion => 4,
            Self::SecurityEvent => 5,
            Self::AuthorizationCode => 6,
            Self::SignInState => 7,
        }
    }
}

/// A replay key: (kind, issuer or owner, `jti`), compared exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayKey<'a> {
    /// The kind of token.
    pub kind: ReplayKind,
    /// The namespace within the kind: the issuer, the client, or the key thumbprint.
    pub issuer: &'a str,
    /// The token's `jti`.
    pub jti: &'a str,
}

impl ReplayKey<'_> {
    /// A collision-resistant fixed-size digest of the key (SHA-256 over a length-prefixed
    /// encoding), for stores that want constant-size entries.
    pub fn digest(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&[self.kind.tag()]);
        ctx.update(&(self.issuer.len() as u64).to_be_bytes());
        ctx.update(self.issuer.as_bytes());
        ctx.update(&(self.jti.len() as u64).to_be_bytes());
        ctx.update(self.jti.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// Why the replay store could not answer. The token endpoint fails closed on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The store is unreachable or failed.
    #[error("replay store unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
    /// The store is full of live entries.
    #[error("replay store is full")]
    Full,
}

impl ema_metadata::ToErrorCode for ReplayError {
    /// The endpoint fails closed: `temporarily_unavailable` (HTTP 503).
    fn error_code(&self) -> ema_metadata::ErrorCode {
        match self {
            Self::Unavailable { .. } | Self::Full => {
                ema_metadata::ErrorCode::TemporarilyUnavailable
            }
        }
    }

    fn error_description(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } | Self::Full => {
                "replay detection is unavailable; try again later"
            }
        }
    }
}

/// Whether a key was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First use: the key is now recorded.
    First,
    /// The key was already recorded: a replay.
    Again,
}

/// An atomic check-and-insert store of single-use keys (SEC-1).
///
/// Implementations must make `check_and_insert` atomic across every instance that shares the
/// store (for Redis: `SET key 1 NX EXAT expires_at`), and must keep a key at least until
/// `expires_at`.
pub trait ReplayStore: Send + Sync {
    /// Records `key` until `expires_at` unless it is already recorded.
    fn check_and_insert(
        &self,
        key: ReplayKey<'_>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<Seen, ReplayError>> + Send;

    /// Removes `key`, so its next [`check_and_insert`](Self::check_and_insert) answers
    /// [`Seen::First`] again: for a caller that recorded a key and then could not complete the
    /// work it guards (the SSF receiver when the ledger write fails, RV-8, RV-14). Removing an
    /// absent key succeeds.
    ///
    /// The default refuses with [`ReplayError::Unavailable`]: a store that cannot forget keeps
    /// the key, and the caller logs the failure.
    fn forget(&self, key: ReplayKey<'_>) -> impl Future<Output = Result<(), ReplayError>> + Send {
        let _ = key;
        std::future::ready(Err(ReplayError::Unavailable {
            reason: "this replay store cannot forget keys".into(),
        }))
    }
}

impl<R: ReplayStore + ?Sized> ReplayStore for Arc<R> {
    fn check_and_insert(
        &self,
        key: ReplayKey<'_>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<Seen, ReplayError>> + Send {
        (**self).check_and_insert(key, expires_at, now)
    }

    fn forget(&self, key: ReplayKey<'_>) -> impl Future<Output = Result<(), ReplayError>> + Send {
        (**self).forget(key)
    }
}

/// The object-safe form of [`ReplayStore`], for storing replay stores of different types behind
/// one pointer. Every [`ReplayStore`] implements it; use it through [`DynReplayStore`].
pub trait ErasedReplayStore: Send + Sync {
    /// [`ReplayStore::check_and_insert`] with the future boxed.
    fn check_and_insert_boxed<'a>(
        &'a self,
        key: ReplayKey<'a>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Pin<Box<dyn Future<Output = Result<Seen, ReplayError>> + Send + 'a>>;

    /// [`ReplayStore::forget`] with the future boxed. Every [`ReplayStore`] forwards to its
    /// `forget`; a store implementing this trait directly that does not override it refuses,
    /// as [`ReplayStore::forget`]'s default does.
    fn forget_boxed<'a>(
        &'a self,
        key: ReplayKey<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ReplayError>> + Send + 'a>> {
        let _ = key;
        Box::pin(std::future::ready(Err(ReplayError::Unavailable {
            reason: "this replay store cannot forget keys".into(),
        })))
    }
}

impl<R: ReplayStore> ErasedReplayStore for R {
    fn check_and_insert_boxed<'a>(
        &'a self,
        key: ReplayKey<'a>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Pin<Box<dyn Future<Output = Result<Seen, ReplayError>> + Send + 'a>> {
        Box::pin(self.check_and_insert(key, expires_at, now))
    }

    fn forget_boxed<'a>(
        &'a self,
        key: ReplayKey<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ReplayError>> + Send + 'a>> {
        Box::pin(self.forget(key))
    }
}

/// Any [`ReplayStore`] behind one cheap-to-clone, nameable type: the default replay store of
/// [`JwtBearerGrant`](crate::JwtBearerGrant) and [`TokenExchangeGrant`](crate::TokenExchangeGrant).
/// Clones share the store, so one store can serve several endpoints of a server.
///
/// Each check costs one boxed future, next to the signature work of the request it guards.
/// [`Default`] is an [`InMemoryReplayStore::default`].
///
/// ```
/// use ema_grant::{DynReplayStore, InMemoryReplayStore, ReplayKey, ReplayKind, ReplayStore, Seen};
/// use ema_jose::UnixTime;
///
/// let store = DynReplayStore::new(InMemoryReplayStore::new(1_000));
/// let key = ReplayKey { kind: ReplayKind::IdJag, issuer: "https://idp.example", jti: "j1" };
/// let now = UnixTime::from_secs(1_000);
/// let first = pollster::block_on(store.check_and_insert(key, now.plus(300), now));
/// let again = pollster::block_on(store.clone().check_and_insert(key, now.plus(300), now));
/// assert_eq!((first, again), (Ok(Seen::First), Ok(Seen::Again)));
/// ```
#[derive(Clone)]
pub struct DynReplayStore(Arc<dyn ErasedReplayStore>);

impl DynReplayStore {
    /// Erases the type of `store`.
    pub fn new(store: impl ReplayStore + 'static) -> Self {
        Self(Arc::new(store))
    }

    /// Wraps a store already shared behind an `Arc`.
    pub fn from_arc(store: Arc<dyn ErasedReplayStore>) -> Self {
        Self(store)
    }
}

impl Default for DynReplayStore {
    /// An [`InMemoryReplayStore::default`] (a million live entries).
    fn default() -> Self {
        Self::new(InMemoryReplayStore::default())
    }
}

impl std::fmt::Debug for DynReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynReplayStore(..)")
    }
}

impl ReplayStore for DynReplayStore {
    // An `async fn` captures each borrowed lifetime on its own; the boxed future lives inside.
    async fn check_and_insert(
        &self,
        key: ReplayKey<'_>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<Seen, ReplayError> {
        self.0.check_and_insert_boxed(key, expires_at, now).await
    }

    async fn forget(&self, key: ReplayKey<'_>) -> Result<(), ReplayError> {
        self.0.forget_boxed(key).await
    }
}

const SHARDS: usize = 16;

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<[u8; 32], u64>,
    /// No entry expires before this instant; a sweep before it would free nothing.
    earliest_expiry: u64,
}

/// A bounded in-memory replay store for a single authorization-server instance.
///
/// Keys are stored as 32-byte digests with their expiry, in 16 shards behind their own locks.
/// Expired entries are swept when a shard reaches its share of the capacity; if a shard is
/// still full of live entries, inserts fail with [`ReplayError::Full`] (fail closed) rather
/// than evicting a live entry, which would reopen a replay window.
#[derive(Debug)]
pub struct InMemoryReplayStore {
    shards: [Mutex<Shard>; SHARDS],
    per_shard: usize,
}

impl InMemoryReplayStore {
    /// A store for at most about `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: Default::default(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Live and not yet swept entries.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `key` until `expires_at` unless it is present and unexpired.
    pub fn insert_now(
        &self,
        key: ReplayKey<'_>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<Seen, ReplayError> {
        let digest = key.digest();
        let index = usize::from(digest[0]) % SHARDS;
        let Some(shard) = self.shards.get(index) else {
            return Err(ReplayError::Unavailable {
                reason: "shard index out of range".into(),
            });
        };
        // Every update below keeps the map consistent, so a poisoned lock is safe to reuse.
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now.as_secs();
        if let Some(&until) = shard.entries.get(&digest)
            && until > now
        {
            return Ok(Seen::Again);
        }
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&digest) {
            if shard.earliest_expiry <= now {
                shard.entries.retain(|_, until| *until > now);
                shard.earliest_expiry = shard.entries.values().copied().min().unwrap_or(u64::MAX);
            }
            if shard.entries.len() >= self.per_shard {
                return Err(ReplayError::Full);
            }
        }
        let until = expires_at.as_secs();
        shard.entries.insert(digest, until);
        shard.earliest_expiry = shard.earliest_expiry.min(until);
        Ok(Seen::First)
    }

    /// Removes `key` (see [`ReplayStore::forget`]).
    pub fn forget_now(&self, key: ReplayKey<'_>) {
        let digest = key.digest();
        let index = usize::from(digest[0]) % SHARDS;
        if let Some(shard) = self.shards.get(index) {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entries
                .remove(&digest);
        }
    }
}

impl Default for InMemoryReplayStore {
    /// A store for a million live entries.
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl ReplayStore for InMemoryReplayStore {
    fn check_and_insert(
        &self,
        key: ReplayKey<'_>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = Result<Seen, ReplayError>> + Send {
        std::future::ready(self.insert_now(key, expires_at, now))
    }

    fn forget(&self, key: ReplayKey<'_>) -> impl Future<Output = Result<(), ReplayError>> + Send {
        self.forget_now(key);
        std::future::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(jti: &str) -> ReplayKey<'_> {
        ReplayKey {
            kind: ReplayKind::IdJag,
            issuer: "https://idp.example",
            jti,
        }
    }

    #[test]
    fn sec1_second_use_is_seen() {
        let s = InMemoryReplayStore::new(100);
        let t = UnixTime::from_secs(1000);
        assert_eq!(s.insert_now(key("a"), t.plus(300), t), Ok(Seen::First));
        assert_eq!(
            s.insert_now(key("a"), t.plus(300), t.plus(299)),
            Ok(Seen::Again)
        );
        // Keys are scoped by kind and issuer.
        let other = ReplayKey {
            issuer: "https://other.example",
            ..key("a")
        };
        assert_eq!(s.insert_now(other, t.plus(300), t), Ok(Seen::First));
        let assertion = ReplayKey {
            kind: ReplayKind::ClientAssertion,
            ..key("a")
        };
        assert_eq!(s.insert_now(assertion, t.plus(300), t), Ok(Seen::First));
        // After expiry the slot may be reused (the token itself is expired by then).
        assert_eq!(
            s.insert_now(key("a"), t.plus(900), t.plus(300)),
            Ok(Seen::First)
        );
    }

    #[test]
    fn issuer_jti_boundaries_do_not_collide() {
        let a = ReplayKey {
            kind: ReplayKind::IdJag,
            issuer: "ab",
            jti: "c",
        };
        let b = ReplayKey {
            kind: ReplayKind::IdJag,
            issuer: "a",
            jti: "bc",
        };
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn full_store_fails_closed_and_sweeps_expired() {
        let s = InMemoryReplayStore::new(16);
        let t = UnixTime::from_secs(1000);
        let mut full = false;
        for i in 0..1000 {
            if s.insert_now(key(&i.to_string()), t.plus(60), t) == Err(ReplayError::Full) {
                full = true;
                break;
            }
        }
        assert!(
            full,
            "a bounded store must refuse when full of live entries"
        );
        // Once they expire, a sweep frees room.
        assert_eq!(
            s.insert_now(key("late"), t.plus(200), t.plus(61)),
            Ok(Seen::First)
        );
        assert!(s.len() <= 16);
    }
}
