//! The authorization server's jwt-bearer grant in process, against the raw cryptography it
//! cannot avoid: one ES256 verification (the ID-JAG) plus one ES256 signature (the access
//! token), measured in the same run on inputs prepared the same way (`raw_…_hot` is the same
//! baseline with one input verified over and over, for reference). Also reports the in-memory replay store's memory per live
//! entry. See docs/benchmarks.md.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    ParsedPublicKey,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ema_grant::form::encode_component;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, KeyRing, SigningKey, StaticKeySource, UnixTime};

/// Resident set size of this process in bytes (Linux), for the replay-store memory figure.
fn rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);
const AS_ISSUER: &str = "https://auth.tasks.example";
const IDP: &str = "https://idp.acme.example";
const RESOURCE: &str = "https://mcp.tasks.example/mcp";

type Grant = JwtBearerGrant<StaticKeySource, Directory, InMemoryReplayStore>;

/// The grant typed (`build_typed`, no boxed futures) and the same grant erased (`build`, the
/// bare `JwtBearerGrant` an application names), with the IdP's ID-JAG issuer.
fn setup() -> (Grant, JwtBearerGrant, IdJagIssuer) {
    let idp_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
    ));
    let as_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let builder = || {
        JwtBearerGrant::builder(
            AccessTokenIssuer::new(Issuer::new(AS_ISSUER), as_keys.clone()),
            StaticKeySource::new().with_issuer(IDP, idp_keys.jwks()),
            Directory::new().with_subject(
                IDP,
                None,
                "00u8k2Lq91",
                LocalSubject::new("u-17").with_groups(["eng"]),
            ),
        )
        .trust(TrustedIssuer::new(IDP))
        .resource(ResourceConfig::new(RESOURCE, ["tasks.read", "tasks.write"]))
        .client(RegisteredClient::new(
            "tc_5f2a91",
            ClientCredential::secret("s3cr3t"),
        ))
        .token_endpoint("https://auth.tasks.example/token")
        .replay_store(InMemoryReplayStore::new(4_000_000))
    };
    let typed = builder().build_typed().unwrap();
    let erased = builder().build().unwrap();
    (typed, erased, IdJagIssuer::new(Issuer::new(IDP), idp_keys))
}

fn id_jag(idp: &IdJagIssuer) -> String {
    let mut g = IdJagGrant::new(
        Subject::new("00u8k2Lq91"),
        Issuer::new(AS_ISSUER),
        ClientId::new("tc_5f2a91"),
    );
    g.resources = vec![Resource::new(RESOURCE)];
    g.scope = Some(ScopeSet::parse("tasks.read tasks.write").unwrap());
    g.amr = Some(vec!["pwd".into(), "otp".into()]);
    g.auth_time = Some(NOW.minus(600));
    g.email = Some("ana@acme.example".into());
    idp.issue(g, NOW.minus(10)).unwrap().token
}

fn body(assertion: &str) -> Vec<u8> {
    format!(
        "grant_type={}&assertion={assertion}&resource={}&scope=tasks.read",
        encode_component(JWT_BEARER),
        encode_component(RESOURCE)
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let (grant, erased, idp) = setup();
    let sample = id_jag(&idp);

    // Baseline: one ES256 verify with a cached parsed key + one ES256 sign, on messages of the
    // sizes the grant handles.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let public =
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref()).unwrap();
    let (signing_input, _) = sample.rsplit_once('.').unwrap();
    let signature = pair.sign(&rng, signing_input.as_bytes()).unwrap();
    let at_input = vec![b'x'; 560];

    let mut group = c.benchmark_group("jwt_bearer");
    // The baseline: the same two operations on inputs prepared exactly as the grant's are (a
    // fresh ID-JAG signed by the IdP key in the untimed setup of each batch), so both sides pay
    // the same cache state after setup. Verifying one signature over and over with everything
    // hot is about 3 µs faster per verification on this machine; that figure is reported too.
    let idp_key = {
        let jwk = grant
            .validator()
            .keys()
            .resolve_now(IDP, Some("idp-k1"), Algorithm::ES256)
            .unwrap()
            .public_jwk()
            .clone();
        let coord = |name: &str| {
            ema_jose::base64url::decode(jwk.get(name).unwrap().as_str().unwrap().as_bytes())
                .unwrap()
        };
        let point = [&[4][..], &coord("x"), &coord("y")].concat();
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).unwrap()
    };
    group.bench_function("raw_es256_verify_plus_sign", |b| {
        b.iter_batched(
            || {
                let jag = id_jag(&idp);
                let (input, sig) = jag.rsplit_once('.').unwrap();
                let sig = ema_jose::base64url::decode(sig.as_bytes()).unwrap();
                (input.to_owned(), sig)
            },
            |(input, sig)| {
                idp_key
                    .verify_sig(black_box(input.as_bytes()), &sig)
                    .unwrap();
                black_box(pair.sign(&rng, black_box(&at_input)).unwrap());
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("raw_es256_verify_plus_sign_hot", |b| {
        b.iter(|| {
            public
                .verify_sig(
                    black_box(signing_input.as_bytes()),
                    black_box(signature.as_ref()),
                )
                .unwrap();
            black_box(pair.sign(&rng, black_box(&at_input)).unwrap());
        });
    });
    group.bench_function("grant_in_process", |b| {
        b.iter_batched(
            || body(&id_jag(&idp)),
            |body| {
                let req =
                    TokenRequest::form(&body).with_authorization("Basic dGNfNWYyYTkxOnMzY3IzdA==");
                let resp = pollster::block_on(grant.token(&req, NOW)).unwrap();
                black_box(resp);
            },
            BatchSize::SmallInput,
        );
    });
    // The same through the erased key source, subject resolver and replay store: three boxed
    // futures per request (a client secret does not consult the replay store).
    group.bench_function("grant_in_process_erased", |b| {
        b.iter_batched(
            || body(&id_jag(&idp)),
            |body| {
                let req =
                    TokenRequest::form(&body).with_authorization("Basic dGNfNWYyYTkxOnMzY3IzdA==");
                let resp = pollster::block_on(erased.token(&req, NOW)).unwrap();
                black_box(resp);
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn replay_memory() {
    const N: usize = 1_000_000;
    let store = InMemoryReplayStore::new(N + N / 4);
    let jtis: Vec<String> = (0..N).map(|i| format!("jti-{i:08}")).collect();
    let before = rss_bytes();
    for jti in &jtis {
        let key = ReplayKey {
            kind: ReplayKind::IdJag,
            issuer: IDP,
            jti,
        };
        store.insert_now(key, NOW.plus(300), NOW).unwrap();
    }
    let after = rss_bytes();
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "replay store: {N} live entries grew RSS by {} bytes: {:.1} bytes per entry",
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 / N as f64
        );
    }
    black_box(store);
}

fn all(c: &mut Criterion) {
    replay_memory();
    bench(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
