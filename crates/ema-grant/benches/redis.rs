//! The jwt-bearer grant with its replay store on Redis against the same grant with the
//! in-memory store, in the same run (feature `redis`): criterion's per-request time for each,
//! then requests/s and latency percentiles with 4 and 16 concurrent tasks on a 2-worker Tokio runtime,
//! in alternating rounds. Redis is a private `redis-server` on a Unix socket (started and
//! stopped by the bench; it must be on `PATH`). See docs/benchmarks.md.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark setup fails loudly"
)]

#[path = "../tests/grant/redis_server.rs"]
#[allow(dead_code, unreachable_pub, reason = "shared with the tests")]
mod redis_server;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ema_grant::form::encode_component;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, KeyRing, SigningKey, StaticKeySource, UnixTime};

const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const AS_ISSUER: &str = "https://auth.tasks.example";
const IDP: &str = "https://idp.acme.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";
const BASIC: &str = "Basic dGNfNWYyYTkxOnMzY3IzdA==";

type Grant = JwtBearerGrant<StaticKeySource, Directory, DynReplayStore>;

/// (store, requests/s, p50, p99) of one round.
type Row = (&'static str, f64, Duration, Duration);

fn grant(idp_keys: &Arc<KeyRing>, as_keys: &Arc<KeyRing>, replay: DynReplayStore) -> Arc<Grant> {
    Arc::new(
        JwtBearerGrant::builder(
            AccessTokenIssuer::new(Issuer::new(AS_ISSUER), as_keys.clone()),
            StaticKeySource::new().with_issuer(IDP, idp_keys.jwks()),
            Directory::new().with_subject(IDP, None, "00u8k2Lq91", LocalSubject::new("u-17")),
        )
        .trust(TrustedIssuer::new(IDP))
        .resource(ResourceConfig::new(RESOURCE, ["tasks.read"]))
        .client(RegisteredClient::new(
            "tc_5f2a91",
            ClientCredential::secret("s3cr3t"),
        ))
        .token_endpoint("https://auth.tasks.example/token")
        .replay_store(replay)
        .build_typed()
        .unwrap(),
    )
}

fn body(idp: &IdJagIssuer) -> Vec<u8> {
    let mut g = IdJagGrant::new(
        Subject::new("00u8k2Lq91"),
        Issuer::new(AS_ISSUER),
        ClientId::new("tc_5f2a91"),
    );
    g.resources = vec![Resource::new(RESOURCE)];
    g.scope = Some(ScopeSet::parse("tasks.read").unwrap());
    let jag = idp.issue(g, NOW.minus(10)).unwrap().token;
    format!(
        "grant_type={}&assertion={jag}&resource={}",
        encode_component(JWT_BEARER),
        encode_component(RESOURCE)
    )
    .into_bytes()
}

async fn redeem(grant: &Grant, body: &[u8]) {
    let req = TokenRequest::form(body).with_authorization(BASIC);
    let resp = grant.token(&req, NOW).await;
    assert!(resp.is_ok(), "{resp:?}");
}

/// `bodies` redeemed by `tasks` concurrent tasks: (requests/s, per-request latencies sorted).
fn load(
    rt: &tokio::runtime::Runtime,
    grant: &Arc<Grant>,
    bodies: Vec<Vec<u8>>,
    tasks: usize,
) -> (f64, Vec<Duration>) {
    let n = bodies.len();
    let mut chunks: Vec<Vec<Vec<u8>>> = (0..tasks).map(|_| Vec::new()).collect();
    for (i, b) in bodies.into_iter().enumerate() {
        chunks[i % tasks].push(b);
    }
    let started = Instant::now();
    let mut latencies = rt.block_on(async {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let grant = Arc::clone(grant);
                tokio::spawn(async move {
                    let mut out = Vec::with_capacity(chunk.len());
                    for b in chunk {
                        let t = Instant::now();
                        redeem(&grant, &b).await;
                        out.push(t.elapsed());
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    });
    let rps = n as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (rps, latencies)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let server = redis_server::RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let idp_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
    ));
    let as_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let idp = IdJagIssuer::new(Issuer::new(IDP), idp_keys.clone());
    let memory = grant(
        &idp_keys,
        &as_keys,
        DynReplayStore::new(InMemoryReplayStore::new(4_000_000)),
    );
    let redis = grant(
        &idp_keys,
        &as_keys,
        DynReplayStore::new(RedisReplayStore::open(&server.url()).unwrap()),
    );

    let mut group = c.benchmark_group("jwt_bearer_replay");
    for (name, g) in [("memory", &memory), ("redis", &redis)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || body(&idp),
                |body| rt.block_on(redeem(g, black_box(&body))),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();

    // Concurrent load in alternating rounds; ratios taken inside each round. With more tasks
    // the multiplexed connection pipelines more `SET`s per round trip.
    const N: usize = 4_000;
    for tasks in [4, 16] {
        let (mut ratios, mut rows): (Vec<f64>, Vec<Row>) = (Vec::new(), Vec::new());
        for round in 0..5 {
            let mut round_rps = [0.0; 2];
            for (i, (name, g)) in [("memory", &memory), ("redis", &redis)]
                .into_iter()
                .enumerate()
            {
                let bodies: Vec<_> = (0..N).map(|_| body(&idp)).collect();
                let (rps, lat) = load(&rt, g, bodies, tasks);
                round_rps[i] = rps;
                rows.push((name, rps, pct(&lat, 0.5), pct(&lat, 0.99)));
                println!(
                    "{tasks} tasks, round {round} {name}: {rps:.0} requests/s, p50 {:?}, p99 {:?}",
                    pct(&lat, 0.5),
                    pct(&lat, 0.99)
                );
            }
            ratios.push(round_rps[1] / round_rps[0]);
        }
        for name in ["memory", "redis"] {
            let of = |f: &dyn Fn(&Row) -> f64| {
                median(rows.iter().filter(|r| r.0 == name).map(f).collect())
            };
            println!(
                "{tasks} tasks, median {name}: {:.0} requests/s, p50 {:.1} µs, p99 {:.1} µs",
                of(&|r| r.1),
                of(&|r| r.2.as_secs_f64() * 1e6),
                of(&|r| r.3.as_secs_f64() * 1e6)
            );
        }
        println!(
            "{tasks} tasks, redis / memory throughput, median of per-round ratios: {:.3}",
            median(ratios)
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
