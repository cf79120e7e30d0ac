//! SEC-1 / AS-7 / D-6 across instances (feature `redis`): two jwt-bearer grants, two "AS
//! instances" with their own Redis connections, share one private `redis-server`. The same
//! ID-JAG (or DPoP proof) sent to both at once is redeemed exactly once in every round; Redis
//! stopped mid-run fails closed with 503 `temporarily_unavailable` and service resumes by
//! itself once Redis is back; a Redis slower than the timeout fails closed too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ema_grant::{JwtBearerGrant, RedisReplayStore, ReplayKey, ReplayKind, ReplayStore, Seen};
use ema_id_jag::Directory;
use ema_jose::{StaticKeySource, TimeOptions};
use serde_json::json;
use tokio::sync::Barrier;

use crate::redis_server::RedisServer;
use crate::support::*;

type Instance = JwtBearerGrant<StaticKeySource, Directory, RedisReplayStore>;

const ROUNDS: usize = 200;

fn instance(fx: &Fx, server: &RedisServer, prefix: &str) -> Arc<Instance> {
    let store = RedisReplayStore::open(&server.url())
        .expect("url")
        .with_prefix(prefix)
        .expect("prefix");
    Arc::new(fx.jwt_bearer(fx.as_key_source(), directory(), store))
}

/// Sends `a` to instance `x` and `b` to instance `y` at the same moment (two tasks released by
/// one barrier on a multi-threaded runtime).
async fn race(
    x: &Arc<Instance>,
    a: http::Request<Vec<u8>>,
    y: &Arc<Instance>,
    b: http::Request<Vec<u8>>,
) -> [Reply; 2] {
    let barrier = Arc::new(Barrier::new(2));
    let spawn = |grant: Arc<Instance>, request: http::Request<Vec<u8>>| {
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            barrier.wait().await;
            Reply::check(grant.handle(&request, NOW).await)
        })
    };
    let (ra, rb) = (spawn(Arc::clone(x), a), spawn(Arc::clone(y), b));
    [ra.await.expect("task"), rb.await.expect("task")]
}

