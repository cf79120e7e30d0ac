//! RV-14 on Redis (feature `redis`): the `RedisLedger` keeps the ledger's rules (RV-28
//! max-only watermarks, D-38 inclusive comparison, disabled flags until enabled, token denials
//! until `exp`), and resource-server mirrors tailing its stream (RV-15, RV-16) see every change
//! once and in order: across a killed tail connection, a trimmed stream (snapshot reload) and
//! a restarted redis-server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ema_grant::RedisLedger;
use ema_grant::redis_ledger::tail_mirror;
use ema_grant::revocation::{
    LedgerChange, LedgerError, LedgerMirror, LedgerVerdict, MirrorListener, MirrorVerdict,
    RevocationKind, RevocationLedger, RevocationReason, RevocationScope,
};

use crate::redis_server::RedisServer;
use crate::support::NOW;

const AS: &str = "https://auth.tasks.example";
const IDP: &str = "https://idp.acme.example";

fn ledger(server: &RedisServer) -> RedisLedger {
    RedisLedger::open(&server.url())
        .expect("url")
        .with_block(Duration::from_millis(50))
}

fn local() -> RevocationScope {
    RevocationScope::local(AS)
}

fn idp() -> RevocationScope {
    RevocationScope::idp(IDP, Some("acme"))
}

fn revoked(v: MirrorVerdict) -> bool {
    matches!(v, MirrorVerdict::Revoked(_))
}

/// Polls `cond` until it holds (at most 10 s): the tail task runs on its own.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv28_d38_watermarks_are_max_only_and_inclusive() {
    let server = RedisServer::start();
    let l = ledger(&server);
    let t = NOW;
    let kind = RevocationKind::SessionRevoked;
    assert_eq!(l.revoke_subject(&idp(), "00u1", t, kind, t).await, Ok(t));
    // RV-28: an earlier watermark changes nothing and reports the one in force.
    assert_eq!(
        l.revoke_subject(&idp(), "00u1", t.minus(30), kind, t).await,
        Ok(t)
    );
    // D-38: iat == watermark is revoked, one second later is allowed.
    assert_eq!(
        l.check_id_jag(IDP, Some("acme"), "00u1", t).await,
        Ok(LedgerVerdict::Revoked(RevocationReason::Watermark {
            at: t,
            kind
        }))
    );
    assert_eq!(
        l.check_id_jag(IDP, Some("acme"), "00u1", t.plus(1)).await,
        Ok(LedgerVerdict::Allowed)
    );
    // Controls: another subject, another tenant are untouched.
    assert_eq!(
        l.check_id_jag(IDP, Some("acme"), "00u2", t).await,
        Ok(LedgerVerdict::Allowed)
    );
    assert_eq!(
        l.check_id_jag(IDP, Some("other"), "00u1", t).await,
        Ok(LedgerVerdict::Allowed)
    );
    // A later watermark raises it; the key's TTL is the retention after the watermark.
    assert_eq!(
        l.revoke_subject(&idp(), "00u1", t.plus(10), kind, t).await,
        Ok(t.plus(10))
    );
    assert_eq!(
        l.check_id_jag(IDP, Some("acme"), "00u1", t.plus(10)).await,
        Ok(LedgerVerdict::Revoked(RevocationReason::Watermark {
            at: t.plus(10),
            kind
        }))
    );
    // Two of the three writes changed something: two stream entries.
    assert_eq!(server.command(&["XLEN", &l.stream_key()]).trim(), ":2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv28_disabled_until_enabled_and_enable_keeps_old_tokens_dead() {
    let server = RedisServer::start();
    let l = ledger(&server);
    let t = NOW;
    let kind = RevocationKind::AccountDisabled;
    l.revoke_subject(&idp(), "00u1", t, kind, t).await.unwrap();
    l.disable(&idp(), "00u1", kind, t).await.unwrap();
    // Disabled: every ID-JAG is refused, however recent.
    assert_eq!(
        l.check_id_jag(IDP, Some("acme"), "00u1", t.plus(3600))
            .await,
        Ok(LedgerVerdict::Revoked(RevocationReason::Disabled { kind }))
    );
    l.enable(&idp(), "00u1", t.plus(60)).await.unwrap();
    assert_eq!(
        l.check_id_jag(IDP, Some("acme"), "00u1", t.plus(3600))
            .await,
        Ok(LedgerVerdict::Allowed)
    );
    assert!(matches!(
        l.check_id_jag(IDP, Some("acme"), "00u1", t).await,
        Ok(LedgerVerdict::Revoked(RevocationReason::Watermark { .. }))
    ));
    // Enabling twice or disabling twice logs nothing more: watermark, disabled, enabled.
    l.enable(&idp(), "00u1", t.plus(61)).await.unwrap();
    assert_eq!(server.command(&["XLEN", &l.stream_key()]).trim(), ":3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv15_snapshot_and_tail_feed_a_mirror() {
    let server = RedisServer::start();
    let writer = ledger(&server);
    let reader = ledger(&server);
    let mirror = LedgerMirror::new();
    let t = NOW;
    // Before the first sync the mirror is stale (RV-16); state written before it comes in the
    // snapshot.
    assert_eq!(
        mirror.check_access_token(AS, "u-1", t, "j", t),
        MirrorVerdict::Stale
    );
    writer
        .revoke_subject(&local(), "u-1", t, RevocationKind::Admin, t)
        .await
        .unwrap();
    writer
        .deny_token(AS, "jti-9", t.plus(300), t)
        .await
        .unwrap();
    mirror.sync(&reader, t).await.unwrap();
    assert!(revoked(mirror.check_access_token(AS, "u-1", t, "j", t)));
    assert!(revoked(mirror.check_access_token(AS, "u-2", t, "jti-9", t)));
    assert_eq!(
        mirror.check_access_token(AS, "u-2", t, "jti-8", t),
        MirrorVerdict::Allowed
    );
    // Changes after the snapshot come from the stream.
    writer
        .disable(&local(), "u-2", RevocationKind::AccountDisabled, t)
        .await
        .unwrap();
    assert_eq!(mirror.sync(&reader, t).await, Ok(1));
    assert!(revoked(mirror.check_access_token(
        AS,
        "u-2",
        t.plus(9),
        "jti-8",
        t
    )));
    // Nothing new: an empty answer after the block time, and the mirror stays fresh.
    assert_eq!(mirror.sync(&reader, t.plus(30)).await, Ok(0));
    assert!(!mirror.is_stale(t.plus(60)));
    // The denial's key lives until the token's exp.
    let ttl: u64 = server.command(&["TTL", &format!("{{ema}}:rv:j:{}", hex_digest(AS, "jti-9"))])
        [1..]
        .trim()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&ttl), "{ttl}");
}

