//! Remote JWKS as a [`KeySource`] (AS-4, SEC-3, EMA §7.4.1).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ema_jose::{
    Algorithm, Clock, JwkSet, JwksError, KeyLookupError, KeySource, UnixTime, VerifyingKey,
};

use crate::fetch::{FetchError, HttpFetcher};

/// How long fetched key sets are trusted and how often they may be fetched again.
///
/// ```
/// use std::time::Duration;
/// use ema_jwks::JwksCachePolicy;
///
/// let policy = JwksCachePolicy::new()
///     .with_ttl_bounds(Duration::from_secs(30), Duration::from_secs(3600))
///     .with_min_refetch_interval(Duration::from_secs(10));
/// assert_eq!(policy.ttl_for(Some("public, max-age=86400")), Duration::from_secs(3600));
/// assert_eq!(policy.ttl_for(Some("max-age=5")), Duration::from_secs(30));
/// assert_eq!(policy.ttl_for(None), Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksCachePolicy {
    min_ttl: Duration,
    max_ttl: Duration,
    default_ttl: Duration,
    min_refetch_interval: Duration,
}

impl JwksCachePolicy {
    /// Defaults: `Cache-Control: max-age` clamped to 60 s .. 24 h, 300 s when absent, and at
    /// most one fetch per issuer per 60 s.
    pub const fn new() -> Self {
        Self {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(60),
        }
    }

    /// Bounds for the lifetime taken from `Cache-Control` (`min` is raised to `max` if above).
    #[must_use]
    pub const fn with_ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_ttl = min;
        self.max_ttl = max;
        self
    }

    /// The lifetime used when the response carries no `max-age` (still clamped).
    #[must_use]
    pub const fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The shortest time between two fetches for one issuer, whatever triggers them (an
    /// expired cache or an unknown `kid`, SEC-3).
    #[must_use]
    pub const fn with_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// The cache lifetime for a response with this `Cache-Control` value: `max-age` (`no-store`
    /// and `no-cache` count as 0), or the default, clamped to the bounds.
    pub fn ttl_for(&self, cache_control: Option<&str>) -> Duration {
        let mut ttl = None;
        for directive in cache_control.unwrap_or("").split(',') {
            let directive = directive.trim();
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim();
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                ttl = Some(0);
                break;
            }
            if name.eq_ignore_ascii_case("max-age") {
                ttl = value.trim().trim_matches('"').parse::<u64>().ok();
            }
        }
        let ttl = ttl.map_or(self.default_ttl, Duration::from_secs);
        let max = self.max_ttl.max(self.min_ttl);
        ttl.clamp(self.min_ttl, max)
    }
}

