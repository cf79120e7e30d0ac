//! Redis Cluster (feature `redis`): the replay store, the fused redeemer and the revocation
//! ledger with its mirror tail on a private three-master cluster, each through its own cluster
//! connection: an ID-JAG raced at two instances is redeemed once in every round (and keys
//! under several prefixes spread over the masters), the redeemer's script (three keys of one
//! prefix, one slot) answers and shares revocations, and a revocation written at one ledger
//! reaches the other's mirror through the snapshot (a `SCAN` on the slot's node) and the stream
//! tail, also after every client connection was killed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ema_grant::redis_ledger::tail_mirror;
use ema_grant::revocation::{
    LedgerMirror, MirrorVerdict, RevocationKind, RevocationLedger, RevocationScope,
};
use ema_grant::{
    IdJagRedeemer, JwtBearerGrant, RedisConnection, RedisLedger, RedisRedeemer, RedisReplayStore,
    ReplayKey, ReplayKind, Revoke, RevokeAction, Revoker,
};
use ema_id_jag::Directory;
use ema_jose::StaticKeySource;
use serde_json::json;
use tokio::sync::Barrier;

use crate::redis_cluster_server::{MASTERS, RedisCluster};
use crate::support::*;

type Instance = JwtBearerGrant<StaticKeySource, Directory, RedisReplayStore>;

/// Sends the same ID-JAG to both grants through `send` (which releases the two tasks at one
/// moment); the two replies.
async fn race<G, F>(one: &Arc<G>, two: &Arc<G>, jag: &str, send: &F) -> [Reply; 2]
where
    F: Fn(Arc<G>, String) -> tokio::task::JoinHandle<Reply>,
{
    let (a, b) = (
        send(Arc::clone(one), jag.to_owned()),
        send(Arc::clone(two), jag.to_owned()),
    );
    [a.await.expect("task"), b.await.expect("task")]
}

/// Exactly one of the two replies is a token; the other is the replay refusal.
fn exactly_one_token(round: usize, replies: &[Reply; 2]) -> usize {
    let winners: Vec<usize> = (0..2).filter(|&i| replies[i].status == 200).collect();
    assert_eq!(winners.len(), 1, "round {round}: exactly one token");
    let loser = &replies[1 - winners[0]];
    assert_eq!((loser.status, loser.error()), (400, "invalid_grant"));
    assert!(
        loser.description().contains("already used"),
        "{}",
        loser.raw
    );
    winners[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and redis-cli on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn redis_cluster_replay_store_is_single_use_across_two_instances() {
    let cluster = RedisCluster::start();
    let fx = Fx::new();
    let instance = |prefix: &str| -> Arc<Instance> {
        let store = RedisReplayStore::open_cluster(cluster.urls())
            .expect("urls")
            .with_prefix(prefix)
            .expect("prefix");
        assert!(store.connection().is_cluster());
        Arc::new(fx.jwt_bearer(fx.as_key_source(), directory(), store))
    };
    let barrier = Arc::new(Barrier::new(2));
    let send = |grant: Arc<Instance>, jag: String| {
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            barrier.wait().await;
            Reply::check(grant.handle(&Req::bearer(&jag).build(), NOW).await)
        })
    };
    // Ten prefixes, so that their slots fall on more than one master; two instances (two
    // cluster connections) per prefix.
    let mut wins = [0usize; 2];
    for p in 0..10 {
        let prefix = format!("as-{p}");
        let (one, two) = (instance(&prefix), instance(&prefix));
        for round in 0..20 {
            let jag = fx.jag(json!({}));
            let replies = race(&one, &two, &jag, &send).await;
            wins[exactly_one_token(round, &replies)] += 1;
        }
        // The control: distinct ID-JAGs all redeem, at either instance.
        for grant in [&one, &two] {
            let reply = Reply::check(
                grant
                    .handle(&Req::bearer(&fx.jag(json!({}))).build(), NOW)
                    .await,
            );
            assert_eq!(reply.status, 200, "{}", reply.raw);
        }
    }
    let counts = cluster.key_counts();
    println!(
        "redis cluster replay: 200 rounds, wins per instance {wins:?}, keys per master {counts:?}"
    );
    assert_eq!(
        counts.iter().sum::<u64>(),
        10 * (20 + 2),
        "one key per redeemed ID-JAG"
    );
    assert!(
        counts.iter().filter(|&&n| n > 0).count() >= 2,
        "the prefixes' hash tags spread over the masters: {counts:?}"
    );
}

