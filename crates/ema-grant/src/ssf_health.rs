//! The health of the SSF streams an authorization server receives (RV-26), tying RV-24's
//! longer access-token lifetime to a channel that is proven to work.
//!
//! Sans-I/O: a [`StreamHealth`] is a scheduler and state machine per transmitter. The server
//! calls [`StreamHealth::tick`] now and then; it answers which transmitters to ask for
//! verification (SSF §8.1.4: `POST` of `{"stream_id", "state"}` to the transmitter's
//! verification endpoint, each with a fresh `state`) and which channels changed health. The
//! verification SET the transmitter then pushes is matched by its echoed `state`
//! ([`StreamHealth::verification`], called by the [`SsfReceiver`](crate::ssf::SsfReceiver));
//! only a match records the channel verified in the [`Revoker`] (RV-24). A `stream-updated`
//! event ([`StreamHealth::stream_updated`]) that pauses or disables the stream, or a
//! verification older than [`CHANNEL_FRESHNESS`], drops the channel back to the 300 s default
//! and is reported as an alert ([`HealthChange::is_alert`]).
//!
//! The schedule respects the transmitter's `min_verification_interval` (SSF §8.1.1): no two
//! requests to one transmitter are closer than it, whatever else asks for one (a re-enabled
//! stream, a failed attempt).
//!
//! ```
//! use ema_grant::revocation::MemoryLedger;
//! use ema_grant::ssf_health::{ChannelHealth, StreamHealth, VerificationMatch, VerificationPolicy};
//! use ema_grant::Revoker;
//! use ema_jose::UnixTime;
//!
//! let revoker = Revoker::new(MemoryLedger::new(), "https://as.example");
//! let health = StreamHealth::new(revoker.clone());
//! let idp = "https://idp.example";
//! health.track(idp, [idp.to_owned()], Some(VerificationPolicy::default()));
//! let now = UnixTime::from_secs(10_000);
//! // The first tick asks for verification, with a fresh `state`.
//! let tick = health.tick(now);
//! let request = &tick.requests[0];
//! assert_eq!(request.transmitter, idp);
//! // ... the server POSTs it; the transmitter pushes a verification SET echoing the state.
//! assert_eq!(health.verification(idp, Some("forged"), now), VerificationMatch::Unmatched);
//! assert!(!revoker.channel_verified(idp, now));
//! assert_eq!(health.verification(idp, Some(&request.state), now.plus(1)), VerificationMatch::Matched);
//! assert!(revoker.channel_verified(idp, now.plus(1)));
//! assert_eq!(health.health(idp, now.plus(1)), Some(ChannelHealth::Verified));
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use ema_jose::UnixTime;

use crate::revoke::{CHANNEL_FRESHNESS, Revoker};

/// The status of an SSF stream (SSF §8.1.2), as a `stream-updated` event reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamStatus {
    /// The transmitter delivers events.
    Enabled,
    /// The transmitter holds events back for now.
    Paused,
    /// The transmitter neither delivers nor keeps events.
    Disabled,
}

impl StreamStatus {
    /// Reads the wire name: `enabled`, `paused` or `disabled`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "enabled" => Some(Self::Enabled),
            "paused" => Some(Self::Paused),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Paused => "paused",
            Self::Disabled => "disabled",
        }
    }
}

/// How often a transmitter is asked for verification (RV-26).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerificationPolicy {
    /// Seconds from one successful verification to the next request (default 300: three
    /// chances within RV-24's 15 minutes).
    pub interval: u64,
    /// Seconds a request waits for its verification SET before it counts as failed (default
    /// 30).
    pub response_timeout: u64,
    /// Seconds from a failed request to the next (default 60).
    pub retry_after: u64,
}

impl Default for VerificationPolicy {
    fn default() -> Self {
        Self {
            interval: 300,
            response_timeout: 30,
            retry_after: 60,
        }
    }
}