impl Default for JwksCachePolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a JWKS fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksFetchError {
    /// No `jwks_uri` is configured for this issuer.
    #[error("no JWKS configured for issuer `{issuer}`")]
    UnknownIssuer {
        /// The issuer.
        issuer: String,
    },
    /// The request failed (policy, timeout, size cap, transport).
    #[error("fetching the JWKS failed: {0}")]
    Fetch(#[from] FetchError),
    /// The server answered with a status other than 200.
    #[error("JWKS endpoint answered HTTP {status}")]
    Status {
        /// The status.
        status: u16,
    },
    /// The document is not a JWKS (D-19 reads entries one by one; this is the whole document).
    #[error("JWKS document refused: {0}")]
    Document(#[from] JwksError),
}

/// How many removed key thumbprints are remembered per issuer.
const MAX_REMOVED: usize = 256;

#[derive(Debug, Default)]
struct IssuerState {
    /// The last good key set, after the no-rollback filter.
    keys: Option<Arc<JwkSet>>,
    /// When the cached set goes stale.
    expires_at: UnixTime,
    /// When the last fetch started, whatever its outcome.
    last_attempt: Option<UnixTime>,
    /// How many fetches have started; waiters compare it to skip a fetch someone else made.
    attempts: u64,
    /// The ticket of the response the cache holds; older tickets are never applied.
    applied: u64,
    /// Thumbprints of keys a newer response removed: never reinstated (EMA §7.4.1).
    removed: VecDeque<String>,
    /// Why the last fetch failed, for `Unavailable`.
    last_error: Option<String>,
    /// Moves whenever the usable keys change ([`KeySource::key_set_version`]).
    version: u64,
}

#[derive(Debug)]
struct IssuerEntry {
    jwks_uri: url::Url,
    state: Mutex<IssuerState>,
    /// Single flight: one fetch per issuer at a time.
    flight: tokio::sync::Mutex<()>,
}

impl IssuerEntry {
    fn state(&self) -> MutexGuard<'_, IssuerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Remote JWKS per issuer, as a [`KeySource`].
///
/// - Keys come only from the `jwks_uri` configured for the issuer the caller has already matched
///   (SEC-3); never from token headers.
/// - The cache honours `Cache-Control: max-age` within [`JwksCachePolicy`] bounds.
/// - An unknown `kid` triggers at most one refetch per issuer per minimum interval, and
///   concurrent lookups share it (single flight).
/// - A failed fetch keeps the last good set; [`KeyLookupError::Unavailable`] only when nothing
///   good was ever fetched.
/// - No rollback (EMA §7.4.1): a key that a newer response removed is never reinstated by an
///   older or stale response, and a response older than the cached one is discarded. This fails
///   closed: a key once absent from a response stays refused for the life of this source, so
///   issuers should rotate by publishing new `kid`s (the usual practice), never by re-adding
///   old ones.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use ema_jwks::{FetchPolicy, HttpFetcher, RemoteJwks};
/// use ema_jose::{Algorithm, KeySource, SystemClock};
///
/// let jwks = RemoteJwks::new(HttpFetcher::new(FetchPolicy::new())?, Arc::new(SystemClock))
///     .with_issuer("https://idp.acme.example", "https://idp.acme.example/oauth2/keys")?;
/// let key = jwks.resolve("https://idp.acme.example", Some("idp-k1"), Algorithm::ES256).await?;
/// # let _ = key; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RemoteJwks {
    fetcher: HttpFetcher,
    clock: Arc<dyn Clock>,
    policy: JwksCachePolicy,
    issuers: Arc<HashMap<String, Arc<IssuerEntry>>>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("policy", &self.policy)
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// A source with no issuers, the default cache policy and `clock` for all expiry logic.
    pub fn new(fetcher: HttpFetcher, clock: Arc<dyn Clock>) -> Self {
        Self {
            fetcher,
            clock,
            policy: JwksCachePolicy::new(),
            issuers: Arc::new(HashMap::new()),
        }
    }

    /// Replaces the cache policy.
    #[must_use]
    pub fn with_policy(mut self, policy: JwksCachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Configures the `jwks_uri` of `issuer`; the URL must pass the fetch policy (MD-8).
    pub fn with_issuer(
        mut self,
        issuer: impl Into<String>,
        jwks_uri: &str,
    ) -> Result<Self, FetchError> {
        let jwks_uri = self.fetcher.check_url("jwks_uri", jwks_uri)?;
        let mut issuers = (*self.issuers).clone();
        issuers.insert(
            issuer.into(),
            Arc::new(IssuerEntry {
                jwks_uri,
                state: Mutex::new(IssuerState::default()),
                flight: tokio::sync::Mutex::new(()),
            }),
        );
        self.issuers = Arc::new(issuers);
        Ok(self)
    }

    /// Whether a `jwks_uri` is configured for `issuer`.
    pub fn has_issuer(&self, issuer: &str) -> bool {
        self.issuers.contains_key(issuer)
    }

    /// The key set currently cached for `issuer`, fresh or stale.
    pub fn cached(&self, issuer: &str) -> Option<Arc<JwkSet>> {
        self.issuers.get(issuer)?.state().keys.clone()
    }

    /// Fetches `issuer`'s key set now, bypassing the cache lifetime but not single flight.
    pub async fn refresh(&self, issuer: &str) -> Result<(), JwksFetchError> {
        let entry = self
            .issuers
            .get(issuer)
            .ok_or_else(|| JwksFetchError::UnknownIssuer {
                issuer: issuer.to_owned(),
            })?;
        let _flight = entry.flight.lock().await;
        self.fetch_and_apply(entry).await
    }

    /// One fetch; the caller holds the flight lock.
    async fn fetch_and_apply(&self, entry: &IssuerEntry) -> Result<(), JwksFetchError> {
        let ticket = {
            let mut state = entry.state();
            state.attempts += 1;
            state.last_attempt = Some(self.clock.now());
            state.attempts
        };
        let result = self.fetch(entry).await;
        let mut state = entry.state();
        match result {
            Ok((set, ttl)) => {
                let now = self.clock.now();
                apply(&mut state, ticket, set, now.plus(ttl.as_secs()));
                state.last_error = None;
                Ok(())
            }
            Err(e) => {
                // The last good set stays; only the reason is remembered.
                state.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    async fn fetch(&self, entry: &IssuerEntry) -> Result<(JwkSet, Duration), JwksFetchError> {
        let response = self.fetcher.get(&entry.jwks_uri).await?;
        if response.status != 200 {
            return Err(JwksFetchError::Status {
                status: response.status,
            });
        }
        // D-19: entries are judged one by one inside `JwkSet::parse`.
        let set = JwkSet::parse(&response.body)?;
        Ok((set, self.policy.ttl_for(response.header("cache-control"))))
    }

    async fn lookup(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        // SEC-3: keys for the issuer the caller matched, from its configuration only.
        let entry = self
            .issuers
            .get(issuer)
            .ok_or_else(|| KeyLookupError::UnknownIssuer {
                issuer: issuer.to_owned(),
            })?;
        let now = self.clock.now();
        let (keys, fresh, seen_attempts, may_fetch) = {
            let state = entry.state();
            (
                state.keys.clone(),
                now < state.expires_at,
                state.attempts,
                self.may_fetch(&state, now),
            )
        };
        if let Some(set) = &keys {
            match set.find(kid, alg) {
                Ok(key) if fresh || !may_fetch => return Ok(key.clone()),
                // Stale: refresh below.
                Ok(_) => {}
                // SEC-3: an unknown `kid` may refetch, rate-limited (the check is under the
                // lock below, so a lookup arriving while a fetch is in flight waits for it).
                // A `kid`-less token may too: a rotation can leave the issuer one key again.
                // Either way the answer comes from `JwkSet::find`, so D-22 holds here as well.
                Err(
                    KeyLookupError::UnknownKid { .. }
                    | KeyLookupError::KidRequired { .. }
                    | KeyLookupError::NoMatchingKey { .. },
                ) => {}
                Err(e) => return Err(e),
            }
        }
        {
            // Single flight: whoever gets the lock first fetches; the others find that a fetch
            // happened while they waited and use its result.
            let _flight = entry.flight.lock().await;
            let now = self.clock.now();
            let (attempts, may_fetch) = {
                let state = entry.state();
                (state.attempts, self.may_fetch(&state, now))
            };
            if attempts == seen_attempts && may_fetch {
                // A failure keeps the last good set; the lookup below reports what is left.
                let _ = self.fetch_and_apply(entry).await;
            }
        }
        let state = entry.state();
        match &state.keys {
            Some(set) => set.find(kid, alg).cloned(),
            None => Err(unavailable(&state)),
        }
    }

    fn may_fetch(&self, state: &IssuerState, now: UnixTime) -> bool {
        state
            .last_attempt
            .is_none_or(|last| now >= last.plus(self.policy.min_refetch_interval.as_secs()))
    }
}

fn unavailable(state: &IssuerState) -> KeyLookupError {
    KeyLookupError::Unavailable {
        reason: state
            .last_error
            .clone()
            .unwrap_or_else(|| "no key set fetched yet".to_owned()),
    }
}

/// Applies a fetched set under the no-rollback rule (EMA §7.4.1): a response with an older
/// ticket than the cached one is dropped; keys the previous set had and this one lacks are
/// remembered as removed; removed keys are filtered out of every later set.
fn apply(state: &mut IssuerState, ticket: u64, set: JwkSet, expires_at: UnixTime) {
    if ticket <= state.applied {
        return;
    }
    if let Some(previous) = &state.keys {
        for key in previous.keys() {
            let thumbprint = key.thumbprint();
            let kept = set.keys().iter().any(|k| k.thumbprint() == thumbprint);
            if !kept && !state.removed.iter().any(|r| r == thumbprint) {
                if state.removed.len() == MAX_REMOVED {
                    state.removed.pop_front();
                }
                state.removed.push_back(thumbprint.to_owned());
            }
        }
    }
    let reinstated = set
        .keys()
        .iter()
        .any(|k| state.removed.iter().any(|r| r == k.thumbprint()));
    let set = if reinstated {
        let removed = &state.removed;
        JwkSet::from_keys(
            set.keys()
                .iter()
                .filter(|k| !removed.iter().any(|r| r == k.thumbprint()))
                .cloned(),
        )
    } else {
        set
    };
    let thumbprints = |s: &JwkSet| -> Vec<String> {
        s.keys().iter().map(|k| k.thumbprint().to_owned()).collect()
    };
    if state.keys.as_deref().map(thumbprints) != Some(thumbprints(&set)) {
        state.version += 1;
    }
    state.keys = Some(Arc::new(set));
    state.applied = ticket;
    state.expires_at = expires_at;
}

impl KeySource for RemoteJwks {
    fn resolve(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> impl Future<Output = Result<Arc<VerifyingKey>, KeyLookupError>> + Send {
        self.lookup(issuer, kid, alg)
    }

    fn key_set_version(&self, issuer: &str) -> u64 {
        self.issuers
            .get(issuer)
            .map_or(0, |entry| entry.state().version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ema_jose::SigningKey;

    fn key(kid: &str) -> Arc<VerifyingKey> {
        SigningKey::generate(Algorithm::ES256, Some(kid.into()))
            .unwrap()
            .verifying_key()
            .clone()
    }

    fn kids(state: &IssuerState) -> Vec<String> {
        state
            .keys
            .as_ref()
            .unwrap()
            .keys()
            .iter()
            .filter_map(|k| k.kid().map(str::to_owned))
            .collect()
    }

    #[test]
    fn cache_control_is_clamped() {
        let p = JwksCachePolicy::new();
        assert_eq!(p.ttl_for(Some("max-age=600")), Duration::from_secs(600));
        assert_eq!(p.ttl_for(Some("MAX-AGE=\"600\"")), Duration::from_secs(600));
        assert_eq!(p.ttl_for(Some("max-age=1")), Duration::from_secs(60));
        assert_eq!(
            p.ttl_for(Some("max-age=99999999")),
            Duration::from_secs(86400)
        );
        assert_eq!(
            p.ttl_for(Some("no-store, max-age=600")),
            Duration::from_secs(60)
        );
        assert_eq!(p.ttl_for(Some("max-age=junk")), Duration::from_secs(300));
        assert_eq!(p.ttl_for(None), Duration::from_secs(300));
    }

    #[test]
    fn no_rollback_by_generation_or_stale_response() {
        // EMA §7.4.1: once a newer response removed a key, it never comes back.
        let (a, b) = (key("a"), key("b"));
        let mut state = IssuerState::default();
        let t = UnixTime::from_secs(1000);
        apply(&mut state, 1, JwkSet::from_keys([a.clone(), b.clone()]), t);
        apply(&mut state, 2, JwkSet::from_keys([b.clone()]), t);
        assert_eq!(kids(&state), ["b"]);
        // An older response (ticket 1 again) arriving late is discarded outright.
        apply(&mut state, 1, JwkSet::from_keys([a.clone(), b.clone()]), t);
        assert_eq!(kids(&state), ["b"]);
        assert_eq!(state.applied, 2);
        // A newer but stale response (an old replica) cannot reinstate `a`.
        apply(&mut state, 3, JwkSet::from_keys([a.clone(), b.clone()]), t);
        assert_eq!(kids(&state), ["b"]);
        // New keys are still accepted.
        let c = key("c");
        apply(&mut state, 4, JwkSet::from_keys([b, c]), t);
        assert_eq!(kids(&state), ["b", "c"]);
    }
}