/// One authorization-server instance on the cluster: its grant (fused redemption), its
/// revoker and its replay store, on one cluster connection under `prefix`.
struct Side {
    grant: Arc<AsGrant>,
    revoker: Revoker,
    store: RedisReplayStore,
}

fn side(fx: &Fx, cluster: &RedisCluster, prefix: &str) -> Side {
    let ledger = RedisLedger::open_cluster(cluster.urls())
        .expect("urls")
        .with_prefix(prefix)
        .expect("prefix");
    let store = RedisReplayStore::new(ledger.connection().clone())
        .with_prefix(prefix)
        .expect("prefix");
    let revoker = Revoker::new(ledger.clone(), AS);
    let redeemer: Arc<dyn IdJagRedeemer> = Arc::new(RedisRedeemer::new(ledger, store.clone()));
    Side {
        grant: Arc::new(fx.as_grant_redeeming(revoker.clone(), store.clone(), Some(redeemer))),
        revoker,
        store,
    }
}

/// Whether the replay key of the ID-JAG `jti` exists (asked through the store's own cluster
/// connection, which finds the key's node).
async fn consumed(store: &RedisReplayStore, jti: &str) -> bool {
    let key = store.redis_key(ReplayKey {
        kind: ReplayKind::IdJag,
        issuer: IDP,
        jti,
    });
    let mut conn: RedisConnection = store.connection().clone();
    let n: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and redis-cli on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn redis_cluster_fused_redeemer_redeems_once_and_shares_revocations() {
    let cluster = RedisCluster::start();
    let fx = Fx::new();
    let (one, two) = (side(&fx, &cluster, "ema"), side(&fx, &cluster, "ema"));
    let barrier = Arc::new(Barrier::new(2));
    let send = |grant: Arc<AsGrant>, jag: String| {
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            barrier.wait().await;
            Reply::check(grant.handle(&Req::bearer(&jag).build(), NOW).await)
        })
    };
    let mut wins = [0usize; 2];
    for round in 0..100 {
        let jag = fx.jag(json!({}));
        let replies = race(&one.grant, &two.grant, &jag, &send).await;
        wins[exactly_one_token(round, &replies)] += 1;
    }
    println!("redis cluster fused redemption: 100 rounds, wins per instance {wins:?}");
    // A revocation written through one instance (a Lua script on the record, the stream and
    // the trim mark) is refused at the other, whose script leaves the `jti` unconsumed; the
    // control (an ID-JAG issued after the watermark) redeems.
    let revoke = Revoke {
        scope: RevocationScope::idp(IDP, None),
        subject: USER.into(),
        at: NOW.minus(10),
        action: RevokeAction::Revoke(RevocationKind::SessionRevoked),
    };
    one.revoker.apply(&revoke, NOW).await.expect("revoke");
    let refused = Reply::check(
        two.grant
            .handle(
                &Req::bearer(&fx.jag(json!({"jti": "x-1", "iat": at(-10)}))).build(),
                NOW,
            )
            .await,
    );
    assert_eq!((refused.status, refused.error()), (400, "invalid_grant"));
    assert!(refused.description().contains("revoked"), "{}", refused.raw);
    assert!(!consumed(&two.store, "x-1").await);
    let later = Reply::check(
        two.grant
            .handle(
                &Req::bearer(&fx.jag(json!({"jti": "x-2", "iat": at(-9)}))).build(),
                NOW,
            )
            .await,
    );
    assert_eq!(later.status, 200, "{}", later.raw);
    assert!(consumed(&one.store, "x-2").await);
}