impl VerificationPolicy {
    /// A policy asking every `interval` seconds, with the default timeout and retry.
    pub fn every(interval: u64) -> Self {
        Self {
            interval,
            ..Self::default()
        }
    }

    /// Sets the response timeout.
    #[must_use]
    pub const fn with_response_timeout(mut self, secs: u64) -> Self {
        self.response_timeout = secs;
        self
    }

    /// Sets the delay after a failed request.
    #[must_use]
    pub const fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = secs;
        self
    }
}

/// The health of one transmitter's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelHealth {
    /// Enabled, not verified yet (or never asked, without a [`VerificationPolicy`]), and not
    /// overdue: access tokens get the 300 s default.
    Unverified,
    /// A requested verification arrived within [`CHANNEL_FRESHNESS`]: RV-24's longer lifetime
    /// applies.
    Verified,
    /// No verification within [`CHANNEL_FRESHNESS`] (of the last one, or of the start of
    /// tracking): alert, 300 s.
    Overdue,
    /// The transmitter paused the stream: alert, 300 s.
    Paused,
    /// The transmitter disabled the stream: alert, 300 s.
    Disabled,
}

impl ChannelHealth {
    /// `unverified`, `verified`, `overdue`, `paused` or `disabled`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::Verified => "verified",
            Self::Overdue => "overdue",
            Self::Paused => "paused",
            Self::Disabled => "disabled",
        }
    }

    /// Whether this health calls for an alert.
    pub const fn is_alert(self) -> bool {
        matches!(self, Self::Overdue | Self::Paused | Self::Disabled)
    }
}

/// A verification request to send: `POST` of `{"stream_id": ..., "state": ...}` to the
/// transmitter's verification endpoint (SSF §8.1.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerificationRequest {
    /// The transmitter's issuer.
    pub transmitter: String,
    /// The fresh `state` its verification SET must echo.
    pub state: String,
}

/// A channel whose health changed, for the log and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthChange {
    /// The transmitter's issuer.
    pub transmitter: String,
    /// The health before.
    pub from: ChannelHealth,
    /// The health now.
    pub to: ChannelHealth,
    /// When it changed.
    pub at: UnixTime,
}

impl HealthChange {
    /// Whether the new health calls for an alert (overdue, paused, disabled).
    pub const fn is_alert(&self) -> bool {
        self.to.is_alert()
    }
}

/// What one [`StreamHealth::tick`] asks of the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tick {
    /// Verification requests to send now.
    pub requests: Vec<VerificationRequest>,
    /// Transmitters whose last request got no verification within its timeout.
    pub unanswered: Vec<String>,
    /// Channels whose health changed since the last report.
    pub changes: Vec<HealthChange>,
}

/// Whether a verification event answered an outstanding request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerificationMatch {
    /// Its `state` is that of the outstanding request: the channel is verified.
    Matched,
    /// No request of this receiver is outstanding with that `state` (unsolicited, late,
    /// forged or replayed): no effect.
    Unmatched,
}

#[derive(Debug)]
struct Channel {
    subject_issuers: Vec<String>,
    policy: Option<VerificationPolicy>,
    min_interval: u64,
    status: StreamStatus,
    pending: Option<(String, UnixTime)>,
    last_request: Option<UnixTime>,
    last_verified: Option<UnixTime>,
    last_failed: bool,
    asap: bool,
    since: Option<UnixTime>,
    reported: ChannelHealth,
}

impl Channel {
    fn health(&self, now: UnixTime) -> ChannelHealth {
        match self.status {
            StreamStatus::Paused => return ChannelHealth::Paused,
            StreamStatus::Disabled => return ChannelHealth::Disabled,
            StreamStatus::Enabled => {}
        }
        if let Some(v) = self.last_verified
            && now <= v.plus(CHANNEL_FRESHNESS)
        {
            return ChannelHealth::Verified;
        }
        if self.policy.is_none() {
            return ChannelHealth::Unverified;
        }
        match self.last_verified.or(self.since) {
            Some(from) if now > from.plus(CHANNEL_FRESHNESS) => ChannelHealth::Overdue,
            _ => ChannelHealth::Unverified,
        }
    }

