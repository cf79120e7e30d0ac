//! Session context for rules that span calls: a bounded tracker of what each MCP session
//! already did.
//!
//! Per MCP session id, [`SessionTracker`] keeps a [`SessionContext`]: the tools called (allowed
//! calls only) with their counts, the total, the destructive calls (by the tools' annotations)
//! and the labels raised by earlier calls and results (`secret_read`, `untrusted_content`).
//!
//! The state is bounded twice:
//! - **Expiry.** A session idle for longer than the TTL is forgotten; a later call with the same
//!   id starts from an empty context. Time comes from an injected [`Clock`] (whole seconds), so
//!   tests drive it without sleeping. A rule such as "no outbound call after a secret was read"
//!   therefore holds for as long as the session stays active and at most one TTL after it goes
//!   idle: choose the TTL at least as long as the MCP server keeps sessions.
//! - **A cap on tracked sessions.** When the tracker is full, expired sessions are evicted
//!   first; if it is still full, a *new* session is refused with
//!   [`SessionError::TooManySessions`] (the authorizer denies its calls with that reason).
//!   Sessions already tracked continue unaffected. Nothing is ever evicted early to make room,
//!   so an attacker opening sessions cannot wipe another session's labels.
//!
//! Calls without a session id (transports without sessions) get an empty context, and nothing
//! is recorded for them: session rules cannot apply to them, so policies that need session
//! state should deny calls whose context is empty where that matters.
//!
//! Concurrency: one short-lived lock over the map of sessions, and one lock per session. The
//! per-session lock is held while a decision is made and recorded
//! ([`SessionTracker::with_session`]), so two concurrent calls of one session cannot both pass
//! a "at most N destructive calls" rule. No lock is held across an `.await`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{SessionContext, SessionId, ToolCall};

/// The label raised on a session after an allowed call of an open-world tool (its result may
/// carry content from outside the server: the web, mail, tickets).
pub const UNTRUSTED_CONTENT: &str = "untrusted_content";

/// The default idle time after which a session is forgotten: one hour.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(3600);

/// The default cap on tracked sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// A source of the current time in whole seconds since the Unix epoch.
///
/// Any `Fn() -> u64 + Send + Sync` is a clock, so a test passes a closure over an atomic it
/// advances.
pub trait Clock: Send + Sync {
    /// The current time, in seconds since the Unix epoch.
    fn now_secs(&self) -> u64;
}

impl<F: Fn() -> u64 + Send + Sync> Clock for F {
    fn now_secs(&self) -> u64 {
        self()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }
}

/// Why session state could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The tracker is full of sessions that have not expired, and the call opens a new one.
    #[error("too many tracked sessions (limit {max}); new sessions are refused until one expires")]
    TooManySessions {
        /// The configured cap.
        max: usize,
    },
}

/// One tracked session.
#[derive(Debug, Default)]
struct Slot {
    /// When the session was last used (clock seconds).
    last_seen: AtomicU64,
    /// What it did. Held while one of its calls is decided and recorded.
    context: Mutex<SessionContext>,
}

/// The map of sessions and the time of the last sweep for expired ones.
#[derive(Debug, Default)]
struct Sessions {
    map: HashMap<SessionId, Arc<Slot>>,
    /// The clock second of the last full sweep that freed nothing; a full tracker sweeps at
    /// most once per second, since nothing new can expire within the same second.
    swept_at: Option<u64>,
}

/// A bounded, expiring tracker of per-session context. See the [module docs](self).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use ema_authz::{SessionId, SessionTracker, ToolCall};
///
/// let now = Arc::new(AtomicU64::new(1_000));
/// let clock = { let now = now.clone(); move || now.load(Ordering::SeqCst) };
/// let sessions = SessionTracker::new(Duration::from_secs(60), 2, clock);
/// let id = SessionId::new("s-1");
///
/// let call = ToolCall::new("https://mcp.example.com", "search", Default::default());
/// sessions.record(&id, &call).unwrap();
/// assert_eq!(sessions.snapshot(&id).unwrap().count("search"), 1);
///
/// now.fetch_add(61, Ordering::SeqCst); // idle for longer than the TTL
/// assert_eq!(sessions.snapshot(&id).unwrap().total_calls, 0);
/// ```
pub struct SessionTracker {
    ttl: u64,
    max_sessions: usize,
    clock: Arc<dyn Clock>,
    sessions: Mutex<Sessions>,
}

