//! RV-11 + SEC-1 in one Redis round trip (feature `redis`): the `RedisRedeemer` script gives
//! the jwt-bearer grant exactly the answers of the two steps it replaces (the ledger's `MGET`
//! of the IdP subject's disabled flag and watermark, then the replay store's `SET NX PX`) over
//! a revocation matrix, leaves a revoked ID-JAG's `jti` unconsumed, fails closed with Redis
//! down (503) and recovers by itself, and lets two instances redeem one ID-JAG once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ema_grant::revocation::{RevocationKind, RevocationScope};
use ema_grant::{
    IdJagRedeemer, RedisLedger, RedisRedeemer, RedisReplayStore, ReplayKey, ReplayKind, Revoke,
    RevokeAction, Revoker,
};
use ema_jose::UnixTime;
use serde_json::json;
use tokio::sync::Barrier;

use crate::redis_server::RedisServer;
use crate::support::*;

/// One authorization-server instance on the shared Redis: its grant, its revoker (the admin
/// route's) and its replay store, on one connection under `prefix`.
struct Side {
    grant: Arc<AsGrant>,
    revoker: Revoker,
    store: RedisReplayStore,
}

fn side(fx: &Fx, server: &RedisServer, prefix: &str, fused: bool) -> Side {
    let ledger = RedisLedger::open(&server.url())
        .expect("url")
        .with_prefix(prefix)
        .expect("prefix");
    let store = RedisReplayStore::new(ledger.connection().clone())
        .with_prefix(prefix)
        .expect("prefix");
    let revoker = Revoker::new(ledger.clone(), AS);
    let redeemer = fused
        .then(|| Arc::new(RedisRedeemer::new(ledger, store.clone())) as Arc<dyn IdJagRedeemer>);
    Side {
        grant: Arc::new(fx.as_grant_redeeming(revoker.clone(), store.clone(), redeemer)),
        revoker,
        store,
    }
}

async fn send(grant: &AsGrant, jag: &str) -> Reply {
    Reply::check(grant.handle(&Req::bearer(jag).build(), NOW).await)
}

fn secs(delta: i64) -> UnixTime {
    UnixTime::from_secs(NOW.as_secs().checked_add_signed(delta).unwrap())
}

fn idp_cmd(subject: &str, at: UnixTime, action: RevokeAction) -> Revoke {
    Revoke {
        scope: RevocationScope::idp(IDP, None),
        subject: subject.into(),
        at,
        action,
    }
}

/// Whether the replay key of the ID-JAG `jti` exists on the server.
fn consumed(server: &RedisServer, store: &RedisReplayStore, jti: &str) -> bool {
    let key = store.redis_key(ReplayKey {
        kind: ReplayKind::IdJag,
        issuer: IDP,
        jti,
    });
    match server.command(&["EXISTS", &key]).trim() {
        ":1" => true,
        ":0" => false,
        other => panic!("EXISTS answered {other:?}"),
    }
}

