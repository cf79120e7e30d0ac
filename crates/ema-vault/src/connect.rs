//! The connect flow's `state`: [`ConnectStates`].
//!
//! When a tool needs a credential the user has not connected, the MCP server starts an OAuth
//! authorization-code flow with PKCE at the provider and sends the user the authorization URL.
//! The `state` in that URL is issued here, bound to the principal, the MCP session and the
//! provider, and redeemed once at the callback.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ema_jose::UnixTime;

use crate::key::{Owner, ProviderId};
use crate::secret::Secret;

/// Random bytes in a `state` and in a PKCE code verifier (256 bits).
const RANDOM_BYTES: usize = 32;

/// A connect flow just begun: what goes into the authorization URL, and the verifier the
/// server keeps.
#[derive(Debug)]
pub struct ConnectStart {
    /// The `state` parameter: 256 random bits, base64url without padding.
    pub state: String,
    /// The PKCE code verifier (RFC 7636), sent with the code at the token endpoint.
    pub code_verifier: Secret,
    /// The PKCE code challenge: base64url(SHA-256(verifier)), method `S256`.
    pub code_challenge: String,
}

/// A connect flow redeemed at the callback: whose it is, and the PKCE verifier.
#[derive(Debug)]
pub struct PendingConnect {
    /// The principal that started the flow.
    pub owner: Owner,
    /// The MCP session that started it.
    pub session: String,
    /// The provider it is for.
    pub provider: ProviderId,
    /// The PKCE code verifier.
    pub code_verifier: Secret,
}

/// Why a callback's `state` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The state was never issued, or was already used.
    #[error("unknown or already used connect state")]
    Unknown,
    /// The state is older than its time to live.
    #[error("the connect state has expired: start the connection again")]
    Expired,
    /// The state was issued for another provider.
    #[error("the connect state was issued for another provider")]
    WrongProvider,
    /// Too many connect flows are pending; try again later.
    #[error("too many pending connect flows")]
    Full,
    /// The system's random number generator failed.
    #[error("the random number generator failed")]
    Random,
}

struct Pending {
    owner: Owner,
    session: String,
    provider: ProviderId,
    code_verifier: Secret,
    expires_at: UnixTime,
}

/// Pending connect flows, in memory: single-use, short-lived, bounded.
///
/// A state expires `ttl_secs` after [`begin`](Self::begin) (by the times the caller passes:
/// it is expired once `now >= begun + ttl_secs`). [`finish`](Self::finish) removes the state
/// whatever the outcome, so a state is redeemed at most once. At most `capacity` flows are
/// pending: `begin` first evicts expired ones, then refuses with [`ConnectError::Full`].
///
/// ```
/// use ema_jose::UnixTime;
/// use ema_vault::{ConnectError, ConnectStates, Owner, ProviderId};
///
/// let states = ConnectStates::new(600, 10_000);
/// let alice = Owner::new("acme", "alice")?;
/// let notes = ProviderId::new("notes")?;
/// let t0 = UnixTime::from_secs(1_000);
/// let start = states.begin(&alice, "mcp-session-1", &notes, t0)?;
/// // ... the user authorizes; the provider redirects back with `state` and a code ...
/// let pending = states.finish(&start.state, &notes, t0.plus(30))?;
/// assert_eq!((pending.owner, pending.session.as_str()), (alice, "mcp-session-1"));
/// assert_eq!(states.finish(&start.state, &notes, t0.plus(31)).unwrap_err(),
///            ConnectError::Unknown);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConnectStates {
    ttl_secs: u64,
    capacity: usize,
    pending: Mutex<HashMap<String, Pending>>,
}

impl fmt::Debug for ConnectStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectStates")
            .field("ttl_secs", &self.ttl_secs)
            .field("capacity", &self.capacity)
            .field("pending", &self.len())
            .finish_non_exhaustive()
    }
}

fn random_b64() -> Result<String, ConnectError> {
    let mut bytes = [0_u8; RANDOM_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ConnectError::Random)?;
    let encoded = URL_SAFE_NO_PAD.encode(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    Ok(encoded)
}

/// The PKCE `S256` challenge of `verifier`.
pub fn pkce_challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

impl ConnectStates {
    /// Pending flows that live `ttl_secs` seconds, at most `capacity` of them.
    pub fn new(ttl_secs: u64, capacity: usize) -> Self {
        Self {
            ttl_secs,
            capacity,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// How many flows are pending (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no flow is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a flow for `owner` in MCP session `session` at `provider`: a fresh `state` and
    /// PKCE pair.
    pub fn begin(
        &self,
        owner: &Owner,
        session: &str,
        provider: &ProviderId,
        now: UnixTime,
    ) -> Result<ConnectStart, ConnectError> {
        let state = random_b64()?;
        let code_verifier = Secret::new(random_b64()?);
        let code_challenge = pkce_challenge(code_verifier.expose());
        let mut pending = self.lock();
        if pending.len() >= self.capacity {
            pending.retain(|_, entry| now < entry.expires_at);
        }
        if pending.len() >= self.capacity {
            return Err(ConnectError::Full);
        }
        pending.insert(
            state.clone(),
            Pending {
                owner: owner.clone(),
                session: session.to_owned(),
                provider: provider.clone(),
                code_verifier: code_verifier.clone(),
                expires_at: now.plus(self.ttl_secs),
            },
        );
        Ok(ConnectStart {
            state,
            code_verifier,
            code_challenge,
        })
    }

    /// Redeems `state` at the callback of `provider`. The state is removed whatever the
    /// outcome.
    pub fn finish(
        &self,
        state: &str,
        provider: &ProviderId,
        now: UnixTime,
    ) -> Result<PendingConnect, ConnectError> {
        let entry = self.lock().remove(state).ok_or(ConnectError::Unknown)?;
        if now >= entry.expires_at {
            return Err(ConnectError::Expired);
        }
        if entry.provider != *provider {
            return Err(ConnectError::WrongProvider);
        }
        Ok(PendingConnect {
            owner: entry.owner,
            session: entry.session,
            provider: entry.provider,
            code_verifier: entry.code_verifier,
        })
    }
}
