//! The connect flow's `state`: single-use, short-lived, bound to a provider, bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ema_jose::UnixTime;
use ema_vault::{ConnectError, ConnectStates, Owner, ProviderId, pkce_challenge};

const T0: UnixTime = UnixTime::from_secs(1_000_000);

fn alice() -> Owner {
    Owner::new("acme", "alice").unwrap()
}

fn notes() -> ProviderId {
    ProviderId::new("notes").unwrap()
}

/// The vector was computed independently (Python's `hashlib.sha256` and `base64.urlsafe_b64encode`).
#[test]
fn pkce_challenge_is_base64url_sha256() {
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc"
    );
}

#[test]
fn begin_issues_random_256_bit_states_and_an_s256_pair() {
    let states = ConnectStates::new(600, 100);
    let a = states.begin(&alice(), "s1", &notes(), T0).unwrap();
    let b = states.begin(&alice(), "s1", &notes(), T0).unwrap();
    assert_ne!(a.state, b.state);
    assert_ne!(a.code_verifier.expose(), b.code_verifier.expose());
    assert_eq!(URL_SAFE_NO_PAD.decode(&a.state).unwrap().len(), 32);
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(a.code_verifier.expose())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(a.code_challenge, pkce_challenge(a.code_verifier.expose()));
    let printed = format!("{states:?} {a:?}");
    assert!(!format!("{states:?}").contains(&a.state), "{states:?}");
    assert!(!printed.contains(a.code_verifier.expose()), "{printed}");
}

#[test]
fn finish_returns_the_binding_once() {
    let states = ConnectStates::new(600, 100);
    let start = states.begin(&alice(), "session-7", &notes(), T0).unwrap();
    let pending = states.finish(&start.state, &notes(), T0.plus(599)).unwrap();
    assert_eq!(pending.owner, alice());
    assert_eq!(pending.session, "session-7");
    assert_eq!(pending.provider, notes());
    assert_eq!(pending.code_verifier.expose(), start.code_verifier.expose());
    // Replayed.
    assert_eq!(
        states
            .finish(&start.state, &notes(), T0.plus(1))
            .unwrap_err(),
        ConnectError::Unknown
    );
    assert!(states.is_empty());
}

#[test]
fn a_state_never_issued_is_unknown() {
    let states = ConnectStates::new(600, 100);
    let start = states.begin(&alice(), "s", &notes(), T0).unwrap();
    assert_eq!(
        states.finish("not-a-state", &notes(), T0).unwrap_err(),
        ConnectError::Unknown
    );
    let mut altered = start.state.clone();
    altered.pop();
    assert_eq!(
        states.finish(&altered, &notes(), T0).unwrap_err(),
        ConnectError::Unknown
    );
    // The real one still works.
    assert!(states.finish(&start.state, &notes(), T0).is_ok());
}

#[test]
fn a_state_expires_after_its_ttl_and_is_gone() {
    let states = ConnectStates::new(600, 100);
    let ok = states.begin(&alice(), "s", &notes(), T0).unwrap();
    let late = states.begin(&alice(), "s", &notes(), T0).unwrap();
    assert!(states.finish(&ok.state, &notes(), T0.plus(599)).is_ok());
    assert_eq!(
        states
            .finish(&late.state, &notes(), T0.plus(600))
            .unwrap_err(),
        ConnectError::Expired
    );
    assert_eq!(
        states.finish(&late.state, &notes(), T0).unwrap_err(),
        ConnectError::Unknown
    );
}

#[test]
fn a_state_for_another_provider_is_refused_and_spent() {
    let states = ConnectStates::new(600, 100);
    let github = ProviderId::new("github").unwrap();
    let start = states.begin(&alice(), "s", &notes(), T0).unwrap();
    assert_eq!(
        states.finish(&start.state, &github, T0).unwrap_err(),
        ConnectError::WrongProvider
    );
    // Removed whatever the outcome: the right provider cannot use it afterwards.
    assert_eq!(
        states.finish(&start.state, &notes(), T0).unwrap_err(),
        ConnectError::Unknown
    );
    let control = states.begin(&alice(), "s", &github, T0).unwrap();
    assert_eq!(
        states.finish(&control.state, &github, T0).unwrap().provider,
        github
    );
}

#[test]
fn capacity_is_bounded_and_expired_entries_are_evicted_first() {
    let states = ConnectStates::new(600, 2);
    let first = states.begin(&alice(), "s", &notes(), T0).unwrap();
    let second = states.begin(&alice(), "s", &notes(), T0.plus(300)).unwrap();
    assert_eq!(
        states
            .begin(&alice(), "s", &notes(), T0.plus(599))
            .unwrap_err(),
        ConnectError::Full
    );
    // At T0 + 600 the first has expired: it is evicted to make room.
    let third = states.begin(&alice(), "s", &notes(), T0.plus(600)).unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(
        states
            .finish(&first.state, &notes(), T0.plus(600))
            .unwrap_err(),
        ConnectError::Unknown
    );
    assert_eq!(
        states
            .begin(&alice(), "s", &notes(), T0.plus(601))
            .unwrap_err(),
        ConnectError::Full
    );
    assert!(states.finish(&second.state, &notes(), T0.plus(601)).is_ok());
    assert!(states.finish(&third.state, &notes(), T0.plus(601)).is_ok());
    assert!(
        ConnectStates::new(600, 0)
            .begin(&alice(), "s", &notes(), T0)
            .is_err()
    );
}