/// One row's outcome: (label, status, error, description contains "revoked", contains
/// "already used", the `jti` consumed afterwards).
type Row = (&'static str, u16, String, bool, bool, bool);

/// Redeems the ID-JAG `jti` of `sub` issued at `iat` (seconds from [`NOW`]) at `s` and
/// reports the row.
async fn row(
    fx: &Fx,
    server: &RedisServer,
    s: &Side,
    label: &'static str,
    jti: &str,
    iat: i64,
    sub: &str,
) -> Row {
    let jag = fx.jag(json!({"jti": jti, "iat": at(iat), "sub": sub}));
    let reply = send(&s.grant, &jag).await;
    (
        label,
        reply.status,
        reply.error().to_owned(),
        reply.description().contains("revoked"),
        reply.description().contains("already used"),
        consumed(server, &s.store, jti),
    )
}

/// The key of `kind` (`w` watermark, `d` disabled flag) of an IdP subject, as the ledger lays
/// it out.
fn subject_key(prefix: &str, kind: &str, subject: &str) -> String {
    let scope = RevocationScope::idp(IDP, None);
    let digest = ema_grant::revocation::subject_digest(&scope, subject);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // The prefix in a hash tag (one Redis Cluster slot for every key of the ledger).
    format!("{{{prefix}}}:rv:{kind}:{hex}")
}

/// Runs the revocation matrix against one side and reports every row.
async fn matrix(fx: &Fx, server: &RedisServer, s: &Side, prefix: &str) -> Vec<Row> {
    let mut rows = vec![
        row(fx, server, s, "allowed", "j-a", -10, USER).await,
        row(fx, server, s, "replay", "j-a", -10, USER).await,
    ];
    let revoke = RevokeAction::Revoke(RevocationKind::SessionRevoked);
    s.revoker
        .apply(&idp_cmd(USER, secs(-10), revoke), NOW)
        .await
        .unwrap();
    rows.push(
        row(
            fx,
            server,
            s,
            "watermark at iat (D-38 inclusive)",
            "j-b",
            -10,
            USER,
        )
        .await,
    );
    rows.push(row(fx, server, s, "watermark after iat", "j-c", -11, USER).await);
    rows.push(
        row(
            fx,
            server,
            s,
            "iat a second after the watermark",
            "j-d",
            -9,
            USER,
        )
        .await,
    );
    rows.push(row(fx, server, s, "another user, same iat", "j-e", -10, READER).await);
    // Disabled with an older watermark: refused for the flag alone.
    let disable = RevokeAction::Disable(RevocationKind::AccountDisabled);
    s.revoker
        .apply(&idp_cmd(USER, secs(-20), disable), NOW)
        .await
        .unwrap();
    rows.push(
        row(
            fx,
            server,
            s,
            "disabled, issued after the watermark",
            "j-f",
            -5,
            USER,
        )
        .await,
    );
    s.revoker
        .apply(&idp_cmd(USER, NOW, RevokeAction::Enable), NOW)
        .await
        .unwrap();
    rows.push(
        row(
            fx,
            server,
            s,
            "re-enabled: the refused ID-JAG redeems",
            "j-f",
            -5,
            USER,
        )
        .await,
    );
    rows.push(
        row(
            fx,
            server,
            s,
            "re-enabled: then it is a replay",
            "j-f",
            -5,
            USER,
        )
        .await,
    );
    rows.push(
        row(
            fx,
            server,
            s,
            "re-enabled: the old one stays refused",
            "j-b",
            -10,
            USER,
        )
        .await,
    );
    // A watermark record that is not one: no verdict, so no token and no `jti` consumed.
    let key = subject_key(prefix, "w", READER);
    assert_eq!(server.command(&["SET", &key, "{\"no\":1}"]).trim(), "+OK");
    rows.push(
        row(
            fx,
            server,
            s,
            "corrupt watermark record",
            "j-g",
            -10,
            READER,
        )
        .await,
    );
    assert_eq!(server.command(&["DEL", &key]).trim(), ":1");
    rows.push(row(fx, server, s, "corrupt record removed", "j-g", -10, READER).await);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv11_sec1_redis_fused_redemption_matches_the_two_steps() {
    let server = RedisServer::start();
    let fx = Fx::new();
    // Each side under its own prefix, so the same ID-JAGs meet fresh state on each.
    let two_step = side(&fx, &server, "two-step", false);
    let fused = side(&fx, &server, "fused", true);
    let expected = matrix(&fx, &server, &two_step, "two-step").await;
    let got = matrix(&fx, &server, &fused, "fused").await;
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(g, e, "fused vs two-step");
    }
    assert_eq!(got.len(), expected.len());
    // And the answers are the right ones, not merely equal.
    let ok = |label| (label, 200, String::new(), false, false, true);
    let revoked = |label| (label, 400, "invalid_grant".to_owned(), true, false, false);
    let unavailable = |label| {
        let e = "temporarily_unavailable".to_owned();
        (label, 503, e, false, false, false)
    };
    assert_eq!(
        got,
        vec![
            ok("allowed"),
            ("replay", 400, "invalid_grant".to_owned(), false, true, true),
            revoked("watermark at iat (D-38 inclusive)"),
            revoked("watermark after iat"),
            ok("iat a second after the watermark"),
            ok("another user, same iat"),
            revoked("disabled, issued after the watermark"),
            ok("re-enabled: the refused ID-JAG redeems"),
            (
                "re-enabled: then it is a replay",
                400,
                "invalid_grant".to_owned(),
                false,
                true,
                true
            ),
            revoked("re-enabled: the old one stays refused"),
            unavailable("corrupt watermark record"),
            ok("corrupt record removed"),
        ]
    );
}

/// The commands the server ran for one redemption at `s` (from `INFO commandstats`).
async fn commands_of_one_redemption(fx: &Fx, server: &RedisServer, s: &Side) -> String {
    assert_eq!(server.command(&["CONFIG", "RESETSTAT"]).trim(), "+OK");
    assert_eq!(send(&s.grant, &fx.jag(json!({}))).await.status, 200);
    server.command(&["INFO", "commandstats"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn redis_fused_redemption_is_one_script_call_not_mget_then_set() {
    let server = RedisServer::start();
    let fx = Fx::new();
    let two_step = commands_of_one_redemption(&fx, &server, &side(&fx, &server, "a", false)).await;
    assert!(two_step.contains("cmdstat_mget:calls=1,"), "{two_step}");
    assert!(two_step.contains("cmdstat_set:calls=1,"), "{two_step}");
    let fused = side(&fx, &server, "b", true);
    // The first call loads the script (EVALSHA, NOSCRIPT, EVAL); from then on one EVALSHA.
    commands_of_one_redemption(&fx, &server, &fused).await;
    let stats = commands_of_one_redemption(&fx, &server, &fused).await;
    assert!(stats.contains("cmdstat_evalsha:calls=1,"), "{stats}");
    assert!(!stats.contains("cmdstat_mget"), "{stats}");
    assert!(!stats.contains("cmdstat_eval:"), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv14_redis_down_fused_redemption_fails_closed_and_recovers() {
    let mut server = RedisServer::start();
    let fx = Fx::new();
    let s = side(&fx, &server, "ema", true);
    assert_eq!(send(&s.grant, &fx.jag(json!({}))).await.status, 200);

    server.stop();
    let jag = fx.jag(json!({}));
    for _ in 0..3 {
        let started = Instant::now();
        let reply = send(&s.grant, &jag).await;
        assert_eq!(
            (reply.status, reply.error()),
            (503, "temporarily_unavailable"),
            "{}",
            reply.raw
        );
        assert!(reply.body.get("access_token").is_none());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    server.start_again();
    // No restart of the grant: 503 until the connection is back, never a token without both
    // checks, then the ID-JAG redeems once.
    let deadline = Instant::now() + Duration::from_secs(15);
    let reply = loop {
        let reply = send(&s.grant, &jag).await;
        if reply.status != 503 {
            break reply;
        }
        assert!(Instant::now() < deadline, "no recovery within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(reply.status, 200, "{}", reply.raw);
    let again = send(&s.grant, &jag).await;
    assert_eq!((again.status, again.error()), (400, "invalid_grant"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn sec1_rv11_redis_fused_two_instances_redeem_once_and_share_revocations() {
    let server = RedisServer::start();
    let fx = Fx::new();
    // Two instances, each with its own connections, same Redis and prefix.
    let (one, two) = (
        side(&fx, &server, "ema", true),
        side(&fx, &server, "ema", true),
    );
    let mut wins = [0usize; 2];
    for round in 0..100 {
        let jag = fx.jag(json!({}));
        let barrier = Arc::new(Barrier::new(2));
        let spawn = |grant: Arc<AsGrant>| {
            let (barrier, jag) = (Arc::clone(&barrier), jag.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                send(&grant, &jag).await
            })
        };
        let (a, b) = (spawn(Arc::clone(&one.grant)), spawn(Arc::clone(&two.grant)));
        let replies = [a.await.unwrap(), b.await.unwrap()];
        let winners: Vec<usize> = (0..2).filter(|&i| replies[i].status == 200).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one token");
        wins[winners[0]] += 1;
        let loser = &replies[1 - winners[0]];
        assert_eq!((loser.status, loser.error()), (400, "invalid_grant"));
        assert!(
            loser.description().contains("already used"),
            "{}",
            loser.raw
        );
    }
    println!("redis fused redemption: 100 rounds, wins per instance {wins:?}");
    // A revocation written through one instance is refused at the other, and its `jti` is
    // left unconsumed; the control (a later ID-JAG) redeems.
    let revoke = RevokeAction::Revoke(RevocationKind::SessionRevoked);
    one.revoker
        .apply(&idp_cmd(USER, secs(-10), revoke), NOW)
        .await
        .unwrap();
    let refused = send(&two.grant, &fx.jag(json!({"jti": "x-1", "iat": at(-10)}))).await;
    assert_eq!((refused.status, refused.error()), (400, "invalid_grant"));
    assert!(!consumed(&server, &two.store, "x-1"));
    let later = send(&two.grant, &fx.jag(json!({"jti": "x-2", "iat": at(-9)}))).await;
    assert_eq!(later.status, 200, "{}", later.raw);
    assert!(consumed(&server, &one.store, "x-2"));
}