impl fmt::Debug for SessionTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTracker")
            .field("ttl_secs", &self.ttl)
            .field("max_sessions", &self.max_sessions)
            .field("tracked", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for SessionTracker {
    fn default() -> Self {
        Self::new(DEFAULT_SESSION_TTL, DEFAULT_MAX_SESSIONS, SystemClock)
    }
}

/// Takes a lock even if a thread panicked while holding it: session state is counters and
/// sets, each update of which leaves it consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionTracker {
    /// A tracker forgetting sessions idle for longer than `ttl` (whole seconds; at least one)
    /// and tracking at most `max_sessions` at once, with time from `clock`.
    pub fn new(ttl: Duration, max_sessions: usize, clock: impl Clock + 'static) -> Self {
        Self::with_shared_clock(ttl, max_sessions, Arc::new(clock))
    }

    /// As [`SessionTracker::new`], with a clock already shared.
    pub fn with_shared_clock(ttl: Duration, max_sessions: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            ttl: ttl.as_secs().max(1),
            max_sessions,
            clock,
            sessions: Mutex::new(Sessions::default()),
        }
    }

    /// The idle time after which a session is forgotten.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl)
    }

    /// The cap on tracked sessions.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// How many sessions are tracked now (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        lock(&self.sessions).map.len()
    }

    /// Whether no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, slot: &Slot, now: u64) -> bool {
        now.saturating_sub(slot.last_seen.load(Ordering::Acquire)) > self.ttl
    }

    /// The slot of `id`, created when absent (or expired) and there is room, and marked as
    /// used now.
    fn slot(&self, id: &SessionId, create: bool) -> Result<Option<Arc<Slot>>, SessionError> {
        let now = self.clock.now_secs();
        let mut sessions = lock(&self.sessions);
        if let Some(slot) = sessions.map.get(id) {
            if !self.expired(slot, now) {
                slot.last_seen.fetch_max(now, Ordering::AcqRel);
                return Ok(Some(Arc::clone(slot)));
            }
            sessions.map.remove(id);
        }
        if sessions.map.len() >= self.max_sessions && sessions.swept_at != Some(now) {
            sessions.map.retain(|_, slot| !self.expired(slot, now));
            if sessions.map.len() >= self.max_sessions {
                sessions.swept_at = Some(now);
            }
        }
        if sessions.map.len() >= self.max_sessions {
            return Err(SessionError::TooManySessions {
                max: self.max_sessions,
            });
        }
        if !create {
            return Ok(None);
        }
        let slot = Arc::new(Slot {
            last_seen: AtomicU64::new(now),
            context: Mutex::new(SessionContext::default()),
        });
        sessions.map.insert(id.clone(), Arc::clone(&slot));
        sessions.swept_at = None;
        Ok(Some(slot))
    }

    /// Runs `f` on the context of session `id` under the session's lock, creating the session
    /// when it is new: what a decision and its recording run in, so that they are one atomic
    /// step for the session. `f` must be quick and must not block.
    pub fn with_session<R>(
        &self,
        id: &SessionId,
        f: impl FnOnce(&mut SessionContext) -> R,
    ) -> Result<R, SessionError> {
        match self.slot(id, true)? {
            Some(slot) => Ok(f(&mut lock(&slot.context))),
            // `slot` always returns a slot when asked to create one; an empty context stands
            // in for the impossible case rather than a panic.
            None => Ok(f(&mut SessionContext::default())),
        }
    }

    /// A copy of what session `id` did so far: empty for an unknown or expired session.
    /// Does not start tracking a new session, but refuses one when the tracker is full (its
    /// calls would be refused too).
    pub fn snapshot(&self, id: &SessionId) -> Result<SessionContext, SessionError> {
        Ok(match self.slot(id, false)? {
            Some(slot) => lock(&slot.context).clone(),
            None => SessionContext::default(),
        })
    }

    /// Records an allowed `call` in session `id` (see [`record_call`]).
    pub fn record(&self, id: &SessionId, call: &ToolCall) -> Result<(), SessionError> {
        self.with_session(id, |context| record_call(context, call))
    }

    /// Raises `labels` on session `id`.
    pub fn add_labels<I, S>(&self, id: &SessionId, labels: I) -> Result<(), SessionError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.with_session(id, |context| {
            context.labels.extend(labels.into_iter().map(Into::into));
        })
    }

    /// Forgets session `id` (the MCP session was deleted). Returns whether it was tracked.
    pub fn end_session(&self, id: &SessionId) -> bool {
        lock(&self.sessions).map.remove(id).is_some()
    }

    /// Forgets every session idle for longer than the TTL; returns how many were forgotten.
    /// Not needed for correctness (a full tracker sweeps by itself); a server may call it
    /// periodically to give memory back sooner.
    pub fn evict_expired(&self) -> usize {
        let now = self.clock.now_secs();
        let mut sessions = lock(&self.sessions);
        let before = sessions.map.len();
        sessions.map.retain(|_, slot| !self.expired(slot, now));
        before - sessions.map.len()
    }
}

/// Records one allowed call in `context`: the tool's count, the total, the destructive count
/// when the call's annotations say the tool is destructive, and the `untrusted_content` label
/// when they say it is open-world (MCP's defaults apply to absent hints).
pub fn record_call(context: &mut SessionContext, call: &ToolCall) {
    match context.calls.get_mut(&call.tool) {
        Some(count) => *count = count.saturating_add(1),
        None => {
            context.calls.insert(call.tool.clone(), 1);
        }
    }
    context.total_calls = context.total_calls.saturating_add(1);
    if call.annotations.destructive() {
        context.destructive_calls = context.destructive_calls.saturating_add(1);
    }
    if call.annotations.open_world() {
        context.labels.insert(UNTRUSTED_CONTENT.to_owned());
    }
}