fn hex_digest(issuer: &str, jti: &str) -> String {
    ema_grant::revocation::token_digest(issuer, jti)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv16_a_trimmed_stream_makes_the_mirror_reload_a_snapshot() {
    let server = RedisServer::start();
    let writer = ledger(&server).with_stream_cap(10);
    let reader = ledger(&server);
    let mirror = LedgerMirror::new();
    mirror.sync(&reader, NOW).await.unwrap();
    let cursor = mirror.cursor().unwrap();
    for i in 0..500 {
        writer
            .revoke_subject(&local(), &format!("u-{i}"), NOW, RevocationKind::Admin, NOW)
            .await
            .unwrap();
    }
    // The stream no longer holds the entries right after the mirror's cursor.
    assert_eq!(
        reader.changes_since(&cursor).await,
        Err(LedgerError::CursorExpired)
    );
    // The stream stays near its cap (trimmed from the front once past cap + a tenth).
    let len: usize = server.command(&["XLEN", &writer.stream_key()])[1..]
        .trim()
        .parse()
        .unwrap();
    assert!((10..=11).contains(&len), "{len}");
    // So the mirror reloads a snapshot and misses nothing.
    assert_eq!(mirror.sync(&reader, NOW).await, Ok(500));
    for i in 0..500 {
        assert!(revoked(mirror.check_access_token(
            AS,
            &format!("u-{i}"),
            NOW,
            "j",
            NOW
        )));
    }
    // Control: a cursor at the end of the stream is fine.
    assert_eq!(mirror.sync(&reader, NOW).await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv16_tail_catches_up_after_its_connection_is_killed() {
    let server = RedisServer::start();
    let writer = ledger(&server);
    let mirror = Arc::new(LedgerMirror::new());
    // Resync only every hour: whatever the mirror learns below comes from the tail.
    let tail = tokio::spawn(tail_mirror(
        ledger(&server),
        Arc::clone(&mirror),
        Duration::from_secs(3600),
        || NOW,
    ));
    eventually("first snapshot", || mirror.synced_at().is_some()).await;
    for i in 0..100 {
        if i == 50 || i == 75 {
            // Every client connection, the tail's blocked XREAD included, is dropped by Redis.
            assert!(
                server
                    .command(&["CLIENT", "KILL", "TYPE", "normal"])
                    .starts_with(':')
            );
        }
        let mut attempts = 0;
        // The writer's own connection is killed too: a write may fail once, then reconnect.
        while writer
            .revoke_subject(&local(), &format!("u-{i}"), NOW, RevocationKind::Admin, NOW)
            .await
            .is_err()
        {
            attempts += 1;
            assert!(attempts < 100, "writer did not reconnect");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    eventually("all 100 changes through the tail", || {
        (0..100).all(|i| revoked(mirror.check_access_token(AS, &format!("u-{i}"), NOW, "j", NOW)))
    })
    .await;
    assert_eq!(
        mirror.check_access_token(AS, "u-100", NOW, "j", NOW),
        MirrorVerdict::Allowed
    );
    tail.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv16_tail_survives_a_redis_restart() {
    let mut server = RedisServer::start();
    let writer = ledger(&server);
    let mirror = Arc::new(LedgerMirror::new());
    let tail = tokio::spawn(tail_mirror(
        ledger(&server),
        Arc::clone(&mirror),
        Duration::from_secs(3600),
        || NOW,
    ));
    eventually("first snapshot", || mirror.synced_at().is_some()).await;
    writer
        .revoke_subject(&local(), "before", NOW, RevocationKind::Admin, NOW)
        .await
        .unwrap();
    eventually("before", || {
        revoked(mirror.check_access_token(AS, "before", NOW, "j", NOW))
    })
    .await;
    server.stop();
    assert!(matches!(
        writer
            .revoke_subject(&local(), "down", NOW, RevocationKind::Admin, NOW)
            .await,
        Err(LedgerError::Unavailable { .. })
    ));
    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(15);
    while writer
        .revoke_subject(&local(), "after", NOW, RevocationKind::Admin, NOW)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "writer did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The tail resumes by itself; what the mirror had stays (this Redis kept nothing).
    eventually("after", || {
        revoked(mirror.check_access_token(AS, "after", NOW, "j", NOW))
    })
    .await;
    assert!(revoked(
        mirror.check_access_token(AS, "before", NOW, "j", NOW)
    ));
    assert_eq!(
        mirror.check_access_token(AS, "down", NOW, "j", NOW),
        MirrorVerdict::Allowed
    );
    tail.abort();
}

/// Records the subjects of the local-space changes it hears, and whether the mirror already
/// revoked them when it heard.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<(String, bool)>>);

impl MirrorListener for Heard {
    fn changed(&self, mirror: &LedgerMirror, change: &LedgerChange) {
        if let LedgerChange::Watermark {
            scope: RevocationScope::Local { .. },
            subject,
            ..
        } = change
        {
            let visible = mirror.revocation(AS, subject, NOW, "j").is_some();
            self.0.lock().unwrap().push((subject.clone(), visible));
        }
    }
}

// RV-18: a mirror fed by the Redis tail tells its listeners (the MCP server's live registry)
// of each change as it applies it, after the change is visible: what closes live sessions at
// every instance; each change once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv18_the_tailed_mirror_tells_its_listeners() {
    let server = RedisServer::start();
    let writer = ledger(&server);
    let mirror = Arc::new(LedgerMirror::new());
    let heard = Arc::new(Heard::default());
    let listener: Arc<dyn MirrorListener> = heard.clone();
    mirror.subscribe(&listener);
    let tail = tokio::spawn(tail_mirror(
        ledger(&server),
        Arc::clone(&mirror),
        Duration::from_secs(3600),
        || NOW,
    ));
    eventually("first snapshot", || mirror.synced_at().is_some()).await;
    for subject in ["u-1", "u-2"] {
        writer
            .revoke_subject(&local(), subject, NOW, RevocationKind::Admin, NOW)
            .await
            .unwrap();
    }
    eventually("both changes heard", || heard.0.lock().unwrap().len() >= 2).await;
    let heard_now = heard.0.lock().unwrap().clone();
    assert_eq!(
        heard_now,
        [("u-1".to_owned(), true), ("u-2".to_owned(), true)]
    );
    tail.abort();
}

/// RV-22, D-38 on Redis: the AS's point check of its own access tokens (one `MGET`) gives the
/// same verdicts as the memory ledger: a denied `jti` until its `exp`, a disabled local
/// subject, a local watermark at or after `iat`; the IdP scope of the same name does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv22_redis_check_access_token_point_lookups() {
    let server = RedisServer::start();
    let l = ledger(&server);
    let now = NOW;
    let kind = RevocationKind::Admin;
    l.deny_token(AS, "jti-denied", now.plus(300), now)
        .await
        .unwrap();
    l.revoke_subject(&local(), "alice", now.minus(1_000), kind, now)
        .await
        .unwrap();
    l.disable(&local(), "bob", kind, now).await.unwrap();
    l.revoke_subject(&idp(), "carol", now.minus(500), kind, now)
        .await
        .unwrap();
    let rows = [
        ("dave", now.minus(900), "jti-denied", true),
        ("dave", now.minus(900), "jti-other", false),
        ("alice", now.minus(1_000), "a1", true),
        ("alice", now.minus(999), "a2", false),
        ("bob", now.minus(1), "b1", true),
        ("carol", now.minus(900), "c1", false),
    ];
    for (sub, iat, jti, want) in rows {
        let verdict = l.check_access_token(AS, sub, iat, jti, now).await.unwrap();
        assert_eq!(
            matches!(verdict, LedgerVerdict::Revoked(_)),
            want,
            "{sub} {jti}: {verdict:?}"
        );
    }
    // Past the token's `exp` its denial no longer answers (the key's TTL may not have run out
    // by the injected clock).
    let later = now.plus(301);
    assert_eq!(
        l.check_access_token(AS, "dave", now.minus(900), "jti-denied", later)
            .await
            .unwrap(),
        LedgerVerdict::Allowed
    );
}
