//! The SSF stream-health state machine at fixed times (RV-26, RV-24): verification requested
//! on a schedule and matched by its `state`, wrong states, unanswered requests, overdue
//! channels, paused / disabled / re-enabled streams, and the transmitter's
//! `min_verification_interval`. Each refusal has its positive control, and every row checks
//! the access-token lifetime RV-24 derives from the channel.

use ema_grant::Revoker;
use ema_grant::revocation::MemoryLedger;
use ema_grant::revoke::access_token_lifetime;
use ema_grant::ssf_health::{
    ChannelHealth, StreamHealth, StreamStatus, VerificationMatch, VerificationPolicy,
};
use ema_jose::UnixTime;

use crate::support::{IDP, NOW};

const TX: &str = "https://ssf.idp.example";
const OTHER: &str = "https://idp.other.example";

struct Fx {
    revoker: Revoker,
    health: StreamHealth,
}

impl Fx {
    /// A transmitter `TX` speaking for `IDP`, verified every 300 s (timeout 30, retry 60).
    fn new() -> Self {
        let revoker = Revoker::new(MemoryLedger::new(), "https://as.example");
        let health = StreamHealth::new(revoker.clone());
        health.track(TX, [IDP.to_owned()], Some(VerificationPolicy::default()));
        Self { revoker, health }
    }

    /// The state of the one request due at `at` (panics when there is none).
    fn request(&self, at: UnixTime) -> String {
        let tick = self.health.tick(at);
        assert_eq!(tick.requests.len(), 1, "at {at:?}: {tick:?}");
        assert_eq!(tick.requests[0].transmitter, TX);
        tick.requests[0].state.clone()
    }

    fn no_request(&self, at: UnixTime) {
        let tick = self.health.tick(at);
        assert!(tick.requests.is_empty(), "at {at:?}: {tick:?}");
    }

    /// Requested and answered at `at`.
    fn verify(&self, at: UnixTime) {
        let state = self.request(at);
        assert_eq!(
            self.health.verification(TX, Some(&state), at),
            VerificationMatch::Matched
        );
    }

    /// RV-24: the lifetime of a 3600 s-configured token for a user of `IDP`.
    fn lifetime(&self, at: UnixTime) -> u64 {
        access_token_lifetime(Some(&self.revoker), IDP, 3600, at)
    }

    fn health(&self, at: UnixTime) -> ChannelHealth {
        self.health.health(TX, at).unwrap()
    }
}

// RV-26: the first tick asks; the answer echoing the state verifies the channel, the change is
// reported once; RV-24: 3600 s while verified.
#[test]
fn rv26_requested_verification_verifies_the_channel() {
    let fx = Fx::new();
    assert_eq!(fx.lifetime(NOW), 300);
    let state = fx.request(NOW);
    // A second tick while the request is open asks nothing more.
    fx.no_request(NOW.plus(5));
    assert_eq!(fx.health(NOW.plus(5)), ChannelHealth::Unverified);
    assert_eq!(
        fx.health.verification(TX, Some(&state), NOW.plus(6)),
        VerificationMatch::Matched
    );
    assert_eq!(fx.health(NOW.plus(6)), ChannelHealth::Verified);
    assert_eq!(fx.health.last_verified(TX), Some(NOW.plus(6)));
    assert_eq!(fx.lifetime(NOW.plus(6)), 3600);
    let tick = fx.health.tick(NOW.plus(7));
    assert_eq!(tick.changes.len(), 1);
    let change = &tick.changes[0];
    assert_eq!(
        (change.from, change.to, change.is_alert()),
        (ChannelHealth::Unverified, ChannelHealth::Verified, false)
    );
    assert!(fx.health.tick(NOW.plus(8)).changes.is_empty());
    // The same answer again (a replay) matches nothing.
    assert_eq!(
        fx.health.verification(TX, Some(&state), NOW.plus(9)),
        VerificationMatch::Unmatched
    );
}

// RV-26: a wrong, missing or other transmitter's state matches nothing and leaves the request
// open; the right one (control) still matches afterwards.
#[test]
fn rv26_wrong_state_is_not_a_verification() {
    let fx = Fx::new();
    fx.health.track(
        OTHER,
        [OTHER.to_owned()],
        Some(VerificationPolicy::default()),
    );
    let tick = fx.health.tick(NOW);
    assert_eq!(tick.requests.len(), 2);
    let state = |t: &str| {
        tick.requests
            .iter()
            .find(|r| r.transmitter == t)
            .unwrap()
            .state
            .clone()
    };
    let (ours, theirs) = (state(TX), state(OTHER));
    assert_ne!(ours, theirs);
    for wrong in [Some("wrong"), None, Some(theirs.as_str()), Some("")] {
        assert_eq!(
            fx.health.verification(TX, wrong, NOW.plus(1)),
            VerificationMatch::Unmatched,
            "{wrong:?}"
        );
        assert_eq!(fx.lifetime(NOW.plus(1)), 300);
    }
    // An untracked transmitter never matches.
    assert_eq!(
        fx.health
            .verification("https://unknown.example", Some(&ours), NOW.plus(1)),
        VerificationMatch::Unmatched
    );
    assert_eq!(
        fx.health.verification(TX, Some(&ours), NOW.plus(2)),
        VerificationMatch::Matched
    );
    assert_eq!(fx.lifetime(NOW.plus(2)), 3600);
    // The other transmitter's own state verifies its own IdP only.
    assert!(!fx.revoker.channel_verified(OTHER, NOW.plus(2)));
    assert_eq!(
        fx.health.verification(OTHER, Some(&theirs), NOW.plus(2)),
        VerificationMatch::Matched
    );
    assert!(fx.revoker.channel_verified(OTHER, NOW.plus(2)));
}