const LOCAL_AS: &str = AS;

fn local() -> RevocationScope {
    RevocationScope::local(LOCAL_AS)
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
#[ignore = "needs redis-server and redis-cli on PATH: run by .ci/run's step `redis tests` (cargo test -- --ignored redis)"]
async fn redis_cluster_ledger_revocation_at_one_reaches_the_others_mirror() {
    let cluster = RedisCluster::start();
    let writer = RedisLedger::open_cluster(cluster.urls())
        .expect("urls")
        .with_prefix("tasks")
        .expect("prefix");
    let reader = RedisLedger::open_cluster(cluster.urls())
        .expect("urls")
        .with_prefix("tasks")
        .expect("prefix")
        .with_block(Duration::from_millis(50));
    let t = NOW;
    // Written before the mirror starts: it comes in the snapshot (SCAN on the slot's node).
    writer
        .revoke_subject(&local(), "u-1", t, RevocationKind::Admin, t)
        .await
        .expect("revoke");
    writer
        .deny_token(LOCAL_AS, "jti-9", t.plus(300), t)
        .await
        .expect("deny");
    let mirror = Arc::new(LedgerMirror::new());
    // A resync far away: after the first snapshot, only the stream tail delivers.
    let task = tokio::spawn(tail_mirror(
        reader.clone(),
        Arc::clone(&mirror),
        Duration::from_secs(3600),
        move || t,
    ));
    eventually("the snapshot", || {
        revoked(mirror.check_access_token(LOCAL_AS, "u-1", t, "j", t))
    })
    .await;
    assert!(revoked(
        mirror.check_access_token(LOCAL_AS, "u-2", t, "jti-9", t)
    ));
    // The controls: another subject and another token pass.
    assert_eq!(
        mirror.check_access_token(LOCAL_AS, "u-2", t, "jti-8", t),
        MirrorVerdict::Allowed
    );
    assert_eq!(
        mirror.check_access_token(LOCAL_AS, "u-1", t.plus(1), "j", t),
        MirrorVerdict::Allowed
    );
    // After the snapshot: the stream tail (XREAD BLOCK on the stream's node).
    writer
        .disable(&local(), "u-2", RevocationKind::AccountDisabled, t)
        .await
        .expect("disable");
    eventually("the tail", || {
        revoked(mirror.check_access_token(LOCAL_AS, "u-2", t.plus(9), "jti-8", t))
    })
    .await;
    // Every client connection on every node killed (the tail's blocked XREAD included): the
    // tail reconnects and catches up from its cursor.
    for port in cluster.ports() {
        let reply = cluster.command(port, &["CLIENT", "KILL", "TYPE", "normal"]);
        assert!(reply.starts_with(':'), "{reply}");
    }
    // The writer's connection was killed too: its next command may fail while it reconnects.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = writer
        .revoke_subject(&local(), "u-3", t, RevocationKind::Admin, t)
        .await
    {
        assert!(
            Instant::now() < deadline,
            "no write within 10 s of the kill: {e}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("the tail after the kill", || {
        revoked(mirror.check_access_token(LOCAL_AS, "u-3", t, "j", t))
    })
    .await;
    assert_eq!(
        mirror.check_access_token(LOCAL_AS, "u-4", t, "j", t),
        MirrorVerdict::Allowed
    );
    task.abort();
    // Every key of the ledger is on one master: the prefix's hash tag.
    let counts = cluster.key_counts();
    assert_eq!(counts.iter().filter(|&&n| n > 0).count(), 1, "{counts:?}");
    assert_eq!(counts.len(), MASTERS);
}