async fn send(grant: &Instance, request: &http::Request<Vec<u8>>) -> Reply {
    Reply::check(grant.handle(request, NOW).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn sec1_same_id_jag_at_two_instances_is_redeemed_once_per_round() {
    let server = RedisServer::start();
    let fx = Fx::new();
    let (one, two) = (instance(&fx, &server, "ema"), instance(&fx, &server, "ema"));
    let mut wins = [0usize; 2];
    for round in 0..ROUNDS {
        let jag = fx.jag(json!({}));
        let replies = race(
            &one,
            Req::bearer(&jag).build(),
            &two,
            Req::bearer(&jag).build(),
        )
        .await;
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
    println!("redis replay: {ROUNDS} rounds, wins per instance {wins:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn sec1_distinct_id_jags_at_two_instances_all_succeed() {
    // The control: sharing Redis refuses nothing that is not a replay, and a prefix is a
    // namespace (instances under different prefixes do not see each other's entries).
    let server = RedisServer::start();
    let fx = Fx::new();
    let (one, two) = (instance(&fx, &server, "ema"), instance(&fx, &server, "ema"));
    for _ in 0..20 {
        let replies = race(
            &one,
            Req::bearer(&fx.jag(json!({}))).build(),
            &two,
            Req::bearer(&fx.jag(json!({}))).build(),
        )
        .await;
        assert!(replies.iter().all(|r| r.status == 200));
    }
    let other = instance(&fx, &server, "other-as");
    let jag = fx.jag(json!({}));
    assert_eq!(send(&one, &Req::bearer(&jag).build()).await.status, 200);
    assert_eq!(send(&other, &Req::bearer(&jag).build()).await.status, 200);
    assert_eq!(send(&two, &Req::bearer(&jag).build()).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn sec1_same_dpop_proof_at_two_instances_is_accepted_once() {
    // Only the DPoP proof is shared (each request has its own ID-JAG): one token, and the
    // other instance refuses the replayed proof.
    let server = RedisServer::start();
    let fx = Fx::new();
    let (one, two) = (instance(&fx, &server, "ema"), instance(&fx, &server, "ema"));
    for round in 0..50 {
        let proof = fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({}));
        let replies = race(
            &one,
            Req::bearer(&fx.jag(json!({}))).dpop(&proof).build(),
            &two,
            Req::bearer(&fx.jag(json!({}))).dpop(&proof).build(),
        )
        .await;
        let ok = replies.iter().filter(|r| r.status == 200).count();
        assert_eq!(
            ok, 1,
            "round {round}: {} / {}",
            replies[0].raw, replies[1].raw
        );
        let loser = replies.iter().find(|r| r.status != 200).expect("a loser");
        assert_eq!(loser.error(), "invalid_dpop_proof", "{}", loser.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn key_layout_and_ttl_is_the_remaining_lifetime_plus_leeway() {
    let server = RedisServer::start();
    let fx = Fx::new();
    let store = RedisReplayStore::open(&server.url())
        .expect("url")
        .with_prefix("tasks-as")
        .expect("prefix");
    let grant = fx.jwt_bearer(fx.as_key_source(), directory(), store.clone());
    let jti = "jti-ttl-1";
    let jag = fx.jag(json!({"jti": jti}));
    assert_eq!(send(&grant, &Req::bearer(&jag).build()).await.status, 200);
    let key = store.redis_key(ReplayKey {
        kind: ReplayKind::IdJag,
        issuer: IDP,
        jti,
    });
    assert!(key.starts_with("{tasks-as}:rp:") && key.len() == "{tasks-as}:rp:".len() + 64);
    // The ID-JAG expires at NOW + 290; the grant adds the maximum leeway (60 s).
    let expected_ms = (290 + TimeOptions::MAX_LEEWAY.as_secs()) * 1000;
    let pttl: u64 = server.command(&["PTTL", &key])[1..]
        .trim()
        .parse()
        .expect("PTTL is an integer");
    assert!(
        pttl <= expected_ms && pttl > expected_ms - 5_000,
        "PTTL {pttl} vs {expected_ms}"
    );
    // Direct calls: first, then again; an expired token still gets a short-lived entry.
    let k = ReplayKey {
        kind: ReplayKind::ClientAssertion,
        issuer: "client-1",
        jti: "a1",
    };
    assert_eq!(
        store.check_and_insert(k, NOW.plus(10), NOW).await,
        Ok(Seen::First)
    );
    assert_eq!(
        store.check_and_insert(k, NOW.plus(10), NOW).await,
        Ok(Seen::Again)
    );
    let late = ReplayKey { jti: "a2", ..k };
    assert_eq!(
        store.check_and_insert(late, NOW, NOW.plus(5)).await,
        Ok(Seen::First)
    );
    let pttl: u64 = server.command(&["PTTL", &store.redis_key(late)])[1..]
        .trim()
        .parse()
        .expect("integer");
    assert!(pttl > 0 && pttl <= 1000, "{pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn redis_stopped_mid_run_fails_closed_and_service_resumes_without_restart() {
    let mut server = RedisServer::start();
    let fx = Fx::new();
    let grant = instance(&fx, &server, "ema");
    assert_eq!(
        send(&grant, &Req::bearer(&fx.jag(json!({}))).build())
            .await
            .status,
        200
    );

    server.stop();
    let jag = fx.jag(json!({}));
    for _ in 0..3 {
        let started = Instant::now();
        let reply = send(&grant, &Req::bearer(&jag).build()).await;
        assert_eq!(
            (reply.status, reply.error()),
            (503, "temporarily_unavailable"),
            "{}",
            reply.raw
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    server.start_again();
    // The same grant object, no restart: poll until the connection manager has reconnected;
    // every answer meanwhile is a 503, never a token without the check.
    let deadline = Instant::now() + Duration::from_secs(15);
    let reply = loop {
        let reply = send(&grant, &Req::bearer(&jag).build()).await;
        if reply.status != 503 {
            break reply;
        }
        assert!(Instant::now() < deadline, "no recovery within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(reply.status, 200, "{}", reply.raw);
    // And the check is live again: the same ID-JAG is now a replay.
    let again = send(&grant, &Req::bearer(&jag).build()).await;
    assert_eq!((again.status, again.error()), (400, "invalid_grant"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn redis_slower_than_the_timeout_fails_closed() {
    let server = RedisServer::start();
    let fx = Fx::new();
    let store = RedisReplayStore::open(&server.url())
        .expect("url")
        .with_timeout(Duration::from_millis(100));
    let grant = fx.jwt_bearer(fx.as_key_source(), directory(), store);
    let jag = fx.jag(json!({}));
    // Redis holds every write for 1.5 s: the SET is not answered within 100 ms.
    assert!(
        server
            .command(&["CLIENT", "PAUSE", "1500", "WRITE"])
            .starts_with("+OK")
    );
    let started = Instant::now();
    let reply = send(&grant, &Req::bearer(&jag).build()).await;
    assert_eq!(
        (reply.status, reply.error()),
        (503, "temporarily_unavailable")
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "{:?}",
        started.elapsed()
    );
    // Control: once Redis answers again, tokens are issued again (a fresh ID-JAG each try).
    assert!(server.command(&["CLIENT", "UNPAUSE"]).starts_with("+OK"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = send(&grant, &Req::bearer(&fx.jag(json!({}))).build()).await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.raw);
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The timed-out SET had reached Redis and ran once Redis resumed: the first ID-JAG is
    // consumed although no token was issued for it (a timeout cannot tell whether the write
    // landed; failing closed means the client fetches a new ID-JAG).
    let reply = send(&grant, &Req::bearer(&jag).build()).await;
    assert_eq!((reply.status, reply.error()), (400, "invalid_grant"));
}

// RV-8 across instances: a SET key recorded through one instance's Redis store is a duplicate
// at another's; `forget` (the receiver's path when its ledger write fails) frees it for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn rv8_set_dedup_and_forget_across_instances() {
    let server = RedisServer::start();
    let store = || {
        RedisReplayStore::open(&server.url())
            .expect("url")
            .with_prefix("ema")
            .expect("prefix")
    };
    let (one, two) = (store(), store());
    let key = ReplayKey {
        kind: ReplayKind::SecurityEvent,
        issuer: IDP,
        jti: "set-1",
    };
    let week = NOW.plus(7 * 24 * 3600);
    assert_eq!(one.check_and_insert(key, week, NOW).await, Ok(Seen::First));
    assert_eq!(two.check_and_insert(key, week, NOW).await, Ok(Seen::Again));
    assert_eq!(two.forget(key).await, Ok(()));
    assert_eq!(one.check_and_insert(key, week, NOW).await, Ok(Seen::First));
    // Forgetting an absent key succeeds; the same jti as an ID-JAG is another key (control).
    let other = ReplayKey {
        kind: ReplayKind::IdJag,
        ..key
    };
    assert_eq!(one.forget(other).await, Ok(()));
    assert_eq!(
        two.check_and_insert(other, week, NOW).await,
        Ok(Seen::First)
    );
}