// RV-26: an unanswered request times out (30 s) and is retried after 60 s with a new state; a
// late answer to the old one does not count. A failed send is retried the same way.
#[test]
fn rv26_unanswered_request_is_retried() {
    let fx = Fx::new();
    let first = fx.request(NOW);
    let tick = fx.health.tick(NOW.plus(29));
    assert!(tick.unanswered.is_empty() && tick.requests.is_empty());
    let tick = fx.health.tick(NOW.plus(30));
    assert_eq!(tick.unanswered, [TX]);
    assert!(tick.requests.is_empty());
    assert_eq!(
        fx.health.verification(TX, Some(&first), NOW.plus(31)),
        VerificationMatch::Unmatched
    );
    fx.no_request(NOW.plus(59));
    let second = fx.request(NOW.plus(60));
    assert_ne!(first, second);
    fx.health.request_failed(TX, &second, NOW.plus(61));
    fx.no_request(NOW.plus(119));
    let third = fx.request(NOW.plus(120));
    assert_eq!(
        fx.health.verification(TX, Some(&third), NOW.plus(121)),
        VerificationMatch::Matched
    );
}

// RV-26, RV-24: verification every 300 s keeps the channel verified; once the transmitter
// stops answering, the channel is verified up to 900 s after the last answer and overdue
// (an alert) one second later: tokens fall back to 300 s. Never verified at all is overdue
// 900 s after tracking began.
#[test]
fn rv26_overdue_verification_alerts_and_falls_back() {
    let fx = Fx::new();
    fx.verify(NOW);
    fx.health.tick(NOW);
    fx.no_request(NOW.plus(299));
    fx.verify(NOW.plus(300));
    assert_eq!(fx.lifetime(NOW.plus(300)), 3600);
    // From here every request goes unanswered.
    let mut t = NOW.plus(600);
    while t <= NOW.plus(1200) {
        let tick = fx.health.tick(t);
        assert!(tick.changes.is_empty(), "still verified at {t:?}: {tick:?}");
        t = t.plus(30);
    }
    assert_eq!(fx.health(NOW.plus(1200)), ChannelHealth::Verified);
    assert_eq!(fx.lifetime(NOW.plus(1200)), 3600);
    let tick = fx.health.tick(NOW.plus(1201));
    assert_eq!(tick.changes.len(), 1, "{tick:?}");
    let change = &tick.changes[0];
    assert_eq!(
        (change.from, change.to, change.is_alert()),
        (ChannelHealth::Verified, ChannelHealth::Overdue, true)
    );
    assert_eq!(fx.lifetime(NOW.plus(1201)), 300);
    // Reported once; an answer to a new request heals it.
    let state = loop {
        let tick = fx.health.tick(t);
        assert!(tick.changes.is_empty());
        if let Some(r) = tick.requests.first() {
            break r.state.clone();
        }
        t = t.plus(10);
    };
    assert_eq!(
        fx.health.verification(TX, Some(&state), t),
        VerificationMatch::Matched
    );
    let tick = fx.health.tick(t);
    assert_eq!(tick.changes[0].to, ChannelHealth::Verified);
    assert_eq!(fx.lifetime(t), 3600);

    let never = Fx::new();
    never.request(NOW);
    assert_eq!(never.health(NOW.plus(900)), ChannelHealth::Unverified);
    let tick = never.health.tick(NOW.plus(901));
    assert_eq!(tick.changes[0].to, ChannelHealth::Overdue);
}