    fn due(&self, policy: &VerificationPolicy, now: UnixTime) -> bool {
        if self.status != StreamStatus::Enabled || self.pending.is_some() {
            return false;
        }
        let Some(last) = self.last_request else {
            return true;
        };
        let earliest = last.plus(self.min_interval);
        let wanted = if self.asap {
            last
        } else if self.last_failed {
            last.plus(policy.retry_after)
        } else {
            self.last_verified.unwrap_or(last).plus(policy.interval)
        };
        now >= earliest.max(wanted)
    }
}

/// The per-transmitter stream-health state machine of an authorization server (RV-26). Cheap
/// to clone; clones share the state. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct StreamHealth {
    revoker: Revoker,
    channels: Arc<Mutex<BTreeMap<String, Channel>>>,
}

impl StreamHealth {
    /// A tracker recording verified channels in `revoker` (RV-24).
    pub fn new(revoker: Revoker) -> Self {
        Self {
            revoker,
            channels: Arc::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Channel>) -> T) -> T {
        f(&mut self.channels.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Tracks the transmitter `issuer`, speaking for the IdPs `subject_issuers`. With a
    /// `policy` it is asked for verification on that schedule; without, its verification
    /// events never count (nothing asked for them) and only its status is followed. Tracking
    /// an issuer again replaces its entry.
    pub fn track(
        &self,
        issuer: &str,
        subject_issuers: impl IntoIterator<Item = String>,
        policy: Option<VerificationPolicy>,
    ) {
        let channel = Channel {
            subject_issuers: subject_issuers.into_iter().collect(),
            policy,
            min_interval: 0,
            status: StreamStatus::Enabled,
            pending: None,
            last_request: None,
            last_verified: None,
            last_failed: false,
            asap: false,
            since: None,
            reported: ChannelHealth::Unverified,
        };
        self.with(|c| c.insert(issuer.to_owned(), channel));
    }

    /// The transmitters tracked.
    pub fn transmitters(&self) -> Vec<String> {
        self.with(|c| c.keys().cloned().collect())
    }

    /// Sets the transmitter's `min_verification_interval` in seconds (SSF §8.1.1, read from
    /// its stream configuration): no two requests are closer than this.
    pub fn set_min_interval(&self, issuer: &str, secs: u64) {
        self.with(|c| {
            if let Some(ch) = c.get_mut(issuer) {
                ch.min_interval = secs;
            }
        });
    }

    /// The requests due at `now`, requests gone unanswered, and health changes since the last
    /// report. Each request is recorded as outstanding: send it, and report a failure to send
    /// with [`request_failed`](Self::request_failed).
    pub fn tick(&self, now: UnixTime) -> Tick {
        let mut tick = Tick::default();
        self.with(|channels| {
            for (issuer, ch) in channels.iter_mut() {
                if ch.since.is_none() {
                    ch.since = Some(now);
                }
                let Some(policy) = ch.policy else {
                    continue;
                };
                if let Some((_, sent)) = &ch.pending
                    && now >= sent.plus(policy.response_timeout)
                {
                    ch.pending = None;
                    ch.last_failed = true;
                    tick.unanswered.push(issuer.clone());
                }
                if ch.due(&policy, now) {
                    // Without randomness there is no unguessable state; skip this round.
                    if let Ok(state) = ema_jose::random_id() {
                        ch.pending = Some((state.clone(), now));
                        ch.last_request = Some(now);
                        ch.asap = false;
                        tick.requests.push(VerificationRequest {
                            transmitter: issuer.clone(),
                            state,
                        });
                    }
                }
            }
            for (issuer, ch) in channels.iter_mut() {
                let health = ch.health(now);
                if health != ch.reported {
                    tick.changes.push(HealthChange {
                        transmitter: issuer.clone(),
                        from: ch.reported,
                        to: health,
                        at: now,
                    });
                    ch.reported = health;
                }
            }
        });
        tick
    }

    /// The request with `state` to `issuer` could not be sent or was refused: it no longer
    /// waits, and the next is due after the policy's `retry_after` (and the minimum interval).
    pub fn request_failed(&self, issuer: &str, state: &str, _now: UnixTime) {
        self.with(|c| {
            if let Some(ch) = c.get_mut(issuer)
                && ch.pending.as_ref().is_some_and(|(s, _)| s == state)
            {
                ch.pending = None;
                ch.last_failed = true;
            }
        });
    }

    /// A verification event from `issuer` echoing `state` arrived at `now` (the receiver calls
    /// this for a valid SET). Only the outstanding request's `state` matches; then the channel
    /// is verified, and so are the IdPs the transmitter speaks for in the revoker (RV-24).
    pub fn verification(
        &self,
        issuer: &str,
        state: Option<&str>,
        now: UnixTime,
    ) -> VerificationMatch {
        let matched = self.with(|c| {
            let ch = c.get_mut(issuer)?;
            let (expected, _) = ch.pending.as_ref()?;
            if state != Some(expected.as_str()) || ch.status != StreamStatus::Enabled {
                return None;
            }
            ch.pending = None;
            ch.last_failed = false;
            ch.last_verified = Some(now);
            Some(ch.subject_issuers.clone())
        });
        match matched {
            Some(issuers) => {
                for idp in &issuers {
                    self.revoker.record_channel_verified(idp, now);
                }
                VerificationMatch::Matched
            }
            None => VerificationMatch::Unmatched,
        }
    }

    /// A `stream-updated` event from `issuer` set its stream's `status` at `now` (SSF
    /// §8.1.5). Paused or disabled: the channel stops counting as verified at once (RV-24);
    /// enabled again: a verification is due as soon as the minimum interval allows. Returns
    /// the health change, if any (reported here, not again by [`tick`](Self::tick)).
    pub fn stream_updated(
        &self,
        issuer: &str,
        status: StreamStatus,
        now: UnixTime,
    ) -> Option<HealthChange> {
        let (change, dropped) = self.with(|c| {
            let ch = c.get_mut(issuer)?;
            let mut dropped = Vec::new();
            if status != ch.status {
                match status {
                    StreamStatus::Enabled => {
                        ch.since = Some(now);
                        ch.asap = true;
                    }
                    StreamStatus::Paused | StreamStatus::Disabled => {
                        ch.pending = None;
                        ch.last_verified = None;
                        dropped.clone_from(&ch.subject_issuers);
                    }
                }
                ch.status = status;
            }
            let health = ch.health(now);
            let change = (health != ch.reported).then(|| HealthChange {
                transmitter: issuer.to_owned(),
                from: ch.reported,
                to: health,
                at: now,
            });
            ch.reported = health;
            Some((change, dropped))
        })?;
        for idp in &dropped {
            self.revoker.forget_channel(idp);
        }
        change
    }

    /// The health of `issuer`'s channel at `now`, `None` when it is not tracked.
    pub fn health(&self, issuer: &str, now: UnixTime) -> Option<ChannelHealth> {
        self.with(|c| c.get(issuer).map(|ch| ch.health(now)))
    }

    /// When `issuer`'s last requested verification arrived.
    pub fn last_verified(&self, issuer: &str) -> Option<UnixTime> {
        self.with(|c| c.get(issuer).and_then(|ch| ch.last_verified))
    }

    /// The stream status `issuer` last reported (enabled until told otherwise).
    pub fn status(&self, issuer: &str) -> Option<StreamStatus> {
        self.with(|c| c.get(issuer).map(|ch| ch.status))
    }
}
