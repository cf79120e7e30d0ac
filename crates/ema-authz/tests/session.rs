//! The session tracker: what it records, expiry by the injected clock, and the cap on
//! tracked sessions failing closed.

mod common;

use std::time::Duration;

use common::{FakeClock, SERVER, annotations};
use ema_authz::session::UNTRUSTED_CONTENT;
use ema_authz::{SessionError, SessionId, SessionTracker, ToolCall};

fn call(tool: &str, read_only: bool, destructive: bool, open_world: bool) -> ToolCall {
    ToolCall::new(SERVER, tool, Default::default()).with_annotations(annotations(
        read_only,
        destructive,
        open_world,
    ))
}

fn tracker(clock: &FakeClock, ttl: u64, max: usize) -> SessionTracker {
    SessionTracker::new(Duration::from_secs(ttl), max, clock.source())
}

#[test]
fn records_tools_counts_destructive_calls_and_open_world_labels() {
    let clock = FakeClock::at(1_000);
    let sessions = tracker(&clock, 60, 10);
    let id = SessionId::new("s1");
    sessions
        .record(&id, &call("query", true, false, false))
        .unwrap();
    sessions
        .record(&id, &call("query", true, false, false))
        .unwrap();
    let after_reads = sessions.snapshot(&id).unwrap();
    assert_eq!(after_reads.count("query"), 2);
    assert_eq!(after_reads.total_calls, 2);
    assert_eq!(after_reads.destructive_calls, 0);
    assert!(
        after_reads.labels.is_empty(),
        "closed-world reads raise nothing"
    );

    sessions
        .record(&id, &call("drop_table", false, true, false))
        .unwrap();
    // Absent hints take MCP's defaults: destructive and open-world.
    sessions
        .record(&id, &ToolCall::new(SERVER, "fetch", Default::default()))
        .unwrap();
    let context = sessions.snapshot(&id).unwrap();
    assert_eq!(context.count("drop_table"), 1);
    assert_eq!(context.count("fetch"), 1);
    assert_eq!(context.count("never"), 0);
    assert_eq!(context.total_calls, 4);
    assert_eq!(context.destructive_calls, 2);
    assert!(context.has_label(UNTRUSTED_CONTENT));

    sessions.add_labels(&id, ["secret_read"]).unwrap();
    assert!(sessions.snapshot(&id).unwrap().has_label("secret_read"));
    // Another session is separate.
    assert_eq!(
        sessions.snapshot(&SessionId::new("s2")).unwrap(),
        Default::default()
    );
}

#[test]
fn sessions_expire_after_the_idle_ttl_and_activity_extends_them() {
    let clock = FakeClock::at(1_000);
    let sessions = tracker(&clock, 60, 10);
    let id = SessionId::new("s1");
    sessions.add_labels(&id, ["secret_read"]).unwrap();

    clock.advance(60); // idle exactly the TTL: still tracked
    assert!(sessions.snapshot(&id).unwrap().has_label("secret_read"));
    clock.advance(60); // the snapshot above was activity: 60 s idle again, still tracked
    assert!(sessions.snapshot(&id).unwrap().has_label("secret_read"));
    clock.advance(61); // idle past the TTL: forgotten
    assert!(!sessions.snapshot(&id).unwrap().has_label("secret_read"));
    assert_eq!(sessions.len(), 0);

    // The same id starts afresh.
    sessions
        .record(&id, &call("query", true, false, false))
        .unwrap();
    assert_eq!(sessions.snapshot(&id).unwrap().total_calls, 1);
}

#[test]
fn a_snapshot_does_not_start_tracking_a_session() {
    let clock = FakeClock::at(0);
    let sessions = tracker(&clock, 60, 10);
    assert_eq!(
        sessions.snapshot(&SessionId::new("s1")).unwrap(),
        Default::default()
    );
    assert!(sessions.is_empty());
}

#[test]
fn a_full_tracker_refuses_new_sessions_and_keeps_the_existing_ones() {
    let clock = FakeClock::at(1_000);
    let sessions = tracker(&clock, 60, 2);
    let (a, b, c) = (
        SessionId::new("a"),
        SessionId::new("b"),
        SessionId::new("c"),
    );
    sessions.add_labels(&a, ["secret_read"]).unwrap();
    clock.advance(30);
    sessions
        .record(&b, &call("query", true, false, false))
        .unwrap();

    let refused = sessions.record(&c, &call("query", true, false, false));
    assert_eq!(refused, Err(SessionError::TooManySessions { max: 2 }));
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("too many tracked sessions"), "{message}");
    assert!(
        sessions.snapshot(&c).is_err(),
        "the refused session is not visible either"
    );
    // Existing sessions continue, with their state intact: nothing was evicted early.
    sessions
        .record(&a, &call("query", true, false, false))
        .unwrap();
    assert!(sessions.snapshot(&a).unwrap().has_label("secret_read"));
    assert_eq!(sessions.len(), 2);

    // Once `b` has been idle past the TTL, its room goes to `c`; `a` stays (it was used).
    clock.advance(40);
    sessions
        .record(&a, &call("query", true, false, false))
        .unwrap();
    clock.advance(21);
    sessions
        .record(&c, &call("query", true, false, false))
        .unwrap();
    assert_eq!(
        sessions.snapshot(&b).unwrap_err(),
        SessionError::TooManySessions { max: 2 }
    );
    assert!(sessions.snapshot(&a).unwrap().has_label("secret_read"));
    assert_eq!(sessions.snapshot(&c).unwrap().total_calls, 1);
}

#[test]
fn a_refusal_is_retried_each_new_second_and_ending_a_session_frees_room() {
    let clock = FakeClock::at(1_000);
    let sessions = tracker(&clock, 10, 1);
    let (a, b) = (SessionId::new("a"), SessionId::new("b"));
    sessions.add_labels(&a, ["x"]).unwrap();
    clock.advance(10);
    assert!(sessions.add_labels(&b, ["y"]).is_err());
    clock.advance(1); // `a` expires now: the next attempt sweeps again
    sessions.add_labels(&b, ["y"]).unwrap();
    assert!(sessions.add_labels(&a, ["x"]).is_err());
    assert!(sessions.end_session(&b));
    assert!(!sessions.end_session(&b));
    sessions.add_labels(&a, ["x"]).unwrap();
}

#[test]
fn evict_expired_forgets_only_idle_sessions() {
    let clock = FakeClock::at(1_000);
    let sessions = tracker(&clock, 60, 10);
    sessions.add_labels(&SessionId::new("old"), ["x"]).unwrap();
    clock.advance(50);
    sessions.add_labels(&SessionId::new("new"), ["x"]).unwrap();
    clock.advance(11);
    assert_eq!(sessions.evict_expired(), 1);
    assert_eq!(sessions.len(), 1);
    assert!(
        sessions
            .snapshot(&SessionId::new("new"))
            .unwrap()
            .has_label("x")
    );
}

#[test]
fn with_session_runs_under_the_sessions_lock_across_threads() {
    let clock = FakeClock::at(0);
    let sessions = tracker(&clock, 60, 10);
    let id = SessionId::new("s1");
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..100 {
                    sessions
                        .with_session(&id, |context| {
                            // A read-modify-write that would lose updates without the lock.
                            let seen = context.total_calls;
                            std::thread::yield_now();
                            context.total_calls = seen + 1;
                        })
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(sessions.snapshot(&id).unwrap().total_calls, 800);
}