// RV-26: `stream-updated` paused drops the verified channel at once (alert, 300 s), asks
// nothing while paused, and refuses an answer to a request made before the pause; enabled
// asks again at once and a new answer verifies it (control).
#[test]
fn rv26_paused_then_reenabled() {
    let fx = Fx::new();
    fx.verify(NOW);
    fx.health.tick(NOW);
    let open = fx.request(NOW.plus(300));
    let change = fx
        .health
        .stream_updated(TX, StreamStatus::Paused, NOW.plus(301))
        .unwrap();
    assert_eq!(
        (change.from, change.to, change.is_alert()),
        (ChannelHealth::Verified, ChannelHealth::Paused, true)
    );
    assert_eq!(fx.health.status(TX), Some(StreamStatus::Paused));
    assert_eq!(fx.lifetime(NOW.plus(301)), 300);
    assert_eq!(
        fx.health.verification(TX, Some(&open), NOW.plus(302)),
        VerificationMatch::Unmatched
    );
    // Reported by the update, not again by the tick; nothing is asked while paused.
    let tick = fx.health.tick(NOW.plus(2000));
    assert!(
        tick.changes.is_empty() && tick.requests.is_empty(),
        "{tick:?}"
    );
    // The same status again changes nothing.
    assert_eq!(
        fx.health
            .stream_updated(TX, StreamStatus::Paused, NOW.plus(2001)),
        None
    );
    let change = fx
        .health
        .stream_updated(TX, StreamStatus::Enabled, NOW.plus(2002))
        .unwrap();
    assert_eq!(
        (change.to, change.is_alert()),
        (ChannelHealth::Unverified, false)
    );
    assert_eq!(fx.lifetime(NOW.plus(2002)), 300);
    let state = fx.request(NOW.plus(2002));
    assert_eq!(
        fx.health.verification(TX, Some(&state), NOW.plus(2003)),
        VerificationMatch::Matched
    );
    assert_eq!(fx.lifetime(NOW.plus(2003)), 3600);
}

// RV-26: disabled behaves as paused (alert, 300 s, nothing asked); re-enabled it is overdue
// again only 900 s after the re-enable, not after the old verification.
#[test]
fn rv26_disabled_stream() {
    let fx = Fx::new();
    fx.verify(NOW);
    let change = fx
        .health
        .stream_updated(TX, StreamStatus::Disabled, NOW.plus(10))
        .unwrap();
    assert_eq!(
        (change.from, change.to, change.is_alert()),
        (ChannelHealth::Unverified, ChannelHealth::Disabled, true),
        "the tick had not reported the verification yet"
    );
    assert_eq!(fx.health.last_verified(TX), None);
    assert_eq!(fx.lifetime(NOW.plus(10)), 300);
    fx.no_request(NOW.plus(5000));
    assert_eq!(fx.health(NOW.plus(5000)), ChannelHealth::Disabled);
    fx.health
        .stream_updated(TX, StreamStatus::Enabled, NOW.plus(5000));
    assert_eq!(fx.health(NOW.plus(5900)), ChannelHealth::Unverified);
    assert_eq!(fx.health(NOW.plus(5901)), ChannelHealth::Overdue);
}

// RV-26: the transmitter's `min_verification_interval` holds against the schedule, a retry
// after failure and a re-enable; without it (control) each asks at its own time.
#[test]
fn rv26_min_verification_interval_is_respected() {
    let fx = Fx::new();
    fx.health.set_min_interval(TX, 600);
    fx.verify(NOW);
    fx.no_request(NOW.plus(300));
    fx.no_request(NOW.plus(599));
    let state = fx.request(NOW.plus(600));
    fx.health.request_failed(TX, &state, NOW.plus(601));
    fx.no_request(NOW.plus(660));
    fx.no_request(NOW.plus(1199));
    let state = fx.request(NOW.plus(1200));
    fx.health.request_failed(TX, &state, NOW.plus(1201));
    fx.health
        .stream_updated(TX, StreamStatus::Paused, NOW.plus(1202));
    fx.health
        .stream_updated(TX, StreamStatus::Enabled, NOW.plus(1203));
    fx.no_request(NOW.plus(1203));
    fx.no_request(NOW.plus(1799));
    fx.request(NOW.plus(1800));

    let control = Fx::new();
    control.verify(NOW);
    control.no_request(NOW.plus(299));
    let state = control.request(NOW.plus(300));
    control.health.request_failed(TX, &state, NOW.plus(301));
    control.no_request(NOW.plus(359));
    control.request(NOW.plus(360));
}

// RV-26: a transmitter tracked without a schedule is never asked, never verified and never
// overdue; its status is still followed.
#[test]
fn rv26_unscheduled_transmitter() {
    let revoker = Revoker::new(MemoryLedger::new(), "https://as.example");
    let health = StreamHealth::new(revoker.clone());
    health.track(TX, [IDP.to_owned()], None);
    let tick = health.tick(NOW);
    assert!(tick.requests.is_empty() && tick.changes.is_empty());
    assert_eq!(
        health.verification(TX, Some("anything"), NOW),
        VerificationMatch::Unmatched
    );
    assert_eq!(
        health.health(TX, NOW.plus(5000)),
        Some(ChannelHealth::Unverified)
    );
    assert!(health.tick(NOW.plus(5000)).changes.is_empty());
    assert_eq!(
        health
            .stream_updated(TX, StreamStatus::Paused, NOW)
            .map(|c| c.to),
        Some(ChannelHealth::Paused)
    );
    assert_eq!(health.health("https://unknown.example", NOW), None);
    assert_eq!(health.transmitters(), [TX]);
}
